//! Resume tokens of the host's background consumers, kept in the metadata database so that a
//! consumer continues after a host restart where it left off.
//!
//! One document per (plugin, subscription, tenant) in the `subscriptions` collection:
//! `{ _id: "<plugin>/<subscription>/<tenant>", plugin, subscription, tenant, token: <resume
//! token>, updated_at: <date> }`, written with upsert. Plugin and subscription names cannot
//! contain `/`; a tenant name may, so the `_id` is read only as a whole.

use bson::{doc, Document};

use super::PolyMongo;
use crate::error::Result;

/// Collection of the metadata database holding one resume token per consumer.
pub const SUBSCRIPTIONS_COLLECTION: &str = "subscriptions";

/// Names one consumer: a plugin's subscription for one tenant.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConsumerKey {
    /// The plugin's name.
    pub plugin: String,
    /// The subscription's name (from the plugin's manifest).
    pub subscription: String,
    /// The tenant's canonical name.
    pub tenant: String,
}

impl ConsumerKey {
    /// A key.
    pub fn new(
        plugin: impl Into<String>,
        subscription: impl Into<String>,
        tenant: impl Into<String>,
    ) -> Self {
        Self {
            plugin: plugin.into(),
            subscription: subscription.into(),
            tenant: tenant.into(),
        }
    }

    /// The `_id` of its document.
    fn id(&self) -> String {
        format!("{}/{}/{}", self.plugin, self.subscription, self.tenant)
    }
}

impl std::fmt::Display for ConsumerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{} for tenant {}",
            self.plugin, self.subscription, self.tenant
        )
    }
}

impl PolyMongo {
    /// The resume token stored for consumer `key`, if any.
    pub async fn load_resume_token(&self, key: &ConsumerKey) -> Result<Option<Document>> {
        self.inner.check_alive()?;
        let metadata = &self.inner.metadata;
        let found = metadata
            .collection(SUBSCRIPTIONS_COLLECTION)
            .find_one(doc! { "_id": key.id() })
            .await
            .map_err(|e| metadata.map_error(e))?;
        Ok(found.and_then(|d| d.get_document("token").ok().cloned()))
    }

    /// Stores `token` as consumer `key`'s resume token (upsert).
    pub async fn save_resume_token(&self, key: &ConsumerKey, token: &Document) -> Result<()> {
        self.inner.check_alive()?;
        let metadata = &self.inner.metadata;
        metadata
            .collection(SUBSCRIPTIONS_COLLECTION)
            .update_one(
                doc! { "_id": key.id() },
                doc! { "$set": {
                    "plugin": &key.plugin,
                    "subscription": &key.subscription,
                    "tenant": &key.tenant,
                    "token": token.clone(),
                    "updated_at": bson::DateTime::now(),
                } },
            )
            .upsert(true)
            .await
            .map_err(|e| metadata.map_error(e))?;
        Ok(())
    }
}
