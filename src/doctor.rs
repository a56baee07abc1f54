//! The `doctor` report: versions, devices, threads and the paths in use.
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use tch::{Cuda, Device};

use crate::files::PathsConfig;
use crate::runtime::{device_name, loaded_libtorch_dir, torch_version_of, TCH_VERSION};

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
    pub fn collect(paths: &PathsConfig, config_file: Option<&Path>) -> Self {
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
            data_dir: paths.data_dir.clone(),
            runs_dir: paths.runs_dir.clone(),
            cache_dir: paths.cache_dir(),
            venv: std::env::var_os("BONE_AGE_VENV")
                .map(PathBuf::from)
                .or_else(|| Some(paths.cache_dir().join("venv")).filter(|p| p.is_dir())),
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
