//! Chunk math for one batch: which rows go to which core, and how a chunk runs as pieces of
//! the compiled batch.
//!
//! This module owns the "plan" step of the path of one batch (ARCHITECTURE.md, "The path of one batch"): given the number
//! of rows `n` on the split dim, the number of cores `k` and the model's compiled batch `b`,
//! it says
//! - how the rows are cut into chunks and which core slot runs each chunk ([`Split`]);
//! - the [`Piece`] a chunk runs as: rows of the chunk plus zero pad rows (which compiled
//!   sizes a chunk's pieces use is `buckets.rs`; the single-size split `pieces` kept here,
//!   `ceil(c / b)` pieces of `b`, is the reference the bucket planner is tested against);
//! - whether the batch is acceptable when dynamic batching is off ([`Split::check_exact`]).
//!
//! Everything here is plain integer math: no allocation, no I/O, no panics on any input, and
//! nothing about bytes or tensors (that is `layout.rs`). The rules follow
//! behaviour spec (ARCHITECTURE.md, "The behaviour spec"; cases below are its numbers):
//! - default split: `min(n, k)` chunks sized by `divmod(n, k)`, the first `n mod k` one row
//!   larger, chunk `i` on core slot `i`;
//! - user `split_size` S: `ceil(n / S)` chunks of S rows (the last one may be short), chunk
//!   `i` on core slot `i % k`;
//! - `n == 0` gives zero chunks (the engine decides what an empty batch returns);
//! - beyond the reference, a split can start at another slot ([`Split::starting_at`]): chunk
//!   `i` on slot `(first + i) % k`, for engines that spread small calls over the cores;
//! - and beyond it too, a *packed* split ([`Split::packed`]): one chunk per piece of the
//!   least-padding plan for all `n` rows (`buckets.rs`), so a batch runs as `ceil(n / b)`
//!   whole compiled batches with only the last one padded, each on its own core slot in turn.

use std::fmt;
use std::iter::FusedIterator;
use std::num::NonZeroUsize;

use crate::buckets::{BucketPieces, Buckets};

/// How a batch of `n` rows on the split dim is cut into chunks over `k` cores.
///
/// Cheap to copy; every query is O(1) except iteration, which is O(chunks) and allocates
/// nothing.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Split<'a> {
    n: usize,
    k: NonZeroUsize,
    cut: Cut<'a>,
    /// Number of chunks, computed once at construction.
    chunks: usize,
    /// The slot chunk 0 runs on (0 for the reference mapping).
    first_slot: usize,
}

/// How a [`Split`] cuts the rows into chunks.
#[derive(Debug, Clone, Copy)]
enum Cut<'a> {
    /// The reference's default: `min(n, k)` chunks sized by `divmod(n, k)`.
    Even,
    /// The user's `split_size`: chunks of that many rows, the last one maybe short.
    Fixed(NonZeroUsize),
    /// One chunk per piece of the least-padding plan of all the rows over these compiled
    /// sizes.
    Pieces(&'a Buckets),
}

/// One chunk of a [`Split`]: the contiguous rows `[start, start + rows)` on the split dim,
/// run on core slot `slot` (an index into the engine's list of cores, not a core id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Chunk {
    /// Position of the chunk in job order; outputs are gathered in this order.
    pub(crate) index: usize,
    /// First row of the chunk on the split dim.
    pub(crate) start: usize,
    /// Number of rows in the chunk (never zero).
    pub(crate) rows: usize,
    /// Core slot that runs the chunk: `index % k`.
    pub(crate) slot: usize,
}

impl Chunk {
    /// One past the last row of the chunk (`start + rows`, never more than `n`).
    #[cfg(test)]
    pub(crate) fn end(&self) -> usize {
        // start + rows <= n for every chunk a Split hands out, so this cannot overflow.
        self.start + self.rows
    }
}

