//! Tensor sets: the name -> tensor containers that `nrt_execute` takes.
//!
//! A [`TensorSet<'t>`] either owns its tensors ([`TensorSet::insert`]) or borrows them for
//! `'t` ([`TensorSet::add`], [`TensorSet::add_mut`]), so it cannot outlive any tensor it
//! names. libnrt's set does not own tensors; ours destroys the libnrt set before it frees the
//! tensors it owns (the safe order: ARCHITECTURE.md, "Tensor sets and tensors").
//!
//! ```compile_fail
//! // A set cannot outlive a tensor it borrows.
//! # fn f(rt: &neuron_rt::Runtime) -> neuron_rt::Result<()> {
//! let mut set = neuron_rt::TensorSet::new(rt)?;
//! {
//!     let t = neuron_rt::Tensor::allocate_host(rt, 4, "x")?;
//!     set.add("x", &t)?;
//! }
//! drop(set);
//! # Ok(()) }
//! ```
//!
//! `TensorSet` is `Send` but not `Sync`: whether two executions may share one set at the same
//! time is not documented by libnrt (ARCHITECTURE.md, "Threads"), so the type does not allow it.
//!
//! ```compile_fail
//! fn assert_sync<T: Sync>() {}
//! assert_sync::<neuron_rt::TensorSet<'static>>();
//! ```

use std::ffi::{CString, c_void};
use std::fmt;
use std::marker::PhantomData;
use std::ptr::NonNull;

use crate::error::{Error, Result, check};
use crate::runtime::Runtime;
use crate::tensor::{Tensor, WritableTensor};

enum Held<'t> {
    Owned(Tensor),
    Shared(&'t Tensor),
    Exclusive(&'t Tensor, PhantomData<&'t mut Tensor>),
}

impl Held<'_> {
    fn tensor(&self) -> &Tensor {
        match self {
            Held::Owned(t) => t,
            Held::Shared(t) | Held::Exclusive(t, _) => t,
        }
    }
}

struct Entry<'t> {
    name: CString,
    held: Held<'t>,
}

/// A libnrt tensor set naming tensors it owns or borrows for `'t`.
pub struct TensorSet<'t> {
    runtime: Runtime,
    raw: NonNull<c_void>,
    entries: Vec<Entry<'t>>,
}

// SAFETY: the libnrt set is a heap container not tied to a thread; the entries are owned
// tensors (`Send`) or borrows of tensors (`Tensor: Sync`, and `&mut Tensor: Send`), so moving
// the whole set to another thread moves exclusive access with it.
unsafe impl Send for TensorSet<'_> {}

impl fmt::Debug for TensorSet<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|e| e.name.to_string_lossy()))
            .finish()
    }
}

