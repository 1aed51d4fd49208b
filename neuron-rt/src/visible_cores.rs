//! The set of physical NeuronCores a process owns, as named by `NEURON_RT_VISIBLE_CORES`,
//! and the mapping between the process's logical core ids and physical core ids.
//!
//! This module owns the grammar of `NEURON_RT_VISIBLE_CORES` and nothing else: it does not
//! read counts from libnrt (the caller passes the machine's total core count) and it does not
//! know about device ids chosen by a user (see [`DeviceId`](crate::DeviceId)).
//!
//! The grammar and an example are on [`VisibleCores`].

use std::fmt;

/// The forms `NEURON_RT_VISIBLE_CORES` accepts, quoted by every parse error.
const ACCEPTED_FORMS: &str = "accepted forms: a single core index (`5`), an inclusive range \
     (`0-11`), or a comma-separated list of indices and ranges (`3-5,6` or `1,3`)";

/// Why a `NEURON_RT_VISIBLE_CORES` value was rejected.
///
/// Every message names the offending part of the value and the accepted forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VisibleCoresError {
    /// The value is empty (or only whitespace).
    #[error(
        "NEURON_RT_VISIBLE_CORES is empty: list the cores this process should own, or unset \
         it to use every core; {ACCEPTED_FORMS}"
    )]
    Empty,
    /// An entry between commas is empty, as in `1,,2` or `1,`.
    #[error(
        "NEURON_RT_VISIBLE_CORES={value:?} has an empty entry at position {position} \
         (counting from 1): remove the stray comma; {ACCEPTED_FORMS}"
    )]
    EmptyEntry {
        /// The whole value.
        value: String,
        /// 1-based position of the empty entry.
        position: usize,
    },
    /// An entry (or one side of a range) is not a decimal core index.
    #[error(
        "NEURON_RT_VISIBLE_CORES entry {entry:?} is not a core index or range: {part:?} is not \
         a non-negative decimal number; {ACCEPTED_FORMS}"
    )]
    NotANumber {
        /// The entry, trimmed.
        entry: String,
        /// The part of the entry that is not a number.
        part: String,
    },
    /// A range whose start is greater than its end, as in `3-1`.
    #[error(
        "NEURON_RT_VISIBLE_CORES entry {entry:?} is a reversed range: write the lower core \
         first ({end}-{start}); {ACCEPTED_FORMS}"
    )]
    ReversedRange {
        /// The entry, trimmed.
        entry: String,
        /// The range's start as written.
        start: u64,
        /// The range's end as written.
        end: u64,
    },
    /// An index at or past the machine's core count.
    #[error(
        "NEURON_RT_VISIBLE_CORES entry {entry:?}: core {core} does not exist: {machine}; \
         list only existing cores ({ACCEPTED_FORMS})",
        machine = describe_machine(*total)
    )]
    NoSuchCore {
        /// The entry, trimmed.
        entry: String,
        /// The index that does not exist (a range's end).
        core: u64,
        /// The machine's total core count.
        total: u32,
    },
    /// A core listed twice, directly or through overlapping ranges.
    #[error(
        "NEURON_RT_VISIBLE_CORES lists core {core} twice (in {first:?} and {second:?}): \
         list each core once; {ACCEPTED_FORMS}"
    )]
    Duplicate {
        /// The first core listed twice.
        core: u32,
        /// The entry that listed it first (in physical order).
        first: String,
        /// The other entry that lists it.
        second: String,
    },
}

fn describe_machine(total: u32) -> String {
    match total {
        0 => "this machine has no NeuronCores".to_owned(),
        1 => "this machine has 1 core (0)".to_owned(),
        n => format!("this machine has {n} cores (0-{})", n - 1),
    }
}

