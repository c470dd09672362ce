//! Telegram (teloxide): long polling by default, a webhook when `[telegram] webhook_url` is set. A thin
//! adapter: it parses an update into an [`app::Message`], calls [`App::handle`] and renders the reply
//! (charts as photos, text as HTML split under Telegram's limit).
//!
//! Exactly once: the offset confirmed to Telegram is the store's; the fact that update N was answered is
//! stored in the same transaction as its conversation turn ([`App::handle`]), so an update redelivered
//! after a crash is recognised and skipped. A reply stored but not yet sent when the process died is sent
//! at the next start.
//!
//! Replies, across a crash: long polling sends each reply through the API and then marks it sent; a
//! process killed between the two leaves a reply Telegram has but the store does not know of, and it is
//! sent again (at least once: the Bot API has no idempotency key, and the other choice loses replies).
//! Webhook mode closes that window: the reply goes back in the webhook's HTTP response, which Telegram
//! both takes as the update's confirmation and runs as a `sendMessage` (the Bot API's "reply to the
//! webhook"), so the update is confirmed and answered together or neither; the reply is stored as sent
//! with its turn, and a redelivery (the response never arrived) is answered with it again. Only a reply
//! of several messages (a chart, or text over Telegram's limit) sends all but its last through the API,
//! and those parts are at least once.
//!
//! Sending limits are teloxide's Throttle adaptor (a 429 freezes the chat for its `retry_after`, then
//! resends); network errors are retried with backoff.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use axum::response::IntoResponse;
use teloxide::adaptors::Throttle;
use teloxide::adaptors::throttle::Limits;
use teloxide::payloads::{GetUpdatesSetters, SendMessageSetters, SendPhotoSetters};
use teloxide::prelude::*;
use teloxide::types::{
    AllowedUpdate, BotCommand, ChatAction, InputFile, MessageEntityKind, ParseMode, UpdateKind,
};
use teloxide::{ApiError, RequestError};
use tokio::sync::watch;

use crate::app::{self, App, Outcome, Role};
use crate::reply::{self, Reply};

pub const PLATFORM: &str = "telegram";

/// The environment variable holding the bot token (never config).
pub const TOKEN_ENV: &str = "DONGCHA_TELEGRAM_TOKEN";

#[derive(Debug, thiserror::Error)]
pub enum TelegramError {
    #[error("telegram api_url {0:?} is not a URL")]
    ApiUrl(String),
    #[error("telegram: {0}")]
    Request(#[from] RequestError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// The bot, configured from `[telegram]`: the plain client (API base) for polling and set-up calls, and
/// the Throttle adaptor (sending limits) for messages unless `throttle = false`, which sends at once and
/// leaves 429s to [`send_with_retry`].
fn bot(app: &App, token: &str) -> Result<(Bot, Option<Throttle<Bot>>), TelegramError> {
    let t = &app.cfg.telegram;
    let mut bot = Bot::new(token);
    if !t.api_url.trim().is_empty() {
        let url = reqwest::Url::parse(t.api_url.trim())
            .map_err(|_| TelegramError::ApiUrl(t.api_url.clone()))?;
        bot = bot.set_api_url(url);
    }
    let throttled = t.throttle.then(|| {
        bot.clone().throttle(Limits {
            messages_per_sec_chat: t.messages_per_sec_chat.max(1),
            messages_per_min_chat: t.messages_per_min_chat.max(1),
            messages_per_min_channel_or_supergroup: t.messages_per_min_chat.max(1),
            messages_per_sec_overall: t.messages_per_sec_overall.max(1),
        })
    });
    Ok((bot, throttled))
}

/// `$body` with `$b` the throttled client when there is one, else the plain one.
macro_rules! sender {
    ($bots:expr, |$b:ident| $body:expr) => {
        match &$bots.throttled {
            Some($b) => $body,
            None => {
                let $b = &$bots.bot;
                $body
            }
        }
    };
}

/// Waits 1, 2, 4 … 30 s between tries of a call that failed on the network; gives up when asked to stop.
async fn backoff(attempt: u32, stop: &mut watch::Receiver<bool>) -> bool {
    let secs = (1u64 << attempt.min(5)).min(30);
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_millis(secs * 250 + 250)) => true,
        _ = stop.changed() => false,
    }
}

