//! `mexa bench`: speed measured against a baseline in the same run, printed as ratios.
//!
//! - `plan`: expand and plan a 100,000-node grid (goal < 1 s); baseline: hashing the same
//!   number of canonical key specs, the irreducible work of content addressing.
//! - `cached`: a fully cached rerun of 10,000 nodes, plan + run (goal < 0.5 s); baseline:
//!   one stat(2) of each of those artifacts' manifests.
//! - `align`: language-layer pairs per second at n = 100 and n = 1000 sentences, mexa's
//!   aligner (every score and CKA, the pivot's Gram kept as the stage keeps it) against a
//!   straightforward single-threaded loop, and against the published scorer's algorithm in
//!   Python (tools/bench_mexa_scorer.py; $MEXA_BENCH_PYTHON with numpy and scipy).
//! - `pairs`: every ordered pair of 205 languages (100 sentences, d = 640) at one hidden
//!   state, `align_pairs` against `align` per pair (a sample, scaled).
//! - `embed`: tokens per second of mexa's batched extractor, and of Hugging Face
//!   transformers batched and one sentence at a time (the published MEXA loop),
//!   same model, sentences and threads (needs a Python with torch + transformers:
//!   $MEXA_BENCH_PYTHON, default python3); the share of the machine's f32 product speed
//!   (measured in the run) that mexa's weight products reach; for a GGUF, llama.cpp with every
//!   layer captured when $MEXA_BENCH_LLAMACPP names ../shared/tools/llamacpp-bench's bench.sh.
//!
//! - `weights`: a GGUF's weights dense (dequantised at load) against kept in their blocks and
//!   dequantised per use, and against layer-major under a 1 GB budget (stored, each layer
//!   made dense once per chunk of sentences, file pages handed back after use): tokens/s and
//!   peak resident memory of each, in child processes of this run (default model:
//!   Qwen2.5-Coder-1.5B-Instruct Q4_K_M; goal: stored peak ≤ the file + 1 GB at ≥ 90% of
//!   dense's tokens/s).
//!
//! The planning benchmarks use a bench-only `noop` stage kind (it writes a one-row table).
use anyhow::{bail, Context, Result};
use arrow::array::{Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use clap::Args;
use mexa_metrics::{align, align_loop, align_with_gram, Matrix};
use mexa_pipeline::{Ctx, InputSpec, Output, ParamSpec, Registry, RunOptions, Stage, Table};
use mexa_store::{key_of, FileHasher, KeySpec, Store};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

#[derive(Args)]
pub struct BenchArgs {
    /// Which benchmarks: plan, cached, align, pairs, embed, weights (default: all).
    which: Vec<String>,
    /// The model for `embed` (default: the bundled SmolLM2-135M GGUF).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Sentences for `embed`: a text file, one per line (default: bundled UDHR, 5 languages).
    #[arg(long)]
    sentences: Option<PathBuf>,
    /// Threads for `embed` and `align` (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Weight and activation dtype for `embed`, mexa and transformers alike: f32, bf16 or f16.
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// Device for `embed`, mexa and transformers alike: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Most padded tokens per batch for `weights` (both sides).
    #[arg(long, default_value_t = 4096)]
    batch_tokens: usize,
}

mexa_pipeline::stage_params! {
    struct NoopParams {
        /// grid axis a
        a: i64 = 0,
        /// grid axis b
        b: i64 = 0,
        /// grid axis c
        c: i64 = 0,
    }
}

struct Noop;
impl Stage for Noop {
    fn kind(&self) -> &'static str {
        "noop"
    }
    fn version(&self) -> u32 {
        1
    }
    fn doc(&self) -> &'static str {
        "benchmark stage: a one-row table"
    }
    fn params(&self) -> Vec<ParamSpec> {
        NoopParams::specs()
    }
    fn inputs(&self) -> Vec<InputSpec> {
        vec![]
    }
    fn run(&self, ctx: &Ctx) -> Result<Output> {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        let p: NoopParams = ctx.typed()?;
        let v = p.a * 1_000_000 + p.b * 1000 + p.c;
        let b = RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(vec![v]))])?;
        Ok(Table::new(schema, vec![b]).into())
    }
}

