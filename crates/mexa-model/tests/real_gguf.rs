//! The bundled real models against Hugging Face transformers (tools/make_gguf_reference.py):
//! SmolLM2-135M (GGUF Q4_1) and Qwen2.5-Coder-0.5B/1.5B-Instruct (Q4_K_M), tokenizers rebuilt
//! from the GGUF, and Gemma 3 270M (GGUF Q4_K_M with its tokenizer.json). Token ids must be identical; pooled hidden states of every layer,
//! computed here in one right-padded batch, must match transformers' one-sentence-at-a-time
//! states. Needs the assets from scripts/fetch-assets.py (the test scripts fetch them).
use mexa_model::{embed, BatchOptions, LoadOptions, Model, Pooling};
use std::path::PathBuf;
use tch::Tensor;

fn assets() -> PathBuf {
    std::env::var_os("MEXA_ASSETS")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("MEXA_CACHE").map(|c| PathBuf::from(c).join("assets")))
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/mexa/assets"))
}

fn check(name: &str, model_path: &str, tolerance: f64) {
    let path = assets().join(model_path);
    assert!(path.exists(), "{} is missing: run scripts/fetch-assets.py (scripts/test does)", path.display());
    let fx = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/gguf"));
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fx.join(format!("{name}.reference.json"))).unwrap()).unwrap();
    let reference: std::collections::HashMap<String, Tensor> =
        Tensor::read_safetensors(fx.join(format!("{name}.reference.safetensors"))).unwrap().into_iter().collect();
    let sentences: Vec<String> =
        meta["sentences"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect();
    let model = Model::load(&path, &LoadOptions::default()).unwrap();
    for (i, s) in sentences.iter().enumerate() {
        let want: Vec<i64> = meta["input_ids"][i].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
        assert_eq!(model.tokenizer.encode(s).unwrap(), want, "{name}: token ids of sentence {i}");
    }
    let pooled =
        embed(&model, &sentences, &[Pooling::Weighted, Pooling::Last], BatchOptions::default(), |_| {}).unwrap();
    assert_eq!(pooled[0].layers as i64, meta["hidden_states"].as_i64().unwrap());
    let mut worst = 0f64;
    for p in &pooled {
        for s in 0..sentences.len() {
            let want = &reference[&format!("{}_{s}", p.pooling.name())];
            for l in 0..p.layers {
                let got = Tensor::from_slice(p.vector(l, s));
                let w = want.get(l as i64);
                let rel = (&got - &w).abs().max().double_value(&[]) / w.abs().max().double_value(&[]).max(1e-6);
                worst = worst.max(rel);
                assert!(
                    rel < tolerance,
                    "{name}: {} pooling, sentence {s}, hidden state {l}: relative difference {rel:.2e}",
                    p.pooling.name()
                );
            }
        }
    }
    eprintln!("{name}: worst relative difference {worst:.2e} over {} hidden states", pooled[0].layers);
}

#[test]
fn smollm2_135m_gguf_matches_transformers() {
    check("smollm2-135m", "models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf", 1e-4);
}

#[test]
fn gemma3_270m_gguf_matches_transformers() {
    check("gemma3-270m", "models/gemma3-270m/gemma-3-270m-q4_k_m.gguf", 1e-4);
}

#[test]
fn qwen25_coder_05b_gguf_matches_transformers() {
    check("qwen2.5-coder-0.5b", "models/qwen2.5-coder-0.5b-instruct/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", 1e-4);
}

#[test]
fn qwen25_coder_15b_gguf_matches_transformers() {
    check("qwen2.5-coder-1.5b", "models/qwen2.5-coder-1.5b-instruct/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", 1e-4);
}

/// XCOPA log-likelihoods against tools/make_xcopa_reference.py (lm-evaluation-harness's
/// xcopa prompts and pair encoding, transformers' forward per continuation): the context and
/// continuation ids must be identical, and mexa's packed scores (each context run once for
/// both choices) within `tolerance` of transformers' sums.
fn check_xcopa(name: &str, model_path: &str, tolerance: f64) {
    let path = assets().join(model_path);
    assert!(path.exists(), "{} is missing: run scripts/fetch-assets.py (scripts/test does)", path.display());
    let fx = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/gguf"));
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fx.join(format!("{name}.xcopa.json"))).unwrap()).unwrap();
    let model = Model::load(&path, &LoadOptions { lm_head: true, ..Default::default() }).unwrap();
    let ids =
        |v: &serde_json::Value| -> Vec<i64> { v.as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect() };
    let items = reference["items"].as_array().unwrap();
    let mut requests = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let conts: Vec<String> =
            item["choices"].as_array().unwrap().iter().map(|c| format!(" {}", c.as_str().unwrap())).collect();
        let r = mexa_model::encode_request(&model, item["context"].as_str().unwrap(), &conts).unwrap();
        assert_eq!(r.context, ids(&item["context_ids"]), "{name}: item {i} context ids");
        for (k, c) in item["continuation_ids"].as_array().unwrap().iter().enumerate() {
            assert_eq!(r.continuations[k], ids(c), "{name}: item {i} continuation {k} ids");
        }
        requests.push(r);
    }
    let scored = mexa_model::score(&model, &requests, mexa_model::ScoreOptions::default(), |_| {}).unwrap();
    for (i, item) in items.iter().enumerate() {
        for (k, want) in item["logprob"].as_array().unwrap().iter().enumerate() {
            let (got, want) = (scored[i][k].logprob, want.as_f64().unwrap());
            assert!(
                (got - want).abs() <= tolerance * want.abs().max(1.0),
                "{name}: item {i} ({}) choice {k}: {got} vs transformers {want}",
                item["language"]
            );
        }
    }
}

