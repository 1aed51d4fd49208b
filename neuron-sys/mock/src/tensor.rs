//! Tensors: storage, placement and the per-core device-memory budget.
//!
//! This module owns [`Tensor`] (the object behind an `nrt_tensor_t*` handle), its storage
//! ([`Storage`]: none, an owned 64-byte-aligned host buffer shared by slices, or a caller's
//! attached buffer) and [`CoreBudget`] (`NRT_MOCK_CORE_MEMORY` bytes per logical core, charged
//! by DEVICE allocations and released when the last handle on the buffer goes).
//!
//! Simulated device memory is plain host memory. Like DMA on real hardware, reads and writes
//! of tensor bytes are not serialised against each other: callers that touch the same bytes
//! from two threads at once race, exactly as they would with libnrt.

use std::alloc::Layout;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use neuron_sys::bindings::{NRT_RESOURCE, nrt_tensor_placement_t};

use crate::counters::{self, COUNTERS};
use crate::report::{Res, fail};
use crate::state::lock;

/// Alignment of every buffer the mock allocates.
pub(crate) const ALIGN: usize = 64;
/// Default `NRT_MOCK_CORE_MEMORY`: 16 GiB.
pub(crate) const DEFAULT_CORE_MEMORY: u64 = 16 << 30;

/// Device memory of one logical core.
#[derive(Debug)]
pub(crate) struct CoreBudget {
    logical: usize,
    phys: u32,
    used: AtomicU64,
    limit: u64,
}

impl CoreBudget {
    pub(crate) fn new(logical: usize, phys: u32, limit: u64) -> Self {
        CoreBudget {
            logical,
            phys,
            used: AtomicU64::new(0),
            limit,
        }
    }

    fn charge(&self, n: u64) -> Res {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                u.checked_add(n).filter(|&t| t <= self.limit)
            })
            .map(|_| ())
            .map_err(|used| {
                fail(
                    NRT_RESOURCE,
                    format!(
                        "out of device memory on logical core {} (nc{}): {n} bytes requested, {used} of \
                         {} in use (NRT_MOCK_CORE_MEMORY)",
                        self.logical, self.phys, self.limit
                    ),
                )
            })
    }

    fn release(&self, n: u64) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }
}

/// An owned, zeroed, 64-byte-aligned host allocation.
#[derive(Debug)]
pub(crate) struct AlignedBuf {
    ptr: NonNull<u8>,
    layout: Layout,
    budget: Option<Arc<CoreBudget>>,
}

// SAFETY: AlignedBuf owns its allocation exclusively (like a Box<[u8]>); it hands out raw
// pointers only, and every access through them is a copy whose synchronisation is the callers'
// (see the module docs), so moving or sharing the owner between threads is sound.
unsafe impl Send for AlignedBuf {}
// SAFETY: as above; `&AlignedBuf` exposes no interior mutation except through raw pointers.
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    /// Allocates `size > 0` zeroed bytes, charging `budget` if given.
    pub(crate) fn new(size: usize, budget: Option<Arc<CoreBudget>>) -> Res<Self> {
        let layout = Layout::from_size_align(size, ALIGN).map_err(|_| {
            fail(
                NRT_RESOURCE,
                format!("cannot allocate {size} bytes: too large"),
            )
        })?;
        if let Some(b) = &budget {
            b.charge(size as u64)?;
        }
        // SAFETY: `layout` has a non-zero size (callers reject size 0) and a valid alignment.
        let raw = unsafe { std::alloc::alloc_zeroed(layout) };
        let Some(ptr) = NonNull::new(raw) else {
            if let Some(b) = &budget {
                b.release(size as u64);
            }
            return Err(fail(
                NRT_RESOURCE,
                format!("host allocation of {size} bytes failed"),
            ));
        };
        Ok(AlignedBuf {
            ptr,
            layout,
            budget,
        })
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from `alloc_zeroed(self.layout)` and is freed once, here.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) };
        if let Some(b) = &self.budget {
            b.release(self.layout.size() as u64);
        }
    }
}

/// A caller-owned buffer attached with `nrt_tensor_attach_buffer`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CallerPtr(pub(crate) *mut u8);

// SAFETY: the pointer is only an address the caller promised stays valid while attached; the
// mock copies through it and never frees it, so sending the address between threads is sound.
unsafe impl Send for CallerPtr {}
// SAFETY: as above.
unsafe impl Sync for CallerPtr {}

/// Where a tensor's bytes are.
#[derive(Debug, Clone)]
pub(crate) enum Storage {
    /// `nrt_tensor_allocate_empty`, before any attach.
    Empty,
    /// `[offset, offset+len)` of a mock-owned buffer (shared by slices).
    Owned {
        buf: Arc<AlignedBuf>,
        offset: usize,
        len: usize,
    },
    /// A caller's buffer.
    Attached { ptr: CallerPtr, len: usize },
}

/// Placement and storage, changed together by attach.
#[derive(Debug)]
pub(crate) struct TensorState {
    pub(crate) placement: nrt_tensor_placement_t,
    /// Logical core of a DEVICE tensor.
    pub(crate) core: Option<usize>,
    pub(crate) storage: Storage,
}

