//! Device selection, libtorch runtime setup, and the `doctor` report.
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use tch::{Cuda, Device};

use crate::config::Config;
use crate::error::{Error, Result};

/// The tch release this crate is pinned to (Cargo.toml: `tch = "=0.24.0"`).
pub const TCH_VERSION: &str = "0.24.0";

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
pub fn init(config: &Config) -> Result<Device> {
    if config.runtime.threads > 0 {
        tch::set_num_threads(config.runtime.threads as i32);
    }
    tch::manual_seed(config.runtime.seed as i64);
    let device = config.runtime.device.resolve()?;
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

/// What `bone-age doctor` reports: versions, devices, threads and paths in use.
#[derive(Clone, Debug, Serialize)]
pub struct Doctor {
    pub crate_version: String,
    pub tch_version: String,
    /// Version of the libtorch loaded into this process (from the wheel's version.py).
    pub torch_version: Option<String>,
    /// Directory of the libtorch_cpu.so this process loaded.
    pub libtorch_loaded: Option<PathBuf>,
    /// Directory the binary was linked against (its rpath).
    pub libtorch_built: Option<PathBuf>,
    pub cuda_available: bool,
    pub cuda_devices: i64,
    pub cudnn_available: bool,
    pub cudnn_version: Option<i64>,
    pub device_auto: String,
    pub threads: i32,
    pub interop_threads: i32,
    pub mkl: bool,
    pub openmp: bool,
    pub executable: Option<PathBuf>,
    pub config_file: Option<PathBuf>,
    pub data_dir: PathBuf,
    pub runs_dir: PathBuf,
    pub cache_dir: PathBuf,
    pub venv: Option<PathBuf>,
}

impl Doctor {
    pub fn collect(config: &Config, config_file: Option<&Path>) -> Self {
        let libtorch_loaded = loaded_libtorch_dir();
        let cuda_available = Cuda::is_available();
        let cudnn_available = cuda_available && Cuda::cudnn_is_available();
        Self {
            crate_version: env!("CARGO_PKG_VERSION").into(),
            tch_version: TCH_VERSION.into(),
            torch_version: libtorch_loaded.as_deref().and_then(torch_version_of),
            libtorch_loaded,
            libtorch_built: option_env!("BONE_AGE_BUILD_LIBTORCH_LIB").map(PathBuf::from),
            cuda_available,
            cuda_devices: Cuda::device_count(),
            cudnn_available,
            cudnn_version: cudnn_available.then(tch::utils::version_cudnn),
            device_auto: device_name(Device::cuda_if_available()),
            threads: tch::get_num_threads(),
            interop_threads: tch::get_num_interop_threads(),
            mkl: tch::utils::has_mkl(),
            openmp: tch::utils::has_openmp(),
            executable: std::env::current_exe().ok(),
            config_file: config_file.map(Path::to_path_buf),
            data_dir: config.paths.data_dir.clone(),
            runs_dir: config.paths.runs_dir.clone(),
            cache_dir: config.paths.cache_dir(),
            venv: std::env::var_os("BONE_AGE_VENV")
                .map(PathBuf::from)
                .or_else(|| Some(config.paths.cache_dir().join("venv")).filter(|p| p.is_dir())),
        }
    }
}

impl fmt::Display for Doctor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = |p: &Option<PathBuf>| {
            p.as_ref()
                .map_or("(unknown)".to_string(), |p| p.display().to_string())
        };
        writeln!(f, "bone-age        {}", self.crate_version)?;
        writeln!(f, "tch             {}", self.tch_version)?;
        let torch = self.torch_version.as_deref().unwrap_or("(unknown)");
        writeln!(f, "torch           {torch}")?;
        writeln!(f, "libtorch        {}", path(&self.libtorch_loaded))?;
        if self.libtorch_built != self.libtorch_loaded {
            writeln!(f, "  linked from   {}", path(&self.libtorch_built))?;
        }
        let cuda = match (self.cuda_available, self.cudnn_version) {
            (true, Some(v)) => format!("yes, {} device(s), cuDNN {v}", self.cuda_devices),
            (true, None) => format!("yes, {} device(s), no cuDNN", self.cuda_devices),
            (false, _) => "no".into(),
        };
        writeln!(f, "CUDA            {cuda}")?;
        writeln!(f, "device (auto)   {}", self.device_auto)?;
        writeln!(
            f,
            "threads         {} intra-op, {} inter-op (MKL {}, OpenMP {})",
            self.threads,
            self.interop_threads,
            yes_no(self.mkl),
            yes_no(self.openmp)
        )?;
        writeln!(f, "executable      {}", path(&self.executable))?;
        let cfg = self.config_file.as_ref().map(|p| p.display().to_string());
        writeln!(
            f,
            "config          {}",
            cfg.as_deref().unwrap_or("(defaults)")
        )?;
        writeln!(f, "data dir        {}", self.data_dir.display())?;
        writeln!(f, "runs dir        {}", self.runs_dir.display())?;
        writeln!(f, "cache dir       {}", self.cache_dir.display())?;
        write!(f, "python venv     {}", path(&self.venv))
    }
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
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
