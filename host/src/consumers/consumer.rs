//! One background consumer: a plugin's subscription for one tenant. It opens the change
//! stream from the stored resume token, reads batches, delivers each to the plugin's serving
//! version, and stores the token after the batch only once the plugin acknowledged it
//! (at-least-once). Failures back off exponentially and deliver the same events again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bson::{Document, RawDocumentBuf};
use mongodb::change_stream::event::ResumeToken;
use mongodb::options::{ChangeStreamOptions, FullDocumentType};
use tokio::sync::watch;

use super::board::ConsumerBoard;
use super::ConsumersConfig;
use crate::plugins::PluginRegistry;
use crate::pool::{ChangeFeed, ConsumerKey, PolyMongo};

/// How long a batch waits for further events once its first one arrived.
const LINGER: Duration = Duration::from_millis(20);

/// What a consumer consumes: fixed for its life (a plugin version that changes it makes the
/// supervisor replace the consumer).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct ConsumerSpec {
    pub key: ConsumerKey,
    pub collection: String,
    pub full_document: bool,
    pub pipeline: Vec<Document>,
}

/// What every consumer of a supervisor shares.
pub(super) struct Context {
    pub registry: Arc<PluginRegistry>,
    pub config: ConsumersConfig,
    pub board: Arc<ConsumerBoard>,
}

impl Context {
    fn manager(&self) -> &PolyMongo {
        self.registry.runtime().manager()
    }
}

/// Exponential back-off between `min` and `max`.
struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    fn new(config: &ConsumersConfig) -> Self {
        Self {
            min: config.backoff_min,
            max: config.backoff_max,
            next: config.backoff_min,
        }
    }

    /// The wait after one more failure.
    fn failed(&mut self) -> Duration {
        let wait = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        wait
    }

    fn reset(&mut self) {
        self.next = self.min;
    }
}

/// Whether the consumer was told to stop (or its supervisor is gone).
fn stopping(stop: &watch::Receiver<bool>) -> bool {
    *stop.borrow() || stop.has_changed().is_err()
}

/// Waits `wait` unless told to stop first; `false` when it should stop.
async fn sleep_unless_stopped(stop: &mut watch::Receiver<bool>, wait: Duration) -> bool {
    tokio::select! {
        _ = stop.wait_for(|s| *s) => return false,
        () = tokio::time::sleep(wait) => {}
    }
    !stopping(stop)
}

/// A batch of events read from the feed, and the token after its last event.
struct Batch {
    events: Vec<Vec<u8>>,
    token: Option<Document>,
}

impl Batch {
    fn push(&mut self, event: &RawDocumentBuf) {
        if let Ok(id) = event.get_document("_id") {
            if let Ok(doc) = Document::try_from(id) {
                self.token = Some(doc);
            }
        }
        self.events.push(event.as_bytes().to_vec());
    }
}

/// Runs the consumer until `stop` is set or its plugin is gone.
pub(super) async fn run(spec: ConsumerSpec, ctx: Arc<Context>, mut stop: watch::Receiver<bool>) {
    let key = &spec.key;
    let mut backoff = Backoff::new(&ctx.config);
    let mut feed: Option<ChangeFeed> = None;
    // An event read past a full batch, first of the next one.
    let mut pending: Option<RawDocumentBuf> = None;
    loop {
        if stopping(&stop) || ctx.registry.get(&key.plugin).is_none() {
            return;
        }
        let stream = match feed.as_mut() {
            Some(stream) => stream,
            None => match open(&spec, &ctx).await {
                Ok(opened) => {
                    ctx.board.running(key, None);
                    feed.insert(opened)
                }
                Err(error) => {
                    let wait = backoff.failed();
                    tracing::warn!(consumer = %key, %error, wait_ms = wait.as_millis() as u64, "cannot open the consumer's change stream; backing off");
                    ctx.board
                        .failed(key, &error, false, wait.as_millis() as u64);
                    if !sleep_unless_stopped(&mut stop, wait).await {
                        return;
                    }
                    continue;
                }
            },
        };
        let first = match pending.take() {
            Some(event) => Some(Ok(event)),
            None => tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                event = stream.next() => event,
            },
        };
        let first = match first {
            Some(Ok(event)) => event,
            other => {
                let error = match other {
                    Some(Err(e)) => format!("change stream failed: {e}"),
                    _ => "change stream ended".to_string(),
                };
                feed = None;
                let wait = backoff.failed();
                tracing::warn!(consumer = %key, %error, wait_ms = wait.as_millis() as u64, "consumer's change stream broke; reopening from the stored token after a back-off");
                ctx.board
                    .failed(key, &error, false, wait.as_millis() as u64);
                if !sleep_unless_stopped(&mut stop, wait).await {
                    return;
                }
                continue;
            }
        };
        let max_bytes = ctx
            .registry
            .get(&key.plugin)
            .map_or(usize::MAX, |p| p.limits().max_result_bytes);
        let mut batch = Batch {
            events: Vec::new(),
            token: None,
        };
        let mut bytes = first.as_bytes().len();
        batch.push(&first);
        let mut broken = false;
        let until = tokio::time::Instant::now() + LINGER;
        while batch.events.len() < ctx.config.max_batch as usize {
            match tokio::time::timeout_at(until, stream.next()).await {
                Ok(Some(Ok(event))) => {
                    bytes += event.as_bytes().len();
                    if bytes > max_bytes {
                        pending = Some(event);
                        break;
                    }
                    batch.push(&event);
                }
                // Deliver what came before the error; the stream reopens afterwards.
                Ok(_) => {
                    broken = true;
                    break;
                }
                Err(_) => break,
            }
        }
        if !deliver(&spec, &ctx, &batch, &mut backoff, &mut stop).await {
            return;
        }
        if let Some(token) = &batch.token {
            if let Err(e) = ctx.manager().save_resume_token(key, token).await {
                // The events are delivered; the next stored token covers them. Until then a
                // restart delivers them again (at least once).
                tracing::warn!(consumer = %key, error = %e, "cannot store the consumer's resume token");
                ctx.board
                    .running(key, Some(format!("cannot store the resume token: {e}")));
            }
        }
        if broken {
            feed = None;
            pending = None;
        }
    }
}

