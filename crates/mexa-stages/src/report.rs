//! `report`: an HTML page, a Markdown summary and PNG/SVG figures of a pipeline's results,
//! stored as an artifact (a table of file paths and bytes) so it is cached like the rest.
use crate::align::{read_alignment, Metric, Row};
use crate::correlate::read_points;
use crate::util::{col_str, schema};
use anyhow::{anyhow, Result};
use arrow::array::{Array, BinaryArray, RecordBatch, StringArray};
use arrow::datatypes::DataType;
use mexa_pipeline::{Ctx, InputSpec, NodeSpec, Output, ParamSpec, Plan, Stage, Table};
use mexa_report::{Curve, Node, PointRow, ReportData};
use std::collections::BTreeMap;
use std::sync::Arc;

pub struct Report;

mexa_pipeline::stage_params! {
    /// `report`'s parameters.
    struct Params {
        /// page title
        title: String = "MEXA report",
        /// a paragraph under the title
        description: String = "",
        /// languages drawn in the per-layer curves (empty: eight spread over the ranking)
        curve_languages: Vec<String> = vec![],
    }
}

/// The report's input slots: (slot, the stage kind whose nodes it gathers, doc).
pub const SLOTS: &[(&str, &str, &str)] = &[
    ("alignment", "align", "align nodes"),
    ("pairs", "align_pairs", "align_pairs nodes"),
    ("lens", "lens", "lens nodes"),
    ("summary", "aggregate", "aggregate nodes"),
    ("points", "join_tasks", "join_tasks nodes"),
    ("correlation", "correlate", "correlate nodes"),
    ("lexical", "lexical", "lexical nodes"),
    ("layer_choice", "layer_choice", "layer_choice nodes"),
    ("instance_accuracy", "instance_accuracy", "instance_accuracy nodes"),
];

/// The report node of a planned pipeline (`mexa report FILE`): every node of the stages the
/// report draws, by slot and ordered by label.
pub fn report_node(plan: &Plan, title: String, curve_languages: Vec<String>) -> NodeSpec {
    let mut inputs: BTreeMap<String, Vec<(mexa_store::Key, String)>> = BTreeMap::new();
    for n in &plan.nodes {
        if let Some((slot, ..)) = SLOTS.iter().find(|(_, kind, _)| *kind == n.kind) {
            inputs.entry(slot.to_string()).or_default().push((n.key.clone(), n.label.clone()));
        }
    }
    for v in inputs.values_mut() {
        v.sort_by(|x, y| x.1.cmp(&y.1));
    }
    let params =
        serde_json::json!({ "title": title, "description": plan.description, "curve_languages": curve_languages });
    let (label, node_id) = (format!("{}/report", plan.pipeline), format!("{}/report (mexa report)", plan.pipeline));
    NodeSpec::new(&Report, label, node_id, params, inputs)
}

/// Holm and Benjamini–Hochberg adjustments of the permutation p-values over every correlation
/// row of the report (the family a reader scans).
fn adjust_over_the_page(nodes: &mut [Node<mexa_report::CorrRow>]) {
    let p: Vec<f64> = nodes.iter().flat_map(|n| n.rows.iter().map(|r| r.pearson_perm_p)).collect();
    let (holm, bh) = (mexa_metrics::inference::holm(&p), mexa_metrics::inference::benjamini_hochberg(&p));
    for (r, (h, b)) in nodes.iter_mut().flat_map(|n| n.rows.iter_mut()).zip(holm.into_iter().zip(bh)) {
        r.holm_p = h;
        r.bh_p = b;
    }
}

/// Leave-one-language-out predictions for the report: each join_tasks node alone, and the nodes
/// of one stage whose grid cells differ only in `model` pooled (as a `predict` node pools what
/// it gathers).
fn prediction_sets(nodes: Vec<(String, Vec<crate::correlate::PointRow>)>) -> Vec<mexa_report::PredictionSet> {
    let mut groups: BTreeMap<(String, Vec<(String, String)>), Vec<(String, Vec<crate::correlate::PointRow>)>> =
        BTreeMap::new();
    for (label, rows) in nodes {
        let stage = label.split('[').next().unwrap_or(&label).to_string();
        let rest: Vec<(String, String)> =
            mexa_report::cell_of(&label).into_iter().filter(|(k, _)| k != "model").collect();
        groups.entry((stage, rest)).or_default().push((label, rows));
    }
    let mut out = Vec::new();
    for ((stage, rest), members) in groups {
        let pooled_name = if rest.is_empty() {
            format!("{stage}: pooled over models")
        } else {
            let cell: Vec<String> = rest.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("{stage}[{}]: pooled over models", cell.join(","))
        };
        let mut scopes = crate::predict::scopes(members, true);
        if let Some(last) = scopes.last_mut().filter(|s| s.name == "pooled") {
            last.name = pooled_name;
        }
        for p in crate::predict::predictions(&scopes) {
            let errors = p.errors().to_vec();
            out.push(mexa_report::PredictionSet {
                scope: p.scope,
                task: p.task,
                pooling: p.pooling,
                layer_pool: p.layer_pool,
                methods: mexa_metrics::predict::Method::ALL.iter().map(|m| m.name().to_string()).collect(),
                points: p.points.into_iter().map(|q| (q.language, q.accuracy, q.predicted.to_vec())).collect(),
                errors,
            });
        }
    }
    out
}

