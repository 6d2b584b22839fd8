//! What a hostile plugin (or the client behind it) sends to the host: documents nested deep
//! enough to overflow the fiber stack, requests that make the host buffer hundreds of MiB,
//! database calls that would keep the server busy past the request, server-side JavaScript.
//! Each test also checks that the host keeps serving another tenant and that no data crossed
//! between the two tenants.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use bson::Document;
use mongodb::event::command::CommandEvent;
use mongodb::event::EventHandler;
use polymongo_tests::{bundled_wasm, fixture_wasm, unique_db};
use serde_json::{json, Value};

mod common;

use common::{parse, Host, Options};

/// A host serving `hostile-input` (and `users`, for the bystander tenant), with manifests.
async fn host_with(manifests: &[(&str, &str)]) -> Host {
    Host::start(
        &[
            ("hostile-input", fixture_wasm("hostile-input")),
            ("users", bundled_wasm("users")),
        ],
        manifests,
    )
    .await
}

/// A bystander tenant that stored a user before the hostile requests: it must still be
/// served, see exactly its own user, and share no collection with the hostile tenant.
struct Bystander {
    tenant: String,
    email: String,
}

impl Bystander {
    async fn arrive(host: &Host) -> Self {
        let tenant = unique_db("bystander");
        let email = format!("{tenant}@bystander.test");
        let (status, body) = host
            .call(
                &tenant,
                "POST",
                "/users/users",
                Some(json!({ "name": "Bystander", "email": email })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        Self { tenant, email }
    }

    /// The host still serves this tenant, its data is intact and nothing crossed over.
    async fn check_unharmed(&self, host: &Host, hostile: &str) {
        let (status, body) = host.call(&self.tenant, "GET", "/users/users", None).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "the bystander is still served: {body}"
        );
        let emails: Vec<&str> = body["users"]
            .as_array()
            .map(|users| users.iter().filter_map(|u| u["email"].as_str()).collect())
            .unwrap_or_default();
        assert_eq!(emails, [self.email.as_str()], "{body}");
        let (status, _) = host.call(hostile, "GET", "/hostile-input/ok", None).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "the hostile tenant's next request is served"
        );

        let mine = host.manager.tenant_db(&self.tenant).unwrap();
        let theirs = host.manager.tenant_db(hostile).unwrap();
        assert_eq!(mine.list_collection_names().await.unwrap(), ["users"]);
        assert!(
            !theirs
                .list_collection_names()
                .await
                .unwrap()
                .contains(&"users".to_string()),
            "none of the bystander's data is in the hostile tenant's database"
        );
    }
}

