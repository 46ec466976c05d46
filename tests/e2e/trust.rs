//! The security model (README), one test per rule, each written as the attack or the fault it
//! prevents: tenants reaching accounts they do not own, forged status, LibreChat's own bans,
//! self-deletion to escape a ban, crashes between a write and its follow-up, a stalled
//! MongoDB, orphaned bans and invites, credentials in an unparsable URI.

use std::time::Duration;

use kube::api::{Patch, PatchParams};
use mongodb::bson::{doc, oid::ObjectId, Document};
use redis::AsyncCommands;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::support::*;
use crate::user::{foreign_user, PASSWORD};

/// A world whose instance `lc` (in `w.ns`, which administers it) admits a tenant namespace,
/// with the operator watching both; returns the world and the tenant's namespace.
pub(crate) async fn tenant_world(label: &str, extra_spec: Value) -> (World, String) {
    let mut w = World::new(label).await;
    let tenant = format!("{}-t", w.ns);
    create_namespace(&w.client, &tenant).await;
    w.start_operator_in(Some(&format!("{},{tenant}", w.ns)));
    let mut spec = json!({ "allowedNamespaces": [tenant.clone()] });
    merge(&mut spec, extra_spec);
    w.ready_instance("lc", spec).await;
    (w, tenant)
}

/// The reference to the instance, from any namespace.
pub(crate) fn lc(w: &World) -> Value {
    json!({ "name": "lc", "namespace": w.ns.clone() })
}

/// The tenant `t` invites `email` as `name`; returns what its refusal (`NotPermitted`) says.
pub(crate) async fn tenant_invite_refused(w: &World, t: &str, name: &str, email: &str) -> String {
    let invite = json!({ "instanceRef": lc(w), "email": email });
    w.apply_in(t, "UserInvite", name, invite).await;
    ready_in(w, t, "userinvites", name, "False", "NotPermitted").await
}

/// The tenant `t`'s LibreChatUser `name` for `email`, its account's LibreChat counter of
/// `kind` violations set to `count`; returns the account and the counter's Redis key.
async fn tenant_account_with_violations(
    w: &World,
    t: &str,
    (name, email): (&str, &str),
    (kind, count): (&str, i64),
) -> (ObjectId, String) {
    let spec = json!({ "instanceRef": lc(w), "email": email });
    w.apply_in(t, "LibreChatUser", name, spec).await;
    let id = status_user_id(w, t, name).await;
    let counter = format!("violations:{kind}:{kind}:{}", id.to_hex());
    let _: () = redis().await.set(&counter, count).await.unwrap();
    (id, counter)
}

/// The tenant `t` bans its LibreChatUser `user` (as `ban`), then lifts the ban.
async fn tenant_bans_and_lifts(w: &World, t: &str, ban: &str, user: &str) {
    let by_ref = json!({ "instanceRef": lc(w), "userRef": { "name": user } });
    w.apply_in(t, "UserBan", ban, by_ref).await;
    ready_in(w, t, "userbans", ban, "True", "Banned").await;
    delete_in(&w.client, t, "UserBan", ban).await;
    wait_gone_in(w, t, "userbans", ban).await;
}

/// A LibreChatUser `name` in the instance's namespace declaring `email`, with no account
/// behind it yet (its password Secret is missing).
async fn declared_without_account(w: &World, name: &str, email: &str) {
    w.apply(
        "LibreChatUser",
        name,
        crate::user::local_user(email, "not-yet"),
    )
    .await;
    w.wait_condition(
        "librechatusers",
        name,
        "Ready",
        "False",
        Some("SecretNotFound"),
    )
    .await;
}

/// Waits for `Ready` of `ns/name` to have `status` and `reason`; returns its message.
pub(crate) async fn ready_in(
    w: &World,
    ns: &str,
    plural: &str,
    name: &str,
    status: &str,
    reason: &str,
) -> String {
    let obj = wait_condition_in(&w.client, ns, plural, name, "Ready", status, Some(reason)).await;
    condition(&obj, "Ready").unwrap().message
}

/// Deletes the instance `lc` and returns what its `Ready` says while dependents hold it.
pub(crate) async fn delete_instance_held_by_dependents(w: &World) -> String {
    w.delete("LibreChatInstance", "lc").await;
    ready_in(
        w,
        &w.ns,
        "librechatinstances",
        "lc",
        "False",
        "DependentsRemain",
    )
    .await
}

pub(crate) async fn wait_gone_in(w: &World, ns: &str, plural: &str, name: &str) {
    eventually(
        &format!("{plural}/{name} in {ns} to be deleted"),
        || async {
            get_in(&w.client, ns, plural, name)
                .await
                .is_none()
                .then_some(())
        },
    )
    .await;
}

async fn user_doc(w: &World, id: ObjectId) -> Option<Document> {
    w.users().find_one(doc! { "_id": id }).await.unwrap()
}

async fn status_user_id(w: &World, ns: &str, name: &str) -> ObjectId {
    let obj = wait_condition_in(&w.client, ns, "librechatusers", name, "Ready", "True", None).await;
    ObjectId::parse_str(
        obj.pointer("/status/userId")
            .and_then(Value::as_str)
            .unwrap(),
    )
    .unwrap()
}

/// A tenant's (`ns`) account `email` (an SSO account, no password), Ready, and an agent it
/// made in LibreChat (its OWNER entry); the account's and the agent's ids.
async fn account_with_agent(w: &World, ns: &str, name: &str, email: &str) -> (ObjectId, ObjectId) {
    let spec = json!({ "instanceRef": lc(w), "email": email, "provider": "openid" });
    w.apply_in(ns, "LibreChatUser", name, spec).await;
    let account = status_user_id(w, ns, name).await;
    let agent = crate::access::seed_resource(w, "agents", "agent", account).await;
    (account, agent)
}

/// The instance `lc` (with `manageRoles`) limits the tenant `t` to `team.example.com`.
async fn limit_to_team_domain(w: &World, t: &str) {
    w.apply_instance_of_stores(
        "lc",
        json!({ "allowedNamespaces": [t],
                "tenantPolicy": { "manageRoles": true,
                                  "emailDomains": { t: ["team.example.com"] } } }),
    )
    .await;
}

/// An ADMIN account `boss@example.com` declared from the instance's namespace, Ready; its id.
async fn declared_admin(w: &World) -> ObjectId {
    w.apply(
        "LibreChatUser",
        "boss",
        json!({ "instanceRef": { "name": "lc" }, "email": "boss@example.com", "role": "ADMIN" }),
    )
    .await;
    status_user_id(w, &w.ns.clone(), "boss").await
}

async fn owner_record(w: &World, email: &str) -> Option<Document> {
    w.db.collection::<Document>("librechat_operator_owners")
        .find_one(doc! { "_id": email })
        .await
        .unwrap()
}

async fn log_doc(w: &World, key: &str) -> Option<Document> {
    w.db.collection::<Document>("logs")
        .find_one(doc! { "key": key })
        .await
        .unwrap()
}

/// A LibreChat session of `user`, valid for a day, its refresh token hash `hash` repeated.
async fn open_session(w: &World, user: ObjectId, hash: &str) {
    let later = mongodb::bson::DateTime::from_millis(
        mongodb::bson::DateTime::now().timestamp_millis() + 86_400_000,
    );
    w.db.collection::<Document>("sessions")
        .insert_one(doc! { "refreshTokenHash": hash.repeat(64), "expiration": later, "user": user, "__v": 0 })
        .await
        .unwrap();
}

async fn count(w: &World, collection: &str, filter: Document) -> u64 {
    w.db.collection::<Document>(collection)
        .count_documents(filter)
        .await
        .unwrap()
}

/// Whether a `BANS:` document makes LibreChat's checkBan refuse now.
fn in_force(d: &Document) -> bool {
    let Ok(envelope) = serde_json::from_str::<Value>(d.get_str("value").unwrap_or("")) else {
        return false;
    };
    let now = jiff::Timestamp::now().as_millisecond();
    let ends = [
        envelope.get("expires").and_then(Value::as_i64),
        envelope["value"].get("expiresAt").and_then(Value::as_i64),
    ];
    envelope.get("value").is_some_and(Value::is_object)
        && ends.iter().all(|end| end.is_none_or(|e| e > now))
}

/// A ban LibreChat wrote itself (a violation ban, no operator marker), ending at `end`.
fn native_ban(end: i64) -> String {
    format!(
        r#"{{"value":{{"type":"message_limit","violation_count":20,"duration":3600000,"expiresAt":{end}}},"expires":{end}}}"#
    )
}

async fn insert_native_ban(w: &World, key: &str, end: i64) -> String {
    let value = native_ban(end);
    w.db.collection::<Document>("logs")
        .insert_one(doc! { "key": key, "value": &value, "expiresAt": mongodb::bson::DateTime::from_millis(end) })
        .await
        .unwrap();
    value
}

/// LibreChat's first user, an ADMIN with a real password.
fn admin_account(id: ObjectId, email: &str) -> Document {
    let mut d = foreign_user(id, email);
    d.insert("role", "ADMIN");
    d.insert(
        "password",
        bcrypt::hash("The-Admins-Own-Password-7", 4).unwrap(),
    );
    d
}

#[tokio::test]
async fn a_tenant_cannot_adopt_the_admin_account() {
    let (w, t) = tenant_world("tr-admin", json!({})).await;
    let id = ObjectId::new();
    w.users()
        .insert_one(admin_account(id, "root@example.com"))
        .await
        .unwrap();
    let before = user_doc(&w, id).await.unwrap();
    put_secret(&w.client, &t, "pw", &[("password", PASSWORD)]).await;
    w.apply_in(
        &t,
        "LibreChatUser",
        "grab",
        json!({ "instanceRef": lc(&w), "email": "root@example.com", "adopt": true, "deletionPolicy": "Delete",
                "password": { "secretRef": { "name": "pw", "key": "password" } } }),
    )
    .await;
    ready_in(&w, &t, "librechatusers", "grab", "False", "NotPermitted").await;
    let after = user_doc(&w, id).await.unwrap();
    assert_eq!(after.get_str("role").unwrap(), "ADMIN");
    assert!(
        after.get_str("password") == before.get_str("password"),
        "the admin's password hash must not change"
    );
    assert!(
        after == before,
        "the admin account must not be written at all"
    );
    assert!(
        owner_record(&w, "root@example.com")
            .await
            .is_none_or(|r| r.get_str("namespace").ok() != Some(t.as_str())),
        "no ownership record may name the tenant"
    );

    delete_in(&w.client, &t, "LibreChatUser", "grab").await;
    wait_gone_in(&w, &t, "librechatusers", "grab").await;
    assert!(
        user_doc(&w, id).await == Some(before),
        "deleting the tenant's object must leave the admin account as it was"
    );
}

#[tokio::test]
async fn a_password_never_lands_on_an_sso_account_unless_the_instance_namespace_converts_it() {
    let (w, t) = tenant_world("tr-sso", json!({})).await;
    let id = ObjectId::new();
    let mut sso = foreign_user(id, "sso@example.com");
    sso.remove("password");
    sso.insert("provider", "openid");
    sso.insert("openidId", "subject-1");
    w.users().insert_one(sso).await.unwrap();
    let before = user_doc(&w, id).await.unwrap();
    w.secret("pw", &[("password", PASSWORD)]).await;
    put_secret(&w.client, &t, "pw", &[("password", PASSWORD)]).await;
    let spec = json!({ "instanceRef": lc(&w), "email": "sso@example.com", "adopt": true,
                       "password": { "secretRef": { "name": "pw", "key": "password" } } });

    // From a tenant.
    w.apply_in(&t, "LibreChatUser", "sso", spec.clone()).await;
    ready_in(&w, &t, "librechatusers", "sso", "False", "NotPermitted").await;
    let after = user_doc(&w, id).await.unwrap();
    assert!(
        !after.contains_key("password"),
        "no password may be written"
    );
    assert_eq!(after.get_str("provider").unwrap(), "openid");
    assert!(after == before, "the SSO account must not be written");
    delete_in(&w.client, &t, "LibreChatUser", "sso").await;
    wait_gone_in(&w, &t, "librechatusers", "sso").await;

    // From the instance's own namespace, without declaring the conversion.
    w.apply("LibreChatUser", "sso", spec.clone()).await;
    ready_in(&w, &w.ns, "librechatusers", "sso", "False", "NotPermitted").await;
    let after = user_doc(&w, id).await.unwrap();
    assert!(
        !after.contains_key("password"),
        "no password may be written"
    );
    assert_eq!(after.get_str("provider").unwrap(), "openid");

    // Converting, explicitly, from the instance's namespace.
    let mut convert = spec;
    convert["provider"] = json!("local");
    w.apply("LibreChatUser", "sso", convert).await;
    assert_eq!(status_user_id(&w, &w.ns.clone(), "sso").await, id);
    let after = user_doc(&w, id).await.unwrap();
    assert_eq!(after.get_str("provider").unwrap(), "local");
    assert!(
        bcrypt::verify(PASSWORD, after.get_str("password").unwrap()).unwrap(),
        "the declared password is written on conversion"
    );
}

/// The attack: a tenant pre-provisions `openid` for someone's email, the person's first OpenID
/// login links to it (LibreChat's email fallback), then the tenant switches the account to
/// `local` and sets a password of its own. And the other way round: a local account with the
/// tenant's password switched to `openid`, which keeps the password that still logs in.
#[tokio::test]
async fn a_tenant_cannot_switch_the_sign_in_of_an_account_it_created() {
    let (w, t) = tenant_world("tr-provider", json!({})).await;
    put_secret(&w.client, &t, "pw", &[("password", PASSWORD)]).await;
    let sso = json!({ "instanceRef": lc(&w), "email": "victim@example.com", "provider": "openid" });
    w.apply_in(&t, "LibreChatUser", "trap", sso.clone()).await;
    let id = status_user_id(&w, &t, "trap").await;
    // The person's first OpenID login: LibreChat's migration sets the subject and issuer.
    w.users()
        .update_one(
            doc! { "_id": id },
            doc! { "$set": { "openidId": "victim-subject", "openidIssuer": "https://idp.example.com" } },
        )
        .await
        .unwrap();
    let linked = user_doc(&w, id).await.unwrap();

    let mut to_local = sso.clone();
    to_local["provider"] = json!("local");
    w.apply_in(&t, "LibreChatUser", "trap", to_local.clone())
        .await;
    let told = ready_in(&w, &t, "librechatusers", "trap", "False", "NotPermitted").await;
    assert!(
        !told.contains("openid"),
        "a tenant is not told the provider: {told}"
    );
    assert!(
        user_doc(&w, id).await.as_ref() == Some(&linked),
        "switching the linked SSO account to local must write nothing"
    );
    to_local["password"] = json!({ "secretRef": { "name": "pw", "key": "password" } });
    w.apply_in(&t, "LibreChatUser", "trap", to_local).await;
    ready_in(&w, &t, "librechatusers", "trap", "False", "NotPermitted").await;
    let after = user_doc(&w, id).await.unwrap();
    assert!(
        !after.contains_key("password"),
        "no password may be written"
    );
    assert!(
        after == linked,
        "the linked SSO account must not be written"
    );

    // A local account the tenant knows the password of, moved onto the identity provider.
    let local = json!({ "instanceRef": lc(&w), "email": "bait@example.com",
                        "password": { "secretRef": { "name": "pw", "key": "password" } } });
    w.apply_in(&t, "LibreChatUser", "bait", local.clone()).await;
    let bait = status_user_id(&w, &t, "bait").await;
    let before = user_doc(&w, bait).await.unwrap();
    let mut to_sso = local;
    to_sso.as_object_mut().unwrap().remove("password");
    to_sso["provider"] = json!("openid");
    w.apply_in(&t, "LibreChatUser", "bait", to_sso.clone())
        .await;
    ready_in(&w, &t, "librechatusers", "bait", "False", "NotPermitted").await;
    let after = user_doc(&w, bait).await.unwrap();
    assert_eq!(after.get_str("provider").unwrap(), "local");
    assert!(
        after == before,
        "the local account must not be moved onto the identity provider"
    );

    // The instance's own namespace may still change how an account it manages signs in.
    w.apply(
        "LibreChatUser",
        "own",
        json!({ "instanceRef": { "name": "lc" }, "email": "own@example.com",
                                            "provider": "openid" }),
    )
    .await;
    let own = status_user_id(&w, &w.ns.clone(), "own").await;
    w.apply(
        "LibreChatUser",
        "own",
        json!({ "instanceRef": { "name": "lc" }, "email": "own@example.com",
                                            "provider": "google" }),
    )
    .await;
    eventually("the instance namespace's provider change", || async {
        (user_doc(&w, own).await?.get_str("provider").ok() == Some("google")).then_some(())
    })
    .await;

    // And moving a local account onto an identity provider takes its password and sessions
    // with it: LibreChat's local login checks no provider, so a left password would still work.
    w.secret("pw", &[("password", PASSWORD)]).await;
    let with_password = json!({ "instanceRef": { "name": "lc" }, "email": "mover@example.com",
                                "password": { "secretRef": { "name": "pw", "key": "password" } } });
    w.apply("LibreChatUser", "mover", with_password).await;
    let mover = status_user_id(&w, &w.ns.clone(), "mover").await;
    assert!(user_doc(&w, mover).await.unwrap().contains_key("password"));
    open_session(&w, mover, "c").await;
    w.apply(
        "LibreChatUser",
        "mover",
        json!({ "instanceRef": { "name": "lc" }, "email": "mover@example.com",
                                              "provider": "openid" }),
    )
    .await;
    let moved = eventually("the account moved onto openid", || async {
        let d = user_doc(&w, mover).await?;
        (d.get_str("provider").ok() == Some("openid")).then_some(d)
    })
    .await;
    assert!(
        !moved.contains_key("password"),
        "the password goes with the move to SSO"
    );
    // LibreChat's own code finds it as an SSO account with no password to log in with.
    w.contract_check(
        json!({ "users": [ { "email": "mover@example.com", "password": null,
                                          "provider": "openid", "emailVerified": true } ] }),
    );
    eventually("its sessions to be revoked", || async {
        (count(&w, "sessions", doc! { "user": mover }).await == 0).then_some(())
    })
    .await;
}

/// LibreChat deletes an unverified account at its `expiresAt` (a TTL). A tenant that adopts
/// one (registered by someone with a colleague's address, say) without managing adopted
/// accounts must not make it permanent; the instance's namespace, declaring it, may.
#[tokio::test]
async fn adopting_an_unverified_account_leaves_its_expiry_to_librechat() {
    let (w, t) = tenant_world("tr-expiry", json!({})).await;
    let in_a_week = mongodb::bson::DateTime::from_millis(
        mongodb::bson::DateTime::now().timestamp_millis() + 7 * 86_400_000,
    );
    let mut ids = Vec::new();
    for (ns, email) in [
        (t.clone(), "squat@example.com"),
        (w.ns.clone(), "kept@example.com"),
    ] {
        let id = ObjectId::new();
        let mut account = foreign_user(id, email);
        account.insert("emailVerified", false);
        account.insert("expiresAt", in_a_week);
        w.users().insert_one(account).await.unwrap();
        // A name differs from the stored one: a write, which must not take the expiry along.
        let spec = json!({ "instanceRef": lc(&w), "email": email, "adopt": true,
                           "name": "Declared Name" });
        w.apply_in(&ns, "LibreChatUser", "adopted", spec).await;
        ready_in(&w, &ns, "librechatusers", "adopted", "True", "Reconciled").await;
        ids.push(id);
    }
    let expiry = |d: Document| d.get_datetime("expiresAt").ok().copied();
    let squat = user_doc(&w, ids[0]).await.unwrap();
    assert_eq!(squat.get_str("name").unwrap(), "Declared Name");
    assert_eq!(expiry(squat), Some(in_a_week));
    assert_eq!(expiry(user_doc(&w, ids[1]).await.unwrap()), None);

    // The attack: `adopt` dropped from the spec once the claim is held, with another write
    // (a name) for the expiry to go along with. The account is still one the tenant only
    // adopted: the ownership record, not the spec, says so.
    let spec = json!({ "instanceRef": lc(&w), "email": "squat@example.com",
                       "name": "Second Name" });
    w.apply_in(&t, "LibreChatUser", "adopted", spec).await;
    let squat = eventually("the second name to be written", || async {
        let d = user_doc(&w, ids[0]).await?;
        (d.get_str("name").ok()? == "Second Name").then_some(d)
    })
    .await;
    assert_eq!(
        expiry(squat),
        Some(in_a_week),
        "a tenant made an adopted registration permanent by dropping `adopt`"
    );
}

#[tokio::test]
async fn a_tenant_may_adopt_an_unprivileged_account_but_not_take_it_over() {
    // EDITOR is a role tenants may assign, so what refuses below is the adoption alone.
    let (w, t) = tenant_world(
        "tr-adopt",
        json!({ "tenantPolicy": { "assignableRoles": ["EDITOR"] } }),
    )
    .await;
    let id = ObjectId::new();
    w.users()
        .insert_one(foreign_user(id, "plain@example.com"))
        .await
        .unwrap();
    put_secret(&w.client, &t, "pw", &[("password", PASSWORD)]).await;
    let base = json!({ "instanceRef": lc(&w), "email": "plain@example.com", "adopt": true,
                       "name": "Adopted Name", "deletionPolicy": "Delete" });

    // Adopting to keep the name as declared: allowed.
    w.apply_in(&t, "LibreChatUser", "mine", base.clone()).await;
    assert_eq!(status_user_id(&w, &t, "mine").await, id);
    let adopted = user_doc(&w, id).await.unwrap();
    assert_eq!(adopted.get_str("name").unwrap(), "Adopted Name");
    assert_eq!(adopted.get_str("role").unwrap(), "USER");

    // Changing its role or its password: refused, nothing written.
    let mut role = base.clone();
    role["role"] = json!("EDITOR");
    w.apply_in(&t, "LibreChatUser", "mine", role).await;
    ready_in(&w, &t, "librechatusers", "mine", "False", "NotPermitted").await;
    assert!(
        user_doc(&w, id).await.as_ref() == Some(&adopted),
        "a refused role change must write nothing"
    );
    let mut password = base.clone();
    password["password"] = json!({ "secretRef": { "name": "pw", "key": "password" } });
    w.apply_in(&t, "LibreChatUser", "mine", password).await;
    ready_in(&w, &t, "librechatusers", "mine", "False", "NotPermitted").await;
    assert!(
        user_doc(&w, id).await.as_ref() == Some(&adopted),
        "a refused password must write nothing"
    );

    // Deleting with deletionPolicy: Delete releases the adopted account instead.
    w.apply_in(&t, "LibreChatUser", "mine", base.clone()).await;
    ready_in(&w, &t, "librechatusers", "mine", "True", "Reconciled").await;
    delete_in(&w.client, &t, "LibreChatUser", "mine").await;
    wait_gone_in(&w, &t, "librechatusers", "mine").await;
    assert!(
        user_doc(&w, id).await.is_some(),
        "a tenant may not delete an account it adopted"
    );
    eventually("a NotDeleted event", || async {
        event_reasons_in(&w.client, &t, "mine")
            .await
            .iter()
            .any(|r| r == "NotDeleted")
            .then_some(())
    })
    .await;
    assert!(owner_record(&w, "plain@example.com").await.is_none());

    // The instance lets tenants manage what they adopt: the role change is applied.
    w.apply_instance(
        "lc",
        &env("REDIS_URL"),
        json!({ "allowedNamespaces": [t.clone()],
                "tenantPolicy": { "manageAdoptedAccounts": true, "assignableRoles": ["EDITOR"] } }),
    )
    .await;
    w.wait_condition("librechatinstances", "lc", "Ready", "True", None)
        .await;
    let mut role = base;
    role["role"] = json!("EDITOR");
    w.apply_in(&t, "LibreChatUser", "again", role).await;
    assert_eq!(status_user_id(&w, &t, "again").await, id);
    assert_eq!(
        user_doc(&w, id).await.unwrap().get_str("role").unwrap(),
        "EDITOR"
    );
}

