//! End-to-end tests of the run-time loader: the real process-wide [`neuron_sys::library`] with
//! a missing or truncated library, and [`neuron_sys::Library::open`] on tiny fixture libraries
//! that lack a required or the optional symbols, or are cut short.
//!
//! `library()` reads `NRT_DYLIB_PATH` once per process, so its tests re-run this test binary
//! as a child process with the variable set and a marker variable that makes the same test
//! act as the child. The fixtures are C files generated from [`NrtApi::REQUIRED`] and
//! [`NrtApi::OPTIONAL`] (so they follow the function table) and compiled with the system C
//! compiler (`$CC`, default `cc`) into a temporary directory.

use std::path::{Path, PathBuf};
use std::process::Command;

use neuron_sys::{Library, NrtApi};

/// Set in a child process to the name of the test it should act out.
const CHILD_MARKER: &str = "NEURON_SYS_LOADER_TEST_CHILD";
/// Brackets the child's report on its stdout (the test harness prints around it).
const BEGIN: &str = "--- begin child report ---";
const END: &str = "--- end child report ---";

/// Re-runs this test binary, running only `test_name`, with `env` set and the marker naming
/// the test. Asserts that the child exited cleanly without a panic and returns its report.
fn run_child(test_name: &str, env: &[(&str, &str)]) -> String {
    let exe = std::env::current_exe().expect("the test binary knows its path");
    let mut command = Command::new(exe);
    command
        .args([test_name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_MARKER, test_name)
        .env("RUST_BACKTRACE", "0");
    command.envs(env.iter().copied());
    let output = command.output().expect("the test binary can re-run itself");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "child `{test_name}` failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    assert!(
        !stdout.contains("panicked") && !stderr.contains("panicked"),
        "the loader must not panic:\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    stdout
        .split_once(BEGIN)
        .and_then(|(_, rest)| rest.split_once(END))
        .map(|(report, _)| report.trim().to_owned())
        .unwrap_or_else(|| panic!("child `{test_name}` printed no report:\n{stdout}"))
}

/// True in the child process of `test_name`.
fn is_child(test_name: &str) -> bool {
    std::env::var(CHILD_MARKER).is_ok_and(|value| value == test_name)
}

/// The child's side: calls the process-wide loader twice and prints what it got.
fn report_library() {
    let first = neuron_sys::library();
    let second = neuron_sys::library();
    println!("{BEGIN}");
    match (first, second) {
        (Ok(library), Ok(again)) => {
            println!("loaded {}", library.path().display());
            println!("same library: {}", std::ptr::eq(library, again));
        }
        (Err(error), Err(again)) => {
            println!("error: {error}");
            println!("same error: {}", std::ptr::eq(error, again));
            println!("from env: {}", error.from_env());
            println!("from set_library_path: {}", error.from_set_library_path());
            println!("attempts: {}", error.attempts().len());
            println!(
                "probe agrees: {}",
                neuron_sys::probe().is_err_and(|probed| probed == *error)
            );
        }
        _ => println!("inconsistent: the two calls disagree"),
    }
    println!("{END}");
}

#[test]
fn a_missing_library_named_by_nrt_dylib_path_is_an_error_not_a_panic() {
    const NAME: &str = "a_missing_library_named_by_nrt_dylib_path_is_an_error_not_a_panic";
    const MISSING: &str = "/nonexistent/neuron-sys-loader-test/libnrt.so.1";
    if is_child(NAME) {
        report_library();
        return;
    }
    let report = &run_child(NAME, &[("NRT_DYLIB_PATH", MISSING)]);
    assert!(report.contains(&format!("tried {MISSING}: ")), "{report}");
    assert!(
        report.contains("No such file or directory"),
        "the OS reason is shown: {report}"
    );
    // Only the path from the variable is tried, so a typo is not hidden by a fallback.
    assert!(report.contains("attempts: 1"), "{report}");
    assert!(report.contains("from env: true"), "{report}");
    assert!(!report.contains("tried libnrt.so"), "{report}");
    // The fix names the variable and how to get the mock.
    assert!(report.contains("NRT_DYLIB_PATH must be"), "{report}");
    assert!(report.contains("cargo xtask mock-build"), "{report}");
    // The result is computed once and shared.
    assert!(report.contains("same error: true"), "{report}");
    assert!(report.contains("probe agrees: true"), "{report}");
}

#[test]
fn the_default_search_lists_every_path_it_tried() {
    const NAME: &str = "the_default_search_lists_every_path_it_tried";
    if is_child(NAME) {
        report_library();
        return;
    }
    // An empty variable counts as unset: the default candidates are searched.
    let report = &run_child(NAME, &[("NRT_DYLIB_PATH", "")]);
    let candidates = [
        "libnrt.so.1",
        "libnrt.so",
        "/opt/aws/neuron/lib/libnrt.so.1",
    ];
    if let Some(loaded) = report
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("loaded "))
    {
        // A real libnrt is installed here (an Inferentia/Trainium host): it must have come
        // from one of the default candidates, and only once.
        assert!(candidates.contains(&loaded), "{report}");
        assert!(report.contains("same library: true"), "{report}");
        return;
    }
    for candidate in candidates {
        assert!(report.contains(&format!("tried {candidate}: ")), "{report}");
    }
    assert!(report.contains("attempts: 3"), "{report}");
    assert!(report.contains("from env: false"), "{report}");
    assert!(report.contains("aws-neuronx-runtime-lib"), "{report}");
    assert!(report.contains("same error: true"), "{report}");
}

