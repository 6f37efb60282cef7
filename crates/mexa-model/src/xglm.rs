//! XGLM (Meta, multilingual): embeddings scaled by √d plus fairseq sinusoidal positions
//! (offset 2), pre-LN blocks with biased q/k/v/out projections and a GELU MLP, and a final
//! LayerNorm.
use crate::layers::Weight;
use crate::layers::{attention, attention_bias, decoder_hidden_states, merge_heads, split_heads, LayerNorm, Linear};
use crate::model::{req, HiddenStates};
use crate::weights::Weights;
use anyhow::{bail, Result};
use serde_json::Value;
use tch::{Kind, Tensor};

#[derive(Debug, Clone)]
pub struct Config {
    pub d_model: i64,
    pub num_layers: i64,
    pub num_heads: i64,
    pub ffn_dim: i64,
    pub scale_embedding: bool,
    /// `gelu` (exact) or `gelu_new`-style tanh approximation.
    pub tanh_gelu: bool,
}

impl Config {
    pub fn from_hf(v: &Value) -> Result<Self> {
        let (d, heads) = (req(v, "d_model")?, req(v, "attention_heads")?);
        if heads <= 0 || d % heads != 0 {
            bail!("config.json: d_model {d} is not a multiple of attention_heads {heads}");
        }
        let act = v["activation_function"].as_str().unwrap_or("gelu");
        if !matches!(act, "gelu" | "gelu_new" | "gelu_pytorch_tanh") {
            bail!("config.json: XGLM activation `{act}` is not implemented (gelu, gelu_new)");
        }
        Ok(Self {
            d_model: d,
            num_layers: req(v, "num_layers")?,
            num_heads: heads,
            ffn_dim: req(v, "ffn_dim")?,
            scale_embedding: v["scale_embedding"].as_bool().unwrap_or(true),
            tanh_gelu: act != "gelu",
        })
    }
}

/// fairseq's sinusoidal table (sines of every frequency, then cosines) for positions
/// `offset .. offset + t`, computed in f32 as transformers does.
pub fn sinusoidal_positions(t: i64, dim: i64, offset: i64) -> Tensor {
    let half = dim / 2;
    let step = (10000f64).ln() / (half - 1) as f64;
    let freqs = (Tensor::arange(half, (Kind::Float, tch::Device::Cpu)) * -(step as f32) as f64).exp();
    let pos = Tensor::arange_start(offset, offset + t, (Kind::Float, tch::Device::Cpu));
    let angles = pos.unsqueeze(1) * freqs.unsqueeze(0);
    let mut emb = Tensor::cat(&[angles.sin(), angles.cos()], 1);
    if dim % 2 == 1 {
        emb = Tensor::cat(&[emb, Tensor::zeros([t, 1], (Kind::Float, tch::Device::Cpu))], 1);
    }
    emb
}

struct Block {
    ln1: LayerNorm,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    ln2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
}

pub struct Xglm {
    cfg: Config,
    embed: Weight,
    blocks: Vec<Block>,
    norm: LayerNorm,
}

impl Xglm {
    pub fn load(cfg: Config, w: &Weights) -> Result<Self> {
        let (d, ff) = (cfg.d_model, cfg.ffn_dim);
        let ln = |n: &str| -> Result<LayerNorm> {
            Ok(LayerNorm {
                w: w.shaped(&format!("{n}.weight"), &[d])?,
                b: w.shaped(&format!("{n}.bias"), &[d])?,
                eps: 1e-5,
            })
        };
        let lin = |n: &str, out: i64, inp: i64| -> Result<Linear> {
            Ok(Linear {
                w: w.weight(&format!("{n}.weight"), &[out, inp])?,
                b: Some(w.shaped(&format!("{n}.bias"), &[out])?),
            })
        };
        let blocks = (0..cfg.num_layers)
            .map(|i| {
                let p = format!("layers.{i}");
                Ok(Block {
                    ln1: ln(&format!("{p}.self_attn_layer_norm"))?,
                    q: lin(&format!("{p}.self_attn.q_proj"), d, d)?,
                    k: lin(&format!("{p}.self_attn.k_proj"), d, d)?,
                    v: lin(&format!("{p}.self_attn.v_proj"), d, d)?,
                    o: lin(&format!("{p}.self_attn.out_proj"), d, d)?,
                    ln2: ln(&format!("{p}.final_layer_norm"))?,
                    fc1: lin(&format!("{p}.fc1"), ff, d)?,
                    fc2: lin(&format!("{p}.fc2"), d, ff)?,
                })
            })
            .collect::<Result<_>>()?;
        let embed = w.matrix("embed_tokens.weight")?;
        if embed.size().len() != 2 || embed.size()[1] != d {
            bail!("embed_tokens.weight has shape {:?}, expected [vocab, {d}]", embed.size());
        }
        Ok(Self { embed, norm: ln("layer_norm")?, blocks, cfg })
    }
}

impl HiddenStates for Xglm {
    crate::model::hidden_dims!(num_layers, d_model, embed);
    fn forward(&self, ids: &Tensor, mask: &Tensor) -> Result<Vec<Tensor>> {
        let c = &self.cfg;
        let t = ids.size()[1];
        let (h, hd) = (c.num_heads, c.d_model / c.num_heads);
        let e = self.embed.embedding(ids);
        let (kind, device) = (e.kind(), e.device());
        let e = if c.scale_embedding { e * (c.d_model as f64).sqrt() } else { e };
        let x = e + sinusoidal_positions(t, c.d_model, 2).to_kind(kind).to_device(device).unsqueeze(0);
        let bias = attention_bias(mask, true, None, kind);
        let gelu = if c.tanh_gelu { "tanh" } else { "none" };
        Ok(decoder_hidden_states(
            x,
            &self.blocks,
            |_, b, x| {
                let n = b.ln1.forward(&x);
                // transformers scales the queries before the product (scale 1 in attention).
                let q = split_heads(&(b.q.forward(&n) * (hd as f64).powf(-0.5)), h, hd);
                let a = attention(
                    &q,
                    &split_heads(&b.k.forward(&n), h, hd),
                    &split_heads(&b.v.forward(&n), h, hd),
                    &bias,
                    1.0,
                    None,
                );
                let x = x + b.o.forward(&merge_heads(&a));
                &x + b.fc2.forward(&b.fc1.forward(&b.ln2.forward(&x)).gelu(gelu))
            },
            |x| self.norm.forward(x),
        ))
    }
}
