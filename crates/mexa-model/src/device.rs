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