/// The attack: a tenant pre-provisions the SSO account of a person of another team (or adopts
/// it, or invites the address) before that person first signs in, and then manages, bans or
/// deletes it. With `tenantPolicy.emailDomains` a tenant declares only its own domains.
#[tokio::test]
async fn a_tenant_cannot_claim_an_email_outside_its_domains() {
    let (w, t) = tenant_world(
        "tr-domains",
        json!({ "domainClient": "https://chat.example.com",
                "tenantPolicy": { "emailDomains": { "*": ["Team.example.com"] } } }),
    )
    .await;
    let sso = |email: &str| json!({ "instanceRef": lc(&w), "email": email, "provider": "openid" });
    w.apply_in(&t, "LibreChatUser", "ceo", sso("CEO@corp.example.com"))
        .await;
    w.apply_in(
        &t,
        "UserInvite",
        "board",
        json!({ "instanceRef": lc(&w), "email": "board@corp.example.com" }),
    )
    .await;
    let old = ObjectId::new();
    w.users()
        .insert_one(foreign_user(old, "old@corp.example.com"))
        .await
        .unwrap();
    let mut adopt = sso("old@corp.example.com");
    adopt["adopt"] = json!(true);
    adopt["name"] = json!("Taken Over");
    w.apply_in(&t, "LibreChatUser", "old", adopt).await;
    // A group passing for another team's list address in LibreChat's people picker.
    let finance =
        json!({ "instanceRef": lc(&w), "name": "Finance", "email": "finance@corp.example.com" });
    w.apply_in(&t, "LibreChatGroup", "finance", finance).await;
    // Nor by an address that only ends in one of its domains.
    let payroll = json!({ "instanceRef": lc(&w), "name": "Payroll",
        "email": "payroll@corp.example.com (list)@team.example.com" });
    w.apply_in(&t, "LibreChatGroup", "payroll", payroll).await;
    ready_in(&w, &t, "librechatgroups", "payroll", "False", "InvalidSpec").await;

    for (plural, name) in [
        ("librechatusers", "ceo"),
        ("userinvites", "board"),
        ("librechatusers", "old"),
        ("librechatgroups", "finance"),
    ] {
        let told = ready_in(&w, &t, plural, name, "False", "NotPermitted").await;
        assert!(
            told.contains("(team.example.com)") && !told.contains("exists"),
            "the refusal says the tenant's own domains and nothing of the account: {told}"
        );
    }
    // A domain of its own is fine, and nothing was written for the others.
    w.apply_in(&t, "LibreChatUser", "dev", sso("dev@team.example.com"))
        .await;
    ready_in(&w, &t, "librechatusers", "dev", "True", "Reconciled").await;
    assert!(w.find_user("ceo@corp.example.com").await.is_none());
    assert!(owner_record(&w, "ceo@corp.example.com").await.is_none());
    assert!(owner_record(&w, "old@corp.example.com").await.is_none());
    assert_eq!(count(&w, "groups", doc! { "name": "Finance" }).await, 0);
    assert_ne!(
        user_doc(&w, old).await.unwrap().get_str("name").unwrap(),
        "Taken Over"
    );
    assert_eq!(
        count(&w, "tokens", doc! { "email": "board@corp.example.com" }).await,
        0
    );

    // The instance's own namespace is not limited: the email the tenant was refused is free.
    w.apply("LibreChatUser", "ceo", json!({ "instanceRef": { "name": "lc" }, "email": "ceo@corp.example.com", "provider": "openid" }))
        .await;
    w.wait_condition("librechatusers", "ceo", "Ready", "True", None)
        .await;
    assert_eq!(
        owner_record(&w, "ceo@corp.example.com")
            .await
            .unwrap()
            .get_str("namespace")
            .unwrap(),
        w.ns
    );
}

/// A rule added later reaches what the tenant claimed before it: an account whose email the
/// instance's emailDomains no longer admits for the tenant is out of its hands. Its bans of it
/// are lifted, its group leaves it out, and deleting the object releases the account rather
/// than deleting it (the account may be the real person's by now).
#[tokio::test]
async fn an_email_rule_added_later_takes_the_account_out_of_the_tenants_hands() {
    let (w, t) = tenant_world("tr-domains-later", json!({})).await;
    let email = "alice@corp.example.com";
    w.apply_in(
        &t,
        "LibreChatUser",
        "alice",
        json!({ "instanceRef": lc(&w), "email": email, "provider": "openid",
                "deletionPolicy": "Delete" }),
    )
    .await;
    let id = status_user_id(&w, &t, "alice").await;
    let by_ref = json!({ "instanceRef": lc(&w), "userRef": { "name": "alice" } });
    let by_email = json!({ "instanceRef": lc(&w), "email": email });
    w.apply_in(&t, "UserBan", "by-ref", by_ref).await;
    w.apply_in(&t, "UserBan", "by-email", by_email).await;
    let crew = json!({ "instanceRef": lc(&w), "name": "Crew",
                       "members": [{ "userRef": { "name": "alice" } }] });
    w.apply_in(&t, "LibreChatGroup", "crew", crew).await;
    ready_in(&w, &t, "userbans", "by-ref", "True", "Banned").await;
    ready_in(&w, &t, "userbans", "by-email", "True", "Banned").await;
    wait_condition_in(
        &w.client,
        &t,
        "librechatgroups",
        "crew",
        "Ready",
        "True",
        None,
    )
    .await;
    let key = format!("BANS:{}", id.to_hex());
    assert!(log_doc(&w, &key).await.is_some_and(|d| in_force(&d)));
    let crew_members = || async {
        w.db.collection::<Document>("groups")
            .find_one(doc! { "name": "Crew" })
            .await
            .unwrap()
            .unwrap()
            .get_array("memberIds")
            .unwrap()
            .iter()
            .filter_map(|m| m.as_str().map(str::to_string))
            .collect::<Vec<_>>()
    };
    assert_eq!(crew_members().await, vec![id.to_hex()]);

    // The administrators limit the tenant to its own domain.
    w.apply_instance_of_stores(
        "lc",
        json!({ "allowedNamespaces": [t.clone()],
                "tenantPolicy": { "emailDomains": { t.clone(): ["team.example.com"] } } }),
    )
    .await;
    for (plural, name) in [
        ("userbans", "by-ref"),
        ("userbans", "by-email"),
        ("librechatgroups", "crew"),
        ("librechatusers", "alice"),
    ] {
        let told = ready_in(&w, &t, plural, name, "False", "NotPermitted").await;
        assert!(
            told.contains("(team.example.com)"),
            "{plural}/{name}: {told}"
        );
    }
    eventually("the tenant's bans of the account to be lifted", || async {
        log_doc(&w, &key)
            .await
            .is_none_or(|d| !in_force(&d))
            .then_some(())
    })
    .await;
    assert!(
        crew_members().await.is_empty(),
        "the membership given before the rule is taken back"
    );

    // Deleting the object lets go of the account; it stays.
    delete_in(&w.client, &t, "LibreChatUser", "alice").await;
    wait_gone_in(&w, &t, "librechatusers", "alice").await;
    assert!(w.find_user(email).await.is_some());
    assert!(owner_record(&w, email).await.is_none());
}

/// The attack: a tenant shares the agents of accounts it manages with its group and its role,
/// then freezes both with specs the operator refuses (a member it may not name, an unknown
/// permission), hoping a refusal keeps everything as it was. The accounts then leave its
/// hands (an emailDomains rule; a promotion to ADMIN in LibreChat, which no event announces):
/// the shares and the membership must end all the same.
#[tokio::test]
async fn a_tenants_shares_end_when_the_sharing_account_leaves_its_hands() {
    let policy = json!({ "tenantPolicy": { "manageRoles": true } });
    let (w, t) = tenant_world("tr-share-lost", policy).await;
    let mut agents = Vec::new();
    for (name, email) in [
        ("owner", "owner@corp.example.com"),
        ("lead", "lead@team.example.com"),
    ] {
        let spec = json!({ "instanceRef": lc(&w), "email": email, "provider": "openid" });
        w.apply_in(&t, "LibreChatUser", name, spec).await;
        let id = status_user_id(&w, &t, name).await;
        agents.push((
            id,
            crate::access::seed_resource(&w, "agents", "agent", id).await,
        ));
    }
    let [(_, owners), (lead, leads)] = [agents[0], agents[1]];
    let grant = |agent: ObjectId| json!({ "resourceType": "agent", "resourceId": agent.to_hex(), "access": "viewer" });
    let crew = json!({ "instanceRef": lc(&w), "name": "Crew", "members": [{ "userRef": { "name": "lead" } }],
                       "grants": [grant(owners), grant(leads)] });
    let role = json!({ "instanceRef": lc(&w), "name": "CREW_ROLE", "grants": [grant(owners)] });
    w.apply_in(&t, "LibreChatGroup", "crew", crew.clone()).await;
    w.apply_in(&t, "LibreChatRole", "crew-role", role.clone())
        .await;
    ready_in(&w, &t, "librechatgroups", "crew", "True", "Reconciled").await;
    ready_in(&w, &t, "librechatroles", "crew-role", "True", "Reconciled").await;
    let shares = |agent: ObjectId| count(&w, "aclentries", doc! { "resourceId": agent });
    let members = || async {
        let group =
            w.db.collection::<Document>("groups")
                .find_one(doc! { "name": "Crew" })
                .await;
        let ids = group
            .unwrap()
            .unwrap()
            .get_array("memberIds")
            .unwrap()
            .clone();
        ids.iter()
            .filter_map(|m| m.as_str().map(str::to_string))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        shares(owners).await,
        3,
        "the owner's entry, the group's and the role's"
    );
    assert_eq!(shares(leads).await, 2);
    assert_eq!(members().await, vec![lead.to_hex()]);

    // Both frozen: refused, nothing new written, nothing given taken back yet.
    let mut frozen = crew.clone();
    frozen["members"] =
        json!([{ "userRef": { "name": "lead" } }, { "email": "stranger@example.com" }]);
    w.apply_in(&t, "LibreChatGroup", "crew", frozen).await;
    let mut invalid = role;
    invalid["permissions"] = json!({ "NO_SUCH_TYPE": { "USE": true } });
    w.apply_in(&t, "LibreChatRole", "crew-role", invalid).await;
    ready_in(&w, &t, "librechatgroups", "crew", "False", "NotPermitted").await;
    ready_in(
        &w,
        &t,
        "librechatroles",
        "crew-role",
        "False",
        "InvalidSpec",
    )
    .await;
    assert_eq!((shares(owners).await, shares(leads).await), (3, 2));

    // The administrators limit the tenant to its team's domain: the owner leaves its hands.
    limit_to_team_domain(&w, &t).await;
    eventually("the owner's shares to be taken back", || async {
        (shares(owners).await == 1).then_some(())
    })
    .await;
    let left =
        w.db.collection::<Document>("aclentries")
            .find_one(doc! { "resourceId": owners })
            .await;
    assert_eq!(
        left.unwrap().unwrap().get_object_id("principalId").unwrap(),
        agents[0].0
    );
    assert_eq!(shares(leads).await, 2, "the lead is still the tenant's");

    // LibreChat's admins promote the lead: the frozen group lets it and its agent go.
    w.users()
        .update_one(doc! { "_id": lead }, doc! { "$set": { "role": "ADMIN" } })
        .await
        .unwrap();
    eventually(
        "the lead's share and membership to be taken back",
        || async { (shares(leads).await == 1 && members().await.is_empty()).then_some(()) },
    )
    .await;

    // Unfrozen, the group is refused (it may not give those grants), and gives nothing again.
    w.apply_in(&t, "LibreChatGroup", "crew", crew).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    ready_in(&w, &t, "librechatgroups", "crew", "False", "NotPermitted").await;
    assert_eq!((shares(owners).await, shares(leads).await), (1, 1));
    assert!(members().await.is_empty());
    // As LibreChat's own permission lookups read it: neither principal reaches the agents.
    let group_id =
        w.db.collection::<Document>("groups")
            .find_one(doc! { "name": "Crew" })
            .await;
    let group_id = group_id
        .unwrap()
        .unwrap()
        .get_object_id("_id")
        .unwrap()
        .to_hex();
    let gone = |principal_type: &str, principal: &str, agent: ObjectId| {
        json!({ "principalType": principal_type, "principalId": principal, "resourceType": "agent",
                "resourceId": agent.to_hex(), "permBits": 1, "expectFound": false })
    };
    w.contract_check(json!({
        "aclEntries": [gone("group", &group_id, owners), gone("group", &group_id, leads),
                       gone("role", "CREW_ROLE", owners)],
        "principals": [{ "userId": lead.to_hex(), "notGroups": [group_id] }],
    }));
}

/// The attack: the tenant writes another instance into the status of its group, role and ban
/// (`status.instance`, which guards `instanceRef`'s immutability where the API server has no
/// CEL rules), so that each is refused as moved and its take-backs never run; then its
/// sharing account leaves its hands. What the objects wrote here is the evidence of where
/// they were applied, not their status: nothing freezes, and the shares and the ban go.
#[tokio::test]
async fn a_status_naming_another_instance_freezes_no_share_and_no_ban() {
    let policy = json!({ "tenantPolicy": { "manageRoles": true } });
    let (w, t) = tenant_world("tr-forged-instance", policy).await;
    let (owner, agent) = account_with_agent(&w, &t, "owner", "owner@corp.example.com").await;
    let grant =
        json!({ "resourceType": "agent", "resourceId": agent.to_hex(), "access": "viewer" });
    let crew = json!({ "instanceRef": lc(&w), "name": "Crew", "grants": [grant.clone()] });
    let role = json!({ "instanceRef": lc(&w), "name": "CREW_ROLE", "grants": [grant] });
    let ban = json!({ "instanceRef": lc(&w), "userRef": { "name": "owner" } });
    w.apply_in(&t, "LibreChatGroup", "crew", crew).await;
    w.apply_in(&t, "LibreChatRole", "crew-role", role).await;
    w.apply_in(&t, "UserBan", "hold", ban).await;
    ready_in(&w, &t, "librechatgroups", "crew", "True", "Reconciled").await;
    ready_in(&w, &t, "librechatroles", "crew-role", "True", "Reconciled").await;
    ready_in(&w, &t, "userbans", "hold", "True", "Banned").await;
    let shares = || count(&w, "aclentries", doc! { "resourceId": agent });
    assert_eq!(
        shares().await,
        3,
        "the owner's entry, the group's and the role's"
    );
    let key = format!("BANS:{}", owner.to_hex());
    assert!(log_doc(&w, &key).await.is_some_and(|d| in_force(&d)));

    let forged = json!({ "status": { "instance": format!("{}/elsewhere", w.ns) } });
    let objects = [
        ("LibreChatGroup", "librechatgroups", "crew"),
        ("LibreChatRole", "librechatroles", "crew-role"),
        ("UserBan", "userbans", "hold"),
    ];
    for (kind, _, name) in objects {
        dynamic(&w.client, &t, kind)
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&forged))
            .await
            .unwrap();
    }
    // The administrators limit the tenant to its team's domain: the owner leaves its hands.
    limit_to_team_domain(&w, &t).await;
    eventually("the shares and the ban to go", || async {
        let lifted = log_doc(&w, &key).await.is_none_or(|d| !in_force(&d));
        (shares().await == 1 && lifted).then_some(())
    })
    .await;
    // Past the check, each status says where it was applied (written by its next reconcile).
    let here = json!(format!("{}/lc", w.ns));
    for (_, plural, name) in objects {
        eventually(&format!("{name}'s status to name its instance"), || async {
            let obj = get_in(&w.client, &t, plural, name).await?;
            (obj.pointer("/status/instance") == Some(&here)).then_some(())
        })
        .await;
    }
}

/// The attack: a tenant made a role while the instance let it (`manageRoles`), with a grant;
/// the administrators withdraw the right, and the tenant keeps its LibreChatRole refused and
/// goes on putting new accounts in the role. The right withdrawn, the role's grants go and no
/// account is put in it.
#[tokio::test]
async fn a_withdrawn_manage_roles_is_not_kept_by_the_roles_it_made() {
    let policy = json!({ "tenantPolicy": { "manageRoles": true } });
    let (w, t) = tenant_world("tr-roles-withdrawn", policy).await;
    let (_, agent) = account_with_agent(&w, &t, "lead", "lead@example.com").await;
    let grant =
        json!({ "resourceType": "agent", "resourceId": agent.to_hex(), "access": "viewer" });
    let role = |name: &str| {
        json!({ "instanceRef": lc(&w), "name": name, "grants": [grant.clone()],
                                    "permissions": { "AGENTS": { "USE": true, "CREATE": true } } })
    };
    w.apply_in(&t, "LibreChatRole", "power", role("TEAM_POWER"))
        .await;
    w.apply_in(&t, "LibreChatRole", "frozen", role("TEAM_FROZEN"))
        .await;
    ready_in(&w, &t, "librechatroles", "power", "True", "Reconciled").await;
    ready_in(&w, &t, "librechatroles", "frozen", "True", "Reconciled").await;
    let role_shares = || count(&w, "aclentries", doc! { "principalType": "role" });
    assert_eq!(role_shares().await, 2);
    // The second is kept refused for an invalid spec first, so that the refusal for the right
    // withdrawn would never run for it.
    let mut invalid = role("TEAM_FROZEN");
    invalid["permissions"] = json!({ "NO_SUCH_TYPE": { "USE": true } });
    w.apply_in(&t, "LibreChatRole", "frozen", invalid).await;
    ready_in(&w, &t, "librechatroles", "frozen", "False", "InvalidSpec").await;

    w.apply_instance_of_stores("lc", json!({ "allowedNamespaces": [t.clone()] }))
        .await;
    let told = ready_in(&w, &t, "librechatroles", "power", "False", "NotPermitted").await;
    eventually("both roles' grants taken back", || async {
        (role_shares().await == 0).then_some(())
    })
    .await;
    assert_eq!(
        count(&w, "aclentries", doc! { "resourceId": agent }).await,
        1,
        "{told}"
    );
    let hire = json!({ "instanceRef": lc(&w), "email": "hire@example.com", "role": "TEAM_POWER" });
    w.apply_in(&t, "LibreChatUser", "hire", hire).await;
    let why = ready_in(&w, &t, "librechatusers", "hire", "False", "NotPermitted").await;
    assert!(why.contains("manageRoles"), "{why}");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let account = w.find_user("hire@example.com").await;
    assert!(
        account.is_none_or(|a| a.get_str("role").ok() != Some("TEAM_POWER")),
        "no new account in the role"
    );
}

#[tokio::test]
async fn a_namespace_taken_out_does_not_keep_a_share_its_sharer_lost() {
    let (w, t) = tenant_world("tr-offboarded", json!({})).await;
    let (lead, agent) = account_with_agent(&w, &t, "lead", "lead@example.com").await;
    let grant =
        json!({ "resourceType": "agent", "resourceId": agent.to_hex(), "access": "viewer" });
    let crew = json!({ "instanceRef": lc(&w), "name": "Crew", "grants": [grant],
                       "members": [{ "userRef": { "name": "lead" } }] });
    w.apply_in(&t, "LibreChatGroup", "crew", crew).await;
    ready_in(&w, &t, "librechatgroups", "crew", "True", "Reconciled").await;
    let shares = || count(&w, "aclentries", doc! { "resourceId": agent });
    let members = || {
        count(
            &w,
            "groups",
            doc! { "name": "Crew", "memberIds": lead.to_hex() },
        )
    };
    assert_eq!((shares().await, members().await), (2, 1));

    w.apply_instance_of_stores("lc", json!({ "allowedNamespaces": [] }))
        .await;
    ready_in(
        &w,
        &t,
        "librechatgroups",
        "crew",
        "False",
        "NamespaceNotAllowed",
    )
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        (shares().await, members().await),
        (2, 1),
        "what it may still give stays"
    );
    w.users()
        .update_one(doc! { "_id": lead }, doc! { "$set": { "role": "ADMIN" } })
        .await
        .unwrap();
    eventually("the share and the membership taken back", || async {
        (shares().await == 1 && members().await == 0).then_some(())
    })
    .await;
}

/// The attack: the instance keeps LibreChat's default USER role, whose people may not share
/// agents (`AGENTS.SHARE: false`), and a tenant shares its account's agent with a group of
/// its own through the operator. LibreChat's rule has two parts, the entry's SHARE bit and
/// the role's SHARE permission: the grant waits for the second, and goes when it goes.
#[tokio::test]
async fn a_tenant_cannot_share_what_its_accounts_may_not_share_in_librechat() {
    let (w, t) = tenant_world("tr-role-share", json!({})).await;
    let roles = w.db.collection::<Document>("roles");
    let user_role = |share: bool| {
        doc! { "name": "USER", "permissions": {
        "AGENTS": { "USE": true, "CREATE": true, "SHARE": share, "SHARE_PUBLIC": false } } }
    };
    roles.insert_one(user_role(false)).await.unwrap();
    let (_, agent) = account_with_agent(&w, &t, "dev", "dev@example.com").await;
    let grant =
        json!({ "resourceType": "agent", "resourceId": agent.to_hex(), "access": "viewer" });
    let crew = json!({ "instanceRef": lc(&w), "name": "Crew", "grants": [grant] });
    w.apply_in(&t, "LibreChatGroup", "crew", crew).await;
    ready_in(&w, &t, "librechatgroups", "crew", "False", "NotPermitted").await;
    let shared = || {
        count(
            &w,
            "aclentries",
            doc! { "resourceId": agent, "principalType": "group" },
        )
    };
    assert_eq!(shared().await, 0, "nothing shared");

    // The administrators let USER share agents: the grant is given at the next look.
    let set_share = |share: bool| {
        let roles = roles.clone();
        async move {
            roles
                .update_one(
                    doc! { "name": "USER" },
                    doc! { "$set": { "permissions.AGENTS.SHARE": share } },
                )
                .await
                .unwrap();
        }
    };
    set_share(true).await;
    ready_in(&w, &t, "librechatgroups", "crew", "True", "Reconciled").await;
    assert_eq!(shared().await, 1);
    // And take it back: so is the share.
    set_share(false).await;
    eventually("the share taken back", || async {
        (shared().await == 0).then_some(())
    })
    .await;
}

/// The probe: a tenant tries to adopt accounts to learn their roles (who is an admin, which
/// team's custom role an account is in). Each refusal reads the same, naming no role.
#[tokio::test]
async fn a_refused_adoption_does_not_tell_the_accounts_role() {
    let (w, t) = tenant_world("tr-adopt-probe", json!({})).await;
    let mut told = Vec::new();
    for (name, role) in [("chief", "ADMIN"), ("analyst", "FINANCE_ANALYSTS")] {
        let email = format!("{name}@example.com");
        let mut person = foreign_user(ObjectId::new(), &email);
        person.insert("role", role);
        w.users().insert_one(person).await.unwrap();
        let spec = json!({ "instanceRef": lc(&w), "email": email.clone(), "adopt": true });
        w.apply_in(&t, "LibreChatUser", name, spec).await;
        let message = ready_in(&w, &t, "librechatusers", name, "False", "NotPermitted").await;
        assert!(
            !message.contains("FINANCE"),
            "{name}: the role is named: {message}"
        );
        told.push(message.replace(&email, "EMAIL"));
    }
    assert_eq!(told[0], told[1], "the refusals must not differ by role");
}

/// The role LibreChat holds the account `id` in.
async fn role_of(w: &World, id: ObjectId) -> String {
    let user = user_doc(w, id).await.unwrap();
    user.get_str("role").unwrap_or_default().to_string()
}

/// A custom role's deletion moves its accounts to USER, then releases the role's name. Between
/// the two (here a crash), the name is still recorded but LibreChat has no such role: the
/// tenant's account declaring it must not be put back in it (it would hold a role nobody
/// declares, and the name would stay in use).
#[tokio::test]
async fn a_deleted_role_is_not_put_back_on_its_accounts_after_a_crash() {
    let policy = json!({ "tenantPolicy": { "manageRoles": true } });
    let (mut w, t) = tenant_world("tr-role-crash", policy).await;
    let role = json!({ "instanceRef": lc(&w), "name": "CREW",
                       "permissions": { "AGENTS": { "USE": true } } });
    w.apply_in(&t, "LibreChatRole", "crew", role).await;
    ready_in(&w, &t, "librechatroles", "crew", "True", "Reconciled").await;
    let member = json!({ "instanceRef": lc(&w), "email": "member@example.com",
                         "provider": "openid", "role": "CREW" });
    w.apply_in(&t, "LibreChatUser", "member", member).await;
    ready_in(&w, &t, "librechatusers", "member", "True", "Reconciled").await;
    let id = status_user_id(&w, &t, "member").await;
    assert_eq!(role_of(&w, id).await, "CREW");

    w.stop_operator();
    delete_in(&w.client, &t, "LibreChatRole", "crew").await;
    let watched = format!("{},{t}", w.ns);
    w.start_operator_in_with_env(
        &watched,
        &[("LIBRECHAT_OPERATOR_CRASH_AT", "after-role-delete")],
    );
    let code = w.wait_operator_exit(PATIENCE).await;
    assert_eq!(code, Some(86), "the operator must reach the crash point");
    // The deletion moved the account to USER; the user's own reconcile, started with it and
    // having read the policy before the deletion began, may have put CREW back just before
    // the crash (what the post-write check undoes when there is no crash): only the end
    // state below is certain.
    assert_eq!(count(&w, "roles", doc! { "name": "CREW" }).await, 0);

    // Back up: the user's reconcile (its role now has no document) and the role's cleanup race.
    w.start_operator_in(Some(&watched));
    wait_gone_in(&w, &t, "librechatroles", "crew").await;
    ready_in(&w, &t, "librechatusers", "member", "False", "NotPermitted").await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        role_of(&w, id).await,
        "USER",
        "the account stays out of the deleted role"
    );
}

/// A tenant's role is claimed before LibreChat has it. Until it is created, an account is not
/// put in it (it would be in a role LibreChat does not know, or, should one appear under the
/// name some other way, in that one). The claim is written here as the role controller writes
/// it just before creating the role.
#[tokio::test]
async fn an_account_is_not_put_in_a_role_before_librechat_has_it() {
    let policy = json!({ "tenantPolicy": { "manageRoles": true } });
    let (w, t) = tenant_world("tr-role-early", policy).await;
    w.db.collection::<Document>("librechat_operator_access")
        .insert_one(doc! {
            "_id": "role:EARLY", "kind": "LibreChatRole", "namespace": &t, "name": "early",
            "uid": "3f1c2d4e-0000-4000-8000-000000000001", "claimedAt": mongodb::bson::DateTime::now(),
            "members": [], "grants": [], "cacheDrops": [], "created": false,
        })
        .await
        .unwrap();
    let member = json!({ "instanceRef": lc(&w), "email": "early@example.com",
                         "provider": "openid", "role": "EARLY" });
    w.apply_in(&t, "LibreChatUser", "early", member).await;
    let told = ready_in(&w, &t, "librechatusers", "early", "False", "NotPermitted").await;
    assert!(told.contains("not created yet"), "{told}");
    assert!(
        w.find_user("early@example.com")
            .await
            .is_none_or(|u| u.get_str("role").ok() != Some("EARLY")),
        "no account may be put in a role LibreChat does not have"
    );
}

