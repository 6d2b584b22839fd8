//! One linear, non-recursive pass over BSON bytes a plugin sent, before anything decodes them:
//! it bounds the nesting depth (the host's decoder and the driver's encoder recurse once per
//! level, on the fiber stack of the plugin's request), finds server-side JavaScript (the
//! `$where`, `$function` and `$accumulator` operators, and values of the JavaScript code types),
//! and refuses byte layouts that do not add up. It allocates nothing: the open containers are
//! kept in a fixed array on the stack.

/// The deepest nesting any configuration may allow (MongoDB's own `maxBSONDepth` default).
/// The fiber stack of plugin requests is sized for it (see `engine::new_engine`).
pub const MAX_DEPTH_CEILING: u32 = 200;

/// Operators that run JavaScript on the database server.
const SERVER_JS_OPERATORS: [&[u8]; 3] = [b"$where", b"$function", b"$accumulator"];

/// What a scan found in a well-formed document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Shape {
    /// The deepest nesting seen (a flat document is 1).
    pub depth: u32,
    /// Whether the document asks for server-side JavaScript.
    pub server_js: bool,
}

/// Why a scan refused the bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    /// The bytes are not one well-formed BSON document.
    #[error("{0}")]
    Malformed(&'static str),
    /// Documents and arrays nest deeper than allowed.
    #[error("documents and arrays nest deeper than {0} levels")]
    TooDeep(u32),
}

fn read_i32(bytes: &[u8], at: usize) -> Result<i32, ScanError> {
    match bytes.get(at..at.saturating_add(4)) {
        Some(&[a, b, c, d]) => Ok(i32::from_le_bytes([a, b, c, d])),
        _ => Err(ScanError::Malformed("a length runs past the end")),
    }
}

/// The end (exclusive) of a C string starting at `at`, past its terminating zero.
fn cstring_end(bytes: &[u8], at: usize) -> Result<usize, ScanError> {
    bytes
        .get(at..)
        .and_then(|rest| rest.iter().position(|&b| b == 0))
        .map(|n| at + n + 1)
        .ok_or(ScanError::Malformed("a name runs past the end"))
}

/// The end of a length-prefixed BSON string starting at `at`.
fn string_end(bytes: &[u8], at: usize) -> Result<usize, ScanError> {
    let len = read_i32(bytes, at)?;
    if len < 1 {
        return Err(ScanError::Malformed("a string has a bad length"));
    }
    let end = (at + 4)
        .checked_add(len as usize)
        .filter(|&e| e <= bytes.len())
        .ok_or(ScanError::Malformed("a string runs past the end"))?;
    if bytes[end - 1] != 0 {
        return Err(ScanError::Malformed("a string is not terminated"));
    }
    Ok(end)
}

