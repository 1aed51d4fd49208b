//! The run-time loader: finds a libnrt-compatible library, resolves its functions once into a
//! process-wide table and keeps the library loaded for the rest of the process.
//!
//! Which library, in order of precedence:
//!
//! 1. the path a program chose with [`set_library_path`] before the library was first loaded
//!    (then `$NRT_DYLIB_PATH` is not read): a test or an embedder picks the library without
//!    touching the process environment;
//! 2. `$NRT_DYLIB_PATH`, an absolute path to any libnrt-compatible library (the real one or
//!    the in-tree mock);
//! 3. otherwise the default search, first that opens wins: `libnrt.so.1` and `libnrt.so`
//!    through the dynamic linker's normal search, then `/opt/aws/neuron/lib/libnrt.so.1`,
//!    where `aws-neuronx-runtime-lib` installs it.
//!
//! A path chosen by 1 or 2 is the only one tried, so a typo is reported, not hidden by a
//! fallback.
//!
//! Before `dlopen` is given an explicit path (one with a `/`: `$NRT_DYLIB_PATH`, the
//! `/opt/aws/neuron/lib` path, [`Library::open`]'s argument), the file is checked to be a
//! whole ELF shared object for this machine ([`crate::elf::check_library_file`]): `dlopen`
//! of a truncated library crashes the process with `SIGBUS` instead of failing. Bare names
//! (`libnrt.so.1`) are resolved by the dynamic linker itself and are not checked.
//!
//! A missing library or a missing required symbol is a [`LoadError`] listing every path tried
//! with the operating system's reason and the fix; nothing here panics. Only the symbols the
//! safe layer cannot work without are required; those libnrt gained after its first public
//! headers, and those nothing calls, are optional and resolve to `None` when absent.
//!
//! The [`Library`] is never unloaded: function pointers and runtime handles point into it, and
//! unloading a library that used thread-locals can crash at exit, when their destructors
//! would run code that is no longer mapped.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, PoisonError};

use crate::bindings::*;
use crate::elf::{LibraryFileError, check_library_file};

/// The environment variable naming an explicit library to load.
pub const NRT_DYLIB_PATH: &str = "NRT_DYLIB_PATH";

/// The names and paths tried, in order, when `$NRT_DYLIB_PATH` is not set.
pub const DEFAULT_CANDIDATES: &[&str] = &[
    "libnrt.so.1",
    "libnrt.so",
    "/opt/aws/neuron/lib/libnrt.so.1",
];

/// The non-`Option` function pointer inside a bindgen `Option<fn>` typedef.
pub trait FnPtr {
    /// The bare function pointer type.
    type Ptr: Copy;
}

impl<F: Copy> FnPtr for Option<F> {
    type Ptr = F;
}

/// A required symbol: the bare function pointer of the typedef `T`.
pub type Required<T> = <T as FnPtr>::Ptr;

