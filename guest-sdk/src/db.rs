//! Database access: [`Db`], typed [`Collection`]s, the [`Find`] builder and [`Cursor`]s.

use std::borrow::Borrow;
use std::collections::VecDeque;
use std::fmt;
use std::marker::PhantomData;
use std::rc::Rc;

use bson::{Bson, Document};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec::{decode, decode_doc, decode_id, encode, encode_doc, opt_doc};
use crate::options::{FindOneAndUpdate, IndexOptions, UpdateResult};
use crate::raw::polymongo::plugin0_1_0::database as wit;
use crate::stream::{ChangeStream, WatchOptions};
use crate::{Error, Result};

/// How many documents [`Find::all`], [`Collection::aggregate`] and the [`Cursor`] iterator
/// ask for per `next-batch` call when no batch size is set.
pub const DEFAULT_BATCH: u32 = 100;

/// A database the plugin may use: the tenant's ([`Db::tenant`]) or one its manifest grants
/// ([`Db::open`]). Cloning is cheap (the handle is shared).
///
/// ```no_run
/// use polymongo_guest::{bson::{doc, Document}, Db};
///
/// let db = Db::tenant();
/// let orders = db.collection::<Document>("orders");
/// let open = orders.count(doc! { "status": "open" })?;
/// # Ok::<(), polymongo_guest::Error>(())
/// ```
#[derive(Clone)]
pub struct Db {
    inner: Rc<wit::Db>,
}

impl fmt::Debug for Db {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Db")
            .field("handle", &self.inner.handle())
            .finish()
    }
}

impl Db {
    /// The invocation's tenant database.
    pub fn tenant() -> Db {
        Db::from_raw(wit::tenant())
    }

    /// Another database, if the plugin's manifest grants it; [`Error::Denied`] otherwise.
    pub fn open(name: &str) -> Result<Db> {
        Ok(Db::from_raw(wit::open(name)?))
    }

    /// Wraps a raw database handle.
    pub fn from_raw(inner: wit::Db) -> Db {
        Db {
            inner: Rc::new(inner),
        }
    }

    /// The raw database handle, for calls that bypass the SDK.
    pub fn raw(&self) -> &wit::Db {
        &self.inner
    }

    /// The database name.
    pub fn name(&self) -> String {
        self.inner.name()
    }

    /// The collection `name`, whose documents are read and written as `T` (any serde type;
    /// [`bson::Document`] for untyped access). Nothing is sent to the host yet.
    pub fn collection<T>(&self, name: &str) -> Collection<T> {
        Collection {
            db: Rc::clone(&self.inner),
            name: name.to_string(),
            _type: PhantomData,
        }
    }

    /// Names of the collections in this database.
    pub fn list_collections(&self) -> Result<Vec<String>> {
        Ok(self.inner.list_collections()?)
    }
}

/// A collection of a [`Db`], whose documents are `T` (see [`Db::collection`]).
pub struct Collection<T> {
    db: Rc<wit::Db>,
    name: String,
    _type: PhantomData<fn() -> T>,
}

impl<T> fmt::Debug for Collection<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Collection")
            .field("name", &self.name)
            .finish()
    }
}

impl<T> Collection<T> {
    /// The collection name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The same collection with documents read and written as `U`.
    pub fn typed<U>(&self) -> Collection<U> {
        Collection {
            db: Rc::clone(&self.db),
            name: self.name.clone(),
            _type: PhantomData,
        }
    }

