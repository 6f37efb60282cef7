//! The report page (HTML with inline SVG), its Markdown twin, and the figure files.
use crate::figures::{self, Figure};
use crate::{slug, AggRow, CorrRow, File, Node, ReportData};
use anyhow::Result;
use std::collections::BTreeSet;
use std::fmt::Write;

/// One row of the grid table.
struct GridRow {
    cell: Vec<String>,
    pooling: String,
    metric: String,
    languages: usize,
    mu_mean: f64,
    mu_max: f64,
    best_layer: Option<usize>,
    /// Per task: (r with μMean and its CI and floor flag, the same with μMax).
    corr: Vec<(String, Option<(f64, f64, f64, bool)>, Option<(f64, f64, f64, bool)>)>,
}

/// A node's grid cell for a figure title (`model=g, sentences=30`), or its label without one:
/// the stage name is the section's heading, and a long title runs off the figure.
fn cell_text<T>(n: &Node<T>) -> String {
    if n.cell.is_empty() {
        return n.label.clone();
    }
    n.cell.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")
}

fn avg(v: impl Iterator<Item = f64>) -> f64 {
    let (s, n) = v.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    if n == 0 {
        f64::NAN
    } else {
        s / n as f64
    }
}

fn same_cell<A, B>(a: &Node<A>, b: &Node<B>) -> bool {
    a.cell.len() == b.cell.len() && a.agrees(b)
}

fn grid(d: &ReportData, axes: &[String], tasks: &[String]) -> Vec<GridRow> {
    let mut out = Vec::new();
    for s in &d.summaries {
        let poolings: BTreeSet<&String> = s.rows.iter().map(|r| &r.pooling).collect();
        for p in poolings {
            let rows: Vec<&AggRow> = s.rows.iter().filter(|r| &r.pooling == p).collect();
            let best_layer =
                d.alignments.iter().find(|a| s.agrees(a) && a.cell.iter().all(|c| s.cell.contains(c))).and_then(|a| {
                    let curves: Vec<&Vec<f64>> = a.rows.iter().filter(|c| &c.pooling == p).map(|c| &c.scores).collect();
                    let layers = curves.first()?.len();
                    let mean: Vec<f64> = (0..layers).map(|l| avg(curves.iter().map(|c| c[l]))).collect();
                    (0..layers).max_by(|&i, &j| mean[i].total_cmp(&mean[j]).then(j.cmp(&i)))
                });
            // A cell may have several correlate nodes (one per task, e.g. topics and XCOPA), and
            // they may vary over more axes than the summary (a task axis of join_tasks).
            let corr_nodes: Vec<&Node<CorrRow>> =
                d.correlations.iter().filter(|c| c.agrees(s) && s.cell.iter().all(|x| c.cell.contains(x))).collect();
            let corr = tasks
                .iter()
                .map(|t| {
                    let get = |lp: &str| {
                        corr_nodes
                            .iter()
                            .flat_map(|c| c.rows.iter())
                            .find(|r: &&CorrRow| &r.task == t && &r.pooling == p && r.layer_pool == lp)
                            .map(|r| (r.pearson, r.ci_lo, r.ci_hi, r.floor))
                    };
                    (t.clone(), get("mean"), get("max"))
                })
                .collect();
            out.push(GridRow {
                cell: axes
                    .iter()
                    .map(|a| s.cell.iter().find(|(k, _)| k == a).map(|(_, v)| v.clone()).unwrap_or_default())
                    .collect(),
                pooling: p.clone(),
                metric: rows.first().map(|r| r.metric.clone()).unwrap_or_default(),
                languages: rows.len(),
                mu_mean: avg(rows.iter().map(|r| r.mean)),
                mu_max: avg(rows.iter().map(|r| r.max)),
                best_layer,
                corr,
            });
        }
    }
    out
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Text for Markdown: characters Markdown (or HTML inside it) would act on are escaped, so a
/// description or label shows as written and cannot inject markup.
pub(crate) fn md(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '\\' | '`' | '*' | '_' | '{' | '}' | '[' | ']' | '(' | ')' | '#' | '+' | '!' | '|' | '~' => {
                out.push('\\');
                out.push(ch);
            }
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

fn num(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.3}")
    } else {
        "–".into()
    }
}

fn td_num(v: f64) -> String {
    format!("<td class=\"n\" data-value=\"{v}\">{}</td>", num(v))
}

/// A language's μMax cell: the value, its interval when there is one, and ° (greyed) when
/// near chance.
fn td_max(r: &AggRow) -> String {
    let ci =
        if r.max_ci.0.is_finite() { format!(" [{}, {}]", num(r.max_ci.0), num(r.max_ci.1)) } else { String::new() };
    let (mark, style) = if r.near_chance { ("°", " style=\"color:#999\"") } else { ("", "") };
    format!("<td class=\"n\" data-value=\"{}\"{style}>{}{ci}{mark}</td>", r.max, num(r.max))
}

/// A correlation cell: r, its interval, and ⚑ when most points are near chance on an axis.
fn corr_text(c: &Option<(f64, f64, f64, bool)>) -> String {
    let flag = |f: bool| if f { " ⚑" } else { "" };
    match c {
        Some((r, lo, hi, f)) if lo.is_finite() => format!("{} [{}, {}]{}", num(*r), num(*lo), num(*hi), flag(*f)),
        Some((r, _, _, f)) => format!("{}{}", num(*r), flag(*f)),
        None => "–".into(),
    }
}

