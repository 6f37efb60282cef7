//! Tokenizers: Hugging Face `tokenizer.json` (via the `tokenizers` crate), or the GGUF's own
//! tokenizer rebuilt from its metadata ([`crate::gguf_tokenizer`]) when no tokenizer.json is given.
//!
//! Special tokens follow the model's convention: `encode` applies the tokenizer's own
//! post-processor (BOS for Llama/Gemma tokenizer.json, [CLS]…[SEP] for BERT) or, for a GGUF
//! tokenizer, `tokenizer.ggml.add_bos_token`. `BosPolicy` can force BOS on or off.
use crate::gguf::Gguf;
use anyhow::{anyhow, bail, Context, Result};
use std::path::Path;
use tokenizers::Tokenizer;

/// Whether sentences start with the BOS token.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BosPolicy {
    /// As the tokenizer (or GGUF metadata) says.
    Auto,
    Always,
    Never,
}

impl BosPolicy {
    /// The names pipelines use.
    pub const NAMES: &'static [&'static str] = &["auto", "always", "never"];
}

impl std::str::FromStr for BosPolicy {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "auto" => Self::Auto,
            "true" | "always" => Self::Always,
            "false" | "never" => Self::Never,
            other => bail!("bos must be auto, always or never, not `{other}`"),
        })
    }
}

pub struct TextTokenizer {
    tok: Tokenizer,
    /// Add BOS ourselves (GGUF tokenizers, whose BPE has no post-processor).
    add_bos: bool,
    /// Append this EOS ourselves (a GGUF whose `tokenizer.ggml.add_eos_token` is set).
    add_eos: Option<u32>,
    pub bos_id: Option<u32>,
    pub pad_id: u32,
    policy: BosPolicy,
    /// Inconsistent GGUF tokenizer metadata found while rebuilding it (already logged).
    pub warnings: Vec<String>,
    /// Whether a sentence starting with BOS's own text has been reported (once per tokenizer).
    warned_double_bos: std::sync::atomic::AtomicBool,
}

impl TextTokenizer {
    /// A tokenizer.json, with BOS/pad ids from the file's special tokens, an optional
    /// tokenizer_config.json beside it, or the GGUF's metadata.
    pub fn from_file(path: &Path, gguf: Option<&Gguf>, policy: BosPolicy) -> Result<Self> {
        let bytes = mexa_core::file::read(path, mexa_core::FileKind::Config)?;
        let mut tok =
            Tokenizer::from_bytes(&bytes).map_err(|e| anyhow!("{}: not a tokenizer.json ({e})", path.display()))?;
        // A tokenizer.json may carry padding and truncation settings (sentence-transformers
        // folders pad every sentence to 128 tokens and cut there). transformers ignores them
        // unless a call asks for them, and so does mexa: padding comes from the batcher, with
        // its attention mask, and a sentence is never silently shortened.
        tok.with_padding(None);
        tok.with_truncation(None).map_err(|e| anyhow!("{}: {e}", path.display()))?;
        let cfg: serde_json::Value = path
            .parent()
            .map(|d| d.join("tokenizer_config.json"))
            .and_then(|p| mexa_core::file::read(&p, mexa_core::FileKind::Config).ok())
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let token_str = |k: &str| -> Option<String> {
            match &cfg[k] {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Object(o) => o.get("content").and_then(|c| c.as_str()).map(str::to_string),
                _ => None,
            }
        };
        let meta_id = |k: &str| gguf.and_then(|g| g.get(k)).and_then(|v| v.as_u64()).map(|v| v as u32);
        let bos_id = token_str("bos_token")
            .and_then(|t| tok.token_to_id(&t))
            .or_else(|| meta_id("tokenizer.ggml.bos_token_id"))
            .or_else(|| ["<bos>", "<s>", "<|begin_of_text|>"].iter().find_map(|t| tok.token_to_id(t)));
        let pad_id = token_str("pad_token")
            .and_then(|t| tok.token_to_id(&t))
            .or_else(|| meta_id("tokenizer.ggml.padding_token_id"))
            .or_else(|| ["<pad>", "[PAD]", "<|endoftext|>"].iter().find_map(|t| tok.token_to_id(t)))
            .unwrap_or(0);
        Ok(Self {
            tok,
            add_bos: false,
            add_eos: None,
            bos_id,
            pad_id,
            policy,
            warnings: Vec::new(),
            warned_double_bos: Default::default(),
        })
    }

