//! The operator's endpoint (off by default): `/healthz` says whether the bot can do its job,
//! `/metrics` exposes counters in Prometheus text format.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use generators::{Journal, Scheduler};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// Upper bounds of the ack-latency histogram, in seconds.
const ACK_BUCKETS: [f64; 11] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// What `/metrics` answers with (OpenMetrics text, which Prometheus reads).
const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Everything the bot counts. Counters are shared handles: the registry of a scrape holds
/// clones of them.
#[derive(Debug)]
pub struct Metrics {
    pub submitted: Counter,
    pub results: Counter,
    pub failed: Counter,
    pub cancelled: Counter,
    pub progress_edits: Counter,
    pub rate_limited: Counter,
    pub acks: Histogram,
    pub gateway_connected: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            submitted: Counter::default(),
            results: Counter::default(),
            failed: Counter::default(),
            cancelled: Counter::default(),
            progress_edits: Counter::default(),
            rate_limited: Counter::default(),
            acks: Histogram::new(ACK_BUCKETS),
            gateway_connected: AtomicBool::new(false),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabel {
    event: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabel {
    backend: String,
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

/// The metrics text for the current state: the counters as they are, gauges read now.
pub async fn render_metrics(state: &HealthState) -> String {
    let m = &state.metrics;
    let status = state.scheduler.status().await;
    let (waiting, running) = status.as_ref().map_or((0, 0), |s| (s.waiting, s.running));
    let mut registry = Registry::default();
    let jobs = Family::<StateLabel, Gauge>::default();
    for (state, n) in [("waiting", waiting), ("running", running)] {
        jobs.get_or_create(&StateLabel { state }).set(n as i64);
    }
    registry.register("comfycord_jobs_active", "Jobs waiting or running now", jobs);
    let depth = Gauge::<i64>::default();
    depth.set((waiting + running) as i64);
    registry.register(
        "comfycord_queue_depth",
        "Jobs waiting or running in all",
        depth,
    );
    // A counter family registered as `comfycord_jobs` is written `comfycord_jobs_total`.
    let ended = Family::<EventLabel, Counter>::default();
    for (event, c) in [
        ("submitted", &m.submitted),
        ("delivered", &m.results),
        ("failed", &m.failed),
        ("cancelled", &m.cancelled),
    ] {
        ended.get_or_create(&EventLabel { event }).inc_by(c.get());
    }
    registry.register(
        "comfycord_jobs",
        "Jobs by how they ended since start",
        ended,
    );
    let inflight = Family::<BackendLabel, Gauge>::default();
    let healthy = Family::<BackendLabel, Gauge>::default();
    for b in status.iter().flat_map(|s| s.backends.iter()) {
        let label = BackendLabel {
            backend: b.name.clone(),
        };
        inflight.get_or_create(&label).set(b.inflight as i64);
        healthy.get_or_create(&label).set(i64::from(b.healthy));
    }
    registry.register(
        "comfycord_backend_inflight",
        "Jobs given to each backend",
        inflight,
    );
    registry.register(
        "comfycord_backend_healthy",
        "Whether each backend answers",
        healthy,
    );
    registry.register_with_unit(
        "comfycord_ack_latency",
        "Time from receiving an interaction to Discord accepting its acknowledgement",
        prometheus_client::registry::Unit::Seconds,
        m.acks.clone(),
    );
    registry.register(
        "comfycord_progress_edits",
        "Progress edits sent to Discord",
        m.progress_edits.clone(),
    );
    registry.register(
        "comfycord_discord_rate_limited",
        "429 answers seen from Discord",
        m.rate_limited.clone(),
    );
    let gateway = Gauge::<i64>::default();
    gateway.set(i64::from(m.gateway_connected.load(Ordering::Relaxed)));
    registry.register(
        "comfycord_gateway_connected",
        "Whether the Discord gateway is connected",
        gateway,
    );
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &registry) {
        tracing::warn!(error = %e, "could not encode the metrics");
    }
    out
}

async fn metrics(State(state): State<HealthState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)],
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
    fn ack_buckets_are_cumulative_in_the_text() {
        let m = Metrics::default();
        for d in [
            Duration::from_micros(800),
            Duration::from_millis(7),
            Duration::from_secs(5),
        ] {
            m.acks.observe(d.as_secs_f64());
        }
        let mut registry = Registry::default();
        registry.register_with_unit(
            "x",
            "help",
            prometheus_client::registry::Unit::Seconds,
            m.acks.clone(),
        );
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        assert!(out.contains("x_seconds_bucket{le=\"0.001\"} 1\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{le=\"0.01\"} 2\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{le=\"2.5\"} 2\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_seconds_count 3\n"), "{out}");
    }

    #[test]
    fn backend_names_are_escaped_in_labels() {
        let family = Family::<BackendLabel, Gauge>::default();
        family
            .get_or_create(&BackendLabel {
                backend: "gpu \"a\"\\1".into(),
            })
            .set(1);
        let mut registry = Registry::default();
        registry.register("b", "help", family);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        assert!(
            out.contains("b{backend=\"gpu \\\"a\\\"\\\\1\"} 1\n"),
            "{out}"
        );
    }
}
