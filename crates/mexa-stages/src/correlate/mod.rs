//! `join_tasks` and `correlate`: alignment scores against downstream task accuracy.
//!
//! `join_tasks` reads task results (via mexa-analysis, polars), maps language labels
//! (FLORES / ISO 639-3 / UDHR) and emits one point per language, task, pooling and layer
//! pooling, with the mapping visible and the adjusted estimate (alignment × the model's
//! pivot-language task score). `correlate` computes Pearson, Spearman and Kendall with
//! p-values, a bootstrap confidence interval of Pearson's r, and the least-squares line.
use crate::corpus::read_corpus_iso;
use crate::util::{
    bool_col, col_bool, col_f64, col_i32, col_str, f64_col, f64_col_undefined, f64_or_nan, i32_col, schema_with_nulls,
    utf8_col,
};
use anyhow::{anyhow, bail, Result};
use arrow::array::RecordBatch;
use arrow::datatypes::DataType;
use mexa_analysis::{join_points, read_task_scores, task_scores, Point, ScoreRow};
use mexa_metrics::inference::pearson_permutation;
use mexa_metrics::{bootstrap_ci, kendall, linear_fit, pearson, spearman};
use mexa_pipeline::{Ctx, InputSpec, Output, ParamSpec, Stage, Table};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

mod floor;
pub use floor::{Floor, ANISOTROPY_HIGH};

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
        /// with a `tasks` file: the task's chance accuracy, for the floor diagnosis (-1: unknown;
        /// a probe or choice node says its own)
        chance: f64 = -1.0; keyed_if_set,
        /// with a `tasks` file: test items per language behind each score (0: unknown)
        items: usize = 0; keyed_if_set,
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
        /// bootstrap seed (also the permutation test's)
        seed: u64 = 0,
        /// random pairings for the permutation p-value of Pearson's r beyond n = 10 (up to 10
        /// every one of the n! pairings is counted)
        permutations: usize = 10000; keyed_if_set,
    }
    check(p) {
        // Each resample keeps n values; a million is far past where a 95% interval's last digit
        // settles, and a count past it is a typo that would fill memory.
        if p.bootstrap > 1_000_000 {
            return Err(format!("`bootstrap` is {}; at most 1000000 resamples (1000 to 10000 is usual)", p.bootstrap));
        }
        if p.permutations > 10_000_000 {
            return Err(format!("`permutations` is {}; at most 10000000", p.permutations));
        }
        if !(p.level > 0.0 && p.level < 1.0) {
            return Err(format!("`level` is {}; a confidence level is between 0 and 1 (0.95)", p.level));
        }
        Ok(())
    }
}

/// The task axis of a point: the items behind its score, the chance accuracy, and the
/// accuracy of always giving the commonest answer of the scored items.
#[derive(Debug, Clone, Default)]
struct TaskFacts {
    /// Items per task language (absent: unknown).
    items: BTreeMap<String, i32>,
    chance: Option<f64>,
    majority: Option<f64>,
}

/// A score of `items` items not distinguishable from `floor`: its correct items,
/// round(score·items), have a binomial tail probability ≥ 0.05 at `floor` (false when the items
/// or the floor are unknown).
fn at_floor(score: f64, items: i32, floor: f64) -> bool {
    items > 0 && floor.is_finite() && {
        let k = (score * items as f64).round().max(0.0) as usize;
        mexa_metrics::chance::upper_tail(items as usize, k, floor) >= mexa_metrics::chance::CHANCE_ALPHA
    }
}

/// One point of a join_tasks table: a language's pooled alignment and task score, MEXA's
/// adjusted estimate (alignment × the pivot's score), and what the floor diagnosis needs.
#[derive(Debug, Clone)]
pub struct PointRow {
    pub point: Point,
    pub adjusted: f64,
    /// Sentence pairs behind the alignment, and the metric pooled.
    pub n: i32,
    pub metric: String,
    /// μ (mean or max over layers) not distinguishable from chance: its hits, round(μ·n), have a
    /// tail probability ≥ 0.05 under 1/(2n − 1) per pair (always false for other metrics).
    pub alignment_near_chance: bool,
    /// Items behind the task score (0: unknown) and the task's chance accuracy (NaN: unknown).
    pub score_n: i32,
    pub score_chance: f64,
    /// The task score not distinguishable from chance: its correct items, round(score·items),
    /// have a binomial tail probability ≥ 0.05 at the chance accuracy (false when unknown).
    pub score_near_chance: bool,
    /// The accuracy of always giving the commonest answer of the scored items (NaN: unknown),
    /// and the task score not distinguishable from it by the same test (false when unknown).
    pub score_majority: f64,
    pub score_below_majority: bool,
}

