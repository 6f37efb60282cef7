//! The Llama family: Llama 1/2/3/3.1/3.2, Mistral (and Nemo's explicit head_dim), SmolLM,
//! Qwen2/2.5 (q/k/v biases), Qwen3 (per-head q/k RMSNorm), Phi-3/3.5 (fused qkv and gate-up
//! projections, split at load).
//! Pre-norm decoder: RMSNorm → attention (GQA, rotary) → residual → RMSNorm → SwiGLU → residual.
use crate::device::Placement;
use crate::gguf::Gguf;
use crate::layers::{
    apply_rope, attention, merge_heads, rope_from_hf, split_heads, Layout, Linear, RmsNorm, Rope, RopeScaling, Weight,
};
use crate::model::{req, HiddenStates, LoadOptions};
use crate::weights::Weights;
use anyhow::Result;
use serde_json::Value;
use tch::{Device, Kind, Tensor};

#[derive(Debug, Clone)]
pub struct Config {
    pub vocab_size: i64,
    pub hidden_size: i64,
    pub intermediate_size: i64,
    pub num_layers: i64,
    pub num_heads: i64,
    pub num_kv_heads: i64,
    pub head_dim: i64,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub rope_scaling: RopeScaling,
    /// Qwen2: biases on the q, k and v projections.
    pub attention_bias: bool,
    /// Mistral: sliding window attention.
    pub sliding_window: Option<i64>,
    /// Qwen3: RMSNorm over each head's queries and keys before the rotary embedding.
    pub qk_norm: bool,
    /// The LM head is the token-embedding table (no `lm_head.weight`).
    pub tie_word_embeddings: bool,
}

impl Config {
    pub fn from_hf(v: &Value) -> Result<Self> {
        let hidden = req(v, "hidden_size")?;
        let heads = req(v, "num_attention_heads")?;
        let arch = v["model_type"].as_str().unwrap_or("llama");
        let (rope_theta, rope_scaling) = rope_from_hf(v, None, 10000.0)?;
        let partial = v["partial_rotary_factor"]
            .as_f64()
            .or_else(|| v["rope_parameters"]["partial_rotary_factor"].as_f64())
            .unwrap_or(1.0);
        if partial != 1.0 {
            anyhow::bail!("config.json: partial_rotary_factor {partial} (rotary on part of each head) is not implemented for `{arch}`");
        }
        Ok(Self {
            vocab_size: req(v, "vocab_size")?,
            hidden_size: hidden,
            intermediate_size: req(v, "intermediate_size")?,
            num_layers: req(v, "num_hidden_layers")?,
            num_heads: heads,
            num_kv_heads: v["num_key_value_heads"].as_i64().unwrap_or(heads),
            head_dim: v["head_dim"].as_i64().unwrap_or(hidden / heads),
            rms_norm_eps: v["rms_norm_eps"].as_f64().unwrap_or(1e-6),
            rope_theta,
            rope_scaling,
            attention_bias: v["attention_bias"].as_bool().unwrap_or(arch == "qwen2"),
            sliding_window: if v["use_sliding_window"].as_bool() == Some(false) {
                None
            } else {
                v["sliding_window"].as_i64()
            },
            qk_norm: arch == "qwen3",
            tie_word_embeddings: v["tie_word_embeddings"].as_bool().unwrap_or(false),
        })
    }

    pub fn from_gguf(g: &Gguf) -> Result<Self> {
        let arch = g.architecture()?.to_string();
        let (u, f) = (|k: &str| g.arch_u(k), |k: &str| g.arch_f(k));
        let (hidden, heads, kv_heads, head_dim) = g.attention_dims()?;
        let vocab = g
            .get("tokenizer.ggml.tokens")
            .and_then(|v| v.as_array())
            .map(|a| a.len() as i64)
            .or_else(|| u("vocab_size").ok())
            .unwrap_or(0);
        let scaling = match g.get(&format!("{arch}.rope.scaling.type")).and_then(|v| v.as_str()) {
            Some("linear") => RopeScaling::Linear { factor: f("rope.scaling.factor").unwrap_or(1.0) },
            _ => RopeScaling::None,
        };
        Ok(Self {
            vocab_size: vocab,
            hidden_size: hidden,
            intermediate_size: u("feed_forward_length")?,
            num_layers: u("block_count")?,
            num_heads: heads,
            num_kv_heads: kv_heads,
            head_dim,
            rms_norm_eps: f("attention.layer_norm_rms_epsilon").unwrap_or(1e-5),
            rope_theta: f("rope.freq_base").unwrap_or(10000.0),
            rope_scaling: scaling,
            attention_bias: arch == "qwen2",
            sliding_window: None,
            qk_norm: arch == "qwen3",
            // llama.cpp writes `output.weight` only when the head is not tied.
            tie_word_embeddings: g.tensor("output.weight").is_none(),
        })
    }
}

