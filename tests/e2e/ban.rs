//! UserBan: bans LibreChat's checkBan enforces, lifted completely on delete or at the end.

use mongodb::bson::{doc, oid::ObjectId, Document};
use redis::AsyncCommands;
use serde_json::{json, Value};

use crate::support::*;

async fn managed_user(w: &World, name: &str, email: &str) -> ObjectId {
    w.apply(
        "LibreChatUser",
        name,
        json!({ "instanceRef": { "name": "lc" }, "email": email }),
    )
    .await;
    let obj = w
        .wait_condition("librechatusers", name, "Ready", "True", None)
        .await;
    ObjectId::parse_str(obj.pointer("/status/userId").unwrap().as_str().unwrap()).unwrap()
}

async fn ban_doc(w: &World, key: &str) -> Option<Document> {
    w.db.collection::<Document>("logs")
        .find_one(doc! { "key": key })
        .await
        .unwrap()
}

fn envelope(d: &Document) -> Value {
    serde_json::from_str(d.get_str("value").unwrap()).unwrap()
}

async fn seed_session(w: &World, user: ObjectId) {
    let later = mongodb::bson::DateTime::from_millis(
        mongodb::bson::DateTime::now().timestamp_millis() + 86_400_000,
    );
    w.db.collection::<Document>("sessions")
        .insert_one(doc! { "refreshTokenHash": format!("{}", ObjectId::new().to_hex()), "expiration": later, "user": user })
        .await
        .unwrap();
}

#[tokio::test]
async fn user_ban_is_enforced_and_lifted_completely() {
    let w = World::with_instance("ban-user", json!({ "redis": { "keyPrefix": "lc" } })).await;
    let id = managed_user(&w, "jane", "jane@example.com").await;
    let hex = id.to_hex();
    seed_session(&w, id).await;
    let mut r = redis().await;
    let counter = format!("lc::violations:logins:logins:{hex}");
    let _: () = r.set(&counter, 3).await.unwrap();

    w.apply("UserBan", "jane-ban", json!({ "instanceRef": { "name": "lc" }, "userRef": { "name": "jane" }, "duration": "1h", "reason": "abuse" })).await;
    let obj = w
        .wait_condition("userbans", "jane-ban", "Ready", "True", Some("Banned"))
        .await;
    assert_eq!(obj.pointer("/status/active"), Some(&json!(true)));
    assert_eq!(
        obj.pointer("/status/userId").and_then(Value::as_str),
        Some(hex.as_str())
    );

    // The document exactly as LibreChat's Keyv store keeps it, both expiries at the ban's end.
    let d = ban_doc(&w, &format!("BANS:{hex}"))
        .await
        .expect("BANS document");
    let v = envelope(&d);
    let end = v["expires"].as_i64().unwrap();
    assert_eq!(v["value"]["expiresAt"].as_i64(), Some(end));
    assert_eq!(d.get_datetime("expiresAt").unwrap().timestamp_millis(), end);
    let created = jiff::Timestamp::now().as_millisecond();
    assert!(
        (end - created - 3_600_000).abs() < 120_000,
        "a 1h ban ends in an hour, not in BAN_DURATION"
    );
    assert_eq!(
        w.db.collection::<Document>("sessions")
            .count_documents(doc! { "user": id })
            .await
            .unwrap(),
        0,
        "sessions revoked"
    );
    w.contract_check(json!({ "bans": [ { "key": format!("BANS:{hex}"), "expectActive": true } ], "sessionsRevoked": [hex.clone()] }));
    w.wait_event("jane-ban", "Banned").await;

    // What LibreChat's checkBan writes on its own when the user tries to log in from an IP.
    let copy = d.get_str("value").unwrap().to_string();
    for key in [
        format!("ban:{hex}"),
        format!("ban:ban_cache:user:{hex}"),
        "ban:198.51.100.23".to_string(),
    ] {
        w.db.collection::<Document>("logs").insert_one(doc! { "key": key, "value": &copy, "expiresAt": d.get("expiresAt").unwrap().clone() }).await.unwrap();
    }

    w.delete("UserBan", "jane-ban").await;
    w.wait_gone("userbans", "jane-ban").await;
    let left =
        w.db.collection::<Document>("logs")
            .count_documents(doc! {})
            .await
            .unwrap();
    assert_eq!(
        left, 0,
        "every key LibreChat reads for the ban must go, including checkBan's IP copy"
    );
    let exists: bool = r.exists(&counter).await.unwrap();
    assert!(
        !exists,
        "violation counters must be cleared so LibreChat does not re-ban"
    );
    w.contract_check(
        json!({ "bans": [ { "key": format!("BANS:{hex}"), "expectActive": false } ] }),
    );
}

