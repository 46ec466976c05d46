//! LibreChat's own writes seen through MongoDB change streams: with a resync period of an hour,
//! an edit by hand is put back, and a deleted account re-created, within moments.

use std::time::{Duration, Instant};

use mongodb::bson::doc;
use serde_json::json;

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