fn grid_pipeline(a: usize, b: usize, c: usize) -> String {
    let list = |n: usize| (0..n).map(|i| i.to_string()).collect::<Vec<_>>().join(", ");
    format!("pipeline: bench\ngrid:\n  a: [{}]\n  b: [{}]\n  c: [{}]\nstages:\n  cell:\n    kind: noop\n    params: {{a: \"${{a}}\", b: \"${{b}}\", c: \"${{c}}\"}}\n", list(a), list(b), list(c))
}

fn plan_text(text: &str, reg: &Registry, store: &Store) -> Result<mexa_pipeline::Plan> {
    let spec =
        mexa_pipeline::parse("bench.yaml", text, Path::new("bench.yaml"), reg).map_err(|e| anyhow::anyhow!("{e}"))?;
    mexa_pipeline::plan(&spec, reg, store, &FileHasher::new(None)).map_err(|e| anyhow::anyhow!("{e}"))
}

fn line(name: &str, ours: f64, base: f64, goal: &str) {
    println!(
        "{name:<44} mexa {:>9.3} s   baseline {:>9.3} s   ratio {:>6.2}×   {goal}",
        ours,
        base,
        ours / base.max(1e-12)
    );
}

fn bench_plan() -> Result<()> {
    let mut reg = Registry::new();
    reg.add(Noop);
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    let text = grid_pipeline(100, 100, 10);
    let t = Instant::now();
    let plan = plan_text(&text, &reg, &store)?;
    let ours = t.elapsed().as_secs_f64();
    assert_eq!(plan.nodes.len(), 100_000);
    let t = Instant::now();
    let mut acc = 0u8;
    for n in &plan.nodes {
        acc ^= key_of(&KeySpec {
            stage: n.spec.stage.clone(),
            version: 1,
            params: n.spec.params.clone(),
            inputs: Default::default(),
        })
        .as_bytes()[0];
    }
    let base = t.elapsed().as_secs_f64();
    std::hint::black_box(acc);
    line(
        "plan: expand + plan 100,000 nodes",
        ours,
        base,
        &format!("(goal < 1 s: {})", if ours < 1.0 { "met" } else { "NOT met" }),
    );
    Ok(())
}

fn bench_cached() -> Result<()> {
    let mut reg = Registry::new();
    reg.add(Noop);
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    let text = grid_pipeline(100, 100, 1);
    let plan = plan_text(&text, &reg, &store)?;
    let opts = RunOptions {
        jobs: 2,
        threads: 1,
        keep_going: false,
        progress: mexa_pipeline::run::ProgressMode::None,
        budget: Default::default(),
        weights: vec![],
    };
    eprintln!("cached: computing 10,000 nodes once (not timed)...");
    let s = mexa_pipeline::run(&plan, &reg, &store, &opts, &AtomicBool::new(false));
    if !s.ok() {
        bail!("first run failed: {:?}", s.failed.first());
    }
    let t = Instant::now();
    let plan = plan_text(&text, &reg, &store)?;
    let s = mexa_pipeline::run(&plan, &reg, &store, &opts, &AtomicBool::new(false));
    let ours = t.elapsed().as_secs_f64();
    assert_eq!(s.cached, 10_000);
    let t = Instant::now();
    let mut present = 0;
    for n in &plan.nodes {
        present += store.object_dir(&n.key).join("manifest.json").is_file() as usize;
    }
    let base = t.elapsed().as_secs_f64();
    assert_eq!(present, 10_000);
    line(
        "cached: plan + rerun of 10,000 cached nodes",
        ours,
        base,
        &format!("(goal < 0.5 s: {})", if ours < 0.5 { "met" } else { "NOT met" }),
    );
    Ok(())
}

fn random_matrix(n: usize, d: usize, seed: u64, base: Option<&Matrix>) -> Matrix {
    let mut s = seed | 1;
    let data = (0..n * d)
        .map(|i| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let noise = (s % 20_000) as f32 / 10_000.0 - 1.0;
            base.map(|b| b.data[i] + 0.8 * noise).unwrap_or(noise)
        })
        .collect();
    Matrix::new(n, d, data)
}