/// Renders the report: report.html, report.md, figures/*.png and figures/*.svg.
pub fn render(d: &ReportData) -> Result<Vec<File>> {
    let d = &d.bounded();
    let axes: Vec<String> = {
        let mut v: Vec<String> = Vec::new();
        for s in &d.summaries {
            for (a, _) in &s.cell {
                if !v.contains(a) {
                    v.push(a.clone());
                }
            }
        }
        v
    };
    let tasks: Vec<String> = d
        .correlations
        .iter()
        .flat_map(|c| c.rows.iter().map(|r| r.task.clone()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let rows = grid(d, &axes, &tasks);
    let show_metric = !axes.iter().any(|a| a == "metric");
    let mut figs = Figures::default();
    models_figures(d, &mut figs)?;
    alignment_figures(d, &mut figs)?;
    pair_figures(d, &mut figs)?;
    lens_figures(d, &mut figs)?;
    scatter_figures(d, &mut figs)?;
    calibration_figures(d, &mut figs)?;
    let honest = crate::honest::sections(d);
    let leaderboard = crate::honest::leaderboard(&d.correlations);
    let page = Page {
        d,
        axes: &axes,
        tasks: &tasks,
        rows: &rows,
        leaderboard: leaderboard.as_ref(),
        sections: &figs.sections,
        honest: &honest,
        show_metric,
    };
    let mut files = figs.files;
    files.push(("report.html".into(), page.html()?.into_bytes()));
    files.push(("report.md".into(), page.markdown()?.into_bytes()));
    Ok(files)
}

/// Larger SVGs are inlined in the page as their PNG.
const INLINE_SVG_MAX: usize = 1 << 20;

/// Standard base64 (RFC 4648, with padding).
fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            out.push(if i <= c.len() { A[(n >> shift & 63) as usize] as char } else { '=' });
        }
    }
    out
}

/// The figures drawn so far: their files, and by section (title, [(stem, caption, svg)]).
#[derive(Default)]
struct Figures {
    files: Vec<File>,
    sections: Vec<(String, Vec<(String, String, String)>)>,
}

impl Figures {
    fn add(&mut self, section: &str, fig: Figure, caption: String) -> Result<()> {
        let (png, svg) = figures::render(&fig)?;
        // A figure of tens of thousands of cells (205 × 205 languages) is megabytes of SVG:
        // the page inlines its PNG instead, and the SVG stays beside it.
        let inline = if svg.len() > INLINE_SVG_MAX {
            format!(
                "<img alt=\"{}\" src=\"data:image/png;base64,{}\" style=\"max-width:100%\">",
                esc(&caption),
                base64(&png)
            )
        } else {
            svg.clone()
        };
        self.files.push((format!("figures/{}.png", fig.stem), png));
        self.files.push((format!("figures/{}.svg", fig.stem), svg.into_bytes()));
        match self.sections.iter_mut().find(|(t, _)| t == section) {
            Some((_, v)) => v.push((fig.stem, caption, inline)),
            None => self.sections.push((section.to_string(), vec![(fig.stem, caption, inline)])),
        }
        Ok(())
    }
}

/// Models side by side: per pooling, when several align nodes have it, one panel per node
/// (per model) of μ per layer on a relative-depth axis.
fn models_figures(d: &ReportData, figs: &mut Figures) -> Result<()> {
    let poolings: BTreeSet<&String> = d.alignments.iter().flat_map(|a| a.rows.iter().map(|c| &c.pooling)).collect();
    for p in poolings {
        let panels: Vec<(String, Vec<(String, Vec<f64>)>)> = d
            .alignments
            .iter()
            .filter(|a| a.rows.iter().any(|c| &c.pooling == p))
            .map(|a| {
                let depth = a.rows.iter().find(|c| &c.pooling == p).map_or(0, |c| c.scores.len());
                let lines = a.rows.iter().filter(|c| &c.pooling == p).map(|c| (c.language.clone(), c.scores.clone()));
                (format!("{} ({} hidden states)", cell_text(a), depth), lines.collect())
            })
            .collect();
        if panels.len() < 2 {
            continue;
        }
        let rows = panels.len().div_ceil(3) as u32;
        let title = format!("MEXA μ per layer, models side by side ({p} pooling)");
        let (t1, p1, t2, p2) = (title.clone(), panels.clone(), title, panels.clone());
        figs.add(
            "Models side by side",
            Figure {
                stem: format!("models-{p}"),
                size: (1100, 40 + 340 * rows),
                draw: Box::new(move |r| figures::depth_panels(r, &t1, &p1)),
                draw_png: Box::new(move |r| figures::depth_panels(r, &t2, &p2)),
            },
            format!(
                "One panel per align node ({} in all), μ of each language against the pivot at every hidden state ({p} pooling), on a relative-depth axis (hidden state ÷ the last one: 0 is the embedding output, 1 the last layer) so models of different depths line up; black: the mean over languages.",
                panels.len()
            ),
        )?;
    }
    Ok(())
}

