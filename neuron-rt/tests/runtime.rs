//! The runtime against the mock libnrt: lifecycle, visible-core remapping end to end, core
//! ownership across processes, memory budgets and injected faults.
//!
//! Every test here needs its own environment or its own runtime, so each runs its body in a
//! child process (`nrt_mock::testing`); the children of the cross-process ownership test are
//! `#[ignore]`d test bodies that test starts.

mod common;

use std::io::{BufRead, Write};

use neuron_rt::{CoreMap, DeviceId, Error, Model, Runtime, Status, Tensor, TensorSet};
use nrt_mock::neff::{DType as MockDType, MockModel, Op};
use nrt_mock::testing::{ChildTest, child_only, in_child};

/// The mock's `core_id` model: one float32 input `[1, 4]`, one int32 output `[1, 1]`.
fn core_id_model() -> MockModel {
    MockModel::new("core_id", Op::CoreId)
        .input("x", MockDType::Float32, &[1, 4])
        .output("core", MockDType::Int32, &[1, 1])
}

/// Runs the `core_id` model on `device` and returns the physical core it reports.
fn physical_core_that_ran(runtime: &Runtime, device: DeviceId) -> i32 {
    let model = common::load(runtime, &core_id_model(), device.index());
    assert_eq!(model.core(), device);
    let inputs = model.allocate_inputs().expect("allocate inputs");
    let mut outputs = model.allocate_outputs().expect("allocate outputs");
    model.execute(&inputs, &mut outputs).expect("execute");
    let out: Vec<i32> = outputs
        .tensor(0)
        .expect("one output")
        .to_vec()
        .expect("read");
    assert_eq!(out.len(), 1);
    out[0]
}

#[test]
fn lifecycle_init_version_cores_close_and_reinit() {
    if !in_child(
        "lifecycle_init_version_cores_close_and_reinit",
        &[("NRT_MOCK_TOTAL_CORES", "24")],
    ) {
        return;
    }
    let runtime = Runtime::init().expect("init");
    let version = runtime.version();
    assert!(version.is_mock(), "{version}");
    assert_eq!((version.major, version.minor), (2, 30), "{version}");
    assert!(version.to_string().starts_with("2.30."), "{version}");
    assert_eq!(runtime.library_path(), nrt_mock::testing::library_path());
    assert_eq!(runtime.total_cores(), 24);
    assert_eq!(runtime.visible_cores(), 24);
    match runtime.core_map() {
        CoreMap::Known(cores) => {
            assert_eq!(cores.len(), 24);
            assert_eq!(cores.physical(5), Some(5));
        }
        other => panic!("core map {other:?}"),
    }
    assert_eq!(runtime.physical_core(DeviceId::new(23)), Some(23));
    assert_eq!(runtime.all_devices().expect("all devices").len(), 24);

    // A second init shares the live runtime.
    let again = Runtime::init().expect("second init");
    assert!(again.same_as(&runtime));

    // Handles keep the runtime alive after the Runtime handles drop.
    let model = common::load(&runtime, &common::affine(), 3);
    let inputs = model.allocate_inputs().expect("inputs");
    let mut outputs = model.allocate_outputs().expect("outputs");
    let host = Tensor::allocate_host(&runtime, 16, "host").expect("host tensor");
    drop(again);
    drop(runtime);
    model
        .execute(&inputs, &mut outputs)
        .expect("execute after Runtime drops");
    let live = common::counters();
    assert_eq!(live.live_models, 1);
    assert_eq!(live.live_tensors, 3);
    assert_eq!(live.live_tensor_sets, 2);

    drop((model, inputs, outputs, host));
    let after = common::counters();
    assert_eq!(
        (
            after.live_models,
            after.live_tensors,
            after.live_tensor_sets
        ),
        (0, 0, 0),
        "live handles after dropping everything"
    );
    // The last handle closed libnrt: a raw call now reports NRT_CLOSED.
    assert_eq!(common::raw_allocate_set_status(), Status::Closed);

    // A later init starts afresh.
    let runtime = Runtime::init().expect("init after close");
    assert_eq!(runtime.visible_cores(), 24);
    let set = TensorSet::new(&runtime).expect("set after re-init");
    drop(set);
    assert_eq!(physical_core_that_ran(&runtime, DeviceId::new(7)), 7);
}

