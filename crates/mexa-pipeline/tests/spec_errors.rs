//! Every kind of pipeline error names its file, line and column, with a useful message.
mod common;
use mexa_pipeline::{parse, plan};
use mexa_store::{FileHasher, Store};
use std::path::Path;

/// Parses and plans `text`; returns the error text (panics if both succeed).
fn err(text: &str) -> String {
    let reg = common::registry();
    let spec = match parse("p.yaml", text, Path::new("p.yaml"), &reg) {
        Ok(s) => s,
        Err(e) => return e.to_string(),
    };
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    match plan(&spec, &reg, &store, &FileHasher::new(None)) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e.to_string(),
    }
}

fn assert_at(msg: &str, place: &str, words: &[&str]) {
    assert!(msg.contains(&format!("p.yaml:{place}: error:")), "expected an error at {place}, got:\n{msg}");
    for w in words {
        assert!(msg.contains(w), "expected {w:?} in:\n{msg}");
    }
}

#[test]
fn yaml_syntax() {
    assert_at(&err("stages:\n  a: {kind: source\n"), "3:1", &["invalid YAML"]);
}

#[test]
fn duplicate_stage_name() {
    let m = err("stages:\n  a: {kind: source, params: {text: x}}\n  a: {kind: source, params: {text: y}}\n");
    assert_at(&m, "3:3", &["duplicate key `a`", "line 2"]);
}

#[test]
fn unknown_stage_kind_with_suggestion() {
    let m = err("stages:\n  a:\n    kind: sorce\n    params: {text: x}\n");
    assert_at(&m, "3:11", &["unknown stage kind `sorce`", "did you mean `source`"]);
}

#[test]
fn unknown_parameter_with_suggestion() {
    let m = err("stages:\n  a:\n    kind: source\n    params: {text: x, copys: 2}\n");
    assert_at(&m, "4:23", &["`source` has no parameter `copys`", "did you mean `copies`"]);
}

#[test]
fn wrong_parameter_type() {
    let m = err("stages:\n  a:\n    kind: source\n    params:\n      text: x\n      copies: many\n");
    assert_at(&m, "6:15", &["`copies` must be an integer, found a string"]);
}

#[test]
fn wrong_type_after_grid_substitution_names_the_cell() {
    let m = err("grid:\n  n: [1, two]\nstages:\n  a:\n    kind: source\n    params: {text: x, copies: \"${n}\"}\n");
    assert_at(&m, "6:31", &["`copies` must be an integer", "n=two"]);
}

#[test]
fn missing_required_parameter() {
    let m = err("stages:\n  a:\n    kind: source\n");
    assert_at(&m, "2:3", &["needs parameter `text`"]);
}

#[test]
fn missing_input() {
    let m = err("stages:\n  b:\n    kind: shout\n");
    assert_at(&m, "2:3", &["needs input `src`"]);
}

#[test]
fn input_names_unknown_stage() {
    let m = err("stages:\n  a: {kind: source, params: {text: x}}\n  b:\n    kind: shout\n    inputs: {src: aa}\n");
    assert_at(&m, "5:19", &["names stage `aa`, which does not exist", "did you mean `a`"]);
}

#[test]
fn unknown_input_slot() {
    let m =
        err("stages:\n  a: {kind: source, params: {text: x}}\n  b:\n    kind: shout\n    inputs: {src: a, extra: a}\n");
    assert_at(&m, "5:22", &["no input slot `extra`"]);
}

#[test]
fn cycle() {
    let m = err("stages:\n  a:\n    kind: shout\n    inputs: {src: b}\n  b:\n    kind: shout\n    inputs: {src: a}\n");
    assert!(m.contains("error: the stages form a cycle: a → b → a") || m.contains("cycle: b → a → b"), "{m}");
    assert!(m.starts_with("p.yaml:2:3") || m.starts_with("p.yaml:5:3"), "{m}");
}

#[test]
fn unused_grid_axis() {
    let m = err("grid:\n  model: [a, b]\nstages:\n  a: {kind: source, params: {text: x}}\n");
    assert_at(&m, "2:3", &["grid axis `model` is not used by any stage"]);
}

