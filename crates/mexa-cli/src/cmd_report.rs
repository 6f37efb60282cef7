//! `report` and `compare`.
use crate::cmd_pipeline::{load_view, View};
use crate::cmd_store::{print_table, resolve, Format, StoreChoice};
use anyhow::{bail, Result};
use clap::Args;
use mexa_pipeline::stage::NoProgress;
use mexa_pipeline::{execute_node, Status};
use mexa_store::{compare_tables, Store};
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
    /// With a label that names several report artifacts: take the newest.
    #[arg(long)]
    latest: bool,
    #[command(flatten)]
    view: View,
}

#[derive(Args)]
pub struct CompareArgs {
    /// Two artifacts (key prefixes or node labels) of the same kind, e.g. two aggregates.
    a: String,
    b: String,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// When a label names several artifacts (variants computed with other parameters), take
    /// the newest instead of listing them.
    #[arg(long)]
    latest: bool,
    #[command(flatten)]
    through: crate::cmd_store::Through,
}

#[derive(Args)]
pub struct ExportArgs {
    /// Output folder: <DIR>/stage=<stage>/<axis>=<value>/…/part-0.parquet.
    dir: PathBuf,
    /// The pipeline whose computed results to write.
    pipeline: PathBuf,
    /// Stages to write (comma-separated; default: all but embed and report).
    #[arg(long, value_delimiter = ',')]
    stages: Vec<String>,
    #[command(flatten)]
    view: View,
}

#[derive(Args)]
pub struct TableArgs {
    /// The pipeline.
    pipeline: PathBuf,
    /// The stage whose results to show (default: the pipeline's last stage).
    stage: Option<String>,
    /// Result columns to keep (comma-separated; default: all but vectors); the grid's axes always
    /// lead each row, and naming one here is allowed.
    #[arg(long, value_delimiter = ',')]
    columns: Vec<String>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    #[command(flatten)]
    view: View,
}

#[derive(Args)]
pub struct ProfileArgs {
    /// The pipeline.
    pipeline: PathBuf,
    /// Also draw the last run's timeline (one bar per node) to DIR/timeline.{png,svg}.
    #[arg(long, value_name = "DIR")]
    timeline: Option<PathBuf>,
    /// Print the per-node profile as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    view: View,
}

/// `mexa profile`: per stage and per node, wall, CPU, peak memory, tokens/s.
pub fn profile(choice: &StoreChoice, a: ProfileArgs) -> Result<i32> {
    let registry = mexa_stages::registry();
    let (plan, store) = load_view(&a.pipeline, &registry, choice, &a.view)?;
    let nodes = mexa_pipeline::profile::profile(&plan, &store);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&nodes)?);
    } else {
        print!("{}", profile_text(&nodes));
    }
    if let Some(dir) = a.timeline {
        let bars = mexa_pipeline::profile::last_run(&nodes);
        write_timeline(&dir, &plan.pipeline, &bars)?;
    }
    Ok(0)
}

/// The last run's timeline as DIR/timeline.png and .svg.
fn write_timeline(dir: &Path, pipeline: &str, bars: &[(String, String, f64, f64)]) -> Result<()> {
    if bars.is_empty() {
        println!("no computed node has timings yet; run the pipeline first");
        return Ok(());
    }
    let title = format!("{pipeline}: last run, {} nodes", bars.len());
    let h = (90 + 24 * bars.len() as u32).max(240);
    let fig = mexa_report::figures::Figure {
        stem: "timeline".into(),
        size: (1000, h),
        draw: Box::new(|r| mexa_report::figures::timeline(r, &title, bars)),
        draw_png: Box::new(|r| mexa_report::figures::timeline(r, &title, bars)),
    };
    let (png, svg) = mexa_report::figures::render(&fig)?;
    write_inside(dir, "timeline.png", &png)?;
    write_inside(dir, "timeline.svg", svg.as_bytes())?;
    println!("timeline of the last run: {}", dir.join("timeline.png").display());
    Ok(())
}

