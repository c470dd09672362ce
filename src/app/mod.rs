//! The application layer: one [`App`] per process, shared by the CLI's long-running commands and every
//! front end (HTTP, web chat, Telegram). It holds the config, the store, the agent (encoders, heads,
//! router, tools' shared results) and the service's cross-cutting rules, applied in this order around
//! one handler ([`App::handle`]):
//!
//! 1. exactly once: an update the platform redelivers (after a crash or restart) is recognised and skipped;
//! 2. commands (`/reset`, `/help`, `/forecast` …) become questions or answers;
//! 3. roles: only operators reach the tools — a customer gets the customer-service reply, whatever they type;
//! 4. a per-user token bucket, then a bounded queue ("busy, please retry", never a silent drop), then a
//!    per-question timeout (an apology);
//! 5. the agent answers with the conversation's stored turns (follow-ups work across restarts);
//! 6. the turn, and the update it answers, are stored in one transaction; operator questions are audited.
//!
//! Front ends only parse, call [`App::handle`] and render the [`Reply`]. Shared results are tied to the
//! store's [`DataVersion`]: [`App::refresh_if_changed`] rebuilds them when another process imported or
//! enriched data.

mod leases;
pub mod metrics;
mod sent;

use std::collections::{BTreeSet, HashMap};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::{DefaultKeyedRateLimiter, Quota};
use serde_json::{Map, Value};
use tokio::sync::{RwLock, Semaphore};

use crate::agent::{Agent, AgentError, Turn};
use crate::config::Config;
use crate::reply::{Chart, Reply, args_json, chart};
use crate::store::support::NewHandoff;
use crate::store::{AuditEntry, DataVersion, Store, StoreError, TurnRecord};
use crate::support::mask::mask;
use crate::support::{Decision, HandoffReason, Support, SupportSettings};
pub use leases::FolderClaim;
pub use metrics::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Agent(#[from] AgentError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Tool(#[from] crate::tools::ToolError),
    #[error(transparent)]
    Support(#[from] crate::support::SupportError),
}

/// What a customer is told, in the handoff's language, when the bot answers again.
fn release_notice() -> crate::store::support::ReleaseNotice<'static> {
    crate::store::support::ReleaseNotice {
        zh: crate::support::replies::released(true),
        en: crate::support::replies::released(false),
    }
}

/// Who is asking. Operators reach the insight tools; everyone else is a customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Operator,
    Customer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Customer => "customer",
        }
    }
}

/// One incoming message, as a front end parsed it.
#[derive(Debug, Clone)]
pub struct Message {
    /// "telegram", "http", "web", ...
    pub platform: &'static str,
    pub chat_id: String,
    pub user_id: String,
    pub role: Role,
    pub text: String,
    /// The platform's update id, when the platform redelivers unconfirmed updates.
    pub update_id: Option<i64>,
    /// The user's interface language (Telegram's `language_code`), for commands without words.
    pub lang_hint: Option<String>,
    /// The platform's id of the message this one replies to (an operator answering a relayed message).
    pub reply_to: Option<String>,
    /// The shop customer this chat is, on the word of the shop's own system (`POST
    /// /v1/support/messages` with `customer_id`, behind a shop token); never from what a user typed.
    pub customer: Option<String>,
    /// The reply goes back in the response to the platform's delivery of `update_id` (Telegram's
    /// webhook), which the platform then sends: stored as sent with its turn, in one transaction, and a
    /// redelivery (the response never arrived) is answered with the stored reply again. Exactly once:
    /// the platform confirms the update and sends the reply on one response, or does neither.
    pub in_response: bool,
}

/// The platform of the HTTP API's operator questions (`POST /v1/ask`).
pub const HTTP_PLATFORM: &str = "http";

/// What happened to a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Answered,
    Customer,
    Command,
    Busy,
    Timeout,
    Limited,
    Error,
    /// Already answered (a redelivered update): nothing is sent.
    Duplicate,
    /// A customer's conversation went to a person (a handoff event was stored).
    Handoff,
    /// A person owns the conversation: the message is kept for them, the bot says nothing.
    Relayed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Answered => "answered",
            Outcome::Customer => "customer",
            Outcome::Command => "command",
            Outcome::Busy => "busy",
            Outcome::Timeout => "timeout",
            Outcome::Limited => "limited",
            Outcome::Error => "error",
            Outcome::Duplicate => "duplicate",
            Outcome::Handoff => "handoff",
            Outcome::Relayed => "relayed",
        }
    }
}

/// The answer to one message.
#[derive(Debug, Clone)]
pub struct Handled {
    pub outcome: Outcome,
    pub reply: Reply,
    pub tool: String,
    pub args: Map<String, Value>,
    pub result: Value,
    pub timings_ms: Option<crate::agent::Timings>,
}

/// The commands the chat front ends register (Telegram's setMyCommands), with their descriptions.
pub const COMMANDS: [(&str, &str); 10] = [
    ("start", "What dongcha can do / 功能介绍"),
    ("help", "How to ask / 怎么提问"),
    ("ask", "Ask a question / 提问"),
    ("sales", "Sales of a period / 销售额"),
    ("forecast", "Sales forecast with a chart / 销售预测"),
    ("churn", "Customers likely to churn / 流失风险"),
    ("segments", "Customer segments / 客户分群"),
    ("complaints", "Top complaint topics / 差评话题"),
    (
        "digest",
        "The digest of the last period, now / 最新一期摘要",
    ),
    ("reset", "Forget this conversation / 清空对话"),
];

/// Charts kept for `GET /v1/charts/{id}.png` (the oldest go first).
const CHARTS_KEPT: usize = 256;

