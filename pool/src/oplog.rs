//! A host-side change feed for servers without change streams: tailing the server's oplog
//! (`local.oplog.rs`), as FerretDB keeps one when that capped collection exists.
//!
//! It is **weaker** than a change stream, and says so in the docs (STREAMS.md):
//! - events are built by the host from oplog entries: `insert`, `update`, `replace` and
//!   `delete` only (no `drop`, `rename` or `invalidate`), updates carry no
//!   `updateDescription`, and `fullDocument` of an update is looked up when asked (it may be
//!   newer than the change, as with `updateLookup`);
//! - it takes no pipeline (filter events in the plugin);
//! - a resume token is the entry's timestamp; once the oplog has been truncated past it the
//!   feed cannot resume and says so (`ChangeStreamHistoryLost`) instead of skipping events;
//! - where the server ends a tailable cursor that has nothing to return yet (FerretDB does),
//!   the feed re-queries every [`POLL_INTERVAL`], so an event may wait that long.
//!
//! Isolation: the feed asks the server only for entries whose namespace is exactly this
//! database's collection, and checks each entry's namespace again before building an event.

use std::time::Duration;

use bson::{doc, Bson, Document, RawDocumentBuf, Timestamp};
use mongodb::change_stream::event::ResumeToken;
use mongodb::options::{ChangeStreamOptions, CursorType, FindOneOptions, FindOptions};
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::handle::KeepAlive;
use crate::secret::Redactor;

/// How long the feed waits before asking again when the server ended its tailable cursor.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// How long one tailable `getMore` waits on the server for new entries.
const AWAIT_TIME: Duration = Duration::from_secs(1);

/// The field of a resume token made by this feed (a change stream's tokens have `_data`).
pub const OPLOG_TOKEN_FIELD: &str = "_oplogTs";

/// The server's code for a resume point that is no longer in the oplog.
const HISTORY_LOST: i32 = 286;

/// A change feed built from the oplog entries of one collection.
pub struct OplogFeed {
    oplog: mongodb::Collection<RawDocumentBuf>,
    target: mongodb::Collection<Document>,
    namespace: String,
    full_document: bool,
    batch_size: Option<u32>,
    /// The timestamp of the last entry returned (or the start position).
    last: Timestamp,
    cursor: Option<mongodb::Cursor<RawDocumentBuf>>,
    /// An entry read whose event is not yet returned (its full-document lookup was cut off).
    pending: Option<RawDocumentBuf>,
    /// When to query again after the server ended the cursor.
    reopen_at: Option<Instant>,
    redactor: Redactor,
    _guard: KeepAlive,
}

impl std::fmt::Debug for OplogFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OplogFeed")
            .field("namespace", &self.namespace)
            .field("last", &self.last)
            .finish()
    }
}

/// Whether the server keeps an oplog this feed can tail.
pub(crate) async fn has_oplog(client: &mongodb::Client, redactor: &Redactor) -> Result<bool> {
    let names = client
        .database("local")
        .list_collection_names()
        .filter(doc! { "name": "oplog.rs" })
        .await
        .map_err(|e| Error::from_driver(e, redactor))?;
    Ok(names.iter().any(|n| n == "oplog.rs"))
}

