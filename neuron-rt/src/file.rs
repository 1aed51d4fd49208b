//! Reading the files a user names (a NEFF, or a front-end's input files) without trusting
//! them.
//!
//! A path may name anything: `/dev/zero` (endless), a FIFO (opening it blocks until a writer
//! comes), a directory, a terminal, or a regular file far larger than memory. Only regular
//! files are read: the file is opened with `O_NONBLOCK` (so opening a FIFO cannot hang), then
//! `fstat` on the open descriptor decides (no check-then-open race), and the size it reports
//! is the most that is ever read (a file that grows while being read is cut at that size).
//! Each caller passes the largest size it accepts; [`Neff::from_path`](crate::Neff::from_path)
//! uses [`MAX_NEFF_FILE_BYTES`].

use std::fs::{File, OpenOptions};
use std::io::{self, Read as _};
use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};
use std::path::Path;

/// The largest NEFF file read (16 GiB): compiled models are far smaller, and the whole file
/// is held in memory to load it.
pub const MAX_NEFF_FILE_BYTES: u64 = 16 << 30;

/// What a path names, for messages: "a directory", "a FIFO", ...
fn kind(file_type: std::fs::FileType) -> &'static str {
    if file_type.is_dir() {
        "a directory"
    } else if file_type.is_fifo() {
        "a FIFO (named pipe)"
    } else if file_type.is_char_device() {
        "a character device"
    } else if file_type.is_block_device() {
        "a block device"
    } else if file_type.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

/// Why a file was refused, as an `io::Error` whose message says what to do.
fn refused(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

/// Opens `path` if it is a regular file of at most `limit` bytes; returns the file and its
/// size. `what` names the kind of file for messages ("NEFF", ".npy"). The error's message
/// does not repeat the path (callers say which file it was).
///
/// # Errors
///
/// The OS error when the file cannot be opened or `fstat`ed; an
/// [`io::ErrorKind::InvalidInput`] error when it is not a regular file or is larger than
/// `limit`.
pub fn open_regular(path: &Path, what: &str, limit: u64) -> io::Result<(File, u64)> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let metadata = file.metadata()?;
    let file_type = metadata.file_type();
    if !file_type.is_file() {
        return Err(refused(format!(
            "it is {}; give a regular {what} file (devices, pipes and stdin are not read)",
            kind(file_type)
        )));
    }
    let len = metadata.len();
    if len > limit {
        return Err(refused(format!(
            "it is {len} bytes, above the {limit}-byte limit for {what} files"
        )));
    }
    Ok((file, len))
}

/// Reads the whole of `path` if it is a regular file of at most `limit` bytes (see
/// [`open_regular`]); the buffer is reserved once, fallibly, for the size `fstat` reported.
///
/// # Errors
///
/// As [`open_regular`], and the OS error of a failed read; an
/// [`io::ErrorKind::InvalidInput`] error when the buffer cannot be allocated.
pub fn read_regular(path: &Path, what: &str, limit: u64) -> io::Result<Vec<u8>> {
    let (file, len) = open_regular(path, what, limit)?;
    let capacity = usize::try_from(len).map_err(|_| refused("too large".to_owned()))?;
    let mut bytes = Vec::new();
    bytes
        .try_reserve_exact(capacity)
        .map_err(|_| refused(format!("cannot allocate {len} bytes to read it")))?;
    file.take(len).read_to_end(&mut bytes)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_and_directories_are_refused_without_reading() {
        let e = open_regular(Path::new("/dev/zero"), "NEFF", 1 << 20).unwrap_err();
        assert!(e.to_string().contains("character device"), "{e}");
        let e = open_regular(Path::new("/"), ".npy", 1 << 20).unwrap_err();
        assert!(e.to_string().contains("directory"), "{e}");
        let e = read_regular(Path::new("/dev/zero"), "NEFF", 1 << 20).unwrap_err();
        assert!(e.to_string().contains("regular NEFF file"), "{e}");
    }

    #[test]
    fn files_above_the_limit_are_refused_and_others_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, [7u8; 100]).unwrap();
        let e = read_regular(&path, "NEFF", 99).unwrap_err();
        assert!(e.to_string().contains("above the 99-byte limit"), "{e}");
        assert_eq!(read_regular(&path, "NEFF", 100).unwrap(), [7u8; 100]);
    }
}