#[test]
fn reference_to_unknown_axis() {
    let m = err("grid:\n  model: [a, b]\nstages:\n  a: {kind: source, params: {text: \"${modle}\"}}\n");
    assert_at(&m, "4:36", &["`modle`, which is not a grid axis", "did you mean `model`"]);
}

#[test]
fn rule_with_unknown_axis() {
    let m = err("grid:\n  model: [a, b]\n  exclude:\n    - {modle: a}\nstages:\n  a: {kind: source, params: {text: \"${model}\"}}\n");
    assert_at(&m, "4:7", &["`modle`, which is not a grid axis"]);
}

#[test]
fn unknown_top_level_and_stage_keys() {
    let m = err("stage:\n  a: {kind: source}\n");
    assert_at(&m, "1:1", &["unknown top-level key `stage`", "did you mean `stages`"]);
    let m = err("stages:\n  a: {kind: source, parms: {text: x}}\n");
    assert_at(&m, "2:21", &["unknown key `parms`", "did you mean `params`"]);
}

#[test]
fn missing_environment_variable() {
    let m = err("stages:\n  a: {kind: source, params: {text: \"${env:MEXA_SURELY_UNSET_VAR}\"}}\n");
    assert_at(&m, "2:36", &["`MEXA_SURELY_UNSET_VAR` is not set"]);
}

#[test]
fn several_errors_are_reported_together() {
    let m = err("stages:\n  a: {kind: sorce}\n  b: {kind: source, params: {txt: x}}\n");
    assert_eq!(m.matches("error:").count(), 3, "{m}");
}

#[test]
fn when_names_grid_axes_and_their_values() {
    let base = "grid:\n  word: [alpha, beta]\nstages:\n  a:\n    kind: source\n    params: {text: \"${word}\"}\n";
    let m = err(&format!("{base}    when: {{wrod: alpha}}\n"));
    assert_at(&m, "7:12", &["`wrod`", "not a grid axis", "did you mean `word`"]);
    let m = err(&format!("{base}    when: {{word: [alpha, betta]}}\n"));
    assert_at(&m, "7:26", &["`betta` is not a value of axis `word`", "did you mean `beta`"]);
    let m = err(&format!("{base}    when: [alpha]\n"));
    assert_at(&m, "7:11", &["`when` maps grid axes"]);
}

#[test]
fn resources_are_checked_per_executor() {
    let base = "stages:\n  a:\n    kind: source\n    params: {text: x}\n";
    let m = err(&format!("{base}    resources: {{slrum: {{gpus: 1}}}}\n"));
    assert_at(&m, "5:17", &["`slrum`", "not an executor", "did you mean `slurm`"]);
    let m = err(&format!("{base}    resources: {{slurm: {{gpu: 1}}}}\n"));
    assert_at(&m, "5:25", &["unknown `slurm` option `gpu`", "did you mean `gpus`"]);
    let m = err(&format!("{base}    resources: {{slurm: {{cpus: many}}}}\n"));
    assert_at(&m, "5:31", &["`cpus` must be an integer"]);
    let m = err(&format!("{base}    resources: {{slurm: {{extra: --qos=x}}}}\n"));
    assert_at(&m, "5:32", &["`extra` must be a list of strings"]);
}

/// Resources may take grid values (`gpus: ${model.gpus}`: a 70B model asks for two GPUs,
/// the others for one); each cell's value is substituted at plan time and type-checked there.
#[test]
fn resources_take_grid_values_checked_per_cell() {
    let reg = common::registry();
    let text = "grid:\n  model:\n    - {name: small, gpus: 1}\n    - {name: big, gpus: 2}\nstages:\n  a:\n    kind: source\n    params: {text: \"${model.name}\"}\n    resources: {slurm: {gpus: \"${model.gpus}\"}}\n";
    let spec = parse("p.yaml", text, Path::new("p.yaml"), &reg).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let p = plan(&spec, &reg, &store, &FileHasher::new(None)).unwrap();
    let gpus: Vec<_> = p.nodes.iter().map(|n| n.resources["slurm"]["gpus"].clone()).collect();
    assert_eq!(gpus, [serde_json::json!(1), serde_json::json!(2)]);
    let bad = text.replace("gpus: 2}", "gpus: two}");
    assert_at(&err(&bad), "9:31", &["`gpus` must be an integer, found", "two", "in grid cell model=big"]);
}
