//! The process's one libnrt runtime: `nrt_init` on creation, `nrt_close` when the last handle
//! goes, and the facts every other handle needs (library, version, cores, dtype encoding).
//!
//! libnrt allows one runtime per process. [`Runtime::init`] therefore *shares*: while a
//! runtime is alive, creating another returns a handle to the same one (cheap to clone; every
//! [`Model`](crate::Model) and [`Tensor`](crate::Tensor) holds one, so the runtime outlives
//! them). When the last handle drops, `nrt_close` runs and the cores are released; the next
//! [`Runtime::init`] initialises afresh and re-reads the environment.

use std::ffi::CStr;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};

use neuron_sys::{Library, NRT_FRAMEWORK_TYPE_NO_FW, NrtApi, nrt_version_t};

use crate::device_id::{DeviceId, DeviceIds};
use crate::dtype::DTypeEncoding;
use crate::error::{Error, Result, check};
use crate::visible_cores::VisibleCores;

/// The environment variable selecting which physical cores this process owns.
pub const VISIBLE_CORES_ENV: &str = "NEURON_RT_VISIBLE_CORES";
/// The environment variable selecting how many cores this process owns.
pub const NUM_CORES_ENV: &str = "NEURON_RT_NUM_CORES";

/// The runtime library's version, as `nrt_get_version` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeVersion {
    /// Major version (2 for every current libnrt).
    pub major: u64,
    /// Minor version.
    pub minor: u64,
    /// Patch version.
    pub patch: u64,
    /// Maintenance version.
    pub maintenance: u64,
    /// Free-form description; the mock's starts with `nrt-mock`.
    pub detail: String,
    /// The library's git hash, when it reports one.
    pub git_hash: String,
}

impl RuntimeVersion {
    /// True when this version is `major.minor.patch` or newer (the maintenance number is
    /// ignored).
    ///
    /// ```
    /// let v = neuron_rt::RuntimeVersion {
    ///     major: 2, minor: 29, patch: 40, maintenance: 0,
    ///     detail: String::new(), git_hash: String::new(),
    /// };
    /// assert!(v.at_least(2, 29, 40));
    /// assert!(!v.at_least(2, 30, 0));
    /// ```
    pub fn at_least(&self, major: u64, minor: u64, patch: u64) -> bool {
        (self.major, self.minor, self.patch) >= (major, minor, patch)
    }

    /// True when this is the in-tree mock rather than the real libnrt.
    pub fn is_mock(&self) -> bool {
        self.detail.starts_with("nrt-mock")
    }
}

impl fmt::Display for RuntimeVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{}.{}.{}",
            self.major, self.minor, self.patch, self.maintenance
        )?;
        if !self.detail.is_empty() {
            write!(f, " ({})", self.detail)?;
        }
        Ok(())
    }
}

/// Which physical cores this process owns, as far as the process can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoreMap {
    /// Known: logical core i is physical core `cores.physical(i)`.
    Known(VisibleCores),
    /// `NEURON_RT_NUM_CORES` let the runtime choose; libnrt does not say which it chose.
    ChosenByRuntime,
}

struct Inner {
    library: &'static Library,
    version: RuntimeVersion,
    /// Logical cores on the instance.
    total_cores: u32,
    /// Physical cores on the instance.
    total_physical_cores: u32,
    /// Physical cores per logical core (`NEURON_LOGICAL_NC_CONFIG`; 2 by default on trn2).
    lnc: u32,
    visible_cores: u32,
    core_map: CoreMap,
    encoding: DTypeEncoding,
    /// Empty tensor handles kept after a failed attach (as addresses), for reuse: freeing
    /// them crashes runtimes before 2.29.40. `nrt_close` releases them.
    spare_empty: Mutex<Vec<usize>>,
}

/// Process-wide bookkeeping: the live runtime (if any) and whether libnrt is initialised.
/// `initialised` can be true with no live handle for the moment between the last handle
/// dropping and its `nrt_close` finishing; `init` waits that moment out.
struct Registry {
    live: Weak<Inner>,
    initialised: bool,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    live: Weak::new(),
    initialised: false,
});
static CLOSED: Condvar = Condvar::new();