impl PointRow {
    fn new(point: Point, adjusted: f64, n: i32, metric: &str, score_n: i32, floors: (f64, f64)) -> Self {
        let (score_chance, score_majority) = floors;
        let alignment_near_chance =
            metric == "mexa" && mexa_metrics::mexa_uncertainty(n.max(0) as usize, point.alignment).near_chance;
        PointRow {
            score_near_chance: at_floor(point.score, score_n, score_chance),
            score_below_majority: at_floor(point.score, score_n, score_majority),
            point,
            adjusted,
            n,
            metric: metric.to_string(),
            alignment_near_chance,
            score_n,
            score_chance,
            score_majority,
        }
    }
}

fn points_table(points: &[PointRow]) -> Result<Table> {
    // Undefined: the adjusted estimate without a pivot score, the task's floors when the task
    // does not state them (a results file).
    let undefined = ["adjusted", "score_chance", "score_majority"];
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
            ("n", DataType::Int32),
            ("metric", DataType::Utf8),
            ("alignment_near_chance", DataType::Boolean),
            ("score_n", DataType::Int32),
            ("score_chance", DataType::Float64),
            ("score_near_chance", DataType::Boolean),
            ("score_majority", DataType::Float64),
            ("score_below_majority", DataType::Boolean),
        ],
        &undefined,
    );
    let s = |f: fn(&Point) -> &String| utf8_col(points.iter().map(|r| f(&r.point).clone()).collect());
    let b = RecordBatch::try_new(
        sch.clone(),
        vec![
            s(|p| &p.language),
            s(|p| &p.task_language),
            s(|p| &p.matched_by),
            s(|p| &p.task),
            s(|p| &p.pooling),
            s(|p| &p.layer_pool),
            f64_col(points.iter().map(|r| r.point.alignment).collect()),
            f64_col(points.iter().map(|r| r.point.score).collect()),
            f64_col_undefined(points.iter().map(|r| r.adjusted).collect()),
            i32_col(points.iter().map(|r| r.n).collect()),
            utf8_col(points.iter().map(|r| r.metric.clone()).collect()),
            bool_col(points.iter().map(|r| r.alignment_near_chance).collect()),
            i32_col(points.iter().map(|r| r.score_n).collect()),
            f64_col_undefined(points.iter().map(|r| r.score_chance).collect()),
            bool_col(points.iter().map(|r| r.score_near_chance).collect()),
            f64_col_undefined(points.iter().map(|r| r.score_majority).collect()),
            bool_col(points.iter().map(|r| r.score_below_majority).collect()),
        ],
    )?;
    Ok(Table::new(sch, vec![b]))
}

