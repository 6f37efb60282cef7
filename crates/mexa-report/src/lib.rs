//! Reports people read: a self-contained HTML page (tables and inline SVG figures), a
//! Markdown summary, and every figure as PNG and SVG: a layer × language heatmap of
//! alignment per model (near-chance cells grey), a clustered language × language heatmap with
//! its dendrogram, logit-lens curves (which language each layer's top token is in), scatters of alignment against task scores with the fitted line and r,
//! and per-layer curves; and what keeps a correlation honest: the lexical floor beside μ, the
//! floor diagnosis and multiple-comparison view of every correlation, held-out layer choice,
//! leave-one-language-out prediction error with calibration plots, instance-level accuracy. Input is plain data (no store access); output is a list of files.
pub mod figures;
mod honest;
mod page;
mod page_figures;

pub use page::render;

/// Per-layer alignment of one language under one pooling.
#[derive(Debug, Clone)]
pub struct Curve {
    pub language: String,
    pub pooling: String,
    /// The MEXA μ of each hidden state, embedding output first.
    pub scores: Vec<f64>,
    /// Per hidden state: μ not distinguishable from chance.
    pub near_chance: Vec<bool>,
    /// Sentence pairs behind each score.
    pub n: i32,
}

/// The logit lens of one input language: per hidden state, the share of top-1 next tokens
/// in the pivot's vocabulary only and in the input language's only.
#[derive(Debug, Clone)]
pub struct LensCurve {
    pub language: String,
    pub pivot_share: Vec<f64>,
    pub language_share: Vec<f64>,
    /// Positions decoded per hidden state, and the sentences they came from.
    pub positions: usize,
    pub sentences: usize,
}

/// Every language against every other as pivot (an `align_pairs` node, one pooling): μ
/// pooled over layers, in the order of their average-linkage clustering.
#[derive(Debug, Clone)]
pub struct PairGrid {
    pub pooling: String,
    /// How the layers were pooled (`mean`).
    pub layer_pool: String,
    /// Languages in dendrogram order.
    pub languages: Vec<String>,
    /// `scores[pivot][language]`, both in `languages`' order (the diagonal unused).
    pub scores: Vec<Vec<f64>>,
    /// Near chance at the layer-pooled level: every layer of the pair near chance.
    pub near_chance: Vec<Vec<bool>>,
    /// The clustering: leaf order over the original language indices, and SciPy-style
    /// merges `(a, b, height)` (height = 1 − mean symmetric μ between the clusters).
    pub order: Vec<usize>,
    pub merges: Vec<(usize, usize, f64)>,
    pub n: i32,
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
    /// Sentence pairs behind each score.
    pub n: i32,
    /// The best layer's 95% bootstrap interval over sentences (NaN when the metric has none).
    pub max_ci: (f64, f64),
    /// The best layer's μ is not distinguishable from chance (p ≥ 0.05 under 1/(2n − 1)).
    pub near_chance: bool,
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
    pub spearman_p: f64,
    pub kendall: f64,
    pub kendall_p: f64,
    pub slope: f64,
    pub intercept: f64,
    /// Pearson's permutation p-value and the pairings behind it (n! when exact).
    pub pearson_perm_p: f64,
    pub permutations: i32,
    /// Points near chance on each axis (-1: unknown) and the task's chance accuracy.
    pub align_near_chance: i32,
    pub task_near_chance: i32,
    pub task_chance: f64,
    /// Points whose task score does not beat always giving the commonest answer (-1:
    /// unknown), and that answer's accuracy.
    pub task_below_majority: i32,
    pub task_majority: f64,
    /// Mean cosine of non-parallel pairs (NaN: not measured).
    pub anisotropy: f64,
    /// Most points near chance on an axis, and the diagnosis in words.
    pub floor: bool,
    pub floor_note: String,
    /// The permutation p-value adjusted over every correlation of the report: Holm,
    /// Benjamini–Hochberg (NaN until the report fills them in).
    pub holm_p: f64,
    pub bh_p: f64,
}

/// A language's lexical floor (character n-gram TF-IDF retrieval on the same sentences)
/// beside the model's pooled μ.
#[derive(Debug, Clone)]
pub struct LexicalRow {
    pub language: String,
    pub pooling: String,
    pub lexical_mexa: f64,
    pub lexical_near_chance: bool,
    pub model_mean: f64,
    pub model_max: f64,
}

/// One language's best layer chosen in-sample against held out, for one score (`mexa`, or
/// `probe` for a probe's accuracy).
#[derive(Debug, Clone)]
pub struct ChoiceRow {
    pub score: String,
    pub language: String,
    pub pooling: String,
    pub n: i32,
    pub in_sample: f64,
    pub in_sample_layer: i32,
    pub split_half: f64,
    pub lolo: f64,
}

/// The accuracy of one language's aligned and unaligned sentences (at one hidden state, or
/// by majority over them: `layer` −1).
#[derive(Debug, Clone)]
pub struct InstanceRow {
    pub language: String,
    pub pooling: String,
    pub layer: i32,
    pub aligned: i32,
    pub aligned_accuracy: f64,
    pub unaligned: i32,
    pub unaligned_accuracy: f64,
    /// Aligned minus unaligned, with its 95% interval.
    pub difference: (f64, f64, f64),
}

