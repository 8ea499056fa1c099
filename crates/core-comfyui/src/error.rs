//! Errors of the ComfyUI client. Decode failures keep the raw body so a log shows what the
//! server really said.

use std::fmt;
use std::time::Duration;

use serde_json::Value;

/// How much of a body goes into an error message; the full body stays in the error value.
const BODY_SNIPPET_CHARS: usize = 300;

fn snippet(body: &str) -> String {
    let mut s: String = body.chars().take(BODY_SNIPPET_CHARS).collect();
    if body.chars().nth(BODY_SNIPPET_CHARS).is_some() {
        s.push('…');
    }
    if s.is_empty() {
        s.push_str("(empty body)");
    }
    s
}

/// reqwest's own message hides the cause ("connection refused"); show the innermost one.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// Everything that can go wrong talking to one ComfyUI server.
#[derive(Debug, thiserror::Error)]
pub enum ComfyError {
    #[error("invalid ComfyUI URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("could not connect to ComfyUI for {endpoint}: {}", root_cause(source))]
    Connect {
        endpoint: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("ComfyUI did not answer {endpoint} within {after:?}")]
    Timeout { endpoint: String, after: Duration },
    #[error("ComfyUI request {endpoint} failed: {source}")]
    Http {
        endpoint: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("ComfyUI answered {status} to {endpoint}: {}", snippet(body))]
    Status {
        endpoint: String,
        status: u16,
        body: String,
    },
    #[error(
        "could not decode ComfyUI's answer to {endpoint} ({source}); body: {}",
        snippet(body)
    )]
    Decode {
        endpoint: String,
        body: String,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    PromptRejected(Box<PromptRejection>),
    #[error("{what} is larger than the limit of {limit} bytes")]
    TooLarge { what: String, limit: u64 },
    #[error("ComfyUI's WebSocket is not connected after {waited:?}: {reason}")]
    NotConnected { waited: Duration, reason: String },
    #[error("the ComfyUI client has been shut down")]
    Closed,
    #[error("local IO while {context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl From<PromptRejection> for ComfyError {
    fn from(r: PromptRejection) -> Self {
        ComfyError::PromptRejected(Box::new(r))
    }
}

impl ComfyError {
    /// Whether retrying the same idempotent request may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            ComfyError::Connect { .. } | ComfyError::Timeout { .. } => true,
            ComfyError::Http { source, .. } => !source.is_builder() && !source.is_redirect(),
            ComfyError::Status { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }
}

/// ComfyUI refused a prompt (`POST /prompt` answered 400).
#[derive(Debug, Clone)]
pub struct PromptRejection {
    /// `error.type`, e.g. `prompt_outputs_failed_validation`.
    pub kind: String,
    pub message: String,
    pub details: String,
    /// One entry per failing input, in a form a person can read.
    pub problems: Vec<NodeProblem>,
    /// The full body as sent, for logs.
    pub raw: Value,
}

impl std::error::Error for PromptRejection {}

impl fmt::Display for PromptRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.problems.is_empty() {
            write!(f, "ComfyUI refused the workflow: {}", self.message.trim())?;
            let details = self.details.trim();
            if !details.is_empty() && details != self.message.trim() {
                write!(f, " ({details})")?;
            }
            Ok(())
        } else {
            let lines: Vec<String> = self.problems.iter().map(|p| p.to_string()).collect();
            write!(f, "ComfyUI refused the workflow: {}", lines.join("; "))
        }
    }
}

/// One validation failure on one node input, from `node_errors`.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeProblem {
    pub node_id: String,
    pub class_type: String,
    /// The input concerned, when ComfyUI names one.
    pub input: Option<String>,
    /// ComfyUI's error type, e.g. `value_smaller_than_min`.
    pub kind: String,
    /// The sentence after "node N (Class): ".
    pub text: String,
}

impl fmt::Display for NodeProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "node {} ({}): {}",
            self.node_id, self.class_type, self.text
        )
    }
}

