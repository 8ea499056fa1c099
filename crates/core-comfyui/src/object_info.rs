//! `GET /object_info`: which node classes a server has and what their inputs accept.

use indexmap::IndexMap;
use serde::{Deserialize, Deserializer};
use serde_json::{Number, Value};

/// All node classes of one server, by class name.
pub type ObjectInfo = IndexMap<String, NodeInfo>;

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct NodeInputs {
    #[serde(default, deserialize_with = "null_as_default")]
    pub required: IndexMap<String, Value>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub optional: IndexMap<String, Value>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub hidden: IndexMap<String, Value>,
}

/// Real servers send `null` for some of these (e.g. `display_name` of V3 nodes).
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// One node class. Input specs stay untyped JSON (V3 nodes vary); [`NodeInfo::input`] parses them.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct NodeInfo {
    #[serde(default, deserialize_with = "null_as_default")]
    pub input: NodeInputs,
    /// Output types; combo outputs are lists, hence `Value`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub output: Vec<Value>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub output_node: bool,
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub display_name: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub category: String,
}

/// What one input accepts.
#[derive(Debug, Clone, PartialEq)]
pub enum InputKind {
    Int {
        min: Option<Number>,
        max: Option<Number>,
        step: Option<Number>,
        default: Option<Value>,
    },
    Float {
        min: Option<Number>,
        max: Option<Number>,
        step: Option<Number>,
        default: Option<Value>,
    },
    String {
        multiline: bool,
    },
    Boolean,
    /// A fixed list; model and LoRA files are combos of file names.
    Combo {
        options: Vec<Value>,
        /// `LoadImage`'s image accepts uploads.
        image_upload: bool,
    },
    /// A connection from another node's output of this type (MODEL, IMAGE, ...).
    Link(String),
}

impl InputKind {
    /// Parses `["INT", {opts}]`, `[[choices], {opts}]`, `["COMBO", {"options": [...]}]` or `["IMAGE"]`.
    pub fn parse(spec: &Value) -> Option<InputKind> {
        let first = spec.get(0)?;
        let opts = spec.get(1).cloned().unwrap_or(Value::Null);
        let num = |k: &str| match opts.get(k) {
            Some(Value::Number(n)) => Some(n.clone()),
            _ => None,
        };
        let flag = |k: &str| opts.get(k).and_then(Value::as_bool).unwrap_or(false);
        Some(match first {
            Value::Array(options) => InputKind::Combo {
                options: options.clone(),
                image_upload: flag("image_upload"),
            },
            Value::String(t) => match t.as_str() {
                "INT" => InputKind::Int {
                    min: num("min"),
                    max: num("max"),
                    step: num("step"),
                    default: opts.get("default").cloned(),
                },
                "FLOAT" => InputKind::Float {
                    min: num("min"),
                    max: num("max"),
                    step: num("step"),
                    default: opts.get("default").cloned(),
                },
                "STRING" => InputKind::String {
                    multiline: flag("multiline"),
                },
                "BOOLEAN" => InputKind::Boolean,
                "COMBO" => InputKind::Combo {
                    options: opts
                        .get("options")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default(),
                    image_upload: flag("image_upload"),
                },
                other => InputKind::Link(other.to_string()),
            },
            _ => return None,
        })
    }

    /// Whether a literal value (a widget) can be set on this input, as opposed to a link.
    pub fn is_widget(&self) -> bool {
        !matches!(self, InputKind::Link(_))
    }

    pub fn type_name(&self) -> &str {
        match self {
            InputKind::Int { .. } => "INT",
            InputKind::Float { .. } => "FLOAT",
            InputKind::String { .. } => "STRING",
            InputKind::Boolean => "BOOLEAN",
            InputKind::Combo { .. } => "COMBO",
            InputKind::Link(t) => t,
        }
    }
}

impl NodeInfo {
    /// The parsed spec of a required or optional input.
    pub fn input(&self, name: &str) -> Option<InputKind> {
        self.input
            .required
            .get(name)
            .or_else(|| self.input.optional.get(name))
            .and_then(InputKind::parse)
    }

    /// Names of required and optional inputs, in the server's order.
    pub fn input_names(&self) -> impl Iterator<Item = &str> {
        self.input
            .required
            .keys()
            .chain(self.input.optional.keys())
            .map(String::as_str)
    }

    /// What to show a person: the display name, or the class name.
    pub fn title<'a>(&'a self, class: &'a str) -> &'a str {
        if self.display_name.is_empty() {
            class
        } else {
            &self.display_name
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_every_input_form() {
        let info: NodeInfo = serde_json::from_value(json!({
            "input": {"required": {
                "seed": ["INT", {"default": 0, "min": 0, "max": 18446744073709551615u64}],
                "cfg": ["FLOAT", {"default": 8.0, "min": 0.0, "max": 100.0, "step": 0.1}],
                "sampler_name": [["euler", "ddim"], {}],
                "model": ["MODEL"],
                "text": ["STRING", {"multiline": true}],
                "v3": ["COMBO", {"options": ["a", "b"]}]
            }, "optional": {"flag": ["BOOLEAN", {"default": true}]}},
            "output": ["LATENT"], "output_node": false, "display_name": "KSampler"
        }))
        .unwrap();
        match info.input("seed").unwrap() {
            InputKind::Int { max: Some(m), .. } => assert_eq!(m.as_u64(), Some(u64::MAX)),
            other => panic!("{other:?}"),
        }
        assert!(matches!(info.input("cfg"), Some(InputKind::Float { .. })));
        assert!(
            matches!(info.input("sampler_name"), Some(InputKind::Combo { options, .. }) if options.len() == 2)
        );
        assert_eq!(info.input("model"), Some(InputKind::Link("MODEL".into())));
        assert!(!info.input("model").unwrap().is_widget());
        assert_eq!(
            info.input("text"),
            Some(InputKind::String { multiline: true })
        );
        assert!(
            matches!(info.input("v3"), Some(InputKind::Combo { options, .. }) if options.len() == 2)
        );
        assert_eq!(info.input("flag"), Some(InputKind::Boolean));
        assert!(info.input("nope").is_none());
        assert_eq!(info.input_names().count(), 7);
    }
}
