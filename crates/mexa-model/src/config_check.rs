//! Sanity checks of a model's configuration before any weight is loaded: values whose type is
//! right but which make a forward pass produce NaN or fail deep inside libtorch (a negative
//! normalisation epsilon, attention heads that do not divide the width). One place for every
//! family, from config.json or a GGUF header; errors name the file, the key and what is
//! expected.
use crate::gguf::Gguf;
use anyhow::{bail, Result};
use serde_json::Value;
use std::path::Path;

/// config.json keys holding a normalisation epsilon (each family names it its own way).
const EPS_KEYS: &[&str] = &["rms_norm_eps", "layer_norm_eps", "layer_norm_epsilon", "norm_eps"];
/// config.json keys of the width, the attention heads and the key/value heads.
const WIDTH_KEYS: &[&str] = &["hidden_size", "n_embd", "d_model"];
const HEAD_KEYS: &[&str] = &["num_attention_heads", "n_head", "attention_heads"];
const KV_KEYS: &[&str] = &["num_key_value_heads", "num_kv_heads"];
const COUNT_KEYS: &[&str] = &["num_hidden_layers", "n_layer", "num_layers", "vocab_size"];

fn first<'a>(cfg: &'a Value, keys: &[&'static str]) -> Option<(&'static str, &'a Value)> {
    keys.iter().find_map(|&k| cfg.get(k).filter(|v| !v.is_null()).map(|v| (k, v)))
}

/// Checks a Hugging Face config.json's numbers.
pub fn check_hf(cfg: &Value, path: &Path) -> Result<()> {
    let at = path.display();
    for &k in EPS_KEYS {
        if let Some(v) = cfg.get(k).filter(|v| !v.is_null()) {
            match v.as_f64() {
                Some(e) if e > 0.0 && e.is_finite() => {}
                _ => bail!("{at}: `{k}` is {v}; a normalisation epsilon must be a positive number (a zero or negative one makes the hidden states NaN)"),
            }
        }
    }
    for &k in COUNT_KEYS {
        if let Some(v) = cfg.get(k).filter(|v| !v.is_null()) {
            if v.as_u64().is_none_or(|n| n == 0) {
                bail!("{at}: `{k}` is {v}; expected a positive whole number");
            }
        }
    }
    let count = |keys| -> Result<Option<(&'static str, u64)>> {
        match first(cfg, keys) {
            None => Ok(None),
            Some((k, v)) => match v.as_u64() {
                Some(n) if n > 0 => Ok(Some((k, n))),
                _ => bail!("{at}: `{k}` is {v}; expected a positive whole number"),
            },
        }
    };
    let (width, heads, kv) = (count(WIDTH_KEYS)?, count(HEAD_KEYS)?, count(KV_KEYS)?);
    check_heads(&at.to_string(), width, heads, kv, cfg.get("head_dim").is_some_and(|v| !v.is_null()))
}

/// Checks a GGUF header's numbers (`<arch>.attention.*`, `<arch>.embedding_length`).
pub fn check_gguf(g: &Gguf) -> Result<()> {
    let at = g.path.display().to_string();
    let arch = g.architecture()?.to_string();
    for k in ["attention.layer_norm_rms_epsilon", "attention.layer_norm_epsilon"] {
        if let Some(e) = g.get(&format!("{arch}.{k}")) {
            match e.as_f64() {
                Some(e) if e > 0.0 && e.is_finite() => {}
                _ => bail!("{at}: `{arch}.{k}` is {e:?}; a normalisation epsilon must be a positive number (a zero or negative one makes the hidden states NaN)"),
            }
        }
    }
    let u = |k: &str| g.get(&format!("{arch}.{k}")).and_then(|v| v.as_u64());
    let named = |k: &'static str| u(k).map(|n| (k, n));
    let width = named("embedding_length");
    let heads = named("attention.head_count");
    let kv = named("attention.head_count_kv");
    check_heads(&at, width, heads, kv, u("attention.key_length").is_some())
}

/// Heads must divide the width (unless the head size is given separately) and key/value heads
/// must divide the heads; zero of either is refused.
fn check_heads(
    at: &str,
    width: Option<(&str, u64)>,
    heads: Option<(&str, u64)>,
    kv: Option<(&str, u64)>,
    head_dim_given: bool,
) -> Result<()> {
    for (k, n) in [width, heads, kv].into_iter().flatten() {
        if n == 0 {
            bail!("{at}: `{k}` is 0; expected a positive whole number");
        }
    }
    if let (Some((wk, w)), Some((hk, h))) = (width, heads) {
        if !head_dim_given && w % h != 0 {
            bail!("{at}: `{hk}` = {h} does not divide `{wk}` = {w}; attention splits the width into equal heads");
        }
    }
    if let (Some((hk, h)), Some((kk, k))) = (heads, kv) {
        if h % k != 0 {
            bail!("{at}: `{kk}` = {k} does not divide `{hk}` = {h}; each key/value head serves a whole group of query heads");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn configs_that_would_give_nan_or_crash_are_refused_with_the_key() {
        let p = Path::new("m/config.json");
        let good = json!({"model_type": "llama", "hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-5, "num_hidden_layers": 2, "vocab_size": 10});
        check_hf(&good, p).unwrap();
        for (key, v, want) in [
            ("rms_norm_eps", json!(-1.0), "positive number"),
            ("layer_norm_eps", json!(0.0), "positive number"),
            ("num_attention_heads", json!(7), "does not divide `hidden_size`"),
            ("num_key_value_heads", json!(3), "does not divide `num_attention_heads`"),
            ("num_attention_heads", json!(0), "positive whole number"),
            ("num_hidden_layers", json!(0), "positive whole number"),
        ] {
            let mut c = good.clone();
            c[key] = v;
            let e = check_hf(&c, p).unwrap_err().to_string();
            assert!(e.contains(key) && e.contains(want) && e.contains("m/config.json"), "{key}: {e}");
        }
        // Gemma gives the head size separately: heads × head_dim need not be the width.
        let mut gemma = good.clone();
        gemma["num_attention_heads"] = json!(3);
        gemma["num_key_value_heads"] = json!(1);
        gemma["head_dim"] = json!(256);
        check_hf(&gemma, p).unwrap();
    }
}
