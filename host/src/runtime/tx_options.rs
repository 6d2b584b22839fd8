//! What the host side of `transactions` needs besides the host functions: the request's table
//! of open transactions (capped, aborted when the request ends), the driver's transaction
//! options from the plugin's, and the WIT `transaction-error`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use mongodb::options::{Acknowledgment, ReadConcern, TransactionOptions, WriteConcern};
use wasmtime::component::ResourceTableError;

use super::bindings::transactions::{
    TransactionError as WitTransactionError, TransactionOptions as WitTransactionOptions,
};
use super::bindings::types::Error as WitError;
use super::convert::{invalid, to_wit};
use super::host_error::HostError;
use crate::pool;

/// How long the host waits for the server to abort a transaction left open when its request
/// ended (in the background: the response does not wait).
pub(crate) const ABORT_AT_END_WITHIN: Duration = Duration::from_secs(5);

/// The transactions a request holds open, by the id its `transaction` resources carry.
#[derive(Debug, Default)]
pub(crate) struct OpenTransactions {
    next_id: u64,
    open: HashMap<u64, pool::Transaction>,
}

impl OpenTransactions {
    /// How many are open.
    pub(crate) fn len(&self) -> usize {
        self.open.len()
    }

    /// Adds an open transaction; returns its id.
    pub(crate) fn insert(&mut self, txn: pool::Transaction) -> u64 {
        self.next_id += 1;
        self.open.insert(self.next_id, txn);
        self.next_id
    }

    /// The open transaction `id`, or a `not-found` error once it ended.
    pub(crate) fn get_mut(&mut self, id: u64) -> Result<&mut pool::Transaction, WitError> {
        self.open.get_mut(&id).ok_or_else(|| {
            WitError::NotFound("this transaction has ended (committed or aborted)".into())
        })
    }

    /// Takes the transaction `id` out (it ended, or its resource was dropped).
    pub(crate) fn remove(&mut self, id: u64) -> Option<pool::Transaction> {
        self.open.remove(&id)
    }

    /// Aborts every transaction still open, in the background: called when the request ends,
    /// however it ended (returned, trapped, timed out).
    pub(crate) fn abort_all(&mut self) {
        if self.open.is_empty() {
            return;
        }
        let open: Vec<pool::Transaction> = self.open.drain().map(|(_, t)| t).collect();
        tokio::spawn(async move {
            for txn in open {
                txn.abort_quietly(ABORT_AT_END_WITHIN).await;
            }
        });
    }
}

/// The driver's transaction options from the plugin's; `max-commit-time-ms` is bounded by
/// the time left until `deadline`.
pub(crate) fn transaction_options(
    o: &WitTransactionOptions,
    deadline: Instant,
) -> Result<TransactionOptions, WitError> {
    let read_concern = match o.read_concern.as_deref() {
        None => None,
        Some("snapshot") => Some(ReadConcern::snapshot()),
        Some("majority") => Some(ReadConcern::majority()),
        Some("local") => Some(ReadConcern::local()),
        Some(other) => {
            return Err(invalid(format!(
                "read concern {other:?}: use \"snapshot\", \"majority\" or \"local\""
            )))
        }
    };
    let write_concern = match o.write_concern.as_deref() {
        None => None,
        Some("majority") => Some(Acknowledgment::Majority),
        Some(n) => match n.parse::<u32>() {
            Ok(n) if n > 0 => Some(Acknowledgment::Nodes(n)),
            _ => {
                return Err(invalid(format!(
                    "write concern {n:?}: use \"majority\" or a number of nodes (at least 1)"
                )))
            }
        },
    }
    .map(|w| WriteConcern::builder().w(w).build());
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    let max_commit = o
        .max_commit_time_ms
        .map_or(left, |ms| Duration::from_millis(u64::from(ms)).min(left));
    Ok(TransactionOptions::builder()
        .read_concern(read_concern)
        .write_concern(write_concern)
        .max_commit_time(max_commit)
        .build())
}

/// A failure of a transaction host function: a `transaction-error` for the plugin, or a trap.
#[derive(Debug)]
pub(crate) enum TxFailure {
    /// Returned to the plugin.
    Wit(WitTransactionError),
    /// Ends the instance.
    Trap(wasmtime::Error),
}

