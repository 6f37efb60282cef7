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
mod common;
use common::asset;
use mexa_model::gguf::Gguf;
use mexa_model::{BosPolicy, TextTokenizer};
use std::path::PathBuf;

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
        let tok = match TextTokenizer::from_gguf(&Gguf::open(&path).unwrap(), BosPolicy::Never) {
            Ok(t) => t,
            Err(e) => {
                bad.push(format!("{v}: {e:#}"));
                continue;
            }
        };
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
        let mut n = 0;
        for (t, o) in tests.iter().zip(&outs) {
            let want: Vec<u32> = o.split_whitespace().map(|x| x.parse().unwrap()).collect();
            let got = tok.encode_bare(t).unwrap();
            if got != want {
                n += 1;
                bad.push(format!("{v} {:?}: mexa {got:?}, original {want:?}", t.chars().take(50).collect::<String>()));
            }
        }
        println!("LCPP {v}: {n} of {} differ", tests.len().min(outs.len()));
    }
    assert!(bad.is_empty(), "{} differences:\n{}", bad.len(), bad.join("\n"));
}

// Strings of tests/fixtures/tokens/hard/strings.json that look like special tokens ("<s>",
// "</s>", "<unk>" ...): SentencePiece reads them as text, the models' tokenizer.json and mexa
// match them as the special tokens.
const SPM_SPECIAL_TEXT: &[usize] = &[273, 274, 275, 276, 277, 278, 279, 298, 299];
// Where transformers 5 rebuilds a Llama/Mistral SentencePiece tokenizer in code (a Metaspace
// pre-tokenizer) instead of reading its tokenizer.json (a normaliser that prepends `▁`): text
// that starts with whitespace, or follows a special token, loses one `▁`. The same strings in
// both vocabularies (plus 278 and 298, special-token text read differently by the GGUF loader).
const TF5_METASPACE: &[usize] = &[
    1, 2, 3, 4, 11, 13, 20, 21, 22, 25, 32, 33, 34, 37, 47, 48, 49, 52, 62, 63, 64, 67, 77, 78, 79, 82, 89, 90, 91, 94,
    128, 129, 150, 193, 195, 197, 199, 201, 203, 205, 207, 209, 211, 213, 215, 264, 267, 271, 275, 277, 301, 302, 308,
];

#[test]
fn sentencepiece_bpe_llama_and_mistral() {
    let spm = gguf(&format!("{LCPP}/ggml-vocab-llama-spm.gguf"));
    check(&spm, "llama-spm.spm.ids", SPM_SPECIAL_TEXT, "special-token text, which SentencePiece reads as text");
    let mut tf5: Vec<usize> = TF5_METASPACE.iter().copied().chain([278, 298]).collect();
    tf5.sort();
    check(&spm, "llama-spm.gguf.ids", &tf5, "transformers 5's GGUF loader drops the prefix ▁ (TF5_METASPACE)");
    let mistral = json("tokenizers/mistral-7b-v0.1");
    check(&mistral, "mistral-spm.json.ids", &[], "");
    check(&mistral, "mistral-spm.auto.ids", TF5_METASPACE, "AutoTokenizer rebuilds Mistral's tokenizer with Metaspace");
    check(&gguf(&format!("{LCPP}/ggml-vocab-phi-3.gguf")), "phi-3.gguf.ids", &[], "");
}

#[test]
fn gemma() {
    check(&gguf("models/gemma3-270m/gemma-3-270m-q4_k_m.gguf"), "gemma3.json.ids", &[], "");
    check(&json("models/gemma3-270m"), "gemma3.json.ids", &[], "");
}

#[test]
fn byte_level_bpe_with_tokenizer_json() {
    for (g, j, fx) in [
        ("ggml-vocab-llama-bpe.gguf", "tokenizers/llama3", "llama3"),
        ("ggml-vocab-qwen2.gguf", "tokenizers/qwen2.5", "qwen2"),
        ("ggml-vocab-gpt-2.gguf", "tokenizers/gpt2", "gpt-2"),
        ("ggml-vocab-command-r.gguf", "tokenizers/command-r-plus", "command-r"),
    ] {
        check(&gguf(&format!("{LCPP}/{g}")), &format!("{fx}.json.ids"), &[], "");
        check(&json(j), &format!("{fx}.json.ids"), &[], "");
    }
    check(&json("tokenizers/mistral-nemo"), "tekken.json.ids", &[], "");
    // transformers' GGUF loader, where it differs from the model's tokenizer.json: Llama 3 without
    // ignore_merges ("Cửa Việt") and with `<|endoftext|>` added as a new token 128256; Qwen2.5
    // without the NFC normaliser of its tokenizer.json ("e\u{301}").
    let l3 = gguf(&format!("{LCPP}/ggml-vocab-llama-bpe.gguf"));
    check(&l3, "llama3.gguf.ids", &[169, 170, 281, 282], "transformers' GGUF loader: no ignore_merges, a new token");
    check(
        &gguf(&format!("{LCPP}/ggml-vocab-qwen2.gguf")),
        "qwen2.gguf.ids",
        &[178, 180],
        "no NFC in transformers' GGUF loader",
    );
}

