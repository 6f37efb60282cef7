//! GPU check: embeddings on CUDA against the CPU's, and throughput, for one model.
//!
//! usage: `gpu_check MODEL SENTENCES [DTYPE...]` (dtypes default to `f32 bf16`)
//!
//! Loads MODEL (a Hugging Face folder or a GGUF file) on the CPU in f32 and on `cuda` in each
//! DTYPE; embeds SENTENCES (a text file, one sentence per line) with both MEXA poolings;
//! prints tokens/s for each device, dtype and batch size, mexa's one-sentence-at-a-time
//! speed on the GPU (each timed on a second, warm pass), and the largest relative L2 difference of any pooled embedding (every
//! layer, every sentence) from the CPU's. `tools/gpu_check.sh` runs it on a GPU machine next
//! to transformers' numbers (docs/gpu.md).
use anyhow::{bail, Result};
use common::max_rel_diff;
use mexa_model::{embed, parse_device, parse_dtype, runtime_info, BatchOptions, LoadOptions, Model, Pooled, Pooling};
use std::path::Path;

mod common;
use std::time::Instant;

fn main() -> Result<()> {
    mexa_model::tune_allocator();
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        bail!("usage: gpu_check MODEL SENTENCES [DTYPE...]");
    }
    let (model, path) = (Path::new(&args[1]), Path::new(&args[2]));
    let dtypes: Vec<&str> =
        if args.len() > 3 { args[3..].iter().map(String::as_str).collect() } else { vec!["f32", "bf16"] };
    println!("{}", runtime_info());
    println!("device `auto` resolves to {:?}", parse_device("auto")?);
    let sentences = common::sentences(path)?;
    let pool = [Pooling::Weighted, Pooling::Last];
    let cpu = Model::load(model, &LoadOptions::default())?;
    let t = Instant::now();
    let reference = embed(&cpu, &sentences, &pool, BatchOptions::default(), |_| {})?;
    let secs = t.elapsed().as_secs_f64();
    let tokens: usize = reference[0].tokens.iter().sum();
    println!(
        "{} sentences, {tokens} tokens, {} hidden states of width {}",
        sentences.len(),
        reference[0].layers,
        reference[0].dim
    );
    println!("cpu  f32   batched (4096 tokens)      {:>10.0} tokens/s", tokens as f64 / secs);
    for dtype in dtypes {
        let opts = LoadOptions { kind: parse_dtype(dtype)?, device: parse_device("cuda")?, ..Default::default() };
        let m = Model::load(model, &opts)?;
        // Each setting runs twice and the second pass is timed: the first also picks kernels
        // for every new shape.
        let timed = |batch: BatchOptions| -> Result<(Vec<Pooled>, f64)> {
            embed(&m, &sentences, &pool, batch, |_| {})?;
            let t = Instant::now();
            let got = embed(&m, &sentences, &pool, batch, |_| {})?;
            Ok((got, t.elapsed().as_secs_f64()))
        };
        for max_tokens in [4096, 16384, 65536] {
            let (got, secs) = timed(BatchOptions { max_tokens, max_sentences: 4096, chunk_tokens: 0 })?;
            println!(
                "cuda {dtype:<5} batched ({max_tokens:>5} tokens)      {:>10.0} tokens/s   max relative difference from the CPU's f32: {:.2e}",
                tokens as f64 / secs,
                max_rel_diff(&got, &reference)
            );
        }
        let (got, secs) = timed(BatchOptions { max_tokens: 1, max_sentences: 1, chunk_tokens: 0 })?;
        println!("cuda {dtype:<5} one sentence at a time     {:>10.0} tokens/s   max relative difference from the CPU's f32: {:.2e}", tokens as f64 / secs, max_rel_diff(&got, &reference));
    }
    Ok(())
}
