//! Exclusive ownership of physical cores across processes.
//!
//! This module owns the per-core lock files: `<dir>/nc<PHYS>.lock` under `NRT_MOCK_LOCK_DIR`
//! (default `<temp>/nrt-mock-locks`), each write-locked with a POSIX record lock
//! (`fcntl(F_SETLK)`). A lock lives as long as its open file: it is released by `nrt_close`
//! (dropping [`CoreLocks`]) or by the kernel when the process exits, however it exits.
//!
//! Record locks belong to the process, not to the open file: a child being forked by this
//! process (a test spawning a helper, say) does not share them in the instant between fork
//! and exec. `flock` locks are shared that way, so a close-then-init that happened during a
//! sibling thread's spawn found its own cores still held and failed with `NRT_RESOURCE`.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Locks held on physical cores; dropping it releases them.
#[derive(Debug)]
pub(crate) struct CoreLocks {
    _files: Vec<File>,
}

/// The lock directory: `NRT_MOCK_LOCK_DIR`, else `<temp>/nrt-mock-locks`.
pub(crate) fn lock_dir() -> PathBuf {
    std::env::var_os("NRT_MOCK_LOCK_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("nrt-mock-locks"))
}

/// Tries to lock one core: `Ok(Some(file))` when taken, `Ok(None)` when another process holds it.
fn try_lock(dir: &Path, phys: u32) -> io::Result<Option<File>> {
    let path = dir.join(format!("nc{phys}.lock"));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    // SAFETY: all-zero bytes are a valid `struct flock`; the fields that matter are set next.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = libc::F_WRLCK as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    lock.l_start = 0;
    lock.l_len = 0; // the whole file
    // SAFETY: F_SETLK takes a descriptor and a pointer to a `struct flock` it only reads; the
    // descriptor is valid because `file` is open, and `lock` outlives the call.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLK, &lock) };
    if rc == 0 {
        return Ok(Some(file));
    }
    let err = io::Error::last_os_error();
    if matches!(err.raw_os_error(), Some(libc::EACCES | libc::EAGAIN)) {
        Ok(None)
    } else {
        Err(io::Error::new(
            err.kind(),
            format!("lock {}: {err}", path.display()),
        ))
    }
}

/// Formats a core list like libnrt: `nc3-nc5` for a contiguous run, else `nc1,nc3`.
fn describe(cores: &[u32]) -> String {
    match cores {
        [] => "none".into(),
        [first, .., last] if cores.windows(2).all(|w| w[1] == w[0] + 1) => {
            format!("nc{first}-nc{last}")
        }
        [one] => format!("nc{one}-nc{one}"),
        _ => cores
            .iter()
            .map(|c| format!("nc{c}"))
            .collect::<Vec<_>>()
            .join(","),
    }
}

/// Why cores could not be locked: a message for the log.
pub(crate) type LockError = String;

fn prepare(dir: &Path) -> Result<(), LockError> {
    std::fs::create_dir_all(dir).map_err(|e| {
        format!(
            "cannot create the core lock directory {} ({e}); set NRT_MOCK_LOCK_DIR to a writable directory",
            dir.display()
        )
    })
}

/// Counts the cores among `0..total` that nobody holds (probing each lock briefly).
fn count_free(dir: &Path, total: u32) -> usize {
    (0..total)
        .filter(|&c| matches!(try_lock(dir, c), Ok(Some(_))))
        .count()
}

/// Locks exactly `cores`, or none of them.
pub(crate) fn acquire_exact(dir: &Path, cores: &[u32], total: u32) -> Result<CoreLocks, LockError> {
    prepare(dir)?;
    let mut files = Vec::with_capacity(cores.len());
    let mut busy = Vec::new();
    for &c in cores {
        match try_lock(dir, c) {
            Ok(Some(f)) => files.push(f),
            Ok(None) => busy.push(c),
            Err(e) => return Err(format!("cannot lock NeuronCore {c}: {e}")),
        }
    }
    if busy.is_empty() {
        return Ok(CoreLocks { _files: files });
    }
    drop(files);
    let available = count_free(dir, total);
    Err(format!(
        "NeuronCore(s) not available - Requested:{} Available:{available} (busy: {}, owned by \
         another process; lock files in {})",
        describe(cores),
        describe(&busy),
        dir.display()
    ))
}

/// Locks the first `n` free cores among `0..total`, ascending.
pub(crate) fn acquire_any(
    dir: &Path,
    n: u32,
    total: u32,
    lnc: u32,
) -> Result<(Vec<u32>, CoreLocks), LockError> {
    prepare(dir)?;
    let lnc = lnc.max(1);
    let mut files = Vec::new();
    let mut groups = Vec::new();
    for g in 0..total / lnc {
        if groups.len() == n as usize {
            break;
        }
        // A logical core is free only when all its physical cores are.
        let mut held = Vec::new();
        for c in g * lnc..g * lnc + lnc {
            match try_lock(dir, c) {
                Ok(Some(f)) => held.push(f),
                Ok(None) => break,
                Err(e) => return Err(format!("cannot lock NeuronCore {c}: {e}")),
            }
        }
        if held.len() == lnc as usize {
            files.extend(held);
            groups.push(g);
        }
    }
    if groups.len() == n as usize {
        return Ok((groups, CoreLocks { _files: files }));
    }
    let available = groups.len();
    Err(format!(
        "NeuronCore(s) not available - Requested:{n} cores Available:{available} (the others are \
         owned by other processes; lock files in {})",
        dir.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_like_libnrt() {
        assert_eq!(describe(&[1]), "nc1-nc1");
        assert_eq!(describe(&[3, 4, 5]), "nc3-nc5");
        assert_eq!(describe(&[1, 3]), "nc1,nc3");
    }
}