/// Phi-3's fused projections (`qkv_proj`: q, k, v rows in that order; `gate_up_proj`: gate
/// then up) split into the separate weights the other families have. Other weights are shared.
fn split_fused(w: &Weights, cfg: &Config) -> Result<Weights> {
    let mut out = Weights::new(String::new(), w.kind, w.placement.clone());
    let (d, hd, ff) = (cfg.hidden_size, cfg.head_dim, cfg.intermediate_size);
    let (q, kv) = (cfg.num_heads * hd, cfg.num_kv_heads * hd);
    for name in w.names() {
        let t = w.get(name)?;
        if let Some(p) = name.strip_suffix(".self_attn.qkv_proj.weight") {
            let t = w.shaped(name, &[q + 2 * kv, d])?;
            for (part, (start, len)) in ["q_proj", "k_proj", "v_proj"].iter().zip([(0, q), (q, kv), (q + kv, kv)]) {
                out.insert(&format!("{p}.self_attn.{part}.weight"), t.narrow(0, start, len).contiguous());
            }
        } else if let Some(p) = name.strip_suffix(".mlp.gate_up_proj.weight") {
            let t = w.shaped(name, &[2 * ff, d])?;
            out.insert(&format!("{p}.mlp.gate_proj.weight"), t.narrow(0, 0, ff).contiguous());
            out.insert(&format!("{p}.mlp.up_proj.weight"), t.narrow(0, ff, ff).contiguous());
        } else {
            out.insert(name, t.shallow_clone());
        }
    }
    out.source = w.source.clone();
    out.stored = w.stored.clone();
    Ok(out)
}

/// llama.cpp names → Hugging Face names (prefix stripped).
pub fn gguf_name(n: &str) -> Option<String> {
    if n == "token_embd.weight" {
        return Some("embed_tokens.weight".into());
    }
    if n == "output_norm.weight" {
        return Some("norm.weight".into());
    }
    if n == "output.weight" {
        return Some("lm_head.weight".into());
    }
    let rest = n.strip_prefix("blk.")?;
    let (layer, tail) = rest.split_once('.')?;
    let hf = match tail {
        "attn_norm.weight" => "input_layernorm.weight",
        "ffn_norm.weight" => "post_attention_layernorm.weight",
        "attn_q.weight" => "self_attn.q_proj.weight",
        "attn_k.weight" => "self_attn.k_proj.weight",
        "attn_v.weight" => "self_attn.v_proj.weight",
        "attn_q.bias" => "self_attn.q_proj.bias",
        "attn_k.bias" => "self_attn.k_proj.bias",
        "attn_v.bias" => "self_attn.v_proj.bias",
        "attn_output.weight" => "self_attn.o_proj.weight",
        "attn_q_norm.weight" => "self_attn.q_norm.weight",
        "attn_k_norm.weight" => "self_attn.k_norm.weight",
        "attn_qkv.weight" => "self_attn.qkv_proj.weight",
        "ffn_gate.weight" => "mlp.gate_proj.weight",
        "ffn_up.weight" => "mlp.up_proj.weight",
        "ffn_down.weight" => "mlp.down_proj.weight",
        _ => return None,
    };
    Some(format!("layers.{layer}.{hf}"))
}

/// llama.cpp's converter permutes Q and K rows of `llama` models into interleaved rotary
/// pairs; this undoes it so the half-split rotary matches Hugging Face.
pub fn unpermute(t: Tensor, heads: i64) -> Tensor {
    let s = t.size();
    let rows = s[0];
    let rest: Vec<i64> = s[1..].to_vec();
    let mut shape = vec![heads, rows / heads / 2, 2];
    shape.extend(&rest);
    t.reshape(&shape).transpose(1, 2).reshape(&s)
}

pub struct Block {
    q_norm: Option<RmsNorm>,
    k_norm: Option<RmsNorm>,
    ln1: RmsNorm,
    ln2: RmsNorm,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    gate: Linear,
    up: Linear,
    down: Linear,
}

pub struct Llama {
    cfg: Config,
    embed: Weight,
    /// An untied LM head, when the weights carried one.
    lm_head: Option<Weight>,
    blocks: Vec<Block>,
    norm: RmsNorm,
    rope: Rope,
    placement: Placement,
    /// The LM head as the logit lens uses it (kept dense, or streamed under a budget).
    lens_head: crate::layers::LensHead,
}

