//! The request batcher against the mock: many threads of small requests, each getting exactly
//! its rows back; the bounded queue (`Full`, submit timeout); deadlines that expire while
//! queued; `max_delay` as a lower bound; coalescing; shutdown draining; validation at submit;
//! engine errors delivered to the requests of the failed chunks only; batches packed into
//! whole compiled batches; the ticket's non-blocking and async faces.
//!
//! Timing: nothing here asserts an upper bound on time (the machine may be slow and busy).
//! Tests that need the batcher busy block it with a batch that is full on its own (as many
//! rows as `max_batch_rows`, so it closes the moment it is dequeued) on a slow model.
//!
//! Each test uses its own cores, so the tests of this binary can run in parallel.

mod common;

use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::{Duration, Instant};

use common::{
    MockDType, MockModel, Op, add_model, affine_model, bits, core_id_model, engine, neff,
    ref_affine,
};
use dataparallel::batcher::{
    Batcher, BatcherConfig, OwnedTensor, Request, RequestError, SubmitTimeoutError, Ticket,
    TrySubmitError,
};
use dataparallel::{Config, DataParallel};
use neuron_rt::DType;

const SCALE: f32 = 1.5;
const BIAS: f32 = -0.25;
const FEATURES: usize = 4;

/// The mock's fault rules are process-wide: tests that set them take turns.
static FAULTS: Mutex<()> = Mutex::new(());

/// The affine model `[b, 4] -> [b, 4]` on `cores`, `exec_us` per execution.
fn affine_engine(b: u32, exec_us: u64, cores: &str) -> Arc<DataParallel> {
    let model = affine_model(b, FEATURES as u32, SCALE, BIAS).exec_us(exec_us);
    Arc::new(engine(&neff(model), Config::default().device_list(cores)))
}

/// A request of `rows` rows whose values all differ from every other request's (`tag`).
fn tagged(tag: usize, rows: usize) -> (Request, Vec<f32>) {
    let x: Vec<f32> = (0..rows * FEATURES)
        .map(|i| (tag * 16 + i) as f32)
        .collect();
    let request = Request::new(vec![OwnedTensor::f32([rows, FEATURES], &x)]);
    (request, x)
}

/// Checks a response holds exactly `x`'s rows, transformed.
fn check_affine(what: &str, ticket: Ticket, x: &[f32]) {
    let response = ticket.wait().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(response.outputs.len(), 1, "{what}");
    let y = &response.outputs[0];
    assert_eq!(y.name.as_deref(), Some("y"), "{what}");
    assert_eq!(y.dtype, DType::Float32, "{what}");
    assert_eq!(y.shape, vec![x.len() / FEATURES, FEATURES], "{what}");
    let got = y.to_vec::<f32>().expect("float32 bytes");
    assert_eq!(
        bits(&got),
        bits(&ref_affine(x, SCALE, BIAS)),
        "{what}: got {got:?}"
    );
    assert!(response.batch_rows >= x.len() / FEATURES, "{what}");
}

/// Waits (bounded by a generous timeout) until the batcher has taken every queued request.
fn wait_until_dequeued(batcher: &Batcher) {
    let start = Instant::now();
    while batcher.stats().queue_depth > 0 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the batcher never took the blocking request"
        );
        thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn many_threads_each_get_exactly_their_rows() {
    const THREADS: usize = 16;
    const REQUESTS: usize = 50;
    const IN_FLIGHT: usize = 5;
    let batcher = Batcher::new(
        affine_engine(8, 200, "nc:0,nc:1,nc:2,nc:3"),
        BatcherConfig::default()
            .max_batch_rows(32)
            .max_delay(Duration::from_millis(2))
            .queue_capacity(64),
    )
    .expect("batcher");
    assert_eq!(batcher.max_batch_rows(), 32);

    let total_rows: usize = thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let batcher = &batcher;
                scope.spawn(move || {
                    let mut rows_sent = 0;
                    let mut pending: Vec<(String, Ticket, Vec<f32>)> = Vec::new();
                    for i in 0..REQUESTS {
                        let rows = 1 + (t + i) % 3;
                        rows_sent += rows;
                        let (request, x) = tagged(t * REQUESTS + i, rows);
                        let ticket = batcher.submit(request).expect("submit");
                        pending.push((format!("thread {t} request {i} ({rows} rows)"), ticket, x));
                        if pending.len() == IN_FLIGHT {
                            for (what, ticket, x) in pending.drain(..) {
                                check_affine(&what, ticket, &x);
                            }
                        }
                    }
                    for (what, ticket, x) in pending.drain(..) {
                        check_affine(&what, ticket, &x);
                    }
                    rows_sent
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .sum()
    });

    let stats = batcher.shutdown();
    let requests = (THREADS * REQUESTS) as u64;
    assert_eq!(stats.submitted, requests, "{stats:#?}");
    assert_eq!(stats.completed, requests, "{stats:#?}");
    assert_eq!(
        stats.failed + stats.expired + stats.rejected_full,
        0,
        "{stats:#?}"
    );
    assert_eq!(stats.rows, total_rows as u64, "{stats:#?}");
    // Coalesced: fewer batches than requests, none larger than the limit.
    assert!(stats.batches < requests, "no coalescing: {stats:#?}");
    assert!(stats.batch_rows.max().unwrap() <= 32, "{stats:#?}");
    assert_eq!(stats.batch_rows.count(), stats.batches);
    assert_eq!(stats.latency_us.count(), requests);
    assert!(stats.latency_p50().unwrap() <= stats.latency_p99().unwrap());
    assert!(stats.mean_queue_wait().is_some());
    assert_eq!(stats.queue_depth, 0);
}

