//! The sandbox guard of plugin database calls: which collection names and aggregation stages
//! a plugin may use (nothing that reaches another database or inspects the server).

use bson::{Bson, Document};

use super::bindings::types::Error as WitError;

type WitResult<T> = Result<T, WitError>;

fn invalid(msg: impl Into<String>) -> WitError {
    WitError::InvalidArgument(msg.into())
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

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

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
}
