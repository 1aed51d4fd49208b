//! NEFF files: the 1024-byte container header, validated, and the bytes `nrt_load` takes.
//!
//! This module owns the NEFF header layout and its structural checks ([`NeffHeader`]) and
//! the in-memory file ([`Neff`]). It never looks inside the payload and never calls libnrt.

use std::fmt;
use std::path::{Path, PathBuf};

/// Size of the NEFF header in bytes; the payload starts at this offset.
pub const NEFF_HEADER_SIZE: usize = 1024;

/// The highest `neff_version_major` known to load. The runtime's real limit is not public, so
/// a newer major version is only warned about: `nrt_load` decides.
pub const MAX_NEFF_VERSION_MAJOR: u64 = 2;

/// The prefix of a mock NEFF's build version string.
const MOCK_BUILD_PREFIX: &str = "nrt-mock";

/// Why bytes are not a loadable NEFF.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NeffError {
    /// Reading the file failed.
    #[error("cannot read NEFF file {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A file's contents are not a valid NEFF; `reason` says why.
    ///
    /// The message is `"<path>: <reason>"`; [`NeffError::root`] gives `reason`.
    #[error("{}: {reason}", path.display())]
    InFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with its contents (never another `InFile`).
        reason: Box<NeffError>,
    },
    /// Fewer bytes than the header needs.
    #[error(
        "not a NEFF: it is {len} bytes long, but a NEFF starts with a {NEFF_HEADER_SIZE}-byte \
         header; pass the compiler's .neff output (or a mock NEFF from `cargo xtask mock-neff`)"
    )]
    TooShort {
        /// Number of bytes given.
        len: usize,
    },
    /// `header_size` is not 1024.
    #[error(
        "not a NEFF: header_size is {header_size}, every NEFF has {NEFF_HEADER_SIZE}; the \
         file is not a NEFF or is corrupt"
    )]
    BadHeaderSize {
        /// The value found.
        header_size: u64,
    },
    /// `pkg_version` is neither 1 nor 2.
    #[error(
        "unsupported NEFF packager version {pkg_version}: only 1 (tar) and 2 (gzip-compressed \
         tar) exist; the file is corrupt or from a newer compiler than this crate knows"
    )]
    UnsupportedPackage {
        /// The value found.
        pkg_version: u64,
    },
    /// `neff_version_major` is newer than runtimes load. Header parsing no longer returns it
    /// (a newer major version is logged and left to `nrt_load`); kept for callers that match
    /// on it.
    #[error(
        "unsupported NEFF version {major}.{minor}: runtimes load major version \
         {MAX_NEFF_VERSION_MAJOR} or older; recompile with a neuronx-cc matching the runtime"
    )]
    UnsupportedVersion {
        /// `neff_version_major`.
        major: u64,
        /// `neff_version_minor`.
        minor: u64,
    },
    /// `data_size` claims more payload than the file holds.
    #[error(
        "truncated NEFF: the header promises {data_size} payload bytes after the \
         {NEFF_HEADER_SIZE}-byte header, but only {available} follow; the file was cut short \
         (re-copy or re-compile it)"
    )]
    DataPastEnd {
        /// Payload bytes the header declares.
        data_size: u64,
        /// Bytes present after the header.
        available: u64,
    },
}

impl NeffError {
    /// The error about the bytes themselves, looking through [`NeffError::InFile`].
    pub fn root(&self) -> &NeffError {
        match self {
            NeffError::InFile { reason, .. } => reason,
            other => other,
        }
    }
}

