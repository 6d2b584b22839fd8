//! The content hash of a component: its version and its compile-cache key.
//!
//! BLAKE3: several times faster than SHA-256 on large components (a 19 MB Python component
//! hashes in about 2 ms), which matters because a redeploy is hashed before the compile cache
//! can answer. Files are read in chunks on one thread and hashed on another, so a cache hit
//! never holds the whole component in memory and reading overlaps hashing.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::mpsc;

/// Files up to this size are read and hashed on the calling thread.
const INLINE_LIMIT: u64 = 2 << 20;
/// Size of one read when hashing a large file.
const CHUNK: usize = 1 << 20;
/// Chunk buffers in flight between the reading and the hashing thread.
const BUFFERS: usize = 3;

/// BLAKE3 hash of a component's bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ContentHash(blake3::Hash);

impl ContentHash {
    /// The hash of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(blake3::hash(bytes))
    }

    /// The hash and the length of the file at `path`, read once without keeping its bytes.
    pub fn of_file(path: &Path) -> io::Result<(Self, u64)> {
        let mut file = File::open(path)?;
        if file.metadata()?.len() <= INLINE_LIMIT {
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes)?;
            return Ok((Self::of(&bytes), bytes.len() as u64));
        }
        hash_pipelined(&mut file)
    }

    /// Lower-case hex, as shown to operators (the plugin's version).
    pub fn to_hex(&self) -> String {
        self.0.to_hex().to_string()
    }

    /// Parses [`to_hex`](Self::to_hex)'s output.
    pub fn from_hex(hex: &str) -> Option<Self> {
        blake3::Hash::from_hex(hex).ok().map(Self)
    }
}

/// Bytes a [`Probe`] reads at each end of a file.
const PROBE_SPAN: u64 = 64 << 10;

/// A cheap guess at a file's identity: its size and the hash of its first and last 64 KiB.
/// Equal probes do not prove equal content; they only name a likely candidate, to be
/// confirmed by the full [`ContentHash`].
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Probe(blake3::Hash);

impl Probe {
    /// The probe of the file at `path` (reads at most 128 KiB).
    pub fn of_file(path: &Path) -> io::Result<Self> {
        let mut file = File::open(path)?;
        let size = file.metadata()?.len();
        let mut hasher = blake3::Hasher::new();
        hasher.update(&size.to_le_bytes());
        let mut buffer = vec![0; PROBE_SPAN.min(size) as usize];
        let head = fill(&mut file, &mut buffer)?;
        hasher.update(&buffer[..head]);
        if size > PROBE_SPAN {
            file.seek(SeekFrom::Start(
                size.saturating_sub(PROBE_SPAN).max(PROBE_SPAN),
            ))?;
            let tail = fill(&mut file, &mut buffer)?;
            hasher.update(&buffer[..tail]);
        }
        Ok(Self(hasher.finalize()))
    }
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.to_hex().as_str())
    }
}

impl fmt::Debug for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Probe({self})")
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.to_hex().as_str())
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentHash({self})")
    }
}

