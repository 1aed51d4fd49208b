//! Device ids: which of the process's NeuronCores a user picks, written `nc:N` or `N`.
//!
//! This module owns the `device_ids` vocabulary of `torch_neuronx.DataParallel`, made strict:
//! the syntax of one id ([`DeviceId`]), of a list ([`DeviceIds`]), and the check against the
//! number of visible cores. It does not map ids to physical cores; that is
//! [`VisibleCores`](crate::VisibleCores)' job. The accepted forms are documented on
//! [`DeviceIds`].

use std::fmt;
use std::str::FromStr;

/// The forms a device id may take, quoted by every error.
const ACCEPTED_FORMS: &str =
    "accepted forms: `nc:N` or an integer N, zero-based within the process's visible cores";

/// Why a device id or list of device ids was rejected.
///
/// Every message names the bad entry and the accepted forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceIdError {
    /// The list holds no ids.
    #[error(
        "no device ids given: name at least one NeuronCore (e.g. `nc:0`), or use all visible \
         cores; {ACCEPTED_FORMS}"
    )]
    EmptyList,
    /// An entry between commas is empty, as in `nc:0,,nc:1`.
    #[error(
        "device id list {list:?} has an empty entry at position {position} (counting from 1): \
         remove the stray comma; {ACCEPTED_FORMS}"
    )]
    EmptyEntry {
        /// The whole list.
        list: String,
        /// 1-based position of the empty entry.
        position: usize,
    },
    /// An entry that is neither `nc:N` nor an integer.
    #[error("device id {entry:?} is malformed: {ACCEPTED_FORMS} (e.g. `nc:0` or `0`)")]
    Malformed {
        /// The entry as given (trimmed).
        entry: String,
    },
    /// A negative id (`-1`, `nc:-1`).
    #[error(
        "device id {entry:?} is negative: device ids name a specific core, there is no \
         \"any core\" id; {ACCEPTED_FORMS}"
    )]
    Negative {
        /// The entry as given.
        entry: String,
    },
    /// An id too large to be any core (more than `u32::MAX`).
    #[error("device id {entry:?} is too large to name a NeuronCore; {ACCEPTED_FORMS}")]
    TooLarge {
        /// The entry as given.
        entry: String,
    },
    /// An id the same list already holds.
    #[error("device id nc:{id} is listed twice: list each core once; {ACCEPTED_FORMS}")]
    Duplicate {
        /// The repeated id.
        id: u32,
    },
    /// An id at or past the number of cores this process sees.
    #[error(
        "nc:{id} is out of range: {sees}; device ids are zero-based within \
         NEURON_RT_VISIBLE_CORES ({ACCEPTED_FORMS})",
        sees = describe_visible(*visible)
    )]
    OutOfRange {
        /// The id.
        id: u32,
        /// How many cores the process sees.
        visible: u32,
    },
    /// Asked for all visible cores when the process sees none.
    #[error(
        "this process sees no NeuronCores: check NEURON_RT_VISIBLE_CORES / \
         NEURON_RT_NUM_CORES and that the Neuron driver is loaded"
    )]
    NoVisibleCores,
}

fn describe_visible(visible: u32) -> String {
    match visible {
        0 => "this process sees no NeuronCores".to_owned(),
        1 => "this process sees 1 NeuronCore (nc:0)".to_owned(),
        n => format!("this process sees {n} NeuronCores (nc:0-nc:{})", n - 1),
    }
}

/// A logical NeuronCore index, zero-based within the cores this process sees.
///
/// Displays as `nc:N`; parses from `nc:N` or `N` (see [`DeviceIds`] for the exact forms).
///
/// ```
/// use neuron_rt::DeviceId;
///
/// let a: DeviceId = "nc:3".parse()?;
/// let b: DeviceId = "3".parse()?;
/// assert_eq!(a, b);
/// assert_eq!(a.index(), 3);
/// assert_eq!(a.to_string(), "nc:3");
/// assert!("NC:3".parse::<DeviceId>().is_err());
/// # Ok::<(), neuron_rt::DeviceIdError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeviceId(u32);

impl DeviceId {
    /// The id of logical core `index`. Not checked against the visible count; see
    /// [`DeviceIds::validate`].
    pub const fn new(index: u32) -> Self {
        Self(index)
    }

