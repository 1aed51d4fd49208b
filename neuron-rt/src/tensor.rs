//! Tensors: device or host storage owned through libnrt, bounds-checked byte and typed
//! access, slices, and caller buffers attached as tensor storage.
//!
//! Ownership rules, which the types enforce:
//!
//! - A [`Tensor`] owns its libnrt handle and frees it on drop. Reading takes `&self`;
//!   writing, memset and anything else that changes bytes takes `&mut self`.
//! - [`Tensor::slice`] / [`Tensor::slice_mut`] alias part of a tensor's storage; the slice
//!   borrows its parent the same way (`&` or `&mut`), so aliasing never gives two writers.
//! - [`Tensor::attach`] / [`Tensor::attach_mut`] make a caller's buffer the storage. The
//!   returned guard borrows the buffer for its whole life, and tensor sets borrow the guard,
//!   so the buffer provably outlives every use by the runtime. A buffer attached through a
//!   shared borrow is read-only: its guard hands out only `&Tensor`, and only
//!   [`WritableTensor`]s can be added to a set as execution outputs.
//!
//! The compiler holds these rules. An attached buffer cannot be touched while the runtime
//! may use it:
//!
//! ```compile_fail
//! # fn f(rt: &neuron_rt::Runtime) -> neuron_rt::Result<()> {
//! let mut buffer = vec![0u8; 64];
//! let attached = neuron_rt::Tensor::attach_mut(rt, &mut buffer, "y")?;
//! buffer[0] = 1; // error: `buffer` is mutably borrowed by `attached`
//! drop(attached);
//! # Ok(()) }
//! ```
//!
//! A read-only attachment cannot become an execution output:
//!
//! ```compile_fail
//! # fn f(rt: &neuron_rt::Runtime) -> neuron_rt::Result<()> {
//! let buffer = vec![0u8; 64];
//! let mut attached = neuron_rt::Tensor::attach(rt, &buffer, "x")?;
//! let mut outputs = neuron_rt::TensorSet::new(rt)?;
//! outputs.add_mut("x", &mut attached)?; // error: `Attached` is not a `WritableTensor`
//! # Ok(()) }
//! ```
//!
//! and a slice cannot outlive the tensor it views:
//!
//! ```compile_fail
//! # fn f(rt: &neuron_rt::Runtime) -> neuron_rt::Result<()> {
//! let slice = {
//!     let tensor = neuron_rt::Tensor::allocate_host(rt, 64, "t")?;
//!     tensor.slice(0, 32, "half")?
//! }; // error: `tensor` dropped while still borrowed
//! drop(slice);
//! # Ok(()) }
//! ```

use std::ffi::CString;
use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::ptr::NonNull;

use bytemuck::Pod;
use neuron_sys::{NRT_TENSOR_PLACEMENT_DEVICE, NRT_TENSOR_PLACEMENT_VIRTUAL, NrtApi, nrt_tensor_t};

use crate::device_id::DeviceId;
use crate::error::{Error, Result, check};
use crate::runtime::Runtime;

/// Where a tensor's storage lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Device memory (HBM) of one of this process's NeuronCores.
    Device(DeviceId),
    /// Ordinary host memory managed by libnrt (`NRT_TENSOR_PLACEMENT_VIRTUAL`).
    Host,
    /// A caller's buffer attached with [`Tensor::attach`] or [`Tensor::attach_mut`].
    Attached,
}

/// A libnrt tensor. Frees its handle on drop.
///
/// `Tensor` is `Send + Sync`: libnrt tensor handles are not tied to a thread, every call
/// that changes the bytes takes `&mut self`, and `&self` only reads.
pub struct Tensor {
    runtime: Runtime,
    raw: NonNull<nrt_tensor_t>,
    size: usize,
    name: String,
    placement: Placement,
}

// SAFETY: the handle is an opaque pointer into libnrt, which does not tie tensors to the
// thread that created them. Moving a `Tensor` to another thread moves sole ownership of
// the handle with it.
unsafe impl Send for Tensor {}
// SAFETY: through `&Tensor` only reads happen (`nrt_tensor_read`, `get_size`, `get_va`),
// which libnrt allows concurrently; every call that writes needs `&mut Tensor`.
unsafe impl Sync for Tensor {}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tensor")
            .field("name", &self.name)
            .field("size", &self.size)
            .field("placement", &self.placement)
            .finish_non_exhaustive()
    }
}