#[test]
fn byte_level_bpe_from_gguf_alone() {
    // No tokenizer.json of these models is in a registry; transformers' GGUF loader splits them
    // all with GPT-2's rule, while their tokenizer.json files (and llama.cpp, and mexa) split
    // digits (StarCoder: each, Falcon: by threes after punctuation runs), and DeepSeek by letter,
    // punctuation, CJK and digit classes. mexa equals the original tokenizers on llama.cpp's
    // strings (the test above); here the differences from transformers are pinned.
    let cases: [(&str, &[usize]); 4] = [
        ("starcoder", &[240, 269]),
        (
            "falcon",
            &[
                130, 152, 198, 199, 201, 203, 204, 205, 207, 209, 210, 211, 212, 213, 214, 215, 219, 220, 221, 222,
                223, 231, 233, 254, 312,
            ],
        ),
        ("deepseek-llm", &[83, 112, 120, 121, 158, 159, 160, 161, 240, 251, 269, 281, 282]),
        ("deepseek-coder", &[112, 240, 249, 250, 251, 253, 269, 281, 282]),
    ];
    for (v, pinned) in cases {
        check(
            &gguf(&format!("{LCPP}/ggml-vocab-{v}.gguf")),
            &format!("{v}.gguf.ids"),
            pinned,
            "transformers' GGUF loader splits with GPT-2's rule",
        );
    }
}

#[test]
fn wordpiece_from_gguf_and_tokenizer_json() {
    let bge = gguf(&format!("{LCPP}/ggml-vocab-bert-bge.gguf"));
    check(&bge, "bert-bge.vocab.ids", &[], "");
    check(&json("models/all-minilm-l6-v2"), "minilm.json.ids", &[], "");
    // [CLS] … [SEP], as the tokenizer adds them.
    assert_eq!(bge.encode("Hello world").unwrap(), specials("bert-bge.vocab"));
}

#[test]
fn unigram_from_gguf() {
    // 290 is "<mask>": the reference tokenizer, rebuilt from the file's pieces, appends <mask>
    // after the file's padding entries (id 250047); the file, like XLM-R's own tokenizer, says 250001.
    let xlmr = gguf(&format!("{LCPP}/ggml-vocab-nomic-bert-moe.gguf"));
    check(&xlmr, "nomic-bert-moe.spm.ids", &[290], "the reference's <mask> id");
    assert_eq!(xlmr.encode("Hello world").unwrap(), specials("nomic-bert-moe.spm"));
}

#[test]
fn special_tokens_around_a_sentence_as_transformers_adds_them() {
    for (tok, fx) in [
        (json("tokenizers/mistral-7b-v0.1"), "mistral-spm.json"),
        (gguf(&format!("{LCPP}/ggml-vocab-phi-3.gguf")), "phi-3.gguf"),
        (gguf(&format!("{LCPP}/ggml-vocab-llama-spm.gguf")), "llama-spm.gguf"),
        (json("models/gemma3-270m"), "gemma3.json"),
        (gguf("models/gemma3-270m/gemma-3-270m-q4_k_m.gguf"), "gemma3.json"),
        (json("tokenizers/qwen2.5"), "qwen2.json"),
        (gguf(&format!("{LCPP}/ggml-vocab-qwen2.gguf")), "qwen2.json"),
        (json("tokenizers/command-r-plus"), "command-r.json"),
        (json("tokenizers/mistral-nemo"), "tekken.json"),
        (json("models/all-minilm-l6-v2"), "minilm.json"),
    ] {
        assert_eq!(tok.encode("Hello world").unwrap(), specials(fx), "{fx}");
    }
}

fn specials(key: &str) -> Vec<i64> {
    let all: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("specials.json")).unwrap()).unwrap();
    serde_json::from_value(all[key].clone()).unwrap()
}

#[test]
fn gpt_neox_without_a_pre_tokenizer_is_refused() {
    let e = TextTokenizer::from_gguf(
        &Gguf::open(&asset(&format!("{LCPP}/ggml-vocab-gpt-neox.gguf"))).unwrap(),
        BosPolicy::Auto,
    )
    .err()
    .expect("an error");
    assert!(format!("{e:#}").contains("tokenizer.ggml.pre is missing"), "{e:#}");
}

#[test]
fn gpt_neox_vocabulary_of_mpt_and_olmo() {
    // OLMo's tokenizer.json holds the MPT GGUF's vocabulary and merges (the generator asserts
    // it) with its own special tokens at 0 and 50277-50279, and the same split: the reference
    // for `mpt` and, with the file retagged, for `olmo`.
    let path = asset(&format!("{LCPP}/ggml-vocab-mpt.gguf"));
    let mut g = Gguf::open(&path).unwrap();
    let own_eot = "OLMo's own <|endoftext|> id (50279; MPT's is 0)";
    check(&TextTokenizer::from_gguf(&g, BosPolicy::Auto).unwrap(), "mpt.olmo.ids", &[281, 282], own_eot);
    g.metadata.insert("tokenizer.ggml.pre".into(), mexa_model::gguf::Value::Str("olmo".into()));
    check(&TextTokenizer::from_gguf(&g, BosPolicy::Auto).unwrap(), "mpt.olmo.ids", &[281, 282], own_eot);
}
