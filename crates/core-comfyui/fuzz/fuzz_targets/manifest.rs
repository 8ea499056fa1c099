//! Manifest loading and workflow patching on any (workflow, manifest, values): never panics;
//! an applied manifest changes exactly the inputs it names, deterministically, and its
//! recorded values rebuild the same graph.
#![no_main]

use core_comfyui::{Manifest, Workflow};
use libfuzzer_sys::fuzz_target;
use rand::SeedableRng;
use serde_json::{Map, Value};

fuzz_target!(|data: &[u8]| {
    // Input: workflow JSON \0 manifest JSON \0 values JSON (an object).
    let mut parts = data.splitn(3, |b| *b == 0);
    let (Some(wf), Some(mf), Some(vals)) = (parts.next(), parts.next(), parts.next()) else {
        return;
    };
    let (Ok(wf), Ok(mf)) = (std::str::from_utf8(wf), std::str::from_utf8(mf)) else {
        return;
    };
    let Ok(workflow) = Workflow::from_json(wf) else { return };
    let Ok(manifest) = Manifest::from_json(mf, &workflow) else { return };
    let Ok(Value::Object(values)) = serde_json::from_slice::<Value>(vals) else { return };
    let rng = || rand::rngs::StdRng::seed_from_u64(7);
    let Ok(patched) = manifest.apply(&workflow, &values, &mut rng()) else { return };

    // Same nodes, same classes.
    let before: Vec<&str> = workflow.node_ids().collect();
    let after: Vec<&str> = patched.workflow.node_ids().collect();
    assert_eq!(before, after);
    for id in &before {
        assert_eq!(workflow.class_type(id), patched.workflow.class_type(id));
    }
    // Only targeted inputs change, and each target holds its parameter's value.
    let targeted = |node: &str, input: &str| {
        manifest
            .params
            .values()
            .any(|p| p.targets.iter().any(|t| t.node == node && t.input == input))
    };
    for id in &before {
        let (old, new) = (workflow.inputs(id), patched.workflow.inputs(id));
        let keys: std::collections::BTreeSet<&String> = old
            .into_iter()
            .chain(new)
            .flat_map(Map::keys)
            .collect();
        for k in keys {
            if workflow.input(id, k) != patched.workflow.input(id, k) {
                assert!(targeted(id, k), "untargeted input {id}.{k} changed");
            }
        }
    }
    for (name, value) in &patched.values {
        let spec = &manifest.params[name];
        for t in &spec.targets {
            if values.contains_key(name) || spec.rule.default.is_some() {
                assert_eq!(patched.workflow.input(&t.node, &t.input), Some(value), "{name}");
            }
        }
    }
    // Deterministic for one seed.
    let again = manifest.apply(&workflow, &values, &mut rng()).expect("applies again");
    assert_eq!(again, patched);
    // The recorded values rebuild the same graph (what a reroll or a restart relies on).
    let recorded: Map<String, Value> = patched.values.clone().into_iter().collect();
    if let Ok(rebuilt) = manifest.apply(&workflow, &recorded, &mut rand::rngs::StdRng::seed_from_u64(8)) {
        assert_eq!(rebuilt.workflow, patched.workflow);
    }
});
