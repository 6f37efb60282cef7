//! `C = A·Bᵀ` in f64, the product behind every cosine matrix and Gram of `align`: row
//! tiles in parallel, cache blocks of `B`, AVX2 fused multiply-adds where the CPU has them,
//! and the same bits on every path.
use rayon::prelude::*;

/// Rows of `C` per parallel task, and rows of `B` per cache block: a task walks `B` block by
/// block, running all of its rows of `A` against a block while the block sits in cache.
const TASK_ROWS: usize = 8;
const BLOCK_COLS: usize = 32;

/// `C = A·Bᵀ` for row-major `A` and `B` of `n` rows and `d` columns.
///
/// Invariant: every entry is exactly [`dot`] of its two rows, whichever path computes it (the
/// AVX2 tiles, the tile edges, or the portable code), so results do not depend on the CPU's
/// instruction set, the thread count or `n`'s remainder modulo the tile size.
pub(crate) fn gram_into(a: &[f64], b: &[f64], n: usize, d: usize, c: &mut Vec<f64>) {
    c.clear();
    c.resize(n * n, 0.0);
    c.par_chunks_mut((TASK_ROWS * n).max(1)).enumerate().for_each(|(t, out)| {
        let i0 = TASK_ROWS * t;
        let rows = out.len() / n.max(1);
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has the features the function is compiled for.
            unsafe { gram_rows_avx2(a, b, n, d, i0, rows, out) };
            return;
        }
        gram_rows(a, b, n, d, i0, rows, out);
    });
}

/// Rows `i0..i0 + rows` of `A·Bᵀ` into `out`, with 2 × 4 tiles written in AVX2 + FMA
/// intrinsics: eight accumulators of four lanes, six loads per eight fused multiply-adds. Lane
/// `l` of each accumulator is lane `l` of [`dot`], so the results are bit-identical to the
/// portable code; what the tiles do not cover (an odd last row, the last `n mod 4` columns)
/// goes through [`dot`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn gram_rows_avx2(a: &[f64], b: &[f64], n: usize, d: usize, i0: usize, rows: usize, out: &mut [f64]) {
    use std::arch::x86_64::*;
    assert!(a.len() >= (i0 + rows) * d && b.len() >= n * d && out.len() >= rows * n);
    let (chunks, pairs, n4) = (d / 4, rows / 2, n - n % 4);
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    for jb in (0..n4).step_by(BLOCK_COLS) {
        for pr in 0..pairs {
            let (x0, x1) = (pa.add((i0 + 2 * pr) * d), pa.add((i0 + 2 * pr + 1) * d));
            for j0 in (jb..(jb + BLOCK_COLS).min(n4)).step_by(4) {
                let y: [*const f64; 4] = std::array::from_fn(|c| pb.add((j0 + c) * d));
                let mut acc = [[_mm256_setzero_pd(); 4]; 2];
                for k in 0..chunks {
                    let o = 4 * k;
                    let (u, v) = (_mm256_loadu_pd(x0.add(o)), _mm256_loadu_pd(x1.add(o)));
                    for c in 0..4 {
                        let w = _mm256_loadu_pd(y[c].add(o));
                        acc[0][c] = _mm256_fmadd_pd(u, w, acc[0][c]);
                        acc[1][c] = _mm256_fmadd_pd(v, w, acc[1][c]);
                    }
                }
                for r in 0..2 {
                    let row = 2 * pr + r;
                    let x = &a[(i0 + row) * d..(i0 + row + 1) * d];
                    for c in 0..4 {
                        let mut lanes = [0f64; 4];
                        _mm256_storeu_pd(lanes.as_mut_ptr(), acc[r][c]);
                        out[row * n + j0 + c] = finish_dot(lanes, x, &b[(j0 + c) * d..(j0 + c + 1) * d], 4 * chunks);
                    }
                }
            }
        }
    }
    // The edges: the last n mod 4 columns of the paired rows, and all of an odd last row.
    dot_rows(a, b, n, d, i0, rows, out, |r| if r < 2 * pairs { n4 } else { 0 });
}

/// Rows `i0..i0 + rows` of `A·Bᵀ` into `out`, the portable way: one [`dot`] per entry.
pub(crate) fn gram_rows(a: &[f64], b: &[f64], n: usize, d: usize, i0: usize, rows: usize, out: &mut [f64]) {
    dot_rows(a, b, n, d, i0, rows, out, |_| 0);
}

/// Entries `from(r)..n` of rows `i0 + r` of `A·Bᵀ`, one [`dot`] each. Inlined, so inside
/// [`gram_rows_avx2`] the dot products use the hardware's fused multiply-add.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn dot_rows(
    a: &[f64],
    b: &[f64],
    n: usize,
    d: usize,
    i0: usize,
    rows: usize,
    out: &mut [f64],
    from: impl Fn(usize) -> usize,
) {
    for r in 0..rows {
        let x = &a[(i0 + r) * d..(i0 + r + 1) * d];
        for j in from(r)..n {
            out[r * n + j] = dot(x, &b[j * d..(j + 1) * d]);
        }
    }
}

/// The dot product every entry of [`gram_into`] is: four lanes (lane `l` takes the elements
/// `4k + l`) of fused multiply-adds, summed as `(l0 + l1) + (l2 + l3)`, then the tail.
#[inline(always)]
pub(crate) fn dot(x: &[f64], y: &[f64]) -> f64 {
    let mut acc = [0f64; 4];
    for (p, q) in x.chunks_exact(4).zip(y.chunks_exact(4)) {
        for l in 0..4 {
            acc[l] = p[l].mul_add(q[l], acc[l]);
        }
    }
    finish_dot(acc, x, y, x.len() / 4 * 4)
}

#[inline(always)]
fn finish_dot(acc: [f64; 4], x: &[f64], y: &[f64], tail: usize) -> f64 {
    let mut s = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    for k in tail..x.len() {
        s = x[k].mul_add(y[k], s);
    }
    s
}
