//! Host side of the `database` interface: every call runs on the connection manager (one lease
//! per call, so it counts in the database's stats), under the request's deadline, with the
//! plugin's size and cursor caps, on a database the plugin is allowed to use (the checks are
//! in `sandbox`, the conversions in `convert`).

use std::future::Future;
use std::time::Instant;

use bson::{doc, Document, RawDocumentBuf};
use mongodb::options::{
    AggregateOptions, CountOptions, CreateIndexOptions, DistinctOptions, FindOneAndUpdateOptions,
    FindOneOptions, IndexOptions, ReturnDocument,
};
use mongodb::IndexModel;
use wasmtime::component::Resource;

use super::batch::{read_batch, Buffered, Waiting};
use super::bindings::database::{
    FindOneAndUpdateOptions as WitFindOneAndUpdateOptions, FindOptions as WitFindOptions, Host,
    HostCursor, HostDb, IndexOptions as WitIndexOptions, UpdateOptions as WitUpdateOptions,
    UpdateResult as WitUpdateResult,
};
use super::bindings::types::Error as WitError;
use super::convert::{
    encode, find_options, id_doc, invalid, options_len, to_wit, update_document,
    update_modifications, update_result,
};
use super::host_error::HostError;
use super::input::{batch_bytes, decode, decode_opt, max_time};
use super::sandbox::{check_collection, check_pipeline};
use super::state::RequestState;
use crate::pool::{self, Db};

/// A database resource handed to a plugin.
pub struct DbHandle {
    db: Db,
}

/// A cursor resource handed to a plugin. Its documents stay the server's bytes, never decoded.
pub struct CursorHandle {
    cursor: pool::Cursor<RawDocumentBuf>,
    /// What it holds back and what the driver may buffer for it.
    buffered: Buffered,
}

/// Most documents one `next-batch` call returns.
const MAX_BATCH_DOCS: u32 = 10_000;

type WitResult<T> = Result<T, WitError>;
/// The result of a host function that returns a WIT `result<_, error>`.
pub(crate) type HostResult<T> = Result<T, HostError>;

/// Runs a manager operation until `deadline` (the store data is not `Sync`, so this takes the
/// deadline by value rather than borrowing the state across the await).
pub(crate) async fn bounded<R>(
    deadline: Instant,
    fut: impl Future<Output = pool::Result<R>>,
) -> WitResult<R> {
    let remaining = deadline.saturating_duration_since(Instant::now());
    match tokio::time::timeout(remaining, fut).await {
        Ok(result) => result.map_err(to_wit),
        Err(_) => Err(WitError::Timeout(
            "the request's deadline passed during a database call".into(),
        )),
    }
}

impl RequestState {
    pub(crate) fn db_of(&self, handle: &Resource<DbHandle>) -> wasmtime::Result<Db> {
        Ok(self.table.get(handle)?.db.clone())
    }

    /// The checked collection and decoded filter of an operation on `handle`'s database;
    /// `extra` more input bytes come with the call (counted against the host-memory budget).
    fn filtered(
        &self,
        handle: &Resource<DbHandle>,
        collection: &str,
        filter: &[u8],
        extra: usize,
    ) -> HostResult<(pool::Collection<Document>, Document)> {
        let db = self.db_of(handle)?;
        check_collection(collection)?;
        self.input_fits(filter.len().saturating_add(extra))?;
        let filter = decode(filter, "filter", self.query_rules())?;
        Ok((db.collection::<Document>(collection), filter))
    }

    /// Counts `bytes` of results against the per-call and per-request caps.
    pub(crate) fn charge(&mut self, bytes: usize) -> WitResult<()> {
        let limits = self.scope.limits;
        if bytes > limits.max_result_bytes {
            return Err(WitError::TooLarge(limits.max_result_bytes as u64));
        }
        if self.result_bytes.saturating_add(bytes) > limits.max_request_result_bytes {
            return Err(WitError::TooLarge(limits.max_request_result_bytes as u64));
        }
        self.result_bytes += bytes;
        Ok(())
    }

    fn encode_charged(&mut self, doc: &Document) -> WitResult<Vec<u8>> {
        let bytes = encode(doc)?;
        self.charge(bytes.len())?;
        Ok(bytes)
    }

