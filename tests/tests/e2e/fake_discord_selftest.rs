//! Self-tests of the fake Discord, driven with a raw HTTP client (reqwest) and a raw gateway
//! client (tokio-tungstenite). Every wait is bounded by a timeout.

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tests::fake_discord::{
    FakeDiscord, InteractionSpec, MessageOrigin, APPLICATION_ID, GENERAL_CHANNEL_ID, GUILD_ID,
    NSFW_CHANNEL_ID,
};
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------- helpers

struct Rest {
    client: reqwest::Client,
    base: String,
    auth: String,
}

impl Rest {
    fn new(d: &FakeDiscord) -> Rest {
        Rest {
            client: reqwest::Client::new(),
            base: d.api_url(),
            auth: format!("Bot {}", d.token()),
        }
    }

    fn req(&self, method: reqwest::Method, route: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}{}", self.base, route))
            .header("Authorization", &self.auth)
            .timeout(WAIT)
    }

    /// Status and JSON body (Null when empty).
    async fn call(
        &self,
        method: reqwest::Method,
        route: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut r = self.req(method, route);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.expect("request");
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.expect("body");
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn multipart(
        &self,
        method: reqwest::Method,
        route: &str,
        payload: Value,
        files: &[(&str, usize)],
    ) -> (u16, Value) {
        let mut form = reqwest::multipart::Form::new().text("payload_json", payload.to_string());
        for (i, (name, size)) in files.iter().enumerate() {
            let part = reqwest::multipart::Part::bytes(vec![7u8; *size])
                .file_name(name.to_string())
                .mime_str("image/png")
                .expect("mime");
            form = form.part(format!("files[{i}]"), part);
        }
        let resp = self
            .req(method, route)
            .multipart(form)
            .send()
            .await
            .expect("request");
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.expect("body");
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }
}

use reqwest::Method;

async fn connect(d: &FakeDiscord) -> Ws {
    let url = format!("{}/?v=10", d.gateway_url());
    let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
        .await
        .expect("connect in time")
        .expect("connect");
    ws
}

/// The next frame: JSON for text, `{"close": code}` for a close frame.
async fn next(ws: &mut Ws) -> Value {
    tokio::time::timeout(WAIT, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => return serde_json::from_str(&t).expect("json"),
                Some(Ok(Message::Close(f))) => {
                    return json!({"close": f.map(|f| u16::from(f.code))})
                }
                Some(Ok(_)) => continue,
                other => panic!("socket ended: {other:?}"),
            }
        }
    })
    .await
    .expect("a frame in time")
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string())).await.expect("send");
}

fn identify(token: &str) -> Value {
    json!({"op": 2, "d": {
        "token": token, "intents": 1, "compress": true, "shard": [0, 1],
        "properties": {"os": "linux", "browser": "raw", "device": "raw"},
    }})
}

/// Connects, checks Hello, identifies and reads READY + GUILD_CREATE; returns the session id.
async fn identified(d: &FakeDiscord) -> (Ws, String) {
    let mut ws = connect(d).await;
    let hello = next(&mut ws).await;
    assert_eq!(hello["op"], 10);
    assert!(hello["d"]["heartbeat_interval"].as_u64().is_some());
    send(&mut ws, identify(&format!("Bot {}", d.token()))).await;
    let ready = next(&mut ws).await;
    assert_eq!(
        (ready["op"].clone(), ready["t"].clone()),
        (json!(0), json!("READY"))
    );
    assert_eq!(ready["s"], 1);
    assert_eq!(ready["d"]["application"]["id"], APPLICATION_ID.to_string());
    let gc = next(&mut ws).await;
    assert_eq!(gc["t"], "GUILD_CREATE");
    assert_eq!(gc["s"], 2);
    let sid = ready["d"]["session_id"].as_str().expect("sid").to_string();
    (ws, sid)
}

// ---------------------------------------------------------------- REST