fn profile_text(nodes: &[mexa_pipeline::profile::NodeProfile]) -> String {
    let secs = |v: Option<f64>| v.map(|s| format!("{s:.1}s")).unwrap_or_else(|| "–".into());
    let mem = |v: Option<u64>| v.map(|b| format!("{:.2} GB", b as f64 / 1e9)).unwrap_or_else(|| "–".into());
    let rate = |v: Option<f64>| v.map(|r| format!("{r:.0}")).unwrap_or_else(|| "–".into());
    let mut stages: Vec<&str> = Vec::new();
    for n in nodes {
        if !stages.contains(&n.stage.as_str()) {
            stages.push(&n.stage);
        }
    }
    let mut rows =
        vec![["stage", "nodes", "computed", "wall", "cpu", "peak memory", "tokens/s"].map(String::from).to_vec()];
    for st in &stages {
        let of: Vec<_> = nodes.iter().filter(|n| n.stage == *st).collect();
        let sum = |f: &dyn Fn(&&mexa_pipeline::profile::NodeProfile) -> Option<f64>| {
            let v: Vec<f64> = of.iter().filter_map(f).collect();
            (!v.is_empty()).then(|| v.iter().sum::<f64>())
        };
        let tokens = sum(&|n| n.tokens.map(|t| t as f64));
        let shard_wall = sum(&|n| n.shard_wall_s);
        rows.push(vec![
            st.to_string(),
            of.len().to_string(),
            of.iter().filter(|n| n.computed).count().to_string(),
            secs(sum(&|n| n.wall_s)),
            secs(sum(&|n| n.cpu_s)),
            mem(of.iter().filter_map(|n| n.peak_rss_bytes).max()),
            rate(tokens.zip(shard_wall).filter(|p| p.1 > 0.0).map(|(t, w)| t / w)),
        ]);
    }
    let mut out = mexa_store::format_rows(&rows);
    out.push('\n');
    let mut rows = vec![["node", "status", "wall", "cpu", "peak memory", "tokens/s"].map(String::from).to_vec()];
    for n in nodes {
        rows.push(vec![
            n.label.clone(),
            if n.computed { "computed" } else { "not computed" }.into(),
            secs(n.wall_s),
            secs(n.cpu_s),
            mem(n.peak_rss_bytes),
            rate(n.tokens_per_s()),
        ]);
    }
    out.push_str(&mexa_store::format_rows_fit(&rows, mexa_store::terminal_width()));
    out.push_str("\ncpu and memory are the process's: exact with `run -j 1` or on Slurm, shared between nodes run side by side\n");
    out
}

/// `mexa export`: a sweep as Hive-partitioned Parquet.
pub fn export(choice: &StoreChoice, a: ExportArgs) -> Result<i32> {
    let registry = mexa_stages::registry();
    let (plan, store) = load_view(&a.pipeline, &registry, choice, &a.view)?;
    let e = mexa_pipeline::export::export_hive(&plan, &store, &a.dir, &a.stages)?;
    for (stage, axis, column) in &e.renamed {
        eprintln!(
            "note: stage `{stage}` has a result column `{axis}`: the grid axis `{axis}` is exported as `{column}`"
        );
    }
    if !e.missing.is_empty() {
        eprintln!(
            "{} node(s) are not computed yet and were left out: {}{}; `mexa run {}` (with the same -S/--where) computes them",
            e.missing.len(),
            e.missing.iter().take(4).cloned().collect::<Vec<_>>().join(", "),
            if e.missing.len() > 4 { ", …" } else { "" },
            a.pipeline.display()
        );
    }
    if e.files.is_empty() {
        bail!("nothing to export: no chosen node of {} is computed", plan.pipeline);
    }
    println!(
        "{} Parquet files under {} (stages: {}); load one stage with",
        e.files.len(),
        a.dir.display(),
        e.stages.join(", ")
    );
    let (d, st) = (a.dir.display(), &e.stages[e.stages.len() - 1]);
    println!("  polars:  pl.read_parquet(\"{d}/stage={st}/**/*.parquet\", hive_partitioning=True)");
    println!("  pandas:  pd.read_parquet(\"{d}/stage={st}\")");
    println!("  duckdb:  SELECT * FROM read_parquet('{d}/stage={st}/**/*.parquet', hive_partitioning = true)");
    Ok(0)
}

