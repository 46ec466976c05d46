//! Attacks on invitations from other namespaces: who may keep a tenant from inviting an email,
//! what an invitation tells a tenant of accounts it does not hold, and what an issued link
//! keeps once its namespace may no longer invite its email.

use std::time::Duration;

use kube::api::{Patch, PatchParams};
use mongodb::bson::{doc, Document};
use serde_json::{json, Value};

use crate::support::*;
use crate::trust::{lc, ready_in, tenant_invite_refused, tenant_world};

/// An instance's `domainClient`: with it, a pending invitation reads `Pending`.
const SITE: &str = "https://chat.example.com";

/// How many invitation tokens LibreChat would find for `email`.
async fn tokens_for(w: &World, email: &str) -> u64 {
    w.db.collection::<Document>("tokens")
        .count_documents(doc! { "email": email })
        .await
        .unwrap()
}

fn invite_of(w: &World, email: &str) -> Value {
    json!({ "instanceRef": lc(w), "email": email })
}

/// A world whose instance admits tenants `t` and `u` (`u` limited to `u.example.com`, `t` to
/// that and `example.com`), with a
/// third namespace the operator watches but the instance never admitted.
async fn three_namespaces(label: &str) -> (World, [String; 3]) {
    let mut w = World::new(label).await;
    let [t, u, stranger] = ["t", "u", "x"].map(|s| format!("{}-{s}", w.ns));
    for ns in [&t, &u, &stranger] {
        create_namespace(&w.client, ns).await;
    }
    w.start_operator_in(Some(&format!("{},{t},{u},{stranger}", w.ns)));
    let spec = json!({
        "domainClient": SITE,
        "allowedNamespaces": [t.clone(), u.clone()],
        "tenantPolicy": { "emailDomains": {
            t.clone(): ["example.com", "u.example.com"],
            u.clone(): ["u.example.com"],
        } },
    });
    w.ready_instance("lc", spec).await;
    (w, [t, u, stranger])
}

/// The attack: an object in a namespace the instance never admitted, or one of a tenant
/// outside its own emailDomains, names an email to keep another tenant from inviting it. Such
/// a declaration can never take effect, so it refuses nobody.
#[tokio::test]
async fn declarations_that_cannot_take_effect_keep_nobody_from_inviting() {
    let (w, [t, u, stranger]) = three_namespaces("ivt-strange").await;
    w.apply_in(
        &stranger,
        "UserInvite",
        "squat",
        invite_of(&w, "wanted@example.com"),
    )
    .await;
    ready_in(
        &w,
        &stranger,
        "userinvites",
        "squat",
        "False",
        "NamespaceNotAllowed",
    )
    .await;
    w.apply_in(
        &u,
        "LibreChatUser",
        "squat",
        invite_of(&w, "other@example.com"),
    )
    .await;
    ready_in(&w, &u, "librechatusers", "squat", "False", "NotPermitted").await;

    // One created first whose lifetime the operator refuses never issues: it refuses nobody.
    let invalid =
        json!({ "instanceRef": lc(&w), "email": "third@u.example.com", "expiresIn": "400d" });
    w.apply_in(&u, "UserInvite", "squat", invalid).await;
    ready_in(&w, &u, "userinvites", "squat", "False", "InvalidSpec").await;

    // One accepted whose account was deleted since holds the email no more.
    let gone = "gone@u.example.com";
    w.apply_in(&u, "UserInvite", "gone", invite_of(&w, gone))
        .await;
    ready_in(&w, &u, "userinvites", "gone", "True", "Pending").await;
    register_through_link(&w, (&u, "gone-invite"), gone).await;
    ready_in(&w, &u, "userinvites", "gone", "True", "Accepted").await;
    w.users().delete_one(doc! { "email": gone }).await.unwrap();

    for (name, email) in [
        ("wanted", "wanted@example.com"),
        ("other", "other@example.com"),
        ("third", "third@u.example.com"),
        ("gone", gone),
    ] {
        w.apply_in(&t, "UserInvite", name, invite_of(&w, email))
            .await;
        ready_in(&w, &t, "userinvites", name, "True", "Pending").await;
        assert_eq!(tokens_for(&w, email).await, 1, "{email}'s link is issued");
    }
}