#[test]
fn inputs_matched_by_name_and_int_outputs() {
    // Two inputs, given in reverse order by name; and the core_id model's int32 output.
    let add = Arc::new(engine(
        &neff(add_model(4, 3)),
        Config::default().device_list("nc:10,nc:11"),
    ));
    let batcher = Batcher::new(add, BatcherConfig::default()).expect("batcher");
    assert_eq!(
        batcher.max_batch_rows(),
        8,
        "default: cores x compiled batch"
    );
    let tickets: Vec<_> = (0..6)
        .map(|i| {
            let a: Vec<f32> = (0..6).map(|j| (i * 10 + j) as f32).collect();
            let b: Vec<f32> = (0..6).map(|j| (j * 100) as f32).collect();
            let request = Request::new(vec![
                OwnedTensor::f32([2, 3], &b).named("b"),
                OwnedTensor::f32([2, 3], &a).named("a"),
            ]);
            let want: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
            (batcher.try_submit(request).expect("room"), want)
        })
        .collect();
    for (ticket, want) in tickets {
        let response = ticket.wait().expect("add");
        assert_eq!(response.outputs[0].name.as_deref(), Some("sum"));
        assert_eq!(response.outputs[0].to_vec::<f32>().unwrap(), want);
    }

    let ids = Arc::new(engine(
        &neff(core_id_model(2)),
        Config::default().device_list("nc:12"),
    ));
    let batcher = Batcher::new(ids, BatcherConfig::default().max_batch_rows(5)).expect("batcher");
    let ticket = batcher
        .submit(Request::new(vec![OwnedTensor::f32([3, 2], &[0.0; 6])]))
        .expect("submit");
    let out = &ticket.wait().expect("core_id").outputs[0];
    assert_eq!(out.dtype, DType::Int32);
    assert_eq!(out.shape, vec![3, 1]);
    assert_eq!(
        out.to_vec::<i32>().unwrap(),
        vec![12; 3],
        "physical core 12 ran it"
    );
}

