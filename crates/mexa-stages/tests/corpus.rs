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
    let assets = std::env::var_os("MEXA_ASSETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/mexa/assets"));
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
    let m = err(d.path(), &[], "eng_Latn");
    assert!(m.contains("`pivot`: `eng_Latn` is not in the corpus") && m.contains("it has: fra_Latn"), "{m}");
    write(d.path(), "eng_Latn.txt", b"one\n");
    assert!(err(d.path(), &["spa_Latn"], "eng_Latn").contains("`spa_Latn` is not in the corpus"));
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

fn sib200() -> PathBuf {
    let p = udhr().parent().unwrap().join("sib200");
    assert!(p.is_dir(), "{} missing: run scripts/fetch-assets.py", p.display());
    p
}

#[test]
fn real_sib200_is_joined_on_index_id() {
    let c = load(&sib200(), "test", &["fra_Latn".into(), "*_Deva".into()], "eng_Latn", 0).unwrap();
    let codes: Vec<&str> = c.iter().map(|l| l.code.as_str()).collect();
    assert_eq!(codes[0], "eng_Latn");
    assert!(codes.contains(&"fra_Latn") && codes.contains(&"hin_Deva") && codes.contains(&"npi_Deva"), "{codes:?}");
    assert!(c.iter().all(|l| l.lines.len() == 204), "SIB-200's test split has 204 sentences per language");
    // Row 1 of every file is index_id 1523 (FLORES: mutation and genetic variation).
    assert!(c[0].lines[0].starts_with("Mutation adds new genetic variation"));
    let all = load(&sib200(), "dev", &[], "eng_Latn", 10).unwrap();
    assert_eq!(all.len(), 205);
    assert!(all.iter().all(|l| l.lines.len() == 10));
    let e = format!("{:#}", load(&sib200(), "devtest", &[], "eng_Latn", 0).unwrap_err());
    assert!(e.contains("without a `devtest` split") && e.contains("dev, test, train"), "{e}");
}

#[test]
fn id_keyed_corpora_never_shift_rows() {
    let d = tempfile::tempdir().unwrap();
    let mk = |lang: &str, body: &str| {
        fs::create_dir_all(d.path().join(lang)).unwrap();
        fs::write(d.path().join(lang).join("test.tsv"), format!("index_id\tcategory\ttext\n{body}")).unwrap();
    };
    mk("eng", "1\ta\tone\n2\ta\ttwo\n3\tb\tthree\n");
    // Another order is joined by id, not by position.
    mk("fra", "3\tb\ttrois\n1\ta\tun\n2\ta\tdeux\n");
    let c = load(d.path(), "test", &[], "eng", 0).unwrap();
    assert_eq!(c[1].lines, vec!["un", "deux", "trois"]);
    // A missing id names the file and the pivot's line.
    mk("deu", "1\ta\teins\n3\tb\tdrei\n");
    let e = format!("{:#}", load(d.path(), "test", &[], "eng", 0).unwrap_err());
    assert!(e.contains("deu/test.tsv: no row with id `2`") && e.contains("eng/test.tsv:3"), "{e}");
    // An id the pivot lacks, and a repeated id.
    mk("deu", "1\ta\teins\n2\ta\tzwei\n3\tb\tdrei\n9\tb\tneun\n");
    let e = format!("{:#}", load(d.path(), "test", &[], "eng", 0).unwrap_err());
    assert!(e.contains("deu/test.tsv:5: id `9` is not in the pivot"), "{e}");
    mk("deu", "1\ta\teins\n2\ta\tzwei\n2\tb\tdrei\n");
    let e = format!("{:#}", load(d.path(), "test", &[], "eng", 0).unwrap_err());
    assert!(e.contains("deu/test.tsv:4: id `2` again (first on line 3)"), "{e}");
    // No id column.
    mk("deu", "x\n");
    fs::write(d.path().join("deu/test.tsv"), "category\ttext\na\teins\n").unwrap();
    let e = format!("{:#}", load(d.path(), "test", &[], "eng", 0).unwrap_err());
    assert!(e.contains("deu/test.tsv:1: expected an id column"), "{e}");
}