impl Llama {
    pub fn load(cfg: Config, w: &Weights) -> Result<Self> {
        let (d, h, kv, hd, ff) =
            (cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, cfg.intermediate_size);
        crate::model::check_heads(&w.source, h, kv, hd)?;
        let w = &split_fused(w, &cfg)?;
        let eps = cfg.rms_norm_eps;
        let norm = |n: &str| -> Result<RmsNorm> { Ok(RmsNorm { w: w.shaped(n, &[d])?, eps, offset: false }) };
        let lin = |n: &str, out: i64, inp: i64, bias: bool| -> Result<Linear> {
            Ok(Linear {
                w: w.weight(&format!("{n}.weight"), &[out, inp])?,
                b: if bias { Some(w.shaped(&format!("{n}.bias"), &[out])?) } else { None },
            })
        };
        let mut blocks = Vec::new();
        for i in 0..cfg.num_layers {
            let p = format!("layers.{i}");
            let head_norm = |n: &str| -> Result<Option<RmsNorm>> {
                Ok(if cfg.qk_norm {
                    Some(RmsNorm { w: w.shaped(&format!("{p}.self_attn.{n}.weight"), &[hd])?, eps, offset: false })
                } else {
                    None
                })
            };
            blocks.push(Block {
                q_norm: head_norm("q_norm")?,
                k_norm: head_norm("k_norm")?,
                ln1: norm(&format!("{p}.input_layernorm.weight"))?,
                ln2: norm(&format!("{p}.post_attention_layernorm.weight"))?,
                q: lin(&format!("{p}.self_attn.q_proj"), h * hd, d, cfg.attention_bias)?,
                k: lin(&format!("{p}.self_attn.k_proj"), kv * hd, d, cfg.attention_bias)?,
                v: lin(&format!("{p}.self_attn.v_proj"), kv * hd, d, cfg.attention_bias)?,
                o: lin(&format!("{p}.self_attn.o_proj"), d, h * hd, false)?,
                gate: lin(&format!("{p}.mlp.gate_proj"), ff, d, false)?,
                up: lin(&format!("{p}.mlp.up_proj"), ff, d, false)?,
                down: lin(&format!("{p}.mlp.down_proj"), d, ff, false)?,
            });
        }
        let embed = w.matrix("embed_tokens.weight")?;
        if embed.size()[1] != d {
            anyhow::bail!("embed_tokens.weight has width {}, expected {d}", embed.size()[1]);
        }
        Ok(Self {
            rope: Rope::new(hd as usize, cfg.rope_theta, &cfg.rope_scaling),
            embed,
            lm_head: w.opt_matrix("lm_head.weight"),
            norm: norm("norm.weight")?,
            blocks,
            cfg,
            placement: w.placement.clone(),
            lens_head: Default::default(),
        })
    }

    /// Loads a GGUF of architecture `llama` (or `qwen2`, `qwen3`, `phi3`).
    pub fn from_gguf(g: &Gguf, opts: &LoadOptions) -> Result<Self> {
        let mut cfg = Config::from_gguf(g)?;
        // Llama 3.1-style scaling travels as one divisor per rotary frequency.
        if let Some(t) = g.tensor("rope_freqs.weight") {
            let mut f = vec![0f32; t.numel()];
            crate::gguf::dequantize_into(t.ty, &g.read_raw(t)?, &mut f)?;
            if f.len() as i64 != cfg.head_dim / 2 {
                anyhow::bail!(
                    "{}: rope_freqs.weight has {} entries, expected head_dim/2 = {}",
                    g.path.display(),
                    f.len(),
                    cfg.head_dim / 2
                );
            }
            cfg.rope_scaling = RopeScaling::Factors(f.iter().map(|&x| x as f64).collect());
        }
        let arch = g.architecture()?;
        let permuted = arch == "llama";
        if g.tensors.iter().any(|t| t.name.starts_with("rope_factors")) {
            anyhow::bail!("{}: this GGUF carries long-context rotary factors (rope_factors_*, Phi-3.5 longrope), which mexa does not implement; use the Hugging Face folder of a model without them", g.path.display());
        }
        let (h, kv) = (cfg.num_heads, cfg.num_kv_heads);
        // llama.cpp's phi3 stores the fused gate-up projection as `ffn_up`.
        let rename = |n: &str| match (arch, n.strip_prefix("blk.").and_then(|r| r.split_once('.'))) {
            ("phi3", Some((layer, "ffn_up.weight"))) => Some(format!("layers.{layer}.mlp.gate_up_proj.weight")),
            _ if n == "output.weight" && !opts.lm_head => None,
            _ => gguf_name(n),
        };
        let fix = move |name: &str, t: Tensor| {
            if permuted && name.ends_with("self_attn.q_proj.weight") {
                unpermute(t, h)
            } else if permuted && name.ends_with("self_attn.k_proj.weight") {
                unpermute(t, kv)
            } else {
                t
            }
        };
        // Fused Phi-3 projections are split at load, so they load dense.
        let stored = |n: &str| !n.ends_with("qkv_proj.weight") && !n.ends_with("gate_up_proj.weight");
        let w = Weights::from_gguf(g, opts, cfg.num_layers, rename, fix, stored)?;
        Self::load(cfg, &w)
    }
}

