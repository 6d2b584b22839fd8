//! Tests of loading, defaults and checks of the configuration.

use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn every_key_has_an_environment_variable_that_parses() {
    let values = [
        ("listen", "127.0.0.1:9"),
        ("mongo_uri", "mongodb://h/"),
        ("plugins_dir", "p"),
        ("tenant_header", "x-t"),
        ("admin_token", "t"),
        ("admin_listen", "127.0.0.1:10"),
        ("metrics_token", "m"),
        ("max_body_kb", "1"),
        ("scorer", "lru"),
        ("cache_dir", "c"),
        ("ready_instances", "4"),
        ("watch", "false"),
        ("log_format", "json"),
        ("scorer_budget_ms", "30"),
        ("scorer_hard_limit_ms", "3000"),
        ("scorer_replay_events", "500"),
        ("logs.queue_lines", "100"),
        ("logs.queue_kb", "64"),
        ("logs.plugin_lines_per_sec", "5"),
        ("logs.plugin_burst_lines", "10"),
        ("logs.plugin_bytes_per_sec", "1000"),
        ("logs.plugin_burst_bytes", "2000"),
        ("logs.max_tracked", "7"),
        ("pool.max_connections", "3"),
        ("pool.idle_timeout_secs", "0"),
        ("pool.metadata_db", "meta"),
        ("pool.default_db", "def"),
        ("pool.max_pool_size", "2"),
        ("pool.max_connecting", "1"),
        ("pool.server_selection_timeout_ms", "100"),
        ("pool.acquire_timeout_ms", "100"),
        ("pool.max_concurrent_opens", "4"),
        ("pool.allow_reserved_databases", "true"),
        ("http.max_connections", "5"),
        ("http.max_connections_per_ip", "2"),
        ("http.header_read_timeout_secs", "3"),
        ("http.body_read_timeout_secs", "4"),
        ("http.idle_timeout_secs", "6"),
        ("pool.tenant_db_prefix", "tenant-"),
        ("pool.client_opens_per_sec", "2.5"),
        ("pool.client_open_burst", "8"),
        ("pool.opens_per_sec", "20"),
        ("pool.open_burst", "40"),
        ("pool.cursor_grace_ms", "500"),
        ("pool.client_sharing", "database"),
        ("pool.shared_max_pool_size", "12"),
        ("pool.change_feed", "auto"),
        ("limits.memory_mb", "8"),
        ("limits.deadline_ms", "100"),
        ("limits.max_result_kb", "1"),
        ("limits.max_request_result_kb", "2"),
        ("limits.max_open_cursors", "3"),
        ("limits.max_open_streams", "9"),
        ("limits.stream_lifetime_ms", "60000"),
        ("limits.max_open_transactions", "7"),
        ("limits.max_concurrent", "4"),
        ("limits.host_memory_mb", "5"),
        ("limits.max_document_depth", "6"),
        ("limits.max_query_depth", "7"),
        ("limits.max_concurrent_per_tenant", "2"),
        ("limits.max_subscriptions_per_tenant", "3"),
        ("consumers.enabled", "false"),
        ("consumers.max_batch", "50"),
        ("consumers.backoff_min_ms", "100"),
        ("consumers.backoff_max_ms", "2000"),
        ("trace.file", "/tmp/polymongo-trace"),
        ("trace.max_mb", "3"),
        ("trace.names", "plain"),
        (
            "routes",
            r#"[{ pattern = "eu-*", uri = "mongodb://eu/", change_feed = "oplog" }]"#,
        ),
    ];
    assert_eq!(values.len(), KEYS.len());
    let vars: Vec<(String, String)> = values
        .iter()
        .map(|(k, v)| (env_name(k), v.to_string()))
        .collect();
    let c = load(None, vars, &[]).unwrap();
    assert_eq!(c.listen(), "127.0.0.1:9");
    assert_eq!(c.watch, Some(false));
    assert_eq!(c.pool.max_connections, Some(3));
    assert_eq!(c.pool.allow_reserved_databases, Some(true));
    assert_eq!(c.limits.max_concurrent, Some(4));
    assert_eq!(c.admin_listen(), Some("127.0.0.1:10"));
    let limits = c.http.connection_limits();
    assert_eq!(
        (limits.max_connections, limits.max_connections_per_ip),
        (5, 2)
    );
    assert_eq!(limits.header_read_timeout, Duration::from_secs(3));
    assert_eq!(limits.idle_timeout, Duration::from_secs(6));
    assert_eq!(c.gateway_config().body_read_timeout, Duration::from_secs(4));
    assert_eq!(c.limits.host_memory_mb, Some(5));
    assert_eq!(c.limits.max_query_depth, Some(7));
    assert_eq!(c.limits.max_concurrent_per_tenant, Some(2));
    assert!(!c.consumers_enabled());
    let trace = c.trace_options().unwrap().unwrap();
    assert_eq!(trace.path, PathBuf::from("/tmp/polymongo-trace"));
    assert_eq!(trace.max_bytes, 3 << 20);
    assert_eq!(trace.names, crate::recording::TraceNames::Plain);
    assert_eq!(
        c.consumers_config(),
        crate::consumers::ConsumersConfig {
            max_batch: 50,
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(2),
            max_per_tenant: 3,
        }
    );
    let pool = c.pool_config().unwrap();
    assert_eq!(pool.tenant_db_prefix, "tenant-");
    assert_eq!(pool.open_rate.per_client_per_sec, 2.5);
    assert_eq!(pool.open_rate.per_client_burst, 8);
    assert_eq!(pool.open_rate.global_per_sec, 20.0);
    assert_eq!(pool.open_rate.global_burst, 40);
    assert_eq!(pool.cursor_grace, Duration::from_millis(500));
    assert_eq!(c.limits.max_open_streams, Some(9));
    assert_eq!(c.limits.stream_lifetime_ms, Some(60_000));
    assert_eq!(c.limits.max_open_transactions, Some(7));
    assert_eq!(pool.client_sharing, crate::pool::ClientSharing::Database);
    assert_eq!(pool.shared_max_pool_size, 12);
    assert_eq!(c.routes[0].pattern, "eu-*");
    assert_eq!(pool.change_feed, crate::pool::ChangeFeedMode::Auto);
    assert_eq!(
        pool.routes[0].change_feed,
        Some(crate::pool::ChangeFeedMode::Oplog)
    );
    assert!(c.json_logs().unwrap());
    assert_eq!(c.log_queue_lines(), 100);
    assert_eq!(c.log_queue_kb(), 64);
    let runtime = c.runtime_config();
    assert_eq!(runtime.scorer_budget, Duration::from_millis(30));
    assert_eq!(runtime.scorer_hard_limit, Duration::from_secs(3));
    assert_eq!(runtime.scorer_replay_events, 500);
    assert_eq!(
        runtime.log_limits,
        LogLimits {
            lines_per_sec: 5,
            burst_lines: 10,
            bytes_per_sec: 1000,
            burst_bytes: 2000,
            max_tracked: 7,
        }
    );
    c.check().unwrap();
}

