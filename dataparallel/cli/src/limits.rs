//! Bounds on every size and count a user gives `neuron-dp bench`, and the plan they turn
//! into: how many rows per forward, when to stop, the batcher's settings and the host bytes
//! all of that holds — checked here, before anything is allocated or started.
//!
//! Two steps. [`BenchOptions::check`] needs nothing but the options (ranges of counts and
//! durations; run before the runtime starts). [`bench_plan`] and [`serve_plan`] then add
//! what the model implies (bytes per row of every input and output, the compiled batch, the
//! cores) and refuse any plan whose buffers exceed the memory budget
//! ([`memory_budget`]: the machine's physical memory). Every error is one line naming the
//! option, the limit and what to do.
//!
//! Limits: [`MAX_ITERATIONS`] forwards or requests (a latency is kept for each),
//! [`MAX_DELAY_US`], [`MAX_BATCHES_IN_FLIGHT`], [`MAX_RATE`] and [`MAX_SECONDS`]; rows
//! (`--batch`, `--max-batch-rows`, `--request-rows`) by the memory their buffers need and,
//! for `--request-rows`, by the batch limit. Worker counts are bounded by the engine
//! ([`dataparallel::MAX_WORKERS_PER_CORE`]).

use std::time::Duration;

use dataparallel::batcher::{DEFAULT_BATCHES_IN_FLIGHT, DEFAULT_QUEUE_CAPACITY};

/// The most forwards (`bench`) or requests (`bench --serve`) one run makes: a latency is
/// kept per forward (16 bytes each, 160 MB at the limit). A `--seconds` run stops here too.
pub const MAX_ITERATIONS: u64 = 10_000_000;
/// The longest `--max-delay-us` (10 s): how long a batch may wait to fill.
pub const MAX_DELAY_US: u64 = 10_000_000;
/// `--max-delay-us` when not given (1 ms).
pub const DEFAULT_MAX_DELAY_US: u64 = 1000;
/// The most `--batches-in-flight` (one batcher thread and one set of staging buffers each).
pub const MAX_BATCHES_IN_FLIGHT: u64 = 64;
/// The highest `--rate`, requests per second.
pub const MAX_RATE: f64 = 10_000_000.0;
/// The longest `--seconds` (one day).
pub const MAX_SECONDS: f64 = 86_400.0;
/// The run length when neither `--seconds` nor `--iterations` is given.
pub const DEFAULT_SECONDS: u64 = 5;

/// One model input or output as the plan sees it: its compiled shape and element size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSize {
    /// The compiled shape.
    pub shape: Vec<usize>,
    /// Bytes per element.
    pub elem_size: usize,
}

/// What the plan needs to know about the model and the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSize {
    /// The model's inputs.
    pub inputs: Vec<TensorSize>,
    /// The model's outputs.
    pub outputs: Vec<TensorSize>,
    /// The dimension the engine splits along.
    pub dim: usize,
    /// Cores the engine runs on.
    pub cores: usize,
}

/// `bench --serve`'s options, as given (`None`: not given).
#[derive(Debug, Clone, PartialEq)]
pub struct ServeOptions {
    /// `--rate`: requests per second.
    pub rate: f64,
    /// `--request-rows`.
    pub request_rows: Option<u64>,
    /// `--max-delay-us`.
    pub max_delay_us: Option<u64>,
    /// `--max-batch-rows`.
    pub max_batch_rows: Option<u64>,
    /// `--batches-in-flight`.
    pub batches_in_flight: Option<u64>,
}

/// `bench`'s sizes and counts, as given (`None`: not given).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BenchOptions {
    /// `--batch`: rows per forward.
    pub batch: Option<u64>,
    /// `--iterations`.
    pub iterations: Option<u64>,
    /// `--seconds`.
    pub seconds: Option<Duration>,
    /// `--serve` and its options.
    pub serve: Option<ServeOptions>,
}

/// When a closed-loop bench stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// After exactly this many forwards.
    Iterations(usize),
    /// After this long, or [`MAX_ITERATIONS`] forwards, whichever comes first.
    Time(Duration),
}

/// A checked closed-loop `bench` plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BenchPlan {
    /// Rows per forward.
    pub batch: usize,
    /// When to stop.
    pub stop: Stop,
    /// Host bytes of the input and output buffers (at most the memory budget).
    pub host_bytes: u64,
}

