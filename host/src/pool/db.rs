//! Database-scoped access: [`Db`] (what `db(name)` returns), typed [`Collection`]s, and the
//! long-lived results ([`Cursor`], [`ChangeStream`], [`Transaction`]) that keep their pool safe.
//!
//! Every operation takes a lease on the database's pool for its whole duration, so it counts
//! as one use in the pool's statistics and the pool cannot be closed under it.

use std::borrow::Borrow;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bson::{doc, Bson, Document, RawDocumentBuf};
use futures_util::{Stream, StreamExt};
use mongodb::change_stream::event::{ChangeStreamEvent, ResumeToken};
use mongodb::options::{
    AggregateOptions, ChangeStreamOptions, CountOptions, CreateIndexOptions, DistinctOptions,
    FindOneAndUpdateOptions, FindOneOptions, FindOptions, ReplaceOptions, UpdateModifications,
    UpdateOptions,
};
use mongodb::results::UpdateResult;
use mongodb::{ClientSession, IndexModel};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::error::{Error, Result};
use super::handle::{CursorLease, KeepAlive, Lease};
use super::manager::PolyMongo;
use super::secret::Redactor;

/// A handle on one database. Cheap to clone; the pool opens on first use.
#[derive(Clone)]
pub struct Db {
    manager: PolyMongo,
    name: Arc<str>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("name", &&*self.name).finish()
    }
}

impl Db {
    pub(crate) fn new(manager: PolyMongo, name: Arc<str>) -> Self {
        Self { manager, name }
    }

    /// The database name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A typed collection in this database.
    pub fn collection<T>(&self, name: &str) -> Collection<T> {
        Collection {
            db: self.clone(),
            name: Arc::from(name),
            _type: PhantomData,
        }
    }

    /// A lease on this database's pool (one use; the pool stays open while it lives).
    pub async fn lease(&self) -> Result<Lease> {
        self.manager.lease_validated(&self.name).await
    }

    /// Runs any driver operation on this database under a lease: the escape hatch for what
    /// the typed API does not cover.
    pub async fn run<R, F, Fut>(&self, f: F) -> Result<R>
    where
        F: FnOnce(mongodb::Database) -> Fut,
        Fut: Future<Output = mongodb::error::Result<R>>,
    {
        let lease = self.lease().await?;
        let result = f(lease.database().clone()).await;
        drop(lease);
        result.map_err(|e| self.map_err(e))
    }

    /// Runs a database command.
    pub async fn run_command(&self, command: Document) -> Result<Document> {
        self.run(|db| async move { db.run_command(command).await })
            .await
    }

    /// Names of the collections in this database.
    pub async fn list_collection_names(&self) -> Result<Vec<String>> {
        self.run(|db| async move { db.list_collection_names().await })
            .await
    }

    /// Drops the whole database.
    pub async fn drop_database(&self) -> Result<()> {
        self.run(|db| async move { db.drop().await }).await
    }

    /// A guard that keeps this database's pool open and protected until dropped.
    pub async fn keep_alive(&self) -> Result<KeepAlive> {
        self.manager.keep_alive_validated(&self.name).await
    }

    /// Watches every collection of this database. Needs a replica set or sharded cluster;
    /// elsewhere fails with [`Error::Unsupported`]. The pool is protected while the stream lives.
    pub async fn watch(&self) -> Result<ChangeStream<ChangeStreamEvent<Document>>> {
        self.watch_with(|db| async move { db.watch().await }).await
    }

    async fn watch_with<T, F, Fut>(&self, open: F) -> Result<ChangeStream<T>>
    where
        F: FnOnce(mongodb::Database) -> Fut,
        Fut: Future<Output = mongodb::error::Result<mongodb::change_stream::ChangeStream<T>>>,
        T: DeserializeOwned,
    {
        let guard = self.keep_alive().await?;
        let lease = self.lease().await?;
        lease
            .handle()
            .caps(self.redactor())
            .await?
            .require_change_streams()?;
        let stream = open(lease.database().clone())
            .await
            .map_err(|e| self.map_err(e))?;
        Ok(ChangeStream {
            token: stream.resume_token(),
            inner: stream,
            redactor: self.redactor().clone(),
            _guard: guard,
        })
    }

    /// Starts a multi-document transaction. Needs a replica set or sharded cluster; elsewhere
    /// fails with [`Error::Unsupported`]. The pool counts as busy until the transaction ends.
    pub async fn start_transaction(&self) -> Result<Transaction> {
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
            .await
            .map_err(|e| self.map_err(e))?;
        Ok(Transaction {
            session,
            redactor: self.redactor().clone(),
            lease,
        })
    }

    pub(crate) fn redactor(&self) -> &Redactor {
        &self.manager.inner().redactor
    }