impl OplogFeed {
    /// Opens a feed of `collection`'s changes in `database`, from the token in
    /// `options.resume_after` or from now. The pool stays protected while `guard` lives.
    pub(crate) async fn open(
        database: &mongodb::Database,
        collection: &str,
        pipeline: &[Document],
        options: &ChangeStreamOptions,
        redactor: Redactor,
        guard: KeepAlive,
    ) -> Result<Self> {
        if !pipeline.is_empty() {
            return Err(Error::Unsupported(
                "the oplog change feed (pool.change_feed) takes no pipeline: watch with an empty \
                 pipeline and filter the events in the plugin"
                    .into(),
            ));
        }
        let oplog = database
            .client()
            .database("local")
            .collection::<RawDocumentBuf>("oplog.rs");
        let map = |e| Error::from_driver(e, &redactor);
        let last = match options.resume_after.as_ref() {
            Some(token) => {
                let ts = token_timestamp(token)?;
                let oldest = oplog
                    .find_one(doc! {})
                    .with_options(
                        FindOneOptions::builder()
                            .sort(doc! { "$natural": 1 })
                            .build(),
                    )
                    .await
                    .map_err(map)?;
                if let Some(oldest) = oldest.as_ref().and_then(entry_ts) {
                    if oldest > ts {
                        return Err(Error::Server {
                            code: HISTORY_LOST,
                            code_name: Some("ChangeStreamHistoryLost".into()),
                            message: format!(
                                "the oplog no longer holds the resume point ({}, {}): it was \
                                 truncated; the oplog feed cannot resume across truncation",
                                ts.time, ts.increment
                            ),
                        });
                    }
                }
                ts
            }
            None => oplog
                .find_one(doc! {})
                .with_options(
                    FindOneOptions::builder()
                        .sort(doc! { "$natural": -1 })
                        .build(),
                )
                .await
                .map_err(map)?
                .as_ref()
                .and_then(entry_ts)
                .unwrap_or(Timestamp {
                    time: 0,
                    increment: 0,
                }),
        };
        Ok(Self {
            oplog,
            target: database.collection(collection),
            namespace: format!("{}.{collection}", database.name()),
            full_document: options.full_document.is_some(),
            batch_size: options.batch_size,
            last,
            cursor: None,
            pending: None,
            reopen_at: None,
            redactor,
            _guard: guard,
        })
    }

    /// The next change (waits for one).
    ///
    /// Cancel-safe: a call dropped while it waits loses no change; what it had read is kept
    /// for the next call.
    pub async fn next(&mut self) -> Option<Result<RawDocumentBuf>> {
        loop {
            if let Some(entry) = self.pending.clone() {
                let event = self.event(&entry).await;
                self.pending = None;
                match event {
                    Ok(Some(event)) => return Some(Ok(event)),
                    Ok(None) => continue,
                    Err(e) => return Some(Err(e)),
                }
            }
            if self.cursor.is_none() {
                if let Some(at) = self.reopen_at {
                    tokio::time::sleep_until(at).await;
                    self.reopen_at = None;
                }
                let options = FindOptions::builder()
                    .cursor_type(CursorType::TailableAwait)
                    .max_await_time(AWAIT_TIME)
                    .batch_size(self.batch_size)
                    .build();
                let filter = doc! { "ns": &self.namespace, "ts": { "$gt": self.last } };
                match self.oplog.find(filter).with_options(options).await {
                    Ok(cursor) => self.cursor = Some(cursor),
                    Err(e) => {
                        self.reopen_at = Some(Instant::now() + POLL_INTERVAL);
                        return Some(Err(Error::from_driver(e, &self.redactor)));
                    }
                }
            }
            let cursor = self.cursor.as_mut()?;
            match futures_util::StreamExt::next(cursor).await {
                Some(Ok(entry)) => self.pending = Some(entry),
                Some(Err(e)) => {
                    self.cursor = None;
                    self.reopen_at = Some(Instant::now() + POLL_INTERVAL);
                    return Some(Err(Error::from_driver(e, &self.redactor)));
                }
                None => {
                    self.cursor = None;
                    self.reopen_at = Some(Instant::now() + POLL_INTERVAL);
                }
            }
        }
    }

    /// The token to resume after the last change returned (or the feed's start).
    pub fn resume_token(&self) -> Option<ResumeToken> {
        timestamp_token(self.last)
    }