#[tokio::test]
async fn email_ip_and_permanent_bans() {
    let w = World::with_instance("ban-kinds", json!({})).await;
    let outsider = ObjectId::new();
    w.users()
        .insert_one(crate::user::foreign_user(outsider, "outsider@example.com"))
        .await
        .unwrap();

    w.apply(
        "UserBan",
        "by-email",
        json!({ "instanceRef": { "name": "lc" }, "email": "Outsider@Example.com" }),
    )
    .await;
    w.apply("UserBan", "by-ip", json!({ "instanceRef": { "name": "lc" }, "ip": "203.0.113.7", "until": "2099-01-01T00:00:00Z" })).await;
    w.wait_condition("userbans", "by-email", "Ready", "True", Some("Banned"))
        .await;
    w.wait_condition("userbans", "by-ip", "Ready", "True", Some("Banned"))
        .await;

    // Permanent: no envelope expiry, no inner expiresAt (checkBan: banned indefinitely).
    let d = ban_doc(&w, &format!("BANS:{}", outsider.to_hex()))
        .await
        .unwrap();
    assert_eq!(d.get("expiresAt"), Some(&mongodb::bson::Bson::Null));
    let v = envelope(&d);
    assert!(
        v.get("expires").is_none() && v["value"].get("expiresAt").is_none(),
        "{v}"
    );
    let ip = ban_doc(&w, "BANS:203.0.113.7").await.unwrap();
    assert_eq!(
        envelope(&ip)["value"]["expiresAt"].as_i64(),
        Some(4_070_908_800_000)
    );
    w.contract_check(json!({ "bans": [
        { "key": format!("BANS:{}", outsider.to_hex()), "expectActive": true },
        { "key": "BANS:203.0.113.7", "expectActive": true },
    ] }));
    // The unmanaged account itself is untouched.
    assert!(w.find_user("outsider@example.com").await.is_some());

    w.delete("UserBan", "by-ip").await;
    w.wait_gone("userbans", "by-ip").await;
    assert!(ban_doc(&w, "BANS:203.0.113.7").await.is_none());
    w.contract_check(json!({ "bans": [ { "key": "BANS:203.0.113.7", "expectActive": false } ] }));
}

#[tokio::test]
async fn bans_expire_and_stay_as_a_record() {
    let w = World::with_instance("ban-expiry", json!({})).await;
    let id = managed_user(&w, "short", "short@example.com").await;
    w.apply("UserBan", "brief", json!({ "instanceRef": { "name": "lc" }, "userRef": { "name": "short" }, "duration": "4s" })).await;
    w.wait_condition("userbans", "brief", "Ready", "True", Some("Banned"))
        .await;
    assert!(ban_doc(&w, &format!("BANS:{}", id.to_hex()))
        .await
        .is_some());
    let obj = w
        .wait_condition("userbans", "brief", "Ready", "True", Some("Expired"))
        .await;
    assert_eq!(obj.pointer("/status/active"), Some(&json!(false)));
    assert!(ban_doc(&w, &format!("BANS:{}", id.to_hex()))
        .await
        .is_none());
    w.wait_event("brief", "Expired").await;
    assert!(
        w.get("userbans", "brief").await.is_some(),
        "an expired ban stays for the audit trail"
    );
}

