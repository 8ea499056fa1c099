//! The scheduler over several fake ComfyUI backends: fairness, positions, limits, cancel in
//! every state, a backend killed mid-job, and a restart mid-job delivered exactly once.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use core_comfyui::{Catalog, ClientConfig, ComfyClient};
use generators::{
    CancelError, ComfyGenerator, Generator, JobId, JobPlace, JobSpec, JobState, Journal,
    MemoryJournal, Notice, Origin, Scheduler, SchedulerConfig, SubmitError,
};
use serde_json::{json, Map, Value};
use tests::fake_comfyui::{FakeComfy, FakeOptions};
use tests::support::within;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use validation::LimitsConfig;

fn temp(tag: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir =
        std::env::temp_dir().join(format!("comfycord-sched-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A workflow that sleeps `seconds` (scaled by the fake) and saves an 8×8 image.
fn sleep_catalog() -> Arc<Catalog> {
    let dir = temp("wf");
    std::fs::write(
        dir.join("sleep.json"),
        json!({
            "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
            "2": {"class_type": "TestSleep", "inputs": {"value": ["1", 0], "seconds": 1.0}},
            "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "sleep"}}
        })
        .to_string(),
    )
    .unwrap();
    std::fs::write(
        dir.join("sleep.manifest.json"),
        json!({"params": {
            "prompt": {"type": "string", "node": "3", "input": "filename_prefix", "required": true},
            "seconds": {"type": "float", "node": "2", "input": "seconds", "default": 1.0, "min": 0, "max": 9999},
            "color": {"type": "int", "node": "1", "input": "color", "default": 0, "min": 0, "max": 16777215}
        }})
        .to_string(),
    )
    .unwrap();
    // A repo workflow with an input image, and an animation.
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows");
    for f in [
        "scale_image.json",
        "scale_image.manifest.json",
        "txt2img.json",
        "txt2img.manifest.json",
    ] {
        std::fs::copy(repo.join(f), dir.join(f)).unwrap();
    }
    std::fs::write(
        dir.join("animate.json"),
        json!({
            "1": {"class_type": "EmptyImage", "inputs": {"width": 16, "height": 16, "batch_size": 4, "color": 0}},
            "2": {"class_type": "SaveAnimatedWEBP", "inputs": {"images": ["1", 0], "filename_prefix": "anim", "fps": 6.0, "lossless": true, "quality": 80, "method": "default"}}
        })
        .to_string(),
    )
    .unwrap();
    std::fs::write(
        dir.join("animate.manifest.json"),
        json!({"kind": "video", "params": {"frames": {"type": "int", "node": "1", "input": "batch_size", "default": 4, "min": 2, "max": 16}}}).to_string(),
    )
    .unwrap();
    let (catalog, errors) = Catalog::load_dir(&dir).unwrap();
    assert!(errors.is_empty(), "{errors:?}");
    Arc::new(catalog)
}

fn spec(seconds: f64, color: u64) -> JobSpec {
    let mut values = Map::new();
    values.insert("prompt".into(), json!(format!("job{color}")));
    values.insert("seconds".into(), json!(seconds));
    values.insert("color".into(), json!(color));
    JobSpec {
        workflow: "sleep".into(),
        values,
        inputs: Vec::new(),
        parent: None,
        sources: Default::default(),
        templates: Default::default(),
    }
}

fn origin(owner: u64) -> Origin {
    Origin {
        owner,
        ..Origin::default()
    }
}

struct Rig {
    fakes: Vec<FakeComfy>,
    scheduler: Scheduler,
    notices: mpsc::Receiver<Notice>,
    journal: Arc<dyn Journal>,
    cancel: CancellationToken,
    tracker: TaskTracker,
    out: PathBuf,
}

fn config() -> SchedulerConfig {
    SchedulerConfig {
        health_interval: Duration::from_millis(50),
        down_probe_interval: Duration::from_millis(50),
        limits: LimitsConfig {
            user_per_minute: 10_000,
            user_burst: 10_000,
            global_per_minute: 10_000,
            global_burst: 10_000,
            max_pending_per_user: 100,
            max_queue_depth: 1000,
        },
        ..SchedulerConfig::default()
    }
}

fn client_config(url: &str, client_id: &str) -> ClientConfig {
    let mut c = ClientConfig::new(url).unwrap();
    c.client_id = Some(client_id.to_string());
    c.retry_base_delay = Duration::from_millis(10);
    c.reconnect_max_delay = Duration::from_millis(100);
    c.request_timeout = Duration::from_secs(2);
    c.connect_wait = Duration::from_secs(10);
    c
}

fn generators_for(
    fakes: &[FakeComfy],
    out: &std::path::Path,
    tag: &str,
) -> Vec<Arc<dyn Generator>> {
    let catalog = sleep_catalog();
    fakes
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let client = ComfyClient::new(client_config(&f.url(), &format!("{tag}-{i}"))).unwrap();
            Arc::new(ComfyGenerator::new(
                format!("b{i}"),
                client,
                catalog.clone(),
                out,
            )) as Arc<dyn Generator>
        })
        .collect()
}

async fn rig(backends: usize, config: SchedulerConfig, journal: Arc<dyn Journal>) -> Rig {
    let mut fakes = Vec::new();
    for _ in 0..backends {
        fakes.push(
            FakeComfy::start_with(FakeOptions {
                time_scale: 0.01,
                ..FakeOptions::default()
            })
            .await,
        );
    }
    let out = temp("out");
    let gens = generators_for(&fakes, &out, &format!("rig{}", rand_tag()));
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let (scheduler, notices) =
        Scheduler::start(config, gens, journal.clone(), cancel.clone(), &tracker).unwrap();
    let r = Rig {
        fakes,
        scheduler,
        notices,
        journal,
        cancel,
        tracker,
        out,
    };
    r.wait_healthy(backends).await;
    r
}

fn rand_tag() -> u32 {
    rand::random::<u32>()
}

impl Rig {
    async fn wait_healthy(&self, n: usize) {
        within(10, "backends healthy", async {
            loop {
                let s = self.scheduler.status().await.unwrap();
                if s.backends.iter().filter(|b| b.healthy).count() >= n {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
    }

    /// Reads notices until `pred` matches one; returns everything read.
    async fn until(&mut self, what: &str, mut pred: impl FnMut(&Notice) -> bool) -> Vec<Notice> {
        within(30, what, async {
            let mut seen = Vec::new();
            loop {
                let n = self.notices.recv().await.expect("notices open");
                let done = pred(&n);
                if let (false, Notice::Failed { reason, .. }) = (done, &n) {
                    panic!("unexpected failure while waiting for {what}: {reason}");
                }
                seen.push(n);
                if done {
                    return seen;
                }
            }
        })
        .await
    }

    async fn stop(self) {
        self.cancel.cancel();
        self.tracker.close();
        within(10, "scheduler stops", self.tracker.wait()).await;
    }
}

#[tokio::test]
async fn one_users_ten_jobs_do_not_hold_back_another_users_one() {
    let mut r = rig(2, config(), Arc::new(MemoryJournal::new())).await;
    r.scheduler.pause(true).await;
    let mut a = Vec::new();
    for i in 0..10 {
        a.push(
            r.scheduler
                .submit(spec(20.0, i), origin(1), false)
                .await
                .unwrap(),
        );
    }
    let b = r
        .scheduler
        .submit(spec(20.0, 100), origin(2), false)
        .await
        .unwrap();
    // While paused: B's one job is second in line.
    let places = r.scheduler.places(2).await;
    assert_eq!(places, vec![(b.clone(), JobPlace::Waiting { position: 1 })]);
    r.scheduler.pause(false).await;
    let mut started = Vec::new();
    r.until("two dispatched", |n| {
        if let Notice::Started { id, .. } = n {
            started.push(id.clone());
        }
        started.len() == 2
    })
    .await;
    assert!(
        started.contains(&b),
        "B's job is among the first two: {started:?}"
    );
    assert!(started.contains(&a[0]));
    let status = r.scheduler.status().await.unwrap();
    assert_eq!((status.running, status.waiting), (2, 9));
    assert!(
        status.backends.iter().all(|b| b.inflight == 1),
        "one job per backend"
    );
    r.stop().await;
}

#[tokio::test]
async fn a_workflow_no_backend_can_run_is_refused() {
    let r = rig(2, config(), Arc::new(MemoryJournal::new())).await;
    let mut s = spec(1.0, 1);
    s.workflow = "not-installed".into();
    let err = r.scheduler.submit(s, origin(1), false).await.unwrap_err();
    assert!(matches!(err, SubmitError::NoBackend { .. }), "{err}");
    assert!(err
        .to_string()
        .contains("no backend can run workflow not-installed"));
    r.stop().await;
}

#[tokio::test]
async fn a_job_submitted_before_any_probe_that_nothing_can_run_fails() {
    // Submit before the backends have answered: the job waits, then fails clearly.
    let fake = FakeComfy::start().await;
    let out = temp("early");
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let (s, mut n) = Scheduler::start(
        config(),
        generators_for(std::slice::from_ref(&fake), &out, "early"),
        Arc::new(MemoryJournal::new()),
        cancel.clone(),
        &tracker,
    )
    .unwrap();
    let mut spec = spec(1.0, 1);
    spec.workflow = "not-installed".into();
    let id = match s.submit(spec.clone(), origin(1), false).await {
        Ok(id) => id,
        // The probe won the race: refused at once, which is just as clear.
        Err(e) => {
            assert!(matches!(e, SubmitError::NoBackend { .. }), "{e}");
            cancel.cancel();
            return;
        }
    };
    let failed = within(10, "failed", async {
        loop {
            if let Some(Notice::Failed { id: fid, reason }) = n.recv().await {
                return (fid, reason);
            }
        }
    })
    .await;
    assert_eq!(failed.0, id);
    assert!(
        failed
            .1
            .contains("no backend can run workflow not-installed"),
        "{}",
        failed.1
    );
    cancel.cancel();
    tracker.close();
    tracker.wait().await;
}

#[tokio::test]
async fn jobs_finish_with_saved_outputs_and_deliver_once() {
    let mut r = rig(1, config(), Arc::new(MemoryJournal::new())).await;
    let id = r
        .scheduler
        .submit(spec(1.0, 7), origin(5), false)
        .await
        .unwrap();
    let seen = r
        .until("finished", |n| matches!(n, Notice::Finished { .. }))
        .await;
    assert!(seen.iter().any(|n| matches!(n, Notice::Plan { .. })));
    assert!(seen.iter().any(|n| matches!(n, Notice::Progress { .. })));
    let Some(Notice::Finished { id: fid, outputs }) = seen.last() else {
        panic!()
    };
    assert_eq!(fid, &id);
    assert_eq!(outputs.len(), 1);
    let out = &outputs[0];
    assert!(out.path.starts_with(&r.out) && out.path.exists());
    let sidecar: Value =
        serde_json::from_slice(&std::fs::read(out.sidecar.as_ref().unwrap()).unwrap()).unwrap();
    assert_eq!(sidecar["values"]["color"], json!(7));
    assert_eq!(
        r.journal.get(&id).unwrap().unwrap().state,
        JobState::Finished
    );
    assert!(r.scheduler.delivered(&id).await.unwrap());
    assert!(!r.scheduler.delivered(&id).await.unwrap(), "delivered once");
    assert!(r.journal.unfinished().unwrap().is_empty());
    r.stop().await;
}

#[tokio::test]
async fn input_images_are_uploaded_to_the_backend_that_runs_the_job() {
    let mut r = rig(2, config(), Arc::new(MemoryJournal::new())).await;
    let input = r.out.join("in.png");
    std::fs::write(&input, tests::fake_comfyui::tiny_png(30, 20)).unwrap();
    let mut values = Map::new();
    values.insert("image".into(), json!("pending.png"));
    values.insert("factor".into(), json!(2.0));
    let spec = JobSpec {
        workflow: "scale_image".into(),
        values,
        inputs: vec![generators::InputFile {
            param: "image".into(),
            path: input,
            mime: "image/png".into(),
        }],
        parent: None,
        sources: Default::default(),
        templates: Default::default(),
    };
    r.scheduler.submit(spec, origin(1), false).await.unwrap();
    let seen = r
        .until("finished", |n| {
            matches!(n, Notice::Finished { .. } | Notice::Failed { .. })
        })
        .await;
    let backend = seen
        .iter()
        .find_map(|n| match n {
            Notice::Started { backend, .. } => Some(backend.clone()),
            _ => None,
        })
        .unwrap();
    let Some(Notice::Finished { outputs, .. }) = seen.last() else {
        panic!("{seen:?}")
    };
    let img = image::open(&outputs[0].path).unwrap();
    assert_eq!((img.width(), img.height()), (60, 40));
    // The upload went to the backend that ran the job, and only there.
    let ran_on: usize = backend.trim_start_matches('b').parse().unwrap();
    for (i, fake) in r.fakes.iter().enumerate() {
        let uploads = fake
            .requests()
            .iter()
            .filter(|q| q.path.ends_with("/upload/image"))
            .count();
        assert_eq!(uploads, usize::from(i == ran_on), "backend b{i}");
    }
    r.stop().await;
}

#[tokio::test]
async fn a_job_goes_to_the_backend_that_has_its_checkpoint() {
    // Backend 0 lacks the checkpoint the job asks for; backend 1 has it.
    let mut without = tests::fake_comfyui::default_object_info().clone();
    without["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"] =
        json!([["other.safetensors"], {}]);
    let fakes = vec![
        FakeComfy::start_with(FakeOptions {
            object_info: without,
            ..FakeOptions::default()
        })
        .await,
        FakeComfy::start().await,
    ];
    let out = temp("ckpt");
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let (s, mut n) = Scheduler::start(
        config(),
        generators_for(&fakes, &out, "ckpt"),
        Arc::new(MemoryJournal::new()),
        cancel.clone(),
        &tracker,
    )
    .unwrap();
    let values: Map<String, Value> = serde_json::from_value(json!({
        "prompt": "a fox", "checkpoint": "tiny_sd15_random.safetensors", "width": 64, "height": 64, "steps": 2
    }))
    .unwrap();
    let spec = JobSpec {
        workflow: "txt2img".into(),
        values,
        inputs: Vec::new(),
        parent: None,
        sources: Default::default(),
        templates: Default::default(),
    };
    // Submit until both backends have been probed (before that the job just waits).
    s.submit(spec.clone(), origin(1), false).await.unwrap();
    let started = within(20, "started", async {
        loop {
            match n.recv().await {
                Some(Notice::Started { backend, .. }) => return backend,
                Some(Notice::Failed { reason, .. }) => panic!("{reason}"),
                _ => {}
            }
        }
    })
    .await;
    assert_eq!(started, "b1");
    // A checkpoint nobody has is refused once both answered.
    let mut missing = spec;
    missing
        .values
        .insert("checkpoint".into(), json!("nowhere.safetensors"));
    let err = s.submit(missing, origin(1), false).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "no backend offers checkpoint \"nowhere.safetensors\" for workflow txt2img; choose another value"
    );
    cancel.cancel();
    tracker.close();
    tracker.wait().await;
}

#[tokio::test]
async fn animations_are_saved_as_animations() {
    let mut r = rig(1, config(), Arc::new(MemoryJournal::new())).await;
    let spec = JobSpec {
        workflow: "animate".into(),
        values: Map::new(),
        inputs: Vec::new(),
        parent: None,
        sources: Default::default(),
        templates: Default::default(),
    };
    r.scheduler.submit(spec, origin(1), false).await.unwrap();
    let seen = r
        .until("finished", |n| {
            matches!(n, Notice::Finished { .. } | Notice::Failed { .. })
        })
        .await;
    let Some(Notice::Finished { outputs, .. }) = seen.last() else {
        panic!("{seen:?}")
    };
    assert_eq!(outputs.len(), 1);
    assert_eq!(outputs[0].kind, generators::OutputKind::Animation);
    assert!(outputs[0].path.extension().is_some_and(|e| e == "webp"));
    r.stop().await;
}

#[tokio::test]
async fn limits_and_ownership() {
    let mut cfg = config();
    cfg.limits.max_pending_per_user = 2;
    let r = rig(1, cfg, Arc::new(MemoryJournal::new())).await;
    r.scheduler.pause(true).await;
    let first = r
        .scheduler
        .submit(spec(5.0, 1), origin(1), false)
        .await
        .unwrap();
    r.scheduler
        .submit(spec(5.0, 2), origin(1), false)
        .await
        .unwrap();
    let err = r
        .scheduler
        .submit(spec(5.0, 3), origin(1), false)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            SubmitError::Refused(validation::Refusal::TooManyPending { pending: 2, max: 2 })
        ),
        "{err}"
    );
    // Admins bypass the cap.
    r.scheduler
        .submit(spec(5.0, 4), origin(1), true)
        .await
        .unwrap();
    assert_eq!(
        r.scheduler.cancel(&first, 2, false).await,
        Err(CancelError::NotOwner)
    );
    assert_eq!(r.scheduler.cancel(&first, 2, true).await, Ok(()));
    assert_eq!(
        r.scheduler.cancel(&first, 1, false).await,
        Err(CancelError::AlreadyOver("cancelled"))
    );
    let unknown = JobId("ffffffffffffffff".into());
    assert_eq!(
        r.scheduler.cancel(&unknown, 1, false).await,
        Err(CancelError::NotFound(unknown.clone()))
    );
    r.stop().await;
}

#[tokio::test]
async fn cancel_waiting_pending_inside_comfyui_and_running() {
    let mut cfg = config();
    cfg.max_inflight_per_backend = 2;
    let mut r = rig(1, cfg, Arc::new(MemoryJournal::new())).await;
    let first = r
        .scheduler
        .submit(spec(3000.0, 11), origin(1), false)
        .await
        .unwrap();
    let second = r
        .scheduler
        .submit(spec(3000.0, 12), origin(1), false)
        .await
        .unwrap();
    let waiting = r
        .scheduler
        .submit(spec(3000.0, 13), origin(1), false)
        .await
        .unwrap();
    // The first two go to the backend (one runs, one waits inside ComfyUI); the third waits here.
    // Both are posted concurrently, so ComfyUI may run either first: see which one runs.
    let seen = r
        .until(
            "a job sleeping",
            |n| matches!(n, Notice::Progress { id, .. } if *id == first || *id == second),
        )
        .await;
    let Some(Notice::Progress { id: running, .. }) = seen.last().cloned() else {
        unreachable!()
    };
    let pending = if running == first {
        second.clone()
    } else {
        first.clone()
    };
    let fake_url = r.fakes[0].url();
    let mut last_seen = String::new();
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(rec) = r.journal.get(&pending).unwrap() {
                if let Some(remote) = rec.remote_id.clone() {
                    let q: Value = reqwest::get(format!("{fake_url}/queue"))
                        .await
                        .unwrap()
                        .json()
                        .await
                        .unwrap();
                    if q["queue_pending"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|i| i[1] == json!(remote))
                    {
                        return remote;
                    }
                    last_seen = format!("{:?} remote {remote}; queue {q}", rec.state);
                } else {
                    last_seen = format!("{:?} without remote id", rec.state);
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let pending_remote =
        found.unwrap_or_else(|_| panic!("second prompt never pending in ComfyUI: {last_seen}"));
    for id in [&waiting, &pending, &running] {
        r.scheduler.cancel(id, 1, false).await.unwrap();
    }
    let mut cancelled = Vec::new();
    r.until("three cancelled", |n| {
        if let Notice::Cancelled { id } = n {
            cancelled.push(id.clone());
        }
        cancelled.len() == 3
    })
    .await;
    for id in [&waiting, &pending, &running] {
        assert_eq!(
            r.journal.get(id).unwrap().unwrap().state,
            JobState::Cancelled
        );
    }
    let q: Value = reqwest::get(format!("{fake_url}/queue"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        q,
        json!({"queue_running": [], "queue_pending": []}),
        "ComfyUI is empty; {pending_remote} was deleted"
    );
    r.stop().await;
}

#[tokio::test]
async fn a_job_on_a_killed_backend_is_retried_on_another() {
    let mut r = rig(2, config(), Arc::new(MemoryJournal::new())).await;
    let id = r
        .scheduler
        .submit(spec(300.0, 21), origin(1), false)
        .await
        .unwrap();
    let seen = r
        .until("started", |n| matches!(n, Notice::Started { .. }))
        .await;
    let Some(Notice::Started { backend, .. }) = seen.last() else {
        panic!()
    };
    let victim: usize = backend.trim_start_matches('b').parse().unwrap();
    r.until("running", |n| matches!(n, Notice::Progress { .. }))
        .await;
    let fake = r.fakes.remove(victim);
    fake.shutdown().await;
    let seen = r
        .until("retried and finished", |n| {
            matches!(n, Notice::Finished { .. } | Notice::Failed { .. })
        })
        .await;
    assert!(
        seen.iter().any(|n| matches!(n, Notice::Retrying { reason, .. } if reason.contains(&format!("backend b{victim}")))),
        "{seen:?}"
    );
    assert!(
        matches!(seen.last(), Some(Notice::Finished { .. })),
        "{seen:?}"
    );
    let rec = r.journal.get(&id).unwrap().unwrap();
    assert_eq!(rec.attempts, 2);
    r.stop().await;
}

#[tokio::test]
async fn a_job_on_the_only_backend_that_dies_fails_clearly() {
    let mut cfg = config();
    cfg.lost_job_wait = Duration::from_millis(500);
    let mut r = rig(1, cfg, Arc::new(MemoryJournal::new())).await;
    r.scheduler
        .submit(spec(300.0, 31), origin(1), false)
        .await
        .unwrap();
    r.until("running", |n| matches!(n, Notice::Progress { .. }))
        .await;
    let fake = r.fakes.remove(0);
    fake.shutdown().await;
    let seen = r
        .until("failed", |n| matches!(n, Notice::Failed { .. }))
        .await;
    let Some(Notice::Failed { reason, .. }) = seen.last() else {
        panic!()
    };
    assert!(
        reason.contains("backend b0 stopped answering")
            && reason.contains("did not come back within 1 s"),
        "{reason}"
    );
    // Before failing, it was put back in line for the backend's return.
    assert!(
        seen.iter().any(|n| matches!(n, Notice::Retrying { reason, .. } if reason.contains("runs again when b0 is back"))),
        "{seen:?}"
    );
    r.stop().await;
}

#[tokio::test]
async fn restart_mid_job_delivers_exactly_once() {
    let journal: Arc<dyn Journal> = Arc::new(MemoryJournal::new());
    let mut fake_opts = FakeOptions {
        time_scale: 0.01,
        ..FakeOptions::default()
    };
    fake_opts.previews = false;
    let fake = FakeComfy::start_with(fake_opts).await;
    let out = temp("restart");
    let start = |tag: &str| {
        // Same client id across "processes", as the bot keeps it in the journal.
        let client = ComfyClient::new(client_config(&fake.url(), "stable-client")).unwrap();
        let gens: Vec<Arc<dyn Generator>> = vec![Arc::new(ComfyGenerator::new(
            "b0",
            client,
            sleep_catalog(),
            &out,
        ))];
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let (s, n) =
            Scheduler::start(config(), gens, journal.clone(), cancel.clone(), &tracker).unwrap();
        let _ = tag;
        (s, n, cancel, tracker)
    };
    let (s1, mut n1, c1, t1) = start("first");
    let id = s1.submit(spec(150.0, 41), origin(9), false).await.unwrap();
    within(10, "running", async {
        while !matches!(n1.recv().await, Some(Notice::Progress { .. })) {}
    })
    .await;
    // The process dies mid-job: its tasks stop, the prompt keeps running in ComfyUI.
    c1.cancel();
    t1.close();
    within(10, "first stops", t1.wait()).await;
    drop((s1, n1));
    let rec = journal.get(&id).unwrap().unwrap();
    assert!(
        matches!(rec.state, JobState::Running { .. }),
        "{:?}",
        rec.state
    );
    assert!(rec.remote_id.is_some());

    let (s2, mut n2, c2, t2) = start("second");
    let mut finished = 0;
    within(30, "resumed job finishes", async {
        loop {
            match n2.recv().await.expect("open") {
                Notice::Finished { id: fid, outputs } => {
                    assert_eq!(fid, id);
                    assert_eq!(outputs.len(), 1);
                    finished += 1;
                    break;
                }
                Notice::Failed { reason, .. } => panic!("{reason}"),
                _ => {}
            }
        }
    })
    .await;
    assert_eq!(finished, 1);
    assert!(s2.delivered(&id).await.unwrap());
    c2.cancel();
    t2.close();
    within(10, "second stops", t2.wait()).await;
    // A third start has nothing to resume or deliver.
    assert!(journal.unfinished().unwrap().is_empty());
    assert_eq!(
        journal.get(&id).unwrap().unwrap().state,
        JobState::Delivered
    );
    // ComfyUI ran the prompt once.
    let prompts = fake
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/prompt"))
        .count();
    assert_eq!(prompts, 1);
}

#[tokio::test]
async fn finished_but_undelivered_is_delivered_after_restart() {
    let journal: Arc<dyn Journal> = Arc::new(MemoryJournal::new());
    let mut r = rig(1, config(), journal.clone()).await;
    let id = r
        .scheduler
        .submit(spec(1.0, 51), origin(1), false)
        .await
        .unwrap();
    r.until("finished", |n| matches!(n, Notice::Finished { .. }))
        .await;
    // Crash before the front-end confirmed delivery.
    let fakes = std::mem::take(&mut r.fakes);
    r.stop().await;
    let out = temp("again");
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let (s, mut n) = Scheduler::start(
        config(),
        generators_for(&fakes, &out, "again"),
        journal.clone(),
        cancel.clone(),
        &tracker,
    )
    .unwrap();
    let first = within(10, "redelivery", n.recv()).await.unwrap();
    assert!(
        matches!(&first, Notice::Finished { id: fid, .. } if *fid == id),
        "{first:?}"
    );
    assert!(s.delivered(&id).await.unwrap());
    cancel.cancel();
    tracker.close();
    tracker.wait().await;
}

#[tokio::test]
async fn an_admins_pause_survives_a_restart() {
    let journal: Arc<dyn Journal> = Arc::new(MemoryJournal::new());
    let r = rig(1, config(), journal.clone()).await;
    r.scheduler.pause(true).await;
    assert!(r.scheduler.status().await.unwrap().paused);
    r.stop().await;

    // Started again on the same journal: still paused, so a new job waits.
    let r = rig(1, config(), journal.clone()).await;
    assert!(r.scheduler.status().await.unwrap().paused);
    let id = r
        .scheduler
        .submit(spec(0.0, 1), origin(1), false)
        .await
        .unwrap();
    assert_eq!(
        r.scheduler.places(1).await,
        vec![(id.clone(), JobPlace::Waiting { position: 0 })]
    );
    r.stop().await;

    // Still paused after a second restart; resuming runs the job that waited through both.
    let mut r = rig(1, config(), journal.clone()).await;
    assert!(r.scheduler.status().await.unwrap().paused);
    r.scheduler.pause(false).await;
    assert_eq!(
        journal.meta_get("scheduler_paused").unwrap().as_deref(),
        Some("0")
    );
    r.until(
        "the waiting job runs after the resume",
        |n| matches!(n, Notice::Finished { id: done, .. } if *done == id),
    )
    .await;
    r.stop().await;
}
