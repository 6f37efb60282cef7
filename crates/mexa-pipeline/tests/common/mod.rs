//! Placeholder stages for the runner's tests (real stages live in mexa-stages).
#![allow(dead_code)]
use anyhow::{bail, Result};
use arrow::array::{Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use mexa_pipeline::stage::string_col;
use mexa_pipeline::{Ctx, InputSpec, Output, ParamSpec, Registry, Stage, Table};
use std::io::Write;
use std::sync::Arc;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new("line", DataType::Utf8, false)]))
}

pub fn lines_table(lines: Vec<String>) -> Table {
    let b = RecordBatch::try_new(schema(), vec![Arc::new(StringArray::from(lines))]).unwrap();
    Table::new(schema(), vec![b])
}

pub fn lines_of(t: &Table) -> Vec<String> {
    t.batches
        .iter()
        .flat_map(|b| {
            let c = string_col(b, "line").unwrap();
            (0..c.len()).map(|i| c.value(i).to_string()).collect::<Vec<_>>()
        })
        .collect()
}

/// Appends "<pid> <key>" to $MEXA_TEST_LOG: who computed what. Several processes append to
/// the same file, so each line goes out in one `write` on an O_APPEND file (`writeln!` on a
/// `File` issues one write per formatted piece, and two processes' pieces interleave).
fn log_compute(key: &str) {
    if let Ok(p) = std::env::var("MEXA_TEST_LOG") {
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(p).unwrap();
        let line = format!("{} {key}\n", std::process::id());
        f.write_all(line.as_bytes()).unwrap();
    }
}

mexa_pipeline::stage_params! {
    pub struct SourceParams {
        /// text
        text: String,
        /// copies
        copies: usize = 1,
    }
}

mexa_pipeline::stage_params! {
    pub struct ShoutParams {
        /// shards
        shards: usize = 1,
        /// sleep per shard
        sleep_ms: u64 = 0; execution,
        /// fail
        fail: bool = false,
        /// rows per input line
        rows: usize = 1,
        /// appended
        suffix: String = "",
        /// an option added later: keyed only when set (the test stage ignores it)
        tag: String = ""; keyed_if_set,
    }
}

/// `source`: `copies` copies of `text`, one per line.
pub struct Source;
impl Stage for Source {
    fn kind(&self) -> &'static str {
        "source"
    }
    fn version(&self) -> u32 {
        1
    }
    fn doc(&self) -> &'static str {
        "test: emits text"
    }
    fn params(&self) -> Vec<ParamSpec> {
        SourceParams::specs()
    }
    fn inputs(&self) -> Vec<InputSpec> {
        vec![]
    }
    fn run(&self, ctx: &Ctx) -> Result<Output> {
        let p: SourceParams = ctx.typed()?;
        log_compute(ctx.key);
        Ok(lines_table(vec![p.text; p.copies]).into())
    }
}

/// `shout`: upper-cases its input in `shards` shards, hashing each line with the shard
/// number; sleeps `sleep_ms` per shard; fails when `fail` is true.
pub struct Shout(pub u32);
impl Stage for Shout {
    fn kind(&self) -> &'static str {
        "shout"
    }
    fn version(&self) -> u32 {
        self.0
    }
    fn doc(&self) -> &'static str {
        "test: sharded transform"
    }
    fn params(&self) -> Vec<ParamSpec> {
        ShoutParams::specs()
    }
    fn inputs(&self) -> Vec<InputSpec> {
        vec![InputSpec::one("src", "lines")]
    }
    fn run(&self, ctx: &Ctx) -> Result<Output> {
        let p: ShoutParams = ctx.typed()?;
        if p.fail {
            bail!("asked to fail");
        }
        let lines = lines_of(&ctx.read(ctx.input("src")?)?);
        let mut shards = Vec::new();
        for s in 0..p.shards {
            let name = format!("s{s}");
            let key = ctx.shard(&name, || {
                log_compute(&format!("shard {} {name}", ctx.key));
                std::thread::sleep(std::time::Duration::from_millis(p.sleep_ms));
                let mut out = Vec::new();
                for l in &lines {
                    for r in 0..p.rows {
                        let h = blake3::hash(format!("{l}/{s}/{r}").as_bytes()).to_hex();
                        out.push(format!("{}{} {}", l.to_uppercase(), p.suffix, &h[..16]));
                    }
                }
                Ok(lines_table(out).into())
            })?;
            shards.push((name, key));
        }
        log_compute(ctx.key);
        Ctx::shard_index(&shards, serde_json::Value::Null)
    }
}

/// `collect`: gathers every matching input and concatenates them.
pub struct Collect;
impl Stage for Collect {
    fn kind(&self) -> &'static str {
        "collect"
    }
    fn version(&self) -> u32 {
        1
    }
    fn doc(&self) -> &'static str {
        "test: gather"
    }
    fn params(&self) -> Vec<ParamSpec> {
        vec![]
    }
    fn inputs(&self) -> Vec<InputSpec> {
        vec![InputSpec::gather("parts", "parts")]
    }
    fn run(&self, ctx: &Ctx) -> Result<Output> {
        log_compute(ctx.key);
        let mut all = Vec::new();
        for i in ctx.gathered("parts") {
            all.extend(lines_of(&ctx.read(i)?).into_iter().map(|l| format!("{}: {l}", i.label)));
        }
        Ok(lines_table(all).into())
    }
}

pub fn registry() -> Registry {
    registry_with_shout_version(1)
}

pub fn registry_with_shout_version(v: u32) -> Registry {
    let mut r = Registry::new();
    r.add(Source).add(Shout(v)).add(Collect);
    r
}