/// Which symbols a fixture library exports.
struct Fixture<'a> {
    required: Vec<&'a str>,
    optional: Vec<&'a str>,
}

impl Fixture<'_> {
    /// The C source: one stub function per symbol. The stubs are never called, so their
    /// signatures do not matter; only the exported names do.
    fn source(&self) -> String {
        let mut source = String::from("/* generated by neuron-sys/tests/loader.rs */\n");
        for name in self.required.iter().chain(&self.optional) {
            source.push_str(&format!("int {name}(void) {{ return 0; }}\n"));
        }
        source
    }

    /// Compiles the fixture into `dir` and returns the library's path.
    fn build(&self, dir: &Path, stem: &str) -> PathBuf {
        let c_file = dir.join(format!("{stem}.c"));
        let library = dir.join(format!("lib{stem}.so"));
        std::fs::write(&c_file, self.source()).expect("write the fixture's C file");
        let cc = std::env::var_os("CC").unwrap_or_else(|| "cc".into());
        let output = Command::new(&cc)
            .args(["-shared", "-fPIC", "-o"])
            .arg(&library)
            .arg(&c_file)
            .output()
            .unwrap_or_else(|error| {
                panic!(
                    "these tests need a C compiler to build fixture libraries: cannot run `{}`: \
                     {error}; install one (`apt-get install gcc`) or set CC",
                    cc.to_string_lossy()
                )
            });
        assert!(
            output.status.success(),
            "`{} -shared -fPIC` failed on the fixture:\n{}",
            cc.to_string_lossy(),
            String::from_utf8_lossy(&output.stderr)
        );
        library
    }
}

fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("neuron-sys-loader-")
        .tempdir()
        .expect("create a temporary directory")
}

#[test]
fn a_library_lacking_a_required_symbol_is_rejected_naming_it() {
    let dir = temp_dir();
    let fixture = Fixture {
        required: NrtApi::REQUIRED
            .iter()
            .copied()
            .filter(|name| *name != "nrt_execute")
            .collect(),
        optional: NrtApi::OPTIONAL.to_vec(),
    };
    let path = fixture.build(dir.path(), "no_execute");

    let error = Library::open(&path).expect_err("nrt_execute is missing");
    assert!(error.is_missing_symbols());
    assert!(!error.from_env());
    let [attempt] = error.attempts() else {
        panic!("one path was tried: {error:?}");
    };
    assert_eq!(attempt.path, path);
    assert_eq!(attempt.missing_symbols, ["nrt_execute"]);
    let text = error.to_string();
    assert!(
        text.contains(&format!(
            "tried {}: missing required symbol(s): nrt_execute",
            path.display()
        )),
        "{text}"
    );
    assert!(text.contains("aws-neuronx-runtime-lib"), "the fix: {text}");
}

#[test]
fn a_library_lacking_optional_symbols_loads_with_them_as_none() {
    let dir = temp_dir();
    let fixture = Fixture {
        required: NrtApi::REQUIRED.to_vec(),
        optional: Vec::new(),
    };
    let path = fixture.build(dir.path(), "required_only");

    let library = Library::open(&path).expect("every required symbol is there");
    assert_eq!(library.path(), path);
    let api = library.api();
    assert!(api.nrt_tensor_memset.is_none());
    assert!(api.nrt_tensor_copy.is_none());
    assert!(api.nrt_tensor_attach_buffer.is_none());
    assert!(api.nrt_get_status_as_str.is_none());
    let present = api.optional_present();
    assert_eq!(present.len(), NrtApi::OPTIONAL.len());
    assert!(present.iter().all(|(_, found)| !found), "{present:?}");
}

