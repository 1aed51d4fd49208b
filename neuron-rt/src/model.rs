//! Models: a NEFF loaded on one NeuronCore, its input/output descriptions, and execution.

use std::ffi::c_void;
use std::fmt;
use std::ptr::NonNull;
use std::sync::Arc;

use neuron_sys::{NRT_TENSOR_USAGE_INPUT, NRT_TENSOR_USAGE_OUTPUT, nrt_model_t, nrt_tensor_info_t};

use crate::device_id::DeviceId;
use crate::dtype::DType;
use crate::error::{Error, PhysicalCore, Result, check};
use crate::neff::Neff;
use crate::runtime::{Runtime, fixed_c_str};
use crate::tensor::Tensor;
use crate::tensor_set::TensorSet;

/// Whether a model tensor is an input or an output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Usage {
    /// Read by the model.
    Input,
    /// Written by the model.
    Output,
}

/// One model input or output, copied out of libnrt's tensor-info array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// The name: the key to use in tensor sets.
    pub name: String,
    /// Input or output.
    pub usage: Usage,
    /// Size in bytes; authoritative (allocate exactly this much).
    pub size: usize,
    /// The element type, decoded with the runtime's encoding and checked against `size` and
    /// `shape`, which win (ARCHITECTURE.md, "Dtype encodings"): when the code fits only the
    /// other encoding, that one's dtype; `None` when the code is unknown or fits neither, and
    /// then the element size is `size / elements` ([`crate::dtype::resolve`]). Never
    /// inconsistent with `size` and `shape`.
    pub dtype: Option<DType>,
    /// The raw dtype code as libnrt reported it.
    pub raw_dtype: u32,
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
}

impl TensorInfo {
    /// Number of elements (product of the shape; 1 for a scalar).
    pub fn elements(&self) -> usize {
        self.shape.iter().product()
    }
}

/// Logs, once per process, that a runtime reported a dtype code its tensor's size contradicts.
fn warn_dtype_once(
    runtime: &Runtime,
    name: &str,
    code: u32,
    size: usize,
    shape: &[usize],
    chosen: Option<DType>,
) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let chosen = chosen.map_or_else(
            || "an element size from the size".to_owned(),
            |d| format!("dtype {d}"),
        );
        log::warn!(
            "libnrt {} reports dtype code {code} for tensor `{name}` ({size} bytes, shape              {shape:?}), which does not fit its size in the {:?} encoding its version implies;              trusting size and shape and using {chosen} (further mismatches are not logged)",
            runtime.version(),
            runtime.dtype_encoding()
        );
    });
}

/// A NEFF loaded on one of this process's NeuronCores. Unloads on drop.
///
/// `Model` is `Send + Sync`: libnrt documents that several threads may call `nrt_execute` on
/// one loaded model, pipelining the executions (ARCHITECTURE.md, "Threads"); each call brings its own
/// tensor sets.
pub struct Model {
    runtime: Runtime,
    raw: NonNull<nrt_model_t>,
    core: DeviceId,
    physical_core: Option<u32>,
    name: String,
    inputs: Vec<TensorInfo>,
    outputs: Vec<TensorInfo>,
    // The NEFF image stays alive until the model is unloaded: libnrt does not document
    // whether it may be freed earlier (ARCHITECTURE.md, "Loading and placement").
    neff: Arc<[u8]>,
}

// SAFETY: the model handle is an opaque libnrt pointer not tied to a thread; the Rust fields
// are immutable after load.
unsafe impl Send for Model {}
// SAFETY: every `&self` method either reads immutable Rust fields or calls `nrt_execute`,
// which libnrt allows from several threads at once on one model (ARCHITECTURE.md, "Threads").
unsafe impl Sync for Model {}

impl fmt::Debug for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Model")
            .field("name", &self.name)
            .field("core", &self.core)
            .field("physical_core", &self.physical_core)
            .field("inputs", &self.inputs)
            .field("outputs", &self.outputs)
            .finish_non_exhaustive()
    }
}

impl Model {
    /// Loads `neff` on logical core `core` of this process.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a core this process does not own; [`Error::Nrt`] from
    /// `nrt_load` (malformed NEFF, unsupported version, out of memory) or from reading the
    /// model's tensor infos.
    pub fn load(runtime: &Runtime, neff: &Neff, core: DeviceId) -> Result<Model> {
        Self::load_image(
            runtime,
            Arc::from(neff.as_bytes()),
            neff.name().to_owned(),
            core,
        )
    }

    /// Loads a NEFF image given as bytes, without parsing its header first.
    ///
    /// # Errors
    ///
    /// As [`Model::load`].
    pub fn load_bytes(
        runtime: &Runtime,
        neff: impl Into<Arc<[u8]>>,
        core: DeviceId,
    ) -> Result<Model> {
        let neff = neff.into();
        let name = crate::neff::NeffHeader::parse_header_only(&neff)
            .map(|h| h.name.clone())
            .unwrap_or_default();
        Self::load_image(runtime, neff, name, core)
    }