impl<'a> Split<'a> {
    /// Plans `n` rows over `k` cores, with the default divmod split when `split_size` is
    /// `None` and fixed chunks of `split_size` rows otherwise.
    ///
    /// `None` when `k == 0`: there is nothing to split over (the engine reports that as
    /// every core being quarantined, the only way it can have none in service).
    pub(crate) fn new(n: usize, k: usize, split_size: Option<NonZeroUsize>) -> Option<Split<'a>> {
        let k = NonZeroUsize::new(k)?;
        let (cut, chunks) = match split_size {
            // min(n, k): k chunks when every core gets a row, else one chunk per row.
            None => (Cut::Even, n.min(k.get())),
            Some(size) => (Cut::Fixed(size), n.div_ceil(size.get())),
        };
        Some(Split {
            n,
            k,
            cut,
            chunks,
            first_slot: 0,
        })
    }

    /// Plans `n` rows over `k` cores as whole compiled batches: one chunk per piece of the
    /// least-padding plan for `n` rows over `buckets` (with one compiled size `b`, `ceil(n /
    /// b)` chunks of `b` rows, the last one short), chunk `i` on slot `i % k`. Each chunk
    /// then runs as exactly its piece, so only the last chunk is padded.
    ///
    /// `None` when `k == 0`, as [`Split::new`].
    pub(crate) fn packed(n: usize, k: usize, buckets: &'a Buckets) -> Option<Split<'a>> {
        let k = NonZeroUsize::new(k)?;
        Some(Split {
            n,
            k,
            cut: Cut::Pieces(buckets),
            chunks: buckets.cost(n).executions,
            first_slot: 0,
        })
    }

    /// The same split with chunk 0 on slot `slot % k` and chunk `i` on `(slot + i) % k`.
    /// Rows, sizes and order are unchanged; only the cores move.
    #[must_use]
    pub(crate) fn starting_at(self, slot: usize) -> Split<'a> {
        Split {
            first_slot: slot % self.k,
            ..self
        }
    }

    /// Rows on the split dim.
    pub(crate) fn rows(&self) -> usize {
        self.n
    }

    /// Number of core slots.
    pub(crate) fn cores(&self) -> usize {
        self.k.get()
    }

    /// Number of chunks: `min(n, k)` by default, `ceil(n / split_size)` with a split size,
    /// the pieces of the plan when packed.
    pub(crate) fn num_chunks(&self) -> usize {
        self.chunks
    }

    /// Whether the split is [packed](Split::packed).
    pub(crate) fn is_packed(&self) -> bool {
        matches!(self.cut, Cut::Pieces(_))
    }

    /// Chunk `i` in job order, or `None` when `i >= num_chunks()` or the split is packed
    /// (whose chunks only [`Split::iter`] gives, in order).
    fn chunk(&self, i: usize) -> Option<Chunk> {
        if i >= self.chunks {
            return None;
        }
        let k = self.k.get();
        let (start, rows) = match self.cut {
            Cut::Pieces(_) => return None,
            Cut::Even => {
                // s, r = divmod(n, k); chunk i holds [i*s + min(i, r), (i+1)*s + min(i+1, r)).
                // i < min(n, k), so i*s + min(i, r) <= k*s + r = n: no overflow.
                let (s, r) = (self.n / k, self.n % k);
                (i * s + i.min(r), s + usize::from(i < r))
            }
            Cut::Fixed(size) => {
                // i < ceil(n / S), so i*S < n: no overflow, and the last chunk is clamped.
                let start = i * size.get();
                (start, size.get().min(self.n - start))
            }
        };
        Some(self.chunk_at(i, start, rows))
    }

    fn chunk_at(&self, index: usize, start: usize, rows: usize) -> Chunk {
        let k = self.k.get();
        Chunk {
            index,
            start,
            rows,
            slot: rotate(index % k, self.first_slot, k),
        }
    }

    /// All chunks in job order (no allocation).
    pub(crate) fn iter(&self) -> Chunks<'a> {
        Chunks {
            split: *self,
            next: 0,
            pieces: match self.cut {
                Cut::Pieces(buckets) => Some(buckets.pieces(self.n)),
                Cut::Even | Cut::Fixed(_) => None,
            },
        }
    }

    /// The under-use warning condition of the reference: `num_chunks() % k != 0`, i.e. some
    /// cores get fewer chunks than others.
    ///
    /// With the default split this holds exactly when `0 < n < k`. For `n == 0` there are no
    /// chunks and this is `false`: nothing is dispatched, so no core is under-used (the
    /// reference warns there only because it invents one empty job).
    pub(crate) fn underused(&self) -> bool {
        self.chunks % self.k.get() != 0
    }

    /// Checks the batch for running with dynamic batching off, where every chunk must be
    /// exactly the compiled batch `b` rows:
    /// - default split: `n == k * b`;
    /// - user `split_size` S: `S == b` and `n % b == 0` (so `n / b` chunks of `b` rows,
    ///   dealt round-robin over the cores).
    ///
    /// A packed split is only made with dynamic batching on, so it is never checked; were it
    /// checked, it would be held to the default split's rule.
    ///
    /// The error states the rule, the numbers and what to change.
    pub(crate) fn check_exact(&self, b: NonZeroUsize) -> Result<(), PlanError> {
        let (n, k, bv) = (self.n, self.k.get(), b.get());
        match self.cut {
            Cut::Even | Cut::Pieces(_) => {
                let expected = k.checked_mul(bv);
                if expected == Some(n) {
                    Ok(())
                } else {
                    Err(PlanError::NotExact {
                        n,
                        k,
                        b: bv,
                        expected,
                    })
                }
            }
            Cut::Fixed(size) if size != b => Err(PlanError::SplitSizeNotBatch {
                split_size: size.get(),
                b: bv,
            }),
            Cut::Fixed(_) if n % bv != 0 => Err(PlanError::NotMultipleOfBatch { n, b: bv }),
            Cut::Fixed(_) => Ok(()),
        }
    }
}

