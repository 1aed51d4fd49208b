//! Topology, visible-core remapping and cross-process core ownership, through the C ABI.
//! Every test runs in a child process with its own environment and lock directory.

mod common;

use common::*;
use neuron_sys::bindings::*;
use nrt_mock::neff::{DType, MockModel, Op};

/// Physical core that ran logical core `vnc` (via the core_id op).
fn phys_of(vnc: i32) -> i32 {
    let spec = MockModel::new("cid", Op::CoreId)
        .input("x", DType::UInt8, &[2, 3])
        .output("id", DType::Int32, &[2, 1]);
    let b = bind(&spec, vnc);
    assert_eq!(execute(b.model, b.ins, b.outs), NRT_SUCCESS);
    let ids = bytes_i32(&read(b.outputs[0], 0, 8).unwrap());
    assert_eq!(ids[0], ids[1]);
    ids[0]
}

/// After `nrt_init`: `visible` cores are visible and each `(logical, physical)` pair of
/// `cores` runs on that physical core. Then `nrt_close`.
fn assert_cores_and_close(visible_cores: u32, cores: &[(i32, i32)]) {
    assert_eq!(visible(), Ok(visible_cores));
    for &(logical, physical) in cores {
        assert_eq!(phys_of(logical), physical, "logical core {logical}");
    }
    close();
}

#[test]
fn default_topology_counts_before_and_after_init() {
    if !in_child("default_topology_counts_before_and_after_init", &[]) {
        return;
    }
    assert_eq!(total(), Ok(24));
    assert_eq!(visible(), Ok(24));
    init_ok();
    assert_eq!(total(), Ok(24));
    assert_cores_and_close(24, &[(23, 23)]);
}

#[test]
fn total_cores_env() {
    if !in_child("total_cores_env", &[("NRT_MOCK_TOTAL_CORES", "4")]) {
        return;
    }
    assert_eq!((total(), visible()), (Ok(4), Ok(4)));
    let mut n = 0;
    // SAFETY: `n` is a writable u32.
    assert_eq!(unsafe { f!(nrt_get_total_vnc_count)(&mut n) }, NRT_SUCCESS);
    assert_eq!(n, 4);
    init_ok();
    assert_eq!(load_bytes(&[0; 8], 4), Err(NRT_INVALID));
    close();
}

#[test]
fn visible_single_index() {
    if !in_child("visible_single_index", &[("NEURON_RT_VISIBLE_CORES", "5")]) {
        return;
    }
    assert_eq!(visible(), Ok(1));
    init_ok();
    assert_eq!(total(), Ok(24));
    assert_cores_and_close(1, &[(0, 5)]);
}

#[test]
fn visible_range() {
    if !in_child("visible_range", &[("NEURON_RT_VISIBLE_CORES", "0-11")]) {
        return;
    }
    assert_eq!(visible(), Ok(12));
    init_ok();
    assert_cores_and_close(12, &[(11, 11)]);
}

#[test]
fn visible_range_and_index() {
    if !in_child(
        "visible_range_and_index",
        &[("NEURON_RT_VISIBLE_CORES", "3-5,6")],
    ) {
        return;
    }
    init_ok();
    assert_cores_and_close(4, &[(0, 3), (3, 6)]);
}

#[test]
fn visible_list() {
    if !in_child("visible_list", &[("NEURON_RT_VISIBLE_CORES", "1,3")]) {
        return;
    }
    init_ok();
    assert_cores_and_close(2, &[(0, 1), (1, 3)]);
}

#[test]
fn num_cores_takes_first_free() {
    if !in_child(
        "num_cores_takes_first_free",
        &[("NEURON_RT_NUM_CORES", "3")],
    ) {
        return;
    }
    assert_eq!(visible(), Ok(3));
    init_ok();
    assert_cores_and_close(3, &[(2, 2)]);
}

#[test]
fn core_id_reports_physical_core_under_visible_12_23() {
    if !in_child(
        "core_id_reports_physical_core_under_visible_12_23",
        &[("NEURON_RT_VISIBLE_CORES", "12-23")],
    ) {
        return;
    }
    init_ok();
    for l in 0..12 {
        assert_eq!(phys_of(l), 12 + l);
    }
    close();
}

/// Probe: nrt_init under the environment its parent gives it must return `PROBE_EXPECT`.
#[test]
#[ignore = "runs only as a child process of the tests that call `probe`"]
fn init_probe() {
    child_only("init_probe", "a test calling `probe`");
    let want: u32 = std::env::var("PROBE_EXPECT").unwrap().parse().unwrap();
    assert_eq!(init(), want);
    close();
}

