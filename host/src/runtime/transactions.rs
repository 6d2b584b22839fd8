//! Host side of the `transactions` interface (`polymongo:plugin@0.2.0`): multi-document
//! transactions for plugins.
//!
//! A transaction lives in the request's [`OpenTransactions`] (the resource the plugin holds
//! carries its id): at most `limits.max_open_transactions` at once per request, and every one
//! still open when the request ends is aborted, whether the plugin returned, trapped or ran
//! out of time. Its operations pass the same checks as `database`'s (collection names,
//! operators, depth limits, pipeline stages, input and result budgets) and run under the
//! request's deadline (`maxTimeMS` where the command takes one).

use std::future::Future;
use std::time::Instant;

use bson::Document;
use mongodb::options::{AggregateOptions, CountOptions, FindOneOptions};
use wasmtime::component::Resource;

use super::bindings::database::{
    FindOptions as WitFindOptions, UpdateOptions as WitUpdateOptions,
    UpdateResult as WitUpdateResult,
};
use super::bindings::transactions::{
    Host, HostTransaction, TransactionError as WitTransactionError,
    TransactionOptions as WitTransactionOptions,
};
use super::bindings::types::Error as WitError;
use super::convert::{find_options, id_doc, options_len, update_document, update_result};
use super::host_db::DbHandle;
use super::input::{decode, decode_opt, max_time, DEFAULT_BATCH_DOCS};
use super::sandbox::{check_collection, check_pipeline};
use super::state::RequestState;
use super::tx_options::{settle, transaction_options, TxFailure, TxResult};

/// A transaction resource handed to a plugin: the id of its entry in the request's
/// [`OpenTransactions`](super::tx_options::OpenTransactions).
pub struct TransactionHandle {
    id: u64,
}

type Answer<T> = wasmtime::Result<Result<T, WitTransactionError>>;

/// Runs one transaction operation until `deadline` (by value, as `host_db::bounded`).
async fn bounded_tx<R, E: Into<TxFailure>>(
    deadline: Instant,
    fut: impl Future<Output = Result<R, E>>,
) -> TxResult<R> {
    let remaining = deadline.saturating_duration_since(Instant::now());
    match tokio::time::timeout(remaining, fut).await {
        Ok(result) => result.map_err(Into::into),
        Err(_) => Err(WitError::Timeout(
            "the request's deadline passed during a transaction operation".into(),
        )
        .into()),
    }
}

impl RequestState {
    /// The id of an open transaction behind `handle` (a trap for a bad handle).
    fn tx_id(&self, handle: &Resource<TransactionHandle>) -> TxResult<u64> {
        Ok(self.table.get(handle)?.id)
    }

    /// Checks the collection name and that `input` bytes fit the host-memory budget.
    fn tx_input(&self, collection: &str, input: usize) -> TxResult<()> {
        check_collection(collection)?;
        self.input_fits(input)?;
        Ok(())
    }

    /// Charges whole results (a read's documents) against the per-call and per-request caps;
    /// `None` (over the per-call cap while reading) is `too-large`.
    fn charge_all(&mut self, docs: Option<Vec<bson::RawDocumentBuf>>) -> TxResult<Vec<Vec<u8>>> {
        let Some(docs) = docs else {
            return Err(WitError::TooLarge(self.scope.limits.max_result_bytes as u64).into());
        };
        let bytes: usize = docs.iter().map(|d| d.as_bytes().len()).sum();
        self.charge(bytes)?;
        Ok(docs.into_iter().map(|d| d.into_bytes()).collect())
    }

    async fn tx_start(
        &mut self,
        db: Resource<DbHandle>,
        options: WitTransactionOptions,
    ) -> TxResult<Resource<TransactionHandle>> {
        let db = self.db_of(&db)?;
        let max = self.scope.limits.max_open_transactions;
        if self.transactions.len() >= max as usize {
            return Err(WitError::LimitReached(format!(
                "a request may hold at most {max} transactions open at once \
                 (limits.max_open_transactions); commit or abort one first"
            ))
            .into());
        }
        let options = transaction_options(&options, self.deadline)?;
        let txn = bounded_tx(self.deadline, db.start_transaction_with(options)).await?;
        let id = self.transactions.insert(txn);
        Ok(self.table.push(TransactionHandle { id })?)
    }

    async fn tx_update(
        &mut self,
        this: Resource<TransactionHandle>,
        collection: String,
        filter: Vec<u8>,
        update: Vec<u8>,
        options: WitUpdateOptions,
        many: bool,
    ) -> TxResult<WitUpdateResult> {
        let id = self.tx_id(&this)?;
        self.tx_input(&collection, filter.len() + update.len())?;
        let rules = self.query_rules();
        let filter = decode(&filter, "filter", rules)?;
        let update = update_document(&update, rules)?;
        let within = max_time(self.deadline);
        let txn = self.transactions.get_mut(id)?;
        let run = txn.update(&collection, filter, update, options.upsert, many, within);
        let result = bounded_tx(self.deadline, run).await?;
        Ok(update_result(result)?)
    }

