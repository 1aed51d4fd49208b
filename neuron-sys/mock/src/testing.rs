//! The one child-process test harness of the workspace, and where tests find the built mock.
//!
//! libnrt allows one runtime per process and reads its environment at `nrt_init`, so a test
//! that needs particular cores, faults or limits, or reads the process-wide counters, runs its
//! body in a child process. [`ChildTest`] re-executes the current test binary as
//! `<exe> <name> --exact --include-ignored --nocapture --test-threads=1` with:
//!
//! - [`CHILD`]`=<name>`, so the same test function knows it is the child ([`is_child`]);
//! - the mock and runtime variables of [`CLEARED`] removed (everything else is inherited);
//! - `NRT_DYLIB_PATH` set to [`library_path`];
//! - a private `NRT_MOCK_LOCK_DIR`, unique to this child process (two children of one test
//!   never share one), removed when the child is done; or, with
//!   [`ChildTest::sharing_locks`], a directory the test shares between children to test core
//!   ownership across processes;
//! - the variables the test adds with [`ChildTest::env`].
//!
//! A child that runs longer than its timeout ([`DEFAULT_TIMEOUT`] unless set) is killed, and
//! the outcome says so: a hang is a failure with a message, never a stuck test run.
//!
//! `--include-ignored` lets a test body that only makes sense as a child be marked
//! `#[ignore = "runs only as a child of ..."]`, so a normal run lists it as ignored instead
//! of reporting a pass for a body that never ran; such a body starts with [`child_only`].
//!
//! The common case is [`in_child`]: false in the parent (after running the child and
//! asserting it passed), true in the child, where the body runs:
//!
//! ```no_run
//! # fn body() {}
//! #[test]
//! fn runs_on_cores_12_to_23() {
//!     if !nrt_mock::testing::in_child("runs_on_cores_12_to_23", &[("NEURON_RT_VISIBLE_CORES", "12-23")]) {
//!         return;
//!     }
//!     body();
//! }
//! ```
//!
//! A test that also checks what its child printed uses [`ChildTest::run_in_parent`]:
//!
//! ```no_run
//! # fn body() {}
//! use nrt_mock::testing::ChildTest;
//!
//! #[test]
//! fn logs_the_bad_input() {
//!     if let Some(child) = ChildTest::new("logs_the_bad_input").run_in_parent() {
//!         child.assert_passed();
//!         assert!(child.stderr.contains("expects 16"), "{}", child.stderr);
//!         return;
//!     }
//!     body();
//! }
//! ```

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Marker telling a re-executed test binary which test body to run.
pub const CHILD: &str = "NRT_MOCK_TEST_CHILD";

/// Variables a child starts without (then gets what the test sets): they change what
/// `nrt_init` does, so a child must not inherit the parent's.
pub const CLEARED: &[&str] = &[
    "NEURON_RT_VISIBLE_CORES",
    "NEURON_RT_NUM_CORES",
    "NEURON_RT_EXEC_TIMEOUT",
    "NRT_MOCK_TOTAL_CORES",
    "NRT_MOCK_CORE_MEMORY",
    "NRT_MOCK_FAULTS",
    "NRT_MOCK_LOCK_DIR",
    "NRT_MOCK_RUNTIME_VERSION",
    "NRT_MOCK_DTYPE_ENCODING",
    "NRT_MOCK_STRICT_INIT",
    "NRT_MOCK_MAX_NEFF_MAJOR",
    "NRT_MOCK_CONTIGUOUS_CORES",
    "NRT_MOCK_LNC",
    "NRT_MOCK_EXEC_POLICY",
];

/// How long a child may run before it is killed, unless the test sets its own
/// ([`ChildTest::timeout`]). Generous: the limit only turns a hang into a failure.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// How long the parent waits for a finished child's output to close (a grandchild that
/// inherited the pipe could hold it open).
const OUTPUT_GRACE: Duration = Duration::from_secs(10);

