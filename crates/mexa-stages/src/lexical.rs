//! `lexical`: the floor spelling overlap alone gives. Each language's sentences are retrieved
//! against the pivot's by character n-gram TF-IDF cosine (scikit-learn's `TfidfVectorizer`
//! exactly, fitted per pair on its 2n sentences: `mexa_metrics::lexical`) and scored with
//! `align`'s scores (μ with its chance tail and interval, P@1 both ways, mean cosine, margin).
//! With an aggregate table on the `scores` input, each row also carries the model's pooled
//! score (mean and max over layers) and how far it is above the baseline.
use crate::aggregate::read_summary;
use crate::align::Metric;
use crate::corpus::read_corpus;
use crate::util::{
    bool_col, col_bool, col_f64, col_i32, col_str, f64_col_undefined, f64_or_nan, i32_col, schema_with_nulls, utf8_col,
};
use anyhow::{bail, Result};
use arrow::array::RecordBatch;
use arrow::datatypes::DataType;
use mexa_metrics::lexical::{lexical_align, Analyzer, TfidfOptions};
use mexa_metrics::{mexa_uncertainty, Alignment};
use mexa_pipeline::{Ctx, InputSpec, Output, ParamSpec, Stage, Table};

pub struct Lexical;

mexa_pipeline::param_enum! {
    /// scikit-learn's character analyzers.
    pub enum AnalyzerName { CharWb = "char_wb", Char = "char" }
}

mexa_pipeline::stage_params! {
    /// `lexical`'s parameters.
    struct Params {
        /// character n-grams inside word boundaries, words padded with a space (char_wb), or
        /// over the whole text (char), as scikit-learn's TfidfVectorizer
        analyzer: AnalyzerName = AnalyzerName::CharWb,
        /// [min, max] n-gram lengths, inclusive
        ngram_range: Vec<usize> = vec![1, 4],
        /// neighbourhood size of the margin score
        margin_k: usize = 4,
    }
}

/// The baseline's scores, as the table's `lexical_*` columns.
const SCORES: [Metric; 5] =
    [Metric::Mexa, Metric::P1PivotToLang, Metric::P1LangToPivot, Metric::MeanCosine, Metric::MarginAcc];

/// One row: a language's baseline, and (with `scores`) one pooling's model scores beside it.
#[derive(Debug, Clone)]
pub struct LexicalRow {
    pub language: String,
    /// The model's pooling ("" without `scores`).
    pub pooling: String,
    pub n: i32,
    /// The pooled metric and the model's mean and max over layers (NaN without `scores`).
    pub metric: String,
    pub model_mean: f64,
    pub model_max: f64,
    /// The baseline's scores in [`SCORES`] order.
    pub lexical: Vec<f64>,
    pub lexical_lo: f64,
    pub lexical_hi: f64,
    pub lexical_near_chance: bool,
}

impl LexicalRow {
    /// The baseline's value of the pooled metric (NaN for CKA, which has none).
    pub fn baseline(&self) -> f64 {
        SCORES.iter().position(|m| m.name() == self.metric).map_or(f64::NAN, |i| self.lexical[i])
    }
    pub fn lexical_mexa(&self) -> f64 {
        self.lexical[0]
    }
}

fn lexical_table(rows: &[LexicalRow]) -> Result<Table> {
    let mut fields = vec![
        ("language", DataType::Utf8),
        ("pooling", DataType::Utf8),
        ("n", DataType::Int32),
        ("metric", DataType::Utf8),
        ("model_mean", DataType::Float64),
        ("model_max", DataType::Float64),
    ];
    let names: Vec<String> = SCORES.iter().map(|m| format!("lexical_{}", m.name())).collect();
    fields.extend(names.iter().map(|n| (n.as_str(), DataType::Float64)));
    fields.extend([
        ("lexical_mexa_lo", DataType::Float64),
        ("lexical_mexa_hi", DataType::Float64),
        ("lexical_near_chance", DataType::Boolean),
        ("mean_minus_lexical", DataType::Float64),
        ("max_minus_lexical", DataType::Float64),
    ]);
    // Every number may be undefined: the model's without `scores`, a difference for a metric
    // the baseline lacks (CKA).
    let floats: Vec<&str> = fields.iter().filter(|f| f.1 == DataType::Float64).map(|f| f.0).collect();
    let sch = schema_with_nulls(&fields, &floats);
    let f = |g: &dyn Fn(&LexicalRow) -> f64| f64_col_undefined(rows.iter().map(g).collect());
    let mut cols = vec![
        utf8_col(rows.iter().map(|r| r.language.clone()).collect()),
        utf8_col(rows.iter().map(|r| r.pooling.clone()).collect()),
        i32_col(rows.iter().map(|r| r.n).collect()),
        utf8_col(rows.iter().map(|r| r.metric.clone()).collect()),
        f(&|r| r.model_mean),
        f(&|r| r.model_max),
    ];
    for j in 0..SCORES.len() {
        cols.push(f(&|r| r.lexical[j]));
    }
    cols.extend([
        f(&|r| r.lexical_lo),
        f(&|r| r.lexical_hi),
        bool_col(rows.iter().map(|r| r.lexical_near_chance).collect()),
        f(&|r| r.model_mean - r.baseline()),
        f(&|r| r.model_max - r.baseline()),
    ]);
    Ok(Table::new(sch.clone(), vec![RecordBatch::try_new(sch, cols)?]))
}

