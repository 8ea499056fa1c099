//! `POST /prompt` validation, modelled on ComfyUI's `validate_prompt` / `validate_inputs`:
//! same error types, messages, `extra_info` shapes, `node_errors` bookkeeping and in-place
//! coercion of literal values. Python exceptions raised while validating become
//! `exception_during_(inner_)validation` entries exactly where the real server reports them.

use super::info::{Category, InputSpec, ObjectInfo};
use super::pyjson::{as_num, obj, py_eq, py_repr, py_str, str_repr, truthy, type_name};
use indexmap::IndexMap;
use serde_json::{Map, Value};

/// Python's recursion limit turns deep (or cyclic) graphs into a `RecursionError`; this is the
/// fake's equivalent depth.
const MAX_DEPTH: usize = 900;

/// The request itself makes the real server raise (an aiohttp 500), e.g. a non-dict prompt.
#[derive(Debug)]
pub struct ServerError;

#[derive(Debug)]
pub struct Outcome {
    pub ok: bool,
    /// The top-level `error` object when `ok` is false.
    pub error: Value,
    /// Output nodes that passed, in prompt order.
    pub good_outputs: Vec<String>,
    pub node_errors: Value,
}

/// A Python exception raised during validation.
#[derive(Debug, Clone)]
struct PyExc {
    ty: String,
    msg: String,
}

impl PyExc {
    fn new(ty: &str, msg: impl Into<String>) -> Self {
        PyExc {
            ty: ty.to_string(),
            msg: msg.into(),
        }
    }

    fn traceback(&self) -> Value {
        // Shape only: a list of formatted frames, as `traceback.format_tb` gives.
        Value::Array(vec![Value::String(
            "  File \"<fake-comfyui>/execution.py\", line 1, in validate_inputs\n".to_string(),
        )])
    }
}

fn top_error(ty: &str, message: &str, details: &str) -> Value {
    obj([
        ("type", ty.into()),
        ("message", message.into()),
        ("details", details.into()),
        ("extra_info", Value::Object(Map::new())),
    ])
}

fn early_fail(error: Value) -> Outcome {
    Outcome {
        ok: false,
        error,
        good_outputs: Vec::new(),
        node_errors: Value::Object(Map::new()),
    }
}

/// Validates (and coerces, in place) `prompt`. `file_exists` answers LoadImage's check for an
/// (optionally annotated) input file name.
pub fn validate_prompt(
    prompt: &mut Map<String, Value>,
    partial: Option<&Value>,
    info: &ObjectInfo,
    file_exists: &dyn Fn(&str) -> bool,
) -> Result<Outcome, ServerError> {
    let mut outputs: Vec<String> = Vec::new();
    for (x, node) in prompt.iter() {
        let class_type = match node {
            Value::Object(m) => match m.get("class_type") {
                Some(c) => c,
                None => return Ok(early_fail(missing_class(x))),
            },
            // `'class_type' not in node` on a str/list is a membership test; a hit then fails
            // on `node['class_type']` (TypeError -> 500), a miss reports the missing property.
            Value::String(s) if !s.contains("class_type") => {
                return Ok(early_fail(missing_class(x)))
            }
            Value::Array(a) if !a.iter().any(|v| v.as_str() == Some("class_type")) => {
                return Ok(early_fail(missing_class(x)))
            }
            _ => return Err(ServerError),
        };
        let known = match class_type {
            Value::String(s) => info.has_class(s),
            Value::Array(_) | Value::Object(_) => return Err(ServerError), // unhashable
            _ => false,
        };
        if !known {
            return Ok(early_fail(top_error(
                "invalid_prompt",
                &format!(
                    "Cannot execute because node {} does not exist.",
                    py_str(class_type)
                ),
                &format!("Node ID '#{}'", x),
            )));
        }
        let class = class_type.as_str().unwrap_or_default();
        if info.is_output_node(class) && in_partial(partial, x)? && !outputs.contains(x) {
            outputs.push(x.clone());
        }
    }
    if outputs.is_empty() {
        return Ok(early_fail(top_error(
            "prompt_no_outputs",
            "Prompt has no outputs",
            "",
        )));
    }

    let mut v = Validator {
        prompt,
        info,
        file_exists,
        validated: IndexMap::new(),
    };
    let mut good = Vec::new();
    let mut failed: Vec<Vec<Value>> = Vec::new();
    let mut node_errors: Map<String, Value> = Map::new();
    for o in &outputs {
        let (valid, reasons) = match v.validate_inputs(o, 0) {
            Ok(ok) => (
                ok,
                v.validated.get(o).map(|r| r.1.clone()).unwrap_or_default(),
            ),
            Err(exc) => {
                let reasons = vec![obj([
                    ("type", "exception_during_validation".into()),
                    ("message", "Exception when validating node".into()),
                    ("details", exc.msg.clone().into()),
                    (
                        "extra_info",
                        obj([
                            ("exception_type", exc.ty.clone().into()),
                            ("traceback", exc.traceback()),
                        ]),
                    ),
                ])];
                v.validated.insert(o.clone(), (false, reasons.clone()));
                (false, reasons)
            }
        };
        if valid {
            good.push(o.clone());
            continue;
        }
        failed.push(reasons);
        // Like the real server: every invalid node with reasons validated so far gets this
        // output appended, even when it is not upstream of it.
        for (node_id, (ok, reasons)) in &v.validated {
            if *ok || reasons.is_empty() {
                continue;
            }
            let entry = node_errors.entry(node_id.clone()).or_insert_with(|| {
                let class_type = v
                    .prompt
                    .get(node_id)
                    .and_then(|n| n.get("class_type"))
                    .cloned()
                    .unwrap_or(Value::Null);
                obj([
                    ("errors", Value::Array(reasons.clone())),
                    ("dependent_outputs", Value::Array(Vec::new())),
                    ("class_type", class_type),
                ])
            });
            if let Some(Value::Array(deps)) = entry.get_mut("dependent_outputs") {
                deps.push(Value::String(o.clone()));
            }
        }
    }

    if good.is_empty() {
        let details: Vec<String> = failed
            .iter()
            .flatten()
            .map(|e| {
                format!(
                    "{}: {}",
                    e.get("message").map(py_str).unwrap_or_default(),
                    e.get("details").map(py_str).unwrap_or_default()
                )
            })
            .collect();
        return Ok(Outcome {
            ok: false,
            error: top_error(
                "prompt_outputs_failed_validation",
                "Prompt outputs failed validation",
                &details.join("\n"),
            ),
            good_outputs: Vec::new(),
            node_errors: Value::Object(node_errors),
        });
    }
    Ok(Outcome {
        ok: true,
        error: Value::Null,
        good_outputs: good,
        node_errors: Value::Object(node_errors),
    })
}

