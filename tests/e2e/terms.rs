//! The terms-of-service version: a new version resets every acceptance once, as LibreChat's
//! `reset-terms` does, never again after a restart or a crash; user status mirrors acceptance.

use std::time::Duration;

use mongodb::bson::{doc, oid::ObjectId, Bson, DateTime, Document};
use redis::AsyncCommands;
use serde_json::{json, Value};

use crate::support::*;

/// Instance extras: the terms version, and a Redis prefix of this world's own, since a reset
/// drops every cached user document of the instance.
fn terms(w: &World, version: &str) -> Value {
    json!({ "terms": { "version": version }, "redis": { "keyPrefix": w.ns.clone() } })
}

/// What LibreChat's `acceptTerms` writes.
async fn accept(w: &World, email: &str) -> DateTime {
    let now = DateTime::now();
    w.users()
        .update_one(
            doc! { "email": email },
            doc! { "$set": { "termsAccepted": true, "termsAcceptedAt": now } },
        )
        .await
        .unwrap();
    now
}

/// An account LibreChat registered itself, which accepted the terms.
async fn registered(w: &World, email: &str) {
    let now = DateTime::now();
    w.users()
        .insert_one(doc! { "_id": ObjectId::new(), "email": email, "name": "Someone",
            "provider": "local", "role": "USER", "emailVerified": true,
            "termsAccepted": true, "termsAcceptedAt": now, "createdAt": now, "updatedAt": now, "__v": 0 })
        .await
        .unwrap();
}

async fn accepted(w: &World, email: &str) -> bool {
    let u = w.find_user(email).await.unwrap();
    u.get_bool("termsAccepted").unwrap()
}

async fn applied_version(w: &World, version: &str, reset: bool) -> Value {
    eventually(&format!("terms version {version} applied"), || async {
        let obj = w.get("librechatinstances", "lc").await?;
        let t = obj.pointer("/status/terms")?;
        (t["appliedVersion"] == version && t["reset"] == reset).then_some(obj)
    })
    .await
}

async fn mirrored(w: &World, name: &str, accepted: bool) -> Value {
    eventually(
        &format!("{name} status termsAccepted = {accepted}"),
        || async {
            let obj = w.get("librechatusers", name).await?;
            (obj.pointer("/status/termsAccepted")?.as_bool()? == accepted).then_some(obj)
        },
    )
    .await
}

/// An account that accepted v1, then v2 declared and its reset promised, the operator dying
/// before the reset (crash point `after-terms-promise`).
async fn v2_promised_then_crashed(label: &str) -> World {
    let mut w = World::new(label).await;
    w.start_operator();
    registered(&w, "someone@example.com").await;
    w.ready_instance("lc", terms(&w, "v1")).await;
    applied_version(&w, "v1", false).await;

    w.stop_operator();
    w.apply_instance("lc", &env("REDIS_URL"), terms(&w, "v2"))
        .await;
    w.start_operator_with_env(&[("LIBRECHAT_OPERATOR_CRASH_AT", "after-terms-promise")]);
    let code = w.wait_operator_exit(PATIENCE).await;
    assert_eq!(code, Some(86), "the operator must reach the crash point");
    w
}

