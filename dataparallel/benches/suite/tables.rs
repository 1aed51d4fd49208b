//! The tables of a benchmark run: titled sections of rows with notes under them, logged as
//! rows arrive and rendered as Markdown at the end, and each row's JSON record. Shared by the
//! engine suite and the HTTP load bench (`dataparallel/server/benches/http_load.rs` includes
//! this file by path), so both print and record their results the same way.

use std::fmt::Write as _;

use serde_json::Value;

/// One table.
#[derive(Debug)]
struct Section {
    title: String,
    columns: Vec<String>,
    rows: Vec<Vec<String>>,
    notes: Vec<String>,
}

/// Every table of a run and the JSON record of every row.
#[derive(Debug)]
pub(crate) struct Tables {
    /// Prefixes the progress lines on stderr (`suite`, `http_load`).
    tag: &'static str,
    sections: Vec<Section>,
    results: Vec<Value>,
}

impl Tables {
    pub(crate) fn new(tag: &'static str) -> Tables {
        Tables {
            tag,
            sections: Vec::new(),
            results: Vec::new(),
        }
    }

    /// Starts a table.
    pub(crate) fn section(&mut self, title: &str, columns: &[&str]) {
        eprintln!("{}: {title}", self.tag);
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
            eprintln!("{}:   {}", self.tag, cells.join("  "));
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

    /// Appends every table to `out` as Markdown, each with its notes.
    pub(crate) fn markdown(&self, out: &mut String) {
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
    }

    /// Every row's JSON record, in order.
    pub(crate) fn results(&self) -> &[Value] {
        &self.results
    }
}
