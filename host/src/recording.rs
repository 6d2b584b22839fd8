//! Recording the host's request stream to a trace file (`[trace]` in the configuration), so
//! that eviction policies can be measured on a host's own traffic:
//! `polymongo replay --trace FILE --capacity K --policies lru,wasm:…`.
//!
//! Every counted use of a database (docs/EVICTION.md: the replay's requests) becomes one
//! line, in the order the connection manager sees them, in the LIRS format the replay reads
//! (lines starting with `*` are comments). The request path only hashes the name (or copies
//! it, for plain names) and queues it: a bounded queue ([`QUEUE_RECORDS`]) feeds a writer
//! thread, and a full queue drops the record and counts it rather than slowing a request. The file stops growing at its size limit. Names are
//! written as keyed hashes by default, so a trace can be shared without the tenants' names
//! (the replay needs only which requests name the same database).

use std::collections::hash_map::RandomState;
use std::fs::{self, File};
use std::hash::BuildHasher;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::pool::AccessRecorder;

/// Records queued for the writer at most; past it, records are dropped (and counted).
pub const QUEUE_RECORDS: usize = 1 << 16;

/// How often the writer flushes what it wrote.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// How database names are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceNames {
    /// A 64-bit keyed hash of the name (SipHash with a key drawn at start), in hex: the same
    /// name gives the same line within one file, and the names cannot be read back.
    Hashed,
    /// The name itself (non-ASCII and control characters escaped, so one name is one line).
    Plain,
}

impl TraceNames {
    /// The name in the configuration (`trace.names`) and in the file's header.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hashed => "hashed",
            Self::Plain => "plain",
        }
    }
}

impl std::str::FromStr for TraceNames {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Self::Hashed, Self::Plain]
            .into_iter()
            .find(|names| names.as_str() == s)
            .ok_or_else(|| format!("expected \"hashed\" or \"plain\", not {s:?}"))
    }
}

/// Where and how to record.
#[derive(Debug, Clone)]
pub struct TraceOptions {
    /// The trace file; an existing file there is first moved to `FILE.previous`.
    pub path: PathBuf,
    /// The file stops growing past this many bytes (a last comment line says so).
    pub max_bytes: u64,
    /// How names are written.
    pub names: TraceNames,
}

/// Counts of a recording.
#[derive(Debug, Default)]
struct Counts {
    /// Requests written, and dropped (queue full, or the file at its limit).
    recorded: AtomicU64,
    dropped: AtomicU64,
    /// The size limit was reached (later records are dropped without being queued).
    full: AtomicBool,
    /// A drop was logged (once per recording).
    drop_logged: AtomicBool,
}

/// What the request path queues for the writer.
enum Record {
    /// A name's keyed hash (hashed on the request path: no allocation there).
    Hash(u64),
    /// A name, for plain traces.
    Name(Box<str>),
    /// Close the trace.
    Finish,
}

/// A recording in progress: the connection manager's [`AccessRecorder`], and a writer thread.
pub struct TraceRecorder {
    queue: SyncSender<Record>,
    names: TraceNames,
    key: RandomState,
    counts: Arc<Counts>,
    writer: Mutex<Option<JoinHandle<()>>>,
    path: PathBuf,
}

