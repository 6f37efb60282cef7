//! The report's sections on what keeps a correlation honest: every correlation with its
//! permutation p-value, Holm and Benjamini–Hochberg adjustments across the page and its floor
//! diagnosis; held-out against in-sample layer choice; leave-one-language-out prediction error
//! (tables here, calibration figures in page.rs); instance-level accuracy. Each table is built
//! once as plain text cells and written as HTML and as Markdown.
use crate::{ChoiceRow, CorrRow, InstanceRow, Node, PredictionSet, ReportData};
use std::collections::BTreeSet;

/// A table of text cells with a caption.
pub struct Tab {
    pub caption: String,
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
    /// Columns (by index) holding numbers, right-aligned in HTML.
    pub numeric: Vec<usize>,
    /// Lines written under the table (long text that would squeeze a column).
    pub notes: Vec<String>,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

impl Tab {
    pub fn html(&self) -> String {
        // Wide tables scroll inside the page's width instead of running past it.
        let mut h = format!("<p>{}</p>\n<div style=\"overflow-x:auto\"><table><thead><tr>", esc(&self.caption));
        for c in &self.header {
            h += &format!("<th>{}</th>", esc(c));
        }
        h += "</tr></thead><tbody>\n";
        for r in &self.rows {
            h += "<tr>";
            for (i, c) in r.iter().enumerate() {
                let class = if self.numeric.contains(&i) { " class=\"n\"" } else { "" };
                h += &format!("<td{class}>{}</td>", esc(c));
            }
            h += "</tr>\n";
        }
        h += "</tbody></table></div>\n";
        if !self.notes.is_empty() {
            h += "<ul>";
            for n in &self.notes {
                h += &format!("<li>{}</li>", esc(n));
            }
            h += "</ul>\n";
        }
        h
    }

    pub fn markdown(&self) -> String {
        let md = crate::page::md;
        let line = |cells: &[String]| format!("| {} |\n", cells.iter().map(|c| md(c)).collect::<Vec<_>>().join(" | "));
        let mut m = format!("{}\n\n", md(&self.caption));
        m += &line(&self.header);
        m += &format!("|{}|\n", self.header.iter().map(|_| "---").collect::<Vec<_>>().join("|"));
        for r in &self.rows {
            m += &line(r);
        }
        m += "\n";
        for n in &self.notes {
            m += &format!("- {}\n", md(n));
        }
        if !self.notes.is_empty() {
            m += "\n";
        }
        m
    }
}

fn num(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.3}")
    } else {
        "–".into()
    }
}

/// A p-value: three significant digits, or "< 0.001".
fn pval(p: f64) -> String {
    if !p.is_finite() {
        "–".into()
    } else if p < 0.001 {
        format!("{p:.1e}")
    } else {
        format!("{p:.3}")
    }
}

/// The study's answer in one table: every correlation, best first within each task (by |r|),
/// with its grid cell, Pearson's r and interval, Spearman's ρ and Kendall's τ with their
/// p-values, and the floor flag.
pub fn leaderboard(corrs: &[Node<CorrRow>]) -> Option<Tab> {
    let mut rows: Vec<(&Node<CorrRow>, &CorrRow)> =
        corrs.iter().flat_map(|n| n.rows.iter().map(move |r| (n, r))).collect();
    if rows.is_empty() {
        return None;
    }
    rows.sort_by(|a, b| a.1.task.cmp(&b.1.task).then(b.1.pearson.abs().total_cmp(&a.1.pearson.abs())));
    let cell = |n: &Node<CorrRow>| {
        if n.cell.is_empty() {
            n.label.clone()
        } else {
            n.cell.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")
        }
    };
    let with_p = |v: f64, p: f64| format!("{} (p {})", num(v), pval(p));
    Some(Tab {
        caption: "Which alignment predicts the task: every correlation across languages, strongest first within each task. Pearson's r with its bootstrap 95% interval and permutation p-value; Spearman's ρ and Kendall's τ (rank correlations, less swayed by one language) with their p-values; n languages. ⚑ floor: most languages are at a floor on one axis (μ near chance, task score near chance or no better than always giving the commonest answer), so r says little; the diagnosis is under the Correlations table.".into(),
        header: ["task", "cell", "pooling", "layers", "n", "Pearson r [95% CI]", "p (perm.)", "Spearman ρ", "Kendall τ", ""]
            .map(String::from)
            .to_vec(),
        rows: rows
            .iter()
            .map(|(node, r)| {
                vec![
                    r.task.clone(),
                    cell(node),
                    r.pooling.clone(),
                    format!("μ{}", crate::page::title_case(&r.layer_pool)),
                    r.n.to_string(),
                    if r.ci_lo.is_finite() {
                        format!("{} [{}, {}]", num(r.pearson), num(r.ci_lo), num(r.ci_hi))
                    } else {
                        num(r.pearson)
                    },
                    pval(r.pearson_perm_p),
                    with_p(r.spearman, r.spearman_p),
                    with_p(r.kendall, r.kendall_p),
                    if r.floor { "⚑ floor".into() } else { String::new() },
                ]
            })
            .collect(),
        numeric: (4..9).collect(),
        notes: vec![],
    })
}

