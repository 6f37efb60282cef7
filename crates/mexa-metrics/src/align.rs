//! Alignment of one language to the pivot at one layer.
//!
//! With `C[i][j] = cos(pivot_i, lang_j)` over the first `n = min(n_pivot, n_lang)` sentences:
//!
//! - **MEXA μ** (Kargaran et al. 2024): the share of `i` with `C[i][i] > C[i][j]` and
//!   `C[i][i] > C[j][i]` for every `j ≠ i`. Strict: a tie is a miss.
//! - **P@1 pivot→lang**: share of `i` with `C[i][i] > C[i][j]` for all `j ≠ i` (row);
//!   **P@1 lang→pivot**: `C[i][i] > C[j][i]` for all `j ≠ i` (column). Strict as μ.
//! - **mean cosine** of the parallel pairs, `mean_i C[i][i]`.
//! - **margin accuracy** (xsim, LASER's ratio margin with k nearest neighbours, lang→pivot):
//!   `margin(x, y) = cos(x, y) / (Σ_{z∈NN_k(x)} cos(x,z)/2k + Σ_{z∈NN_k(y)} cos(y,z)/2k)`;
//!   the share of language sentences whose margin-best pivot sentence is the parallel one.
use rayon::prelude::*;

/// A dense row-major matrix of f32 (one embedding per row).
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f32>,
}

impl Matrix {
    pub fn new(rows: usize, cols: usize, data: Vec<f32>) -> Self {
        assert_eq!(data.len(), rows * cols, "matrix data length");
        Self { rows, cols, data }
    }
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }
    /// The first `n` rows.
    pub fn head(&self, n: usize) -> Matrix {
        Matrix::new(n, self.cols, self.data[..n * self.cols].to_vec())
    }
    /// Rows scaled to unit L2 norm (a zero row stays zero), in f64 for exact comparisons.
    fn normalized(&self) -> Vec<f64> {
        let mut out = vec![0f64; self.data.len()];
        out.par_chunks_mut(self.cols.max(1)).enumerate().for_each(|(i, o)| {
            let r = self.row(i);
            let norm = r.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>().sqrt();
            if norm > 0.0 {
                for (o, &v) in o.iter_mut().zip(r) {
                    *o = v as f64 / norm;
                }
            }
        });
        out
    }
}

/// All scores for one (language, layer).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Alignment {
    /// Number of sentence pairs used.
    pub n: usize,
    pub mexa: f64,
    pub p1_pivot_to_lang: f64,
    pub p1_lang_to_pivot: f64,
    pub mean_cosine: f64,
    pub margin_acc: f64,
}

/// Cosine matrix `C[i][j] = cos(a_i, b_j)` for the first `n` rows of each.
pub fn cosine_matrix(a: &Matrix, b: &Matrix, n: usize) -> Vec<f64> {
    assert_eq!(a.cols, b.cols, "embedding widths differ");
    let (na, nb) = (a.head(n).normalized(), b.head(n).normalized());
    let d = a.cols;
    let mut c = vec![0f64; n * n];
    c.par_chunks_mut(n.max(1)).enumerate().for_each(|(i, row)| {
        let x = &na[i * d..(i + 1) * d];
        for (j, out) in row.iter_mut().enumerate() {
            let y = &nb[j * d..(j + 1) * d];
            *out = dot(x, y);
        }
    });
    c
}

#[inline]
fn dot(x: &[f64], y: &[f64]) -> f64 {
    // Four accumulators let the compiler vectorise; the order is fixed, so results are
    // reproducible run to run.
    let mut acc = [0f64; 4];
    let chunks = x.len() / 4;
    for k in 0..chunks {
        for l in 0..4 {
            acc[l] += x[4 * k + l] * y[4 * k + l];
        }
    }
    let mut s = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    for k in 4 * chunks..x.len() {
        s += x[k] * y[k];
    }
    s
}

/// Scores a language against the pivot. `pivot` and `lang` hold one embedding per sentence,
/// line-parallel; `k` is the margin's neighbourhood size (LASER uses 4).
pub fn align(pivot: &Matrix, lang: &Matrix, k: usize) -> Alignment {
    let n = pivot.rows.min(lang.rows);
    if n == 0 {
        return Alignment { n: 0, mexa: 0.0, p1_pivot_to_lang: 0.0, p1_lang_to_pivot: 0.0, mean_cosine: 0.0, margin_acc: 0.0 };
    }
    let c = cosine_matrix(pivot, lang, n);
    scores_from_cosines(&c, n, k)
}

