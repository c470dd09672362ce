//! Running digests: which scheduled run is due (the clock is an argument), the period it covers, and
//! delivery — a folder written at once; Telegram, Discord and webhooks through the store's outbox,
//! queued in the same transaction that records the period, so a restart neither loses nor repeats one.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;

use super::schedule::Schedule;
use super::{Digest, DigestError, build, period_for};
use crate::config::{Config, DigestConfig};
use crate::reply::chart::Font;
use crate::store::Store;
use crate::store::digests::Queued;
use crate::tools::Period;

/// The outbox platform of digest webhooks (the row's chat id is the URL).
pub const WEBHOOK: &str = "webhook";

/// What one digest did on a tick or a forced run.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// No scheduled run since the last one handled.
    NotDue,
    /// The first start with this digest: runs before now are not made up for.
    Started,
    /// The period of this run was reported already (by an earlier run on the same data).
    AlreadyReported { period: Period },
    /// Nothing crossed a threshold: recorded; `sent` when config asks for an "all quiet" line.
    Quiet { period: Period, sent: bool },
    /// Sent (or queued for the chat front ends) to this many destinations.
    Sent {
        period: Period,
        destinations: usize,
        charts: usize,
    },
}

/// Decides and delivers digests. The chat front ends send what it queues; `wake` tells them at once.
pub struct Scheduler {
    cfg: Config,
    store: Store,
    font: Option<Font>,
    wake: Arc<dyn Fn() + Send + Sync>,
}

impl Scheduler {
    pub fn new(cfg: &Config, store: Store, wake: Arc<dyn Fn() + Send + Sync>) -> Self {
        let font = match Font::load(&cfg.chart_font()) {
            Ok(f) => Some(f),
            Err(e) => {
                tracing::warn!("digests go without charts: {e}");
                None
            }
        };
        Self {
            cfg: cfg.clone(),
            store,
            font,
            wake,
        }
    }

    /// Every configured digest at time `now`: the latest run due since the last one handled (one run,
    /// however many were missed), recorded as handled whatever it found.
    pub async fn tick(&self, now: DateTime<Utc>) -> Vec<(String, Result<Outcome, DigestError>)> {
        let mut out = Vec::new();
        for spec in &self.cfg.digest {
            out.push((spec.name.clone(), self.tick_one(spec, now).await));
        }
        out
    }

    async fn tick_one(
        &self,
        spec: &DigestConfig,
        now: DateTime<Utc>,
    ) -> Result<Outcome, DigestError> {
        let schedule = Schedule::parse(&spec.schedule, &spec.timezone)?;
        let stamp = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let Some(mark) = self.store.digest_mark(&spec.name).await? else {
            self.store.set_digest_mark(&spec.name, &stamp(now)).await?;
            return Ok(Outcome::Started);
        };
        let mark = DateTime::parse_from_rfc3339(&mark)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or(now);
        let Some(slot) = schedule.latest_due(mark, now) else {
            return Ok(Outcome::NotDue);
        };
        let outcome = self.run(spec, slot).await?;
        self.store.set_digest_mark(&spec.name, &stamp(slot)).await?;
        Ok(outcome)
    }

    /// Runs a digest as of `slot` (a scheduled run, or now for `dongcha digest NAME --send`): its
    /// period, then nothing (already reported), a quiet record, or the digest delivered and recorded.
    pub async fn run(
        &self,
        spec: &DigestConfig,
        slot: DateTime<Utc>,
    ) -> Result<Outcome, DigestError> {
        let schedule = Schedule::parse(&spec.schedule, &spec.timezone)?;
        let (period, clock) = period_for(&self.cfg, spec, schedule.local_day(slot)).await?;
        let (from, to) = (period.from.to_string(), period.to.to_string());
        if self.store.digest_recorded(&spec.name, &from, &to).await? {
            return Ok(Outcome::AlreadyReported { period });
        }
        let digest = build(&self.cfg, spec, period, clock, self.font.as_ref()).await?;
        let quiet = digest.quiet();
        let send = !quiet || spec.quiet == "line";
        let mut queue = Vec::new();
        let mut destinations = 0;
        if send {
            if let Some(dir) = spec.folder(&self.cfg.data_dir()) {
                write_folder(&dir, spec, &digest)?;
                destinations += 1;
            }
            for (platform, chat) in [
                (
                    "telegram",
                    (spec.telegram_chat != 0).then(|| spec.telegram_chat.to_string()),
                ),
                (
                    "discord",
                    (spec.discord_channel != 0).then(|| spec.discord_channel.to_string()),
                ),
            ] {
                if let Some(chat) = chat {
                    destinations += 1;
                    queue.push(Queued {
                        platform: platform.into(),
                        chat_id: chat.clone(),
                        text: digest.text.clone(),
                        photo: None,
                    });
                    for c in &digest.charts {
                        queue.push(Queued {
                            platform: platform.into(),
                            chat_id: chat.clone(),
                            text: c.title.clone(),
                            photo: Some(c.png.to_vec()),
                        });
                    }
                }
            }
            let url = spec.webhook.trim();
            if !url.is_empty() {
                destinations += 1;
                queue.push(Queued {
                    platform: WEBHOOK.into(),
                    chat_id: url.to_string(),
                    text: webhook_body(spec, &digest).to_string(),
                    photo: None,
                });
            }
        }
        let output = serde_json::to_string(&digest.output).unwrap_or_default();
        let status = if quiet { "quiet" } else { "sent" };
        let slot_s = slot.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let recorded = self
            .store
            .record_digest(
                &spec.name,
                &from,
                &to,
                &slot_s,
                status,
                &digest.text,
                &output,
                &queue,
            )
            .await?;
        if !recorded {
            return Ok(Outcome::AlreadyReported { period });
        }
        if !queue.is_empty() {
            (self.wake)();
        }
        tracing::info!(digest = %spec.name, %period, status, destinations, "digest");
        Ok(if quiet {
            Outcome::Quiet { period, sent: send }
        } else {
            Outcome::Sent {
                period,
                destinations,
                charts: digest.charts.len(),
            }
        })
    }

