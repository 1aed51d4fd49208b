//! The HTTP load bench's arithmetic and checks, without a server or a clock: the open-loop
//! schedule and its bounds, percentiles with unserved requests infinitely late, the
//! `GET /metrics` and `/proc/<pid>/stat` parsing, and the check of the answers
//! (`benches/http_load/`).

// The bench's own modules, compiled here as they are there; the bench uses the items these
// tests leave alone.
#[allow(dead_code)]
#[path = "../benches/http_load/body.rs"]
mod body;
#[allow(dead_code)]
#[path = "../benches/http_load/cpu.rs"]
mod cpu;
#[allow(dead_code)]
#[path = "../benches/http_load/metrics.rs"]
mod metrics;
#[allow(dead_code)]
#[path = "../benches/http_load/schedule.rs"]
mod schedule;

use std::time::Duration;

use body::{Bodies, Encoding, FEATURES, VARIANTS};
use metrics::Batching;
use schedule::{GRACE, MAX_RATE, MAX_REQUESTS, MAX_SECONDS, Outcome, Plan, percentile};

#[test]
fn a_plan_schedules_rate_times_seconds_at_exact_offsets() {
    let plan = Plan::new(4000.0, 1.5).unwrap();
    assert_eq!(plan.total(), 6000);
    assert_eq!(plan.due(0), Duration::ZERO);
    assert_eq!(plan.due(1), Duration::from_micros(250));
    // No drift: the 6000th request is due at exactly 1.5 s.
    assert_eq!(plan.due(6000), Duration::from_millis(1500));
    assert_eq!(plan.give_up(), Duration::from_millis(1500) + GRACE);
    // Offsets never go back.
    assert!((1..6000).all(|i| plan.due(i) > plan.due(i - 1)));
    // At least one request, however short.
    assert_eq!(Plan::new(1.0, 0.01).unwrap().total(), 1);
}

#[test]
fn a_plan_out_of_bounds_is_refused_before_anything_is_allocated() {
    for (rate, seconds) in [
        (0.0, 1.0),
        (-5.0, 1.0),
        (f64::NAN, 1.0),
        (f64::INFINITY, 1.0),
        (MAX_RATE * 2.0, 1.0),
        (1000.0, 0.0),
        (1000.0, -1.0),
        (1000.0, f64::NAN),
        (1000.0, MAX_SECONDS + 1.0),
    ] {
        let error = Plan::new(rate, seconds).unwrap_err();
        assert!(error.contains("give"), "{error}");
    }
    // Each bound alone is fine; their product is over the request bound.
    assert!(MAX_RATE * MAX_SECONDS > MAX_REQUESTS as f64);
    let error = Plan::new(MAX_RATE, MAX_SECONDS).unwrap_err();
    assert!(error.contains(&MAX_REQUESTS.to_string()), "{error}");
}

#[test]
fn percentiles_are_nearest_rank() {
    let mut samples: Vec<f64> = (1..=100).rev().map(f64::from).collect();
    assert_eq!(percentile(&mut samples, 0.0), 1.0);
    assert_eq!(percentile(&mut samples, 0.99), 99.0);
    assert_eq!(percentile(&mut samples, 1.0), 100.0);
    assert_eq!(percentile(&mut [7.0], 0.5), 7.0);
    assert!(percentile(&mut [], 0.5).is_nan());
}

fn outcome(latencies_ms: &[f64], unserved: usize, errors: usize) -> Outcome {
    let mut outcome = Outcome::new(latencies_ms.len() + unserved + errors);
    outcome.latencies_ms.extend_from_slice(latencies_ms);
    outcome.unserved = unserved;
    for _ in 0..errors {
        outcome.error(|| "wrong".to_owned());
    }
    outcome
}

#[test]
fn unserved_and_failed_requests_are_infinitely_late() {
    let fast = vec![2.0; 99];
    // 1 of 100 unserved: p99 is still a served request's.
    let one = outcome(&fast, 1, 0);
    assert_eq!(one.quantile(0.99), 2.0);
    assert_eq!(one.quantile(1.0), f64::INFINITY);
    assert!(one.sustained());
    // 2 of 100 (unserved or failed): p99 is infinite, the run not sustained.
    for (unserved, errors) in [(2, 0), (0, 2), (1, 1)] {
        let two = outcome(&fast[..98], unserved, errors);
        assert_eq!(two.quantile(0.99), f64::INFINITY);
        assert!(!two.sustained());
    }
    // Every request served but slow at the tail.
    let mut slow = vec![2.0; 95];
    slow.extend([12.0; 5]);
    assert_eq!(outcome(&slow, 0, 0).quantile(0.99), 12.0);
    assert!(!outcome(&slow, 0, 0).sustained());
    // Turned away is a kind of unserved.
    let mut refused = outcome(&fast, 0, 0);
    refused.turn_away();
    assert_eq!((refused.unserved, refused.turned_away), (1, 1));
    assert_eq!(refused.quantile(1.0), f64::INFINITY);
    // The first error is kept.
    let mut failed = Outcome::new(2);
    failed.error(|| "first".to_owned());
    failed.error(|| "second".to_owned());
    assert_eq!(
        (failed.errors, failed.first_error.as_deref()),
        (2, Some("first"))
    );
}

