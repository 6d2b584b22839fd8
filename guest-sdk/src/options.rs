//! Options and results of [`Collection`](crate::Collection) calls.

use bson::{Bson, Document};

/// The outcome of an update or replacement.
#[derive(Debug, Clone, PartialEq)]
pub struct UpdateResult {
    /// Documents that matched the filter.
    pub matched: u64,
    /// Documents actually changed.
    pub modified: u64,
    /// The `_id` of the inserted document, when an upsert inserted one.
    pub upserted_id: Option<Bson>,
}

/// Options of [`Collection::find_one_and_update`].
///
/// ```
/// use polymongo_guest::{bson::doc, FindOneAndUpdate};
///
/// let options = FindOneAndUpdate::new().sort(doc! { "age": -1 }).return_after(true);
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FindOneAndUpdate {
    /// Which document to pick when several match.
    pub sort: Option<Document>,
    /// Projection of the returned document.
    pub projection: Option<Document>,
    /// Insert a document when none matches.
    pub upsert: bool,
    /// Return the document after the update (default: before).
    pub return_after: bool,
}

impl FindOneAndUpdate {
    /// The defaults: no sort, no projection, no upsert, return the document as it was.
    pub fn new() -> Self {
        Self::default()
    }

    /// Picks the first document in this order when several match.
    pub fn sort(mut self, sort: Document) -> Self {
        self.sort = Some(sort);
        self
    }

    /// Projects the returned document.
    pub fn projection(mut self, projection: Document) -> Self {
        self.projection = Some(projection);
        self
    }

    /// Inserts a document when none matches.
    pub fn upsert(mut self, upsert: bool) -> Self {
        self.upsert = upsert;
        self
    }

    /// Returns the document after the update instead of before.
    pub fn return_after(mut self, after: bool) -> Self {
        self.return_after = after;
        self
    }
}

/// Options of [`Collection::create_index`].
///
/// ```
/// use polymongo_guest::IndexOptions;
///
/// let options = IndexOptions::new().name("email_unique").unique(true);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexOptions {
    /// The index name (default: derived from the keys, e.g. `email_1`).
    pub name: Option<String>,
    /// Reject duplicate keys.
    pub unique: bool,
    /// Documents expire this many seconds after the indexed date.
    pub expire_after_seconds: Option<u64>,
}

impl IndexOptions {
    /// The defaults: derived name, not unique, no expiry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Names the index.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Makes the index unique.
    pub fn unique(mut self, unique: bool) -> Self {
        self.unique = unique;
        self
    }

    /// Makes documents expire `seconds` after the indexed date.
    pub fn expire_after_seconds(mut self, seconds: u64) -> Self {
        self.expire_after_seconds = Some(seconds);
        self
    }
}
