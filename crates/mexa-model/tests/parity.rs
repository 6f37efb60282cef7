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
    let dir = fixtures().join(name);
    let (net, _) = load_network(&dir, &LoadOptions::default()).unwrap_or_else(|e| panic!("{name}: {e:#}"));
    let expected: std::collections::HashMap<String, Tensor> = Tensor::read_safetensors(dir.join("expected.safetensors")).unwrap().into_iter().collect();
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
