//! `dongcha digest`: list the schedules, render one digest now (text + PNG charts), or send it.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Result, bail};
use chrono::Utc;
use serde_json::json;

use dongcha::config::Config;
use dongcha::digest::run::{Scheduler, write_folder};
use dongcha::digest::schedule::Schedule;
use dongcha::digest::{build, period_for, spec};
use dongcha::reply::chart::Font;
use dongcha::store::Store;

pub async fn digest(
    cfg: &Config,
    name: Option<&str>,
    list: bool,
    now: bool,
    out: Option<&Path>,
    send: bool,
    json: bool,
) -> Result<()> {
    if list || name.is_none() {
        return list_all(cfg, json).await;
    }
    let name = name.unwrap_or_default();
    let spec = spec(cfg, name)?;
    if !now && !send {
        bail!("say what to do with digest {name:?}: --now renders it, --send also delivers it");
    }
    if send {
        let store = Store::open_config(cfg).await?;
        let scheduler = Scheduler::new(cfg, store.clone(), Arc::new(|| {}));
        let outcome = scheduler.run(spec, Utc::now()).await?;
        store.close().await;
        if json {
            println!("{}", serde_json::to_string_pretty(&outcome)?);
        } else {
            println!("digest {name}: {}", serde_json::to_string(&outcome)?);
        }
        return Ok(());
    }
    let schedule = Schedule::parse(&spec.schedule, &spec.timezone)?;
    let today = schedule.local_day(Utc::now());
    let (period, clock) = period_for(cfg, spec, today).await?;
    let font = match Font::load(&cfg.chart_font()) {
        Ok(f) => Some(f),
        Err(e) => {
            tracing::warn!("no charts: {e}");
            None
        }
    };
    let d = build(cfg, spec, period, clock, font.as_ref()).await?;
    let files = match out {
        Some(dir) => write_folder(dir, spec, &d)?,
        None => Vec::new(),
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "digest": name, "quiet": d.quiet(), "text": d.text, "output": d.output,
                "charts": d.charts.iter().map(|c| &c.title).collect::<Vec<_>>(),
                "files": files,
            }))?
        );
        return Ok(());
    }
    println!("{}", d.text);
    if d.quiet() {
        println!(
            "\n(nothing crossed a threshold: a scheduled run would {})",
            if spec.quiet == "line" {
                "send this line"
            } else {
                "send nothing"
            }
        );
    }
    for f in files {
        println!("wrote {}", f.display());
    }
    Ok(())
}

async fn list_all(cfg: &Config, json: bool) -> Result<()> {
    let store = Store::open_config(cfg).await?;
    let mut rows = Vec::new();
    for d in &cfg.digest {
        let s = Schedule::parse(&d.schedule, &d.timezone)?;
        let next = s.next_after(Utc::now()).map(|t| {
            t.with_timezone(&s.zone)
                .format("%Y-%m-%d %H:%M %Z (%a)")
                .to_string()
        });
        let mut to = Vec::new();
        if let Some(f) = d.folder(&cfg.data_dir()) {
            to.push(format!("folder {}", f.display()));
        }
        if d.telegram_chat != 0 {
            to.push(format!("telegram {}", d.telegram_chat));
        }
        if d.discord_channel != 0 {
            to.push(format!("discord {}", d.discord_channel));
        }
        if !d.webhook.trim().is_empty() {
            to.push("webhook".to_string());
        }
        let last = store.digests(&d.name).await?.into_iter().next();
        rows.push(json!({
            "name": d.name, "schedule": d.schedule, "timezone": d.timezone, "period": d.period,
            "next_run": next, "to": to, "blocks": d.blocks,
            "last_period": last.as_ref().map(|l| format!("{} – {}", l.period_from, l.period_to)),
            "last_status": last.as_ref().map(|l| l.status.clone()),
        }));
    }
    store.close().await;
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    if rows.is_empty() {
        println!("no digests configured ([[digest]] in config.toml)");
    }
    for r in rows {
        let s = |k: &str| r[k].as_str().unwrap_or("–").to_string();
        println!(
            "{}  {} ({})  next: {}  to: {}  last: {} {}",
            s("name"),
            s("schedule"),
            s("timezone"),
            s("next_run"),
            r["to"]
                .as_array()
                .map(|a| a
                    .iter()
                    .filter_map(|x| x.as_str())
                    .collect::<Vec<_>>()
                    .join(", "))
                .unwrap_or_default(),
            s("last_period"),
            r["last_status"]
                .as_str()
                .map(|x| format!("({x})"))
                .unwrap_or_default()
        );
    }
    Ok(())
}