/// Every correlation row of the page, with Holm and Benjamini–Hochberg adjustments of the
/// permutation p-values over all of them (computed by the report stage), and the floor
/// diagnosis.
pub fn correlations(corrs: &[Node<CorrRow>]) -> Option<Tab> {
    let rows: Vec<(&Node<CorrRow>, &CorrRow)> = corrs.iter().flat_map(|n| n.rows.iter().map(move |r| (n, r))).collect();
    if rows.is_empty() {
        return None;
    }
    let family = rows.iter().filter(|(_, r)| r.pearson_perm_p.is_finite()).count();
    let count = |k: i32, n: i32| if k < 0 { "?".to_string() } else { format!("{k}/{n}") };
    Some(Tab {
        caption: format!(
            "Every correlation on this page: Pearson's r with its t-test p-value and its permutation p-value (exact over all n! pairings for n ≤ 10, else the stated number of random pairings), adjusted over the {family} correlations by Holm (family-wise error) and Benjamini–Hochberg (false discovery rate). Near chance: languages whose alignment (μ's chance tail) or task score (binomial tail at the task's chance level) is not distinguishable from chance; task ≤ commonest answer: languages whose task score is not distinguishable from always giving the commonest answer of the scored items (its accuracy in brackets); ⚑ when most are on any of these, with the diagnosis under the table; ?: not known (the task file does not give its items, so the commonest answer cannot be counted); –: not computed."
        ),
        header: [
            "node", "task", "pooling", "layers", "n", "r", "p (t)", "p (perm.)", "pairings", "Holm", "BH",
            "μ near chance", "task near chance", "task ≤ commonest answer",
        ]
        .map(String::from)
        .to_vec(),
        rows: rows
            .iter()
            .map(|(node, r)| {
                vec![
                    node.label.clone(),
                    r.task.clone(),
                    r.pooling.clone(),
                    format!("μ{}", crate::page::title_case(&r.layer_pool)),
                    r.n.to_string(),
                    format!("{}{}", num(r.pearson), if r.floor { " ⚑" } else { "" }),
                    pval(r.pearson_p),
                    pval(r.pearson_perm_p),
                    r.permutations.to_string(),
                    pval(r.holm_p),
                    pval(r.bh_p),
                    count(r.align_near_chance, r.n),
                    count(r.task_near_chance, r.n),
                    if r.task_majority.is_finite() {
                        format!("{} ({})", count(r.task_below_majority, r.n), num(r.task_majority))
                    } else {
                        count(r.task_below_majority, r.n)
                    },
                ]
            })
            .collect(),
        numeric: (4..11).collect(),
        notes: rows
            .iter()
            .filter(|(_, r)| r.floor)
            .map(|(node, r)| {
                format!("⚑ {} ({}, {}, μ{}): {}", node.label, r.task, r.pooling, crate::page::title_case(&r.layer_pool), r.floor_note)
            })
            .collect(),
    })
}

/// Per layer_choice node and score: each language's in-sample best layer against the layer
/// chosen on the other half of the sentences and on the other languages.
pub fn layer_choices(nodes: &[Node<ChoiceRow>]) -> Vec<Tab> {
    let mut out = Vec::new();
    for node in nodes {
        let kinds: BTreeSet<(&String, &String)> = node.rows.iter().map(|r| (&r.score, &r.pooling)).collect();
        for (score, pooling) in kinds {
            let rows: Vec<&ChoiceRow> =
                node.rows.iter().filter(|r| &r.score == score && &r.pooling == pooling).collect();
            let mean = |f: fn(&ChoiceRow) -> f64| rows.iter().map(|r| f(r)).sum::<f64>() / rows.len() as f64;
            let what = if score == "probe" { "the probe's accuracy (probe_layer: max)" } else { "μ (μMax)" };
            let mut cells: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    vec![
                        r.language.clone(),
                        r.n.to_string(),
                        format!("{} (layer {})", num(r.in_sample), r.in_sample_layer),
                        num(r.split_half),
                        num(r.in_sample - r.split_half),
                        num(r.lolo),
                        num(r.in_sample - r.lolo),
                    ]
                })
                .collect();
            cells.push(vec![
                "mean".into(),
                String::new(),
                num(mean(|r| r.in_sample)),
                num(mean(|r| r.split_half)),
                num(mean(|r| r.in_sample - r.split_half)),
                num(mean(|r| r.lolo)),
                num(mean(|r| r.in_sample - r.lolo)),
            ]);
            out.push(Tab {
                caption: format!(
                    "{} — {what}, {pooling} pooling: the best hidden state chosen on the sentences it is scored on (in-sample), on the other half of the sentences (split-half: even and odd positions, each scored at the other's layer) and on the other languages (leave-one-language-out); optimism = in-sample minus held-out.",
                    node.label
                ),
                header: ["language", "n", "in-sample max", "split-half", "optimism", "LOLO", "optimism (LOLO)"]
                    .map(String::from)
                    .to_vec(),
                rows: cells,
                numeric: (1..7).collect(),
                notes: vec![],
            });
        }
    }
    out
}

