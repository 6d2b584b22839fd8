//! Multi-document transactions: [`Db::with_transaction`] runs a closure in a transaction and
//! retries it as the MongoDB drivers' `with_transaction` does; [`Db::start_transaction`]
//! gives the bare [`Transaction`].

use std::fmt;
use std::marker::PhantomData;
use std::time::{Duration, Instant};

use bson::{Bson, Document};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec::{decode, decode_doc, decode_id, encode, encode_doc, opt_doc};
use crate::db::update_result;
use crate::raw::polymongo::plugin0_1_0::database as wit_db;
use crate::raw::polymongo::plugin0_2_0::transactions as wit;
use crate::{Db, Error, Response, UpdateResult};

/// The label of an error after which the whole transaction may be run again.
pub const TRANSIENT_TRANSACTION_ERROR: &str = "TransientTransactionError";
/// The label of a commit error after which the commit may be sent again (it may or may not
/// have been applied).
pub const UNKNOWN_TRANSACTION_COMMIT_RESULT: &str = "UnknownTransactionCommitResult";
/// How long [`Db::with_transaction`] keeps retrying (the drivers' limit); the request's
/// deadline usually ends it sooner.
pub const WITH_TRANSACTION_TIME_LIMIT: Duration = Duration::from_secs(120);

/// A failed transaction operation: the [`Error`] and the server's error labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionError {
    /// What went wrong.
    pub error: Error,
    /// The labels the server (or the driver) attached, e.g. [`TRANSIENT_TRANSACTION_ERROR`].
    pub labels: Vec<String>,
}

impl TransactionError {
    /// Whether the error carries `label`.
    pub fn has_label(&self, label: &str) -> bool {
        self.labels.iter().any(|l| l == label)
    }

    /// Whether the whole transaction may be run again.
    pub fn is_transient(&self) -> bool {
        self.has_label(TRANSIENT_TRANSACTION_ERROR)
    }

    /// Whether the commit may be sent again.
    pub fn is_unknown_commit_result(&self) -> bool {
        self.has_label(UNKNOWN_TRANSACTION_COMMIT_RESULT)
    }
}

impl fmt::Display for TransactionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.labels.is_empty() {
            write!(f, "{}", self.error)
        } else {
            write!(f, "{} (labels: {})", self.error, self.labels.join(", "))
        }
    }
}

impl std::error::Error for TransactionError {}

impl From<Error> for TransactionError {
    fn from(error: Error) -> Self {
        Self {
            error,
            labels: Vec::new(),
        }
    }
}

impl From<wit::TransactionError> for TransactionError {
    fn from(e: wit::TransactionError) -> Self {
        Self {
            error: e.error.into(),
            labels: e.labels,
        }
    }
}

impl From<TransactionError> for Error {
    fn from(e: TransactionError) -> Self {
        e.error
    }
}

impl From<TransactionError> for Response {
    fn from(e: TransactionError) -> Self {
        e.error.into()
    }
}

/// The result of a transaction operation.
pub type TxResult<T> = Result<T, TransactionError>;

/// Options of a transaction; every one left unset takes the server's default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransactionOptions {
    read_concern: Option<String>,
    write_concern: Option<String>,
    max_commit_time_ms: Option<u32>,
}

impl TransactionOptions {
    /// The server's defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Read concern level: `"snapshot"`, `"majority"` or `"local"`.
    pub fn read_concern(mut self, level: &str) -> Self {
        self.read_concern = Some(level.to_string());
        self
    }

    /// Write concern of the commit: `"majority"` or a number of nodes such as `"1"`.
    pub fn write_concern(mut self, w: &str) -> Self {
        self.write_concern = Some(w.to_string());
        self
    }

    /// Longest the server may spend committing, in ms (bounded by the request's deadline).
    pub fn max_commit_time_ms(mut self, ms: u32) -> Self {
        self.max_commit_time_ms = Some(ms);
        self
    }

    fn raw(&self) -> wit::TransactionOptions {
        wit::TransactionOptions {
            read_concern: self.read_concern.clone(),
            write_concern: self.write_concern.clone(),
            max_commit_time_ms: self.max_commit_time_ms,
        }
    }
}

impl Db {
    /// Starts a transaction on this database. Prefer [`Db::with_transaction`], which retries.
    /// Dropping the transaction without [`Transaction::commit`] aborts it.
    pub fn start_transaction(&self, options: &TransactionOptions) -> TxResult<Transaction> {
        Ok(Transaction {
            raw: wit::start_transaction(self.raw(), &options.raw())?,
        })
    }

