//! LibreChat's own writes seen through MongoDB change streams: with a resync period of an hour,
//! an edit by hand is put back, and a deleted account re-created, within moments.

use std::time::{Duration, Instant};

use mongodb::bson::doc;
use serde_json::json;

use crate::blackhole::Blackhole;
use crate::support::*;

#[tokio::test]
async fn drift_is_corrected_within_moments_through_the_change_stream() {
    let w = World::with_instance("feed", json!({ "resyncPeriod": "1h" })).await;
    let instance = eventually("the change feed to run", || async {
        let obj = w.get("librechatinstances", "lc").await?;
        (obj.pointer("/status/changeFeed")? == "ChangeStream").then_some(obj)
    })
    .await;
    assert_eq!(instance["status"]["changeFeed"], "ChangeStream");
    let spec = json!({ "instanceRef": { "name": "lc" }, "email": "fed@example.com", "name": "Declared Name" });
    w.apply("LibreChatUser", "fed", spec).await;
    w.wait_condition("librechatusers", "fed", "Ready", "True", None)
        .await;

    // Edited by hand in MongoDB: put back long before the hour-long resync.
    let edited = Instant::now();
    w.users()
        .update_one(
            doc! { "email": "fed@example.com" },
            doc! { "$set": { "name": "Edited By Hand" } },
        )
        .await
        .unwrap();
    let put_back = within(Duration::from_secs(30), || async {
        let user = w.find_user("fed@example.com").await?;
        (user.get_str("name").ok()? == "Declared Name").then_some(())
    })
    .await;
    assert!(put_back.is_some(), "the edit was not seen without a resync");
    eprintln!("feed: edit put back after {:?}", edited.elapsed());

    // Deleted in LibreChat: the declaration brings it back.
    w.users()
        .delete_one(doc! { "email": "fed@example.com" })
        .await
        .unwrap();
    let back = within(Duration::from_secs(30), || async {
        w.find_user("fed@example.com").await.map(|_| ())
    })
    .await;
    assert!(back.is_some(), "the deletion was not seen without a resync");
}

#[tokio::test]
async fn a_registration_through_an_invitation_is_seen_within_moments() {
    let w = World::with_instance("feed-inv", json!({ "resyncPeriod": "1h" })).await;
    eventually("the change feed to run", || async {
        let obj = w.get("librechatinstances", "lc").await?;
        (obj.pointer("/status/changeFeed")? == "ChangeStream").then_some(())
    })
    .await;
    w.apply(
        "UserInvite",
        "guest",
        json!({ "instanceRef": { "name": "lc" }, "email": "guest@example.com" }),
    )
    .await;
    w.wait_condition("userinvites", "guest", "Ready", "True", None)
        .await;
    // As LibreChat's registration writes it (the token consumed is not needed to be seen).
    let id = mongodb::bson::oid::ObjectId::new();
    w.users()
        .insert_one(crate::user::foreign_user(id, "guest@example.com"))
        .await
        .unwrap();
    let accepted = within(Duration::from_secs(30), || async {
        let obj = w.get("userinvites", "guest").await?;
        (obj.pointer("/status/phase")? == "Accepted").then_some(())
    })
    .await;
    assert!(
        accepted.is_some(),
        "the registration was not seen without a resync"
    );
}

/// `host:port` of MONGODB_URI's first server, when it names one plainly (no SRV record, no
/// credentials to carry over).
fn plain_mongo_host() -> Option<String> {
    let uri = env("MONGODB_URI");
    let hosts = uri.strip_prefix("mongodb://")?.split(['/', '?']).next()?;
    (!hosts.contains('@')).then(|| hosts.split(',').next().unwrap_or(hosts).to_string())
}

