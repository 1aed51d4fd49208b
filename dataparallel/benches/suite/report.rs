//! The results: a plain-text table per scenario, the targets met or missed, and the same data
//! as JSON.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::BoxResult;
use crate::common::Ctx;
use crate::machine::{self, loadavg};
use crate::tables::Tables;

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
    tables: Tables,
    targets: Vec<Target>,
    elapsed: Duration,
}

impl Report {
    pub(crate) fn new(ctx: &Ctx) -> Report {
        let mut machine = machine::describe();
        if let Some(record) = machine.as_object_mut() {
            record.extend([
                (
                    "mode".to_owned(),
                    json!(format!("{:?}", ctx.mode).to_lowercase()),
                ),
                (
                    "visible_cores".to_owned(),
                    json!(ctx.runtime.visible_cores()),
                ),
                (
                    "mock".to_owned(),
                    json!(ctx.runtime.library_path().display().to_string()),
                ),
                (
                    "runtime_version".to_owned(),
                    json!(ctx.runtime.version().to_string()),
                ),
            ]);
        }
        Report {
            machine,
            tables: Tables::new("suite"),
            targets: Vec::new(),
            elapsed: Duration::ZERO,
        }
    }

    /// Starts a table.
    pub(crate) fn section(&mut self, title: &str, columns: &[&str]) {
        self.tables.section(title, columns);
    }

    /// Adds a row to the current table and its JSON record.
    pub(crate) fn row(&mut self, cells: Vec<String>, record: Value) {
        self.tables.row(cells, record);
    }

    /// A line of explanation under the current table.
    pub(crate) fn note(&mut self, note: impl Into<String>) {
        self.tables.note(note);
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
        self.tables.markdown(&mut out);
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
            "results": self.tables.results(),
            "targets": targets,
        });
        std::fs::write(path, serde_json::to_string_pretty(&doc)? + "\n")?;
        Ok(())
    }
}
