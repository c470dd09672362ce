//! `dongcha bench serve --load`: many conversations at once against a real `dongcha serve` process,
//! through the HTTP API and the Telegram adapter (a Bot-API stand-in on 127.0.0.1), counting every
//! message: answered, told "busy", lost, answered twice; p50/p99 and the server's peak memory. Then the
//! same again while the server is killed with SIGKILL and started afresh mid-run.
//!
//! The server runs on a consistent copy of the shop's database in a temporary folder (`Store::backup_to`),
//! so the run's conversations never mix with real ones; the index and models are the shop's own.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use dongcha::chat::web;
use dongcha::config::Config;
use dongcha::store::Store;
use serde_json::{Value, json};

use super::dongcha_bench_stand_in::StandIn;
use super::percentiles;

const TOKEN: &str = "bench-load-operator-token";
/// Telegram chats of the run: ids from here up, each its own operator.
const FIRST_CHAT: i64 = 7_000_000;
/// What each conversation asks, in order (cheap and varied: a tool, a follow-up, a command, Chinese).
const QUESTIONS: [&str; 4] = [
    "What were sales last month?",
    "那4月呢？",
    "/help",
    "上个月的销售额是多少？",
];
/// Where `serve` takes the stand-in's webhook POSTs in `--webhook` runs.
const WEBHOOK_PATH: &str = "/telegram/hook";
/// The longest a message may wait for its answer before it counts as lost.
const PATIENCE: Duration = Duration::from_secs(240);

/// A `dongcha serve` child on the copied store.
struct Server {
    child: Child,
    base: String,
}

struct Setup {
    exe: PathBuf,
    data_dir: PathBuf,
    config: Option<PathBuf>,
    db_url: String,
    api_url: String,
    operators: String,
    log: PathBuf,
    /// Webhook mode: where `serve` listens for the stand-in's POSTs (the same across a restart).
    webhook: Option<String>,
}

impl Setup {
    fn start(&self) -> Result<Server> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut cmd = Command::new(&self.exe);
        if let Some(c) = &self.config {
            cmd.arg("--config").arg(c);
        }
        cmd.arg("--data-dir")
            .arg(&self.data_dir)
            .args(["serve", "--no-llm"])
            .env("DONGCHA__STORE__URL", &self.db_url)
            .env("DONGCHA__SERVE__LISTEN", "127.0.0.1:0")
            .env("DONGCHA_OPERATOR_TOKENS", TOKEN)
            .env("DONGCHA_TELEGRAM_TOKEN", "1:bench-load")
            .env("DONGCHA__TELEGRAM__API_URL", &self.api_url)
            .env("DONGCHA__TELEGRAM__POLL_TIMEOUT_SECS", "1")
            .env("DONGCHA__TELEGRAM__THROTTLE", "false")
            .env("DONGCHA__ROLES__TELEGRAM_OPERATORS", &self.operators)
            // The per-user limit is not what is measured (each chat is its own user anyway).
            .env("DONGCHA__SERVE__RATE_PER_MINUTE", "100000")
            .env("DONGCHA__SERVE__RATE_BURST", "100000")
            .env_remove("DONGCHA_DISCORD_TOKEN")
            .env_remove("DONGCHA_TELEGRAM_WEBHOOK_SECRET")
            .stdout(Stdio::piped())
            .stderr(log);
        if let Some(listen) = &self.webhook {
            cmd.env("DONGCHA__TELEGRAM__WEBHOOK_LISTEN", listen).env(
                "DONGCHA__TELEGRAM__WEBHOOK_URL",
                format!("http://{listen}{WEBHOOK_PATH}"),
            );
        } else {
            cmd.env_remove("DONGCHA__TELEGRAM__WEBHOOK_URL");
        }
        let mut child = cmd.spawn().context("starting dongcha serve")?;
        let out = child.stdout.take().context("the server's stdout")?;
        let mut line = String::new();
        BufReader::new(out).read_line(&mut line)?;
        let Some(addr) = line.trim().strip_prefix("dongcha serve: web chat at ") else {
            let _ = child.kill();
            bail!(
                "the server did not start (first line {line:?}); see {}",
                self.log.display()
            );
        };
        Ok(Server {
            child,
            base: addr.trim_end_matches('/').to_string(),
        })
    }
}