/// LibreChat's admins may make an account a tenant created ADMIN. A tenant that may not hold
/// ADMIN then changes nothing of it: not its password (which would log the tenant in as an
/// admin), not a ban, not a deletion.
#[tokio::test]
async fn a_tenant_does_not_keep_an_account_librechat_made_admin() {
    let (w, t) = tenant_world("tr-promoted", json!({})).await;
    a_tenant_lets_go_of_an_account_librechat_moved_to(&w, &t, "ADMIN", "allowAdmin").await;
}

/// The same for a custom role of the administrators (one that may carry `access:admin` or
/// grants on other people's agents) LibreChat's admins move the account into: the tenant could
/// not have put it there, so it neither signs in as it nor bans, groups, demotes or deletes it.
#[tokio::test]
async fn a_tenant_does_not_keep_an_account_librechat_moved_to_a_custom_role() {
    let (w, t) = tenant_world("tr-moved", json!({})).await;
    let staff = json!({ "instanceRef": { "name": "lc" }, "name": "STAFF" });
    w.apply("LibreChatRole", "staff", staff).await;
    ready_in(&w, &w.ns, "librechatroles", "staff", "True", "Reconciled").await;
    a_tenant_lets_go_of_an_account_librechat_moved_to(&w, &t, "STAFF", "assignableRoles").await;
}

/// The tenant `t`'s account is moved to `role` in LibreChat; every later write, ban, grouping
/// and deletion of it from `t` is refused (the refusal naming `who_allows`).
async fn a_tenant_lets_go_of_an_account_librechat_moved_to(
    w: &World,
    t: &str,
    role: &str,
    who_allows: &str,
) {
    let t = t.to_string();
    let email = "lead@example.com";
    put_secret(
        &w.client,
        &t,
        "lead-pw",
        &[("password", "Tenant-Knows-This-1")],
    )
    .await;
    w.apply_in(
        &t,
        "LibreChatUser",
        "lead",
        json!({ "instanceRef": lc(w), "email": email, "deletionPolicy": "Delete",
                "password": { "secretRef": { "name": "lead-pw", "key": "password" } } }),
    )
    .await;
    let id = status_user_id(w, &t, "lead").await;
    let leads = json!({ "instanceRef": lc(w), "name": "Leads",
                        "members": [{ "userRef": { "name": "lead" } }] });
    w.apply_in(&t, "LibreChatGroup", "leads", leads).await;
    wait_condition_in(
        &w.client,
        &t,
        "librechatgroups",
        "leads",
        "Ready",
        "True",
        None,
    )
    .await;
    // Moved in LibreChat (its admin panel or role sync).
    w.users()
        .update_one(doc! { "_id": id }, doc! { "$set": { "role": role } })
        .await
        .unwrap();
    let before = user_doc(w, id).await.unwrap();
    // The next resync says so, though the declaration asks for no write; the group lets it go.
    ready_in(w, &t, "librechatusers", "lead", "False", "NotPermitted").await;
    ready_in(w, &t, "librechatgroups", "leads", "False", "NotPermitted").await;
    let members =
        w.db.collection::<Document>("groups")
            .find_one(doc! { "name": "Leads" })
            .await
            .unwrap()
            .unwrap();
    assert!(members.get_array("memberIds").unwrap().is_empty());

    put_secret(
        &w.client,
        &t,
        "lead-pw",
        &[("password", "Tenant-Sets-This-2")],
    )
    .await;
    let told = ready_in(w, &t, "librechatusers", "lead", "False", "NotPermitted").await;
    assert!(told.contains(role) && told.contains(who_allows), "{told}");
    w.apply_in(
        &t,
        "UserBan",
        "demote",
        json!({ "instanceRef": lc(w), "userRef": { "name": "lead" } }),
    )
    .await;
    ready_in(w, &t, "userbans", "demote", "False", "NotPermitted").await;
    let after = user_doc(w, id).await.unwrap();
    assert_eq!(after.get_str("password"), before.get_str("password"));
    assert_eq!(after.get_str("role").unwrap(), role);
    assert!(log_doc(w, &format!("BANS:{}", id.to_hex())).await.is_none());

    // Deleting the object lets go of the account (declared `Delete`, the role it has now
    // declared too, as if it were the tenant's own): the account stays.
    let spoof = json!({ "instanceRef": lc(w), "email": email, "deletionPolicy": "Delete",
                        "role": role,
                        "password": { "secretRef": { "name": "lead-pw", "key": "password" } } });
    w.apply_in(&t, "LibreChatUser", "lead", spoof).await;
    delete_in(&w.client, &t, "LibreChatUser", "lead").await;
    wait_gone_in(w, &t, "librechatusers", "lead").await;
    assert!(user_doc(w, id).await.is_some());
}

/// Status is no identity, not even for what a cleanup must undo: the tenant leaves the
/// instance's allowed namespaces, someone who may write `*/status` erases what a group's and a
/// role's status say they wrote, and the objects are deleted. The group and the role still go
/// from LibreChat, found by their ownership records (and the deletions do not wait forever for
/// a namespace the instance no longer admits).
#[tokio::test]
async fn a_forged_status_does_not_leave_a_group_or_role_behind() {
    let (w, t) = tenant_world(
        "tr-forge-cleanup",
        json!({ "tenantPolicy": { "manageRoles": true } }),
    )
    .await;
    w.apply_in(
        &t,
        "LibreChatGroup",
        "crew",
        json!({ "instanceRef": lc(&w), "name": "Crew" }),
    )
    .await;
    w.apply_in(
        &t,
        "LibreChatRole",
        "crewrole",
        json!({ "instanceRef": lc(&w), "name": "CREW",
                "permissions": { "AGENTS": { "USE": true } } }),
    )
    .await;
    for plural in ["librechatgroups", "librechatroles"] {
        let name = if plural == "librechatgroups" {
            "crew"
        } else {
            "crewrole"
        };
        wait_condition_in(&w.client, &t, plural, name, "Ready", "True", None).await;
    }
    assert_eq!(count(&w, "groups", doc! { "name": "Crew" }).await, 1);
    assert_eq!(count(&w, "roles", doc! { "name": "CREW" }).await, 1);

    w.apply_instance_of_stores("lc", json!({ "allowedNamespaces": [] }))
        .await;
    let erased = json!({ "status": { "groupId": null, "instance": null } });
    for (kind, plural, name) in [
        ("LibreChatGroup", "librechatgroups", "crew"),
        ("LibreChatRole", "librechatroles", "crewrole"),
    ] {
        ready_in(&w, &t, plural, name, "False", "NamespaceNotAllowed").await;
        dynamic(&w.client, &t, kind)
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&erased))
            .await
            .unwrap();
    }
    delete_in(&w.client, &t, "LibreChatGroup", "crew").await;
    delete_in(&w.client, &t, "LibreChatRole", "crewrole").await;
    wait_gone_in(&w, &t, "librechatgroups", "crew").await;
    wait_gone_in(&w, &t, "librechatroles", "crewrole").await;
    assert_eq!(count(&w, "groups", doc! { "name": "Crew" }).await, 0);
    assert_eq!(count(&w, "roles", doc! { "name": "CREW" }).await, 0);
    assert_eq!(count(&w, "librechat_operator_access", doc! {}).await, 0);
}

/// Moves the document `from` of `collection` to the `_id` `to`.
async fn rekey(w: &World, collection: &str, from: &str, to: &str) {
    let docs = w.db.collection::<Document>(collection);
    let mut d = docs.find_one(doc! { "_id": from }).await.unwrap().unwrap();
    d.insert("_id", to);
    docs.insert_one(d).await.unwrap();
    docs.delete_one(doc! { "_id": from }).await.unwrap();
}

/// An API server that drops the CRDs' CEL rules lets a LibreChatUser's email and a role's name
/// be edited. The operator refuses the edit (no second account or role under the new name)
/// and, when the object goes, still removes what it wrote under the old one: found by the
/// object's uid, not by its spec. The edit is simulated by moving the operator's records and
/// LibreChat's documents to the old names while the operator is down.
#[tokio::test]
async fn an_edited_name_neither_forks_nor_orphans_what_the_object_wrote() {
    let mut w = World::with_instance("tr-renamed", json!({})).await;
    let user = json!({ "instanceRef": { "name": "lc" }, "email": "now@example.com",
                       "deletionPolicy": "Delete" });
    w.apply("LibreChatUser", "u", user).await;
    let id = status_user_id(&w, &w.ns.clone(), "u").await;
    let role = json!({ "instanceRef": { "name": "lc" }, "name": "NOW",
                       "permissions": { "AGENTS": { "USE": true } } });
    w.apply("LibreChatRole", "r", role).await;
    w.wait_condition("librechatroles", "r", "Ready", "True", None)
        .await;

    w.stop_operator();
    rekey(
        &w,
        "librechat_operator_owners",
        "now@example.com",
        "old@example.com",
    )
    .await;
    w.users()
        .update_one(
            doc! { "_id": id },
            doc! { "$set": { "email": "old@example.com" } },
        )
        .await
        .unwrap();
    rekey(&w, "librechat_operator_access", "role:NOW", "role:OLD").await;
    w.db.collection::<Document>("roles")
        .update_one(doc! { "name": "NOW" }, doc! { "$set": { "name": "OLD" } })
        .await
        .unwrap();
    w.start_operator();
    let ns = w.ns.clone();
    ready_in(&w, &ns, "librechatusers", "u", "False", "InvalidSpec").await;
    let told = ready_in(&w, &ns, "librechatroles", "r", "False", "InvalidSpec").await;
    assert!(told.contains("immutable"), "{told}");
    assert_eq!(count(&w, "roles", doc! { "name": "NOW" }).await, 0);
    assert!(w.find_user("now@example.com").await.is_none());

    w.delete("LibreChatUser", "u").await;
    w.delete("LibreChatRole", "r").await;
    wait_gone_in(&w, &ns, "librechatusers", "u").await;
    wait_gone_in(&w, &ns, "librechatroles", "r").await;
    assert!(
        user_doc(&w, id).await.is_none(),
        "the account goes with its object"
    );
    w.contract_check(json!({ "absentUsers": [
        { "email": "old@example.com", "userId": id.to_hex() },
        { "email": "now@example.com", "userId": id.to_hex() },
    ] }));
    assert_eq!(count(&w, "roles", doc! { "name": "OLD" }).await, 0);
    assert_eq!(count(&w, "librechat_operator_owners", doc! {}).await, 0);
    assert_eq!(count(&w, "librechat_operator_access", doc! {}).await, 0);
}

/// The attack: a tenant creates and deletes its own `Delete`-policy accounts until the hour's
/// deletion allowance is spent, so that the administrators' deletions (and every other
/// tenant's) wait for a person. Each namespace has its own allowance: the tenant holds only
/// its own deletions, and reads its own count, nothing of the others'.
#[tokio::test]
async fn a_tenant_cannot_spend_the_administrators_deletion_allowance() {
    let (w, t) = tenant_world("tr-guard", json!({ "deletionGuard": { "maxPerHour": 1 } })).await;
    let sso = |email: &str| {
        json!({ "instanceRef": lc(&w), "email": email, "provider": "openid",
                "deletionPolicy": "Delete" })
    };
    w.apply("LibreChatUser", "admins", sso("gone@example.com"))
        .await;
    for (name, email) in [("spent", "spent@example.com"), ("mine", "mine@example.com")] {
        w.apply_in(&t, "LibreChatUser", name, sso(email)).await;
    }
    ready_in(&w, &w.ns, "librechatusers", "admins", "True", "Reconciled").await;
    for name in ["spent", "mine"] {
        ready_in(&w, &t, "librechatusers", name, "True", "Reconciled").await;
    }
    // The tenant spends its allowance, then is held.
    delete_in(&w.client, &t, "LibreChatUser", "spent").await;
    wait_gone_in(&w, &t, "librechatusers", "spent").await;
    delete_in(&w.client, &t, "LibreChatUser", "mine").await;
    let told = ready_in(
        &w,
        &t,
        "librechatusers",
        "mine",
        "False",
        "DeletionsRateLimited",
    )
    .await;
    assert!(
        told.contains(&format!(
            "1 LibreChat accounts were deleted from namespace '{t}'"
        )) && told.contains("maxPerHour"),
        "a tenant reads its own namespace's count: {told}"
    );
    assert!(w.find_user("mine@example.com").await.is_some());

    // The administrators' deletion is not held by what the tenant spent.
    w.delete("LibreChatUser", "admins").await;
    w.wait_gone("librechatusers", "admins").await;
    assert!(w.find_user("gone@example.com").await.is_none());
    assert!(
        w.find_user("mine@example.com").await.is_some(),
        "the tenant's second deletion still waits"
    );

    // The admin confirms; the held deletion goes through.
    let until = (jiff::Timestamp::now() + jiff::SignedDuration::from_secs(600)).to_string();
    w.apply_instance_of_stores(
        "lc",
        json!({ "allowedNamespaces": [t.clone()],
                "deletionGuard": { "maxPerHour": 1, "confirmedUntil": until } }),
    )
    .await;
    wait_gone_in(&w, &t, "librechatusers", "mine").await;
    assert!(w.find_user("mine@example.com").await.is_none());
}

/// The instance's configuration (its Secrets, its spec) is its administrators' business: a
/// tenant's object waiting for a misconfigured instance, or deleted while it is, reads that the
/// instance is not Ready and who fixes it, not the names in its configuration. An outage of a
/// store is said as it is (checked in `instance::a_stopped_mongodb...`).
#[tokio::test]
async fn a_tenant_does_not_read_the_instances_configuration() {
    let mut w = World::new("tr-config").await;
    let t = format!("{}-t", w.ns);
    create_namespace(&w.client, &t).await;
    w.start_operator_in(Some(&format!("{},{t}", w.ns)));
    let hidden = "admins-mongo-credentials";
    w.apply(
        "LibreChatInstance",
        "lc",
        json!({ "mongo": { "uriSecretRef": { "name": hidden, "key": "uri" } },
                "allowedNamespaces": [t.clone()] }),
    )
    .await;
    ready_in(
        &w,
        &w.ns,
        "librechatinstances",
        "lc",
        "False",
        "SecretNotFound",
    )
    .await;
    let ban = json!({ "instanceRef": lc(&w), "email": "someone@example.com" });
    w.apply_in(&t, "UserBan", "grudge", ban.clone()).await;
    w.apply("UserBan", "house-rule", ban).await;
    let told = ready_in(&w, &t, "userbans", "grudge", "False", "InstanceNotReady").await;
    assert!(
        !told.contains(hidden) && told.contains("administrators"),
        "a tenant reads who fixes it, not the instance's Secret: {told}"
    );
    let admin_view = ready_in(
        &w,
        &w.ns,
        "userbans",
        "house-rule",
        "False",
        "InstanceNotReady",
    )
    .await;
    assert!(admin_view.contains(hidden), "{admin_view}");

    // Deleted while the instance cannot be reached: the cleanup waits, said the same way.
    delete_in(&w.client, &t, "UserBan", "grudge").await;
    let blocked = ready_in(&w, &t, "userbans", "grudge", "False", "DeleteBlocked").await;
    assert!(!blocked.contains(hidden), "{blocked}");

    // The Secret appears; the cleanup finishes.
    w.secret(hidden, &[("uri", &w.mongo_uri())]).await;
    wait_gone_in(&w, &t, "userbans", "grudge").await;
}

/// The same for what a tenant's invitation meets in the instance's mail relay: its login
/// Secret is the instance's, named only to the instance's namespace.
#[tokio::test]
async fn a_tenant_does_not_read_the_relays_secret() {
    let hidden = "relay-login-of-admins";
    let (w, t) = tenant_world(
        "tr-relay",
        json!({ "domainClient": "https://chat.example.com",
                "smtp": { "host": "127.0.0.1", "port": free_port(), "from": "LibreChat <noreply@example.com>",
                          "security": "none", "credentialsSecretRef": { "name": hidden } } }),
    )
    .await;
    let invite = |email: &str| json!({ "instanceRef": lc(&w), "email": email, "sendEmail": true });
    w.apply_in(
        &t,
        "UserInvite",
        "mailed",
        invite("tenant-guest@example.com"),
    )
    .await;
    w.apply("UserInvite", "mailed", invite("admin-guest@example.com"))
        .await;
    let told = ready_in(&w, &t, "userinvites", "mailed", "False", "EmailNotSent").await;
    assert!(
        !told.contains(hidden) && told.contains("administrators"),
        "{told}"
    );
    let admin_view = ready_in(&w, &w.ns, "userinvites", "mailed", "False", "EmailNotSent").await;
    assert!(admin_view.contains(hidden), "{admin_view}");

    // The same relay behind an email verification link of the tenant's own account.
    let unverified = json!({ "instanceRef": lc(&w), "email": "tenant-unverified@example.com",
                             "emailVerified": false });
    w.apply_in(&t, "LibreChatUser", "unverified", unverified)
        .await;
    let told = ready_in(
        &w,
        &t,
        "librechatusers",
        "unverified",
        "False",
        "VerificationNotSent",
    )
    .await;
    assert!(
        !told.contains(hidden) && told.contains("administrators"),
        "{told}"
    );
}

/// The attack: a tenant allowed to manage roles claims a role name before the administrators
/// declare it (a name from their example, their pull request, their convention). Their
/// LibreChatUsers of that role would then be put in the tenant's role, whose permissions the
/// tenant sets, and deleting it would move them all to USER. A role a tenant declares is that
/// tenant's alone: the administrators' accounts are not put in it, and stay where they are.
#[tokio::test]
async fn a_tenant_cannot_squat_a_role_name_to_govern_the_administrators_accounts() {
    let (w, t) = tenant_world(
        "tr-squat",
        json!({ "tenantPolicy": { "manageRoles": true } }),
    )
    .await;
    w.apply(
        "LibreChatUser",
        "lead",
        json!({ "instanceRef": { "name": "lc" }, "email": "lead@example.com" }),
    )
    .await;
    let lead = status_user_id(&w, &w.ns, "lead").await;
    w.apply_in(
        &t,
        "LibreChatRole",
        "squat",
        json!({ "instanceRef": lc(&w), "name": "ANALYST",
                "permissions": { "AGENTS": { "USE": false } } }),
    )
    .await;
    ready_in(&w, &t, "librechatroles", "squat", "True", "Reconciled").await;

    // A new account of the administrators in that role: not created.
    w.apply(
        "LibreChatUser",
        "analyst",
        json!({ "instanceRef": { "name": "lc" }, "email": "analyst@example.com",
                "role": "ANALYST" }),
    )
    .await;
    let told = ready_in(
        &w,
        &w.ns,
        "librechatusers",
        "analyst",
        "False",
        "NotPermitted",
    )
    .await;
    assert!(
        told.contains(&format!("namespace '{t}'")),
        "the administrators read which namespace holds the role: {told}"
    );
    assert_eq!(
        count(&w, "users", doc! { "email": "analyst@example.com" }).await,
        0
    );
    // An existing account of theirs moved to it: not written.
    w.apply(
        "LibreChatUser",
        "lead",
        json!({ "instanceRef": { "name": "lc" }, "email": "lead@example.com",
                "role": "ANALYST" }),
    )
    .await;
    ready_in(&w, &w.ns, "librechatusers", "lead", "False", "NotPermitted").await;
    assert_eq!(
        user_doc(&w, lead).await.unwrap().get_str("role").unwrap(),
        "USER"
    );
    assert_eq!(count(&w, "users", doc! { "role": "ANALYST" }).await, 0);
    // As LibreChat's own code finds the members of USER: the administrators' account, still.
    w.contract_check(json!({ "roleMembers": [{ "role": "USER", "userIds": [lead.to_hex()] }] }));
}

/// The attack: a tenant bans an account of its own for a year, then tries the account's email
/// at LibreChat's login from an address the administrators and other teams share (a company
/// NAT). LibreChat's `checkBan` copies a timed ban onto the address it was tried from, which
/// would lock everyone behind it out: an IP ban, which only the administrators declare. A
/// tenant's ban carries no end in its value, so `checkBan` copies it nowhere, and its
/// envelope ends it on time; copies made while the administrators' ban of the account was in
/// force go when only the tenant's is left.
#[tokio::test]
async fn a_tenants_ban_does_not_lock_out_the_address_its_email_is_tried_from() {
    let (w, t) = tenant_world("tr-ban-ip", json!({})).await;
    let email = "bait@example.com";
    w.apply_in(
        &t,
        "LibreChatUser",
        "bait",
        json!({ "instanceRef": lc(&w), "email": email }),
    )
    .await;
    let id = status_user_id(&w, &t, "bait").await;
    let lock = json!({ "instanceRef": lc(&w), "userRef": { "name": "bait" }, "duration": "8760h" });
    w.apply_in(&t, "UserBan", "lock", lock).await;
    ready_in(&w, &t, "userbans", "lock", "True", "Banned").await;
    let key = format!("BANS:{}", id.to_hex());
    let value = |d: &Document| serde_json::from_str::<Value>(d.get_str("value").unwrap()).unwrap();
    let envelope = value(&log_doc(&w, &key).await.unwrap());
    assert!(
        envelope["expires"].is_i64() && envelope["value"].get("expiresAt").is_none(),
        "a tenant's timed ban tells checkBan its end, which it copies onto addresses: {envelope}"
    );
    let banned =
        json!({ "bans": [{ "key": key.clone(), "expectActive": true, "userId": id.to_hex() }] });
    w.contract_check(banned.clone());

    // The administrators ban the account too: LibreChat's own timed ban, copied as it does.
    let house = json!({ "instanceRef": { "name": "lc" }, "email": email, "duration": "1h" });
    w.apply("UserBan", "house", house).await;
    ready_in(&w, &w.ns, "userbans", "house", "True", "Banned").await;
    let theirs = eventually("the administrators' ban to carry its end", || async {
        let d = log_doc(&w, &key).await?;
        value(&d)["value"].get("expiresAt").is_some().then_some(d)
    })
    .await;
    let copy = "ban:ban_cache:ip:198.51.100.7";
    w.db.collection::<Document>("logs")
        .insert_one(
            doc! { "key": copy, "value": theirs.get_str("value").unwrap(),
            "expiresAt": theirs.get_datetime("expiresAt").unwrap() },
        )
        .await
        .unwrap();
    // Their ban lifted, the tenant's alone is left: the address goes free.
    w.delete("UserBan", "house").await;
    w.wait_gone("userbans", "house").await;
    eventually("checkBan's copy on the address to go", || async {
        log_doc(&w, copy).await.is_none().then_some(())
    })
    .await;
    let envelope = value(&log_doc(&w, &key).await.unwrap());
    assert!(envelope["value"].get("expiresAt").is_none(), "{envelope}");
    w.contract_check(banned);
}

/// The same attack with LibreChat's own ban as the lever: the tenant gets its account
/// violation-banned for a short while (its end told to `checkBan`), then bans it for a year
/// meanwhile. Once LibreChat's own ban is over, the tenant's ban is written again without its
/// end, and the copies made on addresses go.
#[tokio::test]
async fn a_tenants_ban_stops_telling_its_end_once_librechats_own_ban_is_over() {
    let (w, t) = tenant_world("tr-ban-native-ip", json!({ "resyncPeriod": "2s" })).await;
    w.apply_in(
        &t,
        "LibreChatUser",
        "bait",
        json!({ "instanceRef": lc(&w), "email": "bait2@example.com" }),
    )
    .await;
    let id = status_user_id(&w, &t, "bait").await;
    let key = format!("BANS:{}", id.to_hex());
    let now = jiff::Timestamp::now().as_millisecond();
    insert_native_ban(&w, &key, now + 6_000).await;
    let lock = json!({ "instanceRef": lc(&w), "userRef": { "name": "bait" }, "duration": "8760h" });
    w.apply_in(&t, "UserBan", "lock", lock).await;
    ready_in(&w, &t, "userbans", "lock", "True", "Banned").await;
    let copy = "ban:ban_cache:ip:198.51.100.8";
    let written = log_doc(&w, &key).await.unwrap();
    w.db.collection::<Document>("logs")
        .insert_one(
            doc! { "key": copy, "value": written.get_str("value").unwrap(),
            "expiresAt": written.get_datetime("expiresAt").unwrap() },
        )
        .await
        .unwrap();
    eventually(
        "the tenant's ban to be confined and the address freed",
        || async {
            let d = log_doc(&w, &key).await?;
            let v: Value = serde_json::from_str(d.get_str("value").ok()?).ok()?;
            let confined = v["value"].get("expiresAt").is_none() && v["expires"].is_i64();
            (confined && log_doc(&w, copy).await.is_none()).then_some(())
        },
    )
    .await;
    w.contract_check(
        json!({ "bans": [{ "key": key, "expectActive": true, "userId": id.to_hex() }] }),
    );
}

