//! One behavioural suite for every plugin language: the `users` contract
//! (`plugins/users/API.md`) as data, `tests/scenarios/users.json`, run through the gateway
//! against the Rust (`users`), JavaScript (`users-js`) and Python (`users-py`) plugins alike,
//! each with two fresh tenant databases. Then the stored documents and the unique index are
//! checked with the driver.
//!
//! The components come from `cargo xtask build-plugins` (`plugins/deploy/`). They are compiled
//! once per test binary: the three tests share one host (and the compile cache in
//! `target/compile-cache-tests` makes the next run's start fast).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::Request;
use axum::Router;
use bson::{doc, oid::ObjectId, Bson, Document};
use polymongo::gateway::{self, AppState, GatewayConfig};
use polymongo::plugins::PluginRegistry;
use polymongo::pool::PolyMongo;
use polymongo::runtime::{Runtime, RuntimeConfig};
use polymongo_tests::{bundled_wasm, test_uri, unique_db, workspace_root};
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use tower::ServiceExt;

const PLUGINS: &[&str] = &["users", "users-js", "users-py"];

#[test]
fn users_contract_rust() {
    run_scenario("users");
}

#[test]
fn users_contract_javascript() {
    run_scenario("users-js");
}

#[test]
fn users_contract_python() {
    run_scenario("users-py");
}

// ---- the shared host ----------------------------------------------------------------------

/// One host for the whole test binary, on its own tokio runtime (tests call `block_on`).
struct Shared {
    rt: tokio::runtime::Runtime,
    app: Router,
    registry: Arc<PluginRegistry>,
}

static SHARED: OnceLock<Shared> = OnceLock::new();

fn shared() -> &'static Shared {
    SHARED.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let (app, registry) = rt.block_on(start_host());
        Shared { rt, app, registry }
    })
}

async fn start_host() -> (Router, Arc<PluginRegistry>) {
    let dir = tempfile::tempdir().expect("temp dir");
    for name in PLUGINS {
        std::fs::copy(bundled_wasm(name), dir.path().join(format!("{name}.wasm")))
            .expect("copy component");
    }
    let builder = PolyMongo::builder(test_uri());
    let builder = match polymongo_tests::test_client_sharing() {
        Some(mode) => builder.client_sharing(mode.parse().expect("client sharing mode")),
        None => builder,
    };
    let manager = builder
        .metadata_db(unique_db("meta"))
        .no_idle_timeout()
        .build()
        .await
        .expect("connection manager");
    let config = RuntimeConfig {
        cache_dir: Some(workspace_root().join("target/compile-cache-tests")),
        ..RuntimeConfig::default()
    };
    let runtime = Runtime::new(manager.clone(), config).expect("runtime");
    let registry = Arc::new(PluginRegistry::new(runtime, dir.path()));
    let started = std::time::Instant::now();
    registry.load_all().await.expect("load plugins");
    eprintln!("behaviour: loaded {PLUGINS:?} in {:.1?}", started.elapsed());
    let state = AppState {
        manager,
        registry: registry.clone(),
        config: Arc::new(GatewayConfig::default()),
    };
    (gateway::router(state), registry)
}

// ---- order-preserving JSON ----------------------------------------------------------------

/// A JSON value whose objects keep their key order (the contract fixes the order of a user's
/// keys), compared exactly: `31` and `31.0` differ.
#[derive(Debug, Clone, PartialEq)]
enum J {
    Null,
    Bool(bool),
    Num(serde_json::Number),
    Str(String),
    Arr(Vec<J>),
    Obj(Vec<(String, J)>),
}

