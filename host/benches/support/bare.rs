//! The bare-wasmtime baseline shared by the runtime benchmarks: the same engine and compiled
//! component as polymongo's runtime, with a minimal store (a WASI context, nothing else), a
//! typed `log` import that does nothing, and the database imports stubbed as traps.

use polymongo::runtime::{Request, Response};
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{
    Component, ComponentExportIndex, InstancePre, Linker, ResourceTable, ResourceType,
};
use wasmtime::{Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// The WIT `log.level` enum, for the baseline's typed `log` import.
#[allow(dead_code)] // constructed by the lifting code only
#[derive(wasmtime::component::ComponentType, wasmtime::component::Lift, Clone, Copy)]
#[component(enum)]
#[repr(u8)]
enum Level {
    #[component(name = "trace")]
    Trace,
    #[component(name = "debug")]
    Debug,
    #[component(name = "info")]
    Info,
    #[component(name = "warn")]
    Warn,
    #[component(name = "error")]
    Error,
}

/// Store data of the baseline.
pub struct BareState {
    wasi: WasiCtx,
    table: ResourceTable,
}

impl WasiView for BareState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// The minimal wasmtime host for one component.
pub struct Bare {
    engine: Engine,
    pre: InstancePre<BareState>,
    handle: ComponentExportIndex,
}

impl Bare {
    /// Links `component` (compiled on `engine`) for the baseline.
    pub fn new(engine: &Engine, component: &Component) -> Self {
        let mut linker: Linker<BareState> = Linker::new(engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).expect("wasi");
        linker
            .instance("polymongo:plugin/log@0.1.0")
            .expect("log instance")
            .func_wrap("log", |_store, (_level, _message): (Level, String)| Ok(()))
            .expect("log func");
        stub_database(&mut linker, engine, component);
        let pre = linker.instantiate_pre(component).expect("instantiate_pre");
        let iface = component
            .get_export_index(None, "polymongo:plugin/handler@0.1.0")
            .expect("handler export");
        let handle = component
            .get_export_index(Some(&iface), "handle")
            .expect("handle export");
        Self {
            engine: engine.clone(),
            pre,
            handle,
        }
    }

    /// One request in a fresh instance; returns the status.
    pub async fn call(&self, request: Request) -> u16 {
        let state = BareState {
            wasi: WasiCtxBuilder::new().build(),
            table: ResourceTable::new(),
        };
        let mut store = Store::new(&self.engine, state);
        store.set_epoch_deadline(u64::MAX / 2);
        let instance = self
            .pre
            .instantiate_async(&mut store)
            .await
            .expect("instantiate");
        let func = instance
            .get_typed_func::<(Request,), (Response,)>(&mut store, &self.handle)
            .expect("typed handle");
        let (response,) = func.call_async(&mut store, (request,)).await.expect("call");
        response.status
    }
}

/// Defines the `polymongo:plugin` imports other than `log` (the database) as functions that
/// trap. (`Linker::define_unknown_imports_as_traps` would also shadow the WASI interfaces
/// that guests import at a newer patch version than wasmtime-wasi names them.)
fn stub_database(linker: &mut Linker<BareState>, engine: &Engine, component: &Component) {
    for (name, item) in component.component_type().imports(engine) {
        if !name.starts_with("polymongo:plugin/") || name.starts_with("polymongo:plugin/log@") {
            continue;
        }
        let ComponentItem::ComponentInstance(instance) = item.ty else {
            continue;
        };
        let mut stubs = linker.instance(name).expect("stub instance");
        for (export, item) in instance.exports(engine) {
            match item.ty {
                ComponentItem::ComponentFunc(_) => stubs
                    .func_new(export, |_store, _ty, _params, _results| {
                        wasmtime::bail!("the bare host has no database")
                    })
                    .expect("stub func"),
                ComponentItem::Resource(_) => stubs
                    .resource(export, ResourceType::host::<()>(), |_, _| Ok(()))
                    .expect("stub resource"),
                _ => {}
            }
        }
    }
}

/// A GET request for `tenant`.
pub fn request(tenant: &str, path: &str, query: &str) -> Request {
    Request {
        method: "GET".into(),
        path: path.into(),
        query: query.into(),
        headers: Vec::new(),
        body: Vec::new(),
        tenant: tenant.into(),
    }
}
