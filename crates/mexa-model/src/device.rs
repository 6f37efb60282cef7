//! Choosing where models run.
use anyhow::{bail, Result};
use tch::{Device, Tensor};

/// Parses `auto`, `cpu`, `cuda` or `cuda:N`. `auto` picks CUDA device 0 when libtorch has it.
pub fn parse_device(s: &str) -> Result<Device> {
    Ok(match s {
        "auto" => Device::cuda_if_available(),
        "cpu" => Device::Cpu,
        "cuda" => {
            if !tch::Cuda::is_available() {
                bail!("device `cuda` asked for, but this libtorch has no usable CUDA (see docs/gpu.md)");
            }
            Device::Cuda(0)
        }
        other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(n)) => {
                let count = tch::Cuda::device_count() as usize;
                if n >= count {
                    bail!("device `{other}` asked for, but libtorch sees {count} CUDA device(s)");
                }
                Device::Cuda(n)
            }
            _ => bail!("unknown device `{other}`: expected auto, cpu, cuda or cuda:N"),
        },
    })
}

/// One line about the libtorch this binary uses: version, where it was found, devices.
pub fn runtime_info() -> String {
    let cuda = if tch::Cuda::is_available() {
        format!("CUDA available, {} device(s)", tch::Cuda::device_count())
    } else {
        "CPU only (no CUDA)".to_string()
    };
    format!(
        "libtorch {} ({}), {}, {} threads",
        option_env!("MEXA_LIBTORCH_VERSION").unwrap_or("unknown"),
        option_env!("MEXA_LIBTORCH_DIR").unwrap_or("unknown path"),
        cuda,
        tch::get_num_threads()
    )
}

/// Makes glibc's allocator keep freed memory for reuse instead of handing it back to the
/// kernel. libtorch allocates every intermediate CPU tensor with `malloc`; by default a block
/// over 128 KiB is a fresh `mmap`, so each [batch × tokens × hidden] activation (megabytes) is
/// faulted in page by page and unmapped again when dropped. Measured on this project's 2-core
/// VM: a fifth of an embed run went to page faults (sys time 7 s of 43 s), and embedding was
/// 16 % faster with blocks up to 32 MiB (glibc's ceiling) served from the heap. Call once at
/// process start, before other threads allocate.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn mallopt(param: i32, value: i32) -> i32;
        }
        const M_TRIM_THRESHOLD: i32 = -1;
        const M_MMAP_THRESHOLD: i32 = -3;
        // SAFETY: mallopt only changes allocator parameters; both values are in range.
        unsafe {
            mallopt(M_MMAP_THRESHOLD, 32 << 20);
            mallopt(M_TRIM_THRESHOLD, 1 << 30);
        }
    }
}

/// Hands memory the allocator keeps after frees back to the system (glibc's `malloc_trim`,
/// which walks every thread's arena). [`tune_allocator`] tells glibc to keep up to 1 GB, which
/// is right between batches but wrong after a model is dropped: a sweep would hold the last
/// model's pages while loading the next. Called when models are released.
pub fn return_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> i32;
        }
        // SAFETY: malloc_trim only returns free pages to the kernel.
        unsafe {
            malloc_trim(0);
        }
    }
}

/// Parses a size: a positive number with an optional K, M, G or T (powers of 1000, a
/// trailing B allowed: `800MB`, `24G`), or `none` (no limit: `Ok(None)`).
pub fn parse_bytes(s: &str) -> std::result::Result<Option<u64>, String> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    let (num, unit) = t.split_at(t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len()));
    let scale: f64 = match unit.to_ascii_uppercase().trim_end_matches('B') {
        "" => 1.0,
        "K" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        _ => return Err(format!("`{s}`: a size is a number with K, M, G or T (e.g. 24G), or `none`")),
    };
    num.trim()
        .parse::<f64>()
        .ok()
        .filter(|v| *v > 0.0)
        .map(|v| Some((v * scale) as u64))
        .ok_or_else(|| format!("`{s}`: a size is a positive number with K, M, G or T (e.g. 24G), or `none`"))
}

/// The memory available now (Linux: MemAvailable in /proc/meminfo).
pub fn available_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

/// The memory free on a device now: MemAvailable for the CPU; for CUDA device `i`, what
/// `nvidia-smi` reports free on it (the `CUDA_VISIBLE_DEVICES` entry `i` names, when set).
/// None when it cannot be found out.
pub fn free_memory(d: Device) -> Option<u64> {
    match d {
        Device::Cuda(i) => {
            let id = match std::env::var("CUDA_VISIBLE_DEVICES") {
                Ok(v) if !v.trim().is_empty() => v.split(',').nth(i)?.trim().to_string(),
                _ => i.to_string(),
            };
            let o = std::process::Command::new("nvidia-smi")
                .args(["--query-gpu=memory.free", "--format=csv,noheader,nounits", &format!("--id={id}")])
                .output()
                .ok()?;
            let mib: u64 = String::from_utf8_lossy(&o.stdout).trim().parse().ok()?;
            Some(mib << 20)
        }
        _ => available_memory(),
    }
}

/// The memory free on all of `devices` together (each counted once), if every one can say.
pub fn free_memory_on(devices: &[Device]) -> Option<u64> {
    let mut seen: Vec<Device> = Vec::new();
    let mut total = 0;
    for &d in devices {
        if !seen.contains(&d) {
            seen.push(d);
            total += free_memory(d)?;
        }
    }
    Some(total)
}