#[tokio::test]
async fn overlapping_bans_lift_only_their_own_share() {
    let w = World::with_instance("ban-overlap", json!({})).await;
    let id = managed_user(&w, "twice", "twice@example.com").await;
    let key = format!("BANS:{}", id.to_hex());
    w.apply("UserBan", "short", json!({ "instanceRef": { "name": "lc" }, "userRef": { "name": "twice" }, "duration": "1h" })).await;
    w.apply(
        "UserBan",
        "long",
        json!({ "instanceRef": { "name": "lc" }, "email": "twice@example.com", "duration": "7d" }),
    )
    .await;
    w.wait_condition("userbans", "short", "Ready", "True", Some("Banned"))
        .await;
    w.wait_condition("userbans", "long", "Ready", "True", Some("Banned"))
        .await;
    let week = jiff::Timestamp::now().as_millisecond() + 7 * 86_400_000;
    eventually("the ban to last until the longest share ends", || async {
        let end = envelope(&ban_doc(&w, &key).await?)["expires"].as_i64()?;
        ((end - week).abs() < 120_000).then_some(())
    })
    .await;

    w.delete("UserBan", "long").await;
    w.wait_gone("userbans", "long").await;
    let end = envelope(
        &ban_doc(&w, &key)
            .await
            .expect("still banned by the other ban"),
    )["expires"]
        .as_i64()
        .unwrap();
    assert!(
        (end - (jiff::Timestamp::now().as_millisecond() + 3_600_000)).abs() < 120_000,
        "the remaining share's end applies"
    );
    w.contract_check(json!({ "bans": [ { "key": &key, "expectActive": true } ] }));

    // Moving the end of a live ban.
    w.apply("UserBan", "short", json!({ "instanceRef": { "name": "lc" }, "userRef": { "name": "twice" }, "duration": "2h" })).await;
    eventually("the end to move", || async {
        let end = envelope(&ban_doc(&w, &key).await?)["expires"].as_i64()?;
        (end > jiff::Timestamp::now().as_millisecond() + 6_000_000).then_some(())
    })
    .await;

    w.delete("UserBan", "short").await;
    w.wait_gone("userbans", "short").await;
    assert!(ban_doc(&w, &key).await.is_none());
}

#[tokio::test]
async fn a_ban_waits_for_its_account() {
    let w = World::with_instance("ban-early", json!({})).await;
    w.apply(
        "UserBan",
        "early",
        json!({ "instanceRef": { "name": "lc" }, "userRef": { "name": "later" } }),
    )
    .await;
    w.apply(
        "UserBan",
        "early-mail",
        json!({ "instanceRef": { "name": "lc" }, "email": "someday@example.com" }),
    )
    .await;
    w.wait_condition("userbans", "early", "Ready", "False", Some("UserNotFound"))
        .await;
    // An email ban before its account is settled and ready, like a pending invite (so GitOps
    // waits do not hang on it), but not active.
    w.wait_condition(
        "userbans",
        "early-mail",
        "Ready",
        "True",
        Some("AwaitingAccount"),
    )
    .await;
    let early_mail = w.get("userbans", "early-mail").await.unwrap();
    assert_eq!(early_mail["status"]["active"], false);
    assert_eq!(
        w.db.collection::<Document>("logs")
            .count_documents(doc! {})
            .await
            .unwrap(),
        0
    );

    let id = managed_user(&w, "later", "later@example.com").await;
    w.wait_condition("userbans", "early", "Ready", "True", Some("Banned"))
        .await;
    assert!(ban_doc(&w, &format!("BANS:{}", id.to_hex()))
        .await
        .is_some());
    // An account LibreChat registers itself is found too.
    let other = ObjectId::new();
    w.users()
        .insert_one(crate::user::foreign_user(other, "someday@example.com"))
        .await
        .unwrap();
    w.wait_condition("userbans", "early-mail", "Ready", "True", Some("Banned"))
        .await;
    assert!(ban_doc(&w, &format!("BANS:{}", other.to_hex()))
        .await
        .is_some());
}

