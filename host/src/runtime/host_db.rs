//! Host side of the `database` interface: every call runs on the connection manager (one lease
//! per call, so it counts in the database's stats), under the request's deadline, with the
//! plugin's size and cursor caps, on a database the plugin is allowed to use.

use std::future::Future;
use std::time::Instant;

use bson::{doc, Bson, Document, RawDocumentBuf};
use mongodb::options::{
    AggregateOptions, CountOptions, CreateIndexOptions, DistinctOptions, FindOneAndUpdateOptions,
    FindOneOptions, FindOptions, IndexOptions, ReturnDocument, UpdateModifications,
};
use mongodb::IndexModel;
use wasmtime::component::Resource;

use super::bindings::database::{
    FindOneAndUpdateOptions as WitFindOneAndUpdateOptions, FindOptions as WitFindOptions, Host,
    HostCursor, HostDb, IndexOptions as WitIndexOptions, UpdateOptions as WitUpdateOptions,
    UpdateResult as WitUpdateResult,
};
use super::bindings::types::{Error as WitError, ServerError};
use super::input::{self, batch_bytes, decode, decode_opt, max_time, InputRules};
use super::state::RequestState;
use crate::pool::{self, Db};

/// A database resource handed to a plugin.
pub struct DbHandle {
    db: Db,
}

/// A cursor resource handed to a plugin. Its documents stay the server's bytes, never decoded.
pub struct CursorHandle {
    cursor: pool::Cursor<RawDocumentBuf>,
    /// A document fetched but not returned because the batch was full.
    pending: Option<RawDocumentBuf>,
    /// Documents per server batch.
    batch_size: u32,
    /// The largest document read from it so far.
    max_doc: usize,
    /// Bytes of the request's host-memory budget it holds.
    charged: usize,
}

/// Most documents one `next-batch` call returns.
const MAX_BATCH_DOCS: u32 = 10_000;

type WitResult<T> = Result<T, WitError>;

fn invalid(msg: impl Into<String>) -> WitError {
    WitError::InvalidArgument(msg.into())
}

fn encode(doc: &Document) -> WitResult<Vec<u8>> {
    let mut out = Vec::new();
    doc.to_writer(&mut out).map_err(|e| {
        WitError::Server(ServerError {
            code: 0,
            code_name: None,
            message: format!("cannot encode result: {e}"),
        })
    })?;
    Ok(out)
}

fn id_doc(id: Bson) -> WitResult<Vec<u8>> {
    encode(&doc! { "_id": id })
}

/// Maps a connection-manager error to the WIT error variant.
pub(crate) fn to_wit(e: pool::Error) -> WitError {
    use pool::Error as E;
    match e {
        E::InvalidDatabaseName { .. }
        | E::InvalidPriority(_)
        | E::InvalidArgument(_)
        | E::Config(_) => WitError::InvalidArgument(e.to_string()),
        E::ReservedDatabase(_) => WitError::Denied(e.to_string()),
        E::LimitReached { .. } => WitError::LimitReached(e.to_string()),
        E::Destroyed => WitError::Unavailable(e.to_string()),
        E::Unsupported(m) => WitError::Unsupported(m),
        E::Unavailable(m) => WitError::Unavailable(m),
        E::Timeout(m) => WitError::Timeout(m),
        E::DuplicateKey(m) => WitError::DuplicateKey(m),
        E::Server {
            code,
            code_name,
            message,
        } => WitError::Server(ServerError {
            code,
            code_name,
            message,
        }),
        E::Driver(m) => WitError::Server(ServerError {
            code: 0,
            code_name: None,
            message: m,
        }),
    }
}

/// Collection names a plugin may use.
pub(crate) fn check_collection(name: &str) -> WitResult<()> {
    if name.is_empty() {
        return Err(invalid("collection name is empty"));
    }
    if name.len() > 255 || name.contains('\0') || name.contains('$') {
        return Err(invalid(format!(
            "invalid collection name {:?}",
            name.escape_default().to_string()
        )));
    }
    if name.starts_with("system.") {
        return Err(WitError::Denied(format!(
            "system collection {name:?} is not accessible to plugins"
        )));
    }
    Ok(())
}

