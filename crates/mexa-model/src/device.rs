//! Choosing where models run.
use anyhow::{bail, Result};
use tch::Device;

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