#[test]
fn full_queue_hands_the_request_back_and_submit_times_out() {
    // One slow core; the blocking request fills a batch by itself and holds the one
    // batcher thread, so nothing leaves the queue until it is done.
    let batcher = Batcher::new(
        affine_engine(8, 600_000, "nc:4"),
        BatcherConfig::default()
            .max_batch_rows(8)
            .max_delay(Duration::ZERO)
            .queue_capacity(2)
            .batches_in_flight(1),
    )
    .expect("batcher");
    let (blocker, blocker_x) = tagged(0, 8);
    let blocker = batcher.try_submit(blocker).expect("room");
    wait_until_dequeued(&batcher);

    let queued: Vec<_> = (1..=2)
        .map(|tag| {
            let (request, x) = tagged(tag, 1);
            (batcher.try_submit(request).expect("room for two"), x)
        })
        .collect();
    let (extra, _) = tagged(3, 2);
    match batcher.try_submit(extra.clone()) {
        Err(TrySubmitError::Full(back)) => assert_eq!(back, extra, "the same request back"),
        other => panic!("expected Full, got {other:?}"),
    }
    let started = Instant::now();
    match batcher.submit_timeout(extra.clone(), Duration::from_millis(20)) {
        Err(SubmitTimeoutError::Timeout(back)) => assert_eq!(back, extra),
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert!(started.elapsed() >= Duration::from_millis(20));
    let stats = batcher.stats();
    assert_eq!(
        (stats.rejected_full, stats.submit_timeouts),
        (1, 1),
        "{stats:#?}"
    );
    assert_eq!(stats.queue_depth, 2);

    // Once there is room again, the same request goes in.
    let extra = batcher
        .submit_timeout(extra, Duration::from_secs(60))
        .expect("room after the blocker");
    check_affine("blocker", blocker, &blocker_x);
    for (ticket, x) in queued {
        check_affine("queued", ticket, &x);
    }
    assert_eq!(
        extra.wait().expect("extra").outputs[0].shape,
        vec![2, FEATURES]
    );
}

#[test]
fn deadlines_expire_while_queued_and_never_run() {
    // One batcher thread, which the blocker holds while the others wait in the queue.
    let batcher = Batcher::new(
        affine_engine(8, 200_000, "nc:5"),
        BatcherConfig::default()
            .max_batch_rows(8)
            .max_delay(Duration::ZERO)
            .batches_in_flight(1),
    )
    .expect("batcher");
    let (blocker, blocker_x) = tagged(0, 8);
    let blocker = batcher.submit(blocker).expect("submit");
    wait_until_dequeued(&batcher);

    let (late, _) = tagged(1, 3);
    let late = batcher
        .submit(late.timeout(Duration::from_millis(1)))
        .expect("submit");
    let (past, _) = tagged(2, 2);
    let past = batcher
        .submit(past.deadline(Instant::now()))
        .expect("submit");
    let (abandoned, _) = tagged(3, 4);
    drop(batcher.submit(abandoned).expect("submit"));
    let (patient, patient_x) = tagged(4, 1);
    let patient = batcher
        .submit(patient.timeout(Duration::from_secs(600)))
        .expect("submit");

    check_affine("blocker", blocker, &blocker_x);
    for ticket in [late, past] {
        match ticket.wait() {
            Err(RequestError::DeadlineExceeded { waited }) => {
                assert!(waited > Duration::ZERO);
            }
            other => panic!("expected DeadlineExceeded, got {other:?}"),
        }
    }
    check_affine("patient", patient, &patient_x);

    let stats = batcher.shutdown();
    assert_eq!(stats.expired, 2, "{stats:#?}");
    assert_eq!(stats.abandoned, 1, "{stats:#?}");
    // Only the blocker's 8 rows and the patient request's 1 ran.
    assert_eq!(
        (stats.rows, stats.batches, stats.completed),
        (9, 2, 2),
        "{stats:#?}"
    );
}

#[test]
fn default_deadline_applies_to_requests_without_one() {
    // One batcher thread, which the blocker holds while `late` waits in the queue.
    let batcher = Batcher::new(
        affine_engine(8, 200_000, "nc:6"),
        BatcherConfig::default()
            .max_batch_rows(8)
            .max_delay(Duration::ZERO)
            .default_deadline(Some(Duration::from_millis(1)))
            .batches_in_flight(1),
    )
    .expect("batcher");
    // The blocker has its own, long deadline.
    let (blocker, _) = tagged(0, 8);
    let blocker = batcher
        .submit(blocker.timeout(Duration::from_secs(600)))
        .expect("submit");
    wait_until_dequeued(&batcher);
    let (late, _) = tagged(1, 1);
    let late = batcher.submit(late).expect("submit");
    blocker.wait().expect("blocker");
    assert!(matches!(
        late.wait(),
        Err(RequestError::DeadlineExceeded { .. })
    ));
}

#[test]
fn max_delay_is_a_lower_bound_and_full_batches_go_at_once() {
    let delay = Duration::from_millis(100);
    let batcher = Batcher::new(
        affine_engine(8, 50, "nc:7"),
        BatcherConfig::default().max_batch_rows(4).max_delay(delay),
    )
    .expect("batcher");
    // A lone request waits the whole delay for company.
    let (request, x) = tagged(0, 1);
    let started = Instant::now();
    let ticket = batcher.submit(request).expect("submit");
    let response = ticket.wait().expect("lone request");
    assert!(started.elapsed() >= delay, "{:?}", started.elapsed());
    assert!(response.queue_wait >= delay, "{:?}", response.queue_wait);
    assert_eq!((response.batch_rows, response.batch_requests), (1, 1));
    assert_eq!(
        bits(&response.outputs[0].to_vec::<f32>().unwrap()),
        bits(&ref_affine(&x, SCALE, BIAS))
    );

    // A full batch does not wait (were it to wait, this would take an hour).
    let batcher = Batcher::new(
        affine_engine(8, 50, "nc:8"),
        BatcherConfig::default()
            .max_batch_rows(4)
            .max_delay(Duration::from_secs(3600)),
    )
    .expect("batcher");
    let tickets: Vec<_> = (0..4)
        .map(|tag| {
            let (request, x) = tagged(tag, 1);
            (batcher.submit(request).expect("submit"), x)
        })
        .collect();
    for (ticket, x) in tickets {
        check_affine("full batch", ticket, &x);
    }
    assert_eq!(batcher.stats().batches, 1);
}

#[test]
fn shutdown_runs_everything_queued() {
    for by_drop in [false, true] {
        let batcher = Batcher::new(
            affine_engine(8, 5_000, "nc:9"),
            BatcherConfig::default()
                .max_batch_rows(8)
                .max_delay(Duration::from_secs(3600))
                .queue_capacity(64),
        )
        .expect("batcher");
        let tickets: Vec<_> = (0..20)
            .map(|tag| {
                let (request, x) = tagged(tag, 1 + tag % 3);
                (batcher.try_submit(request).expect("room"), x)
            })
            .collect();
        if by_drop {
            drop(batcher);
        } else {
            let stats = batcher.shutdown();
            assert_eq!((stats.completed, stats.queue_depth), (20, 0), "{stats:#?}");
            assert_eq!(stats.rows, (0..20).map(|t| 1 + t % 3).sum::<usize>() as u64);
        }
        // Drained without waiting out the hour-long delay, every result delivered.
        for (ticket, x) in tickets {
            assert!(ticket.is_ready(), "completed before shutdown returned");
            check_affine("drained", ticket, &x);
        }
    }
}

#[test]
fn invalid_requests_are_refused_at_submit() {
    let add = Arc::new(engine(
        &neff(add_model(4, 3)),
        Config::default().device_list("nc:13"),
    ));
    let batcher = Batcher::new(add, BatcherConfig::default().max_batch_rows(6)).expect("batcher");
    let ok = |rows: usize| OwnedTensor::f32([rows, 3], &vec![1.0; rows * 3]);
    let cases: Vec<(&str, Request, &str)> = vec![
        (
            "one input",
            Request::new(vec![ok(1)]),
            "the model has 2 inputs (\"a\", \"b\") but 1 were given",
        ),
        ("no rows", Request::new(vec![ok(0), ok(0)]), "no rows"),
        (
            "too many rows",
            Request::new(vec![ok(7), ok(7)]),
            "more than max_batch_rows (6)",
        ),
        ("rows differ", Request::new(vec![ok(2), ok(3)]), "same rows"),
        (
            "dtype",
            Request::new(vec![
                ok(1),
                OwnedTensor::from_slice(DType::Int32, [1, 3], &[1i32, 2, 3]),
            ]),
            "is int32 but the model expects float32",
        ),
        (
            "row shape",
            Request::new(vec![ok(2), OwnedTensor::f32([3, 2], &[0.0; 6])]),
            "expects [rows, 3]",
        ),
        (
            "data length",
            Request::new(vec![ok(2), OwnedTensor::f32([2, 3], &[0.0; 5])]),
            "needs 24 bytes but the data has 20",
        ),
        (
            "scalar",
            Request::new(vec![ok(1), OwnedTensor::f32(Vec::new(), &[0.0])]),
            "is a scalar",
        ),
        (
            "half named",
            Request::new(vec![ok(1).named("a"), ok(1)]),
            "or none",
        ),
        (
            "unknown name",
            Request::new(vec![ok(1).named("a"), ok(1).named("c")]),
            "the model has no input \"c\"",
        ),
        (
            "twice",
            Request::new(vec![ok(1).named("a"), ok(1).named("a")]),
            "given twice",
        ),
    ];
    let count = cases.len() as u64;
    for (what, request, reason) in cases {
        match batcher.try_submit(request.clone()) {
            Err(TrySubmitError::Invalid(invalid)) => {
                assert!(
                    invalid.reason.contains(reason),
                    "{what}: reason {:?} lacks {reason:?}",
                    invalid.reason
                );
                assert_eq!(invalid.request, request, "{what}: handed back unchanged");
            }
            other => panic!("{what}: expected Invalid, got {other:?}"),
        }
    }
    let stats = batcher.stats();
    assert_eq!((stats.invalid, stats.submitted), (count, 0), "{stats:#?}");

    // Bad configurations and engines.
    let add = Arc::clone(batcher.engine());
    for (config, reason) in [
        (BatcherConfig::default().max_batch_rows(0), "max_batch_rows"),
        (BatcherConfig::default().queue_capacity(0), "queue_capacity"),
        (
            BatcherConfig::default().batches_in_flight(0),
            "batches_in_flight",
        ),
    ] {
        let err = Batcher::new(Arc::clone(&add), config).expect_err(reason);
        assert!(err.to_string().contains(reason), "{err}");
    }
    let fixed = Arc::new(engine(
        &neff(add_model(4, 3)),
        Config::default()
            .device_list("nc:13")
            .dynamic_batching(false),
    ));
    let err = Batcher::new(fixed, BatcherConfig::default()).expect_err("no dynamic batching");
    assert!(err.to_string().contains("dynamic batching"), "{err}");
    let dim1 = Arc::new(engine(
        &neff(add_model(4, 3)),
        Config::default().device_list("nc:13").dim(1),
    ));
    let err = Batcher::new(dim1, BatcherConfig::default()).expect_err("dim 1");
    assert!(err.to_string().contains("dim 0"), "{err}");
}

#[test]
fn engine_errors_reach_every_request_of_the_batch() {
    let _faults = FAULTS.lock().unwrap_or_else(PoisonError::into_inner);
    // Every execution on physical core 23 fails (only this test uses it).
    nrt_mock::control::set_faults("23:*:1004").expect("set faults");
    let batcher = Batcher::new(
        Arc::new(engine(
            &neff(affine_model(8, FEATURES as u32, SCALE, BIAS)),
            Config::default().device_list("nc:23").quarantine_after(0),
        )),
        BatcherConfig::default()
            .max_batch_rows(8)
            .max_delay(Duration::from_secs(3600)),
    )
    .expect("batcher");
    // Four requests of 2 rows: one full batch.
    let tickets: Vec<_> = (0..4)
        .map(|tag| batcher.submit(tagged(tag, 2).0).expect("submit"))
        .collect();
    for ticket in tickets {
        match ticket.wait() {
            Err(RequestError::Engine {
                batch_rows,
                batch_requests,
                source,
            }) => {
                assert_eq!((batch_rows, batch_requests), (8, 4));
                assert!(source.status().is_some(), "{source}");
                assert!(source.chunk().is_some(), "{source}");
            }
            other => panic!("expected an engine error, got {other:?}"),
        }
    }
    nrt_mock::control::set_faults("").expect("clear faults");
    let stats = batcher.stats();
    assert_eq!(
        (stats.failed, stats.completed, stats.batches),
        (4, 0, 1),
        "{stats:#?}"
    );

    // The batcher keeps serving once the core recovers.
    let (request, x) = tagged(9, 8);
    check_affine(
        "after the fault",
        batcher.submit(request).expect("submit"),
        &x,
    );
}

#[test]
fn a_failed_chunk_fails_only_the_requests_with_rows_in_it() {
    let _faults = FAULTS.lock().unwrap_or_else(PoisonError::into_inner);
    // Every execution on physical core 22 fails (only these tests use cores 21-23); 21 works.
    nrt_mock::control::set_faults("22:*:1004").expect("set faults");
    let batcher = Batcher::new(
        Arc::new(engine(
            &neff(affine_model(4, FEATURES as u32, SCALE, BIAS)),
            Config::default()
                .device_list("nc:21,nc:22")
                .quarantine_after(0),
        )),
        BatcherConfig::default()
            .max_batch_rows(8)
            .max_delay(Duration::from_secs(3600)),
    )
    .expect("batcher");
    // 3 + 2 + 3 rows: one full batch, packed as rows 0..4 and 4..8 on the two cores in
    // turn; the middle request has rows in both.
    let requests: Vec<_> = [3, 2, 3]
        .iter()
        .enumerate()
        .map(|(tag, &rows)| tagged(tag, rows))
        .collect();
    let tickets: Vec<_> = requests
        .iter()
        .map(|(request, _)| batcher.submit(request.clone()).expect("submit"))
        .collect();
    let outcomes: Vec<_> = tickets.into_iter().map(Ticket::wait).collect();
    nrt_mock::control::set_faults("").expect("clear faults");
    // Which chunk met core 22 depends on where the rotation stood: either the first request
    // alone, or the last one alone, got its rows; the middle one always failed.
    let ok: Vec<bool> = outcomes.iter().map(Result::is_ok).collect();
    assert!(
        ok == [true, false, false] || ok == [false, false, true],
        "{outcomes:?}"
    );
    for ((outcome, (_, x)), tag) in outcomes.into_iter().zip(&requests).zip(0..) {
        match outcome {
            Ok(response) => {
                let got = response.outputs[0].to_vec::<f32>().expect("f32");
                assert_eq!(
                    bits(&got),
                    bits(&ref_affine(x, SCALE, BIAS)),
                    "request {tag}"
                );
            }
            Err(RequestError::Engine { source, .. }) => {
                assert!(source.status().is_some(), "{source}");
            }
            Err(other) => panic!("request {tag}: expected an engine error, got {other:?}"),
        }
    }
    let stats = batcher.stats();
    assert_eq!(
        (stats.failed, stats.completed, stats.batches),
        (2, 1, 1),
        "{stats:#?}"
    );
}

#[test]
fn batches_run_as_whole_compiled_batches_unless_told_not_to() {
    // 3 one-row requests on 4 cores compiled at batch 4: packed, one execution with 1 pad
    // row; with the engine's split, 3 chunks of 1 row, each padded by 3.
    for (pack, executions, pad_rows) in [(true, 1, 1), (false, 3, 9)] {
        let engine = affine_engine(4, 0, "nc:16,nc:17,nc:18,nc:19");
        let batcher = Batcher::new(
            Arc::clone(&engine),
            BatcherConfig::default()
                .max_batch_rows(3)
                .max_delay(Duration::from_secs(3600))
                .pack(pack),
        )
        .expect("batcher");
        let tickets: Vec<_> = (0..3)
            .map(|tag| {
                let (request, x) = tagged(tag, 1);
                (batcher.submit(request).expect("submit"), x)
            })
            .collect();
        for (tag, (ticket, x)) in tickets.into_iter().enumerate() {
            check_affine(&format!("pack {pack}, request {tag}"), ticket, &x);
        }
        let metrics = engine.metrics();
        let ran: u64 = metrics.cores.iter().map(|c| c.executions).sum();
        assert_eq!(
            (ran, metrics.pad_rows()),
            (executions, pad_rows),
            "pack {pack}"
        );
        assert_eq!(batcher.shutdown().batches, 1, "pack {pack}");
    }
}

#[test]
fn a_packed_batch_holds_back_the_requests_that_would_be_padded() {
    // Compiled batch 4, batches of up to 8 rows. Five one-row requests: the first one's
    // deadline closes the batch; packed, its fifth row would run alone, padded by 3, so it is
    // held back to start the next batch, which three later requests fill to a whole
    // compiled batch.
    let engine = affine_engine(4, 0, "nc:20");
    let batcher = Batcher::new(
        Arc::clone(&engine),
        BatcherConfig::default()
            .max_batch_rows(8)
            .max_delay(Duration::from_secs(3600)),
    )
    .expect("batcher");
    // One-row requests `tags`; request `closer`'s deadline (2 s) closes its batch.
    let submit = |tags: std::ops::Range<usize>, closer: usize| -> Vec<(Ticket, Vec<f32>)> {
        tags.map(|tag| {
            let (request, x) = tagged(tag, 1);
            let request = if tag == closer {
                request.timeout(Duration::from_secs(2))
            } else {
                request
            };
            (batcher.submit(request).expect("submit"), x)
        })
        .collect()
    };
    let mut first = submit(0..5, 0).into_iter();
    for (tag, (ticket, x)) in first.by_ref().take(4).enumerate() {
        check_affine(&format!("request {tag}"), ticket, &x);
    }
    assert_eq!(batcher.stats().batches, 1);
    let later = submit(5..8, 7);
    for (tag, (ticket, x)) in first.chain(later).enumerate() {
        check_affine(&format!("request {}", tag + 4), ticket, &x);
    }
    let stats = batcher.shutdown();
    assert_eq!((stats.batches, stats.rows), (2, 8), "{stats:#?}");
    assert_eq!(engine.metrics().pad_rows(), 0, "two whole compiled batches");
}

/// Wakes the thread that blocks on a future.
struct ThreadWaker(thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// A minimal executor: polls `future` on this thread, parking between wake-ups.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let waker = Waker::from(Arc::new(ThreadWaker(thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        thread::park();
    }
}