#[test]
fn a_library_with_every_symbol_resolves_the_optional_ones() {
    let dir = temp_dir();
    let fixture = Fixture {
        required: NrtApi::REQUIRED.to_vec(),
        optional: NrtApi::OPTIONAL.to_vec(),
    };
    let path = fixture.build(dir.path(), "complete");

    let library = Library::open(&path).expect("every symbol is there");
    let api = library.api();
    assert!(api.nrt_tensor_memset.is_some());
    assert!(api.nrt_tensor_copy.is_some());
    let present = api.optional_present();
    let names: Vec<_> = present.iter().map(|(name, _)| *name).collect();
    assert_eq!(names, NrtApi::OPTIONAL);
    assert!(present.iter().all(|(_, found)| *found), "{present:?}");
}

#[test]
fn a_library_without_nrt_get_tensor_from_tensor_set_loads() {
    // Nothing calls it, so a library lacking it is usable.
    assert!(!NrtApi::REQUIRED.contains(&"nrt_get_tensor_from_tensor_set"));
    let dir = temp_dir();
    let fixture = Fixture {
        required: NrtApi::REQUIRED.to_vec(),
        optional: NrtApi::OPTIONAL
            .iter()
            .copied()
            .filter(|name| *name != "nrt_get_tensor_from_tensor_set")
            .collect(),
    };
    let path = fixture.build(dir.path(), "no_get_tensor");

    let library = Library::open(&path).expect("loads without nrt_get_tensor_from_tensor_set");
    let api = library.api();
    assert!(api.nrt_get_tensor_from_tensor_set.is_none());
    assert!(
        api.nrt_tensor_copy.is_some(),
        "the other optional symbols resolve"
    );
}

/// `library` cut to its first `len` bytes, written next to it as `name`.
fn truncated_copy(library: &Path, len: usize, name: &str) -> PathBuf {
    let bytes = std::fs::read(library).expect("read the fixture library");
    let copy = library.with_file_name(name);
    std::fs::write(&copy, &bytes[..len.min(bytes.len())]).expect("write the truncated copy");
    copy
}

fn complete_fixture(dir: &Path) -> PathBuf {
    Fixture {
        required: NrtApi::REQUIRED.to_vec(),
        optional: NrtApi::OPTIONAL.to_vec(),
    }
    .build(dir, "whole")
}

#[test]
fn truncated_copies_are_refused_before_dlopen_and_the_whole_file_loads() {
    let dir = temp_dir();
    let whole = complete_fixture(dir.path());
    let len = std::fs::metadata(&whole).expect("the fixture's size").len() as usize;
    assert!(len > 4096, "the fixture is {len} bytes");
    for cut in [64, 4096, len / 2, len - 1] {
        let copy = truncated_copy(&whole, cut, &format!("libcut{cut}.so"));
        let bad = neuron_sys::elf::check_library_file(&copy)
            .expect_err(&format!("a copy cut to {cut} of {len} bytes"));
        assert!(
            matches!(bad.problem(), neuron_sys::ElfProblem::PastEnd { .. }),
            "{cut}: {bad}"
        );
        assert!(
            bad.to_string().contains(&format!("is {cut} bytes")),
            "{bad}"
        );

        let error = Library::open(&copy).expect_err("refused");
        assert_eq!(error.bad_file(), Some(&bad));
        let text = error.to_string();
        assert!(
            text.contains(&format!(
                "truncated or corrupt shared library: {}",
                copy.display()
            )),
            "{text}"
        );
        assert!(
            text.contains("reinstall `aws-neuronx-runtime-lib`"),
            "{text}"
        );
    }
    // The section header table is the last thing in the file: one byte short names it.
    let last = truncated_copy(&whole, len - 1, "liblast.so");
    let bad = neuron_sys::elf::check_library_file(&last).expect_err("cut by one byte");
    assert!(bad.to_string().contains("section header table"), "{bad}");

    neuron_sys::elf::check_library_file(&whole).expect("the whole file passes");
    Library::open(&whole).expect("the whole file loads");
}

#[test]
fn a_file_that_is_not_elf_is_refused_naming_it() {
    let dir = temp_dir();
    let text_file = dir.path().join("libnrt.so.1");
    std::fs::write(&text_file, "INPUT(libnrt.so.2)\n").expect("write");
    let error = Library::open(&text_file).expect_err("not ELF");
    let bad = error.bad_file().expect("refused before dlopen");
    assert_eq!(bad.problem(), &neuron_sys::ElfProblem::NotElf);
    assert!(
        error
            .to_string()
            .contains("truncated or corrupt shared library"),
        "{error}"
    );
    // Empty and tiny files too.
    for bytes in [&b""[..], b"\x7fEL"] {
        std::fs::write(&text_file, bytes).expect("write");
        let bad = neuron_sys::elf::check_library_file(&text_file).expect_err("too short");
        assert!(
            matches!(bad.problem(), neuron_sys::ElfProblem::TooShort { .. }),
            "{bad}"
        );
    }
}

