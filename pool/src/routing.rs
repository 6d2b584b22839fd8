//! Routing rules: which MongoDB deployment (and credentials) serves which database.
//!
//! A rule maps a database-name pattern (`*` matches any run of characters, `?` one character)
//! to a URI. The URI may be a template: `{db}` is replaced by the database name, and
//! `${NAME}` by the environment variable `NAME` (whose name may itself contain `{db}`, e.g.
//! `${TENANT_{db}_PASSWORD}`), so each tenant can have its own credentials without writing
//! them into the configuration. The first matching rule wins; the base `mongo_uri` serves
//! every database no rule matches (and the metadata database).

use mongodb::options::ConnectionString;

use super::error::{Error, Result};
use super::feed::ChangeFeedMode;
use super::secret::SecretUri;

/// One routing rule as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRule {
    /// Database-name pattern (`*`, `?` wildcards).
    pub pattern: String,
    /// The URI (or URI template) for matching databases.
    pub uri: SecretUri,
    /// How matching databases watch changes; `None` takes `pool.change_feed`.
    pub change_feed: Option<ChangeFeedMode>,
}

impl RouteRule {
    /// A rule routing databases matching `pattern` to `uri`.
    pub fn new(pattern: impl Into<String>, uri: impl Into<String>) -> Self {
        Self {
            pattern: pattern.into(),
            uri: SecretUri::new(uri),
            change_feed: None,
        }
    }

    /// The same rule with its own change feed mode.
    pub fn with_change_feed(mut self, mode: ChangeFeedMode) -> Self {
        self.change_feed = Some(mode);
        self
    }
}

/// Where a database's pool connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The base `mongo_uri`.
    Default,
    /// Rule `index`, whose URI has no placeholder (its options can be parsed once).
    Static(usize),
    /// Rule `index` rendered for one database.
    Rendered(usize, SecretUri),
}

/// The configured rules, checked.
#[derive(Debug, Clone, Default)]
pub struct Routes {
    rules: Vec<RouteRule>,
}

impl Routes {
    /// Checks every rule: a valid pattern, a URI that parses once rendered for a sample name.
    /// Environment variables are not required to exist yet (tenants come and go); a missing
    /// one fails that tenant's open with a clear error.
    pub fn new(rules: Vec<RouteRule>) -> Result<Self> {
        for (i, rule) in rules.iter().enumerate() {
            let where_ = || format!("route {} ({:?})", i + 1, rule.pattern);
            if rule.pattern.is_empty() {
                return Err(Error::Config(format!("{}: the pattern is empty", where_())));
            }
            // The characters database names may not contain; `*` and `?` are wildcards here.
            const FORBIDDEN: &[char] = &['/', '\\', '.', ' ', '"', '$', '<', '>', ':', '|', '\0'];
            if let Some(c) = rule.pattern.chars().find(|c| FORBIDDEN.contains(c)) {
                return Err(Error::Config(format!(
                    "{}: the character {c:?} cannot appear in a database name",
                    where_()
                )));
            }
            let sample = render(rule.uri.expose(), "sampletenant", |_| Some("sample".into()))
                .map_err(|e| Error::Config(format!("{}: {e}", where_())))?;
            ConnectionString::parse(&sample).map_err(|e| {
                Error::Config(format!(
                    "{}: invalid URI {}: {}",
                    where_(),
                    rule.uri.redacted(),
                    e.kind
                ))
            })?;
        }
        Ok(Self { rules })
    }

    /// The rules.
    pub fn rules(&self) -> &[RouteRule] {
        &self.rules
    }

    /// Whether rule `index` is a template (rendered per database).
    pub fn is_template_rule(&self, index: usize) -> bool {
        self.rules
            .get(index)
            .is_some_and(|r| is_template(r.uri.expose()))
    }

    /// The change feed mode of the first rule matching `db`, if it sets one.
    pub fn change_feed(&self, db: &str) -> Option<ChangeFeedMode> {
        self.rules
            .iter()
            .find(|r| glob_match(&r.pattern, db))
            .and_then(|r| r.change_feed)
    }

    /// Where `db` connects.
    pub fn target(&self, db: &str) -> Result<Target> {
        let Some((index, rule)) = self
            .rules
            .iter()
            .enumerate()
            .find(|(_, r)| glob_match(&r.pattern, db))
        else {
            return Ok(Target::Default);
        };
        if !is_template(rule.uri.expose()) {
            return Ok(Target::Static(index));
        }
        let rendered =
            render(rule.uri.expose(), db, |name| std::env::var(name).ok()).map_err(|e| {
                Error::Config(format!(
                    "route {} ({:?}) for database {db:?}: {e}",
                    index + 1,
                    rule.pattern
                ))
            })?;
        Ok(Target::Rendered(index, SecretUri::new(rendered)))
    }
}