/// Per align node and pooling: the language × layer heatmap and the per-layer curves.
fn alignment_figures(d: &ReportData, figs: &mut Figures) -> Result<()> {
    for a in &d.alignments {
        let poolings: BTreeSet<&String> = a.rows.iter().map(|c| &c.pooling).collect();
        for p in poolings {
            let mut curves: Vec<(&String, &Vec<f64>, f64, &Vec<bool>)> = a
                .rows
                .iter()
                .filter(|c| &c.pooling == p)
                .map(|c| (&c.language, &c.scores, avg(c.scores.iter().copied()), &c.near_chance))
                .collect();
            curves.sort_by(|x, y| y.2.total_cmp(&x.2).then(x.0.cmp(y.0)));
            let langs: Vec<String> = curves.iter().map(|c| c.0.clone()).collect();
            let grid_v: Vec<Vec<f64>> = curves.iter().map(|c| c.1.clone()).collect();
            let grey: Vec<Vec<bool>> = curves.iter().map(|c| c.3.clone()).collect();
            let n = a.rows.iter().map(|c| c.n).max().unwrap_or(0);
            let title = format!("MEXA μ per layer — {} ({p} pooling, n = {n})", a.label);
            let h = (90 + 22 * langs.len() as u32).max(260);
            let (t1, l1, g1, e1) = (title.clone(), langs.clone(), grid_v.clone(), grey.clone());
            let (t2, l2, g2, e2) = (title.clone(), langs.clone(), grid_v.clone(), grey);
            figs.add(
                &a.label,
                Figure {
                    stem: format!("heatmap-{}-{p}", slug(&a.label)),
                    size: (900, h),
                    draw: Box::new(move |r| figures::heatmap(r, &t1, &l1, &g1, &e1)),
                    draw_png: Box::new(move |r| figures::heatmap(r, &t2, &l2, &g2, &e2)),
                },
                format!("Alignment with the pivot at every hidden state, languages by mean μ ({p} pooling, n = {n} sentence pairs); grey: not distinguishable from chance (p ≥ 0.05 against 1/(2n − 1) per pair)."),
            )?;
            // Curves: all languages if few, else an even spread over the ranking.
            let pick: Vec<usize> = if !d.curve_languages.is_empty() {
                curves.iter().enumerate().filter(|(_, c)| d.curve_languages.contains(c.0)).map(|(i, _)| i).collect()
            } else if curves.len() <= 8 {
                (0..curves.len()).collect()
            } else {
                (0..8).map(|i| i * (curves.len() - 1) / 7).collect()
            };
            let lines: Vec<(String, Vec<f64>)> =
                pick.iter().map(|&i| (curves[i].0.clone(), curves[i].1.clone())).collect();
            let title = format!("Per-layer μ — {} ({p})", a.label);
            let (t1, ln1, t2, ln2) = (title.clone(), lines.clone(), title, lines);
            figs.add(
                &a.label,
                Figure {
                    stem: format!("layers-{}-{p}", slug(&a.label)),
                    size: (900, 420),
                    draw: Box::new(move |r| figures::curves(r, &t1, "MEXA μ", &ln1)),
                    draw_png: Box::new(move |r| figures::curves(r, &t2, "MEXA μ", &ln2)),
                },
                format!("μ across hidden states for {} languages ({p} pooling).", pick.len()),
            )?;
        }
    }
    Ok(())
}

/// Per align_pairs node and pooling: the clustered language × language heatmap.
fn pair_figures(d: &ReportData, figs: &mut Figures) -> Result<()> {
    for pn in &d.pairs {
        for g in &pn.rows {
            let title = format!(
                "μ{} between languages — {} ({}, n = {})",
                title_case(&g.layer_pool),
                cell_text(pn),
                g.pooling,
                g.n
            );
            let side = (260 + 16 * g.languages.len() as u32).clamp(760, 2400);
            let g1 = g.clone();
            let g2 = g.clone();
            let (t1, t2) = (title.clone(), title);
            figs.add(
                &pn.label,
                Figure {
                    stem: format!("pairs-{}-{}", slug(&pn.label), g.pooling),
                    size: (side + 90, side + side / 4),
                    draw: Box::new(move |r| {
                        figures::cluster_heatmap(r, &t1, &g1.languages, &g1.scores, &g1.near_chance, &g1.order, &g1.merges)
                    }),
                    draw_png: Box::new(move |r| {
                        figures::cluster_heatmap(r, &t2, &g2.languages, &g2.scores, &g2.near_chance, &g2.order, &g2.merges)
                    }),
                },
                format!("MEXA μ of every language (column) against every other as pivot (row), {} over layers ({} pooling, n = {}), ordered by average-linkage clustering on 1 − the symmetric μ; the dendrogram's heights are those distances. Grey: near chance at every layer.", g.layer_pool, g.pooling, g.n),
            )?;
        }
    }
    Ok(())
}

pub(crate) fn title_case(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}