#[tokio::test]
async fn rest_basics_and_recording() {
    let d = FakeDiscord::start().await;
    let rest = Rest::new(&d);

    let (st, gw) = rest.call(Method::GET, "/gateway", None).await;
    assert_eq!(
        (st, gw["url"].as_str()),
        (200, Some(d.gateway_url().as_str()))
    );
    let (st, gwb) = rest.call(Method::GET, "/gateway/bot", None).await;
    assert_eq!((st, gwb["shards"].clone()), (200, json!(1)));
    let (st, me) = rest.call(Method::GET, "/users/@me", None).await;
    assert_eq!((st, me["bot"].clone()), (200, json!(true)));
    let (st, app) = rest
        .call(Method::GET, "/oauth2/applications/@me", None)
        .await;
    assert_eq!(
        (st, app["id"].clone()),
        (200, json!(APPLICATION_ID.to_string()))
    );

    // No token: 401.
    let resp = reqwest::Client::new()
        .get(format!("{}/users/@me", d.api_url()))
        .timeout(WAIT)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 401);

    // Unknown route: 404 with a Discord-style body, and listed.
    let (st, body) = rest.call(Method::GET, "/nope/nothing", None).await;
    assert_eq!((st, body["code"].clone()), (404, json!(0)));
    assert!(body["message"].as_str().is_some());
    let unknown = d.unknown_route_requests();
    assert_eq!(unknown.len(), 1);
    assert_eq!(unknown[0].route(), "/nope/nothing");

    // Command registration echoes with ids and is stored.
    let cmds = json!([{"name": "imagine", "description": "Generate", "options": []}]);
    let route = format!("/applications/{APPLICATION_ID}/commands");
    let (st, echoed) = rest.call(Method::PUT, &route, Some(cmds.clone())).await;
    assert_eq!(st, 200);
    assert!(echoed[0]["id"].as_str().is_some());
    assert_eq!(echoed[0]["type"], 1);
    assert_eq!(d.commands(None).len(), 1);
    let route = format!("/applications/{APPLICATION_ID}/guilds/{GUILD_ID}/commands");
    let (st, echoed) = rest.call(Method::PUT, &route, Some(cmds)).await;
    assert_eq!(
        (st, echoed[0]["guild_id"].clone()),
        (200, json!(GUILD_ID.to_string()))
    );
    assert_eq!(d.commands(Some(GUILD_ID)).len(), 1);

    // Channels: the NSFW one is flagged, unknown ones are 10003.
    let (st, ch) = rest
        .call(Method::GET, &format!("/channels/{NSFW_CHANNEL_ID}"), None)
        .await;
    assert_eq!((st, ch["nsfw"].clone()), (200, json!(true)));
    let (st, body) = rest.call(Method::GET, "/channels/123", None).await;
    assert_eq!((st, body["code"].clone()), (404, json!(10003)));
    let (st, roles) = rest
        .call(Method::GET, &format!("/guilds/{GUILD_ID}/roles"), None)
        .await;
    assert_eq!((st, roles.as_array().map(Vec::len)), (200, Some(2)));

    // Channel messages: JSON and multipart, edit, delete.
    let route = format!("/channels/{GENERAL_CHANNEL_ID}/messages");
    let (st, msg) = rest
        .call(Method::POST, &route, Some(json!({"content": "hi"})))
        .await;
    assert_eq!((st, msg["content"].clone()), (200, json!("hi")));
    let (st, msg2) = rest
        .multipart(
            Method::POST,
            &route,
            json!({"content": "pic"}),
            &[("a.png", 30)],
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(msg2["attachments"][0]["filename"], "a.png");
    assert_eq!(msg2["attachments"][0]["size"], 30);
    let rec = d
        .wait_for_request(|r| !r.files.is_empty(), WAIT)
        .await
        .expect("multipart recorded");
    assert_eq!(rec.json, Some(json!({"content": "pic"})));
    assert_eq!(rec.files[0].field, "files[0]");
    assert_eq!(rec.files[0].filename.as_deref(), Some("a.png"));
    assert_eq!(rec.files[0].data.len(), 30);
    let mid = msg["id"].as_str().expect("id").to_string();
    let (st, edited) = rest
        .call(
            Method::PATCH,
            &format!("{route}/{mid}"),
            Some(json!({"content": "hey"})),
        )
        .await;
    assert_eq!((st, edited["content"].clone()), (200, json!("hey")));
    assert!(edited["edited_timestamp"].is_string());
    let (st, _) = rest
        .call(Method::DELETE, &format!("{route}/{mid}"), None)
        .await;
    assert_eq!(st, 204);
    let (st, _) = rest
        .call(Method::GET, &format!("{route}/{mid}"), None)
        .await;
    assert_eq!(st, 404);
    let (st, body) = rest
        .call(
            Method::POST,
            &route,
            Some(json!({"content": "x".repeat(2001)})),
        )
        .await;
    assert_eq!((st, body["code"].clone()), (400, json!(50035)));
    // Components past Discord's limits are refused as Discord does.
    let button = |id: &str| json!({"type": 2, "style": 2, "label": "x", "custom_id": id});
    let row = |n: usize, tag: &str| json!({"type": 1, "components": (0..n).map(|i| button(&format!("{tag}{i}"))).collect::<Vec<_>>()});
    let fits = json!({"content": "ok", "components": (0..5).map(|r| row(5, &format!("r{r}-"))).collect::<Vec<_>>()});
    let six_rows =
        json!({"components": (0..6).map(|r| row(1, &format!("r{r}-"))).collect::<Vec<_>>()});
    let six_buttons = json!({"components": [row(6, "a")]});
    let duplicate = json!({"components": [row(1, "same"), row(1, "same")]});
    let long_id = json!({"components": [{"type": 1, "components": [button(&"i".repeat(101))]}]});
    let (st, _) = rest.call(Method::POST, &route, Some(fits)).await;
    assert_eq!(st, 200, "5 rows of 5 fit");
    for bad in [six_rows, six_buttons, duplicate, long_id] {
        let (st, body) = rest.call(Method::POST, &route, Some(bad.clone())).await;
        assert_eq!((st, body["code"].clone()), (400, json!(50035)), "{bad}");
    }

    let requests = d.requests();
    assert!(requests.iter().all(|r| r.status != 0));
    assert!(requests
        .iter()
        .filter(|r| r.route() == "/users/@me")
        .any(|r| r.authorization.as_deref() == Some("Bot fake-bot-token")));
    d.shutdown().await;
}

