//! The C types of the API (`ndp_dtype_t`, `ndp_config_t`, `ndp_tensor_t`,
//! `ndp_tensor_info_t`) and their conversion to the engine's types.
//!
//! C may put any bit pattern in a struct it hands us: an enum field holding a value we never
//! declared, a `bool` holding 2. Reading such a value as a Rust enum or `bool` is undefined
//! behaviour, so structs that come *from* C are read through private mirrors
//! ([`TensorAbi`], [`ConfigAbi`]) whose fields are plain integers, with the same layout
//! (checked at compile time). The public structs exist for the header and for Rust callers.

use std::ffi::{CStr, c_char};
use std::mem::{align_of, offset_of, size_of};

use neuron_rt::DType;

use super::error::{Failure, ndp_status_t};
use dataparallel::Config;

/// Element types, numbered by this API (not by libnrt, whose numbering changed between
/// releases). The list matches the engine's `neuron_rt::DType`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ndp_dtype_t {
    /// The runtime did not report the type (only ever returned, never accepted).
    NDP_DTYPE_UNKNOWN = 0,
    /// IEEE 754 binary32 (`float`).
    NDP_DTYPE_FLOAT32 = 1,
    /// IEEE 754 binary16.
    NDP_DTYPE_FLOAT16 = 2,
    /// bfloat16.
    NDP_DTYPE_BFLOAT16 = 3,
    /// `int8_t`.
    NDP_DTYPE_INT8 = 4,
    /// `uint8_t`.
    NDP_DTYPE_UINT8 = 5,
    /// `int16_t`.
    NDP_DTYPE_INT16 = 6,
    /// `uint16_t`.
    NDP_DTYPE_UINT16 = 7,
    /// `int32_t`.
    NDP_DTYPE_INT32 = 8,
    /// `uint32_t`.
    NDP_DTYPE_UINT32 = 9,
    /// `int64_t`.
    NDP_DTYPE_INT64 = 10,
    /// `uint64_t`.
    NDP_DTYPE_UINT64 = 11,
    /// libnrt's FP32R (stored as float32).
    NDP_DTYPE_FP32R = 12,
    /// 8-bit float, 3-bit exponent.
    NDP_DTYPE_FP8_E3 = 13,
    /// 8-bit float, 4-bit exponent.
    NDP_DTYPE_FP8_E4 = 14,
    /// 8-bit float, 5-bit exponent.
    NDP_DTYPE_FP8_E5 = 15,
}

use ndp_dtype_t::*;

/// Our codes, in `DType::ALL` order (code = index + 1).
const DTYPES: [(ndp_dtype_t, DType); 15] = [
    (NDP_DTYPE_FLOAT32, DType::Float32),
    (NDP_DTYPE_FLOAT16, DType::Float16),
    (NDP_DTYPE_BFLOAT16, DType::BFloat16),
    (NDP_DTYPE_INT8, DType::Int8),
    (NDP_DTYPE_UINT8, DType::UInt8),
    (NDP_DTYPE_INT16, DType::Int16),
    (NDP_DTYPE_UINT16, DType::UInt16),
    (NDP_DTYPE_INT32, DType::Int32),
    (NDP_DTYPE_UINT32, DType::UInt32),
    (NDP_DTYPE_INT64, DType::Int64),
    (NDP_DTYPE_UINT64, DType::UInt64),
    (NDP_DTYPE_FP32R, DType::Fp32R),
    (NDP_DTYPE_FP8_E3, DType::Fp8E3),
    (NDP_DTYPE_FP8_E4, DType::Fp8E4),
    (NDP_DTYPE_FP8_E5, DType::Fp8E5),
];

impl ndp_dtype_t {
    /// Our code for an engine dtype (`NDP_DTYPE_UNKNOWN` for `None`).
    pub(crate) fn from_dtype(dtype: Option<DType>) -> ndp_dtype_t {
        DTYPES
            .iter()
            .find(|(_, d)| Some(*d) == dtype)
            .map_or(NDP_DTYPE_UNKNOWN, |(code, _)| *code)
    }

