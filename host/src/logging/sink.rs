//! A log sink that never blocks the thread that logs: formatted lines go into a queue bounded
//! in lines and in bytes that one thread writes out; when the queue is full (the output is not
//! being read, or is slower than the logging), lines are dropped and counted.

use std::io::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// Lines dropped by every sink of this process because their queue was full.
static DROPPED_LINES: AtomicU64 = AtomicU64::new(0);

/// Log lines this process dropped because the log output did not keep up (for `/metrics`).
pub fn dropped_lines() -> u64 {
    DROPPED_LINES.load(Ordering::Relaxed)
}

/// How long [`SinkGuard`] waits at exit for queued lines to be written.
const FLUSH_AT_EXIT: Duration = Duration::from_secs(1);

enum Message {
    Line(Vec<u8>),
    Flush(SyncSender<()>),
}

/// The writer side: a `MakeWriter` for `tracing_subscriber::fmt` whose writes only queue.
#[derive(Clone)]
pub struct NonBlockingSink {
    queue: SyncSender<Message>,
    dropped: Arc<AtomicU64>,
    /// Bytes of the lines queued now, and the most there may be.
    queued_bytes: Arc<AtomicUsize>,
    max_bytes: usize,
}

impl std::fmt::Debug for NonBlockingSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NonBlockingSink").finish_non_exhaustive()
    }
}

/// Keeps the sink's writer thread; when dropped (at exit), waits a little for queued lines to
/// be written.
#[derive(Debug)]
pub struct SinkGuard {
    sink: NonBlockingSink,
}

impl Drop for SinkGuard {
    fn drop(&mut self) {
        let (done, written) = sync_channel(1);
        if self.sink.queue.try_send(Message::Flush(done)).is_ok() {
            let _ = written.recv_timeout(FLUSH_AT_EXIT);
        }
    }
}

impl NonBlockingSink {
    /// Starts a thread writing to `output`, behind a queue of at most `lines` lines (at
    /// least one) and `max_bytes` bytes (a longer line is always dropped). If the thread
    /// cannot start, every line is dropped.
    pub fn spawn(
        output: impl Write + Send + 'static,
        lines: usize,
        max_bytes: usize,
    ) -> (Self, SinkGuard) {
        let (queue, received) = sync_channel(lines.max(1));
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        let written = queued_bytes.clone();
        let spawned = std::thread::Builder::new()
            .name("polymongo-log".into())
            .spawn(move || write_lines(output, received, &written));
        if let Err(e) = spawned {
            // Nothing to log it to: say it once, directly.
            let _ = writeln!(
                std::io::stderr(),
                "polymongo: cannot start the log writer: {e}"
            );
        }
        let sink = Self {
            queue,
            dropped: Arc::new(AtomicU64::new(0)),
            queued_bytes,
            max_bytes,
        };
        (sink.clone(), SinkGuard { sink })
    }

    /// Lines this sink dropped.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

fn write_lines(mut output: impl Write, lines: Receiver<Message>, queued_bytes: &AtomicUsize) {
    while let Ok(message) = lines.recv() {
        match message {
            Message::Line(line) => {
                // A failed write has nowhere to be reported: the line is lost.
                let _ = output.write_all(&line);
                queued_bytes.fetch_sub(line.len(), Ordering::Relaxed);
            }
            Message::Flush(done) => {
                let _ = output.flush();
                let _ = done.send(());
            }
        }
    }
}

/// One event's writer: tracing's formatter writes each event with one `write_all`.
#[derive(Debug)]
pub struct QueueWriter<'a> {
    sink: &'a NonBlockingSink,
}

impl Write for QueueWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let sink = self.sink;
        let reserved = sink
            .queued_bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |queued| {
                (queued + buf.len() <= sink.max_bytes).then_some(queued + buf.len())
            })
            .is_ok();
        let queued = reserved
            && match sink.queue.try_send(Message::Line(buf.to_vec())) {
                Ok(()) => true,
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                    sink.queued_bytes.fetch_sub(buf.len(), Ordering::Relaxed);
                    false
                }
            };
        if !queued {
            sink.dropped.fetch_add(1, Ordering::Relaxed);
            DROPPED_LINES.fetch_add(1, Ordering::Relaxed);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for NonBlockingSink {
    type Writer = QueueWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        QueueWriter { sink: self }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// An output that blocks every write until it is released, like a pipe nobody reads.
    #[derive(Clone)]
    struct Stuck {
        release: Arc<Mutex<Option<Receiver<()>>>>,
        written: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for Stuck {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if let Some(release) = self.release.lock().unwrap().take() {
                let _ = release.recv();
            }
            self.written.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stuck_output_drops_and_counts_lines_instead_of_blocking() {
        let (open, release) = sync_channel(1);
        let output = Stuck {
            release: Arc::new(Mutex::new(Some(release))),
            written: Arc::default(),
        };
        let written = output.written.clone();
        let (sink, guard) = NonBlockingSink::spawn(output, 4, 1 << 20);
        for i in 0..100 {
            // Would block forever on the stuck output if the write were not queued.
            sink.make_writer()
                .write_all(format!("line {i}\n").as_bytes())
                .unwrap();
        }
        // The writer thread holds at most one line, the queue four: the rest were dropped.
        assert!(sink.dropped() >= 95, "dropped {}", sink.dropped());
        assert!(dropped_lines() >= sink.dropped());
        open.send(()).unwrap();
        drop(guard);
        let expected = 100 - sink.dropped() as usize;
        // A failure guard, not a timing assertion: the queued lines are written once released.
        let give_up = std::time::Instant::now() + Duration::from_secs(60);
        let text = loop {
            let text = String::from_utf8(written.lock().unwrap().clone()).unwrap();
            if text.lines().count() >= expected || std::time::Instant::now() > give_up {
                break text;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let kept: Vec<&str> = text.lines().collect();
        assert_eq!(kept.len(), expected, "{text}");
        assert_eq!(kept[0], "line 0", "the oldest lines are kept, in order");
    }

    #[test]
    fn the_queue_is_bounded_in_bytes_too() {
        let (open, release) = sync_channel(1);
        let output = Stuck {
            release: Arc::new(Mutex::new(Some(release))),
            written: Arc::default(),
        };
        let (sink, _guard) = NonBlockingSink::spawn(output, 1000, 100);
        let mut writer = sink.make_writer();
        writer.write_all(&[b'a'; 60]).unwrap();
        writer.write_all(&[b'b'; 60]).unwrap();
        writer.write_all(&[b'c'; 101]).unwrap();
        // 60 bytes fit; the next 60 do not while the first are unwritten; 101 never do.
        assert_eq!(sink.dropped(), 2);
        open.send(()).unwrap();
    }
}