impl<'de> Deserialize<'de> for J {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<J, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = J;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("JSON")
            }
            fn visit_unit<E>(self) -> Result<J, E> {
                Ok(J::Null)
            }
            fn visit_bool<E>(self, v: bool) -> Result<J, E> {
                Ok(J::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<J, E> {
                Ok(J::Num(v.into()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<J, E> {
                Ok(J::Num(v.into()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<J, E> {
                serde_json::Number::from_f64(v)
                    .map(J::Num)
                    .ok_or_else(|| E::custom("non-finite number"))
            }
            fn visit_str<E>(self, v: &str) -> Result<J, E> {
                Ok(J::Str(v.to_string()))
            }
            fn visit_string<E>(self, v: String) -> Result<J, E> {
                Ok(J::Str(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<J, A::Error> {
                let mut out = Vec::new();
                while let Some(v) = seq.next_element()? {
                    out.push(v);
                }
                Ok(J::Arr(out))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<J, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, J>()? {
                    out.push((k, v));
                }
                Ok(J::Obj(out))
            }
        }
        d.deserialize_any(V)
    }
}

impl fmt::Display for J {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = |v: &str| serde_json::to_string(v).unwrap_or_default();
        match self {
            J::Null => f.write_str("null"),
            J::Bool(b) => write!(f, "{b}"),
            J::Num(n) => write!(f, "{n}"),
            J::Str(v) => f.write_str(&s(v)),
            J::Arr(items) => {
                f.write_str("[")?;
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str("]")
            }
            J::Obj(entries) => {
                f.write_str("{")?;
                for (i, (k, v)) in entries.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{}:{v}", s(k))?;
                }
                f.write_str("}")
            }
        }
    }
}

impl J {
    fn get(&self, key: &str) -> Option<&J> {
        match self {
            J::Obj(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn str(&self, key: &str) -> Option<&str> {
        match self.get(key) {
            Some(J::Str(s)) => Some(s),
            _ => None,
        }
    }

    /// The same value with `<id:NAME>` / `<ID:NAME>` in its strings replaced.
    fn substituted(&self, caps: &Captures) -> J {
        match self {
            J::Str(s) => J::Str(caps.substitute(s)),
            J::Arr(items) => J::Arr(items.iter().map(|v| v.substituted(caps)).collect()),
            J::Obj(entries) => J::Obj(
                entries
                    .iter()
                    .map(|(k, v)| (k.clone(), v.substituted(caps)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }
}

// ---- captures -----------------------------------------------------------------------------

#[derive(Default)]
struct Captures {
    ids: HashMap<String, String>,
    times: HashMap<String, String>,
    last_time: String,
}

impl Captures {
    fn substitute(&self, s: &str) -> String {
        let mut out = s.to_string();
        for (name, id) in &self.ids {
            out = out.replace(&format!("<id:{name}>"), id);
            out = out.replace(&format!("<ID:{name}>"), &id.to_uppercase());
        }
        assert!(
            !out.contains("<id:") && !out.contains("<ID:"),
            "the scenario uses an id before capturing it: {s}"
        );
        out
    }

    /// Compares `actual` with the placeholder string `expected`, capturing on first use.
    fn matches_str(&mut self, expected: &str, actual: &str) -> Result<(), String> {
        if expected == "<string>" {
            return Ok(());
        }
        let placeholder = |prefix: &str| {
            expected
                .strip_prefix(prefix)
                .and_then(|rest| rest.strip_suffix('>'))
                .map(str::to_string)
        };
        if let Some(name) = placeholder("<id:") {
            if actual.len() != 24
                || !actual
                    .bytes()
                    .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            {
                return Err(format!(
                    "{actual:?} is not 24 lower-case hex digits ({expected})"
                ));
            }
            return capture(&mut self.ids, &name, actual, expected);
        }
        if let Some(name) = placeholder("<time:") {
            if !is_iso_millis(actual) {
                return Err(format!(
                    "{actual:?} is not YYYY-MM-DDTHH:MM:SS.mmmZ ({expected})"
                ));
            }
            if !self.times.contains_key(&name) {
                if *actual < *self.last_time {
                    return Err(format!(
                        "{expected} = {actual} is before an earlier capture, {}",
                        self.last_time
                    ));
                }
                self.last_time = actual.to_string();
            }
            return capture(&mut self.times, &name, actual, expected);
        }
        if expected == actual {
            Ok(())
        } else {
            Err(format!("expected {expected:?}, got {actual:?}"))
        }
    }

    fn matches(&mut self, expected: &J, actual: &J, at: &str) -> Result<(), String> {
        let fail = |why: String| Err(format!("at {at}: {why}"));
        match (expected, actual) {
            (J::Str(e), J::Str(a)) => self.matches_str(e, a).or_else(fail),
            (J::Arr(e), J::Arr(a)) => {
                if e.len() != a.len() {
                    return fail(format!("expected {} items, got {}", e.len(), a.len()));
                }
                for (i, (e, a)) in e.iter().zip(a).enumerate() {
                    self.matches(e, a, &format!("{at}[{i}]"))?;
                }
                Ok(())
            }
            (J::Obj(e), J::Obj(a)) => {
                let ek: Vec<&str> = e.iter().map(|(k, _)| k.as_str()).collect();
                let ak: Vec<&str> = a.iter().map(|(k, _)| k.as_str()).collect();
                if ek != ak {
                    return fail(format!(
                        "expected the keys {ek:?} (in this order), got {ak:?}"
                    ));
                }
                for ((k, e), (_, a)) in e.iter().zip(a) {
                    self.matches(e, a, &format!("{at}.{k}"))?;
                }
                Ok(())
            }
            (e, a) if e == a => Ok(()),
            (e, a) => fail(format!("expected {e}, got {a}")),
        }
    }
}

fn capture(
    map: &mut HashMap<String, String>,
    name: &str,
    actual: &str,
    expected: &str,
) -> Result<(), String> {
    match map.get(name) {
        Some(known) if known == actual => Ok(()),
        Some(known) => Err(format!("{expected} was {known}, now {actual}")),
        None => {
            map.insert(name.to_string(), actual.to_string());
            Ok(())
        }
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn is_iso_millis(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 24
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'.',
            23 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

// ---- the runner ---------------------------------------------------------------------------

fn scenario() -> J {
    let path = workspace_root().join("tests/scenarios/users.json");
    let text = std::fs::read_to_string(&path).expect("read the scenario");
    serde_json::from_str(&text).expect("the scenario is JSON")
}

fn run_scenario(plugin: &str) {
    let shared = shared();
    if shared.registry.get(plugin).is_none() {
        let info = shared.registry.list();
        let entry = info.iter().find(|i| i.name == plugin);
        panic!("{plugin} did not load: {entry:#?}");
    }
    let tenants = [
        ("a", unique_db(&format!("{plugin}-a"))),
        ("b", unique_db(&format!("{plugin}-b"))),
    ];
    let caps = shared.rt.block_on(run_steps(&shared.app, plugin, &tenants));
    shared.rt.block_on(check_storage(plugin, &tenants, &caps));
}

async fn run_steps(app: &Router, plugin: &str, tenants: &[(&str, String)]) -> Captures {
    let scenario = scenario();
    let Some(J::Arr(steps)) = scenario.get("steps") else {
        panic!("the scenario has no steps");
    };
    let mut caps = Captures::default();
    for (n, step) in steps.iter().enumerate() {
        let what = step.str("do").expect("step without `do`");
        let (method, path) = what.split_once(' ').expect("`do` is `METHOD PATH`");
        let tenant_key = step.str("tenant").unwrap_or("a");
        let tenant = &tenants
            .iter()
            .find(|(k, _)| *k == tenant_key)
            .expect("tenant a or b")
            .1;
        let path = caps.substitute(path);
        let mut request = Request::builder()
            .method(method)
            .uri(format!("/{plugin}{path}"))
            .header("x-tenant-id", tenant.as_str());
        let body = if let Some(json) = step.get("json") {
            request = request.header("content-type", "application/json");
            json.substituted(&caps).to_string()
        } else if let Some(raw) = step.str("raw") {
            caps.substitute(raw)
        } else {
            String::new()
        };
        if let Some(J::Obj(headers)) = step.get("request_headers") {
            for (k, v) in headers {
                if let J::Str(v) = v {
                    request = request.header(k.as_str(), v.as_str());
                }
            }
        }
        let response = app
            .clone()
            .oneshot(request.body(Body::from(body.clone())).expect("request"))
            .await
            .expect("gateway");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), 16 << 20)
            .await
            .expect("body");
        let text = String::from_utf8_lossy(&bytes);
        let context = || {
            format!(
                "\n{plugin}: step {n} ({}): {what} as tenant {tenant_key}\n  request body: {body}\n  answer: {status} {text}\n  step: {step}",
                step.str("note").unwrap_or("-")
            )
        };
        let expected_status = match step.get("status") {
            Some(J::Num(n)) => n.as_u64().expect("status") as u16,
            _ => panic!("step {n} has no status"),
        };
        assert_eq!(status, expected_status, "wrong status{}", context());
        if let Some(J::Obj(expected)) = step.get("headers") {
            for (k, v) in expected {
                let actual = headers.get(k.as_str()).and_then(|v| v.to_str().ok());
                assert_eq!(
                    actual.map(J::from_str),
                    Some(v.clone()),
                    "header {k}{}",
                    context()
                );
            }
        }
        let content_type = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if status == 204 {
            assert!(bytes.is_empty(), "a 204 has no body{}", context());
            assert!(
                content_type.is_empty(),
                "a 204 has no content type, got {content_type:?}{}",
                context()
            );
            continue;
        }
        assert!(
            content_type.starts_with("application/json"),
            "content-type {content_type:?}, expected application/json{}",
            context()
        );
        let actual: J = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("the body is not JSON ({e}){}", context()));
        let default_error;
        let expected = match step.get("expect") {
            Some(e) => e,
            None if status >= 400 => {
                default_error = J::Obj(vec![("error".into(), J::Str("<string>".into()))]);
                &default_error
            }
            None => continue,
        };
        if let Err(why) = caps.matches(expected, &actual, "body") {
            panic!("{why}{}", context());
        }
    }
    caps
}

impl J {
    fn from_str(s: &str) -> J {
        J::Str(s.to_string())
    }
}

/// The database of `tenant` in the host's default tenant namespace.
fn tenant_db(tenant: &str) -> String {
    polymongo::pool::TenantNamespace::default()
        .database_of(tenant, &[])
        .expect("a valid tenant name")
}

/// What the contract says about storage: the documents' types and the unique index, and that
/// every `created_at` answered is the one stored.
async fn check_storage(plugin: &str, tenants: &[(&str, String)], caps: &Captures) {
    let client = mongodb::Client::with_uri_str(test_uri())
        .await
        .expect("driver");
    let mut seen = 0;
    for (_, tenant) in tenants {
        let db = &tenant_db(tenant);
        let users = client.database(db).collection::<Document>("users");
        let mut cursor = users.find(doc! {}).await.expect("find");
        while cursor.advance().await.expect("cursor") {
            let user = cursor.deserialize_current().expect("document");
            let at = format!("{plugin}: stored user in {db}: {user}");
            let keys: Vec<&str> = user.keys().map(String::as_str).collect();
            for key in &keys {
                assert!(
                    ["_id", "name", "email", "age", "created_at"].contains(key),
                    "unexpected key {key}; {at}"
                );
            }
            assert!(
                matches!(user.get("_id"), Some(Bson::ObjectId(_))),
                "_id; {at}"
            );
            assert!(
                matches!(user.get("name"), Some(Bson::String(_))),
                "name; {at}"
            );
            assert!(
                matches!(user.get("email"), Some(Bson::String(_))),
                "email; {at}"
            );
            assert!(
                matches!(user.get("created_at"), Some(Bson::DateTime(_))),
                "created_at is a BSON date; {at}"
            );
            assert!(
                matches!(user.get("age"), None | Some(Bson::Int32(_))),
                "age is absent or an int32; {at}"
            );
            seen += 1;
        }
        let indexes = users.list_indexes().await.expect("list indexes");
        use futures_util::TryStreamExt;
        let indexes: Vec<_> = indexes.try_collect().await.expect("indexes");
        let email = indexes
            .iter()
            .find(|i| i.options.as_ref().and_then(|o| o.name.as_deref()) == Some("email_unique"))
            .unwrap_or_else(|| panic!("{plugin}: no index email_unique in {db}: {indexes:?}"));
        assert_eq!(
            email.keys,
            doc! { "email": 1 },
            "{plugin}: email_unique keys"
        );
        assert_eq!(
            email.options.as_ref().and_then(|o| o.unique),
            Some(true),
            "{plugin}: email_unique is unique"
        );
    }
    assert_eq!(seen, 6 + 2, "{plugin}: users left in both tenants");
    // Every answered created_at is exactly the stored date (millisecond precision).
    for (name, id) in &caps.ids {
        let Some(time) = caps.times.get(name) else {
            continue;
        };
        let oid = ObjectId::parse_str(id).expect("captured id");
        for (_, tenant) in tenants {
            let users = client
                .database(&tenant_db(tenant))
                .collection::<Document>("users");
            if let Some(user) = users.find_one(doc! { "_id": oid }).await.expect("find") {
                let stored = user.get_datetime("created_at").expect("created_at");
                let answered = bson::DateTime::parse_rfc3339_str(time).expect("rfc3339");
                assert_eq!(
                    stored.timestamp_millis(),
                    answered.timestamp_millis(),
                    "{plugin}: created_at of {name}"
                );
            }
        }
    }
}