// ---------------------------------------------------------------- gateway

#[tokio::test]
async fn gateway_identify_heartbeat_and_bad_token() {
    let d = FakeDiscord::start().await;

    let mut bad = connect(&d).await;
    assert_eq!(next(&mut bad).await["op"], 10);
    send(&mut bad, identify("wrong")).await;
    assert_eq!(next(&mut bad).await["close"], 4004);

    let (mut ws, sid) = identified(&d).await;
    assert_eq!(
        d.wait_for_session(WAIT).await.as_deref(),
        Some(sid.as_str())
    );

    send(&mut ws, json!({"op": 1, "d": 2})).await;
    assert_eq!(next(&mut ws).await["op"], 11);

    // The server asks for a heartbeat.
    assert_eq!(d.request_heartbeat(), 1);
    assert_eq!(next(&mut ws).await["op"], 1);

    // No ACK while the switch is on: once the fake has logged the heartbeat (it would have
    // queued the ACK right then), the next frame the client gets is a later dispatch.
    d.faults().set_no_heartbeat_ack(true);
    send(&mut ws, json!({"op": 1, "d": 3})).await;
    d.wait_for_frame(|f| !f.from_fake && f.op == 1 && f.d == json!(3), WAIT)
        .await
        .expect("heartbeat logged");
    d.dispatch("TEST_EVENT", json!({"x": 1})).expect("dispatch");
    let f = next(&mut ws).await;
    assert_eq!(
        (f["op"].clone(), f["t"].clone(), f["s"].clone()),
        (json!(0), json!("TEST_EVENT"), json!(3))
    );
    d.shutdown().await;
}

