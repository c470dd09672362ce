//! Configuration: built-in defaults (the repository's `config.toml`, compiled in) → a config file →
//! `DONGCHA__SECTION__KEY` environment variables. Owns path resolution (relative to the file that set a
//! path, `~/` expansion) and turns every bad value into one message that names the key.

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use figment::value::magic::RelativePathBuf;
use serde::Deserialize;

/// The documented defaults; also the file a newcomer edits.
pub const DEFAULT_CONFIG_TOML: &str = include_str!("../config.toml");

/// Environment variable naming a config file when `--config` is not given.
pub const CONFIG_ENV: &str = "DONGCHA_CONFIG";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config key `{key}`{source_desc}: {reason}")]
    Key {
        key: String,
        source_desc: String,
        reason: String,
    },
    #[error("config file {0} does not exist")]
    MissingFile(PathBuf),
    #[error("config: {0}")]
    Other(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    data_dir: RelativePathBuf,
    pub log_level: String,
    pub store: StoreConfig,
    pub assets: AssetsConfig,
    pub models: ModelsConfig,
    pub nlp: NlpConfig,
    pub index: IndexConfig,
    pub ingest: IngestConfig,
    pub forecast: ForecastConfig,
    pub agent: AgentConfig,
    pub serve: ServeConfig,
    pub telegram: TelegramConfig,
    pub discord: DiscordConfig,
    pub roles: RolesConfig,
    pub support: SupportConfig,
    /// Scheduled digests (`[[digest]]`), each with its schedule, destinations and thresholds.
    pub digest: Vec<DigestConfig>,
}

/// One scheduled digest: when it runs, what period it covers, where it goes, and the thresholds a block
/// must cross to appear.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DigestConfig {
    pub name: String,
    /// A cron expression with or without seconds ("0 9 * * Mon" = Mondays 09:00), days of the week by name.
    pub schedule: String,
    /// The time zone the schedule is read in (IANA name, e.g. "Asia/Shanghai").
    pub timezone: String,
    /// What one digest covers: the last complete "day", "week" (Monday to Sunday) or "month".
    #[serde(default = "default_digest_period")]
    pub period: DigestPeriod,
    /// The language of its text: "zh" or "en".
    #[serde(default = "default_digest_lang")]
    pub lang: String,
    /// The blocks, in order: "kpis", "reviews", "churn", "events".
    #[serde(default = "default_digest_blocks")]
    pub blocks: Vec<String>,
    /// Destinations (any number): a folder (relative: inside data_dir), a Telegram chat, a Discord
    /// channel, an HTTP webhook.
    #[serde(default)]
    folder: Option<RelativePathBuf>,
    #[serde(default)]
    pub telegram_chat: i64,
    #[serde(default)]
    pub discord_channel: u64,
    #[serde(default)]
    pub webhook: String,
    /// With nothing to say: "skip" sends nothing, "line" sends one "all quiet" line.
    #[serde(default = "default_digest_quiet")]
    pub quiet: String,
    /// The KPI block appears when revenue, orders, AOV or buyers moved by at least this many percent
    /// against the previous period, or revenue fell outside the forecast's 80% interval.
    #[serde(default = "default_kpi_change")]
    pub kpi_change_pct: f64,
    /// The review block appears when the negative share moved by at least this many points and the
    /// move is significant (two-proportion test, p < 0.05), or a complaint topic changed significantly.
    #[serde(default = "default_sentiment_shift")]
    pub sentiment_shift_pts: f64,
    /// Churn alerts: high-value customers (the top `high_value_pct` percent by spend) whose churn
    /// probability rose to at least `churn_alert` since the previous period.
    #[serde(default = "default_churn_alert")]
    pub churn_alert: f64,
    #[serde(default = "default_high_value")]
    pub high_value_pct: f64,
    /// Coming events (holidays, the shop's promotions) this many days after the period are listed.
    #[serde(default = "default_event_days")]
    pub event_days: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DigestPeriod {
    Day,
    Week,
    Month,
}

fn default_digest_period() -> DigestPeriod {
    DigestPeriod::Week
}
fn default_digest_lang() -> String {
    "zh".into()
}
fn default_digest_blocks() -> Vec<String> {
    ["kpis", "reviews", "churn", "events"]
        .map(String::from)
        .to_vec()
}
fn default_digest_quiet() -> String {
    "skip".into()
}
fn default_kpi_change() -> f64 {
    10.0
}
fn default_sentiment_shift() -> f64 {
    5.0
}
fn default_churn_alert() -> f64 {
    0.7
}
fn default_high_value() -> f64 {
    20.0
}
fn default_event_days() -> i64 {
    28
}

