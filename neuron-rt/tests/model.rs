//! Models against the mock libnrt: tensor infos, every mock op checked against plain Rust,
//! tensor sets, mismatched sets, wrong cores, corrupt NEFFs and error messages.

mod common;

use neuron_rt::{DType, DeviceId, Error, Model, Neff, NeffError, Status, Tensor, TensorSet, Usage};
use nrt_mock::neff::{DType as MockDType, MockModel, Op};

/// Runs `model` on `inputs` (one f32 vector per model input) and returns every output.
fn run(model: &Model, inputs: &[Vec<f32>]) -> Vec<Vec<f32>> {
    let mut input_set = model.allocate_inputs().expect("allocate inputs");
    assert_eq!(input_set.len(), inputs.len());
    for (k, values) in inputs.iter().enumerate() {
        input_set
            .tensor_mut(k)
            .expect("owned input")
            .write_slice(0, values)
            .expect("write input");
    }
    let mut output_set = model.allocate_outputs().expect("allocate outputs");
    model.execute(&input_set, &mut output_set).expect("execute");
    (0..output_set.len())
        .map(|k| {
            output_set
                .tensor(k)
                .expect("output")
                .to_vec()
                .expect("read output")
        })
        .collect()
}

#[test]
fn tensor_infos_describe_the_model() {
    let runtime = common::runtime();
    let mock = MockModel::new("infos", Op::Identity)
        .input("pixels", MockDType::Float32, &[4, 8])
        .input("mask", MockDType::Int32, &[4, 2, 3])
        .output("pixels_out", MockDType::Float32, &[4, 8])
        .output("mask_out", MockDType::Int32, &[4, 2, 3]);
    let model = common::load(&runtime, &mock, 2);
    assert_eq!(model.name(), "infos");
    assert_eq!(model.core(), DeviceId::new(2));
    assert_eq!(model.physical_core(), Some(2));
    assert!(model.runtime().same_as(&runtime));

    let inputs = model.inputs();
    assert_eq!(inputs.len(), 2);
    assert_eq!(inputs[0].name, "pixels");
    assert_eq!(inputs[0].usage, Usage::Input);
    assert_eq!(inputs[0].shape, [4, 8]);
    assert_eq!(
        inputs[0].dtype,
        Some(DType::Float32),
        "raw {}",
        inputs[0].raw_dtype
    );
    assert_eq!(inputs[0].size, 4 * 8 * 4);
    assert_eq!(inputs[0].elements(), 32);
    assert_eq!(inputs[1].name, "mask");
    assert_eq!(inputs[1].shape, [4, 2, 3]);
    assert_eq!(inputs[1].dtype, Some(DType::Int32));
    assert_eq!(inputs[1].size, 4 * 6 * 4);

    let outputs = model.outputs();
    let names: Vec<&str> = outputs.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["pixels_out", "mask_out"]);
    assert!(outputs.iter().all(|i| i.usage == Usage::Output));
    assert_eq!(outputs[1].dtype, Some(DType::Int32));

    // The allocated sets follow the infos.
    let set = model.allocate_inputs().expect("inputs");
    assert_eq!(set.names().collect::<Vec<_>>(), ["pixels", "mask"]);
    assert_eq!(set.get("mask").expect("mask").size(), 96);
    assert!(set.get("nope").is_none());

    let debug = format!("{model:?}");
    assert!(
        debug.contains("infos") && debug.contains("pixels"),
        "{debug}"
    );
}

#[test]
fn identity_copies_every_input() {
    let runtime = common::runtime();
    let model = common::load(
        &runtime,
        &common::mock_model("identity", Op::Identity, 2, 2, &[3, 5]),
        1,
    );
    let a = common::values(15, 1.0);
    let b = common::values(15, -40.0);
    let out = run(&model, &[a.clone(), b.clone()]);
    assert_eq!(out, [a, b]);
}

