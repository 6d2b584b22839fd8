//! Host side of the `streams` interface (`polymongo:plugin@0.2.0`): change streams for
//! plugins.
//!
//! A stream holds a keep-alive guard on its database's pool (the pool is watch-protected:
//! never evicted or idle-closed while it lives), a slot of the per-(plugin, database) cap
//! `limits.max_open_streams`, and a reservation of the request's host-memory budget for the
//! batch the driver buffers. All three go when the plugin drops the stream, the request ends
//! (the request's resource table is dropped then), or the stream has been open for
//! `limits.stream_lifetime_ms`: then `next` says so and the plugin continues in a new stream
//! from the old one's resume token.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bson::Document;
use mongodb::change_stream::event::ResumeToken;
use mongodb::options::{ChangeStreamOptions, FullDocumentType};
use wasmtime::component::Resource;

use super::batch::{read_batch, Buffered, Waiting};
use super::bindings::streams::{Host, HostChangeStream, WatchOptions};
use super::bindings::types::Error as WitError;
use super::convert::{invalid, to_wit};
use super::host_db::{DbHandle, HostResult};
use super::host_error::HostError;
use super::input::{decode, decode_opt};
use super::sandbox::{check_collection, check_pipeline};
use super::state::RequestState;
use crate::pool;

type WitResult<T> = Result<T, WitError>;

/// Most events one `next` call returns.
const MAX_EVENTS_PER_CALL: u32 = 10_000;
/// Events per server batch unless the plugin asks for another size (at most
/// [`MAX_EVENTS_PER_CALL`], and fewer when the host-memory budget is short).
const DEFAULT_STREAM_BATCH: u32 = 100;

/// An open change stream handed to a plugin.
pub struct StreamHandle {
    /// The feed; `None` once the stream outlived its lifetime (its pool's protection and its
    /// slot went with it).
    stream: Option<pool::ChangeFeed>,
    /// What it holds back and what the driver may buffer for it.
    buffered: Buffered,
    /// `{ "_data": ... }` of the last event handed to the plugin.
    delivered: Option<Vec<u8>>,
    /// When the host ends the stream (`limits.stream_lifetime_ms` after it opened).
    expires: Instant,
    /// The lifetime it had, for the message when it ends.
    lifetime: Duration,
    /// The resume token when the host ended it.
    final_token: Option<Vec<u8>>,
    slot: Option<StreamSlot>,
}

impl StreamHandle {
    /// The token to resume after the last event the plugin got.
    fn token(&self) -> Option<Vec<u8>> {
        let Some(stream) = &self.stream else {
            return self.final_token.clone();
        };
        // With an event held back for the next call, the driver's token is already past it:
        // resume after the last event the plugin got instead.
        if self.buffered.pending.is_some() {
            return self.delivered.clone();
        }
        stream.resume_token().as_ref().and_then(token_bytes)
    }

    /// Ends the stream because it outlived its lifetime: keeps its resume token, gives back
    /// its pool's protection, its slot and (returned) the host memory it held.
    fn expire(&mut self) -> usize {
        self.final_token = self.token();
        self.stream = None;
        self.slot = None;
        self.buffered.pending = None;
        std::mem::take(&mut self.buffered.charged)
    }

    fn expired_error(&self) -> WitError {
        WitError::LimitReached(format!(
            "the change stream ended after its lifetime of {} s (limits.stream_lifetime_ms); \
             open a new one with resume-after set to its resume-token() to continue without \
             losing events",
            self.lifetime.as_secs_f64()
        ))
    }
}

/// Open change streams per (plugin, database), shared by all requests of a runtime.
#[derive(Debug, Default)]
pub(crate) struct StreamSlots {
    open: Mutex<HashMap<(Arc<str>, String), u32>>,
}

/// One open stream's place in [`StreamSlots`]; gives it back when dropped.
pub(crate) struct StreamSlot {
    slots: Arc<StreamSlots>,
    key: (Arc<str>, String),
}

