//! LibreChatUser: the account lifecycle, judged by MongoDB's contents and by LibreChat's own code.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use mongodb::bson::{doc, oid::ObjectId, Document};
use serde_json::json;

use crate::support::*;

pub const PASSWORD: &str = "Correct-Horse-Battery-1";

pub fn local_user(email: &str, secret: &str) -> serde_json::Value {
    json!({
        "instanceRef": { "name": "lc" },
        "email": email,
        "name": "Jane Doe",
        "username": "JaneD",
        "emailVerified": true,
        "password": { "secretRef": { "name": secret, "key": "password" } },
    })
}

/// A local user `name` with the password of Secret `pw`, Ready; returns its account id.
async fn local_account(w: &World, name: &str, email: &str) -> ObjectId {
    w.apply("LibreChatUser", name, local_user(email, "pw"))
        .await;
    user_id(w, name).await
}

pub async fn user_id(w: &World, name: &str) -> ObjectId {
    let obj = w
        .wait_condition("librechatusers", name, "Ready", "True", None)
        .await;
    ObjectId::parse_str(
        obj.pointer("/status/userId")
            .and_then(|v| v.as_str())
            .expect("status.userId"),
    )
    .unwrap()
}

#[tokio::test]
async fn create_update_and_drift_correction() {
    let w = World::with_instance("user-crud", json!({})).await;
    w.secret("jane-pw", &[("password", PASSWORD)]).await;
    w.apply(
        "LibreChatUser",
        "jane",
        local_user("  Jane.Doe@Example.COM ", "jane-pw"),
    )
    .await;
    let id = user_id(&w, "jane").await;

    let doc = w
        .find_user("jane.doe@example.com")
        .await
        .expect("the account exists under the normalized email");
    assert_eq!(doc.get_object_id("_id").unwrap(), id);
    assert_eq!(doc.get_str("username").unwrap(), "janed");
    assert_eq!(doc.get_str("provider").unwrap(), "local");
    assert_eq!(doc.get_str("role").unwrap(), "USER");
    assert!(doc.get_bool("emailVerified").unwrap());
    let hash = doc.get_str("password").unwrap();
    assert!(
        hash.starts_with("$2b$10$") || hash.starts_with("$2a$10$"),
        "cost-10 bcrypt"
    );
    for absent in ["tenantId", "expiresAt", "openidId", "googleId"] {
        assert!(!doc.contains_key(absent), "{absent} must not be written");
    }
    w.contract_check(json!({ "users": [ { "email": " JANE.doe@example.com", "password": PASSWORD, "provider": "local", "role": "USER", "emailVerified": true, "name": "Jane Doe", "username": "janed" } ] }));
    w.wait_event("jane", "Created").await;

    // What the operator wrote on the object (its finalizer, its status) is recorded as its
    // own in managedFields, as a platform team reading `--show-managed-fields` expects.
    let jane = w.get("librechatusers", "jane").await.unwrap();
    let managers: Vec<(&str, &str)> = jane["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let manager = m["manager"].as_str().unwrap_or_default();
            (manager, m["subresource"].as_str().unwrap_or_default())
        })
        .collect();
    assert!(
        managers.contains(&("librechat-operator", "status"))
            && managers.contains(&("librechat-operator", "")),
        "the operator's status and finalizer writes carry its name: {managers:?}"
    );
    assert!(
        !managers.iter().any(|(m, _)| *m == "unknown"),
        "{managers:?}"
    );

    // LibreChat's caches of the user, which would keep serving the old role.
    let mut redis = redis::Client::open(env("REDIS_URL"))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let cached = [
        format!("AUTH_USER_DOC:auth-user-doc-byid:{}", id.to_hex()),
        format!("USER_PRINCIPALS:{}", id.to_hex()),
    ];
    for key in &cached {
        let _: () = redis::AsyncCommands::set(&mut redis, key, "{\"value\":\"stale\"}")
            .await
            .unwrap();
    }

    // A declared change is applied, and the caches are dropped.
    let mut spec = local_user("  Jane.Doe@Example.COM ", "jane-pw");
    spec["role"] = json!("ADMIN");
    spec["name"] = json!("Jane Q. Doe");
    w.apply("LibreChatUser", "jane", spec).await;
    w.wait_condition("librechatusers", "jane", "Ready", "True", None)
        .await;
    let doc = w.find_user("jane.doe@example.com").await.unwrap();
    assert_eq!(doc.get_str("role").unwrap(), "ADMIN");
    assert_eq!(doc.get_str("name").unwrap(), "Jane Q. Doe");
    w.wait_event("jane", "Updated").await;
    for key in &cached {
        let left: bool = redis::AsyncCommands::exists(&mut redis, key).await.unwrap();
        assert!(!left, "{key} must be deleted after a role change");
    }

    // A change made in LibreChat behind the operator's back is put back at the next resync.
    w.users()
        .update_one(
            doc! { "_id": id },
            doc! { "$set": { "role": "USER", "emailVerified": false } },
        )
        .await
        .unwrap();
    eventually("the role to be put back", || async {
        let d = w.find_user("jane.doe@example.com").await?;
        (d.get_str("role").ok()? == "ADMIN" && d.get_bool("emailVerified").ok()?).then_some(())
    })
    .await;
    w.wait_event("jane", "DriftCorrected").await;

    // Only one account exists, whatever happened.
    assert_eq!(
        w.users()
            .count_documents(doc! { "email": "jane.doe@example.com" })
            .await
            .unwrap(),
        1
    );
}

#[tokio::test]
async fn settled_accounts_are_not_rewritten_on_resync() {
    let w = World::with_instance("user-quiet", json!({})).await;
    w.secret("pw", &[("password", PASSWORD)]).await;
    w.apply(
        "LibreChatUser",
        "quiet",
        local_user("quiet@example.com", "pw"),
    )
    .await;
    user_id(&w, "quiet").await;
    let before = w.find_user("quiet@example.com").await.unwrap();
    let rv_before = w
        .get("librechatusers", "quiet")
        .await
        .unwrap()
        .pointer("/metadata/resourceVersion")
        .cloned();
    // Several resync periods (3s) pass: neither MongoDB nor the API server is written.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let after = w.find_user("quiet@example.com").await.unwrap();
    assert_eq!(before.get("updatedAt"), after.get("updatedAt"));
    assert_eq!(
        before.get_str("password").unwrap(),
        after.get_str("password").unwrap(),
        "a resync must never re-hash"
    );
    let rv_after = w
        .get("librechatusers", "quiet")
        .await
        .unwrap()
        .pointer("/metadata/resourceVersion")
        .cloned();
    assert_eq!(
        rv_before, rv_after,
        "a resync of a settled account must not write status"
    );
}