macro_rules! nrt_api {
    (
        required { $($req:ident : $req_ty:ident,)* }
        optional { $($opt:ident : $opt_ty:ident,)* }
    ) => {
        /// The libnrt function table, resolved once per process.
        ///
        /// Required symbols (present since libnrt's first public headers, and called by the
        /// safe layer) are bare function pointers; symbols added later, or that nothing calls,
        /// are `Option`s that are `None` when the loaded library lacks them. Field types come from the bindgen typedefs of `include/nrt_abi.h`, so
        /// a signature can only change by changing the header.
        #[derive(Clone, Copy)]
        #[allow(missing_docs)]
        pub struct NrtApi {
            $(pub $req: Required<$req_ty>,)*
            $(pub $opt: $opt_ty,)*
        }

        impl NrtApi {
            /// Names of the required symbols, in table order.
            pub const REQUIRED: &'static [&'static str] = &[$(stringify!($req),)*];
            /// Names of the optional symbols, in table order.
            pub const OPTIONAL: &'static [&'static str] = &[$(stringify!($opt),)*];

            /// Resolves every symbol from `lib`.
            ///
            /// # Safety
            ///
            /// `lib` must be a libnrt-compatible library: each exported symbol with one of
            /// these names must be a C function with the signature `include/nrt_abi.h`
            /// declares for it. Nothing can check this at run time.
            unsafe fn resolve(lib: &libloading::Library) -> Result<Self, Vec<String>> {
                let mut missing = Vec::new();
                $(
                    let symbol = concat!(stringify!($req), "\0").as_bytes();
                    // SAFETY: the caller guarantees that this symbol, if present, has the
                    // declared signature; `get` only reads the symbol's address.
                    let found = unsafe { lib.get::<Required<$req_ty>>(symbol) };
                    let $req: Option<Required<$req_ty>> = found.ok().map(|symbol| *symbol);
                    if $req.is_none() {
                        missing.push(stringify!($req).to_owned());
                    }
                )*
                $(
                    let symbol = concat!(stringify!($opt), "\0").as_bytes();
                    // SAFETY: as above; an absent optional symbol becomes `None`.
                    let found = unsafe { lib.get::<Required<$opt_ty>>(symbol) };
                    let $opt: $opt_ty = found.ok().map(|symbol| *symbol);
                )*
                match ($($req,)*) {
                    ($(Some($req),)*) => Ok(Self { $($req,)* $($opt,)* }),
                    _ => Err(missing),
                }
            }

            /// Which optional symbols the loaded library provides.
            pub fn optional_present(&self) -> Vec<(&'static str, bool)> {
                vec![$((stringify!($opt), self.$opt.is_some()),)*]
            }
        }
    };
}

nrt_api! {
    required {
        nrt_init: nrt_init_fn,
        nrt_close: nrt_close_fn,
        nrt_get_version: nrt_get_version_fn,
        nrt_get_total_nc_count: nrt_get_total_nc_count_fn,
        nrt_get_visible_nc_count: nrt_get_visible_nc_count_fn,
        nrt_load: nrt_load_fn,
        nrt_unload: nrt_unload_fn,
        nrt_execute: nrt_execute_fn,
        nrt_get_model_tensor_info: nrt_get_model_tensor_info_fn,
        nrt_free_model_tensor_info: nrt_free_model_tensor_info_fn,
        nrt_allocate_tensor_set: nrt_allocate_tensor_set_fn,
        nrt_destroy_tensor_set: nrt_destroy_tensor_set_fn,
        nrt_add_tensor_to_tensor_set: nrt_add_tensor_to_tensor_set_fn,
        nrt_tensor_allocate: nrt_tensor_allocate_fn,
        nrt_tensor_free: nrt_tensor_free_fn,
        nrt_tensor_read: nrt_tensor_read_fn,
        nrt_tensor_write: nrt_tensor_write_fn,
        nrt_tensor_get_size: nrt_tensor_get_size_fn,
    }
    optional {
        // Old, but nothing in the workspace calls it: requiring it would refuse a library
        // for a function we never use.
        nrt_get_tensor_from_tensor_set: nrt_get_tensor_from_tensor_set_fn,
        nrt_get_status_as_str: nrt_get_status_as_str_fn,
        nrt_get_total_vnc_count: nrt_get_total_vnc_count_fn,
        nrt_get_visible_vnc_count: nrt_get_visible_vnc_count_fn,
        nrt_get_model_info: nrt_get_model_info_fn,
        nrt_get_model_instance_count: nrt_get_model_instance_count_fn,
        nrt_execute_repeat: nrt_execute_repeat_fn,
        nrt_tensor_allocate_empty: nrt_tensor_allocate_empty_fn,
        nrt_tensor_attach_buffer: nrt_tensor_attach_buffer_fn,
        nrt_tensor_allocate_slice: nrt_tensor_allocate_slice_fn,
        nrt_tensor_get_va: nrt_tensor_get_va_fn,
        nrt_tensor_memset: nrt_tensor_memset_fn,
        nrt_tensor_copy: nrt_tensor_copy_fn,
    }
}

impl fmt::Debug for NrtApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NrtApi")
            .field("required", &Self::REQUIRED.len())
            .field("optional", &self.optional_present())
            .finish()
    }
}