/// The attack: two tenants invite one email at the same moment (here: both applied while the
/// operator was down). Each saw the other's declaration and both were refused for good; the
/// earlier one now issues, the later one is refused, and issues once the earlier one goes.
#[tokio::test]
async fn two_tenants_inviting_one_email_at_once_do_not_refuse_each_other() {
    let (mut w, [t, u, _]) = three_namespaces("ivt-race").await;
    w.stop_operator();
    let email = "both@u.example.com";
    w.apply_in(&t, "UserInvite", "first", invite_of(&w, email))
        .await;
    // Creation times have a one-second grain: the second comes a second later.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    w.apply_in(&u, "UserInvite", "second", invite_of(&w, email))
        .await;
    w.start_operator_in(Some(&format!("{},{t},{u},{}-x", w.ns, w.ns)));

    ready_in(&w, &t, "userinvites", "first", "True", "Pending").await;
    let told = ready_in(&w, &u, "userinvites", "second", "False", "NotPermitted").await;
    assert!(
        told.contains("owned or declared in another namespace"),
        "{told}"
    );
    assert_eq!(tokens_for(&w, email).await, 1);

    delete_in(&w.client, &t, "UserInvite", "first").await;
    crate::trust::wait_gone_in(&w, &t, "userinvites", "first").await;
    ready_in(&w, &u, "userinvites", "second", "True", "Pending").await;
    assert_eq!(tokens_for(&w, email).await, 1, "only the second one's link");
}

/// The attack: a tenant learns whether any email has an account, and its id, from an
/// invitation's `status.userId`: by writing `phase: Accepted` into the status of an
/// invitation that was refused, or by inviting an email another team then declares.
#[tokio::test]
async fn an_invitation_names_no_account_its_namespace_does_not_hold() {
    let (w, t) = tenant_world("ivt-leak", json!({ "domainClient": SITE })).await;
    w.secret("pw", &[("password", crate::user::PASSWORD)]).await;
    let admins = crate::user::local_user("boss@example.com", "pw");
    w.apply("LibreChatUser", "boss", admins).await;
    w.wait_condition("librechatusers", "boss", "Ready", "True", None)
        .await;

    tenant_invite_refused(&w, &t, "probe", "boss@example.com").await;
    let forged = json!({ "status": { "phase": "Accepted" } });
    dynamic(&w.client, &t, "UserInvite")
        .patch_status("probe", &PatchParams::default(), &Patch::Merge(&forged))
        .await
        .unwrap();
    let probe = ready_in(&w, &t, "userinvites", "probe", "True", "Accepted").await;
    let obj = get_in(&w.client, &t, "UserInvite", "probe").await.unwrap();
    assert!(
        obj.pointer("/status/userId").is_none(),
        "a forged status read out the account's id ({probe})"
    );

    // Invited first; the account then comes from another team's declaration.
    w.apply_in(
        &t,
        "UserInvite",
        "early",
        invite_of(&w, "taken@example.com"),
    )
    .await;
    ready_in(&w, &t, "userinvites", "early", "True", "Pending").await;
    let theirs = crate::user::local_user("taken@example.com", "pw");
    w.apply("LibreChatUser", "taken", theirs).await;
    w.wait_condition("librechatusers", "taken", "Ready", "True", None)
        .await;
    ready_in(&w, &t, "userinvites", "early", "True", "Accepted").await;
    let obj = get_in(&w.client, &t, "UserInvite", "early").await.unwrap();
    assert!(
        obj.pointer("/status/userId").is_none(),
        "another team's account id reached the tenant"
    );
    assert_eq!(tokens_for(&w, "taken@example.com").await, 0);
}

