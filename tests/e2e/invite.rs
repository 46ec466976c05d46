//! UserInvite: links LibreChat's registration accepts, followed to Accepted or Expired.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams};
use mongodb::bson::{doc, oid::ObjectId, Document};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::support::*;

async fn invite_secret(w: &World, name: &str) -> std::collections::BTreeMap<String, String> {
    let api: kube::Api<Secret> = kube::Api::namespaced(w.client.clone(), &w.ns);
    let secret = api.get(name).await.unwrap();
    secret
        .data
        .unwrap()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8(v.0).unwrap()))
        .collect()
}

fn sha256(raw: &str) -> String {
    hex::encode(Sha256::digest(raw.as_bytes()))
}

async fn token_doc(w: &World, hash: &str) -> Option<Document> {
    w.db.collection::<Document>("tokens")
        .find_one(doc! { "token": hash })
        .await
        .unwrap()
}

#[tokio::test]
async fn invite_is_issued_found_by_librechat_and_accepted() {
    let w = World::with_instance(
        "inv-ok",
        json!({ "domainClient": "https://chat.example.com/" }),
    )
    .await;
    w.apply(
        "UserInvite",
        "newbie",
        json!({ "instanceRef": { "name": "lc" }, "email": " NewBie@Example.com " }),
    )
    .await;
    let obj = w
        .wait_condition("userinvites", "newbie", "Ready", "True", Some("Pending"))
        .await;
    assert_eq!(obj.pointer("/status/phase"), Some(&json!("Pending")));

    let data = invite_secret(&w, "newbie-invite").await;
    let raw = data["token"].clone();
    assert_eq!(raw.len(), 64);
    assert_eq!(
        data["url"],
        format!("https://chat.example.com/register?token={raw}")
    );
    let hash = sha256(&raw);
    let token = token_doc(&w, &hash)
        .await
        .expect("the token is stored as its SHA-256");
    assert_eq!(token.get_str("email").unwrap(), "newbie@example.com");
    assert!(
        !token.contains_key("type")
            && !token.contains_key("identifier")
            && !token.contains_key("tenantId")
    );
    let fake = token.get_object_id("userId").unwrap();
    assert!(
        w.users()
            .find_one(doc! { "_id": fake })
            .await
            .unwrap()
            .is_none(),
        "the userId is a fake, as in LibreChat"
    );
    let life = token.get_datetime("expiresAt").unwrap().timestamp_millis()
        - token.get_datetime("createdAt").unwrap().timestamp_millis();
    assert!(
        (life - 604_800_000).abs() < 120_000,
        "default lifetime is LibreChat's 7 days"
    );
    assert_eq!(
        w.db.collection::<Document>("tokens")
            .count_documents(doc! { "token": &raw })
            .await
            .unwrap(),
        0,
        "the raw token is never stored"
    );
    w.contract_check(json!({ "invites": [ { "rawToken": raw, "email": "NewBie@example.com ", "expectFound": true } ] }));
    assert!(
        !obj.to_string().contains(&raw),
        "the raw token must not appear in status"
    );
    assert!(
        !w.operator_log().contains(&raw),
        "the raw token must not appear in logs"
    );

    // Registration, as LibreChat's checkInviteUser + registerUser do it: consume, then create.
    w.db.collection::<Document>("tokens")
        .delete_many(doc! { "token": &hash })
        .await
        .unwrap();
    let id = ObjectId::new();
    w.users()
        .insert_one(crate::user::foreign_user(id, "newbie@example.com"))
        .await
        .unwrap();
    let obj = w
        .wait_condition("userinvites", "newbie", "Ready", "True", Some("Accepted"))
        .await;
    assert_eq!(obj.pointer("/status/phase"), Some(&json!("Accepted")));
    assert_eq!(
        obj.pointer("/status/userId").and_then(|v| v.as_str()),
        Some(id.to_hex().as_str())
    );
    w.wait_event("newbie", "Accepted").await;
    let api: kube::Api<k8s_openapi::api::events::v1::Event> =
        kube::Api::namespaced(w.client.clone(), &w.ns);
    assert!(
        !serde_json::to_string(&api.list(&Default::default()).await.unwrap().items)
            .unwrap()
            .contains(&raw)
    );
}

