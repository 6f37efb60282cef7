//! A GGUF's own tokenizer, rebuilt from its metadata alone (`tokenizer.ggml.*`), so that token
//! ids equal those of the model's tokenizer.json and of transformers'
//! `AutoTokenizer.from_pretrained(dir, gguf_file=...)`.
//!
//! Four vocabulary kinds are rebuilt:
//! - **byte-level BPE** (`tokenizer.ggml.model = gpt2`: Llama 3, Qwen2/2.5/3, SmolLM, OLMo,
//!   StarCoder, Command-R, Mistral Tekken, BLOOM, ...): the text is first cut by the split rules
//!   named by `tokenizer.ggml.pre` ([`PRE_TOKENIZERS`], the same regular expressions as the
//!   model's tokenizer.json, llama.cpp's `llm_tokenizer_bpe` and transformers' GGUF loader), then
//!   merged with the file's merges;
//! - **SentencePiece BPE** (`tokenizer.ggml.model = llama`: Llama 1/2, Mistral v0.1–v0.3,
//!   Gemma 1/2/3, Phi-3): merges recovered from the vocabulary and its scores exactly as
//!   transformers' `generate_merges` does, byte fallback, `▁` for spaces;
//! - **WordPiece** (`tokenizer.ggml.model = bert`: BERT, bge, MiniLM): the converter's
//!   `▁word`/`piece` spelling turned back into `word`/`##piece`, BERT's normaliser and split,
//!   [CLS] … [SEP];
//! - **SentencePiece Unigram** (`tokenizer.ggml.model = t5`: T5, XLM-R, e5, bge-m3): the pieces
//!   and scores with the file's precompiled normaliser, as transformers' XLM-R/T5 tokenizers run
//!   them.
//!
//! Metadata that contradicts itself (a merge naming a token the vocabulary lacks, a BOS that is
//! an ordinary word, a `tokenizer.ggml.pre` that another family's vocabulary carries) is an error
//! or a warning naming the key, never silently different ids.
//!
//! Anything else (an unknown `tokenizer.ggml.pre`, a BPE vocabulary that names none, another
//! model type) is an error naming the value and pointing at the `tokenizer` parameter:
//! guessing would tokenize silently differently from the model's own tokenizer.
use crate::gguf::{Gguf, Value};
use anyhow::{anyhow, bail, Context, Result};
use serde_json::json;
use std::collections::{HashMap, HashSet};
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::{AddedToken, DecoderWrapper, NormalizerWrapper, PreTokenizerWrapper, Tokenizer};

const LLAMA3: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN35: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const TEKKEN: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const GPT4O: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const BLOOM: &str = r" ?[^(\s|.,!?…。，、।۔،)]+";
const DEEPSEEK_CODER: &[&str] = &[r"[\r\n]", r"\s?\p{L}+", r"\s?\p{P}+", r"[一-龥ࠀ-一가-퟿]+", r"\p{N}"];
const DEEPSEEK_LLM: &[&str] = &[
    r"[\r\n]",
    // Written with escapes: an editor or copy that normalises to NFC would turn U+1FD3, U+1FDB,
    // U+1F7D, U+1FBE, U+2126 and U+212A into other code points and break the ranges.
    "\\s?[A-Za-z\u{B5}\u{C0}-\u{D6}\u{D8}-\u{F6}\u{F8}-\u{1BA}\u{1BC}-\u{1BF}\u{1C4}-\u{293}\u{295}-\u{2AF}\u{370}-\u{373}\u{376}\u{377}\u{37B}-\u{37D}\u{37F}\u{386}\u{388}-\u{38A}\u{38C}\u{38E}-\u{3A1}\u{3A3}-\u{3F5}\u{3F7}-\u{481}\u{48A}-\u{52F}\u{531}-\u{556}\u{10A0}-\u{10C5}\u{13A0}-\u{13F5}\u{13F8}-\u{13FD}\u{1C90}-\u{1CBA}\u{1CBD}-\u{1CBF}\u{1D00}-\u{1D2B}\u{1D6B}-\u{1D77}\u{1D79}-\u{1D9A}\u{1E00}-\u{1F15}\u{1F18}-\u{1F1D}\u{1F20}-\u{1F45}\u{1F48}-\u{1F4D}\u{1F50}-\u{1F57}\u{1F59}\u{1F5B}\u{1F5D}\u{1F5F}-\u{1F7D}\u{1F80}-\u{1FB4}\u{1FB6}-\u{1FBC}\u{1FBE}\u{1FC2}-\u{1FC4}\u{1FC6}-\u{1FCC}\u{1FD0}-\u{1FD3}\u{1FD6}-\u{1FDB}\u{1FE0}-\u{1FEC}\u{1FF2}-\u{1FF4}\u{1FF6}-\u{1FFC}\u{2102}\u{2107}\u{210A}-\u{2113}\u{2115}\u{2119}-\u{211D}\u{2124}\u{2126}\u{2128}\u{212A}-\u{212D}\u{212F}-\u{2134}\u{2139}\u{213C}-\u{213F}\u{2145}-\u{2149}\u{214E}\u{2183}\u{2184}\u{2C00}-\u{2C7B}\u{2C7E}-\u{2CE4}\u{2CEB}-\u{2CEE}\u{2CF2}\u{2CF3}\u{A640}-\u{A66D}\u{A680}-\u{A69B}\u{A722}-\u{A76F}\u{A771}-\u{A787}\u{A78B}-\u{A78E}\u{AB70}-\u{ABBF}\u{FB00}-\u{FB06}\u{FB13}-\u{FB17}\u{FF21}-\u{FF3A}\u{FF41}-\u{FF5A}\u{10400}-\u{1044F}\u{104B0}-\u{104D3}\u{104D8}-\u{104FB}\u{10C80}-\u{10CB2}\u{10CC0}-\u{10CF2}\u{118A0}-\u{118DF}\u{1E900}-\u{1E943}]+",
    r"\s?[!-/:-~！-／：-～‘-‟　-。]+",
    r"\s+$",
    r"[一-龥ࠀ-一가-퟿]+",
    r"\p{N}+",
];
const FALCON: &[&str] = &[
    r"[\p{P}\$\+<=>\^~\|`]+",
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)",
    r"[0-9][0-9][0-9]",
];

