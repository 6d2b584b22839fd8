//! Typed collections: every operation runs under a lease on the database's pool.

use std::borrow::Borrow;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;

use bson::{Bson, Document, RawDocumentBuf};
use mongodb::change_stream::event::ChangeStreamEvent;
use mongodb::options::{
    AggregateOptions, ChangeStreamOptions, CountOptions, CreateIndexOptions, DistinctOptions,
    FindOneAndUpdateOptions, FindOneOptions, FindOptions, ReplaceOptions, UpdateModifications,
    UpdateOptions,
};
use mongodb::results::UpdateResult;
use mongodb::IndexModel;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::cursor::{ChangeStream, Cursor};
use crate::db::Db;
use crate::error::{Error, Result};
use crate::feed::{ChangeFeed, ChangeFeedMode};
use crate::handle::CursorLease;
use crate::oplog::{self, OplogFeed};

/// A collection of documents of type `T` (use `bson::Document` for schemaless access).
pub struct Collection<T> {
    pub(crate) db: Db,
    pub(crate) name: Arc<str>,
    pub(crate) _type: PhantomData<fn() -> T>,
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
    /// [`Error::Unsupported`](crate::Error::Unsupported). The pool is protected from eviction while the stream lives.
    pub async fn watch(&self) -> Result<ChangeStream<ChangeStreamEvent<T>>> {
        let name = self.name.clone();
        self.db
            .watch_with(|db| async move { db.collection::<T>(&name).watch().await })
            .await
    }

    /// Watches this collection through `pipeline` with `options`; each item is a whole change
    /// event (`_id` is its resume token). Protected like [`watch`](Self::watch).
    ///
    /// The database's change feed mode ([`ChangeFeedMode`], per route) decides where events
    /// come from: the server's change stream, or the host's weaker oplog feed
    /// ([`OplogFeed`](crate::OplogFeed)) on a server without change streams.
    pub async fn watch_events(
        &self,
        pipeline: Vec<Document>,
        options: ChangeStreamOptions,
    ) -> Result<ChangeFeed> {
        let mode = self.db.manager().change_feed_mode(self.db.name());
        let guard = self.db.keep_alive().await?;
        let lease = self.db.lease().await?;
        let caps = lease.handle().caps(self.db.redactor()).await?;
        let redactor = self.db.redactor().clone();
        let use_oplog = match mode {
            ChangeFeedMode::Streams => {
                caps.require_change_streams()?;
                false
            }
            ChangeFeedMode::Oplog => true,
            ChangeFeedMode::Auto if caps.change_streams => false,
            ChangeFeedMode::Auto => {
                let client = lease.database().client();
                if !oplog::has_oplog(client, &redactor).await? {
                    let why = match caps.require_change_streams() {
                        Err(Error::Unsupported(why)) => why,
                        _ => "this server has no change streams".into(),
                    };
                    return Err(Error::Unsupported(format!(
                        "{why}; and the server keeps no oplog (local.oplog.rs) for the oplog                          change feed"
                    )));
                }
                true
            }
        };
        if use_oplog {
            let database = lease.database().clone();
            drop(lease);
            let feed = OplogFeed::open(&database, &self.name, &pipeline, &options, redactor, guard)
                .await?;
            return Ok(ChangeFeed::Oplog(Box::new(feed)));
        }
        let database = lease.database().clone();
        drop(lease);
        let stream = database
            .collection::<Document>(&self.name)
            .watch()
            .pipeline(pipeline)
            .with_options(options)
            .await
            .map_err(|e| self.db.map_err(e))?;
        Ok(ChangeFeed::Stream(ChangeStream {
            token: stream.resume_token(),
            inner: stream.with_type::<RawDocumentBuf>(),
            redactor,
            _guard: guard,
        }))
    }
}