#[test]
fn affine_matches_plain_rust() {
    let runtime = common::runtime();
    let (scale, bias) = (-1.75f32, 0.3f32);
    let model = common::load(
        &runtime,
        &common::mock_model("affine", Op::Affine { scale, bias }, 1, 1, &[4, 8]),
        0,
    );
    let x = common::values(32, 0.1);
    let out = run(&model, std::slice::from_ref(&x));
    let want: Vec<f32> = x.iter().map(|v| v * scale + bias).collect();
    assert_eq!(out, [want]);
}

#[test]
fn add_matches_plain_rust() {
    let runtime = common::runtime();
    let model = common::load(
        &runtime,
        &common::mock_model("add", Op::Add, 2, 1, &[2, 16]),
        3,
    );
    let a = common::values(32, 0.7);
    let b = common::values(32, 100.0);
    let out = run(&model, &[a.clone(), b.clone()]);
    let want: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
    assert_eq!(out, [want]);
}

#[test]
fn rowsum_matches_plain_rust() {
    let runtime = common::runtime();
    let (rows, width, out_features) = (3usize, 10usize, 4usize);
    let mock = MockModel::new(
        "rowsum",
        Op::RowSum {
            out_features: out_features as u32,
        },
    )
    .input("x", MockDType::Float32, &[rows as u32, 2, 5])
    .output("y", MockDType::Float32, &[rows as u32, out_features as u32]);
    let model = common::load(&runtime, &mock, 0);
    let x = common::values(rows * width, 0.01);
    let out = run(&model, std::slice::from_ref(&x));

    let mut want = vec![0f32; rows * out_features];
    for r in 0..rows {
        for i in 0..width {
            want[r * out_features + i % out_features] += x[r * width + i];
        }
    }
    assert_eq!(out, [want]);
}

#[test]
fn tensor_set_replaces_an_entry_of_the_same_name() {
    let runtime = common::runtime();
    let model = common::load(
        &runtime,
        &common::mock_model("identity", Op::Identity, 1, 1, &[2, 2]),
        0,
    );
    let size = model.inputs()[0].size;
    let mut first = Tensor::allocate_device(&runtime, DeviceId::new(0), size, "first").expect("a");
    first.write_slice(0, &[1f32; 4]).expect("write a");
    let mut second =
        Tensor::allocate_device(&runtime, DeviceId::new(0), size, "second").expect("b");
    second.write_slice(0, &[2f32; 4]).expect("write b");

    let mut inputs = TensorSet::new(&runtime).expect("set");
    assert!(inputs.is_empty());
    inputs.insert("x0", first).expect("insert first");
    inputs
        .insert("x0", second)
        .expect("insert second under the same name");
    assert_eq!(inputs.len(), 1);
    assert_eq!(inputs.get("x0").expect("x0").name(), "second");

    let mut outputs = model.allocate_outputs().expect("outputs");
    model.execute(&inputs, &mut outputs).expect("execute");
    let y: Vec<f32> = outputs.get("y0").expect("y0").to_vec().expect("read");
    assert_eq!(y, [2.0; 4], "libnrt sees the replacement too");

    // Replacing a borrowed entry by an owned one, and writing through `get_mut`.
    let borrowed = Tensor::allocate_device(&runtime, DeviceId::new(0), size, "b").expect("c");
    let mut set = TensorSet::new(&runtime).expect("set");
    set.add("x0", &borrowed).expect("add");
    assert!(
        set.get_mut("x0").is_none(),
        "borrowed entries are not writable"
    );
    set.insert(
        "x0",
        Tensor::allocate_device(&runtime, DeviceId::new(0), size, "owned").expect("d"),
    )
    .expect("replace");
    set.get_mut("x0")
        .expect("owned now")
        .write_slice(0, &[3f32; 4])
        .expect("write");
    model.execute(&set, &mut outputs).expect("execute");
    let y: Vec<f32> = outputs.tensor(0).expect("y0").to_vec().expect("read");
    assert_eq!(y, [3.0; 4]);
}

