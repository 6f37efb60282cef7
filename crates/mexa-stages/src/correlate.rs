//! `join_tasks` and `correlate`: alignment scores against downstream task accuracy.
//!
//! `join_tasks` reads task results (via mexa-analysis, polars), maps language labels
//! (FLORES / ISO 639-3 / UDHR) and emits one point per language, task, pooling and layer
//! pooling, with the mapping visible and the adjusted estimate (alignment × the model's
//! pivot-language task score). `correlate` computes Pearson, Spearman and Kendall with
//! p-values, a bootstrap confidence interval of Pearson's r, and the least-squares line.
use crate::corpus::read_corpus_iso;
use crate::util::{
    col_f64, col_i32, col_str, f64_col, f64_col_undefined, f64_or_nan, i32_col, schema_with_nulls, utf8_col,
};
use anyhow::{anyhow, bail, Result};
use arrow::array::RecordBatch;
use arrow::datatypes::DataType;
use mexa_analysis::{join_points, read_task_scores, task_scores, Point, ScoreRow};
use mexa_metrics::{bootstrap_ci, kendall, linear_fit, pearson, spearman};
use mexa_pipeline::{Ctx, InputSpec, Output, ParamSpec, Stage, Table};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub struct JoinTasks;
pub struct Correlate;

mexa_pipeline::stage_params! {
    /// `join_tasks`'s parameters.
    struct JoinParams {
        /// task results: a CSV/TSV/Parquet table, or lm-evaluation-harness output
        /// (results_<timestamp>.json or its output folder); or connect the `accuracy` input instead
        tasks: Option<PathBuf> = None,
        /// the column of a wide table to use (e.g. a model's accuracies); for lm-eval results or a
        /// choice node the metric: acc (default) or acc_norm
        column: String = "",
        /// task name (names a wide column's task, or filters a long table)
        task: String = "",
        /// the model's pivot-language score for the adjusted estimate (-1: take the pivot's row
        /// from the file)
        pivot_score: f64 = -1.0,
        /// with the `accuracy` input, which accuracy is the task score: `mean` or `max` over the
        /// layers (as MEXA pools alignment), `last`, or a layer number (0 is the embedding output)
        probe_layer: String = "mean",
    }
}

impl JoinParams {
    fn column(&self) -> Option<&str> {
        Some(self.column.as_str()).filter(|s| !s.is_empty())
    }
    fn task(&self) -> Option<&str> {
        Some(self.task.as_str()).filter(|s| !s.is_empty())
    }
}

mexa_pipeline::stage_params! {
    /// `correlate`'s parameters.
    struct CorrelateParams {
        /// bootstrap resamples for the confidence interval (0: none)
        bootstrap: usize = 1000,
        /// confidence level
        level: f64 = 0.95,
        /// bootstrap seed
        seed: u64 = 0,
    }
}

fn points_table(points: &[(Point, f64)]) -> Result<Table> {
    let sch = schema_with_nulls(
        &[
            ("language", DataType::Utf8),
            ("task_language", DataType::Utf8),
            ("matched_by", DataType::Utf8),
            ("task", DataType::Utf8),
            ("pooling", DataType::Utf8),
            ("layer_pool", DataType::Utf8),
            ("alignment", DataType::Float64),
            ("score", DataType::Float64),
            ("adjusted", DataType::Float64),
        ],
        // Undefined when the pivot has no task score.
        &["adjusted"],
    );
    let s = |f: fn(&Point) -> &String| utf8_col(points.iter().map(|(p, _)| f(p).clone()).collect());
    let b = RecordBatch::try_new(
        sch.clone(),
        vec![
            s(|p| &p.language),
            s(|p| &p.task_language),
            s(|p| &p.matched_by),
            s(|p| &p.task),
            s(|p| &p.pooling),
            s(|p| &p.layer_pool),
            f64_col(points.iter().map(|(p, _)| p.alignment).collect()),
            f64_col(points.iter().map(|(p, _)| p.score).collect()),
            f64_col_undefined(points.iter().map(|(_, a)| *a).collect()),
        ],
    )?;
    Ok(Table::new(sch, vec![b]))
}

