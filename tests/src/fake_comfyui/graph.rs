//! Graph bookkeeping of the executor: ComfyUI's execution order (`ExecutionList`) and the
//! input-signature keys of its classic cache.

use super::info::ObjectInfo;
use super::nodes;
use super::pyjson;
use super::state::FileStore;
use super::validate::is_link;
use indexmap::IndexMap;
use serde_json::{Map, Value};
use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};

/// Work budget for cache signatures (ancestor visits per job); beyond it nodes get a unique,
/// never-cached signature instead of quadratic work on absurd graphs.
const SIGNATURE_BUDGET: usize = 2_000_000;

pub(crate) fn class_of(prompt: &Map<String, Value>, id: &str) -> String {
    prompt
        .get(id)
        .and_then(|n| n.get("class_type"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn links_of(prompt: &Map<String, Value>, id: &str) -> Vec<(String, Value)> {
    prompt
        .get(id)
        .and_then(|n| n.get("inputs"))
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter(|(_, v)| is_link(v))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// ComfyUI's `ExecutionList`: a topological dissolve in which, among ready nodes, output
/// nodes and async nodes go first, then nodes feeding an output, then nodes two steps from one,
/// else the first ready node in insertion order.
pub(crate) struct ExecList<'a> {
    prompt: &'a Map<String, Value>,
    info: &'a ObjectInfo,
    cached: HashSet<String>,
    pending: IndexMap<String, ()>,
    block_count: HashMap<String, usize>,
    blocking: HashMap<String, IndexMap<String, ()>>,
}

impl<'a> ExecList<'a> {
    pub(crate) fn new(
        prompt: &'a Map<String, Value>,
        info: &'a ObjectInfo,
        cached: HashSet<String>,
    ) -> Self {
        ExecList {
            prompt,
            info,
            cached,
            pending: IndexMap::new(),
            block_count: HashMap::new(),
            blocking: HashMap::new(),
        }
    }

    pub(crate) fn add_node(&mut self, id: &str) {
        let mut stack = vec![id.to_string()];
        let mut links: Vec<(String, String)> = Vec::new();
        while let Some(u) = stack.pop() {
            if self.pending.contains_key(&u) {
                continue;
            }
            self.pending.insert(u.clone(), ());
            self.block_count.insert(u.clone(), 0);
            self.blocking.insert(u.clone(), IndexMap::new());
            for (_, v) in links_of(self.prompt, &u) {
                let from = v[0].as_str().unwrap_or_default().to_string();
                if !self.cached.contains(&from) && self.prompt.contains_key(&from) {
                    stack.push(from.clone());
                    links.push((from, u.clone()));
                }
            }
        }
        for (from, to) in links {
            if self.cached.contains(&from) {
                continue;
            }
            // `from` is already pending here, so add_node would be a no-op.
            let blocked = self.blocking.entry(from).or_default();
            if !blocked.contains_key(&to) {
                blocked.insert(to.clone(), ());
                *self.block_count.entry(to).or_insert(0) += 1;
            }
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    pub(crate) fn first_pending(&self) -> Option<String> {
        self.pending.keys().next().cloned()
    }

    pub(crate) fn class(&self, id: &str) -> String {
        class_of(self.prompt, id)
    }

    pub(crate) fn is_output(&self, id: &str) -> bool {
        self.info.is_output_node(&self.class(id))
    }

    pub(crate) fn is_async(&self, id: &str) -> bool {
        nodes::is_async_class(&self.class(id))
    }

    pub(crate) fn blocked_by(&self, id: &str) -> Vec<String> {
        self.blocking
            .get(id)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    pub(crate) fn stage(&mut self) -> Option<String> {
        let ready: Vec<String> = self
            .pending
            .keys()
            .filter(|id| self.block_count.get(*id).copied().unwrap_or(0) == 0)
            .cloned()
            .collect();
        if ready.is_empty() {
            return None;
        }
        if let Some(id) = ready
            .iter()
            .find(|id| self.is_output(id) || self.is_async(id))
        {
            return Some(id.clone());
        }
        if let Some(id) = ready
            .iter()
            .find(|id| self.blocked_by(id).iter().any(|b| self.is_output(b)))
        {
            return Some(id.clone());
        }
        if let Some(id) = ready.iter().find(|id| {
            self.blocked_by(id)
                .iter()
                .any(|b| self.blocked_by(b).iter().any(|b2| self.is_output(b2)))
        }) {
            return Some(id.clone());
        }
        ready.first().cloned()
    }

    pub(crate) fn complete(&mut self, id: &str) {
        self.pending.shift_remove(id);
        if let Some(blocked) = self.blocking.remove(id) {
            for b in blocked.keys() {
                if let Some(c) = self.block_count.get_mut(b) {
                    *c = c.saturating_sub(1);
                }
            }
        }
    }
}

/// Input-signature cache keys (`CacheKeySetInputSignature`): class, IS_CHANGED, the node id
/// for UNIQUE_ID nodes, sorted inputs with links replaced by ancestor positions, then the
/// same for every ancestor in a deterministic order. Node ids themselves are not part of it,
/// so an identical sub-graph under other ids is still a cache hit.
pub(crate) fn signatures(
    prompt: &Map<String, Value>,
    info: &ObjectInfo,
    files: &FileStore,
) -> IndexMap<String, String> {
    let mut budget = SIGNATURE_BUDGET;
    let mut out = IndexMap::new();
    for id in prompt.keys() {
        let sig = match ordered_ancestry(prompt, id, &mut budget) {
            Some((ancestors, order)) => {
                let mut parts = vec![immediate_signature(prompt, info, files, id, &order)];
                for a in &ancestors {
                    parts.push(immediate_signature(prompt, info, files, a, &order));
                }
                canonical(&Value::Array(parts))
            }
            None => format!("uncacheable-{}", uuid::Uuid::new_v4()),
        };
        out.insert(id.clone(), sig);
    }
    out
}

/// Pre-order walk of the ancestors via inputs sorted by name. `None` when over budget.
fn ordered_ancestry(
    prompt: &Map<String, Value>,
    id: &str,
    budget: &mut usize,
) -> Option<(Vec<String>, HashMap<String, usize>)> {
    let mut ancestors = Vec::new();
    let mut order = HashMap::new();
    let sorted_links = |node: &str| {
        let mut l = links_of(prompt, node);
        l.sort_by(|a, b| a.0.cmp(&b.0));
        l
    };
    let mut stack: Vec<(Vec<(String, Value)>, usize)> = vec![(sorted_links(id), 0)];
    while let Some((links, pos)) = stack.last_mut() {
        if *pos >= links.len() {
            stack.pop();
            continue;
        }
        let anc = links[*pos].1[0].as_str().unwrap_or_default().to_string();
        *pos += 1;
        if order.contains_key(&anc) {
            continue;
        }
        *budget = budget.checked_sub(1)?;
        order.insert(anc.clone(), ancestors.len());
        ancestors.push(anc.clone());
        if prompt.contains_key(&anc) {
            stack.push((sorted_links(&anc), 0));
        }
    }
    Some((ancestors, order))
}

fn immediate_signature(
    prompt: &Map<String, Value>,
    info: &ObjectInfo,
    files: &FileStore,
    id: &str,
    order: &HashMap<String, usize>,
) -> Value {
    let Some(node) = prompt.get(id) else {
        // A missing node makes the signature unique (NaN never equals itself).
        return Value::String(format!("nan-{}", uuid::Uuid::new_v4()));
    };
    let class = node
        .get("class_type")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mut sig = vec![
        Value::String(class.to_string()),
        is_changed(class, node, files),
    ];
    if info.has_unique_id_input(class) {
        sig.push(Value::String(id.to_string()));
    }
    if let Some(inputs) = node.get("inputs").and_then(Value::as_object) {
        let mut keys: Vec<&String> = inputs.keys().collect();
        keys.sort();
        for k in keys {
            let v = &inputs[k];
            let entry = if is_link(v) {
                let src = v[0].as_str().unwrap_or_default();
                Value::Array(vec![
                    "ANCESTOR".into(),
                    order.get(src).copied().unwrap_or(usize::MAX).into(),
                    v[1].clone(),
                ])
            } else {
                v.clone()
            };
            sig.push(Value::Array(vec![Value::String(k.clone()), entry]));
        }
    }
    Value::Array(sig)
}

/// IS_CHANGED of the simulated classes: LoadImage hashes its file, SaveImageWebsocket returns
/// the time (never cached), everything else has none.
fn is_changed(class: &str, node: &Value, files: &FileStore) -> Value {
    match class {
        "LoadImage" | "LoadImageMask" | "LoadImageOutput" => {
            let name = node
                .get("inputs")
                .and_then(|i| i.get("image"))
                .and_then(Value::as_str)
                .unwrap_or_default();
            let hash = FileStore::resolve_annotated(name)
                .and_then(|(dir, rel)| files.get(dir, &rel))
                .map(|f| {
                    let mut h = DefaultHasher::new();
                    f.bytes.hash(&mut h);
                    format!("{:016x}", h.finish())
                })
                .unwrap_or_else(|| "missing".into());
            Value::String(hash)
        }
        "SaveImageWebsocket" => Value::String(uuid::Uuid::new_v4().to_string()),
        _ => Value::Bool(false),
    }
}

/// Order-independent rendering for signatures: sorted object keys, numbers compared the
/// Python way (`1 == 1.0 == True`).
fn canonical(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(&mut out, v);
    out
}

fn write_canonical(out: &mut String, v: &Value) {
    match v {
        Value::Bool(b) => out.push_str(if *b { "1" } else { "0" }),
        Value::Number(n) => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => {
                out.push_str(&(f as i64).to_string())
            }
            _ => out.push_str(&pyjson::number_repr(n)),
        },
        Value::Null => out.push_str("null"),
        Value::String(s) => out.push_str(&pyjson::dumps(&Value::String(s.clone()))),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(out, x);
            }
            out.push(']');
        }
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&pyjson::dumps(&Value::String((*k).clone())));
                out.push(':');
                write_canonical(out, &m[*k]);
            }
            out.push('}');
        }
    }
}
