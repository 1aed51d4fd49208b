//! Where the bytes of a chunk live: byte runs for copying rows along any dim of a row-major
//! tensor.
//!
//! This module owns the byte geometry the worker step needs (ARCHITECTURE.md, "The path of one batch") to move a piece's
//! rows between the caller's buffer and a device tensor without staging them. For a row-major
//! tensor of shape `shape` with elements of `elem` bytes, split along `dim`:
//! - `outer = prod(shape[..dim])`, `n = shape[dim]`,
//!   `inner = prod(shape[dim + 1..]) * elem` (bytes of one row-slab);
//! - rows `[s, s + c)` on `dim` are `outer` runs of `c * inner` bytes at source offsets
//!   `o * n * inner + s * inner` for `o in 0..outer` (a single run when `outer == 1`,
//!   which is always the case for `dim == 0`);
//! - a device tensor of the same shape but `b` rows on `dim` holds run `o` at
//!   `o * b * inner + dst_row * inner`.
//!
//! Runs that touch each other on both sides are merged into one. Everything is pure integer
//! math: no allocation, no `unsafe`, no panics on any input (every size is computed with
//! checked arithmetic once, up front, so the offsets handed out later cannot overflow).

use std::fmt;
use std::iter::FusedIterator;
use std::ops::Range;

/// Byte geometry of a row-major tensor split along one dim.
///
/// Invariant: `rows * inner_bytes` and `outer * rows * inner_bytes` fit in `usize` (checked
/// in [`Geometry::new`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geometry {
    outer: usize,
    rows: usize,
    inner_bytes: usize,
    total_bytes: usize,
}

/// One contiguous copy: `len` bytes at byte offset `src` of the tensor a [`Geometry`]
/// describes (the caller's side, `n` rows on the split dim) and at byte offset `dst` of the
/// device tensor (`dst_rows` rows on the split dim).
///
/// Scattering inputs copies `src -> dst`; gathering outputs copies the same runs `dst -> src`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Run {
    /// Byte offset in the caller-side tensor.
    pub(crate) src: usize,
    /// Byte offset in the device-side tensor.
    pub(crate) dst: usize,
    /// Bytes to copy (never zero).
    pub(crate) len: usize,
}

/// A byte range of the device tensor to fill with zeros (pad rows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    /// Byte offset in the device-side tensor.
    pub(crate) offset: usize,
    /// Bytes to zero (never zero).
    pub(crate) len: usize,
}

/// Which tensor a row range was checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// The caller-side tensor (`n` rows).
    Source,
    /// The device-side tensor (`dst_rows` rows).
    Destination,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Source => "source",
            Side::Destination => "destination",
        })
    }
}

/// Why a geometry or a set of runs cannot be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LayoutError {
    /// The split dim is not a dimension of the tensor.
    DimOutOfRange {
        /// Requested split dim.
        dim: usize,
        /// Rank of the tensor.
        rank: usize,
    },
    /// The element size is zero.
    ZeroElementSize,
    /// The tensor's size in bytes (or a partial product of it) does not fit in `usize`.
    TooLarge {
        /// Rows on the split dim of the tensor whose size overflowed.
        rows: usize,
    },
    /// A row range does not fit in the tensor it addresses.
    RowsOutOfRange {
        /// Which tensor.
        side: Side,
        /// First row asked for.
        start: usize,
        /// Number of rows asked for.
        rows: usize,
        /// Rows that tensor has on the split dim.
        available: usize,
    },
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            LayoutError::DimOutOfRange { dim, rank: 0 } => write!(
                f,
                "cannot split a scalar (rank 0) along dim {dim}; \
                 give every input to be split at least one dimension"
            ),
            LayoutError::DimOutOfRange { dim, rank } => write!(
                f,
                "split dim {dim} is out of range for a tensor of rank {rank}; \
                 use a dim in 0..{rank}"
            ),
            LayoutError::ZeroElementSize => {
                f.write_str("element size is 0 bytes; every dtype has a non-zero size")
            }
            LayoutError::TooLarge { rows } => write!(
                f,
                "the byte size of a tensor with {rows} rows on the split dim overflows usize; \
                 the shape is corrupt or far too large for this machine"
            ),
            LayoutError::RowsOutOfRange {
                side,
                start,
                rows,
                available,
            } => write!(
                f,
                "{rows} rows starting at row {start} do not fit in the {side} tensor, \
                 which has {available} rows on the split dim (internal planning error)"
            ),
        }
    }
}

