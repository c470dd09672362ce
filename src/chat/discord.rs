//! Discord (serenity): slash commands, mentions of the bot in channels, direct messages. A thin adapter:
//! it parses an interaction or a message into an [`app::Message`], calls [`App::handle`] and renders the
//! reply as embeds ([`reply::discord_embeds`]: tables as fields, cited review ids in the footer) with the
//! chart as an attachment.
//!
//! Gateway reconnect and resume, and REST rate limits (a 429 waits out its `retry-after`, then resends),
//! are serenity's. Exactly once: an interaction's or message's id is the update id [`App::handle`] stores
//! with its turn, so an event the gateway delivers again (a resume that replays it) is recognised and not
//! answered twice; an interaction already answered is not even acknowledged again.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};

use serenity::all::{
    ChannelId, ClientBuilder, Command, CommandDataOptionValue, CommandInteraction,
    CommandOptionType, Context, CreateAllowedMentions, CreateAttachment, CreateCommand,
    CreateCommandOption, CreateEmbed, CreateEmbedFooter, CreateInteractionResponseFollowup,
    CreateMessage, EditInteractionResponse, EventHandler, GatewayIntents, GuildId, Http,
    HttpBuilder, Interaction, Message, Ready, RoleId, UserId,
};
use tokio::sync::watch;

use crate::app::{self, App, Outcome, Role};
use crate::reply::{self, Reply};

pub const PLATFORM: &str = "discord";

/// The environment variable holding the bot token (never config).
pub const TOKEN_ENV: &str = "DONGCHA_DISCORD_TOKEN";

/// The name of a reply's chart among a message's attachments.
const CHART_FILE: &str = "chart.png";

#[derive(Debug, thiserror::Error)]
pub enum DiscordError {
    #[error("[discord] api_addr {0:?} is not an address (like 127.0.0.1:8443)")]
    ApiAddr(String),
    #[error("[discord] ca_file {0}: {1}")]
    CaFile(String, String),
    #[error("discord: the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error("discord: {0}")]
    Serenity(Box<serenity::Error>),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

impl From<serenity::Error> for DiscordError {
    fn from(e: serenity::Error) -> Self {
        DiscordError::Serenity(Box::new(e))
    }
}

/// The slash commands registered at start: the chat commands, each with its words as an option.
fn commands() -> Vec<CreateCommand> {
    app::COMMANDS
        .iter()
        .map(|(name, desc)| {
            let c = CreateCommand::new(*name).description(*desc);
            match *name {
                "ask" => c.add_option(
                    CreateCommandOption::new(
                        CommandOptionType::String,
                        "question",
                        "The question, in Chinese or English / 问题",
                    )
                    .required(true),
                ),
                "sales" | "forecast" | "churn" | "segments" | "complaints" => c.add_option(
                    CreateCommandOption::new(
                        CommandOptionType::String,
                        "about",
                        "A period, product or segment (optional) / 时间、商品或客户群（可选）",
                    )
                    .required(false),
                ),
                "digest" => c.add_option(
                    CreateCommandOption::new(
                        CommandOptionType::String,
                        "name",
                        "Which digest (optional) / 摘要名称（可选）",
                    )
                    .required(false),
                ),
                _ => c,
            }
        })
        .collect()
}

/// The words a slash command stands for, as the chat commands spell it: `/sales last month`.
fn command_text(c: &CommandInteraction) -> String {
    let words: Vec<&str> = c
        .data
        .options
        .iter()
        .filter_map(|o| match &o.value {
            CommandDataOptionValue::String(s) => Some(s.as_str()),
            _ => None,
        })
        .collect();
    format!("/{} {}", c.data.name, words.join(" "))
        .trim()
        .to_string()
}

/// `<@ID>` and `<@!ID>` mentions of the bot taken out of a message.
fn strip_mention(text: &str, me: UserId) -> String {
    text.replace(&format!("<@{me}>"), "")
        .replace(&format!("<@!{me}>"), "")
        .trim()
        .to_string()
}

struct Handler {
    app: Arc<App>,
    operators: HashSet<u64>,
    operator_roles: HashSet<u64>,
    guilds: Vec<u64>,
    me: OnceLock<UserId>,
    /// One turn at a time per channel (serenity runs each event on its own task).
    chats: Mutex<HashMap<u64, Arc<tokio::sync::Mutex<()>>>>,
}

impl Handler {
    fn role(&self, user: UserId, roles: &[RoleId]) -> Role {
        if self.operators.contains(&user.get())
            || roles.iter().any(|r| self.operator_roles.contains(&r.get()))
        {
            Role::Operator
        } else {
            Role::Customer
        }
    }

