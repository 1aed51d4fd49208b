//! `neuron-dp info`: which libnrt was loaded, its version, the cores this process owns
//! (logical → physical, with the logical-core size: trn2 groups two physical cores into one
//! logical core by default) and the Neuron environment settings in effect.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use neuron_rt::{CoreMap, DeviceId};
use serde::Serialize;

use crate::CliResult;
use crate::args::InfoArgs;
use crate::report::{SCHEMA, print_json, print_text};

/// The variables always shown (null / "unset" when unset); `NRT_MOCK_*` ones are shown when
/// set.
const ENV_VARS: [&str; 4] = [
    "NEURON_RT_VISIBLE_CORES",
    "NEURON_RT_NUM_CORES",
    "NEURON_RT_EXEC_TIMEOUT",
    "NRT_DYLIB_PATH",
];

/// One logical core and the physical cores behind it.
#[derive(Debug, Serialize)]
struct CorePair {
    logical: u32,
    /// The first physical core.
    physical: u32,
    /// Every physical core (`lnc` of them).
    physical_cores: Vec<u32>,
}

/// What `info --json` prints.
#[derive(Debug, Serialize)]
struct InfoReport {
    schema: &'static str,
    command: &'static str,
    library: String,
    runtime_version: String,
    mock: bool,
    /// Physical cores per logical core (1, or 2 under trn2's default LNC=2).
    lnc: u32,
    /// Logical cores on the instance.
    total_cores: u32,
    total_physical_cores: u32,
    /// Logical cores this process owns.
    visible_cores: u32,
    visible_physical_cores: u32,
    /// `None` when `NEURON_RT_NUM_CORES` let the runtime choose (it does not say which).
    core_map: Option<Vec<CorePair>>,
    env: BTreeMap<String, Option<String>>,
}

fn environment() -> BTreeMap<String, Option<String>> {
    let mut env: BTreeMap<String, Option<String>> = ENV_VARS
        .iter()
        .map(|&name| {
            let value = std::env::var_os(name).map(|v| v.to_string_lossy().into_owned());
            (name.to_owned(), value)
        })
        .collect();
    for (name, value) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("NRT_MOCK_") {
            env.insert(
                name.into_owned(),
                Some(value.to_string_lossy().into_owned()),
            );
        }
    }
    env
}

/// The subcommand.
pub(crate) fn run(args: &InfoArgs) -> CliResult {
    let runtime = crate::runtime()?;
    let core_map = match runtime.core_map() {
        CoreMap::Known(cores) => Some(
            (0..cores.len())
                .filter_map(|logical| {
                    let physical = runtime.physical_cores(DeviceId::new(logical))?;
                    Some(CorePair {
                        logical,
                        physical: physical.start,
                        physical_cores: physical.collect(),
                    })
                })
                .collect(),
        ),
        _ => None,
    };
    let report = InfoReport {
        schema: SCHEMA,
        command: "info",
        library: runtime.library_path().display().to_string(),
        runtime_version: runtime.version().to_string(),
        mock: runtime.version().is_mock(),
        lnc: runtime.lnc(),
        total_cores: runtime.total_cores(),
        total_physical_cores: runtime.total_physical_cores(),
        visible_cores: runtime.visible_cores(),
        visible_physical_cores: runtime.visible_cores().saturating_mul(runtime.lnc()),
        core_map,
        env: environment(),
    };
    if args.json {
        return print_json(&report);
    }
    print_text(&text(&report))
}

fn text(report: &InfoReport) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "library        {}", report.library);
    let _ = writeln!(
        text,
        "runtime        libnrt {}{}",
        report.runtime_version,
        if report.mock { " [mock]" } else { "" }
    );
    if report.lnc == 1 {
        let _ = writeln!(
            text,
            "cores          {} visible of {} total",
            report.visible_cores, report.total_cores
        );
    } else {
        let _ = writeln!(
            text,
            "cores          {} visible of {} total logical cores (LNC {}: {} of {} physical cores)",
            report.visible_cores,
            report.total_cores,
            report.lnc,
            report.visible_physical_cores,
            report.total_physical_cores
        );
    }
    match &report.core_map {
        Some(pairs) => {
            let _ = writeln!(text, "core map       logical -> physical");
            for chunk in pairs.chunks(8) {
                let row: Vec<String> = chunk
                    .iter()
                    .map(|p| match p.physical_cores.as_slice() {
                        [first, .., last] => format!("nc:{} -> {first}-{last}", p.logical),
                        _ => format!("nc:{} -> {}", p.logical, p.physical),
                    })
                    .collect();
                let _ = writeln!(text, "               {}", row.join(", "));
            }
        }
        None => {
            let _ = writeln!(
                text,
                "core map       chosen by the runtime (NEURON_RT_NUM_CORES); physical cores unknown"
            );
        }
    }
    let _ = writeln!(text, "environment");
    for (name, value) in &report.env {
        let _ = writeln!(
            text,
            "  {name:<24} {}",
            value.as_deref().unwrap_or("(unset)")
        );
    }
    text
}