pub struct App {
    pub cfg: Config,
    pub store: Store,
    agent: RwLock<Arc<Agent>>,
    /// The knowledge base, embedded; `None` until one is imported (customers then go to a person).
    support: RwLock<Option<Arc<Support>>>,
    /// The knowledge base's version that `support` was built from (a KB import rebuilds only it).
    kb_version: Mutex<String>,
    /// Woken when a message is queued in the store's outbox (front ends send their platform's).
    pub outbox: tokio::sync::Notify,
    http: reqwest::Client,
    version: Mutex<DataVersion>,
    pub metrics: Metrics,
    font: Option<chart::Font>,
    charts: Mutex<(HashMap<String, Chart>, std::collections::VecDeque<String>)>,
    limiter: DefaultKeyedRateLimiter<String>,
    /// Tries of link codes per chat (a code cannot be guessed by trying many).
    link_limiter: DefaultKeyedRateLimiter<String>,
    /// Workers plus the waiting room: a question that finds it full is told the service is busy.
    admitted: Semaphore,
    workers: Semaphore,
    /// This process, among the `dongcha serve` processes on the store (its `instance:` lease).
    pub instance: String,
    /// The named leases this process holds now.
    held: Mutex<BTreeSet<String>>,
    /// The store again, through connections of its own: renewing a lease and marking a reply sent
    /// never wait behind the questions being answered.
    lease_store: Store,
    /// Marks replies sent through `lease_store`, in batches.
    sent: sent::SentMarks,
    /// Background jobs of this process and where each stands ("running since …", "done …"), for
    /// `/healthz`.
    jobs: Mutex<std::collections::BTreeMap<String, String>>,
    /// Held while shared results are rebuilt: a second caller waits, then finds them current.
    refreshing: tokio::sync::Mutex<()>,
    /// The first shared results, computed in the background from [`App::open`] on.
    warming: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl App {
    /// Opens the store and the agent (encoders and heads loaded once), the chart font, the limits.
    /// `llm`: whether the LLM may take part in routing (`[agent] llm` still decides how).
    pub async fn open(cfg: &Config, llm: bool) -> Result<Arc<Self>, AppError> {
        let agent = Agent::open(cfg, llm).await?;
        let store = agent.ctx.store.clone();
        let version = store.data_version().await?;
        let font = match chart::Font::load(&cfg.chart_font()) {
            Ok(f) => Some(f),
            Err(e) => {
                tracing::warn!("replies go without charts: {e}");
                None
            }
        };
        let s = &cfg.serve;
        let quota =
            Quota::per_minute(NonZeroU32::new(s.rate_per_minute).unwrap_or(NonZeroU32::MIN))
                .allow_burst(NonZeroU32::new(s.rate_burst).unwrap_or(NonZeroU32::MIN));
        let kb_version = store.kb_version().await?;
        let lease_store = Store::open(&cfg.database_url(), 2).await?;
        let support = open_support(cfg, &store, &agent).await?;
        // The shared results the first questions need, computed while the front ends start.
        let first = Arc::new(agent);
        let warming = tokio::spawn({
            let agent = first.clone();
            async move { agent.ctx.warm().await }
        });
        Ok(Arc::new(Self {
            cfg: cfg.clone(),
            store,
            agent: RwLock::new(first),
            support: RwLock::new(support),
            kb_version: Mutex::new(kb_version),
            outbox: tokio::sync::Notify::new(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
            version: Mutex::new(version),
            metrics: Metrics::new(),
            font,
            charts: Mutex::new(Default::default()),
            limiter: DefaultKeyedRateLimiter::keyed(quota),
            link_limiter: DefaultKeyedRateLimiter::keyed(Quota::per_hour(
                NonZeroU32::new(5).expect("5 > 0"),
            )),
            admitted: Semaphore::new(s.workers + s.queue),
            workers: Semaphore::new(s.workers),
            instance: leases::new_instance(),
            held: Mutex::new(BTreeSet::new()),
            sent: sent::SentMarks::spawn(lease_store.clone()),
            lease_store,
            jobs: Mutex::new(Default::default()),
            refreshing: tokio::sync::Mutex::new(()),
            warming: Mutex::new(Some(warming)),
        }))
    }

    /// Marks the reply to `platform`'s update as sent (it reached the platform): written at once,
    /// through a connection of the app's own, batched with the marks of other replies sent meanwhile.
    /// A failure is logged (the reply stays unsent in the store, sent again only if this process dies).
    pub async fn mark_sent(&self, platform: &'static str, update_id: i64) {
        self.sent.mark(platform, update_id).await;
    }

    /// Waits until a message is queued in the outbox, a few seconds pass (another process may have
    /// queued some), or `stop` changes; false when it is time to stop.
    pub async fn outbox_wait(&self, stop: &mut tokio::sync::watch::Receiver<bool>) -> bool {
        tokio::select! {
            _ = self.outbox.notified() => true,
            _ = tokio::time::sleep(std::time::Duration::from_secs(2)) => true,
            _ = stop.changed() => false,
        }
    }

    /// Expires handoffs older than `[support] handoff_timeout_secs`: those conversations go back to
    /// the bot. Returns how many.
    pub async fn expire_handoffs(&self) -> Result<usize, AppError> {
        let before = chrono::Utc::now()
            - chrono::Duration::seconds(self.cfg.support.handoff_timeout_secs as i64);
        let expired = self
            .store
            .expire_handoffs(
                &before.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                release_notice(),
            )
            .await?;
        for h in &expired {
            tracing::info!(handoff = h.id, "handoff timed out: the bot answers again");
        }
        if !expired.is_empty() {
            self.outbox.notify_waiters();
        }
        Ok(expired.len())
    }

    /// Waits until the shared results the first questions need are computed. A command that ends soon
    /// after [`App::open`] (a benchmark) waits for them: the runtime's shutdown otherwise caught the
    /// task mid-query ("a Tokio context … is being shutdown" panic at exit).
    pub async fn warmed(&self) {
        let task = self.warming.lock().expect("warming lock").take();
        if let Some(t) = task {
            let _ = t.await;
        }
    }

    /// Records where the background job `name` stands (shown by `/healthz`).
    pub fn set_job(&self, name: &str, state: impl Into<String>) {
        let state = state.into();
        tracing::info!(job = name, "{state}");
        self.jobs
            .lock()
            .expect("jobs lock")
            .insert(name.to_string(), state);
    }

    /// Every background job of this process and where it stands.
    pub fn jobs(&self) -> std::collections::BTreeMap<String, String> {
        self.jobs.lock().expect("jobs lock").clone()
    }

    /// The agent as of the current data version.
    pub async fn agent(&self) -> Arc<Agent> {
        self.agent.read().await.clone()
    }

    /// Rebuilds the agent's shared results when the store's data version changed (another process
    /// imported or enriched). Returns whether it did.
    pub async fn refresh_if_changed(&self) -> Result<bool, AppError> {
        let _one_at_a_time = self.refreshing.lock().await;
        // The knowledge base first, on its own version: it is small, and a KB import must not make the
        // insight models be computed again.
        let kb = self.store.kb_version().await?;
        if *self.kb_version.lock().expect("kb version lock") != kb {
            tracing::info!(version = %kb, "the knowledge base changed: embedding it again");
            let agent = self.agent().await;
            *self.support.write().await = open_support(&self.cfg, &self.store, &agent).await?;
            *self.kb_version.lock().expect("kb version lock") = kb;
        }
        let now = self.store.data_version().await?;
        if *self.version.lock().expect("version lock") == now {
            return Ok(false);
        }
        tracing::info!(version = %now.0, "the shop's data changed: recomputing shared results");
        // Questions are answered from the old data until the new results are ready.
        let fresh = self.agent().await.refreshed().await?;
        fresh.ctx.warm().await;
        *self.agent.write().await = Arc::new(fresh);
        *self.version.lock().expect("version lock") = now;
        self.metrics.data_refreshes.inc();
        Ok(true)
    }

    /// Checks the data version every `[serve] refresh_secs` until the process ends.
    pub fn spawn_refresher(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let app = self.clone();
        tokio::spawn(async move {
            let every = Duration::from_secs(app.cfg.serve.refresh_secs.max(1));
            loop {
                tokio::time::sleep(every).await;
                if let Err(e) = app.refresh_if_changed().await {
                    tracing::warn!("checking for new data: {e}");
                }
                if let Err(e) = app.expire_handoffs().await {
                    tracing::warn!("expiring handoffs: {e}");
                }
            }
        })
    }

    /// A chart of a recent reply, by id.
    pub fn chart(&self, id: &str) -> Option<Chart> {
        self.charts.lock().expect("charts lock").0.get(id).cloned()
    }

    fn keep_chart(&self, c: &Chart) {
        let mut g = self.charts.lock().expect("charts lock");
        let (map, order) = &mut *g;
        if map.insert(c.id.clone(), c.clone()).is_none() {
            order.push_back(c.id.clone());
        }
        while order.len() > CHARTS_KEPT {
            if let Some(old) = order.pop_front() {
                map.remove(&old);
            }
        }
    }

    /// An update answered already: nothing to send, unless its reply went back in the response to an
    /// earlier delivery that (being delivered again) never arrived; then that reply, unchanged.
    async fn duplicate(&self, msg: &Message, update: i64) -> Result<Handled, AppError> {
        let mut reply = Reply::text("", false);
        if msg.in_response
            && let Some((chat, text)) = self
                .store
                .reply_sent_in_response(msg.platform, update)
                .await?
            && chat == msg.chat_id
        {
            reply = Reply::text(text, false);
        }
        Ok(self.count(msg.platform, plain(Outcome::Duplicate, reply)))
    }

    /// Answers one message (see the module's doc for the order of the rules).
    pub async fn handle(&self, msg: Message) -> Result<Handled, AppError> {
        let t0 = Instant::now();
        let platform = msg.platform;
        if let Some(u) = msg.update_id
            && self.store.update_answered(platform, u).await?
        {
            return self.duplicate(&msg, u).await;
        }
        let text = msg.text.trim();
        // The language of the words; a bare command ("/forecast") has none, so the user's interface
        // language decides.
        let words = command_rest(text).unwrap_or(text);
        let hint_zh = msg
            .lang_hint
            .as_deref()
            .is_some_and(|l| l.starts_with("zh"));
        let zh = crate::agent::router::is_chinese(words)
            || (!words.chars().any(char::is_alphabetic) && hint_zh);
        let (command, question) = parse_command(text, zh);
        // An operator's reply to a handoff's notice or relayed message is for that handoff's customer.
        let replied_handoff = match (&msg.reply_to, msg.role, &command) {
            (Some(m), Role::Operator, None) => {
                self.store
                    .handoff_of_message(platform, &msg.chat_id, m)
                    .await?
            }
            _ => None,
        };
        let handled = match (command.as_deref(), msg.role) {
            // A photo or a sticker: say what the bot reads, never stay silent.
            _ if text.is_empty() => {
                let t = if zh {
                    "我只能读文字消息，请用文字提问。"
                } else {
                    "I can only read text: please type your question."
                };
                plain(Outcome::Command, Reply::text(t, zh))
            }
            // A customer's every message, commands included, goes to customer service (which stays
            // silent while a person owns the conversation).
            (_, Role::Customer) => self.customer(&msg, text, command.as_deref(), zh).await?,
            (Some("start" | "help"), role) => {
                plain(Outcome::Command, Reply::text(help(role, zh), zh))
            }
            (Some("reset"), _) => {
                self.store
                    .reset_conversation(platform, &msg.chat_id)
                    .await?;
                let t = if zh {
                    "好的，之前的对话已清空。"
                } else {
                    "Done: this conversation starts afresh."
                };
                plain(Outcome::Command, Reply::text(t, zh))
            }
            _ if let Some(id) = replied_handoff => {
                self.reply_to_customer(&format!("{id} {text}"), zh).await?
            }
            (Some("handoffs"), Role::Operator) => self.list_handoffs(zh).await?,
            (Some("link"), Role::Operator) => self.issue_link(&msg, &question, zh).await?,
            (Some("release"), Role::Operator) => self.release(&msg, &question, zh).await?,
            (Some("reply"), Role::Operator) => self.reply_to_customer(&question, zh).await?,
            (Some("digest"), Role::Operator) => self.digest_now(&question, zh).await?,
            (Some(other), _) if !COMMANDS.iter().any(|(c, _)| *c == other) => {
                let t = if zh {
                    format!("没有 /{other} 这个命令。发送 /help 查看可用命令。")
                } else {
                    format!("There is no /{other} command. Send /help for the list.")
                };
                plain(Outcome::Command, Reply::text(t, zh))
            }
            (_, Role::Operator) if question.is_empty() => {
                plain(Outcome::Command, Reply::text(help(Role::Operator, zh), zh))
            }
            (_, Role::Operator) => self.answer(&msg, &question, zh).await?,
        };
        let elapsed = t0.elapsed().as_secs_f64() * 1000.0;
        if platform == HTTP_PLATFORM && matches!(handled.outcome, Outcome::Busy | Outcome::Limited)
        {
            // An HTTP client is told 429 and retries, with the same idempotency key: a refusal is not
            // its answer, so nothing is recorded (a chat's "busy" is a reply, and is).
            return Ok(self.count(platform, handled));
        }
        let args = args_json(&handled.args);
        let stored = self
            .store
            .record_turn(&TurnRecord {
                platform,
                chat_id: &msg.chat_id,
                user_id: &msg.user_id,
                role: msg.role.as_str(),
                question: text,
                tool: &handled.tool,
                args: &args,
                reply: &handled.reply.text,
                lang: if zh { "zh" } else { "en" },
                update_id: msg.update_id,
                instance: Some(&self.instance),
                in_response: msg.in_response && msg.update_id.is_some(),
            })
            .await?;
        if !stored {
            // Answered by a concurrent delivery of the same update in the meantime.
            return self
                .duplicate(&msg, msg.update_id.unwrap_or_default())
                .await;
        }
        if msg.role == Role::Operator {
            self.store
                .audit(&AuditEntry {
                    platform,
                    user_id: &msg.user_id,
                    chat_id: &msg.chat_id,
                    question: text,
                    tool: &handled.tool,
                    args: &args,
                    latency_ms: elapsed,
                    outcome: handled.outcome.as_str(),
                })
                .await?;
        }
        self.metrics
            .stage_seconds
            .with_label_values(&["total", platform])
            .observe(elapsed / 1000.0);
        Ok(self.count(platform, handled))
    }

    fn count(&self, platform: &str, h: Handled) -> Handled {
        self.metrics
            .questions
            .with_label_values(&[platform, h.outcome.as_str()])
            .inc();
        h
    }

    /// A customer's message: kept for the person who owns the conversation, else answered from the
    /// knowledge base, else handed to a person. Never the agent, never shop data.
    async fn customer(
        &self,
        msg: &Message,
        text: &str,
        command: Option<&str>,
        zh: bool,
    ) -> Result<Handled, AppError> {
        if let Some(h) = self
            .store
            .open_handoff_of(msg.platform, &msg.chat_id)
            .await?
        {
            self.metrics.support.with_label_values(&["relayed"]).inc();
            self.notify_operators(
                &format!("#{} {} {}: {}", h.id, h.platform, h.chat_id, mask(text)),
                Some(h.id),
            )
            .await?;
            return Ok(Handled {
                result: serde_json::json!({"handoff": {"id": h.id, "reason": h.reason, "status": "open"}}),
                ..plain(Outcome::Relayed, Reply::text("", zh))
            });
        }
        match command {
            Some("start" | "help") => {
                return Ok(plain(
                    Outcome::Command,
                    Reply::text(help(Role::Customer, zh), zh),
                ));
            }
            Some("reset") => {
                self.store
                    .reset_conversation(msg.platform, &msg.chat_id)
                    .await?;
                let t = if zh {
                    "好的，之前的对话已清空。"
                } else {
                    "Done: this conversation starts afresh."
                };
                return Ok(plain(Outcome::Command, Reply::text(t, zh)));
            }
            Some("link") => return self.redeem_link(msg, text, zh).await,
            // Any other command is words like the rest: it reaches the knowledge base, nothing else.
            _ => {}
        }
        if let Some(c) = &msg.customer
            && self
                .store
                .link_of(msg.platform, &msg.chat_id)
                .await?
                .is_none_or(|l| l.customer != *c)
        {
            self.store.link_chat(msg.platform, &msg.chat_id, c).await?;
        }
        let support = self.support.read().await.clone();
        let decision = match &support {
            Some(s) => {
                let last = self.last_answered_entry(msg).await?;
                let s = s.clone();
                let text = text.to_string();
                tokio::task::spawn_blocking(move || s.decide(&text, zh, last.as_deref()))
                    .await
                    .expect("support task")?
            }
            // No knowledge base imported: every question goes to a person.
            None => Decision::Handoff {
                reason: HandoffReason::LowConfidence,
                confidence: 0.0,
                best: None,
            },
        };
        match decision {
            Decision::Answer(a) => {
                self.metrics.support.with_label_values(&["answered"]).inc();
                let mut reply = a.text.clone();
                if a.other_language {
                    reply = format!("{reply}\n{}", crate::support::replies::other_language(zh));
                }
                if a.tags.iter().any(|t| t == crate::support::ORDER_TAG) {
                    reply = format!("{reply}\n\n{}", self.own_orders(msg, zh).await?);
                }
                reply = format!("{reply}\n\n{}", crate::support::replies::source(zh, &a.id));
                let mut args = Map::new();
                args.insert("entry".into(), Value::String(a.id.clone()));
                Ok(Handled {
                    outcome: Outcome::Customer,
                    reply: Reply::text(reply, zh),
                    tool: "support".into(),
                    args,
                    result: serde_json::json!({"source": a.id, "lang": a.lang,
                        "confidence": a.confidence, "other_language": a.other_language}),
                    timings_ms: None,
                })
            }
            Decision::Handoff {
                reason,
                confidence,
                best,
            } => {
                self.metrics
                    .support
                    .with_label_values(&[reason.as_str()])
                    .inc();
                let mut last: Vec<String> = self
                    .store
                    .recent_turns(msg.platform, &msg.chat_id, 5)
                    .await?
                    .into_iter()
                    .map(|t| t.question)
                    .collect();
                last.push(text.to_string());
                let id = self
                    .store
                    .open_handoff(&NewHandoff {
                        platform: msg.platform,
                        chat_id: &msg.chat_id,
                        user_id: &msg.user_id,
                        lang: if zh { "zh" } else { "en" },
                        reason: reason.as_str(),
                        question: text,
                        last_messages: &last,
                    })
                    .await?;
                tracing::info!(
                    handoff = id,
                    reason = reason.as_str(),
                    "conversation handed to a person"
                );
                if let Some(h) = self.store.handoff(id).await? {
                    self.announce(&h).await?;
                }
                let mut args = Map::new();
                args.insert("reason".into(), Value::String(reason.as_str().into()));
                Ok(Handled {
                    outcome: Outcome::Handoff,
                    reply: Reply::text(crate::support::replies::handoff(zh), zh),
                    tool: "handoff".into(),
                    args,
                    result: serde_json::json!({"handoff": {"id": id, "reason": reason,
                        "confidence": confidence, "best": best, "status": "open"}}),
                    timings_ms: None,
                })
            }
        }
    }

    /// Queues `text` for the operators' Telegram chat (`[support] operator_chat`), if there is one.
    async fn notify_operators(&self, text: &str, handoff: Option<i64>) -> Result<(), AppError> {
        let chat = self.cfg.support.operator_chat;
        if chat != 0 {
            self.store
                .enqueue_for("telegram", &chat.to_string(), text, handoff)
                .await?;
            self.outbox.notify_waiters();
        }
        Ok(())
    }

    /// A new handoff, told to the operators' chat and to `[support] handoff_webhook` (personal data
    /// masked in both).
    async fn announce(&self, h: &crate::store::support::HandoffRow) -> Result<(), AppError> {
        let last: Vec<String> = h.last_messages.iter().map(|m| mask(m)).collect();
        let text = format!(
            "转人工 / handoff #{} ({}) · {} {} · {}\n{}\n/reply {} … · /release {}",
            h.id,
            h.reason,
            h.platform,
            h.chat_id,
            h.lang,
            last.iter()
                .map(|m| format!("> {m}"))
                .collect::<Vec<_>>()
                .join("\n"),
            h.id,
            h.id
        );
        self.notify_operators(&text, Some(h.id)).await?;
        let url = self.cfg.support.handoff_webhook.trim();
        if !url.is_empty() {
            let body = serde_json::json!({
                "id": h.id, "platform": h.platform, "chat_id": h.chat_id, "lang": h.lang,
                "reason": h.reason, "question": mask(&h.question), "last_messages": last,
                "opened_at": h.opened_at,
            });
            let (client, url, id) = (self.http.clone(), url.to_string(), h.id);
            tokio::spawn(async move {
                for attempt in 0..6u32 {
                    match client.post(&url).json(&body).send().await {
                        Ok(r) if r.status().is_success() => return,
                        Ok(r) => {
                            tracing::warn!(handoff = id, status = %r.status(), "handoff webhook refused")
                        }
                        Err(e) => tracing::warn!(handoff = id, "handoff webhook: {e}"),
                    }
                    tokio::time::sleep(Duration::from_millis(500 << attempt)).await;
                }
                tracing::error!(handoff = id, "handoff webhook gave up after 6 tries");
            });
        }
        Ok(())
    }

    /// `/reply ID text`: an operator's words to the customer of an open handoff.
    async fn reply_to_customer(&self, arg: &str, zh: bool) -> Result<Handled, AppError> {
        let (id, text) = arg
            .trim()
            .split_once(char::is_whitespace)
            .unwrap_or((arg.trim(), ""));
        let id = id.trim_start_matches('#').parse::<i64>().ok();
        let open = match id {
            Some(id) => self
                .store
                .handoff(id)
                .await?
                .filter(|h| h.released_at.is_none()),
            None => None,
        };
        let t = match (open, text.trim().is_empty()) {
            (_, true) => (if zh {
                "用法：/reply 编号 回复内容"
            } else {
                "Usage: /reply ID your message"
            })
            .to_string(),
            (None, _) => (if zh {
                "没有这个进行中的转人工编号。发送 /handoffs 查看。"
            } else {
                "No open handoff with that number. Send /handoffs for the list."
            })
            .to_string(),
            (Some(h), false) => {
                self.store
                    .enqueue(&h.platform, &h.chat_id, text.trim())
                    .await?;
                self.outbox.notify_waiters();
                if zh {
                    format!("已发送给 #{}", h.id)
                } else {
                    format!("Sent to #{}", h.id)
                }
            }
        };
        Ok(plain(Outcome::Command, Reply::text(t, zh)))
    }

    /// `/link CUSTOMER` (operators): a one-time code the customer sends to link their chat to their
    /// orders.
    async fn issue_link(&self, msg: &Message, arg: &str, zh: bool) -> Result<Handled, AppError> {
        let customer = arg.trim();
        let t = if customer.is_empty() || customer.contains(char::is_whitespace) {
            (if zh {
                "用法：/link 客户编号（生成一次性绑定码，客户发送“/link 绑定码”即可查询自己的订单）"
            } else {
                "Usage: /link CUSTOMER_ID (makes a one-time code; the customer sends \"/link CODE\" to see their own orders)"
            })
            .to_string()
        } else if !self.store.customer_exists(customer).await? {
            if zh {
                format!("没有客户 {customer}。")
            } else {
                format!("There is no customer {customer}.")
            }
        } else {
            let code = crate::support::link_code();
            let hours = self.cfg.support.link_code_hours.max(1);
            let expires = self
                .store
                .issue_link_code(
                    &code,
                    customer,
                    &msg.user_id,
                    chrono::Duration::hours(hours),
                )
                .await?;
            tracing::info!(operator = %msg.user_id, "link code issued");
            if zh {
                format!(
                    "客户 {customer} 的绑定码：{code}（一次有效，{hours} 小时内，至 {expires}）。请客户发送：/link {code}"
                )
            } else {
                format!(
                    "Link code for customer {customer}: {code} (once, within {hours} h, until {expires}). The customer sends: /link {code}"
                )
            }
        };
        Ok(plain(Outcome::Command, Reply::text(t, zh)))
    }

    /// A customer's `/link CODE`.
    async fn redeem_link(&self, msg: &Message, text: &str, zh: bool) -> Result<Handled, AppError> {
        use crate::store::support::LinkRefused;
        // A code has no language: the conversation's last words have.
        let zh = match self
            .store
            .recent_turns(msg.platform, &msg.chat_id, 10)
            .await?
            .iter()
            .rev()
            .find(|t| !t.question.starts_with('/'))
        {
            Some(t) => crate::agent::router::is_chinese(&t.question),
            None => zh,
        };
        let code = command_rest(text).unwrap_or_default().trim().to_uppercase();
        let key = format!("{}:{}", msg.platform, msg.chat_id);
        let t = if code.is_empty() {
            crate::support::replies::how_to_link(zh).to_string()
        } else if self.link_limiter.check_key(&key).is_err() {
            (if zh {
                "尝试次数过多，请一小时后再试，或联系客服。"
            } else {
                "Too many tries: please wait an hour, or ask the shop for help."
            })
            .to_string()
        } else {
            match self
                .store
                .redeem_link_code(&code, msg.platform, &msg.chat_id)
                .await?
            {
                Ok(_) => (if zh {
                    "绑定成功！现在可以问“我的订单到哪了？”查看您自己的订单。"
                } else {
                    "Linked! Ask \"Where is my order?\" to see your own orders."
                })
                .to_string(),
                Err(why) => {
                    self.metrics
                        .support
                        .with_label_values(&["link_refused"])
                        .inc();
                    (match (why, zh) {
                        (LinkRefused::Used, true) => "这个绑定码已经用过了，请向店铺重新获取。",
                        (LinkRefused::Used, false) => {
                            "That code was used already: please ask the shop for a new one."
                        }
                        (LinkRefused::Expired, true) => "这个绑定码已过期，请向店铺重新获取。",
                        (LinkRefused::Expired, false) => {
                            "That code has expired: please ask the shop for a new one."
                        }
                        (LinkRefused::Unknown, true) => "绑定码不对，请检查后重新发送。",
                        (LinkRefused::Unknown, false) => {
                            "That code is not right: please check it and send it again."
                        }
                    })
                    .to_string()
                }
            }
        };
        Ok(plain(Outcome::Command, Reply::text(t, zh)))
    }

    /// The linked customer's own latest orders, or how to link (never anyone else's: the customer comes
    /// from the chat's link, not from the message).
    async fn own_orders(&self, msg: &Message, zh: bool) -> Result<String, AppError> {
        let Some(link) = self.store.link_of(msg.platform, &msg.chat_id).await? else {
            return Ok(crate::support::replies::how_to_link(zh).to_string());
        };
        let lines = self
            .store
            .customer_lines(&link.customer)
            .await?
            .unwrap_or_default();
        Ok(crate::support::replies::own_orders(
            zh,
            &lines,
            self.cfg.support.orders_shown,
        ))
    }

    /// The entry the conversation's last turn answered with, if its last turn was a KB answer.
    async fn last_answered_entry(&self, msg: &Message) -> Result<Option<String>, AppError> {
        let last = self
            .store
            .recent_turns(msg.platform, &msg.chat_id, 1)
            .await?
            .pop();
        Ok(last.filter(|t| t.tool == "support").and_then(|t| {
            serde_json::from_str::<Map<String, Value>>(&t.args)
                .ok()?
                .get("entry")?
                .as_str()
                .map(str::to_string)
        }))
    }

    /// `/handoffs`: the conversations people own now.
    /// `/digest [NAME]` (operators): a configured digest rendered now for the last complete period,
    /// whether or not anything crossed a threshold; nothing is sent elsewhere or recorded.
    async fn digest_now(&self, arg: &str, zh: bool) -> Result<Handled, AppError> {
        let name = arg.split_whitespace().next();
        let spec = match name {
            Some(n) => self.cfg.digest.iter().find(|d| d.name == n),
            None => self.cfg.digest.first(),
        };
        let Some(spec) = spec else {
            let names: Vec<&str> = self.cfg.digest.iter().map(|d| d.name.as_str()).collect();
            let t = match (zh, names.is_empty()) {
                (true, true) => "还没有配置摘要（config.toml 的 [[digest]]）。".to_string(),
                (false, true) => "No digest is configured ([[digest]] in config.toml).".to_string(),
                (true, false) => format!("没有这个摘要。可用：{}", names.join("、")),
                (false, false) => format!("No such digest. Configured: {}", names.join(", ")),
            };
            return Ok(plain(Outcome::Command, Reply::text(t, zh)));
        };
        let made = async {
            let schedule =
                crate::digest::schedule::Schedule::parse(&spec.schedule, &spec.timezone)?;
            let day = schedule.local_day(chrono::Utc::now());
            let (period, clock) = crate::digest::period_for(&self.cfg, spec, day).await?;
            let font = crate::reply::chart::Font::load(&self.cfg.chart_font()).ok();
            crate::digest::build(&self.cfg, spec, period, clock, font.as_ref()).await
        }
        .await;
        let reply = match made {
            Ok(d) => {
                let mut r = Reply::text(d.text.clone(), d.zh);
                r.chart = d.charts.first().cloned();
                if let Some(c) = &r.chart {
                    self.keep_chart(c);
                }
                return Ok(Handled {
                    outcome: Outcome::Command,
                    tool: "digest".into(),
                    reply: r,
                    args: Map::new(),
                    result: serde_json::to_value(&d.output).unwrap_or(Value::Null),
                    timings_ms: None,
                });
            }
            Err(e) => {
                tracing::warn!(digest = %spec.name, "digest: {e}");
                Reply::text(
                    if zh {
                        "摘要生成失败，请稍后再试。"
                    } else {
                        "The digest could not be made; please try again later."
                    },
                    zh,
                )
            }
        };
        Ok(plain(Outcome::Command, reply))
    }

    async fn list_handoffs(&self, zh: bool) -> Result<Handled, AppError> {
        let open = self.store.open_handoffs().await?;
        let mut text = if open.is_empty() {
            (if zh {
                "没有转人工的对话。"
            } else {
                "No conversation is with a person."
            })
            .to_string()
        } else if zh {
            format!(
                "{} 个对话在人工处理中（/release 编号 交还给机器人）：",
                open.len()
            )
        } else {
            format!(
                "{} conversation(s) with a person (/release ID hands one back):",
                open.len()
            )
        };
        for h in &open {
            text.push_str(&format!(
                "\n#{} {} {} · {} · {}",
                h.id,
                h.platform,
                h.chat_id,
                h.reason,
                crate::support::mask::mask(&h.question)
            ));
        }
        Ok(plain(Outcome::Command, Reply::text(text, zh)))
    }

    /// `/release ID`: the conversation goes back to the bot.
    async fn release(&self, msg: &Message, arg: &str, zh: bool) -> Result<Handled, AppError> {
        let id = arg.trim().trim_start_matches('#').parse::<i64>().ok();
        let done = match id {
            Some(id) => {
                self.store
                    .release_handoff(id, &msg.user_id, release_notice())
                    .await?
            }
            None => false,
        };
        if done {
            self.outbox.notify_waiters();
        }
        let text = match (done, zh) {
            (true, true) => format!("已交还给机器人：#{}", id.unwrap_or_default()),
            (true, false) => format!("Handed back to the bot: #{}", id.unwrap_or_default()),
            (false, true) => "没有这个进行中的转人工编号。发送 /handoffs 查看。".to_string(),
            (false, false) => {
                "No open handoff with that number. Send /handoffs for the list.".to_string()
            }
        };
        Ok(plain(Outcome::Command, Reply::text(text, zh)))
    }

    /// An operator's question through the limits to the agent.
    async fn answer(&self, msg: &Message, question: &str, zh: bool) -> Result<Handled, AppError> {
        if self
            .limiter
            .check_key(&format!("{}:{}", msg.platform, msg.user_id))
            .is_err()
        {
            let t = if zh {
                "提问太频繁了，请稍等一分钟再问。"
            } else {
                "You are asking faster than I can take: please wait a minute and ask again."
            };
            return Ok(plain(Outcome::Limited, Reply::text(t, zh)));
        }
        let Ok(_admitted) = self.admitted.try_acquire() else {
            let t = if zh {
                "现在太忙了，请稍后重试。"
            } else {
                "I'm busy right now, please retry in a moment."
            };
            return Ok(plain(Outcome::Busy, Reply::text(t, zh)));
        };
        self.metrics.queue_depth.inc();
        let _depth = Decrement(&self.metrics.queue_depth);
        let history = self.history(msg).await?;
        let timeout = Duration::from_millis(self.cfg.serve.question_timeout_ms.max(100));
        let agent = self.agent().await;
        let asked = tokio::time::timeout(timeout, async {
            let _worker = self
                .workers
                .acquire()
                .await
                .expect("semaphore never closed");
            let mut history = history;
            agent.ask(question, &mut history).await
        })
        .await;
        let a = match asked {
            Err(_) => {
                let t = if zh {
                    "抱歉，这个问题算得太久了，请换个问法或稍后再试。"
                } else {
                    "Sorry, that took too long to work out. Please try again later or ask more narrowly."
                };
                return Ok(plain(Outcome::Timeout, Reply::text(t, zh)));
            }
            Ok(Err(e)) => {
                tracing::error!(platform = msg.platform, "answering failed: {e}");
                let t = if zh {
                    "抱歉，出错了，这个问题暂时答不了。"
                } else {
                    "Sorry, something went wrong and I can't answer that right now."
                };
                return Ok(plain(Outcome::Error, Reply::text(t, zh)));
            }
            Ok(Ok(a)) => a,
        };
        for (stage, ms) in [
            ("route", a.timings_ms.route),
            ("tool", a.timings_ms.tool),
            ("compose", a.timings_ms.compose),
        ] {
            self.metrics
                .stage_seconds
                .with_label_values(&[stage, msg.platform])
                .observe(ms / 1000.0);
        }
        if a.route.llm.is_some() {
            self.metrics.llm_consultations.inc();
        }
        if !a.ungrounded.is_empty() {
            self.metrics
                .ungrounded_replies
                .with_label_values(&[a.tool.as_str()])
                .inc();
        }
        let reply = Reply::from_answer(&a, self.font.as_ref());
        if let Some(c) = &reply.chart {
            self.keep_chart(c);
        }
        Ok(Handled {
            outcome: Outcome::Answered,
            reply,
            tool: a.tool,
            args: a.args,
            result: a.result,
            timings_ms: Some(a.timings_ms),
        })
    }

    /// The conversation's stored turns as the agent's history.
    async fn history(&self, msg: &Message) -> Result<Vec<Turn>, AppError> {
        let turns = self
            .store
            .recent_turns(msg.platform, &msg.chat_id, self.cfg.serve.history_turns)
            .await?;
        Ok(turns
            .into_iter()
            .filter(|t| crate::tools::NAMES.contains(&t.tool.as_str()))
            .map(|t| Turn {
                question: t.question,
                tool: t.tool,
                args: serde_json::from_str(&t.args).unwrap_or_default(),
            })
            .collect())
    }
}

/// The knowledge base in the store, embedded with the agent's review encoder (vectors cached under
/// data_dir/cache); `None` when none was imported.
async fn open_support(
    cfg: &Config,
    store: &Store,
    agent: &Agent,
) -> Result<Option<Arc<Support>>, AppError> {
    let entries: Vec<crate::support::Entry> = store
        .kb_entries()
        .await?
        .into_iter()
        .map(crate::support::Entry::from_row)
        .collect();
    if entries.is_empty() {
        return Ok(None);
    }
    let encoder = agent.ctx.encoder().await?;
    let settings = SupportSettings::from(&cfg.support);
    let s = tokio::task::block_in_place(|| {
        let mut cache = crate::support::vector_cache(cfg, &encoder)?;
        Support::build(
            entries,
            &crate::support::outside_phrasings(),
            encoder.clone(),
            Some(&mut cache),
            settings,
        )
    })?;
    Ok(Some(Arc::new(s)))
}

struct Decrement<'a>(&'a prometheus::IntGauge);
impl Drop for Decrement<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

fn plain(outcome: Outcome, reply: Reply) -> Handled {
    Handled {
        outcome,
        tool: outcome.as_str().to_string(),
        reply,
        args: Map::new(),
        result: Value::Null,
        timings_ms: None,
    }
}

/// What follows a leading `/command` (None when the text is not a command).
fn command_rest(text: &str) -> Option<&str> {
    let rest = text.strip_prefix('/')?;
    let (_, after) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    Some(after.trim())
}

/// `/command@bot rest` → (command, the question it stands for). Plain text is a question.
pub fn parse_command(text: &str, zh: bool) -> (Option<String>, String) {
    let Some(rest) = text.strip_prefix('/') else {
        return (None, text.to_string());
    };
    let (head, after) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    let name = head.split('@').next().unwrap_or(head).to_lowercase();
    let after = after.trim();
    // A command without words stands for its usual question, in the asker's language.
    let default = |zh_q: &str, en_q: &str| {
        if zh {
            zh_q.to_string()
        } else {
            en_q.to_string()
        }
    };
    let question = match (name.as_str(), after.is_empty()) {
        ("ask", _) => after.to_string(),
        (_, false) => {
            let prefix = match name.as_str() {
                "sales" => {
                    if zh {
                        "销售额"
                    } else {
                        "sales"
                    }
                }
                "forecast" => {
                    if zh {
                        "销售预测"
                    } else {
                        "sales forecast"
                    }
                }
                "churn" => {
                    if zh {
                        "流失风险"
                    } else {
                        "churn risk"
                    }
                }
                "segments" => {
                    if zh {
                        "客户分群"
                    } else {
                        "customer segments"
                    }
                }
                "complaints" => {
                    if zh {
                        "差评话题"
                    } else {
                        "top complaints"
                    }
                }
                _ => "",
            };
            format!("{prefix} {after}").trim().to_string()
        }
        ("sales", true) => default(
            "最近30天的销售额是多少？",
            "What were sales in the last 30 days?",
        ),
        ("forecast", true) => default(
            "预测未来30天的销售额",
            "Forecast sales for the next 30 days",
        ),
        ("churn", true) => default(
            "哪些客户最可能流失？",
            "Which customers are most likely to churn?",
        ),
        ("segments", true) => default("我们有哪些客户分群？", "What customer segments do we have?"),
        ("complaints", true) => default(
            "最近差评最多的问题是什么？",
            "What are the top complaints recently?",
        ),
        _ => String::new(),
    };
    (Some(name), question)
}

fn help(role: Role, zh: bool) -> String {
    match (role, zh) {
        (Role::Operator, true) => "你好，我是洞察。直接用中文或英文提问，例如“上个月的销售额是多少？”“预测下个月的销售额”“哪些高价值客户要流失了？”。\n命令：/sales 销售额，/forecast 销售预测（附图），/churn 流失风险，/segments 客户分群，/complaints 差评话题，/digest 最新一期摘要，/reset 清空对话。".into(),
        (Role::Operator, false) => "Hi, I'm dongcha. Ask in English or Chinese, e.g. \"What were sales last month?\", \"Forecast next month's sales\", \"Which high-value customers are about to churn?\".\nCommands: /sales, /forecast (with a chart), /churn, /segments, /complaints, /digest for the latest digest, /reset to start afresh.".into(),
        (Role::Customer, zh) => customer_reply(zh),
    }
}

/// What a customer gets: the shop's service desk, never operator data.
pub fn customer_reply(zh: bool) -> String {
    if zh {
        "您好！我是店铺的自动客服助手，可以回答发货、运费、退换货、退款、保修、支付、发票、优惠券等问题。需要人工客服时，发送“转人工”即可。"
            .into()
    } else {
        "Hello! I'm the shop's assistant: ask about shipping, delivery fees, returns and exchanges, refunds, warranty, payment, invoices or coupons. Type \"human\" at any time to reach a person.".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_become_questions_in_the_askers_language() {
        let cases = [
            ("/forecast", true, Some("forecast"), "预测未来30天的销售额"),
            (
                "/forecast",
                false,
                Some("forecast"),
                "Forecast sales for the next 30 days",
            ),
            (
                "/forecast@dongcha_bot next month",
                false,
                Some("forecast"),
                "sales forecast next month",
            ),
            ("/ask 上个月的销售额", true, Some("ask"), "上个月的销售额"),
            ("/RESET", false, Some("reset"), ""),
            ("上个月的销售额", true, None, "上个月的销售额"),
        ];
        for (text, zh, cmd, q) in cases {
            let (c, question) = parse_command(text, zh);
            assert_eq!(c.as_deref(), cmd, "{text}");
            assert_eq!(question, q, "{text}");
        }
    }
}