/// A checked `bench --serve` plan.
#[derive(Debug, Clone, PartialEq)]
pub struct ServePlan {
    /// Requests requests to schedule.
    pub requests: usize,
    /// Requests per second.
    pub rate: f64,
    /// Rows per request.
    pub request_rows: usize,
    /// The longest a batch waits to fill.
    pub max_delay: Duration,
    /// Most rows per batch.
    pub max_batch_rows: usize,
    /// Batches that may run at once.
    pub batches_in_flight: usize,
    /// Requests the batcher's queue holds.
    pub queue_capacity: usize,
    /// Host bytes the batcher may hold at once: staging buffers of every batch in flight
    /// plus a full queue of requests and their responses (at most the memory budget).
    pub host_bytes: u64,
}

/// `bytes` for people: `64.0 TiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// The most host memory `neuron-dp` plans to use for buffers: the machine's physical memory
/// (`sysconf`), or 16 GiB when the system does not say.
pub fn memory_budget() -> u64 {
    // SAFETY: sysconf has no preconditions; it reads a system parameter and returns -1 when
    // the name is unknown.
    let pages = unsafe { libc::sysconf(libc::_SC_PHYS_PAGES) };
    // SAFETY: as above.
    let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    match (u64::try_from(pages), u64::try_from(page_size)) {
        (Ok(pages), Ok(size)) if pages > 0 && size > 0 => pages.saturating_mul(size),
        _ => 16 << 30,
    }
}

/// Bytes of a C-order array of `shape` with `elem_size`-byte elements, or `None` when that
/// does not fit in a `u64`.
pub fn array_bytes(shape: &[usize], elem_size: usize) -> Option<u64> {
    shape
        .iter()
        .try_fold(elem_size as u64, |acc, &d| acc.checked_mul(d as u64))
}

/// Bytes of `tensor` with `rows` rows on `dim` (a tensor without that dim keeps its size).
fn tensor_bytes(tensor: &TensorSize, dim: usize, rows: u64) -> Option<u64> {
    if dim < tensor.shape.len() {
        tensor
            .shape
            .iter()
            .enumerate()
            .filter(|&(d, _)| d != dim)
            .try_fold(tensor.elem_size as u64, |acc, (_, &n)| {
                acc.checked_mul(n as u64)
            })?
            .checked_mul(rows)
    } else {
        array_bytes(&tensor.shape, tensor.elem_size)
    }
}

/// Bytes of every input and output with `rows` rows on `dim`, or `None` on overflow.
fn model_bytes(model: &ModelSize, dim: usize, rows: u64) -> Option<u64> {
    model
        .inputs
        .iter()
        .chain(&model.outputs)
        .try_fold(0u64, |acc, t| acc.checked_add(tensor_bytes(t, dim, rows)?))
}

/// "needs X" or "needs more than 2^64 bytes", for messages.
fn needs(bytes: Option<u64>) -> String {
    match bytes {
        Some(b) => format!("needs {}", human_bytes(b)),
        None => "needs more than 2^64 bytes".to_owned(),
    }
}

/// Checks that `count` given as `option` is in `1..=max`.
fn check_count(option: &str, count: u64, max: u64, what: &str) -> Result<(), String> {
    if count == 0 {
        return Err(format!("{option} must be at least 1"));
    }
    if count > max {
        return Err(format!(
            "{option} {count} is above the limit of {max} {what}; give at most {max}"
        ));
    }
    Ok(())
}

/// Checks that a rate is a finite number of requests per second in (0, [`MAX_RATE`]].
pub fn check_rate(rate: f64) -> Result<(), String> {
    if !(rate.is_finite() && rate > 0.0 && rate <= MAX_RATE) {
        return Err(format!(
            "--rate {rate} is out of range: give requests per second above 0 and at most {MAX_RATE:e}"
        ));
    }
    Ok(())
}

/// Checks that a duration is above 0 and at most [`MAX_SECONDS`].
pub fn check_seconds(seconds: f64) -> Result<(), String> {
    if !(seconds.is_finite() && seconds > 0.0 && seconds <= MAX_SECONDS) {
        return Err(format!(
            "--seconds {seconds} is out of range: give seconds above 0 and at most {MAX_SECONDS}"
        ));
    }
    Ok(())
}