    fn load_image(
        runtime: &Runtime,
        neff: Arc<[u8]>,
        name: String,
        core: DeviceId,
    ) -> Result<Model> {
        const OP: &str = "nrt_load";
        runtime.check_device(OP, core)?;
        // A NEFF runs only on logical cores of the size it was compiled for (0: predates the
        // field, meaning 1). A header we cannot read is left to nrt_load.
        if let Ok(header) = crate::neff::NeffHeader::parse_header_only(&neff) {
            let lnc_size = header.lnc_size.max(1);
            if lnc_size != runtime.lnc() {
                return Err(Error::InvalidArgument {
                    op: OP,
                    message: format!(
                        "NEFF `{name}` was compiled for logical NeuronCores of {lnc_size} \
                         physical core(s) (lnc_size {lnc_size}), but this runtime runs LNC={} \
                         (NEURON_LOGICAL_NC_CONFIG); recompile with neuronx-cc --lnc {} or \
                         start the process with NEURON_LOGICAL_NC_CONFIG={lnc_size}",
                        runtime.lnc(),
                        runtime.lnc()
                    ),
                });
            }
        }
        let vnc = i32::try_from(core.index()).map_err(|_| Error::InvalidArgument {
            op: OP,
            message: format!("{core} does not fit libnrt's core index"),
        })?;
        let physical_core = runtime.physical_core(core);
        let mut raw: *mut nrt_model_t = std::ptr::null_mut();
        // SAFETY: `neff` is valid for `neff.len()` bytes and stays alive (moved into the
        // model) until after `nrt_unload`; `raw` is a valid out-pointer. `vnc_count` -1 is
        // the value current libnrt requires (ARCHITECTURE.md, "Loading and placement").
        let status = unsafe {
            (runtime.api().nrt_load)(neff.as_ptr().cast(), neff.len(), vnc, -1, &mut raw)
        };
        check(OP, status, || {
            format!(
                "NEFF `{name}` ({} bytes) on {core} ({})",
                neff.len(),
                PhysicalCore(physical_core)
            )
        })?;
        let raw = NonNull::new(raw).ok_or_else(|| Error::InvalidArgument {
            op: OP,
            message: "libnrt reported success but returned a null model".to_owned(),
        })?;
        // Own the handle before anything else can fail, so it is unloaded on error.
        let mut model = Model {
            runtime: runtime.clone(),
            raw,
            core,
            physical_core,
            name,
            inputs: Vec::new(),
            outputs: Vec::new(),
            neff,
        };
        let (inputs, outputs) = model.read_tensor_infos()?;
        model.inputs = inputs;
        model.outputs = outputs;
        Ok(model)
    }

    fn read_tensor_infos(&self) -> Result<(Vec<TensorInfo>, Vec<TensorInfo>)> {
        const OP: &str = "nrt_get_model_tensor_info";
        let api = self.runtime.api();
        let mut array = std::ptr::null_mut();
        // SAFETY: the model handle is live; `array` is a valid out-pointer.
        let status = unsafe { (api.nrt_get_model_tensor_info)(self.raw.as_ptr(), &mut array) };
        check(OP, status, || format!("model `{}`", self.name))?;
        if array.is_null() {
            return Err(Error::InvalidArgument {
                op: OP,
                message: "libnrt reported success but returned no tensor info".to_owned(),
            });
        }
        // SAFETY: libnrt returned one allocation: a u64 count, then that many 296-byte
        // entries from offset 8 (ARCHITECTURE.md, "Struct layouts"). It stays valid until we free it below.
        let entries: &[nrt_tensor_info_t] = unsafe {
            let count = usize::try_from((*array).tensor_count).unwrap_or(0);
            (*array).tensor_array.as_slice(count)
        };
        let encoding = self.runtime.dtype_encoding();
        let copied: Result<Vec<TensorInfo>> = entries
            .iter()
            .map(|entry| {
                let name = fixed_c_str(&entry.name)
                    .map(|c| c.to_string_lossy().into_owned())
                    .ok_or_else(|| Error::InvalidArgument {
                        op: OP,
                        message: "a tensor name is not NUL-terminated".to_owned(),
                    })?;
                let usage = match entry.usage {
                    NRT_TENSOR_USAGE_INPUT => Usage::Input,
                    NRT_TENSOR_USAGE_OUTPUT => Usage::Output,
                    other => {
                        return Err(Error::InvalidArgument {
                            op: OP,
                            message: format!("tensor `{name}` has unknown usage {other}"),
                        });
                    }
                };
                let shape = if entry.ndim == 0 || entry.shape.is_null() {
                    Vec::new()
                } else {
                    // SAFETY: a non-null `shape` points to `ndim` u32s owned by the array,
                    // valid until the array is freed.
                    unsafe { std::slice::from_raw_parts(entry.shape, entry.ndim as usize) }
                        .iter()
                        .map(|&d| d as usize)
                        .collect()
                };
                let (dtype, disagreed) =
                    crate::dtype::resolve(entry.dtype, encoding, entry.size, &shape);
                if disagreed {
                    warn_dtype_once(&self.runtime, &name, entry.dtype, entry.size, &shape, dtype);
                }
                Ok(TensorInfo {
                    name,
                    usage,
                    size: entry.size,
                    dtype,
                    raw_dtype: entry.dtype,
                    shape,
                })
            })
            .collect();
        // SAFETY: `array` came from `nrt_get_model_tensor_info` and is freed exactly once;
        // nothing borrowed from it outlives this point (everything was copied).
        let status = unsafe { (api.nrt_free_model_tensor_info)(array) };
        let copied = copied?;
        check("nrt_free_model_tensor_info", status, String::new)?;
        let (inputs, outputs) = copied.into_iter().partition(|i| i.usage == Usage::Input);
        Ok((inputs, outputs))
    }

