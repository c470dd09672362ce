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
pub fn copy_of(dir: &Path) -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", dir.display()))
        .arg(copy.path())
        .status()
        .unwrap();
    assert!(st.success(), "copying {}", dir.display());
    copy
}