/// One table of every prediction set's errors.
pub fn prediction_errors(sets: &[PredictionSet]) -> Option<Tab> {
    let methods = &sets.first()?.methods;
    let mut header: Vec<String> = ["scope", "task", "pooling", "layers", "points"].map(String::from).to_vec();
    for m in methods {
        header.push(format!("MAE {m}"));
        header.push(format!("RMSE {m}"));
    }
    let rows = sets
        .iter()
        .map(|s| {
            let mut r = vec![
                s.scope.clone(),
                s.task.clone(),
                s.pooling.clone(),
                format!("μ{}", crate::page::title_case(&s.layer_pool)),
                s.points.len().to_string(),
            ];
            for (mae, rmse) in &s.errors {
                r.push(num(*mae));
                r.push(num(*rmse));
            }
            r
        })
        .collect();
    let n = header.len();
    Some(Tab {
        caption: "Alignment as a stand-in for an evaluation: each language's accuracy predicted from its μ by MEXA's estimate (paper: μ × the pivot's accuracy, nothing fitted) and by a line and a fractional logit fitted on the other languages (leave-one-language-out; pooled scopes leave all of a language's points out together), beside the other languages' mean accuracy with μ ignored (constant: what μ must beat); mean absolute and root-mean-square error against the model's own accuracy.".into(),
        header,
        rows,
        numeric: (4..n).collect(),
        notes: vec![],
    })
}

/// Per instance_accuracy node: each language's aligned against unaligned sentences, by
/// majority over the hidden states.
pub fn instances(nodes: &[Node<InstanceRow>]) -> Vec<Tab> {
    let mut out = Vec::new();
    for node in nodes {
        let poolings: BTreeSet<&String> = node.rows.iter().map(|r| &r.pooling).collect();
        for pooling in poolings {
            out.extend(instance_table(node, pooling));
        }
    }
    out
}

/// One instance_accuracy node's majority rows of one alignment pooling, with the mean
/// difference over the languages that have both groups.
fn instance_table(node: &Node<InstanceRow>, pooling: &str) -> Option<Tab> {
    let rows: Vec<&InstanceRow> = node.rows.iter().filter(|r| r.layer < 0 && r.pooling == pooling).collect();
    if rows.is_empty() {
        return None;
    }
    let acc = |k: i32, a: f64| if k > 0 { format!("{} ({k})", num(a)) } else { "– (0)".into() };
    let mut cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let (d, lo, hi) = r.difference;
            vec![
                r.language.clone(),
                r.pooling.clone(),
                acc(r.aligned, r.aligned_accuracy),
                acc(r.unaligned, r.unaligned_accuracy),
                if d.is_finite() { format!("{} [{}, {}]", num(d), num(lo), num(hi)) } else { "–".into() },
            ]
        })
        .collect();
    let both: Vec<f64> = rows.iter().map(|r| r.difference.0).filter(|d| d.is_finite()).collect();
    if !both.is_empty() {
        let positive = both.iter().filter(|&&d| d > 0.0).count();
        cells.push(vec![
            format!("mean of {} languages", both.len()),
            String::new(),
            String::new(),
            String::new(),
            format!("{} ({positive} of {} positive)", num(both.iter().sum::<f64>() / both.len() as f64), both.len()),
        ]);
    }
    Some(Tab {
            caption: format!(
                "{} ({pooling} pooling of the alignment) — does a sentence's alignment predict the model's success on it? A sentence is aligned when it retrieves its translation (μ's hit) at more than half of the hidden states and counted right when the probe classifies it right at more than half of them; accuracy (sentences) of each group, and the difference with Newcombe's 95% interval.",
                node.label
            ),
            header: ["language", "pooling", "aligned: accuracy (n)", "unaligned: accuracy (n)", "difference [95% CI]"]
                .map(String::from)
                .to_vec(),
            rows: cells,
            numeric: vec![2, 3, 4],
            notes: vec![],
        })
}

/// Every section of this module, in page order: (title, tables).
pub fn sections(d: &ReportData) -> Vec<(String, Vec<Tab>)> {
    let mut out = Vec::new();
    if let Some(t) = correlations(&d.correlations) {
        out.push(("Correlations: multiple comparisons and floors".to_string(), vec![t]));
    }
    let t = layer_choices(&d.layer_choices);
    if !t.is_empty() {
        out.push(("Layer choice: in-sample against held out".to_string(), t));
    }
    if let Some(t) = prediction_errors(&d.predictions) {
        out.push(("Prediction: leave-one-language-out error".to_string(), vec![t]));
    }
    let t = instances(&d.instances);
    if !t.is_empty() {
        out.push(("Instance-level alignment".to_string(), t));
    }
    out
}
