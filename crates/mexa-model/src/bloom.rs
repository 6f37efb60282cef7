//! BLOOM (BigScience, multilingual): LayerNorm after the word embeddings, pre-LN blocks with
//! a fused, per-head interleaved query-key-value projection, ALiBi position biases instead
//! of positional embeddings, and a tanh-GELU MLP.
use crate::gguf::Gguf;
use crate::layers::Weight;
use crate::layers::{attention, attention_bias, decoder_hidden_states, merge_heads, LayerNorm, Linear};
use crate::model::{req, HiddenStates, LoadOptions};
use crate::weights::Weights;
use anyhow::{bail, Result};
use serde_json::Value;
use tch::{Kind, Tensor};

#[derive(Debug, Clone)]
pub struct Config {
    pub hidden_size: i64,
    pub num_layers: i64,
    pub num_heads: i64,
    pub layer_norm_eps: f64,
    /// Residuals taken after the layer norms (BLOOM's option; off in the released models).
    pub residual_post_layernorm: bool,
}

impl Config {
    pub fn from_hf(v: &Value) -> Result<Self> {
        let get = |a: &str, b: &str| v.get(a).and_then(Value::as_i64).map(Ok).unwrap_or_else(|| req(v, b));
        let hidden = get("hidden_size", "n_embed")?;
        let heads = get("n_head", "num_attention_heads")?;
        if heads <= 0 || hidden % heads != 0 {
            bail!("config.json: hidden_size {hidden} is not a multiple of n_head {heads}");
        }
        Ok(Self {
            hidden_size: hidden,
            num_layers: get("n_layer", "num_hidden_layers")?,
            num_heads: heads,
            layer_norm_eps: v["layer_norm_epsilon"].as_f64().unwrap_or(1e-5),
            residual_post_layernorm: v["apply_residual_connection_post_layernorm"].as_bool().unwrap_or(false),
        })
    }
}

impl Config {
    pub fn from_gguf(g: &Gguf) -> Result<Self> {
        let (hidden, heads) = (g.arch_u("embedding_length")?, g.arch_u("attention.head_count")?);
        if heads <= 0 || hidden % heads != 0 {
            bail!("{}: embedding_length {hidden} is not a multiple of head_count {heads}", g.path.display());
        }
        Ok(Self {
            hidden_size: hidden,
            num_layers: g.arch_u("block_count")?,
            num_heads: heads,
            layer_norm_eps: g.get("bloom.attention.layer_norm_epsilon").and_then(|v| v.as_f64()).unwrap_or(1e-5),
            residual_post_layernorm: false,
        })
    }
}

/// llama.cpp names → Hugging Face names for `bloom` GGUFs.
fn gguf_name(n: &str) -> Option<String> {
    let direct = match n {
        "token_embd.weight" => Some("word_embeddings.weight"),
        "token_embd_norm.weight" => Some("word_embeddings_layernorm.weight"),
        "token_embd_norm.bias" => Some("word_embeddings_layernorm.bias"),
        "output_norm.weight" => Some("ln_f.weight"),
        "output_norm.bias" => Some("ln_f.bias"),
        _ => None,
    };
    if let Some(d) = direct {
        return Some(d.to_string());
    }
    let (layer, tail) = n.strip_prefix("blk.")?.split_once('.')?;
    let (base, suffix) = tail.rsplit_once('.')?;
    let hf = match base {
        "attn_norm" => "input_layernorm",
        "attn_qkv" => "self_attention.query_key_value",
        "attn_output" => "self_attention.dense",
        "ffn_norm" => "post_attention_layernorm",
        "ffn_up" => "mlp.dense_h_to_4h",
        "ffn_down" => "mlp.dense_4h_to_h",
        _ => return None,
    };
    Some(format!("h.{layer}.{hf}.{suffix}"))
}

/// ALiBi slopes as BLOOM computes them (powers of 2^(-8/n), interleaved extra heads when the
/// head count is not a power of two).
pub fn alibi_slopes(heads: i64) -> Vec<f32> {
    let closest = 1i64 << (63 - (heads as u64).leading_zeros() as i64);
    let base = 2f32.powf(-(2f32.powf(-((closest as f32).log2() - 3.0))));
    let mut slopes: Vec<f32> = (1..=closest).map(|p| base.powi(p as i32)).collect();
    if closest != heads {
        let extra = 2f32.powf(-(2f32.powf(-((2 * closest) as f32).log2() + 3.0)));
        let remaining = closest.min(heads - closest);
        slopes.extend((0..remaining).map(|i| extra.powi((1 + 2 * i) as i32)));
    }
    slopes
}

struct Block {
    ln1: LayerNorm,
    qkv: Linear,
    dense: Linear,
    ln2: LayerNorm,
    up: Linear,
    down: Linear,
}

pub struct Bloom {
    cfg: Config,
    embed: Weight,
    embed_norm: LayerNorm,
    blocks: Vec<Block>,
    norm: LayerNorm,
    slopes: Vec<f32>,
}