/// The attack: a tenant whose emailDomains no longer admit an address keeps the link it issued
/// before alive, lengthens it and has it put back after each use. The link now stops working
/// and stays out, however long its lifetime is made; the domain admitted again puts it back.
#[tokio::test]
async fn an_issued_invitation_stops_working_when_its_domain_is_withdrawn() {
    let domains =
        |d: &str| json!({ "domainClient": SITE, "tenantPolicy": { "emailDomains": { "*": [d] } } });
    let (w, t) = tenant_world("ivt-domain", domains("team.example.com")).await;
    let email = "guest@team.example.com";
    let invite = |life: &str| json!({ "instanceRef": lc(&w), "email": email, "expiresIn": life });
    w.apply_in(&t, "UserInvite", "guest", invite("24h")).await;
    ready_in(&w, &t, "userinvites", "guest", "True", "Pending").await;
    assert_eq!(tokens_for(&w, email).await, 1);

    let mut withdrawn = json!({ "allowedNamespaces": [t.clone()] });
    merge(&mut withdrawn, domains("elsewhere.example.com"));
    w.apply_instance_of_stores("lc", withdrawn).await;
    let told = ready_in(&w, &t, "userinvites", "guest", "False", "NotPermitted").await;
    assert!(told.contains("no longer works"), "{told}");
    assert_eq!(tokens_for(&w, email).await, 0, "the link still works");
    assert!(event_reasons_in(&w.client, &t, "guest")
        .await
        .contains(&"Suspended".to_string()));

    w.apply_in(&t, "UserInvite", "guest", invite("365d")).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        tokens_for(&w, email).await,
        0,
        "a longer life put the link back"
    );

    let mut again = json!({ "allowedNamespaces": [t.clone()] });
    merge(&mut again, domains("team.example.com"));
    w.apply_instance_of_stores("lc", again).await;
    ready_in(&w, &t, "userinvites", "guest", "True", "Pending").await;
    assert_eq!(tokens_for(&w, email).await, 1, "the domain admitted again");
}

/// The fault: an invitation's end passes while it is refused (an `expiresIn` the CRD lets
/// through but the operator refuses), LibreChat's TTL monitor deletes its token, and a valid
/// lifetime comes after. Expired is final: the dead link is not written back.
#[tokio::test]
async fn a_lifetime_lengthened_after_the_end_does_not_revive_the_link() {
    let w = World::with_instance("ivt-revive", json!({ "domainClient": SITE })).await;
    let email = "late@example.com";
    let invite =
        |life: &str| json!({ "instanceRef": { "name": "lc" }, "email": email, "expiresIn": life });
    w.apply("UserInvite", "late", invite("8s")).await;
    w.wait_condition("userinvites", "late", "Ready", "True", Some("Pending"))
        .await;
    w.apply("UserInvite", "late", invite("400d")).await;
    w.wait_condition("userinvites", "late", "Ready", "False", Some("InvalidSpec"))
        .await;
    tokio::time::sleep(Duration::from_secs(9)).await;
    // What LibreChat's TTL monitor does at the end.
    w.db.collection::<Document>("tokens")
        .delete_many(doc! { "email": email })
        .await
        .unwrap();

    w.apply("UserInvite", "late", invite("1h")).await;
    w.wait_condition("userinvites", "late", "Ready", "True", Some("Expired"))
        .await;
    assert_eq!(tokens_for(&w, email).await, 0, "an expired link came back");
}

/// The fault: the operator dies after taking the one right to email an invitation and before
/// handing the email to the relay. The email is not sent twice (it may have gone), and the
/// people who asked for it are told it may not have (it read as sent, with nothing said).
#[tokio::test]
async fn an_email_cut_short_before_the_relay_is_said_to_be_unconfirmed() {
    let (port, inbox) = crate::invite::smtp_sink().await;
    let mut w = World::new("ivt-handover").await;
    w.start_operator_with_env(&[("LIBRECHAT_OPERATOR_CRASH_AT", "before-invite-email")]);
    let smtp = json!({ "host": "127.0.0.1", "port": port, "from": "LibreChat <noreply@example.com>", "security": "none" });
    w.ready_instance("lc", json!({ "domainClient": SITE, "smtp": smtp }))
        .await;
    let invite =
        json!({ "instanceRef": { "name": "lc" }, "email": "cut@example.com", "sendEmail": true });
    w.apply("UserInvite", "cut", invite).await;
    let code = w.wait_operator_exit(PATIENCE).await;
    assert_eq!(code, Some(86), "the operator must reach the crash point");
    assert_eq!(inbox.lock().unwrap().len(), 0);

    w.start_operator();
    w.wait_event("cut", "EmailUnconfirmed").await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        inbox.lock().unwrap().len(),
        0,
        "the email was sent after all"
    );
    let unconfirmed = w.event_reasons("cut").await;
    let told = unconfirmed.iter().filter(|r| *r == "EmailUnconfirmed");
    assert_eq!(told.count(), 1, "said once: {unconfirmed:?}");
}