/// How one `tokenizer.ggml.pre` value cuts text before byte-level BPE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreSplit {
    /// GPT-2's rule, as `ByteLevel { use_regex: true }` applies it.
    Gpt2,
    /// Every digit on its own, then GPT-2's rule (`Digits { individual_digits: true }`).
    DigitsThenGpt2,
    /// These regular expressions in turn, each piece kept (`Split { behavior: Isolated }`).
    Regexes(&'static [&'static str]),
}

/// What llama.cpp (src/llama-vocab.cpp) and the models' tokenizer.json files do for each
/// `tokenizer.ggml.pre` of the families mexa loads. The flag says whether BOS is added when
/// the GGUF has no `tokenizer.ggml.add_bos_token`, and whether a piece that is itself a
/// vocabulary entry is taken whole (`ignore_merges`, Llama 3 and Tekken).
pub const PRE_TOKENIZERS: &[(&str, PreSplit, PreFlags)] = &[
    ("gpt-2", PreSplit::Gpt2, PreFlags::NONE),
    ("phi-2", PreSplit::Gpt2, PreFlags::NONE),
    ("roberta-bpe", PreSplit::Gpt2, PreFlags::NONE),
    ("mpt", PreSplit::Gpt2, PreFlags::NFC),
    ("olmo", PreSplit::Gpt2, PreFlags::NFC),
    ("jais", PreSplit::Gpt2, PreFlags::NONE),
    ("exaone4", PreSplit::Gpt2, PreFlags::NONE),
    ("smollm", PreSplit::DigitsThenGpt2, PreFlags::NONE),
    ("starcoder", PreSplit::DigitsThenGpt2, PreFlags::NONE),
    ("refact", PreSplit::DigitsThenGpt2, PreFlags::NONE),
    ("command-r", PreSplit::DigitsThenGpt2, PreFlags::NFC),
    ("codeshell", PreSplit::DigitsThenGpt2, PreFlags::NONE),
    ("exaone", PreSplit::DigitsThenGpt2, PreFlags::NONE),
    ("minerva-7b", PreSplit::DigitsThenGpt2, PreFlags::NONE),
    ("llama3", PreSplit::Regexes(&[LLAMA3]), PreFlags::LLAMA3),
    ("llama-v3", PreSplit::Regexes(&[LLAMA3]), PreFlags::LLAMA3),
    ("llama-bpe", PreSplit::Regexes(&[LLAMA3]), PreFlags::LLAMA3),
    ("falcon3", PreSplit::Regexes(&[LLAMA3]), PreFlags::LLAMA3),
    ("dbrx", PreSplit::Regexes(&[LLAMA3]), PreFlags::NONE),
    ("smaug-bpe", PreSplit::Regexes(&[LLAMA3]), PreFlags::NONE),
    ("chatglm-bpe", PreSplit::Regexes(&[LLAMA3]), PreFlags::NONE),
    ("glm4", PreSplit::Regexes(&[LLAMA3]), PreFlags::NONE),
    ("qwen2", PreSplit::Regexes(&[QWEN2]), PreFlags::NFC),
    ("stablelm2", PreSplit::Regexes(&[QWEN2]), PreFlags::NONE),
    ("megrez", PreSplit::Regexes(&[QWEN2]), PreFlags::NONE),
    ("deepseek-r1-qwen", PreSplit::Regexes(&[QWEN2]), PreFlags::NONE),
    ("qwen35", PreSplit::Regexes(&[QWEN35]), PreFlags::NFC),
    ("tekken", PreSplit::Regexes(&[TEKKEN]), PreFlags::LLAMA3),
    ("gpt-4o", PreSplit::Regexes(&[GPT4O]), PreFlags::NONE),
    ("llama4", PreSplit::Regexes(&[GPT4O]), PreFlags::NONE),
    ("bloom", PreSplit::Regexes(&[BLOOM]), PreFlags::NONE),
    ("poro-chat", PreSplit::Regexes(&[BLOOM]), PreFlags::NONE),
    ("gpt3-finnish", PreSplit::Regexes(&[BLOOM]), PreFlags::NONE),
    ("deepseek-coder", PreSplit::Regexes(DEEPSEEK_CODER), PreFlags::NONE),
    ("deepseek-llm", PreSplit::Regexes(DEEPSEEK_LLM), PreFlags::NONE),
    ("falcon", PreSplit::Regexes(FALCON), PreFlags::NONE),
];

/// Per-pre-tokenizer settings beyond the split (see [`PRE_TOKENIZERS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PreFlags {
    pub add_bos_by_default: bool,
    pub ignore_merges: bool,
    /// The model's tokenizer.json composes the text to NFC first (Qwen2/2.5/3, Command-R, and
    /// the GPT-NeoX vocabulary of MPT and OLMo);
    /// llama.cpp and transformers' GGUF loader skip it, so "e\u{301}" would split differently.
    pub nfc: bool,
}

