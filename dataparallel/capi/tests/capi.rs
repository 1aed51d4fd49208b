//! The C ABI called directly from Rust, as a C host would: NULL pointers, bad handles, bad
//! device strings, wrong shapes and dtypes, the last-error text (which must equal the Rust
//! error's `Display`), contained panics, and destroy racing in-flight calls.
//!
//! Tests that create engines need the mock libnrt (`NRT_DYLIB_PATH`, as set by
//! `cargo xtask mock-test`).

use std::ffi::{CStr, CString, c_char};
use std::ptr::{null, null_mut};

use dataparallel::{Config, DataParallel, Input, Output};
use neuron_dp::*;
use neuron_rt::{Neff, Runtime};
use nrt_mock::neff::{DType, MockModel, Op};

use ndp_dtype_t::*;
use ndp_status_t::*;

/// y = 2x + 1 over float32 [4, 8].
fn affine_bytes() -> Vec<u8> {
    MockModel::new(
        "capi-affine",
        Op::Affine {
            scale: 2.0,
            bias: 1.0,
        },
    )
    .input("x", DType::Float32, &[4, 8])
    .output("y", DType::Float32, &[4, 8])
    .to_neff_bytes()
}

fn last_error() -> String {
    // SAFETY: `ndp_last_error` never returns NULL and its string is valid until the next
    // ndp_ call on this thread; we copy it at once.
    unsafe { CStr::from_ptr(ndp_last_error()) }
        .to_str()
        .expect("UTF-8 message")
        .to_owned()
}

/// An engine on `list` from the affine model.
fn create(list: &str) -> *mut ndp_engine_t {
    create_with(list, |_| {})
}

/// An engine on `list` from the affine model, with `edit` applied to the default config.
fn create_with(list: &str, edit: impl FnOnce(&mut ndp_config_t)) -> *mut ndp_engine_t {
    let bytes = affine_bytes();
    let list = CString::new(list).unwrap();
    let mut config = ndp_config_default();
    config.device_list = list.as_ptr();
    edit(&mut config);
    let mut engine = null_mut();
    // SAFETY: valid bytes, config and out-pointer for the duration of the call.
    let status = unsafe {
        ndp_engine_create_from_bytes(bytes.as_ptr().cast(), bytes.len(), &config, &mut engine)
    };
    assert_eq!(status, NDP_OK, "{}", last_error());
    assert!(!engine.is_null());
    engine
}

fn tensor(dtype: ndp_dtype_t, shape: &[usize], data: *mut u8, byte_len: usize) -> ndp_tensor_t {
    ndp_tensor_t {
        name: null(),
        dtype,
        ndim: shape.len(),
        shape: shape.as_ptr(),
        data: data.cast(),
        byte_len,
    }
}

fn forward(
    engine: *const ndp_engine_t,
    input: &ndp_tensor_t,
    output: &ndp_tensor_t,
) -> ndp_status_t {
    // SAFETY: one valid input and one valid output descriptor whose buffers outlive the call.
    unsafe { ndp_engine_forward(engine, input, 1, output, 1) }
}