/// The physical NeuronCores a process owns, in increasing physical order.
///
/// Logical core `i` (what `nrt_load` and `nrt_tensor_allocate` take) is the `i`-th smallest
/// physical core in the set. Build one with [`VisibleCores::parse`] from the value of
/// `NEURON_RT_VISIBLE_CORES`, or with [`VisibleCores::all`] when the variable is unset.
///
/// The set is stored as sorted, disjoint, non-adjacent inclusive ranges, so its size does not
/// depend on how many cores it holds.
///
/// # Grammar
///
/// A value is a comma-separated list of entries; each entry is either a single zero-based
/// physical core index (`5`) or an inclusive range (`0-11`). Entries may be mixed (`3-5,6`).
///
/// - ASCII whitespace around an entry and around either side of a range's `-` is ignored
///   (`" 3 - 5 , 6 "` is `3-5,6`); whitespace inside a number is an error.
/// - Numbers are plain decimal digits (leading zeros allowed, no sign).
/// - Entries may come in any order; the process's logical ids `0..n-1` are always assigned in
///   increasing physical order, as libnrt does.
/// - A core may be listed only once: duplicates and overlapping ranges are rejected.
/// - Non-contiguous sets such as `1,3` **are accepted**. The Neuron developer guide says the
///   set must be contiguous, but since runtime 2.16.18 the variable accepts "a comma-separated
///   list of individual NeuronCores and/or ranges" (aws-neuron-sdk #1024), and our mock
///   accepts them too. A real runtime that still insists on contiguity reports its own error at
///   `nrt_init`.
///
/// # Example
///
/// ```
/// use neuron_rt::VisibleCores;
///
/// // An inf2.48xlarge has 24 cores; this process owns the second half.
/// let cores = VisibleCores::parse("12-23", 24)?;
/// assert_eq!(cores.len(), 12);
/// assert_eq!(cores.physical(1), Some(13));
/// assert_eq!(cores.logical(13), Some(1));
/// assert_eq!(cores.to_string(), "12-23");
/// # Ok::<(), neuron_rt::VisibleCoresError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VisibleCores {
    /// Sorted, disjoint, non-adjacent inclusive ranges of physical ids.
    ranges: Vec<(u32, u32)>,
    /// Number of cores across `ranges`.
    len: u32,
}

/// One parsed entry before merging: inclusive range and the text it came from.
struct Entry<'a> {
    start: u32,
    end: u32,
    text: &'a str,
}

impl VisibleCores {
    /// The environment variable libnrt reads: `NEURON_RT_VISIBLE_CORES`.
    pub const ENV_VAR: &'static str = "NEURON_RT_VISIBLE_CORES";

    /// Parses a `NEURON_RT_VISIBLE_CORES` value against a machine with `total` cores.
    ///
    /// See [`VisibleCores`] for the grammar.
    ///
    /// ```
    /// use neuron_rt::VisibleCores;
    ///
    /// let cores = VisibleCores::parse("3-5,6", 24)?;
    /// assert_eq!(cores.iter().collect::<Vec<_>>(), [3, 4, 5, 6]);
    /// assert_eq!(cores.to_string(), "3-6");
    ///
    /// // Non-contiguous sets are accepted.
    /// let cores = VisibleCores::parse("1,3", 24)?;
    /// assert_eq!(cores.physical(1), Some(3));
    ///
    /// let err = VisibleCores::parse("0-99", 24).unwrap_err();
    /// assert!(err.to_string().contains("core 99 does not exist"));
    /// # Ok::<(), neuron_rt::VisibleCoresError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`VisibleCoresError`] for an empty value, an empty entry, a non-number, a reversed
    /// range, a core at or past `total`, or a core listed twice.
    pub fn parse(value: &str, total: u32) -> Result<Self, VisibleCoresError> {
        if value.trim().is_empty() {
            return Err(VisibleCoresError::Empty);
        }
        let mut entries = Vec::new();
        for (i, raw) in value.split(',').enumerate() {
            let text = raw.trim();
            if text.is_empty() {
                return Err(VisibleCoresError::EmptyEntry {
                    value: value.to_owned(),
                    position: i + 1,
                });
            }
            entries.push(parse_entry(text, total)?);
        }
        entries.sort_by_key(|e| (e.start, e.end));

        let mut ranges: Vec<(u32, u32)> = Vec::with_capacity(entries.len());
        let mut len: u32 = 0;
        let mut prev: Option<&Entry<'_>> = None;
        for entry in &entries {
            if let Some(p) = prev {
                if entry.start <= p.end {
                    return Err(VisibleCoresError::Duplicate {
                        core: entry.start,
                        first: p.text.to_owned(),
                        second: entry.text.to_owned(),
                    });
                }
            }
            // Every core is < total and listed once, so the count fits in u32.
            len = len.saturating_add(entry.end - entry.start + 1);
            match ranges.last_mut() {
                Some(last) if last.1.checked_add(1) == Some(entry.start) => last.1 = entry.end,
                _ => ranges.push((entry.start, entry.end)),
            }
            prev = Some(entry);
        }
        Ok(Self { ranges, len })
    }