/// Stages that can name another database.
const CROSS_DB_STAGES: &[&str] = &["$out", "$merge", "$lookup", "$graphLookup", "$unionWith"];
/// Stages that inspect the server rather than the tenant's data.
const DENIED_STAGES: &[&str] = &[
    "$currentOp",
    "$listSessions",
    "$listLocalSessions",
    "$planCacheStats",
    "$collStats",
    "$indexStats",
    "$listSearchIndexes",
];

/// Refuses pipeline stages that reach outside `own_db` (at any nesting depth).
pub(crate) fn check_pipeline(pipeline: &[Document], own_db: &str) -> WitResult<()> {
    /// The database a cross-database stage targets, if it names one.
    fn target_db<'a>(stage: &str, spec: &'a Bson) -> Option<&'a Bson> {
        let spec = spec.as_document()?;
        match stage {
            "$out" => spec.get("db"),
            "$merge" => spec.get_document("into").ok()?.get("db"),
            "$lookup" | "$graphLookup" => spec.get_document("from").ok()?.get("db"),
            "$unionWith" => spec.get_document("coll").ok()?.get("db"),
            _ => None,
        }
    }
    fn names_other_db(stage: &str, spec: &Bson, own_db: &str) -> bool {
        target_db(stage, spec).is_some_and(|db| db.as_str() != Some(own_db))
    }
    fn walk(stages: &[Document], own_db: &str) -> WitResult<()> {
        for stage in stages {
            for (name, spec) in stage {
                if DENIED_STAGES.contains(&name.as_str()) {
                    return Err(WitError::Denied(format!(
                        "aggregation stage {name} is not available to plugins"
                    )));
                }
                if CROSS_DB_STAGES.contains(&name.as_str()) && names_other_db(name, spec, own_db) {
                    return Err(WitError::Denied(format!(
                        "aggregation stage {name} may not reach another database"
                    )));
                }
                // Nested pipelines ($lookup, $unionWith, $facet) are checked the same way.
                let nested: Vec<&Bson> = match spec {
                    Bson::Document(d) => d.values().collect(),
                    _ => Vec::new(),
                };
                for value in nested {
                    if let Bson::Array(items) = value {
                        let docs: Vec<Document> = items
                            .iter()
                            .filter_map(|b| b.as_document().cloned())
                            .collect();
                        if docs.len() == items.len() && !docs.is_empty() {
                            walk(&docs, own_db)?;
                        }
                    }
                }
            }
        }
        Ok(())
    }
    walk(pipeline, own_db)
}

/// Runs a manager operation until `deadline` (the store data is not `Sync`, so this takes the
/// deadline by value rather than borrowing the state across the await).
async fn bounded<R>(deadline: Instant, fut: impl Future<Output = pool::Result<R>>) -> WitResult<R> {
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
    ) -> wasmtime::Result<WitResult<(pool::Collection<Document>, Document)>> {
        let db = self.db_of(handle)?;
        Ok(check_collection(collection)
            .and_then(|()| self.input_fits(filter.len().saturating_add(extra)))
            .and_then(|()| {
                Ok((
                    db.collection::<Document>(collection),
                    decode(filter, "filter", self.query_rules())?,
                ))
            }))
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
    ) -> wasmtime::Result<WitResult<Resource<CursorHandle>>> {
        let first = match bounded(self.deadline, async { cursor.next().await.transpose() }).await {
            Ok(first) => first,
            Err(e) => return Ok(Err(e)),
        };
        let max_doc = first.as_ref().map_or(0, |d| d.as_bytes().len());
        self.doc_size_hint = self.doc_size_hint.max(max_doc);
        let charged = reserved.max(batch_bytes(batch_size, max_doc));
        if let Err(e) = self.recharge(0, charged) {
            // Refused: the cursor (and the batch the driver buffered for it) is dropped here.
            self.host_bytes = self.host_bytes.saturating_sub(charged);
            return Ok(Err(e));
        }
        self.open_cursors += 1;
        Ok(Ok(self.table.push(CursorHandle {
            cursor,
            pending: first,
            batch_size,
            max_doc,
            charged,
        })?))
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

/// `?` for the inner (WIT) result inside a function returning `wasmtime::Result<WitResult<_>>`.
macro_rules! wit_try {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        }
    };
}

fn find_options(
    o: &WitFindOptions,
    rules: InputRules,
    batch_size: u32,
    deadline: Instant,
) -> WitResult<FindOptions> {
    Ok(FindOptions::builder()
        .sort(decode_opt(&o.sort, "sort", rules)?)
        .projection(decode_opt(&o.projection, "projection", rules)?)
        .skip(o.skip)
        .limit(o.limit)
        .batch_size(batch_size)
        .max_time(max_time(deadline))
        .build())
}

