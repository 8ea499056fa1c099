//! The single prompt worker: takes queue items one at a time and "executes" them with
//! ComfyUI's observable behaviour — execution order (its topological dissolve with the
//! output-first pick heuristic), the classic input-signature cache, progress registry
//! snapshots, who gets which message, interrupts, errors, and the history entry written before
//! the final `executing {node: null}`.

use super::graph::{class_of, signatures, ExecList};
use super::info::ObjectInfo;
use super::job::Job;
use super::nodes::{self, NodeCtx, NodeError, Val};
use super::pyjson::{self, obj};
use super::state::{Dir, QueueItem, Shared};
use super::validate::is_link;
use indexmap::IndexMap;
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The worker task. Ends when `cancel` fires (restart or shutdown), dropping the running job
/// at its next await point.
pub(crate) async fn run_worker(shared: Arc<Shared>, cancel: CancellationToken) {
    let mut worker = Worker::new(shared.clone());
    loop {
        // `/free` flags apply between jobs, and at once when idle.
        worker.apply_flags();
        let item = {
            let mut g = shared.lock();
            let item = g.heap_pop();
            if let Some(item) = &item {
                g.running = Some(item.clone());
                g.broadcast_status();
            }
            item
        };
        match item {
            Some(item) => {
                tokio::select! {
                    biased;
                    _ = cancel.cancelled() => return,
                    _ = worker.run_job(item) => {}
                }
            }
            None => {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = shared.worker_wake.notified() => {}
                }
            }
        }
    }
}

#[derive(Clone, Debug)]
struct UiEntry {
    meta: Value,
    output: Value,
}

/// Executor state that survives between prompts (ComfyUI's `CacheSet`).
#[derive(Default)]
struct Caches {
    outputs: HashMap<String, Arc<Vec<Val>>>,
    ui: HashMap<String, UiEntry>,
    /// Per (node id, class) node objects; the fake only keeps PreviewImage's random prefix.
    objects: HashMap<(String, String), String>,
}

pub(crate) struct Worker {
    shared: Arc<Shared>,
    caches: Caches,
}

/// Why a node failed.
enum Failure {
    Interrupted {
        node_id: String,
    },
    Exception {
        node_id: String,
        ty: String,
        message: String,
        traceback: Vec<String>,
        current_inputs: Value,
    },
}

impl Worker {
    fn new(shared: Arc<Shared>) -> Worker {
        Worker {
            shared,
            caches: Caches::default(),
        }
    }

    /// `/free`: `free_memory` resets the caches (models are imaginary anyway).
    fn apply_flags(&mut self) {
        let flags = std::mem::take(&mut self.shared.lock().flags);
        if flags
            .free_memory
            .as_ref()
            .map(pyjson::truthy)
            .unwrap_or(false)
        {
            self.caches = Caches::default();
        }
    }

    async fn run_job(&mut self, item: QueueItem) {
        let faults = self.shared.faults.take_job_faults();
        let mut job = Job::new(self.shared.clone(), &item, faults);
        let (success, outputs, meta) = self.execute(&mut job, &item).await;

        {
            // task_done: history first, then the status broadcast.
            let mut g = self.shared.lock();
            let running = g.running.take().unwrap_or_else(|| item.clone());
            let mut stored = running.clone();
            if let Value::Object(extra) = &mut stored.extra_data {
                extra.shift_remove("auth_token_comfy_org");
                extra.shift_remove("api_key_comfy_org");
            }
            let entry = obj([
                ("prompt", stored.to_json()),
                ("outputs", outputs),
                (
                    "status",
                    obj([
                        (
                            "status_str",
                            if success { "success" } else { "error" }.into(),
                        ),
                        ("completed", success.into()),
                        ("messages", Value::Array(job.status_messages.clone())),
                    ]),
                ),
                ("meta", meta),
            ]);
            g.add_history(stored.prompt_id.clone(), entry);
            g.broadcast_status();
        }
        let done = obj([
            ("node", Value::Null),
            ("prompt_id", job.prompt_id.clone().into()),
        ]);
        job.send_client("executing", done);
    }

