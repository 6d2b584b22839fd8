//! Database-scoped access: [`Db`] (what `db(name)` returns); typed collections are in
//! [`collection`](crate::collection), cursors and change streams in [`cursor`](crate::cursor),
//! transactions ([`Db::start_transaction`]) in `transaction`.
//!
//! Every operation takes a lease on the database's pool for its whole duration, so it counts
//! as one use in the pool's statistics and the pool cannot be closed under it.

use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;

use bson::Document;
use mongodb::change_stream::event::ChangeStreamEvent;
use serde::de::DeserializeOwned;

use crate::collection::Collection;
use crate::cursor::ChangeStream;
use crate::error::{Error, Result};
use crate::handle::{KeepAlive, Lease};
use crate::manager::PolyMongo;
use crate::secret::Redactor;

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

    /// The database name as a shared string: a reference count, not a copy (for maps keyed
    /// by database on a hot path).
    pub fn shared_name(&self) -> Arc<str> {
        self.name.clone()
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

    pub(crate) async fn watch_with<T, F, Fut>(&self, open: F) -> Result<ChangeStream<T>>
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

    pub(crate) fn manager(&self) -> &PolyMongo {
        &self.manager
    }

    pub(crate) fn redactor(&self) -> &Redactor {
        &self.manager.inner().redactor
    }

    pub(crate) fn map_err(&self, e: mongodb::error::Error) -> Error {
        Error::from_driver(e, self.redactor())
    }
}