/// The validated fields of a NEFF header (layout: ARCHITECTURE.md, "The NEFF container").
///
/// A NEFF is a 1024-byte little-endian header followed by `data_size` payload bytes. It has
/// no magic number, so it is recognised by the checks libnrt applies at load time:
/// `header_size` is 1024, `pkg_version` is 1 (tar) or 2 (gzip-compressed tar),
/// and `data_size` fits in the file; a `neff_version_major` above 2 is logged and left to
/// `nrt_load`, since the runtime's real limit is not public. This works for real
/// compiler output and for mock NEFFs alike (a mock NEFF has `pkg_version` 1, a build version
/// starting with `nrt-mock`, and a JSON payload). Feature bits and the hash are reported,
/// not checked.
///
/// Strings are decoded up to their first NUL (or the whole field if there is none), with
/// invalid UTF-8 replaced by U+FFFD.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct NeffHeader {
    /// Packager version: 1 = tar + SHA-256, 2 = gzip-compressed tar + MD5.
    pub pkg_version: u64,
    /// Always [`NEFF_HEADER_SIZE`] once validated.
    pub header_size: u64,
    /// Payload bytes after the header.
    pub data_size: u64,
    /// NEFF format major version (above [`MAX_NEFF_VERSION_MAJOR`] only with a warning).
    pub neff_version_major: u64,
    /// NEFF format minor version.
    pub neff_version_minor: u64,
    /// Build version string (a compiler version, or `nrt-mock...` for mock NEFFs).
    pub build_version: String,
    /// NeuronCores (TPBs) needed for efficient execution.
    pub num_tpb: u32,
    /// Package hash (for pkg 2, MD5 of the compressed payload in the first 16 bytes).
    pub hash: [u8; 32],
    /// Unique id of the NEFF.
    pub uuid: [u8; 16],
    /// The NEFF's name.
    pub name: String,
    /// NeuronCores (TPBs) requested at compile time.
    pub requested_tpb_count: u32,
    /// TPBs per graph node.
    pub tpb_per_node: [u8; 64],
    /// Features that make the NEFF incompatible with older runtimes.
    pub feature_bits: u64,
    /// Logical-core size the NEFF needs (0 in NEFFs that predate the field).
    pub lnc_size: u32,
}

impl NeffHeader {
    /// Parses and validates the header of a whole NEFF file, including that the payload
    /// `data_size` declares is present.
    ///
    /// # Errors
    ///
    /// [`NeffError::TooShort`], [`NeffError::BadHeaderSize`],
    /// [`NeffError::UnsupportedPackage`] or
    /// [`NeffError::DataPastEnd`].
    pub fn parse(bytes: &[u8]) -> Result<Self, NeffError> {
        let header = Self::parse_header_only(bytes)?;
        let available =
            u64::try_from(bytes.len().saturating_sub(NEFF_HEADER_SIZE)).unwrap_or(u64::MAX);
        if header.data_size > available {
            return Err(NeffError::DataPastEnd {
                data_size: header.data_size,
                available,
            });
        }
        Ok(header)
    }

    /// Parses and validates the first 1024 bytes alone (for reading a header without the
    /// payload); does not check `data_size` against a file length.
    ///
    /// # Errors
    ///
    /// As [`NeffHeader::parse`], except [`NeffError::DataPastEnd`].
    pub fn parse_header_only(bytes: &[u8]) -> Result<Self, NeffError> {
        let Some(h) = bytes.get(..NEFF_HEADER_SIZE) else {
            return Err(NeffError::TooShort { len: bytes.len() });
        };
        let header_size = read_u64(h, 8);
        if header_size != NEFF_HEADER_SIZE as u64 {
            return Err(NeffError::BadHeaderSize { header_size });
        }
        let pkg_version = read_u64(h, 0);
        if !matches!(pkg_version, 1 | 2) {
            return Err(NeffError::UnsupportedPackage { pkg_version });
        }
        let neff_version_major = read_u64(h, 24);
        let neff_version_minor = read_u64(h, 32);
        if neff_version_major > MAX_NEFF_VERSION_MAJOR {
            // The runtime's limit is not public: say what we know and let nrt_load decide.
            log::warn!(
                "NEFF version {neff_version_major}.{neff_version_minor} is newer than the \
                 major version {MAX_NEFF_VERSION_MAJOR} known to load; leaving it to the \
                 runtime (if nrt_load refuses it, recompile with a neuronx-cc matching the \
                 runtime)"
            );
        }
        Ok(Self {
            pkg_version,
            header_size,
            data_size: read_u64(h, 16),
            neff_version_major,
            neff_version_minor,
            build_version: read_str(h, 40, 128),
            num_tpb: read_u32(h, 168),
            hash: read_array(h, 172),
            uuid: read_array(h, 204),
            name: read_str(h, 220, 256),
            requested_tpb_count: read_u32(h, 476),
            tpb_per_node: read_array(h, 480),
            feature_bits: read_u64(h, 544),
            lnc_size: read_u32(h, 552),
        })
    }

    /// Whether the build version marks a mock NEFF (starts with `nrt-mock`).
    pub fn is_mock(&self) -> bool {
        self.build_version.starts_with(MOCK_BUILD_PREFIX)
    }

