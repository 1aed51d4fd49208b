//! Process-wide counters: what the mock did, for tests that prove zero-copy and zero leaks.
//!
//! This module owns the `#[repr(C)]` [`Counters`] struct (`nrt_mock_counters_t` for C callers,
//! read with the exported `nrt_mock_get_counters`) and the atomics behind it. The counters
//! live for the whole process, independent of `nrt_init`/`nrt_close`.
//!
//! C view (x86-64, every field a `uint64_t`, no padding):
//!
//! ```c
//! #define NRT_MOCK_MAX_CORES 128
//! typedef struct nrt_mock_counters_t {
//!     uint64_t executions[NRT_MOCK_MAX_CORES]; /* per physical core */
//!     uint64_t bytes_written, bytes_read, bytes_memset, bytes_copied;
//!     uint64_t live_tensors, live_models, live_tensor_sets;
//!     uint64_t loads, tensor_writes, tensor_reads;
//!     uint64_t busy_returns;
//! } nrt_mock_counters_t;
//! NRT_STATUS nrt_mock_get_counters(nrt_mock_counters_t *out, size_t size);
//! void nrt_mock_reset_counters(void);
//! ```
//!
//! `nrt_mock_get_counters` fills `min(size, sizeof(nrt_mock_counters_t))` bytes, so a caller
//! built against an older, shorter struct keeps working when fields are appended.

use std::sync::atomic::{AtomicU64, Ordering};

/// Most physical cores the mock can simulate (the length of [`Counters::executions`]).
pub const NRT_MOCK_MAX_CORES: usize = 128;

/// A snapshot of the mock's counters (`nrt_mock_counters_t`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    /// Executions that reached each **physical** core (after input validation; faulted and
    /// timed-out executions count too). Each iteration of `nrt_execute_repeat` counts.
    pub executions: [u64; NRT_MOCK_MAX_CORES],
    /// Bytes copied in by successful `nrt_tensor_write` calls.
    pub bytes_written: u64,
    /// Bytes copied out by successful `nrt_tensor_read` calls.
    pub bytes_read: u64,
    /// Bytes set by successful `nrt_tensor_memset` calls.
    pub bytes_memset: u64,
    /// Bytes copied by successful `nrt_tensor_copy` calls.
    pub bytes_copied: u64,
    /// Tensor handles alive now (a gauge; not reset by `nrt_mock_reset_counters`).
    pub live_tensors: u64,
    /// Loaded models alive now (a gauge; not reset).
    pub live_models: u64,
    /// Tensor sets alive now (a gauge; not reset).
    pub live_tensor_sets: u64,
    /// Successful `nrt_load` calls.
    pub loads: u64,
    /// Successful `nrt_tensor_write` calls.
    pub tensor_writes: u64,
    /// Successful `nrt_tensor_read` calls.
    pub tensor_reads: u64,
    /// Executions refused with `NRT_EXEC_NC_BUSY` because the core was running another
    /// model (`NRT_MOCK_EXEC_POLICY=busy`; injected faults do not count here).
    pub busy_returns: u64,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            executions: [0; NRT_MOCK_MAX_CORES],
            bytes_written: 0,
            bytes_read: 0,
            bytes_memset: 0,
            bytes_copied: 0,
            live_tensors: 0,
            live_models: 0,
            live_tensor_sets: 0,
            loads: 0,
            tensor_writes: 0,
            tensor_reads: 0,
            busy_returns: 0,
        }
    }
}

impl Counters {
    /// Sum of [`Counters::executions`] over every core.
    pub fn total_executions(&self) -> u64 {
        self.executions.iter().sum()
    }
}

const _: () = assert!(std::mem::size_of::<Counters>() == 8 * (NRT_MOCK_MAX_CORES + 11));

/// The live atomics behind [`Counters`].
pub(crate) struct Atomics {
    pub(crate) executions: [AtomicU64; NRT_MOCK_MAX_CORES],
    pub(crate) bytes_written: AtomicU64,
    pub(crate) bytes_read: AtomicU64,
    pub(crate) bytes_memset: AtomicU64,
    pub(crate) bytes_copied: AtomicU64,
    pub(crate) live_tensors: AtomicU64,
    pub(crate) live_models: AtomicU64,
    pub(crate) live_tensor_sets: AtomicU64,
    pub(crate) loads: AtomicU64,
    pub(crate) tensor_writes: AtomicU64,
    pub(crate) tensor_reads: AtomicU64,
    pub(crate) busy_returns: AtomicU64,
}

/// The process's counters.
pub(crate) static COUNTERS: Atomics = Atomics {
    executions: [const { AtomicU64::new(0) }; NRT_MOCK_MAX_CORES],
    bytes_written: AtomicU64::new(0),
    bytes_read: AtomicU64::new(0),
    bytes_memset: AtomicU64::new(0),
    bytes_copied: AtomicU64::new(0),
    live_tensors: AtomicU64::new(0),
    live_models: AtomicU64::new(0),
    live_tensor_sets: AtomicU64::new(0),
    loads: AtomicU64::new(0),
    tensor_writes: AtomicU64::new(0),
    tensor_reads: AtomicU64::new(0),
    busy_returns: AtomicU64::new(0),
};

/// Adds `n` to a counter.
pub(crate) fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// Subtracts one from a gauge.
pub(crate) fn dec(c: &AtomicU64) {
    c.fetch_sub(1, Ordering::Relaxed);
}

impl Atomics {
    /// Reads every counter (each atomically; the set is not one atomic snapshot).
    pub(crate) fn snapshot(&self) -> Counters {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut executions = [0; NRT_MOCK_MAX_CORES];
        for (out, a) in executions.iter_mut().zip(&self.executions) {
            *out = get(a);
        }
        Counters {
            executions,
            bytes_written: get(&self.bytes_written),
            bytes_read: get(&self.bytes_read),
            bytes_memset: get(&self.bytes_memset),
            bytes_copied: get(&self.bytes_copied),
            live_tensors: get(&self.live_tensors),
            live_models: get(&self.live_models),
            live_tensor_sets: get(&self.live_tensor_sets),
            loads: get(&self.loads),
            tensor_writes: get(&self.tensor_writes),
            tensor_reads: get(&self.tensor_reads),
            busy_returns: get(&self.busy_returns),
        }
    }

    /// Zeroes every counter except the `live_*` gauges.
    pub(crate) fn reset(&self) {
        let zero = |a: &AtomicU64| a.store(0, Ordering::Relaxed);
        self.executions.iter().for_each(zero);
        for a in [
            &self.bytes_written,
            &self.bytes_read,
            &self.bytes_memset,
            &self.bytes_copied,
            &self.loads,
            &self.tensor_writes,
            &self.tensor_reads,
            &self.busy_returns,
        ] {
            zero(a);
        }
    }
}
