//! core-comfyui under faults, against the fake ComfyUI's switches: dropped and oversized
//! WebSocket frames, restarts, slow, failing and malformed answers, unknown events.

use std::time::Duration;

use core_comfyui::{
    ClientConfig, ComfyClient, ComfyError, ConnectionState, JobEvent, Outcome, PromptOptions,
    Workflow,
};
use serde_json::json;
use tests::fake_comfyui::{FakeComfy, FakeOptions};
use tests::support::{run_job as run, within};

fn config(fake: &FakeComfy) -> ClientConfig {
    let mut c = ClientConfig::new(&fake.url()).unwrap();
    c.retry_base_delay = Duration::from_millis(10);
    c.reconnect_max_delay = Duration::from_millis(100);
    c.connect_wait = Duration::from_secs(5);
    c
}

async fn client(fake: &FakeComfy, tweak: impl FnOnce(&mut ClientConfig)) -> ComfyClient {
    let mut c = config(fake);
    tweak(&mut c);
    within(10, "connect", ComfyClient::connect(c))
        .await
        .expect("connects")
}

/// A job that takes a while on the fake: KSampler-free, TestSleep scaled by the fake's time_scale.
fn slow(seconds: f64, color: u32) -> Workflow {
    Workflow::from_value(json!({
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": color}},
        "2": {"class_type": "TestSleep", "inputs": {"value": ["1", 0], "seconds": seconds}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "slow"}}
    }))
    .unwrap()
}

fn opts() -> FakeOptions {
    FakeOptions {
        time_scale: 0.01,
        ..FakeOptions::default()
    }
}

#[tokio::test]
async fn websocket_dropped_mid_job_is_reconciled() {
    let fake = FakeComfy::start_with(opts()).await;
    let client = client(&fake, |_| {}).await;
    fake.faults().drop_ws_after_job_messages(4);
    let job = client
        .submit(&slow(20.0, 1), PromptOptions::default())
        .await
        .unwrap();
    let (events, outcome) = run(job, 30).await;
    assert!(outcome.is_success(), "{outcome:?}");
    assert!(events.contains(&JobEvent::Disconnected), "{events:?}");
    assert!(events.contains(&JobEvent::Reconnected), "{events:?}");
    assert!(fake.ws_connects_total() >= 2);
}

#[tokio::test]
async fn a_job_posted_while_reconnecting_is_not_declared_lost() {
    // After a reconnect the client asks /queue which jobs still run. A job posted while that
    // answer is on its way is missing from it through no fault of its own: it must not be
    // judged by that answer.
    let fake = FakeComfy::start_with(opts()).await;
    let client = client(&fake, |_| {}).await;
    let mut state = client.connection_state();
    fake.faults()
        .http_delay_on("/queue", Duration::from_secs(3));
    fake.restart().await;
    within(10, "reconnected", async {
        while fake.ws_connects_total() < 2
            || !matches!(*state.borrow_and_update(), ConnectionState::Connected)
        {
            let _ = state.changed().await;
        }
    })
    .await;
    // The reconcile's /queue answer is now held back 3 s; this job runs 5 s.
    let job = client
        .submit(&slow(500.0, 4), PromptOptions::default())
        .await
        .unwrap();
    let (_, outcome) = run(job, 30).await;
    assert!(outcome.is_success(), "{outcome:?}");
}

