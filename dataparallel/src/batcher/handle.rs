//! Completion: the [`Ticket`] a caller holds for a submitted request, the one-shot slot the
//! batcher's threads fill, and what ends up in it ([`Response`] or [`RequestError`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use super::request::OwnedTensor;
use crate::error::Error;

/// The outputs of one request: exactly its rows, in its row order.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Response {
    /// One tensor per model output, in the model's output order, each `[rows, ...]`.
    pub outputs: Vec<OwnedTensor>,
    /// Rows of the batch the request ran in (its own rows included).
    pub batch_rows: usize,
    /// Requests in that batch (this one included).
    pub batch_requests: usize,
    /// From submit until its batch started running.
    pub queue_wait: Duration,
}

/// Why a submitted request produced no outputs; delivered through its [`Ticket`].
///
/// `Clone`: one engine error is shared, through an [`Arc`], by every request of the batch
/// it failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The request's deadline passed before it joined a batch; it was never run.
    #[error(
        "deadline exceeded: the request waited {waited:?} in the queue and expired before it \
         joined a batch; it was not run (raise its timeout, or add capacity)"
    )]
    DeadlineExceeded {
        /// How long it had waited when the batcher found it expired.
        waited: Duration,
    },

    /// The engine failed the batch the request ran in. Every request of that batch gets the
    /// same error.
    #[error(
        "the batch this request ran in ({batch_requests} requests, {batch_rows} rows) failed: \
         {source}"
    )]
    Engine {
        /// Rows in the batch.
        batch_rows: usize,
        /// Requests in the batch.
        batch_requests: usize,
        /// The engine's error (see [`Error::status`] and [`Error::chunk`]).
        #[source]
        source: Arc<Error>,
    },

    /// The engine panicked while running the batch (a bug: please report). The batcher
    /// keeps serving.
    #[error(
        "the engine panicked running the batch this request was in (a bug, please report): \
         {message}"
    )]
    EnginePanicked {
        /// The panic message.
        message: String,
    },

    /// The batcher's threads stopped before one could run the request (one panicked: a bug,
    /// please report).
    #[error("the batcher stopped before running the request (a bug, please report)")]
    Stopped,

    /// The ticket's future was polled again after it had returned its result.
    #[error("the ticket's result was already taken (its future was polled after completing)")]
    AlreadyTaken,
}

/// What a request produced.
pub(super) type Outcome = Result<Response, RequestError>;

#[derive(Debug)]
enum State {
    Pending(Option<Waker>),
    Done(Outcome),
    Taken,
}

/// The one-shot completion slot shared by a [`Ticket`] and the queued request.
#[derive(Debug)]
pub(super) struct Slot {
    state: Mutex<State>,
    ready: Condvar,
}

impl Slot {
    pub(super) fn new() -> Arc<Slot> {
        Arc::new(Slot {
            state: Mutex::new(State::Pending(None)),
            ready: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; a poisoned state is still consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Fills the slot (the first outcome wins) and wakes the waiter.
    pub(super) fn complete(&self, outcome: Outcome) {
        let waker = {
            let mut state = self.lock();
            match &mut *state {
                State::Pending(waker) => {
                    let waker = waker.take();
                    *state = State::Done(outcome);
                    waker
                }
                State::Done(_) | State::Taken => return,
            }
        };
        self.ready.notify_all();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    pub(super) fn is_done(&self) -> bool {
        !matches!(*self.lock(), State::Pending(_))
    }
}

fn take(state: &mut State) -> Option<Outcome> {
    match std::mem::replace(state, State::Taken) {
        State::Done(outcome) => Some(outcome),
        State::Taken => Some(Err(RequestError::AlreadyTaken)),
        pending @ State::Pending(_) => {
            *state = pending;
            None
        }
    }
}

/// The handle to one submitted request's result.
///
/// Block with [`wait`](Self::wait) or [`wait_timeout`](Self::wait_timeout), check with
/// [`is_ready`](Self::is_ready) / [`try_result`](Self::try_result), or `.await` it (a plain
/// std [`Future`], any executor; no runtime dependency).
///
/// Dropping a ticket before its request joins a batch cancels the request: the batcher skips
/// it (counted in [`BatcherStats::abandoned`](super::BatcherStats::abandoned)).
#[derive(Debug)]
#[must_use = "dropping a ticket cancels its request if it has not started"]
pub struct Ticket {
    slot: Arc<Slot>,
}

impl Ticket {
    pub(super) fn new(slot: Arc<Slot>) -> Ticket {
        Ticket { slot }
    }

    /// Whether the result is ready (never blocks).
    pub fn is_ready(&self) -> bool {
        self.slot.is_done()
    }

    /// The result if ready, else the ticket back (never blocks).
    ///
    /// # Errors
    ///
    /// `Err(ticket)` while the request is pending; `Ok(Err(_))` when it failed.
    pub fn try_result(self) -> Result<Result<Response, RequestError>, Ticket> {
        let outcome = take(&mut self.slot.lock());
        outcome.ok_or(self)
    }

    /// Blocks until the result is ready.
    ///
    /// # Errors
    ///
    /// The [`RequestError`] the request completed with.
    pub fn wait(self) -> Result<Response, RequestError> {
        let mut state = self.slot.lock();
        loop {
            if let Some(outcome) = take(&mut state) {
                return outcome;
            }
            state = self
                .slot
                .ready
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Blocks until the result is ready or `timeout` passes; on timeout hands the ticket
    /// back (the request stays queued).
    ///
    /// # Errors
    ///
    /// `Err(ticket)` on timeout; `Ok(Err(_))` when the request failed.
    pub fn wait_timeout(self, timeout: Duration) -> Result<Result<Response, RequestError>, Ticket> {
        let Some(deadline) = Instant::now().checked_add(timeout) else {
            return Ok(self.wait());
        };
        let outcome = {
            let mut state = self.slot.lock();
            loop {
                if let Some(outcome) = take(&mut state) {
                    break Some(outcome);
                }
                let now = Instant::now();
                if now >= deadline {
                    break None;
                }
                state = self
                    .slot
                    .ready
                    .wait_timeout(state, deadline - now)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
        };
        outcome.ok_or(self)
    }

    /// Whether the caller still holds the ticket (the queued request's copy of the slot is
    /// the only other reference).
    pub(super) fn abandoned(slot: &Arc<Slot>) -> bool {
        Arc::strong_count(slot) == 1
    }
}

impl Future for Ticket {
    type Output = Result<Response, RequestError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.slot.lock();
        if let Some(outcome) = take(&mut state) {
            return Poll::Ready(outcome);
        }
        if let State::Pending(waker) = &mut *state {
            match waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => *waker = Some(cx.waker().clone()),
            }
        }
        Poll::Pending
    }
}
