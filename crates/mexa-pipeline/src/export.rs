//! Results as tables people load: a sweep's artifacts as Hive-partitioned Parquet
//! (`stage=align/model=gemma3-270m/part-0.parquet`, `mexa export`) and one stage's results
//! across the grid with the axes as columns (`mexa table`). Both add, beside a `language`
//! column, who the language is ([`LANGUAGE_COLUMNS`]): presentation only, never stored.
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

/// The prefix a grid axis gets in an exported or tabled result when a result column of the
/// same stage has its name (the bundled UDHR pipeline's `metric` axis beside aggregate's
/// `metric` column): two columns of one name break pandas, polars and DuckDB.
pub const AXIS_PREFIX: &str = "grid_";

/// The column name of `axis` beside a table with these `columns`.
pub fn axis_column(axis: &str, columns: &[&str]) -> String {
    if columns.contains(&axis) || axis == "stage" {
        format!("{AXIS_PREFIX}{axis}")
    } else {
        axis.to_string()
    }
}

/// A computed node's table as people load it: a sharded artifact's shards joined, with a
/// `language` column (the shard's name) when its rows do not name their language (embed).
fn node_table(store: &Store, key: &mexa_store::Key) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let (schema, batches) = read_stitched(store, key)?;
    let shards = crate::stage::shards_of(store, key)?;
    if shards.is_empty() || schema.index_of("language").is_ok() {
        return Ok((schema, batches));
    }
    let mut fields = vec![Field::new("language", DataType::Utf8, false)];
    fields.extend(schema.fields().iter().map(|f| f.as_ref().clone()));
    let with = Arc::new(Schema::new(fields));
    // read_stitched puts each shard's rows after the previous shard's, in index order.
    let mut rows = Vec::with_capacity(shards.len());
    for (name, k) in &shards {
        rows.push((name, store.manifest(k)?.rows as usize));
    }
    let names: Vec<&str> = rows.iter().flat_map(|(n, r)| std::iter::repeat_n(n.as_str(), *r)).collect();
    let mut at = 0;
    let mut out = Vec::with_capacity(batches.len());
    for b in batches {
        let mut cols: Vec<ArrayRef> = vec![Arc::new(StringArray::from(names[at..at + b.num_rows()].to_vec()))];
        at += b.num_rows();
        cols.extend(b.columns().iter().cloned());
        out.push(RecordBatch::try_new(with.clone(), cols)?);
    }
    Ok((with, out))
}

/// Fixed-size list columns (embeddings' `vector`) as plain lists of the same values: one
/// stage's dataset holds several models' widths (384, 576, 640), and polars and DuckDB refuse
/// fixed-size lists of different sizes in one dataset.
fn variable_width_lists(schema: SchemaRef, batches: Vec<RecordBatch>) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    use arrow::array::{Array, FixedSizeListArray, ListArray};
    use arrow::buffer::OffsetBuffer;
    if !schema.fields().iter().any(|f| matches!(f.data_type(), DataType::FixedSizeList(..))) {
        return Ok((schema, batches));
    }
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::FixedSizeList(item, _) => Field::new(f.name(), DataType::List(item.clone()), f.is_nullable()),
            _ => f.as_ref().clone(),
        })
        .collect();
    let with = Arc::new(Schema::new(fields));
    let mut out = Vec::with_capacity(batches.len());
    for b in batches {
        let mut cols: Vec<ArrayRef> = Vec::with_capacity(b.num_columns());
        for c in b.columns() {
            match c.as_any().downcast_ref::<FixedSizeListArray>() {
                Some(f) => {
                    let DataType::FixedSizeList(item, size) = f.data_type() else { unreachable!() };
                    let offsets = OffsetBuffer::from_lengths(std::iter::repeat_n(*size as usize, f.len()));
                    let values = f.values().slice(f.value_offset_at(0), f.len() * *size as usize);
                    cols.push(Arc::new(ListArray::try_new(item.clone(), offsets, values, f.nulls().cloned())?));
                }
                None => cols.push(c.clone()),
            }
        }
        out.push(RecordBatch::try_new(with.clone(), cols)?);
    }
    Ok((with, out))
}

/// What [`export_hive`] wrote and what it could not.
#[derive(Debug, Default)]
pub struct Exported {
    pub files: Vec<PathBuf>,
    /// Stages written, in plan order.
    pub stages: Vec<String>,
    /// Labels of chosen nodes not computed yet (left out).
    pub missing: Vec<String>,
    /// (stage, axis, column): axes renamed because a result column has their name.
    pub renamed: Vec<(String, String, String)>,
}