#[test]
fn version_is_the_crate_version() {
    // SAFETY: a static NUL-terminated string.
    let version = unsafe { CStr::from_ptr(ndp_version()) };
    assert_eq!(version.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
    assert_eq!(ndp_last_nrt_status(), -1);
}

#[test]
fn config_default_matches_the_documented_defaults() {
    let config = ndp_config_default();
    assert!(config.device_ids.is_null() && config.device_list.is_null());
    assert_eq!(
        (config.dim, config.split_size, config.num_workers),
        (0, 0, 0)
    );
    assert!(config.dynamic_batching && !config.pin_cpus && !config.attach);
    assert!(!config.spread_small_calls);
}

#[test]
fn null_pointers_are_error_codes_with_messages() {
    let mut engine = null_mut();
    let mut count = 0usize;
    let mut info = std::mem::MaybeUninit::<ndp_tensor_info_t>::uninit();
    let mut version: *const c_char = null();
    let path = c"/nonexistent.neff";
    let check = |status: ndp_status_t, needle: &str| {
        assert_eq!(status, NDP_ERR_NULL_POINTER, "{needle}");
        let message = last_error();
        assert!(message.contains(needle), "{message:?} should name {needle}");
        assert_eq!(ndp_last_nrt_status(), -1);
    };
    // SAFETY: in every call below each non-NULL pointer is valid; the NULL ones are what
    // is under test, and the library checks them before any use.
    unsafe {
        check(
            ndp_engine_create_from_path(null(), null(), &mut engine),
            "`neff_path`",
        );
        check(
            ndp_engine_create_from_path(path.as_ptr(), null(), null_mut()),
            "`engine_out`",
        );
        check(
            ndp_engine_create_from_bytes(null(), 10, null(), &mut engine),
            "`neff`",
        );
        check(ndp_engine_destroy(null_mut()), "`engine`");
        check(ndp_engine_num_inputs(null(), &mut count), "`engine`");
        check(ndp_engine_num_outputs(null(), &mut count), "`engine`");
        check(
            ndp_engine_input_info(null(), 0, info.as_mut_ptr()),
            "`engine`",
        );
        check(
            ndp_engine_output_info(null(), 0, info.as_mut_ptr()),
            "`engine`",
        );
        check(ndp_engine_num_cores(null(), &mut count), "`engine`");
        check(
            ndp_engine_core(null(), 0, null_mut(), null_mut()),
            "`engine`",
        );
        check(ndp_engine_runtime_version(null(), &mut version), "`engine`");
        check(
            ndp_engine_output_shape(null(), null(), 0, 0, null_mut(), &mut count),
            "`engine`",
        );
        check(ndp_engine_forward(null(), null(), 0, null(), 0), "`engine`");
    }
    assert!(engine.is_null());
}

#[test]
fn unknown_handles_are_rejected_not_dereferenced() {
    let bogus = std::ptr::without_provenance::<ndp_engine_t>(0xdead_bee0);
    let mut count = 0;
    // SAFETY: the handle is never dereferenced; `count` is writable.
    let status = unsafe { ndp_engine_num_inputs(bogus, &mut count) };
    assert_eq!(status, NDP_ERR_INVALID_ARGUMENT);
    assert!(
        last_error().contains("not a live engine"),
        "{}",
        last_error()
    );
    assert_eq!(
        ndp_engine_destroy(bogus.cast_mut()),
        NDP_ERR_INVALID_ARGUMENT
    );
}

#[test]
fn panics_are_contained() {
    let status = run_in_boundary_for_tests(|| panic!("boom at the boundary"));
    assert_eq!(status, NDP_ERR_PANIC);
    assert!(
        last_error().contains("boom at the boundary"),
        "{}",
        last_error()
    );
    // The next call clears it.
    assert_eq!(run_in_boundary_for_tests(|| {}), NDP_OK);
    assert_eq!(last_error(), "");
}

#[test]
fn bad_neff_bytes_and_paths_report_the_rust_error() {
    let garbage = b"definitely not a NEFF".to_vec();
    let mut engine = null_mut();
    // SAFETY: valid bytes and out-pointer.
    let status = unsafe {
        ndp_engine_create_from_bytes(garbage.as_ptr().cast(), garbage.len(), null(), &mut engine)
    };
    assert_eq!(status, NDP_ERR_NEFF);
    let expected = Neff::from_bytes(garbage).unwrap_err().to_string();
    assert_eq!(last_error(), expected);

    let path = c"/nonexistent/capi-model.neff";
    // SAFETY: a valid path string and out-pointer.
    let status = unsafe { ndp_engine_create_from_path(path.as_ptr(), null(), &mut engine) };
    assert_eq!(status, NDP_ERR_IO);
    let expected = Neff::from_path("/nonexistent/capi-model.neff".as_ref())
        .unwrap_err()
        .to_string();
    assert_eq!(last_error(), expected);
    assert!(engine.is_null());
}

#[test]
fn bad_device_strings_report_the_rust_error() {
    let bytes = affine_bytes();
    for list in ["nc:0,nc:zz", "nc:0,nc:0", "nc:999", ""] {
        let c_list = CString::new(list).unwrap();
        let mut config = ndp_config_default();
        config.device_list = c_list.as_ptr();
        let mut engine = null_mut();
        // SAFETY: valid bytes, config and out-pointer.
        let status = unsafe {
            ndp_engine_create_from_bytes(bytes.as_ptr().cast(), bytes.len(), &config, &mut engine)
        };
        assert_eq!(status, NDP_ERR_DEVICE_IDS, "{list:?}: {}", last_error());
        assert!(engine.is_null());
        let runtime = Runtime::init().unwrap();
        let neff = Neff::from_bytes(bytes.clone()).unwrap();
        let expected = DataParallel::new(&runtime, &neff, Config::default().device_list(list))
            .unwrap_err()
            .to_string();
        assert_eq!(last_error(), expected, "{list:?}");
    }

    // Integer ids and a list together are ambiguous.
    let ids = [0i32, 1];
    let mut config = ndp_config_default();
    config.device_ids = ids.as_ptr();
    config.num_device_ids = ids.len();
    config.device_list = c"nc:0".as_ptr();
    let mut engine = null_mut();
    // SAFETY: valid bytes, config and out-pointer.
    let status = unsafe {
        ndp_engine_create_from_bytes(bytes.as_ptr().cast(), bytes.len(), &config, &mut engine)
    };
    assert_eq!(status, NDP_ERR_INVALID_ARGUMENT);

    // Negative integer ids.
    let ids = [0i32, -3];
    config.device_ids = ids.as_ptr();
    config.device_list = null();
    // SAFETY: as above.
    let status = unsafe {
        ndp_engine_create_from_bytes(bytes.as_ptr().cast(), bytes.len(), &config, &mut engine)
    };
    assert_eq!(status, NDP_ERR_DEVICE_IDS, "{}", last_error());

    // A NULL id array with a length.
    config.device_ids = null();
    config.num_device_ids = 2;
    // SAFETY: as above; the NULL array is what is under test.
    let status = unsafe {
        ndp_engine_create_from_bytes(bytes.as_ptr().cast(), bytes.len(), &config, &mut engine)
    };
    assert_eq!(status, NDP_ERR_NULL_POINTER);
}

#[test]
fn queries_describe_the_model_and_cores() {
    let engine = create("nc:1,nc:3");
    let mut count = 0;
    // SAFETY: a live engine and writable out-pointers throughout.
    unsafe {
        assert_eq!(ndp_engine_num_inputs(engine, &mut count), NDP_OK);
        assert_eq!(count, 1);
        assert_eq!(ndp_engine_num_outputs(engine, &mut count), NDP_OK);
        assert_eq!(count, 1);
        let mut info = std::mem::MaybeUninit::<ndp_tensor_info_t>::uninit();
        assert_eq!(ndp_engine_output_info(engine, 0, info.as_mut_ptr()), NDP_OK);
        let info = info.assume_init();
        assert_eq!(CStr::from_ptr(info.name).to_str().unwrap(), "y");
        assert_eq!(info.dtype, NDP_DTYPE_FLOAT32);
        assert_eq!(std::slice::from_raw_parts(info.shape, info.ndim), [4, 8]);
        assert_eq!(
            (info.compiled_batch, info.elem_size, info.byte_size),
            (4, 4, 128)
        );
        let mut other = std::mem::MaybeUninit::<ndp_tensor_info_t>::uninit();
        assert_eq!(
            ndp_engine_input_info(engine, 1, other.as_mut_ptr()),
            NDP_ERR_INVALID_ARGUMENT
        );

        assert_eq!(ndp_engine_num_cores(engine, &mut count), NDP_OK);
        assert_eq!(count, 2);
        let (mut logical, mut physical) = (0, 0);
        assert_eq!(
            ndp_engine_core(engine, 1, &mut logical, &mut physical),
            NDP_OK
        );
        assert_eq!(logical, 3);
        assert!(physical >= -1);
        assert_eq!(
            ndp_engine_core(engine, 2, &mut logical, null_mut()),
            NDP_ERR_INVALID_ARGUMENT
        );

        let mut version: *const c_char = null();
        assert_eq!(ndp_engine_runtime_version(engine, &mut version), NDP_OK);
        let version = CStr::from_ptr(version).to_str().unwrap();
        assert_eq!(version, Runtime::init().unwrap().version().to_string());
    }
    assert_eq!(ndp_engine_destroy(engine), NDP_OK);
}

#[test]
fn forward_computes_and_validates_like_the_rust_api() {
    let engine = create("nc:4,nc:5,nc:6");
    for rows in [0usize, 1, 5, 12, 31] {
        let mut x: Vec<f32> = (0..rows * 8).map(|i| i as f32 * 0.5).collect();
        let mut y = vec![0f32; rows * 8];
        let shape = [rows, 8];
        let input = tensor(NDP_DTYPE_FLOAT32, &shape, x.as_mut_ptr().cast(), rows * 32);
        let mut out_shape = [0usize; 2];
        let mut ndim = 2;
        // SAFETY: valid descriptors and writable shape/rank.
        let status = unsafe {
            ndp_engine_output_shape(engine, &input, 1, 0, out_shape.as_mut_ptr(), &mut ndim)
        };
        assert_eq!(status, NDP_OK, "{}", last_error());
        assert_eq!((ndim, out_shape), (2, [rows, 8]));
        let output = tensor(
            NDP_DTYPE_FLOAT32,
            &out_shape,
            y.as_mut_ptr().cast(),
            rows * 32,
        );
        assert_eq!(forward(engine, &input, &output), NDP_OK, "{}", last_error());
        assert_eq!(last_error(), "");
        for (a, b) in x.iter().zip(&y) {
            assert_eq!(a * 2.0 + 1.0, *b);
        }
    }

    // Errors, each compared with what the Rust API says for the same views.
    let runtime = Runtime::init().unwrap();
    let neff = Neff::from_bytes(affine_bytes()).unwrap();
    let rust = DataParallel::new(
        &runtime,
        &neff,
        Config::default().device_list("nc:4,nc:5,nc:6"),
    )
    .unwrap();
    let mut x = vec![1f32; 4 * 8];
    let mut y = vec![0f32; 4 * 8];
    let good = [4usize, 8];
    let wrong = [4usize, 7];
    /// Input dtype and shape, output dtype, shape and byte length, the expected status.
    type Case<'a> = (
        ndp_dtype_t,
        &'a [usize],
        ndp_dtype_t,
        &'a [usize],
        usize,
        ndp_status_t,
    );
    let cases: [Case<'_>; 4] = [
        (
            NDP_DTYPE_FLOAT32,
            &wrong,
            NDP_DTYPE_FLOAT32,
            &good,
            128,
            NDP_ERR_INVALID_INPUT,
        ),
        (
            NDP_DTYPE_INT32,
            &good,
            NDP_DTYPE_FLOAT32,
            &good,
            128,
            NDP_ERR_INVALID_INPUT,
        ),
        (
            NDP_DTYPE_FLOAT32,
            &good,
            NDP_DTYPE_FLOAT16,
            &good,
            128,
            NDP_ERR_INVALID_OUTPUT,
        ),
        (
            NDP_DTYPE_FLOAT32,
            &good,
            NDP_DTYPE_FLOAT32,
            &good,
            64,
            NDP_ERR_INVALID_OUTPUT,
        ),
    ];
    let to_rust = |d: ndp_dtype_t| match d {
        NDP_DTYPE_INT32 => neuron_rt::DType::Int32,
        NDP_DTYPE_FLOAT16 => neuron_rt::DType::Float16,
        _ => neuron_rt::DType::Float32,
    };
    for (i, (in_dtype, in_shape, out_dtype, out_shape, out_len, expected)) in
        cases.into_iter().enumerate()
    {
        let input = tensor(in_dtype, in_shape, x.as_mut_ptr().cast(), 128);
        let output = tensor(out_dtype, out_shape, y.as_mut_ptr().cast(), out_len);
        assert_eq!(
            forward(engine, &input, &output),
            expected,
            "case {i}: {}",
            last_error()
        );
        let c_message = last_error();
        let x_bytes: &[u8] = bytemuck_bytes(&x);
        let mut y_bytes = vec![0u8; out_len];
        let rust_error = rust
            .forward_into(
                &[Input::new(to_rust(in_dtype), in_shape, x_bytes)],
                &mut [Output::new(to_rust(out_dtype), out_shape, &mut y_bytes)],
            )
            .unwrap_err();
        assert_eq!(c_message, rust_error.to_string(), "case {i}");
        assert_eq!(ndp_last_nrt_status(), -1);
    }

    // A dtype value that is no ndp_dtype_t, written as C could.
    #[repr(C)]
    struct RawTensor {
        name: *const c_char,
        dtype: u32,
        ndim: usize,
        shape: *const usize,
        data: *mut std::ffi::c_void,
        byte_len: usize,
    }
    let raw = RawTensor {
        name: null(),
        dtype: 99,
        ndim: 2,
        shape: good.as_ptr(),
        data: x.as_mut_ptr().cast(),
        byte_len: 128,
    };
    let output = tensor(NDP_DTYPE_FLOAT32, &good, y.as_mut_ptr().cast(), 128);
    // SAFETY: `RawTensor` has `ndp_tensor_t`'s layout; the library reads the dtype as an
    // integer, so an undeclared value is an error, not undefined behaviour.
    let status =
        unsafe { ndp_engine_forward(engine, (&raw as *const RawTensor).cast(), 1, &output, 1) };
    assert_eq!(status, NDP_ERR_INVALID_ARGUMENT);
    assert!(last_error().contains("99"), "{}", last_error());

    // Outputs that alias inputs are refused before they become `&mut`.
    let input = tensor(NDP_DTYPE_FLOAT32, &good, x.as_mut_ptr().cast(), 128);
    let aliased = tensor(NDP_DTYPE_FLOAT32, &good, x.as_mut_ptr().cast(), 128);
    assert_eq!(forward(engine, &input, &aliased), NDP_ERR_INVALID_ARGUMENT);

    // A rank buffer that is too small says how much is needed.
    let mut ndim = 1;
    let mut dims = [0usize; 1];
    // SAFETY: valid input; `dims` has `ndim` entries.
    let status =
        unsafe { ndp_engine_output_shape(engine, &input, 1, 0, dims.as_mut_ptr(), &mut ndim) };
    assert_eq!((status, ndim), (NDP_ERR_BUFFER_TOO_SMALL, 2));

    assert_eq!(ndp_engine_destroy(engine), NDP_OK);
    assert_eq!(forward(engine, &input, &output), NDP_ERR_INVALID_ARGUMENT);
}

