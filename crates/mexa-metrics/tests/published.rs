//! Statistics against published values and textbook constants.
use mexa_metrics::stats::{beta_reg, erfc, ranks};
use mexa_metrics::{bootstrap_ci, kendall, linear_fit, pearson, spearman};

// MEXA (Kargaran et al., arXiv 2410.05873) Table 1, columns in the order Gemma2-9B,
// Gemma1-7B, Llama3.1-70B, Llama3.1-8B, Llama3-8B, Llama2-7B, Llama1-7B, Mistral-7B, OLMo-7B.
// These are the paper's inputs; the expected correlations are the paper's stated results.
const BELEBELE: [f64; 9] = [0.7093, 0.5633, 0.7684, 0.5705, 0.5533, 0.3028, 0.2755, 0.4457, 0.3627];
const MU_MEAN: [f64; 9] = [0.5088, 0.3815, 0.4110, 0.3963, 0.3939, 0.0866, 0.1946, 0.2642, 0.0413];
const MU_MAX: [f64; 9] = [0.7194, 0.5872, 0.7725, 0.6538, 0.6520, 0.2464, 0.3579, 0.4716, 0.1965];

#[test]
fn pearson_reproduces_mexa_table_1() {
    let mean = pearson(&BELEBELE, &MU_MEAN);
    let max = pearson(&BELEBELE, &MU_MAX);
    assert!((mean.r - 0.8755).abs() < 5e-5, "r(μMean) = {}", mean.r);
    assert!((max.r - 0.9249).abs() < 5e-5, "r(μMax) = {}", max.r);
    assert!(mean.p < 0.01 && max.p < mean.p);
}

#[test]
fn pearson_p_matches_the_critical_value_table() {
    // Two-tailed α = 0.05 critical r for df = 8 is 0.6319; for df = 28 it is 0.3610.
    let r_to_p = |r: f64, n: usize| {
        // Build data with exactly this r: y = r·x + sqrt(1-r²)·z with x ⟂ z, centred.
        let x: Vec<f64> = (0..n).map(|i| i as f64 - (n as f64 - 1.0) / 2.0).collect();
        let z: Vec<f64> = (0..n).map(|i| if i % 2 == 0 { 1.0 } else { -1.0 }).collect();
        let xz: f64 = x.iter().zip(&z).map(|(a, b)| a * b).sum::<f64>() / x.iter().map(|a| a * a).sum::<f64>();
        let z: Vec<f64> = z.iter().zip(&x).map(|(b, a)| b - xz * a).collect();
        let zm = z.iter().sum::<f64>() / n as f64;
        let z: Vec<f64> = z.iter().map(|v| v - zm).collect();
        let (sx, sz) = (x.iter().map(|a| a * a).sum::<f64>().sqrt(), z.iter().map(|a| a * a).sum::<f64>().sqrt());
        let y: Vec<f64> = x.iter().zip(&z).map(|(a, b)| r * a / sx + (1.0 - r * r).sqrt() * b / sz).collect();
        let c = pearson(&x, &y);
        assert!((c.r - r).abs() < 1e-9);
        c.p
    };
    assert!((r_to_p(0.6319, 10) - 0.05).abs() < 5e-4);
    assert!((r_to_p(0.3610, 30) - 0.05).abs() < 5e-4);
}

#[test]
fn special_functions() {
    assert!((erfc(1.0) - 0.157_299_207_050_285_1).abs() < 1e-13);
    assert!((erfc(0.0) - 1.0).abs() < 1e-15);
    assert!((erfc(-1.0) - 1.842_700_792_949_715).abs() < 1e-13);
    // I_x(a, 1) = x^a and I_x(1, b) = 1 − (1−x)^b.
    assert!((beta_reg(3.0, 1.0, 0.4) - 0.064).abs() < 1e-13);
    assert!((beta_reg(1.0, 2.0, 0.3) - (1.0 - 0.49)).abs() < 1e-13);
}

