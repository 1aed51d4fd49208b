//! The CLI's argument-to-plan path (`neuron_dp_cli::limits`): fuzzed `bench` / `bench
//! --serve` options (counts anywhere in `u64`, any `f64` rate, any duration) against fuzzed
//! model sizes. It must never panic or overflow, and an accepted plan must respect every
//! documented limit: host bytes within the memory budget, at least one row, at most
//! `MAX_ITERATIONS` forwards or requests, request rows within the batch limit, the delay
//! and batches in flight within theirs. Refusals are one line.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use neuron_dp_cli::limits::{
    self, BenchOptions, MAX_BATCHES_IN_FLIGHT, MAX_DELAY_US, MAX_ITERATIONS, ModelSize,
    ServeOptions, Stop, TensorSize,
};

/// Reads fuzz bytes; past the end it yields zeros.
struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn byte(&mut self) -> u8 {
        match self.0 {
            [b, rest @ ..] => {
                self.0 = rest;
                *b
            }
            [] => 0,
        }
    }

    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(std::array::from_fn(|_| self.byte()))
    }

    /// A count: small, near a power of two, or anything.
    fn count(&mut self) -> Option<u64> {
        match self.byte() % 6 {
            0 => None,
            1 => Some(u64::from(self.byte())),
            2 => Some(1u64 << (self.byte() % 64)),
            3 => Some(u64::MAX - u64::from(self.byte())),
            _ => Some(self.u64()),
        }
    }

    fn dim(&mut self) -> usize {
        match self.byte() {
            d @ 0..=223 => usize::from(d % 17),
            d @ 224..=247 => 1usize << (d - 224 + 16),
            d => usize::MAX - usize::from(d - 248),
        }
    }

    fn tensors(&mut self) -> Vec<TensorSize> {
        (0..self.byte() % 4)
            .map(|_| TensorSize {
                shape: (0..self.byte() % 5).map(|_| self.dim()).collect(),
                elem_size: [1, 2, 4, 8][usize::from(self.byte() % 4)],
            })
            .collect()
    }
}

fuzz_target!(|data: &[u8]| {
    let mut c = Cursor(data);
    let model = ModelSize {
        inputs: c.tensors(),
        outputs: c.tensors(),
        dim: usize::from(c.byte() % 4),
        cores: usize::from(c.byte()),
    };
    let memory = match c.byte() % 3 {
        0 => 1 << 30,
        1 => u64::MAX,
        _ => c.u64(),
    };
    let serve = (c.byte() % 2 == 0).then(|| ServeOptions {
        rate: f64::from_bits(c.u64()),
        request_rows: c.count(),
        max_delay_us: c.count(),
        max_batch_rows: c.count(),
        batches_in_flight: c.count(),
    });
    let options = BenchOptions {
        batch: c.count(),
        iterations: c.count(),
        seconds: (c.byte() % 2 == 0).then(|| Duration::from_nanos(c.u64())),
        serve,
    };
    let one_line = |message: &str| {
        assert!(!message.contains(['\n', '\r']), "multi-line: {message}");
        assert!(message.len() < 1024, "{message}");
    };
    match options.check() {
        Ok(()) => {
            assert!(
                options
                    .iterations
                    .is_none_or(|n| (1..=MAX_ITERATIONS).contains(&n))
            );
            assert!(options.batch != Some(0));
        }
        Err(message) => one_line(&message),
    }
    match limits::bench_plan(&options, &model, memory) {
        Ok(plan) => {
            assert!(options.check().is_ok());
            assert!(plan.host_bytes <= memory);
            if let Some(batch) = options.batch {
                assert_eq!(plan.batch as u64, batch);
            }
            if let Stop::Iterations(n) = plan.stop {
                assert!((1..=MAX_ITERATIONS).contains(&(n as u64)));
            }
        }
        Err(message) => one_line(&message),
    }
    match limits::serve_plan(&options, &model, memory) {
        Ok(plan) => {
            assert!(options.serve.is_some() && options.check().is_ok());
            assert!(plan.host_bytes <= memory);
            assert!((1..=MAX_ITERATIONS).contains(&(plan.requests as u64)));
            assert!(plan.request_rows >= 1 && plan.request_rows <= plan.max_batch_rows);
            assert!(plan.max_delay <= Duration::from_micros(MAX_DELAY_US));
            assert!((1..=MAX_BATCHES_IN_FLIGHT).contains(&(plan.batches_in_flight as u64)));
            assert!(plan.rate.is_finite() && plan.rate > 0.0);
        }
        Err(message) => one_line(&message),
    }
});