/// The object behind an `nrt_tensor_t*`.
#[derive(Debug)]
pub(crate) struct Tensor {
    pub(crate) name: String,
    pub(crate) state: Mutex<TensorState>,
    /// An `nrt_tensor_attach_buffer` on this tensor failed (freeing it while still empty
    /// crashes runtimes before 2.29.40, which the mock reproduces).
    pub(crate) attach_failed: std::sync::atomic::AtomicBool,
}

impl Tensor {
    pub(crate) fn new(name: String, state: TensorState) -> Self {
        counters::add(&COUNTERS.live_tensors, 1);
        Tensor {
            name,
            state: Mutex::new(state),
            attach_failed: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The tensor's bytes now, or `None` when it has no storage.
    pub(crate) fn view(&self) -> Option<View> {
        let st = lock(&self.state);
        match &st.storage {
            Storage::Empty => None,
            Storage::Owned { buf, offset, len } => Some(View {
                // SAFETY: offset <= buf's size (checked when the slice was made), so the
                // result stays inside the allocation.
                ptr: unsafe { buf.ptr.as_ptr().add(*offset) },
                len: *len,
                _keep: Some(Arc::clone(buf)),
            }),
            Storage::Attached { ptr, len } => Some(View {
                ptr: ptr.0,
                len: *len,
                _keep: None,
            }),
        }
    }

    /// Whether the tensor has no storage (allocated empty, not attached).
    pub(crate) fn is_empty(&self) -> bool {
        matches!(lock(&self.state).storage, Storage::Empty)
    }

    /// Placement and logical core (for DEVICE tensors).
    pub(crate) fn placement(&self) -> (nrt_tensor_placement_t, Option<usize>) {
        let st = lock(&self.state);
        (st.placement, st.core)
    }
}

impl Drop for Tensor {
    fn drop(&mut self) {
        counters::dec(&COUNTERS.live_tensors);
    }
}

/// `len` valid bytes at `ptr`, kept alive while the view exists.
#[derive(Debug)]
pub(crate) struct View {
    ptr: *mut u8,
    len: usize,
    _keep: Option<Arc<AlignedBuf>>,
}

/// `Err(())` when `[offset, offset+n)` is not inside `len`.
fn span(len: usize, offset: usize, n: usize) -> Result<(), ()> {
    match offset.checked_add(n) {
        Some(end) if end <= len => Ok(()),
        _ => Err(()),
    }
}

impl View {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn ptr(&self) -> *mut u8 {
        self.ptr
    }

    /// A view of `[offset, offset+n)` sharing the same storage.
    pub(crate) fn sub(&self, offset: usize, n: usize) -> Result<(*mut u8, usize), ()> {
        span(self.len, offset, n)?;
        // SAFETY: offset + n <= len, so the pointer stays inside (or one past) the storage.
        Ok((unsafe { self.ptr.add(offset) }, n))
    }

    /// Copies `dst.len()` bytes from `offset`.
    pub(crate) fn read(&self, offset: usize, dst: &mut [u8]) -> Result<(), ()> {
        span(self.len, offset, dst.len())?;
        // SAFETY: the storage holds `len` valid bytes (owned: kept alive by `_keep`; attached:
        // the caller's promise to nrt_tensor_attach_buffer) and the range is inside it; `dst` is
        // a distinct Rust buffer, so the ranges do not overlap.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr.add(offset), dst.as_mut_ptr(), dst.len()) };
        Ok(())
    }

    /// Copies `src` in at `offset`.
    pub(crate) fn write(&self, offset: usize, src: &[u8]) -> Result<(), ()> {
        span(self.len, offset, src.len())?;
        // SAFETY: as in `read`; `src` may alias the storage only if the caller passed a pointer
        // into a tensor's own storage, so use a memmove (`copy`), which allows overlap.
        unsafe { std::ptr::copy(src.as_ptr(), self.ptr.add(offset), src.len()) };
        Ok(())
    }

    /// Sets `n` bytes at `offset` to `value`.
    pub(crate) fn fill(&self, offset: usize, value: u8, n: usize) -> Result<(), ()> {
        span(self.len, offset, n)?;
        // SAFETY: the range is inside the storage's valid bytes (see `read`).
        unsafe { std::ptr::write_bytes(self.ptr.add(offset), value, n) };
        Ok(())
    }

    /// Whether the two views share any byte.
    pub(crate) fn overlaps(&self, other: &View) -> bool {
        let (a, b) = (self.ptr as usize, other.ptr as usize);
        self.len > 0
            && other.len > 0
            && a < b.saturating_add(other.len)
            && b < a.saturating_add(self.len)
    }

    /// The bytes as a shared slice.
    ///
    /// # Safety
    /// No `&mut` slice over any of these bytes may exist while the result lives.
    pub(crate) unsafe fn as_slice(&self) -> &[u8] {
        // SAFETY: the storage holds `len` valid, initialised bytes while the view lives (owned:
        // kept alive by `_keep` and zeroed at allocation; attached: the caller's promise to
        // nrt_tensor_attach_buffer); exclusivity is the caller's promise.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    /// The bytes as an exclusive slice.
    ///
    /// # Safety
    /// No other slice over any of these bytes may exist while the result lives.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn as_mut_slice(&self) -> &mut [u8] {
        // SAFETY: as in `as_slice`; exclusivity is the caller's promise.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}
