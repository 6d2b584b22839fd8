//! Transactions for plugins (`polymongo:plugin@0.2.0`).
//!
//! No server the harness can run has transactions (FerretDB 1.24 and mongo-java-server 1.47
//! refuse them), so the host's side is tested against `polymongo_tests::wire::WireServer`: a
//! scripted server answering as the primary of a MongoDB 7.0 replica set, in MongoDB 7.0's
//! documented wire format, which records every command the host (through the real `mongodb`
//! driver) sends. The last test checks FerretDB's clear `unsupported` error.
//!
//! The `transactor` fixture drives the WIT through the Rust SDK; `transactor-js` and
//! `transactor-py` run the same scenarios through the JavaScript and Python SDKs.

mod common;

use std::time::Duration;

use bson::{doc, Bson, Document};
use common::{eventually, Host, Options};
use polymongo::pool::{Error as PoolError, PolyMongo, Protection};
use polymongo_tests::wire::{command_name, WireServer};
use polymongo_tests::{fixture_wasm, unique_db};
use serde_json::json;

/// Generous for a slow, loaded machine: nothing here measures time.
const PATIENCE: Duration = Duration::from_secs(30);

/// A host on `server` serving the fixture `plugin` with `manifest`.
async fn host_on(server: &WireServer, plugin: &str, manifest: &str) -> Host {
    Host::with(Options {
        plugins: vec![(plugin.into(), fixture_wasm(plugin))],
        manifests: vec![(plugin.into(), manifest.into())],
        uri: Some(server.uri()),
        ..Options::default()
    })
    .await
}

/// The names of `commands`, in order.
fn names(commands: &[Document]) -> Vec<&str> {
    commands.iter().map(command_name).collect()
}

/// The session (`lsid.id`) and transaction number of a command.
fn txn_of(command: &Document) -> (Bson, i64) {
    let lsid = command
        .get_document("lsid")
        .ok()
        .and_then(|l| l.get("id").cloned())
        .unwrap_or(Bson::Null);
    (lsid, command.get_i64("txnNumber").unwrap_or(-1))
}

/// Checks that `commands` are one transaction: one session and transaction number,
/// `startTransaction` on the first only, `autocommit: false` on all.
fn assert_one_transaction(commands: &[Document]) {
    let first = txn_of(&commands[0]);
    assert_ne!(first.0, Bson::Null, "{commands:?}");
    for (i, c) in commands.iter().enumerate() {
        assert_eq!(txn_of(c), first, "command {i} of {commands:?}");
        assert_eq!(c.get_bool("autocommit"), Ok(false), "command {i}: {c}");
        assert_eq!(
            c.get_bool("startTransaction").ok(),
            (i == 0).then_some(true),
            "startTransaction only on the first: {c}"
        );
    }
}

