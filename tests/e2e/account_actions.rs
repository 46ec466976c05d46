//! Email verification and the one-shot actions (`logoutAt`, `resetTwoFactorAt`,
//! `resendVerificationAt`), judged by LibreChat's own code: each applied once per trigger,
//! never by a resync.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use mongodb::bson::{doc, oid::ObjectId, Document};
use serde_json::{json, Value};

use crate::invite::smtp_sink;
use crate::support::*;
use crate::user::seed_session;

fn now() -> String {
    jiff::Timestamp::now().to_string()
}

fn unverified(email: &str) -> Value {
    json!({ "instanceRef": { "name": "lc" }, "email": email, "emailVerified": false })
}

async fn secret_data(w: &World, name: &str) -> Option<std::collections::BTreeMap<String, String>> {
    let api: kube::Api<Secret> = kube::Api::namespaced(w.client.clone(), &w.ns);
    let secret = api.get_opt(name).await.unwrap()?;
    Some(
        secret
            .data?
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8(v.0).unwrap()))
            .collect(),
    )
}

async fn account_id(w: &World, name: &str) -> ObjectId {
    let obj = w
        .wait_condition("librechatusers", name, "Ready", "True", None)
        .await;
    ObjectId::parse_str(obj["status"]["userId"].as_str().unwrap()).unwrap()
}

/// The email as text (quoted-printable soft breaks and `=3D` undone) and the raw token of the
/// verification link it carries.
fn verification_link_in(mail: &str) -> (String, String) {
    let mail = mail.replace("=\n", "").replace("=3D", "=");
    let raw = mail
        .split("verify?token=")
        .nth(1)
        .and_then(|rest| rest.split('&').next())
        .unwrap_or_else(|| panic!("no link in\n{mail}"))
        .to_string();
    (mail, raw)
}

async fn tokens_of(w: &World, id: ObjectId) -> Vec<Document> {
    use futures::TryStreamExt;
    w.db.collection::<Document>("tokens")
        .find(doc! { "userId": id, "type": "email_verification" })
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap()
}

