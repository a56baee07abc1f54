//! Device selection and libtorch runtime setup (`[runtime]`): threads, seed, and the
//! CUDA-only switches training uses (cuDNN autotuning, channels-last, bf16 autocast).
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use tch::{nn, Cuda, Device, Tensor};

use crate::error::{Error, Result};

/// The tch release this crate is pinned to (Cargo.toml: `tch = "=0.24.0"`).
pub const TCH_VERSION: &str = "0.24.0";

/// Where and how computation runs (`[runtime]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeConfig {
    /// `auto` (CUDA when libtorch sees a GPU, else CPU), `cpu`, `cuda` or `cuda:N`.
    pub device: DeviceSpec,
    /// libtorch intra-op threads; 0 keeps libtorch's default (one per core).
    pub threads: usize,
    /// Seed for every random choice (folds, initialisation, augmentation).
    pub seed: u64,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            device: DeviceSpec::Auto,
            threads: 0,
            seed: 42,
        }
    }
}

/// Which device to run on: `auto`, `cpu`, `cuda` (= `cuda:0`) or `cuda:N`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DeviceSpec {
    /// CUDA device 0 when libtorch sees one, else the CPU.
    #[default]
    Auto,
    Cpu,
    Cuda(usize),
}

impl FromStr for DeviceSpec {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::DeviceSpec {
            value: s.to_string(),
        };
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            other => match other.strip_prefix("cuda:") {
                Some(n) => n.parse().map(Self::Cuda).map_err(|_| bad()),
                None => Err(bad()),
            },
        }
    }
}