#[test]
fn tickets_poll_wait_with_timeout_and_await() {
    let batcher = Batcher::new(
        affine_engine(8, 300_000, "nc:14"),
        BatcherConfig::default()
            .max_batch_rows(8)
            .max_delay(Duration::ZERO),
    )
    .expect("batcher");
    let (request, x) = tagged(0, 8);
    let ticket = batcher.submit(request).expect("submit");
    // Pending for the whole 300 ms execution, at least the first few microseconds of it.
    let ticket = match ticket.try_result() {
        Err(ticket) => ticket,
        Ok(result) => panic!("ready before the execution could end: {result:?}"),
    };
    let ticket = match ticket.wait_timeout(Duration::from_millis(1)) {
        Err(ticket) => ticket,
        Ok(result) => panic!("ready within 1 ms of a 300 ms execution: {result:?}"),
    };
    let response = match ticket.wait_timeout(Duration::from_secs(60)) {
        Ok(result) => result.expect("affine"),
        Err(_) => panic!("not done after a minute"),
    };
    assert_eq!(
        bits(&response.outputs[0].to_vec::<f32>().unwrap()),
        bits(&ref_affine(&x, SCALE, BIAS))
    );

    // `.await` from a hand-rolled executor, several in flight.
    let tickets: Vec<_> = (1..4)
        .map(|tag| {
            let (request, x) = tagged(tag, 2);
            (batcher.submit(request).expect("submit"), x)
        })
        .collect();
    for (ticket, x) in tickets {
        let response = block_on(ticket).expect("awaited");
        assert_eq!(
            bits(&response.outputs[0].to_vec::<f32>().unwrap()),
            bits(&ref_affine(&x, SCALE, BIAS))
        );
    }
}