impl PreFlags {
    const NONE: Self = Self { add_bos_by_default: false, ignore_merges: false, nfc: false };
    const LLAMA3: Self = Self { add_bos_by_default: true, ignore_merges: true, nfc: false };
    const NFC: Self = Self { add_bos_by_default: false, ignore_merges: false, nfc: true };
}

/// A tokenizer rebuilt from a GGUF, with the special-token facts the caller needs.
pub struct GgufTokenizer {
    pub tokenizer: Tokenizer,
    pub add_bos: bool,
    pub add_eos: bool,
    pub bos_id: Option<u32>,
    pub eos_id: Option<u32>,
    pub pad_id: Option<u32>,
    /// Inconsistent metadata that does not stop the tokenizer (each names the file and key).
    pub warnings: Vec<String>,
}

const HINT: &str =
    "give the model's tokenizer.json with the embed stage's `tokenizer` parameter (or put it beside the .gguf)";

fn strings<'a>(g: &'a Gguf, key: &str) -> Result<Vec<&'a str>> {
    let arr = g
        .get(key)
        .and_then(Value::as_array)
        .ok_or_else(|| anyhow!("{}: no `{key}` array in the metadata", g.path.display()))?;
    arr.iter()
        .enumerate()
        .map(|(i, v)| v.as_str().ok_or_else(|| anyhow!("{}: `{key}`[{i}] is not a string", g.path.display())))
        .collect()
}

fn int_array(g: &Gguf, key: &str) -> Option<Vec<i64>> {
    g.get(key).and_then(Value::as_array).map(|a| a.iter().map(|v| v.as_f64().unwrap_or(0.0) as i64).collect())
}

/// Builds the tokenizer a GGUF describes. Errors name the file and the metadata value.
pub fn from_gguf(g: &Gguf) -> Result<GgufTokenizer> {
    let path = g.path.display();
    let model = g
        .get("tokenizer.ggml.model")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("{path}: no tokenizer.ggml.model in the metadata; {HINT}"))?;
    let tokens = strings(g, "tokenizer.ggml.tokens")?;
    let types = int_array(g, "tokenizer.ggml.token_type");
    if let Some(t) = &types {
        if t.len() != tokens.len() {
            bail!("{path}: tokenizer.ggml.token_type has {} entries for {} tokens", t.len(), tokens.len());
        }
    }
    let arch = g.architecture()?;
    let flag = |k: &str| g.get(k).and_then(Value::as_bool);
    let id = |k: &str| g.get(k).and_then(Value::as_u64).map(|v| v as u32).filter(|&v| (v as usize) < tokens.len());
    let mut warnings = Vec::new();
    // (tokenizer, byte-level alphabet, BOS by default, EOS by default, BOS key, EOS key)
    let (mut tokenizer, byte_level, default_bos, default_eos, bos_key, eos_key) = match model {
        "gpt2" => {
            let pre = g.get("tokenizer.ggml.pre").and_then(Value::as_str).unwrap_or("");
            let Some(&(_, split, flags)) = PRE_TOKENIZERS.iter().find(|(name, ..)| *name == pre) else {
                let known: Vec<&str> = PRE_TOKENIZERS.iter().map(|(n, ..)| *n).collect();
                if pre.is_empty() || pre == "default" {
                    bail!("{path}: this byte-level BPE vocabulary does not say which pre-tokenizer it was trained with (tokenizer.ggml.pre is {}); mexa will not guess, since a wrong split changes every token; {HINT}", if pre.is_empty() { "missing".to_string() } else { format!("`{pre}`") });
                }
                bail!("{path}: tokenizer.ggml.pre `{pre}` is not one mexa knows (known: {}); {HINT}", known.join(", "));
            };
            warnings.extend(pre_contradiction(g, &tokens, pre));
            let tok = byte_level_bpe(g, &tokens, types.as_deref(), split, flags)?;
            (tok, true, flags.add_bos_by_default, false, "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id")
        }
        "llama" => {
            let tok = sentencepiece_bpe(g, &tokens, types.as_deref(), arch)?;
            (tok, false, true, false, "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id")
        }
        "bert" => {
            let tok = wordpiece(g, &tokens, types.as_deref(), &mut warnings)?;
            (tok, false, true, true, "tokenizer.ggml.cls_token_id", "tokenizer.ggml.seperator_token_id")
        }
        "t5" => {
            let tok = unigram(g, &tokens)?;
            // T5 ends a sentence with </s> and has no BOS; XLM-R-style files say both.
            (tok, false, false, true, "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id")
        }
        other => bail!("{path}: tokenizer.ggml.model `{other}` cannot be rebuilt from a GGUF by mexa (it rebuilds `gpt2` byte-level BPE, `llama` SentencePiece BPE, `bert` WordPiece and `t5` Unigram vocabularies); {HINT}"),
    };
    add_special_tokens(&mut tokenizer, &tokens, types.as_deref(), byte_level);
    let add_bos = flag("tokenizer.ggml.add_bos_token").unwrap_or(default_bos);
    let add_eos = flag("tokenizer.ggml.add_eos_token").unwrap_or(default_eos);
    let bos_id = id(bos_key).or_else(|| id("tokenizer.ggml.bos_token_id"));
    let eos_id = id(eos_key).or_else(|| id("tokenizer.ggml.eos_token_id"));
    for (what, key, tid, added) in [("BOS", bos_key, bos_id, add_bos), ("EOS", eos_key, eos_id, add_eos)] {
        let (Some(t), Some(types)) = (tid, &types) else { continue };
        if types[t as usize] == 1 {
            let msg = format!(
                "{path}: {key} {t} is `{}`, an ordinary token (tokenizer.ggml.token_type 1), not a control token",
                tokens[t as usize]
            );
            if added {
                bail!("{msg}, and the file asks to add it as {what} to every sentence; fix the metadata or {HINT}");
            }
            warnings.push(msg);
        }
    }
    Ok(GgufTokenizer {
        tokenizer,
        add_bos,
        add_eos,
        bos_id,
        eos_id,
        pad_id: id("tokenizer.ggml.padding_token_id"),
        warnings,
    })
}

