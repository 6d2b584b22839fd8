//! Per-database metadata (priorities) kept in the metadata database.
//!
//! One document per database in the `databases` collection:
//! `{ _id: <db name>, priority: <i32>, updated_at: <date> }`, written with upsert so a priority
//! can be set for a database that has never been opened.

use std::collections::HashMap;

use bson::{doc, Document};
use futures_util::TryStreamExt;
use mongodb::options::ClientOptions;
use mongodb::{Client, Collection};

use super::error::{Error, Result};
use super::secret::Redactor;

/// Collection holding one document per database.
pub const DATABASES_COLLECTION: &str = "databases";

/// Reads and writes per-database metadata.
pub(crate) struct MetadataStore {
    client: Client,
    databases: Collection<Document>,
    redactor: Redactor,
}

impl MetadataStore {
    /// A store on `db_name`, with its own small client (not counted in `max_connections`).
    pub fn new(mut options: ClientOptions, db_name: &str, redactor: Redactor) -> Result<Self> {
        options.default_database = Some(db_name.to_string());
        options.max_pool_size = Some(2);
        options.min_pool_size = Some(0);
        let client = Client::with_options(options).map_err(|e| Error::from_driver(e, &redactor))?;
        let databases = client.database(db_name).collection(DATABASES_COLLECTION);
        Ok(Self {
            client,
            databases,
            redactor,
        })
    }

    /// Every stored priority.
    pub async fn load_priorities(&self) -> Result<HashMap<String, i32>> {
        let mut cursor = self
            .databases
            .find(doc! { "priority": { "$exists": true } })
            .projection(doc! { "priority": 1 })
            .await
            .map_err(|e| self.map(e))?;
        let mut out = HashMap::new();
        while let Some(d) = cursor.try_next().await.map_err(|e| self.map(e))? {
            let (Ok(name), Some(priority)) = (d.get_str("_id"), priority_of(&d)) else {
                tracing::warn!(doc = %d, "ignoring malformed metadata document");
                continue;
            };
            out.insert(name.to_string(), priority);
        }
        Ok(out)
    }

    /// Stores `priority` for `db` (upsert).
    pub async fn save_priority(&self, db: &str, priority: i32) -> Result<()> {
        self.databases
            .update_one(
                doc! { "_id": db },
                doc! { "$set": { "priority": priority, "updated_at": bson::DateTime::now() } },
            )
            .upsert(true)
            .await
            .map_err(|e| self.map(e))?;
        Ok(())
    }

    /// A collection of the metadata database (on the store's own client).
    pub fn collection(&self, name: &str) -> Collection<Document> {
        self.client
            .database(&self.databases.namespace().db)
            .collection(name)
    }

    /// Maps a driver error (secrets redacted).
    pub fn map_error(&self, e: mongodb::error::Error) -> Error {
        self.map(e)
    }

    /// Closes the store's client.
    pub async fn shutdown(&self) {
        self.client.clone().shutdown().immediate(true).await;
    }

    fn map(&self, e: mongodb::error::Error) -> Error {
        Error::from_driver(e, &self.redactor)
    }
}

/// Reads a priority stored as any integer or double type.
fn priority_of(d: &Document) -> Option<i32> {
    match d.get("priority")? {
        bson::Bson::Int32(v) => Some(*v),
        bson::Bson::Int64(v) => i32::try_from(*v).ok(),
        bson::Bson::Double(v) if v.fract() == 0.0 => Some(*v as i32),
        _ => None,
    }
}
