//! `aggregate`: pools each language's per-layer scores: mean and max over layers (or a
//! layer range), and the best layer; for MEXA μ also the best layer's bootstrap interval and
//! whether it is near chance, and n (sentences) always.
use crate::align::{read_alignment, Metric, Row};
use crate::util::{
    bool_col, col_bool, col_f64, col_i32, col_str, f64_col, f64_col_undefined, f64_or_nan, i32_col, schema_with_nulls,
    utf8_col,
};
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
        // 2: n, and μ's best-layer interval and near-chance flag.
        2
    }
    fn doc(&self) -> &'static str {
        "Pools per-layer alignment into one score per language and pooling: mean and max over the layers (or a range), the best layer, and for MEXA μ the best layer's bootstrap interval and near-chance flag"
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
        let mut curves: BTreeMap<(String, String), Vec<Row>> = BTreeMap::new();
        for r in rows {
            curves.entry((r.language.clone(), r.pooling.name().to_string())).or_default().push(r);
        }
        let (mut lang, mut pool, mut mean, mut max, mut best, mut nl) =
            (vec![], vec![], vec![], vec![], vec![], vec![]);
        let (mut ns, mut lo, mut hi, mut near) = (vec![], vec![], vec![], vec![]);
        for ((l, pl), mut c) in curves {
            c.sort_by_key(|r| r.layer);
            let scores: Vec<f64> = c.iter().map(|r| r.score(p.metric)).collect();
            let Some(a) = aggregate(&scores, range) else {
                bail!("layer range {range:?} is outside the {} hidden states", scores.len())
            };
            let at_best = &c[a.best_layer];
            // The interval and chance flag are μ's: other scores have no chance model here.
            let u = (p.metric == Metric::Mexa).then(|| at_best.uncertainty());
            lang.push(l);
            pool.push(pl);
            mean.push(a.mean);
            max.push(a.max);
            best.push(a.best_layer as i32);
            nl.push(a.layers as i32);
            ns.push(at_best.n);
            lo.push(u.map_or(f64::NAN, |u| u.lo));
            hi.push(u.map_or(f64::NAN, |u| u.hi));
            near.push(u.is_some_and(|u| u.near_chance));
        }
        let n = lang.len();
        let sch = schema_with_nulls(
            &[
                ("language", DataType::Utf8),
                ("pooling", DataType::Utf8),
                ("metric", DataType::Utf8),
                ("mean", DataType::Float64),
                ("max", DataType::Float64),
                ("best_layer", DataType::Int32),
                ("layers", DataType::Int32),
                ("n", DataType::Int32),
                ("max_lo", DataType::Float64),
                ("max_hi", DataType::Float64),
                ("near_chance", DataType::Boolean),
            ],
            // The interval is μ's: no other metric has one.
            &["max_lo", "max_hi"],
        );
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
                i32_col(ns),
                f64_col_undefined(lo),
                f64_col_undefined(hi),
                bool_col(near),
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
        let (n, lo, hi, near) =
            (col_i32(b, "n")?, col_f64(b, "max_lo")?, col_f64(b, "max_hi")?, col_bool(b, "near_chance")?);
        for i in 0..b.num_rows() {
            out.push(mexa_report::AggRow {
                language: l.value(i).into(),
                pooling: p.value(i).into(),
                metric: m.value(i).into(),
                mean: mean.value(i),
                max: max.value(i),
                best_layer: best.value(i),
                n: n.value(i),
                max_ci: (f64_or_nan(lo, i), f64_or_nan(hi, i)),
                near_chance: near.value(i),
            });
        }
    }
    Ok(out)
}