/// Reads a points table back.
pub fn read_points(t: &Table) -> Result<Vec<(Point, f64)>> {
    let mut out = Vec::new();
    for b in &t.batches {
        let s = |n: &str| col_str(b, n);
        let (l, tl, mb, tk, p, lp) =
            (s("language")?, s("task_language")?, s("matched_by")?, s("task")?, s("pooling")?, s("layer_pool")?);
        let (a, sc, adj) = (col_f64(b, "alignment")?, col_f64(b, "score")?, col_f64(b, "adjusted")?);
        for i in 0..b.num_rows() {
            out.push((
                Point {
                    language: l.value(i).into(),
                    task_language: tl.value(i).into(),
                    matched_by: mb.value(i).into(),
                    task: tk.value(i).into(),
                    pooling: p.value(i).into(),
                    layer_pool: lp.value(i).into(),
                    alignment: a.value(i),
                    score: sc.value(i),
                },
                f64_or_nan(adj, i),
            ));
        }
    }
    Ok(out)
}

/// The stage name of a node's label, without its grid cell (`topics[model=x]` → `topics`).
fn stage_name(ctx: &Ctx, input: &mexa_pipeline::InputRef, fallback: &str) -> Result<String> {
    let label = ctx.manifest(&input.key)?.label;
    Ok(label.rsplit('/').next().unwrap_or(fallback).split('[').next().unwrap_or(fallback).to_string())
}

/// A model's own accuracies as task scores: a probe's (a `layer` column), pooled over layers
/// or at one layer (task `<probe stage>@<layer choice>`), or a `choice` node's (task
/// `<choice stage>`, or `<choice stage>@acc_norm` with `column: acc_norm`).
fn measured_scores(ctx: &Ctx, p: &JoinParams, input: &mexa_pipeline::InputRef) -> Result<mexa_analysis::DataFrame> {
    let t = ctx.read(input)?;
    let is_probe = t.schema.field_with_name("layer").is_ok();
    if !is_probe {
        let norm = match p.column() {
            None | Some("acc") => false,
            Some("acc_norm") => true,
            Some(other) => bail!("`column` is `{other}`; a choice node's accuracy is `acc` or `acc_norm`"),
        };
        let (mut langs, mut scores) = (Vec::new(), Vec::new());
        for b in &t.batches {
            let (l, acc) = (col_str(b, "language")?, col_f64(b, if norm { "accuracy_norm" } else { "accuracy" })?);
            for i in 0..b.num_rows() {
                langs.push(l.value(i).to_string());
                scores.push(acc.value(i));
            }
        }
        if langs.is_empty() {
            bail!("{}: an empty accuracy table", input.label);
        }
        let stage = stage_name(ctx, input, "choice")?;
        let task = if norm { format!("{stage}@acc_norm") } else { stage };
        let n = langs.len();
        return task_scores(langs, vec![task; n], scores);
    }
    let mut by_lang: BTreeMap<String, Vec<(i32, f64)>> = BTreeMap::new();
    for b in &t.batches {
        let (l, layer, acc) = (col_str(b, "language")?, crate::util::col_i32(b, "layer")?, col_f64(b, "accuracy")?);
        for i in 0..b.num_rows() {
            by_lang.entry(l.value(i).to_string()).or_default().push((layer.value(i), acc.value(i)));
        }
    }
    if by_lang.is_empty() {
        bail!("{}: an empty probe table", input.label);
    }
    let choice = p.probe_layer.as_str();
    let pick = |v: &[(i32, f64)]| -> Result<f64> {
        Ok(match choice {
            "mean" => v.iter().map(|x| x.1).sum::<f64>() / v.len() as f64,
            "max" => v.iter().map(|x| x.1).fold(f64::NEG_INFINITY, f64::max),
            "last" => v.iter().max_by_key(|x| x.0).map(|x| x.1).unwrap_or(f64::NAN),
            n => {
                let n: i32 = n.parse().map_err(|_| {
                    anyhow::anyhow!("`probe_layer` is `{n}`: expected mean, max, last or a layer number")
                })?;
                v.iter().find(|x| x.0 == n).map(|x| x.1).ok_or_else(|| {
                    anyhow::anyhow!(
                        "`probe_layer` is {n}, but {} has layers 0..={}",
                        input.label,
                        v.iter().map(|x| x.0).max().unwrap_or(0)
                    )
                })?
            }
        })
    };
    let stage = stage_name(ctx, input, "probe")?;
    let task =
        if choice.parse::<i32>().is_ok() { format!("{stage}@layer{choice}") } else { format!("{stage}@{choice}") };
    let (mut langs, mut scores) = (Vec::new(), Vec::new());
    for (lang, v) in &by_lang {
        langs.push(lang.clone());
        scores.push(pick(v)?);
    }
    let n = langs.len();
    task_scores(langs, vec![task; n], scores)
}

