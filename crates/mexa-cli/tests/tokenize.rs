//! `mexa tokenize` through the binary: ids and pieces of a text, a file and a corpus language,
//! `--compare` finding the first difference between two tokenizers, and located errors.
use std::path::PathBuf;
use std::process::{Command, Output};

fn mexa(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mexa")).args(args).output().unwrap()
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

fn asset(rel: &str) -> String {
    let base = std::env::var_os("MEXA_ASSETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/mexa/assets"));
    let p = base.join(rel);
    assert!(p.exists(), "{} is missing: run scripts/fetch-assets.py", p.display());
    p.display().to_string()
}

#[test]
fn ids_and_pieces_of_a_text_as_the_model_sees_them() {
    // Llama's SentencePiece vocabulary rebuilt from a GGUF: BOS, then "▁▁" for the leading space
    // and the word's own "▁", as Llama's tokenizer gives.
    let o = mexa(&["tokenize", &asset("tokenizers/llama.cpp/ggml-vocab-llama-spm.gguf"), " Hello world"]);
    assert!(o.status.success(), "{}", err(&o));
    let s = out(&o);
    assert!(s.contains("rebuilt from the GGUF's metadata"), "{s}");
    assert!(s.contains("1\t4 tokens\t Hello world"), "{s}");
    assert!(s.contains("ids     1 29871 15043 3186"), "{s}");
    assert!(s.contains(r#"pieces  "<s>" "▁" "▁Hello" "▁world""#), "{s}");
    assert!(s.contains("1 sentences, 4 tokens (4.0 per sentence)"), "{s}");
}

#[test]
fn compare_names_the_first_difference_and_sets_the_exit_status() {
    // Qwen's GGUF against Qwen2.5's own tokenizer.json: no difference, a decomposed é (which
    // needs the file's NFC normaliser) included; against GPT-2's: different from the first token.
    let qwen = asset("tokenizers/llama.cpp/ggml-vocab-qwen2.gguf");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s.txt");
    std::fs::write(&file, "Hello world\ne\u{301} 1234\n").unwrap();
    let f = file.display().to_string();
    let same = mexa(&["tokenize", &qwen, "--file", &f, "--compare", &asset("tokenizers/qwen2.5/tokenizer.json")]);
    assert_eq!(same.status.code(), Some(0), "{}{}", out(&same), err(&same));
    assert!(out(&same).contains("0 of 2 sentences differ"), "{}", out(&same));
    let gpt2 = mexa(&["tokenize", &qwen, "--file", &f, "--compare", &asset("tokenizers/gpt2/tokenizer.json")]);
    assert_eq!(gpt2.status.code(), Some(1), "{}{}", out(&gpt2), err(&gpt2));
    let s = out(&gpt2);
    // "Hello" is 9707 in Qwen's vocabulary and 15496 in GPT-2's: the first token differs.
    assert!(s.contains("compare first difference at token 1: model [9707 Hello"), "{s}");
    assert!(s.contains("vs compared [15496 Hello"), "{s}");
    assert!(s.contains("2 of 2 sentences differ"), "{s}");
}

#[test]
fn a_corpus_language_with_counts() {
    let o = mexa(&[
        "tokenize",
        &asset("models/gemma3-270m/gemma-3-270m-q4_k_m.gguf"),
        "--corpus",
        &asset("corpora/udhr"),
        "--language",
        "fra",
        "--limit",
        "3",
        "--counts",
    ]);
    assert!(o.status.success(), "{}", err(&o));
    let s = out(&o);
    let lines: Vec<&str> = s.lines().filter(|l| l.contains(" tokens\t")).collect();
    assert_eq!(lines.len(), 3, "{s}");
    assert!(lines[0].starts_with("1\t") && lines[0].contains("Tous les êtres humains"), "{s}");
    assert!(!s.contains("  ids "), "--counts prints no ids: {s}");
    let total: usize =
        lines.iter().map(|l| l.split('\t').nth(1).unwrap().trim_end_matches(" tokens").parse::<usize>().unwrap()).sum();
    assert!(s.contains(&format!("3 sentences, {total} tokens")), "{s}");
}

#[test]
fn invalid_utf8_and_missing_input_are_located_errors() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.txt");
    std::fs::write(&file, b"fine\nbad \xff byte\n").unwrap();
    let gguf = asset("tokenizers/llama.cpp/ggml-vocab-gpt-2.gguf");
    let o = mexa(&["tokenize", &gguf, "--file", &file.display().to_string()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("bad.txt:2: invalid UTF-8 at byte 4"), "{}", err(&o));
    let o = mexa(&["tokenize", &gguf]);
    assert!(err(&o).contains("give a TEXT, --file FILE, or --corpus PATH --language CODE"), "{}", err(&o));
    let o = mexa(&["tokenize", &asset("tokenizers/llama.cpp/ggml-vocab-gpt-neox.gguf"), "x"]);
    assert!(err(&o).contains("tokenizer.ggml.pre is missing"), "{}", err(&o));
    let help = out(&mexa(&["tokenize", "--help"]));
    assert!(help.contains("--compare") && help.contains("Reach for it when a language scores oddly"), "{help}");
}