fn c_name(op: &'static str, name: &str) -> Result<CString> {
    CString::new(name).map_err(|_| Error::InvalidArgument {
        op,
        message: format!("tensor name {name:?} contains a NUL byte; use a name without one"),
    })
}

impl Tensor {
    /// Allocates `size` bytes of device memory on one of this process's NeuronCores.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a core this process does not own or a name with a NUL
    /// byte; [`Error::Nrt`] from `nrt_tensor_allocate` (e.g. `NRT_RESOURCE` when the core's
    /// memory is exhausted).
    pub fn allocate_device(
        runtime: &Runtime,
        core: DeviceId,
        size: usize,
        name: &str,
    ) -> Result<Tensor> {
        runtime.check_device("nrt_tensor_allocate", core)?;
        Self::allocate(runtime, Placement::Device(core), size, name)
    }

    /// Allocates `size` bytes of host memory managed by libnrt.
    ///
    /// # Errors
    ///
    /// As [`Tensor::allocate_device`].
    pub fn allocate_host(runtime: &Runtime, size: usize, name: &str) -> Result<Tensor> {
        Self::allocate(runtime, Placement::Host, size, name)
    }

    fn allocate(
        runtime: &Runtime,
        placement: Placement,
        size: usize,
        name: &str,
    ) -> Result<Tensor> {
        const OP: &str = "nrt_tensor_allocate";
        let c_name = c_name(OP, name)?;
        if let Some(max) = runtime.max_tensor_bytes().filter(|&max| size > max) {
            return Err(Error::InvalidArgument {
                op: OP,
                message: format!(
                    "tensor `{name}` of {size} bytes is 4 GiB or more, which libnrt {} \
                     overflows (a known issue before 2.30.50; the limit is {max} bytes); a \
                     piece that large is a plan choice: use a smaller compiled batch or \
                     split size, or upgrade aws-neuronx-runtime-lib",
                    runtime.version()
                ),
            });
        }
        let (raw_placement, core) = match placement {
            Placement::Device(core) => (
                NRT_TENSOR_PLACEMENT_DEVICE,
                i32::try_from(core.index()).map_err(|_| Error::InvalidArgument {
                    op: OP,
                    message: format!("{core} does not fit libnrt's core index"),
                })?,
            ),
            Placement::Host | Placement::Attached => (NRT_TENSOR_PLACEMENT_VIRTUAL, -1),
        };
        let mut raw: *mut nrt_tensor_t = std::ptr::null_mut();
        // SAFETY: `c_name` is NUL-terminated and outlives the call; `raw` is a valid place
        // for the out-pointer. libnrt writes it only on success.
        let status = unsafe {
            (runtime.api().nrt_tensor_allocate)(
                raw_placement,
                core,
                size,
                c_name.as_ptr(),
                &mut raw,
            )
        };
        check(OP, status, || {
            format!("{size} bytes for `{name}` on {placement:?}")
        })?;
        let raw = NonNull::new(raw).ok_or_else(|| null_handle(OP))?;
        Ok(Tensor {
            runtime: runtime.clone(),
            raw,
            size,
            name: name.to_owned(),
            placement,
        })
    }