#[tokio::test]
async fn gateway_reconnect_resume_and_invalid_session() {
    let d = FakeDiscord::start().await;
    let (mut ws, sid) = identified(&d).await;

    assert_eq!(d.send_reconnect(), 1);
    assert_eq!(next(&mut ws).await["op"], 7);
    drop(ws);

    // Resume the session on a new connection: RESUMED continues the sequence.
    let mut ws = connect(&d).await;
    assert_eq!(next(&mut ws).await["op"], 10);
    send(
        &mut ws,
        json!({"op": 6, "d": {"token": d.token(), "session_id": sid, "seq": 2}}),
    )
    .await;
    let resumed = next(&mut ws).await;
    assert_eq!(
        (resumed["t"].clone(), resumed["s"].clone()),
        (json!("RESUMED"), json!(3))
    );
    let sent = d
        .send_interaction(InteractionSpec::command("ping"))
        .expect("send on resumed session");
    let f = next(&mut ws).await;
    assert_eq!(f["d"]["id"], sent.id.to_string());

    assert_eq!(d.send_invalid_session(false), 1);
    let inv = next(&mut ws).await;
    assert_eq!(
        (inv["op"].clone(), inv["d"].clone()),
        (json!(9), json!(false))
    );

    // Resuming an unknown session: op 9 false.
    let mut other = connect(&d).await;
    assert_eq!(next(&mut other).await["op"], 10);
    send(
        &mut other,
        json!({"op": 6, "d": {"token": d.token(), "session_id": "nope", "seq": 1}}),
    )
    .await;
    assert_eq!(next(&mut other).await["op"], 9);

    assert_eq!(d.close_gateway(4000, "test"), 2);
    assert_eq!(next(&mut ws).await["close"], 4000);
    assert_eq!(next(&mut other).await["close"], 4000);
    d.shutdown().await;
}

// ---------------------------------------------------------------- interactions

#[tokio::test]
async fn interaction_defer_edit_followups() {
    let d = FakeDiscord::start().await;
    let rest = Rest::new(&d);
    let (mut ws, _) = identified(&d).await;

    let spec = InteractionSpec::command("imagine")
        .option("prompt", "a cat")
        .option("steps", 20)
        .attachment("init", "cat.png", 1234)
        .in_channel(NSFW_CHANNEL_ID);
    let sent = d.send_interaction(spec).expect("send");
    let f = next(&mut ws).await;
    assert_eq!(f["t"], "INTERACTION_CREATE");
    assert_eq!(f["d"]["token"], sent.token.as_str());
    assert_eq!(f["d"]["channel"]["nsfw"], true);
    assert_eq!(f["d"]["data"]["options"].as_array().map(Vec::len), Some(3));

    let cb = format!("/interactions/{}/{}/callback", sent.id, sent.token);
    let (st, _) = rest.call(Method::POST, &cb, Some(json!({"type": 5}))).await;
    assert_eq!(st, 204);
    let rec = d
        .wait_for_request(|r| r.is_callback_for(sent.id), WAIT)
        .await
        .expect("callback recorded");
    assert_eq!(rec.callback_type(), Some(5));
    let (st, body) = rest.call(Method::POST, &cb, Some(json!({"type": 5}))).await;
    assert_eq!((st, body["code"].clone()), (400, json!(40060)));
    assert_eq!(d.interaction(sent.id).expect("known").acks, vec![5]);

    let hook = format!("/webhooks/{APPLICATION_ID}/{}", sent.token);
    let (st, orig) = rest
        .call(Method::GET, &format!("{hook}/messages/@original"), None)
        .await;
    assert_eq!(st, 200);
    assert_eq!(
        orig["flags"].as_u64().map(|f| f & 128),
        Some(128),
        "loading"
    );

    // The first follow-up after a defer edits the loading message.
    let (st, f1) = rest
        .call(Method::POST, &hook, Some(json!({"content": "first"})))
        .await;
    assert_eq!((st, f1["id"].clone()), (200, orig["id"].clone()));
    let (st, f2) = rest
        .call(
            Method::POST,
            &hook,
            Some(json!({"content": "second", "flags": 64})),
        )
        .await;
    assert_eq!(st, 200);
    assert_ne!(f2["id"], orig["id"]);

    // Edit @original with a file (multipart), then the follow-up, then delete it.
    let (st, edited) = rest
        .multipart(
            Method::PATCH,
            &format!("{hook}/messages/@original"),
            json!({"content": "done", "attachments": [{"id": 0, "filename": "out.png"}]}),
            &[("out.png", 100)],
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(edited["content"], "done");
    assert_eq!(edited["attachments"].as_array().map(Vec::len), Some(1));
    let f2id = f2["id"].as_str().expect("id");
    let (st, e2) = rest
        .call(
            Method::PATCH,
            &format!("{hook}/messages/{f2id}"),
            Some(json!({"content": "2b"})),
        )
        .await;
    assert_eq!((st, e2["content"].clone()), (200, json!("2b")));
    let (st, _) = rest
        .call(Method::DELETE, &format!("{hook}/messages/{f2id}"), None)
        .await;
    assert_eq!(st, 204);

    let msgs = d.messages();
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[0].origin, MessageOrigin::Original);
    assert_eq!(msgs[0].content(), "done");
    assert_eq!(msgs[0].files[0].filename, "out.png");
    assert!(msgs[1].deleted && msgs[1].ephemeral());

    // An ephemeral follow-up cannot be reached through the channel route.
    let (st, _) = rest
        .call(
            Method::GET,
            &format!("/channels/{NSFW_CHANNEL_ID}/messages/{f2id}"),
            None,
        )
        .await;
    assert_eq!(st, 404);
    d.shutdown().await;
}