#[test]
fn visible_cores_12_to_23_remap_nc1_to_physical_13() {
    if !in_child(
        "visible_cores_12_to_23_remap_nc1_to_physical_13",
        &[
            ("NRT_MOCK_TOTAL_CORES", "24"),
            ("NEURON_RT_VISIBLE_CORES", "12-23"),
        ],
    ) {
        return;
    }
    let runtime = Runtime::init().expect("init");
    assert_eq!(runtime.total_cores(), 24);
    assert_eq!(runtime.visible_cores(), 12);
    let ids = runtime.device_ids("nc:1").expect("nc:1 is visible");
    let nc1 = ids.as_slice()[0];
    assert_eq!(nc1, DeviceId::new(1));
    assert_eq!(runtime.physical_core(nc1), Some(13));
    assert_eq!(physical_core_that_ran(&runtime, nc1), 13);
    assert_eq!(
        physical_core_that_ran(&runtime, DeviceId::new(11)),
        23,
        "the last visible core"
    );

    let err = runtime
        .device_ids("nc:13")
        .expect_err("nc:13 is past 12 cores");
    assert!(matches!(err, Error::DeviceId(_)), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("12 NeuronCores"), "{text}");
    assert!(text.contains("nc:13"), "{text}");

    let err = Model::load_bytes(&runtime, core_id_model().to_neff_bytes(), DeviceId::new(12))
        .expect_err("nc:12 is past 12 cores");
    assert!(matches!(err, Error::InvalidArgument { .. }), "{err:?}");
}

#[test]
fn visible_cores_0_to_11_keep_physical_numbers() {
    if !in_child(
        "visible_cores_0_to_11_keep_physical_numbers",
        &[
            ("NRT_MOCK_TOTAL_CORES", "24"),
            ("NEURON_RT_VISIBLE_CORES", "0-11"),
        ],
    ) {
        return;
    }
    let runtime = Runtime::init().expect("init");
    assert_eq!(runtime.visible_cores(), 12);
    let nc0 = runtime.device_ids("nc:0").expect("nc:0").as_slice()[0];
    assert_eq!(runtime.physical_core(nc0), Some(0));
    assert_eq!(physical_core_that_ran(&runtime, nc0), 0);
}

#[test]
fn malformed_visible_cores_is_a_typed_error() {
    if !in_child(
        "malformed_visible_cores_is_a_typed_error",
        &[
            ("NRT_MOCK_TOTAL_CORES", "24"),
            ("NEURON_RT_VISIBLE_CORES", "20-30"),
        ],
    ) {
        return;
    }
    let err = Runtime::init().expect_err("cores past the total");
    assert!(matches!(err, Error::VisibleCores(_)), "{err:?}");
    assert!(err.to_string().contains("NEURON_RT_VISIBLE_CORES"), "{err}");
}

