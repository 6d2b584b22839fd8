//! The one `bindgen!` call: Rust types and traits for the `polymongo:plugin` WIT package.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "tenant-plugin",
    imports: { default: async | trappable },
    exports: { default: async },
    with: {
        "polymongo:plugin/database.db": super::host_db::DbHandle,
        "polymongo:plugin/database.cursor": super::host_db::CursorHandle,
    },
});

pub use polymongo::plugin::{database, log, types};
