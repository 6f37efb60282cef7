//! Batching, weights path and padding are execution settings outside the artifact key, so they
//! must not change results. On real models (SmolLM2 135M and Gemma 3 270M GGUFs, MiniLM) and a
//! corpus of five languages in four scripts with short and long sentences (UDHR units of 40 to 360 characters):
//! - the μ table (every language × layer × pooling) is the same one sentence at a time, in
//!   batches of 4, in the default 4096-token batches, with stored weights, and layer-major over
//!   chunks with pages handed back (what a memory budget below the model's size chooses);
//! - a sentence's pooled vectors are the same alone as batched beside a much longer sentence
//!   (right padding and the attention mask hide the padding), for the Llama, Gemma and BERT
//!   families.
//!
//! Pooled vectors are compared within `VECTOR_TOLERANCE` (relative to the vector's norm): a
//! different padded length changes the shapes of the matrix products, and libtorch may then sum
//! in another order (docs/decisions.md, "Batch invariance"). μ is compared exactly: a flip of a
//! retrieval would show as a different count.
mod common;
use common::assets;
use mexa_metrics::align::{align, Matrix};
use mexa_model::{embed, BatchOptions, LoadOptions, Model, Pooled, Pooling};

/// Largest accepted |a - b| / |a| of one pooled vector between two ways of batching.
const VECTOR_TOLERANCE: f64 = 1e-5;

const LANGUAGES: &[&str] = &["eng", "fra", "rus", "cmn_hans", "hin"];
const PER_LANGUAGE: usize = 8;

/// The first PER_LANGUAGE UDHR units of each language, languages one after another.
fn corpus() -> Vec<String> {
    let mut out = Vec::new();
    for l in LANGUAGES {
        let p = assets().join(format!("corpora/udhr/{l}.txt"));
        let text =
            std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}; run scripts/fetch-assets.py", p.display()));
        out.extend(text.lines().take(PER_LANGUAGE).map(str::to_string));
    }
    out
}

const POOLINGS: &[Pooling] = &[Pooling::Weighted, Pooling::Last];

fn run(file: &str, stored: bool, release: bool, batch: BatchOptions, sentences: &[String]) -> Vec<Pooled> {
    let opts = LoadOptions { stored_weights: stored, release_pages: release, ..Default::default() };
    let model = Model::load(&assets().join(file), &opts).unwrap();
    embed(&model, sentences, POOLINGS, batch, |_| {}).unwrap()
}

/// μ of every (language, layer, pooling) against English, as counts of hits out of PER_LANGUAGE.
fn mu_table(pooled: &[Pooled]) -> Vec<(String, usize, &'static str, f64)> {
    let mut rows = Vec::new();
    for p in pooled {
        let m = |lang: usize, layer: usize| {
            let rows: Vec<f32> =
                (0..PER_LANGUAGE).flat_map(|s| p.vector(layer, lang * PER_LANGUAGE + s).to_vec()).collect();
            Matrix::new(PER_LANGUAGE, p.dim, rows)
        };
        for layer in 0..p.layers {
            let pivot = m(0, layer);
            for (li, l) in LANGUAGES.iter().enumerate().skip(1) {
                rows.push((l.to_string(), layer, p.pooling.name(), align(&pivot, &m(li, layer), 4).mexa));
            }
        }
    }
    rows
}

/// Largest relative difference between two runs' pooled vectors.
fn max_relative(a: &[Pooled], b: &[Pooled]) -> f64 {
    let mut worst = 0f64;
    for (x, y) in a.iter().zip(b) {
        assert_eq!((x.pooling, x.n, x.dim, x.layers), (y.pooling, y.n, y.dim, y.layers));
        for (u, v) in x.data.chunks(x.dim).zip(y.data.chunks(y.dim)) {
            let norm = u.iter().map(|&t| (t as f64).powi(2)).sum::<f64>().sqrt().max(1e-12);
            let diff = u.iter().zip(v).map(|(&s, &t)| (s as f64 - t as f64).powi(2)).sum::<f64>().sqrt();
            worst = worst.max(diff / norm);
        }
    }
    worst
}