fn kinds(report: &Value) -> Vec<(String, String)> {
    report
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("?").to_string()))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeply_nested_filters_updates_and_stages_are_refused_without_crashing() {
    let host = host_with(&[]).await;
    let bystander = Bystander::arrive(&host).await;
    let hostile = unique_db("deep-filter");

    // Deep enough to overflow the fiber stack of a recursive decoder (the process aborted).
    for depth in [1_300, 20_000] {
        let (status, report) = host
            .call(
                &hostile,
                "GET",
                &format!("/hostile-input/deep-filter?depth={depth}"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{report}");
        for (call, kind) in kinds(&report) {
            assert_eq!(kind, "invalid-argument", "depth {depth}, {call}: {report}");
        }
    }
    // One past the limit (128 by default) is refused; at the limit the host sends it on.
    let (_, past) = host
        .call(
            &hostile,
            "GET",
            "/hostile-input/deep-filter?depth=129",
            None,
        )
        .await;
    for (call, kind) in kinds(&past) {
        assert_eq!(kind, "invalid-argument", "depth 129, {call}: {past}");
    }
    let (status, at) = host
        .call(
            &hostile,
            "GET",
            "/hostile-input/deep-filter?depth=128",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{at}");
    assert_eq!(kinds(&at).len(), 7, "{at}");
    for (call, kind) in kinds(&at) {
        assert_ne!(kind, "invalid-argument", "depth 128, {call}: {at}");
    }
    bystander.check_unharmed(&host, &hostile).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeply_nested_documents_are_refused_before_they_are_stored() {
    let host = host_with(&[]).await;
    let bystander = Bystander::arrive(&host).await;
    let hostile = unique_db("deep-insert");
    for depth in [101, 1_500, 50_000] {
        let (status, report) = host
            .call(
                &hostile,
                "GET",
                &format!("/hostile-input/deep-insert?depth={depth}"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{report}");
        assert_eq!(kinds(&report).len(), 3, "{report}");
        for (call, kind) in kinds(&report) {
            assert_eq!(kind, "invalid-argument", "depth {depth}, {call}: {report}");
        }
    }
    // MongoDB's own limit, 100 levels, is stored.
    let (_, report) = host
        .call(
            &hostile,
            "GET",
            "/hostile-input/deep-insert?depth=100",
            None,
        )
        .await;
    assert_eq!(report["insert_one"], "ok", "{report}");
    let stored = host
        .manager
        .tenant_db(&hostile)
        .unwrap()
        .collection::<Document>("deep")
        .count_documents(bson::doc! { "a": { "$exists": true } })
        .await
        .unwrap();
    assert!(stored >= 1, "the 100-level document was stored");
    bystander.check_unharmed(&host, &hostile).await;
}

/// The most frames `/full-stack` (with `op`, shallow at the bottom) can recurse before the
/// guest's own stack is exhausted: one more traps, which the host answers with a 500.
async fn frames_that_fill_the_guest_stack(host: &Host, tenant: &str, op: &str) -> u32 {
    let status = |frames: u32| {
        let path = format!("/hostile-input/full-stack?frames={frames}&op={op}&depth=1");
        async move { host.call(tenant, "GET", &path, None).await }
    };
    let (mut fits, mut traps) = (0u32, 1u32 << 22);
    assert_eq!(status(fits).await.0, StatusCode::OK);
    let (code, body) = status(traps).await;
    assert_eq!(code, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    while traps - fits > 1 {
        let mid = fits + (traps - fits) / 2;
        let (code, body) = status(mid).await;
        match code {
            StatusCode::OK => fits = mid,
            StatusCode::INTERNAL_SERVER_ERROR => traps = mid,
            other => panic!("{mid} frames: {other} {body}"),
        }
    }
    fits
}

/// Item 1's stack sizing on its own: a plugin's fiber holds the guest's frames (up to
/// `max_wasm_stack`) and then the host's. A plugin that fills its own stack and then, from
/// the deepest frame it can reach, sends the deepest documents the host accepts (filters at
/// the 200-level ceiling, a 100-level insert) gets its answers: the host's frames still fit
/// (an overflow of the fiber stack aborts the whole process).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_fills_its_own_stack_leaves_the_host_room_for_the_deepest_documents() {
    let host = host_with(&[("hostile-input", "[limits]\nmax_query_depth = 200\n")]).await;
    let bystander = Bystander::arrive(&host).await;
    let hostile = unique_db("full-stack");
    for (op, depth, calls) in [("insert", 100, 3), ("filter", 200, 7)] {
        let frames = frames_that_fill_the_guest_stack(&host, &hostile, op).await;
        assert!(frames > 1_000, "{op}: only {frames} frames fit");
        let (status, report) = host
            .call(
                &hostile,
                "GET",
                &format!("/hostile-input/full-stack?frames={frames}&op={op}&depth={depth}"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{op} at {frames} frames: {report}");
        assert_eq!(kinds(&report).len(), calls, "{report}");
        for (call, kind) in kinds(&report) {
            assert_ne!(kind, "invalid-argument", "{op} {call}: {report}");
        }
        if op == "insert" {
            assert_eq!(report["insert_one"], "ok", "{report}");
        }
    }
    bystander.check_unharmed(&host, &hostile).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deep_json_body_posted_to_a_javascript_plugin_does_not_crash_the_host() {
    let host = Host::start(
        &[
            ("insert-js", fixture_wasm("insert-js")),
            ("users", bundled_wasm("users")),
            ("hostile-input", fixture_wasm("hostile-input")),
        ],
        &[],
    )
    .await;
    let bystander = Bystander::arrive(&host).await;
    let hostile = unique_db("deep-json");
    let depth = 1_500;
    let body = format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth));
    let request = Request::builder()
        .method("POST")
        .uri("/insert-js/insert")
        .header("x-tenant-id", &hostile)
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap();
    let (status, bytes, _) = host.send(request).await;
    let reply = parse(&bytes);
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    assert_eq!(reply["error_kind"], "invalid-argument", "{reply}");
    let (_, count) = host.call(&hostile, "GET", "/insert-js/count", None).await;
    assert_eq!(count["count"], 0, "nothing was stored: {count}");
    bystander.check_unharmed(&host, &hostile).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_javascript_is_denied_unless_the_manifest_allows_it() {
    let host = Host::start(
        &[
            ("hostile-input", fixture_wasm("hostile-input")),
            ("js-allowed", fixture_wasm("hostile-input")),
            ("users", bundled_wasm("users")),
        ],
        &[("js-allowed", "allow_server_side_js = true\n")],
    )
    .await;
    let bystander = Bystander::arrive(&host).await;
    let hostile = unique_db("server-js");
    let (status, denied) = host
        .call(&hostile, "GET", "/hostile-input/server-js", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{denied}");
    assert_eq!(
        denied,
        json!({ "where": "denied", "function": "denied", "accumulator": "denied", "code_value": "denied" })
    );
    // With the grant the host sends them on; the server decides (FerretDB refuses them).
    let (status, allowed) = host
        .call(&hostile, "GET", "/js-allowed/server-js", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{allowed}");
    assert_eq!(kinds(&allowed).len(), 4, "{allowed}");
    for (call, kind) in kinds(&allowed) {
        assert_ne!(kind, "denied", "{call}: {allowed}");
    }
    bystander.check_unharmed(&host, &hostile).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_cannot_make_the_host_hold_more_than_its_memory_budget() {
    let host = host_with(&[]).await;
    let bystander = Bystander::arrive(&host).await;
    let hostile = unique_db("cursor-hog");
    // 16 cursors over 1 MiB documents: the driver buffers a first batch of up to 16 MiB for
    // each (~256 MiB for the request); the budget (32 MiB by default) stops it early.
    let (status, report) = host
        .call(&hostile, "GET", "/hostile-input/cursor-hog", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["first_error_kind"], "too-large", "{report}");
    let opened = report["opened"].as_u64().unwrap_or(u64::MAX);
    assert!(
        (1..=2).contains(&opened),
        "at most 32 MiB of 1 MiB-document batches fit: {report}"
    );
    // The budget belongs to the request: the next one starts afresh.
    let (_, again) = host
        .call(&hostile, "GET", "/hostile-input/cursor-hog", None)
        .await;
    assert_eq!(again["opened"], report["opened"], "{again}");
    bystander.check_unharmed(&host, &hostile).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_database_command_a_plugin_sends_carries_the_remaining_deadline() {
    let started: Arc<Mutex<Vec<(String, String, Document)>>> = Arc::default();
    let sink = started.clone();
    let handler = EventHandler::callback(move |event: CommandEvent| {
        if let CommandEvent::Started(e) = event {
            if let Ok(mut log) = sink.lock() {
                log.push((e.db.clone(), e.command_name.clone(), e.command.clone()));
            }
        }
    });
    let host = Host::with(Options {
        plugins: vec![
            ("exerciser".into(), fixture_wasm("exerciser")),
            ("hostile-input".into(), fixture_wasm("hostile-input")),
            ("users".into(), bundled_wasm("users")),
        ],
        manifests: vec![("exerciser".into(), "[limits]\ndeadline_ms = 4000\n".into())],
        manager: Box::new(move |b| b.command_event_handler(handler)),
        ..Options::default()
    })
    .await;
    let bystander = Bystander::arrive(&host).await;
    let tenant = unique_db("max-time");
    let (status, report) = host.call(&tenant, "GET", "/exerciser/run", None).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["failed"], json!([]), "{report}");

    let log = started.lock().unwrap().clone();
    let tenant_db = host.manager.tenant_db_name(&tenant).unwrap();
    let mine: Vec<_> = log.iter().filter(|(db, _, _)| *db == tenant_db).collect();
    let mut names: Vec<&str> = mine.iter().map(|(_, n, _)| n.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    for expected in [
        "aggregate",
        "createIndexes",
        "delete",
        "distinct",
        "find",
        "findAndModify",
        "insert",
        "update",
    ] {
        assert!(names.contains(&expected), "{expected} was sent: {names:?}");
    }
    let mut resent_without = 0;
    for (i, (_, name, command)) in mine.iter().enumerate() {
        // A getMore continues its find's or aggregate's time limit on the server (maxTimeMS
        // counts over the cursor's life); killCursors ends a cursor; ping is the manager
        // checking a pool it opens (under its own timeout), not a plugin's command.
        if name == "getMore" || name == "killCursors" || name == "ping" {
            continue;
        }
        // FerretDB 1.x refuses maxTimeMS on distinct; the host sends it again without, right
        // after the refused one (which carried it).
        let resent = name == "distinct"
            && command.get("maxTimeMS").is_none()
            && i > 0
            && mine[i - 1].1 == "distinct"
            && mine[i - 1].2.get("maxTimeMS").is_some();
        if resent {
            assert!(
                polymongo_tests::using_ferretdb(),
                "MongoDB takes maxTimeMS on distinct"
            );
            resent_without += 1;
            continue;
        }
        let max_time = match command.get("maxTimeMS") {
            Some(bson::Bson::Int32(v)) => i64::from(*v),
            Some(bson::Bson::Int64(v)) => *v,
            Some(bson::Bson::Double(v)) => *v as i64,
            other => panic!("{name} carries no maxTimeMS ({other:?}): {command}"),
        };
        assert!(
            (1..=4_000).contains(&max_time),
            "{name}: maxTimeMS {max_time} is within the request's 4000 ms deadline"
        );
    }
    if resent_without > 0 {
        polymongo_tests::skip_loudly(
            "every_database_command_a_plugin_sends_carries_the_remaining_deadline (distinct)",
            "FerretDB 1.24 refuses maxTimeMS on distinct; the host resends it without (bounded by its own deadline)",
        );
    }
    bystander.check_unharmed(&host, &tenant).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_bytes_get_clear_errors_from_every_call() {
    let host = host_with(&[]).await;
    let bystander = Bystander::arrive(&host).await;
    let hostile = unique_db("garbage");
    let (status, report) = host
        .call(&hostile, "GET", "/hostile-input/garbage", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    let calls = report["calls"].as_u64().unwrap_or(0);
    assert!(calls >= 100, "{report}");
    let kinds = report["kinds"].as_object().cloned().unwrap_or_default();
    for kind in kinds.keys() {
        assert!(
            ["invalid-argument", "too-large", "denied", "ok"].contains(&kind.as_str()),
            "a clear error or success, never {kind}: {report}"
        );
    }
    bystander.check_unharmed(&host, &hostile).await;
}