    /// Hands a new cursor to the plugin. Its first document (in the batch the server sent
    /// with the reply) is read at once, so that the bytes the driver buffers for it are known
    /// and held against the host-memory budget from the start: refused (and closed) when
    /// they do not fit.
    async fn new_cursor(
        &mut self,
        mut cursor: pool::Cursor<RawDocumentBuf>,
        batch_size: u32,
        reserved: usize,
    ) -> HostResult<Resource<CursorHandle>> {
        let first = bounded(self.deadline, async { cursor.next().await.transpose() }).await?;
        let max_doc = first.as_ref().map_or(0, |d| d.as_bytes().len());
        self.doc_size_hint = self.doc_size_hint.max(max_doc);
        let charged = reserved.max(batch_bytes(batch_size, max_doc));
        if let Err(e) = self.recharge(0, charged) {
            // Refused: the cursor (and the batch the driver buffered for it) is dropped here.
            self.host_bytes = self.host_bytes.saturating_sub(charged);
            return Err(e.into());
        }
        self.open_cursors += 1;
        Ok(self.table.push(CursorHandle {
            cursor,
            buffered: Buffered::new(first, batch_size, charged),
        })?)
    }

    fn cursor_slot(&self) -> WitResult<()> {
        let max = self.scope.limits.max_open_cursors;
        if self.open_cursors >= max {
            Err(WitError::LimitReached(format!(
                "at most {max} cursors may be open at once; drop cursors you no longer need"
            )))
        } else {
            Ok(())
        }
    }
}

impl Host for RequestState {
    fn tenant(&mut self) -> wasmtime::Result<Resource<DbHandle>> {
        let db = self.tenant_db()?.clone();
        Ok(self.table.push(DbHandle { db })?)
    }

    fn open(&mut self, name: String) -> HostResult<Resource<DbHandle>> {
        if name == self.tenant_db()?.name() {
            return Ok(self.tenant()?);
        }
        if !self.scope.grants.contains(&name) {
            return Err(HostError::Wit(WitError::Denied(format!(
                "plugin {} may only use its tenant's database; {name:?} is not granted in its manifest",
                self.scope.plugin
            ))));
        }
        let db = self.manager.db(&name).map_err(to_wit)?;
        Ok(self.table.push(DbHandle { db })?)
    }
}

impl HostDb for RequestState {
    fn name(&mut self, this: Resource<DbHandle>) -> wasmtime::Result<String> {
        Ok(self.db_of(&this)?.name().to_string())
    }

    async fn find(
        &mut self,
        this: Resource<DbHandle>,
        collection: String,
        filter: Vec<u8>,
        options: WitFindOptions,
    ) -> HostResult<Resource<CursorHandle>> {
        let db = self.db_of(&this)?;
        check_collection(&collection)?;
        self.cursor_slot()?;
        self.input_fits(filter.len() + options_len(&options.sort, &options.projection))?;
        let rules = self.query_rules();
        let filter = decode(&filter, "filter", rules)?;
        let (batch_size, reserved) = self.plan_cursor(options.batch_size, MAX_BATCH_DOCS)?;
        let options = find_options(&options, rules, batch_size, self.deadline)?;
        let coll = db.collection::<RawDocumentBuf>(&collection);
        let cursor = bounded(self.deadline, coll.find(filter, options)).await?;
        self.new_cursor(cursor, batch_size, reserved).await
    }

    async fn find_one(
        &mut self,
        this: Resource<DbHandle>,
        collection: String,
        filter: Vec<u8>,
        options: WitFindOptions,
    ) -> HostResult<Option<Vec<u8>>> {
        let db = self.db_of(&this)?;
        check_collection(&collection)?;
        self.input_fits(filter.len() + options_len(&options.sort, &options.projection))?;
        let rules = self.query_rules();
        let filter = decode(&filter, "filter", rules)?;
        let options = FindOneOptions::builder()
            .sort(decode_opt(&options.sort, "sort", rules)?)
            .projection(decode_opt(&options.projection, "projection", rules)?)
            .skip(options.skip)
            .max_time(max_time(self.deadline))
            .build();
        // Raw documents: the server's bytes go to the guest as they are, with no decoding
        // and re-encoding in between.
        let coll = db.collection::<RawDocumentBuf>(&collection);
        let found = bounded(self.deadline, coll.find_one(filter, options)).await?;
        Ok(found
            .map(|raw| {
                let bytes = raw.into_bytes();
                self.charge(bytes.len()).map(|()| bytes)
            })
            .transpose()?)
    }

    async fn insert_one(
        &mut self,
        this: Resource<DbHandle>,
        collection: String,
        doc: Vec<u8>,
    ) -> HostResult<Vec<u8>> {
        let db = self.db_of(&this)?;
        check_collection(&collection)?;
        self.input_fits(doc.len())?;
        let doc = decode(&doc, "document", self.document_rules())?;
        let coll = db.collection::<Document>(&collection);
        let within = max_time(self.deadline);
        let ids = bounded(self.deadline, coll.insert_many_within(vec![doc], within)).await?;
        match ids.into_iter().next() {
            Some(id) => Ok(id_doc(id)?),
            None => Err(invalid("the server inserted nothing").into()),
        }
    }

