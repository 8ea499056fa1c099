//! Release builds of the binary on Linux/glibc pack their relative relocations (DT_RELR): the
//! half-megabyte `.rela.dyn` table the loader reads at every start shrinks to a few kilobytes,
//! and with it the idle bot's resident memory (`cargo bench -p tests --bench discord -- rss`).
//! Needs binutils ≥ 2.38 and glibc ≥ 2.36 (Debian bookworm, the Docker image's base).
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let release = std::env::var("PROFILE").is_ok_and(|p| p == "release");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if release && os == "linux" && env == "gnu" {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