impl BenchOptions {
    /// Checks every count and duration that needs no model: iterations, seconds, rate,
    /// delay, batches in flight, and that no row count is 0.
    ///
    /// # Errors
    ///
    /// A one-line message naming the option and its limit.
    pub fn check(&self) -> Result<(), String> {
        if let Some(batch) = self.batch {
            check_count("--batch", batch, u64::MAX, "rows")?;
        }
        if let Some(iterations) = self.iterations {
            check_count(
                "--iterations",
                iterations,
                MAX_ITERATIONS,
                "(a latency is kept for each)",
            )?;
        }
        if let Some(seconds) = self.seconds {
            check_seconds(seconds.as_secs_f64())?;
        }
        if self.iterations.is_some() && self.seconds.is_some() {
            return Err("give --seconds or --iterations, not both".to_owned());
        }
        let Some(serve) = &self.serve else {
            return Ok(());
        };
        if self.batch.is_some() {
            return Err(
                "--batch is for the closed loop; with --serve give --request-rows".to_owned(),
            );
        }
        check_rate(serve.rate)?;
        if let Some(rows) = serve.request_rows {
            check_count("--request-rows", rows, u64::MAX, "rows")?;
        }
        if let Some(rows) = serve.max_batch_rows {
            check_count("--max-batch-rows", rows, u64::MAX, "rows")?;
        }
        if let Some(delay) = serve.max_delay_us {
            if delay > MAX_DELAY_US {
                return Err(format!(
                    "--max-delay-us {delay} is above the limit of {MAX_DELAY_US} (10 s); give \
                     at most {MAX_DELAY_US}"
                ));
            }
        }
        if let Some(batches) = serve.batches_in_flight {
            check_count(
                "--batches-in-flight",
                batches,
                MAX_BATCHES_IN_FLIGHT,
                "(one batcher thread each)",
            )?;
        }
        if self.iterations.is_none() {
            let seconds = self
                .seconds
                .map_or(DEFAULT_SECONDS as f64, |s| s.as_secs_f64());
            let requests = (serve.rate * seconds).round();
            if requests > MAX_ITERATIONS as f64 {
                return Err(format!(
                    "--rate {} for {seconds} s is {requests} requests, above the limit of \
                     {MAX_ITERATIONS} (a latency is kept for each); lower --rate or --seconds",
                    serve.rate
                ));
            }
        }
        Ok(())
    }
}

/// `usize` from a `u64` already checked to fit the memory budget (which fits `usize`).
fn to_usize(value: u64, option: &str) -> Result<usize, String> {
    usize::try_from(value).map_err(|_| format!("{option} {value} is too large for this machine"))
}

/// The closed-loop plan: rows per forward (default cores × the compiled batch on the split
/// dim), the stop condition, and the host bytes of the input and output buffers, at most
/// `memory`.
///
/// # Errors
///
/// What [`BenchOptions::check`] refuses, and a batch whose buffers exceed `memory`.
pub fn bench_plan(
    options: &BenchOptions,
    model: &ModelSize,
    memory: u64,
) -> Result<BenchPlan, String> {
    options.check()?;
    let compiled = model
        .inputs
        .iter()
        .find_map(|i| i.shape.get(model.dim).copied())
        .unwrap_or(1);
    let (batch, option) = match options.batch {
        Some(batch) => (batch, "--batch"),
        None => (
            (model.cores as u64).saturating_mul(compiled as u64),
            "the default batch (cores × compiled batch)",
        ),
    };
    let bytes = model_bytes(model, model.dim, batch);
    if bytes.is_none_or(|b| b > memory) {
        return Err(format!(
            "{option} {batch} {} of host buffers (inputs and outputs), more than this \
             machine's {} of memory; use a smaller --batch",
            needs(bytes),
            human_bytes(memory)
        ));
    }
    let stop = match (options.iterations, options.seconds) {
        (Some(n), _) => Stop::Iterations(to_usize(n, "--iterations")?),
        (None, Some(t)) => Stop::Time(t),
        (None, None) => Stop::Time(Duration::from_secs(DEFAULT_SECONDS)),
    };
    Ok(BenchPlan {
        batch: to_usize(batch, option)?,
        stop,
        host_bytes: bytes.unwrap_or_default(),
    })
}