    fn chat_lock(&self, channel: ChannelId) -> Arc<tokio::sync::Mutex<()>> {
        let mut chats = self.chats.lock().unwrap_or_else(|e| e.into_inner());
        chats.entry(channel.get()).or_default().clone()
    }

    async fn on_command(&self, ctx: &Context, c: CommandInteraction) {
        let app = &self.app;
        let id = c.id.get() as i64;
        let lock = self.chat_lock(c.channel_id);
        let _turn = lock.lock().await;
        // Replayed after a resume and answered already: acknowledging it again would be refused.
        match app.store.update_answered(PLATFORM, id).await {
            Ok(true) => return,
            Ok(false) => {}
            Err(e) => tracing::warn!(interaction = id, "discord: {e}"),
        }
        // Discord wants an answer within 3 s; the reply follows as an edit of this one.
        if let Err(e) = c.defer(&ctx.http).await {
            tracing::warn!(interaction = id, "discord defer: {e}");
        }
        let roles = c.member.as_ref().map(|m| m.roles.as_slice()).unwrap_or(&[]);
        let msg = app::Message {
            platform: PLATFORM,
            chat_id: c.channel_id.to_string(),
            user_id: c.user.id.to_string(),
            role: self.role(c.user.id, roles),
            text: command_text(&c),
            update_id: Some(id),
            lang_hint: Some(c.locale.clone()),
            reply_to: None,
            customer: None,
            in_response: false,
        };
        let r = match app.handle(msg).await {
            Ok(h) if h.outcome == Outcome::Duplicate => return,
            Ok(h) => h.reply,
            Err(e) => {
                tracing::error!(interaction = id, "discord command not answered: {e}");
                failed_reply(c.locale.starts_with("zh"))
            }
        };
        let embeds = reply::discord_embeds(&r);
        let mut ok = true;
        if embeds.is_empty() {
            // A message relayed to the person who owns the conversation: nothing to say.
            let _ = c.delete_response(&ctx.http).await;
        }
        for (i, e) in embeds.iter().enumerate() {
            let chart = (i == 0).then_some(r.chart.as_ref()).flatten();
            let sent = if i == 0 {
                let mut edit = EditInteractionResponse::new()
                    .embed(embed(e))
                    .allowed_mentions(CreateAllowedMentions::new());
                if let Some(c) = chart {
                    edit = edit.new_attachment(attachment(c));
                }
                c.edit_response(&ctx.http, edit).await.map(drop)
            } else {
                c.create_followup(
                    &ctx.http,
                    CreateInteractionResponseFollowup::new()
                        .embed(embed(e))
                        .allowed_mentions(CreateAllowedMentions::new()),
                )
                .await
                .map(drop)
            };
            if let Err(err) = sent {
                tracing::error!(interaction = id, "discord reply failed: {err}");
                ok = false;
            }
        }
        if ok {
            app.mark_sent(PLATFORM, id).await;
        }
    }