/// The attack: a tenant bans an account of its own by `userRef`, then lets the account go
/// (its LibreChatUser deleted with `Retain`), keeping the ban: the account, now nobody's (the
/// administrators may take it over), would stay banned for as long as the tenant likes. The ban
/// goes with the account; applied again, it bans the account a LibreChatUser of that name has.
#[tokio::test]
async fn a_tenants_ban_does_not_outlive_its_hold_on_the_account() {
    let (w, t) = tenant_world("tr-ban-release", json!({})).await;
    let email = "leaver@example.com";
    let user = json!({ "instanceRef": lc(&w), "email": email });
    w.apply_in(&t, "LibreChatUser", "leaver", user.clone())
        .await;
    let id = status_user_id(&w, &t, "leaver").await;
    let by_ref = json!({ "instanceRef": lc(&w), "userRef": { "name": "leaver" } });
    w.apply_in(&t, "UserBan", "hold", by_ref).await;
    ready_in(&w, &t, "userbans", "hold", "True", "Banned").await;
    let key = format!("BANS:{}", id.to_hex());
    assert!(log_doc(&w, &key).await.is_some_and(|d| in_force(&d)));

    delete_in(&w.client, &t, "LibreChatUser", "leaver").await;
    wait_gone_in(&w, &t, "librechatusers", "leaver").await;
    assert!(
        w.find_user(email).await.is_some(),
        "Retain keeps the account"
    );
    eventually("the ban to be lifted", || async {
        log_doc(&w, &key).await.is_none().then_some(())
    })
    .await;
    // Lifted (its event says so), it waits for a LibreChatUser of that name again.
    eventually("the event of the lift", || async {
        let reasons = event_reasons_in(&w.client, &t, "hold").await;
        reasons.iter().any(|r| r == "Lifted").then_some(())
    })
    .await;
    ready_in(&w, &t, "userbans", "hold", "False", "UserNotFound").await;
    w.contract_check(json!({ "bans": [{ "key": key, "expectActive": false }] }));
}

/// A tenant freezes its bans before giving up their accounts: one by an `until` that does not
/// parse, one by switching its target to the email of another account it keeps. Then its
/// LibreChatUser goes (`Retain`: the account is nobody's now) and LibreChat's admins make the
/// other account ADMIN. Neither ban says by its spec what it bans any more, yet each goes with
/// the tenant's hold on the account it was applied to; a third, frozen on an account the
/// tenant still manages, stays.
#[tokio::test]
async fn a_tenants_ban_made_invalid_does_not_outlive_its_hold_on_the_account() {
    let (w, t) = tenant_world("tr-ban-frozen", json!({})).await;
    let mut accounts = Vec::new();
    for name in ["leaver", "promoted", "kept"] {
        let email = format!("{name}@example.com");
        let user = json!({ "instanceRef": lc(&w), "email": email });
        w.apply_in(&t, "LibreChatUser", name, user).await;
        accounts.push(status_user_id(&w, &t, name).await);
    }
    let keys: Vec<String> = accounts
        .iter()
        .map(|id| format!("BANS:{}", id.to_hex()))
        .collect();
    for (ban, user) in [
        ("hold-a", "leaver"),
        ("hold-b", "promoted"),
        ("hold-c", "kept"),
    ] {
        let by_ref = json!({ "instanceRef": lc(&w), "userRef": { "name": user } });
        w.apply_in(&t, "UserBan", ban, by_ref).await;
        ready_in(&w, &t, "userbans", ban, "True", "Banned").await;
    }
    // Frozen: refused (`InvalidSpec`), each still holding the ban it wrote.
    let unparsable =
        json!({ "instanceRef": lc(&w), "userRef": { "name": "leaver" }, "until": "x" });
    w.apply_in(&t, "UserBan", "hold-a", unparsable).await;
    let switched = json!({ "instanceRef": lc(&w), "email": "kept@example.com" });
    w.apply_in(&t, "UserBan", "hold-b", switched).await;
    let unparsable = json!({ "instanceRef": lc(&w), "userRef": { "name": "kept" }, "until": "x" });
    w.apply_in(&t, "UserBan", "hold-c", unparsable).await;
    for ban in ["hold-a", "hold-b", "hold-c"] {
        ready_in(&w, &t, "userbans", ban, "False", "InvalidSpec").await;
    }
    for key in &keys {
        assert!(
            log_doc(&w, key).await.is_some_and(|d| in_force(&d)),
            "{key}"
        );
    }

    delete_in(&w.client, &t, "LibreChatUser", "leaver").await;
    wait_gone_in(&w, &t, "librechatusers", "leaver").await;
    assert!(
        w.find_user("leaver@example.com").await.is_some(),
        "Retain keeps the account"
    );
    w.users()
        .update_one(
            doc! { "_id": accounts[1] },
            doc! { "$set": { "role": "ADMIN" } },
        )
        .await
        .unwrap();
    for (ban, key) in [("hold-a", &keys[0]), ("hold-b", &keys[1])] {
        eventually("the frozen ban to be lifted", || async {
            log_doc(&w, key).await.is_none().then_some(())
        })
        .await;
        eventually("the event of the lift", || async {
            let reasons = event_reasons_in(&w.client, &t, ban).await;
            reasons.iter().any(|r| r == "Lifted").then_some(())
        })
        .await;
    }
    // The account the namespace still manages stays banned by its frozen ban, resync after
    // resync (every 3 s here).
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert!(log_doc(&w, &keys[2]).await.is_some_and(|d| in_force(&d)));
    let bans = keys[..2]
        .iter()
        .map(|k| json!({ "key": k, "expectActive": false }));
    w.contract_check(json!({ "bans": bans.collect::<Vec<_>>() }));
}

/// MongoDB refuses a write (here a validator on `users`; a failover's "connection pool for
/// db-0:27017 cleared" reads the same way). The administrators' object says what the server
/// answered; a tenant's says what failed and where to ask, never the server's answer nor where
/// the database runs, in its status and its events alike.
#[tokio::test]
async fn a_tenant_does_not_read_what_the_database_answered() {
    let (w, t) = tenant_world("tr-store-error", json!({})).await;
    let refuse_all = doc! { "$jsonSchema": { "required": ["never_there"] } };
    w.db.run_command(doc! { "collMod": "users", "validator": refuse_all })
        .await
        .unwrap();
    let spec = json!({ "instanceRef": lc(&w), "email": "refused@example.com" });
    w.apply_in(&t, "LibreChatUser", "refused", spec).await;
    let admins = json!({ "instanceRef": lc(&w), "email": "refused-too@example.com" });
    w.apply("LibreChatUser", "refused", admins).await;
    let theirs = ready_in(&w, &t, "librechatusers", "refused", "False", "StoreError").await;
    let ours = ready_in(
        &w,
        &w.ns,
        "librechatusers",
        "refused",
        "False",
        "StoreError",
    )
    .await;
    assert!(ours.contains("failed validation"), "{ours}");
    // A refusal for the data's sake is not sent looking for a credentials problem.
    assert!(!ours.contains("credentials"), "{ours}");
    let address = w
        .mongo_uri()
        .split("://")
        .nth(1)
        .unwrap_or_default()
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string();
    let api: kube::Api<k8s_openapi::api::events::v1::Event> =
        kube::Api::namespaced(w.client.clone(), &t);
    let notes: Vec<String> = api
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|e| e.note)
        .collect();
    for told in notes.iter().chain([&theirs]) {
        assert!(
            !told.contains("validation"),
            "the server's answer reached the tenant: {told}"
        );
        assert!(
            !told.contains(&address),
            "the database's address reached the tenant: {told}"
        );
    }
    assert!(
        theirs.contains("MongoDB") && theirs.contains(&w.ns),
        "{theirs}"
    );
}

/// Two namespaces declare one email under the same object name; the second is refused
/// (`Conflict`, which waits for no timer). The first goes (`Retain`): the second is woken at
/// once and adopts the account, though it lives in another namespace, watched in another
/// scope, under the same name. Before, it stayed in `Conflict` until somebody edited it or the
/// operator restarted.
#[tokio::test]
async fn an_object_in_conflict_is_woken_when_the_owner_in_another_namespace_goes() {
    let (w, t) = tenant_world("tr-conflict-wake", json!({})).await;
    let spec = json!({ "instanceRef": lc(&w), "email": "shared@example.com" });
    w.apply("LibreChatUser", "alice", spec).await;
    w.wait_condition("librechatusers", "alice", "Ready", "True", None)
        .await;
    let adopting = json!({ "instanceRef": lc(&w), "email": "shared@example.com", "adopt": true });
    w.apply_in(&t, "LibreChatUser", "alice", adopting).await;
    ready_in(&w, &t, "librechatusers", "alice", "False", "Conflict").await;
    w.delete("LibreChatUser", "alice").await;
    w.wait_gone("librechatusers", "alice").await;
    ready_in(&w, &t, "librechatusers", "alice", "True", "Reconciled").await;
}

/// The administrators' account has its email changed by hand in LibreChat (its object reads
/// `IdentityChanged`); a tenant then declares the new email with `adopt: true`. No record
/// claims that email, but one names the account: the adoption is refused (`Conflict`), and
/// the account keeps one owner. Before, two records named it, and either object's deletion
/// with `Delete` deleted what the other managed.
#[tokio::test]
async fn a_tenant_cannot_adopt_an_account_another_object_manages_under_its_old_email() {
    let (w, t) = tenant_world("tr-renamed", json!({})).await;
    let spec = json!({ "instanceRef": lc(&w), "email": "before@example.com" });
    w.apply("LibreChatUser", "owner", spec).await;
    let id = status_user_id(&w, &w.ns, "owner").await;
    w.users()
        .update_one(
            doc! { "_id": id },
            doc! { "$set": { "email": "after@example.com" } },
        )
        .await
        .unwrap();
    ready_in(
        &w,
        &w.ns,
        "librechatusers",
        "owner",
        "False",
        "IdentityChanged",
    )
    .await;
    let adopting = json!({ "instanceRef": lc(&w), "email": "after@example.com", "adopt": true });
    w.apply_in(&t, "LibreChatUser", "taker", adopting).await;
    ready_in(&w, &t, "librechatusers", "taker", "False", "Conflict").await;
    assert_eq!(
        count(&w, "librechat_operator_owners", doc! { "userId": id }).await,
        1
    );
    assert!(owner_record(&w, "after@example.com").await.is_none());
}

/// What LibreChat's admins do in their UI: delete the role `name` and make one of theirs
/// under the name (another `_id`).
async fn replace_role_in_librechat(w: &World, name: &str) {
    let roles = w.db.collection::<Document>("roles");
    roles.delete_one(doc! { "name": name }).await.unwrap();
    roles
        .insert_one(
            doc! { "_id": ObjectId::new(), "name": name, "description": "the admins'",
            "permissions": { "AGENTS": { "USE": true } }, "__v": 0 },
        )
        .await
        .unwrap();
}

/// The attack: LibreChat's admins delete a tenant's role in their UI and make one of theirs
/// under the name (with `access:admin`, say), then move an account the tenant created into
/// it; the tenant keeps its LibreChatRole from reconciling (a grant it may not make) so that
/// the role's ownership record still names it. The record alone does not make the role the
/// tenant's: LibreChat's role of the name must be the one the record created.
#[tokio::test]
async fn a_tenant_does_not_keep_an_account_in_a_role_librechat_replaced_under_its_name() {
    let (w, t) = tenant_world(
        "tr-role-swapped",
        json!({ "tenantPolicy": { "manageRoles": true } }),
    )
    .await;
    let role = json!({ "instanceRef": lc(&w), "name": "TEAMX" });
    w.apply_in(&t, "LibreChatRole", "team-x", role.clone())
        .await;
    ready_in(&w, &t, "librechatroles", "team-x", "True", "Reconciled").await;
    put_secret(
        &w.client,
        &t,
        "lead-pw",
        &[("password", "Tenant-Knows-This-1")],
    )
    .await;
    let lead = json!({ "instanceRef": lc(&w), "email": "swapped@example.com",
                       "password": { "secretRef": { "name": "lead-pw", "key": "password" } } });
    w.apply_in(&t, "LibreChatUser", "lead", lead).await;
    let id = status_user_id(&w, &t, "lead").await;
    // The tenant freezes its role: a grant on an agent of an account it does not manage.
    let stranger = ObjectId::new();
    w.users()
        .insert_one(foreign_user(stranger, "stranger-swapped@example.com"))
        .await
        .unwrap();
    let agent = crate::access::seed_resource(&w, "agents", "agent", stranger).await;
    let mut frozen = role.clone();
    frozen["grants"] =
        json!([{ "resourceType": "agent", "resourceId": agent.to_hex(), "access": "viewer" }]);
    w.apply_in(&t, "LibreChatRole", "team-x", frozen).await;
    ready_in(&w, &t, "librechatroles", "team-x", "False", "NotPermitted").await;
    // LibreChat's admins replace the role and move the account into theirs.
    replace_role_in_librechat(&w, "TEAMX").await;
    w.users()
        .update_one(doc! { "_id": id }, doc! { "$set": { "role": "TEAMX" } })
        .await
        .unwrap();
    let before = user_doc(&w, id).await.unwrap();

    put_secret(
        &w.client,
        &t,
        "lead-pw",
        &[("password", "Tenant-Sets-This-2")],
    )
    .await;
    let told = ready_in(&w, &t, "librechatusers", "lead", "False", "NotPermitted").await;
    assert!(told.contains("TEAMX"), "{told}");
    let after = user_doc(&w, id).await.unwrap();
    assert_eq!(after.get_str("password"), before.get_str("password"));
    assert_eq!(after.get_str("role").unwrap(), "TEAMX");
    // Nor does it put a new account in the admins' role by declaring the name.
    let newcomer =
        json!({ "instanceRef": lc(&w), "email": "newcomer-swapped@example.com", "role": "TEAMX" });
    w.apply_in(&t, "LibreChatUser", "newcomer", newcomer).await;
    ready_in(
        &w,
        &t,
        "librechatusers",
        "newcomer",
        "False",
        "NotPermitted",
    )
    .await;
    assert_eq!(
        count(
            &w,
            "users",
            doc! { "email": "newcomer-swapped@example.com" }
        )
        .await,
        0
    );
}

/// LibreChat's admins replace a tenant's role under its name while a tenant's account sits
/// settled in it, declaring it. Once the tenant's LibreChatRole sees the role is no longer the
/// one it created (and gives the name up), the account's object says it is out of the team's
/// reach, without waiting for an edit of its own: a settled resync must not keep reporting
/// `Ready` for a role the team no longer holds. Nothing is written to the account.
#[tokio::test]
async fn an_account_settled_in_a_role_librechat_replaced_stops_reading_ready() {
    let (w, t) = tenant_world(
        "tr-role-settled",
        // No resync to fall back on within the test: the role's change itself must tell.
        json!({ "tenantPolicy": { "manageRoles": true }, "resyncPeriod": "1h" }),
    )
    .await;
    let role = |agents: bool| {
        json!({ "instanceRef": lc(&w), "name": "TEAMY",
                                      "permissions": { "AGENTS": { "USE": agents } } })
    };
    w.apply_in(&t, "LibreChatRole", "team-y", role(true)).await;
    ready_in(&w, &t, "librechatroles", "team-y", "True", "Reconciled").await;
    let member =
        json!({ "instanceRef": lc(&w), "email": "settled-y@example.com", "role": "TEAMY" });
    w.apply_in(&t, "LibreChatUser", "member", member).await;
    let id = status_user_id(&w, &t, "member").await;
    ready_in(&w, &t, "librechatusers", "member", "True", "Reconciled").await;
    // LibreChat's admins replace the role under its name; the account is left in it.
    replace_role_in_librechat(&w, "TEAMY").await;
    let before = user_doc(&w, id).await.unwrap();
    // The team edits its role: the role's reconcile finds LibreChat's is not the one it made.
    w.apply_in(&t, "LibreChatRole", "team-y", role(false)).await;
    ready_in(&w, &t, "librechatroles", "team-y", "False", "AlreadyExists").await;

    let told = ready_in(&w, &t, "librechatusers", "member", "False", "NotPermitted").await;
    assert!(told.contains("TEAMY"), "{told}");
    assert_eq!(
        user_doc(&w, id).await.unwrap(),
        before,
        "nothing is written"
    );
}

/// A team's namespace torn down: its LibreChatRole and its LibreChatUsers (`Delete`) go
/// together. An account deleted while its role's deletion is moving accounts to USER is still
/// the team's own (the role is being deleted, not taken): it is deleted, not left behind.
#[tokio::test]
async fn an_account_in_a_role_being_deleted_is_still_deleted_with_its_object() {
    let mut w = World::new("tr-teardown").await;
    let t = format!("{}-t", w.ns);
    create_namespace(&w.client, &t).await;
    let pause = [("LIBRECHAT_OPERATOR_PAUSE_AT", "before-role-accounts-move")];
    w.start_operator_in_with_env(&format!("{},{t}", w.ns), &pause);
    let policy =
        json!({ "allowedNamespaces": [t.clone()], "tenantPolicy": { "manageRoles": true } });
    w.ready_instance("lc", policy).await;
    let role = json!({ "instanceRef": lc(&w), "name": "TEARDOWN" });
    w.apply_in(&t, "LibreChatRole", "team", role).await;
    ready_in(&w, &t, "librechatroles", "team", "True", "Reconciled").await;
    let email = "teardown@example.com";
    let member = json!({ "instanceRef": lc(&w), "email": email, "role": "TEARDOWN",
                         "deletionPolicy": "Delete" });
    w.apply_in(&t, "LibreChatUser", "member", member).await;
    status_user_id(&w, &t, "member").await;

    delete_in(&w.client, &t, "LibreChatRole", "team").await;
    w.wait_paused_at("before-role-accounts-move", 0).await;
    delete_in(&w.client, &t, "LibreChatUser", "member").await;
    wait_gone_in(&w, &t, "librechatusers", "member").await;
    assert!(
        w.find_user(email).await.is_none(),
        "the account was left behind"
    );
}

/// A tenant's accounts in its own roles stay its own: it moves them between its roles and back
/// to USER (the check that takes an account LibreChat moved to a role out of the tenant's
/// reach reads the role's ownership record, not what the object declares).
#[tokio::test]
async fn a_tenant_moves_its_accounts_between_its_own_roles() {
    let (w, t) = tenant_world(
        "tr-own-roles",
        json!({ "tenantPolicy": { "manageRoles": true } }),
    )
    .await;
    for (object, name) in [("team-x", "TEAMX"), ("team-y", "TEAMY")] {
        w.apply_in(
            &t,
            "LibreChatRole",
            object,
            json!({ "instanceRef": lc(&w), "name": name }),
        )
        .await;
        ready_in(&w, &t, "librechatroles", object, "True", "Reconciled").await;
    }
    let member =
        |role: &str| json!({ "instanceRef": lc(&w), "email": "member@example.com", "role": role });
    w.apply_in(&t, "LibreChatUser", "member", member("TEAMX"))
        .await;
    let id = status_user_id(&w, &t, "member").await;
    for role in ["TEAMX", "TEAMY", "USER"] {
        w.apply_in(&t, "LibreChatUser", "member", member(role))
            .await;
        eventually(&format!("the account to be in {role}"), || async {
            let stored = user_doc(&w, id).await?;
            (stored.get_str("role").ok()? == role).then_some(())
        })
        .await;
        let obj = wait_condition_in(
            &w.client,
            &t,
            "librechatusers",
            "member",
            "Ready",
            "True",
            None,
        )
        .await;
        assert_eq!(
            obj.pointer("/status/role").and_then(Value::as_str),
            Some(role)
        );
    }
    // A role record of a version that kept no `_id` is taken at its word.
    w.db.collection::<Document>("librechat_operator_access")
        .update_one(
            doc! { "_id": "role:TEAMY" },
            doc! { "$unset": { "targetId": "" } },
        )
        .await
        .unwrap();
    w.apply_in(&t, "LibreChatUser", "member", member("TEAMY"))
        .await;
    eventually("the account to be in TEAMY again", || async {
        let stored = user_doc(&w, id).await?;
        (stored.get_str("role").ok()? == "TEAMY").then_some(())
    })
    .await;
}

/// A user refused for its role waits for no timer (it looks again only every 30 s by itself):
/// a tenant's account applied with its LibreChatRole (the role not created yet) goes on as the
/// role is created, and the administrators' account refused over a tenant's role goes on as
/// the tenant gives the name up.
#[tokio::test]
async fn a_user_waiting_for_its_role_goes_on_once_the_role_exists_or_its_name_is_freed() {
    let (w, t) = tenant_world(
        "tr-role-wait",
        json!({ "tenantPolicy": { "manageRoles": true } }),
    )
    .await;
    let crew = |email: &str| json!({ "instanceRef": lc(&w), "email": email, "role": "CREW" });
    w.apply_in(&t, "LibreChatUser", "ana", crew("ana@example.com"))
        .await;
    ready_in(&w, &t, "librechatusers", "ana", "False", "NotPermitted").await;
    w.apply_in(
        &t,
        "LibreChatRole",
        "crew",
        json!({ "instanceRef": lc(&w), "name": "CREW" }),
    )
    .await;
    ready_in(&w, &t, "librechatroles", "crew", "True", "Reconciled").await;
    assert!(
        ready_soon(&w, &t, "ana").await,
        "the tenant's account still waits though its role is created"
    );
    assert_eq!(
        count(
            &w,
            "users",
            doc! { "email": "ana@example.com", "role": "CREW" }
        )
        .await,
        1
    );

    // The administrators' account declared in that name: refused while the tenant holds it.
    w.apply_in(&w.ns, "LibreChatUser", "bo", crew("bo@example.com"))
        .await;
    ready_in(&w, &w.ns, "librechatusers", "bo", "False", "NotPermitted").await;
    delete_in(&w.client, &t, "LibreChatUser", "ana").await;
    delete_in(&w.client, &t, "LibreChatRole", "crew").await;
    wait_gone_in(&w, &t, "librechatroles", "crew").await;
    assert!(
        ready_soon(&w, &w.ns, "bo").await,
        "the administrators' account still waits though the tenant gave the role up"
    );
    assert_eq!(
        count(
            &w,
            "users",
            doc! { "email": "bo@example.com", "role": "CREW" }
        )
        .await,
        1
    );
}

/// Whether LibreChatUser `ns/name` reads `Ready` within a third of the 30 s a waiting user
/// takes to look again by itself: only a wake gets it there.
async fn ready_soon(w: &World, ns: &str, name: &str) -> bool {
    within(Duration::from_secs(10), || async {
        let obj = get_in(&w.client, ns, "librechatusers", name).await?;
        (condition(&obj, "Ready")?.status == "True").then_some(())
    })
    .await
    .is_some()
}

/// The attack: a tenant puts its accounts in a custom role somebody else declared (which may
/// carry grants on other people's agents, or system grants such as `access:admin`), or adopts
/// an account the LibreChat admin put in one.
#[tokio::test]
async fn a_tenant_cannot_put_its_accounts_in_a_role_it_does_not_own() {
    let (w, t) = tenant_world(
        "tr-roles",
        json!({ "tenantPolicy": { "manageRoles": true } }),
    )
    .await;
    w.apply(
        "LibreChatRole",
        "staff",
        json!({ "instanceRef": { "name": "lc" }, "name": "STAFF",
                                              "permissions": { "AGENTS": { "USE": true } } }),
    )
    .await;
    w.wait_condition("librechatroles", "staff", "Ready", "True", None)
        .await;

    let climber = json!({ "instanceRef": lc(&w), "email": "climber@example.com", "role": "STAFF" });
    w.apply_in(&t, "LibreChatUser", "climber", climber).await;
    ready_in(&w, &t, "librechatusers", "climber", "False", "NotPermitted").await;
    assert_eq!(
        count(&w, "users", doc! { "email": "climber@example.com" }).await,
        0,
        "no account may be created in the admin's role"
    );

    // A role its own namespace declares is the tenant's to assign.
    w.apply_in(
        &t,
        "LibreChatRole",
        "team",
        json!({ "instanceRef": lc(&w), "name": "TEAMX",
                                                    "permissions": { "AGENTS": { "USE": true } } }),
    )
    .await;
    w.apply_in(&t, "LibreChatUser", "member", json!({ "instanceRef": lc(&w),
                                                      "email": "member@example.com", "role": "TEAMX" }))
        .await;
    let member = status_user_id(&w, &t, "member").await;
    assert_eq!(
        user_doc(&w, member).await.unwrap().get_str("role").unwrap(),
        "TEAMX"
    );

    // An account LibreChat's admin put in STAFF is not the tenant's to adopt.
    let staffer = ObjectId::new();
    let mut d = foreign_user(staffer, "staffer@example.com");
    d.insert("role", "STAFF");
    w.users().insert_one(d).await.unwrap();
    let before = user_doc(&w, staffer).await.unwrap();
    w.apply_in(&t, "LibreChatUser", "grab", json!({ "instanceRef": lc(&w),
                                                    "email": "staffer@example.com", "adopt": true }))
        .await;
    ready_in(&w, &t, "librechatusers", "grab", "False", "NotPermitted").await;
    assert!(
        user_doc(&w, staffer).await == Some(before),
        "the staffer must not be written"
    );
    assert!(
        owner_record(&w, "staffer@example.com")
            .await
            .is_none_or(|r| r.get_str("namespace").ok() != Some(t.as_str())),
        "no ownership record may name the tenant"
    );

    // The instance lists STAFF as assignable: the waiting account is created in it.
    w.apply_instance(
        "lc",
        &env("REDIS_URL"),
        json!({ "allowedNamespaces": [t.clone()],
                "tenantPolicy": { "manageRoles": true, "assignableRoles": ["STAFF", "OPS"] } }),
    )
    .await;
    let climber = status_user_id(&w, &t, "climber").await;
    assert_eq!(
        user_doc(&w, climber)
            .await
            .unwrap()
            .get_str("role")
            .unwrap(),
        "STAFF"
    );

    // An assignable role nobody declared yet is not the tenant's to declare: it would set the
    // permissions of every team's accounts in it.
    w.apply_in(
        &t,
        "LibreChatRole",
        "ops",
        json!({ "instanceRef": lc(&w), "name": "OPS",
                "permissions": { "PEOPLE_PICKER": { "VIEW_USERS": true } } }),
    )
    .await;
    let told = ready_in(&w, &t, "librechatroles", "ops", "False", "NotPermitted").await;
    assert!(told.contains("assignableRoles"), "{told}");
    assert_eq!(count(&w, "roles", doc! { "name": "OPS" }).await, 0);
    assert!(w
        .db
        .collection::<Document>("librechat_operator_access")
        .find_one(doc! { "_id": "role:OPS" })
        .await
        .unwrap()
        .is_none());

    // A name LibreChat already uses without a role document (accounts left in it, a system
    // grant made for it) is not free: the tenant's new role would inherit what names it.
    let mut legacy = foreign_user(ObjectId::new(), "legacy@example.com");
    legacy.insert("role", "LEGACY");
    w.users().insert_one(legacy).await.unwrap();
    w.db.collection::<Document>("systemgrants")
        .insert_one(doc! { "principalType": "role", "principalId": "AUDITORS",
        "capability": "read:users", "grantedAt": mongodb::bson::DateTime::now() })
        .await
        .unwrap();
    for (object, name) in [("legacy", "LEGACY"), ("auditors", "AUDITORS")] {
        w.apply_in(
            &t,
            "LibreChatRole",
            object,
            json!({ "instanceRef": lc(&w), "name": name,
                    "permissions": { "AGENTS": { "USE": true } } }),
        )
        .await;
        ready_in(&w, &t, "librechatroles", object, "False", "AlreadyExists").await;
        assert_eq!(count(&w, "roles", doc! { "name": name }).await, 0);
    }
}