    async fn execute(&mut self, job: &mut Job, item: &QueueItem) -> (bool, Value, Value) {
        let shared = self.shared.clone();
        // interrupt_processing(False) at the start of every prompt
        shared.interrupt.store(
            job.faults.interrupt_after_progress == Some(0),
            Ordering::SeqCst,
        );
        {
            let mut g = shared.lock();
            g.client_id = job.client.sid();
            g.last_node_id = None;
            if job.faults.drop_ws_after == Some(0) {
                g.kill_all_sockets_after_flush();
            }
        }
        let empty = Map::new();
        let prompt = item.prompt.as_object().unwrap_or(&empty);
        job.add_message(
            "execution_start",
            obj([("prompt_id", job.prompt_id.clone().into())]),
            false,
        );

        let sigs = {
            let g = shared.lock();
            signatures(prompt, &shared.info, &g.files)
        };
        let live: HashSet<&String> = sigs.values().collect();
        self.caches.outputs.retain(|k, _| live.contains(k));
        self.caches.ui.retain(|k, _| live.contains(k));
        self.caches.objects.retain(|(id, class), _| {
            prompt
                .get(id)
                .and_then(|n| n.get("class_type"))
                .and_then(Value::as_str)
                == Some(class.as_str())
        });
        let cached: Vec<Value> = prompt
            .keys()
            .filter(|id| self.caches.outputs.contains_key(&sigs[*id]))
            .map(|id| Value::String(id.clone()))
            .collect();
        job.add_message(
            "execution_cached",
            obj([
                ("nodes", Value::Array(cached)),
                ("prompt_id", job.prompt_id.clone().into()),
            ]),
            false,
        );

        let cached_ids: HashSet<String> = prompt
            .keys()
            .filter(|id| self.caches.outputs.contains_key(&sigs[*id]))
            .cloned()
            .collect();
        let mut list = ExecList::new(prompt, &shared.info, cached_ids);
        for o in &item.outputs {
            list.add_node(o);
        }
        let mut executed: Vec<String> = Vec::new();
        let mut failure: Option<Failure> = None;
        while !list.is_empty() {
            let Some(node_id) = list.stage() else {
                failure = Some(Failure::Exception {
                    node_id: list.first_pending().unwrap_or_default(),
                    ty: "graph.DependencyCycleError".into(),
                    message: "Dependency cycle detected".into(),
                    traceback: Vec::new(),
                    current_inputs: Value::Array(Vec::new()),
                });
                break;
            };
            match self
                .execute_node(job, item, &sigs, &node_id, &mut executed)
                .await
            {
                Ok(()) => list.complete(&node_id),
                Err(f) => {
                    failure = Some(f);
                    break;
                }
            }
        }

        let success = failure.is_none();
        match failure {
            None => job.add_message(
                "execution_success",
                obj([("prompt_id", job.prompt_id.clone().into())]),
                false,
            ),
            Some(Failure::Interrupted { node_id }) => {
                let data = obj([
                    ("prompt_id", job.prompt_id.clone().into()),
                    ("node_id", node_id.clone().into()),
                    ("node_type", class_of(prompt, &node_id).into()),
                    ("executed", strings(&executed)),
                ]);
                job.add_message("execution_interrupted", data, true);
            }
            Some(Failure::Exception {
                node_id,
                ty,
                message,
                traceback,
                current_inputs,
            }) => {
                // current_outputs: every node id of the prompt (a set in ComfyUI).
                let all: Vec<String> = prompt.keys().rev().cloned().collect();
                let data = obj([
                    ("prompt_id", job.prompt_id.clone().into()),
                    ("node_id", node_id.clone().into()),
                    ("node_type", class_of(prompt, &node_id).into()),
                    ("executed", strings(&executed)),
                    ("exception_message", format!("{}\n", message).into()),
                    ("exception_type", ty.into()),
                    ("traceback", strings(&traceback)),
                    ("current_inputs", current_inputs),
                    ("current_outputs", strings(&all)),
                ]);
                job.add_message("execution_error", data, false);
            }
        }

        // History outputs: UI entries of this prompt's nodes (cached ones included).
        let mut outputs = Map::new();
        let mut meta = Map::new();
        for id in prompt.keys() {
            if let Some(ui) = self.caches.ui.get(&sigs[id]) {
                outputs.insert(id.clone(), ui.output.clone());
                meta.insert(id.clone(), ui.meta.clone());
            }
        }
        shared.lock().last_node_id = None;
        (success, Value::Object(outputs), Value::Object(meta))
    }