    /// The change event for `entry`, or `None` for an entry of another kind (commands, no-ops)
    /// or another namespace. Advances the feed's position past `entry`.
    async fn event(&mut self, entry: &RawDocumentBuf) -> Result<Option<RawDocumentBuf>> {
        let entry: Document = entry
            .to_document()
            .map_err(|e| Error::Driver(format!("unreadable oplog entry: {e}")))?;
        let Some(ts) = entry.get_timestamp("ts").ok() else {
            return Err(Error::Driver("an oplog entry without a timestamp".into()));
        };
        if entry.get_str("ns").ok() != Some(self.namespace.as_str()) {
            self.last = ts;
            return Ok(None);
        }
        let op = entry.get_str("op").unwrap_or_default();
        let body = entry.get_document("o").cloned().unwrap_or_default();
        let (kind, key, full) = match op {
            "i" => {
                let key = doc! { "_id": body.get("_id").cloned().unwrap_or(Bson::Null) };
                ("insert", key, Some(body))
            }
            "d" => ("delete", body, None),
            "u" => {
                let key = entry.get_document("o2").cloned().unwrap_or_default();
                // An update holds operators (`$set`, `$v`, `diff`, ...), a replacement does not.
                let replace = !body.keys().any(|k| k.starts_with('$') || k == "diff");
                let full = if replace {
                    let mut doc = body;
                    if !doc.contains_key("_id") {
                        if let Some(id) = key.get("_id") {
                            doc.insert("_id", id.clone());
                        }
                    }
                    Some(doc)
                } else if self.full_document {
                    self.target
                        .find_one(key.clone())
                        .await
                        .map_err(|e| Error::from_driver(e, &self.redactor))?
                } else {
                    None
                };
                (if replace { "replace" } else { "update" }, key, full)
            }
            _ => {
                self.last = ts;
                return Ok(None);
            }
        };
        let (db, coll) = self
            .namespace
            .split_once('.')
            .unwrap_or((self.namespace.as_str(), ""));
        let mut event = doc! {
            "_id": { OPLOG_TOKEN_FIELD: ts },
            "operationType": kind,
            "clusterTime": ts,
            "ns": { "db": db, "coll": coll },
            "documentKey": key,
        };
        if let Ok(wall) = entry.get_datetime("wall") {
            event.insert("wallTime", *wall);
        }
        if let Some(full) = full {
            event.insert("fullDocument", full);
        }
        let raw = RawDocumentBuf::from_document(&event)
            .map_err(|e| Error::Driver(format!("could not encode a change event: {e}")))?;
        self.last = ts;
        Ok(Some(raw))
    }
}

/// The timestamp of an oplog entry.
fn entry_ts(entry: &RawDocumentBuf) -> Option<Timestamp> {
    entry.get_timestamp("ts").ok()
}

/// The resume token of the feed at `ts`.
fn timestamp_token(ts: Timestamp) -> Option<ResumeToken> {
    bson::from_bson(Bson::Document(doc! { OPLOG_TOKEN_FIELD: ts })).ok()
}

/// The oplog position in a token this feed made; a change stream's token is refused.
fn token_timestamp(token: &ResumeToken) -> Result<Timestamp> {
    let invalid = || {
        Error::InvalidArgument(format!(
            "this resume token was not made by the oplog change feed (it has no \
             {OPLOG_TOKEN_FIELD:?} timestamp); a change stream's token cannot resume an oplog feed"
        ))
    };
    match bson::to_bson(token) {
        Ok(Bson::Document(doc)) => doc.get_timestamp(OPLOG_TOKEN_FIELD).map_err(|_| invalid()),
        _ => Err(invalid()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_through_a_timestamp() {
        let ts = Timestamp {
            time: 1_796_566_229,
            increment: 15,
        };
        let token = timestamp_token(ts).expect("a token");
        assert_eq!(token_timestamp(&token).expect("a timestamp"), ts);
    }

    #[test]
    fn a_change_stream_token_is_refused_with_a_clear_error() {
        let token: ResumeToken =
            bson::from_bson(Bson::Document(doc! { "_data": "8263" })).expect("a token");
        let err = token_timestamp(&token).expect_err("not an oplog token");
        assert!(err.to_string().contains("oplog change feed"), "{err}");
    }
}
