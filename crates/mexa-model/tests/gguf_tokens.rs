//! Every bundled GGUF's tokenizer, rebuilt by mexa from the GGUF alone, against transformers'
//! tokenizer read from the same file (`AutoTokenizer.from_pretrained(dir, gguf_file=...)`), on
//! all 50 units of every bundled UDHR language (~445). The expected ids were computed once by
//! tools/make_token_fixtures.py and committed as a token count and a blake3 hash per language
//! (tests/fixtures/tokens/*.tsv), so this test needs no Python. Gemma 3 is checked both ways:
//! from the GGUF's SentencePiece vocabulary and from its tokenizer.json.
mod common;
use common::asset;
use mexa_model::gguf::Gguf;
use mexa_model::{BosPolicy, TextTokenizer};
use rayon::prelude::*;
use std::path::PathBuf;

/// Compares every language of the fixture; reports all mismatching languages at once.
fn check(tok: &TextTokenizer, fixture: &str) {
    let fx = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/tokens"))
        .join(format!("{fixture}.tsv"));
    let text = std::fs::read_to_string(&fx).unwrap();
    let rows: Vec<(&str, usize, &str)> = text
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f[0], f[1].parse().unwrap(), f[2])
        })
        .collect();
    assert!(rows.len() >= 440, "{}: only {} languages", fx.display(), rows.len());
    let udhr = asset("corpora/udhr");
    let bad: Vec<String> = rows
        .par_iter()
        .filter_map(|&(lang, want_n, want_hash)| {
            let body = std::fs::read_to_string(udhr.join(format!("{lang}.txt"))).unwrap();
            let ids: Vec<Vec<i64>> =
                body.strip_suffix('\n').unwrap_or(&body).split('\n').map(|s| tok.encode(s).unwrap()).collect();
            let n: usize = ids.iter().map(Vec::len).sum();
            let joined = ids
                .iter()
                .map(|s| s.iter().map(i64::to_string).collect::<Vec<_>>().join(" "))
                .collect::<Vec<_>>()
                .join("\n");
            let hash = blake3::hash(joined.as_bytes()).to_hex().to_string();
            (n != want_n || hash != want_hash).then(|| {
                format!(
                    "{lang}: {n} tokens (transformers: {want_n}){}",
                    if n == want_n { ", different ids" } else { "" }
                )
            })
        })
        .collect();
    assert!(
        bad.is_empty(),
        "{fixture}: {} of {} languages differ from transformers:\n{}",
        bad.len(),
        rows.len(),
        bad.join("\n")
    );
}

fn gguf_tokenizer(rel: &str) -> TextTokenizer {
    TextTokenizer::from_gguf(&Gguf::open(&asset(rel)).unwrap(), BosPolicy::Auto).unwrap()
}

#[test]
fn smollm2_gguf_tokenizer_matches_transformers_on_all_udhr() {
    check(&gguf_tokenizer("models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf"), "smollm2-135m-gguf");
}

#[test]
fn gemma3_gguf_sentencepiece_tokenizer_matches_transformers_on_all_udhr() {
    check(&gguf_tokenizer("models/gemma3-270m/gemma-3-270m-q4_k_m.gguf"), "gemma3-270m-gguf");
}

#[test]
fn gemma3_tokenizer_json_matches_transformers_on_all_udhr() {
    let g = Gguf::open(&asset("models/gemma3-270m/gemma-3-270m-q4_k_m.gguf")).unwrap();
    let tok = TextTokenizer::from_file(&asset("models/gemma3-270m/tokenizer.json"), Some(&g), BosPolicy::Auto).unwrap();
    check(&tok, "gemma3-270m-tokenizer-json");
}

#[test]
fn qwen25_05b_gguf_tokenizer_matches_transformers_on_all_udhr() {
    check(
        &gguf_tokenizer("models/qwen2.5-coder-0.5b-instruct/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"),
        "qwen2.5-coder-0.5b-gguf",
    );
}

#[test]
fn qwen25_15b_gguf_tokenizer_matches_transformers_on_all_udhr() {
    check(
        &gguf_tokenizer("models/qwen2.5-coder-1.5b-instruct/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"),
        "qwen2.5-coder-1.5b-gguf",
    );
}
