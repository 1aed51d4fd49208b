//! Talking to the mock library a process loaded: counters and fault injection.
//!
//! This module owns the Rust side of the three mock-only exports. It opens the library with
//! `libloading` — by default the library the production loader loaded
//! (`neuron_sys::loader::loaded`, however it was chosen), or before that the path in
//! `NRT_DYLIB_PATH`, which the loader would open — and calls its exports. `dlopen` of a path that is already loaded returns the same
//! handle, so a test binary reads the counters of the very instance its runtime uses (not of
//! the copy of this crate linked into the test). Libraries are never closed.
//!
//! ```no_run
//! let before = nrt_mock::control::counters()?;
//! nrt_mock::control::set_faults("3:2:1004")?; // 2nd execution on physical core 3 fails
//! // ... run something ...
//! let after = nrt_mock::control::counters()?;
//! assert_eq!(after.live_tensors, before.live_tensors);
//! # Ok::<(), nrt_mock::control::ControlError>(())
//! ```

use std::ffi::{CString, c_char};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use neuron_sys::bindings::{NRT_STATUS, NRT_SUCCESS};

use crate::counters::Counters;

/// `nrt_mock_get_counters(nrt_mock_counters_t *out, size_t size) -> NRT_STATUS`.
#[allow(non_camel_case_types)] // the C name, like bindings.rs
pub type nrt_mock_get_counters_fn =
    unsafe extern "C" fn(out: *mut Counters, size: usize) -> NRT_STATUS;
/// `nrt_mock_reset_counters(void)`.
#[allow(non_camel_case_types)] // the C name, like bindings.rs
pub type nrt_mock_reset_counters_fn = unsafe extern "C" fn();
/// `nrt_mock_set_faults(const char *rules) -> NRT_STATUS`.
#[allow(non_camel_case_types)] // the C name, like bindings.rs
pub type nrt_mock_set_faults_fn = unsafe extern "C" fn(rules: *const c_char) -> NRT_STATUS;

/// Why a control call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// No library is loaded yet and `NRT_DYLIB_PATH` is not set, so there is no library to
    /// talk to.
    #[error(
        "no libnrt is loaded yet and NRT_DYLIB_PATH is not set; start the runtime first, point NRT_DYLIB_PATH at libnrt_mock.so (`cargo xtask mock-build` prints the path) or use Mock::open"
    )]
    NoPath,
    /// The library could not be opened.
    #[error("cannot open {path}: {source}")]
    Open {
        /// The path tried.
        path: PathBuf,
        /// libloading's error (its `source()` carries the dlerror text).
        #[source]
        source: libloading::Error,
    },
    /// The library lacks a mock export: it is probably the real libnrt.
    #[error(
        "{path} has no symbol {symbol} (is it the real libnrt rather than the mock?): {source}"
    )]
    Symbol {
        /// The library.
        path: PathBuf,
        /// The missing export.
        symbol: &'static str,
        /// libloading's error.
        #[source]
        source: libloading::Error,
    },
    /// The fault rules contain a NUL byte.
    #[error("fault rules contain a NUL byte")]
    NulInRules,
    /// The mock rejected the call (its explanation went to the log and stderr).
    #[error("{call} returned status {status}")]
    Status {
        /// The export called.
        call: &'static str,
        /// The status it returned.
        status: NRT_STATUS,
    },
}

/// The mock-only exports of one loaded mock library.
#[derive(Debug, Clone, Copy)]
pub struct Mock {
    path: &'static Path,
    get_counters: nrt_mock_get_counters_fn,
    reset_counters: nrt_mock_reset_counters_fn,
    set_faults: nrt_mock_set_faults_fn,
}

