//! The C ABI's tensor descriptors: `ndp_engine_forward` with fuzzed `ndp_tensor_t` arrays
//! (names NULL, known, unknown or not UTF-8; any dtype value; any rank and dims, including
//! overflowing ones; byte lengths exact, off by one or zero with NULL data; outputs aliasing
//! inputs) on a real engine over the mock. It must never crash, and a call it accepts must
//! produce exactly what plain Rust computes.
//!
//! The descriptor checks (`capi::views`) are crate-private, so they are reached through the
//! exported function, as a C host would. Pointers are always valid for what they claim (the
//! C contract); everything else is fuzzed. Needs the mock: `NRT_DYLIB_PATH` (set by
//! `cargo xtask fuzz`; defaults to `../target/debug/libnrt_mock.so`).
#![no_main]

use std::ffi::{CString, c_char, c_void};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use neuron_dp::{
    ndp_engine_create_from_bytes, ndp_engine_forward, ndp_engine_t, ndp_status_t, ndp_tensor_t,
};
use nrt_mock::neff::{DType, MockModel, Op};

const SCALE: f32 = 2.0;
const BIAS: f32 = 0.5;
/// Features per row of the model (`x`, `y`: float32 `[2, 3]`).
const F: usize = 3;
/// Largest buffer a descriptor gets.
const MAX_BYTES: usize = 1 << 16;

/// `ndp_tensor_t` as a C host lays it out, with the dtype as a plain integer (a C caller
/// can store any value there).
#[repr(C)]
struct RawTensor {
    name: *const c_char,
    dtype: u32,
    ndim: usize,
    shape: *const usize,
    data: *mut c_void,
    byte_len: usize,
}

const _: () = assert!(size_of::<RawTensor>() == size_of::<ndp_tensor_t>());

struct Engine(*mut ndp_engine_t);
// SAFETY: engine handles are registry keys usable from any thread (capi docs).
unsafe impl Send for Engine {}
// SAFETY: as above.
unsafe impl Sync for Engine {}

fn engine() -> *mut ndp_engine_t {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            if std::env::var_os("NRT_DYLIB_PATH").is_none() {
                let path = concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/../target/debug/libnrt_mock.so"
                );
                // SAFETY: runs once, from libFuzzer's single fuzzing thread, before the
                // runtime (or anything else that reads the environment) starts threads.
                unsafe { std::env::set_var("NRT_DYLIB_PATH", path) };
            }
            let neff = MockModel::new(
                "m",
                Op::Affine {
                    scale: SCALE,
                    bias: BIAS,
                },
            )
            .input("x", DType::Float32, &[2, F as u32])
            .output("y", DType::Float32, &[2, F as u32])
            .to_neff_bytes();
            let mut engine = std::ptr::null_mut();
            // SAFETY: `neff` is readable for its length; NULL config means the defaults;
            // `engine` is writable.
            let status = unsafe {
                ndp_engine_create_from_bytes(
                    neff.as_ptr().cast(),
                    neff.len(),
                    std::ptr::null(),
                    &mut engine,
                )
            };
            assert_eq!(
                status,
                ndp_status_t::NDP_OK,
                "create the engine over the mock (set NRT_DYLIB_PATH; `cargo xtask fuzz` does): {}",
                last_error()
            );
            Engine(engine)
        })
        .0
}

fn last_error() -> String {
    let p = neuron_dp::ndp_last_error();
    if p.is_null() {
        return String::new();
    }
    // SAFETY: ndp_last_error returns NULL or a NUL-terminated string valid until the next
    // call on this thread.
    unsafe { std::ffi::CStr::from_ptr(p) }
        .to_string_lossy()
        .into_owned()
}

/// Reads fuzz bytes; past the end it yields zeros.
struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn byte(&mut self) -> u8 {
        match self.0 {
            [b, rest @ ..] => {
                self.0 = rest;
                *b
            }
            [] => 0,
        }
    }

    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(std::array::from_fn(|_| self.byte()))
    }
}

/// One descriptor's backing storage.
struct Owned {
    name: Option<CString>,
    shape: Vec<usize>,
    data: Vec<u8>,
    /// Claimed length (may be non-zero with NULL data).
    byte_len: usize,
    null_data: bool,
    dtype: u32,
    /// For outputs: point at the first input's bytes instead (aliasing).
    alias_input: bool,
}

fn element_size(dtype: u32) -> usize {
    match dtype {
        1 | 9 | 8 | 12 => 4,
        2 | 3 | 6 | 7 => 2,
        10 | 11 => 8,
        _ => 1,
    }
}