    async fn insert_many(
        &mut self,
        this: Resource<DbHandle>,
        collection: String,
        docs: Vec<Vec<u8>>,
    ) -> HostResult<Vec<Vec<u8>>> {
        let db = self.db_of(&this)?;
        check_collection(&collection)?;
        self.input_fits(docs.iter().map(Vec::len).sum())?;
        let rules = self.document_rules();
        let docs: Vec<Document> = docs
            .iter()
            .enumerate()
            .map(|(i, d)| decode(d, &format!("document {i}"), rules))
            .collect::<WitResult<_>>()?;
        let coll = db.collection::<Document>(&collection);
        let within = max_time(self.deadline);
        let ids = bounded(self.deadline, coll.insert_many_within(docs, within)).await?;
        Ok(ids.into_iter().map(id_doc).collect::<WitResult<_>>()?)
    }

    async fn update_one(
        &mut self,
        this: Resource<DbHandle>,
        collection: String,
        filter: Vec<u8>,
        update: Vec<u8>,
        options: WitUpdateOptions,
    ) -> HostResult<WitUpdateResult> {
        self.update(this, collection, filter, update, options, false)
            .await
    }

    async fn update_many(
        &mut self,
        this: Resource<DbHandle>,
        collection: String,
        filter: Vec<u8>,
        update: Vec<u8>,
        options: WitUpdateOptions,
    ) -> HostResult<WitUpdateResult> {
        self.update(this, collection, filter, update, options, true)
            .await
    }

    async fn replace_one(
        &mut self,
        this: Resource<DbHandle>,
        collection: String,
        filter: Vec<u8>,
        replacement: Vec<u8>,
        options: WitUpdateOptions,
    ) -> HostResult<WitUpdateResult> {
        let (coll, filter) = self.filtered(&this, &collection, &filter, replacement.len())?;
        let replacement = decode(&replacement, "replacement", self.document_rules())?;
        if replacement.keys().any(|k| k.starts_with('$')) {
            return Err(HostError::Wit(invalid(
                "a replacement document may not contain update operators",
            )));
        }
        let within = max_time(self.deadline);
        let replace = coll.update_within(filter, replacement, options.upsert, false, within);
        let result = bounded(self.deadline, replace).await?;
        Ok(update_result(result)?)
    }

    async fn delete_one(
        &mut self,
        this: Resource<DbHandle>,
        collection: String,
        filter: Vec<u8>,
    ) -> HostResult<u64> {
        let (coll, filter) = self.filtered(&this, &collection, &filter, 0)?;
        let within = max_time(self.deadline);
        Ok(bounded(self.deadline, coll.delete_within(filter, false, within)).await?)
    }

    async fn delete_many(
        &mut self,
        this: Resource<DbHandle>,
        collection: String,
        filter: Vec<u8>,
    ) -> HostResult<u64> {
        let (coll, filter) = self.filtered(&this, &collection, &filter, 0)?;
        let within = max_time(self.deadline);
        Ok(bounded(self.deadline, coll.delete_within(filter, true, within)).await?)
    }

    async fn count_documents(
        &mut self,
        this: Resource<DbHandle>,
        collection: String,
        filter: Vec<u8>,
    ) -> HostResult<u64> {
        let (coll, filter) = self.filtered(&this, &collection, &filter, 0)?;
        let options = CountOptions::builder()
            .max_time(max_time(self.deadline))
            .build();
        Ok(bounded(self.deadline, coll.count_documents_with(filter, options)).await?)
    }

    async fn aggregate(
        &mut self,
        this: Resource<DbHandle>,
        collection: String,
        pipeline: Vec<Vec<u8>>,
    ) -> HostResult<Resource<CursorHandle>> {
        let db = self.db_of(&this)?;
        check_collection(&collection)?;
        self.cursor_slot()?;
        self.input_fits(pipeline.iter().map(Vec::len).sum())?;
        let rules = self.query_rules();
        let pipeline: Vec<Document> = pipeline
            .iter()
            .enumerate()
            .map(|(i, d)| decode(d, &format!("pipeline stage {i}"), rules))
            .collect::<WitResult<_>>()?;
        check_pipeline(&pipeline, db.name())?;
        let (batch_size, reserved) = self.plan_cursor(None, MAX_BATCH_DOCS)?;
        let options = AggregateOptions::builder()
            .batch_size(batch_size)
            .max_time(max_time(self.deadline))
            .build();
        let coll = db.collection::<Document>(&collection);
        let cursor = bounded(self.deadline, coll.aggregate_with(pipeline, options)).await?;
        self.new_cursor(cursor, batch_size, reserved).await
    }

