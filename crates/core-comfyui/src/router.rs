//! Routing the WebSocket's messages to the job each belongs to (by `prompt_id`, else the
//! running one), and each job's end to whoever waits for it.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use tokio::sync::{mpsc, oneshot};

use crate::events::{BinaryFrame, ServerMessage};
use crate::job::JobEvent;

/// How a job's wait ended, before its outcome is read from `/history`.
#[derive(Debug)]
pub(crate) enum End {
    /// `executing {node: null}` (or history says it is over): read the outcome from history.
    Finished,
    /// Deleted from the queue before it ran.
    Cancelled,
    /// The server no longer knows the prompt, or we lost it for too long.
    Vanished(String),
}

struct Subscriber {
    events: mpsc::Sender<JobEvent>,
    end: Option<oneshot::Sender<End>>,
    /// Set once `POST /prompt` succeeded; only posted prompts are reconciled.
    posted: bool,
    dropped_events: u64,
}

#[derive(Default)]
struct RouterState {
    subscribers: HashMap<String, Subscriber>,
    /// The prompt our client has running, for frames that do not name one (legacy previews,
    /// the reconnect replay of `executing`).
    current: Option<String>,
    /// Counts connections; a change between subscribe and post means the socket dropped.
    epoch: u64,
    queue_remaining: u64,
}

/// Routes events to per-job channels by prompt id.
pub(crate) struct Router {
    state: Mutex<RouterState>,
    buffer: usize,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("buffer", &self.buffer)
            .finish_non_exhaustive()
    }
}

/// A job's side of the router.
#[derive(Debug)]
pub(crate) struct Subscription {
    pub epoch: u64,
    pub events: mpsc::Receiver<JobEvent>,
    pub end: oneshot::Receiver<End>,
}