#[tokio::test]
async fn invites_expire_and_deleting_revokes() {
    let mut w = World::new("inv-end").await;
    w.start_operator();
    w.ready_instance("lc", json!({ "domainClient": "https://chat.example.com" }))
        .await;
    w.apply(
        "UserInvite",
        "brief",
        json!({ "instanceRef": { "name": "lc" }, "email": "brief@example.com", "expiresIn": "4s" }),
    )
    .await;
    w.apply("UserInvite", "revoked", json!({ "instanceRef": { "name": "lc" }, "email": "revoked@example.com", "secretName": "link-for-revoked" })).await;
    w.wait_condition("userinvites", "brief", "Ready", "True", Some("Pending"))
        .await;
    w.wait_condition("userinvites", "revoked", "Ready", "True", Some("Pending"))
        .await;
    let brief = sha256(&invite_secret(&w, "brief-invite").await["token"]);
    let revoked_raw = invite_secret(&w, "link-for-revoked").await["token"].clone();

    let obj = w
        .wait_condition("userinvites", "brief", "Ready", "True", Some("Expired"))
        .await;
    assert_eq!(obj.pointer("/status/phase"), Some(&json!("Expired")));
    assert!(
        token_doc(&w, &brief).await.is_none(),
        "an expired link stops working at its end"
    );
    // The attack: the lifetime raised and the status cleared (anyone who may write it can),
    // to revive the link past its end, and past any email rule added since. Expired is final.
    w.apply(
        "UserInvite",
        "brief",
        json!({ "instanceRef": { "name": "lc" }, "email": "brief@example.com", "expiresIn": "24h" }),
    )
    .await;
    w.wait_condition("userinvites", "brief", "Ready", "True", Some("Expired"))
        .await;
    let cleared = json!({ "status": { "phase": null, "conditions": [] } });
    dynamic(&w.client, &w.ns, "UserInvite")
        .patch_status("brief", &PatchParams::default(), &Patch::Merge(&cleared))
        .await
        .unwrap();
    w.wait_condition("userinvites", "brief", "Ready", "True", Some("Expired"))
        .await;
    assert!(
        token_doc(&w, &brief).await.is_none(),
        "a cleared status revived an expired link"
    );

    w.delete("UserInvite", "revoked").await;
    w.wait_gone("userinvites", "revoked").await;
    w.contract_check(json!({ "invites": [ { "rawToken": revoked_raw, "email": "revoked@example.com", "expectFound": false } ] }));
}

#[tokio::test]
async fn a_changed_lifetime_moves_the_end_and_a_burnt_link_is_restored() {
    let w = World::with_instance(
        "inv-move",
        json!({ "domainClient": "https://chat.example.com" }),
    )
    .await;
    w.apply("UserInvite", "moving", json!({ "instanceRef": { "name": "lc" }, "email": "moving@example.com", "expiresIn": "24h" })).await;
    w.wait_condition("userinvites", "moving", "Ready", "True", Some("Pending"))
        .await;
    let hash = sha256(&invite_secret(&w, "moving-invite").await["token"]);
    let first = token_doc(&w, &hash)
        .await
        .unwrap()
        .get_datetime("expiresAt")
        .unwrap()
        .timestamp_millis();
    w.apply("UserInvite", "moving", json!({ "instanceRef": { "name": "lc" }, "email": "moving@example.com", "expiresIn": "48h" })).await;
    eventually("the end to move by a day", || async {
        let end = token_doc(&w, &hash)
            .await?
            .get_datetime("expiresAt")
            .ok()?
            .timestamp_millis();
        ((end - first - 86_400_000).abs() < 5_000).then_some(())
    })
    .await;
    // LibreChat consumed the token but the registration failed (no account): the link is put back.
    w.db.collection::<Document>("tokens")
        .delete_many(doc! { "token": &hash })
        .await
        .unwrap();
    eventually("the token to be restored", || async {
        token_doc(&w, &hash).await
    })
    .await;
    w.wait_event("moving", "Restored").await;
}

