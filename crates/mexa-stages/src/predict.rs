//! `predict`: alignment as a stand-in for an evaluation, judged by its error on languages it
//! has not seen. For each gathered join_tasks node (one per model), and pooled over all of them
//! (language × model points), MEXA's estimate (μ × the pivot's score, the `adjusted` column)
//! and two fits of accuracy on alignment (linear, fractional logit) predict every language
//! from the other languages' points, beside the other languages' mean accuracy with μ ignored
//! (`mexa_metrics::predict`); MAE and RMSE against the model's own accuracy per (task,
//! pooling, layer pooling, method).
use crate::correlate::PointRow;
use crate::util::{col_f64, col_i32, col_str, f64_col_undefined, f64_or_nan, i32_col, schema_with_nulls, utf8_col};
use anyhow::{bail, Result};
use arrow::array::RecordBatch;
use arrow::datatypes::DataType;
use mexa_metrics::predict::{errors, leave_one_group_out, Method, Point};
use mexa_pipeline::{Ctx, InputSpec, Output, ParamSpec, Stage, Table};
use std::collections::BTreeMap;

pub struct Predict;

mexa_pipeline::stage_params! {
    /// `predict`'s parameters.
    struct Params {
        /// also pool the gathered nodes' points (language × model), leaving a language's
        /// points out together
        pooled: bool = true,
    }
}

/// The points of one scope: a node (a model) or the pooled nodes.
pub struct Scope {
    pub name: String,
    pub points: Vec<PointRow>,
}

/// One point's predictions.
#[derive(Debug, Clone)]
pub struct Prediction {
    pub language: String,
    pub accuracy: f64,
    /// Per [`Method::ALL`].
    pub predicted: [f64; 4],
}

/// Every point's leave-one-language-out predictions of one (scope, task, pooling, layer pooling).
#[derive(Debug, Clone)]
pub struct Predictions {
    pub scope: String,
    pub task: String,
    pub pooling: String,
    pub layer_pool: String,
    pub points: Vec<Prediction>,
}

impl Predictions {
    /// (MAE, RMSE) of each method, in [`Method::ALL`] order.
    pub fn errors(&self) -> [(f64, f64); 4] {
        let actual: Vec<f64> = self.points.iter().map(|p| p.accuracy).collect();
        std::array::from_fn(|m| errors(&self.points.iter().map(|p| p.predicted[m]).collect::<Vec<_>>(), &actual))
    }
    pub fn languages(&self) -> usize {
        self.points.iter().map(|p| &p.language).collect::<std::collections::BTreeSet<_>>().len()
    }
}

/// The scopes of some join_tasks nodes: each node alone (named by its grid cell), and, when
/// `pooled` and there are several, all of them together.
pub fn scopes(nodes: Vec<(String, Vec<PointRow>)>, pooled: bool) -> Vec<Scope> {
    let name = |label: &str| {
        let cell = mexa_report::cell_of(label);
        if cell.is_empty() {
            label.to_string()
        } else {
            cell.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
        }
    };
    let mut out: Vec<Scope> = nodes.iter().map(|(l, p)| Scope { name: name(l), points: p.clone() }).collect();
    if pooled && nodes.len() > 1 {
        out.push(Scope { name: "pooled".into(), points: nodes.into_iter().flat_map(|n| n.1).collect() });
    }
    out
}

/// Leave-one-language-out predictions of every scope, per (task, pooling, layer pooling).
pub fn predictions(scopes: &[Scope]) -> Vec<Predictions> {
    let mut out = Vec::new();
    for s in scopes {
        let mut groups: BTreeMap<(&str, &str, &str), Vec<&PointRow>> = BTreeMap::new();
        for r in &s.points {
            groups.entry((&r.point.task, &r.point.pooling, &r.point.layer_pool)).or_default().push(r);
        }
        for ((task, pooling, lp), rows) in groups {
            let mut ids: BTreeMap<&str, usize> = BTreeMap::new();
            let pts: Vec<Point> = rows
                .iter()
                .map(|r| {
                    let next = ids.len();
                    Point {
                        group: *ids.entry(r.point.language.as_str()).or_insert(next),
                        alignment: r.point.alignment,
                        accuracy: r.point.score,
                        paper: r.adjusted,
                    }
                })
                .collect();
            let by_method: Vec<Vec<f64>> = Method::ALL.iter().map(|&m| leave_one_group_out(&pts, m)).collect();
            out.push(Predictions {
                scope: s.name.clone(),
                task: task.to_string(),
                pooling: pooling.to_string(),
                layer_pool: lp.to_string(),
                points: rows
                    .iter()
                    .enumerate()
                    .map(|(i, r)| Prediction {
                        language: r.point.language.clone(),
                        accuracy: r.point.score,
                        predicted: std::array::from_fn(|m| by_method[m][i]),
                    })
                    .collect(),
            });
        }
    }
    out
}

/// One row of the `predict` table.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorRow {
    pub scope: String,
    pub task: String,
    pub pooling: String,
    pub layer_pool: String,
    pub method: String,
    pub points: i32,
    pub languages: i32,
    pub mae: f64,
    pub rmse: f64,
}

fn error_rows(preds: &[Predictions]) -> Vec<ErrorRow> {
    let mut out = Vec::new();
    for p in preds {
        for (m, (mae, rmse)) in Method::ALL.iter().zip(p.errors()) {
            out.push(ErrorRow {
                scope: p.scope.clone(),
                task: p.task.clone(),
                pooling: p.pooling.clone(),
                layer_pool: p.layer_pool.clone(),
                method: m.name().to_string(),
                points: p.points.len() as i32,
                languages: p.languages() as i32,
                mae,
                rmse,
            });
        }
    }
    out
}