    /// The NEFF's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The logical core the model is loaded on.
    pub fn core(&self) -> DeviceId {
        self.core
    }

    /// The physical core the model is loaded on, when known.
    pub fn physical_core(&self) -> Option<u32> {
        self.physical_core
    }

    /// The NEFF image the model was loaded from (shared, not copied), e.g. to load it again.
    pub fn neff_image(&self) -> Arc<[u8]> {
        Arc::clone(&self.neff)
    }

    /// The runtime the model belongs to.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// The model's inputs, in libnrt's order.
    pub fn inputs(&self) -> &[TensorInfo] {
        &self.inputs
    }

    /// The model's outputs, in libnrt's order.
    pub fn outputs(&self) -> &[TensorInfo] {
        &self.outputs
    }

    fn allocate_set(&self, infos: &[TensorInfo]) -> Result<TensorSet<'static>> {
        let mut set = TensorSet::new(&self.runtime)?;
        for info in infos {
            let tensor = Tensor::allocate_device(&self.runtime, self.core, info.size, &info.name)?;
            set.insert(&info.name, tensor)?;
        }
        Ok(set)
    }

    /// A set of device tensors on the model's core, one per input, sized as the model
    /// reports.
    ///
    /// # Errors
    ///
    /// [`Error::Nrt`] from allocation.
    pub fn allocate_inputs(&self) -> Result<TensorSet<'static>> {
        self.allocate_set(&self.inputs)
    }

    /// A set of device tensors on the model's core, one per output.
    ///
    /// # Errors
    ///
    /// [`Error::Nrt`] from allocation.
    pub fn allocate_outputs(&self) -> Result<TensorSet<'static>> {
        self.allocate_set(&self.outputs)
    }

    /// Runs the model once: reads `inputs`, writes `outputs`. Synchronous.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] when `outputs` holds a read-only tensor; [`Error::Nrt`]
    /// from `nrt_execute`, naming the logical and physical core (e.g. `NRT_INVALID` for
    /// names or sizes that do not match the model, `NRT_TIMEOUT`, hardware errors).
    pub fn execute(&self, inputs: &TensorSet<'_>, outputs: &mut TensorSet<'_>) -> Result<()> {
        const OP: &str = "nrt_execute";
        if let Some(name) = outputs.read_only_entry() {
            return Err(Error::InvalidArgument {
                op: OP,
                message: format!(
                    "output `{name}` was added read-only; add outputs with `insert` or `add_mut`"
                ),
            });
        }
        // SAFETY: the model and both sets are live. The output set names only tensors that
        // are owned by it or exclusively borrowed for its lifetime, so libnrt writing them
        // cannot race with any Rust access; the input set's tensors are only read.
        let status = unsafe {
            (self.runtime.api().nrt_execute)(
                self.raw.as_ptr(),
                inputs.raw().cast_const().cast::<c_void>(),
                outputs.raw(),
            )
        };
        check(OP, status, || {
            format!(
                "model `{}` on {} ({})",
                self.name,
                self.core,
                PhysicalCore(self.physical_core)
            )
        })
    }
}

impl Drop for Model {
    fn drop(&mut self) {
        // SAFETY: we own the handle and unload it exactly once; no execution is in flight
        // because `execute` borrows the model.
        let status = unsafe { (self.runtime.api().nrt_unload)(self.raw.as_ptr()) };
        if status != 0 {
            log::warn!(
                "nrt_unload of `{}` on {} failed: {}",
                self.name,
                self.core,
                neuron_sys::Status::from_raw(status)
            );
        }
    }
}
