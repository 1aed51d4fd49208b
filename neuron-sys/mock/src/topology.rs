//! Which physical cores exist and which this process asks for.
//!
//! This module owns the parsing of `NRT_MOCK_TOTAL_CORES`, `NEURON_RT_VISIBLE_CORES` and
//! `NEURON_RT_NUM_CORES` (all read from the environment at the time of the call, so a
//! re-init after `nrt_close` sees new values). Logical core `i` of the process is the `i`-th
//! owned physical core in ascending order. With `NRT_MOCK_LNC=2` a logical core is two
//! adjacent physical cores (`2g`, `2g + 1`), `NEURON_RT_VISIBLE_CORES` and
//! `NEURON_RT_NUM_CORES` count logical cores, and `NRT_MOCK_TOTAL_CORES` stays the physical
//! count.

use crate::counters::NRT_MOCK_MAX_CORES;

/// Default `NRT_MOCK_TOTAL_CORES`: inf2.48xlarge, 12 chips x 2 cores.
pub(crate) const DEFAULT_TOTAL_CORES: u32 = 24;

/// What the environment asks `nrt_init` to own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Request {
    /// Every core (neither variable set, or `NEURON_RT_NUM_CORES=0`).
    All,
    /// The first `n` free cores (`NEURON_RT_NUM_CORES=n`).
    Count(u32),
    /// Exactly these physical cores, ascending (`NEURON_RT_VISIBLE_CORES`).
    Exact(Vec<u32>),
}

impl Request {
    /// How many cores the request selects out of `total`.
    pub(crate) fn count(&self, total: u32) -> u32 {
        match self {
            Request::All => total,
            Request::Count(n) => *n,
            Request::Exact(v) => v.len() as u32,
        }
    }
}

/// `NRT_MOCK_TOTAL_CORES`, default 24, between 1 and 128.
pub(crate) fn total_cores() -> Result<u32, String> {
    match std::env::var("NRT_MOCK_TOTAL_CORES") {
        Err(_) => Ok(DEFAULT_TOTAL_CORES),
        Ok(v) => match v.trim().parse::<u32>() {
            Ok(n) if (1..=NRT_MOCK_MAX_CORES as u32).contains(&n) => Ok(n),
            _ => Err(format!(
                "NRT_MOCK_TOTAL_CORES={v:?} is not a core count between 1 and {NRT_MOCK_MAX_CORES}"
            )),
        },
    }
}

/// `NRT_MOCK_LNC`: physical cores per logical core, 1 (default) or 2 (trn2's default
/// `NEURON_LOGICAL_NC_CONFIG=2`); `physical_total` must be a multiple of it.
pub(crate) fn lnc(physical_total: u32) -> Result<u32, String> {
    let lnc = match std::env::var("NRT_MOCK_LNC") {
        Err(_) => 1,
        Ok(v) => match v.trim() {
            "1" => 1,
            "2" => 2,
            _ => return Err(format!("NRT_MOCK_LNC={v:?} is not 1 or 2")),
        },
    };
    if physical_total % lnc != 0 {
        return Err(format!(
            "NRT_MOCK_TOTAL_CORES={physical_total} is not a multiple of NRT_MOCK_LNC={lnc}"
        ));
    }
    Ok(lnc)
}

/// The physical cores behind logical cores `logical` (ascending) at `lnc` physical cores
/// each.
pub(crate) fn physical_of(logical: &[u32], lnc: u32) -> Vec<u32> {
    logical
        .iter()
        .flat_map(|&g| g * lnc..g * lnc + lnc)
        .collect()
}

/// The request the environment makes, validated against `total` (logical cores:
/// `NEURON_RT_VISIBLE_CORES` numbers logical cores when LNC is 2).
pub(crate) fn request_from_env(total: u32) -> Result<Request, String> {
    if let Some(v) = std::env::var_os("NEURON_RT_VISIBLE_CORES") {
        let v = v.to_string_lossy();
        return parse_visible_cores(&v, total).map(Request::Exact).map_err(|e| {
            format!("NEURON_RT_VISIBLE_CORES={v:?} is invalid: {e} (accepted: `5`, `0-11`, `3-5,6`, `1,3`)")
        });
    }
    if let Some(v) = std::env::var_os("NEURON_RT_NUM_CORES") {
        let v = v.to_string_lossy();
        return match v.trim().parse::<u32>() {
            Ok(0) => Ok(Request::All),
            Ok(n) if n <= total => Ok(Request::Count(n)),
            Ok(n) => Err(format!(
                "NEURON_RT_NUM_CORES={v:?} asks for {n} cores but the instance has {total}"
            )),
            Err(_) => Err(format!(
                "NEURON_RT_NUM_CORES={v:?} is not a non-negative core count"
            )),
        };
    }
    Ok(Request::All)
}