fn bytemuck_bytes(values: &[f32]) -> &[u8] {
    // SAFETY: f32 has no padding and any byte is a valid u8; the length is exact.
    unsafe { std::slice::from_raw_parts(values.as_ptr().cast(), size_of_val(values)) }
}

#[test]
fn destroy_while_other_threads_are_inside_calls_is_safe() {
    let engine = create("nc:8,nc:9");
    let key = engine.addr();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                let engine = std::ptr::without_provenance::<ndp_engine_t>(key);
                let (mut ok, mut rejected) = (0, 0);
                for i in 0..200 {
                    let rows = 1 + (i + t) % 9;
                    let mut x = vec![t as f32; rows * 8];
                    let mut y = vec![0f32; rows * 8];
                    let shape = [rows, 8];
                    let input = tensor(NDP_DTYPE_FLOAT32, &shape, x.as_mut_ptr().cast(), rows * 32);
                    let output =
                        tensor(NDP_DTYPE_FLOAT32, &shape, y.as_mut_ptr().cast(), rows * 32);
                    match forward(engine, &input, &output) {
                        NDP_OK => {
                            assert!(y.iter().all(|&v| v == t as f32 * 2.0 + 1.0));
                            ok += 1;
                        }
                        NDP_ERR_INVALID_ARGUMENT => rejected += 1,
                        other => panic!("unexpected {other:?}: {}", last_error()),
                    }
                }
                (ok, rejected)
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(ndp_engine_destroy(engine), NDP_OK);
    let mut rejected = 0;
    for thread in threads {
        rejected += thread.join().unwrap().1;
    }
    // Every thread is stopped by the destroy sooner or later (or finished before it).
    let _ = rejected;
    assert_eq!(ndp_engine_destroy(engine), NDP_ERR_INVALID_ARGUMENT);
}

