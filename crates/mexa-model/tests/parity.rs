//! Parity with Hugging Face transformers: tiny random checkpoints of every architecture
//! (tools/make_parity_fixtures.py) must give every hidden state within 1e-4 at every
//! non-padding position, on a right-padded batch.
use mexa_model::{load_network, LoadOptions};
use std::path::PathBuf;
use tch::{Kind, Tensor};

fn fixtures() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/parity"))
}

fn check(name: &str) {
    check_file(name, "")
}

/// The same checkpoint as llama.cpp's converter writes it (tools/make_gguf_arch_fixtures.py).
fn check_gguf(name: &str) {
    check_file(name, "model.gguf")
}

fn check_file(name: &str, file: &str) {
    let dir = fixtures().join(name);
    let (net, _) = load_network(&dir.join(file), &LoadOptions::default()).unwrap_or_else(|e| panic!("{name}: {e:#}"));
    let expected: std::collections::HashMap<String, Tensor> =
        Tensor::read_safetensors(dir.join("expected.safetensors")).unwrap().into_iter().collect();
    let ids = &expected["input_ids"];
    let mask = &expected["attention_mask"];
    let states = tch::no_grad(|| net.forward(ids, mask)).unwrap();
    let n_expected = expected.keys().filter(|k| k.starts_with("hidden_")).count();
    assert_eq!(states.len(), n_expected, "{name}: number of hidden states");
    assert_eq!(states.len(), net.num_hidden_states());
    let m = mask.to_kind(Kind::Float).unsqueeze(-1);
    for (i, got) in states.iter().enumerate() {
        let want = &expected[&format!("hidden_{i}")];
        assert_eq!(got.size(), want.size(), "{name}: hidden_{i} shape");
        let diff = ((got - want).abs() * &m).max().double_value(&[]);
        let scale = (want.abs() * &m).max().double_value(&[]);
        assert!(diff < 1e-4 * scale.max(1.0), "{name}: hidden_{i} differs by {diff} (values up to {scale})");
    }
}

#[test]
fn llama() {
    check("llama");
}
#[test]
fn llama31_rope_scaling() {
    check("llama31");
}
#[test]
fn mistral_sliding_window() {
    check("mistral");
}
#[test]
fn qwen2_qkv_bias() {
    check("qwen2");
}
#[test]
fn olmo_clip_qkv() {
    check("olmo");
}
#[test]
fn olmo2_post_norms_qk_norm() {
    check("olmo2");
}
#[test]
fn gemma1() {
    check("gemma");
}
#[test]
fn gemma2_softcap_sliding() {
    check("gemma2");
}
#[test]
fn gemma3_qk_norm_local_global() {
    check("gemma3");
}
#[test]
fn llama32_tied_embeddings_rope_scaling() {
    check("llama32");
}
#[test]
fn mistral_nemo_explicit_head_dim() {
    check("mistral_nemo");
}
#[test]
fn qwen3_qk_norm() {
    check("qwen3");
}
#[test]
fn phi3_fused_qkv_gate_up() {
    check("phi3");
}
#[test]
fn embeddinggemma_bidirectional_gemma3() {
    check("embeddinggemma");
}
#[test]
fn bloom_alibi_fused_qkv() {
    check("bloom");
}
#[test]
fn bloom_alibi_slopes_for_six_heads() {
    check("bloom_6heads");
}
#[test]
fn xglm_sinusoidal_positions() {
    check("xglm");
}
#[test]
fn cohere_parallel_block_interleaved_rope_qk_norm() {
    check("cohere");
}
#[test]
fn mistral_nemo_gguf_permuted_qk_head_dim() {
    check_gguf("mistral_nemo");
}
#[test]
fn llama32_gguf_rope_freqs_tensor() {
    check_gguf("llama32");
}
#[test]
fn qwen3_gguf() {
    check_gguf("qwen3");
}
#[test]
fn phi3_gguf_fused_qkv_and_ffn_up() {
    check_gguf("phi3");
}
#[test]
fn bloom_gguf_qkv_reordered() {
    check_gguf("bloom");
}
#[test]
fn command_r_gguf() {
    check_gguf("cohere");
}
#[test]
fn embeddinggemma_gguf_bidirectional() {
    check_gguf("embeddinggemma");
}
#[test]
fn bert() {
    check("bert");
}
#[test]
fn xlm_roberta() {
    check("xlm_roberta");
}

#[test]
fn wrong_shape_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let src = fixtures().join("llama");
    std::fs::copy(src.join("model.safetensors"), tmp.path().join("model.safetensors")).unwrap();
    let mut cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(src.join("config.json")).unwrap()).unwrap();
    cfg["intermediate_size"] = serde_json::json!(96);
    std::fs::write(tmp.path().join("config.json"), cfg.to_string()).unwrap();
    let err = load_network(tmp.path(), &LoadOptions::default()).err().expect("must fail");
    let msg = format!("{err:#}");
    assert!(msg.contains("mlp.gate_proj.weight") && msg.contains("[128, 64]") && msg.contains("[96, 64]"), "{msg}");
}