/// An opened libnrt-compatible library with its resolved function table.
///
/// Obtain the process-wide one with [`library`]; [`Library::open`] opens a specific file
/// (used by tests and by tools that inspect a library without adopting it).
#[derive(Debug)]
pub struct Library {
    api: NrtApi,
    path: PathBuf,
    // Held, never dropped while the table is in use; `library()` keeps its instance for
    // the life of the process, so the library is never unloaded.
    _lib: libloading::Library,
}

impl Library {
    /// The resolved function table.
    pub fn api(&self) -> &NrtApi {
        &self.api
    }

    /// The name or path the library was opened by (as given, e.g. `libnrt.so.1`).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the library at `path` (a file path, or a bare name for the linker's search) and
    /// resolves its functions.
    ///
    /// Opening a library runs its initialisers; libnrt's are side-effect free until
    /// `nrt_init`, which this does not call.
    ///
    /// # Errors
    ///
    /// [`LoadError`] when the file cannot be opened, is truncated, corrupt or for another
    /// machine (checked before `dlopen` sees it), or lacks a required symbol.
    pub fn open(path: impl AsRef<Path>) -> Result<Library, LoadError> {
        let path = path.as_ref();
        open_one(path).map_err(|attempt| LoadError {
            attempts: vec![*attempt],
            origin: Origin::Default,
        })
    }
}

/// One path the loader tried and why it was not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchAttempt {
    /// The name or path tried.
    pub path: PathBuf,
    /// Why it was not used: the OS loader's reason, or the missing symbols.
    pub reason: String,
    /// Required symbols the library lacks (empty when it did not open at all).
    pub missing_symbols: Vec<String>,
    /// Why the file was not handed to `dlopen` at all: truncated, corrupt or for another
    /// machine.
    pub bad_file: Option<LibraryFileError>,
}

/// Where the loader's candidates came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// [`set_library_path`].
    Program,
    /// `$NRT_DYLIB_PATH`.
    Env,
    /// [`DEFAULT_CANDIDATES`], or [`Library::open`]'s argument.
    Default,
}

/// No usable libnrt was found. Lists every path tried with the reason, and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    attempts: Vec<SearchAttempt>,
    origin: Origin,
}

impl LoadError {
    /// Every path tried, in order.
    pub fn attempts(&self) -> &[SearchAttempt] {
        &self.attempts
    }

    /// True when the only path tried came from `$NRT_DYLIB_PATH`.
    pub fn from_env(&self) -> bool {
        self.origin == Origin::Env
    }

    /// True when the only path tried was the one given to [`set_library_path`].
    pub fn from_set_library_path(&self) -> bool {
        self.origin == Origin::Program
    }

    /// True when some library opened but lacked required symbols.
    pub fn is_missing_symbols(&self) -> bool {
        self.attempts.iter().any(|a| !a.missing_symbols.is_empty())
    }

    /// The first file refused before `dlopen` as truncated, corrupt or for another machine.
    pub fn bad_file(&self) -> Option<&LibraryFileError> {
        self.attempts.iter().find_map(|a| a.bad_file.as_ref())
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "could not load the Neuron runtime library (libnrt)")?;
        for attempt in &self.attempts {
            write!(
                f,
                "\n  tried {}: {}",
                attempt.path.display(),
                attempt.reason
            )?;
        }
        if self.is_missing_symbols() {
            write!(
                f,
                "\nfix: the library is not libnrt-compatible or is too old; install a current \
                 `aws-neuronx-runtime-lib` or point {NRT_DYLIB_PATH} at a compatible library"
            )
        } else if let Some(bad) = self.bad_file() {
            if bad.problem().is_foreign() {
                write!(
                    f,
                    "\nfix: install the libnrt built for this machine ({}), or point \
                     {NRT_DYLIB_PATH} at it",
                    std::env::consts::ARCH
                )
            } else {
                write!(
                    f,
                    "\nfix: the file is damaged: reinstall `aws-neuronx-runtime-lib`, or copy the \
                     library again (`cargo xtask mock-build` rebuilds the mock)"
                )
            }
        } else if self.origin == Origin::Program {
            write!(
                f,
                "\nfix: the path given to set_library_path (or Runtime::builder().library) must \
                 be the path of libnrt.so.1 or of the mock (`cargo xtask mock-build` prints it)"
            )
        } else if self.origin == Origin::Env {
            write!(
                f,
                "\nfix: {NRT_DYLIB_PATH} must be the absolute path of libnrt.so.1 or of the mock \
                 (`cargo xtask mock-build` prints it); unset it to search the default locations"
            )
        } else {
            write!(
                f,
                "\nfix: on an Inferentia/Trainium host install `aws-neuronx-runtime-lib` (it puts \
                 libnrt.so.1 in /opt/aws/neuron/lib); anywhere else set {NRT_DYLIB_PATH} to the \
                 mock library (`cargo xtask mock-build` prints its path, `cargo xtask demo` runs it)"
            )
        }
    }
}

