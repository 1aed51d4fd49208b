//! `nrt-mock`: a mock of AWS's Neuron runtime library, `libnrt`.
//!
//! Built as a C shared library (`libnrt_mock.so`) that exports the libnrt C ABI declared in
//! `neuron-sys/include/nrt_abi.h`, so the production loader opens it unchanged through
//! `NRT_DYLIB_PATH`. It simulates NeuronCores faithfully enough for every test, example and
//! benchmark of the workspace to run on a machine without Neuron hardware (ARCHITECTURE.md, "The mock libnrt"):
//! topology and visible-core remapping, cross-process core ownership, NEFF validation,
//! per-core serialised execution that sleeps for a simulated device time, device-memory
//! budgets, injected faults and counters.
//!
//! The Rust side of the crate (its rlib) offers:
//! - [`neff`]: build, write and parse mock NEFF files ([`neff::MockModel`]);
//! - [`control`]: talk to the mock instance the process loaded (counters, faults);
//! - [`counters`]: the `#[repr(C)]` counters struct shared with C callers;
//! - [`exports`]: the exported C functions themselves (callable from Rust, but meant for C);
//! - [`testing`]: the workspace's child-process test harness and where tests find the mock.
//!
//! # Environment
//!
//! | Variable | Read at | Meaning |
//! |---|---|---|
//! | `NRT_MOCK_TOTAL_CORES` | count calls, `nrt_init` | physical cores on the simulated instance (1..=128, default 24) |
//! | `NEURON_RT_VISIBLE_CORES` | count calls, `nrt_init` | cores to own: `5`, `0-11`, `3-5,6`, `1,3` |
//! | `NEURON_RT_NUM_CORES` | count calls, `nrt_init` | own the first n free cores (0 = all); the variable above wins |
//! | `NRT_MOCK_LOCK_DIR` | `nrt_init` | directory of the per-core lock files (default `<temp>/nrt-mock-locks`) |
//! | `NRT_MOCK_CORE_MEMORY` | `nrt_init` | device-memory budget per core in bytes (default 16 GiB) |
//! | `NRT_MOCK_FAULTS` | `nrt_init` | fault rules `PHYS_CORE:NTH:STATUS;...` (see [`control::set_faults`]) |
//! | `NEURON_RT_EXEC_TIMEOUT` | `nrt_load` | execution timeout in seconds (default 30) |
//! | `NRT_MOCK_RUNTIME_VERSION` | `nrt_get_version`, `nrt_init` | the libnrt version reported (default `2.30.50.0`); before 2.30 tensor infos use the sequential dtype codes |
//! | `NRT_MOCK_DTYPE_ENCODING` | `nrt_init` | `sequential`, `hardware` or `unknown` (all 0): the dtype codes of tensor infos, overriding the version's |
//! | `NRT_MOCK_MAX_NEFF_MAJOR` | `nrt_load` | newest NEFF major version accepted (default 2; higher is `NRT_UNSUPPORTED_NEFF_VERSION`) |
//! | `NRT_MOCK_CONTIGUOUS_CORES` | `nrt_init` | `1`: refuse a `NEURON_RT_VISIBLE_CORES` set with gaps such as `1,3` (`NRT_INVALID`) |
//! | `NRT_MOCK_STRICT_INIT` | `nrt_get_version` | `1`: refuse `nrt_get_version` before `nrt_init` (`NRT_UNINITIALIZED`) |
#![warn(missing_docs)]

pub mod control;
pub mod counters;
pub mod exports;
pub mod neff;
pub mod testing;

mod exec;
mod faults;
mod locks;
mod model;
mod ops;
mod report;
mod state;
mod tensor;
mod tensor_set;
mod topology;
mod version;
