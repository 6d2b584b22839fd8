//! Multi-document transactions: [`Db::start_transaction`] opens a driver session on the
//! database's pool and starts a transaction in it; the [`Transaction`]'s operations run in
//! that session, so the server sees one `lsid` and one `txnNumber` for all of them, with
//! `startTransaction` on the first.
//!
//! Writes are sent as commands carrying `maxTimeMS` (as in `timed_writes`); reads and counts
//! take it as an option.
//!
//! A transaction holds a lease on its pool until it is committed, aborted or dropped: the pool
//! counts as busy and is never evicted under it. Dropping an open transaction aborts it (the
//! driver sends `abortTransaction` in the background); callers that can wait should call
//! [`Transaction::abort`].

use std::time::Duration;

use bson::{doc, Bson, Document, RawDocumentBuf};
use mongodb::options::{
    AggregateOptions, CountOptions, FindOneOptions, FindOptions, TransactionOptions,
};
use mongodb::{ClientSession, SessionCursor};

use crate::db::Db;
use crate::error::{Error, Result};
use crate::handle::Lease;
use crate::secret::Redactor;
use crate::timed_writes::{
    count, millis, update_outcome, with_ids, write_error_scrubbed, WriteOutcome,
};

/// The label of an error after which the whole transaction may be retried.
pub const TRANSIENT_TRANSACTION_ERROR: &str = "TransientTransactionError";
/// The label of a commit error after which the commit may be retried (it may or may not have
/// been applied).
pub const UNKNOWN_TRANSACTION_COMMIT_RESULT: &str = "UnknownTransactionCommitResult";

/// A failed transaction operation: the typed error and the labels the server (or the
/// driver) attached to it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{error}")]
pub struct TransactionError {
    /// What went wrong.
    pub error: Error,
    /// The error's labels, sorted (e.g. [`TRANSIENT_TRANSACTION_ERROR`]).
    pub labels: Vec<String>,
}

impl TransactionError {
    fn from_driver(e: mongodb::error::Error, redactor: &Redactor) -> Self {
        let mut labels: Vec<String> = e.labels().iter().cloned().collect();
        // Labels of a wrapped source error count too (the driver checks both).
        for label in [
            TRANSIENT_TRANSACTION_ERROR,
            UNKNOWN_TRANSACTION_COMMIT_RESULT,
        ] {
            if e.contains_label(label) && !labels.iter().any(|l| l == label) {
                labels.push(label.to_string());
            }
        }
        labels.sort();
        Self {
            error: Error::from_driver(e, redactor),
            labels,
        }
    }

    /// Whether the error carries `label`.
    pub fn has_label(&self, label: &str) -> bool {
        self.labels.iter().any(|l| l == label)
    }
}

impl From<Error> for TransactionError {
    fn from(error: Error) -> Self {
        Self {
            error,
            labels: Vec::new(),
        }
    }
}

/// A result of a transaction operation.
pub type TransactionResult<T> = std::result::Result<T, TransactionError>;

impl Db {
    /// Starts a multi-document transaction with the server's default options.
    pub async fn start_transaction(&self) -> Result<Transaction> {
        self.start_transaction_with(TransactionOptions::default())
            .await
    }

    /// Starts a multi-document transaction. Needs a replica set or sharded cluster; elsewhere
    /// fails with [`Error::Unsupported`]. The pool counts as busy until the transaction ends.
    pub async fn start_transaction_with(&self, options: TransactionOptions) -> Result<Transaction> {
        let lease = self.lease().await?;
        lease
            .handle()
            .caps(self.redactor())
            .await?
            .require_transactions()?;
        let mut session = lease
            .handle()
            .client
            .start_session()
            .await
            .map_err(|e| self.map_err(e))?;
        session
            .start_transaction()
            .with_options(options)
            .await
            .map_err(|e| self.map_err(e))?;
        Ok(Transaction {
            session,
            redactor: self.redactor().clone(),
            lease,
        })
    }
}

/// An open multi-document transaction. Holds a lease until dropped; dropping it while it is
/// open aborts it.
pub struct Transaction {
    session: ClientSession,
    redactor: Redactor,
    lease: Lease,
}

impl std::fmt::Debug for Transaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction")
            .field("db", &self.lease.db_name())
            .finish_non_exhaustive()
    }
}

impl Transaction {
    /// The database the transaction runs in.
    pub fn db_name(&self) -> &str {
        self.lease.db_name()
    }

    /// A driver collection in this database; pass [`Transaction::session`] to its operations.
    pub fn collection<T: Send + Sync>(&self, name: &str) -> mongodb::Collection<T> {
        self.lease.database().collection(name)
    }

    /// The session to pass to operations inside the transaction.
    pub fn session(&mut self) -> &mut ClientSession {
        &mut self.session
    }

