//! The Gemma family: Gemma 1, Gemma 2 (post-norms, logit soft-capping, alternating sliding
//! window), Gemma 3 text (per-head q/k RMSNorm, local/global rotary bases, sliding window on
//! five of every six layers). RMSNorms scale by (1 + w); embeddings are multiplied by √d;
//! the MLP is gated GELU (tanh approximation).
use crate::device::Placement;
use crate::gguf::Gguf;
use crate::layers::{
    apply_rope, attention, merge_heads, rope_from_hf, split_heads, Layout, Linear, RmsNorm, Rope, RopeScaling, Weight,
};
use crate::model::{req, HiddenStates, LoadOptions};
use crate::weights::Weights;
use anyhow::{bail, Result};
use serde_json::Value;
use tch::{Device, Kind, Tensor};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Version {
    Gemma1,
    Gemma2,
    Gemma3,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub version: Version,
    pub vocab_size: i64,
    pub hidden_size: i64,
    pub intermediate_size: i64,
    pub num_layers: i64,
    pub num_heads: i64,
    pub num_kv_heads: i64,
    pub head_dim: i64,
    pub rms_norm_eps: f64,
    /// Rotary base of global (full-attention) layers.
    pub rope_theta: f64,
    /// Rotary base of local (sliding-window) layers (Gemma 3).
    pub rope_local_theta: f64,
    pub rope_scaling: RopeScaling,
    pub query_pre_attn_scalar: f64,
    pub attn_softcap: Option<f64>,
    /// Gemma 2: the LM head's logits are soft-capped, `c · tanh(logits / c)`.
    pub final_softcap: Option<f64>,
    pub sliding_window: Option<i64>,
    /// Per layer: does it use the sliding window?
    pub sliding: Vec<bool>,
    /// Gemma 3 as a text encoder (EmbeddingGemma, `use_bidirectional_attention`): every token
    /// sees every other; sliding layers see `|i - j| < sliding_window`, the window being
    /// `config.sliding_window // 2 + 1` as transformers converts it.
    pub bidirectional: bool,
}

fn sliding_layers(version: Version, n: i64, pattern: i64, window: Option<i64>) -> Vec<bool> {
    (0..n)
        .map(|i| {
            window.is_some()
                && match version {
                    Version::Gemma1 => false,
                    Version::Gemma2 => i % 2 == 0,
                    Version::Gemma3 => (i + 1) % pattern != 0,
                }
        })
        .collect()
}

impl Config {
    pub fn from_hf(v: &Value) -> Result<Self> {
        // Gemma 3 multimodal configs nest the text model.
        let v =
            if v.get("text_config").is_some_and(|t| t.get("hidden_size").is_some()) { &v["text_config"] } else { v };
        let version = match v["model_type"].as_str().unwrap_or("gemma") {
            "gemma" => Version::Gemma1,
            "gemma2" => Version::Gemma2,
            "gemma3_text" | "gemma3" => Version::Gemma3,
            other => bail!("model_type `{other}` is not a Gemma"),
        };
        let (hidden, heads, layers) =
            (req(v, "hidden_size")?, req(v, "num_attention_heads")?, req(v, "num_hidden_layers")?);
        let head_dim = v["head_dim"].as_i64().unwrap_or(hidden / heads);
        let bidirectional = v["use_bidirectional_attention"].as_bool().unwrap_or(false);
        let window = if version == Version::Gemma1 {
            None
        } else {
            v["sliding_window"].as_i64().map(|w| if bidirectional { w / 2 + 1 } else { w })
        };
        let sliding = match v["layer_types"].as_array() {
            Some(types) => types.iter().map(|t| t.as_str() == Some("sliding_attention")).collect(),
            None => sliding_layers(version, layers, v["sliding_window_pattern"].as_i64().unwrap_or(6), window),
        };
        let (rope_theta, rope_scaling) = rope_from_hf(v, Some("full_attention"), 10000.0)?;
        let rope_local_theta = match v.get("rope_parameters").and_then(|p| p.get("sliding_attention")) {
            Some(p) => p["rope_theta"].as_f64().unwrap_or(10000.0),
            None => v["rope_local_base_freq"].as_f64().unwrap_or(10000.0),
        };
        Ok(Self {
            version,
            vocab_size: req(v, "vocab_size")?,
            hidden_size: hidden,
            intermediate_size: req(v, "intermediate_size")?,
            num_layers: layers,
            num_heads: heads,
            num_kv_heads: v["num_key_value_heads"].as_i64().unwrap_or(heads),
            head_dim,
            rms_norm_eps: v["rms_norm_eps"].as_f64().unwrap_or(1e-6),
            rope_theta,
            rope_local_theta,
            rope_scaling,
            query_pre_attn_scalar: if version == Version::Gemma1 {
                head_dim as f64
            } else {
                v["query_pre_attn_scalar"].as_f64().unwrap_or(head_dim as f64)
            },
            attn_softcap: v["attn_logit_softcapping"].as_f64(),
            final_softcap: v["final_logit_softcapping"].as_f64(),
            sliding_window: window,
            sliding,
            bidirectional,
        })
    }

