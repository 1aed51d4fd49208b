//! The child-process harness itself (`nrt_mock::testing`): what a child's environment is,
//! that lock directories are private per child or shared on request, and that failures,
//! hangs and tests that never ran are all reported as failures.
//!
//! The bodies the harness runs as children are `#[ignore]`d, which also shows that the
//! harness runs ignored child bodies.

use std::io::BufRead;
use std::path::Path;
use std::time::Duration;

use nrt_mock::testing::{CHILD, CLEARED, ChildTest, child_only, in_child, is_child};

/// Prints what a child sees, one `KEY=value` line each (`KEY unset` when unset).
fn report_environment() {
    // On a line of its own: with `--nocapture` the test's output follows `test NAME ... `.
    println!();
    let mut keys: Vec<&str> = CLEARED.to_vec();
    keys.extend(["NRT_DYLIB_PATH", "HARNESS_EXTRA", CHILD]);
    for key in keys {
        match std::env::var(key) {
            Ok(value) => println!("{key}={value}"),
            Err(_) => println!("{key} unset"),
        }
    }
    let dir = std::env::var("NRT_MOCK_LOCK_DIR").unwrap_or_default();
    println!("LOCK_DIR_EXISTS={}", Path::new(&dir).is_dir());
}

/// The value of `KEY=` in a report, `None` for `KEY unset`.
fn reported<'a>(report: &'a str, key: &str) -> Option<&'a str> {
    let line = report
        .lines()
        .find(|line| line.starts_with(&format!("{key}=")) || *line == format!("{key} unset"))
        .unwrap_or_else(|| panic!("no line for {key} in:\n{report}"));
    line.strip_prefix(&format!("{key}="))
}

#[test]
#[ignore = "runs only as a child process of the harness tests"]
fn reporter() {
    child_only("reporter", "the harness tests");
    report_environment();
}

#[test]
#[ignore = "runs only as a child process of the harness tests"]
fn fails_on_purpose() {
    child_only("fails_on_purpose", "the harness tests");
    panic!("a deliberate failure");
}

#[test]
#[ignore = "runs only as a child process of the harness tests"]
fn sleeps_forever() {
    child_only("sleeps_forever", "the harness tests");
    println!("SLEEPING");
    std::thread::sleep(Duration::from_secs(3600));
}

#[test]
#[ignore = "runs only as a child process of the harness tests"]
fn waits_for_stdin_to_close() {
    child_only("waits_for_stdin_to_close", "the harness tests");
    println!("\nREADY");
    let lines = std::io::stdin().lock().lines().count();
    println!("STDIN CLOSED after {lines} lines");
}

#[test]
fn a_child_gets_a_clean_runtime_environment_and_its_own_variables() {
    const NAME: &str = "a_child_gets_a_clean_runtime_environment_and_its_own_variables";
    // The child sets every cleared variable and starts a grandchild, which must see none of
    // them: a child never inherits its parent's runtime environment.
    if !in_child(
        NAME,
        &[
            ("NEURON_RT_VISIBLE_CORES", "3"),
            ("NEURON_RT_NUM_CORES", "1"),
            ("NEURON_RT_EXEC_TIMEOUT", "1"),
            ("NRT_MOCK_TOTAL_CORES", "4"),
            ("NRT_MOCK_CORE_MEMORY", "4096"),
            ("NRT_MOCK_FAULTS", "0:*:1004"),
            ("HARNESS_EXTRA", "inherited"),
        ],
    ) {
        return;
    }
    assert_eq!(std::env::var("NEURON_RT_VISIBLE_CORES").as_deref(), Ok("3"));
    let own_dir = std::env::var("NRT_MOCK_LOCK_DIR").expect("a lock directory");
    let child = ChildTest::new("reporter")
        .env("NRT_MOCK_TOTAL_CORES", "7")
        .run();
    child.assert_passed();
    let report = &child.stdout;
    for key in CLEARED {
        match *key {
            "NRT_MOCK_TOTAL_CORES" => assert_eq!(reported(report, key), Some("7"), "{report}"),
            "NRT_MOCK_LOCK_DIR" => {
                let dir = reported(report, key).expect("a lock directory");
                assert_ne!(dir, own_dir, "the grandchild has a directory of its own");
            }
            _ => assert_eq!(reported(report, key), None, "{key}: {report}"),
        }
    }
    // Other variables are inherited; the library and the marker are the harness's.
    assert_eq!(reported(report, "HARNESS_EXTRA"), Some("inherited"));
    assert_eq!(
        reported(report, "NRT_DYLIB_PATH").map(Path::new),
        Some(nrt_mock::testing::library_path().as_path())
    );
    assert_eq!(reported(report, CHILD), Some("reporter"));
}