impl<'t> TensorSet<'t> {
    /// Creates an empty set.
    ///
    /// # Errors
    ///
    /// [`Error::Nrt`] from `nrt_allocate_tensor_set`.
    pub fn new(runtime: &Runtime) -> Result<TensorSet<'t>> {
        let mut raw: *mut c_void = std::ptr::null_mut();
        // SAFETY: `raw` is a valid place for the out-pointer.
        let status = unsafe { (runtime.api().nrt_allocate_tensor_set)(&mut raw) };
        check("nrt_allocate_tensor_set", status, String::new)?;
        let raw = NonNull::new(raw).ok_or_else(|| Error::InvalidArgument {
            op: "nrt_allocate_tensor_set",
            message: "libnrt reported success but returned a null set".to_owned(),
        })?;
        Ok(TensorSet {
            runtime: runtime.clone(),
            raw,
            entries: Vec::new(),
        })
    }

    fn put(&mut self, name: &str, held: Held<'t>) -> Result<()> {
        const OP: &str = "nrt_add_tensor_to_tensor_set";
        let c_name = CString::new(name).map_err(|_| Error::InvalidArgument {
            op: OP,
            message: format!("tensor name {name:?} contains a NUL byte"),
        })?;
        // SAFETY: the set and the tensor handle are live, and the tensor stays alive for as
        // long as the set names it: the set owns it, or borrows it for `'t`, which outlives
        // the set. `c_name` is NUL-terminated (libnrt copies the key).
        let status = unsafe {
            (self.runtime.api().nrt_add_tensor_to_tensor_set)(
                self.raw.as_ptr(),
                c_name.as_ptr(),
                held.tensor().raw(),
            )
        };
        check(OP, status, || format!("`{name}`"))?;
        // libnrt replaced any entry of that name; so do we (dropping an owned tensor only
        // after the set no longer names it).
        match self.entries.iter_mut().find(|e| e.name == c_name) {
            Some(entry) => entry.held = held,
            None => self.entries.push(Entry { name: c_name, held }),
        }
        Ok(())
    }

    /// Adds `tensor` under `name`, owned by the set. An execution may write it.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a name with a NUL byte; [`Error::Nrt`] from libnrt.
    pub fn insert(&mut self, name: &str, tensor: Tensor) -> Result<()> {
        self.put(name, Held::Owned(tensor))
    }

    /// Adds a borrowed tensor under `name`, read-only: usable as an execution input.
    ///
    /// # Errors
    ///
    /// As [`TensorSet::insert`].
    pub fn add(&mut self, name: &str, tensor: &'t Tensor) -> Result<()> {
        self.put(name, Held::Shared(tensor))
    }

    /// Adds an exclusively borrowed tensor under `name`: an execution may write it.
    ///
    /// # Errors
    ///
    /// As [`TensorSet::insert`].
    pub fn add_mut<W: WritableTensor + ?Sized>(
        &mut self,
        name: &str,
        tensor: &'t mut W,
    ) -> Result<()> {
        let tensor: &'t Tensor = tensor.writable_tensor();
        self.put(name, Held::Exclusive(tensor, PhantomData))
    }

    /// The tensor named `name`.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.entries
            .iter()
            .find(|e| e.name.as_bytes() == name.as_bytes())
            .map(|e| e.held.tensor())
    }

    /// The owned tensor named `name`, for writing; `None` for borrowed entries.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut Tensor> {
        self.entries
            .iter_mut()
            .find(|e| e.name.as_bytes() == name.as_bytes())
            .and_then(|e| match &mut e.held {
                Held::Owned(t) => Some(t),
                _ => None,
            })
    }

    /// The `index`th tensor in insertion order.
    pub fn tensor(&self, index: usize) -> Option<&Tensor> {
        self.entries.get(index).map(|e| e.held.tensor())
    }

    /// The `index`th tensor in insertion order, for writing, if the set owns it.
    pub fn tensor_mut(&mut self, index: usize) -> Option<&mut Tensor> {
        self.entries.get_mut(index).and_then(|e| match &mut e.held {
            Held::Owned(t) => Some(t),
            _ => None,
        })
    }

    /// Number of names in the set.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the set names nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The names, in insertion order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries
            .iter()
            .map(|e| e.name.to_str().unwrap_or("<non-UTF-8>"))
    }

    /// The first read-only entry, if any: such a set cannot receive outputs.
    pub(crate) fn read_only_entry(&self) -> Option<&str> {
        self.entries
            .iter()
            .find(|e| matches!(e.held, Held::Shared(_)))
            .map(|e| e.name.to_str().unwrap_or("<non-UTF-8>"))
    }

    /// The raw set. Crate-internal.
    pub(crate) fn raw(&self) -> *mut c_void {
        self.raw.as_ptr()
    }
}

impl Drop for TensorSet<'_> {
    fn drop(&mut self) {
        let mut raw = self.raw.as_ptr();
        // SAFETY: we own the set; it is destroyed before `entries` (and so any owned
        // tensor) is dropped, after this function returns. libnrt nulls `raw`.
        unsafe { (self.runtime.api().nrt_destroy_tensor_set)(&mut raw) };
    }
}
