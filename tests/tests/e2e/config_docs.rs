//! The README's configuration reference and the real config types agree: every documented key
//! exists, and every key the config accepts is documented. The accepted keys come from the
//! config loader itself (the "known keys here" list of an unknown-key error), so a field added
//! to the code without a README row fails this test.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::{json, Value};

/// Sections of config.json: (key path, the JSON that puts an unknown key `zzz` inside it).
fn probes() -> Vec<(&'static str, Value)> {
    let cosmos = json!({"host": "h", "user": "u", "ssh_key": "/k", "host_key": "ssh-ed25519 AAAA",
                        "remote_dir": "/r", "docker_image": "i", "zzz": 1});
    vec![
        ("", json!({"zzz": 1})),
        (
            "backends[]",
            json!({"backends": [{"name": "a", "url": "http://a", "zzz": 1}]}),
        ),
        ("discord", json!({"discord": {"zzz": 1}})),
        ("outputs", json!({"outputs": {"zzz": 1}})),
        ("comfyui", json!({"comfyui": {"zzz": 1}})),
        ("limits", json!({"limits": {"zzz": 1}})),
        ("attachments", json!({"attachments": {"zzz": 1}})),
        ("progress", json!({"progress": {"zzz": 1}})),
        ("cosmos", json!({"cosmos": cosmos})),
        ("health", json!({"health": {"zzz": 1}})),
        ("defaults", json!({"defaults": {"zzz": 1}})),
    ]
}

/// The keys the loader accepts, as `section.key` paths (sections themselves left out).
fn accepted_keys() -> BTreeSet<String> {
    let dir = std::env::temp_dir().join(format!("comfycord-config-docs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sections: BTreeSet<&str> = probes()
        .iter()
        .map(|(s, _)| s.trim_end_matches("[]"))
        .collect();
    let mut keys = BTreeSet::new();
    for (section, mut probe) in probes() {
        if section != "backends[]" {
            probe["backends"] = json!([{"name": "a", "url": "http://a"}]);
        }
        let path = dir.join("c.json");
        std::fs::write(&path, probe.to_string()).unwrap();
        let err = bot::config::Config::load_from(&path, &bot::config::Environment::empty())
            .expect_err("zzz is unknown")
            .to_string();
        let list = err
            .split("known keys here: ")
            .nth(1)
            .unwrap_or_else(|| panic!("{section}: {err}"))
            .lines()
            .next()
            .unwrap();
        for key in list.split(", ").map(str::trim).filter(|k| !k.is_empty()) {
            if section.is_empty() && sections.contains(key) {
                continue;
            }
            keys.insert(if section.is_empty() {
                key.to_string()
            } else {
                format!("{section}.{key}")
            });
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    keys
}

/// Keys named in the first column of the tables of the README's Configuration and Cosmos
/// sections (`a.b`, several per row allowed).
fn documented_keys() -> BTreeSet<String> {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .unwrap();
    let is_key = |k: &str| {
        !k.is_empty()
            && k.chars().next().is_some_and(|c| c.is_ascii_lowercase())
            && k.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.[]".contains(c))
    };
    let mut keys = BTreeSet::new();
    let mut in_reference = false;
    for line in readme.lines() {
        if let Some(heading) = line.strip_prefix("## ") {
            in_reference = heading.starts_with("Configuration") || heading.starts_with("Cosmos");
            continue;
        }
        if !in_reference || !line.starts_with("| `") {
            continue;
        }
        let first = line.split('|').nth(1).unwrap_or_default();
        for part in first.split(',') {
            let k = part.trim().trim_matches('`');
            if is_key(k) && (k.contains('.') || !k.contains('[')) {
                keys.insert(k.to_string());
            }
        }
    }
    keys
}

#[test]
fn every_documented_key_exists_and_every_key_is_documented() {
    let accepted = accepted_keys();
    let documented = documented_keys();
    assert!(
        accepted.len() > 40,
        "the probe found the keys: {accepted:?}"
    );
    let undocumented: Vec<_> = accepted.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "keys missing from the README tables: {undocumented:?}"
    );
    let unknown: Vec<_> = documented.difference(&accepted).collect();
    assert!(
        unknown.is_empty(),
        "README documents keys the config does not have: {unknown:?}"
    );
}
