//! Bad input through the `mexa` binary, table-driven: every case is files written into a
//! fresh folder, one command, the exit code it must give, and the text its output must
//! contain (the place: file and line, key, or path; and what was expected). A case must also
//! never panic, never hang (each is killed after 60 s), and never write outside its folder.
//! All failing cases are reported together.
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One case. In `args` and `expect`, `{d}` is the case's folder.
struct Case {
    name: String,
    files: Vec<(String, Vec<u8>)>,
    args: Vec<String>,
    code: i32,
    expect: Vec<String>,
}

fn case(name: &str, files: &[(&str, &str)], args: &str, code: i32, expect: &[&str]) -> Case {
    Case {
        name: name.into(),
        files: files.iter().map(|(p, c)| (p.to_string(), c.as_bytes().to_vec())).collect(),
        args: args.split_whitespace().map(str::to_string).collect(),
        code,
        expect: expect.iter().map(|s| s.to_string()).collect(),
    }
}

/// A pipeline `p.yaml` planned with `mexa plan`.
fn plan(name: &str, yaml: &str, expect: &[&str]) -> Case {
    case(name, &[("p.yaml", yaml)], "plan {d}/p.yaml", 2, expect)
}

const CORPUS: &[(&str, &str)] =
    &[("c/eng.txt", "one\ntwo\nthree\n"), ("c/fra.txt", "un\ndeux\ntrois\n"), ("c/deu.txt", "eins\nzwei\ndrei\n")];

/// A pipeline with one load_corpus stage over `c/`, run with `mexa run`.
fn corpus_case(name: &str, files: &[(&str, &str)], params: &str, expect: &[&str]) -> Case {
    let yaml = format!(
        "pipeline: c\nstages:\n  corpus:\n    kind: load_corpus\n    params: {{path: c, pivot: eng{params}}}\n"
    );
    let mut all: Vec<(&str, &str)> = files.to_vec();
    all.push(("p.yaml", &yaml));
    let mut c = case(name, &all, "run {d}/p.yaml", 1, expect);
    c.files = all.iter().map(|(p, s)| (p.to_string(), s.as_bytes().to_vec())).collect();
    c
}

fn assets() -> PathBuf {
    std::env::var_os("MEXA_ASSETS")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("MEXA_CACHE").map(|c| PathBuf::from(c).join("assets")))
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/mexa/assets"))
}