    /// The engine dtype for a raw code from C, `None` for unknown and undeclared values.
    pub(crate) fn to_dtype(raw: u32) -> Option<DType> {
        DTYPES
            .iter()
            .find(|(code, _)| *code as u32 == raw)
            .map(|(_, d)| *d)
    }
}

/// How to build an engine. Start from `ndp_config_default()` and change fields; the struct
/// is only read during `ndp_engine_create_*`.
///
/// Cores: give `device_ids` (with `num_device_ids`) **or** `device_list`, not both; with
/// neither, the engine uses every core the process owns.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ndp_config_t {
    /// Zero-based logical core indices (within NEURON_RT_VISIBLE_CORES), or NULL.
    pub device_ids: *const i32,
    /// Number of entries in `device_ids`.
    pub num_device_ids: usize,
    /// The cores as a NUL-terminated list such as "nc:0,nc:3" or "0,3", or NULL.
    pub device_list: *const c_char,
    /// The dimension inputs are split and outputs gathered along (default 0).
    pub dim: usize,
    /// Run any batch size as pieces of the compiled batch, zero-padding the last (default
    /// true). Only possible with dim 0: with `dim != 0` it is switched off at create (not an
    /// error, so `ndp_config_default()` with another `dim` works), and every batch must then
    /// be exactly cores x compiled batch rows (else `NDP_ERR_BATCH`).
    pub dynamic_batching: bool,
    /// Rows per chunk, chunks assigned to cores round-robin; 0 = split evenly (default).
    pub split_size: usize,
    /// Worker threads in total; 0 = two per core (default).
    pub num_workers: usize,
    /// Pin worker threads to CPUs (default false).
    pub pin_cpus: bool,
    /// Attach mode: run unpadded dim-0 pieces directly on the caller's memory (default false).
    pub attach: bool,
    /// Start each call that has fewer chunks than cores on the next core, so many threads
    /// calling with single requests share out the cores (default false: chunk i on core i,
    /// as the reference does).
    pub spread_small_calls: bool,
}

impl Default for ndp_config_t {
    fn default() -> ndp_config_t {
        ndp_config_t {
            device_ids: std::ptr::null(),
            num_device_ids: 0,
            device_list: std::ptr::null(),
            dim: 0,
            dynamic_batching: true,
            split_size: 0,
            num_workers: 0,
            pin_cpus: false,
            attach: false,
            spread_small_calls: false,
        }
    }
}

/// `ndp_config_t` as read from C: `bool`s as bytes.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConfigAbi {
    device_ids: *const i32,
    num_device_ids: usize,
    device_list: *const c_char,
    dim: usize,
    dynamic_batching: u8,
    split_size: usize,
    num_workers: usize,
    pin_cpus: u8,
    attach: u8,
    spread_small_calls: u8,
}

const _: () = {
    assert!(size_of::<ConfigAbi>() == size_of::<ndp_config_t>());
    assert!(align_of::<ConfigAbi>() == align_of::<ndp_config_t>());
    assert!(size_of::<bool>() == size_of::<u8>());
    assert!(offset_of!(ConfigAbi, device_ids) == offset_of!(ndp_config_t, device_ids));
    assert!(offset_of!(ConfigAbi, num_device_ids) == offset_of!(ndp_config_t, num_device_ids));
    assert!(offset_of!(ConfigAbi, device_list) == offset_of!(ndp_config_t, device_list));
    assert!(offset_of!(ConfigAbi, dim) == offset_of!(ndp_config_t, dim));
    assert!(offset_of!(ConfigAbi, dynamic_batching) == offset_of!(ndp_config_t, dynamic_batching));
    assert!(offset_of!(ConfigAbi, split_size) == offset_of!(ndp_config_t, split_size));
    assert!(offset_of!(ConfigAbi, num_workers) == offset_of!(ndp_config_t, num_workers));
    assert!(offset_of!(ConfigAbi, pin_cpus) == offset_of!(ndp_config_t, pin_cpus));
    assert!(offset_of!(ConfigAbi, attach) == offset_of!(ndp_config_t, attach));
    assert!(
        offset_of!(ConfigAbi, spread_small_calls) == offset_of!(ndp_config_t, spread_small_calls)
    );
};

