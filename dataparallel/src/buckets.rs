//! Batch-size buckets: which compiled batch sizes a chunk runs as.
//!
//! A NEFF runs only at the batch it was compiled for, so a chunk of `c` rows runs as pieces
//! of compiled sizes, the last one zero-padded. With one compiled size `b` that is
//! `ceil(c / b)` pieces of `b`. With several (the same model compiled at, say, 1, 4 and 16)
//! the engine picks, per chunk, the multiset of sizes that **minimises padded rows, then
//! executions** — TF Serving's `allowed_batch_sizes`, chosen optimally.
//!
//! The choice is an unbounded coin problem, solved once per engine by dynamic programming
//! over a bounded range of row counts and extended to any count by one exchange argument:
//! an optimal choice never uses a smaller size `b` `B` times or more (`B` the largest size),
//! because `B` pieces of `b` hold exactly as many rows as `b` pieces of `B`, in more
//! executions. So the smaller sizes together hold at most `S = (B - 1) · Σ b` rows, and for
//! `c > S + B` an optimal choice for `c` is one more piece of `B` than an optimal choice for
//! `c - B`. Planning a chunk is then a table lookup and allocation-free.
//!
//! Before any of that, [`bucket_specs`] reconciles the NEFFs given as buckets: the same
//! model (the same tensors but for the batch on dim 0), each with a distinct batch, ordered
//! by batch; the engine's [`ModelSpec`] is the smallest one's.

use std::fmt;
use std::iter::FusedIterator;

use neuron_rt::Model;

use crate::error::{Error, Result};
use crate::plan::Piece;
use crate::quote::quote;
use crate::spec::{IoSpec, ModelSpec};

/// The most compiled sizes an engine takes.
pub(crate) const MAX_BUCKETS: usize = 16;

/// Largest table the planner builds (entries); bounds build time and memory.
const MAX_TABLE: usize = 1 << 20;

/// Why a set of bucket sizes cannot be planned.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub(crate) enum BucketError {
    /// No sizes.
    Empty,
    /// A size of zero.
    Zero,
    /// The same size twice.
    Duplicate(usize),
    /// More than [`MAX_BUCKETS`] sizes.
    TooMany(usize),
    /// Sizes so large and spread that the plan table would be too big.
    TooSpread {
        /// The table entries needed.
        entries: usize,
    },
}

impl fmt::Display for BucketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BucketError::Empty => f.write_str("no compiled batch sizes given"),
            BucketError::Zero => f.write_str("a compiled batch size of 0 cannot hold rows"),
            BucketError::Duplicate(size) => write!(
                f,
                "two models are compiled for batch {size}; give each batch size once"
            ),
            BucketError::TooMany(n) => write!(
                f,
                "{n} compiled batch sizes; at most {MAX_BUCKETS} are supported"
            ),
            BucketError::TooSpread { entries } => write!(
                f,
                "the compiled batch sizes are too large and spread to plan ({entries} table \
                 entries, at most {MAX_TABLE}); use fewer or smaller sizes"
            ),
        }
    }
}

impl std::error::Error for BucketError {}

/// The best way found to hold `r` rows: total compiled rows, executions, and one size used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Best {
    capacity: usize,
    pieces: usize,
    /// Index (into the ascending sizes) of one piece of an optimal choice; unused for 0.
    size: usize,
}

/// The compiled batch sizes of an engine and the plan table over them.
#[derive(Debug, Clone)]
pub(crate) struct Buckets {
    /// Ascending, unique, non-zero.
    sizes: Vec<usize>,
    /// `table[r]` for `r` in `0..=limit`.
    table: Vec<Best>,
}

/// What running a chunk costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cost {
    /// Device executions.
    pub(crate) executions: usize,
    /// Zero rows executed and thrown away.
    pub(crate) pad_rows: usize,
}

/// One piece of a chunk and the bucket (index into the ascending sizes) it runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BucketPiece {
    /// Index of the compiled size, into [`Buckets::sizes`].
    pub(crate) bucket: usize,
    /// Rows of the chunk it holds, and its pad rows.
    pub(crate) piece: Piece,
}