/// `(slot + by) % k` for `slot, by < k`, without a division.
fn rotate(slot: usize, by: usize, k: usize) -> usize {
    // Both are below k, so the sum cannot overflow and is below 2k.
    let sum = slot + by;
    if sum >= k { sum - k } else { sum }
}

impl<'a> IntoIterator for &Split<'a> {
    type Item = Chunk;
    type IntoIter = Chunks<'a>;

    fn into_iter(self) -> Chunks<'a> {
        self.iter()
    }
}

/// Iterator over the chunks of a [`Split`], in job order.
#[derive(Debug, Clone)]
pub(crate) struct Chunks<'a> {
    split: Split<'a>,
    next: usize,
    /// A packed split's pieces, one per chunk.
    pieces: Option<BucketPieces<'a>>,
}

impl Iterator for Chunks<'_> {
    type Item = Chunk;

    fn next(&mut self) -> Option<Chunk> {
        let chunk = match &mut self.pieces {
            Some(pieces) => {
                let piece = pieces.next()?.piece;
                self.split.chunk_at(self.next, piece.start, piece.rows)
            }
            None => self.split.chunk(self.next)?,
        };
        self.next += 1;
        Some(chunk)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.split.chunks.saturating_sub(self.next);
        (left, Some(left))
    }
}

impl ExactSizeIterator for Chunks<'_> {}

impl FusedIterator for Chunks<'_> {}

/// One device execution of a chunk under dynamic batching: rows
/// `[start, start + rows)` of the chunk, followed by `pad` zero rows up to the compiled batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Piece {
    /// First row of the piece, as an offset within the chunk.
    pub(crate) start: usize,
    /// Real rows in the piece (`1..=b`).
    pub(crate) rows: usize,
    /// Zero rows after the real ones (`rows + pad == b`); non-zero only on the last piece.
    pub(crate) pad: usize,
}

impl Piece {
    /// Whether the piece carries pad rows (whose outputs are trimmed away).
    #[cfg(test)]
    pub(crate) fn padded(&self) -> bool {
        self.pad != 0
    }
}

/// The pieces a chunk of `chunk_rows` rows runs as with compiled batch `b`: `ceil(c / b)`
/// pieces of `b` rows, the last one zero-padded up to `b`. A chunk of zero rows has no pieces.
#[cfg(test)]
pub(crate) fn pieces(chunk_rows: usize, b: NonZeroUsize) -> Pieces {
    Pieces {
        rows: chunk_rows,
        b,
        next: 0,
    }
}

/// Number of device executions for a chunk of `chunk_rows` rows: `ceil(c / b)`.
#[cfg(test)]
pub(crate) fn piece_count(chunk_rows: usize, b: NonZeroUsize) -> usize {
    chunk_rows.div_ceil(b.get())
}

/// Zero rows added to a chunk of `chunk_rows` rows: `piece_count * b - c`, always `< b`.
#[cfg(test)]
pub(crate) fn pad_rows(chunk_rows: usize, b: NonZeroUsize) -> usize {
    // Written without the product so it cannot overflow.
    let b = b.get();
    (b - chunk_rows % b) % b
}

/// Iterator over the [`Piece`]s of one chunk, made by [`pieces`].
#[cfg(test)]
#[derive(Debug, Clone)]
pub(crate) struct Pieces {
    rows: usize,
    b: NonZeroUsize,
    /// Row offset of the next piece within the chunk (`<= rows`).
    next: usize,
}

#[cfg(test)]
impl Iterator for Pieces {
    type Item = Piece;