/// Delivers `batch` until the plugin acknowledges it; `false` when the consumer should stop
/// instead (told to, or its plugin is gone), leaving the batch unacknowledged.
async fn deliver(
    spec: &ConsumerSpec,
    ctx: &Context,
    batch: &Batch,
    backoff: &mut Backoff,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    let key = &spec.key;
    loop {
        // The serving version at each try: after a hot reload, the new one.
        let Some(plugin) = ctx.registry.get(&key.plugin) else {
            return false;
        };
        let tenant_db = match ctx.manager().tenant_db(&key.tenant) {
            Ok(db) => db,
            Err(e) => {
                tracing::error!(consumer = %key, error = %e, "the consumer's tenant has no usable database");
                return false;
            }
        };
        let outcome = ctx
            .registry
            .runtime()
            .deliver(
                &plugin,
                tenant_db,
                &key.tenant,
                &key.subscription,
                &batch.events,
            )
            .await;
        match outcome {
            Ok(()) => {
                backoff.reset();
                ctx.board
                    .delivered(key, batch.events.len(), plugin.version());
                return true;
            }
            Err(error) => {
                let wait = backoff.failed();
                tracing::warn!(consumer = %key, version = plugin.version(), kind = error.kind(), %error, wait_ms = wait.as_millis() as u64, "delivery failed; delivering the same events again after a back-off");
                ctx.board
                    .failed(key, &error.to_string(), true, wait.as_millis() as u64);
                if !sleep_unless_stopped(stop, wait).await {
                    return false;
                }
            }
        }
    }
}

/// Opens the consumer's change stream after its stored resume token (or from now, storing
/// the stream's start so that a restart loses nothing that happened since).
async fn open(spec: &ConsumerSpec, ctx: &Context) -> Result<ChangeFeed, String> {
    let manager = ctx.manager();
    let key = &spec.key;
    let stored = manager
        .load_resume_token(key)
        .await
        .map_err(|e| format!("cannot read the stored resume token: {e}"))?;
    let resume_after = stored
        .clone()
        .map(bson::from_document::<ResumeToken>)
        .transpose()
        .map_err(|e| format!("the stored resume token is invalid: {e}"))?;
    let options = ChangeStreamOptions::builder()
        .full_document(spec.full_document.then_some(FullDocumentType::UpdateLookup))
        .resume_after(resume_after)
        .batch_size(Some(ctx.config.max_batch))
        .build();
    let db = manager.tenant_db(&key.tenant).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let feed = db
        .collection::<Document>(&spec.collection)
        .watch_events(spec.pipeline.clone(), options)
        .await
        .map_err(|e| e.to_string())?;
    if stored.is_none() {
        let start = feed.resume_token().and_then(|t| bson::to_document(&t).ok());
        if let Some(start) = start {
            manager
                .save_resume_token(key, &start)
                .await
                .map_err(|e| format!("cannot store the resume token: {e}"))?;
        }
    }
    tracing::info!(consumer = %key, resumed = stored.is_some(), mode = %feed.mode(), open_ms = started.elapsed().as_millis() as u64, "consumer's change stream open");
    Ok(feed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_maximum_and_resets() {
        let mut b = Backoff::new(&ConsumersConfig {
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_millis(3000),
            ..ConsumersConfig::default()
        });
        let waits: Vec<u128> = (0..5).map(|_| b.failed().as_millis()).collect();
        assert_eq!(waits, [500, 1000, 2000, 3000, 3000]);
        b.reset();
        assert_eq!(b.failed(), Duration::from_millis(500));
    }

    #[test]
    fn a_batch_keeps_the_token_of_its_last_event() {
        let mut batch = Batch {
            events: Vec::new(),
            token: None,
        };
        for data in ["a", "b"] {
            let event = bson::rawdoc! { "_id": { "_data": data }, "operationType": "insert" };
            batch.push(&event);
        }
        assert_eq!(batch.events.len(), 2);
        assert_eq!(batch.token, Some(bson::doc! { "_data": "b" }));
    }
}