    /// Runs `body` in a transaction and commits it, with the server's default options.
    ///
    /// Like the drivers' `with_transaction`: when `body` or the commit fails with a
    /// [`TRANSIENT_TRANSACTION_ERROR`], the whole transaction runs again (so `body` must be
    /// safe to repeat); when the commit fails with [`UNKNOWN_TRANSACTION_COMMIT_RESULT`], the
    /// commit is sent again; both until [`WITH_TRANSACTION_TIME_LIMIT`] has passed (the
    /// request's deadline usually ends it first, with a `timeout`). Any other error aborts
    /// the transaction and is returned.
    ///
    /// ```no_run
    /// use polymongo_guest::{bson::{doc, Document}, Db};
    ///
    /// let moved = Db::tenant().with_transaction(|tx| {
    ///     let accounts = tx.collection::<Document>("accounts");
    ///     accounts.update_one(doc! { "_id": "a" }, doc! { "$inc": { "balance": -10 } })?;
    ///     accounts.update_one(doc! { "_id": "b" }, doc! { "$inc": { "balance": 10 } })?;
    ///     Ok(10)
    /// })?;
    /// # Ok::<(), polymongo_guest::TransactionError>(())
    /// ```
    pub fn with_transaction<R>(
        &self,
        body: impl FnMut(&Transaction) -> TxResult<R>,
    ) -> TxResult<R> {
        self.with_transaction_options(&TransactionOptions::new(), body)
    }

    /// [`Db::with_transaction`] with `options`.
    pub fn with_transaction_options<R>(
        &self,
        options: &TransactionOptions,
        mut body: impl FnMut(&Transaction) -> TxResult<R>,
    ) -> TxResult<R> {
        let started = Instant::now();
        let in_time = || started.elapsed() < WITH_TRANSACTION_TIME_LIMIT;
        'transaction: loop {
            let tx = self.start_transaction(options)?;
            let value = match body(&tx) {
                Ok(value) => value,
                Err(e) => {
                    // Nothing to keep: abort (dropping would too) and maybe run again.
                    let _ = tx.abort();
                    if e.is_transient() && in_time() {
                        continue 'transaction;
                    }
                    return Err(e);
                }
            };
            loop {
                match tx.commit() {
                    Ok(()) => return Ok(value),
                    Err(e) if e.is_unknown_commit_result() && in_time() => continue,
                    Err(e) if e.is_transient() && in_time() => continue 'transaction,
                    Err(e) => return Err(e),
                }
            }
        }
    }
}

/// An open transaction (see [`Db::with_transaction`]). Its collections' operations run in it;
/// reads return whole results (bounded by the plugin's result cap), not cursors.
pub struct Transaction {
    raw: wit::Transaction,
}

impl fmt::Debug for Transaction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transaction")
            .field("handle", &self.raw.handle())
            .finish()
    }
}

impl Transaction {
    /// The collection `name` inside this transaction, whose documents are `T`.
    pub fn collection<T>(&self, name: &str) -> TxCollection<'_, T> {
        TxCollection {
            tx: &self.raw,
            name: name.to_string(),
            _type: PhantomData,
        }
    }

    /// Commits. After an error for which
    /// [`is_unknown_commit_result`](TransactionError::is_unknown_commit_result) holds, it may
    /// be called again.
    pub fn commit(&self) -> TxResult<()> {
        Ok(self.raw.commit()?)
    }

    /// Aborts: nothing the transaction wrote is kept.
    pub fn abort(&self) -> TxResult<()> {
        Ok(self.raw.abort()?)
    }

    /// The raw handle, for calls that bypass the SDK.
    pub fn raw(&self) -> &wit::Transaction {
        &self.raw
    }
}

/// A collection inside a [`Transaction`] (see [`Transaction::collection`]).
pub struct TxCollection<'a, T> {
    tx: &'a wit::Transaction,
    name: String,
    _type: PhantomData<fn() -> T>,
}

impl<T> fmt::Debug for TxCollection<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TxCollection")
            .field("name", &self.name)
            .finish()
    }
}

fn no_options() -> wit_db::FindOptions {
    wit_db::FindOptions {
        sort: None,
        projection: None,
        skip: None,
        limit: None,
        batch_size: None,
    }
}