#[tokio::test]
async fn verification_links_land_in_a_secret_once_and_again_only_when_asked() {
    let w = World::with_instance(
        "verify",
        json!({ "domainClient": "https://chat.example.com" }),
    )
    .await;
    w.apply("LibreChatUser", "vera", unverified("Vera@Example.com"))
        .await;
    let id = account_id(&w, "vera").await;
    let obj = eventually("a pending verification", || async {
        let obj = w.get("librechatusers", "vera").await?;
        (obj.pointer("/status/verification/state")? == "Pending").then_some(obj)
    })
    .await;
    assert_eq!(obj["status"]["verification"]["deliveredBy"], "secret");
    assert!(obj["status"]["verification"]["expiresAt"].is_string());
    let first = secret_data(&w, "vera-verification").await.unwrap();
    let url = &first["url"];
    assert!(
        url.starts_with("https://chat.example.com/verify?token=")
            && url.ends_with("&email=vera%40example.com"),
        "{url}"
    );
    assert!(url.contains(&first["token"]));
    w.contract_check(json!({ "verifications": [ { "email": "vera@example.com", "rawToken": first["token"], "expectValid": true } ] }));

    // Resyncs (every 3 s here) issue nothing new.
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(
        secret_data(&w, "vera-verification").await.unwrap()["token"],
        first["token"]
    );
    assert_eq!(tokens_of(&w, id).await.len(), 1);

    // Asked for a new link: one, and the old one no longer verifies.
    let mut spec = unverified("Vera@Example.com");
    spec["resendVerificationAt"] = json!(now());
    w.apply("LibreChatUser", "vera", spec.clone()).await;
    let second = eventually("a new link", || async {
        let data = secret_data(&w, "vera-verification").await?;
        (data["token"] != first["token"]).then_some(data)
    })
    .await;
    w.wait_event("vera", "VerificationIssued").await;
    assert_eq!(
        tokens_of(&w, id).await.len(),
        1,
        "the resend replaces the old token"
    );
    w.contract_check(json!({ "verifications": [
        { "email": "vera@example.com", "rawToken": second["token"], "expectValid": true },
        { "email": "vera@example.com", "rawToken": first["token"], "expectValid": false },
    ] }));
    let obj = w.get("librechatusers", "vera").await.unwrap();
    assert_eq!(
        obj["status"]["actions"]["resendVerification"]["requestedAt"],
        spec["resendVerificationAt"]
    );

    // The person verifies through LibreChat (verifyEmail's writes): never undone.
    w.users()
        .update_one(
            doc! { "_id": id },
            doc! { "$set": { "emailVerified": true } },
        )
        .await
        .unwrap();
    w.db.collection::<Document>("tokens")
        .delete_many(doc! { "userId": id })
        .await
        .unwrap();
    eventually("status Verified", || async {
        let obj = w.get("librechatusers", "vera").await?;
        (obj.pointer("/status/verification/state")? == "Verified").then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(7)).await;
    let user = w.find_user("vera@example.com").await.unwrap();
    assert!(
        user.get_bool("emailVerified").unwrap(),
        "the operator undid LibreChat's verification"
    );
    assert!(
        tokens_of(&w, id).await.is_empty(),
        "no new link after verification"
    );
}

#[tokio::test]
async fn verification_is_emailed_through_the_relay_once_and_true_voids_pending_links() {
    let (port, inbox) = smtp_sink().await;
    // A pace of ten minutes: on a slow machine a minute may pass before the resends below.
    let mut w = World::new("verify-mail").await;
    w.start_operator_with_env(&[("MAIL_PACE", "10m")]);
    w.ready_instance(
        "lc",
        json!({ "domainClient": "https://chat.example.com",
                "smtp": { "host": "127.0.0.1", "port": port, "from": "LibreChat <noreply@example.com>", "security": "none" } }),
    )
    .await;
    w.apply("LibreChatUser", "mia", unverified("mia@example.com"))
        .await;
    let id = account_id(&w, "mia").await;
    let mail = eventually("the verification email", || async {
        inbox.lock().unwrap().first().cloned()
    })
    .await;
    let (mail, raw) = verification_link_in(&mail);
    assert!(
        mail.contains("mia@example.com") && mail.contains("Verify your email"),
        "{mail}"
    );
    w.contract_check(json!({ "verifications": [ { "email": "mia@example.com", "rawToken": raw, "expectValid": true } ] }));
    assert!(
        secret_data(&w, "mia-verification").await.is_none(),
        "with a relay the link is only emailed"
    );
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(inbox.lock().unwrap().len(), 1, "exactly one email");

    // Asked again at once, and again: paced as LibreChat paces its resend, so a trigger set
    // in a loop does not make the instance's relay a mailer.
    for _ in 0..2 {
        let mut again = unverified("mia@example.com");
        again["resendVerificationAt"] = json!(now());
        w.apply("LibreChatUser", "mia", again).await;
        let told = eventually("the resend paced", || async {
            let obj = w.get("librechatusers", "mia").await?;
            let conditions = obj.pointer("/status/conditions")?.as_array()?.clone();
            let ready = conditions.into_iter().find(|c| c["type"] == "Ready")?;
            (ready["reason"] == "VerificationNotSent").then(|| ready["message"].to_string())
        })
        .await;
        assert!(told.contains("within the last 600s"), "{told}");
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        inbox.lock().unwrap().len(),
        1,
        "no second email within the pace"
    );

    // Declared verified: the account is, and its pending link is void.
    let mut spec = unverified("mia@example.com");
    spec["emailVerified"] = json!(true);
    w.apply("LibreChatUser", "mia", spec).await;
    eventually("verified and the token gone", || async {
        let user = w.find_user("mia@example.com").await?;
        (user.get_bool("emailVerified").ok()? && tokens_of(&w, id).await.is_empty()).then_some(())
    })
    .await;
    w.contract_check(json!({ "verifications": [ { "email": "mia@example.com", "rawToken": raw, "expectValid": false } ] }));
}

/// The fault: an edit declares the account verified and rotates its password, and the operator
/// dies after writing the new hash, past the write that marked the account verified. Before,
/// the person's pending link went only after those steps, and the next look found the account
/// verified and owing nothing: the link stayed valid for its whole life.
#[tokio::test]
async fn a_crash_after_marking_an_account_verified_leaves_no_pending_link() {
    let mut w = World::with_instance("verify-crash", json!({})).await;
    w.secret("kim-pw", &[("password", crate::user::PASSWORD)])
        .await;
    let mut spec = crate::user::local_user("kim@example.com", "kim-pw");
    spec["emailVerified"] = json!(false);
    w.apply("LibreChatUser", "kim", spec.clone()).await;
    let id = account_id(&w, "kim").await;
    eventually("the pending link", || async {
        (!tokens_of(&w, id).await.is_empty()).then_some(())
    })
    .await;

    w.stop_operator();
    w.secret("kim-pw", &[("password", "A-Rotated-Password-42")])
        .await;
    spec["emailVerified"] = json!(true);
    w.apply("LibreChatUser", "kim", spec).await;
    w.start_operator_with_env(&[("LIBRECHAT_OPERATOR_CRASH_AT", "after-password-hash")]);
    let code = w.wait_operator_exit(PATIENCE).await;
    assert_eq!(code, Some(86), "the operator must reach the crash point");
    let user = w.find_user("kim@example.com").await.unwrap();
    assert!(
        user.get_bool("emailVerified").unwrap(),
        "marked verified before the crash"
    );

    w.start_operator();
    w.wait_condition("librechatusers", "kim", "Ready", "True", None)
        .await;
    assert!(
        tokens_of(&w, id).await.is_empty(),
        "the pending link outlived the verification"
    );
}

/// The fault: MongoDB refuses the verification token's write after the right to email the link
/// was taken (a failover, a full disk; here a validator). Before, the right stayed taken: once
/// MongoDB took writes again, no link was ever issued or mailed, and the person (who may not
/// log in unverified) was locked out while status read Pending.
#[tokio::test]
async fn a_verification_link_refused_by_mongodb_is_issued_and_mailed_once_it_recovers() {
    let (port, inbox) = smtp_sink().await;
    let w = World::with_instance(
        "verify-refused",
        json!({ "domainClient": "https://chat.example.com",
                "smtp": { "host": "127.0.0.1", "port": port, "from": "LibreChat <noreply@example.com>", "security": "none" } }),
    )
    .await;
    let refuse_all = doc! { "$jsonSchema": { "required": ["never_there"] } };
    if w.db
        .create_collection("tokens")
        .validator(refuse_all.clone())
        .await
        .is_err()
    {
        w.db.run_command(doc! { "collMod": "tokens", "validator": refuse_all })
            .await
            .unwrap();
    }
    w.apply("LibreChatUser", "rae", unverified("rae@example.com"))
        .await;
    eventually("the account", || async {
        w.find_user("rae@example.com").await.map(|_| ())
    })
    .await;
    // Several attempts meet the refusal.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(inbox.lock().unwrap().is_empty(), "the fault did not hold");

    w.db.run_command(doc! { "collMod": "tokens", "validator": {} })
        .await
        .unwrap();
    let mail = eventually("the verification email after the recovery", || async {
        inbox.lock().unwrap().first().cloned()
    })
    .await;
    let (_, raw) = verification_link_in(&mail);
    w.contract_check(json!({ "verifications": [ { "email": "rae@example.com", "rawToken": raw, "expectValid": true } ] }));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(inbox.lock().unwrap().len(), 1, "exactly one email");
}

/// An unverified account deleted in LibreChat (`delete-user`, which takes its tokens along) and
/// re-created by the operator gets a verification link of its own. Before, the record said the
/// initial link was issued (to the deleted account): no link came, the Secret kept the dead
/// one, and the person could not verify.
#[tokio::test]
async fn a_re_created_unverified_account_gets_a_new_verification_link() {
    let w = World::with_instance(
        "verify-again",
        json!({ "domainClient": "https://chat.example.com" }),
    )
    .await;
    w.apply("LibreChatUser", "ivy", unverified("ivy@example.com"))
        .await;
    let first_id = account_id(&w, "ivy").await;
    let first = eventually("the first link", || async {
        secret_data(&w, "ivy-verification").await
    })
    .await;

    // What LibreChat's deletion does to the account and its tokens.
    w.users()
        .delete_one(doc! { "_id": first_id })
        .await
        .unwrap();
    w.db.collection::<Document>("tokens")
        .delete_many(doc! { "userId": first_id })
        .await
        .unwrap();
    let second_id = eventually("the account re-created", || async {
        let user = w.find_user("ivy@example.com").await?;
        let id = user.get_object_id("_id").ok()?;
        (id != first_id).then_some(id)
    })
    .await;
    let second = eventually("a link for the new account", || async {
        let data = secret_data(&w, "ivy-verification").await?;
        (data["token"] != first["token"]).then_some(data)
    })
    .await;
    assert_eq!(tokens_of(&w, second_id).await.len(), 1);
    w.contract_check(json!({ "verifications": [
        { "email": "ivy@example.com", "rawToken": second["token"], "expectValid": true },
        { "email": "ivy@example.com", "rawToken": first["token"], "expectValid": false } ] }));
}

#[tokio::test]
async fn logout_and_two_factor_reset_apply_once_per_trigger() {
    let w = World::with_instance("actions", json!({})).await;
    let spec = json!({ "instanceRef": { "name": "lc" }, "email": "locked@example.com" });
    w.apply("LibreChatUser", "locked", spec.clone()).await;
    let id = account_id(&w, "locked").await;
    seed_session(&w, id, &"a".repeat(64)).await;
    w.users()
        .update_one(
            doc! { "_id": id },
            doc! { "$set": {
                "twoFactorEnabled": true,
                "totpSecret": "v3:00112233445566778899aabbccddeeff:abcdef",
                "backupCodes": [ { "codeHash": "f".repeat(64), "used": false, "usedAt": null } ],
            } },
        )
        .await
        .unwrap();

    // v0.8.8's OpenID refresh bridges: the account's goes with its sessions, nobody else's.
    let bridges = w.db.collection::<Document>("refreshtokenbridges");
    let someone_else = ObjectId::new().to_hex();
    for owner in [id.to_hex(), someone_else.clone()] {
        let bridge = doc! { "userId": owner, "oldRefreshTokenHash": "h".repeat(64),
        "encryptedNewRefreshToken": "x", "createdAt": mongodb::bson::DateTime::now() };
        bridges.insert_one(bridge).await.unwrap();
    }

    let mut triggered = spec.clone();
    let at = now();
    triggered["logoutAt"] = json!(at);
    triggered["resetTwoFactorAt"] = json!(at);
    w.apply("LibreChatUser", "locked", triggered.clone()).await;
    w.wait_event("locked", "LoggedOut").await;
    let left = |owner: String| bridges.count_documents(doc! { "userId": owner });
    assert_eq!(
        left(id.to_hex()).await.unwrap(),
        0,
        "the account's bridge stays"
    );
    assert_eq!(
        left(someone_else).await.unwrap(),
        1,
        "another account's bridge went"
    );
    w.wait_event("locked", "TwoFactorReset").await;
    w.contract_check(json!({
        "sessionsRevoked": [ id.to_hex() ],
        "twoFactorDisabled": [ "locked@example.com" ],
    }));
    let obj = w
        .wait_condition("librechatusers", "locked", "Ready", "True", None)
        .await;
    assert_eq!(
        obj["status"]["actions"]["logout"]["requestedAt"],
        at.as_str()
    );
    assert_eq!(
        obj["status"]["actions"]["resetTwoFactor"]["requestedAt"],
        at.as_str()
    );

    // A session opened after the logout survives resyncs and a restart: applied once.
    seed_session(&w, id, &"b".repeat(64)).await;
    let mut w = w;
    w.stop_operator();
    w.start_operator();
    tokio::time::sleep(Duration::from_secs(8)).await;
    w.contract_check(json!({ "sessionsPresent": [ id.to_hex() ] }));

    // A later trigger applies again.
    triggered["logoutAt"] = json!(now());
    w.apply("LibreChatUser", "locked", triggered).await;
    eventually("the second logout", || async {
        let left =
            w.db.collection::<Document>("sessions")
                .count_documents(doc! { "user": id })
                .await
                .ok()?;
        (left == 0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn bad_triggers_are_refused_and_nothing_is_written() {
    let w = World::with_instance("actions-bad", json!({})).await;
    let spec = json!({ "instanceRef": { "name": "lc" }, "email": "steady@example.com" });
    w.apply("LibreChatUser", "steady", spec.clone()).await;
    let id = account_id(&w, "steady").await;
    seed_session(&w, id, &"c".repeat(64)).await;
    let future = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(2)).to_string();
    let current = now();
    for (field, value, says) in [
        ("logoutAt", future.as_str(), "in the future"),
        ("resetTwoFactorAt", "yesterday", "RFC 3339"),
        (
            "resendVerificationAt",
            current.as_str(),
            "emailVerified: false",
        ),
    ] {
        let mut bad = spec.clone();
        bad[field] = json!(value);
        w.apply("LibreChatUser", "steady", bad).await;
        let obj = w
            .wait_condition(
                "librechatusers",
                "steady",
                "Ready",
                "False",
                Some("InvalidSpec"),
            )
            .await;
        let message = condition(&obj, "Ready").unwrap().message;
        assert!(
            message.contains(field) && message.contains(says),
            "{message}"
        );
        assert_eq!(condition(&obj, "Stalled").unwrap().status, "True");
    }
    w.contract_check(json!({ "sessionsPresent": [ id.to_hex() ] }));
}

/// The fault: the operator dies after resetting an account's second factor and before dropping
/// LibreChat's caches (as a Redis failing the drop would stop it). The person signs in and
/// sets up a new second factor, as the reset told them to; the retry drops the caches and does
/// not reset the new factor again.
#[tokio::test]
async fn a_two_factor_reset_cut_short_never_resets_the_new_factor() {
    let mut w = World::with_instance("actions-2fa", json!({})).await;
    let spec = json!({ "instanceRef": { "name": "lc" }, "email": "lost@example.com" });
    w.apply("LibreChatUser", "lost", spec.clone()).await;
    let id = account_id(&w, "lost").await;
    let enrol = |secret: &str| doc! { "$set": { "twoFactorEnabled": true, "totpSecret": secret } };
    let old = "v3:00112233445566778899aabbccddeeff:0ld0ld";
    w.users()
        .update_one(doc! { "_id": id }, enrol(old))
        .await
        .unwrap();

    w.stop_operator();
    let mut triggered = spec;
    triggered["resetTwoFactorAt"] = json!(now());
    w.apply("LibreChatUser", "lost", triggered).await;
    w.start_operator_with_env(&[("LIBRECHAT_OPERATOR_CRASH_AT", "after-two-factor-reset")]);
    let code = w.wait_operator_exit(PATIENCE).await;
    assert_eq!(code, Some(86), "the operator must reach the crash point");
    let reset = w
        .users()
        .find_one(doc! { "_id": id })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reset.get_bool("twoFactorEnabled"), Ok(false), "reset");

    let new = "v3:ffeeddccbbaa99887766554433221100:n3wn3w";
    w.users()
        .update_one(doc! { "_id": id }, enrol(new))
        .await
        .unwrap();
    w.start_operator();
    w.wait_condition("librechatusers", "lost", "Ready", "True", None)
        .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = w
        .users()
        .find_one(doc! { "_id": id })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        after.get_str("totpSecret"),
        Ok(new),
        "the new factor was reset"
    );
    assert_eq!(after.get_bool("twoFactorEnabled"), Ok(true));
}

/// The fault: the instance's relay is down, so a verification link cannot go. What else the
/// object declares (a grant here; a rotated plugin credential alike) does not wait for it.
#[tokio::test]
async fn an_undeliverable_verification_link_holds_nothing_else_back() {
    let closed = free_port();
    let w = World::with_instance(
        "actions-relay-down",
        json!({ "domainClient": "https://chat.example.com",
                "smtp": { "host": "127.0.0.1", "port": closed, "from": "LibreChat <noreply@example.com>", "security": "none" },
                "balance": { "enabled": true, "startBalance": 1000 } }),
    )
    .await;
    let spec = json!({ "instanceRef": { "name": "lc" }, "email": "waiting@example.com",
                       "emailVerified": false,
                       "balance": { "grants": [{ "id": "welcome", "credits": 500 }] } });
    w.apply("LibreChatUser", "waiting", spec).await;
    w.wait_condition(
        "librechatusers",
        "waiting",
        "Ready",
        "False",
        Some("VerificationNotSent"),
    )
    .await;
    let account = w.find_user("waiting@example.com").await.unwrap();
    let id = account.get_object_id("_id").unwrap();
    eventually(
        "the grant credited while the link waits for the relay",
        || async {
            let balance =
                w.db.collection::<Document>("balances")
                    .find_one(doc! { "user": id })
                    .await
                    .ok()??;
            let credits = match balance.get("tokenCredits")? {
                mongodb::bson::Bson::Double(d) => *d,
                mongodb::bson::Bson::Int32(n) => f64::from(*n),
                mongodb::bson::Bson::Int64(n) => *n as f64,
                _ => return None,
            };
            (credits >= 1500.0).then_some(())
        },
    )
    .await;
    // And the status says so while the link still waits.
    eventually("the credits shown while the link waits", || async {
        let obj = w.get("librechatusers", "waiting").await?;
        let ready = condition(&obj, "Ready")?;
        let shown = obj.pointer("/status/balance/tokenCredits")?.as_f64()?;
        (ready.reason == "VerificationNotSent" && shown >= 1500.0).then_some(())
    })
    .await;
}

/// A relay that takes each connection and hangs up at once, counting the attempts.
async fn hanging_up_relay() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let attempts = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = attempts.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            drop(socket);
        }
    });
    (port, attempts)
}