/// The mock library: `$NRT_DYLIB_PATH`, else `libnrt_mock.so` in `target/<profile>/`,
/// derived from the running test executable (`target/<profile>/deps/<test>-<hash>`).
///
/// # Panics
///
/// When neither exists, with a message saying to run `cargo xtask mock-test` (tests only).
pub fn library_path() -> PathBuf {
    if let Some(path) = std::env::var_os("NRT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the test executable's path");
    let deps = exe
        .parent()
        .expect("the test executable has a parent directory");
    for dir in [deps.parent().unwrap_or(deps), deps] {
        let path = dir.join("libnrt_mock.so");
        if path.exists() {
            return path;
        }
    }
    panic!(
        "libnrt_mock.so not found next to {}: run the tests with `cargo xtask mock-test`, or \
         build the mock (`cargo xtask mock-build`) and set NRT_DYLIB_PATH",
        exe.display()
    );
}

/// True when this process is the child for test `name`.
pub fn is_child(name: &str) -> bool {
    std::env::var_os(CHILD).is_some_and(|value| value == OsStr::new(name))
}

/// The first line of a test body marked `#[ignore = "runs only as a child ..."]`: returns in
/// the child running `name`. `started_by` names the test(s) that start it.
///
/// # Panics
///
/// Anywhere else (`cargo test -- --ignored` runs such bodies too), saying what to run
/// instead: the body needs the environment its parent test gives it.
pub fn child_only(name: &str, started_by: &str) {
    assert!(
        is_child(name),
        "`{name}` runs only as a child process started by {started_by}, which sets up its \
         environment: run that instead"
    );
}

/// True in the child that must run `name`'s body; in the parent, runs that child with `env`
/// added (see [`ChildTest`]), asserts it passed, and returns false.
///
/// # Panics
///
/// In the parent, when the child failed, hung past [`DEFAULT_TIMEOUT`] or did not run the
/// test (that is the test failing).
pub fn in_child(name: &str, env: &[(&str, &str)]) -> bool {
    match ChildTest::new(name)
        .envs(env.iter().copied())
        .run_in_parent()
    {
        None => true,
        Some(outcome) => {
            outcome.assert_passed();
            false
        }
    }
}

/// A test of the current binary, to run again in a child process (see the module docs).
#[derive(Debug, Clone)]
pub struct ChildTest {
    name: String,
    env: Vec<(OsString, Option<OsString>)>,
    shared_lock_dir: Option<PathBuf>,
    timeout: Duration,
}