/// Parses a `NEURON_RT_VISIBLE_CORES` value: comma-separated single indices and inclusive
/// `a-b` ranges. Rejects empty entries, reversed ranges, indices `>= total` and duplicates.
/// Returns the physical cores ascending.
pub(crate) fn parse_visible_cores(value: &str, total: u32) -> Result<Vec<u32>, String> {
    let index = |s: &str| -> Result<u32, String> {
        let s = s.trim();
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("{s:?} is not a core index"));
        }
        let n: u32 = s.parse().map_err(|_| format!("{s:?} is too large"))?;
        if n >= total {
            return Err(format!(
                "core {n} does not exist: the instance has {total} cores (0-{})",
                total - 1
            ));
        }
        Ok(n)
    };
    if value.trim().is_empty() {
        return Err("the value is empty".into());
    }
    let mut cores = Vec::new();
    for entry in value.split(',') {
        if entry.trim().is_empty() {
            return Err("an entry between commas is empty".into());
        }
        match entry.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (index(a)?, index(b)?);
                if a > b {
                    return Err(format!("range {:?} runs backwards", entry.trim()));
                }
                cores.extend(a..=b);
            }
            None => cores.push(index(entry)?),
        }
    }
    cores.sort_unstable();
    if let Some(w) = cores.windows(2).find(|w| w[0] == w[1]) {
        return Err(format!("core {} is listed twice", w[0]));
    }
    Ok(cores)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn lnc_groups_adjacent_physical_cores() {
        assert_eq!(physical_of(&[1, 2], 2), vec![2, 3, 4, 5]);
        assert_eq!(physical_of(&[1, 3], 1), vec![1, 3]);
    }

    #[test]
    fn accepted_forms() {
        assert_eq!(parse_visible_cores("5", 24).unwrap(), vec![5]);
        assert_eq!(
            parse_visible_cores("0-11", 24).unwrap(),
            (0..12).collect::<Vec<_>>()
        );
        assert_eq!(parse_visible_cores("3-5,6", 24).unwrap(), vec![3, 4, 5, 6]);
        assert_eq!(parse_visible_cores("1,3", 24).unwrap(), vec![1, 3]);
        assert_eq!(parse_visible_cores("7,2", 24).unwrap(), vec![2, 7]);
        assert_eq!(parse_visible_cores(" 4 - 5 ", 24).unwrap(), vec![4, 5]);
        assert_eq!(parse_visible_cores("23", 24).unwrap(), vec![23]);
    }

    #[test]
    fn rejected_forms() {
        for bad in [
            "3-1", "a", "0-99", "", " ", "1,,2", "1,1", "0-3,2", "24", "-1", "1-", ",1", "1.5",
            "+1",
        ] {
            assert!(parse_visible_cores(bad, 24).is_err(), "{bad:?} accepted");
        }
    }

    proptest! {
        #[test]
        fn ranges_and_lists_agree(a in 0u32..24, len in 0u32..24) {
            let b = (a + len).min(23);
            let range = parse_visible_cores(&format!("{a}-{b}"), 24).unwrap();
            let list: Vec<String> = (a..=b).map(|c| c.to_string()).collect();
            prop_assert_eq!(&range, &parse_visible_cores(&list.join(","), 24).unwrap());
            prop_assert_eq!(range, (a..=b).collect::<Vec<_>>());
        }

        #[test]
        fn never_panics(s in "[0-9,\\- a]{0,12}") {
            if let Ok(v) = parse_visible_cores(&s, 24) {
                prop_assert!(!v.is_empty());
                prop_assert!(v.windows(2).all(|w| w[0] < w[1]));
                prop_assert!(v.iter().all(|&c| c < 24));
            }
        }
    }
}
