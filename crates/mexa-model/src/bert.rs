//! Encoders: BERT and XLM-RoBERTa. Post-norm transformer encoder with learned positions;
//! bidirectional attention over non-padding tokens. Hidden states: the embedding output and
//! every layer's output (no final norm), as Hugging Face returns them.
use crate::layers::{attention, attention_bias, merge_heads, split_heads, LayerNorm, Linear};
use crate::model::{req, HiddenStates};
use crate::weights::Weights;
use anyhow::{bail, Result};
use serde_json::Value;
use tch::{Kind, Tensor};

#[derive(Debug, Clone)]
pub struct Config {
    /// XLM-R/RoBERTa: positions start after the padding index and skip padding.
    pub roberta: bool,
    pub vocab_size: i64,
    pub hidden_size: i64,
    pub intermediate_size: i64,
    pub num_layers: i64,
    pub num_heads: i64,
    pub layer_norm_eps: f64,
    pub pad_token_id: i64,
    pub hidden_act: String,
}

impl Config {
    pub fn from_hf(v: &Value) -> Result<Self> {
        let mt = v["model_type"].as_str().unwrap_or("bert");
        let act = v["hidden_act"].as_str().unwrap_or("gelu").to_string();
        if !matches!(act.as_str(), "gelu" | "gelu_new" | "gelu_pytorch_tanh" | "relu") {
            bail!("hidden_act `{act}` is not supported for encoders (gelu, gelu_new, gelu_pytorch_tanh, relu)");
        }
        Ok(Self {
            roberta: matches!(mt, "roberta" | "xlm-roberta" | "camembert"),
            vocab_size: req(v, "vocab_size")?,
            hidden_size: req(v, "hidden_size")?,
            intermediate_size: req(v, "intermediate_size")?,
            num_layers: req(v, "num_hidden_layers")?,
            num_heads: req(v, "num_attention_heads")?,
            layer_norm_eps: v["layer_norm_eps"].as_f64().unwrap_or(1e-12),
            pad_token_id: v["pad_token_id"].as_i64().unwrap_or(if mt == "bert" { 0 } else { 1 }),
            hidden_act: act,
        })
    }
}

struct Layer {
    q: Linear,
    k: Linear,
    v: Linear,
    attn_out: Linear,
    attn_ln: LayerNorm,
    inter: Linear,
    out: Linear,
    out_ln: LayerNorm,
}

pub struct Bert {
    cfg: Config,
    word: Tensor,
    pos: Tensor,
    token_type: Option<Tensor>,
    emb_ln: LayerNorm,
    layers: Vec<Layer>,
}

impl Bert {
    pub fn load(cfg: Config, w: &Weights) -> Result<Self> {
        let (d, ff) = (cfg.hidden_size, cfg.intermediate_size);
        let ln = |p: &str| -> Result<LayerNorm> {
            let (wt, b) = match (w.opt(&format!("{p}.weight")), w.opt(&format!("{p}.gamma"))) {
                (Some(_), _) => (w.shaped(&format!("{p}.weight"), &[d])?, w.shaped(&format!("{p}.bias"), &[d])?),
                (None, Some(_)) => (w.shaped(&format!("{p}.gamma"), &[d])?, w.shaped(&format!("{p}.beta"), &[d])?),
                _ => bail!("missing weight `{p}.weight`"),
            };
            Ok(LayerNorm { w: wt, b, eps: cfg.layer_norm_eps })
        };
        let lin = |p: &str, out: i64, inp: i64| -> Result<Linear> {
            Ok(Linear {
                w: w.weight(&format!("{p}.weight"), &[out, inp])?,
                b: Some(w.shaped(&format!("{p}.bias"), &[out])?),
            })
        };
        let mut layers = Vec::new();
        for i in 0..cfg.num_layers {
            let p = format!("encoder.layer.{i}");
            layers.push(Layer {
                q: lin(&format!("{p}.attention.self.query"), d, d)?,
                k: lin(&format!("{p}.attention.self.key"), d, d)?,
                v: lin(&format!("{p}.attention.self.value"), d, d)?,
                attn_out: lin(&format!("{p}.attention.output.dense"), d, d)?,
                attn_ln: ln(&format!("{p}.attention.output.LayerNorm"))?,
                inter: lin(&format!("{p}.intermediate.dense"), ff, d)?,
                out: lin(&format!("{p}.output.dense"), d, ff)?,
                out_ln: ln(&format!("{p}.output.LayerNorm"))?,
            });
        }
        let table = |n: &str| -> Result<Tensor> {
            let t = w.dense(n)?;
            if t.size().len() != 2 || t.size()[1] != d {
                anyhow::bail!("weight `{n}` has shape {:?}, expected [rows, {d}] (transposed?)", t.size());
            }
            Ok(t.shallow_clone())
        };
        Ok(Self {
            word: table("embeddings.word_embeddings.weight")?,
            pos: table("embeddings.position_embeddings.weight")?,
            token_type: w.opt("embeddings.token_type_embeddings.weight"),
            emb_ln: ln("embeddings.LayerNorm")?,
            layers,
            cfg,
        })
    }

    fn act(&self, x: &Tensor) -> Tensor {
        match self.cfg.hidden_act.as_str() {
            "gelu" => x.gelu("none"),
            "relu" => x.relu(),
            _ => x.gelu("tanh"),
        }
    }
}

impl HiddenStates for Bert {
    crate::model::hidden_dims!(num_layers, hidden_size, word);
    fn causal(&self) -> bool {
        false
    }
    fn forward(&self, ids: &Tensor, mask: &Tensor) -> Result<Vec<Tensor>> {
        let c = &self.cfg;
        let (b, t) = (ids.size()[0], ids.size()[1]);
        let device = ids.device();
        let positions = if c.roberta {
            let m = ids.ne(c.pad_token_id).to_kind(Kind::Int64);
            m.cumsum(1, Kind::Int64) * &m + c.pad_token_id
        } else {
            Tensor::arange(t, (Kind::Int64, device)).unsqueeze(0).expand([b, t], false)
        };
        if positions.max().int64_value(&[]) >= self.pos.size()[0] {
            bail!("a sentence of {t} tokens is longer than the model's {} positions", self.pos.size()[0]);
        }
        let mut x = Tensor::embedding(&self.word, ids, -1, false, false)
            + Tensor::embedding(&self.pos, &positions, -1, false, false);
        if let Some(tt) = &self.token_type {
            x += tt.get(0);
        }
        let mut x = self.emb_ln.forward(&x);
        let bias = attention_bias(mask, false, None, x.kind());
        let (h, hd) = (c.num_heads, c.hidden_size / c.num_heads);
        let scale = 1.0 / (hd as f64).sqrt();
        let mut states = vec![x.shallow_clone()];
        for l in &self.layers {
            let q = split_heads(&l.q.forward(&x), h, hd);
            let k = split_heads(&l.k.forward(&x), h, hd);
            let v = split_heads(&l.v.forward(&x), h, hd);
            let a = l.attn_out.forward(&merge_heads(&attention(&q, &k, &v, &bias, scale, None)));
            let y = l.attn_ln.forward(&(a + &x));
            let z = l.out.forward(&self.act(&l.inter.forward(&y)));
            x = l.out_ln.forward(&(z + &y));
            states.push(x.shallow_clone());
        }
        Ok(states)
    }
}