    fn next(&mut self) -> Option<Piece> {
        let left = self.rows - self.next;
        if left == 0 {
            return None;
        }
        let b = self.b.get();
        let rows = left.min(b);
        let piece = Piece {
            start: self.next,
            rows,
            pad: b - rows,
        };
        // next + rows <= self.rows: no overflow.
        self.next += rows;
        Some(piece)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = piece_count(self.rows - self.next, self.b);
        (left, Some(left))
    }
}

#[cfg(test)]
impl ExactSizeIterator for Pieces {}

#[cfg(test)]
impl FusedIterator for Pieces {}

/// Checks `n` rows against the dynamic-batching-off rule for the default split over `k`
/// cores: `n == k * b`. Shorthand for `Split::new(n, k, None)?.check_exact(b)` (`k > 0`).
#[cfg(test)]
pub(crate) fn check_exact(n: usize, k: usize, b: NonZeroUsize) -> Result<(), PlanError> {
    Split::new(n, k, None)
        .expect("the tests pass at least one core")
        .check_exact(b)
}

/// Why a batch cannot be planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PlanError {
    /// Dynamic batching is off and `n != k * b` (default split).
    NotExact {
        /// Rows on the split dim.
        n: usize,
        /// Number of cores.
        k: usize,
        /// Compiled batch.
        b: usize,
        /// `k * b`, or `None` if it overflows `usize`.
        expected: Option<usize>,
    },
    /// Dynamic batching is off and the user's `split_size` is not the compiled batch.
    SplitSizeNotBatch {
        /// The user's chunk size.
        split_size: usize,
        /// Compiled batch.
        b: usize,
    },
    /// Dynamic batching is off, `split_size == b`, but `n` is not a multiple of `b`.
    NotMultipleOfBatch {
        /// Rows on the split dim.
        n: usize,
        /// Compiled batch (and split size).
        b: usize,
    },
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            PlanError::NotExact {
                n,
                k,
                b,
                expected: Some(expected),
            } => write!(
                f,
                "dynamic batching is off, so the batch must be exactly cores x compiled batch: \
                 {k} cores x {b} = {expected} rows, got {n}; \
                 enable dynamic batching or pass {expected} rows"
            ),
            PlanError::NotExact {
                n,
                k,
                b,
                expected: None,
            } => write!(
                f,
                "dynamic batching is off, so the batch must be exactly cores x compiled batch: \
                 {k} cores x {b} overflows the row count, got {n}; \
                 enable dynamic batching or use fewer cores"
            ),
            PlanError::SplitSizeNotBatch { split_size, b } => write!(
                f,
                "dynamic batching is off, so every chunk must be exactly the compiled batch: \
                 split_size {split_size} != compiled batch {b}; \
                 set split_size to {b}, unset it, or enable dynamic batching"
            ),
            PlanError::NotMultipleOfBatch { n, b } => {
                write!(
                    f,
                    "dynamic batching is off and split_size is the compiled batch {b}, \
                     so the batch must be a whole number of chunks of {b} rows: got {n} rows; \
                     pass a multiple of {b} rows"
                )?;
                let below = n - n % b;
                match below.checked_add(b) {
                    Some(above) if below > 0 => write!(f, " (e.g. {below} or {above})")?,
                    Some(above) => write!(f, " (e.g. {above})")?,
                    None => write!(f, " (e.g. {below})")?,
                }
                f.write_str(", or enable dynamic batching")
            }
        }
    }
}

impl std::error::Error for PlanError {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn nz(v: usize) -> NonZeroUsize {
        NonZeroUsize::new(v).unwrap()
    }

    /// (start, rows, slot) of every chunk.
    fn chunks(n: usize, k: usize, split_size: Option<usize>) -> Vec<(usize, usize, usize)> {
        let split = Split::new(n, k, split_size.map(nz)).unwrap();
        let v: Vec<_> = split.iter().map(|c| (c.start, c.rows, c.slot)).collect();
        assert_eq!(v.len(), split.num_chunks());
        assert_eq!(split.iter().len(), split.num_chunks());
        v
    }

    fn sizes(n: usize, k: usize, split_size: Option<usize>) -> Vec<usize> {
        chunks(n, k, split_size).iter().map(|c| c.1).collect()
    }

    fn underused(n: usize, k: usize, split_size: Option<usize>) -> bool {
        Split::new(n, k, split_size.map(nz)).unwrap().underused()
    }

