//! `.npy` files: reading inputs into aligned buffers and writing outputs, with the numpy
//! dtypes mapped to the runtime's ([`neuron_rt::DType`]).
//!
//! Reading trusts nothing in the file: only regular files are opened ([`crate::files`]),
//! the header is read up to [`MAX_HEADER_BYTES`] and parsed by `npyz`, and the data length
//! it claims is checked for overflow and against the bytes the file holds before the data
//! buffer is allocated. Data is read as raw bytes into an 8-byte-aligned buffer
//! (byte-swapped for big-endian files), so a batch is copied once, from the file.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write as _};
use std::path::Path;

use dataparallel::quote::quote;
use neuron_rt::DType;
use npyz::{Endianness, TypeChar, TypeStr, WriterBuilder as _};

use crate::files::{self, MAX_NPY_FILE_BYTES};
use crate::limits::{self, human_bytes, memory_budget};
use crate::npy_header::{self, Descr};

/// Bytes in an 8-byte-aligned allocation, so views of any element type up to 8 bytes wide
/// are aligned.
#[derive(Debug, Clone, Default)]
pub struct Buffer {
    words: Vec<u64>,
    len: usize,
}

impl Buffer {
    /// `len` zero bytes. Aborts if memory runs out: for sizes already checked against
    /// [`memory_budget`] (or small); otherwise use [`Buffer::try_zeroed`].
    pub fn zeroed(len: usize) -> Buffer {
        Buffer {
            words: vec![0; len.div_ceil(8)],
            len,
        }
    }

    /// `len` zero bytes, or a one-line message when they cannot be allocated.
    ///
    /// # Errors
    ///
    /// When the allocator refuses `len` bytes.
    pub fn try_zeroed(len: usize) -> Result<Buffer, String> {
        let mut words = Vec::new();
        words
            .try_reserve_exact(len.div_ceil(8))
            .map_err(|_| format!("cannot allocate {} of host memory", human_bytes(len as u64)))?;
        words.resize(len.div_ceil(8), 0);
        Ok(Buffer { words, len })
    }

    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        &bytemuck::cast_slice(&self.words)[..self.len]
    }

    /// The bytes, writable.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut bytemuck::cast_slice_mut(&mut self.words)[..self.len]
    }
}

/// An array read from a `.npy` file.
#[derive(Debug)]
pub struct Array {
    /// The element type.
    pub dtype: DType,
    /// The shape (C order).
    pub shape: Vec<usize>,
    /// Row-major bytes in native byte order.
    pub data: Buffer,
}