#[tokio::test]
async fn refusals_and_bad_input() {
    let w = World::with_instance("inv-bad", json!({})).await;
    w.users()
        .insert_one(crate::user::foreign_user(
            ObjectId::new(),
            "member@example.com",
        ))
        .await
        .unwrap();
    let lc = json!({ "name": "lc" });
    w.apply(
        "UserInvite",
        "member",
        json!({ "instanceRef": lc, "email": "Member@example.com" }),
    )
    .await;
    w.apply(
        "UserInvite",
        "bad-email",
        json!({ "instanceRef": lc, "email": "not-an-email" }),
    )
    .await;
    w.apply(
        "UserInvite",
        "zero",
        json!({ "instanceRef": lc, "email": "z@example.com", "expiresIn": "0s" }),
    )
    .await;
    w.apply(
        "UserInvite",
        "forever",
        json!({ "instanceRef": lc, "email": "f@example.com", "expiresIn": "400d" }),
    )
    .await;
    w.wait_condition(
        "userinvites",
        "member",
        "Ready",
        "False",
        Some("AlreadyRegistered"),
    )
    .await;
    for name in ["bad-email", "zero", "forever"] {
        w.wait_condition("userinvites", name, "Ready", "False", Some("InvalidSpec"))
            .await;
    }
    assert_eq!(
        w.db.collection::<Document>("tokens")
            .count_documents(doc! {})
            .await
            .unwrap(),
        0,
        "nothing may be written"
    );
    let api: kube::Api<Secret> = kube::Api::namespaced(w.client.clone(), &w.ns);
    assert!(api.get_opt("member-invite").await.unwrap().is_none());

    // Without domainClient the Secret holds the token alone, and the status says why.
    w.apply(
        "UserInvite",
        "plain",
        json!({ "instanceRef": lc, "email": "plain@example.com" }),
    )
    .await;
    let obj = w
        .wait_condition("userinvites", "plain", "Ready", "True", Some("TokenOnly"))
        .await;
    assert!(condition(&obj, "Ready")
        .unwrap()
        .message
        .contains("domainClient"));
    let data = invite_secret(&w, "plain-invite").await;
    assert!(data.contains_key("token") && !data.contains_key("url"));
}

/// A minimal SMTP sink on 127.0.0.1 that keeps every message it is given.
pub(crate) async fn smtp_sink() -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let inbox = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = inbox.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let kept = kept.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read).lines();
                write.write_all(b"220 sink ESMTP\r\n").await.ok()?;
                let mut message: Option<String> = None;
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Some(body) = message.as_mut() {
                        if line == "." {
                            kept.lock().unwrap().push(message.take().unwrap());
                            write.write_all(b"250 queued\r\n").await.ok()?;
                        } else {
                            body.push_str(&line);
                            body.push('\n');
                        }
                        continue;
                    }
                    let verb = line
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_ascii_uppercase();
                    let reply: &[u8] = match verb.as_str() {
                        "EHLO" | "HELO" => b"250 sink\r\n",
                        "DATA" => {
                            message = Some(String::new());
                            b"354 end with .\r\n"
                        }
                        "QUIT" => {
                            write.write_all(b"221 bye\r\n").await.ok()?;
                            break;
                        }
                        _ => b"250 OK\r\n",
                    };
                    write.write_all(reply).await.ok()?;
                }
                Some(())
            });
        }
    });
    (port, inbox)
}

#[tokio::test]
async fn invitations_are_emailed_through_the_instances_relay() {
    let (port, inbox) = smtp_sink().await;
    // A pace of ten minutes: on a slow machine a minute may pass before the re-creation below.
    let mut w = World::new("inv-mail").await;
    w.start_operator_with_env(&[("MAIL_PACE", "10m")]);
    w.ready_instance(
        "lc",
        json!({ "domainClient": "https://chat.example.com",
                "smtp": { "host": "127.0.0.1", "port": port, "from": "LibreChat <noreply@example.com>", "security": "none" } }),
    )
    .await;
    w.apply("UserInvite", "mailed", json!({ "instanceRef": { "name": "lc" }, "email": "Mailed@Example.com", "sendEmail": true })).await;
    let obj = eventually("the email to be sent", || async {
        let obj = w.get("userinvites", "mailed").await?;
        obj.pointer("/status/emailSentAt").is_some().then_some(obj)
    })
    .await;
    assert_eq!(obj.pointer("/status/phase"), Some(&json!("Pending")));
    let url = invite_secret(&w, "mailed-invite").await["url"].clone();
    // As a mail reader sees it: quoted-printable soft line breaks joined, `=3D` decoded.
    let mail: Vec<String> = inbox
        .lock()
        .unwrap()
        .iter()
        .map(|m| m.replace("=\n", "").replace("=3D", "="))
        .collect();
    assert_eq!(mail.len(), 1, "exactly one invitation");
    assert!(
        mail[0].contains("mailed@example.com") && mail[0].contains("noreply@example.com"),
        "{}",
        mail[0]
    );
    assert!(
        mail[0].contains(&url),
        "the email carries the Secret's link {url}:\n{}",
        mail[0]
    );
    w.wait_event("mailed", "EmailSent").await;

    // Deleted and re-created at once (as a loop would): one email a minute to one address.
    w.delete("UserInvite", "mailed").await;
    w.wait_gone("userinvites", "mailed").await;
    w.apply("UserInvite", "mailed", json!({ "instanceRef": { "name": "lc" }, "email": "mailed@example.com", "sendEmail": true })).await;
    let obj = w
        .wait_condition(
            "userinvites",
            "mailed",
            "Ready",
            "False",
            Some("EmailNotSent"),
        )
        .await;
    let told = condition(&obj, "Ready").unwrap().message;
    assert!(told.contains("within the last 600s"), "{told}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        inbox.lock().unwrap().len(),
        1,
        "no second email within the pace"
    );

    // Asked for email where the instance has no relay: said plainly, the link still works.
    let plain = World::with_instance(
        "inv-nomail",
        json!({ "domainClient": "https://chat.example.com" }),
    )
    .await;
    plain.apply("UserInvite", "unsent", json!({ "instanceRef": { "name": "lc" }, "email": "unsent@example.com", "sendEmail": true })).await;
    let obj = plain
        .wait_condition(
            "userinvites",
            "unsent",
            "Ready",
            "False",
            Some("EmailNotSent"),
        )
        .await;
    assert!(condition(&obj, "Ready")
        .unwrap()
        .message
        .contains("no smtp relay"));
    assert!(invite_secret(&plain, "unsent-invite")
        .await
        .contains_key("url"));
}