    /// (rows, pad) of every piece.
    fn piece_list(c: usize, b: usize) -> Vec<(usize, usize)> {
        pieces(c, nz(b)).map(|p| (p.rows, p.pad)).collect()
    }

    // Spec case 1.
    #[test]
    fn case_01_even_split() {
        assert_eq!(
            chunks(8, 4, None),
            [(0, 2, 0), (2, 2, 1), (4, 2, 2), (6, 2, 3)]
        );
        assert!(!underused(8, 4, None));
    }

    // Spec case 2.
    #[test]
    fn case_02_remainder_on_first_chunk_no_warning() {
        assert_eq!(
            chunks(5, 4, None),
            [(0, 2, 0), (2, 1, 1), (3, 1, 2), (4, 1, 3)]
        );
        assert!(!underused(5, 4, None));
    }

    // Spec case 3.
    #[test]
    fn case_03_divmod_not_torch_chunk() {
        assert_eq!(
            chunks(10, 4, None),
            [(0, 3, 0), (3, 3, 1), (6, 2, 2), (8, 2, 3)]
        );
    }

    // Spec cases 4-6.
    #[test]
    fn cases_04_to_06_sizes() {
        assert_eq!(sizes(6, 4, None), [2, 2, 1, 1]);
        assert_eq!(sizes(8, 3, None), [3, 3, 2]);
        assert_eq!(sizes(5, 3, None), [2, 2, 1]);
        assert_eq!(chunks(5, 2, None), [(0, 3, 0), (3, 2, 1)]);
    }

    // Spec cases 7-8.
    #[test]
    fn cases_07_08_fewer_rows_than_cores() {
        assert_eq!(chunks(3, 4, None), [(0, 1, 0), (1, 1, 1), (2, 1, 2)]);
        assert!(underused(3, 4, None));
        assert_eq!(chunks(1, 4, None), [(0, 1, 0)]);
        assert!(underused(1, 4, None));
    }

    // Spec case 9.
    #[test]
    fn case_09_one_core_and_one_row_per_core() {
        assert_eq!(chunks(7, 1, None), [(0, 7, 0)]);
        assert!(!underused(7, 1, None));
        let sixteen: Vec<_> = (0..16).map(|i| (i, 1, i)).collect();
        assert_eq!(chunks(16, 16, None), sixteen);
    }

    // Spec case 10 ([want]: no device call): zero rows plan zero chunks.
    #[test]
    fn case_10_empty_batch_has_no_chunks() {
        for split_size in [None, Some(3)] {
            let split = Split::new(0, 4, split_size.map(nz)).unwrap();
            assert_eq!(split.num_chunks(), 0);
            assert_eq!(split.iter().next(), None);
            assert_eq!(split.chunk(0), None);
            assert!(!split.underused());
        }
    }

    // Spec case 11: concatenating chunks in job order gives the input rows in order.
    #[test]
    fn case_11_order() {
        for k in 1..=17 {
            for n in 0..=40 {
                for split_size in [None, Some(1), Some(3), Some(7)] {
                    let rows: Vec<usize> = chunks(n, k, split_size)
                        .iter()
                        .flat_map(|&(start, rows, _)| start..start + rows)
                        .collect();
                    assert_eq!(rows, (0..n).collect::<Vec<_>>(), "n={n} k={k}");
                }
            }
        }
    }

    // Spec case 12.
    #[test]
    fn case_12_batch_one() {
        assert_eq!(sizes(10, 4, None), [3, 3, 2, 2]);
        for c in [3, 3, 2, 2] {
            assert_eq!(piece_list(c, 1), vec![(1, 0); c]);
            assert_eq!(piece_count(c, nz(1)), c);
            assert_eq!(pad_rows(c, nz(1)), 0);
        }
    }

    // Spec case 13.
    #[test]
    fn case_13_pad_last_piece() {
        assert_eq!(sizes(10, 2, None), [5, 5]);
        let p: Vec<_> = pieces(5, nz(4)).collect();
        assert_eq!(
            p,
            [
                Piece {
                    start: 0,
                    rows: 4,
                    pad: 0
                },
                Piece {
                    start: 4,
                    rows: 1,
                    pad: 3
                },
            ]
        );
        assert!(!p[0].padded());
        assert!(p[1].padded());
        assert_eq!(piece_count(5, nz(4)), 2);
        assert_eq!(pad_rows(5, nz(4)), 3);
    }

