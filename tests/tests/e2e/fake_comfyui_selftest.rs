//! Self-tests of the fake ComfyUI server, driven with a raw HTTP client (reqwest) and a raw
//! WebSocket client (tokio-tungstenite), and compared with transcripts recorded from the real
//! server (`tests/fixtures/comfyui_transcripts`). Every wait is bounded by a timeout.

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tests::fake_comfyui::{default_object_info, tiny_png, FakeComfy, FakeOptions};
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const WAIT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------- helpers

fn transcript(name: &str) -> Value {
    let path = format!(
        "{}/fixtures/comfyui_transcripts/{}",
        env!("CARGO_MANIFEST_DIR"),
        name
    );
    serde_json::from_slice(&std::fs::read(&path).expect("transcript")).expect("json")
}

fn events(t: &Value) -> &Vec<Value> {
    t["events"].as_array().expect("events")
}

#[derive(Debug, Clone)]
enum Frame {
    Json(Value),
    Bin(Vec<u8>),
}

impl Frame {
    fn ty(&self) -> String {
        match self {
            Frame::Json(v) => v["type"].as_str().unwrap_or("?").to_string(),
            Frame::Bin(b) => format!("binary{}", u32::from_be_bytes(b[..4].try_into().unwrap())),
        }
    }

    fn json(&self) -> &Value {
        match self {
            Frame::Json(v) => v,
            Frame::Bin(_) => panic!("binary frame where JSON was expected"),
        }
    }

    fn is_done(&self, prompt_id: &str) -> bool {
        matches!(self, Frame::Json(v) if v["type"] == "executing"
            && v["data"]["node"].is_null()
            && v["data"]["prompt_id"] == prompt_id)
    }
}

async fn connect(comfy: &FakeComfy, cid: &str) -> Ws {
    let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(comfy.ws_url(cid)))
        .await
        .expect("connect timeout")
        .expect("connect");
    ws
}

async fn next_frame(ws: &mut Ws) -> Frame {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("timed out waiting for a frame")
            .expect("socket ended")
            .expect("socket error");
        match msg {
            Message::Text(t) => return Frame::Json(serde_json::from_str(&t).expect("json frame")),
            Message::Binary(b) => return Frame::Bin(b),
            _ => continue,
        }
    }
}

async fn next_json(ws: &mut Ws) -> Value {
    next_frame(ws).await.json().clone()
}

/// Frames until (and including) `executing {node: null, prompt_id}`.
async fn frames_until_done(ws: &mut Ws, prompt_id: &str) -> Vec<Frame> {
    let mut out = Vec::new();
    loop {
        let f = next_frame(ws).await;
        let done = f.is_done(prompt_id);
        out.push(f);
        if done {
            return out;
        }
    }
}

async fn frames_until_type(ws: &mut Ws, ty: &str) -> Vec<Frame> {
    let mut out = Vec::new();
    loop {
        let f = next_frame(ws).await;
        let done = f.ty() == ty;
        out.push(f);
        if done {
            return out;
        }
    }
}

struct Http {
    client: reqwest::Client,
    base: String,
}

struct Reply {
    status: u16,
    content_type: String,
    disposition: String,
    body: bytes::Bytes,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Http {
    fn new(comfy: &FakeComfy) -> Http {
        Http {
            client: reqwest::Client::new(),
            base: comfy.url(),
        }
    }

    async fn send(&self, rb: reqwest::RequestBuilder) -> Reply {
        let r = tokio::time::timeout(WAIT, rb.send())
            .await
            .expect("http timeout")
            .expect("http");
        let h = |n: reqwest::header::HeaderName| {
            r.headers()
                .get(n)
                .map(|v| v.to_str().unwrap_or("").to_string())
                .unwrap_or_default()
        };
        let content_type = h(reqwest::header::CONTENT_TYPE);
        let disposition = h(reqwest::header::CONTENT_DISPOSITION);
        let status = r.status().as_u16();
        let body = r.bytes().await.expect("body");
        Reply {
            status,
            content_type,
            disposition,
            body,
        }
    }

    async fn get(&self, path: &str) -> Reply {
        self.send(self.client.get(format!("{}{}", self.base, path)))
            .await
    }

    async fn post_json(&self, path: &str, body: &Value) -> Reply {
        self.send(
            self.client
                .post(format!("{}{}", self.base, path))
                .json(body),
        )
        .await
    }

    async fn post_raw(&self, path: &str, body: &str) -> Reply {
        self.send(
            self.client
                .post(format!("{}{}", self.base, path))
                .body(body.to_string()),
        )
        .await
    }

    /// POST /prompt; returns the prompt id.
    async fn queue(&self, prompt: &Value, cid: Option<&str>) -> String {
        let mut body = json!({ "prompt": prompt });
        if let Some(c) = cid {
            body["client_id"] = json!(c);
        }
        let r = self.post_json("/prompt", &body).await;
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()["prompt_id"].as_str().unwrap().to_string()
    }

    /// Polls `/history/{id}` until the entry exists.
    async fn history_entry(&self, id: &str) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let h = self.get(&format!("/history/{}", id)).await.json();
            if let Some(e) = h.get(id) {
                return e.clone();
            }
            assert!(Instant::now() < deadline, "history entry never appeared");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Replaces ids with placeholders and zeroes timestamps, recursively.
fn normalize(v: &Value, subs: &[(&str, &str)]) -> Value {
    match v {
        Value::String(s) => match subs.iter().find(|(from, _)| from == s) {
            Some((_, to)) => json!(to),
            None => v.clone(),
        },
        Value::Array(a) => Value::Array(a.iter().map(|x| normalize(x, subs)).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| {
                    let x = if k == "timestamp" {
                        json!(0)
                    } else {
                        normalize(x, subs)
                    };
                    (k.clone(), x)
                })
                .collect(),
        ),
        _ => v.clone(),
    }
}

/// A frame as a comparable value: JSON messages as they are, binary frames by layout.
fn frame_value(f: &Frame) -> Value {
    match f {
        Frame::Json(v) => v.clone(),
        Frame::Bin(b) => {
            let ty = u32::from_be_bytes(b[..4].try_into().unwrap());
            let second = u32::from_be_bytes(b[4..8].try_into().unwrap());
            if ty == 4 {
                let meta: Value =
                    serde_json::from_slice(&b[8..8 + second as usize]).expect("metadata json");
                let image = &b[8 + second as usize..];
                json!({"binary": 4, "metadata_len": second, "metadata": meta,
                       "magic": hex(&image[..4])})
            } else {
                json!({"binary": ty, "format": second, "magic": hex(&b[8..12])})
            }
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{:02x}", x)).collect()
}

/// The same shape for a recorded event.
fn recorded_value(e: &Value) -> Value {
    if e.get("event_type").is_some() {
        let ty = e["event_type"].as_u64().unwrap();
        let magic = e["image_magic_hex"].as_str().unwrap()[..8].to_string();
        if ty == 4 {
            json!({"binary": 4, "metadata_len": e["metadata_len"], "metadata": e["metadata"],
                   "magic": magic})
        } else {
            let format = if e["image_format"] == "PNG" { 2 } else { 1 };
            json!({"binary": ty, "format": format, "magic": magic})
        }
    } else {
        e["msg"].clone()
    }
}

/// The recorded POST /prompt events of a transcript, with their indices.
fn recorded_posts(t: &Value) -> Vec<(usize, &Value)> {
    events(t)
        .iter()
        .enumerate()
        .filter(|(_, e)| e["kind"] == "http" && e["method"] == "POST" && e["path"] == "/prompt")
        .collect()
}

/// Frames a client of the given `kind` received after the POST at `idx`, until its prompt's
/// `executing null`.
fn recorded_run(t: &Value, idx: usize, kind: &str) -> Vec<Value> {
    let pid = events(t)[idx]["response_json"]["prompt_id"].clone();
    let mut out = Vec::new();
    for e in &events(t)[idx + 1..] {
        let k = e["kind"].as_str().unwrap_or("");
        if k != kind && k != format!("{}-binary", kind) && !(kind == "ws" && k == "binary") {
            continue;
        }
        let v = recorded_value(e);
        let done = v["type"] == "executing"
            && v["data"]["node"].is_null()
            && v["data"]["prompt_id"] == pid;
        out.push(v);
        if done {
            break;
        }
    }
    out
}

fn types(frames: &[Value]) -> Vec<String> {
    frames
        .iter()
        .map(|f| match f.get("binary") {
            Some(b) => format!("binary{}", b),
            None => f["type"].as_str().unwrap_or("?").to_string(),
        })
        .collect()
}

/// Type sequence with each run of (progress_state, progress) pairs collapsed into one
/// "progress-run" (TestSleep's number of updates depends on timing).
fn collapsed_types(frames: &[Value]) -> Vec<String> {
    let t = types(frames);
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < t.len() {
        if t[i] == "progress_state" && t.get(i + 1).map(String::as_str) == Some("progress") {
            if out.last().map(String::as_str) != Some("progress-run") {
                out.push("progress-run".into());
            }
            i += 2;
        } else {
            out.push(t[i].clone());
            i += 1;
        }
    }
    out
}

fn options_with(f: impl FnOnce(&mut Value)) -> FakeOptions {
    let mut opts = FakeOptions::default();
    f(&mut opts.object_info);
    opts
}

/// The recorded validation errors list this single checkpoint; pin it so the fixture's list
/// does not matter.
fn pin_checkpoints(info: &mut Value) {
    info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0] =
        json!(["tiny_sd15_random.safetensors"]);
}

fn basic_prompt(prefix: &str) -> Value {
    json!({
        "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 16711680}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": prefix}}
    })
}