/// The fault: every connection to MongoDB turns half-open (no error, no answer, ever), as
/// after a NAT or a firewall drops their state; new connections work. The operator's calls
/// time out and it connects again; the change stream, waiting on a dead connection, must
/// follow, or LibreChat's writes go unseen until the next resync (an hour here). The driver's
/// server monitor does it: its check times out, the pool is cleared with its in-use
/// connections interrupted, and the change stream resumes on a new one.
#[tokio::test]
async fn a_change_stream_left_on_a_half_open_connection_is_reopened() {
    let Some(upstream) = plain_mongo_host() else {
        eprintln!("skipped: MONGODB_URI names no plain host to put a proxy in front of");
        return;
    };
    let proxy = Blackhole::start(upstream).await;
    let mut w = World::new("feed-cut").await;
    w.start_operator();
    let uri = format!(
        "mongodb://127.0.0.1:{}/{}?directConnection=true",
        proxy.port, w.db_name
    );
    w.secret(
        "lc-stores",
        &[("mongo", &uri), ("redis", &env("REDIS_URL"))],
    )
    .await;
    w.apply_instance_of_stores("lc", json!({ "resyncPeriod": "1h" }))
        .await;
    eventually("the change feed to run", || async {
        let obj = w.get("librechatinstances", "lc").await?;
        (obj.pointer("/status/changeFeed")? == "ChangeStream").then_some(())
    })
    .await;
    let spec = json!({ "instanceRef": { "name": "lc" }, "email": "cut@example.com", "name": "Declared Name" });
    w.apply("LibreChatUser", "cut", spec).await;
    w.wait_condition("librechatusers", "cut", "Ready", "True", None)
        .await;

    proxy.cut();
    // Whatever the cut woke (an outage seen by the health check) is over before the edit.
    tokio::time::sleep(Duration::from_secs(25)).await;
    w.wait_condition("librechatinstances", "lc", "Ready", "True", None)
        .await;
    w.wait_condition("librechatusers", "cut", "Ready", "True", None)
        .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    w.users()
        .update_one(
            doc! { "email": "cut@example.com" },
            doc! { "$set": { "name": "Edited By Hand" } },
        )
        .await
        .unwrap();
    let put_back = within(Duration::from_secs(45), || async {
        let user = w.find_user("cut@example.com").await?;
        (user.get_str("name").ok()? == "Declared Name").then_some(())
    })
    .await;
    assert!(
        put_back.is_some(),
        "the change stream was not reopened after its connection went half-open"
    );
}