    /// Reads and parses `NEURON_RT_VISIBLE_CORES` from the environment; when it is unset,
    /// every core of the machine is visible.
    ///
    /// A value that is not valid Unicode is parsed lossily and so rejected as not a number.
    ///
    /// # Errors
    ///
    /// As [`VisibleCores::parse`].
    pub fn from_env(total: u32) -> Result<Self, VisibleCoresError> {
        match std::env::var_os(Self::ENV_VAR) {
            None => Ok(Self::all(total)),
            Some(v) => Self::parse(&v.to_string_lossy(), total),
        }
    }

    /// Every core of a machine with `total` cores: physical ids `0..total`, logical = physical.
    ///
    /// ```
    /// use neuron_rt::VisibleCores;
    ///
    /// let cores = VisibleCores::all(24);
    /// assert_eq!(cores.len(), 24);
    /// assert_eq!(cores.to_string(), "0-23");
    /// assert!(VisibleCores::all(0).is_empty());
    /// ```
    pub fn all(total: u32) -> Self {
        let ranges = if total == 0 {
            Vec::new()
        } else {
            vec![(0, total - 1)]
        };
        Self { ranges, len: total }
    }

    /// Number of visible cores (logical ids are `0..len()`).
    pub fn len(&self) -> u32 {
        self.len
    }

    /// Whether no core is visible (only possible through [`VisibleCores::all`]`(0)`).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The physical core behind logical core `logical`, or `None` if `logical >= len()`.
    ///
    /// ```
    /// use neuron_rt::VisibleCores;
    ///
    /// let cores = VisibleCores::parse("3,4", 24)?;
    /// assert_eq!(cores.physical(0), Some(3));
    /// assert_eq!(cores.physical(2), None);
    /// # Ok::<(), neuron_rt::VisibleCoresError>(())
    /// ```
    pub fn physical(&self, logical: u32) -> Option<u32> {
        let mut remaining = logical;
        for &(start, end) in &self.ranges {
            let n = end - start;
            if remaining <= n {
                return Some(start + remaining);
            }
            remaining -= n + 1;
        }
        None
    }

    /// The logical id of physical core `physical`, or `None` if this process does not own it.
    ///
    /// ```
    /// use neuron_rt::VisibleCores;
    ///
    /// let cores = VisibleCores::parse("1,3", 24)?;
    /// assert_eq!(cores.logical(3), Some(1));
    /// assert_eq!(cores.logical(2), None);
    /// # Ok::<(), neuron_rt::VisibleCoresError>(())
    /// ```
    pub fn logical(&self, physical: u32) -> Option<u32> {
        let mut before = 0u32;
        for &(start, end) in &self.ranges {
            if physical < start {
                return None;
            }
            if physical <= end {
                return Some(before + (physical - start));
            }
            before += end - start + 1;
        }
        None
    }