impl<T> TxCollection<'_, T> {
    /// Updates the first document matching `filter`.
    pub fn update_one(&self, filter: Document, update: Document) -> TxResult<UpdateResult> {
        let options = wit_db::UpdateOptions { upsert: false };
        let r = self.tx.update_one(
            &self.name,
            &encode_doc(&filter)?,
            &encode_doc(&update)?,
            options,
        )?;
        Ok(update_result(r)?)
    }

    /// Updates every document matching `filter`.
    pub fn update_many(&self, filter: Document, update: Document) -> TxResult<UpdateResult> {
        let options = wit_db::UpdateOptions { upsert: false };
        let r = self.tx.update_many(
            &self.name,
            &encode_doc(&filter)?,
            &encode_doc(&update)?,
            options,
        )?;
        Ok(update_result(r)?)
    }

    /// Deletes the first document matching `filter`; returns the number deleted.
    pub fn delete_one(&self, filter: Document) -> TxResult<u64> {
        Ok(self.tx.delete_one(&self.name, &encode_doc(&filter)?)?)
    }

    /// Deletes every document matching `filter`; returns the number deleted.
    pub fn delete_many(&self, filter: Document) -> TxResult<u64> {
        Ok(self.tx.delete_many(&self.name, &encode_doc(&filter)?)?)
    }

    /// Counts documents matching `filter`.
    pub fn count(&self, filter: Document) -> TxResult<u64> {
        Ok(self.tx.count_documents(&self.name, &encode_doc(&filter)?)?)
    }

    /// Runs an aggregation pipeline; returns all its results.
    pub fn aggregate(&self, pipeline: Vec<Document>) -> TxResult<Vec<Document>> {
        let stages = pipeline
            .iter()
            .map(encode_doc)
            .collect::<Result<Vec<_>, Error>>()?;
        let docs = self.tx.aggregate(&self.name, &stages)?;
        Ok(docs
            .iter()
            .map(|d| decode_doc(d))
            .collect::<Result<_, Error>>()?)
    }
}

impl<T: DeserializeOwned> TxCollection<'_, T> {
    /// Every document matching `filter`, sorted by `sort` when given.
    pub fn find(&self, filter: Document, sort: Option<Document>) -> TxResult<Vec<T>> {
        let options = wit_db::FindOptions {
            sort: opt_doc(&sort)?,
            ..no_options()
        };
        let docs = self.tx.find(&self.name, &encode_doc(&filter)?, &options)?;
        Ok(docs
            .iter()
            .map(|d| decode(d))
            .collect::<Result<_, Error>>()?)
    }

    /// The first document matching `filter`.
    pub fn find_one(&self, filter: Document) -> TxResult<Option<T>> {
        let found = self
            .tx
            .find_one(&self.name, &encode_doc(&filter)?, &no_options())?;
        Ok(found.map(|d| decode(&d)).transpose()?)
    }
}

impl<T: Serialize> TxCollection<'_, T> {
    /// Inserts a document; returns its `_id`.
    pub fn insert_one(&self, doc: &T) -> TxResult<Bson> {
        let id = self.tx.insert_one(&self.name, &encode(doc)?)?;
        Ok(decode_id(&id)?)
    }

    /// Inserts documents in order; returns their `_id`s in the same order.
    pub fn insert_many<'d>(&self, docs: impl IntoIterator<Item = &'d T>) -> TxResult<Vec<Bson>>
    where
        T: 'd,
    {
        let docs = docs
            .into_iter()
            .map(encode)
            .collect::<Result<Vec<_>, Error>>()?;
        let ids = self.tx.insert_many(&self.name, &docs)?;
        Ok(ids
            .iter()
            .map(|id| decode_id(id))
            .collect::<Result<_, Error>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labelled(labels: &[&str]) -> TransactionError {
        TransactionError {
            error: Error::Server {
                code: 112,
                code_name: Some("WriteConflict".into()),
                message: "conflict".into(),
            },
            labels: labels.iter().map(|l| l.to_string()).collect(),
        }
    }

    #[test]
    fn labels_say_what_may_be_retried() {
        let transient = labelled(&[TRANSIENT_TRANSACTION_ERROR]);
        assert!(transient.is_transient() && !transient.is_unknown_commit_result());
        let unknown = labelled(&[UNKNOWN_TRANSACTION_COMMIT_RESULT]);
        assert!(unknown.is_unknown_commit_result() && !unknown.is_transient());
        let plain: TransactionError = Error::Timeout("late".into()).into();
        assert!(!plain.is_transient() && !plain.is_unknown_commit_result());
        assert!(plain.labels.is_empty());
    }

    #[test]
    fn display_names_the_labels_and_the_error_keeps_its_status() {
        let e = labelled(&[TRANSIENT_TRANSACTION_ERROR]);
        assert_eq!(
            e.to_string(),
            "server error 112 (WriteConflict): conflict (labels: TransientTransactionError)"
        );
        let plain: TransactionError = Error::Unsupported("no replica set".into()).into();
        assert_eq!(plain.to_string(), "unsupported: no replica set");
        let error: Error = plain.into();
        assert_eq!(error.http_status(), 501);
    }
}