impl std::error::Error for LayoutError {}

impl Geometry {
    /// The geometry of a row-major tensor of `shape` with `elem`-byte elements, split along
    /// `dim`.
    ///
    /// Fails when `dim >= shape.len()`, when `elem == 0`, or when the byte size or one of
    /// its partial products (`outer`, `inner`, `n * inner`) overflows `usize`, even if
    /// another dimension is zero.
    pub(crate) fn new(shape: &[usize], dim: usize, elem: usize) -> Result<Geometry, LayoutError> {
        let rank = shape.len();
        let rows = *shape
            .get(dim)
            .ok_or(LayoutError::DimOutOfRange { dim, rank })?;
        if elem == 0 {
            return Err(LayoutError::ZeroElementSize);
        }
        let too_large = LayoutError::TooLarge { rows };
        let product = |dims: &[usize], init: usize| {
            dims.iter()
                .try_fold(init, |acc, &d| acc.checked_mul(d))
                .ok_or(too_large)
        };
        // `dim < rank` was checked above, so both slices are in range.
        let outer = product(&shape[..dim], 1)?;
        let inner_bytes = product(&shape[dim + 1..], elem)?;
        let total_bytes = slab_bytes(outer, rows, inner_bytes).ok_or(too_large)?;
        Ok(Geometry {
            outer,
            rows,
            inner_bytes,
            total_bytes,
        })
    }

    /// `prod(shape[..dim])`: how many separate slabs a row range is spread over.
    #[cfg(test)]
    pub(crate) fn outer(&self) -> usize {
        self.outer
    }

    /// `shape[dim]`: rows on the split dim.
    #[cfg(test)]
    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    /// `prod(shape[dim + 1..]) * elem`: bytes of one row within one slab.
    #[cfg(test)]
    pub(crate) fn inner_bytes(&self) -> usize {
        self.inner_bytes
    }

    /// Bytes of the whole tensor.
    #[cfg(test)]
    pub(crate) fn total_bytes(&self) -> usize {
        self.total_bytes
    }

    /// Bytes of a tensor with the same shape but `rows` rows on the split dim (e.g. the
    /// device tensor compiled with batch `b`).
    pub(crate) fn bytes_with_rows(&self, rows: usize) -> Result<usize, LayoutError> {
        slab_bytes(self.outer, rows, self.inner_bytes).ok_or(LayoutError::TooLarge { rows })
    }

    /// The byte runs that copy rows `[src_row, src_row + rows)` of this tensor to rows
    /// `[dst_row, dst_row + rows)` of a tensor of the same shape with `dst_rows` rows on the
    /// split dim, in ascending offset order on both sides.
    ///
    /// One run when `outer == 1`, or when both sides are whole (`rows == n == dst_rows`);
    /// otherwise `outer` runs. No runs when there is nothing to copy. Fails when a row range
    /// is out of its tensor or the destination's size overflows `usize`.
    pub(crate) fn runs(
        &self,
        src_row: usize,
        rows: usize,
        dst_rows: usize,
        dst_row: usize,
    ) -> Result<Runs, LayoutError> {
        check_rows(Side::Source, src_row, rows, self.rows)?;
        check_rows(Side::Destination, dst_row, rows, dst_rows)?;
        self.bytes_with_rows(dst_rows)?;
        // From here on every offset handed out is within one of the two checked totals.
        let len = rows * self.inner_bytes;
        let src = src_row * self.inner_bytes;
        let dst = dst_row * self.inner_bytes;
        let src_stride = self.rows * self.inner_bytes;
        let dst_stride = dst_rows * self.inner_bytes;
        let (count, len) = if len == 0 || self.outer == 0 {
            (0, 0)
        } else if self.outer == 1 || (len == src_stride && len == dst_stride) {
            // Consecutive runs touch on both sides: one run of all the slabs.
            (1, self.outer * len)
        } else {
            (self.outer, len)
        };
        Ok(Runs {
            src,
            dst,
            src_stride,
            dst_stride,
            len,
            next: 0,
            count,
        })
    }

