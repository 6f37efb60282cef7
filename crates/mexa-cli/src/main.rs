//! `mexa`: measure how well a language model carries understanding across languages.
//!
//! A thin command-line layer over the workspace crates: argument parsing, logging, and
//! printing. See ARCHITECTURE.md for the map.
mod bench;
mod cmd_fetch;
mod cmd_pipeline;
mod cmd_report;
mod cmd_sentences;
mod cmd_store;
mod cmd_tokenize;

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

const LONG_ABOUT: &str = "\
mexa measures cross-lingual alignment of language models (MEXA, Kargaran et al. 2024) as a
declarative, cached, resumable pipeline. Pipelines are YAML files of typed stages and
experiment grids (see pipelines/ and docs/pipelines.md). Every intermediate result is a
content-addressed Parquet artifact in a store directory, so reruns skip finished work, an
interrupted run resumes where it stopped, and a store can be copied and shared.

Typical use:
  mexa plan pipelines/demo.yaml      what would run, and why
  mexa run pipelines/demo.yaml       run what is missing (Ctrl-C stops; rerun resumes)
  mexa ls                            artifacts in the store
  mexa show align                    an artifact's manifest, schema and first rows
  mexa report pipelines/demo.yaml    HTML page, Markdown and figures of the results
  mexa compare A B                   two artifacts side by side
  mexa verify                        rehash everything, quarantine corrupt artifacts";

#[derive(Parser)]
#[command(name = "mexa", disable_version_flag = true, about = "Cross-lingual alignment of language models, as a cached pipeline", long_about = LONG_ABOUT)]
struct Cli {
    /// Artifact store directory [default: a pipeline's `store:`, else ./artifacts]. Commands
    /// that only read (plan, ls, show, …) never create one.
    #[arg(long, global = true, env = "MEXA_STORE")]
    store: Option<PathBuf>,
    /// More log output (-v info, -vv debug, -vvv trace). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Only errors.
    #[arg(short, long, global = true)]
    quiet: bool,
    /// Print the version, the libtorch found and its devices.
    #[arg(short = 'V', long)]
    version: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Show the expanded DAG: each node cached or to run, and why it must run. Exits 0 when
    /// nothing is to run, 1 when something is, 2 on an error (for scripts).
    Plan(cmd_pipeline::PlanArgs),
    /// Run what is missing, in parallel where the DAG allows.
    Run(cmd_pipeline::RunArgs),
    /// List artifacts in the store.
    Ls(cmd_store::LsArgs),
    /// Show an artifact: manifest, schema and first rows (by key prefix or node label).
    Show(cmd_store::ShowArgs),
    /// Write an HTML page, a Markdown summary and PNG/SVG figures of a pipeline's results.
    Report(cmd_report::ReportArgs),
    /// Compare two artifacts of the same kind side by side (e.g. two models' aggregates).
    Compare(cmd_report::CompareArgs),
    /// Write a pipeline's computed results as Hive-partitioned Parquet
    /// (stage=align/model=gemma3-270m/part-0.parquet) for polars, pandas or DuckDB.
    Export(cmd_report::ExportArgs),
    /// One stage's results across the grid, the grid's axes as columns (like `dvc exp show`).
    Table(cmd_report::TableArgs),
    /// What a pipeline's nodes cost: wall, CPU, peak memory and tokens/s, per stage and node.
    Profile(cmd_report::ProfileArgs),
    /// Show what produced an artifact, back to the corpus and model files.
    Lineage(cmd_store::LineageArgs),
    /// Delete artifacts that the given pipelines no longer reach (dry run unless --apply).
    Gc(cmd_pipeline::GcArgs),
    /// Rehash every artifact; move corrupt ones to quarantine/ so the next run recomputes them.
    Verify(cmd_store::VerifyArgs),
    /// Merge stores: copy artifacts between store directories, verifying hashes.
    #[command(subcommand)]
    Store(cmd_store::StoreCmd),
    /// List stage kinds and their parameters.
    Stages(cmd_pipeline::StagesArgs),
    /// Show the ids and pieces a model's tokenizer gives a text, a file or a corpus language
    /// (as embed feeds them to the model); --compare another tokenizer.json.
    Tokenize(cmd_tokenize::TokenizeArgs),
    /// Download a model by Hugging Face id into the Hugging Face cache (ahead of a run, e.g.
    /// before a Slurm job whose nodes are offline): `mexa fetch Qwen/Qwen2.5-1.5B`.
    Fetch(cmd_fetch::FetchArgs),
    /// Benchmarks: each prints mexa's time next to a baseline measured in the same run.
    Bench(bench::BenchArgs),
    /// Print a shell completion script: `mexa completions bash > ~/.local/share/bash-completion/completions/mexa`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print a JSON Schema of pipeline files (every stage kind and parameter), for editors:
    /// `mexa schema > mexa.schema.json`, then `# yaml-language-server: $schema=mexa.schema.json`.
    Schema,
    /// Compute one serialised node (what a cluster job runs).
    #[command(hide = true)]
    ExecNode(cmd_pipeline::ExecNodeArgs),
}