    /// The logical core index (what `nrt_load` takes as its start core).
    pub const fn index(self) -> u32 {
        self.0
    }

    /// Converts an integer id, rejecting negatives and values past `u32::MAX`.
    ///
    /// ```
    /// use neuron_rt::DeviceId;
    ///
    /// assert_eq!(DeviceId::from_index(2)?, DeviceId::new(2));
    /// assert!(DeviceId::from_index(-1).unwrap_err().to_string().contains("negative"));
    /// # Ok::<(), neuron_rt::DeviceIdError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`DeviceIdError::Negative`] or [`DeviceIdError::TooLarge`].
    pub fn from_index(index: i64) -> Result<Self, DeviceIdError> {
        if index < 0 {
            return Err(DeviceIdError::Negative {
                entry: index.to_string(),
            });
        }
        u32::try_from(index)
            .map(Self)
            .map_err(|_| DeviceIdError::TooLarge {
                entry: index.to_string(),
            })
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "nc:{}", self.0)
    }
}

impl From<u32> for DeviceId {
    fn from(index: u32) -> Self {
        Self(index)
    }
}

/// Parses `nc:N` or `N` (surrounding ASCII whitespace ignored).
impl FromStr for DeviceId {
    type Err = DeviceIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let entry = s.trim();
        let digits = entry.strip_prefix("nc:").unwrap_or(entry);
        if let Some(rest) = digits.strip_prefix('-') {
            if !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()) {
                return Err(DeviceIdError::Negative {
                    entry: entry.to_owned(),
                });
            }
        }
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(DeviceIdError::Malformed {
                entry: entry.to_owned(),
            });
        }
        // All ASCII digits: the only possible parse failure is overflow.
        digits
            .parse::<u32>()
            .map(Self)
            .map_err(|_| DeviceIdError::TooLarge {
                entry: entry.to_owned(),
            })
    }
}

/// A non-empty, duplicate-free list of device ids, sorted ascending.
///
/// A [`DeviceId`] is a **logical**, zero-based core index within the cores this process sees
/// (`NEURON_RT_VISIBLE_CORES`; see [`VisibleCores`](crate::VisibleCores) for the mapping to
/// physical cores). The list is kept **sorted ascending**, as the reference
/// `torch_neuronx.DataParallel` sorts `device_ids` before placing replicas, so the order a
/// user writes does not matter. Chunk `i` of a batch goes to
/// [`for_chunk(i)`](DeviceIds::for_chunk) = `ids[i % k]`.
///
/// # Accepted forms
///
/// An entry is `nc:N` (lower-case `nc`, as in the reference) or a plain integer `N`, where `N`
/// is decimal digits (leading zeros allowed). ASCII whitespace around an entry is ignored. A
/// list is entries separated by commas; the two forms may be mixed. Unlike the reference,
/// which takes the first match of `nc:(\d+)` *anywhere* in a string and keeps negatives and
/// duplicates, everything else is rejected: `NC:1`, `core1`, `nc:`, `nc:1x`, `xnc:3y`, `1.5`,
/// `nc:-1`, `-1`, empty entries, empty lists and repeated ids.
///
/// Parsing checks the syntax only; [`DeviceIds::validate`] then checks the ids against the
/// number of visible cores.
///
/// ```
/// use neuron_rt::{DeviceId, DeviceIds};
///
/// let ids = DeviceIds::parse_list("nc:3, 1")?.validate(12)?;
/// assert_eq!(ids.as_slice(), [DeviceId::new(1), DeviceId::new(3)]);
/// assert_eq!(ids.for_chunk(2), DeviceId::new(1));
/// assert_eq!(ids.to_string(), "nc:1,nc:3");
/// # Ok::<(), neuron_rt::DeviceIdError>(())
/// ```
///
/// Built unchecked against the core count by [`DeviceIds::parse_list`],
/// [`DeviceIds::from_strs`], [`DeviceIds::from_indices`] or [`DeviceIds::from_ids`]; call
/// [`DeviceIds::validate`] with the visible core count before use. [`DeviceIds::all`] is
/// valid by construction.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeviceIds {
    /// Sorted ascending, no duplicates, never empty.
    ids: Vec<DeviceId>,
}