#[tokio::test]
async fn interaction_attachments_are_downloadable() {
    let d = FakeDiscord::start().await;
    let rest = Rest::new(&d);
    let (mut ws, _) = identified(&d).await;

    let bytes: Vec<u8> = b"\x89PNG\r\n\x1a\n"
        .iter()
        .copied()
        .chain((0..5000u32).map(|i| (i * 31 % 251) as u8))
        .collect();
    let spec = InteractionSpec::command("edit")
        .option("prompt", "make it blue")
        .attachment_bytes("image", "in put.png", "image/png", bytes.clone())
        .attachment("mask", "mask.webp", 300);
    let sent = d.send_interaction(spec).expect("send");
    let f = next(&mut ws).await;
    assert_eq!(f["t"], "INTERACTION_CREATE");
    let data = &f["d"]["data"];
    let option_id = |name: &str| -> String {
        data["options"]
            .as_array()
            .expect("options")
            .iter()
            .find(|o| o["name"] == name)
            .and_then(|o| o["value"].as_str())
            .expect("attachment option")
            .to_string()
    };
    let image = &data["resolved"]["attachments"][option_id("image")];
    let mask = &data["resolved"]["attachments"][option_id("mask")];
    assert_eq!(image["size"], bytes.len());
    assert_eq!(image["content_type"], "image/png");
    assert_eq!(mask["size"], 300);
    let image_url = image["url"].as_str().expect("url").to_string();
    assert_eq!(
        image_url,
        format!(
            "{}/attachments/{}/in%20put.png",
            d.rest_url(),
            option_id("image")
        )
    );
    assert_eq!(sent.payload["data"]["resolved"], data["resolved"]);

    // The CDN needs no token and is not rate limited: a scripted 429 waits for the API call.
    d.faults().rate_limit_next(1, 0.1, false);
    let http = reqwest::Client::new();
    let get = |url: String| {
        let http = http.clone();
        async move {
            let resp = http.get(url).timeout(WAIT).send().await.expect("GET");
            let status = resp.status().as_u16();
            let ct = resp
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let body = resp.bytes().await.expect("body");
            (status, ct, body)
        }
    };
    let (st, ct, body) = get(image_url.clone()).await;
    assert_eq!((st, ct.as_str()), (200, "image/png"));
    assert_eq!(body.as_ref(), bytes.as_slice());
    let (st, ct, body) = get(mask["url"].as_str().expect("url").to_string()).await;
    assert_eq!((st, ct.as_str()), (200, "image/webp"));
    assert_eq!(body.as_ref(), vec![0u8; 300].as_slice());
    let (st, _) = rest.call(Method::GET, "/users/@me", None).await;
    assert_eq!(st, 429);

    // Unknown ids and wrong filenames are Discord-style 404s, not unknown routes.
    let base = d.rest_url();
    let image_id = option_id("image");
    for url in [
        format!("{base}/attachments/1/in%20put.png"),
        format!("{base}/attachments/{image_id}/other.png"),
    ] {
        let (st, _, body) = get(url).await;
        let err: Value = serde_json::from_slice(&body).expect("json error");
        assert_eq!((st, err["code"].clone()), (404, json!(10000)));
    }
    let downloads: Vec<_> = d
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/attachments/"))
        .collect();
    assert_eq!(downloads.len(), 4);
    assert_eq!(downloads[0].method, "GET");
    assert_eq!(
        downloads[0].path,
        format!("/attachments/{image_id}/in%20put.png")
    );
    assert_eq!(downloads[0].status, 200);
    assert!(d.unknown_route_requests().is_empty());

    // Files the bot uploads are served at their attachment URL too.
    let cb = format!("/interactions/{}/{}/callback", sent.id, sent.token);
    let (st, _) = rest
        .multipart(
            Method::POST,
            &cb,
            json!({"type": 4, "data": {"content": "done"}}),
            &[("out.png", 100)],
        )
        .await;
    assert_eq!(st, 204);
    let hook = format!("/webhooks/{APPLICATION_ID}/{}", sent.token);
    let (st, orig) = rest
        .call(Method::GET, &format!("{hook}/messages/@original"), None)
        .await;
    assert_eq!(st, 200);
    let out_url = orig["attachments"][0]["url"].as_str().expect("url");
    let (st, ct, body) = get(out_url.to_string()).await;
    assert_eq!((st, ct.as_str()), (200, "image/png"));
    assert_eq!(body.as_ref(), vec![7u8; 100].as_slice());
    d.shutdown().await;
}