    /// Whether the cores form one range with no gaps (`3-5`, but not `1,3`). The Neuron
    /// runtime's developer guide asks for a contiguous range; runtimes may refuse others.
    ///
    /// ```
    /// use neuron_rt::VisibleCores;
    ///
    /// assert!(VisibleCores::parse("3-5,6", 24)?.is_contiguous());
    /// assert!(!VisibleCores::parse("1,3", 24)?.is_contiguous());
    /// # Ok::<(), neuron_rt::VisibleCoresError>(())
    /// ```
    pub fn is_contiguous(&self) -> bool {
        self.ranges.len() <= 1
    }

    /// Whether physical core `physical` is visible.
    pub fn contains(&self, physical: u32) -> bool {
        self.logical(physical).is_some()
    }

    /// The physical ids in increasing order; the `i`-th item is logical core `i`.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.ranges.iter().flat_map(|&(start, end)| start..=end)
    }
}

impl<'a> IntoIterator for &'a VisibleCores {
    type Item = u32;
    type IntoIter = Box<dyn Iterator<Item = u32> + 'a>;

    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

/// The canonical compact form: maximal ranges in increasing order, a single core written
/// alone (`0-3,5,7-9`). Parsing it gives back an equal set. The empty set prints as an empty
/// string, which [`VisibleCores::parse`] rejects.
impl fmt::Display for VisibleCores {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, &(start, end)) in self.ranges.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if start == end {
                write!(f, "{start}")?;
            } else {
                write!(f, "{start}-{end}")?;
            }
        }
        Ok(())
    }
}

/// Parses one trimmed, non-empty entry: `N` or `A-B`.
fn parse_entry(text: &str, total: u32) -> Result<Entry<'_>, VisibleCoresError> {
    let (start, end) = match text.split_once('-') {
        None => {
            let n = parse_index(text, text)?;
            (n, n)
        }
        Some((a, b)) => (parse_index(a.trim(), text)?, parse_index(b.trim(), text)?),
    };
    if start > end {
        return Err(VisibleCoresError::ReversedRange {
            entry: text.to_owned(),
            start,
            end,
        });
    }
    // Name the number the user wrote: the range's end (or the single index).
    if end >= u64::from(total) {
        return Err(VisibleCoresError::NoSuchCore {
            entry: text.to_owned(),
            core: end,
            total,
        });
    }
    // Both are < total <= u32::MAX here.
    Ok(Entry {
        start: clamp_u32(start),
        end: clamp_u32(end),
        text,
    })
}