impl Bloom {
    pub fn load(cfg: Config, w: &Weights) -> Result<Self> {
        let d = cfg.hidden_size;
        let eps = cfg.layer_norm_eps;
        let ln = |n: &str| -> Result<LayerNorm> {
            Ok(LayerNorm { w: w.shaped(&format!("{n}.weight"), &[d])?, b: w.shaped(&format!("{n}.bias"), &[d])?, eps })
        };
        let lin = |n: &str, out: i64, inp: i64| -> Result<Linear> {
            Ok(Linear {
                w: w.weight(&format!("{n}.weight"), &[out, inp])?,
                b: Some(w.shaped(&format!("{n}.bias"), &[out])?),
            })
        };
        let blocks = (0..cfg.num_layers)
            .map(|i| {
                let p = format!("h.{i}");
                Ok(Block {
                    ln1: ln(&format!("{p}.input_layernorm"))?,
                    qkv: lin(&format!("{p}.self_attention.query_key_value"), 3 * d, d)?,
                    dense: lin(&format!("{p}.self_attention.dense"), d, d)?,
                    ln2: ln(&format!("{p}.post_attention_layernorm"))?,
                    up: lin(&format!("{p}.mlp.dense_h_to_4h"), 4 * d, d)?,
                    down: lin(&format!("{p}.mlp.dense_4h_to_h"), d, 4 * d)?,
                })
            })
            .collect::<Result<_>>()?;
        let embed = w.matrix("word_embeddings.weight")?;
        if embed.size().len() != 2 || embed.size()[1] != d {
            bail!("word_embeddings.weight has shape {:?}, expected [vocab, {d}]", embed.size());
        }
        Ok(Self {
            slopes: alibi_slopes(cfg.num_heads),
            embed,
            embed_norm: ln("word_embeddings_layernorm")?,
            norm: ln("ln_f")?,
            blocks,
            cfg,
        })
    }
}

impl Bloom {
    /// Loads a `bloom` GGUF. llama.cpp's converter stores the fused projection as [q; k; v]
    /// blocks; it is put back into BLOOM's per-head [q | k | v] layout.
    pub fn from_gguf(g: &Gguf, opts: &LoadOptions) -> Result<Self> {
        let cfg = Config::from_gguf(g)?;
        let (h, d) = (cfg.num_heads, cfg.hidden_size);
        let hd = d / h;
        let fix = move |name: &str, t: Tensor| {
            if name.ends_with("query_key_value.weight") {
                t.view([3, h, hd, d]).transpose(0, 1).reshape([3 * d, d])
            } else if name.ends_with("query_key_value.bias") {
                t.view([3, h, hd]).transpose(0, 1).reshape([3 * d])
            } else {
                t
            }
        };
        let w = Weights::from_gguf(g, opts, cfg.num_layers, gguf_name, fix, |_| true)?;
        Self::load(cfg, &w)
    }
}

impl HiddenStates for Bloom {
    crate::model::hidden_dims!(num_layers, hidden_size, embed);
    fn forward(&self, ids: &Tensor, mask: &Tensor) -> Result<Vec<Tensor>> {
        let c = &self.cfg;
        let (b, t) = (ids.size()[0], ids.size()[1]);
        let (h, hd) = (c.num_heads, c.hidden_size / c.num_heads);
        let x = self.embed_norm.forward(&self.embed.embedding(ids));
        let (kind, device) = (x.kind(), x.device());
        // ALiBi on key positions counted over non-padding tokens (softmax ignores the per-row
        // constant that a relative offset would add): [B, H, 1, T].
        let pos = (mask.cumsum(-1, Kind::Int64) - 1) * mask;
        let slopes = Tensor::from_slice(&self.slopes).to_device(device);
        let alibi = (slopes.view([1, h, 1, 1]) * pos.to_kind(Kind::Float).view([b, 1, 1, t])).to_kind(kind);
        let bias = attention_bias(mask, true, None, kind) + alibi;
        let scale = 1.0 / (hd as f64).sqrt();
        Ok(decoder_hidden_states(
            x,
            &self.blocks,
            |_, blk, x| {
                let n1 = blk.ln1.forward(&x);
                // Fused projection laid out per head as [q | k | v].
                let qkv = blk.qkv.forward(&n1).view([b, t, h, 3, hd]);
                let part = |i: i64| qkv.select(3, i).transpose(1, 2);
                let a = attention(&part(0), &part(1), &part(2), &bias, scale, None);
                let residual = if c.residual_post_layernorm { &n1 } else { &x };
                let x1 = blk.dense.forward(&merge_heads(&a)) + residual;
                let n2 = blk.ln2.forward(&x1);
                let residual = if c.residual_post_layernorm { &n2 } else { &x1 };
                blk.down.forward(&blk.up.forward(&n2).gelu("tanh")) + residual
            },
            |x| self.norm.forward(x),
        ))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn alibi_slopes_match_the_paper() {
        // 8 heads: 2^-1 … 2^-8; 12 heads: 8 of those, then 2^-0.5, 2^-1.5, 2^-2.5, 2^-3.5.
        let s = super::alibi_slopes(8);
        assert!((s[0] - 0.5).abs() < 1e-7 && (s[7] - 2f32.powi(-8)).abs() < 1e-9);
        let s = super::alibi_slopes(12);
        assert_eq!(s.len(), 12);
        assert!((s[8] - 2f32.powf(-0.5)).abs() < 1e-6 && (s[11] - 2f32.powf(-3.5)).abs() < 1e-6, "{s:?}");
    }
}
