//! Injected execution faults.
//!
//! This module owns the fault rules (`NRT_MOCK_FAULTS`, or `nrt_mock_set_faults` at run time)
//! and the per-physical-core count of executions they are matched against. A rule
//! `PHYS_CORE:NTH:STATUS` makes the NTH execution (1-based, counted since the rules were set)
//! on that physical core return STATUS; `*` as NTH matches every execution; `hang` as STATUS
//! sleeps past the execution timeout and returns `NRT_TIMEOUT`. Rules are `;`-separated; empty
//! segments (e.g. a trailing `;`) are ignored. The first matching rule wins. The rules are
//! process-wide: they survive `nrt_close` and are replaced by the next `nrt_init` only when
//! `NRT_MOCK_FAULTS` is set.

use std::sync::Mutex;

use neuron_sys::bindings::NRT_STATUS;

use crate::counters::NRT_MOCK_MAX_CORES;
use crate::state::lock;

/// What a matching rule does to the execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FaultAction {
    /// Return this status without computing.
    Status(NRT_STATUS),
    /// Sleep past the timeout, then return `NRT_TIMEOUT`.
    Hang,
}

/// One parsed rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FaultRule {
    core: u32,
    /// `None` = every execution.
    nth: Option<u64>,
    action: FaultAction,
}

struct FaultState {
    rules: Vec<FaultRule>,
    seen: [u64; NRT_MOCK_MAX_CORES],
}

static FAULTS: Mutex<FaultState> = Mutex::new(FaultState {
    rules: Vec::new(),
    seen: [0; NRT_MOCK_MAX_CORES],
});

/// Parses a rule list; the error names the bad rule and the accepted form.
pub(crate) fn parse_rules(text: &str) -> Result<Vec<FaultRule>, String> {
    let mut rules = Vec::new();
    for raw in text.split(';') {
        let rule = raw.trim();
        if rule.is_empty() {
            continue;
        }
        let bad = |why: &str| {
            format!(
                "fault rule {rule:?} is invalid: {why}; expected PHYS_CORE:NTH:STATUS with NTH a \
                 1-based count or `*` and STATUS a number or `hang`, e.g. `3:2:1004;0:*:hang`"
            )
        };
        let parts: Vec<&str> = rule.split(':').map(str::trim).collect();
        let [core, nth, status] = parts[..] else {
            return Err(bad("it needs three ':'-separated fields"));
        };
        let core: u32 = core
            .parse()
            .map_err(|_| bad("PHYS_CORE is not a core index"))?;
        if core as usize >= NRT_MOCK_MAX_CORES {
            return Err(bad(&format!(
                "PHYS_CORE must be below {NRT_MOCK_MAX_CORES}"
            )));
        }
        let nth = match nth {
            "*" => None,
            n => match n.parse::<u64>() {
                Ok(n) if n >= 1 => Some(n),
                _ => return Err(bad("NTH must be `*` or a count starting at 1")),
            },
        };
        let action = match status {
            "hang" => FaultAction::Hang,
            s => FaultAction::Status(
                s.parse()
                    .map_err(|_| bad("STATUS is not a number or `hang`"))?,
            ),
        };
        rules.push(FaultRule { core, nth, action });
    }
    Ok(rules)
}

/// Replaces the rules and restarts the execution counts.
pub(crate) fn install(rules: Vec<FaultRule>) {
    let mut st = lock(&FAULTS);
    st.rules = rules;
    st.seen = [0; NRT_MOCK_MAX_CORES];
}

/// Counts one execution on `phys` and returns the fault it must suffer, if any.
pub(crate) fn on_execution(phys: u32) -> Option<FaultAction> {
    let mut st = lock(&FAULTS);
    let seen = st.seen.get_mut(phys as usize)?;
    *seen += 1;
    let n = *seen;
    st.rules
        .iter()
        .find(|r| r.core == phys && r.nth.is_none_or(|k| k == n))
        .map(|r| r.action)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_rules() {
        let r = parse_rules("3:2:1004; 0:*:hang;").unwrap();
        assert_eq!(
            r,
            vec![
                FaultRule {
                    core: 3,
                    nth: Some(2),
                    action: FaultAction::Status(1004)
                },
                FaultRule {
                    core: 0,
                    nth: None,
                    action: FaultAction::Hang
                },
            ]
        );
        assert!(parse_rules("").unwrap().is_empty());
        for bad in [
            "1", "1:2", "a:1:2", "1:0:2", "1:x:2", "1:1:boom", "1:1:2:3", "200:1:2", "1:-1:2",
        ] {
            assert!(parse_rules(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn formatted_rules_parse_back(core in 0u32..128, nth in proptest::option::of(1u64..1000), status in 0u32..2000) {
            let text = format!("{core}:{}:{status}", nth.map_or("*".to_string(), |n| n.to_string()));
            let r = parse_rules(&text).unwrap();
            prop_assert_eq!(r, vec![FaultRule { core, nth, action: FaultAction::Status(status) }]);
        }
    }
}
