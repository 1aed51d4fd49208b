//! Status codes, the per-thread last error, and the panic boundary every exported function
//! runs inside.

use std::cell::RefCell;
use std::ffi::{CString, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};

use neuron_rt::NeffError;

use dataparallel::quote::one_line;
use dataparallel::{Error, ErrorKind};

/// The result of every fallible `ndp_` function. `NDP_OK` is 0; anything else is an error
/// whose message `ndp_last_error()` returns on the same thread.
///
/// New codes are only ever appended; existing values never change.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ndp_status_t {
    /// Success.
    NDP_OK = 0,
    /// A pointer argument that must not be NULL was NULL.
    NDP_ERR_NULL_POINTER = 1,
    /// An argument is out of range or malformed (an index past the end, an unknown dtype
    /// value, a name that is not UTF-8, overlapping output buffers, an unknown or destroyed
    /// engine handle, ...).
    NDP_ERR_INVALID_ARGUMENT = 2,
    /// The inputs do not fit the model: count, names, dtypes, shapes or batch sizes.
    NDP_ERR_INVALID_INPUT = 3,
    /// The output buffers do not fit what the forward produces (count, names, dtypes,
    /// shapes, byte lengths).
    NDP_ERR_INVALID_OUTPUT = 4,
    /// The configuration cannot work with this model or these cores (zero split size, dim out
    /// of range, ...).
    NDP_ERR_CONFIG = 5,
    /// The device ids are malformed, out of range or repeated, or NEURON_RT_VISIBLE_CORES or
    /// NEURON_RT_NUM_CORES is malformed.
    NDP_ERR_DEVICE_IDS = 6,
    /// libnrt failed (initialising, loading, allocating); `ndp_last_nrt_status()` has its
    /// status.
    NDP_ERR_RUNTIME = 7,
    /// A chunk failed on a core during a forward; the message names the chunk, the logical
    /// and physical core and the libnrt status (`ndp_last_nrt_status()`).
    NDP_ERR_CHUNK_FAILED = 8,
    /// No libnrt could be loaded (set NRT_DYLIB_PATH or install aws-neuronx-runtime-lib).
    NDP_ERR_LIBRARY_NOT_FOUND = 9,
    /// A bug inside the library (a panic, contained, or a broken invariant); the message is
    /// in `ndp_last_error()`. The engine may be used further; please report the message.
    NDP_ERR_PANIC = 10,
    /// The NEFF is malformed, or libnrt refused to load it as invalid or unsupported.
    NDP_ERR_NEFF = 11,
    /// A file could not be read.
    NDP_ERR_IO = 12,
    /// The batch cannot be split with dynamic batching off (it must be cores x compiled
    /// batch rows), or dynamic batching cannot be used with this model or call.
    NDP_ERR_BATCH = 13,
    /// The engine is shutting down.
    NDP_ERR_SHUTTING_DOWN = 14,
    /// A caller-provided array is too small; the length needed has been written back.
    NDP_ERR_BUFFER_TOO_SMALL = 15,
    /// Every core of the engine is quarantined after repeated hardware failures; check
    /// `ndp_engine_core_health` and `ndp_engine_readmit` a core once it is fixed.
    NDP_ERR_ALL_CORES_QUARANTINED = 16,
    /// The operating system would not start a thread the engine needs (free resources or
    /// use fewer workers).
    NDP_ERR_SYSTEM = 17,
}

use ndp_status_t::*;

/// An error on its way to C: the status code, the message and the libnrt status.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) status: ndp_status_t,
    pub(crate) message: String,
    pub(crate) nrt_status: Option<i32>,
}

impl Failure {
    pub(crate) fn new(status: ndp_status_t, message: impl Into<String>) -> Failure {
        Failure {
            status,
            message: message.into(),
            nrt_status: None,
        }
    }

    /// A NULL where a pointer is required.
    pub(crate) fn null(function: &str, argument: &str) -> Failure {
        Failure::new(
            NDP_ERR_NULL_POINTER,
            format!("{function}: `{argument}` is NULL"),
        )
    }

    /// An argument out of range or malformed.
    pub(crate) fn invalid(message: impl Into<String>) -> Failure {
        Failure::new(NDP_ERR_INVALID_ARGUMENT, message)
    }
}