/// Leave-one-language-out predictions of accuracy for one scope (a model, or several pooled),
/// task, pooling and layer pooling.
#[derive(Debug, Clone)]
pub struct PredictionSet {
    pub scope: String,
    pub task: String,
    pub pooling: String,
    pub layer_pool: String,
    /// The methods' names, and per point (language, measured, one prediction per method).
    pub methods: Vec<String>,
    pub points: Vec<(String, f64, Vec<f64>)>,
    /// Per method (MAE, RMSE).
    pub errors: Vec<(f64, f64)>,
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
    pub pairs: Vec<Node<PairGrid>>,
    pub lens: Vec<Node<LensCurve>>,
    pub summaries: Vec<Node<AggRow>>,
    pub points: Vec<Node<PointRow>>,
    pub correlations: Vec<Node<CorrRow>>,
    pub lexical: Vec<Node<LexicalRow>>,
    pub layer_choices: Vec<Node<ChoiceRow>>,
    pub instances: Vec<Node<InstanceRow>>,
    pub predictions: Vec<PredictionSet>,
    /// The pivot's own task scores (its μ against itself is 1 by definition), per join_tasks
    /// node: drawn on the scatters and written as the first row of the per-language tables.
    pub pivots: Vec<PivotScore>,
}

/// The pivot language's own score on one task, as a join_tasks node recorded it.
#[derive(Debug, Clone)]
pub struct PivotScore {
    /// The join_tasks node's label.
    pub points: String,
    pub language: String,
    pub task: String,
    pub score: f64,
}

/// `s` cut to at most `n` characters, with a marker saying how much was cut: the report
/// renders what it is given in time linear in it, and no cell or label is allowed to be huge.
pub fn clip(s: &str, n: usize) -> String {
    match s.char_indices().nth(n) {
        None => s.to_string(),
        Some((at, _)) => format!("{}…[{} more characters]", &s[..at], s[at..].chars().count()),
    }
}

impl ReportData {
    /// A copy with every text bounded (labels, languages, names; the description longer):
    /// what [`page::render`] draws, so a planted 20 MB string costs nothing.
    pub fn bounded(&self) -> ReportData {
        const NAME: usize = 80;
        const LABEL: usize = 200;
        let c = |s: &String| clip(s, NAME);
        fn node<T: Clone>(n: &Node<T>, row: impl Fn(&T) -> T) -> Node<T> {
            Node {
                label: clip(&n.label, LABEL),
                key: clip(&n.key, 64),
                cell: n.cell.iter().map(|(a, v)| (clip(a, NAME), clip(v, NAME))).collect(),
                rows: n.rows.iter().map(row).collect(),
            }
        }
        ReportData {
            title: clip(&self.title, LABEL),
            description: clip(&self.description, 4000),
            curve_languages: self.curve_languages.iter().map(c).collect(),
            alignments: self
                .alignments
                .iter()
                .map(|n| node(n, |r| Curve { language: c(&r.language), pooling: c(&r.pooling), ..r.clone() }))
                .collect(),
            pairs: self
                .pairs
                .iter()
                .map(|n| {
                    node(n, |r| PairGrid {
                        pooling: c(&r.pooling),
                        layer_pool: c(&r.layer_pool),
                        languages: r.languages.iter().map(c).collect(),
                        ..r.clone()
                    })
                })
                .collect(),
            lens: self.lens.iter().map(|n| node(n, |r| LensCurve { language: c(&r.language), ..r.clone() })).collect(),
            summaries: self
                .summaries
                .iter()
                .map(|n| {
                    node(n, |r| AggRow {
                        language: c(&r.language),
                        pooling: c(&r.pooling),
                        metric: c(&r.metric),
                        ..r.clone()
                    })
                })
                .collect(),
            points: self
                .points
                .iter()
                .map(|n| {
                    node(n, |r| PointRow {
                        language: c(&r.language),
                        task: c(&r.task),
                        pooling: c(&r.pooling),
                        layer_pool: c(&r.layer_pool),
                        ..r.clone()
                    })
                })
                .collect(),
            correlations: self
                .correlations
                .iter()
                .map(|n| {
                    node(n, |r| CorrRow {
                        task: c(&r.task),
                        pooling: c(&r.pooling),
                        layer_pool: c(&r.layer_pool),
                        floor_note: clip(&r.floor_note, 1000),
                        ..r.clone()
                    })
                })
                .collect(),
            lexical: self
                .lexical
                .iter()
                .map(|n| node(n, |r| LexicalRow { language: c(&r.language), pooling: c(&r.pooling), ..r.clone() }))
                .collect(),
            layer_choices: self
                .layer_choices
                .iter()
                .map(|n| {
                    node(n, |r| ChoiceRow {
                        score: c(&r.score),
                        language: c(&r.language),
                        pooling: c(&r.pooling),
                        ..r.clone()
                    })
                })
                .collect(),
            instances: self
                .instances
                .iter()
                .map(|n| node(n, |r| InstanceRow { language: c(&r.language), pooling: c(&r.pooling), ..r.clone() }))
                .collect(),
            predictions: self
                .predictions
                .iter()
                .map(|p| PredictionSet {
                    scope: clip(&p.scope, LABEL),
                    task: c(&p.task),
                    pooling: c(&p.pooling),
                    layer_pool: c(&p.layer_pool),
                    methods: p.methods.iter().map(c).collect(),
                    points: p.points.iter().map(|(l, a, v)| (c(l), *a, v.clone())).collect(),
                    errors: p.errors.clone(),
                })
                .collect(),
            pivots: self
                .pivots
                .iter()
                .map(|p| PivotScore {
                    points: clip(&p.points, LABEL),
                    language: c(&p.language),
                    task: c(&p.task),
                    score: p.score,
                })
                .collect(),
        }
    }
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
