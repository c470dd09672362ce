//! Shared helpers for the end-to-end tests: a config whose state lives in a temporary folder, the store,
//! and the pinned real data sets (fetched once into the shared asset cache).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use dongcha::assets::Assets;
use dongcha::config::Config;
use dongcha::store::Store;

/// The configured defaults (and DONGCHA__* overrides, e.g. the asset cache of CI) with state in `dir`.
pub fn config_in(dir: &Path) -> Config {
    Config::load(None).expect("config loads").with_data_dir(dir)
}

pub async fn store_in(dir: &Path) -> Store {
    Store::open_config(&config_in(dir))
        .await
        .expect("store opens")
}

/// A file of a pinned asset, fetched first if this machine has not got it yet.
pub fn asset_file(asset: &str, file: &str) -> PathBuf {
    let cfg = Config::load(None).expect("config loads");
    let assets = Assets::from_config(&cfg).expect("manifest");
    assets
        .ensure(&[asset], &indicatif::ProgressBar::hidden())
        .unwrap_or_else(|e| panic!("fetching {asset}: {e}"));
    assets.path(asset, file).expect("cached")
}

/// A copy of a state folder (the database with its WAL, caches), so a test can change it freely.
///
/// Another test's process may close the database while the copy runs, and SQLite then removes the WAL it
/// had checkpointed: `cp` fails on the vanished file ("cannot stat … dongcha.db-wal"). The copy is then
/// made again (into a fresh folder) — the folder is stable once that process has closed it.
pub fn copy_of(dir: &Path) -> tempfile::TempDir {
    for attempt in 1..=5 {
        let copy = tempfile::tempdir().unwrap();
        let st = std::process::Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", dir.display()))
            .arg(copy.path())
            .status()
            .unwrap();
        if st.success() {
            return copy;
        }
        eprintln!(
            "copying {} failed (attempt {attempt}); again",
            dir.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    panic!("copying {} failed five times", dir.display());
}

/// The database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// The test PostgreSQL server's URL (scripts/test.sh starts one and sets DONGCHA_TEST_POSTGRES), or
/// `None` — then the Postgres variants say so and pass, unless DONGCHA_TEST_POSTGRES_REQUIRED is set, as
/// scripts/test.sh (and so CI) sets it.
pub fn postgres_server() -> Option<String> {
    match std::env::var("DONGCHA_TEST_POSTGRES") {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var_os("DONGCHA_TEST_POSTGRES_REQUIRED").is_none(),
                "DONGCHA_TEST_POSTGRES_REQUIRED is set but DONGCHA_TEST_POSTGRES is not"
            );
            eprintln!(
                "PostgreSQL variant not run: DONGCHA_TEST_POSTGRES is not set (scripts/test.sh starts a server)"
            );
            None
        }
    }
}

/// A new, empty database on the test server, and its URL.
pub async fn fresh_postgres_database() -> Option<String> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let server = postgres_server()?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let name = format!(
        "t{}_{}_{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let admin = sqlx::PgPool::connect(&server).await.expect("test Postgres");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await
        .expect("create database");
    admin.close().await;
    let base = server.rsplit_once('/').expect("URL with a database").0;
    Some(format!("{base}/{name}"))
}

/// [`fresh_postgres_database`] from code that is not async (it runs on a thread of its own).
pub fn fresh_postgres_database_blocking() -> Option<String> {
    std::thread::spawn(|| {
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(fresh_postgres_database())
    })
    .join()
    .unwrap()
}

/// A config with state in `dir` and its database on `db`: SQLite in `dir`, or a new database on the test
/// Postgres server (`None` when there is none, see [`postgres_server`]).
pub async fn config_on(dir: &Path, db: Db) -> Option<Config> {
    let mut cfg = config_in(dir);
    if db == Db::Postgres {
        cfg.store.url = fresh_postgres_database().await?;
    }
    Some(cfg)
}

/// The store of [`config_on`].
pub async fn store_on(dir: &Path, db: Db) -> Option<(Store, String)> {
    let cfg = config_on(dir, db).await?;
    let store = Store::open_config(&cfg).await.expect("store opens");
    Some((store, cfg.database_url()))
}

/// Rows of a query the test writes in SQL both databases accept, on the database at `url`.
pub async fn query_rows<T>(url: &str, sql: &str) -> Vec<T>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
        + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>
        + Send
        + Unpin,
{
    let sql = sqlx::AssertSqlSafe(sql.to_string());
    if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(url).await.expect("connect");
        let rows = sqlx::query_as(sql).fetch_all(&pool).await.expect("query");
        pool.close().await;
        rows
    } else {
        let pool = sqlx::PgPool::connect(url).await.expect("connect");
        let rows = sqlx::query_as(sql).fetch_all(&pool).await.expect("query");
        pool.close().await;
        rows
    }
}

/// The one value of a one-row, one-column query (see [`query_rows`]).
pub async fn query_one<T>(url: &str, sql: &str) -> T
where
    T: for<'r> sqlx::Decode<'r, sqlx::Sqlite>
        + sqlx::Type<sqlx::Sqlite>
        + for<'r> sqlx::Decode<'r, sqlx::Postgres>
        + sqlx::Type<sqlx::Postgres>
        + Send
        + Unpin,
{
    let mut rows: Vec<(T,)> = query_rows(url, sql).await;
    assert_eq!(rows.len(), 1, "{sql}: one row");
    rows.remove(0).0
}

/// Declares `$name::sqlite` and `$name::postgres`, running `async fn $name(db: common::Db)` on each.
#[macro_export]
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                super::$name(super::common::Db::Sqlite).await
            }
            #[tokio::test]
            async fn postgres() {
                if super::common::postgres_server().is_some() {
                    super::$name(super::common::Db::Postgres).await
                }
            }
        }
    )*};
}

/// The address `dongcha serve` prints alone on its first line ("dongcha serve: web chat at
/// http://ADDR/"), read from the child's piped stdout: `http://ADDR`.
pub fn served_address(child: &mut std::process::Child) -> String {
    use std::io::BufRead;
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout piped"))
        .read_line(&mut line)
        .expect("reading serve's first line");
    line.trim()
        .strip_prefix("dongcha serve: web chat at ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .trim_end_matches('/')
        .to_string()
}
