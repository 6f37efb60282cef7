//! The lexical floor: how well spelling overlap alone retrieves translations. Each sentence is
//! a vector of character n-gram TF-IDF weights, exactly as scikit-learn's
//! `TfidfVectorizer(analyzer='char_wb' | 'char', ngram_range=(lo, hi))` with its defaults
//! builds it (lower-cased; raw counts; smooth idf `ln((1 + N) / (1 + df)) + 1` over the N
//! documents fitted; rows scaled to unit L2 norm), fitted on the 2n sentences of one
//! (pivot, language) pair. Their cosines go through the same scores as embeddings
//! ([`crate::align::scores_from_cosines`]), so the baseline's μ is comparable with a model's.
//!
//! The analyzers follow scikit-learn's `_char_wb_ngrams` and `_char_ngrams` to the character:
//! `char_wb` pads each whitespace-separated word with one space on each side and takes its
//! n-grams (a word shorter than n counts once, whole); `char` replaces runs of two or more
//! whitespace characters by one space and takes the n-grams of the whole text. Lengths are in
//! Unicode scalar values, as Python counts them; whitespace is Python's `str.isspace`.
use std::collections::HashMap;

/// Which n-grams a sentence is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Analyzer {
    /// n-grams inside word boundaries, words padded with a space (scikit-learn's `char_wb`).
    CharWb,
    /// n-grams over the whole text (scikit-learn's `char`).
    Char,
}

/// The vectorizer's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TfidfOptions {
    pub analyzer: Analyzer,
    /// Inclusive n-gram range, `1 ≤ min ≤ max`.
    pub ngram_min: usize,
    pub ngram_max: usize,
}

impl Default for TfidfOptions {
    fn default() -> Self {
        Self { analyzer: Analyzer::CharWb, ngram_min: 1, ngram_max: 4 }
    }
}

/// Python's `str.isspace`: Rust's white space plus the four information separators
/// U+001C–U+001F.
fn py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// The n-grams of one document, in scikit-learn's order (the order does not matter for the
/// counts; it is kept so a reader can check the code against the Python line by line).
pub fn ngrams(text: &str, o: TfidfOptions) -> Vec<String> {
    assert!(1 <= o.ngram_min && o.ngram_min <= o.ngram_max, "n-gram range must be 1 ≤ min ≤ max");
    let lower = text.to_lowercase();
    let mut out = Vec::new();
    match o.analyzer {
        Analyzer::CharWb => {
            for word in lower.split(py_space).filter(|w| !w.is_empty()) {
                let w: Vec<char> = std::iter::once(' ').chain(word.chars()).chain(std::iter::once(' ')).collect();
                for n in o.ngram_min..=o.ngram_max {
                    let mut offset = 0;
                    out.push(w[offset..(offset + n).min(w.len())].iter().collect());
                    while offset + n < w.len() {
                        offset += 1;
                        out.push(w[offset..offset + n].iter().collect());
                    }
                    // A word no longer than n is counted once, whole.
                    if offset == 0 {
                        break;
                    }
                }
            }
        }
        Analyzer::Char => {
            // `re.sub(r"\s\s+", " ", text)`: runs of two or more white-space characters become
            // one space; a single one stays as it is.
            let chars: Vec<char> = lower.chars().collect();
            let mut t: Vec<char> = Vec::with_capacity(chars.len());
            let mut i = 0;
            while i < chars.len() {
                let mut j = i;
                while j < chars.len() && py_space(chars[j]) {
                    j += 1;
                }
                if j - i >= 2 {
                    t.push(' ');
                    i = j;
                } else {
                    t.push(chars[i]);
                    i += 1;
                }
            }
            for n in o.ngram_min..=o.ngram_max.min(t.len()) {
                for s in 0..=t.len() - n {
                    out.push(t[s..s + n].iter().collect());
                }
            }
        }
    }
    out
}

/// Documents as unit-norm TF-IDF vectors: sparse rows of (feature, weight), features in
/// first-seen order.
#[derive(Debug, Clone)]
pub struct Tfidf {
    pub rows: Vec<Vec<(usize, f64)>>,
    pub features: usize,
}