impl Stage for JoinTasks {
    fn kind(&self) -> &'static str {
        "join_tasks"
    }
    fn version(&self) -> u32 {
        // 2: task scores may come from a probe (`accuracy` input), named `<probe stage>@layer<n>`.
        2
    }
    fn doc(&self) -> &'static str {
        "Joins aggregated alignment with downstream task results (CSV/TSV/Parquet, long or wide, or lm-eval JSON), mapping language labels; adds the adjusted estimate (alignment × pivot task score)"
    }
    fn params(&self) -> Vec<ParamSpec> {
        JoinParams::specs()
    }
    fn inputs(&self) -> Vec<InputSpec> {
        vec![
            InputSpec::one("scores", "an aggregate table"),
            InputSpec::one("corpus", "the load_corpus table (for ISO 639-3 codes)"),
            InputSpec::one(
                "accuracy",
                "a probe or choice node: the model's own accuracy per language, instead of a `tasks` file",
            )
            .optional(),
        ]
    }
    fn check_params(&self, params: &serde_json::Value) -> Result<()> {
        mexa_pipeline::check::<JoinParams>(params)
    }
    fn run(&self, ctx: &Ctx) -> Result<Output> {
        let p: JoinParams = ctx.typed()?;
        let (pivot, iso) = read_corpus_iso(&ctx.read(ctx.input("corpus")?)?)?;
        let agg = ctx.read(ctx.input("scores")?)?;
        let mut scores = Vec::new();
        for b in &agg.batches {
            let (l, p, mean, max) =
                (col_str(b, "language")?, col_str(b, "pooling")?, col_f64(b, "mean")?, col_f64(b, "max")?);
            for i in 0..b.num_rows() {
                let lang = l.value(i).to_string();
                scores.push(ScoreRow {
                    iso639_3: iso.get(&lang).cloned().unwrap_or_default(),
                    language: lang,
                    pooling: p.value(i).into(),
                    mean: mean.value(i),
                    max: max.value(i),
                });
            }
        }
        let measured = ctx.gathered("accuracy").first().cloned();
        let (tasks, source) = match (p.tasks.as_deref().filter(|s| !s.as_os_str().is_empty()), measured) {
            (Some(_), Some(_)) => bail!("give either the `tasks` file or the `accuracy` input, not both"),
            (None, None) => bail!("no task results: set `tasks` to a results file, or connect a probe or choice node to the `accuracy` input"),
            (Some(f), None) => (read_task_scores(f, p.column(), p.task())?, f.display().to_string()),
            (None, Some(input)) => (measured_scores(ctx, &p, &input)?, input.label.clone()),
        };
        let path = Path::new(&source);
        let (points, unmatched) = join_points(&scores, &tasks)?;
        if points.is_empty() {
            bail!(
                "no corpus language matched a language of {} (corpus: {}; unmatched: {})",
                path.display(),
                scores.len(),
                unmatched.join(", ")
            );
        }
        // The pivot's own task score, per task.
        let given = p.pivot_score;
        let pivot_rows = join_points(
            &[ScoreRow {
                language: pivot.clone(),
                iso639_3: iso.get(&pivot).cloned().unwrap_or_default(),
                pooling: String::new(),
                mean: 1.0,
                max: 1.0,
            }],
            &tasks,
        )?
        .0;
        let pivot_score: BTreeMap<String, f64> = pivot_rows.iter().map(|p| (p.task.clone(), p.score)).collect();
        let mut with_adj = Vec::new();
        for p in points {
            let e = if given >= 0.0 { Some(given) } else { pivot_score.get(&p.task).copied() };
            let adj = e.map(|e| p.alignment * e).unwrap_or(f64::NAN);
            with_adj.push((p, adj));
        }
        let meta = serde_json::json!({"unmatched": unmatched, "pivot": pivot, "pivot_score": pivot_score});
        if !unmatched.is_empty() {
            tracing::info!("{}: no task result for {}", ctx.label, unmatched.join(", "));
        }
        Ok(Output { table: points_table(&with_adj)?, meta })
    }
}

