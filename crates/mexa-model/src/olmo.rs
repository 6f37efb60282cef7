//! OLMo and OLMo 2. OLMo: Llama-like, but LayerNorms without weight or bias and optional
//! clipping of q/k/v. OLMo 2: RMSNorm on the whole q and k projections, and norms after
//! attention and MLP (not before) inside each residual branch.
use crate::layers::Weight;
use crate::layers::{
    apply_rope, attention, attention_bias, decoder_hidden_states, merge_heads, rope_from_hf, split_heads, Linear,
    RmsNorm, Rope, RopeScaling,
};
use crate::model::{req, HiddenStates};
use crate::weights::Weights;
use anyhow::{bail, Result};
use serde_json::Value;
use tch::{Kind, Tensor};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Version {
    Olmo1,
    Olmo2,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub version: Version,
    pub hidden_size: i64,
    pub intermediate_size: i64,
    pub num_layers: i64,
    pub num_heads: i64,
    pub num_kv_heads: i64,
    pub head_dim: i64,
    pub eps: f64,
    pub rope_theta: f64,
    pub rope_scaling: RopeScaling,
    pub attention_bias: bool,
    pub clip_qkv: Option<f64>,
}

impl Config {
    pub fn from_hf(v: &Value) -> Result<Self> {
        let version = match v["model_type"].as_str().unwrap_or("") {
            "olmo" => Version::Olmo1,
            "olmo2" => Version::Olmo2,
            other => bail!("model_type `{other}` is not OLMo"),
        };
        let (hidden, heads) = (req(v, "hidden_size")?, req(v, "num_attention_heads")?);
        let (rope_theta, rope_scaling) = rope_from_hf(v, None, 10000.0)?;
        Ok(Self {
            version,
            hidden_size: hidden,
            intermediate_size: req(v, "intermediate_size")?,
            num_layers: req(v, "num_hidden_layers")?,
            num_heads: heads,
            num_kv_heads: v["num_key_value_heads"].as_i64().unwrap_or(heads),
            head_dim: hidden / heads,
            eps: v["rms_norm_eps"].as_f64().unwrap_or(1e-5),
            rope_theta,
            rope_scaling,
            attention_bias: v["attention_bias"].as_bool().unwrap_or(false),
            clip_qkv: v["clip_qkv"].as_f64(),
        })
    }
}

/// OLMo's LayerNorm: no learned parameters, computed in f32.
fn plain_ln(x: &Tensor, eps: f64) -> Tensor {
    let d = *x.size().last().unwrap();
    x.to_kind(Kind::Float).layer_norm([d], None::<Tensor>, None::<Tensor>, eps, false).to_kind(x.kind())
}

struct Block {
    /// OLMo 1: pre-attention and pre-MLP norms are parameter-free. OLMo 2: post norms.
    post_attn: Option<RmsNorm>,
    post_ffn: Option<RmsNorm>,
    q_norm: Option<RmsNorm>,
    k_norm: Option<RmsNorm>,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    gate: Linear,
    up: Linear,
    down: Linear,
}

pub struct Olmo {
    cfg: Config,
    embed: Weight,
    blocks: Vec<Block>,
    norm: Option<RmsNorm>,
    rope: Rope,
}