    /// The byte spans of rows `[dst_row, dst_row + pad_rows)` of a tensor of the same shape
    /// with `dst_rows` rows on the split dim: the pad rows to zero in a device tensor.
    ///
    /// One span when `outer == 1` or the pad covers every row; otherwise `outer` spans. Fails
    /// when the range is out of the tensor or its size overflows `usize`.
    pub(crate) fn pad_runs(
        &self,
        dst_rows: usize,
        dst_row: usize,
        pad_rows: usize,
    ) -> Result<Spans, LayoutError> {
        check_rows(Side::Destination, dst_row, pad_rows, dst_rows)?;
        self.bytes_with_rows(dst_rows)?;
        let len = pad_rows * self.inner_bytes;
        let stride = dst_rows * self.inner_bytes;
        let (count, len) = if len == 0 || self.outer == 0 {
            (0, 0)
        } else if self.outer == 1 || len == stride {
            (1, self.outer * len)
        } else {
            (self.outer, len)
        };
        Ok(Spans {
            offset: dst_row * self.inner_bytes,
            stride,
            len,
            next: 0,
            count,
        })
    }

    /// The single byte range holding rows `[src_row, src_row + rows)` of this tensor, when
    /// they are contiguous (always for `outer == 1`, e.g. `dim == 0`; for `outer > 1` only
    /// when the range is every row or empty; an empty range is `0..0`). `None` when they are
    /// not contiguous or out of range.
    pub(crate) fn contiguous(&self, src_row: usize, rows: usize) -> Option<Range<usize>> {
        check_rows(Side::Source, src_row, rows, self.rows).ok()?;
        if rows == 0 || self.outer == 0 || self.inner_bytes == 0 {
            return Some(0..0);
        }
        if self.outer == 1 {
            let start = src_row * self.inner_bytes;
            return Some(start..start + rows * self.inner_bytes);
        }
        (rows == self.rows).then_some(0..self.total_bytes)
    }
}

/// `outer * rows * inner`, or `None` on overflow. `rows * inner` is checked on its own first,
/// so it fits even when `outer == 0`: row offsets and slab strides are computed from it.
fn slab_bytes(outer: usize, rows: usize, inner: usize) -> Option<usize> {
    rows.checked_mul(inner)?.checked_mul(outer)
}

/// Checks that rows `[start, start + rows)` lie within `0..available`.
fn check_rows(side: Side, start: usize, rows: usize, available: usize) -> Result<(), LayoutError> {
    match start.checked_add(rows) {
        Some(end) if end <= available => Ok(()),
        _ => Err(LayoutError::RowsOutOfRange {
            side,
            start,
            rows,
            available,
        }),
    }
}

/// Iterator over the [`Run`]s of one row range, made by [`Geometry::runs`].
#[derive(Debug, Clone)]
pub(crate) struct Runs {
    src: usize,
    dst: usize,
    src_stride: usize,
    dst_stride: usize,
    len: usize,
    next: usize,
    count: usize,
}

impl Iterator for Runs {
    type Item = Run;