#[tokio::test]
async fn bad_bans_are_refused_and_write_nothing() {
    let w = World::with_instance("ban-bad", json!({})).await;
    let lc = json!({ "name": "lc" });
    // Two targets or none: the API server's CEL rule refuses those (tests/e2e/cel.rs); the
    // controller's own check of them is proven against the same rule in tests/cel_rules.rs.
    let cases = [
        (
            "zero",
            json!({ "instanceRef": lc, "ip": "10.1.2.3", "duration": "0s" }),
            "InvalidSpec",
        ),
        (
            "past",
            json!({ "instanceRef": lc, "ip": "10.1.2.3", "until": "2001-01-01T00:00:00Z" }),
            "InvalidSpec",
        ),
        (
            "bad-until",
            json!({ "instanceRef": lc, "ip": "10.1.2.3", "until": "tomorrow" }),
            "InvalidSpec",
        ),
        (
            "bad-ip",
            json!({ "instanceRef": lc, "ip": "300.1.2.3" }),
            "InvalidSpec",
        ),
        (
            "missing-user",
            json!({ "instanceRef": lc, "userRef": { "name": "ghost" } }),
            "UserNotFound",
        ),
    ];
    for (name, spec, _) in &cases {
        w.apply("UserBan", name, spec.clone()).await;
    }
    for (name, _, reason) in &cases {
        w.wait_condition("userbans", name, "Ready", "False", Some(reason))
            .await;
    }
    // The API server itself refuses a negative duration (schema pattern).
    let api = dynamic(&w.client, &w.ns, "UserBan");
    let obj = json!({ "apiVersion": "librechat.ai/v1alpha1", "kind": "UserBan", "metadata": { "name": "negative" },
                      "spec": { "instanceRef": lc, "ip": "10.1.2.3", "duration": "-5m" } });
    let refused = api
        .create(&Default::default(), &serde_json::from_value(obj).unwrap())
        .await;
    assert!(refused.is_err(), "a negative duration must be refused");
    for spec in [
        json!({ "instanceRef": lc, "email": "a@example.com", "ip": "10.1.2.3" }),
        json!({ "instanceRef": lc }),
    ] {
        let obj = json!({ "apiVersion": "librechat.ai/v1alpha1", "kind": "UserBan", "metadata": { "name": "targets" }, "spec": spec });
        match api
            .create(&Default::default(), &serde_json::from_value(obj).unwrap())
            .await
        {
            Err(kube::Error::Api(e)) => assert!(
                e.message
                    .contains("set exactly one of userRef, email and ip"),
                "{}",
                e.message
            ),
            other => panic!("a ban needs exactly one target, got {other:?}"),
        }
    }
    assert_eq!(
        w.db.collection::<Document>("logs")
            .count_documents(doc! {})
            .await
            .unwrap(),
        0,
        "nothing may be written"
    );
}

#[tokio::test]
async fn librechats_own_bans_survive_and_ip_copies_go() {
    let w = World::with_instance("ban-native", json!({})).await;
    let id = managed_user(&w, "offender", "offender@example.com").await;
    let key = format!("BANS:{}", id.to_hex());
    // A violation ban LibreChat wrote itself, ending in two days.
    let end = jiff::Timestamp::now().as_millisecond() + 2 * 86_400_000;
    let native = format!(
        r#"{{"value":{{"type":"message_limit","violation_count":20,"duration":172800000,"expiresAt":{end}}},"expires":{end}}}"#
    );
    w.db.collection::<Document>("logs")
        .insert_one(doc! { "key": &key, "value": &native, "expiresAt": mongodb::bson::DateTime::from_millis(end) })
        .await
        .unwrap();
    w.apply("UserBan", "short", json!({ "instanceRef": { "name": "lc" }, "userRef": { "name": "offender" }, "duration": "1h" })).await;
    w.wait_condition("userbans", "short", "Ready", "True", Some("Banned"))
        .await;
    let during = envelope(&ban_doc(&w, &key).await.unwrap())["expires"]
        .as_i64()
        .unwrap();
    assert!(
        (during - end).abs() < 5_000,
        "the longer native ban must keep its end"
    );
    w.delete("UserBan", "short").await;
    w.wait_gone("userbans", "short").await;
    let after = envelope(
        &ban_doc(&w, &key)
            .await
            .expect("LibreChat's own ban must survive"),
    )["expires"]
        .as_i64()
        .unwrap();
    assert!((after - end).abs() < 5_000);
    w.contract_check(json!({ "bans": [ { "key": &key, "expectActive": true } ] }));

    // An IP ban's copies, made by checkBan for a user who tried from that address.
    w.apply(
        "UserBan",
        "ip",
        json!({ "instanceRef": { "name": "lc" }, "ip": "198.51.100.77" }),
    )
    .await;
    w.wait_condition("userbans", "ip", "Ready", "True", Some("Banned"))
        .await;
    let value = ban_doc(&w, "BANS:198.51.100.77")
        .await
        .unwrap()
        .get_str("value")
        .unwrap()
        .to_string();
    let bystander = ObjectId::new().to_hex();
    w.db.collection::<Document>("logs")
        .insert_one(doc! { "key": format!("ban:{bystander}"), "value": &value, "expiresAt": null })
        .await
        .unwrap();
    w.delete("UserBan", "ip").await;
    w.wait_gone("userbans", "ip").await;
    assert!(
        ban_doc(&w, &format!("ban:{bystander}")).await.is_none(),
        "checkBan's copy for the user behind the IP must go"
    );
    assert!(ban_doc(&w, "BANS:198.51.100.77").await.is_none());
}

