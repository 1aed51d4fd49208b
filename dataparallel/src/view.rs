//! Typed views over caller memory: the inputs a forward reads and the outputs it writes.
//!
//! Views borrow; they never copy. A view carries its dtype and shape (borrowed too, so making
//! one allocates nothing) and is matched to the model's tensors by name, or by position when
//! no view in the call is named.

use std::marker::PhantomData;

use bytemuck::Pod;
use neuron_rt::DType;

/// A read-only view of one input tensor in caller memory.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    pub(crate) name: Option<&'a str>,
    pub(crate) dtype: DType,
    pub(crate) shape: &'a [usize],
    pub(crate) data: &'a [u8],
    pub(crate) broadcast: bool,
}

impl<'a> Input<'a> {
    /// A view of `data` (row-major bytes) as a tensor of `dtype` and `shape`.
    ///
    /// Sizes are checked when the view is used, against the model.
    pub fn new(dtype: DType, shape: &'a [usize], data: &'a [u8]) -> Input<'a> {
        Input {
            name: None,
            dtype,
            shape,
            data,
            broadcast: false,
        }
    }

    /// A view of a typed slice; `dtype` names the element type the model expects
    /// (e.g. [`DType::Float32`] for `f32`, or [`DType::BFloat16`] for `half::bf16`).
    pub fn from_slice<T: Pod>(dtype: DType, shape: &'a [usize], data: &'a [T]) -> Input<'a> {
        Input::new(dtype, shape, bytemuck::cast_slice(data))
    }

    /// A `float32` view.
    pub fn f32(shape: &'a [usize], data: &'a [f32]) -> Input<'a> {
        Input::from_slice(DType::Float32, shape, data)
    }

    /// Matches this view to the model input called `name` (otherwise views are matched by
    /// position).
    #[must_use]
    pub fn named(mut self, name: &'a str) -> Input<'a> {
        self.name = Some(name);
        self
    }

    /// Marks the input as carrying no batch dimension: every piece gets the whole tensor,
    /// unchanged. Its shape must equal the model input's shape exactly.
    #[must_use]
    pub fn broadcast(mut self) -> Input<'a> {
        self.broadcast = true;
        self
    }

    /// The name the view is matched by, if any.
    pub fn name(&self) -> Option<&'a str> {
        self.name
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The shape.
    pub fn shape(&self) -> &'a [usize] {
        self.shape
    }
}

/// A writable view of one output tensor in caller memory.
///
/// Holds a raw pointer derived from the caller's `&mut [u8]` (and that borrow, through the
/// lifetime) so that workers on several threads can each write their own disjoint rows.
#[derive(Debug)]
pub struct Output<'a> {
    pub(crate) name: Option<&'a str>,
    pub(crate) dtype: DType,
    pub(crate) shape: &'a [usize],
    pub(crate) ptr: *mut u8,
    pub(crate) len: usize,
    _data: PhantomData<&'a mut [u8]>,
}

// SAFETY: an `Output` is an exclusive borrow of caller bytes (`&'a mut [u8]` is `Send`).
unsafe impl Send for Output<'_> {}
// SAFETY: through `&Output` nothing reads or writes the bytes except the engine, which writes
// disjoint ranges from different workers and only while the caller is blocked in the call
// that owns the `&mut [Output]`.
unsafe impl Sync for Output<'_> {}

impl<'a> Output<'a> {
    /// A view of `data` as the output tensor of `dtype` and `shape` that a forward fills.
    pub fn new(dtype: DType, shape: &'a [usize], data: &'a mut [u8]) -> Output<'a> {
        Output {
            name: None,
            dtype,
            shape,
            ptr: data.as_mut_ptr(),
            len: data.len(),
            _data: PhantomData,
        }
    }

    /// A view of a typed slice.
    pub fn from_slice<T: Pod>(dtype: DType, shape: &'a [usize], data: &'a mut [T]) -> Output<'a> {
        Output::new(dtype, shape, bytemuck::cast_slice_mut(data))
    }

    /// A `float32` view.
    pub fn f32(shape: &'a [usize], data: &'a mut [f32]) -> Output<'a> {
        Output::from_slice(DType::Float32, shape, data)
    }

    /// Matches this view to the model output called `name`.
    #[must_use]
    pub fn named(mut self, name: &'a str) -> Output<'a> {
        self.name = Some(name);
        self
    }

    /// The name the view is matched by, if any.
    pub fn name(&self) -> Option<&'a str> {
        self.name
    }

    /// The shape.
    pub fn shape(&self) -> &'a [usize] {
        self.shape
    }

    /// The bytes `range` of the view, for writing.
    ///
    /// # Safety
    ///
    /// `offset + len <= self.len`, and no other live reference may overlap the range for
    /// the lifetime of the returned slice.
    // Workers on several threads each write their own disjoint rows of one output through a
    // shared `&Output`; the raw pointer (from the caller's `&mut`) is what makes that sound.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn bytes_mut(&self, offset: usize, len: usize) -> &mut [u8] {
        // SAFETY: the caller keeps the range in bounds and unaliased; `ptr` was derived from
        // a `&'a mut [u8]` of `self.len` bytes that this view still borrows.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(offset), len) }
    }
}

/// An output tensor allocated by [`DataParallel::forward`](crate::DataParallel::forward).
#[derive(Debug, Clone, PartialEq)]
pub struct OutputTensor {
    /// The model output's name.
    pub name: String,
    /// The element type.
    pub dtype: DType,
    /// The gathered shape.
    pub shape: Vec<usize>,
    /// Row-major bytes.
    pub data: Vec<u8>,
}

impl OutputTensor {
    /// The data as typed elements (`None` when the size is not a whole number of `T`s or the
    /// buffer is not aligned for `T`).
    pub fn as_slice<T: Pod>(&self) -> Option<&[T]> {
        bytemuck::try_cast_slice(&self.data).ok()
    }

    /// The data copied into typed elements.
    pub fn to_vec<T: Pod>(&self) -> Option<Vec<T>> {
        if self.data.len() % size_of::<T>().max(1) != 0 {
            return None;
        }
        Some(bytemuck::pod_collect_to_vec(&self.data))
    }
}