impl Stage for Correlate {
    fn kind(&self) -> &'static str {
        "correlate"
    }
    fn version(&self) -> u32 {
        // 2: Kendall p-values exact for untied samples of n ≤ 33 (SciPy's method='auto').
        2
    }
    fn doc(&self) -> &'static str {
        "Correlation of alignment with task scores across languages: Pearson, Spearman, Kendall (p-values), bootstrap CI of Pearson's r, and the fitted line; one row per task, pooling and layer pooling"
    }
    fn params(&self) -> Vec<ParamSpec> {
        CorrelateParams::specs()
    }
    fn inputs(&self) -> Vec<InputSpec> {
        vec![InputSpec::one("points", "a join_tasks table")]
    }
    fn check_params(&self, params: &serde_json::Value) -> Result<()> {
        mexa_pipeline::check::<CorrelateParams>(params)
    }
    fn run(&self, ctx: &Ctx) -> Result<Output> {
        let p: CorrelateParams = ctx.typed()?;
        let points = read_points(&ctx.read(ctx.input("points")?)?)?;
        let (b, level, seed) = (p.bootstrap, p.level, p.seed);
        if !(0.0..1.0).contains(&level) {
            bail!("`level` must be between 0 and 1");
        }
        let mut groups: BTreeMap<(String, String, String), (Vec<f64>, Vec<f64>, Vec<&str>)> = BTreeMap::new();
        for (p, _) in &points {
            let g = groups.entry((p.task.clone(), p.pooling.clone(), p.layer_pool.clone())).or_default();
            g.0.push(p.alignment);
            g.1.push(p.score);
            g.2.push(&p.language);
        }
        let mut rows: Vec<(String, String, String, i32, [f64; 10])> = Vec::new();
        for ((task, pooling, lp), (x, y, langs)) in groups {
            if x.len() < 3 {
                return Err(anyhow!("{task}/{pooling}/{lp}: only {} languages; correlations need at least 3", x.len()));
            }
            check_axis(&format!("{task}/{pooling}/{lp}"), "alignment", &x, &langs)?;
            check_axis(&format!("{task}/{pooling}/{lp}"), "task score", &y, &langs)?;
            let (pr, sr, kr) = (pearson(&x, &y), spearman(&x, &y), kendall(&x, &y));
            let (lo, hi) =
                if b > 0 { bootstrap_ci(&x, &y, |a, c| pearson(a, c).r, b, level, seed) } else { (f64::NAN, f64::NAN) };
            let (slope, intercept) = linear_fit(&x, &y);
            for (name, v) in [("slope", slope), ("intercept", intercept)] {
                if v.is_infinite() {
                    bail!("{task}/{pooling}/{lp}: the fitted {name} is infinite; the inputs' range is outside what a least-squares line can represent");
                }
            }
            rows.push((
                task,
                pooling,
                lp,
                x.len() as i32,
                [pr.r, pr.p, lo, hi, sr.r, sr.p, kr.r, kr.p, slope, intercept],
            ));
        }
        let names = [
            "pearson",
            "pearson_p",
            "pearson_ci_lo",
            "pearson_ci_hi",
            "spearman",
            "spearman_p",
            "kendall",
            "kendall_p",
            "slope",
            "intercept",
        ];
        let mut fields = vec![
            ("task", DataType::Utf8),
            ("pooling", DataType::Utf8),
            ("layer_pool", DataType::Utf8),
            ("n", DataType::Int32),
        ];
        fields.extend(names.iter().map(|n| (*n, DataType::Float64)));
        // A statistic of a constant axis is undefined (null); the interval is null when no
        // bootstrap was asked for.
        let sch = schema_with_nulls(&fields, &names);
        let mut cols = vec![
            utf8_col(rows.iter().map(|r| r.0.clone()).collect()),
            utf8_col(rows.iter().map(|r| r.1.clone()).collect()),
            utf8_col(rows.iter().map(|r| r.2.clone()).collect()),
            i32_col(rows.iter().map(|r| r.3).collect()),
        ];
        for j in 0..names.len() {
            cols.push(f64_col_undefined(rows.iter().map(|r| r.4[j]).collect()));
        }
        let batch = RecordBatch::try_new(sch.clone(), cols)?;
        Ok(Table::new(sch, vec![batch]).into())
    }
}