#[tokio::test]
async fn component_and_modal_interactions() {
    let d = FakeDiscord::start().await;
    let rest = Rest::new(&d);
    let (mut ws, _) = identified(&d).await;

    // A button on a channel message; callback 7 updates that message.
    let (_, msg) = rest
        .call(
            Method::POST,
            &format!("/channels/{GENERAL_CHANNEL_ID}/messages"),
            Some(json!({"content": "result"})),
        )
        .await;
    let mid: u64 = msg["id"].as_str().and_then(|s| s.parse().ok()).expect("id");
    let sent = d
        .send_interaction(InteractionSpec::button("reroll:1", Some(mid)))
        .expect("send");
    let f = next(&mut ws).await;
    assert_eq!(f["d"]["type"], 3);
    assert_eq!(f["d"]["message"]["id"], mid.to_string());
    let cb = format!("/interactions/{}/{}/callback", sent.id, sent.token);
    let (st, _) = rest
        .call(
            Method::POST,
            &cb,
            Some(json!({"type": 7, "data": {"content": "updated"}})),
        )
        .await;
    assert_eq!(st, 204);
    assert_eq!(d.message(mid).expect("msg").content(), "updated");

    // Button → modal (9); modal submit → defer update (6); autocomplete → 8.
    let b = d
        .send_interaction(InteractionSpec::button("edit", None))
        .expect("send");
    next(&mut ws).await;
    let modal = json!({"type": 9, "data": {"custom_id": "m", "title": "Edit", "components": []}});
    let (st, _) = rest
        .call(
            Method::POST,
            &format!("/interactions/{}/{}/callback", b.id, b.token),
            Some(modal),
        )
        .await;
    assert_eq!(st, 204);
    let m = d
        .send_interaction(InteractionSpec::modal_submit("m", &[("prompt", "a dog")]))
        .expect("send");
    let f = next(&mut ws).await;
    assert_eq!(
        f["d"]["data"]["components"][0]["components"][0]["value"],
        "a dog"
    );
    let mcb = format!("/interactions/{}/{}/callback", m.id, m.token);
    let (st, body) = rest
        .call(Method::POST, &mcb, Some(json!({"type": 9})))
        .await;
    assert_eq!(
        (st, body["code"].clone()),
        (400, json!(50035)),
        "no modal for a modal"
    );
    let (st, _) = rest
        .call(Method::POST, &mcb, Some(json!({"type": 6})))
        .await;
    assert_eq!(st, 204);
    let a = d
        .send_interaction(InteractionSpec::autocomplete("imagine", "model", "sd"))
        .expect("send");
    let f = next(&mut ws).await;
    assert_eq!(f["d"]["type"], 4);
    let (st, _) = rest
        .call(
            Method::POST,
            &format!("/interactions/{}/{}/callback", a.id, a.token),
            Some(json!({"type": 8, "data": {"choices": []}})),
        )
        .await;
    assert_eq!(st, 204);
    d.shutdown().await;
}

// ---------------------------------------------------------------- switches

