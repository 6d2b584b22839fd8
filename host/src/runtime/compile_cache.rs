//! The compile cache: artifacts of compiled components on disk, by content hash and engine.
//!
//! `<dir>/<blake3>-<engine>.cwasm` holds the native code of the component whose bytes hash to
//! `<blake3>`, compiled by an engine whose compatibility hash is `<engine>`; a restart or a
//! redeploy of a known file maps it instead of compiling (seconds for a large component).
//!
//! `<dir>/hints/<probe>` remembers which content hash a file with that [`Probe`] (size, first
//! and last 64 KiB) had when it was last loaded. A redeploy is hashed in full before its
//! artifact may be used, but with a hint the likely artifact is mapped on another thread while
//! the hash runs: a hit then costs the longer of the two, not their sum. A hint is only ever
//! a guess: a wrong one costs a wasted mapping, never a wrong component.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use wasmtime::component::Component;
use wasmtime::Engine;

use super::content_hash::{ContentHash, Probe};

/// The compile-cache folder of one engine.
pub(crate) struct CompileCache {
    dir: PathBuf,
    engine: Engine,
    /// The engine's compatibility hash, as it appears in artifact names.
    engine_tag: String,
}

impl CompileCache {
    /// The cache in `dir` for artifacts of `engine`.
    pub fn new(dir: PathBuf, engine: &Engine) -> Self {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Self {
            dir,
            engine: engine.clone(),
            engine_tag: format!("{:016x}", hasher.finish()),
        }
    }

    /// Where the artifact of the component with `hash` is.
    fn artifact_path(&self, hash: &ContentHash) -> PathBuf {
        self.dir.join(format!("{hash}-{}.cwasm", self.engine_tag))
    }

    fn hint_path(&self, probe: &Probe) -> PathBuf {
        self.dir.join("hints").join(probe.to_string())
    }

    /// The cached artifact of the component with `hash`, if there is a usable one (an
    /// unusable one is deleted).
    pub fn load(&self, hash: &ContentHash) -> Option<Component> {
        let path = self.artifact_path(hash);
        if !path.exists() {
            return None;
        }
        // SAFETY: the cache folder holds only artifacts this host serialized with a
        // compatible engine (the file name carries the engine's compatibility hash), and
        // the configuration requires that only the host writes there. The file is mapped,
        // not copied (a large component loads in a few ms instead of tens): the host never
        // modifies an entry in place (new entries are renamed into place, bad ones are
        // unlinked), and nothing else may either, or a mapped file could be truncated
        // under a running component.
        match unsafe { Component::deserialize_file(&self.engine, &path) } {
            Ok(component) => Some(component),
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %format!("{e:#}"), "discarding an unusable compile-cache entry");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Writes the artifact of a freshly compiled component (best effort).
    pub fn store(&self, hash: &ContentHash, component: &Component) {
        let path = self.artifact_path(hash);
        let stored = component
            .serialize()
            .map_err(|e| e.to_string())
            .and_then(|artifact| write_atomically(&path, &artifact));
        if let Err(e) = stored {
            tracing::warn!(dir = %self.dir.display(), error = %e, "cannot write the compile cache");
        }
    }

    /// The content hash a file with `probe` had when last loaded, if recorded.
    pub fn hint(&self, probe: &Probe) -> Option<ContentHash> {
        let text = std::fs::read_to_string(self.hint_path(probe)).ok()?;
        ContentHash::from_hex(text.trim())
    }

    /// Records that a file with `probe` has content `hash` (best effort; skipped when the
    /// hint already says so).
    pub fn set_hint(&self, probe: &Probe, hash: &ContentHash) {
        if self.hint(probe) == Some(*hash) {
            return;
        }
        if let Err(e) = write_atomically(&self.hint_path(probe), hash.to_hex().as_bytes()) {
            tracing::debug!(dir = %self.dir.display(), error = %e, "cannot write a compile-cache hint");
        }
    }
}

/// Writes `bytes` to a temporary file beside `path` and renames it into place.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), String> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, path).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_round_trip_and_bad_ones_are_ignored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = CompileCache::new(dir.path().to_path_buf(), &Engine::default());
        let file = dir.path().join("x.wasm");
        std::fs::write(&file, b"component bytes").expect("write");
        let probe = Probe::of_file(&file).expect("probe");
        assert_eq!(cache.hint(&probe), None);
        let hash = ContentHash::of(b"component bytes");
        cache.set_hint(&probe, &hash);
        assert_eq!(cache.hint(&probe), Some(hash));
        std::fs::write(cache.hint_path(&probe), b"not hex").expect("corrupt");
        assert_eq!(cache.hint(&probe), None);
    }

    #[test]
    fn an_unusable_artifact_is_deleted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = CompileCache::new(dir.path().to_path_buf(), &Engine::default());
        let hash = ContentHash::of(b"x");
        std::fs::write(cache.artifact_path(&hash), b"garbage").expect("write");
        assert!(cache.load(&hash).is_none());
        assert!(!cache.artifact_path(&hash).exists());
    }
}
