//! `align_pairs`: every language against every other as pivot (the N × N picture), per layer
//! and pooling, with the same scores as `align`. Each language's embeddings are read
//! once; each unordered pair's cosine matrix is computed once and read both ways
//! (`mexa_metrics::align_pairs`). Memory: every language's embeddings of one pooling at once
//! (languages × sentences × layers × dim × 4 bytes).
use crate::align::{alignment_table, chosen_poolings, prepared, Params, Row};
use crate::embed::{embeddings_meta, read_shard};
use anyhow::{bail, Result};
use arrow::array::{ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use mexa_metrics::{align_pairs, Matrix};
use mexa_model::Pooling;
use mexa_pipeline::{Ctx, InputSpec, Output, ParamSpec, Stage, Table};
use std::collections::HashMap;
use std::sync::Arc;

pub struct AlignPairs;

/// The pairs table: a `pivot` column before the alignment table's columns.
pub fn pairs_table(rows: &[(String, Row)]) -> Result<Table> {
    let aligned: Vec<Row> = rows.iter().map(|r| r.1.clone()).collect();
    let t = alignment_table(&aligned)?;
    let b = t.concat()?;
    let mut fields = vec![Field::new("pivot", DataType::Utf8, false)];
    fields.extend(t.schema.fields().iter().map(|f| f.as_ref().clone()));
    let mut cols: Vec<ArrayRef> = vec![Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0.as_str())))];
    cols.extend(b.columns().iter().cloned());
    let sch = Arc::new(Schema::new(fields));
    Ok(Table::new(sch.clone(), vec![RecordBatch::try_new(sch, cols)?]))
}

impl Stage for AlignPairs {
    fn kind(&self) -> &'static str {
        "align_pairs"
    }
    fn version(&self) -> u32 {
        // 2: linear CKA and μ's uncertainty columns; the `centering` option.
        2
    }
    fn doc(&self) -> &'static str {
        "Scores every language against every other as pivot, per layer and pooling (align's scores and uncertainty): the language × language picture; the rows with the corpus pivot equal `align`'s"
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
        let shards = ctx.shards_of(input)?;
        ctx.progress.set_length(shards.len() as u64);
        let mut langs: Vec<String> = Vec::new();
        let mut emb: Vec<HashMap<Pooling, Vec<Matrix>>> = Vec::new();
        for (lang, key) in &shards {
            let e = prepared(read_shard(ctx, &input.label, lang, key)?, p.centering);
            if let (Some(first), Some(name)) = (emb.first(), langs.first()) {
                crate::embed::check_comparable(&input.label, (name, first), (lang, &e))?;
            }
            emb.push(e);
            langs.push(lang.clone());
            ctx.progress.inc(1);
        }
        let Some(first) = emb.first() else { bail!("{}: no languages", input.label) };
        let poolings = chosen_poolings(first, &p.poolings, &input.label)?;
        let k = p.margin_k;
        let mut rows: Vec<(String, Row)> = Vec::new();
        for &pool in &poolings {
            let layers = first[&pool].len();
            for l in 0..layers {
                let mats: Vec<&Matrix> = emb.iter().map(|e| &e[&pool][l]).collect();
                for (i, j, a) in align_pairs(&mats, k) {
                    rows.push((langs[i].clone(), Row::new(&langs[j], pool, l, &a)));
                }
            }
        }
        rows.sort_by(|a, b| {
            (&a.0, &a.1.language, a.1.pooling.name(), a.1.layer).cmp(&(
                &b.0,
                &b.1.language,
                b.1.pooling.name(),
                b.1.layer,
            ))
        });
        Ok(Output { table: pairs_table(&rows)?, meta: serde_json::json!({"pivot": pivot, "languages": langs.len()}) })
    }
}

/// Reads a pairs table back: each row's pivot and its alignment row.
pub fn read_pairs(t: &Table) -> Result<Vec<(String, Row)>> {
    let mut out = Vec::new();
    for b in &t.batches {
        let pivots = crate::util::col_str(b, "pivot")?;
        let rows = crate::align::read_alignment(&Table::new(b.schema(), vec![b.clone()]))?;
        out.extend(rows.into_iter().enumerate().map(|(i, r)| (pivots.value(i).to_string(), r)));
    }
    Ok(out)
}

/// The report's view of a pairs table, per pooling: μ averaged over layers for every
/// (pivot, language), ordered by average-linkage clustering on the distance
/// 1 − (μ(a→b) + μ(b→a)) / 2; a pair is near chance when every layer of it is.
pub fn pair_grids(t: &Table) -> Result<Vec<mexa_report::PairGrid>> {
    let rows = read_pairs(t)?;
    let mut langs: Vec<String> = rows.iter().flat_map(|(p, r)| [p.clone(), r.language.clone()]).collect();
    langs.sort();
    langs.dedup();
    let at = |l: &str| langs.binary_search_by(|x| x.as_str().cmp(l)).expect("collected above");
    let mut poolings: Vec<Pooling> = rows.iter().map(|(_, r)| r.pooling).collect();
    poolings.sort_by_key(|p| p.name());
    poolings.dedup();
    let m = langs.len();
    let mut out = Vec::new();
    for pool in poolings {
        let (mut sum, mut count, mut near) = (vec![0.0; m * m], vec![0usize; m * m], vec![true; m * m]);
        let mut n = 0;
        for (p, r) in rows.iter().filter(|(_, r)| r.pooling == pool) {
            let k = at(p) * m + at(&r.language);
            sum[k] += r.score(crate::align::Metric::Mexa);
            count[k] += 1;
            near[k] &= r.uncertainty().near_chance;
            n = n.max(r.n);
        }
        let mu = |k: usize| if count[k] > 0 { sum[k] / count[k] as f64 } else { f64::NAN };
        let dist: Vec<f64> = (0..m * m)
            .map(|k| {
                let (i, j) = (k / m, k % m);
                if i == j {
                    0.0
                } else {
                    let s = (mu(i * m + j) + mu(j * m + i)) / 2.0;
                    if s.is_finite() {
                        1.0 - s
                    } else {
                        1.0
                    }
                }
            })
            .collect();
        let merges = mexa_metrics::cluster::average_linkage(&dist, m);
        let order = mexa_metrics::cluster::leaf_order(&merges, m);
        out.push(mexa_report::PairGrid {
            pooling: pool.name().to_string(),
            layer_pool: "mean".into(),
            languages: order.iter().map(|&i| langs[i].clone()).collect(),
            scores: order.iter().map(|&i| order.iter().map(|&j| mu(i * m + j)).collect()).collect(),
            near_chance: order.iter().map(|&i| order.iter().map(|&j| i != j && near[i * m + j]).collect()).collect(),
            order,
            merges: merges.iter().map(|x| (x.a, x.b, x.height)).collect(),
            n,
        });
    }
    Ok(out)
}