/// Whether an error is worth trying again (network, server, rate limit), not a refusal.
fn transient(e: &RequestError) -> bool {
    matches!(
        e,
        RequestError::Network(_) | RequestError::RetryAfter(_) | RequestError::Io(_)
    ) || matches!(e, RequestError::Api(ApiError::Unknown(s)) if s.contains("Internal Server Error") || s.contains("Bad Gateway"))
}

struct Bots {
    bot: Bot,
    throttled: Option<Throttle<Bot>>,
    platform: &'static str,
    operators: HashSet<u64>,
    username: String,
}

/// Runs the Telegram front end until `stop` turns true; in-flight updates are finished first.
pub async fn run(
    app: Arc<App>,
    token: String,
    stop: watch::Receiver<bool>,
) -> Result<(), TelegramError> {
    run_as(app, token, stop, PLATFORM).await
}

/// [`run`], keeping its conversations and offsets under `platform` (benches use their own).
pub async fn run_as(
    app: Arc<App>,
    token: String,
    mut stop: watch::Receiver<bool>,
    platform: &'static str,
) -> Result<(), TelegramError> {
    let (bot, throttled) = bot(&app, &token)?;
    // getMe, retried while Telegram is unreachable.
    let mut attempt = 0;
    let me = loop {
        match bot.get_me().await {
            Ok(me) => break me,
            Err(e) if transient(&e) => {
                tracing::warn!("telegram getMe: {e}; retrying");
                app.metrics.retried(PLATFORM, "network");
                attempt += 1;
                if !backoff(attempt, &mut stop).await {
                    return Ok(());
                }
            }
            Err(e) => return Err(e.into()),
        }
    };
    let username = match app.cfg.telegram.bot_username.trim() {
        "" => me.username.clone().unwrap_or_default(),
        u => u.trim_start_matches('@').to_string(),
    };
    tracing::info!(bot = %username, "telegram connected");
    let commands: Vec<BotCommand> = app::COMMANDS
        .iter()
        .map(|(c, d)| BotCommand::new(*c, *d))
        .collect();
    if let Err(e) = bot.set_my_commands(commands).await {
        tracing::warn!("telegram setMyCommands: {e}");
    }
    let bots = Arc::new(Bots {
        bot,
        throttled,
        platform,
        operators: app
            .cfg
            .roles
            .telegram_operators
            .iter()
            .map(|i| *i as u64)
            .collect(),
        username,
    });
    // What dongcha sends on its own (handoff notices, relayed messages, operators' replies) and the
    // replies a process that is gone stored but never sent: by one process at a time.
    let outbox = tokio::spawn({
        let (app, bots, stop) = (app.clone(), bots.clone(), stop.clone());
        async move {
            let name = format!("{}:outbox", bots.platform);
            app.while_leased(&name, stop, |halt| {
                send_outbox(app.clone(), bots.clone(), halt)
            })
            .await;
        }
    });
    let done = if !app.cfg.telegram.webhook_url.trim().is_empty() {
        // Every process behind the webhook answers what reaches it.
        webhook(app, bots, stop).await
    } else {
        // One process at a time long-polls (Telegram refuses a second getUpdates).
        let name = format!("{}:poll", bots.platform);
        let polling = app.clone();
        polling
            .while_leased(&name, stop, |halt| {
                let (app, bots) = (app.clone(), bots.clone());
                async move {
                    if let Err(e) = bots.bot.delete_webhook().await {
                        tracing::warn!("telegram deleteWebhook: {e}");
                    }
                    poll(app, bots, halt).await
                }
            })
            .await
            .unwrap_or(Ok(()))
    };
    if done.is_err() {
        outbox.abort();
    }
    let _ = outbox.await;
    done
}

