//! Core health, beyond the reference: a core whose executions keep failing with
//! hardware-class statuses is quarantined, and its chunks go to the remaining cores until it
//! is re-admitted.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use neuron_rt::{DeviceId, Status};

/// Consecutive hardware-class failures that quarantine a core, by default.
pub const DEFAULT_QUARANTINE_AFTER: u32 = 3;

/// A core's health counters, updated by its workers.
#[derive(Debug, Default)]
pub(crate) struct Health {
    quarantined: AtomicBool,
    consecutive_failures: AtomicU32,
    /// The last failure's raw status + 1 (0: none yet).
    last_status: AtomicU64,
}

impl Health {
    /// True while the core takes no chunks.
    pub(crate) fn is_quarantined(&self) -> bool {
        self.quarantined.load(Ordering::Acquire)
    }

    /// Records a successful piece.
    pub(crate) fn succeeded(&self) {
        if self.consecutive_failures.load(Ordering::Relaxed) != 0 {
            self.consecutive_failures.store(0, Ordering::Relaxed);
        }
    }

    /// Records a failed piece. Returns true when this failure quarantined the core.
    ///
    /// A busy status (`busy.rs`) that outlasted the retries says nothing about the core's
    /// health: it is recorded as the last status and leaves the count of failures alone.
    pub(crate) fn failed(&self, status: Option<Status>, threshold: u32) -> bool {
        if let Some(status) = status {
            self.last_status
                .store(u64::from(status.raw()) + 1, Ordering::Relaxed);
        }
        if crate::busy::is_busy(status) {
            return false;
        }
        if !status.is_some_and(Status::is_hardware_class) {
            self.consecutive_failures.store(0, Ordering::Relaxed);
            return false;
        }
        let failures = self.consecutive_failures.fetch_add(1, Ordering::AcqRel) + 1;
        threshold != 0 && failures >= threshold && !self.quarantined.swap(true, Ordering::AcqRel)
    }

    /// Takes the core back into service.
    pub(crate) fn readmit(&self) {
        self.consecutive_failures.store(0, Ordering::Relaxed);
        self.quarantined.store(false, Ordering::Release);
    }

    pub(crate) fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures.load(Ordering::Relaxed)
    }

    pub(crate) fn last_status(&self) -> Option<Status> {
        match self.last_status.load(Ordering::Relaxed) {
            0 => None,
            // The stored value came from a u32 plus one, so it fits back.
            raw => u32::try_from(raw - 1).ok().map(Status::from_raw),
        }
    }
}

/// Whether a core takes chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CoreState {
    /// In service.
    Healthy,
    /// Taken out of service after repeated hardware-class failures; see
    /// [`DataParallel::readmit`](crate::DataParallel::readmit).
    Quarantined,
}

/// One core's health, from [`DataParallel::health`](crate::DataParallel::health).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoreHealth {
    /// The logical core.
    pub core: DeviceId,
    /// The physical core, when known.
    pub physical_core: Option<u32>,
    /// In service or not.
    pub state: CoreState,
    /// Hardware-class failures in a row (reset by a success or a re-admission).
    pub consecutive_failures: u32,
    /// The status of the most recent failure, if any.
    pub last_status: Option<Status>,
    /// Executions started on the core.
    pub executions: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quarantines_after_threshold_hardware_failures_in_a_row() {
        let health = Health::default();
        let hw = Some(Status::ExecUnitUnrecoverable);
        assert!(!health.failed(hw, 3));
        assert!(!health.failed(hw, 3));
        assert!(health.failed(hw, 3), "the third in a row quarantines");
        assert!(health.is_quarantined());
        assert!(!health.failed(hw, 3), "only the first crossing reports");
        assert_eq!(health.last_status(), hw);
        health.readmit();
        assert!(!health.is_quarantined());
        assert_eq!(health.consecutive_failures(), 0);
    }

    #[test]
    fn request_errors_and_successes_reset_the_count() {
        let health = Health::default();
        let hw = Some(Status::HwError);
        health.failed(hw, 3);
        health.failed(hw, 3);
        health.succeeded();
        assert!(!health.failed(hw, 3));
        assert!(!health.failed(Some(Status::Invalid), 3));
        assert_eq!(health.consecutive_failures(), 0);
        assert!(!health.is_quarantined());
        // Threshold 0 disables quarantine.
        for _ in 0..10 {
            assert!(!health.failed(hw, 0));
        }
        assert!(!health.is_quarantined());
    }

    #[test]
    fn busy_statuses_neither_count_nor_reset() {
        let health = Health::default();
        let hw = Some(Status::HwError);
        health.failed(hw, 3);
        health.failed(hw, 3);
        for busy in [Status::ExecNcBusy, Status::QueueFull] {
            for _ in 0..5 {
                assert!(!health.failed(Some(busy), 1));
            }
            assert_eq!(health.last_status(), Some(busy));
        }
        assert_eq!(
            health.consecutive_failures(),
            2,
            "busy left the count alone"
        );
        assert!(!health.is_quarantined());
        assert!(
            health.failed(hw, 3),
            "the next hardware failure is the third in a row"
        );
    }
}