#[test]
fn flags_override_environment_override_file() {
    let dir = tempdir();
    let file = dir.join("polymongo.toml");
    std::fs::write(
        &file,
        "mongo_uri = \"mongodb://file/\"\n[pool]\nmax_connections = 10\nmax_pool_size = 7\n",
    )
    .unwrap();
    let c = load(
        Some(&file),
        env(&[
            ("POLYMONGO_POOL_MAX_CONNECTIONS", "20"),
            ("POLYMONGO_MONGO_URI", "mongodb://env/"),
        ]),
        &["pool.max_connections=30".to_string()],
    )
    .unwrap();
    assert_eq!(c.pool.max_connections, Some(30));
    assert_eq!(c.pool.max_pool_size, Some(7));
    assert_eq!(c.mongo_uri.as_deref(), Some("mongodb://env/"));
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn bad_values_say_where_they_came_from() {
    let err = load(
        None,
        env(&[("POLYMONGO_POOL_MAX_CONNECTIONS", "many")]),
        &[],
    )
    .unwrap_err();
    assert!(err.to_string().contains("max_connections"), "{err}");
    let err = load(None, Vec::new(), &["nope=1".to_string()]).unwrap_err();
    assert!(err.to_string().contains("unknown key"), "{err}");
    let c = load(
        None,
        env(&[("POLYMONGO_MONGO_URI", "mongodb://h/")]),
        &["listen=nowhere".to_string()],
    )
    .unwrap();
    assert!(c.check().unwrap_err().to_string().contains("listen"));
    let c = load(None, Vec::new(), &[]).unwrap();
    assert!(matches!(c.check(), Err(ConfigError::Missing(_))));
}

#[test]
fn tenant_defaults_are_safe_and_the_prefix_is_checked() {
    let base = env(&[("POLYMONGO_MONGO_URI", "mongodb://h/")]);
    let c = load(None, base.clone(), &[]).unwrap();
    let pool = c.pool_config().unwrap();
    assert_eq!(
        pool.max_connections,
        Some(crate::pool::DEFAULT_MAX_CONNECTIONS)
    );
    assert_eq!(pool.tenant_db_prefix, "t_");
    c.check().unwrap();
    let c = load(
        None,
        base.clone(),
        &["pool.tenant_db_prefix=\"\"".to_string()],
    )
    .unwrap();
    assert_eq!(c.pool_config().unwrap().tenant_db_prefix, "");
    c.check().unwrap();
    for bad in [
        "pool.tenant_db_prefix=\"T.\"",
        "pool.metadata_db=t_meta",
        "pool.client_opens_per_sec=-1",
        "limits.max_concurrent_per_tenant=0",
    ] {
        let c = load(None, base.clone(), &[bad.to_string()]).unwrap();
        assert!(c.check().is_err(), "{bad}");
    }
}

#[test]
fn the_printed_configuration_masks_secrets() {
    let c = load(
        None,
        env(&[
            ("POLYMONGO_MONGO_URI", "mongodb://u:hunter2@h/"),
            ("POLYMONGO_ADMIN_TOKEN", "tok-secret"),
        ]),
        &[r#"routes=[{ pattern = "eu-*", uri = "mongodb://e:eu-pass@eu/" }]"#.to_string()],
    )
    .unwrap();
    let shown = c.to_masked_toml();
    for secret in ["hunter2", "tok-secret", "eu-pass"] {
        assert!(!shown.contains(secret), "{shown}");
    }
    assert!(shown.contains("mongodb://u:****@h/"), "{shown}");
}

fn checked(sets: &[&str]) -> Result<(), ConfigError> {
    let mut overrides = vec!["mongo_uri=mongodb://h/".to_string()];
    overrides.extend(sets.iter().map(|s| s.to_string()));
    load(None, Vec::new(), &overrides).unwrap().check()
}

#[test]
fn the_admin_api_is_never_open_to_the_network() {
    checked(&[]).unwrap();
    let err = checked(&["listen=0.0.0.0:8080"]).unwrap_err().to_string();
    assert!(
        err.contains("admin_token") && err.contains("0.0.0.0:8080"),
        "{err}"
    );
    let err = checked(&["listen=[::]:8080"]).unwrap_err().to_string();
    assert!(err.contains("admin_token"), "{err}");
    checked(&["listen=0.0.0.0:8080", "admin_token=s3cret"]).unwrap();
    // The tenant port public, the admin API on loopback only: fine without a token.
    checked(&["listen=0.0.0.0:8080", "admin_listen=127.0.0.1:8081"]).unwrap();
    let err = checked(&["admin_listen=0.0.0.0:8081"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("admin_listen"), "{err}");
    let err = checked(&["admin_listen=127.0.0.1:8080"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("same address"), "{err}");
    let err = checked(&["admin_listen=nowhere"]).unwrap_err().to_string();
    assert!(err.contains("admin_listen"), "{err}");
}

#[test]
fn an_empty_token_is_a_configuration_error() {
    for set in [
        "admin_token=",
        "admin_token=\"\"",
        "admin_token=\"  \"",
        "metrics_token=",
    ] {
        let err = checked(&[set]).unwrap_err().to_string();
        assert!(err.contains("is empty"), "{set}: {err}");
    }
    let err = checked(&["listen=0.0.0.0:8080", "admin_token="])
        .unwrap_err()
        .to_string();
    assert!(err.contains("admin_token is empty"), "{err}");
}

#[test]
fn zero_http_limits_are_refused() {
    for key in [
        "http.max_connections",
        "http.max_connections_per_ip",
        "http.header_read_timeout_secs",
        "http.body_read_timeout_secs",
        "http.idle_timeout_secs",
    ] {
        let err = checked(&[&format!("{key}=0")]).unwrap_err().to_string();
        assert!(err.contains(key), "{err}");
    }
}

#[test]
fn change_feeds_default_to_change_streams_and_bad_modes_are_refused() {
    let base = [("POLYMONGO_MONGO_URI", "mongodb://h/")];
    let c = load(None, env(&base), &[]).unwrap();
    let pool = c.pool_config().unwrap();
    assert_eq!(pool.change_feed, crate::pool::ChangeFeedMode::Streams);
    let c = load(None, env(&base), &["pool.change_feed=tail".to_string()]).unwrap();
    let err = c.check().unwrap_err().to_string();
    assert!(
        err.contains("pool.change_feed") && err.contains("\"auto\""),
        "{err}"
    );
    let routes = r#"routes=[{ pattern = "x-*", uri = "mongodb://x/", change_feed = "poll" }]"#;
    let c = load(None, env(&base), &[routes.to_string()]).unwrap();
    let err = c.check().unwrap_err().to_string();
    assert!(err.contains("routes[0].change_feed"), "{err}");
}

fn tempdir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "polymongo-config-test-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn consumers_default_and_bad_values_are_refused() {
    let base = env(&[("POLYMONGO_MONGO_URI", "mongodb://h/")]);
    let c = load(None, base.clone(), &[]).unwrap();
    assert!(c.consumers_enabled());
    assert_eq!(
        c.consumers_config(),
        crate::consumers::ConsumersConfig::default()
    );
    for bad in [
        "consumers.max_batch=0",
        "consumers.backoff_min_ms=0",
        "consumers.backoff_max_ms=10",
    ] {
        let c = load(None, base.clone(), &[bad.to_string()]).unwrap();
        let err = c.check().expect_err(bad).to_string();
        assert!(err.contains("consumers."), "{bad}: {err}");
    }
}

#[test]
fn the_trace_is_off_by_default_hashed_when_on_and_bad_values_are_refused() {
    let base = env(&[("POLYMONGO_MONGO_URI", "mongodb://h/")]);
    let c = load(None, base.clone(), &[]).unwrap();
    assert!(c.trace_options().unwrap().is_none());
    let c = load(None, base.clone(), &["trace.file=t.lirs".to_string()]).unwrap();
    let trace = c.trace_options().unwrap().unwrap();
    assert_eq!(trace.names, crate::recording::TraceNames::Hashed);
    assert_eq!(trace.max_bytes, DEFAULT_TRACE_MAX_MB << 20);
    for bad in ["trace.max_mb=0", "trace.names=clear"] {
        let set = ["trace.file=t.lirs".to_string(), bad.to_string()];
        let c = load(None, base.clone(), &set).unwrap();
        let err = c.check().expect_err(bad).to_string();
        assert!(err.contains("trace."), "{bad}: {err}");
    }
}