const METRICS: &str = "\
# HELP neuron_dp_batches_total Batches run.
# TYPE neuron_dp_batches_total counter
neuron_dp_batches_total{model=\"m\"} 10
# TYPE neuron_dp_batch_rows_total counter
neuron_dp_batch_rows_total{model=\"m\"} 45
neuron_dp_pad_rows_total{model=\"m\"} 35
neuron_dp_batch_rows_bucket{model=\"m\",le=\"1\"} 999
neuron_dp_batch_rows_sum{model=\"m\"} 999
";

#[test]
fn batching_comes_from_the_metrics_counters_only() {
    let batching = Batching::from_metrics(METRICS).unwrap();
    assert_eq!(
        batching,
        Batching {
            batches: 10,
            rows: 45,
            pad_rows: 35
        }
    );
    let before = Batching {
        batches: 2,
        rows: 5,
        pad_rows: 15,
    };
    let run = batching.since(&before);
    assert_eq!(run.mean_batch_rows(), Some(5.0));
    assert_eq!(run.pad_ratio(), Some(0.333_333_333_333_333_3));
    assert_eq!(Batching::default().mean_batch_rows(), None);
    assert_eq!(Batching::default().pad_ratio(), None);
}

#[test]
fn metrics_without_a_counter_or_with_a_bad_value_are_refused() {
    let missing = METRICS.replace("neuron_dp_pad_rows_total", "other_total");
    let error = Batching::from_metrics(&missing).unwrap_err();
    assert!(error.contains("neuron_dp_pad_rows_total"), "{error}");
    let bad = METRICS.replace("} 10", "} ten");
    let error = Batching::from_metrics(&bad).unwrap_err();
    assert!(error.contains("not a count"), "{error}");
}

/// A JSON inference response with `data` as its one output.
fn json_answer(data: &[f32]) -> Vec<u8> {
    serde_json::json!({
        "model_name": "m",
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [1, FEATURES], "data": data}],
    })
    .to_string()
    .into_bytes()
}

#[test]
fn json_requests_carry_their_row_and_answers_are_checked_by_value() {
    let bodies = Bodies::new(Encoding::Json, "x", "y");
    let i = VARIANTS + 3;
    let request: serde_json::Value = serde_json::from_slice(&bodies.body(i).bytes).unwrap();
    let sent: Vec<f32> = serde_json::from_value(request["inputs"][0]["data"].clone()).unwrap();
    assert_eq!(sent, body::row(3));
    assert!(bodies.body(i).json_length.is_none());
    let right = body::expected(3);
    assert_eq!(right[0], body::row(3)[0] * 2.0 + 1.0);
    bodies.check(i, None, &json_answer(&right)).unwrap();
    // Another request's row, a changed value, no outputs, not JSON.
    assert!(
        bodies
            .check(i, None, &json_answer(&body::expected(4)))
            .is_err()
    );
    let mut off = right.clone();
    off[FEATURES - 1] += 1.0;
    assert!(bodies.check(i, None, &json_answer(&off)).is_err());
    assert!(bodies.check(i, None, br#"{"outputs": []}"#).is_err());
    assert!(bodies.check(i, None, b"<html>").is_err());
}

#[test]
fn binary_requests_split_at_their_header_length_and_answers_are_checked_by_bytes() {
    let bodies = Bodies::new(Encoding::Binary, "x", "y");
    let sent = bodies.body(5);
    let length = sent.json_length.unwrap();
    let header: serde_json::Value = serde_json::from_slice(&sent.bytes[..length]).unwrap();
    assert_eq!(
        header["inputs"][0]["parameters"]["binary_data_size"],
        FEATURES * 4
    );
    let row: Vec<u8> = body::row(5).iter().flat_map(|v| v.to_le_bytes()).collect();
    assert_eq!(&sent.bytes[length..], &row[..]);

    let json = br#"{"model_name":"m","outputs":[]}"#;
    let answer = |values: &[f32]| {
        let mut bytes = json.to_vec();
        bytes.extend(values.iter().flat_map(|v| v.to_le_bytes()));
        bytes
    };
    bodies
        .check(5, Some(json.len()), &answer(&body::expected(5)))
        .unwrap();
    assert!(
        bodies
            .check(5, Some(json.len()), &answer(&body::expected(6)))
            .is_err()
    );
    assert!(bodies.check(5, None, &answer(&body::expected(5))).is_err());
    assert!(
        bodies
            .check(5, Some(json.len() + 1), &answer(&body::expected(5)))
            .is_err()
    );
    assert!(bodies.check(5, Some(usize::MAX), json).is_err());
    // The in-process check reads native-endian floats.
    let native: Vec<u8> = body::expected(5)
        .iter()
        .flat_map(|v| v.to_ne_bytes())
        .collect();
    bodies.check_native(5, &native).unwrap();
    assert!(bodies.check_native(6, &native).is_err());
    assert!(bodies.check_native(5, &native[4..]).is_err());
}

#[test]
fn cpu_ticks_are_utime_plus_stime_whatever_the_command_name() {
    let stat = "4242 (a) b (c) R 1 2 3 0 -1 4194304 124 0 0 0 700 55 0 0 20 0 1 0 5696159";
    assert_eq!(cpu::parse_ticks(stat), Some(755));
    assert_eq!(cpu::parse_ticks("4242 (x) R 1 2"), None);
    assert_eq!(cpu::parse_ticks("no parenthesis"), None);
    // This process has a stat file and has run.
    assert!(cpu::cpu_time(None).is_some());
}