#[test]
fn gemma3_270m_xcopa_loglikelihoods_match_lm_eval_conventions() {
    check_xcopa("gemma3-270m", "models/gemma3-270m/gemma-3-270m-q4_k_m.gguf", 1e-4);
}

#[test]
fn qwen25_coder_05b_xcopa_loglikelihoods_match_lm_eval_conventions() {
    check_xcopa(
        "qwen2.5-coder-0.5b",
        "models/qwen2.5-coder-0.5b-instruct/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        1e-4,
    );
}

/// Real quantised GGUFs (Q4_1, Q4_K_M) embedded with weights kept in their blocks give the
/// dense load's pooled vectors bit for bit: batch by batch, and layer-major over chunks of
/// several small batches with the file's pages handed back after each use.
#[test]
fn stored_weights_embed_bit_identically_on_real_ggufs() {
    let fx = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/gguf"));
    for (name, file) in [
        ("smollm2-135m", "models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf"),
        ("qwen2.5-coder-0.5b", "models/qwen2.5-coder-0.5b-instruct/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"),
    ] {
        let meta: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(fx.join(format!("{name}.reference.json"))).unwrap()).unwrap();
        let sentences: Vec<String> =
            meta["sentences"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect();
        let pooled = |stored_weights: bool, batch: BatchOptions| {
            let opts = LoadOptions { stored_weights, release_pages: batch.chunk_tokens > 0, ..Default::default() };
            let model = Model::load(&assets().join(file), &opts).unwrap();
            embed(&model, &sentences, &[Pooling::Weighted, Pooling::Last], batch, |_| {}).unwrap()
        };
        let small = BatchOptions { max_tokens: 48, max_sentences: 2, chunk_tokens: 0 };
        let chunked = BatchOptions { chunk_tokens: 100, ..small };
        for (how, batch) in [("stored", BatchOptions::default()), ("layer-major", chunked)] {
            let dense = pooled(false, BatchOptions { chunk_tokens: 0, ..batch });
            let stored = pooled(true, batch);
            for (a, b) in dense.iter().zip(&stored) {
                assert!(a.data == b.data, "{name}: {} pooling differs between dense and {how}", a.pooling.name());
            }
        }
    }
}

/// The logit lens at the last hidden state is the model's own next-token prediction (the
/// final norm is already applied there), for a tied head kept stored (SmolLM2) and for
/// Gemma's embedding head; the lens gives the same tokens with dense and stored weights, and
/// with pages handed back (the head then made dense a block of rows at a time per use).
#[test]
fn the_lens_at_the_last_state_is_the_models_own_prediction() {
    let sentences = ["The cat sat on the mat because it was tired.", "Der Hund schläft.", "猫は眠っている。"];
    for file in
        ["models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf", "models/gemma3-270m/gemma-3-270m-q4_k_m.gguf"]
    {
        let mut seen = Vec::new();
        for (stored_weights, release_pages) in [(false, false), (true, false), (true, true)] {
            let opts = LoadOptions { lm_head: true, stored_weights, release_pages, ..Default::default() };
            let model = Model::load(&assets().join(file), &opts).unwrap();
            let ids: Vec<Vec<i64>> = sentences.iter().map(|s| model.tokenizer.encode(s).unwrap()).collect();
            let (_, top1) =
                mexa_model::embed_ids(&model.runner(), &ids, &[Pooling::Last], BatchOptions::default(), 3, |_| {})
                    .unwrap();
            let last = model.net.num_hidden_states() - 1;
            for (i, s) in ids.iter().enumerate() {
                assert_eq!(top1[i].len(), last + 1, "{file}: one row of tokens per hidden state");
                let t = Tensor::from_slice(s).unsqueeze(0);
                let states = tch::no_grad(|| model.net.forward(&t, &t.ones_like())).unwrap();
                let own: Vec<i64> =
                    Vec::try_from(model.net.logits(&states[last].get(0)).unwrap().argmax(-1, false)).unwrap();
                let lens: Vec<i64> = top1[i][last].iter().map(|&x| x as i64).collect();
                assert_eq!(lens, own, "{file}: sentence {i}");
            }
            seen.push(top1);
        }
        assert_eq!(seen[0], seen[1], "{file}: dense and stored weights decode alike");
        assert_eq!(seen[0], seen[2], "{file}: a head streamed block by block decodes alike");
    }
}
