//! Downstream task results, read into a polars DataFrame with columns
//! `language` (str), `task` (str), `score` (f64).
//!
//! Accepted: CSV/TSV/Parquet in long form (`language`, `task`, `score`; `task` may be
//! omitted when a task name is given), in wide form (a language column plus one column per
//! system or task, `column` picks one — e.g. the Belebele paper's tables), or
//! lm-evaluation-harness output as it writes it today: `results_<timestamp>.json` (or its
//! output folder), `results.<task>_<language>.<metric>,none` with task names such as
//! `belebele_fra_Latn`, `m_mmlu_fr`, `xcopa_it`, and the metric `acc` unless chosen.
use anyhow::{anyhow, bail, Context, Result};
use polars::prelude::*;
use std::path::Path;

fn read_table(path: &Path) -> Result<DataFrame> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "parquet" => ParquetReader::new(mexa_core::file::open(path, mexa_core::FileKind::Data)?)
            .finish()
            .map_err(|e| anyhow!("{}: not a readable Parquet file: {e}", path.display())),
        "csv" | "tsv" | "txt" => {
            let sep = if ext == "csv" { b',' } else { b'\t' };
            let df = CsvReadOptions::default()
                .with_has_header(true)
                .with_infer_schema_length(Some(10_000))
                .with_parse_options(CsvParseOptions::default().with_separator(sep))
                .try_into_reader_with_file_path(Some(path.to_path_buf()))?
                .finish()
                .map_err(|e| anyhow!("{}: not a readable {} file: {e}", path.display(), ext.to_uppercase()))?;
            Ok(df)
        }
        other => {
            bail!("{}: unknown task-result format `.{other}` (csv, tsv, parquet, or lm-eval .json)", path.display())
        }
    }
}

fn str_col(df: &DataFrame, name: &str) -> Result<Vec<String>> {
    let c = df.column(name)?.cast(&DataType::String).map_err(|e| anyhow!("column `{name}`: {e}"))?;
    Ok(c.str()?.iter().map(|v| v.unwrap_or("").to_string()).collect())
}

/// A score column: numbers, or empty / `NA` / `N/A` / `-` for a missing score. Anything
/// else (`8O.5`), and `nan` or `inf`, is an error naming the file, the line and the column.
fn f64_col(df: &DataFrame, name: &str, path: &Path) -> Result<Vec<Option<f64>>> {
    let raw = str_col(df, name)?;
    let mut out = Vec::with_capacity(raw.len());
    for (i, r) in raw.iter().enumerate() {
        let t = r.trim();
        if t.is_empty() || ["NA", "N/A", "-", "null"].contains(&t) {
            out.push(None);
            continue;
        }
        let line = i + 2; // after the header line
        match t.parse::<f64>() {
            Ok(v) if v.is_finite() => out.push(Some(v)),
            Ok(v) => bail!(
                "{}: line {line}, column `{name}`: the score is {v}; give a finite number or leave it empty",
                path.display()
            ),
            Err(_) => bail!(
                "{}: line {line}, column `{name}`: `{t}` is not a number (empty or NA marks a missing score)",
                path.display()
            ),
        }
    }
    Ok(out)
}

/// Task scores from plain rows (for results mexa measured itself, such as a probe's).
pub fn task_scores(language: Vec<String>, task: Vec<String>, score: Vec<f64>) -> Result<DataFrame> {
    frame(language, task, score)
}

fn frame(language: Vec<String>, task: Vec<String>, score: Vec<f64>) -> Result<DataFrame> {
    Ok(DataFrame::new(
        language.len(),
        vec![
            Column::new("language".into(), language),
            Column::new("task".into(), task),
            Column::new("score".into(), score),
        ],
    )?)
}

