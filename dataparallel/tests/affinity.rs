//! CPU pinning (`Config::pin_cpus`): every worker thread ends up allowed on exactly one of
//! the CPUs the process may use, worker `w` on the `w % n`-th of them; without pinning the
//! workers keep the process's whole set. Read back from `/proc/self/task/*/status`.
//!
//! Each scenario runs in a child process of its own, so no other test's (unpinned) workers
//! are among the threads it inspects.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{affine_model, cores, engine, neff};
use nrt_mock::testing::in_child;

/// How long workers get to pin themselves as they start (a hang guard, not a timing check).
const HANG_GUARD: Duration = Duration::from_secs(60);

/// A CPU list as Linux prints it (`0-3,8,10-11`), as a set.
fn cpu_list(text: &str) -> BTreeSet<usize> {
    let mut cpus = BTreeSet::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        let (first, last) = part.split_once('-').unwrap_or((part, part));
        let first: usize = first.parse().expect("a CPU number");
        let last: usize = last.parse().expect("a CPU number");
        cpus.extend(first..=last);
    }
    cpus
}

/// The `Cpus_allowed_list` of a `/proc/.../status` file.
fn allowed(status_path: &str) -> BTreeSet<usize> {
    let status = std::fs::read_to_string(status_path).expect("read a /proc status file");
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .expect("Cpus_allowed_list in the status file");
    cpu_list(line)
}

/// Each engine worker thread of this process (named `neuron-dp-w<w>-nc<core>`, which the
/// kernel cuts to 15 bytes) with its worker index and allowed CPUs.
fn workers() -> Vec<(usize, BTreeSet<usize>)> {
    let mut found = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").expect("list this process's threads") {
        let dir = task.expect("a thread entry").path();
        let Ok(comm) = std::fs::read_to_string(dir.join("comm")) else {
            continue; // the thread ended meanwhile
        };
        let Some(rest) = comm.trim().strip_prefix("neuron-dp-w") else {
            continue;
        };
        let index: usize = rest
            .split('-')
            .next()
            .and_then(|w| w.parse().ok())
            .expect("a worker index in the thread name");
        found.push((index, allowed(&dir.join("status").to_string_lossy())));
    }
    found.sort();
    found
}

#[test]
fn pinned_workers_each_get_one_allowed_cpu_in_turn() {
    if !in_child("pinned_workers_each_get_one_allowed_cpu_in_turn", &[]) {
        return;
    }
    let process: Vec<usize> = allowed("/proc/self/status").into_iter().collect();
    let engine = engine(
        &neff(affine_model(1, 4, 2.0, 1.0)),
        cores(3).num_workers(5).pin_cpus(true),
    );
    assert_eq!(engine.num_workers(), 5);
    // Workers pin themselves first thing after they start: wait until all five have.
    let deadline = Instant::now() + HANG_GUARD;
    let workers = loop {
        let workers = workers();
        if workers.len() == 5 && workers.iter().all(|(_, cpus)| cpus.len() == 1) {
            break workers;
        }
        assert!(
            Instant::now() < deadline,
            "workers not pinned within {HANG_GUARD:?}: {workers:?} (process CPUs {process:?})"
        );
        std::thread::yield_now();
    };
    for (w, cpus) in &workers {
        let expected = BTreeSet::from([process[w % process.len()]]);
        assert_eq!(cpus, &expected, "worker {w} (process CPUs {process:?})");
    }
}

#[test]
fn unpinned_workers_keep_the_process_cpus() {
    if !in_child("unpinned_workers_keep_the_process_cpus", &[]) {
        return;
    }
    let process = allowed("/proc/self/status");
    let engine = engine(&neff(affine_model(1, 4, 2.0, 1.0)), cores(2));
    // Threads inherit the creator's set when spawned, but each names itself only once it
    // runs: wait until every worker is visible by name.
    let deadline = Instant::now() + HANG_GUARD;
    let workers = loop {
        let workers = workers();
        if workers.len() == engine.num_workers() {
            break workers;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} workers named within {HANG_GUARD:?}",
            workers.len(),
            engine.num_workers()
        );
        std::thread::yield_now();
    };
    for (w, cpus) in &workers {
        assert_eq!(cpus, &process, "worker {w}");
    }
}
