//! `[[subscriptions]]` of a plugin's manifest: long-lived change-stream consumers the host
//! runs in the background (see `crate::consumers`), one per (plugin, subscription, tenant).
//!
//! ```toml
//! # orders.toml
//! [[subscriptions]]
//! name = "new-orders"            # letters, digits, '-' and '_'; unique in the manifest
//! collection = "orders"          # of each tenant's database
//! tenants = ["acme", "globex"]   # tenant names (as clients send them in the tenant header)
//! full_document = true           # updates carry the whole document (updateLookup)
//! pipeline = [{ "$match" = { operationType = "insert" } }]   # optional change-stream stages
//! ```
//!
//! A plugin with subscriptions must export `polymongo:plugin/subscriber@0.2.0` (world
//! `tenant-subscriber`); the host checks it when the plugin loads.

use std::collections::HashSet;

use bson::Document;
use serde::{Deserialize, Serialize};

use super::load::valid_plugin_name;
use super::sandbox::{check_collection, check_pipeline};
use crate::pool::PolyMongo;

/// Most subscriptions one manifest may declare.
pub const MAX_SUBSCRIPTIONS_PER_PLUGIN: usize = 64;
/// Most tenants one subscription may name.
pub const MAX_TENANTS_PER_SUBSCRIPTION: usize = 1024;

/// One `[[subscriptions]]` entry.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Subscription {
    /// The subscription's name (passed to `deliver`, part of the resume token's key).
    pub name: String,
    /// The collection watched in each tenant's database.
    pub collection: String,
    /// The tenants to consume for (tenant names, as in the tenant header).
    pub tenants: Vec<String>,
    /// Whether update events carry the whole current document (`updateLookup`).
    #[serde(default)]
    pub full_document: bool,
    /// Change-stream stages (`$match`, `$project`, ...), checked like a plugin's `watch`.
    #[serde(default)]
    pub pipeline: Vec<Document>,
}

impl Subscription {
    /// Checks what can be checked without the connection manager: names, the collection,
    /// the tenant list.
    pub fn check(&self) -> Result<(), String> {
        if !valid_plugin_name(&self.name) {
            return Err(format!(
                "subscription name {:?}: use 1 to 64 letters, digits, '-' and '_'",
                self.name
            ));
        }
        check_collection(&self.collection)
            .map_err(|e| format!("subscription {}: {e}", self.name))?;
        if self.tenants.is_empty() {
            return Err(format!(
                "subscription {}: tenants is empty; name the tenants to consume for",
                self.name
            ));
        }
        if self.tenants.len() > MAX_TENANTS_PER_SUBSCRIPTION {
            return Err(format!(
                "subscription {}: at most {MAX_TENANTS_PER_SUBSCRIPTION} tenants",
                self.name
            ));
        }
        Ok(())
    }

    /// Resolves the tenants with `manager` (canonical names, in order, without duplicates)
    /// and checks the pipeline against each tenant's database.
    pub fn resolve(&self, manager: &PolyMongo) -> Result<Vec<String>, String> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for tenant in &self.tenants {
            let canonical = manager
                .canonical_tenant(tenant)
                .and_then(|t| manager.tenant_db_name(&t).map(|db| (t, db)));
            let (canonical, db) = canonical
                .map_err(|e| format!("subscription {}: tenant {tenant:?}: {e}", self.name))?;
            check_pipeline(&self.pipeline, &db)
                .map_err(|e| format!("subscription {}: pipeline: {e}", self.name))?;
            if seen.insert(canonical.clone()) {
                out.push(canonical);
            }
        }
        Ok(out)
    }
}

/// Checks a manifest's subscriptions: each one, and that names are unique.
pub fn check_all(subscriptions: &[Subscription]) -> Result<(), String> {
    if subscriptions.len() > MAX_SUBSCRIPTIONS_PER_PLUGIN {
        return Err(format!(
            "at most {MAX_SUBSCRIPTIONS_PER_PLUGIN} subscriptions per plugin"
        ));
    }
    let mut names = HashSet::new();
    for s in subscriptions {
        s.check()?;
        if !names.insert(s.name.as_str()) {
            return Err(format!("subscription name {:?} is used twice", s.name));
        }
    }
    Ok(())
}

/// A subscription of a loaded plugin, its tenants resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedSubscription {
    /// The manifest entry.
    pub spec: Subscription,
    /// Canonical tenant names.
    pub tenants: Vec<String>,
}

#[cfg(test)]
mod tests {
    use crate::runtime::Manifest;

    #[test]
    fn parses_subscriptions_with_a_pipeline() {
        let m = Manifest::parse(
            r#"
[[subscriptions]]
name = "orders"
collection = "orders"
tenants = ["acme", "globex"]
full_document = true
pipeline = [{ "$match" = { operationType = "insert" } }]
"#,
        )
        .expect("valid");
        let s = &m.subscriptions[0];
        assert_eq!(s.name, "orders");
        assert_eq!(s.tenants, ["acme", "globex"]);
        assert!(s.full_document);
        assert_eq!(
            s.pipeline,
            vec![bson::doc! { "$match": { "operationType": "insert" } }]
        );
    }

    #[test]
    fn refuses_bad_names_collections_duplicates_and_empty_tenants() {
        let one = |body: &str| Manifest::parse(&format!("[[subscriptions]]\n{body}\n"));
        let err = one("name = \"a b\"\ncollection = \"c\"\ntenants = [\"t\"]").unwrap_err();
        assert!(err.contains("subscription name"), "{err}");
        let err = one("name = \"a\"\ncollection = \"system.x\"\ntenants = [\"t\"]").unwrap_err();
        assert!(err.contains("system"), "{err}");
        let err = one("name = \"a\"\ncollection = \"c\"\ntenants = []").unwrap_err();
        assert!(err.contains("tenants is empty"), "{err}");
        let err =
            one("name = \"a\"\ncollection = \"c\"\ntenants = [\"t\"]\ncolour = 1").unwrap_err();
        assert!(err.contains("colour"), "{err}");
        let twice = "[[subscriptions]]\nname = \"a\"\ncollection = \"c\"\ntenants = [\"t\"]\n";
        let err = Manifest::parse(&format!("{twice}{twice}")).unwrap_err();
        assert!(err.contains("used twice"), "{err}");
    }
}
