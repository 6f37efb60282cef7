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
//! - **linear CKA** (Kornblith et al. 2019) of the two sets of embeddings: with `X`, `Y` the
//!   column-centred first `n` rows, `K = XXᵀ`, `L = YYᵀ`,
//!   `CKA = ⟨K, L⟩_F / (‖K‖_F ‖L‖_F)` (equal to `‖YᵀX‖²_F / (‖XᵀX‖_F ‖YᵀY‖_F)`); 0 when
//!   either set has no variance. Unlike the others it compares the two geometries as wholes,
//!   not sentence by sentence.
//!
//! [`Matrix::centered`] removes a language's mean embedding first (the `centering` option of
//! `align`), the usual fix for anisotropy: every score above is then computed on the centred
//! vectors.
use crate::gram::gram_into;
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
    /// The matrix with each column's mean (over all rows, in f64) subtracted.
    pub fn centered(&self) -> Matrix {
        let (r, d) = (self.rows, self.cols);
        let mut mean = vec![0f64; d];
        for i in 0..r {
            for (m, &v) in mean.iter_mut().zip(self.row(i)) {
                *m += v as f64;
            }
        }
        mean.iter_mut().for_each(|m| *m /= r.max(1) as f64);
        let data = (0..r).flat_map(|i| self.row(i).iter().zip(&mean).map(|(&v, m)| (v as f64 - m) as f32)).collect();
        Matrix::new(r, d, data)
    }

    /// The Gram matrix `XXᵀ` of the first `n` rows with their column means removed (in f64),
    /// scaled to unit Frobenius norm (all zeros when it has none): one side of [`linear_cka`].
    pub fn unit_centred_gram(&self, n: usize) -> Vec<f64> {
        let d = self.cols;
        let mut x: Vec<f64> = self.data[..n * d].iter().map(|&v| v as f64).collect();
        for j in 0..d {
            let mean = (0..n).map(|i| x[i * d + j]).sum::<f64>() / n.max(1) as f64;
            (0..n).for_each(|i| x[i * d + j] -= mean);
        }
        let mut k = Vec::new();
        gram_into(&x, &x, n, d, &mut k);
        let norm = k.iter().map(|v| v * v).sum::<f64>().sqrt();
        if norm > 0.0 {
            k.iter_mut().for_each(|v| *v /= norm);
        }
        k
    }

    /// The first `n` rows scaled to unit L2 norm (a zero row stays zero), in f64 for exact
    /// comparisons, into `out`.
    fn normalized_into(&self, n: usize, out: &mut Vec<f64>) {
        let d = self.cols;
        out.clear();
        out.extend(self.data[..n * d].iter().map(|&v| v as f64));
        for row in out.chunks_exact_mut(d.max(1)) {
            // Plain multiply and add (deterministic on every CPU): outside a function compiled
            // for FMA, `mul_add` is a libm call per element.
            let mut acc = [0f64; 4];
            for q in row.chunks_exact(4) {
                for l in 0..4 {
                    acc[l] += q[l] * q[l];
                }
            }
            let tail: f64 = row.chunks_exact(4).remainder().iter().map(|v| v * v).sum();
            let norm = ((acc[0] + acc[1]) + (acc[2] + acc[3]) + tail).sqrt();
            if norm > 0.0 {
                let inv = 1.0 / norm;
                row.iter_mut().for_each(|v| *v *= inv);
            }
        }
    }
}

/// Buffers one alignment needs, kept per thread and reused: a fresh allocation of a few
/// hundred kilobytes costs more in page faults than the whole n = 100 product.
#[derive(Default)]
struct Scratch {
    na: Vec<f64>,
    nb: Vec<f64>,
    c: Vec<f64>,
}

impl Scratch {
    /// `self.c` = the cosine matrix of the first `n` rows of `a` and `b`.
    fn cosines(&mut self, a: &Matrix, b: &Matrix, n: usize) {
        assert_eq!(a.cols, b.cols, "embedding widths differ");
        a.normalized_into(n, &mut self.na);
        b.normalized_into(n, &mut self.nb);
        gram_into(&self.na, &self.nb, n, a.cols, &mut self.c);
    }
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
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
    /// Linear CKA of the two sets (see the module documentation).
    pub cka: f64,
}