/// The attack: whoever may edit a UserInvite but not read Secrets points `secretName` at a
/// Secret with a `token` key (a service-account token, say) and asks for the invitation by
/// mail, to an address they read. Only the link this invite issued is ever emailed.
#[tokio::test]
async fn an_invitation_never_mails_a_secret_it_did_not_issue() {
    let (port, inbox) = smtp_sink().await;
    let w = World::with_instance(
        "inv-lure",
        json!({ "domainClient": "https://chat.example.com",
                "smtp": { "host": "127.0.0.1", "port": port, "from": "LibreChat <noreply@example.com>", "security": "none" } }),
    )
    .await;
    w.secret("sa-token", &[("token", "SERVICE-ACCOUNT-TOKEN-VALUE")])
        .await;
    let spec = json!({ "instanceRef": { "name": "lc" }, "email": "reader@example.com" });
    w.apply("UserInvite", "lure", spec.clone()).await;
    w.wait_condition("userinvites", "lure", "Ready", "True", Some("Pending"))
        .await;

    let mut swapped = spec;
    swapped["secretName"] = json!("sa-token");
    swapped["sendEmail"] = json!(true);
    w.apply("UserInvite", "lure", swapped).await;
    let refused = w
        .wait_condition(
            "userinvites",
            "lure",
            "Ready",
            "False",
            Some("EmailNotSent"),
        )
        .await;
    let told = condition(&refused, "Ready").unwrap().message;
    assert!(told.contains("does not hold the link"), "{told}");
    assert!(!told.contains("SERVICE-ACCOUNT"), "{told}");
    let mail = inbox.lock().unwrap().join("\n");
    assert!(
        !mail.contains("SERVICE-ACCOUNT-TOKEN-VALUE") && mail.is_empty(),
        "nothing may be mailed from a Secret the invite did not issue:\n{mail}"
    );
    let unchanged = invite_secret(&w, "sa-token").await;
    assert_eq!(
        unchanged.len(),
        1,
        "the Secret is not written either: {unchanged:?}"
    );
}

/// A revocation that cannot finish (the instance was force-removed) reports like a blocked
/// user or ban deletion, keeps the live token accounted for, and finishes once the instance is
/// back.
#[tokio::test]
async fn a_blocked_revocation_says_so_in_status_and_finishes_later() {
    let w = World::with_instance("inv-blocked", json!({})).await;
    w.apply(
        "UserInvite",
        "stuck",
        json!({ "instanceRef": { "name": "lc" }, "email": "stuck@example.com" }),
    )
    .await;
    w.wait_condition("userinvites", "stuck", "Ready", "True", None)
        .await;
    let hash = sha256(&invite_secret(&w, "stuck-invite").await["token"]);
    // Deleted (it waits for the invite), then forced out; a deleting object gets no
    // finalizer back.
    w.force_out_instance("lc", ("userinvites", "stuck")).await;
    w.delete("UserInvite", "stuck").await;
    let blocked = eventually("the blocked revocation in status", || async {
        let obj = w.get("userinvites", "stuck").await?;
        let ready = condition(&obj, "Ready")?;
        (ready.reason == "DeleteBlocked").then_some(ready)
    })
    .await;
    assert!(
        blocked.message.contains("no longer exists"),
        "{}",
        blocked.message
    );
    assert!(
        token_doc(&w, &hash).await.is_some(),
        "the token stays until it can be revoked"
    );

    w.apply_instance("lc", &env("REDIS_URL"), json!({})).await;
    w.wait_gone("userinvites", "stuck").await;
    assert!(
        token_doc(&w, &hash).await.is_none(),
        "the token was revoked"
    );
}
