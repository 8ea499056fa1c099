//! `comfycord run` end to end against the fake ComfyUI: validation before any request, image
//! upload, progress to the end, outputs saved, failures and cancel reported.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bot::config::Config;
use bot::run::{run_workflow, RunArgs, RunError};
use progress::{Phase, ProgressSink, SinkError, Snapshot};
use tests::fake_comfyui::{tiny_png, FakeComfy, FakeOptions};

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Snapshot>>>);

impl ProgressSink for Recorder {
    async fn deliver(&self, s: &Snapshot) -> Result<(), SinkError> {
        self.0.lock().unwrap().push(s.clone());
        Ok(())
    }
}

fn temp(tag: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("comfycord-run-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn config(url: &str) -> Config {
    let dir = temp("cfg");
    let path = dir.join("config.json");
    let workflows = Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows");
    std::fs::write(
        &path,
        serde_json::json!({"backends": [{"name": "fake", "url": url}], "workflows_dir": workflows})
            .to_string(),
    )
    .unwrap();
    Config::load_from(&path, &bot::config::Environment::empty()).unwrap()
}

fn args(workflow: &str, out: &Path) -> RunArgs {
    RunArgs {
        workflow: workflow.into(),
        out_dir: out.to_path_buf(),
        ..RunArgs::default()
    }
}

async fn within<T>(fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), fut)
        .await
        .expect("in time")
}

#[tokio::test]
async fn txt2img_runs_to_a_saved_png_with_progress() {
    let fake = FakeComfy::start_with(FakeOptions {
        previews: true,
        ..FakeOptions::default()
    })
    .await;
    let out = temp("out");
    let mut a = args("txt2img", &out);
    a.prompt = Some("A lighthouse, at dusk!".into());
    a.params = vec![
        ("checkpoint".into(), "tiny_sd15_random.safetensors".into()),
        ("steps".into(), "6".into()),
        ("seed".into(), "42".into()),
    ];
    a.aspect = Some("16:9".into());
    let rec = Recorder::default();
    let result = within(run_workflow(
        &config(&fake.url()),
        a,
        rec.clone(),
        std::future::pending(),
    ))
    .await
    .unwrap();
    assert_eq!(result.values["seed"], serde_json::json!(42));
    assert_eq!(
        (
            result.values["width"].as_u64(),
            result.values["height"].as_u64()
        ),
        (Some(704), Some(384))
    );
    assert_eq!(result.files.len(), 1);
    let name = result.files[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    // Keywords of the prompt (stop words dropped) and a UTC timestamp.
    assert!(
        name.starts_with("lighthouse-dusk-20") && name.ends_with(".png"),
        "{name}"
    );
    let sidecar = result.files[0].with_file_name(format!("{name}.json"));
    let sidecar: serde_json::Value =
        serde_json::from_slice(&std::fs::read(sidecar).unwrap()).unwrap();
    assert_eq!(sidecar["seed"], serde_json::json!(42));
    assert_eq!(sidecar["workflow"], serde_json::json!("txt2img"));
    let img = image::open(&result.files[0]).unwrap();
    assert_eq!((img.width(), img.height()), (704, 384));
    let snaps = rec.0.lock().unwrap().clone();
    let last = snaps.last().unwrap();
    assert_eq!((last.phase, last.percent), (Phase::Done, 100.0));
    // Percent never goes backwards.
    for w in snaps.windows(2) {
        assert!(
            w[1].percent >= w[0].percent,
            "{} then {}",
            w[0].percent,
            w[1].percent
        );
    }
}

#[tokio::test]
async fn image_workflow_uploads_the_local_file() {
    let fake = FakeComfy::start().await;
    let out = temp("img");
    let input = out.join("in.png");
    std::fs::write(&input, tiny_png(30, 20)).unwrap();
    let mut a = args("scale_image", &out);
    a.images = vec![input];
    a.params = vec![("factor".into(), "3".into())];
    let result = within(run_workflow(
        &config(&fake.url()),
        a,
        Recorder::default(),
        std::future::pending(),
    ))
    .await
    .unwrap();
    let img = image::open(&result.files[0]).unwrap();
    assert_eq!((img.width(), img.height()), (90, 60));
    assert!(fake
        .requests()
        .iter()
        .any(|r| r.path.ends_with("/upload/image")));
}

#[tokio::test]
async fn bad_input_is_refused_before_any_request() {
    let fake = FakeComfy::start().await;
    let out = temp("bad");
    let cfg = config(&fake.url());
    let mut a = args("txt2img", &out);
    a.prompt = Some("x".into());
    a.params = vec![("steps".into(), "80".into())];
    let err = run_workflow(&cfg, a, Recorder::default(), std::future::pending())
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "steps must be between 1 and 50 for this workflow; you sent 80"
    );
    let mut a = args("txt2img", &out);
    a.params = vec![("steps".into(), "8".into())];
    assert_eq!(
        run_workflow(&cfg, a, Recorder::default(), std::future::pending())
            .await
            .unwrap_err()
            .to_string(),
        "prompt is required for this workflow"
    );
    let text = out.join("fake.png");
    std::fs::write(&text, b"not an image").unwrap();
    let mut a = args("scale_image", &out);
    a.images = vec![text];
    let err = run_workflow(&cfg, a, Recorder::default(), std::future::pending())
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "fake.png says it is PNG but its content is something else; send a real PNG file"
    );
    let err = run_workflow(
        &cfg,
        args("nope", &out),
        Recorder::default(),
        std::future::pending(),
    )
    .await
    .unwrap_err();
    assert!(matches!(
        err,
        RunError::Prepare(generators::PrepareError::UnknownWorkflow { .. })
    ));
    assert!(
        err.to_string()
            .contains("available: animate, blend, describe, edit, img2img, outpaint, scale_image"),
        "{err}"
    );
    assert!(
        fake.requests().is_empty(),
        "nothing reached ComfyUI: {:?}",
        fake.requests().len()
    );
}

