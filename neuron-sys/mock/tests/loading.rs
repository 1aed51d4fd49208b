//! The built mock through the production loader, whole and damaged: truncated copies of it
//! and a file that is not a library are refused with a typed error before `dlopen` (which
//! would die of SIGBUS on the truncated ones), and the whole file still loads.
//!
//! The loading runs in a child process, so a check that let a damaged file through would
//! fail this test with the child's signal instead of killing the test binary.

use std::path::{Path, PathBuf};

use neuron_sys::{ElfProblem, Library};
use nrt_mock::testing::{in_child, library_path};

/// A copy of the first `len` bytes of the mock in `dir`.
fn cut_copy(mock: &[u8], dir: &Path, len: usize) -> PathBuf {
    let path = dir.join(format!("libnrt_cut_{len}.so"));
    std::fs::write(&path, &mock[..len]).expect("write the truncated copy");
    path
}

#[test]
fn damaged_copies_of_the_mock_are_refused_and_the_whole_mock_loads() {
    const NAME: &str = "damaged_copies_of_the_mock_are_refused_and_the_whole_mock_loads";
    if !in_child(NAME, &[]) {
        return;
    }
    let mock = std::fs::read(library_path()).expect("read the built mock");
    let dir = tempfile::tempdir().expect("a scratch directory");
    for len in [64, 4096, mock.len() / 2] {
        let copy = cut_copy(&mock, dir.path(), len);
        let error = Library::open(&copy).expect_err("a truncated copy is refused");
        let bad = error.bad_file().expect("refused before dlopen");
        assert!(
            matches!(bad.problem(), ElfProblem::PastEnd { .. }),
            "{len} bytes: {bad}"
        );
        let text = error.to_string();
        assert!(
            text.contains(&format!(
                "truncated or corrupt shared library: {} (the file is {len} bytes",
                copy.display()
            )),
            "{text}"
        );
        assert!(text.contains("copy the library again"), "{text}");
    }

    let not_elf = dir.path().join("libnrt_text.so");
    std::fs::write(&not_elf, "this is not a shared library\n").expect("write");
    let error = Library::open(&not_elf).expect_err("not ELF");
    assert_eq!(
        error.bad_file().map(|bad| bad.problem()),
        Some(&ElfProblem::NotElf)
    );
    assert!(
        error
            .to_string()
            .contains("truncated or corrupt shared library"),
        "{error}"
    );

    let whole = dir.path().join("libnrt_whole.so");
    std::fs::write(&whole, &mock).expect("copy the mock");
    let library = Library::open(&whole).expect("the whole mock loads");
    assert_eq!(library.path(), whole);
}
