//! Host side of the `log` interface.

use super::bindings::log::{Host, Level};
use super::state::RequestState;

/// Longest message logged; the rest is cut.
pub(crate) const MAX_MESSAGE_BYTES: usize = 8 << 10;

/// `message` cut to [`MAX_MESSAGE_BYTES`] (on a character boundary, with `…`).
pub(crate) fn truncate_message(message: &mut String) {
    if message.len() > MAX_MESSAGE_BYTES {
        let mut cut = MAX_MESSAGE_BYTES;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        message.push('…');
    }
}

impl Host for RequestState {
    fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        let mut message = message;
        truncate_message(&mut message);
        // Rate-limited per plugin and tenant; the text format escapes control characters.
        if !self.admit_log_line(message.len()) {
            return Ok(());
        }
        let (plugin, tenant) = (&*self.scope.plugin, self.tenant_name());
        match level {
            Level::Trace => tracing::trace!(plugin, tenant, "{message}"),
            Level::Debug => tracing::debug!(plugin, tenant, "{message}"),
            Level::Info => tracing::info!(plugin, tenant, "{message}"),
            Level::Warn => tracing::warn!(plugin, tenant, "{message}"),
            Level::Error => tracing::error!(plugin, tenant, "{message}"),
        }
        Ok(())
    }
}
