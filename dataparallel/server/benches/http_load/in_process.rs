//! The same open-loop load on the request batcher in this process, no HTTP: what the server
//! adds is the difference between the two.
//!
//! As the engine suite's serving scenario: one submitter (the calling thread) sleeps until
//! each request's due time and `try_submit`s it to a [`Batcher`] whatever the completions
//! do; a full queue turns the request away (unserved). A collector thread waits the tickets
//! in order, checks each response's values and takes its latency from the due time.

use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use dataparallel::DataParallel;
use dataparallel::batcher::{Batcher, BatcherConfig, OwnedTensor, Request, Ticket, TrySubmitError};

use crate::body::{Bodies, FEATURES, VARIANTS, row};
use crate::metrics::Batching;
use crate::schedule::{Outcome, Plan};

/// From creating the batcher to the first due time.
const LEAD: Duration = Duration::from_millis(5);

/// Runs `plan` on a new batcher with `config` over `engine`; returns the outcome and the
/// batching it did.
///
/// # Errors
///
/// A message when the batcher cannot start or the collector thread fails.
pub(crate) fn run(
    engine: &Arc<DataParallel>,
    config: BatcherConfig,
    bodies: &Arc<Bodies>,
    plan: Plan,
) -> Result<(Outcome, Batching), String> {
    let pad_before = engine.metrics().pad_rows();
    let batcher = Batcher::new(Arc::clone(engine), config)
        .map_err(|e| format!("cannot start the batcher: {e}"))?;
    let rows: Vec<Vec<f32>> = (0..VARIANTS).map(row).collect();
    let (tx, rx) = mpsc::channel::<(usize, Instant, Ticket)>();
    let start = Instant::now() + LEAD;
    let checker = Arc::clone(bodies);
    let collector = std::thread::Builder::new()
        .name("in-process-collect".to_owned())
        .spawn(move || {
            let mut outcome = Outcome::new(plan.total());
            let mut last = start;
            for (i, due, ticket) in rx {
                match ticket.wait() {
                    Ok(response) => {
                        let now = Instant::now();
                        let checked = match response.outputs.first() {
                            Some(y) => checker.check_native(i, &y.data),
                            None => Err("the response has no output".to_owned()),
                        };
                        match checked {
                            Ok(()) => {
                                last = now;
                                outcome.latencies_ms.push((now - due).as_secs_f64() * 1e3);
                            }
                            Err(message) => outcome.error(|| message),
                        }
                    }
                    Err(e) => outcome.error(|| e.to_string()),
                }
            }
            outcome.elapsed = last.saturating_duration_since(start);
            outcome
        })
        .map_err(|e| format!("cannot start the collector thread: {e}"))?;
    let mut rejected = 0usize;
    let mut lags_ms = Vec::with_capacity(plan.total());
    let mut refused: Option<String> = None;
    let mut refused_count = 0usize;
    for i in 0..plan.total() {
        let due = start + plan.due(i);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        lags_ms.push(due.elapsed().as_secs_f64() * 1e3);
        let request = Request::new(vec![OwnedTensor::f32([1, FEATURES], &rows[i % VARIANTS])]);
        match batcher.try_submit(request) {
            Ok(ticket) => {
                if tx.send((i, due, ticket)).is_err() {
                    return Err("the collector thread stopped early".to_owned());
                }
            }
            Err(TrySubmitError::Full(_)) => rejected += 1,
            Err(other) => {
                refused_count += 1;
                refused.get_or_insert_with(|| other.to_string());
            }
        }
    }
    drop(tx);
    let mut outcome = collector
        .join()
        .map_err(|_| "the collector thread panicked".to_owned())?;
    outcome.send_lags_ms = lags_ms;
    outcome.unserved += rejected;
    outcome.turned_away += rejected;
    if let Some(message) = refused {
        outcome.error(|| message);
        outcome.errors += refused_count - 1;
    }
    let stats = batcher.shutdown();
    let batching = Batching {
        batches: stats.batches,
        rows: stats.rows,
        pad_rows: engine.metrics().pad_rows().saturating_sub(pad_before),
    };
    Ok((outcome, batching))
}