#[test]
fn unsupported_architecture_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("config.json"), r#"{"model_type": "mamba"}"#).unwrap();
    let msg = format!("{:#}", load_network(tmp.path(), &LoadOptions::default()).err().unwrap());
    assert!(msg.contains("`mamba` is not supported") && msg.contains("llama"), "{msg}");
    let msg = format!("{:#}", load_network(&tmp.path().join("nope"), &LoadOptions::default()).err().unwrap());
    assert!(msg.contains("does not exist"), "{msg}");
}

/// Sharded checkpoints (model.safetensors.index.json + shards) load to the same network.
#[test]
fn sharded_safetensors_with_index() {
    let src = fixtures().join("llama");
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(src.join("config.json"), tmp.path().join("config.json")).unwrap();
    let tensors = Tensor::read_safetensors(src.join("model.safetensors")).unwrap();
    let (a, b): (Vec<_>, Vec<_>) = tensors.into_iter().enumerate().partition(|(i, _)| i % 2 == 0);
    let strip = |v: Vec<(usize, (String, Tensor))>| v.into_iter().map(|(_, t)| t).collect::<Vec<_>>();
    let (a, b) = (strip(a), strip(b));
    let mut map = serde_json::Map::new();
    for (name, _) in &a {
        map.insert(name.clone(), "model-00001-of-00002.safetensors".into());
    }
    for (name, _) in &b {
        map.insert(name.clone(), "model-00002-of-00002.safetensors".into());
    }
    Tensor::write_safetensors(&a, tmp.path().join("model-00001-of-00002.safetensors")).unwrap();
    Tensor::write_safetensors(&b, tmp.path().join("model-00002-of-00002.safetensors")).unwrap();
    std::fs::write(
        tmp.path().join("model.safetensors.index.json"),
        serde_json::json!({"metadata": {}, "weight_map": map}).to_string(),
    )
    .unwrap();
    let expected: std::collections::HashMap<String, Tensor> =
        Tensor::read_safetensors(src.join("expected.safetensors")).unwrap().into_iter().collect();
    let (net, _) = load_network(tmp.path(), &LoadOptions::default()).unwrap();
    let states = tch::no_grad(|| net.forward(&expected["input_ids"], &expected["attention_mask"])).unwrap();
    let (one, _) = load_network(&src, &LoadOptions::default()).unwrap();
    let same = tch::no_grad(|| one.forward(&expected["input_ids"], &expected["attention_mask"])).unwrap();
    for (x, y) in states.iter().zip(&same) {
        assert!(x.equal(y), "sharded and single-file checkpoints disagree");
    }
}

/// bf16 weights and activations stay close to the f32 reference (bf16 keeps ~3 digits).
#[test]
fn bf16_is_close_to_f32() {
    let dir = fixtures().join("llama");
    let opts = LoadOptions { kind: Kind::BFloat16, ..LoadOptions::default() };
    let (net, _) = load_network(&dir, &opts).unwrap();
    let expected: std::collections::HashMap<String, Tensor> =
        Tensor::read_safetensors(dir.join("expected.safetensors")).unwrap().into_iter().collect();
    let states = tch::no_grad(|| net.forward(&expected["input_ids"], &expected["attention_mask"])).unwrap();
    let m = expected["attention_mask"].to_kind(Kind::Float).unsqueeze(-1);
    let last = states.len() - 1;
    assert_eq!(states[last].kind(), Kind::BFloat16);
    let want = &expected[&format!("hidden_{last}")];
    let rel = ((states[last].to_kind(Kind::Float) - want).abs() * &m).max().double_value(&[])
        / (want.abs() * &m).max().double_value(&[]);
    assert!(rel < 0.05, "bf16 relative difference {rel}");
}