    // Spec case 14.
    #[test]
    fn case_14_every_chunk_padded() {
        let split = Split::new(5, 4, None).unwrap();
        let b = nz(4);
        assert_eq!(sizes(5, 4, None), [2, 1, 1, 1]);
        let executions: usize = split.iter().map(|c| piece_count(c.rows, b)).sum();
        let pad: usize = split.iter().map(|c| pad_rows(c.rows, b)).sum();
        assert_eq!(executions, 4);
        assert_eq!(pad, 11);
        assert_eq!(piece_list(2, 4), [(2, 2)]);
        assert_eq!(piece_list(1, 4), [(1, 3)]);
    }

    // Spec case 15.
    #[test]
    fn case_15_exact_fit() {
        let split = Split::new(80, 16, None).unwrap();
        assert!(split.iter().all(|c| c.rows == 5));
        assert!(split.iter().all(|c| piece_list(c.rows, 5) == [(5, 0)]));
        assert_eq!(split.num_chunks(), 16);
    }

    // Spec case 16.
    #[test]
    fn case_16_tutorial_batches() {
        for n in [32, 48, 64, 80, 96, 112] {
            assert_eq!(sizes(n, 16, None), vec![n / 16; 16]);
            assert_eq!(piece_count(n / 16, nz(1)), n / 16);
        }
    }

    // Spec cases 20-22.
    #[test]
    fn cases_20_to_22_dynamic_batching_off() {
        assert_eq!(check_exact(2, 2, nz(1)), Ok(()));
        assert_eq!(sizes(2, 2, None), [1, 1]);
        let err = check_exact(4, 2, nz(1)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "dynamic batching is off, so the batch must be exactly cores x compiled batch: \
             2 cores x 1 = 2 rows, got 4; enable dynamic batching or pass 2 rows"
        );
        assert!(check_exact(8, 4, nz(1)).is_err());
        assert_eq!(check_exact(4, 4, nz(1)), Ok(()));
        // Spec case 28 [want]: dim 2, 17 rows on 2 cores of compiled 8 is an error.
        assert_eq!(
            check_exact(17, 2, nz(8)),
            Err(PlanError::NotExact {
                n: 17,
                k: 2,
                b: 8,
                expected: Some(16)
            })
        );
    }

    #[test]
    fn dynamic_batching_off_with_split_size() {
        let split = |n, s| Split::new(n, 4, Some(nz(s))).unwrap();
        assert_eq!(split(12, 3).check_exact(nz(3)), Ok(()));
        assert_eq!(split(0, 3).check_exact(nz(3)), Ok(()));
        let err = split(12, 2).check_exact(nz(3)).unwrap_err();
        assert_eq!(
            err,
            PlanError::SplitSizeNotBatch {
                split_size: 2,
                b: 3
            }
        );
        assert!(err.to_string().contains("set split_size to 3"), "{err}");
        let err = split(10, 3).check_exact(nz(3)).unwrap_err();
        assert_eq!(err, PlanError::NotMultipleOfBatch { n: 10, b: 3 });
        assert!(err.to_string().contains("(e.g. 9 or 12)"), "{err}");
        let err = split(2, 3).check_exact(nz(3)).unwrap_err();
        assert!(err.to_string().contains("(e.g. 3)"), "{err}");
        let err = split(usize::MAX, 2).check_exact(nz(2)).unwrap_err();
        let below = usize::MAX - 1;
        assert!(
            err.to_string().contains(&format!("(e.g. {below})")),
            "{err}"
        );
    }

    #[test]
    fn errors_do_not_panic_on_extremes() {
        assert!(Split::new(5, 0, None).is_none());
        let err = check_exact(3, usize::MAX, nz(2)).unwrap_err();
        assert!(matches!(err, PlanError::NotExact { expected: None, .. }));
        assert!(err.to_string().contains("overflows"), "{err}");
        let split = Split::new(usize::MAX, usize::MAX, None).unwrap();
        assert_eq!(
            split.chunk(usize::MAX - 1).map(|c| c.end()),
            Some(usize::MAX)
        );
        assert_eq!(split.chunk(usize::MAX), None);
        let split = Split::new(usize::MAX, 3, Some(nz(usize::MAX / 2))).unwrap();
        assert_eq!(split.num_chunks(), 3);
        assert_eq!(
            split.chunk(2).map(|c| (c.rows, c.end())),
            Some((1, usize::MAX))
        );
        assert_eq!(piece_count(usize::MAX, nz(2)), usize::MAX / 2 + 1);
        assert_eq!(pad_rows(usize::MAX, nz(2)), 1);
        assert_eq!(pieces(usize::MAX, nz(usize::MAX)).count(), 1);
    }

