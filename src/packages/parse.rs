//! Reading JSON files of a package and spreading such work over a few threads.
//!
//! Owns: file → `serde_json::Value` with package-and-file errors, and `parallel_map`.
//! Must not: know about indexes, canonicals or registries.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use serde_json::Value;

use super::error::PackageError;

/// Reads and parses one JSON file; errors name `package` and the file (with line/column).
pub fn read_json(package: &str, file: &Path) -> Result<Value, PackageError> {
    let bytes = std::fs::read(file).map_err(|e| PackageError::unreadable(package, file, e))?;
    parse_json(package, file, &bytes)
}

/// Parses bytes already read from `file` (a UTF-8 BOM is tolerated, as FHIR tools do).
pub fn parse_json(package: &str, file: &Path, bytes: &[u8]) -> Result<Value, PackageError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    serde_json::from_slice(bytes).map_err(|e| PackageError::json(package, file, &e))
}

/// Worker threads for bulk parsing: the machine's parallelism, at most 8, at least 1.
pub fn worker_count() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 8)
}

/// Applies `f` to every item on up to [`worker_count`] scoped threads; results keep item order.
/// Small inputs run on the calling thread.
pub fn parallel_map<T, R, F>(items: &[T], f: F) -> Vec<R>
where
    T: Sync,
    R: Send,
    F: Fn(&T) -> R + Sync,
{
    let workers = worker_count().min(items.len() / 16).max(1);
    if workers == 1 {
        return items.iter().map(&f).collect();
    }
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<R>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                let mut local = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    local.push((i, f(item)));
                }
                let mut all = results.lock().unwrap_or_else(|p| p.into_inner());
                for (i, r) in local {
                    if let Some(slot) = all.get_mut(i) {
                        *slot = Some(r);
                    }
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .flatten()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_map_keeps_order() {
        let items: Vec<usize> = (0..1000).collect();
        let out = parallel_map(&items, |i| i * 2);
        assert_eq!(out, items.iter().map(|i| i * 2).collect::<Vec<_>>());
    }

    #[test]
    fn json_error_has_position() {
        let err = parse_json("p#1", Path::new("/x/a.json"), b"{\n  \"a\": ,\n}").unwrap_err();
        match err {
            PackageError::InvalidJson { line, column, .. } => assert_eq!((line, column), (2, 8)),
            other => panic!("{other}"),
        }
    }
}