    pub fn from_gguf(g: &Gguf) -> Result<Self> {
        let arch = g.architecture()?.to_string();
        let version = match arch.as_str() {
            "gemma" => Version::Gemma1,
            "gemma2" => Version::Gemma2,
            "gemma3" | "gemma-embedding" => Version::Gemma3,
            other => bail!("GGUF architecture `{other}` is not a Gemma"),
        };
        let (u, f) = (|k: &str| g.arch_u(k), |k: &str| g.arch_f(k));
        let (hidden, heads, kv_heads, head_dim) = g.attention_dims()?;
        let layers = u("block_count")?;
        // EmbeddingGemma: bidirectional, with transformers' window conversion.
        let bidirectional = arch == "gemma-embedding";
        let window = if version == Version::Gemma1 {
            None
        } else {
            u("attention.sliding_window").ok().map(|w| if bidirectional { w / 2 + 1 } else { w })
        };
        let scaling = match g.get(&format!("{arch}.rope.scaling.type")).and_then(|v| v.as_str()) {
            Some("linear") => RopeScaling::Linear { factor: f("rope.scaling.factor").unwrap_or(1.0) },
            _ => RopeScaling::None,
        };
        Ok(Self {
            version,
            vocab_size: g.get("tokenizer.ggml.tokens").and_then(|v| v.as_array()).map(|a| a.len() as i64).unwrap_or(0),
            hidden_size: hidden,
            intermediate_size: u("feed_forward_length")?,
            num_layers: layers,
            num_heads: heads,
            num_kv_heads: kv_heads,
            head_dim,
            rms_norm_eps: f("attention.layer_norm_rms_epsilon").unwrap_or(1e-6),
            rope_theta: f("rope.freq_base").unwrap_or(if version == Version::Gemma3 { 1e6 } else { 1e4 }),
            rope_local_theta: 10000.0,
            rope_scaling: scaling,
            // llama.cpp: 1/sqrt(head_dim) for every size but Gemma 2/3 27B.
            query_pre_attn_scalar: head_dim as f64,
            attn_softcap: f("attn_logit_softcapping").or(if version == Version::Gemma2 { Some(50.0) } else { None }),
            final_softcap: f("final_logit_softcapping").or(if version == Version::Gemma2 { Some(30.0) } else { None }),
            sliding_window: window,
            sliding: sliding_layers(version, layers, 6, window),
            bidirectional,
        })
    }
}