impl Olmo {
    pub fn load(cfg: Config, w: &Weights) -> Result<Self> {
        let (d, h, kv, hd, ff) =
            (cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, cfg.intermediate_size);
        let v2 = cfg.version == Version::Olmo2;
        let rms = |n: &str, dim: i64| -> Result<RmsNorm> {
            Ok(RmsNorm { w: w.shaped(n, &[dim])?, eps: cfg.eps, offset: false })
        };
        let lin = |n: &str, out: i64, inp: i64, bias: bool| -> Result<Linear> {
            Ok(Linear {
                w: w.weight(&format!("{n}.weight"), &[out, inp])?,
                b: if bias { Some(w.shaped(&format!("{n}.bias"), &[out])?) } else { None },
            })
        };
        let mut blocks = Vec::new();
        for i in 0..cfg.num_layers {
            let p = format!("layers.{i}");
            blocks.push(Block {
                post_attn: if v2 { Some(rms(&format!("{p}.post_attention_layernorm.weight"), d)?) } else { None },
                post_ffn: if v2 { Some(rms(&format!("{p}.post_feedforward_layernorm.weight"), d)?) } else { None },
                q_norm: if v2 { Some(rms(&format!("{p}.self_attn.q_norm.weight"), h * hd)?) } else { None },
                k_norm: if v2 { Some(rms(&format!("{p}.self_attn.k_norm.weight"), kv * hd)?) } else { None },
                q: lin(&format!("{p}.self_attn.q_proj"), h * hd, d, cfg.attention_bias)?,
                k: lin(&format!("{p}.self_attn.k_proj"), kv * hd, d, cfg.attention_bias)?,
                v: lin(&format!("{p}.self_attn.v_proj"), kv * hd, d, cfg.attention_bias)?,
                o: lin(&format!("{p}.self_attn.o_proj"), d, h * hd, cfg.attention_bias)?,
                gate: lin(&format!("{p}.mlp.gate_proj"), ff, d, false)?,
                up: lin(&format!("{p}.mlp.up_proj"), ff, d, false)?,
                down: lin(&format!("{p}.mlp.down_proj"), d, ff, false)?,
            });
        }
        Ok(Self {
            embed: w.matrix("embed_tokens.weight")?,
            norm: if v2 { Some(rms("norm.weight", d)?) } else { None },
            rope: Rope::new(hd as usize, cfg.rope_theta, &cfg.rope_scaling),
            blocks,
            cfg,
        })
    }
}

impl HiddenStates for Olmo {
    crate::model::hidden_dims!(num_layers, hidden_size, embed);
    fn forward(&self, ids: &Tensor, mask: &Tensor) -> Result<Vec<Tensor>> {
        let c = &self.cfg;
        let t = ids.size()[1];
        let x = self.embed.embedding(ids);
        let bias = attention_bias(mask, true, None, x.kind());
        let (cos, sin) = self.rope.tables(t, x.kind(), x.device());
        let scale = 1.0 / (c.head_dim as f64).sqrt();
        let clip = |t: Tensor| match c.clip_qkv {
            Some(v) => t.clamp(-v, v),
            None => t,
        };
        Ok(decoder_hidden_states(
            x,
            &self.blocks,
            |_, b, x| {
                let inp = if b.post_attn.is_some() { x.shallow_clone() } else { plain_ln(&x, c.eps) };
                let (mut q, mut k) = (clip(b.q.forward(&inp)), clip(b.k.forward(&inp)));
                let v = clip(b.v.forward(&inp));
                if let (Some(qn), Some(kn)) = (&b.q_norm, &b.k_norm) {
                    q = qn.forward(&q);
                    k = kn.forward(&k);
                }
                let q = apply_rope(&split_heads(&q, c.num_heads, c.head_dim), &cos, &sin);
                let k = apply_rope(&split_heads(&k, c.num_kv_heads, c.head_dim), &cos, &sin);
                let v = split_heads(&v, c.num_kv_heads, c.head_dim);
                let a = b.o.forward(&merge_heads(&attention(&q, &k, &v, &bias, scale, None)));
                let x = match &b.post_attn {
                    Some(n) => &x + n.forward(&a),
                    None => &x + a,
                };
                let inp = if b.post_ffn.is_some() { x.shallow_clone() } else { plain_ln(&x, c.eps) };
                let m = b.down.forward(&(b.gate.forward(&inp).silu() * b.up.forward(&inp)));
                match &b.post_ffn {
                    Some(n) => &x + n.forward(&m),
                    None => &x + m,
                }
            },
            |x| match &self.norm {
                Some(n) => n.forward(x),
                None => plain_ln(x, c.eps),
            },
        ))
    }
}