/// Sends the outbox's Telegram messages as they are queued (woken by the app, and every few seconds in
/// case another process queued some), marking each sent; a failed send stays queued for the next round.
/// Each round also sends the replies that a process which is gone (killed, or this one before a restart)
/// stored but never sent.
async fn send_outbox(app: Arc<App>, bots: Arc<Bots>, mut stop: watch::Receiver<bool>) {
    loop {
        match app.store.orphan_replies(bots.platform, &app.instance).await {
            Ok(orphans) => {
                for (update, chat, text) in orphans {
                    if let Ok(chat) = chat.parse::<i64>() {
                        tracing::info!(update, "sending a reply its process stored but never sent");
                        deliver(&app, &bots, ChatId(chat), &Reply::text(text, false), update).await;
                    }
                }
            }
            Err(e) => tracing::warn!("outbox: unsent replies: {e}"),
        }
        match app.store.outgoing(bots.platform, None, 50).await {
            Ok(batch) => {
                for o in batch {
                    let Ok(chat) = o.chat_id.parse::<i64>() else {
                        tracing::warn!(id = o.id, chat = %o.chat_id, "outbox: not a Telegram chat id");
                        let _ = app.store.mark_outgoing_sent(o.id, None).await;
                        continue;
                    };
                    let text = reply::escape_html(&o.text);
                    // The sent message's id is kept: an operator's reply to it answers its handoff.
                    let sent = match &o.photo {
                        // A digest's chart, its title as the caption.
                        Some(png) => {
                            let caption: String =
                                o.text.chars().take(reply::CAPTION_LIMIT).collect();
                            send_with_retry(&app, || async {
                                let photo = InputFile::memory(png.clone()).file_name("chart.png");
                                sender!(bots, |b| b
                                    .send_photo(ChatId(chat), photo.clone())
                                    .caption(caption.clone())
                                    .await
                                    .map(|m| m.id.0))
                            })
                            .await
                        }
                        None => {
                            send_with_retry(&app, || async {
                                sender!(bots, |b| b
                                    .send_message(ChatId(chat), text.clone())
                                    .parse_mode(ParseMode::Html)
                                    .await
                                    .map(|m| m.id.0))
                            })
                            .await
                        }
                    };
                    if let Some(message_id) = sent
                        && let Err(e) = app
                            .store
                            .mark_outgoing_sent(o.id, Some(&message_id.to_string()))
                            .await
                    {
                        tracing::warn!(id = o.id, "outbox: marking sent: {e}");
                    }
                }
            }
            Err(e) => tracing::warn!("outbox: {e}"),
        }
        if !app.outbox_wait(&mut stop).await {
            return;
        }
    }
}