/// `pairs`: every ordered pair of 205 languages × 100 sentences × d = 640 at one hidden state
/// (the SIB-200 study's size), `align_pairs` against `align` run once per ordered pair.
fn bench_pairs() -> Result<()> {
    let (langs, n, d) = (205usize, 100usize, 640usize);
    let base = random_matrix(n, d, 1, None);
    let mats: Vec<Matrix> = (0..langs).map(|i| random_matrix(n, d, 500 + i as u64, Some(&base))).collect();
    let refs: Vec<&Matrix> = mats.iter().collect();
    let t = Instant::now();
    let all = mexa_metrics::align_pairs(&refs, 4);
    let ours = t.elapsed().as_secs_f64();
    // The baseline on a sample of ordered pairs (all 41,820 would take as long again), scaled.
    let sample: Vec<(usize, usize)> =
        (0..langs).flat_map(|i| (0..langs).map(move |j| (i, j))).filter(|(i, j)| i != j).step_by(20).collect();
    let t = Instant::now();
    let mut check = 0.0;
    for &(i, j) in &sample {
        check += align(&mats[i], &mats[j], 4).mexa;
    }
    let base_s = t.elapsed().as_secs_f64() * (langs * (langs - 1)) as f64 / sample.len() as f64;
    std::hint::black_box(check);
    println!(
        "pairs: {langs} languages × {n} sentences, d = {d}, one hidden state: align_pairs {ours:.1} s for {} ordered pairs; align per pair (sampled, scaled) {base_s:.1} s; {:.2}×; 30 hidden states ≈ {:.1} min per pooling",
        all.len(),
        base_s / ours,
        ours * 30.0 / 60.0
    );
    Ok(())
}

/// The published scorer's algorithm (tools/bench_mexa_scorer.py: SciPy's cosine in a Python
/// double loop, then the strict row-and-column test) at this n and d: seconds per pair, or why
/// it was not measured.
fn published_scorer(n: usize, d: usize, pairs: usize) -> std::result::Result<f64, String> {
    let py = std::env::var("MEXA_BENCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/bench_mexa_scorer.py");
    let o = std::process::Command::new(&py)
        .arg(&script)
        .args([n, d, pairs].map(|v| v.to_string()))
        .output()
        .map_err(|e| format!("{py}: {e}"))?;
    if !o.status.success() {
        return Err(format!(
            "{py}: {}; set MEXA_BENCH_PYTHON to a Python with numpy and scipy",
            String::from_utf8_lossy(&o.stderr).lines().last().unwrap_or("failed")
        ));
    }
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).map_err(|e| e.to_string())?;
    v["seconds_per_pair"].as_f64().ok_or_else(|| "no seconds_per_pair".into())
}

fn bench_align() -> Result<()> {
    for (n, pairs, base_pairs, py_pairs) in [(100usize, 200usize, 20usize, 3usize), (1000, 10, 1, 1)] {
        let d = 640;
        let pivot = random_matrix(n, d, 1, None);
        let langs: Vec<Matrix> =
            (0..pairs.max(base_pairs)).map(|i| random_matrix(n, d, 100 + i as u64, Some(&pivot))).collect();
        // As the align stage scores languages against one pivot: its Gram kept across them.
        let t = Instant::now();
        let gram = pivot.unit_centred_gram(n);
        let mut check = 0.0;
        for l in &langs[..pairs] {
            check += align_with_gram(&pivot, Some(&gram), l, 4).mexa;
        }
        let ours = t.elapsed().as_secs_f64() / pairs as f64;
        let t = Instant::now();
        let mut check_base = 0.0;
        for l in &langs[..base_pairs] {
            check_base += align_loop(&pivot, l).1;
        }
        let base = t.elapsed().as_secs_f64() / base_pairs as f64;
        let ours_first: f64 = langs[..base_pairs].iter().map(|l| align(&pivot, l, 4).mexa).sum();
        if (ours_first - check_base).abs() > 1e-12 {
            bail!("align and the loop baseline disagree ({ours_first} vs {check_base})");
        }
        std::hint::black_box(check);
        println!(
            "align: n = {n:<5} d = {d}                   mexa {:>9.1} pairs/s   loop {:>9.1} pairs/s   speed-up {:>6.1}×  (five scores and CKA vs μ alone)",
            1.0 / ours,
            1.0 / base,
            base / ours
        );
        match published_scorer(n, d, py_pairs) {
            Ok(s) => println!(
                "align: n = {n:<5} d = {d}   published scorer (Python, SciPy) {:>9.4} pairs/s   mexa/published = {:.0}×  (goal ≥ 1000×)",
                1.0 / s,
                s / ours
            ),
            Err(e) => println!("align: n = {n:<5} published scorer not measured ({e})"),
        }
    }
    Ok(())
}

