//! Link fixes for libtorch from the PyPI wheel (see scripts/env.sh).
//!
//! torch-sys passes its libtorch directory to us as DEP_TCH_LIBTORCH_LIB. We
//! - bake it into every binary and test as an rpath, so `target/*/bone-age`
//!   runs without LD_LIBRARY_PATH (LD_LIBRARY_PATH still wins, which is how a
//!   binary built here runs against another machine's torch);
//! - link libtorch_cuda.so with --no-as-needed: nothing references its symbols
//!   directly, so the default --as-needed would drop it and CUDA would be
//!   silently unavailable on a GPU machine.
use std::{env, path::Path};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    // Tests on the real radiographs in ../shared/data run only where it exists;
    // elsewhere they are reported as ignored, not as passing.
    // (Checked when build.rs runs: after adding the data, `touch build.rs`.)
    println!("cargo:rustc-check-cfg=cfg(shared_data)");
    let readme = Path::new("../shared/data/README.md");
    if readme.exists() {
        println!("cargo:rerun-if-changed={}", readme.display());
        println!("cargo:rustc-cfg=shared_data");
    }
    // The HTML report's browser test needs headless Chromium; where there is none it is
    // reported as ignored. BONE_AGE_CHROMIUM names the binary, else PATH is searched.
    // (After installing one, `touch build.rs`; .ci/run installs it before building.)
    println!("cargo:rustc-check-cfg=cfg(chromium)");
    println!("cargo:rerun-if-env-changed=BONE_AGE_CHROMIUM");
    println!("cargo:rerun-if-env-changed=PATH");
    if let Some(browser) = find_chromium() {
        println!("cargo:rerun-if-changed={}", browser.display());
        println!("cargo:rustc-cfg=chromium");
        println!("cargo:rustc-env=BONE_AGE_CHROMIUM={}", browser.display());
    }
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let Ok(lib) = env::var("DEP_TCH_LIBTORCH_LIB") else {
        println!("cargo:warning=torch-sys did not report its libtorch directory; no rpath set");
        return;
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    if Path::new(&lib).join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
    // `bone-age doctor` reports which libtorch the binary was built against.
    println!("cargo:rustc-env=BONE_AGE_BUILD_LIBTORCH_LIB={lib}");

    // The CUDA autocast dtype switch (bf16), gradients set to none, and Adam's step and
    // gradient clipping as torch.optim's, against the same libtorch's headers.
    println!("cargo:rerun-if-changed=csrc/autocast.cpp");
    println!("cargo:rerun-if-changed=csrc/grad.cpp");
    println!("cargo:rerun-if-changed=csrc/adam.cpp");
    let include = Path::new(&lib).join("../include");
    cc::Build::new()
        .cpp(true)
        .pic(true)
        .warnings(false)
        .include(&include)
        .flag("-std=c++17")
        .flag(format!(
            "-D_GLIBCXX_USE_CXX11_ABI={}",
            env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into())
        ))
        .file("csrc/autocast.cpp")
        .file("csrc/grad.cpp")
        .file("csrc/adam.cpp")
        .compile("bone_age_autocast");
}

/// `$BONE_AGE_CHROMIUM`, else the first Chromium or Chrome on PATH.
fn find_chromium() -> Option<std::path::PathBuf> {
    if let Some(p) = env::var_os("BONE_AGE_CHROMIUM") {
        return Some(p.into()).filter(|p: &std::path::PathBuf| p.is_file());
    }
    let names = [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ];
    env::split_paths(&env::var_os("PATH")?)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
}