/// Bytes of the optional documents of find options.
fn options_len(sort: &Option<Vec<u8>>, projection: &Option<Vec<u8>>) -> usize {
    sort.as_ref().map_or(0, Vec::len) + projection.as_ref().map_or(0, Vec::len)
}

fn update_modifications(bytes: &[u8], rules: InputRules) -> WitResult<UpdateModifications> {
    Ok(UpdateModifications::Document(update_document(
        bytes, rules,
    )?))
}

/// An update is a document of operators (a pipeline update is not part of the contract: the
/// WIT sends one document).
fn update_document(bytes: &[u8], rules: InputRules) -> WitResult<Document> {
    let update = decode(bytes, "update", rules)?;
    match update.keys().next() {
        Some(first) if first.starts_with('$') => Ok(update),
        _ => Err(invalid(
            "an update document must contain update operators ($set, $inc, ...)",
        )),
    }
}

fn update_result(r: pool::WriteOutcome) -> WitResult<WitUpdateResult> {
    Ok(WitUpdateResult {
        matched: r.matched,
        modified: r.modified,
        upserted_id: r.upserted_id.map(id_doc).transpose()?,
    })
}

impl Host for RequestState {
    fn tenant(&mut self) -> wasmtime::Result<Resource<DbHandle>> {
        let db = self.tenant_db()?.clone();
        Ok(self.table.push(DbHandle { db })?)
    }

    fn open(&mut self, name: String) -> wasmtime::Result<WitResult<Resource<DbHandle>>> {
        if name == self.tenant_db()?.name() {
            return self.tenant().map(Ok);
        }
        if !self.scope.grants.contains(&name) {
            return Ok(Err(WitError::Denied(format!(
                "plugin {} may only use its tenant's database; {name:?} is not granted in its manifest",
                self.scope.plugin
            ))));
        }
        let db = wit_try!(self.manager.db(&name).map_err(to_wit));
        Ok(Ok(self.table.push(DbHandle { db })?))
    }
}

