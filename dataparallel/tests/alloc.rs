//! `forward_into` makes no heap allocation per call in the steady state (ARCHITECTURE.md, "The path of one batch"),
//! proved with a counting global allocator.
//!
//! The allocator counts every allocation of every thread of this process while a window is
//! open, because the engine's worker threads take part in each call. Only allocations made
//! through Rust's global allocator in this binary count: that is the engine, `neuron-rt` and
//! crossbeam; the mock libnrt is a separate cdylib with its own allocator, standing in for
//! the device runtime.
//!
//! This binary holds a single `#[test]` so that nothing else runs while a window is open.
//! Set `DP_ALLOC_TRACE=1` to print a backtrace of each counted allocation (to find one; the
//! traces' own allocations on other threads inflate the counts then).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

mod common;

use common::{affine_shape_model, neff, runtime};
use dataparallel::{Config, DataParallel, Input, Output};
use neuron_rt::Neff;

/// Counts allocations (and reallocations) of every thread while `COUNTING` is set.
struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);
static TRACE: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// Set while this thread prints a trace, so the trace's own allocations are not traced.
    static IN_TRACE: Cell<bool> = const { Cell::new(false) };
}

impl Counting {
    fn record(&self) {
        if !COUNTING.load(Ordering::Relaxed) {
            return;
        }
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        if TRACE.load(Ordering::Relaxed) && !IN_TRACE.with(|t| t.replace(true)) {
            let thread = std::thread::current();
            eprintln!(
                "allocation on thread {:?}:\n{}",
                thread.name(),
                std::backtrace::Backtrace::force_capture()
            );
            IN_TRACE.with(|t| t.set(false));
        }
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; the
// counting touches only atomics and a thread-local flag.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.record();
        // SAFETY: forwarded unchanged; the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        self.record();
        // SAFETY: as in `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        self.record();
        // SAFETY: forwarded unchanged; `ptr` came from this allocator, i.e. from `System`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged; `ptr` came from this allocator, i.e. from `System`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by every thread while `f` runs.
fn allocations_during(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    COUNTING.store(true, Ordering::SeqCst);
    f();
    COUNTING.store(false, Ordering::SeqCst);
    ALLOCATIONS.load(Ordering::SeqCst) - before
}

const WARM_UP: usize = 10;
const MEASURED: usize = 100;

fn affine(shape: &[u32], exec_us: u64) -> Neff {
    neff(affine_shape_model(shape, 2.0, 1.0).exec_us(exec_us))
}

/// Warms `engine` up with `forward_into` on `shape`, then counts the allocations of
/// `MEASURED` more calls with the same shapes and buffers.
fn steady_state_allocations(
    label: &str,
    engine: &DataParallel,
    shape: &[usize],
    named: bool,
) -> usize {
    let x: Vec<f32> = (0..shape.iter().product::<usize>())
        .map(|i| i as f32)
        .collect();
    let mut y = vec![0.0f32; x.len()];
    let call = |y: &mut [f32]| {
        let input = Input::f32(shape, &x);
        let output = Output::f32(shape, y);
        let (inputs, mut outputs) = if named {
            ([input.named("x")], [output.named("y")])
        } else {
            ([input], [output])
        };
        engine
            .forward_into(&inputs, &mut outputs)
            .expect("forward_into");
    };
    for _ in 0..WARM_UP {
        call(&mut y);
    }
    let count = allocations_during(|| {
        for _ in 0..MEASURED {
            call(&mut y);
        }
    });
    for (a, b) in x.iter().zip(&y) {
        assert_eq!(a * 2.0 + 1.0, *b);
    }
    println!(
        "{label}: {count} allocations in {MEASURED} calls of shape {shape:?}; plan {:?}",
        engine
            .plan(shape[engine.dim()])
            .expect("plan")
            .iter()
            .map(|c| (c.rows, c.pieces, c.pad_rows))
            .collect::<Vec<_>>()
    );
    count
}

/// Two caller threads run `forward_into` at once; allocations of both calls' whole path.
fn concurrent_allocations(engine: &DataParallel, shape: &[usize]) -> usize {
    let len = shape.iter().product::<usize>();
    let ready = Barrier::new(3);
    let start = Barrier::new(3);
    let done = Barrier::new(3);
    let mut count = 0;
    std::thread::scope(|scope| {
        for t in 0..2 {
            let (ready, start, done) = (&ready, &start, &done);
            scope.spawn(move || {
                let x: Vec<f32> = (0..len).map(|i| (i + t) as f32).collect();
                let mut y = vec![0.0f32; len];
                let call = |y: &mut [f32]| {
                    engine
                        .forward_into(&[Input::f32(shape, &x)], &mut [Output::f32(shape, y)])
                        .expect("forward_into");
                };
                for _ in 0..WARM_UP {
                    call(&mut y);
                }
                ready.wait();
                start.wait();
                for _ in 0..MEASURED {
                    call(&mut y);
                }
                done.wait();
                for (a, b) in x.iter().zip(&y) {
                    assert_eq!(a * 2.0 + 1.0, *b);
                }
            });
        }
        ready.wait();
        count = allocations_during(|| {
            start.wait();
            done.wait();
        });
    });
    println!(
        "2 concurrent callers: {count} allocations in 2 x {MEASURED} calls of shape {shape:?}"
    );
    count
}

/// The only test in this binary (see the module docs).
#[test]
fn forward_into_allocates_nothing_in_steady_state() {
    TRACE.store(
        std::env::var_os("DP_ALLOC_TRACE").is_some_and(|v| v == "1"),
        Ordering::SeqCst,
    );
    let rt = runtime();
    let mut results = Vec::new();

    // Default config (2 workers per core, dynamic batching) on 4 cores, compiled batch 2:
    // n=22 gives chunks 6, 6, 5, 5, three pieces each, the last pieces of chunks 2 and 3
    // padded.
    let b2 = affine(&[2, 8], 20);
    let default = DataParallel::new(
        &rt,
        &b2,
        Config::default().device_list("nc:0,nc:1,nc:2,nc:3"),
    )
    .expect("default engine");
    results.push((
        "default, k=4, b=2, n=22",
        steady_state_allocations("default", &default, &[22, 8], false),
    ));
    results.push((
        "default, named views",
        steady_state_allocations("named", &default, &[22, 8], true),
    ));

    // dim 1: input [2, 8, 3] on a model compiled [2, 4, 3] over 2 cores; two runs per piece.
    let dim1 = DataParallel::new(
        &rt,
        &affine(&[2, 4, 3], 20),
        Config::default().device_list("nc:4,nc:5").dim(1),
    )
    .expect("dim-1 engine");
    results.push((
        "dim=1, k=2",
        steady_state_allocations("dim=1", &dim1, &[2, 8, 3], false),
    ));

    // User split size, several chunks per core.
    let split = DataParallel::new(
        &rt,
        &b2,
        Config::default().device_list("nc:6,nc:7").split_size(3),
    )
    .expect("split-size engine");
    results.push((
        "split_size 3, k=2, n=17",
        steady_state_allocations("split_size", &split, &[17, 8], false),
    ));

    // One worker serving three cores (it waits on all three channels at once).
    let one_worker = DataParallel::new(
        &rt,
        &b2,
        Config::default()
            .device_list("nc:8,nc:9,nc:10")
            .num_workers(1),
    )
    .expect("one-worker engine");
    results.push((
        "num_workers 1, k=3, n=13",
        steady_state_allocations("one worker", &one_worker, &[13, 8], false),
    ));

    // Two callers at once, each with its own buffers, both warmed up before the window.
    results.push((
        "default, 2 concurrent callers",
        concurrent_allocations(&default, &[22, 8]),
    ));

    // Attach mode creates tensor handles per unpadded piece (documented to allocate); the
    // count is informational.
    let attach = DataParallel::new(
        &rt,
        &b2,
        Config::default().device_list("nc:11,nc:12").attach(true),
    )
    .expect("attach engine");
    steady_state_allocations("attach (informational)", &attach, &[8, 8], false);

    // The counter is live: the allocating API does allocate.
    let x = vec![1.0f32; 22 * 8];
    let forward = allocations_during(|| {
        default
            .forward(&[Input::f32(&[22, 8], &x)])
            .expect("forward");
    });
    println!("forward (allocating API): {forward} allocations in 1 call");
    assert!(forward > 0, "the counting allocator counted nothing");

    let failing: Vec<_> = results.iter().filter(|(_, count)| *count != 0).collect();
    assert!(
        failing.is_empty(),
        "forward_into allocated in the steady state (allocations per {MEASURED} calls): \
         {failing:?}; rerun with DP_ALLOC_TRACE=1 to see where"
    );
}
