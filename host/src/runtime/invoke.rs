//! Running a request in a plugin: the tenant's and the plugin's concurrency slots, a fresh
//! store (or an instance made ahead), the call under the deadline and memory limit, and what
//! a failure becomes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::ResourceTable;
use wasmtime::{Store, Trap, UpdateDeadline};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::WasiCtxBuilder;

use super::bindings::tenant::exports::polymongo::plugin0_1_0::handler::{Request, Response};
use super::engine::Runtime;
use super::error::{trap_detail, InvokeError};
use super::load::Plugin;
use super::state::{MemoryLimiter, PluginScope, RequestState, OUTPUT_CAPTURE_BYTES};
use super::warm::ReadyInstance;
use crate::pool::Db;

/// What [`Runtime::invoke_timed`] measured of one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InvokeTimings {
    /// Time the request waited for the component to be instantiated in a fresh store (`None`
    /// if it took an instance made ahead, or failed before or during instantiation).
    pub instantiate: Option<Duration>,
    /// Whether the request took an instance made ahead of it (see `ready_instances`).
    pub ready: bool,
}

impl Runtime {
    /// Runs one request in a fresh instance of `plugin`, bound to `tenant`'s database (the
    /// caller resolved it from `request.tenant`, e.g. with
    /// [`PolyMongo::tenant_db`](crate::pool::PolyMongo::tenant_db)).
    pub async fn invoke(
        &self,
        plugin: &Plugin,
        tenant: Db,
        request: Request,
    ) -> Result<Response, InvokeError> {
        self.invoke_timed(plugin, tenant, request).await.0
    }

    /// [`invoke`](Self::invoke), also reporting how long instantiation took (for metrics).
    /// Behaves exactly like `invoke`; the timings are only observed.
    pub async fn invoke_timed(
        &self,
        plugin: &Plugin,
        tenant: Db,
        request: Request,
    ) -> (Result<Response, InvokeError>, InvokeTimings) {
        let mut timings = InvokeTimings::default();
        let result = self
            .invoke_inner(plugin, tenant, request, &mut timings)
            .await;
        (result, timings)
    }

    async fn invoke_inner(
        &self,
        plugin: &Plugin,
        tenant: Db,
        request: Request,
        timings: &mut InvokeTimings,
    ) -> Result<Response, InvokeError> {
        let limits = plugin.scope.limits;
        // The tenant's share first: a tenant over its share does not take a plugin slot.
        let share = limits.tenant_share();
        let _tenant_slot = plugin
            .tenant_shares
            .try_acquire(tenant.shared_name(), share)
            .ok_or(InvokeError::TenantBusy(share))?;
        let _plugin_permit = plugin
            .permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| InvokeError::Busy(limits.max_concurrent))?;
        let instance_permit = self
            .inner
            .instances
            .clone()
            .try_acquire_owned()
            .map_err(|_| InvokeError::Busy(self.inner.config.max_instances))?;
        let deadline = Instant::now() + limits.deadline;
        // The epoch callback stops guest code at the deadline; the timeout bounds the rest
        // (instantiation, host calls) with a little grace.
        let bound = limits.deadline + HOST_GRACE;