/// The operator's record of the terms version.
async fn terms_record(w: &World) -> Document {
    w.db.collection::<Document>("librechat_operator_terms")
        .find_one(doc! { "_id": "terms" })
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn a_new_terms_version_resets_acceptance_once() {
    let mut w = World::new("terms-once").await;
    w.start_operator();
    registered(&w, "old@example.com").await;
    w.ready_instance("lc", terms(&w, "v1")).await;
    w.apply(
        "LibreChatUser",
        "m",
        json!({ "instanceRef": { "name": "lc" }, "email": "m@example.com" }),
    )
    .await;
    w.wait_condition("librechatusers", "m", "Ready", "True", None)
        .await;

    // The first version declared resets nothing.
    applied_version(&w, "v1", false).await;
    w.wait_event("lc", "TermsVersionRecorded").await;
    assert!(accepted(&w, "old@example.com").await);

    let at = accept(&w, "m@example.com").await;
    let obj = mirrored(&w, "m", true).await;
    let shown = obj
        .pointer("/status/termsAcceptedAt")
        .unwrap()
        .as_str()
        .unwrap();
    let shown: jiff::Timestamp = shown.parse().unwrap();
    assert_eq!(shown.as_millisecond(), at.timestamp_millis());

    // A cached user document LibreChat would keep serving.
    let id = w
        .find_user("m@example.com")
        .await
        .unwrap()
        .get_object_id("_id")
        .unwrap();
    let cached = format!("{}::AUTH_USER_DOC:auth-user-doc-byid:{}", w.ns, id.to_hex());
    let mut r = redis().await;
    let _: () = r.set(&cached, "{\"value\":{}}").await.unwrap();

    let before_reset = mongodb::bson::DateTime::now();
    w.apply_instance("lc", &env("REDIS_URL"), terms(&w, "v2"))
        .await;
    applied_version(&w, "v2", true).await;
    w.wait_event("lc", "TermsReset").await;
    for email in ["old@example.com", "m@example.com"] {
        let u = w.find_user(email).await.unwrap();
        assert_eq!(u.get_bool("termsAccepted"), Ok(false), "{email}");
        assert_eq!(u.get("termsAcceptedAt"), Some(&Bson::Null), "{email}");
        // As mongoose's timestamps stamp LibreChat's own reset.
        assert!(
            *u.get_datetime("updatedAt").unwrap() >= before_reset,
            "{email}: updatedAt not stamped by the reset"
        );
    }
    let left: bool = r.exists(&cached).await.unwrap();
    assert!(!left, "the cached user document is dropped");
    mirrored(&w, "m", false).await;

    // Users accept v2; a restart and resyncs do not reset them again.
    accept(&w, "old@example.com").await;
    accept(&w, "m@example.com").await;
    w.stop_operator();
    w.start_operator();
    mirrored(&w, "m", true).await;
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert!(accepted(&w, "old@example.com").await);
    assert!(accepted(&w, "m@example.com").await);
    w.contract_check(json!({ "users": [{ "email": "m@example.com", "termsAccepted": true }] }));
    let resets = w
        .event_reasons("lc")
        .await
        .iter()
        .filter(|r| *r == "TermsReset")
        .count();
    assert_eq!(resets, 1);
}

#[tokio::test]
async fn a_crash_after_the_reset_does_not_reset_twice() {
    let mut w = World::new("terms-crash").await;
    w.start_operator();
    registered(&w, "early@example.com").await;
    registered(&w, "late@example.com").await;
    w.ready_instance("lc", terms(&w, "v1")).await;
    applied_version(&w, "v1", false).await;

    w.stop_operator();
    w.apply_instance("lc", &env("REDIS_URL"), terms(&w, "v2"))
        .await;
    w.start_operator_with_env(&[("LIBRECHAT_OPERATOR_CRASH_AT", "after-terms-reset")]);
    let code = w.wait_operator_exit(PATIENCE).await;
    assert_eq!(code, Some(86), "the operator must reach the crash point");
    assert!(
        !accepted(&w, "late@example.com").await,
        "the reset happened"
    );
    let record = terms_record(&w).await;
    assert_eq!(record.get_str("version"), Ok("v2"));
    assert!(
        record.contains_key("pendingSince"),
        "the reset is not marked done yet"
    );

    // Someone accepts v2 before the operator comes back: that acceptance stands.
    accept(&w, "late@example.com").await;
    w.start_operator();
    applied_version(&w, "v2", true).await;
    assert!(
        accepted(&w, "late@example.com").await,
        "an acceptance of v2 is not reset"
    );
    assert!(!accepted(&w, "early@example.com").await);
    let record = terms_record(&w).await;
    assert!(!record.contains_key("pendingSince"));
}

#[tokio::test]
async fn a_crash_after_the_promise_resets_once_on_restart() {
    let mut w = v2_promised_then_crashed("terms-promise").await;
    assert!(
        accepted(&w, "someone@example.com").await,
        "promised, not reset yet"
    );

    w.start_operator();
    applied_version(&w, "v2", true).await;
    assert!(
        !accepted(&w, "someone@example.com").await,
        "the promised reset is done"
    );
    w.wait_event("lc", "TermsReset").await;
}

/// A reset cut short and then its declaration removed: the promised reset is finished, not
/// left half done (some accounts may already have been asked to accept again, the others
/// would never be) with its record pending for good.
#[tokio::test]
async fn a_reset_cut_short_is_finished_when_the_version_is_no_longer_declared() {
    let mut w = v2_promised_then_crashed("terms-removed").await;

    let without_terms = json!({ "redis": { "keyPrefix": w.ns.clone() } });
    w.apply_instance("lc", &env("REDIS_URL"), without_terms)
        .await;
    w.start_operator();
    applied_version(&w, "v2", true).await;
    assert!(
        !accepted(&w, "someone@example.com").await,
        "the promised reset is finished"
    );
    w.wait_event("lc", "TermsReset").await;
    let record = terms_record(&w).await;
    assert!(!record.contains_key("pendingSince"));
}

/// Two instances on one database (another team's, or an old one left while a new one is set
/// up) declaring different versions: each check of one reset every acceptance, then the
/// other's, for ever. The second is refused, says which instance's version is in force, and
/// resets nothing; once the first no longer declares its own, the second's applies, once.
#[tokio::test]
async fn two_instances_on_one_database_do_not_reset_each_others_terms() {
    let mut w = World::new("terms-two").await;
    w.start_operator();
    registered(&w, "both@example.com").await;
    w.ready_instance("lc", terms(&w, "v1")).await;
    applied_version(&w, "v1", false).await;
    // A record of an earlier build names no instance: the one declaring the version in force
    // names itself at its next check.
    w.db.collection::<Document>("librechat_operator_terms")
        .update_one(
            doc! { "_id": "terms" },
            doc! { "$unset": { "declaredBy": "" } },
        )
        .await
        .unwrap();
    let lc = format!("{}/lc", w.ns);
    eventually("the record to name lc again", || async {
        let record = terms_record(&w).await;
        let named = record
            .get_document("declaredBy")
            .ok()?
            .get_str("name")
            .ok()?;
        (named == lc).then_some(())
    })
    .await;

    w.apply_instance_of_stores("lc2", terms(&w, "v2")).await;
    eventually(
        "the second instance to say whose version is in force",
        || async {
            let obj = w.get("librechatinstances", "lc2").await?;
            let ready = condition(&obj, "Ready")?;
            let told = format!("LibreChatInstance {}/lc, on the same database", w.ns);
            ready.message.contains(&told).then_some(())
        },
    )
    .await;
    // Several checks of both (every 3 s) later, nothing was reset.
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert!(accepted(&w, "both@example.com").await, "reset by lc2");
    assert_eq!(terms_record(&w).await.get_str("version").unwrap(), "v1");
    let lc2 = w.get("librechatinstances", "lc2").await.unwrap();
    assert!(lc2.pointer("/status/terms").is_none(), "{lc2}");

    // The first stops declaring a version: the second's is applied, with one reset.
    let mut without_terms = terms(&w, "v1");
    without_terms.as_object_mut().unwrap().remove("terms");
    w.apply_instance_of_stores("lc", without_terms).await;
    eventually("v2 applied by the second instance", || async {
        let obj = w.get("librechatinstances", "lc2").await?;
        let t = obj.pointer("/status/terms")?;
        (t["appliedVersion"] == "v2" && t["reset"] == true).then_some(())
    })
    .await;
    assert!(!accepted(&w, "both@example.com").await);
    let stamp = accept(&w, "both@example.com").await;
    tokio::time::sleep(Duration::from_secs(7)).await;
    let user = w.find_user("both@example.com").await.unwrap();
    assert_eq!(
        user.get_datetime("termsAcceptedAt").unwrap(),
        &stamp,
        "reset twice"
    );
}
