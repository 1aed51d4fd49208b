//! The seed's example end to end, through every layer: with 24 cores, a process started
//! with `NEURON_RT_VISIBLE_CORES=12-23` runs `nc:1` on physical core 13 and rejects `nc:13`;
//! a process with `0-11` runs `nc:0` on physical core 0. The mock's `core_id` op writes the
//! physical core that ran each row, so the outputs prove where the rows went.

use dataparallel::{Config, DataParallel, Input};
use neuron_rt::{Neff, Runtime};
use nrt_mock::neff::{DType, MockModel, Op};
use nrt_mock::testing::in_child;

fn core_id_engine(devices: &str) -> Result<(Runtime, DataParallel), dataparallel::Error> {
    let runtime = Runtime::init().expect("the mock libnrt");
    let neff = Neff::from_bytes(
        MockModel::new("core-id", Op::CoreId)
            .input("x", DType::Float32, &[1, 4])
            .output("core", DType::Int32, &[1, 1])
            .to_neff_bytes(),
    )
    .expect("mock NEFF");
    let engine = DataParallel::new(&runtime, &neff, Config::default().device_list(devices))?;
    Ok((runtime, engine))
}

/// The physical core that ran each of `rows` rows.
fn cores_of_rows(engine: &DataParallel, rows: usize) -> Vec<i32> {
    let x = vec![0.0f32; rows * 4];
    let out = engine
        .forward(&[Input::f32(&[rows, 4], &x)])
        .expect("forward");
    out[0].to_vec().expect("int32 output")
}

#[test]
fn visible_cores_12_to_23_run_nc1_on_physical_13() {
    const NAME: &str = "visible_cores_12_to_23_run_nc1_on_physical_13";
    let env = [
        ("NRT_MOCK_TOTAL_CORES", "24"),
        ("NEURON_RT_VISIBLE_CORES", "12-23"),
    ];
    if !in_child(NAME, &env) {
        return;
    }
    let (runtime, engine) = core_id_engine("nc:1").expect("nc:1 is visible");
    assert_eq!(runtime.visible_cores(), 12);
    assert_eq!(cores_of_rows(&engine, 3), [13, 13, 13]);
    // Every visible core, in order: nc:i runs on physical 12 + i.
    let (_, all) = core_id_engine("nc:0,nc:5,nc:11").expect("visible cores");
    assert_eq!(cores_of_rows(&all, 3), [12, 17, 23]);
    let error = core_id_engine("nc:13").expect_err("nc:13 is not visible here");
    let message = error.to_string();
    assert!(
        message.contains("nc:13") && message.contains("12"),
        "{message}"
    );
}

#[test]
fn visible_cores_0_to_11_run_nc0_on_physical_0() {
    const NAME: &str = "visible_cores_0_to_11_run_nc0_on_physical_0";
    let env = [
        ("NRT_MOCK_TOTAL_CORES", "24"),
        ("NEURON_RT_VISIBLE_CORES", "0-11"),
    ];
    if !in_child(NAME, &env) {
        return;
    }
    let (_, engine) = core_id_engine("nc:0").expect("nc:0 is visible");
    assert_eq!(cores_of_rows(&engine, 2), [0, 0]);
}
