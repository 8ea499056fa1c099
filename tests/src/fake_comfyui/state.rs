//! Server-wide state: the prompt queue (a Python-`heapq`-shaped array), history, the socket
//! registry, uploaded/output files, and message fan-out. One `std::sync::Mutex` guards it; it
//! is never held across an `.await`.

use super::faults::Faults;
use super::info::ObjectInfo;
use super::pyjson::{self, obj};
use super::{FakeOptions, RecordedRequest};
use bytes::Bytes;
use indexmap::IndexMap;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::{Mutex, MutexGuard};
use tokio::sync::{mpsc, Notify};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// ComfyUI keeps at most this many history entries (+1, as its check runs before inserting).
const MAX_HISTORY: usize = 10_000;
/// Frames queued for one socket before it is treated as dead (bounded memory).
pub const SOCKET_QUEUE: usize = 8192;

pub(crate) struct Shared {
    pub opts: FakeOptions,
    pub info: ObjectInfo,
    pub faults: Faults,
    inner: Mutex<Inner>,
    /// Wakes the worker: a prompt was queued or a `/free` flag was set.
    pub worker_wake: Notify,
    /// `nodes.interrupt_processing()`: checked cooperatively by the running job.
    pub interrupt: AtomicBool,
    pub ws_open: AtomicUsize,
    pub ws_total: AtomicUsize,
    pub next_conn: AtomicU64,
    pub requests: Mutex<Vec<RecordedRequest>>,
    pub cancel: CancellationToken,
    pub tracker: TaskTracker,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

impl Shared {
    pub fn new(opts: FakeOptions) -> std::sync::Arc<Shared> {
        let info = ObjectInfo::new(opts.object_info.clone());
        std::sync::Arc::new_cyclic(|weak| Shared {
            opts,
            info,
            faults: Faults::new(weak.clone()),
            inner: Mutex::new(Inner::default()),
            worker_wake: Notify::new(),
            interrupt: AtomicBool::new(false),
            ws_open: AtomicUsize::new(0),
            ws_total: AtomicUsize::new(0),
            next_conn: AtomicU64::new(1),
            requests: Mutex::new(Vec::new()),
            cancel: CancellationToken::new(),
            tracker: TaskTracker::new(),
        })
    }

    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Who a message goes to, mirroring `send_sync(event, data, sid)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// `sid=None`: every registered socket.
    Broadcast,
    /// One socket, if registered under this id.
    Sid(String),
    /// A `client_id` that can never match a socket (e.g. a number in the JSON).
    Nobody,
}

/// What a socket task is asked to do.
#[derive(Debug, Clone)]
pub enum Outgoing {
    Frame(Message),
    /// Flush what came before, then drop the TCP connection without a close frame.
    Kill,
}

#[derive(Debug)]
pub struct Conn {
    pub tx: mpsc::Sender<Outgoing>,
    pub kill: CancellationToken,
}

/// A queue entry: `[number, prompt_id, prompt, extra_data, outputs_to_execute]`.
#[derive(Clone, Debug)]
pub struct QueueItem {
    pub number: Value,
    pub prompt_id: String,
    pub prompt: Value,
    pub extra_data: Value,
    pub outputs: Vec<String>,
}

impl QueueItem {
    pub fn to_json(&self) -> Value {
        Value::Array(vec![
            self.number.clone(),
            Value::String(self.prompt_id.clone()),
            self.prompt.clone(),
            self.extra_data.clone(),
            Value::Array(self.outputs.iter().cloned().map(Value::String).collect()),
        ])
    }

    /// Python tuple ordering: number, then prompt_id.
    fn lt(&self, other: &QueueItem) -> bool {
        let a = pyjson::as_num(&self.number).unwrap_or(0.0);
        let b = pyjson::as_num(&other.number).unwrap_or(0.0);
        a < b || (a == b && self.prompt_id < other.prompt_id)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dir {
    Input,
    Output,
    Temp,
}

impl Dir {
    pub fn parse(s: &str) -> Option<Dir> {
        match s {
            "input" => Some(Dir::Input),
            "output" => Some(Dir::Output),
            "temp" => Some(Dir::Temp),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Dir::Input => "input",
            Dir::Output => "output",
            Dir::Temp => "temp",
        }
    }
}

/// Normalises a relative path (`a/./b/../c` -> `a/c`); `None` if it is absolute or escapes.
pub fn normalize_rel(path: &str) -> Option<String> {
    if path.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = Vec::new();
    for p in path.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            other => parts.push(other),
        }
    }
    Some(parts.join("/"))
}

pub fn join_rel(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{}/{}", dir, name)
    }
}

#[derive(Debug, Clone)]
pub struct StoredFile {
    pub bytes: Bytes,
    /// Creation order (stands in for mtime).
    pub seq: u64,
}

/// input/, output/ and temp/ kept in memory, keyed by normalised relative path.
#[derive(Debug, Default)]
pub struct FileStore {
    files: HashMap<(Dir, String), StoredFile>,
    seq: u64,
}

impl FileStore {
    pub fn get(&self, dir: Dir, rel: &str) -> Option<&StoredFile> {
        self.files.get(&(dir, rel.to_string()))
    }

    pub fn put(&mut self, dir: Dir, rel: &str, bytes: Bytes) {
        self.seq += 1;
        self.files.insert(
            (dir, rel.to_string()),
            StoredFile {
                bytes,
                seq: self.seq,
            },
        );
    }

    /// `os.path.exists`: a file, or a directory some file lives under.
    pub fn exists(&self, dir: Dir, rel: &str) -> bool {
        if rel.is_empty() {
            return true;
        }
        let prefix = format!("{}/", rel);
        self.files
            .keys()
            .any(|(d, p)| *d == dir && (p == rel || p.starts_with(&prefix)))
    }

    /// Files directly inside `sub` of `dir`: (name, seq).
    pub fn list(&self, dir: Dir, sub: &str) -> Vec<(String, u64)> {
        self.files
            .iter()
            .filter(|((d, _), _)| *d == dir)
            .filter_map(|((_, p), f)| {
                let (parent, name) = match p.rsplit_once('/') {
                    Some((a, b)) => (a, b),
                    None => ("", p.as_str()),
                };
                (parent == sub).then(|| (name.to_string(), f.seq))
            })
            .collect()
    }

    pub fn clear_dir(&mut self, dir: Dir) {
        self.files.retain(|(d, _), _| *d != dir);
    }

    /// Resolves an annotated name (`x.png [output]`) the way `folder_paths` does, defaulting to
    /// input/. `None` if the path escapes its directory.
    pub fn resolve_annotated(name: &str) -> Option<(Dir, String)> {
        let (dir, base) = if let Some(n) = name.strip_suffix("[output]") {
            (Dir::Output, n)
        } else if let Some(n) = name.strip_suffix("[input]") {
            (Dir::Input, n)
        } else if let Some(n) = name.strip_suffix("[temp]") {
            (Dir::Temp, n)
        } else {
            return normalize_rel(name).map(|p| (Dir::Input, p));
        };
        // folder_paths cuts one more character: the space before the bracket.
        let mut base = base.to_string();
        base.pop();
        normalize_rel(&base).map(|p| (dir, p))
    }
}

/// `/free` flags, applied by the worker when idle or after the current job.
#[derive(Debug, Default)]
pub struct Flags {
    pub free_memory: Option<Value>,
    pub unload_models: Option<Value>,
}

#[derive(Debug, Default)]
pub struct Inner {
    /// `PromptServer.number`.
    pub number: i64,
    /// Pending prompts, laid out exactly like Python's heap array.
    pub queue: Vec<QueueItem>,
    pub running: Option<QueueItem>,
    pub history: IndexMap<String, Value>,
    pub flags: Flags,
    pub conns: HashMap<u64, Conn>,
    /// `PromptServer.sockets`: client id -> connection.
    pub sockets: IndexMap<String, u64>,
    /// `PromptServer.sockets_metadata`: client id -> feature flags the client sent.
    pub sockets_meta: IndexMap<String, Value>,
    /// `PromptServer.client_id` / `last_node_id`, used for the reconnect `executing` frame.
    pub client_id: Option<String>,
    pub last_node_id: Option<String>,
    pub files: FileStore,
}

impl Inner {
    pub fn tasks_remaining(&self) -> usize {
        self.queue.len() + self.running.is_some() as usize
    }

    pub fn status_data(&self) -> Value {
        obj([(
            "status",
            obj([(
                "exec_info",
                obj([("queue_remaining", self.tasks_remaining().into())]),
            )]),
        )])
    }

    /// `queue_updated()`: status broadcast to every socket.
    pub fn broadcast_status(&mut self) {
        let text = message_text("status", self.status_data());
        self.send_text(&Target::Broadcast, text);
    }

    pub fn send_text(&mut self, target: &Target, text: String) {
        self.send(target, Outgoing::Frame(Message::Text(text)));
    }

    pub fn send(&mut self, target: &Target, out: Outgoing) {
        let ids: Vec<(String, u64)> = match target {
            Target::Broadcast => self.sockets.iter().map(|(s, c)| (s.clone(), *c)).collect(),
            Target::Sid(s) => self
                .sockets
                .get(s)
                .map(|c| vec![(s.clone(), *c)])
                .unwrap_or_default(),
            Target::Nobody => Vec::new(),
        };
        for (sid, cid) in ids {
            let failed = match self.conns.get(&cid) {
                Some(conn) => conn.tx.try_send(out.clone()).is_err(),
                None => true,
            };
            if failed {
                // A client that stops reading (or a finished task): cut it loose.
                if let Some(conn) = self.conns.remove(&cid) {
                    conn.kill.cancel();
                }
                if self.sockets.get(&sid) == Some(&cid) {
                    self.sockets.shift_remove(&sid);
                    self.sockets_meta.shift_remove(&sid);
                }
            }
        }
    }

    /// Asks every open connection (registered or not) to flush and drop.
    pub fn kill_all_sockets_after_flush(&mut self) {
        for conn in self.conns.values() {
            if conn.tx.try_send(Outgoing::Kill).is_err() {
                conn.kill.cancel();
            }
        }
    }

    /// `supports_feature(sockets_metadata, sid, "supports_preview_metadata")`.
    pub fn supports_preview_metadata(&self, client: &Option<String>) -> bool {
        client
            .as_ref()
            .and_then(|sid| self.sockets_meta.get(sid))
            .and_then(|flags| flags.get("supports_preview_metadata"))
            == Some(&Value::Bool(true))
    }

    pub fn heap_push(&mut self, item: QueueItem) {
        self.queue.push(item);
        let last = self.queue.len() - 1;
        sift_down(&mut self.queue, 0, last);
    }

    pub fn heap_pop(&mut self) -> Option<QueueItem> {
        let last = self.queue.pop()?;
        if self.queue.is_empty() {
            return Some(last);
        }
        let top = std::mem::replace(&mut self.queue[0], last);
        sift_up(&mut self.queue, 0);
        Some(top)
    }

    /// `PromptQueue.delete_queue_item`: first pending item with this id.
    pub fn delete_pending(&mut self, prompt_id: &str) {
        let Some(pos) = self.queue.iter().position(|q| q.prompt_id == prompt_id) else {
            return;
        };
        if self.queue.len() == 1 {
            // wipe_queue() broadcasts, then delete_queue_item broadcasts again
            self.queue.clear();
            self.broadcast_status();
        } else {
            self.queue.remove(pos);
            let n = self.queue.len();
            for i in (0..n / 2).rev() {
                sift_up(&mut self.queue, i);
            }
        }
        self.broadcast_status();
    }

    pub fn add_history(&mut self, prompt_id: String, entry: Value) {
        if self.history.len() > MAX_HISTORY {
            self.history.shift_remove_index(0);
        }
        self.history.insert(prompt_id, entry);
    }
}

/// `{"type": T, "data": D}` as `json.dumps` renders it.
pub fn message_text(ty: &str, data: Value) -> String {
    pyjson::dumps(&obj([("type", ty.into()), ("data", data)]))
}

// heapq's _siftdown/_siftup, so `queue_pending` has the same (unsorted) layout as the real one.
fn sift_down(heap: &mut [QueueItem], start: usize, mut pos: usize) {
    while pos > start {
        let parent = (pos - 1) >> 1;
        if heap[pos].lt(&heap[parent]) {
            heap.swap(pos, parent);
            pos = parent;
        } else {
            break;
        }
    }
}

fn sift_up(heap: &mut [QueueItem], mut pos: usize) {
    let end = heap.len();
    let start = pos;
    let mut child = 2 * pos + 1;
    while child < end {
        let right = child + 1;
        if right < end && !heap[child].lt(&heap[right]) {
            child = right;
        }
        heap.swap(pos, child);
        pos = child;
        child = 2 * pos + 1;
    }
    sift_down(heap, start, pos);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn item(n: i64, id: &str) -> QueueItem {
        QueueItem {
            number: json!(n),
            prompt_id: id.into(),
            prompt: json!({}),
            extra_data: json!({}),
            outputs: vec![],
        }
    }

    #[test]
    fn heap_pops_in_number_order() {
        let mut inner = Inner::default();
        for (n, id) in [(5, "e"), (1, "a"), (3, "c"), (2, "b"), (4, "d")] {
            inner.heap_push(item(n, id));
        }
        let order: Vec<String> =
            std::iter::from_fn(|| inner.heap_pop().map(|i| i.prompt_id)).collect();
        assert_eq!(order, ["a", "b", "c", "d", "e"]);
    }

    #[test]
    fn paths_normalise() {
        assert_eq!(normalize_rel("a/./b/../c").as_deref(), Some("a/c"));
        assert_eq!(normalize_rel("../x"), None);
        assert_eq!(normalize_rel("/etc"), None);
        assert_eq!(
            FileStore::resolve_annotated("x.png [output]"),
            Some((Dir::Output, "x.png".into()))
        );
    }
}