impl StreamSlots {
    /// Takes a slot for `plugin` on `database`, or says how many are allowed.
    pub(crate) fn take(
        self: &Arc<Self>,
        plugin: &Arc<str>,
        database: &str,
        max: u32,
    ) -> Result<StreamSlot, u32> {
        let key = (plugin.clone(), database.to_string());
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(key.clone()).or_insert(0);
        if *count >= max {
            return Err(max);
        }
        *count += 1;
        Ok(StreamSlot {
            slots: self.clone(),
            key,
        })
    }

    /// Streams `plugin` holds open on `database` now.
    #[cfg(test)]
    fn open(&self, plugin: &str, database: &str) -> u32 {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.iter()
            .find(|((p, d), _)| &**p == plugin && d == database)
            .map_or(0, |(_, n)| *n)
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self
            .slots
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// A resume token the plugin sent back (a document such as `{ "_data": "..." }`).
fn resume_token(doc: Document) -> WitResult<ResumeToken> {
    bson::from_document(doc).map_err(|e| invalid(format!("invalid resume token: {e}")))
}

/// A resume token as the BSON document the plugin stores.
fn token_bytes(token: &ResumeToken) -> Option<Vec<u8>> {
    let doc = bson::to_document(token).ok()?;
    let mut out = Vec::new();
    doc.to_writer(&mut out).ok()?;
    Some(out)
}

impl Host for RequestState {
    async fn watch(
        &mut self,
        db: Resource<DbHandle>,
        collection: String,
        pipeline: Vec<Vec<u8>>,
        options: WatchOptions,
    ) -> HostResult<Resource<StreamHandle>> {
        let db = self.db_of(&db)?;
        check_collection(&collection)?;
        let input = pipeline.iter().map(Vec::len).sum::<usize>()
            + options.resume_after.as_ref().map_or(0, Vec::len);
        self.input_fits(input)?;
        let rules = self.query_rules();
        let pipeline: Vec<Document> = pipeline
            .iter()
            .enumerate()
            .map(|(i, d)| decode(d, &format!("pipeline stage {i}"), rules))
            .collect::<WitResult<_>>()?;
        check_pipeline(&pipeline, db.name())?;
        let resume_after = decode_opt(&options.resume_after, "resume token", rules)?
            .map(resume_token)
            .transpose()?;
        let max = self.scope.limits.max_open_streams;
        let slot = self
            .streams
            .take(&self.scope.plugin, db.name(), max)
            .map_err(|max| {
                WitError::LimitReached(format!(
                    "plugin {} may hold at most {max} change streams open on database {} at once \
                     (limits.max_open_streams); drop streams it no longer reads",
                    self.scope.plugin,
                    db.name()
                ))
            })?;
        let requested = Some(options.batch_size.unwrap_or(DEFAULT_STREAM_BATCH));
        let (batch_size, reserved) = self.plan_cursor(requested, MAX_EVENTS_PER_CALL)?;
        let stream_options = ChangeStreamOptions::builder()
            .full_document(
                options
                    .full_document
                    .then_some(FullDocumentType::UpdateLookup),
            )
            .resume_after(resume_after)
            .batch_size(batch_size)
            .build();
        let coll = db.collection::<Document>(&collection);
        let remaining = self.deadline.saturating_duration_since(Instant::now());
        let opened = tokio::time::timeout(remaining, coll.watch_events(pipeline, stream_options));
        let stream = match opened.await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return Err(to_wit(e).into()),
            Err(_) => {
                return Err(HostError::Wit(WitError::Timeout(
                    "the request's deadline passed while opening a change stream".into(),
                )))
            }
        };
        if let Err(e) = self.recharge(0, reserved) {
            // Refused: the stream is closed here, and its reservation given back.
            self.host_bytes = self.host_bytes.saturating_sub(reserved);
            return Err(e.into());
        }
        let lifetime = self.scope.limits.stream_lifetime;
        Ok(self.table.push(StreamHandle {
            stream: Some(stream),
            buffered: Buffered::new(None, batch_size, reserved),
            delivered: None,
            expires: Instant::now() + lifetime,
            lifetime,
            final_token: None,
            slot: Some(slot),
        })?)
    }
}

impl RequestState {
    /// Ends a stream that outlived `limits.stream_lifetime_ms` (once) and says so.
    fn end_expired(&mut self, this: &Resource<StreamHandle>) -> HostResult<Vec<Vec<u8>>> {
        let handle = self.table.get_mut(this)?;
        let freed = if handle.stream.is_some() {
            handle.expire()
        } else {
            0
        };
        let error = handle.expired_error();
        self.host_bytes = self.host_bytes.saturating_sub(freed);
        Err(error.into())
    }
}

impl HostChangeStream for RequestState {
    async fn next(
        &mut self,
        this: Resource<StreamHandle>,
        max: u32,
        wait_ms: u32,
    ) -> HostResult<Vec<Vec<u8>>> {
        let max = max.clamp(1, MAX_EVENTS_PER_CALL) as usize;
        let per_call = self.scope.limits.max_result_bytes;
        let now = Instant::now();
        if now >= self.table.get(&this)?.expires {
            return self.end_expired(&this);
        }
        let handle = self.table.get_mut(&this)?;
        let Some(stream) = handle.stream.as_mut() else {
            return Err(handle.expired_error().into());
        };
        let until = (now + Duration::from_millis(u64::from(wait_ms)))
            .min(self.deadline)
            .min(handle.expires);
        let delivered = &mut handle.delivered;
        let batch = read_batch(
            stream,
            &mut handle.buffered,
            max,
            per_call,
            Waiting::Stream { until },
            |event| {
                if let Ok(id) = event.get_document("_id") {
                    *delivered = Some(id.as_bytes().to_vec());
                }
            },
        )
        .await;
        let items = self.settle(batch)?;
        // A wait the lifetime cut short says so at once rather than with an empty batch.
        if items.is_empty() && Instant::now() >= self.table.get(&this)?.expires {
            return self.end_expired(&this);
        }
        Ok(items)
    }