#[tokio::test]
async fn job_that_finished_while_disconnected_still_ends() {
    // The socket drops and stays refused until the job is over: only /history can tell.
    let fake = FakeComfy::start_with(opts()).await;
    let client = client(&fake, |_| {}).await;
    fake.faults().reject_ws(true);
    fake.faults().drop_ws_after_job_messages(3);
    let job = client
        .submit(&slow(10.0, 2), PromptOptions::default())
        .await
        .unwrap();
    let id = job.prompt_id().to_string();
    within(20, "history entry", async {
        while client.history(&id).await.unwrap().is_none() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    fake.faults().reject_ws(false);
    let (_, outcome) = run(job, 20).await;
    assert!(outcome.is_success(), "{outcome:?}");
}

#[tokio::test]
async fn server_restart_mid_job_ends_as_lost() {
    let fake = FakeComfy::start_with(opts()).await;
    let client = client(&fake, |_| {}).await;
    let mut job = client
        .submit(&slow(500.0, 3), PromptOptions::default())
        .await
        .unwrap();
    within(10, "start", async {
        while !matches!(job.next_event().await, Some(JobEvent::Progress { .. })) {}
    })
    .await;
    fake.restart().await;
    let (_, outcome) = run(job, 20).await;
    match outcome {
        Outcome::Lost { reason } => assert!(reason.contains("no longer knows"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn unreachable_for_too_long_gives_up() {
    let fake = FakeComfy::start_with(opts()).await;
    let client = client(&fake, |c| c.give_up_after = Duration::from_millis(300)).await;
    fake.faults().reject_ws(true);
    fake.faults().drop_ws_after_job_messages(2);
    let job = client
        .submit(&slow(5000.0, 4), PromptOptions::default())
        .await
        .unwrap();
    let (_, outcome) = run(job, 20).await;
    match outcome {
        Outcome::Lost { reason } => assert!(reason.contains("lost the connection"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn refused_websocket_is_a_clear_error_then_recovers() {
    let fake = FakeComfy::start_with(opts()).await;
    fake.faults().reject_ws(true);
    let mut c = config(&fake);
    c.connect_wait = Duration::from_millis(500);
    let err = ComfyClient::connect(c.clone()).await.unwrap_err();
    assert!(matches!(err, ComfyError::NotConnected { .. }), "{err}");
    assert!(err.to_string().contains("503"), "{err}");
    // The same client keeps trying with backoff and connects once the server allows it.
    let client = ComfyClient::new(c).unwrap();
    client.start();
    let mut state = client.connection_state();
    within(
        5,
        "a failed attempt",
        state.wait_for(|s| matches!(s, ConnectionState::Disconnected { .. })),
    )
    .await
    .unwrap();
    fake.faults().reject_ws(false);
    within(
        5,
        "reconnect",
        state.wait_for(|s| *s == ConnectionState::Connected),
    )
    .await
    .unwrap();
    client.shutdown().await;
    assert_eq!(*client.connection_state().borrow(), ConnectionState::Closed);
}

#[tokio::test]
async fn oversized_frame_drops_the_socket_not_the_job() {
    let fake = FakeComfy::start_with(opts()).await;
    let client = client(&fake, |c| c.max_ws_message_bytes = 64 * 1024).await;
    let job = client
        .submit(&slow(100.0, 5), PromptOptions::default())
        .await
        .unwrap();
    fake.faults().send_oversized_frame(256 * 1024);
    let (_, outcome) = run(job, 20).await;
    assert!(outcome.is_success(), "{outcome:?}");
    assert!(
        fake.ws_connects_total() >= 2,
        "the client should have reconnected"
    );
}

#[tokio::test]
async fn unknown_event_types_are_ignored() {
    let fake = FakeComfy::start_with(opts()).await;
    fake.faults().send_unknown_events(true);
    let client = client(&fake, |_| {}).await;
    let job = client
        .submit(&slow(1.0, 6), PromptOptions::default())
        .await
        .unwrap();
    assert!(run(job, 20).await.1.is_success());
}

#[tokio::test]
async fn interrupted_run_is_a_typed_outcome() {
    let fake = FakeComfy::start_with(opts()).await;
    let client = client(&fake, |_| {}).await;
    fake.faults().interrupt_after_progress(2);
    let job = client
        .submit(&slow(100.0, 7), PromptOptions::default())
        .await
        .unwrap();
    match run(job, 20).await.1 {
        Outcome::Interrupted(i) => assert_eq!(i.node_id.as_deref(), Some("2")),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn idempotent_calls_retry_5xx_but_prompts_are_posted_once() {
    let fake = FakeComfy::start_with(opts()).await;
    let client = client(&fake, |_| {}).await;
    fake.faults().fail_next_http(2);
    client.queue().await.expect("third attempt succeeds");
    fake.faults().fail_next_http(10);
    let err = client.system_stats().await.unwrap_err();
    assert!(
        matches!(err, ComfyError::Status { status: 500, ref body, .. } if body.contains("Server got itself in trouble")),
        "{err}"
    );
    fake.faults().fail_next_http(0);

    let before = fake
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/prompt") && r.method == "POST")
        .count();
    fake.faults().fail_next_http(1);
    let err = client
        .submit(&slow(1.0, 8), PromptOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, ComfyError::Status { status: 500, .. }),
        "{err}"
    );
    let after = fake
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/prompt") && r.method == "POST")
        .count();
    assert_eq!(after - before, 1, "POST /prompt must not be retried");
}

#[tokio::test]
async fn slow_answers_time_out() {
    let fake = FakeComfy::start_with(opts()).await;
    let client = client(&fake, |c| {
        c.request_timeout = Duration::from_millis(200);
        c.retries = 1;
    })
    .await;
    fake.faults().http_delay(Duration::from_secs(2));
    let err = within(10, "timeout", client.system_stats())
        .await
        .unwrap_err();
    assert!(matches!(err, ComfyError::Timeout { .. }), "{err}");
    fake.faults().http_delay(Duration::ZERO);
    client.system_stats().await.expect("fine again");
}

#[tokio::test]
async fn malformed_json_is_a_decode_error_with_the_body() {
    let fake = FakeComfy::start_with(opts()).await;
    let client = client(&fake, |_| {}).await;
    fake.faults().malformed_json_next("/object_info");
    let err = client.object_info().await.unwrap_err();
    match &err {
        ComfyError::Decode { endpoint, body, .. } => {
            assert_eq!(endpoint, "object_info");
            assert!(!body.is_empty());
        }
        other => panic!("{other}"),
    }
    fake.faults().malformed_json_next("/history");
    assert!(matches!(
        client.history("x").await,
        Err(ComfyError::Decode { .. })
    ));
    // The next answers are fine again.
    assert!(client.object_info().await.is_ok());
}

#[tokio::test]
async fn no_origin_header_so_no_403() {
    let fake = FakeComfy::start().await;
    let client = client(&fake, |_| {}).await;
    client.system_stats().await.unwrap();
    // The fake enforces ComfyUI's origin rule; a mismatching Origin is refused.
    let resp = reqwest::Client::new()
        .post(format!("{}/prompt", fake.url()))
        .header("Origin", "http://evil.example")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
}

#[tokio::test]
async fn dropping_the_client_stops_its_socket() {
    let fake = FakeComfy::start().await;
    let client = client(&fake, |_| {}).await;
    assert_eq!(fake.ws_connection_count(), 1);
    drop(client);
    within(5, "socket closed", async {
        while fake.ws_connection_count() != 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}