    /// Starts a query for documents matching `filter`; run it with [`Find::all`],
    /// [`Find::cursor`] or [`Find::one`].
    pub fn find(&self, filter: Document) -> Find<'_, T> {
        Find {
            db: &self.db,
            collection: &self.name,
            filter,
            sort: None,
            projection: None,
            skip: None,
            limit: None,
            batch_size: None,
            _type: PhantomData,
        }
    }

    /// Updates the first document matching `filter` with the update document `update`
    /// (e.g. `{ "$set": { ... } }`); with `upsert`, inserts one when none matches.
    pub fn update_one(
        &self,
        filter: Document,
        update: Document,
        upsert: bool,
    ) -> Result<UpdateResult> {
        let r = self.db.update_one(
            &self.name,
            &encode_doc(&filter)?,
            &encode_doc(&update)?,
            wit::UpdateOptions { upsert },
        )?;
        update_result(r)
    }

    /// Updates every document matching `filter` with `update`.
    pub fn update_many(
        &self,
        filter: Document,
        update: Document,
        upsert: bool,
    ) -> Result<UpdateResult> {
        let r = self.db.update_many(
            &self.name,
            &encode_doc(&filter)?,
            &encode_doc(&update)?,
            wit::UpdateOptions { upsert },
        )?;
        update_result(r)
    }

    /// Deletes the first document matching `filter`; returns how many were deleted (0 or 1).
    pub fn delete_one(&self, filter: Document) -> Result<u64> {
        Ok(self.db.delete_one(&self.name, &encode_doc(&filter)?)?)
    }

    /// Deletes every document matching `filter`; returns how many were deleted.
    pub fn delete_many(&self, filter: Document) -> Result<u64> {
        Ok(self.db.delete_many(&self.name, &encode_doc(&filter)?)?)
    }

    /// Counts the documents matching `filter`.
    pub fn count(&self, filter: Document) -> Result<u64> {
        Ok(self.db.count_documents(&self.name, &encode_doc(&filter)?)?)
    }

    /// Runs an aggregation pipeline and collects every resulting document.
    ///
    /// Stages that write to or read from other databases are denied by the host.
    pub fn aggregate(&self, pipeline: Vec<Document>) -> Result<Vec<Document>> {
        self.aggregate_cursor(pipeline)?.collect_all()
    }

    /// Runs an aggregation pipeline and returns a cursor over its results.
    pub fn aggregate_cursor(&self, pipeline: Vec<Document>) -> Result<Cursor<Document>> {
        let stages = pipeline
            .iter()
            .map(encode_doc)
            .collect::<Result<Vec<_>>>()?;
        Ok(Cursor::from_raw(self.db.aggregate(&self.name, &stages)?))
    }

    /// The distinct values of `field` (a dotted path) among documents matching `filter`.
    pub fn distinct(&self, field: &str, filter: Document) -> Result<Vec<Bson>> {
        let bytes = self.db.distinct(&self.name, field, &encode_doc(&filter)?)?;
        match decode_doc(&bytes)?.remove("values") {
            Some(Bson::Array(values)) => Ok(values),
            _ => Err(Error::Bson(
                "distinct: the host's answer has no `values` array".into(),
            )),
        }
    }

    /// Creates an index on `keys` (e.g. `{ "email": 1 }`); returns its name. Creating an
    /// index that already exists with the same keys and options does nothing.
    pub fn create_index(&self, keys: Document, options: IndexOptions) -> Result<String> {
        Ok(self.db.create_index(
            &self.name,
            &encode_doc(&keys)?,
            &wit::IndexOptions {
                name: options.name,
                unique: options.unique,
                expire_after_seconds: options.expire_after_seconds,
            },
        )?)
    }
}

impl<T> Collection<T> {
    /// Opens a change stream on this collection: its changes (inserts, updates, replaces,
    /// deletes), filtered by `pipeline` (e.g. a `$match` on `operationType`), as the server's
    /// change events. Iterate it, or call [`ChangeStream::next_batch`]. While it is open the
    /// database's pool is protected from eviction; the host closes it when the request ends.
    /// [`Error::Unsupported`] where the server has no change streams, [`Error::LimitReached`]
    /// past the plugin's `max_open_streams`.
    pub fn watch(&self, pipeline: Vec<Document>, options: WatchOptions) -> Result<ChangeStream> {
        ChangeStream::open(&self.db, &self.name, pipeline, options)
    }
}

impl<T: DeserializeOwned> Collection<T> {
    /// The first document matching `filter` (see [`Find::one`] for sort and projection).
    pub fn find_one(&self, filter: Document) -> Result<Option<T>> {
        self.find(filter).one()
    }

    /// Updates the first document matching `filter` (in `options.sort` order) and returns
    /// it as it was before the update, or after it with `return_after`; `None` when nothing
    /// matched and nothing was upserted.
    pub fn find_one_and_update(
        &self,
        filter: Document,
        update: Document,
        options: FindOneAndUpdate,
    ) -> Result<Option<T>> {
        let found = self.db.find_one_and_update(
            &self.name,
            &encode_doc(&filter)?,
            &encode_doc(&update)?,
            &wit::FindOneAndUpdateOptions {
                sort: opt_doc(&options.sort)?,
                projection: opt_doc(&options.projection)?,
                upsert: options.upsert,
                return_after: options.return_after,
            },
        )?;
        found.map(|bytes| decode(&bytes)).transpose()
    }
}

