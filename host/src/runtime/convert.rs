//! Conversions between the WIT types of the `database` interface and the driver's: results
//! encoded as BSON for the plugin, options and update documents decoded from it, and the
//! connection manager's errors as the WIT `error` variant.

use std::time::Instant;

use bson::{doc, Bson, Document};
use mongodb::options::{FindOptions, UpdateModifications};

use super::bindings::database::{FindOptions as WitFindOptions, UpdateResult as WitUpdateResult};
use super::bindings::types::{Error as WitError, ServerError};
use super::input::{decode, decode_opt, max_time, InputRules};
use crate::pool;

type WitResult<T> = Result<T, WitError>;

/// An `invalid-argument` error with `msg`.
pub(crate) fn invalid(msg: impl Into<String>) -> WitError {
    WitError::InvalidArgument(msg.into())
}

/// `doc` as BSON bytes.
pub(crate) fn encode(doc: &Document) -> WitResult<Vec<u8>> {
    let mut out = Vec::new();
    doc.to_writer(&mut out).map_err(|e| {
        WitError::Server(ServerError {
            code: 0,
            code_name: None,
            message: format!("cannot encode result: {e}"),
        })
    })?;
    Ok(out)
}

/// `{ "_id": id }` as BSON bytes.
pub(crate) fn id_doc(id: Bson) -> WitResult<Vec<u8>> {
    encode(&doc! { "_id": id })
}

/// Maps a connection-manager error to the WIT error variant.
pub(crate) fn to_wit(e: pool::Error) -> WitError {
    use pool::Error as E;
    match e {
        E::InvalidDatabaseName { .. }
        | E::InvalidPriority(_)
        | E::InvalidArgument(_)
        | E::Config(_) => WitError::InvalidArgument(e.to_string()),
        E::ReservedDatabase(_) => WitError::Denied(e.to_string()),
        E::LimitReached { .. } => WitError::LimitReached(e.to_string()),
        E::Destroyed => WitError::Unavailable(e.to_string()),
        E::Unsupported(m) => WitError::Unsupported(m),
        E::Unavailable(m) => WitError::Unavailable(m),
        E::Timeout(m) => WitError::Timeout(m),
        E::DuplicateKey(m) => WitError::DuplicateKey(m),
        E::Server {
            code,
            code_name,
            message,
        } => WitError::Server(ServerError {
            code,
            code_name,
            message,
        }),
        E::Driver(m) => WitError::Server(ServerError {
            code: 0,
            code_name: None,
            message: m,
        }),
    }
}

/// The driver's find options from the plugin's.
pub(crate) fn find_options(
    o: &WitFindOptions,
    rules: InputRules,
    batch_size: u32,
    deadline: Instant,
) -> WitResult<FindOptions> {
    Ok(FindOptions::builder()
        .sort(decode_opt(&o.sort, "sort", rules)?)
        .projection(decode_opt(&o.projection, "projection", rules)?)
        .skip(o.skip)
        .limit(o.limit)
        .batch_size(batch_size)
        .max_time(max_time(deadline))
        .build())
}

/// Bytes of the optional documents of find options.
pub(crate) fn options_len(sort: &Option<Vec<u8>>, projection: &Option<Vec<u8>>) -> usize {
    sort.as_ref().map_or(0, Vec::len) + projection.as_ref().map_or(0, Vec::len)
}

/// [`update_document`] as the driver's update argument.
pub(crate) fn update_modifications(
    bytes: &[u8],
    rules: InputRules,
) -> WitResult<UpdateModifications> {
    Ok(UpdateModifications::Document(update_document(
        bytes, rules,
    )?))
}

/// An update is a document of operators (a pipeline update is not part of the contract: the
/// WIT sends one document).
pub(crate) fn update_document(bytes: &[u8], rules: InputRules) -> WitResult<Document> {
    let update = decode(bytes, "update", rules)?;
    match update.keys().next() {
        Some(first) if first.starts_with('$') => Ok(update),
        _ => Err(invalid(
            "an update document must contain update operators ($set, $inc, ...)",
        )),
    }
}

/// The WIT result of an update.
pub(crate) fn update_result(r: pool::WriteOutcome) -> WitResult<WitUpdateResult> {
    Ok(WitUpdateResult {
        matched: r.matched,
        modified: r.modified,
        upserted_id: r.upserted_id.map(id_doc).transpose()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_bson_is_an_invalid_argument() {
        let mut good = Vec::new();
        doc! { "a": 1 }.to_writer(&mut good).unwrap();
        let rules = InputRules {
            max_depth: 100,
            allow_server_js: false,
        };
        assert_eq!(decode(&good, "filter", rules).unwrap(), doc! { "a": 1 });
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(decode(&trailing, "filter", rules).is_err());
        let err = decode(&[1, 2, 3], "filter", rules).unwrap_err();
        assert!(
            matches!(err, WitError::InvalidArgument(ref m) if m.contains("malformed BSON filter")),
            "{err:?}"
        );
    }

    #[test]
    fn updates_must_be_operator_documents() {
        let rules = InputRules {
            max_depth: 100,
            allow_server_js: false,
        };
        let mut set = Vec::new();
        doc! { "$set": { "a": 1 } }.to_writer(&mut set).unwrap();
        assert_eq!(
            update_document(&set, rules).unwrap(),
            doc! { "$set": { "a": 1 } }
        );
        let mut plain = Vec::new();
        doc! { "a": 1 }.to_writer(&mut plain).unwrap();
        assert!(matches!(
            update_document(&plain, rules),
            Err(WitError::InvalidArgument(_))
        ));
    }
}