fn check_mu_tables(file: &str) {
    let sentences = corpus();
    let one = BatchOptions { max_tokens: 4096, max_sentences: 1, chunk_tokens: 0 };
    let four = BatchOptions { max_tokens: 512, max_sentences: 4, chunk_tokens: 0 };
    let default = BatchOptions::default();
    let reference = run(file, false, false, one, &sentences);
    let table = mu_table(&reference);
    assert_eq!(table.len(), POOLINGS.len() * reference[0].layers * (LANGUAGES.len() - 1));
    for (how, stored, release, batch) in [
        ("dense, batches of 4", false, false, four),
        ("dense, 4096-token batches", false, false, default),
        ("stored, 4096-token batches", true, false, default),
        ("layer-major, pages handed back", true, true, BatchOptions { chunk_tokens: 700, ..four }),
    ] {
        let other = run(file, stored, release, batch, &sentences);
        let rel = max_relative(&reference, &other);
        let flips: Vec<String> = table
            .iter()
            .zip(mu_table(&other))
            .filter(|(a, b)| a.3 != b.3)
            .map(|(a, b)| format!("{} layer {} {}: {} vs {}", a.0, a.1, a.2, a.3, b.3))
            .collect();
        println!("{file}, {how}: largest relative vector difference {rel:.2e}, {} μ values differ", flips.len());
        assert!(rel <= VECTOR_TOLERANCE, "{file}, {how}: pooled vectors differ by {rel:.2e} (relative)");
        assert!(flips.is_empty(), "{file}, {how}: μ differs from one sentence at a time:\n{}", flips.join("\n"));
    }
}

#[test]
fn mu_tables_do_not_depend_on_batching_or_weights_path_smollm2() {
    check_mu_tables("models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
}

#[test]
fn mu_tables_do_not_depend_on_batching_or_weights_path_gemma3() {
    check_mu_tables("models/gemma3-270m/gemma-3-270m-q4_k_m.gguf");
}

/// A short sentence alone, and in one batch with a sentence ~30 times its length.
fn check_padding(file: &str) {
    let short = "All human beings are born free.".to_string();
    let long = corpus()[..PER_LANGUAGE].join(" ");
    let opts = LoadOptions::default();
    let model = Model::load(&assets().join(file), &opts).unwrap();
    let alone = embed(&model, std::slice::from_ref(&short), POOLINGS, BatchOptions::default(), |_| {}).unwrap();
    let both = embed(&model, &[long, short], POOLINGS, BatchOptions::default(), |_| {}).unwrap();
    assert!(both[0].tokens[0] > 20 * both[0].tokens[1], "the long sentence is not much longer: {:?}", both[0].tokens);
    let mut worst = 0f64;
    for (a, b) in alone.iter().zip(&both) {
        for layer in 0..a.layers {
            let (u, v) = (a.vector(layer, 0), b.vector(layer, 1));
            let norm = u.iter().map(|&t| (t as f64).powi(2)).sum::<f64>().sqrt().max(1e-12);
            let diff = u.iter().zip(v).map(|(&s, &t)| (s as f64 - t as f64).powi(2)).sum::<f64>().sqrt();
            worst = worst.max(diff / norm);
        }
    }
    println!("{file}: alone vs beside a {}-token sentence: largest relative difference {worst:.2e}", both[0].tokens[0]);
    assert!(worst <= VECTOR_TOLERANCE, "{file}: a sentence's vectors change by {worst:.2e} beside a longer one");
}

#[test]
fn padding_beside_a_long_sentence_changes_nothing_llama_gemma_bert() {
    check_padding("models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
    check_padding("models/gemma3-270m/gemma-3-270m-q4_k_m.gguf");
    check_padding("models/all-minilm-l6-v2");
}