impl<T: Serialize> Collection<T> {
    /// Inserts `doc`; returns its `_id` (generated by the host when `doc` has none).
    pub fn insert_one(&self, doc: &T) -> Result<Bson> {
        decode_id(&self.db.insert_one(&self.name, &encode(doc)?)?)
    }

    /// Inserts `docs` in order; returns their `_id`s in the same order.
    pub fn insert_many<I>(&self, docs: I) -> Result<Vec<Bson>>
    where
        I: IntoIterator,
        I::Item: Borrow<T>,
    {
        let docs = docs
            .into_iter()
            .map(|d| encode(d.borrow()))
            .collect::<Result<Vec<_>>>()?;
        let ids = self.db.insert_many(&self.name, &docs)?;
        ids.iter().map(|bytes| decode_id(bytes)).collect()
    }

    /// Replaces the first document matching `filter` by `replacement` (which keeps the old
    /// `_id`); with `upsert`, inserts it when none matches.
    pub fn replace_one(
        &self,
        filter: Document,
        replacement: &T,
        upsert: bool,
    ) -> Result<UpdateResult> {
        let r = self.db.replace_one(
            &self.name,
            &encode_doc(&filter)?,
            &encode(replacement)?,
            wit::UpdateOptions { upsert },
        )?;
        update_result(r)
    }
}

pub(crate) fn update_result(r: wit::UpdateResult) -> Result<UpdateResult> {
    Ok(UpdateResult {
        matched: r.matched,
        modified: r.modified,
        upserted_id: r.upserted_id.map(|bytes| decode_id(&bytes)).transpose()?,
    })
}

/// A query being built by [`Collection::find`].
///
/// ```no_run
/// use polymongo_guest::{bson::{doc, Document}, Db};
///
/// let db = Db::tenant();
/// let oldest: Vec<Document> = db
///     .collection::<Document>("users")
///     .find(doc! { "age": { "$gte": 18 } })
///     .sort(doc! { "age": -1 })
///     .projection(doc! { "name": 1 })
///     .skip(10)
///     .limit(5)
///     .all()?;
/// # Ok::<(), polymongo_guest::Error>(())
/// ```
#[must_use = "a Find does nothing until .all(), .cursor() or .one()"]
pub struct Find<'c, T> {
    db: &'c wit::Db,
    collection: &'c str,
    filter: Document,
    sort: Option<Document>,
    projection: Option<Document>,
    skip: Option<u64>,
    limit: Option<i64>,
    batch_size: Option<u32>,
    _type: PhantomData<fn() -> T>,
}

impl<T> fmt::Debug for Find<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Find")
            .field("collection", &self.collection)
            .field("filter", &self.filter)
            .field("sort", &self.sort)
            .field("projection", &self.projection)
            .field("skip", &self.skip)
            .field("limit", &self.limit)
            .field("batch_size", &self.batch_size)
            .finish()
    }
}

impl<T> Find<'_, T> {
    /// Sort specification, e.g. `{ "age": -1 }`.
    pub fn sort(mut self, sort: Document) -> Self {
        self.sort = Some(sort);
        self
    }

    /// Projection, e.g. `{ "name": 1 }`. The projected documents must still decode as `T`.
    pub fn projection(mut self, projection: Document) -> Self {
        self.projection = Some(projection);
        self
    }

    /// Skips the first `n` matching documents.
    pub fn skip(mut self, n: u64) -> Self {
        self.skip = Some(n);
        self
    }

    /// Returns at most `n` documents (0 = no limit).
    pub fn limit(mut self, n: i64) -> Self {
        self.limit = Some(n);
        self
    }

    /// Documents per batch, both fetched from the server and asked of the host per
    /// `next-batch` call by [`Find::all`] and the cursor iterator.
    pub fn batch_size(mut self, n: u32) -> Self {
        self.batch_size = Some(n);
        self
    }

    fn options(&self) -> Result<wit::FindOptions> {
        Ok(wit::FindOptions {
            sort: opt_doc(&self.sort)?,
            projection: opt_doc(&self.projection)?,
            skip: self.skip,
            limit: self.limit,
            batch_size: self.batch_size,
        })
    }

    /// Runs the query and returns a cursor over the results.
    pub fn cursor(self) -> Result<Cursor<T>> {
        let raw = self.db.find(
            self.collection,
            &encode_doc(&self.filter)?,
            &self.options()?,
        )?;
        let mut cursor = Cursor::from_raw(raw);
        if let Some(n) = self.batch_size {
            cursor.batch = n.max(1);
        }
        Ok(cursor)
    }
}