/// What LibreChat's registration through an invitation does: the token goes, the account comes.
async fn register_through_link(
    w: &World,
    (ns, secret): (&str, &str),
    email: &str,
) -> mongodb::bson::oid::ObjectId {
    let raw = secret_token(w, ns, secret).await;
    let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(raw.as_bytes()));
    let tokens = w.db.collection::<Document>("tokens");
    let gone = tokens
        .delete_one(doc! { "token": hash, "email": email })
        .await
        .unwrap();
    assert_eq!(gone.deleted_count, 1, "the link registers");
    let id = mongodb::bson::oid::ObjectId::new();
    let now = mongodb::bson::DateTime::now();
    let account = doc! { "_id": id, "email": email, "name": "Invitee", "provider": "local",
    "role": "USER", "emailVerified": true, "createdAt": now, "updatedAt": now, "__v": 0 };
    w.users().insert_one(account).await.unwrap();
    id
}

async fn secret_token(w: &World, ns: &str, name: &str) -> String {
    let api: kube::Api<k8s_openapi::api::core::v1::Secret> =
        kube::Api::namespaced(w.client.clone(), ns);
    let secret = api.get(name).await.unwrap();
    String::from_utf8(secret.data.unwrap()["token"].0.clone()).unwrap()
}

/// The attack: a tenant reads the id of an account another invitation's link registered, by
/// writing `phase: Accepted` into its own issued invitation's status, or through an issued
/// invitation suspended (its namespace taken out) while the administrators' link was used. An
/// invitation names only the account its own link registered.
#[tokio::test]
async fn an_invitation_names_only_the_account_its_own_link_registered() {
    let (w, t) = tenant_world("ivt-own", json!({ "domainClient": SITE })).await;
    let admitted =
        |namespaces: Vec<String>| json!({ "domainClient": SITE, "allowedNamespaces": namespaces });
    for (name, email) in [
        ("forged", "forged@example.com"),
        ("parked", "parked@example.com"),
    ] {
        w.apply_in(&t, "UserInvite", name, invite_of(&w, email))
            .await;
        ready_in(&w, &t, "userinvites", name, "True", "Pending").await;
    }
    let forged = json!({ "status": { "phase": "Accepted" } });
    dynamic(&w.client, &t, "UserInvite")
        .patch_status("forged", &PatchParams::default(), &Patch::Merge(&forged))
        .await
        .unwrap();
    ready_in(&w, &t, "userinvites", "forged", "True", "Accepted").await;
    w.apply_instance_of_stores("lc", admitted(vec![])).await;
    ready_in(
        &w,
        &t,
        "userinvites",
        "parked",
        "False",
        "NamespaceNotAllowed",
    )
    .await;
    assert_eq!(tokens_for(&w, "parked@example.com").await, 0, "suspended");

    // The administrators invite both; each registers through their link.
    for email in ["forged@example.com", "parked@example.com"] {
        let door = json!({ "instanceRef": { "name": "lc" }, "email": email });
        w.apply("UserInvite", "door", door).await;
        w.wait_condition("userinvites", "door", "Ready", "True", Some("Pending"))
            .await;
        let id = register_through_link(&w, (&w.ns, "door-invite"), email).await;
        let obj = w
            .wait_condition("userinvites", "door", "Ready", "True", Some("Accepted"))
            .await;
        let shown = obj.pointer("/status/userId");
        assert_eq!(shown, Some(&json!(id.to_hex())), "their own link's account");
        w.delete("UserInvite", "door").await;
        w.wait_gone("userinvites", "door").await;
    }

    w.apply_instance_of_stores("lc", admitted(vec![t.clone()]))
        .await;
    ready_in(&w, &t, "userinvites", "parked", "True", "Accepted").await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    for name in ["forged", "parked"] {
        let obj = get_in(&w.client, &t, "UserInvite", name).await.unwrap();
        assert!(
            obj.pointer("/status/userId").is_none(),
            "{name}: an account another link registered was named: {obj}"
        );
    }
    // An id written into the status (or shown by an earlier build) goes too.
    let written = json!({ "status": { "userId": "6b16820d4141f5c342db79bd" } });
    dynamic(&w.client, &t, "UserInvite")
        .patch_status("forged", &PatchParams::default(), &Patch::Merge(&written))
        .await
        .unwrap();
    eventually("the written userId to be taken out", || async {
        let obj = get_in(&w.client, &t, "UserInvite", "forged").await?;
        obj.pointer("/status/userId").is_none().then_some(())
    })
    .await;
}
