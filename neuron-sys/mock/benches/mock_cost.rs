//! The mock's own CPU cost on the transfer path: `nrt_tensor_write`, an identity
//! `nrt_execute` with no simulated device time, and `nrt_tensor_read` of one 4 MiB tensor,
//! next to a plain `memcpy` of the same size in the same process.
//!
//! `cargo bench -p nrt-mock --bench mock_cost` measures the mock next to this bench
//! (`target/release/libnrt_mock.so`). To compare builds side by side in one run, name them:
//! `MOCK_COST_LIBS=before=/path/a.so,after=/path/b.so`. Each library is opened on its own
//! (`neuron_sys::Library::open`, so each has its own state) with one core and a private lock
//! directory, and the libraries take turns block by block so load drift hits all alike.
//! Without `--bench` (as under `cargo test --all-targets`) it runs a smoke pass with tiny
//! counts and checks the bytes round-trip.

use std::ffi::c_void;
use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;

use neuron_sys::bindings::{NRT_TENSOR_PLACEMENT_DEVICE, nrt_model_t, nrt_tensor_t};
use neuron_sys::{Library, NRT_FRAMEWORK_TYPE_NO_FW, NrtApi};
use nrt_mock::neff::{DType, MockModel, Op};

/// Bytes per tensor: 4 MiB of float32.
const BYTES: usize = 4 << 20;

struct Subject {
    label: String,
    library: Library,
    model: *mut nrt_model_t,
    input: *mut nrt_tensor_t,
    output: *mut nrt_tensor_t,
    inputs: *mut c_void,
    outputs: *mut c_void,
    _locks: tempfile::TempDir,
    samples: [Vec<f64>; 3],
}

fn ok(what: &str, status: u32) {
    assert_eq!(status, 0, "{what} failed with status {status}");
}

impl Subject {
    fn open(label: &str, path: PathBuf) -> Subject {
        let library = Library::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let locks = tempfile::tempdir().expect("a lock directory");
        // SAFETY: the bench is single-threaded; the variables are read by this library's
        // `nrt_init` just below and by nothing else concurrently.
        unsafe {
            std::env::set_var("NRT_MOCK_LOCK_DIR", locks.path());
            std::env::set_var("NRT_MOCK_TOTAL_CORES", "1");
            std::env::remove_var("NEURON_RT_VISIBLE_CORES");
            std::env::remove_var("NEURON_RT_NUM_CORES");
        }
        let api = *library.api();
        let neff = MockModel::new("identity", Op::Identity)
            .input("x", DType::Float32, &[1, (BYTES / 4) as u32])
            .output("y", DType::Float32, &[1, (BYTES / 4) as u32])
            .to_neff_bytes();
        let mut model = std::ptr::null_mut();
        let (mut input, mut output) = (std::ptr::null_mut(), std::ptr::null_mut());
        let (mut inputs, mut outputs) = (std::ptr::null_mut(), std::ptr::null_mut());
        // SAFETY: libnrt's C calls with valid out-pointers and a NEFF buffer that outlives
        // `nrt_load`; the strings are static and NUL-terminated.
        unsafe {
            ok(
                "nrt_init",
                (api.nrt_init)(NRT_FRAMEWORK_TYPE_NO_FW, c"".as_ptr(), c"".as_ptr()),
            );
            ok(
                "nrt_load",
                (api.nrt_load)(neff.as_ptr().cast(), neff.len(), 0, -1, &mut model),
            );
            for (name, tensor) in [(c"x", &mut input), (c"y", &mut output)] {
                let status = (api.nrt_tensor_allocate)(
                    NRT_TENSOR_PLACEMENT_DEVICE,
                    0,
                    BYTES,
                    name.as_ptr(),
                    tensor,
                );
                ok("nrt_tensor_allocate", status);
            }
            ok(
                "nrt_allocate_tensor_set",
                (api.nrt_allocate_tensor_set)(&mut inputs),
            );
            ok(
                "nrt_allocate_tensor_set",
                (api.nrt_allocate_tensor_set)(&mut outputs),
            );
            ok(
                "nrt_add_tensor_to_tensor_set",
                (api.nrt_add_tensor_to_tensor_set)(inputs, c"x".as_ptr(), input),
            );
            ok(
                "nrt_add_tensor_to_tensor_set",
                (api.nrt_add_tensor_to_tensor_set)(outputs, c"y".as_ptr(), output),
            );
        }
        Subject {
            label: label.to_owned(),
            library,
            model,
            input,
            output,
            inputs: inputs.cast(),
            outputs: outputs.cast(),
            _locks: locks,
            samples: Default::default(),
        }
    }

