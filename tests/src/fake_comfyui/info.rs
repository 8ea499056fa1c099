//! Read-only view of the `/object_info` fixture: everything the fake needs to know about a
//! node class (inputs, output types, whether it is an output node) comes from there, so the
//! fake accepts exactly the workflows the recorded server accepted.

use serde_json::{Map, Value};
use std::sync::Arc;

/// Where an input is declared (`input.required`, `input.optional`, `input.hidden`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Category {
    Required,
    Optional,
    Hidden,
}

/// One declared input: `[type, {opts}]` split up.
#[derive(Clone, Debug)]
pub struct InputSpec {
    pub category: Category,
    /// A type name such as `"INT"` or a list of combo choices.
    pub ty: Value,
    /// The options dict (`{}` when the spec has none), as ComfyUI's `get_input_info` returns it.
    pub extra: Value,
}

impl InputSpec {
    /// `[type, extra]`, the `input_config` of validation errors.
    pub fn config(&self) -> Value {
        Value::Array(vec![self.ty.clone(), self.extra.clone()])
    }

    /// The type as a plain string (`None` for V1 combo lists).
    pub fn ty_str(&self) -> Option<&str> {
        self.ty.as_str()
    }
}

#[derive(Clone, Debug)]
pub struct ObjectInfo {
    root: Arc<Value>,
}

impl ObjectInfo {
    pub fn new(root: Value) -> Self {
        let root = if root.is_object() {
            root
        } else {
            Value::Object(Map::new())
        };
        ObjectInfo {
            root: Arc::new(root),
        }
    }

    pub fn root(&self) -> &Value {
        &self.root
    }

    pub fn class(&self, name: &str) -> Option<&Map<String, Value>> {
        self.root.get(name).and_then(Value::as_object)
    }

    pub fn has_class(&self, name: &str) -> bool {
        self.class(name).is_some()
    }

    pub fn is_output_node(&self, class: &str) -> bool {
        self.class(class)
            .and_then(|c| c.get("output_node"))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    /// `RETURN_TYPES` (the `output` list).
    pub fn output_types(&self, class: &str) -> Vec<Value> {
        self.class(class)
            .and_then(|c| c.get("output"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    }

    fn section<'a>(&'a self, class: &str, key: &str) -> Option<&'a Map<String, Value>> {
        self.class(class)?.get("input")?.get(key)?.as_object()
    }

    /// Names of required then optional inputs. ComfyUI iterates a Python `set` here (random
    /// order per process); declaration order is the deterministic stand-in.
    pub fn valid_inputs(&self, class: &str) -> Vec<String> {
        let mut out = Vec::new();
        for key in ["required", "optional"] {
            let ordered = self
                .class(class)
                .and_then(|c| c.get("input_order"))
                .and_then(|o| o.get(key))
                .and_then(Value::as_array);
            match (ordered, self.section(class, key)) {
                (Some(names), Some(sec)) => {
                    for n in names.iter().filter_map(Value::as_str) {
                        if sec.contains_key(n) && !out.iter().any(|x| x == n) {
                            out.push(n.to_string());
                        }
                    }
                    for n in sec.keys() {
                        if !out.iter().any(|x| x == n) {
                            out.push(n.clone());
                        }
                    }
                }
                (None, Some(sec)) => {
                    for n in sec.keys() {
                        if !out.iter().any(|x| x == n) {
                            out.push(n.clone());
                        }
                    }
                }
                _ => {}
            }
        }
        out
    }

    /// `get_input_info`: looks in required, then optional, then hidden.
    pub fn input(&self, class: &str, name: &str) -> Option<InputSpec> {
        for (key, category) in [
            ("required", Category::Required),
            ("optional", Category::Optional),
            ("hidden", Category::Hidden),
        ] {
            if let Some(spec) = self.section(class, key).and_then(|s| s.get(name)) {
                let (ty, extra) = match spec {
                    Value::Array(a) => (
                        a.first().cloned().unwrap_or(Value::Null),
                        a.get(1)
                            .cloned()
                            .unwrap_or_else(|| Value::Object(Map::new())),
                    ),
                    // hidden inputs are plain strings such as "UNIQUE_ID"
                    other => (other.clone(), Value::Object(Map::new())),
                };
                return Some(InputSpec {
                    category,
                    ty,
                    extra,
                });
            }
        }
        None
    }

    /// Nodes with a `UNIQUE_ID` hidden input get their node id in the cache signature.
    pub fn has_unique_id_input(&self, class: &str) -> bool {
        self.section(class, "hidden")
            .map(|h| {
                h.values().any(|v| {
                    v.as_str() == Some("UNIQUE_ID")
                        || v.as_array().and_then(|a| a.first()).and_then(Value::as_str)
                            == Some("UNIQUE_ID")
                })
            })
            .unwrap_or(false)
    }

    /// The choices of a combo input, in either the V1 (`[[choices], {...}]`) or the V3
    /// (`["COMBO", {"options": [...]}]`) shape.
    pub fn combo_options(&self, class: &str, name: &str) -> Option<Vec<Value>> {
        let spec = self.input(class, name)?;
        match &spec.ty {
            Value::Array(choices) => Some(choices.clone()),
            Value::String(s) if s == "COMBO" => {
                spec.extra.get("options").and_then(Value::as_array).cloned()
            }
            _ => None,
        }
    }

    /// String choices of a combo input, or an empty list.
    pub fn combo_strings(&self, class: &str, name: &str) -> Vec<String> {
        self.combo_options(class, name)
            .unwrap_or_default()
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect()
    }
}