/// Per lens node: the share of each hidden state's top-1 tokens in the pivot's vocabulary
/// only (the "latent English" curve) and in the input language's only.
fn lens_figures(d: &ReportData, figs: &mut Figures) -> Result<()> {
    for ln in &d.lens {
        let (sentences, positions) = ln.rows.first().map_or((0, 0), |c| (c.sentences, c.positions));
        for (what, pick) in [("pivot", true), ("language", false)] {
            let lines: Vec<(String, Vec<f64>)> = ln
                .rows
                .iter()
                .map(|c| (c.language.clone(), if pick { c.pivot_share.clone() } else { c.language_share.clone() }))
                .collect();
            let title = if pick {
                format!("Logit lens: top-1 tokens in the pivot's vocabulary only — {}", cell_text(ln))
            } else {
                format!("Logit lens: top-1 tokens in the input language's vocabulary only — {}", cell_text(ln))
            };
            let (t1, l1, t2, l2) = (title.clone(), lines.clone(), title, lines);
            figs.add(
                &ln.label,
                Figure {
                    stem: format!("lens-{}-{what}", slug(&ln.label)),
                    size: (900, 420),
                    draw: Box::new(move |r| figures::curves(r, &t1, "share of top-1 tokens", &l1)),
                    draw_png: Box::new(move |r| figures::curves(r, &t2, "share of top-1 tokens", &l2)),
                },
                format!(
                    "Each hidden state decoded through the final norm and the LM head at every position of the first {sentences} sentences per language (about {positions} positions each); the share of top-1 next tokens that occur in the model's tokenization of the {} corpus sentences and not in the {}'s.",
                    if pick { "pivot's" } else { "input language's" },
                    if pick { "input language" } else { "pivot" }
                ),
            )?;
        }
    }
    Ok(())
}

/// Per join_tasks node and (task, pooling, layer pooling): the scatter of task score against
/// μ, with its grid cell's fitted line, both chance levels, μMax's intervals and the pivot.
fn scatter_figures(d: &ReportData, figs: &mut Figures) -> Result<()> {
    for pn in &d.points {
        let combos: BTreeSet<(&String, &String, &String)> =
            pn.rows.iter().map(|r| (&r.task, &r.pooling, &r.layer_pool)).collect();
        let corrs: Vec<&Node<CorrRow>> = d.correlations.iter().filter(|c| same_cell(c, pn)).collect();
        // The summary of the same cell: sentence pairs per score, μMax's intervals.
        let summary = d.summaries.iter().find(|s| s.agrees(pn) && s.cell.iter().all(|x| pn.cell.contains(x)));
        for (task, pooling, lp) in combos {
            let pts: Vec<(String, f64, f64)> = pn
                .rows
                .iter()
                .filter(|r| &r.task == task && &r.pooling == pooling && &r.layer_pool == lp)
                .map(|r| (r.language.clone(), r.alignment, r.score))
                .collect();
            let c = corrs
                .iter()
                .flat_map(|c| c.rows.iter())
                .find(|r| &r.task == task && &r.pooling == pooling && &r.layer_pool == lp);
            let agg = |l: &str| summary.and_then(|s| s.rows.iter().find(|r| r.language == l && &r.pooling == pooling));
            let n = pts.iter().filter_map(|p| agg(&p.0)).map(|r| r.n).max();
            let marks = figures::ScatterMarks {
                line: c.map(|c| (c.slope, c.intercept)),
                x_chance: n.filter(|&n| n > 0).map(|n| 1.0 / (2.0 * n as f64 - 1.0)),
                y_chance: c.map(|c| c.task_chance).filter(|v| v.is_finite()),
                y_majority: c.map(|c| c.task_majority).filter(|v| v.is_finite()),
                x_err: pts.iter().map(|p| agg(&p.0).filter(|_| lp == "max").map(|r| r.max_ci)).collect(),
                pivot: d
                    .pivots
                    .iter()
                    .find(|v| v.points == pn.label && &v.task == task)
                    .map(|v| (v.language.clone(), 1.0, v.score)),
            };
            let r_text = c.map(|c| format!(", r = {:.3}", c.pearson)).unwrap_or_default();
            let flag = if c.is_some_and(|c| c.floor) { " ⚑" } else { "" };
            let title = format!(
                "{task} vs μ{} — {} ({pooling}){r_text}{flag}",
                if lp == "mean" { "Mean" } else { "Max" },
                cell_text(pn)
            );
            let xd = format!("μ{} ({pooling} pooling)", if lp == "mean" { "Mean" } else { "Max" });
            let mut caption = format!("Each point is a language; the line is the least-squares fit{r_text}");
            if marks.x_chance.is_some() || marks.y_chance.is_some() {
                caption += "; dashed: chance (μ's 1/(2n − 1) with n sentence pairs, and the task's chance accuracy)";
            }
            if let Some(m) = marks.y_majority {
                caption += &format!("; dotted: always giving the commonest answer ({})", num(m));
            }
            if marks.x_err.iter().any(Option::is_some) {
                caption += "; bars: the best layer's 95% bootstrap interval over sentences";
            }
            if let Some(pv) = &marks.pivot {
                caption += &format!("; hollow: the pivot {} (μ = 1 by definition, not in the fit)", pv.0);
            }
            if let Some(c) = c.filter(|c| c.floor) {
                caption += &format!(". ⚑ {}", c.floor_note);
            }
            caption.push('.');
            let yd = format!("{task} score");
            let (t1, x1, p1, m1, ta) = (title.clone(), xd.clone(), pts.clone(), marks.clone(), yd.clone());
            let (t2, x2, p2, m2, tb) = (title, xd, pts, marks, yd);
            figs.add(
                &pn.label,
                Figure {
                    stem: format!("scatter-{}-{}-{pooling}-{lp}", slug(&pn.label), slug(task)),
                    size: (720, 520),
                    draw: Box::new(move |r| figures::scatter(r, &t1, (&x1, &ta), &p1, &m1)),
                    draw_png: Box::new(move |r| figures::scatter(r, &t2, (&x2, &tb), &p2, &m2)),
                },
                caption,
            )?;
        }
    }
    Ok(())
}