/// The peak resident memory of a process, from /proc (kB → MiB).
fn peak_rss_mib(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// How one round went.
#[derive(Default)]
struct Tally {
    sent: usize,
    answered: usize,
    busy: usize,
    lost: usize,
    twice: usize,
    latencies_ms: Vec<f64>,
}

impl Tally {
    fn line(&mut self, what: &str) -> String {
        let (p50, p99) = if self.latencies_ms.is_empty() {
            (f64::NAN, f64::NAN)
        } else {
            percentiles(&mut self.latencies_ms)
        };
        format!(
            "  {what:<9} sent {:>5}  answered {:>5}  busy {:>4}  lost {:>3}  answered twice {:>3}  p50 {p50:>7.1} ms  p99 {p99:>7.1} ms",
            self.sent, self.answered, self.busy, self.lost, self.twice
        )
    }
}

/// One HTTP conversation: its questions in order, each retried with the same idempotency key over a lost
/// connection (a killed server) until answered or told busy.
async fn http_conversation(
    client: reqwest::Client,
    base: Arc<RwLock<String>>,
    round: usize,
    i: usize,
    per_chat: usize,
) -> (usize, Vec<(String, f64)>) {
    let conversation = format!("load-{round}-{i}");
    let mut out = Vec::with_capacity(per_chat);
    for j in 0..per_chat {
        let q = QUESTIONS[j % QUESTIONS.len()];
        let key = format!("{conversation}-{j}");
        let t = Instant::now();
        let outcome = loop {
            let url = format!("{}/v1/ask", base.read().expect("lock").clone());
            let r = client
                .post(url)
                .bearer_auth(TOKEN)
                .header("Idempotency-Key", &key)
                .json(&json!({"question": q, "conversation_id": conversation}))
                .send()
                .await;
            match r {
                Ok(r) if r.status().is_success() || r.status().as_u16() == 429 => {
                    let v: Value = r.json().await.unwrap_or(Value::Null);
                    break v["outcome"].as_str().unwrap_or("unreadable").to_string();
                }
                // The server is gone or restarting: the same request again, shortly.
                _ if t.elapsed() < PATIENCE => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Ok(r) => break format!("status {}", r.status()),
                Err(_) => break "lost".to_string(),
            }
        };
        out.push((outcome, t.elapsed().as_secs_f64() * 1000.0));
    }
    (i, out)
}

/// A round: `chats` HTTP conversations and `chats` Telegram chats at once, `per_chat` messages each;
/// `kill_after` kills the server once that many Telegram replies arrived, and starts it again.
async fn round(
    setup: &Setup,
    server: &mut Server,
    stand_in: &StandIn,
    round: usize,
    chats: usize,
    per_chat: usize,
    kill_after: Option<usize>,
) -> Result<(Tally, Tally, u32, Vec<usize>)> {
    let base = Arc::new(RwLock::new(server.base.clone()));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .timeout(Duration::from_secs(120))
        .build()?;
    let sent_before = stand_in.sent();
    // Telegram: every chat's messages queued at once (a chat's messages are answered in order).
    let chat_of = |i: usize| FIRST_CHAT + (round * chats + i) as i64;
    let mut pushed: HashMap<i64, Vec<Instant>> = HashMap::new();
    for j in 0..per_chat {
        for i in 0..chats {
            let chat = chat_of(i);
            stand_in.push_from(chat, chat, QUESTIONS[j % QUESTIONS.len()]);
            pushed.entry(chat).or_default().push(Instant::now());
        }
    }
    let mut set = tokio::task::JoinSet::new();
    for i in 0..chats {
        set.spawn(http_conversation(
            client.clone(),
            base.clone(),
            round,
            i,
            per_chat,
        ));
    }
    let mut kills = 0;
    if let Some(n) = kill_after {
        let t = Instant::now();
        while stand_in.sent() < sent_before + n && t.elapsed() < PATIENCE {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        server.child.kill()?;
        server.child.wait()?;
        kills += 1;
        *server = setup.start()?;
        *base.write().expect("lock") = server.base.clone();
    }
    // In the order of the conversations (tasks end in any order).
    let mut http: Vec<(usize, Vec<(String, f64)>)> = set.join_all().await;
    http.sort_by_key(|(i, _)| *i);

    // Telegram: wait until every chat has its replies (or patience runs out), then a quiet spell for
    // late duplicates.
    let expected = chats * per_chat;
    let t = Instant::now();
    loop {
        let got: usize = (0..chats)
            .map(|i| stand_in.replies_to(chat_of(i)).len().min(per_chat))
            .sum();
        if got >= expected || t.elapsed() > PATIENCE {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;

    let mut tg = Tally::default();
    for i in 0..chats {
        let chat = chat_of(i);
        let replies = stand_in.replies_to(chat);
        tg.sent += per_chat;
        let busy = replies
            .iter()
            .filter(|(t, _)| t.contains("busy") || t.contains("太忙"))
            .count();
        tg.busy += busy.min(per_chat);
        tg.answered += replies.len().min(per_chat) - busy.min(per_chat);
        tg.lost += per_chat.saturating_sub(replies.len());
        tg.twice += replies.len().saturating_sub(per_chat);
        // A chat's replies come in order: the k-th reply answers the k-th message.
        for (k, (_, at)) in replies.iter().take(per_chat).enumerate() {
            tg.latencies_ms
                .push(at.duration_since(pushed[&chat][k]).as_secs_f64() * 1000.0);
        }
    }
    let mut web = Tally::default();
    let mut answered = Vec::with_capacity(http.len());
    for (_, conv) in &http {
        let mut n = 0;
        for (outcome, ms) in conv {
            web.sent += 1;
            match outcome.as_str() {
                "answered" | "command" | "duplicate" => n += 1,
                "busy" | "limited" => web.busy += 1,
                _ => web.lost += 1,
            }
            web.latencies_ms.push(*ms);
        }
        web.answered += n;
        answered.push(n);
    }
    Ok((web, tg, kills, answered))
}

/// Turns stored per HTTP conversation of the round, against the requests that got an answer: a turn
/// stored twice is a question answered twice (busy is not stored over HTTP; everything else once).
async fn http_stored_twice(store: &Store, round: usize, answered: &[usize]) -> Result<usize> {
    let operator = web::token_id("op", TOKEN);
    let mut twice = 0;
    for (i, n) in answered.iter().enumerate() {
        let chat = format!("{operator}:load-{round}-{i}");
        let stored = store
            .recent_turns("http", &chat, 4 * *n as i64 + 4)
            .await?
            .len();
        twice += stored.saturating_sub(*n);
    }
    Ok(twice)
}

pub async fn load(
    cfg: &Config,
    config_file: Option<&Path>,
    chats: usize,
    per_chat: usize,
    into: Option<&str>,
    webhook: bool,
) -> Result<()> {
    let tmp = std::env::temp_dir().join(format!("dongcha-bench-load-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let db = tmp.join("dongcha.db");
    let db_url = {
        let store = Store::open_config(cfg).await?;
        match into {
            Some(url) => {
                let target = Store::open(url, 4).await?;
                store
                    .copy_into(&target, |_, _| {})
                    .await
                    .context("copying the store into --store (it must be empty)")?;
                target.close().await;
                url.to_string()
            }
            None => {
                store.backup_to(&db, |_, _| {}).await?;
                format!("sqlite://{}", db.display())
            }
        }
    };
    let stand_in = StandIn::start().await?;
    let hook = webhook
        .then(|| {
            std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.to_string())
        })
        .transpose()?;
    if let Some(listen) = &hook {
        stand_in.webhook_at(&format!("http://{listen}{WEBHOOK_PATH}"));
    }
    let operators = format!(
        "[{}]",
        (0..2 * chats)
            .map(|i| (FIRST_CHAT + i as i64).to_string())
            .collect::<Vec<_>>()
            .join(",")
    );
    let setup = Setup {
        exe: std::env::current_exe()?,
        data_dir: cfg.data_dir(),
        config: config_file.map(Path::to_path_buf),
        db_url,
        api_url: stand_in.url(),
        operators,
        log: tmp.join("serve.log"),
        webhook: hook,
    };
    let result = async {
        let mut server = setup.start()?;
        stand_in.wait_ready().await;
        println!(
            "bench serve --load: {chats} HTTP conversations and {chats} Telegram chats ({}) at once, {per_chat} messages each, against `dongcha serve` (pid {}) on 127.0.0.1, its store on {}",
            if webhook { "webhook" } else { "long polling" },
            server.child.id(),
            if into.is_some() { "PostgreSQL" } else { "SQLite (a copy)" }
        );
        let mut out = Vec::new();
        for (r, kill) in [(0, None), (1, Some(chats * per_chat / 3))] {
            let t = Instant::now();
            let (mut web, mut tg, kills, answered) =
                round(&setup, &mut server, &stand_in, r, chats, per_chat, kill).await?;
            let store = {
                let mut c = cfg.clone();
                c.store.url = setup.db_url.clone();
                Store::open_config(&c).await?
            };
            web.twice += http_stored_twice(&store, r, &answered).await?;
            store.close().await;
            let rss = peak_rss_mib(server.child.id());
            let wall = t.elapsed().as_secs_f64();
            out.push(format!(
                "round {}: {}{:.1} s, {:.0} messages/s",
                r + 1,
                if kills > 0 {
                    format!("SIGKILL after {} Telegram replies, restarted; ", kill.unwrap_or(0))
                } else {
                    String::new()
                },
                wall,
                (web.sent + tg.sent) as f64 / wall
            ));
            out.push(web.line("HTTP"));
            out.push(tg.line("Telegram"));
            out.push(format!(
                "  server peak RSS {} (VmHWM of the {} process)",
                rss.map_or("unknown".into(), |m| format!("{m:.0} MiB")),
                if kills > 0 { "restarted" } else { "running" }
            ));
            for l in &out[out.len() - 4..] {
                println!("{l}");
            }
        }
        let _ = server.child.kill();
        let _ = server.child.wait();
        anyhow::Ok(())
    }
    .await;
    if std::env::var_os("DONGCHA_BENCH_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}