pub(crate) async fn seed_session(w: &World, user: ObjectId, hash: &str) {
    let expiration = mongodb::bson::DateTime::from_millis(
        mongodb::bson::DateTime::now().timestamp_millis() + 7 * 86_400_000,
    );
    w.db.collection::<Document>("sessions")
        .insert_one(
            doc! { "refreshTokenHash": hash, "expiration": expiration, "user": user, "__v": 0 },
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn password_rotation_revokes_sessions() {
    let w = World::with_instance("user-rotate", json!({})).await;
    w.secret("pw", &[("password", PASSWORD)]).await;
    w.apply("LibreChatUser", "rot", local_user("rot@example.com", "pw"))
        .await;
    let id = user_id(&w, "rot").await;
    let bystander = ObjectId::new();
    seed_session(&w, id, "a".repeat(64).as_str()).await;
    seed_session(&w, bystander, "b".repeat(64).as_str()).await;
    w.contract_check(json!({ "sessionsPresent": [ id.to_hex() ] }));
    let version_before = w
        .get("librechatusers", "rot")
        .await
        .unwrap()
        .pointer("/status/passwordSecretVersion")
        .cloned();

    w.secret("pw", &[("password", "A-Brand-New-Password-2")])
        .await;
    eventually("the new password to be applied", || async {
        let d = w.find_user("rot@example.com").await?;
        bcrypt::verify("A-Brand-New-Password-2", d.get_str("password").ok()?)
            .ok()?
            .then_some(())
    })
    .await;
    w.wait_event("rot", "PasswordRotated").await;
    w.contract_check(json!({
        "users": [ { "email": "rot@example.com", "password": "A-Brand-New-Password-2" } ],
        "sessionsRevoked": [ id.to_hex() ],
        "sessionsPresent": [ bystander.to_hex() ],
    }));
    let obj = w
        .wait_condition(
            "librechatusers",
            "rot",
            "PasswordReady",
            "True",
            Some("PasswordApplied"),
        )
        .await;
    assert_ne!(
        obj.pointer("/status/passwordSecretVersion").cloned(),
        version_before
    );
    assert!(!obj.to_string().contains("A-Brand-New-Password-2"));
    assert!(!w.operator_log().contains("A-Brand-New-Password-2"));
}

/// `secretRef` pointed at another key of the same Secret: the Secret did not change, yet the
/// password did. Before, the Secret's version alone said the password was applied: status
/// read `PasswordApplied` while the account kept the old password and its sessions.
#[tokio::test]
async fn pointing_the_password_at_another_key_applies_it() {
    let w = World::with_instance("user-key", json!({})).await;
    w.secret(
        "pw",
        &[("old", PASSWORD), ("new", "Another-Key-Password-3")],
    )
    .await;
    let mut spec = local_user("key@example.com", "pw");
    spec["password"]["secretRef"]["key"] = json!("old");
    w.apply("LibreChatUser", "key", spec.clone()).await;
    let id = user_id(&w, "key").await;
    seed_session(&w, id, "c".repeat(64).as_str()).await;

    spec["password"]["secretRef"]["key"] = json!("new");
    w.apply("LibreChatUser", "key", spec).await;
    eventually("the other key's password to be applied", || async {
        let d = w.find_user("key@example.com").await?;
        bcrypt::verify("Another-Key-Password-3", d.get_str("password").ok()?)
            .ok()?
            .then_some(())
    })
    .await;
    w.wait_event("key", "PasswordRotated").await;
    w.contract_check(json!({
        "users": [ { "email": "key@example.com", "password": "Another-Key-Password-3" } ],
        "sessionsRevoked": [ id.to_hex() ],
    }));
}

/// An object whose status the previous version wrote (`passwordSecretVersion` without the
/// key): the upgrade must not take it for a new password. The person changed their password in
/// LibreChat since (the operator leaves that alone until the Secret changes): it stays, and
/// their sessions with it.
#[tokio::test]
async fn an_upgrade_does_not_re_apply_a_password_recorded_by_the_previous_version() {
    let mut w = World::with_instance("user-upgrade", json!({})).await;
    w.secret("pw", &[("alice", PASSWORD)]).await;
    let mut spec = local_user("upgrade@example.com", "pw");
    spec["password"]["secretRef"]["key"] = json!("alice");
    w.apply("LibreChatUser", "up", spec).await;
    let id = user_id(&w, "up").await;
    w.stop_operator();

    // As the previous version recorded it, and as the person's own reset left the account.
    let obj = w.get("librechatusers", "up").await.unwrap();
    let recorded = obj["status"]["passwordSecretVersion"].as_str().unwrap();
    let legacy = recorded
        .strip_suffix("#alice")
        .expect("the key in the version");
    let patch = json!({ "status": { "passwordSecretVersion": legacy } });
    dynamic(&w.client, &w.ns, "LibreChatUser")
        .patch_status(
            "up",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .unwrap();
    let own = bcrypt::hash("Her-Own-Password-77", 10).unwrap();
    w.users()
        .update_one(doc! { "_id": id }, doc! { "$set": { "password": &own } })
        .await
        .unwrap();
    seed_session(&w, id, "d".repeat(64).as_str()).await;

    w.start_operator();
    // Resyncs every 3 s: time for several.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let stored = w.find_user("upgrade@example.com").await.unwrap();
    assert_eq!(
        stored.get_str("password").unwrap(),
        own,
        "the upgrade put the Secret's password back over the person's own"
    );
    assert!(!w
        .event_reasons("up")
        .await
        .contains(&"PasswordRotated".to_string()));
    w.contract_check(json!({ "sessionsPresent": [ id.to_hex() ] }));
}

#[tokio::test]
async fn generated_password_lands_in_an_owned_secret_and_foreign_secrets_are_not_touched() {
    let w = World::with_instance(
        "user-gen",
        json!({ "domainClient": "https://chat.example.com" }),
    )
    .await;
    w.apply(
        "LibreChatUser",
        "gen",
        json!({ "instanceRef": { "name": "lc" }, "email": "gen@example.com", "password": { "generate": { "secretName": "gen-login", "length": 20 } } }),
    )
    .await;
    user_id(&w, "gen").await;
    let api: kube::Api<k8s_openapi::api::core::v1::Secret> =
        kube::Api::namespaced(w.client.clone(), &w.ns);
    let secret = api.get("gen-login").await.unwrap();
    let data = secret.data.unwrap();
    let password = String::from_utf8(data["password"].0.clone()).unwrap();
    assert_eq!(password.len(), 20);
    assert_eq!(
        String::from_utf8(data["email"].0.clone()).unwrap(),
        "gen@example.com"
    );
    assert!(String::from_utf8(data["url"].0.clone())
        .unwrap()
        .starts_with("https://chat.example.com"));
    assert!(secret
        .metadata
        .owner_references
        .unwrap()
        .iter()
        .any(|o| o.kind == "LibreChatUser" && o.name == "gen"));
    w.contract_check(json!({ "users": [ { "email": "gen@example.com", "password": password } ] }));

    // A Secret someone else owns is never overwritten.
    w.secret("taken", &[("password", "mine-not-yours-123")])
        .await;
    w.apply(
        "LibreChatUser",
        "gen2",
        json!({ "instanceRef": { "name": "lc" }, "email": "gen2@example.com", "password": { "generate": { "secretName": "taken" } } }),
    )
    .await;
    w.wait_condition(
        "librechatusers",
        "gen2",
        "Ready",
        "False",
        Some("SecretNotOwned"),
    )
    .await;
    assert!(w.find_user("gen2@example.com").await.is_none());
    let taken = api.get("taken").await.unwrap();
    assert_eq!(
        taken.data.unwrap()["password"].0,
        b"mine-not-yours-123".to_vec()
    );
}

#[tokio::test]
async fn sso_accounts_are_pre_provisioned_without_password() {
    let mut w = World::new("user-sso").await;
    w.start_operator();
    w.ready_instance("lc", json!({})).await;
    w.apply("LibreChatUser", "sso", json!({ "instanceRef": { "name": "lc" }, "email": "SSO.User@Example.com", "name": "Sso User", "provider": "openid" })).await;
    user_id(&w, "sso").await;
    let doc = w.find_user("sso.user@example.com").await.unwrap();
    assert_eq!(doc.get_str("provider").unwrap(), "openid");
    for absent in ["password", "openidId", "openidIssuer", "avatar", "tenantId"] {
        assert!(
            !doc.contains_key(absent),
            "{absent} must not be written for a pre-provisioned SSO account"
        );
    }
    w.contract_check(json!({ "users": [ { "email": "sso.user@example.com", "password": null, "provider": "openid", "emailVerified": true } ] }));

    // LibreChat's OpenID role sync promotes the user; the declaration says nothing about the
    // role, so the promotion stands through resyncs.
    w.users()
        .update_one(
            doc! { "email": "sso.user@example.com" },
            doc! { "$set": { "role": "ADMIN" } },
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(
        w.find_user("sso.user@example.com")
            .await
            .unwrap()
            .get_str("role")
            .unwrap(),
        "ADMIN"
    );
}

#[tokio::test]
async fn conflicting_claims_and_adoption() {
    let mut w = World::new("user-own").await;
    let other = format!("{}-b", w.ns);
    w.start_operator_in(Some(&format!("{},{other}", w.ns)));
    create_namespace(&w.client, &other).await;
    w.ready_instance(
        "lc",
        json!({ "allowedNamespaces": [other.clone()], "allowAdmin": true }),
    )
    .await;
    w.secret("pw", &[("password", PASSWORD)]).await;
    put_secret(
        &w.client,
        &other,
        "pw",
        &[("password", "Another-Password-99")],
    )
    .await;

    let id = local_account(&w, "first", "shared@example.com").await;

    // The same email from a second object, in this namespace and in another one.
    w.apply(
        "LibreChatUser",
        "second",
        local_user("Shared@Example.com", "pw"),
    )
    .await;
    let obj = w
        .wait_condition(
            "librechatusers",
            "second",
            "Ready",
            "False",
            Some("Conflict"),
        )
        .await;
    assert!(crate::support::condition(&obj, "Ready")
        .unwrap()
        .message
        .contains("first"));
    let mut spec = local_user("shared@example.com", "pw");
    spec["instanceRef"]["namespace"] = json!(w.ns.clone());
    spec["role"] = json!("ADMIN");
    w.apply_in(&other, "LibreChatUser", "thief", spec).await;
    let refused = wait_condition_in(
        &w.client,
        &other,
        "librechatusers",
        "thief",
        "Ready",
        "False",
        Some("Conflict"),
    )
    .await;
    // The tenant learns that the email is taken, not which namespace or object declares it.
    let told = crate::support::condition(&refused, "Ready")
        .unwrap()
        .message;
    assert!(
        told.contains("another namespace") && !told.contains("first") && !told.contains(&w.ns),
        "{told}"
    );
    let doc = w.find_user("shared@example.com").await.unwrap();
    assert_eq!(
        doc.get_str("role").unwrap(),
        "USER",
        "a conflicting object must change nothing"
    );
    assert!(bcrypt::verify(PASSWORD, doc.get_str("password").unwrap()).unwrap());

    // An account nobody manages is taken over only with adopt.
    w.users()
        .insert_one(crate::user::foreign_user(
            ObjectId::new(),
            "old@example.com",
        ))
        .await
        .unwrap();
    w.apply("LibreChatUser", "old", local_user("old@example.com", "pw"))
        .await;
    w.wait_condition(
        "librechatusers",
        "old",
        "Ready",
        "False",
        Some("AlreadyExists"),
    )
    .await;
    assert!(
        w.find_user("old@example.com")
            .await
            .unwrap()
            .get_str("password")
            .unwrap()
            == "$2a$10$notarealhashnotarealhashnotarealhashnotarealhashnot"
    );
    let mut adopt = local_user("old@example.com", "pw");
    adopt["adopt"] = json!(true);
    w.apply("LibreChatUser", "old", adopt).await;
    w.wait_condition("librechatusers", "old", "Ready", "True", None)
        .await;
    w.wait_event("old", "Adopted").await;
    w.contract_check(json!({ "users": [ { "email": "old@example.com", "password": PASSWORD, "name": "Jane Doe" } ] }));

    // Deleting the owner frees the email for the next claimant.
    w.delete("LibreChatUser", "first").await;
    w.wait_gone("librechatusers", "first").await;
    w.wait_condition(
        "librechatusers",
        "second",
        "Ready",
        "False",
        Some("AlreadyExists"),
    )
    .await;
    assert_eq!(
        w.find_user("shared@example.com")
            .await
            .unwrap()
            .get_object_id("_id")
            .unwrap(),
        id,
        "Retain keeps the account"
    );
}

/// An account created by hand, as LibreChat's scripts would leave it.
pub fn foreign_user(id: ObjectId, email: &str) -> Document {
    doc! {
        "_id": id, "name": "Someone Else", "username": "someone", "email": email, "emailVerified": true,
        "password": "$2a$10$notarealhashnotarealhashnotarealhashnotarealhashnot", "avatar": null, "provider": "local", "role": "USER",
        "plugins": [], "twoFactorEnabled": false, "termsAccepted": false, "termsAcceptedAt": null,
        "personalization": { "memories": true, "statefulCodeEnvironment": "user", "_id": ObjectId::new() },
        "pinnedOrder": [], "backupCodes": [], "refreshToken": [], "favorites": [], "skillStates": {},
        "createdAt": mongodb::bson::DateTime::now(), "updatedAt": mongodb::bson::DateTime::now(), "__v": 0,
    }
}

/// Two tenant namespaces beside the world's own, both watched by the world's operator (just
/// started): the first for the instance to admit, the second to refuse. Returns their names.
async fn tenant_namespaces(w: &mut World) -> (String, String) {
    let allowed = format!("{}-ok", w.ns);
    let denied = format!("{}-no", w.ns);
    w.start_operator_in(Some(&format!("{},{allowed},{denied}", w.ns)));
    create_namespace(&w.client, &allowed).await;
    create_namespace(&w.client, &denied).await;
    (allowed, denied)
}

#[tokio::test]
async fn namespace_policy_is_enforced() {
    let mut w = World::new("user-nspol").await;
    let (allowed, denied) = tenant_namespaces(&mut w).await;
    w.ready_instance("lc", json!({ "allowedNamespaces": [allowed.clone()] }))
        .await;
    let reference = json!({ "name": "lc", "namespace": w.ns.clone() });

    w.apply_in(
        &denied,
        "LibreChatUser",
        "u",
        json!({ "instanceRef": reference, "email": "denied@example.com" }),
    )
    .await;
    wait_condition_in(
        &w.client,
        &denied,
        "librechatusers",
        "u",
        "Ready",
        "False",
        Some("NamespaceNotAllowed"),
    )
    .await;

    w.apply_in(
        &allowed,
        "LibreChatUser",
        "admin",
        json!({ "instanceRef": reference, "email": "boss@example.com", "role": "ADMIN" }),
    )
    .await;
    wait_condition_in(
        &w.client,
        &allowed,
        "librechatusers",
        "admin",
        "Ready",
        "False",
        Some("AdminNotAllowed"),
    )
    .await;
    w.apply_in(
        &allowed,
        "LibreChatUser",
        "plain",
        json!({ "instanceRef": reference, "email": "worker@example.com" }),
    )
    .await;
    wait_condition_in(
        &w.client,
        &allowed,
        "librechatusers",
        "plain",
        "Ready",
        "True",
        None,
    )
    .await;

    // The instance's own namespace may declare admins.
    w.apply(
        "LibreChatUser",
        "admin",
        json!({ "instanceRef": { "name": "lc" }, "email": "boss@example.com", "role": "ADMIN" }),
    )
    .await;
    w.wait_condition("librechatusers", "admin", "Ready", "True", None)
        .await;
    assert!(w.find_user("denied@example.com").await.is_none());
    assert_eq!(
        w.find_user("boss@example.com")
            .await
            .unwrap()
            .get_str("role")
            .unwrap(),
        "ADMIN"
    );
}

/// The Ready condition of LibreChatUser `name` in `ns` once it is `status` with `reason`,
/// waiting at most `limit`.
async fn ready_within(
    w: &World,
    ns: &str,
    name: &str,
    status: &str,
    reason: Option<&str>,
    limit: Duration,
) -> Option<Condition> {
    within(limit, || async {
        let user = get_in(&w.client, ns, "librechatusers", name).await?;
        condition(&user, "Ready")
            .filter(|c| c.status == status && reason.is_none_or(|r| c.reason == r))
    })
    .await
}

/// With one watch scope per namespace, a tenant's objects sit in a scope that does not watch
/// their instance. A change of the instance's policy must still reach them at once, not at
/// the next resync (an hour here): a tenant admitted gets its account, and one refused again
/// is told so.
#[tokio::test]
async fn a_policy_change_reaches_a_tenant_watched_in_another_scope_at_once() {
    let mut w = World::new("user-nsmove").await;
    let tenant = format!("{}-t", w.ns);
    w.start_operator_in(Some(&format!("{},{tenant}", w.ns)));
    create_namespace(&w.client, &tenant).await;
    let policy = |allowed: &[&str]| json!({ "resyncPeriod": "1h", "allowedNamespaces": allowed });
    w.ready_instance("lc", policy(&[])).await;
    let reference = json!({ "name": "lc", "namespace": w.ns.clone() });
    let user = json!({ "instanceRef": reference, "email": "moved@example.com" });
    w.apply_in(&tenant, "LibreChatUser", "u", user).await;
    let refused = Some("NamespaceNotAllowed");
    let soon = Duration::from_secs(60);
    let seen = ready_within(&w, &tenant, "u", "False", refused, soon).await;
    assert!(
        seen.is_some(),
        "a tenant the instance does not admit is refused"
    );
    assert!(w.find_user("moved@example.com").await.is_none());

    let at_once = Duration::from_secs(20);
    w.apply_instance("lc", &env("REDIS_URL"), policy(&[&tenant]))
        .await;
    let admitted = ready_within(&w, &tenant, "u", "True", None, at_once).await;
    assert!(
        admitted.is_some(),
        "admitting the tenant reaches its user at once"
    );
    assert!(w.find_user("moved@example.com").await.is_some());

    w.apply_instance("lc", &env("REDIS_URL"), policy(&[])).await;
    let refused_again = ready_within(&w, &tenant, "u", "False", refused, at_once).await;
    assert!(
        refused_again.is_some(),
        "refusing the tenant again reaches its user at once"
    );
}

#[tokio::test]
async fn bad_input_is_reported_and_nothing_is_written() {
    let w =
        World::with_instance("user-bad", json!({ "passwordPolicy": { "minLength": 12 } })).await;
    w.secret("short", &[("password", "tooShort1")]).await;
    w.secret("good", &[("password", PASSWORD)]).await;

    let cases = [
        (
            "bademail",
            json!({ "instanceRef": { "name": "lc" }, "email": "not-an-email" }),
            "InvalidSpec",
        ),
        (
            // LibreChat's sign-in check (zod's email rule) refuses it: a local account could
            // never log in with a password.
            "unicode",
            json!({ "instanceRef": { "name": "lc" }, "email": "josé@example.com" }),
            "InvalidSpec",
        ),
        (
            "injection",
            json!({ "instanceRef": { "name": "lc" }, "email": "inj@example.com", "username": "{\"$ne\": \"\"}" }),
            "InvalidSpec",
        ),
        (
            "where",
            json!({ "instanceRef": { "name": "lc" }, "email": "where@example.com", "username": "$where" }),
            "InvalidSpec",
        ),
        (
            "shortpw",
            local_user("short@example.com", "short"),
            "PasswordInvalid",
        ),
        (
            "nosecret",
            local_user("nosecret@example.com", "missing"),
            "SecretNotFound",
        ),
        (
            "nokey",
            json!({ "instanceRef": { "name": "lc" }, "email": "nokey@example.com", "password": { "secretRef": { "name": "good", "key": "nope" } } }),
            "SecretKeyMissing",
        ),
        (
            "noinstance",
            json!({ "instanceRef": { "name": "nowhere" }, "email": "noinst@example.com" }),
            "InstanceNotFound",
        ),
    ];
    for (name, spec, _) in &cases {
        w.apply("LibreChatUser", name, spec.clone()).await;
    }
    for (name, _, reason) in &cases {
        let obj = w
            .wait_condition("librechatusers", name, "Ready", "False", Some(reason))
            .await;
        assert!(
            !obj.to_string().contains("tooShort1"),
            "a password leaked into status"
        );
    }
    assert_eq!(
        w.users().count_documents(doc! {}).await.unwrap(),
        0,
        "no account may be written for bad input"
    );
    assert!(!w.operator_log().contains("tooShort1"));

    // A Secret changed to an invalid password keeps the account as it was.
    w.apply("LibreChatUser", "ok", local_user("ok@example.com", "good"))
        .await;
    user_id(&w, "ok").await;
    let before = w.find_user("ok@example.com").await.unwrap();
    w.secret("good", &[("password", "short")]).await;
    w.wait_condition(
        "librechatusers",
        "ok",
        "Ready",
        "False",
        Some("PasswordInvalid"),
    )
    .await;
    let after = w.find_user("ok@example.com").await.unwrap();
    assert_eq!(
        before.get_str("password").unwrap(),
        after.get_str("password").unwrap()
    );
}

/// A settled account's resync does not read its unchanged password Secret again, but a
/// stricter password policy on the instance is still checked against it: the password that
/// was long enough is refused at once, and the account keeps the password it had.
#[tokio::test]
async fn a_stricter_policy_refuses_a_password_already_applied() {
    let policy = |min: u32| json!({ "passwordPolicy": { "minLength": min }, "resyncPeriod": "1h" });
    let w = World::with_instance("user-stricter", policy(8)).await;
    w.secret("pw", &[("password", "Ten-chars1")]).await;
    w.apply("LibreChatUser", "u", local_user("u@example.com", "pw"))
        .await;
    user_id(&w, "u").await;
    let before = w.find_user("u@example.com").await.unwrap();

    w.apply_instance("lc", &env("REDIS_URL"), policy(12)).await;
    let refused = ready_within(
        &w,
        &w.ns,
        "u",
        "False",
        Some("PasswordInvalid"),
        Duration::from_secs(20),
    )
    .await;
    assert!(
        refused.is_some(),
        "the stricter policy reaches the account at once"
    );
    let after = w.find_user("u@example.com").await.unwrap();
    assert_eq!(
        before.get_str("password").unwrap(),
        after.get_str("password").unwrap()
    );
}

/// The per-user collections of the deletion, transactions included.
fn cascade_table(
) -> impl Iterator<Item = &'static librechat_operator::librechat::cascade::Reference> {
    use librechat_operator::librechat::cascade::{CASCADE, TRANSACTIONS};
    CASCADE.iter().chain([&TRANSACTIONS])
}

/// Inserts one document referring to `user` into every collection of LibreChat's deletion
/// table, with the field's real BSON type.
async fn seed_everything(w: &World, user: ObjectId, id_on_the_source: Option<&str>) {
    for reference in cascade_table() {
        let collection = &reference.collection;
        let mut d = reference.filter(user);
        d.insert("seeded", true);
        if *collection == "sessions" {
            d.insert("refreshTokenHash", format!("{}-{}", user.to_hex(), "h"));
            d.insert(
                "expiration",
                mongodb::bson::DateTime::from_millis(
                    mongodb::bson::DateTime::now().timestamp_millis() + 86_400_000,
                ),
            );
        }
        if *collection == "tokens" {
            d.insert("token", "t");
            d.insert("createdAt", mongodb::bson::DateTime::now());
            d.insert(
                "expiresAt",
                mongodb::bson::DateTime::from_millis(
                    mongodb::bson::DateTime::now().timestamp_millis() + 86_400_000,
                ),
            );
        }
        let coll = w.db.collection::<Document>(collection);
        if reference.field == "_id" {
            // Keyed by the user's id: one document per user, however often it is seeded.
            coll.update_one(reference.filter(user), doc! { "$set": { "seeded": true } })
                .upsert(true)
                .await
                .unwrap();
        } else {
            coll.insert_one(d).await.unwrap();
        }
    }
    let member = id_on_the_source
        .map(str::to_string)
        .unwrap_or_else(|| user.to_hex());
    w.db.collection::<Document>("groups")
        .update_one(
            doc! { "name": "team" },
            doc! { "$push": { "memberIds": member } },
        )
        .upsert(true)
        .await
        .unwrap();
    w.db.collection::<Document>("logs")
        .insert_one(doc! { "key": format!("BANS:{}", user.to_hex()), "value": "{\"value\":{\"type\":\"concurrent\"}}", "expiresAt": null })
        .await
        .unwrap();
}

async fn count_traces(w: &World, user: ObjectId) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for reference in cascade_table() {
        let collection = reference.collection;
        let n =
            w.db.collection::<Document>(collection)
                .count_documents(reference.filter(user))
                .await
                .unwrap();
        out.push((collection.to_string(), n));
    }
    out
}

#[tokio::test]
async fn retain_and_delete_policies() {
    let w = World::with_instance("user-del", json!({})).await;
    w.secret("pw", &[("password", PASSWORD)]).await;

    // Retain (the default): the account stays and is no longer managed.
    let kept = local_account(&w, "keep", "keep@example.com").await;
    w.delete("LibreChatUser", "keep").await;
    w.wait_gone("librechatusers", "keep").await;
    assert_eq!(
        w.find_user("keep@example.com")
            .await
            .unwrap()
            .get_object_id("_id")
            .unwrap(),
        kept
    );
    assert!(w
        .db
        .collection::<Document>("librechat_operator_owners")
        .find_one(doc! { "_id": "keep@example.com" })
        .await
        .unwrap()
        .is_none());

    // Delete: every trace of the user goes, the bystander's data stays.
    let mut spec = local_user("gone@example.com", "pw");
    spec["deletionPolicy"] = json!("Delete");
    w.apply("LibreChatUser", "gone", spec).await;
    let gone = user_id(&w, "gone").await;
    w.users()
        .update_one(
            doc! { "_id": gone },
            doc! { "$set": { "idOnTheSource": "entra-gone" } },
        )
        .await
        .unwrap();
    let bystander = ObjectId::new();
    w.users()
        .insert_one(foreign_user(bystander, "bystander@example.com"))
        .await
        .unwrap();
    seed_everything(&w, gone, Some("entra-gone")).await;
    seed_everything(&w, gone, None).await;
    seed_everything(&w, bystander, None).await;
    // The bystander's agent API key is what LibreChat's own script would wrongly delete.
    let bystander_before = count_traces(&w, bystander).await;

    w.delete("LibreChatUser", "gone").await;
    w.wait_gone("librechatusers", "gone").await;
    assert!(w.find_user("gone@example.com").await.is_none());
    for (collection, n) in count_traces(&w, gone).await {
        let expected = if collection == "transactions" { 2 } else { 0 };
        assert_eq!(
            n, expected,
            "{collection} still holds the user's documents (transactions are kept by default)"
        );
    }
    assert_eq!(
        count_traces(&w, bystander).await,
        bystander_before,
        "the bystander's data must survive"
    );
    let group =
        w.db.collection::<Document>("groups")
            .find_one(doc! { "name": "team" })
            .await
            .unwrap()
            .unwrap();
    let members: Vec<String> = group
        .get_array("memberIds")
        .unwrap()
        .iter()
        .filter_map(|b| b.as_str().map(str::to_string))
        .collect();
    assert_eq!(members, vec![bystander.to_hex()]);
    // The seeded bans are LibreChat's own (no operator marker): its decisions, which the
    // operator never undoes. They stay, inert, since account ids are never reused.
    assert_eq!(
        w.db.collection::<Document>("logs")
            .count_documents(doc! { "key": format!("BANS:{}", gone.to_hex()) })
            .await
            .unwrap(),
        2
    );
    assert!(w.find_user("bystander@example.com").await.is_some());
    w.contract_check(
        json!({ "absentUsers": [ { "email": "gone@example.com", "userId": gone.to_hex() } ] }),
    );

    // deleteTransactions removes the audit trail too.
    let mut spec = local_user("audit@example.com", "pw");
    spec["deletionPolicy"] = json!("Delete");
    spec["deleteTransactions"] = json!(true);
    w.apply("LibreChatUser", "audit", spec).await;
    let audit = user_id(&w, "audit").await;
    seed_everything(&w, audit, None).await;
    w.delete("LibreChatUser", "audit").await;
    w.wait_gone("librechatusers", "audit").await;
    assert!(count_traces(&w, audit).await.iter().all(|(_, n)| *n == 0));
    w.contract_check(json!({ "absentUsers": [ { "email": "audit@example.com", "userId": audit.to_hex(), "transactionsDeleted": true } ] }));
}

#[tokio::test]
async fn a_blocked_deletion_is_reported_and_retried() {
    let w = World::with_instance("user-block", json!({})).await;
    let mut spec = local_user("blocked@example.com", "pw");
    spec["deletionPolicy"] = json!("Delete");
    spec.as_object_mut().unwrap().remove("password");
    w.apply("LibreChatUser", "blocked", spec).await;
    user_id(&w, "blocked").await;
    // The instance disappears (its finalizer removed by hand, as someone forcing it would):
    // the account cannot be reached to delete it.
    w.force_out_instance("lc", ("librechatusers", "blocked"))
        .await;
    w.delete("LibreChatUser", "blocked").await;
    w.wait_condition(
        "librechatusers",
        "blocked",
        "Ready",
        "False",
        Some("DeleteBlocked"),
    )
    .await;
    w.wait_event("blocked", "DeleteBlocked").await;
    assert!(w.find_user("blocked@example.com").await.is_some());
    let blocked = |n: u32| {
        let series =
            format!("librechat_operator_deletions_blocked{{kind=\"LibreChatUser\"}} {n}\n");
        let port = w.http_port;
        async move {
            eventually("the deletions_blocked gauge", || async {
                http_get(port, "/metrics")?
                    .1
                    .contains(&series)
                    .then_some(())
            })
            .await
        }
    };
    blocked(1).await;
    // The instance comes back: the deletion completes.
    w.ready_instance("lc", json!({})).await;
    w.wait_gone("librechatusers", "blocked").await;
    assert!(w.find_user("blocked@example.com").await.is_none());
    blocked(0).await;
}

#[tokio::test]
async fn operator_restart_mid_way_recovers_without_duplicates() {
    let mut w = World::new("user-crash").await;
    w.secret("pw", &[("password", PASSWORD)]).await;
    w.start_operator();
    w.ready_instance("lc", json!({})).await;
    w.stop_operator();

    // Objects created while the operator is down.
    for i in 0..5 {
        w.apply(
            "LibreChatUser",
            &format!("u{i}"),
            local_user(&format!("u{i}@example.com"), "pw"),
        )
        .await;
    }
    // A crash after claiming an email but before creating the account: the claim is there,
    // the account is not. The same object must recognise its claim and finish.
    let uid = w
        .get("librechatusers", "u0")
        .await
        .unwrap()
        .pointer("/metadata/uid")
        .and_then(|v| v.as_str())
        .unwrap()
        .to_string();
    w.db.collection::<Document>("librechat_operator_owners")
        .insert_one(doc! { "_id": "u0@example.com", "kind": "LibreChatUser", "namespace": &w.ns, "name": "u0", "uid": uid, "claimedAt": mongodb::bson::DateTime::now() })
        .await
        .unwrap();

    w.start_operator();
    for i in 0..5 {
        user_id(&w, &format!("u{i}")).await;
    }
    w.stop_operator();
    w.start_operator();
    tokio::time::sleep(Duration::from_secs(4)).await;
    for i in 0..5 {
        let email = format!("u{i}@example.com");
        assert_eq!(
            w.users()
                .count_documents(doc! { "email": &email })
                .await
                .unwrap(),
            1,
            "{email} must exist exactly once"
        );
        w.wait_condition("librechatusers", &format!("u{i}"), "Ready", "True", None)
            .await;
    }
    let emails: Vec<String> = (0..5).map(|i| format!("u{i}@example.com")).collect();
    w.contract_check(json!({ "users": emails.iter().map(|e| json!({ "email": e, "password": PASSWORD })).collect::<Vec<_>>() }));
}

#[tokio::test]
async fn email_cannot_change() {
    let w = World::with_instance("user-email", json!({})).await;
    w.apply(
        "LibreChatUser",
        "fixed",
        json!({ "instanceRef": { "name": "lc" }, "email": "first@example.com" }),
    )
    .await;
    user_id(&w, "fixed").await;
    // API servers with CEL refuse the change; older ones accept it and the controller refuses.
    let api = dynamic(&w.client, &w.ns, "LibreChatUser");
    let patch = json!({ "spec": { "email": "second@example.com" } });
    if api
        .patch(
            "fixed",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .is_ok()
    {
        let obj = w
            .wait_condition(
                "librechatusers",
                "fixed",
                "Ready",
                "False",
                Some("InvalidSpec"),
            )
            .await;
        assert!(condition(&obj, "Ready")
            .unwrap()
            .message
            .contains("immutable"));
    }
    assert!(w.find_user("second@example.com").await.is_none());
    assert!(w.find_user("first@example.com").await.is_some());
}

#[tokio::test]
async fn exported_accounts_are_adopted_unchanged() {
    let w = World::with_instance("user-export", json!({})).await;
    let existing = ObjectId::new();
    let mut doc = foreign_user(existing, "veteran@example.com");
    doc.insert("role", "ADMIN");
    w.users().insert_one(doc).await.unwrap();
    let hash_before = w
        .find_user("veteran@example.com")
        .await
        .unwrap()
        .get_str("password")
        .unwrap()
        .to_string();

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_librechat-operator"))
        .args([
            "export",
            "--mongodb-uri",
            &w.mongo_uri(),
            "--instance",
            "lc",
            "--target-namespace",
            &w.ns,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml = String::from_utf8(out.stdout).unwrap();
    assert!(
        yaml.contains("adopt: true") && !yaml.contains("$2a$"),
        "{yaml}"
    );
    let mut apply = std::process::Command::new("kubectl")
        .args(["apply", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(apply.stdin.as_mut().unwrap(), yaml.as_bytes()).unwrap();
    assert!(apply.wait().unwrap().success());

    let obj = w
        .wait_condition(
            "librechatusers",
            "veteran-example-com",
            "Ready",
            "True",
            None,
        )
        .await;
    assert_eq!(
        obj.pointer("/status/userId").and_then(|v| v.as_str()),
        Some(existing.to_hex().as_str())
    );
    let after = w.find_user("veteran@example.com").await.unwrap();
    assert_eq!(after.get_str("role").unwrap(), "ADMIN");
    assert_eq!(
        after.get_str("password").unwrap(),
        hash_before,
        "adoption without a declared password keeps the password"
    );
}

#[tokio::test]
async fn a_recreated_object_inherits_its_orphaned_account() {
    let mut w = World::with_instance("user-orphan", json!({})).await;
    w.apply(
        "LibreChatUser",
        "phoenix",
        json!({ "instanceRef": { "name": "lc" }, "email": "phoenix@example.com", "role": "ADMIN" }),
    )
    .await;
    let id = user_id(&w, "phoenix").await;
    // The object vanishes without its finalizer running (say, a forced namespace clean-up
    // while the operator was down).
    w.stop_operator();
    w.remove_without_cleanup("LibreChatUser", "phoenix").await;
    w.start_operator();

    // Another name may not take the orphan without adopt; the same declaration may.
    w.apply(
        "LibreChatUser",
        "impostor",
        json!({ "instanceRef": { "name": "lc" }, "email": "phoenix@example.com" }),
    )
    .await;
    w.wait_condition(
        "librechatusers",
        "impostor",
        "Ready",
        "False",
        Some("AlreadyExists"),
    )
    .await;
    w.apply(
        "LibreChatUser",
        "phoenix",
        json!({ "instanceRef": { "name": "lc" }, "email": "phoenix@example.com", "role": "ADMIN" }),
    )
    .await;
    assert_eq!(user_id(&w, "phoenix").await, id);
    w.wait_condition(
        "librechatusers",
        "impostor",
        "Ready",
        "False",
        Some("Conflict"),
    )
    .await;
}

#[tokio::test]
async fn an_account_deleted_in_librechat_is_recreated_fresh() {
    let w = World::with_instance("user-regone", json!({})).await;
    w.secret("pw", &[("password", PASSWORD)]).await;
    let first = local_account(&w, "back", "back@example.com").await;
    // The person deletes their account in LibreChat (DELETE /api/user/delete).
    w.users().delete_one(doc! { "_id": first }).await.unwrap();
    let second = eventually("the account to be re-created", || async {
        let d = w.find_user("back@example.com").await?;
        d.get_object_id("_id").ok()
    })
    .await;
    assert_ne!(
        first, second,
        "a re-created account must not reuse the deleted one's id (its leftovers would come back)"
    );
    w.contract_check(json!({ "users": [ { "email": "back@example.com", "password": PASSWORD } ] }));
    eventually("status to name the new account", || async {
        let obj = w.get("librechatusers", "back").await?;
        (obj.pointer("/status/userId")?.as_str()? == second.to_hex()).then_some(())
    })
    .await;
}

/// How many cost-10 hashes the world's operator has made.
fn hashes_made(w: &World) -> Option<u64> {
    let (_, text) = http_get(w.http_port, "/metrics")?;
    text.lines()
        .find_map(|l| l.strip_prefix("librechat_operator_bcrypt_hashes_total "))?
        .trim()
        .parse()
        .ok()
}

async fn wait_hashes(w: &World, count: u64) {
    eventually(&format!("{count} hashes made"), || async {
        (hashes_made(w)? == count).then_some(())
    })
    .await;
}

/// An account declared while its instance's MongoDB is out is hashed while it waits and
/// written with that hash once MongoDB is back, and the hash of a password replaced while it
/// waited is never the one written: the account takes only the current password.
#[tokio::test]
async fn a_password_is_hashed_while_the_instance_is_out_and_a_stale_hash_is_never_written() {
    let mut w = World::new("user-ahead").await;
    w.start_operator();
    let nothing_there = format!(
        "mongodb://127.0.0.1:{}/{}?directConnection=true",
        free_port(),
        w.db_name
    );
    let redis = env("REDIS_URL");
    w.secret("lc-stores", &[("mongo", &nothing_there), ("redis", &redis)])
        .await;
    w.apply_instance_of_stores("lc", json!({})).await;
    w.wait_condition("librechatinstances", "lc", "MongoReachable", "False", None)
        .await;
    w.secret("pw", &[("password", "First-Password-While-Out-1")])
        .await;
    w.apply(
        "LibreChatUser",
        "early",
        local_user("early@example.com", "pw"),
    )
    .await;
    w.wait_condition(
        "librechatusers",
        "early",
        "Ready",
        "False",
        Some("InstanceNotReady"),
    )
    .await;
    wait_hashes(&w, 1).await;
    assert!(w.find_user("early@example.com").await.is_none());

    // Replaced while it waits: hashed again, and the first hash is not written.
    w.secret("pw", &[("password", "Second-Password-While-Out-2")])
        .await;
    wait_hashes(&w, 2).await;

    // MongoDB is back.
    w.secret("lc-stores", &[("mongo", &w.mongo_uri()), ("redis", &redis)])
        .await;
    w.wait_condition("librechatusers", "early", "Ready", "True", None)
        .await;
    let doc = w.find_user("early@example.com").await.unwrap();
    let stored = doc.get_str("password").unwrap();
    assert!(bcrypt::verify("Second-Password-While-Out-2", stored).unwrap());
    assert!(!bcrypt::verify("First-Password-While-Out-1", stored).unwrap());
    assert_eq!(
        hashes_made(&w),
        Some(2),
        "the account is written with the hash made while it waited, not a third"
    );
}

/// While only the instance's Redis is out, a new account is created (nothing of it can be in
/// LibreChat's caches yet), but a change to an existing account is not written: LibreChat may
/// serve its cached copy, and the operator could not drop it. Once Redis is back the change
/// is applied.
#[tokio::test]
async fn while_redis_is_out_new_accounts_are_created_and_existing_ones_wait() {
    let mut w = World::new("user-redis-out").await;
    w.start_operator();
    let port = free_port();
    let redis = PrivateRedis::start(port);
    w.apply_instance("lc", &format!("redis://127.0.0.1:{port}/"), json!({}))
        .await;
    w.wait_condition("librechatinstances", "lc", "Ready", "True", None)
        .await;
    w.secret("old-pw", &[("password", PASSWORD)]).await;
    w.apply(
        "LibreChatUser",
        "old",
        local_user("old@example.com", "old-pw"),
    )
    .await;
    w.wait_condition("librechatusers", "old", "Ready", "True", None)
        .await;

    drop(redis);
    w.wait_condition("librechatinstances", "lc", "RedisReachable", "False", None)
        .await;
    let mut renamed = local_user("old@example.com", "old-pw");
    renamed["name"] = json!("Renamed While Redis Was Out");
    w.apply("LibreChatUser", "old", renamed).await;
    w.secret("new-pw", &[("password", "New-Account-While-Redis-Out-1")])
        .await;
    w.apply(
        "LibreChatUser",
        "new",
        local_user("new@example.com", "new-pw"),
    )
    .await;

    w.wait_condition("librechatusers", "new", "Ready", "True", None)
        .await;
    let created = w.find_user("new@example.com").await.unwrap();
    let hash = created.get_str("password").unwrap();
    assert!(bcrypt::verify("New-Account-While-Redis-Out-1", hash).unwrap());
    // LibreChat's own code finds the account made without Redis and takes its password.
    w.contract_check(json!({ "users": [
        { "email": "new@example.com", "password": "New-Account-While-Redis-Out-1" }
    ] }));
    let waiting = w
        .wait_condition(
            "librechatusers",
            "old",
            "Ready",
            "False",
            Some("InstanceNotReady"),
        )
        .await;
    let message = condition(&waiting, "Ready").unwrap().message;
    assert!(message.contains("Redis"), "{message}");
    let old = w.find_user("old@example.com").await.unwrap();
    assert_ne!(
        old.get_str("name").unwrap(),
        "Renamed While Redis Was Out",
        "an existing account is not changed while its cached copy cannot be dropped"
    );

    let redis = PrivateRedis::start(port);
    eventually("the rename once Redis is back", || async {
        let doc = w.find_user("old@example.com").await?;
        (doc.get_str("name").ok()? == "Renamed While Redis Was Out").then_some(())
    })
    .await;
    w.wait_condition("librechatusers", "old", "Ready", "True", None)
        .await;
    drop(redis);
}

/// An operator that starts while only Redis is out (a restart, a new leader) leaves an account
/// that needs no write Ready: no status write, no event, nothing written to LibreChat. An
/// account that needs a write (changed by hand, its password Secret rotated, a grant added,
/// all while no operator ran) waits for Redis, names it, and is written once Redis is back.
#[tokio::test]
async fn a_restart_while_redis_is_out_leaves_settled_accounts_ready() {
    let mut w = World::new("user-redis-restart").await;
    w.start_operator();
    let port = free_port();
    let redis = PrivateRedis::start(port);
    let balance = json!({ "balance": { "enabled": true, "startBalance": 100 } });
    w.apply_instance("lc", &format!("redis://127.0.0.1:{port}/"), balance)
        .await;
    w.wait_condition("librechatinstances", "lc", "Ready", "True", None)
        .await;
    let granted = |grants: serde_json::Value| {
        let mut spec = local_user("steady@example.com", "steady-pw");
        spec["balance"] = json!({ "grants": grants });
        spec
    };
    let welcome = json!([{ "id": "welcome", "credits": 50 }]);
    let declared = [
        ("steady", "steady@example.com", granted(welcome.clone())),
        (
            "edited",
            "edited@example.com",
            local_user("edited@example.com", "edited-pw"),
        ),
        (
            "rotated",
            "rotated@example.com",
            local_user("rotated@example.com", "rotated-pw"),
        ),
        (
            "granted",
            "granted@example.com",
            local_user("granted@example.com", "granted-pw"),
        ),
    ];
    for (name, email, mut spec) in declared.clone() {
        w.secret(&format!("{name}-pw"), &[("password", PASSWORD)])
            .await;
        spec["email"] = json!(email);
        spec["password"]["secretRef"]["name"] = json!(format!("{name}-pw"));
        w.apply("LibreChatUser", name, spec).await;
    }
    for (name, _, _) in &declared {
        w.wait_condition("librechatusers", name, "Ready", "True", None)
            .await;
    }
    drop(redis);
    w.wait_condition("librechatinstances", "lc", "RedisReachable", "False", None)
        .await;
    w.stop_operator();
    let before = w.get("librechatusers", "steady").await.unwrap();
    let events_before = w.event_reasons("steady").await.len();

    // While no operator runs: an edit by hand, a rotated Secret, a grant added.
    w.users()
        .update_one(
            doc! { "email": "edited@example.com" },
            doc! { "$set": { "name": "Edited By Hand" } },
        )
        .await
        .unwrap();
    w.secret("rotated-pw", &[("password", "Rotated-While-Redis-Out-2")])
        .await;
    let mut more = local_user("granted@example.com", "granted-pw");
    more["balance"] = json!({ "grants": [{ "id": "bonus", "credits": 70 }] });
    w.apply("LibreChatUser", "granted", more).await;

    w.start_operator();
    wait_ready_users(&w, 1).await;
    for name in ["edited", "rotated", "granted"] {
        let waiting = w
            .wait_condition(
                "librechatusers",
                name,
                "Ready",
                "False",
                Some("InstanceNotReady"),
            )
            .await;
        let message = condition(&waiting, "Ready").unwrap().message;
        assert!(message.contains("Redis"), "{name}: {message}");
    }
    // Several resyncs (3 s) of the settled account while Redis stays out.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let after = w.get("librechatusers", "steady").await.unwrap();
    assert_eq!(
        after.pointer("/metadata/resourceVersion"),
        before.pointer("/metadata/resourceVersion"),
        "a settled account is not written while Redis is out, its status neither: {after}"
    );
    assert_eq!(condition(&after, "Ready").unwrap().status, "True");
    assert_eq!(w.event_reasons("steady").await.len(), events_before);
    let edited = w.find_user("edited@example.com").await.unwrap();
    assert_eq!(edited.get_str("name").unwrap(), "Edited By Hand");
    let rotated = w.find_user("rotated@example.com").await.unwrap();
    assert!(bcrypt::verify(PASSWORD, rotated.get_str("password").unwrap()).unwrap());
    let granted = w.get("librechatusers", "granted").await.unwrap();
    let account = granted.pointer("/status/userId").unwrap().as_str().unwrap();
    let scope = librechat_operator::librechat::balance::grant_scope(
        &w.ns,
        "granted",
        mongodb::bson::oid::ObjectId::parse_str(account).unwrap(),
    );
    let tx = librechat_operator::librechat::balance::grant_transaction_id(&scope, "bonus");
    let transactions = w.db.collection::<Document>("transactions");
    let bonus = doc! { "_id": tx };
    assert_eq!(
        transactions.count_documents(bonus.clone()).await.unwrap(),
        0
    );

    let redis = PrivateRedis::start(port);
    for (name, _, _) in &declared {
        w.wait_condition("librechatusers", name, "Ready", "True", None)
            .await;
    }
    let edited = w.find_user("edited@example.com").await.unwrap();
    assert_eq!(edited.get_str("name").unwrap(), "Jane Doe");
    let rotated = w.find_user("rotated@example.com").await.unwrap();
    let hash = rotated.get_str("password").unwrap();
    assert!(bcrypt::verify("Rotated-While-Redis-Out-2", hash).unwrap());
    assert_eq!(transactions.count_documents(bonus).await.unwrap(), 1);
    drop(redis);
}

/// The attack: while the instance's Redis is out (new accounts are then still created), a
/// namespace the instance does not admit declares an account, and an admitted tenant declares
/// an ADMIN. Neither is created: creating without Redis skips no check.
#[tokio::test]
async fn while_redis_is_out_a_refused_tenant_still_creates_nothing() {
    let mut w = World::new("user-redis-tenant").await;
    let (allowed, denied) = tenant_namespaces(&mut w).await;
    let port = free_port();
    let redis = PrivateRedis::start(port);
    w.apply_instance(
        "lc",
        &format!("redis://127.0.0.1:{port}/"),
        json!({ "allowedNamespaces": [allowed.clone()] }),
    )
    .await;
    w.wait_condition("librechatinstances", "lc", "Ready", "True", None)
        .await;
    drop(redis);
    w.wait_condition("librechatinstances", "lc", "RedisReachable", "False", None)
        .await;

    let reference = json!({ "name": "lc", "namespace": w.ns.clone() });
    let declare = |email: &str, role: Option<&str>| {
        let mut spec = json!({ "instanceRef": reference, "email": email });
        if let Some(role) = role {
            spec["role"] = json!(role);
        }
        spec
    };
    w.apply_in(
        &denied,
        "LibreChatUser",
        "u",
        declare("denied@example.com", None),
    )
    .await;
    w.apply_in(
        &allowed,
        "LibreChatUser",
        "boss",
        declare("boss@example.com", Some("ADMIN")),
    )
    .await;
    w.apply_in(
        &allowed,
        "LibreChatUser",
        "fine",
        declare("fine@example.com", None),
    )
    .await;

    // The admitted, plain account shows that creation goes on without Redis...
    wait_condition_in(
        &w.client,
        &allowed,
        "librechatusers",
        "fine",
        "Ready",
        "True",
        None,
    )
    .await;
    // ...and the refused ones are refused as ever.
    wait_condition_in(
        &w.client,
        &denied,
        "librechatusers",
        "u",
        "Ready",
        "False",
        Some("NamespaceNotAllowed"),
    )
    .await;
    wait_condition_in(
        &w.client,
        &allowed,
        "librechatusers",
        "boss",
        "Ready",
        "False",
        Some("AdminNotAllowed"),
    )
    .await;
    assert!(w.find_user("denied@example.com").await.is_none());
    assert!(w.find_user("boss@example.com").await.is_none());
}

/// The attack: an account's stored hash claims bcrypt's highest cost (2^31 rounds: days of one
/// core). Whoever could plant it (a migration, a hand edit) must not make the operator verify
/// against it when the account is adopted with a declared password: that would hold a bcrypt
/// thread, and every tenant's hashing queued behind it, for days. The hash counts as no match
/// and the declared password is applied at cost 10; other accounts keep being created.
#[tokio::test]
async fn a_planted_highest_cost_hash_does_not_stall_hashing() {
    let w = World::with_instance("user-cost", json!({})).await;
    w.secret("pw", &[("password", PASSWORD)]).await;
    let id = ObjectId::new();
    let mut planted = foreign_user(id, "slow@example.com");
    // A well-formed hash (salt and digest bcrypt reads) with its cost raised to 31.
    let well_formed = bcrypt::hash_with_salt("anything", 4, [7u8; 16]).unwrap();
    let slow = well_formed
        .format_for_version(bcrypt::Version::TwoB)
        .replacen("$2b$04$", "$2b$31$", 1);
    assert!(slow.parse::<bcrypt::HashParts>().is_ok());
    planted.insert("password", slow.clone());
    w.users().insert_one(planted).await.unwrap();

    let mut adopt = local_user("slow@example.com", "pw");
    adopt["adopt"] = json!(true);
    w.apply("LibreChatUser", "slow", adopt).await;
    w.apply(
        "LibreChatUser",
        "beside",
        local_user("beside@example.com", "pw"),
    )
    .await;
    assert_eq!(user_id(&w, "slow").await, id);
    user_id(&w, "beside").await;

    let hash = w.find_user("slow@example.com").await.unwrap();
    let hash = hash.get_str("password").unwrap();
    assert!(hash.starts_with("$2b$10$"), "applied again at cost 10");
    assert!(bcrypt::verify(PASSWORD, hash).unwrap());
    w.contract_check(json!({ "users": [ { "email": "slow@example.com", "password": PASSWORD } ] }));
}

/// How many password Secrets the world's operator has read for their values.
fn password_reads(w: &World) -> Option<u64> {
    let (_, text) = http_get(w.http_port, "/metrics")?;
    let series = "librechat_operator_secret_reads_total{secret_use=\"password\"} ";
    let value = text.lines().find_map(|l| l.strip_prefix(series));
    Some(value.map_or(0, |v| v.trim().parse().unwrap_or(u64::MAX)))
}

/// Waits until the world's (restarted) operator has reconciled `count` LibreChatUsers Ready.
async fn wait_ready_users(w: &World, count: usize) {
    let series = format!(
        "librechat_operator_managed_objects{{kind=\"LibreChatUser\",ready=\"true\"}} {count}\n"
    );
    eventually(&format!("{count} users reconciled Ready"), || async {
        http_get(w.http_port, "/metrics")?
            .1
            .contains(&series)
            .then_some(())
    })
    .await;
}

async fn status_field(w: &World, name: &str, pointer: &str) -> Option<serde_json::Value> {
    w.get("librechatusers", name)
        .await?
        .pointer(pointer)
        .cloned()
}

/// A restarted operator takes a password as applied when status records the Secret version
/// the watch shows (and the minimum length is not higher), without reading the Secret; it reads
/// exactly the Secrets it must: a version changed while it was down, an account to create
/// again, every password once the instance's minimum length was raised.
#[tokio::test]
async fn a_restart_reads_only_the_password_secrets_it_must() {
    const ROTATED: &str = "A-Rotated-And-Much-Longer-Password-2";
    let mut w = World::new("user-restart-reads").await;
    for i in 0..4 {
        w.secret(&format!("pw{i}"), &[("password", PASSWORD)]).await;
    }
    w.start_operator();
    w.ready_instance("lc", json!({})).await;
    for i in 0..4 {
        let spec = local_user(&format!("r{i}@example.com"), &format!("pw{i}"));
        w.apply("LibreChatUser", &format!("r{i}"), spec).await;
    }
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(user_id(&w, &format!("r{i}")).await);
        let min = status_field(&w, &format!("r{i}"), "/status/passwordMinLength").await;
        assert_eq!(
            min,
            Some(json!(8)),
            "status records the minimum it was checked against"
        );
    }

    // Nothing changed while it was down: no Secret read, no hash.
    w.stop_operator();
    w.start_operator();
    wait_ready_users(&w, 4).await;
    assert_eq!(
        password_reads(&w),
        Some(0),
        "a restart read an applied password's Secret"
    );
    assert_eq!(hashes_made(&w), Some(0));

    // While it is down: r1's password changes, r2's account is deleted in LibreChat.
    w.stop_operator();
    let before = status_field(&w, "r1", "/status/passwordSecretVersion").await;
    w.secret("pw1", &[("password", ROTATED)]).await;
    w.users().delete_one(doc! { "_id": ids[2] }).await.unwrap();
    w.start_operator();
    eventually(
        "r1 to apply the new version and r2 a new account",
        || async {
            let version = status_field(&w, "r1", "/status/passwordSecretVersion").await;
            let id = status_field(&w, "r2", "/status/userId").await?;
            (version != before && id != json!(ids[2].to_hex())).then_some(())
        },
    )
    .await;
    wait_ready_users(&w, 4).await;
    assert_eq!(
        password_reads(&w),
        Some(2),
        "only r1's and r2's Secrets are read"
    );
    w.contract_check(json!({ "users": [
        { "email": "r0@example.com", "password": PASSWORD },
        { "email": "r1@example.com", "password": ROTATED },
        { "email": "r2@example.com", "password": PASSWORD },
        { "email": "r3@example.com", "password": PASSWORD },
    ] }));

    // The instance's minimum raised while it is down: every password is checked again, the
    // short ones are refused and their accounts keep the password they had.
    w.stop_operator();
    let policy = json!({ "passwordPolicy": { "minLength": 30 } });
    w.apply_instance("lc", &env("REDIS_URL"), policy).await;
    w.start_operator();
    for i in [0, 2, 3] {
        let name = format!("r{i}");
        w.wait_condition(
            "librechatusers",
            &name,
            "Ready",
            "False",
            Some("PasswordInvalid"),
        )
        .await;
    }
    w.wait_condition("librechatusers", "r1", "Ready", "True", None)
        .await;
    eventually("r1's status to record the raised minimum", || async {
        let min = status_field(&w, "r1", "/status/passwordMinLength").await?;
        (min == json!(30)).then_some(())
    })
    .await;
    assert!(
        password_reads(&w).unwrap() >= 4,
        "every password is read again"
    );
    w.contract_check(json!({ "users": [
        { "email": "r0@example.com", "password": PASSWORD },
        { "email": "r1@example.com", "password": ROTATED },
    ] }));
}