/// Linear CKA of the first `n` rows of `a` and `b`.
pub fn linear_cka(a: &Matrix, b: &Matrix, n: usize) -> f64 {
    cka_of(&a.unit_centred_gram(n), &b.unit_centred_gram(n))
}

/// CKA from two unit centred Grams: their Frobenius inner product (symmetric in its
/// arguments to the last bit: the same products summed in the same order).
fn cka_of(ka: &[f64], kb: &[f64]) -> f64 {
    ka.iter().zip(kb).map(|(x, y)| x * y).sum()
}

/// Cosine matrix `C[i][j] = cos(a_i, b_j)` for the first `n` rows of each: the product of the
/// row-normalised matrices, `Â·B̂ᵀ`, in f64.
pub fn cosine_matrix(a: &Matrix, b: &Matrix, n: usize) -> Vec<f64> {
    let mut s = Scratch::default();
    s.cosines(a, b, n);
    s.c
}

/// Scores a language against the pivot. `pivot` and `lang` hold one embedding per sentence,
/// line-parallel; `k` is the margin's neighbourhood size (LASER uses 4).
pub fn align(pivot: &Matrix, lang: &Matrix, k: usize) -> Alignment {
    align_with_gram(pivot, None, lang, k)
}

/// [`align`] with the pivot's unit centred Gram already computed (`pivot.unit_centred_gram(n)`
/// at the pair's `n = min(rows)`), as a caller scoring many languages against one pivot keeps
/// it: the same bits, one n × n × d product fewer per pair.
pub fn align_with_gram(pivot: &Matrix, pivot_gram: Option<&[f64]>, lang: &Matrix, k: usize) -> Alignment {
    let n = pivot.rows.min(lang.rows);
    if n == 0 {
        return Alignment {
            n: 0,
            mexa: 0.0,
            p1_pivot_to_lang: 0.0,
            p1_lang_to_pivot: 0.0,
            mean_cosine: 0.0,
            margin_acc: 0.0,
            cka: 0.0,
        };
    }
    let cka = match pivot_gram {
        Some(g) if g.len() == n * n => cka_of(g, &lang.unit_centred_gram(n)),
        _ => linear_cka(pivot, lang, n),
    };
    SCRATCH.with_borrow_mut(|s| {
        s.cosines(pivot, lang, n);
        Alignment { cka, ..scores_from_cosines(&s.c, n, k) }
    })
}

/// Every ordered pair of `mats` (each language against each other as pivot): `(pivot, lang,
/// scores)` for all `i ≠ j`, equal to `align(mats[i], mats[j], k)`. Each unordered pair's
/// cosine matrix is computed once and read both ways (the transpose is the same products),
/// in parallel over pairs.
pub fn align_pairs(mats: &[&Matrix], k: usize) -> Vec<(usize, usize, Alignment)> {
    let pairs: Vec<(usize, usize)> = (0..mats.len()).flat_map(|i| (i + 1..mats.len()).map(move |j| (i, j))).collect();
    // Each language's centred Gram once (at its full row count; a pair of unequal counts
    // computes its own at the smaller one).
    let grams: Vec<Vec<f64>> = mats.par_iter().map(|m| m.unit_centred_gram(m.rows)).collect();
    pairs
        .par_iter()
        .flat_map_iter(|&(i, j)| {
            let n = mats[i].rows.min(mats[j].rows);
            if n == 0 {
                return vec![(i, j, align(mats[i], mats[j], k)), (j, i, align(mats[j], mats[i], k))];
            }
            let cka = if mats[i].rows == n && mats[j].rows == n {
                cka_of(&grams[i], &grams[j])
            } else {
                linear_cka(mats[i], mats[j], n)
            };
            let c = cosine_matrix(mats[i], mats[j], n);
            let mut t = vec![0.0; n * n];
            for r in 0..n {
                for q in 0..n {
                    t[q * n + r] = c[r * n + q];
                }
            }
            vec![
                (i, j, Alignment { cka, ..scores_from_cosines(&c, n, k) }),
                (j, i, Alignment { cka, ..scores_from_cosines(&t, n, k) }),
            ]
        })
        .collect()
}