/// The serving plan: requests to schedule, the batcher's settings (defaults filled in as
/// the batcher would: most rows per batch = cores × the compiled batch on dim 0), and the
/// host bytes the batcher may hold, at most `memory`.
///
/// # Errors
///
/// What [`BenchOptions::check`] refuses; options without `--serve`; `--request-rows` above
/// the most rows per batch; batcher buffers exceeding `memory`.
pub fn serve_plan(
    options: &BenchOptions,
    model: &ModelSize,
    memory: u64,
) -> Result<ServePlan, String> {
    options.check()?;
    let Some(serve) = &options.serve else {
        return Err("a serving plan needs --serve".to_owned());
    };
    let compiled = model
        .inputs
        .first()
        .and_then(|i| i.shape.first().copied())
        .unwrap_or(1)
        .max(1) as u64;
    let max_batch_rows = serve
        .max_batch_rows
        .unwrap_or_else(|| compiled.saturating_mul(model.cores.max(1) as u64));
    let request_rows = serve.request_rows.unwrap_or(1);
    if request_rows > max_batch_rows {
        return Err(format!(
            "--request-rows {request_rows} is above the batch limit of {max_batch_rows} rows \
             (--max-batch-rows, default cores × compiled batch); give at most {max_batch_rows}"
        ));
    }
    let batches_in_flight = serve
        .batches_in_flight
        .unwrap_or(DEFAULT_BATCHES_IN_FLIGHT as u64);
    let queue_capacity = DEFAULT_QUEUE_CAPACITY as u64;
    // Staging: every batch in flight holds up to max_batch_rows rows of each input and
    // output. Queue: every queued request holds its inputs, and its response its outputs.
    let staging =
        model_bytes(model, 0, max_batch_rows).and_then(|b| b.checked_mul(batches_in_flight));
    let queued = model_bytes(model, 0, request_rows).and_then(|b| b.checked_mul(queue_capacity));
    let bytes = staging.zip(queued).and_then(|(s, q)| s.checked_add(q));
    if bytes.is_none_or(|b| b > memory) {
        return Err(format!(
            "the batcher {} of host buffers ({batches_in_flight} batches in flight of \
             {max_batch_rows} rows, {queue_capacity} queued requests of {request_rows} rows), \
             more than this machine's {} of memory; lower --max-batch-rows, --request-rows \
             or --batches-in-flight",
            needs(bytes),
            human_bytes(memory)
        ));
    }
    let requests = match options.iterations {
        Some(n) => n,
        None => {
            let seconds = options
                .seconds
                .map_or(DEFAULT_SECONDS as f64, |s| s.as_secs_f64());
            // At most MAX_ITERATIONS: checked above.
            ((serve.rate * seconds).round() as u64).max(1)
        }
    };
    Ok(ServePlan {
        requests: to_usize(requests, "--iterations")?,
        rate: serve.rate,
        request_rows: to_usize(request_rows, "--request-rows")?,
        max_delay: Duration::from_micros(serve.max_delay_us.unwrap_or(DEFAULT_MAX_DELAY_US)),
        max_batch_rows: to_usize(max_batch_rows, "--max-batch-rows")?,
        batches_in_flight: to_usize(batches_in_flight, "--batches-in-flight")?,
        queue_capacity: to_usize(queue_capacity, "the queue capacity")?,
        host_bytes: bytes.unwrap_or_default(),
    })
}

