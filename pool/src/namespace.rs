//! The tenant namespace: how a tenant name (from a request header) becomes a database name.
//!
//! A tenant name is checked against a small alphabet (ASCII letters, digits, `-`, `_`), folded
//! to lower case (MongoDB treats database names that differ only in case as one database, so
//! `Acme` and `acme` are one tenant) and prefixed with `tenant_db_prefix` (default `t_`). The
//! prefix puts every tenant database in a namespace of its own: no tenant name can equal a
//! granted, shared, default, system or metadata database, whose names must lie outside it.
//! An empty prefix keeps the old mapping (database = tenant name, folded) and loses that
//! protection for granted and shared databases.

use super::error::{Error, Result};
use super::name::{self, MAX_NAME_BYTES};

/// The default prefix of tenant databases.
pub const DEFAULT_TENANT_DB_PREFIX: &str = "t_";

/// Longest prefix accepted, in bytes (the rest of the 63 bytes is for the tenant name).
pub const MAX_PREFIX_BYTES: usize = 31;

/// Whether `c` may appear in a tenant name (and in the prefix).
fn tenant_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

/// Maps tenant names to their databases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantNamespace {
    prefix: String,
}

impl TenantNamespace {
    /// A namespace with `prefix` (lower-case letters, digits, `-`, `_`; at most
    /// 31 bytes; may be empty).
    pub fn new(prefix: &str) -> Result<Self> {
        let bad = |reason: String| Error::Config(format!("tenant_db_prefix {prefix:?}: {reason}"));
        if prefix.len() > MAX_PREFIX_BYTES {
            return Err(bad(format!("at most {MAX_PREFIX_BYTES} bytes")));
        }
        if let Some(c) = prefix
            .chars()
            .find(|c| !tenant_char(*c) || c.is_ascii_uppercase())
        {
            return Err(bad(format!(
                "the character {c:?} is not allowed; use lower-case letters, digits, '-' and '_'"
            )));
        }
        Ok(Self {
            prefix: prefix.to_string(),
        })
    }

    /// The prefix of tenant databases (may be empty).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Longest tenant name, in bytes, that still makes a valid database name.
    pub fn max_tenant_bytes(&self) -> usize {
        MAX_NAME_BYTES - self.prefix.len()
    }

    /// The canonical form of a tenant name: checked and folded to lower case. Two names
    /// with the same canonical form are the same tenant.
    pub fn canonical_tenant(&self, tenant: &str) -> Result<String> {
        let invalid = |reason: String| Error::InvalidDatabaseName {
            name: tenant.escape_default().to_string(),
            reason,
        };
        if tenant.is_empty() {
            return Err(invalid("the tenant name is empty".into()));
        }
        if let Some(c) = tenant.chars().find(|c| !tenant_char(*c)) {
            return Err(invalid(format!(
                "the character {c:?} is not allowed in tenant names; use letters, digits, '-' and '_'"
            )));
        }
        let max = self.max_tenant_bytes();
        if tenant.len() > max {
            return Err(invalid(format!(
                "the tenant name is {} bytes long; at most {max} are allowed (database names have \
                 at most {MAX_NAME_BYTES} bytes, {} of them the prefix {:?})",
                tenant.len(),
                self.prefix.len(),
                self.prefix
            )));
        }
        Ok(tenant.to_ascii_lowercase())
    }

    /// The database of `tenant`: the prefix and the canonical tenant name. With an empty
    /// prefix, a name equal (ignoring case) to a reserved database (`protected`: the system
    /// databases, metadata and default databases) is refused.
    pub fn database_of(&self, tenant: &str, protected: &[&str]) -> Result<String> {
        let db = self.database_name(tenant)?;
        let reserved = name::SYSTEM_DATABASES
            .iter()
            .chain(protected)
            .any(|r| r.eq_ignore_ascii_case(&db));
        if reserved {
            return Err(Error::ReservedDatabase(db));
        }
        Ok(db)
    }

    /// The database of `tenant` without the reserved-name check (only for deployments that
    /// allow reserved databases as tenant databases).
    pub fn database_name(&self, tenant: &str) -> Result<String> {
        let db = format!("{}{}", self.prefix, self.canonical_tenant(tenant)?);
        name::validate_syntax(&db)?;
        Ok(db)
    }