    /// Makes `buffer` the storage of a new read-only tensor (no copy).
    ///
    /// The guard borrows `buffer` until it drops; tensor sets borrow the guard. The runtime
    /// may read the buffer (as an execution input) but nothing can write it through the
    /// tensor.
    ///
    /// # Errors
    ///
    /// [`Error::Unsupported`] when the library lacks `nrt_tensor_allocate_empty` or
    /// `nrt_tensor_attach_buffer`; [`Error::Nrt`] when libnrt refuses.
    pub fn attach<'b>(runtime: &Runtime, buffer: &'b [u8], name: &str) -> Result<Attached<'b>> {
        let tensor = Self::attach_raw(runtime, buffer.as_ptr().cast_mut(), buffer.len(), name)?;
        Ok(Attached {
            tensor,
            _buffer: PhantomData,
        })
    }

    /// Makes `buffer` the storage of a new writable tensor (no copy): executions may write
    /// their outputs straight into it.
    ///
    /// # Errors
    ///
    /// As [`Tensor::attach`].
    pub fn attach_mut<'b>(
        runtime: &Runtime,
        buffer: &'b mut [u8],
        name: &str,
    ) -> Result<AttachedMut<'b>> {
        let tensor = Self::attach_raw(runtime, buffer.as_mut_ptr(), buffer.len(), name)?;
        Ok(AttachedMut {
            tensor,
            _buffer: PhantomData,
        })
    }

    fn attach_raw(runtime: &Runtime, buffer: *mut u8, len: usize, name: &str) -> Result<Tensor> {
        const OP: &str = "nrt_tensor_attach_buffer";
        let api = runtime.api();
        let allocate_empty = api.nrt_tensor_allocate_empty.ok_or(Error::Unsupported {
            op: OP,
            symbol: "nrt_tensor_allocate_empty",
        })?;
        let attach = api.nrt_tensor_attach_buffer.ok_or(Error::Unsupported {
            op: OP,
            symbol: "nrt_tensor_attach_buffer",
        })?;
        let c_name = c_name(OP, name)?;
        // An empty handle kept after an earlier failed attach (runtimes before 2.29.40 only)
        // is reused first; libnrt keeps the name it was created with.
        let raw = match runtime.take_spare_empty() {
            Some(raw) => raw,
            None => {
                let mut raw: *mut nrt_tensor_t = std::ptr::null_mut();
                // SAFETY: `c_name` is NUL-terminated and outlives the call; `raw` is a valid
                // place for the out-pointer.
                let status = unsafe { allocate_empty(c_name.as_ptr(), &mut raw) };
                check("nrt_tensor_allocate_empty", status, || format!("`{name}`"))?;
                NonNull::new(raw).ok_or_else(|| null_handle("nrt_tensor_allocate_empty"))?
            }
        };
        // SAFETY: `buffer` is valid for `len` bytes for as long as the guard that will own
        // this tensor lives (the callers tie the guard to the buffer's borrow), and libnrt
        // never frees attached storage. A read-only buffer is only ever read: the guard does
        // not hand out `&mut Tensor`, and sets refuse it as an output. `raw` is a live empty
        // handle owned by this function.
        let status = unsafe { attach(raw.as_ptr(), buffer.cast(), len) };
        if let Err(error) = check(OP, status, || format!("{len} bytes for `{name}`")) {
            if runtime.frees_failed_attach_safely() {
                let mut raw = raw.as_ptr();
                // SAFETY: the handle is live, owned here and used by nothing else; the call
                // nulls our copy of the pointer.
                unsafe { (api.nrt_tensor_free)(&mut raw) };
            } else {
                // Freeing an empty tensor after a failed attach crashes runtimes before
                // 2.29.40: keep the handle for the next attach instead (nrt_close frees it).
                runtime.keep_spare_empty(raw);
            }
            return Err(error);
        }
        Ok(Tensor {
            runtime: runtime.clone(),
            raw,
            size: len,
            name: name.to_owned(),
            placement: Placement::Attached,
        })
    }

    /// The tensor's size in bytes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The name the tensor was created with.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where the storage lives.
    pub fn placement(&self) -> Placement {
        self.placement
    }

    /// The raw handle. Crate-internal.
    pub(crate) fn raw(&self) -> *mut nrt_tensor_t {
        self.raw.as_ptr()
    }

    fn api(&self) -> &'static NrtApi {
        self.runtime.api()
    }

    fn check_range(&self, op: &'static str, offset: usize, len: usize) -> Result<()> {
        match offset.checked_add(len) {
            Some(end) if end <= self.size => Ok(()),
            _ => Err(Error::OutOfBounds {
                op,
                tensor: self.name.clone(),
                offset,
                len,
                size: self.size,
            }),
        }
    }

    /// Copies `data` into the tensor at byte `offset`.
    ///
    /// # Errors
    ///
    /// [`Error::OutOfBounds`] when the range does not fit; [`Error::Nrt`] from libnrt.
    pub fn write(&mut self, offset: usize, data: &[u8]) -> Result<()> {
        const OP: &str = "nrt_tensor_write";
        self.check_range(OP, offset, data.len())?;
        if data.is_empty() {
            return Ok(());
        }
        // SAFETY: the handle is live (owned by `self`), `data` is valid for `data.len()`
        // bytes, and the range was checked against the tensor's size. `&mut self` means no
        // other Rust reference reads this tensor meanwhile.
        let status = unsafe {
            (self.api().nrt_tensor_write)(self.raw(), data.as_ptr().cast(), offset, data.len())
        };
        check(OP, status, || {
            format!("{} bytes at {offset} of `{}`", data.len(), self.name)
        })
    }

    /// Copies bytes from the tensor at byte `offset` into `out`.
    ///
    /// # Errors
    ///
    /// As [`Tensor::write`].
    pub fn read(&self, offset: usize, out: &mut [u8]) -> Result<()> {
        const OP: &str = "nrt_tensor_read";
        self.check_range(OP, offset, out.len())?;
        if out.is_empty() {
            return Ok(());
        }
        // SAFETY: the handle is live, `out` is valid for writes of `out.len()` bytes, and
        // the range was checked against the tensor's size.
        let status = unsafe {
            (self.api().nrt_tensor_read)(self.raw(), out.as_mut_ptr().cast(), offset, out.len())
        };
        check(OP, status, || {
            format!("{} bytes at {offset} of `{}`", out.len(), self.name)
        })
    }

    /// Writes typed elements starting at element index `first` (offset `first * size_of::<T>()`).
    ///
    /// # Errors
    ///
    /// As [`Tensor::write`].
    pub fn write_slice<T: Pod>(&mut self, first: usize, data: &[T]) -> Result<()> {
        let offset = first.saturating_mul(size_of::<T>());
        self.write(offset, bytemuck::cast_slice(data))
    }

    /// Reads typed elements starting at element index `first`.
    ///
    /// # Errors
    ///
    /// As [`Tensor::read`].
    pub fn read_slice<T: Pod>(&self, first: usize, out: &mut [T]) -> Result<()> {
        let offset = first.saturating_mul(size_of::<T>());
        self.read(offset, bytemuck::cast_slice_mut(out))
    }

    /// Reads the whole tensor as elements of `T` (trailing bytes that do not fill an element
    /// are an error).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] when the size is not a multiple of `size_of::<T>()`; else
    /// as [`Tensor::read`].
    pub fn to_vec<T: Pod>(&self) -> Result<Vec<T>> {
        let elem = size_of::<T>().max(1);
        if self.size % elem != 0 {
            return Err(Error::InvalidArgument {
                op: "nrt_tensor_read",
                message: format!(
                    "tensor `{}` has {} bytes, not a whole number of {}-byte elements",
                    self.name, self.size, elem
                ),
            });
        }
        let mut out = vec![T::zeroed(); self.size / elem];
        self.read_slice(0, &mut out)?;
        Ok(out)
    }

    /// Sets `len` bytes from byte `offset` to `value`.
    ///
    /// # Errors
    ///
    /// [`Error::Unsupported`] when the library lacks `nrt_tensor_memset`; else as
    /// [`Tensor::write`].
    pub fn memset(&mut self, offset: usize, value: u8, len: usize) -> Result<()> {
        const OP: &str = "nrt_tensor_memset";
        let memset = self
            .api()
            .nrt_tensor_memset
            .ok_or(Error::Unsupported { op: OP, symbol: OP })?;
        self.check_range(OP, offset, len)?;
        if len == 0 {
            return Ok(());
        }
        // SAFETY: the handle is live and the range was checked; `&mut self` excludes other
        // Rust readers of this tensor.
        let status = unsafe { memset(self.raw(), offset as u64, i32::from(value), len) };
        check(OP, status, || {
            format!("{len} bytes at {offset} of `{}`", self.name)
        })
    }

    fn slice_raw(&self, offset: usize, size: usize, name: &str) -> Result<Tensor> {
        const OP: &str = "nrt_tensor_allocate_slice";
        let allocate_slice = self
            .api()
            .nrt_tensor_allocate_slice
            .ok_or(Error::Unsupported { op: OP, symbol: OP })?;
        self.check_range(OP, offset, size)?;
        let c_name = c_name(OP, name)?;
        let mut raw: *mut nrt_tensor_t = std::ptr::null_mut();
        // SAFETY: the source handle is live and the range was checked; `c_name` outlives the
        // call; `raw` is a valid out-pointer. The slice shares (refcounted) storage.
        let status = unsafe { allocate_slice(self.raw(), offset, size, c_name.as_ptr(), &mut raw) };
        check(OP, status, || {
            format!("bytes {offset}..{} of `{}`", offset + size, self.name)
        })?;
        let raw = NonNull::new(raw).ok_or_else(|| null_handle(OP))?;
        Ok(Tensor {
            runtime: self.runtime.clone(),
            raw,
            size,
            name: name.to_owned(),
            placement: self.placement,
        })
    }

    /// A read-only view of bytes `offset..offset + size` (no copy).
    ///
    /// # Errors
    ///
    /// [`Error::OutOfBounds`], [`Error::Unsupported`] or [`Error::Nrt`].
    pub fn slice(&self, offset: usize, size: usize, name: &str) -> Result<Slice<'_>> {
        Ok(Slice {
            tensor: self.slice_raw(offset, size, name)?,
            _parent: PhantomData,
        })
    }

    /// A writable view of bytes `offset..offset + size` (no copy).
    ///
    /// # Errors
    ///
    /// As [`Tensor::slice`].
    pub fn slice_mut(&mut self, offset: usize, size: usize, name: &str) -> Result<SliceMut<'_>> {
        Ok(SliceMut {
            tensor: self.slice_raw(offset, size, name)?,
            _parent: PhantomData,
        })
    }
}