fn sleep_prompt(seconds: f64) -> Value {
    json!({
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
        "2": {"class_type": "TestSleep", "inputs": {"value": ["1", 0], "seconds": seconds}},
        "3": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}}
    })
}

/// Replays the POST at `idx` of a transcript with our own client and compares every frame.
async fn replay_and_compare(
    http: &Http,
    ws: &mut Ws,
    cid: &str,
    t: &Value,
    idx: usize,
    kind: &str,
) -> (String, Vec<Frame>) {
    let e = &events(t)[idx];
    let rec_pid = e["response_json"]["prompt_id"].as_str().unwrap();
    let rec_cid = e["request_json"]["client_id"]
        .as_str()
        .unwrap_or("no-client");
    let mut req = e["request_json"].clone();
    if req.get("client_id").is_some() {
        req["client_id"] = json!(cid);
    }
    let r = http.post_json("/prompt", &req).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let pid = r.json()["prompt_id"].as_str().unwrap().to_string();
    let frames = frames_until_done(ws, &pid).await;
    let got: Vec<Value> = frames
        .iter()
        .map(|f| normalize(&frame_value(f), &[(&pid, "P"), (cid, "C")]))
        .collect();
    let want: Vec<Value> = recorded_run(t, idx, kind)
        .iter()
        .map(|v| normalize(v, &[(rec_pid, "P"), (rec_cid, "C")]))
        .collect();
    assert_eq!(types(&got), types(&want), "message types differ");
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "frame {} differs", i);
    }
    (pid, frames)
}

fn history_normalized(entry: &Value, pid: &str, cid: &str) -> Value {
    let mut e = normalize(entry, &[(pid, "P"), (cid, "C")]);
    e["prompt"][0] = json!(0);
    e
}

// ---------------------------------------------------------------- (a) basic run

#[tokio::test]
async fn basic_run_replays_transcript_exactly() {
    let comfy = FakeComfy::start().await;
    let http = Http::new(&comfy);
    let t = transcript("basic_run.json");
    let rec_cid = events(&t)[0]["msg"]["data"]["sid"]
        .as_str()
        .unwrap()
        .to_string();
    let cid = "selftest-basic-client";
    let mut ws = connect(&comfy, cid).await;

    // First frame: status with our sid.
    let hello = normalize(&next_json(&mut ws).await, &[(cid, "C")]);
    assert_eq!(hello, normalize(&events(&t)[0]["msg"], &[(&rec_cid, "C")]));

    let posts = recorded_posts(&t);
    let rec_pid = posts[0].1["response_json"]["prompt_id"].as_str().unwrap();
    let (pid, frames) = replay_and_compare(&http, &mut ws, cid, &t, posts[0].0, "ws").await;
    assert_eq!(
        frames.iter().map(Frame::ty).collect::<Vec<_>>(),
        [
            "status",
            "status",
            "execution_start",
            "execution_cached",
            "progress_state",
            "executing",
            "progress_state",
            "progress_state",
            "executing",
            "progress_state",
            "progress_state",
            "executing",
            "executed",
            "progress_state",
            "execution_success",
            "status",
            "executing"
        ]
    );

    // The history entry equals the recorded one (ids, number and timestamps aside).
    let rec_hist = events(&t)
        .iter()
        .find(|e| e["path"] == format!("/history/{}", rec_pid))
        .unwrap();
    let got = http.history_entry(&pid).await;
    assert_eq!(
        history_normalized(&got, &pid, cid),
        history_normalized(&rec_hist["response_json"][rec_pid], rec_pid, &rec_cid)
    );

    // Identical resubmit: everything cached, the output node re-sends `executed`.
    let (pid2, frames2) = replay_and_compare(&http, &mut ws, cid, &t, posts[1].0, "ws").await;
    assert_eq!(
        frames2.iter().map(Frame::ty).collect::<Vec<_>>(),
        [
            "status",
            "status",
            "execution_start",
            "execution_cached",
            "executed",
            "progress_state",
            "execution_success",
            "status",
            "executing"
        ]
    );
    let h2 = http.history_entry(&pid2).await;
    assert_eq!(
        h2["status"]["messages"][1][1]["nodes"],
        json!(["1", "2", "3"])
    );

    // The rest of the recorded HTTP exchanges.
    for e in events(&t)
        .iter()
        .filter(|e| e["kind"] == "http" && e["method"] == "GET")
    {
        let path = e["path"].as_str().unwrap();
        if path.starts_with("/history/") && !path.ends_with("not-a-real-id") {
            continue;
        }
        let r = http.get(path).await;
        assert_eq!(r.status as u64, e["status"].as_u64().unwrap(), "{}", path);
        assert_eq!(
            r.content_type,
            e["content_type"].as_str().unwrap(),
            "{}",
            path
        );
        if let Some(j) = e.get("response_json") {
            assert_eq!(&r.json(), j, "{}", path);
        }
        if let Some(magic) = e.get("response_magic_hex") {
            // the magic only: the RIFF size in bytes 4..8 depends on the encoder
            assert_eq!(hex(&r.body[..4]), &magic.as_str().unwrap()[..8], "{}", path);
            assert_eq!(r.disposition, e["content_disposition"].as_str().unwrap());
        }
        if e.get("response_text") == Some(&json!("")) {
            assert!(r.body.is_empty(), "{}", path);
        }
    }
    comfy.shutdown().await;
}

#[tokio::test]
async fn saved_png_has_size_colour_and_prompt_chunk() {
    let comfy = FakeComfy::start().await;
    let http = Http::new(&comfy);
    let mut ws = connect(&comfy, "c-png").await;
    next_json(&mut ws).await;
    let pid = http.queue(&basic_prompt("png_check"), Some("c-png")).await;
    frames_until_done(&mut ws, &pid).await;
    let r = http
        .get("/view?filename=png_check_00001_.png&type=output")
        .await;
    let img = image::load_from_memory(&r.body).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (64, 64));
    assert_eq!(img.get_pixel(10, 10).0, [0, 255, 255]); // red, inverted
    let text = String::from_utf8_lossy(&r.body);
    assert!(text.contains("tEXtprompt\0{\"1\": {\"class_type\": \"EmptyImage\""));
    comfy.shutdown().await;
}

// ---------------------------------------------------------------- (b) validation errors

/// Compares two JSON values, treating each `errors` list as a multiset: the real server
/// iterates a Python set there, so its order is random per process.
fn assert_json_eq_unordered_errors(got: &Value, want: &Value, ctx: &str) {
    match (got, want) {
        (Value::Object(g), Value::Object(w)) => {
            let mut gk: Vec<_> = g.keys().collect();
            let mut wk: Vec<_> = w.keys().collect();
            gk.sort();
            wk.sort();
            assert_eq!(gk, wk, "{}: keys", ctx);
            for (k, wv) in w {
                let gv = &g[k];
                if k == "errors" {
                    let mut a: Vec<String> = gv
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|x| x.to_string())
                        .collect();
                    let mut b: Vec<String> = wv
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|x| x.to_string())
                        .collect();
                    a.sort();
                    b.sort();
                    assert_eq!(a, b, "{}: errors", ctx);
                } else {
                    assert_json_eq_unordered_errors(gv, wv, &format!("{}.{}", ctx, k));
                }
            }
        }
        _ => assert_eq!(got, want, "{}", ctx),
    }
}

/// The fixture's object_info may lack tooltips; give the inputs named in the recorded errors
/// the exact `input_config` the real server had, so the comparison checks the fake's logic.
fn apply_recorded_input_configs(info: &mut Value, t: &Value) {
    for e in events(t) {
        let Some(node_errors) = e["response_json"]["node_errors"].as_object() else {
            continue;
        };
        for ne in node_errors.values() {
            let class = ne["class_type"].as_str().unwrap();
            for err in ne["errors"].as_array().unwrap() {
                let cfg = &err["extra_info"]["input_config"];
                let name = err["extra_info"]["input_name"].as_str().unwrap();
                if cfg.is_array() {
                    info[class]["input"]["required"][name] = cfg.clone();
                }
            }
        }
    }
}