impl DeviceIds {
    /// Parses a comma-separated list such as `nc:0,nc:1` or `0,1` (forms may be mixed).
    ///
    /// ```
    /// use neuron_rt::DeviceIds;
    ///
    /// assert_eq!(DeviceIds::parse_list("nc:0,nc:1")?, DeviceIds::parse_list("1, 0")?);
    /// let err = DeviceIds::parse_list("nc:0,core1").unwrap_err();
    /// assert!(err.to_string().contains("\"core1\""));
    /// # Ok::<(), neuron_rt::DeviceIdError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`DeviceIdError`] for an empty list or entry, a malformed, negative or too-large entry,
    /// or a repeated id.
    pub fn parse_list(list: &str) -> Result<Self, DeviceIdError> {
        if list.trim().is_empty() {
            return Err(DeviceIdError::EmptyList);
        }
        let mut ids = Vec::new();
        for (i, entry) in list.split(',').enumerate() {
            if entry.trim().is_empty() {
                return Err(DeviceIdError::EmptyEntry {
                    list: list.to_owned(),
                    position: i + 1,
                });
            }
            ids.push(entry.parse()?);
        }
        Self::from_ids(ids)
    }

    /// Parses one id per string, as a command line or a Python list of `'nc:#'` strings
    /// gives them.
    ///
    /// ```
    /// use neuron_rt::DeviceIds;
    ///
    /// let ids = DeviceIds::from_strs(["nc:2", "0"])?;
    /// assert_eq!(ids.to_string(), "nc:0,nc:2");
    /// # Ok::<(), neuron_rt::DeviceIdError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`DeviceIds::parse_list`]; an empty string is [`DeviceIdError::Malformed`].
    pub fn from_strs<I, S>(entries: I) -> Result<Self, DeviceIdError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let ids = entries
            .into_iter()
            .map(|s| s.as_ref().parse())
            .collect::<Result<Vec<DeviceId>, _>>()?;
        Self::from_ids(ids)
    }

    /// Builds a list from integer ids, rejecting negatives (`-1` is *not* "any core").
    ///
    /// ```
    /// use neuron_rt::DeviceIds;
    ///
    /// let ids = DeviceIds::from_indices(&[3, 1])?;
    /// assert_eq!(ids.to_string(), "nc:1,nc:3");
    /// assert!(DeviceIds::from_indices(&[0, -1]).is_err());
    /// # Ok::<(), neuron_rt::DeviceIdError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`DeviceIdError::EmptyList`], [`DeviceIdError::Negative`],
    /// [`DeviceIdError::TooLarge`] or [`DeviceIdError::Duplicate`].
    pub fn from_indices(indices: &[i64]) -> Result<Self, DeviceIdError> {
        let ids = indices
            .iter()
            .map(|&i| DeviceId::from_index(i))
            .collect::<Result<Vec<_>, _>>()?;
        Self::from_ids(ids)
    }

    /// Builds a list from ids in any order, sorting them.
    ///
    /// # Errors
    ///
    /// [`DeviceIdError::EmptyList`] or [`DeviceIdError::Duplicate`].
    pub fn from_ids(ids: impl IntoIterator<Item = DeviceId>) -> Result<Self, DeviceIdError> {
        let mut ids: Vec<DeviceId> = ids.into_iter().collect();
        if ids.is_empty() {
            return Err(DeviceIdError::EmptyList);
        }
        ids.sort_unstable();
        if let Some(w) = ids.windows(2).find(|w| w.first() == w.get(1)) {
            if let Some(id) = w.first() {
                return Err(DeviceIdError::Duplicate { id: id.index() });
            }
        }
        Ok(Self { ids })
    }

    /// Every visible core, `nc:0..nc:{visible-1}` (the default when a user names none).
    ///
    /// ```
    /// use neuron_rt::DeviceIds;
    ///
    /// assert_eq!(DeviceIds::all(4)?.to_string(), "nc:0,nc:1,nc:2,nc:3");
    /// assert!(DeviceIds::all(0).is_err());
    /// # Ok::<(), neuron_rt::DeviceIdError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`DeviceIdError::NoVisibleCores`] when `visible` is 0.
    pub fn all(visible: u32) -> Result<Self, DeviceIdError> {
        if visible == 0 {
            return Err(DeviceIdError::NoVisibleCores);
        }
        Ok(Self {
            ids: (0..visible).map(DeviceId).collect(),
        })
    }

    /// Checks every id against the number of cores the process sees and returns the list.
    ///
    /// ```
    /// use neuron_rt::DeviceIds;
    ///
    /// let err = DeviceIds::parse_list("nc:13")?.validate(12).unwrap_err();
    /// assert_eq!(
    ///     err.to_string(),
    ///     "nc:13 is out of range: this process sees 12 NeuronCores (nc:0-nc:11); device ids \
    ///      are zero-based within NEURON_RT_VISIBLE_CORES (accepted forms: `nc:N` or an \
    ///      integer N, zero-based within the process's visible cores)"
    /// );
    /// # Ok::<(), neuron_rt::DeviceIdError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`DeviceIdError::OutOfRange`] naming the largest id when it is `>= visible`.
    pub fn validate(self, visible: u32) -> Result<Self, DeviceIdError> {
        match self.ids.last() {
            Some(&DeviceId(id)) if id >= visible => Err(DeviceIdError::OutOfRange { id, visible }),
            _ => Ok(self),
        }
    }

    /// Number of ids (k, the number of replicas); never 0.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Always `false`: a `DeviceIds` holds at least one id.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The ids, sorted ascending.
    pub fn as_slice(&self) -> &[DeviceId] {
        &self.ids
    }

    /// Iterates the ids in ascending order.
    pub fn iter(&self) -> std::slice::Iter<'_, DeviceId> {
        self.ids.iter()
    }

    /// The id that runs chunk `chunk`: `ids[chunk % len()]` (round-robin).
    ///
    /// ```
    /// use neuron_rt::{DeviceId, DeviceIds};
    ///
    /// let ids = DeviceIds::from_indices(&[1, 3])?;
    /// assert_eq!(ids.for_chunk(0), DeviceId::new(1));
    /// assert_eq!(ids.for_chunk(3), DeviceId::new(3));
    /// # Ok::<(), neuron_rt::DeviceIdError>(())
    /// ```
    pub fn for_chunk(&self, chunk: usize) -> DeviceId {
        // `ids` is never empty (every constructor rejects that), so the modulus is defined
        // and the index in bounds; the fallback is unreachable.
        self.ids
            .get(chunk.checked_rem(self.ids.len()).unwrap_or(0))
            .copied()
            .unwrap_or(DeviceId(0))
    }

    /// If the ids are consecutive (`nc:a..nc:a+k`), the first id; such a set can be loaded
    /// as one multi-core placement.
    ///
    /// ```
    /// use neuron_rt::{DeviceId, DeviceIds};
    ///
    /// assert_eq!(DeviceIds::parse_list("2,3,4")?.contiguous_start(), Some(DeviceId::new(2)));
    /// assert_eq!(DeviceIds::parse_list("1,3")?.contiguous_start(), None);
    /// # Ok::<(), neuron_rt::DeviceIdError>(())
    /// ```
    pub fn contiguous_start(&self) -> Option<DeviceId> {
        let first = *self.ids.first()?;
        let consecutive = self
            .ids
            .windows(2)
            .all(|w| matches!(w, [a, b] if a.0.checked_add(1) == Some(b.0)));
        consecutive.then_some(first)
    }
}