/// The scores, given the cosine matrix.
pub fn scores_from_cosines(c: &[f64], n: usize, k: usize) -> Alignment {
    let at = |i: usize, j: usize| c[i * n + j];
    // Off-diagonal maxima of every row and column.
    let mut row_max = vec![f64::NEG_INFINITY; n];
    let mut col_max = vec![f64::NEG_INFINITY; n];
    for i in 0..n {
        for j in 0..n {
            if i != j {
                let v = at(i, j);
                if v > row_max[i] {
                    row_max[i] = v;
                }
                if v > col_max[j] {
                    col_max[j] = v;
                }
            }
        }
    }
    let (mut mexa, mut p_row, mut p_col, mut diag) = (0usize, 0usize, 0usize, 0f64);
    for i in 0..n {
        let d = at(i, i);
        diag += d;
        let r = d > row_max[i];
        let col = d > col_max[i];
        p_row += r as usize;
        p_col += col as usize;
        mexa += (r && col) as usize;
    }
    let nf = n as f64;
    Alignment {
        n,
        mexa: mexa as f64 / nf,
        p1_pivot_to_lang: p_row as f64 / nf,
        p1_lang_to_pivot: p_col as f64 / nf,
        mean_cosine: diag / nf,
        margin_acc: margin_accuracy(c, n, k),
    }
}

/// Mean of the `k` largest values of `it`.
fn top_k_mean(it: impl Iterator<Item = f64>, k: usize) -> f64 {
    let mut v: Vec<f64> = it.collect();
    let k = k.min(v.len()).max(1);
    v.sort_by(|a, b| b.total_cmp(a));
    v[..k].iter().sum::<f64>() / k as f64
}

fn margin_accuracy(c: &[f64], n: usize, k: usize) -> f64 {
    if n < 2 {
        return if n == 1 { 1.0 } else { 0.0 };
    }
    let at = |i: usize, j: usize| c[i * n + j];
    // Pivot sentence i's neighbours are the language sentences (row i); language sentence j's
    // neighbours are the pivot sentences (column j).
    let pivot_nn: Vec<f64> = (0..n).map(|i| top_k_mean((0..n).map(|j| at(i, j)), k)).collect();
    let lang_nn: Vec<f64> = (0..n).map(|j| top_k_mean((0..n).map(|i| at(i, j)), k)).collect();
    let mut hits = 0;
    for j in 0..n {
        let margin = |i: usize| at(i, j) / ((pivot_nn[i] + lang_nn[j]) / 2.0);
        let gold = margin(j);
        if (0..n).all(|i| i == j || gold > margin(i)) {
            hits += 1;
        }
    }
    hits as f64 / n as f64
}

/// Cosine of two vectors computed from scratch (norms included), in f64.
fn cosine_pair(x: &[f32], y: &[f32]) -> f64 {
    let (mut xy, mut xx, mut yy) = (0f64, 0f64, 0f64);
    for (&a, &b) in x.iter().zip(y) {
        xy += a as f64 * b as f64;
        xx += a as f64 * a as f64;
        yy += b as f64 * b as f64;
    }
    if xx == 0.0 || yy == 0.0 { 0.0 } else { xy / (xx.sqrt() * yy.sqrt()) }
}

/// A straightforward implementation, as one would first write it: a single-threaded double
/// loop computing every cosine with its norms, then the row and column checks. The baseline
/// of `mexa bench align`.
pub fn align_loop(pivot: &Matrix, lang: &Matrix) -> (usize, f64) {
    let n = pivot.rows.min(lang.rows);
    let mut c = vec![0f64; n * n];
    for i in 0..n {
        for j in 0..n {
            c[i * n + j] = cosine_pair(pivot.row(i), lang.row(j));
        }
    }
    let hits = (0..n).filter(|&i| (0..n).all(|j| j == i || (c[i * n + i] > c[i * n + j] && c[i * n + i] > c[j * n + i]))).count();
    (n, if n == 0 { 0.0 } else { hits as f64 / n as f64 })
}