/// A tenant's role the instance has since made assignable stays in LibreChat when the
/// tenant's object goes (other teams' accounts may be in it); the administrators' own object
/// of that name then takes it over and sets its permissions, rather than meet a role nobody
/// may declare while the tenant's permissions stay in force.
#[tokio::test]
async fn a_tenant_role_made_assignable_is_handed_to_the_administrators() {
    let (w, t) = tenant_world(
        "tr-handover",
        json!({ "tenantPolicy": { "manageRoles": true } }),
    )
    .await;
    let generous = json!({ "instanceRef": lc(&w), "name": "LEADX",
        "permissions": { "PEOPLE_PICKER": { "VIEW_USERS": true } } });
    w.apply_in(&t, "LibreChatRole", "lead", generous).await;
    ready_in(&w, &t, "librechatroles", "lead", "True", "Reconciled").await;
    w.apply_instance(
        "lc",
        &env("REDIS_URL"),
        json!({ "allowedNamespaces": [t.clone()],
                "tenantPolicy": { "manageRoles": true, "assignableRoles": ["LEADX"] } }),
    )
    .await;
    ready_in(&w, &t, "librechatroles", "lead", "False", "NotPermitted").await;
    let strict = json!({ "instanceRef": { "name": "lc" }, "name": "LEADX",
        "permissions": { "PEOPLE_PICKER": { "VIEW_USERS": false } } });
    w.apply("LibreChatRole", "lead", strict).await;
    w.wait_condition("librechatroles", "lead", "Ready", "False", Some("Conflict"))
        .await;

    delete_in(&w.client, &t, "LibreChatRole", "lead").await;
    w.wait_condition("librechatroles", "lead", "Ready", "True", None)
        .await;
    let role =
        w.db.collection::<Document>("roles")
            .find_one(doc! { "name": "LEADX" })
            .await
            .unwrap()
            .expect("the role stays in LibreChat");
    let picker = role
        .get_document("permissions")
        .and_then(|p| p.get_document("PEOPLE_PICKER"))
        .unwrap();
    assert_eq!(picker.get_bool("VIEW_USERS"), Ok(false), "{role}");
    let record =
        w.db.collection::<Document>("librechat_operator_access")
            .find_one(doc! { "_id": "role:LEADX" })
            .await
            .unwrap()
            .unwrap();
    assert_eq!(record.get_str("namespace"), Ok(w.ns.as_str()), "{record}");
    // LibreChat's own code reads the role the administrators' object declares.
    w.contract_check(json!({
        "roles": [{ "name": "LEADX",
                    "permissions": { "PEOPLE_PICKER": { "VIEW_USERS": false } } }],
    }));
}

/// The race: a tenant's account is written into the tenant's role just as the role's
/// deletion moves the role's accounts to USER (the role policy was read before the write).
/// The account must not be left in a role LibreChat no longer has: denied everything, the
/// name blocked for every team, and inherited by whoever declares the name next.
#[tokio::test]
async fn an_account_written_into_a_role_being_deleted_ends_in_user() {
    let mut w = World::new("tr-rolerace").await;
    let t = format!("{}-t", w.ns);
    create_namespace(&w.client, &t).await;
    let pause = [("LIBRECHAT_OPERATOR_PAUSE_AT", "before-account-create")];
    w.start_operator_in_with_env(&format!("{},{t}", w.ns), &pause);
    let policy =
        json!({ "allowedNamespaces": [t.clone()], "tenantPolicy": { "manageRoles": true } });
    w.ready_instance("lc", policy).await;
    let role = json!({ "instanceRef": lc(&w), "name": "RACEX", "permissions": { "AGENTS": { "USE": true } } });
    w.apply_in(&t, "LibreChatRole", "team", role).await;
    ready_in(&w, &t, "librechatroles", "team", "True", "Reconciled").await;

    let member = json!({ "instanceRef": lc(&w), "email": "racer@example.com", "role": "RACEX" });
    w.apply_in(&t, "LibreChatUser", "member", member).await;
    // The account's creation pauses after its policy check.
    w.wait_paused_at("before-account-create", 0).await;
    // The role goes while the creation waits (its accounts, none yet, move to USER).
    delete_in(&w.client, &t, "LibreChatRole", "team").await;
    eventually("the role to be deleted", || async {
        (count(&w, "roles", doc! { "name": "RACEX" }).await == 0).then_some(())
    })
    .await;

    ready_in(&w, &t, "librechatusers", "member", "False", "NotPermitted").await;
    let account = w.find_user("racer@example.com").await.expect("created");
    assert_eq!(account.get_str("role"), Ok("USER"), "{account}");
    // As LibreChat's own code reads them: the role is gone, the account is in USER.
    let id = account.get_object_id("_id").unwrap();
    w.contract_check(json!({
        "roles": [{ "name": "RACEX", "absent": true }],
        "roleMembers": [{ "role": "USER", "userIds": [id.to_hex()] }],
    }));
}

/// The same race, cut short: the tenant's account `cut@example.com` (its spec `member`
/// merged in) is written into the tenant's role RACECUT as the role's deletion finishes, and
/// the operator dies before it checks the role again (the check is owed in the ownership
/// record). Returns the tenant's namespace and the namespaces the operator watches.
async fn written_into_a_deleted_role_then_crashed(
    w: &mut World,
    member: Value,
) -> (String, String) {
    let t = format!("{}-t", w.ns);
    create_namespace(&w.client, &t).await;
    let namespaces = format!("{},{t}", w.ns);
    let faults = [
        ("LIBRECHAT_OPERATOR_PAUSE_AT", "before-account-create"),
        ("LIBRECHAT_OPERATOR_CRASH_AT", "after-account-insert"),
    ];
    w.start_operator_in_with_env(&namespaces, &faults);
    let policy =
        json!({ "allowedNamespaces": [t.clone()], "tenantPolicy": { "manageRoles": true } });
    w.ready_instance("lc", policy).await;
    let role = json!({ "instanceRef": lc(w), "name": "RACECUT", "permissions": { "AGENTS": { "USE": true } } });
    w.apply_in(&t, "LibreChatRole", "team", role).await;
    ready_in(w, &t, "librechatroles", "team", "True", "Reconciled").await;

    let mut spec = json!({ "instanceRef": lc(w), "email": "cut@example.com", "role": "RACECUT" });
    merge(&mut spec, member);
    w.apply_in(&t, "LibreChatUser", "member", spec).await;
    w.wait_paused_at("before-account-create", 0).await;
    delete_in(&w.client, &t, "LibreChatRole", "team").await;
    wait_gone_in(w, &t, "librechatroles", "team").await;
    let code = w.wait_operator_exit(PATIENCE).await;
    assert_eq!(code, Some(86), "the operator must reach the crash point");
    let written = w.find_user("cut@example.com").await.expect("inserted");
    assert_eq!(
        written.get_str("role"),
        Ok("RACECUT"),
        "the crash came first"
    );
    assert_eq!(count(w, "roles", doc! { "name": "RACECUT" }).await, 0);
    let record = owner_record(w, "cut@example.com").await.unwrap();
    assert!(record.get_document("roleCheck").is_ok(), "{record}");
    (t, namespaces)
}

/// Its next reconcile is refused for the role (gone) before it reaches the account, and must
/// still finish the check the write promised: the account ends in USER, not in a role
/// LibreChat no longer has.
#[tokio::test]
async fn an_account_written_into_a_deleted_role_just_before_a_crash_ends_in_user() {
    let mut w = World::new("tr-rolecut").await;
    let (t, namespaces) = written_into_a_deleted_role_then_crashed(&mut w, json!({})).await;
    w.start_operator_in(Some(&namespaces));
    ready_in(&w, &t, "librechatusers", "member", "False", "NotPermitted").await;
    let account = eventually("the account to leave the deleted role", || async {
        let account = w.find_user("cut@example.com").await?;
        (account.get_str("role") == Ok("USER")).then_some(account)
    })
    .await;
    assert!(follow_ups(&w, "cut@example.com").await.is_empty());
    let record = owner_record(&w, "cut@example.com").await.unwrap();
    assert!(record.get("roleCheck").is_none(), "{record}");
    let id = account.get_object_id("_id").unwrap();
    w.contract_check(json!({
        "roles": [{ "name": "RACECUT", "absent": true }],
        "roleMembers": [{ "role": "USER", "userIds": [id.to_hex()] }],
    }));
}

/// The object is deleted (`Delete`) before the operator is back, as a namespace torn down
/// would do: the owed check moves the account out of the role first, so the deletion (which
/// refuses accounts in roles out of the tenant's reach) deletes it rather than leaving it,
/// managed by nobody, in a role LibreChat no longer has.
#[tokio::test]
async fn an_account_left_in_a_deleted_role_by_a_crash_is_deleted_with_its_object() {
    let mut w = World::new("tr-rolecutdel").await;
    let delete = json!({ "deletionPolicy": "Delete" });
    let (t, namespaces) = written_into_a_deleted_role_then_crashed(&mut w, delete).await;
    delete_in(&w.client, &t, "LibreChatUser", "member").await;
    w.start_operator_in(Some(&namespaces));
    wait_gone_in(&w, &t, "librechatusers", "member").await;
    assert!(
        w.find_user("cut@example.com").await.is_none(),
        "deleted with its object, not left in the deleted role"
    );
    assert!(owner_record(&w, "cut@example.com").await.is_none());
}

/// The check a crash left owed moves nothing out of a role LibreChat's admins replaced under
/// the name meanwhile: that role, and the account the write put in it, are theirs to decide
/// (and out of the tenant's reach), not the operator's to undo.
#[tokio::test]
async fn an_owed_role_check_leaves_a_role_librechat_replaced_alone() {
    let policy = json!({ "tenantPolicy": { "manageRoles": true } });
    let (mut w, t) = tenant_world("tr-rolecheck-swap", policy).await;
    let namespaces = format!("{},{t}", w.ns);
    let instance = lc(&w);
    let role = |agents: bool| {
        json!({ "instanceRef": instance.clone(), "name": "TEAMC",
                                      "permissions": { "AGENTS": { "USE": agents } } })
    };
    w.apply_in(&t, "LibreChatRole", "team-c", role(true)).await;
    ready_in(&w, &t, "librechatroles", "team-c", "True", "Reconciled").await;
    let member = |role: &str| json!({ "instanceRef": instance.clone(), "email": "swap-c@example.com", "role": role });
    w.apply_in(&t, "LibreChatUser", "member", member("USER"))
        .await;
    let id = status_user_id(&w, &t, "member").await;

    w.stop_operator();
    w.apply_in(&t, "LibreChatUser", "member", member("TEAMC"))
        .await;
    let crash = [("LIBRECHAT_OPERATOR_CRASH_AT", "after-role-change")];
    w.start_operator_in_with_env(&namespaces, &crash);
    assert_eq!(w.wait_operator_exit(PATIENCE).await, Some(86));
    assert_eq!(user_doc(&w, id).await.unwrap().get_str("role"), Ok("TEAMC"));
    let record = owner_record(&w, "swap-c@example.com").await.unwrap();
    assert!(record.get_document("roleCheck").is_ok(), "{record}");
    // LibreChat's admins replace the role under its name while the operator is down.
    replace_role_in_librechat(&w, "TEAMC").await;

    w.start_operator_in(Some(&namespaces));
    w.apply_in(&t, "LibreChatRole", "team-c", role(false)).await;
    ready_in(&w, &t, "librechatroles", "team-c", "False", "AlreadyExists").await;
    ready_in(&w, &t, "librechatusers", "member", "False", "NotPermitted").await;
    eventually("the owed check to be done", || async {
        let record = owner_record(&w, "swap-c@example.com").await?;
        record.get("roleCheck").is_none().then_some(())
    })
    .await;
    assert_eq!(
        user_doc(&w, id).await.unwrap().get_str("role"),
        Ok("TEAMC"),
        "an account in the admins' role is theirs to move"
    );
}

/// An object refused because another one holds its group's name (in another namespace,
/// watched by another scope) takes the name once the holder goes, without a change of its own.
#[tokio::test]
async fn a_group_name_freed_by_another_team_goes_to_the_object_waiting_for_it() {
    let (w, t) = tenant_world("tr-freed", json!({})).await;
    let group = |instance: Value| json!({ "instanceRef": instance, "name": "Shared Name" });
    w.apply_in(&t, "LibreChatGroup", "first", group(lc(&w)))
        .await;
    ready_in(&w, &t, "librechatgroups", "first", "True", "Reconciled").await;
    w.apply("LibreChatGroup", "second", group(json!({ "name": "lc" })))
        .await;
    w.wait_condition(
        "librechatgroups",
        "second",
        "Ready",
        "False",
        Some("Conflict"),
    )
    .await;
    delete_in(&w.client, &t, "LibreChatGroup", "first").await;
    w.wait_condition("librechatgroups", "second", "Ready", "True", None)
        .await;
    assert_eq!(count(&w, "groups", doc! { "name": "Shared Name" }).await, 1);
}

