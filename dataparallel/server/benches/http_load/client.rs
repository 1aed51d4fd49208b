//! The open-loop HTTP load generator: one run of single-row `POST /v2/models/{name}/infer`
//! requests on a [`Plan`] over a pool of keep-alive HTTP/1.1 connections.
//!
//! - A *dispatcher* thread keeps the schedule: it sleeps until each request's due time with
//!   `std::thread::sleep` (tokio's timer ticks in whole milliseconds, too coarse for
//!   intervals of tens of µs) and hands the request's index to the async side, never
//!   waiting for an answer.
//! - On one tokio thread, a *distributor* takes the due requests in order and gives each to
//!   the next idle connection of the pool; when every connection is busy the request waits
//!   (its latency still runs from its due time). A request that gets no connection before
//!   the schedule's end plus the grace period is unserved.
//! - Each connection carries one request at a time (HTTP/1.1 without pipelining); the task
//!   that sent it reads the whole response, checks its status and values
//!   ([`Bodies::check`]), records the latency from the due time, and puts the connection
//!   back. A connection that failed is dropped and reopened when next taken.
//!
//! Answers: 200 with the right values is a completed request; 503 (queue full, or too many
//! bodies being read) is a request turned away, so unserved, as the in-process batcher's
//! refused `try_submit`; anything else, a transport error or no whole answer within
//! [`RESPONSE_TIMEOUT`] is an error.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;

use crate::body::{Bodies, HEADER_LENGTH};
use crate::schedule::{Outcome, Plan};

/// Most connections a pool may open (each is a file descriptor here and in the server).
pub(crate) const MAX_CONNECTIONS: usize = 512;
/// How long a sent request may take to be answered in full before it is an error.
pub(crate) const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long opening one connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// From building the pool to the first due time: the dispatcher's head start.
const LEAD: Duration = Duration::from_millis(20);

type Sender = SendRequest<Full<Bytes>>;

/// Where the requests go.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    addr: SocketAddr,
    host: HeaderValue,
    infer_path: String,
}

impl Target {
    /// Model `model` of the server at `addr`.
    pub(crate) fn new(addr: SocketAddr, model: &str) -> Result<Target, String> {
        let host = HeaderValue::from_str(&addr.to_string())
            .map_err(|e| format!("address {addr} is not a Host header: {e}"))?;
        Ok(Target {
            addr,
            host,
            infer_path: format!("/v2/models/{model}/infer"),
        })
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// Opens one keep-alive connection to `addr` (Nagle off, as a latency client does).
async fn connect(addr: SocketAddr) -> Result<Sender, String> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| format!("connecting to {addr} took over {CONNECT_TIMEOUT:?}"))?
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    stream
        .set_nodelay(true)
        .map_err(|e| format!("cannot set TCP_NODELAY: {e}"))?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP/1.1 handshake with {addr} failed: {e}"))?;
    // The connection's I/O; it ends when the sender is dropped or the peer closes.
    tokio::spawn(connection);
    Ok(sender)
}

/// `GET path` on a fresh connection: the status and the whole body.
pub(crate) async fn get(target: &Target, path: &str) -> Result<(StatusCode, Bytes), String> {
    let mut sender = connect(target.addr).await?;
    let request = Request::builder()
        .method(Method::GET)
        .uri(path)
        .header(HOST, target.host.clone())
        .body(Full::new(Bytes::new()))
        .map_err(|e| format!("cannot build GET {path}: {e}"))?;
    let exchange = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("GET {path} failed: {e}"))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("GET {path}: cannot read the body: {e}"))?
            .to_bytes();
        Ok((status, body))
    };
    tokio::time::timeout(RESPONSE_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("GET {path} got no answer within {RESPONSE_TIMEOUT:?}"))?
}

/// One request's answer, as the run counts it.
enum Answer {
    /// 200 with the right values, at this instant.
    Completed(Instant),
    /// 503: turned away.
    TurnedAway,
    Error(String),
}

/// Sends request `i` on `sender` and checks its answer. The connection is given back only
/// when the exchange went through whole.
async fn exchange(
    mut sender: Sender,
    target: &Target,
    bodies: &Bodies,
    i: usize,
) -> (Answer, Option<Sender>) {
    let body = bodies.body(i);
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(target.infer_path.as_str())
        .header(HOST, target.host.clone());
    request = match body.json_length {
        Some(length) => request
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(HEADER_LENGTH, length),
        None => request.header(CONTENT_TYPE, "application/json"),
    };
    let request = match request.body(Full::new(body.bytes.clone())) {
        Ok(request) => request,
        Err(e) => return (Answer::Error(format!("cannot build a request: {e}")), None),
    };
    let sent = async {
        sender
            .ready()
            .await
            .map_err(|e| format!("the connection closed: {e}"))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("the request failed: {e}"))?;
        let status = response.status();
        let json_length = response
            .headers()
            .get(HEADER_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<usize>().ok());
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("cannot read the response body: {e}"))?
            .to_bytes();
        Ok::<_, String>((status, json_length, bytes))
    };
    match tokio::time::timeout(RESPONSE_TIMEOUT, sent).await {
        Err(_) => (
            Answer::Error(format!("no whole answer within {RESPONSE_TIMEOUT:?}")),
            None,
        ),
        Ok(Err(message)) => (Answer::Error(message), None),
        Ok(Ok((status, json_length, bytes))) => {
            let answer = if status == StatusCode::OK {
                match bodies.check(i, json_length, &bytes) {
                    Ok(()) => Answer::Completed(Instant::now()),
                    Err(message) => Answer::Error(message),
                }
            } else if status == StatusCode::SERVICE_UNAVAILABLE {
                Answer::TurnedAway
            } else {
                Answer::Error(format!(
                    "status {status}: {}",
                    String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
                ))
            };
            (answer, Some(sender))
        }
    }
}