/// The definition written out directly, one pair at a time: the baseline for benchmarks and
/// the oracle for tests. Computes every cosine from scratch.
pub fn align_naive(pivot: &Matrix, lang: &Matrix) -> (usize, f64) {
    let n = pivot.rows.min(lang.rows);
    let cos = |i: usize, j: usize| cosine_pair(pivot.row(i), lang.row(j));
    let mut hits = 0;
    for i in 0..n {
        let d = cos(i, i);
        if (0..n).all(|j| j == i || (d > cos(i, j) && d > cos(j, i))) {
            hits += 1;
        }
    }
    (n, if n == 0 { 0.0 } else { hits as f64 / n as f64 })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(rows: &[&[f32]]) -> Matrix {
        Matrix::new(rows.len(), rows[0].len(), rows.iter().flat_map(|r| r.iter().copied()).collect())
    }

    /// Deterministic pseudo-random matrix.
    fn rand_matrix(rows: usize, cols: usize, seed: u64) -> Matrix {
        let mut s = seed;
        let data = (0..rows * cols)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s % 2000) as f32 / 1000.0) - 1.0
            })
            .collect();
        Matrix::new(rows, cols, data)
    }

    #[test]
    fn identical_embeddings_align_perfectly() {
        let a = rand_matrix(30, 16, 7);
        let r = align(&a, &a, 4);
        assert_eq!(r.n, 30);
        assert_eq!(r.mexa, 1.0);
        assert_eq!(r.p1_lang_to_pivot, 1.0);
        assert!((r.mean_cosine - 1.0).abs() < 1e-12);
        assert_eq!(r.margin_acc, 1.0);
    }

    #[test]
    fn a_tie_is_a_miss() {
        // Sentences 0 and 1 of the language are the same vector: C[0][0] == C[0][1].
        let pivot = m(&[&[1.0, 0.0], &[0.0, 1.0]]);
        let lang = m(&[&[1.0, 1.0], &[1.0, 1.0]]);
        let r = align(&pivot, &lang, 1);
        assert_eq!(r.mexa, 0.0);
        assert_eq!(align_naive(&pivot, &lang), (2, 0.0));
    }

    #[test]
    fn both_row_and_column_must_win() {
        // Pivot 0 prefers lang 0 (row), but lang 0 prefers pivot 1 (column): a miss for μ,
        // a hit for P@1 pivot→lang.
        let pivot = m(&[&[1.0, 0.0], &[0.9, 0.1]]);
        let lang = m(&[&[1.0, 0.2], &[0.0, 1.0]]);
        let r = align(&pivot, &lang, 1);
        let c = cosine_matrix(&pivot, &lang, 2);
        assert!(c[0] > c[1] && c[2] > c[0]);
        // Row 0 is a hit, row 1 (pivot 1 prefers lang 0) a miss; no sentence wins both ways.
        assert_eq!(r.p1_pivot_to_lang, 0.5);
        assert_eq!(r.mexa, 0.0);
        assert_eq!(r.mexa, align_naive(&pivot, &lang).1);
    }

    #[test]
    fn unequal_counts_use_the_smaller() {
        let pivot = rand_matrix(40, 8, 1);
        let lang = rand_matrix(25, 8, 2);
        let r = align(&pivot, &lang, 4);
        assert_eq!(r.n, 25);
        assert_eq!((r.n, r.mexa), align_naive(&pivot, &lang));
    }

    #[test]
    fn matches_the_naive_definition_on_noisy_pairs() {
        for seed in 0..20u64 {
            let pivot = rand_matrix(50, 12, seed + 100);
            let noise = rand_matrix(50, 12, seed + 200);
            let scale = (seed as f32) / 10.0;
            let lang = Matrix::new(50, 12, pivot.data.iter().zip(&noise.data).map(|(a, b)| a + scale * b).collect());
            let r = align(&pivot, &lang, 4);
            let (n, mu) = align_naive(&pivot, &lang);
            assert_eq!(r.n, n);
            assert_eq!(r.mexa, mu, "seed {seed}");
            assert_eq!(align_loop(&pivot, &lang), (n, mu));
            assert!(r.mexa <= r.p1_pivot_to_lang.min(r.p1_lang_to_pivot));
        }
    }
}