impl DigestConfig {
    /// The folder this digest is written to, if any (a relative one is inside `data_dir`).
    pub fn folder(&self, data_dir: &Path) -> Option<PathBuf> {
        let f = self.folder.as_ref()?;
        let original = f.original();
        if original.as_os_str().is_empty() {
            return None;
        }
        if let Ok(rest) = original.strip_prefix("~")
            && let Some(home) = std::env::var_os("HOME")
        {
            return Some(PathBuf::from(home).join(rest));
        }
        Some(if original.is_absolute() {
            original.to_path_buf()
        } else {
            data_dir.join(original)
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupportConfig {
    pub operator_chat: i64,
    pub handoff_webhook: String,
    pub threshold: f32,
    pub lexical_weight: f32,
    pub outside_weight: f32,
    pub answer_weight: f32,
    pub centroid_weight: f32,
    pub handoff_timeout_secs: u64,
    pub link_code_hours: i64,
    pub orders_shown: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    pub listen: String,
    pub max_body_bytes: usize,
    pub question_timeout_ms: u64,
    pub queue: usize,
    pub workers: usize,
    pub rate_per_minute: u32,
    pub rate_burst: u32,
    pub public_rate_per_minute: u32,
    pub public_rate_burst: u32,
    pub refresh_secs: u64,
    pub history_turns: i64,
    /// How long a lease of one of several serve processes lasts unrenewed (seconds).
    pub lease_secs: f64,
    chart_font: RelativePathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelegramConfig {
    pub api_url: String,
    pub webhook_url: String,
    pub webhook_listen: String,
    pub poll_timeout_secs: u32,
    pub bot_username: String,
    pub throttle: bool,
    pub messages_per_sec_overall: u32,
    pub messages_per_sec_chat: u32,
    pub messages_per_min_chat: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscordConfig {
    /// Where `discord.com` is reached ("127.0.0.1:8443"; empty: DNS). The gateway's address comes from
    /// the REST API's `/gateway/bot`.
    pub api_addr: String,
    /// A PEM certificate trusted besides the public roots (the server at `api_addr`).
    pub ca_file: String,
    /// Guilds whose slash commands are set at start (at once); empty: global commands.
    pub guilds: Vec<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolesConfig {
    pub telegram_operators: Vec<i64>,
    /// Discord user ids of operators.
    pub discord_operators: Vec<u64>,
    /// Discord role ids whose members are operators (in the guilds where they hold the role).
    pub discord_operator_roles: Vec<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LlmUse {
    Auto,
    Generate,
    Always,
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LlmBackend {
    Local,
    Openai,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    pub llm: LlmUse,
    pub backend: LlmBackend,
    pub url: String,
    pub server_model: String,
    pub threads: usize,
    pub context: u32,
    pub queue: usize,
    pub timeout_ms: u64,
    pub confident_margin: f32,
    pub llm_weight: f32,
    pub lexical_weight: f32,
    pub head_weight: f32,
    pub neighbours: usize,
    pub shortlist: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForecastConfig {
    pub holidays: bool,
    pub promotions: Vec<crate::insight::calendar::Event>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    pub url: String,
    pub max_connections: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssetsConfig {
    manifest: RelativePathBuf,
    cache_dir: RelativePathBuf,
    pub python: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelsConfig {
    pub encoder: String,
    pub review_encoder: String,
    pub llm: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexConfig {
    pub backend: IndexBackend,
    pub url: String,
    pub collection: String,
    pub hnsw_ef: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IndexBackend {
    Edge,
    Qdrant,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NlpConfig {
    pub batch: usize,
    /// How encoders run on the CPU: auto (int8 where the CPU has AVX-512 VNNI, else f32), int8, f32 or
    /// candle (the reference).
    #[serde(default)]
    pub encoder_precision: crate::nlp::encoder::Precision,
    pub neutral_band: f32,
    heads_dir: RelativePathBuf,
    /// Fine-tuning the full corpus starts only with this much memory available (GB).
    pub fine_tune_memory_gb: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    pub max_line_bytes: usize,
    pub chunk_lines: usize,
    pub commit_records: usize,
    rejects_dir: RelativePathBuf,
    pub max_future_days: i64,
    pub min_year: i32,
}

impl Config {
    /// Loads defaults, then `file` (or `$DONGCHA_CONFIG`, or `./config.toml` when present), then the
    /// environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let file = match file {
            Some(f) => Some(f.to_path_buf()),
            None => match std::env::var_os(CONFIG_ENV) {
                Some(v) if !v.is_empty() => Some(PathBuf::from(v)),
                _ => {
                    let local = PathBuf::from("config.toml");
                    local.is_file().then_some(local)
                }
            },
        };
        let mut figment = Figment::from(Toml::string(DEFAULT_CONFIG_TOML));
        if let Some(f) = &file {
            if !f.is_file() {
                return Err(ConfigError::MissingFile(f.clone()));
            }
            figment = figment.merge(Toml::file(f));
        }
        Self::extract(figment.merge(Env::prefixed("DONGCHA__").split("__")))
    }

    /// Built-in defaults plus the given TOML text (no environment): for tests and embedding.
    pub fn from_toml_str(toml: &str) -> Result<Self, ConfigError> {
        Self::extract(Figment::from(Toml::string(DEFAULT_CONFIG_TOML)).merge(Toml::string(toml)))
    }

    fn extract(figment: Figment) -> Result<Self, ConfigError> {
        let cfg: Config = figment.extract().map_err(describe)?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, reason: &str| ConfigError::Key {
            key: key.to_string(),
            source_desc: String::new(),
            reason: reason.to_string(),
        };
        if self.ingest.max_line_bytes < 64 {
            return Err(bad("ingest.max_line_bytes", "must be at least 64"));
        }
        if self.ingest.chunk_lines == 0 {
            return Err(bad("ingest.chunk_lines", "must be at least 1"));
        }
        if self.ingest.commit_records == 0 {
            return Err(bad("ingest.commit_records", "must be at least 1"));
        }
        if self.store.max_connections == 0 {
            return Err(bad("store.max_connections", "must be at least 1"));
        }
        if !(1900..=2100).contains(&self.ingest.min_year) {
            return Err(bad(
                "ingest.min_year",
                "must be a year between 1900 and 2100",
            ));
        }
        if self.ingest.max_future_days < 0 {
            return Err(bad("ingest.max_future_days", "must not be negative"));
        }
        if self.serve.queue == 0 || self.serve.workers == 0 {
            return Err(bad(
                "serve.queue",
                "serve.queue and serve.workers must be at least 1",
            ));
        }
        if self.serve.rate_per_minute == 0 || self.serve.rate_burst == 0 {
            return Err(bad(
                "serve.rate_per_minute",
                "serve.rate_per_minute and serve.rate_burst must be at least 1",
            ));
        }
        if self.serve.max_body_bytes < 256 {
            return Err(bad("serve.max_body_bytes", "must be at least 256"));
        }
        if self.serve.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(bad(
                "serve.listen",
                "must be an address with a port, e.g. 127.0.0.1:8080",
            ));
        }
        let mut names = std::collections::HashSet::new();
        for (i, d) in self.digest.iter().enumerate() {
            let key = |k: &str| format!("digest[{i}].{k}");
            if d.name.trim().is_empty() || d.name.contains(['/', '\\', ' ']) {
                return Err(bad(
                    &key("name"),
                    "must be a word without spaces or slashes",
                ));
            }
            if !names.insert(d.name.as_str()) {
                return Err(bad(&key("name"), "two digests have this name"));
            }
            if let Err(e) = crate::digest::schedule::Schedule::parse(&d.schedule, &d.timezone) {
                let k = if matches!(e, crate::digest::schedule::ScheduleError::Zone(_)) {
                    "timezone"
                } else {
                    "schedule"
                };
                return Err(bad(&key(k), &e.to_string()));
            }
            if !matches!(d.lang.as_str(), "zh" | "en") {
                return Err(bad(&key("lang"), "must be \"zh\" or \"en\""));
            }
            if !matches!(d.quiet.as_str(), "skip" | "line") {
                return Err(bad(&key("quiet"), "must be \"skip\" or \"line\""));
            }
            if let Some(b) = d
                .blocks
                .iter()
                .find(|b| !crate::digest::BLOCKS.contains(&b.as_str()))
            {
                return Err(bad(
                    &key("blocks"),
                    &format!("unknown block {b:?} (known: kpis, reviews, churn, events)"),
                ));
            }
            if !(0.0..=1.0).contains(&d.churn_alert) {
                return Err(bad(
                    &key("churn_alert"),
                    "must be a probability between 0 and 1",
                ));
            }
            if !(0.0..=100.0).contains(&d.high_value_pct) || d.high_value_pct == 0.0 {
                return Err(bad(
                    &key("high_value_pct"),
                    "must be a percentage above 0, at most 100",
                ));
            }
        }
        tracing_subscriber::EnvFilter::try_new(&self.log_level)
            .map_err(|e| bad("log_level", &format!("not a valid log filter: {e}")))?;
        Ok(())
    }

    pub fn data_dir(&self) -> PathBuf {
        resolve(&self.data_dir)
    }

    /// The database URL, with the embedded SQLite default filled in.
    pub fn database_url(&self) -> String {
        if self.store.url.trim().is_empty() {
            format!("sqlite://{}", self.data_dir().join("dongcha.db").display())
        } else {
            self.store.url.trim().to_string()
        }
    }

    /// The manifest file named in config, or `None` for the compiled-in one.
    pub fn manifest_path(&self) -> Option<PathBuf> {
        (!self.assets.manifest.original().as_os_str().is_empty())
            .then(|| resolve(&self.assets.manifest))
    }

    pub fn asset_cache_dir(&self) -> PathBuf {
        resolve(&self.assets.cache_dir)
    }

    pub fn heads_dir(&self) -> PathBuf {
        if self.nlp.heads_dir.original().as_os_str().is_empty() {
            self.data_dir().join("heads")
        } else {
            resolve(&self.nlp.heads_dir)
        }
    }

    pub fn rejects_dir(&self) -> PathBuf {
        if self.ingest.rejects_dir.original().as_os_str().is_empty() {
            self.data_dir().join("rejects")
        } else {
            resolve(&self.ingest.rejects_dir)
        }
    }

    /// The TTF/OTF font charts are drawn with (it must cover Chinese).
    pub fn chart_font(&self) -> PathBuf {
        resolve(&self.serve.chart_font)
    }

    /// Points every state path at `dir` (tests and `--data-dir`).
    pub fn with_data_dir(mut self, dir: &Path) -> Self {
        self.data_dir = RelativePathBuf::from(dir);
        self
    }
}

/// `~/x` → `$HOME/x`; a relative path → relative to the file that set it.
fn resolve(p: &RelativePathBuf) -> PathBuf {
    let original = p.original();
    if let Ok(rest) = original.strip_prefix("~")
        && let Some(home) = std::env::var_os("HOME")
    {
        return PathBuf::from(home).join(rest);
    }
    // Built-in defaults are "from" a string, not a file: keep them relative to the current folder.
    match p.metadata_path() {
        Some(_) => p.relative(),
        None => original.to_path_buf(),
    }
}

fn describe(e: figment::Error) -> ConfigError {
    // figment chains one error per bad key; the first is the one to fix first.
    let e = e
        .into_iter()
        .next()
        .expect("figment errors are never empty");
    if e.path.is_empty() {
        return ConfigError::Other(e.kind.to_string());
    }
    let mut path = e.path.clone();
    // An unknown field's name is in the kind; some providers also put it at the end of the path.
    if let figment::error::Kind::UnknownField(name, _) = &e.kind
        && path.last() != Some(name)
    {
        path.push(name.clone());
    }
    let source_desc = match &e.metadata {
        Some(md) => match &md.source {
            Some(figment::Source::File(f)) => format!(" (in {})", f.display()),
            Some(figment::Source::Code(_)) | Some(figment::Source::Custom(_)) | None => {
                if md.name.contains("environment") {
                    let var = format!("DONGCHA__{}", path.join("__").to_uppercase());
                    format!(" (from environment variable {var})")
                } else {
                    String::new()
                }
            }
            Some(_) => String::new(),
        },
        None => String::new(),
    };
    let reason = match &e.kind {
        figment::error::Kind::UnknownField(_, _) => {
            "unknown key (secrets such as bot tokens are read only from the environment)"
                .to_string()
        }
        other => other.to_string(),
    };
    ConfigError::Key {
        key: path.join("."),
        source_desc,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_defaults_parse_and_point_at_sqlite_in_data_dir() {
        let cfg = Config::from_toml_str("").unwrap();
        assert_eq!(cfg.data_dir(), PathBuf::from("data"));
        assert_eq!(cfg.database_url(), "sqlite://data/dongcha.db");
        assert_eq!(cfg.rejects_dir(), PathBuf::from("data/rejects"));
        assert_eq!(cfg.ingest.max_line_bytes, 1 << 20);
        assert!(cfg.manifest_path().is_none());
        assert!(cfg.asset_cache_dir().ends_with(".cache/dongcha/assets"));
        assert!(cfg.forecast.holidays && cfg.forecast.promotions.is_empty());
    }

    #[test]
    fn a_bad_value_names_its_key() {
        let err = Config::from_toml_str("[ingest]\nchunk_lines = \"many\"\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("`ingest.chunk_lines`"), "{msg}");
        assert!(msg.contains("string"), "{msg}");
    }

    #[test]
    fn an_unknown_key_is_refused_by_name() {
        let err = Config::from_toml_str("[store]\ntelegram_token = \"123:abc\"\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("`store.telegram_token`"), "{msg}");
        assert!(msg.contains("unknown key"), "{msg}");
        assert!(
            !msg.contains("123:abc"),
            "the secret must not be echoed: {msg}"
        );
    }

    #[test]
    fn a_value_out_of_range_names_its_key() {
        let err = Config::from_toml_str("[ingest]\nmax_line_bytes = 3\n").unwrap_err();
        assert!(err.to_string().contains("`ingest.max_line_bytes`"));
        let err = Config::from_toml_str("log_level = \"dongcha=[\"\n").unwrap_err();
        assert!(err.to_string().contains("`log_level`"), "{err}");
    }

    #[test]
    fn relative_paths_follow_the_file_that_set_them() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("conf.toml");
        std::fs::write(
            &file,
            "data_dir = \"state\"\n[store]\nurl = \"sqlite://x.db\"\n",
        )
        .unwrap();
        let cfg = Config::load(Some(&file)).unwrap();
        assert_eq!(cfg.data_dir(), dir.path().join("state"));
        assert_eq!(cfg.database_url(), "sqlite://x.db");
    }

    #[test]
    fn promotions_are_read_with_their_dates() {
        let cfg = Config::from_toml_str(
            "[forecast]\npromotions = [{ name = \"anniversary\", start = \"2026-07-10\", end = \"2026-07-12\" }]\n",
        )
        .unwrap();
        assert_eq!(cfg.forecast.promotions[0].name, "anniversary");
        assert_eq!(cfg.forecast.promotions[0].end.to_string(), "2026-07-12");
        let err = Config::from_toml_str("[forecast]\npromotions = [{ name = \"x\", start = \"2026-02-30\", end = \"2026-03-01\" }]\n")
            .unwrap_err();
        assert!(err.to_string().contains("forecast.promotions"), "{err}");
    }

    #[test]
    fn digests_ship_a_weekly_one_and_bad_schedules_name_their_key() {
        let cfg = Config::from_toml_str("").unwrap();
        let w = &cfg.digest[0];
        assert_eq!(
            (w.name.as_str(), w.schedule.as_str(), w.timezone.as_str()),
            ("weekly", "0 9 * * Mon", "Asia/Shanghai")
        );
        assert_eq!(
            w.folder(Path::new("/srv/state")),
            Some(PathBuf::from("/srv/state/digests"))
        );
        let err = Config::from_toml_str(
            "[[digest]]\nname = \"d\"\nschedule = \"0 9 * * 1\"\ntimezone = \"UTC\"\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("`digest[0].schedule`"), "{err}");
        assert!(err.to_string().contains("by name"), "{err}");
        let err = Config::from_toml_str(
            "[[digest]]\nname = \"d\"\nschedule = \"0 9 * * Mon\"\ntimezone = \"Beijing\"\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("`digest[0].timezone`"), "{err}");
        let err = Config::from_toml_str("[[digest]]\nname = \"d\"\nschedule = \"0 9 * * Mon\"\ntimezone = \"UTC\"\nblocks = [\"weather\"]\n")
            .unwrap_err();
        assert!(err.to_string().contains("`digest[0].blocks`"), "{err}");
        // A file's list replaces the built-in one.
        let cfg = Config::from_toml_str("[[digest]]\nname = \"daily\"\nschedule = \"0 8 * * Mon-Fri\"\ntimezone = \"UTC\"\nperiod = \"day\"\n").unwrap();
        assert_eq!(cfg.digest.len(), 1);
        assert_eq!(cfg.digest[0].name, "daily");
        assert_eq!(cfg.digest[0].folder(Path::new("x")), None);
    }

    #[test]
    fn a_missing_config_file_is_an_error() {
        let err = Config::load(Some(Path::new("/nonexistent/dongcha.toml"))).unwrap_err();
        assert!(matches!(err, ConfigError::MissingFile(_)));
    }
}