#[test]
fn nrt_dylib_path_naming_a_truncated_library_is_an_error_not_a_crash() {
    const NAME: &str = "nrt_dylib_path_naming_a_truncated_library_is_an_error_not_a_crash";
    if is_child(NAME) {
        report_library();
        return;
    }
    // A half-copied library: its first 4 KiB once killed the process with SIGBUS inside
    // dlopen.
    let dir = temp_dir();
    let whole = complete_fixture(dir.path());
    let copy = truncated_copy(&whole, 4096, "libnrt.so.1");
    let path = copy.to_str().expect("a UTF-8 temporary path");
    let report = &run_child(NAME, &[("NRT_DYLIB_PATH", path)]);
    assert!(
        report.contains(&format!(
            "tried {path}: truncated or corrupt shared library: {path}"
        )),
        "{report}"
    );
    assert!(report.contains("the file is 4096 bytes"), "{report}");
    assert!(report.contains("fix: the file is damaged"), "{report}");
}

#[test]
fn set_library_path_wins_over_nrt_dylib_path_and_is_fixed_once_loaded() {
    const NAME: &str = "set_library_path_wins_over_nrt_dylib_path_and_is_fixed_once_loaded";
    if is_child(NAME) {
        let chosen = PathBuf::from(std::env::var_os("CHOSEN_LIBRARY").expect("CHOSEN_LIBRARY"));
        // Before the first load a choice can be replaced.
        neuron_sys::set_library_path("/nonexistent/first-choice/libnrt.so.1").expect("choose");
        neuron_sys::set_library_path(&chosen).expect("choose again");
        report_library();
        // Afterwards the same file is fine, a different one is refused naming both.
        neuron_sys::set_library_path(&chosen).expect("the library already loaded");
        let error = neuron_sys::set_library_path("/other/libnrt.so.1").expect_err("too late");
        assert_eq!(
            error,
            neuron_sys::LibraryPathError::AlreadyLoaded {
                requested: PathBuf::from("/other/libnrt.so.1"),
                loaded: chosen.clone(),
            }
        );
        let text = error.to_string();
        assert!(text.contains("/other/libnrt.so.1"), "{text}");
        assert!(text.contains(&chosen.display().to_string()), "{text}");
        assert!(text.contains("before the first Runtime::init"), "{text}");
        return;
    }
    let dir = temp_dir();
    let chosen = complete_fixture(dir.path());
    let chosen = chosen.to_str().expect("a UTF-8 temporary path");
    // NRT_DYLIB_PATH names a library that does not exist: the chosen one must win.
    let report = &run_child(
        NAME,
        &[
            ("NRT_DYLIB_PATH", "/nonexistent/from-env/libnrt.so.1"),
            ("CHOSEN_LIBRARY", chosen),
        ],
    );
    assert!(report.contains(&format!("loaded {chosen}")), "{report}");
    assert!(report.contains("same library: true"), "{report}");
}

#[test]
fn a_chosen_path_that_does_not_load_is_reported_as_chosen() {
    const NAME: &str = "a_chosen_path_that_does_not_load_is_reported_as_chosen";
    const MISSING: &str = "/nonexistent/chosen/libnrt.so.1";
    if is_child(NAME) {
        assert_eq!(
            neuron_sys::set_library_path(""),
            Err(neuron_sys::LibraryPathError::Empty)
        );
        neuron_sys::set_library_path(MISSING).expect("choose");
        report_library();
        // The search ran and failed; that result stays for the process.
        let error = neuron_sys::set_library_path("/elsewhere/libnrt.so.1").expect_err("too late");
        assert!(
            matches!(error, neuron_sys::LibraryPathError::AlreadySearched { .. }),
            "{error:?}"
        );
        assert!(error.to_string().contains("already searched"), "{error}");
        return;
    }
    let report = &run_child(NAME, &[("NRT_DYLIB_PATH", "")]);
    assert!(report.contains(&format!("tried {MISSING}: ")), "{report}");
    assert!(report.contains("attempts: 1"), "{report}");
    assert!(report.contains("from set_library_path: true"), "{report}");
    assert!(report.contains("from env: false"), "{report}");
    assert!(
        report.contains("fix: the path given to set_library_path"),
        "{report}"
    );
}