/// The status code for each kind of engine error: the one place C statuses are derived.
/// The table is documented in the README and pinned by `tests/error_kinds.rs`.
pub fn status_of_kind(kind: ErrorKind) -> ndp_status_t {
    match kind {
        ErrorKind::Config => NDP_ERR_CONFIG,
        ErrorKind::Input => NDP_ERR_INVALID_INPUT,
        ErrorKind::Output => NDP_ERR_INVALID_OUTPUT,
        ErrorKind::Batch => NDP_ERR_BATCH,
        ErrorKind::DeviceIds => NDP_ERR_DEVICE_IDS,
        ErrorKind::Neff => NDP_ERR_NEFF,
        ErrorKind::Io => NDP_ERR_IO,
        ErrorKind::InvalidArgument => NDP_ERR_INVALID_ARGUMENT,
        ErrorKind::LibraryNotFound => NDP_ERR_LIBRARY_NOT_FOUND,
        ErrorKind::Chunk => NDP_ERR_CHUNK_FAILED,
        ErrorKind::AllCoresQuarantined => NDP_ERR_ALL_CORES_QUARANTINED,
        ErrorKind::System => NDP_ERR_SYSTEM,
        ErrorKind::Stopped => NDP_ERR_SHUTTING_DOWN,
        ErrorKind::Internal => NDP_ERR_PANIC,
        // `ErrorKind` is non-exhaustive: a kind added later is a runtime failure until it
        // gets a code of its own.
        _ => NDP_ERR_RUNTIME,
    }
}

impl From<Error> for Failure {
    fn from(error: Error) -> Failure {
        Failure {
            status: status_of_kind(error.kind()),
            message: one_line(&error.to_string()),
            // libnrt's NRT_STATUS is a C enum: small non-negative values, same bits as int32_t.
            nrt_status: error.status().map(|s| s.raw() as i32),
        }
    }
}

impl From<neuron_rt::Error> for Failure {
    fn from(error: neuron_rt::Error) -> Failure {
        Failure::from(Error::from(error))
    }
}

impl From<NeffError> for Failure {
    fn from(error: NeffError) -> Failure {
        Failure::from(Error::from(error))
    }
}

/// The last error of this thread.
struct LastError {
    /// Empty when the last call succeeded.
    message: CString,
    /// -1 when the last error did not come from libnrt.
    nrt_status: i32,
}

thread_local! {
    static LAST_ERROR: RefCell<LastError> = RefCell::new(LastError {
        message: CString::default(),
        nrt_status: -1,
    });
}

/// Records the outcome of a call on this thread (`None`: success, clears the last error).
fn record(failure: Option<&Failure>) {
    let (message, nrt_status) = match failure {
        None => (CString::default(), -1),
        Some(failure) => (
            c_string_lossy(&failure.message),
            failure.nrt_status.unwrap_or(-1),
        ),
    };
    // During thread teardown the slot may be gone; there is nobody left to read it then.
    let _ = LAST_ERROR.try_with(|last| {
        if let Ok(mut last) = last.try_borrow_mut() {
            last.message = message;
            last.nrt_status = nrt_status;
        }
    });
}

/// `text` as a C string; NUL bytes (which C cannot hold) become `\0` escapes.
pub(crate) fn c_string_lossy(text: &str) -> CString {
    CString::new(text)
        .unwrap_or_else(|_| CString::new(text.replace('\0', "\\0")).unwrap_or_default())
}

/// The last error message of this thread ("" when none); valid until the next `ndp_` call
/// that records an outcome on this thread.
pub(crate) fn last_error_ptr() -> *const c_char {
    LAST_ERROR
        .try_with(|last| match last.try_borrow() {
            // The `CString`'s heap buffer stays put until `record` replaces it.
            Ok(last) => last.message.as_ptr(),
            Err(_) => c"".as_ptr(),
        })
        .unwrap_or(c"".as_ptr())
}

/// The libnrt status of this thread's last error, -1 when none.
pub(crate) fn last_nrt_status() -> i32 {
    LAST_ERROR
        .try_with(|last| last.try_borrow().map_or(-1, |last| last.nrt_status))
        .unwrap_or(-1)
}

/// The text of a panic payload.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic with a non-string payload".to_owned()
    }
}

/// Runs the body of an exported function: clears this thread's last error, runs `body`
/// inside a panic boundary, records its failure (or a contained panic) and returns the
/// status code. Nothing unwinds into C.
pub(crate) fn boundary(function: &str, body: impl FnOnce() -> Result<(), Failure>) -> ndp_status_t {
    record(None);
    let failure = match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => return NDP_OK,
        Ok(Err(failure)) => failure,
        Err(payload) => {
            let message = format!(
                "{function}: the library panicked (a bug, please report it): {}",
                one_line(&panic_message(payload.as_ref()))
            );
            // Dropping a payload can itself panic; keep that inside too.
            let _ = catch_unwind(AssertUnwindSafe(move || drop(payload)));
            Failure::new(NDP_ERR_PANIC, message)
        }
    };
    record(Some(&failure));
    failure.status
}

/// Runs a test body inside the same panic boundary as every exported function, so tests can
/// check that a panic comes back as `NDP_ERR_PANIC` with its message. Not part of the C API.
#[doc(hidden)]
pub fn run_in_boundary_for_tests(body: impl FnOnce()) -> ndp_status_t {
    boundary("test", || {
        body();
        Ok(())
    })
}