/// Writes every computed node of `plan` (of `stages`, or all but [`EXPORT_SKIPS`]) as
/// `dir/stage=<stage>/<axis>=<value>/…/part-0.parquet`; the grid values live in the path
/// only, as Hive partitioning expects (an axis named like one of the stage's result columns
/// as `grid_<axis>`). Nodes not computed yet are left out and listed in the result.
pub fn export_hive(plan: &Plan, store: &Store, dir: &Path, stages: &[String]) -> Result<Exported> {
    let chosen = |stage: &str, kind: &str| {
        if stages.is_empty() {
            !EXPORT_SKIPS.contains(&kind)
        } else {
            stages.iter().any(|s| s == stage)
        }
    };
    for s in stages {
        if !plan.nodes.iter().any(|n| &n.stage == s) {
            let names: Vec<&str> = plan.nodes.iter().map(|n| n.stage.as_str()).collect();
            let hint = crate::error::suggest(s, names.iter().copied()).unwrap_or_default();
            bail!("--stages: no stage `{s}` in {} {hint}", plan.pipeline);
        }
    }
    let mut out = Exported::default();
    let nodes: Vec<usize> =
        (0..plan.nodes.len()).filter(|&i| chosen(&plan.nodes[i].stage, &plan.nodes[i].kind)).collect();
    // Read first: a stage's axis names must be the same in every file of its dataset.
    let mut tables = Vec::new();
    let mut columns: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
    for &i in &nodes {
        let n = &plan.nodes[i];
        if n.status != Status::Cached {
            out.missing.push(n.label.clone());
            continue;
        }
        let (schema, batches) = node_table(store, &n.key).with_context(|| format!("reading {}", n.label))?;
        let axes: Vec<&str> = n.cell.iter().map(|(a, _)| a.as_str()).collect();
        let (schema, batches) = with_language_columns(schema, batches, &axes)?;
        let (schema, batches) = variable_width_lists(schema, batches)?;
        columns.entry(&n.stage).or_default().extend(schema.fields().iter().map(|f| f.name().clone()));
        tables.push((i, schema, batches));
    }
    for (i, schema, batches) in tables {
        let n = &plan.nodes[i];
        let cols: Vec<&str> = columns[n.stage.as_str()].iter().map(String::as_str).collect();
        let mut rel = vec![hive_segment("stage", &n.stage)];
        for (axis, value) in &n.cell {
            let name = axis_column(axis, &cols);
            if name != *axis && !out.renamed.iter().any(|r| r.0 == n.stage && &r.1 == axis) {
                out.renamed.push((n.stage.clone(), axis.clone(), name.clone()));
            }
            rel.push(hive_segment(&name, value));
        }
        rel.push("part-0.parquet".to_string());
        let rel = rel.join("/");
        // Never through a link planted in the output folder: a file of that name is replaced.
        let mut f = mexa_core::write::create_inside(dir, &rel)?;
        mexa_store::write_parquet_to(&mut f, schema, &batches)
            .with_context(|| format!("writing {}", dir.join(&rel).display()))?;
        out.files.push(dir.join(rel));
        if !out.stages.contains(&n.stage) {
            out.stages.push(n.stage.clone());
        }
    }
    Ok(out)
}

/// One stage's results across the grid: for each computed node of `stage`, its rows with
/// the node's grid values as leading text columns (an axis named like a result column as
/// `grid_<axis>`; `columns`, when given, picks the result columns). List columns (vectors)
/// are left out. Nodes not computed are skipped.
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
        let (s, batches) = node_table(store, &n.key).with_context(|| format!("reading {}", n.label))?;
        let (s, batches) = with_language_columns(s, batches, &axes.iter().map(String::as_str).collect::<Vec<_>>())?;
        let keep: Vec<usize> = (0..s.fields().len())
            .filter(|&j| {
                let f = s.field(j);
                let listy = matches!(f.data_type(), DataType::List(_) | DataType::FixedSizeList(..) | DataType::Binary);
                !listy && (columns.is_empty() || columns.iter().any(|c| c == f.name()))
            })
            .collect();
        let names: Vec<&str> = s.fields().iter().map(|f| f.name().as_str()).collect();
        // The grid's axes lead every row anyway: naming one among the columns is fine.
        let is_axis = |c: &str| axes.iter().any(|a| a == c || axis_column(a, &names) == c);
        for c in columns {
            if s.index_of(c).is_err() && !is_axis(c) {
                let hint = crate::error::suggest(c, names.iter().copied())
                    .unwrap_or_else(|| format!("columns: {}", names.join(", ")));
                bail!("{} has no column `{c}` ({hint})", n.label);
            }
        }
        let mut fields: Vec<Field> =
            axes.iter().map(|a| Field::new(axis_column(a, &names), DataType::Utf8, false)).collect();
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

/// Columns shown beside a table's `language` column: the language's English name, script,
/// family and branch (`mexa_core::language::lookup`; null where unknown). Added when a table is shown or
/// exported, never stored, so no artifact or key depends on the language table's version.
pub const LANGUAGE_COLUMNS: [&str; 4] = ["language_name", "script", "family", "branch"];