    fn api(&self) -> &NrtApi {
        self.library.api()
    }

    /// One write, execute and read; records each one's microseconds.
    fn piece(&mut self, src: &[u8], dst: &mut [u8], record: bool) {
        let api = *self.api();
        // SAFETY: live handles from `open`; `src` and `dst` hold `BYTES` bytes.
        let times = unsafe {
            let t0 = Instant::now();
            ok(
                "nrt_tensor_write",
                (api.nrt_tensor_write)(self.input, src.as_ptr().cast(), 0, BYTES),
            );
            let t1 = Instant::now();
            ok(
                "nrt_execute",
                (api.nrt_execute)(self.model, self.inputs.cast(), self.outputs.cast()),
            );
            let t2 = Instant::now();
            ok(
                "nrt_tensor_read",
                (api.nrt_tensor_read)(self.output, dst.as_mut_ptr().cast(), 0, BYTES),
            );
            [t1 - t0, t2 - t1, t2.elapsed()]
        };
        if record {
            for (samples, t) in self.samples.iter_mut().zip(times) {
                samples.push(t.as_secs_f64() * 1e6);
            }
        }
    }
}

impl Drop for Subject {
    fn drop(&mut self) {
        // SAFETY: `nrt_close` frees every handle of this library's runtime; nothing uses them
        // afterwards.
        unsafe { (self.api().nrt_close)() };
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn gbps(us: f64) -> f64 {
    BYTES as f64 / (us * 1e-6) / 1e9
}

fn main() {
    let measuring = std::env::args().any(|a| a == "--bench");
    let (blocks, per_block) = if measuring { (10, 40) } else { (1, 2) };
    let libs: Vec<(String, PathBuf)> = match std::env::var("MOCK_COST_LIBS") {
        Ok(list) if !list.is_empty() => list
            .split(',')
            .map(|entry| match entry.split_once('=') {
                Some((label, path)) => (label.to_owned(), PathBuf::from(path)),
                None => (entry.to_owned(), PathBuf::from(entry)),
            })
            .collect(),
        _ => vec![("mock".to_owned(), nrt_mock::testing::library_path())],
    };
    let mut subjects: Vec<Subject> = libs
        .into_iter()
        .map(|(label, path)| Subject::open(&label, path))
        .collect();
    let src: Vec<u8> = (0..BYTES).map(|i| (i % 251) as u8).collect();
    let mut dst = vec![0xAAu8; BYTES];
    let mut copy = vec![0x55u8; BYTES];
    let mut memcpy = Vec::new();
    for subject in &mut subjects {
        // Warm-up: the first touch of each tensor's pages is allocation cost, not transfer.
        subject.piece(&src, &mut dst, false);
        assert!(
            dst == src,
            "{}: identity did not return its input",
            subject.label
        );
    }
    for _ in 0..blocks {
        for subject in &mut subjects {
            for _ in 0..per_block {
                subject.piece(&src, &mut dst, true);
            }
        }
        for _ in 0..per_block {
            let t = Instant::now();
            copy.copy_from_slice(black_box(&src));
            black_box(&mut copy);
            memcpy.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    println!("mock cost, 4 MiB identity piece, {blocks} blocks of {per_block}: median µs (GB/s)");
    println!(
        "| library | nrt_tensor_write | nrt_execute (identity, exec_us 0) | nrt_tensor_read |"
    );
    println!("|---|---|---|---|");
    for subject in &mut subjects {
        let [w, e, r] = &mut subject.samples;
        let (w, e, r) = (median(w), median(e), median(r));
        println!(
            "| {} | {w:.0} ({:.1}) | {e:.0} ({:.1}) | {r:.0} ({:.1}) |",
            subject.label,
            gbps(w),
            gbps(e),
            gbps(r)
        );
    }
    let m = median(&mut memcpy);
    println!("| memcpy, one thread | {m:.0} ({:.1}) | | |", gbps(m));
}