#[tokio::test]
async fn validation_errors_match_transcript() {
    let t = transcript("prompt_validation_errors.json");
    let comfy = FakeComfy::start_with(options_with(|info| {
        pin_checkpoints(info);
        apply_recorded_input_configs(info, &t);
    }))
    .await;
    let http = Http::new(&comfy);
    let mut checked = 0;
    for e in events(&t) {
        if e["kind"] != "http" || e["method"] != "POST" || e["path"] != "/prompt" {
            continue;
        }
        let note = e["note"].as_str().unwrap_or("");
        let r = match e.get("request_raw") {
            Some(raw) => http.post_raw("/prompt", raw.as_str().unwrap()).await,
            None => http.post_json("/prompt", &e["request_json"]).await,
        };
        assert_eq!(r.status as u64, e["status"].as_u64().unwrap(), "{}", note);
        assert_eq!(
            r.content_type,
            e["content_type"].as_str().unwrap(),
            "{}",
            note
        );
        if let Some(text) = e.get("response_text") {
            assert_eq!(r.text(), text.as_str().unwrap(), "{}", note);
            checked += 1;
            continue;
        }
        let want = &e["response_json"];
        let got = r.json();
        if r.status == 400 {
            assert_json_eq_unordered_errors(&got, want, note);
        } else {
            assert_json_eq_unordered_errors(&got["node_errors"], &want["node_errors"], note);
            // numbers: the server-wide counter differs, the kind (int/float/negative) must not
            let (g, w) = (&got["number"], &want["number"]);
            assert_eq!(g.is_f64(), w.is_f64(), "{}: number type", note);
            assert_eq!(
                g.as_f64().unwrap() < 0.0,
                w.as_f64().unwrap() < 0.0,
                "{}",
                note
            );
            if want["prompt_id"] == "my-own-id-123" {
                assert_eq!(
                    r.text(),
                    r#"{"prompt_id": "my-own-id-123", "number": 5.0, "node_errors": {}}"#
                );
            }
        }
        checked += 1;
    }
    assert_eq!(checked, 17);
    // The good output of the "one good + one bad" prompt ran: history has it, with node 4 gone.
    let hist = http.get("/history?max_items=100").await.json();
    let own = http.history_entry("my-own-id-123").await;
    assert_eq!(own["prompt"][0], json!(5.0));
    assert_eq!(own["prompt"][3], json!({"foo": 1}));
    assert!(hist
        .as_object()
        .unwrap()
        .values()
        .any(|h| h["prompt"][4] == json!(["3"]) && h["prompt"][2].get("5").is_some()));
    comfy.shutdown().await;
}