impl std::error::Error for LoadError {}

/// Renders an error with its whole `source()` chain: libloading's own `Display` is generic,
/// the `dlerror` text is in the chain.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        let inner_text = inner.to_string();
        if !text.contains(&inner_text) {
            text.push_str(": ");
            text.push_str(&inner_text);
        }
        source = inner.source();
    }
    text
}

/// True when `dlopen` takes `path` as a file path rather than a name to search for.
fn is_explicit_path(path: &Path) -> bool {
    path.parent().is_some_and(|dir| !dir.as_os_str().is_empty())
}

/// Opens one candidate; the failure is boxed because it is large and the success is common.
fn open_one(path: &Path) -> Result<Library, Box<SearchAttempt>> {
    if cfg!(target_os = "linux") && is_explicit_path(path) {
        if let Err(bad) = check_library_file(path) {
            return Err(Box::new(SearchAttempt {
                path: path.to_path_buf(),
                reason: bad.to_string(),
                missing_symbols: Vec::new(),
                bad_file: Some(bad),
            }));
        }
    }
    // SAFETY: opening a shared library runs its ELF initialisers. libnrt and the mock do no
    // work there that could conflict with this process (state is set up by `nrt_init`).
    let lib = match unsafe { libloading::Library::new(path.as_os_str()) } {
        Ok(lib) => lib,
        Err(error) => {
            return Err(Box::new(SearchAttempt {
                path: path.to_path_buf(),
                reason: error_chain(&error),
                missing_symbols: Vec::new(),
                bad_file: None,
            }));
        }
    };
    // SAFETY: a library found by the libnrt search is taken to implement the libnrt ABI as
    // `include/nrt_abi.h` declares it; that is the contract of `$NRT_DYLIB_PATH` too.
    match unsafe { NrtApi::resolve(&lib) } {
        Ok(api) => Ok(Library {
            api,
            path: path.to_path_buf(),
            _lib: lib,
        }),
        Err(missing) => Err(Box::new(SearchAttempt {
            path: path.to_path_buf(),
            reason: format!("missing required symbol(s): {}", missing.join(", ")),
            missing_symbols: missing,
            bad_file: None,
        })),
    }
}

/// Tries each candidate in order; returns the first that opens with every required symbol.
fn search(candidates: &[PathBuf], origin: Origin) -> Result<Library, LoadError> {
    let mut attempts = Vec::with_capacity(candidates.len());
    for candidate in candidates {
        match open_one(candidate) {
            Ok(library) => return Ok(library),
            Err(attempt) => attempts.push(*attempt),
        }
    }
    Err(LoadError { attempts, origin })
}

/// The candidates the search would try given the path chosen by [`set_library_path`] and
/// the value of `$NRT_DYLIB_PATH`, in that order of precedence.
fn candidates(chosen: Option<PathBuf>, env_value: Option<OsString>) -> (Vec<PathBuf>, Origin) {
    match (chosen, env_value) {
        (Some(path), _) => (vec![path], Origin::Program),
        (None, Some(value)) if !value.is_empty() => (vec![PathBuf::from(value)], Origin::Env),
        _ => (
            DEFAULT_CANDIDATES.iter().map(PathBuf::from).collect(),
            Origin::Default,
        ),
    }
}