/// The fault: the relay fails every delivery while the person, locked out unverified, asks
/// LibreChat's own resend for a link (delivered by LibreChat's mailer). Before, each attempt of
/// the operator's wrote its token first, deleting the person's link, and then failed to send
/// its own: the link in their inbox stopped working at every retry.
#[tokio::test]
async fn a_link_the_relay_cannot_take_leaves_the_persons_own_link_working() {
    use std::sync::atomic::Ordering;
    let (port, attempts) = hanging_up_relay().await;
    let w = World::with_instance(
        "verify-keeps-own",
        json!({ "domainClient": "https://chat.example.com",
                "smtp": { "host": "127.0.0.1", "port": port, "from": "LibreChat <noreply@example.com>", "security": "none" } }),
    )
    .await;
    w.apply("LibreChatUser", "olga", unverified("olga@example.com"))
        .await;
    w.wait_condition(
        "librechatusers",
        "olga",
        "Ready",
        "False",
        Some("VerificationNotSent"),
    )
    .await;
    let id = w
        .find_user("olga@example.com")
        .await
        .unwrap()
        .get_object_id("_id")
        .unwrap();
    // The link LibreChat's resend wrote for her (its hash is all LibreChat keeps).
    let written = mongodb::bson::DateTime::now();
    let own = doc! { "_id": ObjectId::new(), "userId": id, "email": "olga@example.com",
    "type": "email_verification", "token": "$2a$10$ownlinkownlinkownlinkowO3fJ8N0xkPq5rY0bE2dUW8Qm1x6Zy",
    "createdAt": written, "expiresAt": mongodb::bson::DateTime::from_millis(written.timestamp_millis() + 900_000), "__v": 0 };
    w.db.collection::<Document>("tokens")
        .insert_one(own.clone())
        .await
        .unwrap();
    let before = attempts.load(Ordering::SeqCst);
    let mut again = unverified("olga@example.com");
    again["resendVerificationAt"] = json!(now());
    w.apply("LibreChatUser", "olga", again).await;
    eventually("the operator tried the relay again", || async {
        (attempts.load(Ordering::SeqCst) > before).then_some(())
    })
    .await;
    let own_id = own.get_object_id("_id").unwrap();
    eventually(
        "her own link the only one, so the one LibreChat checks",
        || async {
            let tokens = tokens_of(&w, id).await;
            let ids: Vec<_> = tokens
                .iter()
                .filter_map(|t| t.get_object_id("_id").ok())
                .collect();
            (ids == vec![own_id]).then_some(())
        },
    )
    .await;
    // And it stays so through the retries that follow.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let ids: Vec<_> = tokens_of(&w, id)
        .await
        .iter()
        .filter_map(|t| t.get_object_id("_id").ok())
        .collect();
    assert_eq!(ids, vec![own_id], "her link kept, no undelivered link left");
}
