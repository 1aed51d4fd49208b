//! The mock's libnrt behaviour through the C ABI: NEFF validation, ops, execution rules,
//! timing, timeouts, memory, faults, counters, life-cycle statuses and NULL handling.
//! Every test that initialises the runtime runs in a child process.

mod common;

use std::ffi::c_void;
use std::ptr::{null, null_mut};
use std::time::{Duration, Instant};

use common::*;
use neuron_sys::bindings::*;
use nrt_mock::neff::{DType, MockModel, Op, container};

fn affine(rows: u32, cols: u32) -> MockModel {
    MockModel::new(
        "affine",
        Op::Affine {
            scale: 1.5,
            bias: -0.25,
        },
    )
    .input("x", DType::Float32, &[rows, cols])
    .output("y", DType::Float32, &[rows, cols])
}

#[test]
fn version_status_strings_and_dtype_encoding() {
    let mut v = nrt_version_t {
        rt_major: 0,
        rt_minor: 0,
        rt_patch: 0,
        rt_maintenance: 0,
        rt_detail: [0; 128],
        git_hash: [0; 64],
    };
    // SAFETY: `v` is writable for 224 bytes.
    assert_eq!(unsafe { f!(nrt_get_version)(&mut v, 224) }, NRT_SUCCESS);
    assert_eq!(
        (v.rt_major, v.rt_minor, v.rt_patch, v.rt_maintenance),
        (2, 30, 50, 0)
    );
    // SAFETY: rt_detail is NUL-terminated by the mock.
    let detail = unsafe { std::ffi::CStr::from_ptr(v.rt_detail.as_ptr()) }
        .to_string_lossy()
        .into_owned();
    assert!(detail.starts_with("nrt-mock"), "{detail}");
    // A short size fills only that many bytes.
    let mut short = [0xEEu8; 24];
    assert_eq!(
        // SAFETY: `short` is writable for 16 bytes, the size passed.
        unsafe { f!(nrt_get_version)(short.as_mut_ptr().cast(), 16) },
        NRT_SUCCESS
    );
    assert_eq!(&short[..8], &2u64.to_le_bytes());
    assert_eq!(&short[8..16], &30u64.to_le_bytes());
    assert_eq!(&short[16..], &[0xEE; 8]);
    assert_eq!(status_name(NRT_INVALID), "NRT_INVALID");
    assert_eq!(status_name(NRT_CLOSED), "NRT_CLOSED");
    assert_eq!(status_name(1206), "NRT_NETWORK_PROXY_FAILURE");
    assert_eq!(status_name(8), "NRT_UNKNOWN_STATUS");
    assert_eq!(status_name(99999), "NRT_UNKNOWN_STATUS");
    assert_eq!(DType::Float32.nrt_code(), NRT_DTYPE_FLOAT32);
    assert_eq!(DType::Int64.nrt_code(), NRT_DTYPE_INT64);
    assert_eq!(DType::UInt64.nrt_code(), NRT_DTYPE_UINT64);
}

#[test]
fn statuses_before_init_and_after_close() {
    if !in_child("statuses_before_init_and_after_close", &[]) {
        return;
    }
    let neff = affine(2, 2).to_neff_bytes();
    let check = |want: NRT_STATUS| {
        assert_eq!(load_bytes(&neff, 0), Err(want));
        assert_eq!(alloc(NRT_TENSOR_PLACEMENT_DEVICE, 0, 4), Err(want));
        let mut s = null_mut();
        // SAFETY: `s` is writable.
        assert_eq!(unsafe { f!(nrt_allocate_tensor_set)(&mut s) }, want);
        assert_eq!(execute(1, 2, 3), want);
        assert_eq!(write(1, 0, &[1]), want);
        assert_eq!(size(1), 0);
        // Counts and the version work at any time.
        assert_eq!(total(), Ok(24));
    };
    check(NRT_UNINITIALIZED);
    init_ok();
    let m = load(&affine(2, 2), 0);
    let t = device(0, 16);
    close();
    check(NRT_CLOSED);
    assert_eq!(unload(m), NRT_CLOSED);
    free(t); // harmless: nulls the pointer
    init_ok();
    assert_eq!(
        unload(m),
        NRT_INVALID_HANDLE,
        "handles do not survive nrt_close"
    );
    assert_eq!(counters().live_models, 0);
    close();
}

#[test]
fn malformed_neffs_are_rejected() {
    if let Some(child) = ChildTest::new("malformed_neffs_are_rejected").run_in_parent() {
        // The mock explains its refusals on stderr.
        child.assert_passed();
        let stderr = &child.stderr;
        assert!(
            stderr.contains("real NEFF: this is the mock runtime"),
            "{stderr}"
        );
        assert!(stderr.contains("unknown variant `conv`"), "{stderr}");
        return;
    }
    init_ok();
    let good = affine(4, 4).to_neff_bytes();
    let patch = |off: usize, v: u64| {
        let mut b = good.clone();
        b[off..off + 8].copy_from_slice(&v.to_le_bytes());
        b
    };
    let payload = |json: &str| container("affine", json.as_bytes());
    let unknown_op = affine(4, 4).to_json().replace("\"affine\"", "\"conv\"");
    let wrong_dtype = MockModel::new(
        "affine",
        Op::Affine {
            scale: 1.0,
            bias: 0.0,
        },
    )
    .input("x", DType::Int32, &[4])
    .output("y", DType::Int32, &[4])
    .to_neff_bytes();
    let wrong_shape = MockModel::new("rs", Op::RowSum { out_features: 3 })
        .input("x", DType::Float32, &[4, 6])
        .output("y", DType::Float32, &[4, 2])
        .to_neff_bytes();
    let mut build = good.clone();
    build[40..48].copy_from_slice(b"neuronx-");
    let cases: Vec<(&str, Vec<u8>, NRT_STATUS)> = vec![
        ("shorter than 1024", good[..1000].to_vec(), NRT_INVALID),
        ("wrong header_size", patch(8, 1000), NRT_INVALID),
        (
            "data_size past the end",
            patch(16, good.len() as u64),
            NRT_INVALID,
        ),
        ("pkg_version 3", patch(0, 3), NRT_INVALID),
        ("bad JSON", payload("{\"format\": "), NRT_INVALID),
        ("unknown op", payload(&unknown_op), NRT_INVALID),
        ("dtype the op cannot take", wrong_dtype, NRT_INVALID),
        ("shape the op cannot take", wrong_shape, NRT_INVALID),
        ("real NEFF: pkg_version 2", patch(0, 2), NRT_INVALID),
        (
            "real NEFF: gzip payload",
            container("real", &[0x1f, 0x8b, 8, 0, 0]),
            NRT_INVALID,
        ),
        ("real NEFF: foreign build version", build, NRT_INVALID),
        ("NEFF version 3", patch(24, 3), NRT_UNSUPPORTED_NEFF_VERSION),
    ];
    for (what, bytes, want) in cases {
        assert_eq!(load_bytes(&bytes, 0), Err(want), "{what}");
    }
    assert!(load_bytes(&good, 0).is_ok());
    close();
}

