//! A bounded, deterministic mutation fuzzer for the pipeline front-end (YAML tree and spec
//! validation): the bundled pipelines and a few hostile snippets, mutated thousands of times
//! (bytes flipped, YAML syntax spliced in, ranges deleted or repeated, truncation), must each
//! give a tree or a located error — never a panic, a stack overflow or a hang. Fixed seeds, so
//! a failure reproduces; the iteration count is bounded for CI (`MEXA_FUZZ_ITERS` raises it).
use mexa_pipeline::{parse, Registry};
use std::path::Path;

/// xorshift64*: small, deterministic, good enough to pick mutations.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const SPLICES: &[&str] = &[
    "&a ",
    "*a",
    "[",
    "]",
    "{",
    "}",
    ": ",
    "- ",
    "? ",
    "|",
    ">",
    "!!str ",
    "%YAML 1.2\n",
    "---\n",
    "...\n",
    "'",
    "\"",
    "#",
    "\n",
    "\t",
    "  ",
    "${",
    "${env:",
    "${assets}",
    "}",
    "\u{feff}",
    "\0",
    "\\",
    "&b [*a, *a]",
    "<<: *a\n",
];

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(v.len() + 1);
        match rng.below(6) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 => {
                let s = SPLICES[rng.below(SPLICES.len())].as_bytes();
                v.splice(at..at, s.iter().copied());
            }
            2 if !v.is_empty() => {
                let end = (at + rng.below(40)).min(v.len());
                v.drain(at.min(end)..end);
            }
            3 if !v.is_empty() => {
                let end = (at + rng.below(60)).min(v.len());
                let chunk: Vec<u8> = v[at.min(end)..end].to_vec();
                for _ in 0..1 + rng.below(8) {
                    v.splice(at.min(v.len())..at.min(v.len()), chunk.iter().copied());
                }
            }
            4 => v.truncate(at),
            _ => {
                let s = SPLICES[rng.below(SPLICES.len())].repeat(1 + rng.below(200));
                v.splice(at..at, s.bytes());
            }
        }
    }
    v
}

#[test]
fn the_pipeline_front_end_never_panics_on_mutated_input() {
    let root = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(root.join("pipelines"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "yaml"))
        .map(|e| std::fs::read(e.path()).unwrap())
        .collect();
    seeds.push(b"pipeline: p\ngrid:\n  m: [{name: a, path: x}, b]\nstages:\n  s:\n    kind: k\n    inputs: {x: y}\n    params: {a: [1, 2.5, '3'], b: ${m.path}}\n".to_vec());
    seeds.push(b"a: &a [x, y]\nb: &b [*a, *a]\nc: [*b, *b]\n".to_vec());
    assert!(seeds.len() >= 3, "the bundled pipelines are the seeds");
    let iters: usize = std::env::var("MEXA_FUZZ_ITERS").ok().and_then(|v| v.parse().ok()).unwrap_or(40_000);
    let registry = Registry::new();
    let mut rng = Rng(0x5E_ED0F_4E5A);
    let (mut ok, mut err) = (0, 0);
    let t = std::time::Instant::now();
    for i in 0..iters {
        let seed = &seeds[i % seeds.len()];
        let input = mutate(&mut rng, seed);
        let text = String::from_utf8_lossy(&input).into_owned();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let tree = mexa_pipeline::yaml::parse("fuzz.yaml", &text).is_ok();
            let spec = parse("fuzz.yaml", &text, Path::new("/nonexistent/fuzz.yaml"), &registry).is_ok();
            (tree, spec)
        }));
        match result {
            Ok((true, _)) => ok += 1,
            Ok((false, _)) => err += 1,
            Err(_) => panic!("iteration {i}: the front-end panicked on:\n{text:?}"),
        }
    }
    eprintln!("{iters} mutated pipelines in {:.1} s: {ok} parsed, {err} located errors", t.elapsed().as_secs_f64());
    assert!(ok > 0 && err > 0, "the mutations should produce both valid and invalid YAML");
}
