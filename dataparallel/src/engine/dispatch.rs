//! The dispatch path of one batch, for callers on any number of threads: validate the
//! inputs, split them over the cores in service (slot → replica mapping, spreading small
//! calls), plan each chunk's pieces, send one job per piece to its core's queue, serve the
//! last chunk on the calling thread when a station is free, and wait for every job. Also the
//! read-only views of the same decisions: [`DataParallel::plan`] and
//! [`DataParallel::output_shapes`].

use std::num::NonZeroUsize;
use std::ops::Range;
use std::sync::MutexGuard;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{ChunkPlan, DataParallel, ForwardReport};
use crate::buckets::BucketPiece;
use crate::call::{Call, ChunkTiming, Completion, Failure, Job, WaitOnDrop};
use crate::error::{Error, Result};
use crate::plan::{Piece, Split};
use crate::validate::{self, InputPlan};
use crate::view::{Input, Output, OutputTensor};
use crate::worker::{self, Station};

/// Pieces that recently took less than this run on the calling thread: handing a piece to a
/// sleeping worker costs the caller a wake-up of a few microseconds (and the worker a
/// context switch), more than running such a piece itself. Real NeuronCore executions take
/// far longer, so on hardware this only catches trivial models. (rayon's sequential
/// threshold, measured per core instead of guessed.)
const INLINE_PIECE_NS: u64 = 5_000;

/// What [`DataParallel::run`] did with a call that passed validation.
struct Ran<'a> {
    /// The split the call ran with (its cores placed).
    split: Split<'a>,
    /// Whether it ran with dynamic batching.
    dynamic: bool,
    /// The failure of the lowest failed chunk.
    failure: Option<Failure>,
}

impl Ran<'_> {
    fn result(self) -> Result<()> {
        self.failure.map_or(Ok(()), |failure| Err(failure.error))
    }
}

/// Why a batch of the request batcher failed, from [`DataParallel::forward_into_batch`].
#[derive(Debug)]
pub(crate) struct BatchFailure {
    /// The call's error: the lowest failed chunk's, or the one that stopped it before any
    /// device work.
    pub(crate) error: Error,
    /// The rows (on dim 0) of the chunks that failed; every other row's outputs are
    /// complete. `None`: every row failed.
    pub(crate) rows: Option<Vec<Range<usize>>>,
}

impl DataParallel {
    /// Cores in service (not quarantined).
    fn healthy_cores(&self) -> usize {
        self.replicas
            .iter()
            .filter(|r| !r.health.is_quarantined())
            .count()
    }

