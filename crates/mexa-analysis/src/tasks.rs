//! Downstream task results, read into a polars DataFrame with columns
//! `language` (str), `task` (str), `score` (f64).
//!
//! Accepted: CSV/TSV/Parquet in long form (`language`, `task`, `score`; `task` may be
//! omitted when a task name is given), in wide form (a language column plus one column per
//! system or task, `column` picks one — e.g. the Belebele paper's tables), or an
//! lm-evaluation-harness results JSON (`results.<task>_<language>.acc[,none]`).
use anyhow::{anyhow, bail, Context, Result};
use polars::prelude::*;
use std::path::Path;

fn read_table(path: &Path) -> Result<DataFrame> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "parquet" => Ok(ParquetReader::new(std::fs::File::open(path).with_context(|| format!("{}: cannot open", path.display()))?).finish()?),
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
        other => bail!("{}: unknown task-result format `.{other}` (csv, tsv, parquet, or lm-eval .json)", path.display()),
    }
}

fn str_col(df: &DataFrame, name: &str) -> Result<Vec<String>> {
    let c = df.column(name)?.cast(&DataType::String)?;
    Ok(c.str()?.iter().map(|v| v.unwrap_or("").to_string()).collect())
}

fn f64_col(df: &DataFrame, name: &str, path: &Path) -> Result<Vec<Option<f64>>> {
    let c = df.column(name)?.cast(&DataType::Float64).map_err(|e| anyhow!("{}: column `{name}` is not numeric: {e}", path.display()))?;
    Ok(c.f64()?.iter().collect())
}

fn frame(language: Vec<String>, task: Vec<String>, score: Vec<f64>) -> Result<DataFrame> {
    Ok(DataFrame::new(language.len(), vec![Column::new("language".into(), language), Column::new("task".into(), task), Column::new("score".into(), score)])?)
}

/// Reads task results. `column` picks a column of a wide table; `task` names the task when
/// the file does not (and filters when it does).
pub fn read_task_scores(path: &Path, column: Option<&str>, task: Option<&str>) -> Result<DataFrame> {
    if path.extension().is_some_and(|e| e == "json") {
        return read_lm_eval(path, task);
    }
    let df = read_table(path)?;
    let names: Vec<String> = df.get_column_names().iter().map(|s| s.to_string()).collect();
    let lang_col = ["language", "lang", "Language", ""].iter().find(|c| names.iter().any(|n| n == *c)).map(|c| c.to_string()).unwrap_or_else(|| names[0].clone());
    let languages = str_col(&df, &lang_col)?;
    let (scores, tasks): (Vec<Option<f64>>, Vec<String>) = if let Some(col) = column {
        if !names.iter().any(|n| n == col) {
            bail!("{}: no column `{col}` (columns: {})", path.display(), names.join(", "));
        }
        let s = f64_col(&df, col, path)?;
        let n = s.len();
        (s, vec![task.unwrap_or(col).to_string(); n])
    } else if names.iter().any(|n| n == "score") {
        let s = f64_col(&df, "score", path)?;
        let t = if names.iter().any(|n| n == "task") {
            str_col(&df, "task")?
        } else {
            vec![task.ok_or_else(|| anyhow!("{}: no `task` column; name the task with the `task` parameter", path.display()))?.to_string(); s.len()]
        };
        (s, t)
    } else {
        bail!(
            "{}: expected columns `language`, `task`, `score` (long form), or name one of the columns with `column` (wide form); columns are: {}",
            path.display(),
            names.join(", ")
        );
    };
    let (mut l, mut t, mut s) = (vec![], vec![], vec![]);
    for ((lang, tk), sc) in languages.into_iter().zip(tasks).zip(scores) {
        if let (Some(sc), false) = (sc, lang.is_empty()) {
            if task.is_none_or(|want| want == tk || column.is_some()) {
                l.push(lang);
                t.push(tk);
                s.push(sc);
            }
        }
    }
    if l.is_empty() {
        bail!("{}: no task scores found{}", path.display(), task.map(|t| format!(" for task `{t}`")).unwrap_or_default());
    }
    frame(l, t, s)
}

fn read_lm_eval(path: &Path, task: Option<&str>) -> Result<DataFrame> {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?)
        .with_context(|| format!("{}: invalid JSON", path.display()))?;
    let results = v["results"].as_object().ok_or_else(|| anyhow!("{}: no `results` object (an lm-evaluation-harness results file?)", path.display()))?;
    let (mut l, mut t, mut s) = (vec![], vec![], vec![]);
    for (name, metrics) in results {
        let Some((tk, lang)) = name.split_once('_') else { continue };
        if task.is_some_and(|want| want != tk) {
            continue;
        }
        let score = ["acc,none", "acc", "acc_norm,none", "acc_norm"].iter().find_map(|k| metrics.get(*k).and_then(|x| x.as_f64()));
        if let Some(sc) = score {
            l.push(lang.to_string());
            t.push(tk.to_string());
            s.push(sc);
        }
    }
    if l.is_empty() {
        bail!("{}: no `<task>_<language>` results with an accuracy", path.display());
    }
    frame(l, t, s)
}
