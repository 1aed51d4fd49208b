//! Gives the shared library a SONAME carrying the ABI's major version
//! (`libneuron_dp.so.<major>`), so hosts linked against this ABI refuse a future
//! incompatible one instead of crashing in it. rustc gives cdylibs no SONAME of its own.
//!
//! The major version is this package's (`CARGO_PKG_VERSION_MAJOR`): bump it whenever
//! `include/neuron_dp.h` changes incompatibly.

fn main() {
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if target_os == "linux" {
        let major = std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap_or_else(|_| "0".to_owned());
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libneuron_dp.so.{major}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