/// One parallel pair `i` of a cosine matrix, sentence by sentence: whether `C[i][i]` beats every
/// other entry of its row (P@1 pivot → language), of its column (language → pivot), and both
/// (μ's hit); its cosine, and the mean of its row's other cosines (how close the pivot
/// sentence is to the language's non-parallel sentences on average: high under anisotropy);
/// and what each side retrieves: the language sentence nearest the pivot sentence (`i` when
/// the row is won, else the row's largest other entry) and the pivot sentence nearest the
/// language sentence (likewise by column), so a miss says what it was mistaken for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PairOutcome {
    pub row: bool,
    pub col: bool,
    pub cosine: f64,
    pub other_cosine: f64,
    pub pivot_retrieves: u32,
    pub language_retrieves: u32,
}

impl PairOutcome {
    /// The pair counts towards μ: it wins its row and its column.
    pub fn mexa(&self) -> bool {
        self.row && self.col
    }
}

/// Every parallel pair's outcome in the n × n cosine matrix `c` (row-major); μ and the P@1s
/// of [`scores_from_cosines`] are the shares of these hits.
pub fn pair_outcomes(c: &[f64], n: usize) -> Vec<PairOutcome> {
    let at = |i: usize, j: usize| c[i * n + j];
    // Off-diagonal maxima of every row and column, and the rows' off-diagonal sums.
    // (value, first index) of each: ties keep the lowest index.
    let mut row_max = vec![(f64::NEG_INFINITY, 0u32); n];
    let mut col_max = vec![(f64::NEG_INFINITY, 0u32); n];
    let mut row_sum = vec![0f64; n];
    for i in 0..n {
        for j in 0..n {
            if i != j {
                let v = at(i, j);
                row_sum[i] += v;
                if v > row_max[i].0 {
                    row_max[i] = (v, j as u32);
                }
                if v > col_max[j].0 {
                    col_max[j] = (v, i as u32);
                }
            }
        }
    }
    let others = n.saturating_sub(1).max(1) as f64;
    (0..n)
        .map(|i| {
            let d = at(i, i);
            let (row, col) = (d > row_max[i].0, d > col_max[i].0);
            PairOutcome {
                row,
                col,
                cosine: d,
                other_cosine: row_sum[i] / others,
                pivot_retrieves: if row { i as u32 } else { row_max[i].1 },
                language_retrieves: if col { i as u32 } else { col_max[i].1 },
            }
        })
        .collect()
}

/// The scores that follow from the cosine matrix (all but `cka`, left NaN: it needs the
/// embeddings).
pub fn scores_from_cosines(c: &[f64], n: usize, k: usize) -> Alignment {
    let (mut mexa, mut p_row, mut p_col, mut diag) = (0usize, 0usize, 0usize, 0f64);
    for o in pair_outcomes(c, n) {
        diag += o.cosine;
        p_row += o.row as usize;
        p_col += o.col as usize;
        mexa += o.mexa() as usize;
    }
    let nf = n as f64;
    Alignment {
        n,
        mexa: mexa as f64 / nf,
        p1_pivot_to_lang: p_row as f64 / nf,
        p1_lang_to_pivot: p_col as f64 / nf,
        mean_cosine: diag / nf,
        margin_acc: margin_accuracy(c, n, k),
        cka: f64::NAN,
    }
}

