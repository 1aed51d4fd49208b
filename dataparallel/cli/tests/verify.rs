//! `neuron-dp verify` against the mock: every core alone and the engine agree bit for bit
//! (exit 0), and a core that computes differently, fails, or disagrees with known outputs is
//! named (exit 1). Each test has its own scratch directory and lock directory; nothing here
//! asserts on timing.

use std::process::Output;

use nrt_mock::neff::{DType, MockModel, Op, set_lnc_size};
use serde_json::Value;

mod common;

use common::{Scratch, affine, assert_error, stderr, stdout};

fn json(output: &Output) -> Value {
    serde_json::from_str(stdout(output).trim()).expect("one JSON object on stdout")
}

/// Each core's `result` in the report.
fn results(report: &Value) -> Vec<String> {
    report["cores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["result"].as_str().unwrap().to_owned())
        .collect()
}

/// Exit 1 with exactly one `neuron-dp: error:` line (the mock may log lines of its own).
#[track_caller]
fn assert_failed(output: &Output, needles: &[&str]) {
    assert_error(output, 1, needles);
    let err = stderr(output);
    assert!(err.contains("neuron-dp: error: verify failed"), "{err}");
}

#[test]
fn every_core_and_the_engine_agree_on_a_healthy_instance() {
    let s = Scratch::new();
    let neff = s.neff("affine.neff", &affine());
    let out = s.run(&["verify", &neff, "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report = json(&out);
    assert_eq!(report["command"], "verify");
    assert_eq!(report["passed"], true);
    assert_eq!(report["inputs"], "random");
    assert_eq!(report["rows"], 8, "default: cores x compiled batch");
    assert_eq!(report["reference"], "nc:0");
    assert_eq!(report["topology"]["lnc"], 1);
    assert_eq!(report["topology"]["visible_cores"], 4);
    assert_eq!(results(&report), ["agrees"; 4]);
    let physical: Vec<u64> = report["cores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["physical_core"].as_u64().unwrap())
        .collect();
    assert_eq!(physical, [0, 1, 2, 3]);
    assert_eq!(report["engine"]["result"], "agrees");
    assert!(
        report["runtime"]["version"]
            .as_str()
            .unwrap()
            .starts_with("2.30")
    );

    // Text: the runtime, the topology, a line per core, and the one-line verdict last.
    let out = s.run(&["verify", &neff, "--batch", "7", "--seed", "3"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("libnrt 2.30") && text.contains("LNC 1"),
        "{text}"
    );
    assert!(text.contains("nc:3 alone (physical 3)"), "{text}");
    let last = text.lines().last().unwrap();
    assert!(
        last.starts_with("verify passed: 4 cores alone and the engine") && last.contains("7 rows"),
        "{text}"
    );
}

#[test]
fn cores_that_compute_differently_are_named() {
    // core_id writes the physical core that ran each row: no two cores agree.
    let s = Scratch::new();
    let model = MockModel::new("ids", Op::CoreId)
        .input("x", DType::Float32, &[2, 8])
        .output("id", DType::Int32, &[2, 1]);
    let neff = s.neff("ids.neff", &model);
    let out = s.run(&["verify", &neff, "--json"]);
    assert_failed(&out, &["nc:1 (physical 1) differs", "the engine differs"]);
    let report = json(&out);
    assert_eq!(report["passed"], false);
    assert_eq!(
        results(&report),
        ["agrees", "differs", "differs", "differs"]
    );
    assert_eq!(report["cores"][1]["mismatch"]["output"], "id");
    assert_eq!(report["cores"][1]["mismatch"]["element"], 0);
    // The engine's rows 0-1 ran on nc:0, as the reference did; row 2 is the first that differs.
    assert_eq!(report["engine"]["result"], "differs");
    assert_eq!(report["engine"]["mismatch"]["element"], 2);
}

#[test]
fn a_failing_core_is_named_with_its_status() {
    let s = Scratch::new();
    let neff = s.neff("affine.neff", &affine());
    let out = s
        .command(&["verify", &neff, "--json"])
        .env("NRT_MOCK_FAULTS", "2:*:1004")
        .output()
        .unwrap();
    assert_failed(
        &out,
        &["nc:2 (physical 2) failed with NRT_EXEC_COMPLETED_WITH_ERR"],
    );
    let report = json(&out);
    assert_eq!(results(&report), ["agrees", "agrees", "failed", "agrees"]);
    assert_eq!(report["cores"][2]["status"], "NRT_EXEC_COMPLETED_WITH_ERR");
    assert!(
        report["cores"][2]["error"]
            .as_str()
            .unwrap()
            .contains("nc:2")
    );
    assert_eq!(report["engine"]["result"], "failed");
}

#[test]
fn known_outputs_are_checked_bit_for_bit() {
    let s = Scratch::new();
    let neff = s.neff("affine.neff", &affine());
    let x: Vec<f32> = (0..6 * 8).map(|i| i as f32 * 0.25 - 3.0).collect();
    let mut y: Vec<f32> = x.iter().map(|v| v * 2.0 + 1.0).collect();
    let input = s.npy_f32("x.npy", &[6, 8], &x);
    let good = s.npy_f32("y.npy", &[6, 8], &y);
    let expected = format!("y={good}");
    let out = s.run(&[
        "verify",
        &neff,
        "--input",
        &input,
        "--expected",
        &expected,
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report = json(&out);
    assert_eq!(
        (
            &report["inputs"],
            &report["reference"],
            &report["seed"],
            &report["rows"]
        ),
        (
            &Value::from("files"),
            &Value::from("expected"),
            &Value::Null,
            &Value::from(6)
        )
    );
    assert_eq!(results(&report), ["agrees"; 4]);

    // One element off by one bit: every core and the engine differ there.
    y[13] = f32::from_bits(y[13].to_bits() ^ 1);
    let bad = s.npy_f32("bad.npy", &[6, 8], &y);
    let out = s.run(&[
        "verify",
        &neff,
        "--input",
        &input,
        "--expected",
        &bad,
        "--json",
    ]);
    assert_failed(&out, &["against the expected outputs", "from element 13"]);
    let report = json(&out);
    assert_eq!(results(&report), ["differs"; 4]);
    assert_eq!(report["engine"]["mismatch"]["element"], 13);

    // Expected outputs of the wrong shape, or without inputs, are bad input (exit 2).
    let short = s.npy_f32("short.npy", &[5, 8], &y[..40]);
    let out = s.run(&["verify", &neff, "--input", &input, "--expected", &short]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not the shape these inputs give"),
        "{}",
        stderr(&out)
    );
    let out = s.run(&["verify", &neff, "--expected", &good]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn logical_cores_of_two_physical_ones_are_checked() {
    // trn2's default LNC=2: 8 physical cores are 4 logical ones, and the NEFF says lnc_size 2.
    let s = Scratch::new();
    let path = s.path("affine-lnc2.neff");
    let mut bytes = affine().to_neff_bytes();
    set_lnc_size(&mut bytes, 2);
    std::fs::write(&path, bytes).unwrap();
    let out = s
        .command(&["verify", path.to_str().unwrap(), "--json"])
        .env("NRT_MOCK_TOTAL_CORES", "8")
        .env("NRT_MOCK_LNC", "2")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let report = json(&out);
    assert_eq!(report["topology"]["lnc"], 2);
    assert_eq!(report["topology"]["total_physical_cores"], 8);
    assert_eq!(results(&report), ["agrees"; 4]);
    let physical: Vec<u64> = report["cores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["physical_core"].as_u64().unwrap())
        .collect();
    assert_eq!(physical, [0, 2, 4, 6]);
}