impl TraceRecorder {
    /// Creates the trace file (moving an existing one to `FILE.previous`), writes its header
    /// and starts the writer thread. A path that exists but is not a file (a folder, a
    /// device) is refused, and nothing is moved.
    pub fn start(options: TraceOptions) -> io::Result<Arc<Self>> {
        let path = options.path.clone();
        match fs::symlink_metadata(&path) {
            Ok(found) if found.is_file() => fs::rename(&path, previous(&path))?,
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{} exists and is not a file", path.display()),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let mut out = BufWriter::new(File::create(&path)?);
        let names = options.names.as_str();
        writeln!(
            out,
            "* polymongo request trace: one database per line, names {names}; \
             replay with `polymongo replay --trace FILE`"
        )?;
        out.flush()?;
        let (queue, records) = mpsc::sync_channel(QUEUE_RECORDS);
        let counts = Arc::new(Counts::default());
        let writer = Writer {
            out,
            written: 0,
            max_bytes: options.max_bytes,
            counts: counts.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("trace-writer".into())
            .spawn(move || writer.run(records))?;
        Ok(Arc::new(Self {
            queue,
            names: options.names,
            key: RandomState::new(),
            counts,
            writer: Mutex::new(Some(thread)),
            path,
        }))
    }

    /// Requests written to the file so far.
    pub fn recorded(&self) -> u64 {
        self.counts.recorded.load(Ordering::Relaxed)
    }

    /// Requests dropped so far: the queue was full, or the file at its size limit.
    pub fn dropped(&self) -> u64 {
        self.counts.dropped.load(Ordering::Relaxed)
    }

    /// Writes what is queued and a closing comment (the counts), and waits for the file to be
    /// flushed. Later records are dropped. Called at shutdown; harmless twice.
    pub fn finish(&self) {
        let Some(thread) = self
            .writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
        else {
            return;
        };
        if self.queue.send(Record::Finish).is_ok() && thread.join().is_err() {
            tracing::error!(file = %self.path.display(), "the trace writer panicked");
        }
    }

    fn drop_one(&self) {
        self.counts.dropped.fetch_add(1, Ordering::Relaxed);
        if !self.counts.drop_logged.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                file = %self.path.display(),
                "trace records dropped: the writer falls behind (the trace misses requests from now on; its last line counts them)"
            );
        }
    }
}

impl std::fmt::Debug for TraceRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceRecorder")
            .field("path", &self.path)
            .field("recorded", &self.recorded())
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

impl AccessRecorder for TraceRecorder {
    fn record(&self, db: &str) {
        if db.is_empty() {
            return;
        }
        if self.counts.full.load(Ordering::Relaxed) {
            self.counts.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let record = match self.names {
            TraceNames::Hashed => Record::Hash(self.key.hash_one(db)),
            TraceNames::Plain => Record::Name(Box::from(db)),
        };
        match self.queue.try_send(record) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
            Err(TrySendError::Full(_)) => self.drop_one(),
        }
    }
}

/// `FILE.previous`, beside `path`.
fn previous(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".previous");
    path.with_file_name(name)
}

/// The writer thread's state.
struct Writer {
    out: BufWriter<File>,
    written: u64,
    max_bytes: u64,
    counts: Arc<Counts>,
}

impl Writer {
    fn run(mut self, records: Receiver<Record>) {
        if let Err(e) = self.write_all(&records) {
            tracing::error!(error = %e, "writing the trace failed; recording stops");
            self.counts.full.store(true, Ordering::Relaxed);
        }
    }

    fn write_all(&mut self, records: &Receiver<Record>) -> io::Result<()> {
        loop {
            match records.recv_timeout(FLUSH_EVERY) {
                Ok(Record::Finish) => break,
                Ok(record) => self.write(&record)?,
                Err(RecvTimeoutError::Timeout) => self.out.flush()?,
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        let recorded = self.counts.recorded.load(Ordering::Relaxed);
        let dropped = self.counts.dropped.load(Ordering::Relaxed);
        writeln!(
            self.out,
            "* end of trace: {recorded} requests recorded, {dropped} dropped"
        )?;
        self.out.flush()
    }

    fn write(&mut self, record: &Record) -> io::Result<()> {
        if self.counts.full.load(Ordering::Relaxed) {
            self.counts.dropped.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        // A hash is 16 hex digits and a line break; a plain name, escaped, as long as it is.
        let plain = match record {
            Record::Hash(_) => None,
            Record::Name(name) => Some(name.escape_default().to_string()),
            Record::Finish => return Ok(()),
        };
        let length = plain.as_ref().map_or(17, |name| name.len() as u64 + 1);
        if self.written + length > self.max_bytes {
            self.counts.full.store(true, Ordering::Relaxed);
            self.counts.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                max_bytes = self.max_bytes,
                "the trace file reached its size limit; recording stops"
            );
            writeln!(
                self.out,
                "* the trace reached its size limit ({} bytes): later requests are not recorded",
                self.max_bytes
            )?;
            return self.out.flush();
        }
        match (record, plain) {
            (Record::Hash(hash), _) => writeln!(self.out, "{hash:016x}")?,
            (_, Some(name)) => writeln!(self.out, "{name}")?,
            _ => {}
        }
        self.written += length;
        self.counts.recorded.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

#[cfg(test)]
#[path = "recording_tests.rs"]
mod tests;
