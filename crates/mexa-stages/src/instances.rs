//! `align_instances`: alignment sentence by sentence. For every language, pooling, hidden state
//! and parallel pair: whether it retrieves its translation (μ's hit: it wins its row and its
//! column of the cosine matrix; and each P@1 direction alone), its cosine, and the mean cosine
//! of the pivot sentence with the language's other sentences (anisotropy); and what each side
//! retrieves (`pivot_retrieves`: the language sentence nearest the pivot sentence;
//! `language_retrieves`: the pivot sentence nearest the language sentence; the pair's own id on
//! a hit), which `mexa show … --sentences` prints as text. `align`'s shares are
//! the means of these hits (tested); held-out layer choice (`layer_choice`) and instance-level
//! accuracy (`instance_accuracy`) read them.
use crate::align::against_pivot;
use crate::embed::embeddings_meta;
use crate::util::{bool_col, col_bool, col_f64, col_i32, col_str, f64_col, i32_col, schema, utf8_col};
use anyhow::Result;
use arrow::array::RecordBatch;
use arrow::datatypes::DataType;
use mexa_metrics::align::cosine_matrix;
use mexa_metrics::{pair_outcomes, PairOutcome};
use mexa_model::Pooling;
use mexa_pipeline::{Ctx, InputSpec, Output, ParamSpec, Stage, Table};

pub struct AlignInstances;

mexa_pipeline::stage_params! {
    /// `align_instances`' parameters.
    struct Params {
        /// poolings to score (empty: all the embeddings have)
        poolings: Vec<Pooling> as EnumList(Pooling::NAMES) = vec![],
        /// remove each language's mean embedding (per layer) first, as `align` does
        centering: bool = false,
    }
}

mexa_pipeline::param_enum! {
    /// Which retrieval makes a sentence "aligned": μ's (its row and its column), or one P@1
    /// direction.
    pub enum Retrieval {
        Mexa = "mexa",
        P1PivotToLang = "p1_pivot_to_lang",
        P1LangToPivot = "p1_lang_to_pivot",
    }
}

impl Retrieval {
    pub fn hit(self, o: &PairOutcome) -> bool {
        match self {
            Retrieval::Mexa => o.mexa(),
            Retrieval::P1PivotToLang => o.row,
            Retrieval::P1LangToPivot => o.col,
        }
    }
}

/// One parallel pair at one hidden state.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceRow {
    pub language: String,
    pub pooling: Pooling,
    pub layer: i32,
    pub sentence_id: i32,
    pub outcome: PairOutcome,
}

fn instances_table(rows: &[InstanceRow]) -> Result<Table> {
    let sch = schema(&[
        ("language", DataType::Utf8),
        ("pooling", DataType::Utf8),
        ("layer", DataType::Int32),
        ("sentence_id", DataType::Int32),
        ("mexa", DataType::Boolean),
        ("p1_pivot_to_lang", DataType::Boolean),
        ("p1_lang_to_pivot", DataType::Boolean),
        ("cosine", DataType::Float64),
        ("other_cosine", DataType::Float64),
        ("pivot_retrieves", DataType::Int32),
        ("language_retrieves", DataType::Int32),
    ]);
    let cols = vec![
        utf8_col(rows.iter().map(|r| r.language.clone()).collect()),
        utf8_col(rows.iter().map(|r| r.pooling.name().to_string()).collect()),
        i32_col(rows.iter().map(|r| r.layer).collect()),
        i32_col(rows.iter().map(|r| r.sentence_id).collect()),
        bool_col(rows.iter().map(|r| r.outcome.mexa()).collect()),
        bool_col(rows.iter().map(|r| r.outcome.row).collect()),
        bool_col(rows.iter().map(|r| r.outcome.col).collect()),
        f64_col(rows.iter().map(|r| r.outcome.cosine).collect()),
        f64_col(rows.iter().map(|r| r.outcome.other_cosine).collect()),
        i32_col(rows.iter().map(|r| r.outcome.pivot_retrieves as i32).collect()),
        i32_col(rows.iter().map(|r| r.outcome.language_retrieves as i32).collect()),
    ];
    Ok(Table::new(sch.clone(), vec![RecordBatch::try_new(sch, cols)?]))
}

