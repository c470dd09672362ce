//! A Bot-API-compatible server on 127.0.0.1 for the Telegram tests: what Telegram documents for the
//! methods dongcha calls (complete objects, case-insensitive method names, getUpdates with offset,
//! timeout and limit, redelivery of unconfirmed updates, multipart sendPhoto, a method in a webhook's
//! response), plus what a test needs to steer: queued updates, recorded sends, injected 429s, held
//! requests.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::sync::Notify;

/// One thing the bot sent.
#[derive(Debug, Clone)]
pub struct Sent {
    pub method: String,
    pub chat_id: i64,
    /// The text (sendMessage) or caption (sendPhoto).
    pub text: String,
    pub parse_mode: Option<String>,
    /// sendPhoto's file bytes.
    pub photo: Option<Vec<u8>>,
    pub at: Instant,
    /// The message id the server gave it.
    pub message_id: i64,
}

#[derive(Default)]
struct Inner {
    updates: VecDeque<Value>,
    next_update: i64,
    sent: Vec<Sent>,
    calls: Vec<String>,
    /// sendMessage/sendPhoto calls answered with 429 before the next ones go through.
    fail_sends: usize,
    retry_after: u64,
    rejected_at: Vec<Instant>,
    /// Hold sendChatAction for this long (a kill during it hits a question not yet answered).
    hold_typing: Duration,
    typing_held: usize,
    commands: Option<Value>,
    /// getUpdates requests being answered now, and how many were refused because one already was
    /// (Telegram answers a second poller with 409 Conflict).
    polling: usize,
    conflicts: usize,
}

#[derive(Clone, Default)]
pub struct BotApi {
    inner: Arc<Mutex<Inner>>,
    changed: Arc<Notify>,
    pub addr: Option<std::net::SocketAddr>,
}

pub const BOT_ID: i64 = 5_000_000_001;
pub const BOT_USERNAME: &str = "dongcha_test_bot";

fn bot_user() -> Value {
    json!({"id": BOT_ID, "is_bot": true, "first_name": "dongcha", "username": BOT_USERNAME,
           "can_join_groups": true, "can_read_all_group_messages": false,
           "supports_inline_queries": false, "can_connect_to_business": false, "has_main_web_app": false})
}