/// `mexa table`: one stage's results across the grid, axes as columns.
pub fn table(choice: &StoreChoice, a: TableArgs) -> Result<i32> {
    let registry = mexa_stages::registry();
    let (plan, store) = load_view(&a.pipeline, &registry, choice, &a.view)?;
    let stage = match a.stage {
        Some(s) => s,
        None => {
            plan.nodes.last().map(|n| n.stage.clone()).ok_or_else(|| anyhow::anyhow!("the pipeline has no nodes"))?
        }
    };
    let (schema, batches) = mexa_pipeline::export::stage_table(&plan, &store, &stage, &a.columns)?;
    print_table(&schema, &batches, a.format)?;
    Ok(0)
}

fn write_files(key: &mexa_store::Key, store: &Store, out: &Path) -> Result<()> {
    let (schema, batches) = store.read(key)?;
    let files = mexa_stages::report::report_files(&mexa_pipeline::Table::new(schema, batches))?;
    for (rel, bytes) in &files {
        write_inside(out, rel, bytes)?;
    }
    println!("{} files in {}; open {}", files.len(), out.display(), out.join("report.html").display());
    Ok(())
}

/// Writes `out/rel` (a plain relative path, checked by `report_files`) without following a
/// link anywhere below `out` ([`mexa_core::write::write_inside`]).
fn write_inside(out: &Path, rel: &str, bytes: &[u8]) -> Result<()> {
    Ok(mexa_core::write::write_inside(out, rel, bytes)?)
}

pub fn report(choice: &StoreChoice, a: ReportArgs) -> Result<i32> {
    let registry = mexa_stages::registry();
    let file = PathBuf::from(&a.what);
    if !file.is_file() {
        let store = choice.existing(None)?;
        let key = resolve(&store, &a.what, a.latest)?;
        let out = a.out.unwrap_or_else(|| PathBuf::from("report").join(key.short()));
        write_files(&key, &store, &out)?;
        return Ok(0);
    }
    let (plan, store) = load_view(&file, &registry, choice, &a.view)?;
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
    let title = a.title.unwrap_or_else(|| format!("MEXA report: {}", plan.pipeline));
    let node = mexa_stages::report::report_node(&plan, title, a.languages);
    let outcome = execute_node(&node, &registry, &store, &AtomicBool::new(false), &NoProgress, 1)?;
    tracing::info!("report {}: {:?}", node.key.short(), outcome);
    let out = a.out.unwrap_or_else(|| PathBuf::from("report").join(&plan.pipeline));
    write_files(&node.key, &store, &out)?;
    // Beside the page, not in it: the report artifact is keyed by results, a timeline by
    // when they were computed.
    let bars = mexa_pipeline::profile::last_run(&mexa_pipeline::profile::profile(&plan, &store));
    write_timeline(&out, &plan.pipeline, &bars)?;
    Ok(0)
}

pub fn compare(choice: &StoreChoice, a: CompareArgs) -> Result<i32> {
    let store = choice.existing(None)?;
    let (ka, kb) = (a.through.resolve(&store, &a.a, a.latest)?, a.through.resolve(&store, &a.b, a.latest)?);
    let (schema, batches) = compare_tables(&store.read(&ka)?, &store.read(&kb)?)?;
    if a.format == Format::Table {
        let (la, lb) = (store.manifest(&ka)?.label, store.manifest(&kb)?.label);
        println!("A = {}  {la}\nB = {}  {lb}\n", ka.short(), kb.short());
    }
    print_table(&schema, &batches, a.format)?;
    Ok(0)
}