    /// Whether database `db` lies in the tenant namespace (starts with the prefix, ignoring
    /// case). Always false with an empty prefix. Granted, default and metadata databases
    /// must not.
    pub fn contains(&self, db: &str) -> bool {
        !self.prefix.is_empty()
            && db.len() >= self.prefix.len()
            && db.as_bytes()[..self.prefix.len()].eq_ignore_ascii_case(self.prefix.as_bytes())
    }

    /// Checks that a database that must stay outside the namespace (a grant, the default or
    /// metadata database) does; `what` names it in the error.
    pub fn check_outside(&self, what: &str, db: &str) -> Result<()> {
        if self.contains(db) {
            return Err(Error::Config(format!(
                "{what} {db:?} starts with the tenant database prefix {:?}: a tenant could \
                 reach it; rename it or change tenant_db_prefix",
                self.prefix
            )));
        }
        Ok(())
    }
}

impl Default for TenantNamespace {
    fn default() -> Self {
        Self {
            prefix: DEFAULT_TENANT_DB_PREFIX.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROTECTED: &[&str] = &["polymongo-metadata", "Default-DB"];

    #[test]
    fn tenants_get_prefixed_lower_case_databases() {
        let ns = TenantNamespace::default();
        assert_eq!(ns.database_of("acme", PROTECTED).unwrap(), "t_acme");
        assert_eq!(ns.database_of("Acme", PROTECTED).unwrap(), "t_acme");
        assert_eq!(
            ns.database_of("ACME-42_x", PROTECTED).unwrap(),
            "t_acme-42_x"
        );
        // Names of shared, system and metadata databases land in the namespace.
        for name in [
            "shared-catalog",
            "admin",
            "local",
            "config",
            "polymongo-metadata",
        ] {
            let db = ns.database_of(name, PROTECTED).unwrap();
            assert_eq!(db, format!("t_{name}"));
        }
    }

    #[test]
    fn forbidden_characters_and_lengths_are_refused() {
        let ns = TenantNamespace::default();
        for name in [
            "",
            "a.b",
            "a/b",
            "a\\b",
            "a b",
            "a\"b",
            "$x",
            "a*",
            "a<b",
            "a>b",
            "a:b",
            "a|b",
            "a?",
            "a\0b",
            "é",
            "a\u{202e}b",
            "a\tb",
            "a\nb",
            "a@b",
        ] {
            let err = ns.database_of(name, PROTECTED).expect_err(name);
            assert!(
                matches!(err, Error::InvalidDatabaseName { .. }),
                "{name:?}: {err}"
            );
        }
        // 61 bytes + "t_" = 63: the longest database name.
        assert_eq!(
            ns.database_of(&"x".repeat(61), PROTECTED).unwrap().len(),
            63
        );
        let err = ns.database_of(&"x".repeat(62), PROTECTED).unwrap_err();
        assert!(err.to_string().contains("at most 61"), "{err}");
    }

    #[test]
    fn without_a_prefix_reserved_names_are_still_refused_in_any_case() {
        let ns = TenantNamespace::new("").unwrap();
        assert_eq!(ns.database_of("Acme", PROTECTED).unwrap(), "acme");
        for name in [
            "admin",
            "LOCAL",
            "Config",
            "POLYMONGO-metadata",
            "default-db",
        ] {
            let err = ns.database_of(name, PROTECTED).expect_err(name);
            assert!(matches!(err, Error::ReservedDatabase(_)), "{name}: {err}");
        }
        assert!(!ns.contains("anything"));
    }

    #[test]
    fn the_namespace_is_matched_ignoring_case() {
        let ns = TenantNamespace::default();
        assert!(ns.contains("t_acme") && ns.contains("T_acme"));
        assert!(!ns.contains("shared-catalog") && !ns.contains("t"));
        assert!(ns.check_outside("grant", "T_Other").is_err());
        assert!(ns.check_outside("grant", "shared-catalog").is_ok());
    }

    #[test]
    fn prefixes_are_checked() {
        for bad in ["T_", "t.", "t/", &"p".repeat(32)] {
            assert!(TenantNamespace::new(bad).is_err(), "{bad}");
        }
        assert_eq!(TenantNamespace::new("tenant-").unwrap().prefix(), "tenant-");
    }
}