/// `--sentences` (a file, one per line), else the first `per_language` bundled UDHR
/// sentences of five languages.
fn bench_sentences(a: &BenchArgs, per_language: usize) -> Result<Vec<String>> {
    if let Some(p) = &a.sentences {
        let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        return Ok(text.lines().filter(|l| !l.trim().is_empty()).map(str::to_string).collect());
    }
    let assets = mexa_pipeline::plan::assets_dir();
    let mut v = Vec::new();
    for lang in ["eng", "fra", "rus", "cmn_hans", "hin"] {
        let p = assets.join(format!("corpora/udhr/{lang}.txt"));
        let text =
            std::fs::read_to_string(&p).with_context(|| format!("{}: run scripts/fetch-assets.py", p.display()))?;
        v.extend(text.lines().take(per_language).map(str::to_string));
    }
    Ok(v)
}

fn weights_model(a: &BenchArgs) -> PathBuf {
    a.model.clone().unwrap_or_else(|| {
        mexa_pipeline::plan::assets_dir()
            .join("models/qwen2.5-coder-1.5b-instruct/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf")
    })
}

/// One side of `weights`, in its own process: load, embed, report tokens/s and the process's
/// peak resident memory (getrusage's maxrss: the high-water mark of the whole process).
fn bench_weights_child(a: &BenchArgs, mode: &str) -> Result<i32> {
    let model = weights_model(a);
    let sentences = bench_sentences(a, 4)?;
    let layered = mode == "layer-major";
    let opts =
        mexa_model::LoadOptions { stored_weights: mode != "dense", release_pages: layered, ..Default::default() };
    let t = Instant::now();
    let m = mexa_model::Model::load(&model, &opts)?;
    let load_s = t.elapsed().as_secs_f64();
    let tokens: usize = sentences.iter().map(|s| m.tokenizer.encode(s).map(|t| t.len())).sum::<Result<usize>>()?;
    let pool = [mexa_model::Pooling::Weighted, mexa_model::Pooling::Last];
    let t = Instant::now();
    // Layer-major under 1 GB: the stored weights alone exceed it, so chunks get the floor
    // the embed stage gives them (256 MB of kept activations).
    let chunk = if layered { mexa_model::embed::chunk_tokens(256 << 20, m.net.hidden_size(), opts.kind) } else { 0 };
    let batch = mexa_model::BatchOptions { max_tokens: a.batch_tokens, chunk_tokens: chunk, ..Default::default() };
    mexa_model::embed(&m, &sentences, &pool, batch, |_| {})?;
    let secs = t.elapsed().as_secs_f64();
    // SAFETY: getrusage writes into the struct we own.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let v = serde_json::json!({"tokens": tokens, "tokens_per_s": tokens as f64 / secs, "load_s": load_s,
                               "peak_rss_bytes": u.ru_maxrss as u64 * 1024, "architecture": m.architecture});
    println!("{v}");
    Ok(0)
}

fn bench_weights(a: &BenchArgs) -> Result<()> {
    let model = weights_model(a);
    let file = std::fs::metadata(&model)
        .with_context(|| format!("{}: run scripts/fetch-assets.py qwen", model.display()))?
        .len();
    let run = |mode: &str| -> Result<serde_json::Value> {
        let mut cmd = std::process::Command::new(std::env::current_exe()?);
        cmd.arg("bench").arg("weights").arg("--model").arg(&model).env("MEXA_BENCH_WEIGHTS_CHILD", mode);
        cmd.arg("--batch-tokens").arg(a.batch_tokens.to_string());
        if let Some(s) = &a.sentences {
            cmd.arg("--sentences").arg(s);
        }
        if let Some(t) = a.threads {
            cmd.arg("--threads").arg(t.to_string());
        }
        let o = cmd.output()?;
        if !o.status.success() {
            bail!("bench weights ({mode}): {}", String::from_utf8_lossy(&o.stderr).trim());
        }
        Ok(serde_json::from_slice(&o.stdout)?)
    };
    let (dense, stored, layered) = (run("dense")?, run("stored")?, run("layer-major")?);
    let gb = |v: &serde_json::Value| v["peak_rss_bytes"].as_f64().unwrap_or(f64::NAN) / 1e9;
    let tps = |v: &serde_json::Value| v["tokens_per_s"].as_f64().unwrap_or(f64::NAN);
    println!(
        "weights: {} ({}), {:.2} GB file, {} tokens, batches of at most {} tokens",
        model.display(),
        dense["architecture"].as_str().unwrap_or("?"),
        file as f64 / 1e9,
        dense["tokens"],
        a.batch_tokens
    );
    for (name, v) in [
        ("dense (dequantised at load)", &dense),
        ("stored (dequantised per use)", &stored),
        ("layer-major, 1 GB budget", &layered),
    ] {
        println!(
            "  {name:<30} {:>7.1} tokens/s   peak RSS {:>5.2} GB   load {:>5.1} s",
            tps(v),
            gb(v),
            v["load_s"].as_f64().unwrap_or(f64::NAN)
        );
    }
    let limit = file as f64 / 1e9 + 1.0;
    println!(
        "  stored/dense: {:.2}× tokens/s (goal ≥ 0.90), peak {:.2} GB vs file + 1 GB = {limit:.2} GB ({})",
        tps(&stored) / tps(&dense),
        gb(&stored),
        if gb(&stored) <= limit { "met" } else { "not met" }
    );
    println!(
        "  layer-major under 1 GB / dense: {:.2}× tokens/s, peak {:.2} GB vs {:.2} GB resident",
        tps(&layered) / tps(&dense),
        gb(&layered),
        gb(&dense)
    );
    Ok(())
}