/// Asserts `err` is libnrt's `NRT_INVALID` from `nrt_execute`, with the remedy.
fn assert_execute_invalid(err: &Error) {
    match err {
        Error::Nrt {
            op, status, remedy, ..
        } => {
            assert_eq!(*op, "nrt_execute");
            assert_eq!(*status, Status::Invalid);
            assert!(
                remedy.is_some_and(|r| r.contains("name exactly")),
                "{remedy:?}"
            );
        }
        other => panic!("expected Error::Nrt NRT_INVALID from nrt_execute, got {other:?}"),
    }
}

#[test]
fn mismatched_sets_fail_execute_with_invalid() {
    let runtime = common::runtime();
    let model = common::load(&runtime, &common::affine(), 0);
    let size = model.inputs()[0].size;
    let mut outputs = model.allocate_outputs().expect("outputs");

    // Wrong size.
    let mut inputs = TensorSet::new(&runtime).expect("set");
    inputs
        .insert(
            "x0",
            Tensor::allocate_device(&runtime, DeviceId::new(0), size - 4, "x0").expect("short"),
        )
        .expect("insert");
    let err = model
        .execute(&inputs, &mut outputs)
        .expect_err("wrong size");
    assert_execute_invalid(&err);
    let text = err.to_string();
    assert!(text.contains("NRT_INVALID (2)"), "{text}");
    assert!(text.contains("`affine`") && text.contains("nc:0"), "{text}");

    // Wrong name.
    let mut inputs = TensorSet::new(&runtime).expect("set");
    inputs
        .insert(
            "input",
            Tensor::allocate_device(&runtime, DeviceId::new(0), size, "input").expect("t"),
        )
        .expect("insert");
    assert_execute_invalid(
        &model
            .execute(&inputs, &mut outputs)
            .expect_err("wrong name"),
    );

    // Missing input: an empty set. (Using a set or tensor after its runtime is gone cannot
    // be written: every handle holds the runtime, and a set borrows what it names; the
    // `compile_fail` doctests in `src/tensor_set.rs` pin that. What the types cannot see,
    // a set that lacks one of the model's names, is a typed error from libnrt.)
    let inputs = TensorSet::new(&runtime).expect("set");
    assert_execute_invalid(&model.execute(&inputs, &mut outputs).expect_err("no input"));

    // Missing output.
    let inputs = model.allocate_inputs().expect("inputs");
    let mut empty = TensorSet::new(&runtime).expect("set");
    assert_execute_invalid(&model.execute(&inputs, &mut empty).expect_err("no output"));

    // The input on another core than the model's.
    let mut inputs = TensorSet::new(&runtime).expect("set");
    inputs
        .insert(
            "x0",
            Tensor::allocate_device(&runtime, DeviceId::new(1), size, "x0").expect("on nc:1"),
        )
        .expect("insert");
    assert_execute_invalid(
        &model
            .execute(&inputs, &mut outputs)
            .expect_err("wrong core"),
    );

    // The right sets still work afterwards.
    let inputs = model.allocate_inputs().expect("inputs");
    model.execute(&inputs, &mut outputs).expect("execute");
}

