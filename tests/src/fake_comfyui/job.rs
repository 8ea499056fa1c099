//! Per-job context: emits every WebSocket frame of a job (with the fault hooks), keeps the
//! `execution_*` status messages for history and the progress registry whose snapshots go
//! out as `progress_state`, and implements the progress-bar hook (interrupt check, previews).

use super::exec::now_ms;
use super::faults::JobFaults;
use super::nodes::NodeError;
use super::pyjson::{self, obj};
use super::state::{message_text, Outgoing, QueueItem, Shared, Target};
use indexmap::IndexMap;
use serde_json::{Map, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio_tungstenite::tungstenite::Message;

/// `extra_data.client_id`, which decides who gets the execution messages.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Client {
    None,
    Sid(String),
    /// Present but not a string: never matches a socket.
    Invalid,
}

impl Client {
    pub(crate) fn from_extra(extra: &Value) -> Client {
        match extra.get("client_id") {
            None | Some(Value::Null) => Client::None,
            Some(Value::String(s)) => Client::Sid(s.clone()),
            Some(_) => Client::Invalid,
        }
    }

    /// `send_sync(..., sid=client_id)`: no client id means broadcast.
    pub(crate) fn sid_target(&self) -> Target {
        match self {
            Client::None => Target::Broadcast,
            Client::Sid(s) => Target::Sid(s.clone()),
            Client::Invalid => Target::Nobody,
        }
    }

    pub(crate) fn is_some(&self) -> bool {
        *self != Client::None
    }

    pub(crate) fn sid(&self) -> Option<String> {
        match self {
            Client::Sid(s) => Some(s.clone()),
            _ => None,
        }
    }
}

/// A preview image passed to the progress hook.
pub(crate) enum Preview {
    Jpeg(Vec<u8>),
    Png(Vec<u8>),
}

struct NodeProgress {
    state: &'static str,
    value: Value,
    max: Value,
}

/// Per-job context: message emission (with fault hooks), status messages, progress registry.
pub(crate) struct Job {
    shared: Arc<Shared>,
    pub prompt_id: String,
    pub(crate) client: Client,
    pub(crate) status_messages: Vec<Value>,
    progress: IndexMap<String, NodeProgress>,
    pub(crate) faults: JobFaults,
    sent: usize,
    progress_sent: usize,
}