/// Runs `init_probe` in a child with `env` (which sets `PROBE_EXPECT`) and a private lock
/// directory, asserts that it passed and returns its stderr.
fn probe(env: &[(&str, &str)]) -> String {
    let child = ChildTest::new("init_probe").envs(env.iter().copied()).run();
    child.assert_passed();
    child.stderr
}

/// [`probe`] with the lock directory `locks`, shared with the calling process.
fn probe_sharing(locks: &str, env: &[(&str, &str)]) -> String {
    let child = ChildTest::new("init_probe")
        .envs(env.iter().copied())
        .sharing_locks(locks)
        .run();
    child.assert_passed();
    child.stderr
}

/// Runs test `name` in a child owning the `visible` cores, with a lock directory of its own
/// that the probes it starts share. In the child: returns that directory, which is its
/// `NRT_MOCK_LOCK_DIR`. In the parent: asserts the child passed and returns `None`.
fn in_child_with_locks(name: &str, visible: &str) -> Option<String> {
    if is_child(name) {
        let dir = std::env::var("NRT_MOCK_LOCK_DIR").expect("the harness sets the lock dir");
        return Some(dir);
    }
    let dir = tempfile::tempdir().unwrap();
    ChildTest::new(name)
        .env("NEURON_RT_VISIBLE_CORES", visible)
        .sharing_locks(dir.path())
        .run()
        .assert_passed();
    None
}

#[test]
fn malformed_visible_cores_fail_init_naming_the_value() {
    for bad in ["3-1", "a", "0-99", "", "1,,2", "1,1", "2,0-3"] {
        let stderr = probe(&[("NEURON_RT_VISIBLE_CORES", bad), ("PROBE_EXPECT", "2")]);
        assert!(
            stderr.contains(&format!(
                "nrt-mock: nrt_init: NEURON_RT_VISIBLE_CORES={bad:?}"
            )),
            "{bad:?}: {stderr}"
        );
    }
    for (var, bad) in [
        ("NEURON_RT_NUM_CORES", "25"),
        ("NEURON_RT_NUM_CORES", "x"),
        ("NRT_MOCK_TOTAL_CORES", "0"),
    ] {
        let stderr = probe(&[(var, bad), ("PROBE_EXPECT", "2")]);
        assert!(stderr.contains(var), "{stderr}");
    }
}

#[test]
fn disjoint_processes_both_start() {
    let Some(d) = in_child_with_locks("disjoint_processes_both_start", "0-11") else {
        return;
    };
    init_ok();
    probe_sharing(
        &d,
        &[("NEURON_RT_VISIBLE_CORES", "12-23"), ("PROBE_EXPECT", "0")],
    );
    close();
}

#[test]
fn overlapping_process_fails_naming_busy_cores() {
    let Some(d) = in_child_with_locks("overlapping_process_fails_naming_busy_cores", "0-11") else {
        return;
    };
    init_ok();
    let stderr = probe_sharing(
        &d,
        &[
            ("NEURON_RT_VISIBLE_CORES", "11-12"),
            ("PROBE_EXPECT", &NRT_RESOURCE.to_string()),
        ],
    );
    assert!(
        stderr.contains("NeuronCore(s) not available - Requested:nc11-nc12"),
        "{stderr}"
    );
    assert!(stderr.contains("busy: nc11-nc11"), "{stderr}");
    // NUM_CORES counts only free cores: 12 are left.
    probe_sharing(&d, &[("NEURON_RT_NUM_CORES", "13"), ("PROBE_EXPECT", "4")]);
    probe_sharing(&d, &[("NEURON_RT_NUM_CORES", "12"), ("PROBE_EXPECT", "0")]);
    // nrt_close releases the cores.
    close();
    probe_sharing(
        &d,
        &[("NEURON_RT_VISIBLE_CORES", "11-12"), ("PROBE_EXPECT", "0")],
    );
}

#[test]
fn reinit_after_close_rereads_environment() {
    if !in_child(
        "reinit_after_close_rereads_environment",
        &[("NEURON_RT_VISIBLE_CORES", "0-1")],
    ) {
        return;
    }
    init_ok();
    assert_eq!(init(), NRT_FAILURE, "double init");
    assert_eq!(visible(), Ok(2));
    close();
    // SAFETY: the child runs one test on one thread; nothing reads the environment concurrently.
    unsafe { std::env::set_var("NEURON_RT_VISIBLE_CORES", "7") };
    assert_eq!(visible(), Ok(1));
    init_ok();
    assert_eq!(phys_of(0), 7);
    close();
}
