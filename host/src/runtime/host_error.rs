//! The error of host functions that return a WIT `result<_, error>`: either the WIT `error`
//! the plugin receives, or a trap that ends the instance. `bindgen!`'s `trappable_error_type`
//! turns it into one or the other (through `types::Host::convert_error`), so host functions
//! use `?` on both kinds of failure.

use wasmtime::component::ResourceTableError;

use super::bindings::types::{Error as WitError, Host as TypesHost};
use super::state::RequestState;

/// A failure of a host function: a WIT error for the plugin, or a trap.
#[derive(Debug)]
pub enum HostError {
    /// Returned to the plugin as the WIT `error` variant.
    Wit(WitError),
    /// Ends the instance (a bad resource handle, a missing tenant binding, ...).
    Trap(wasmtime::Error),
}

impl From<WitError> for HostError {
    fn from(e: WitError) -> Self {
        HostError::Wit(e)
    }
}

impl From<wasmtime::Error> for HostError {
    fn from(e: wasmtime::Error) -> Self {
        HostError::Trap(e)
    }
}

impl From<ResourceTableError> for HostError {
    fn from(e: ResourceTableError) -> Self {
        HostError::Trap(e.into())
    }
}

impl TypesHost for RequestState {
    fn convert_error(&mut self, err: HostError) -> wasmtime::Result<WitError> {
        match err {
            HostError::Wit(e) => Ok(e),
            HostError::Trap(e) => Err(e),
        }
    }
}