/// The commit path: every operation of the transaction and its commit carry the same session
/// and transaction number; only the first starts it.
async fn commits_in_one_session(host: &Host, server: &WireServer, plugin: &str) {
    server.clear();
    let (status, body) = host
        .call(
            &unique_db("commit"),
            "POST",
            &format!("/{plugin}/transfer"),
            Some(json!({"coll": "accounts"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["attempts"], json!(1), "{body}");
    let sent = server.transaction_commands();
    assert_eq!(
        names(&sent),
        ["insert", "update", "aggregate", "commitTransaction"],
        "{sent:?}"
    );
    assert_one_transaction(&sent);
    assert_eq!(sent[0].get_str("insert"), Ok("accounts"));
    assert_eq!(sent[3].get_str("$db"), Ok("admin"), "commit goes to admin");
    // The request's deadline bounds the server's work on every command, the commit too.
    for c in &sent {
        assert!(c.contains_key("maxTimeMS"), "no maxTimeMS: {c}");
    }
}

/// A `TransientTransactionError` on the first insert: the SDK aborts and runs the whole
/// transaction again, in a new transaction that commits.
async fn transient_errors_run_the_transaction_again(
    host: &Host,
    server: &WireServer,
    plugin: &str,
) {
    server.clear();
    server.script(
        "insert",
        doc! {
            "ok": 0.0,
            "errmsg": "WriteConflict error: this operation conflicted with another operation",
            "code": 112,
            "codeName": "WriteConflict",
            "errorLabels": ["TransientTransactionError"],
        },
    );
    let (status, body) = host
        .call(
            &unique_db("transient"),
            "POST",
            &format!("/{plugin}/transfer"),
            Some(json!({"coll": "accounts"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["attempts"], json!(2), "{body}");
    let sent = server.transaction_commands();
    let starts: Vec<&Document> = sent
        .iter()
        .filter(|c| c.get_bool("startTransaction") == Ok(true))
        .collect();
    assert_eq!(starts.len(), 2, "two transactions started: {sent:?}");
    assert_ne!(
        txn_of(starts[0]),
        txn_of(starts[1]),
        "a new transaction: {sent:?}"
    );
    let second = sent
        .iter()
        .position(|c| std::ptr::eq(c, starts[1]))
        .unwrap();
    assert_eq!(
        names(&sent[second..]),
        ["insert", "update", "aggregate", "commitTransaction"]
    );
    assert_one_transaction(&sent[second..]);
    assert!(
        names(&sent[..second]).contains(&"abortTransaction"),
        "the failed attempt was aborted: {sent:?}"
    );
}

/// An `UnknownTransactionCommitResult` on commit: the SDK sends the commit again (the body
/// runs once), in the same transaction.
async fn unknown_commit_results_commit_again(host: &Host, server: &WireServer, plugin: &str) {
    server.clear();
    server.script(
        "commitTransaction",
        doc! {
            "ok": 0.0,
            "errmsg": "scripted: the commit's outcome is unknown",
            "code": 1,
            "codeName": "InternalError",
            "errorLabels": ["UnknownTransactionCommitResult"],
        },
    );
    let (status, body) = host
        .call(
            &unique_db("unknown"),
            "POST",
            &format!("/{plugin}/transfer"),
            Some(json!({"coll": "accounts"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["attempts"], json!(1), "{body}");
    let sent = server.transaction_commands();
    assert_eq!(
        names(&sent),
        [
            "insert",
            "update",
            "aggregate",
            "commitTransaction",
            "commitTransaction"
        ],
        "{sent:?}"
    );
    assert_one_transaction(&sent);
}

/// Waits until `server` saw an `abortTransaction` for the transaction `txn`.
async fn aborted(server: &WireServer, txn: &(Bson, i64)) {
    eventually(PATIENCE, "the host aborts the open transaction", || {
        server
            .transaction_commands()
            .iter()
            .any(|c| command_name(c) == "abortTransaction" && txn_of(c) == *txn)
    })
    .await;
}

/// A request that ends with a transaction open (returned, trapped, timed out): the host
/// aborts it.
async fn open_transactions_are_aborted_when_the_request_ends(
    host: &Host,
    server: &WireServer,
    plugin: &str,
) {
    for (then, want) in [("return", 200), ("trap", 500), ("spin", 504)] {
        server.clear();
        let (status, body) = host
            .call(
                &unique_db("held"),
                "POST",
                &format!("/{plugin}/hold"),
                Some(json!({"coll": "c", "then": then})),
            )
            .await;
        assert_eq!(status.as_u16(), want, "{then}: {body}");
        let sent = server.transaction_commands();
        let insert = sent
            .iter()
            .find(|c| command_name(c) == "insert")
            .expect("the insert was sent");
        let txn = txn_of(insert);
        aborted(server, &txn).await;
        assert!(
            !server
                .transaction_commands()
                .iter()
                .any(|c| command_name(c) == "commitTransaction"),
            "{then}: nothing committed"
        );
    }
}

/// A scripted server and a host on it serving `plugin` (the deadline leaves room for a slow
/// machine; the `spin` request runs into it).
async fn scripted(plugin: &str) -> (WireServer, Host) {
    let server = WireServer::start().unwrap();
    let host = host_on(&server, plugin, "[limits]\ndeadline_ms = 3000\n").await;
    (server, host)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_and_commit_share_one_session_and_transaction_number() {
    let (server, host) = scripted("transactor").await;
    commits_in_one_session(&host, &server, "transactor").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_transaction_retries_transient_errors() {
    let (server, host) = scripted("transactor").await;
    transient_errors_run_the_transaction_again(&host, &server, "transactor").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_transaction_retries_an_unknown_commit_result() {
    let (server, host) = scripted("transactor").await;
    unknown_commit_results_commit_again(&host, &server, "transactor").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_aborts_what_a_request_leaves_open_even_on_trap_and_timeout() {
    let (server, host) = scripted("transactor").await;
    open_transactions_are_aborted_when_the_request_ends(&host, &server, "transactor").await;
}

/// Every scenario above through one host serving `plugin` (a JavaScript or Python fixture:
/// one host, so the component is compiled once).
async fn every_scenario(plugin: &str) {
    let (server, host) = scripted(plugin).await;
    commits_in_one_session(&host, &server, plugin).await;
    transient_errors_run_the_transaction_again(&host, &server, plugin).await;
    unknown_commit_results_commit_again(&host, &server, plugin).await;
    open_transactions_are_aborted_when_the_request_ends(&host, &server, plugin).await;
    let (status, body) = host
        .call(
            &unique_db("cap"),
            "POST",
            &format!("/{plugin}/many"),
            Some(json!({"max": 10})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["opened"], json!(2), "{body}");
    assert_eq!(body["error"], json!("limit-reached"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn javascript_plugins_pass_the_same_scenarios() {
    every_scenario("transactor-js").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_plugins_pass_the_same_scenarios() {
    every_scenario("transactor-py").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_operations_pass_the_sandbox_checks_before_reaching_the_server() {
    let (server, host) = scripted("transactor").await;
    let (status, body) = host
        .call(
            &unique_db("sandbox"),
            "POST",
            "/transactor/sandbox",
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"out": "denied", "system": "denied", "where": "denied"}),
        "{body}"
    );
    let sent = server.transaction_commands();
    assert!(
        sent.is_empty(),
        "nothing refused reached the server: {sent:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_transactions_are_capped_per_request() {
    let server = WireServer::start().unwrap();
    let host = host_on(&server, "transactor", "").await;
    let (status, body) = host
        .call(
            &unique_db("cap"),
            "POST",
            "/transactor/many",
            Some(json!({"max": 10})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["opened"], json!(2), "the default cap: {body}");
    assert_eq!(body["error"], json!("limit-reached"), "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("limits.max_open_transactions"),
        "{message}"
    );
    // The manifest raises it; the next request starts with none open.
    let host = host_on(
        &server,
        "transactor",
        "[limits]\nmax_open_transactions = 3\n",
    )
    .await;
    for _ in 0..2 {
        let (status, body) = host
            .call(
                &unique_db("cap"),
                "POST",
                "/transactor/many",
                Some(json!({"max": 10})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["opened"], json!(3), "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_transaction_keeps_its_pool_busy_until_it_ends() {
    let server = WireServer::start().unwrap();
    let pm = PolyMongo::builder(server.uri())
        .max_connections(1)
        .acquire_timeout(Duration::from_millis(300))
        .metadata_db(unique_db("meta"))
        .no_idle_timeout()
        .build()
        .await
        .unwrap();
    let held = unique_db("held");
    let mut txn = pm.db(&held).unwrap().start_transaction().await.unwrap();
    txn.insert_many("c", vec![doc! { "k": 1 }], Duration::from_secs(5))
        .await
        .unwrap();
    let stats = pm.stats().into_iter().find(|s| s.db_name == held).unwrap();
    assert_eq!(stats.protected, Some(Protection::Busy), "{stats:?}");
    // At the cap, the transaction's pool is not evicted for another database.
    let other = pm.db(&unique_db("other")).unwrap();
    let err = other.run_command(doc! { "ping": 1 }).await.unwrap_err();
    assert!(matches!(err, PoolError::LimitReached { .. }), "{err:?}");
    txn.commit().await.unwrap();
    drop(txn);
    other.run_command(doc! { "ping": 1 }).await.unwrap();
    let sent = server.transaction_commands();
    assert_eq!(names(&sent), ["insert", "commitTransaction"], "{sent:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_without_transactions_answer_a_clear_unsupported_error() {
    let host = Host::start(&[("transactor", fixture_wasm("transactor"))], &[]).await;
    let (status, body) = host
        .call(
            &unique_db("ferret"),
            "POST",
            "/transactor/transfer",
            Some(json!({"coll": "accounts"})),
        )
        .await;
    assert_eq!(status, 501, "{body}");
    assert_eq!(body["error"], json!("unsupported"), "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains("replica set"), "{message}");
}
