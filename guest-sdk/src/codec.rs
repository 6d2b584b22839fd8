//! BSON encoding and decoding of what crosses the host boundary.

use bson::{Bson, Document};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{Error, Result};

pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    Ok(bson::to_vec(value)?)
}

pub(crate) fn encode_doc(doc: &Document) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    doc.to_writer(&mut bytes)?;
    Ok(bytes)
}

pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    Ok(bson::from_slice(bytes)?)
}

pub(crate) fn decode_doc(bytes: &[u8]) -> Result<Document> {
    Document::from_reader(bytes).map_err(|e| Error::Bson(e.to_string()))
}

/// The value of `_id` in a `{ "_id": <id> }` document from the host.
pub(crate) fn decode_id(bytes: &[u8]) -> Result<Bson> {
    let mut doc = decode_doc(bytes)?;
    doc.remove("_id")
        .ok_or_else(|| Error::Bson("the host returned an id document without _id".into()))
}

pub(crate) fn opt_doc(doc: &Option<Document>) -> Result<Option<Vec<u8>>> {
    doc.as_ref().map(encode_doc).transpose()
}
