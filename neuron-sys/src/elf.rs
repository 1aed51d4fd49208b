//! Checks that a shared-library file is whole, and for this machine, before `dlopen` maps it.
//!
//! `dlopen` maps the segments a library's program headers name. When the file is shorter than
//! they say (a copy cut short, a half-written download, a full disk), touching the missing
//! pages kills the process with `SIGBUS` inside the dynamic linker, before any error can be
//! returned. [`check_library_file`] reads only the ELF header and the program header table,
//! both bounded by the file's size, and refuses a file that is not an ELF shared object for
//! the running target (class, byte order, machine) or whose program header table, section
//! header table or loadable segments reach past its end.
//!
//! The check runs on the file as it is at that moment; a file replaced between the check and
//! `dlopen` is not covered (nothing short of the dynamic linker itself could cover it).

use std::fmt;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

const ELF_MAGIC: [u8; 4] = [0x7f, b'E', b'L', b'F'];
const ELFCLASS32: u8 = 1;
const ELFCLASS64: u8 = 2;
const ELFDATA2LSB: u8 = 1;
const ELFDATA2MSB: u8 = 2;
const ET_DYN: u16 = 3;
const PT_LOAD: u32 = 1;

/// The ELF class of the running target.
const NATIVE_CLASS: u8 = if cfg!(target_pointer_width = "64") {
    ELFCLASS64
} else {
    ELFCLASS32
};

/// The ELF byte order of the running target.
const NATIVE_DATA: u8 = if cfg!(target_endian = "big") {
    ELFDATA2MSB
} else {
    ELFDATA2LSB
};

/// The ELF `e_machine` of the running target, where known (unknown: not checked).
const NATIVE_MACHINE: Option<u16> = if cfg!(target_arch = "x86_64") {
    Some(62)
} else if cfg!(target_arch = "aarch64") {
    Some(183)
} else if cfg!(target_arch = "x86") {
    Some(3)
} else if cfg!(target_arch = "arm") {
    Some(40)
} else if cfg!(any(target_arch = "riscv64", target_arch = "riscv32")) {
    Some(243)
} else if cfg!(target_arch = "powerpc64") {
    Some(21)
} else if cfg!(target_arch = "s390x") {
    Some(22)
} else if cfg!(target_arch = "loongarch64") {
    Some(258)
} else {
    None
};

/// What is wrong with a library file.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ElfProblem {
    /// The file is shorter than an ELF header.
    TooShort {
        /// The file's size in bytes.
        len: u64,
    },
    /// The file does not start with the ELF magic bytes.
    NotElf,
    /// An ELF class other than the running target's (32- vs 64-bit), or an invalid one.
    WrongClass {
        /// `EI_CLASS` as found.
        found: u8,
    },
    /// A byte order other than the running target's, or an invalid one.
    WrongByteOrder {
        /// `EI_DATA` as found.
        found: u8,
    },
    /// An ELF object for another processor.
    WrongMachine {
        /// `e_machine` as found.
        found: u16,
        /// The running target's `e_machine`.
        expected: u16,
    },
    /// An ELF object that is not a shared object (an executable, an object file, a core).
    NotSharedObject {
        /// `e_type` as found.
        e_type: u16,
    },
    /// A header field that cannot be right.
    BadField {
        /// The field's name.
        field: &'static str,
        /// Its value.
        value: u64,
    },
    /// Something the headers name lies past the end of the file: the file is truncated.
    PastEnd {
        /// What: `program header table`, `section header table`, `loadable segment 2`.
        what: String,
        /// The byte just past its end.
        end: u64,
        /// The file's size in bytes.
        len: u64,
    },
    /// The file could be opened but not read.
    Unreadable {
        /// The operating system's reason.
        reason: String,
    },
}

impl ElfProblem {
    /// True when the file is for another machine rather than damaged.
    pub fn is_foreign(&self) -> bool {
        matches!(
            self,
            ElfProblem::WrongClass { .. }
                | ElfProblem::WrongByteOrder { .. }
                | ElfProblem::WrongMachine { .. }
        )
    }
}