    /// Ticks until `stop`: at each digest's next run (checked at least every minute, so a clock change
    /// or a restart is caught up).
    pub async fn serve(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            for (name, r) in self.tick(Utc::now()).await {
                if let Err(e) = r {
                    tracing::error!(digest = %name, "digest failed: {e}");
                }
            }
            let next = self
                .cfg
                .digest
                .iter()
                .filter_map(|d| Schedule::parse(&d.schedule, &d.timezone).ok())
                .filter_map(|s| s.next_after(Utc::now()))
                .min();
            let wait = next
                .map(|n| (n - Utc::now()).to_std().unwrap_or_default())
                .unwrap_or(Duration::from_secs(60))
                .min(Duration::from_secs(60))
                + Duration::from_millis(50);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => return,
            }
        }
    }
}

/// The JSON a digest webhook receives: the text, the figures, the charts as base64 PNG.
pub fn webhook_body(spec: &DigestConfig, d: &Digest) -> serde_json::Value {
    json!({
        "digest": spec.name,
        "period": d.output.period,
        "lang": spec.lang,
        "quiet": d.quiet(),
        "text": d.text,
        "output": d.output,
        "charts": d.charts.iter().map(|c| json!({
            "title": c.title,
            "png_base64": base64::engine::general_purpose::STANDARD.encode(c.png.as_slice()),
        })).collect::<Vec<_>>(),
    })
}

/// Writes the digest into `dir`: `NAME-PERIODEND.txt` (the text), `.json` (the figures) and one PNG
/// per chart (`-1.png`, `-2.png`, …). Returns the files written.
pub fn write_folder(
    dir: &Path,
    spec: &DigestConfig,
    d: &Digest,
) -> Result<Vec<std::path::PathBuf>, DigestError> {
    let err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DigestError::Write { path, source }
    };
    std::fs::create_dir_all(dir).map_err(err(dir))?;
    let stem = format!("{}-{}", spec.name, d.output.period.to);
    let mut files = Vec::new();
    let text = dir.join(format!("{stem}.txt"));
    std::fs::write(&text, format!("{}\n", d.text)).map_err(err(&text))?;
    files.push(text);
    let json = dir.join(format!("{stem}.json"));
    let figures = serde_json::to_string_pretty(&d.output).unwrap_or_default();
    std::fs::write(&json, figures).map_err(err(&json))?;
    files.push(json);
    for (i, c) in d.charts.iter().enumerate() {
        let png = dir.join(format!("{stem}-{}.png", i + 1));
        std::fs::write(&png, c.png.as_slice()).map_err(err(&png))?;
        files.push(png);
    }
    Ok(files)
}

/// Sends the outbox's webhook rows (digests) until `stop`: POST, marked sent on a 2xx; a refused or
/// failed one stays queued and is retried with backoff (up to a minute apart).
pub async fn send_webhooks(store: Store, mut stop: tokio::sync::watch::Receiver<bool>) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap_or_default();
    let mut backoff = Duration::from_secs(1);
    loop {
        let mut failed = false;
        match store.outgoing(WEBHOOK, None, 20).await {
            Ok(batch) => {
                for o in batch {
                    let ok = match client
                        .post(&o.chat_id)
                        .header("content-type", "application/json")
                        .body(o.text.clone())
                        .send()
                        .await
                    {
                        Ok(r) if r.status().is_success() => true,
                        Ok(r) => {
                            tracing::warn!(id = o.id, status = %r.status(), "digest webhook refused");
                            false
                        }
                        Err(e) => {
                            tracing::warn!(id = o.id, "digest webhook: {e}");
                            false
                        }
                    };
                    if ok {
                        if let Err(e) = store.mark_outgoing_sent(o.id, None).await {
                            tracing::warn!(id = o.id, "digest webhook: marking sent: {e}");
                        }
                    } else {
                        failed = true;
                        break;
                    }
                }
            }
            Err(e) => tracing::warn!("digest webhooks: {e}"),
        }
        let wait = if failed {
            backoff = (backoff * 2).min(Duration::from_secs(60));
            backoff
        } else {
            backoff = Duration::from_secs(1);
            Duration::from_secs(2)
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Whether any digest posts to a webhook (then `serve` runs [`send_webhooks`]).
pub fn any_webhook(cfg: &Config) -> bool {
    cfg.digest.iter().any(|d| !d.webhook.trim().is_empty())
}