#[tokio::test]
async fn server_refusal_and_cancel_are_reported() {
    let fake = FakeComfy::start_with(FakeOptions {
        step_delay: Duration::from_millis(50),
        ..FakeOptions::default()
    })
    .await;
    let out = temp("cancel");
    let cfg = config(&fake.url());
    // The example names a checkpoint this server lacks: refused before queueing, naming it.
    let mut a = args("txt2img", &out);
    a.prompt = Some("x".into());
    let err = run_workflow(&cfg, a, Recorder::default(), std::future::pending())
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "the workflow failed: no backend offers checkpoint \"v1-5-pruned-emaonly.safetensors\" for workflow txt2img; choose another value"
    );

    // 50 steps at 50 ms: cancelled while sampling.
    let mut a = args("txt2img", &out);
    a.prompt = Some("x".into());
    a.params = vec![
        ("checkpoint".into(), "tiny_sd15_random.safetensors".into()),
        ("steps".into(), "50".into()),
    ];
    let rec = Recorder::default();
    let cancel = {
        let rec = rec.clone();
        async move {
            while !rec
                .0
                .lock()
                .unwrap()
                .iter()
                .any(|s| s.phase == Phase::Sampling)
            {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    let err = within(run_workflow(&cfg, a, rec.clone(), cancel))
        .await
        .unwrap_err();
    assert!(matches!(err, RunError::Cancelled), "{err}");
    assert_eq!(
        rec.0.lock().unwrap().last().unwrap().phase,
        Phase::Cancelled
    );
    assert!(
        std::fs::read_dir(&out).unwrap().next().is_none(),
        "nothing saved"
    );
}

#[tokio::test]
async fn animate_turns_an_image_into_an_animated_webp() {
    let fake = FakeComfy::start().await;
    let out = temp("anim");
    let input = out.join("still.png");
    std::fs::write(&input, tiny_png(64, 48)).unwrap();
    let mut a = args("animate", &out);
    a.prompt = Some("clouds drifting over a lighthouse".into());
    a.images = vec![input];
    a.params = vec![
        ("checkpoint".into(), "tiny_sd15_random.safetensors".into()),
        ("steps".into(), "3".into()),
        ("frames".into(), "5".into()),
        ("fps".into(), "10".into()),
        ("seed".into(), "7".into()),
    ];
    let rec = Recorder::default();
    let result = within(run_workflow(
        &config(&fake.url()),
        a,
        rec.clone(),
        std::future::pending(),
    ))
    .await
    .unwrap();
    assert_eq!(result.values["frames"], serde_json::json!(5));
    assert_eq!(result.values["denoise"], serde_json::json!(0.5));
    assert_eq!(result.files.len(), 1);
    let path = &result.files[0];
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.ends_with(".webp"), "{name}");
    // An animated WebP (what the generator classifies as an animation): one frame per
    // repeated image, 1000 / fps ms each.
    let bytes = std::fs::read(path).unwrap();
    let decoder =
        image::codecs::webp::WebPDecoder::new(std::io::Cursor::new(bytes.as_slice())).unwrap();
    assert!(decoder.has_animation(), "{name} is a still image");
    assert_eq!(
        generators::outputs::kind_of(&name, decoder.has_animation()),
        generators::OutputKind::Animation
    );
    let frames = image::AnimationDecoder::into_frames(decoder)
        .collect_frames()
        .unwrap();
    assert_eq!(frames.len(), 5);
    assert_eq!(frames[0].delay().numer_denom_ms(), (100, 1));
    assert_eq!(
        (frames[0].buffer().width(), frames[0].buffer().height()),
        (64, 48)
    );
    let sidecar = path.with_file_name(format!("{name}.json"));
    let sidecar: serde_json::Value =
        serde_json::from_slice(&std::fs::read(sidecar).unwrap()).unwrap();
    assert_eq!(sidecar["workflow"], serde_json::json!("animate"));
    assert!(fake
        .requests()
        .iter()
        .any(|r| r.path.ends_with("/upload/image")));
    let last = rec.0.lock().unwrap().last().cloned().unwrap();
    assert_eq!((last.phase, last.percent), (Phase::Done, 100.0));
}

#[tokio::test]
async fn outpaint_and_creative_upscale_grow_an_image() {
    let fake = FakeComfy::start().await;
    let out = temp("outpaint");
    let input = out.join("in.png");
    std::fs::write(&input, tiny_png(64, 48)).unwrap();
    let common = |workflow: &str| {
        let mut a = args(workflow, &out);
        a.prompt = Some("a lighthouse".into());
        a.images = vec![input.clone()];
        a.params = vec![
            ("checkpoint".into(), "tiny_sd15_random.safetensors".into()),
            ("steps".into(), "2".into()),
        ];
        a
    };
    let mut pad = common("outpaint");
    pad.params.extend([
        ("pad_left".into(), "16".into()),
        ("pad_bottom".into(), "24".into()),
    ]);
    let result = within(run_workflow(
        &config(&fake.url()),
        pad,
        Recorder::default(),
        std::future::pending(),
    ))
    .await
    .unwrap();
    assert_eq!(image::image_dimensions(&result.files[0]).unwrap(), (80, 72));
    let odd = {
        let mut a = common("outpaint");
        a.params.push(("pad_left".into(), "13".into()));
        a
    };
    let err = within(run_workflow(
        &config(&fake.url()),
        odd,
        Recorder::default(),
        std::future::pending(),
    ))
    .await
    .unwrap_err();
    assert!(err.to_string().contains("pad_left"), "{err}");
    let mut up = common("upscale_creative");
    up.params.push(("factor".into(), "2".into()));
    let result = within(run_workflow(
        &config(&fake.url()),
        up,
        Recorder::default(),
        std::future::pending(),
    ))
    .await
    .unwrap();
    assert_eq!(result.values["denoise"], serde_json::json!(0.35));
    assert_eq!(
        image::image_dimensions(&result.files[0]).unwrap(),
        (128, 96)
    );
}