/// The numpy spelling of a type string, for messages: `float64 ('<f8')`.
pub fn describe(ts: &TypeStr) -> String {
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
pub fn dtype_of(ts: &TypeStr) -> Option<DType> {
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
pub fn unrepresentable(dtype: DType) -> Option<String> {
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

/// The longest `.npy` header read (10 000 bytes, numpy's own `max_header_size` default):
/// a header is a short Python dict literal, so anything longer is not an array numpy wrote.
pub const MAX_HEADER_BYTES: u32 = 10_000;

/// Reads a whole `.npy` file: a regular file of at most [`MAX_NPY_FILE_BYTES`] bytes and at
/// most the machine's memory ([`memory_budget`]).
///
/// # Errors
///
/// A one-line message naming the file (quoted) and what is wrong with it.
pub fn read(path: &Path) -> Result<Array, String> {
    let shown = files::shown(path);
    let (file, len) = files::open_regular(path, ".npy", MAX_NPY_FILE_BYTES)
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    let memory = memory_budget();
    if len > memory {
        return Err(format!(
            "cannot read {shown}: it is {}, more than this machine's {} of memory",
            human_bytes(len),
            human_bytes(memory)
        ));
    }
    read_from(BufReader::new(file), len, &shown)
}

/// Reads a `.npy` array from `reader`, which holds `available` bytes; `shown` names it in
/// messages. The header is read only up to [`MAX_HEADER_BYTES`] and the data length it
/// claims is checked (for overflow, and against `available`) before the data buffer is
/// allocated, so the allocation is never larger than the input.
///
/// # Errors
///
/// A one-line message starting with `shown`: not a `.npy` file, an unsupported version, a
/// header that does not parse (quoting a short escaped prefix), a dtype the runtime lacks,
/// Fortran order, or fewer data bytes than the header promises.
pub fn read_from(mut reader: impl Read, available: u64, shown: &str) -> Result<Array, String> {
    let not_npy =
        || format!("{shown} is not a .npy file (no \\x93NUMPY magic); save arrays with numpy.save");
    let mut preamble = [0u8; 8];
    reader.read_exact(&mut preamble).map_err(|_| not_npy())?;
    if &preamble[..6] != b"\x93NUMPY" {
        return Err(not_npy());
    }
    let (major, minor) = (preamble[6], preamble[7]);
    let mut header_len_bytes = [0u8; 4];
    let header_len_bytes = match major {
        1 => &mut header_len_bytes[..2],
        2 | 3 => &mut header_len_bytes[..],
        _ => {
            return Err(format!(
                "{shown} is .npy version {major}.{minor}, which neuron-dp does not read (only \
                 1.0, 2.0 and 3.0 exist); save it with numpy.save"
            ));
        }
    };
    let truncated_header = || format!("{shown} is truncated inside its .npy header");
    reader
        .read_exact(header_len_bytes)
        .map_err(|_| truncated_header())?;
    let mut len_le = [0u8; 4];
    len_le[..header_len_bytes.len()].copy_from_slice(header_len_bytes);
    let header_len = u32::from_le_bytes(len_le);
    if header_len > MAX_HEADER_BYTES {
        return Err(format!(
            "{shown} claims a {header_len}-byte .npy header, above the {MAX_HEADER_BYTES}-byte \
             limit (numpy's own); it is not an array numpy.save wrote"
        ));
    }
    let prefix_len = 8 + header_len_bytes.len() as u64 + u64::from(header_len);
    if prefix_len > available {
        return Err(truncated_header());
    }
    let mut header = Vec::with_capacity(prefix_len as usize);
    header.extend_from_slice(&preamble);
    header.extend_from_slice(header_len_bytes);
    header.resize(prefix_len as usize, 0);
    reader
        .read_exact(&mut header[8 + header_len_bytes.len()..])
        .map_err(|_| truncated_header())?;
    let body = &header[8 + header_len_bytes.len()..];
    // Version 3 headers are UTF-8; 1 and 2 are latin-1 (every byte is its code point).
    let text: String = if major == 3 {
        String::from_utf8_lossy(body).into_owned()
    } else {
        body.iter().map(|&b| char::from(b)).collect()
    };
    let parsed = npy_header::parse(&text).map_err(|why| {
        format!(
            "{shown} is not a valid .npy file: its header does not parse ({why}); it begins {}",
            quote(&text)
        )
    })?;
    let ts: TypeStr = match &parsed.descr {
        Descr::Plain(descr) => descr.parse().map_err(|_| {
            format!(
                "{shown} has an unknown dtype {}; save arrays with numpy.save",
                quote(descr)
            )
        })?,
        Descr::Structured(fields) => {
            return Err(format!(
                "{shown} holds a structured array ({fields}); give one plain numeric array per \
                 input"
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
    if parsed.fortran_order {
        return Err(format!(
            "{shown} is in Fortran order; save it in C order (numpy.ascontiguousarray)"
        ));
    }
    let too_large = || {
        format!(
            "{shown} claims shape {}, more data than the file holds ({available} bytes)",
            shape_text(&parsed.shape)
        )
    };
    let shape: Vec<usize> = parsed
        .shape
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<Result<_, _>>()
        .map_err(|_| too_large())?;
    let len = limits::array_bytes(&shape, dtype.size_bytes()).ok_or_else(too_large)?;
    let data_available = available - prefix_len;
    if len > data_available {
        return Err(format!(
            "{shown} is truncated: its header (shape {}, {}) promises {len} data bytes, but \
             the file holds {data_available} after the header",
            shape_text(&parsed.shape),
            dtype.name()
        ));
    }
    let len = usize::try_from(len).map_err(|_| too_large())?;
    let mut data = Buffer::try_zeroed(len)?;
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

/// A shape for messages, at most 8 dims shown: `(1073741824, 8)`.
fn shape_text(shape: &[u64]) -> String {
    const SHOWN: usize = 8;
    let mut dims: Vec<String> = shape.iter().take(SHOWN).map(u64::to_string).collect();
    if shape.len() > SHOWN {
        dims.push(format!("… {} dims", shape.len()));
    }
    format!("({})", dims.join(", "))
}

fn native() -> Endianness {
    if cfg!(target_endian = "little") {
        Endianness::Little
    } else {
        Endianness::Big
    }
}

/// Writes `bytes` (native order, row-major) as a `.npy` array of `dtype` and `shape` into
/// `file` (from its current position), then flushes it to disk (`sync_all`).
///
/// # Errors
///
/// Write errors, and a dtype numpy has no form for.
pub fn write(file: &File, dtype: DType, shape: &[usize], bytes: &[u8]) -> io::Result<()> {
    match dtype {
        DType::Float32 => write_typed::<f32>(file, shape, bytes),
        DType::Float16 => write_typed::<half::f16>(file, shape, bytes),
        DType::Int8 => write_typed::<i8>(file, shape, bytes),
        DType::Int16 => write_typed::<i16>(file, shape, bytes),
        DType::Int32 => write_typed::<i32>(file, shape, bytes),
        DType::Int64 => write_typed::<i64>(file, shape, bytes),
        DType::UInt8 => write_typed::<u8>(file, shape, bytes),
        DType::UInt16 => write_typed::<u16>(file, shape, bytes),
        DType::UInt32 => write_typed::<u32>(file, shape, bytes),
        DType::UInt64 => write_typed::<u64>(file, shape, bytes),
        other => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            unrepresentable(other).unwrap_or_default(),
        )),
    }
}

fn write_typed<T>(file: &File, shape: &[usize], bytes: &[u8]) -> io::Result<()>
where
    T: npyz::AutoSerialize + bytemuck::Pod,
{
    let values: std::borrow::Cow<'_, [T]> = match bytemuck::try_cast_slice(bytes) {
        Ok(values) => values.into(),
        Err(_) => bytemuck::pod_collect_to_vec(bytes).into(),
    };
    let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    let mut out = BufWriter::new(file);
    {
        let mut writer = npyz::WriteOptions::new()
            .default_dtype()
            .shape(&shape)
            .writer(&mut out)
            .begin_nd()?;
        writer.extend(values.iter().copied())?;
        writer.finish()?;
    }
    out.flush()?;
    out.into_inner()
        .map_err(io::IntoInnerError::into_error)?
        .sync_all()
}

/// The dtype to view a model tensor as: the runtime's, or when it reports none, the unsigned
/// integer of the tensor's element size, carrying its raw bits (the engine accepts any dtype
/// of that size; [`dataparallel::IoSpec::dtype_or_raw`]), or `None` when the element size has
/// no such integer.
pub fn view_dtype(spec: &dataparallel::IoSpec) -> Option<DType> {
    spec.dtype_or_raw()
}

/// Zeroed buffers for the model's outputs at `shapes` (from `DataParallel::output_shapes`),
/// after checking that together they fit in the memory budget.
///
/// # Errors
///
/// When the outputs' bytes overflow or exceed [`memory_budget`].
pub fn output_buffers(
    spec: &dataparallel::ModelSpec,
    shapes: &[Vec<usize>],
) -> Result<Vec<Buffer>, String> {
    limits::check_buffers(
        "the outputs",
        spec.outputs
            .iter()
            .zip(shapes)
            .map(|(o, shape)| (shape.as_slice(), o.elem_size)),
        memory_budget(),
    )?;
    spec.outputs
        .iter()
        .zip(shapes)
        .map(|(o, shape)| Buffer::try_zeroed(shape.iter().product::<usize>() * o.elem_size))
        .collect()
}

/// Output views over `buffers`, named after the model's outputs (an output whose dtype the
/// runtime does not report is viewed as [`view_dtype`] says; bytes if even that fails, which
/// the engine then refuses).
pub fn output_views<'a>(
    spec: &'a dataparallel::ModelSpec,
    shapes: &'a [Vec<usize>],
    buffers: &'a mut [Buffer],
) -> Vec<dataparallel::Output<'a>> {
    spec.outputs
        .iter()
        .zip(shapes)
        .zip(buffers.iter_mut())
        .map(|((o, shape), buffer)| {
            let dtype = view_dtype(o).unwrap_or(DType::UInt8);
            dataparallel::Output::new(dtype, shape, buffer.bytes_mut()).named(&o.name)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A .npy file's bytes: v1 header `dict` padded as numpy pads it, then `data`.
    fn npy_bytes(dict: &str, data: &[u8]) -> Vec<u8> {
        let mut header = dict.as_bytes().to_vec();
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(b' ');
        }
        header.push(b'\n');
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
        bytes.extend_from_slice(&header);
        bytes.extend_from_slice(data);
        bytes
    }

    fn read_bytes(bytes: &[u8]) -> Result<Array, String> {
        read_from(bytes, bytes.len() as u64, "\"x.npy\"")
    }

    #[test]
    fn arrays_round_trip_through_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.npy");
        let values: Vec<f32> = (0..12).map(|i| i as f32 * 0.5).collect();
        write(
            &File::create(&path).unwrap(),
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
        write(
            &File::create(&path).unwrap(),
            DType::Float16,
            &[4],
            bytemuck::cast_slice(&halves),
        )
        .unwrap();
        assert_eq!(read(&path).unwrap().dtype, DType::Float16);

        std::fs::write(&path, b"not numpy").unwrap();
        assert!(read(&path).unwrap_err().contains("not a .npy file"));
    }

    #[test]
    fn claimed_sizes_are_checked_against_the_file_before_allocating() {
        let ok = npy_bytes(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 8), }",
            &[0; 64],
        );
        assert_eq!(read_bytes(&ok).unwrap().shape, vec![2, 8]);
        for shape in [
            "(1073741824, 8)",
            "(17592186044416, 8)",
            "(18446744073709551615, 8)",
        ] {
            let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
            let e = read_bytes(&npy_bytes(&dict, &[0; 64])).unwrap_err();
            assert!(
                e.contains("truncated") || e.contains("more data than the file holds"),
                "{e}"
            );
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn bad_headers_are_one_short_line() {
        let junk = format!("{{'descr': '<f4', {} }}", "x".repeat(80_000));
        let mut bytes = b"\x93NUMPY\x02\x00".to_vec();
        bytes.extend_from_slice(&(junk.len() as u32).to_le_bytes());
        bytes.extend_from_slice(junk.as_bytes());
        let e = read_bytes(&bytes).unwrap_err();
        assert!(e.contains("10000-byte"), "{e}");
        assert!(e.len() < 300, "{e}");

        let junk = format!("{{'descr': '<f4',\n\u{1b}[2J {} }}", "x".repeat(5_000));
        let e = read_bytes(&npy_bytes(&junk, &[])).unwrap_err();
        assert!(e.contains("does not parse"), "{e}");
        assert!(!e.contains(['\n', '\u{1b}']), "{e}");
        assert!(e.len() < 400, "{} bytes: {e}", e.len());

        let e = read_bytes(b"\x93NUMPY\x07\x00").unwrap_err();
        assert!(e.contains("version 7.0"), "{e}");
        let e = read_bytes(b"\x93NUMPY\x01\x00\xff\x00{").unwrap_err();
        assert!(e.contains("truncated"), "{e}");
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