impl Buckets {
    /// Plans over the compiled sizes `sizes` (any order).
    pub(crate) fn new(sizes: &[usize]) -> Result<Buckets, BucketError> {
        if sizes.is_empty() {
            return Err(BucketError::Empty);
        }
        if sizes.len() > MAX_BUCKETS {
            return Err(BucketError::TooMany(sizes.len()));
        }
        let mut sorted = sizes.to_vec();
        sorted.sort_unstable();
        if sorted[0] == 0 {
            return Err(BucketError::Zero);
        }
        if let Some(pair) = sorted.windows(2).find(|w| w[0] == w[1]) {
            return Err(BucketError::Duplicate(pair[0]));
        }
        let largest = sorted[sorted.len() - 1];
        let smaller: usize = sorted[..sorted.len() - 1].iter().sum();
        let limit = (largest - 1)
            .checked_mul(smaller)
            .and_then(|s| s.checked_add(largest))
            .filter(|&l| l < MAX_TABLE)
            .ok_or(BucketError::TooSpread {
                entries: (largest - 1)
                    .saturating_mul(smaller)
                    .saturating_add(largest),
            })?;
        let mut table = Vec::with_capacity(limit + 1);
        table.push(Best {
            capacity: 0,
            pieces: 0,
            size: 0,
        });
        for r in 1..=limit {
            let best = sorted
                .iter()
                .enumerate()
                .map(|(index, &size)| {
                    let rest = table[r.saturating_sub(size)];
                    Best {
                        capacity: rest.capacity + size,
                        pieces: rest.pieces + 1,
                        size: index,
                    }
                })
                .min_by_key(|b| (b.capacity, b.pieces))
                .unwrap_or(Best {
                    capacity: usize::MAX,
                    pieces: usize::MAX,
                    size: 0,
                });
            table.push(best);
        }
        Ok(Buckets {
            sizes: sorted,
            table,
        })
    }

    /// The compiled sizes, ascending.
    pub(crate) fn sizes(&self) -> &[usize] {
        &self.sizes
    }

    fn largest(&self) -> usize {
        self.sizes[self.sizes.len() - 1]
    }

    fn limit(&self) -> usize {
        self.table.len() - 1
    }

    /// Splits `rows` into pieces of the largest size (`extra`) and a rest the table covers.
    fn reduce(&self, rows: usize) -> (usize, usize) {
        let limit = self.limit();
        if rows <= limit {
            return (0, rows);
        }
        let largest = self.largest();
        let extra = (rows - limit).div_ceil(largest);
        (extra, rows - extra * largest)
    }

    /// Executions and pad rows for a chunk of `rows` rows.
    pub(crate) fn cost(&self, rows: usize) -> Cost {
        let (extra, rest) = self.reduce(rows);
        let best = self.table[rest];
        Cost {
            executions: extra + best.pieces,
            pad_rows: best.capacity - rest,
        }
    }

    /// The pieces of a chunk of `rows` rows, largest sizes first; only the last piece (the
    /// smallest size used) carries pad rows.
    pub(crate) fn pieces(&self, rows: usize) -> BucketPieces<'_> {
        let mut counts = [0usize; MAX_BUCKETS];
        if let [size] = self.sizes.as_slice() {
            // One size: ceil(rows / size) pieces, no table needed.
            counts[0] = rows.div_ceil(*size);
            return BucketPieces {
                sizes: &self.sizes,
                counts,
                bucket: 1,
                next: 0,
                rows,
            };
        }
        let (extra, mut rest) = self.reduce(rows);
        counts[self.sizes.len() - 1] = extra;
        while rest > 0 {
            let best = self.table[rest];
            counts[best.size] += 1;
            rest = rest.saturating_sub(self.sizes[best.size]);
        }
        BucketPieces {
            sizes: &self.sizes,
            counts,
            bucket: self.sizes.len(),
            next: 0,
            rows,
        }
    }
}

/// Iterator over the [`BucketPiece`]s of one chunk, from [`Buckets::pieces`].
#[derive(Debug, Clone)]
pub(crate) struct BucketPieces<'a> {
    /// Ascending compiled sizes.
    sizes: &'a [usize],
    /// Pieces left to emit per size.
    counts: [usize; MAX_BUCKETS],
    /// One past the size being emitted (emitting from the largest down).
    bucket: usize,
    /// First row of the next piece.
    next: usize,
    rows: usize,
}

impl Iterator for BucketPieces<'_> {
    type Item = BucketPiece;

    fn next(&mut self) -> Option<BucketPiece> {
        while self.bucket > 0 && self.counts[self.bucket - 1] == 0 {
            self.bucket -= 1;
        }
        if self.bucket == 0 || self.next >= self.rows {
            return None;
        }
        let bucket = self.bucket - 1;
        self.counts[bucket] -= 1;
        let size = self.sizes[bucket];
        let rows = (self.rows - self.next).min(size);
        let piece = Piece {
            start: self.next,
            rows,
            pad: size - rows,
        };
        self.next += rows;
        Some(BucketPiece { bucket, piece })
    }
}

impl FusedIterator for BucketPieces<'_> {}

