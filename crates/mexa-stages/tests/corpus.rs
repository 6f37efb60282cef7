//! load_corpus on real UDHR files and on broken corpora: every problem names file and line.
use mexa_stages::corpus::load;
use std::fs;
use std::path::{Path, PathBuf};

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    fs::write(dir.join(name), bytes).unwrap();
}

fn err(dir: &Path, langs: &[&str], pivot: &str) -> String {
    let langs: Vec<String> = langs.iter().map(|s| s.to_string()).collect();
    match load(dir, "devtest", &langs, pivot, 0) {
        Ok(_) => panic!("expected an error"),
        Err(e) => format!("{e:#}"),
    }
}

fn udhr() -> PathBuf {
    let assets = std::env::var_os("MEXA_ASSETS").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/mexa/assets"));
    let p = assets.join("corpora/udhr");
    assert!(p.is_dir(), "{} missing: run scripts/fetch-assets.py", p.display());
    p
}

#[test]
fn real_udhr_selection_by_list_glob_and_limit() {
    let c = load(&udhr(), "devtest", &["fra".into(), "cmn_*".into()], "eng", 7).unwrap();
    let codes: Vec<&str> = c.iter().map(|l| l.code.as_str()).collect();
    assert_eq!(codes[0], "eng", "pivot first");
    assert!(codes.contains(&"fra") && codes.contains(&"cmn_hans"));
    assert!(c.iter().all(|l| l.lines.len() == 7));
    assert!(c[0].lines[0].starts_with("All human beings are born free"));
}

#[test]
fn ragged_files() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "eng_Latn.txt", b"one\ntwo\nthree\n");
    write(d.path(), "fra_Latn.txt", b"un\ndeux\n");
    let m = err(d.path(), &[], "eng_Latn");
    assert!(m.contains("fra_Latn.txt: 2 lines, but the pivot") && m.contains("eng_Latn.txt has 3"), "{m}");
}

#[test]
fn empty_line_names_file_and_line() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "eng_Latn.txt", b"one\ntwo\nthree\n");
    write(d.path(), "fra_Latn.txt", b"un\n  \ntrois\n");
    let m = err(d.path(), &[], "eng_Latn");
    assert!(m.contains("fra_Latn.txt:2: empty line"), "{m}");
}

#[test]
fn bad_utf8_names_file_and_line() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "eng_Latn.txt", b"one\ntwo\n");
    write(d.path(), "deu_Latn.txt", b"eins\nzw\xffei\n");
    let m = err(d.path(), &[], "eng_Latn");
    assert!(m.contains("deu_Latn.txt:2: invalid UTF-8 at byte 2"), "{m}");
}

#[test]
fn missing_pivot_and_missing_language() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "fra_Latn.txt", b"un\n");
    assert!(err(d.path(), &[], "eng_Latn").contains("the pivot language `eng_Latn` is missing"));
    write(d.path(), "eng_Latn.txt", b"one\n");
    assert!(err(d.path(), &["spa_Latn"], "eng_Latn").contains("language `spa_Latn` was asked for but has no file"));
}

#[test]
fn flores_layout_and_tsv() {
    let d = tempfile::tempdir().unwrap();
    fs::create_dir(d.path().join("devtest")).unwrap();
    write(&d.path().join("devtest"), "eng_Latn.devtest", b"a\nb\n");
    write(&d.path().join("devtest"), "fra_Latn.devtest", b"x\ny\n");
    let c = load(d.path(), "devtest", &[], "eng_Latn", 0).unwrap();
    assert_eq!(c.len(), 2);
    let t = d.path().join("corpus.tsv");
    fs::write(&t, "eng_Latn\tfra_Latn\nhello\tbonjour\nbye\t\n").unwrap();
    let m = format!("{:#}", load(&t, "devtest", &[], "eng_Latn", 0).err().unwrap());
    assert!(m.contains("corpus.tsv:3: empty sentence in column `fra_Latn`"), "{m}");
}