/// Per prediction set: measured accuracy against each method's leave-one-language-out
/// prediction.
fn calibration_figures(d: &ReportData, figs: &mut Figures) -> Result<()> {
    for s in &d.predictions {
        let series: Vec<(String, Vec<(f64, f64)>)> = s
            .methods
            .iter()
            .enumerate()
            .map(|(m, name)| {
                let (mae, _) = s.errors[m];
                (format!("{name} (MAE {})", num(mae)), s.points.iter().map(|p| (p.2[m], p.1)).collect())
            })
            .collect();
        let title = format!("{} ({}): {} from μ{}", s.scope, s.pooling, s.task, title_case(&s.layer_pool));
        let (t1, s1, t2, s2) = (title.clone(), series.clone(), title, series);
        figs.add(
            "Prediction: calibration",
            Figure {
                stem: format!("calibration-{}-{}-{}-{}", slug(&s.scope), slug(&s.task), s.pooling, s.layer_pool),
                size: (800, 580),
                draw: Box::new(move |r| figures::calibration(r, &t1, &s1)),
                draw_png: Box::new(move |r| figures::calibration(r, &t2, &s2)),
            },
            format!(
                "Each point is a language ({} points): its measured accuracy against the accuracy predicted for it without it; on the diagonal, prediction is exact.",
                s.points.len()
            ),
        )?;
    }
    Ok(())
}

/// What the HTML page and the Markdown summary are written from.
struct Page<'a> {
    d: &'a ReportData,
    axes: &'a [String],
    tasks: &'a [String],
    rows: &'a [GridRow],
    leaderboard: Option<&'a crate::honest::Tab>,
    sections: &'a [(String, Vec<(String, String, String)>)],
    honest: &'a [(String, Vec<crate::honest::Tab>)],
    show_metric: bool,
}

