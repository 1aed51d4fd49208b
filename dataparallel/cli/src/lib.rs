//! The parts of `neuron-dp` that read untrusted input, as a library so the fuzz targets in
//! `fuzz/` can drive them directly (the binary uses them too; its subcommands live in
//! `src/main.rs` and the modules next to it).
//!
//! - [`files`]: opening the files a user names — regular files only, opened without
//!   blocking, at most a documented size — and reading NEFFs that way.
//! - [`npy`]: the `.npy` reader (header bounded, data length checked against the file before
//!   anything is allocated) and writer.
//! - [`npy_header`]: the `.npy` header dict, parsed with every dimension kept as a `u64`.
//! - [`limits`]: every size and count a user gives `bench` turned into a checked plan
//!   (buffers, iterations, batcher settings) before anything is allocated.
//!
//! Errors are one-line messages (`String`) that quote user text with
//! [`dataparallel::quote::quote`]; the binary reports them as bad input (exit status 2).
//!
//! This is not a stable API: it exists for the binary and for fuzzing.

pub mod files;
pub mod limits;
pub mod npy;
pub mod npy_header;
