//! A bounded fuzz run (proptest, a fixed number of cases, no persisted failures) over the
//! host's handling of plugin-sent BSON: garbage bytes, huge length prefixes, deep nesting and
//! mutated valid documents, through the same `decode` and pipeline check the database calls
//! use. Whatever the bytes: no panic, no stack overflow, and either a document within the
//! limits or a clear `invalid-argument` / `denied` error.

use bson::{doc, Bson, Document};
use proptest::prelude::*;
use proptest::test_runner::Config;

use super::bindings::types::Error as WitError;
use super::bson_scan::{scan, ScanError};
use super::input::{decode, InputRules};
use super::sandbox::check_pipeline;

const RULES: InputRules = InputRules {
    max_depth: 128,
    allow_server_js: false,
};

fn config(cases: u32) -> Config {
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

fn encode(doc: &Document) -> Vec<u8> {
    let mut out = Vec::new();
    doc.to_writer(&mut out).expect("encodable");
    out
}

/// Leaf values of every common BSON type.
fn leaf() -> impl Strategy<Value = Bson> {
    prop_oneof![
        any::<i32>().prop_map(Bson::Int32),
        any::<i64>().prop_map(Bson::Int64),
        any::<f64>().prop_map(Bson::Double),
        any::<bool>().prop_map(Bson::Boolean),
        ".{0,12}".prop_map(Bson::String),
        Just(Bson::Null),
        Just(Bson::JavaScriptCode("this.a".into())),
        proptest::collection::vec(any::<u8>(), 0..8).prop_map(|bytes| {
            Bson::Binary(bson::Binary {
                subtype: bson::spec::BinarySubtype::Generic,
                bytes,
            })
        }),
        Just(Bson::ObjectId(bson::oid::ObjectId::from_bytes([7; 12]))),
    ]
}

/// Keys, some of them operators (server-side JavaScript among them).
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]{1,6}",
        Just("$match".to_string()),
        Just("$where".to_string()),
        Just("$function".to_string()),
        Just("$lookup".to_string()),
        Just("$facet".to_string()),
        Just("db".to_string()),
    ]
}

/// Documents of a few levels with documents and arrays inside.
fn document() -> impl Strategy<Value = Document> {
    let value = leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Bson::Array),
            proptest::collection::vec((key(), inner), 0..4)
                .prop_map(|kv| Bson::Document(kv.into_iter().collect())),
        ]
    });
    proptest::collection::vec((key(), value), 0..5).prop_map(|kv| kv.into_iter().collect())
}

/// A document nested `depth` levels, alternating documents and arrays, built as bytes.
fn nested_bytes(depth: usize, arrays: bool) -> Vec<u8> {
    let mut inner = encode(&doc! { "x": 1 });
    for level in 1..depth {
        let kind = if arrays && level % 2 == 0 { 0x04 } else { 0x03 };
        let key: &[u8] = if kind == 0x04 { b"0" } else { b"a" };
        let len = 4 + 1 + key.len() + 1 + inner.len() + 1;
        let mut outer = Vec::with_capacity(len);
        outer.extend_from_slice(&(len as i32).to_le_bytes());
        outer.push(kind);
        outer.extend_from_slice(key);
        outer.push(0);
        outer.extend_from_slice(&inner);
        outer.push(0);
        inner = outer;
    }
    inner
}

/// Every outcome must be a decoded document within the limits or a clear error.
fn check_outcome(bytes: &[u8]) -> Result<(), TestCaseError> {
    match decode(bytes, "filter", RULES) {
        Ok(doc) => {
            let depth = scan(bytes, RULES.max_depth)
                .map_err(|e| TestCaseError::fail(format!("decoded, yet scan says {e}")))?
                .depth;
            prop_assert!(depth <= RULES.max_depth);
            // What the host goes on to do with it must not panic either.
            let _ = check_pipeline(std::slice::from_ref(&doc), "tenant");
            prop_assert!(!encode(&doc).is_empty());
        }
        Err(WitError::InvalidArgument(m)) => prop_assert!(!m.is_empty()),
        Err(WitError::Denied(m)) => prop_assert!(m.contains("allow_server_side_js")),
        Err(other) => return Err(TestCaseError::fail(format!("unexpected {other:?}"))),
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(1_500))]

    #[test]
    fn garbage_bytes_are_refused_cleanly(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        check_outcome(&bytes)?;
    }

    #[test]
    fn garbage_behind_a_plausible_length_prefix_is_refused_cleanly(
        body in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let mut bytes = ((body.len() + 5) as i32).to_le_bytes().to_vec();
        bytes.extend_from_slice(&body);
        bytes.push(0);
        check_outcome(&bytes)?;
    }

    #[test]
    fn mutated_valid_documents_are_decoded_or_refused_cleanly(
        doc in document(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut bytes = encode(&doc);
        check_outcome(&bytes)?;
        for (at, value) in &edits {
            let i = at.index(bytes.len());
            bytes[i] = *value;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len() + 1));
        }
        check_outcome(&bytes)?;
    }

    #[test]
    fn huge_length_prefixes_are_refused_cleanly(
        doc in document(),
        at in any::<prop::sample::Index>(),
        len in prop_oneof![Just(i32::MAX), Just(i32::MIN), Just(-1), Just(0), any::<i32>()],
    ) {
        let mut bytes = encode(&doc);
        let i = at.index(bytes.len().saturating_sub(3).max(1));
        if i + 4 <= bytes.len() {
            bytes[i..i + 4].copy_from_slice(&len.to_le_bytes());
        }
        check_outcome(&bytes)?;
    }

    #[test]
    fn valid_documents_are_never_called_malformed(doc in document()) {
        let bytes = encode(&doc);
        match scan(&bytes, 200) {
            Ok(shape) => prop_assert!(shape.depth >= 1),
            Err(ScanError::TooDeep(_)) => {}
            Err(e) => return Err(TestCaseError::fail(format!("{e} for {doc}"))),
        }
    }
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn deep_nesting_is_refused_at_the_limit_without_recursion(
        depth in 1usize..20_000,
        arrays in any::<bool>(),
    ) {
        let bytes = nested_bytes(depth, arrays);
        let result = decode(&bytes, "filter", RULES);
        if depth <= RULES.max_depth as usize {
            prop_assert!(result.is_ok(), "{:?}", result.err());
        } else {
            prop_assert!(
                matches!(&result, Err(WitError::InvalidArgument(m)) if m.contains("nested too deeply")),
                "{:?}", result.err()
            );
        }
    }
}