#[test]
fn core_health_and_readmit_through_the_c_abi() {
    if !nrt_mock::testing::in_child(
        "core_health_and_readmit_through_the_c_abi",
        &[("NRT_MOCK_FAULTS", "1:*:101")],
    ) {
        return;
    }
    let engine = create("nc:0,nc:1");
    let x = [1.0f32; 8 * 8];
    let mut y = [0.0f32; 8 * 8];
    let shape = [8usize, 8];
    let input = tensor(
        NDP_DTYPE_FLOAT32,
        &shape,
        x.as_ptr().cast_mut().cast(),
        8 * 8 * 4,
    );
    let output = tensor(NDP_DTYPE_FLOAT32, &shape, y.as_mut_ptr().cast(), 8 * 8 * 4);
    // Physical core 1 fails every execution with 101: three calls quarantine it.
    for _ in 0..3 {
        assert_eq!(forward(engine, &input, &output), NDP_ERR_CHUNK_FAILED);
        assert_eq!(ndp_last_nrt_status(), 101);
    }
    let mut health = ndp_core_health_t::default();
    // SAFETY: a valid engine and a writable out-struct.
    let status = unsafe { ndp_engine_core_health(engine, 1, &mut health) };
    assert_eq!(status, NDP_OK, "{}", last_error());
    assert_eq!(
        (
            health.logical,
            health.physical,
            health.quarantined,
            health.last_status
        ),
        (1, 1, 1, 101)
    );
    assert_eq!(health.consecutive_failures, 3);
    // Its chunks now run on core 0.
    assert_eq!(forward(engine, &input, &output), NDP_OK, "{}", last_error());
    assert!(y.iter().all(|&v| v == 3.0));
    // Out of range and NULL are errors, not crashes.
    // SAFETY: a valid engine and out-struct; the index is checked by the callee.
    let out_of_range = unsafe { ndp_engine_core_health(engine, 2, &mut health) };
    assert_eq!(out_of_range, NDP_ERR_INVALID_ARGUMENT);
    // SAFETY: a NULL out-pointer, which the callee rejects.
    let null_out = unsafe { ndp_engine_core_health(engine, 0, null_mut()) };
    assert_eq!(null_out, NDP_ERR_NULL_POINTER);
    assert_eq!(
        ndp_engine_readmit(engine, 7),
        NDP_ERR_INVALID_ARGUMENT,
        "not one of the cores"
    );
    assert_eq!(ndp_engine_readmit(engine, 1), NDP_OK, "{}", last_error());
    // SAFETY: as above.
    let status = unsafe { ndp_engine_core_health(engine, 1, &mut health) };
    assert_eq!(status, NDP_OK);
    assert_eq!((health.quarantined, health.consecutive_failures), (0, 0));
    assert_eq!(ndp_engine_destroy(engine), NDP_OK);
}

