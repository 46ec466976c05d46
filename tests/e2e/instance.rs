//! LibreChatInstance: CRDs install, reachability conditions, recovery, Secret changes.

use std::process::Command;

use serde_json::{json, Value};

use crate::support::*;

#[tokio::test]
async fn crds_install_and_kubectl_explain_teaches_the_api() {
    ensure_crds();
    let out = Command::new("kubectl")
        .args(["explain", "librechatuser.spec"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "kubectl explain failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("email"), "{text}");
    assert!(text.contains("deletionPolicy"), "{text}");
    let out = Command::new("kubectl")
        .args(["explain", "userban.spec.duration"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("90m"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[tokio::test]
async fn instance_with_good_secrets_becomes_ready_and_reports_stats() {
    let w = World::with_instance("inst-ok", json!({})).await;
    let obj = w
        .wait_condition(
            "librechatinstances",
            "lc",
            "MongoReachable",
            "True",
            Some("Reachable"),
        )
        .await;
    assert_eq!(condition(&obj, "RedisReachable").unwrap().status, "True");
    assert_eq!(
        obj.pointer("/status/stats/users").and_then(|v| v.as_u64()),
        Some(0)
    );
    // LibreChat's unique email index now exists, as LibreChat itself would create it.
    let names = w.users().list_index_names().await.unwrap();
    assert!(
        names.contains(&"email_1_tenantId_1".to_string()),
        "{names:?}"
    );
    assert!(
        !w.operator_log().contains(&w.mongo_uri()),
        "the MongoDB URI leaked into the log"
    );
}

#[tokio::test]
async fn existing_indexes_are_never_changed() {
    let mut w = World::new("inst-idx").await;
    // An index LibreChat's name with different options: the operator must leave it alone.
    let model = mongodb::IndexModel::builder()
        .keys(mongodb::bson::doc! { "role": 1, "tenantId": 1 })
        .options(
            mongodb::options::IndexOptions::builder()
                .name("role_1_tenantId_1".to_string())
                .sparse(true)
                .build(),
        )
        .build();
    w.users().create_index(model).await.unwrap();
    w.start_operator();
    w.ready_instance("lc", json!({})).await;
    let indexes: Vec<mongodb::IndexModel> =
        futures::TryStreamExt::try_collect(w.users().list_indexes().await.unwrap())
            .await
            .unwrap();
    let role = indexes
        .iter()
        .find(|m| m.options.as_ref().and_then(|o| o.name.as_deref()) == Some("role_1_tenantId_1"))
        .unwrap();
    assert_eq!(role.options.as_ref().unwrap().sparse, Some(true));
}

#[tokio::test]
async fn bad_secrets_give_clear_conditions_and_recover_when_fixed() {
    let mut w = World::new("inst-bad").await;
    w.start_operator();
    let spec = json!({ "mongo": { "uriSecretRef": { "name": "mongo", "key": "uri" } }, "resyncPeriod": "2s" });
    w.apply("LibreChatInstance", "lc", spec).await;

    // No Secret at all.
    let obj = w
        .wait_condition(
            "librechatinstances",
            "lc",
            "Ready",
            "False",
            Some("SecretNotFound"),
        )
        .await;
    assert!(condition(&obj, "Ready")
        .unwrap()
        .message
        .contains("create it"));
    assert_eq!(
        condition(&obj, "MongoReachable").unwrap().reason,
        "SecretNotFound"
    );

    // The Secret exists but lacks the key.
    w.secret("mongo", &[("other", "x")]).await;
    w.wait_condition(
        "librechatinstances",
        "lc",
        "MongoReachable",
        "False",
        Some("SecretKeyMissing"),
    )
    .await;

    // The key is empty.
    w.secret("mongo", &[("uri", "")]).await;
    w.wait_condition(
        "librechatinstances",
        "lc",
        "MongoReachable",
        "False",
        Some("SecretKeyMissing"),
    )
    .await;

    // A malformed URI, with a password that must not appear anywhere.
    w.secret(
        "mongo",
        &[("uri", "http://admin:hunter2-secret@nowhere/db")],
    )
    .await;
    let obj = w
        .wait_condition(
            "librechatinstances",
            "lc",
            "MongoReachable",
            "False",
            Some("InvalidURI"),
        )
        .await;
    assert!(!obj.to_string().contains("hunter2-secret"));
    w.secret(
        "mongo",
        &[(
            "uri",
            "mongodb://admin:hunter2-secret@127.0.0.1:notaport/db",
        )],
    )
    .await;
    let obj = w
        .wait_condition(
            "librechatinstances",
            "lc",
            "MongoReachable",
            "False",
            Some("InvalidURI"),
        )
        .await;
    assert!(!obj.to_string().contains("hunter2-secret"));

    // A well-formed URI where nothing listens.
    let port = free_port();
    w.secret("mongo", &[("uri", &format!("mongodb://admin:hunter2-secret@127.0.0.1:{port}/db?directConnection=true&serverSelectionTimeoutMS=1000"))]).await;
    let obj = w
        .wait_condition(
            "librechatinstances",
            "lc",
            "MongoReachable",
            "False",
            Some("Unreachable"),
        )
        .await;
    assert!(!obj.to_string().contains("hunter2-secret"));

    // A mongodb+srv URI whose records cannot be resolved: DNS trouble, not a bad URI.
    w.secret(
        "mongo",
        &[(
            "uri",
            "mongodb+srv://admin:hunter2-secret@lco-nowhere.invalid/db",
        )],
    )
    .await;
    let obj = eventually("the SRV URI's condition", || async {
        let obj = w.get("librechatinstances", "lc").await?;
        let c = condition(&obj, "MongoReachable")?;
        (c.message.contains("SRV") || c.reason == "InvalidURI").then_some(obj)
    })
    .await;
    let mongo = condition(&obj, "MongoReachable").unwrap();
    assert_eq!(mongo.reason, "Unreachable", "{}", mongo.message);
    assert!(!obj.to_string().contains("hunter2-secret"));

    // Fixed: the Secret change is picked up without a restart.
    w.secret("mongo", &[("uri", &w.mongo_uri())]).await;
    w.wait_condition("librechatinstances", "lc", "Ready", "True", None)
        .await;
    assert!(
        !w.operator_log().contains("hunter2-secret"),
        "a credential leaked into the operator's log"
    );
    let events = w.event_reasons("lc").await;
    assert!(events.iter().any(|r| r == "SecretNotFound"), "{events:?}");
    let api: kube::Api<k8s_openapi::api::events::v1::Event> =
        kube::Api::namespaced(w.client.clone(), &w.ns);
    let all = serde_json::to_string(&api.list(&Default::default()).await.unwrap().items).unwrap();
    assert!(
        !all.contains("hunter2-secret"),
        "a credential leaked into an event"
    );
}

/// `uri` with its user information replaced by a user and password no server knows.
fn with_refused_credentials(uri: &str, password: &str) -> String {
    let (scheme, rest) = uri.split_once("://").expect("a URI with a scheme");
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let host = match rest[..authority_end].rfind('@') {
        Some(at) => &rest[at + 1..],
        None => rest,
    };
    format!("{scheme}://lco-nobody:{password}@{host}")
}

/// Waits until the instance says the store behind `store_condition` refused its credentials.
async fn refused(w: &World, store_condition: &str) {
    w.wait_condition(
        "librechatinstances",
        "lc",
        store_condition,
        "False",
        Some("AuthenticationFailed"),
    )
    .await;
}

/// Reads the instance for a while: the refusal must stay a refusal (the driver reports later
/// calls as failed server selections; read as an outage, the status would flip between a
/// problem a person fixes and one that passes by itself).
async fn stays_refused(w: &World, store_condition: &str) -> Value {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(8);
    loop {
        let obj = w.get("librechatinstances", "lc").await.unwrap();
        for (type_, status) in [
            (store_condition, "False"),
            ("Ready", "False"),
            ("Stalled", "True"),
            ("Reconciling", "False"),
        ] {
            let c = condition(&obj, type_).unwrap_or_else(|| panic!("no {type_}: {obj}"));
            assert_eq!(c.status, status, "{type_}: {obj}");
            if type_ != "Reconciling" {
                assert_eq!(c.reason, "AuthenticationFailed", "{type_}: {obj}");
            }
        }
        if std::time::Instant::now() > until {
            return obj;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn credentials_a_store_refuses_stall_the_instance_until_fixed() {
    let mut w = World::new("inst-auth").await;
    w.start_operator();
    let password = "hunter2-refused";
    let refused_mongo = with_refused_credentials(&w.mongo_uri(), password);
    let refused_redis = with_refused_credentials(&env("REDIS_URL"), password);

    // MongoDB refuses: no retry helps, a person must fix the Secret, and GitOps tools are
    // told so (Stalled), not left waiting for an outage to pass.
    w.secret(
        "lc-stores",
        &[("mongo", &refused_mongo), ("redis", &env("REDIS_URL"))],
    )
    .await;
    w.apply_instance_of_stores("lc", json!({ "resyncPeriod": "2s" }))
        .await;
    refused(&w, "MongoReachable").await;
    let obj = stays_refused(&w, "MongoReachable").await;
    let message = condition(&obj, "Ready").unwrap().message;
    assert!(message.contains("Fix the URI in the Secret"), "{message}");
    assert!(!obj.to_string().contains(password));

    // Redis refuses: the same.
    w.secret(
        "lc-stores",
        &[("mongo", &w.mongo_uri()), ("redis", &refused_redis)],
    )
    .await;
    refused(&w, "RedisReachable").await;
    let obj = stays_refused(&w, "RedisReachable").await;
    assert_eq!(condition(&obj, "MongoReachable").unwrap().status, "True");
    assert!(!obj.to_string().contains(password));

    // Fixed: Ready without a restart; the password appeared nowhere.
    w.secret(
        "lc-stores",
        &[("mongo", &w.mongo_uri()), ("redis", &env("REDIS_URL"))],
    )
    .await;
    w.wait_condition("librechatinstances", "lc", "Ready", "True", None)
        .await;
    assert!(
        !w.operator_log().contains(password),
        "a password leaked into the log"
    );
    let api: kube::Api<k8s_openapi::api::events::v1::Event> =
        kube::Api::namespaced(w.client.clone(), &w.ns);
    let all = serde_json::to_string(&api.list(&Default::default()).await.unwrap().items).unwrap();
    assert!(!all.contains(password), "a password leaked into an event");
}

/// A Redis that requires a password, given a URI without one: the connection succeeds and
/// every command is refused (NOAUTH). That is credentials to fix (`AuthenticationFailed`, as
/// for a wrong password), not an outage to look for; with the password the instance is Ready.
#[tokio::test]
async fn a_redis_asking_for_a_password_the_uri_lacks_is_a_credentials_problem() {
    let port = free_port();
    let password = "required-Xq7";
    let _redis = PrivateRedis::start_requiring(port, password);
    let mut w = World::new("inst-noauth").await;
    w.start_operator();
    let uri = format!("redis://127.0.0.1:{port}/");
    w.apply_instance("lc", &uri, json!({ "resyncPeriod": "2s" }))
        .await;
    refused(&w, "RedisReachable").await;
    let fixed = format!("redis://:{password}@127.0.0.1:{port}/");
    w.secret("lc-stores", &[("mongo", &w.mongo_uri()), ("redis", &fixed)])
        .await;
    w.wait_condition("librechatinstances", "lc", "Ready", "True", None)
        .await;
}

#[tokio::test]
async fn unreachable_redis_is_reported_and_a_missing_redis_is_not_an_error() {
    let mut w = World::new("inst-redis").await;
    w.start_operator();
    let port = free_port();
    w.apply_instance(
        "lc",
        &format!("redis://127.0.0.1:{port}/"),
        json!({ "resyncPeriod": "2s" }),
    )
    .await;
    let obj = w
        .wait_condition(
            "librechatinstances",
            "lc",
            "RedisReachable",
            "False",
            Some("Unreachable"),
        )
        .await;
    assert_eq!(condition(&obj, "MongoReachable").unwrap().status, "True");
    assert_eq!(condition(&obj, "Ready").unwrap().status, "False");

    // Without Redis declared, LibreChat runs and so does the instance.
    w.apply(
        "LibreChatInstance",
        "plain",
        json!({ "mongo": { "uriSecretRef": { "name": "lc-stores", "key": "mongo" } } }),
    )
    .await;
    let obj = w
        .wait_condition("librechatinstances", "plain", "Ready", "True", None)
        .await;
    assert_eq!(
        condition(&obj, "RedisReachable").unwrap().reason,
        "NotConfigured"
    );

    // LibreChat without Redis caches each role in each process with no expiry: a role says
    // that its change waits for LibreChat's restart.
    let role = json!({ "instanceRef": { "name": "plain" }, "name": "NOREDIS",
        "permissions": { "AGENTS": { "USE": true } } });
    w.apply("LibreChatRole", "r", role).await;
    let obj = w
        .wait_condition("librechatroles", "r", "Ready", "True", None)
        .await;
    let message = condition(&obj, "Ready").unwrap().message;
    assert!(message.contains("restart LibreChat"), "{message}");
}

/// A Redis that speaks only TLS (a managed cache with in-transit encryption) is reached over
/// `rediss://`: the instance is Ready and what needs Redis (a ban's cache drop) is done there.
/// Before, the Redis client had no TLS and the URI was reported as not valid.
#[tokio::test]
async fn a_redis_that_speaks_only_tls_is_reached_over_rediss() {
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("lco-redis-tls-{port}"));
    std::fs::create_dir_all(&dir).unwrap();
    let _redis = PrivateRedis::start_tls(port, &dir);
    let mut w = World::new("inst-tls").await;
    w.start_operator();
    // The test's certificate is self-signed: `#insecure` is the driver's way to accept it.
    let uri = format!("rediss://127.0.0.1:{port}/#insecure");
    w.apply_instance("lc", &uri, json!({})).await;
    let obj = w
        .wait_condition("librechatinstances", "lc", "Ready", "True", None)
        .await;
    assert_eq!(condition(&obj, "RedisReachable").unwrap().status, "True");
    let banned = mongodb::bson::oid::ObjectId::new();
    w.users()
        .insert_one(crate::user::foreign_user(banned, "tls@example.com"))
        .await
        .unwrap();
    let ban = json!({ "instanceRef": { "name": "lc" }, "email": "tls@example.com" });
    w.apply("UserBan", "tls", ban).await;
    w.wait_condition("userbans", "tls", "Ready", "True", Some("Banned"))
        .await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_stopped_mongodb_is_reported_and_recovery_follows() {
    let mut w = World::new("inst-outage").await;
    let port = free_port();
    let dir = tempdir(&w.ns);
    start_private_mongo(port, &dir);
    w.start_operator();
    w.secret(
        "mongo",
        &[(
            "uri",
            &format!("mongodb://127.0.0.1:{port}/LibreChat?directConnection=true"),
        )],
    )
    .await;
    w.apply("LibreChatInstance", "lc", json!({ "mongo": { "uriSecretRef": { "name": "mongo", "key": "uri" } }, "resyncPeriod": "2s" })).await;
    w.wait_condition("librechatinstances", "lc", "Ready", "True", None)
        .await;
    let users = ["ann", "bob"];
    for name in users {
        w.apply(
            "LibreChatUser",
            name,
            json!({ "instanceRef": { "name": "lc" }, "email": format!("{name}@example.com") }),
        )
        .await;
        w.wait_condition("librechatusers", name, "Ready", "True", None)
            .await;
    }

    stop_private_mongo(&dir);
    let obj = w
        .wait_condition(
            "librechatinstances",
            "lc",
            "MongoReachable",
            "False",
            Some("Unreachable"),
        )
        .await;
    assert_eq!(condition(&obj, "Ready").unwrap().status, "False");
    // What failed, said briefly: not the driver's dump of its topology, whose order and
    // timings change with every attempt (each would rewrite every dependent's status).
    let said = condition(&obj, "MongoReachable").unwrap().message;
    assert!(
        said.len() < 400 && !said.contains("Topology") && !said.contains("labels"),
        "{said}"
    );
    // Every dependent's status names the outage; the instance alone tells it as an event.
    for name in users {
        let user = w
            .wait_condition(
                "librechatusers",
                name,
                "Ready",
                "False",
                Some("InstanceNotReady"),
            )
            .await;
        let said = condition(&user, "Ready").unwrap().message;
        assert!(said.contains("lc") && said.contains("MongoDB"), "{said}");
    }
    w.wait_event("lc", "Unreachable").await;
    // A reconcile that met the outage before the instance noticed it may say so (StoreError);
    // waiting for the instance, and coming back with it, are left to the instance's events.
    let events_in_outage: Vec<Vec<String>> =
        futures::future::join_all(users.map(|u| w.event_reasons(u))).await;
    assert!(
        events_in_outage
            .iter()
            .flatten()
            .all(|r| r == "Created" || r == "StoreError"),
        "{events_in_outage:?}"
    );

    start_private_mongo(port, &dir);
    w.wait_condition("librechatinstances", "lc", "Ready", "True", None)
        .await;
    for name in users {
        w.wait_condition("librechatusers", name, "Ready", "True", None)
            .await;
    }
    // Thousands of dependents must not each add two events to an outage of one instance.
    let events_after: Vec<Vec<String>> =
        futures::future::join_all(users.map(|u| w.event_reasons(u))).await;
    assert_eq!(events_after, events_in_outage);
    stop_private_mongo(&dir);
}

#[tokio::test]
async fn invalid_instance_spec_is_reported() {
    let mut w = World::new("inst-spec").await;
    w.start_operator();
    w.secret("mongo", &[("uri", &w.mongo_uri())]).await;
    w.apply(
        "LibreChatInstance",
        "lc",
        json!({ "mongo": { "uriSecretRef": { "name": "mongo", "key": "uri" } }, "domainClient": "chat.example.com" }),
    )
    .await;
    let obj = w
        .wait_condition(
            "librechatinstances",
            "lc",
            "Ready",
            "False",
            Some("InvalidSpec"),
        )
        .await;
    assert!(condition(&obj, "Ready")
        .unwrap()
        .message
        .contains("domainClient"));
}

fn tempdir(label: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("lco-{label}"));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The race this closes: an instance's deletion removes its finalizer once its last look finds
/// no dependent, and an object created meanwhile, reading the instance still Ready, wrote an
/// account nothing would clean up. An object created once the deletion began is not applied
/// (it says why, whatever else the instance's status says); older ones are waited for; both
/// go, and then the instance.
#[tokio::test]
async fn an_instance_being_deleted_takes_no_new_dependents() {
    let w = World::with_instance("inst-closing", json!({})).await;
    let user = |email: &str| json!({ "instanceRef": { "name": "lc" }, "email": email });
    w.apply("LibreChatUser", "old", user("old@example.com"))
        .await;
    w.wait_condition("librechatusers", "old", "Ready", "True", None)
        .await;
    crate::trust::delete_instance_held_by_dependents(&w).await;

    w.apply("LibreChatUser", "late", user("late@example.com"))
        .await;
    let late = w
        .wait_condition(
            "librechatusers",
            "late",
            "Ready",
            "False",
            Some("InstanceNotReady"),
        )
        .await;
    let told = condition(&late, "Ready").unwrap().message;
    assert!(told.contains("created since is not applied"), "{told}");
    assert!(w.find_user("late@example.com").await.is_none());

    for name in ["late", "old"] {
        w.delete("LibreChatUser", name).await;
        w.wait_gone("librechatusers", name).await;
    }
    w.wait_gone("librechatinstances", "lc").await;
    assert!(w.find_user("late@example.com").await.is_none());
    assert!(w.find_user("old@example.com").await.is_some(), "Retain");
}

/// The instance's Secret pointed at another database by mistake (a typo in the database name).
/// Before, every write and cleanup moved there silently: a ban deleted meanwhile stayed in
/// force in the database it was written to, and the accounts were made again in the other
/// one. Now the instance stops (`DatabaseChanged`, saying what to do): nothing is written in
/// the other database, a new account and the ban's lifting wait, and with the right URI back
/// all goes on where it was. A move that is meant goes on once a person confirms it by
/// annotation, and that confirmation lets no other move through.
#[tokio::test]
async fn a_uri_switched_to_another_database_stops_the_instance_until_confirmed() {
    let w = World::with_instance("inst-dbswitch", json!({})).await;
    let user = |email: &str| json!({ "instanceRef": { "name": "lc" }, "email": email });
    w.apply("LibreChatUser", "old", user("old@example.com"))
        .await;
    w.wait_condition("librechatusers", "old", "Ready", "True", None)
        .await;
    let ban = json!({ "instanceRef": { "name": "lc" }, "ip": "203.0.113.9", "until": "2099-01-01T00:00:00Z" });
    w.apply("UserBan", "by-ip", ban).await;
    w.wait_condition("userbans", "by-ip", "Ready", "True", Some("Banned"))
        .await;
    let recorded = w.database_id("lc").await;
    let marks = |db: mongodb::Database| async move {
        db.collection::<mongodb::bson::Document>("librechat_operator_database")
            .find_one(mongodb::bson::doc! {})
            .await
            .unwrap()
            .and_then(|d| d.get_str("mark").ok().map(str::to_string))
    };
    assert_eq!(
        marks(w.db.clone()).await.as_deref(),
        Some(recorded.as_str())
    );

    let typo = format!("{}_typo", w.db_name);
    let other = w.db.client().database(&typo);
    point_at(&w, &typo).await;
    let stopped = w.refused_database("lc").await;
    let told = condition(&stopped, "Ready").unwrap().message;
    let unmarked = printed_destination(&told);
    assert!(unmarked.starts_with(&format!("unmarked:{typo}@")), "{told}");
    assert!(
        told.contains(&recorded)
            && told.contains(&format!(
                "--overwrite librechatinstance lc -n {} librechat.ai/replace-database={unmarked}",
                w.ns
            )),
        "{told}"
    );
    assert_eq!(condition(&stopped, "Stalled").unwrap().status, "True");
    w.apply("LibreChatUser", "new", user("new@example.com"))
        .await;
    w.delete("UserBan", "by-ip").await;
    w.wait_condition(
        "librechatusers",
        "new",
        "Ready",
        "False",
        Some("InstanceNotReady"),
    )
    .await;
    // Resyncs pass (every 3 s): still nothing there, and the ban still in force here.
    tokio::time::sleep(std::time::Duration::from_secs(8)).await;
    let written = other.list_collection_names().await.unwrap();
    assert!(
        written.is_empty(),
        "written in the other database: {written:?}"
    );
    assert!(w.get("userbans", "by-ip").await.is_some());
    assert!(
        ban_in_force(&w).await,
        "the ban was lifted elsewhere, or not at all"
    );

    // The right URI back: everything goes on where it was.
    point_at(&w, &w.db_name).await;
    w.wait_gone("userbans", "by-ip").await;
    assert!(!ban_in_force(&w).await, "the ban was not lifted");
    w.wait_condition("librechatusers", "new", "Ready", "True", None)
        .await;
    assert!(w.find_user("new@example.com").await.is_some());

    // A confirmation names the database moved to: one written ahead of a URI change (naming
    // the database left, or another one meant) confirms no move to another (a typo again).
    w.confirm_database_move("lc", &recorded).await;
    point_at(&w, &typo).await;
    w.refused_database("lc").await;
    point_at(&w, &w.db_name).await;
    w.wait_condition("librechatinstances", "lc", "Ready", "True", None)
        .await;
    let meant = format!(
        "unmarked:{}_meant@{}",
        w.db_name,
        unmarked.rsplit('@').next().unwrap()
    );
    w.confirm_database_move("lc", &meant).await;
    point_at(&w, &typo).await;
    w.refused_database("lc").await;
    // A move that is meant, confirmed as printed: the instance goes on there, marked.
    w.confirm_database_move("lc", &unmarked).await;
    let moved = eventually("the instance to record the other database", || async {
        let obj = w.get("librechatinstances", "lc").await?;
        let id = obj.pointer("/status/databaseId")?.as_str()?;
        (id != recorded).then(|| id.to_string())
    })
    .await;
    w.wait_condition("librechatinstances", "lc", "Ready", "True", None)
        .await;
    assert_eq!(marks(other.clone()).await.as_deref(), Some(moved.as_str()));
    eventually("the declared accounts in the other database", || async {
        let users = other.collection::<mongodb::bson::Document>("users");
        let n = users.count_documents(mongodb::bson::doc! {}).await.ok()?;
        (n == 2).then_some(())
    })
    .await;

    // That confirmation named the database moved to: it lets no move back through.
    point_at(&w, &w.db_name).await;
    w.refused_database("lc").await;
    w.confirm_database_move("lc", &recorded).await;
    w.wait_condition("librechatinstances", "lc", "Ready", "True", None)
        .await;
    assert_eq!(w.database_id("lc").await, recorded);
    let _ = other.drop().await;
}

/// An instance forced out while objects it wrote for remain, then re-created (as their
/// statuses advise) with its Secret pointing at another database: the new object has no record
/// of its database. Before, it took whichever database its URI reached, and the cleanups
/// waiting for it ran there: a ban deleted meanwhile found nothing to lift, let its object go,
/// and stayed in force where it was written. Now a re-created instance settles only on a
/// database that holds the records of the objects applied to it.
#[tokio::test]
async fn a_re_created_instance_settles_only_on_the_database_its_objects_wrote_to() {
    let mut w = World::with_instance("inst-recreated", json!({})).await;
    let ban = json!({ "instanceRef": { "name": "lc" }, "ip": "203.0.113.9", "until": "2099-01-01T00:00:00Z" });
    w.apply("UserBan", "by-ip", ban).await;
    w.wait_condition("userbans", "by-ip", "Ready", "True", Some("Banned"))
        .await;
    let recorded = w.database_id("lc").await;
    w.force_out_instance("lc", ("userbans", "by-ip")).await;
    w.delete("UserBan", "by-ip").await;
    w.wait_condition("userbans", "by-ip", "Ready", "False", Some("DeleteBlocked"))
        .await;

    // Re-created later (an operator that still held the old connection would lift the ban
    // through it, in the right database: a restart has none).
    w.stop_operator();
    let typo = format!("{}_typo", w.db_name);
    let other = w.db.client().database(&typo);
    point_at(&w, &typo).await;
    w.apply_instance_of_stores("lc", json!({})).await;
    w.start_operator();
    let stopped = w.refused_database("lc").await;
    let told = condition(&stopped, "Ready").unwrap().message;
    assert!(
        told.contains("holds none of the operator's records"),
        "{told}"
    );
    // The ban's lifting is told why it waits (at once, not after waiting out the check).
    eventually("the ban to name the database problem", || async {
        let obj = w.get("userbans", "by-ip").await?;
        let ready = condition(&obj, "Ready")?;
        ready
            .message
            .contains("holds none of the operator's records")
            .then_some(())
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_secs(8)).await;
    assert!(
        w.get("userbans", "by-ip").await.is_some(),
        "the ban's object went without its ban being lifted"
    );
    assert!(ban_in_force(&w).await);
    let written = other.list_collection_names().await.unwrap();
    assert!(
        written.is_empty(),
        "written in the other database: {written:?}"
    );

    // The right URI: the instance settles on its database, and the ban is lifted there.
    point_at(&w, &w.db_name).await;
    w.wait_gone("userbans", "by-ip").await;
    assert!(!ban_in_force(&w).await, "the ban was not lifted");
    w.wait_condition("librechatinstances", "lc", "Ready", "True", None)
        .await;
    assert_eq!(w.database_id("lc").await, recorded);
    let _ = other.drop().await;
}

/// An upgrade from a build that wrote no identity mark: the instance's status has no
/// `databaseId` and its database no mark. The objects applied to it hold no records now (a
/// ban that ended keeps its status but not its share): the instance is taken as new, settles
/// on its own database without stopping, and marks it; the ban's status does not move.
#[tokio::test]
async fn an_upgrade_marks_the_database_the_instance_already_uses() {
    let mut w = World::with_instance("inst-upgrade", json!({})).await;
    let ban = json!({ "instanceRef": { "name": "lc" }, "ip": "203.0.113.11", "duration": "3s" });
    w.apply("UserBan", "brief", ban).await;
    let ended = w
        .wait_condition("userbans", "brief", "Ready", "True", Some("Expired"))
        .await;
    let since = condition(&ended, "Ready").unwrap().last_transition_time;
    let before = w.database_id("lc").await;

    // As an earlier build left them.
    w.stop_operator();
    w.db.collection::<mongodb::bson::Document>("librechat_operator_database")
        .drop()
        .await
        .unwrap();
    let unrecorded = json!({ "status": { "databaseId": null } });
    dynamic(&w.client, &w.ns, "LibreChatInstance")
        .patch_status(
            "lc",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&unrecorded),
        )
        .await
        .unwrap();
    assert!(w
        .get("librechatinstances", "lc")
        .await
        .unwrap()
        .pointer("/status/databaseId")
        .is_none());
    w.start_operator();

    let marked = eventually("the instance to record its database again", || async {
        let obj = w.get("librechatinstances", "lc").await?;
        let id = obj.pointer("/status/databaseId")?.as_str()?.to_string();
        Some(id)
    })
    .await;
    assert_ne!(marked, before, "a new mark");
    let obj = w
        .wait_condition("librechatinstances", "lc", "Ready", "True", None)
        .await;
    assert!(
        !w.event_reasons("lc")
            .await
            .contains(&"DatabaseChanged".to_string()),
        "{obj}"
    );
    let mark =
        w.db.collection::<mongodb::bson::Document>("librechat_operator_database")
            .find_one(mongodb::bson::doc! {})
            .await
            .unwrap()
            .and_then(|d| d.get_str("mark").ok().map(str::to_string));
    assert_eq!(mark.as_deref(), Some(marked.as_str()));
    tokio::time::sleep(std::time::Duration::from_secs(6)).await;
    let ban = w.get("userbans", "brief").await.unwrap();
    assert_eq!(
        condition(&ban, "Ready").unwrap().last_transition_time,
        since,
        "the ban's status moved: {ban}"
    );
}

/// Whether the IP ban of the database tests is in force in the world's database.
async fn ban_in_force(w: &World) -> bool {
    w.db.collection::<mongodb::bson::Document>("logs")
        .find_one(mongodb::bson::doc! { "key": "BANS:203.0.113.9" })
        .await
        .unwrap()
        .is_some()
}

/// Points this world's instance Secret at database `db`.
async fn point_at(w: &World, db: &str) {
    let uri = mongo_uri_for(db);
    w.secret(
        "lc-stores",
        &[("mongo", &uri), ("redis", &env("REDIS_URL"))],
    )
    .await;
}

/// Objects whose `instanceRef` names an instance that does not exist (a misspelt name) never
/// wrote anything, so deleting them is not held up waiting for that instance: a user with the
/// Delete policy, a ban, an invitation, a group and a role all go.
#[tokio::test]
async fn objects_applied_to_a_missing_instance_can_be_deleted() {
    let w = World::with_instance("inst-typo", json!({})).await;
    let missing = json!({ "name": "lc-typo" });
    let objects = [
        (
            "LibreChatUser",
            "librechatusers",
            "u",
            json!({ "instanceRef": missing, "email": "typo@example.com", "deletionPolicy": "Delete" }),
        ),
        (
            "UserBan",
            "userbans",
            "b",
            json!({ "instanceRef": missing, "email": "typo@example.com" }),
        ),
        (
            "UserInvite",
            "userinvites",
            "i",
            json!({ "instanceRef": missing, "email": "typo@example.com" }),
        ),
        (
            "LibreChatGroup",
            "librechatgroups",
            "g",
            json!({ "instanceRef": missing, "name": "Typo Crew" }),
        ),
        (
            "LibreChatRole",
            "librechatroles",
            "r",
            json!({ "instanceRef": missing, "name": "TYPOROLE", "permissions": { "AGENTS": { "USE": true } } }),
        ),
    ];
    for (kind, plural, name, spec) in &objects {
        w.apply(kind, name, spec.clone()).await;
        w.wait_condition(plural, name, "Ready", "False", Some("InstanceNotFound"))
            .await;
    }
    for (kind, plural, name, _) in &objects {
        w.delete(kind, name).await;
        w.wait_gone(plural, name).await;
    }
}