fn registry() -> MutexGuard<'static, Registry> {
    // The registry holds plain data that every path leaves consistent, so a poisoned lock
    // (a panic elsewhere while it was held) is safe to keep using.
    REGISTRY.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A handle to the process's libnrt runtime. Clones share it.
///
/// `Runtime` is `Send + Sync`: it holds immutable facts and the library's function table,
/// and libnrt's calls are not tied to the thread that called `nrt_init`.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("library", &self.inner.library.path())
            .field("version", &self.inner.version)
            .field("total_cores", &self.inner.total_cores)
            .field("lnc", &self.inner.lnc)
            .field("visible_cores", &self.inner.visible_cores)
            .field("core_map", &self.inner.core_map)
            .finish()
    }
}

/// Options for starting the runtime: [`Runtime::builder`].
///
/// ```no_run
/// # fn main() -> neuron_rt::Result<()> {
/// let runtime = neuron_rt::Runtime::builder()
///     .library("/opt/aws/neuron/lib/libnrt.so.1")
///     .init()?;
/// # drop(runtime); Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct RuntimeBuilder {
    library: Option<PathBuf>,
}

impl RuntimeBuilder {
    /// Loads libnrt from `path` (the real library or the mock) instead of `NRT_DYLIB_PATH` or
    /// the default search ([`neuron_sys::set_library_path`]; it wins over the variable). The
    /// library is loaded once per process: this must happen before anything else in the
    /// process loads it, or name the library already loaded.
    pub fn library(mut self, path: impl Into<PathBuf>) -> RuntimeBuilder {
        self.library = Some(path.into());
        self
    }

    /// Initialises libnrt as [`Runtime::init`] does, with the library chosen here.
    ///
    /// # Errors
    ///
    /// [`Error::LibraryPath`] when a different library is already loaded (or the loader
    /// already ran and failed); otherwise those of [`Runtime::init`].
    pub fn init(self) -> Result<Runtime> {
        if let Some(path) = self.library {
            neuron_sys::set_library_path(path)?;
        }
        Runtime::init()
    }
}

