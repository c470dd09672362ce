//! A Discord stand-in on 127.0.0.1 for tests/discord.rs: over TLS as discord.com, the REST routes dongcha calls (complete message
//! objects, multipart bodies with `payload_json` and files, 429s with `retry-after`) and a gateway
//! websocket whose address `GET /gateway/bot` gives: Hello, heartbeat ACKs, READY on Identify, dispatches
//! with sequence numbers, and on Resume the events after the client's sequence, then RESUMED. A test
//! queues events, drops the connection, and reads what the bot did.
//! Needs `botapi` (the multipart parser) beside it in the test crate.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use serde_json::{Value, json};
use tokio::sync::Notify;

pub const BOT_ID: u64 = 900_000_000_000_000_001;
pub const APP_ID: u64 = 900_000_000_000_000_002;
pub const GUILD: u64 = 900_000_000_000_000_003;

/// One REST call the bot made.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    /// After `/api/v10`.
    pub path: String,
    /// The JSON body (a multipart body's `payload_json`).
    pub body: Value,
    /// A multipart body's files: (field name, bytes).
    pub files: Vec<(String, Vec<u8>)>,
    pub at: Instant,
}

impl Call {
    /// The first embed's description, Markdown escapes undone.
    pub fn description(&self) -> String {
        unescape(
            self.body["embeds"][0]["description"]
                .as_str()
                .unwrap_or_default(),
        )
    }

    /// Every embed's text (descriptions, field names and values, footers) and the content, unescaped.
    pub fn text(&self) -> String {
        let mut out = vec![unescape(self.body["content"].as_str().unwrap_or_default())];
        for e in self.body["embeds"].as_array().into_iter().flatten() {
            out.push(unescape(e["description"].as_str().unwrap_or_default()));
            for f in e["fields"].as_array().into_iter().flatten() {
                out.push(unescape(f["name"].as_str().unwrap_or_default()));
                out.push(unescape(f["value"].as_str().unwrap_or_default()));
            }
            out.push(unescape(e["footer"]["text"].as_str().unwrap_or_default()));
        }
        out.join("\n")
    }
}

/// Discord Markdown's backslash escapes undone.
pub fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut esc = false;
    for c in s.chars() {
        if c == '\\' && !esc {
            esc = true;
            continue;
        }
        esc = false;
        out.push(c);
    }
    out
}

#[derive(Default)]
struct Inner {
    port: u16,
    /// Events to dispatch (sent as soon as a session is up).
    pending: VecDeque<Value>,
    /// Every dispatch sent in this session, by sequence number.
    log: Vec<(u64, Value)>,
    seq: u64,
    session: Option<String>,
    identifies: usize,
    /// The sequence number each Resume carried.
    resumes: Vec<u64>,
    /// The dispatches sent again on resumes.
    replayed: Vec<Value>,
    /// Close the socket right after the next dispatch (as a network failure would).
    drop_after_next: bool,
    /// On Resume, replay this many events the client had already been sent as well (Discord may
    /// deliver an event again).
    replay_overlap: u64,
    calls: Vec<Call>,
    /// POST /channels/{id}/messages calls answered with 429 before the next ones go through.
    fail_posts: usize,
    retry_after: f64,
    rejected_at: Vec<Instant>,
    next_id: u64,
}

#[derive(Clone, Default)]
pub struct DiscordApi {
    inner: Arc<Mutex<Inner>>,
    wake: Arc<Notify>,
    pub addr: Option<std::net::SocketAddr>,
    ca: Option<Arc<tempfile::NamedTempFile>>,
}