// Long: one benchmark's set-up, timed runs and report lines, kept together so what is measured is visible in one place.
fn bench_embed(a: &BenchArgs, threads: usize) -> Result<()> {
    let assets = mexa_pipeline::plan::assets_dir();
    let model =
        a.model.clone().unwrap_or_else(|| assets.join("models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf"));
    let sentences = bench_sentences(a, 20)?;
    let kind = mexa_model::parse_dtype(&a.dtype)?;
    let device = mexa_model::parse_device(&a.device)?;
    let m = mexa_model::Model::load(&model, &mexa_model::LoadOptions { kind, device, ..Default::default() })?;
    let tokens: usize = sentences.iter().map(|s| m.tokenizer.encode(s).map(|t| t.len())).sum::<Result<usize>>()?;
    let pool = [mexa_model::Pooling::Weighted, mexa_model::Pooling::Last];
    // Warm-up: a few sentences on the CPU; on a GPU a whole pass, which also picks kernels for
    // every batch shape (bench_hf.py times its second pass there too).
    let warm = if device.is_cuda() { sentences.len() } else { 4.min(sentences.len()) };
    mexa_model::embed(&m, &sentences[..warm], &pool, Default::default(), |_| {})?;
    let t = Instant::now();
    mexa_model::embed(&m, &sentences, &pool, Default::default(), |_| {})?;
    let ours = t.elapsed().as_secs_f64();
    let mexa_tps = tokens as f64 / ours;
    println!(
        "embed: {} ({}), {} sentences, {tokens} tokens, {threads} threads, {} on {}",
        model.display(),
        m.architecture,
        sentences.len(),
        a.dtype,
        a.device
    );
    println!("  mexa batched                          {:>9.1} tokens/s", mexa_tps);
    if !device.is_cuda() {
        // The share of this machine's f32 product speed, measured now on the same threads:
        // 2 FLOPs per weight that multiplies each token (attention's own products, which grow
        // with the sentence, and the LM head, never run, are not counted).
        let peak = mexa_model::device::f32_matmul_flops();
        let per_token = 2.0 * mexa_model::model::per_token_weights(&model)? as f64;
        let ours = mexa_tps * per_token;
        println!(
            "  f32 product peak (libtorch matmul 512×1024×1024) {:>6.1} GFLOP/s; mexa {:.1} GFLOP/s in the weights' products = {:.0}% of it (goal ≥ 70%)",
            peak / 1e9,
            ours / 1e9,
            100.0 * ours / peak
        );
    }
    let py = std::env::var("MEXA_BENCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/bench_hf.py");
    let tmp = tempfile::NamedTempFile::new()?;
    std::fs::write(tmp.path(), sentences.join("\n"))?;
    if model.extension().is_some_and(|e| e == "gguf") {
        bench_llamacpp(&model, tmp.path(), threads, mexa_tps, tokens);
    }
    let out = std::process::Command::new(&py)
        .arg(&script)
        .arg(&model)
        .arg(tmp.path())
        .arg(threads.to_string())
        .arg(&a.dtype)
        .arg(&a.device)
        .output();
    match out {
        Ok(o) if o.status.success() => {
            let v: serde_json::Value = serde_json::from_slice(&o.stdout).context("bench_hf.py output")?;
            let (hb, h1) = (
                v["batched_tokens_per_s"].as_f64().unwrap_or(f64::NAN),
                v["one_by_one_tokens_per_s"].as_f64().unwrap_or(f64::NAN),
            );
            println!(
                "  transformers batched                  {hb:>9.1} tokens/s   mexa/HF = {:.2}×  (goal ≥ 1.5×)",
                mexa_tps / hb
            );
            println!(
                "  transformers one at a time (MEXA ref) {h1:>9.1} tokens/s   mexa/ref = {:.2}×  (goal ≥ 10×)",
                mexa_tps / h1
            );
            if v["tokens"].as_u64() != Some(tokens as u64) {
                println!("  note: transformers counted {} tokens", v["tokens"]);
            }
        }
        Ok(o) => println!(
            "  transformers: not measured ({py} {}: {})",
            script.display(),
            String::from_utf8_lossy(&o.stderr).lines().last().unwrap_or("failed")
        ),
        Err(e) => println!(
            "  transformers: not measured ({py}: {e}); set MEXA_BENCH_PYTHON to a Python with torch and transformers"
        ),
    }
    Ok(())
}