impl Runtime {
    /// Options for starting the runtime, such as which library to load
    /// ([`RuntimeBuilder::library`]).
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder::default()
    }

    /// Initialises libnrt (or shares the runtime already alive in this process).
    ///
    /// Loads the library (see [`neuron_sys::library`]: the one chosen with
    /// [`Runtime::builder`] or [`neuron_sys::set_library_path`], else `NRT_DYLIB_PATH`, else
    /// the default search), validates `NEURON_RT_VISIBLE_CORES`
    /// before libnrt sees it, calls `nrt_init`, and records the version and core counts.
    ///
    /// # Errors
    ///
    /// - [`Error::Load`] when no libnrt can be found;
    /// - [`Error::VisibleCores`] when `NEURON_RT_VISIBLE_CORES` is malformed;
    /// - [`Error::Nrt`] when `nrt_init` fails, e.g. because another process holds the cores
    ///   (the remedy says so and names `NEURON_RT_VISIBLE_CORES`).
    pub fn init() -> Result<Runtime> {
        let mut registry = registry();
        loop {
            if let Some(inner) = registry.live.upgrade() {
                return Ok(Runtime { inner });
            }
            if !registry.initialised {
                break;
            }
            // The last handle is closing the previous runtime right now.
            registry = CLOSED
                .wait(registry)
                .unwrap_or_else(PoisonError::into_inner);
        }

        let library = neuron_sys::library().map_err(|e| Error::Load(e.clone()))?;
        let api = library.api();
        // Physical and logical counts: with NEURON_LOGICAL_NC_CONFIG=2 (trn2's default) a
        // logical core is two physical ones, the vnc counts report logical cores, and device
        // ids and NEURON_RT_VISIBLE_CORES number logical cores.
        let total_physical_cores = count("nrt_get_total_nc_count", api.nrt_get_total_nc_count)?;
        let total_cores = match api.nrt_get_total_vnc_count {
            Some(f) => count("nrt_get_total_vnc_count", f)?,
            None => total_physical_cores,
        };
        let lnc = match total_cores {
            0 => 1,
            n if total_physical_cores % n == 0 && total_physical_cores >= n => {
                total_physical_cores / n
            }
            n => {
                log::warn!(
                    "libnrt reports {total_physical_cores} physical and {n} logical cores, not \
                     a whole number of physical cores per logical core; assuming 1"
                );
                1
            }
        };
        let core_map = core_map_from_env(total_cores)?;

        // SAFETY: `nrt_init` takes a framework tag and two NUL-terminated strings, which the
        // `c""` literals are (static, so they outlive the call). The registry lock is held,
        // so no other thread of ours calls `nrt_init` or `nrt_close` concurrently.
        let raw = unsafe { (api.nrt_init)(NRT_FRAMEWORK_TYPE_NO_FW, c"".as_ptr(), c"".as_ptr()) };
        check("nrt_init", raw, || match &core_map {
            // The developer guide asks for a contiguous range; lists such as `1,3` (which Ray
            // hands out when cores are fragmented) are accepted here, but a runtime may refuse
            // them, so a failure says so.
            CoreMap::Known(cores) if !cores.is_contiguous() => format!(
                "requested physical cores {cores}, which are not a contiguous range: the Neuron \
                 runtime documents {VISIBLE_CORES_ENV} as a range such as {}-{}; ask for \
                 contiguous cores (e.g. {}-{}), or run one process per contiguous block",
                cores.iter().next().unwrap_or(0),
                cores.iter().last().unwrap_or(0),
                cores.iter().next().unwrap_or(0),
                cores.iter().next().unwrap_or(0) + cores.len().saturating_sub(1),
            ),
            CoreMap::Known(cores) => format!("requested physical cores {cores}"),
            CoreMap::ChosenByRuntime => "cores chosen by NEURON_RT_NUM_CORES".to_owned(),
        })?;

        // The version is asked for after `nrt_init`: the runtime documents only the core-count
        // queries as usable before it.
        let queried = query_version(api).and_then(|version| {
            match api.nrt_get_visible_vnc_count {
                Some(f) => count("nrt_get_visible_vnc_count", f),
                None => {
                    count("nrt_get_visible_nc_count", api.nrt_get_visible_nc_count).map(|n| n / lnc)
                }
            }
            .map(|visible| (version, visible))
        });
        let (version, visible_cores) = match queried {
            Ok(pair) => pair,
            Err(error) => {
                // SAFETY: `nrt_init` succeeded above and nothing else uses the runtime yet.
                unsafe { (api.nrt_close)() };
                return Err(error);
            }
        };
        let core_map = match core_map {
            CoreMap::Known(cores) if cores.len() as u64 != u64::from(visible_cores) => {
                log::warn!(
                    "libnrt reports {visible_cores} visible cores but NEURON_RT_VISIBLE_CORES \
                     names {}; physical core numbers are not reported",
                    cores.len()
                );
                CoreMap::ChosenByRuntime
            }
            other => other,
        };
        let encoding = DTypeEncoding::for_runtime(version.major, version.minor);
        log::debug!(
            "libnrt {version} from {}: {visible_cores} of {total_cores} cores (LNC {lnc})",
            library.path().display()
        );

        let inner = Arc::new(Inner {
            library,
            version,
            total_cores,
            total_physical_cores,
            lnc,
            visible_cores,
            core_map,
            encoding,
            spare_empty: Mutex::new(Vec::new()),
        });
        registry.live = Arc::downgrade(&inner);
        registry.initialised = true;
        Ok(Runtime { inner })
    }

    /// The libnrt function table. Crate-internal: only `neuron-rt` makes raw calls.
    pub(crate) fn api(&self) -> &'static NrtApi {
        self.inner.library.api()
    }

    /// The name or path the library was loaded from.
    pub fn library_path(&self) -> &Path {
        self.inner.library.path()
    }

    /// The runtime library's version.
    pub fn version(&self) -> &RuntimeVersion {
        &self.inner.version
    }

    /// Whether freeing an empty tensor after a failed attach is safe: runtimes before 2.29.40
    /// crash on it (a known issue), so on those the handle is kept for reuse instead.
    pub fn frees_failed_attach_safely(&self) -> bool {
        self.inner.version.at_least(2, 29, 40)
    }

    /// The largest single tensor this runtime allocates correctly: runtimes before 2.30.50
    /// overflow allocations of 4 GiB or more (a known issue); `None` when there is no known
    /// limit.
    pub fn max_tensor_bytes(&self) -> Option<usize> {
        (!self.inner.version.at_least(2, 30, 50)).then_some((4usize << 30) - 1)
    }

    /// An empty tensor handle kept after a failed attach, if any.
    pub(crate) fn take_spare_empty(&self) -> Option<std::ptr::NonNull<neuron_sys::nrt_tensor_t>> {
        let addr = self
            .inner
            .spare_empty
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()?;
        std::ptr::NonNull::new(addr as *mut neuron_sys::nrt_tensor_t)
    }

    /// Keeps an empty tensor handle whose attach failed, for the next attach to reuse.
    pub(crate) fn keep_spare_empty(&self, raw: std::ptr::NonNull<neuron_sys::nrt_tensor_t>) {
        self.inner
            .spare_empty
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(raw.as_ptr() as usize);
    }

    /// The dtype encoding this runtime uses in tensor infos.
    pub fn dtype_encoding(&self) -> DTypeEncoding {
        self.inner.encoding
    }

    /// Logical NeuronCores on the instance, whether or not this process owns them (the
    /// physical count divided by [`Runtime::lnc`]).
    pub fn total_cores(&self) -> u32 {
        self.inner.total_cores
    }

    /// Physical NeuronCores on the instance.
    pub fn total_physical_cores(&self) -> u32 {
        self.inner.total_physical_cores
    }

    /// Physical cores per logical core: 1, or 2 under `NEURON_LOGICAL_NC_CONFIG=2` (trn2's
    /// default). NEFFs must be compiled for the same value ([`Model::load`] checks their
    /// `lnc_size`).
    ///
    /// [`Model::load`]: crate::Model::load
    pub fn lnc(&self) -> u32 {
        self.inner.lnc
    }

    /// NeuronCores this process owns (logical cores `0..visible_cores()`).
    pub fn visible_cores(&self) -> u32 {
        self.inner.visible_cores
    }

    /// Which physical cores the logical cores are.
    pub fn core_map(&self) -> &CoreMap {
        &self.inner.core_map
    }

    /// The (first) physical core behind a logical one, when known: with [`Runtime::lnc`] 2,
    /// logical core g of the instance is physical cores 2g and 2g + 1.
    pub fn physical_core(&self, logical: DeviceId) -> Option<u32> {
        self.physical_cores(logical).map(|r| r.start)
    }

    /// Every physical core behind a logical one, when known (one unless [`Runtime::lnc`] is
    /// more).
    pub fn physical_cores(&self, logical: DeviceId) -> Option<std::ops::Range<u32>> {
        match &self.inner.core_map {
            CoreMap::Known(cores) => {
                let first = cores
                    .physical(logical.index())?
                    .checked_mul(self.inner.lnc)?;
                Some(first..first.checked_add(self.inner.lnc)?)
            }
            CoreMap::ChosenByRuntime => None,
        }
    }

    /// Every core this process owns, as device ids `nc:0..`.
    ///
    /// # Errors
    ///
    /// [`Error::DeviceId`] when the process owns no cores.
    pub fn all_devices(&self) -> Result<DeviceIds> {
        Ok(DeviceIds::all(self.inner.visible_cores)?)
    }

    /// Parses and validates a device-id list (`"nc:0,nc:3"`, `"0,3"`) against this process's
    /// visible cores.
    ///
    /// # Errors
    ///
    /// [`Error::DeviceId`] naming the bad entry and the accepted forms.
    pub fn device_ids(&self, list: &str) -> Result<DeviceIds> {
        Ok(DeviceIds::parse_list(list)?.validate(self.inner.visible_cores)?)
    }

    /// Checks that `device` is one of this process's cores.
    pub(crate) fn check_device(&self, op: &'static str, device: DeviceId) -> Result<()> {
        if device.index() < self.inner.visible_cores {
            Ok(())
        } else {
            Err(Error::InvalidArgument {
                op,
                message: format!(
                    "{device} is out of range: this process owns {} NeuronCores \
                     (nc:0-nc:{}); device ids are zero-based within NEURON_RT_VISIBLE_CORES",
                    self.inner.visible_cores,
                    self.inner.visible_cores.saturating_sub(1)
                ),
            })
        }
    }

    /// True when `self` and `other` are handles to the same runtime.
    pub fn same_as(&self, other: &Runtime) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let mut registry = registry();
        // SAFETY: this is the last handle (the Arc's strong count reached zero), so every
        // model, tensor and set, which each hold a handle, is already gone; the registry lock
        // keeps `init` from racing with the close.
        unsafe { (self.library.api().nrt_close)() };
        registry.initialised = false;
        drop(registry);
        CLOSED.notify_all();
        log::debug!("libnrt closed");
    }
}

