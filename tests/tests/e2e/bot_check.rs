//! `comfycord check` and the serve lifecycle, against the fake ComfyUI.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bot::check::run_check;
use bot::config::Config;
use tests::fake_comfyui::FakeComfy;

fn workflows() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows")
}

/// A config pointing at `url`, with the given workflows folder (no file, no environment).
fn config(url: &str, workflows_dir: &Path) -> Config {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("comfycord-check-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("config.json");
    let text = serde_json::json!({
        "backends": [{"name": "fake", "url": url}],
        "workflows_dir": workflows_dir,
        // Keep the journal and outputs out of the source tree.
        "data_dir": dir.join("data"),
        "outputs": {"dir": dir.join("outputs")},
        "comfyui": {"connect_timeout_secs": 2, "request_timeout_secs": 5}
    });
    std::fs::write(&path, text.to_string()).unwrap();
    Config::load_from(&path, &bot::config::Environment::empty()).expect("valid config")
}

#[tokio::test]
async fn check_reports_missing_models_by_workflow() {
    let fake = FakeComfy::start().await;
    let report = run_check(&config(&fake.url(), &workflows())).await;
    assert!(!report.ok());
    assert_eq!(
        report.workflows,
        vec![
            "animate",
            "blend",
            "describe",
            "edit",
            "img2img",
            "outpaint",
            "scale_image",
            "txt2img",
            "txt2img_lora",
            "upscale",
            "upscale_creative"
        ]
    );
    assert!(report.catalog_errors.is_empty());
    let backend = &report.backends[0];
    let about = backend.reachable.as_ref().expect("reachable");
    assert!(about.starts_with("ComfyUI 0.3.64"), "{about}");
    let failing: Vec<&str> = backend.problems.iter().map(|(w, _)| w.as_str()).collect();
    assert_eq!(
        failing,
        vec![
            "animate",
            "blend",
            "edit",
            "img2img",
            "outpaint",
            "txt2img",
            "txt2img_lora",
            "upscale",
            "upscale_creative"
        ]
    );
    let text = report.render();
    assert!(
        text.contains("✗ txt2img: node 4 (CheckpointLoaderSimple) input ckpt_name: 'v1-5-pruned-emaonly.safetensors' is not available on this server (it has 'tiny_sd15_random.safetensors')"),
        "{text}"
    );
    assert!(text.ends_with("check FAILED\n"));
}

#[tokio::test]
async fn check_passes_when_everything_fits() {
    let fake = FakeComfy::start().await;
    let dir = std::env::temp_dir().join(format!("comfycord-check-ok-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["scale_image.json", "scale_image.manifest.json"] {
        std::fs::copy(workflows().join(f), dir.join(f)).unwrap();
    }
    let report = run_check(&config(&fake.url(), &dir)).await;
    assert!(report.ok(), "{}", report.render());
    assert!(report
        .render()
        .contains("✓ every workflow fits this backend"));
}

#[tokio::test]
async fn check_names_an_unreachable_backend() {
    // Bind then drop a listener: the port is closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let report = run_check(&config(&format!("http://127.0.0.1:{port}"), &workflows())).await;
    assert!(!report.ok());
    let err = report.backends[0].reachable.as_ref().unwrap_err();
    assert!(
        err.contains("could not connect") && err.contains("refused"),
        "{err}"
    );
}

#[tokio::test]
async fn serve_without_a_token_says_so_and_starts_nothing() {
    let fake = FakeComfy::start().await;
    let cfg = config(&fake.url(), &workflows());
    assert!(cfg.discord.token.is_none());
    let err = tokio::time::timeout(
        Duration::from_secs(10),
        bot::serve::serve(
            cfg,
            std::path::Path::new("config.json"),
            std::future::pending(),
        ),
    )
    .await
    .expect("returns at once")
    .unwrap_err();
    assert!(
        format!("{err:#}").contains("DISCORD_TOKEN is not set"),
        "{err:#}"
    );
    assert_eq!(fake.ws_connection_count(), 0, "no backend was contacted");
}