    async fn tx_delete(
        &mut self,
        this: Resource<TransactionHandle>,
        collection: String,
        filter: Vec<u8>,
        many: bool,
    ) -> TxResult<u64> {
        let id = self.tx_id(&this)?;
        self.tx_input(&collection, filter.len())?;
        let filter = decode(&filter, "filter", self.query_rules())?;
        let within = max_time(self.deadline);
        let txn = self.transactions.get_mut(id)?;
        bounded_tx(self.deadline, txn.delete(&collection, filter, many, within)).await
    }
}

impl Host for RequestState {
    async fn start_transaction(
        &mut self,
        db: Resource<DbHandle>,
        options: WitTransactionOptions,
    ) -> Answer<Resource<TransactionHandle>> {
        settle(self.tx_start(db, options).await)
    }
}

impl HostTransaction for RequestState {
    async fn find(
        &mut self,
        this: Resource<TransactionHandle>,
        collection: String,
        filter: Vec<u8>,
        options: WitFindOptions,
    ) -> Answer<Vec<Vec<u8>>> {
        let run = async {
            let id = self.tx_id(&this)?;
            let extra = options_len(&options.sort, &options.projection);
            self.tx_input(&collection, filter.len() + extra)?;
            let rules = self.query_rules();
            let filter = decode(&filter, "filter", rules)?;
            let batch = options.batch_size.unwrap_or(DEFAULT_BATCH_DOCS);
            let options = find_options(&options, rules, batch, self.deadline)?;
            let max_bytes = self.scope.limits.max_result_bytes;
            let txn = self.transactions.get_mut(id)?;
            let docs = bounded_tx(
                self.deadline,
                txn.find(&collection, filter, options, max_bytes),
            )
            .await?;
            self.charge_all(docs)
        };
        settle(run.await)
    }

    async fn find_one(
        &mut self,
        this: Resource<TransactionHandle>,
        collection: String,
        filter: Vec<u8>,
        options: WitFindOptions,
    ) -> Answer<Option<Vec<u8>>> {
        let run = async {
            let id = self.tx_id(&this)?;
            let extra = options_len(&options.sort, &options.projection);
            self.tx_input(&collection, filter.len() + extra)?;
            let rules = self.query_rules();
            let filter = decode(&filter, "filter", rules)?;
            let options = FindOneOptions::builder()
                .sort(decode_opt(&options.sort, "sort", rules)?)
                .projection(decode_opt(&options.projection, "projection", rules)?)
                .skip(options.skip)
                .max_time(max_time(self.deadline))
                .build();
            let txn = self.transactions.get_mut(id)?;
            let found =
                bounded_tx(self.deadline, txn.find_one(&collection, filter, options)).await?;
            match found {
                Some(raw) => {
                    let bytes = raw.into_bytes();
                    self.charge(bytes.len())?;
                    Ok(Some(bytes))
                }
                None => Ok(None),
            }
        };
        settle(run.await)
    }

    async fn insert_one(
        &mut self,
        this: Resource<TransactionHandle>,
        collection: String,
        doc: Vec<u8>,
    ) -> Answer<Vec<u8>> {
        let run = async {
            let ids = self.insert_docs(this, collection, vec![doc]).await?;
            ids.into_iter().next().ok_or_else(|| {
                TxFailure::from(WitError::InvalidArgument(
                    "the server inserted nothing".into(),
                ))
            })
        };
        settle(run.await)
    }

    async fn insert_many(
        &mut self,
        this: Resource<TransactionHandle>,
        collection: String,
        docs: Vec<Vec<u8>>,
    ) -> Answer<Vec<Vec<u8>>> {
        settle(self.insert_docs(this, collection, docs).await)
    }

    async fn update_one(
        &mut self,
        this: Resource<TransactionHandle>,
        collection: String,
        filter: Vec<u8>,
        update: Vec<u8>,
        options: WitUpdateOptions,
    ) -> Answer<WitUpdateResult> {
        settle(
            self.tx_update(this, collection, filter, update, options, false)
                .await,
        )
    }

    async fn update_many(
        &mut self,
        this: Resource<TransactionHandle>,
        collection: String,
        filter: Vec<u8>,
        update: Vec<u8>,
        options: WitUpdateOptions,
    ) -> Answer<WitUpdateResult> {
        settle(
            self.tx_update(this, collection, filter, update, options, true)
                .await,
        )
    }