fn clamp_u32(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Parses a core index: ASCII digits only. Values too large for u64 saturate, which is
/// always past any machine's core count and reported as such.
fn parse_index(part: &str, entry: &str) -> Result<u64, VisibleCoresError> {
    if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
        return Err(VisibleCoresError::NotANumber {
            entry: entry.to_owned(),
            part: part.to_owned(),
        });
    }
    Ok(part.bytes().fold(0u64, |acc, b| {
        acc.saturating_mul(10).saturating_add(u64::from(b - b'0'))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn phys(v: &str, total: u32) -> Vec<u32> {
        VisibleCores::parse(v, total).unwrap().iter().collect()
    }

    fn err(v: &str, total: u32) -> String {
        let e = VisibleCores::parse(v, total).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("accepted forms"), "{msg}");
        msg
    }

    #[test]
    fn documented_forms() {
        assert_eq!(phys("5", 24), [5]);
        assert_eq!(phys("0-11", 24).len(), 12);
        assert_eq!(phys("3-5,6", 24), [3, 4, 5, 6]);
        assert_eq!(phys("3,4,5,6", 24), [3, 4, 5, 6]);
        assert_eq!(phys("0-2", 24), [0, 1, 2]);
        assert_eq!(phys("1,3", 24), [1, 3]);
        assert_eq!(phys("23", 24), [23]);
    }

    #[test]
    fn order_whitespace_and_leading_zeros() {
        assert_eq!(phys("6,3-5", 24), [3, 4, 5, 6]);
        assert_eq!(phys(" 3 - 5 , 6 ", 24), [3, 4, 5, 6]);
        assert_eq!(phys("\t07\n", 24), [7]);
        assert_eq!(phys("4-4", 24), [4]);
    }

    #[test]
    fn logical_numbering_follows_physical_order() {
        let c = VisibleCores::parse("20,1,3-4", 24).unwrap();
        assert_eq!(c.len(), 4);
        assert_eq!(
            (0..5).map(|l| c.physical(l)).collect::<Vec<_>>(),
            [Some(1), Some(3), Some(4), Some(20), None]
        );
        assert_eq!(c.logical(20), Some(3));
        assert_eq!(c.logical(0), None);
        assert_eq!(c.logical(2), None);
        assert_eq!(c.logical(23), None);
        assert!(c.contains(4));
        assert_eq!(c.to_string(), "1,3-4,20");
    }

    #[test]
    fn all_and_display() {
        assert_eq!(VisibleCores::all(24).to_string(), "0-23");
        assert_eq!(VisibleCores::all(1).to_string(), "0");
        assert_eq!(VisibleCores::all(0).to_string(), "");
        assert_eq!(VisibleCores::all(0).physical(0), None);
        assert_eq!(
            VisibleCores::parse("12-23", 24).unwrap().to_string(),
            "12-23"
        );
        assert_eq!(
            VisibleCores::parse("0-23", 24).unwrap(),
            VisibleCores::all(24)
        );
        let big = VisibleCores::all(u32::MAX);
        assert_eq!(big.physical(u32::MAX - 1), Some(u32::MAX - 1));
        assert_eq!(big.physical(u32::MAX), None);
        assert_eq!(big.logical(u32::MAX), None);
    }

    #[test]
    fn rejects_empty() {
        assert_eq!(
            VisibleCores::parse("", 24).unwrap_err(),
            VisibleCoresError::Empty
        );
        assert!(err("  ", 24).contains("is empty"));
    }

    #[test]
    fn rejects_empty_entry() {
        let m = err("1,,2", 24);
        assert!(m.contains("empty entry at position 2"), "{m}");
        assert!(m.contains("\"1,,2\""), "{m}");
        assert!(err("1,", 24).contains("position 2"));
        assert!(err(",1", 24).contains("position 1"));
    }

    #[test]
    fn rejects_non_numbers() {
        let m = err("a", 24);
        assert!(
            m.contains("\"a\" is not a non-negative decimal number"),
            "{m}"
        );
        for bad in [
            "-1", "1-", "-", "1-2-3", "+1", "1 2", "0x1", "1.0", "1-b", "٣",
        ] {
            let m = err(bad, 24);
            assert!(m.contains("is not a core index or range"), "{bad}: {m}");
        }
        let m = err("1-2-3", 24);
        assert!(m.contains("\"2-3\""), "{m}");
    }

    #[test]
    fn rejects_reversed_range() {
        let m = err("3-1", 24);
        assert!(m.contains("\"3-1\" is a reversed range"), "{m}");
        assert!(m.contains("(1-3)"), "{m}");
    }

    #[test]
    fn rejects_missing_cores() {
        let m = err("0-99", 24);
        assert!(
            m.contains("core 99 does not exist: this machine has 24 cores (0-23)"),
            "{m}"
        );
        let m = err("99", 24);
        assert!(
            m.contains("core 99 does not exist: this machine has 24 cores (0-23)"),
            "{m}"
        );
        let m = err("0-24", 24);
        assert!(m.contains("core 24 does not exist"), "{m}");
        let m = err("0", 0);
        assert!(m.contains("this machine has no NeuronCores"), "{m}");
        let m = err("1", 1);
        assert!(m.contains("this machine has 1 core (0)"), "{m}");
        let m = err("99999999999999999999999", 24);
        assert!(
            m.contains("core 18446744073709551615 does not exist"),
            "{m}"
        );
        let m = err("0-4294967296", u32::MAX);
        assert!(m.contains("core 4294967296 does not exist"), "{m}");
        let m = err("99999999999-1", 24);
        assert!(m.contains("(1-99999999999)"), "{m}");
    }

    #[test]
    fn rejects_duplicates_and_overlaps() {
        let m = err("1,1", 24);
        assert!(m.contains("lists core 1 twice"), "{m}");
        let m = err("0-5,3-8", 24);
        assert!(m.contains("core 3 twice (in \"0-5\" and \"3-8\")"), "{m}");
        let m = err("4,2-6", 24);
        assert!(m.contains("core 4 twice"), "{m}");
    }

    /// Disjoint sorted ranges in 0..total, as (start, end) inclusive.
    fn range_set() -> impl Strategy<Value = (u32, Vec<(u32, u32)>)> {
        (1u32..200).prop_flat_map(|total| {
            (
                Just(total),
                proptest::collection::btree_set(0..total, 1..32).prop_map(|set| {
                    // Pair up sorted points into [a, b] ranges, skipping shared endpoints.
                    let pts: Vec<u32> = set.into_iter().collect();
                    let mut out: Vec<(u32, u32)> = Vec::new();
                    for pair in pts.chunks(2) {
                        let (a, b) = match pair {
                            [a, b] => (*a, *b),
                            [a] => (*a, *a),
                            _ => continue,
                        };
                        if out.last().is_some_and(|l| l.1 >= a) {
                            continue;
                        }
                        out.push((a, b));
                    }
                    out
                }),
            )
        })
    }

    proptest! {
        #[test]
        fn round_trip((total, ranges) in range_set(), shuffle in any::<prop::sample::Index>(), single in any::<bool>()) {
            let expected: Vec<u32> = ranges.iter().flat_map(|&(a, b)| a..=b).collect();
            let mut parts: Vec<String> = ranges
                .iter()
                .map(|&(a, b)| if a == b && single { a.to_string() } else { format!("{a}-{b}") })
                .collect();
            let k = shuffle.index(parts.len());
            parts.rotate_left(k);
            let value = parts.join(",");
            let cores = VisibleCores::parse(&value, total).unwrap();
            prop_assert_eq!(cores.iter().collect::<Vec<_>>(), expected.clone());
            prop_assert_eq!(cores.len() as usize, expected.len());
            let canonical = cores.to_string();
            let again = VisibleCores::parse(&canonical, total).unwrap();
            prop_assert_eq!(&again, &cores);
            prop_assert_eq!(again.to_string(), canonical);
            for (l, &p) in expected.iter().enumerate() {
                prop_assert_eq!(cores.physical(l as u32), Some(p));
                prop_assert_eq!(cores.logical(p), Some(l as u32));
            }
            prop_assert_eq!(cores.physical(expected.len() as u32), None);
            for p in 0..total {
                if let Some(l) = cores.logical(p) {
                    prop_assert_eq!(cores.physical(l), Some(p));
                } else {
                    prop_assert!(!expected.contains(&p));
                }
            }
        }

        #[test]
        fn never_panics(value in ".{0,40}", total in any::<u32>()) {
            let _ = VisibleCores::parse(&value, total).map(|c| (c.to_string(), c.physical(0)));
        }

        #[test]
        fn never_panics_on_grammar_like_input(value in "[0-9, \\-]{0,24}", total in 0u32..64) {
            if let Ok(c) = VisibleCores::parse(&value, total) {
                prop_assert!(c.iter().all(|p| p < total));
                prop_assert_eq!(VisibleCores::parse(&c.to_string(), total).unwrap(), c);
            }
        }
    }
}