impl fmt::Display for ElfProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ElfProblem::TooShort { len } => {
                write!(f, "the file is {len} bytes, shorter than an ELF header")
            }
            ElfProblem::NotElf => write!(f, "not an ELF file: no ELF magic bytes at its start"),
            ElfProblem::WrongClass { found } => write!(
                f,
                "ELF class {found} ({}), but this process is {}",
                class_name(*found),
                class_name(NATIVE_CLASS)
            ),
            ElfProblem::WrongByteOrder { found } => write!(
                f,
                "byte order {found} ({}), but this process is {}",
                data_name(*found),
                data_name(NATIVE_DATA)
            ),
            ElfProblem::WrongMachine { found, expected } => write!(
                f,
                "built for ELF machine {found}, but this process runs on machine {expected} ({})",
                std::env::consts::ARCH
            ),
            ElfProblem::NotSharedObject { e_type } => {
                write!(f, "ELF type {e_type}, not a shared object (type 3)")
            }
            ElfProblem::BadField { field, value } => {
                write!(f, "impossible ELF header field {field} = {value}")
            }
            ElfProblem::PastEnd { what, end, len } => write!(
                f,
                "the file is {len} bytes but its {what} ends at byte {end}"
            ),
            ElfProblem::Unreadable { reason } => write!(f, "cannot read it: {reason}"),
        }
    }
}

fn class_name(class: u8) -> &'static str {
    match class {
        ELFCLASS32 => "32-bit",
        ELFCLASS64 => "64-bit",
        _ => "invalid",
    }
}

fn data_name(data: u8) -> &'static str {
    match data {
        ELFDATA2LSB => "little-endian",
        ELFDATA2MSB => "big-endian",
        _ => "invalid",
    }
}

/// A library file `dlopen` must not be given: truncated, corrupt, or for another machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LibraryFileError {
    path: PathBuf,
    problem: ElfProblem,
}

impl LibraryFileError {
    /// The file checked.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What is wrong with it.
    pub fn problem(&self) -> &ElfProblem {
        &self.problem
    }
}

impl fmt::Display for LibraryFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.problem.is_foreign() {
            write!(
                f,
                "shared library for another machine: {} ({}); install the library built for \
                 this machine",
                self.path.display(),
                self.problem
            )
        } else {
            write!(
                f,
                "truncated or corrupt shared library: {} ({}); reinstall \
                 aws-neuronx-runtime-lib, or copy the library again",
                self.path.display(),
                self.problem
            )
        }
    }
}

impl std::error::Error for LibraryFileError {}

/// Checks that `path` is an ELF shared object for the running target whose program header
/// table, section header table and loadable segments all lie within the file, reading only
/// its ELF header and program header table.
///
/// A path that cannot be opened, or is not a regular file, passes: `dlopen` reports those
/// itself, with the operating system's reason.
///
/// # Errors
///
/// [`LibraryFileError`] naming the file and the problem.
pub fn check_library_file(path: &Path) -> Result<(), LibraryFileError> {
    let Ok(mut file) = File::open(path) else {
        return Ok(());
    };
    let len = match file.metadata() {
        Ok(meta) if meta.is_file() => meta.len(),
        _ => return Ok(()),
    };
    check_elf(&mut file, len).map_err(|problem| LibraryFileError {
        path: path.to_path_buf(),
        problem,
    })
}

/// The fields of an ELF header this check needs.
struct Header {
    big_endian: bool,
    is64: bool,
    phoff: u64,
    phentsize: u64,
    phnum: u64,
    shoff: u64,
    shentsize: u64,
    shnum: u64,
}

/// Reads a little- or big-endian unsigned integer of `N` bytes at `at`.
fn uint<const N: usize>(bytes: &[u8], at: usize, big_endian: bool) -> u64 {
    let mut value = 0u64;
    for k in 0..N {
        let byte = bytes[if big_endian { at + k } else { at + N - 1 - k }];
        value = (value << 8) | u64::from(byte);
    }
    value
}

fn read_at(file: &mut (impl Read + Seek), offset: u64, buf: &mut [u8]) -> Result<(), ElfProblem> {
    file.seek(SeekFrom::Start(offset))
        .and_then(|_| file.read_exact(buf))
        .map_err(|e| ElfProblem::Unreadable {
            reason: e.to_string(),
        })
}

