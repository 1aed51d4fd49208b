//! The results: a plain-text table per scenario, the targets met or missed, and the same data
//! as JSON.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::BoxResult;
use crate::common::Ctx;

/// One scenario's table.
struct Section {
    title: String,
    columns: Vec<String>,
    rows: Vec<Vec<String>>,
    notes: Vec<String>,
}

/// A performance target and whether this run met it.
struct Target {
    name: String,
    measured: String,
    wanted: String,
    met: bool,
    /// The best this machine and mock allow, measured in the same run with no engine.
    ceiling: Option<String>,
}

/// Everything a run found.
pub(crate) struct Report {
    machine: Value,
    sections: Vec<Section>,
    targets: Vec<Target>,
    results: Vec<Value>,
    elapsed: Duration,
}

impl Report {
    pub(crate) fn new(ctx: &Ctx) -> Report {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|text| {
                text.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split(':').nth(1))
                    .map(|m| m.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".to_owned());
        let machine = json!({
            "cpus": std::thread::available_parallelism().map_or(0, usize::from),
            "cpu_model": cpu,
            "load_at_start": loadavg(),
            "date_utc": utc_now(),
            "mode": format!("{:?}", ctx.mode).to_lowercase(),
            "visible_cores": ctx.runtime.visible_cores(),
            "mock": ctx.runtime.library_path().display().to_string(),
            "runtime_version": ctx.runtime.version().to_string(),
        });
        Report {
            machine,
            sections: Vec::new(),
            targets: Vec::new(),
            results: Vec::new(),
            elapsed: Duration::ZERO,
        }
    }

    /// Starts a table.
    pub(crate) fn section(&mut self, title: &str, columns: &[&str]) {
        eprintln!("suite: {title}");
        self.sections.push(Section {
            title: title.to_owned(),
            columns: columns.iter().map(|c| (*c).to_owned()).collect(),
            rows: Vec::new(),
            notes: Vec::new(),
        });
    }

    /// Adds a row to the current table and its JSON record.
    pub(crate) fn row(&mut self, cells: Vec<String>, record: Value) {
        if let Some(section) = self.sections.last_mut() {
            eprintln!("suite:   {}", cells.join("  "));
            section.rows.push(cells);
        }
        self.results.push(record);
    }

    /// A line of explanation under the current table.
    pub(crate) fn note(&mut self, note: impl Into<String>) {
        if let Some(section) = self.sections.last_mut() {
            section.notes.push(note.into());
        }
    }

    /// Records a target.
    pub(crate) fn target(&mut self, name: &str, measured: String, wanted: &str, met: bool) {
        self.targets.push(Target {
            name: name.to_owned(),
            measured,
            wanted: wanted.to_owned(),
            met,
            ceiling: None,
        });
    }

    /// Adds to the last target the best value reachable on this machine with no engine at
    /// all, measured in the same run (shown beside a missed target as the ceiling it meets).
    pub(crate) fn ceiling(&mut self, ceiling: String) {
        if let Some(target) = self.targets.last_mut() {
            target.ceiling = Some(ceiling);
        }
    }

    pub(crate) fn set_elapsed(&mut self, elapsed: Duration) {
        self.elapsed = elapsed;
    }

    /// Every table as Markdown, then the targets.
    pub(crate) fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\nmachine: {} CPUs, {}; load at start {}; {} UTC; mode {}; suite took {:.0} s",
            self.machine["cpus"],
            self.machine["cpu_model"].as_str().unwrap_or("?"),
            self.machine["load_at_start"].as_str().unwrap_or("?"),
            self.machine["date_utc"].as_str().unwrap_or("?"),
            self.machine["mode"].as_str().unwrap_or("?"),
            self.elapsed.as_secs_f64()
        );
        for section in &self.sections {
            let _ = writeln!(out, "\n### {}\n", section.title);
            let _ = writeln!(out, "| {} |", section.columns.join(" | "));
            let _ = writeln!(
                out,
                "|{}",
                section.columns.iter().map(|_| "---|").collect::<String>()
            );
            for row in &section.rows {
                let _ = writeln!(out, "| {} |", row.join(" | "));
            }
            for note in &section.notes {
                let _ = writeln!(out, "\n{note}");
            }
        }
        let _ = writeln!(out, "\n### Targets\n");
        let _ = writeln!(
            out,
            "| target | measured | wanted | | ceiling on this machine (no engine) |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|");
        for t in &self.targets {
            let verdict = if t.met { "met" } else { "MISSED" };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {verdict} | {} |",
                t.name,
                t.measured,
                t.wanted,
                t.ceiling.as_deref().unwrap_or("")
            );
        }
        out
    }

    /// Writes the JSON results to `path` (creating its directory).
    pub(crate) fn write_json(&mut self, path: &Path) -> BoxResult {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        self.machine["load_at_end"] = Value::from(loadavg());
        self.machine["elapsed_s"] = Value::from(self.elapsed.as_secs_f64());
        let targets: Vec<Value> = self
            .targets
            .iter()
            .map(|t| {
                json!({"target": t.name, "measured": t.measured, "wanted": t.wanted, "met": t.met, "ceiling": t.ceiling})
            })
            .collect();
        let doc = json!({
            "machine": self.machine,
            "results": self.results,
            "targets": targets,
        });
        std::fs::write(path, serde_json::to_string_pretty(&doc)? + "\n")?;
        Ok(())
    }
}

/// The 1, 5 and 15 minute load averages.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// Now as `YYYY-MM-DD HH:MM`, UTC.
fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60
    )
}
