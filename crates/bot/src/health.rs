//! The operator's endpoint (off by default): `/healthz` says whether the bot can do its job,
//! `/metrics` exposes counters in Prometheus text format.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use generators::{Journal, Scheduler};
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// Upper bounds of the ack-latency histogram, in seconds.
const ACK_BUCKETS: [f64; 11] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// A Prometheus histogram with fixed buckets, lock-free.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; ACK_BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (i, le) in ACK_BUCKETS.iter().enumerate() {
            if secs <= *le {
                self.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn render(&self, name: &str, help: &str, out: &mut String) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (i, le) in ACK_BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{le}\"}} {}",
                self.buckets[i].load(Ordering::Relaxed)
            );
        }
        let count = self.count();
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "{name}_sum {}",
            self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count {count}");
    }
}

/// Everything the bot counts.
#[derive(Debug, Default)]
pub struct Metrics {
    pub submitted: AtomicU64,
    pub results: AtomicU64,
    pub failed: AtomicU64,
    pub cancelled: AtomicU64,
    pub progress_edits: AtomicU64,
    pub rate_limited: AtomicU64,
    pub acks: Histogram,
    pub gateway_connected: AtomicBool,
}

/// What the endpoint reads.
#[derive(Clone)]
#[allow(missing_debug_implementations)] // holds a `dyn Journal`
pub struct HealthState {
    pub metrics: Arc<Metrics>,
    pub scheduler: Scheduler,
    pub journal: Arc<dyn Journal>,
}

/// The `/healthz` verdict and its JSON.
pub async fn health(state: &HealthState) -> (bool, serde_json::Value) {
    let gateway = state.metrics.gateway_connected.load(Ordering::Relaxed);
    let journal_ok = state
        .journal
        .meta_set("health_probe", &generators::now_ms().to_string())
        .is_ok();
    let status = state.scheduler.status().await;
    let backends: Vec<serde_json::Value> = status
        .iter()
        .flat_map(|s| s.backends.iter())
        .map(|b| json!({"name": b.name, "healthy": b.healthy, "inflight": b.inflight, "detail": b.detail}))
        .collect();
    let any_backend = status
        .as_ref()
        .is_some_and(|s| s.backends.iter().any(|b| b.healthy));
    let ok = gateway && journal_ok && any_backend;
    (
        ok,
        json!({
            "status": if ok { "ok" } else { "degraded" },
            "gateway_connected": gateway,
            "journal_writable": journal_ok,
            "scheduler_running": status.is_some(),
            "backends": backends,
        }),
    )
}

async fn healthz(State(state): State<HealthState>) -> impl IntoResponse {
    let (ok, body) = health(&state).await;
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(body))
}

/// The Prometheus text for the current state.
pub async fn render_metrics(state: &HealthState) -> String {
    let m = &state.metrics;
    let mut out = String::new();
    let status = state.scheduler.status().await;
    let (waiting, running) = status.as_ref().map_or((0, 0), |s| (s.waiting, s.running));
    let _ = writeln!(
        out,
        "# HELP comfycord_jobs Jobs waiting or running now.\n# TYPE comfycord_jobs gauge"
    );
    let _ = writeln!(out, "comfycord_jobs{{state=\"waiting\"}} {waiting}");
    let _ = writeln!(out, "comfycord_jobs{{state=\"running\"}} {running}");
    let _ = writeln!(out, "# HELP comfycord_queue_depth Jobs waiting or running in all.\n# TYPE comfycord_queue_depth gauge");
    let _ = writeln!(out, "comfycord_queue_depth {}", waiting + running);
    let _ = writeln!(out, "# HELP comfycord_jobs_total Jobs by how they ended since start.\n# TYPE comfycord_jobs_total counter");
    for (label, c) in [
        ("submitted", &m.submitted),
        ("delivered", &m.results),
        ("failed", &m.failed),
        ("cancelled", &m.cancelled),
    ] {
        let _ = writeln!(
            out,
            "comfycord_jobs_total{{event=\"{label}\"}} {}",
            c.load(Ordering::Relaxed)
        );
    }
    let _ = writeln!(out, "# HELP comfycord_backend_inflight Jobs given to each backend.\n# TYPE comfycord_backend_inflight gauge");
    for b in status.iter().flat_map(|s| s.backends.iter()) {
        let _ = writeln!(
            out,
            "comfycord_backend_inflight{{backend=\"{}\"}} {}",
            b.name, b.inflight
        );
    }
    let _ = writeln!(out, "# HELP comfycord_backend_healthy Whether each backend answers.\n# TYPE comfycord_backend_healthy gauge");
    for b in status.iter().flat_map(|s| s.backends.iter()) {
        let _ = writeln!(
            out,
            "comfycord_backend_healthy{{backend=\"{}\"}} {}",
            b.name,
            u8::from(b.healthy)
        );
    }
    m.acks.render(
        "comfycord_ack_latency_seconds",
        "Time from receiving an interaction to Discord accepting its acknowledgement.",
        &mut out,
    );
    for (name, help, c) in [
        (
            "comfycord_progress_edits_total",
            "Progress edits sent to Discord.",
            &m.progress_edits,
        ),
        (
            "comfycord_discord_rate_limited_total",
            "429 answers seen from Discord.",
            &m.rate_limited,
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
            c.load(Ordering::Relaxed)
        );
    }
    let _ = writeln!(
        out,
        "# HELP comfycord_gateway_connected Whether the Discord gateway is connected.\n# TYPE comfycord_gateway_connected gauge\ncomfycord_gateway_connected {}",
        u8::from(m.gateway_connected.load(Ordering::Relaxed))
    );
    out
}

async fn metrics(State(state): State<HealthState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        render_metrics(&state).await,
    )
}

/// Serves `/healthz` and `/metrics` on `listen` until `cancel`.
pub async fn serve(
    listen: SocketAddr,
    state: HealthState,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!(%listen, "health and metrics endpoint listening");
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(cancel.cancelled_owned())
        .await
}

/// `comfycord healthcheck`: asks a running bot's `/healthz` (for Docker's HEALTHCHECK, which
/// has no curl in a slim image). Ok when it answers 200.
pub async fn check(listen: SocketAddr) -> Result<String, String> {
    let host = if listen.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], listen.port()))
    } else {
        listen
    };
    let url = format!("http://{host}/healthz");
    let resp = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| e.to_string())?
        .get(&url)
        .send()
        .await
        .map_err(|e| format!("{url}: {}", e.without_url()))?;
    let ok = resp.status().is_success();
    let body = resp.text().await.unwrap_or_default();
    if ok {
        Ok(body)
    } else {
        Err(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(800));
        h.observe(Duration::from_millis(7));
        h.observe(Duration::from_secs(5));
        let mut out = String::new();
        h.render("x", "help", &mut out);
        assert!(out.contains("x_bucket{le=\"0.001\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"0.01\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"2.5\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_count 3\n"), "{out}");
    }
}
