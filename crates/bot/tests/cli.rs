//! The `comfycord` binary itself: exit codes and messages of its subcommands, and the JSON log
//! format operators parse.

use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_comfycord"))
}

fn temp_config(body: &serde_json::Value) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "comfycord-cli-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("config.json");
    std::fs::write(&path, body.to_string()).unwrap();
    path
}

fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn json_logs_are_one_object_per_line() {
    let workflows = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../workflows");
    let config = temp_config(&serde_json::json!({
        "backends": [{"name": "gone", "url": format!("http://127.0.0.1:{}", closed_port())}],
        "workflows_dir": workflows,
        "comfyui": {"connect_timeout_secs": 1, "request_timeout_secs": 1, "give_up_after_secs": 1},
    }));
    let png = config.with_file_name("in.png");
    image::RgbImage::new(8, 8).save(&png).unwrap();
    // The backend is down: the run logs its attempts, then gives up.
    let out = Command::new("timeout")
        .arg("60")
        .arg(env!("CARGO_BIN_EXE_comfycord"))
        .arg("--config")
        .arg(&config)
        .args(["run", "-w", "scale_image", "--image"])
        .arg(&png)
        .env_clear()
        .env("COMFYCORD_LOG_FORMAT", "json")
        .env("RUST_LOG", "debug")
        .output()
        .expect("comfycord runs");
    assert_eq!(out.status.code(), Some(1), "fails (not a timeout): {out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let objects: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(!objects.is_empty(), "JSON log lines: {stderr}");
    for o in &objects {
        assert!(o["level"].is_string() && o["fields"].is_object(), "{o}");
    }
    let _ = std::fs::remove_dir_all(config.parent().unwrap());
}

#[test]
fn healthcheck_says_when_the_endpoint_is_off_or_down() {
    let config = temp_config(&serde_json::json!({
        "backends": [{"name": "a", "url": "http://127.0.0.1:9"}],
    }));
    let off = bin()
        .arg("--config")
        .arg(&config)
        .arg("healthcheck")
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(off.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&off.stderr).contains("health.listen"));
    let down = bin()
        .arg("--config")
        .arg(&config)
        .arg("healthcheck")
        .env_clear()
        .env(
            "COMFYCORD_HEALTH__LISTEN",
            format!("127.0.0.1:{}", closed_port()),
        )
        .output()
        .unwrap();
    assert_eq!(down.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&down.stderr).contains("unhealthy"));
    let _ = std::fs::remove_dir_all(config.parent().unwrap());
}
