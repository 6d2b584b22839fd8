//! What the host checks and counts of a plugin's database calls before it runs them: the
//! plugin-sent BSON (layout, nesting depth, server-side JavaScript), the request's host-memory
//! budget, and the time the database server may spend (`maxTimeMS`).

use std::time::{Duration, Instant};

use bson::Document;

use super::bindings::types::Error as WitError;
use super::bson_scan::{self, ScanError};
use super::state::RequestState;

type WitResult<T> = Result<T, WitError>;

/// How a plugin-sent document is checked before it is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InputRules {
    /// Deepest nesting accepted.
    pub max_depth: u32,
    /// Whether server-side JavaScript may appear.
    pub allow_server_js: bool,
}

/// Decodes one BSON document sent by the plugin under `rules`. Never recurses before the depth
/// is known to be within the ceiling, never panics, whatever the bytes.
pub(crate) fn decode(bytes: &[u8], what: &str, rules: InputRules) -> WitResult<Document> {
    let shape = bson_scan::scan(bytes, rules.max_depth).map_err(|e| match e {
        ScanError::Malformed(why) => WitError::InvalidArgument(format!(
            "malformed BSON {what}: {why} ({} bytes given)",
            bytes.len()
        )),
        ScanError::TooDeep(limit) => WitError::InvalidArgument(format!(
            "BSON {what} is nested too deeply: at most {limit} levels of documents and arrays"
        )),
    })?;
    if shape.server_js && !rules.allow_server_js {
        return Err(WitError::Denied(format!(
            "the {what} uses server-side JavaScript ($where, $function, $accumulator or a code value); \
             the plugin's manifest must set allow_server_side_js = true"
        )));
    }
    // Element by element from the raw bytes, without serde: on every call's path, and about
    // half the cost of `Document::from_reader` (146 vs 330 ns for an `_id` filter).
    bson::RawDocument::from_bytes(bytes)
        .and_then(Document::try_from)
        .map_err(|e| WitError::InvalidArgument(format!("malformed BSON {what}: {e}")))
}

/// [`decode`] for an optional document.
pub(crate) fn decode_opt(
    bytes: &Option<Vec<u8>>,
    what: &str,
    rules: InputRules,
) -> WitResult<Option<Document>> {
    bytes.as_deref().map(|b| decode(b, what, rules)).transpose()
}

/// The `maxTimeMS` of a database command sent now for a request ending at `deadline`: the time
/// left, at least 1 ms (0 would mean "no limit" to the server).
pub(crate) fn max_time(deadline: Instant) -> Duration {
    deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1))
}

/// Host copies one plugin-sent byte becomes while a call runs: the bytes copied out of the
/// guest, the decoded document, and the command the driver encodes from it.
const INPUT_COPIES: usize = 3;

/// Document size assumed for a request's first cursor, before any document was read.
pub(crate) const INITIAL_DOC_SIZE_HINT: usize = 1 << 10;

/// The most bytes one server batch may hold (MongoDB's 16 MiB reply limit plus headroom).
pub(crate) const SERVER_BATCH_BYTES: usize = (16 << 20) + (16 << 10);

/// Documents per batch of a cursor the plugin gave no batch size (the driver's first-batch
/// default).
pub(crate) const DEFAULT_BATCH_DOCS: u32 = 101;

impl RequestState {
    /// Rules for filters, updates, sorts, projections, index keys and pipeline stages.
    pub(crate) fn query_rules(&self) -> InputRules {
        InputRules {
            max_depth: self.scope.limits.max_query_depth,
            allow_server_js: self.scope.allow_server_side_js,
        }
    }

    /// Rules for documents the plugin stores: their JavaScript values are data, not code.
    pub(crate) fn document_rules(&self) -> InputRules {
        InputRules {
            max_depth: self.scope.limits.max_document_depth,
            allow_server_js: true,
        }
    }

    /// The error for a request past its host-memory budget.
    pub(crate) fn over_budget(&self) -> WitError {
        WitError::TooLarge(self.scope.limits.host_memory_bytes as u64)
    }

    /// Checks that one call's `bytes` of plugin input (and the copies the host makes of them)
    /// fit in what is left of the request's host-memory budget.
    pub(crate) fn input_fits(&self, bytes: usize) -> WitResult<()> {
        let needed = bytes.saturating_mul(INPUT_COPIES);
        if self.host_bytes.saturating_add(needed) > self.scope.limits.host_memory_bytes {
            return Err(self.over_budget());
        }
        Ok(())
    }

    /// The batch size of a new cursor and the bytes it reserves: as many documents of the
    /// largest size seen so far as fit in what is left of the budget (at most what the plugin
    /// asked for), so that the driver's buffered batch stays within the budget.
    pub(crate) fn plan_cursor(
        &self,
        requested: Option<u32>,
        max_docs: u32,
    ) -> WitResult<(u32, usize)> {
        let left = self
            .scope
            .limits
            .host_memory_bytes
            .saturating_sub(self.host_bytes);
        let hint = self.doc_size_hint.max(INITIAL_DOC_SIZE_HINT);
        let fit = u32::try_from(left / hint).unwrap_or(u32::MAX);
        if fit == 0 {
            return Err(self.over_budget());
        }
        let batch = requested
            .unwrap_or(DEFAULT_BATCH_DOCS)
            .clamp(1, max_docs)
            .min(fit);
        Ok((batch, batch_bytes(batch, hint)))
    }

    /// Moves a cursor's reservation from `old` to `new` bytes; an error (with the new
    /// reservation kept, since the driver holds the batch already) when the request is now
    /// past its budget.
    pub(crate) fn recharge(&mut self, old: usize, new: usize) -> WitResult<()> {
        self.host_bytes = self.host_bytes.saturating_sub(old).saturating_add(new);
        if self.host_bytes > self.scope.limits.host_memory_bytes {
            return Err(self.over_budget());
        }
        Ok(())
    }
}

/// What the driver may buffer for a cursor of `batch` documents of at most `doc` bytes.
pub(crate) fn batch_bytes(batch: u32, doc: usize) -> usize {
    (batch as usize).saturating_mul(doc).min(SERVER_BATCH_BYTES)
}