/// The table with [`LANGUAGE_COLUMNS`] inserted after its `language` text column; a name the
/// table or a grid axis (`taken`) already uses is left out. Unchanged without a `language`
/// text column.
pub fn with_language_columns(
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    taken: &[&str],
) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let Ok(at) = schema.index_of("language") else { return Ok((schema, batches)) };
    if schema.field(at).data_type() != &DataType::Utf8 {
        return Ok((schema, batches));
    }
    let added: Vec<usize> = (0..LANGUAGE_COLUMNS.len())
        .filter(|&k| schema.index_of(LANGUAGE_COLUMNS[k]).is_err() && !taken.contains(&LANGUAGE_COLUMNS[k]))
        .collect();
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    for (j, &k) in added.iter().enumerate() {
        fields.insert(at + 1 + j, Field::new(LANGUAGE_COLUMNS[k], DataType::Utf8, true));
    }
    let out_schema = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
    let mut out = Vec::with_capacity(batches.len());
    for b in batches {
        let labels = b.column(at).as_any().downcast_ref::<StringArray>().expect("a Utf8 column");
        let mut known: std::collections::HashMap<&str, [Option<String>; 4]> = std::collections::HashMap::new();
        let mut values: Vec<Vec<Option<String>>> = vec![Vec::with_capacity(b.num_rows()); LANGUAGE_COLUMNS.len()];
        for label in labels.iter() {
            let cells = match label {
                None => [None, None, None, None],
                Some(l) => known
                    .entry(l)
                    .or_insert_with(|| {
                        let x = mexa_core::language::lookup(l);
                        let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
                        [some(x.name), some(&x.script), some(x.family), some(x.branch)]
                    })
                    .clone(),
            };
            for (v, c) in values.iter_mut().zip(cells) {
                v.push(c);
            }
        }
        let mut cols: Vec<ArrayRef> = b.columns().to_vec();
        for (j, &k) in added.iter().enumerate() {
            cols.insert(at + 1 + j, Arc::new(StringArray::from(std::mem::take(&mut values[k]))));
        }
        out.push(RecordBatch::try_new(out_schema.clone(), cols)?);
    }
    Ok((out_schema, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_columns_sit_beside_language_and_leave_taken_names_alone() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("language", DataType::Utf8, true),
            Field::new("family", DataType::Utf8, false),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec![Some("swh_Latn"), Some("qqq"), None, Some("cmn_hans")])),
                Arc::new(StringArray::from(vec!["a", "b", "c", "d"])),
            ],
        )
        .unwrap();
        let (s, b) = with_language_columns(schema, vec![batch], &["script"]).unwrap();
        let names: Vec<&str> = s.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["language", "language_name", "branch", "family"], "a column and an axis keep their names");
        let col = |i: usize| b[0].column(i).as_any().downcast_ref::<StringArray>().unwrap().clone();
        assert_eq!(col(1).iter().collect::<Vec<_>>(), [Some("Swahili"), None, None, Some("Mandarin Chinese")]);
        assert_eq!(col(3).value(0), "a", "the table's own `family` is untouched");
        // A table without a `language` column is returned as it was.
        let other = Arc::new(Schema::new(vec![Field::new("task", DataType::Utf8, false)]));
        let (s, _) = with_language_columns(other.clone(), vec![], &[]).unwrap();
        assert_eq!(s, other);
        // All four when nothing is taken; unknown labels give nulls, never a guess.
        let schema = Arc::new(Schema::new(vec![Field::new("language", DataType::Utf8, false)]));
        let batch =
            RecordBatch::try_new(schema.clone(), vec![Arc::new(StringArray::from(vec!["eng_Latn", "qqq"]))]).unwrap();
        let (s, b) = with_language_columns(schema, vec![batch], &[]).unwrap();
        assert_eq!(s.fields().len(), 5);
        let row = |r: usize| (1..5).map(|i| col_of(&b[0], i, r)).collect::<Vec<_>>();
        assert_eq!(
            row(0),
            [Some("English"), Some("Latn"), Some("Indo-European"), Some("Germanic")].map(|x| x.map(String::from))
        );
        assert_eq!(row(1), [None, None, None, None]);
    }

    fn col_of(b: &RecordBatch, i: usize, r: usize) -> Option<String> {
        let a = b.column(i).as_any().downcast_ref::<StringArray>().unwrap();
        a.iter().nth(r).unwrap().map(String::from)
    }

    #[test]
    fn hive_segments_escape_what_would_break_a_path() {
        assert_eq!(hive_segment("model", "gemma3-270m"), "model=gemma3-270m");
        assert_eq!(hive_segment("model", "org/name=x%"), "model=org%2Fname%3Dx%25");
    }

    #[test]
    fn an_axis_named_like_a_column_is_namespaced() {
        assert_eq!(axis_column("metric", &["language", "metric", "mean"]), "grid_metric");
        assert_eq!(axis_column("model", &["language", "metric"]), "model");
        assert_eq!(axis_column("stage", &[]), "grid_stage");
    }
}
