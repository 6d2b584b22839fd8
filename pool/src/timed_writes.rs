//! Writes and listings sent as database commands that carry a server time limit
//! (`maxTimeMS`): the driver's helpers for these operations have no such option, and work the
//! server keeps doing after a caller gave up is work stolen from every other tenant.

use std::time::Duration;

use bson::{doc, oid::ObjectId, Bson, Document};

use super::collection::Collection;
use super::db::Db;
use super::error::{Error, Result};
use super::secret::Redactor;

/// What an update or replacement did.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteOutcome {
    /// Documents the filter matched (an upsert matches none).
    pub matched: u64,
    /// Documents changed.
    pub modified: u64,
    /// The `_id` of the document an upsert inserted.
    pub upserted_id: Option<Bson>,
}

/// The `maxTimeMS` value for `max_time` (at least 1: 0 means "no limit" to the server).
pub(crate) fn millis(max_time: Duration) -> i64 {
    i64::try_from(max_time.as_millis())
        .unwrap_or(i64::MAX)
        .max(1)
}

/// A count in a write reply (`n`, `nModified`), whatever its integer type.
pub(crate) fn count(reply: &Document, key: &str) -> u64 {
    match reply.get(key) {
        Some(Bson::Int32(n)) => u64::try_from(*n).unwrap_or(0),
        Some(Bson::Int64(n)) => u64::try_from(*n).unwrap_or(0),
        Some(Bson::Double(n)) if *n >= 0.0 => *n as u64,
        _ => 0,
    }
}

/// The first write error (or the write-concern error) of a reply, as a typed error.
fn write_error(reply: &Document, db: &Db, many: bool) -> Option<Error> {
    write_error_scrubbed(reply, db.redactor(), many)
}

/// [`write_error`] with the messages scrubbed by `redactor`.
pub(crate) fn write_error_scrubbed(
    reply: &Document,
    redactor: &Redactor,
    many: bool,
) -> Option<Error> {
    let first = reply
        .get_array("writeErrors")
        .ok()
        .and_then(|errors| errors.first())
        .and_then(Bson::as_document)
        .or_else(|| reply.get_document("writeConcernError").ok())?;
    let code = match first.get("code") {
        Some(Bson::Int32(c)) => *c,
        Some(Bson::Int64(c)) => i32::try_from(*c).unwrap_or(0),
        _ => 0,
    };
    let message = redactor.scrub(first.get_str("errmsg").unwrap_or_default());
    let message = match (many, first.get("index")) {
        (true, Some(index)) => format!("document {index}: {message}"),
        _ => message,
    };
    let code_name = first.get_str("codeName").ok().map(str::to_string);
    Some(Error::from_code(code, code_name, &message))
}

impl Collection<Document> {
    /// Inserts `docs` in order under a server time limit; returns their `_id`s (generated
    /// here for documents without one, as the driver does).
    pub async fn insert_many_within(
        &self,
        docs: Vec<Document>,
        max_time: Duration,
    ) -> Result<Vec<Bson>> {
        if docs.is_empty() {
            return Ok(Vec::new());
        }
        let (ids, docs) = with_ids(docs);
        let many = docs.len() > 1;
        let reply = self
            .db()
            .run_command(doc! {
                "insert": self.name(),
                "documents": docs,
                "ordered": true,
                "maxTimeMS": millis(max_time),
            })
            .await?;
        match write_error(&reply, self.db(), many) {
            Some(e) => Err(e),
            None => Ok(ids),
        }
    }

    /// Updates (`multi`: every matching document) or replaces the first match with `update`
    /// under a server time limit.
    pub async fn update_within(
        &self,
        filter: Document,
        update: Document,
        upsert: bool,
        multi: bool,
        max_time: Duration,
    ) -> Result<WriteOutcome> {
        let reply = self
            .db()
            .run_command(doc! {
                "update": self.name(),
                "updates": [ { "q": filter, "u": update, "upsert": upsert, "multi": multi } ],
                "ordered": true,
                "maxTimeMS": millis(max_time),
            })
            .await?;
        if let Some(e) = write_error(&reply, self.db(), false) {
            return Err(e);
        }
        Ok(update_outcome(&reply))
    }

    /// Deletes the first (or, with `many`, every) matching document under a server time
    /// limit; returns how many were deleted.
    pub async fn delete_within(
        &self,
        filter: Document,
        many: bool,
        max_time: Duration,
    ) -> Result<u64> {
        let reply = self
            .db()
            .run_command(doc! {
                "delete": self.name(),
                "deletes": [ { "q": filter, "limit": if many { 0 } else { 1 } } ],
                "ordered": true,
                "maxTimeMS": millis(max_time),
            })
            .await?;
        match write_error(&reply, self.db(), false) {
            Some(e) => Err(e),
            None => Ok(count(&reply, "n")),
        }
    }
}

impl Db {
    /// Names of the collections in this database, under a server time limit.
    pub async fn list_collection_names_within(&self, max_time: Duration) -> Result<Vec<String>> {
        let reply = self
            .run_command(doc! {
                "listCollections": 1,
                "nameOnly": true,
                "authorizedCollections": true,
                "maxTimeMS": millis(max_time),
            })
            .await?;
        let batch = reply
            .get_document("cursor")
            .and_then(|c| c.get_array("firstBatch"))
            .map_err(|e| Error::Driver(format!("unexpected listCollections reply: {e}")))?;
        Ok(batch
            .iter()
            .filter_map(Bson::as_document)
            .filter_map(|c| c.get_str("name").ok())
            .map(str::to_string)
            .collect())
    }
}

/// `docs` as the `documents` of an `insert` command, each with an `_id` (generated here for
/// those without one, as the driver does), and the `_id`s in order.
pub(crate) fn with_ids(docs: Vec<Document>) -> (Vec<Bson>, Vec<Bson>) {
    let mut ids = Vec::with_capacity(docs.len());
    let docs = docs
        .into_iter()
        .map(|d| {
            let d = match d.get("_id") {
                Some(id) => {
                    ids.push(id.clone());
                    d
                }
                None => {
                    let id = Bson::ObjectId(ObjectId::new());
                    ids.push(id.clone());
                    let mut with_id = doc! { "_id": id };
                    with_id.extend(d);
                    with_id
                }
            };
            Bson::Document(d)
        })
        .collect();
    (ids, docs)
}

/// What an `update` command's reply says it did.
pub(crate) fn update_outcome(reply: &Document) -> WriteOutcome {
    let upserted_id = reply
        .get_array("upserted")
        .ok()
        .and_then(|u| u.first())
        .and_then(Bson::as_document)
        .and_then(|u| u.get("_id").cloned());
    let n = count(reply, "n");
    WriteOutcome {
        matched: if upserted_id.is_some() {
            n.saturating_sub(1)
        } else {
            n
        },
        modified: count(reply, "nModified"),
        upserted_id,
    }
}