impl super::bindings::types::Host for RequestState {}

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
    ) -> wasmtime::Result<WitResult<Resource<CursorHandle>>> {
        let db = self.db_of(&this)?;
        wit_try!(check_collection(&collection));
        wit_try!(self.cursor_slot());
        wit_try!(self.input_fits(filter.len() + options_len(&options.sort, &options.projection)));
        let rules = self.query_rules();
        let filter = wit_try!(decode(&filter, "filter", rules));
        let (batch_size, reserved) = wit_try!(self.plan_cursor(options.batch_size, MAX_BATCH_DOCS));
        let options = wit_try!(find_options(&options, rules, batch_size, self.deadline));
        let coll = db.collection::<RawDocumentBuf>(&collection);
        let cursor = wit_try!(bounded(self.deadline, coll.find(filter, options)).await);
        self.new_cursor(cursor, batch_size, reserved).await
    }

    async fn find_one(
        &mut self,
        this: Resource<DbHandle>,
        collection: String,
        filter: Vec<u8>,
        options: WitFindOptions,
    ) -> wasmtime::Result<WitResult<Option<Vec<u8>>>> {
        let db = self.db_of(&this)?;
        wit_try!(check_collection(&collection));
        wit_try!(self.input_fits(filter.len() + options_len(&options.sort, &options.projection)));
        let rules = self.query_rules();
        let filter = wit_try!(decode(&filter, "filter", rules));
        let options = FindOneOptions::builder()
            .sort(wit_try!(decode_opt(&options.sort, "sort", rules)))
            .projection(wit_try!(decode_opt(
                &options.projection,
                "projection",
                rules
            )))
            .skip(options.skip)
            .max_time(max_time(self.deadline))
            .build();
        // Raw documents: the server's bytes go to the guest as they are, with no decoding
        // and re-encoding in between.
        let coll = db.collection::<RawDocumentBuf>(&collection);
        let found = wit_try!(bounded(self.deadline, coll.find_one(filter, options)).await);
        Ok(found
            .map(|raw| {
                let bytes = raw.into_bytes();
                self.charge(bytes.len()).map(|()| bytes)
            })
            .transpose())
    }

    async fn insert_one(
        &mut self,
        this: Resource<DbHandle>,
        collection: String,
        doc: Vec<u8>,
    ) -> wasmtime::Result<WitResult<Vec<u8>>> {
        let db = self.db_of(&this)?;
        wit_try!(check_collection(&collection));
        wit_try!(self.input_fits(doc.len()));
        let doc = wit_try!(decode(&doc, "document", self.document_rules()));
        let coll = db.collection::<Document>(&collection);
        let within = max_time(self.deadline);
        let ids =
            wit_try!(bounded(self.deadline, coll.insert_many_within(vec![doc], within)).await);
        match ids.into_iter().next() {
            Some(id) => Ok(id_doc(id)),
            None => Ok(Err(invalid("the server inserted nothing"))),
        }
    }

    async fn insert_many(
        &mut self,
        this: Resource<DbHandle>,
        collection: String,
        docs: Vec<Vec<u8>>,
    ) -> wasmtime::Result<WitResult<Vec<Vec<u8>>>> {
        let db = self.db_of(&this)?;
        wit_try!(check_collection(&collection));
        wit_try!(self.input_fits(docs.iter().map(Vec::len).sum()));
        let rules = self.document_rules();
        let docs: Vec<Document> = wit_try!(docs
            .iter()
            .enumerate()
            .map(|(i, d)| decode(d, &format!("document {i}"), rules))
            .collect::<WitResult<_>>());
        let coll = db.collection::<Document>(&collection);
        let within = max_time(self.deadline);
        let ids = wit_try!(bounded(self.deadline, coll.insert_many_within(docs, within)).await);
        Ok(ids.into_iter().map(id_doc).collect())
    }

    async fn update_one(
        &mut self,
        this: Resource<DbHandle>,
        collection: String,
        filter: Vec<u8>,
        update: Vec<u8>,
        options: WitUpdateOptions,
    ) -> wasmtime::Result<WitResult<WitUpdateResult>> {
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
    ) -> wasmtime::Result<WitResult<WitUpdateResult>> {
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
    ) -> wasmtime::Result<WitResult<WitUpdateResult>> {
        let (coll, filter) =
            wit_try!(self.filtered(&this, &collection, &filter, replacement.len())?);
        let replacement = wit_try!(decode(&replacement, "replacement", self.document_rules()));
        if replacement.keys().any(|k| k.starts_with('$')) {
            return Ok(Err(invalid(
                "a replacement document may not contain update operators",
            )));
        }
        let within = max_time(self.deadline);
        let replace = coll.update_within(filter, replacement, options.upsert, false, within);
        let result = wit_try!(bounded(self.deadline, replace).await);
        Ok(update_result(result))
    }

    async fn delete_one(
        &mut self,
        this: Resource<DbHandle>,
        collection: String,
        filter: Vec<u8>,
    ) -> wasmtime::Result<WitResult<u64>> {
        let (coll, filter) = wit_try!(self.filtered(&this, &collection, &filter, 0)?);
        let within = max_time(self.deadline);
        Ok(bounded(self.deadline, coll.delete_within(filter, false, within)).await)
    }

    async fn delete_many(
        &mut self,
        this: Resource<DbHandle>,
        collection: String,
        filter: Vec<u8>,
    ) -> wasmtime::Result<WitResult<u64>> {
        let (coll, filter) = wit_try!(self.filtered(&this, &collection, &filter, 0)?);
        let within = max_time(self.deadline);
        Ok(bounded(self.deadline, coll.delete_within(filter, true, within)).await)
    }

    async fn count_documents(
        &mut self,
        this: Resource<DbHandle>,
        collection: String,
        filter: Vec<u8>,
    ) -> wasmtime::Result<WitResult<u64>> {
        let (coll, filter) = wit_try!(self.filtered(&this, &collection, &filter, 0)?);
        let options = CountOptions::builder()
            .max_time(max_time(self.deadline))
            .build();
        Ok(bounded(self.deadline, coll.count_documents_with(filter, options)).await)
    }

    async fn aggregate(
        &mut self,
        this: Resource<DbHandle>,
        collection: String,
        pipeline: Vec<Vec<u8>>,
    ) -> wasmtime::Result<WitResult<Resource<CursorHandle>>> {
        let db = self.db_of(&this)?;
        wit_try!(check_collection(&collection));
        wit_try!(self.cursor_slot());
        wit_try!(self.input_fits(pipeline.iter().map(Vec::len).sum()));
        let rules = self.query_rules();
        let pipeline: Vec<Document> = wit_try!(pipeline
            .iter()
            .enumerate()
            .map(|(i, d)| decode(d, &format!("pipeline stage {i}"), rules))
            .collect::<WitResult<_>>());
        wit_try!(check_pipeline(&pipeline, db.name()));
        let (batch_size, reserved) = wit_try!(self.plan_cursor(None, MAX_BATCH_DOCS));
        let options = AggregateOptions::builder()
            .batch_size(batch_size)
            .max_time(max_time(self.deadline))
            .build();
        let coll = db.collection::<Document>(&collection);
        let cursor = wit_try!(bounded(self.deadline, coll.aggregate_with(pipeline, options)).await);
        self.new_cursor(cursor, batch_size, reserved).await
    }

    async fn distinct(
        &mut self,
        this: Resource<DbHandle>,
        collection: String,
        field: String,
        filter: Vec<u8>,
    ) -> wasmtime::Result<WitResult<Vec<u8>>> {
        let (coll, filter) = wit_try!(self.filtered(&this, &collection, &filter, 0)?);
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
                wit_try!(bounded(self.deadline, coll.distinct(&field, filter)).await)
            }
            other => wit_try!(other),
        };
        Ok(self.encode_charged(&doc! { "values": values }))
    }

    async fn find_one_and_update(
        &mut self,
        this: Resource<DbHandle>,
        collection: String,
        filter: Vec<u8>,
        update: Vec<u8>,
        options: WitFindOneAndUpdateOptions,
    ) -> wasmtime::Result<WitResult<Option<Vec<u8>>>> {
        let extra = update.len() + options_len(&options.sort, &options.projection);
        let (coll, filter) = wit_try!(self.filtered(&this, &collection, &filter, extra)?);
        let rules = self.query_rules();
        let update = wit_try!(update_modifications(&update, rules));
        let opts = FindOneAndUpdateOptions::builder()
            .sort(wit_try!(decode_opt(&options.sort, "sort", rules)))
            .projection(wit_try!(decode_opt(
                &options.projection,
                "projection",
                rules
            )))
            .upsert(options.upsert)
            .max_time(max_time(self.deadline))
            .return_document(if options.return_after {
                ReturnDocument::After
            } else {
                ReturnDocument::Before
            })
            .build();
        let found = wit_try!(
            bounded(
                self.deadline,
                coll.find_one_and_update(filter, update, opts)
            )
            .await
        );
        Ok(found.map(|d| self.encode_charged(&d)).transpose())
    }

    async fn create_index(
        &mut self,
        this: Resource<DbHandle>,
        collection: String,
        keys: Vec<u8>,
        options: WitIndexOptions,
    ) -> wasmtime::Result<WitResult<String>> {
        let db = self.db_of(&this)?;
        wit_try!(check_collection(&collection));
        wit_try!(self.input_fits(keys.len()));
        let keys = wit_try!(decode(&keys, "index keys", self.query_rules()));
        if keys.is_empty() {
            return Ok(Err(invalid("index keys are empty")));
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
        Ok(bounded(self.deadline, coll.create_index_with(index, options)).await)
    }

    async fn list_collections(
        &mut self,
        this: Resource<DbHandle>,
    ) -> wasmtime::Result<WitResult<Vec<String>>> {
        let db = self.db_of(&this)?;
        let within = max_time(self.deadline);
        let mut names =
            wit_try!(bounded(self.deadline, db.list_collection_names_within(within)).await);
        names.retain(|n| !n.starts_with("system."));
        names.sort();
        Ok(Ok(names))
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
    ) -> wasmtime::Result<WitResult<WitUpdateResult>> {
        let (coll, filter) = wit_try!(self.filtered(&this, &collection, &filter, update.len())?);
        let update = wit_try!(update_document(&update, self.query_rules()));
        let within = max_time(self.deadline);
        let run = coll.update_within(filter, update, options.upsert, many, within);
        let result = wit_try!(bounded(self.deadline, run).await);
        Ok(update_result(result))
    }
}