/// The engine's model description from the NEFFs loaded on one core: the spec of the
/// smallest batch, the model indices in ascending batch order, and those batches.
pub(crate) fn bucket_specs(
    models: &[Model],
    dim: usize,
) -> Result<(ModelSpec, Vec<usize>, Vec<usize>)> {
    let mut specs = Vec::with_capacity(models.len());
    for model in models {
        let spec = ModelSpec {
            inputs: model
                .inputs()
                .iter()
                .map(IoSpec::from_info)
                .collect::<Result<_>>()?,
            outputs: model
                .outputs()
                .iter()
                .map(IoSpec::from_info)
                .collect::<Result<_>>()?,
        };
        if spec.inputs.is_empty() || spec.outputs.is_empty() {
            return Err(Error::config(format!(
                "model {} has {} inputs and {} outputs; data parallelism needs at least one \
                 of each",
                quote(model.name()),
                spec.inputs.len(),
                spec.outputs.len()
            )));
        }
        let batch = spec
            .inputs
            .iter()
            .find_map(|i| i.shape.get(dim).copied())
            .unwrap_or(0);
        if models.len() > 1 {
            if let Some(t) = spec
                .inputs
                .iter()
                .chain(&spec.outputs)
                .find(|t| t.shape.first() != Some(&batch))
            {
                return Err(Error::config(format!(
                    "model {} cannot be a batch-size bucket: {} has shape {:?}, not its \
                     batch {batch} on dim 0; compile every tensor with the batch on dim 0",
                    quote(model.name()),
                    quote(&t.name),
                    t.shape
                )));
            }
        }
        specs.push((spec, batch, model.name().to_owned()));
    }
    let mut order: Vec<usize> = (0..models.len()).collect();
    order.sort_by_key(|&i| specs[i].1);
    let (first, _, first_name) = &specs[order[0]];
    for &i in &order[1..] {
        let (spec, _, name) = &specs[i];
        if !same_but_batch(first, spec) {
            return Err(Error::config(format!(
                "models {} and {} differ in more than the batch size (the names, dtypes or \
                 other dims of their inputs or outputs); buckets must be the same model \
                 compiled at different batch sizes",
                quote(first_name),
                quote(name)
            )));
        }
    }
    let batches = order.iter().map(|&i| specs[i].1).collect();
    Ok((first.clone(), order, batches))
}

