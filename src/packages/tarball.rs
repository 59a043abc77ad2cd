//! Checking and unpacking a package tarball (`.tgz`) into a fresh folder.
//!
//! Owns: checksum checks (`shasum` SHA-1 hex, `integrity` SRI sha1/sha256/sha512) and safe
//! extraction: only regular files and directories, no absolute paths or `..`, no links or
//! devices, size-limited; entries outside `package/` are put under `package/`.
//! Must not: decide where packages live or rename folders into place (that is `install.rs`).

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

use sha1::Sha1;
use sha2::{Digest, Sha256, Sha512};

use super::error::PackageError;

/// Checks the tarball against the checksums the registry published (none given: nothing to check).
pub(crate) fn verify(
    package: &str,
    url: &str,
    bytes: &[u8],
    shasum: Option<&str>,
    integrity: Option<&str>,
) -> Result<(), PackageError> {
    let failed = |algorithm: &str, expected: &str, actual: String| PackageError::Integrity {
        package: package.to_string(),
        url: url.to_string(),
        algorithm: algorithm.to_string(),
        expected: expected.to_string(),
        actual,
    };
    if let Some(expected) = shasum.map(str::trim).filter(|s| !s.is_empty()) {
        let actual = hex(&Sha1::digest(bytes));
        if !actual.eq_ignore_ascii_case(expected) {
            return Err(failed("sha1 shasum", expected, actual));
        }
    }
    if let Some(sri) = integrity.map(str::trim).filter(|s| !s.is_empty()) {
        let mut checked: Option<(String, String, String)> = None;
        for token in sri.split_whitespace() {
            let Some((algorithm, expected)) = token.split_once('-') else {
                continue;
            };
            let expected = expected.split('?').next().unwrap_or(expected);
            let actual = match algorithm {
                "sha512" => base64(&Sha512::digest(bytes)),
                "sha256" => base64(&Sha256::digest(bytes)),
                "sha1" => base64(&Sha1::digest(bytes)),
                _ => continue, // unknown algorithms are skipped, as SRI says
            };
            if actual == expected {
                return Ok(());
            }
            checked = Some((
                format!("{algorithm} integrity"),
                expected.to_string(),
                actual,
            ));
        }
        if let Some((algorithm, expected, actual)) = checked {
            return Err(failed(&algorithm, &expected, actual));
        }
    }
    Ok(())
}

/// Unpacks the gzip'd tar `bytes` into `target` (which must exist and be empty).
/// `limit` bounds the total extracted size (against decompression bombs).
pub(crate) fn extract(
    package: &str,
    url: &str,
    bytes: &[u8],
    target: &Path,
    limit: u64,
) -> Result<usize, PackageError> {
    let refuse = |problem: String| PackageError::BadTarball {
        package: package.to_string(),
        url: url.to_string(),
        problem,
    };
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    let entries = archive
        .entries()
        .map_err(|e| refuse(format!("not a tar.gz archive: {e}")))?;
    let mut written: u64 = 0;
    let mut files = 0usize;
    for entry in entries {
        let mut entry = entry.map_err(|e| refuse(format!("unreadable archive: {e}")))?;
        let raw_path = entry
            .path()
            .map_err(|e| refuse(format!("entry with an unreadable name: {e}")))?
            .into_owned();
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            continue;
        }
        let relative = safe_relative(&raw_path).ok_or_else(|| {
            refuse(format!(
                "entry {} escapes the package folder",
                raw_path.display()
            ))
        })?;
        let Some(relative) = relative else { continue }; // the archive root itself
        let destination = target.join(relative);
        if kind.is_dir() {
            std::fs::create_dir_all(&destination)
                .map_err(|e| PackageError::write(package, &destination, e))?;
            continue;
        }
        if !kind.is_file() {
            return Err(refuse(format!(
                "entry {} is a link or special file",
                raw_path.display()
            )));
        }
        let size = entry.header().size().unwrap_or(0);
        written = written.saturating_add(size);
        if written > limit {
            return Err(refuse(format!("extracts to more than {limit} bytes")));
        }
        if let Some(parent) = destination.parent() {
            std::fs::create_dir_all(parent).map_err(|e| PackageError::write(package, parent, e))?;
        }
        if destination.exists() {
            return Err(refuse(format!(
                "entry {} appears twice",
                raw_path.display()
            )));
        }
        let mut out = File::create(&destination)
            .map_err(|e| PackageError::write(package, &destination, e))?;
        let mut reader = (&mut entry).take(size);
        let copied = std::io::copy(&mut reader, &mut out)
            .map_err(|e| refuse(format!("entry {} is truncated: {e}", raw_path.display())))?;
        if copied != size {
            return Err(refuse(format!("entry {} is truncated", raw_path.display())));
        }
        out.flush()
            .map_err(|e| PackageError::write(package, &destination, e))?;
        files += 1;
    }
    if files == 0 {
        return Err(refuse("the archive holds no files".to_string()));
    }
    Ok(files)
}

/// The path an entry is extracted to, relative to the package's folder: `package/...`.
/// `None` (outer): unsafe (absolute, `..`, prefixes). `Some(None)`: nothing to create.
fn safe_relative(path: &Path) -> Option<Option<PathBuf>> {
    let mut parts = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => parts.push(p),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    if parts
        .iter()
        .any(|p| p.to_str().is_some_and(|s| s.contains('\\')))
    {
        return None;
    }
    if parts.is_empty() {
        return Some(None);
    }
    let mut out = PathBuf::new();
    if parts[0] != "package" {
        out.push("package");
    }
    out.extend(parts);
    Some(Some(out))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Standard base64 with padding (as SRI uses).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn checksums() {
        let data = b"abc";
        let sha1 = "a9993e364706816aba3e25717850c26c9cd0d89d";
        assert!(verify("p", "u", data, Some(sha1), None).is_ok());
        assert!(verify("p", "u", data, Some(&sha1.to_uppercase()), None).is_ok());
        assert!(verify("p", "u", b"abd", Some(sha1), None).is_err());
        let sri = format!("sha512-{}", base64(&Sha512::digest(data)));
        assert!(verify("p", "u", data, None, Some(&sri)).is_ok());
        assert!(verify("p", "u", b"abd", None, Some(&sri)).is_err());
        assert!(verify("p", "u", data, None, Some("md5-xyz")).is_ok());
    }

    #[test]
    fn relative_paths() {
        let p = |s: &str| safe_relative(Path::new(s));
        assert_eq!(
            p("package/a.json"),
            Some(Some(PathBuf::from("package/a.json")))
        );
        assert_eq!(
            p("./package/a.json"),
            Some(Some(PathBuf::from("package/a.json")))
        );
        assert_eq!(
            p("other/a.json"),
            Some(Some(PathBuf::from("package/other/a.json")))
        );
        assert_eq!(p("."), Some(None));
        assert_eq!(p("../a.json"), None);
        assert_eq!(p("package/../../a.json"), None);
        assert_eq!(p("/etc/passwd"), None);
    }
}