#[test]
fn rows_may_be_scalars() {
    let model = MockModel::new(
        "affine",
        Op::Affine {
            scale: 1.0,
            bias: 0.0,
        },
    )
    .input("x", MockDType::Float32, &[4])
    .output("y", MockDType::Float32, &[4]);
    let scalarish = Arc::new(engine(&neff(model), Config::default().device_list("nc:15")));
    // [4]: dim 0 is the batch; its rows are scalars. That is fine for the batcher.
    let batcher = Batcher::new(scalarish, BatcherConfig::default()).expect("batcher");
    let ticket = batcher
        .submit(Request::new(vec![OwnedTensor::f32([3], &[1.0, 2.0, 3.0])]))
        .expect("rows of scalars");
    assert_eq!(ticket.wait().expect("ran").outputs[0].shape, vec![3]);
}

#[test]
fn the_next_batch_forms_and_starts_while_one_runs() {
    // Two batches in flight (the default): while the blocker runs on the slow core, the
    // second batcher thread takes the next request off the queue and starts its batch; the
    // core runs the two one after the other and both come back exact.
    let batcher = Batcher::new(
        affine_engine(8, 500_000, "nc:8"),
        BatcherConfig::default()
            .max_batch_rows(8)
            .max_delay(Duration::ZERO),
    )
    .expect("batcher");
    let (blocker, blocker_x) = tagged(0, 8);
    let blocker = batcher.submit(blocker).expect("submit");
    wait_until_dequeued(&batcher);
    let (next, next_x) = tagged(1, 3);
    let next = batcher.submit(next).expect("submit");
    wait_until_dequeued(&batcher);
    assert!(
        !blocker.is_ready(),
        "the next request left the queue while the blocker's 0.5 s execution still ran"
    );
    check_affine("blocker", blocker, &blocker_x);
    check_affine("next", next, &next_x);
    let stats = batcher.shutdown();
    assert_eq!((stats.batches, stats.rows), (2, 11), "{stats:#?}");
}