async fn poll(
    app: Arc<App>,
    bots: Arc<Bots>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), TelegramError> {
    let mut attempt = 0;
    while !*stop.borrow() {
        let offset = app.store.platform_offset(bots.platform).await?;
        let req = bots
            .bot
            .get_updates()
            .offset(offset as i32)
            .timeout(app.cfg.telegram.poll_timeout_secs)
            .limit(100)
            .allowed_updates(vec![AllowedUpdate::Message]);
        let updates = tokio::select! {
            r = req.send() => r,
            _ = stop.changed() => break,
        };
        let updates = match updates {
            Ok(u) => {
                attempt = 0;
                u
            }
            Err(RequestError::RetryAfter(s)) => {
                app.metrics.retried(PLATFORM, "retry_after");
                tokio::time::sleep(s.duration()).await;
                continue;
            }
            Err(e) => {
                tracing::warn!("telegram getUpdates: {e}; retrying");
                app.metrics.retried(PLATFORM, "network");
                attempt += 1;
                if !backoff(attempt, &mut stop).await {
                    break;
                }
                continue;
            }
        };
        let Some(last) = updates.iter().map(|u| u.id.0 as i64).max() else {
            continue;
        };
        // Chats in parallel, each chat's messages in order.
        let mut by_chat: BTreeMap<i64, Vec<Update>> = BTreeMap::new();
        for u in updates {
            let chat = match &u.kind {
                UpdateKind::Message(m) => m.chat.id.0,
                _ => 0,
            };
            by_chat.entry(chat).or_default().push(u);
        }
        let mut tasks = tokio::task::JoinSet::new();
        for (_, ups) in by_chat {
            let (app, bots) = (app.clone(), bots.clone());
            tasks.spawn(async move {
                // The first update of this chat that could not be stored: it and the chat's later ones
                // (kept in order) are left for redelivery.
                for u in ups {
                    let id = u.id.0 as i64;
                    if matches!(on_update(&app, &bots, u, false).await, Done::Again) {
                        return Some(id);
                    }
                }
                None
            });
        }
        let mut next = last + 1;
        while let Some(r) = tasks.join_next().await {
            if let Ok(Some(failed)) = r {
                next = next.min(failed);
            }
        }
        // Everything below `next` is answered; Telegram redelivers the rest (answered ones among them are
        // recognised and skipped).
        app.store.set_platform_offset(bots.platform, next).await?;
        if next <= last {
            attempt += 1;
            if !backoff(attempt, &mut stop).await {
                break;
            }
        }
    }
    Ok(())
}

/// Webhook mode: Telegram POSTs updates to `[telegram] webhook_url`, which reaches `webhook_listen`.
async fn webhook(
    app: Arc<App>,
    bots: Arc<Bots>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), TelegramError> {
    let url = reqwest::Url::parse(app.cfg.telegram.webhook_url.trim())
        .map_err(|_| TelegramError::ApiUrl(app.cfg.telegram.webhook_url.clone()))?;
    let secret = std::env::var("DONGCHA_TELEGRAM_WEBHOOK_SECRET").ok();
    let mut set = bots
        .bot
        .set_webhook(url.clone())
        .allowed_updates(vec![AllowedUpdate::Message]);
    if let Some(s) = &secret {
        set = teloxide::payloads::SetWebhookSetters::secret_token(set, s.clone());
    }
    set.await?;
    let path = url.path().to_string();
    let state = (app.clone(), bots.clone(), secret);
    let router = axum::Router::new()
        .route(
            &path,
            axum::routing::post(
                |axum::extract::State((app, bots, secret)): axum::extract::State<(
                    Arc<App>,
                    Arc<Bots>,
                    Option<String>,
                )>,
                 headers: axum::http::HeaderMap,
                 body: axum::body::Bytes| async move {
                    if let Some(s) = &secret
                        && headers
                            .get("x-telegram-bot-api-secret-token")
                            .and_then(|v| v.to_str().ok())
                            != Some(s.as_str())
                    {
                        return axum::http::StatusCode::UNAUTHORIZED.into_response();
                    }
                    match serde_json::from_slice::<Update>(&body) {
                        Ok(u) => match on_update(&app, &bots, u, true).await {
                            Done::Answered => axum::http::StatusCode::OK.into_response(),
                            Done::Respond(call) => axum::Json(call).into_response(),
                            // A 5xx makes Telegram deliver the update again.
                            Done::Again => {
                                axum::http::StatusCode::SERVICE_UNAVAILABLE.into_response()
                            }
                        },
                        Err(_) => axum::http::StatusCode::BAD_REQUEST.into_response(),
                    }
                },
            ),
        )
        .with_state(state);
    let listen = app.cfg.telegram.webhook_listen.clone();
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .map_err(|e| TelegramError::Request(RequestError::Io(Arc::new(e))))?;
    tracing::info!(%listen, %path, "telegram webhook listening");
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await
        .map_err(|e| TelegramError::Request(RequestError::Io(Arc::new(e))))?;
    Ok(())
}