/// True when two specs have the same tensors except the size of dim 0.
fn same_but_batch(a: &ModelSpec, b: &ModelSpec) -> bool {
    let same = |x: &[IoSpec], y: &[IoSpec]| {
        x.len() == y.len()
            && x.iter().zip(y).all(|(x, y)| {
                x.name == y.name
                    && x.dtype == y.dtype
                    && x.elem_size == y.elem_size
                    && x.shape.len() == y.shape.len()
                    && x.shape.get(1..) == y.shape.get(1..)
            })
    };
    same(&a.inputs, &b.inputs) && same(&a.outputs, &b.outputs)
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroUsize;

    use proptest::prelude::*;

    use super::*;
    use crate::plan;

    fn tensor(name: &str, shape: &[usize]) -> IoSpec {
        IoSpec {
            name: name.to_owned(),
            dtype: Some(neuron_rt::DType::Float32),
            elem_size: 4,
            shape: shape.to_vec(),
            size: shape.iter().product::<usize>() * 4,
        }
    }

    fn model(batch: usize, width: usize) -> ModelSpec {
        ModelSpec {
            inputs: vec![tensor("x", &[batch, width])],
            outputs: vec![tensor("y", &[batch, 2])],
        }
    }

    #[test]
    fn buckets_may_differ_in_the_batch_only() {
        assert!(same_but_batch(&model(1, 8), &model(16, 8)));
        assert!(same_but_batch(&model(4, 8), &model(4, 8)));
        // Any other dim, a name, a dtype, a rank or a tensor count makes another model.
        assert!(!same_but_batch(&model(1, 8), &model(16, 9)));
        let mut renamed = model(16, 8);
        renamed.outputs[0].name = "z".to_owned();
        assert!(!same_but_batch(&model(1, 8), &renamed));
        let mut retyped = model(16, 8);
        retyped.inputs[0].dtype = Some(neuron_rt::DType::Int32);
        assert!(!same_but_batch(&model(1, 8), &retyped));
        let mut reranked = model(16, 8);
        reranked.inputs[0].shape.push(1);
        assert!(!same_but_batch(&model(1, 8), &reranked));
        let mut extra = model(16, 8);
        extra.inputs.push(tensor("w", &[16, 8]));
        assert!(!same_but_batch(&model(1, 8), &extra));
    }

    /// Plain dynamic programming over every row count up to `rows`, no reduction.
    fn brute_force(sizes: &[usize], rows: usize) -> (usize, usize) {
        let mut best = vec![(0usize, 0usize); rows + 1];
        for r in 1..=rows {
            best[r] = sizes
                .iter()
                .map(|&s| {
                    let (cap, n) = best[r.saturating_sub(s)];
                    (cap + s, n + 1)
                })
                .min()
                .expect("sizes are not empty");
        }
        (best[rows].0 - rows, best[rows].1)
    }

    #[test]
    fn worked_examples() {
        let buckets = Buckets::new(&[16, 1, 4]).unwrap();
        assert_eq!(buckets.sizes(), &[1, 4, 16]);
        let sizes = |rows| {
            buckets
                .pieces(rows)
                .map(|p| buckets.sizes()[p.bucket])
                .collect::<Vec<_>>()
        };
        assert_eq!(sizes(0), Vec::<usize>::new());
        assert_eq!(sizes(3), [1, 1, 1], "no padding beats fewer executions");
        assert_eq!(sizes(5), [4, 1]);
        assert_eq!(sizes(21), [16, 4, 1]);
        assert_eq!(sizes(40), [16, 16, 4, 4]);
        // {4, 5}: 8 rows fit 4 + 4 exactly, where largest-first would pad (5 + 4).
        let buckets = Buckets::new(&[4, 5]).unwrap();
        assert_eq!(
            buckets.cost(8),
            Cost {
                executions: 2,
                pad_rows: 0
            }
        );
        assert_eq!(
            buckets.cost(3),
            Cost {
                executions: 1,
                pad_rows: 1
            }
        );
    }

    #[test]
    fn bad_sizes_are_errors() {
        assert_eq!(Buckets::new(&[]).unwrap_err(), BucketError::Empty);
        assert_eq!(Buckets::new(&[0, 4]).unwrap_err(), BucketError::Zero);
        assert_eq!(
            Buckets::new(&[4, 1, 4]).unwrap_err(),
            BucketError::Duplicate(4)
        );
        assert_eq!(
            Buckets::new(&(1..=17).collect::<Vec<_>>()).unwrap_err(),
            BucketError::TooMany(17)
        );
        assert!(matches!(
            Buckets::new(&[1 << 20, (1 << 20) - 1]).unwrap_err(),
            BucketError::TooSpread { .. }
        ));
        assert!(Buckets::new(&[usize::MAX, 3]).is_err(), "no overflow panic");
    }

    proptest! {
        #[test]
        fn one_size_is_the_plain_split(b in 1usize..40, rows in 0usize..2000) {
            let buckets = Buckets::new(&[b]).unwrap();
            let b = NonZeroUsize::new(b).unwrap();
            let ours: Vec<Piece> = buckets.pieces(rows).map(|p| p.piece).collect();
            let plain: Vec<Piece> = plan::pieces(rows, b).collect();
            prop_assert_eq!(ours, plain);
            prop_assert_eq!(
                buckets.cost(rows),
                Cost { executions: plan::piece_count(rows, b), pad_rows: plan::pad_rows(rows, b) }
            );
        }

        #[test]
        fn optimal_against_brute_force(
            sizes in proptest::collection::btree_set(1usize..24, 1..5),
            rows in 0usize..600,
        ) {
            let sizes: Vec<usize> = sizes.into_iter().collect();
            let buckets = Buckets::new(&sizes).unwrap();
            let (pad, executions) = brute_force(&sizes, rows);
            prop_assert_eq!(buckets.cost(rows), Cost { executions, pad_rows: pad });
        }

        #[test]
        fn pieces_cover_the_chunk_in_order_and_match_the_cost(
            sizes in proptest::collection::btree_set(1usize..64, 1..6),
            rows in 0usize..100_000,
        ) {
            let sizes: Vec<usize> = sizes.into_iter().collect();
            let buckets = Buckets::new(&sizes).unwrap();
            let pieces: Vec<BucketPiece> = buckets.pieces(rows).collect();
            let mut next = 0;
            let mut pad = 0;
            for (i, p) in pieces.iter().enumerate() {
                prop_assert_eq!(p.piece.start, next);
                prop_assert!(p.piece.rows > 0);
                prop_assert_eq!(p.piece.rows + p.piece.pad, buckets.sizes()[p.bucket]);
                if i + 1 < pieces.len() {
                    prop_assert_eq!(p.piece.pad, 0, "only the last piece pads");
                    prop_assert!(p.bucket >= pieces[i + 1].bucket, "largest sizes first");
                }
                next += p.piece.rows;
                pad += p.piece.pad;
            }
            prop_assert_eq!(next, rows);
            prop_assert_eq!(buckets.cost(rows), Cost { executions: pieces.len(), pad_rows: pad });
            if let Some(last) = pieces.last() {
                prop_assert!(pad < buckets.sizes()[last.bucket]);
            }
        }
    }
}
