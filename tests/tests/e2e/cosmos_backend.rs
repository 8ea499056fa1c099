//! The Cosmos backend against a real OpenSSH server on 127.0.0.1 (started per test) whose
//! session PATH has stand-in `docker`, `sudo`, `nvidia-smi` and an image-side `torchrun`
//! (tests/fixtures/cosmos). The backend runs its production commands unchanged.

use std::path::{Path, PathBuf};
use std::time::Duration;

use generators::cosmos::remote::HostLayout;
use generators::cosmos::spec::{complete_values, CosmosKind};
use generators::cosmos::ssh::SshConfig;
use generators::cosmos::{CosmosGenerator, CosmosSettings};
use generators::{
    GenEvent, GenJob, GenOutcome, Generator, InputFile, JobId, JobSpec, OutputKind, RunControl,
};
use progress::Update;
use serde_json::{json, Map, Value};
use tests::cosmos_host::{CosmosHost, CosmosHostOptions};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(60);

fn temp(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "comfycord-cosmos-{tag}-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn settings(host: &CosmosHost, out: &Path) -> CosmosSettings {
    CosmosSettings {
        name: "gpu-host".into(),
        ssh: SshConfig {
            host: "127.0.0.1".into(),
            port: host.port(),
            user: host.user().to_string(),
            key_path: host.client_key_path(),
            host_key: host.host_public_key(),
            connect_timeout: Duration::from_secs(10),
            keepalive: Duration::from_secs(5),
            transfer_timeout: Duration::from_secs(30),
        },
        layout: HostLayout {
            remote_dir: host.remote_dir().display().to_string(),
            image: host.image().to_string(),
            docker: "sudo docker".into(),
            hf_cache: "$HOME/.cache/huggingface".into(),
            num_gpu: 1,
            cuda_devices: "0".into(),
            checkpoint_dir: "./checkpoints".into(),
        },
        job_timeout: Duration::from_secs(60),
        busy_poll: Duration::from_millis(200),
        outputs_dir: out.to_path_buf(),
        max_download: 64 << 20,
    }
}

fn job(kind: CosmosKind, prompt: &str) -> GenJob {
    let mut given = Map::new();
    given.insert("prompt".into(), json!(prompt));
    given.insert("video".into(), json!("pending.mp4"));
    let values = complete_values(kind, &given, &mut rand::thread_rng()).unwrap();
    GenJob {
        id: JobId::new(),
        spec: JobSpec {
            workflow: kind.workflow().into(),
            values,
            inputs: vec![InputFile {
                param: "video".into(),
                path: CosmosHost::input_video(),
                mime: "video/mp4".into(),
            }],
            parent: None,
            sources: Default::default(),
            templates: Default::default(),
        },
        remote_id: None,
        created_ms: generators::now_ms(),
    }
}

/// Starts a run; events arrive on the returned receiver, the outcome from the handle.
fn start(
    gen: &CosmosGenerator,
    job: GenJob,
    control: RunControl,
) -> (
    mpsc::Receiver<GenEvent>,
    tokio::task::JoinHandle<GenOutcome>,
) {
    let (tx, rx) = mpsc::channel(1024);
    let fut = gen.run(job, tx, control);
    (rx, tokio::spawn(fut))
}

async fn finish(
    mut rx: mpsc::Receiver<GenEvent>,
    handle: tokio::task::JoinHandle<GenOutcome>,
) -> (Vec<GenEvent>, GenOutcome) {
    let outcome = tokio::time::timeout(WAIT, handle)
        .await
        .expect("the run ends in time")
        .expect("no panic");
    let mut events = Vec::new();
    while let Ok(e) = rx.try_recv() {
        events.push(e);
    }
    (events, outcome)
}

/// Waits for an event matching `pred`, keeping the ones seen.
async fn wait_event(
    rx: &mut mpsc::Receiver<GenEvent>,
    seen: &mut Vec<GenEvent>,
    pred: impl Fn(&GenEvent) -> bool,
) {
    tokio::time::timeout(WAIT, async {
        loop {
            let e = rx.recv().await.expect("events until the end");
            let hit = pred(&e);
            seen.push(e);
            if hit {
                return;
            }
        }
    })
    .await
    .expect("the event arrives in time");
}

fn phases(events: &[GenEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            GenEvent::Progress(Update::NodeStarted { node }) => Some(node.clone()),
            _ => None,
        })
        .collect()
}

fn failure(outcome: &GenOutcome) -> String {
    match outcome {
        GenOutcome::Failed { reason, .. } => reason.clone(),
        other => panic!("expected a failure, got {other:?}"),
    }
}

