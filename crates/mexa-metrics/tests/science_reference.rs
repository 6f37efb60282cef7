//! The scores of issue 27 against the libraries a reviewer would check them with: values
//! written by tools/make_science_fixtures.py (scikit-learn 1.7.2, SciPy 1.16.3, statsmodels
//! 0.14.5) to tests/fixtures/science.
use mexa_metrics::inference::{benjamini_hochberg, holm, pearson_permutation};
use mexa_metrics::lexical::{lexical_align, lexical_cosines, Analyzer, TfidfOptions};
use mexa_metrics::predict::logistic;
use mexa_metrics::probe::newcombe_difference;
use serde_json::Value;

fn fixture(name: &str) -> Value {
    let path = format!("{}/../../tests/fixtures/science/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().expect("an array").iter().map(|x| x.as_f64().expect("a number")).collect()
}

fn strs(v: &Value) -> Vec<&str> {
    v.as_array().expect("an array").iter().map(|x| x.as_str().expect("a string")).collect()
}

#[test]
fn tfidf_cosines_and_scores_match_scikit_learn() {
    let f = fixture("tfidf");
    let pivot = strs(&f["pivot_sentences"]);
    let cases = f["cases"].as_array().unwrap();
    assert!(cases.len() >= 27);
    for c in cases {
        let lang = c["language"].as_str().unwrap();
        let analyzer = match c["analyzer"].as_str().unwrap() {
            "char_wb" => Analyzer::CharWb,
            "char" => Analyzer::Char,
            other => panic!("analyzer {other}"),
        };
        let range = floats(&c["ngram_range"]);
        let o = TfidfOptions { analyzer, ngram_min: range[0] as usize, ngram_max: range[1] as usize };
        let other = strs(&f["sentences"][lang]);
        let want = floats(&c["cosines"]);
        let got = lexical_cosines(&pivot, &other, o);
        assert_eq!(got.len(), want.len());
        for (k, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!((g - w).abs() < 1e-12, "{lang} {o:?} entry {k}: {g} vs scikit-learn {w}");
        }
        let a = lexical_align(&pivot, &other, o, 4);
        let s = &c["scores"];
        for (name, v) in [
            ("mexa", a.mexa),
            ("p1_pivot_to_lang", a.p1_pivot_to_lang),
            ("p1_lang_to_pivot", a.p1_lang_to_pivot),
            ("margin_acc", a.margin_acc),
        ] {
            assert_eq!(v, s[name].as_f64().unwrap(), "{lang} {o:?} {name}");
        }
        assert!((a.mean_cosine - s["mean_cosine"].as_f64().unwrap()).abs() < 1e-12);
    }
}

#[test]
fn vocabulary_sizes_match_scikit_learn() {
    let f = fixture("tfidf");
    let pivot = strs(&f["pivot_sentences"]);
    for c in f["cases"].as_array().unwrap() {
        let other = strs(&f["sentences"][c["language"].as_str().unwrap()]);
        let range = floats(&c["ngram_range"]);
        let analyzer = if c["analyzer"] == "char" { Analyzer::Char } else { Analyzer::CharWb };
        let o = TfidfOptions { analyzer, ngram_min: range[0] as usize, ngram_max: range[1] as usize };
        let docs: Vec<&str> = pivot.iter().chain(&other).copied().collect();
        let t = mexa_metrics::lexical::Tfidf::fit_transform(&docs, o);
        assert_eq!(t.features as u64, c["features"].as_u64().unwrap(), "{} {o:?}", c["language"]);
    }
}

#[test]
fn exact_permutation_p_values_match_scipy() {
    for c in fixture("permutation")["cases"].as_array().unwrap() {
        let (x, y) = (floats(&c["x"]), floats(&c["y"]));
        let got = pearson_permutation(&x, &y, 0, 0);
        let want = c["p"].as_f64().unwrap();
        let n = x.len() as u64;
        assert!(got.exact && got.permutations == (1..=n).product::<u64>());
        assert!((got.p - want).abs() < 1e-12, "{}: {} vs SciPy {want}", c["name"], got.p);
    }
}

#[test]
fn holm_and_benjamini_hochberg_match_statsmodels() {
    for c in fixture("multitest")["cases"].as_array().unwrap() {
        let p = floats(&c["p"]);
        for (got, want) in [(holm(&p), floats(&c["holm"])), (benjamini_hochberg(&p), floats(&c["fdr_bh"]))] {
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() < 1e-15, "{p:?}: {got:?} vs statsmodels {want:?}");
            }
        }
    }
}

#[test]
fn fractional_logit_matches_statsmodels_glm() {
    for c in fixture("logistic")["cases"].as_array().unwrap() {
        let (x, y) = (floats(&c["x"]), floats(&c["y"]));
        let want = floats(&c["params"]);
        let (a, b) = logistic(&x, &y).expect("converges");
        assert!((a - want[0]).abs() < 1e-8 && (b - want[1]).abs() < 1e-8, "({a}, {b}) vs statsmodels {want:?}");
    }
}

#[test]
fn newcombe_interval_matches_statsmodels() {
    for c in fixture("newcombe")["cases"].as_array().unwrap() {
        let k = |f: &str| c[f].as_u64().unwrap() as usize;
        let (d, lo, hi) = newcombe_difference(k("k1"), k("n1"), k("k2"), k("n2"), 1.959_963_984_540_054);
        let (wlo, whi) = (c["lo"].as_f64().unwrap(), c["hi"].as_f64().unwrap());
        assert!((lo - wlo).abs() < 1e-12 && (hi - whi).abs() < 1e-12, "{c}: [{lo}, {hi}] vs [{wlo}, {whi}]");
        assert!(lo <= d && d <= hi);
    }
}