/// Mean of the `k` largest values of `it` (all of them if fewer), summed largest first.
fn top_k_mean(it: impl Iterator<Item = f64>, k: usize) -> f64 {
    // A descending insertion list of at most k values: O(n·k) and no allocation per call
    // for the k ≤ 16 that margin scoring uses.
    let mut top = [f64::NEG_INFINITY; 16];
    let mut big = Vec::new();
    let k = k.max(1);
    let slots: &mut [f64] = if k <= 16 {
        &mut top[..k]
    } else {
        big.resize(k, f64::NEG_INFINITY);
        &mut big
    };
    let mut len = 0;
    for v in it {
        if len == slots.len() && v.total_cmp(&slots[len - 1]).is_le() {
            continue;
        }
        let mut p = len.min(slots.len() - 1);
        if len < slots.len() {
            len += 1;
        }
        while p > 0 && v.total_cmp(&slots[p - 1]).is_gt() {
            slots[p] = slots[p - 1];
            p -= 1;
        }
        slots[p] = v;
    }
    slots[..len].iter().sum::<f64>() / len.max(1) as f64
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
    if xx == 0.0 || yy == 0.0 {
        0.0
    } else {
        xy / (xx.sqrt() * yy.sqrt())
    }
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
    let hits = (0..n)
        .filter(|&i| (0..n).all(|j| j == i || (c[i * n + i] > c[i * n + j] && c[i * n + i] > c[j * n + i])))
        .count();
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
    use crate::gram::{dot, gram_rows};

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
    fn every_product_entry_is_the_reference_dot_on_every_path() {
        // Sizes with remainders against the 2 × 4 tile and the four lanes.
        for (n, d) in [(1, 3), (2, 4), (5, 7), (9, 13), (12, 64), (33, 130), (70, 9)] {
            let (a, b) = (rand_matrix(n, d, 3), rand_matrix(n, d, 4));
            let (mut a64, mut b64, mut c) = (Vec::new(), Vec::new(), Vec::new());
            a.normalized_into(n, &mut a64);
            b.normalized_into(n, &mut b64);
            let (a, b) = (a64, b64);
            gram_into(&a, &b, n, d, &mut c);
            let mut portable = vec![0f64; n * n];
            for (t, out) in portable.chunks_mut(3 * n).enumerate() {
                gram_rows(&a, &b, n, d, 3 * t, out.len() / n, out);
            }
            for i in 0..n {
                for j in 0..n {
                    let want = dot(&a[i * d..(i + 1) * d], &b[j * d..(j + 1) * d]);
                    assert_eq!(c[i * n + j].to_bits(), want.to_bits(), "n {n} d {d} ({i},{j})");
                    assert_eq!(portable[i * n + j].to_bits(), want.to_bits());
                    let plain: f64 = (0..d).map(|k| a[i * d + k] * b[j * d + k]).sum();
                    assert!((want - plain).abs() < 1e-12);
                }
            }
        }
    }

    #[test]
    fn top_k_mean_equals_sorting() {
        let m = rand_matrix(1, 200, 9);
        let v: Vec<f64> = m.data.iter().map(|&x| x as f64).collect();
        for k in [1, 2, 4, 16, 17, 199, 200, 300] {
            let mut s = v.clone();
            s.sort_by(|a, b| b.total_cmp(a));
            let kk = k.min(s.len());
            let want = s[..kk].iter().sum::<f64>() / kk as f64;
            assert_eq!(top_k_mean(v.iter().copied(), k).to_bits(), want.to_bits(), "k {k}");
        }
        assert_eq!(top_k_mean([2.0, 2.0, 1.0].into_iter(), 2), 2.0);
    }

    /// Margin accuracy written out from the definition, every neighbourhood by sorting.
    fn margin_naive(pivot: &Matrix, lang: &Matrix, k: usize) -> f64 {
        let n = pivot.rows.min(lang.rows);
        let cos = |i: usize, j: usize| cosine_pair(pivot.row(i), lang.row(j));
        let knn = |v: Vec<f64>| {
            let mut v = v;
            v.sort_by(|a, b| b.partial_cmp(a).unwrap());
            v[..k.min(n)].iter().sum::<f64>() / (2 * k.min(n)) as f64
        };
        let margin = |i: usize, j: usize| {
            cos(i, j) / (knn((0..n).map(|j2| cos(i, j2)).collect()) + knn((0..n).map(|i2| cos(i2, j)).collect()))
        };
        let hits = (0..n).filter(|&j| (0..n).all(|i| i == j || margin(j, j) > margin(i, j))).count();
        hits as f64 / n as f64
    }

    #[test]
    fn margin_matches_the_definition() {
        let mut differs_from_p1 = false;
        for seed in 0..12u64 {
            let pivot = rand_matrix(40, 10, seed + 300);
            let noise = rand_matrix(40, 10, seed + 400);
            let scale = 0.3 + seed as f32 / 8.0;
            let lang = Matrix::new(40, 10, pivot.data.iter().zip(&noise.data).map(|(a, b)| a + scale * b).collect());
            let r = align(&pivot, &lang, 4);
            let want = margin_naive(&pivot, &lang, 4);
            assert!((r.margin_acc - want).abs() < 1e-12, "seed {seed}: {} vs {want}", r.margin_acc);
            differs_from_p1 |= r.margin_acc != r.p1_lang_to_pivot;
        }
        assert!(differs_from_p1, "the margin never changed a decision: the test does not probe it");
    }

    /// A pivot Gram kept across languages gives `align`'s bits; one of the wrong size is not
    /// used.
    #[test]
    fn a_kept_pivot_gram_changes_no_bit() {
        let pivot = rand_matrix(30, 12, 900);
        for (seed, rows) in [(901u64, 30usize), (902, 30), (903, 24)] {
            let lang = rand_matrix(rows, 12, seed);
            let n = rows.min(30);
            let kept = pivot.unit_centred_gram(30);
            assert_eq!(align_with_gram(&pivot, Some(&pivot.unit_centred_gram(n)), &lang, 4), align(&pivot, &lang, 4));
            assert_eq!(align_with_gram(&pivot, Some(&kept), &lang, 4), align(&pivot, &lang, 4));
        }
    }

    #[test]
    fn pair_outcomes_are_the_hits_behind_the_shares() {
        for seed in 0..6u64 {
            let pivot = rand_matrix(25, 9, seed + 500);
            let noise = rand_matrix(25, 9, seed + 600);
            let lang = Matrix::new(25, 9, (0..225).map(|x| pivot.data[x] + 0.7 * noise.data[x]).collect());
            let c = cosine_matrix(&pivot, &lang, 25);
            let o = pair_outcomes(&c, 25);
            let a = align(&pivot, &lang, 4);
            let share = |f: &dyn Fn(&PairOutcome) -> bool| o.iter().filter(|x| f(x)).count() as f64 / 25.0;
            assert_eq!(share(&|x| x.mexa()), a.mexa);
            assert_eq!(share(&|x| x.row), a.p1_pivot_to_lang);
            assert_eq!(share(&|x| x.col), a.p1_lang_to_pivot);
            for (i, x) in o.iter().enumerate() {
                // The definition, one sentence at a time, with fresh cosines.
                let cos = |p: usize, l: usize| cosine_pair(pivot.row(p), lang.row(l));
                let hit = (0..25).all(|j| j == i || (cos(i, i) > cos(i, j) && cos(i, i) > cos(j, i)));
                assert_eq!(x.mexa(), hit, "seed {seed} sentence {i}");
                let other: f64 = (0..25).filter(|&j| j != i).map(|j| cos(i, j)).sum::<f64>() / 24.0;
                assert!((x.other_cosine - other).abs() < 1e-12);
                // What each side retrieves: the argmax of its row (column) of fresh cosines.
                let argmax = |f: &dyn Fn(usize) -> f64| (0..25).max_by(|&a, &b| f(a).total_cmp(&f(b))).unwrap();
                assert_eq!(x.pivot_retrieves as usize, argmax(&|j| cos(i, j)), "seed {seed} sentence {i}");
                assert_eq!(x.language_retrieves as usize, argmax(&|j| cos(j, i)), "seed {seed} sentence {i}");
                assert_eq!(x.row, x.pivot_retrieves as usize == i);
                assert_eq!(x.col, x.language_retrieves as usize == i);
            }
        }
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

    #[test]
    fn all_pairs_equal_align_run_once_per_pivot() {
        // Four languages of slightly different lengths, correlated so scores are not trivial.
        let base = rand_matrix(30, 12, 7);
        let mats: Vec<Matrix> = (0..4u64)
            .map(|l| {
                let noise = rand_matrix(30 - l as usize, 12, 100 + l);
                let rows = noise.rows;
                let data = (0..rows * 12).map(|x| base.data[x] + 0.6 * noise.data[x]).collect();
                Matrix::new(rows, 12, data)
            })
            .collect();
        let refs: Vec<&Matrix> = mats.iter().collect();
        let pairs = align_pairs(&refs, 4);
        assert_eq!(pairs.len(), 4 * 3);
        for (i, j, a) in pairs {
            let want = align(&mats[i], &mats[j], 4);
            assert_eq!(a, want, "pivot {i}, language {j}");
        }
    }

    /// Equal lengths take the cached-Gram path for CKA; still equal to `align` per pivot.
    #[test]
    fn all_pairs_of_equal_lengths_equal_align_with_cka() {
        let base = rand_matrix(25, 10, 3);
        let mats: Vec<Matrix> = (0..3u64)
            .map(|l| {
                let noise = rand_matrix(25, 10, 50 + l);
                Matrix::new(25, 10, (0..250).map(|x| base.data[x] + 0.8 * noise.data[x]).collect())
            })
            .collect();
        let refs: Vec<&Matrix> = mats.iter().collect();
        for (i, j, a) in align_pairs(&refs, 4) {
            assert_eq!(a, align(&mats[i], &mats[j], 4), "pivot {i}, language {j}");
            assert!(a.cka > 0.0 && a.cka < 1.0);
        }
    }

    /// ‖YᵀX‖²_F / (‖XᵀX‖_F ‖YᵀY‖_F) on column-centred X, Y, with d × d products.
    fn cka_direct(a: &Matrix, b: &Matrix) -> f64 {
        let (n, d) = (a.rows, a.cols);
        let centre = |m: &Matrix| -> Vec<Vec<f64>> {
            let mean: Vec<f64> = (0..d).map(|j| (0..n).map(|i| m.row(i)[j] as f64).sum::<f64>() / n as f64).collect();
            (0..n).map(|i| (0..d).map(|j| m.row(i)[j] as f64 - mean[j]).collect()).collect()
        };
        let (x, y) = (centre(a), centre(b));
        let cross = |p: &[Vec<f64>], q: &[Vec<f64>]| -> f64 {
            let mut s = 0.0;
            for u in 0..d {
                for v in 0..d {
                    let e: f64 = (0..n).map(|i| p[i][u] * q[i][v]).sum();
                    s += e * e;
                }
            }
            s
        };
        cross(&y, &x) / (cross(&x, &x).sqrt() * cross(&y, &y).sqrt())
    }

    #[test]
    fn linear_cka_matches_the_direct_formula_and_its_invariances() {
        let x = rand_matrix(9, 6, 11);
        let noise = rand_matrix(9, 6, 12);
        let y = Matrix::new(9, 6, (0..54).map(|i| x.data[i] + 0.5 * noise.data[i]).collect());
        let got = linear_cka(&x, &y, 9);
        let want = cka_direct(&x, &y);
        assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        // Invariant to isotropic scaling and to a shift of every row; 1 against itself.
        let scaled = Matrix::new(9, 6, y.data.iter().enumerate().map(|(i, v)| 3.0 * v + (i % 6) as f32).collect());
        assert!((linear_cka(&x, &scaled, 9) - got).abs() < 1e-6);
        assert!((linear_cka(&x, &x, 9) - 1.0).abs() < 1e-12);
        // And `align` reports it.
        assert_eq!(align(&x, &y, 4).cka, got);
    }

    #[test]
    fn centring_removes_each_columns_mean_before_every_score() {
        // A shared offset makes every sentence look alike (anisotropy); centring removes it.
        let base = rand_matrix(20, 8, 21);
        let shift = |m: &Matrix, by: f32| Matrix::new(m.rows, m.cols, m.data.iter().map(|v| v + by).collect());
        let noise = rand_matrix(20, 8, 22);
        let lang = Matrix::new(20, 8, (0..160).map(|i| base.data[i] + 0.9 * noise.data[i]).collect());
        let (p, l) = (shift(&base, 5.0), shift(&lang, -3.0));
        let c = p.centered();
        for j in 0..8 {
            let mean: f64 = (0..20).map(|i| c.row(i)[j] as f64).sum::<f64>() / 20.0;
            assert!(mean.abs() < 1e-5, "column {j} mean {mean}");
        }
        // Centred μ equals the naive definition on explicitly centred vectors.
        let centred = |m: &Matrix| {
            let mean: Vec<f64> = (0..8).map(|j| (0..20).map(|i| m.row(i)[j] as f64).sum::<f64>() / 20.0).collect();
            Matrix::new(20, 8, (0..160).map(|x| (m.data[x] as f64 - mean[x % 8]) as f32).collect())
        };
        let (_, mu) = align_naive(&centred(&p), &centred(&l));
        let a = align(&p.centered(), &l.centered(), 4);
        assert_eq!(a.mexa, mu);
        assert!(a.mexa > align(&p, &l, 4).mexa, "centring should undo the offsets here");
    }
}
