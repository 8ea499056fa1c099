//! A fake ComfyUI 0.3.64 server for end-to-end tests.
//!
//! It answers like the real server did in the recorded transcripts
//! (`/work/shared/comfyui/transcripts`): same routes (also under `/api`), status codes, bodies
//! (rendered the way Python's `json.dumps` renders them), content types, WebSocket message
//! order, binary preview layouts, validation errors, caching and history. Nodes are simulated:
//! images are tracked as size + batch + flat colour, and output nodes write real PNG/WebP
//! files kept in memory. Fault switches ([`Faults`]) let tests break things on purpose.
//!
//! ```ignore
//! let comfy = FakeComfy::start().await;
//! let url = comfy.url(); // http://127.0.0.1:PORT
//! // ... drive the bot against it ...
//! comfy.shutdown().await;
//! ```
//!
//! Known differences from the real server:
//! * Where ComfyUI iterates a Python `set` (random order per process) the fake is
//!   deterministic: validation errors of a node follow the object_info input order, outputs
//!   and history `outputs` follow prompt order, `current_outputs` is the prompt's ids reversed.
//! * Async nodes (TestSleep) run to completion before other ready nodes; the real server runs
//!   other ready branches meanwhile. Lazy inputs and subgraph expansion are not modelled.
//! * Images are flat-coloured; previews are synthetic JPEGs; WebP output is lossless (the
//!   `preview=webp;Q` quality is ignored); saved PNGs are capped at 4096 px a side, batches at
//!   4096, animated WebP at 100 frames of 1024 px. Tracebacks are generic frames.
//! * `NaN`/`Infinity` cannot travel through `serde_json`: such bodies are 500s and such FLOAT
//!   strings fail validation; integers beyond `u64` become floats. `%year%`-style prefix
//!   variables use UTC. Validation gives up with `RecursionError` at depth 900.
//! * Minor routes (`/view_metadata`, `/userdata`, `/i18n`, `/internal/folder_paths`, ...) are
//!   404 or minimal; no permessage-deflate on the WebSocket.
//! * Reproduced on purpose: a socket that closes pops whatever is registered under its client
//!   id, even a newer connection that reused the id (so a client must not keep two sockets
//!   per id), and a reconnect during the client's own job gets `{"node": id}` only.

/// `?` for handlers: an `Err(Raised)` becomes aiohttp's 500 answer.
macro_rules! try500 {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err($crate::fake_comfyui::routes::Raised) => {
                return $crate::fake_comfyui::routes::error_500()
            }
        }
    };
}

mod exec;
mod faults;
mod files;
mod graph;
mod images;
mod info;
mod job;
mod nodes;
mod pyjson;
mod routes;
mod state;
mod validate;
mod ws;

pub use faults::Faults;
pub use images::tiny_png;

use serde_json::Value;
use state::{Dir, Shared};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How the fake behaves; `FakeOptions::default()` loads `tests/fixtures/object_info.json`.
#[derive(Clone, Debug)]
pub struct FakeOptions {
    /// The `/object_info` answer; it also drives validation and node metadata.
    pub object_info: Value,
    /// Like `--preview-method latent2rgb`: KSampler sends a JPEG preview frame per step.
    pub previews: bool,
    /// Time per KSampler step.
    pub step_delay: Duration,
    /// Time per executed node other than KSampler and TestSleep.
    pub node_delay: Duration,
    /// Real time per simulated second of TestSleep (`seconds * time_scale`).
    pub time_scale: f64,
}

impl Default for FakeOptions {
    fn default() -> Self {
        FakeOptions {
            object_info: default_object_info().clone(),
            previews: false,
            step_delay: Duration::from_millis(5),
            node_delay: Duration::ZERO,
            time_scale: 0.01,
        }
    }
}

/// `tests/fixtures/object_info.json`, read once.
pub fn default_object_info() -> &'static Value {
    static INFO: OnceLock<Value> = OnceLock::new();
    INFO.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/object_info.json");
        let bytes = std::fs::read(path)
            .unwrap_or_else(|e| panic!("fake ComfyUI: cannot read fixture {}: {}", path, e));
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("fake ComfyUI: fixture {} is not JSON: {}", path, e))
    })
}

/// One HTTP request as the fake received it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    /// Path with the query string, exactly as requested (e.g. `/api/view?filename=x.png`).
    pub path: String,
    pub body: bytes::Bytes,
}