impl<T: DeserializeOwned> Find<'_, T> {
    /// Runs the query and collects every result.
    pub fn all(self) -> Result<Vec<T>> {
        let limit = self.limit.filter(|&n| n > 0).map(|n| n.unsigned_abs());
        let mut cursor = self.cursor()?;
        let mut out = Vec::new();
        loop {
            let mut max = cursor.batch;
            if let Some(limit) = limit {
                let left = limit.saturating_sub(out.len() as u64);
                if left == 0 {
                    // Everything the limit allows is here: spare the host the final call.
                    return Ok(out);
                }
                max = max.min(u32::try_from(left).unwrap_or(u32::MAX));
            }
            let batch = cursor.next_batch(max)?;
            if batch.is_empty() {
                return Ok(out);
            }
            out.extend(batch);
        }
    }

    /// Runs the query for its first result (skip, sort and projection apply; limit and
    /// batch size do not).
    pub fn one(self) -> Result<Option<T>> {
        let mut options = self.options()?;
        options.limit = None;
        options.batch_size = None;
        let found = self
            .db
            .find_one(self.collection, &encode_doc(&self.filter)?, &options)?;
        found.map(|bytes| decode(&bytes)).transpose()
    }
}

/// Results of a query or aggregation, fetched from the host in batches.
///
/// Either call [`Cursor::next_batch`] yourself, or iterate (`Item = Result<T>`; batches of
/// the query's batch size, else [`DEFAULT_BATCH`]). The host caps open cursors per request
/// and closes them all when the request ends; dropping a `Cursor` closes it at once.
pub struct Cursor<T> {
    raw: wit::Cursor,
    batch: u32,
    buffer: VecDeque<T>,
    done: bool,
}

impl<T> fmt::Debug for Cursor<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cursor")
            .field("handle", &self.raw.handle())
            .field("batch", &self.batch)
            .field("buffered", &self.buffer.len())
            .field("done", &self.done)
            .finish()
    }
}

impl<T> Cursor<T> {
    /// Wraps a raw cursor handle.
    pub fn from_raw(raw: wit::Cursor) -> Self {
        Cursor {
            raw,
            batch: DEFAULT_BATCH,
            buffer: VecDeque::new(),
            done: false,
        }
    }

    /// The raw cursor handle, for calls that bypass the SDK.
    pub fn raw(&self) -> &wit::Cursor {
        &self.raw
    }
}

impl<T: DeserializeOwned> Cursor<T> {
    /// Up to `max` further documents (after any the iterator has buffered); an empty list
    /// means the cursor is exhausted.
    pub fn next_batch(&mut self, max: u32) -> Result<Vec<T>> {
        if !self.buffer.is_empty() {
            let n = self.buffer.len().min(max as usize);
            return Ok(self.buffer.drain(..n).collect());
        }
        if self.done {
            return Ok(Vec::new());
        }
        let docs = self.raw.next_batch(max)?;
        if docs.is_empty() {
            self.done = true;
        }
        docs.iter().map(|bytes| decode(bytes)).collect()
    }

    /// Every remaining document.
    pub fn collect_all(mut self) -> Result<Vec<T>> {
        let mut out: Vec<T> = self.buffer.drain(..).collect();
        loop {
            let batch = self.next_batch(self.batch)?;
            if batch.is_empty() {
                return Ok(out);
            }
            out.extend(batch);
        }
    }
}

impl<T: DeserializeOwned> Iterator for Cursor<T> {
    type Item = Result<T>;

    fn next(&mut self) -> Option<Result<T>> {
        if self.buffer.is_empty() && !self.done {
            match self.next_batch(self.batch) {
                Ok(batch) => self.buffer.extend(batch),
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        self.buffer.pop_front().map(Ok)
    }
}