    async fn distinct(
        &mut self,
        this: Resource<DbHandle>,
        collection: String,
        field: String,
        filter: Vec<u8>,
    ) -> HostResult<Vec<u8>> {
        let (coll, filter) = self.filtered(&this, &collection, &filter, 0)?;
        let options = DistinctOptions::builder()
            .max_time(max_time(self.deadline))
            .build();
        let values = match bounded(
            self.deadline,
            coll.distinct_with(&field, filter.clone(), options),
        )
        .await
        {
            // FerretDB 1.x refuses `maxTimeMS` on distinct: sent again without it (the host's
            // own deadline still ends the wait).
            Err(WitError::Server(e)) if e.code == 9 && e.message.contains("maxTimeMS") => {
                bounded(self.deadline, coll.distinct(&field, filter)).await?
            }
            other => other?,
        };
        Ok(self.encode_charged(&doc! { "values": values })?)
    }

    async fn find_one_and_update(
        &mut self,
        this: Resource<DbHandle>,
        collection: String,
        filter: Vec<u8>,
        update: Vec<u8>,
        options: WitFindOneAndUpdateOptions,
    ) -> HostResult<Option<Vec<u8>>> {
        let extra = update.len() + options_len(&options.sort, &options.projection);
        let (coll, filter) = self.filtered(&this, &collection, &filter, extra)?;
        let rules = self.query_rules();
        let update = update_modifications(&update, rules)?;
        let opts = FindOneAndUpdateOptions::builder()
            .sort(decode_opt(&options.sort, "sort", rules)?)
            .projection(decode_opt(&options.projection, "projection", rules)?)
            .upsert(options.upsert)
            .max_time(max_time(self.deadline))
            .return_document(if options.return_after {
                ReturnDocument::After
            } else {
                ReturnDocument::Before
            })
            .build();
        let found = bounded(
            self.deadline,
            coll.find_one_and_update(filter, update, opts),
        )
        .await?;
        Ok(found.map(|d| self.encode_charged(&d)).transpose()?)
    }

    async fn create_index(
        &mut self,
        this: Resource<DbHandle>,
        collection: String,
        keys: Vec<u8>,
        options: WitIndexOptions,
    ) -> HostResult<String> {
        let db = self.db_of(&this)?;
        check_collection(&collection)?;
        self.input_fits(keys.len())?;
        let keys = decode(&keys, "index keys", self.query_rules())?;
        if keys.is_empty() {
            return Err(HostError::Wit(invalid("index keys are empty")));
        }
        let index = IndexModel::builder()
            .keys(keys)
            .options(
                IndexOptions::builder()
                    .name(options.name)
                    .unique(options.unique.then_some(true))
                    .expire_after(
                        options
                            .expire_after_seconds
                            .map(std::time::Duration::from_secs),
                    )
                    .build(),
            )
            .build();
        let coll = db.collection::<Document>(&collection);
        let options = CreateIndexOptions::builder()
            .max_time(max_time(self.deadline))
            .build();
        Ok(bounded(self.deadline, coll.create_index_with(index, options)).await?)
    }

    async fn list_collections(&mut self, this: Resource<DbHandle>) -> HostResult<Vec<String>> {
        let db = self.db_of(&this)?;
        let within = max_time(self.deadline);
        let mut names = bounded(self.deadline, db.list_collection_names_within(within)).await?;
        names.retain(|n| !n.starts_with("system."));
        names.sort();
        Ok(names)
    }

    fn drop(&mut self, this: Resource<DbHandle>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

impl RequestState {
    async fn update(
        &mut self,
        this: Resource<DbHandle>,
        collection: String,
        filter: Vec<u8>,
        update: Vec<u8>,
        options: WitUpdateOptions,
        many: bool,
    ) -> HostResult<WitUpdateResult> {
        let (coll, filter) = self.filtered(&this, &collection, &filter, update.len())?;
        let update = update_document(&update, self.query_rules())?;
        let within = max_time(self.deadline);
        let run = coll.update_within(filter, update, options.upsert, many, within);
        let result = bounded(self.deadline, run).await?;
        Ok(update_result(result)?)
    }
}

impl HostCursor for RequestState {
    async fn next_batch(
        &mut self,
        this: Resource<CursorHandle>,
        max: u32,
    ) -> HostResult<Vec<Vec<u8>>> {
        let max = max.clamp(1, MAX_BATCH_DOCS) as usize;
        let per_call = self.scope.limits.max_result_bytes;
        let waiting = Waiting::Cursor {
            deadline: self.deadline,
        };
        let handle = self.table.get_mut(&this)?;
        let buffered = &mut handle.buffered;
        let batch = read_batch(&mut handle.cursor, buffered, max, per_call, waiting, |_| {}).await;
        self.doc_size_hint = self.doc_size_hint.max(buffered.max_doc);
        self.settle(batch)
    }

    fn drop(&mut self, this: Resource<CursorHandle>) -> wasmtime::Result<()> {
        let handle = self.table.delete(this)?;
        self.host_bytes = self.host_bytes.saturating_sub(handle.buffered.charged);
        self.open_cursors = self.open_cursors.saturating_sub(1);
        Ok(())
    }
}
