//! Any request against a realistic rule set: never panics; an accepted request satisfies
//! every rule it was checked against.
#![no_main]

use indexmap::IndexMap;
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Map, Value};
use validation::{effective_rule, validate, ParamKind, ParamRule, RawRequest};

fn rules() -> IndexMap<String, ParamRule> {
    let mut r = IndexMap::new();
    let rule = |kind, min: Option<f64>, max: Option<f64>| ParamRule { min, max, ..ParamRule::new(kind) };
    r.insert("prompt".into(), ParamRule { required: true, ..ParamRule::new(ParamKind::String) });
    r.insert("negative".into(), ParamRule::new(ParamKind::String));
    r.insert("seed".into(), ParamRule::new(ParamKind::Seed));
    r.insert("steps".into(), rule(ParamKind::Int, Some(1.0), Some(50.0)));
    r.insert("cfg".into(), rule(ParamKind::Float, None, None));
    r.insert("width".into(), ParamRule { default: Some(json!(512)), ..rule(ParamKind::Int, Some(64.0), Some(1024.0)) });
    r.insert("height".into(), ParamRule { default: Some(json!(768)), ..rule(ParamKind::Int, Some(64.0), Some(1024.0)) });
    r.insert("denoise".into(), rule(ParamKind::Float, None, None));
    r.insert("lora_strength".into(), rule(ParamKind::Float, None, None));
    r.insert("frames".into(), ParamRule { choices: vec![json!(16), json!(24)], ..ParamRule::new(ParamKind::Int) });
    r.insert("sampler".into(), ParamRule { choices: vec![json!("euler"), json!("ddim")], ..ParamRule::new(ParamKind::Choice) });
    r
}

fuzz_target!(|data: &[u8]| {
    // Input: a JSON object of values, optionally followed by "\0aspect".
    let (json_part, aspect) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], Some(String::from_utf8_lossy(&data[i + 1..]).into_owned())),
        None => (data, None),
    };
    let Ok(Value::Object(values)) = serde_json::from_slice::<Value>(json_part) else { return };
    let rules = rules();
    let raw = RawRequest { values: values.clone(), aspect };
    if let Ok(out) = validate(&rules, &raw) {
        check_accepted(&rules, &out);
    }
});

fn check_accepted(rules: &IndexMap<String, ParamRule>, out: &Map<String, Value>) {
    for (name, value) in out {
        let rule = effective_rule(name, &rules[name]);
        // Checking an accepted value again must accept it unchanged.
        assert_eq!(rule.check(name, value).as_ref(), Ok(value), "{name} = {value}");
        if let Some(max) = rule.max_length {
            if let Some(s) = value.as_str() {
                assert!(s.chars().count() <= max);
                assert!(!s.chars().any(|c| c.is_control() && c != '\n' && c != '\t'));
            }
        }
    }
    assert!(out.get("prompt").and_then(Value::as_str).is_some_and(|p| !p.trim().is_empty()));
}