/// Scans one BSON document (`bytes` must be exactly the document) that may nest at most
/// `max_depth` levels (`max_depth` is capped at [`MAX_DEPTH_CEILING`]).
pub fn scan(bytes: &[u8], max_depth: u32) -> Result<Shape, ScanError> {
    let max_depth = max_depth.clamp(1, MAX_DEPTH_CEILING);
    // Ends (exclusive) of the containers open around the cursor, innermost last.
    let mut ends = [0usize; MAX_DEPTH_CEILING as usize];
    let mut open = 0usize;
    let mut shape = Shape::default();

    let mut at = enter(bytes, 0, &mut ends, &mut open, max_depth, &mut shape)?;
    if ends[0] != bytes.len() {
        return Err(ScanError::Malformed(
            "the length prefix does not cover the bytes exactly",
        ));
    }
    while open > 0 {
        let end = ends[open - 1];
        if at >= end {
            return Err(ScanError::Malformed("a document has no terminator"));
        }
        let kind = *bytes
            .get(at)
            .ok_or(ScanError::Malformed("a document runs past the end"))?;
        if kind == 0 {
            // The terminator must be the container's last byte.
            if at + 1 != end {
                return Err(ScanError::Malformed(
                    "a document ends before its length says",
                ));
            }
            open -= 1;
            at = end;
            continue;
        }
        let key_end = cstring_end(bytes, at + 1)?;
        if key_end > end {
            return Err(ScanError::Malformed("a name runs past its document"));
        }
        let key = &bytes[at + 1..key_end - 1];
        if key.first() == Some(&b'$') && SERVER_JS_OPERATORS.contains(&key) {
            shape.server_js = true;
        }
        let value = key_end;
        let fixed = |n: usize| -> Result<usize, ScanError> {
            value
                .checked_add(n)
                .filter(|&e| e <= end)
                .ok_or(ScanError::Malformed("a value runs past its document"))
        };
        at = match kind {
            0x01 | 0x09 | 0x11 | 0x12 => fixed(8)?,
            0x02 | 0x0E => string_end(bytes, value)?,
            0x0D => {
                shape.server_js = true;
                string_end(bytes, value)?
            }
            0x03 | 0x04 => {
                let next = enter(bytes, value, &mut ends, &mut open, max_depth, &mut shape)?;
                if ends[open - 1] > end {
                    return Err(ScanError::Malformed("a value runs past its document"));
                }
                next
            }
            0x05 => {
                let len = read_i32(bytes, value)?;
                if len < 0 {
                    return Err(ScanError::Malformed("a binary value has a bad length"));
                }
                fixed(5 + len as usize)?
            }
            0x06 | 0x0A | 0x7F | 0xFF => value,
            0x07 => fixed(12)?,
            0x08 => {
                let v = fixed(1)?;
                if bytes[value] > 1 {
                    return Err(ScanError::Malformed("a boolean is neither 0 nor 1"));
                }
                v
            }
            0x0B => cstring_end(bytes, cstring_end(bytes, value)?)?,
            0x0C => {
                let after = string_end(bytes, value)?;
                after
                    .checked_add(12)
                    .filter(|&e| e <= end)
                    .ok_or(ScanError::Malformed("a value runs past its document"))?
            }
            // Code with scope: deprecated, and a second way to nest documents; refused.
            0x0F => {
                return Err(ScanError::Malformed(
                    "JavaScript code with scope is not accepted",
                ))
            }
            0x10 => fixed(4)?,
            0x13 => fixed(16)?,
            _ => return Err(ScanError::Malformed("an element has an unknown type")),
        };
        if at > end {
            return Err(ScanError::Malformed("a value runs past its document"));
        }
    }
    Ok(shape)
}