#[test]
fn op_identity() {
    if !in_child("op_identity", &[]) {
        return;
    }
    init_ok();
    let spec = MockModel::new("id", Op::Identity)
        .input("a", DType::UInt8, &[3, 5])
        .input("b", DType::Int64, &[3])
        .output("a_out", DType::UInt8, &[3, 5])
        .output("b_out", DType::Int64, &[3]);
    let b = bind(&spec, 0);
    let a: Vec<u8> = (0..15).collect();
    let bb: Vec<u8> = [-1i64, 7, i64::MAX]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    assert_eq!(write(b.inputs[0], 0, &a), NRT_SUCCESS);
    assert_eq!(write(b.inputs[1], 0, &bb), NRT_SUCCESS);
    assert_eq!(execute(b.model, b.ins, b.outs), NRT_SUCCESS);
    assert_eq!(read(b.outputs[0], 0, 15).unwrap(), a);
    assert_eq!(read(b.outputs[1], 0, 24).unwrap(), bb);
    close();
}

#[test]
fn op_affine() {
    if !in_child("op_affine", &[]) {
        return;
    }
    init_ok();
    let b = bind(&affine(2, 3), 0);
    let x = [0.0f32, 1.0, -2.0, 1e-3, 3.25, -7.5];
    assert_eq!(write(b.inputs[0], 0, &f32_bytes(&x)), NRT_SUCCESS);
    assert_eq!(execute(b.model, b.ins, b.outs), NRT_SUCCESS);
    let y = bytes_f32(&read(b.outputs[0], 0, 24).unwrap());
    let want: Vec<f32> = x.iter().map(|v| v * 1.5 + -0.25).collect();
    assert_eq!(
        y.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        want.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
    close();
}

#[test]
fn op_affine_in_place_when_input_and_output_are_one_tensor() {
    if !in_child(
        "op_affine_in_place_when_input_and_output_are_one_tensor",
        &[],
    ) {
        return;
    }
    init_ok();
    // One tensor under both names: the op must read every input byte before writing it, so
    // the mock stages the input instead of computing in place.
    let spec = affine(1, 4);
    let m = load(&spec, 0);
    let t = device(0, 16);
    let (ins, outs) = (new_set(), new_set());
    assert_eq!(add(ins, "x", t), NRT_SUCCESS);
    assert_eq!(add(outs, "y", t), NRT_SUCCESS);
    let x = [1.0f32, 2.0, -4.0, 0.5];
    assert_eq!(write(t, 0, &f32_bytes(&x)), NRT_SUCCESS);
    assert_eq!(execute(m, ins, outs), NRT_SUCCESS);
    let want: Vec<f32> = x.iter().map(|v| v * 1.5 + -0.25).collect();
    assert_eq!(bytes_f32(&read(t, 0, 16).unwrap()), want);
    // Again: the staging buffers are reused and must not leak the previous call's bytes.
    assert_eq!(execute(m, ins, outs), NRT_SUCCESS);
    let twice: Vec<f32> = want.iter().map(|v| v * 1.5 + -0.25).collect();
    assert_eq!(bytes_f32(&read(t, 0, 16).unwrap()), twice);
    close();
}

#[test]
fn op_add() {
    if !in_child("op_add", &[]) {
        return;
    }
    init_ok();
    let spec = MockModel::new("add", Op::Add)
        .input("a", DType::Float32, &[2, 2])
        .input("b", DType::Float32, &[2, 2])
        .output("c", DType::Float32, &[2, 2]);
    let b = bind(&spec, 0);
    assert_eq!(
        write(b.inputs[0], 0, &f32_bytes(&[1.0, 2.0, 3.0, 4.0])),
        NRT_SUCCESS
    );
    assert_eq!(
        write(b.inputs[1], 0, &f32_bytes(&[0.5, -2.0, 1e7, 0.25])),
        NRT_SUCCESS
    );
    assert_eq!(execute(b.model, b.ins, b.outs), NRT_SUCCESS);
    assert_eq!(
        bytes_f32(&read(b.outputs[0], 0, 16).unwrap()),
        vec![1.5, 0.0, 3.0 + 1e7, 4.25]
    );
    close();
}

#[test]
fn op_rowsum_matches_plain_rust() {
    if !in_child("op_rowsum_matches_plain_rust", &[]) {
        return;
    }
    init_ok();
    let (rows, d1, d2, f) = (5u32, 7u32, 3u32, 4u32);
    let spec = MockModel::new("rs", Op::RowSum { out_features: f })
        .input("x", DType::Float32, &[rows, d1, d2])
        .output("y", DType::Float32, &[rows, f]);
    let b = bind(&spec, 0);
    let n = (rows * d1 * d2) as usize;
    let x: Vec<f32> = (0..n)
        .map(|i| ((i * 7919) % 1000) as f32 * 0.013 - 3.1)
        .collect();
    assert_eq!(write(b.inputs[0], 0, &f32_bytes(&x)), NRT_SUCCESS);
    assert_eq!(execute(b.model, b.ins, b.outs), NRT_SUCCESS);
    let got = bytes_f32(&read(b.outputs[0], 0, (rows * f * 4) as usize).unwrap());
    let row_len = (d1 * d2) as usize;
    let mut want = vec![0.0f32; (rows * f) as usize];
    for r in 0..rows as usize {
        for i in 0..row_len {
            want[r * f as usize + i % f as usize] += x[r * row_len + i];
        }
    }
    assert_eq!(
        got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        want.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
    close();
}

#[test]
fn execute_validates_names_sizes_and_cores() {
    if let Some(child) = ChildTest::new("execute_validates_names_sizes_and_cores").run_in_parent() {
        // The mock's log names the offending tensor.
        child.assert_passed();
        let stderr = &child.stderr;
        assert!(
            stderr.contains("needs input \"x\", which is missing"),
            "{stderr}"
        );
        assert!(
            stderr.contains("input \"x\" is 12 bytes but model \"affine\" expects 16"),
            "{stderr}"
        );
        assert!(stderr.contains("on logical core 1"), "{stderr}");
        return;
    }
    init_ok();
    let b = bind(&affine(2, 2), 0);
    assert_eq!(execute(b.model, b.ins, b.outs), NRT_SUCCESS);
    // Wrong name.
    let s = new_set();
    assert_eq!(add(s, "X", b.inputs[0]), NRT_SUCCESS);
    assert_eq!(execute(b.model, s, b.outs), NRT_INVALID);
    // Wrong size.
    let small = device(0, 12);
    assert_eq!(add(s, "x", small), NRT_SUCCESS);
    assert_eq!(execute(b.model, s, b.outs), NRT_INVALID);
    // Device tensor on another core.
    let other = device(1, 16);
    assert_eq!(add(s, "x", other), NRT_SUCCESS);
    assert_eq!(execute(b.model, s, b.outs), NRT_INVALID);
    // VIRTUAL and HOST tensors are accepted on any core.
    let virt = alloc(NRT_TENSOR_PLACEMENT_VIRTUAL, -1, 16).unwrap();
    assert_eq!(add(s, "x", virt), NRT_SUCCESS);
    assert_eq!(execute(b.model, s, b.outs), NRT_SUCCESS);
    let host = alloc(NRT_TENSOR_PLACEMENT_HOST, -1, 16).unwrap();
    assert_eq!(add(s, "x", host), NRT_SUCCESS);
    assert_eq!(execute(b.model, s, b.outs), NRT_SUCCESS);
    // A tensor freed while still in a set.
    free(host);
    assert_eq!(execute(b.model, s, b.outs), NRT_INVALID_HANDLE);
    // Missing output.
    let empty = new_set();
    assert_eq!(execute(b.model, b.ins, empty), NRT_INVALID);
    close();
}

#[test]
fn load_placement_model_info_and_tensor_sets() {
    if !in_child(
        "load_placement_model_info_and_tensor_sets",
        &[("NEURON_RT_VISIBLE_CORES", "4-6")],
    ) {
        return;
    }
    init_ok();
    let spec = affine(1, 1);
    let neff = spec.to_neff_bytes();
    // vnc = -1 spreads models over the least-loaded cores.
    let picked: Vec<u32> = (0..4)
        .map(|_| model_vnc(load_bytes(&neff, -1).unwrap()))
        .collect();
    assert_eq!(picked, vec![0, 1, 2, 0]);
    assert_eq!(load_bytes(&neff, 3), Err(NRT_LOAD_NOT_ENOUGH_NC));
    assert_eq!(load_bytes(&neff, -2), Err(NRT_LOAD_NOT_ENOUGH_NC));
    let mut m = null_mut();
    assert_eq!(
        // SAFETY: `neff` is readable and `m` writable.
        unsafe { f!(nrt_load)(neff.as_ptr().cast(), neff.len(), 0, 2, &mut m) },
        NRT_INVALID
    );
    assert_eq!(
        // SAFETY: as above.
        unsafe { f!(nrt_load)(neff.as_ptr().cast(), neff.len(), 2, 1, &mut m) },
        NRT_SUCCESS
    );
    assert_eq!(model_vnc(m as H), 2);
    let mut count = 0;
    assert_eq!(
        // SAFETY: `count` is writable.
        unsafe { f!(nrt_get_model_instance_count)(m, &mut count) },
        NRT_SUCCESS
    );
    assert_eq!(count, 1);
    // Size handshake: a zero-sized struct gets nothing.
    let mut info = nrt_model_info_t { vnc: 77 };
    let mut n = 99usize;
    assert_eq!(
        // SAFETY: `info` and `n` are writable.
        unsafe { f!(nrt_get_model_info)(m, &mut info, 0, &mut n) },
        NRT_SUCCESS
    );
    assert_eq!((info.vnc, n), (77, 0));
    // Tensor sets: missing name -> NRT_FAILURE, output untouched; re-adding replaces.
    let s = new_set();
    let (t1, t2) = (device(0, 4), device(0, 4));
    assert_eq!(get(s, "a"), Err(NRT_FAILURE));
    assert_eq!(add(s, "a", t1), NRT_SUCCESS);
    assert_eq!(get(s, "a"), Ok(t1));
    assert_eq!(add(s, "a", t2), NRT_SUCCESS);
    assert_eq!(get(s, "a"), Ok(t2));
    // Sets do not own tensors.
    destroy_set(s);
    assert_eq!(write(t1, 0, &[1, 2, 3, 4]), NRT_SUCCESS);
    assert_eq!(unload(m as H), NRT_SUCCESS);
    assert_eq!(unload(m as H), NRT_INVALID_HANDLE);
    close();
}

#[test]
fn per_core_serialization() {
    if !in_child("per_core_serialization", &[]) {
        return;
    }
    init_ok();
    let spec = affine(2, 2).exec_us(150_000);
    let (a, b) = (bind(&spec, 0), bind(&spec, 0));
    let start = Instant::now();
    std::thread::scope(|s| {
        for x in [&a, &b] {
            let (m, i, o) = (x.model, x.ins, x.outs);
            s.spawn(move || assert_eq!(execute(m, i, o), NRT_SUCCESS));
        }
    });
    assert!(
        start.elapsed() >= Duration::from_millis(300),
        "{:?}",
        start.elapsed()
    );
    // exec_us_per_row adds per compiled row.
    let slow = bind(&affine(4, 1).exec_us(10_000).exec_us_per_row(20_000), 1);
    let start = Instant::now();
    assert_eq!(execute(slow.model, slow.ins, slow.outs), NRT_SUCCESS);
    assert!(
        start.elapsed() >= Duration::from_millis(90),
        "{:?}",
        start.elapsed()
    );
    close();
}

/// Tensor sets for another execution of an already loaded model (`bind` loads a new one).
fn more_sets(spec: &MockModel, model: H) -> (H, H) {
    let core = model_vnc(model) as i32;
    let (ins, outs) = (new_set(), new_set());
    for (set, list) in [(ins, &spec.inputs), (outs, &spec.outputs)] {
        for t in list {
            let h = device(core, t.size_bytes().unwrap() as usize);
            assert_eq!(add(set, &t.name, h), NRT_SUCCESS);
        }
    }
    (ins, outs)
}

#[test]
fn exec_policy_busy_refuses_another_model_while_one_runs() {
    if !in_child(
        "exec_policy_busy_refuses_another_model_while_one_runs",
        &[("NRT_MOCK_EXEC_POLICY", "busy")],
    ) {
        return;
    }
    init_ok();
    let quick = affine(2, 2);
    let other = bind(&quick, 0);
    let elsewhere = bind(&quick, 1);
    // Model A runs long on nc0 while the main thread calls another model on nc0. On a loaded
    // machine A may be over before the call is made; then the call succeeds and the round is
    // repeated with a longer A (no assertion depends on timing).
    let mut refused = false;
    for round in 0..6u32 {
        let slow = affine(2, 2).exec_us(400_000 << round);
        let a = bind(&slow, 0);
        let (a_ins, a_outs) = more_sets(&slow, a.model);
        let before = counters();
        let (status_other, status_same, status_elsewhere, status_a) = std::thread::scope(|s| {
            let running = s.spawn(|| execute(a.model, a.ins, a.outs));
            // A has taken the core once its execution is counted.
            while counters().executions[0] == before.executions[0] && !running.is_finished() {
                std::thread::sleep(Duration::from_millis(1));
            }
            let other = execute(other.model, other.ins, other.outs);
            let elsewhere = execute(elsewhere.model, elsewhere.ins, elsewhere.outs);
            // Another execution of the running model queues behind it, never refused.
            let same = execute(a.model, a_ins, a_outs);
            (other, same, elsewhere, running.join().unwrap())
        });
        assert_eq!(status_a, NRT_SUCCESS);
        assert_eq!(status_same, NRT_SUCCESS, "the running model's calls wait");
        assert_eq!(status_elsewhere, NRT_SUCCESS, "other cores are not busy");
        let busy = counters().busy_returns - before.busy_returns;
        match status_other {
            NRT_EXEC_NC_BUSY => {
                assert_eq!(busy, 1, "each refusal is counted");
                refused = true;
                break;
            }
            NRT_SUCCESS => assert_eq!(busy, 0, "round {round}: A was over before the call"),
            s => panic!("unexpected status {}", status_name(s)),
        }
    }
    assert!(
        refused,
        "a call for another model while A ran was refused with NRT_EXEC_NC_BUSY"
    );
    // The core is free again: the other model runs.
    assert_eq!(execute(other.model, other.ins, other.outs), NRT_SUCCESS);
    close();
    // An unknown policy fails nrt_init.
    // SAFETY: the child runs one test on one thread; nothing reads the environment concurrently.
    unsafe { std::env::set_var("NRT_MOCK_EXEC_POLICY", "sometimes") };
    assert_eq!(init(), NRT_INVALID);
}

#[test]
fn timeout_with_hang_fault_and_slow_model() {
    if !in_child(
        "timeout_with_hang_fault_and_slow_model",
        &[
            ("NEURON_RT_EXEC_TIMEOUT", "1"),
            ("NRT_MOCK_FAULTS", "0:1:hang"),
        ],
    ) {
        return;
    }
    init_ok();
    let b = bind(&affine(2, 2), 0);
    let start = Instant::now();
    assert_eq!(execute(b.model, b.ins, b.outs), NRT_TIMEOUT);
    assert!(start.elapsed() >= Duration::from_secs(1));
    assert_eq!(
        execute(b.model, b.ins, b.outs),
        NRT_SUCCESS,
        "only the 1st execution hangs"
    );
    // A model whose device time exceeds the timeout read at load.
    // SAFETY: the child runs one test on one thread; nothing reads the environment concurrently.
    unsafe { std::env::set_var("NEURON_RT_EXEC_TIMEOUT", "0.1") };
    let slow = bind(&affine(2, 2).exec_us(5_000_000), 1);
    let start = Instant::now();
    assert_eq!(execute(slow.model, slow.ins, slow.outs), NRT_TIMEOUT);
    assert!(start.elapsed() >= Duration::from_millis(100));
    // SAFETY: as above.
    unsafe { std::env::set_var("NEURON_RT_EXEC_TIMEOUT", "soon") };
    assert_eq!(
        load_bytes(&affine(1, 1).to_neff_bytes(), 0),
        Err(NRT_INVALID)
    );
    close();
}

#[test]
fn fault_rules_nth_and_every() {
    if !in_child(
        "fault_rules_nth_and_every",
        &[("NRT_MOCK_FAULTS", "0:2:1004;1:*:6")],
    ) {
        return;
    }
    init_ok();
    let (a, b) = (bind(&affine(1, 1), 0), bind(&affine(1, 1), 1));
    let run = |x: &Bound| execute(x.model, x.ins, x.outs);
    assert_eq!(
        [run(&a), run(&a), run(&a)],
        [NRT_SUCCESS, NRT_EXEC_COMPLETED_WITH_ERR, NRT_SUCCESS]
    );
    assert_eq!([run(&b), run(&b)], [NRT_HW_ERROR, NRT_HW_ERROR]);
    // Run-time rules replace the env's and restart the count.
    let mock = &api().mock;
    mock.set_faults("0:*:1005").unwrap();
    assert_eq!([run(&a), run(&b)], [NRT_EXEC_NC_BUSY, NRT_SUCCESS]);
    assert!(mock.set_faults("0:0:1").is_err());
    assert!(mock.set_faults("zero:1:1").is_err());
    assert_eq!(
        run(&a),
        NRT_EXEC_NC_BUSY,
        "a rejected rule list keeps the old rules"
    );
    mock.set_faults("").unwrap();
    assert_eq!(run(&a), NRT_SUCCESS);
    // SAFETY: NULL clears the rules.
    assert_eq!(unsafe { (nrt_mock_set_faults_ptr())(null()) }, NRT_SUCCESS);
    close();
    // A malformed env rule fails nrt_init.
    // SAFETY: the child runs one test on one thread; nothing reads the environment concurrently.
    unsafe { std::env::set_var("NRT_MOCK_FAULTS", "1:x:2") };
    assert_eq!(init(), NRT_INVALID);
}

/// The raw `nrt_mock_set_faults` export.
fn nrt_mock_set_faults_ptr() -> nrt_mock::control::nrt_mock_set_faults_fn {
    // SAFETY: the library is already open (leaked by `api()`); the symbol has this type.
    unsafe {
        let lib = libloading::Library::new(lib_path()).unwrap();
        let f = *lib
            .get::<nrt_mock::control::nrt_mock_set_faults_fn>(b"nrt_mock_set_faults\0")
            .unwrap();
        std::mem::forget(lib);
        f
    }
}

#[test]
fn memory_budget_per_core() {
    if !in_child(
        "memory_budget_per_core",
        &[("NRT_MOCK_CORE_MEMORY", "1000")],
    ) {
        return;
    }
    init_ok();
    let a = device(0, 600);
    assert_eq!(
        alloc(NRT_TENSOR_PLACEMENT_DEVICE, 0, 600),
        Err(NRT_RESOURCE)
    );
    let b = device(1, 600); // other core, own budget
    let v = alloc(NRT_TENSOR_PLACEMENT_VIRTUAL, -1, 5000).unwrap(); // host memory is not charged
    // A slice keeps the storage (and its charge) alive.
    let mut sl = null_mut();
    assert_eq!(
        // SAFETY: `sl` is writable.
        unsafe { f!(nrt_tensor_allocate_slice)(a as *const _, 0, 10, null(), &mut sl) },
        NRT_SUCCESS
    );
    free(a);
    assert_eq!(
        alloc(NRT_TENSOR_PLACEMENT_DEVICE, 0, 600),
        Err(NRT_RESOURCE)
    );
    free(sl as H);
    let c = device(0, 1000);
    assert_eq!(
        alloc(NRT_TENSOR_PLACEMENT_DEVICE, 99, 1),
        Err(NRT_INVALID),
        "no such core"
    );
    assert_eq!(alloc(7, 0, 1), Err(NRT_INVALID), "no such placement");
    for t in [b, v, c] {
        free(t);
    }
    close();
}

#[test]
fn empty_attach_slice_va_memset_copy() {
    if !in_child("empty_attach_slice_va_memset_copy", &[]) {
        return;
    }
    init_ok();
    // allocate_empty: no storage.
    let mut e = null_mut();
    assert_eq!(
        // SAFETY: `e` is writable; the name is a valid C string.
        unsafe { f!(nrt_tensor_allocate_empty)(c"empty".as_ptr(), &mut e) },
        NRT_SUCCESS
    );
    let e = e as H;
    assert_eq!(write(e, 0, &[1]), NRT_INVALID);
    assert_eq!(read(e, 0, 1), Err(NRT_INVALID));
    assert_eq!(size(e), 0);
    // SAFETY: handles are looked up, not dereferenced.
    assert!(unsafe { f!(nrt_tensor_get_va)(e as *const _) }.is_null());
    // attach: the caller's buffer becomes the storage; the VA is the buffer.
    let mut buf = vec![0u8; 32];
    assert_eq!(
        // SAFETY: `buf` outlives its use by the tensor (freed below first).
        unsafe { f!(nrt_tensor_attach_buffer)(e as *mut _, buf.as_mut_ptr().cast(), 32) },
        NRT_SUCCESS
    );
    assert_eq!(size(e), 32);
    assert_eq!(
        // SAFETY: as above.
        unsafe { f!(nrt_tensor_get_va)(e as *const _) },
        buf.as_mut_ptr().cast::<c_void>()
    );
    assert_eq!(write(e, 4, &[9, 8, 7]), NRT_SUCCESS);
    assert_eq!(write(e, 30, &[1, 2, 3]), NRT_INVALID, "out of bounds");
    // A device tensor: 64-byte aligned VA; attach replaces its storage and makes it VIRTUAL.
    let d = device(0, 100);
    // SAFETY: as above.
    let va = unsafe { f!(nrt_tensor_get_va)(d as *const _) };
    assert_eq!(va as usize % 64, 0);
    // memset and bounds.
    // SAFETY: as above.
    unsafe {
        assert_eq!(
            f!(nrt_tensor_memset)(d as *mut _, 10, 0xAB, 20),
            NRT_SUCCESS
        );
        assert_eq!(f!(nrt_tensor_memset)(d as *mut _, 90, 0, 11), NRT_INVALID);
        assert_eq!(
            f!(nrt_tensor_memset)(d as *mut _, u64::MAX, 0, 1),
            NRT_INVALID
        );
    }
    let got = read(d, 0, 100).unwrap();
    assert!(
        got[10..30].iter().all(|&b| b == 0xAB)
            && got[..10].iter().all(|&b| b == 0)
            && got[30..].iter().all(|&b| b == 0)
    );
    // slice aliases the source.
    let mut sl = null_mut();
    assert_eq!(
        // SAFETY: as above.
        unsafe { f!(nrt_tensor_allocate_slice)(d as *const _, 8, 16, c"s".as_ptr(), &mut sl) },
        NRT_SUCCESS
    );
    let sl = sl as H;
    assert_eq!(size(sl), 16);
    assert_eq!(read(sl, 2, 4).unwrap(), vec![0xAB; 4]);
    assert_eq!(write(sl, 0, &[1, 2]), NRT_SUCCESS);
    assert_eq!(read(d, 8, 2).unwrap(), vec![1, 2]);
    let mut bad = null_mut();
    // SAFETY: as above.
    unsafe {
        assert_eq!(
            f!(nrt_tensor_allocate_slice)(d as *const _, 90, 11, null(), &mut bad),
            NRT_INVALID
        );
        assert_eq!(
            f!(nrt_tensor_allocate_slice)(d as *const _, usize::MAX, 2, null(), &mut bad),
            NRT_INVALID
        );
    }
    // copy: overlap-safe, bounds-checked, same core for device tensors.
    // SAFETY: as above.
    unsafe {
        assert_eq!(
            f!(nrt_tensor_copy)(e as *const _, 4, d as *mut _, 0, 3),
            NRT_SUCCESS
        );
        assert_eq!(
            f!(nrt_tensor_copy)(d as *const _, 0, d as *mut _, 1, 3),
            NRT_SUCCESS
        );
        assert_eq!(
            f!(nrt_tensor_copy)(d as *const _, 0, e as *mut _, 30, 3),
            NRT_INVALID
        );
    }
    assert_eq!(read(d, 0, 4).unwrap(), vec![9, 9, 8, 7]);
    let other = device(1, 100);
    assert_eq!(
        // SAFETY: as above.
        unsafe { f!(nrt_tensor_copy)(d as *const _, 0, other as *mut _, 0, 4) },
        NRT_INVALID
    );
    // attach on a device tensor: placement becomes VIRTUAL, usable with a model on any core.
    let b = bind(&affine(2, 2), 1);
    let mut host = vec![0u8; 16];
    assert_eq!(
        // SAFETY: `host` outlives the tensor's use.
        unsafe { f!(nrt_tensor_attach_buffer)(d as *mut _, host.as_mut_ptr().cast(), 16) },
        NRT_SUCCESS
    );
    assert_eq!(add(b.ins, "x", d), NRT_SUCCESS);
    assert_eq!(execute(b.model, b.ins, b.outs), NRT_SUCCESS);
    // The slice still sees the old device storage, kept alive by its refcount.
    assert_eq!(read(sl, 0, 2).unwrap(), vec![1, 2]);
    for t in [sl, d, e, other] {
        free(t);
    }
    drop((buf, host));
    close();
}

#[test]
fn counters_bytes_and_live_objects() {
    if !in_child(
        "counters_bytes_and_live_objects",
        &[("NEURON_RT_VISIBLE_CORES", "2-3")],
    ) {
        return;
    }
    let mock = &api().mock;
    mock.reset_counters();
    let base = counters();
    assert_eq!(
        (
            base.live_tensors,
            base.live_models,
            base.live_tensor_sets,
            base.bytes_written
        ),
        (0, 0, 0, 0)
    );
    init_ok();
    let b = bind(&affine(2, 2), 1);
    assert_eq!(write(b.inputs[0], 0, &[0; 16]), NRT_SUCCESS);
    assert_eq!(write(b.inputs[0], 4, &[0; 8]), NRT_SUCCESS);
    for _ in 0..3 {
        assert_eq!(execute(b.model, b.ins, b.outs), NRT_SUCCESS);
    }
    read(b.outputs[0], 0, 16).unwrap();
    // SAFETY: handles are looked up, not dereferenced.
    unsafe {
        f!(nrt_tensor_memset)(b.outputs[0] as *mut _, 0, 0, 5);
        f!(nrt_tensor_copy)(b.inputs[0] as *const _, 0, b.outputs[0] as *mut _, 0, 7);
    }
    let c = counters();
    assert_eq!(c.executions[3], 3, "counted on the physical core");
    assert_eq!(c.total_executions(), 3);
    assert_eq!((c.bytes_written, c.tensor_writes), (24, 2));
    assert_eq!((c.bytes_read, c.tensor_reads), (16, 1));
    assert_eq!((c.bytes_memset, c.bytes_copied), (5, 7));
    assert_eq!(
        (c.live_tensors, c.live_models, c.live_tensor_sets, c.loads),
        (2, 1, 2, 1)
    );
    // A shorter struct gets a prefix only.
    let mut prefix = [u64::MAX; 3];
    // SAFETY: `prefix` is writable for 16 bytes, the size passed.
    let s = unsafe {
        let lib = libloading::Library::new(lib_path()).unwrap();
        let get = *lib
            .get::<unsafe extern "C" fn(*mut c_void, usize) -> NRT_STATUS>(
                b"nrt_mock_get_counters\0",
            )
            .unwrap();
        std::mem::forget(lib);
        get(prefix.as_mut_ptr().cast(), 16)
    };
    assert_eq!(s, NRT_SUCCESS);
    assert_eq!(prefix, [0, 0, u64::MAX]);
    // Everything is released on unload/free/destroy, and reset keeps the gauges.
    mock.reset_counters();
    assert_eq!(counters().live_tensors, 2);
    assert_eq!(counters().executions[3], 0);
    close();
    let c = counters();
    assert_eq!(
        (c.live_tensors, c.live_models, c.live_tensor_sets),
        (0, 0, 0),
        "nrt_close frees everything"
    );
}

#[test]
fn pointer_nulling_frees() {
    if !in_child("pointer_nulling_frees", &[]) {
        return;
    }
    init_ok();
    let t = device(0, 8);
    free(t);
    assert_eq!(counters().live_tensors, 0);
    let s = new_set();
    destroy_set(s);
    assert_eq!(counters().live_tensor_sets, 0);
    // NULL and *NULL are accepted silently.
    let mut p: *mut nrt_tensor_t = null_mut();
    let mut q: *mut c_void = null_mut();
    // SAFETY: NULL arguments and NULL targets are documented no-ops.
    unsafe {
        f!(nrt_tensor_free)(null_mut());
        f!(nrt_tensor_free)(&mut p);
        f!(nrt_destroy_tensor_set)(null_mut());
        f!(nrt_destroy_tensor_set)(&mut q);
    }
    close();
}

#[test]
fn tensor_info_array_raw_layout() {
    if !in_child("tensor_info_array_raw_layout", &[]) {
        return;
    }
    init_ok();
    let spec = MockModel::new("two", Op::Add)
        .input("lhs", DType::Float32, &[3, 4])
        .input("rhs", DType::Float32, &[3, 4])
        .output("sum", DType::Float32, &[3, 4]);
    let m = load(&spec, 0);
    let mut info = null_mut();
    assert_eq!(
        // SAFETY: `info` is writable.
        unsafe { f!(nrt_get_model_tensor_info)(m as *mut _, &mut info) },
        NRT_SUCCESS
    );
    let base = info.cast::<u8>();
    // SAFETY: the mock documents the layout: a u64 count, then 296-byte entries from offset 8;
    // every read below stays inside 8 + 296 * 3 bytes, and each shape pointer points to
    // `ndim` u32s in the same allocation.
    unsafe {
        let rd_u64 = |off: usize| base.add(off).cast::<u64>().read_unaligned();
        let rd_u32 = |off: usize| base.add(off).cast::<u32>().read_unaligned();
        assert_eq!(rd_u64(0), 3);
        let names = ["lhs", "rhs", "sum"];
        for (i, name) in names.iter().enumerate() {
            let e = 8 + 296 * i;
            let raw = std::slice::from_raw_parts(base.add(e), 256);
            assert_eq!(&raw[..name.len()], name.as_bytes());
            assert_eq!(raw[name.len()], 0);
            assert_eq!(
                rd_u32(e + 256),
                if i < 2 {
                    NRT_TENSOR_USAGE_INPUT
                } else {
                    NRT_TENSOR_USAGE_OUTPUT
                }
            );
            assert_eq!(rd_u64(e + 264), 48);
            assert_eq!(rd_u32(e + 272), NRT_DTYPE_FLOAT32);
            let shape = rd_u64(e + 280) as usize as *const u32;
            assert_eq!(rd_u32(e + 288), 2);
            assert_eq!(std::slice::from_raw_parts(shape, 2), &[3, 4]);
        }
    }
    // Freed independently of the model, once.
    assert_eq!(unload(m), NRT_SUCCESS);
    // SAFETY: `info` came from nrt_get_model_tensor_info; the second free is detected.
    unsafe {
        assert_eq!(f!(nrt_free_model_tensor_info)(info), NRT_SUCCESS);
        assert_eq!(f!(nrt_free_model_tensor_info)(info), NRT_INVALID_HANDLE);
    }
    close();
}

#[test]
fn execute_repeat_chains_identity_like_models() {
    if !in_child("execute_repeat_chains_identity_like_models", &[]) {
        return;
    }
    init_ok();
    let spec = MockModel::new(
        "inc",
        Op::Affine {
            scale: 1.0,
            bias: 1.0,
        },
    )
    .input("x", DType::Float32, &[1, 2])
    .output("y", DType::Float32, &[1, 2]);
    let b = bind(&spec, 0);
    assert_eq!(write(b.inputs[0], 0, &f32_bytes(&[0.0, 10.0])), NRT_SUCCESS);
    // SAFETY: handles are looked up, not dereferenced.
    unsafe {
        let rep = f!(nrt_execute_repeat);
        assert_eq!(
            rep(b.model as *mut _, b.ins as *const _, b.outs as *mut _, 3),
            NRT_SUCCESS
        );
        assert_eq!(
            rep(b.model as *mut _, b.ins as *const _, b.outs as *mut _, 0),
            NRT_INVALID
        );
    }
    assert_eq!(
        bytes_f32(&read(b.outputs[0], 0, 8).unwrap()),
        vec![3.0, 13.0]
    );
    assert_eq!(counters().executions[0], 3);
    close();
}

#[test]
fn garbage_handles_are_rejected() {
    if !in_child("garbage_handles_are_rejected", &[]) {
        return;
    }
    init_ok();
    let junk = 0xdead_beef_usize;
    assert_eq!(unload(junk), NRT_INVALID_HANDLE);
    assert_eq!(write(junk, 0, &[1]), NRT_INVALID_HANDLE);
    assert_eq!(read(junk, 0, 1), Err(NRT_INVALID_HANDLE));
    assert_eq!(size(junk), 0);
    assert_eq!(add(junk, "x", junk), NRT_INVALID_HANDLE);
    assert_eq!(execute(junk, junk, junk), NRT_INVALID_HANDLE);
    let b = bind(&affine(1, 1), 0);
    assert_eq!(execute(b.model, junk, b.outs), NRT_INVALID_HANDLE);
    assert_eq!(add(b.ins, "x", junk), NRT_INVALID_HANDLE);
    assert_eq!(
        // SAFETY: the mock looks pointers up in its registry before freeing.
        unsafe { f!(nrt_free_model_tensor_info)(junk as *mut _) },
        NRT_INVALID_HANDLE
    );
    close();
}

#[test]
fn null_in_every_argument() {
    if !in_child("null_in_every_argument", &[]) {
        return;
    }
    // Before init: the calls that work at any time.
    // SAFETY: every call below passes NULL where the mock must reject it without touching memory.
    unsafe {
        assert_eq!(f!(nrt_get_version)(null_mut(), 224), NRT_INVALID);
        assert_eq!(f!(nrt_get_total_nc_count)(null_mut()), NRT_INVALID);
        assert_eq!(f!(nrt_get_visible_nc_count)(null_mut()), NRT_INVALID);
        assert_eq!(f!(nrt_get_total_vnc_count)(null_mut()), NRT_INVALID);
        assert_eq!(f!(nrt_get_visible_vnc_count)(null_mut()), NRT_INVALID);
    }
    init_ok();
    let spec = affine(1, 1);
    let neff = spec.to_neff_bytes();
    let b = bind(&spec, 0);
    let (m, t, s) = (
        b.model as *mut nrt_model_t,
        b.inputs[0] as *mut nrt_tensor_t,
        b.ins as *mut c_void,
    );
    let mut out_m = null_mut();
    let mut out_t = null_mut();
    let mut out_s: *mut c_void = null_mut();
    let mut info = null_mut();
    let mut mi = nrt_model_info_t { vnc: 0 };
    let mut n = 0usize;
    let mut u = 0u32;
    let mut byte = [0u8; 4];
    let name = c"x".as_ptr();
    const I: NRT_STATUS = NRT_INVALID;
    // SAFETY: as above; the non-NULL arguments are valid.
    unsafe {
        let load = f!(nrt_load);
        assert_eq!(load(null(), neff.len(), 0, -1, &mut out_m), I);
        assert_eq!(load(neff.as_ptr().cast(), neff.len(), 0, -1, null_mut()), I);
        assert_eq!(f!(nrt_unload)(null_mut()), I);
        assert_eq!(f!(nrt_get_model_tensor_info)(null_mut(), &mut info), I);
        assert_eq!(f!(nrt_get_model_tensor_info)(m, null_mut()), I);
        assert_eq!(f!(nrt_free_model_tensor_info)(null_mut()), I);
        let gmi = f!(nrt_get_model_info);
        assert_eq!(gmi(null(), &mut mi, 4, &mut n), I);
        assert_eq!(gmi(m, null_mut(), 4, &mut n), I);
        assert_eq!(gmi(m, &mut mi, 4, null_mut()), I);
        assert_eq!(f!(nrt_get_model_instance_count)(null_mut(), &mut u), I);
        assert_eq!(f!(nrt_get_model_instance_count)(m, null_mut()), I);
        assert_eq!(f!(nrt_allocate_tensor_set)(null_mut()), I);
        let addt = f!(nrt_add_tensor_to_tensor_set);
        assert_eq!(addt(null_mut(), name, t), I);
        assert_eq!(addt(s, null(), t), I);
        assert_eq!(addt(s, name, null_mut()), I);
        let gett = f!(nrt_get_tensor_from_tensor_set);
        assert_eq!(gett(null_mut(), name, &mut out_t), I);
        assert_eq!(gett(s, null(), &mut out_t), I);
        assert_eq!(gett(s, name, null_mut()), I);
        let ex = f!(nrt_execute);
        assert_eq!(ex(null_mut(), s, b.outs as *mut _), I);
        assert_eq!(ex(m, null(), b.outs as *mut _), I);
        assert_eq!(ex(m, s, null_mut()), I);
        let rep = f!(nrt_execute_repeat);
        assert_eq!(rep(null_mut(), s, b.outs as *mut _, 1), I);
        assert_eq!(rep(m, null(), b.outs as *mut _, 1), I);
        assert_eq!(rep(m, s, null_mut(), 1), I);
        assert_eq!(
            f!(nrt_tensor_allocate)(NRT_TENSOR_PLACEMENT_DEVICE, 0, 4, null(), null_mut()),
            I
        );
        assert_eq!(
            f!(nrt_tensor_allocate)(NRT_TENSOR_PLACEMENT_DEVICE, 0, 4, null(), &mut out_t),
            NRT_SUCCESS,
            "NULL name ok"
        );
        let rd = f!(nrt_tensor_read);
        assert_eq!(rd(null(), byte.as_mut_ptr().cast(), 0, 1), I);
        assert_eq!(rd(t, null_mut(), 0, 1), I);
        let wr = f!(nrt_tensor_write);
        assert_eq!(wr(null_mut(), byte.as_ptr().cast(), 0, 1), I);
        assert_eq!(wr(t, null(), 0, 1), I);
        assert_eq!(f!(nrt_tensor_get_size)(null()), 0);
        assert_eq!(f!(nrt_tensor_allocate_empty)(name, null_mut()), I);
        assert_eq!(
            f!(nrt_tensor_allocate_empty)(null(), &mut out_t),
            NRT_SUCCESS,
            "NULL name ok"
        );
        let att = f!(nrt_tensor_attach_buffer);
        assert_eq!(att(null_mut(), byte.as_mut_ptr().cast(), 4), I);
        assert_eq!(att(t, null_mut(), 4), I);
        let sl = f!(nrt_tensor_allocate_slice);
        assert_eq!(sl(null(), 0, 1, name, &mut out_t), I);
        assert_eq!(sl(t, 0, 1, name, null_mut()), I);
        assert_eq!(sl(t, 0, 1, null(), &mut out_t), NRT_SUCCESS, "NULL name ok");
        assert!(f!(nrt_tensor_get_va)(null()).is_null());
        assert_eq!(f!(nrt_tensor_memset)(null_mut(), 0, 0, 1), I);
        let cp = f!(nrt_tensor_copy);
        assert_eq!(cp(null(), 0, t, 0, 1), I);
        assert_eq!(cp(t, 0, null_mut(), 0, 1), I);
        assert_eq!(f!(nrt_get_version)(null_mut(), 224), I);
        assert!(!f!(nrt_get_status_as_str)(NRT_SUCCESS).is_null());
        assert_eq!(
            f!(nrt_init)(NRT_FRAMEWORK_TYPE_NO_FW, null(), null()),
            NRT_FAILURE,
            "already initialised"
        );
        let lib = libloading::Library::new(lib_path()).unwrap();
        let gc = *lib
            .get::<unsafe extern "C" fn(*mut c_void, usize) -> NRT_STATUS>(
                b"nrt_mock_get_counters\0",
            )
            .unwrap();
        std::mem::forget(lib);
        assert_eq!(gc(null_mut(), 8), I);
    }
    let _ = (&mut out_s, &mut out_m);
    close();
}
