//! `align`: every language against the pivot, per layer and pooling: MEXA μ, P@1 both ways,
//! mean parallel cosine, margin accuracy, linear CKA, and μ's uncertainty (chance level,
//! the chance tail probability, a bootstrap interval over sentences, a near-chance flag).
//! Optionally on mean-centred embeddings. Parallel over layers × poolings.
use crate::embed::{check_comparable, embeddings_meta, read_shard};
use crate::util::{bool_col, col_f64, col_i32, col_str, f64_col, i32_col, schema, utf8_col};
use anyhow::{anyhow, bail, Result};
use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::DataType;
use mexa_metrics::{align_with_gram, mexa_uncertainty, Alignment, Matrix, Uncertainty};
use mexa_model::Pooling;
use mexa_pipeline::{Ctx, InputSpec, Output, ParamSpec, Stage, Table};
use rayon::prelude::*;
use std::collections::HashMap;

pub struct Align;

mexa_pipeline::stage_params! {
    /// `align`'s parameters (`align_pairs` takes the same).
    pub(crate) struct Params {
        /// poolings to score (empty: all the embeddings have)
        poolings: Vec<Pooling> as EnumList(Pooling::NAMES) = vec![],
        /// neighbourhood size of the margin score
        margin_k: usize = 4,
        /// remove each language's mean embedding (per layer) before scoring: the usual fix
        /// for anisotropy (every sentence vector sharing one large direction)
        centering: bool = false,
    }
    check(p) {
        if p.margin_k == 0 {
            return Err("`margin_k` must be at least 1 (the margin compares a pair with its k nearest neighbours)".into());
        }
        Ok(())
    }
}

/// Embeddings as the scores see them: each (pooling, layer) matrix mean-centred when asked.
pub(crate) fn prepared(emb: HashMap<Pooling, Vec<Matrix>>, centering: bool) -> HashMap<Pooling, Vec<Matrix>> {
    if !centering {
        return emb;
    }
    emb.into_iter().map(|(p, ms)| (p, ms.iter().map(Matrix::centered).collect())).collect()
}

mexa_pipeline::param_enum! {
    /// A score column of an alignment table; [`Metric::ALL`] is the columns' order.
    pub enum Metric {
        Mexa = "mexa",
        P1PivotToLang = "p1_pivot_to_lang",
        P1LangToPivot = "p1_lang_to_pivot",
        MeanCosine = "mean_cosine",
        MarginAcc = "margin_acc",
        Cka = "cka",
    }
}

impl Metric {
    /// This score of one alignment.
    pub fn of(self, a: &Alignment) -> f64 {
        match self {
            Metric::Mexa => a.mexa,
            Metric::P1PivotToLang => a.p1_pivot_to_lang,
            Metric::P1LangToPivot => a.p1_lang_to_pivot,
            Metric::MeanCosine => a.mean_cosine,
            Metric::MarginAcc => a.margin_acc,
            Metric::Cka => a.cka,
        }
    }
}

/// One row of an alignment table; [`alignment_table`] writes them and [`read_alignment`]
/// reads them back, so the columns are defined here only.
#[derive(Debug, Clone)]
pub struct Row {
    pub language: String,
    pub pooling: Pooling,
    pub layer: i32,
    pub n: i32,
    /// One score per [`Metric::ALL`], in that order.
    pub scores: Vec<f64>,
}

impl Row {
    /// The row of one language's scores at a layer and pooling.
    pub fn new(language: &str, pooling: Pooling, layer: usize, a: &Alignment) -> Self {
        Row {
            language: language.to_string(),
            pooling,
            layer: layer as i32,
            n: a.n as i32,
            scores: Metric::ALL.iter().map(|m| m.of(a)).collect(),
        }
    }

    pub fn score(&self, m: Metric) -> f64 {
        self.scores[m as usize]
    }

    /// μ's chance level, chance tail probability and bootstrap interval (from n and μ).
    pub fn uncertainty(&self) -> Uncertainty {
        mexa_uncertainty(self.n.max(0) as usize, self.score(Metric::Mexa))
    }
}

