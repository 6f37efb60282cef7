//! `align`: every language against the pivot, per layer and pooling: MEXA μ, P@1 both ways,
//! mean parallel cosine, margin accuracy. Parallel over layers × poolings.
use crate::embed::read_embeddings;
use crate::util::{col_f64, col_i32, col_str, f64_col, i32_col, schema, utf8_col};
use anyhow::{anyhow, bail, Result};
use arrow::array::RecordBatch;
use arrow::datatypes::DataType;
use mexa_metrics::{align, Alignment};
use mexa_pipeline::{Ctx, InputSpec, Output, ParamSpec, ParamType, Stage, Table};
use rayon::prelude::*;

pub struct Align;

/// `align`'s parameters (declared for pipelines in `params()`).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    poolings: Vec<String>,
    margin_k: usize,
}

/// Score columns of an alignment table, in order.
pub const METRICS: &[&str] = &["mexa", "p1_pivot_to_lang", "p1_lang_to_pivot", "mean_cosine", "margin_acc"];

fn metric(a: &Alignment, name: &str) -> f64 {
    match name {
        "mexa" => a.mexa,
        "p1_pivot_to_lang" => a.p1_pivot_to_lang,
        "p1_lang_to_pivot" => a.p1_lang_to_pivot,
        "mean_cosine" => a.mean_cosine,
        _ => a.margin_acc,
    }
}

/// One row of an alignment table.
#[derive(Debug, Clone)]
pub struct Row {
    pub language: String,
    pub pooling: String,
    pub layer: i32,
    pub n: i32,
    pub scores: Vec<f64>,
}

pub fn read_alignment(t: &Table) -> Result<Vec<Row>> {
    let mut out = Vec::new();
    for b in &t.batches {
        let (l, p, layer, n) =
            (col_str(b, "language")?, col_str(b, "pooling")?, col_i32(b, "layer")?, col_i32(b, "n")?);
        let cols = METRICS.iter().map(|m| col_f64(b, m)).collect::<Result<Vec<_>>>()?;
        for i in 0..b.num_rows() {
            out.push(Row {
                language: l.value(i).into(),
                pooling: p.value(i).into(),
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
        2
    }
    fn doc(&self) -> &'static str {
        "Scores each language against the pivot per layer and pooling: MEXA μ (strict, n = min count), P@1 both ways, mean parallel cosine, margin (xsim) accuracy"
    }
    fn params(&self) -> Vec<ParamSpec> {
        vec![
            ParamSpec::optional(
                "poolings",
                ParamType::EnumList(crate::embed::POOLINGS),
                "[]",
                "poolings to score (empty: all the embeddings have)",
            ),
            ParamSpec::optional("margin_k", ParamType::Int, "4", "neighbourhood size of the margin score"),
        ]
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
        let meta = ctx.store.manifest(&input.key)?.meta;
        let pivot = meta["pivot"].as_str().ok_or_else(|| anyhow!("{}: no pivot recorded", input.label))?.to_string();
        let shards = ctx.shards_of(input)?;
        let k = p.margin_k.max(1);
        let wanted = p.poolings;
        let pivot_key = &shards.iter().find(|(l, _)| *l == pivot).ok_or_else(|| anyhow!("no pivot shard"))?.1;
        let pivot_emb = read_embeddings(&ctx.read_key(pivot_key)?)?;
        let mut poolings: Vec<String> =
            pivot_emb.keys().filter(|p| wanted.is_empty() || wanted.contains(p)).cloned().collect();
        poolings.sort();
        for w in &wanted {
            if !pivot_emb.contains_key(w) {
                bail!(
                    "pooling `{w}` was not computed by {} (it has: {})",
                    input.label,
                    pivot_emb.keys().cloned().collect::<Vec<_>>().join(", ")
                );
            }
        }
        ctx.progress.set_length(shards.len().saturating_sub(1) as u64);
        let mut rows: Vec<Row> = Vec::new();
        for (lang, key) in &shards {
            if *lang == pivot {
                continue;
            }
            let emb = read_embeddings(&ctx.read_key(key)?)?;
            let jobs: Vec<(&String, usize)> =
                poolings.iter().flat_map(|p| (0..pivot_emb[p].len()).map(move |l| (p, l))).collect();
            let mut part: Vec<Row> = jobs
                .par_iter()
                .map(|&(p, l)| {
                    let a = align(&pivot_emb[p][l], &emb[p][l], k);
                    Row {
                        language: lang.clone(),
                        pooling: p.clone(),
                        layer: l as i32,
                        n: a.n as i32,
                        scores: METRICS.iter().map(|m| metric(&a, m)).collect(),
                    }
                })
                .collect();
            rows.append(&mut part);
            ctx.progress.inc(1);
        }
        let mut fields = vec![
            ("language", DataType::Utf8),
            ("pooling", DataType::Utf8),
            ("layer", DataType::Int32),
            ("n", DataType::Int32),
        ];
        fields.extend(METRICS.iter().map(|m| (*m, DataType::Float64)));
        let sch = schema(&fields);
        let mut cols = vec![
            utf8_col(rows.iter().map(|r| r.language.clone()).collect()),
            utf8_col(rows.iter().map(|r| r.pooling.clone()).collect()),
            i32_col(rows.iter().map(|r| r.layer).collect()),
            i32_col(rows.iter().map(|r| r.n).collect()),
        ];
        for j in 0..METRICS.len() {
            cols.push(f64_col(rows.iter().map(|r| r.scores[j]).collect()));
        }
        let b = RecordBatch::try_new(sch.clone(), cols)?;
        Ok(Output {
            table: Table::new(sch, vec![b]),
            meta: serde_json::json!({"pivot": pivot, "architecture": meta["architecture"]}),
        })
    }
}