#[test]
fn malformed_num_cores_is_a_typed_error_before_init() {
    let values = ["-1", "abc", "100000"];
    for (i, value) in values.iter().enumerate() {
        let name = "malformed_num_cores_is_a_typed_error_before_init";
        let case = format!("{i}");
        if std::env::var("NUM_CORES_CASE").ok().as_deref() != Some(case.as_str())
            && std::env::var("NUM_CORES_CASE").is_ok()
        {
            continue;
        }
        if !in_child(
            name,
            &[
                ("NRT_MOCK_TOTAL_CORES", "24"),
                ("NEURON_RT_NUM_CORES", value),
                ("NUM_CORES_CASE", case.as_str()),
            ],
        ) {
            continue;
        }
        let err = Runtime::init().expect_err("a malformed core count");
        assert!(matches!(err, Error::CoreEnv { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains("NEURON_RT_NUM_CORES"), "{text}");
        assert!(text.contains(value), "{text}");
        assert!(text.contains("0 (every core) to 24"), "{text}");
        assert!(!text.contains('\n'), "{text}");
    }
}

/// The test that starts the children below.
const OWNERSHIP_TEST: &str = "cores_held_by_another_process";

/// Child of `cores_held_by_another_process`: holds its cores until its stdin closes.
#[test]
#[ignore = "runs only as a child process of cores_held_by_another_process"]
fn holder_child() {
    child_only("holder_child", OWNERSHIP_TEST);
    let runtime = Runtime::init().expect("holder init");
    println!("\nHOLDING {}", runtime.visible_cores());
    std::io::stdout().flush().expect("flush");
    // Hold the cores until the parent closes our stdin (or dies, which closes it too).
    let _ = std::io::stdin().lock().lines().count();
    drop(runtime);
}

/// Child of `cores_held_by_another_process`: its cores overlap the holder's, so `nrt_init`
/// fails.
#[test]
#[ignore = "runs only as a child process of cores_held_by_another_process"]
fn overlapping_child() {
    child_only("overlapping_child", OWNERSHIP_TEST);
    let err = Runtime::init().expect_err("cores 2-5 overlap the holder's 0-3");
    match &err {
        Error::Nrt { op, .. } => assert_eq!(*op, "nrt_init"),
        other => panic!("expected Error::Nrt from nrt_init, got {other:?}"),
    }
    let remedy = err.remedy().expect("a remedy");
    assert!(remedy.contains("NEURON_RT_VISIBLE_CORES"), "{remedy}");
    assert!(err.to_string().contains("NEURON_RT_VISIBLE_CORES"), "{err}");
    println!("REFUSED: {err}");
}

/// Child of `cores_held_by_another_process`: its four cores, starting at physical core
/// `FIRST_CORE`, are free, so it starts and runs on them.
#[test]
#[ignore = "runs only as a child process of cores_held_by_another_process"]
fn free_cores_child() {
    child_only("free_cores_child", OWNERSHIP_TEST);
    let first: i32 = std::env::var("FIRST_CORE")
        .expect("FIRST_CORE")
        .parse()
        .expect("FIRST_CORE is a core number");
    let runtime = Runtime::init().expect("the cores are free");
    assert_eq!(runtime.visible_cores(), 4);
    assert_eq!(physical_core_that_ran(&runtime, DeviceId::new(0)), first);
}

#[test]
fn cores_held_by_another_process() {
    let locks = tempfile::tempdir().expect("shared lock directory");
    let child = |name: &str, cores: &str| {
        ChildTest::new(name)
            .sharing_locks(locks.path())
            .env("NRT_MOCK_TOTAL_CORES", "24")
            .env("NEURON_RT_VISIBLE_CORES", cores)
    };

    let mut holder = child("holder_child", "0-3").spawn();
    holder.wait_for_line("HOLDING 4");

    child("overlapping_child", "2-5").run().assert_passed();
    child("free_cores_child", "4-7")
        .env("FIRST_CORE", "4")
        .run()
        .assert_passed();

    // Let the holder go; it must exit cleanly.
    holder.finish().assert_passed();

    // Released: the holder's cores can be taken again.
    child("free_cores_child", "0-3")
        .env("FIRST_CORE", "0")
        .run()
        .assert_passed();
}

#[test]
fn injected_fault_names_status_and_core() {
    if !in_child(
        "injected_fault_names_status_and_core",
        &[
            ("NRT_MOCK_TOTAL_CORES", "24"),
            ("NEURON_RT_VISIBLE_CORES", "2-5"),
            // The first execution on physical core 3 (logical nc:1) fails with 1004.
            ("NRT_MOCK_FAULTS", "3:1:1004"),
        ],
    ) {
        return;
    }
    let runtime = Runtime::init().expect("init");
    let model = common::load(&runtime, &common::affine(), 1);
    assert_eq!(model.physical_core(), Some(3));
    let mut inputs = model.allocate_inputs().expect("inputs");
    let mut outputs = model.allocate_outputs().expect("outputs");
    inputs
        .tensor_mut(0)
        .expect("x0")
        .write_slice(0, &common::values(32, 1.0))
        .expect("write");

    let err = model
        .execute(&inputs, &mut outputs)
        .expect_err("the injected fault");
    assert_eq!(err.status(), Some(Status::ExecCompletedWithErr), "{err:?}");
    assert_eq!(err.status().map(Status::raw), Some(1004));
    let text = err.to_string();
    assert!(text.contains("nrt_execute"), "{text}");
    assert!(text.contains("NRT_EXEC_COMPLETED_WITH_ERR"), "{text}");
    assert!(text.contains("1004"), "{text}");
    assert!(text.contains("nc:1"), "{text}");
    assert!(text.contains("physical core 3"), "{text}");

    // Only the first execution was faulted.
    model
        .execute(&inputs, &mut outputs)
        .expect("second execute");
    let y: Vec<f32> = outputs.tensor(0).expect("y0").to_vec().expect("read");
    let want: Vec<f32> = common::values(32, 1.0)
        .iter()
        .map(|x| x * 2.0 + 1.0)
        .collect();
    assert_eq!(y, want);
    assert_eq!(common::counters().executions[3], 2);

    // The same through the mock's control API, at run time: every execution on
    // physical core 3 fails until the rules are cleared; other cores are unaffected.
    common::mock().set_faults("3:*:1004").expect("set faults");
    for _ in 0..2 {
        let err = model.execute(&inputs, &mut outputs).expect_err("faulted");
        assert_eq!(err.status(), Some(Status::ExecCompletedWithErr), "{err:?}");
    }
    let other = common::load(&runtime, &common::affine(), 0);
    let other_inputs = other.allocate_inputs().expect("inputs");
    let mut other_outputs = other.allocate_outputs().expect("outputs");
    other
        .execute(&other_inputs, &mut other_outputs)
        .expect("nc:0 is not faulted");
    common::mock().set_faults("").expect("clear faults");
    model
        .execute(&inputs, &mut outputs)
        .expect("after clearing");
}

#[test]
fn core_memory_budget_gives_resource_error() {
    if !in_child(
        "core_memory_budget_gives_resource_error",
        &[
            ("NRT_MOCK_TOTAL_CORES", "4"),
            ("NRT_MOCK_CORE_MEMORY", "4096"),
        ],
    ) {
        return;
    }
    let runtime = Runtime::init().expect("init");
    assert_eq!(runtime.total_cores(), 4);
    let first =
        Tensor::allocate_device(&runtime, DeviceId::new(0), 3000, "a").expect("fits the budget");
    let err = Tensor::allocate_device(&runtime, DeviceId::new(0), 3000, "b")
        .expect_err("over the budget");
    assert_eq!(err.status(), Some(Status::Resource), "{err:?}");
    let remedy = err.remedy().expect("a remedy");
    assert!(remedy.contains("memory"), "{remedy}");
    // Another core has its own budget; freeing makes room again.
    Tensor::allocate_device(&runtime, DeviceId::new(1), 3000, "c").expect("nc:1");
    drop(first);
    Tensor::allocate_device(&runtime, DeviceId::new(0), 3000, "d").expect("after free");
}

#[test]
fn the_builder_chooses_the_library_without_the_environment() {
    const NAME: &str = "the_builder_chooses_the_library_without_the_environment";
    if let Some(child) = ChildTest::new(NAME)
        .env_remove("NRT_DYLIB_PATH")
        .env("MOCK_LIBRARY", nrt_mock::testing::library_path())
        .run_in_parent()
    {
        child.assert_passed();
        return;
    }
    assert!(std::env::var_os("NRT_DYLIB_PATH").is_none());
    let mock = std::path::PathBuf::from(std::env::var_os("MOCK_LIBRARY").expect("MOCK_LIBRARY"));
    let runtime = Runtime::builder()
        .library(&mock)
        .init()
        .expect("init with the mock chosen in code");
    assert!(runtime.version().is_mock());
    assert_eq!(runtime.library_path(), mock);
    assert_eq!(physical_core_that_ran(&runtime, DeviceId::new(2)), 2);

    // Naming the loaded library again shares the runtime; another one is refused.
    let again = Runtime::builder()
        .library(&mock)
        .init()
        .expect("same library");
    assert!(again.same_as(&runtime));
    let err = Runtime::builder()
        .library("/opt/aws/neuron/lib/libnrt.so.1")
        .init()
        .expect_err("a different library after loading");
    assert!(matches!(err, Error::LibraryPath(_)), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("/opt/aws/neuron/lib/libnrt.so.1"), "{text}");
    assert!(text.contains(&mock.display().to_string()), "{text}");
    assert!(text.contains("before the first Runtime::init"), "{text}");
}

/// Loads the affine model and returns its input's dtype and size.
fn affine_input_dtype(runtime: &Runtime) -> (Option<neuron_rt::DType>, usize) {
    let model = common::load(runtime, &common::affine(), 0);
    let info = &model.inputs()[0];
    (info.dtype, info.size)
}

#[test]
fn older_runtime_version_is_read_after_init_with_sequential_codes() {
    // Strict: the mock refuses nrt_get_version before nrt_init, as only the core counts are
    // documented as usable then.
    let env = [
        ("NRT_MOCK_RUNTIME_VERSION", "2.29.0"),
        ("NRT_MOCK_STRICT_INIT", "1"),
    ];
    if !in_child(
        "older_runtime_version_is_read_after_init_with_sequential_codes",
        &env,
    ) {
        return;
    }
    let runtime = Runtime::init().expect("init reads the version after nrt_init");
    let version = runtime.version();
    assert_eq!((version.major, version.minor, version.patch), (2, 29, 0));
    assert!(!version.at_least(2, 30, 0));
    assert_eq!(
        runtime.dtype_encoding(),
        neuron_rt::DTypeEncoding::Sequential
    );
    assert_eq!(
        affine_input_dtype(&runtime),
        (Some(neuron_rt::DType::Float32), 128)
    );
}

#[test]
fn dtype_codes_in_the_other_encoding_are_recognised_by_size() {
    // A 2.29 runtime reporting the newer codes: FLOAT32 is 10 there, INT64 in the numbering
    // the version implies, whose 8-byte elements contradict the tensor's size.
    let env = [
        ("NRT_MOCK_RUNTIME_VERSION", "2.29.0"),
        ("NRT_MOCK_DTYPE_ENCODING", "hardware"),
    ];
    if !in_child(
        "dtype_codes_in_the_other_encoding_are_recognised_by_size",
        &env,
    ) {
        return;
    }
    let runtime = Runtime::init().expect("init");
    assert_eq!(
        affine_input_dtype(&runtime),
        (Some(neuron_rt::DType::Float32), 128)
    );
}

#[test]
fn unknown_dtype_codes_leave_the_element_size_to_the_size() {
    let env = [("NRT_MOCK_DTYPE_ENCODING", "unknown")];
    if !in_child(
        "unknown_dtype_codes_leave_the_element_size_to_the_size",
        &env,
    ) {
        return;
    }
    let runtime = Runtime::init().expect("init");
    let model = common::load(&runtime, &common::affine(), 0);
    let info = &model.inputs()[0];
    assert_eq!((info.dtype, info.raw_dtype, info.size), (None, 0, 128));
    assert_eq!(info.size / info.elements(), 4);
}

/// The affine mock NEFF with `neff_version_major` 3, newer than any this crate knows.
fn affine_neff_v3() -> neuron_rt::Neff {
    let mut bytes = common::affine().to_neff_bytes();
    bytes[24..32].copy_from_slice(&3u64.to_le_bytes());
    neuron_rt::Neff::from_bytes(bytes).expect("a newer NEFF major version is left to nrt_load")
}

#[test]
fn newer_neff_major_version_is_refused_by_the_runtime_not_the_header_check() {
    if !in_child(
        "newer_neff_major_version_is_refused_by_the_runtime_not_the_header_check",
        &[],
    ) {
        return;
    }
    let runtime = Runtime::init().expect("init");
    let error = Model::load(&runtime, &affine_neff_v3(), DeviceId::new(0))
        .expect_err("this runtime loads NEFF version 2 only");
    assert_eq!(
        error.status(),
        Some(Status::UnsupportedNeffVersion),
        "{error}"
    );
    assert!(error.to_string().contains("recompile"), "{error}");
}

#[test]
fn newer_neff_major_version_loads_on_a_runtime_that_takes_it() {
    if !in_child(
        "newer_neff_major_version_loads_on_a_runtime_that_takes_it",
        &[("NRT_MOCK_MAX_NEFF_MAJOR", "3")],
    ) {
        return;
    }
    let runtime = Runtime::init().expect("init");
    let model = Model::load(&runtime, &affine_neff_v3(), DeviceId::new(0)).expect("load");
    assert_eq!(model.inputs().len(), 1);
}

#[test]
fn non_contiguous_visible_cores_refused_by_the_runtime_say_how_to_fix_it() {
    let env = [
        ("NRT_MOCK_TOTAL_CORES", "8"),
        ("NEURON_RT_VISIBLE_CORES", "1,3"),
        ("NRT_MOCK_CONTIGUOUS_CORES", "1"),
    ];
    if !in_child(
        "non_contiguous_visible_cores_refused_by_the_runtime_say_how_to_fix_it",
        &env,
    ) {
        return;
    }
    let error = Runtime::init().expect_err("this runtime wants a contiguous range");
    let message = error.to_string();
    assert!(message.contains("not a contiguous range"), "{message}");
    assert!(
        message.contains("1,3") && message.contains("1-2"),
        "{message}"
    );
}

#[test]
fn non_contiguous_visible_cores_are_kept_when_the_runtime_accepts_them() {
    let env = [
        ("NRT_MOCK_TOTAL_CORES", "8"),
        ("NEURON_RT_VISIBLE_CORES", "1,3"),
    ];
    if !in_child(
        "non_contiguous_visible_cores_are_kept_when_the_runtime_accepts_them",
        &env,
    ) {
        return;
    }
    let runtime = Runtime::init().expect("init");
    assert_eq!(runtime.physical_core(DeviceId::new(1)), Some(3));
    assert_eq!(physical_core_that_ran(&runtime, DeviceId::new(1)), 3);
}

/// The `core_id` mock NEFF compiled for logical cores of `lnc` physical cores.
fn core_id_neff(lnc: u32) -> neuron_rt::Neff {
    let mut bytes = core_id_model().to_neff_bytes();
    nrt_mock::neff::set_lnc_size(&mut bytes, lnc);
    neuron_rt::Neff::from_bytes(bytes).expect("mock NEFF")
}

#[test]
fn lnc_2_maps_logical_device_ids_to_pairs_of_physical_cores() {
    // trn2's default: 8 physical cores are 4 logical ones; NEURON_RT_VISIBLE_CORES numbers
    // logical cores, so 1-2 is physical cores 2-5.
    let env = [
        ("NRT_MOCK_TOTAL_CORES", "8"),
        ("NRT_MOCK_LNC", "2"),
        ("NEURON_RT_VISIBLE_CORES", "1-2"),
    ];
    if !in_child(
        "lnc_2_maps_logical_device_ids_to_pairs_of_physical_cores",
        &env,
    ) {
        return;
    }
    let runtime = Runtime::init().expect("init");
    assert_eq!(runtime.lnc(), 2);
    assert_eq!(runtime.total_cores(), 4);
    assert_eq!(runtime.total_physical_cores(), 8);
    assert_eq!(runtime.visible_cores(), 2);
    assert_eq!(runtime.physical_cores(DeviceId::new(0)), Some(2..4));
    assert_eq!(runtime.physical_cores(DeviceId::new(1)), Some(4..6));
    assert_eq!(runtime.physical_core(DeviceId::new(1)), Some(4));
    assert!(
        runtime.device_ids("nc:2").is_err(),
        "only two logical cores are visible"
    );

    for (device, physical) in [(0, 2), (1, 4)] {
        let model = Model::load(&runtime, &core_id_neff(2), DeviceId::new(device)).expect("load");
        assert_eq!(model.physical_core(), Some(physical));
        let inputs = model.allocate_inputs().expect("inputs");
        let mut outputs = model.allocate_outputs().expect("outputs");
        model.execute(&inputs, &mut outputs).expect("execute");
        let out: Vec<i32> = outputs.tensor(0).expect("output").to_vec().expect("read");
        assert_eq!(out, [physical as i32]);
    }
    // An execution on a logical core occupies both of its physical cores.
    let executions = common::counters().executions;
    assert_eq!(executions[2..6], [1, 1, 1, 1]);
    assert_eq!(executions[0..2], [0, 0]);

    // A NEFF compiled for LNC=1 is refused with what to do.
    let error = Model::load(&runtime, &core_id_neff(1), DeviceId::new(0))
        .expect_err("lnc_size 1 on an LNC=2 runtime");
    let message = error.to_string();
    assert!(
        message.contains("lnc_size 1") && message.contains("LNC=2"),
        "{message}"
    );
}