/// `start + count * size`, or `None` when it overflows.
fn table_end(start: u64, count: u64, size: u64) -> Option<u64> {
    count.checked_mul(size)?.checked_add(start)
}

fn within(what: impl FnOnce() -> String, end: Option<u64>, len: u64) -> Result<(), ElfProblem> {
    match end {
        Some(end) if end <= len => Ok(()),
        _ => Err(ElfProblem::PastEnd {
            what: what(),
            end: end.unwrap_or(u64::MAX),
            len,
        }),
    }
}

/// Checks an ELF file of `len` bytes read from `file`.
pub(crate) fn check_elf(file: &mut (impl Read + Seek), len: u64) -> Result<(), ElfProblem> {
    let header = read_header(file, len)?;
    let (phdr_size, shdr_size) = if header.is64 { (56, 64) } else { (32, 40) };
    if header.phnum > 0 && header.phentsize != phdr_size {
        return Err(ElfProblem::BadField {
            field: "e_phentsize",
            value: header.phentsize,
        });
    }
    let ph_end = table_end(header.phoff, header.phnum, phdr_size);
    within(|| "program header table".to_owned(), ph_end, len)?;
    if header.shoff != 0 {
        // e_shnum 0 with a table present means the count is in the first entry: at least
        // that entry must be there.
        let count = header.shnum.max(1);
        let size = if header.shentsize == 0 {
            shdr_size
        } else {
            header.shentsize
        };
        let sh_end = table_end(header.shoff, count, size);
        within(|| "section header table".to_owned(), sh_end, len)?;
    }
    // Bounded: phnum < 2^16 entries of 56 bytes, and the table lies within the file.
    let mut table = vec![0u8; (header.phnum * phdr_size) as usize];
    read_at(file, header.phoff, &mut table)?;
    for (index, entry) in table.chunks_exact(phdr_size as usize).enumerate() {
        let be = header.big_endian;
        let p_type = uint::<4>(entry, 0, be) as u32;
        if p_type != PT_LOAD {
            continue;
        }
        let (offset, filesz) = if header.is64 {
            (uint::<8>(entry, 8, be), uint::<8>(entry, 32, be))
        } else {
            (uint::<4>(entry, 4, be), uint::<4>(entry, 16, be))
        };
        within(
            || format!("loadable segment (program header {index})"),
            offset.checked_add(filesz),
            len,
        )?;
    }
    Ok(())
}

