//! Keeping credentials out of logs, errors and `Debug` output.
//!
//! A MongoDB URI carries a password (`mongodb://user:secret@host/`) and sometimes other
//! secrets in its options. [`SecretUri`] holds such a URI and only ever shows it masked;
//! [`Redactor`] scrubs those secrets from any text (driver error messages included).

use std::fmt;
use std::sync::{Arc, RwLock};

/// The mask printed in place of a secret.
pub const MASK: &str = "****";

/// URI options whose values are secrets.
const SECRET_OPTIONS: &[&str] = &["tlscertificatekeyfilepassword", "authmechanismproperties"];

/// A MongoDB connection string whose secrets never appear in `Debug` or `Display` output.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUri {
    raw: String,
}

impl SecretUri {
    /// Wraps a connection string.
    pub fn new(uri: impl Into<String>) -> Self {
        Self { raw: uri.into() }
    }

    /// The real connection string, secrets included. Only for handing to the driver.
    pub fn expose(&self) -> &str {
        &self.raw
    }

    /// The connection string with its password and secret options masked.
    pub fn redacted(&self) -> String {
        mask_uri(&self.raw)
    }

    /// A redactor that removes this URI's secrets from any text.
    pub fn redactor(&self) -> Redactor {
        let redactor = Redactor::default();
        redactor.add(self);
        redactor
    }

    /// This URI's secrets: the password (raw and decoded) and secret option values.
    fn secrets(&self) -> Vec<String> {
        let mut secrets = Vec::new();
        if let Some(password) = uri_password(&self.raw) {
            secrets.push(password.to_string());
            let decoded = percent_decode(password);
            if decoded != password {
                secrets.push(decoded);
            }
        }
        for (_, value) in secret_option_values(&self.raw) {
            secrets.push(value.to_string());
        }
        secrets.retain(|s| !s.is_empty());
        secrets
    }
}

impl fmt::Debug for SecretUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretUri({:?})", self.redacted())
    }
}

impl fmt::Display for SecretUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Removes known secrets from text before it is logged or returned. Clones share one set of
/// secrets, which grows as URIs are added (e.g. per-tenant URIs rendered from a template).
#[derive(Clone, Default)]
pub struct Redactor {
    secrets: Arc<RwLock<Vec<String>>>,
}

impl Redactor {
    /// Adds `uri`'s secrets.
    pub fn add(&self, uri: &SecretUri) {
        let new = uri.secrets();
        if new.is_empty() {
            return;
        }
        let mut secrets = self.secrets.write().unwrap_or_else(|p| p.into_inner());
        for secret in new {
            if !secrets.contains(&secret) {
                secrets.push(secret);
            }
        }
        // Longest first, so a secret that contains another is masked whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }

    /// Returns `text` with every known secret replaced by [`MASK`].
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        let secrets = self.secrets.read().unwrap_or_else(|p| p.into_inner());
        for secret in secrets.iter() {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), MASK);
            }
        }
        out
    }
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.secrets.read().map(|s| s.len()).unwrap_or(0);
        write!(f, "Redactor({n} secrets)")
    }
}

/// The `user:password@` part of a URI, if any, as byte offsets of the password.
fn password_span(uri: &str) -> Option<(usize, usize)> {
    let scheme_end = uri.find("://")? + 3;
    let rest = &uri[scheme_end..];
    // The authority ends at the first '/' or '?' after the last '@' of the user info.
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let at = rest[..authority_end].rfind('@')?;
    let userinfo = &rest[..at];
    let colon = userinfo.find(':')?;
    Some((scheme_end + colon + 1, scheme_end + at))
}

fn uri_password(uri: &str) -> Option<&str> {
    password_span(uri).map(|(start, end)| &uri[start..end])
}

/// Values of options that carry secrets, with their byte offsets.
fn secret_option_values(uri: &str) -> Vec<(usize, &str)> {
    let Some(q) = uri.find('?') else {
        return Vec::new();
    };
    let mut found = Vec::new();
    let mut offset = q + 1;
    for pair in uri[q + 1..].split('&') {
        if let Some((key, value)) = pair.split_once('=') {
            if SECRET_OPTIONS.contains(&key.to_ascii_lowercase().as_str()) {
                found.push((offset + key.len() + 1, value));
            }
        }
        offset += pair.len() + 1;
    }
    found
}

fn mask_uri(uri: &str) -> String {
    let mut spans: Vec<(usize, usize)> = secret_option_values(uri)
        .into_iter()
        .map(|(start, value)| (start, start + value.len()))
        .collect();
    if let Some(span) = password_span(uri) {
        spans.push(span);
    }
    spans.sort();
    let mut out = String::with_capacity(uri.len());
    let mut cursor = 0;
    for (start, end) in spans {
        out.push_str(&uri[cursor..start]);
        out.push_str(MASK);
        cursor = end;
    }
    out.push_str(&uri[cursor..]);
    out
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_password_in_display_and_debug() {
        let uri = SecretUri::new("mongodb://alice:s3cr%40t@db1:27017,db2/admin?replicaSet=rs0");
        assert_eq!(
            uri.to_string(),
            "mongodb://alice:****@db1:27017,db2/admin?replicaSet=rs0"
        );
        assert!(!format!("{uri:?}").contains("s3cr"));
    }

    #[test]
    fn leaves_uri_without_password_alone() {
        let uri = SecretUri::new("mongodb://127.0.0.1:27017/?directConnection=true");
        assert_eq!(uri.redacted(), uri.expose());
        let uri = SecretUri::new("mongodb://alice@host/");
        assert_eq!(uri.redacted(), "mongodb://alice@host/");
    }

    #[test]
    fn masks_secret_options() {
        let uri = SecretUri::new(
            "mongodb+srv://u:p@c.example.net/?authMechanismProperties=AWS_SESSION_TOKEN:tok&w=1",
        );
        assert_eq!(
            uri.redacted(),
            "mongodb+srv://u:****@c.example.net/?authMechanismProperties=****&w=1"
        );
    }

    #[test]
    fn redactor_scrubs_raw_and_decoded_password() {
        let uri = SecretUri::new("mongodb://alice:s3cr%40t@db1/");
        let r = uri.redactor();
        assert_eq!(r.scrub("auth with s3cr@t failed"), "auth with **** failed");
        assert_eq!(
            r.scrub("uri mongodb://alice:s3cr%40t@db1/"),
            "uri mongodb://alice:****@db1/"
        );
    }

    #[test]
    fn password_with_at_sign_in_userinfo_uses_last_at() {
        let uri = SecretUri::new("mongodb://bob:pa@ss@host/db");
        assert_eq!(uri.redacted(), "mongodb://bob:****@host/db");
    }
}