impl RecordedRequest {
    /// The body parsed as JSON, if it is JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// A running fake server on `127.0.0.1:<random port>`.
pub struct FakeComfy {
    shared: Arc<Shared>,
    addr: SocketAddr,
    worker: tokio::sync::Mutex<Option<(CancellationToken, JoinHandle<()>)>>,
    /// The HTTP/WebSocket listener; `None` while killed.
    server: tokio::sync::Mutex<Option<(CancellationToken, JoinHandle<()>)>>,
}

impl std::fmt::Debug for FakeComfy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeComfy")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

fn spawn_worker(shared: &Arc<Shared>) -> (CancellationToken, JoinHandle<()>) {
    let token = shared.cancel.child_token();
    let handle = shared
        .tracker
        .spawn(exec::run_worker(shared.clone(), token.clone()));
    (token, handle)
}

/// Serves HTTP and WebSocket on `listener` until the returned token (or the fake) stops it.
fn serve(
    shared: &Arc<Shared>,
    listener: tokio::net::TcpListener,
) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let app = routes::router(shared.clone());
    let stop = shared.cancel.child_token();
    let until = stop.clone();
    let handle = shared.tracker.spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(until.cancelled_owned())
            .await;
    });
    (stop, handle)
}

impl FakeComfy {
    pub async fn start() -> FakeComfy {
        Self::start_with(FakeOptions::default()).await
    }

    /// Binds a fresh loopback port and starts the HTTP/WebSocket server and the worker.
    pub async fn start_with(opts: FakeOptions) -> FakeComfy {
        let listener = tokio::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("fake ComfyUI: bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("fake ComfyUI: local address");
        let shared = Shared::new(opts);
        let server = serve(&shared, listener);
        let worker = spawn_worker(&shared);
        FakeComfy {
            shared,
            addr,
            worker: tokio::sync::Mutex::new(Some(worker)),
            server: tokio::sync::Mutex::new(Some(server)),
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `ws://127.0.0.1:PORT/ws?clientId=ID`
    pub fn ws_url(&self, client_id: &str) -> String {
        format!("ws://{}/ws?clientId={}", self.addr, client_id)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn faults(&self) -> &Faults {
        &self.shared.faults
    }

    /// Every HTTP request received so far (WebSocket upgrades included), in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// WebSocket connections currently open.
    pub fn ws_connection_count(&self) -> usize {
        self.shared.ws_open.load(Ordering::SeqCst)
    }

    /// WebSocket connections accepted since start.
    pub fn ws_connects_total(&self) -> usize {
        self.shared.ws_total.load(Ordering::SeqCst)
    }

    /// Like a server restart: every socket is cut (no close frame), the running job is
    /// abandoned without further messages, and queue, history, prompt counter, caches and
    /// temp/ files are forgotten. input/ and output/ files stay; the port stays the same.
    pub async fn restart(&self) {
        let mut worker = self.worker.lock().await;
        if let Some((token, handle)) = worker.take() {
            token.cancel();
            let _ = handle.await;
        }
        {
            let mut g = self.shared.lock();
            for (_, conn) in g.conns.drain() {
                conn.kill.cancel();
            }
            g.sockets.clear();
            g.sockets_meta.clear();
            g.queue.clear();
            g.running = None;
            g.history.clear();
            g.number = 0;
            g.flags = Default::default();
            g.client_id = None;
            g.last_node_id = None;
            g.files.clear_dir(Dir::Temp);
        }
        self.shared.interrupt.store(false, Ordering::SeqCst);
        *worker = Some(spawn_worker(&self.shared));
    }

    /// Like a killed server process: the port stops answering (connections refused), every
    /// socket is cut, and all in-memory state is lost as in [`FakeComfy::restart`]. Until
    /// [`FakeComfy::revive`].
    pub async fn kill(&self) {
        let server = self.server.lock().await.take();
        if let Some((token, _)) = &server {
            // Stop accepting first, then cut what is open, then let the listener go.
            token.cancel();
        }
        self.restart().await;
        if let Some((_, handle)) = server {
            let _ = tokio::time::timeout(Duration::from_secs(10), handle).await;
        }
    }

    /// Starts answering on the same port again after [`FakeComfy::kill`].
    pub async fn revive(&self) {
        let mut server = self.server.lock().await;
        if server.is_some() {
            return;
        }
        let listener = tokio::net::TcpListener::bind(self.addr)
            .await
            .expect("fake ComfyUI: bind the same port again");
        *server = Some(serve(&self.shared, listener));
    }

    /// Stops the listener, the worker and every connection task.
    pub async fn shutdown(self) {
        self.shared.cancel.cancel();
        self.shared.tracker.close();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.shared.tracker.wait()).await;
    }
}

impl Drop for FakeComfy {
    fn drop(&mut self) {
        // A test that forgets `shutdown` still stops the server's tasks.
        self.shared.cancel.cancel();
    }
}
