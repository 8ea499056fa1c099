//! Helpers shared by the suites: bounded waits and running a job to its end.

use std::future::Future;
use std::time::Duration;

use core_comfyui::{Job, JobEvent, Outcome};

/// Awaits `fut`, failing the test with `what` after `secs`.
pub async fn within<T>(secs: u64, what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(secs), fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {secs}s: {what}"),
    }
}

/// Runs a job to its end: every event before the outcome, and the outcome.
pub async fn run_job(mut job: Job, secs: u64) -> (Vec<JobEvent>, Outcome) {
    within(secs, "job end", async {
        let mut events = Vec::new();
        while let Some(ev) = job.next_event().await {
            if let JobEvent::Finished(outcome) = ev {
                assert!(job.next_event().await.is_none(), "nothing after Finished");
                return (events, outcome);
            }
            events.push(ev);
        }
        panic!("stream ended without Finished");
    })
    .await
}

/// Polls `check` every 50 ms until it returns `Some`, failing the test with `what` (and the
/// last thing `describe` says) after `secs`. For state that is read, not pushed: metrics,
/// files, journal rows.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        match check().await {
            Ok(v) => return v,
            Err(last) if tokio::time::Instant::now() >= deadline => {
                panic!("timed out after {secs}s: {what}; last seen: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}