impl HostCursor for RequestState {
    async fn next_batch(
        &mut self,
        this: Resource<CursorHandle>,
        max: u32,
    ) -> wasmtime::Result<WitResult<Vec<Vec<u8>>>> {
        let max = max.clamp(1, MAX_BATCH_DOCS) as usize;
        let per_call = self.scope.limits.max_result_bytes;
        let deadline = self.deadline;
        let handle = self.table.get_mut(&this)?;
        let mut batch: Vec<Vec<u8>> = Vec::new();
        let mut bytes = 0usize;
        let outcome: WitResult<()> = async {
            while batch.len() < max {
                let doc = match handle.pending.take() {
                    Some(d) => d,
                    None => {
                        let remaining = deadline.saturating_duration_since(Instant::now());
                        match tokio::time::timeout(remaining, handle.cursor.next()).await {
                            Err(_) => {
                                return Err(WitError::Timeout(
                                    "the request's deadline passed while reading a cursor".into(),
                                ))
                            }
                            Ok(None) => break,
                            Ok(Some(Err(e))) => return Err(to_wit(e)),
                            Ok(Some(Ok(d))) => d,
                        }
                    }
                };
                let size = doc.as_bytes().len();
                handle.max_doc = handle.max_doc.max(size);
                if bytes + size > per_call {
                    if batch.is_empty() {
                        return Err(WitError::TooLarge(per_call as u64));
                    }
                    // The batch is full by size: keep the document for the next call.
                    handle.pending = Some(doc);
                    break;
                }
                bytes += size;
                batch.push(doc.into_bytes());
            }
            Ok(())
        }
        .await;
        // What the driver may now buffer for this cursor: a batch of documents as large as the
        // largest seen (the server's bytes, held until the plugin reads them).
        let (old, new) = (
            handle.charged,
            batch_bytes(
                handle.batch_size,
                handle.max_doc.max(input::INITIAL_DOC_SIZE_HINT),
            ),
        );
        let new = new.max(old);
        handle.charged = new;
        let max_doc = handle.max_doc;
        self.doc_size_hint = self.doc_size_hint.max(max_doc);
        wit_try!(outcome);
        wit_try!(self.recharge(old, new));
        wit_try!(self.charge(bytes));
        Ok(Ok(batch))
    }