/// Checks that buffers for arrays of `shapes` with `elem_sizes`-byte elements fit in
/// `memory`; returns their total bytes. `what` names them for the message ("the outputs").
///
/// # Errors
///
/// A one-line message when the total overflows or exceeds `memory`.
pub fn check_buffers<'a>(
    what: &str,
    arrays: impl IntoIterator<Item = (&'a [usize], usize)>,
    memory: u64,
) -> Result<u64, String> {
    let bytes = arrays.into_iter().try_fold(0u64, |acc, (shape, elem)| {
        acc.checked_add(array_bytes(shape, elem)?)
    });
    match bytes {
        Some(b) if b <= memory => Ok(b),
        _ => Err(format!(
            "{what} {} of host memory, more than this machine's {}; use a smaller batch",
            needs(bytes),
            human_bytes(memory)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    fn affine(cores: usize) -> ModelSize {
        let t = TensorSize {
            shape: vec![2, 8],
            elem_size: 4,
        };
        ModelSize {
            inputs: vec![t.clone()],
            outputs: vec![t],
            dim: 0,
            cores,
        }
    }

    fn serve(rate: f64) -> ServeOptions {
        ServeOptions {
            rate,
            request_rows: None,
            max_delay_us: None,
            max_batch_rows: None,
            batches_in_flight: None,
        }
    }

    #[test]
    fn the_default_bench_plan_is_cores_times_the_compiled_batch() {
        let plan = bench_plan(&BenchOptions::default(), &affine(4), GIB).unwrap();
        assert_eq!(plan.batch, 8);
        assert_eq!(plan.stop, Stop::Time(Duration::from_secs(5)));
        assert_eq!(plan.host_bytes, 8 * 32 * 2);
    }

    #[test]
    fn huge_batches_are_refused_naming_the_memory() {
        for batch in [1 << 30, 1 << 40, u64::MAX] {
            let options = BenchOptions {
                batch: Some(batch),
                ..BenchOptions::default()
            };
            let e = bench_plan(&options, &affine(4), GIB).unwrap_err();
            assert!(
                e.contains("--batch") && e.contains("1.0 GiB of memory"),
                "{e}"
            );
        }
        let options = BenchOptions {
            batch: Some(GIB / 64),
            ..BenchOptions::default()
        };
        assert_eq!(
            bench_plan(&options, &affine(4), GIB).unwrap().host_bytes,
            GIB
        );
    }

    #[test]
    fn counts_and_durations_have_limits() {
        for (options, needle) in [
            (
                BenchOptions {
                    iterations: Some(10u64.pow(12)),
                    ..BenchOptions::default()
                },
                "limit of 10000000",
            ),
            (
                BenchOptions {
                    iterations: Some(0),
                    ..BenchOptions::default()
                },
                "at least 1",
            ),
            (
                BenchOptions {
                    serve: Some(ServeOptions {
                        max_delay_us: Some(u64::MAX),
                        ..serve(10.0)
                    }),
                    ..BenchOptions::default()
                },
                "--max-delay-us",
            ),
            (
                BenchOptions {
                    serve: Some(ServeOptions {
                        batches_in_flight: Some(u64::MAX),
                        ..serve(10.0)
                    }),
                    ..BenchOptions::default()
                },
                "limit of 64",
            ),
            (
                BenchOptions {
                    seconds: Some(Duration::from_secs(86_400)),
                    serve: Some(serve(1e7)),
                    ..BenchOptions::default()
                },
                "lower --rate or --seconds",
            ),
            (
                BenchOptions {
                    serve: Some(serve(f64::NAN)),
                    ..BenchOptions::default()
                },
                "--rate",
            ),
        ] {
            let e = options.check().unwrap_err();
            assert!(e.contains(needle), "{e}");
        }
    }

    #[test]
    fn request_rows_are_bounded_by_the_batch_limit_and_memory() {
        let options = |request_rows, max_batch_rows| BenchOptions {
            iterations: Some(10),
            serve: Some(ServeOptions {
                request_rows,
                max_batch_rows,
                ..serve(100.0)
            }),
            ..BenchOptions::default()
        };
        let e = serve_plan(&options(Some(1 << 40), None), &affine(4), GIB).unwrap_err();
        assert!(e.contains("batch limit of 8 rows"), "{e}");
        let e = serve_plan(&options(Some(1 << 40), Some(1 << 40)), &affine(4), GIB).unwrap_err();
        assert!(e.contains("1.0 GiB of memory"), "{e}");
        let plan = serve_plan(&options(Some(2), None), &affine(4), GIB).unwrap();
        assert_eq!(
            (plan.requests, plan.request_rows, plan.max_batch_rows),
            (10, 2, 8)
        );
        assert_eq!(plan.max_delay, Duration::from_millis(1));
        // 2 batches of 8 rows + 1024 requests of 2 rows, 64 bytes a row (in + out).
        assert_eq!(plan.host_bytes, (2 * 8 + 1024 * 2) * 64);
    }

    #[test]
    fn bytes_are_shown_for_people() {
        assert_eq!(human_bytes(10), "10 bytes");
        assert_eq!(human_bytes(3 << 29), "1.5 GiB");
        assert_eq!(human_bytes(1 << 46), "64.0 TiB");
        assert!(memory_budget() > 0);
    }
}