    /// The GGUF's own tokenizer, rebuilt from its metadata ([`crate::gguf_tokenizer`]): byte-level
    /// BPE with the split rules its `tokenizer.ggml.pre` names, or a SentencePiece vocabulary.
    pub fn from_gguf(g: &Gguf, policy: BosPolicy) -> Result<Self> {
        let t = crate::gguf_tokenizer::from_gguf(g)?;
        for w in &t.warnings {
            tracing::warn!("{w}");
        }
        let eos = if t.add_eos { t.eos_id } else { None };
        Ok(Self {
            warnings: t.warnings,
            warned_double_bos: Default::default(),
            tok: t.tokenizer,
            add_bos: t.add_bos,
            add_eos: eos,
            bos_id: t.bos_id,
            pad_id: t.pad_id.or(t.eos_id).unwrap_or(0),
            policy,
        })
    }

    /// Token ids of one sentence, with the model's special tokens but never a trailing EOS
    /// (a text to be continued, as lm-evaluation-harness encodes contexts).
    pub fn encode_without_eos(&self, text: &str) -> Result<Vec<i64>> {
        let mut ids = self.encode(text)?;
        if let Some(eos) = self.add_eos {
            if ids.last() == Some(&(eos as i64)) {
                ids.pop();
            }
        }
        Ok(ids)
    }

    /// Token ids of one sentence, with the model's special tokens.
    pub fn encode(&self, text: &str) -> Result<Vec<i64>> {
        let enc = self.tok.encode(text, true).map_err(|e| anyhow!("tokenizing {text:?}: {e}"))?;
        let mut ids: Vec<i64> = enc.get_ids().iter().map(|&i| i as i64).collect();
        let bos = self.bos_id.map(|b| b as i64);
        let has_bos = bos.is_some() && ids.first().copied() == bos;
        if self.add_bos && self.policy != BosPolicy::Never {
            // A GGUF tokenizer adds BOS itself; a text that starts with BOS's own text keeps that
            // token too, as transformers and llama.cpp do (two BOS), and says so once.
            let bos = bos.context("the GGUF asks for BOS, but names no BOS token")?;
            if has_bos && !self.warned_double_bos.swap(true, std::sync::atomic::Ordering::Relaxed) {
                let start: String = text.chars().take(40).collect();
                tracing::warn!("the sentence {start:?} starts with the BOS token's own text: it now starts with two BOS tokens, as in transformers and llama.cpp");
            }
            ids.insert(0, bos);
            if let Some(eos) = self.add_eos {
                ids.push(eos as i64);
            }
            return Ok(ids);
        }
        let want_bos = match self.policy {
            BosPolicy::Auto => has_bos || self.add_bos,
            BosPolicy::Always => true,
            BosPolicy::Never => false,
        };
        match (want_bos, has_bos) {
            (true, false) => ids.insert(0, bos.context("BOS asked for, but the tokenizer has no BOS token")?),
            (false, true) => {
                ids.remove(0);
            }
            _ => {}
        }
        if let Some(eos) = self.add_eos {
            ids.push(eos as i64);
        }
        Ok(ids)
    }

    /// The tokenizer's ids alone: no BOS, EOS or other special tokens added around the text.
    pub fn encode_bare(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self.tok.encode(text, false).map_err(|e| anyhow!("tokenizing {text:?}: {e}"))?.get_ids().to_vec())
    }

    /// The vocabulary entry of an id, as the tokenizer spells it (`▁Hello`, `Ġworld`, `##ing`).
    pub fn piece(&self, id: u32) -> Option<String> {
        self.tok.id_to_token(id)
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.tok.decode(ids, false).map_err(|e| anyhow!("{e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_and_truncation_in_tokenizer_json_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        let json = serde_json::json!({
            "version": "1.0",
            "truncation": {"direction": "Right", "max_length": 2, "strategy": "LongestFirst", "stride": 0},
            "padding": {"strategy": {"Fixed": 8}, "direction": "Right", "pad_to_multiple_of": null,
                        "pad_id": 0, "pad_type_id": 0, "pad_token": "[PAD]"},
            "added_tokens": [],
            "normalizer": null,
            "pre_tokenizer": {"type": "Whitespace"},
            "post_processor": null,
            "decoder": null,
            "model": {"type": "WordLevel", "vocab": {"[PAD]": 0, "[UNK]": 1, "hello": 2, "world": 3}, "unk_token": "[UNK]"}
        });
        std::fs::write(&path, serde_json::to_vec(&json).unwrap()).unwrap();
        // The file really does pad and truncate when used as is.
        let raw = Tokenizer::from_file(&path).unwrap();
        assert_eq!(raw.encode("hello world hello", true).unwrap().get_ids(), &[2, 3, 0, 0, 0, 0, 0, 0]);
        let t = TextTokenizer::from_file(&path, None, BosPolicy::Auto).unwrap();
        assert_eq!(t.encode("hello world hello").unwrap(), vec![2, 3, 2]);
        assert_eq!(t.pad_id, 0);
    }
}
