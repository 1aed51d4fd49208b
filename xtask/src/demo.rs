//! `cargo xtask demo`: the project's main job on a machine without Neuron hardware — the
//! `neuron-dp` command line running a ResNet-sized batch over 24 simulated NeuronCores.
//!
//! 1. builds the mock libnrt with the release profile (its simulated compute, `rowsum` over
//!    150 528 floats a row, would otherwise dominate the figures) and the `neuron-dp` binary
//!    (`cargo build -p neuron-dp --bin neuron-dp`);
//! 2. writes into `<target dir>/demo/`:
//!    - `demo-resnet.neff`: a mock model shaped like an image classifier, input `input`
//!      float32 `[1, 3, 224, 224]` → output `logits` float32 `[1, 1000]` (op `rowsum` with
//!      1000 out features), 800 µs of simulated device time per execution;
//!    - `batch-64.npy`: a float32 `[64, 3, 224, 224]` batch of values in [-1, 1) from a
//!      fixed seed (the same bytes on every run);
//! 3. runs `neuron-dp run` over all 24 cores (`NRT_MOCK_TOTAL_CORES=24`), writing
//!    `demo/out/logits.npy`, and checks every logit against a host computation of the same
//!    op, bit for bit;
//! 4. runs a 2-second `neuron-dp bench` of the same model at batch 64.
//!
//! Every run uses `NRT_DYLIB_PATH` = the mock and a private `NRT_MOCK_LOCK_DIR`, so it never
//! contends for simulated cores with tests or other runs; `NEURON_RT_VISIBLE_CORES`,
//! `NEURON_RT_NUM_CORES` and `NRT_MOCK_FAULTS` are cleared so the 24 cores are all there.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use nrt_mock::neff::{DType, MockModel, Op};

use crate::mock_build;
use crate::util::{self, TaskResult};

/// The demo model's file name in `<target dir>/demo/`.
const NEFF_FILE: &str = "demo-resnet.neff";
/// The demo batch's file name.
const BATCH_FILE: &str = "batch-64.npy";
/// Rows in the demo batch.
const BATCH: usize = 64;
/// One row of the input: `[3, 224, 224]`.
const ROW: [usize; 3] = [3, 224, 224];
/// Logits per row.
const CLASSES: usize = 1000;
/// Simulated cores.
const CORES: &str = "24";
/// The seed of the demo batch.
const SEED: u64 = 0x5EED_0DA7_A000_0064;

/// The demo model: ResNet-50's interface on the mock.
fn model() -> MockModel {
    MockModel::new(
        "demo-resnet",
        Op::RowSum {
            out_features: CLASSES as u32,
        },
    )
    .input("input", DType::Float32, &[1, 3, 224, 224])
    .output("logits", DType::Float32, &[1, CLASSES as u32])
    .exec_us(800)
}

/// splitmix64, for a batch that is the same on every machine and run.
fn batch_values() -> Vec<f32> {
    let mut state = SEED;
    let len = BATCH * ROW.iter().product::<usize>();
    (0..len)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            ((z >> 40) as f32 / (1u64 << 23) as f32) - 1.0
        })
        .collect()
}

/// The `.npy` (format 1.0) header for a little-endian float32 C-order array.
fn npy_header(shape: &[usize]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(ToString::to_string).collect();
    let shape = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
    // magic (6) + version (2) + length (2) + dict + '\n', padded to a multiple of 64.
    let unpadded = 10 + dict.len() + 1;
    dict.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    dict.push('\n');
    let mut header = b"\x93NUMPY\x01\x00".to_vec();
    header.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    header.extend_from_slice(dict.as_bytes());
    header
}

fn write_batch(path: &Path, values: &[f32]) -> TaskResult {
    let mut bytes = npy_header(&[BATCH, ROW[0], ROW[1], ROW[2]]);
    bytes.reserve(values.len() * 4);
    for value in values {
        bytes.extend_from_slice(&value.to_le_bytes());
    }
    let mut file = std::fs::File::create(path)
        .map_err(|error| format!("cannot create {}: {error}", path.display()))?;
    file.write_all(&bytes)
        .map_err(|error| format!("cannot write {}: {error}", path.display()))
}

/// The shape in a `.npy` header: `'shape': (64, 1000, )` → `[64, 1000]`.
fn npy_shape(header: &str) -> Option<Vec<usize>> {
    let start = header.find("'shape': (")? + "'shape': (".len();
    let end = start + header[start..].find(')')?;
    header[start..end]
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| d.parse().ok())
        .collect()
}

/// Reads `logits.npy` as written by `neuron-dp` and checks it against the host's `rowsum`.
fn verify(path: &Path, batch: &[f32]) -> TaskResult {
    let bytes =
        std::fs::read(path).map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    let expected_header = npy_header(&[BATCH, CLASSES]);
    let header_len = bytes
        .get(8..10)
        .map(|b| 10 + usize::from(u16::from_le_bytes([b[0], b[1]])))
        .ok_or_else(|| format!("{} is not a .npy file", path.display()))?;
    let header = String::from_utf8_lossy(&bytes[..header_len.min(bytes.len())]);
    if !bytes.starts_with(b"\x93NUMPY")
        || !header.contains("'<f4'")
        || !header.contains("'fortran_order': False")
        || npy_shape(&header) != Some(vec![BATCH, CLASSES])
    {
        return Err(format!(
            "{} is not float32 [{BATCH}, {CLASSES}]: header {header:?} (expected like {:?})",
            path.display(),
            String::from_utf8_lossy(&expected_header)
        ));
    }
    let data = &bytes[header_len..];
    if data.len() != BATCH * CLASSES * 4 {
        return Err(format!(
            "{} holds {} data bytes, expected {}",
            path.display(),
            data.len(),
            BATCH * CLASSES * 4
        ));
    }
    let row_len: usize = ROW.iter().product();
    for (r, row) in batch.chunks_exact(row_len).enumerate() {
        // The mock's rowsum: out[j] = sum of x[i] with i % 1000 == j, in order of i, in f32.
        let mut sums = vec![0f32; CLASSES];
        for (i, x) in row.iter().enumerate() {
            sums[i % CLASSES] += x;
        }
        for (j, want) in sums.iter().enumerate() {
            let at = (r * CLASSES + j) * 4;
            let got = f32::from_le_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]);
            if got.to_bits() != want.to_bits() {
                return Err(format!(
                    "{}: logit [{r}, {j}] is {got}, the host computes {want}",
                    path.display()
                ));
            }
        }
    }
    Ok(())
}