impl ChildTest {
    /// A child running test `name` (its full path as `cargo test` lists it, e.g. the function
    /// name for a test at the top of a test file), with a private lock directory and
    /// [`DEFAULT_TIMEOUT`].
    pub fn new(name: impl Into<String>) -> ChildTest {
        ChildTest {
            name: name.into(),
            env: Vec::new(),
            shared_lock_dir: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Sets a variable in the child's environment (after [`CLEARED`] ones are removed).
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> ChildTest {
        self.env
            .push((key.as_ref().to_owned(), Some(value.as_ref().to_owned())));
        self
    }

    /// Sets several variables in the child's environment.
    pub fn envs<K: AsRef<OsStr>, V: AsRef<OsStr>>(
        mut self,
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> ChildTest {
        for (key, value) in vars {
            self = self.env(key, value);
        }
        self
    }

    /// Removes a variable from the child's environment, including those the harness sets
    /// (`NRT_DYLIB_PATH`, for a test of choosing the library another way).
    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> ChildTest {
        self.env.push((key.as_ref().to_owned(), None));
        self
    }

    /// Uses `dir` as the child's `NRT_MOCK_LOCK_DIR` instead of a private one, so children
    /// given the same directory contend for cores as separate processes on one instance do.
    /// The caller keeps the directory alive.
    pub fn sharing_locks(mut self, dir: impl Into<PathBuf>) -> ChildTest {
        self.shared_lock_dir = Some(dir.into());
        self
    }

    /// Kills the child when it runs longer than `limit`.
    pub fn timeout(mut self, limit: Duration) -> ChildTest {
        self.timeout = limit;
        self
    }

    /// The test the child runs.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `None` in the child running this test (the caller runs the body); in the parent, runs
    /// the child and returns what it did, for the caller to assert on.
    pub fn run_in_parent(self) -> Option<ChildOutcome> {
        if is_child(&self.name) {
            None
        } else {
            Some(self.run())
        }
    }

    /// Runs the child to completion, or kills it at the timeout, and returns what it did.
    ///
    /// # Panics
    ///
    /// When the child cannot be started (tests only).
    pub fn run(self) -> ChildOutcome {
        let mut running = self.start(Stdio::null());
        running.stdin = None;
        running.finish()
    }

    /// Starts the child with its stdin piped (the child sees end-of-file when
    /// [`RunningChild::finish`] closes it) and returns at once, for a child that must stay
    /// alive while the test does something else. The timeout counts from now.
    ///
    /// # Panics
    ///
    /// When the child cannot be started (tests only).
    pub fn spawn(self) -> RunningChild {
        self.start(Stdio::piped())
    }

    fn start(self, stdin: Stdio) -> RunningChild {
        let lock_dir = match &self.shared_lock_dir {
            Some(dir) => LockDir::Shared(dir.clone()),
            None => LockDir::private(&self.name),
        };
        let exe = std::env::current_exe().expect("the test executable's path");
        let mut command = Command::new(exe);
        command.args([
            self.name.as_str(),
            "--exact",
            "--include-ignored",
            "--nocapture",
            "--test-threads=1",
        ]);
        for var in CLEARED {
            command.env_remove(var);
        }
        command
            .env("NRT_DYLIB_PATH", library_path())
            .env("NRT_MOCK_LOCK_DIR", lock_dir.path())
            .env(CHILD, &self.name);
        for (key, value) in &self.env {
            match value {
                Some(value) => command.env(key, value),
                None => command.env_remove(key),
            };
        }
        let mut child = command
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start the child test `{}`: {e}", self.name));
        let (line_tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().map(|pipe| {
            std::thread::spawn(move || {
                let mut text = String::new();
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    text.push_str(&line);
                    text.push('\n');
                    // The receiver may be gone (nobody waits for a line); keep collecting.
                    let _ = line_tx.send(line);
                }
                text
            })
        });
        let stderr = child.stderr.take().map(|mut pipe| {
            std::thread::spawn(move || {
                let mut bytes = Vec::new();
                let _ = pipe.read_to_end(&mut bytes);
                String::from_utf8_lossy(&bytes).into_owned()
            })
        });
        RunningChild {
            name: self.name,
            stdin: child.stdin.take(),
            child: Some(child),
            deadline: Instant::now() + self.timeout,
            timeout: self.timeout,
            lines,
            stdout,
            stderr,
            _lock_dir: lock_dir,
        }
    }
}

/// A child's `NRT_MOCK_LOCK_DIR`: its own (removed when the child is done) or shared.
#[derive(Debug)]
enum LockDir {
    Private(PathBuf),
    Shared(PathBuf),
}

impl LockDir {
    /// A new, empty directory for one child: the process id and a per-process counter keep
    /// it apart from every other child, including another child running the same test.
    fn private(name: &str) -> LockDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let stem: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .take(48)
            .collect();
        loop {
            let dir = std::env::temp_dir().join(format!(
                "nrt-mock-child-{}-{}-{stem}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            // `create_dir`, not `create_dir_all`: a leftover of an earlier process with the
            // same id is skipped rather than shared.
            match std::fs::create_dir(&dir) {
                Ok(()) => return LockDir::Private(dir),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => panic!("create the child's lock directory {}: {e}", dir.display()),
            }
        }
    }

    fn path(&self) -> &Path {
        match self {
            LockDir::Private(dir) | LockDir::Shared(dir) => dir,
        }
    }
}

impl Drop for LockDir {
    fn drop(&mut self) {
        if let LockDir::Private(dir) = self {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A child started by [`ChildTest::spawn`]. Dropping it kills the child if it still runs.
#[derive(Debug)]
pub struct RunningChild {
    name: String,
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    deadline: Instant,
    timeout: Duration,
    lines: Receiver<String>,
    stdout: Option<JoinHandle<String>>,
    stderr: Option<JoinHandle<String>>,
    // Dropped after the child is reaped (fields drop in order).
    _lock_dir: LockDir,
}

impl RunningChild {
    /// Waits for a line of the child's stdout containing `needle` and returns it.
    ///
    /// # Panics
    ///
    /// When the child exits or the timeout passes first; the child is killed and the
    /// message shows everything it printed.
    pub fn wait_for_line(&mut self, needle: &str) -> String {
        loop {
            let left = self.deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(why) => {
                    let what = match why {
                        RecvTimeoutError::Timeout => {
                            format!("did not print it within {:?}", self.timeout)
                        }
                        RecvTimeoutError::Disconnected => "closed its stdout first".to_owned(),
                    };
                    let outcome = self.kill_and_collect();
                    panic!("waiting for `{needle}` from the child test: it {what}\n{outcome}");
                }
            }
        }
    }

    /// Closes the child's stdin, waits for it to exit (killing it at the timeout) and
    /// returns what it did.
    pub fn finish(mut self) -> ChildOutcome {
        self.stdin = None;
        let mut child = self.child.take().expect("the child is running");
        let mut pause = Duration::from_millis(1);
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() >= self.deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
                Ok(None) => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(20));
                }
                Err(e) => panic!("wait for the child test `{}`: {e}", self.name),
            }
        };
        self.collect(status)
    }

    fn kill_and_collect(&mut self) -> ChildOutcome {
        self.stdin = None;
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let mut outcome = self.collect(None);
        outcome.timed_out = None;
        outcome.killed = true;
        outcome
    }

    fn collect(&mut self, status: Option<ExitStatus>) -> ChildOutcome {
        let grace = Instant::now() + OUTPUT_GRACE;
        ChildOutcome {
            name: self.name.clone(),
            status,
            timed_out: status.is_none().then_some(self.timeout),
            killed: status.is_none(),
            stdout: join_by(self.stdout.take(), grace),
            stderr: join_by(self.stderr.take(), grace),
        }
    }
}

impl Drop for RunningChild {
    fn drop(&mut self) {
        self.stdin = None;
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The text a pipe-reading thread collected, waiting for it no later than `deadline`.
fn join_by(reader: Option<JoinHandle<String>>, deadline: Instant) -> String {
    let Some(reader) = reader else {
        return String::new();
    };
    let mut pause = Duration::from_millis(1);
    while !reader.is_finished() {
        if Instant::now() >= deadline {
            return "(not collected: the pipe stayed open after the child ended)".to_owned();
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
    reader
        .join()
        .unwrap_or_else(|_| "(the thread reading the pipe panicked)".to_owned())
}

/// What a child test did.
#[derive(Debug, Clone)]
pub struct ChildOutcome {
    /// The test it ran.
    pub name: String,
    /// Its exit status; `None` when it was killed.
    pub status: Option<ExitStatus>,
    /// The timeout it exceeded, when that is why it was killed.
    pub timed_out: Option<Duration>,
    /// True when the harness killed it (at the timeout, or because a wait on it failed).
    pub killed: bool,
    /// Its stdout: the test harness's report and the test's prints.
    pub stdout: String,
    /// Its stderr: panic messages and the mock's log.
    pub stderr: String,
}

impl ChildOutcome {
    /// True when the child exited successfully having run exactly its one test, which
    /// passed (a name matching no test, or a test not run, is not a pass).
    pub fn passed(&self) -> bool {
        self.status.is_some_and(|status| status.success())
            && self.stdout.contains("test result: ok. 1 passed;")
    }

    /// Asserts [`passed`](Self::passed) and returns `self`.
    ///
    /// # Panics
    ///
    /// When the child did not pass, with everything it printed (and, for a hang, that it
    /// was killed at its timeout).
    pub fn assert_passed(&self) -> &ChildOutcome {
        assert!(self.passed(), "{self}");
        self
    }
}

impl fmt::Display for ChildOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.status, self.timed_out) {
            (Some(status), _) if self.passed() => {
                write!(f, "child test `{}` passed ({status})", self.name)?
            }
            (Some(status), _) if status.success() => write!(
                f,
                "child test `{}` exited successfully ({status}) without passing exactly one \
                 test: is the name the test's full path?",
                self.name
            )?,
            (Some(status), _) => write!(f, "child test `{}` failed ({status})", self.name)?,
            (None, Some(limit)) => write!(
                f,
                "child test `{}` did not finish within {limit:?} and was killed: something \
                 in it hangs (a test that needs longer sets ChildTest::timeout)",
                self.name
            )?,
            (None, None) => write!(f, "child test `{}` was killed", self.name)?,
        }
        write!(
            f,
            "\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        )
    }
}
