//! The results: a Markdown table per section with notes, printed at the end, and the same
//! rows as JSON with the machine, its load before and after, and the date.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::machine::{self, loadavg};

/// One table.
#[derive(Debug)]
struct Section {
    title: String,
    columns: Vec<String>,
    rows: Vec<Vec<String>>,
    notes: Vec<String>,
}

/// Everything a run found.
#[derive(Debug)]
pub(crate) struct Report {
    machine: Value,
    sections: Vec<Section>,
    results: Vec<Value>,
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
            sections: Vec::new(),
            results: Vec::new(),
        }
    }

    /// Starts a table.
    pub(crate) fn section(&mut self, title: &str, columns: &[&str]) {
        eprintln!("http_load: {title}");
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
            eprintln!("http_load:   {}", cells.join("  "));
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
        let doc = json!({"machine": self.machine, "results": self.results});
        let text = serde_json::to_string_pretty(&doc)
            .map_err(|e| format!("cannot encode the results: {e}"))?;
        std::fs::write(path, text + "\n")
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
    }
}