    async fn on_message(&self, ctx: &Context, m: Message) {
        let Some(&me) = self.me.get() else {
            return;
        };
        if m.author.bot || m.author.id == me {
            return;
        }
        let dm = m.guild_id.is_none();
        let mentioned = m.mentions.iter().any(|u| u.id == me);
        if !dm && !mentioned {
            return;
        }
        let app = &self.app;
        let id = m.id.get() as i64;
        let lock = self.chat_lock(m.channel_id);
        let _turn = lock.lock().await;
        let roles = m.member.as_ref().map(|p| p.roles.as_slice()).unwrap_or(&[]);
        let _ = m.channel_id.broadcast_typing(&ctx.http).await;
        let msg = app::Message {
            platform: PLATFORM,
            chat_id: m.channel_id.to_string(),
            user_id: m.author.id.to_string(),
            role: self.role(m.author.id, roles),
            text: strip_mention(&m.content, me),
            update_id: Some(id),
            lang_hint: None,
            reply_to: m.referenced_message.as_ref().map(|r| r.id.to_string()),
            customer: None,
            in_response: false,
        };
        let r = match app.handle(msg).await {
            Ok(h) if h.outcome == Outcome::Duplicate => return,
            Ok(h) => h.reply,
            Err(e) => {
                tracing::error!(message = id, "discord message not answered: {e}");
                failed_reply(crate::agent::router::is_chinese(&m.content))
            }
        };
        if send_reply(&ctx.http, m.channel_id, &r, Some(&m)).await {
            app.mark_sent(PLATFORM, id).await;
        }
    }
}

/// What a user gets when the store failed under their message (Discord does not deliver it again).
fn failed_reply(zh: bool) -> Reply {
    Reply::text(
        if zh {
            "暂时无法回答，请稍后再试。"
        } else {
            "I could not answer that just now; please try again in a moment."
        },
        zh,
    )
}

fn embed(e: &reply::Embed) -> CreateEmbed {
    let mut b = CreateEmbed::new().colour(0x00_2f_6f_b7);
    if let Some(t) = &e.title {
        b = b.title(t);
    }
    if !e.description.is_empty() {
        b = b.description(&e.description);
    }
    for (n, v) in &e.fields {
        b = b.field(n, v, true);
    }
    if let Some(f) = &e.footer {
        b = b.footer(CreateEmbedFooter::new(f));
    }
    if e.chart {
        b = b.image(format!("attachment://{CHART_FILE}"));
    }
    b
}

fn attachment(c: &reply::Chart) -> CreateAttachment {
    CreateAttachment::bytes(c.png.as_ref().clone(), CHART_FILE)
}

/// A reply as channel messages (the first answering `to`, carrying the chart); true when all went out.
async fn send_reply(http: &Http, channel: ChannelId, r: &Reply, to: Option<&Message>) -> bool {
    let mut ok = true;
    for (i, e) in reply::discord_embeds(r).iter().enumerate() {
        let mut m = CreateMessage::new()
            .embed(embed(e))
            .allowed_mentions(CreateAllowedMentions::new());
        if i == 0 {
            if let Some(c) = &r.chart {
                m = m.add_file(attachment(c));
            }
            if let Some(to) = to {
                m = m.reference_message(to);
            }
        }
        if let Err(err) = channel.send_message(http, m).await {
            tracing::error!(%channel, "discord send failed: {err}");
            ok = false;
        }
    }
    ok
}

#[serenity::async_trait]
impl EventHandler for Handler {
    async fn ready(&self, ctx: Context, ready: Ready) {
        let _ = self.me.set(ready.user.id);
        tracing::info!(bot = %ready.user.name, "discord connected");
        if self.guilds.is_empty() {
            if let Err(e) = Command::set_global_commands(&ctx.http, commands()).await {
                tracing::warn!("discord: registering the slash commands: {e}");
            }
        } else {
            for g in &self.guilds {
                if let Err(e) = GuildId::new(*g).set_commands(&ctx.http, commands()).await {
                    tracing::warn!(guild = g, "discord: registering the slash commands: {e}");
                }
            }
        }
    }

    async fn resume(&self, _ctx: Context, _: serenity::all::ResumedEvent) {
        tracing::info!("discord gateway resumed");
    }

    async fn interaction_create(&self, ctx: Context, i: Interaction) {
        if let Interaction::Command(c) = i {
            self.on_command(&ctx, c).await;
        }
    }

