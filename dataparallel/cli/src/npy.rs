//! `.npy` files: reading inputs into aligned buffers and writing outputs, with the numpy
//! dtypes mapped to the runtime's ([`neuron_rt::DType`]).
//!
//! Headers are parsed by `npyz`; data is read as raw bytes into an 8-byte-aligned buffer
//! (byte-swapped for big-endian files), so a batch is copied once, from the file.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write as _};
use std::path::Path;

use neuron_rt::DType;
use npyz::{Endianness, TypeChar, TypeStr, WriterBuilder as _};

/// Bytes in an 8-byte-aligned allocation, so views of any element type up to 8 bytes wide
/// are aligned.
#[derive(Debug, Clone, Default)]
pub(crate) struct Buffer {
    words: Vec<u64>,
    len: usize,
}

impl Buffer {
    /// `len` zero bytes.
    pub(crate) fn zeroed(len: usize) -> Buffer {
        Buffer {
            words: vec![0; len.div_ceil(8)],
            len,
        }
    }

    /// The bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        &bytemuck::cast_slice(&self.words)[..self.len]
    }

    /// The bytes, writable.
    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        &mut bytemuck::cast_slice_mut(&mut self.words)[..self.len]
    }
}

/// An array read from a `.npy` file.
#[derive(Debug)]
pub(crate) struct Array {
    /// The element type.
    pub(crate) dtype: DType,
    /// The shape (C order).
    pub(crate) shape: Vec<usize>,
    /// Row-major bytes in native byte order.
    pub(crate) data: Buffer,
}

/// The numpy spelling of a type string, for messages: `float64 ('<f8')`.
pub(crate) fn describe(ts: &TypeStr) -> String {
    let bits = ts.size_field() * 8;
    let name = match ts.type_char() {
        TypeChar::Float => format!("float{bits}"),
        TypeChar::Int => format!("int{bits}"),
        TypeChar::Uint => format!("uint{bits}"),
        TypeChar::Complex => format!("complex{bits}"),
        TypeChar::Bool => "bool".to_owned(),
        TypeChar::TimeDelta => "timedelta64".to_owned(),
        TypeChar::DateTime => "datetime64".to_owned(),
        TypeChar::ByteStr => "bytes".to_owned(),
        TypeChar::UnicodeStr => "str".to_owned(),
        _ => "raw bytes".to_owned(),
    };
    format!("{name} ('{ts}')")
}

/// The runtime dtype a numpy type string holds, if the runtime has one.
pub(crate) fn dtype_of(ts: &TypeStr) -> Option<DType> {
    Some(match (ts.type_char(), ts.size_field()) {
        (TypeChar::Float, 4) => DType::Float32,
        (TypeChar::Float, 2) => DType::Float16,
        (TypeChar::Int, 1) => DType::Int8,
        (TypeChar::Int, 2) => DType::Int16,
        (TypeChar::Int, 4) => DType::Int32,
        (TypeChar::Int, 8) => DType::Int64,
        (TypeChar::Uint, 1) => DType::UInt8,
        (TypeChar::Uint, 2) => DType::UInt16,
        (TypeChar::Uint, 4) => DType::UInt32,
        (TypeChar::Uint, 8) => DType::UInt64,
        _ => return None,
    })
}

/// Why a runtime dtype has no `.npy` form, or `None` when it has one.
pub(crate) fn unrepresentable(dtype: DType) -> Option<String> {
    match dtype {
        DType::Float32
        | DType::Float16
        | DType::Int8
        | DType::Int16
        | DType::Int32
        | DType::Int64
        | DType::UInt8
        | DType::UInt16
        | DType::UInt32
        | DType::UInt64 => None,
        other => Some(format!(
            "{} has no .npy dtype (numpy supports float32, float16 and 8- to 64-bit integers)",
            other.name()
        )),
    }
}

