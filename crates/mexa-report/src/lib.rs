//! Reports people read: a self-contained HTML page (tables and inline SVG figures), a
//! Markdown summary, and every figure as PNG and SVG: a layer × language heatmap of
//! alignment per model, scatters of alignment against task scores with the fitted line and r,
//! and per-layer curves. Input is plain data (no store access); output is a list of files.
pub mod figures;
mod page;

pub use page::render;

/// Per-layer alignment of one language under one pooling.
#[derive(Debug, Clone)]
pub struct Curve {
    pub language: String,
    pub pooling: String,
    /// The MEXA μ of each hidden state, embedding output first.
    pub scores: Vec<f64>,
}

/// A per-language layer-pooled score.
#[derive(Debug, Clone)]
pub struct AggRow {
    pub language: String,
    pub pooling: String,
    pub metric: String,
    pub mean: f64,
    pub max: f64,
    pub best_layer: i32,
}

/// A language's alignment next to its task score.
#[derive(Debug, Clone)]
pub struct PointRow {
    pub language: String,
    pub task: String,
    pub pooling: String,
    pub layer_pool: String,
    pub alignment: f64,
    pub score: f64,
}

/// One correlation row.
#[derive(Debug, Clone)]
pub struct CorrRow {
    pub task: String,
    pub pooling: String,
    pub layer_pool: String,
    pub n: i32,
    pub pearson: f64,
    pub pearson_p: f64,
    pub ci_lo: f64,
    pub ci_hi: f64,
    pub spearman: f64,
    pub kendall: f64,
    pub slope: f64,
    pub intercept: f64,
}

/// One pipeline node's data, with its grid cell (from its label) and key.
#[derive(Debug, Clone)]
pub struct Node<T> {
    pub label: String,
    pub key: String,
    pub cell: Vec<(String, String)>,
    pub rows: Vec<T>,
}

impl<T> Node<T> {
    pub fn new(label: &str, key: &str, rows: Vec<T>) -> Self {
        Self { label: label.to_string(), key: key.to_string(), cell: cell_of(label), rows }
    }
    /// The stage name part of the label.
    pub fn stage(&self) -> &str {
        self.label.split('[').next().unwrap_or(&self.label)
    }
    /// Whether every axis value of `other` agrees with ours where both have it.
    pub fn agrees<U>(&self, other: &Node<U>) -> bool {
        other.cell.iter().all(|(a, v)| self.cell.iter().all(|(b, w)| a != b || v == w))
    }
}

/// (axis, value) pairs of a node label `stage[a=x,b=y]`.
pub fn cell_of(label: &str) -> Vec<(String, String)> {
    let Some(inner) = label.split_once('[').and_then(|(_, r)| r.strip_suffix(']')) else { return vec![] };
    inner.split(',').filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.to_string(), v.to_string()))).collect()
}

/// Everything a report shows.
#[derive(Debug, Clone, Default)]
pub struct ReportData {
    pub title: String,
    /// Shown under the title (the pipeline's description).
    pub description: String,
    /// Languages for the per-layer curves (empty: an even spread over the ranking).
    pub curve_languages: Vec<String>,
    pub alignments: Vec<Node<Curve>>,
    pub summaries: Vec<Node<AggRow>>,
    pub points: Vec<Node<PointRow>>,
    pub correlations: Vec<Node<CorrRow>>,
}

/// A file of the report: path relative to the report folder, and its bytes.
pub type File = (String, Vec<u8>);

/// Filesystem-safe name for a label.
pub fn slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    out.trim_matches('_').to_string()
}
