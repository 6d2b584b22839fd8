//! Routing rules with two FerretDB servers acting as two clusters.

use bson::{doc, Document};
use polymongo::pool::{Error, PolyMongo, PoolEventKind};
use polymongo_tests::{test_uri, unique_db, FerretDb};

async fn count_on(uri: &str, db: &str) -> u64 {
    let client = mongodb::Client::with_uri_str(uri).await.unwrap();
    client
        .database(db)
        .collection::<Document>("c")
        .count_documents(doc! {})
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn databases_go_to_the_cluster_their_rule_names() {
    let second = FerretDb::start_temp().expect("a second FerretDB");
    let pm = PolyMongo::builder(test_uri())
        .metadata_db(unique_db("meta"))
        .route("eu-*", second.uri())
        .build()
        .await
        .unwrap();
    let (eu, us) = (format!("eu-{}", unique_db("r")), unique_db("us"));
    for db in [&eu, &us] {
        pm.db(db)
            .unwrap()
            .collection::<Document>("c")
            .insert_one(doc! { "x": 1 })
            .await
            .unwrap();
    }
    assert_eq!(
        count_on(&second.uri(), &eu).await,
        1,
        "eu-* is on the second cluster"
    );
    assert_eq!(
        count_on(&test_uri(), &eu).await,
        0,
        "and not on the default one"
    );
    assert_eq!(
        count_on(&test_uri(), &us).await,
        1,
        "other databases use mongo_uri"
    );
    assert_eq!(count_on(&second.uri(), &us).await, 0);
    pm.destroy().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_carry_per_tenant_credentials_that_never_leak() {
    const SECRET: &str = "Tenant-S3cret-Value";
    let second = FerretDb::start_temp().expect("a second FerretDB");
    let tenant = unique_db("tpl");
    // The password comes from an environment variable named after the tenant.
    std::env::set_var(format!("POLYMONGO_TEST_PASS_{tenant}"), SECRET);
    let template = second.uri().replacen(
        "mongodb://",
        "mongodb://user_{db}:${POLYMONGO_TEST_PASS_{db}}@",
        1,
    ) + "?authMechanism=PLAIN";
    let pm = PolyMongo::builder(test_uri())
        .metadata_db(unique_db("meta"))
        .route("t*", template)
        .server_selection_timeout(std::time::Duration::from_millis(800))
        .build()
        .await
        .unwrap();
    pm.db(&tenant)
        .unwrap()
        .collection::<Document>("c")
        .insert_one(doc! { "x": 1 })
        .await
        .unwrap();
    assert_eq!(
        count_on(&second.uri(), &tenant).await,
        1,
        "routed by the template"
    );

    // A tenant whose variable is missing fails with a clear configuration error.
    let missing = unique_db("nopass");
    let err = pm
        .db(&missing)
        .unwrap()
        .collection::<Document>("c")
        .count_documents(doc! {})
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Config(ref m) if m.contains(&format!("POLYMONGO_TEST_PASS_{missing}"))),
        "{err:?}"
    );

    // With the server gone, errors and events never show the rendered password.
    let mut events = pm.subscribe();
    drop(second);
    let other = unique_db("tdown");
    std::env::set_var(format!("POLYMONGO_TEST_PASS_{other}"), SECRET);
    let err = pm
        .db(&other)
        .unwrap()
        .collection::<Document>("c")
        .count_documents(doc! {})
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unavailable(_)), "{err:?}");
    assert!(!format!("{err} {err:?}").contains(SECRET));
    while let Ok(e) = events.try_recv() {
        if let PoolEventKind::OpenFailed { error } = e.kind {
            assert!(!format!("{error} {error:?}").contains(SECRET));
        }
    }
    assert!(!format!("{:?}", pm.config()).contains(SECRET));
    pm.destroy().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_rules_are_refused_at_start() {
    let err = PolyMongo::builder(test_uri())
        .metadata_db(unique_db("meta"))
        .route("eu-*", "mongodb://eu-host/")
        .route("x.y", "mongodb://h/")
        .build()
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Config(ref m) if m.contains("route 2")),
        "{err:?}"
    );
    let err = PolyMongo::builder(test_uri())
        .route("eu-*", "postgres://user:hunter2@h/")
        .build()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err:?}");
    assert!(!err.to_string().contains("hunter2"), "{err}");
}