impl BotApi {
    /// Starts the server on an ephemeral loopback port (on its own runtime thread, so it lives as long
    /// as the test needs it whatever runtime the test uses).
    pub fn start() -> Self {
        let mut api = BotApi::default();
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
                    .route("/{bot}/{method}", post(handle))
                    .with_state(state);
                let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(l.local_addr().unwrap()).unwrap();
                axum::serve(l, app).await.unwrap();
            });
        });
        api.addr = Some(rx.recv().unwrap());
        api
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr.unwrap())
    }

    /// Queues a private-chat text message from `user` (chat id = user id); returns its update id.
    pub fn message(&self, user: i64, text: &str) -> i64 {
        self.message_in(user, user, "private", text, Some("zh-hans"))
    }

    pub fn message_in(
        &self,
        user: i64,
        chat: i64,
        kind: &str,
        text: &str,
        lang: Option<&str>,
    ) -> i64 {
        self.message_replying(user, chat, kind, text, lang, None)
    }

    /// A message from `user` in `chat` that replies to `to` (a message the bot sent there), when given.
    pub fn message_replying(
        &self,
        user: i64,
        chat: i64,
        kind: &str,
        text: &str,
        lang: Option<&str>,
        to: Option<&Sent>,
    ) -> i64 {
        let u = self.update_replying(user, chat, kind, text, lang, to);
        let id = u["update_id"].as_i64().unwrap();
        self.inner.lock().unwrap().updates.push_back(u);
        self.changed.notify_waiters();
        id
    }

    /// A private-chat text message from `user` as an update with the next id, not queued: what
    /// Telegram POSTs to a webhook.
    pub fn update(&self, user: i64, text: &str) -> Value {
        self.update_replying(user, user, "private", text, Some("zh-hans"), None)
    }

    fn update_replying(
        &self,
        user: i64,
        chat: i64,
        kind: &str,
        text: &str,
        lang: Option<&str>,
        to: Option<&Sent>,
    ) -> Value {
        let mut g = self.inner.lock().unwrap();
        g.next_update += 1;
        let id = g.next_update;
        drop(g);
        let chat_obj = if kind == "private" {
            json!({"id": chat, "type": "private", "first_name": format!("user{user}")})
        } else {
            json!({"id": chat, "type": kind, "title": "shop ops"})
        };
        let mut from = json!({"id": user, "is_bot": false, "first_name": format!("user{user}")});
        if let Some(l) = lang {
            from["language_code"] = json!(l);
        }
        let mut msg = json!({"message_id": id, "date": 1_767_225_600 + id, "chat": chat_obj.clone(),
                             "from": from, "text": text});
        if let Some(to) = to {
            msg["reply_to_message"] = json!({"message_id": to.message_id, "date": 1_767_225_600,
                "chat": chat_obj, "from": bot_user(), "text": to.text});
        }
        if text.starts_with('/') {
            let len = text
                .split_whitespace()
                .next()
                .unwrap()
                .encode_utf16()
                .count();
            msg["entities"] = json!([{"type": "bot_command", "offset": 0, "length": len}]);
        }
        json!({"update_id": id, "message": msg})
    }

    /// getUpdates calls refused with 409 because another was being answered (two pollers).
    pub fn conflicts(&self) -> usize {
        self.inner.lock().unwrap().conflicts
    }

    pub fn fail_next_sends(&self, n: usize, retry_after: u64) {
        let mut g = self.inner.lock().unwrap();
        g.fail_sends = n;
        g.retry_after = retry_after;
    }

    pub fn hold_typing(&self, d: Duration) {
        self.inner.lock().unwrap().hold_typing = d;
    }

    pub fn typing_held(&self) -> usize {
        self.inner.lock().unwrap().typing_held
    }

    pub fn sent(&self) -> Vec<Sent> {
        self.inner.lock().unwrap().sent.clone()
    }

    pub fn sent_to(&self, chat: i64) -> Vec<Sent> {
        self.sent()
            .into_iter()
            .filter(|s| s.chat_id == chat)
            .collect()
    }

    pub fn rejected_at(&self) -> Vec<Instant> {
        self.inner.lock().unwrap().rejected_at.clone()
    }

    pub fn calls(&self) -> Vec<String> {
        self.inner.lock().unwrap().calls.clone()
    }

    pub fn commands(&self) -> Option<Value> {
        self.inner.lock().unwrap().commands.clone()
    }

    /// What Telegram does with a webhook's response: runs the Bot API method it names (a reply to the
    /// webhook), recorded as sent (not among `calls`: no request reached the API); a body that names
    /// none, or an invalid call, is ignored (Telegram gives no result for these). Returns whether a
    /// message was sent.
    pub fn answer_webhook(&self, body: &[u8]) -> bool {
        let Ok(call) = serde_json::from_slice::<Value>(body) else {
            return false;
        };
        let method = call["method"].as_str().unwrap_or_default().to_lowercase();
        let text = call["text"].as_str().unwrap_or_default();
        let chat_id = call["chat_id"].as_i64().unwrap_or(0);
        if method != "sendmessage" || chat_id == 0 || text.is_empty() || text.chars().count() > 4096
        {
            return false;
        }
        self.record_send(&method, chat_id, text, call["parse_mode"].as_str(), None);
        true
    }

    /// Records a message as sent; its message id.
    fn record_send(
        &self,
        method: &str,
        chat_id: i64,
        text: &str,
        parse_mode: Option<&str>,
        photo: Option<Vec<u8>>,
    ) -> i64 {
        let mut g = self.inner.lock().unwrap();
        let id = 100_000 + g.sent.len() as i64 + 1;
        g.sent.push(Sent {
            method: method.to_string(),
            chat_id,
            text: text.to_string(),
            parse_mode: parse_mode.map(str::to_string),
            photo,
            at: Instant::now(),
            message_id: id,
        });
        id
    }

    /// Waits until `pred` holds over what was sent, or panics after `limit`.
    pub fn wait_for(
        &self,
        limit: Duration,
        what: &str,
        pred: impl Fn(&[Sent]) -> bool,
    ) -> Vec<Sent> {
        let t = Instant::now();
        loop {
            let s = self.sent();
            if pred(&s) {
                return s;
            }
            assert!(
                t.elapsed() < limit,
                "timed out waiting for {what}; sent so far: {s:#?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// One getUpdates being answered; over when dropped (answered, or its client went away).
struct Polling(BotApi);

impl Drop for Polling {
    fn drop(&mut self) {
        self.0.inner.lock().unwrap().polling -= 1;
    }
}

fn ok(result: Value) -> Response {
    axum::Json(json!({"ok": true, "result": result})).into_response()
}

fn tg_error(status: StatusCode, description: &str, extra: Option<Value>) -> Response {
    let mut body = json!({"ok": false, "error_code": status.as_u16(), "description": description});
    if let Some(p) = extra {
        body["parameters"] = p;
    }
    (status, axum::Json(body)).into_response()
}

/// The fields of a multipart/form-data body: (name, bytes).
pub fn multipart(headers: &HeaderMap, body: &[u8]) -> Vec<(String, Vec<u8>)> {
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let Some(b) = ct.split("boundary=").nth(1) else {
        return Vec::new();
    };
    let delim = format!("--{}", b.trim_matches('"'));
    let d = delim.as_bytes();
    let mut out = Vec::new();
    let mut starts = Vec::new();
    let mut i = 0;
    while i + d.len() <= body.len() {
        if &body[i..i + d.len()] == d {
            starts.push(i);
            i += d.len();
        } else {
            i += 1;
        }
    }
    for w in starts.windows(2) {
        let part = &body[w[0] + d.len()..w[1]];
        let part = part.strip_prefix(b"\r\n").unwrap_or(part);
        let Some(sep) = part.windows(4).position(|x| x == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&part[..sep]).to_string();
        let mut data = part[sep + 4..].to_vec();
        if data.ends_with(b"\r\n") {
            data.truncate(data.len() - 2);
        }
        let name = head
            .split("name=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap_or_default()
            .to_string();
        out.push((name, data));
    }
    out
}

async fn handle(
    State(api): State<BotApi>,
    Path((bot, method)): Path<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if !bot.starts_with("bot") {
        return tg_error(StatusCode::NOT_FOUND, "Not Found", None);
    }
    let method = method.to_lowercase();
    api.inner.lock().unwrap().calls.push(method.clone());
    let is_multipart = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("multipart/"));
    let (params, files): (Value, Vec<(String, Vec<u8>)>) = if is_multipart {
        let parts = multipart(&headers, &body);
        let mut p = serde_json::Map::new();
        let mut files = Vec::new();
        for (name, data) in parts {
            if data.starts_with(b"\x89PNG") {
                files.push((name, data));
            } else {
                let s = String::from_utf8_lossy(&data).to_string();
                p.insert(name, serde_json::from_str(&s).unwrap_or(Value::String(s)));
            }
        }
        (Value::Object(p), files)
    } else if body.is_empty() {
        (json!({}), Vec::new())
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => (v, Vec::new()),
            Err(_) => {
                return tg_error(
                    StatusCode::BAD_REQUEST,
                    "Bad Request: can't parse JSON",
                    None,
                );
            }
        }
    };
    let chat_id = params["chat_id"]
        .as_i64()
        .or_else(|| params["chat_id"].as_str().and_then(|s| s.parse().ok()))
        .unwrap_or(0);
    match method.as_str() {
        "getme" => ok(bot_user()),
        "deletewebhook" | "setwebhook" => ok(json!(true)),
        "getwebhookinfo" => {
            ok(json!({"url": "", "has_custom_certificate": false, "pending_update_count": 0}))
        }
        "setmycommands" => {
            api.inner.lock().unwrap().commands = Some(params["commands"].clone());
            ok(json!(true))
        }
        "sendchataction" => {
            let hold = api.inner.lock().unwrap().hold_typing;
            if !hold.is_zero() {
                api.inner.lock().unwrap().typing_held += 1;
                tokio::time::sleep(hold).await;
            }
            ok(json!(true))
        }
        "getupdates" => {
            let _polling = {
                let mut g = api.inner.lock().unwrap();
                if g.polling > 0 {
                    g.conflicts += 1;
                    return tg_error(
                        StatusCode::CONFLICT,
                        "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running",
                        None,
                    );
                }
                g.polling += 1;
                Polling(api.clone())
            };
            let offset = params["offset"].as_i64().unwrap_or(0);
            let limit = params["limit"].as_u64().unwrap_or(100).clamp(1, 100) as usize;
            let timeout = params["timeout"].as_u64().unwrap_or(0).min(50);
            let deadline = Instant::now() + Duration::from_secs(timeout);
            loop {
                let notified = api.changed.notified();
                {
                    let mut g = api.inner.lock().unwrap();
                    // An offset confirms every update below it; the rest are delivered (again).
                    g.updates
                        .retain(|u| u["update_id"].as_i64().unwrap_or(0) >= offset);
                    if !g.updates.is_empty() || Instant::now() >= deadline {
                        let out: Vec<Value> = g.updates.iter().take(limit).cloned().collect();
                        return ok(Value::Array(out));
                    }
                }
                let _ = tokio::time::timeout_at(deadline.into(), notified).await;
            }
        }
        "sendmessage" | "sendphoto" => {
            {
                let mut g = api.inner.lock().unwrap();
                if g.fail_sends > 0 {
                    g.fail_sends -= 1;
                    g.rejected_at.push(Instant::now());
                    let after = g.retry_after;
                    return tg_error(
                        StatusCode::TOO_MANY_REQUESTS,
                        &format!("Too Many Requests: retry after {after}"),
                        Some(json!({"retry_after": after})),
                    );
                }
            }
            if chat_id == 0 {
                return tg_error(StatusCode::BAD_REQUEST, "Bad Request: chat not found", None);
            }
            // The file is the part named "photo", or the part that `photo=attach://NAME` points at.
            let wanted = params["photo"]
                .as_str()
                .and_then(|p| p.strip_prefix("attach://"))
                .unwrap_or("photo")
                .to_string();
            let photo = files
                .into_iter()
                .find(|(n, _)| *n == wanted)
                .map(|(_, d)| d);
            if method == "sendphoto" && photo.is_none() {
                return tg_error(
                    StatusCode::BAD_REQUEST,
                    "Bad Request: there is no photo in the request",
                    None,
                );
            }
            let text = params["text"]
                .as_str()
                .or(params["caption"].as_str())
                .unwrap_or_default()
                .to_string();
            if method == "sendmessage" && text.is_empty() {
                return tg_error(
                    StatusCode::BAD_REQUEST,
                    "Bad Request: message text is empty",
                    None,
                );
            }
            if method == "sendmessage" && text.chars().count() > 4096 {
                return tg_error(
                    StatusCode::BAD_REQUEST,
                    "Bad Request: message is too long",
                    None,
                );
            }
            let message_id = api.record_send(
                &method,
                chat_id,
                &text,
                params["parse_mode"].as_str(),
                photo,
            );
            let mut m = json!({"message_id": message_id, "date": 1_767_225_600,
                "chat": {"id": chat_id, "type": "private", "first_name": "user"}, "from": bot_user()});
            if method == "sendphoto" {
                m["photo"] =
                    json!([{"file_id": "f1", "file_unique_id": "u1", "width": 960, "height": 540}]);
                m["caption"] = json!(text);
            } else {
                m["text"] = json!(text);
            }
            ok(m)
        }
        _ => tg_error(StatusCode::NOT_FOUND, "Not Found: method not found", None),
    }
}