/// llama.cpp names → Hugging Face names (prefix stripped).
pub fn gguf_name(version: Version, n: &str) -> Option<String> {
    match n {
        "token_embd.weight" => return Some("embed_tokens.weight".into()),
        "output_norm.weight" => return Some("norm.weight".into()),
        _ => {}
    }
    let (layer, tail) = n.strip_prefix("blk.")?.split_once('.')?;
    let hf = match (tail, version) {
        ("attn_norm.weight", _) => "input_layernorm.weight",
        ("ffn_norm.weight", Version::Gemma1) => "post_attention_layernorm.weight",
        ("ffn_norm.weight", _) => "pre_feedforward_layernorm.weight",
        ("post_attention_norm.weight", _) => "post_attention_layernorm.weight",
        ("post_ffw_norm.weight", _) => "post_feedforward_layernorm.weight",
        ("attn_q_norm.weight", _) => "self_attn.q_norm.weight",
        ("attn_k_norm.weight", _) => "self_attn.k_norm.weight",
        ("attn_q.weight", _) => "self_attn.q_proj.weight",
        ("attn_k.weight", _) => "self_attn.k_proj.weight",
        ("attn_v.weight", _) => "self_attn.v_proj.weight",
        ("attn_output.weight", _) => "self_attn.o_proj.weight",
        ("ffn_gate.weight", _) => "mlp.gate_proj.weight",
        ("ffn_up.weight", _) => "mlp.up_proj.weight",
        ("ffn_down.weight", _) => "mlp.down_proj.weight",
        _ => return None,
    };
    Some(format!("layers.{layer}.{hf}"))
}

pub struct Block {
    input_norm: RmsNorm,
    /// Gemma 1: the pre-MLP norm; Gemma 2/3: the norm after attention.
    post_attn_norm: RmsNorm,
    pre_ffn_norm: Option<RmsNorm>,
    post_ffn_norm: Option<RmsNorm>,
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

pub struct Gemma {
    cfg: Config,
    embed: Weight,
    blocks: Vec<Block>,
    norm: RmsNorm,
    rope_global: Rope,
    rope_local: Rope,
    placement: Placement,
    /// The LM head (the embeddings) as the logit lens uses it (kept dense, or streamed).
    lens_head: crate::layers::LensHead,
}

impl Gemma {
    pub fn load(cfg: Config, w: &Weights) -> Result<Self> {
        let (d, h, kv, hd, ff) =
            (cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, cfg.intermediate_size);
        crate::model::check_heads(&w.source, h, kv, hd)?;
        let eps = cfg.rms_norm_eps;
        let norm =
            |n: &str, dim: i64| -> Result<RmsNorm> { Ok(RmsNorm { w: w.shaped(n, &[dim])?, eps, offset: true }) };
        let lin = |n: &str, out: i64, inp: i64| -> Result<Linear> {
            Ok(Linear {
                w: w.weight(&format!("{n}.weight"), &[out, inp])?,
                b: w.opt_shaped(&format!("{n}.bias"), &[out])?,
            })
        };
        let v3 = cfg.version == Version::Gemma3;
        let post = cfg.version != Version::Gemma1;
        let mut blocks = Vec::new();
        for i in 0..cfg.num_layers {
            let p = format!("layers.{i}");
            blocks.push(Block {
                input_norm: norm(&format!("{p}.input_layernorm.weight"), d)?,
                post_attn_norm: norm(&format!("{p}.post_attention_layernorm.weight"), d)?,
                pre_ffn_norm: if post {
                    Some(norm(&format!("{p}.pre_feedforward_layernorm.weight"), d)?)
                } else {
                    None
                },
                post_ffn_norm: if post {
                    Some(norm(&format!("{p}.post_feedforward_layernorm.weight"), d)?)
                } else {
                    None
                },
                q_norm: if v3 { Some(norm(&format!("{p}.self_attn.q_norm.weight"), hd)?) } else { None },
                k_norm: if v3 { Some(norm(&format!("{p}.self_attn.k_norm.weight"), hd)?) } else { None },
                q: lin(&format!("{p}.self_attn.q_proj"), h * hd, d)?,
                k: lin(&format!("{p}.self_attn.k_proj"), kv * hd, d)?,
                v: lin(&format!("{p}.self_attn.v_proj"), kv * hd, d)?,
                o: lin(&format!("{p}.self_attn.o_proj"), d, h * hd)?,
                gate: lin(&format!("{p}.mlp.gate_proj"), ff, d)?,
                up: lin(&format!("{p}.mlp.up_proj"), ff, d)?,
                down: lin(&format!("{p}.mlp.down_proj"), d, ff)?,
            });
        }
        let embed = w.matrix("embed_tokens.weight")?;
        if embed.size()[1] != d {
            bail!("embed_tokens.weight has width {}, expected {d}", embed.size()[1]);
        }
        let (global, local) = if v3 {
            (
                Rope::new(hd as usize, cfg.rope_theta, &cfg.rope_scaling),
                Rope::new(hd as usize, cfg.rope_local_theta, &RopeScaling::None),
            )
        } else {
            (
                Rope::new(hd as usize, cfg.rope_theta, &cfg.rope_scaling),
                Rope::new(hd as usize, cfg.rope_theta, &cfg.rope_scaling),
            )
        };
        Ok(Self {
            norm: norm("norm.weight", d)?,
            embed,
            blocks,
            rope_global: global,
            rope_local: local,
            cfg,
            placement: w.placement.clone(),
            lens_head: Default::default(),
        })
    }