impl Job {
    pub(crate) fn new(shared: Arc<Shared>, item: &QueueItem, faults: JobFaults) -> Job {
        Job {
            shared,
            prompt_id: item.prompt_id.clone(),
            client: Client::from_extra(&item.extra_data),
            status_messages: Vec::new(),
            progress: IndexMap::new(),
            faults,
            sent: 0,
            progress_sent: 0,
        }
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Every frame of the job goes through here: unknown-event injection, then the frame, then
    /// the "drop sockets after n messages" fault.
    fn emit(&mut self, target: &Target, msg: Message) {
        let unknown = self.shared.faults.unknown_events();
        let mut g = self.shared.lock();
        if unknown {
            let monitor = obj([
                ("cpu_utilization", pyjson::float_value(12.5)),
                ("ram_total", 25276514304u64.into()),
                ("ram_used", 1610612736u64.into()),
                ("ram_used_percent", pyjson::float_value(6.4)),
                ("hdd_total", 0.into()),
                ("hdd_used", 0.into()),
                ("hdd_used_percent", pyjson::float_value(0.0)),
                ("device_type", "cpu".into()),
                ("gpus", Value::Array(Vec::new())),
            ]);
            g.send_text(
                &Target::Broadcast,
                message_text("crystools.monitor", monitor),
            );
            let custom = obj([
                ("prompt_id", self.prompt_id.clone().into()),
                ("note", "custom node event".into()),
            ]);
            g.send_text(target, message_text("fake_custom_node.event", custom));
        }
        g.send(target, Outgoing::Frame(msg));
        self.sent += 1;
        if self.faults.drop_ws_after == Some(self.sent) {
            g.kill_all_sockets_after_flush();
        }
    }

    fn emit_json(&mut self, target: &Target, ty: &str, data: Value) {
        self.emit(target, Message::Text(message_text(ty, data)));
    }

    /// Sent only when the prompt has a client id, and only to it.
    pub(crate) fn send_client(&mut self, ty: &str, data: Value) {
        if self.client.is_some() {
            let t = self.client.sid_target();
            self.emit_json(&t, ty, data);
        }
    }

    /// `PromptExecutor.add_message`: recorded for history, sent to the client (or broadcast).
    pub(crate) fn add_message(&mut self, event: &str, data: Value, broadcast: bool) {
        let mut data = data;
        if let Value::Object(m) = &mut data {
            m.insert("timestamp".into(), now_ms().into());
        }
        self.status_messages
            .push(Value::Array(vec![event.into(), data.clone()]));
        if self.client.is_some() || broadcast {
            let t = self.client.sid_target();
            self.emit_json(&t, event, data);
        }
    }

    pub(crate) fn interrupted(&self) -> bool {
        self.shared.interrupt.load(Ordering::SeqCst)
    }

    fn send_progress_state(&mut self) {
        let mut nodes = Map::new();
        for (id, p) in &self.progress {
            if p.state == "pending" {
                continue;
            }
            nodes.insert(
                id.clone(),
                obj([
                    ("value", p.value.clone()),
                    ("max", p.max.clone()),
                    ("state", p.state.into()),
                    ("node_id", id.clone().into()),
                    ("prompt_id", self.prompt_id.clone().into()),
                    ("display_node_id", id.clone().into()),
                    ("parent_node_id", Value::Null),
                    ("real_node_id", id.clone().into()),
                ]),
            );
        }
        let data = obj([
            ("prompt_id", self.prompt_id.clone().into()),
            ("nodes", Value::Object(nodes)),
        ]);
        let t = self.client.sid_target();
        self.emit_json(&t, "progress_state", data);
    }

    fn entry(&mut self, node: &str) -> &mut NodeProgress {
        self.progress
            .entry(node.to_string())
            .or_insert_with(|| NodeProgress {
                state: "pending",
                value: 0.into(),
                max: 1.into(),
            })
    }

    pub(crate) fn start_progress(&mut self, node: &str) {
        let e = self.entry(node);
        e.state = "running";
        e.value = pyjson::float_value(0.0);
        e.max = pyjson::float_value(1.0);
        self.send_progress_state();
    }

    pub(crate) fn finish_progress(&mut self, node: &str) {
        let e = self.entry(node);
        e.state = "finished";
        e.value = e.max.clone();
        self.send_progress_state();
    }

    /// The progress-bar hook: interrupt check, `progress_state`, the preview (metadata flavour
    /// before `progress`, legacy flavour after), then `progress`.
    pub(crate) fn progress(
        &mut self,
        node: &str,
        value: Value,
        max: Value,
        preview: Option<Preview>,
    ) -> Result<(), NodeError> {
        if self.interrupted() {
            return Err(NodeError::Interrupted);
        }
        {
            let e = self.entry(node);
            e.state = "running";
            e.value = value.clone();
            e.max = max.clone();
        }
        self.send_progress_state();
        let target = self.client.sid_target();
        let metadata = self
            .shared
            .lock()
            .supports_preview_metadata(&self.client.sid());
        if let (Some(p), true) = (&preview, metadata) {
            let (image_type, bytes) = match p {
                Preview::Jpeg(b) => ("image/jpeg", b),
                Preview::Png(b) => ("image/png", b),
            };
            let meta = pyjson::dumps(&obj([
                ("node_id", node.into()),
                ("prompt_id", self.prompt_id.clone().into()),
                ("display_node_id", node.into()),
                ("parent_node_id", Value::Null),
                ("real_node_id", node.into()),
                ("image_type", image_type.into()),
            ]));
            let mut frame = Vec::with_capacity(8 + meta.len() + bytes.len());
            frame.extend_from_slice(&4u32.to_be_bytes());
            frame.extend_from_slice(&(meta.len() as u32).to_be_bytes());
            frame.extend_from_slice(meta.as_bytes());
            frame.extend_from_slice(bytes);
            self.emit(&target, Message::Binary(frame));
        }
        let data = obj([
            ("value", value),
            ("max", max),
            ("prompt_id", self.prompt_id.clone().into()),
            ("node", node.into()),
        ]);
        self.emit_json(&target, "progress", data);
        if let (Some(p), false) = (&preview, metadata) {
            let (format, bytes) = match p {
                Preview::Jpeg(b) => (1u32, b),
                Preview::Png(b) => (2u32, b),
            };
            let mut frame = Vec::with_capacity(8 + bytes.len());
            frame.extend_from_slice(&1u32.to_be_bytes());
            frame.extend_from_slice(&format.to_be_bytes());
            frame.extend_from_slice(bytes);
            self.emit(&target, Message::Binary(frame));
        }
        self.progress_sent += 1;
        if self.faults.interrupt_after_progress == Some(self.progress_sent) {
            self.shared.interrupt.store(true, Ordering::SeqCst);
        }
        Ok(())
    }
}