    fn resume_token(&mut self, this: Resource<StreamHandle>) -> wasmtime::Result<Option<Vec<u8>>> {
        Ok(self.table.get(&this)?.token())
    }

    fn drop(&mut self, this: Resource<StreamHandle>) -> wasmtime::Result<()> {
        let handle = self.table.delete(this)?;
        self.host_bytes = self.host_bytes.saturating_sub(handle.buffered.charged);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_capped_per_plugin_and_database_and_given_back_on_drop() {
        let slots = Arc::new(StreamSlots::default());
        let plugin: Arc<str> = Arc::from("p");
        let other: Arc<str> = Arc::from("q");
        let a = slots.take(&plugin, "t1", 2).expect("first slot");
        let b = slots.take(&plugin, "t1", 2).expect("second slot");
        assert_eq!(slots.take(&plugin, "t1", 2).err(), Some(2));
        // Another database and another plugin have their own count.
        let c = slots.take(&plugin, "t2", 2).expect("other database");
        let d = slots.take(&other, "t1", 2).expect("other plugin");
        assert_eq!(slots.open("p", "t1"), 2);
        drop(a);
        assert_eq!(slots.open("p", "t1"), 1);
        let e = slots
            .take(&plugin, "t1", 2)
            .expect("a slot given back is free again");
        drop((b, c, d, e));
        assert_eq!(slots.open("p", "t1"), 0);
        assert!(slots
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty());
    }

    #[test]
    fn resume_tokens_round_trip() {
        let doc = bson::doc! { "_data": "8263a1b2c3000000012b022c0100296e5a1004" };
        let token = resume_token(doc.clone()).expect("a token document");
        let bytes = token_bytes(&token).expect("encodable");
        let back = Document::from_reader(bytes.as_slice()).expect("BSON");
        assert_eq!(back, doc);
    }
}