#[test]
fn core_metrics_count_rows_pad_rows_and_piece_latency() {
    let engine = create("nc:0,nc:1");
    // 10 rows on 2 cores of a batch-4 model: chunks of 5 = 4 + (1 padded to 4) each.
    let x = [1.0f32; 10 * 8];
    let mut y = [0.0f32; 10 * 8];
    let shape = [10usize, 8];
    let input = tensor(
        NDP_DTYPE_FLOAT32,
        &shape,
        x.as_ptr().cast_mut().cast(),
        x.len() * 4,
    );
    let output = tensor(
        NDP_DTYPE_FLOAT32,
        &shape,
        y.as_mut_ptr().cast(),
        y.len() * 4,
    );
    assert_eq!(forward(engine, &input, &output), NDP_OK, "{}", last_error());
    for index in 0..2 {
        let mut metrics = ndp_core_metrics_t::default();
        // SAFETY: a valid engine and a writable out-struct.
        let status = unsafe { ndp_engine_core_metrics(engine, index, &mut metrics) };
        assert_eq!(status, NDP_OK, "{}", last_error());
        assert_eq!(metrics.logical, index as i32);
        assert_eq!(
            (metrics.executions, metrics.rows, metrics.pad_rows),
            (2, 5, 3)
        );
        assert_eq!(metrics.piece_latency_us.iter().sum::<u64>(), 2);
    }
    // SAFETY: as above; the index is checked by the callee.
    let out_of_range = unsafe { ndp_engine_core_metrics(engine, 2, &mut Default::default()) };
    assert_eq!(out_of_range, NDP_ERR_INVALID_ARGUMENT);
    assert_eq!(ndp_engine_destroy(engine), NDP_OK);
}