/// The uncertainty columns after the scores: μ's 95% bootstrap interval over sentences, the
/// probability of at least its hits under chance (1/(2n − 1) per pair), and whether that is
/// ≥ 0.05 (near chance).
const UNCERTAINTY: [&str; 4] = ["mexa_lo", "mexa_hi", "mexa_chance_p", "near_chance"];

impl Row {
    fn uncertainty_cols(rows: &[Row]) -> Vec<ArrayRef> {
        let u: Vec<Uncertainty> = rows.iter().map(Row::uncertainty).collect();
        vec![
            f64_col(u.iter().map(|u| u.lo).collect()),
            f64_col(u.iter().map(|u| u.hi).collect()),
            f64_col(u.iter().map(|u| u.chance_p).collect()),
            bool_col(u.iter().map(|u| u.near_chance).collect()),
        ]
    }
}

/// Every language of an embed artifact but the pivot, against the pivot at every (pooling,
/// hidden state): `score(language, pooling, layer, pivot's matrix, language's matrix)`, in shard
/// order, then pooling and layer order (parallel within a language; one language's embeddings
/// in memory at a time), on mean-centred embeddings when asked. `align` and
/// `align_instances` share it.
pub(crate) fn against_pivot<T: Send>(
    ctx: &Ctx,
    input: &mexa_pipeline::InputRef,
    pivot: &str,
    wanted: &[Pooling],
    centering: bool,
    score: impl Fn(&str, Pooling, usize, &Matrix, &Matrix) -> T + Sync,
) -> Result<Vec<T>> {
    let shards = ctx.shards_of(input)?;
    let pivot_key = &shards.iter().find(|(l, _)| l == pivot).ok_or_else(|| anyhow!("no pivot shard"))?.1;
    let pivot_emb = prepared(read_shard(ctx, &input.label, pivot, pivot_key)?, centering);
    let poolings = chosen_poolings(&pivot_emb, wanted, &input.label)?;
    ctx.progress.set_length(shards.len().saturating_sub(1) as u64);
    let mut out = Vec::new();
    for (lang, key) in shards.iter().filter(|(l, _)| l != pivot) {
        let emb = prepared(read_shard(ctx, &input.label, lang, key)?, centering);
        check_comparable(&input.label, (pivot, &pivot_emb), (lang, &emb))?;
        let jobs: Vec<(Pooling, usize)> =
            poolings.iter().flat_map(|&p| (0..pivot_emb[&p].len()).map(move |l| (p, l))).collect();
        let part: Vec<T> = jobs.par_iter().map(|&(p, l)| score(lang, p, l, &pivot_emb[&p][l], &emb[&p][l])).collect();
        out.extend(part);
        ctx.progress.inc(1);
    }
    Ok(out)
}

/// The pivot's unit centred Gram per (pooling, hidden state, n), computed once and read by
/// every language (CKA needs it for each pair), while the kept Grams stay under
/// [`PivotGrams::BUDGET`] bytes; past it a pair computes its own (the same bits, more time).
#[derive(Default)]
pub(crate) struct PivotGrams {
    kept: std::sync::Mutex<(usize, HashMap<(Pooling, usize, usize), std::sync::Arc<Vec<f64>>>)>,
}

impl PivotGrams {
    /// 256 MiB: 33 hidden states × 2 poolings at n = 1000 is 528 MB, at n = 100 5 MB.
    const BUDGET: usize = 256 << 20;

    pub(crate) fn get(
        &self,
        pool: Pooling,
        layer: usize,
        pivot: &Matrix,
        n: usize,
    ) -> Option<std::sync::Arc<Vec<f64>>> {
        let key = (pool, layer, n);
        if let Some(g) = self.kept.lock().unwrap().1.get(&key) {
            return Some(g.clone());
        }
        let bytes = n * n * 8;
        if self.kept.lock().unwrap().0 + bytes > Self::BUDGET {
            return None;
        }
        // Computed outside the lock; two threads may both compute one, and the first is kept.
        let g = std::sync::Arc::new(pivot.unit_centred_gram(n));
        let mut kept = self.kept.lock().unwrap();
        if !kept.1.contains_key(&key) {
            kept.0 += bytes;
            kept.1.insert(key, g.clone());
        }
        Some(kept.1[&key].clone())
    }
}