impl PromptRejection {
    /// Builds the rejection from a 400 body `{error, node_errors}`.
    pub fn from_body(raw: Value) -> Self {
        let err = raw.get("error");
        let field = |k: &str| {
            err.and_then(|e| e.get(k))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        // Some proxies and old servers send `error` as a plain string.
        let (kind, message) = match err {
            Some(Value::String(s)) => ("error".to_string(), s.clone()),
            _ => (field("type"), field("message")),
        };
        let problems = raw
            .get("node_errors")
            .map(node_problems)
            .unwrap_or_default();
        PromptRejection {
            kind,
            message,
            details: field("details"),
            problems,
            raw,
        }
    }
}

/// Turns a `node_errors` map into readable problems.
pub fn node_problems(node_errors: &Value) -> Vec<NodeProblem> {
    let Some(map) = node_errors.as_object() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (node_id, entry) in map {
        let class_type = entry
            .get("class_type")
            .and_then(Value::as_str)
            .unwrap_or("unknown class")
            .to_string();
        let errors = entry
            .get("errors")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for e in errors {
            let (input, kind, text) = describe_input_error(&e);
            out.push(NodeProblem {
                node_id: node_id.clone(),
                class_type: class_type.clone(),
                input,
                kind,
                text,
            });
        }
    }
    out
}

fn show_value(v: &Value) -> String {
    match v {
        Value::String(s) => format!("'{s}'"),
        other => other.to_string(),
    }
}

/// The bound named `key` (`min`/`max`) from `extra_info.input_config = [type, {opts}]`.
fn config_bound(extra: &Value, key: &str) -> Option<String> {
    extra
        .get("input_config")
        .and_then(|c| c.get(1))
        .and_then(|o| o.get(key))
        .map(|v| v.to_string())
}

/// The trailing number of ComfyUI's "Value 0 smaller than min of 1".
fn bound_from_message(message: &str) -> Option<String> {
    message.rsplit(' ').next().map(str::to_string)
}

fn describe_input_error(e: &Value) -> (Option<String>, String, String) {
    let s = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or_default();
    let kind = s("type").to_string();
    let message = s("message");
    let details = s("details");
    let extra = e.get("extra_info").cloned().unwrap_or(Value::Null);
    let input = extra
        .get("input_name")
        .and_then(Value::as_str)
        .map(str::to_string);
    let name = input.clone().unwrap_or_else(|| details.to_string());
    let received = extra.get("received_value").map(show_value);
    let text = match kind.as_str() {
        "value_smaller_than_min" => {
            let min = config_bound(&extra, "min")
                .or_else(|| bound_from_message(message))
                .unwrap_or_default();
            match received {
                Some(v) => format!("{name} {v} is below the minimum {min}"),
                None => format!("{name} is below the minimum {min}"),
            }
        }
        "value_bigger_than_max" => {
            let max = config_bound(&extra, "max")
                .or_else(|| bound_from_message(message))
                .unwrap_or_default();
            match received {
                Some(v) => format!("{name} {v} is above the maximum {max}"),
                None => format!("{name} is above the maximum {max}"),
            }
        }
        "required_input_missing" => format!("required input {name} is missing"),
        "value_not_in_list" => match received {
            Some(v) => format!("{name} {v} is not one of the values this server offers"),
            None => format!("{name}: {details}"),
        },
        "invalid_input_type" => {
            let wanted = message
                .rsplit(" a ")
                .next()
                .unwrap_or("")
                .replace(" value", "");
            match received {
                Some(v) => format!("{name} {v} is not a valid {wanted}"),
                None => format!("{name}: {details}"),
            }
        }
        "custom_validation_failed" => match details.split_once(" - ") {
            Some((input, why)) => format!("{input}: {why}"),
            None => details.to_string(),
        },
        _ if details.is_empty() => message.to_string(),
        _ => format!("{}: {details}", message.trim_end_matches('.')),
    };
    (input, kind, text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn min_error_reads_like_a_sentence() {
        let body = json!({"error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation", "details": "", "extra_info": {}},
            "node_errors": {"7": {"errors": [{"type": "value_smaller_than_min", "message": "Value 0 smaller than min of 1", "details": "steps",
              "extra_info": {"input_name": "steps", "input_config": ["INT", {"default": 20, "min": 1, "max": 10000}], "received_value": 0}}],
              "dependent_outputs": ["9"], "class_type": "KSampler"}}});
        let r = PromptRejection::from_body(body);
        assert_eq!(r.kind, "prompt_outputs_failed_validation");
        assert_eq!(r.problems.len(), 1);
        assert_eq!(
            r.problems[0].to_string(),
            "node 7 (KSampler): steps 0 is below the minimum 1"
        );
        assert_eq!(
            r.to_string(),
            "ComfyUI refused the workflow: node 7 (KSampler): steps 0 is below the minimum 1"
        );
    }

    #[test]
    fn other_error_kinds() {
        let body = json!({"error": {"type": "x", "message": "m", "details": ""},
        "node_errors": {"1": {"class_type": "EmptyImage", "errors": [
          {"type": "value_bigger_than_max", "message": "Value 999999 bigger than max of 16384", "details": "width", "extra_info": {"input_name": "width", "received_value": 999999}},
          {"type": "required_input_missing", "message": "Required input is missing", "details": "height", "extra_info": {"input_name": "height"}},
          {"type": "invalid_input_type", "message": "Failed to convert an input value to a INT value", "details": "width, abc, invalid literal", "extra_info": {"input_name": "width", "received_value": "abc"}},
          {"type": "value_not_in_list", "message": "Value not in list", "details": "ckpt_name: 'x' not in []", "extra_info": {"input_name": "ckpt_name", "received_value": "x"}},
          {"type": "custom_validation_failed", "message": "Custom validation failed for node", "details": "image - Invalid image file: a.png", "extra_info": {}}
        ]}}});
        let texts: Vec<String> = PromptRejection::from_body(body)
            .problems
            .into_iter()
            .map(|p| p.text)
            .collect();
        assert_eq!(
            texts,
            vec![
                "width 999999 is above the maximum 16384",
                "required input height is missing",
                "width 'abc' is not a valid INT",
                "ckpt_name 'x' is not one of the values this server offers",
                "image: Invalid image file: a.png",
            ]
        );
    }

    #[test]
    fn top_level_only_error() {
        let body = json!({"error": {"type": "invalid_prompt", "message": "Cannot execute because node NoSuchNode does not exist.", "details": "Node ID '#9'", "extra_info": {}}, "node_errors": {}});
        assert_eq!(
            PromptRejection::from_body(body).to_string(),
            "ComfyUI refused the workflow: Cannot execute because node NoSuchNode does not exist. (Node ID '#9')"
        );
    }

    #[test]
    fn snippet_counts_characters() {
        let long = "é".repeat(400);
        let s = snippet(&long);
        assert_eq!(s.chars().count(), BODY_SNIPPET_CHARS + 1);
        assert_eq!(snippet(""), "(empty body)");
    }
}