fn missing_class(x: &str) -> Value {
    top_error(
        "invalid_prompt",
        "Cannot execute because a node is missing the class_type property.",
        &format!("Node ID '#{}'", x),
    )
}

/// `x in partial_execution_targets` with Python semantics (None means "no filter").
fn in_partial(partial: Option<&Value>, x: &str) -> Result<bool, ServerError> {
    match partial {
        None | Some(Value::Null) => Ok(true),
        Some(Value::Array(a)) => Ok(a.iter().any(|v| v.as_str() == Some(x))),
        Some(Value::String(s)) => Ok(s.contains(x)),
        Some(Value::Object(m)) => Ok(m.contains_key(x)),
        Some(_) => Err(ServerError),
    }
}

/// Nodes whose `VALIDATE_INPUTS(image)` checks that the file exists (and which therefore skip
/// the combo-list check for `image`).
fn has_image_validator(class: &str) -> bool {
    matches!(class, "LoadImage" | "LoadImageMask" | "LoadImageOutput")
}

/// ComfyUI's `graph_utils.is_link`.
pub fn is_link(v: &Value) -> bool {
    match v {
        Value::Array(a) => a.len() == 2 && a[0].is_string() && a[1].is_number(),
        _ => false,
    }
}

/// `validate_node_input`: comma-separated unions overlap; `*` (AnyType) matches anything.
pub fn types_match(received: &Value, input: &Value) -> bool {
    if received.as_str() == Some("*") || input.as_str() == Some("*") || received == input {
        return true;
    }
    match (received.as_str(), input.as_str()) {
        (Some(r), Some(i)) => {
            let rs: Vec<&str> = r.split(',').map(str::trim).collect();
            i.split(',').map(str::trim).any(|t| rs.contains(&t))
        }
        _ => false,
    }
}

struct Validator<'a> {
    prompt: &'a mut Map<String, Value>,
    info: &'a ObjectInfo,
    file_exists: &'a dyn Fn(&str) -> bool,
    validated: IndexMap<String, (bool, Vec<Value>)>,
}