impl Mock {
    /// Opens (or re-uses, if already loaded) the mock library at `path`. The library is never
    /// closed.
    pub fn open(path: impl AsRef<Path>) -> Result<Mock, ControlError> {
        let path: &'static Path = Box::leak(path.as_ref().to_path_buf().into_boxed_path());
        // SAFETY: loading a library runs its initialisers; the mock's (a Rust cdylib) has none
        // with preconditions, and a real libnrt's are safe to run too.
        let lib =
            unsafe { libloading::Library::new(path) }.map_err(|source| ControlError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        // Never unloaded: the function pointers below must stay valid for the process.
        let lib: &'static libloading::Library = Box::leak(Box::new(lib));
        // SAFETY: each symbol is declared in `crate::exports` with exactly these signatures
        // (pinned there at compile time against the same type aliases).
        unsafe {
            let get_counters = *lib
                .get::<nrt_mock_get_counters_fn>(b"nrt_mock_get_counters\0")
                .map_err(|source| symbol_error(path, "nrt_mock_get_counters", source))?;
            let reset_counters = *lib
                .get::<nrt_mock_reset_counters_fn>(b"nrt_mock_reset_counters\0")
                .map_err(|source| symbol_error(path, "nrt_mock_reset_counters", source))?;
            let set_faults = *lib
                .get::<nrt_mock_set_faults_fn>(b"nrt_mock_set_faults\0")
                .map_err(|source| symbol_error(path, "nrt_mock_set_faults", source))?;
            Ok(Mock {
                path,
                get_counters,
                reset_counters,
                set_faults,
            })
        }
    }

    /// Opens the library named by `NRT_DYLIB_PATH`.
    pub fn from_env() -> Result<Mock, ControlError> {
        let path = std::env::var_os("NRT_DYLIB_PATH")
            .filter(|p| !p.is_empty())
            .ok_or(ControlError::NoPath)?;
        Mock::open(PathBuf::from(path))
    }

    /// The library's path.
    pub fn path(&self) -> &Path {
        self.path
    }

    /// A snapshot of the counters.
    pub fn counters(&self) -> Result<Counters, ControlError> {
        let mut out = Counters::default();
        // SAFETY: `out` is a live Counters, writable for its full size, which is what we pass.
        let status = unsafe { (self.get_counters)(&mut out, size_of::<Counters>()) };
        if status == NRT_SUCCESS {
            Ok(out)
        } else {
            Err(ControlError::Status {
                call: "nrt_mock_get_counters",
                status,
            })
        }
    }

    /// Zeroes the counters (except the `live_*` gauges).
    pub fn reset_counters(&self) {
        // SAFETY: takes no arguments and has no preconditions.
        unsafe { (self.reset_counters)() }
    }

    /// Replaces the fault rules; `""` clears them. See [`set_faults`].
    pub fn set_faults(&self, rules: &str) -> Result<(), ControlError> {
        let c = CString::new(rules).map_err(|_| ControlError::NulInRules)?;
        // SAFETY: `c` is a valid NUL-terminated string alive for the call.
        let status = unsafe { (self.set_faults)(c.as_ptr()) };
        if status == NRT_SUCCESS {
            Ok(())
        } else {
            Err(ControlError::Status {
                call: "nrt_mock_set_faults",
                status,
            })
        }
    }
}

fn symbol_error(path: &Path, symbol: &'static str, source: libloading::Error) -> ControlError {
    ControlError::Symbol {
        path: path.to_path_buf(),
        symbol,
        source,
    }
}

static DEFAULT: OnceLock<Mock> = OnceLock::new();

/// The mock the production loader loaded, else the one named by `NRT_DYLIB_PATH`, opened
/// once per process.
fn default_mock() -> Result<Mock, ControlError> {
    if let Some(m) = DEFAULT.get() {
        return Ok(*m);
    }
    let m = match neuron_sys::loader::loaded() {
        Some(library) => Mock::open(library.path())?,
        None => Mock::from_env()?,
    };
    Ok(*DEFAULT.get_or_init(|| m))
}

/// A snapshot of the counters of the mock this process uses (see the module docs).
pub fn counters() -> Result<Counters, ControlError> {
    default_mock()?.counters()
}

/// Zeroes the counters of the mock this process uses (except the `live_*` gauges). If the
/// library cannot be opened, the reason is logged and the next [`counters`] call returns it.
pub fn reset_counters() {
    match default_mock() {
        Ok(m) => m.reset_counters(),
        Err(e) => log::error!("nrt-mock control: reset_counters: {e}"),
    }
}

/// Replaces the fault rules of the mock this process uses.
///
/// `rules` is `;`-separated `PHYS_CORE:NTH:STATUS`: the NTH execution (1-based, counted from
/// now, or `*` for every one) on physical core PHYS_CORE returns STATUS (a number), or with
/// `hang` sleeps past `NEURON_RT_EXEC_TIMEOUT` and returns `NRT_TIMEOUT`. `""` clears the rules.
pub fn set_faults(rules: &str) -> Result<(), ControlError> {
    default_mock()?.set_faults(rules)
}
