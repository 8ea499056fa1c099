//! The environment a config is read with, and the `COMFYCORD_*` variables as figment data.

use std::fmt;

use figment::providers::Serialized;
use figment::Figment;

use super::ENV_PREFIX;

/// Names the `COMFYCORD_*` provider in figment's errors ("config key `a.b` (from …)").
const ENV_SOURCE: &str = "`COMFYCORD_` environment variable(s)";

/// The environment variables a config is read with: the process's, or a test's.
#[derive(Clone, Default)]
pub struct Environment {
    vars: Vec<(String, String)>,
}

/// Names only: values may be secrets (`DISCORD_TOKEN`).
impl fmt::Debug for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.vars.iter().map(|(k, _)| k))
            .finish()
    }
}

impl Environment {
    /// The process environment (variables that are not valid UTF-8 are skipped).
    pub fn process() -> Environment {
        Environment {
            vars: std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
        }
    }

    /// No variables at all.
    pub fn empty() -> Environment {
        Environment::default()
    }

    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Environment {
        Environment {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.trim().is_empty())
            .map(str::trim)
    }

    /// `COMFYCORD_A__B_C=v` as (variable name, config key `a.b_c`, value).
    pub(super) fn config_vars(&self) -> Vec<EnvVar> {
        self.vars
            .iter()
            .filter_map(|(name, value)| {
                let rest = name
                    .get(..ENV_PREFIX.len())
                    .filter(|p| p.eq_ignore_ascii_case(ENV_PREFIX))
                    .map(|_| &name[ENV_PREFIX.len()..])?;
                let key: Vec<String> = rest
                    .split("__")
                    .map(|part| part.trim().to_ascii_lowercase())
                    .collect();
                if key.iter().any(String::is_empty) {
                    return None;
                }
                Some(EnvVar {
                    name: name.clone(),
                    key: key.join("."),
                    value: value.trim().to_string(),
                    raw: false,
                })
            })
            .collect()
    }
}

/// One `COMFYCORD_*` variable on its way into the config.
#[derive(Clone)]
pub(super) struct EnvVar {
    pub(super) name: String,
    /// Dotted config key, e.g. `discord.token`.
    pub(super) key: String,
    pub(super) value: String,
    /// Kept as text instead of parsed (`12345` for a string key stays `"12345"`).
    pub(super) raw: bool,
}

/// The `COMFYCORD_*` variables as figment data. Values are parsed as figment parses env
/// values (numbers, booleans, `[..]` lists, `{..}` maps), except those marked `raw`.
pub(super) struct EnvProvider(pub(super) Vec<EnvVar>);

impl figment::Provider for EnvProvider {
    fn metadata(&self) -> figment::Metadata {
        figment::Metadata::named(ENV_SOURCE)
    }

    fn data(
        &self,
    ) -> Result<figment::value::Map<figment::Profile, figment::value::Dict>, figment::Error> {
        let mut figment = Figment::new();
        for v in &self.0 {
            let value = if v.raw {
                figment::value::Value::from(v.value.clone())
            } else {
                v.value
                    .parse::<figment::value::Value>()
                    .unwrap_or_else(|never| match never {})
            };
            figment = figment.merge(Serialized::default(&v.key, value));
        }
        figment.data()
    }
}

/// Whether `key` is `prefix` or nested under it.
pub(super) fn key_within(key: &str, prefix: &str) -> bool {
    prefix.is_empty()
        || key == prefix
        || key
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('.'))
}
