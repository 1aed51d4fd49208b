//! The engine accepts models whatever numbering the runtime reports dtypes in: neuron-rt
//! checks the reported code against the tensor's size and shape (ARCHITECTURE.md, "Dtype
//! encodings"), so a runtime whose codes disagree with its version, or reports none, still
//! runs float32 models through the engine's unchanged checks, with the right results.

use dataparallel::{Config, DataParallel, Input, Output};
use neuron_rt::{Neff, Runtime};
use nrt_mock::neff::{DType, MockModel, Op};
use nrt_mock::testing::in_child;

/// An engine on two cores for `y = 2x + 1`, compiled batch 1, as the runtime reports it.
fn affine_engine() -> DataParallel {
    let runtime = Runtime::init().expect("the mock libnrt");
    let neff = Neff::from_bytes(
        MockModel::new(
            "affine",
            Op::Affine {
                scale: 2.0,
                bias: 1.0,
            },
        )
        .input("x", DType::Float32, &[1, 4])
        .output("y", DType::Float32, &[1, 4])
        .to_neff_bytes(),
    )
    .expect("mock NEFF");
    DataParallel::new(&runtime, &neff, Config::default().device_list("nc:0,nc:1"))
        .expect("the engine accepts the model")
}

/// Builds [`affine_engine`] and checks one forward of three rows.
fn affine_forward_is_right() {
    let engine = affine_engine();
    let x: Vec<f32> = (0..12).map(|i| i as f32).collect();
    // forward_into with the caller's float32 buffers: an input or output whose dtype the
    // runtime left unknown accepts any dtype of its element size.
    let mut y = vec![0.0f32; 12];
    engine
        .forward_into(
            &[Input::f32(&[3, 4], &x)],
            &mut [Output::f32(&[3, 4], &mut y)],
        )
        .expect("forward_into");
    assert_eq!(y, x.iter().map(|v| v * 2.0 + 1.0).collect::<Vec<_>>());
}

#[test]
fn engine_runs_models_of_a_runtime_reporting_the_other_encoding() {
    let env = [
        ("NRT_MOCK_TOTAL_CORES", "2"),
        ("NRT_MOCK_RUNTIME_VERSION", "2.29.0"),
        ("NRT_MOCK_DTYPE_ENCODING", "hardware"),
    ];
    if !in_child(
        "engine_runs_models_of_a_runtime_reporting_the_other_encoding",
        &env,
    ) {
        return;
    }
    affine_forward_is_right();
}

#[test]
fn engine_runs_models_of_an_older_runtime_with_sequential_codes() {
    let env = [
        ("NRT_MOCK_TOTAL_CORES", "2"),
        ("NRT_MOCK_RUNTIME_VERSION", "2.29.0"),
        ("NRT_MOCK_STRICT_INIT", "1"),
    ];
    if !in_child(
        "engine_runs_models_of_an_older_runtime_with_sequential_codes",
        &env,
    ) {
        return;
    }
    affine_forward_is_right();
}

#[test]
fn engine_runs_models_whose_dtype_codes_are_unknown() {
    let env = [
        ("NRT_MOCK_TOTAL_CORES", "2"),
        ("NRT_MOCK_DTYPE_ENCODING", "unknown"),
    ];
    if !in_child("engine_runs_models_whose_dtype_codes_are_unknown", &env) {
        return;
    }
    affine_forward_is_right();
}

#[test]
fn the_batcher_labels_outputs_of_unknown_dtype_as_their_raw_bits() {
    let env = [
        ("NRT_MOCK_TOTAL_CORES", "2"),
        ("NRT_MOCK_DTYPE_ENCODING", "unknown"),
    ];
    if !in_child(
        "the_batcher_labels_outputs_of_unknown_dtype_as_their_raw_bits",
        &env,
    ) {
        return;
    }
    use dataparallel::batcher::{Batcher, BatcherConfig, OwnedTensor, Request};
    use neuron_rt::DType as RtDType;
    let engine = affine_engine();
    assert_eq!(engine.spec().outputs[0].dtype, None);
    assert_eq!(
        engine.spec().outputs[0].dtype_or_raw(),
        Some(RtDType::UInt32)
    );
    let batcher = Batcher::new(std::sync::Arc::new(engine), BatcherConfig::default())
        .expect("a model with an unknown output dtype can be batched");
    let x: Vec<f32> = (0..8).map(|i| i as f32 - 3.5).collect();
    let response = batcher
        .submit(Request::new(vec![OwnedTensor::f32([2, 4], &x)]))
        .expect("submit")
        .wait()
        .expect("the request runs");
    let y = &response.outputs[0];
    assert_eq!(
        (y.dtype, y.shape.as_slice()),
        (RtDType::UInt32, &[2, 4][..])
    );
    let bits: Vec<u32> = y.to_vec::<u32>().expect("u32 view");
    let want: Vec<u32> = x.iter().map(|v| (v * 2.0 + 1.0).to_bits()).collect();
    assert_eq!(bits, want, "the raw bits are the float32 results");
}