    /// Whether the payload is a gzip-compressed tar (`pkg_version` 2).
    pub fn is_compressed(&self) -> bool {
        self.pkg_version == 2
    }

    /// The uuid as 32 lower-case hex digits in the usual 8-4-4-4-12 grouping.
    ///
    /// ```
    /// # use neuron_rt::NeffHeader;
    /// # let mut b = vec![0u8; 1024];
    /// # b[0] = 1; b[9] = 4; // pkg_version 1, header_size 1024
    /// # b[204..220].copy_from_slice(&[0xab; 16]);
    /// let header = NeffHeader::parse(&b)?;
    /// assert_eq!(header.uuid_string(), "abababab-abab-abab-abab-abababababab");
    /// # Ok::<(), neuron_rt::NeffError>(())
    /// ```
    pub fn uuid_string(&self) -> String {
        let mut s = String::with_capacity(36);
        for (i, b) in self.uuid.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                s.push('-');
            }
            s.push_str(&format!("{b:02x}"));
        }
        s
    }
}

/// A NEFF file held in memory: its validated header and all its bytes (what `nrt_load`
/// takes).
///
/// ```
/// use neuron_rt::Neff;
/// # fn neff_bytes() -> Vec<u8> {
/// #     let payload = br#"{"op":"identity"}"#;
/// #     let mut b = vec![0u8; 1024];
/// #     b[0..8].copy_from_slice(&1u64.to_le_bytes());
/// #     b[8..16].copy_from_slice(&1024u64.to_le_bytes());
/// #     b[16..24].copy_from_slice(&(payload.len() as u64).to_le_bytes());
/// #     b[24..32].copy_from_slice(&2u64.to_le_bytes());
/// #     b[40..48].copy_from_slice(b"nrt-mock");
/// #     b[220..225].copy_from_slice(b"model");
/// #     b.extend_from_slice(payload);
/// #     b
/// # }
///
/// let neff = Neff::from_bytes(neff_bytes())?;
/// assert_eq!(neff.name(), "model");
/// assert!(neff.is_mock());
/// assert!(!neff.is_compressed());
/// assert_eq!(neff.payload(), br#"{"op":"identity"}"#);
/// # Ok::<(), neuron_rt::NeffError>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Neff {
    header: NeffHeader,
    bytes: Vec<u8>,
}

impl Neff {
    /// Validates `bytes` as a NEFF and keeps them.
    ///
    /// # Errors
    ///
    /// As [`NeffHeader::parse`].
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, NeffError> {
        let header = NeffHeader::parse(&bytes)?;
        Ok(Self { header, bytes })
    }

    /// Reads and validates a NEFF file: only a regular file, of at most
    /// [`MAX_NEFF_FILE_BYTES`](crate::file::MAX_NEFF_FILE_BYTES) (a device, FIFO or directory
    /// is refused without reading; see [`crate::file`]).
    ///
    /// ```
    /// use neuron_rt::Neff;
    ///
    /// let err = Neff::from_path("/nonexistent/model.neff".as_ref()).unwrap_err();
    /// assert!(err.to_string().contains("/nonexistent/model.neff"));
    /// ```
    ///
    /// # Errors
    ///
    /// [`NeffError::Io`] if the file cannot be read, is not a regular file or is too large,
    /// [`NeffError::InFile`] (wrapping the reason) if its contents are not a valid NEFF; both
    /// name the path.
    pub fn from_path(path: &Path) -> Result<Self, NeffError> {
        let bytes = crate::file::read_regular(path, "NEFF", crate::file::MAX_NEFF_FILE_BYTES)
            .map_err(|source| NeffError::Io {
                path: path.to_owned(),
                source,
            })?;
        Self::from_bytes(bytes).map_err(|reason| NeffError::InFile {
            path: path.to_owned(),
            reason: Box::new(reason),
        })
    }

    /// The validated header.
    pub fn header(&self) -> &NeffHeader {
        &self.header
    }

    /// The NEFF's name from the header.
    pub fn name(&self) -> &str {
        &self.header.name
    }

    /// The NEFF's uuid from the header.
    pub fn uuid(&self) -> &[u8; 16] {
        &self.header.uuid
    }