    pub(crate) fn map_err(&self, e: mongodb::error::Error) -> Error {
        Error::from_driver(e, self.redactor())
    }
}

/// A collection of documents of type `T` (use `bson::Document` for schemaless access).
pub struct Collection<T> {
    db: Db,
    name: Arc<str>,
    _type: PhantomData<fn() -> T>,
}

impl<T> Clone for Collection<T> {
    fn clone(&self) -> Self {
        Self {
            db: self.db.clone(),
            name: self.name.clone(),
            _type: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for Collection<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Collection({}.{})", self.db.name(), self.name)
    }
}

impl<T> Collection<T>
where
    T: Serialize + DeserializeOwned + Send + Sync + Unpin + 'static,
{
    /// The collection name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The database this collection belongs to.
    pub fn db(&self) -> &Db {
        &self.db
    }

    async fn run<R, F, Fut>(&self, f: F) -> Result<R>
    where
        F: FnOnce(mongodb::Collection<T>) -> Fut,
        Fut: Future<Output = mongodb::error::Result<R>>,
    {
        let lease = self.db.lease().await?;
        let result = f(lease.database().collection::<T>(&self.name)).await;
        drop(lease);
        result.map_err(|e| self.db.map_err(e))
    }

    /// Finds documents; the cursor keeps the pool busy (not evictable) until dropped.
    pub async fn find(
        &self,
        filter: Document,
        options: impl Into<Option<FindOptions>>,
    ) -> Result<Cursor<T>> {
        let options = options.into();
        let lease = self.db.lease().await?;
        let cursor = lease
            .database()
            .collection::<T>(&self.name)
            .find(filter)
            .with_options(options)
            .await
            .map_err(|e| self.db.map_err(e))?;
        Ok(Cursor {
            inner: cursor,
            redactor: self.db.redactor().clone(),
            lease: CursorLease::from_lease(lease),
        })
    }

    /// Finds one document.
    pub async fn find_one(
        &self,
        filter: Document,
        options: impl Into<Option<FindOneOptions>>,
    ) -> Result<Option<T>> {
        let options = options.into();
        self.run(|c| async move { c.find_one(filter).with_options(options).await })
            .await
    }

    /// Inserts one document; returns its `_id`.
    pub async fn insert_one(&self, doc: impl Borrow<T>) -> Result<Bson> {
        self.run(|c| async move { c.insert_one(doc).await })
            .await
            .map(|r| r.inserted_id)
    }

    /// Inserts documents in order; returns their `_id`s in the same order.
    pub async fn insert_many(
        &self,
        docs: impl IntoIterator<Item = impl Borrow<T>>,
    ) -> Result<Vec<Bson>> {
        let docs: Vec<_> = docs.into_iter().collect();
        if docs.is_empty() {
            return Ok(Vec::new());
        }
        let result = self
            .run(|c| async move { c.insert_many(docs).await })
            .await?;
        let mut ids: Vec<(usize, Bson)> = result.inserted_ids.into_iter().collect();
        ids.sort_by_key(|(i, _)| *i);
        Ok(ids.into_iter().map(|(_, id)| id).collect())
    }

    /// Updates the first matching document.
    pub async fn update_one(
        &self,
        filter: Document,
        update: impl Into<UpdateModifications>,
        options: impl Into<Option<UpdateOptions>>,
    ) -> Result<UpdateResult> {
        let (update, options) = (update.into(), options.into());
        self.run(|c| async move { c.update_one(filter, update).with_options(options).await })
            .await
    }

    /// Updates every matching document.
    pub async fn update_many(
        &self,
        filter: Document,
        update: impl Into<UpdateModifications>,
        options: impl Into<Option<UpdateOptions>>,
    ) -> Result<UpdateResult> {
        let (update, options) = (update.into(), options.into());
        self.run(|c| async move { c.update_many(filter, update).with_options(options).await })
            .await
    }

    /// Replaces the first matching document.
    pub async fn replace_one(
        &self,
        filter: Document,
        replacement: impl Borrow<T>,
        options: impl Into<Option<ReplaceOptions>>,
    ) -> Result<UpdateResult> {
        let options = options.into();
        self.run(|c| async move {
            c.replace_one(filter, replacement)
                .with_options(options)
                .await
        })
        .await
    }

    /// Deletes the first matching document; returns how many were deleted (0 or 1).
    pub async fn delete_one(&self, filter: Document) -> Result<u64> {
        self.run(|c| async move { c.delete_one(filter).await })
            .await
            .map(|r| r.deleted_count)
    }

    /// Deletes every matching document; returns how many were deleted.
    pub async fn delete_many(&self, filter: Document) -> Result<u64> {
        self.run(|c| async move { c.delete_many(filter).await })
            .await
            .map(|r| r.deleted_count)
    }

    /// Counts matching documents.
    pub async fn count_documents(&self, filter: Document) -> Result<u64> {
        self.run(|c| async move { c.count_documents(filter).await })
            .await
    }

    /// Runs an aggregation pipeline; the cursor keeps the pool busy until dropped.
    pub async fn aggregate(
        &self,
        pipeline: impl IntoIterator<Item = Document>,
    ) -> Result<Cursor<Document>> {
        let pipeline: Vec<Document> = pipeline.into_iter().collect();
        let lease = self.db.lease().await?;
        let cursor = lease
            .database()
            .collection::<Document>(&self.name)
            .aggregate(pipeline)
            .await
            .map_err(|e| self.db.map_err(e))?;
        Ok(Cursor {
            inner: cursor,
            redactor: self.db.redactor().clone(),
            lease: CursorLease::from_lease(lease),
        })
    }

    /// Distinct values of `field` among matching documents.
    pub async fn distinct(&self, field: &str, filter: Document) -> Result<Vec<Bson>> {
        self.run(|c| async move { c.distinct(field, filter).await })
            .await
    }

    /// [`Collection::distinct`] with options (e.g. `max_time`).
    pub async fn distinct_with(
        &self,
        field: &str,
        filter: Document,
        options: DistinctOptions,
    ) -> Result<Vec<Bson>> {
        self.run(|c| async move { c.distinct(field, filter).with_options(options).await })
            .await
    }

    /// [`Collection::count_documents`] with options (e.g. `max_time`).
    pub async fn count_documents_with(
        &self,
        filter: Document,
        options: CountOptions,
    ) -> Result<u64> {
        self.run(|c| async move { c.count_documents(filter).with_options(options).await })
            .await
    }

    /// Runs an aggregation pipeline with options (e.g. `max_time`, `batch_size`), its results
    /// read as `R` (`RawDocumentBuf` to keep the server's bytes); the cursor keeps the pool
    /// busy until dropped.
    pub async fn aggregate_with<R>(
        &self,
        pipeline: Vec<Document>,
        options: AggregateOptions,
    ) -> Result<Cursor<R>>
    where
        R: DeserializeOwned + Send + Sync,
    {
        let lease = self.db.lease().await?;
        let cursor = lease
            .database()
            .collection::<Document>(&self.name)
            .aggregate(pipeline)
            .with_options(options)
            .await
            .map_err(|e| self.db.map_err(e))?;
        Ok(Cursor {
            inner: cursor.with_type::<R>(),
            redactor: self.db.redactor().clone(),
            lease: CursorLease::from_lease(lease),
        })
    }

    /// [`Collection::create_index`] with options (e.g. `max_time`).
    pub async fn create_index_with(
        &self,
        index: IndexModel,
        options: CreateIndexOptions,
    ) -> Result<String> {
        self.run(|c| async move { c.create_index(index).with_options(options).await })
            .await
            .map(|r| r.index_name)
    }

    /// Updates the first matching document and returns it (before or after, per options).
    pub async fn find_one_and_update(
        &self,
        filter: Document,
        update: impl Into<UpdateModifications>,
        options: impl Into<Option<FindOneAndUpdateOptions>>,
    ) -> Result<Option<T>> {
        let (update, options) = (update.into(), options.into());
        self.run(|c| async move {
            c.find_one_and_update(filter, update)
                .with_options(options)
                .await
        })
        .await
    }

    /// Deletes the first matching document and returns it.
    pub async fn find_one_and_delete(&self, filter: Document) -> Result<Option<T>> {
        self.run(|c| async move { c.find_one_and_delete(filter).await })
            .await
    }

    /// Creates an index; returns its name.
    pub async fn create_index(&self, index: IndexModel) -> Result<String> {
        self.run(|c| async move { c.create_index(index).await })
            .await
            .map(|r| r.index_name)
    }

    /// Drops the collection.
    pub async fn drop_collection(&self) -> Result<()> {
        self.run(|c| async move { c.drop().await }).await
    }

    /// Watches this collection. Needs a replica set or sharded cluster; elsewhere fails with
    /// [`Error::Unsupported`]. The pool is protected from eviction while the stream lives.
    pub async fn watch(&self) -> Result<ChangeStream<ChangeStreamEvent<T>>> {
        let name = self.name.clone();
        self.db
            .watch_with(|db| async move { db.collection::<T>(&name).watch().await })
            .await
    }

    /// Watches this collection through `pipeline` with `options`; each item is a whole change
    /// event as the server sent it (`_id` is its resume token). Protected like [`watch`](Self::watch).
    pub async fn watch_events(
        &self,
        pipeline: Vec<Document>,
        options: ChangeStreamOptions,
    ) -> Result<ChangeStream<RawDocumentBuf>> {
        let name = self.name.clone();
        self.db
            .watch_with(|db| async move {
                let stream = db
                    .collection::<Document>(&name)
                    .watch()
                    .pipeline(pipeline)
                    .with_options(options)
                    .await?;
                Ok(stream.with_type::<RawDocumentBuf>())
            })
            .await
    }
}

/// Results of `find` or `aggregate`. While it is in use, and for the cursor grace period
/// (`cursor_grace`) after each use, its pool is not evicted; a cursor left unused for longer
/// does not keep other databases from a slot, and fails as `unavailable` if its pool was
/// closed meanwhile.
pub struct Cursor<T> {
    inner: mongodb::Cursor<T>,
    redactor: Redactor,
    lease: CursorLease,
}

impl<T: DeserializeOwned + Unpin + Send + Sync> Cursor<T> {
    /// The next document, `None` when exhausted.
    pub async fn next(&mut self) -> Option<Result<T>> {
        let Some(_call) = self.lease.begin_call() else {
            return Some(Err(Error::Unavailable(
                "this cursor's pool was closed (the cursor was left unused past the cursor \
                 grace period and its pool given to another database); run the query again"
                    .into(),
            )));
        };
        let redactor = &self.redactor;
        self.inner
            .next()
            .await
            .map(|r| r.map_err(|e| Error::from_driver(e, redactor)))
    }