    // Spec cases 31-33.
    #[test]
    fn cases_31_to_33_split_size() {
        assert_eq!(
            chunks(10, 4, Some(3)),
            [(0, 3, 0), (3, 3, 1), (6, 3, 2), (9, 1, 3)]
        );
        assert!(!underused(10, 4, Some(3)));

        let ones = chunks(10, 4, Some(1));
        assert_eq!(ones.len(), 10);
        assert!(underused(10, 4, Some(1)));
        let per_slot: Vec<usize> = (0..4)
            .map(|s| ones.iter().filter(|c| c.2 == s).count())
            .collect();
        assert_eq!(per_slot, [3, 3, 2, 2]);

        assert_eq!(chunks(8, 4, Some(8)), [(0, 8, 0)]);
        assert!(underused(8, 4, Some(8)));
    }

    // Spec case 56: under-use exactly when num_chunks % k != 0 (default split: 0 < n < k).
    #[test]
    fn case_56_underuse() {
        for k in 1..=9 {
            for n in 0..=30 {
                assert_eq!(underused(n, k, None), n > 0 && n < k, "n={n} k={k}");
                for s in 1..=5 {
                    assert_eq!(underused(n, k, Some(s)), n.div_ceil(s) % k != 0);
                }
            }
        }
    }

    proptest! {
        #[test]
        fn default_split_properties(n in 0usize..5000, k in 1usize..70) {
            let split = Split::new(n, k, None).unwrap();
            prop_assert_eq!(split.num_chunks(), n.min(k));
            let mut end = 0;
            let (mut min, mut max) = (usize::MAX, 0);
            for (i, c) in split.iter().enumerate() {
                prop_assert_eq!(c.index, i);
                prop_assert_eq!(c.start, end);
                prop_assert!(c.rows > 0);
                prop_assert_eq!(c.slot, i);
                prop_assert_eq!(split.chunk(i), Some(c));
                min = min.min(c.rows);
                max = max.max(c.rows);
                end = c.end();
            }
            prop_assert_eq!(end, n);
            if n > 0 {
                prop_assert!(max - min <= 1);
            }
            prop_assert_eq!(split.chunk(split.num_chunks()), None);
        }

        #[test]
        fn user_split_properties(n in 0usize..5000, k in 1usize..70, s in 1usize..300) {
            let split = Split::new(n, k, Some(nz(s))).unwrap();
            prop_assert_eq!(split.num_chunks(), n.div_ceil(s));
            let last = split.num_chunks().checked_sub(1);
            let mut end = 0;
            for (i, c) in split.iter().enumerate() {
                prop_assert_eq!(c.start, end);
                prop_assert_eq!(c.slot, i % k);
                if Some(i) == last {
                    prop_assert!(c.rows >= 1 && c.rows <= s);
                } else {
                    prop_assert_eq!(c.rows, s);
                }
                end = c.end();
            }
            prop_assert_eq!(end, n);
        }

        #[test]
        fn exact_batches_give_chunks_of_b(k in 1usize..40, b in 1usize..40, m in 0usize..40) {
            let split = Split::new(k * b, k, None).unwrap();
            prop_assert_eq!(split.check_exact(nz(b)), Ok(()));
            prop_assert!(split.iter().all(|c| c.rows == b));
            let split = Split::new(m * b, k, Some(nz(b))).unwrap();
            prop_assert_eq!(split.check_exact(nz(b)), Ok(()));
            prop_assert!(split.iter().all(|c| c.rows == b));
        }

        #[test]
        fn check_exact_accepts_only_the_rule(n in 0usize..400, k in 1usize..20, b in 1usize..20,
                                             s in proptest::option::of(1usize..20)) {
            let split = Split::new(n, k, s.map(nz)).unwrap();
            let ok = match s {
                None => n == k * b,
                Some(s) => s == b && n % b == 0,
            };
            prop_assert_eq!(split.check_exact(nz(b)).is_ok(), ok);
            if ok {
                prop_assert!(split.iter().all(|c| c.rows == b));
            }
        }

        #[test]
        fn piece_properties(c in 0usize..2000, b in 1usize..300) {
            let b_nz = nz(b);
            let ps: Vec<Piece> = pieces(c, b_nz).collect();
            prop_assert_eq!(ps.len(), c.div_ceil(b));
            prop_assert_eq!(pieces(c, b_nz).len(), ps.len());
            prop_assert_eq!(piece_count(c, b_nz), ps.len());
            prop_assert_eq!(ps.iter().map(|p| p.rows).sum::<usize>(), c);
            let mut start = 0;
            for (i, p) in ps.iter().enumerate() {
                prop_assert_eq!(p.start, start);
                prop_assert_eq!(p.rows + p.pad, b);
                prop_assert!(p.rows >= 1);
                if i + 1 < ps.len() {
                    prop_assert_eq!(p.pad, 0);
                }
                start += p.rows;
            }
            let pad: usize = ps.iter().map(|p| p.pad).sum();
            prop_assert_eq!(pad, ps.len() * b - c);
            prop_assert_eq!(pad_rows(c, b_nz), pad);
            prop_assert!(pad < b);
        }

        #[test]
        fn no_panic_on_any_input(n in any::<usize>(), k in any::<usize>(),
                                 s in proptest::option::of(1usize..), b in 1usize..,
                                 i in any::<usize>()) {
            if let Some(split) = Split::new(n, k, s.map(nz)) {
                let _ = split.chunk(i);
                let _ = split.chunk(split.num_chunks().saturating_sub(1));
                let _ = split.iter().take(3).count();
                let _ = split.underused();
                if let Err(e) = split.check_exact(nz(b)) {
                    let _ = e.to_string();
                }
            }
            let _ = pieces(n, nz(b)).take(3).count();
            let _ = (piece_count(n, nz(b)), pad_rows(n, nz(b)));
        }
    }