/// Reads a whole `.npy` file. Errors are one-line messages naming the file.
pub(crate) fn read(path: &Path) -> Result<Array, String> {
    let shown = path.display();
    let file = File::open(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    if file.metadata().is_ok_and(|m| m.is_dir()) {
        return Err(format!("cannot read {shown}: it is a directory"));
    }
    let mut reader = BufReader::new(file);
    let mut magic = [0u8; 6];
    let not_npy =
        || format!("{shown} is not a .npy file (no \\x93NUMPY magic); save arrays with numpy.save");
    reader.read_exact(&mut magic).map_err(|_| not_npy())?;
    if &magic != b"\x93NUMPY" {
        return Err(not_npy());
    }
    let header = npyz::NpyHeader::from_reader(io::Cursor::new(magic).chain(&mut reader))
        .map_err(|e| format!("{shown} is not a valid .npy file: {e}"))?;
    let ts = match header.dtype() {
        npyz::DType::Plain(ts) => ts,
        other => {
            return Err(format!(
                "{shown} holds a structured array ({}); give one plain numeric array per input",
                other.descr()
            ));
        }
    };
    let dtype = dtype_of(&ts).ok_or_else(|| {
        format!(
            "{shown} holds {}, which the Neuron runtime does not support; convert it (e.g. \
             numpy's astype) to float32, float16 or an 8- to 64-bit integer type",
            describe(&ts)
        )
    })?;
    if header.order() == npyz::Order::Fortran {
        return Err(format!(
            "{shown} is in Fortran order; save it in C order (numpy.ascontiguousarray)"
        ));
    }
    let shape: Vec<usize> = header
        .shape()
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<Result<_, _>>()
        .map_err(|_| format!("{shown} has a shape too large for this machine"))?;
    let len = shape
        .iter()
        .try_fold(dtype.size_bytes(), |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| format!("{shown} has a shape too large for this machine"))?;
    let mut data = Buffer::zeroed(len);
    reader
        .read_exact(data.bytes_mut())
        .map_err(|e| format!("{shown} is truncated: its header promises {len} data bytes ({e})"))?;
    let elem = dtype.size_bytes();
    if elem > 1 && ts.endianness() != Endianness::Irrelevant && ts.endianness() != native() {
        for value in data.bytes_mut().chunks_exact_mut(elem) {
            value.reverse();
        }
    }
    Ok(Array { dtype, shape, data })
}

fn native() -> Endianness {
    if cfg!(target_endian = "little") {
        Endianness::Little
    } else {
        Endianness::Big
    }
}

/// Writes `bytes` (native order, row-major) as a `.npy` file of `dtype` and `shape`.
pub(crate) fn write(path: &Path, dtype: DType, shape: &[usize], bytes: &[u8]) -> io::Result<()> {
    match dtype {
        DType::Float32 => write_typed::<f32>(path, shape, bytes),
        DType::Float16 => write_typed::<half::f16>(path, shape, bytes),
        DType::Int8 => write_typed::<i8>(path, shape, bytes),
        DType::Int16 => write_typed::<i16>(path, shape, bytes),
        DType::Int32 => write_typed::<i32>(path, shape, bytes),
        DType::Int64 => write_typed::<i64>(path, shape, bytes),
        DType::UInt8 => write_typed::<u8>(path, shape, bytes),
        DType::UInt16 => write_typed::<u16>(path, shape, bytes),
        DType::UInt32 => write_typed::<u32>(path, shape, bytes),
        DType::UInt64 => write_typed::<u64>(path, shape, bytes),
        other => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            unrepresentable(other).unwrap_or_default(),
        )),
    }
}

fn write_typed<T>(path: &Path, shape: &[usize], bytes: &[u8]) -> io::Result<()>
where
    T: npyz::AutoSerialize + bytemuck::Pod,
{
    let values: std::borrow::Cow<'_, [T]> = match bytemuck::try_cast_slice(bytes) {
        Ok(values) => values.into(),
        Err(_) => bytemuck::pod_collect_to_vec(bytes).into(),
    };
    let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    let mut file = BufWriter::new(File::create(path)?);
    {
        let mut writer = npyz::WriteOptions::new()
            .default_dtype()
            .shape(&shape)
            .writer(&mut file)
            .begin_nd()?;
        writer.extend(values.iter().copied())?;
        writer.finish()?;
    }
    file.flush()?;
    file.into_inner()
        .map_err(io::IntoInnerError::into_error)?
        .sync_all()
}

/// Zeroed buffers for the model's outputs at `shapes` (from `DataParallel::output_shapes`).
pub(crate) fn output_buffers(spec: &dataparallel::ModelSpec, shapes: &[Vec<usize>]) -> Vec<Buffer> {
    spec.outputs
        .iter()
        .zip(shapes)
        .map(|(o, shape)| Buffer::zeroed(shape.iter().product::<usize>() * o.elem_size))
        .collect()
}

/// Output views over `buffers`, named after the model's outputs (an output whose dtype the
/// runtime does not report is viewed as bytes).
pub(crate) fn output_views<'a>(
    spec: &'a dataparallel::ModelSpec,
    shapes: &'a [Vec<usize>],
    buffers: &'a mut [Buffer],
) -> Vec<dataparallel::Output<'a>> {
    spec.outputs
        .iter()
        .zip(shapes)
        .zip(buffers.iter_mut())
        .map(|((o, shape), buffer)| {
            let dtype = o.dtype.unwrap_or(neuron_rt::DType::UInt8);
            dataparallel::Output::new(dtype, shape, buffer.bytes_mut()).named(&o.name)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays_round_trip_through_files() {
        let dir = std::env::temp_dir().join(format!("neuron-dp-npy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.npy");
        let values: Vec<f32> = (0..12).map(|i| i as f32 * 0.5).collect();
        write(
            &path,
            DType::Float32,
            &[3, 4],
            bytemuck::cast_slice(&values),
        )
        .unwrap();
        let array = read(&path).unwrap();
        assert_eq!(array.dtype, DType::Float32);
        assert_eq!(array.shape, vec![3, 4]);
        assert_eq!(array.data.bytes(), bytemuck::cast_slice::<f32, u8>(&values));

        let halves: Vec<half::f16> = (0..4).map(|i| half::f16::from_f32(i as f32)).collect();
        write(&path, DType::Float16, &[4], bytemuck::cast_slice(&halves)).unwrap();
        assert_eq!(read(&path).unwrap().dtype, DType::Float16);

        std::fs::write(&path, b"not numpy").unwrap();
        assert!(read(&path).unwrap_err().contains("not a .npy file"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bfloat16_has_no_npy_form() {
        assert!(
            unrepresentable(DType::BFloat16)
                .unwrap()
                .contains("bfloat16")
        );
        assert!(unrepresentable(DType::Float32).is_none());
    }
}