    async fn execute_node(
        &mut self,
        job: &mut Job,
        item: &QueueItem,
        sigs: &IndexMap<String, String>,
        id: &str,
        executed: &mut Vec<String>,
    ) -> Result<(), Failure> {
        let empty = Map::new();
        let prompt = item.prompt.as_object().unwrap_or(&empty);
        let class = class_of(prompt, id);
        let sig = sigs.get(id).cloned().unwrap_or_default();
        if self.caches.outputs.contains_key(&sig) {
            // A cached output node: re-send its UI, mark it finished.
            let output = self
                .caches
                .ui
                .get(&sig)
                .map(|u| u.output.clone())
                .unwrap_or(Value::Null);
            job.send_client(
                "executed",
                obj([
                    ("node", id.into()),
                    ("display_node", id.into()),
                    ("output", output),
                    ("prompt_id", job.prompt_id.clone().into()),
                ]),
            );
            job.finish_progress(id);
            return Ok(());
        }

        job.start_progress(id);
        let inputs = self.input_data(prompt, sigs, id, &class, item);
        if job.client.is_some() {
            self.shared.lock().last_node_id = Some(id.to_string());
            job.send_client(
                "executing",
                obj([
                    ("node", id.into()),
                    ("display_node", id.into()),
                    ("prompt_id", job.prompt_id.clone().into()),
                ]),
            );
        }
        if job.interrupted() {
            return Err(Failure::Interrupted {
                node_id: id.to_string(),
            });
        }

        let temp_prefix = self
            .caches
            .objects
            .entry((id.to_string(), class.clone()))
            .or_insert_with(nodes::temp_prefix)
            .clone();
        let mut ctx = NodeCtx {
            job,
            id,
            class: &class,
            inputs: &inputs,
            prompt: &item.prompt,
            extra_data: &item.extra_data,
            temp_prefix: &temp_prefix,
        };
        match nodes::run(&mut ctx).await {
            Ok(out) => {
                if let Some(ui) = out
                    .ui
                    .filter(|u| u.as_object().is_some_and(|m| !m.is_empty()))
                {
                    self.caches.ui.insert(
                        sig.clone(),
                        UiEntry {
                            meta: obj([
                                ("node_id", id.into()),
                                ("display_node", id.into()),
                                ("parent_node", Value::Null),
                                ("real_node_id", id.into()),
                            ]),
                            output: ui.clone(),
                        },
                    );
                    job.send_client(
                        "executed",
                        obj([
                            ("node", id.into()),
                            ("display_node", id.into()),
                            ("output", ui),
                            ("prompt_id", job.prompt_id.clone().into()),
                        ]),
                    );
                }
                self.caches.outputs.insert(sig, Arc::new(out.outputs));
                job.finish_progress(id);
                executed.push(id.to_string());
                Ok(())
            }
            Err(NodeError::Interrupted) => Err(Failure::Interrupted {
                node_id: id.to_string(),
            }),
            Err(NodeError::Exception { ty, msg, frame }) => {
                let mut current = Map::new();
                for (name, v) in &inputs {
                    current.insert(name.clone(), Value::Array(vec![nodes::format_value(v)]));
                }
                Err(Failure::Exception {
                    node_id: id.to_string(),
                    ty,
                    message: msg,
                    traceback: vec![
                        "  File \"<fake-comfyui>/execution.py\", line 1, in execute\n".into(),
                        format!(
                            "  File \"<fake-comfyui>/nodes/{}.py\", line 1, in run\n    {}\n",
                            class, frame
                        ),
                    ],
                    current_inputs: Value::Object(current),
                })
            }
        }
    }

    /// `get_input_data`: linked values from the output cache, declared literals, hidden inputs.
    fn input_data(
        &self,
        prompt: &Map<String, Value>,
        sigs: &IndexMap<String, String>,
        id: &str,
        class: &str,
        item: &QueueItem,
    ) -> IndexMap<String, Val> {
        let info = &self.shared.info;
        let mut out = IndexMap::new();
        let inputs = prompt
            .get(id)
            .and_then(|n| n.get("inputs"))
            .and_then(Value::as_object);
        for (name, v) in inputs.into_iter().flatten() {
            if is_link(v) {
                let src = v[0].as_str().unwrap_or_default();
                let idx = v[1].as_u64().map(|i| i as usize);
                let val = sigs
                    .get(src)
                    .and_then(|s| self.caches.outputs.get(s))
                    .zip(idx)
                    .and_then(|(outs, i)| outs.get(i).cloned())
                    .unwrap_or(Val::Missing);
                out.insert(name.clone(), val);
            } else if info.input(class, name).is_some() {
                out.insert(name.clone(), Val::Literal(v.clone()));
            }
        }
        for (name, kind) in hidden_inputs(info, class) {
            let v = match kind.as_str() {
                "PROMPT" => Val::Literal(item.prompt.clone()),
                "EXTRA_PNGINFO" => Val::Literal(
                    item.extra_data
                        .get("extra_pnginfo")
                        .cloned()
                        .unwrap_or(Value::Null),
                ),
                "UNIQUE_ID" => Val::Literal(id.into()),
                _ => continue,
            };
            out.insert(name, v);
        }
        out
    }
}

fn hidden_inputs(info: &ObjectInfo, class: &str) -> Vec<(String, String)> {
    info.class(class)
        .and_then(|c| c.get("input"))
        .and_then(|i| i.get("hidden"))
        .and_then(Value::as_object)
        .map(|h| {
            h.iter()
                .filter_map(|(k, v)| {
                    let kind = v.as_str().or_else(|| v.as_array()?.first()?.as_str())?;
                    Some((k.clone(), kind.to_string()))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn strings(v: &[String]) -> Value {
    Value::Array(v.iter().cloned().map(Value::String).collect())
}

/// Lets nodes read uploaded files without holding the lock across awaits.
pub(crate) fn read_file(shared: &Shared, dir: Dir, rel: &str) -> Option<bytes::Bytes> {
    shared.lock().files.get(dir, rel).map(|f| f.bytes.clone())
}