fn count(
    op: &'static str,
    f: unsafe extern "C" fn(*mut u32) -> neuron_sys::NRT_STATUS,
) -> Result<u32> {
    let mut n = 0u32;
    // SAFETY: the count functions write one u32 through the pointer, which is valid and
    // aligned for the duration of the call. They are callable before `nrt_init`.
    let raw = unsafe { f(&mut n) };
    check(op, raw, String::new)?;
    Ok(n)
}

fn c_chars_to_string(chars: &[std::ffi::c_char]) -> String {
    let bytes: &[u8] = bytemuck::cast_slice(chars);
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

fn query_version(api: &NrtApi) -> Result<RuntimeVersion> {
    let mut raw = std::mem::MaybeUninit::<nrt_version_t>::zeroed();
    // SAFETY: `raw` is a zeroed, writable `nrt_version_t` and we pass its exact size, so the
    // library writes at most that many bytes. Called after `nrt_init`.
    let status =
        unsafe { (api.nrt_get_version)(raw.as_mut_ptr(), std::mem::size_of::<nrt_version_t>()) };
    check("nrt_get_version", status, String::new)?;
    // SAFETY: all-zero bytes are a valid `nrt_version_t` (integers and char arrays), and the
    // library only wrote valid values over them.
    let raw = unsafe { raw.assume_init() };
    Ok(RuntimeVersion {
        major: raw.rt_major,
        minor: raw.rt_minor,
        patch: raw.rt_patch,
        maintenance: raw.rt_maintenance,
        detail: c_chars_to_string(&raw.rt_detail),
        git_hash: c_chars_to_string(&raw.git_hash),
    })
}

fn core_map_from_env(total_cores: u32) -> Result<CoreMap> {
    match std::env::var(VISIBLE_CORES_ENV) {
        Ok(value) => Ok(CoreMap::Known(VisibleCores::parse(&value, total_cores)?)),
        Err(std::env::VarError::NotUnicode(value)) => Err(Error::CoreEnv {
            var: VISIBLE_CORES_ENV,
            value: env_value(&value.to_string_lossy()),
            expected: "not valid UTF-8; use forms such as 5, 0-11 or 3-5,6".to_owned(),
        }),
        Err(std::env::VarError::NotPresent) => match num_cores_from_env(total_cores)? {
            Some(0) | None => Ok(CoreMap::Known(VisibleCores::all(total_cores))),
            Some(_) => Ok(CoreMap::ChosenByRuntime),
        },
    }
}

/// `NEURON_RT_NUM_CORES` as a count from 0 (every core) to `total_cores`; `None` when unset
/// or empty. Anything else libnrt would refuse at `nrt_init`, so it is refused here first,
/// as the bad input it is.
fn num_cores_from_env(total_cores: u32) -> Result<Option<u32>> {
    let Some(raw) = std::env::var_os(NUM_CORES_ENV) else {
        return Ok(None);
    };
    let value = raw.to_string_lossy();
    if value.trim().is_empty() {
        return Ok(None);
    }
    match value.trim().parse::<u32>() {
        Ok(n) if n <= total_cores => Ok(Some(n)),
        _ => Err(Error::CoreEnv {
            var: NUM_CORES_ENV,
            value: env_value(&value),
            expected: format!(
                "expected a core count from 0 (every core) to {total_cores} (the cores on this \
                 instance)"
            ),
        }),
    }
}

/// An environment value for a message, cut to 64 characters.
fn env_value(value: &str) -> String {
    const MAX_CHARS: usize = 64;
    match value.char_indices().nth(MAX_CHARS) {
        Some((at, _)) => format!("{}...", &value[..at]),
        None => value.to_owned(),
    }
}

/// Reads a NUL-terminated C string from a fixed-size array without reading past it.
pub(crate) fn fixed_c_str(chars: &[std::ffi::c_char]) -> Option<&CStr> {
    let bytes: &[u8] = bytemuck::cast_slice(chars);
    CStr::from_bytes_until_nul(bytes).ok()
}
