//! A bounded, deterministic mutation fuzzer for the model file headers mexa parses: a real
//! GGUF header (a parity fixture written as llama.cpp writes it) and a safetensors file,
//! mutated (bytes flipped, lengths and counts overwritten with extreme values, truncation)
//! and opened. Each must load or fail with an error — never panic, abort or exhaust memory.
//! Fixed seed; `MEXA_FUZZ_ITERS` raises the bounded count used in CI.
use mexa_model::gguf::Gguf;
use std::path::PathBuf;

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

fn mutate(rng: &mut Rng, seed: &[u8], header: usize) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..1 + rng.below(3) {
        if v.is_empty() {
            break;
        }
        let at = rng.below(header.min(v.len()));
        match rng.below(5) {
            0 => v[at] ^= 1 << rng.below(8),
            1 => {
                // An extreme little-endian u64 or u32 (lengths, counts, offsets, types).
                let vals = [0u64, 1, 7, 0xff, 0xffff_ffff, u64::MAX, 1 << 40, 1 << 62];
                let x = vals[rng.below(vals.len())].to_le_bytes();
                let w = if rng.below(2) == 0 { 8 } else { 4 };
                for (i, b) in x.iter().take(w).enumerate() {
                    if at + i < v.len() {
                        v[at + i] = *b;
                    }
                }
            }
            2 => v.truncate(at),
            3 => {
                let n = rng.below(16);
                v.drain(at..(at + n).min(v.len()));
            }
            _ => v.insert(at, rng.next() as u8),
        }
    }
    v
}

fn fixtures() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/parity"))
}

fn iters(default: usize) -> usize {
    std::env::var("MEXA_FUZZ_ITERS").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[test]
fn mutated_gguf_headers_never_panic() {
    let seed = std::fs::read(fixtures().join("qwen3/model.gguf")).unwrap();
    // The metadata and tensor directory sit in the first few KB; data after them is kept so
    // that intact headers still load.
    let header = 4096;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    let mut rng = Rng(0x6647_5546);
    let (mut ok, mut err) = (0, 0);
    for i in 0..iters(1500) {
        let bytes = mutate(&mut rng, &seed, header);
        std::fs::write(&path, &bytes).unwrap();
        match std::panic::catch_unwind(|| Gguf::open(&path).map(|g| g.tensors.len())) {
            Ok(Ok(_)) => ok += 1,
            Ok(Err(e)) => {
                err += 1;
                assert!(format!("{e:#}").contains("m.gguf"), "iteration {i}: the error does not name the file: {e:#}");
            }
            Err(_) => panic!("iteration {i}: Gguf::open panicked (input kept at {})", path.display()),
        }
    }
    eprintln!("GGUF: {ok} opened, {err} refused");
    assert!(err > 0);
}

#[test]
fn mutated_safetensors_never_panic() {
    let seed = std::fs::read(fixtures().join("llama/expected.safetensors")).unwrap();
    let header = 8 + u64::from_le_bytes(seed[..8].try_into().unwrap()) as usize;
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(0x5AFE_7E45);
    let (mut ok, mut err) = (0, 0);
    for i in 0..iters(1500) {
        let bytes = mutate(&mut rng, &seed, header);
        let model = dir.path().join(format!("m{}", i % 4));
        std::fs::create_dir_all(&model).unwrap();
        std::fs::write(model.join("model.safetensors"), &bytes).unwrap();
        let r = std::panic::catch_unwind(|| {
            mexa_model::weights::Weights::from_safetensors_dir(&model, tch::Kind::Float, tch::Device::Cpu)
                .map(|w| w.names().count())
        });
        match r {
            Ok(Ok(_)) => ok += 1,
            Ok(Err(_)) => err += 1,
            Err(_) => panic!("iteration {i}: reading safetensors panicked"),
        }
    }
    eprintln!("safetensors: {ok} loaded, {err} refused");
    assert!(err > 0);
}