/// Reads `file` in chunks on this thread while a scoped thread hashes the chunks read (or
/// does both here if no thread can be started).
fn hash_pipelined(file: &mut File) -> io::Result<(ContentHash, u64)> {
    let (full_tx, full_rx) = mpsc::sync_channel::<(Vec<u8>, usize)>(BUFFERS);
    let (empty_tx, empty_rx) = mpsc::sync_channel::<Vec<u8>>(BUFFERS);
    for _ in 0..BUFFERS {
        // Cannot fail: the channel has room for every buffer and its receiver is alive.
        let _ = empty_tx.send(vec![0; CHUNK]);
    }
    std::thread::scope(|scope| {
        let spawned = std::thread::Builder::new()
            .name("polymongo-hash".into())
            .spawn_scoped(scope, move || {
                let mut hasher = blake3::Hasher::new();
                let mut length = 0u64;
                for (buffer, filled) in full_rx {
                    hasher.update(&buffer[..filled]);
                    length += filled as u64;
                    // The reader may have stopped; then the buffer is simply dropped.
                    let _ = empty_tx.send(buffer);
                }
                (ContentHash(hasher.finalize()), length)
            });
        let Ok(hasher) = spawned else {
            return hash_streaming(file);
        };
        let read = (|| loop {
            let Ok(mut buffer) = empty_rx.recv() else {
                return Err(io::Error::other("the hashing thread stopped"));
            };
            let filled = fill(file, &mut buffer)?;
            if filled == 0 {
                return Ok(());
            }
            if full_tx.send((buffer, filled)).is_err() {
                return Err(io::Error::other("the hashing thread stopped"));
            }
        })();
        drop(full_tx);
        let hashed = hasher
            .join()
            .map_err(|_| io::Error::other("the hashing thread panicked"))?;
        read.map(|()| hashed)
    })
}

/// Reads and hashes `file` in chunks on this thread.
fn hash_streaming(file: &mut File) -> io::Result<(ContentHash, u64)> {
    let mut buffer = vec![0; CHUNK];
    let mut hasher = blake3::Hasher::new();
    let mut length = 0u64;
    loop {
        let filled = fill(file, &mut buffer)?;
        if filled == 0 {
            return Ok((ContentHash(hasher.finalize()), length));
        }
        hasher.update(&buffer[..filled]);
        length += filled as u64;
    }
}

/// Reads until `buffer` is full or the file ends; returns the bytes read.
fn fill(file: &mut File, buffer: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match file.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 + i / 7) as u8).collect()
    }

    #[test]
    fn a_file_hashes_like_its_bytes_at_every_size() {
        let dir = tempfile::tempdir().expect("tempdir");
        for len in [
            0,
            1,
            CHUNK - 1,
            INLINE_LIMIT as usize,
            INLINE_LIMIT as usize + 1,
            3 * CHUNK,
            5 * CHUNK + 17,
        ] {
            let bytes = pattern(len);
            let path = dir.path().join(format!("{len}.wasm"));
            std::fs::write(&path, &bytes).expect("write");
            let (hash, length) = ContentHash::of_file(&path).expect("hash");
            assert_eq!(length, len as u64, "length of {len} bytes");
            assert_eq!(hash, ContentHash::of(&bytes), "hash of {len} bytes");
        }
    }

    #[test]
    fn hex_is_the_blake3_digest() {
        assert_eq!(
            ContentHash::of(b"abc").to_hex(),
            "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"
        );
        assert_eq!(ContentHash::of(b"").to_hex().len(), 64);
    }

    #[test]
    fn probes_see_size_head_and_tail_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p.wasm");
        let probe = |bytes: &[u8]| {
            std::fs::write(&path, bytes).expect("write");
            Probe::of_file(&path).expect("probe")
        };
        let big = pattern(3 * PROBE_SPAN as usize);
        let mut middle_changed = big.clone();
        middle_changed[PROBE_SPAN as usize + 10] ^= 1;
        let mut tail_changed = big.clone();
        *tail_changed.last_mut().expect("byte") ^= 1;
        assert_eq!(
            probe(&big),
            probe(&middle_changed),
            "the middle is not read"
        );
        assert_ne!(probe(&big), probe(&tail_changed));
        assert_ne!(probe(&big), probe(&big[..big.len() - 1]));
        assert_ne!(probe(b"small"), probe(b"smal1"));
        assert_eq!(probe(b""), probe(b""));
        let hash = ContentHash::of(&big);
        assert_eq!(ContentHash::from_hex(&hash.to_hex()), Some(hash));
        assert_eq!(ContentHash::from_hex("zz"), None);
    }

    #[test]
    fn a_missing_file_is_an_io_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(ContentHash::of_file(&dir.path().join("absent.wasm")).is_err());
    }
}