    async fn delete_one(
        &mut self,
        this: Resource<TransactionHandle>,
        collection: String,
        filter: Vec<u8>,
    ) -> Answer<u64> {
        settle(self.tx_delete(this, collection, filter, false).await)
    }

    async fn delete_many(
        &mut self,
        this: Resource<TransactionHandle>,
        collection: String,
        filter: Vec<u8>,
    ) -> Answer<u64> {
        settle(self.tx_delete(this, collection, filter, true).await)
    }

    async fn count_documents(
        &mut self,
        this: Resource<TransactionHandle>,
        collection: String,
        filter: Vec<u8>,
    ) -> Answer<u64> {
        let run = async {
            let id = self.tx_id(&this)?;
            self.tx_input(&collection, filter.len())?;
            let filter = decode(&filter, "filter", self.query_rules())?;
            let options = CountOptions::builder()
                .max_time(max_time(self.deadline))
                .build();
            let txn = self.transactions.get_mut(id)?;
            bounded_tx(
                self.deadline,
                txn.count_documents(&collection, filter, options),
            )
            .await
        };
        settle(run.await)
    }

    async fn aggregate(
        &mut self,
        this: Resource<TransactionHandle>,
        collection: String,
        pipeline: Vec<Vec<u8>>,
    ) -> Answer<Vec<Vec<u8>>> {
        let run = async {
            let id = self.tx_id(&this)?;
            self.tx_input(&collection, pipeline.iter().map(Vec::len).sum())?;
            let rules = self.query_rules();
            let pipeline: Vec<Document> = pipeline
                .iter()
                .enumerate()
                .map(|(i, d)| decode(d, &format!("pipeline stage {i}"), rules))
                .collect::<Result<_, WitError>>()?;
            let txn = self.transactions.get_mut(id)?;
            check_pipeline(&pipeline, txn.db_name())?;
            let options = AggregateOptions::builder()
                .max_time(max_time(self.deadline))
                .build();
            let max_bytes = self.scope.limits.max_result_bytes;
            let txn = self.transactions.get_mut(id)?;
            let docs = bounded_tx(
                self.deadline,
                txn.aggregate(&collection, pipeline, options, max_bytes),
            )
            .await?;
            self.charge_all(docs)
        };
        settle(run.await)
    }

    async fn commit(&mut self, this: Resource<TransactionHandle>) -> Answer<()> {
        let run = async {
            let id = self.tx_id(&this)?;
            let txn = self.transactions.get_mut(id)?;
            match bounded_tx(self.deadline, txn.commit()).await {
                Ok(()) => {
                    self.transactions.remove(id);
                    Ok(())
                }
                // Still open: the plugin may call `commit` again.
                Err(TxFailure::Wit(e))
                    if e.labels
                        .iter()
                        .any(|l| l == crate::pool::UNKNOWN_TRANSACTION_COMMIT_RESULT) =>
                {
                    Err(TxFailure::Wit(e))
                }
                // Ended: the server aborted it (or it never started); forget it.
                Err(e) => {
                    self.transactions.remove(id);
                    Err(e)
                }
            }
        };
        settle(run.await)
    }

    async fn abort(&mut self, this: Resource<TransactionHandle>) -> Answer<()> {
        let run = async {
            let id = self.tx_id(&this)?;
            let Some(mut txn) = self.transactions.remove(id) else {
                return Err(WitError::NotFound(
                    "this transaction has ended (committed or aborted)".into(),
                )
                .into());
            };
            bounded_tx(self.deadline, txn.abort()).await
        };
        settle(run.await)
    }

    fn drop(&mut self, this: Resource<TransactionHandle>) -> wasmtime::Result<()> {
        let handle = self.table.delete(this)?;
        // Dropping the driver's session of an open transaction aborts it in the background.
        self.transactions.remove(handle.id);
        Ok(())
    }
}

impl RequestState {
    async fn insert_docs(
        &mut self,
        this: Resource<TransactionHandle>,
        collection: String,
        docs: Vec<Vec<u8>>,
    ) -> TxResult<Vec<Vec<u8>>> {
        let id = self.tx_id(&this)?;
        self.tx_input(&collection, docs.iter().map(Vec::len).sum())?;
        let rules = self.document_rules();
        let docs: Vec<Document> = docs
            .iter()
            .enumerate()
            .map(|(i, d)| decode(d, &format!("document {i}"), rules))
            .collect::<Result<_, WitError>>()?;
        let within = max_time(self.deadline);
        let txn = self.transactions.get_mut(id)?;
        let ids = bounded_tx(self.deadline, txn.insert_many(&collection, docs, within)).await?;
        Ok(ids
            .into_iter()
            .map(id_doc)
            .collect::<Result<_, WitError>>()?)
    }
}
