//! The request batcher's validation (`dataparallel::batcher::Batcher::try_submit`) with
//! fuzzed requests (any number of inputs, names known/unknown/missing, any dtype, rank and
//! dims including overflowing ones, data lengths exact or off) on a real engine over the
//! mock. It must never panic; a request it accepts must complete with exactly what plain
//! Rust computes for its rows; one it refuses gets the request back with a one-line reason.
//! Needs the mock: `NRT_DYLIB_PATH` (set by `cargo xtask fuzz`; defaults to
//! `../target/debug/libnrt_mock.so`).
#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use dataparallel::batcher::{Batcher, BatcherConfig, OwnedTensor, Request, TrySubmitError};
use dataparallel::{Config, DataParallel};
use libfuzzer_sys::fuzz_target;
use neuron_rt::{DType, Neff, Runtime};
use nrt_mock::neff::{DType as MockDType, MockModel, Op};

const SCALE: f32 = 2.0;
const BIAS: f32 = 0.5;
/// Features per row (`x`, `y`: float32 `[2, 3]`).
const F: usize = 3;
/// Most rows per batch.
const MAX_ROWS: usize = 8;
/// Largest buffer a tensor gets.
const MAX_BYTES: usize = 1 << 12;

fn batcher() -> &'static Batcher {
    static BATCHER: OnceLock<Batcher> = OnceLock::new();
    BATCHER.get_or_init(|| {
        if std::env::var_os("NRT_DYLIB_PATH").is_none() {
            let path = concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../target/debug/libnrt_mock.so"
            );
            // SAFETY: runs once, from libFuzzer's single fuzzing thread, before the runtime
            // (or anything else that reads the environment) starts threads.
            unsafe { std::env::set_var("NRT_DYLIB_PATH", path) };
        }
        let runtime = Runtime::init().expect("the mock runtime (set NRT_DYLIB_PATH)");
        let neff = MockModel::new(
            "m",
            Op::Affine {
                scale: SCALE,
                bias: BIAS,
            },
        )
        .input("x", MockDType::Float32, &[2, F as u32])
        .output("y", MockDType::Float32, &[2, F as u32])
        .to_neff_bytes();
        let neff = Neff::from_bytes(neff).expect("a valid mock NEFF");
        let engine =
            DataParallel::new(&runtime, &neff, Config::default()).expect("an engine over the mock");
        Batcher::new(
            Arc::new(engine),
            BatcherConfig::default()
                .max_batch_rows(MAX_ROWS)
                .max_delay(Duration::from_micros(50)),
        )
        .expect("a batcher")
    })
}

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
}

const DTYPES: [DType; 6] = [
    DType::Float32,
    DType::Float16,
    DType::Int32,
    DType::UInt8,
    DType::Int64,
    DType::BFloat16,
];

fn tensor(c: &mut Cursor<'_>) -> OwnedTensor {
    let dtype = DTYPES[usize::from(c.byte()) % DTYPES.len()];
    let shape: Vec<usize> = match c.byte() % 4 {
        // Usually the right rank with a plausible row count.
        0 | 1 => vec![usize::from(c.byte() % 12), F],
        2 => (0..c.byte() % 5)
            .map(|_| match c.byte() {
                d @ 0..=239 => usize::from(d % 12),
                d => usize::MAX - usize::from(d - 240),
            })
            .collect(),
        _ => vec![usize::from(c.byte() % 12), usize::from(c.byte() % 6)],
    };
    let exact = shape
        .iter()
        .try_fold(dtype.size_bytes(), |acc, &d| acc.checked_mul(d));
    let len = match c.byte() % 6 {
        0..=3 => exact.filter(|&n| n <= MAX_BYTES).unwrap_or(0),
        4 => exact.map_or(1, |n| n.saturating_add(1)).min(MAX_BYTES),
        _ => exact.unwrap_or(1).saturating_sub(1).min(MAX_BYTES),
    };
    let data: Vec<u8> = (0..len).map(|i| (i as u8) & 0x3f).collect();
    let tensor = OwnedTensor::new(dtype, shape, data);
    match c.byte() % 5 {
        0 | 1 => tensor,
        2 | 3 => tensor.named("x"),
        _ => tensor.named("bogus"),
    }
}

fuzz_target!(|data: &[u8]| {
    let batcher = batcher();
    let mut c = Cursor(data);
    let inputs: Vec<OwnedTensor> = (0..c.byte() % 3).map(|_| tensor(&mut c)).collect();
    let request = Request::new(inputs.clone());
    match batcher.try_submit(request) {
        Ok(ticket) => {
            // Accepted: exactly one float32 [rows, F] input with 1..=MAX_ROWS rows.
            assert_eq!(inputs.len(), 1);
            let x = &inputs[0];
            assert_eq!(x.dtype, DType::Float32);
            assert_eq!(x.shape.len(), 2);
            let rows = x.shape[0];
            assert!(
                (1..=MAX_ROWS).contains(&rows) && x.shape[1] == F,
                "{:?}",
                x.shape
            );
            let response = ticket.wait().expect("an accepted request completes");
            let y: Vec<f32> = response.outputs[0].to_vec().expect("float32 output");
            let expected: Vec<f32> = bytemuck::pod_collect_to_vec::<u8, f32>(&x.data)
                .iter()
                .map(|v| v * SCALE + BIAS)
                .collect();
            assert_eq!(y.len(), rows * F);
            assert!(
                y.iter()
                    .zip(&expected)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{y:?} != {expected:?}"
            );
        }
        Err(TrySubmitError::Invalid(invalid)) => {
            assert!(!invalid.reason.contains(['\n', '\r']), "{}", invalid.reason);
            assert!(invalid.reason.len() < 1024, "{}", invalid.reason);
            assert_eq!(invalid.request.inputs(), inputs.as_slice());
        }
        Err(TrySubmitError::Full(_)) => {}
        Err(other) => panic!("unexpected refusal: {other}"),
    }
});