    fn drop(&mut self, this: Resource<CursorHandle>) -> wasmtime::Result<()> {
        let handle = self.table.delete(this)?;
        self.host_bytes = self.host_bytes.saturating_sub(handle.charged);
        self.open_cursors = self.open_cursors.saturating_sub(1);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipelines_may_not_leave_the_tenant_database() {
        let own = "tenant-a";
        let ok = [
            doc! { "$match": { "x": 1 } },
            doc! { "$lookup": { "from": "c", "pipeline": [ { "$match": { "db": "prod" } } ], "as": "y" } },
            doc! { "$out": "copy" },
            doc! { "$out": { "db": own, "coll": "c" } },
        ];
        check_pipeline(&ok, own).unwrap();
        for stage in [
            doc! { "$out": { "db": "tenant-b", "coll": "stolen" } },
            doc! { "$merge": { "into": { "db": "tenant-b", "coll": "x" } } },
            doc! { "$lookup": { "from": { "db": "tenant-b", "coll": "x" }, "as": "y" } },
            doc! { "$facet": { "a": [ { "$lookup": { "from": { "db": "admin", "coll": "x" }, "as": "y" } } ] } },
            doc! { "$currentOp": {} },
        ] {
            let err = check_pipeline(std::slice::from_ref(&stage), own).unwrap_err();
            assert!(matches!(err, WitError::Denied(_)), "{stage}: {err:?}");
        }
    }

    #[test]
    fn collection_names_are_checked() {
        check_collection("users").unwrap();
        assert!(matches!(
            check_collection(""),
            Err(WitError::InvalidArgument(_))
        ));
        assert!(matches!(
            check_collection("a$b"),
            Err(WitError::InvalidArgument(_))
        ));
        assert!(matches!(
            check_collection("system.users"),
            Err(WitError::Denied(_))
        ));
    }

    #[test]
    fn malformed_bson_is_an_invalid_argument() {
        let mut good = Vec::new();
        doc! { "a": 1 }.to_writer(&mut good).unwrap();
        let rules = InputRules {
            max_depth: 100,
            allow_server_js: false,
        };
        assert_eq!(decode(&good, "filter", rules).unwrap(), doc! { "a": 1 });
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(decode(&trailing, "filter", rules).is_err());
        let err = decode(&[1, 2, 3], "filter", rules).unwrap_err();
        assert!(
            matches!(err, WitError::InvalidArgument(ref m) if m.contains("malformed BSON filter")),
            "{err:?}"
        );
    }
}
