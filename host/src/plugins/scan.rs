//! Reading the plugins folder: which component files exist, which changed since they were
//! last read, and what a changed one holds now.
//!
//! Blocking file-system work: the registry runs a whole scan in one blocking task and each
//! changed file's read-hash-load in another, so a redeploy costs two thread hand-offs, not
//! one per metadata call.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::runtime::ContentHash;

/// Identity of a file's current content as far as metadata tells: (size, mtime, inode) of
/// the wasm file and of its manifest, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    wasm: (u64, SystemTime, u64),
    manifest: Option<(u64, SystemTime, u64)>,
}

impl Stamp {
    /// The stamp of `wasm` and of the manifest beside it; `None` if either cannot be read.
    fn of(wasm: &Path) -> Option<Self> {
        fn one(path: &Path) -> io::Result<(u64, SystemTime, u64)> {
            let m = std::fs::metadata(path)?;
            #[cfg(unix)]
            let ino = std::os::unix::fs::MetadataExt::ino(&m);
            #[cfg(not(unix))]
            let ino = 0;
            Ok((m.len(), m.modified()?, ino))
        }
        let wasm_stamp = one(wasm).ok()?;
        let manifest = match one(&wasm.with_extension("toml")) {
            Ok(s) => Some(s),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(_) => return None,
        };
        Some(Self {
            wasm: wasm_stamp,
            manifest,
        })
    }
}

/// A component file whose stamp differs from the one last read (or cannot be taken).
#[derive(Debug)]
pub(crate) struct Changed {
    /// The component name (the file name without `.wasm`).
    pub name: String,
    /// The `.wasm` file.
    pub path: PathBuf,
    /// Its stamp now.
    pub stamp: Option<Stamp>,
}

/// What a scan of the folder found.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    /// Names of every component file present.
    pub present: BTreeSet<String>,
    /// The files that changed since their stamp in `known`, by name.
    pub changed: Vec<Changed>,
}

/// Lists the `NAME.wasm` files of `dir` and picks those whose stamp is not the one in
/// `known` (the stamps of the files as last read).
pub(crate) fn scan(dir: &Path, known: &HashMap<String, Option<Stamp>>) -> io::Result<Scan> {
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("wasm") {
            continue;
        }
        if let Some(name) = path.file_stem().and_then(|s| s.to_str()) {
            files.insert(name.to_string(), path.clone());
        }
    }
    let mut scan = Scan::default();
    for (name, path) in files {
        let stamp = Stamp::of(&path);
        let unchanged = stamp.is_some() && known.get(&name).is_some_and(|k| *k == stamp);
        if !unchanged {
            scan.changed.push(Changed {
                name: name.clone(),
                path,
                stamp,
            });
        }
        scan.present.insert(name);
    }
    Ok(scan)
}

/// The manifest beside the component file `wasm` (`NAME.toml`), if there is one.
pub(crate) fn read_manifest(wasm: &Path) -> io::Result<Option<String>> {
    match std::fs::read_to_string(wasm.with_extension("toml")) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Identifies a component's bytes and its manifest together: a file is reloaded only when
/// this changes.
pub(crate) fn fingerprint(hash: &ContentHash, manifest_text: Option<&str>) -> String {
    match manifest_text {
        Some(text) => format!("{hash}+{}", ContentHash::of(text.as_bytes())),
        None => hash.to_hex(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scan_reports_only_files_whose_stamp_changed() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("a.wasm"), b"one").expect("write a");
        std::fs::write(dir.path().join("b.wasm"), b"two").expect("write b");
        std::fs::write(dir.path().join("notes.txt"), b"not a component").expect("write txt");
        let first = scan(dir.path(), &HashMap::new()).expect("scan");
        assert_eq!(
            first.present.iter().map(String::as_str).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(first.changed.len(), 2);

        let known: HashMap<String, Option<Stamp>> = first
            .changed
            .iter()
            .map(|c| (c.name.clone(), c.stamp))
            .collect();
        std::fs::write(dir.path().join("b.toml"), b"[limits]\n").expect("write manifest");
        let second = scan(dir.path(), &known).expect("scan");
        assert_eq!(second.present.len(), 2);
        let changed: Vec<&str> = second.changed.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(changed, ["b"], "a manifest change changes the stamp");
    }

    #[test]
    fn the_fingerprint_covers_the_manifest_too() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wasm = dir.path().join("p.wasm");
        std::fs::write(&wasm, b"bytes").expect("write");
        let hash = ContentHash::of(b"bytes");
        assert_eq!(read_manifest(&wasm).expect("read"), None);
        assert_eq!(fingerprint(&hash, None), hash.to_hex());
        std::fs::write(dir.path().join("p.toml"), b"databases = []\n").expect("manifest");
        let manifest = read_manifest(&wasm).expect("read");
        assert_eq!(manifest.as_deref(), Some("databases = []\n"));
        let with_manifest = fingerprint(&hash, manifest.as_deref());
        assert!(with_manifest.starts_with(&hash.to_hex()));
        assert_ne!(with_manifest, hash.to_hex());
    }
}
