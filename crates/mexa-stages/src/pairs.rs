//! `align_pairs`: every language against every other as pivot (the N × N picture), per layer
//! and pooling, with the same five scores as `align`. Each language's embeddings are read
//! once; each unordered pair's cosine matrix is computed once and read both ways
//! (`mexa_metrics::align_pairs`). Memory: every language's embeddings of one pooling at once
//! (languages × sentences × layers × dim × 4 bytes).
use crate::align::{alignment_table, chosen_poolings, Params, Row};
use crate::embed::{embeddings_meta, read_embeddings};
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
        1
    }
    fn doc(&self) -> &'static str {
        "Scores every language against every other as pivot, per layer and pooling (MEXA μ, P@1 both ways, mean cosine, margin): the language × language picture; the rows with the corpus pivot equal `align`'s"
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
            emb.push(read_embeddings(&ctx.read_key(key)?)?);
            langs.push(lang.clone());
            ctx.progress.inc(1);
        }
        let Some(first) = emb.first() else { bail!("{}: no languages", input.label) };
        let poolings = chosen_poolings(first, &p.poolings, &input.label)?;
        let k = p.margin_k.max(1);
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