    /// Loads a GGUF of architecture `gemma`, `gemma2` or `gemma3`. llama.cpp stores RMSNorm
    /// weights with the +1 folded in; it is taken out again here.
    pub fn from_gguf(g: &Gguf, opts: &LoadOptions) -> Result<Self> {
        let cfg = Config::from_gguf(g)?;
        let version = cfg.version;
        let fix = |name: &str, t: Tensor| {
            if name.ends_with("norm.weight") || name.ends_with("layernorm.weight") {
                t - 1.0
            } else {
                t
            }
        };
        let rename = |n: &str| gguf_name(version, n);
        let w = Weights::from_gguf(g, opts, cfg.num_layers, rename, fix, |_| true)?;
        Self::load(cfg, &w)
    }
}

/// A batch's attention biases (full, and sliding when the model has a window) and the
/// rotary tables of global and local layers.
pub struct Context {
    full: Tensor,
    local: Option<Tensor>,
    global_rope: (Tensor, Tensor),
    local_rope: (Tensor, Tensor),
}

impl crate::layers::Decoder for Gemma {
    type Block = Block;
    type Context = Context;
    fn blocks(&self) -> &[Block] {
        &self.blocks
    }
    fn placement(&self) -> &Placement {
        &self.placement
    }
    fn embed(&self, ids: &Tensor) -> Tensor {
        let e = self.embed.embedding(ids);
        let normalizer =
            Tensor::from_slice(&[(self.cfg.hidden_size as f64).sqrt() as f32]).to_kind(e.kind()).to_device(e.device());
        e * normalizer
    }
    fn context(&self, layout: &Layout, t: i64, kind: Kind, device: Device) -> Context {
        let c = &self.cfg;
        let on = |(a, b): (Tensor, Tensor)| (a.to_device(device), b.to_device(device));
        Context {
            full: layout.bias(!c.bidirectional, None, kind).to_device(device),
            local: c.sliding_window.map(|w| layout.bias(!c.bidirectional, Some(w), kind).to_device(device)),
            global_rope: on(layout.rope(&self.rope_global, t, kind, device)),
            local_rope: on(layout.rope(&self.rope_local, t, kind, device)),
        }
    }
    fn block(&self, i: usize, b: &Block, cx: &Context, x: Tensor) -> Tensor {
        let c = &self.cfg;
        let sliding = c.sliding[i];
        let (cos, sin) =
            if sliding { (&cx.local_rope.0, &cx.local_rope.1) } else { (&cx.global_rope.0, &cx.global_rope.1) };
        let bias = if sliding { cx.local.as_ref().unwrap_or(&cx.full) } else { &cx.full };
        let hsx = b.input_norm.forward(&x);
        let (bs, t, hd) = (hsx.size()[0], hsx.size()[1], c.head_dim);
        let mut q = b.q.forward(&hsx).view([bs, t, c.num_heads, hd]);
        let mut k = b.k.forward(&hsx).view([bs, t, c.num_kv_heads, hd]);
        if let (Some(qn), Some(kn)) = (&b.q_norm, &b.k_norm) {
            q = qn.forward(&q);
            k = kn.forward(&k);
        }
        let q = apply_rope(&q.transpose(1, 2), cos, sin);
        let k = apply_rope(&k.transpose(1, 2), cos, sin);
        let v = split_heads(&b.v.forward(&hsx), c.num_kv_heads, hd);
        let scale = c.query_pre_attn_scalar.powf(-0.5);
        let a = b.o.forward(&merge_heads(&attention(&q, &k, &v, bias, scale, c.attn_softcap)));
        let mlp = |h: &Tensor| b.down.forward(&(b.gate.forward(h).gelu("tanh") * b.up.forward(h)));
        match (&b.pre_ffn_norm, &b.post_ffn_norm) {
            // Gemma 2/3: norms after attention and around the MLP.
            (Some(pre), Some(post)) => {
                let x = x + b.post_attn_norm.forward(&a);
                &x + post.forward(&mlp(&pre.forward(&x)))
            }
            // Gemma 1: pre-norm only.
            _ => {
                let x = x + a;
                &x + mlp(&b.post_attn_norm.forward(&x))
            }
        }
    }
    fn final_norm(&self, x: &Tensor) -> Tensor {
        self.norm.forward(x)
    }
    fn resident(b: &Block) -> Block {
        Block {
            input_norm: b.input_norm.clone(),
            post_attn_norm: b.post_attn_norm.clone(),
            pre_ffn_norm: b.pre_ffn_norm.clone(),
            post_ffn_norm: b.post_ffn_norm.clone(),
            q_norm: b.q_norm.clone(),
            k_norm: b.k_norm.clone(),
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

impl HiddenStates for Gemma {
    /// Gemma's head is its embeddings; the soft-cap of Gemma 2 is monotonic, so the top
    /// token is that of the raw logits.
    fn lens_norm(&self, state: usize, hidden: &Tensor) -> Result<Tensor> {
        if self.cfg.bidirectional {
            bail!("a bidirectional encoder (EmbeddingGemma) has no LM head");
        }
        Ok(crate::layers::lens_norm(self, state, hidden))
    }
    fn lens_top1(&self, normed: &Tensor) -> Result<Tensor> {
        Ok(self.lens_head.top1(&self.embed, normed))
    }
    crate::model::hidden_dims!(num_layers, hidden_size, embed);
    fn causal(&self) -> bool {
        !self.cfg.bidirectional
    }
    crate::model::decoder_runs!();
    fn packs(&self) -> bool {
        !self.cfg.bidirectional
    }
    fn forward_packed(&self, ids: &Tensor, positions: &Tensor, allowed: &Tensor) -> Result<Vec<Tensor>> {
        if self.cfg.bidirectional {
            bail!("a bidirectional encoder (EmbeddingGemma) has no next-token predictions to score");
        }
        Ok(crate::layers::states(self, ids, &Layout::Packed { positions, allowed }))
    }
    /// Gemma ties its LM head to the token embeddings (unscaled).
    fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        if self.cfg.bidirectional {
            bail!("a bidirectional encoder (EmbeddingGemma) has no LM head");
        }
        let head = self.embed.tensor();
        let logits = hidden.to_device(head.device()).matmul(&head.tr());
        Ok(match self.cfg.final_softcap {
            Some(c) => (logits / c).tanh() * c,
            None => logits,
        })
    }
}