/// The values of one axis of a correlation must be finite and of a size whose squares and
/// products are finite (±1e308 would overflow the sums of squares and give r = 0, p = 1).
fn check_axis(group: &str, axis: &str, v: &[f64], languages: &[&str]) -> Result<()> {
    const LIMIT: f64 = 1e150;
    if let Some((i, x)) = v.iter().enumerate().find(|(_, x)| !x.is_finite() || x.abs() > LIMIT) {
        bail!("{group}: the {axis} of `{}` is {x:e}, outside ±1e150; a correlation of it would overflow", languages[i]);
    }
    Ok(())
}

/// Reads a correlation table back, beside its writer (`Correlate::run`).
pub fn read_correlation(t: &Table) -> Result<Vec<mexa_report::CorrRow>> {
    let mut out = Vec::new();
    for b in &t.batches {
        let s = |n| col_str(b, n);
        let f = |n| col_f64(b, n);
        let (task, p, lp, n) = (s("task")?, s("pooling")?, s("layer_pool")?, col_i32(b, "n")?);
        let (r, rp, lo, hi, sp, k, sl, ic) = (
            f("pearson")?,
            f("pearson_p")?,
            f("pearson_ci_lo")?,
            f("pearson_ci_hi")?,
            f("spearman")?,
            f("kendall")?,
            f("slope")?,
            f("intercept")?,
        );
        for i in 0..b.num_rows() {
            out.push(mexa_report::CorrRow {
                task: task.value(i).into(),
                pooling: p.value(i).into(),
                layer_pool: lp.value(i).into(),
                n: n.value(i),
                pearson: f64_or_nan(r, i),
                pearson_p: f64_or_nan(rp, i),
                ci_lo: f64_or_nan(lo, i),
                ci_hi: f64_or_nan(hi, i),
                spearman: f64_or_nan(sp, i),
                kendall: f64_or_nan(k, i),
                slope: f64_or_nan(sl, i),
                intercept: f64_or_nan(ic, i),
            });
        }
    }
    Ok(out)
}
