//! `aggregate`: pools each language's per-layer scores: mean and max over layers (or a
//! layer range), and the best layer.
use crate::align::{read_alignment, Metric};
use crate::util::{col_f64, col_i32, col_str, f64_col, i32_col, schema, utf8_col};
use anyhow::{bail, Result};
use arrow::array::RecordBatch;
use arrow::datatypes::DataType;
use mexa_metrics::aggregate;
use mexa_pipeline::{Ctx, InputSpec, Output, ParamSpec, Stage, Table};
use std::collections::BTreeMap;

pub struct Aggregate;

mexa_pipeline::stage_params! {
    /// `aggregate`'s parameters.
    struct Params {
        /// which alignment score to pool
        metric: Metric = Metric::Mexa,
        /// [first, last] hidden-state indices, inclusive (empty: all; 0 is the embedding output)
        layers: Vec<usize> = vec![],
    }
}

impl Stage for Aggregate {
    fn kind(&self) -> &'static str {
        "aggregate"
    }
    fn version(&self) -> u32 {
        1
    }
    fn doc(&self) -> &'static str {
        "Pools per-layer alignment into one score per language and pooling: mean and max over the layers (or a range), and the best layer"
    }
    fn params(&self) -> Vec<ParamSpec> {
        Params::specs()
    }
    fn inputs(&self) -> Vec<InputSpec> {
        vec![InputSpec::one("alignment", "an align table")]
    }
    fn check_params(&self, params: &serde_json::Value) -> Result<()> {
        mexa_pipeline::check::<Params>(params)
    }
    fn run(&self, ctx: &Ctx) -> Result<Output> {
        let p: Params = ctx.typed()?;
        let rows = read_alignment(&ctx.read(ctx.input("alignment")?)?)?;
        let range = match p.layers.as_slice() {
            [] => None,
            &[a, b] if a <= b => Some((a, b)),
            _ => bail!("`layers` must be empty or [first, last] with first ≤ last"),
        };
        let mut curves: BTreeMap<(String, String), Vec<(i32, f64)>> = BTreeMap::new();
        for r in rows {
            let score = r.score(p.metric);
            curves.entry((r.language, r.pooling.name().to_string())).or_default().push((r.layer, score));
        }
        let (mut lang, mut pool, mut mean, mut max, mut best, mut nl) =
            (vec![], vec![], vec![], vec![], vec![], vec![]);
        for ((l, p), mut c) in curves {
            c.sort_by_key(|x| x.0);
            let scores: Vec<f64> = c.iter().map(|x| x.1).collect();
            let Some(a) = aggregate(&scores, range) else {
                bail!("layer range {range:?} is outside the {} hidden states", scores.len())
            };
            lang.push(l);
            pool.push(p);
            mean.push(a.mean);
            max.push(a.max);
            best.push(a.best_layer as i32);
            nl.push(a.layers as i32);
        }
        let n = lang.len();
        let sch = schema(&[
            ("language", DataType::Utf8),
            ("pooling", DataType::Utf8),
            ("metric", DataType::Utf8),
            ("mean", DataType::Float64),
            ("max", DataType::Float64),
            ("best_layer", DataType::Int32),
            ("layers", DataType::Int32),
        ]);
        let b = RecordBatch::try_new(
            sch.clone(),
            vec![
                utf8_col(lang),
                utf8_col(pool),
                utf8_col(vec![p.metric.name().to_string(); n]),
                f64_col(mean),
                f64_col(max),
                i32_col(best),
                i32_col(nl),
            ],
        )?;
        Ok(Table::new(sch, vec![b]).into())
    }
}

/// Reads an aggregate (summary) table back; its writer is `Aggregate::run` above, the
/// columns named once between them here.
pub fn read_summary(t: &Table) -> Result<Vec<mexa_report::AggRow>> {
    let mut out = Vec::new();
    for b in &t.batches {
        let (l, p, m, mean, max, best) = (
            col_str(b, "language")?,
            col_str(b, "pooling")?,
            col_str(b, "metric")?,
            col_f64(b, "mean")?,
            col_f64(b, "max")?,
            col_i32(b, "best_layer")?,
        );
        for i in 0..b.num_rows() {
            out.push(mexa_report::AggRow {
                language: l.value(i).into(),
                pooling: p.value(i).into(),
                metric: m.value(i).into(),
                mean: mean.value(i),
                max: max.value(i),
                best_layer: best.value(i),
            });
        }
    }
    Ok(out)
}