    /// The `data_size` payload bytes after the header (JSON for a mock NEFF, a tar or
    /// gzip-compressed tar for a real one). Bytes past `data_size`, if any, are not included.
    pub fn payload(&self) -> &[u8] {
        let end = usize::try_from(self.header.data_size)
            .ok()
            .and_then(|n| n.checked_add(NEFF_HEADER_SIZE))
            .unwrap_or(usize::MAX);
        // Validated at construction: the range is in bounds; `get` keeps this panic-free.
        self.bytes.get(NEFF_HEADER_SIZE..end).unwrap_or(&[])
    }

    /// Whether this is a mock NEFF (build version starts with `nrt-mock`).
    pub fn is_mock(&self) -> bool {
        self.header.is_mock()
    }

    /// Whether the payload is gzip-compressed (`pkg_version` 2).
    pub fn is_compressed(&self) -> bool {
        self.header.is_compressed()
    }

    /// The whole file, header included: what `nrt_load` takes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Gives the file's bytes back.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

/// Shows the header, not the (possibly large) bytes.
impl fmt::Debug for Neff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Neff")
            .field("header", &self.header)
            .field("len", &self.bytes.len())
            .finish()
    }
}

/// `N` bytes at `offset` of the header slice; zeros if out of range (never, for a 1024-byte
/// slice and the fixed offsets above).
fn read_array<const N: usize>(h: &[u8], offset: usize) -> [u8; N] {
    h.get(offset..offset.saturating_add(N))
        .and_then(|s| <[u8; N]>::try_from(s).ok())
        .unwrap_or([0; N])
}

fn read_u64(h: &[u8], offset: usize) -> u64 {
    u64::from_le_bytes(read_array(h, offset))
}

fn read_u32(h: &[u8], offset: usize) -> u32 {
    u32::from_le_bytes(read_array(h, offset))
}