    #[test]
    fn starting_at_rotates_slots_and_keeps_rows() {
        let base = Split::new(3, 4, None).unwrap();
        let moved = base.starting_at(6); // 6 % 4 = 2
        let slots: Vec<usize> = moved.iter().map(|c| c.slot).collect();
        assert_eq!(slots, vec![2, 3, 0]);
        let rows = |s: Split| {
            s.iter()
                .map(|c| (c.index, c.start, c.rows))
                .collect::<Vec<_>>()
        };
        assert_eq!(rows(base), rows(moved));
    }

    proptest! {
        #[test]
        fn starting_at_is_a_rotation(
            n in 0usize..200,
            k in 1usize..30,
            size in proptest::option::of(1usize..20),
            first in 0usize..1000,
        ) {
            let base = Split::new(n, k, size.map(nz)).unwrap();
            let moved = base.starting_at(first);
            prop_assert_eq!(moved.num_chunks(), base.num_chunks());
            for (a, b) in base.iter().zip(moved.iter()) {
                prop_assert_eq!((a.index, a.start, a.rows), (b.index, b.start, b.rows));
                prop_assert_eq!(b.slot, (a.slot + first) % k);
            }
        }
    }

    proptest! {
        #[test]
        fn packed_chunks_are_the_pieces_of_the_least_padding_plan(
            n in 0usize..3000,
            k in 1usize..30,
            sizes in proptest::collection::btree_set(1usize..40, 1..4),
            first in 0usize..100,
        ) {
            let sizes: Vec<usize> = sizes.into_iter().collect();
            let buckets = Buckets::new(&sizes).unwrap();
            let split = Split::packed(n, k, &buckets).unwrap().starting_at(first);
            let chunks: Vec<Chunk> = split.iter().collect();
            prop_assert_eq!(chunks.len(), split.num_chunks());
            prop_assert_eq!(split.iter().len(), split.num_chunks());
            let pieces: Vec<_> = buckets.pieces(n).collect();
            prop_assert_eq!(chunks.len(), pieces.len());
            let mut next = 0;
            for (i, (chunk, piece)) in chunks.iter().zip(&pieces).enumerate() {
                prop_assert_eq!(chunk.index, i);
                prop_assert_eq!((chunk.start, chunk.rows), (piece.piece.start, piece.piece.rows));
                prop_assert_eq!(chunk.start, next);
                prop_assert_eq!(chunk.slot, (first + i) % k);
                // Re-planning a chunk's rows gives back exactly its one piece.
                let again: Vec<_> = buckets.pieces(chunk.rows).collect();
                prop_assert_eq!(again.len(), 1);
                prop_assert_eq!(again[0].bucket, piece.bucket);
                next += chunk.rows;
            }
            prop_assert_eq!(next, n);
            prop_assert!(split.is_packed());
        }
    }
}