/// Runs one case; returns what went wrong, if anything.
fn check(c: &Case, root: &Path) -> Option<String> {
    let d = root.join(&c.name);
    std::fs::create_dir_all(d.join("store")).unwrap();
    for (p, bytes) in &c.files {
        let p = d.join(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }
    let ds = d.to_string_lossy().into_owned();
    let args: Vec<String> = c.args.iter().map(|a| a.replace("{d}", &ds)).collect();
    let mut child = Command::new(env!("CARGO_BIN_EXE_mexa"))
        .arg("--store")
        .arg(d.join("store"))
        .args(&args)
        .current_dir(&d)
        .env("MEXA_ASSETS", assets())
        .env("HF_HUB_CACHE", d.join("hf-cache"))
        // Offline: a Hugging Face id missing from the cache must not be downloaded by a test.
        .env("HF_HUB_OFFLINE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if t0.elapsed() > Duration::from_secs(60) {
            child.kill().ok();
            return Some(format!("{}: still running after 60 s (a hang)", c.name));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let mut problems = Vec::new();
    if out.status.code() != Some(c.code) {
        problems.push(format!("exit {:?}, expected {}", out.status.code(), c.code));
    }
    if text.contains("panicked") || text.contains("RUST_BACKTRACE") {
        problems.push("panicked".into());
    }
    for e in &c.expect {
        let e = e.replace("{d}", &ds);
        if !text.contains(&e) {
            problems.push(format!("no `{e}` in the output"));
        }
    }
    (!problems.is_empty())
        .then(|| format!("{} ({}): {}\n--- output:\n{}", c.name, args.join(" "), problems.join("; "), text.trim_end()))
}

fn run_all(cases: Vec<Case>) {
    let root = tempfile::tempdir().unwrap();
    let names: std::collections::HashSet<&str> = cases.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names.len(), cases.len(), "case names must be unique");
    let failures: Vec<String> = std::thread::scope(|s| {
        let chunks: Vec<&[Case]> = cases.chunks(cases.len().div_ceil(4).max(1)).collect();
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| s.spawn(|| chunk.iter().filter_map(|c| check(c, root.path())).collect::<Vec<_>>()))
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    assert!(
        failures.is_empty(),
        "{} of {} bad-input cases failed:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

/// Wrong-typed values for each parameter of each stage kind: the error names the stage,
/// the parameter and the type it wanted, at the value's line.
fn wrong_types() -> Vec<Case> {
    let params: &[(&str, &str, &str, &str)] = &[
        // (stage kind, parameter, bad value, expected type words)
        ("load_corpus", "languages", "7", "a list of strings"),
        ("load_corpus", "pivot", "[eng]", "a string"),
        ("load_corpus", "limit", "ten", "an integer"),
        ("load_corpus", "limit", "2.5", "an integer"),
        ("load_corpus", "split", "{a: 1}", "a string"),
        ("embed", "poolings", "[weighted, maximum]", "a list of: weighted, last, mean"),
        ("embed", "poolings", "weighted", "a list of: weighted, last, mean"),
        ("embed", "dtype", "f64", "one of f32, f16, bf16"),
        ("embed", "bos", "yes", "one of auto, always, never"),
        ("embed", "batch_tokens", "many", "an integer"),
        ("embed", "batch_sentences", "[1]", "an integer"),
        ("embed", "device", "0", "a string"),
        ("embed", "model", "[x]", "a model folder"),
        ("align", "margin_k", "four", "an integer"),
        ("align", "poolings", "[sum]", "a list of: weighted, last, mean"),
        ("aggregate", "metric", "accuracy", "one of mexa"),
        ("aggregate", "layers", "[a, b]", "a list of integers"),
        ("correlate", "bootstrap", "yes", "an integer"),
        ("correlate", "level", "high", "a number"),
        ("correlate", "seed", "1.5", "an integer"),
        ("join_tasks", "column", "[a]", "a string"),
        ("join_tasks", "pivot_score", "x", "a number"),
        ("join_tasks", "task", "{}", "a string"),
        ("report", "title", "[a]", "a string"),
    ];
    params
        .iter()
        .enumerate()
        .map(|(i, (kind, param, bad, want))| {
            let inputs = match *kind {
                "embed" => "    inputs: {corpus: corpus}\n",
                "align" => "    inputs: {embeddings: e}\n",
                "aggregate" => "    inputs: {alignment: a}\n",
                "correlate" => "    inputs: {points: j}\n",
                "join_tasks" => "    inputs: {scores: g, corpus: corpus}\n",
                _ => "",
            };
            let base = "pipeline: t\nstages:\n  corpus:\n    kind: load_corpus\n    params: {path: c, pivot: eng}\n  e:\n    kind: embed\n    inputs: {corpus: corpus}\n    params: {model: m.gguf}\n  a:\n    kind: align\n    inputs: {embeddings: e}\n  g:\n    kind: aggregate\n    inputs: {alignment: a}\n  j:\n    kind: join_tasks\n    inputs: {scores: g, corpus: corpus}\n    params: {tasks: t.csv}\n";
            let extra = match *kind {
                "load_corpus" => format!("  x:\n    kind: load_corpus\n    params:\n      path: c\n      {param}: {bad}\n"),
                "embed" if *param == "model" => format!("  x:\n    kind: embed\n{inputs}    params:\n      {param}: {bad}\n"),
                "embed" => format!("  x:\n    kind: embed\n{inputs}    params:\n      model: m.gguf\n      {param}: {bad}\n"),
                "join_tasks" => format!("  x:\n    kind: join_tasks\n{inputs}    params:\n      tasks: t.csv\n      {param}: {bad}\n"),
                _ => format!("  x:\n    kind: {kind}\n{inputs}    params:\n      {param}: {bad}\n"),
            };
            let yaml = format!("{base}{extra}");
            let line = yaml.lines().position(|l| l.trim_start().starts_with(&format!("{param}: {bad}"))).unwrap() + 1;
            let mut files: Vec<(&str, &str)> = CORPUS.to_vec();
            files.push(("m.gguf", "not really"));
            files.push(("t.csv", "language,task,score\n"));
            let mut c = case(&format!("type_{i:02}_{kind}_{param}"), &files, "plan {d}/p.yaml", 2, &[&format!("p.yaml:{line}:"), &format!("`{param}` must be {want}")]);
            c.files.push(("p.yaml".into(), yaml.into_bytes()));
            c
        })
        .collect()
}

fn spec_cases() -> Vec<Case> {
    let ok_corpus = "pipeline: p\nstages:\n  corpus:\n    kind: load_corpus\n    params: {path: c, pivot: eng}\n";
    let with_corpus = |c: Case| Case {
        files: [CORPUS.iter().map(|(p, s)| (p.to_string(), s.as_bytes().to_vec())).collect::<Vec<_>>(), c.files]
            .concat(),
        ..c
    };
    let mut bomb = String::from("pipeline: p\nx0: &a0 [x, x]\n");
    for i in 1..30 {
        bomb.push_str(&format!("x{i}: &a{i} [*a{}, *a{}]\n", i - 1, i - 1));
    }
    let grid = format!(
        "pipeline: p\ngrid:\n  a: [{}]\n  b: [{}]\n  c: [{}]\nstages: {{}}\n",
        (0..1000).map(|i| i.to_string()).collect::<Vec<_>>().join(", "),
        (0..1000).map(|i| i.to_string()).collect::<Vec<_>>().join(", "),
        (0..1000).map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
    );
    let v = vec![
        plan("empty_file", "", &["p.yaml:1:1", "the file is empty"]),
        plan("syntax_error", "pipeline: p\nstages: [a, b\n", &["p.yaml:", "invalid YAML"]),
        plan("duplicate_key", "pipeline: p\npipeline: q\n", &["p.yaml:2:1", "duplicate key `pipeline`"]),
        plan("unknown_top_key", "pipeline: p\nstagse: {}\n", &["p.yaml:2:1", "unknown top-level key `stagse`", "stages"]),
        plan("nul_byte", "pipeline: p\nstages:\0 {}\n", &["p.yaml:2:8", "NUL byte"]),
        plan("second_document", "pipeline: p\n---\npipeline: q\n", &["p.yaml:2:", "second YAML document"]),
        plan("alias_bomb", &bomb, &["aliases expand to more than"]),
        plan("deep_flow_nesting", &format!("pipeline: p\nx: {}1{}\n", "[".repeat(5000), "]".repeat(5000)), &["p.yaml:2:"]),
        plan("deep_block_nesting", &format!("pipeline: p\nx:\n{}y\n", "- ".repeat(50_000)), &["p.yaml:3:1", "nested more than 64 deep"]),
        plan("grid_too_large", &grid, &["p.yaml:3:", "1000000000 cells", "a (1000) × b (1000) × c (1000)"]),
        plan("pipeline_name_is_a_path", "pipeline: /tmp/x\nstages: {}\n", &["p.yaml:1:11", "not a plain name"]),
        plan("pipeline_name_dotdot", "pipeline: ../../y\nstages: {}\n", &["not a plain name"]),
        plan("pipeline_name_empty", "pipeline: ''\nstages: {}\n", &["`pipeline` must be a non-empty name"]),
        plan("stages_not_a_mapping", "pipeline: p\nstages: [a]\n", &["p.yaml:2:"]),
        plan("unknown_stage_kind", "pipeline: p\nstages:\n  x:\n    kind: embedd\n", &["p.yaml:4:", "embedd", "embed"]),
        plan("stage_without_kind", "pipeline: p\nstages:\n  x:\n    params: {}\n", &["p.yaml:3:", "kind"]),
        with_corpus(plan("unknown_param", &format!("{ok_corpus}    limt: 3\n"), &["p.yaml:6:", "limt"])),
        with_corpus(plan("unknown_param_in_params", "pipeline: p\nstages:\n  corpus:\n    kind: load_corpus\n    params: {path: c, pivot: eng, limt: 3}\n", &["p.yaml:5:", "has no parameter `limt`", "did you mean `limit`"])),
        with_corpus(plan("missing_required_param", "pipeline: p\nstages:\n  corpus:\n    kind: load_corpus\n    params: {pivot: eng}\n", &["p.yaml:3:", "path"])),
        with_corpus(plan("missing_required_model", &format!("{ok_corpus}  e:\n    kind: embed\n    inputs: {{corpus: corpus}}\n"), &["p.yaml:6:", "model"])),
        with_corpus(plan("unknown_input_slot", &format!("{ok_corpus}  e:\n    kind: embed\n    inputs: {{corpsu: corpus}}\n    params: {{model: m}}\n"), &["p.yaml:8:", "corpsu"])),
        with_corpus(plan("input_names_unknown_stage", &format!("{ok_corpus}  e:\n    kind: embed\n    inputs: {{corpus: corpse}}\n    params: {{model: m}}\n"), &["p.yaml:8:", "corpse"])),
        with_corpus(plan("missing_input", &format!("{ok_corpus}  e:\n    kind: embed\n    params: {{model: m}}\n"), &["p.yaml:6:", "corpus"])),
        plan("cycle", "pipeline: p\nstages:\n  a:\n    kind: align\n    inputs: {embeddings: b}\n  b:\n    kind: align\n    inputs: {embeddings: a}\n", &["cycle"]),
        with_corpus(plan("unknown_axis_reference", &format!("{ok_corpus}  e:\n    kind: embed\n    inputs: {{corpus: corpus}}\n    params: {{model: \"${{modle}}\"}}\n"), &["p.yaml:9:", "modle"])),
        with_corpus(plan("missing_axis_field", &format!("grid:\n  m: [{{name: a, path: x}}]\n{ok_corpus}  e:\n    kind: embed\n    inputs: {{corpus: corpus}}\n    params: {{model: \"${{m.file}}\"}}\n"), &["has no field `file`"])),
        with_corpus(plan("unset_env_var", &format!("{ok_corpus}  e:\n    kind: embed\n    inputs: {{corpus: corpus}}\n    params: {{model: \"${{env:MEXA_TEST_SURELY_UNSET}}\"}}\n"), &["MEXA_TEST_SURELY_UNSET", "is not set"])),
        plan("axis_empty_list", "pipeline: p\ngrid:\n  m: []\nstages: {}\n", &["p.yaml:3:", "non-empty list"]),
        plan("axis_not_a_list", "pipeline: p\ngrid:\n  m: 3\nstages: {}\n", &["p.yaml:3:", "non-empty list"]),
        plan("axis_reserved_name", "pipeline: p\ngrid:\n  assets: [a]\nstages: {}\n", &["p.yaml:3:", "cannot be an axis name"]),
        plan("axis_duplicate_value", "pipeline: p\ngrid:\n  m: [a, b, a]\nstages: {}\n", &["p.yaml:3:", "twice"]),
        plan("include_unknown_axis", "pipeline: p\ngrid:\n  m: [a]\n  include:\n    - {n: b}\nstages: {}\n", &["p.yaml:", "`n`"]),
        plan("grid_not_a_mapping", "pipeline: p\ngrid: [a]\nstages: {}\n", &["p.yaml:2:", "`grid` must map"]),
        plan("corpus_path_missing", "pipeline: p\nstages:\n  corpus:\n    kind: load_corpus\n    params: {path: nowhere, pivot: eng}\n", &["p.yaml:5:", "nowhere", "cannot read"]),
        with_corpus(plan("model_path_missing", &format!("{ok_corpus}  e:\n    kind: embed\n    inputs: {{corpus: corpus}}\n    params: {{model: /no/such/model.gguf}}\n"), &["p.yaml:", "/no/such/model.gguf"])),
        with_corpus(plan("hub_id_not_cached", &format!("{ok_corpus}  e:\n    kind: embed\n    inputs: {{corpus: corpus}}\n    params: {{model: Qwen/Qwen2.5-7B}}\n"), &["models--Qwen--Qwen2.5-7B", "HF_HUB_OFFLINE is set", "mexa fetch Qwen/Qwen2.5-7B", "looked up as a Hugging Face id"])),
        with_corpus(plan("hub_ref_missing", &format!("{ok_corpus}  e:\n    kind: embed\n    inputs: {{corpus: corpus}}\n    params: {{model: Qwen/Qwen2.5-7B@v9}}\n"), &["models--Qwen--Qwen2.5-7B"])),
        plan("import_missing_file", "pipeline: p\nimports: [other.yaml]\nstages: {}\n", &["p.yaml:2:", "other.yaml"]),
        case("import_cycle", &[("p.yaml", "pipeline: p\nimports: [q.yaml]\nstages: {}\n"), ("q.yaml", "imports: [p.yaml]\nstages: {}\n")], "plan {d}/p.yaml", 2, &["import"]),
        case("pipeline_file_missing", &[], "plan {d}/nope.yaml", 2, &["nope.yaml"]),
        case("pipeline_is_a_folder", &[("dir/x", "")], "plan {d}/dir", 2, &["dir"]),
        case("pipeline_is_binary", &[("p.yaml", "\u{0}\u{1}\u{2}GGUF")], "plan {d}/p.yaml", 2, &["p.yaml:1:1", "NUL byte"]),
        case("pipeline_invalid_utf8", &[], "plan {d}/p.yaml", 2, &["p.yaml"]),
        case("bom_is_accepted", &[("p.yaml", "\u{feff}pipeline: p\nstages:\n  corpus:\n    kind: load_corpus\n    params: {path: c, pivot: eng}\n"), CORPUS[0], CORPUS[1]], "plan {d}/p.yaml", 1, &["1 nodes"]),
        // Issue 23: values their type allows but the stage cannot use, checked at plan time.
        with_corpus(plan("align_margin_k_zero", &format!("{ok_corpus}  e:\n    kind: embed\n    inputs: {{corpus: corpus}}\n    params: {{model: \"${{assets}}/models/all-minilm-l6-v2\"}}\n  a:\n    kind: align\n    inputs: {{embeddings: e}}\n    params: {{margin_k: 0}}\n"), &["p.yaml:", "`margin_k` must be at least 1"])),
        with_corpus(plan("embed_memory_not_a_size", &format!("{ok_corpus}  e:\n    kind: embed\n    inputs: {{corpus: corpus}}\n    params: {{model: \"${{assets}}/models/all-minilm-l6-v2\", memory: abc}}\n"), &["p.yaml:", "`memory`", "abc"])),
        with_corpus(plan("embed_batch_tokens_zero", &format!("{ok_corpus}  e:\n    kind: embed\n    inputs: {{corpus: corpus}}\n    params: {{model: \"${{assets}}/models/all-minilm-l6-v2\", batch_tokens: 0}}\n"), &["p.yaml:", "`batch_tokens` must be at least 1"])),
        with_corpus(plan("embed_device_unknown", &format!("{ok_corpus}  e:\n    kind: embed\n    inputs: {{corpus: corpus}}\n    params: {{model: \"${{assets}}/models/all-minilm-l6-v2\", device: tpu}}\n"), &["p.yaml:", "`device`", "tpu"])),
        with_corpus(case("override_empty_axis", &[("p.yaml", &format!("grid:\n  m: [a, b]\n{ok_corpus}"))], "plan {d}/p.yaml -S m=[]", 2, &["-S m:", "non-empty list", "an empty list"])),
        with_corpus(case("threads_zero", &[("p.yaml", ok_corpus)], "run {d}/p.yaml --threads 0", 2, &["--threads", "must be at least 1"])),
        with_corpus(case("jobs_zero", &[("p.yaml", ok_corpus)], "run {d}/p.yaml --jobs 0", 2, &["--jobs", "must be at least 1"])),
        case("pipeline_is_a_device", &[], "plan /dev/zero", 2, &["/dev/zero: is a device"]),
        plan("import_is_a_device", "pipeline: p\nimports: [/dev/zero]\nstages: {}\n", &["p.yaml:2:", "/dev/zero: is a device"]),
        case("pipeline_is_a_fifo", &[], "plan {d}/fifo.yaml", 2, &["fifo.yaml: is a FIFO"]),
        plan("import_is_a_fifo", "pipeline: p\nimports: [fifo.yaml]\nstages: {}\n", &["p.yaml:2:", "fifo.yaml: is a FIFO"]),
        with_corpus(plan("pipeline_name_ok_but_stage_name_bad", "pipeline: p\nstages:\n  'a b':\n    kind: load_corpus\n    params: {path: c, pivot: eng}\n", &["p.yaml:3:"])),
    ];
    let mut v = v;
    // Invalid UTF-8 in the pipeline file itself.
    for c in v.iter_mut().filter(|c| c.name == "pipeline_invalid_utf8") {
        c.files.push(("p.yaml".into(), b"pipeline: p\xff\xfe\n".to_vec()));
    }
    v
}

fn corpus_cases() -> Vec<Case> {
    let big = format!("{}\n", "a".repeat(150_000));
    vec![
        corpus_case(
            "corpus_empty_line",
            &[CORPUS[0], ("c/fra.txt", "un\n\ntrois\n")],
            "",
            &["fra.txt:2", "empty line"],
        ),
        corpus_case("corpus_ragged", &[CORPUS[0], ("c/fra.txt", "un\ndeux\n")], "", &["fra.txt", "2 lines", "ragged"]),
        corpus_case(
            "corpus_bad_utf8",
            &[CORPUS[0], ("c/fra.txt", "un\ndeux\ntrois\n")],
            "",
            &["fra.txt:2", "invalid UTF-8"],
        ),
        corpus_case(
            "corpus_giant_line",
            &[CORPUS[0], ("c/fra.txt", &big)],
            "",
            &["fra.txt:1", "more than 100000 bytes"],
        ),
        corpus_case(
            "corpus_language_twice",
            &[CORPUS[0], CORPUS[1], ("c/fra.dev", "un\ndeux\ntrois\n")],
            "",
            &["`fra` has two files", "fra.dev", "fra.txt"],
        ),
        corpus_case("corpus_only_pivot", &[CORPUS[0]], "", &["only the pivot `eng`"]),
        corpus_case(
            "corpus_pivot_missing",
            &[CORPUS[1], CORPUS[2]],
            "",
            &["p.yaml:5:", "`pivot`: `eng` is not in the corpus"],
        ),
        corpus_case(
            "corpus_asked_language_missing",
            CORPUS,
            ", languages: [spa]",
            &["p.yaml:5:", "`spa` is not in the corpus", "c/spa.txt"],
        ),
        corpus_case("corpus_pivot_empty", &[("c/eng.txt", ""), ("c/fra.txt", "")], "", &["has no sentences"]),
        corpus_case("corpus_no_files", &[("c/README.md", "hello")], "", &["no per-language files"]),
        corpus_case("corpus_dangling_symlink", CORPUS, "", &["deu2.txt", "dangling"]),
        corpus_case("corpus_fifo", CORPUS, "", &["fifo.txt", "not a regular file"]),
        corpus_case(
            "corpus_tsv_ragged_fields",
            &[("c.tsv", "eng\tfra\none\tun\ntwo\n")],
            "",
            &["c.tsv:3", "1 fields, the header has 2"],
        ),
        corpus_case("corpus_limit_negative", CORPUS, ", limit: -1", &["limit"]),
    ]
}

/// Language codes a corpus does not have, caught at plan time: the error points at the
/// parameter, names the file (or column) the corpus's own layout would need, and suggests the
/// code meant across FLORES-200 / ISO 639-3 / ISO 639-1 / UDHR spellings and case.
fn language_code_cases() -> Vec<Case> {
    let yaml = |path: &str, pivot: &str, split: &str, languages: &str| {
        format!("pipeline: c\nstages:\n  corpus:\n    kind: load_corpus\n    params:\n      path: {path}\n      pivot: {pivot}\n      split: {split}\n      languages: {languages}\n")
    };
    let sib =
        [("c/eng_Latn/dev.tsv", "index_id\ttext\n1\tone\n"), ("c/yor_Latn/dev.tsv", "index_id\ttext\n1\tookan\n")];
    let flores = [("c/devtest/eng_Latn.devtest", "one\n"), ("c/devtest/fra_Latn.devtest", "un\n")];
    let udhr = [
        ("c/eng.txt", "one\n"),
        ("c/deu_1901.txt", "eins\n"),
        ("c/deu_1996.txt", "eins\n"),
        ("c/languages.tsv", "udhr\tiso639_3\tbcp47\neng\teng\ten\ndeu_1901\tdeu\tde-1901\ndeu_1996\tdeu\tde-1996\n"),
    ];
    let with = |name: &str, files: &[(&str, &str)], yaml: String, expect: &[&str]| {
        let mut c = case(name, files, "plan {d}/p.yaml", 2, expect);
        c.files.push(("p.yaml".into(), yaml.into_bytes()));
        c
    };
    vec![
        with(
            "lang_iso_code_in_flores_corpus",
            &sib,
            yaml("c", "eng_Latn", "dev", "[yor]"),
            &[
                "p.yaml:9:",
                "`languages`: `yor` is not in the corpus",
                "SIB-200's <code>/<split>.tsv: no {d}/c/yor/dev.tsv",
                "did you mean `yor_Latn`?",
            ],
        ),
        with(
            "lang_script_misspelt",
            &sib,
            yaml("c", "eng_Latn", "dev", "[yor_Latin]"),
            &["p.yaml:9:", "`yor_Latin` is not in the corpus", "did you mean `yor_Latn`?"],
        ),
        with(
            "lang_iso_code_in_udhr_corpus",
            &udhr,
            yaml("c", "eng", "test", "[deu]"),
            &["p.yaml:9:", "one file per language: no {d}/c/deu.txt", "did you mean one of `deu_1901`, `deu_1996`?"],
        ),
        with(
            "lang_pivot_in_other_case",
            &flores,
            yaml("c", "ENG_latn", "devtest", "[]"),
            &[
                "p.yaml:7:",
                "`pivot`: `ENG_latn` is not in the corpus",
                "FLORES-200's <split>/<code>.<split>: no {d}/c/devtest/ENG_latn.devtest",
                "did you mean `eng_Latn`?",
            ],
        ),
        with(
            "lang_default_pivot_in_udhr_corpus",
            &udhr,
            "pipeline: c\nstages:\n  corpus:\n    kind: load_corpus\n    params: {path: c}\n".into(),
            &["p.yaml:3:", "`pivot`: `eng_Latn` is not in the corpus", "did you mean `eng`?"],
        ),
        with(
            "lang_iso639_1_in_table_corpus",
            &[("c.tsv", "eng_Latn\tyor_Latn\none\tookan\n")],
            yaml("c.tsv", "eng_Latn", "dev", "[yo]"),
            &["p.yaml:9:", "a column per language: no column `yo` in {d}/c.tsv", "did you mean `yor_Latn`?"],
        ),
        with(
            "lang_glob_matches_nothing",
            &flores,
            yaml("c", "eng_Latn", "devtest", "['*_Latm']"),
            &["p.yaml:9:", "`*_Latm` matches no language of the corpus"],
        ),
        with(
            "lang_unknown_code_lists_the_corpus",
            &flores,
            yaml("c", "eng_Latn", "devtest", "[qqq_Xxxx]"),
            &["p.yaml:9:", "`qqq_Xxxx` is not in the corpus", "it has: eng_Latn, fra_Latn"],
        ),
        with(
            "lang_misspelt_code_gets_nearest",
            &flores,
            yaml("c", "eng_Latn", "devtest", "[fre_Latn]"),
            &["did you mean `fra_Latn`?"],
        ),
    ]
}

/// Cases that need files written in special ways (links, FIFOs, invalid bytes).
fn special_files(root: &Path, cases: &mut [Case]) {
    for c in cases.iter_mut() {
        let d = root.join(&c.name);
        std::fs::create_dir_all(d.join("c")).unwrap();
        match c.name.as_str() {
            "corpus_bad_utf8" => c.files.retain(|(p, _)| p != "c/fra.txt"),
            "corpus_tsv_ragged_fields" => {
                for f in c.files.iter_mut().filter(|f| f.0 == "p.yaml") {
                    f.1 = String::from_utf8(f.1.clone()).unwrap().replace("path: c,", "path: c.tsv,").into_bytes();
                }
            }
            _ => {}
        }
        match c.name.as_str() {
            "corpus_bad_utf8" => std::fs::write(d.join("c/fra.txt"), b"un\nd\xffux\ntrois\n").unwrap(),
            "corpus_dangling_symlink" => std::os::unix::fs::symlink(d.join("gone.txt"), d.join("c/deu2.txt")).unwrap(),
            "corpus_fifo" | "pipeline_is_a_fifo" | "import_is_a_fifo" => {
                let f = if c.name == "corpus_fifo" { "c/fifo.txt" } else { "fifo.yaml" };
                let p = std::ffi::CString::new(d.join(f).to_str().unwrap()).unwrap();
                // SAFETY: mkfifo with a valid NUL-terminated path.
                assert_eq!(unsafe { libc::mkfifo(p.as_ptr(), 0o644) }, 0);
            }
            _ => {}
        }
    }
}

#[test]
fn bad_pipelines_and_corpora_are_located_errors() {
    let mut cases = spec_cases();
    cases.extend(wrong_types());
    cases.extend(corpus_cases());
    cases.extend(language_code_cases());
    let root = tempfile::tempdir().unwrap();
    special_files(root.path(), &mut cases);
    // run_all makes its own folder per case; special files were made under `root`, so run here.
    let failures: Vec<String> = std::thread::scope(|s| {
        let chunks: Vec<&[Case]> = cases.chunks(cases.len().div_ceil(4)).collect();
        let hs: Vec<_> = chunks
            .into_iter()
            .map(|ch| s.spawn(|| ch.iter().filter_map(|c| check(c, root.path())).collect::<Vec<_>>()))
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    assert!(cases.len() >= 80, "{} cases", cases.len());
    assert!(
        failures.is_empty(),
        "{} of {} bad-input cases failed:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

#[test]
fn bad_models_and_task_files_are_located_errors() {
    let minilm = assets().join("models/all-minilm-l6-v2");
    assert!(minilm.is_dir(), "{} missing: run scripts/fetch-assets.py", minilm.display());
    let pipe = |model: &str, tasks: &str, extra: &str| {
        format!(
            "pipeline: m\nstages:\n  corpus:\n    kind: load_corpus\n    params: {{path: c, pivot: eng}}\n  e:\n    kind: embed\n    inputs: {{corpus: corpus}}\n    params: {{model: {model}}}\n  a:\n    kind: align\n    inputs: {{embeddings: e}}\n  g:\n    kind: aggregate\n    inputs: {{alignment: a}}\n  j:\n    kind: join_tasks\n    inputs: {{scores: g, corpus: corpus}}\n    params: {{tasks: {tasks}{extra}}}\n"
        )
    };
    let m = minilm.to_string_lossy().into_owned();
    let with = |name: &str, files: &[(&str, &str)], yaml: String, expect: &[&str]| {
        let mut all: Vec<(&str, &str)> = CORPUS.to_vec();
        if !files.iter().any(|(p, _)| p.starts_with("t.") || p.starts_with("r.")) {
            all.push(("t.csv", "language,task,score\nfra,x,0.5\ndeu,x,0.4\n"));
        }
        all.extend_from_slice(files);
        let mut c = case(name, &all, "run {d}/p.yaml", 1, expect);
        c.files.push(("p.yaml".into(), yaml.into_bytes()));
        c
    };
    let heads0 = std::fs::read_to_string(minilm.join("config.json"))
        .unwrap()
        .replace("\"num_attention_heads\": 12", "\"num_attention_heads\": 0");
    let config_with = |from: &str, to: &str| {
        let c = std::fs::read_to_string(minilm.join("config.json")).unwrap();
        assert!(c.contains(from), "{from} not in MiniLM's config.json");
        c.replace(from, to)
    };
    let negative_eps = config_with("\"layer_norm_eps\": 1e-12", "\"layer_norm_eps\": -1");
    let heads7 = config_with("\"num_attention_heads\": 12", "\"num_attention_heads\": 7");
    let pipe_corr = |model: &str, tasks: &str| {
        format!("{}  r:\n    kind: correlate\n    inputs: {{points: j}}\n", pipe(model, tasks, ""))
    };
    let unknown_type = std::fs::read_to_string(minilm.join("config.json"))
        .unwrap()
        .replace("\"model_type\": \"bert\"", "\"model_type\": \"mamba\"");
    let mut cases = vec![
        with("gguf_empty", &[("m.gguf", "")], pipe("m.gguf", "t.csv", ""), &["m.gguf", "not a complete GGUF file"]),
        with(
            "gguf_three_bytes",
            &[("m.gguf", "GGU")],
            pipe("m.gguf", "t.csv", ""),
            &["m.gguf", "not a complete GGUF file"],
        ),
        with(
            "gguf_wrong_magic",
            &[("m.gguf", "PK\u{3}\u{4}not a gguf at all")],
            pipe("m.gguf", "t.csv", ""),
            &["m.gguf", "not a GGUF file"],
        ),
        with(
            "model_folder_without_config",
            &[("mdir/readme.txt", "x")],
            pipe("mdir", "t.csv", ""),
            &["mdir", "neither a config.json"],
        ),
        with(
            "model_zero_heads",
            &[("bad/config.json", &heads0)],
            pipe("bad", "t.csv", ""),
            &["`num_attention_heads` is 0"],
        ),
        with(
            "model_unknown_type",
            &[("bad/config.json", &unknown_type)],
            pipe("bad", "t.csv", ""),
            &["model_type `mamba` is not supported"],
        ),
        with(
            "model_negative_eps",
            &[("bad/config.json", &negative_eps)],
            pipe("bad", "t.csv", ""),
            &["bad/config.json", "`layer_norm_eps` is -1", "positive number"],
        ),
        with(
            "model_heads_do_not_divide_width",
            &[("bad/config.json", &heads7)],
            pipe("bad", "t.csv", ""),
            &["bad/config.json", "`num_attention_heads` = 7 does not divide `hidden_size` = 384"],
        ),
        with(
            "tasks_scores_beyond_range",
            &[
                ("c/spa.txt", "uno\ndos\ntres\n"),
                ("t.csv", "language,task,score\nfra,x,1e308\ndeu,x,-1e308\nspa,x,0.5\n"),
            ],
            pipe_corr(&m, "t.csv"),
            &["x/", "the task score of `", "e308, outside ±1e150"],
        ),
        with(
            "tasks_unparseable_score",
            &[("t.csv", "language,task,score\nfra,x,8O.5\ndeu,x,0.5\n")],
            pipe(&m, "t.csv", ""),
            &["t.csv: line 2", "`8O.5` is not a number"],
        ),
        with(
            "tasks_nan_score",
            &[("t.csv", "language,task,score\nfra,x,nan\ndeu,x,0.5\n")],
            pipe(&m, "t.csv", ""),
            &["t.csv: line 2", "NaN"],
        ),
        with(
            "tasks_inf_score",
            &[("t.csv", "language,task,score\nfra,x,0.3\ndeu,x,inf\n")],
            pipe(&m, "t.csv", ""),
            &["t.csv: line 3", "inf"],
        ),
        with(
            "tasks_duplicate_language",
            &[("t.csv", "language,task,score\nfra,x,0.3\ndeu,x,0.4\nfra,x,0.5\n")],
            pipe(&m, "t.csv", ""),
            &["t.csv: line 4", "second `x` score (first on line 2)"],
        ),
        with(
            "tasks_trailing_space_duplicate",
            &[("t.csv", "language,task,score\nfra ,x,0.3\nfra,x,0.5\n")],
            pipe(&m, "t.csv", ""),
            &["t.csv: line 3", "second"],
        ),
        with(
            "tasks_garbage_parquet",
            &[("t.parquet", "PAR1 this is not parquet")],
            pipe(&m, "t.parquet", ""),
            &["t.parquet", "not a readable Parquet file"],
        ),
        with(
            "tasks_unknown_format",
            &[("t.xlsx", "x")],
            pipe(&m, "t.xlsx", ""),
            &["t.xlsx", "unknown task-result format"],
        ),
        with(
            "tasks_wide_missing_column",
            &[("t.tsv", "language\tgpt\nfra\t0.5\n")],
            pipe(&m, "t.tsv", ", column: llama"),
            &["no column `llama`", "gpt"],
        ),
        with(
            "tasks_no_score_column",
            &[("t.csv", "lang,acc\nfra,1\n")],
            pipe(&m, "t.csv", ""),
            &["expected columns `language`, `task`, `score`"],
        ),
        with(
            "tasks_lm_eval_without_results",
            &[("r.json", "{\"config\": {}}")],
            pipe(&m, "r.json", ""),
            &["r.json", "no `results` object"],
        ),
        with(
            "tasks_lm_eval_metric_missing",
            &[("r.json", "{\"results\": {\"xcopa_fr\": {\"acc,none\": 0.5}}}")],
            pipe(&m, "r.json", ", column: acc_norm"),
            &["results.xcopa_fr has no `acc_norm`"],
        ),
        with(
            "tasks_lm_eval_invalid_json",
            &[("r.json", "{\"results\": ")],
            pipe(&m, "r.json", ""),
            &["r.json", "not valid JSON"],
        ),
        with(
            "tasks_no_language_matches",
            &[("t.csv", "language,task,score\nzul,x,0.3\n")],
            pipe(&m, "t.csv", ""),
            &["no corpus language matched"],
        ),
    ];
    // The real weights with the word-embedding table transposed, or cut to 100 rows (so the
    // tokenizer's ids run past it).
    let edited = |f: &dyn Fn(tch::Tensor) -> tch::Tensor| -> Vec<u8> {
        let tensors = tch::Tensor::read_safetensors(minilm.join("model.safetensors")).unwrap();
        let tensors: Vec<(String, tch::Tensor)> = tensors
            .into_iter()
            .map(|(n, t)| if n.ends_with("word_embeddings.weight") { (n, f(t)) } else { (n, t) })
            .collect();
        let tmp = tempfile::NamedTempFile::new().unwrap();
        tch::Tensor::write_safetensors(&tensors, tmp.path()).unwrap();
        std::fs::read(tmp.path()).unwrap()
    };
    let config = std::fs::read_to_string(minilm.join("config.json")).unwrap();
    for (name, bytes, expect) in [
        ("model_transposed_embedding", edited(&|t| t.transpose(0, 1).contiguous()), "transposed"),
        (
            "model_vocab_smaller_than_tokenizer",
            edited(&|t| t.narrow(0, 0, 100).contiguous()),
            "past the model's 100-row embedding table",
        ),
    ] {
        let mut c = with(name, &[("bad/config.json", &config)], pipe("bad", "t.csv", ""), &[expect]);
        c.files.push(("bad/model.safetensors".into(), bytes));
        for f in ["tokenizer.json", "tokenizer_config.json"] {
            c.files.push((format!("bad/{f}"), std::fs::read(minilm.join(f)).unwrap()));
        }
        cases.push(c);
    }
    for c in cases.iter_mut().filter(|c| {
        ["model_zero", "model_unknown", "model_negative", "model_heads"].iter().any(|p| c.name.starts_with(p))
    }) {
        // The weights and tokenizer of the real model, linked in beside the edited config.
        for f in ["model.safetensors", "tokenizer.json", "tokenizer_config.json"] {
            c.files.push((format!("bad/{f}"), std::fs::read(minilm.join(f)).unwrap()));
        }
    }
    run_all(cases);
}

#[test]
fn hostile_stores_are_refused_and_never_written_through() {
    use arrow::array::{BinaryArray, RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;
    let root = tempfile::tempdir().unwrap();
    let d = root.path();
    // A report artifact, as an imported store could hold it, naming files outside the folder.
    let store = mexa_store::Store::open(d.join("store")).unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("path", DataType::Utf8, false),
        Field::new("content", DataType::Binary, false),
    ]));
    let mut keys = Vec::new();
    for (i, evil) in ["../escaped.txt", "/tmp/mexa-escaped-abs.txt", "a/../../escaped2.txt", ""].iter().enumerate() {
        let b = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(StringArray::from(vec![*evil])), Arc::new(BinaryArray::from(vec![b"pwned".as_ref()]))],
        )
        .unwrap();
        let spec = mexa_store::KeySpec {
            stage: "report".into(),
            version: 1,
            params: serde_json::json!({"i": i}),
            inputs: Default::default(),
        };
        keys.push(store.write(spec, "evil/report", schema.clone(), &[b], 0.0, serde_json::Value::Null).unwrap().key);
    }
    let mexa = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_mexa"))
            .arg("--store")
            .arg(d.join("store"))
            .args(args)
            .current_dir(d)
            .output()
            .unwrap()
    };
    for k in &keys {
        let o = mexa(&["report", &k[..16], "--out", d.join("out").to_str().unwrap()]);
        let t = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{t}");
        assert!(t.contains("not a plain relative path"), "{t}");
    }
    assert!(
        !d.join("escaped.txt").exists()
            && !d.join("escaped2.txt").exists()
            && !Path::new("/tmp/mexa-escaped-abs.txt").exists()
    );

    // A corrupt artifact is not served by `show`, and `verify` quarantines it.
    let good = StringArray::from(vec!["x"]);
    let s2 = Arc::new(Schema::new(vec![Field::new("t", DataType::Utf8, false)]));
    let spec = mexa_store::KeySpec {
        stage: "t".into(),
        version: 1,
        params: serde_json::json!({}),
        inputs: Default::default(),
    };
    let m = store
        .write(
            spec,
            "plain",
            s2.clone(),
            &[RecordBatch::try_new(s2, vec![Arc::new(good)]).unwrap()],
            0.0,
            serde_json::Value::Null,
        )
        .unwrap();
    let p = store.data_path(&m.key);
    let mut bytes = std::fs::read(&p).unwrap();
    let k = bytes.len() / 2;
    bytes[k] ^= 0x20;
    std::fs::write(&p, bytes).unwrap();
    let o = mexa(&["show", m.key.short()]);
    let t = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("is corrupt") && t.contains(m.key.as_str()), "{t}");
    // Strays under objects/ are reported, not fatal.
    std::fs::write(d.join("store/objects/NOTES.txt"), "hi").unwrap();
    std::fs::create_dir_all(d.join("store/objects/zz/ünïcode")).unwrap();
    let o = mexa(&["verify"]);
    let t = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("1 corrupt") && t.contains("2 stray entries skipped"), "{t}");
    let o = mexa(&["ls"]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));

    // `mexa ls | head -1`: a closed pipe ends mexa quietly, never a panic.
    let mut child = Command::new(env!("CARGO_BIN_EXE_mexa"))
        .arg("--store")
        .arg(d.join("store"))
        .args(["ls"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Issue 23's reproductions through the binary: an artifact copied into another key's folder,
/// a manifest with a blanked seal and an edited field, shard keys that are paths or not hex.
/// None is served by `show`, `run` recomputes and replaces them, `import` rejects them and
/// `verify` quarantines them (never panics) and exits 1.
#[test]
fn swapped_blanked_and_malformed_artifacts_are_never_served() {
    let root = tempfile::tempdir().unwrap();
    let d = root.path();
    for (p, c) in CORPUS {
        std::fs::create_dir_all(d.join(p).parent().unwrap()).unwrap();
        std::fs::write(d.join(p), c).unwrap();
    }
    let write = |name: &str, limit: u32| {
        let p = d.join(name);
        std::fs::write(&p, format!("pipeline: {}\nstages:\n  corpus:\n    kind: load_corpus\n    params: {{path: c, pivot: eng, limit: {limit}}}\n", name.trim_end_matches(".yaml"))).unwrap();
        p
    };
    let (a, b) = (write("a.yaml", 2), write("b.yaml", 3));
    let mexa = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_mexa"))
            .arg("--store")
            .arg(d.join("store"))
            .args(args)
            .current_dir(d)
            .output()
            .unwrap();
        let t = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        assert!(!t.contains("panicked"), "{t}");
        (o.status.code(), t)
    };
    for p in [&a, &b] {
        assert_eq!(mexa(&["run", p.to_str().unwrap()]).0, Some(0));
    }
    let store = mexa_store::Store::open(d.join("store")).unwrap();
    // a's corpus has 2 sentences per language, b's 3.
    let key = |rows: u64| store.list().unwrap().into_iter().find(|i| i.manifest.rows == rows).unwrap().key;
    let (ka, kb) = (key(6), key(9));
    // 1. a's files in b's folder.
    for f in ["data.parquet", "manifest.json"] {
        std::fs::copy(store.object_dir(&ka).join(f), store.object_dir(&kb).join(f)).unwrap();
    }
    let (code, t) = mexa(&["show", kb.short()]);
    assert!(code == Some(1) && t.contains("is corrupt") && t.contains("another key"), "{t}");
    let (code, t) = mexa(&["plan", b.to_str().unwrap()]);
    assert!(code == Some(1) && t.contains("the stored artifact is corrupt"), "{t}");
    let other = d.join("other-store");
    let (code, t) = mexa(&["store", "export", other.to_str().unwrap()]);
    assert!(code == Some(1) && t.contains("1 rejected"), "{t}");
    let (code, t) = mexa(&["run", b.to_str().unwrap()]);
    assert!(code == Some(0) && t.contains("1 computed"), "{t}");
    let (code, t) = mexa(&["show", kb.short(), "--format", "csv"]);
    assert!(code == Some(0) && t.lines().count() == 1 + 3 * 3, "b's own rows are served again: {t}");
    // 2. A blanked seal with an edited field.
    let mp = store.object_dir(&ka).join("manifest.json");
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&mp).unwrap()).unwrap();
    m["rows"] = serde_json::json!(99);
    m["seal"] = serde_json::json!("");
    std::fs::write(&mp, serde_json::to_vec(&m).unwrap()).unwrap();
    let (code, t) = mexa(&["show", ka.short()]);
    assert!(code == Some(1) && t.contains("no seal"), "{t}");
    // 3. verify: quarantines a, exits 1; b is sound.
    let (code, t) = mexa(&["verify"]);
    assert!(code == Some(1) && t.contains("1 corrupt") && t.contains("no seal"), "{t}");
    let (code, t) = mexa(&["verify"]);
    assert!(code == Some(0) && t.contains("0 corrupt"), "{t}");
}
