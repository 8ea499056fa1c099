//! core-comfyui against a ComfyUI server: the transcript-faithful fake by default, or a real
//! ComfyUI when `COMFYUI_URL` is set (tests that need fault switches always use the fake).
//!
//! The real server must have ComfyUI's test nodes (TestSleep, TestSyncError) and the tiny
//! random checkpoint; `../shared/comfyui/run.sh` starts one like that. Set
//! `COMFYUI_EXPECT_PREVIEWS=1` when it runs with `COMFYUI_PREVIEW=latent2rgb`.

use std::time::Duration;

use core_comfyui::{
    Catalog, ClientConfig, ComfyClient, ComfyError, JobEvent, MediaKind, Outcome, PromptOptions,
    UploadRequest, Workflow,
};
use serde_json::{json, Map, Value};
use tests::fake_comfyui::{tiny_png, FakeComfy, FakeOptions};
use tests::support::{run_job as run, within};

const TINY_CKPT: &str = "tiny_sd15_random.safetensors";
/// Made by tests/real-comfyui/make_tiny_upscaler.py and make_tiny_lora.py.
const TINY_UPSCALER: &str = "tiny_random_x4.safetensors";
const TINY_LORA: &str = "tiny_random_lora.safetensors";

/// A real server has one worker: tests that share it take turns.
static REAL_SERVER_TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The server under test: a fresh fake, or the real one named by COMFYUI_URL.
struct Server {
    url: String,
    fake: Option<FakeComfy>,
    _turn: Option<tokio::sync::MutexGuard<'static, ()>>,
}

impl Server {
    async fn start() -> Server {
        match std::env::var("COMFYUI_URL") {
            Ok(url) if !url.trim().is_empty() => Server {
                url,
                fake: None,
                _turn: Some(REAL_SERVER_TURN.lock().await),
            },
            _ => Server::fake(FakeOptions::default()).await,
        }
    }

    async fn fake(mut opts: FakeOptions) -> Server {
        opts.previews = true;
        let fake = FakeComfy::start_with(opts).await;
        Server {
            url: fake.url(),
            fake: Some(fake),
            _turn: None,
        }
    }

    fn is_real(&self) -> bool {
        self.fake.is_none()
    }

    fn config(&self) -> ClientConfig {
        let mut c = ClientConfig::new(&self.url).expect("valid url");
        c.retry_base_delay = Duration::from_millis(20);
        c.reconnect_max_delay = Duration::from_millis(200);
        c
    }

    async fn client(&self) -> ComfyClient {
        within(20, "connect", ComfyClient::connect(self.config()))
            .await
            .expect("client connects")
    }

    fn expect_previews(&self) -> bool {
        !self.is_real() || std::env::var("COMFYUI_EXPECT_PREVIEWS").is_ok_and(|v| v == "1")
    }
}

fn workflow(v: Value) -> Workflow {
    Workflow::from_value(v).expect("valid workflow")
}

/// EmptyImage → ImageInvert → SaveImage, the recorded basic run.
fn basic(width: u32, color: u32, prefix: &str) -> Workflow {
    workflow(json!({
        "1": {"class_type": "EmptyImage", "inputs": {"width": width, "height": 64, "batch_size": 1, "color": color}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": prefix}}
    }))
}

fn sleep_workflow(seconds: f64) -> Workflow {
    workflow(json!({
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": rand_color()}},
        "2": {"class_type": "TestSleep", "inputs": {"value": ["1", 0], "seconds": seconds}},
        "3": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}}
    }))
}

/// A colour no earlier run used, so the server's cache does not skip the work.
fn rand_color() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = (std::process::id() % 1000) * 10_000;
    base + NEXT.fetch_add(1, Ordering::Relaxed)
}

fn image_size(bytes: &[u8]) -> (u32, u32) {
    let img = image::load_from_memory(bytes).expect("a decodable image");
    (img.width(), img.height())
}