    fn map(&self) -> impl Fn(mongodb::error::Error) -> TransactionError + '_ {
        |e| TransactionError::from_driver(e, &self.redactor)
    }

    /// Documents matching `filter`, as the server's bytes; `None` when they add up to more
    /// than `max_bytes`.
    pub async fn find(
        &mut self,
        collection: &str,
        filter: Document,
        options: FindOptions,
        max_bytes: usize,
    ) -> TransactionResult<Option<Vec<RawDocumentBuf>>> {
        let coll = self.collection::<RawDocumentBuf>(collection);
        let redactor = self.redactor.clone();
        let map = |e| TransactionError::from_driver(e, &redactor);
        let mut cursor = coll
            .find(filter)
            .with_options(options)
            .session(&mut self.session)
            .await
            .map_err(map)?;
        drain(&mut cursor, &mut self.session, max_bytes, &redactor).await
    }

    /// The first document matching `filter`.
    pub async fn find_one(
        &mut self,
        collection: &str,
        filter: Document,
        options: FindOneOptions,
    ) -> TransactionResult<Option<RawDocumentBuf>> {
        let coll = self.collection::<RawDocumentBuf>(collection);
        let found = coll
            .find_one(filter)
            .with_options(options)
            .session(&mut self.session)
            .await;
        found.map_err(self.map())
    }

    /// Runs a write command in the transaction; its first write error (or write-concern
    /// error) as an error.
    async fn write(&mut self, command: Document, many: bool) -> TransactionResult<Document> {
        let db = self.lease.database().clone();
        let reply = db.run_command(command).session(&mut self.session).await;
        let reply = reply.map_err(self.map())?;
        match write_error_scrubbed(&reply, &self.redactor, many) {
            Some(e) => Err(e.into()),
            None => Ok(reply),
        }
    }

    /// Inserts `docs` in order under a server time limit; returns their `_id`s in the same
    /// order (generated here for documents without one, as the driver does).
    pub async fn insert_many(
        &mut self,
        collection: &str,
        docs: Vec<Document>,
        max_time: Duration,
    ) -> TransactionResult<Vec<Bson>> {
        if docs.is_empty() {
            return Ok(Vec::new());
        }
        let many = docs.len() > 1;
        let (ids, docs) = with_ids(docs);
        let command = doc! {
            "insert": collection,
            "documents": docs,
            "ordered": true,
            "maxTimeMS": millis(max_time),
        };
        self.write(command, many).await?;
        Ok(ids)
    }

    /// Updates the first (or, with `many`, every) document matching `filter` under a server
    /// time limit.
    pub async fn update(
        &mut self,
        collection: &str,
        filter: Document,
        update: Document,
        upsert: bool,
        many: bool,
        max_time: Duration,
    ) -> TransactionResult<WriteOutcome> {
        let command = doc! {
            "update": collection,
            "updates": [ { "q": filter, "u": update, "upsert": upsert, "multi": many } ],
            "ordered": true,
            "maxTimeMS": millis(max_time),
        };
        let reply = self.write(command, false).await?;
        Ok(update_outcome(&reply))
    }

    /// Deletes the first (or, with `many`, every) document matching `filter` under a server
    /// time limit; returns how many were deleted.
    pub async fn delete(
        &mut self,
        collection: &str,
        filter: Document,
        many: bool,
        max_time: Duration,
    ) -> TransactionResult<u64> {
        let command = doc! {
            "delete": collection,
            "deletes": [ { "q": filter, "limit": if many { 0 } else { 1 } } ],
            "ordered": true,
            "maxTimeMS": millis(max_time),
        };
        let reply = self.write(command, false).await?;
        Ok(count(&reply, "n"))
    }

    /// Counts documents matching `filter`.
    pub async fn count_documents(
        &mut self,
        collection: &str,
        filter: Document,
        options: CountOptions,
    ) -> TransactionResult<u64> {
        let coll = self.collection::<Document>(collection);
        let counted = coll
            .count_documents(filter)
            .with_options(options)
            .session(&mut self.session)
            .await;
        counted.map_err(self.map())
    }

    /// Runs an aggregation pipeline; its results as the server's bytes, `None` when they add
    /// up to more than `max_bytes`.
    pub async fn aggregate(
        &mut self,
        collection: &str,
        pipeline: Vec<Document>,
        options: AggregateOptions,
        max_bytes: usize,
    ) -> TransactionResult<Option<Vec<RawDocumentBuf>>> {
        let coll = self.collection::<Document>(collection);
        let redactor = self.redactor.clone();
        let map = |e| TransactionError::from_driver(e, &redactor);
        let mut cursor = coll
            .aggregate(pipeline)
            .with_options(options)
            .with_type::<RawDocumentBuf>()
            .session(&mut self.session)
            .await
            .map_err(map)?;
        drain(&mut cursor, &mut self.session, max_bytes, &redactor).await
    }

    /// Commits the transaction. After an error labelled
    /// [`UNKNOWN_TRANSACTION_COMMIT_RESULT`] it may be called again.
    pub async fn commit(&mut self) -> TransactionResult<()> {
        let committed = self.session.commit_transaction().await;
        committed.map_err(self.map())
    }

    /// Aborts the transaction.
    pub async fn abort(&mut self) -> TransactionResult<()> {
        let aborted = self.session.abort_transaction().await;
        aborted.map_err(self.map())
    }

    /// Aborts the transaction if it is still open, waiting at most `within`; errors are
    /// ignored (the server drops an abandoned transaction at its own time limit anyway).
    pub async fn abort_quietly(mut self, within: Duration) {
        let _ = tokio::time::timeout(within, self.session.abort_transaction()).await;
    }
}

/// Every document of `cursor`, or `None` once together they exceed `max_bytes`.
async fn drain(
    cursor: &mut SessionCursor<RawDocumentBuf>,
    session: &mut ClientSession,
    max_bytes: usize,
    redactor: &Redactor,
) -> TransactionResult<Option<Vec<RawDocumentBuf>>> {
    let mut out = Vec::new();
    let mut total = 0usize;
    while let Some(doc) = cursor.next(session).await {
        let doc = doc.map_err(|e| TransactionError::from_driver(e, redactor))?;
        total = total.saturating_add(doc.as_bytes().len());
        if total > max_bytes {
            return Ok(None);
        }
        out.push(doc);
    }
    Ok(Some(out))
}