/// Reads task results. `column` picks a column of a wide table, or the metric of lm-eval
/// results (`acc` when not given, or `acc_norm`); `task` names the task when the file does not
/// (and filters when it does).
pub fn read_task_scores(path: &Path, column: Option<&str>, task: Option<&str>) -> Result<DataFrame> {
    if path.extension().is_some_and(|e| e == "json") || path.is_dir() {
        return read_lm_eval(path, task, column);
    }
    let df = read_table(path)?;
    let names: Vec<String> = df.get_column_names().iter().map(|s| s.to_string()).collect();
    let lang_col = ["language", "lang", "Language", ""]
        .iter()
        .find(|c| names.iter().any(|n| n == *c))
        .map(|c| c.to_string())
        .unwrap_or_else(|| names[0].clone());
    let languages = str_col(&df, &lang_col)?;
    let (scores, tasks): (Vec<Option<f64>>, Vec<String>) = if let Some(col) = column {
        if !names.iter().any(|n| n == col) {
            bail!("{}: no column `{col}` (columns: {})", path.display(), mexa_core::text::list(&names));
        }
        let s = f64_col(&df, col, path)?;
        let n = s.len();
        (s, vec![task.unwrap_or(col).to_string(); n])
    } else if names.iter().any(|n| n == "score") {
        let s = f64_col(&df, "score", path)?;
        let t = if names.iter().any(|n| n == "task") {
            str_col(&df, "task")?
        } else {
            vec![
                task.ok_or_else(|| anyhow!(
                    "{}: no `task` column; name the task with the `task` parameter",
                    path.display()
                ))?
                .to_string();
                s.len()
            ]
        };
        (s, t)
    } else {
        bail!(
            "{}: expected columns `language`, `task`, `score` (long form), or name one of the columns with `column` (wide form); columns are: {}",
            path.display(),
            mexa_core::text::list(&names)
        );
    };
    let (mut l, mut t, mut s) = (vec![], vec![], vec![]);
    let mut seen: std::collections::HashMap<(String, String), usize> = std::collections::HashMap::new();
    for (i, ((lang, tk), sc)) in languages.into_iter().zip(tasks).zip(scores).enumerate() {
        // Labels are compared trimmed: `fra_Latn ` is `fra_Latn`.
        let (lang, tk) = (lang.trim().to_string(), tk.trim().to_string());
        if let (Some(sc), false) = (sc, lang.is_empty()) {
            if task.is_none_or(|want| want == tk || column.is_some()) {
                if let Some(first) = seen.insert((lang.clone(), tk.clone()), i + 2) {
                    bail!(
                        "{}: line {}: language `{lang}` has a second `{tk}` score (first on line {first})",
                        path.display(),
                        i + 2
                    );
                }
                l.push(lang);
                t.push(tk);
                s.push(sc);
            }
        }
    }
    if l.is_empty() {
        bail!(
            "{}: no task scores found{}",
            path.display(),
            task.map(|t| format!(" for task `{t}`")).unwrap_or_default()
        );
    }
    frame(l, t, s)
}