/// llama.cpp on the same sentences and threads, every layer's hidden state captured (like for
/// like with mexa's all-layer embedding), when `MEXA_BENCH_LLAMACPP` names the `bench.sh` of
/// ../shared/tools/llamacpp-bench: one decode per sentence and several sentences per decode
/// (`--mode packed`), the faster of the two as the baseline.
fn bench_llamacpp(model: &Path, sentences: &Path, threads: usize, mexa_tps: f64, tokens: usize) {
    let Ok(bench) = std::env::var("MEXA_BENCH_LLAMACPP") else {
        println!("  llama.cpp: not measured (set MEXA_BENCH_LLAMACPP to llamacpp-bench's bench.sh)");
        return;
    };
    let run = |extra: &[&str]| -> Result<(f64, u64)> {
        let o = std::process::Command::new(&bench)
            .arg(model)
            .arg(sentences)
            .arg(threads.to_string())
            .args(["--hidden", "layers", "--fa", "off"])
            .args(extra)
            .output()?;
        let out = String::from_utf8_lossy(&o.stdout);
        let field =
            |k: &str| out.split_whitespace().find_map(|w| w.strip_prefix(k)).and_then(|v| v.parse::<f64>().ok());
        match (o.status.success(), field("tokens_per_s="), field("tokens=")) {
            (true, Some(tps), Some(t)) => Ok((tps, t as u64)),
            _ => bail!("{}", String::from_utf8_lossy(&o.stderr).lines().last().unwrap_or("failed")),
        }
    };
    for (name, extra) in [("one decode per sentence", &[][..]), ("packed", &["--mode", "packed"][..])] {
        match run(extra) {
            Ok((tps, t)) => {
                println!(
                    "  llama.cpp, every layer, {name:<24} {tps:>9.1} tokens/s   mexa/llama.cpp = {:.2}×  (goal ≥ 1.0×){}",
                    mexa_tps / tps,
                    if t as usize != tokens { format!("  (llama.cpp counted {t} tokens)") } else { String::new() }
                );
            }
            Err(e) => println!("  llama.cpp {name}: not measured ({bench}: {e})"),
        }
    }
}

pub fn bench(a: BenchArgs) -> Result<i32> {
    if let Ok(mode) = std::env::var("MEXA_BENCH_WEIGHTS_CHILD") {
        return bench_weights_child(&a, &mode);
    }
    let all = ["plan", "cached", "align", "pairs", "embed", "weights"];
    let which: Vec<String> =
        if a.which.is_empty() { all.iter().map(|s| s.to_string()).collect() } else { a.which.clone() };
    let threads = a.threads.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    tch::set_num_threads(threads as i32);
    for w in &which {
        match w.as_str() {
            "plan" => bench_plan()?,
            "cached" => bench_cached()?,
            "align" => bench_align()?,
            "pairs" => bench_pairs()?,
            "embed" => bench_embed(&a, threads)?,
            "weights" => bench_weights(&a)?,
            other => bail!("unknown benchmark `{other}` (known: {})", all.join(", ")),
        }
    }
    Ok(0)
}