impl Page<'_> {
    fn html(&self) -> Result<String> {
        let Page { d, axes, tasks, rows, leaderboard, sections, honest, show_metric } = *self;
        let mut h = String::new();
        let title = esc(&d.title);
        write!(h, "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title><style>\
body{{font-family:DejaVu Sans,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1100px;color:#222}}\
table{{border-collapse:collapse;margin:1em 0;font-size:14px}}th,td{{border:1px solid #ccc;padding:3px 8px}}\
th{{background:#f3f3f3}}td.n{{text-align:right;font-variant-numeric:tabular-nums}}figure{{margin:1.5em 0}}\
figcaption{{color:#555;font-size:13px}}h2{{border-bottom:1px solid #ddd;padding-bottom:4px}}</style></head><body>\n<h1>{title}</h1>\n")?;
        if !d.description.is_empty() {
            writeln!(h, "<p class=\"description\">{}</p>", esc(&d.description))?;
        }
        writeln!(h, "<p>MEXA alignment of each language with the pivot (share of parallel sentences whose cosine beats every other in its row and column), pooled over layers; μMean and μMax are averages over languages. Correlations are Pearson's r across languages with a bootstrap 95% interval; ⚑ marks a correlation most of whose languages are near chance on one axis (see Correlations). Per language, μMax carries its best layer's 95% bootstrap interval over sentences; a score marked ° is not distinguishable from chance (p ≥ 0.05 against 1/(2n − 1) per pair), and such cells are grey in the figures; where the pipeline has a lexical floor, the μ that character n-gram TF-IDF retrieval reaches on the same sentences stands beside it. n is the number of sentence pairs behind each score.</p>")?;
        writeln!(h, "<h2>Grid</h2>\n<table id=\"grid\"><thead><tr>")?;
        for a in axes {
            write!(h, "<th>{}</th>", esc(a))?;
        }
        write!(
            h,
            "<th>pooling</th>{}<th>languages</th><th>μMean</th><th>μMax</th><th>best layer (μ)</th>",
            if show_metric { "<th>metric</th>" } else { "" }
        )?;
        for t in tasks {
            write!(h, "<th>r({}, μMean)</th><th>r({}, μMax)</th>", esc(t), esc(t))?;
        }
        writeln!(h, "</tr></thead><tbody>")?;
        for r in rows {
            write!(h, "<tr>")?;
            for c in &r.cell {
                write!(h, "<td>{}</td>", esc(c))?;
            }
            let metric = if show_metric { format!("<td>{}</td>", esc(&r.metric)) } else { String::new() };
            write!(
                h,
                "<td>{}</td>{metric}<td class=\"n\">{}</td>{}{}<td class=\"n\">{}</td>",
                esc(&r.pooling),
                r.languages,
                td_num(r.mu_mean),
                td_num(r.mu_max),
                r.best_layer.map(|b| b.to_string()).unwrap_or("–".into())
            )?;
            for (_, m, x) in &r.corr {
                write!(h, "<td class=\"n\">{}</td><td class=\"n\">{}</td>", corr_text(m), corr_text(x))?;
            }
            writeln!(h, "</tr>")?;
        }
        writeln!(h, "</tbody></table>")?;
        if let Some(t) = leaderboard {
            writeln!(h, "<h2>Leaderboard</h2>")?;
            h.push_str(&t.html());
        }
        for (section, figs) in sections {
            writeln!(h, "<h2>{}</h2>", esc(section))?;
            for (stem, caption, svg) in figs {
                writeln!(h, "<figure id=\"{stem}\">{svg}<figcaption>{} (<a href=\"figures/{stem}.png\">PNG</a>, <a href=\"figures/{stem}.svg\">SVG</a>)</figcaption></figure>", esc(caption))?;
            }
        }
        for (title, tabs) in honest {
            writeln!(h, "<h2>{}</h2>", esc(title))?;
            for t in tabs {
                h.push_str(&t.html());
            }
        }
        writeln!(h, "<h2>Per language</h2>")?;
        for s in &d.summaries {
            let poolings: Vec<String> =
                s.rows.iter().map(|r| r.pooling.clone()).collect::<BTreeSet<_>>().into_iter().collect();
            let langs: Vec<String> =
                s.rows.iter().map(|r| r.language.clone()).collect::<BTreeSet<_>>().into_iter().collect();
            writeln!(
                h,
                "<h3>{}</h3>\n<table class=\"languages\" data-key=\"{}\"><thead><tr><th>language</th><th>name</th><th>script</th><th>family / branch</th>",
                esc(&s.label),
                s.key
            )?;
            // The lexical floor of the same cell, when the pipeline computes one.
            let lexical = d.lexical.iter().find(|x| same_cell(x, s));
            let floor_of = |l: &str| lexical.and_then(|x| x.rows.iter().find(|r| r.language == l));
            for p in &poolings {
                write!(h, "<th>{p} mean</th><th>{p} max [95% CI]</th><th>{p} best layer</th>")?;
                if lexical.is_some() {
                    write!(h, "<th>{p} mean − lexical</th>")?;
                }
            }
            if lexical.is_some() {
                write!(h, "<th>lexical μ</th>")?;
            }
            // Task scores of the same cell (join_tasks nodes), and the pivot's own row.
            let point_nodes: Vec<&Node<crate::PointRow>> =
                d.points.iter().filter(|pn| pn.agrees(s) && s.cell.iter().all(|x| pn.cell.contains(x))).collect();
            let score_tasks: Vec<&String> = point_nodes
                .iter()
                .flat_map(|pn| pn.rows.iter().map(|r| &r.task))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            let pivots: Vec<&crate::PivotScore> =
                d.pivots.iter().filter(|v| point_nodes.iter().any(|pn| pn.label == v.points)).collect();
            let score_of = |l: &str, t: &str| {
                point_nodes
                    .iter()
                    .flat_map(|pn| pn.rows.iter())
                    .find(|r| r.language == l && r.task == t)
                    .map(|r| r.score)
                    .or_else(|| pivots.iter().find(|v| v.language == l && v.task == t).map(|v| v.score))
            };
            for t in &score_tasks {
                write!(h, "<th>{} score</th>", esc(t))?;
            }
            writeln!(h, "<th>n</th></tr></thead><tbody>")?;
            let scores = |l: &str| -> String {
                score_tasks.iter().map(|t| score_of(l, t).map_or("<td></td>".to_string(), td_num)).collect()
            };
            if let Some(pivot) = pivots.first().map(|v| &v.language).filter(|p| !langs.contains(p)) {
                let who = mexa_core::language::lookup(pivot);
                let family = [who.family, who.branch].iter().filter(|s| !s.is_empty()).copied().collect::<Vec<_>>();
                write!(
                    h,
                    "<tr class=\"pivot\"><td>{} (pivot)</td><td>{}</td><td>{}</td><td>{}</td>",
                    esc(pivot),
                    esc(who.name),
                    esc(&who.script),
                    esc(&family.join(" / "))
                )?;
                for _ in &poolings {
                    write!(
                        h,
                        "{}{}<td></td>{}",
                        td_num(1.0),
                        td_num(1.0),
                        if lexical.is_some() { "<td></td>" } else { "" }
                    )?;
                }
                if lexical.is_some() {
                    h.push_str("<td></td>");
                }
                writeln!(h, "{}<td></td></tr>", scores(pivot))?;
            }
            for l in &langs {
                // Who the language is (ISO 639-3 name, script, Glottolog family; empty if unknown).
                let who = mexa_core::language::lookup(l);
                let family = [who.family, who.branch].iter().filter(|s| !s.is_empty()).copied().collect::<Vec<_>>();
                write!(
                    h,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td>",
                    esc(l),
                    esc(who.name),
                    esc(&who.script),
                    esc(&family.join(" / "))
                )?;
                let mut n = None;
                let floor = floor_of(l);
                for p in &poolings {
                    match s.rows.iter().find(|r| &r.language == l && &r.pooling == p) {
                        Some(r) => {
                            n = Some(r.n);
                            write!(h, "{}{}<td class=\"n\">{}</td>", td_num(r.mean), td_max(r), r.best_layer)?;
                            if lexical.is_some() {
                                h.push_str(&td_num(floor.map_or(f64::NAN, |f| r.mean - f.lexical_mexa)));
                            }
                        }
                        None => write!(
                            h,
                            "<td></td><td></td><td></td>{}",
                            if lexical.is_some() { "<td></td>" } else { "" }
                        )?,
                    }
                }
                if lexical.is_some() {
                    let mark = if floor.is_some_and(|f| f.lexical_near_chance) { "°" } else { "" };
                    let v = floor.map_or(f64::NAN, |f| f.lexical_mexa);
                    write!(h, "<td class=\"n\" data-value=\"{v}\">{}{mark}</td>", num(v))?;
                }
                h.push_str(&scores(l));
                writeln!(h, "<td class=\"n\">{}</td></tr>", n.map(|n| n.to_string()).unwrap_or_default())?;
            }
            writeln!(h, "</tbody></table>")?;
        }
        writeln!(h, "</body></html>")?;
        Ok(h)
    }

    fn markdown(&self) -> Result<String> {
        let Page { d, axes, tasks, rows, leaderboard, sections, honest, show_metric } = *self;
        let mut m = format!("# {}\n\n", md(&d.title));
        if !d.description.is_empty() {
            writeln!(m, "{}\n", md(&d.description))?;
        }
        m.push_str("## Grid\n\n");
        let mut header: Vec<String> = axes.iter().map(|a| md(a)).collect();
        header.push("pooling".into());
        if show_metric {
            header.push("metric".into());
        }
        header.extend(["languages", "μMean", "μMax", "best layer (μ)"].map(String::from));
        for t in tasks {
            header.push(format!("r({}, μMean)", md(t)));
            header.push(format!("r({}, μMax)", md(t)));
        }
        writeln!(m, "| {} |\n|{}|", header.join(" | "), header.iter().map(|_| "---").collect::<Vec<_>>().join("|"))?;
        for r in rows {
            let mut cells: Vec<String> = r.cell.iter().map(|c| md(c)).collect();
            cells.push(md(&r.pooling));
            if show_metric {
                cells.push(md(&r.metric));
            }
            cells.extend([
                r.languages.to_string(),
                num(r.mu_mean),
                num(r.mu_max),
                r.best_layer.map(|b| b.to_string()).unwrap_or("–".into()),
            ]);
            for (_, a, b) in &r.corr {
                cells.push(corr_text(a));
                cells.push(corr_text(b));
            }
            writeln!(m, "| {} |", cells.join(" | "))?;
        }
        if let Some(t) = leaderboard {
            m.push_str("\n## Leaderboard\n\n");
            m.push_str(&t.markdown());
        }
        for (section, figs) in sections {
            writeln!(m, "\n## {}\n", md(section))?;
            for (stem, caption, _) in figs {
                writeln!(m, "![{}](figures/{stem}.png)\n", md(caption))?;
            }
        }
        for (title, tabs) in honest {
            writeln!(m, "\n## {title}\n")?;
            for t in tabs {
                m.push_str(&t.markdown());
            }
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corr(task: &str, layer_pool: &str, r: f64) -> CorrRow {
        CorrRow {
            task: task.into(),
            pooling: "weighted".into(),
            layer_pool: layer_pool.into(),
            n: 8,
            pearson: r,
            pearson_p: 0.01,
            ci_lo: r - 0.1,
            ci_hi: r + 0.1,
            spearman: r,
            spearman_p: 0.01,
            kendall: r,
            kendall_p: 0.01,
            slope: 1.0,
            intercept: 0.0,
            pearson_perm_p: 0.02,
            permutations: 40320,
            align_near_chance: 0,
            task_near_chance: 0,
            task_chance: 1.0 / 7.0,
            task_below_majority: -1,
            task_majority: f64::NAN,
            anisotropy: f64::NAN,
            floor: false,
            floor_note: String::new(),
            holm_p: f64::NAN,
            bh_p: f64::NAN,
        }
    }

    #[test]
    fn base64_is_rfc_4648() {
        for (raw, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(raw.as_bytes()), enc);
        }
    }

    /// A cell with one correlate node per task (SIB-200 topics and XCOPA) shows both in the
    /// grid table, not only the first node's.
    #[test]
    fn every_correlate_node_of_a_cell_reaches_the_grid() {
        let agg = AggRow {
            language: "ita_Latn".into(),
            pooling: "weighted".into(),
            metric: "mexa".into(),
            mean: 0.5,
            max: 0.9,
            best_layer: 3,
            n: 100,
            max_ci: (0.85, 0.95),
            near_chance: false,
        };
        let d = ReportData {
            summaries: vec![Node::new("summary[model=g]", "k1", vec![agg])],
            correlations: vec![
                Node::new(
                    "correlation[model=g]",
                    "k2",
                    vec![corr("topics@mean", "mean", 0.9), corr("topics@mean", "max", 0.95)],
                ),
                Node::new(
                    "xcopa_correlation[model=g]",
                    "k3",
                    vec![corr("xcopa", "mean", -0.3), corr("xcopa", "max", -0.2)],
                ),
            ],
            ..Default::default()
        };
        let tasks = vec!["topics@mean".to_string(), "xcopa".to_string()];
        let rows = grid(&d, &["model".to_string()], &tasks);
        assert_eq!(rows.len(), 1);
        let r = |t: &str| rows[0].corr.iter().find(|c| c.0 == t).map(|c| (c.1.map(|x| x.0), c.2.map(|x| x.0))).unwrap();
        assert_eq!(r("topics@mean"), (Some(0.9), Some(0.95)));
        assert_eq!(r("xcopa"), (Some(-0.3), Some(-0.2)));
    }

    /// join_tasks and correlate varying over a task axis the summary does not have.
    #[test]
    fn correlations_over_a_task_axis_reach_the_grid() {
        let agg = AggRow {
            language: "ita_Latn".into(),
            pooling: "weighted".into(),
            metric: "mexa".into(),
            mean: 0.5,
            max: 0.9,
            best_layer: 3,
            n: 100,
            max_ci: (0.85, 0.95),
            near_chance: false,
        };
        let d = ReportData {
            summaries: vec![Node::new("summary[model=g]", "k1", vec![agg])],
            correlations: vec![
                Node::new(
                    "correlation[model=g,v=topics]",
                    "k2",
                    vec![corr("topics@mean", "mean", 0.9), corr("topics@mean", "max", 0.95)],
                ),
                Node::new(
                    "correlation[model=g,v=xcopa]",
                    "k3",
                    vec![corr("xcopa", "mean", -0.3), corr("xcopa", "max", -0.2)],
                ),
            ],
            ..Default::default()
        };
        let tasks = vec!["topics@mean".to_string(), "xcopa".to_string()];
        let rows = grid(&d, &["model".to_string()], &tasks);
        assert_eq!(rows.len(), 1);
        let r = |t: &str| rows[0].corr.iter().find(|c| c.0 == t).map(|c| (c.1.map(|x| x.0), c.2.map(|x| x.0))).unwrap();
        assert_eq!(r("topics@mean"), (Some(0.9), Some(0.95)));
        assert_eq!(r("xcopa"), (Some(-0.3), Some(-0.2)));
    }

    /// A hostile description and a 20 MB language name: the Markdown shows them escaped (no
    /// raw HTML, no table break), and what is rendered is bounded, not the 20 MB.
    #[test]
    fn text_is_escaped_and_bounded() {
        let huge = "x".repeat(20 << 20);
        let agg = AggRow {
            language: huge.clone(),
            pooling: "weighted".into(),
            metric: "mexa".into(),
            mean: 0.5,
            max: 0.9,
            best_layer: 3,
            n: 100,
            max_ci: (0.85, 0.95),
            near_chance: false,
        };
        let d = ReportData {
            title: "t | # <b>".into(),
            description: "<script>alert(1)</script> | *x*".into(),
            summaries: vec![Node::new("summary[model=<i>g</i>]", "k1", vec![agg])],
            ..Default::default()
        };
        let files = render(&d).unwrap();
        let md_page = String::from_utf8(files.iter().find(|f| f.0 == "report.md").unwrap().1.clone()).unwrap();
        assert!(!md_page.contains("<script>") && md_page.contains("&lt;script&gt;"), "{md_page}");
        assert!(md_page.contains("\\| \\*x\\*") && md_page.starts_with("# t \\| \\# &lt;b&gt;"), "{md_page}");
        let total: usize = files.iter().map(|f| f.1.len()).sum();
        assert!(total < 2 << 20, "the report is {total} bytes for a 20 MB name: not bounded");
        let html = String::from_utf8(files.iter().find(|f| f.0 == "report.html").unwrap().1.clone()).unwrap();
        assert!(html.contains("more characters]") && !html.contains("<script>") && !html.contains("<i>g"));
    }

    /// The per-language table says who each language is: name, script, family / branch; a label
    /// nothing names gets empty cells.
    #[test]
    fn per_language_tables_name_each_language() {
        let agg = |language: &str| AggRow {
            language: language.into(),
            pooling: "weighted".into(),
            metric: "mexa".into(),
            mean: 0.5,
            max: 0.9,
            best_layer: 3,
            n: 100,
            max_ci: (0.85, 0.95),
            near_chance: false,
        };
        let d = ReportData {
            summaries: vec![Node::new("summary", "k1", vec![agg("swh_Latn"), agg("cmn_hans"), agg("qqq")])],
            ..Default::default()
        };
        let files = render(&d).unwrap();
        let html = String::from_utf8(files.iter().find(|f| f.0 == "report.html").unwrap().1.clone()).unwrap();
        assert!(html.contains("<th>language</th><th>name</th><th>script</th><th>family / branch</th>"), "{html}");
        assert!(html.contains("<td>swh_Latn</td><td>Swahili</td><td>Latn</td><td>Atlantic-Congo / "), "{html}");
        assert!(html.contains("<td>cmn_hans</td><td>Mandarin Chinese</td><td>Hans</td><td>Sino-Tibetan / Sinitic</td>"));
        assert!(html.contains("<td>qqq</td><td></td><td></td><td></td>"), "{html}");
    }
}
