//! The `bindgen!` calls: Rust types and traits for the `polymongo:plugin` WIT package, one
//! module per world.

/// World `tenant-plugin`: async host imports (database, log), async `handler` export.
pub mod tenant {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "tenant-plugin",
        // Imports that never wait are plain (cheaper) synchronous host functions: `log`, and
        // those that only touch the request's resource table (taking the tenant's database,
        // opening a granted one, a handle's name, dropping handles).
        imports: {
            "polymongo:plugin/log.log": trappable,
            "polymongo:plugin/database.tenant": trappable,
            "polymongo:plugin/database.open": trappable,
            "polymongo:plugin/database.[method]db.name": trappable,
            "polymongo:plugin/database.[drop]db": trappable,
            "polymongo:plugin/database.[drop]cursor": trappable,
            default: async | trappable,
        },
        exports: { default: async },
        with: {
            "polymongo:plugin/database.db": crate::runtime::host_db::DbHandle,
            "polymongo:plugin/database.cursor": crate::runtime::host_db::CursorHandle,
        },
    });
}

/// World `scorer`: a synchronous `scoring` export, called under the connection manager's
/// lock once per eviction decision.
pub mod scorer {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "scorer",
    });
}

pub use tenant::polymongo::plugin::{database, log, types};
pub use tenant::{TenantPlugin, TenantPluginPre};
