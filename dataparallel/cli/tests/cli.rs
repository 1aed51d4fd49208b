//! The `neuron-dp` binary, driven as a subprocess against the mock libnrt.
//!
//! Each test gets its own scratch directory and its own `NRT_MOCK_LOCK_DIR` (so tests run in
//! parallel without contending for simulated cores) and a 4-core simulated instance. Nothing
//! here asserts on timing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use nrt_mock::neff::{DType, MockModel, Op};
use serde_json::Value;

mod common;

use common::{Scratch, affine, assert_error, read_npy_f32, stderr, stdout, write_npy};

fn add() -> MockModel {
    MockModel::new("add", Op::Add)
        .input("a", DType::Float32, &[2, 4])
        .input("b", DType::Float32, &[2, 4])
        .output("sum", DType::Float32, &[2, 4])
        .exec_us(100)
}

/// Asserts a clap usage error (exit 2).
#[track_caller]
fn assert_usage(output: &Output) {
    assert_eq!(output.status.code(), Some(2), "stderr:\n{}", stderr(output));
    assert!(stderr(output).contains("error"), "{}", stderr(output));
}

fn npy_files(dir: &Path) -> Vec<String> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[test]
fn run_with_two_inputs_by_name_writes_the_output() {
    let s = Scratch::new();
    let neff = s.neff("add.neff", &add());
    let a: Vec<f32> = (0..20).map(|i| i as f32).collect();
    let b: Vec<f32> = (0..20).map(|i| 100.0 - i as f32 * 0.5).collect();
    let a_path = s.npy_f32("a.npy", &[5, 4], &a);
    let b_path = s.npy_f32("b.npy", &[5, 4], &b);
    let out_dir = s.path("nested/out");
    let out = s.run(&[
        "run",
        &neff,
        "--input",
        &format!("b={b_path}"),
        "--input",
        &format!("a={a_path}"),
        "--out-dir",
        out_dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("throughput"), "{text}");
    assert!(text.contains("rows/s"), "{text}");
    let (shape, sum) = read_npy_f32(&out_dir.join("sum.npy"));
    assert_eq!(shape, vec![5, 4]);
    let expected: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
    assert_eq!(sum, expected);
    assert_eq!(npy_files(&out_dir), vec!["sum.npy".to_owned()]);
}

#[test]
fn run_json_has_the_documented_fields() {
    let s = Scratch::new();
    let neff = s.neff("affine.neff", &affine());
    let x: Vec<f32> = (0..7 * 8).map(|i| i as f32).collect();
    let x_path = s.npy_f32("x.npy", &[7, 8], &x);
    let out_dir = s.path("out");
    let out = s
        .command(&[
            "run",
            &neff,
            "--input",
            &format!("x={x_path}"),
            "--out-dir",
            out_dir.to_str().unwrap(),
            "--device-ids",
            "nc:0,nc:2",
            "--json",
        ])
        .env("NEURON_RT_VISIBLE_CORES", "1-3")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_str(stdout(&out).trim()).expect("one JSON object");
    assert_eq!(report["schema"], "neuron-dp/1");
    assert_eq!(report["command"], "run");
    assert_eq!(report["rows"], 7);
    assert_eq!(report["model"]["name"], "affine");
    assert_eq!(report["model"]["inputs"][0]["name"], "x");
    assert_eq!(report["model"]["inputs"][0]["dtype"], "float32");
    assert_eq!(report["runtime"]["mock"], true);
    assert_eq!(
        report["engine"]["devices"],
        serde_json::json!(["nc:0", "nc:2"])
    );
    assert_eq!(
        report["engine"]["physical_cores"],
        serde_json::json!([1, 3])
    );
    let chunks = report["chunks"].as_array().unwrap();
    assert_eq!(chunks.len(), 2);
    let mut rows = 0;
    for chunk in chunks {
        for field in [
            "chunk",
            "logical_core",
            "device",
            "physical_core",
            "start",
            "rows",
            "pieces",
            "pad_rows",
            "time_ms",
        ] {
            assert!(chunk.get(field).is_some(), "chunk lacks {field}: {chunk}");
        }
        rows += chunk["rows"].as_u64().unwrap();
    }
    assert_eq!(rows, 7);
    // 7 rows over 2 cores: chunks of 4 and 3 rows, compiled batch 2: 2 pieces each, the
    // second chunk's last piece padded by one row.
    assert_eq!(chunks[0]["physical_core"], 1);
    assert_eq!(chunks[1]["physical_core"], 3);
    assert_eq!(report["totals"]["pieces"], 4);
    assert_eq!(report["totals"]["pad_rows"], 1);
    assert_eq!(report["totals"]["chunks"], 2);
    assert!(report["totals"]["wall_ms"].as_f64().unwrap() >= 0.0);
    assert!(report["throughput_rows_per_s"].as_f64().unwrap() > 0.0);
    let output = &report["outputs"][0];
    assert_eq!(output["name"], "y");
    assert_eq!(output["shape"], serde_json::json!([7, 8]));
    let (_, y) = read_npy_f32(Path::new(output["path"].as_str().unwrap()));
    let expected: Vec<f32> = x.iter().map(|v| v * 2.0 + 1.0).collect();
    assert_eq!(y, expected);

    // --pack: the 7 rows run as 4 whole compiled batches of 2, one chunk each, the last one
    // padded by a row; the same outputs.
    let packed = s.path("packed");
    let out = s.run(&[
        "run",
        &neff,
        "--input",
        &x_path,
        "--out-dir",
        packed.to_str().unwrap(),
        "--device-ids",
        "nc:0,nc:1",
        "--pack",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_str(stdout(&out).trim()).expect("one JSON object");
    let rows: Vec<u64> = report["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["rows"].as_u64().unwrap())
        .collect();
    assert_eq!(rows, vec![2, 2, 2, 1]);
    assert_eq!(report["totals"]["pad_rows"], 1);
    let (_, y) = read_npy_f32(Path::new(report["outputs"][0]["path"].as_str().unwrap()));
    assert_eq!(y, expected);
}

#[test]
fn a_single_input_model_takes_a_bare_file() {
    let s = Scratch::new();
    let neff = s.neff("affine.neff", &affine());
    let x_path = s.npy_f32("x.npy", &[3, 8], &[1.5; 24]);
    let out_dir = s.path("out");
    let out = s.run(&["run", &neff, "-i", &x_path, "-o", out_dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(read_npy_f32(&out_dir.join("y.npy")).1, vec![4.0; 24]);
}

#[test]
fn bench_with_iterations_reports_json() {
    let s = Scratch::new();
    let neff = s.neff("affine.neff", &affine());
    let out = s.run(&[
        "bench",
        &neff,
        "--iterations",
        "3",
        "--batch",
        "6",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_str(stdout(&out).trim()).expect("one JSON object");
    assert_eq!(report["schema"], "neuron-dp/1");
    assert_eq!(report["command"], "bench");
    assert_eq!(report["iterations"], 3);
    assert_eq!(report["batch"], 6);
    assert!(report["throughput_rows_per_s"].as_f64().unwrap() > 0.0);
    for field in ["min", "mean", "p50", "p90", "p99", "max"] {
        assert!(
            report["latency_ms"][field].as_f64().is_some(),
            "latency lacks {field}"
        );
    }
    let cores = report["cores"].as_array().unwrap();
    assert_eq!(cores.len(), 4);
    let executions: u64 = cores
        .iter()
        .map(|c| c["executions"].as_u64().unwrap())
        .sum();
    // 6 rows on 4 cores: chunks of 2, 2, 1, 1 rows, one piece each, three times.
    assert_eq!(executions, 12);
    // Two of the four chunks pad one row, three times: 6 pad rows for 18 real ones.
    assert_eq!(
        (
            report["rows_executed"].as_u64(),
            report["pad_rows"].as_u64()
        ),
        (Some(18), Some(6))
    );
    assert!((report["pad_ratio"].as_f64().unwrap() - 0.25).abs() < 1e-9);
    for core in cores {
        assert!(core["busy_share"].as_f64().unwrap() >= 0.0);
        assert_eq!(core["failures"], 0);
        assert_eq!(core["state"], "healthy");
        assert!(core["piece_p99_us"].as_u64().is_some());
    }
}

#[test]
fn bench_json_counts_busy_retries_per_core() {
    // 6 rows on 4 cores: one piece per core per forward, the warm-up forward first. Core 0's
    // 2nd and 3rd executions are refused as busy, core 2's 4th as queue-full: the engine
    // retries them and every forward succeeds.
    let s = Scratch::new();
    let neff = s.neff("affine.neff", &affine());
    let out = s
        .command(&[
            "bench",
            &neff,
            "--iterations",
            "3",
            "--batch",
            "6",
            "--json",
        ])
        .env("NRT_MOCK_FAULTS", "0:2:1005;0:3:1005;2:4:7")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_str(stdout(&out).trim()).expect("one JSON object");
    let cores = report["cores"].as_array().unwrap();
    let field =
        |name: &str| -> Vec<u64> { cores.iter().map(|c| c[name].as_u64().unwrap()).collect() };
    assert_eq!(field("busy_retries"), [2, 0, 1, 0]);
    assert_eq!(
        field("executions"),
        [3, 3, 3, 3],
        "a retried piece is one execution"
    );
    assert_eq!(field("failures"), [0, 0, 0, 0]);
    for core in cores {
        assert_eq!(core["state"], "healthy");
    }
    let text = s
        .command(&["bench", &neff, "--iterations", "2", "--batch", "6"])
        .env("NRT_MOCK_FAULTS", "1:2:1005")
        .output()
        .unwrap();
    assert!(text.status.success(), "{}", stderr(&text));
    assert!(stdout(&text).contains("busy retries"), "{}", stdout(&text));
}

#[test]
fn several_neffs_are_batch_size_buckets() {
    let s = Scratch::new();
    let at = |batch: u32| {
        MockModel::new(
            "affine",
            Op::Affine {
                scale: 2.0,
                bias: 1.0,
            },
        )
        .input("x", DType::Float32, &[batch, 8])
        .output("y", DType::Float32, &[batch, 8])
    };
    let b1 = s.neff("b1.neff", &at(1));
    let b4 = s.neff("b4.neff", &at(4));
    let x: Vec<f32> = (0..10 * 8).map(|i| i as f32).collect();
    let x_path = s.npy_f32("x.npy", &[10, 8], &x);
    let out_dir = s.path("out");
    let out = s.run(&[
        "run",
        &b4,
        &b1,
        "--input",
        &format!("x={x_path}"),
        "--out-dir",
        out_dir.to_str().unwrap(),
        "--device-ids",
        "nc:0,nc:1",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_str(stdout(&out).trim()).expect("one JSON object");
    assert_eq!(report["engine"]["batch_sizes"], serde_json::json!([1, 4]));
    assert_eq!(report["model"]["paths"].as_array().unwrap().len(), 2);
    // 10 rows on 2 cores: chunks of 5 = 4 + 1, no padding.
    for chunk in report["chunks"].as_array().unwrap() {
        assert_eq!(chunk["batch_sizes"], serde_json::json!([4, 1]));
        assert_eq!(chunk["pad_rows"], 0);
    }
    let (shape, y) = read_npy_f32(&out_dir.join("y.npy"));
    assert_eq!(shape, [10, 8]);
    for (a, b) in x.iter().zip(&y) {
        assert_eq!(a * 2.0 + 1.0, *b);
    }
}

#[test]
fn info_reports_the_library_cores_and_environment() {
    let s = Scratch::new();
    let out = s
        .command(&["info", "--json"])
        .env("NEURON_RT_VISIBLE_CORES", "2-3")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(report["command"], "info");
    assert_eq!(report["total_cores"], 4);
    assert_eq!(report["visible_cores"], 2);
    assert_eq!(report["lnc"], 1);
    assert_eq!(
        (
            report["total_physical_cores"].as_u64(),
            report["visible_physical_cores"].as_u64()
        ),
        (Some(4), Some(2))
    );
    assert_eq!(
        report["core_map"],
        serde_json::json!([
            {"logical": 0, "physical": 2, "physical_cores": [2]},
            {"logical": 1, "physical": 3, "physical_cores": [3]},
        ])
    );
    assert_eq!(report["env"]["NEURON_RT_VISIBLE_CORES"], "2-3");
    assert_eq!(report["env"]["NEURON_RT_NUM_CORES"], Value::Null);
    assert_eq!(report["env"]["NRT_MOCK_TOTAL_CORES"], "4");
    assert!(report["library"].as_str().unwrap().contains("nrt_mock"));

    let text = s.run(&["info"]);
    assert!(text.status.success());
    assert!(stdout(&text).contains("nc:3 -> 3"), "{}", stdout(&text));
}

#[test]
fn info_reports_logical_cores_of_two_physical_ones_under_lnc_2() {
    // 8 physical cores are 4 logical ones; visible logical cores 1-2 are physical 2-5.
    let s = Scratch::new();
    let lnc2 = |args: &[&str]| {
        s.command(args)
            .env("NRT_MOCK_TOTAL_CORES", "8")
            .env("NRT_MOCK_LNC", "2")
            .env("NEURON_RT_VISIBLE_CORES", "1-2")
            .output()
            .unwrap()
    };
    let out = lnc2(&["info", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(report["lnc"], 2);
    assert_eq!(
        (
            report["total_cores"].as_u64(),
            report["visible_cores"].as_u64()
        ),
        (Some(4), Some(2))
    );
    assert_eq!(
        (
            report["total_physical_cores"].as_u64(),
            report["visible_physical_cores"].as_u64()
        ),
        (Some(8), Some(4))
    );
    assert_eq!(
        report["core_map"],
        serde_json::json!([
            {"logical": 0, "physical": 2, "physical_cores": [2, 3]},
            {"logical": 1, "physical": 4, "physical_cores": [4, 5]},
        ])
    );
    let text = lnc2(&["info"]);
    assert!(text.status.success(), "{}", stderr(&text));
    let text = stdout(&text);
    assert!(text.contains("LNC 2: 4 of 8 physical cores"), "{text}");
    assert!(
        text.contains("nc:0 -> 2-3") && text.contains("nc:1 -> 4-5"),
        "{text}"
    );
}

#[test]
fn models_whose_dtypes_the_runtime_does_not_report_run_as_raw_bits() {
    // Every dtype code unknown: the float32 affine model has 4-byte elements of no known dtype.
    let s = Scratch::new();
    let neff = s.neff("affine.neff", &affine());
    let x: Vec<f32> = (0..5 * 8).map(|i| i as f32 * 0.5 - 7.0).collect();
    let input = s.npy_f32("x.npy", &[5, 8], &x);
    let out_dir = s.path("out");
    let unknown = |args: &[&str]| {
        s.command(args)
            .env("NRT_MOCK_DTYPE_ENCODING", "unknown")
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    };
    let out = unknown(&[
        "run",
        &neff,
        "--input",
        &input,
        "--out-dir",
        out_dir.to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("raw bits as uint32"),
        "the substitution is logged: {}",
        stderr(&out)
    );
    let report: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(report["outputs"][0]["dtype"], "uint32");
    let file = npyz::NpyFile::new(std::fs::File::open(out_dir.join("y.npy")).unwrap()).unwrap();
    assert_eq!(file.shape(), [5, 8]);
    let bits = file.into_vec::<u32>().unwrap();
    let want: Vec<u32> = x.iter().map(|v| (v * 2.0 + 1.0).to_bits()).collect();
    assert_eq!(bits, want, "the output's raw bits are the float32 results");
    // bench and bench --serve stand in random bits for the inputs.
    let out = unknown(&["bench", &neff, "--iterations", "2", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = unknown(&[
        "bench",
        &neff,
        "--serve",
        "--rate",
        "200",
        "--iterations",
        "10",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn without_a_library_every_subcommand_says_so_in_one_line() {
    let s = Scratch::new();
    let neff = s.neff("affine.neff", &affine());
    let x_path = s.npy_f32("x.npy", &[2, 8], &[0.0; 16]);
    let out_dir = s.path("out");
    let subcommands: [Vec<&str>; 4] = [
        vec!["info"],
        vec!["verify", &neff],
        vec![
            "run",
            &neff,
            "--input",
            &x_path,
            "--out-dir",
            out_dir.to_str().unwrap(),
        ],
        vec!["bench", &neff, "--iterations", "1"],
    ];
    for args in &subcommands {
        let out = s
            .command(args)
            .env("NRT_DYLIB_PATH", s.path("no-such-libnrt.so"))
            .output()
            .unwrap();
        assert_error(&out, 1, &["NRT_DYLIB_PATH", "cargo xtask demo"]);

        let out = s
            .command(args)
            .env_remove("NRT_DYLIB_PATH")
            .output()
            .unwrap();
        if out.status.success() {
            // A real libnrt is installed on this machine: nothing to check.
            continue;
        }
        assert_error(&out, 1, &["libnrt", "NRT_DYLIB_PATH", "cargo xtask demo"]);
    }
    assert!(!out_dir.exists());
}

/// Runs `run` on the affine model with `--input x=PATH`.
fn run_affine(s: &Scratch, input: &str) -> Output {
    let neff = s.neff("affine.neff", &affine());
    let out_dir = s.path("out");
    s.run(&[
        "run",
        &neff,
        "--input",
        &format!("x={input}"),
        "--out-dir",
        out_dir.to_str().unwrap(),
    ])
}

#[test]
fn a_missing_input_file_is_bad_input() {
    let s = Scratch::new();
    let missing = s.path("missing.npy");
    let out = run_affine(&s, missing.to_str().unwrap());
    assert_error(&out, 2, &["cannot read", "missing.npy"]);
    assert!(!s.path("out").exists());
}

#[test]
fn an_unreadable_input_is_bad_input() {
    let s = Scratch::new();
    let dir = s.path("a-directory.npy");
    std::fs::create_dir(&dir).unwrap();
    let out = run_affine(&s, dir.to_str().unwrap());
    assert_error(&out, 2, &["cannot read", "a-directory.npy"]);
}

#[test]
fn a_file_that_is_not_npy_is_bad_input() {
    let s = Scratch::new();
    let path = s.path("x.csv");
    std::fs::write(&path, "1,2,3\n").unwrap();
    let out = run_affine(&s, path.to_str().unwrap());
    assert_error(&out, 2, &["x.csv", "not a .npy file"]);

    let truncated = s.path("t.npy");
    let full = s.npy_f32("full.npy", &[2, 8], &[0.0; 16]);
    let bytes = std::fs::read(&full).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() - 4]).unwrap();
    let out = run_affine(&s, truncated.to_str().unwrap());
    assert_error(&out, 2, &["t.npy", "truncated"]);
}

#[test]
fn a_wrong_dtype_shows_expected_and_got() {
    let s = Scratch::new();
    let path = s.path("x.npy");
    write_npy(&path, &[2, 8], &[1i32; 16], npyz::Order::C);
    let out = run_affine(&s, path.to_str().unwrap());
    assert_error(&out, 2, &["\"x\"", "expected float32, got int32"]);

    write_npy(&path, &[2, 8], &[1f64; 16], npyz::Order::C);
    let out = run_affine(&s, path.to_str().unwrap());
    assert_error(&out, 2, &["float64", "does not support"]);
}

#[test]
fn a_wrong_shape_shows_expected_and_got() {
    let s = Scratch::new();
    let path = s.npy_f32("x.npy", &[3, 7], &[0.0; 21]);
    let out = run_affine(&s, &path);
    assert_error(&out, 2, &["\"x\"", "expected [N, 8]", "got [3, 7]"]);

    let path = s.npy_f32("x3.npy", &[2, 8, 1], &[0.0; 16]);
    let out = run_affine(&s, &path);
    assert_error(&out, 2, &["expected [N, 8]", "got [2, 8, 1]"]);
}

#[test]
fn fortran_order_is_refused() {
    let s = Scratch::new();
    let path = s.path("x.npy");
    write_npy(&path, &[2, 8], &[0f32; 16], npyz::Order::Fortran);
    let out = run_affine(&s, path.to_str().unwrap());
    assert_error(&out, 2, &["Fortran order", "C order"]);
}

#[test]
fn bfloat16_inputs_cannot_come_from_npy() {
    let s = Scratch::new();
    let model = MockModel::new("bf", Op::Identity)
        .input("x", DType::BFloat16, &[2, 4])
        .output("y", DType::BFloat16, &[2, 4]);
    let neff = s.neff("bf.neff", &model);
    let x = s.path("x.npy");
    write_npy(&x, &[2, 4], &[0u16; 8], npyz::Order::C);
    let out = s.run(&[
        "run",
        &neff,
        "--input",
        &format!("x={}", x.display()),
        "--out-dir",
        s.path("out").to_str().unwrap(),
    ]);
    assert_error(&out, 2, &["bfloat16"]);
}

#[test]
fn unknown_and_missing_input_names_are_bad_input() {
    let s = Scratch::new();
    let neff = s.neff("add.neff", &add());
    let a = s.npy_f32("a.npy", &[2, 4], &[0.0; 8]);
    let out_dir = s.path("out");
    let out_dir = out_dir.to_str().unwrap();

    let out = s.run(&[
        "run",
        &neff,
        "--input",
        &format!("a={a}"),
        "--input",
        &format!("z={a}"),
        "--out-dir",
        out_dir,
    ]);
    assert_error(&out, 2, &["no input \"z\"", "\"a\", \"b\""]);

    let out = s.run(&[
        "run",
        &neff,
        "--input",
        &format!("a={a}"),
        "--out-dir",
        out_dir,
    ]);
    assert_error(&out, 2, &["input \"b\" is missing", "--input b=FILE.npy"]);

    let out = s.run(&["run", &neff, "--input", &a, "--out-dir", out_dir]);
    assert_error(&out, 2, &["NAME=FILE.npy"]);

    // --input is required.
    assert_usage(&s.run(&["run", &neff, "--out-dir", out_dir]));
}

#[test]
fn bad_device_ids_are_bad_input() {
    let s = Scratch::new();
    let neff = s.neff("affine.neff", &affine());
    for ids in ["nc:x", "-1", "", "nc:0,,nc:1", "nc:1,nc:1"] {
        let out = s.run(&["bench", &neff, "--iterations", "1", "--device-ids", ids]);
        assert_usage(&out);
    }
    let out = s.run(&["bench", &neff, "--iterations", "1", "--device-ids", "nc:9"]);
    assert_error(&out, 2, &["nc:9", "out of range"]);
}

#[test]
fn a_bad_core_count_is_bad_input_like_bad_visible_cores() {
    let s = Scratch::new();
    let neff = s.neff("affine.neff", &affine());
    for value in ["-1", "abc", "100000"] {
        let out = s
            .command(&["bench", &neff, "--iterations", "1"])
            .env("NEURON_RT_NUM_CORES", value)
            .output()
            .unwrap();
        assert_error(&out, 2, &["NEURON_RT_NUM_CORES", value]);
    }
    let out = s
        .command(&["bench", &neff, "--iterations", "1"])
        .env("NEURON_RT_VISIBLE_CORES", "3-1")
        .output()
        .unwrap();
    assert_error(&out, 2, &["NEURON_RT_VISIBLE_CORES"]);
}

#[test]
fn a_neff_the_runtime_refuses_as_invalid_is_bad_input() {
    // The mock's nrt_load returns NRT_INVALID for a malformed NEURON_RT_EXEC_TIMEOUT, as
    // libnrt does for a NEFF whose header parses but whose payload it rejects.
    let s = Scratch::new();
    let neff = s.neff("affine.neff", &affine());
    let out = s
        .command(&["bench", &neff, "--iterations", "1"])
        .env("NEURON_RT_EXEC_TIMEOUT", "soon")
        .output()
        .unwrap();
    assert_error(&out, 2, &["nrt_load", "NRT_INVALID"]);
}

#[test]
fn bad_numbers_are_usage_errors() {
    let s = Scratch::new();
    let neff = s.neff("affine.neff", &affine());
    for args in [
        vec!["bench", &neff, "--split-size", "abc"],
        vec!["bench", &neff, "--split-size", "0"],
        vec!["bench", &neff, "--num-workers", "0"],
        vec!["bench", &neff, "--iterations", "-1"],
        vec!["bench", &neff, "--seconds", "0"],
        vec!["bench", &neff, "--batch", "1.5"],
        vec!["bench", &neff, "--dim", "x"],
        vec!["bench", &neff, "--seconds", "1", "--iterations", "2"],
    ] {
        assert_usage(&s.run(&args));
    }
    // A dim the model does not have is caught by the engine, also as bad input.
    let out = s.run(&["bench", &neff, "--iterations", "1", "--dim", "5"]);
    assert_error(&out, 2, &["dim 5"]);
}

#[test]
fn dynamic_batching_off_needs_cores_times_batch_rows() {
    let s = Scratch::new();
    let x = s.npy_f32("x.npy", &[5, 8], &[0.0; 40]);
    let neff = s.neff("affine.neff", &affine());
    let out = s.run(&[
        "run",
        &neff,
        "--input",
        &x,
        "--out-dir",
        s.path("out").to_str().unwrap(),
        "--no-dynamic-batching",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(!s.path("out").exists());
}

#[test]
fn a_core_failure_exits_1_naming_the_core_and_writes_nothing() {
    let s = Scratch::new();
    let neff = s.neff("affine.neff", &affine());
    let x = s.npy_f32("x.npy", &[8, 8], &[0.0; 64]);
    let out_dir = s.path("out");
    let out = s
        .command(&[
            "run",
            &neff,
            "--input",
            &x,
            "--out-dir",
            out_dir.to_str().unwrap(),
        ])
        .env("NRT_MOCK_FAULTS", "0:*:1004")
        .output()
        .unwrap();
    assert_error(&out, 1, &["nc:0", "physical core 0"]);
    assert!(npy_files(&out_dir).is_empty(), "{:?}", npy_files(&out_dir));

    // An existing output directory keeps its files untouched.
    std::fs::create_dir_all(&out_dir).unwrap();
    std::fs::write(out_dir.join("y.npy"), b"old").unwrap();
    let out = s
        .command(&[
            "run",
            &neff,
            "--input",
            &x,
            "--out-dir",
            out_dir.to_str().unwrap(),
        ])
        .env("NRT_MOCK_FAULTS", "1:*:1004")
        .output()
        .unwrap();
    assert_error(&out, 1, &["nc:1", "physical core 1"]);
    assert_eq!(npy_files(&out_dir), vec!["y.npy".to_owned()]);
    assert_eq!(std::fs::read(out_dir.join("y.npy")).unwrap(), b"old");
}

#[test]
fn an_out_dir_that_is_a_file_is_bad_input() {
    let s = Scratch::new();
    let x = s.npy_f32("x.npy", &[2, 8], &[0.0; 16]);
    let file = s.path("file");
    std::fs::write(&file, b"").unwrap();
    let neff = s.neff("affine.neff", &affine());
    let out = s.run(&[
        "run",
        &neff,
        "--input",
        &x,
        "--out-dir",
        file.to_str().unwrap(),
    ]);
    assert_error(&out, 2, &["not a directory"]);
}

#[test]
fn a_file_that_is_not_a_neff_is_bad_input() {
    let s = Scratch::new();
    let x = s.npy_f32("x.npy", &[2, 8], &[0.0; 16]);
    let out = s.run(&[
        "run",
        &x,
        "--input",
        &x,
        "--out-dir",
        s.path("out").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
}

#[test]
fn bench_serve_reports_the_batcher_and_latency_from_the_schedule() {
    let s = Scratch::new();
    let neff = s.neff("affine.neff", &affine());
    let out = s.run(&[
        "bench",
        &neff,
        "--serve",
        "--rate",
        "2000",
        "--iterations",
        "200",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_str(stdout(&out).trim()).expect("one JSON object");
    assert_eq!(report["schema"], "neuron-dp/1");
    assert_eq!(report["command"], "bench");
    assert_eq!(report["batch"], 1);
    let serve = &report["serve"];
    assert_eq!(serve["rate_per_s"].as_f64(), Some(2000.0));
    assert_eq!(serve["request_rows"], 1);
    assert_eq!(serve["max_delay_us"], 1000);
    // Default: 4 cores x compiled batch 2.
    assert_eq!(serve["max_batch_rows"], 8);
    assert_eq!(serve["batches_in_flight"], 2);
    assert_eq!(serve["pack"], true);
    assert_eq!(serve["requests_scheduled"], 200);
    let completed = serve["requests_completed"].as_u64().unwrap();
    let rejected = serve["requests_rejected"].as_u64().unwrap();
    assert_eq!(completed + rejected, 200);
    assert_eq!(report["iterations"].as_u64(), Some(completed));
    assert!(completed > 0);
    assert!(serve["throughput_requests_per_s"].as_f64().unwrap() > 0.0);
    // Every row that ran was in some batch of at most max_batch_rows rows.
    let buckets = serve["batch_rows"].as_array().unwrap();
    let batches: u64 = buckets.iter().map(|b| b["count"].as_u64().unwrap()).sum();
    assert_eq!(serve["batches"].as_u64(), Some(batches));
    assert!(batches > 0);
    for b in buckets {
        assert!(b["min"].as_u64().unwrap() >= 1);
        assert!(b["max"].as_u64().unwrap() <= 8);
    }
    let mean = serve["mean_batch_rows"].as_f64().unwrap();
    assert!((1.0..=8.0).contains(&mean), "{mean}");
    assert!(serve["queue_depth"]["max"].as_u64().is_some());
    assert!(serve["queue_depth"]["mean"].as_f64().is_some());
    assert!(serve["queue_depth"]["samples"].as_u64().unwrap() >= 1);
    assert!(serve["batcher_latency_ms"]["p99"].as_f64().is_some());
    for field in ["min", "mean", "p50", "p90", "p99", "max"] {
        assert!(
            report["latency_ms"][field].as_f64().is_some(),
            "latency lacks {field}"
        );
    }
    assert!(report["latency_ms"]["p50"].as_f64() <= report["latency_ms"]["p99"].as_f64());
    // The engine ran exactly the completed requests' rows, plus padding to the compiled batch.
    assert_eq!(report["rows_executed"].as_u64(), Some(completed));
    let ratio = report["pad_ratio"].as_f64().unwrap();
    assert!((0.0..1.0).contains(&ratio), "{ratio}");
    let cores = report["cores"].as_array().unwrap();
    assert_eq!(cores.len(), 4);
    for core in cores {
        assert_eq!(core["failures"], 0);
        assert_eq!(core["state"], "healthy");
    }

    // The text summary names the serving numbers; --serve needs --rate, and --batch is for
    // the closed loop only.
    let out = s.run(&[
        "bench",
        &neff,
        "--serve",
        "--rate",
        "1000",
        "--iterations",
        "20",
        "--unpacked",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for needle in [
        "requests/s",
        "queue",
        "batches",
        "from the scheduled time",
        "the engine's split",
    ] {
        assert!(text.contains(needle), "{needle} missing in {text}");
    }
    // Packing cuts calls itself: not with a split size.
    assert_usage(&s.run(&["bench", &neff, "--pack", "--split-size", "2"]));
    assert_usage(&s.run(&["bench", &neff, "--serve", "--iterations", "2"]));
    assert_usage(&s.run(&["bench", &neff, "--rate", "100", "--iterations", "2"]));
    assert_usage(&s.run(&["bench", &neff, "--serve", "--rate", "100", "--batch", "4"]));
}

// ---- Hardening: sizes, files, stdout and outputs a user controls ----

/// A .npy file whose header is `dict` (padded as numpy pads it) followed by `data`.
fn raw_npy(path: &Path, dict: &str, data: &[u8]) {
    let mut header = dict.as_bytes().to_vec();
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(b' ');
    }
    header.push(b'\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&u16::try_from(header.len()).unwrap().to_le_bytes());
    bytes.extend_from_slice(&header);
    bytes.extend_from_slice(data);
    std::fs::write(path, bytes).unwrap();
}

/// Two float32 inputs `a`, `b` `[2, 4]` copied to outputs named `out0`, `out1`.
fn identity2(out0: &str, out1: &str) -> MockModel {
    MockModel::new("id2", Op::Identity)
        .input("a", DType::Float32, &[2, 4])
        .input("b", DType::Float32, &[2, 4])
        .output(out0, DType::Float32, &[2, 4])
        .output(out1, DType::Float32, &[2, 4])
}

/// `run` of [`identity2`] into `out_dir` with a = 0..8, b = 10..18.
fn run_identity2(s: &Scratch, model: &MockModel, out_dir: &Path, json: bool) -> Output {
    let neff = s.neff("id2.neff", model);
    let a: Vec<f32> = (0..8).map(|i| i as f32).collect();
    let b: Vec<f32> = (10..18).map(|i| i as f32).collect();
    let a = s.npy_f32("a.npy", &[2, 4], &a);
    let b = s.npy_f32("b.npy", &[2, 4], &b);
    let mut args = vec![
        "run".to_owned(),
        neff,
        "--input".to_owned(),
        format!("a={a}"),
        "--input".to_owned(),
        format!("b={b}"),
        "--out-dir".to_owned(),
        out_dir.display().to_string(),
    ];
    if json {
        args.push("--json".to_owned());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    s.run(&args)
}

#[test]
fn npy_headers_claiming_more_data_than_the_file_holds_are_bad_input() {
    let s = Scratch::new();
    // 64 data bytes behind every header: the allocation must never follow the claim.
    for shape in [
        "(1073741824, 8)",
        "(17592186044416, 8)",
        "(18446744073709551615, 8)",
        "(4294967296, 4294967296, 8)",
    ] {
        let path = s.path("x.npy");
        let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
        raw_npy(&path, &dict, &[0; 64]);
        let out = run_affine(&s, path.to_str().unwrap());
        assert_error(&out, 2, &["x.npy"]);
        let err = stderr(&out);
        assert!(
            err.contains("truncated") || err.contains("more data than the file holds"),
            "{shape}: {err}"
        );
        assert!(!s.path("out").exists());
    }
    // A negative dimension and one past 2^64 are refused by the header parser.
    for shape in ["(-1, 8)", "(18446744073709551616, 8)"] {
        let path = s.path("x.npy");
        let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
        raw_npy(&path, &dict, &[0; 64]);
        let out = run_affine(&s, path.to_str().unwrap());
        assert_error(&out, 2, &["does not parse", "negative or above 2^64"]);
    }
}

#[test]
fn unparsable_npy_headers_are_one_short_line() {
    let s = Scratch::new();
    let path = s.path("x.npy");
    // An 82 KB header (version 2: 4-byte length) that does not parse.
    let junk = format!("{{'descr': '<f4',\n\n{}\n}}", "x".repeat(82_000));
    let mut bytes = b"\x93NUMPY\x02\x00".to_vec();
    bytes.extend_from_slice(&u32::try_from(junk.len()).unwrap().to_le_bytes());
    bytes.extend_from_slice(junk.as_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let out = run_affine(&s, path.to_str().unwrap());
    assert_error(&out, 2, &["x.npy", "10000-byte"]);
    assert!(stderr(&out).len() < 400, "{}", stderr(&out));

    // Within the header limit, multi-line and with a terminal escape: quoted, escaped, cut.
    let junk = format!(
        "{{'descr': '<f4',\n\u{1b}[2J\n'shape': {}}}",
        "(".repeat(3) + &"9".repeat(5_000)
    );
    raw_npy(&path, &junk, &[]);
    let out = run_affine(&s, path.to_str().unwrap());
    assert_error(&out, 2, &["does not parse", "it begins"]);
    let err = stderr(&out);
    assert!(err.len() < 500, "{} bytes: {err}", err.len());
    assert!(!err.contains('\u{1b}'), "{err}");
}

#[test]
fn devices_fifos_and_directories_are_refused_without_reading() {
    let s = Scratch::new();
    let x = s.npy_f32("x.npy", &[2, 8], &[0.0; 16]);
    let out_dir = s.path("out");
    let out_dir = out_dir.to_str().unwrap();
    // /dev/zero as the NEFF would be read until memory runs out.
    let out = s.run(&["run", "/dev/zero", "--input", &x, "--out-dir", out_dir]);
    assert_error(
        &out,
        2,
        &["/dev/zero", "character device", "regular NEFF file"],
    );
    let out = s.run(&["bench", "/dev/zero", "--iterations", "1"]);
    assert_error(&out, 2, &["character device"]);
    // ... and as an input.
    let out = run_affine(&s, "/dev/zero");
    assert_error(
        &out,
        2,
        &["/dev/zero", "character device", "regular .npy file"],
    );
    // A FIFO nobody writes to: opening it must not block.
    let fifo = s.path("fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let out = run_affine(&s, fifo.to_str().unwrap());
    assert_error(&out, 2, &["fifo", "FIFO"]);
    let out = s.run(&[
        "run",
        fifo.to_str().unwrap(),
        "--input",
        &x,
        "--out-dir",
        out_dir,
    ]);
    assert_error(&out, 2, &["FIFO"]);
    // A directory as the NEFF.
    let out = s.run(&["bench", s.dir.path().to_str().unwrap(), "--iterations", "1"]);
    assert_error(&out, 2, &["directory"]);
    assert!(!s.path("out").exists());
}

#[test]
fn sizes_and_counts_from_arguments_are_bounded_naming_the_limit() {
    let s = Scratch::new();
    let neff = s.neff("affine.neff", &affine());
    let max = u64::MAX.to_string();
    let cases: Vec<(Vec<&str>, &[&str])> = vec![
        (vec!["--batch", "1099511627776"], &["--batch", "of memory"]),
        (vec!["--batch", &max], &["--batch", "of memory"]),
        (
            vec!["--iterations", "1000000000000"],
            &["--iterations", "limit of 10000000"],
        ),
        (vec!["--iterations", &max], &["limit of 10000000"]),
        (vec!["--num-workers", &max], &["workers", "per core"]),
        (vec!["--num-workers", "257"], &["limit of 64 per core"]),
        (
            vec![
                "--serve",
                "--rate",
                "100",
                "--request-rows",
                "1099511627776",
            ],
            &["--request-rows", "batch limit of 8 rows"],
        ),
        (
            vec!["--serve", "--rate", "100", "--batches-in-flight", &max],
            &["--batches-in-flight", "limit of 64"],
        ),
        (
            vec!["--serve", "--rate", "100", "--max-delay-us", &max],
            &["--max-delay-us", "limit of 10000000"],
        ),
        (
            vec!["--serve", "--rate", "100", "--max-batch-rows", &max],
            &["the batcher", "of memory"],
        ),
        (
            vec![
                "--serve",
                "--rate",
                "100",
                "--max-batch-rows",
                &max,
                "--request-rows",
                &max,
            ],
            &["the batcher", "of memory"],
        ),
        (
            vec!["--serve", "--rate", "10000000", "--seconds", "86400"],
            &["requests", "limit of 10000000"],
        ),
        (
            vec!["--serve", "--rate", "100", "--iterations", &max],
            &["limit of 10000000"],
        ),
    ];
    for (extra, needles) in cases {
        let mut args = vec!["bench", neff.as_str()];
        args.extend(&extra);
        let out = s.run(&args);
        assert_error(&out, 2, needles);
    }
    // The limits themselves are accepted: a huge split size is one chunk per call, and a
    // delay at the limit with more rows per batch than requests still completes.
    let out = s.run(&["bench", &neff, "--iterations", "2", "--split-size", &max]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = s.run(&[
        "bench",
        &neff,
        "--serve",
        "--rate",
        "1000",
        "--iterations",
        "3",
        "--max-delay-us",
        "0",
        "--batches-in-flight",
        "64",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// Runs `neuron-dp ARGS` with stdout on the write end of a pipe whose read end is already
/// closed.
fn run_into_closed_pipe(s: &Scratch, args: &[&str]) -> Output {
    use std::os::fd::{FromRawFd as _, OwnedFd};
    let mut fds = [0; 2];
    // SAFETY: `fds` is a writable array of two ints, as pipe(2) requires.
    let made = unsafe { libc::pipe(fds.as_mut_ptr()) };
    assert_eq!(made, 0, "pipe: {}", std::io::Error::last_os_error());
    // SAFETY: pipe(2) returned two fresh descriptors this test now owns, each once.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(read);
    s.command(args)
        .stdout(std::process::Stdio::from(write))
        .output()
        .expect("start neuron-dp")
}

#[test]
fn a_closed_or_full_stdout_is_exit_1_not_a_panic() {
    let s = Scratch::new();
    let neff = s.neff("affine.neff", &affine());
    for args in [
        vec!["info"],
        vec!["info", "--json"],
        vec!["bench", &neff, "--iterations", "1"],
        vec!["bench", &neff, "--iterations", "1", "--json"],
    ] {
        let out = run_into_closed_pipe(&s, &args);
        assert_error(&out, 1, &["stdout", "broken pipe"]);
        assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));

        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let out = s.command(&args).stdout(full).output().unwrap();
        assert_error(
            &out,
            1,
            &["cannot write the report to stdout", "No space left"],
        );
    }
}

#[test]
fn an_unwritable_stderr_keeps_the_exit_code_instead_of_panicking() {
    let s = Scratch::new();
    let missing = s.path("missing.neff").display().to_string();
    let x = s.npy_f32("x.npy", &[2, 8], &[1.0; 16]);
    let out_dir = s.path("out").display().to_string();
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = s
        .command(&["run", &missing, "--input", &x, "--out-dir", &out_dir])
        .stderr(full)
        .output()
        .unwrap();
    // 2: the missing NEFF; a panic would be 101.
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

#[test]
fn a_link_planted_at_an_output_path_is_replaced_never_followed() {
    let s = Scratch::new();
    let victim = s.path("victim");
    std::fs::write(&victim, b"precious").unwrap();
    let out_dir = s.path("out");
    std::fs::create_dir(&out_dir).unwrap();
    std::os::unix::fs::symlink(&victim, out_dir.join("y.npy")).unwrap();
    let x = s.npy_f32("x.npy", &[2, 8], &[1.0; 16]);
    let out = run_affine(&s, &x);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    let written = std::fs::symlink_metadata(out_dir.join("y.npy")).unwrap();
    assert!(written.file_type().is_file(), "{written:?}");
    let (shape, values) = read_npy_f32(&out_dir.join("y.npy"));
    assert_eq!(shape, vec![2, 8]);
    assert_eq!(values, vec![3.0; 16]);
    // No temporary or backup file is left.
    assert_eq!(npy_files(&out_dir), vec!["y.npy".to_owned()]);
}

#[test]
fn outputs_appear_all_or_none() {
    let s = Scratch::new();
    let out_dir = s.path("out");
    std::fs::create_dir(&out_dir).unwrap();
    std::fs::write(out_dir.join("first.npy"), b"old").unwrap();
    std::fs::create_dir(out_dir.join("second.npy")).unwrap();
    let model = identity2("first", "second");
    let out = run_identity2(&s, &model, &out_dir, false);
    assert_error(&out, 2, &["second.npy", "is a directory"]);
    let mut left = npy_files(&out_dir);
    left.sort();
    assert_eq!(left, vec!["first.npy".to_owned(), "second.npy".to_owned()]);
    assert_eq!(std::fs::read(out_dir.join("first.npy")).unwrap(), b"old");

    // Once the way is clear both appear, replacing the old file.
    std::fs::remove_dir(out_dir.join("second.npy")).unwrap();
    let out = run_identity2(&s, &model, &out_dir, false);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut left = npy_files(&out_dir);
    left.sort();
    assert_eq!(left, vec!["first.npy".to_owned(), "second.npy".to_owned()]);
    assert_eq!(read_npy_f32(&out_dir.join("first.npy")).1[7], 7.0);
    assert_eq!(read_npy_f32(&out_dir.join("second.npy")).1[0], 10.0);
}

#[test]
fn long_output_names_are_cut_to_fit_and_reported() {
    let s = Scratch::new();
    let out_dir = s.path("out");
    let long_a = format!("{}a", "n".repeat(254));
    let long_b = format!("{}b", "n".repeat(254));
    let model = identity2(&long_a, &long_b);
    let out = run_identity2(&s, &model, &out_dir, true);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    let outputs = report["outputs"].as_array().unwrap();
    assert_eq!(outputs.len(), 2);
    let mut files = Vec::new();
    for (output, expected) in outputs.iter().zip([0.0, 10.0]) {
        let path = PathBuf::from(output["path"].as_str().unwrap());
        let file = path.file_name().unwrap().to_str().unwrap().to_owned();
        assert!(file.len() <= 255, "{} bytes: {file}", file.len());
        assert!(file.starts_with("nnnn") && file.ends_with(".npy"), "{file}");
        assert_eq!(read_npy_f32(&path).1[0], expected);
        files.push(file);
    }
    assert_ne!(files[0], files[1]);
    assert_eq!(outputs[0]["name"].as_str(), Some(long_a.as_str()));
    let mut left = npy_files(&out_dir);
    left.sort();
    files.sort();
    assert_eq!(left, files);
}