/// What anyone who may write `*/status` can do: make `x`'s status name another account.
async fn forge(w: &World, ns: &str, target: ObjectId) {
    let obj = get_in(&w.client, ns, "librechatusers", "x").await.unwrap();
    let generation = obj.pointer("/metadata/generation").cloned();
    let patch = json!({ "status": { "userId": target.to_hex(), "conditions": [ {
        "type": "Ready", "status": "True", "reason": "Reconciled", "message": "forged",
        "observedGeneration": generation, "lastTransitionTime": "2024-01-01T00:00:00Z" } ] } });
    dynamic(&w.client, ns, "LibreChatUser")
        .patch_status("x", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_forged_status_cannot_redirect_writes_to_another_account() {
    let (w, t) = tenant_world("tr-forge", json!({})).await;
    w.apply(
        "LibreChatUser",
        "boss",
        json!({ "instanceRef": { "name": "lc" }, "email": "boss@example.com", "role": "ADMIN", "name": "The Boss" }),
    )
    .await;
    let boss = status_user_id(&w, &w.ns.clone(), "boss").await;
    let victim = ObjectId::new();
    w.users()
        .insert_one(foreign_user(victim, "victim@example.com"))
        .await
        .unwrap();
    let boss_before = user_doc(&w, boss).await.unwrap();
    let victim_before = user_doc(&w, victim).await.unwrap();

    let spec = |name: &str| json!({ "instanceRef": lc(&w), "email": "x@example.com", "name": name, "deletionPolicy": "Delete" });
    w.apply_in(&t, "LibreChatUser", "x", spec("X One")).await;
    let x = status_user_id(&w, &t, "x").await;
    let api = dynamic(&w.client, &t, "LibreChatUser");
    // The status names the admin's account; then the spec changes.
    forge(&w, &t, boss).await;
    api.patch(
        "x",
        &PatchParams::default(),
        &Patch::Merge(json!({ "spec": { "name": "X Two" } })),
    )
    .await
    .unwrap();
    eventually("the change to reach x's own account", || async {
        (user_doc(&w, x).await?.get_str("name").ok()? == "X Two").then_some(())
    })
    .await;
    // The status names an unmanaged account, and several resyncs (3s) pass.
    forge(&w, &t, victim).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(
        user_doc(&w, boss).await.as_ref() == Some(&boss_before),
        "the admin's account must not be written"
    );
    assert!(
        user_doc(&w, victim).await.as_ref() == Some(&victim_before),
        "the unmanaged account must not be written"
    );
    eventually("status to name x's own account again", || async {
        let obj = get_in(&w.client, &t, "librechatusers", "x").await?;
        (obj.pointer("/status/userId")?.as_str()? == x.to_hex()).then_some(())
    })
    .await;

    // Deleting with deletionPolicy: Delete while the status names the admin's account.
    forge(&w, &t, boss).await;
    delete_in(&w.client, &t, "LibreChatUser", "x").await;
    wait_gone_in(&w, &t, "librechatusers", "x").await;
    assert!(
        user_doc(&w, x).await.is_none(),
        "x's own account is deleted"
    );
    assert!(
        user_doc(&w, boss).await.as_ref() == Some(&boss_before),
        "the admin's account must survive"
    );
    assert!(
        user_doc(&w, victim).await.as_ref() == Some(&victim_before),
        "the unmanaged account must survive"
    );
}

#[tokio::test]
async fn librechats_own_bans_are_never_lifted_by_the_operator() {
    let w = World::with_instance("tr-native", json!({})).await;
    w.apply(
        "LibreChatUser",
        "u",
        json!({ "instanceRef": { "name": "lc" }, "email": "u@example.com" }),
    )
    .await;
    let id = status_user_id(&w, &w.ns.clone(), "u").await;
    let key = format!("BANS:{}", id.to_hex());

    // A UserBan that has ended, then LibreChat bans the user on its own.
    w.apply(
        "UserBan",
        "brief",
        json!({ "instanceRef": { "name": "lc" }, "userRef": { "name": "u" }, "duration": "3s" }),
    )
    .await;
    w.wait_condition("userbans", "brief", "Ready", "True", Some("Expired"))
        .await;
    let end = jiff::Timestamp::now().as_millisecond() + 3_600_000;
    insert_native_ban(&w, &key, end).await;
    let native = log_doc(&w, &key).await.unwrap();
    let mut r = redis().await;
    let counter = format!("violations:message_limit:message_limit:{}", id.to_hex());
    let _: () = r.set(&counter, 20).await.unwrap();
    tokio::time::sleep(Duration::from_secs(12)).await;
    let after = log_doc(&w, &key).await;
    assert!(
        after.as_ref() == Some(&native),
        "LibreChat's own ban must stay exactly as written: {after:?}"
    );
    let counted: bool = r.exists(&counter).await.unwrap();
    assert!(counted, "LibreChat's violation counter must stay");
    let _: () = r.del(&counter).await.unwrap();

    // A ban LibreChat wrote before a UserBan outlives the UserBan.
    w.apply(
        "LibreChatUser",
        "v",
        json!({ "instanceRef": { "name": "lc" }, "email": "v@example.com" }),
    )
    .await;
    let v = status_user_id(&w, &w.ns.clone(), "v").await;
    let key = format!("BANS:{}", v.to_hex());
    let end = jiff::Timestamp::now().as_millisecond() + 3_600_000;
    let native = insert_native_ban(&w, &key, end).await;
    w.apply(
        "UserBan",
        "long",
        json!({ "instanceRef": { "name": "lc" }, "userRef": { "name": "v" }, "duration": "1d" }),
    )
    .await;
    w.wait_condition("userbans", "long", "Ready", "True", Some("Banned"))
        .await;
    w.delete("UserBan", "long").await;
    w.wait_gone("userbans", "long").await;
    let d = log_doc(&w, &key)
        .await
        .expect("LibreChat's own ban must still be there");
    assert!(in_force(&d), "LibreChat's own ban must still be in force");
    let value: Value = serde_json::from_str(d.get_str("value").unwrap()).unwrap();
    let expected: Value = serde_json::from_str(&native).unwrap();
    assert_eq!(value, expected, "LibreChat's own value must be back");
    assert_eq!(d.get_datetime("expiresAt").unwrap().timestamp_millis(), end);
    // As LibreChat's checkBan reads it: still banned.
    w.contract_check(json!({ "bans": [{ "key": key, "expectActive": true }] }));
}

#[tokio::test]
async fn a_banned_user_cannot_escape_by_deleting_their_account() {
    let w = World::with_instance("tr-escape", json!({})).await;
    w.apply(
        "LibreChatUser",
        "u",
        json!({ "instanceRef": { "name": "lc" }, "email": "escape@example.com" }),
    )
    .await;
    let first = status_user_id(&w, &w.ns.clone(), "u").await;
    w.apply(
        "UserBan",
        "perma",
        json!({ "instanceRef": { "name": "lc" }, "userRef": { "name": "u" } }),
    )
    .await;
    w.wait_condition("userbans", "perma", "Ready", "True", Some("Banned"))
        .await;

    // LibreChat's own account deletion (DELETE /api/user/delete).
    w.users().delete_one(doc! { "_id": first }).await.unwrap();
    let second = eventually("the account to be re-created", || async {
        w.find_user("escape@example.com")
            .await?
            .get_object_id("_id")
            .ok()
    })
    .await;
    assert_ne!(first, second);
    let key = format!("BANS:{}", second.to_hex());
    eventually("the new account to be banned", || async {
        log_doc(&w, &key).await.filter(in_force)
    })
    .await;
    let obj = eventually("the ban to follow the new account", || async {
        let obj = w.get("userbans", "perma").await?;
        (obj.pointer("/status/userId")?.as_str()? == second.to_hex()).then_some(obj)
    })
    .await;
    let ready = condition(&obj, "Ready").unwrap();
    assert!(
        ready.status == "True" && ready.reason == "Banned",
        "the ban must stay in force: {} {}: {}",
        ready.status,
        ready.reason,
        ready.message
    );
    // And it stays that way (never InvalidSpec for having moved).
    tokio::time::sleep(Duration::from_secs(7)).await;
    let obj = w
        .wait_condition("userbans", "perma", "Ready", "True", Some("Banned"))
        .await;
    assert_eq!(
        obj.pointer("/status/userId").and_then(Value::as_str),
        Some(second.to_hex().as_str())
    );
    assert!(log_doc(&w, &key).await.is_some_and(|d| in_force(&d)));
    // As LibreChat's checkBan reads it: the re-created account is banned.
    w.contract_check(json!({ "bans": [{ "key": key, "expectActive": true }] }));
}

#[tokio::test]
async fn a_tenant_cannot_ban_an_admin_or_an_ip() {
    let (w, t) = tenant_world("tr-bans", json!({})).await;
    let boss = declared_admin(&w).await;
    let by_email = json!({ "instanceRef": lc(&w), "email": "boss@example.com" });
    let by_ip = json!({ "instanceRef": lc(&w), "ip": "203.0.113.9" });

    w.apply_in(&t, "UserBan", "oust", by_email.clone()).await;
    w.apply_in(&t, "UserBan", "wall", by_ip.clone()).await;
    ready_in(&w, &t, "userbans", "oust", "False", "NotPermitted").await;
    ready_in(&w, &t, "userbans", "wall", "False", "NotPermitted").await;
    assert_eq!(
        count(&w, "logs", doc! {}).await,
        0,
        "nothing may be written"
    );
    assert_eq!(count(&w, "librechat_operator_bans", doc! {}).await, 0);

    // From the instance's own namespace, both work.
    w.apply("UserBan", "oust", by_email).await;
    w.apply("UserBan", "wall", by_ip).await;
    w.wait_condition("userbans", "oust", "Ready", "True", Some("Banned"))
        .await;
    w.wait_condition("userbans", "wall", "Ready", "True", Some("Banned"))
        .await;
    assert!(log_doc(&w, &format!("BANS:{}", boss.to_hex()))
        .await
        .is_some_and(|d| in_force(&d)));
    assert!(log_doc(&w, "BANS:203.0.113.9")
        .await
        .is_some_and(|d| in_force(&d)));
}

/// The attack: a tenant adopts someone's self-registered account (adoption keeps a name as
/// declared, nothing more) and bans it, which also ends every session of that person.
#[tokio::test]
async fn a_tenant_cannot_ban_an_account_it_only_adopted() {
    let (w, t) = tenant_world("tr-ban-adopt", json!({})).await;
    let id = ObjectId::new();
    w.users()
        .insert_one(foreign_user(id, "someone@example.com"))
        .await
        .unwrap();
    w.apply_in(&t, "LibreChatUser", "someone", json!({ "instanceRef": lc(&w),
                                                       "email": "someone@example.com", "adopt": true }))
        .await;
    assert_eq!(status_user_id(&w, &t, "someone").await, id);

    w.apply_in(
        &t,
        "UserBan",
        "by-email",
        json!({ "instanceRef": lc(&w), "email": "someone@example.com" }),
    )
    .await;
    w.apply_in(
        &t,
        "UserBan",
        "by-ref",
        json!({ "instanceRef": lc(&w), "userRef": { "name": "someone" } }),
    )
    .await;
    ready_in(&w, &t, "userbans", "by-email", "False", "NotPermitted").await;
    ready_in(&w, &t, "userbans", "by-ref", "False", "NotPermitted").await;
    assert_eq!(count(&w, "logs", doc! {}).await, 0, "no ban may be written");
    assert_eq!(count(&w, "librechat_operator_bans", doc! {}).await, 0);
}

/// The attack: a tenant bans an email while it manages the account, lets the account go, and
/// the ban follows the email to the account another namespace creates for it later.
#[tokio::test]
async fn a_tenants_email_ban_does_not_follow_the_email_to_another_namespaces_account() {
    let (w, t) = tenant_world("tr-ban-follow", json!({})).await;
    let spec =
        json!({ "instanceRef": lc(&w), "email": "moving@example.com", "deletionPolicy": "Delete" });
    w.apply_in(&t, "LibreChatUser", "moving", spec).await;
    let first = status_user_id(&w, &t, "moving").await;
    w.apply_in(
        &t,
        "UserBan",
        "grudge",
        json!({ "instanceRef": lc(&w), "email": "moving@example.com" }),
    )
    .await;
    ready_in(&w, &t, "userbans", "grudge", "True", "Banned").await;
    assert!(log_doc(&w, &format!("BANS:{}", first.to_hex()))
        .await
        .is_some_and(|d| in_force(&d)));

    // The tenant deletes its account; the instance's namespace creates one for the email.
    delete_in(&w.client, &t, "LibreChatUser", "moving").await;
    wait_gone_in(&w, &t, "librechatusers", "moving").await;
    w.apply(
        "LibreChatUser",
        "moved",
        json!({ "instanceRef": { "name": "lc" }, "email": "moving@example.com" }),
    )
    .await;
    let second = status_user_id(&w, &w.ns.clone(), "moved").await;
    assert_ne!(first, second);
    assert!(
        !log_doc(&w, &format!("BANS:{}", second.to_hex()))
            .await
            .is_some_and(|d| in_force(&d)),
        "the tenant's ban must not reach the account made for the instance's namespace"
    );
    // The tenant's ban, asked again, is refused and holds nothing.
    let patch = json!({ "spec": { "reason": "asked again" } });
    dynamic(&w.client, &t, "UserBan")
        .patch("grudge", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    ready_in(&w, &t, "userbans", "grudge", "False", "NotPermitted").await;
    assert_eq!(
        count(&w, "librechat_operator_bans", doc! {}).await,
        0,
        "its shares are lifted"
    );
}

/// The attack: LibreChat counts an account's violations and bans it at its thresholds; the
/// tenant that owns the account bans and lifts it to wipe that record. Only the instance's
/// administrators forgive: their lift clears the counters, a tenant's leaves them.
#[tokio::test]
async fn a_tenant_cannot_wipe_librechats_violation_counters_by_banning_its_own_account() {
    let (w, t) = tenant_world("tr-ban-forgive", json!({})).await;
    let account = ("rowdy", "rowdy@example.com");
    let (id, counter) =
        tenant_account_with_violations(&w, &t, account, ("message_limit", 19)).await;
    let bans_key = format!("BANS:{}", id.to_hex());
    let mut r = redis().await;

    tenant_bans_and_lifts(&w, &t, "self-ban", "rowdy").await;
    assert!(
        log_doc(&w, &bans_key).await.is_none(),
        "the tenant's ban is lifted"
    );
    let kept: Option<i64> = r.get(&counter).await.unwrap();
    assert_eq!(kept, Some(19), "LibreChat's violation counter must stay");

    // The administrators' ban of the same account, lifted, forgives.
    let by_email = json!({ "instanceRef": { "name": "lc" }, "email": "rowdy@example.com" });
    w.apply("UserBan", "forgiven", by_email).await;
    w.wait_condition("userbans", "forgiven", "Ready", "True", Some("Banned"))
        .await;
    w.delete("UserBan", "forgiven").await;
    w.wait_gone("userbans", "forgiven").await;
    assert!(log_doc(&w, &bans_key).await.is_none());
    let cleared: bool = r.exists(&counter).await.unwrap();
    assert!(!cleared, "the administrators' lift clears the counters");
}

/// The attack: a tenant keeps the claim of an email whose account went (its LibreChatUser
/// stalled), the person registers again under that email, and the tenant bans the email. The
/// claim names the old account only: the new one is not the tenant's to lock out.
#[tokio::test]
async fn a_tenants_email_ban_does_not_reach_the_account_a_person_registered_again() {
    let (w, t) = tenant_world("tr-ban-again", json!({})).await;
    let email = "again@example.com";
    let spec = json!({ "instanceRef": lc(&w), "email": email });
    w.apply_in(&t, "LibreChatUser", "again", spec).await;
    let first = status_user_id(&w, &t, "again").await;
    let invalid = json!({ "spec": { "username": "$where" } });
    dynamic(&w.client, &t, "LibreChatUser")
        .patch("again", &PatchParams::default(), &Patch::Merge(&invalid))
        .await
        .unwrap();
    ready_in(&w, &t, "librechatusers", "again", "False", "InvalidSpec").await;
    w.users().delete_one(doc! { "_id": first }).await.unwrap();
    let second = ObjectId::new();
    w.users()
        .insert_one(foreign_user(second, email))
        .await
        .unwrap();

    let ban = json!({ "instanceRef": lc(&w), "email": email });
    w.apply_in(&t, "UserBan", "lockout", ban).await;
    let told = ready_in(&w, &t, "userbans", "lockout", "False", "NotPermitted").await;
    assert!(
        told.contains("not an account managed from namespace"),
        "{told}"
    );
    assert!(
        !log_doc(&w, &format!("BANS:{}", second.to_hex()))
            .await
            .is_some_and(|d| in_force(&d)),
        "the person's new account must not be banned"
    );
    assert_eq!(count(&w, "librechat_operator_bans", doc! {}).await, 0);
    let key = format!("BANS:{}", second.to_hex());
    w.contract_check(json!({ "bans": [ { "key": key, "expectActive": false } ] }));
}

/// The owner record's pending follow-ups for `email`.
async fn follow_ups(w: &World, email: &str) -> Vec<String> {
    owner_record(w, email)
        .await
        .and_then(|r| r.get_array("followUps").ok().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|b| b.as_str().map(str::to_string))
        .collect()
}

/// `c` (crash@example.com) with two sessions; its password Secret rotated while the operator
/// was down, and the operator crashed after writing the new hash, before ending the sessions
/// (promised in the ownership record). Returns the account and the Secret version status showed.
async fn rotated_and_crashed_before_revocation(w: &mut World) -> (ObjectId, Option<Value>) {
    w.secret("pw", &[("password", PASSWORD)]).await;
    w.apply(
        "LibreChatUser",
        "c",
        crate::user::local_user("crash@example.com", "pw"),
    )
    .await;
    let id = status_user_id(w, &w.ns.clone(), "c").await;
    for hash in ["a", "b"] {
        open_session(w, id, hash).await;
    }
    let version_before = w
        .get("librechatusers", "c")
        .await
        .unwrap()
        .pointer("/status/passwordSecretVersion")
        .cloned();

    w.stop_operator();
    w.secret("pw", &[("password", "A-Rotated-Password-42")])
        .await;
    w.start_operator_with_env(&[("LIBRECHAT_OPERATOR_CRASH_AT", "after-password-hash")]);
    let code = w.wait_operator_exit(PATIENCE).await;
    assert_eq!(code, Some(86), "the operator must reach the crash point");
    let stored = user_doc(w, id).await.unwrap();
    assert!(
        bcrypt::verify("A-Rotated-Password-42", stored.get_str("password").unwrap()).unwrap(),
        "the new hash is written before the crash"
    );
    assert_eq!(
        count(w, "sessions", doc! { "user": id }).await,
        2,
        "the crash came before the revocation"
    );
    assert!(
        follow_ups(w, "crash@example.com")
            .await
            .contains(&"revokeSessions".to_string()),
        "the revocation is promised in the ownership record"
    );

    (id, version_before)
}

/// The operator dies between inserting a tenant's account and recording that it created it,
/// and the object is deleted before it comes back. The account is still the operator's own
/// (its id is the one reserved for it): `deletionPolicy: Delete` deletes it. Before, the
/// unconfirmed record read as an adoption, which a tenant without `manageAdoptedAccounts` may
/// not delete: the account was released and stayed, managed by nobody.
#[tokio::test]
async fn an_account_created_just_before_a_crash_is_deleted_with_its_object() {
    let (mut w, t) = tenant_world("tr-crashnew", json!({})).await;
    w.stop_operator();
    let namespaces = format!("{},{t}", w.ns);
    w.start_operator_in_with_env(
        &namespaces,
        &[("LIBRECHAT_OPERATOR_CRASH_AT", "after-account-insert")],
    );
    let spec = json!({ "instanceRef": lc(&w), "email": "fresh@example.com",
                       "deletionPolicy": "Delete" });
    w.apply_in(&t, "LibreChatUser", "fresh", spec).await;
    let code = w.wait_operator_exit(PATIENCE).await;
    assert_eq!(code, Some(86), "the operator must reach the crash point");
    assert!(w.find_user("fresh@example.com").await.is_some());

    delete_in(&w.client, &t, "LibreChatUser", "fresh").await;
    w.start_operator_in(Some(&namespaces));
    eventually("the object to be gone", || async {
        get_in(&w.client, &t, "librechatusers", "fresh")
            .await
            .is_none()
            .then_some(())
    })
    .await;
    assert!(
        w.find_user("fresh@example.com").await.is_none(),
        "the account the operator created stayed behind, released"
    );
}

/// The object that owed a session revocation (its password changed, the crash came before the
/// sessions ended) is gone without its cleanup, and another object takes the account over.
/// What the gone object owed is done before its record goes. Before, the record was released
/// with the promise in it: the sessions of the old password stayed valid under the new owner.
#[tokio::test]
async fn an_account_taken_over_from_a_gone_object_gets_what_it_was_owed() {
    let mut w = World::with_instance("tr-owed", json!({})).await;
    let (id, _) = rotated_and_crashed_before_revocation(&mut w).await;
    // Gone while the operator is down, its finalizer removed by hand.
    w.remove_without_cleanup("LibreChatUser", "c").await;

    w.start_operator();
    let spec = json!({ "instanceRef": { "name": "lc" }, "email": "crash@example.com",
                       "adopt": true });
    w.apply("LibreChatUser", "heir", spec).await;
    w.wait_condition("librechatusers", "heir", "Ready", "True", None)
        .await;
    assert_eq!(
        count(&w, "sessions", doc! { "user": id }).await,
        0,
        "the sessions the gone object promised to end survived the take-over"
    );
    w.contract_check(json!({ "sessionsRevoked": [id.to_hex()] }));
}

#[tokio::test]
async fn a_crash_between_new_password_and_session_revocation_still_revokes() {
    let mut w = World::with_instance("tr-crashpw", json!({})).await;
    let (id, version_before) = rotated_and_crashed_before_revocation(&mut w).await;
    w.start_operator();
    eventually("the sessions to be revoked", || async {
        (count(&w, "sessions", doc! { "user": id }).await == 0).then_some(())
    })
    .await;
    let obj = eventually("PasswordReady for the new Secret version", || async {
        let obj = w.get("librechatusers", "c").await?;
        (obj.pointer("/status/passwordSecretVersion").cloned() != version_before).then_some(obj)
    })
    .await;
    let ready = condition(&obj, "PasswordReady").unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("True", "PasswordApplied")
    );
    assert!(follow_ups(&w, "crash@example.com").await.is_empty());
    assert!(!w.operator_log().contains("A-Rotated-Password-42"));
    // LibreChat's own code agrees: the new password logs in, no old session survives.
    w.contract_check(json!({
        "users": [{ "email": "crash@example.com", "password": "A-Rotated-Password-42" }],
        "sessionsRevoked": [id.to_hex()],
    }));
}

/// The same crash, and Redis is out when the operator comes back: the sessions still end
/// (that needs MongoDB alone) while the rest of the account waits for Redis.
#[tokio::test]
async fn a_crash_before_revocation_still_revokes_while_redis_is_out() {
    let mut w = World::with_instance("tr-crashredis", json!({})).await;
    let (id, _) = rotated_and_crashed_before_revocation(&mut w).await;
    let dead_redis = "redis://127.0.0.1:1/";
    w.secret(
        "lc-stores",
        &[("mongo", &w.mongo_uri()), ("redis", dead_redis)],
    )
    .await;
    // As the instance's status read when the operator went down: only Redis out, so the
    // account's reconcile takes the path that writes nothing to it until Redis is back.
    let generation = w
        .get("librechatinstances", "lc")
        .await
        .unwrap()
        .pointer("/metadata/generation")
        .cloned();
    let said = |type_: &str, status: &str, reason: &str| {
        json!({ "type": type_, "status": status, "reason": reason, "message": "as left",
                "observedGeneration": generation, "lastTransitionTime": "2024-01-01T00:00:00Z" })
    };
    let conditions = [
        said("Ready", "False", "Unreachable"),
        said("MongoReachable", "True", "Connected"),
        said("RedisReachable", "False", "Unreachable"),
    ];
    dynamic(&w.client, &w.ns, "LibreChatInstance")
        .patch_status(
            "lc",
            &PatchParams::default(),
            &Patch::Merge(&json!({ "status": { "conditions": conditions } })),
        )
        .await
        .unwrap();
    w.start_operator();
    eventually("the sessions to be revoked", || async {
        (count(&w, "sessions", doc! { "user": id }).await == 0).then_some(())
    })
    .await;
    w.contract_check(json!({ "sessionsRevoked": [id.to_hex()] }));
}

/// The same crash, then the object is deleted (Retain) before the operator is back: the
/// sessions still end before the ownership record, which holds the promise, goes with it.
#[tokio::test]
async fn a_deletion_after_a_crash_between_new_password_and_revocation_still_revokes() {
    let mut w = World::with_instance("tr-crashdel", json!({})).await;
    let (id, _) = rotated_and_crashed_before_revocation(&mut w).await;
    w.delete("LibreChatUser", "c").await;
    w.start_operator();
    w.wait_gone("librechatusers", "c").await;
    assert_eq!(count(&w, "sessions", doc! { "user": id }).await, 0);
    assert!(user_doc(&w, id).await.is_some(), "Retain keeps the account");
    assert!(owner_record(&w, "crash@example.com").await.is_none());
    w.contract_check(json!({ "sessionsRevoked": [id.to_hex()] }));
}

/// The same crash, then the object is made one the operator refuses before it reaches the
/// account (here a `logoutAt` in the future): the refusal does not hold the revocation up.
#[tokio::test]
async fn a_refusal_after_a_crash_between_new_password_and_revocation_still_revokes() {
    let mut w = World::with_instance("tr-crashrefused", json!({})).await;
    let (id, _) = rotated_and_crashed_before_revocation(&mut w).await;
    let tomorrow = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24);
    let patch = json!({ "spec": { "logoutAt": tomorrow.to_string() } });
    dynamic(&w.client, &w.ns, "LibreChatUser")
        .patch("c", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    w.start_operator();
    w.wait_condition("librechatusers", "c", "Ready", "False", Some("InvalidSpec"))
        .await;
    eventually("the sessions to be revoked", || async {
        (count(&w, "sessions", doc! { "user": id }).await == 0).then_some(())
    })
    .await;
    assert!(follow_ups(&w, "crash@example.com").await.is_empty());
    w.contract_check(json!({ "sessionsRevoked": [id.to_hex()] }));
}

/// The same crash, then the object declares a role it may not hold (another namespace's):
/// that refusal, too, comes before the account and must not hold the revocation up.
#[tokio::test]
async fn a_role_refusal_after_a_crash_between_new_password_and_revocation_still_revokes() {
    let policy = json!({ "tenantPolicy": { "manageRoles": true } });
    let (mut w, t) = tenant_world("tr-crashrole2", policy).await;
    let role = json!({ "instanceRef": lc(&w), "name": "THEIRS", "permissions": { "AGENTS": { "USE": true } } });
    w.apply_in(&t, "LibreChatRole", "theirs", role).await;
    ready_in(&w, &t, "librechatroles", "theirs", "True", "Reconciled").await;
    let (id, _) = rotated_and_crashed_before_revocation(&mut w).await;
    let patch = json!({ "spec": { "role": "THEIRS" } });
    dynamic(&w.client, &w.ns, "LibreChatUser")
        .patch("c", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    w.start_operator();
    w.wait_condition(
        "librechatusers",
        "c",
        "Ready",
        "False",
        Some("NotPermitted"),
    )
    .await;
    eventually("the sessions to be revoked", || async {
        (count(&w, "sessions", doc! { "user": id }).await == 0).then_some(())
    })
    .await;
    assert!(follow_ups(&w, "crash@example.com").await.is_empty());
    assert_eq!(user_doc(&w, id).await.unwrap().get_str("role"), Ok("USER"));
    w.contract_check(json!({ "sessionsRevoked": [id.to_hex()] }));
}

/// `b` (banned@example.com) with two sessions, and a permanent UserBan `wall` of it applied
/// while the operator is down. Returns the account.
async fn user_with_sessions_and_pending_ban(w: &mut World) -> ObjectId {
    let spec = json!({ "instanceRef": { "name": "lc" }, "email": "banned@example.com" });
    w.apply("LibreChatUser", "b", spec).await;
    let id = status_user_id(w, &w.ns.clone(), "b").await;
    for hash in ["c", "d"] {
        open_session(w, id, hash).await;
    }
    w.stop_operator();
    let ban = json!({ "instanceRef": { "name": "lc" }, "userRef": { "name": "b" } });
    w.apply("UserBan", "wall", ban).await;
    id
}

/// The fault: the operator dies (or Redis or MongoDB fails) after writing the ban, before
/// ending the sessions. LibreChat does not check bans when a token is refreshed, so the ban
/// must still end them, though it is already in force.
#[tokio::test]
async fn a_ban_cut_short_before_ending_the_sessions_still_ends_them() {
    let mut w = World::with_instance("tr-crashban", json!({})).await;
    let id = user_with_sessions_and_pending_ban(&mut w).await;
    w.start_operator_with_env(&[("LIBRECHAT_OPERATOR_CRASH_AT", "after-ban-written")]);
    let code = w.wait_operator_exit(PATIENCE).await;
    assert_eq!(code, Some(86), "the operator must reach the crash point");
    let key = format!("BANS:{}", id.to_hex());
    assert!(log_doc(&w, &key).await.is_some_and(|d| in_force(&d)));
    assert_eq!(count(&w, "sessions", doc! { "user": id }).await, 2);

    w.start_operator();
    eventually("the banned account's sessions to end", || async {
        (count(&w, "sessions", doc! { "user": id }).await == 0).then_some(())
    })
    .await;
    ready_in(&w, &w.ns, "userbans", "wall", "True", "Banned").await;
    w.contract_check(json!({ "bans": [ { "key": key, "expectActive": true } ],
                             "sessionsRevoked": [id.to_hex()] }));
}

/// The same crash, then the ban is edited into one the operator refuses before it reaches
/// its target (here a `duration` of `0s`): the refusal does not hold up ending the sessions
/// of the ban already in force.
#[tokio::test]
async fn a_refusal_after_a_ban_cut_short_still_ends_its_sessions() {
    let mut w = World::with_instance("tr-crashban2", json!({})).await;
    let id = user_with_sessions_and_pending_ban(&mut w).await;
    w.start_operator_with_env(&[("LIBRECHAT_OPERATOR_CRASH_AT", "after-ban-written")]);
    assert_eq!(w.wait_operator_exit(PATIENCE).await, Some(86));
    assert_eq!(count(&w, "sessions", doc! { "user": id }).await, 2);
    let patch = json!({ "spec": { "duration": "0s" } });
    dynamic(&w.client, &w.ns, "UserBan")
        .patch("wall", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();

    w.start_operator();
    ready_in(&w, &w.ns, "userbans", "wall", "False", "InvalidSpec").await;
    eventually("the banned account's sessions to end", || async {
        (count(&w, "sessions", doc! { "user": id }).await == 0).then_some(())
    })
    .await;
    let key = format!("BANS:{}", id.to_hex());
    let shares = w.db.collection::<Document>("librechat_operator_bans");
    let record = shares
        .find_one(doc! { "_id": &key })
        .await
        .unwrap()
        .unwrap();
    assert!(record.get("settling").is_none(), "{record}");
    w.contract_check(json!({ "sessionsRevoked": [id.to_hex()] }));
}

/// The fault: the operator dies after taking a deleted UserBan's share off the ban, before
/// lifting it. The next run must still lift it: nothing else would, once the finalizer goes.
#[tokio::test]
async fn a_lift_cut_short_is_finished_before_the_ban_object_goes() {
    let mut w = World::with_instance("tr-crashlift", json!({})).await;
    let id = user_with_sessions_and_pending_ban(&mut w).await;
    w.start_operator();
    ready_in(&w, &w.ns, "userbans", "wall", "True", "Banned").await;
    let key = format!("BANS:{}", id.to_hex());

    w.stop_operator();
    delete_in(&w.client, &w.ns, "UserBan", "wall").await;
    w.start_operator_with_env(&[("LIBRECHAT_OPERATOR_CRASH_AT", "after-ban-share-removed")]);
    let code = w.wait_operator_exit(PATIENCE).await;
    assert_eq!(code, Some(86), "the operator must reach the crash point");
    assert!(
        log_doc(&w, &key).await.is_some_and(|d| in_force(&d)),
        "the crash came before the lift"
    );

    w.start_operator();
    wait_gone_in(&w, &w.ns, "userbans", "wall").await;
    assert!(
        !log_doc(&w, &key).await.is_some_and(|d| in_force(&d)),
        "the ban must be lifted before its object goes"
    );
    assert_eq!(count(&w, "librechat_operator_bans", doc! {}).await, 0);
    w.contract_check(json!({ "bans": [ { "key": key, "expectActive": false } ] }));
}

#[tokio::test]
async fn a_crash_between_role_change_and_cache_drop_still_drops() {
    let mut w = World::with_instance("tr-crashrole", json!({})).await;
    let spec = |role: &str| json!({ "instanceRef": { "name": "lc" }, "email": "promoted@example.com", "role": role });
    w.apply("LibreChatUser", "p", spec("USER")).await;
    let id = status_user_id(&w, &w.ns.clone(), "p").await;
    let mut r = redis().await;
    let cached = [
        format!("AUTH_USER_DOC:auth-user-doc-byid:{}", id.to_hex()),
        format!("USER_PRINCIPALS:{}", id.to_hex()),
    ];
    for key in &cached {
        let _: () = r.set(key, "{\"value\":\"stale\"}").await.unwrap();
    }

    w.stop_operator();
    w.apply("LibreChatUser", "p", spec("ADMIN")).await;
    w.start_operator_with_env(&[("LIBRECHAT_OPERATOR_CRASH_AT", "after-role-change")]);
    let code = w.wait_operator_exit(PATIENCE).await;
    assert_eq!(code, Some(86), "the operator must reach the crash point");
    assert_eq!(
        user_doc(&w, id).await.unwrap().get_str("role").unwrap(),
        "ADMIN"
    );
    for key in &cached {
        let left: bool = r.exists(key).await.unwrap();
        assert!(left, "{key}: the crash came before the caches were dropped");
    }

    w.start_operator();
    eventually("the stale caches to be dropped", || async {
        for key in &cached {
            let left: bool = redis().await.exists(key).await.ok()?;
            if left {
                return None;
            }
        }
        Some(())
    })
    .await;
    w.wait_condition("librechatusers", "p", "Ready", "True", None)
        .await;
    assert!(follow_ups(&w, "promoted@example.com").await.is_empty());
}

/// A private SecantusDB that is resumed and stopped whatever happens to the test.
struct PrivateMongo {
    dir: std::path::PathBuf,
    pid: String,
}

impl PrivateMongo {
    fn start(port: u16, label: &str) -> PrivateMongo {
        let dir = std::env::temp_dir().join(format!("lco-{label}"));
        let _ = std::fs::remove_dir_all(&dir);
        start_private_mongo(port, &dir);
        let pid = std::fs::read_to_string(dir.join("secantus.pid"))
            .unwrap()
            .trim()
            .to_string();
        PrivateMongo { dir, pid }
    }

    fn signal(&self, signal: &str) {
        let ok = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(&self.pid)
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{signal} failed");
    }
}

impl Drop for PrivateMongo {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .arg("-CONT")
            .arg(&self.pid)
            .status();
        stop_private_mongo(&self.dir);
    }
}

#[tokio::test]
async fn a_stalled_mongodb_is_noticed_and_recovery_follows() {
    let mut w = World::new("tr-stall").await;
    let port = free_port();
    let mongo = PrivateMongo::start(port, &w.ns);
    w.start_operator();
    w.secret(
        "mongo",
        &[(
            "uri",
            &format!("mongodb://127.0.0.1:{port}/LibreChat?directConnection=true"),
        )],
    )
    .await;
    w.apply(
        "LibreChatInstance",
        "lc",
        json!({ "mongo": { "uriSecretRef": { "name": "mongo", "key": "uri" } }, "resyncPeriod": "2s" }),
    )
    .await;
    w.wait_condition("librechatinstances", "lc", "Ready", "True", None)
        .await;

    // The server stops answering, its connections stay open.
    mongo.signal("STOP");
    let noticed = eventually_within(Duration::from_secs(30), || async {
        let obj = w.get("librechatinstances", "lc").await?;
        (condition(&obj, "MongoReachable")?.status == "False").then_some(obj)
    })
    .await;
    let obj = noticed.expect("a stalled MongoDB must show as MongoReachable=False within 30s");
    assert_eq!(condition(&obj, "Ready").unwrap().status, "False");

    mongo.signal("CONT");
    w.wait_condition("librechatinstances", "lc", "MongoReachable", "True", None)
        .await;
    w.wait_condition("librechatinstances", "lc", "Ready", "True", None)
        .await;
}

#[tokio::test]
async fn deleting_an_instance_does_not_orphan_bans_or_invites() {
    let w = World::with_instance(
        "tr-orphan",
        json!({ "domainClient": "https://chat.example.com" }),
    )
    .await;
    w.apply(
        "UserBan",
        "wall",
        json!({ "instanceRef": { "name": "lc" }, "ip": "203.0.113.10" }),
    )
    .await;
    w.apply(
        "UserInvite",
        "welcome",
        json!({ "instanceRef": { "name": "lc" }, "email": "welcome@example.com" }),
    )
    .await;
    w.wait_condition("userbans", "wall", "Ready", "True", Some("Banned"))
        .await;
    w.wait_condition("userinvites", "welcome", "Ready", "True", Some("Pending"))
        .await;
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> =
        kube::Api::namespaced(w.client.clone(), &w.ns);
    let raw = secrets.get("welcome-invite").await.unwrap().data.unwrap()["token"]
        .0
        .clone();
    let token = hex::encode(Sha256::digest(&raw));
    assert_eq!(count(&w, "tokens", doc! { "token": &token }).await, 1);

    let message = delete_instance_held_by_dependents(&w).await;
    assert!(
        message.contains(&format!("{}/wall", w.ns))
            && message.contains(&format!("{}/welcome", w.ns)),
        "the message must name the ban and the invite: {message}"
    );
    assert!(log_doc(&w, "BANS:203.0.113.10")
        .await
        .is_some_and(|d| in_force(&d)));
    assert_eq!(count(&w, "tokens", doc! { "token": &token }).await, 1);

    w.delete("UserBan", "wall").await;
    w.delete("UserInvite", "welcome").await;
    w.wait_gone("userbans", "wall").await;
    w.wait_gone("userinvites", "welcome").await;
    assert!(
        log_doc(&w, "BANS:203.0.113.10").await.is_none(),
        "the ban is lifted"
    );
    assert_eq!(
        count(&w, "tokens", doc! { "token": &token }).await,
        0,
        "the invite is revoked"
    );
    w.wait_gone("librechatinstances", "lc").await;
}

#[tokio::test]
async fn a_tenant_does_not_learn_other_tenants_objects_while_the_instance_is_deleted() {
    let mut w = World::new("tr-deleting").await;
    let (a, b) = (format!("{}-a", w.ns), format!("{}-b", w.ns));
    create_namespace(&w.client, &a).await;
    create_namespace(&w.client, &b).await;
    w.start_operator_in(Some(&format!("{},{a},{b}", w.ns)));
    w.ready_instance(
        "lc",
        json!({ "allowedNamespaces": [a.clone(), b.clone()], "domainClient": "https://chat.example.com" }),
    )
    .await;
    for (ns, name, email) in [
        (&a, "welcome", "welcome@example.com"),
        (&b, "board-seat", "board@example.com"),
    ] {
        let spec = json!({ "instanceRef": lc(&w), "email": email });
        w.apply_in(ns, "UserInvite", name, spec).await;
        ready_in(&w, ns, "userinvites", name, "True", "Pending").await;
    }

    let admin_view = delete_instance_held_by_dependents(&w).await;
    assert!(
        admin_view.contains(&format!("{b}/board-seat")),
        "the instance's namespace reads which objects hold the deletion: {admin_view}"
    );

    // Tenant a's invite waits for the instance; its status must not list tenant b's objects.
    let told = ready_in(
        &w,
        &a,
        "userinvites",
        "welcome",
        "False",
        "InstanceNotReady",
    )
    .await;
    assert!(
        !told.contains(&b) && !told.contains("board-seat"),
        "a tenant read another tenant's object: {told}"
    );
    assert!(told.contains("being deleted"), "{told}");

    delete_in(&w.client, &a, "UserInvite", "welcome").await;
    delete_in(&w.client, &b, "UserInvite", "board-seat").await;
    wait_gone_in(&w, &a, "userinvites", "welcome").await;
    wait_gone_in(&w, &b, "userinvites", "board-seat").await;
    w.wait_gone("librechatinstances", "lc").await;
}

#[tokio::test]
async fn an_unencoded_uri_password_never_leaks() {
    let mut w = World::new("tr-uri").await;
    w.start_operator();
    let port = free_port();
    w.secret(
        "mongo",
        &[("uri", &format!("mongodb://lc:Ab?cd@127.0.0.1:{port}/db"))],
    )
    .await;
    w.apply(
        "LibreChatInstance",
        "lc",
        json!({ "mongo": { "uriSecretRef": { "name": "mongo", "key": "uri" } }, "resyncPeriod": "2s" }),
    )
    .await;
    let obj = w
        .wait_condition(
            "librechatinstances",
            "lc",
            "Ready",
            "False",
            Some("InvalidURI"),
        )
        .await;
    // A few health checks pass, so every path that reports the problem has run.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let obj = w.get("librechatinstances", "lc").await.unwrap_or(obj);
    let events: kube::Api<k8s_openapi::api::events::v1::Event> =
        kube::Api::namespaced(w.client.clone(), &w.ns);
    let events =
        serde_json::to_string(&events.list(&Default::default()).await.unwrap().items).unwrap();
    let log = w.operator_log();
    for fragment in ["Ab?cd", "cd@", "Ab?"] {
        assert!(
            !obj.to_string().contains(fragment),
            "the password leaked into the status"
        );
        assert!(
            !events.contains(fragment),
            "the password leaked into an event"
        );
        assert!(
            !log.contains(fragment),
            "the password leaked into the operator's log"
        );
    }
}

#[tokio::test]
async fn a_tenant_cannot_invite_an_email_declared_elsewhere() {
    let (w, t) = tenant_world(
        "tr-inv",
        json!({ "domainClient": "https://chat.example.com" }),
    )
    .await;
    // Declared in the instance's namespace, not created yet (its password Secret is missing).
    declared_without_account(&w, "later", "later@example.com").await;
    assert!(w.find_user("later@example.com").await.is_none());

    let told = tenant_invite_refused(&w, &t, "sneak", "Later@Example.com").await;
    // The same words as for an account another namespace owns: no pending-invite probe.
    assert!(
        told.contains("is owned or declared in another namespace"),
        "{told}"
    );
    assert_eq!(
        count(&w, "tokens", doc! {}).await,
        0,
        "no token may be issued"
    );
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> =
        kube::Api::namespaced(w.client.clone(), &t);
    assert!(secrets.get_opt("sneak-invite").await.unwrap().is_none());

    // An account another namespace owns reads exactly the same (before, `AlreadyRegistered`
    // told it apart from a pending declaration).
    w.secret("pw", &[("password", PASSWORD)]).await;
    w.apply(
        "LibreChatUser",
        "owned",
        crate::user::local_user("owned@example.com", "pw"),
    )
    .await;
    w.wait_condition("librechatusers", "owned", "Ready", "True", None)
        .await;
    let told_owned = tenant_invite_refused(&w, &t, "probe", "owned@example.com").await;
    assert_eq!(
        told_owned.replace("owned@example.com", "<email>"),
        told.replace("later@example.com", "<email>"),
        "a tenant tells another team's account from its pending declaration"
    );

    // An email nobody else declares: the tenant may invite it.
    w.apply_in(
        &t,
        "UserInvite",
        "fresh",
        json!({ "instanceRef": lc(&w), "email": "fresh@example.com" }),
    )
    .await;
    ready_in(&w, &t, "userinvites", "fresh", "True", "Pending").await;
    assert_eq!(
        count(&w, "tokens", doc! { "email": "fresh@example.com" }).await,
        1
    );
    assert_eq!(
        count(&w, "tokens", doc! { "email": "later@example.com" }).await,
        0
    );
}

/// The load a tenant could put on the API server: every reconcile of an invitation not yet
/// issued asked whether another namespace declares its email by listing every LibreChatUser
/// and UserInvite of the cluster, and one whose Secret name is taken retries every 10 s. It is
/// answered from the operator's caches (the attack: a few invitations left waiting; the
/// operator's own request counts must not grow with their retries), with the same answers.
#[tokio::test]
async fn waiting_invitations_do_not_list_the_cluster_on_every_retry() {
    let (w, t) = tenant_world(
        "tr-invload",
        json!({ "domainClient": "https://chat.example.com" }),
    )
    .await;
    // Another namespace's pending invitation is still seen, from the cache.
    w.apply(
        "UserInvite",
        "theirs",
        json!({ "instanceRef": { "name": "lc" }, "email": "theirs@example.com" }),
    )
    .await;
    w.wait_condition("userinvites", "theirs", "Ready", "True", Some("Pending"))
        .await;
    let told = tenant_invite_refused(&w, &t, "copy", "Theirs@Example.com").await;
    assert!(
        told.contains("is owned or declared in another namespace"),
        "{told}"
    );

    let lists = |resource: &str| {
        metric_value(
            w.http_port,
            &format!(
                "librechat_operator_api_requests_total{{verb=\"list\",resource=\"{resource}\"}}"
            ),
        )
    };
    // The watches' own lists are counted: the figure below is not a count of nothing.
    assert!(
        lists("librechatusers") >= 2,
        "one list per watched namespace"
    );
    for i in 0..3 {
        put_secret(
            &w.client,
            &t,
            &format!("stuck{i}-invite"),
            &[("token", "mine")],
        )
        .await;
        w.apply_in(
            &t,
            "UserInvite",
            &format!("stuck{i}"),
            json!({ "instanceRef": lc(&w), "email": format!("stuck{i}@example.com") }),
        )
        .await;
    }
    for i in 0..3 {
        ready_in(
            &w,
            &t,
            "userinvites",
            &format!("stuck{i}"),
            "False",
            "SecretNotOwned",
        )
        .await;
    }
    let (users_before, invites_before) = (lists("librechatusers"), lists("userinvites"));
    let reconciles = || {
        metric_value(
            w.http_port,
            "librechat_operator_reconciles_total{kind=\"UserInvite\"}",
        )
    };
    let start = reconciles();
    eventually("each waiting invitation retried at least twice", || async {
        (reconciles() >= start + 6).then_some(())
    })
    .await;
    assert_eq!(
        (lists("librechatusers"), lists("userinvites")),
        (users_before, invites_before),
        "retries of waiting invitations listed the cluster's users and invites"
    );
    assert_eq!(
        count(&w, "tokens", doc! {}).await,
        1,
        "only 'theirs' was issued"
    );
}

/// The invitation email goes out at most once: a crash right after sending, before the status
/// says so, must not send it again when the operator comes back.
#[tokio::test]
async fn a_crash_after_sending_an_invitation_does_not_send_it_twice() {
    let (port, inbox) = crate::invite::smtp_sink().await;
    let mut w = World::new("tr-mailonce").await;
    w.start_operator_with_env(&[("LIBRECHAT_OPERATOR_CRASH_AT", "after-invite-email")]);
    w.ready_instance(
        "lc",
        json!({ "domainClient": "https://chat.example.com",
                "smtp": { "host": "127.0.0.1", "port": port, "from": "LibreChat <noreply@example.com>", "security": "none" } }),
    )
    .await;
    w.apply(
        "UserInvite",
        "once",
        json!({ "instanceRef": { "name": "lc" }, "email": "once@example.com", "sendEmail": true }),
    )
    .await;
    let code = w.wait_operator_exit(PATIENCE).await;
    assert_eq!(
        code,
        Some(86),
        "the operator must crash right after sending"
    );
    assert_eq!(inbox.lock().unwrap().len(), 1, "the email went out once");
    let before = w.get("userinvites", "once").await.unwrap();
    assert!(
        before.pointer("/status/emailSentAt").is_none(),
        "the crash came before the status said so"
    );

    w.start_operator();
    let obj = eventually("the invite to settle after the restart", || async {
        let obj = w.get("userinvites", "once").await?;
        obj.pointer("/status/emailSentAt").is_some().then_some(obj)
    })
    .await;
    assert_eq!(obj.pointer("/status/phase"), Some(&json!("Pending")));
    // A few resyncs later, still the one email.
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(inbox.lock().unwrap().len(), 1, "the email was sent again");
}

/// A tenant that adopted someone's account cannot strip its second factor or log its owner out:
/// both are takeover steps, allowed only on accounts the tenant manages fully.
#[tokio::test]
async fn a_tenant_cannot_reset_the_two_factor_of_an_account_it_only_adopted() {
    let (w, t) = tenant_world("tr-2fa", json!({})).await;
    let id = ObjectId::new();
    let mut victim = foreign_user(id, "victim@example.com");
    victim.insert("twoFactorEnabled", true);
    victim.insert("totpSecret", "v3:00112233445566778899aabbccddeeff:abcdef");
    w.users().insert_one(victim).await.unwrap();
    crate::user::seed_session(&w, id, &"d".repeat(64)).await;
    let now = jiff::Timestamp::now().to_string();
    let before = user_doc(&w, id).await.unwrap();
    let attack = json!({ "instanceRef": lc(&w), "email": "victim@example.com", "adopt": true,
                         "name": "Taken Over", "resetTwoFactorAt": now, "logoutAt": now });
    w.apply_in(&t, "LibreChatUser", "grab", attack).await;
    ready_in(&w, &t, "librechatusers", "grab", "False", "NotPermitted").await;
    let stored = user_doc(&w, id).await.unwrap();
    assert_eq!(stored, before, "nothing of the account may be written");
    assert!(
        owner_record(&w, "victim@example.com").await.is_none(),
        "the refused adoption holds no claim"
    );
    assert!(
        stored.get_bool("twoFactorEnabled").unwrap(),
        "2FA was reset by a tenant"
    );
    assert!(stored.get_str("totpSecret").is_ok());
    w.contract_check(json!({ "sessionsPresent": [ id.to_hex() ] }));

    // Nor send verification links to someone whose email is not verified yet (each voids the
    // owner's own pending link, and with a mail relay, mails them at every resend).
    let unverified = ObjectId::new();
    let mut pending = foreign_user(unverified, "pending@example.com");
    pending.insert("emailVerified", false);
    w.users().insert_one(pending).await.unwrap();
    for (name, verified) in [("nag", json!(false)), ("vouch", json!(true))] {
        let mut attack = json!({ "instanceRef": lc(&w), "email": "pending@example.com",
                                 "adopt": true, "emailVerified": verified });
        if verified == json!(false) {
            attack["resendVerificationAt"] = json!(jiff::Timestamp::now().to_string());
        }
        w.apply_in(&t, "LibreChatUser", name, attack).await;
        let told = ready_in(&w, &t, "librechatusers", name, "False", "NotPermitted").await;
        assert!(told.contains("emailVerified"), "{told}");
        delete_in(&w.client, &t, "LibreChatUser", name).await;
        wait_gone_in(&w, &t, "librechatusers", name).await;
    }
    assert_eq!(count(&w, "tokens", doc! { "userId": unverified }).await, 0);
    assert!(!user_doc(&w, unverified)
        .await
        .unwrap()
        .get_bool("emailVerified")
        .unwrap());
}

/// A restarted operator takes a password as applied from status only for the account status
/// and the ownership record both name. A tenant that forges its status while the operator is
/// down (the new Secret version, the highest minimum, and the admin's account id) gets neither
/// a write to the admin's account nor its own rotation skipped.
#[tokio::test]
async fn a_forged_status_cannot_make_a_restart_skip_a_password() {
    const ROTATED: &str = "A-Rotated-Password-For-X-2";
    let (mut w, t) = tenant_world("tr-forge-restart", json!({})).await;
    let boss = declared_admin(&w).await;
    put_secret(&w.client, &t, "pw", &[("password", PASSWORD)]).await;
    let spec = json!({ "instanceRef": lc(&w), "email": "x@example.com",
        "password": { "secretRef": { "name": "pw", "key": "password" } } });
    w.apply_in(&t, "LibreChatUser", "x", spec).await;
    let x = status_user_id(&w, &t, "x").await;
    let boss_before = user_doc(&w, boss).await.unwrap();

    w.stop_operator();
    put_secret(&w.client, &t, "pw", &[("password", ROTATED)]).await;
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> =
        kube::Api::namespaced(w.client.clone(), &t);
    let meta = secrets.get("pw").await.unwrap().metadata;
    let version = format!(
        "{}/{}",
        meta.uid.unwrap_or_default(),
        meta.resource_version.unwrap_or_default()
    );
    let patch = json!({ "status": { "userId": boss.to_hex(),
        "passwordSecretVersion": version, "passwordMinLength": 128 } });
    dynamic(&w.client, &t, "LibreChatUser")
        .patch_status("x", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    w.start_operator_in(Some(&format!("{},{t}", w.ns)));

    eventually("status to name x's own account again", || async {
        let obj = get_in(&w.client, &t, "librechatusers", "x").await?;
        (obj.pointer("/status/userId")?.as_str()? == x.to_hex()).then_some(())
    })
    .await;
    w.contract_check(json!({ "users": [ { "email": "x@example.com", "password": ROTATED } ] }));
    assert!(
        user_doc(&w, boss).await.as_ref() == Some(&boss_before),
        "the admin's account must not be written"
    );
}

/// A namespace taken out of `allowedNamespaces` writes nothing new, but what the operator
/// promised for its earlier writes is still done: the end of every session of an account whose
/// password it changed, and the drop of LibreChat's cached copy of a role it changed (both
/// owed after a failed call when the admin removed the namespace). Left undone, the sessions a
/// rotation was meant to end live on, and LibreChat goes on serving stale permissions.
#[tokio::test]
async fn a_namespace_taken_out_of_the_policy_still_gets_its_owed_follow_ups() {
    let prefix =
        json!({ "redis": { "keyPrefix": "owed" }, "tenantPolicy": { "manageRoles": true } });
    let (mut w, t) = tenant_world("tr-outowed", prefix.clone()).await;
    let user = json!({ "instanceRef": lc(&w), "email": "owed@example.com" });
    w.apply_in(&t, "LibreChatUser", "c", user).await;
    let role = format!(
        "OWED{}",
        w.ns.len() * 1000 + w.ns.bytes().map(usize::from).sum::<usize>()
    );
    let declared = json!({ "instanceRef": lc(&w), "name": role, "permissions": { "AGENTS": { "USE": true } } });
    w.apply_in(&t, "LibreChatRole", "r", declared).await;
    let obj = wait_condition_in(&w.client, &t, "librechatusers", "c", "Ready", "True", None).await;
    let id = ObjectId::parse_str(obj.pointer("/status/userId").unwrap().as_str().unwrap()).unwrap();
    wait_condition_in(&w.client, &t, "librechatroles", "r", "Ready", "True", None).await;

    // Both are owed (as after a failed call), and the admin removes the namespace.
    w.stop_operator();
    open_session(&w, id, "a").await;
    w.db.collection::<Document>("librechat_operator_owners")
        .update_one(
            doc! { "_id": "owed@example.com" },
            doc! { "$addToSet": { "followUps": "revokeSessions" } },
        )
        .await
        .unwrap();
    let cached = format!("owed::ROLES:{role}");
    let mut r = redis().await;
    let _: () = r.set(&cached, "{\"value\":{}}").await.unwrap();
    let record = doc! { "_id": format!("role:{role}") };
    let owed = doc! { "$set": { "cacheDrops": [format!("role:{role}")],
    "cacheDropsDue": mongodb::bson::DateTime::now() } };
    let access = w.db.collection::<Document>("librechat_operator_access");
    assert_eq!(
        access
            .update_one(record.clone(), owed)
            .await
            .unwrap()
            .matched_count,
        1
    );
    let mut closed = prefix;
    closed["allowedNamespaces"] = json!([]);
    w.apply_instance_of_stores("lc", closed).await;
    w.start_operator_in(Some(&format!("{},{t}", w.ns)));

    ready_in(
        &w,
        &t,
        "librechatusers",
        "c",
        "False",
        "NamespaceNotAllowed",
    )
    .await;
    ready_in(
        &w,
        &t,
        "librechatroles",
        "r",
        "False",
        "NamespaceNotAllowed",
    )
    .await;
    eventually("the owed revocation and cache drop to be done", || async {
        let mut r = redis().await;
        let still_cached: bool = r.exists(&cached).await.ok()?;
        let drops = access.find_one(record.clone()).await.ok()??;
        let done = count(&w, "sessions", doc! { "user": id }).await == 0
            && follow_ups(&w, "owed@example.com").await.is_empty()
            && !still_cached
            && drops.get_array("cacheDrops").map_or(true, |d| d.is_empty());
        done.then_some(())
    })
    .await;
    w.contract_check(json!({ "sessionsRevoked": [id.to_hex()] }));
}

/// The attack: a team taken out of `allowedNamespaces` (frozen by its administrators, whose
/// README says its accounts stay) switches its LibreChatUsers to `deletionPolicy: Delete` and
/// deletes them, to wipe the accounts the operator made for it with their conversations. The
/// object goes and its account is released, not deleted. (A `Delete` declared while it was
/// admitted still applies: `a_namespace_never_admitted_cannot_hold_up_the_instance_deletion`.)
#[tokio::test]
async fn a_namespace_taken_out_of_the_policy_cannot_delete_the_accounts_it_made() {
    let (w, t) = tenant_world("tr-outdel", json!({})).await;
    let email = "frozen@example.com";
    let spec = json!({ "instanceRef": lc(&w), "email": email });
    w.apply_in(&t, "LibreChatUser", "frozen", spec.clone())
        .await;
    let id = status_user_id(&w, &t, "frozen").await;
    w.db.collection::<Document>("conversations")
        .insert_one(doc! { "conversationId": "c-frozen", "user": id.to_hex(), "title": "kept" })
        .await
        .unwrap();

    w.apply_instance_of_stores("lc", json!({ "allowedNamespaces": [] }))
        .await;
    ready_in(
        &w,
        &t,
        "librechatusers",
        "frozen",
        "False",
        "NamespaceNotAllowed",
    )
    .await;
    let mut wiping = spec;
    wiping["deletionPolicy"] = json!("Delete");
    w.apply_in(&t, "LibreChatUser", "frozen", wiping).await;
    delete_in(&w.client, &t, "LibreChatUser", "frozen").await;
    wait_gone_in(&w, &t, "librechatusers", "frozen").await;

    assert!(
        w.find_user(email).await.is_some(),
        "the account was deleted"
    );
    assert_eq!(
        count(&w, "conversations", doc! { "user": id.to_hex() }).await,
        1
    );
    assert!(owner_record(&w, email).await.is_none(), "not released");
    eventually("a NotDeleted event", || async {
        event_reasons_in(&w.client, &t, "frozen")
            .await
            .iter()
            .any(|r| r == "NotDeleted")
            .then_some(())
    })
    .await;
}

/// The attack: a team taken out of `allowedNamespaces` keeps a Pending invitation it issued
/// before and turns on `sendEmail`, to have the instance's relay mail the link anyway. Only a
/// Ready invitation is mailed.
#[tokio::test]
async fn a_namespace_taken_out_of_the_policy_cannot_mail_through_the_relay() {
    let (port, inbox) = crate::invite::smtp_sink().await;
    let relay = json!({ "domainClient": "https://chat.example.com",
        "smtp": { "host": "127.0.0.1", "port": port, "from": "LibreChat <noreply@example.com>", "security": "none" } });
    let (w, t) = tenant_world("tr-outmail", relay.clone()).await;
    let invite = json!({ "instanceRef": lc(&w), "email": "late@example.com" });
    w.apply_in(&t, "UserInvite", "late", invite.clone()).await;
    ready_in(&w, &t, "userinvites", "late", "True", "Pending").await;

    let refused = || {
        ready_in(
            &w,
            &t,
            "userinvites",
            "late",
            "False",
            "NamespaceNotAllowed",
        )
    };
    let mut closed = relay;
    closed["allowedNamespaces"] = json!([]);
    w.apply_instance_of_stores("lc", closed).await;
    refused().await;
    let mut mailed = invite;
    mailed["sendEmail"] = json!(true);
    w.apply_in(&t, "UserInvite", "late", mailed).await;
    refused().await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert!(
        inbox.lock().unwrap().is_empty(),
        "no email for a refused namespace"
    );
    let obj = get_in(&w.client, &t, "userinvites", "late").await.unwrap();
    assert!(obj.pointer("/status/emailSentAt").is_none());
}

/// The attack: a namespace the instance does not admit probes instance names in the
/// instance's namespace, to learn from its objects' statuses which instances exist there.
/// Whether the instance exists or not, it reads the same refusal.
#[tokio::test]
async fn a_namespace_not_admitted_cannot_tell_which_instances_exist() {
    let mut w = World::new("tr-probe").await;
    let outsider = format!("{}-o", w.ns);
    create_namespace(&w.client, &outsider).await;
    w.start_operator_in(Some(&format!("{},{outsider}", w.ns)));
    w.ready_instance("lc", json!({})).await;
    let probe = |instance: &str| {
        json!({ "instanceRef": { "name": instance, "namespace": w.ns.clone() },
                "email": format!("probe-{instance}@example.com") })
    };
    let mut said = Vec::new();
    for instance in ["lc", "lx"] {
        w.apply_in(&outsider, "LibreChatUser", instance, probe(instance))
            .await;
        let message = ready_in(
            &w,
            &outsider,
            "librechatusers",
            instance,
            "False",
            "NamespaceNotAllowed",
        )
        .await;
        said.push(message.replace(&format!("'{instance}'"), "'<name>'"));
    }
    assert_eq!(said[0], said[1], "the refusal tells the instances apart");
    assert!(said[0].contains("allowedNamespaces"), "{}", said[0]);
    // The instance's own namespace is told plainly that one does not exist.
    w.apply("LibreChatUser", "typo", probe("lx")).await;
    w.wait_condition(
        "librechatusers",
        "typo",
        "Ready",
        "False",
        Some("InstanceNotFound"),
    )
    .await;
}

#[tokio::test]
async fn a_namespace_never_admitted_cannot_hold_up_the_instance_deletion() {
    let mut w = World::new("tr-hold").await;
    let tenant = format!("{}-t", w.ns);
    let outsider = format!("{}-o", w.ns);
    create_namespace(&w.client, &tenant).await;
    create_namespace(&w.client, &outsider).await;
    w.start_operator_in(Some(&format!("{},{tenant},{outsider}", w.ns)));
    w.ready_instance("lc", json!({ "allowedNamespaces": [tenant.clone()] }))
        .await;
    let spec =
        |email: &str| json!({ "instanceRef": lc(&w), "email": email, "deletionPolicy": "Delete" });
    w.apply_in(&tenant, "LibreChatUser", "t1", spec("hold-t1@example.com"))
        .await;
    let written = status_user_id(&w, &tenant, "t1").await;

    // The attack: anybody who may create one object in any watched namespace points it at
    // the instance, to keep it (and its finalizer) forever.
    w.apply_in(
        &outsider,
        "LibreChatUser",
        "o1",
        spec("hold-o1@example.com"),
    )
    .await;
    ready_in(
        &w,
        &outsider,
        "librechatusers",
        "o1",
        "False",
        "NamespaceNotAllowed",
    )
    .await;
    // A tenant taken out after it wrote still holds it: its cleanup undoes what it wrote.
    w.ready_instance("lc", json!({ "allowedNamespaces": [] }))
        .await;
    ready_in(
        &w,
        &tenant,
        "librechatusers",
        "t1",
        "False",
        "NamespaceNotAllowed",
    )
    .await;

    let message = delete_instance_held_by_dependents(&w).await;
    assert!(message.contains(&format!("{tenant}/t1")), "{message}");
    assert!(!message.contains(&outsider), "{message}");
    delete_in(&w.client, &tenant, "LibreChatUser", "t1").await;
    wait_gone_in(&w, &tenant, "librechatusers", "t1").await;
    assert!(
        user_doc(&w, written).await.is_none(),
        "t1's cleanup deleted its account"
    );
    w.wait_gone("librechatinstances", "lc").await;
    // The outsider's object wrote nothing and goes without its instance.
    delete_in(&w.client, &outsider, "LibreChatUser", "o1").await;
    wait_gone_in(&w, &outsider, "librechatusers", "o1").await;
    assert_eq!(
        count(&w, "users", doc! { "email": "hold-o1@example.com" }).await,
        0
    );
}

/// A crash between a role's claim and its insert, and a LibreChat admin making a role of the
/// name in between: the operator must not overwrite the admin's role, let the tenant put
/// accounts in it, or delete it (moving its accounts to USER) with the tenant's object.
#[tokio::test]
async fn a_role_made_in_librechat_after_a_crashed_claim_is_never_taken_over() {
    let policy = json!({ "tenantPolicy": { "manageRoles": true } });
    let (mut w, t) = tenant_world("tr-role-crash", policy).await;
    let watched = format!("{},{t}", w.ns);
    w.stop_operator();
    w.start_operator_in_with_env(
        &watched,
        &[("LIBRECHAT_OPERATOR_CRASH_AT", "after-role-claim")],
    );
    let declared = json!({ "instanceRef": lc(&w), "name": "ANALYSTS",
                           "permissions": { "AGENTS": { "USE": true, "CREATE": false } } });
    w.apply_in(&t, "LibreChatRole", "analysts", declared).await;
    assert_eq!(w.wait_operator_exit(PATIENCE).await, Some(86));
    let claimed = doc! { "_id": "role:ANALYSTS", "created": false };
    assert_eq!(count(&w, "librechat_operator_access", claimed).await, 1);

    let admins_role = doc! { "_id": ObjectId::new(), "name": "ANALYSTS", "description": "made in LibreChat",
    "permissions": { "AGENTS": { "USE": false, "CREATE": true } }, "__v": 0 };
    w.db.collection::<Document>("roles")
        .insert_one(admins_role.clone())
        .await
        .unwrap();
    let member = ObjectId::new();
    let mut person = foreign_user(member, "analyst@example.com");
    person.insert("role", "ANALYSTS");
    w.users().insert_one(person).await.unwrap();

    w.start_operator_in(Some(&watched));
    let message = ready_in(
        &w,
        &t,
        "librechatroles",
        "analysts",
        "False",
        "AlreadyExists",
    )
    .await;
    assert!(message.contains("made in LibreChat"), "{message}");
    let stored =
        w.db.collection::<Document>("roles")
            .find_one(doc! { "name": "ANALYSTS" })
            .await
            .unwrap();
    assert_eq!(
        stored.as_ref(),
        Some(&admins_role),
        "the admin's role is as they made it"
    );
    assert_eq!(
        count(
            &w,
            "librechat_operator_access",
            doc! { "_id": "role:ANALYSTS" }
        )
        .await,
        0
    );

    delete_in(&w.client, &t, "LibreChatRole", "analysts").await;
    wait_gone_in(&w, &t, "librechatroles", "analysts").await;
    assert_eq!(count(&w, "roles", doc! { "name": "ANALYSTS" }).await, 1);
    assert_eq!(
        role_of(&w, member).await,
        "ANALYSTS",
        "its account stays in it"
    );
}

/// A namespace taken out of the instance's allowedNamespaces must not keep inviting people:
/// its pending link stops working, and comes back (the same link) when it is admitted again.
#[tokio::test]
async fn a_namespace_taken_out_of_the_instance_invites_nobody() {
    let (w, t) = tenant_world("tr-inv-out", json!({})).await;
    let invite = json!({ "instanceRef": lc(&w), "email": "guest-out@example.com" });
    w.apply_in(&t, "UserInvite", "guest", invite).await;
    ready_in(&w, &t, "userinvites", "guest", "True", "TokenOnly").await;
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> =
        kube::Api::namespaced(w.client.clone(), &t);
    let raw = secrets.get("guest-invite").await.unwrap().data.unwrap()["token"]
        .0
        .clone();
    let token = hex::encode(Sha256::digest(&raw));
    assert_eq!(count(&w, "tokens", doc! { "token": &token }).await, 1);

    w.ready_instance("lc", json!({ "allowedNamespaces": [] }))
        .await;
    ready_in(
        &w,
        &t,
        "userinvites",
        "guest",
        "False",
        "NamespaceNotAllowed",
    )
    .await;
    eventually("the link to stop working", || async {
        (count(&w, "tokens", doc! { "token": &token }).await == 0).then_some(())
    })
    .await;
    // As LibreChat's own registration reads the link (getInvite's lookup).
    let link = |found: bool| {
        json!({ "invites": [{ "rawToken": String::from_utf8(raw.clone()).unwrap(),
                              "email": "guest-out@example.com", "expectFound": found }] })
    };
    w.contract_check(link(false));

    w.ready_instance("lc", json!({ "allowedNamespaces": [t.clone()] }))
        .await;
    ready_in(&w, &t, "userinvites", "guest", "True", "TokenOnly").await;
    eventually("the same link to work again", || async {
        (count(&w, "tokens", doc! { "token": &token }).await == 1).then_some(())
    })
    .await;
    w.contract_check(link(true));
}

/// Takes the tenant `t` out of the instance's policy; returns once its invitation `name` says
/// so and no token matching `tokens` is left in LibreChat.
async fn taken_out_until_its_link_stops(w: &World, t: &str, name: &str, tokens: Document) {
    w.ready_instance("lc", json!({ "allowedNamespaces": [] }))
        .await;
    ready_in(w, t, "userinvites", name, "False", "NamespaceNotAllowed").await;
    eventually("the link to stop working", || async {
        (count(w, "tokens", tokens.clone()).await == 0).then_some(())
    })
    .await;
}

/// The attack: a tenant about to be taken out of the policy edits its pending invitation into
/// an invalid one (an `expiresIn` over the limit), which was refused before the namespace was
/// looked at, so its link stayed in LibreChat for a namespace no longer admitted.
#[tokio::test]
async fn an_invalid_invitation_of_a_namespace_taken_out_stops_working_too() {
    let (w, t) = tenant_world("tr-inv-bad-out", json!({})).await;
    let invite = json!({ "instanceRef": lc(&w), "email": "guest-bad@example.com" });
    w.apply_in(&t, "UserInvite", "guest", invite).await;
    ready_in(&w, &t, "userinvites", "guest", "True", "TokenOnly").await;
    let tokens = doc! { "email": "guest-bad@example.com" };
    assert_eq!(count(&w, "tokens", tokens.clone()).await, 1);
    let patch = json!({ "spec": { "expiresIn": "400d" } });
    dynamic(&w.client, &t, "UserInvite")
        .patch("guest", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    ready_in(&w, &t, "userinvites", "guest", "False", "InvalidSpec").await;

    taken_out_until_its_link_stops(&w, &t, "guest", tokens).await;
}

/// The attack: a tenant's invitation waits out its namespace's suspension while the
/// administrators declare the same email for someone else; when the namespace is admitted
/// again, its link must not come back over that declaration.
#[tokio::test]
async fn a_link_does_not_come_back_over_a_declaration_made_while_its_namespace_was_out() {
    let (w, t) = tenant_world("tr-inv-back", json!({})).await;
    let invite = json!({ "instanceRef": lc(&w), "email": "later-theirs@example.com" });
    w.apply_in(&t, "UserInvite", "early", invite).await;
    ready_in(&w, &t, "userinvites", "early", "True", "TokenOnly").await;
    let tokens = doc! { "email": "later-theirs@example.com" };
    assert_eq!(count(&w, "tokens", tokens.clone()).await, 1);

    taken_out_until_its_link_stops(&w, &t, "early", tokens.clone()).await;
    // Meanwhile the administrators declare the email (its account waits for a password).
    declared_without_account(&w, "theirs", "later-theirs@example.com").await;

    w.ready_instance("lc", json!({ "allowedNamespaces": [t.clone()] }))
        .await;
    let told = ready_in(&w, &t, "userinvites", "early", "False", "NotPermitted").await;
    assert!(
        told.contains("is owned or declared in another namespace"),
        "{told}"
    );
    // A few resyncs: the link stays gone.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(count(&w, "tokens", tokens).await, 0, "the link came back");
}

/// The attack: a team that may create objects in its own namespace (the chart's `admin` role
/// lets namespace admins create instances) makes a LibreChatInstance there on the shared
/// database, which it then administers, and takes over an account it does not own as ADMIN.
/// With `--instance-namespaces` naming only the LibreChat administrators' namespace, the
/// team's instance is ignored: nothing is read, connected or written through it.
#[tokio::test]
async fn a_team_cannot_run_an_instance_of_its_own_outside_the_instance_namespaces() {
    let mut w = World::new("tr-ownlc").await;
    let t = format!("{}-t", w.ns);
    create_namespace(&w.client, &t).await;
    let only_admins = [("INSTANCE_NAMESPACES", w.ns.clone())];
    let only_admins: Vec<(&str, &str)> =
        only_admins.iter().map(|(k, v)| (*k, v.as_str())).collect();
    w.start_operator_in_with_env(&format!("{},{t}", w.ns), &only_admins);
    w.ready_instance("lc", json!({ "allowedNamespaces": [t.clone()] }))
        .await;
    let victim = ObjectId::new();
    w.users()
        .insert_one(foreign_user(victim, "boss@example.com"))
        .await
        .unwrap();

    put_secret(&w.client, &t, "stores", &[("mongo", &w.mongo_uri())]).await;
    let own = json!({ "mongo": { "uriSecretRef": { "name": "stores", "key": "mongo" } },
                      "allowAdmin": true });
    w.apply_in(&t, "LibreChatInstance", "mine", own).await;
    let said = ready_in(
        &w,
        &t,
        "librechatinstances",
        "mine",
        "False",
        "NotPermitted",
    )
    .await;
    assert!(said.contains("--instance-namespaces"), "{said}");
    let takeover = json!({ "instanceRef": { "name": "mine" }, "email": "boss@example.com",
                           "adopt": true, "role": "ADMIN" });
    w.apply_in(&t, "LibreChatUser", "boss", takeover).await;
    ready_in(&w, &t, "librechatusers", "boss", "False", "NotPermitted").await;
    let account = user_doc(&w, victim).await.unwrap();
    assert_eq!(account.get_str("role"), Ok("USER"), "{account}");
    let owners = doc! { "email": "boss@example.com" };
    assert_eq!(count(&w, "librechat_operator_owners", owners).await, 0);
    // The administrators' instance still serves the team as a tenant.
    w.apply_in(
        &t,
        "LibreChatUser",
        "member",
        json!({ "instanceRef": lc(&w), "email": "member-ownlc@example.com" }),
    )
    .await;
    ready_in(&w, &t, "librechatusers", "member", "True", "Reconciled").await;
    // The ignored instance holds no finalizer: it goes at once.
    delete_in(&w.client, &t, "LibreChatInstance", "mine").await;
    eventually("the ignored instance to be gone", || async {
        get_in(&w.client, &t, "librechatinstances", "mine")
            .await
            .is_none()
            .then_some(())
    })
    .await;
}

/// The fault: the operator dies after making a tenant's invitation Secret (a link in it),
/// before recording it; meanwhile the administrators declare the email. The refused
/// invitation must not keep a link that looks issued: it is taken out of the Secret, and a new
/// one goes in once the email is free again. Before, the Secret kept a link nothing recorded.
#[tokio::test]
async fn a_refused_invitation_keeps_no_link_it_never_issued() {
    let (mut w, t) = tenant_world(
        "tr-inv-dead",
        json!({ "domainClient": "https://chat.example.com" }),
    )
    .await;
    let watched = format!("{},{t}", w.ns);
    w.stop_operator();
    let invite = json!({ "instanceRef": lc(&w), "email": "dead-link@example.com" });
    w.apply_in(&t, "UserInvite", "early", invite).await;
    w.start_operator_in_with_env(
        &watched,
        &[("LIBRECHAT_OPERATOR_CRASH_AT", "after-invite-secret")],
    );
    let code = w.wait_operator_exit(PATIENCE).await;
    assert_eq!(code, Some(86), "the operator must reach the crash point");
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> =
        kube::Api::namespaced(w.client.clone(), &t);
    let keys = |s: k8s_openapi::api::core::v1::Secret| -> Vec<String> {
        s.data.unwrap_or_default().into_keys().collect()
    };
    let made = secrets.get("early-invite").await.unwrap();
    let dead = hex::encode(Sha256::digest(&made.data.as_ref().unwrap()["token"].0));

    let taken = crate::user::local_user("dead-link@example.com", "not-yet");
    w.apply("LibreChatUser", "taken", taken).await;
    w.start_operator_in(Some(&watched));
    ready_in(&w, &t, "userinvites", "early", "False", "NotPermitted").await;
    let left = keys(secrets.get("early-invite").await.unwrap());
    assert_eq!(
        left,
        vec!["email".to_string()],
        "the link must be taken out"
    );
    assert_eq!(count(&w, "tokens", doc! {}).await, 0);

    // The email is free again: the declaration going wakes the invitation (no timer, no
    // edit), and it is issued with a new link.
    w.delete("LibreChatUser", "taken").await;
    ready_in(&w, &t, "userinvites", "early", "True", "Pending").await;
    let data = secrets.get("early-invite").await.unwrap().data.unwrap();
    let token = hex::encode(Sha256::digest(&data["token"].0));
    assert_eq!(count(&w, "tokens", doc! { "token": &token }).await, 1);
    assert_ne!(token, dead, "the withdrawn link must never come back");
    assert_eq!(count(&w, "tokens", doc! { "token": &dead }).await, 0);
    let url = String::from_utf8(data["url"].0.clone()).unwrap();
    assert!(
        url.ends_with(&String::from_utf8(data["token"].0.clone()).unwrap()),
        "{url}"
    );
}

/// Two namespaces invite one email: the tenant's is refused while the administrators' is
/// there, and is issued as soon as that one goes. Before, it stayed refused until something
/// else happened to wake it (an edit, a restart).
#[tokio::test]
async fn a_refused_invitation_is_issued_once_the_other_declaration_goes() {
    let (w, t) = tenant_world("tr-inv-wake", json!({})).await;
    let email = "wanted@example.com";
    let theirs = json!({ "instanceRef": { "name": "lc" }, "email": email });
    w.apply("UserInvite", "first", theirs).await;
    w.wait_condition("userinvites", "first", "Ready", "True", Some("TokenOnly"))
        .await;
    tenant_invite_refused(&w, &t, "second", email).await;

    w.delete("UserInvite", "first").await;
    ready_in(&w, &t, "userinvites", "second", "True", "TokenOnly").await;
    assert_eq!(count(&w, "tokens", doc! { "email": email }).await, 1);
}

/// The administrators lift their ban of an account while the owning tenant's own ban of it
/// still holds: their forgiveness is kept with the account's bans, and the lift that frees
/// the account clears LibreChat's counters, though a tenant finishes it. Before, the counters
/// were cleared only by the call that freed the account, so a tenant's ban outlasting theirs
/// kept the counters for good (and a crash between the two steps lost the reset).
#[tokio::test]
async fn the_administrators_forgiveness_holds_when_a_tenants_ban_ends_last() {
    let (w, t) = tenant_world("tr-ban-last", json!({})).await;
    let account = ("twice", "twice@example.com");
    let (id, counter) = tenant_account_with_violations(&w, &t, account, ("logins", 7)).await;
    let mut r = redis().await;

    let tenants = json!({ "instanceRef": lc(&w), "userRef": { "name": "twice" } });
    w.apply_in(&t, "UserBan", "theirs", tenants).await;
    ready_in(&w, &t, "userbans", "theirs", "True", "Banned").await;
    let admins = json!({ "instanceRef": { "name": "lc" }, "email": "twice@example.com" });
    w.apply("UserBan", "ours", admins).await;
    w.wait_condition("userbans", "ours", "Ready", "True", Some("Banned"))
        .await;

    w.delete("UserBan", "ours").await;
    w.wait_gone("userbans", "ours").await;
    let bans_key = format!("BANS:{}", id.to_hex());
    assert!(
        log_doc(&w, &bans_key).await.is_some_and(|d| in_force(&d)),
        "the tenant's ban still holds"
    );
    let kept: Option<i64> = r.get(&counter).await.unwrap();
    assert_eq!(
        kept,
        Some(7),
        "not cleared while the account is still banned"
    );

    delete_in(&w.client, &t, "UserBan", "theirs").await;
    wait_gone_in(&w, &t, "userbans", "theirs").await;
    assert!(log_doc(&w, &bans_key).await.is_none());
    let cleared: bool = r.exists(&counter).await.unwrap();
    assert!(
        !cleared,
        "the administrators forgave: the lift that freed the account clears the counters"
    );
    assert_eq!(count(&w, "librechat_operator_bans", doc! {}).await, 0);
}

/// A tenant's invitation refused for longer than its lifetime ends `Expired` without a link
/// (at the latest when the other declaration goes and wakes it): it is not issued (nor
/// mailed) already dead, nor left refused for ever.
#[tokio::test]
async fn an_invitation_refused_past_its_lifetime_expires_without_a_link() {
    let (w, t) = tenant_world("tr-inv-late", json!({})).await;
    let email = "late@example.com";
    let theirs = json!({ "instanceRef": { "name": "lc" }, "email": email });
    w.apply("UserInvite", "first", theirs).await;
    w.wait_condition("userinvites", "first", "Ready", "True", Some("TokenOnly"))
        .await;
    let short = json!({ "instanceRef": lc(&w), "email": email, "expiresIn": "2s" });
    w.apply_in(&t, "UserInvite", "brief", short).await;
    ready_in(&w, &t, "userinvites", "brief", "False", "NotPermitted").await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    w.delete("UserInvite", "first").await;
    w.wait_gone("userinvites", "first").await;
    ready_in(&w, &t, "userinvites", "brief", "True", "Expired").await;
    assert_eq!(count(&w, "tokens", doc! { "email": email }).await, 0);
    assert_eq!(
        count(&w, "librechat_operator_invites", doc! { "email": email }).await,
        0,
        "nothing may be recorded for it"
    );
    let reasons = event_reasons_in(&w.client, &t, "brief").await;
    assert!(!reasons.contains(&"Invited".to_string()), "{reasons:?}");
}

/// The administrators lift their ban while LibreChat's own ban of the account still holds:
/// their forgiveness is void (the counters are LibreChat's, behind a ban of its own), so it
/// is not left for a later lift to use. The attack it stops: the tenant that owns the account
/// bans and lifts it once LibreChat's ban ended, and the stale forgiveness wiped the counters.
#[tokio::test]
async fn a_forgiveness_voided_by_librechats_own_ban_is_not_used_later_by_a_tenant() {
    let (w, t) = tenant_world("tr-ban-void", json!({})).await;
    let account = ("flagged", "flagged@example.com");
    let (id, counter) = tenant_account_with_violations(&w, &t, account, ("logins", 21)).await;
    let bans_key = format!("BANS:{}", id.to_hex());
    let mut r = redis().await;
    let native_end = jiff::Timestamp::now().as_millisecond() + 15_000;
    insert_native_ban(&w, &bans_key, native_end).await;

    let admins = json!({ "instanceRef": { "name": "lc" }, "email": "flagged@example.com" });
    w.apply("UserBan", "ours", admins).await;
    w.wait_condition("userbans", "ours", "Ready", "True", Some("Banned"))
        .await;
    w.delete("UserBan", "ours").await;
    w.wait_gone("userbans", "ours").await;
    assert!(
        jiff::Timestamp::now().as_millisecond() < native_end,
        "LibreChat's ban must still hold when ours goes"
    );
    let kept: Option<i64> = r.get(&counter).await.unwrap();
    assert_eq!(
        kept,
        Some(21),
        "LibreChat's own ban holds: its counters stay"
    );

    // LibreChat's ban ends; later the tenant bans and lifts its own account.
    let wait = native_end - jiff::Timestamp::now().as_millisecond() + 1_000;
    tokio::time::sleep(Duration::from_millis(wait.max(0) as u64)).await;
    tenant_bans_and_lifts(&w, &t, "mine", "flagged").await;
    assert!(!log_doc(&w, &bans_key).await.is_some_and(|d| in_force(&d)));
    let after: Option<i64> = r.get(&counter).await.unwrap();
    assert_eq!(
        after,
        Some(21),
        "a stale forgiveness must not clear the counters"
    );
}

/// The attack: a tenant names its group or role like the administrators' own but for an
/// invisible character (a zero-width space, U+FEFF, which JavaScript's trim takes and Rust's
/// does not), so that people sharing with "Engineering" in LibreChat's picker pick the
/// tenant's. Such names are refused before anything is written.
#[tokio::test]
async fn a_tenant_cannot_name_a_group_or_role_like_another_with_invisible_characters() {
    let (w, t) = tenant_world(
        "tr-lookalike",
        json!({ "tenantPolicy": { "manageRoles": true } }),
    )
    .await;
    w.apply(
        "LibreChatGroup",
        "eng",
        json!({ "instanceRef": { "name": "lc" }, "name": "Engineering" }),
    )
    .await;
    w.wait_condition("librechatgroups", "eng", "Ready", "True", None)
        .await;
    w.apply_in(
        &t,
        "LibreChatGroup",
        "fake",
        json!({ "instanceRef": lc(&w), "name": "Engi\u{200B}neering" }),
    )
    .await;
    w.apply_in(
        &t,
        "LibreChatRole",
        "fake",
        json!({ "instanceRef": lc(&w), "name": "ADMIN\u{FEFF}",
                "permissions": { "AGENTS": { "USE": true } } }),
    )
    .await;
    for plural in ["librechatgroups", "librechatroles"] {
        let told = ready_in(&w, &t, plural, "fake", "False", "InvalidSpec").await;
        assert!(told.contains("invisible character"), "{plural}: {told}");
    }
    assert_eq!(
        count(&w, "groups", doc! {}).await,
        1,
        "only the administrators' group"
    );
    assert_eq!(
        count(&w, "roles", doc! { "name": "ADMIN\u{FEFF}" }).await,
        0
    );
}