    fn next(&mut self) -> Option<Run> {
        if self.next >= self.count {
            return None;
        }
        let o = self.next;
        self.next += 1;
        // o < outer, and the rows were checked against both tensors, so
        // o * stride + offset + len <= outer * rows * inner, which fits in usize.
        Some(Run {
            src: o * self.src_stride + self.src,
            dst: o * self.dst_stride + self.dst,
            len: self.len,
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.count - self.next;
        (left, Some(left))
    }
}

impl ExactSizeIterator for Runs {}

impl FusedIterator for Runs {}

/// Iterator over the pad [`Span`]s of a device tensor, made by [`Geometry::pad_runs`].
#[derive(Debug, Clone)]
pub(crate) struct Spans {
    offset: usize,
    stride: usize,
    len: usize,
    next: usize,
    count: usize,
}

impl Iterator for Spans {
    type Item = Span;

    fn next(&mut self) -> Option<Span> {
        if self.next >= self.count {
            return None;
        }
        let o = self.next;
        self.next += 1;
        // Same bound as for `Runs`: within the checked size of the device tensor.
        Some(Span {
            offset: o * self.stride + self.offset,
            len: self.len,
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.count - self.next;
        (left, Some(left))
    }
}

impl ExactSizeIterator for Spans {}

impl FusedIterator for Spans {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const GARBAGE: u8 = 0xEE;
    const UNTOUCHED: u8 = 0xFF;

    /// Row-major strides in elements.
    fn strides(shape: &[usize]) -> Vec<usize> {
        let mut strides = vec![1; shape.len()];
        for d in (0..shape.len().saturating_sub(1)).rev() {
            strides[d] = strides[d + 1] * shape[d + 1];
        }
        strides
    }

    /// Source bytes: byte j holds j % 251, so never GARBAGE or UNTOUCHED.
    fn source(shape: &[usize], elem: usize) -> Vec<u8> {
        let len = shape.iter().product::<usize>() * elem;
        (0..len).map(|j| (j % 251) as u8).collect()
    }

    /// Element-by-element reference: copy rows [s, s + c) on `dim` of `src` into rows
    /// [dst_row, dst_row + c) of `dst` (same shape, `b` rows on `dim`).
    fn naive_copy(
        shape: &[usize],
        dim: usize,
        elem: usize,
        src: &[u8],
        dst: &mut [u8],
        (s, c, b, dst_row): (usize, usize, usize, usize),
    ) {
        let mut dshape = shape.to_vec();
        dshape[dim] = b;
        let (sst, dst_st) = (strides(shape), strides(&dshape));
        let count: usize = shape.iter().product();
        for flat in 0..count {
            // Multi-index of element `flat` in the source.
            let idx: Vec<usize> = (0..shape.len()).map(|d| flat / sst[d] % shape[d]).collect();
            if idx[dim] < s || idx[dim] >= s + c {
                continue;
            }
            let mut didx = idx.clone();
            didx[dim] = idx[dim] - s + dst_row;
            let dflat: usize = didx.iter().zip(&dst_st).map(|(i, st)| i * st).sum();
            dst[dflat * elem..(dflat + 1) * elem].copy_from_slice(&src[flat * elem..][..elem]);
        }
    }

    /// Element-by-element reference for zeroing pad rows [from, from + pad) of a `b`-row
    /// tensor.
    fn naive_zero(
        shape: &[usize],
        dim: usize,
        elem: usize,
        dst: &mut [u8],
        b: usize,
        from: usize,
        pad: usize,
    ) {
        let mut dshape = shape.to_vec();
        dshape[dim] = b;
        let st = strides(&dshape);
        let count: usize = dshape.iter().product();
        for flat in 0..count {
            let r = flat / st[dim] % b;
            if r >= from && r < from + pad {
                dst[flat * elem..(flat + 1) * elem].fill(0);
            }
        }
    }

    fn runs_copy(
        g: &Geometry,
        src: &[u8],
        dst: &mut [u8],
        (s, c, b, dst_row): (usize, usize, usize, usize),
    ) {
        let runs = g.runs(s, c, b, dst_row).unwrap();
        let expected = runs.len();
        let mut seen = 0;
        let (mut last_src, mut last_dst) = (0, 0);
        for run in runs {
            assert!(run.len > 0);
            assert!(
                run.src + run.len <= src.len(),
                "{run:?} past source {}",
                src.len()
            );
            assert!(
                run.dst + run.len <= dst.len(),
                "{run:?} past destination {}",
                dst.len()
            );
            // Ascending and non-overlapping on both sides.
            assert!(run.src >= last_src && run.dst >= last_dst, "{run:?}");
            last_src = run.src + run.len;
            last_dst = run.dst + run.len;
            dst[run.dst..][..run.len].copy_from_slice(&src[run.src..][..run.len]);
            seen += 1;
        }
        assert_eq!(seen, expected);
        assert!(seen <= g.outer().max(1));
    }

    fn spans_zero(g: &Geometry, dst: &mut [u8], b: usize, from: usize, pad: usize) {
        let mut last = 0;
        for span in g.pad_runs(b, from, pad).unwrap() {
            assert!(span.len > 0);
            assert!(
                span.offset >= last && span.offset + span.len <= dst.len(),
                "{span:?}"
            );
            last = span.offset + span.len;
            dst[span.offset..][..span.len].fill(0);
        }
    }

    /// Checks one case against the naive reference: copy rows, then zero the rest.
    fn check_case(
        shape: &[usize],
        dim: usize,
        elem: usize,
        s: usize,
        c: usize,
        b: usize,
        dst_row: usize,
    ) {
        let g = Geometry::new(shape, dim, elem).unwrap();
        let src = source(shape, elem);
        assert_eq!(g.total_bytes(), src.len());
        let dlen = g.bytes_with_rows(b).unwrap();
        let case = (s, c, b, dst_row);

        let mut want = vec![UNTOUCHED; dlen];
        let mut got = vec![UNTOUCHED; dlen];
        naive_copy(shape, dim, elem, &src, &mut want, case);
        runs_copy(&g, &src, &mut got, case);
        assert_eq!(
            got, want,
            "copy shape={shape:?} dim={dim} elem={elem} case={case:?}"
        );

        // Pad the rows after the copied ones, as the worker does for the last piece.
        let (from, pad) = (dst_row + c, b - dst_row - c);
        naive_zero(shape, dim, elem, &mut want, b, from, pad);
        spans_zero(&g, &mut got, b, from, pad);
        assert_eq!(
            got, want,
            "pad shape={shape:?} dim={dim} elem={elem} case={case:?}"
        );

        // Gather direction: the same runs copy the device rows back into a fresh source.
        let mut back = vec![GARBAGE; src.len()];
        for run in g.runs(s, c, b, dst_row).unwrap() {
            back[run.src..][..run.len].copy_from_slice(&got[run.dst..][..run.len]);
        }
        for (j, (&x, &y)) in back.iter().zip(&src).enumerate() {
            let row = j / g.inner_bytes().max(1) % g.rows().max(1);
            if row >= s && row < s + c {
                assert_eq!(x, y, "gather byte {j}");
            } else {
                assert_eq!(x, GARBAGE, "gather wrote byte {j} outside the rows");
            }
        }

        if let Some(range) = g.contiguous(s, c) {
            assert_eq!(
                range.len(),
                c * g.inner_bytes() * if c == 0 { 0 } else { g.outer() }
            );
            let runs: Vec<Run> = g.runs(s, c, c, 0).unwrap().collect();
            if !range.is_empty() {
                assert_eq!(
                    runs,
                    [Run {
                        src: range.start,
                        dst: 0,
                        len: range.len()
                    }]
                );
            }
        } else {
            assert!(g.outer() > 1 && c > 0 && c < g.rows());
        }
    }

    #[test]
    fn exhaustive_small_shapes_match_naive_copy() {
        let mut shapes: Vec<Vec<usize>> = vec![vec![]];
        for rank in 1..=3 {
            let mut next = Vec::new();
            for shape in shapes.iter().filter(|s| s.len() == rank - 1) {
                for d in 0..=3 {
                    let mut s = shape.clone();
                    s.push(d);
                    next.push(s);
                }
            }
            shapes.extend(next);
        }
        let mut cases = 0;
        for shape in &shapes {
            for elem in [1, 2, 4] {
                for dim in 0..shape.len() {
                    let n = shape[dim];
                    for s in 0..=n {
                        for c in 0..=n - s {
                            for b in c..=c + 2 {
                                for dst_row in 0..=b - c {
                                    check_case(shape, dim, elem, s, c, b, dst_row);
                                    cases += 1;
                                }
                            }
                        }
                    }
                }
                assert_eq!(
                    Geometry::new(shape, shape.len(), elem),
                    Err(LayoutError::DimOutOfRange {
                        dim: shape.len(),
                        rank: shape.len()
                    })
                );
            }
        }
        assert!(cases > 10_000, "{cases}");
    }

    #[test]
    fn merging() {
        // dim 0: one run whatever the rows.
        let g = Geometry::new(&[10, 3, 2], 0, 4).unwrap();
        assert_eq!((g.outer(), g.rows(), g.inner_bytes()), (1, 10, 24));
        let runs: Vec<_> = g.runs(3, 2, 4, 1).unwrap().collect();
        assert_eq!(
            runs,
            [Run {
                src: 72,
                dst: 24,
                len: 48
            }]
        );
        // dim 1, part of the rows: one run per outer slab.
        let g = Geometry::new(&[2, 5, 3], 1, 1).unwrap();
        let runs: Vec<_> = g.runs(1, 2, 2, 0).unwrap().collect();
        assert_eq!(
            runs,
            [
                Run {
                    src: 3,
                    dst: 0,
                    len: 6
                },
                Run {
                    src: 18,
                    dst: 6,
                    len: 6
                }
            ]
        );
        // dim 1, every row into a tensor of the same rows: one run.
        let runs: Vec<_> = g.runs(0, 5, 5, 0).unwrap().collect();
        assert_eq!(
            runs,
            [Run {
                src: 0,
                dst: 0,
                len: 30
            }]
        );
        // Pads: per slab, or one span when the pad is every row.
        let spans: Vec<_> = g.pad_runs(4, 2, 2).unwrap().collect();
        assert_eq!(
            spans,
            [Span { offset: 6, len: 6 }, Span { offset: 18, len: 6 }]
        );
        let spans: Vec<_> = g.pad_runs(4, 0, 4).unwrap().collect();
        assert_eq!(spans, [Span { offset: 0, len: 24 }]);
        assert_eq!(g.pad_runs(4, 4, 0).unwrap().count(), 0);
        assert_eq!(g.contiguous(1, 2), None);
        assert_eq!(g.contiguous(0, 5), Some(0..30));
    }

    #[test]
    fn errors_not_panics() {
        let big = usize::MAX;
        assert_eq!(
            Geometry::new(&[], 0, 4),
            Err(LayoutError::DimOutOfRange { dim: 0, rank: 0 })
        );
        assert!(
            Geometry::new(&[], 0, 4)
                .unwrap_err()
                .to_string()
                .contains("scalar")
        );
        let err = Geometry::new(&[2, 3], 2, 4).unwrap_err();
        assert_eq!(
            err.to_string(),
            "split dim 2 is out of range for a tensor of rank 2; use a dim in 0..2"
        );
        assert_eq!(Geometry::new(&[2], 0, 0), Err(LayoutError::ZeroElementSize));
        assert!(matches!(
            Geometry::new(&[big, 2], 0, 1),
            Err(LayoutError::TooLarge { .. })
        ));
        assert!(matches!(
            Geometry::new(&[2, big], 0, 1),
            Err(LayoutError::TooLarge { .. })
        ));
        assert!(matches!(
            Geometry::new(&[2], 0, big),
            Err(LayoutError::TooLarge { .. })
        ));
        assert!(matches!(
            Geometry::new(&[big, big, 0], 2, 1),
            Err(LayoutError::TooLarge { .. })
        ));
        assert!(Geometry::new(&[big], 0, 1).is_ok());
        // A zero dim does not excuse an overflowing row: offsets are computed from n * inner.
        assert!(matches!(
            Geometry::new(&[0, big, 2], 1, 1),
            Err(LayoutError::TooLarge { .. })
        ));
        let empty = Geometry::new(&[0, 5, 3], 1, 4).unwrap();
        assert_eq!(empty.total_bytes(), 0);
        assert_eq!(empty.runs(1, 3, 4, 1).unwrap().count(), 0);
        assert_eq!(empty.pad_runs(4, 1, 3).unwrap().count(), 0);
        assert_eq!(empty.contiguous(2, 3), Some(0..0));

        let g = Geometry::new(&[4, 8], 1, 2).unwrap();
        assert!(matches!(
            g.bytes_with_rows(big),
            Err(LayoutError::TooLarge { .. })
        ));
        assert!(matches!(
            g.runs(0, 1, big, 0),
            Err(LayoutError::TooLarge { .. })
        ));
        assert!(matches!(
            g.pad_runs(big, 0, 1),
            Err(LayoutError::TooLarge { .. })
        ));
        let oob = |r: Result<Runs, LayoutError>| match r {
            Err(LayoutError::RowsOutOfRange { side, .. }) => side,
            other => panic!("{other:?}"),
        };
        assert_eq!(oob(g.runs(big, 2, 4, 0)), Side::Source);
        assert_eq!(oob(g.runs(7, 2, 4, 0)), Side::Source);
        assert_eq!(oob(g.runs(0, 2, 4, 3)), Side::Destination);
        assert_eq!(oob(g.runs(0, 2, 4, big)), Side::Destination);
        assert!(g.pad_runs(4, 3, 2).is_err());
        assert!(g.pad_runs(4, big, 2).is_err());
        assert_eq!(g.contiguous(big, 2), None);
        let msg = g.runs(7, 2, 4, 0).unwrap_err().to_string();
        assert!(
            msg.contains("2 rows starting at row 7") && msg.contains("source"),
            "{msg}"
        );
    }

    fn any_shape() -> impl Strategy<Value = (Vec<usize>, usize)> {
        proptest::collection::vec(0usize..5, 1..=5).prop_flat_map(|shape| {
            let rank = shape.len();
            (Just(shape), 0..rank)
        })
    }

    proptest! {
        #[test]
        fn random_shapes_match_naive_copy(
            (shape, dim) in any_shape(),
            elem in prop::sample::select(vec![1usize, 2, 4, 8]),
            a in 0usize..100, c in 0usize..100, extra in 0usize..4, d in 0usize..100,
        ) {
            let n = shape[dim];
            let s = a % (n + 1);
            let c = c % (n - s + 1);
            let b = c + extra;
            let dst_row = d % (b - c + 1);
            check_case(&shape, dim, elem, s, c, b, dst_row);
        }

        #[test]
        fn runs_stay_in_bounds_for_any_input(
            shape in proptest::collection::vec(prop_oneof![0usize..6, any::<usize>()], 0..4),
            dim in 0usize..4, elem in prop_oneof![1usize..9, any::<usize>()],
            src_row in any::<usize>(), rows in any::<usize>(),
            dst_rows in any::<usize>(), dst_row in any::<usize>(),
        ) {
            let Ok(g) = Geometry::new(&shape, dim, elem) else { return Ok(()) };
            let small = |v: usize| if v % 2 == 0 { v % (g.rows() + 2) } else { v };
            let (src_row, rows, dst_rows, dst_row) =
                (small(src_row), small(rows), small(dst_rows), small(dst_row));
            if let Ok(runs) = g.runs(src_row, rows, dst_rows, dst_row) {
                let dlen = g.bytes_with_rows(dst_rows).unwrap();
                for run in runs.take(3) {
                    prop_assert!(run.src.checked_add(run.len).is_some_and(|e| e <= g.total_bytes()));
                    prop_assert!(run.dst.checked_add(run.len).is_some_and(|e| e <= dlen));
                }
            }
            if let Ok(spans) = g.pad_runs(dst_rows, dst_row, rows) {
                let dlen = g.bytes_with_rows(dst_rows).unwrap();
                for span in spans.take(3) {
                    prop_assert!(span.offset.checked_add(span.len).is_some_and(|e| e <= dlen));
                }
            }
            if let Some(range) = g.contiguous(src_row, rows) {
                prop_assert!(range.end <= g.total_bytes());
            }
        }
    }
}