/// `neuron-dp` with the mock's environment.
fn neuron_dp(binary: &Path, library: &Path, lock_dir: &Path) -> Command {
    let mut command = Command::new(binary);
    for var in [
        "NEURON_RT_VISIBLE_CORES",
        "NEURON_RT_NUM_CORES",
        "NRT_MOCK_FAULTS",
    ] {
        command.env_remove(var);
    }
    command
        .env("NRT_DYLIB_PATH", library)
        .env("NRT_MOCK_TOTAL_CORES", CORES)
        .env("NRT_MOCK_LOCK_DIR", lock_dir);
    command
}

/// The task.
pub(crate) fn run(root: &Path) -> TaskResult {
    let library = mock_build::build(root, true)?;
    util::run(util::cargo_command(root).args([
        "build",
        "--package",
        "neuron-dp",
        "--bin",
        "neuron-dp",
    ]))?;
    let metadata = util::metadata(root)?;
    let target_dir = util::target_dir(&metadata)?;
    let binary = target_dir.join("debug").join("neuron-dp");
    if !binary.is_file() {
        return Err(format!(
            "`cargo build -p neuron-dp --bin neuron-dp` succeeded but {} does not exist",
            binary.display()
        ));
    }

    let demo_dir: PathBuf = target_dir.join("demo");
    util::create_dir_all(&demo_dir)?;
    let neff = demo_dir.join(NEFF_FILE);
    let model = model();
    model.validate().map_err(|error| error.to_string())?;
    model
        .write_neff(&neff)
        .map_err(|error| format!("cannot write {}: {error}", neff.display()))?;
    let batch_path = demo_dir.join(BATCH_FILE);
    let batch = batch_values();
    write_batch(&batch_path, &batch)?;
    let out_dir = demo_dir.join("out");
    // A stale logits.npy from an earlier run must not pass the check below.
    let logits = out_dir.join("logits.npy");
    if logits.exists() {
        std::fs::remove_file(&logits)
            .map_err(|error| format!("cannot remove {}: {error}", logits.display()))?;
    }
    eprintln!(
        "wrote the demo model {} (input [1, 3, 224, 224] float32 -> logits [1, 1000], 800 µs \
         per execution) and the batch {} ([{BATCH}, 3, 224, 224] float32)",
        neff.display(),
        batch_path.display()
    );

    let lock_dir = tempfile::Builder::new()
        .prefix("neuron-dp-demo-locks-")
        .tempdir()
        .map_err(|error| format!("cannot create a lock directory: {error}"))?;
    util::run(
        neuron_dp(&binary, &library, lock_dir.path())
            .arg("run")
            .arg(&neff)
            .arg("--input")
            .arg(format!("input={}", batch_path.display()))
            .arg("--out-dir")
            .arg(&out_dir),
    )?;
    verify(&logits, &batch)?;
    eprintln!(
        "checked {}: all {BATCH} x {CLASSES} logits equal the host computation bit for bit",
        logits.display()
    );
    util::run(
        neuron_dp(&binary, &library, lock_dir.path())
            .arg("bench")
            .arg(&neff)
            .args(["--batch", "64", "--seconds", "2"]),
    )?;
    eprintln!(
        "\ndemo done. Try it yourself:\n  export NRT_DYLIB_PATH={} NRT_MOCK_TOTAL_CORES={CORES}\n  \
         {} info\n  {} run {} --input input={} --out-dir {} --json",
        library.display(),
        binary.display(),
        binary.display(),
        neff.display(),
        batch_path.display(),
        out_dir.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_npy_header_is_aligned_and_well_formed() {
        let header = npy_header(&[64, 3, 224, 224]);
        assert_eq!(header.len() % 64, 0);
        assert!(header.starts_with(b"\x93NUMPY\x01\x00"));
        let text = String::from_utf8_lossy(&header[10..]);
        assert!(text.contains("'shape': (64, 3, 224, 224)"), "{text}");
        assert!(text.ends_with('\n'));
        assert!(npy_header(&[5]).windows(4).any(|w| w == b"(5,)"));
        assert_eq!(npy_shape(&text), Some(vec![64, 3, 224, 224]));
        assert_eq!(npy_shape("{'shape': (64, 1000, ), }"), Some(vec![64, 1000]));
        assert_eq!(npy_shape("{'shape': (5,), }"), Some(vec![5]));
        assert_eq!(npy_shape("{'shape': (x,), }"), None);
    }

    #[test]
    fn the_demo_model_is_valid_and_the_batch_deterministic() {
        model().validate().unwrap();
        let a = batch_values();
        assert_eq!(a.len(), BATCH * 3 * 224 * 224);
        assert!(a.iter().all(|x| (-1.0..1.0).contains(x)));
        assert_eq!(a[..100], batch_values()[..100]);
    }
}