fn is_template(uri: &str) -> bool {
    uri.contains("{db}") || uri.contains("${")
}

/// Replaces `{db}` and `${NAME}` (with `{db}` expanded inside `NAME` first).
fn render(
    template: &str,
    db: &str,
    env: impl Fn(&str) -> Option<String>,
) -> std::result::Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start].replace("{db}", &encode(db)));
        let after = &rest[start + 2..];
        // The variable name may contain `{db}`: find the `}` that closes `${`.
        let mut depth = 0usize;
        let mut end = None;
        for (i, c) in after.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    end = Some(i);
                    break;
                }
                '}' => depth -= 1,
                _ => {}
            }
        }
        let end = end.ok_or_else(|| "unclosed ${ in the URI template".to_string())?;
        let name = after[..end].replace("{db}", db);
        if name.is_empty() {
            return Err("empty ${} in the URI template".into());
        }
        let value = env(&name).ok_or_else(|| format!("environment variable {name} is not set"))?;
        out.push_str(&encode(&value));
        rest = &after[end + 1..];
    }
    out.push_str(&rest.replace("{db}", &encode(db)));
    Ok(out)
}

/// Percent-encodes what may not appear literally in a URI's user info.
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Glob matching with `*` (any run, possibly empty) and `?` (one character).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("eu-*", "eu-acme"));
        assert!(glob_match("eu-*", "eu-"));
        assert!(!glob_match("eu-*", "us-acme"));
        assert!(glob_match("*-archive", "acme-archive"));
        assert!(glob_match("t??", "t42"));
        assert!(!glob_match("t??", "t4"));
        assert!(glob_match("*", "anything"));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(!glob_match("a*b*c", "axxbyy"));
    }

    #[test]
    fn templates_render_db_and_env() {
        let env = |name: &str| (name == "PASS_acme").then(|| "p@ss word".to_string());
        assert_eq!(
            render(
                "mongodb://u_{db}:${PASS_{db}}@host/?appName={db}",
                "acme",
                env
            )
            .unwrap(),
            "mongodb://u_acme:p%40ss%20word@host/?appName=acme"
        );
        let err = render("mongodb://u:${PASS_{db}}@host/", "globex", env).unwrap_err();
        assert!(err.contains("PASS_globex"), "{err}");
        assert!(render("mongodb://u:${PASS@host/", "x", env).is_err());
    }

    #[test]
    fn first_matching_rule_wins_and_the_rest_go_to_the_default() {
        let routes = Routes::new(vec![
            RouteRule::new("eu-*", "mongodb://eu-host/"),
            RouteRule::new("*", "mongodb://u_{db}:${POLYMONGO_ROUTING_TEST_{db}}@any/"),
        ])
        .unwrap();
        assert_eq!(routes.target("eu-acme").unwrap(), Target::Static(0));
        let err = routes.target("us-acme").unwrap_err();
        assert!(
            err.to_string().contains("POLYMONGO_ROUTING_TEST_us-acme"),
            "{err}"
        );
        let only_eu = Routes::new(vec![RouteRule::new("eu-*", "mongodb://eu-host/")]).unwrap();
        assert_eq!(only_eu.target("us-acme").unwrap(), Target::Default);
    }

    #[test]
    fn invalid_rules_are_refused_with_their_position() {
        let err = Routes::new(vec![RouteRule::new("eu-*", "http://nope")]).unwrap_err();
        assert!(err.to_string().contains("route 1"), "{err}");
        let err = Routes::new(vec![RouteRule::new("", "mongodb://h/")]).unwrap_err();
        assert!(err.to_string().contains("empty"), "{err}");
        let err = Routes::new(vec![RouteRule::new("a/b", "mongodb://h/")]).unwrap_err();
        assert!(err.to_string().contains("'/'"), "{err}");
        let err = Routes::new(vec![RouteRule::new(
            "a*",
            "mongodb://u:secret@h/?x=${UNCLOSED",
        )])
        .unwrap_err();
        assert!(err.to_string().contains("unclosed"), "{err}");
        assert!(!err.to_string().contains("secret"), "{err}");
    }
}
