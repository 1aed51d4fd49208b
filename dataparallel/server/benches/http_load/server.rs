//! The server under test: `neuron-dp-server serve` (the release binary cargo built beside
//! this bench) as a child process on 127.0.0.1 and a port the OS picks, found from the
//! address it logs at start; ready when `GET /v2/health/ready` answers 200; stopped with
//! SIGTERM (it drains and logs its batcher's totals), killed if it does not exit.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::time::{Duration, Instant};

use hyper::StatusCode;

use crate::client::{self, Target};

/// How long the server may take to log its address and then to become ready.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long it may take to drain and exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Log lines kept for error messages.
const KEPT_LINES: usize = 20;
/// What precedes the address in the server's start-up log line.
const ADDRESS_MARKER: &str = " on http://";

/// A running server.
#[derive(Debug)]
pub(crate) struct ServerProcess {
    child: Child,
    target: Target,
    /// Its last log lines (stderr).
    log: Arc<Mutex<VecDeque<String>>>,
}

impl ServerProcess {
    /// Starts `exe serve NEFF --model-name MODEL --host 127.0.0.1 --port 0 FLAGS...` with
    /// the variables of `env` added to this process's, and waits until it is ready.
    ///
    /// # Errors
    ///
    /// A message with the server's last log lines when it cannot start, exits, or is not
    /// ready within [`START_TIMEOUT`].
    pub(crate) fn start(
        runtime: &tokio::runtime::Runtime,
        exe: &Path,
        neff: &Path,
        model: &str,
        flags: &[&str],
        env: &[(&str, &str)],
    ) -> Result<ServerProcess, String> {
        let mut command = Command::new(exe);
        command
            .arg("serve")
            .arg(neff)
            .args(["--model-name", model, "--host", "127.0.0.1", "--port", "0"])
            .args(flags)
            // The address is logged at info.
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (name, value) in env {
            command.env(name, value);
        }
        let shown = shown(&command);
        let unknown = Target::new(SocketAddr::from(([127, 0, 0, 1], 0)), model)?;
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot start {shown}: {e}"))?;
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let (address_tx, address_rx) = mpsc::channel::<String>();
        if let Some(stderr) = child.stderr.take() {
            let log = Arc::clone(&log);
            // Reads the log to its end (a full pipe would stall the server), keeping the
            // last lines and passing on the address line.
            let spawned = std::thread::Builder::new()
                .name("server-log".to_owned())
                .spawn(move || {
                    for line in BufReader::new(stderr).lines() {
                        let Ok(line) = line else { break };
                        if line.contains(ADDRESS_MARKER) {
                            let _ = address_tx.send(line.clone());
                        }
                        let mut log = log.lock().unwrap_or_else(PoisonError::into_inner);
                        if log.len() == KEPT_LINES {
                            log.pop_front();
                        }
                        log.push_back(line);
                    }
                });
            if let Err(e) = spawned {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "cannot start a thread to read the server's log: {e}"
                ));
            }
        }
        // From here on, dropping `server` stops the child.
        let mut server = ServerProcess {
            child,
            target: unknown,
            log,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        let line = loop {
            match address_rx.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => break line,
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {
                    if let Ok(Some(status)) = server.child.try_wait() {
                        return Err(server.failure(&format!("{shown} exited ({status})")));
                    }
                }
                Err(_) => {
                    return Err(server.failure(&format!(
                        "{shown} logged no address within {START_TIMEOUT:?}"
                    )));
                }
            }
        };
        let addr = address(&line)
            .ok_or_else(|| server.failure(&format!("no address in the log line {line:?}")))?;
        server.target = Target::new(addr, model)?;
        loop {
            let ready = runtime.block_on(client::get(&server.target, "/v2/health/ready"));
            if matches!(ready, Ok((StatusCode::OK, _))) {
                return Ok(server);
            }
            if Instant::now() >= deadline {
                return Err(server.failure(&format!("not ready within {START_TIMEOUT:?}")));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Its process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Where to send requests.
    pub(crate) fn target(&self) -> &Target {
        &self.target
    }

    /// `GET /metrics`.
    pub(crate) fn metrics(&self, runtime: &tokio::runtime::Runtime) -> Result<String, String> {
        match runtime.block_on(client::get(&self.target, "/metrics"))? {
            (StatusCode::OK, body) => String::from_utf8(body.to_vec())
                .map_err(|_| "GET /metrics is not UTF-8 text".to_owned()),
            (status, _) => Err(format!("GET /metrics answered {status}")),
        }
    }

    /// Stops the server with SIGTERM and waits for it (killing it after
    /// [`STOP_TIMEOUT`]); returns its last log line (its totals).
    ///
    /// # Errors
    ///
    /// A message when it did not exit 0 in time.
    pub(crate) fn stop(mut self) -> Result<String, String> {
        let pid = libc::pid_t::try_from(self.child.id())
            .map_err(|_| "the server's process id is out of range".to_owned())?;
        // SAFETY: `kill` has no memory effects; `pid` is our own child, not yet waited for
        // (so its id cannot have been reused).
        let sent = unsafe { libc::kill(pid, libc::SIGTERM) };
        if sent != 0 {
            return Err(self.failure("cannot send SIGTERM to the server"));
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) if status.success() => break,
                Ok(Some(status)) => {
                    return Err(self.failure(&format!("the server exited with {status}")));
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Ok(None) => {
                    return Err(self.failure(&format!(
                        "the server did not exit within {STOP_TIMEOUT:?} of SIGTERM"
                    )));
                }
                Err(e) => return Err(format!("cannot wait for the server: {e}")),
            }
        }
        // The log thread ends with the pipe; give it a moment to take the last line.
        std::thread::sleep(Duration::from_millis(50));
        Ok(self.last_lines().last().cloned().unwrap_or_default())
    }

    fn last_lines(&self) -> Vec<String> {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }

    /// `what`, with the server's last log lines.
    fn failure(&self, what: &str) -> String {
        format!(
            "{what}; the server's last log lines:\n  {}",
            self.last_lines().join("\n  ")
        )
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // A no-op after a successful `stop`; otherwise no server outlives the bench.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The address in the server's start-up line (`... on http://127.0.0.1:PORT/v2/...`).
fn address(line: &str) -> Option<SocketAddr> {
    let rest = &line[line.find(ADDRESS_MARKER)? + ADDRESS_MARKER.len()..];
    rest.split('/').next()?.parse().ok()
}

/// The command as a shell line, for messages.
fn shown(command: &Command) -> String {
    let mut parts: Vec<OsString> = vec![command.get_program().to_owned()];
    parts.extend(command.get_args().map(ToOwned::to_owned));
    parts
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}
