//! The supervisor: makes the set of running consumers match the plugins' subscriptions,
//! again after every change of the registry (load, hot reload, removal).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::board::ConsumerState;
use super::consumer::{self, ConsumerSpec, Context};
use crate::pool::ConsumerKey;

/// How often the supervisor reconciles without a registry change: a consumer that ended on
/// its own is started again, and a refused one runs once its tenant is under the cap.
const RECHECK: Duration = Duration::from_secs(5);

/// A consumer task and the switch that stops it.
struct Running {
    spec: ConsumerSpec,
    stop: watch::Sender<bool>,
    handle: JoinHandle<()>,
}

/// The supervisor's loop: reconciles at start, after every registry change and every
/// [`RECHECK`], until
/// `shutdown` is set; then stops every consumer and waits for them (a delivery in flight
/// finishes first).
pub(super) async fn supervise(ctx: Arc<Context>, mut shutdown: watch::Receiver<bool>) {
    let mut changes = ctx.registry.changes();
    let mut running: BTreeMap<ConsumerKey, Running> = BTreeMap::new();
    loop {
        changes.borrow_and_update();
        reconcile(&ctx, &mut running);
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { break },
            _ = shutdown.wait_for(|s| *s) => break,
            () = tokio::time::sleep(RECHECK) => {}
        }
    }
    for r in running.values() {
        let _ = r.stop.send(true);
    }
    for (_, r) in running {
        let _ = r.handle.await;
    }
}

/// The consumers the serving plugins ask for.
fn desired(ctx: &Context) -> BTreeMap<ConsumerKey, ConsumerSpec> {
    let mut out = BTreeMap::new();
    for plugin in ctx.registry.tenant_plugins() {
        for sub in plugin.subscriptions() {
            for tenant in &sub.tenants {
                let key = ConsumerKey::new(plugin.name(), &sub.spec.name, tenant);
                out.insert(
                    key.clone(),
                    ConsumerSpec {
                        key,
                        collection: sub.spec.collection.clone(),
                        full_document: sub.spec.full_document,
                        pipeline: sub.spec.pipeline.clone(),
                    },
                );
            }
        }
    }
    out
}

/// Stops consumers no longer asked for (or asked for differently), starts the missing ones
/// within each tenant's cap, and marks the rest refused.
fn reconcile(ctx: &Arc<Context>, running: &mut BTreeMap<ConsumerKey, Running>) {
    let desired = desired(ctx);
    // Consumers whose subscription changed or went: stopped; a replacement starts only once
    // the old one has finished its delivery in flight.
    let stale: Vec<ConsumerKey> = running
        .iter()
        .filter(|(k, r)| desired.get(*k) != Some(&r.spec) || r.handle.is_finished())
        .map(|(k, _)| k.clone())
        .collect();
    let mut predecessors: HashMap<ConsumerKey, JoinHandle<()>> = HashMap::new();
    for key in stale {
        if let Some(r) = running.remove(&key) {
            let _ = r.stop.send(true);
            tracing::info!(consumer = %key, "consumer stopping (its subscription changed or its plugin went)");
            predecessors.insert(key, r.handle);
        }
    }
    let cap = ctx.config.max_per_tenant;
    let mut per_tenant: HashMap<String, u32> = HashMap::new();
    for key in running.keys() {
        *per_tenant.entry(key.tenant.clone()).or_default() += 1;
    }
    for (key, spec) in &desired {
        if running.contains_key(key) {
            continue;
        }
        let count = per_tenant.entry(key.tenant.clone()).or_default();
        if *count >= cap {
            let error = format!(
                "refused: tenant {} already has {cap} subscriptions running \
                 (limits.max_subscriptions_per_tenant); {}/{} does not run",
                key.tenant, key.plugin, key.subscription
            );
            let before = ctx.board.set_state(
                key,
                &spec.collection,
                ConsumerState::Refused,
                Some(error.clone()),
            );
            if before != Some(ConsumerState::Refused) {
                tracing::error!(consumer = %key, "{error}");
            }
            continue;
        }
        *count += 1;
        ctx.board
            .set_state(key, &spec.collection, ConsumerState::Starting, None);
        let (stop, stop_rx) = watch::channel(false);
        let predecessor = predecessors.remove(key);
        let task_ctx = ctx.clone();
        let task_spec = spec.clone();
        let handle = tokio::spawn(async move {
            if let Some(previous) = predecessor {
                let _ = previous.await;
            }
            consumer::run(task_spec, task_ctx, stop_rx).await;
        });
        tracing::info!(consumer = %key, collection = %spec.collection, "consumer started");
        running.insert(
            key.clone(),
            Running {
                spec: spec.clone(),
                stop,
                handle,
            },
        );
    }
    ctx.board.retain(|k| desired.contains_key(k));
}
