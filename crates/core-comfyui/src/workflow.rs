//! API-format workflows: `{node_id: {"class_type", "inputs": {name: literal | [src, slot]}}}`.
//! Values are patched structurally; user text is never spliced into JSON text.

use serde_json::{Map, Value};

/// Why a workflow file cannot be used.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum WorkflowError {
    #[error("the workflow is not valid JSON: {0}")]
    Json(String),
    #[error(
        "this is a UI-format workflow (it has \"nodes\" and \"links\"); in ComfyUI use \
         Workflow → Export (API) (\"Save (API Format)\" in the old menu) and use that file"
    )]
    UiFormat,
    #[error("the workflow must be a JSON object of nodes keyed by id, found {found}")]
    NotAnObject { found: &'static str },
    #[error("the workflow has no nodes")]
    Empty,
    #[error("node {node_id}: {reason}")]
    BadNode { node_id: String, reason: String },
    #[error("node {node_id} does not exist in the workflow")]
    UnknownNode { node_id: String },
    #[error("node {node_id} ({class_type}) input {input} is connected to node {source_node}; only widget inputs can be set")]
    LinkedInput {
        node_id: String,
        class_type: String,
        input: String,
        source_node: String,
    },
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A link is `[source_node_id, output_slot]`.
pub fn as_link(v: &Value) -> Option<(&str, u64)> {
    match v.as_array()?.as_slice() {
        [Value::String(src), Value::Number(slot)] => Some((src, slot.as_u64()?)),
        _ => None,
    }
}

/// A checked API-format graph.
#[derive(Debug, Clone, PartialEq)]
pub struct Workflow {
    nodes: Map<String, Value>,
}

impl Workflow {
    pub fn from_json(text: &str) -> Result<Workflow, WorkflowError> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| WorkflowError::Json(e.to_string()))?;
        Workflow::from_value(value)
    }

    /// Checks the shape: an object of nodes, each with a `class_type` string and an `inputs`
    /// object whose links point at nodes that exist.
    pub fn from_value(value: Value) -> Result<Workflow, WorkflowError> {
        let nodes = match value {
            Value::Object(map) => map,
            other => {
                return Err(WorkflowError::NotAnObject {
                    found: kind_of(&other),
                })
            }
        };
        if nodes.get("nodes").is_some_and(Value::is_array)
            && nodes.get("links").is_some_and(Value::is_array)
        {
            return Err(WorkflowError::UiFormat);
        }
        if nodes.is_empty() {
            return Err(WorkflowError::Empty);
        }
        for (id, node) in &nodes {
            let bad = |reason: String| WorkflowError::BadNode {
                node_id: id.clone(),
                reason,
            };
            let obj = node
                .as_object()
                .ok_or_else(|| bad(format!("must be an object, found {}", kind_of(node))))?;
            match obj.get("class_type") {
                Some(Value::String(c)) if !c.is_empty() => {}
                Some(other) => {
                    return Err(bad(format!(
                        "class_type must be a non-empty string, found {}",
                        kind_of(other)
                    )))
                }
                None => return Err(bad("has no class_type".into())),
            }
            match obj.get("inputs") {
                None => {}
                Some(Value::Object(inputs)) => {
                    for (name, v) in inputs {
                        if let Some((src, _)) = as_link(v) {
                            if !nodes.contains_key(src) {
                                return Err(bad(format!(
                                    "input {name} is connected to node {src}, which does not exist"
                                )));
                            }
                        }
                    }
                }
                Some(other) => {
                    return Err(bad(format!(
                        "inputs must be an object, found {}",
                        kind_of(other)
                    )))
                }
            }
        }
        Ok(Workflow { nodes })
    }

    pub fn node_ids(&self) -> impl Iterator<Item = &str> {
        self.nodes.keys().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn contains(&self, node_id: &str) -> bool {
        self.nodes.contains_key(node_id)
    }

    pub fn class_type(&self, node_id: &str) -> Option<&str> {
        self.nodes.get(node_id)?.get("class_type")?.as_str()
    }

    /// The node's inputs (empty when the node has none).
    pub fn inputs(&self, node_id: &str) -> Option<&Map<String, Value>> {
        static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
        let node = self.nodes.get(node_id)?;
        Some(
            node.get("inputs")
                .and_then(Value::as_object)
                .unwrap_or_else(|| EMPTY.get_or_init(Map::new)),
        )
    }

    pub fn input(&self, node_id: &str, input: &str) -> Option<&Value> {
        self.inputs(node_id)?.get(input)
    }

    /// The node's title from `_meta.title`, when the export kept it.
    pub fn title(&self, node_id: &str) -> Option<&str> {
        self.nodes
            .get(node_id)?
            .get("_meta")?
            .get("title")?
            .as_str()
    }

    /// Sets a widget input. Refuses to overwrite a link, which would cut the graph.
    /// Literal lists are wrapped as `{"__value__": [...]}`, which ComfyUI requires.
    pub fn set_input(
        &mut self,
        node_id: &str,
        input: &str,
        value: Value,
    ) -> Result<(), WorkflowError> {
        let node = self
            .nodes
            .get_mut(node_id)
            .ok_or_else(|| WorkflowError::UnknownNode {
                node_id: node_id.to_string(),
            })?;
        let class_type = node
            .get("class_type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let Value::Object(obj) = node else {
            unreachable!("checked in from_value")
        };
        let inputs = obj
            .entry("inputs")
            .or_insert_with(|| Value::Object(Map::new()));
        let Value::Object(inputs) = inputs else {
            unreachable!("checked in from_value")
        };
        if let Some((src, _)) = inputs.get(input).and_then(as_link) {
            return Err(WorkflowError::LinkedInput {
                node_id: node_id.to_string(),
                class_type,
                input: input.to_string(),
                source_node: src.to_string(),
            });
        }
        let value = match value {
            Value::Array(items) => {
                let mut wrapped = Map::new();
                wrapped.insert("__value__".into(), Value::Array(items));
                Value::Object(wrapped)
            }
            other => other,
        };
        inputs.insert(input.to_string(), value);
        Ok(())
    }

    /// Every `(node_id, input, value)` whose value is a literal (not a link).
    pub fn literals(&self) -> impl Iterator<Item = (&str, &str, &Value)> {
        self.nodes.iter().flat_map(|(id, node)| {
            node.get("inputs")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .filter(|(_, v)| as_link(v).is_none())
                .map(move |(name, v)| (id.as_str(), name.as_str(), v))
        })
    }

    pub fn as_map(&self) -> &Map<String, Value> {
        &self.nodes
    }

    pub fn to_value(&self) -> Value {
        Value::Object(self.nodes.clone())
    }

    pub fn to_json(&self) -> String {
        // Serialising a Map of Values cannot fail.
        serde_json::to_string(&self.nodes).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn basic() -> Workflow {
        Workflow::from_value(json!({
            "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
            "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
            "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "x"}, "_meta": {"title": "Save"}}
        }))
        .unwrap()
    }

    #[test]
    fn patches_structurally() {
        let mut w = basic();
        let evil = "\", \"class_type\": \"Evil\"}, \"9\": {\"x";
        w.set_input("3", "filename_prefix", json!(evil)).unwrap();
        w.set_input("1", "width", json!(128)).unwrap();
        let round = Workflow::from_json(&w.to_json()).unwrap();
        assert_eq!(round.input("3", "filename_prefix"), Some(&json!(evil)));
        assert_eq!(round.len(), 3);
        assert_eq!(round.class_type("3"), Some("SaveImage"));
        assert_eq!(round.input("1", "width"), Some(&json!(128)));
        assert_eq!(round.title("3"), Some("Save"));
    }

    #[test]
    fn refuses_to_cut_links_and_unknown_nodes() {
        let mut w = basic();
        assert!(matches!(
            w.set_input("2", "image", json!("x")),
            Err(WorkflowError::LinkedInput { ref source_node, .. }) if source_node == "1"
        ));
        assert_eq!(
            w.set_input("9", "x", json!(1)),
            Err(WorkflowError::UnknownNode {
                node_id: "9".into()
            })
        );
    }

    #[test]
    fn wraps_literal_lists() {
        let mut w = basic();
        w.set_input("1", "list", json!([1, 2])).unwrap();
        assert_eq!(w.input("1", "list"), Some(&json!({"__value__": [1, 2]})));
        assert_eq!(w.literals().filter(|(n, _, _)| *n == "1").count(), 5);
    }

    #[test]
    fn rejects_what_is_not_an_api_graph() {
        let ui = json!({"last_node_id": 9, "nodes": [], "links": [], "version": 0.4});
        assert_eq!(Workflow::from_value(ui), Err(WorkflowError::UiFormat));
        assert!(WorkflowError::UiFormat
            .to_string()
            .contains("Save (API Format)"));
        assert!(matches!(
            Workflow::from_json("[1,2]"),
            Err(WorkflowError::NotAnObject { found: "an array" })
        ));
        assert!(matches!(
            Workflow::from_json("{"),
            Err(WorkflowError::Json(_))
        ));
        assert_eq!(Workflow::from_json("{}"), Err(WorkflowError::Empty));
        assert!(matches!(
            Workflow::from_value(json!({"1": {"inputs": {}}})),
            Err(WorkflowError::BadNode { reason, .. }) if reason == "has no class_type"
        ));
        assert!(matches!(
            Workflow::from_value(json!({"1": 5})),
            Err(WorkflowError::BadNode { .. })
        ));
        assert!(matches!(
            Workflow::from_value(json!({"1": {"class_type": "A", "inputs": {"x": ["7", 0]}}})),
            Err(WorkflowError::BadNode { reason, .. }) if reason.contains("node 7")
        ));
        assert!(matches!(
            Workflow::from_value(json!({"1": {"class_type": "A", "inputs": []}})),
            Err(WorkflowError::BadNode { .. })
        ));
    }
}