impl ConfigAbi {
    /// Reads the caller's config (NULL: the defaults).
    ///
    /// # Safety
    ///
    /// `config` is NULL or points to a readable `ndp_config_t`; its `device_ids` is NULL or
    /// points to `num_device_ids` readable `int32_t`s; its `device_list` is NULL or a
    /// NUL-terminated string.
    pub(crate) unsafe fn read(config: *const ndp_config_t) -> Result<Config, Failure> {
        if config.is_null() {
            return Ok(Config::default());
        }
        // SAFETY: the caller guarantees `config` points to a readable `ndp_config_t`, whose
        // layout `ConfigAbi` shares (asserted above); every bit pattern is a valid
        // `ConfigAbi` (pointers, integers, bytes), so reading one is sound whatever C stored.
        let raw = unsafe { config.cast::<ConfigAbi>().read_unaligned() };
        let mut out = Config::default()
            .dim(raw.dim)
            .dynamic_batching(raw.dynamic_batching != 0)
            .pin_cpus(raw.pin_cpus != 0)
            .attach(raw.attach != 0)
            .spread_small_calls(raw.spread_small_calls != 0);
        if raw.split_size != 0 {
            out = out.split_size(raw.split_size);
        }
        if raw.num_workers != 0 {
            out = out.num_workers(raw.num_workers);
        }
        let has_ids = !raw.device_ids.is_null() || raw.num_device_ids != 0;
        if has_ids && !raw.device_list.is_null() {
            return Err(Failure::invalid(
                "ndp_config_t: give device_ids or device_list, not both",
            ));
        }
        if has_ids {
            // SAFETY: forwarded from the caller's contract on `device_ids`.
            let ids = unsafe { slice(raw.device_ids, raw.num_device_ids, "config->device_ids") }?;
            out = out.device_indices(ids.iter().map(|&i| i64::from(i)).collect::<Vec<_>>());
        } else if !raw.device_list.is_null() {
            // SAFETY: the caller guarantees a NUL-terminated string.
            let list = unsafe { CStr::from_ptr(raw.device_list) };
            let list = list.to_str().map_err(|_| {
                Failure::new(
                    ndp_status_t::NDP_ERR_DEVICE_IDS,
                    format!("ndp_config_t: device_list {list:?} is not UTF-8"),
                )
            })?;
            out = out.device_list(list);
        }
        Ok(out)
    }
}

/// One tensor in caller memory, as a forward's input or output.
///
/// `data` holds `byte_len` bytes, row-major, of `dtype` elements in `shape`. Inputs are only
/// read, so `data` is `const void*` and may point to read-only memory. Outputs are written:
/// the memory an output's `data` points to must be writable (the library writes through it
/// although the field is `const`, as `memcpy`'s callers pass writable memory). Output buffers
/// must not overlap each other or any input.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ndp_tensor_t {
    /// The model's name for the tensor, or NULL to match by position. Within one call
    /// either every tensor is named or none is.
    pub name: *const c_char,
    /// The element type.
    pub dtype: ndp_dtype_t,
    /// Number of dimensions.
    pub ndim: usize,
    /// `ndim` dimensions (may be NULL when `ndim` is 0).
    pub shape: *const usize,
    /// The bytes (may be NULL when `byte_len` is 0): read-only for inputs, writable memory
    /// for outputs.
    pub data: *const std::ffi::c_void,
    /// Length of `data` in bytes.
    pub byte_len: usize,
}

/// `ndp_tensor_t` as read from C: the dtype as a plain integer.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub(crate) struct TensorAbi {
    pub(crate) name: *const c_char,
    pub(crate) dtype: u32,
    pub(crate) ndim: usize,
    pub(crate) shape: *const usize,
    pub(crate) data: *const u8,
    pub(crate) byte_len: usize,
}

const _: () = {
    assert!(size_of::<ndp_dtype_t>() == size_of::<u32>());
    assert!(size_of::<TensorAbi>() == size_of::<ndp_tensor_t>());
    assert!(align_of::<TensorAbi>() == align_of::<ndp_tensor_t>());
    assert!(offset_of!(TensorAbi, name) == offset_of!(ndp_tensor_t, name));
    assert!(offset_of!(TensorAbi, dtype) == offset_of!(ndp_tensor_t, dtype));
    assert!(offset_of!(TensorAbi, ndim) == offset_of!(ndp_tensor_t, ndim));
    assert!(offset_of!(TensorAbi, shape) == offset_of!(ndp_tensor_t, shape));
    assert!(offset_of!(TensorAbi, data) == offset_of!(ndp_tensor_t, data));
    assert!(offset_of!(TensorAbi, byte_len) == offset_of!(ndp_tensor_t, byte_len));
};

