//! The report page (HTML with inline SVG), its Markdown twin, and the figure files.
use crate::page_figures::{
    alignment_figures, calibration_figures, lens_figures, models_figures, pair_figures, scatter_figures, Figures,
};
use crate::{AggRow, CorrRow, File, Node, ReportData};
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
pub(crate) fn cell_text<T>(n: &Node<T>) -> String {
    if n.cell.is_empty() {
        return n.label.clone();
    }
    n.cell.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")
}

pub(crate) fn avg(v: impl Iterator<Item = f64>) -> f64 {
    let (s, n) = v.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    if n == 0 {
        f64::NAN
    } else {
        s / n as f64
    }
}

pub(crate) fn same_cell<A, B>(a: &Node<A>, b: &Node<B>) -> bool {
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

pub(crate) fn esc(s: &str) -> String {
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

pub(crate) fn num(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.3}")
    } else {
        "–".into()
    }
}

/// A per-language row's first cells: the label as `shown`, and who the language is (ISO 639-3
/// name, script, Glottolog family / branch; empty where unknown).
fn who_cells(label: &str, shown: &str) -> String {
    let who = mexa_core::language::lookup(label);
    let family = [who.family, who.branch].iter().filter(|s| !s.is_empty()).copied().collect::<Vec<_>>();
    format!(
        "<td>{}</td><td>{}</td><td>{}</td><td>{}</td>",
        esc(shown),
        esc(who.name),
        esc(&who.script),
        esc(&family.join(" / "))
    )
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

pub(crate) fn title_case(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
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
        writeln!(h, "<p>MEXA alignment of each language with the pivot (share of parallel sentences whose cosine beats every other in its row and column), pooled over layers; μMean and μMax are averages over languages. Correlations are Pearson's r across languages with a bootstrap 95% interval; ⚑ marks a correlation most of whose languages are near chance on one axis (see Correlations). Per language, μMax carries its best layer's 95% bootstrap interval over sentences and is marked ° when that layer's μ is not distinguishable from chance (p ≥ 0.05 against 1/(2n − 1) per pair); such layers are grey in the heatmaps, and the Correlations table counts the languages whose layer-pooled μ is near chance; where the pipeline has a lexical floor, the μ that character n-gram TF-IDF retrieval reaches on the same sentences stands beside it. n is the number of sentence pairs behind each score.</p>")?;
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
                write!(h, "<tr class=\"pivot\">{}", who_cells(pivot, &format!("{pivot} (pivot)")))?;
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
                write!(h, "<tr>{}", who_cells(l, l))?;
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
    use crate::page_figures::base64;

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

    fn ita_row() -> AggRow {
        AggRow {
            language: "ita_Latn".into(),
            pooling: "weighted".into(),
            metric: "mexa".into(),
            mean: 0.5,
            max: 0.9,
            best_layer: 3,
            n: 100,
            max_ci: (0.85, 0.95),
            near_chance: false,
        }
    }

    /// One summary cell and two correlate nodes (topics, XCOPA) labelled `topics` and
    /// `xcopa`: the grid's single row shows both tasks' r (μMean, μMax).
    fn grid_of_two_tasks(topics: &str, xcopa: &str) {
        let d = ReportData {
            summaries: vec![Node::new("summary[model=g]", "k1", vec![ita_row()])],
            correlations: vec![
                Node::new(topics, "k2", vec![corr("topics@mean", "mean", 0.9), corr("topics@mean", "max", 0.95)]),
                Node::new(xcopa, "k3", vec![corr("xcopa", "mean", -0.3), corr("xcopa", "max", -0.2)]),
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

    /// A cell with one correlate node per task (SIB-200 topics and XCOPA) shows both in the
    /// grid table, not only the first node's.
    #[test]
    fn every_correlate_node_of_a_cell_reaches_the_grid() {
        grid_of_two_tasks("correlation[model=g]", "xcopa_correlation[model=g]");
    }

    /// join_tasks and correlate varying over a task axis the summary does not have.
    #[test]
    fn correlations_over_a_task_axis_reach_the_grid() {
        grid_of_two_tasks("correlation[model=g,v=topics]", "correlation[model=g,v=xcopa]");
    }

    /// A hostile description and a 20 MB language name: the Markdown shows them escaped (no
    /// raw HTML, no table break), and what is rendered is bounded, not the 20 MB.
    #[test]
    fn text_is_escaped_and_bounded() {
        let huge = "x".repeat(20 << 20);
        let agg = AggRow { language: huge.clone(), ..ita_row() };
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