impl Router {
    pub fn new(buffer: usize) -> Router {
        Router {
            state: Mutex::new(RouterState::default()),
            buffer: buffer.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, RouterState> {
        // A panic while holding this lock cannot leave the map inconsistent; keep going.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn subscribe(&self, prompt_id: &str) -> Subscription {
        let (tx, rx) = mpsc::channel(self.buffer);
        let (end_tx, end_rx) = oneshot::channel();
        let mut st = self.lock();
        st.subscribers.insert(
            prompt_id.to_string(),
            Subscriber {
                events: tx,
                end: Some(end_tx),
                posted: false,
                dropped_events: 0,
            },
        );
        Subscription {
            epoch: st.epoch,
            events: rx,
            end: end_rx,
        }
    }

    /// Marks the prompt as queued; true when the socket reconnected since `epoch`.
    pub fn mark_posted(&self, prompt_id: &str, epoch: u64) -> bool {
        let mut st = self.lock();
        let reconnected = st.epoch != epoch;
        if let Some(s) = st.subscribers.get_mut(prompt_id) {
            s.posted = true;
        }
        reconnected
    }

    /// Moves a subscription to the id the server chose.
    pub fn rekey(&self, from: &str, to: &str) {
        let mut st = self.lock();
        if let Some(s) = st.subscribers.remove(from) {
            st.subscribers.insert(to.to_string(), s);
        }
    }

    pub fn unsubscribe(&self, prompt_id: &str) {
        let mut st = self.lock();
        if let Some(s) = st.subscribers.remove(prompt_id) {
            if s.dropped_events > 0 {
                tracing::debug!(
                    prompt_id,
                    dropped = s.dropped_events,
                    "job read its events too slowly; some progress updates were skipped"
                );
            }
        }
        if st.current.as_deref() == Some(prompt_id) {
            st.current = None;
        }
    }

    fn deliver(st: &mut RouterState, prompt_id: &str, event: JobEvent) {
        if let Some(sub) = st.subscribers.get_mut(prompt_id) {
            // Never block the socket on one slow job: progress is latest-value, the outcome
            // comes from history, so a dropped intermediate event loses nothing that matters.
            if let Err(mpsc::error::TrySendError::Full(_)) = sub.events.try_send(event) {
                sub.dropped_events += 1;
            }
        }
    }

    pub fn finish(&self, prompt_id: &str, end: End) {
        let mut st = self.lock();
        if let Some(tx) = st.subscribers.get_mut(prompt_id).and_then(|s| s.end.take()) {
            let _ = tx.send(end);
        }
        if st.current.as_deref() == Some(prompt_id) {
            st.current = None;
        }
    }

    pub(crate) fn posted_prompts(&self) -> Vec<String> {
        self.lock()
            .subscribers
            .iter()
            .filter(|(_, s)| s.posted && s.end.is_some())
            .map(|(id, _)| id.clone())
            .collect()
    }

    pub(crate) fn broadcast(&self, event: impl Fn() -> JobEvent) {
        let mut st = self.lock();
        let ids: Vec<String> = st.subscribers.keys().cloned().collect();
        for id in ids {
            Self::deliver(&mut st, &id, event());
        }
    }

    pub(crate) fn connected(&self) {
        let mut st = self.lock();
        st.epoch += 1;
        st.current = None;
    }

    pub(crate) fn set_current(&self, prompt_id: Option<String>) {
        self.lock().current = prompt_id;
    }

    pub fn queue_remaining(&self) -> u64 {
        self.lock().queue_remaining
    }

    /// Sends one server message to the job it concerns.
    pub fn route(&self, msg: ServerMessage) {
        let mut st = self.lock();
        let target = |st: &RouterState, id: Option<&str>| -> Option<String> {
            id.map(str::to_string).or_else(|| st.current.clone())
        };
        match msg {
            ServerMessage::Status {
                queue_remaining, ..
            } => st.queue_remaining = queue_remaining,
            ServerMessage::ExecutionStart { prompt_id } => {
                st.current = Some(prompt_id.clone());
                Self::deliver(&mut st, &prompt_id, JobEvent::Started);
            }
            ServerMessage::ExecutionCached { prompt_id, nodes } => {
                Self::deliver(&mut st, &prompt_id, JobEvent::Cached { nodes });
            }
            ServerMessage::Executing {
                prompt_id,
                node: None,
                ..
            } => {
                let Some(id) = prompt_id else { return };
                if st.current.as_deref() == Some(id.as_str()) {
                    st.current = None;
                }
                if let Some(tx) = st.subscribers.get_mut(&id).and_then(|s| s.end.take()) {
                    let _ = tx.send(End::Finished);
                }
            }
            ServerMessage::Executing {
                prompt_id,
                node: Some(node),
                display_node,
            } => {
                let Some(id) = target(&st, prompt_id.as_deref()) else {
                    return;
                };
                st.current = Some(id.clone());
                Self::deliver(&mut st, &id, JobEvent::Executing { node, display_node });
            }
            ServerMessage::Progress {
                prompt_id,
                node,
                value,
                max,
            } => {
                let Some(id) = target(&st, prompt_id.as_deref()) else {
                    return;
                };
                Self::deliver(&mut st, &id, JobEvent::Progress { node, value, max });
            }
            ServerMessage::ProgressState { prompt_id, nodes } => {
                Self::deliver(&mut st, &prompt_id, JobEvent::NodeStates(nodes));
            }
            ServerMessage::Executed {
                prompt_id,
                node,
                output,
                ..
            } => Self::deliver(&mut st, &prompt_id, JobEvent::Executed { node, output }),
            ServerMessage::ExecutionError(e) => {
                let id = e.prompt_id.clone();
                Self::deliver(
                    &mut st,
                    &id,
                    JobEvent::Failing {
                        node: e.node_id.clone(),
                        message: e.exception_message.clone(),
                    },
                );
            }
            ServerMessage::ExecutionSuccess { .. }
            | ServerMessage::ExecutionInterrupted(_)
            | ServerMessage::FeatureFlags(_) => {}
            ServerMessage::Unknown { kind, .. } => {
                tracing::trace!(kind, "ignoring unknown ComfyUI message type");
            }
        }
    }

    /// Sends one binary frame to the job it concerns.
    pub fn route_binary(&self, frame: BinaryFrame) {
        let mut st = self.lock();
        match frame {
            BinaryFrame::Preview { format, image } => {
                if let Some(id) = st.current.clone() {
                    Self::deliver(
                        &mut st,
                        &id,
                        JobEvent::Preview {
                            node: None,
                            format,
                            image,
                        },
                    );
                }
            }
            BinaryFrame::PreviewWithMetadata {
                meta,
                format,
                image,
            } => {
                let id = meta.prompt_id.clone().or_else(|| st.current.clone());
                if let Some(id) = id {
                    let node = meta.display_node_id.or(meta.node_id);
                    Self::deliver(
                        &mut st,
                        &id,
                        JobEvent::Preview {
                            node,
                            format,
                            image,
                        },
                    );
                }
            }
            BinaryFrame::Text { node_id, text } => {
                if let Some(id) = st.current.clone() {
                    Self::deliver(
                        &mut st,
                        &id,
                        JobEvent::Text {
                            node: node_id,
                            text,
                        },
                    );
                }
            }
            BinaryFrame::Unknown { event_type, .. } => {
                tracing::trace!(event_type, "ignoring unknown binary frame");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::PreviewFormat;
    use bytes::Bytes;

    fn msg(text: &str) -> ServerMessage {
        ServerMessage::decode(text).unwrap()
    }

    #[tokio::test]
    async fn routes_by_prompt_and_falls_back_to_the_running_one() {
        let router = Router::new(16);
        let mut a = router.subscribe("A");
        let mut b = router.subscribe("B");
        router.route(msg(
            r#"{"type":"execution_start","data":{"prompt_id":"A","timestamp":1}}"#,
        ));
        // Legacy previews and the reconnect replay name no prompt: they belong to the running one.
        router.route_binary(BinaryFrame::Preview {
            format: PreviewFormat::Jpeg,
            image: Bytes::from_static(b"\xff\xd8"),
        });
        router.route(msg(r#"{"type":"executing","data":{"node":"2"}}"#));
        router.route(msg(
            r#"{"type":"progress","data":{"value":1,"max":4,"prompt_id":"B","node":"3"}}"#,
        ));
        router.route(msg(
            r#"{"type":"executing","data":{"node":null,"prompt_id":"A"}}"#,
        ));
        assert_eq!(a.events.try_recv().unwrap(), JobEvent::Started);
        assert!(matches!(
            a.events.try_recv().unwrap(),
            JobEvent::Preview { node: None, .. }
        ));
        assert!(
            matches!(a.events.try_recv().unwrap(), JobEvent::Executing { node, display_node: None } if node == "2")
        );
        assert!(a.events.try_recv().is_err());
        assert!(matches!(a.end.try_recv(), Ok(End::Finished)));
        assert!(
            matches!(b.events.try_recv().unwrap(), JobEvent::Progress { value, .. } if value == 1.0)
        );
        assert!(b.end.try_recv().is_err());
        // After A ended, a frame without a prompt id goes nowhere rather than to the wrong job.
        router.route_binary(BinaryFrame::Preview {
            format: PreviewFormat::Jpeg,
            image: Bytes::new(),
        });
        assert!(b.events.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_slow_job_loses_progress_not_its_end() {
        let router = Router::new(2);
        let mut sub = router.subscribe("P");
        for i in 0..10 {
            router.route(msg(&format!(
                r#"{{"type":"progress","data":{{"value":{i},"max":10,"prompt_id":"P","node":"3"}}}}"#
            )));
        }
        router.route(msg(
            r#"{"type":"executing","data":{"node":null,"prompt_id":"P"}}"#,
        ));
        let mut got = 0;
        while sub.events.try_recv().is_ok() {
            got += 1;
        }
        assert_eq!(got, 2);
        assert!(matches!(sub.end.try_recv(), Ok(End::Finished)));
    }

    #[tokio::test]
    async fn reconnect_between_subscribe_and_post_is_noticed() {
        let router = Router::new(4);
        let sub = router.subscribe("P");
        assert!(!router.mark_posted("P", sub.epoch));
        let sub2 = router.subscribe("Q");
        router.connected();
        assert!(router.mark_posted("Q", sub2.epoch));
        assert_eq!(router.posted_prompts().len(), 2);
    }
}