/// The instance's Secret is rotated to another database (a move to a new server, or a
/// database renamed): the feed follows the new one. Before, it went on following the old
/// database, while the status said `ChangeStream`, and LibreChat's writes to the new one went
/// unseen until the next resync (an hour here).
#[tokio::test]
async fn the_change_feed_follows_the_instance_to_its_new_database() {
    let w = World::with_instance("feed-move", json!({ "resyncPeriod": "1h" })).await;
    eventually("the change feed to run", || async {
        let obj = w.get("librechatinstances", "lc").await?;
        (obj.pointer("/status/changeFeed")? == "ChangeStream").then_some(())
    })
    .await;

    let moved_to = format!("{}_moved", w.db_name);
    w.secret(
        "lc-stores",
        &[
            ("mongo", &mongo_uri_for(&moved_to)),
            ("redis", &env("REDIS_URL")),
        ],
    )
    .await;
    let new_db = w.db.client().database(&moved_to);
    // The instance reconciled on its new connection: it created LibreChat's indexes there
    // (and opened the new feed in the same pass).
    eventually("LibreChat's indexes in the new database", || async {
        let names = new_db
            .collection::<mongodb::bson::Document>("users")
            .list_index_names()
            .await
            .ok()?;
        names.iter().any(|n| n.starts_with("email")).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    let spec = json!({ "instanceRef": { "name": "lc" }, "email": "moved@example.com", "name": "Declared Name" });
    w.apply("LibreChatUser", "moved", spec).await;
    let users = new_db.collection::<mongodb::bson::Document>("users");
    eventually("the account in the new database", || async {
        users
            .find_one(doc! { "email": "moved@example.com" })
            .await
            .ok()?
            .map(|_| ())
    })
    .await;
    w.wait_condition("librechatusers", "moved", "Ready", "True", None)
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    users
        .update_one(
            doc! { "email": "moved@example.com" },
            doc! { "$set": { "name": "Edited By Hand" } },
        )
        .await
        .unwrap();
    let put_back = within(Duration::from_secs(30), || async {
        let user = users
            .find_one(doc! { "email": "moved@example.com" })
            .await
            .ok()??;
        (user.get_str("name").ok()? == "Declared Name").then_some(())
    })
    .await;
    let _ = new_db.drop().await;
    assert!(
        put_back.is_some(),
        "an edit in the instance's new database was not seen without a resync"
    );
}

/// What a broken feed gives back: opened again from where it stopped, it hands over what was
/// written while it was closed (LibreChat's registrations during an outage or a reconnect),
/// rather than only what comes after.
#[tokio::test]
async fn a_feed_opened_where_the_last_one_stopped_misses_nothing_in_between() {
    use librechat_operator::librechat::changes::FeedPosition;
    use librechat_operator::librechat::Store;
    let w = World::new("feed-resume").await;
    let store = Store::new(w.db.clone(), None);
    w.users()
        .insert_one(doc! { "email": "first@example.com" })
        .await
        .unwrap();

    let mut feed = store
        .follow_accounts(&FeedPosition::default())
        .await
        .unwrap();
    let mut position = feed.position();
    while !position.is_known() {
        feed.next().await.unwrap();
        position = feed.position();
    }
    drop(feed);

    // Written while no feed is open.
    let registered = mongodb::bson::oid::ObjectId::new();
    w.users()
        .insert_one(doc! { "_id": registered, "email": "gap@example.com" })
        .await
        .unwrap();

    let mut resumed = store.follow_accounts(&position).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = None;
    while seen.is_none() && Instant::now() < deadline {
        seen = resumed
            .next()
            .await
            .unwrap()
            .filter(|c| c.user_id == registered);
    }
    assert_eq!(
        seen.and_then(|c| c.email).as_deref(),
        Some("gap@example.com"),
        "the registration made while the feed was closed was not handed over"
    );
}

/// The instance's Secret is pointed at a database restored from a backup of LibreChat's
/// accounts without the operator's records (a restore, a migration). An account verified in
/// the old database is not taken as verified in the new one: the resync reads its ownership
/// record there, finds none, and stops managing it. Before, the settled mark outlived the
/// move, and the account read Ready, managed, until the operator restarted.
#[tokio::test]
async fn an_account_verified_in_the_old_database_is_verified_again_in_the_new_one() {
    let w = World::with_instance("feed-restore", json!({ "resyncPeriod": "3s" })).await;
    let spec = json!({ "instanceRef": { "name": "lc" }, "email": "restored@example.com" });
    w.apply("LibreChatUser", "restored", spec).await;
    w.wait_condition("librechatusers", "restored", "Ready", "True", None)
        .await;
    // Settled: a few resyncs pass on the one-read shortcut.
    tokio::time::sleep(Duration::from_secs(8)).await;

    let restored_to = format!("{}_restored", w.db_name);
    let new_db = w.db.client().database(&restored_to);
    let account = w.find_user("restored@example.com").await.unwrap();
    new_db
        .collection::<mongodb::bson::Document>("users")
        .insert_one(&account)
        .await
        .unwrap();
    w.secret(
        "lc-stores",
        &[
            ("mongo", &mongo_uri_for(&restored_to)),
            ("redis", &env("REDIS_URL")),
        ],
    )
    .await;
    // The move is meant: a person confirms it (an account points at the instance, so the
    // instance stops, `DatabaseChanged`, until then).
    let confirmed = w.confirm_printed_database_move("lc").await;
    assert!(
        confirmed.starts_with(&format!("unmarked:{restored_to}@")),
        "{confirmed}"
    );
    let let_go = within(Duration::from_secs(40), || async {
        let obj = w.get("librechatusers", "restored").await?;
        let ready = condition(&obj, "Ready")?;
        // Waiting for the instance (its move not confirmed yet) is not letting go.
        (ready.status == "False" && ready.reason != "InstanceNotReady").then_some(ready.reason)
    })
    .await;
    let records = new_db
        .collection::<mongodb::bson::Document>("librechat_operator_owners")
        .count_documents(doc! {})
        .await
        .unwrap();
    let _ = new_db.drop().await;
    assert_eq!(
        let_go.as_deref(),
        Some("AlreadyExists"),
        "an account with no ownership record in the new database stayed managed"
    );
    assert_eq!(records, 0, "nothing may be claimed in the new database");
    assert_eq!(
        w.find_user("restored@example.com")
            .await
            .map(|u| u.get_object_id("_id").ok()),
        Some(account.get_object_id("_id").ok()),
        "the old database keeps its account"
    );
}