/// Tokens that only one family's vocabulary has at that id, and the `tokenizer.ggml.pre` values
/// of that family: a file that carries the token but names another pre-tokenizer contradicts
/// itself (a hand-edited or mislabelled conversion), and would split text differently from
/// the model's own tokenizer.
const FINGERPRINTS: &[(&str, u32, &[&str])] = &[
    ("<|begin_of_text|>", 128000, &["llama3", "llama-v3", "llama-bpe", "smaug-bpe"]),
    ("<|endoftext|>", 151643, &["qwen2", "qwen35", "deepseek-r1-qwen", "megrez"]),
    ("<BOS_TOKEN>", 5, &["command-r"]),
];

fn pre_contradiction(g: &Gguf, tokens: &[&str], pre: &str) -> Option<String> {
    FINGERPRINTS.iter().find_map(|&(tok, at, family)| {
        (tokens.get(at as usize) == Some(&tok) && !family.contains(&pre)).then(|| {
            format!(
                "{}: tokenizer.ggml.pre is `{pre}`, but token {at} is `{tok}`, which marks a vocabulary whose pre-tokenizer is `{}`; the split follows `{pre}` as the file says, and may differ from the model's own tokenizer",
                g.path.display(),
                family[0]
            )
        })
    })
}

fn component<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("tokenizer component {v}: {e}"))
}

/// GPT-2's byte-to-character table (`bytes_to_unicode`).
fn byte_alphabet() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut n = 0u32;
    for b in 0..=255u8 {
        let printable = (b'!'..=b'~').contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b);
        table[b as usize] = if printable {
            char::from(b)
        } else {
            n += 1;
            char::from_u32(255 + n).expect("valid code point")
        };
    }
    table
}

fn byte_level_bpe(
    g: &Gguf,
    tokens: &[&str],
    types: Option<&[i64]>,
    split: PreSplit,
    flags: PreFlags,
) -> Result<Tokenizer> {
    let merges = strings(g, "tokenizer.ggml.merges")?;
    let alphabet = byte_alphabet();
    let spelled: HashSet<char> = alphabet.iter().copied().collect();
    // A token written outside the byte alphabet (a mislabelled special token) is respelled as
    // its UTF-8 bytes, as transformers does, so the vocabulary keeps every id. A user-defined
    // one (type 4: GPT-NeoX's runs of spaces, which the converter writes as real spaces) is an
    // added token of the model's tokenizer.json, matched in the text before the split: it keeps
    // its own spelling too, so `add_special_tokens` can add it under its id.
    let mut vocab = Vocab::default();
    let mut raw = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        if t.chars().all(|c| spelled.contains(&c)) {
            vocab.insert(t.to_string(), i as u32);
        } else {
            vocab.entry(t.bytes().map(|b| alphabet[b as usize]).collect()).or_insert(i as u32);
            if types.and_then(|ty| ty.get(i)) == Some(&4) {
                raw.push((t.to_string(), i as u32));
            }
        }
    }
    for (t, i) in raw {
        vocab.entry(t).or_insert(i);
    }
    let merges = parse_merges(g, &merges)?;
    check_merges(g, &vocab, &merges)?;
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .ignore_merges(flags.ignore_merges)
        .build()
        .map_err(|e| anyhow!("{}: building the BPE model: {e}", g.path.display()))?;
    let mut tok = Tokenizer::new(bpe);
    if flags.nfc {
        tok.with_normalizer(Some(component::<NormalizerWrapper>(json!({"type": "NFC"}))))
            .map_err(|e| anyhow!("{e}"))?;
    }
    let byte_level = |use_regex: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex});
    let pre = match split {
        PreSplit::Gpt2 => byte_level(true),
        PreSplit::DigitsThenGpt2 => {
            json!({"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": true}, byte_level(true)]})
        }
        PreSplit::Regexes(res) => {
            let mut seq: Vec<serde_json::Value> = res
                .iter()
                .map(|r| json!({"type": "Split", "pattern": {"Regex": r}, "behavior": "Isolated", "invert": false}))
                .collect();
            seq.push(byte_level(false));
            json!({"type": "Sequence", "pretokenizers": seq})
        }
    };
    tok.with_pre_tokenizer(Some(component::<PreTokenizerWrapper>(pre)));
    tok.with_decoder(Some(component::<DecoderWrapper>(
        json!({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true}),
    )));
    Ok(tok)
}

fn parse_merges(g: &Gguf, merges: &[&str]) -> Result<Vec<(String, String)>> {
    merges
        .iter()
        .enumerate()
        .map(|(i, m)| {
            m.split_once(' ').map(|(a, b)| (a.to_string(), b.to_string())).ok_or_else(|| {
                anyhow!("{}: tokenizer.ggml.merges[{i}] `{m}` is not two tokens separated by a space", g.path.display())
            })
        })
        .collect()
}