/// Reads a points table back.
pub fn read_points(t: &Table) -> Result<Vec<PointRow>> {
    let mut out = Vec::new();
    for b in &t.batches {
        let s = |n: &str| col_str(b, n);
        let (l, tl, mb, tk, p, lp) =
            (s("language")?, s("task_language")?, s("matched_by")?, s("task")?, s("pooling")?, s("layer_pool")?);
        let (a, sc, adj) = (col_f64(b, "alignment")?, col_f64(b, "score")?, col_f64(b, "adjusted")?);
        let (n, metric, anc) = (col_i32(b, "n")?, s("metric")?, col_bool(b, "alignment_near_chance")?);
        let (sn, sch, snc) = (col_i32(b, "score_n")?, col_f64(b, "score_chance")?, col_bool(b, "score_near_chance")?);
        let (smj, sbm) = (col_f64(b, "score_majority")?, col_bool(b, "score_below_majority")?);
        for i in 0..b.num_rows() {
            out.push(PointRow {
                point: Point {
                    language: l.value(i).into(),
                    task_language: tl.value(i).into(),
                    matched_by: mb.value(i).into(),
                    task: tk.value(i).into(),
                    pooling: p.value(i).into(),
                    layer_pool: lp.value(i).into(),
                    alignment: a.value(i),
                    score: sc.value(i),
                },
                adjusted: f64_or_nan(adj, i),
                n: n.value(i),
                metric: metric.value(i).into(),
                alignment_near_chance: anc.value(i),
                score_n: sn.value(i),
                score_chance: f64_or_nan(sch, i),
                score_near_chance: snc.value(i),
                score_majority: f64_or_nan(smj, i),
                score_below_majority: sbm.value(i),
            });
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
fn measured_scores(
    ctx: &Ctx,
    p: &JoinParams,
    input: &mexa_pipeline::InputRef,
) -> Result<(mexa_analysis::DataFrame, TaskFacts)> {
    let t = ctx.read(input)?;
    let is_probe = t.schema.field_with_name("layer").is_ok();
    // Both kinds state their chance accuracy in their manifest and their items per row; a probe
    // also the accuracy of always answering the commonest label of its test sentences.
    let meta = ctx.store.manifest(&input.key)?.meta;
    let (chance, majority) =
        (meta.get("chance").and_then(|v| v.as_f64()), meta.get("majority").and_then(|v| v.as_f64()));
    let mut facts = TaskFacts { items: BTreeMap::new(), chance, majority };
    for b in &t.batches {
        let (l, n) = (col_str(b, "language")?, col_i32(b, "n")?);
        for i in 0..b.num_rows() {
            facts.items.entry(l.value(i).to_string()).or_insert(n.value(i));
        }
    }
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
        return Ok((task_scores(langs, vec![task; n], scores)?, facts));
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
    Ok((task_scores(langs, vec![task; n], scores)?, facts))
}

impl Stage for JoinTasks {
    fn kind(&self) -> &'static str {
        "join_tasks"
    }
    fn version(&self) -> u32 {
        // 2: task scores may come from a probe (`accuracy` input), named `<probe stage>@layer<n>`.
        // 3: what the floor diagnosis needs (n and metric of the alignment, items and chance of
        // the task score, a near-chance flag on each axis): new columns, so new keys.
        3
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
        // (language, pooling) → (sentence pairs, metric) of the pooled alignment.
        let mut pairs: BTreeMap<(String, String), (i32, String)> = BTreeMap::new();
        for b in &agg.batches {
            let (l, p, mean, max) =
                (col_str(b, "language")?, col_str(b, "pooling")?, col_f64(b, "mean")?, col_f64(b, "max")?);
            let (n, metric) = (col_i32(b, "n")?, col_str(b, "metric")?);
            for i in 0..b.num_rows() {
                let lang = l.value(i).to_string();
                pairs.insert((lang.clone(), p.value(i).to_string()), (n.value(i), metric.value(i).to_string()));
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
        let (tasks, source, facts) = match (p.tasks.as_deref().filter(|s| !s.as_os_str().is_empty()), measured) {
            (Some(_), Some(_)) => bail!("give either the `tasks` file or the `accuracy` input, not both"),
            (None, None) => bail!("no task results: set `tasks` to a results file, or connect a probe or choice node to the `accuracy` input"),
            (Some(f), None) => {
                let facts =
                    TaskFacts { items: BTreeMap::new(), chance: (p.chance >= 0.0).then_some(p.chance), majority: None };
                (read_task_scores(f, p.column(), p.task())?, f.display().to_string(), facts)
            }
            (None, Some(input)) => {
                let (t, facts) = measured_scores(ctx, &p, &input)?;
                (t, input.label.clone(), facts)
            }
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
        for pt in points {
            let e = if given >= 0.0 { Some(given) } else { pivot_score.get(&pt.task).copied() };
            let adj = e.map(|e| pt.alignment * e).unwrap_or(f64::NAN);
            let (n, metric) =
                pairs.get(&(pt.language.clone(), pt.pooling.clone())).cloned().unwrap_or((0, String::new()));
            let items = facts.items.get(&pt.task_language).copied().unwrap_or(p.items as i32);
            let floors = (facts.chance.unwrap_or(f64::NAN), facts.majority.unwrap_or(f64::NAN));
            with_adj.push(PointRow::new(pt, adj, n, &metric, items, floors));
        }
        let meta = serde_json::json!({"unmatched": unmatched, "pivot": pivot, "pivot_score": pivot_score});
        if !unmatched.is_empty() {
            tracing::info!("{}: no task result for {}", ctx.label, unmatched.join(", "));
        }
        Ok(Output { table: points_table(&with_adj)?, meta })
    }
}

/// Each (language, pooling)'s mean cosine of non-parallel pairs over layers and sentences.
fn anisotropy_by_language(ctx: &Ctx) -> Result<BTreeMap<(String, String), f64>> {
    let mut sums: BTreeMap<(String, String), (f64, usize)> = BTreeMap::new();
    if let Some(input) = ctx.gathered("instances").first() {
        for r in crate::instances::read_instances(&ctx.read(input)?)? {
            let e = sums.entry((r.language, r.pooling.name().to_string())).or_default();
            e.0 += r.outcome.other_cosine;
            e.1 += 1;
        }
    }
    Ok(sums.into_iter().map(|(k, (s, c))| (k, s / c as f64)).collect())
}

/// The correlation table's columns after task, pooling, layer pooling and n.
const STATS: [&str; 11] = [
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
    "pearson_perm_p",
];

impl Stage for Correlate {
    fn kind(&self) -> &'static str {
        "correlate"
    }
    fn version(&self) -> u32 {
        // 2: Kendall p-values exact for untied samples of n ≤ 33 (SciPy's method='auto').
        // 3: the floor diagnosis (points near chance on each axis, anisotropy, a flag and a
        // note) and Pearson's permutation p-value: new columns.
        3
    }
    fn doc(&self) -> &'static str {
        "Correlation of alignment with task scores across languages: Pearson, Spearman, Kendall (p-values), bootstrap CI of Pearson's r, its permutation p-value (exact for n ≤ 10), the fitted line, and the floor diagnosis (points near chance on each axis, anisotropy from an optional align_instances input, a flag when most are); one row per task, pooling and layer pooling"
    }
    fn params(&self) -> Vec<ParamSpec> {
        CorrelateParams::specs()
    }
    fn inputs(&self) -> Vec<InputSpec> {
        vec![
            InputSpec::one("points", "a join_tasks table"),
            InputSpec::one(
                "instances",
                "an align_instances node of the same embeddings: the mean cosine of non-parallel pairs (anisotropy) for the diagnosis",
            )
            .optional(),
        ]
    }
    fn check_params(&self, params: &serde_json::Value) -> Result<()> {
        mexa_pipeline::check::<CorrelateParams>(params)
    }
    // Long: one row of many statistics per group, then the table's columns.
    fn run(&self, ctx: &Ctx) -> Result<Output> {
        let p: CorrelateParams = ctx.typed()?;
        let points = read_points(&ctx.read(ctx.input("points")?)?)?;
        let aniso = anisotropy_by_language(ctx)?;
        let (b, level, seed) = (p.bootstrap, p.level, p.seed);
        if !(0.0..1.0).contains(&level) {
            bail!("`level` must be between 0 and 1");
        }
        let mut groups: BTreeMap<(String, String, String), Vec<&PointRow>> = BTreeMap::new();
        for r in &points {
            let q = &r.point;
            groups.entry((q.task.clone(), q.pooling.clone(), q.layer_pool.clone())).or_default().push(r);
        }
        let mut rows: Vec<(String, String, String, i32, [f64; 11], i32, Floor)> = Vec::new();
        for ((task, pooling, lp), pts) in groups {
            let (x, y): (Vec<f64>, Vec<f64>) = pts.iter().map(|r| (r.point.alignment, r.point.score)).unzip();
            let langs: Vec<&str> = pts.iter().map(|r| r.point.language.as_str()).collect();
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
            let perm = pearson_permutation(&x, &y, p.permutations, seed);
            let a: Vec<f64> =
                pts.iter().filter_map(|r| aniso.get(&(r.point.language.clone(), pooling.clone())).copied()).collect();
            let anisotropy = if a.is_empty() { f64::NAN } else { a.iter().sum::<f64>() / a.len() as f64 };
            let floor = Floor::of(&pts, anisotropy);
            rows.push((
                task,
                pooling,
                lp,
                x.len() as i32,
                [pr.r, pr.p, lo, hi, sr.r, sr.p, kr.r, kr.p, slope, intercept, perm.p],
                perm.permutations.min(i32::MAX as u64) as i32,
                floor,
            ));
        }
        let mut fields = vec![
            ("task", DataType::Utf8),
            ("pooling", DataType::Utf8),
            ("layer_pool", DataType::Utf8),
            ("n", DataType::Int32),
        ];
        fields.extend(STATS.iter().map(|n| (*n, DataType::Float64)));
        fields.extend([
            ("permutations", DataType::Int32),
            ("align_near_chance", DataType::Int32),
            ("task_near_chance", DataType::Int32),
            ("task_chance", DataType::Float64),
            ("task_below_majority", DataType::Int32),
            ("task_majority", DataType::Float64),
            ("anisotropy", DataType::Float64),
            ("floor", DataType::Boolean),
            ("floor_note", DataType::Utf8),
        ]);
        // Undefined: a statistic of a constant axis, the interval without a bootstrap, a
        // permutation p-value of a constant sample, the task's floors when unknown, the anisotropy
        // without `instances`.
        let mut undefined: Vec<&str> = STATS.to_vec();
        undefined.extend(["task_chance", "task_majority", "anisotropy"]);
        let sch = schema_with_nulls(&fields, &undefined);
        let mut cols = vec![
            utf8_col(rows.iter().map(|r| r.0.clone()).collect()),
            utf8_col(rows.iter().map(|r| r.1.clone()).collect()),
            utf8_col(rows.iter().map(|r| r.2.clone()).collect()),
            i32_col(rows.iter().map(|r| r.3).collect()),
        ];
        for j in 0..STATS.len() {
            cols.push(f64_col_undefined(rows.iter().map(|r| r.4[j]).collect()));
        }
        cols.extend([
            i32_col(rows.iter().map(|r| r.5).collect()),
            i32_col(rows.iter().map(|r| r.6.alignment).collect()),
            i32_col(rows.iter().map(|r| r.6.task).collect()),
            f64_col_undefined(rows.iter().map(|r| r.6.task_chance).collect()),
            i32_col(rows.iter().map(|r| r.6.task_below_majority).collect()),
            f64_col_undefined(rows.iter().map(|r| r.6.task_majority).collect()),
            f64_col_undefined(rows.iter().map(|r| r.6.anisotropy).collect()),
            bool_col(rows.iter().map(|r| r.6.flagged(r.3 as usize)).collect()),
            utf8_col(rows.iter().map(|r| r.6.note(r.3 as usize)).collect()),
        ]);
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
        let stats = STATS.iter().map(|c| f(c)).collect::<Result<Vec<_>>>()?;
        let (perms, anc, tnc) =
            (col_i32(b, "permutations")?, col_i32(b, "align_near_chance")?, col_i32(b, "task_near_chance")?);
        let (chance, aniso, floor, note) =
            (f("task_chance")?, f("anisotropy")?, col_bool(b, "floor")?, s("floor_note")?);
        let (below, majority) = (col_i32(b, "task_below_majority")?, f("task_majority")?);
        for i in 0..b.num_rows() {
            let v = |k: usize| f64_or_nan(stats[k], i);
            out.push(mexa_report::CorrRow {
                task: task.value(i).into(),
                pooling: p.value(i).into(),
                layer_pool: lp.value(i).into(),
                n: n.value(i),
                pearson: v(0),
                pearson_p: v(1),
                ci_lo: v(2),
                ci_hi: v(3),
                spearman: v(4),
                spearman_p: v(5),
                kendall: v(6),
                kendall_p: v(7),
                slope: v(8),
                intercept: v(9),
                pearson_perm_p: v(10),
                permutations: perms.value(i),
                align_near_chance: anc.value(i),
                task_near_chance: tnc.value(i),
                task_chance: f64_or_nan(chance, i),
                task_below_majority: below.value(i),
                task_majority: f64_or_nan(majority, i),
                anisotropy: f64_or_nan(aniso, i),
                floor: floor.value(i),
                floor_note: note.value(i).into(),
                holm_p: f64::NAN,
                bh_p: f64::NAN,
            });
        }
    }
    Ok(out)
}

/// A joined point of task `topics@mean`, weighted pooling, μMean (for tests).
#[cfg(test)]
pub(crate) fn test_point(language: &str, alignment: f64, score: f64) -> Point {
    Point {
        language: language.into(),
        task_language: language.into(),
        matched_by: "exact".into(),
        task: "topics@mean".into(),
        pooling: "weighted".into(),
        layer_pool: "mean".into(),
        alignment,
        score,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(lang: &str, alignment: f64, score: f64, items: i32, chance: f64) -> PointRow {
        PointRow::new(test_point(lang, alignment, score), f64::NAN, 80, "mexa", items, (chance, f64::NAN))
    }

    #[test]
    fn near_chance_on_each_axis_by_its_binomial_tail() {
        // n = 80 pairs: chance 1/159; one hit (μ = 0.0125) is chance, four (0.05) are not.
        assert!(point("a", 0.0125, 0.9, 80, 0.5).alignment_near_chance);
        assert!(!point("a", 0.05, 0.9, 80, 0.5).alignment_near_chance);
        // 80 items at chance 1/7 (11.4 expected): 16 right (0.2) is chance, 20 (0.25) is not.
        let brute = |k: usize| -> f64 {
            let p: f64 = 1.0 / 7.0;
            (k..=80)
                .map(|j| {
                    (0..j).fold(1.0, |c, i| c * (80 - i) as f64 / (i + 1) as f64)
                        * p.powi(j as i32)
                        * (1.0 - p).powi(80 - j as i32)
                })
                .sum()
        };
        assert!(brute(16) >= 0.05 && brute(20) < 0.05, "{} {}", brute(16), brute(20));
        assert!(point("a", 0.5, 0.2, 80, 1.0 / 7.0).score_near_chance);
        assert!(!point("a", 0.5, 0.25, 80, 1.0 / 7.0).score_near_chance);
        // Unknown items or chance: never near chance, and the count says unknown.
        let unknown = point("a", 0.5, 0.14, 0, 1.0 / 7.0);
        assert!(!unknown.score_near_chance);
        assert_eq!(Floor::of(&[&unknown], f64::NAN).task, -1);
        // Not μ: no chance model for the alignment axis.
        let cka = PointRow::new(unknown.point.clone(), f64::NAN, 80, "cka", 80, (0.5, f64::NAN));
        assert!(!cka.alignment_near_chance);
        assert_eq!(Floor::of(&[&cka], f64::NAN).alignment, -1);
    }

    #[test]
    fn a_task_score_that_does_not_beat_the_commonest_answer_is_at_a_floor_too() {
        // 80 sentences of which 51 carry the commonest label (0.6375): 0.6 is no better than
        // always answering it, 0.8 is; 1/7 chance would pass both.
        let p = |score: f64| PointRow::new(test_point("a", 0.5, score), f64::NAN, 80, "mexa", 80, (1.0 / 7.0, 0.6375));
        assert!(p(0.6).score_below_majority && !p(0.6).score_near_chance);
        assert!(!p(0.8).score_below_majority);
        let rows = [p(0.6), p(0.5), p(0.8)];
        let f = Floor::of(&rows.iter().collect::<Vec<_>>(), f64::NAN);
        assert_eq!((f.task, f.task_below_majority), (0, 2));
        assert!(
            f.flagged(3) && f.note(3).contains("commonest label of the scored items (0.637) for 2 of 3"),
            "{}",
            f.note(3)
        );
        // Unknown (a results file): never counted.
        let u = PointRow::new(test_point("a", 0.5, 0.6), f64::NAN, 80, "mexa", 80, (0.5, f64::NAN));
        assert_eq!(Floor::of(&[&u], f64::NAN).task_below_majority, -1);
    }

    #[test]
    fn most_points_at_a_floor_flag_the_correlation_and_anisotropy_suggests_centring() {
        let at_floor: Vec<PointRow> = (0..5).map(|i| point(&format!("l{i}"), 0.0125, 0.9, 80, 0.5)).collect();
        let refs: Vec<&PointRow> = at_floor.iter().collect();
        let anisotropic = Floor::of(&refs, 0.93);
        assert_eq!((anisotropic.alignment, anisotropic.task), (5, 0));
        assert!(anisotropic.flagged(5));
        let note = anisotropic.note(5);
        assert!(note.contains("alignment near chance for 5 of 5") && note.contains("centering: true"), "{note}");
        // Isotropic embeddings: flagged, but no hint to centre.
        assert!(!Floor::of(&refs, 0.1).note(5).contains("centering"));
        // Two of five is not most.
        let mixed: Vec<PointRow> =
            (0..5).map(|i| point(&format!("l{i}"), if i < 2 { 0.0125 } else { 0.3 }, 0.9, 80, 0.5)).collect();
        let f = Floor::of(&mixed.iter().collect::<Vec<_>>(), 0.93);
        assert!(!f.flagged(5) && f.note(5).is_empty());
        // A task at its floor: flagged on that axis, and centring is not suggested.
        let task: Vec<PointRow> = (0..4).map(|i| point(&format!("l{i}"), 0.3, 0.52, 80, 0.5)).collect();
        let f = Floor::of(&task.iter().collect::<Vec<_>>(), 0.93);
        assert_eq!(f.task, 4);
        assert!(
            f.note(4).contains("task score near its chance level (0.500) for 4 of 4")
                && !f.note(4).contains("centering")
        );
    }
}
