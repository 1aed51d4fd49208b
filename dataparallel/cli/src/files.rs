//! Opening the files a user names on the command line without trusting them.
//!
//! NEFFs are read by [`neuron_rt::Neff::from_path`], `.npy` inputs through
//! [`open_regular`]: both only ever read regular files, opened without blocking, up to the
//! size `fstat` reports and a limit per kind (`neuron_rt::file` says how). The limit for
//! `.npy` files is [`MAX_NPY_FILE_BYTES`]; for NEFFs, [`neuron_rt::file::MAX_NEFF_FILE_BYTES`].

use std::path::Path;

use dataparallel::quote::quote;
pub use neuron_rt::file::open_regular;

/// The largest `.npy` file `neuron-dp` reads (64 GiB; also at most the machine's memory, see
/// [`crate::limits::memory_budget`]): the whole array is held in memory.
pub const MAX_NPY_FILE_BYTES: u64 = 64 << 30;

/// `path` quoted for a message (bounded and escaped).
pub(crate) fn shown(path: &Path) -> String {
    quote(&path.display().to_string()).to_string()
}
