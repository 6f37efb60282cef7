//! `report` and `compare`.
use crate::cmd_pipeline::load_plan;
use crate::cmd_store::{resolve, Format};
use anyhow::{bail, Context, Result};
use arrow::array::{Array, Float64Array, StringArray};
use arrow::datatypes::DataType;
use clap::Args;
use mexa_pipeline::stage::NoProgress;
use mexa_pipeline::{execute_node, NodeSpec, Stage, Status};
use mexa_store::{format_rows_fit, key_of, terminal_width, KeySpec, Store};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

#[derive(Args)]
pub struct ReportArgs {
    /// A pipeline file (its results must be computed: `mexa run FILE`), or the key/label of
    /// a report artifact.
    what: String,
    /// Output folder (default: report/<pipeline>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Page title (default: "MEXA report: <pipeline>").
    #[arg(long)]
    title: Option<String>,
    /// Languages for the per-layer curves, comma-separated (default: eight spread over the ranking).
    #[arg(long, value_delimiter = ',')]
    languages: Vec<String>,
}

#[derive(Args)]
pub struct CompareArgs {
    /// Two artifacts (key prefixes or node labels) of the same kind, e.g. two aggregates.
    a: String,
    b: String,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

fn write_files(key: &str, store: &Store, out: &Path) -> Result<()> {
    let (schema, batches) = store.read(key)?;
    let files = mexa_stages::report::report_files(&mexa_pipeline::Table::new(schema, batches))?;
    for (rel, bytes) in &files {
        write_inside(out, rel, bytes)?;
    }
    println!("{} files in {}; open {}", files.len(), out.display(), out.join("report.html").display());
    Ok(())
}

/// Writes `out/rel` (a plain relative path, checked by `report_files`) without following a
/// symlink anywhere below `out`: existing links are refused, the file is replaced, not
/// written through.
fn write_inside(out: &Path, rel: &str, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut dir = out.to_path_buf();
    let parts: Vec<&str> = rel.split('/').collect();
    for part in &parts[..parts.len() - 1] {
        dir.push(part);
        match std::fs::symlink_metadata(&dir) {
            Ok(m) if m.file_type().is_dir() => {}
            Ok(_) => bail!("{}: exists and is not a folder (a symlink is refused)", dir.display()),
            Err(_) => std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?,
        }
    }
    let p = dir.join(parts[parts.len() - 1]);
    if let Ok(m) = std::fs::symlink_metadata(&p) {
        if m.file_type().is_dir() {
            bail!("{}: is a folder", p.display());
        }
        std::fs::remove_file(&p).with_context(|| format!("replacing {}", p.display()))?;
    }
    let mut f = std::fs::File::options()
        .write(true)
        .create_new(true)
        .open(&p)
        .with_context(|| format!("writing {}", p.display()))?;
    f.write_all(bytes).with_context(|| format!("writing {}", p.display()))?;
    Ok(())
}

pub fn report(store_path: &Path, a: ReportArgs) -> Result<i32> {
    let registry = mexa_stages::registry();
    let store = Store::open(store_path)?;
    let file = PathBuf::from(&a.what);
    if !file.is_file() {
        let key = resolve(&store, &a.what)?;
        let out = a.out.unwrap_or_else(|| PathBuf::from("report").join(&key[..12]));
        write_files(&key, &store, &out)?;
        return Ok(0);
    }
    let plan = load_plan(&file, &registry, &store)?;
    let missing: Vec<&str> = plan
        .nodes
        .iter()
        .filter(|n| n.status != Status::Cached && n.kind != "report")
        .map(|n| n.label.as_str())
        .collect();
    if !missing.is_empty() {
        bail!(
            "{} of {} nodes are not computed yet (e.g. {}); run `mexa run {}` first",
            missing.len(),
            plan.nodes.len(),
            missing[0],
            file.display()
        );
    }
    // The report gathers every align, aggregate, join_tasks and correlate node.
    let stage = mexa_stages::report::Report;
    let mut inputs: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for n in &plan.nodes {
        let slot = match n.kind.as_str() {
            "align" => "alignment",
            "aggregate" => "summary",
            "join_tasks" => "points",
            "correlate" => "correlation",
            _ => continue,
        };
        inputs.entry(slot.to_string()).or_default().push((n.key.clone(), n.label.clone()));
    }
    for v in inputs.values_mut() {
        v.sort_by(|x, y| x.1.cmp(&y.1));
    }
    let title = a.title.unwrap_or_else(|| format!("MEXA report: {}", plan.pipeline));
    let params = serde_json::json!({ "title": title, "description": plan.description, "curve_languages": a.languages });
    let spec = KeySpec {
        stage: stage.kind().into(),
        version: stage.version(),
        params: params.clone(),
        inputs: inputs.iter().map(|(s, v)| (s.clone(), v.iter().map(|x| x.0.clone()).collect())).collect(),
    };
    let node = NodeSpec {
        key: key_of(&spec),
        label: format!("{}/report", plan.pipeline),
        node_id: format!("{}/report (mexa report)", plan.pipeline),
        spec,
        params,
        inputs,
    };
    let outcome = execute_node(&node, &registry, &store, &AtomicBool::new(false), &NoProgress, 1)?;
    tracing::info!("report {}: {:?}", &node.key[..12], outcome);
    let out = a.out.unwrap_or_else(|| PathBuf::from("report").join(&plan.pipeline));
    write_files(&node.key, &store, &out)?;
    Ok(0)
}

pub fn compare(store_path: &Path, a: CompareArgs) -> Result<i32> {
    let store = Store::open(store_path)?;
    let (ka, kb) = (resolve(&store, &a.a)?, resolve(&store, &a.b)?);
    let (ta, tb) = (store.read(&ka)?, store.read(&kb)?);
    let strings = |s: &arrow::datatypes::SchemaRef| -> Vec<String> {
        s.fields().iter().filter(|f| f.data_type() == &DataType::Utf8).map(|f| f.name().clone()).collect()
    };
    let floats = |s: &arrow::datatypes::SchemaRef| -> Vec<String> {
        s.fields().iter().filter(|f| f.data_type() == &DataType::Float64).map(|f| f.name().clone()).collect()
    };
    let keys: Vec<String> = strings(&ta.0).into_iter().filter(|k| strings(&tb.0).contains(k)).collect();
    let vals: Vec<String> =
        floats(&ta.0).into_iter().filter(|k| floats(&tb.0).contains(k) && !k.ends_with("_p")).collect();
    if keys.is_empty() || vals.is_empty() {
        bail!("the two artifacts share no text key columns and numeric columns to compare");
    }
    let index =
        |t: &(arrow::datatypes::SchemaRef, Vec<arrow::array::RecordBatch>)| -> Result<BTreeMap<Vec<String>, Vec<f64>>> {
            let mut m = BTreeMap::new();
            for b in &t.1 {
                let kc: Vec<&StringArray> = keys
                    .iter()
                    .map(|k| b.column_by_name(k).unwrap().as_any().downcast_ref::<StringArray>().unwrap())
                    .collect();
                let vc: Vec<&Float64Array> = vals
                    .iter()
                    .map(|k| b.column_by_name(k).unwrap().as_any().downcast_ref::<Float64Array>().unwrap())
                    .collect();
                for i in 0..b.num_rows() {
                    m.insert(
                        kc.iter().map(|c| c.value(i).to_string()).collect(),
                        vc.iter().map(|c| c.value(i)).collect(),
                    );
                }
            }
            Ok(m)
        };
    let (ia, ib) = (index(&ta)?, index(&tb)?);
    let all: std::collections::BTreeSet<&Vec<String>> = ia.keys().chain(ib.keys()).collect();
    let mut header = keys.clone();
    for v in &vals {
        header.extend([format!("{v} A"), format!("{v} B"), format!("{v} B−A")]);
    }
    let fmt = |x: Option<f64>| {
        x.map(|v| if matches!(a.format, Format::Table) { format!("{v:.4}") } else { v.to_string() }).unwrap_or_default()
    };
    let mut rows = vec![header.clone()];
    for k in all {
        let mut r = k.clone();
        for j in 0..vals.len() {
            let (x, y) = (ia.get(k).map(|v| v[j]), ib.get(k).map(|v| v[j]));
            r.extend([fmt(x), fmt(y), fmt(x.zip(y).map(|(x, y)| y - x))]);
        }
        rows.push(r);
    }
    match a.format {
        Format::Table => {
            println!(
                "A = {}  {}\nB = {}  {}\n",
                &ka[..12],
                store.manifest(&ka)?.label,
                &kb[..12],
                store.manifest(&kb)?.label
            );
            print!("{}", format_rows_fit(&rows, terminal_width()));
        }
        Format::Csv | Format::Parquet => {
            for r in rows {
                println!("{}", r.join(","));
            }
        }
        Format::Json => {
            let objs: Vec<serde_json::Value> = rows[1..]
                .iter()
                .map(|r| {
                    serde_json::Value::Object(
                        header
                            .iter()
                            .zip(r)
                            .map(|(h, v)| {
                                (
                                    h.clone(),
                                    v.parse::<f64>()
                                        .map(serde_json::Value::from)
                                        .unwrap_or(serde_json::Value::from(v.clone())),
                                )
                            })
                            .collect(),
                    )
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&objs)?);
        }
    }
    Ok(0)
}