    /// Up to `max` further documents (fewer only when the cursor is exhausted).
    pub async fn next_batch(&mut self, max: usize) -> Result<Vec<T>> {
        let mut out = Vec::new();
        while out.len() < max {
            match self.next().await {
                Some(doc) => out.push(doc?),
                None => break,
            }
        }
        Ok(out)
    }

    /// Every remaining document.
    pub async fn collect_all(mut self) -> Result<Vec<T>> {
        let mut out = Vec::new();
        while let Some(doc) = self.next().await {
            out.push(doc?);
        }
        Ok(out)
    }
}

impl<T: DeserializeOwned + Unpin + Send + Sync> Stream for Cursor<T> {
    type Item = Result<T>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let Some(_call) = this.lease.begin_call() else {
            return Poll::Ready(Some(Err(Error::Unavailable(
                "this cursor's pool was closed; run the query again".into(),
            ))));
        };
        let redactor = &this.redactor;
        this.inner
            .poll_next_unpin(cx)
            .map(|o| o.map(|r| r.map_err(|e| Error::from_driver(e, redactor))))
    }
}

/// A change stream. Holds a keep-alive guard: the pool is protected while it lives.
pub struct ChangeStream<T: DeserializeOwned> {
    inner: mongodb::change_stream::ChangeStream<T>,
    /// The driver's token after the last completed `next` (the driver panics when asked for
    /// it while a cancelled `next` left a batch request in flight, so it is copied here).
    token: Option<ResumeToken>,
    redactor: Redactor,
    _guard: KeepAlive,
}

