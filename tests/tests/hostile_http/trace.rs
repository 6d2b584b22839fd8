//! The request trace (`[trace]`, docs/OPERATIONS.md) against a hostile HTTP client, through the
//! real gateway on a real TCP listener: a client cannot put a line of its own into the trace,
//! cannot grow the file past its size limit, and does not stop the host serving others while
//! the recording drops its requests.

use std::collections::HashSet;
use std::fs;

use polymongo::recording::{TraceNames, TraceOptions, TraceRecorder};
use polymongo::replay::read_trace;

use crate::common::raw_http::*;

/// The trace's size limit in this test: a few hundred requests' lines.
const MAX_BYTES: u64 = 4096;

/// Requests of the flood, on one keep-alive connection: well past the size limit.
const FLOOD: usize = 400;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_client_can_neither_write_lines_into_the_trace_nor_grow_it_past_its_limit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trace.lirs");
    let recorder = TraceRecorder::start(TraceOptions {
        path: path.clone(),
        max_bytes: MAX_BYTES,
        names: TraceNames::Plain,
    })
    .unwrap();
    let served = Served::start(Setup {
        trace: Some(recorder.clone()),
        ..Setup::default()
    })
    .await;
    let tenants = Tenants::create(served.addr).await;

    // Tenant names that would end a line, start a comment or name a database outside the
    // tenant's are refused before any database is used; a name in other case is the same
    // tenant, so the same line.
    for forged in [
        "*end of trace",
        "a\tb",
        "a%0Ab",
        "a.b",
        "..",
        "x,y",
        "\u{7f}",
    ] {
        let reply = call_admitted(
            "127.0.0.1",
            served.addr,
            "GET",
            "/users/users",
            Some(forged),
            None,
        )
        .await;
        assert_eq!(reply.status, 400, "{forged:?}: {:?}", reply.json());
    }
    let shouted = tenants.a.to_ascii_uppercase();
    let reply = call_admitted(
        "127.0.0.1",
        served.addr,
        "GET",
        "/users/users",
        Some(&shouted),
        None,
    )
    .await;
    assert_eq!(reply.status, 200, "{:?}", reply.json());

    // The flood: one connection, requests back to back.
    let mut conn = Conn::open(served.addr).await;
    for i in 0..FLOOD {
        conn.send(&request(
            "GET",
            "/users/users",
            Some(&tenants.a),
            None,
            i + 1 == FLOOD,
        ))
        .await;
        let reply = conn.next_reply().await.expect("a reply to every request");
        assert_eq!(reply.status, 200, "request {i}: {:?}", reply.json());
    }
    assert!(
        recorder.dropped() > 0,
        "the flood went past the size limit ({} recorded)",
        recorder.recorded()
    );
    // Recording stopped; serving did not.
    tenants.assert_isolated(served.addr).await;
    let databases = [&tenants.a, &tenants.b].map(|tenant| {
        served
            .host
            .manager
            .tenant_db_name(tenant)
            .expect("a valid tenant")
    });
    served.stop().await;
    recorder.finish();

    let text = fs::read_to_string(&path).unwrap();
    let (comments, lines): (Vec<&str>, Vec<&str>) = text.lines().partition(|l| l.starts_with('*'));
    // The file: its header, at most MAX_BYTES of requests, the notice of the limit, the end.
    assert_eq!(comments.len(), 3, "{comments:?}");
    assert!(
        comments[1].contains("reached its size limit"),
        "{comments:?}"
    );
    let requests_bytes: usize = lines.iter().map(|l| l.len() + 1).sum();
    assert!(
        requests_bytes as u64 <= MAX_BYTES,
        "{requests_bytes} bytes of requests"
    );
    assert_eq!(
        text.len(),
        requests_bytes + comments.iter().map(|l| l.len() + 1).sum::<usize>(),
        "nothing but whole lines"
    );
    let recorded = recorder.recorded();
    let dropped = recorder.dropped();
    assert_eq!(lines.len() as u64, recorded);
    assert_eq!(
        comments[2],
        format!("* end of trace: {recorded} requests recorded, {dropped} dropped")
    );
    // Every line names one of the two tenants' databases, the upper-case request included:
    // nothing of the refused names, nothing but whole names.
    let allowed: HashSet<&str> = databases.iter().map(String::as_str).collect();
    for line in &lines {
        assert!(allowed.contains(line), "a line of neither tenant: {line:?}");
    }
    // The replay reads the same requests.
    let trace = read_trace(&path).unwrap();
    assert_eq!(trace.requests.len() as u64, recorded);
    assert_eq!(trace.keys(), 2);
}