fn job_dirs_gone(host: &CosmosHost, id: &JobId) -> bool {
    !host.remote_dir().join("runs").join(id.as_str()).exists()
        && !host
            .remote_dir()
            .join("outputs")
            .join(format!("run_{}", id.as_str()))
            .exists()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn happy_path_runs_phases_in_order_downloads_and_cleans_up() {
    let host = CosmosHost::start(CosmosHostOptions::default());
    let out = temp("happy");
    let gen = CosmosGenerator::new(settings(&host, &out));
    let probe = gen.probe().await.expect("probe");
    assert!(probe.workflows.contains("cosmos_transfer"), "{probe:?}");
    assert!(probe.detail.contains("idle"), "{}", probe.detail);

    // An unrelated run folder must survive this job's cleanup.
    let other = host.remote_dir().join("runs/someone_else");
    std::fs::create_dir_all(&other).unwrap();
    let j = job(
        CosmosKind::Transfer,
        "a red car driving through rain at night",
    );
    let id = j.id.clone();
    let (rx, handle) = start(&gen, j, RunControl::default());
    let (events, outcome) = finish(rx, handle).await;
    let GenOutcome::Succeeded(outputs) = outcome else {
        panic!("{outcome:?}\n{events:?}\n{}", host.sshd_log())
    };
    assert_eq!(outputs.len(), 1);
    assert_eq!(outputs[0].kind, OutputKind::Video);
    let bytes = std::fs::read(&outputs[0].path).unwrap();
    assert_eq!(&bytes[4..8], b"ftyp", "an MP4 came back");
    let order = [
        "load", "pre", "guard", "embed", "sample", "decode", "vguard", "save",
    ];
    let got = phases(&events);
    let idx: Vec<usize> = got
        .iter()
        .map(|p| order.iter().position(|o| o == p).expect("known phase"))
        .collect();
    assert!(idx.windows(2).all(|w| w[0] <= w[1]), "in order: {got:?}");
    for p in ["load", "embed", "sample", "decode", "save"] {
        assert!(got.iter().any(|g| g == p), "{p} seen: {got:?}");
    }
    let container = format!("comfycord_cosmos_transfer_{}", id.as_str());
    assert!(events
        .iter()
        .any(|e| matches!(e, GenEvent::Submitting { remote_id } if *remote_id == container)));
    // The user's text went into the spec, the wrapper ran, then only this job was removed.
    assert!(job_dirs_gone(&host, &id));
    assert!(other.exists(), "another run's folder is untouched");
    assert!(
        host.container_any(&container).is_none_or(|c| c.removed),
        "container removed"
    );
    let sidecar: Value = serde_json::from_slice(
        &std::fs::read(outputs[0].sidecar.as_ref().expect("sidecar")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        sidecar["workflow_json"]["run_spec"]["id"],
        format!("rs_{}", id.as_str())
    );
    assert_eq!(
        sidecar["workflow_json"]["prompt_spec"]["name"],
        "a_red_car_driving_through"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_gpu_makes_the_job_wait() {
    let host = CosmosHost::start(CosmosHostOptions::default());
    let gen = CosmosGenerator::new(settings(&host, &temp("busy")));
    let busy = host.start_busy_container("someone_elses_job");
    let (mut rx, handle) = start(
        &gen,
        job(CosmosKind::Transfer, "waits"),
        RunControl::default(),
    );
    let mut seen = Vec::new();
    wait_event(&mut rx, &mut seen, |e| {
        matches!(e, GenEvent::Progress(Update::Queued { .. }))
    })
    .await;
    assert!(
        !seen
            .iter()
            .any(|e| matches!(e, GenEvent::Submitting { .. })),
        "nothing started while busy"
    );
    host.docker(&["kill", &busy]);
    let (rest, outcome) = finish(rx, handle).await;
    assert!(
        matches!(outcome, GenOutcome::Succeeded(_)),
        "{outcome:?} {rest:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_classified() {
    let host = CosmosHost::start(CosmosHostOptions::default());
    let gen = CosmosGenerator::new(settings(&host, &temp("fail")));
    for (prompt, expect) in [
        ("[[guardrail]] something", "safety check"),
        ("[[oom]] huge", "ran out of memory"),
        ("[[no-output]] nothing", "wrote no video"),
        ("[[crash]] boom", "exit code"),
    ] {
        let j = job(CosmosKind::Transfer, prompt);
        let id = j.id.clone();
        let (rx, handle) = start(&gen, j, RunControl::default());
        let (_, outcome) = finish(rx, handle).await;
        let reason = failure(&outcome);
        assert!(reason.contains(expect), "{prompt}: {reason}");
        assert!(job_dirs_gone(&host, &id), "{prompt}: cleaned up");
    }
    // Exit 125: a container with the job's name already exists.
    let j = job(CosmosKind::Transfer, "clash");
    let name = format!("comfycord_cosmos_transfer_{}", j.id.as_str());
    host.start_busy_container(&name);
    host.docker(&["kill", &name]);
    let (rx, handle) = start(&gen, j, RunControl::default());
    let reason = failure(&finish(rx, handle).await.1);
    assert!(reason.contains("could not start"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_kills_the_container() {
    let host = CosmosHost::start(CosmosHostOptions::default());
    let gen = CosmosGenerator::new(settings(&host, &temp("cancel")));
    let control = RunControl::default();
    let j = job(CosmosKind::Transfer, "[[hang]] forever");
    let id = j.id.clone();
    let (mut rx, handle) = start(&gen, j, control.clone());
    let mut seen = Vec::new();
    wait_event(
        &mut rx,
        &mut seen,
        |e| matches!(e, GenEvent::Progress(Update::NodeStarted { node }) if node == "sample"),
    )
    .await;
    control.cancel.cancel();
    let (_, outcome) = finish(rx, handle).await;
    assert_eq!(outcome, GenOutcome::Cancelled);
    let name = format!("comfycord_cosmos_transfer_{}", id.as_str());
    assert!(host.container_any(&name).is_none_or(|c| !c.running));
    assert!(job_dirs_gone(&host, &id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ssh_drop_mid_run_is_survived_and_the_log_resumed() {
    let host = CosmosHost::start(CosmosHostOptions::default());
    let gen = CosmosGenerator::new(settings(&host, &temp("drop")));
    let (mut rx, handle) = start(
        &gen,
        job(CosmosKind::Transfer, "[[silent:2]] slow sampling"),
        RunControl::default(),
    );
    let mut seen = Vec::new();
    wait_event(
        &mut rx,
        &mut seen,
        |e| matches!(e, GenEvent::Progress(Update::NodeStarted { node }) if node == "sample"),
    )
    .await;
    assert!(host.kill_sessions() > 0, "an SSH session was cut");
    let (rest, outcome) = finish(rx, handle).await;
    seen.extend(rest);
    assert!(
        matches!(outcome, GenOutcome::Succeeded(_)),
        "{outcome:?}\n{seen:?}"
    );
    let got = phases(&seen);
    assert_eq!(
        got.iter().filter(|p| *p == "load").count(),
        1,
        "old lines are not replayed: {got:?}"
    );
    assert!(got.iter().any(|p| p == "save"), "{got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_reattaches_to_the_running_container() {
    let host = CosmosHost::start(CosmosHostOptions::default());
    let out = temp("reattach");
    let gen = CosmosGenerator::new(settings(&host, &out));
    let control = RunControl::default();
    let j = job(CosmosKind::Transfer, "[[silent:2]] outlives the bot");
    let (mut rx, handle) = start(&gen, j.clone(), control.clone());
    let mut seen = Vec::new();
    wait_event(&mut rx, &mut seen, |e| {
        matches!(e, GenEvent::Progress(Update::Started))
    })
    .await;
    let remote_id = seen
        .iter()
        .find_map(|e| match e {
            GenEvent::Submitting { remote_id } => Some(remote_id.clone()),
            _ => None,
        })
        .expect("the container name was reported first");
    control.abandon.cancel();
    assert_eq!(finish(rx, handle).await.1, GenOutcome::Abandoned);
    assert!(
        host.container(&remote_id).is_some_and(|c| c.running),
        "left running"
    );
    // A new process (a fresh generator) resumes from the journal's remote id.
    let again = CosmosGenerator::new(settings(&host, &out));
    let resumed = GenJob {
        remote_id: Some(remote_id),
        ..j
    };
    let (rx, handle) = start(&again, resumed, RunControl::default());
    let (events, outcome) = finish(rx, handle).await;
    assert!(
        matches!(outcome, GenOutcome::Succeeded(_)),
        "{outcome:?} {events:?}"
    );
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, GenEvent::Submitting { .. })),
        "not started twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_host_key_is_refused_and_a_dead_sshd_reported() {
    let mut host = CosmosHost::start(CosmosHostOptions::default());
    let out = temp("keys");
    let mut s = settings(&host, &out);
    s.ssh.host_key = host.other_host_public_key();
    let gen = CosmosGenerator::new(s);
    let (rx, handle) = start(&gen, job(CosmosKind::Transfer, "x"), RunControl::default());
    let reason = failure(&finish(rx, handle).await.1);
    assert!(reason.contains("not the pinned key"), "{reason}");
    assert!(
        host.containers().is_empty(),
        "nothing ran on an unverified host"
    );

    host.stop_sshd();
    let gen = CosmosGenerator::new(settings(&host, &out));
    let (rx, handle) = start(&gen, job(CosmosKind::Transfer, "x"), RunControl::default());
    let outcome = finish(rx, handle).await.1;
    assert!(
        matches!(&outcome, GenOutcome::Failed { reason, retryable: true } if reason.contains("cannot reach")),
        "{outcome:?}"
    );
    assert!(gen.probe().await.unwrap_err().contains("cannot reach"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upscale_runs_on_a_previous_video() {
    let host = CosmosHost::start(CosmosHostOptions::default());
    let gen = CosmosGenerator::new(settings(&host, &temp("upscale")));
    let (rx, handle) = start(&gen, job(CosmosKind::Upscale, ""), RunControl::default());
    let (events, outcome) = finish(rx, handle).await;
    let GenOutcome::Succeeded(outputs) = outcome else {
        panic!("{outcome:?} {events:?}")
    };
    assert_eq!(outputs[0].kind, OutputKind::Video);
}
