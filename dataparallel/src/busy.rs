//! Busy cores: executions the runtime refuses because the core cannot take them now.
//!
//! The engine runs two workers per core and, with buckets, several models per core. A real
//! runtime runs one NEFF at a time per core; its developer guide documents
//! `NRT_EXEC_NC_BUSY` (1005, the core "locked by another model/thread") without saying
//! exactly when it is returned, and `NRT_QUEUE_FULL` (7) when too many executions are
//! pending. Neither says anything about the core's health or the request, so this module
//! owns the one answer the engine gives to both: retry the same execution after a short
//! back-off (doubling from [`FIRST_BACKOFF`] up to [`MAX_BACKOFF`]), at most [`BUSY_RETRIES`]
//! times (about half a second in all), then fail the piece with the status. Retries are
//! counted per core ([`CoreReport::busy_retries`](crate::CoreReport::busy_retries)) and never
//! count toward quarantine (`health.rs`).

use std::time::Duration;

use neuron_rt::Status;

/// Retries of one execution after busy statuses before its piece fails with the status.
pub const BUSY_RETRIES: u32 = 20;

/// The pause before the first retry.
pub(crate) const FIRST_BACKOFF: Duration = Duration::from_micros(50);

/// The longest pause between two attempts.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_millis(50);

/// True for the statuses that mean "not now" rather than "failed": `NRT_EXEC_NC_BUSY` and
/// `NRT_QUEUE_FULL`.
pub(crate) fn is_busy(status: Option<Status>) -> bool {
    matches!(status, Some(Status::ExecNcBusy | Status::QueueFull))
}

/// The pause before retry `retry` (0 for the first): doubling from [`FIRST_BACKOFF`],
/// capped at [`MAX_BACKOFF`].
pub(crate) fn backoff(retry: u32) -> Duration {
    FIRST_BACKOFF
        .checked_mul(1u32.checked_shl(retry).unwrap_or(u32::MAX))
        .map_or(MAX_BACKOFF, |pause| pause.min(MAX_BACKOFF))
}

/// Runs `attempt` until it returns anything but a busy status, retrying at most
/// [`BUSY_RETRIES`] times; before each retry calls `on_retry` and then `pause` with the
/// back-off. The last busy error is returned when the retries run out.
pub(crate) fn retry_busy<T>(
    mut attempt: impl FnMut() -> Result<T, neuron_rt::Error>,
    mut on_retry: impl FnMut(),
    mut pause: impl FnMut(Duration),
) -> Result<T, neuron_rt::Error> {
    let mut retry = 0;
    loop {
        match attempt() {
            Err(error) if is_busy(error.status()) && retry < BUSY_RETRIES => {
                on_retry();
                pause(backoff(retry));
                retry += 1;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nrt(status: Status) -> neuron_rt::Error {
        neuron_rt::Error::Nrt {
            op: "nrt_execute",
            status,
            message: "test".to_owned(),
            remedy: None,
        }
    }

    #[test]
    fn backoff_doubles_to_the_cap_and_the_total_is_bounded() {
        assert_eq!(backoff(0), FIRST_BACKOFF);
        assert_eq!(backoff(1), FIRST_BACKOFF * 2);
        assert_eq!(backoff(3), FIRST_BACKOFF * 8);
        for retry in [10, 20, 31, 32, 64, u32::MAX] {
            assert_eq!(backoff(retry), MAX_BACKOFF, "retry {retry}");
        }
        let total: Duration = (0..BUSY_RETRIES).map(backoff).sum();
        assert!(
            total > Duration::from_millis(100) && total < Duration::from_secs(1),
            "{total:?}"
        );
    }

    #[test]
    fn busy_statuses_are_retried_until_something_else_comes_back() {
        for busy in [Status::ExecNcBusy, Status::QueueFull] {
            let mut results = vec![Ok(7), Err(nrt(busy)), Err(nrt(busy))];
            let (mut retries, mut pauses) = (0, Vec::new());
            let result = retry_busy(
                || results.pop().expect("no more attempts than results"),
                || retries += 1,
                |pause| pauses.push(pause),
            );
            assert_eq!(result.ok(), Some(7));
            assert_eq!(retries, 2);
            assert_eq!(pauses, [backoff(0), backoff(1)]);
        }
    }

    #[test]
    fn other_errors_are_returned_at_once() {
        for status in [Status::HwError, Status::Invalid, Status::Timeout] {
            let mut attempts = 0;
            let result: Result<(), _> = retry_busy(
                || {
                    attempts += 1;
                    Err(nrt(status))
                },
                || panic!("no retry"),
                |_| panic!("no pause"),
            );
            assert_eq!(result.unwrap_err().status(), Some(status));
            assert_eq!(attempts, 1);
        }
    }

    #[test]
    fn a_core_that_stays_busy_fails_after_the_bounded_retries() {
        let (mut attempts, mut retries) = (0, 0);
        let mut slept = Duration::ZERO;
        let result: Result<(), _> = retry_busy(
            || {
                attempts += 1;
                Err(nrt(Status::ExecNcBusy))
            },
            || retries += 1,
            |pause| slept += pause,
        );
        assert_eq!(result.unwrap_err().status(), Some(Status::ExecNcBusy));
        assert_eq!((attempts, retries), (BUSY_RETRIES + 1, BUSY_RETRIES));
        assert_eq!(slept, (0..BUSY_RETRIES).map(backoff).sum());
    }
}