static LIBRARY: OnceLock<Result<Library, LoadError>> = OnceLock::new();

/// The path chosen by [`set_library_path`]. Its lock is also held while [`library`] loads,
/// so a choice is either made before the load (and used) or after it (and refused).
static CHOSEN: Mutex<Option<PathBuf>> = Mutex::new(None);

/// The process-wide libnrt, found and resolved on first use and kept for the life of the
/// process. Later calls return the same library (or the same error): the choice (see the
/// module docs for the precedence of [`set_library_path`] and `$NRT_DYLIB_PATH`) is made
/// once.
///
/// # Errors
///
/// [`LoadError`] listing each path tried, the OS reason and the fix.
pub fn library() -> Result<&'static Library, &'static LoadError> {
    if let Some(loaded) = LIBRARY.get() {
        return loaded.as_ref();
    }
    // A poisoned lock only means a panic elsewhere while it was held; the Option inside is
    // always whole.
    let chosen = CHOSEN.lock().unwrap_or_else(PoisonError::into_inner);
    LIBRARY
        .get_or_init(|| {
            let (paths, origin) = candidates(chosen.clone(), std::env::var_os(NRT_DYLIB_PATH));
            search(&paths, origin)
        })
        .as_ref()
}

/// The process-wide libnrt if [`library`] has already loaded it; never loads anything.
pub fn loaded() -> Option<&'static Library> {
    LIBRARY.get().and_then(|loaded| loaded.as_ref().ok())
}

/// Chooses the libnrt this process loads, instead of `$NRT_DYLIB_PATH` and the default
/// search: the path of the real library or of the mock. Tests and embedders use it so they
/// need not set process environment variables.
///
/// It must be called before the library is first loaded (by [`library`], [`probe`], or the
/// first `neuron_rt::Runtime::init`). Calling it again before then replaces the choice;
/// afterwards it succeeds only when the library already loaded is this same file. The path
/// is tried alone, like `$NRT_DYLIB_PATH`: a wrong path is reported, not hidden by a
/// fallback.
///
/// # Errors
///
/// [`LibraryPathError`] when the path is empty, when a different library is already loaded,
/// or when the loader already ran and failed (its result is kept for the process).
pub fn set_library_path(path: impl Into<PathBuf>) -> Result<(), LibraryPathError> {
    let requested = path.into();
    if requested.as_os_str().is_empty() {
        return Err(LibraryPathError::Empty);
    }
    let mut chosen = CHOSEN.lock().unwrap_or_else(PoisonError::into_inner);
    match LIBRARY.get() {
        None => {
            *chosen = Some(requested);
            Ok(())
        }
        Some(Ok(library)) if same_file(library.path(), &requested) => Ok(()),
        Some(Ok(library)) => Err(LibraryPathError::AlreadyLoaded {
            requested,
            loaded: library.path().to_path_buf(),
        }),
        Some(Err(_)) => Err(LibraryPathError::AlreadySearched { requested }),
    }
}

/// True when `a` and `b` name the same file: the same path, or paths that resolve to one.
fn same_file(a: &Path, b: &Path) -> bool {
    a == b
        || matches!(
            (std::fs::canonicalize(a), std::fs::canonicalize(b)),
            (Ok(a), Ok(b)) if a == b
        )
}

/// [`set_library_path`] came too late, or with no path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LibraryPathError {
    /// A different library is already loaded; the process keeps it.
    #[error(
        "cannot load libnrt from {}: this process already loaded {} and keeps it; choose the \
         library before the first Runtime::init (or neuron_sys::library call)",
        .requested.display(),
        .loaded.display()
    )]
    AlreadyLoaded {
        /// The path asked for.
        requested: PathBuf,
        /// The library loaded.
        loaded: PathBuf,
    },
    /// The loader already searched and failed; the process keeps that result.
    #[error(
        "cannot load libnrt from {}: this process already searched for libnrt and failed, and \
         keeps that result; choose the library before the first Runtime::init (or \
         neuron_sys::library call)",
        .requested.display()
    )]
    AlreadySearched {
        /// The path asked for.
        requested: PathBuf,
    },
    /// The path is empty.
    #[error("the libnrt path is empty: give the path of libnrt.so.1 or of the mock")]
    Empty,
}