fn descriptor(c: &mut Cursor<'_>, fill: &mut impl FnMut() -> u8) -> Owned {
    let name = match c.byte() % 6 {
        0 | 1 => None,
        2 => Some(CString::new("x").expect("no NUL")),
        3 => Some(CString::new("y").expect("no NUL")),
        4 => Some(CString::new(vec![0xff, 0xfe, b'x']).expect("no NUL")),
        _ => Some(CString::new("bogus").expect("no NUL")),
    };
    let dtype = match c.byte() {
        d @ 0..=200 => u32::from(d % 17),
        _ => c.u64() as u32,
    };
    let ndim = usize::from(c.byte() % 5);
    let shape: Vec<usize> = (0..ndim)
        .map(|_| match c.byte() {
            d @ 0..=239 => usize::from(d % 12),
            d => usize::MAX - usize::from(d - 240),
        })
        .collect();
    let exact = shape
        .iter()
        .try_fold(element_size(dtype), |acc, &d| acc.checked_mul(d));
    let (byte_len, null_data) = match c.byte() % 8 {
        0..=3 => (exact.filter(|&n| n <= MAX_BYTES).unwrap_or(0), false),
        4 => (
            exact.map_or(1, |n| n.saturating_add(1)).min(MAX_BYTES),
            false,
        ),
        5 => (exact.unwrap_or(1).saturating_sub(1).min(MAX_BYTES), false),
        6 => (usize::from(c.byte()), true),
        _ => (usize::from(c.byte()), false),
    };
    let alias_input = c.byte() % 16 == 0;
    let data = if null_data {
        Vec::new()
    } else {
        (0..byte_len).map(|_| fill()).collect()
    };
    Owned {
        name,
        shape,
        data,
        byte_len,
        null_data,
        dtype,
        alias_input,
    }
}

fuzz_target!(|data: &[u8]| {
    let engine = engine();
    let mut c = Cursor(data);
    let n_inputs = usize::from(c.byte() % 4);
    let n_outputs = usize::from(c.byte() % 4);
    let mut seed = c.byte();
    // Input values: small integers, so affine results are exact.
    let mut fill = || {
        seed = seed.wrapping_mul(31).wrapping_add(7);
        seed % 64
    };
    let mut inputs: Vec<Owned> = (0..n_inputs)
        .map(|_| descriptor(&mut c, &mut fill))
        .collect();
    let mut outputs: Vec<Owned> = (0..n_outputs)
        .map(|_| descriptor(&mut c, &mut fill))
        .collect();
    // Valid float32 input values (the fill bytes above are not).
    for input in &mut inputs {
        if input.dtype == 1 && input.data.len() % 4 == 0 {
            let values: Vec<f32> = input
                .data
                .chunks_exact(4)
                .map(|b| f32::from(b[0]))
                .collect();
            input.data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        }
    }
    let first_input = inputs
        .first_mut()
        .filter(|i| !i.null_data && !i.data.is_empty())
        .map(|i| (i.data.as_mut_ptr(), i.data.len()));
    let raw = |t: &mut Owned, first_input: Option<(*mut u8, usize)>| RawTensor {
        name: t.name.as_ref().map_or(std::ptr::null(), |n| n.as_ptr()),
        dtype: t.dtype,
        ndim: t.shape.len(),
        shape: if t.shape.is_empty() {
            std::ptr::null()
        } else {
            t.shape.as_ptr()
        },
        data: match (t.alias_input, first_input) {
            (true, Some((p, len))) => {
                t.byte_len = t.byte_len.min(len);
                p.cast()
            }
            _ if t.null_data => std::ptr::null_mut(),
            _ => t.data.as_mut_ptr().cast(),
        },
        byte_len: t.byte_len,
    };
    let raw_inputs: Vec<RawTensor> = inputs.iter_mut().map(|t| raw(t, None)).collect();
    let raw_outputs: Vec<RawTensor> = outputs.iter_mut().map(|t| raw(t, first_input)).collect();
    // SAFETY: both arrays hold valid descriptors for their lengths: names NULL or
    // NUL-terminated, shapes `ndim` readable entries, data readable and writable for
    // `byte_len` bytes (or NULL, which the function checks), all alive until it returns.
    let status = unsafe {
        ndp_engine_forward(
            engine,
            raw_inputs.as_ptr().cast(),
            raw_inputs.len(),
            raw_outputs.as_ptr().cast(),
            raw_outputs.len(),
        )
    };
    if status != ndp_status_t::NDP_OK {
        assert!(!last_error().is_empty(), "a failure leaves a message");
        return;
    }
    // Accepted: one float32 input and one float32 output of the same [n, 3] shape.
    assert_eq!(
        (inputs.len(), outputs.len()),
        (1, 1),
        "accepted a bad arity"
    );
    let (x, y) = (&inputs[0], &outputs[0]);
    assert_eq!((x.dtype, y.dtype), (1, 1));
    assert_eq!(x.shape.len(), 2);
    assert_eq!(x.shape[1], F);
    assert_eq!(x.shape, y.shape);
    if y.alias_input {
        return;
    }
    let got: Vec<f32> = y
        .data
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
        .collect();
    let want: Vec<f32> = x
        .data
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")) * SCALE + BIAS)
        .collect();
    assert_eq!(got, want);
});