fn read_header(file: &mut (impl Read + Seek), len: u64) -> Result<Header, ElfProblem> {
    let mut bytes = [0u8; 64];
    let available = len.min(64) as usize;
    read_at(file, 0, &mut bytes[..available])?;
    if available < 16 || bytes[..4] != ELF_MAGIC {
        return Err(if available >= 4 && bytes[..4] != ELF_MAGIC {
            ElfProblem::NotElf
        } else {
            ElfProblem::TooShort { len }
        });
    }
    let class = bytes[4];
    if class != NATIVE_CLASS {
        return Err(ElfProblem::WrongClass { found: class });
    }
    let data = bytes[5];
    if data != NATIVE_DATA {
        return Err(ElfProblem::WrongByteOrder { found: data });
    }
    let is64 = class == ELFCLASS64;
    let header_size = if is64 { 64 } else { 52 };
    if available < header_size {
        return Err(ElfProblem::TooShort { len });
    }
    let be = data == ELFDATA2MSB;
    let e_type = uint::<2>(&bytes, 16, be) as u16;
    let machine = uint::<2>(&bytes, 18, be) as u16;
    if let Some(expected) = NATIVE_MACHINE {
        if machine != expected {
            return Err(ElfProblem::WrongMachine {
                found: machine,
                expected,
            });
        }
    }
    if e_type != ET_DYN {
        return Err(ElfProblem::NotSharedObject { e_type });
    }
    Ok(if is64 {
        Header {
            big_endian: be,
            is64,
            phoff: uint::<8>(&bytes, 32, be),
            shoff: uint::<8>(&bytes, 40, be),
            phentsize: uint::<2>(&bytes, 54, be),
            phnum: uint::<2>(&bytes, 56, be),
            shentsize: uint::<2>(&bytes, 58, be),
            shnum: uint::<2>(&bytes, 60, be),
        }
    } else {
        Header {
            big_endian: be,
            is64,
            phoff: uint::<4>(&bytes, 28, be),
            shoff: uint::<4>(&bytes, 32, be),
            phentsize: uint::<2>(&bytes, 42, be),
            phnum: uint::<2>(&bytes, 44, be),
            shentsize: uint::<2>(&bytes, 46, be),
            shnum: uint::<2>(&bytes, 48, be),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Cursor;

    /// A minimal native ELF shared-object image: header, `phnum` program headers right
    /// after it (the first `PT_LOAD` covering `load` bytes from offset 0), no sections.
    fn image(load: u64, total: usize) -> Vec<u8> {
        let is64 = NATIVE_CLASS == ELFCLASS64;
        let be = NATIVE_DATA == ELFDATA2MSB;
        let put = |bytes: &mut Vec<u8>, at: usize, n: usize, value: u64| {
            for k in 0..n {
                let shift = 8 * if be { n - 1 - k } else { k };
                bytes[at + k] = (value >> shift) as u8;
            }
        };
        let mut b = vec![0u8; total];
        b[..4].copy_from_slice(&ELF_MAGIC);
        b[4] = NATIVE_CLASS;
        b[5] = NATIVE_DATA;
        b[6] = 1;
        put(&mut b, 16, 2, u64::from(ET_DYN));
        put(&mut b, 18, 2, u64::from(NATIVE_MACHINE.unwrap_or(0)));
        if is64 {
            put(&mut b, 32, 8, 64); // e_phoff
            put(&mut b, 54, 2, 56); // e_phentsize
            put(&mut b, 56, 2, 1); // e_phnum
            put(&mut b, 64, 4, u64::from(PT_LOAD));
            put(&mut b, 64 + 8, 8, 0); // p_offset
            put(&mut b, 64 + 32, 8, load); // p_filesz
        } else {
            put(&mut b, 28, 4, 52);
            put(&mut b, 42, 2, 32);
            put(&mut b, 44, 2, 1);
            put(&mut b, 52, 4, u64::from(PT_LOAD));
            put(&mut b, 52 + 4, 4, 0);
            put(&mut b, 52 + 16, 4, load);
        }
        b
    }

    fn check(bytes: &[u8]) -> Result<(), ElfProblem> {
        check_elf(&mut Cursor::new(bytes), bytes.len() as u64)
    }

    #[test]
    fn a_whole_image_passes() {
        assert_eq!(check(&image(200, 200)), Ok(()));
        assert_eq!(check(&image(120, 200)), Ok(()));
    }

    #[test]
    fn a_segment_past_the_end_is_named() {
        let problem = check(&image(4096, 200)).expect_err("the segment ends past the file");
        assert_eq!(
            problem,
            ElfProblem::PastEnd {
                what: "loadable segment (program header 0)".to_owned(),
                end: 4096,
                len: 200
            }
        );
        assert!(problem.to_string().contains("200 bytes"), "{problem}");
    }

    #[test]
    fn offsets_that_overflow_are_past_the_end() {
        let mut bytes = image(u64::MAX, 200);
        if NATIVE_CLASS == ELFCLASS64 {
            // p_offset 1 + p_filesz u64::MAX overflows.
            bytes[64 + 8] = 1;
        } else {
            bytes[52 + 4] = 1;
        }
        assert!(matches!(check(&bytes), Err(ElfProblem::PastEnd { .. })));
    }

    #[test]
    fn a_cut_header_or_table_is_too_short_or_past_the_end() {
        let whole = image(120, 200);
        assert_eq!(check(&whole[..3]), Err(ElfProblem::TooShort { len: 3 }));
        assert_eq!(check(&whole[..20]), Err(ElfProblem::TooShort { len: 20 }));
        let problem = check(&whole[..70]).expect_err("program headers cut");
        assert!(
            matches!(&problem, ElfProblem::PastEnd { what, .. } if what == "program header table"),
            "{problem:?}"
        );
    }

    #[test]
    fn foreign_and_non_elf_files_are_refused() {
        assert_eq!(
            check(b"#!/bin/sh\necho not a library\n"),
            Err(ElfProblem::NotElf)
        );
        let mut other_class = image(120, 200);
        other_class[4] = if NATIVE_CLASS == ELFCLASS64 { 1 } else { 2 };
        assert!(matches!(
            check(&other_class),
            Err(ElfProblem::WrongClass { .. })
        ));
        let mut other_order = image(120, 200);
        other_order[5] = if NATIVE_DATA == ELFDATA2LSB { 2 } else { 1 };
        assert!(matches!(
            check(&other_order),
            Err(ElfProblem::WrongByteOrder { .. })
        ));
        if NATIVE_MACHINE.is_some() {
            let mut other_machine = image(120, 200);
            other_machine[18] ^= 0x55;
            let problem = check(&other_machine).expect_err("another machine");
            assert!(problem.is_foreign());
            assert!(matches!(problem, ElfProblem::WrongMachine { .. }));
        }
        let mut executable = image(120, 200);
        let at = if NATIVE_DATA == ELFDATA2MSB { 17 } else { 16 };
        executable[at] = 2; // ET_EXEC
        assert_eq!(
            check(&executable),
            Err(ElfProblem::NotSharedObject { e_type: 2 })
        );
    }

    #[test]
    fn a_section_header_table_past_the_end_is_named() {
        let mut bytes = image(120, 200);
        let is64 = NATIVE_CLASS == ELFCLASS64;
        let (shoff_at, shnum_at) = if is64 { (40, 60) } else { (32, 48) };
        let be = NATIVE_DATA == ELFDATA2MSB;
        // e_shoff 150, e_shnum 2: ends at 150 + 2 * entry size, past 200 bytes.
        bytes[if be {
            shoff_at + if is64 { 7 } else { 3 }
        } else {
            shoff_at
        }] = 150;
        bytes[if be { shnum_at + 1 } else { shnum_at }] = 2;
        let problem = check(&bytes).expect_err("the section table is cut");
        assert!(
            matches!(&problem, ElfProblem::PastEnd { what, .. } if what == "section header table"),
            "{problem:?}"
        );
    }

    #[test]
    fn a_wrong_program_header_size_is_a_bad_field() {
        let mut bytes = image(120, 200);
        let at = if NATIVE_CLASS == ELFCLASS64 { 54 } else { 42 };
        let at = if NATIVE_DATA == ELFDATA2MSB {
            at + 1
        } else {
            at
        };
        bytes[at] = 55;
        assert_eq!(
            check(&bytes),
            Err(ElfProblem::BadField {
                field: "e_phentsize",
                value: 55
            })
        );
    }

    #[test]
    fn the_messages_name_the_path_and_the_fix() {
        let error = LibraryFileError {
            path: PathBuf::from("/x/libnrt.so.1"),
            problem: ElfProblem::PastEnd {
                what: "program header table".to_owned(),
                end: 5000,
                len: 4096,
            },
        };
        let text = error.to_string();
        assert!(
            text.starts_with("truncated or corrupt shared library: /x/libnrt.so.1 ("),
            "{text}"
        );
        assert!(text.contains("reinstall aws-neuronx-runtime-lib"), "{text}");
        assert!(text.contains("copy the library again"), "{text}");
        let foreign = LibraryFileError {
            path: PathBuf::from("/x/libnrt.so.1"),
            problem: ElfProblem::WrongClass { found: 1 },
        };
        assert!(foreign.to_string().contains("another machine"), "{foreign}");
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = check(&bytes);
        }

        #[test]
        fn never_panics_on_mutated_images(
            cut in 0usize..=200,
            edits in proptest::collection::vec((0usize..200, any::<u8>()), 0..12),
        ) {
            let mut bytes = image(120, 200);
            for (at, value) in edits {
                bytes[at] = value;
            }
            let _ = check(&bytes[..cut]);
        }
    }
}
