//! CPU time of a process (user + system, every thread), from `/proc/<pid>/stat`: what a
//! run cost the server, the generator, or the in-process batcher, per request. On a
//! machine whose CPUs the generator and the server share, this is what they compete for.

use std::time::Duration;

/// `pid`'s CPU time so far (`None`: this process), or `None` when `/proc` cannot tell.
pub(crate) fn cpu_time(pid: Option<u32>) -> Option<Duration> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let stat = std::fs::read_to_string(path).ok()?;
    let ticks = parse_ticks(&stat)?;
    // SAFETY: `sysconf` reads a configuration value; it has no memory effects.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let per_second = u64::try_from(per_second).ok().filter(|&t| t > 0)?;
    Some(Duration::from_secs_f64(ticks as f64 / per_second as f64))
}

/// utime + stime, in clock ticks, from the text of a `/proc/<pid>/stat`.
pub(crate) fn parse_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may hold spaces and ')': the fields
    // after the last ')' start at field 3; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    utime.checked_add(stime)
}