    /// Maps chunk slots to replicas for one call: slot i runs on the i-th core in service.
    /// With every core in service (the usual case) that is the identity, with no scan.
    fn slot_map(&self) -> impl Fn(usize) -> usize + '_ {
        let identity = self.healthy_cores() == self.replicas.len();
        move |slot| {
            if identity {
                slot
            } else {
                self.replica_for_slot(slot)
            }
        }
    }

    /// The replica that chunk slot `slot` runs on: the `slot`th core in service (falls back
    /// to the slot itself if health changed since the split was made).
    fn replica_for_slot(&self, slot: usize) -> usize {
        self.replicas
            .iter()
            .enumerate()
            .filter(|(_, r)| !r.health.is_quarantined())
            .nth(slot)
            .map_or(slot % self.replicas.len(), |(index, _)| index)
    }

    /// How `rows` rows are cut over the cores in service: packed into whole compiled batches
    /// when `pack` is asked for and dynamic batching is on, else the reference's split (or
    /// the user's split size).
    fn split(&self, rows: usize, pack: bool, dynamic: bool) -> Result<Split<'_>> {
        let cores = self.healthy_cores();
        let split = if pack && dynamic {
            Split::packed(rows, cores, &self.buckets)
        } else {
            Split::new(rows, cores, self.split_size)
        };
        // With no core in service there is nothing to split over.
        split.ok_or(Error::AllCoresQuarantined {
            cores: self.replicas.len(),
        })
    }

    fn check_inputs(
        &self,
        inputs: &[Input<'_>],
        pack: bool,
    ) -> Result<(InputPlan, Split<'_>, bool)> {
        let dynamic = self.dynamic_batching();
        let plan = validate::inputs(&self.spec, inputs, self.dim, dynamic)?;
        let split = self.split(plan.rows, pack, dynamic)?;
        if !dynamic {
            split.check_exact(plan.batch)?;
        }
        Ok((plan, split, dynamic))
    }

    /// Where a call's chunks run: a packed call, or with small calls spread a call with fewer
    /// chunks than cores, starts where the previous such call ended; otherwise the
    /// reference's mapping, with its warning when cores are left idle.
    fn place<'a>(&self, split: Split<'a>) -> Split<'a> {
        let chunks = split.num_chunks();
        if split.is_packed() || (self.spread && chunks < split.cores()) {
            // Asked for: no warning.
            return split.starting_at(self.next_slot.fetch_add(chunks, Ordering::Relaxed));
        }
        if split.underused() {
            log::warn!(
                "{} chunks on {} cores leaves cores idle; use a batch that divides evenly over the \
                 cores",
                chunks,
                split.cores()
            );
        }
        split
    }

    /// How a batch of `rows` rows would be split: chunks, cores, pieces and pad rows.
    ///
    /// Chunk `i` is shown on the `i`-th core in service, the reference's mapping. With
    /// [`Config::spread_small_calls`](crate::Config::spread_small_calls) a call with fewer
    /// chunks than cores starts on another core, and with [`Config::pack`](crate::Config::pack)
    /// every call does (its chunks are the whole compiled batches shown here);
    /// [`forward_into_report`](Self::forward_into_report) shows where it ran.
    ///
    /// # Errors
    ///
    /// [`Error::Plan`] when the batch cannot be split (dynamic batching off and the rows are
    /// not cores × compiled batch); [`Error::AllCoresQuarantined`] when no core is in
    /// service.
    pub fn plan(&self, rows: usize) -> Result<Vec<ChunkPlan>> {
        let dynamic = self.dynamic_batching();
        let split = self.split(rows, self.pack, dynamic)?;
        if !dynamic {
            split.check_exact(self.smallest_batch())?;
        }
        Ok(self.chunk_plans(&split, dynamic))
    }

    /// Each chunk of `split` with its core, pieces and pad rows.
    fn chunk_plans(&self, split: &Split<'_>, dynamic: bool) -> Vec<ChunkPlan> {
        let slot_map = self.slot_map();
        split
            .iter()
            .map(|chunk| {
                let batch_sizes: Vec<usize> = if dynamic {
                    self.buckets
                        .pieces(chunk.rows)
                        .map(|p| self.buckets.sizes()[p.bucket])
                        .collect()
                } else {
                    vec![chunk.rows]
                };
                let replica = &self.replicas[slot_map(chunk.slot)];
                ChunkPlan {
                    chunk: chunk.index,
                    start: chunk.start,
                    rows: chunk.rows,
                    core: replica.core,
                    physical_core: replica.physical_core,
                    pieces: batch_sizes.len(),
                    pad_rows: if dynamic {
                        self.buckets.cost(chunk.rows).pad_rows
                    } else {
                        0
                    },
                    batch_sizes,
                }
            })
            .collect()
    }

    /// Pad rows of a packed call of `rows` rows (what its last piece pads).
    pub(crate) fn packed_pad_rows(&self, rows: usize) -> usize {
        self.buckets.cost(rows).pad_rows
    }

    /// The largest compiled batch.
    pub(crate) fn largest_batch(&self) -> usize {
        self.buckets.sizes().last().copied().unwrap_or(1)
    }

    fn smallest_batch(&self) -> NonZeroUsize {
        NonZeroUsize::new(self.buckets.sizes()[0]).unwrap_or(NonZeroUsize::MIN)
    }

    /// The shapes [`forward`](Self::forward) would return for these inputs.
    ///
    /// # Errors
    ///
    /// As [`forward_into`](Self::forward_into) for invalid inputs.
    pub fn output_shapes(&self, inputs: &[Input<'_>]) -> Result<Vec<Vec<usize>>> {
        let (plan, split, dynamic) = self.check_inputs(inputs, self.pack)?;
        Ok(self
            .spec
            .outputs
            .iter()
            .map(|o| {
                let mut shape = o.shape.clone();
                shape[self.dim] =
                    validate::output_rows(o, self.dim, dynamic, plan.rows, split.num_chunks());
                shape
            })
            .collect())
    }

    /// Runs a batch and returns newly allocated outputs, in the model's output order.
    ///
    /// # Errors
    ///
    /// As [`forward_into`](Self::forward_into).
    pub fn forward(&self, inputs: &[Input<'_>]) -> Result<Vec<OutputTensor>> {
        let shapes = self.output_shapes(inputs)?;
        let mut buffers: Vec<Vec<u8>> = self
            .spec
            .outputs
            .iter()
            .zip(&shapes)
            .map(|(o, shape)| vec![0u8; shape.iter().product::<usize>() * o.elem_size])
            .collect();
        {
            let mut views: Vec<Output<'_>> = self
                .spec
                .outputs
                .iter()
                .zip(&shapes)
                .zip(buffers.iter_mut())
                .map(|((o, shape), buffer)| {
                    let dtype = o.dtype.unwrap_or(neuron_rt::DType::UInt8);
                    Output::new(dtype, shape, buffer)
                })
                .collect();
            if self.spec.outputs.iter().any(|o| o.dtype.is_none()) {
                return Err(Error::config(
                    "the model reports an output of unknown dtype; use forward_into with your \
                     own buffers",
                ));
            }
            self.forward_into(inputs, &mut views)?;
        }
        Ok(self
            .spec
            .outputs
            .iter()
            .zip(shapes)
            .zip(buffers)
            .map(|((o, shape), data)| OutputTensor {
                name: o.name.clone(),
                dtype: o.dtype.unwrap_or(neuron_rt::DType::UInt8),
                shape,
                data,
            })
            .collect())
    }

    /// Runs a batch, writing the gathered outputs into the caller's buffers. Makes no heap
    /// allocation in the steady state (unless attach mode is on).
    ///
    /// Inputs are matched to the model's inputs by name when named, else by position; so are
    /// outputs. Every chunk runs to completion; if any failed, the failure of the lowest chunk
    /// is returned, naming its logical and physical core and the libnrt status. The engine
    /// keeps serving after any error.
    ///
    /// # Errors
    ///
    /// [`Error::Input`], [`Error::Output`], [`Error::DynamicBatchingIneligible`] and
    /// [`Error::Plan`] before any device call; [`Error::Chunk`] when a core fails.
    pub fn forward_into(&self, inputs: &[Input<'_>], outputs: &mut [Output<'_>]) -> Result<()> {
        self.run(inputs, outputs, None, self.pack)?.result()
    }

    /// [`forward_into`](Self::forward_into), also reporting each chunk's core, rows, pieces,
    /// pad rows and time (allocates the report).
    ///
    /// # Errors
    ///
    /// As [`forward_into`](Self::forward_into).
    pub fn forward_into_report(
        &self,
        inputs: &[Input<'_>],
        outputs: &mut [Output<'_>],
    ) -> Result<ForwardReport> {
        let started = Instant::now();
        let mut records = Vec::new();
        let ran = self.run(inputs, outputs, Some(&mut records), self.pack)?;
        // The split the call ran with: with spread small calls its cores move call by call.
        let (split, dynamic) = (ran.split, ran.dynamic);
        ran.result()?;
        Ok(ForwardReport {
            rows: split.rows(),
            chunks: self
                .chunk_plans(&split, dynamic)
                .into_iter()
                .zip(&records)
                .map(|(plan, record)| (plan, Duration::from_nanos(record.elapsed_ns())))
                .collect(),
            wall: started.elapsed(),
        })
    }

    /// Runs a batch for the request batcher: packed into whole compiled batches when `pack`
    /// (and dynamic batching is on), and when chunks fail, says which rows they held, so
    /// that only the requests with rows there fail.
    pub(crate) fn forward_into_batch(
        &self,
        inputs: &[Input<'_>],
        outputs: &mut [Output<'_>],
        pack: bool,
    ) -> std::result::Result<(), BatchFailure> {
        let mut records = Vec::new();
        let ran = self
            .run(inputs, outputs, Some(&mut records), pack)
            .map_err(|error| BatchFailure { error, rows: None })?;
        let Some(failure) = ran.failure else {
            return Ok(());
        };
        let rows: Vec<Range<usize>> = ran
            .split
            .iter()
            .filter(|chunk| records.get(chunk.index).is_some_and(ChunkTiming::failed))
            .map(|chunk| chunk.start..chunk.start + chunk.rows)
            .collect();
        Err(BatchFailure {
            error: failure.error,
            // Every failure names a chunk, so this is never empty; if it were, every row
            // fails rather than a failed row passing as done.
            rows: (!rows.is_empty()).then_some(rows),
        })
    }

    /// Validates, splits (packed when `pack`), places and runs one call. `Err` before any
    /// device work; otherwise the split it ran with and the failure of its lowest failed
    /// chunk, if any. With `records`, it is filled with one record per chunk.
    fn run(
        &self,
        inputs: &[Input<'_>],
        outputs: &mut [Output<'_>],
        records: Option<&mut Vec<ChunkTiming>>,
        pack: bool,
    ) -> Result<Ran<'_>> {
        let (plan, split, dynamic) = self.check_inputs(inputs, pack)?;
        let output_matching = validate::outputs(&self.spec, outputs, self.dim, |o| {
            validate::output_rows(o, self.dim, dynamic, plan.rows, split.num_chunks())
        })?;
        let split = self.place(split);
        if split.num_chunks() == 0 {
            return Ok(Ran {
                split,
                dynamic,
                failure: None,
            });
        }
        let records = records.map(|records| {
            records.clear();
            records.extend((0..split.num_chunks()).map(|_| ChunkTiming::new()));
            &records[..]
        });
        let call = Call {
            spec: &self.spec,
            inputs,
            input_matching: plan.matching,
            outputs,
            output_matching,
            dim: self.dim,
            dynamic,
            batch_sizes: self.buckets.sizes(),
            attach: self.attach,
            overlap_transfers: self.overlap_transfers,
            completion: Completion::new(),
            timings: records,
        };
        self.dispatch(&call, &split);
        Ok(Ran {
            split,
            dynamic,
            failure: call.completion.take_failure(),
        })
    }

    /// Sends every piece of every chunk to its core and waits for all of them.
    ///
    /// The caller is a thread that is already running, where a worker would first have to
    /// be woken: it serves the last chunk itself (every chunk when pieces are tiny), on a
    /// free station of that chunk's core. When pieces overlap their transfers it runs only
    /// the last piece and leaves the rest to the core's workers, which overlap them.
    fn dispatch(&self, call: &Call<'_>, split: &Split<'_>) {
        // From the first send on, the call must outlive every job sent: wait even if we
        // unwind. A job is counted just before it is held for sending (nothing from there
        // to its send can unwind), and jobs the caller runs itself are never counted, so
        // the wait never counts a job that no one will finish.
        let _wait = WaitOnDrop(&call.completion);
        let inline_all = self.caller_runs && self.fits_inline();
        let last = split.num_chunks().saturating_sub(1);
        // The newest job is held back until the next one exists, so the last one of the
        // call is left for the caller.
        let mut held: Option<Job> = None;
        let slot_map = self.slot_map();
        for chunk in split.iter() {
            let replica = slot_map(chunk.slot);
            let serve_here = inline_all || (chunk.index == last && !call.overlap_transfers);
            let mut station = serve_here.then(|| self.free_station(replica)).flatten();
            if station.is_some() {
                // Every earlier job goes to its worker before the caller gets busy.
                if let Some(previous) = held.take() {
                    self.send(call, previous);
                }
            }
            for BucketPiece { bucket, piece } in self.pieces_of(call, chunk.rows) {
                let job = Job::new(call, replica, chunk.index, chunk.start, bucket, piece);
                match station.as_deref_mut() {
                    // Run here, so never outstanding: not counted.
                    Some(station) => worker::run_job(station, call, &job),
                    None => {
                        call.completion.expect(1);
                        if let Some(previous) = held.replace(job) {
                            self.send(call, previous);
                        }
                    }
                }
            }
        }
        if let Some(job) = held {
            self.run_here_or_send(call, job);
        }
    }

    /// The pieces a chunk of `rows` rows runs as: buckets with dynamic batching, else one
    /// piece of the one model.
    fn pieces_of<'a>(
        &'a self,
        call: &Call<'_>,
        rows: usize,
    ) -> impl Iterator<Item = BucketPiece> + 'a {
        let single = (!call.dynamic).then_some(BucketPiece {
            bucket: 0,
            piece: Piece {
                start: 0,
                rows,
                pad: 0,
            },
        });
        single.into_iter().chain(
            call.dynamic
                .then(|| self.buckets.pieces(rows))
                .into_iter()
                .flatten(),
        )
    }

    /// Whether the cores' recent pieces were shorter than handing them to a worker.
    fn fits_inline(&self) -> bool {
        let recent = self
            .replicas
            .iter()
            .map(|r| r.stats.recent_piece_ns.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0);
        recent != 0 && recent < INLINE_PIECE_NS
    }

    /// Runs a job on the calling thread if one of its core's stations is free, else queues
    /// it.
    fn run_here_or_send(&self, call: &Call<'_>, job: Job) {
        match self.free_station(job.replica) {
            Some(mut station) => worker::serve(&mut station, job),
            None => self.send(call, job),
        }
    }

    /// A free station of `replica`'s core for the calling thread, when callers run pieces
    /// themselves and one is free.
    fn free_station(&self, replica: usize) -> Option<MutexGuard<'_, Station>> {
        self.caller_runs
            .then(|| self.stations.get(replica))
            .flatten()
            .and_then(|stations| worker::try_lock_any(stations, 0))
    }

    /// Queues a job for its core's workers; if they are gone, fails it in place.
    fn send(&self, call: &Call<'_>, job: Job) {
        let queue = &self.queues[self.queue_of[job.replica]];
        call.completion.before_handoff();
        if let Err(job) = queue.push(job, call.overlap_transfers) {
            call.fail(Failure {
                chunk: job.chunk,
                error: Error::WorkersGone {
                    core: self.replicas[job.replica].core,
                },
            });
            // SAFETY: the queue handed the job back unrun: this is its one finish, and the
            // call is this thread's own.
            unsafe { job.finish() };
        }
    }
}