#[test]
fn busy_retries_per_core_through_the_c_abi() {
    // Physical core 1's first two executions are refused as busy: retried, not failed.
    if !nrt_mock::testing::in_child(
        "busy_retries_per_core_through_the_c_abi",
        &[("NRT_MOCK_FAULTS", "1:1:1005;1:2:1005")],
    ) {
        return;
    }
    let engine = create("nc:0,nc:1");
    let x = [1.0f32; 8 * 8];
    let mut y = [0.0f32; 8 * 8];
    let shape = [8usize, 8];
    let input = tensor(
        NDP_DTYPE_FLOAT32,
        &shape,
        x.as_ptr().cast_mut().cast(),
        8 * 8 * 4,
    );
    let output = tensor(NDP_DTYPE_FLOAT32, &shape, y.as_mut_ptr().cast(), 8 * 8 * 4);
    assert_eq!(forward(engine, &input, &output), NDP_OK, "{}", last_error());
    assert!(y.iter().all(|&v| v == 3.0));
    let retries: Vec<u64> = (0..2)
        .map(|position| {
            let mut retries = u64::MAX;
            // SAFETY: a valid engine and a writable u64.
            let status = unsafe { ndp_engine_core_busy_retries(engine, position, &mut retries) };
            assert_eq!(status, NDP_OK, "{}", last_error());
            retries
        })
        .collect();
    assert_eq!(retries, [0, 2]);
    // SAFETY: a valid engine; the index is checked by the callee.
    let out_of_range = unsafe { ndp_engine_core_busy_retries(engine, 2, &mut 0) };
    assert_eq!(out_of_range, NDP_ERR_INVALID_ARGUMENT);
    // SAFETY: a NULL out-pointer, which the callee rejects.
    let null_out = unsafe { ndp_engine_core_busy_retries(engine, 0, null_mut()) };
    assert_eq!(null_out, NDP_ERR_NULL_POINTER);
    assert_eq!(ndp_engine_destroy(engine), NDP_OK);
}