impl Validator<'_> {
    fn set_input(&mut self, id: &str, name: &str, v: Value) {
        if let Some(Value::Object(inputs)) = self
            .prompt
            .get_mut(id)
            .and_then(|n| n.as_object_mut())
            .and_then(|n| n.get_mut("inputs"))
        {
            inputs.insert(name.to_string(), v);
        }
    }

    fn validate_inputs(&mut self, id: &str, depth: usize) -> Result<bool, PyExc> {
        if let Some((ok, _)) = self.validated.get(id) {
            return Ok(*ok);
        }
        if depth > MAX_DEPTH {
            return Err(PyExc::new(
                "RecursionError",
                "maximum recursion depth exceeded",
            ));
        }
        let node = self.prompt.get(id).cloned().unwrap_or(Value::Null);
        let class = node
            .get("class_type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let inputs = match node.get("inputs") {
            Some(Value::Object(m)) => m.clone(),
            Some(_) => Map::new(),
            None => return Err(PyExc::new("KeyError", "'inputs'")),
        };
        let image_validator = has_image_validator(&class);
        let mut errors: Vec<Value> = Vec::new();
        let mut valid = true;

        for x in self.info.valid_inputs(&class) {
            let Some(spec) = self.info.input(&class, &x) else {
                continue;
            };
            let Some(val) = inputs.get(&x) else {
                if spec.category == Category::Required {
                    errors.push(obj([
                        ("type", "required_input_missing".into()),
                        ("message", "Required input is missing".into()),
                        ("details", x.clone().into()),
                        ("extra_info", obj([("input_name", x.clone().into())])),
                    ]));
                }
                continue;
            };
            if let Value::Array(link) = val {
                if link.len() != 2 {
                    errors.push(obj([
                        ("type", "bad_linked_input".into()),
                        (
                            "message",
                            "Bad linked input, must be a length-2 list of [node_id, slot_index]"
                                .into(),
                        ),
                        ("details", x.clone().into()),
                        (
                            "extra_info",
                            obj([
                                ("input_name", x.clone().into()),
                                ("input_config", spec.config()),
                                ("received_value", val.clone()),
                            ]),
                        ),
                    ]));
                    continue;
                }
                let o_id = self.linked_node(&link[0])?;
                let o_class = self
                    .prompt
                    .get(&o_id)
                    .and_then(|n| n.get("class_type"))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let received = index_return_types(&self.info.output_types(&o_class), &link[1])?;
                if !types_match(&received, &spec.ty) {
                    errors.push(obj([
                        ("type", "return_type_mismatch".into()),
                        (
                            "message",
                            "Return type mismatch between linked nodes".into(),
                        ),
                        (
                            "details",
                            format!(
                                "{}, received_type({}) mismatch input_type({})",
                                x,
                                py_str(&received),
                                py_str(&spec.ty)
                            )
                            .into(),
                        ),
                        (
                            "extra_info",
                            obj([
                                ("input_name", x.clone().into()),
                                ("input_config", spec.config()),
                                ("received_type", received.clone()),
                                ("linked_node", val.clone()),
                            ]),
                        ),
                    ]));
                    continue;
                }
                match self.validate_inputs(&o_id, depth + 1) {
                    Ok(true) => {}
                    Ok(false) => valid = false,
                    Err(exc) => {
                        valid = false;
                        let reason = obj([
                            ("type", "exception_during_inner_validation".into()),
                            ("message", "Exception when validating inner node".into()),
                            ("details", exc.msg.clone().into()),
                            (
                                "extra_info",
                                obj([
                                    ("input_name", x.clone().into()),
                                    ("input_config", spec.config()),
                                    ("exception_message", exc.msg.clone().into()),
                                    ("exception_type", exc.ty.clone().into()),
                                    ("traceback", exc.traceback()),
                                    ("linked_node", val.clone()),
                                ]),
                            ),
                        ]);
                        self.validated.insert(o_id, (false, vec![reason]));
                    }
                }
                continue;
            }

            // A literal value.
            let mut val = val.clone();
            if let Value::Object(m) = &val {
                if let Some(inner) = m.get("__value__") {
                    val = inner.clone();
                    self.set_input(id, &x, val.clone());
                }
            }
            let converted = match spec.ty_str() {
                Some("INT") => Some(py_int(&val)),
                Some("FLOAT") => Some(py_float(&val)),
                Some("STRING") => Some(Ok(Value::String(py_str(&val)))),
                Some("BOOLEAN") => Some(Ok(Value::Bool(truthy(&val)))),
                _ => None,
            };
            match converted {
                Some(Ok(c)) => {
                    val = c;
                    self.set_input(id, &x, val.clone());
                }
                Some(Err(msg)) => {
                    errors.push(obj([
                        ("type", "invalid_input_type".into()),
                        (
                            "message",
                            format!(
                                "Failed to convert an input value to a {} value",
                                py_str(&spec.ty)
                            )
                            .into(),
                        ),
                        (
                            "details",
                            format!("{}, {}, {}", x, py_str(&val), msg).into(),
                        ),
                        (
                            "extra_info",
                            obj([
                                ("input_name", x.clone().into()),
                                ("input_config", spec.config()),
                                ("received_value", val.clone()),
                                ("exception_message", msg.into()),
                            ]),
                        ),
                    ]));
                    continue;
                }
                None => {}
            }
            if image_validator && x == "image" {
                continue; // VALIDATE_INPUTS takes over the checks of this input
            }
            if let Some(e) = range_error(&x, &val, &spec) {
                errors.push(e);
                continue;
            }
            if let Value::Array(choices) = &spec.ty {
                if !choices.iter().any(|c| py_eq(&val, c)) {
                    let (list_info, config) = if choices.len() > 20 {
                        (format!("(list of length {})", choices.len()), Value::Null)
                    } else {
                        (py_repr(&spec.ty), spec.config())
                    };
                    errors.push(obj([
                        ("type", "value_not_in_list".into()),
                        ("message", "Value not in list".into()),
                        (
                            "details",
                            format!("{}: '{}' not in {}", x, py_str(&val), list_info).into(),
                        ),
                        (
                            "extra_info",
                            obj([
                                ("input_name", x.clone().into()),
                                ("input_config", config),
                                ("received_value", val.clone()),
                            ]),
                        ),
                    ]));
                    continue;
                }
            }
        }

        if image_validator {
            if let Some(e) = self.check_image_file(id, &class)? {
                errors.push(e);
            }
        }

        let ok = errors.is_empty() && valid;
        self.validated.insert(id.to_string(), (ok, errors));
        Ok(ok)
    }

    /// `prompt[val[0]]`: the link's source must be a key of the prompt.
    fn linked_node(&self, src: &Value) -> Result<String, PyExc> {
        match src {
            Value::Array(_) | Value::Object(_) => Err(PyExc::new(
                "TypeError",
                format!("unhashable type: '{}'", type_name(src)),
            )),
            Value::String(s) if self.prompt.contains_key(s) => Ok(s.clone()),
            other => Err(PyExc::new("KeyError", py_repr(other))),
        }
    }

    /// LoadImage's `VALIDATE_INPUTS(image)`: the file must exist in input/ (or the annotated dir).
    fn check_image_file(&self, id: &str, class: &str) -> Result<Option<Value>, PyExc> {
        let inputs = self
            .prompt
            .get(id)
            .and_then(|n| n.get("inputs"))
            .and_then(Value::as_object);
        let Some(raw) = inputs.and_then(|m| m.get("image")) else {
            return Err(PyExc::new(
                "TypeError",
                format!(
                    "{}.VALIDATE_INPUTS() missing 1 required positional argument: 'image'",
                    class
                ),
            ));
        };
        // Links are not resolved at validation time: the validator sees None.
        let image = if is_link(raw) { &Value::Null } else { raw };
        let Some(name) = image.as_str() else {
            return Err(PyExc::new(
                "AttributeError",
                format!("'{}' object has no attribute 'endswith'", type_name(image)),
            ));
        };
        if (self.file_exists)(name) {
            return Ok(None);
        }
        Ok(Some(obj([
            ("type", "custom_validation_failed".into()),
            ("message", "Custom validation failed for node".into()),
            (
                "details",
                format!("image - Invalid image file: {}", name).into(),
            ),
            ("extra_info", obj([("input_name", "image".into())])),
        ])))
    }
}