/// A NUL-terminated string field of `len` bytes; unterminated fields use every byte.
fn read_str(h: &[u8], offset: usize, len: usize) -> String {
    let field = h.get(offset..offset.saturating_add(len)).unwrap_or(&[]);
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(field.get(..end).unwrap_or(field)).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A mock NEFF: the header as the mock writes it, then a JSON payload.
    fn mock_neff(name: &str, payload: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; NEFF_HEADER_SIZE];
        put(&mut b, 0, &1u64.to_le_bytes());
        put(&mut b, 8, &1024u64.to_le_bytes());
        put(&mut b, 16, &(payload.len() as u64).to_le_bytes());
        put(&mut b, 24, &2u64.to_le_bytes());
        put(&mut b, 32, &0u64.to_le_bytes());
        put(&mut b, 40, b"nrt-mock 0.1.0");
        put(&mut b, 168, &1u32.to_le_bytes());
        put(&mut b, 172, &[7u8; 32]);
        put(&mut b, 204, &(0u8..16).collect::<Vec<_>>());
        put(&mut b, 220, name.as_bytes());
        put(&mut b, 476, &1u32.to_le_bytes());
        put(&mut b, 544, &0x10u64.to_le_bytes());
        put(&mut b, 552, &1u32.to_le_bytes());
        b.extend_from_slice(payload);
        b
    }

    fn put(b: &mut [u8], offset: usize, v: &[u8]) {
        b[offset..offset + v.len()].copy_from_slice(v);
    }

    const JSON: &[u8] =
        br#"{"inputs":[{"name":"x","dtype":"float32","shape":[1,4]}],"op":"identity"}"#;

    #[test]
    fn parses_mock_neff() {
        let neff = Neff::from_bytes(mock_neff("resnet", JSON)).unwrap();
        let h = neff.header();
        assert_eq!(h.pkg_version, 1);
        assert_eq!(h.header_size, 1024);
        assert_eq!(h.data_size, JSON.len() as u64);
        assert_eq!((h.neff_version_major, h.neff_version_minor), (2, 0));
        assert_eq!(h.build_version, "nrt-mock 0.1.0");
        assert_eq!(h.num_tpb, 1);
        assert_eq!(h.hash, [7; 32]);
        assert_eq!(h.requested_tpb_count, 1);
        assert_eq!(h.tpb_per_node, [0; 64]);
        assert_eq!(h.feature_bits, 0x10);
        assert_eq!(h.lnc_size, 1);
        assert_eq!(neff.name(), "resnet");
        assert_eq!(neff.uuid(), &core::array::from_fn::<u8, 16, _>(|i| i as u8));
        assert_eq!(h.uuid_string(), "00010203-0405-0607-0809-0a0b0c0d0e0f");
        assert_eq!(neff.payload(), JSON);
        assert!(neff.is_mock());
        assert!(!neff.is_compressed());
        assert_eq!(neff.as_bytes().len(), 1024 + JSON.len());
        assert!(format!("{neff:?}").contains("resnet"));
        assert_eq!(neff.into_bytes(), mock_neff("resnet", JSON));
    }

    #[test]
    fn real_looking_compressed_neff() {
        let mut b = mock_neff("real", &[0x1f, 0x8b, 8, 0, 0, 0]);
        put(&mut b, 0, &2u64.to_le_bytes());
        put(&mut b, 40, &[0u8; 128]);
        put(&mut b, 40, b"2.15.128.0+abcdef");
        let neff = Neff::from_bytes(b).unwrap();
        assert!(neff.is_compressed());
        assert!(!neff.is_mock());
        assert_eq!(neff.payload(), [0x1f, 0x8b, 8, 0, 0, 0]);
    }

    #[test]
    fn trailing_bytes_are_not_payload() {
        let mut b = mock_neff("m", b"{}");
        b.extend_from_slice(b"trailing");
        let neff = Neff::from_bytes(b).unwrap();
        assert_eq!(neff.payload(), b"{}");
    }

    #[test]
    fn rejects_short_input() {
        for len in [0, 1, 100, 1023] {
            let e = NeffHeader::parse(&vec![0u8; len]).unwrap_err();
            assert!(matches!(e, NeffError::TooShort { len: l } if l == len));
            let m = e.to_string();
            assert!(m.contains(&format!("it is {len} bytes long")), "{m}");
            assert!(m.contains("a NEFF starts with a 1024-byte header"), "{m}");
        }
    }

    #[test]
    fn rejects_wrong_header_size() {
        let mut b = mock_neff("m", JSON);
        put(&mut b, 8, &1000u64.to_le_bytes());
        let m = NeffHeader::parse(&b).unwrap_err().to_string();
        assert!(
            m.contains("header_size is 1000, every NEFF has 1024"),
            "{m}"
        );
        // A JSON file is not a NEFF.
        let mut json = JSON.to_vec();
        json.resize(2048, b' ');
        assert!(matches!(
            NeffHeader::parse(&json),
            Err(NeffError::BadHeaderSize { .. })
        ));
    }

    #[test]
    fn rejects_unsupported_package() {
        for v in [0u64, 3, u64::MAX] {
            let mut b = mock_neff("m", JSON);
            put(&mut b, 0, &v.to_le_bytes());
            let m = NeffHeader::parse(&b).unwrap_err().to_string();
            assert!(
                m.contains(&format!("unsupported NEFF packager version {v}")),
                "{m}"
            );
            assert!(m.contains("only 1 (tar) and 2"), "{m}");
        }
    }

    #[test]
    fn newer_neff_versions_are_left_to_the_runtime() {
        let mut b = mock_neff("m", JSON);
        put(&mut b, 24, &3u64.to_le_bytes());
        put(&mut b, 32, &1u64.to_le_bytes());
        let h = NeffHeader::parse(&b).expect("nrt_load decides, not the header check");
        assert_eq!((h.neff_version_major, h.neff_version_minor), (3, 1));
        put(&mut b, 24, &1u64.to_le_bytes());
        assert!(NeffHeader::parse(&b).is_ok());
    }

    #[test]
    fn rejects_data_past_end() {
        let mut b = mock_neff("m", JSON);
        b.pop();
        let e = NeffHeader::parse(&b).unwrap_err();
        let m = e.to_string();
        assert!(
            m.contains(&format!(
                "promises {} payload bytes after the 1024-byte header, but only {} follow",
                JSON.len(),
                JSON.len() - 1
            )),
            "{m}"
        );
        // The header alone still parses.
        assert!(NeffHeader::parse_header_only(&b).is_ok());
        let mut b = mock_neff("m", JSON);
        put(&mut b, 16, &u64::MAX.to_le_bytes());
        assert!(matches!(
            Neff::from_bytes(b),
            Err(NeffError::DataPastEnd {
                data_size: u64::MAX,
                ..
            })
        ));
    }

    #[test]
    fn odd_names_are_lossy_not_errors() {
        // Unterminated: all 256 bytes are the name.
        let mut b = mock_neff("", JSON);
        put(&mut b, 220, &[b'a'; 256]);
        assert_eq!(NeffHeader::parse(&b).unwrap().name, "a".repeat(256));
        // Invalid UTF-8 becomes U+FFFD.
        put(&mut b, 220, &[b'x', 0xff, b'y', 0]);
        assert_eq!(NeffHeader::parse(&b).unwrap().name, "x\u{fffd}y");
        // Unterminated build version.
        put(&mut b, 40, &[b'v'; 128]);
        assert_eq!(NeffHeader::parse(&b).unwrap().build_version.len(), 128);
    }

    #[test]
    fn from_path_names_the_path() {
        let dir = std::env::temp_dir().join(format!("neuron-rt-neff-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.neff");
        std::fs::write(&good, mock_neff("disk", JSON)).unwrap();
        assert_eq!(Neff::from_path(&good).unwrap().name(), "disk");

        let bad = dir.join("bad.neff");
        std::fs::write(&bad, b"not a neff").unwrap();
        let e = Neff::from_path(&bad).unwrap_err();
        let m = e.to_string();
        assert!(m.starts_with(&bad.display().to_string()), "{m}");
        assert!(m.contains("it is 10 bytes long"), "{m}");
        assert!(matches!(e.root(), NeffError::TooShort { len: 10 }));

        let missing = dir.join("missing.neff");
        let e = Neff::from_path(&missing).unwrap_err();
        let m = e.to_string();
        assert!(m.contains("cannot read NEFF file"), "{m}");
        assert!(m.contains("missing.neff"), "{m}");
        assert!(std::error::Error::source(&e).is_some());

        // Anything but a regular file is refused without reading (`/dev/zero` never ends).
        for (path, kind) in [("/dev/zero", "character device"), ("/", "directory")] {
            let m = Neff::from_path(Path::new(path)).unwrap_err().to_string();
            assert!(m.contains(kind) && m.contains("regular NEFF file"), "{m}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(b in proptest::collection::vec(any::<u8>(), 0..2100)) {
            let _ = NeffHeader::parse(&b);
            let _ = NeffHeader::parse_header_only(&b);
            if let Ok(n) = Neff::from_bytes(b) {
                let _ = (n.payload(), n.name(), n.header().uuid_string());
            }
        }

        #[test]
        fn truncation_is_an_error(cut in 0usize..(1024 + JSON.len())) {
            let mut b = mock_neff("m", JSON);
            b.truncate(cut);
            let e = Neff::from_bytes(b).unwrap_err();
            let expected = if cut < 1024 {
                matches!(e, NeffError::TooShort { len } if len == cut)
            } else {
                matches!(e, NeffError::DataPastEnd { available, .. } if available == (cut - 1024) as u64)
            };
            prop_assert!(expected, "cut {}: {}", cut, e);
        }

        #[test]
        fn header_size_flip_is_an_error(byte in 8usize..16, bit in 0u8..8) {
            let mut b = mock_neff("m", JSON);
            b[byte] ^= 1 << bit;
            let is_bad_header_size = matches!(
                Neff::from_bytes(b),
                Err(NeffError::BadHeaderSize { .. })
            );
            prop_assert!(is_bad_header_size);
        }

        #[test]
        fn data_size_past_end_is_an_error(extra in 1u64..=u64::MAX - JSON.len() as u64) {
            let mut b = mock_neff("m", JSON);
            put(&mut b, 16, &(JSON.len() as u64 + extra).to_le_bytes());
            let is_past_end = matches!(
                Neff::from_bytes(b),
                Err(NeffError::DataPastEnd { .. })
            );
            prop_assert!(is_past_end);
        }

        #[test]
        fn corrupted_headers_never_panic(
            flips in proptest::collection::vec((0usize..1024 + JSON.len(), any::<u8>()), 0..16)
        ) {
            let mut b = mock_neff("m", JSON);
            for (i, x) in flips {
                if let Some(v) = b.get_mut(i) {
                    *v ^= x;
                }
            }
            if let Ok(n) = Neff::from_bytes(b) {
                prop_assert!(n.payload().len() as u64 == n.header().data_size);
            }
        }
    }
}
