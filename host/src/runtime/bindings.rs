//! The `bindgen!` calls: Rust types and traits for the `polymongo:plugin` WIT package, one
//! module per world.

/// World `tenant-plugin@0.2.0` (which includes `tenant-plugin@0.1.0`, so components built
/// against 0.1.0 link too): async host imports (database, streams, transactions, log), async `handler` export.
pub mod tenant {
    wasmtime::component::bindgen!({
        path: ["../wit", "../wit/v0.2"],
        world: "polymongo:plugin/tenant-plugin@0.2.0",
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
            "polymongo:plugin/streams.[method]change-stream.resume-token": trappable,
            "polymongo:plugin/streams.[drop]change-stream": trappable,
            "polymongo:plugin/transactions.[drop]transaction": trappable,
            default: async | trappable,
        },
        exports: { default: async },
        // Host functions returning `result<_, error>` return `Result<_, HostError>`: a WIT
        // error for the plugin, or a trap (see `host_error`).
        trappable_error_type: {
            "polymongo:plugin/types.error" => crate::runtime::host_error::HostError,
        },
        with: {
            "polymongo:plugin/database.db": crate::runtime::host_db::DbHandle,
            "polymongo:plugin/database.cursor": crate::runtime::host_db::CursorHandle,
            "polymongo:plugin/streams.change-stream": crate::runtime::streams::StreamHandle,
            "polymongo:plugin/transactions.transaction": crate::runtime::transactions::TransactionHandle,
        },
    });
}

/// World `tenant-subscriber@0.2.0`: `tenant-plugin@0.2.0` plus the `subscriber` export. Only
/// its export is used (a component of this world also fits `tenant-plugin`, whose bindings
/// link the imports); the imported interfaces are those of [`tenant`].
pub mod subscriber {
    wasmtime::component::bindgen!({
        path: ["../wit", "../wit/v0.2"],
        world: "polymongo:plugin/tenant-subscriber@0.2.0",
        exports: { default: async },
        with: {
            "polymongo:plugin/types@0.1.0": super::tenant::polymongo::plugin0_1_0::types,
            "polymongo:plugin/database@0.1.0": super::tenant::polymongo::plugin0_1_0::database,
            "polymongo:plugin/log@0.1.0": super::tenant::polymongo::plugin0_1_0::log,
            "polymongo:plugin/streams@0.2.0": super::tenant::polymongo::plugin0_2_0::streams,
            "polymongo:plugin/transactions@0.2.0": super::tenant::polymongo::plugin0_2_0::transactions,
        },
    });
}

/// World `scorer`: a synchronous `scoring` export, called under the connection manager's
/// lock once per eviction decision (and with no pools to deliver events ahead of one).
pub mod scorer {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "scorer",
    });
}

pub use subscriber::TenantSubscriberPre;
pub use tenant::polymongo::plugin0_1_0::{database, log, types};
pub use tenant::polymongo::plugin0_2_0::{streams, transactions};
pub use tenant::{TenantPlugin, TenantPluginPre};

impl TenantPlugin {
    /// The `handler@0.1.0` export (the same in both worlds): the name the runtime calls it by,
    /// whichever package versions the bindings were generated from.
    pub fn polymongo_plugin_handler(
        &self,
    ) -> &tenant::exports::polymongo::plugin0_1_0::handler::Guest {
        self.polymongo_plugin0_1_0_handler()
    }
}