/// Runs `plan` against `target` over `connections` keep-alive connections, on `runtime`
/// (a tokio runtime whose `block_on` drives the connections).
///
/// # Errors
///
/// A message when the pool cannot be opened or the dispatcher thread fails; a request that
/// fails is counted, not returned.
pub(crate) fn run(
    runtime: &tokio::runtime::Runtime,
    target: &Target,
    bodies: &Arc<Bodies>,
    plan: Plan,
    connections: usize,
) -> Result<Outcome, String> {
    if connections == 0 || connections > MAX_CONNECTIONS {
        return Err(format!(
            "{connections} connections; give 1 to {MAX_CONNECTIONS}"
        ));
    }
    runtime.block_on(async {
        // The pool: idle connections (`None`: a slot whose connection failed, reopened when
        // taken). Every slot is in the channel or with exactly one request task.
        let (idle_tx, mut idle_rx) = mpsc::unbounded_channel::<Option<Sender>>();
        for _ in 0..connections {
            let sender = connect(target.addr).await?;
            let _ = idle_tx.send(Some(sender));
        }
        let outcome = Arc::new(Mutex::new(Outcome::new(plan.total())));
        let last = Arc::new(Mutex::new(None::<Instant>));
        let (due_tx, mut due_rx) = mpsc::unbounded_channel::<usize>();
        let start = Instant::now() + LEAD;
        let dispatcher = std::thread::Builder::new()
            .name("http-load-dispatch".to_owned())
            .spawn(move || {
                for i in 0..plan.total() {
                    let due = start + plan.due(i);
                    let now = Instant::now();
                    if due > now {
                        std::thread::sleep(due - now);
                    }
                    if due_tx.send(i).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| format!("cannot start the dispatcher thread: {e}"))?;
        let give_up = start + plan.give_up();
        while let Some(i) = due_rx.recv().await {
            let slot = match tokio::time::timeout_at(give_up.into(), idle_rx.recv()).await {
                Ok(Some(slot)) => slot,
                // The sender is held above, so the channel cannot close; past the give-up
                // time with every connection busy, the request is unserved.
                Ok(None) | Err(_) => {
                    lock(&outcome).unserved += 1;
                    continue;
                }
            };
            if Instant::now() > give_up {
                lock(&outcome).unserved += 1;
                let _ = idle_tx.send(slot);
                continue;
            }
            let sender = match slot {
                Some(sender) => sender,
                None => match connect(target.addr).await {
                    Ok(sender) => sender,
                    Err(message) => {
                        lock(&outcome).error(|| message);
                        let _ = idle_tx.send(None);
                        continue;
                    }
                },
            };
            let due = start + plan.due(i);
            lock(&outcome)
                .send_lags_ms
                .push(due.elapsed().as_secs_f64() * 1e3);
            let (target, bodies, idle_tx) = (target.clone(), Arc::clone(bodies), idle_tx.clone());
            let (outcome, last) = (Arc::clone(&outcome), Arc::clone(&last));
            tokio::spawn(async move {
                let (answer, sender) = exchange(sender, &target, &bodies, i).await;
                {
                    let mut outcome = lock(&outcome);
                    match answer {
                        Answer::Completed(at) => {
                            outcome.latencies_ms.push((at - due).as_secs_f64() * 1e3);
                            let mut last = lock(&last);
                            *last = Some(last.map_or(at, |l| l.max(at)));
                        }
                        Answer::TurnedAway => outcome.turn_away(),
                        Answer::Error(message) => outcome.error(|| message),
                    }
                }
                let _ = idle_tx.send(sender);
            });
        }
        dispatcher
            .join()
            .map_err(|_| "the dispatcher thread panicked".to_owned())?;
        // Every request is sent or given up; wait for every slot to come back (each request
        // task ends within its response timeout), then close the connections.
        let drain = async {
            for _ in 0..connections {
                let _ = idle_rx.recv().await;
            }
        };
        if tokio::time::timeout(RESPONSE_TIMEOUT + Duration::from_secs(1), drain)
            .await
            .is_err()
        {
            return Err("requests were still in flight after their timeout (a bug)".to_owned());
        }
        let mut outcome = std::mem::take(&mut *lock(&outcome));
        outcome.elapsed =
            lock(&last).map_or(Duration::ZERO, |l| l.saturating_duration_since(start));
        Ok(outcome)
    })
}

/// Locks `mutex`, taking the data of a poisoned one (a panicked task left nothing half
/// written that the counts depend on).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