/// `RETURN_TYPES[val[1]]` with Python indexing rules.
fn index_return_types(types: &[Value], idx: &Value) -> Result<Value, PyExc> {
    let i: i64 = match idx {
        Value::Bool(b) => *b as i64,
        Value::Number(n) if n.is_i64() || n.is_u64() => n.as_i64().unwrap_or(i64::MAX),
        other => {
            return Err(PyExc::new(
                "TypeError",
                format!(
                    "tuple indices must be integers or slices, not {}",
                    type_name(other)
                ),
            ))
        }
    };
    let len = types.len() as i64;
    let pos = if i < 0 { i + len } else { i };
    if pos < 0 || pos >= len {
        return Err(PyExc::new("IndexError", "tuple index out of range"));
    }
    Ok(types[pos as usize].clone())
}

fn range_error(x: &str, val: &Value, spec: &InputSpec) -> Option<Value> {
    let v = as_num(val)?;
    let check = |key: &str, bad: &dyn Fn(f64, f64) -> bool, ty: &str, word: &str| {
        let limit = spec.extra.get(key)?;
        let l = as_num(limit)?;
        if !bad(v, l) {
            return None;
        }
        Some(obj([
            ("type", ty.into()),
            (
                "message",
                format!("Value {} {} {}", py_str(val), word, py_str(limit)).into(),
            ),
            ("details", x.into()),
            (
                "extra_info",
                obj([
                    ("input_name", x.into()),
                    ("input_config", spec.config()),
                    ("received_value", val.clone()),
                ]),
            ),
        ]))
    };
    check(
        "min",
        &|v, l| v < l,
        "value_smaller_than_min",
        "smaller than min of",
    )
    .or_else(|| {
        check(
            "max",
            &|v, l| v > l,
            "value_bigger_than_max",
            "bigger than max of",
        )
    })
}

