//! Database-name validation.
//!
//! Tenant database names usually come from request input (a header, a path), so they are
//! checked before they reach the driver: MongoDB's own rules, plus refusing the system
//! databases and the metadata database unless the configuration allows them.

use super::error::{Error, Result};

/// Longest database name accepted, in bytes.
pub const MAX_NAME_BYTES: usize = 63;

/// Characters MongoDB forbids in database names.
const FORBIDDEN: &[char] = &[
    '/', '\\', '.', ' ', '"', '$', '*', '<', '>', ':', '|', '?', '\0',
];

/// The server's own databases.
pub const SYSTEM_DATABASES: &[&str] = &["admin", "local", "config"];

/// Checks the syntax of a database name (length and characters).
pub fn validate_syntax(name: &str) -> Result<()> {
    let invalid = |reason: String| Error::InvalidDatabaseName {
        name: name.escape_default().to_string(),
        reason,
    };
    if name.is_empty() {
        return Err(invalid("the name is empty".into()));
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(invalid(format!(
            "the name is {} bytes long; at most {MAX_NAME_BYTES} are allowed",
            name.len()
        )));
    }
    if let Some(c) = name.chars().find(|c| FORBIDDEN.contains(c)) {
        return Err(invalid(format!(
            "the character {:?} is not allowed in database names",
            c
        )));
    }
    Ok(())
}

/// Checks a name for use as a tenant database: valid syntax, and not a system or metadata
/// database unless `allow_reserved` is set.
pub fn validate_tenant(name: &str, metadata_db: &str, allow_reserved: bool) -> Result<()> {
    validate_syntax(name)?;
    if !allow_reserved && is_reserved(name, metadata_db) {
        return Err(Error::ReservedDatabase(name.to_string()));
    }
    Ok(())
}

/// Whether `name` is a system database or the metadata database (case-insensitively, as
/// MongoDB treats names that differ only in case as the same database on some platforms).
pub fn is_reserved(name: &str, metadata_db: &str) -> bool {
    SYSTEM_DATABASES
        .iter()
        .any(|s| s.eq_ignore_ascii_case(name))
        || name.eq_ignore_ascii_case(metadata_db)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for name in ["tenant-acme", "a", "Tenant_42", &"x".repeat(63)] {
            validate_tenant(name, "polymongo-metadata", false).expect(name);
        }
    }

    #[test]
    fn rejects_bad_syntax() {
        let too_long = "x".repeat(64);
        let cases: Vec<&str> = vec![
            "", "a/b", "a\\b", "a.b", "a b", "a\"b", "$x", "a*", "a<b", "a>b", "a:b", "a|b", "a?",
            "a\0b", &too_long,
        ];
        for name in cases {
            let err = validate_syntax(name).expect_err(name);
            assert!(
                matches!(err, Error::InvalidDatabaseName { .. }),
                "{name:?}: {err}"
            );
        }
    }

    #[test]
    fn multibyte_length_counts_bytes() {
        // 32 two-byte characters = 64 bytes.
        let name = "é".repeat(32);
        assert!(validate_syntax(&name).is_err());
        assert!(validate_syntax(&"é".repeat(31)).is_ok());
    }

    #[test]
    fn reserved_names_need_permission() {
        for name in ["admin", "local", "config", "ADMIN", "polymongo-metadata"] {
            let err = validate_tenant(name, "polymongo-metadata", false).expect_err(name);
            assert_eq!(err, Error::ReservedDatabase(name.to_string()));
            validate_tenant(name, "polymongo-metadata", true).expect(name);
        }
    }
}
