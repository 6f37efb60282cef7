//! GPU check of issue 16, item 3: a Llama-3-8B-shaped model (random weights) on a GPU.
//!
//! usage: `gpu_large MODEL SENTENCES [CPU_SENTENCES]`
//!
//! 1. The first CPU_SENTENCES (default 16) sentences on the CPU in f32: the reference.
//! 2. bf16 on `cuda:0`, resident: every sentence, batches of 16,384 tokens, tokens/s of a
//!    second (warm) pass, and the largest relative L2 difference of any pooled embedding of the
//!    reference sentences from the CPU's.
//! 3. f32 split over `cpu,cuda:0` (the first half of the layers on the CPU, the rest on the
//!    GPU: real transfers between devices) on the reference sentences: difference from the
//!    CPU's f32.
//! 4. bf16 on `cuda:0` from stored weights (the safetensors memory-mapped, each layer
//!    converted and moved to the GPU once per chunk, pages handed back: the path of a model
//!    larger than the GPU), every sentence in one chunk: tokens/s and difference from 2.
//!
//! Prints one line per measurement; `tools/gpu_large.sh` runs it beside transformers.
use anyhow::{bail, Result};
use common::{max_rel_diff, rel_diff_by_state};
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
    let sentences = common::sentences(path)?;
    let few = &sentences[..k.min(sentences.len())];
    if std::env::var_os("GPU_LARGE_SPEED_ONLY").is_some() {
        return speed_only(model, &sentences);
    }
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
    // transformers' batching: 64 length-sorted sentences per batch, whatever their tokens.
    let (_, secs, tokens) = timed(&resident, BatchOptions { max_tokens: 1 << 24, max_sentences: 64, chunk_tokens: 0 })?;
    println!("cuda bf16 resident, batches of 64 sentences: {:.0} tokens/s", tokens as f64 / secs);
    drop(resident);
    // f32 on the GPU alone, then split: how far each is from the CPU, state by state. The
    // split's first half of the states is made on the CPU (same kernels as the reference).
    let gpu_f32 = {
        let m = Model::load(model, &LoadOptions { device: gpu, ..Default::default() })?;
        embed(&m, few, &pool, BatchOptions::default(), |_| {})?
    };
    let split = LoadOptions { device: Device::Cpu, devices: vec![Device::Cpu, gpu], ..Default::default() };
    let t = Instant::now();
    let m = Model::load(model, &split)?;
    let got = embed(&m, few, &pool, BatchOptions::default(), |_| {})?;
    let half = (reference[0].layers - 1) / 2;
    let (by_split, by_gpu) = (rel_diff_by_state(&got, &reference), rel_diff_by_state(&gpu_f32, &reference));
    let max = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    println!(
        "f32 split cpu,cuda:0 ({} sentences, {:.1}s with the load): relative difference from the CPU's f32: states 0..={half} (made on the CPU) {:.2e}, states after (GPU) {:.2e}; cuda f32 alone: {:.2e}; split vs cuda f32 alone {:.2e}",
        few.len(),
        t.elapsed().as_secs_f64(),
        max(&by_split[..=half]),
        max(&by_split[half + 1..]),
        max(&by_gpu),
        max_rel_diff(&got, &gpu_f32)
    );
    println!("  per state, split vs CPU: {:?}", by_split.iter().map(|d| format!("{d:.1e}")).collect::<Vec<_>>());
    println!("  per state, cuda f32 vs CPU: {:?}", by_gpu.iter().map(|d| format!("{d:.1e}")).collect::<Vec<_>>());
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

/// Where the GPU time goes: the bf16 network alone (no pooling, no copies to the host) over
/// batches of 64 length-sorted sentences, against `embed` on the same batches.
fn speed_only(model: &Path, sentences: &[String]) -> Result<()> {
    let gpu = parse_device("cuda")?;
    let m = Model::load(model, &LoadOptions { kind: Kind::BFloat16, device: gpu, ..Default::default() })?;
    let ids: Vec<Vec<i64>> = sentences.iter().map(|s| m.tokenizer.encode(s)).collect::<Result<_>>()?;
    let tokens: usize = ids.iter().map(Vec::len).sum();
    let mut order: Vec<usize> = (0..ids.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(ids[i].len()));
    let batches: Vec<(tch::Tensor, tch::Tensor)> = order
        .chunks(64)
        .map(|c| {
            let t = ids[c[0]].len();
            let mut flat = vec![0i64; c.len() * t];
            let mut mask = vec![0i64; c.len() * t];
            for (r, &i) in c.iter().enumerate() {
                flat[r * t..r * t + ids[i].len()].copy_from_slice(&ids[i]);
                mask[r * t..r * t + ids[i].len()].iter_mut().for_each(|v| *v = 1);
            }
            let shape = [c.len() as i64, t as i64];
            (
                tch::Tensor::from_slice(&flat).view(shape).to_device(gpu),
                tch::Tensor::from_slice(&mask).view(shape).to_device(gpu),
            )
        })
        .collect();
    let _g = tch::no_grad_guard();
    for pass in 0..2 {
        tch::Cuda::synchronize(0);
        let t = Instant::now();
        for (i, mk) in &batches {
            m.net.forward_each(i, mk, &mut |_, _| {})?;
        }
        tch::Cuda::synchronize(0);
        if pass == 1 {
            println!("network alone, bf16, batches of 64: {:.0} tokens/s", tokens as f64 / t.elapsed().as_secs_f64());
        }
    }
    let batch = BatchOptions { max_tokens: 1 << 24, max_sentences: 64, chunk_tokens: 0 };
    let pool = [Pooling::Weighted, Pooling::Last];
    embed(&m, sentences, &pool, batch, |_| {})?;
    let t = Instant::now();
    embed(&m, sentences, &pool, batch, |_| {})?;
    println!("embed, bf16, batches of 64: {:.0} tokens/s", tokens as f64 / t.elapsed().as_secs_f64());
    Ok(())
}