        let ready = plugin.ready.take();
        let (reserve, mut store, outcome) = match ready {
            Some(ReadyInstance {
                mut store,
                instance,
                reserve,
            }) => {
                timings.ready = true;
                store.data_mut().bind(tenant, &request.tenant, deadline);
                store.set_epoch_deadline(1);
                let call = instance
                    .polymongo_plugin_handler()
                    .call_handle(&mut store, &request);
                let outcome = tokio::time::timeout(bound, call).await;
                (Some(reserve), store, outcome)
            }
            None => {
                let mut store = self.new_store(&plugin.scope, deadline);
                store.data_mut().bind(tenant, &request.tenant, deadline);
                let run = async {
                    // Timing hook for metrics: measures instantiation only, changes nothing.
                    let started = Instant::now();
                    let instance = plugin.pre.instantiate_async(&mut store).await?;
                    timings.instantiate = Some(started.elapsed());
                    instance
                        .polymongo_plugin_handler()
                        .call_handle(&mut store, &request)
                        .await
                };
                let outcome = tokio::time::timeout(bound, run).await;
                (None, store, outcome)
            }
        };
        store.data_mut().flush_output();
        let state = store.data();
        let result = Self::outcome(plugin, &request, state, outcome);
        // What the plugin held (cursors, database handles and their leases) is released with
        // the request, whatever happens to the store; open transactions are aborted.
        store.data_mut().transactions.abort_all();
        store.data_mut().table = ResourceTable::new();
        // The store goes before the permits that account for its pooling slot: in the task
        // making the next instance if there is one (off the request's path), or here.
        let used = UsedStore {
            _store: store,
            _reserve: reserve,
            _instance: instance_permit,
        };
        if plugin.ready.worth_making() {
            self.make_ready(plugin, used);
        }
        result
    }

    fn outcome(
        plugin: &Plugin,
        request: &Request,
        state: &RequestState,
        outcome: Result<wasmtime::Result<Response>, tokio::time::error::Elapsed>,
    ) -> Result<Response, InvokeError> {
        let limits = plugin.scope.limits;
        match outcome {
            Ok(Ok(response)) => Ok(response),
            Err(_) => Err(InvokeError::Timeout(limits.deadline.as_millis() as u64)),
            Ok(Err(_)) if state.timed_out => {
                Err(InvokeError::Timeout(limits.deadline.as_millis() as u64))
            }
            Ok(Err(_)) if state.limiter.exceeded => {
                Err(InvokeError::MemoryLimit(limits.memory_bytes))
            }
            Ok(Err(e)) => {
                let detail = trap_detail(&e);
                tracing::warn!(plugin = %plugin.name, tenant = %request.tenant, error = %format!("{e:#}"), "plugin failed");
                Err(InvokeError::Trap(detail))
            }
        }
    }

    /// A fresh store for one instance of a plugin with `scope`: WASI without filesystem or
    /// network, output captured, memory limiter, and the epoch callback that stops guest
    /// code at `deadline`.
    pub(super) fn new_store(
        &self,
        scope: &Arc<PluginScope>,
        deadline: Instant,
    ) -> Store<RequestState> {
        let stdout = MemoryOutputPipe::new(OUTPUT_CAPTURE_BYTES);
        let stderr = MemoryOutputPipe::new(OUTPUT_CAPTURE_BYTES);
        let wasi = WasiCtxBuilder::new()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let state = RequestState {
            wasi,
            table: Default::default(),
            limiter: MemoryLimiter::new(scope.limits.memory_bytes),
            scope: scope.clone(),
            manager: self.inner.manager.clone(),
            tenant: None,
            tenant_name: None,
            deadline,
            timed_out: false,
            open_cursors: 0,
            result_bytes: 0,
            host_bytes: 0,
            doc_size_hint: 0,
            stdout,
            stderr,
            logs: self.inner.logs.clone(),
            log_bucket: None,
            streams: self.inner.streams.clone(),
            transactions: Default::default(),
        };
        let mut store = Store::new(&self.inner.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut ctx| {
            if Instant::now() >= ctx.data().deadline {
                ctx.data_mut().timed_out = true;
                Err(Trap::Interrupt.into())
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        store
    }

    /// Starts a task making `plugin`'s next ready instance, unless one is ready or being
    /// made, the reserve is full, or making one failed before. The task first tears down
    /// `used`, the store of the request just done (dropped here if no task starts).
    fn make_ready(&self, plugin: &Plugin, used: UsedStore) {
        let Some(claim) = plugin.ready.claim() else {
            return;
        };
        let Ok(reserve) = self.inner.ready_reserve.clone().try_acquire_owned() else {
            return;
        };
        let (this, pre, scope) = (self.clone(), plugin.pre.clone(), plugin.scope.clone());
        tokio::spawn(async move {
            drop(used);
            let limits = scope.limits;
            let mut store = this.new_store(&scope, Instant::now() + limits.deadline);
            let made = tokio::time::timeout(
                limits.deadline + HOST_GRACE,
                pre.instantiate_async(&mut store),
            )
            .await;
            store.data_mut().flush_output();
            match made {
                Ok(Ok(instance)) => claim.fill(ReadyInstance {
                    store,
                    instance,
                    reserve,
                }),
                Ok(Err(e)) => {
                    tracing::info!(plugin = %scope.plugin, error = %format!("{e:#}"), "cannot make an instance ahead of requests; its requests instantiate their own");
                    claim.fail();
                }
                Err(_) => {
                    tracing::info!(plugin = %scope.plugin, "making an instance ahead of requests timed out; its requests instantiate their own");
                    claim.fail();
                }
            }
        });
    }
}

/// The store of a finished request, with the permits that account for its pooling slot
/// (released after it, in field order).
struct UsedStore {
    _store: Store<RequestState>,
    _reserve: Option<tokio::sync::OwnedSemaphorePermit>,
    _instance: tokio::sync::OwnedSemaphorePermit,
}

/// Time host work of a request (instantiation, database calls) may run past its deadline.
pub(super) const HOST_GRACE: Duration = Duration::from_millis(250);