#[test]
fn load_on_a_core_we_do_not_own_is_an_invalid_argument() {
    let runtime = common::runtime();
    let neff = Neff::from_bytes(common::affine().to_neff_bytes()).expect("neff");
    let err = Model::load(&runtime, &neff, DeviceId::new(99)).expect_err("nc:99");
    match &err {
        Error::InvalidArgument { op, message } => {
            assert_eq!(*op, "nrt_load");
            assert!(message.contains("nc:99"), "{message}");
        }
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
    // The same NEFF loads on a core we own, by path too.
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("affine.neff");
    common::affine().write_neff(&path).expect("write neff");
    let neff = Neff::from_path(&path).expect("from_path");
    assert!(neff.is_mock());
    assert_eq!(neff.name(), "affine");
    let model = Model::load(&runtime, &neff, DeviceId::new(5)).expect("load from path");
    assert_eq!(model.name(), "affine");
    assert_eq!(model.physical_core(), Some(5));
}

#[test]
fn corrupt_neffs_are_rejected_by_load() {
    let runtime = common::runtime();
    let good = common::affine().to_neff_bytes();
    let core = DeviceId::new(0);

    let mut bad_json = good.clone();
    let last = bad_json.len() - 1;
    bad_json[last] = b'#';
    let mut bad_header_size = good.clone();
    bad_header_size[8..16].fill(0xFF);
    let mut not_mock = good.clone();
    not_mock[1024..].fill(b' ');
    // A real NEFF's header (build version not `nrt-mock`): the mock refuses to run it.
    let mut real = good.clone();
    real[40..48].copy_from_slice(b"2.21.0.0");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("real NEFF", real),
        ("empty", Vec::new()),
        ("short", good[..100].to_vec()),
        ("header only", good[..1024].to_vec()),
        ("truncated payload", good[..good.len() - 10].to_vec()),
        ("broken JSON", bad_json),
        ("blank payload", not_mock),
        ("garbage", vec![0x5A; 4096]),
        ("bad header size", bad_header_size.clone()),
    ];
    for (what, bytes) in cases {
        match Model::load_bytes(&runtime, bytes, core) {
            Err(Error::Nrt { op, status, .. }) => {
                assert_eq!(op, "nrt_load", "{what}");
                assert_eq!(status, Status::Invalid, "{what}");
            }
            Err(other) => panic!("{what}: expected Error::Nrt NRT_INVALID, got {other:?}"),
            Ok(model) => panic!("{what}: loaded {model:?}"),
        }
    }
    // A bad header size never reaches libnrt when parsed first.
    let err = Neff::from_bytes(bad_header_size).expect_err("bad header size");
    assert!(matches!(err, NeffError::BadHeaderSize { .. }), "{err:?}");
    // The good image still loads.
    Model::load_bytes(&runtime, good, core).expect("the intact NEFF");
}

#[test]
fn neff_from_a_missing_path_names_it() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("no-such-model.neff");
    let err = Neff::from_path(&path).expect_err("missing file");
    assert!(matches!(err, NeffError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains(&*path.to_string_lossy()), "{err}");
    let err = Error::from(err);
    assert!(err.to_string().contains("no-such-model.neff"), "{err}");

    // A file that is not a NEFF: the error names the file and the reason.
    let junk = dir.path().join("junk.neff");
    std::fs::write(&junk, b"hello").expect("write");
    let err = Neff::from_path(&junk).expect_err("junk");
    assert!(
        matches!(err.root(), NeffError::TooShort { len: 5 }),
        "{err:?}"
    );
    assert!(err.to_string().contains("junk.neff"), "{err}");
}

#[test]
fn nrt_errors_display_op_status_name_and_code() {
    let runtime = common::runtime();
    let err = Model::load_bytes(&runtime, vec![0u8; 2048], DeviceId::new(0)).expect_err("junk");
    let text = err.to_string();
    assert!(text.starts_with("nrt_load failed: "), "{text}");
    assert!(text.contains("NRT_INVALID"), "{text}");
    assert!(text.contains("(2)"), "{text}");
    assert!(
        text.contains("2048 bytes") && text.contains("nc:0"),
        "{text}"
    );
    assert_eq!(err.status(), Some(Status::Invalid));
    assert_eq!(err.status().map(Status::raw), Some(2));

    let oob = Tensor::allocate_host(&runtime, 4, "t")
        .expect("t")
        .read(2, &mut [0; 4])
        .expect_err("oob");
    assert_eq!(oob.status(), None);
    assert_eq!(oob.remedy(), None);
    assert!(oob.to_string().starts_with("nrt_tensor_read: "), "{oob}");
}