const TEXT: [&str; 5] = ["scope", "task", "pooling", "layer_pool", "method"];

fn table(rows: &[ErrorRow]) -> Result<Table> {
    let mut fields: Vec<(&str, DataType)> = TEXT.iter().map(|n| (*n, DataType::Utf8)).collect();
    fields.extend([
        ("points", DataType::Int32),
        ("languages", DataType::Int32),
        ("mae", DataType::Float64),
        ("rmse", DataType::Float64),
    ]);
    // Undefined: the paper's estimate without a pivot score, a fit that could not be made.
    let sch = schema_with_nulls(&fields, &["mae", "rmse"]);
    let t = |f: fn(&ErrorRow) -> &String| utf8_col(rows.iter().map(|r| f(r).clone()).collect());
    let cols = vec![
        t(|r| &r.scope),
        t(|r| &r.task),
        t(|r| &r.pooling),
        t(|r| &r.layer_pool),
        t(|r| &r.method),
        i32_col(rows.iter().map(|r| r.points).collect()),
        i32_col(rows.iter().map(|r| r.languages).collect()),
        f64_col_undefined(rows.iter().map(|r| r.mae).collect()),
        f64_col_undefined(rows.iter().map(|r| r.rmse).collect()),
    ];
    Ok(Table::new(sch.clone(), vec![RecordBatch::try_new(sch, cols)?]))
}

/// Reads a `predict` table back (its writer is [`table`]).
pub fn read_errors(t: &Table) -> Result<Vec<ErrorRow>> {
    let mut out = Vec::new();
    for b in &t.batches {
        let s = TEXT.iter().map(|n| col_str(b, n)).collect::<Result<Vec<_>>>()?;
        let (pts, langs, mae, rmse) =
            (col_i32(b, "points")?, col_i32(b, "languages")?, col_f64(b, "mae")?, col_f64(b, "rmse")?);
        for i in 0..b.num_rows() {
            out.push(ErrorRow {
                scope: s[0].value(i).into(),
                task: s[1].value(i).into(),
                pooling: s[2].value(i).into(),
                layer_pool: s[3].value(i).into(),
                method: s[4].value(i).into(),
                points: pts.value(i),
                languages: langs.value(i),
                mae: f64_or_nan(mae, i),
                rmse: f64_or_nan(rmse, i),
            });
        }
    }
    Ok(out)
}

impl Stage for Predict {
    fn kind(&self) -> &'static str {
        "predict"
    }
    fn version(&self) -> u32 {
        1
    }
    fn doc(&self) -> &'static str {
        "Alignment as a stand-in for an evaluation: MEXA's estimate (μ × the pivot's score) and linear and fractional-logit fits of accuracy on μ, each language predicted from the other languages' points, beside the others' mean accuracy (μ ignored); MAE and RMSE against the model's own accuracy, per model (each gathered join_tasks node) and pooled over them"
    }
    fn params(&self) -> Vec<ParamSpec> {
        Params::specs()
    }
    fn inputs(&self) -> Vec<InputSpec> {
        vec![InputSpec::gather("points", "join_tasks nodes (one per model)")]
    }
    fn check_params(&self, params: &serde_json::Value) -> Result<()> {
        mexa_pipeline::check::<Params>(params)
    }
    fn run(&self, ctx: &Ctx) -> Result<Output> {
        let p: Params = ctx.typed()?;
        let mut nodes = Vec::new();
        for input in ctx.gathered("points") {
            nodes.push((input.label.clone(), crate::correlate::read_points(&ctx.read(input)?)?));
        }
        if nodes.is_empty() {
            bail!("no join_tasks node reached the `points` input");
        }
        let rows = error_rows(&predictions(&scopes(nodes, p.pooled)));
        Ok(table(&rows)?.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(lang: &str, alignment: f64, score: f64) -> PointRow {
        PointRow {
            point: crate::correlate::test_point(lang, alignment, score),
            adjusted: alignment * 0.8,
            n: 80,
            metric: "mexa".into(),
            alignment_near_chance: false,
            score_n: 80,
            score_chance: 1.0 / 7.0,
            score_near_chance: false,
            score_majority: f64::NAN,
            score_below_majority: false,
        }
    }

    #[test]
    fn each_model_and_the_pool_are_predicted_without_the_language() {
        let langs = ["a", "b", "c", "d"];
        let node = |scale: f64| {
            langs
                .iter()
                .enumerate()
                .map(|(i, l)| row(l, i as f64 / 4.0, scale * i as f64 / 4.0 + 0.1))
                .collect::<Vec<_>>()
        };
        let s = scopes(vec![("tasks[model=x]".into(), node(1.0)), ("tasks[model=y]".into(), node(0.5))], true);
        assert_eq!(s.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["model=x", "model=y", "pooled"]);
        let p = predictions(&s);
        // Each model's points lie on a line: its leave-one-out linear prediction is exact.
        for m in &p[..2] {
            let (mae, _) = m.errors()[1];
            assert!(mae < 1e-12, "{}: {mae}", m.scope);
            // The paper's estimate is the adjusted column, as it is.
            assert!((m.points[1].predicted[0] - 0.25 * 0.8).abs() < 1e-15);
        }
        // Pooled: 8 points, 4 languages; leaving language "a" out removes both of its points, so
        // its prediction comes from the other languages of both models.
        assert_eq!((p[2].points.len(), p[2].languages()), (8, 4));
        let (x, y): (Vec<f64>, Vec<f64>) =
            s[2].points.iter().filter(|r| r.point.language != "a").map(|r| (r.point.alignment, r.point.score)).unzip();
        let (a, b) = mexa_metrics::predict::linear(&x, &y).unwrap();
        assert!((p[2].points[0].predicted[1] - a).abs() < 1e-12 && b > 0.0);
    }
}
