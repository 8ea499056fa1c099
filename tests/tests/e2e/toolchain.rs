//! The workspace's `rust-version` says what the locked dependencies really need: the highest
//! `rust-version` among the packages `Cargo.lock` resolves for this platform. (clippy's
//! `incompatible_msrv` lint, run by `.ci/run`, checks our own code against the same number.)

use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn version_tuple(v: &str) -> Vec<u64> {
    v.split('.').map(|p| p.parse().unwrap_or(0)).collect()
}

#[test]
fn rust_version_is_what_the_locked_dependencies_need() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let host = Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
        .arg("-vV")
        .output()
        .expect("rustc runs");
    let host = String::from_utf8_lossy(&host.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        .expect("rustc names its host");
    let out = Command::new(cargo)
        .current_dir(root())
        .args([
            "metadata",
            "--format-version",
            "1",
            "--locked",
            "--offline",
            "--filter-platform",
            &host,
        ])
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).unwrap();
    let members: Vec<&str> = meta["workspace_members"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let resolved: Vec<&str> = meta["resolve"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["id"].as_str())
        .collect();
    let (mut need, mut by) = (Vec::new(), String::new());
    for p in meta["packages"].as_array().unwrap() {
        let id = p["id"].as_str().unwrap_or_default();
        if members.contains(&id) || !resolved.contains(&id) {
            continue;
        }
        if let Some(v) = p["rust_version"].as_str() {
            if version_tuple(v) > need {
                need = version_tuple(v);
                by = format!("{} {} needs {v}", p["name"], p["version"]);
            }
        }
    }
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let declared = manifest
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .map(|v| v.trim().trim_matches('"').to_string())
        .expect("the workspace declares rust-version");
    let mut declared_tuple = version_tuple(&declared);
    declared_tuple.resize(need.len().max(declared_tuple.len()), 0);
    need.resize(declared_tuple.len(), 0);
    assert_eq!(
        declared_tuple, need,
        "workspace rust-version is {declared}, but the highest a locked dependency declares is: {by}"
    );
}