/// Reads an `align_instances` table back (its writer is [`instances_table`]).
pub fn read_instances(t: &Table) -> Result<Vec<InstanceRow>> {
    let mut out = Vec::new();
    for b in &t.batches {
        let (l, p, layer, sid) =
            (col_str(b, "language")?, col_str(b, "pooling")?, col_i32(b, "layer")?, col_i32(b, "sentence_id")?);
        let (row, col, cos, other) = (
            col_bool(b, "p1_pivot_to_lang")?,
            col_bool(b, "p1_lang_to_pivot")?,
            col_f64(b, "cosine")?,
            col_f64(b, "other_cosine")?,
        );
        let (pr, lr) = (col_i32(b, "pivot_retrieves")?, col_i32(b, "language_retrieves")?);
        for i in 0..b.num_rows() {
            out.push(InstanceRow {
                language: l.value(i).into(),
                pooling: Pooling::parse(p.value(i))?,
                layer: layer.value(i),
                sentence_id: sid.value(i),
                outcome: PairOutcome {
                    row: row.value(i),
                    col: col.value(i),
                    cosine: cos.value(i),
                    other_cosine: other.value(i),
                    pivot_retrieves: pr.value(i) as u32,
                    language_retrieves: lr.value(i) as u32,
                },
            });
        }
    }
    Ok(out)
}

impl Stage for AlignInstances {
    fn kind(&self) -> &'static str {
        "align_instances"
    }
    fn version(&self) -> u32 {
        // 2: what each side retrieves (`pivot_retrieves`, `language_retrieves`).
        2
    }
    fn doc(&self) -> &'static str {
        "Alignment per sentence: for every language, pooling, hidden state and parallel pair, whether it retrieves its translation (μ's hit, and each P@1 direction), its cosine, the mean cosine of the pivot sentence with the language's other sentences (anisotropy), and what each side retrieves (the nearest sentence's id: the pair's own on a hit); align's shares are the means of these"
    }
    fn params(&self) -> Vec<ParamSpec> {
        Params::specs()
    }
    fn inputs(&self) -> Vec<InputSpec> {
        vec![InputSpec::one("embeddings", "an embed artifact")]
    }
    fn check_params(&self, params: &serde_json::Value) -> Result<()> {
        mexa_pipeline::check::<Params>(params)
    }
    fn run(&self, ctx: &Ctx) -> Result<Output> {
        let p: Params = ctx.typed()?;
        let input = ctx.input("embeddings")?;
        let (pivot, _) = embeddings_meta(ctx, input)?;
        let parts = against_pivot(ctx, input, &pivot, &p.poolings, p.centering, |lang, pooling, l, a, b| {
            let n = a.rows.min(b.rows);
            pair_outcomes(&cosine_matrix(a, b, n), n)
                .into_iter()
                .enumerate()
                .map(|(i, outcome)| InstanceRow {
                    language: lang.to_string(),
                    pooling,
                    layer: l as i32,
                    sentence_id: i as i32,
                    outcome,
                })
                .collect::<Vec<_>>()
        })?;
        let rows: Vec<InstanceRow> = parts.into_iter().flatten().collect();
        Ok(Output { table: instances_table(&rows)?, meta: serde_json::json!({"pivot": pivot}) })
    }
}

/// Per-sentence outcomes grouped by (language, pooling) into `[layer][sentence_id]`, from rows
/// `(language, pooling, layer, sentence_id, outcome)` in any order; every layer of a group must
/// hold the same sentences 0..n, or the table is refused (`what` names it in the error).
pub(crate) fn outcome_grids<'a>(
    rows: impl Iterator<Item = (&'a str, &'a str, i32, i32, bool)>,
    what: &str,
) -> Result<std::collections::BTreeMap<(String, String), Vec<Vec<bool>>>> {
    use std::collections::BTreeMap;
    let mut cells: BTreeMap<(String, String), BTreeMap<i32, BTreeMap<i32, bool>>> = BTreeMap::new();
    for (l, p, layer, sid, hit) in rows {
        cells.entry((l.to_string(), p.to_string())).or_default().entry(layer).or_default().insert(sid, hit);
    }
    let mut out = BTreeMap::new();
    for (group, layers) in cells {
        let n = layers.values().next().map_or(0, |s| s.len());
        let mut grid = Vec::with_capacity(layers.len());
        for (i, (layer, sentences)) in layers.into_iter().enumerate() {
            let ids_ok = sentences.len() == n && sentences.keys().enumerate().all(|(k, &id)| id == k as i32);
            if layer != i as i32 || !ids_ok {
                anyhow::bail!(
                    "{what}: {} ({}) does not have the same sentences 0..{n} at every layer 0.. (layer {layer})",
                    group.0,
                    group.1
                );
            }
            grid.push(sentences.into_values().collect());
        }
        out.insert(group, grid);
    }
    Ok(out)
}