/// The poolings to score: those asked for (all the embeddings have when none are), in name
/// order; asking for one the embeddings lack is an error naming what they have.
pub(crate) fn chosen_poolings<V>(have: &HashMap<Pooling, V>, wanted: &[Pooling], label: &str) -> Result<Vec<Pooling>> {
    for w in wanted {
        if !have.contains_key(w) {
            let names: Vec<&str> = have.keys().map(|p| p.name()).collect();
            bail!("pooling `{w}` was not computed by {label} (it has: {})", names.join(", "));
        }
    }
    let mut poolings: Vec<Pooling> = have.keys().filter(|p| wanted.is_empty() || wanted.contains(p)).copied().collect();
    poolings.sort_by_key(|p| p.name());
    Ok(poolings)
}

/// The alignment table of these rows.
pub fn alignment_table(rows: &[Row]) -> Result<Table> {
    let mut fields = vec![
        ("language", DataType::Utf8),
        ("pooling", DataType::Utf8),
        ("layer", DataType::Int32),
        ("n", DataType::Int32),
    ];
    fields.extend(Metric::ALL.iter().map(|m| (m.name(), DataType::Float64)));
    fields.extend(UNCERTAINTY[..3].iter().map(|c| (*c, DataType::Float64)));
    fields.push((UNCERTAINTY[3], DataType::Boolean));
    let sch = schema(&fields);
    let mut cols = vec![
        utf8_col(rows.iter().map(|r| r.language.clone()).collect()),
        utf8_col(rows.iter().map(|r| r.pooling.name().to_string()).collect()),
        i32_col(rows.iter().map(|r| r.layer).collect()),
        i32_col(rows.iter().map(|r| r.n).collect()),
    ];
    for j in 0..Metric::ALL.len() {
        cols.push(f64_col(rows.iter().map(|r| r.scores[j]).collect()));
    }
    cols.extend(Row::uncertainty_cols(rows));
    let b = RecordBatch::try_new(sch.clone(), cols)?;
    Ok(Table::new(sch, vec![b]))
}

pub fn read_alignment(t: &Table) -> Result<Vec<Row>> {
    let mut out = Vec::new();
    for b in &t.batches {
        let (l, p, layer, n) =
            (col_str(b, "language")?, col_str(b, "pooling")?, col_i32(b, "layer")?, col_i32(b, "n")?);
        let cols = Metric::ALL.iter().map(|m| col_f64(b, m.name())).collect::<Result<Vec<_>>>()?;
        for i in 0..b.num_rows() {
            out.push(Row {
                language: l.value(i).into(),
                pooling: Pooling::parse(p.value(i))?,
                layer: layer.value(i),
                n: n.value(i),
                scores: cols.iter().map(|c| c.value(i)).collect(),
            });
        }
    }
    Ok(out)
}

impl Stage for Align {
    fn kind(&self) -> &'static str {
        "align"
    }
    fn version(&self) -> u32 {
        // 2: cosines as a tiled product with fused multiply-adds (last bits differ from 1).
        // 3: linear CKA and μ's uncertainty columns; the `centering` option.
        3
    }
    fn doc(&self) -> &'static str {
        "Scores each language against the pivot per layer and pooling: MEXA μ (strict, n = min count) with its chance level, chance probability and bootstrap interval, P@1 both ways, mean parallel cosine, margin (xsim) accuracy, linear CKA; optionally on mean-centred embeddings"
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
        let (pivot, meta) = embeddings_meta(ctx, input)?;
        let k = p.margin_k;
        let grams = PivotGrams::default();
        let rows = against_pivot(ctx, input, &pivot, &p.poolings, p.centering, |lang, pool, l, a, b| {
            let gram = grams.get(pool, l, a, a.rows.min(b.rows));
            Row::new(lang, pool, l, &align_with_gram(a, gram.as_deref().map(Vec::as_slice), b, k))
        })?;
        Ok(Output {
            table: alignment_table(&rows)?,
            meta: serde_json::json!({"pivot": pivot, "architecture": meta.architecture}),
        })
    }
}
