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

/// A PNG whose header claims `side`×`side` 16-bit RGBA (8 bytes a pixel) over one tiny IDAT:
/// a decompression bomb as a hostile member would send it, refused from its header.
pub fn png_bomb(side: u32) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut chunk = |kind: &[u8], data: &[u8]| {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(kind);
        hasher.update(data);
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        out.extend_from_slice(&hasher.finalize().to_be_bytes());
    };
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&side.to_be_bytes());
    ihdr.extend_from_slice(&side.to_be_bytes());
    // 16-bit, colour type 6 (RGBA), deflate, no filter, no interlace.
    ihdr.extend_from_slice(&[16, 6, 0, 0, 0]);
    chunk(b"IHDR", &ihdr);
    chunk(b"IDAT", &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]);
    chunk(b"IEND", &[]);
    out
}