impl Tfidf {
    /// Fits the vocabulary and idf on `docs` and transforms them (`fit_transform`).
    pub fn fit_transform(docs: &[&str], o: TfidfOptions) -> Tfidf {
        let mut vocab: HashMap<String, usize> = HashMap::new();
        let mut counts: Vec<Vec<(usize, f64)>> = Vec::with_capacity(docs.len());
        for d in docs {
            let mut c: HashMap<usize, f64> = HashMap::new();
            for g in ngrams(d, o) {
                let next = vocab.len();
                *c.entry(*vocab.entry(g).or_insert(next)).or_insert(0.0) += 1.0;
            }
            let mut row: Vec<(usize, f64)> = c.into_iter().collect();
            row.sort_by_key(|e| e.0);
            counts.push(row);
        }
        let mut df = vec![0usize; vocab.len()];
        for row in &counts {
            for &(f, _) in row {
                df[f] += 1;
            }
        }
        // scikit-learn: smooth_idf adds one document containing every term.
        let n = (docs.len() + 1) as f64;
        let idf: Vec<f64> = df.iter().map(|&d| (n / (d + 1) as f64).ln() + 1.0).collect();
        for row in &mut counts {
            for e in row.iter_mut() {
                e.1 *= idf[e.0];
            }
            let norm = row.iter().map(|e| e.1 * e.1).sum::<f64>().sqrt();
            if norm > 0.0 {
                row.iter_mut().for_each(|e| e.1 /= norm);
            }
        }
        Tfidf { rows: counts, features: vocab.len() }
    }

    /// The dot product of rows `a` and `b` (their cosine: rows have unit norm, or are empty).
    pub fn dot(&self, a: usize, b: usize) -> f64 {
        let (x, y) = (&self.rows[a], &self.rows[b]);
        let (mut i, mut j, mut s) = (0, 0, 0.0);
        while i < x.len() && j < y.len() {
            match x[i].0.cmp(&y[j].0) {
                std::cmp::Ordering::Less => i += 1,
                std::cmp::Ordering::Greater => j += 1,
                std::cmp::Ordering::Equal => {
                    s += x[i].1 * y[j].1;
                    i += 1;
                    j += 1;
                }
            }
        }
        s
    }
}

/// The lexical alignment of `lang` to `pivot` (line-parallel; the first n = min of both
/// counts): the TF-IDF cosine matrix `C[i][j] = cos(pivot_i, lang_j)` fitted on those 2n
/// sentences, scored as embeddings are. `cka` is NaN: two sets of TF-IDF vectors over largely
/// disjoint vocabularies have near-identity Gram matrices, so their CKA is near 1 for any
/// pair of languages (0.96 for Greek against English on 12 sentences) and says nothing.
pub fn lexical_align(pivot: &[&str], lang: &[&str], o: TfidfOptions, margin_k: usize) -> crate::Alignment {
    let n = pivot.len().min(lang.len());
    crate::align::scores_from_cosines(&lexical_cosines(pivot, lang, o), n, margin_k)
}

/// The n × n cosines of the first n rows (pivot) against the next n (language).
fn cosines(t: &Tfidf, n: usize) -> Vec<f64> {
    (0..n).flat_map(|i| (0..n).map(move |j| (i, j))).map(|(i, j)| t.dot(i, n + j)).collect()
}

/// The TF-IDF cosine matrix of a pair, as [`lexical_align`] scores it (for tests and reports).
pub fn lexical_cosines(pivot: &[&str], lang: &[&str], o: TfidfOptions) -> Vec<f64> {
    let n = pivot.len().min(lang.len());
    let docs: Vec<&str> = pivot[..n].iter().chain(&lang[..n]).copied().collect();
    cosines(&Tfidf::fit_transform(&docs, o), n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grams(s: &str, a: Analyzer, lo: usize, hi: usize) -> Vec<String> {
        ngrams(s, TfidfOptions { analyzer: a, ngram_min: lo, ngram_max: hi })
    }

    #[test]
    fn char_wb_pads_words_and_counts_short_words_once() {
        // scikit-learn: TfidfVectorizer(analyzer='char_wb', ngram_range=(2, 3)).build_analyzer()("Ab c")
        assert_eq!(grams("Ab c", Analyzer::CharWb, 2, 3), [" a", "ab", "b ", " ab", "ab ", " c", "c ", " c "]);
        // A word of length ≤ n after padding is counted once, whole, and larger n are skipped.
        assert_eq!(grams("a", Analyzer::CharWb, 3, 5), [" a "]);
        assert_eq!(grams("  x\t\ty ", Analyzer::CharWb, 1, 1), [" ", "x", " ", " ", "y", " "]);
    }

    #[test]
    fn char_collapses_white_space_runs_only() {
        assert_eq!(grams("a\tb", Analyzer::Char, 2, 2), ["a\t", "\tb"]);
        assert_eq!(grams("a \t b", Analyzer::Char, 3, 3), ["a b"]);
        assert_eq!(grams("AB", Analyzer::Char, 1, 5), ["a", "b", "ab"]);
    }

    #[test]
    fn identical_sentences_retrieve_each_other() {
        let s = ["the cat sat", "a dog ran far", "birds fly south"];
        let a = lexical_align(&s, &s, TfidfOptions::default(), 2);
        assert_eq!((a.n, a.mexa, a.p1_pivot_to_lang, a.p1_lang_to_pivot), (3, 1.0, 1.0, 1.0));
        assert!((a.mean_cosine - 1.0).abs() < 1e-12 && a.cka.is_nan());
    }
}