/// TLS on a loopback listener, for axum.
struct TlsListener {
    tcp: tokio::net::TcpListener,
    tls: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, peer)) = self.tcp.accept().await else {
                continue;
            };
            if let Ok(tls) = self.tls.accept(tcp).await {
                return (tls, peer);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

fn user(id: u64, name: &str, bot: bool) -> Value {
    json!({"id": id.to_string(), "username": name, "discriminator": "0", "global_name": name,
           "avatar": null, "bot": bot})
}

impl DiscordApi {
    /// Starts the stand-in: its REST API over TLS as `discord.com` (a certificate made now, written to
    /// [`Self::ca_file`]) and its gateway as plain websockets, both on ephemeral loopback ports, on their
    /// own runtime thread.
    pub fn start() -> Self {
        let mut api = DiscordApi::default();
        let cert = rcgen::generate_simple_self_signed(vec!["discord.com".to_string()]).unwrap();
        let ca = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(ca.path(), cert.cert.pem()).unwrap();
        api.ca = Some(Arc::new(ca));
        let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(cert.key_pair.serialize_der().into()),
        )
        .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let state = api.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let app = axum::Router::new()
                    .route("/api/v10/gateway", get(gateway))
                    .route("/api/v10/gateway/bot", get(gateway))
                    .route("/ws", any(ws))
                    .route("/api/v10/{*rest}", any(rest))
                    .with_state(state.clone());
                let rest_l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let gw_l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let addr = rest_l.local_addr().unwrap();
                state.inner.lock().unwrap().port = gw_l.local_addr().unwrap().port();
                tx.send(addr).unwrap();
                let tls = TlsListener {
                    tcp: rest_l,
                    tls: tokio_rustls::TlsAcceptor::from(Arc::new(tls)),
                };
                let rest = axum::serve(tls, app.clone());
                let gw = axum::serve(gw_l, app);
                let _ = tokio::join!(rest.into_future(), gw.into_future());
            });
        });
        api.addr = Some(rx.recv().unwrap());
        api
    }

    /// Where the bot sends discord.com's traffic (`[discord] api_addr`).
    pub fn rest_addr(&self) -> String {
        self.addr.unwrap().to_string()
    }

    /// The stand-in's certificate, to trust (`[discord] ca_file`).
    pub fn ca_file(&self) -> PathBuf {
        self.ca.as_ref().unwrap().path().to_path_buf()
    }

    fn next_id(&self) -> u64 {
        let mut g = self.inner.lock().unwrap();
        g.next_id += 1;
        // Snowflake-sized and increasing.
        1_300_000_000_000_000_000 + g.next_id
    }

    fn queue(&self, event: &str, d: Value) {
        self.inner
            .lock()
            .unwrap()
            .pending
            .push_back(json!({"t": event, "d": d}));
        self.wake.notify_waiters();
    }

    /// A slash command from `user` in a guild channel (with `roles`), or in a DM when `channel` is the
    /// user's DM channel and `guild` false; returns the interaction id.
    pub fn command(
        &self,
        user_id: u64,
        roles: &[u64],
        channel: u64,
        guild: bool,
        name: &str,
        option: Option<(&str, &str)>,
    ) -> u64 {
        let id = self.next_id();
        let options: Vec<Value> = option
            .map(|(n, v)| json!({"name": n, "type": 3, "value": v}))
            .into_iter()
            .collect();
        let mut d = json!({
            "id": id.to_string(), "application_id": APP_ID.to_string(), "type": 2,
            "token": format!("itoken-{id}"), "version": 1, "channel_id": channel.to_string(),
            "data": {"id": "7000", "name": name, "type": 1, "options": options},
            "locale": "zh-CN", "app_permissions": "0", "entitlements": [],
            "authorizing_integration_owners": {}, "context": if guild { 0 } else { 1 },
            "attachment_size_limit": 10_485_760});
        let u = user(user_id, &format!("user{user_id}"), false);
        if guild {
            d["guild_id"] = json!(GUILD.to_string());
            d["guild_locale"] = json!("zh-CN");
            d["member"] = json!({"user": u, "roles": roles.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
                "joined_at": "2026-01-01T00:00:00Z", "deaf": false, "mute": false, "flags": 0,
                "permissions": "0"});
        } else {
            d["user"] = u;
        }
        self.queue("INTERACTION_CREATE", d);
        id
    }

    /// A message from `user_id` in `channel` (a guild channel when `guild`, else a DM); `mention` adds
    /// the bot to its mentions. Returns the message id.
    pub fn message(
        &self,
        user_id: u64,
        channel: u64,
        guild: bool,
        text: &str,
        mention: bool,
    ) -> u64 {
        let id = self.next_id();
        let mut d = message_object(
            id,
            channel,
            user(user_id, &format!("user{user_id}"), false),
            text,
        );
        if mention {
            d["mentions"] = json!([user(BOT_ID, "dongcha", true)]);
        }
        if guild {
            d["guild_id"] = json!(GUILD.to_string());
            d["member"] = json!({"roles": [], "joined_at": "2026-01-01T00:00:00Z", "deaf": false,
                "mute": false, "flags": 0});
        }
        self.queue("MESSAGE_CREATE", d);
        id
    }

    /// Closes the gateway connection right after the next dispatch.
    pub fn drop_after_next(&self) {
        self.inner.lock().unwrap().drop_after_next = true;
    }

    pub fn replay_overlap(&self, n: u64) {
        self.inner.lock().unwrap().replay_overlap = n;
    }

    pub fn fail_next_posts(&self, n: usize, retry_after: f64) {
        let mut g = self.inner.lock().unwrap();
        g.fail_posts = n;
        g.retry_after = retry_after;
    }

    pub fn identifies(&self) -> usize {
        self.inner.lock().unwrap().identifies
    }

    pub fn resumes(&self) -> Vec<u64> {
        self.inner.lock().unwrap().resumes.clone()
    }

    /// The interaction and message ids sent again on resumes.
    pub fn replayed_ids(&self) -> Vec<u64> {
        let g = self.inner.lock().unwrap();
        g.replayed
            .iter()
            .filter_map(|v| v["d"]["id"].as_str()?.parse().ok())
            .collect()
    }

    pub fn rejected_at(&self) -> Vec<Instant> {
        self.inner.lock().unwrap().rejected_at.clone()
    }

    pub fn calls(&self) -> Vec<Call> {
        self.inner.lock().unwrap().calls.clone()
    }

    /// The calls whose path starts with `prefix` (e.g. `/interactions/ID/`, `/channels/ID/messages`).
    pub fn calls_to(&self, method: &str, prefix: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.method == method && c.path.starts_with(prefix))
            .collect()
    }

    /// The edits of an interaction's deferred reply (its answer).
    pub fn answers_of(&self, interaction: u64) -> Vec<Call> {
        self.calls_to(
            "PATCH",
            &format!("/webhooks/{APP_ID}/itoken-{interaction}/messages/@original"),
        )
    }

    /// Waits until `pred` holds over the calls, or panics after `limit`.
    pub fn wait_for(
        &self,
        limit: Duration,
        what: &str,
        pred: impl Fn(&[Call]) -> bool,
    ) -> Vec<Call> {
        let t = Instant::now();
        loop {
            let c = self.calls();
            if pred(&c) {
                return c;
            }
            assert!(
                t.elapsed() < limit,
                "timed out waiting for {what}; calls so far: {:#?}",
                c.iter()
                    .map(|c| format!("{} {} {}", c.method, c.path, c.body))
                    .collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn message_object(id: u64, channel: u64, author: Value, text: &str) -> Value {
    json!({"id": id.to_string(), "channel_id": channel.to_string(), "author": author,
           "content": text, "timestamp": "2026-12-01T09:00:00.000000+00:00", "edited_timestamp": null,
           "tts": false, "mention_everyone": false, "mentions": [], "mention_roles": [],
           "attachments": [], "embeds": [], "pinned": false, "type": 0})
}

async fn gateway(State(s): State<DiscordApi>) -> axum::Json<Value> {
    let port = s.inner.lock().unwrap().port;
    axum::Json(
        json!({"url": format!("ws://127.0.0.1:{port}/ws"), "shards": 1,
        "session_start_limit": {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1}}),
    )
}

async fn ws(State(s): State<DiscordApi>, up: WebSocketUpgrade) -> Response {
    up.on_upgrade(move |sock| session(s, sock))
}

async fn send(sock: &mut WebSocket, v: Value) -> bool {
    sock.send(WsMessage::Text(v.to_string().into()))
        .await
        .is_ok()
}

/// Sends a dispatch with the next sequence number, logging it for resumes.
fn stamp(s: &DiscordApi, ev: &Value) -> Value {
    let mut g = s.inner.lock().unwrap();
    g.seq += 1;
    let seq = g.seq;
    let v = json!({"op": 0, "s": seq, "t": ev["t"], "d": ev["d"]});
    g.log.push((seq, v.clone()));
    v
}

async fn session(s: DiscordApi, mut sock: WebSocket) {
    if !send(
        &mut sock,
        json!({"op": 10, "d": {"heartbeat_interval": 41250}}),
    )
    .await
    {
        return;
    }
    let mut live = false;
    loop {
        // Pending dispatches first, once the session is up.
        if live {
            let next = s.inner.lock().unwrap().pending.pop_front();
            if let Some(ev) = next {
                let v = stamp(&s, &ev);
                if !send(&mut sock, v).await {
                    return;
                }
                let drop_now = std::mem::take(&mut s.inner.lock().unwrap().drop_after_next);
                if drop_now {
                    // No close frame: the connection just ends.
                    return;
                }
                continue;
            }
        }
        let woken = s.wake.notified();
        let m = tokio::select! {
            m = sock.recv() => m,
            _ = woken => continue,
            _ = tokio::time::sleep(Duration::from_millis(50)) => continue,
        };
        let Some(Ok(WsMessage::Text(t))) = m else {
            match m {
                Some(Ok(_)) => continue,
                _ => return,
            }
        };
        let v: Value = serde_json::from_str(&t).unwrap_or(Value::Null);
        match v["op"].as_u64() {
            Some(1) => {
                let seq = s.inner.lock().unwrap().seq;
                let _ = send(&mut sock, json!({"op": 11, "d": seq})).await;
            }
            Some(2) => {
                let (port, session) = {
                    let mut g = s.inner.lock().unwrap();
                    g.identifies += 1;
                    g.log.clear();
                    let id = format!("session-{}", g.identifies);
                    g.session = Some(id.clone());
                    (g.port, id)
                };
                let ready = stamp(
                    &s,
                    &json!({"t": "READY", "d": {
                    "v": 10, "user": user(BOT_ID, "dongcha", true), "guilds": [],
                    "session_id": session, "resume_gateway_url": format!("ws://127.0.0.1:{port}/ws"),
                    "shard": [0, 1], "application": {"id": APP_ID.to_string(), "flags": 0}}}),
                );
                if !send(&mut sock, ready).await {
                    return;
                }
                live = true;
            }
            Some(6) => {
                let from = v["d"]["seq"].as_u64().unwrap_or(0);
                let replay: Vec<Value> = {
                    let mut g = s.inner.lock().unwrap();
                    g.resumes.push(from);
                    let after = from.saturating_sub(g.replay_overlap);
                    g.log
                        .iter()
                        .filter(|(seq, _)| *seq > after)
                        .map(|(_, v)| v.clone())
                        .collect()
                };
                s.inner
                    .lock()
                    .unwrap()
                    .replayed
                    .extend(replay.iter().cloned());
                for r in replay {
                    if !send(&mut sock, r).await {
                        return;
                    }
                }
                let resumed = stamp(&s, &json!({"t": "RESUMED", "d": {}}));
                if !send(&mut sock, resumed).await {
                    return;
                }
                live = true;
            }
            _ => {}
        }
    }
}

async fn rest(
    State(s): State<DiscordApi>,
    method: Method,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let path = format!("/{path}");
    let multipart = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("multipart/"));
    let (json_body, files) = if multipart {
        let parts = crate::botapi::multipart(&headers, &body);
        let payload = parts
            .iter()
            .find(|(n, _)| n == "payload_json")
            .and_then(|(_, b)| serde_json::from_slice(b).ok())
            .unwrap_or(Value::Null);
        let files = parts
            .into_iter()
            .filter(|(n, _)| n != "payload_json")
            .collect();
        (payload, files)
    } else {
        (
            serde_json::from_slice(&body).unwrap_or(Value::Null),
            Vec::new(),
        )
    };
    let is_post_message =
        method == Method::POST && path.starts_with("/channels/") && path.ends_with("/messages");
    {
        let mut g = s.inner.lock().unwrap();
        if is_post_message && g.fail_posts > 0 {
            g.fail_posts -= 1;
            g.rejected_at.push(Instant::now());
            let ra = g.retry_after;
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", ra.to_string()), ("x-ratelimit-scope", "user".to_string())],
                axum::Json(json!({"message": "You are being rate limited.", "retry_after": ra, "global": false})),
            )
                .into_response();
        }
        g.calls.push(Call {
            method: method.to_string(),
            path: path.clone(),
            body: json_body.clone(),
            files,
            at: Instant::now(),
        });
    }
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let bot = user(BOT_ID, "dongcha", true);
    match (method.as_str(), segs.as_slice()) {
        ("PUT", ["applications", ..]) => axum::Json(json!([])).into_response(),
        ("POST", ["interactions", _, _, "callback"]) => StatusCode::NO_CONTENT.into_response(),
        ("POST", ["channels", _, "typing"]) => StatusCode::NO_CONTENT.into_response(),
        ("DELETE", _) => StatusCode::NO_CONTENT.into_response(),
        ("POST", ["channels", ch, "messages"]) => {
            let id = s.next_id();
            let ch: u64 = ch.parse().unwrap_or(0);
            let mut m = message_object(
                id,
                ch,
                bot,
                json_body["content"].as_str().unwrap_or_default(),
            );
            m["embeds"] = json_body["embeds"].clone();
            if m["embeds"].is_null() {
                m["embeds"] = json!([]);
            }
            axum::Json(m).into_response()
        }
        ("PATCH" | "POST", ["webhooks", ..]) => {
            let id = s.next_id();
            let mut m = message_object(
                id,
                1,
                bot,
                json_body["content"].as_str().unwrap_or_default(),
            );
            m["webhook_id"] = json!(APP_ID.to_string());
            axum::Json(m).into_response()
        }
        _ => (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"message": "404: Not Found", "code": 0})),
        )
            .into_response(),
    }
}