/// What the engine knows about one model input or output. The pointers stay valid until the
/// engine is destroyed.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ndp_tensor_info_t {
    /// The model's name for the tensor (NUL-terminated).
    pub name: *const c_char,
    /// The element type (`NDP_DTYPE_UNKNOWN` when the runtime does not report it).
    pub dtype: ndp_dtype_t,
    /// Bytes per element.
    pub elem_size: usize,
    /// Number of dimensions of the compiled shape.
    pub ndim: usize,
    /// The compiled shape, `ndim` entries.
    pub shape: *const usize,
    /// The compiled batch: the compiled shape's size on the engine's `dim` (0 when the
    /// tensor has no such dimension).
    pub compiled_batch: usize,
    /// The compiled size in bytes.
    pub byte_size: usize,
}

/// One core's health, from `ndp_engine_core_health`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct ndp_core_health_t {
    /// The logical core (`nc:N`).
    pub logical: i32,
    /// The physical core, or -1 when unknown.
    pub physical: i32,
    /// 1 when the core is quarantined (takes no chunks), 0 when in service.
    pub quarantined: u32,
    /// Hardware-class failures in a row.
    pub consecutive_failures: u32,
    /// The libnrt status of the most recent failure, or -1 when none.
    pub last_status: i64,
    /// Executions started on the core.
    pub executions: u64,
}

/// One core's metrics since the engine was built, from `ndp_engine_core_metrics`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct ndp_core_metrics_t {
    /// The logical core (`nc:N`).
    pub logical: i32,
    /// The physical core, or -1 when unknown.
    pub physical: i32,
    /// Executions started on the core.
    pub executions: u64,
    /// Nanoseconds its workers spent running pieces (transfers and execution).
    pub busy_ns: u64,
    /// Pieces that failed.
    pub failures: u64,
    /// Real rows of the pieces that succeeded.
    pub rows: u64,
    /// Zero pad rows executed and thrown away.
    pub pad_rows: u64,
    /// Time per piece, a log2 histogram in microseconds: bucket 0 counts 0 µs, bucket
    /// `i > 0` counts `[2^(i-1), 2^i)` µs, the last bucket everything above.
    pub piece_latency_us: [u64; 32],
}

/// A slice over `len` items at `ptr`, `&[]` for a zero length (any pointer).
///
/// # Safety
///
/// When `len > 0`, `ptr` is NULL or points to `len` readable, initialised `T`s that nothing
/// writes for the lifetime `'a`.
pub(crate) unsafe fn slice<'a, T>(
    ptr: *const T,
    len: usize,
    what: &str,
) -> Result<&'a [T], Failure> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(Failure::new(
            ndp_status_t::NDP_ERR_NULL_POINTER,
            format!("`{what}` is NULL but its length is {len}"),
        ));
    }
    check_len::<T>(len, what)?;
    if !ptr.is_aligned() {
        return Err(Failure::invalid(format!("`{what}` is not aligned")));
    }
    // SAFETY: non-NULL, aligned, and (by the caller's contract) `len` readable `T`s that
    // stay unmodified for `'a`; the total size fits `isize` (checked above).
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// Fails when `len` items of `T` could not form a Rust slice (more than `isize::MAX` bytes).
pub(crate) fn check_len<T>(len: usize, what: &str) -> Result<(), Failure> {
    match len.checked_mul(size_of::<T>().max(1)) {
        Some(bytes) if bytes <= isize::MAX as usize => Ok(()),
        _ => Err(Failure::invalid(format!(
            "`{what}`: length {len} is too large"
        ))),
    }
}

const _: () = assert!(
    dataparallel::HISTOGRAM_BUCKETS == 32,
    "ndp_core_metrics_t::piece_latency_us is declared with 32 buckets"
);