impl TryFrom<String> for DeviceSpec {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<DeviceSpec> for String {
    fn from(d: DeviceSpec) -> String {
        d.to_string()
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl DeviceSpec {
    /// The tch device, checked against what libtorch actually sees.
    pub fn resolve(self) -> Result<Device> {
        match self {
            Self::Auto => Ok(Device::cuda_if_available()),
            Self::Cpu => Ok(Device::Cpu),
            Self::Cuda(n) => {
                let count = Cuda::device_count().max(0) as usize;
                if n < count {
                    Ok(Device::Cuda(n))
                } else if count == 0 {
                    Err(Error::DeviceUnavailable {
                        requested: self.to_string(),
                        reason: "libtorch sees no CUDA device (see `bone-age doctor`)".into(),
                    })
                } else {
                    Err(Error::DeviceUnavailable {
                        requested: self.to_string(),
                        reason: format!("libtorch sees only {count} CUDA device(s)"),
                    })
                }
            }
        }
    }
}

/// Applies the runtime config (threads, seed) to libtorch and returns the device.
pub fn init(config: &RuntimeConfig) -> Result<Device> {
    if config.threads > 0 {
        tch::set_num_threads(config.threads as i32);
    }
    tch::manual_seed(config.seed as i64);
    let device = config.device.resolve()?;
    tracing::info!(device = %device_name(device), threads = tch::get_num_threads(), "runtime ready");
    Ok(device)
}

/// `cpu` or `cuda:N`, for logs and reports.
pub fn device_name(device: Device) -> String {
    match device {
        Device::Cuda(n) => format!("cuda:{n}"),
        _ => "cpu".into(),
    }
}

extern "C" {
    fn bone_age_set_cuda_autocast_bf16(bf16: i32);
    fn bone_age_cuda_autocast_is_bf16() -> i32;
}

/// Selects bfloat16 (else float16) as libtorch's CUDA autocast dtype; `tch::autocast`
/// only switches autocast on and off (csrc/autocast.cpp).
pub fn set_cuda_autocast_bf16(bf16: bool) {
    // SAFETY: plain calls into libtorch's global autocast settings; no pointers cross.
    unsafe { bone_age_set_cuda_autocast_bf16(i32::from(bf16)) }
}

/// Whether libtorch's CUDA autocast dtype is bfloat16.
pub fn cuda_autocast_is_bf16() -> bool {
    // SAFETY: as above.
    unsafe { bone_age_cuda_autocast_is_bf16() != 0 }
}

/// Channels-last strides for a 4-d tensor (the permute–contiguous–permute idiom).
pub fn channels_last(t: &Tensor) -> Tensor {
    t.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}

/// On CUDA: cuDNN autotuning, channels-last convolution weights, bf16 autocast, as the
/// `[train]` switches say. Nothing on the CPU.
pub fn cuda_setup(
    vs: &mut nn::VarStore,
    benchmark: bool,
    channels_last_weights: bool,
    autocast: bool,
) {
    if !vs.device().is_cuda() {
        return;
    }
    Cuda::cudnn_set_benchmark(benchmark);
    if channels_last_weights {
        tch::no_grad(|| {
            for (_, mut v) in vs.variables() {
                if v.dim() == 4 {
                    v.set_data(&channels_last(&v));
                }
            }
        });
    }
    if autocast {
        set_cuda_autocast_bf16(true);
    }
}

/// The directory of the libtorch_cpu.so mapped into this process (Linux).
pub fn loaded_libtorch_dir() -> Option<PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.ends_with("/libtorch_cpu.so"))
        .and_then(|p| Path::new(p).parent().map(Path::to_path_buf))
}

/// Reads the version of the libtorch in `lib_dir`: the PyPI wheel's `torch/version.py`,
/// or the `build-version` file of a libtorch zip.
pub fn torch_version_of(lib_dir: &Path) -> Option<String> {
    let root = lib_dir.parent()?;
    if let Ok(py) = std::fs::read_to_string(root.join("version.py")) {
        return py.lines().find_map(|l| {
            let v = l
                .strip_prefix("__version__")?
                .trim_start()
                .strip_prefix('=')?;
            Some(v.trim().trim_matches(|c| c == '\'' || c == '"').to_string())
        });
    }
    std::fs::read_to_string(root.join("build-version"))
        .ok()
        .map(|s| s.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_autocast_dtype_switch_reaches_libtorch() {
        set_cuda_autocast_bf16(true);
        assert!(cuda_autocast_is_bf16());
        set_cuda_autocast_bf16(false);
        assert!(!cuda_autocast_is_bf16());
    }

    #[test]
    fn device_specs_parse_and_print() {
        for (s, d) in [
            ("auto", DeviceSpec::Auto),
            ("CPU", DeviceSpec::Cpu),
            ("cuda", DeviceSpec::Cuda(0)),
            ("cuda:3", DeviceSpec::Cuda(3)),
        ] {
            assert_eq!(s.parse::<DeviceSpec>().unwrap(), d);
            assert_eq!(d.to_string().parse::<DeviceSpec>().unwrap(), d);
        }
        for bad in ["", "tpu", "gpu", "cuda:", "cuda:-1", "cuda:x"] {
            let msg = bad.parse::<DeviceSpec>().unwrap_err().to_string();
            assert!(msg.contains(&format!("{bad:?}")), "{msg}");
        }
    }

    #[test]
    fn cpu_and_auto_resolve_and_missing_gpu_is_an_error() {
        assert_eq!(DeviceSpec::Cpu.resolve().unwrap(), Device::Cpu);
        assert_eq!(
            DeviceSpec::Auto.resolve().unwrap(),
            Device::cuda_if_available()
        );
        let n = Cuda::device_count() as usize;
        let msg = DeviceSpec::Cuda(n).resolve().unwrap_err().to_string();
        assert!(msg.contains(&format!("cuda:{n}")), "{msg}");
    }

    #[test]
    fn reads_wheel_version_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("lib")).unwrap();
        std::fs::write(
            dir.path().join("version.py"),
            "__all__ = []\n__version__ = '2.11.0+cu130'\n",
        )
        .unwrap();
        let v = torch_version_of(&dir.path().join("lib"));
        assert_eq!(v.as_deref(), Some("2.11.0+cu130"));
    }
}
