//! Change streams: [`Collection::watch`](crate::Collection::watch) returns a [`ChangeStream`].

use std::collections::VecDeque;
use std::fmt;

use bson::Document;

use crate::codec::{decode_doc, encode_doc};
use crate::raw::polymongo::plugin0_1_0::database as wit_db;
use crate::raw::polymongo::plugin0_2_0::streams as wit;
use crate::Result;

/// How long (ms) the [`ChangeStream`] iterator waits for the next event before it ends,
/// unless [`ChangeStream::wait_ms`] sets another time.
pub const DEFAULT_WAIT_MS: u32 = 1000;

/// Events the iterator asks the host for per call.
const ITER_BATCH: u32 = 100;

/// Options of [`Collection::watch`](crate::Collection::watch).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WatchOptions {
    full_document: bool,
    resume_after: Option<Document>,
    batch_size: Option<u32>,
}

impl WatchOptions {
    /// Default options: no full document on updates, start now, the host's batch size.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add the whole current document to update events (`fullDocument: "updateLookup"`).
    pub fn full_document(mut self, yes: bool) -> Self {
        self.full_document = yes;
        self
    }

    /// Start after this resume token (from [`ChangeStream::resume_token`] or an event's
    /// `_id`), e.g. one stored in an earlier request: no later event is lost.
    pub fn resume_after(mut self, token: Document) -> Self {
        self.resume_after = Some(token);
        self
    }

    /// Events per server batch.
    pub fn batch_size(mut self, n: u32) -> Self {
        self.batch_size = Some(n);
        self
    }
}

/// An open change stream. Each event is the server's change event as a [`Document`]
/// (`operationType`, `documentKey`, `fullDocument`, and `_id`, its resume token).
///
/// As an iterator (`Item = Result<Document>`) it ends when no event arrives within
/// [`wait_ms`](Self::wait_ms) (the stream stays usable: iterate again to wait more). Dropping
/// it closes the stream at once; the host closes every stream when the request ends.
pub struct ChangeStream {
    raw: wit::ChangeStream,
    buffer: VecDeque<Document>,
    /// `_id` of the last event handed out by the iterator (the host's token may be past the
    /// buffered ones).
    last_yielded: Option<Document>,
    wait_ms: u32,
}

impl fmt::Debug for ChangeStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChangeStream")
            .field("handle", &self.raw.handle())
            .field("buffered", &self.buffer.len())
            .field("wait_ms", &self.wait_ms)
            .finish()
    }
}

impl ChangeStream {
    pub(crate) fn open(
        db: &wit_db::Db,
        collection: &str,
        pipeline: Vec<Document>,
        options: WatchOptions,
    ) -> Result<Self> {
        let stages = pipeline
            .iter()
            .map(encode_doc)
            .collect::<Result<Vec<_>>>()?;
        let raw = wit::watch(
            db,
            collection,
            &stages,
            &wit::WatchOptions {
                full_document: options.full_document,
                resume_after: options.resume_after.as_ref().map(encode_doc).transpose()?,
                batch_size: options.batch_size,
            },
        )?;
        Ok(Self::from_raw(raw))
    }

    /// Wraps a raw change-stream handle.
    pub fn from_raw(raw: wit::ChangeStream) -> Self {
        ChangeStream {
            raw,
            buffer: VecDeque::new(),
            last_yielded: None,
            wait_ms: DEFAULT_WAIT_MS,
        }
    }

    /// How long the iterator waits for an event before it ends (bounded by the request's
    /// deadline).
    pub fn wait_ms(mut self, ms: u32) -> Self {
        self.wait_ms = ms;
        self
    }

    /// Up to `max` further events (first those the iterator buffered); waits up to `wait_ms`
    /// for the first. An empty list means none arrived in time.
    pub fn next_batch(&mut self, max: u32, wait_ms: u32) -> Result<Vec<Document>> {
        let events: Vec<Document> = if self.buffer.is_empty() {
            self.raw
                .next(max, wait_ms)?
                .iter()
                .map(|bytes| decode_doc(bytes))
                .collect::<Result<_>>()?
        } else {
            let n = self.buffer.len().min(max as usize);
            self.buffer.drain(..n).collect()
        };
        if let Some(id) = events.last().and_then(|e| e.get_document("_id").ok()) {
            self.last_yielded = Some(id.clone());
        }
        Ok(events)
    }

    /// The token to resume after the last event this stream handed out: store it, and pass
    /// it to [`WatchOptions::resume_after`] later to continue without losing an event.
    pub fn resume_token(&self) -> Result<Option<Document>> {
        if !self.buffer.is_empty() {
            return Ok(self.last_yielded.clone());
        }
        self.raw
            .resume_token()
            .map(|bytes| decode_doc(&bytes))
            .transpose()
    }

    /// The raw handle, for calls that bypass the SDK.
    pub fn raw(&self) -> &wit::ChangeStream {
        &self.raw
    }
}

impl Iterator for ChangeStream {
    type Item = Result<Document>;

    fn next(&mut self) -> Option<Result<Document>> {
        if self.buffer.is_empty() {
            match self.raw.next(ITER_BATCH, self.wait_ms) {
                Ok(batch) => {
                    for bytes in batch {
                        match decode_doc(&bytes) {
                            Ok(doc) => self.buffer.push_back(doc),
                            Err(e) => return Some(Err(e)),
                        }
                    }
                }
                Err(e) => return Some(Err(e.into())),
            }
        }
        let event = self.buffer.pop_front()?;
        if let Ok(id) = event.get_document("_id") {
            self.last_yielded = Some(id.clone());
        }
        Some(Ok(event))
    }
}