/// `device: auto` for a model whose weights take `need` bytes: the CPU without CUDA; else
/// the first GPU if the weights fit its free memory (with a tenth to spare for
/// activations), else as few GPUs as hold them together (in order, when `split` is allowed:
/// the family can be split), else every GPU (the model then runs layer-major within them).
pub fn auto_devices(need: u64, split: bool) -> Vec<Device> {
    let n = tch::Cuda::device_count().max(0) as usize;
    if n == 0 || !tch::Cuda::is_available() {
        return vec![Device::Cpu];
    }
    if !split || n == 1 {
        return vec![Device::Cuda(0)];
    }
    let want = need + need / 10;
    let mut have = 0;
    for i in 0..n {
        have += free_memory(Device::Cuda(i)).unwrap_or(0);
        if have >= want {
            return (0..=i).map(Device::Cuda).collect();
        }
    }
    (0..n).map(Device::Cuda).collect()
}

/// The CUDA device number of `d` (None for the CPU).
pub fn cuda_index(d: Device) -> Option<usize> {
    match d {
        Device::Cuda(i) => Some(i),
        _ => None,
    }
}

/// Parses a device list: one device as [`parse_device`] reads it, or several separated by
/// commas (`cuda:0,cuda:1`), over which a decoder's layers are split in order. `cuda:*` is
/// every CUDA device libtorch sees. A repeated device is allowed (`cpu,cpu` runs the split
/// code path on one CPU, which is how it is tested without GPUs).
pub fn parse_devices(s: &str) -> Result<Vec<Device>> {
    if s == "cuda:*" {
        let n = tch::Cuda::device_count();
        if n == 0 {
            bail!("device `cuda:*` asked for, but this libtorch has no usable CUDA (see docs/gpu.md)");
        }
        return Ok((0..n as usize).map(Device::Cuda).collect());
    }
    s.split(',').map(|d| parse_device(d.trim())).collect()
}

/// Where each part of a decoder lives when its layers are split over several devices:
/// layer `i` of `layers` on device `i · n / layers` (contiguous, equal runs), the token
/// embeddings on the first, the final norm and LM head on the last. One device is the
/// ordinary case. Invariant: `devices` is not empty.
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    devices: Vec<Device>,
    layers: usize,
}

impl From<Device> for Placement {
    fn from(d: Device) -> Self {
        Self { devices: vec![d], layers: 1 }
    }
}

impl Placement {
    /// `layers` split over `devices` (the first device alone when the list is empty).
    pub fn split(devices: &[Device], first: Device, layers: usize) -> Self {
        let devices = if devices.is_empty() { vec![first] } else { devices.to_vec() };
        Self { devices, layers: layers.max(1) }
    }
    pub fn first(&self) -> Device {
        self.devices[0]
    }
    pub fn last(&self) -> Device {
        self.devices[self.devices.len() - 1]
    }
    /// More than one device named (even the same one twice).
    pub fn is_split(&self) -> bool {
        self.devices.len() > 1
    }
    /// The device of layer `i`.
    pub fn layer(&self, i: usize) -> Device {
        self.devices[(i * self.devices.len() / self.layers).min(self.devices.len() - 1)]
    }
    /// The device of a weight by its (prefix-stripped) name: `layers.N.…` / `h.N.…` on its
    /// layer's device, the final norm and LM head on the last, everything else on the first.
    pub fn of_weight(&self, name: &str) -> Device {
        let layer = ["layers.", "h.", "blk."]
            .iter()
            .find_map(|p| name.strip_prefix(p))
            .and_then(|rest| rest.split('.').next())
            .and_then(|n| n.parse::<usize>().ok());
        match layer {
            Some(i) => self.layer(i),
            None if name.starts_with("norm.") || name.starts_with("lm_head.") => self.last(),
            None => self.first(),
        }
    }
}

/// This machine's f32 matrix-product speed in FLOP/s: a [512 × 1024] × [1024 × 1024] product
/// through libtorch on the CPU, the best of three rounds of 8 repetitions after one warm-up (~0.1 s).
pub fn f32_matmul_flops() -> f64 {
    let _g = tch::no_grad_guard();
    let (m, k, n) = (512i64, 1024i64, 1024i64);
    let a = Tensor::randn([m, k], (tch::Kind::Float, Device::Cpu));
    let b = Tensor::randn([k, n], (tch::Kind::Float, Device::Cpu));
    let _ = a.matmul(&b);
    // The best of three rounds: a peak, so a round slowed by another process does not count.
    let reps = 8;
    (0..3)
        .map(|_| {
            let t = std::time::Instant::now();
            for _ in 0..reps {
                let _ = a.matmul(&b);
            }
            2.0 * (m * k * n * reps) as f64 / t.elapsed().as_secs_f64().max(1e-9)
        })
        .fold(0.0, f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_split_into_contiguous_equal_runs_with_the_head_on_the_last_device() {
        let p = Placement::split(&[Device::Cpu, Device::Cuda(1)], Device::Cpu, 5);
        let on: Vec<Device> = (0..5).map(|i| p.layer(i)).collect();
        assert_eq!(on, [Device::Cpu, Device::Cpu, Device::Cpu, Device::Cuda(1), Device::Cuda(1)]);
        assert_eq!(p.of_weight("layers.4.mlp.up_proj.weight"), Device::Cuda(1));
        assert_eq!(p.of_weight("layers.0.mlp.up_proj.weight"), Device::Cpu);
        assert_eq!(p.of_weight("norm.weight"), Device::Cuda(1));
        assert_eq!(p.of_weight("lm_head.weight"), Device::Cuda(1));
        assert_eq!(p.of_weight("embed_tokens.weight"), Device::Cpu);
        let one = Placement::from(Device::Cpu);
        assert!(!one.is_split());
        assert_eq!(one.of_weight("layers.30.x"), Device::Cpu);
        assert_eq!(parse_devices("cpu, cpu").unwrap(), [Device::Cpu, Device::Cpu]);
        assert!(parse_devices("cpu,gpu").is_err());
    }
}