fn executing_nodes(events: &[JobEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            JobEvent::Executing { node, .. } => Some(node.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn basic_run_streams_events_and_collects_outputs() {
    let server = Server::start().await;
    let client = server.client().await;
    let job = client
        .submit(
            &basic(64, rand_color(), "cc_basic"),
            PromptOptions::default(),
        )
        .await
        .expect("queued");
    assert!(job.warnings().is_empty());
    let prompt_id = job.prompt_id().to_string();
    let (events, outcome) = run(job, 30).await;
    assert_eq!(events.first(), Some(&JobEvent::Started), "{events:?}");
    assert!(events.iter().any(|e| matches!(e, JobEvent::Cached { .. })));
    assert_eq!(executing_nodes(&events), vec!["1", "2", "3"]);
    // progress_state snapshots end with every node finished.
    let last_states = events
        .iter()
        .rev()
        .find_map(|e| match e {
            JobEvent::NodeStates(nodes) => Some(nodes.clone()),
            _ => None,
        })
        .expect("progress_state events");
    assert!(
        last_states.values().all(|n| n.state == "finished"),
        "{last_states:?}"
    );
    // The status broadcast before the end said the queue is empty again.
    assert_eq!(client.queue_remaining(), 0);
    assert!(events
        .iter()
        .any(|e| matches!(e, JobEvent::Executed { node, .. } if node == "3")));
    let Outcome::Success(outputs) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(outputs.files.len(), 1);
    let file = &outputs.files[0];
    assert_eq!((file.node_id.as_str(), file.media), ("3", MediaKind::Image));
    assert!(file.file.filename.starts_with("cc_basic_"));
    let png = client.download(&file.file, None).await.expect("download");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(image_size(&png), (64, 64));
    // Streaming into a writer gives the same bytes.
    let mut streamed = Vec::new();
    let n = client
        .download_to(&file.file, &mut streamed, None)
        .await
        .expect("stream");
    assert_eq!((n as usize, &streamed[..]), (png.len(), &png[..]));
    // History is there and says the same.
    let entry = client
        .history(&prompt_id)
        .await
        .expect("history")
        .expect("entry");
    assert!(Outcome::from_history(&prompt_id, &entry).is_success());
}

#[tokio::test]
async fn download_refuses_more_than_the_limit() {
    let server = Server::start().await;
    let client = server.client().await;
    let job = client
        .submit(
            &basic(128, rand_color(), "cc_cap"),
            PromptOptions::default(),
        )
        .await
        .unwrap();
    let Outcome::Success(out) = run(job, 30).await.1 else {
        panic!()
    };
    let err = client
        .download(&out.files[0].file, Some(10))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ComfyError::TooLarge { limit: 10, .. }),
        "{err}"
    );
    let missing = core_comfyui::FileRef {
        filename: "does_not_exist.png".into(),
        subfolder: String::new(),
        folder: core_comfyui::FolderType::Output,
    };
    let err = client.download(&missing, None).await.unwrap_err();
    assert!(
        matches!(err, ComfyError::Status { status: 404, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn validation_errors_read_like_sentences() {
    let server = Server::start().await;
    let client = server.client().await;
    let mut bad = basic(64, 1, "cc_bad");
    bad.set_input("1", "width", json!(0)).unwrap();
    let err = client
        .submit(&bad, PromptOptions::default())
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "ComfyUI refused the workflow: node 1 (EmptyImage): width 0 is below the minimum 1"
    );
    let ComfyError::PromptRejected(r) = err else {
        panic!()
    };
    assert_eq!(r.kind, "prompt_outputs_failed_validation");
    assert_eq!(r.problems[0].input.as_deref(), Some("width"));

    let unknown = workflow(json!({"9": {"class_type": "NoSuchNode", "inputs": {}}}));
    let err = client
        .submit(&unknown, PromptOptions::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("NoSuchNode does not exist") && err.contains("#9"),
        "{err}"
    );

    let no_output = workflow(
        json!({"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}}}),
    );
    let err = client
        .submit(&no_output, PromptOptions::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("Prompt has no outputs"), "{err}");

    let missing_ckpt = workflow(json!({
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "missing.safetensors"}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["4", 2]}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "x"}}
    }));
    let err = client
        .submit(&missing_ckpt, PromptOptions::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("node 4 (CheckpointLoaderSimple): ckpt_name 'missing.safetensors' is not one of the values this server offers"),
        "{err}"
    );
}

#[tokio::test]
async fn runtime_error_is_a_typed_outcome() {
    let server = Server::start().await;
    let client = server.client().await;
    let wf = workflow(json!({
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": rand_color()}},
        "2": {"class_type": "TestSyncError", "inputs": {"value": ["1", 0]}},
        "3": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}}
    }));
    let job = client.submit(&wf, PromptOptions::default()).await.unwrap();
    let (events, outcome) = run(job, 30).await;
    assert!(events
        .iter()
        .any(|e| matches!(e, JobEvent::Failing { node: Some(n), .. } if n == "2")));
    match outcome {
        Outcome::Failed(e) => {
            assert_eq!(e.node_id.as_deref(), Some("2"));
            assert_eq!(e.node_type.as_deref(), Some("TestSyncError"));
            assert_eq!(e.exception_type, "RuntimeError");
            assert!(e
                .exception_message
                .contains("Intentional sync execution error"));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn cancel_running_and_pending_jobs() {
    let server = Server::start().await;
    let client = server.client().await;
    // A real TestSleep of 60 s runs long enough; the fake scales time down.
    let seconds = if server.is_real() { 60.0 } else { 300.0 };
    let mut running = client
        .submit(&sleep_workflow(seconds), PromptOptions::default())
        .await
        .unwrap();
    let pending = client
        .submit(&sleep_workflow(seconds), PromptOptions::default())
        .await
        .unwrap();
    // Wait until the first one is really sampling.
    within(30, "first progress", async {
        loop {
            match running.next_event().await {
                Some(JobEvent::Progress { .. }) => break,
                Some(JobEvent::Finished(o)) => panic!("ended early: {o:?}"),
                Some(_) => {}
                None => panic!("no events"),
            }
        }
    })
    .await;
    let queue = client.queue().await.unwrap();
    assert!(queue.is_running(running.prompt_id()));
    assert_eq!(queue.position(pending.prompt_id()), Some(0));

    pending.cancel().await.unwrap();
    let (_, outcome) = run(pending, 10).await;
    assert_eq!(outcome, Outcome::Cancelled);

    running.cancel().await.unwrap();
    let (_, outcome) = run(running, 30).await;
    match outcome {
        Outcome::Interrupted(i) => assert_eq!(i.node_type.as_deref(), Some("TestSleep")),
        other => panic!("{other:?}"),
    }
    let queue = client.queue().await.unwrap();
    assert!(
        queue.running.is_empty() && queue.pending.is_empty(),
        "{queue:?}"
    );
}

#[tokio::test]
async fn queue_management_endpoints() {
    let server = Server::start().await;
    let client = server.client().await;
    let seconds = if server.is_real() { 60.0 } else { 300.0 };
    let first = client
        .submit(&sleep_workflow(seconds), PromptOptions::default())
        .await
        .unwrap();
    let a = client
        .submit(&sleep_workflow(seconds), PromptOptions::default())
        .await
        .unwrap();
    let b = client
        .submit(&sleep_workflow(seconds), PromptOptions::default())
        .await
        .unwrap();
    let q = client.queue().await.unwrap();
    assert_eq!(q.pending.len(), 2, "{q:?}");
    assert!(q.pending[0].number < q.pending[1].number);
    assert!(q
        .pending
        .iter()
        .all(|i| i.client_id.as_deref() == Some(client.client_id())));
    client.cancel(a.prompt_id()).await.unwrap();
    let q = client.queue().await.unwrap();
    assert_eq!(q.pending.len(), 1);
    assert_eq!(q.position(b.prompt_id()), Some(0));
    client.cancel(b.prompt_id()).await.unwrap();
    assert!(client.queue().await.unwrap().pending.is_empty());
    // Cancelling the running prompt interrupts it.
    client.cancel(first.prompt_id()).await.unwrap();
    assert!(matches!(run(first, 30).await.1, Outcome::Interrupted(_)));
    // The deleted prompts never ran: nothing in history.
    assert!(client.history(a.prompt_id()).await.unwrap().is_none());
    drop((a, b));
}

#[tokio::test]
async fn info_endpoints() {
    let server = Server::start().await;
    let client = server.client().await;
    let stats = client.system_stats().await.unwrap();
    assert_eq!(stats.system.comfyui_version.as_deref(), Some("0.3.64"));
    assert!(!stats.devices.is_empty());
    let info = client.object_info().await.unwrap();
    for class in [
        "EmptyImage",
        "KSampler",
        "SaveImage",
        "LoadImage",
        "TestSleep",
    ] {
        assert!(info.contains_key(class), "{class}");
    }
    assert!(info["SaveImage"].output_node);
    assert!(matches!(
        info["EmptyImage"].input("width"),
        Some(core_comfyui::InputKind::Int { .. })
    ));
    assert!(client.history("not-a-real-id").await.unwrap().is_none());
}

#[tokio::test]
async fn upload_then_run_a_manifest_workflow() {
    let server = Server::start().await;
    let client = server.client().await;
    let color = rand_color();
    let png = tiny_png(40 + color % 7, 24);
    let uploaded = client
        .upload(UploadRequest::input_image(
            format!("cc_upl_{color}.png"),
            png.clone(),
            "image/png",
        ))
        .await
        .expect("upload");
    assert_eq!(uploaded.folder, core_comfyui::FolderType::Input);
    // Same bytes again: same name.
    let again = client
        .upload(UploadRequest::input_image(
            format!("cc_upl_{color}.png"),
            png,
            "image/png",
        ))
        .await
        .unwrap();
    assert_eq!(again.filename, uploaded.filename);

    let (catalog, errors) = Catalog::load_dir(&workflows_dir()).unwrap();
    assert!(errors.is_empty(), "{errors:?}");
    let def = catalog.get("scale_image").expect("scale_image workflow");
    let info = client.object_info().await.unwrap();
    assert!(def.check(&info).is_empty(), "{:?}", def.check(&info));
    let mut values = Map::new();
    values.insert("image".into(), json!(uploaded.load_image_name()));
    values.insert("factor".into(), json!(2.0));
    let patched = def
        .manifest
        .apply(&def.workflow, &values, &mut rand::thread_rng())
        .unwrap();
    assert_eq!(patched.values["method"], json!("lanczos"));
    let job = client
        .submit(&patched.workflow, PromptOptions::default())
        .await
        .unwrap();
    let Outcome::Success(out) = run(job, 30).await.1 else {
        panic!()
    };
    let bytes = client.download(&out.files[0].file, None).await.unwrap();
    assert_eq!(image_size(&bytes), ((40 + color % 7) * 2, 48));
}

fn workflows_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows")
}

#[tokio::test]
async fn ksampler_progress_and_previews_through_the_txt2img_manifest() {
    let server = Server::start().await;
    let client = server.client().await;
    let (catalog, _) = Catalog::load_dir(&workflows_dir()).unwrap();
    let def = catalog.get("txt2img").unwrap();
    let values: Map<String, Value> = serde_json::from_value(json!({
        "prompt": "a lighthouse", "checkpoint": TINY_CKPT, "width": 64, "height": 64, "steps": 4, "seed": rand_color()
    }))
    .unwrap();
    let patched = def
        .manifest
        .apply(&def.workflow, &values, &mut rand::thread_rng())
        .unwrap();
    let job = client
        .submit(&patched.workflow, PromptOptions::default())
        .await
        .unwrap();
    let (events, outcome) = run(job, 120).await;
    let steps: Vec<(f64, f64)> = events
        .iter()
        .filter_map(|e| match e {
            JobEvent::Progress {
                node: Some(n),
                value,
                max,
            } if n == "3" => Some((*value, *max)),
            _ => None,
        })
        .collect();
    assert_eq!(steps, vec![(1.0, 4.0), (2.0, 4.0), (3.0, 4.0), (4.0, 4.0)]);
    let previews: Vec<&JobEvent> = events
        .iter()
        .filter(|e| matches!(e, JobEvent::Preview { .. }))
        .collect();
    if server.expect_previews() {
        assert!(!previews.is_empty(), "no previews");
        for p in previews {
            let JobEvent::Preview {
                image,
                format,
                node,
            } = p
            else {
                unreachable!()
            };
            assert_eq!(*format, core_comfyui::PreviewFormat::Jpeg);
            assert_eq!(&image[..2], &[0xff, 0xd8]);
            assert_eq!(node.as_deref(), Some("3"));
        }
    }
    let Outcome::Success(out) = outcome else {
        panic!("{outcome:?}")
    };
    let bytes = client.download(&out.files[0].file, None).await.unwrap();
    assert_eq!(image_size(&bytes), (64, 64));
}

/// Applies `values` to a catalog workflow, runs it, and returns its events and first output.
async fn run_manifest(
    client: &ComfyClient,
    def: &core_comfyui::WorkflowDef,
    values: Value,
) -> (Vec<JobEvent>, bytes::Bytes) {
    let values: Map<String, Value> = serde_json::from_value(values).unwrap();
    let patched = def
        .manifest
        .apply(&def.workflow, &values, &mut rand::thread_rng())
        .unwrap();
    let job = client
        .submit(&patched.workflow, PromptOptions::default())
        .await
        .unwrap();
    let (events, outcome) = run(job, 120).await;
    let Outcome::Success(out) = outcome else {
        panic!("{}: {outcome:?}", def.name)
    };
    let bytes = client.download(&out.files[0].file, None).await.unwrap();
    (events, bytes)
}

#[tokio::test]
async fn upscale_img2img_and_lora_workflows() {
    let server = Server::start().await;
    let client = server.client().await;
    let (catalog, _) = Catalog::load_dir(&workflows_dir()).unwrap();
    let color = rand_color();
    let upload = |name: String, w: u32, h: u32| {
        client.upload(UploadRequest::input_image(
            name,
            tiny_png(w, h),
            "image/png",
        ))
    };
    let small = upload(format!("cc_up_{color}.png"), 40, 24).await.unwrap();
    let (_, bytes) = run_manifest(
        &client,
        catalog.get("upscale").unwrap(),
        json!({"image": small.load_image_name(), "model": TINY_UPSCALER, "target_width": 80, "target_height": 48}),
    )
    .await;
    // A 4x model, then resized to exactly the 2x the user asked for.
    assert_eq!(image_size(&bytes), (80, 48));

    let source = upload(format!("cc_i2i_{color}.png"), 64, 48).await.unwrap();
    let (events, bytes) = run_manifest(
        &client,
        catalog.get("img2img").unwrap(),
        json!({"image": source.load_image_name(), "prompt": "a red fox", "checkpoint": TINY_CKPT, "steps": 2, "denoise": 0.5, "seed": color}),
    )
    .await;
    assert!(
        executing_nodes(&events).contains(&"12".to_string()),
        "VAEEncode ran"
    );
    assert_eq!(image_size(&bytes), (64, 48));

    let (events, bytes) = run_manifest(
        &client,
        catalog.get("txt2img_lora").unwrap(),
        json!({"prompt": "a red fox", "checkpoint": TINY_CKPT, "lora": TINY_LORA, "lora_strength": 0.8,
               "width": 64, "height": 64, "steps": 2, "seed": color}),
    )
    .await;
    assert!(
        executing_nodes(&events).contains(&"10".to_string()),
        "the LoRA node ran"
    );
    assert_eq!(image_size(&bytes), (64, 64));
}

/// A peer bot's second concurrent job used to hang forever. Twenty at once through one client:
/// each job must see only its own events and get its own image.
#[tokio::test]
async fn twenty_concurrent_prompts_each_get_their_own_events() {
    let server = Server::start().await;
    let client = server.client().await;
    let base = rand_color();
    let mut tasks = Vec::new();
    for i in 0..20u32 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let width = 16 + 8 * i;
            let job = client
                .submit(
                    &basic(width, base + i, &format!("cc_conc_{i}")),
                    PromptOptions::default(),
                )
                .await
                .expect("queued");
            let prompt_id = job.prompt_id().to_string();
            let (events, outcome) = run(job, 120).await;
            let Outcome::Success(out) = outcome else {
                panic!("job {i}: {outcome:?}")
            };
            assert_eq!(out.files.len(), 1, "job {i}");
            assert!(out.files[0]
                .file
                .filename
                .starts_with(&format!("cc_conc_{i}_")));
            // Executed events name our own file only.
            for e in &events {
                if let JobEvent::Executed { output, .. } = e {
                    let name = output["images"][0]["filename"].as_str().unwrap();
                    assert!(
                        name.starts_with(&format!("cc_conc_{i}_")),
                        "job {i} saw {name}"
                    );
                }
            }
            assert_eq!(
                events
                    .iter()
                    .filter(|e| matches!(e, JobEvent::Started))
                    .count(),
                1
            );
            let bytes = client.download(&out.files[0].file, None).await.unwrap();
            assert_eq!(image_size(&bytes).0, width, "job {i}");
            prompt_id
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(within(180, "concurrent job", t).await.expect("task"));
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 20);
}