/// What became of an update.
#[derive(Debug)]
enum Done {
    /// Answered (its reply sent), or not for the bot.
    Answered,
    /// Not stored: Telegram must deliver it again.
    Again,
    /// Answered by this Bot API call in the webhook's response (see the module's doc).
    Respond(serde_json::Value),
}

/// One update: parse, ask the application layer, send what it answers (`in_response`: its last message
/// as the webhook's response). An update that is not for the bot counts as answered.
async fn on_update(app: &App, bots: &Bots, u: Update, in_response: bool) -> Done {
    let id = u.id.0 as i64;
    let UpdateKind::Message(m) = u.kind else {
        return Done::Answered;
    };
    let Some(from) = m.from.as_ref() else {
        return Done::Answered;
    };
    if from.is_bot {
        return Done::Answered;
    }
    let private = m.chat.is_private();
    let text = m.text().or(m.caption()).map(str::to_string);
    let addressed = private || addressed_in_group(&m, &bots.username);
    if !addressed {
        return Done::Answered;
    }
    let text = match text {
        Some(t) => strip_mention(&t, &bots.username),
        // A photo or sticker: say what the bot reads, never stay silent.
        None if private => String::new(),
        None => return Done::Answered,
    };
    let role = if bots.operators.contains(&from.id.0) {
        Role::Operator
    } else {
        Role::Customer
    };
    let chat = m.chat.id;
    let typing = bots.bot.send_chat_action(chat, ChatAction::Typing);
    let _ = typing.await;
    let msg = app::Message {
        platform: bots.platform,
        chat_id: chat.0.to_string(),
        user_id: from.id.0.to_string(),
        role,
        text,
        update_id: Some(id),
        lang_hint: from.language_code.clone(),
        reply_to: m.reply_to_message().map(|r| r.id.0.to_string()),
        customer: None,
        in_response,
    };
    match app.handle(msg).await {
        // A redelivery answered in the response is answered there again; else nothing more is sent.
        Ok(h) if in_response => respond(app, bots, chat, &h.reply).await,
        Ok(h) if h.outcome == Outcome::Duplicate => Done::Answered,
        Ok(h) => {
            deliver(app, bots, chat, &h.reply, id).await;
            Done::Answered
        }
        Err(e) => {
            // The store failed: the update is not recorded, so it is redelivered and answered later.
            tracing::error!(update = id, "telegram update not answered: {e}");
            Done::Again
        }
    }
}

/// A reply for the webhook's response: its chart and every message but the last sent through the API
/// (at least once), the last as the `sendMessage` call Telegram runs when it has the response.
async fn respond(app: &App, bots: &Bots, chat: ChatId, r: &Reply) -> Done {
    let mut pieces: Vec<String> = reply::telegram_html(r)
        .into_iter()
        .filter(|p| !p.trim().is_empty())
        .collect();
    let last = pieces.pop();
    if r.chart.is_some() || !pieces.is_empty() {
        send_parts(app, bots, chat, r.chart.as_ref(), pieces).await;
    }
    match last {
        Some(text) => Done::Respond(serde_json::json!({
            "method": "sendMessage",
            "chat_id": chat.0,
            "text": text,
            "parse_mode": "HTML",
        })),
        None => Done::Answered,
    }
}