/// Reads a lexical table back (its writer is [`lexical_table`]).
pub fn read_lexical(t: &Table) -> Result<Vec<LexicalRow>> {
    let mut out = Vec::new();
    for b in &t.batches {
        let (l, p, n, m) = (col_str(b, "language")?, col_str(b, "pooling")?, col_i32(b, "n")?, col_str(b, "metric")?);
        let (mm, mx) = (col_f64(b, "model_mean")?, col_f64(b, "model_max")?);
        let lex = SCORES.iter().map(|s| col_f64(b, &format!("lexical_{}", s.name()))).collect::<Result<Vec<_>>>()?;
        let (lo, hi, near) =
            (col_f64(b, "lexical_mexa_lo")?, col_f64(b, "lexical_mexa_hi")?, col_bool(b, "lexical_near_chance")?);
        for i in 0..b.num_rows() {
            out.push(LexicalRow {
                language: l.value(i).into(),
                pooling: p.value(i).into(),
                n: n.value(i),
                metric: m.value(i).into(),
                model_mean: f64_or_nan(mm, i),
                model_max: f64_or_nan(mx, i),
                lexical: lex.iter().map(|c| f64_or_nan(c, i)).collect(),
                lexical_lo: f64_or_nan(lo, i),
                lexical_hi: f64_or_nan(hi, i),
                lexical_near_chance: near.value(i),
            });
        }
    }
    Ok(out)
}

impl Stage for Lexical {
    fn kind(&self) -> &'static str {
        "lexical"
    }
    fn version(&self) -> u32 {
        1
    }
    fn doc(&self) -> &'static str {
        "The lexical floor: each language's sentences retrieved against the pivot's by character n-gram TF-IDF cosine (scikit-learn's TfidfVectorizer, fitted per pair), scored as `align` scores embeddings (μ with its chance tail and interval, P@1 both ways, mean cosine, margin); with an aggregate on `scores`, the model's pooled score beside it and the difference"
    }
    fn params(&self) -> Vec<ParamSpec> {
        Params::specs()
    }
    fn inputs(&self) -> Vec<InputSpec> {
        vec![
            InputSpec::one("corpus", "the load_corpus table the embeddings were made from"),
            InputSpec::one("scores", "an aggregate table: the model's pooled scores, shown beside the baseline")
                .optional(),
        ]
    }
    fn check_params(&self, params: &serde_json::Value) -> Result<()> {
        mexa_pipeline::check::<Params>(params)
    }
    fn run(&self, ctx: &Ctx) -> Result<Output> {
        let p: Params = ctx.typed()?;
        let (ngram_min, ngram_max) = match p.ngram_range.as_slice() {
            &[a, b] if 1 <= a && a <= b => (a, b),
            other => bail!("`ngram_range` must be [min, max] with 1 ≤ min ≤ max; got {other:?}"),
        };
        let analyzer = match p.analyzer {
            AnalyzerName::CharWb => Analyzer::CharWb,
            AnalyzerName::Char => Analyzer::Char,
        };
        let o = TfidfOptions { analyzer, ngram_min, ngram_max };
        let (order, texts) = read_corpus(&ctx.read(ctx.input("corpus")?)?)?;
        let Some(pivot) = order.first() else { bail!("empty corpus") };
        let pivot_texts: Vec<&str> = texts[pivot].iter().map(String::as_str).collect();
        let mut base: Vec<(String, Alignment)> = Vec::new();
        for lang in order.iter().skip(1) {
            let t: Vec<&str> = texts[lang].iter().map(String::as_str).collect();
            base.push((lang.clone(), lexical_align(&pivot_texts, &t, o, p.margin_k.max(1))));
        }
        let row = |lang: &str, a: &Alignment| {
            let u = mexa_uncertainty(a.n, a.mexa);
            LexicalRow {
                language: lang.to_string(),
                pooling: String::new(),
                n: a.n as i32,
                metric: String::new(),
                model_mean: f64::NAN,
                model_max: f64::NAN,
                lexical: SCORES.iter().map(|m| m.of(a)).collect(),
                lexical_lo: u.lo,
                lexical_hi: u.hi,
                lexical_near_chance: u.near_chance,
            }
        };
        let rows: Vec<LexicalRow> = match ctx.gathered("scores").first() {
            None => base.iter().map(|(l, a)| row(l, a)).collect(),
            Some(input) => {
                let mut out = Vec::new();
                for s in read_summary(&ctx.read(input)?)? {
                    let Some((_, a)) = base.iter().find(|(l, _)| *l == s.language) else {
                        bail!("{}: language {} is not in the corpus", input.label, s.language);
                    };
                    if s.n != a.n as i32 {
                        bail!(
                            "{}: {} has n = {} sentence pairs, the corpus {}: the baseline must score the same sentences",
                            input.label,
                            s.language,
                            s.n,
                            a.n
                        );
                    }
                    out.push(LexicalRow {
                        pooling: s.pooling,
                        metric: s.metric,
                        model_mean: s.mean,
                        model_max: s.max,
                        ..row(&s.language, a)
                    });
                }
                out
            }
        };
        let meta = serde_json::json!({
            "pivot": pivot,
            "analyzer": p.analyzer,
            "ngram_range": [ngram_min, ngram_max],
            "weighting": "raw counts × smooth idf ln((1+N)/(1+df))+1, rows L2-normalised, fitted per pair on its 2n sentences",
        });
        Ok(Output { table: lexical_table(&rows)?, meta })
    }
}
