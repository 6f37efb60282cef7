//! The report's figures, section by section: models side by side, per-node heatmaps and
//! curves, clustered pairs, the logit lens, scatters against task scores, calibration plots;
//! each drawn to PNG and SVG and inlined in the page.
use crate::figures::{self, Figure};
use crate::page::{avg, cell_text, esc, num, same_cell, title_case};
use crate::{slug, CorrRow, File, Node, ReportData};
use anyhow::Result;
use std::collections::BTreeSet;

/// Larger SVGs are inlined in the page as their PNG.
const INLINE_SVG_MAX: usize = 1 << 20;

/// Standard base64 (RFC 4648, with padding).
pub(crate) fn base64(bytes: &[u8]) -> String {
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
pub(crate) struct Figures {
    pub(crate) files: Vec<File>,
    pub(crate) sections: Vec<(String, Vec<(String, String, String)>)>,
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
pub(crate) fn models_figures(d: &ReportData, figs: &mut Figures) -> Result<()> {
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
pub(crate) fn alignment_figures(d: &ReportData, figs: &mut Figures) -> Result<()> {
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
pub(crate) fn pair_figures(d: &ReportData, figs: &mut Figures) -> Result<()> {
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

/// Per lens node: the share of each hidden state's top-1 tokens in the pivot's vocabulary
/// only (the "latent English" curve) and in the input language's only.
pub(crate) fn lens_figures(d: &ReportData, figs: &mut Figures) -> Result<()> {
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
pub(crate) fn scatter_figures(d: &ReportData, figs: &mut Figures) -> Result<()> {
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
pub(crate) fn calibration_figures(d: &ReportData, figs: &mut Figures) -> Result<()> {
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