/// The result of a transaction host function before it is split into WIT result and trap.
pub(crate) type TxResult<T> = Result<T, TxFailure>;

impl From<WitError> for TxFailure {
    fn from(error: WitError) -> Self {
        TxFailure::Wit(WitTransactionError {
            error,
            labels: Vec::new(),
        })
    }
}

impl From<HostError> for TxFailure {
    fn from(e: HostError) -> Self {
        match e {
            HostError::Wit(e) => e.into(),
            HostError::Trap(e) => TxFailure::Trap(e),
        }
    }
}

impl From<wasmtime::Error> for TxFailure {
    fn from(e: wasmtime::Error) -> Self {
        TxFailure::Trap(e)
    }
}

impl From<ResourceTableError> for TxFailure {
    fn from(e: ResourceTableError) -> Self {
        TxFailure::Trap(e.into())
    }
}

impl From<pool::Error> for TxFailure {
    fn from(e: pool::Error) -> Self {
        pool::TransactionError::from(e).into()
    }
}

impl From<pool::TransactionError> for TxFailure {
    fn from(e: pool::TransactionError) -> Self {
        TxFailure::Wit(WitTransactionError {
            error: to_wit(e.error),
            labels: e.labels,
        })
    }
}

/// Splits a host function's outcome into the plugin's `result` and a trap.
pub(crate) fn settle<T>(r: TxResult<T>) -> wasmtime::Result<Result<T, WitTransactionError>> {
    match r {
        Ok(v) => Ok(Ok(v)),
        Err(TxFailure::Wit(e)) => Ok(Err(e)),
        Err(TxFailure::Trap(e)) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(
        read: Option<&str>,
        write: Option<&str>,
        commit_ms: Option<u32>,
    ) -> WitTransactionOptions {
        WitTransactionOptions {
            read_concern: read.map(str::to_string),
            write_concern: write.map(str::to_string),
            max_commit_time_ms: commit_ms,
        }
    }

    #[test]
    fn options_map_to_the_driver_and_commit_time_is_bounded_by_the_deadline() {
        let deadline = Instant::now() + Duration::from_secs(2);
        let o = transaction_options(
            &options(Some("snapshot"), Some("majority"), Some(60_000)),
            deadline,
        )
        .expect("valid options");
        assert_eq!(o.read_concern, Some(ReadConcern::snapshot()));
        assert_eq!(
            o.write_concern.and_then(|w| w.w),
            Some(Acknowledgment::Majority)
        );
        let commit = o.max_commit_time.expect("always set");
        assert!(commit <= Duration::from_secs(2), "{commit:?}");
        let o = transaction_options(&options(None, Some("2"), Some(10)), deadline).expect("valid");
        assert_eq!(o.read_concern, None);
        assert_eq!(
            o.write_concern.and_then(|w| w.w),
            Some(Acknowledgment::Nodes(2))
        );
        assert_eq!(o.max_commit_time, Some(Duration::from_millis(10)));
    }

    #[test]
    fn unknown_concerns_are_invalid_arguments() {
        let deadline = Instant::now() + Duration::from_secs(1);
        for bad in [
            options(Some("linearizable!"), None, None),
            options(None, Some("0"), None),
            options(None, Some("all"), None),
        ] {
            assert!(matches!(
                transaction_options(&bad, deadline),
                Err(WitError::InvalidArgument(_))
            ));
        }
    }

    #[test]
    fn labels_reach_the_plugin_and_traps_stay_traps() {
        let err = pool::TransactionError {
            error: pool::Error::Server {
                code: 251,
                code_name: Some("NoSuchTransaction".into()),
                message: "gone".into(),
            },
            labels: vec![pool::TRANSIENT_TRANSACTION_ERROR.to_string()],
        };
        match settle::<()>(Err(err.into())) {
            Ok(Err(e)) => {
                assert_eq!(e.labels, vec!["TransientTransactionError".to_string()]);
                assert!(matches!(e.error, WitError::Server(ref s) if s.code == 251));
            }
            other => panic!("expected a transaction error, got {other:?}"),
        }
        let trap = settle::<()>(Err(TxFailure::Trap(wasmtime::Error::msg("bad handle"))));
        assert!(trap.is_err());
    }
}