#[test]
fn spread_small_calls_moves_single_row_calls_over_the_cores() {
    let executions_per_core = |spread: bool| {
        let engine = create_with("nc:0,nc:1", |config| config.spread_small_calls = spread);
        let x = [1.0f32; 8];
        let mut y = [0.0f32; 8];
        let shape = [1usize, 8];
        let input = tensor(NDP_DTYPE_FLOAT32, &shape, x.as_ptr().cast_mut().cast(), 32);
        let output = tensor(NDP_DTYPE_FLOAT32, &shape, y.as_mut_ptr().cast(), 32);
        for _ in 0..4 {
            assert_eq!(forward(engine, &input, &output), NDP_OK, "{}", last_error());
            assert_eq!(y, [3.0f32; 8]);
        }
        let per_core: Vec<u64> = (0..2)
            .map(|index| {
                let mut metrics = ndp_core_metrics_t::default();
                // SAFETY: a valid engine and a writable out-struct.
                let status = unsafe { ndp_engine_core_metrics(engine, index, &mut metrics) };
                assert_eq!(status, NDP_OK, "{}", last_error());
                metrics.executions
            })
            .collect();
        assert_eq!(ndp_engine_destroy(engine), NDP_OK);
        per_core
    };
    assert_eq!(
        executions_per_core(false),
        vec![4, 0],
        "chunk 0 on core 0, as the reference"
    );
    assert_eq!(executions_per_core(true), vec![2, 2]);
}