/// Opens the container whose length prefix is at `at`; returns where its first element starts.
fn enter(
    bytes: &[u8],
    at: usize,
    ends: &mut [usize; MAX_DEPTH_CEILING as usize],
    open: &mut usize,
    max_depth: u32,
    shape: &mut Shape,
) -> Result<usize, ScanError> {
    let len = read_i32(bytes, at)?;
    if len < 5 {
        return Err(ScanError::Malformed("a document has a bad length"));
    }
    let end = at
        .checked_add(len as usize)
        .filter(|&e| e <= bytes.len())
        .ok_or(ScanError::Malformed("a document runs past the end"))?;
    if *open >= max_depth as usize {
        return Err(ScanError::TooDeep(max_depth));
    }
    ends[*open] = end;
    *open += 1;
    shape.depth = shape.depth.max(*open as u32);
    Ok(at + 4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::{doc, Bson, Document};

    fn bytes(doc: &Document) -> Vec<u8> {
        let mut out = Vec::new();
        doc.to_writer(&mut out).unwrap();
        out
    }

    /// `{a: {a: ... {a: 1}}}` with `depth` documents in all.
    fn nested(depth: usize) -> Vec<u8> {
        // Built from the inside out without recursion, then written as bytes by hand so
        // that even depths past what the encoder can handle are possible.
        let mut inner = bytes(&doc! { "a": 1 });
        for _ in 1..depth {
            let mut outer = Vec::with_capacity(inner.len() + 8);
            let len = (4 + 1 + 2 + inner.len() + 1) as i32;
            outer.extend_from_slice(&len.to_le_bytes());
            outer.push(0x03);
            outer.extend_from_slice(b"a\0");
            outer.extend_from_slice(&inner);
            outer.push(0);
            inner = outer;
        }
        inner
    }

    #[test]
    fn measures_depth_and_refuses_deeper_than_the_limit() {
        assert_eq!(scan(&bytes(&doc! {}), 100).unwrap().depth, 1);
        assert_eq!(
            scan(&bytes(&doc! { "a": [ { "b": 1 } ] }), 100)
                .unwrap()
                .depth,
            3
        );
        assert_eq!(scan(&nested(100), 100).unwrap().depth, 100);
        assert_eq!(scan(&nested(101), 100), Err(ScanError::TooDeep(100)));
        assert_eq!(scan(&nested(5000), 128), Err(ScanError::TooDeep(128)));
        // The ceiling holds whatever is asked for.
        assert_eq!(
            scan(&nested(1000), u32::MAX),
            Err(ScanError::TooDeep(MAX_DEPTH_CEILING))
        );
    }

    #[test]
    fn finds_server_side_javascript_anywhere() {
        let plain = doc! { "a": { "$gt": 1 }, "$expr": { "$eq": ["$a", "$b"] } };
        assert!(!scan(&bytes(&plain), 100).unwrap().server_js);
        for js in [
            doc! { "$where": "this.a > 1" },
            doc! { "$expr": { "$function": { "body": "function() { return true }", "args": [], "lang": "js" } } },
            doc! { "$group": { "_id": null, "x": { "$accumulator": {} } } },
            doc! { "a": [ { "b": Bson::JavaScriptCode("1".into()) } ] },
        ] {
            assert!(scan(&bytes(&js), 100).unwrap().server_js, "{js}");
        }
        // A string that merely says `$where` is data.
        assert!(
            !scan(&bytes(&doc! { "a": "$where" }), 100)
                .unwrap()
                .server_js
        );
    }

    #[test]
    fn agrees_with_the_decoder_on_valid_documents() {
        let all_types = doc! {
            "d": 1.5, "s": "x", "o": { "k": [1, 2, { "z": null }] }, "b": Bson::Binary(bson::Binary {
                subtype: bson::spec::BinarySubtype::Generic, bytes: vec![1, 2, 3] }),
            "u": Bson::Undefined, "id": bson::oid::ObjectId::new(), "t": true,
            "dt": bson::DateTime::now(), "re": Bson::RegularExpression(bson::Regex {
                pattern: "a.*".into(), options: "i".into() }),
            "sym": Bson::Symbol("s".into()), "i": 7, "ts": Bson::Timestamp(bson::Timestamp { time: 1, increment: 2 }),
            "l": 9_i64, "dec": Bson::Decimal128(bson::Decimal128::from_bytes([0; 16])),
            "min": Bson::MinKey, "max": Bson::MaxKey,
        };
        let shape = scan(&bytes(&all_types), 100).unwrap();
        assert_eq!(
            shape,
            Shape {
                depth: 4,
                server_js: false
            }
        );
    }

    #[test]
    fn refuses_malformed_layouts_without_panicking() {
        let good = bytes(&doc! { "a": { "b": "c" } });
        assert!(scan(&[], 100).is_err());
        assert!(scan(&[5, 0, 0], 100).is_err());
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(scan(&trailing, 100).is_err());
        // Every truncation and every single-byte change is either refused or still well formed.
        for cut in 0..good.len() {
            assert!(scan(&good[..cut], 100).is_err());
        }
        for i in 0..good.len() {
            for v in [0u8, 1, 0x7f, 0xff] {
                let mut m = good.clone();
                m[i] = v;
                let _ = scan(&m, 100);
            }
        }
        // A nested length that claims more than its parent holds.
        let mut lying = good.clone();
        lying[7] = 100;
        assert!(scan(&lying, 100).is_err());
    }
}