#[tokio::test]
async fn lifting_waits_for_a_declared_redis() {
    let port = free_port();
    let mut redis = Some(PrivateRedis::start(port));
    let mut w = World::new("ban-redis").await;
    w.start_operator();
    w.apply_instance(
        "lc",
        &format!("redis://127.0.0.1:{port}/"),
        json!({ "resyncPeriod": "2s" }),
    )
    .await;
    w.wait_condition("librechatinstances", "lc", "Ready", "True", None)
        .await;
    let held = ObjectId::new();
    w.users()
        .insert_one(crate::user::foreign_user(held, "held@example.com"))
        .await
        .unwrap();
    let key = format!("BANS:{}", held.to_hex());
    w.apply(
        "UserBan",
        "held",
        json!({ "instanceRef": { "name": "lc" }, "email": "held@example.com" }),
    )
    .await;
    w.wait_condition("userbans", "held", "Ready", "True", Some("Banned"))
        .await;

    // Redis goes away: lifting would leave LibreChat's counters behind, so it waits.
    drop(redis.take());
    w.wait_condition("librechatinstances", "lc", "RedisReachable", "False", None)
        .await;
    w.delete("UserBan", "held").await;
    w.wait_condition("userbans", "held", "Ready", "False", Some("DeleteBlocked"))
        .await;
    assert!(ban_doc(&w, &key).await.is_some());

    // Redis is back: the ban is lifted and the object goes.
    redis = Some(PrivateRedis::start(port));
    w.wait_gone("userbans", "held").await;
    assert!(ban_doc(&w, &key).await.is_none());
    drop(redis);
}

/// A mistaken permanent ban cut to an hour: LibreChat's document says the hour. Before, a held
/// share made the rewrite look done (the stored end was later than the new one), so the
/// document stayed permanent and only the operator's own lift at the hour could end it: with
/// the operator down or Redis out then, LibreChat went on refusing the person for ever.
#[tokio::test]
async fn a_ban_brought_earlier_is_rewritten_with_its_new_end() {
    let w = World::with_instance("ban-earlier", json!({})).await;
    let id = managed_user(&w, "kit", "kit@example.com").await;
    let key = format!("BANS:{}", id.to_hex());
    let spec = json!({ "instanceRef": { "name": "lc" }, "userRef": { "name": "kit" } });
    w.apply("UserBan", "mistake", spec.clone()).await;
    w.wait_condition("userbans", "mistake", "Ready", "True", Some("Banned"))
        .await;
    assert_eq!(
        ban_doc(&w, &key).await.unwrap().get("expiresAt"),
        Some(&mongodb::bson::Bson::Null),
        "permanent first"
    );

    let until = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1);
    let until = jiff::Timestamp::from_second(until.as_second()).unwrap();
    let mut shorter = spec;
    shorter["until"] = json!(until.to_string());
    w.apply("UserBan", "mistake", shorter).await;
    let d = eventually("the document to end at the new time", || async {
        let d = ban_doc(&w, &key).await?;
        let end = d.get_datetime("expiresAt").ok()?.timestamp_millis();
        (end == until.as_millisecond()).then_some(d)
    })
    .await;
    assert_eq!(
        envelope(&d)["value"]["expiresAt"].as_i64(),
        Some(until.as_millisecond())
    );
    w.contract_check(json!({ "bans": [ { "key": key, "expectActive": true } ] }));
}