impl<T: DeserializeOwned + Unpin + Send + Sync> ChangeStream<T> {
    /// The next change (waits for one).
    ///
    /// Cancel-safe: a call dropped while it waits (e.g. under a timeout) loses no change; the
    /// next call continues the same request to the server.
    pub async fn next(&mut self) -> Option<Result<T>> {
        let redactor = &self.redactor;
        let next = self
            .inner
            .next()
            .await
            .map(|r| r.map_err(|e| Error::from_driver(e, redactor)));
        self.token = self.inner.resume_token();
        next
    }

    /// The token to resume after the last change returned (or the stream's start).
    pub fn resume_token(&self) -> Option<ResumeToken> {
        self.token.clone()
    }
}

/// An open multi-document transaction. Holds a lease until committed, aborted or dropped
/// (dropping aborts it).
pub struct Transaction {
    session: ClientSession,
    redactor: Redactor,
    lease: Lease,
}

impl Transaction {
    /// A driver collection in this database; pass [`Transaction::session`] to its operations.
    pub fn collection<T: Send + Sync>(&self, name: &str) -> mongodb::Collection<T> {
        self.lease.database().collection(name)
    }

    /// The session to pass to operations inside the transaction.
    pub fn session(&mut self) -> &mut ClientSession {
        &mut self.session
    }

    /// Commits the transaction.
    pub async fn commit(mut self) -> Result<()> {
        let redactor = self.redactor.clone();
        self.session
            .commit_transaction()
            .await
            .map_err(|e| Error::from_driver(e, &redactor))
    }

    /// Aborts the transaction.
    pub async fn abort(mut self) -> Result<()> {
        let redactor = self.redactor.clone();
        self.session
            .abort_transaction()
            .await
            .map_err(|e| Error::from_driver(e, &redactor))
    }
}

/// Builds `{ _id: id }`.
pub fn by_id(id: impl Into<Bson>) -> Document {
    doc! { "_id": id.into() }
}