/// Every way mexa can run a Llama- or Gemma-family decoder gives the dense path's hidden
/// states bit for bit, on every fixture of both families, from safetensors and from GGUF
/// (permuted Q/K, rotary factors, tied embeddings, fused Phi-3 projections, sliding
/// windows, soft-capping, bidirectional attention): weights kept stored (memory-mapped,
/// made dense per use), stored with their pages handed back after each use, the layers
/// split over two "devices" (the same CPU twice: the split code path without GPUs), and
/// layer-major over a chunk of batches.
#[test]
fn stored_split_and_layer_major_runs_are_bit_identical_to_dense() {
    let hf = ["llama", "llama31", "llama32", "mistral", "mistral_nemo", "qwen2", "qwen3", "phi3"];
    let gemma = ["gemma", "gemma2", "gemma3", "embeddinggemma"];
    let gguf = ["mistral_nemo", "llama32", "qwen3", "phi3", "embeddinggemma"];
    let cases = hf
        .iter()
        .chain(&gemma)
        .map(|n| (*n, fixtures().join(n)))
        .chain(gguf.iter().map(|n| (*n, fixtures().join(n).join("model.gguf"))));
    for (name, path) in cases {
        let label = format!("{name} ({})", path.file_name().unwrap().to_string_lossy());
        let expected: std::collections::HashMap<String, Tensor> =
            Tensor::read_safetensors(fixtures().join(name).join("expected.safetensors")).unwrap().into_iter().collect();
        let (ids, mask) = (&expected["input_ids"], &expected["attention_mask"]);
        let load = |o: LoadOptions| load_network(&path, &o).unwrap_or_else(|e| panic!("{label}: {e:#}")).0;
        let dense_net = load(LoadOptions::default());
        let dense = tch::no_grad(|| dense_net.forward(ids, mask)).unwrap();
        let same = |how: &str, got: &[Tensor]| {
            assert_eq!(got.len(), dense.len(), "{label} {how}: number of states");
            for (i, (a, b)) in dense.iter().zip(got).enumerate() {
                assert!(a.equal(b), "{label}: hidden_{i} differs between dense and {how}");
            }
        };
        let stored = LoadOptions { stored_weights: true, ..Default::default() };
        same("stored", &tch::no_grad(|| load(stored.clone()).forward(ids, mask)).unwrap());
        let released = LoadOptions { release_pages: true, ..stored.clone() };
        same("stored, pages released", &tch::no_grad(|| load(released).forward(ids, mask)).unwrap());
        let split = LoadOptions { devices: vec![tch::Device::Cpu, tch::Device::Cpu], ..stored.clone() };
        same("split over two devices", &tch::no_grad(|| load(split).forward(ids, mask)).unwrap());
        // Layer-major over two batches (the fixture's, and its first row alone) equals each
        // batch run by itself.
        let net = load(stored);
        let first = (ids.narrow(0, 0, 1), mask.narrow(0, 0, 1));
        let alone = tch::no_grad(|| dense_net.forward(&first.0, &first.1)).unwrap();
        let batches = [(ids.shallow_clone(), mask.shallow_clone()), first];
        let mut got: [Vec<Tensor>; 2] = [vec![], vec![]];
        tch::no_grad(|| {
            net.forward_chunk(&batches, &mut |b, i, h| {
                assert_eq!(got[b].len(), i, "{label}: states out of order");
                got[b].push(h)
            })
        })
        .unwrap();
        same("layer-major", &got[0]);
        for (i, (a, b)) in alone.iter().zip(&got[1]).enumerate() {
            assert!(a.equal(b), "{label}: hidden_{i} of the second batch differs layer-major");
        }
    }
}

/// The other families (OLMo, BLOOM, XGLM, Command-R, BERT, XLM-R) run from stored weights
/// too, batch by batch, with the dense path's hidden states bit for bit, from safetensors and
/// GGUF (BLOOM's reordered fused projection, Command-R's interleaved rotary).
#[test]
fn stored_weights_of_every_other_family_are_bit_identical_to_dense() {
    let hf = ["olmo", "olmo2", "bloom", "bloom_6heads", "xglm", "cohere", "bert", "xlm_roberta"];
    let gguf = ["bloom", "cohere"];
    let cases = hf
        .iter()
        .map(|n| (*n, fixtures().join(n)))
        .chain(gguf.iter().map(|n| (*n, fixtures().join(n).join("model.gguf"))));
    for (name, path) in cases {
        if !path.exists() {
            panic!("{name}: fixture {} missing", path.display());
        }
        let expected: std::collections::HashMap<String, Tensor> =
            Tensor::read_safetensors(fixtures().join(name).join("expected.safetensors")).unwrap().into_iter().collect();
        let (ids, mask) = (&expected["input_ids"], &expected["attention_mask"]);
        let states = |o: LoadOptions| {
            let net = load_network(&path, &o).unwrap_or_else(|e| panic!("{name}: {e:#}")).0;
            tch::no_grad(|| net.forward(ids, mask)).unwrap()
        };
        let dense = states(LoadOptions::default());
        let stored = states(LoadOptions { stored_weights: true, release_pages: true, ..Default::default() });
        assert_eq!(dense.len(), stored.len());
        for (i, (a, b)) in dense.iter().zip(&stored).enumerate() {
            assert!(a.equal(b), "{name} ({}): hidden_{i} differs between dense and stored", path.display());
        }
    }
}

/// A family the split is not written for says so instead of running on one device.
#[test]
fn splitting_a_family_without_the_split_is_a_clear_error() {
    let opts = LoadOptions { devices: vec![tch::Device::Cpu, tch::Device::Cpu], ..Default::default() };
    let err = load_network(&fixtures().join("bloom"), &opts).err().expect("refused");
    assert!(format!("{err:#}").contains("Llama and Gemma families only"), "{err:#}");
}
