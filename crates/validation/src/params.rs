//! A parameter's rule (type, bounds, choices) and the check of one value against it.

use serde_json::{Number, Value};

use crate::refusal::{list_preview, show, Refusal};

/// The type of a parameter's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    String,
    Int,
    Float,
    Bool,
    /// A u64, random when not given.
    Seed,
    /// The name of an uploaded input image.
    Image,
    /// One of a list: the rule's `choices`, or the server's (models, LoRAs, samplers).
    Choice,
}

impl std::fmt::Display for ParamKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl ParamKind {
    pub fn name(self) -> &'static str {
        match self {
            ParamKind::String => "string",
            ParamKind::Int => "int",
            ParamKind::Float => "float",
            ParamKind::Bool => "bool",
            ParamKind::Seed => "seed",
            ParamKind::Image => "image",
            ParamKind::Choice => "choice",
        }
    }

    pub fn parse(name: &str) -> Option<ParamKind> {
        Some(match name {
            "string" => ParamKind::String,
            "int" => ParamKind::Int,
            "float" => ParamKind::Float,
            "bool" => ParamKind::Bool,
            "seed" => ParamKind::Seed,
            "image" => ParamKind::Image,
            "choice" => ParamKind::Choice,
            _ => return None,
        })
    }
}

/// What values a parameter accepts.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamRule {
    pub kind: ParamKind,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub step: Option<f64>,
    /// Allowed values; empty means any (for choices: whatever the server offers).
    pub choices: Vec<Value>,
    pub max_length: Option<usize>,
    pub required: bool,
    pub default: Option<Value>,
}

impl ParamRule {
    pub fn new(kind: ParamKind) -> ParamRule {
        ParamRule {
            kind,
            min: None,
            max: None,
            step: None,
            choices: Vec::new(),
            max_length: None,
            required: false,
            default: None,
        }
    }

    fn range(&self, field: &str, x: f64) -> Result<(), Refusal> {
        if self.min.is_some_and(|m| x < m) || self.max.is_some_and(|m| x > m) {
            return Err(Refusal::OutOfRange {
                field: field.to_string(),
                min: self.min.unwrap_or(f64::MIN),
                max: self.max.unwrap_or(f64::MAX),
                got: x,
            });
        }
        Ok(())
    }

    /// Checks one value, returning it in the form to send (ints as integers, floats as floats).
    pub fn check(&self, field: &str, value: &Value) -> Result<Value, Refusal> {
        let wrong = |expected: &'static str| Refusal::WrongType {
            field: field.to_string(),
            expected,
            got: show(value),
        };
        let checked = match self.kind {
            ParamKind::Int => {
                let x = value
                    .as_i64()
                    .map(|i| i as f64)
                    .or_else(|| {
                        value
                            .as_f64()
                            .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                    })
                    .ok_or_else(|| wrong("a whole number"))?;
                self.range(field, x)?;
                if let Some(step) = self.step.filter(|s| *s > 0.0) {
                    let base = self.min.unwrap_or(0.0);
                    let k = ((x - base) / step).round();
                    if (base + k * step - x).abs() > 1e-9 {
                        let below = base + ((x - base) / step).floor() * step;
                        let above = below + step;
                        let nearest =
                            if x - below <= above - x && self.min.is_none_or(|m| below >= m) {
                                below
                            } else {
                                above
                            };
                        return Err(Refusal::OffStep {
                            field: field.to_string(),
                            step,
                            got: x,
                            nearest,
                        });
                    }
                }
                Value::Number(Number::from(x as i64))
            }
            ParamKind::Float => {
                let x = value
                    .as_f64()
                    .filter(|f| f.is_finite())
                    .ok_or_else(|| wrong("a number"))?;
                self.range(field, x)?;
                Number::from_f64(x)
                    .map(Value::Number)
                    .ok_or_else(|| wrong("a number"))?
            }
            ParamKind::Seed => {
                let x = value
                    .as_u64()
                    .ok_or_else(|| wrong("a whole number from 0"))?;
                self.range(field, x as f64)?;
                Value::Number(Number::from(x))
            }
            ParamKind::Bool => Value::Bool(value.as_bool().ok_or_else(|| wrong("true or false"))?),
            ParamKind::String | ParamKind::Image => {
                let s = value.as_str().ok_or_else(|| wrong("text"))?;
                if self.kind == ParamKind::Image && s.is_empty() {
                    return Err(wrong("an image"));
                }
                if let Some(max) = self.max_length {
                    let got = s.chars().count();
                    if got > max {
                        return Err(Refusal::TooLong {
                            field: field.to_string(),
                            max,
                            got,
                        });
                    }
                }
                value.clone()
            }
            ParamKind::Choice => match value {
                Value::String(_) | Value::Number(_) => value.clone(),
                _ => return Err(wrong("one of the listed values")),
            },
        };
        if !self.choices.is_empty() && !self.choices.iter().any(|c| same_value(c, &checked)) {
            return Err(Refusal::NotAChoice {
                field: field.to_string(),
                choices: list_preview(&self.choices),
                got: show(value),
            });
        }
        Ok(checked)
    }
}

/// 5 and 5.0 are the same value in a choice list.
pub fn same_value(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn int(min: f64, max: f64, step: Option<f64>) -> ParamRule {
        ParamRule {
            min: Some(min),
            max: Some(max),
            step,
            ..ParamRule::new(ParamKind::Int)
        }
    }

    #[test]
    fn ints_bounds_and_steps() {
        let r = int(1.0, 50.0, None);
        assert_eq!(r.check("steps", &json!(20)), Ok(json!(20)));
        assert_eq!(r.check("steps", &json!(20.0)), Ok(json!(20)));
        assert_eq!(
            r.check("steps", &json!(80)).unwrap_err().to_string(),
            "steps must be between 1 and 50 for this workflow; you sent 80"
        );
        assert!(matches!(
            r.check("steps", &json!(2.5)),
            Err(Refusal::WrongType { .. })
        ));
        let w = int(64.0, 1024.0, Some(8.0));
        assert_eq!(
            w.check("width", &json!(513)).unwrap_err().to_string(),
            "width must be a multiple of 8; you sent 513 (try 512)"
        );
        assert!(w.check("width", &json!(520)).is_ok());
    }

    #[test]
    fn other_kinds() {
        let seed = ParamRule::new(ParamKind::Seed);
        assert_eq!(seed.check("seed", &json!(u64::MAX)), Ok(json!(u64::MAX)));
        assert!(seed.check("seed", &json!(-1)).is_err());
        let f = ParamRule {
            min: Some(0.0),
            max: Some(1.0),
            ..ParamRule::new(ParamKind::Float)
        };
        assert_eq!(f.check("denoise", &json!(1)), Ok(json!(1.0)));
        assert!(f.check("denoise", &json!(1.01)).is_err());
        let c = ParamRule {
            choices: vec![json!(16), json!(24)],
            ..ParamRule::new(ParamKind::Choice)
        };
        assert!(c.check("frames", &json!(24.0)).is_ok());
        assert_eq!(
            c.check("frames", &json!(25)).unwrap_err().to_string(),
            "frames must be one of 16, 24; you sent 25"
        );
        let s = ParamRule {
            max_length: Some(3),
            ..ParamRule::new(ParamKind::String)
        };
        assert!(s.check("x", &json!("ééé")).is_ok());
        assert!(s.check("x", &json!("éééé")).is_err());
        assert!(ParamRule::new(ParamKind::Image)
            .check("image", &json!(""))
            .is_err());
        assert!(ParamRule::new(ParamKind::Bool)
            .check("b", &json!("yes"))
            .is_err());
    }
}