#[tokio::test]
async fn validation_coerces_and_survives_garbage() {
    let comfy = FakeComfy::start().await;
    let http = Http::new(&comfy);
    // strings and ints are coerced in place (history shows the coerced prompt)
    let prompt = json!({
        "1": {"class_type": "EmptyImage", "inputs": {"width": "16", "height": 8.0, "batch_size": 1, "color": 0}},
        "2": {"class_type": "TestSleep", "inputs": {"value": ["1", 0], "seconds": 0}},
        "3": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}}
    });
    let pid = http.queue(&prompt, None).await;
    let h = http.history_entry(&pid).await;
    assert_eq!(
        h["prompt"][2]["1"]["inputs"],
        json!({"width": 16, "height": 8, "batch_size": 1, "color": 0})
    );
    assert_eq!(h["prompt"][2]["2"]["inputs"]["seconds"], json!(0.0));

    // nothing here may crash the server
    let mut chain = serde_json::Map::new();
    chain.insert("0".into(), json!({"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}}));
    for i in 1..2000 {
        chain.insert(
            i.to_string(),
            json!({"class_type": "ImageInvert", "inputs": {"image": [(i - 1).to_string(), 0]}}),
        );
    }
    chain.insert("out".into(), json!({"class_type": "SaveImage", "inputs": {"images": ["1999", 0], "filename_prefix": "x"}}));
    let bad_bodies = vec![
        json!({"prompt": Value::Object(chain)}),
        json!({"prompt": {"1": {"class_type": "SaveImage", "inputs": {"images": ["9", 0]}}}}),
        json!({"prompt": {"1": {"class_type": "SaveImage", "inputs": {"images": ["1", 0]}}}}),
        json!({"prompt": {"1": {"class_type": "SaveImage", "inputs": {"images": [["x"], "y"]}}}}),
        json!({"prompt": {"1": {"class_type": "SaveImage"}}}),
        json!({"prompt": {"1": {"class_type": "LoadImage", "inputs": {"image": 5}}, "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}}),
        json!({"prompt": {"1": "class_type"}}),
        json!({"prompt": {"1": 7}}),
        json!({"prompt": [1, 2]}),
        json!({"prompt": {"1": {"class_type": ["x"]}}}),
        json!({"prompt": {"1": {"class_type": "KSampler", "inputs": {"steps": 1e300, "seed": -1, "cfg": "nan"}}}}),
        json!(["prompt"]),
        json!("hello"),
        json!(null),
        json!({"number": "x", "prompt": {}}),
        json!({"prompt": {}, "extra_data": 5, "client_id": "c"}),
    ];
    for b in &bad_bodies {
        let r = http.post_json("/prompt", b).await;
        assert!([400, 500].contains(&r.status), "{} -> {}", b, r.status);
    }
    let deep = http.post_json("/prompt", &bad_bodies[0]).await.json();
    assert_eq!(deep["error"]["type"], "prompt_outputs_failed_validation");
    let errs = deep["node_errors"].to_string();
    assert!(errs.contains("RecursionError"), "{}", errs);
    // the server still works
    let r = http.get("/prompt").await;
    assert_eq!(r.status, 200);
    comfy.shutdown().await;
}

// ---------------------------------------------------------------- (c) uploads

async fn upload(http: &Http, name: &str, bytes: Vec<u8>, extra: &[(&str, &str)]) -> Reply {
    let mut form = reqwest::multipart::Form::new().part(
        "image",
        reqwest::multipart::Part::bytes(bytes).file_name(name.to_string()),
    );
    for (k, v) in extra {
        form = form.text(k.to_string(), v.to_string());
    }
    http.send(
        http.client
            .post(format!("{}/upload/image", http.base))
            .multipart(form),
    )
    .await
}

#[tokio::test]
async fn upload_dedupes_like_transcript_and_loadimage_uses_it() {
    let comfy = FakeComfy::start().await;
    let http = Http::new(&comfy);
    let t = transcript("upload_and_loadimage.json");
    let recorded: Vec<&Value> = events(&t)
        .iter()
        .filter(|e| e["path"] == "/upload/image")
        .collect();
    let a = tiny_png(6, 4);
    let b = tiny_png(4, 6);
    let name = "upl_9419fb.png";
    type Case<'a> = (Vec<u8>, &'a str, Vec<(&'a str, &'a str)>);
    let cases: Vec<Case> = vec![
        (a.clone(), name, vec![]),
        (a.clone(), name, vec![]),
        (b.clone(), name, vec![]),
        (b.clone(), name, vec![("overwrite", "true")]),
        (
            a.clone(),
            name,
            vec![("subfolder", "sub"), ("type", "input")],
        ),
        (a.clone(), "t.png", vec![("type", "temp")]),
        // aiohttp's client percent-encoded the '/' of "../evil.png"; send what it sent
        (a.clone(), "..%2Fevil.png", vec![]),
    ];
    for (i, (bytes, fname, extra)) in cases.into_iter().enumerate() {
        let r = upload(&http, fname, bytes, &extra).await;
        assert_eq!(
            r.status as u64,
            recorded[i]["status"].as_u64().unwrap(),
            "case {}",
            i
        );
        assert_eq!(r.json(), recorded[i]["response_json"], "case {}", i);
    }
    // no image part -> 400, empty body
    let form = reqwest::multipart::Form::new().text("notimage", "x");
    let r = http
        .send(
            http.client
                .post(format!("{}/upload/image", http.base))
                .multipart(form),
        )
        .await;
    assert_eq!(
        (r.status, r.body.len(), r.content_type.as_str()),
        (400, 0, "")
    );
    // /upload/mask: the original's pixels with the mask's alpha
    let mask = {
        let img = image::RgbaImage::from_pixel(6, 4, image::Rgba([0, 0, 0, 7]));
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    };
    let form = reqwest::multipart::Form::new()
        .part(
            "image",
            reqwest::multipart::Part::bytes(mask).file_name("clipspace-mask.png"),
        )
        .text(
            "original_ref",
            r#"{"filename": "upl_9419fb.png", "subfolder": "", "type": "input"}"#,
        )
        .text("type", "input");
    let r = http
        .send(
            http.client
                .post(format!("{}/upload/mask", http.base))
                .multipart(form),
        )
        .await;
    assert_eq!(
        r.json(),
        json!({"name": "clipspace-mask.png", "subfolder": "", "type": "input"})
    );
    let masked = http
        .get("/view?filename=clipspace-mask.png&type=input")
        .await;
    let masked = image::load_from_memory(&masked.body).unwrap().to_rgba8();
    assert_eq!(masked.get_pixel(1, 1).0[3], 7);
    // a raw path escape in the file name or the subfolder -> 400
    let r = upload(&http, "../evil.png", a.clone(), &[]).await;
    assert_eq!((r.status, r.body.len()), (400, 0));
    let r = upload(&http, "x.png", a.clone(), &[("subfolder", "../..")]).await;
    assert_eq!(r.status, 400);

    // /view serves what was stored (b overwrote a at the top level)
    let top = http.get("/view?filename=upl_9419fb.png&type=input").await;
    assert_eq!((top.status, top.body.to_vec()), (200, b.clone()));
    assert_eq!(top.disposition, "filename=\"upl_9419fb.png\"");
    let sub = http
        .get("/view?filename=upl_9419fb.png&type=input&subfolder=sub")
        .await;
    assert_eq!(sub.body.to_vec(), a);

    // LoadImage takes dimensions from the file; "subfolder/name" works too
    let mut ws = connect(&comfy, "c-up").await;
    next_json(&mut ws).await;
    for (image, prefix, dims) in [
        (name, "inverted", (4, 6)),
        ("sub/upl_9419fb.png", "inverted", (6, 4)),
    ] {
        let prompt = json!({
            "1": {"class_type": "LoadImage", "inputs": {"image": image}},
            "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
            "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": prefix}}
        });
        let pid = http.queue(&prompt, Some("c-up")).await;
        let frames = frames_until_done(&mut ws, &pid).await;
        let executed = frames.iter().find(|f| f.ty() == "executed").unwrap();
        let file = executed.json()["data"]["output"]["images"][0]["filename"]
            .as_str()
            .unwrap()
            .to_string();
        let png = http.get(&format!("/view?filename={}", file)).await;
        let img = image::load_from_memory(&png.body).unwrap();
        assert_eq!((img.width(), img.height()), dims);
    }
    // object_info lists the uploaded input images
    let oi = http.get("/object_info/LoadImage").await.json();
    assert_eq!(
        oi["LoadImage"]["input"]["required"]["image"][0],
        json!([
            "..%2Fevil.png",
            "clipspace-mask.png",
            "upl_9419fb (1).png",
            "upl_9419fb.png"
        ])
    );
    comfy.shutdown().await;
}

// ---------------------------------------------------------------- (d) /view

#[tokio::test]
async fn view_status_codes_and_conversions() {
    let comfy = FakeComfy::start().await;
    let http = Http::new(&comfy);
    let mut ws = connect(&comfy, "c-view").await;
    next_json(&mut ws).await;
    let pid = http.queue(&basic_prompt("rust_test"), Some("c-view")).await;
    frames_until_done(&mut ws, &pid).await;

    let cases: Vec<(&str, u16, &str)> = vec![
        (
            "/view?filename=rust_test_00001_.png&subfolder=&type=output",
            200,
            "image/png",
        ),
        ("/view?filename=rust_test_00001_.png", 200, "image/png"),
        ("/api/view?filename=rust_test_00001_.png", 200, "image/png"),
        (
            "/view?filename=rust_test_00001_.png%20%5Boutput%5D&type=input",
            200,
            "image/png",
        ),
        (
            "/view?filename=rust_test_00001_.png&type=output&preview=webp;50",
            200,
            "image/webp",
        ),
        (
            "/view?filename=rust_test_00001_.png&type=output&preview=jpeg;80",
            200,
            "image/jpeg",
        ),
        (
            "/view?filename=rust_test_00001_.png&type=output&preview=png",
            200,
            "image/webp",
        ),
        (
            "/view?filename=rust_test_00001_.png&type=output&channel=a",
            200,
            "image/png",
        ),
        (
            "/view?filename=rust_test_00001_.png&type=output&channel=rgb",
            200,
            "image/png",
        ),
        ("/view?filename=does_not_exist.png&type=output", 404, ""),
        ("/view?filename=rust_test_00001_.png&type=input", 404, ""),
        ("/view?filename=../x.png&type=output", 400, ""),
        ("/view?filename=/etc/passwd", 400, ""),
        ("/view?filename=x.png&type=bogus", 400, ""),
        ("/view?filename=&type=output", 400, ""),
        ("/view?filename=x.png&subfolder=../..", 403, ""),
        ("/view?filename=x.png&subfolder=/etc", 403, ""),
        ("/view?type=output", 404, ""),
    ];
    for (path, status, ct) in cases {
        let r = http.get(path).await;
        assert_eq!(
            (r.status, r.content_type.as_str()),
            (status, ct),
            "{}",
            path
        );
        if status != 200 {
            assert!(r.body.is_empty(), "{}", path);
        } else {
            assert_eq!(
                r.disposition, "filename=\"rust_test_00001_.png\"",
                "{}",
                path
            );
            let magic = match ct {
                "image/webp" => "52494646",
                "image/jpeg" => "ffd8ffe0",
                _ => "89504e47",
            };
            assert_eq!(hex(&r.body[..4]), magic, "{}", path);
        }
    }
    let alpha = http
        .get("/view?filename=rust_test_00001_.png&channel=a")
        .await;
    let img = image::load_from_memory(&alpha.body).unwrap().to_rgba8();
    assert_eq!(img.get_pixel(0, 0).0, [0, 0, 0, 255]);
    comfy.shutdown().await;
}

// ---------------------------------------------------------------- (e) interrupt, queue

#[tokio::test]
async fn interrupt_matches_transcript() {
    let comfy = FakeComfy::start_with(FakeOptions {
        time_scale: 0.2,
        ..FakeOptions::default()
    })
    .await;
    let http = Http::new(&comfy);
    let cid = "c-int";
    let mut ws = connect(&comfy, cid).await;
    next_json(&mut ws).await;

    // progress_testsleep first (it also warms EmptyImage, as in the recording session)
    let t = transcript("progress_testsleep.json");
    let idx = recorded_posts(&t)[0].0;
    let mut req = events(&t)[idx]["request_json"].clone();
    req["client_id"] = json!(cid);
    let r = http.post_json("/prompt", &req).await;
    let pid = r.json()["prompt_id"].as_str().unwrap().to_string();
    let got: Vec<Value> = frames_until_done(&mut ws, &pid)
        .await
        .iter()
        .map(frame_value)
        .collect();
    let want = recorded_run(&t, idx, "ws");
    let want_types = collapsed_types(&want);
    // the recording session had EmptyImage cached already; a fresh fake runs it first
    let got_types = collapsed_types(&got);
    assert_eq!(got_types[..4], want_types[..4]);
    assert_eq!(
        got_types[got_types.len() - 9..],
        want_types[want_types.len() - 9..]
    );
    let last_prog = got.iter().rev().find(|f| f["type"] == "progress").unwrap();
    assert_eq!(last_prog["data"]["value"], json!(0.05));
    assert_eq!(last_prog["data"]["max"], json!(0.05));

    let t = transcript("interrupt.json");
    let posts = recorded_posts(&t);
    // 1: targeted interrupt of another prompt is a no-op, of this prompt interrupts it
    let mut req = posts[0].1["request_json"].clone();
    req["client_id"] = json!(cid);
    let pid = http.post_json("/prompt", &req).await.json()["prompt_id"]
        .as_str()
        .unwrap()
        .to_string();
    let head = frames_until_type(&mut ws, "progress").await;
    assert_eq!(
        head.iter().map(Frame::ty).collect::<Vec<_>>(),
        [
            "status",
            "status",
            "execution_start",
            "execution_cached",
            "progress_state",
            "executing",
            "progress_state",
            "progress"
        ]
    );
    assert_eq!(head[3].json()["data"]["nodes"], json!(["1"]));
    let r = http
        .post_json("/interrupt", &json!({"prompt_id": "someone-else"}))
        .await;
    assert_eq!(
        (r.status, r.body.len(), r.content_type.as_str()),
        (200, 0, "")
    );
    frames_until_type(&mut ws, "progress").await; // still running
    http.post_json("/interrupt", &json!({"prompt_id": pid}))
        .await;
    let tail = frames_until_done(&mut ws, &pid).await;
    let tail_types: Vec<String> = tail
        .iter()
        .map(Frame::ty)
        .filter(|t| !t.starts_with("progress"))
        .collect();
    assert_eq!(tail_types, ["execution_interrupted", "status", "executing"]);
    let interrupted = tail
        .iter()
        .find(|f| f.ty() == "execution_interrupted")
        .unwrap();
    assert_eq!(
        normalize(interrupted.json(), &[(&pid, "P")]),
        json!({"type": "execution_interrupted", "data": {"prompt_id": "P", "node_id": "2", "node_type": "TestSleep", "executed": [], "timestamp": 0}})
    );
    let rec_pid = posts[0].1["response_json"]["prompt_id"].as_str().unwrap();
    let rec_cid = posts[0].1["request_json"]["client_id"].as_str().unwrap();
    let rec_hist = events(&t)
        .iter()
        .find(|e| e["path"] == format!("/history/{}", rec_pid))
        .unwrap();
    assert_eq!(
        history_normalized(&http.history_entry(&pid).await, &pid, cid),
        history_normalized(&rec_hist["response_json"][rec_pid], rec_pid, rec_cid)
    );

    // 2: global interrupt with no body
    let mut req = posts[1].1["request_json"].clone();
    req["client_id"] = json!(cid);
    let pid = http.post_json("/prompt", &req).await.json()["prompt_id"]
        .as_str()
        .unwrap()
        .to_string();
    frames_until_type(&mut ws, "progress").await;
    let r = http
        .send(http.client.post(format!("{}/interrupt", http.base)))
        .await;
    assert_eq!(r.status, 200);
    let tail = frames_until_done(&mut ws, &pid).await;
    let tail_types: Vec<String> = tail
        .iter()
        .map(Frame::ty)
        .filter(|t| !t.starts_with("progress"))
        .collect();
    assert_eq!(tail_types, ["execution_interrupted", "status", "executing"]);
    comfy.shutdown().await;
}

#[tokio::test]
async fn queue_delete_and_clear_touch_pending_only() {
    let comfy = FakeComfy::start_with(FakeOptions {
        time_scale: 1.0,
        ..FakeOptions::default()
    })
    .await;
    let http = Http::new(&comfy);
    // The prompts belong to another client id, so this socket sees only status broadcasts.
    let mut obs = connect(&comfy, "c-observer").await;
    next_json(&mut obs).await;
    let mut statuses = Vec::new();
    let mut expect_status = |v: Value| {
        assert_eq!(v["type"], "status", "{}", v);
        statuses.push(
            v["data"]["status"]["exec_info"]["queue_remaining"]
                .as_u64()
                .unwrap(),
        );
    };
    let a = http.queue(&sleep_prompt(20.0), Some("c-q")).await;
    expect_status(next_json(&mut obs).await); // put
    expect_status(next_json(&mut obs).await); // worker get
    let mut pending_ids = Vec::new();
    for s in [1.01, 1.02, 1.03] {
        pending_ids.push(http.queue(&sleep_prompt(s), Some("c-q")).await);
        expect_status(next_json(&mut obs).await);
    }
    let q = http.get("/queue").await.json();
    assert_eq!(q["queue_running"][0][1], json!(a));
    assert_eq!(
        q["queue_running"][0][2]["2"]["inputs"]["seconds"],
        json!(20.0)
    );
    assert_eq!(q["queue_running"][0][3], json!({"client_id": "c-q"}));
    assert_eq!(q["queue_running"][0][4], json!(["3"]));
    let pending: Vec<Value> = q["queue_pending"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i[1].clone())
        .collect();
    assert_eq!(
        pending,
        pending_ids.iter().map(|p| json!(p)).collect::<Vec<_>>()
    );

    http.post_json("/queue", &json!({"delete": [pending_ids[0]]}))
        .await;
    expect_status(next_json(&mut obs).await);
    let r = http.post_json("/queue", &json!({"delete": [a]})).await; // running: silent no-op
    assert_eq!(
        (r.status, r.body.len(), r.content_type.as_str()),
        (200, 0, "")
    );
    http.post_json("/queue", &json!({"clear": true})).await;
    expect_status(next_json(&mut obs).await);
    let q = http.get("/queue").await.json();
    assert_eq!(q["queue_pending"], json!([]));
    assert_eq!(q["queue_running"][0][1], json!(a));
    assert_eq!(
        http.get("/prompt").await.json(),
        json!({"exec_info": {"queue_remaining": 1}})
    );
    // malformed or missing bodies are 500s; /interrupt tolerates them (a global interrupt)
    assert_eq!(http.post_raw("/queue", "").await.status, 500);
    assert_eq!(http.post_raw("/history", "{x").await.status, 500);
    assert_eq!(http.post_raw("/free", "").await.status, 500);
    assert_eq!(http.post_raw("/interrupt", "not json").await.status, 200);
    expect_status(next_json(&mut obs).await); // A done
    assert_eq!(statuses, [1, 1, 2, 3, 4, 3, 1, 0]);
    let h = http.history_entry(&a).await;
    assert_eq!(h["status"]["status_str"], "error");
    assert_eq!(h["status"]["messages"][2][0], "execution_interrupted");
    comfy.shutdown().await;
}

// ---------------------------------------------------------------- (f) previews

#[tokio::test]
async fn ksampler_order_cache_and_progress_match_transcript() {
    let comfy = FakeComfy::start_with(options_with(pin_checkpoints)).await;
    let http = Http::new(&comfy);
    let t = transcript("ksampler_cold.json");
    let cid = "c-ks";
    let mut ws = connect(&comfy, cid).await;
    next_json(&mut ws).await;
    let posts = recorded_posts(&t);
    for (idx, _) in &posts {
        replay_and_compare(&http, &mut ws, cid, &t, *idx, "ws").await;
    }
    comfy.shutdown().await;
}

#[tokio::test]
async fn previews_metadata_vs_legacy() {
    let opts = FakeOptions {
        previews: true,
        ..options_with(pin_checkpoints)
    };
    let comfy = FakeComfy::start_with(opts).await;
    let http = Http::new(&comfy);
    let t = transcript("ksampler_preview_metadata.json");
    let posts = recorded_posts(&t);
    let prompt = posts[0].1["request_json"]["prompt"].clone();
    // The recorded runs saved ksampler_00005_/00006_: seed output/ so the counters line up.
    let seed = reqwest::multipart::Form::new()
        .part(
            "image",
            reqwest::multipart::Part::bytes(tiny_png(2, 2)).file_name("ksampler_00004_.png"),
        )
        .text("type", "output");
    let r = http
        .send(
            http.client
                .post(format!("{}/upload/image", http.base))
                .multipart(seed),
        )
        .await;
    assert_eq!(r.status, 200);

    // legacy client: progress_state, progress, then type 1 / JPEG
    let mut legacy = connect(&comfy, "c-legacy").await;
    next_json(&mut legacy).await;
    let pid = http.queue(&prompt, Some("c-legacy")).await;
    let frames = frames_until_done(&mut legacy, &pid).await;
    let ty: Vec<String> = frames.iter().map(Frame::ty).collect();
    let first_bin = ty
        .iter()
        .position(|t| t == "binary1")
        .expect("a legacy preview");
    assert_eq!(ty[first_bin - 2..first_bin], ["progress_state", "progress"]);
    assert_eq!(ty.iter().filter(|t| *t == "binary1").count(), 3);
    if let Frame::Bin(b) = &frames[first_bin] {
        assert_eq!(hex(&b[..10]), "0000000100000001ffd8");
    }

    // metadata client: feature_flags handshake, then type 4 before progress
    let mut meta = connect(&comfy, "c-meta").await;
    meta.send(Message::Text(
        r#"{"type": "feature_flags", "data": {"supports_preview_metadata": true}}"#.into(),
    ))
    .await
    .unwrap();
    assert_eq!(next_json(&mut meta).await["type"], "status");
    assert_eq!(
        next_json(&mut meta).await,
        json!({"type": "feature_flags", "data": {"supports_preview_metadata": true, "max_upload_size": 104857600}})
    );
    // the recorded second run (new seed, loader and encoders cached), frame by frame
    replay_and_compare(&http, &mut meta, "c-meta", &t, posts[1].0, "ws").await;
    comfy.shutdown().await;
}

#[tokio::test]
async fn save_image_websocket_frames_match_transcript() {
    let comfy = FakeComfy::start().await;
    let http = Http::new(&comfy);
    let t = transcript("ws_binary_images.json");
    let posts = recorded_posts(&t);
    let mut legacy = connect(&comfy, "c-wsl").await;
    next_json(&mut legacy).await;
    replay_and_compare(&http, &mut legacy, "c-wsl", &t, posts[0].0, "ws-legacy").await;
    let mut flags = connect(&comfy, "c-wsf").await;
    flags
        .send(Message::Text(
            r#"{"type":"feature_flags","data":{"supports_preview_metadata":true}}"#.into(),
        ))
        .await
        .unwrap();
    next_json(&mut flags).await;
    next_json(&mut flags).await;
    let (_, frames) =
        replay_and_compare(&http, &mut flags, "c-wsf", &t, posts[1].0, "ws-flags").await;
    let png = frames.iter().find_map(|f| match f {
        Frame::Bin(b) => Some(b.clone()),
        _ => None,
    });
    let png = png.unwrap();
    let len = u32::from_be_bytes(png[4..8].try_into().unwrap()) as usize;
    let img = image::load_from_memory(&png[8 + len..]).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (32, 16));
    assert_eq!(img.get_pixel(0, 0).0, [0x12, 0x34, 0x56]);
    comfy.shutdown().await;
}

/// The txt2img recordings (LoraLoader, KSampler, previews) replayed against the plain
/// fixture object_info, greeting included. `/free` between them empties the cache, as the
/// recording session did.
#[tokio::test]
async fn txt2img_fixture_recordings_replay() {
    let comfy = FakeComfy::start_with(FakeOptions {
        previews: true,
        ..FakeOptions::default()
    })
    .await;
    let http = Http::new(&comfy);
    for name in ["txt2img_ws_metadata.json", "txt2img_ws_legacy.json"] {
        let path = format!("{}/fixtures/{}", env!("CARGO_MANIFEST_DIR"), name);
        let rec: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        let rec_cid = rec["client_id"].as_str().unwrap();
        let rec_pid = rec["prompt_response"]["prompt_id"].as_str().unwrap();
        let cid = format!("replay-{}", name);
        let mut ws = connect(&comfy, &cid).await;
        if rec["sent_feature_flags"] == true {
            ws.send(Message::Text(
                r#"{"type": "feature_flags", "data": {"supports_preview_metadata": true}}"#.into(),
            ))
            .await
            .unwrap();
        }
        let want: Vec<Value> = events(&rec)
            .iter()
            .map(|e| {
                let v = if e["kind"] == "binary" {
                    let head = e["head_hex"].as_str().unwrap();
                    if e["type"] == 4 {
                        json!({"binary": 4, "metadata_len": u32::from_str_radix(&head[8..16], 16).unwrap(),
                               "metadata": e["metadata"]})
                    } else {
                        json!({"binary": e["type"], "format": e["format"]})
                    }
                } else {
                    e["msg"].clone()
                };
                normalize(&v, &[(rec_pid, "P"), (rec_cid, "C")])
            })
            .collect();
        let greeting = if rec["sent_feature_flags"] == true {
            2
        } else {
            1
        };
        let mut got: Vec<Frame> = Vec::new();
        for _ in 0..greeting {
            got.push(next_frame(&mut ws).await);
        }
        let pid = http.queue(&rec["prompt"], Some(&cid)).await;
        got.extend(frames_until_done(&mut ws, &pid).await);
        let got: Vec<Value> = got
            .iter()
            .map(|f| {
                let mut v = frame_value(f);
                if let Some(m) = v.as_object_mut() {
                    m.remove("magic");
                }
                normalize(&v, &[(&pid, "P"), (cid.as_str(), "C")])
            })
            .collect();
        assert_eq!(types(&got), types(&want), "{}", name);
        assert_eq!(got, want, "{}", name);
        let r = http
            .post_json(
                "/free",
                &json!({"unload_models": true, "free_memory": true}),
            )
            .await;
        assert_eq!((r.status, r.body.len()), (200, 0));
    }
    comfy.shutdown().await;
}

// ---------------------------------------------------------------- other transcripts

#[tokio::test]
async fn execution_error_matches_transcript() {
    let comfy = FakeComfy::start().await;
    let http = Http::new(&comfy);
    let t = transcript("execution_error.json");
    let cid = "c-err";
    let mut ws = connect(&comfy, cid).await;
    next_json(&mut ws).await;
    let idx = recorded_posts(&t)[0].0;
    let rec_pid = events(&t)[idx]["response_json"]["prompt_id"]
        .as_str()
        .unwrap();
    let rec_cid = events(&t)[idx]["request_json"]["client_id"]
        .as_str()
        .unwrap();
    let mut req = events(&t)[idx]["request_json"].clone();
    req["client_id"] = json!(cid);
    let pid = http.post_json("/prompt", &req).await.json()["prompt_id"]
        .as_str()
        .unwrap()
        .to_string();
    let strip_tb = |mut v: Value| {
        if let Some(tb) = v.pointer_mut("/data/traceback") {
            *tb = json!([]);
        }
        v
    };
    let got: Vec<Value> = frames_until_done(&mut ws, &pid)
        .await
        .iter()
        .map(|f| strip_tb(normalize(&frame_value(f), &[(&pid, "P"), (cid, "C")])))
        .collect();
    let want: Vec<Value> = recorded_run(&t, idx, "ws")
        .iter()
        .map(|v| strip_tb(normalize(v, &[(rec_pid, "P"), (rec_cid, "C")])))
        .collect();
    assert_eq!(got, want);
    let mut h = history_normalized(&http.history_entry(&pid).await, &pid, cid);
    let rec = events(&t)
        .iter()
        .find(|e| e["path"] == format!("/history/{}", rec_pid))
        .unwrap();
    let mut rh = history_normalized(&rec["response_json"][rec_pid], rec_pid, rec_cid);
    for e in [&mut h, &mut rh] {
        e["status"]["messages"][2][1]["traceback"] = json!([]);
    }
    assert_eq!(h, rh);
    comfy.shutdown().await;
}

#[tokio::test]
async fn no_client_id_broadcasts_progress_only() {
    let comfy = FakeComfy::start().await;
    let http = Http::new(&comfy);
    let t = transcript("no_client_id.json");
    let mut ws = connect(&comfy, "observer").await;
    next_json(&mut ws).await;
    let idx = recorded_posts(&t)[0].0;
    let req = events(&t)[idx]["request_json"].clone();
    let pid = http.post_json("/prompt", &req).await.json()["prompt_id"]
        .as_str()
        .unwrap()
        .to_string();
    let rec_pid = events(&t)[idx]["response_json"]["prompt_id"]
        .as_str()
        .unwrap();
    let want: Vec<Value> = events(&t)[idx + 1..]
        .iter()
        .filter(|e| e["kind"] == "ws")
        .map(|e| normalize(&e["msg"], &[(rec_pid, "P")]))
        .collect();
    let mut got = Vec::new();
    while got.len() < want.len() {
        got.push(normalize(&next_json(&mut ws).await, &[(&pid, "P")]));
    }
    assert_eq!(got, want);
    let h = http.history_entry(&pid).await;
    assert_eq!(h["prompt"][3], json!({}));
    assert_eq!(
        h["outputs"]["3"]["images"][0]["filename"],
        "nocid_00001_.png"
    );
    comfy.shutdown().await;
}

#[tokio::test]
async fn reconnect_gets_current_node_and_observer_sees_status_only() {
    let comfy = FakeComfy::start_with(FakeOptions {
        time_scale: 0.5,
        ..FakeOptions::default()
    })
    .await;
    let http = Http::new(&comfy);
    let mut owner = connect(&comfy, "owner").await;
    next_json(&mut owner).await;
    let mut observer = connect(&comfy, "watcher").await;
    next_json(&mut observer).await;
    let pid = http.queue(&sleep_prompt(1.5), Some("owner")).await;
    loop {
        let f = next_json(&mut owner).await;
        if f["type"] == "executing" && f["data"]["node"] == "2" {
            break;
        }
    }
    owner.close(None).await.unwrap();
    drop(owner);
    // wait until the server has dropped the old socket, then reconnect with the same id
    let deadline = Instant::now() + WAIT;
    while comfy.ws_connection_count() != 1 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut owner2 = connect(&comfy, "owner").await;
    assert_eq!(
        next_json(&mut owner2).await,
        json!({"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 1}}, "sid": "owner"}})
    );
    assert_eq!(
        next_json(&mut owner2).await,
        json!({"type": "executing", "data": {"node": "2"}})
    );
    let rest = frames_until_done(&mut owner2, &pid).await;
    assert!(rest.iter().any(|f| f.ty() == "executed"));
    // the observer saw only status broadcasts: put, get, done
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(
            next_json(&mut observer).await["type"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(seen, ["status", "status", "status"]);
    assert_eq!(comfy.ws_connects_total(), 3);
    comfy.shutdown().await;
}

// ---------------------------------------------------------------- faults

#[tokio::test]
async fn fault_drop_ws_after_job_messages() {
    let comfy = FakeComfy::start().await;
    let http = Http::new(&comfy);
    let mut ws = connect(&comfy, "c-drop").await;
    next_json(&mut ws).await;
    comfy.faults().drop_ws_after_job_messages(3);
    let pid = http.queue(&basic_prompt("dropped"), Some("c-drop")).await;
    let mut got = Vec::new();
    loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("timeout")
        {
            Some(Ok(Message::Text(t))) => got.push(
                serde_json::from_str::<Value>(&t).unwrap()["type"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            ),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => break,
        }
    }
    assert_eq!(
        got,
        [
            "status",
            "status",
            "execution_start",
            "execution_cached",
            "progress_state"
        ]
    );
    // the job finishes server-side
    let h = http.history_entry(&pid).await;
    assert_eq!(h["status"]["status_str"], "success");
    let deadline = Instant::now() + WAIT;
    while comfy.ws_connection_count() != 0 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    comfy.shutdown().await;
}

#[tokio::test]
async fn fault_http_failures_delay_and_malformed_json() {
    let comfy = FakeComfy::start().await;
    let http = Http::new(&comfy);
    comfy.faults().fail_next_http(2);
    for _ in 0..2 {
        let r = http.get("/system_stats").await;
        assert_eq!(r.status, 500);
        assert_eq!(r.content_type, "text/plain; charset=utf-8");
        assert_eq!(
            r.text(),
            "500 Internal Server Error\n\nServer got itself in trouble"
        );
    }
    assert_eq!(http.get("/system_stats").await.status, 200);

    comfy.faults().malformed_json_next("/history");
    let r = http.get("/api/history/abc").await;
    assert_eq!(
        (r.status, r.content_type.as_str()),
        (200, "application/json; charset=utf-8")
    );
    assert!(serde_json::from_slice::<Value>(&r.body).is_err());
    assert_eq!(http.get("/api/history/abc").await.json(), json!({}));

    comfy.faults().http_delay(Duration::from_millis(300));
    let start = Instant::now();
    assert_eq!(http.get("/prompt").await.status, 200);
    assert!(start.elapsed() >= Duration::from_millis(300));
    comfy.faults().http_delay(Duration::ZERO);

    comfy.faults().reject_ws(true);
    let err = tokio_tungstenite::connect_async(comfy.ws_url("x"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("503"), "{}", err);
    comfy.faults().reject_ws(false);
    connect(&comfy, "x").await;
    comfy.shutdown().await;
}

#[tokio::test]
async fn fault_interrupt_after_progress_and_unknown_events() {
    let comfy = FakeComfy::start_with(FakeOptions {
        step_delay: Duration::from_millis(1),
        ..options_with(pin_checkpoints)
    })
    .await;
    let http = Http::new(&comfy);
    let t = transcript("ksampler_cold.json");
    let mut prompt = recorded_posts(&t)[0].1["request_json"]["prompt"].clone();
    prompt["3"]["inputs"]["steps"] = json!(10);
    let mut ws = connect(&comfy, "c-f").await;
    next_json(&mut ws).await;
    comfy.faults().interrupt_after_progress(2);
    comfy.faults().send_unknown_events(true);
    let pid = http.queue(&prompt, Some("c-f")).await;
    let frames = frames_until_done(&mut ws, &pid).await;
    let ty: Vec<String> = frames.iter().map(Frame::ty).collect();
    assert_eq!(ty.iter().filter(|t| *t == "progress").count(), 2);
    assert!(ty.iter().any(|t| t == "crystools.monitor"));
    assert!(ty.iter().any(|t| t == "fake_custom_node.event"));
    let intr = frames
        .iter()
        .find(|f| f.ty() == "execution_interrupted")
        .unwrap();
    assert_eq!(intr.json()["data"]["node_id"], "3");
    assert_eq!(intr.json()["data"]["node_type"], "KSampler");
    assert_eq!(intr.json()["data"]["executed"], json!(["4", "5", "7", "6"]));

    comfy.faults().send_unknown_events(false);
    comfy.faults().send_oversized_frame(3 * 1024 * 1024);
    match tokio::time::timeout(WAIT, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
    {
        Message::Text(t) => {
            assert_eq!(t.len(), 3 * 1024 * 1024);
            assert_eq!(
                serde_json::from_str::<Value>(&t).unwrap()["type"],
                "fake.oversized"
            );
        }
        other => panic!("{:?}", other),
    }
    comfy.shutdown().await;
}

#[tokio::test]
async fn restart_forgets_state_but_keeps_files() {
    let comfy = FakeComfy::start().await;
    let http = Http::new(&comfy);
    let mut ws = connect(&comfy, "c-r").await;
    next_json(&mut ws).await;
    let pid = http.queue(&basic_prompt("keep"), Some("c-r")).await;
    frames_until_done(&mut ws, &pid).await;
    comfy.restart().await;
    // the socket was cut
    let end = tokio::time::timeout(WAIT, ws.next()).await.unwrap();
    assert!(!matches!(end, Some(Ok(Message::Text(_)))));
    assert_eq!(
        http.get(&format!("/history/{}", pid)).await.json(),
        json!({})
    );
    assert_eq!(http.get("/view?filename=keep_00001_.png").await.status, 200);
    let mut ws = connect(&comfy, "c-r").await;
    next_json(&mut ws).await;
    let r = http
        .post_json(
            "/prompt",
            &json!({"prompt": basic_prompt("keep"), "client_id": "c-r"}),
        )
        .await
        .json();
    assert_eq!(r["number"], json!(0));
    let frames = frames_until_done(&mut ws, r["prompt_id"].as_str().unwrap()).await;
    // caches were dropped: everything runs again, and the counter continues on disk
    assert_eq!(frames[3].json()["data"]["nodes"], json!([]));
    let executed = frames.iter().find(|f| f.ty() == "executed").unwrap();
    assert_eq!(
        executed.json()["data"]["output"]["images"][0]["filename"],
        "keep_00002_.png"
    );
    comfy.shutdown().await;
}

// ---------------------------------------------------------------- misc routes

#[tokio::test]
async fn misc_routes_origin_and_options() {
    let comfy = FakeComfy::start().await;
    let http = Http::new(&comfy);
    let features = http.get("/api/features").await;
    assert_eq!(
        features.text(),
        r#"{"supports_preview_metadata": true, "max_upload_size": 104857600}"#
    );
    assert_eq!(http.get("/embeddings").await.json(), json!([]));
    let models = http.get("/models").await.json();
    assert_eq!(models.as_array().unwrap().len(), 20);
    let ckpts = http.get("/models/checkpoints").await.json();
    let expected: Vec<Value> = default_object_info()["CheckpointLoaderSimple"]["input"]["required"]
        ["ckpt_name"][0]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(ckpts, Value::Array(expected));
    let nope = http.get("/models/nope").await;
    assert_eq!((nope.status, nope.body.len()), (404, 0));
    assert_eq!(http.get("/object_info/NoSuchNode").await.json(), json!({}));
    let ei = http.get("/object_info/EmptyImage").await.json();
    assert_eq!(ei["EmptyImage"]["output"], json!(["IMAGE"]));
    let all = http.get("/object_info").await.json();
    assert!(all.get("KSampler").is_some());
    let stats = http.get("/system_stats").await.json();
    assert!(stats["devices"][0]["vram_total"].is_u64());
    assert_eq!(http.get("/history/unknown").await.json(), json!({}));
    assert_eq!(
        http.get("/queue").await.json(),
        json!({"queue_running": [], "queue_pending": []})
    );

    // origin check: mismatching Origin on a loopback Host -> 403 empty; matching is fine
    let r = http
        .send(
            http.client
                .post(format!("{}/prompt", http.base))
                .header("Origin", "http://evil.example")
                .body("{}"),
        )
        .await;
    assert_eq!((r.status, r.body.len()), (403, 0));
    let r = http
        .send(
            http.client
                .get(format!("{}/prompt", http.base))
                .header("Origin", comfy.url()),
        )
        .await;
    assert_eq!(r.status, 200);
    let r = http
        .send(
            http.client
                .request(reqwest::Method::OPTIONS, format!("{}/anything", http.base)),
        )
        .await;
    assert_eq!((r.status, r.body.len()), (200, 0));
    assert_eq!(http.get("/nope").await.status, 404);
    // a plain GET on /ws is not an upgrade
    let r = http.get("/ws").await;
    assert_eq!(r.status, 400);
    assert!(r.text().starts_with("No WebSocket UPGRADE hdr"));
    assert!(comfy
        .requests()
        .iter()
        .any(|r| r.method == "OPTIONS" && r.path == "/anything"));
    let posted = comfy
        .requests()
        .into_iter()
        .find(|r| r.method == "POST")
        .unwrap();
    assert_eq!(posted.path, "/prompt");
    assert_eq!(posted.json(), Some(json!({})));

    // /api/ws works too; client pings are answered; no server pings
    let url = format!("ws://{}/api/ws?clientId=api-client", comfy.addr());
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    assert_eq!(next_json(&mut ws).await["data"]["sid"], "api-client");
    ws.send(Message::Ping(b"hi".to_vec())).await.unwrap();
    let pong = tokio::time::timeout(WAIT, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(pong, Message::Pong(b"hi".to_vec()));
    // without clientId the server invents a uuid4 hex
    let (mut anon, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", comfy.addr()))
        .await
        .unwrap();
    let sid = next_json(&mut anon).await["data"]["sid"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        sid.len() == 32 && sid.bytes().all(|c| c.is_ascii_hexdigit()),
        "{}",
        sid
    );
    assert_eq!(comfy.ws_connection_count(), 2);
    comfy.shutdown().await;
}

#[tokio::test]
async fn history_listing_and_deletion() {
    let comfy = FakeComfy::start().await;
    let http = Http::new(&comfy);
    let mut ids = Vec::new();
    for i in 0..3 {
        let id = format!("h{}", i);
        let body = json!({"prompt": basic_prompt("hist"), "prompt_id": id});
        assert_eq!(http.post_json("/prompt", &body).await.status, 200);
        http.history_entry(&id).await;
        ids.push(id);
    }
    let keys = |v: Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(http.get("/history").await.json()), ids);
    assert_eq!(
        keys(http.get("/history?max_items=2").await.json()),
        ["h1", "h2"]
    );
    assert_eq!(
        keys(http.get("/history?max_items=1&offset=0").await.json()),
        ["h0"]
    );
    assert_eq!(http.get("/history?max_items=x").await.status, 500);
    http.post_json("/history", &json!({"delete": ["h1"]})).await;
    assert_eq!(keys(http.get("/history").await.json()), ["h0", "h2"]);
    http.post_json("/history", &json!({"clear": true})).await;
    assert_eq!(http.get("/history").await.json(), json!({}));
    comfy.shutdown().await;
}

#[tokio::test]
async fn output_nodes_and_image_tracking() {
    let opts = options_with(|info| {
        info["UpscaleModelLoader"]["input"]["required"]["model_name"] = json!(["COMBO", {"multiselect": false, "options": ["RealESRGAN_x2.pth", "4x-Ultra.pth"]}]);
    });
    let comfy = FakeComfy::start_with(opts).await;
    let http = Http::new(&comfy);
    let mut ws = connect(&comfy, "c-out").await;
    next_json(&mut ws).await;
    let prompt = json!({
        "1": {"class_type": "EmptyImage", "inputs": {"width": 10, "height": 6, "batch_size": 2, "color": 255}},
        "2": {"class_type": "ImageScaleBy", "inputs": {"image": ["1", 0], "upscale_method": "nearest-exact", "scale_by": 1.5}},
        "3": {"class_type": "UpscaleModelLoader", "inputs": {"model_name": "RealESRGAN_x2.pth"}},
        "4": {"class_type": "ImageUpscaleWithModel", "inputs": {"upscale_model": ["3", 0], "image": ["2", 0]}},
        "5": {"class_type": "RepeatImageBatch", "inputs": {"image": ["4", 0], "amount": 2}},
        "6": {"class_type": "SaveImage", "inputs": {"images": ["5", 0], "filename_prefix": "sub/dir/out"}},
        "7": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
        "8": {"class_type": "SaveAnimatedWEBP", "inputs": {"images": ["1", 0], "filename_prefix": "anim", "fps": 6.0, "lossless": true, "quality": 80, "method": "default"}}
    });
    let pid = http.queue(&prompt, Some("c-out")).await;
    frames_until_done(&mut ws, &pid).await;
    let h = http.history_entry(&pid).await;
    let saved = h["outputs"]["6"]["images"].as_array().unwrap();
    assert_eq!(saved.len(), 4);
    assert_eq!(
        saved[3],
        json!({"filename": "out_00004_.png", "subfolder": "sub/dir", "type": "output"})
    );
    let png = http
        .get("/view?filename=out_00001_.png&subfolder=sub/dir")
        .await;
    let img = image::load_from_memory(&png.body).unwrap();
    assert_eq!((img.width(), img.height()), (30, 18)); // 10x6 * 1.5 * 2
    let prev = h["outputs"]["7"]["images"].as_array().unwrap();
    let name = prev[0]["filename"].as_str().unwrap();
    assert!(
        name.starts_with("ComfyUI_temp_") && name.ends_with("_00001_.png") && name.len() == 29,
        "{}",
        name
    );
    assert_eq!(prev[0]["type"], "temp");
    assert_eq!(h["outputs"]["8"]["animated"], json!([true]));
    let webp = http.get("/view?filename=anim_00001_.webp").await;
    assert_eq!(
        (webp.status, webp.content_type.as_str()),
        (200, "image/webp")
    );
    assert_eq!(&webp.body[..4], b"RIFF");
    // a model missing from the list fails at execution (V3 combos are not validated)
    let bad = json!({
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
        "3": {"class_type": "UpscaleModelLoader", "inputs": {"model_name": "nope.pth"}},
        "4": {"class_type": "ImageUpscaleWithModel", "inputs": {"upscale_model": ["3", 0], "image": ["1", 0]}},
        "6": {"class_type": "PreviewImage", "inputs": {"images": ["4", 0]}}
    });
    let pid = http.queue(&bad, Some("c-out")).await;
    let frames = frames_until_done(&mut ws, &pid).await;
    let err = frames.iter().find(|f| f.ty() == "execution_error").unwrap();
    assert_eq!(err.json()["data"]["exception_type"], "FileNotFoundError");
    comfy.shutdown().await;
}

// ---------------------------------------------------------------- robustness

/// Random graphs over the fixture's classes with random links and literals: every answer is
/// 200/400/500, nothing panics, and the worker drains the queue.
#[tokio::test]
async fn random_prompts_never_break_the_server() {
    use rand::{Rng, SeedableRng};
    let comfy = FakeComfy::start_with(FakeOptions {
        step_delay: Duration::ZERO,
        time_scale: 0.0,
        ..FakeOptions::default()
    })
    .await;
    let http = Http::new(&comfy);
    let info = default_object_info().as_object().unwrap().clone();
    let classes: Vec<&String> = info.keys().collect();
    // FAKE_COMFY_FUZZ_SEED / FAKE_COMFY_FUZZ_ROUNDS widen the search when debugging.
    let env = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(env("FAKE_COMFY_FUZZ_SEED", 7));
    let literal = |rng: &mut rand::rngs::StdRng| -> Value {
        match rng.gen_range(0..9) {
            0 => json!(rng.gen_range(-5..300)),
            1 => json!(rng.gen_range(-1.0..2.0)),
            2 => json!("abc"),
            3 => json!(null),
            4 => json!(true),
            5 => json!([1]),
            6 => json!({"__value__": [1, 2]}),
            7 => json!(rng.gen_range(1..40_000)),
            _ => json!("tiny_sd15_random.safetensors"),
        }
    };
    let mut statuses = std::collections::BTreeMap::new();
    let outputs_of = |class: &str| -> Vec<String> {
        info[class]["output"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap_or("?").to_string())
            .collect()
    };
    let link_inputs = |class: &str| -> Vec<(String, String)> {
        info[class]["input"]["required"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, spec)| {
                        let t = spec[0].as_str()?;
                        (!["INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"].contains(&t))
                            .then(|| (k.clone(), t.to_string()))
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    for _ in 0..env("FAKE_COMFY_FUZZ_ROUNDS", 250) {
        let n = rng.gen_range(1..9);
        let mut prompt = serde_json::Map::new();
        // (node id, slot, type) of what exists so far, to link type-correctly most of the time
        let mut available: Vec<(String, usize, String)> = Vec::new();
        for id in 0..n {
            let fits = |c: &str| {
                link_inputs(c).iter().all(|(_, t)| {
                    available
                        .iter()
                        .any(|(_, _, o)| o == t || o == "*" || t == "*")
                })
            };
            let mut class = classes[rng.gen_range(0..classes.len())];
            for _ in 0..20 {
                if fits(class) || rng.gen_bool(0.05) {
                    break;
                }
                class = classes[rng.gen_range(0..classes.len())];
            }
            let mut inputs = serde_json::Map::new();
            let names = info[class]["input"]["required"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            for (name, spec) in names {
                if rng.gen_bool(0.03) {
                    continue; // missing input
                }
                let ty = spec[0].as_str().unwrap_or("");
                let v = match ty {
                    "INT" | "FLOAT" | "STRING" | "BOOLEAN" => {
                        if rng.gen_bool(0.8) {
                            spec[1].get("default").cloned().unwrap_or(json!(1))
                        } else {
                            literal(&mut rng)
                        }
                    }
                    "COMBO" => spec[1]["options"].get(0).cloned().unwrap_or(json!("x")),
                    _ if spec[0].is_array() => {
                        if rng.gen_bool(0.9) {
                            spec[0].get(0).cloned().unwrap_or(json!("x"))
                        } else {
                            literal(&mut rng)
                        }
                    }
                    _ => {
                        let ok: Vec<&(String, usize, String)> = available
                            .iter()
                            .filter(|(_, _, o)| o == ty || o == "*" || ty == "*")
                            .collect();
                        if !ok.is_empty() && rng.gen_bool(0.95) {
                            let (src, slot, _) = ok[rng.gen_range(0..ok.len())];
                            json!([src, slot])
                        } else {
                            json!([rng.gen_range(0..n + 1).to_string(), rng.gen_range(-1..3)])
                        }
                    }
                };
                inputs.insert(name, v);
            }
            for (slot, t) in outputs_of(class).into_iter().enumerate() {
                available.push((id.to_string(), slot, t));
            }
            prompt.insert(
                id.to_string(),
                json!({"class_type": class, "inputs": inputs}),
            );
        }
        if let Some((src, slot, _)) = available.iter().find(|(_, _, t)| t == "IMAGE") {
            prompt.insert(
                "out".into(),
                json!({"class_type": "PreviewImage", "inputs": {"images": [src, slot]}}),
            );
        }
        let mut body = json!({"prompt": prompt, "client_id": "fuzz"});
        if rng.gen_bool(0.2) {
            body["number"] = literal(&mut rng);
        }
        let r = http.post_json("/prompt", &body).await;
        assert!(
            [200, 400, 500].contains(&r.status),
            "{} -> {}",
            body,
            r.status
        );
        *statuses.entry(r.status).or_insert(0) += 1;
    }
    assert!(
        statuses.get(&200).copied().unwrap_or(0) > 10,
        "{:?}",
        statuses
    );
    assert!(
        statuses.get(&400).copied().unwrap_or(0) > 10,
        "{:?}",
        statuses
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let q = http.get("/prompt").await.json();
        if q["exec_info"]["queue_remaining"] == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "queue did not drain");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let hist = http.get("/history").await.json();
    let errors = hist
        .as_object()
        .unwrap()
        .values()
        .filter(|h| h["status"]["status_str"] == "error")
        .count();
    eprintln!(
        "random prompts: {:?}, {} ran with an execution error",
        statuses, errors
    );
    assert_eq!(
        hist.as_object().unwrap().len() as u64,
        statuses.get(&200).copied().unwrap_or(0)
    );
    comfy.shutdown().await;
}
