//! One batching loop for the two ways a plugin reads documents in batches: `cursor.next-batch`
//! and `change-stream.next`. Both return at most `max` documents and at most the per-call byte
//! cap, hold back a document that does not fit for the next call, and re-size what the
//! request's host-memory budget holds for the batch the driver buffers.

use std::future::Future;
use std::time::{Duration, Instant};

use bson::RawDocumentBuf;

use super::bindings::types::Error as WitError;
use super::convert::to_wit;
use super::host_error::HostError;
use super::input::{batch_bytes, INITIAL_DOC_SIZE_HINT};
use super::state::RequestState;
use crate::pool;

/// Something that yields the server's documents one at a time.
pub(crate) trait DocSource {
    /// The next document, `None` at the end.
    fn next_doc(&mut self) -> impl Future<Output = Option<pool::Result<RawDocumentBuf>>> + Send;
}

impl DocSource for pool::Cursor<RawDocumentBuf> {
    fn next_doc(&mut self) -> impl Future<Output = Option<pool::Result<RawDocumentBuf>>> + Send {
        self.next()
    }
}

impl DocSource for pool::ChangeFeed {
    fn next_doc(&mut self) -> impl Future<Output = Option<pool::Result<RawDocumentBuf>>> + Send {
        self.next()
    }
}

/// A source's read-ahead state: what it holds back and what the driver may buffer for it.
pub(crate) struct Buffered {
    /// A document read but not returned because the call's byte cap was full.
    pub pending: Option<RawDocumentBuf>,
    /// Documents per server batch.
    pub batch_size: u32,
    /// The largest document read so far.
    pub max_doc: usize,
    /// Bytes of the request's host-memory budget it holds.
    pub charged: usize,
}

impl Buffered {
    /// A source that holds `charged` bytes of the budget and has read nothing yet (or only
    /// `pending`).
    pub(crate) fn new(pending: Option<RawDocumentBuf>, batch_size: u32, charged: usize) -> Self {
        Buffered {
            max_doc: pending.as_ref().map_or(0, |d| d.as_bytes().len()),
            pending,
            batch_size,
            charged,
        }
    }
}

/// How a batch waits for documents and ends.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Waiting {
    /// A cursor: every read may wait until the request's deadline, and passing it is a
    /// `timeout` error; a read error is returned at once; a document over the byte cap on its
    /// own is an error and is skipped.
    Cursor {
        /// The request's deadline.
        deadline: Instant,
    },
    /// A change stream: the first read waits until `until`, later reads take only what has
    /// arrived; a read error after the first event ends the batch (the next call meets it);
    /// an event over the byte cap on its own is an error and stays for the next call.
    Stream {
        /// When to stop waiting for the first event.
        until: Instant,
    },
}

impl Waiting {
    /// How long the next read may wait, with `read` documents in the batch already.
    fn wait(self, read: usize) -> Duration {
        match self {
            Waiting::Cursor { deadline } => deadline.saturating_duration_since(Instant::now()),
            Waiting::Stream { until } if read == 0 => {
                until.saturating_duration_since(Instant::now())
            }
            Waiting::Stream { .. } => Duration::ZERO,
        }
    }
}

/// What one call read.
pub(crate) struct Batch {
    /// The documents, as the server's bytes.
    pub items: Vec<Vec<u8>>,
    /// Their total size.
    pub bytes: usize,
    /// Why the call failed, if it did (the items are then not returned).
    pub outcome: Result<(), WitError>,
    /// The budget bytes the source held before the call, and holds now.
    pub charge: (usize, usize),
}

/// Reads up to `max` documents and at most `per_call` bytes from `source`; `on_item` sees
/// each document returned.
pub(crate) async fn read_batch<S: DocSource>(
    source: &mut S,
    buffered: &mut Buffered,
    max: usize,
    per_call: usize,
    waiting: Waiting,
    mut on_item: impl FnMut(&RawDocumentBuf),
) -> Batch {
    let mut items: Vec<Vec<u8>> = Vec::new();
    let mut bytes = 0usize;
    let outcome: Result<(), WitError> = async {
        while items.len() < max {
            let doc = match buffered.pending.take() {
                Some(doc) => doc,
                None => {
                    match tokio::time::timeout(waiting.wait(items.len()), source.next_doc()).await {
                        Err(_) => match waiting {
                            Waiting::Cursor { .. } => {
                                return Err(WitError::Timeout(
                                    "the request's deadline passed while reading a cursor".into(),
                                ))
                            }
                            Waiting::Stream { .. } => break,
                        },
                        Ok(None) => break,
                        Ok(Some(Err(e))) => match waiting {
                            Waiting::Stream { .. } if !items.is_empty() => break,
                            _ => return Err(to_wit(e)),
                        },
                        Ok(Some(Ok(doc))) => doc,
                    }
                }
            };
            let size = doc.as_bytes().len();
            buffered.max_doc = buffered.max_doc.max(size);
            if bytes + size > per_call {
                let alone = items.is_empty();
                if !alone || matches!(waiting, Waiting::Stream { .. }) {
                    // Kept for the next call.
                    buffered.pending = Some(doc);
                }
                if alone {
                    return Err(WitError::TooLarge(per_call as u64));
                }
                break;
            }
            bytes += size;
            on_item(&doc);
            items.push(doc.into_bytes());
        }
        Ok(())
    }
    .await;
    // What the driver may now buffer for this source: a batch of documents as large as the
    // largest seen (the server's bytes, held until the plugin reads them).
    let old = buffered.charged;
    let new = batch_bytes(
        buffered.batch_size,
        buffered.max_doc.max(INITIAL_DOC_SIZE_HINT),
    )
    .max(old);
    buffered.charged = new;
    Batch {
        items,
        bytes,
        outcome,
        charge: (old, new),
    }
}

impl RequestState {
    /// Settles a batch against the request's budgets: its failure, the new reservation for
    /// what the driver buffers, and its bytes against the result caps.
    pub(crate) fn settle(&mut self, batch: Batch) -> Result<Vec<Vec<u8>>, HostError> {
        batch.outcome?;
        let (old, new) = batch.charge;
        self.recharge(old, new)?;
        self.charge(batch.bytes)?;
        Ok(batch.items)
    }
}