/// A batch's attention bias and rotary tables.
pub struct Context {
    bias: Tensor,
    cos: Tensor,
    sin: Tensor,
}

impl crate::layers::Decoder for Llama {
    type Block = Block;
    type Context = Context;
    fn blocks(&self) -> &[Block] {
        &self.blocks
    }
    fn placement(&self) -> &Placement {
        &self.placement
    }
    fn embed(&self, ids: &Tensor) -> Tensor {
        self.embed.embedding(ids)
    }
    fn context(&self, layout: &Layout, t: i64, kind: Kind, device: Device) -> Context {
        let bias = layout.bias(true, self.cfg.sliding_window, kind).to_device(device);
        let (cos, sin) = layout.rope(&self.rope, t, kind, device);
        Context { bias, cos: cos.to_device(device), sin: sin.to_device(device) }
    }
    fn block(&self, _: usize, b: &Block, cx: &Context, x: Tensor) -> Tensor {
        let c = &self.cfg;
        let hsx = b.ln1.forward(&x);
        let mut q = split_heads(&b.q.forward(&hsx), c.num_heads, c.head_dim);
        let mut k = split_heads(&b.k.forward(&hsx), c.num_kv_heads, c.head_dim);
        if let (Some(qn), Some(kn)) = (&b.q_norm, &b.k_norm) {
            q = qn.forward(&q);
            k = kn.forward(&k);
        }
        let q = apply_rope(&q, &cx.cos, &cx.sin);
        let k = apply_rope(&k, &cx.cos, &cx.sin);
        let v = split_heads(&b.v.forward(&hsx), c.num_kv_heads, c.head_dim);
        let a = attention(&q, &k, &v, &cx.bias, 1.0 / (c.head_dim as f64).sqrt(), None);
        let x = x + b.o.forward(&merge_heads(&a));
        let hsx = b.ln2.forward(&x);
        &x + b.down.forward(&(b.gate.forward(&hsx).silu() * b.up.forward(&hsx)))
    }
    fn final_norm(&self, x: &Tensor) -> Tensor {
        self.norm.forward(x)
    }
    fn resident(b: &Block) -> Block {
        Block {
            q_norm: b.q_norm.clone(),
            k_norm: b.k_norm.clone(),
            ln1: b.ln1.clone(),
            ln2: b.ln2.clone(),
            q: b.q.resident(),
            k: b.k.resident(),
            v: b.v.resident(),
            o: b.o.resident(),
            gate: b.gate.resident(),
            up: b.up.resident(),
            down: b.down.resident(),
        }
    }
}

impl HiddenStates for Llama {
    fn lens_norm(&self, state: usize, hidden: &Tensor) -> Result<Tensor> {
        Ok(crate::layers::lens_norm(self, state, hidden))
    }
    fn lens_top1(&self, normed: &Tensor) -> Result<Tensor> {
        let head = match (&self.lm_head, self.cfg.tie_word_embeddings) {
            (Some(h), _) => h,
            (None, true) => &self.embed,
            (None, false) => anyhow::bail!("the weights have no lm_head.weight (and tie_word_embeddings is false); was the model loaded with its LM head?"),
        };
        Ok(self.lens_head.top1(head, normed))
    }
    crate::model::hidden_dims!(num_layers, hidden_size, embed);
    crate::model::decoder_runs!();
    fn packs(&self) -> bool {
        true
    }
    fn forward_packed(&self, ids: &Tensor, positions: &Tensor, allowed: &Tensor) -> Result<Vec<Tensor>> {
        Ok(crate::layers::states(self, ids, &Layout::Packed { positions, allowed }))
    }
    fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        let head = match (&self.lm_head, self.cfg.tie_word_embeddings) {
            (Some(h), _) => h.tensor(),
            (None, true) => self.embed.tensor(),
            (None, false) => anyhow::bail!("the weights have no lm_head.weight (and tie_word_embeddings is false); was the model loaded with its LM head?"),
        };
        Ok(hidden.to_device(head.device()).matmul(&head.tr()))
    }
}