impl<'a> IntoIterator for &'a DeviceIds {
    type Item = &'a DeviceId;
    type IntoIter = std::slice::Iter<'a, DeviceId>;

    fn into_iter(self) -> Self::IntoIter {
        self.ids.iter()
    }
}

/// `nc:0,nc:1,...`, which [`DeviceIds::parse_list`] parses back.
impl fmt::Display for DeviceIds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, id) in self.ids.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{id}")?;
        }
        Ok(())
    }
}

/// As [`DeviceIds::parse_list`].
impl FromStr for DeviceIds {
    type Err = DeviceIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse_list(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn list_err(s: &str) -> String {
        let m = DeviceIds::parse_list(s).unwrap_err().to_string();
        assert!(
            m.contains("accepted forms") || m.contains("no device ids"),
            "{m}"
        );
        m
    }

    #[test]
    fn accepts_both_forms() {
        assert_eq!("nc:0".parse::<DeviceId>().unwrap(), DeviceId(0));
        assert_eq!("0".parse::<DeviceId>().unwrap(), DeviceId(0));
        assert_eq!(" nc:13 ".parse::<DeviceId>().unwrap(), DeviceId(13));
        assert_eq!("nc:03".parse::<DeviceId>().unwrap(), DeviceId(3));
        assert_eq!(
            "nc:4294967295".parse::<DeviceId>().unwrap(),
            DeviceId(u32::MAX)
        );
        // Case 35: nc:-strings and integers mean the same placement.
        assert_eq!(
            DeviceIds::parse_list("nc:0,nc:1,nc:2").unwrap(),
            DeviceIds::from_indices(&[0, 1, 2]).unwrap()
        );
        assert_eq!(
            DeviceIds::parse_list("0,nc:1").unwrap(),
            DeviceIds::parse_list("0,1").unwrap()
        );
    }

    #[test]
    fn rejects_malformed_entries() {
        for bad in [
            "NC:1", "core1", "nc:", "nc:1x", "xnc:3y", "1.5", "nc: 1", "nc:+1", "+1", "nc:nc:1",
            "nc1", "", "１",
        ] {
            let e = bad.parse::<DeviceId>().unwrap_err();
            assert_eq!(
                e,
                DeviceIdError::Malformed {
                    entry: bad.trim().to_owned()
                },
                "{bad}"
            );
            let m = e.to_string();
            assert!(m.contains(&format!("{:?}", bad.trim())), "{m}");
            assert!(m.contains("`nc:N` or an integer N"), "{m}");
        }
        let m = list_err("nc:0,core1");
        assert!(m.contains("device id \"core1\" is malformed"), "{m}");
    }

    #[test]
    fn rejects_negatives() {
        for bad in ["-1", "nc:-1", " -3 "] {
            let m = bad.parse::<DeviceId>().unwrap_err().to_string();
            assert!(m.contains("is negative"), "{m}");
            assert!(m.contains(&format!("{:?}", bad.trim())), "{m}");
        }
        let m = DeviceIds::from_indices(&[0, -1]).unwrap_err().to_string();
        assert!(m.contains("device id \"-1\" is negative"), "{m}");
        assert!(m.contains("`nc:N` or an integer N"), "{m}");
    }

    #[test]
    fn rejects_too_large() {
        let m = "nc:4294967296".parse::<DeviceId>().unwrap_err().to_string();
        assert!(m.contains("\"nc:4294967296\" is too large"), "{m}");
        let m = DeviceIds::from_indices(&[i64::MAX])
            .unwrap_err()
            .to_string();
        assert!(m.contains("too large"), "{m}");
    }

    #[test]
    fn rejects_empty_list_and_entries() {
        assert_eq!(
            DeviceIds::parse_list("").unwrap_err(),
            DeviceIdError::EmptyList
        );
        assert!(list_err(" ").contains("no device ids given"));
        assert_eq!(
            DeviceIds::from_indices(&[]).unwrap_err(),
            DeviceIdError::EmptyList
        );
        assert_eq!(
            DeviceIds::from_strs(Vec::<String>::new()).unwrap_err(),
            DeviceIdError::EmptyList
        );
        let m = list_err("nc:0,,nc:1");
        assert!(m.contains("empty entry at position 2"), "{m}");
        assert!(m.contains("\"nc:0,,nc:1\""), "{m}");
        assert!(list_err("0,").contains("position 2"));
    }

    #[test]
    fn rejects_duplicates() {
        let m = list_err("nc:1,1");
        assert!(m.contains("nc:1 is listed twice"), "{m}");
        assert_eq!(
            DeviceIds::from_indices(&[2, 0, 2]).unwrap_err(),
            DeviceIdError::Duplicate { id: 2 }
        );
    }

    #[test]
    fn validates_against_visible_count() {
        let e = DeviceIds::parse_list("nc:0,nc:13")
            .unwrap()
            .validate(12)
            .unwrap_err();
        assert_eq!(
            e,
            DeviceIdError::OutOfRange {
                id: 13,
                visible: 12
            }
        );
        let m = e.to_string();
        assert!(
            m.starts_with(
                "nc:13 is out of range: this process sees 12 NeuronCores (nc:0-nc:11); device \
                 ids are zero-based within NEURON_RT_VISIBLE_CORES"
            ),
            "{m}"
        );
        assert!(m.contains("`nc:N` or an integer N"), "{m}");
        // Case 41: [0..7] with 2 visible.
        let m = DeviceIds::from_indices(&[0, 1, 2, 3, 4, 5, 6, 7])
            .unwrap()
            .validate(2)
            .unwrap_err()
            .to_string();
        assert!(
            m.contains("nc:7 is out of range: this process sees 2 NeuronCores"),
            "{m}"
        );
        let m = DeviceIds::parse_list("1")
            .unwrap()
            .validate(1)
            .unwrap_err()
            .to_string();
        assert!(m.contains("sees 1 NeuronCore (nc:0)"), "{m}");
        let m = DeviceIds::parse_list("0")
            .unwrap()
            .validate(0)
            .unwrap_err()
            .to_string();
        assert!(m.contains("sees no NeuronCores"), "{m}");
        assert!(DeviceIds::parse_list("nc:11").unwrap().validate(12).is_ok());
    }

    #[test]
    fn sorted_and_round_robin() {
        // Case 37: [3,1] -> [1,3]; chunk 0 -> 1, chunk 1 -> 3.
        let ids = DeviceIds::from_indices(&[3, 1]).unwrap();
        assert_eq!(ids.as_slice(), [DeviceId(1), DeviceId(3)]);
        assert_eq!(ids.for_chunk(0), DeviceId(1));
        assert_eq!(ids.for_chunk(1), DeviceId(3));
        assert_eq!(ids.for_chunk(usize::MAX), DeviceId(3));
        assert_eq!(ids.contiguous_start(), None);
        // Case 38: consecutive ids.
        let ids = DeviceIds::parse_list("3,0,2,1").unwrap();
        assert_eq!(ids.contiguous_start(), Some(DeviceId(0)));
        assert_eq!(ids.len(), 4);
        assert!(!ids.is_empty());
        assert_eq!(ids.iter().count(), 4);
        assert_eq!(
            DeviceIds::all(3).unwrap(),
            DeviceIds::parse_list("0,1,2").unwrap()
        );
        assert_eq!(
            DeviceIds::all(0).unwrap_err().to_string(),
            DeviceIdError::NoVisibleCores.to_string()
        );
    }

    proptest! {
        #[test]
        fn parses_generated_lists(
            set in proptest::collection::btree_set(any::<u32>(), 1..20),
            style in proptest::collection::vec(0u8..4, 20),
            seed in any::<prop::sample::Index>(),
        ) {
            let sorted: Vec<u32> = set.into_iter().collect();
            let mut entries: Vec<String> = sorted
                .iter()
                .zip(style.iter().cycle())
                .map(|(&n, s)| match s {
                    0 => format!("nc:{n}"),
                    1 => n.to_string(),
                    2 => format!(" nc:{n}\t"),
                    _ => format!("00{n}"),
                })
                .collect();
            let k = seed.index(entries.len());
            entries.rotate_left(k);
            let ids = DeviceIds::parse_list(&entries.join(",")).unwrap();
            let got: Vec<u32> = ids.iter().map(|d| d.index()).collect();
            prop_assert_eq!(&got, &sorted);
            prop_assert_eq!(DeviceIds::parse_list(&ids.to_string()).unwrap(), ids.clone());
            prop_assert_eq!(DeviceIds::from_strs(&entries).unwrap(), ids.clone());
            let max = *sorted.last().unwrap();
            prop_assert!(ids.clone().validate(max.saturating_add(1)).is_ok() || max == u32::MAX);
            prop_assert!(ids.clone().validate(max).is_err());
            for c in 0..sorted.len() * 2 {
                prop_assert_eq!(ids.for_chunk(c).index(), sorted[c % sorted.len()]);
            }
        }

        #[test]
        fn never_panics(s in ".{0,40}", visible in any::<u32>()) {
            let _ = s.parse::<DeviceId>();
            let _ = DeviceIds::parse_list(&s).and_then(|ids| ids.validate(visible));
        }

        #[test]
        fn never_panics_on_id_like_input(s in "[nc:0-9, \\-]{0,24}", visible in 0u32..32) {
            if let Ok(ids) = DeviceIds::parse_list(&s).and_then(|ids| ids.validate(visible)) {
                prop_assert!(ids.iter().all(|d| d.index() < visible));
            }
        }

        #[test]
        fn never_panics_on_indices(v in proptest::collection::vec(any::<i64>(), 0..8)) {
            let _ = DeviceIds::from_indices(&v).map(|ids| ids.contiguous_start());
        }
    }
}
