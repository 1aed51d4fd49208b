//! What the engine is compared with, on the same cores and models:
//!
//! - [`Direct`]: the libnrt calls the engine makes (write, execute, read, via neuron-rt), one
//!   core after another on the calling thread, straight from and into the caller's buffers.
//!   No threads, no channels: the floor for the engine's own overhead at zero device time.
//! - [`RayonAlt`]: what a Rust user would write without the engine: one `Model` and
//!   pre-allocated tensor sets per core, rayon's `par_iter` over the chunks (the global pool),
//!   each chunk's rows copied into a `Vec`, written, executed, read into a new `Vec`, and the
//!   outputs concatenated.
//!
//! Both take a batch of exactly k × compiled-batch rows (one piece per core).

use neuron_rt::{DeviceId, Model, Neff, TensorSet};
use rayon::prelude::*;

use crate::BoxResult;
use crate::common::{Ctx, F32};

/// One core's model and pre-allocated input and output sets (one input, one output).
pub(crate) struct Station {
    model: Model,
    inputs: TensorSet<'static>,
    outputs: TensorSet<'static>,
}

impl Station {
    pub(crate) fn new(ctx: &Ctx, neff: &Neff, core: usize) -> BoxResult<Station> {
        let model = Model::load(&ctx.runtime, neff, DeviceId::from(u32::try_from(core)?))?;
        let inputs = model.allocate_inputs()?;
        let outputs = model.allocate_outputs()?;
        Ok(Station {
            model,
            inputs,
            outputs,
        })
    }

    /// Writes `x`, executes, reads the output into `y`.
    pub(crate) fn run(&mut self, x: &[u8], y: &mut [u8]) -> Result<(), neuron_rt::Error> {
        if let Some(input) = self.inputs.tensor_mut(0) {
            input.write(0, x)?;
        }
        self.model.execute(&self.inputs, &mut self.outputs)?;
        if let Some(output) = self.outputs.tensor(0) {
            output.read(0, y)?;
        }
        Ok(())
    }

    /// Only the transfers of [`run`](Self::run): writes `x`, reads the output into `y`.
    pub(crate) fn copy(&mut self, x: &[u8], y: &mut [u8]) -> Result<(), neuron_rt::Error> {
        if let Some(input) = self.inputs.tensor_mut(0) {
            input.write(0, x)?;
        }
        if let Some(output) = self.outputs.tensor(0) {
            output.read(0, y)?;
        }
        Ok(())
    }
}

fn stations(ctx: &Ctx, neff: &Neff, k: usize) -> BoxResult<Vec<Station>> {
    (0..k).map(|core| Station::new(ctx, neff, core)).collect()
}

/// Sequential libnrt calls on the calling thread.
pub(crate) struct Direct {
    stations: Vec<Station>,
}

impl Direct {
    pub(crate) fn new(ctx: &Ctx, neff: &Neff, k: usize) -> BoxResult<Direct> {
        Ok(Direct {
            stations: stations(ctx, neff, k)?,
        })
    }

    /// Runs chunk c of `x` on core c, reading into chunk c of `y`.
    pub(crate) fn forward_into(&mut self, x: &[u8], y: &mut [u8]) -> BoxResult {
        let k = self.stations.len();
        let (xc, yc) = (x.len() / k, y.len() / k);
        for (station, (x, y)) in self
            .stations
            .iter_mut()
            .zip(x.chunks(xc).zip(y.chunks_mut(yc)))
        {
            station.run(x, y)?;
        }
        Ok(())
    }
}

/// rayon `par_iter` over chunks, with per-call copies.
pub(crate) struct RayonAlt {
    stations: Vec<Station>,
}

impl RayonAlt {
    pub(crate) fn new(ctx: &Ctx, neff: &Neff, k: usize) -> BoxResult<RayonAlt> {
        Ok(RayonAlt {
            stations: stations(ctx, neff, k)?,
        })
    }

    /// The model's output for `x` (f32, same size as `x`), as a new vector.
    pub(crate) fn forward(&mut self, x: &[f32]) -> BoxResult<Vec<f32>> {
        let per_chunk = x.len() / self.stations.len();
        let parts: Vec<Vec<f32>> = self
            .stations
            .par_iter_mut()
            .zip(x.par_chunks(per_chunk))
            .map(|(station, chunk)| {
                let rows: Vec<f32> = chunk.to_vec();
                let mut out = vec![0f32; rows.len()];
                station.run(
                    bytemuck::cast_slice(&rows),
                    bytemuck::cast_slice_mut(&mut out),
                )?;
                Ok(out)
            })
            .collect::<Result<_, neuron_rt::Error>>()?;
        Ok(parts.concat())
    }
}

/// Bytes of `rows` rows of `features` f32.
pub(crate) fn f32_bytes(rows: usize, features: usize) -> usize {
    rows * features * F32
}
