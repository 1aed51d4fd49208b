//! The results: a Markdown table per section with notes, printed at the end, and the same
//! rows as JSON with the machine, its load before and after, and the date.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::machine::{self, loadavg};
use crate::tables::Tables;

/// Everything a run found.
#[derive(Debug)]
pub(crate) struct Report {
    machine: Value,
    tables: Tables,
}

impl Report {
    /// A report of a run described by `setup` (merged into its machine record).
    pub(crate) fn new(setup: Value) -> Report {
        let mut machine = machine::describe();
        if let (Some(machine), Value::Object(setup)) = (machine.as_object_mut(), setup) {
            machine.extend(setup);
        }
        Report {
            machine,
            tables: Tables::new("http_load"),
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

    /// Every table as Markdown, after a line on the machine and the run.
    pub(crate) fn table(&self, elapsed: Duration) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\nmachine: {} CPUs, {}; load at start {}, now {}; {} UTC; took {:.0} s",
            self.machine["cpus"],
            self.machine["cpu_model"].as_str().unwrap_or("?"),
            self.machine["load_at_start"].as_str().unwrap_or("?"),
            loadavg(),
            self.machine["date_utc"].as_str().unwrap_or("?"),
            elapsed.as_secs_f64()
        );
        self.tables.markdown(&mut out);
        out
    }

    /// Writes the JSON results to `path` (creating its directory).
    ///
    /// # Errors
    ///
    /// A message when the file cannot be written.
    pub(crate) fn write_json(&mut self, path: &Path, elapsed: Duration) -> Result<(), String> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        self.machine["load_at_end"] = Value::from(loadavg());
        self.machine["elapsed_s"] = Value::from(elapsed.as_secs_f64());
        let doc = json!({"machine": self.machine, "results": self.tables.results()});
        let text = serde_json::to_string_pretty(&doc)
            .map_err(|e| format!("cannot encode the results: {e}"))?;
        std::fs::write(path, text + "\n")
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
    }
}
