//! Results as tables people load: a sweep's artifacts as Hive-partitioned Parquet
//! (`stage=align/model=gemma3-270m/part-0.parquet`, `mexa export`) and one stage's results
//! across the grid with the axes as columns (`mexa table`).
use crate::plan::{Plan, Status};
use crate::stage::read_stitched;
use anyhow::{bail, Context, Result};
use arrow::array::{ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use mexa_store::Store;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Stages `export` leaves out unless asked: embeddings (large; one vector per sentence, layer
/// and pooling) and report pages (files, not rows).
pub const EXPORT_SKIPS: &[&str] = &["embed", "report"];

/// A Hive path segment: `key=value` with `/`, `=`, `%` and control characters escaped as
/// `%XX` (what Hive, Spark, polars and DuckDB unescape).
fn hive_segment(key: &str, value: &str) -> String {
    let esc = |s: &str| {
        s.chars()
            .map(|c| {
                if c == '/' || c == '=' || c == '%' || c.is_control() {
                    format!("%{:02X}", c as u32)
                } else {
                    c.to_string()
                }
            })
            .collect::<String>()
    };
    format!("{}={}", esc(key), esc(value))
}

/// Writes every computed node of `plan` (of `stages`, or all but [`EXPORT_SKIPS`]) as
/// `dir/stage=<stage>/<axis>=<value>/…/part-0.parquet`; the grid values live in the path
/// only, as Hive partitioning expects. Returns the files written. Nodes not computed yet
/// are an error naming them (run first).
pub fn export_hive(plan: &Plan, store: &Store, dir: &Path, stages: &[String]) -> Result<Vec<PathBuf>> {
    let chosen = |stage: &str, kind: &str| {
        if stages.is_empty() {
            !EXPORT_SKIPS.contains(&kind)
        } else {
            stages.iter().any(|s| s == stage)
        }
    };
    let nodes: Vec<usize> =
        (0..plan.nodes.len()).filter(|&i| chosen(&plan.nodes[i].stage, &plan.nodes[i].kind)).collect();
    let missing: Vec<&str> = nodes
        .iter()
        .filter(|&&i| plan.nodes[i].status != Status::Cached)
        .map(|&i| plan.nodes[i].label.as_str())
        .collect();
    if !missing.is_empty() {
        bail!("{} node(s) are not computed yet (e.g. {}); run the pipeline first", missing.len(), missing[0]);
    }
    let mut written = Vec::new();
    for i in nodes {
        let n = &plan.nodes[i];
        let mut path = dir.join(hive_segment("stage", &n.stage));
        for (axis, value) in &n.cell {
            path.push(hive_segment(axis, value));
        }
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        let (schema, batches) = read_stitched(store, &n.key).with_context(|| format!("reading {}", n.label))?;
        let file = path.join("part-0.parquet");
        mexa_store::write_parquet(&file, schema, &batches)?;
        written.push(file);
    }
    Ok(written)
}

/// One stage's results across the grid: for each computed node of `stage`, its rows with
/// the node's grid values as leading text columns (`columns`, when given, picks the result
/// columns). List columns (vectors) are left out. Nodes not computed are skipped.
pub fn stage_table(
    plan: &Plan,
    store: &Store,
    stage: &str,
    columns: &[String],
) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let nodes: Vec<usize> = (0..plan.nodes.len()).filter(|&i| plan.nodes[i].stage == stage).collect();
    if nodes.is_empty() {
        let stages: Vec<&str> = plan.nodes.iter().map(|n| n.stage.as_str()).collect();
        let hint = crate::error::suggest(stage, stages.iter().copied()).unwrap_or_default();
        bail!("no stage `{stage}` in {} {hint}", plan.pipeline);
    }
    let axes: Vec<String> = plan.nodes[nodes[0]].cell.iter().map(|(a, _)| a.clone()).collect();
    let (mut schema, mut out): (Option<SchemaRef>, Vec<RecordBatch>) = (None, Vec::new());
    for i in nodes.into_iter().filter(|&i| plan.nodes[i].status == Status::Cached) {
        let n = &plan.nodes[i];
        let (s, batches) = read_stitched(store, &n.key).with_context(|| format!("reading {}", n.label))?;
        let keep: Vec<usize> = (0..s.fields().len())
            .filter(|&j| {
                let f = s.field(j);
                let listy = matches!(f.data_type(), DataType::List(_) | DataType::FixedSizeList(..) | DataType::Binary);
                !listy && (columns.is_empty() || columns.iter().any(|c| c == f.name()))
            })
            .collect();
        for c in columns {
            if s.index_of(c).is_err() {
                let names: Vec<&str> = s.fields().iter().map(|f| f.name().as_str()).collect();
                let hint = crate::error::suggest(c, names.iter().copied())
                    .unwrap_or_else(|| format!("columns: {}", names.join(", ")));
                bail!("{} has no column `{c}` ({hint})", n.label);
            }
        }
        let mut fields: Vec<Field> = axes.iter().map(|a| Field::new(a, DataType::Utf8, false)).collect();
        fields.extend(keep.iter().map(|&j| s.field(j).clone()));
        let sch = schema.get_or_insert_with(|| Arc::new(Schema::new(fields))).clone();
        for b in batches {
            let value = |a: &String| n.cell.iter().find(|(x, _)| x == a).map(|(_, v)| v.as_str()).unwrap_or("");
            let mut cols: Vec<ArrayRef> =
                axes.iter().map(|a| Arc::new(StringArray::from(vec![value(a); b.num_rows()])) as ArrayRef).collect();
            cols.extend(keep.iter().map(|&j| b.column(j).clone()));
            out.push(RecordBatch::try_new(sch.clone(), cols).with_context(|| format!("{}: columns differ", n.label))?);
        }
    }
    let schema =
        schema.ok_or_else(|| anyhow::anyhow!("no node of `{stage}` is computed yet; run the pipeline first"))?;
    Ok((schema, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hive_segments_escape_what_would_break_a_path() {
        assert_eq!(hive_segment("model", "gemma3-270m"), "model=gemma3-270m");
        assert_eq!(hive_segment("model", "org/name=x%"), "model=org%2Fname%3Dx%25");
    }
}