/// The files of a report artifact.
pub fn report_files(t: &Table) -> Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    for b in &t.batches {
        let p = col_str(b, "path")?;
        let c = b
            .column_by_name("content")
            .and_then(|c| c.as_any().downcast_ref::<BinaryArray>())
            .ok_or_else(|| anyhow!("not a report artifact"))?;
        for i in 0..b.num_rows() {
            let rel = p.value(i);
            // A report artifact may come from someone else's store: its paths must stay inside
            // the output folder.
            let safe = !rel.is_empty()
                && !rel.contains('\0')
                && !rel.contains('\\')
                && std::path::Path::new(rel).components().all(|c| matches!(c, std::path::Component::Normal(_)));
            if !safe {
                anyhow::bail!(
                    "report artifact names the file `{}`, which is not a plain relative path: refused",
                    rel.escape_debug()
                );
            }
            out.push((rel.to_string(), c.value(i).to_vec()));
        }
    }
    Ok(out)
}

impl Stage for Report {
    fn kind(&self) -> &'static str {
        "report"
    }
    fn version(&self) -> u32 {
        // 2: scatter titles name the grid cell instead of the node label (they ran off the
        // figure); every correlate node of a cell reaches the grid table.
        // 3: near-chance cells grey, μMax intervals and n; the clustered pairs heatmap.
        // 4: the lexical floor, the floor diagnosis and multiple comparisons of correlations,
        // layer choice, prediction error with calibration plots, instance-level accuracy.
        // 5: per-language tables name each language (name, script, family / branch). The page
        // is this stage's stored output, so the language table's content reaches it here (and
        // only here: data artifacts never hold it).
        // 6: organised by question: models side by side on relative depth, a leaderboard of
        // correlations, scatters with chance, the pivot and intervals, task scores and the
        // pivot's row in the per-language tables.
        6
    }
    fn doc(&self) -> &'static str {
        "An HTML page (self-contained), a Markdown summary and PNG/SVG figures: the grid table, a leaderboard of correlations (Pearson with its interval, Spearman, Kendall, p-values, floors flagged), models side by side on relative depth, per-language tables (name, script, family; μMax with its interval, near-chance marked; task scores; the pivot's row), layer × language heatmaps, clustered language × language heatmaps with dendrograms (align_pairs), alignment-vs-task scatters with chance levels, the pivot and intervals, per-layer curves"
    }
    fn params(&self) -> Vec<ParamSpec> {
        Params::specs()
    }
    fn inputs(&self) -> Vec<InputSpec> {
        SLOTS.iter().map(|&(slot, _, doc)| InputSpec::gather(slot, doc).optional()).collect()
    }
    fn check_params(&self, params: &serde_json::Value) -> Result<()> {
        mexa_pipeline::check::<Params>(params)
    }
    fn run(&self, ctx: &Ctx) -> Result<Output> {
        let p: Params = ctx.typed()?;
        let mut d = ReportData {
            title: p.title,
            description: p.description,
            curve_languages: p.curve_languages,
            ..Default::default()
        };
        for i in ctx.gathered("alignment") {
            let mut curves: BTreeMap<(String, String), Vec<Row>> = BTreeMap::new();
            for r in read_alignment(&ctx.read(i)?)? {
                curves.entry((r.language.clone(), r.pooling.name().to_string())).or_default().push(r);
            }
            let rows = curves
                .into_iter()
                .map(|((language, pooling), mut v)| {
                    v.sort_by_key(|r| r.layer);
                    Curve {
                        language,
                        pooling,
                        scores: v.iter().map(|r| r.score(Metric::Mexa)).collect(),
                        near_chance: v.iter().map(|r| r.uncertainty().near_chance).collect(),
                        n: v.iter().map(|r| r.n).max().unwrap_or(0),
                    }
                })
                .collect();
            d.alignments.push(Node::new(&i.label, &i.key, rows));
        }
        for i in ctx.gathered("lens") {
            let mut by_lang: BTreeMap<String, Vec<crate::lens::LensRow>> = BTreeMap::new();
            for r in crate::lens::read_lens_table(&ctx.read(i)?)? {
                by_lang.entry(r.language.clone()).or_default().push(r);
            }
            let rows = by_lang
                .into_iter()
                .map(|(language, mut v)| {
                    v.sort_by_key(|r| r.layer);
                    mexa_report::LensCurve {
                        language,
                        pivot_share: v.iter().map(|r| r.shares.pivot).collect(),
                        language_share: v.iter().map(|r| r.shares.language).collect(),
                        positions: v.first().map_or(0, |r| r.shares.positions),
                        sentences: v.first().map_or(0, |r| r.sentences as usize),
                    }
                })
                .collect();
            d.lens.push(Node::new(&i.label, &i.key, rows));
        }
        for i in ctx.gathered("pairs") {
            d.pairs.push(Node::new(&i.label, &i.key, crate::pairs::pair_grids(&ctx.read(i)?)?));
        }
        for i in ctx.gathered("summary") {
            d.summaries.push(Node::new(&i.label, &i.key, crate::aggregate::read_summary(&ctx.read(i)?)?));
        }
        let mut point_nodes = Vec::new();
        for i in ctx.gathered("points") {
            // join_tasks records the pivot's own score per task in its meta.
            let meta = ctx.manifest(&i.key)?.meta;
            let pivot = meta.get("pivot").and_then(|p| p.as_str()).unwrap_or_default();
            for (task, score) in meta.get("pivot_score").and_then(|s| s.as_object()).into_iter().flatten() {
                if let (false, Some(score)) = (pivot.is_empty(), score.as_f64()) {
                    d.pivots.push(mexa_report::PivotScore {
                        points: i.label.clone(),
                        language: pivot.to_string(),
                        task: task.clone(),
                        score,
                    });
                }
            }
            let read = read_points(&ctx.read(i)?)?;
            point_nodes.push((i.label.clone(), read.clone()));
            let rows = read
                .into_iter()
                .map(|r| r.point)
                .map(|p| PointRow {
                    language: p.language,
                    task: p.task,
                    pooling: p.pooling,
                    layer_pool: p.layer_pool,
                    alignment: p.alignment,
                    score: p.score,
                })
                .collect();
            d.points.push(Node::new(&i.label, &i.key, rows));
        }
        for i in ctx.gathered("correlation") {
            d.correlations.push(Node::new(&i.label, &i.key, crate::correlate::read_correlation(&ctx.read(i)?)?));
        }
        adjust_over_the_page(&mut d.correlations);
        d.predictions = prediction_sets(point_nodes);
        for i in ctx.gathered("lexical") {
            let rows = crate::lexical::read_lexical(&ctx.read(i)?)?
                .into_iter()
                .map(|r| mexa_report::LexicalRow {
                    lexical_mexa: r.lexical_mexa(),
                    language: r.language,
                    pooling: r.pooling,
                    lexical_near_chance: r.lexical_near_chance,
                    model_mean: r.model_mean,
                    model_max: r.model_max,
                })
                .collect();
            d.lexical.push(Node::new(&i.label, &i.key, rows));
        }
        for i in ctx.gathered("layer_choice") {
            let rows = crate::layer_choice::read_choices(&ctx.read(i)?)?
                .into_iter()
                .map(|r| mexa_report::ChoiceRow {
                    score: r.score,
                    language: r.language,
                    pooling: r.pooling,
                    n: r.n,
                    in_sample: r.in_sample,
                    in_sample_layer: r.in_sample_layer,
                    split_half: r.split_half,
                    lolo: r.lolo,
                })
                .collect();
            d.layer_choices.push(Node::new(&i.label, &i.key, rows));
        }
        for i in ctx.gathered("instance_accuracy") {
            let rows = crate::instance_accuracy::read_instance_accuracy(&ctx.read(i)?)?
                .into_iter()
                .map(|r| mexa_report::InstanceRow {
                    aligned_accuracy: r.aligned_accuracy(),
                    unaligned_accuracy: r.unaligned_accuracy(),
                    difference: r.difference(),
                    language: r.language,
                    pooling: r.pooling,
                    layer: r.layer,
                    aligned: r.aligned,
                    unaligned: r.unaligned,
                })
                .collect();
            d.instances.push(Node::new(&i.label, &i.key, rows));
        }
        let files = mexa_report::render(&d)?;
        let sch = schema(&[("path", DataType::Utf8), ("content", DataType::Binary)]);
        let paths = StringArray::from(files.iter().map(|f| f.0.as_str()).collect::<Vec<_>>());
        let content = BinaryArray::from(files.iter().map(|f| f.1.as_slice()).collect::<Vec<_>>());
        let b = RecordBatch::try_new(sch.clone(), vec![Arc::new(paths), Arc::new(content)])?;
        Ok(Output { table: Table::new(sch, vec![b]), meta: serde_json::json!({"files": files.len()}) })
    }
}