/// The results file of an lm-evaluation-harness output: the path itself when it is a file;
/// for a folder, the newest `results_<timestamp>.json` in it or in its one model subfolder
/// (lm-eval writes `<output_path>/<model>/results_<timestamp>.json`).
pub fn lm_eval_results_file(path: &Path) -> Result<std::path::PathBuf> {
    if !path.is_dir() {
        return Ok(path.to_path_buf());
    }
    let results_in = |dir: &Path| -> Vec<std::path::PathBuf> {
        let mut v: Vec<_> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_file()
                    && p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("results") && n.ends_with(".json"))
            })
            .collect();
        v.sort();
        v
    };
    let here = results_in(path);
    if let Some(newest) = here.last() {
        return Ok(newest.clone());
    }
    let subdirs: Vec<_> = std::fs::read_dir(path)
        .with_context(|| format!("{}: cannot read", path.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir() && !results_in(p).is_empty())
        .collect();
    match subdirs.as_slice() {
        [one] => Ok(results_in(one).pop().expect("non-empty")),
        [] => bail!(
            "{}: no results_<timestamp>.json here or in a model subfolder (an lm-evaluation-harness --output_path?)",
            path.display()
        ),
        many => bail!(
            "{}: results of {} models ({}); name one model's folder or results file",
            path.display(),
            many.len(),
            many.iter()
                .map(|p| p.file_name().unwrap_or_default().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Splits an lm-eval task name into (task, language): after `task_` when the task is named
/// (`m_mmlu` + `m_mmlu_fr`), else before the config's `dataset_name` when the name ends with it
/// (`belebele_fra_Latn`, `xcopa_it`), else at the last `_` (two parts when the last is a
/// script code such as `Latn`). Names without a language part (groups) give `None`.
pub fn split_lm_eval_name<'a>(
    name: &'a str,
    task: Option<&str>,
    dataset_name: Option<&'a str>,
) -> Option<(&'a str, &'a str)> {
    if let Some(t) = task {
        return name
            .strip_prefix(t)
            .and_then(|r| r.strip_prefix('_'))
            .filter(|l| !l.is_empty())
            .map(|l| (&name[..t.len()], l));
    }
    if let Some(d) = dataset_name.filter(|d| !d.is_empty()) {
        if let Some(t) = name.strip_suffix(d).and_then(|t| t.strip_suffix('_')).filter(|t| !t.is_empty()) {
            return Some((t, d));
        }
    }
    let (head, last) = name.rsplit_once('_')?;
    let is_script = last.len() == 4
        && last.starts_with(|c: char| c.is_ascii_uppercase())
        && last[1..].chars().all(|c| c.is_ascii_lowercase());
    if is_script {
        if let Some((t, _)) = head.rsplit_once('_') {
            return Some((t, &name[t.len() + 1..]));
        }
    }
    (!head.is_empty() && !last.is_empty()).then_some((head, last))
}

/// An lm-evaluation-harness results file (or output folder). `metric` picks the score:
/// `acc` (the default) or `acc_norm`, or any metric the file has; a selected task without it is
/// an error listing what it has.
fn read_lm_eval(path: &Path, task: Option<&str>, metric: Option<&str>) -> Result<DataFrame> {
    let file = lm_eval_results_file(path)?;
    let path = file.as_path();
    let v: serde_json::Value = mexa_core::file::read_json(path, mexa_core::FileKind::Config)?;
    let results = v["results"]
        .as_object()
        .ok_or_else(|| anyhow!("{}: no `results` object (an lm-evaluation-harness results file?)", path.display()))?;
    let groups: std::collections::HashSet<&str> =
        v["groups"].as_object().map(|g| g.keys().map(String::as_str).collect()).unwrap_or_default();
    let metric = metric.unwrap_or("acc");
    let (mut l, mut t, mut s) = (vec![], vec![], vec![]);
    for (name, metrics) in results {
        if groups.contains(name.as_str()) {
            continue;
        }
        let dataset_name = v["configs"][name]["dataset_name"].as_str();
        let Some((tk, lang)) = split_lm_eval_name(name, task, dataset_name) else { continue };
        let Some(m) = metrics.as_object() else { continue };
        let score = m
            .get(&format!("{metric},none"))
            .or_else(|| m.get(metric))
            .or_else(|| m.iter().find(|(k, _)| k.split_once(',').is_some_and(|(a, _)| a == metric)).map(|(_, v)| v));
        let Some(score) = score else {
            let has: Vec<&str> = m
                .keys()
                .filter(|k| *k != "alias" && !k.contains("_stderr"))
                .map(|k| k.split(',').next().unwrap_or(k))
                .collect();
            bail!(
                "{}: results.{name} has no `{metric}` (it has: {}); choose the metric with the `column` parameter",
                path.display(),
                has.join(", ")
            );
        };
        let score = score
            .as_f64()
            .ok_or_else(|| anyhow!("{}: results.{name}.{metric} is {score}, not a number", path.display()))?;
        if !score.is_finite() {
            bail!("{}: results.{name}.{metric} is {score}", path.display());
        }
        l.push(lang.to_string());
        t.push(tk.to_string());
        s.push(score);
    }
    if l.is_empty() {
        bail!(
            "{}: no `<task>_<language>` results{}",
            path.display(),
            task.map(|t| format!(" for task `{t}`")).unwrap_or_default()
        );
    }
    frame(l, t, s)
}
