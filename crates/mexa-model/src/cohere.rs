//! Cohere Command-R / Aya: a parallel block (attention and SwiGLU MLP both read the same
//! LayerNorm output and are added to the residual together), LayerNorm without bias,
//! interleaved ("GPT-J") rotary pairs, optional per-head q/k LayerNorm. The logit scale only
//! touches the LM head, which MEXA does not use.
use crate::gguf::Gguf;
use crate::layers::Weight;
use crate::layers::{
    attention, attention_bias, decoder_hidden_states, merge_heads, rope_from_hf, split_heads, Linear, RopeScaling,
};
use crate::model::{req, HiddenStates, LoadOptions};
use crate::weights::Weights;
use anyhow::{bail, Result};
use serde_json::Value;
use tch::{Kind, Tensor};

#[derive(Debug, Clone)]
pub struct Config {
    pub hidden_size: i64,
    pub intermediate_size: i64,
    pub num_layers: i64,
    pub num_heads: i64,
    pub num_kv_heads: i64,
    pub head_dim: i64,
    pub layer_norm_eps: f64,
    pub rope_theta: f64,
    pub attention_bias: bool,
    pub qk_norm: bool,
}

impl Config {
    pub fn from_hf(v: &Value) -> Result<Self> {
        let (hidden, heads) = (req(v, "hidden_size")?, req(v, "num_attention_heads")?);
        let (rope_theta, scaling) = rope_from_hf(v, None, 10000.0)?;
        if scaling != RopeScaling::None {
            bail!("config.json: rope scaling {scaling:?} is not implemented for Cohere models");
        }
        Ok(Self {
            hidden_size: hidden,
            intermediate_size: req(v, "intermediate_size")?,
            num_layers: req(v, "num_hidden_layers")?,
            num_heads: heads,
            num_kv_heads: v["num_key_value_heads"].as_i64().unwrap_or(heads),
            head_dim: v["head_dim"].as_i64().unwrap_or(hidden / heads),
            layer_norm_eps: v["layer_norm_eps"].as_f64().unwrap_or(1e-5),
            rope_theta,
            attention_bias: v["attention_bias"].as_bool().unwrap_or(false),
            qk_norm: v["use_qk_norm"].as_bool().unwrap_or(false),
        })
    }
}

impl Config {
    /// From a `command-r` (or `cohere2`-free) GGUF's metadata.
    pub fn from_gguf(g: &Gguf) -> Result<Self> {
        let (hidden, heads, num_kv_heads, head_dim) = g.attention_dims()?;
        Ok(Self {
            hidden_size: hidden,
            intermediate_size: g.arch_u("feed_forward_length")?,
            num_layers: g.arch_u("block_count")?,
            num_heads: heads,
            num_kv_heads,
            head_dim,
            layer_norm_eps: g.arch_f("attention.layer_norm_epsilon").unwrap_or(1e-5),
            rope_theta: g.arch_f("rope.freq_base").unwrap_or(10000.0),
            attention_bias: false,
            qk_norm: g.tensors.iter().any(|t| t.name.ends_with("attn_q_norm.weight")),
        })
    }
}

/// LayerNorm without bias over the last dimension, in f32 (CohereLayerNorm). The weight may
/// be [D] or, for the per-head q/k norms, [H, D].
struct Norm {
    w: Tensor,
    eps: f64,
}

impl Norm {
    fn forward(&self, x: &Tensor) -> Tensor {
        let xf = x.to_kind(Kind::Float);
        let mean = xf.mean_dim(-1, true, Kind::Float);
        let centred = &xf - mean;
        let var = centred.pow_tensor_scalar(2).mean_dim(-1, true, Kind::Float);
        (self.w.to_kind(Kind::Float) * (centred * (var + self.eps).rsqrt())).to_kind(x.kind())
    }
}

/// Rotary tables with each frequency repeated for its adjacent pair: [T, head_dim].
fn interleaved_tables(t: i64, head_dim: i64, base: f64, kind: Kind, device: tch::Device) -> (Tensor, Tensor) {
    let inv: Vec<f32> = (0..head_dim / 2).map(|i| (1.0 / base.powf((2 * i) as f64 / head_dim as f64)) as f32).collect();
    let inv = Tensor::from_slice(&inv).to_device(device);
    let freqs = Tensor::arange(t, (Kind::Float, device)).unsqueeze(1) * inv.unsqueeze(0);
    let emb = freqs.repeat_interleave_self_int(2, Some(-1), None);
    (emb.cos().to_kind(kind), emb.sin().to_kind(kind))
}

/// (x₀, x₁) → (−x₁, x₀) on every adjacent pair.
fn rotate_pairs(x: &Tensor) -> Tensor {
    let s = x.size();
    let pairs = x.reshape([-1, 2]);
    let (a, b) = (pairs.select(1, 0), pairs.select(1, 1));
    Tensor::stack(&[b.neg(), a], -1).reshape(s.as_slice())
}

fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Tensor {
    let xf = x.to_kind(Kind::Float);
    (&xf * cos.to_kind(Kind::Float) + rotate_pairs(&xf) * sin.to_kind(Kind::Float)).to_kind(x.kind())
}

struct Block {
    ln: Norm,
    q_norm: Option<Norm>,
    k_norm: Option<Norm>,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    gate: Linear,
    up: Linear,
    down: Linear,
}

pub struct Cohere {
    cfg: Config,
    embed: Weight,
    blocks: Vec<Block>,
    norm: Norm,
}

impl Cohere {
    pub fn load(cfg: Config, w: &Weights) -> Result<Self> {
        let (d, h, kv, hd, ff) =
            (cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, cfg.intermediate_size);
        crate::model::check_heads(&w.source, h, kv, hd)?;
        let eps = cfg.layer_norm_eps;
        let lin = |n: &str, out: i64, inp: i64, bias: bool| -> Result<Linear> {
            Ok(Linear {
                w: w.weight(&format!("{n}.weight"), &[out, inp])?,
                b: if bias { Some(w.shaped(&format!("{n}.bias"), &[out])?) } else { None },
            })
        };
        let blocks = (0..cfg.num_layers)
            .map(|i| {
                let p = format!("layers.{i}");
                let head_norm = |n: &str, heads: i64| -> Result<Option<Norm>> {
                    Ok(if cfg.qk_norm {
                        Some(Norm { w: w.shaped(&format!("{p}.self_attn.{n}.weight"), &[heads, hd])?, eps })
                    } else {
                        None
                    })
                };
                Ok(Block {
                    ln: Norm { w: w.shaped(&format!("{p}.input_layernorm.weight"), &[d])?, eps },
                    q_norm: head_norm("q_norm", h)?,
                    k_norm: head_norm("k_norm", kv)?,
                    q: lin(&format!("{p}.self_attn.q_proj"), h * hd, d, cfg.attention_bias)?,
                    k: lin(&format!("{p}.self_attn.k_proj"), kv * hd, d, cfg.attention_bias)?,
                    v: lin(&format!("{p}.self_attn.v_proj"), kv * hd, d, cfg.attention_bias)?,
                    o: lin(&format!("{p}.self_attn.o_proj"), d, h * hd, cfg.attention_bias)?,
                    gate: lin(&format!("{p}.mlp.gate_proj"), ff, d, false)?,
                    up: lin(&format!("{p}.mlp.up_proj"), ff, d, false)?,
                    down: lin(&format!("{p}.mlp.down_proj"), d, ff, false)?,
                })
            })
            .collect::<Result<_>>()?;
        let embed = w.matrix("embed_tokens.weight")?;
        if embed.size().len() != 2 || embed.size()[1] != d {
            bail!("embed_tokens.weight has shape {:?}, expected [vocab, {d}]", embed.size());
        }
        Ok(Self { embed, norm: Norm { w: w.shaped("norm.weight", &[d])?, eps }, blocks, cfg })
    }
}

impl Cohere {
    /// Loads a `command-r` GGUF (names as llama.cpp writes them; weights as in the checkpoint).
    pub fn from_gguf(g: &Gguf, opts: &LoadOptions) -> Result<Self> {
        let cfg = Config::from_gguf(g)?;
        let w = Weights::from_gguf(g, opts, cfg.num_layers, crate::llama::gguf_name, |_, t| t, |_| true)?;
        Self::load(cfg, &w)
    }
}

impl HiddenStates for Cohere {
    crate::model::hidden_dims!(num_layers, hidden_size, embed);
    fn forward(&self, ids: &Tensor, mask: &Tensor) -> Result<Vec<Tensor>> {
        let c = &self.cfg;
        let (bs, t) = (ids.size()[0], ids.size()[1]);
        let x = self.embed.embedding(ids);
        let (kind, device) = (x.kind(), x.device());
        let bias = attention_bias(mask, true, None, kind);
        let (cos, sin) = interleaved_tables(t, c.head_dim, c.rope_theta, kind, device);
        let scale = 1.0 / (c.head_dim as f64).sqrt();
        Ok(decoder_hidden_states(
            x,
            &self.blocks,
            |_, b, x| {
                let n = b.ln.forward(&x);
                let mut q = b.q.forward(&n).view([bs, t, c.num_heads, c.head_dim]);
                let mut k = b.k.forward(&n).view([bs, t, c.num_kv_heads, c.head_dim]);
                if let (Some(qn), Some(kn)) = (&b.q_norm, &b.k_norm) {
                    q = qn.forward(&q);
                    k = kn.forward(&k);
                }
                let q = rope(&q.transpose(1, 2), &cos, &sin);
                let k = rope(&k.transpose(1, 2), &cos, &sin);
                let v = split_heads(&b.v.forward(&n), c.num_kv_heads, c.head_dim);
                let a = b.o.forward(&merge_heads(&attention(&q, &k, &v, &bias, scale, None)));
                let mlp = b.down.forward(&(b.gate.forward(&n).silu() * b.up.forward(&n)));
                x + a + mlp
            },
            |x| self.norm.forward(x),
        ))
    }
}
