//! `dongcha serve`: the HTTP API and web chat always, Telegram when `DONGCHA_TELEGRAM_TOKEN` is set,
//! Discord when `DONGCHA_DISCORD_TOKEN` is set, the data-version refresher, the digest scheduler (and its
//! webhook sender); SIGINT/SIGTERM stop taking new work, finish in-flight replies, then exit.
//! `dongcha bench serve`: replies/s and latency through the Telegram adapter against a Bot-API stand-in
//! on loopback, next to `App::handle` alone.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use dongcha::app::App;
use dongcha::chat::{discord, telegram, web};
use dongcha::config::Config;

/// `fine_tune`: fine-tune the sentiment head in the background when it is the quick one
/// ([`fine_tune`]).
pub async fn serve(
    cfg: &Config,
    llm: bool,
    fine_tune: Option<fine_tune::Invocation>,
) -> Result<()> {
    let tokens = web::tokens_from_env();
    let app = App::open(cfg, llm).await?;
    // Held until the end: a successor started on this folder after a crash takes over at once.
    let _claim = app.claim_state_folder().await;
    let _refresher = app.spawn_refresher();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let heartbeat = app.spawn_heartbeat(stop_rx.clone());
    tracing::info!(instance = %app.instance, "serving");

    let listener = tokio::net::TcpListener::bind(&cfg.serve.listen)
        .await
        .with_context(|| format!("listening on {} ([serve] listen)", cfg.serve.listen))?;
    let addr = listener.local_addr()?;
    if tokens.is_empty() {
        tracing::warn!(
            "no operator tokens: set {} (comma-separated) to sign in to the web chat and the API",
            web::TOKENS_ENV
        );
    }
    // The address on stdout, alone on its line, for scripts and people.
    println!("dongcha serve: web chat at http://{addr}/");
    tracing::info!("customer chat at http://{addr}/support");
    let mut http_stop = stop_rx.clone();
    let http = tokio::spawn(
        // The peer's address is the customer page's rate-limit key.
        axum::serve(
            listener,
            web::router(app.clone(), tokens)
                .into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = http_stop.wait_for(|s| *s).await;
        })
        .into_future(),
    );

    let tg = front_end("Telegram", telegram::TOKEN_ENV, |token| {
        telegram::run(app.clone(), token, stop_rx.clone())
    });
    let dc = front_end("Discord", discord::TOKEN_ENV, |token| {
        discord::run(app.clone(), token, stop_rx.clone())
    });

    // Scheduled digests: decided and recorded here, sent by the front ends from the outbox; by one
    // process at a time when several serve one store.
    let digests = (!cfg.digest.is_empty()).then(|| {
        let (app, cfg, stop) = (app.clone(), cfg.clone(), stop_rx.clone());
        tokio::spawn(async move {
            app.while_leased("digest:scheduler", stop, |halt| {
                let woken = app.clone();
                let scheduler = dongcha::digest::run::Scheduler::new(
                    &cfg,
                    app.store.clone(),
                    std::sync::Arc::new(move || woken.outbox.notify_waiters()),
                );
                scheduler.serve(halt)
            })
            .await;
        })
    });
    let webhooks = dongcha::digest::run::any_webhook(cfg).then(|| {
        let (app, stop) = (app.clone(), stop_rx.clone());
        tokio::spawn(async move {
            app.while_leased("digest:webhooks", stop, |halt| {
                dongcha::digest::run::send_webhooks(app.store.clone(), halt)
            })
            .await;
        })
    });

    let tuning = fine_tune.map(|how| fine_tune::spawn(&app, cfg, how, stop_rx.clone()));

    shutdown_signal().await;
    tracing::info!("stopping: finishing replies in flight");
    let _ = stop_tx.send(true);
    for t in [tg, dc].into_iter().flatten() {
        let _ = tokio::time::timeout(Duration::from_secs(60), t).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(30), http).await;
    for t in [digests, webhooks, tuning].into_iter().flatten() {
        let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
    }
    let _ = heartbeat.await;
    // The other processes on this store take over what this one held at once.
    app.release_leases().await;
    app.store.close().await;
    Ok(())
}