impl Drop for Tensor {
    fn drop(&mut self) {
        let mut raw = self.raw.as_ptr();
        // SAFETY: we own the handle and nothing can use it after this; `nrt_tensor_free`
        // nulls the pointer we pass. Sets that named this tensor borrowed it, so they are
        // gone already. Attached caller buffers are not freed by libnrt.
        unsafe { (self.api().nrt_tensor_free)(&mut raw) };
    }
}

fn null_handle(op: &'static str) -> Error {
    Error::Nrt {
        op,
        status: neuron_sys::Status::Failure,
        message: "libnrt reported success but returned a null handle".to_owned(),
        remedy: None,
    }
}

/// A read-only tensor over a caller's buffer; see [`Tensor::attach`].
pub struct Attached<'b> {
    tensor: Tensor,
    _buffer: PhantomData<&'b [u8]>,
}

/// A writable tensor over a caller's buffer; see [`Tensor::attach_mut`].
pub struct AttachedMut<'b> {
    tensor: Tensor,
    _buffer: PhantomData<&'b mut [u8]>,
}

/// A read-only view into part of a tensor; see [`Tensor::slice`].
pub struct Slice<'a> {
    tensor: Tensor,
    _parent: PhantomData<&'a Tensor>,
}

/// A writable view into part of a tensor; see [`Tensor::slice_mut`].
pub struct SliceMut<'a> {
    tensor: Tensor,
    _parent: PhantomData<&'a mut Tensor>,
}