/// Reports whether a usable libnrt can be found, without initialising the runtime.
///
/// This opens the library (as [`library`] does, so a later [`library`] call is free) but
/// calls none of its functions: no cores are reserved and no runtime state changes.
///
/// # Errors
///
/// The same [`LoadError`] [`library`] would return.
pub fn probe() -> Result<&'static Path, LoadError> {
    library().map(Library::path).map_err(Clone::clone)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_path_is_the_only_candidate_when_set() {
        let (paths, origin) = candidates(None, Some("/x/libmock.so".into()));
        assert_eq!(paths, vec![PathBuf::from("/x/libmock.so")]);
        assert_eq!(origin, Origin::Env);
    }

    #[test]
    fn a_chosen_path_wins_over_the_variable() {
        let (paths, origin) = candidates(
            Some(PathBuf::from("/chosen/libnrt.so.1")),
            Some("/x/libmock.so".into()),
        );
        assert_eq!(paths, vec![PathBuf::from("/chosen/libnrt.so.1")]);
        assert_eq!(origin, Origin::Program);
        let error = search(&paths, origin).expect_err("nothing there");
        assert!(error.from_set_library_path());
        assert!(!error.from_env());
        assert!(error.to_string().contains("set_library_path"), "{error}");
    }

    #[test]
    fn default_candidates_in_documented_order() {
        let (paths, origin) = candidates(None, None);
        assert_eq!(origin, Origin::Default);
        let names: Vec<_> = paths
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "libnrt.so.1",
                "libnrt.so",
                "/opt/aws/neuron/lib/libnrt.so.1"
            ]
        );
        // An empty variable counts as unset.
        assert_eq!(candidates(None, Some(OsString::new())).1, Origin::Default);
    }

    #[test]
    fn only_paths_with_a_directory_are_checked_before_dlopen() {
        assert!(!is_explicit_path(Path::new("libnrt.so.1")));
        assert!(is_explicit_path(Path::new(
            "/opt/aws/neuron/lib/libnrt.so.1"
        )));
        assert!(is_explicit_path(Path::new("./libnrt.so.1")));
        assert!(is_explicit_path(Path::new("lib/libnrt.so.1")));
    }

    #[test]
    fn missing_library_lists_every_path_with_reason_and_fix() {
        let paths = [
            PathBuf::from("/nonexistent/one/libnrt.so.1"),
            PathBuf::from("/nonexistent/two/libnrt.so"),
        ];
        let error = search(&paths, Origin::Default).expect_err("nothing exists there");
        assert_eq!(error.attempts().len(), 2);
        let text = error.to_string();
        assert!(text.contains("/nonexistent/one/libnrt.so.1"), "{text}");
        assert!(text.contains("/nonexistent/two/libnrt.so"), "{text}");
        assert!(
            text.contains("No such file"),
            "the OS reason is shown: {text}"
        );
        assert!(text.contains("aws-neuronx-runtime-lib"), "{text}");
        assert!(text.contains(NRT_DYLIB_PATH), "{text}");
        assert!(!error.is_missing_symbols());
    }

    #[test]
    fn env_error_says_how_to_fix_the_variable() {
        let error = search(&[PathBuf::from("/nonexistent/mock.so")], Origin::Env).unwrap_err();
        let text = error.to_string();
        assert!(text.contains("mock-build"), "{text}");
    }

    #[test]
    fn a_library_without_nrt_symbols_is_rejected_with_their_names() {
        // libc is always loadable and exports none of libnrt's symbols.
        let error = Library::open("libc.so.6").expect_err("libc is not libnrt");
        assert!(error.is_missing_symbols());
        let attempt = &error.attempts()[0];
        assert_eq!(attempt.missing_symbols.len(), NrtApi::REQUIRED.len());
        assert!(error.to_string().contains("nrt_init"));
    }
}