#[tokio::test]
async fn switches_ack_deadline_double_ack_and_token_expiry() {
    let d = FakeDiscord::start().await;
    let rest = Rest::new(&d);
    let (mut ws, _) = identified(&d).await;

    // Late ack: 10062.
    d.faults().set_ack_deadline(Some(Duration::from_millis(1)));
    let late = d
        .send_interaction(InteractionSpec::command("a"))
        .expect("send");
    next(&mut ws).await;
    tokio::time::sleep(Duration::from_millis(20)).await; // past the 1 ms deadline for sure
    let cb = format!("/interactions/{}/{}/callback", late.id, late.token);
    let (st, body) = rest.call(Method::POST, &cb, Some(json!({"type": 5}))).await;
    assert_eq!((st, body["code"].clone()), (404, json!(10062)));
    d.faults().set_ack_deadline(None);

    // Double ack allowed when the switch is off.
    d.faults().set_reject_double_ack(false);
    let twice = d
        .send_interaction(InteractionSpec::command("b"))
        .expect("send");
    next(&mut ws).await;
    let cb = format!("/interactions/{}/{}/callback", twice.id, twice.token);
    for _ in 0..2 {
        let (st, _) = rest.call(Method::POST, &cb, Some(json!({"type": 5}))).await;
        assert_eq!(st, 204);
    }

    // Expired tokens: 50027 with the chosen status.
    let hook = format!("/webhooks/{APPLICATION_ID}/{}", twice.token);
    d.faults().set_token_ttl(Duration::ZERO, 404);
    let (st, body) = rest
        .call(Method::POST, &hook, Some(json!({"content": "late"})))
        .await;
    assert_eq!((st, body["code"].clone()), (404, json!(50027)));
    d.faults().set_token_ttl(Duration::ZERO, 401);
    let (st, body) = rest
        .call(
            Method::PATCH,
            &format!("{hook}/messages/@original"),
            Some(json!({"content": "x"})),
        )
        .await;
    assert_eq!((st, body["code"].clone()), (401, json!(50027)));
    d.shutdown().await;
}

#[tokio::test]
async fn switches_sizes_rate_limits_and_latency() {
    let d = FakeDiscord::start().await;
    let rest = Rest::new(&d);
    let route = format!("/channels/{GENERAL_CHANNEL_ID}/messages");

    d.faults().set_max_body(100);
    let (st, body) = rest
        .call(
            Method::POST,
            &route,
            Some(json!({"content": "x".repeat(200)})),
        )
        .await;
    assert_eq!((st, body["code"].clone()), (413, json!(40005)));
    d.faults().set_max_body(1 << 20);
    d.faults().set_max_file(10);
    let (st, body) = rest
        .multipart(
            Method::POST,
            &route,
            json!({"content": "f"}),
            &[("big.png", 20)],
        )
        .await;
    assert_eq!((st, body["code"].clone()), (413, json!(40005)));
    assert!(d.messages().is_empty());

    d.faults().rate_limit_next(2, 1.5, false);
    for _ in 0..2 {
        let resp = rest
            .req(Method::GET, "/users/@me")
            .send()
            .await
            .expect("req");
        assert_eq!(resp.status().as_u16(), 429);
        let h = resp.headers();
        assert_eq!(
            h.get("retry-after").and_then(|v| v.to_str().ok()),
            Some("2")
        );
        assert_eq!(
            h.get("x-ratelimit-remaining").and_then(|v| v.to_str().ok()),
            Some("0")
        );
        assert!(h.get("x-ratelimit-reset-after").is_some());
        assert!(h.get("x-ratelimit-bucket").is_some());
        let body: Value = resp.json().await.expect("json");
        assert_eq!(body["retry_after"], 1.5);
        assert_eq!(body["global"], false);
        assert!(body["message"].is_string());
    }
    let (st, _) = rest.call(Method::GET, "/users/@me", None).await;
    assert_eq!(st, 200);

    d.faults().set_latency(Duration::from_millis(150));
    let t = Instant::now();
    let (st, _) = rest.call(Method::GET, "/users/@me", None).await;
    assert_eq!(st, 200);
    assert!(t.elapsed() >= Duration::from_millis(150));
    d.shutdown().await;
}
