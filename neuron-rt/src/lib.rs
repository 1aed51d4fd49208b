//! Safe handles over the AWS Neuron runtime (libnrt).
//!
//! `neuron-rt` is the layer nothing above it needs to see past: no raw libnrt pointer or
//! status code appears in its public API.
//!
//! - [`Runtime`]: the process's one libnrt runtime (`nrt_init` / `nrt_close`), its version,
//!   and which NeuronCores the process owns ([`CoreMap`]); [`Runtime::builder`] chooses the
//!   library in code instead of through `NRT_DYLIB_PATH`;
//! - [`VisibleCores`] and [`DeviceId`]/[`DeviceIds`]: `NEURON_RT_VISIBLE_CORES` and
//!   `nc:N` device ids, with logical ↔ physical core remapping;
//! - [`Neff`]: parsing and validating NEFF files (real or mock);
//! - [`Model`]: a NEFF loaded on one core, its [`TensorInfo`]s, execution;
//! - [`Tensor`] and [`TensorSet`]: device and host tensors, caller buffers attached as
//!   storage, and the name → tensor sets `nrt_execute` takes;
//! - [`Error`]: one error type naming the operation, the libnrt status and the remedy.
//!
//! # Example
//!
//! Runs against the in-tree mock (`cargo xtask mock-test` sets `NRT_DYLIB_PATH`):
//!
//! ```no_run
//! use neuron_rt::{DeviceId, Model, Neff, Runtime};
//!
//! # fn main() -> neuron_rt::Result<()> {
//! let runtime = Runtime::init()?;
//! println!("libnrt {} owns {} cores", runtime.version(), runtime.visible_cores());
//! let neff = Neff::from_path("model.neff".as_ref())?;
//! let model = Model::load(&runtime, &neff, DeviceId::new(0))?;
//! let mut inputs = model.allocate_inputs()?;
//! let mut outputs = model.allocate_outputs()?;
//! inputs.tensor_mut(0).expect("one input").write_slice(0, &[1.0f32; 32])?;
//! model.execute(&inputs, &mut outputs)?;
//! let y: Vec<f32> = outputs.tensor(0).expect("one output").to_vec()?;
//! # let _ = y;
//! # Ok(()) }
//! ```
//!
//! # Threads
//!
//! [`Runtime`] and [`Model`] are `Send + Sync` (several threads may execute one model);
//! [`Tensor`] is `Send + Sync` with writes behind `&mut`; [`TensorSet`] is `Send` only.
//!
//! ```
//! fn assert_send_sync<T: Send + Sync>() {}
//! assert_send_sync::<neuron_rt::Runtime>();
//! assert_send_sync::<neuron_rt::Model>();
//! assert_send_sync::<neuron_rt::Tensor>();
//! ```

#![warn(missing_docs)]

pub mod device_id;
pub mod dtype;
mod error;
pub mod file;
mod model;
pub mod neff;
mod runtime;
mod tensor;
mod tensor_set;
pub mod visible_cores;

pub use device_id::{DeviceId, DeviceIdError, DeviceIds};
pub use dtype::{DType, DTypeEncoding, UnknownDType};
pub use error::{Error, Result};
pub use model::{Model, TensorInfo, Usage};
pub use neff::{Neff, NeffError, NeffHeader};
pub use neuron_sys::{LibraryPathError, LoadError, Status};
pub use runtime::{
    CoreMap, NUM_CORES_ENV, Runtime, RuntimeBuilder, RuntimeVersion, VISIBLE_CORES_ENV,
};
pub use tensor::{Attached, AttachedMut, Placement, Slice, SliceMut, Tensor, WritableTensor};
pub use tensor_set::TensorSet;
pub use visible_cores::{VisibleCores, VisibleCoresError};