fn int_value(i: i128) -> Value {
    if let Ok(v) = i64::try_from(i) {
        Value::from(v)
    } else if let Ok(v) = u64::try_from(i) {
        Value::from(v)
    } else {
        super::pyjson::float_value(i as f64)
    }
}

/// Python `int(x)` on a JSON-decoded value.
pub fn py_int(v: &Value) -> Result<Value, String> {
    match v {
        Value::Bool(b) => Ok(Value::from(*b as i64)),
        Value::Number(n) if n.is_i64() || n.is_u64() => Ok(v.clone()),
        Value::Number(n) => {
            let f = n.as_f64().unwrap_or(0.0);
            if f.is_nan() {
                Err("cannot convert float NaN to integer".into())
            } else if f.is_infinite() {
                Err("cannot convert float infinity to integer".into())
            } else {
                Ok(int_value(f.trunc() as i128))
            }
        }
        Value::String(s) => parse_int_literal(s)
            .map(int_value)
            .ok_or_else(|| format!("invalid literal for int() with base 10: {}", str_repr(s))),
        other => Err(format!(
            "int() argument must be a string, a bytes-like object or a real number, not '{}'",
            type_name(other)
        )),
    }
}

/// Python `float(x)` on a JSON-decoded value. Non-finite results are refused because JSON
/// cannot carry them (the real server would store `NaN`/`Infinity`).
pub fn py_float(v: &Value) -> Result<Value, String> {
    let f = match v {
        Value::Bool(b) => *b as i64 as f64,
        Value::Number(n) => n.as_f64().unwrap_or(0.0),
        Value::String(s) => parse_float_literal(s)
            .filter(|f| f.is_finite())
            .ok_or_else(|| format!("could not convert string to float: {}", str_repr(s)))?,
        other => {
            return Err(format!(
                "float() argument must be a string or a real number, not '{}'",
                type_name(other)
            ))
        }
    };
    Ok(super::pyjson::float_value(f))
}

/// Removes Python's digit-grouping underscores (only valid between two digits).
fn strip_underscores(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    for (i, &c) in b.iter().enumerate() {
        if c == b'_' {
            let ok =
                i > 0 && i + 1 < b.len() && b[i - 1].is_ascii_digit() && b[i + 1].is_ascii_digit();
            if !ok {
                return None;
            }
        } else {
            out.push(c as char);
        }
    }
    Some(out)
}

fn parse_int_literal(s: &str) -> Option<i128> {
    let t = strip_underscores(s.trim())?;
    let (neg, digits) = match t.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, t.strip_prefix('+').unwrap_or(&t)),
    };
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let mag: i128 = digits.parse().ok()?;
    Some(if neg { -mag } else { mag })
}

fn parse_float_literal(s: &str) -> Option<f64> {
    let t = strip_underscores(s.trim())?;
    let body = t.trim_start_matches(['+', '-']);
    let plain = !body.is_empty()
        && body
            .bytes()
            .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'+' | b'-'));
    let word = matches!(
        body.to_ascii_lowercase().as_str(),
        "inf" | "infinity" | "nan"
    );
    if !(plain || word) {
        return None;
    }
    t.parse::<f64>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn int_conversion_messages() {
        assert_eq!(
            py_int(&json!("abc")).unwrap_err(),
            "invalid literal for int() with base 10: 'abc'"
        );
        assert_eq!(py_int(&json!(" 42 ")).unwrap(), json!(42));
        assert_eq!(py_int(&json!(3.9)).unwrap(), json!(3));
        assert_eq!(py_float(&json!(30)).unwrap(), json!(30.0));
        assert!(py_float(&json!("1_000.5")).is_ok());
        assert!(py_float(&json!("x")).is_err());
    }
}