/// Starts a chat front end when its token is in the environment.
fn front_end<F, Fut, E>(name: &str, env: &str, run: F) -> Option<tokio::task::JoinHandle<()>>
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = Result<(), E>> + Send + 'static,
    E: std::fmt::Display,
{
    match std::env::var(env) {
        Ok(token) if !token.trim().is_empty() => {
            let name = name.to_string();
            let running = run(token.trim().to_string());
            Some(tokio::spawn(async move {
                if let Err(e) = running.await {
                    tracing::error!("{name} stopped: {e}");
                }
            }))
        }
        _ => {
            tracing::info!("{name} is off ({env} is not set)");
            None
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// `dongcha bench support`: customers' questions the knowledge base answers, through `POST
/// /v1/support/messages` on loopback (a real HTTP client, one new conversation per message): replies/s
/// with `concurrency` requests in flight, then p50/p99 one at a time.
pub async fn bench_support(cfg: &Config, n: usize, concurrency: usize) -> Result<()> {
    const PLATFORM: &str = "bench-site";
    let mut cfg = cfg.clone();
    cfg.serve.rate_per_minute = 1_000_000;
    cfg.serve.rate_burst = 1_000_000;
    let app = App::open(&cfg, false).await?;
    app.store.forget_platform(PLATFORM).await?;
    let kb = app.store.kb_entries().await?;
    let questions: Vec<String> = kb.iter().flat_map(|e| e.questions.clone()).collect();
    anyhow::ensure!(
        !questions.is_empty(),
        "the knowledge base is empty: `dongcha kb import PATH` or `dongcha demo` first"
    );
    let token = "bench-shop-token".to_string();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/v1/support/messages", listener.local_addr()?);
    let server = tokio::spawn(
        axum::serve(
            listener,
            web::router_with(app.clone(), Vec::new(), vec![token.clone()], PLATFORM),
        )
        .into_future(),
    );
    let client = reqwest::Client::new();
    let post = |i: usize| {
        let (client, url, token) = (client.clone(), url.clone(), token.clone());
        let text = questions[i % questions.len()].clone();
        async move {
            let t = Instant::now();
            let r: serde_json::Value = client
                .post(&url)
                .bearer_auth(&token)
                .json(&serde_json::json!({"conversation_id": format!("b{i}"), "text": text}))
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            Ok::<_, anyhow::Error>((t.elapsed().as_secs_f64() * 1000.0, r["source"].is_string()))
        }
    };
    // Warm: the encoder's first calls.
    for i in 0..8 {
        post(i).await?;
    }
    let t0 = Instant::now();
    let mut answered = 0usize;
    let mut done = 0usize;
    let mut inflight = tokio::task::JoinSet::new();
    let mut next = 0usize;
    while done < n {
        while inflight.len() < concurrency.max(1) && next < n {
            inflight.spawn(post(1000 + next));
            next += 1;
        }
        if let Some(r) = inflight.join_next().await {
            let (_, a) = r??;
            answered += a as usize;
            done += 1;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let mut one = Vec::new();
    for i in 0..n.min(500) {
        one.push(post(10_000_000 + i).await?.0);
    }
    let (p50, p99) = percentiles(&mut one);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    println!(
        "support through POST /v1/support/messages on loopback ({threads} cores, {} KB entries):",
        kb.len()
    );
    println!(
        "  {n} messages, {concurrency} in flight: {:.0} replies/s ({answered} answered from the knowledge base)",
        n as f64 / secs
    );
    println!(
        "  one at a time ({} messages): p50 {p50:.2} ms, p99 {p99:.2} ms",
        one.len()
    );
    server.abort();
    app.store.forget_platform(PLATFORM).await?;
    Ok(())
}

/// p50/p99 of `xs` (milliseconds).
pub(crate) fn percentiles(xs: &mut [f64]) -> (f64, f64) {
    xs.sort_by(f64::total_cmp);
    let at = |q: f64| xs[((xs.len() as f64 - 1.0) * q).round() as usize];
    (at(0.5), at(0.99))
}

/// `dongcha bench serve`: `n` cheap questions from `chats` chats through the Telegram adapter against a
/// Bot-API stand-in on loopback, then the same questions through `App::handle` alone.
pub async fn bench(cfg: &Config, n: usize, chats: usize) -> Result<()> {
    // Cheap: routed by the encoder, its tool output shared after the first call.
    let question = "What were sales last month?";
    let mut cfg = cfg.clone();
    let stand_in = dongcha_bench_stand_in::StandIn::start().await?;
    cfg.telegram.api_url = stand_in.url();
    cfg.telegram.poll_timeout_secs = 1;
    // The adapter's own capacity: Telegram's sending limits (the Throttle adaptor) are off.
    cfg.telegram.throttle = false;
    cfg.serve.rate_per_minute = 1_000_000;
    cfg.serve.rate_burst = 1_000_000;
    cfg.roles.telegram_operators = vec![1];
    let app = App::open(&cfg, false).await?;
    // Measured on a warm service, as the figures say (the warm-up also must not outlive the bench).
    app.warmed().await;
    // The bench's turns live under platforms of their own, never mixed with real conversations, and
    // start afresh each run.
    for p in ["bench", BENCH_PLATFORM] {
        app.store.forget_platform(p).await?;
    }

    // Alone: App::handle for each message.
    let mut alone = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        app.handle(dongcha::app::Message {
            platform: "bench",
            chat_id: format!("{}", i % chats),
            user_id: "1".into(),
            role: dongcha::app::Role::Operator,
            text: question.into(),
            update_id: Some(i as i64 + 1),
            lang_hint: None,
            reply_to: None,
            customer: None,
            in_response: false,
        })
        .await?;
        alone.push(t.elapsed().as_secs_f64() * 1000.0);
    }

    // Through the adapter: updates queued at the stand-in, replies counted as they arrive.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let tg = {
        let app = app.clone();
        tokio::spawn(async move {
            telegram::run_as(app, "1:bench".into(), stop_rx, BENCH_PLATFORM).await
        })
    };
    stand_in.wait_ready().await;
    let t0 = Instant::now();
    for i in 0..n {
        stand_in.push(i % chats, question);
    }
    stand_in.wait_replies(n, Duration::from_secs(300)).await?;
    let wall = t0.elapsed().as_secs_f64();
    // Latency: one message at a time, queued -> reply received.
    let one = 200.min(n);
    let mut through = Vec::with_capacity(one);
    for i in 0..one {
        let t = Instant::now();
        stand_in.push(i % chats, question);
        stand_in
            .wait_replies(n + i + 1, Duration::from_secs(60))
            .await?;
        through.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let _ = stop_tx.send(true);
    let _ = tg.await;
    let (p50, p99) = percentiles(&mut through);
    let (a50, a99) = percentiles(&mut alone);
    println!(
        "bench serve: {question:?} through the Telegram adapter (teloxide against a Bot-API stand-in on 127.0.0.1, Throttle off)"
    );
    println!(
        "  throughput: {n} messages from {chats} chats queued at once, {:.0} replies/s",
        n as f64 / wall
    );
    println!(
        "  latency, one at a time ({one}): p50 {p50:.2} ms, p99 {p99:.2} ms (update queued -> reply received)"
    );
    println!("  App::handle alone ({n}): p50 {a50:.2} ms, p99 {a99:.2} ms");
    println!("  adapter overhead: p50 {:.2} ms", p50 - a50);
    Ok(())
}

const BENCH_PLATFORM: &str = "telegram-bench";

pub mod fine_tune;
mod load;
pub use load::load;

/// A Bot-API stand-in for the bench (getMe, getUpdates with offsets and long polling, sendMessage and
/// friends), on 127.0.0.1.
pub(crate) mod dongcha_bench_stand_in {
    use std::collections::{HashMap, VecDeque};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use anyhow::Result;
    use axum::extract::{Path, State};
    use axum::routing::post;
    use serde_json::{Value, json};
    use tokio::sync::Notify;

    #[derive(Default)]
    struct Inner {
        queue: VecDeque<(i64, Value)>,
        next_id: i64,
        sent: usize,
        /// The bot polled, or set its webhook.
        polled: bool,
        /// Every message sent, per chat: its text and when it arrived.
        replies: HashMap<i64, Vec<(String, Instant)>>,
        /// Where a webhook would reach the bot (`StandIn::webhook_at`: teloxide sends setWebhook as
        /// multipart, which this stand-in does not read).
        webhook_target: Option<String>,
        /// Where updates are POSTed once the bot set its webhook.
        webhook: Option<String>,
        /// Chats with an update being POSTed (a chat's updates go one after another).
        posting: std::collections::HashSet<i64>,
    }

    #[derive(Clone, Default)]
    struct Shared {
        inner: Arc<Mutex<Inner>>,
        updates: Arc<Notify>,
        replies: Arc<Notify>,
    }

    pub struct StandIn {
        addr: std::net::SocketAddr,
        shared: Shared,
    }

    impl StandIn {
        pub async fn start() -> Result<Self> {
            let shared = Shared::default();
            let app = axum::Router::new()
                .route("/{bot}/{method}", post(handle))
                .with_state(shared.clone());
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            tokio::spawn(async move { axum::serve(listener, app).await });
            tokio::spawn(post_updates(shared.clone()));
            Ok(Self { addr, shared })
        }

        pub fn url(&self) -> String {
            format!("http://{}", self.addr)
        }

        /// Webhook mode: once the bot calls setWebhook, updates are POSTed to `url` instead of waiting
        /// for getUpdates.
        pub fn webhook_at(&self, url: &str) {
            self.shared.inner.lock().unwrap().webhook_target = Some(url.to_string());
        }

        pub async fn wait_ready(&self) {
            while !self.shared.inner.lock().unwrap().polled {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }

        pub fn push(&self, chat: usize, text: &str) {
            self.push_from(1000 + chat as i64, 1, text);
        }

        /// Queues a private message from `user` in `chat`; its update id.
        pub fn push_from(&self, chat: i64, user: i64, text: &str) -> i64 {
            let mut g = self.shared.inner.lock().unwrap();
            g.next_id += 1;
            let id = g.next_id;
            let m = json!({"update_id": id, "message": {"message_id": id, "date": 1_767_000_000,
                "chat": {"id": chat, "type": "private", "first_name": "Op"},
                "from": {"id": user, "is_bot": false, "first_name": "Op"}, "text": text}});
            g.queue.push_back((id, m));
            drop(g);
            self.shared.updates.notify_waiters();
            id
        }

        /// The messages sent to `chat` so far, with when each arrived.
        pub fn replies_to(&self, chat: i64) -> Vec<(String, Instant)> {
            let g = self.shared.inner.lock().unwrap();
            g.replies.get(&chat).cloned().unwrap_or_default()
        }

        /// Messages sent in all.
        pub fn sent(&self) -> usize {
            self.shared.inner.lock().unwrap().sent
        }

        /// Waits until `n` replies arrived in all.
        pub async fn wait_replies(&self, n: usize, limit: Duration) -> Result<()> {
            let t = Instant::now();
            loop {
                let notified = self.shared.replies.notified();
                if self.shared.inner.lock().unwrap().sent >= n {
                    return Ok(());
                }
                anyhow::ensure!(t.elapsed() < limit, "only some replies arrived in time");
                let _ = tokio::time::timeout(Duration::from_millis(50), notified).await;
            }
        }
    }

    /// Updates POSTed to a webhook at once: Telegram's default `max_connections`.
    const MAX_CONNECTIONS: usize = 40;

    /// Webhook mode, as Telegram does it: each queued update POSTed to the webhook (a chat's in order,
    /// up to [`MAX_CONNECTIONS`] at once) until it answers 2xx, then the Bot API call its response
    /// names is run; refused or unreachable, the update is POSTed again.
    async fn post_updates(s: Shared) {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .expect("an HTTP client");
        let in_flight = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
        loop {
            let notified = s.updates.notified();
            let next = {
                let mut guard = s.inner.lock().unwrap();
                let g = &mut *guard;
                match g.webhook.clone() {
                    Some(url) => {
                        let found = g.queue.iter().find_map(|(id, u)| {
                            let chat = u["message"]["chat"]["id"].as_i64().unwrap_or(0);
                            (!g.posting.contains(&chat)).then(|| (*id, chat, u.clone()))
                        });
                        if let Some((_, chat, _)) = &found {
                            g.posting.insert(*chat);
                        }
                        found.map(|f| (url, f))
                    }
                    None => None,
                }
            };
            let Some((url, (id, chat, update))) = next else {
                let _ = tokio::time::timeout(Duration::from_millis(100), notified).await;
                continue;
            };
            let permit = in_flight
                .clone()
                .acquire_owned()
                .await
                .expect("never closed");
            let (s, client) = (s.clone(), client.clone());
            tokio::spawn(async move {
                let _permit = permit;
                loop {
                    let r = client.post(&url).json(&update).send().await;
                    if let Ok(r) = r
                        && r.status().is_success()
                    {
                        if let Ok(call) = r.json::<Value>().await
                            && call["method"].as_str() == Some("sendMessage")
                            && let Some(text) = call["text"].as_str()
                        {
                            record_reply(&s, call["chat_id"].as_i64().unwrap_or(0), text);
                        }
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                let mut g = s.inner.lock().unwrap();
                g.queue.retain(|(i, _)| *i != id);
                g.posting.remove(&chat);
                drop(g);
                s.updates.notify_waiters();
            });
        }
    }

    fn record_reply(s: &Shared, chat: i64, text: &str) {
        {
            let mut g = s.inner.lock().unwrap();
            g.sent += 1;
            g.replies
                .entry(chat)
                .or_default()
                .push((text.to_string(), Instant::now()));
        }
        s.replies.notify_waiters();
    }

    fn user() -> Value {
        json!({"id": 99, "is_bot": true, "first_name": "dongcha", "username": "dongcha_bot",
               "can_join_groups": true, "can_read_all_group_messages": false, "supports_inline_queries": false,
               "can_connect_to_business": false, "has_main_web_app": false})
    }

    async fn handle(
        State(s): State<Shared>,
        Path((_bot, method)): Path<(String, String)>,
        body: axum::body::Bytes,
    ) -> axum::Json<Value> {
        let params: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let ok = |r: Value| axum::Json(json!({"ok": true, "result": r}));
        match method.to_lowercase().as_str() {
            "getme" => ok(user()),
            "getupdates" => {
                let offset = params["offset"].as_i64().unwrap_or(0);
                let deadline =
                    Instant::now() + Duration::from_secs(params["timeout"].as_u64().unwrap_or(0));
                loop {
                    let notified = s.updates.notified();
                    {
                        let mut g = s.inner.lock().unwrap();
                        g.polled = true;
                        g.queue.retain(|(id, _)| *id >= offset);
                        if !g.queue.is_empty() || Instant::now() >= deadline {
                            let out: Vec<Value> =
                                g.queue.iter().take(100).map(|(_, v)| v.clone()).collect();
                            return ok(Value::Array(out));
                        }
                    }
                    let _ = tokio::time::timeout_at(deadline.into(), notified).await;
                }
            }
            "setwebhook" => {
                let mut g = s.inner.lock().unwrap();
                g.webhook = g.webhook_target.clone();
                g.polled = true;
                drop(g);
                s.updates.notify_waiters();
                ok(json!(true))
            }
            "deletewebhook" => {
                s.inner.lock().unwrap().webhook = None;
                ok(json!(true))
            }
            "sendmessage" => {
                let chat = params["chat_id"].as_i64().unwrap_or(0);
                record_reply(&s, chat, params["text"].as_str().unwrap_or_default());
                ok(json!({"message_id": 1, "date": 1_767_000_000,
                    "chat": {"id": chat, "type": "private", "first_name": "Op"}, "from": user(),
                    "text": params["text"]}))
            }
            _ => ok(json!(true)),
        }
    }
}