/// Commands, mentions of the bot and replies to the bot's messages; nothing else in a group.
fn addressed_in_group(m: &teloxide::types::Message, username: &str) -> bool {
    let text = m.text().unwrap_or_default();
    if text.starts_with('/') {
        // "/cmd@otherbot" is for another bot.
        let head = text.split_whitespace().next().unwrap_or_default();
        return match head.split_once('@') {
            Some((_, to)) => to.eq_ignore_ascii_case(username),
            None => true,
        };
    }
    let mentioned = m.entities().unwrap_or_default().iter().any(|e| {
        matches!(e.kind, MessageEntityKind::Mention)
            && text
                .encode_utf16()
                .skip(e.offset)
                .take(e.length)
                .collect::<Vec<u16>>()
                == format!("@{username}").encode_utf16().collect::<Vec<u16>>()
    }) || (!username.is_empty()
        && text
            .to_lowercase()
            .contains(&format!("@{}", username.to_lowercase())));
    let reply_to_bot = m
        .reply_to_message()
        .and_then(|r| r.from.as_ref())
        .is_some_and(|u| {
            u.is_bot
                && u.username
                    .as_deref()
                    .is_some_and(|n| n.eq_ignore_ascii_case(username))
        });
    mentioned || reply_to_bot
}

fn strip_mention(text: &str, username: &str) -> String {
    if username.is_empty() {
        return text.trim().to_string();
    }
    let at = format!("@{username}");
    let lower = text.to_lowercase();
    match lower.find(&at.to_lowercase()) {
        Some(i) if !text.starts_with('/') => format!("{}{}", &text[..i], &text[i + at.len()..])
            .trim()
            .to_string(),
        _ => text.trim().to_string(),
    }
}

/// Sends a reply (chart first, then the text in pieces), retrying network errors; then marks the
/// update's reply as sent.
async fn deliver(app: &App, bots: &Bots, chat: ChatId, r: &Reply, update: i64) {
    let pieces = reply::telegram_html(r);
    if send_parts(app, bots, chat, r.chart.as_ref(), pieces).await {
        app.mark_sent(bots.platform, update).await;
    }
}

/// Sends the chart, then `pieces` (blank ones skipped); whether every send went through.
async fn send_parts(
    app: &App,
    bots: &Bots,
    chat: ChatId,
    chart: Option<&reply::Chart>,
    pieces: Vec<String>,
) -> bool {
    let mut ok = true;
    if let Some(c) = chart {
        let caption: String = c.title.chars().take(1000).collect();
        ok &= send_with_retry(app, || async {
            let photo = InputFile::memory(c.png.as_ref().clone()).file_name("chart.png");
            sender!(bots, |b| b
                .send_photo(chat, photo)
                .caption(reply::escape_html(&caption))
                .parse_mode(ParseMode::Html)
                .await
                .map(drop))
        })
        .await
        .is_some();
    }
    // A message relayed to the person who owns the conversation has no reply: nothing is sent.
    for piece in pieces.into_iter().filter(|p| !p.trim().is_empty()) {
        ok &= send_with_retry(app, || async {
            sender!(bots, |b| b
                .send_message(chat, piece.clone())
                .parse_mode(ParseMode::Html)
                .await
                .map(drop))
        })
        .await
        .is_some();
    }
    ok
}

async fn send_with_retry<F, Fut, T>(app: &App, mut send: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, RequestError>>,
{
    for attempt in 0..6u32 {
        match send().await {
            Ok(x) => return Some(x),
            // Only without the Throttle adaptor (which waits and resends by itself).
            Err(RequestError::RetryAfter(s)) if attempt < 5 => {
                app.metrics.retried(PLATFORM, "retry_after");
                tokio::time::sleep(s.duration()).await;
            }
            Err(e) if transient(&e) && attempt < 5 => {
                app.metrics.retried(PLATFORM, "network");
                tracing::warn!("telegram send: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(250 << attempt)).await;
            }
            Err(e) => {
                tracing::error!("telegram send failed: {e}");
                return None;
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mention_is_taken_out_of_the_question() {
        assert_eq!(
            strip_mention("@dongcha_bot 上个月销售额", "dongcha_bot"),
            "上个月销售额"
        );
        assert_eq!(
            strip_mention("sales @Dongcha_Bot please", "dongcha_bot"),
            "sales  please"
        );
        assert_eq!(
            strip_mention("/sales@dongcha_bot", "dongcha_bot"),
            "/sales@dongcha_bot"
        );
    }
}