macro_rules! guard_impls {
    ($($guard:ident),*) => {$(
        impl Deref for $guard<'_> {
            type Target = Tensor;
            fn deref(&self) -> &Tensor {
                &self.tensor
            }
        }
        impl fmt::Debug for $guard<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_tuple(stringify!($guard)).field(&self.tensor).finish()
            }
        }
    )*};
}

// Guards deref to `&Tensor` only. A `DerefMut` would let `mem::swap` move the inner
// `Tensor` out of the guard and past the borrow that keeps its storage alive.
guard_impls!(Attached, AttachedMut, Slice, SliceMut);

impl SliceMut<'_> {
    /// [`Tensor::write`] on the slice.
    ///
    /// # Errors
    ///
    /// As [`Tensor::write`].
    pub fn write(&mut self, offset: usize, data: &[u8]) -> Result<()> {
        self.tensor.write(offset, data)
    }

    /// [`Tensor::memset`] on the slice.
    ///
    /// # Errors
    ///
    /// As [`Tensor::memset`].
    pub fn memset(&mut self, offset: usize, value: u8, len: usize) -> Result<()> {
        self.tensor.memset(offset, value, len)
    }
}

mod sealed {
    pub trait Sealed {}
}

/// Tensors an execution may write: owned tensors, writable attached buffers and writable
/// slices. Sealed; used by [`TensorSet::add_mut`](crate::TensorSet::add_mut).
pub trait WritableTensor: sealed::Sealed {
    /// The tensor.
    #[doc(hidden)]
    fn writable_tensor(&mut self) -> &Tensor;
}

macro_rules! writable {
    ($($ty:ty => |$this:ident| $body:expr;)*) => {$(
        impl sealed::Sealed for $ty {}
        impl WritableTensor for $ty {
            fn writable_tensor(&mut self) -> &Tensor {
                let $this = self;
                $body
            }
        }
    )*};
}

writable! {
    Tensor => |this| this;
    AttachedMut<'_> => |this| &this.tensor;
    SliceMut<'_> => |this| &this.tensor;
}
