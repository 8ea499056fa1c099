//! Hot paths of the ComfyUI engine: patching + serialising a workflow for every request, and
//! decoding every WebSocket message. `cargo bench -p core-comfyui`.

use std::hint::black_box;

use bytes::Bytes;
use core_comfyui::{BinaryFrame, Manifest, ServerMessage, Workflow};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rand::SeedableRng;
use serde_json::{json, Map, Value};

/// A 60-node graph shaped like a real one: a checkpoint, 14 LoRAs in a chain, two prompts, a
/// latent, and 14 sampler → decode → save triples.
fn sixty_nodes() -> (Workflow, Manifest) {
    let mut nodes = Map::new();
    nodes.insert("1".into(), json!({"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd15.safetensors"}}));
    let mut model = json!(["1", 0]);
    let mut clip = json!(["1", 1]);
    for i in 0..14 {
        let id = format!("{}", 100 + i);
        nodes.insert(id.clone(), json!({"class_type": "LoraLoader", "inputs": {"lora_name": format!("l{i}.safetensors"), "strength_model": 0.5, "strength_clip": 0.5, "model": model, "clip": clip}}));
        model = json!([id, 0]);
        clip = json!([id, 1]);
    }
    nodes.insert(
        "2".into(),
        json!({"class_type": "CLIPTextEncode", "inputs": {"text": "placeholder", "clip": clip}}),
    );
    nodes.insert(
        "3".into(),
        json!({"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": clip}}),
    );
    nodes.insert("4".into(), json!({"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 512, "batch_size": 1}}));
    for i in 0..14 {
        let s = format!("{}", 200 + i);
        let d = format!("{}", 300 + i);
        let v = format!("{}", 400 + i);
        nodes.insert(s.clone(), json!({"class_type": "KSampler", "inputs": {"seed": 1, "steps": 20, "cfg": 7.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0, "model": model, "positive": ["2", 0], "negative": ["3", 0], "latent_image": ["4", 0]}}));
        nodes.insert(
            d.clone(),
            json!({"class_type": "VAEDecode", "inputs": {"samples": [s, 0], "vae": ["1", 2]}}),
        );
        nodes.insert(v, json!({"class_type": "SaveImage", "inputs": {"images": [d, 0], "filename_prefix": "bench"}}));
    }
    let workflow = Workflow::from_value(Value::Object(nodes)).expect("valid");
    assert_eq!(workflow.len(), 60);
    let seeds: Vec<Value> = (0..14)
        .map(|i| json!({"node": format!("{}", 200 + i), "input": "seed"}))
        .collect();
    let manifest = Manifest::from_json(
        &json!({"params": {
            "prompt": {"type": "string", "node": "2", "input": "text", "required": true},
            "negative": {"type": "string", "node": "3", "input": "text", "default": ""},
            "seed": {"type": "seed", "targets": seeds},
            "width": {"type": "int", "node": "4", "input": "width", "default": 512, "min": 64, "max": 2048, "step": 8},
            "height": {"type": "int", "node": "4", "input": "height", "default": 512, "min": 64, "max": 2048, "step": 8}
        }})
        .to_string(),
        &workflow,
    )
    .expect("valid manifest");
    (workflow, manifest)
}

fn patch_and_serialise(c: &mut Criterion) {
    let (workflow, manifest) = sixty_nodes();
    let mut values = Map::new();
    values.insert(
        "prompt".into(),
        json!("a lighthouse on a cliff at sunset, \"dramatic\" light, 8k"),
    );
    values.insert("width".into(), json!(768));
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut g = c.benchmark_group("workflow");
    g.throughput(Throughput::Elements(1));
    g.bench_function("patch_and_serialise_60_nodes", |b| {
        b.iter(|| {
            let patched = manifest
                .apply(black_box(&workflow), black_box(&values), &mut rng)
                .expect("ok");
            black_box(patched.workflow.to_json())
        })
    });
    g.finish();
}

fn decode_events(c: &mut Criterion) {
    let progress = r#"{"type": "progress", "data": {"value": 7, "max": 20, "prompt_id": "03aea5d0-7341-4a43-9c0b-87c7783c8a9d", "node": "3"}}"#;
    let state = r#"{"type": "progress_state", "data": {"prompt_id": "03aea5d0-7341-4a43-9c0b-87c7783c8a9d", "nodes": {"1": {"value": 1.0, "max": 1.0, "state": "finished", "node_id": "1", "prompt_id": "03aea5d0-7341-4a43-9c0b-87c7783c8a9d", "display_node_id": "1", "parent_node_id": null, "real_node_id": "1"}, "2": {"value": 0.0, "max": 1.0, "state": "running", "node_id": "2", "prompt_id": "03aea5d0-7341-4a43-9c0b-87c7783c8a9d", "display_node_id": "2", "parent_node_id": null, "real_node_id": "2"}}}}"#;
    let executed = r#"{"type": "executed", "data": {"node": "3", "display_node": "3", "output": {"images": [{"filename": "rust_test_00001_.png", "subfolder": "", "type": "output"}]}, "prompt_id": "03aea5d0-7341-4a43-9c0b-87c7783c8a9d"}}"#;
    let mut preview = vec![0, 0, 0, 4];
    let meta = br#"{"node_id":"3","prompt_id":"03aea5d0-7341-4a43-9c0b-87c7783c8a9d","display_node_id":"3","parent_node_id":null,"real_node_id":"3","image_type":"image/jpeg"}"#;
    preview.extend_from_slice(&(meta.len() as u32).to_be_bytes());
    preview.extend_from_slice(meta);
    preview.extend(std::iter::repeat_n(0xAB, 32 * 1024));
    let preview = Bytes::from(preview);

    let mut g = c.benchmark_group("ws_decode");
    g.throughput(Throughput::Elements(1));
    for (name, text) in [
        ("progress", progress),
        ("progress_state", state),
        ("executed", executed),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| ServerMessage::decode(black_box(text)).expect("ok"))
        });
    }
    g.bench_function("preview_32k_with_metadata", |b| {
        b.iter(|| BinaryFrame::decode(black_box(preview.clone())).expect("ok"))
    });
    g.finish();
}

criterion_group!(benches, patch_and_serialise, decode_events);
criterion_main!(benches);