#[test]
fn children_running_the_same_test_at_once_get_separate_lock_directories() {
    let reports: Vec<String> = std::thread::scope(|s| {
        let runs: Vec<_> = (0..2)
            .map(|_| s.spawn(|| ChildTest::new("reporter").run()))
            .collect();
        runs.into_iter()
            .map(|run| {
                let child = run.join().expect("the thread ran the child");
                child.assert_passed();
                child.stdout
            })
            .collect()
    });
    let dirs: Vec<&str> = reports
        .iter()
        .map(|report| {
            assert_eq!(
                reported(report, "LOCK_DIR_EXISTS"),
                Some("true"),
                "{report}"
            );
            reported(report, "NRT_MOCK_LOCK_DIR").expect("a lock directory")
        })
        .collect();
    assert_ne!(dirs[0], dirs[1], "one directory per child process");
    for dir in dirs {
        assert!(!Path::new(dir).exists(), "{dir} is removed after the child");
    }
}

#[test]
fn sharing_locks_gives_the_child_that_directory_and_leaves_it() {
    let shared = tempfile::tempdir().expect("a directory");
    let child = ChildTest::new("reporter")
        .sharing_locks(shared.path())
        .run();
    child.assert_passed();
    assert_eq!(
        reported(&child.stdout, "NRT_MOCK_LOCK_DIR").map(Path::new),
        Some(shared.path())
    );
    assert!(shared.path().is_dir(), "a shared directory is the caller's");
}

#[test]
fn env_remove_takes_away_even_the_harness_variables() {
    let child = ChildTest::new("reporter")
        .env("HARNESS_EXTRA", "set")
        .env_remove("NRT_DYLIB_PATH")
        .env_remove("HARNESS_EXTRA")
        .run();
    child.assert_passed();
    assert_eq!(reported(&child.stdout, "NRT_DYLIB_PATH"), None);
    assert_eq!(reported(&child.stdout, "HARNESS_EXTRA"), None);
}

#[test]
fn a_failing_child_is_a_failure_with_its_output() {
    let child = ChildTest::new("fails_on_purpose").run();
    assert!(!child.passed());
    assert!(child.status.is_some_and(|s| !s.success()), "{child}");
    assert!(!child.killed);
    assert!(child.stderr.contains("a deliberate failure"), "{child}");
    let text = child.to_string();
    assert!(
        text.contains("child test `fails_on_purpose` failed"),
        "{text}"
    );
    let panic = std::panic::catch_unwind(|| {
        child.assert_passed();
    });
    assert!(panic.is_err(), "assert_passed panics on a failed child");
}

#[test]
fn a_name_matching_no_test_is_not_a_pass() {
    let child = ChildTest::new("no_test_has_this_name").run();
    assert!(child.status.is_some_and(|s| s.success()), "{child}");
    assert!(!child.passed(), "{child}");
    assert!(
        child
            .to_string()
            .contains("without passing exactly one test")
    );
}

#[test]
fn a_hanging_child_is_killed_at_its_timeout_and_reported() {
    let child = ChildTest::new("sleeps_forever")
        .timeout(Duration::from_secs(2))
        .run();
    assert!(!child.passed());
    assert!(child.killed);
    assert_eq!(child.status, None);
    assert_eq!(child.timed_out, Some(Duration::from_secs(2)));
    // What it printed before it hung is kept.
    assert!(child.stdout.contains("SLEEPING"), "{child}");
    let text = child.to_string();
    assert!(
        text.contains("did not finish within 2s and was killed"),
        "{text}"
    );
}

#[test]
fn a_spawned_child_runs_until_its_stdin_closes() {
    let mut child = ChildTest::new("waits_for_stdin_to_close").spawn();
    assert!(child.wait_for_line("READY").contains("READY"));
    let outcome = child.finish();
    outcome.assert_passed();
    assert!(
        outcome.stdout.contains("STDIN CLOSED after 0 lines"),
        "{outcome}"
    );
}

#[test]
fn waiting_for_a_line_a_child_never_prints_fails_and_kills_it() {
    let mut child = ChildTest::new("sleeps_forever")
        .timeout(Duration::from_secs(2))
        .spawn();
    let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        child.wait_for_line("NEVER PRINTED");
    }));
    let message = panic.expect_err("the wait fails");
    let text = message
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(text.contains("did not print it within 2s"), "{text}");
    assert!(
        text.contains("SLEEPING"),
        "the output so far is shown: {text}"
    );
}

#[test]
fn the_parent_is_not_a_child() {
    assert!(!is_child("the_parent_is_not_a_child"));
    let panic = std::panic::catch_unwind(|| child_only("reporter", "the harness tests"));
    assert!(
        panic.is_err(),
        "a child-only body refuses to run in the parent"
    );
}
