//! GPU check of issue 16, item 3: a Llama-3-8B-shaped model (random weights) on a GPU.
//!
//! usage: `gpu_large MODEL SENTENCES [CPU_SENTENCES]`
//!
//! 1. The first CPU_SENTENCES (default 16) sentences on the CPU in f32: the reference.
//! 2. bf16 on `cuda:0`, resident: every sentence, batches of 16,384 tokens, tokens/s of a
//!    second (warm) pass, and the largest relative L2 difference of any pooled embedding of the
//!    reference sentences from the CPU's.
//! 3. bf16 split over `cpu,cuda:0` (the first half of the layers on the CPU, the rest on the
//!    GPU: real transfers between devices) on the reference sentences: difference from the
//!    CPU's and from the GPU's.
//! 4. bf16 on `cuda:0` from stored weights (the safetensors memory-mapped, each layer
//!    converted and moved to the GPU once per chunk, pages handed back: the path of a model
//!    larger than the GPU), every sentence in one chunk: tokens/s and difference from 2.
//!
//! Prints one line per measurement; `tools/gpu_large.sh` runs it beside transformers.
use anyhow::{bail, Context, Result};
use common::max_rel_diff;
use mexa_model::{embed, parse_device, runtime_info, BatchOptions, LoadOptions, Model, Pooled, Pooling};
use std::path::Path;

mod common;
use std::time::Instant;
use tch::{Device, Kind};

fn main() -> Result<()> {
    mexa_model::tune_allocator();
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        bail!("usage: gpu_large MODEL SENTENCES [CPU_SENTENCES]");
    }
    let (model, path) = (Path::new(&args[1]), Path::new(&args[2]));
    let k: usize = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(16);
    println!("{}", runtime_info());
    let sentences: Vec<String> = std::fs::read_to_string(path)
        .with_context(|| path.display().to_string())?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    let few = &sentences[..k.min(sentences.len())];
    let pool = [Pooling::Weighted, Pooling::Last];
    let t = Instant::now();
    let reference = {
        let cpu = Model::load(model, &LoadOptions::default())?;
        println!("cpu f32 load {:.1}s", t.elapsed().as_secs_f64());
        embed(&cpu, few, &pool, BatchOptions::default(), |_| {})?
    };
    println!(
        "cpu f32 reference: {} sentences, {} hidden states, {:.1}s",
        few.len(),
        reference[0].layers,
        t.elapsed().as_secs_f64()
    );
    let gpu = parse_device("cuda")?;
    let batch = BatchOptions { max_tokens: 16384, max_sentences: 512, chunk_tokens: 0 };
    let timed = |m: &Model, batch: BatchOptions| -> Result<(Vec<Pooled>, f64, usize)> {
        embed(m, &sentences, &pool, batch, |_| {})?;
        let t = Instant::now();
        let got = embed(m, &sentences, &pool, batch, |_| {})?;
        let tokens = got[0].tokens.iter().sum();
        Ok((got, t.elapsed().as_secs_f64(), tokens))
    };
    let t = Instant::now();
    let resident = Model::load(model, &LoadOptions { kind: Kind::BFloat16, device: gpu, ..Default::default() })?;
    println!("cuda bf16 resident load {:.1}s", t.elapsed().as_secs_f64());
    let (dense, secs, tokens) = timed(&resident, batch)?;
    println!(
        "cuda bf16 resident: {} sentences, {tokens} tokens, {:.0} tokens/s; max relative difference from the CPU's f32: {:.2e}",
        sentences.len(),
        tokens as f64 / secs,
        max_rel_diff(&dense, &reference)
    );
    drop(resident);
    let split = LoadOptions {
        kind: Kind::BFloat16,
        device: Device::Cpu,
        devices: vec![Device::Cpu, gpu],
        ..Default::default()
    };
    let t = Instant::now();
    let m = Model::load(model, &split)?;
    let got = embed(&m, few, &pool, BatchOptions::default(), |_| {})?;
    println!(
        "bf16 split cpu,cuda:0 ({} sentences, {:.1}s with the load): max relative difference from the CPU's f32 {:.2e}, from cuda bf16 {:.2e}",
        few.len(),
        t.elapsed().as_secs_f64(),
        max_rel_diff(&got, &reference),
        max_rel_diff(&got, &dense)
    );
    drop(m);
    let stored = LoadOptions {
        kind: Kind::BFloat16,
        device: gpu,
        stored_weights: true,
        release_pages: true,
        ..Default::default()
    };
    let t = Instant::now();
    let m = Model::load(model, &stored)?;
    println!("cuda bf16 stored load {:.1}s", t.elapsed().as_secs_f64());
    let (got, secs, tokens) = timed(&m, BatchOptions { chunk_tokens: usize::MAX / 2, ..batch })?;
    println!(
        "cuda bf16 stored, layer-major (one chunk): {:.0} tokens/s; max relative difference from resident: {:.2e}",
        tokens as f64 / secs,
        max_rel_diff(&got, &dense)
    );
    // SAFETY: getrusage writes into the struct we own.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    println!("peak host RSS {:.1} GB", u.ru_maxrss as f64 * 1024.0 / 1e9);
    Ok(())
}