#[test]
fn spearman_is_pearson_of_average_ranks() {
    assert_eq!(ranks(&[10.0, 20.0, 20.0, 5.0]), vec![2.0, 3.5, 3.5, 1.0]);
    let s = spearman(&BELEBELE, &MU_MEAN);
    let p = pearson(&ranks(&BELEBELE), &ranks(&MU_MEAN));
    assert_eq!(s.r, p.r);
    // A monotone transform does not change it.
    let cubed: Vec<f64> = MU_MEAN.iter().map(|v| v * v * v).collect();
    assert_eq!(spearman(&BELEBELE, &cubed).r, s.r);
}

#[test]
fn kendall_tau_b_against_pair_counting() {
    let x = [1.0, 2.0, 2.0, 3.0, 4.0, 5.0, 5.0, 6.0];
    let y = [2.0, 1.0, 3.0, 3.0, 5.0, 4.0, 6.0, 6.0];
    // Brute force τ-b.
    let (mut conc, mut disc, mut tx, mut ty) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
    for i in 0..x.len() {
        for j in i + 1..x.len() {
            let (a, b) = (x[i] - x[j], y[i] - y[j]);
            if a == 0.0 && b == 0.0 {
                continue;
            } else if a == 0.0 {
                tx += 1.0;
            } else if b == 0.0 {
                ty += 1.0;
            } else if a * b > 0.0 {
                conc += 1.0;
            } else {
                disc += 1.0;
            }
        }
    }
    let expected = (conc - disc) / ((conc + disc + tx) * (conc + disc + ty)).sqrt();
    let k = kendall(&x, &y);
    assert!((k.r - expected).abs() < 1e-12, "{} vs {expected}", k.r);
    assert!(k.p > 0.0 && k.p < 0.05);
    // Without ties and n ≤ 33 the p-value is exact: the share of all 9! orderings whose
    // |concordant − discordant| is at least the observed one, counted here by brute force.
    let k = kendall(&BELEBELE, &MU_MAX);
    let n = 9usize;
    let observed = (k.r * (n * (n - 1) / 2) as f64).round().abs() as i64;
    let mut perm: Vec<usize> = (0..n).collect();
    let (mut extreme, mut total) = (0u64, 0u64);
    let mut c = vec![0usize; n];
    let mut visit = |p: &[usize]| {
        let mut s = 0i64;
        for i in 0..n {
            for j in i + 1..n {
                s += if p[i] < p[j] { 1 } else { -1 };
            }
        }
        total += 1;
        if s.abs() >= observed {
            extreme += 1;
        }
    };
    // Heap's algorithm: every permutation once.
    visit(&perm);
    let mut i = 0;
    while i < n {
        if c[i] < i {
            if i % 2 == 0 {
                perm.swap(0, i)
            } else {
                perm.swap(c[i], i)
            }
            visit(&perm);
            c[i] += 1;
            i = 0;
        } else {
            c[i] = 0;
            i += 1;
        }
    }
    assert_eq!(total, 362_880);
    let brute = extreme as f64 / total as f64;
    assert!((k.p - brute).abs() < 1e-12, "exact p {} vs brute force {brute}", k.p);
    // The normal approximation, which the exact value replaces for small samples, differs.
    let z = observed as f64 / ((n * (n - 1) * (2 * n + 5)) as f64 / 18.0).sqrt();
    assert!((k.p - erfc(z / 2f64.sqrt())).abs() > 1e-4);
}

#[test]
fn bootstrap_interval_contains_the_estimate_and_is_deterministic() {
    let stat = |a: &[f64], b: &[f64]| pearson(a, b).r;
    let (lo, hi) = bootstrap_ci(&BELEBELE, &MU_MAX, stat, 2000, 0.95, 42);
    let r = pearson(&BELEBELE, &MU_MAX).r;
    assert!(lo < r && r < hi && hi <= 1.0, "{lo} {r} {hi}");
    assert_eq!((lo, hi), bootstrap_ci(&BELEBELE, &MU_MAX, stat, 2000, 0.95, 42));
    let (lo2, hi2) = bootstrap_ci(&BELEBELE, &MU_MAX, stat, 2000, 0.5, 42);
    assert!(lo2 > lo && hi2 < hi);
}

#[test]
fn least_squares_line() {
    let x = [0.0, 1.0, 2.0, 3.0];
    let y = [1.0, 3.0, 5.0, 7.0];
    assert_eq!(linear_fit(&x, &y), (2.0, 1.0));
}
