//! Shared helpers for the package tests: where the shared packages are, synthetic package
//! folders, tarballs built on the fly, and a loopback-only HTTP registry.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{json, Value};
use sha1::Digest;

use spbridge::packages::PackageDir;

pub const R4_CORE: &str = "hl7.fhir.r4.core#4.0.1";
pub const UK_STU2: &str = "fhir.r4.ukcore.stu2#2.0.2";
pub const UK_STU3: &str = "fhir.r4.ukcore.stu3.currentbuild#0.22.0-main.55dd5f7e";

/// The shared package directory: `SPBRIDGE_FHIR_PACKAGES`, else `<crate>/../shared/fhir-packages`
/// when it exists (the main crate's layout), else /work/shared/fhir-packages (scratch crates).
pub fn shared_dir() -> PackageDir {
    let beside = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fhir-packages");
    if beside.is_dir() {
        PackageDir::from_env_or(beside)
    } else {
        PackageDir::from_env_or("/work/shared/fhir-packages")
    }
}

/// `<shared>/<folder>/package`.
pub fn shared_package(folder: &str) -> PathBuf {
    shared_dir().path().join(folder).join("package")
}

/// Writes `value` as pretty JSON to `path`, creating parent folders.
pub fn write_json(path: &Path, value: &Value) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, serde_json::to_vec_pretty(value).unwrap()).unwrap();
}

/// Creates `<dir>/<id>#<version>/package/package.json` and returns the `package/` folder.
pub fn make_package(dir: &Path, id: &str, version: &str, deps: &[(&str, &str)]) -> PathBuf {
    let root = dir.join(format!("{id}#{version}")).join("package");
    let deps: serde_json::Map<String, Value> = deps
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    write_json(
        &root.join("package.json"),
        &json!({"name": id, "version": version, "fhirVersions": ["4.0.1"], "dependencies": deps}),
    );
    root
}

/// A minimal conformance resource.
pub fn resource(resource_type: &str, id: &str, url: &str, version: &str) -> Value {
    json!({"resourceType": resource_type, "id": id, "url": url, "version": version, "status": "active"})
}

/// Writes `.index.json` for the files given (resource type, url, version read from them).
pub fn write_index(root: &Path, files: &[&str]) {
    let rows: Vec<Value> = files
        .iter()
        .map(|f| {
            let v: Value = serde_json::from_slice(&std::fs::read(root.join(f)).unwrap()).unwrap();
            json!({"filename": f, "resourceType": v["resourceType"], "id": v["id"], "url": v["url"], "version": v["version"]})
        })
        .collect();
    write_json(
        &root.join(".index.json"),
        &json!({"index-version": 1, "files": rows}),
    );
}

/// A `.tgz` of a `package/` folder, entries named `package/...`.
pub fn tgz_of_folder(package_root: &Path) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut builder = tar::Builder::new(gz);
    builder.mode(tar::HeaderMode::Deterministic);
    builder.append_dir_all("package", package_root).unwrap();
    builder.into_inner().unwrap().finish().unwrap()
}

/// Kinds of raw tar entries for hostile archives.
pub enum RawEntry<'a> {
    File(&'a str, &'a [u8]),
    Symlink(&'a str, &'a str),
}

/// A `.tgz` with entry names written verbatim (the tar crate's builder refuses `..`).
pub fn tgz_raw(entries: &[RawEntry<'_>]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut builder = tar::Builder::new(gz);
    for entry in entries {
        let mut header = tar::Header::new_old();
        let (name, data, link): (&str, &[u8], Option<&str>) = match entry {
            RawEntry::File(n, d) => (n, d, None),
            RawEntry::Symlink(n, target) => (n, b"", Some(target)),
        };
        {
            let old = header.as_old_mut();
            old.name[..name.len()].copy_from_slice(name.as_bytes());
            if let Some(target) = link {
                old.linkname[..target.len()].copy_from_slice(target.as_bytes());
            }
        }
        header.set_mode(0o644);
        header.set_size(data.len() as u64);
        header.set_entry_type(if link.is_some() {
            tar::EntryType::Symlink
        } else {
            tar::EntryType::Regular
        });
        header.set_cksum();
        builder.append(&header, data).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

pub fn sha1_hex(bytes: &[u8]) -> String {
    sha1::Sha1::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Path → (status, body).
type Routes = HashMap<String, (u16, Vec<u8>)>;

/// A tiny HTTP/1.1 server on 127.0.0.1 serving fixed responses by path; records request paths.
pub struct TestRegistry {
    pub base: String,
    addr: SocketAddr,
    routes: Arc<Mutex<Routes>>,
    hits: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TestRegistry {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let routes: Arc<Mutex<Routes>> = Arc::default();
        let hits: Arc<Mutex<Vec<String>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (routes, hits, stop) = (routes.clone(), hits.clone(), stop.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(stream) = stream {
                        serve_one(stream, &routes, &hits);
                    }
                }
            })
        };
        TestRegistry {
            base: format!("http://{addr}"),
            addr,
            routes,
            hits,
            stop,
            thread: Some(thread),
        }
    }

    /// Serves `body` with `status` at `path` (e.g. `/hl7.fhir.r4.core`).
    pub fn serve(&self, path: &str, status: u16, body: Vec<u8>) {
        self.routes
            .lock()
            .unwrap()
            .insert(path.to_string(), (status, body));
    }

    /// NPM-style metadata for `id` listing `versions` as (version, tarball bytes, publish checksums).
    pub fn publish(&self, id: &str, versions: &[(&str, &[u8], bool)]) {
        let mut map = serde_json::Map::new();
        for (version, tgz, checksums) in versions {
            let path = format!("/tarballs/{id}-{version}.tgz");
            self.serve(&path, 200, tgz.to_vec());
            let mut dist = json!({"tarball": format!("{}{path}", self.base)});
            if *checksums {
                dist["shasum"] = json!(sha1_hex(tgz));
                dist["integrity"] = json!(format!("sha512-{}", sri_sha512(tgz)));
            }
            map.insert(
                version.to_string(),
                json!({"name": id, "version": version, "dist": dist}),
            );
        }
        let doc = json!({"_id": id, "name": id, "versions": map});
        self.serve(&format!("/{id}"), 200, serde_json::to_vec(&doc).unwrap());
    }

    pub fn hits(&self) -> Vec<String> {
        self.hits.lock().unwrap().clone()
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve_one(mut stream: TcpStream, routes: &Mutex<Routes>, hits: &Mutex<Vec<String>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) if line == "\r\n" || line == "\n" => break,
            Ok(_) => {}
        }
    }
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .to_string();
    if request_line.is_empty() {
        return;
    }
    hits.lock().unwrap().push(path.clone());
    let (status, body) = routes
        .lock()
        .unwrap()
        .get(&path)
        .cloned()
        .unwrap_or((404, b"not found".to_vec()));
    let head = format!(
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&body);
    let _ = stream.flush();
}

/// Base64 of the SHA-512 digest (SRI form without the `sha512-` prefix).
pub fn sri_sha512(bytes: &[u8]) -> String {
    let digest = sha2::Sha512::digest(bytes);
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in digest.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