    async fn message(&self, ctx: Context, m: Message) {
        self.on_message(&ctx, m).await;
    }
}

/// Sends the outbox's Discord messages (a person's replies to a customer, notices, digests with their
/// charts) as they are queued, marking each sent; a failed send stays queued for the next round. Each
/// round also sends the replies a process that is gone stored but never sent (an interaction's token
/// may have expired: they go to the channel).
async fn send_outbox(app: Arc<App>, http: Arc<Http>, mut stop: watch::Receiver<bool>) {
    loop {
        match app.store.orphan_replies(PLATFORM, &app.instance).await {
            Ok(orphans) => {
                for (update, chat, text) in orphans {
                    if let Ok(channel) = chat.parse::<u64>() {
                        tracing::info!(update, "sending a reply its process stored but never sent");
                        let r = Reply::text(text, false);
                        if send_reply(&http, ChannelId::new(channel.max(1)), &r, None).await {
                            app.mark_sent(PLATFORM, update).await;
                        }
                    }
                }
            }
            Err(e) => tracing::warn!("outbox: unsent replies: {e}"),
        }
        match app.store.outgoing(PLATFORM, None, 50).await {
            Ok(batch) => {
                for o in batch {
                    let Ok(channel) = o.chat_id.parse::<u64>() else {
                        tracing::warn!(id = o.id, chat = %o.chat_id, "outbox: not a Discord channel id");
                        let _ = app.store.mark_outgoing_sent(o.id, None).await;
                        continue;
                    };
                    let channel = ChannelId::new(channel.max(1));
                    let mut first = None;
                    let mut ok = true;
                    let pieces = reply::discord_content(&o.text);
                    for (i, piece) in pieces.iter().enumerate() {
                        let mut m = CreateMessage::new()
                            .content(piece)
                            .allowed_mentions(CreateAllowedMentions::new());
                        if i == 0
                            && let Some(png) = &o.photo
                        {
                            m = m.add_file(CreateAttachment::bytes(png.clone(), CHART_FILE));
                        }
                        match channel.send_message(&http, m).await {
                            Ok(sent) => {
                                first.get_or_insert(sent.id);
                            }
                            Err(e) => {
                                tracing::warn!(id = o.id, "outbox: discord send: {e}");
                                ok = false;
                                break;
                            }
                        }
                    }
                    if ok
                        && let Err(e) = app
                            .store
                            .mark_outgoing_sent(o.id, first.map(|m| m.to_string()).as_deref())
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

/// The REST client: TLS with the public roots (plus `ca_file`), discord.com resolved to `api_addr` when
/// one is set.
fn rest_client(cfg: &crate::config::DiscordConfig) -> Result<reqwest::Client, DiscordError> {
    let mut b = reqwest::Client::builder().use_rustls_tls();
    let addr = cfg.api_addr.trim();
    if !addr.is_empty() {
        let sa: std::net::SocketAddr = addr
            .parse()
            .map_err(|_| DiscordError::ApiAddr(cfg.api_addr.clone()))?;
        b = b.resolve("discord.com", sa);
    }
    let ca = cfg.ca_file.trim();
    if !ca.is_empty() {
        let pem = std::fs::read(ca).map_err(|e| DiscordError::CaFile(ca.into(), e.to_string()))?;
        let cert = reqwest::Certificate::from_pem(&pem)
            .map_err(|e| DiscordError::CaFile(ca.into(), e.to_string()))?;
        b = b.add_root_certificate(cert);
    }
    Ok(b.build()?)
}

/// Runs the Discord front end until `stop` turns true.
pub async fn run(
    app: Arc<App>,
    token: String,
    mut stop: watch::Receiver<bool>,
) -> Result<(), DiscordError> {
    let cfg = &app.cfg;
    let http = HttpBuilder::new(&token)
        .client(rest_client(&cfg.discord)?)
        .build();
    let handler = Handler {
        app: app.clone(),
        operators: cfg.roles.discord_operators.iter().copied().collect(),
        operator_roles: cfg.roles.discord_operator_roles.iter().copied().collect(),
        guilds: cfg.discord.guilds.clone(),
        me: OnceLock::new(),
        chats: Mutex::new(HashMap::new()),
    };
    // Mentions and DMs carry their content without the privileged message-content intent.
    let intents = GatewayIntents::GUILD_MESSAGES | GatewayIntents::DIRECT_MESSAGES;
    let mut client = ClientBuilder::new_with_http(http, intents)
        .event_handler(handler)
        .await?;
    let http = client.http.clone();
    // The outbox and the replies a process that is gone stored but never sent: one process at a time.
    // (The gateway is every process's: Discord sends each event to each session, and the update is
    // claimed with its reply, so one answers.)
    let outbox = tokio::spawn({
        let (app, stop) = (app.clone(), stop.clone());
        async move {
            app.while_leased("discord:outbox", stop, |halt| {
                send_outbox(app.clone(), http.clone(), halt)
            })
            .await;
        }
    });
    let shards = client.shard_manager.clone();
    let done = tokio::select! {
        r = client.start() => r.map_err(DiscordError::from),
        _ = async { drop(stop.wait_for(|s| *s).await) } => {
            shards.shutdown_all().await;
            Ok(())
        }
    };
    if done.is_err() {
        outbox.abort();
    }
    let _ = outbox.await;
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mention_is_taken_out_of_the_question() {
        let me = UserId::new(42);
        assert_eq!(strip_mention("<@42> 上个月销售额", me), "上个月销售额");
        assert_eq!(strip_mention("sales <@!42>", me), "sales");
        assert_eq!(strip_mention("<@43> hi", me), "<@43> hi");
    }

    #[test]
    fn every_chat_command_is_a_slash_command() {
        let names: Vec<String> = commands()
            .iter()
            .map(|c| {
                serde_json::to_value(c).unwrap()["name"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        for c in [
            "ask",
            "sales",
            "forecast",
            "churn",
            "segments",
            "complaints",
            "digest",
        ] {
            assert!(names.iter().any(|n| n == c), "{names:?}");
        }
        for c in commands() {
            let v = serde_json::to_value(&c).unwrap();
            assert!(
                v["description"].as_str().unwrap().chars().count() <= 100,
                "{v}"
            );
        }
    }
}