/// A merge whose halves or result the vocabulary lacks: the BPE builder would refuse it with no
/// position, and llama.cpp would skip it silently.
fn check_merges(g: &Gguf, vocab: &Vocab, merges: &[(String, String)]) -> Result<()> {
    for (i, (a, b)) in merges.iter().enumerate() {
        for t in [a.clone(), b.clone(), format!("{a}{b}")] {
            if !vocab.contains_key(&t) {
                bail!(
                    "{}: tokenizer.ggml.merges[{i}] `{a} {b}` names `{t}`, which is not in tokenizer.ggml.tokens; the metadata is inconsistent; {HINT}",
                    g.path.display()
                );
            }
        }
    }
    Ok(())
}

/// SentencePiece vocabularies as their tokenizer.json files define them: a BPE with byte
/// fallback whose merges come from the vocabulary ([`generate_merges`]), and a normaliser that
/// turns spaces into `▁` and prepends one (Llama 1/2, Mistral, Phi-3: so " Hello" is `▁` `▁Hello`,
/// as SentencePiece itself and the models' tokenizer.json give, not `▁Hello`, which a Metaspace
/// pre-tokenizer gives when the text already starts with a space). Gemma files get their
/// whitespace tokens respelled and merges ordered by file position, runs of one whitespace
/// character (user-defined pieces) first and longest first, as Gemma's tokenizer.json lists them.
fn sentencepiece_bpe(g: &Gguf, tokens: &[&str], types: Option<&[i64]>, arch: &str) -> Result<Tokenizer> {
    let gemma = matches!(arch, "gemma" | "gemma2" | "gemma3");
    let tokens: Vec<String> = if gemma {
        // A token of spaces only is stored as real spaces; GemmaTokenizer looks it up as ▁s.
        tokens
            .iter()
            .map(|t| {
                if t.contains(' ') && t.trim().is_empty() {
                    "\u{2581}".repeat(t.chars().count())
                } else {
                    t.to_string()
                }
            })
            .collect()
    } else {
        tokens.iter().map(|t| t.to_string()).collect()
    };
    let scores: Vec<f64> = if gemma {
        let run = |t: &str| {
            let mut c = t.chars();
            c.next().is_some_and(|first| matches!(first, '\u{2581}' | '\n' | '\t') && c.all(|x| x == first))
        };
        (0..tokens.len())
            .map(|i| {
                let user_run = types.and_then(|ty| ty.get(i)) == Some(&4) && run(&tokens[i]);
                if user_run {
                    1.0
                } else {
                    -(i as f64)
                }
            })
            .collect()
    } else {
        let s = g.get("tokenizer.ggml.scores").and_then(Value::as_array).with_context(|| {
            format!("{}: no tokenizer.ggml.scores for a SentencePiece vocabulary; {HINT}", g.path.display())
        })?;
        s.iter().map(|v| v.as_f64().unwrap_or(0.0)).collect()
    };
    let merges = generate_merges(&tokens, &scores);
    let mut vocab = Vocab::default();
    for (i, t) in tokens.iter().enumerate() {
        vocab.insert(t.clone(), i as u32);
    }
    let mut builder = BPE::builder().vocab_and_merges(vocab, merges).fuse_unk(true).byte_fallback(true);
    if gemma {
        builder = builder.unk_token("<unk>".to_string());
    }
    let bpe = builder.build().map_err(|e| anyhow!("{}: building the BPE model: {e}", g.path.display()))?;
    let mut tok = Tokenizer::new(bpe);
    let sp_decoder = |strip: bool| {
        let mut seq = vec![
            json!({"type": "Replace", "pattern": {"String": "\u{2581}"}, "content": " "}),
            json!({"type": "ByteFallback"}),
            json!({"type": "Fuse"}),
        ];
        if strip {
            seq.push(json!({"type": "Strip", "content": " ", "start": 1, "stop": 0}));
        }
        component::<DecoderWrapper>(json!({"type": "Sequence", "decoders": seq}))
    };
    if gemma {
        tok.with_normalizer(Some(component::<NormalizerWrapper>(
            json!({"type": "Replace", "pattern": {"String": " "}, "content": "\u{2581}"}),
        )))
        .map_err(|e| anyhow!("{e}"))?;
        tok.with_pre_tokenizer(Some(component::<PreTokenizerWrapper>(
            json!({"type": "Split", "pattern": {"String": " "}, "behavior": "MergedWithPrevious", "invert": false}),
        )));
        tok.with_decoder(Some(sp_decoder(false)));
    } else {
        let prefix = g.get("tokenizer.ggml.add_space_prefix").and_then(Value::as_bool).unwrap_or(true);
        let replace = json!({"type": "Replace", "pattern": {"String": " "}, "content": "\u{2581}"});
        let normalizer = if prefix {
            json!({"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "\u{2581}"}, replace]})
        } else {
            replace
        };
        tok.with_normalizer(Some(component::<NormalizerWrapper>(normalizer))).map_err(|e| anyhow!("{e}"))?;
        tok.with_decoder(Some(sp_decoder(prefix)));
    }
    Ok(tok)
}

/// WordPiece as llama.cpp's converter writes it (`BertModel.set_vocab`): a word-initial piece
/// is stored as `▁piece`, a continuation `##piece` as `piece`, control tokens as they are. The
/// tokenizer is BERT's (normaliser, split on whitespace and punctuation, `##` continuations,
/// 100 characters per word at most). A GGUF does not say whether the model lower-cases: an
/// uncased vocabulary (no piece with a letter A-Z, like bge and MiniLM; they do hold a few
/// upper-case symbols such as `ℝ`) is lower-cased with accents
/// stripped, as llama.cpp always does; a vocabulary with such pieces is taken as cased,
/// with a warning, since llama.cpp would lower-case it.
fn wordpiece(g: &Gguf, tokens: &[&str], types: Option<&[i64]>, warnings: &mut Vec<String>) -> Result<Tokenizer> {
    let path = g.path.display();
    let mut vocab = serde_json::Map::with_capacity(tokens.len());
    let mut cased = false;
    for (i, t) in tokens.iter().enumerate() {
        let special = matches!(types.and_then(|ty| ty.get(i)), Some(2 | 3)) || (t.starts_with('[') && t.ends_with(']'));
        let piece = if special {
            t.to_string()
        } else if let Some(word) = t.strip_prefix('\u{2581}') {
            cased |= word.bytes().any(|b| b.is_ascii_uppercase());
            word.to_string()
        } else {
            format!("##{t}")
        };
        vocab.entry(piece).or_insert(json!(i));
    }
    let unk = g
        .get("tokenizer.ggml.unknown_token_id")
        .and_then(Value::as_u64)
        .and_then(|u| tokens.get(u as usize))
        .ok_or_else(|| anyhow!("{path}: a WordPiece vocabulary needs tokenizer.ggml.unknown_token_id; {HINT}"))?;
    if cased {
        warnings.push(format!("{path}: this WordPiece vocabulary has pieces with upper-case letters A-Z, so mexa does not lower-case the text (the GGUF does not say; llama.cpp always lower-cases)"));
    }
    let model = json!({"type": "WordPiece", "vocab": vocab, "unk_token": unk, "continuing_subword_prefix": "##", "max_input_chars_per_word": 100});
    let model: tokenizers::ModelWrapper = component(model);
    let mut tok = Tokenizer::new(model);
    tok.with_normalizer(Some(component::<NormalizerWrapper>(json!({"type": "BertNormalizer", "clean_text": true,
        "handle_chinese_chars": true, "strip_accents": null, "lowercase": !cased}))))
        .map_err(|e| anyhow!("{e}"))?;
    tok.with_pre_tokenizer(Some(component::<PreTokenizerWrapper>(json!({"type": "BertPreTokenizer"}))));
    tok.with_decoder(Some(component::<DecoderWrapper>(json!({"type": "WordPiece", "prefix": "##", "cleanup": true}))));
    Ok(tok)
}

/// SentencePiece Unigram (T5, XLM-R and the embedding models built on it) as transformers'
/// XLM-R and T5 tokenizers run it: the file's precompiled normaliser, whitespace split, `▁`
/// prepended to every word, Viterbi over the pieces' scores.
fn unigram(g: &Gguf, tokens: &[&str]) -> Result<Tokenizer> {
    let path = g.path.display();
    let scores = g
        .get("tokenizer.ggml.scores")
        .and_then(Value::as_array)
        .ok_or_else(|| anyhow!("{path}: no tokenizer.ggml.scores for a Unigram vocabulary; {HINT}"))?;
    if scores.len() != tokens.len() {
        bail!("{path}: tokenizer.ggml.scores has {} entries for {} tokens", scores.len(), tokens.len());
    }
    let unk = g.get("tokenizer.ggml.unknown_token_id").and_then(Value::as_u64).map(|u| u as usize);
    if unk.is_none_or(|u| u >= tokens.len()) {
        bail!("{path}: a Unigram vocabulary needs tokenizer.ggml.unknown_token_id within the vocabulary; {HINT}");
    }
    let vocab: Vec<(String, f64)> =
        tokens.iter().zip(scores).map(|(t, s)| (t.to_string(), s.as_f64().unwrap_or(0.0))).collect();
    let model = tokenizers::models::unigram::Unigram::from(vocab, unk, false)
        .map_err(|e| anyhow!("{path}: building the Unigram model: {e}"))?;
    let mut tok = Tokenizer::new(model);
    if let Some(map) = g.get("tokenizer.ggml.precompiled_charsmap").and_then(Value::as_array) {
        let bytes: Vec<u8> = map.iter().map(|v| v.as_f64().unwrap_or(0.0) as i64 as u8).collect();
        if !bytes.is_empty() {
            let pre = tokenizers::normalizers::Precompiled::from(&bytes)
                .map_err(|e| anyhow!("{path}: tokenizer.ggml.precompiled_charsmap: {e}"))?;
            tok.with_normalizer(Some(NormalizerWrapper::Precompiled(pre))).map_err(|e| anyhow!("{e}"))?;
        }
    }
    let prefix = g.get("tokenizer.ggml.add_space_prefix").and_then(Value::as_bool).unwrap_or(true);
    let scheme = if prefix { "always" } else { "never" };
    tok.with_pre_tokenizer(Some(component::<PreTokenizerWrapper>(json!({"type": "Sequence", "pretokenizers": [
        {"type": "WhitespaceSplit"},
        {"type": "Metaspace", "replacement": "\u{2581}", "prepend_scheme": scheme, "split": true}]}))));
    tok.with_decoder(Some(component::<DecoderWrapper>(
        json!({"type": "Metaspace", "replacement": "\u{2581}", "prepend_scheme": scheme, "split": true}),
    )));
    Ok(tok)
}

/// Merges implied by a vocabulary and one score per token, as transformers'
/// `generate_merges(vocab, vocab_scores)` computes them: every split of every token into two
/// vocabulary entries, ordered by the token's score (highest first), then by the lengths of the
/// two halves (longest first), then by the halves' ids; duplicate tokens count once, at their
/// first position, with the last id and score (Python dict semantics).
pub fn generate_merges(tokens: &[String], scores: &[f64]) -> Vec<(String, String)> {
    let mut ids: HashMap<&str, usize> = HashMap::with_capacity(tokens.len());
    let mut order: Vec<&str> = Vec::with_capacity(tokens.len());
    let mut score_of: HashMap<&str, f64> = HashMap::with_capacity(tokens.len());
    for (i, t) in tokens.iter().enumerate() {
        if ids.insert(t, i).is_none() {
            order.push(t);
        }
        score_of.insert(t, scores[i]);
    }
    // (left, right, score, chars of left, chars of right)
    let mut merges: Vec<(&str, &str, f64, usize, usize)> = Vec::new();
    for &t in &order {
        let score = score_of[t];
        let mut local = Vec::new();
        for (k, (byte, _)) in t.char_indices().enumerate().skip(1) {
            let (l, r) = t.split_at(byte);
            if let (Some(&li), Some(&ri)) = (ids.get(l), ids.get(r)) {
                local.push((li, ri, l, r, k));
            }
        }
        local.sort_by_key(|&(li, ri, ..)| (li, ri));
        let n = t.chars().count();
        merges.extend(local.into_iter().map(|(_, _, l, r, k)| (l, r, score, k, n - k)));
    }
    // Python's sorted(reverse=True) is stable: equal keys keep their order.
    merges.sort_by(|a, b| (b.2, b.3, b.4).partial_cmp(&(a.2, a.3, a.4)).unwrap_or(std::cmp::Ordering::Equal));
    merges.into_iter().map(|(l, r, ..)| (l.to_string(), r.to_string())).collect()
}

/// Control and unknown tokens (types 3 and 2: `<s>`, `<unk>`, `[CLS]`) become special tokens
/// matched whole, as the models' tokenizer.json files list them; user-defined ones (type 4) plain
/// added tokens, also matched whole, as llama.cpp and transformers both do. In a byte-level
/// vocabulary a control token spelled outside the byte alphabet is a mislabel and is skipped.
fn add_special_tokens(tok: &mut Tokenizer, tokens: &[&str], types: Option<&[i64]>, byte_level: bool) {
    let Some(types) = types else { return };
    let spelled: Option<HashSet<char>> = byte_level.then(|| byte_alphabet().into_iter().collect());
    let control: Vec<AddedToken> = tokens
        .iter()
        .zip(types)
        .filter(|(t, &ty)| (ty == 3 || ty == 2) && spelled.as_ref().is_none_or(|s| t.chars().all(|c| s.contains(&c))))
        .map(|(t, _)| AddedToken::from(t.to_string(), true).normalized(false))
        .collect();
    if !control.is_empty() {
        let _ = tok.add_special_tokens(control);
    }
    let user: Vec<AddedToken> = tokens
        .iter()
        .zip(types)
        .filter(|(t, &ty)| ty == 4 && tok.token_to_id(t).is_some())
        .map(|(t, _)| AddedToken::from(t.to_string(), false).normalized(false))
        .collect();
    if !user.is_empty() {
        let _ = tok.add_tokens(user);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// A GGUF with only tokenizer metadata: a byte-level vocabulary of the bytes of "hello
    /// world" and a few merges.
    fn tiny(model: &str, pre: Option<&str>) -> Gguf {
        let s = |v: &str| Value::Str(v.to_string());
        let tokens = ["h", "e", "l", "o", "Ġ", "w", "r", "d", "he", "ll", "hell", "hello", "Ġw", "<|bos|>"];
        let mut m = BTreeMap::new();
        m.insert("general.architecture".to_string(), s("llama"));
        m.insert("tokenizer.ggml.model".to_string(), s(model));
        if let Some(p) = pre {
            m.insert("tokenizer.ggml.pre".to_string(), s(p));
        }
        m.insert("tokenizer.ggml.tokens".to_string(), Value::Array(tokens.iter().map(|t| s(t)).collect()));
        m.insert(
            "tokenizer.ggml.merges".to_string(),
            Value::Array(["h e", "l l", "he ll", "Ġ w"].iter().map(|t| s(t)).collect()),
        );
        let mut types = vec![Value::I64(1); tokens.len()];
        types[13] = Value::I64(3);
        m.insert("tokenizer.ggml.token_type".to_string(), Value::Array(types));
        m.insert("tokenizer.ggml.bos_token_id".to_string(), Value::U64(13));
        Gguf { path: "tiny.gguf".into(), version: 3, metadata: m, tensors: vec![] }
    }

    fn err(g: &Gguf) -> String {
        format!("{:#}", from_gguf(g).err().expect("an error"))
    }

    #[test]
    fn unknown_or_missing_pre_tokenizer_is_an_error_that_names_it() {
        let e = err(&tiny("gpt2", Some("my-new-model")));
        assert!(e.contains("tiny.gguf") && e.contains("`my-new-model`") && e.contains("tokenizer.json"), "{e}");
        let e = err(&tiny("gpt2", None));
        assert!(e.contains("missing") && e.contains("tokenizer.json"), "{e}");
        let e = err(&tiny("gpt2", Some("default")));
        assert!(e.contains("`default`"), "{e}");
        let e = err(&tiny("rwkv", Some("default")));
        assert!(e.contains("tokenizer.ggml.model `rwkv`") && e.contains("tokenizer.json"), "{e}");
    }

    #[test]
    fn llama3_takes_whole_vocabulary_words_and_adds_bos_by_default() {
        // "hello" is a vocabulary entry, but no merge chain builds it (he+ll gives hell, and
        // there is no hell+o merge): Llama 3 (ignore_merges) takes it whole, GPT-2 does not.
        let l3 = from_gguf(&tiny("gpt2", Some("llama-bpe"))).unwrap();
        assert_eq!(l3.tokenizer.encode("hello", false).unwrap().get_ids(), &[11]);
        assert!(l3.add_bos && l3.bos_id == Some(13));
        let g2 = from_gguf(&tiny("gpt2", Some("gpt-2"))).unwrap();
        assert_eq!(g2.tokenizer.encode("hello", false).unwrap().get_ids(), &[10, 3]);
        assert!(!g2.add_bos);
        // The control token is matched whole, never split.
        assert_eq!(g2.tokenizer.encode("<|bos|>hello", false).unwrap().get_ids(), &[13, 10, 3]);
    }

    fn set(g: &mut Gguf, key: &str, v: Value) {
        g.metadata.insert(key.to_string(), v);
    }

    #[test]
    fn a_merge_naming_an_unknown_token_is_a_located_error() {
        let mut g = tiny("gpt2", Some("gpt-2"));
        let merges = ["h e", "l l", "he ll", "Ġ x"].iter().map(|t| Value::Str(t.to_string())).collect();
        set(&mut g, "tokenizer.ggml.merges", Value::Array(merges));
        let e = err(&g);
        assert!(e.contains("tiny.gguf") && e.contains("tokenizer.ggml.merges[3] `Ġ x`") && e.contains("`x`"), "{e}");
    }

    #[test]
    fn a_bos_that_is_an_ordinary_token_is_an_error_when_added_and_a_warning_otherwise() {
        let mut g = tiny("gpt2", Some("gpt-2"));
        set(&mut g, "tokenizer.ggml.bos_token_id", Value::U64(11));
        set(&mut g, "tokenizer.ggml.add_bos_token", Value::Bool(true));
        let e = err(&g);
        assert!(e.contains("tokenizer.ggml.bos_token_id 11 is `hello`") && e.contains("every sentence"), "{e}");
        set(&mut g, "tokenizer.ggml.add_bos_token", Value::Bool(false));
        let t = from_gguf(&g).unwrap();
        assert!(t.warnings.len() == 1 && t.warnings[0].contains("ordinary token"), "{:?}", t.warnings);
    }

    #[test]
    fn a_pre_tokenizer_that_another_familys_vocabulary_contradicts_is_a_warning() {
        let mut g = tiny("gpt2", Some("gpt-2"));
        let mut toks: Vec<Value> = g.get("tokenizer.ggml.tokens").and_then(Value::as_array).unwrap().to_vec();
        toks[5] = Value::Str("<BOS_TOKEN>".into());
        toks.push(Value::Str("w".into()));
        set(&mut g, "tokenizer.ggml.tokens", Value::Array(toks));
        let mut types = vec![Value::I64(1); 15];
        types[13] = Value::I64(3);
        types[5] = Value::I64(3);
        set(&mut g, "tokenizer.ggml.token_type", Value::Array(types));
        let t = from_gguf(&g).unwrap();
        assert!(
            t.warnings.iter().any(|w| w.contains("tokenizer.ggml.pre is `gpt-2`") && w.contains("`command-r`")),
            "{:?}",
            t.warnings
        );
        set(&mut g, "tokenizer.ggml.pre", Value::Str("command-r".into()));
        assert!(from_gguf(&g).unwrap().warnings.is_empty());
    }

    #[test]
    fn a_sentence_starting_with_bos_text_gets_bos_too_as_transformers_and_llama_cpp_do() {
        let t = crate::TextTokenizer::from_gguf(&tiny("gpt2", Some("llama-bpe")), crate::BosPolicy::Auto).unwrap();
        assert_eq!(t.encode("hello").unwrap(), vec![13, 11]);
        assert_eq!(t.encode("<|bos|>hello").unwrap(), vec![13, 13, 11]);
        let never = crate::TextTokenizer::from_gguf(&tiny("gpt2", Some("llama-bpe")), crate::BosPolicy::Never).unwrap();
        assert_eq!(never.encode("hello").unwrap(), vec![11]);
    }

    #[test]
    fn every_split_rule_compiles() {
        for (name, split, _) in PRE_TOKENIZERS {
            if let PreSplit::Regexes(res) = split {
                for r in *res {
                    tokenizers::pre_tokenizers::split::Split::new(
                        tokenizers::pre_tokenizers::split::SplitPattern::Regex(r.to_string()),
                        tokenizers::SplitDelimiterBehavior::Isolated,
                        false,
                    )
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                }
            }
        }
    }

    #[test]
    fn merges_follow_score_then_lengths_then_ids() {
        let toks: Vec<String> = ["a", "b", "c", "ab", "bc", "abc", "ab"].iter().map(|s| s.to_string()).collect();
        // "abc" scores highest: its splits a|bc and ab|c come first, longer left half first.
        let scores = [0.0, 0.0, 0.0, -1.0, -2.0, 5.0, -3.0];
        let m = generate_merges(&toks, &scores);
        let pairs: Vec<(&str, &str)> = m.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        // The duplicate "ab" counts once, at its first position with its last score (-3).
        assert_eq!(pairs, vec![("ab", "c"), ("a", "bc"), ("b", "c"), ("a", "b")]);
    }

    #[test]
    fn byte_alphabet_matches_gpt2() {
        let a = byte_alphabet();
        assert_eq!(a[b' ' as usize], 'Ġ');
        assert_eq!(a[b'\n' as usize], 'Ċ');
        assert_eq!(a[b'A' as usize], 'A');
        assert_eq!(a.iter().collect::<HashSet<_>>().len(), 256);
    }
}
