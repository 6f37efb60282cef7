//! Shared build script for every crate whose binaries or tests link libtorch (through tch).
//!
//! It bakes an rpath to `$LIBTORCH/lib` into the crate's binaries, tests and benches so they
//! run with no LD_LIBRARY_PATH. `.cargo/config.toml` sets LIBTORCH to the clone's `.libtorch`
//! link; the rpath is the link's resolved target, so it stays valid for the binary's lifetime.
//! When the libtorch has CUDA, its library is linked with --no-as-needed: nothing references
//! libtorch_cuda.so's symbols directly, and without it `tch::Cuda::is_available()` is false.
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    let Some(dir) = std::env::var_os("LIBTORCH") else { return };
    let dir = PathBuf::from(dir);
    let dir = dir.canonicalize().unwrap_or(dir);
    let lib = dir.join("lib");
    println!("cargo:rerun-if-changed={}", lib.display());
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    // What `mexa --version` reports about the libtorch it was built against.
    let version = std::fs::read_to_string(dir.join("build-version")).unwrap_or_else(|_| "unknown".into());
    println!("cargo:rerun-if-changed={}", dir.join("build-version").display());
    println!("cargo:rustc-env=MEXA_LIBTORCH_VERSION={}", version.trim());
    println!("cargo:rustc-env=MEXA_LIBTORCH_DIR={}", dir.display());
    if lib.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-search=native={}", lib.display());
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
}