fn version_line() -> String {
    format!("{}\n{}", env!("CARGO_PKG_VERSION"), mexa_model::runtime_info())
}

fn init_logging(verbose: u8, quiet: bool) {
    use tracing_subscriber::EnvFilter;
    let level = if quiet { "error" } else { ["warn", "info", "debug", "trace"][verbose.min(3) as usize] };
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(format!("{level},tokenizers=warn")));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).init();
}

fn main() {
    // `mexa show … | head`: end quietly on a closed pipe, as other Unix tools do, instead of
    // panicking in println!.
    // SAFETY: setting a signal disposition to its default before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    stdout_failure_is_an_error();
    mexa_model::tune_allocator();
    let cli = Cli::parse();
    init_logging(cli.verbose, cli.quiet);
    // `plan`'s 1 means "something to run", so its errors exit 2 (as diff does).
    let error_code = if matches!(cli.command, Some(Command::Plan(_))) { 2 } else { 1 };
    let code = match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            // Pipeline errors already read `file:line:col: error: …`, compiler style.
            if e.chain().count() == 1 && e.is::<mexa_pipeline::SpecErrors>() {
                eprintln!("{e}");
            } else {
                eprintln!("error: {e:#}");
            }
            error_code
        }
    };
    std::process::exit(code);
}

/// `println!` panics when standard output cannot be written (a full disk, `> /dev/full`, a
/// quota). Every command prints through it, so the one place to make that an error is here: a
/// panic hook that turns std's "failed printing to stdout" into `error: …` and exit code 1,
/// and leaves every other panic to the default hook.
fn stdout_failure_is_an_error() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if let Some(why) = msg.strip_prefix("failed printing to stdout: ") {
            eprintln!("error: cannot write to standard output: {why}");
            std::process::exit(1);
        }
        default(info);
    }));
}

fn dispatch(cli: Cli) -> Result<i32> {
    let store = &cmd_store::StoreChoice(cli.store.clone());
    let Some(command) = cli.command else {
        if cli.version {
            println!("mexa {}", version_line());
            return Ok(0);
        }
        use clap::CommandFactory;
        Cli::command().print_help()?;
        return Ok(2);
    };
    match command {
        Command::Plan(a) => cmd_pipeline::plan(store, a),
        Command::Run(a) => cmd_pipeline::run(store, a, cli.quiet),
        Command::Ls(a) => cmd_store::ls(store, a),
        Command::Show(a) => cmd_store::show(store, a),
        Command::Lineage(a) => cmd_store::lineage(store, a),
        Command::Report(a) => cmd_report::report(store, a),
        Command::Compare(a) => cmd_report::compare(store, a),
        Command::Export(a) => cmd_report::export(store, a),
        Command::Table(a) => cmd_report::table(store, a),
        Command::Profile(a) => cmd_report::profile(store, a),
        Command::Gc(a) => cmd_pipeline::gc(store, a),
        Command::Verify(a) => cmd_store::verify(store, a),
        Command::Store(c) => cmd_store::store_cmd(store, c),
        Command::Stages(a) => cmd_pipeline::stages(a),
        Command::Fetch(a) => cmd_fetch::fetch(a, cli.quiet),
        Command::Bench(a) => bench::bench(a),
        Command::Tokenize(a) => cmd_tokenize::tokenize(a),
        Command::ExecNode(a) => cmd_pipeline::exec_node(store, a),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "mexa", &mut std::io::stdout());
            Ok(0)
        }
        Command::Schema => {
            let schema = mexa_pipeline::schema::pipeline_schema(&mexa_stages::registry());
            println!("{}", serde_json::to_string_pretty(&schema)?);
            Ok(0)
        }
    }
}
