//! Groups, roles and grants: written as LibreChat writes them and judged by LibreChat's own
//! code (`getUserPrincipals`, `getRoleByName`, its ACL methods); the caches LibreChat reads
//! are gone after each change; tenants reach only what they own.

use mongodb::bson::{doc, oid::ObjectId, Document};
use redis::AsyncCommands;
use serde_json::{json, Value};

use crate::support::*;
use crate::trust::{lc, tenant_world};
use crate::user::foreign_user;

/// A Redis prefix of this world's own, so cache assertions see only this test's keys.
fn own_redis(w: &World) -> Value {
    json!({ "redis": { "keyPrefix": w.ns.clone() } })
}

/// Puts cache entries LibreChat would have built, to see them dropped.
async fn seed_cache(w: &World, keys: &[String]) -> Vec<String> {
    let mut r = redis().await;
    let full: Vec<String> = keys.iter().map(|k| format!("{}::{k}", w.ns)).collect();
    for k in &full {
        let _: () = r.set(k, "{\"value\":[]}").await.unwrap();
    }
    full
}

async fn assert_dropped(keys: &[String]) {
    let mut r = redis().await;
    for k in keys {
        let left: bool = r.exists(k).await.unwrap();
        assert!(!left, "LibreChat's cache entry {k} must be dropped");
    }
}

/// A resource a person made in LibreChat, owned (ACL OWNER) by `owner`.
pub(crate) async fn seed_resource(
    w: &World,
    collection: &str,
    resource_type: &str,
    owner: ObjectId,
) -> ObjectId {
    let id = ObjectId::new();
    let mut d = doc! { "_id": id, "name": format!("shared {resource_type}"), "author": owner };
    if collection == "agents" {
        d.insert("id", format!("agent_{}", id.to_hex()));
    }
    w.db.collection::<Document>(collection)
        .insert_one(d)
        .await
        .unwrap();
    w.db.collection::<Document>("aclentries")
        .insert_one(doc! {
            "principalType": "user", "principalId": owner, "principalModel": "User",
            "resourceType": resource_type, "resourceId": id, "permBits": 15,
        })
        .await
        .unwrap();
    id
}

async fn group_doc(w: &World, name: &str) -> Option<Document> {
    w.db.collection::<Document>("groups")
        .find_one(doc! { "name": name })
        .await
        .unwrap()
}

fn member_ids(group: &Document) -> Vec<String> {
    let mut ids: Vec<String> = group
        .get_array("memberIds")
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn a_group_is_what_librechat_reads_for_its_members() {
    let mut w = World::new("acc-group").await;
    w.start_operator();
    w.ready_instance("lc", own_redis(&w)).await;
    w.secret("pw", &[("password", "Group-Member-Pass-1")]).await;
    w.apply(
        "LibreChatUser",
        "alice",
        json!({ "instanceRef": { "name": "lc" }, "email": "alice@example.com",
                "password": { "secretRef": { "name": "pw", "key": "password" } } }),
    )
    .await;
    let alice = w
        .wait_condition("librechatusers", "alice", "Ready", "True", None)
        .await;
    let alice_id = alice
        .pointer("/status/userId")
        .and_then(Value::as_str)
        .unwrap()
        .to_string();
    // An SSO account LibreChat knows by its idOnTheSource.
    let carol = ObjectId::new();
    let mut carol_doc = foreign_user(carol, "carol@example.com");
    carol_doc.insert("idOnTheSource", "entra-oid-carol");
    w.users().insert_one(carol_doc).await.unwrap();
    let agent = seed_resource(&w, "agents", "agent", carol).await;
    let cached = seed_cache(
        &w,
        &[
            format!("USER_PRINCIPALS:{alice_id}"),
            "USER_PRINCIPALS:entra-oid-carol".into(),
            "PROMPT_GROUPS_ACCESS:access:generation".into(),
        ],
    )
    .await;

    w.apply(
        "LibreChatGroup",
        "team",
        json!({ "instanceRef": { "name": "lc" }, "name": "Team A", "description": "the A team",
                "members": [{ "userRef": { "name": "alice" } }, { "email": "Carol@Example.com" },
                            { "email": "later@example.com" }],
                "grants": [{ "resourceType": "agent", "resourceId": format!("agent_{}", agent.to_hex()), "access": "viewer" }] }),
    )
    .await;
    let obj = w
        .wait_condition(
            "librechatgroups",
            "team",
            "Ready",
            "True",
            Some("MembersPending"),
        )
        .await;
    assert_eq!(obj.pointer("/status/memberCount"), Some(&json!(2)));
    assert_eq!(
        obj.pointer("/status/pendingMembers"),
        Some(&json!(["later@example.com"]))
    );
    let group_id = obj
        .pointer("/status/groupId")
        .and_then(Value::as_str)
        .unwrap()
        .to_string();
    let group = group_doc(&w, "Team A").await.unwrap();
    assert_eq!(group.get_object_id("_id").unwrap().to_hex(), group_id);
    assert_eq!(member_ids(&group), {
        let mut v = vec![alice_id.clone(), "entra-oid-carol".to_string()];
        v.sort();
        v
    });
    assert_dropped(&cached).await;
    w.contract_check(json!({
        "groups": [{ "id": group_id, "name": "Team A", "description": "the A team",
                     "memberIds": [alice_id, "entra-oid-carol"] }],
        "principals": [{ "userId": alice_id, "groups": [group_id] },
                       { "userId": carol.to_hex(), "groups": [group_id] }],
        "aclEntries": [{ "principalType": "group", "principalId": group_id, "resourceType": "agent",
                         "resourceId": agent.to_hex(), "permBits": 1, "expectFound": true }],
    }));

    // The pending member registers in LibreChat: added when the account appears.
    let later = ObjectId::new();
    w.users()
        .insert_one(foreign_user(later, "later@example.com"))
        .await
        .unwrap();
    w.wait_condition(
        "librechatgroups",
        "team",
        "Ready",
        "True",
        Some("Reconciled"),
    )
    .await;
    assert!(member_ids(&group_doc(&w, "Team A").await.unwrap()).contains(&later.to_hex()));
    // Status no longer lists the member as pending (a merge patch that left the emptied list
    // out kept the old one for ever).
    let shown = w.get("librechatgroups", "team").await.unwrap();
    assert_eq!(
        shown.pointer("/status/pendingMembers"),
        Some(&json!([])),
        "{shown}"
    );

    // A member a person added in LibreChat is theirs: the operator never takes it out.
    w.db.collection::<Document>("groups")
        .update_one(
            doc! { "name": "Team A" },
            doc! { "$addToSet": { "memberIds": "added-in-the-ui" } },
        )
        .await
        .unwrap();
    // alice leaves, and the grant goes up to editor.
    let cached = seed_cache(&w, &[format!("USER_PRINCIPALS:{alice_id}")]).await;
    w.apply(
        "LibreChatGroup",
        "team",
        json!({ "instanceRef": { "name": "lc" }, "name": "Team A", "description": "the A team",
                "members": [{ "email": "carol@example.com" }, { "email": "later@example.com" }],
                "grants": [{ "resourceType": "agent", "resourceId": agent.to_hex(), "access": "editor" }] }),
    )
    .await;
    eventually("alice to leave the group", || async {
        let g = group_doc(&w, "Team A").await?;
        (!member_ids(&g).contains(&alice_id)).then_some(())
    })
    .await;
    w.wait_condition(
        "librechatgroups",
        "team",
        "Ready",
        "True",
        Some("Reconciled"),
    )
    .await;
    assert!(member_ids(&group_doc(&w, "Team A").await.unwrap())
        .contains(&"added-in-the-ui".to_string()));
    assert_dropped(&cached).await;
    w.contract_check(json!({
        "principals": [{ "userId": alice_id, "notGroups": [group_id] }],
        "aclEntries": [{ "principalType": "group", "principalId": group_id, "resourceType": "agent",
                         "resourceId": agent.to_hex(), "permBits": 3, "expectFound": true }],
    }));

    // Deleting the object deletes the group and its grants, as LibreChat's admin API does.
    w.delete("LibreChatGroup", "team").await;
    w.wait_gone("librechatgroups", "team").await;
    assert!(group_doc(&w, "Team A").await.is_none());
    w.contract_check(json!({
        "groups": [{ "id": group_id, "absent": true }],
        "principals": [{ "userId": carol.to_hex(), "notGroups": [group_id] }],
        "aclEntries": [{ "principalType": "group", "principalId": group_id, "resourceType": "agent",
                         "resourceId": agent.to_hex(), "permBits": 3, "expectFound": false }],
    }));
}

/// A group and a role whose instance was forced out (its finalizer removed by hand) after
/// they wrote: deleting them waits for the instance (`DeleteBlocked`, saying what to do), as a
/// ban's or an invitation's deletion does, rather than leave the LibreChat group and role (and
/// their names, held by records nobody owns) behind. The instance back, both go from LibreChat.
#[tokio::test]
async fn a_group_and_a_role_whose_instance_went_wait_for_it_before_they_go() {
    let w = World::with_instance("acc-gone", json!({})).await;
    let group = json!({ "instanceRef": { "name": "lc" }, "name": "Gone Crew" });
    let role = json!({ "instanceRef": { "name": "lc" }, "name": "GONEROLE",
                       "permissions": { "AGENTS": { "USE": true } } });
    w.apply("LibreChatGroup", "crew", group).await;
    w.apply("LibreChatRole", "gone", role).await;
    w.wait_condition("librechatgroups", "crew", "Ready", "True", None)
        .await;
    w.wait_condition("librechatroles", "gone", "Ready", "True", None)
        .await;
    let role_doc = || async {
        w.db.collection::<Document>("roles")
            .find_one(doc! { "name": "GONEROLE" })
            .await
            .unwrap()
    };
    assert!(group_doc(&w, "Gone Crew").await.is_some() && role_doc().await.is_some());

    w.force_out_instance("lc", ("librechatgroups", "crew"))
        .await;
    w.delete("LibreChatGroup", "crew").await;
    w.delete("LibreChatRole", "gone").await;
    for plural in ["librechatgroups", "librechatroles"] {
        let name = if plural == "librechatgroups" {
            "crew"
        } else {
            "gone"
        };
        let blocked = w
            .wait_condition(plural, name, "Ready", "False", Some("DeleteBlocked"))
            .await;
        let told = condition(&blocked, "Ready").unwrap().message;
        assert!(told.contains("no longer exists"), "{plural}: {told}");
    }
    assert!(
        group_doc(&w, "Gone Crew").await.is_some(),
        "the group went undone"
    );
    assert!(role_doc().await.is_some(), "the role went undone");

    w.apply_instance("lc", &env("REDIS_URL"), json!({})).await;
    w.wait_gone("librechatgroups", "crew").await;
    w.wait_gone("librechatroles", "gone").await;
    assert!(group_doc(&w, "Gone Crew").await.is_none());
    assert!(role_doc().await.is_none());
}

#[tokio::test]
async fn a_custom_role_is_kept_as_declared_and_its_deletion_moves_users_to_user() {
    let mut w = World::new("acc-role").await;
    w.start_operator();
    let mut spec = own_redis(&w);
    merge(&mut spec, json!({ "resyncPeriod": "2s" }));
    w.ready_instance("lc", spec).await;
    let owner = ObjectId::new();
    w.users()
        .insert_one(foreign_user(owner, "author@example.com"))
        .await
        .unwrap();
    let prompts = seed_resource(&w, "promptgroups", "promptGroup", owner).await;
    let cached = seed_cache(&w, &["ROLES:ANALYST".into()]).await;
    let permissions = json!({ "PROMPTS": { "USE": true, "CREATE": false },
                              "AGENTS": { "USE": true, "SHARE": false }, "WEB_SEARCH": { "USE": true } });
    w.apply(
        "LibreChatRole",
        "analyst",
        json!({ "instanceRef": { "name": "lc" }, "name": "ANALYST", "description": "Read-mostly",
                "permissions": permissions,
                "grants": [{ "resourceType": "promptGroup", "resourceId": prompts.to_hex(), "access": "viewer" }] }),
    )
    .await;
    w.wait_condition(
        "librechatroles",
        "analyst",
        "Ready",
        "True",
        Some("Reconciled"),
    )
    .await;
    assert_dropped(&cached).await;
    // An account with the role, made in LibreChat; and one the operator manages.
    let member = ObjectId::new();
    let mut d = foreign_user(member, "analyst@example.com");
    d.insert("role", "ANALYST");
    w.users().insert_one(d).await.unwrap();
    w.apply(
        "LibreChatUser",
        "dana",
        json!({ "instanceRef": { "name": "lc" }, "email": "dana@example.com", "role": "ANALYST" }),
    )
    .await;
    w.wait_condition("librechatusers", "dana", "Ready", "True", None)
        .await;
    w.contract_check(json!({
        "roles": [{ "name": "ANALYST", "description": "Read-mostly", "permissions": permissions, "exact": true }],
        "aclEntries": [{ "principalType": "role", "principalId": "ANALYST", "resourceType": "promptGroup",
                         "resourceId": prompts.to_hex(), "permBits": 1, "expectFound": true }],
        "principals": [{ "userId": member.to_hex(), "role": "ANALYST" }],
    }));

    // A hand edit is put back (and the cached role dropped again).
    let cached = seed_cache(&w, &["ROLES:ANALYST".into()]).await;
    w.db.collection::<Document>("roles")
        .update_one(
            doc! { "name": "ANALYST" },
            doc! { "$set": { "permissions.AGENTS.SHARE": true } },
        )
        .await
        .unwrap();
    eventually("the hand edit to be put back", || async {
        let r =
            w.db.collection::<Document>("roles")
                .find_one(doc! { "name": "ANALYST" })
                .await
                .ok()??;
        (r.get_document("permissions")
            .ok()?
            .get_document("AGENTS")
            .ok()?
            .get_bool("SHARE")
            == Ok(false))
        .then_some(())
    })
    .await;
    assert_dropped(&cached).await;

    // Deleting the role moves its users to USER, as deleteRoleByName does.
    w.delete("LibreChatUser", "dana").await;
    w.wait_gone("librechatusers", "dana").await;
    let cached = seed_cache(
        &w,
        &[
            "ROLES:ANALYST".into(),
            format!("AUTH_USER_DOC:auth-user-doc-byid:{}", member.to_hex()),
        ],
    )
    .await;
    w.delete("LibreChatRole", "analyst").await;
    w.wait_gone("librechatroles", "analyst").await;
    assert_dropped(&cached).await;
    w.contract_check(json!({
        "roles": [{ "name": "ANALYST", "absent": true }],
        "roleMembers": [{ "role": "USER", "userIds": [member.to_hex()] }],
        "aclEntries": [{ "principalType": "role", "principalId": "ANALYST", "resourceType": "promptGroup",
                         "resourceId": prompts.to_hex(), "permBits": 1, "expectFound": false }],
    }));
}

/// LibreChat's admin puts an account in a custom role just as the role's deletion moves its
/// accounts to USER. That account moves too, and LibreChat's cached copy of it, which still
/// names the deleted role, is dropped with the move: none is moved unlisted.
#[tokio::test]
async fn an_account_put_in_a_role_during_its_deletion_moves_with_its_cache_dropped() {
    let mut w = World::new("acc-rolejoin").await;
    w.start_operator_with_env(&[("LIBRECHAT_OPERATOR_PAUSE_AT", "before-role-accounts-move")]);
    w.ready_instance("lc", own_redis(&w)).await;
    let role = json!({ "instanceRef": { "name": "lc" }, "name": "JOINER",
                       "permissions": { "AGENTS": { "USE": true } } });
    w.apply("LibreChatRole", "joiner", role).await;
    w.wait_condition("librechatroles", "joiner", "Ready", "True", None)
        .await;
    let in_role = |id: ObjectId, email: &str| {
        let mut d = foreign_user(id, email);
        d.insert("role", "JOINER");
        d
    };
    let early = ObjectId::new();
    w.users()
        .insert_one(in_role(early, "early@example.com"))
        .await
        .unwrap();

    w.delete("LibreChatRole", "joiner").await;
    // The deletion pauses before it moves the role's accounts.
    w.wait_paused_at("before-role-accounts-move", 0).await;
    // Meanwhile LibreChat's admin puts another account in the role, and LibreChat caches
    // both accounts as they are.
    let late = ObjectId::new();
    w.users()
        .insert_one(in_role(late, "late@example.com"))
        .await
        .unwrap();
    let cached = seed_cache(
        &w,
        &[early, late].map(|id| format!("AUTH_USER_DOC:auth-user-doc-byid:{}", id.to_hex())),
    )
    .await;
    w.wait_gone("librechatroles", "joiner").await;
    assert_dropped(&cached).await;
    // As LibreChat's own code reads them: the role is gone, both accounts are in USER.
    w.contract_check(json!({
        "roles": [{ "name": "JOINER", "absent": true }],
        "roleMembers": [{ "role": "USER", "userIds": [early.to_hex(), late.to_hex()] }],
        "principals": [{ "userId": late.to_hex(), "role": "USER" }],
    }));
}

/// LibreChat's admins replace a custom role (deleted in their UI, made again under the name)
/// and put one of their accounts in it, just as the operator's deletion of the role it
/// created moves that role's accounts to USER. The admins' role and its account are theirs:
/// neither deleted nor moved.
#[tokio::test]
async fn a_role_replaced_while_its_deletion_moves_accounts_is_left_alone() {
    let mut w = World::new("acc-role-swap").await;
    w.start_operator_with_env(&[("LIBRECHAT_OPERATOR_PAUSE_AT", "before-role-accounts-move")]);
    w.ready_instance("lc", json!({})).await;
    let role = json!({ "instanceRef": { "name": "lc" }, "name": "SWAPPED",
                       "permissions": { "AGENTS": { "USE": true } } });
    w.apply("LibreChatRole", "swapped", role).await;
    w.wait_condition("librechatroles", "swapped", "Ready", "True", None)
        .await;
    let in_role = |id: ObjectId, email: &str| {
        let mut d = foreign_user(id, email);
        d.insert("role", "SWAPPED");
        d
    };
    let early = ObjectId::new();
    w.users()
        .insert_one(in_role(early, "early-swap@example.com"))
        .await
        .unwrap();

    w.delete("LibreChatRole", "swapped").await;
    w.wait_paused_at("before-role-accounts-move", 0).await;
    let roles = w.db.collection::<Document>("roles");
    roles.delete_one(doc! { "name": "SWAPPED" }).await.unwrap();
    let theirs = ObjectId::new();
    roles
        .insert_one(
            doc! { "_id": theirs, "name": "SWAPPED", "description": "the admins'",
            "permissions": { "AGENTS": { "USE": false } }, "__v": 0 },
        )
        .await
        .unwrap();
    let admins = ObjectId::new();
    w.users()
        .insert_one(in_role(admins, "admins-swap@example.com"))
        .await
        .unwrap();
    w.wait_gone("librechatroles", "swapped").await;
    let role_of = |id: ObjectId| {
        let users = w.users();
        async move {
            let user = users.find_one(doc! { "_id": id }).await.unwrap().unwrap();
            user.get_str("role").unwrap().to_string()
        }
    };
    assert_eq!(
        role_of(early).await,
        "USER",
        "the operator's role's account moved"
    );
    assert_eq!(
        role_of(admins).await,
        "SWAPPED",
        "the admins' account stays in their role"
    );
    let kept = roles.find_one(doc! { "name": "SWAPPED" }).await.unwrap();
    assert_eq!(
        kept.and_then(|r| r.get_object_id("_id").ok()),
        Some(theirs),
        "the admins' role stays"
    );
    // Said as what happened: the role was left, not deleted.
    w.wait_event("swapped", "RoleLeft").await;
}

/// LibreChat's admin deletes a custom role the operator created and makes another of the same
/// name. That one is LibreChat's: the object never writes its permissions, nor deletes it (or
/// moves its accounts) when the object goes; the object's grants on the name are withdrawn.
#[tokio::test]
async fn a_role_replaced_in_librechat_under_its_name_is_not_taken_over() {
    let w = World::with_instance("acc-role-replaced", json!({})).await;
    let owner = ObjectId::new();
    w.users()
        .insert_one(foreign_user(owner, "author-replaced@example.com"))
        .await
        .unwrap();
    let prompts = seed_resource(&w, "promptgroups", "promptGroup", owner).await;
    let role = json!({ "instanceRef": { "name": "lc" }, "name": "REPLACED",
                       "permissions": { "AGENTS": { "USE": true } },
                       "grants": [{ "resourceType": "promptGroup", "resourceId": prompts.to_hex(), "access": "viewer" }] });
    w.apply("LibreChatRole", "replaced", role).await;
    w.wait_condition("librechatroles", "replaced", "Ready", "True", None)
        .await;
    let roles = w.db.collection::<Document>("roles");
    roles.delete_one(doc! { "name": "REPLACED" }).await.unwrap();
    let theirs = ObjectId::new();
    roles
        .insert_one(
            doc! { "_id": theirs, "name": "REPLACED", "description": "the admin's",
            "permissions": { "AGENTS": { "USE": false } }, "__v": 0 },
        )
        .await
        .unwrap();
    let member = ObjectId::new();
    let mut d = foreign_user(member, "member-replaced@example.com");
    d.insert("role", "REPLACED");
    w.users().insert_one(d).await.unwrap();

    let obj = w
        .wait_condition(
            "librechatroles",
            "replaced",
            "Ready",
            "False",
            Some("AlreadyExists"),
        )
        .await;
    assert_eq!(condition(&obj, "Stalled").unwrap().status, "True");
    w.delete("LibreChatRole", "replaced").await;
    w.wait_gone("librechatroles", "replaced").await;
    let kept = roles
        .find_one(doc! { "name": "REPLACED" })
        .await
        .unwrap()
        .expect("the admin's role stays");
    assert_eq!(kept.get_object_id("_id"), Ok(theirs));
    // As LibreChat's own code reads them: the admin's permissions, its member, no grant left.
    w.contract_check(json!({
        "roles": [{ "name": "REPLACED", "permissions": { "AGENTS": { "USE": false } } }],
        "roleMembers": [{ "role": "REPLACED", "userIds": [member.to_hex()] }],
        "aclEntries": [{ "principalType": "role", "principalId": "REPLACED", "resourceType": "promptGroup",
                         "resourceId": prompts.to_hex(), "permBits": 1, "expectFound": false }],
    }));
}

/// LibreChat's admin deletes a custom role the operator created, and makes one of the name
/// while the operator is creating it again: the object gives the name up, and the grants it
/// gave under the name go with it (they would reach every account in the admins' role). They
/// were left behind, with no record left to take them back.
#[tokio::test]
async fn a_role_made_in_librechat_while_it_is_created_again_takes_no_grants() {
    let mut w = World::new("acc-role-remade").await;
    let point = "before-role-permissions";
    w.start_operator_with_env(&[("LIBRECHAT_OPERATOR_PAUSE_AT", point)]);
    w.ready_instance("lc", json!({})).await;
    let owner = ObjectId::new();
    w.users()
        .insert_one(foreign_user(owner, "author-remade@example.com"))
        .await
        .unwrap();
    let prompts = seed_resource(&w, "promptgroups", "promptGroup", owner).await;
    let role = json!({ "instanceRef": { "name": "lc" }, "name": "REMADE",
                       "permissions": { "AGENTS": { "USE": true } },
                       "grants": [{ "resourceType": "promptGroup", "resourceId": prompts.to_hex(), "access": "viewer" }] });
    w.apply("LibreChatRole", "remade", role).await;
    w.wait_condition("librechatroles", "remade", "Ready", "True", None)
        .await;
    let grant = |found: bool| {
        json!({ "principalType": "role", "principalId": "REMADE",
        "resourceType": "promptGroup", "resourceId": prompts.to_hex(), "permBits": 1, "expectFound": found })
    };
    w.contract_check(json!({ "aclEntries": [grant(true)] }));

    // LibreChat's admin deletes it; the object's next look claims it again and is held
    // before creating it, while the admin makes one of the name.
    let before = w.times_paused_at(point);
    let roles = w.db.collection::<Document>("roles");
    roles.delete_one(doc! { "name": "REMADE" }).await.unwrap();
    w.wait_paused_at(point, before).await;
    let theirs = ObjectId::new();
    roles
        .insert_one(
            doc! { "_id": theirs, "name": "REMADE", "description": "the admin's",
            "permissions": { "AGENTS": { "USE": false } }, "__v": 0 },
        )
        .await
        .unwrap();

    w.wait_condition(
        "librechatroles",
        "remade",
        "Ready",
        "False",
        Some("AlreadyExists"),
    )
    .await;
    w.contract_check(json!({
        "roles": [{ "name": "REMADE", "permissions": { "AGENTS": { "USE": false } } }],
        "aclEntries": [grant(false)],
    }));
    let kept = roles.find_one(doc! { "name": "REMADE" }).await.unwrap();
    assert_eq!(kept.unwrap().get_object_id("_id"), Ok(theirs));
}

/// LibreChat's USER role as `initializeRoles` leaves it (the types this test touches).
fn seeded_user_role() -> Document {
    doc! {
        "name": "USER", "description": "",
        "permissions": {
            "PROMPTS": { "USE": true, "CREATE": true, "SHARE": false, "SHARE_PUBLIC": false },
            "AGENTS": { "USE": true, "CREATE": true, "SHARE": false, "SHARE_PUBLIC": false },
            "MARKETPLACE": { "USE": false },
        },
        "__v": 0,
    }
}

#[tokio::test]
async fn built_in_roles_take_only_declared_keys_and_say_what_librechat_yaml_overrides() {
    let mut w = World::new("acc-builtin").await;
    w.start_operator();
    let mut spec = own_redis(&w);
    merge(
        &mut spec,
        json!({ "librechatYaml": { "interfaceKeys": ["agents"] } }),
    );
    w.ready_instance("lc", spec).await;
    // Before LibreChat's first start there is no USER role to change.
    w.apply(
        "LibreChatRole",
        "user",
        json!({ "instanceRef": { "name": "lc" }, "name": "USER",
                "permissions": { "AGENTS": { "SHARE": true }, "PROMPTS": { "SHARE": true } } }),
    )
    .await;
    w.wait_condition(
        "librechatroles",
        "user",
        "Ready",
        "False",
        Some("RoleNotFound"),
    )
    .await;
    w.db.collection::<Document>("roles")
        .insert_one(seeded_user_role())
        .await
        .unwrap();
    let cached = seed_cache(&w, &["ROLES:USER".into()]).await;
    let obj = w
        .wait_condition(
            "librechatroles",
            "user",
            "Ready",
            "True",
            Some("OverriddenAtRestart"),
        )
        .await;
    assert_eq!(
        obj.pointer("/status/overriddenAtRestart"),
        Some(&json!(["AGENTS"]))
    );
    assert_dropped(&cached).await;
    w.contract_check(json!({
        "roles": [{ "name": "USER", "permissions": {
            "PROMPTS": { "USE": true, "CREATE": true, "SHARE": true, "SHARE_PUBLIC": false },
            "AGENTS": { "USE": true, "SHARE": true }, "MARKETPLACE": { "USE": false } } }],
    }));

    // Names LibreChat refuses for a custom role, and permissions it does not know.
    for (name, role, permissions, says) in [
        ("lower-admin", "admin", json!({}), "built-in role ADMIN"),
        (
            "unknown-type",
            "VIEWER",
            json!({ "AGENT": { "USE": true } }),
            "unknown permission type 'AGENT'",
        ),
        (
            "unknown-key",
            "VIEWER",
            json!({ "SCHEDULES": { "SHARE": true } }),
            "unknown permission 'SCHEDULES.SHARE'",
        ),
        ("reserved", "members", json!({}), "reserved"),
    ] {
        w.apply(
            "LibreChatRole",
            name,
            json!({ "instanceRef": { "name": "lc" }, "name": role, "permissions": permissions }),
        )
        .await;
        let obj = w
            .wait_condition(
                "librechatroles",
                name,
                "Ready",
                "False",
                Some("InvalidSpec"),
            )
            .await;
        let message = condition(&obj, "Ready").unwrap().message;
        assert!(
            message.contains(says) && message.contains("nothing was written"),
            "{name}: {message}"
        );
    }
    assert_eq!(
        w.db.collection::<Document>("roles")
            .count_documents(doc! {})
            .await
            .unwrap(),
        1,
        "no role was written for bad input"
    );
    // A grant to a resource that does not exist: nothing half-written.
    let missing = ObjectId::new().to_hex();
    w.apply(
        "LibreChatGroup",
        "ghost",
        json!({ "instanceRef": { "name": "lc" }, "name": "ghost",
                "grants": [{ "resourceType": "skill", "resourceId": missing, "access": "viewer" }] }),
    )
    .await;
    let obj = w
        .wait_condition(
            "librechatgroups",
            "ghost",
            "Ready",
            "False",
            Some("ResourceNotFound"),
        )
        .await;
    assert!(condition(&obj, "Ready").unwrap().message.contains(&missing));
    assert!(
        group_doc(&w, "ghost").await.is_none(),
        "no group for a refused grant"
    );
    assert_eq!(
        w.db.collection::<Document>("aclentries")
            .count_documents(doc! {})
            .await
            .unwrap(),
        0
    );
    // One agent named twice (by its _id and by its `agent_` id): a spec error, not a race.
    let agent = seed_resource(&w, "agents", "agent", ObjectId::new()).await;
    let twice = json!([
        { "resourceType": "agent", "resourceId": agent.to_hex(), "access": "viewer" },
        { "resourceType": "agent", "resourceId": format!("agent_{}", agent.to_hex()), "access": "editor" },
    ]);
    w.apply(
        "LibreChatGroup",
        "twice",
        json!({ "instanceRef": { "name": "lc" }, "name": "twice", "grants": twice }),
    )
    .await;
    let obj = w
        .wait_condition(
            "librechatgroups",
            "twice",
            "Ready",
            "False",
            Some("InvalidSpec"),
        )
        .await;
    assert!(condition(&obj, "Ready")
        .unwrap()
        .message
        .contains("list it once"));
    assert!(group_doc(&w, "twice").await.is_none());
    // Deleting the declaration of USER leaves LibreChat's permissions as they are.
    w.delete("LibreChatRole", "user").await;
    w.wait_gone("librechatroles", "user").await;
    let user =
        w.db.collection::<Document>("roles")
            .find_one(doc! { "name": "USER" })
            .await
            .unwrap()
            .unwrap();
    let prompts = user
        .get_document("permissions")
        .unwrap()
        .get_document("PROMPTS")
        .unwrap();
    assert_eq!(prompts.get_bool("SHARE"), Ok(true));
}

/// The attack: a tenant adopts a person's self-registered account (adoption keeps a name as
/// declared, nothing more) and, since that account may share its own agent, grants the
/// tenant's group owner access to it.
#[tokio::test]
async fn a_tenant_does_not_reach_an_adopted_persons_agents() {
    let (w, t) = tenant_world("acc-adopt-share", json!({})).await;
    let person = ObjectId::new();
    w.users()
        .insert_one(foreign_user(person, "person@example.com"))
        .await
        .unwrap();
    let agent = seed_resource(&w, "agents", "agent", person).await;
    w.apply_in(&t, "LibreChatUser", "person", json!({ "instanceRef": lc(&w),
                                                      "email": "person@example.com", "adopt": true }))
        .await;
    wait_condition_in(
        &w.client,
        &t,
        "librechatusers",
        "person",
        "Ready",
        "True",
        None,
    )
    .await;
    let grant = json!({ "instanceRef": lc(&w), "name": "tenant takers",
                        "grants": [{ "resourceType": "agent", "resourceId": agent.to_hex(), "access": "owner" }] });
    w.apply_in(&t, "LibreChatGroup", "takers", grant).await;
    wait_condition_in(
        &w.client,
        &t,
        "librechatgroups",
        "takers",
        "Ready",
        "False",
        Some("NotPermitted"),
    )
    .await;
    assert!(
        group_doc(&w, "tenant takers").await.is_none(),
        "no group is written"
    );
    assert_eq!(
        w.db.collection::<Document>("aclentries")
            .count_documents(doc! { "resourceId": agent })
            .await
            .unwrap(),
        1,
        "only the person's own entry is on the agent"
    );
}

#[tokio::test]
async fn a_tenant_reaches_no_other_teams_accounts_roles_or_resources() {
    let (w, t) = tenant_world("acc-tenant", json!({})).await;
    // Another team's account (the admin namespace's), and its agent.
    w.secret("pw", &[("password", "Other-Teams-Pass-1")]).await;
    w.apply(
        "LibreChatUser",
        "boss",
        json!({ "instanceRef": lc(&w), "email": "boss@example.com",
                "password": { "secretRef": { "name": "pw", "key": "password" } } }),
    )
    .await;
    let boss = w
        .wait_condition("librechatusers", "boss", "Ready", "True", None)
        .await;
    let boss_id = ObjectId::parse_str(
        boss.pointer("/status/userId")
            .and_then(Value::as_str)
            .unwrap(),
    )
    .unwrap();
    let agent = seed_resource(&w, "agents", "agent", boss_id).await;
    // An Entra-synced group.
    w.db.collection::<Document>("groups")
        .insert_one(doc! { "name": "Synced", "memberIds": ["oid-1"], "source": "entra", "idOnTheSource": "g-1" })
        .await
        .unwrap();
    let synced_before = group_doc(&w, "Synced").await.unwrap();

    let attempts = [
        (
            "steal-member",
            json!({ "members": [{ "email": "boss@example.com" }] }),
            "NotPermitted",
        ),
        (
            "steal-agent",
            json!({ "grants": [{ "resourceType": "agent", "resourceId": agent.to_hex(), "access": "owner" }] }),
            "NotPermitted",
        ),
        (
            "reach-out",
            json!({ "members": [{ "userRef": { "name": "boss", "namespace": w.ns.clone() } }] }),
            "InvalidSpec",
        ),
    ];
    for (name, extra, reason) in &attempts {
        let mut spec = json!({ "instanceRef": lc(&w), "name": format!("tenant {name}") });
        merge(&mut spec, extra.clone());
        w.apply_in(&t, "LibreChatGroup", name, spec).await;
        wait_condition_in(
            &w.client,
            &t,
            "librechatgroups",
            name,
            "Ready",
            "False",
            Some(reason),
        )
        .await;
        assert!(
            group_doc(&w, &format!("tenant {name}")).await.is_none(),
            "{name}: no group is written"
        );
    }
    // Probing whether an id exists: a missing resource reads exactly as another team's does.
    let missing = ObjectId::new().to_hex();
    let probe = json!({ "instanceRef": lc(&w), "name": "tenant probe",
                        "grants": [{ "resourceType": "agent", "resourceId": missing.clone(), "access": "owner" }] });
    w.apply_in(&t, "LibreChatGroup", "probe", probe).await;
    let told = |name: &'static str| {
        let client = w.client.clone();
        let t = t.clone();
        async move {
            let obj = wait_condition_in(
                &client,
                &t,
                "librechatgroups",
                name,
                "Ready",
                "False",
                Some("NotPermitted"),
            )
            .await;
            condition(&obj, "Ready").unwrap().message
        }
    };
    assert_eq!(
        told("probe").await.replace(&missing, &agent.to_hex()),
        told("steal-agent").await,
        "a tenant must not tell a missing resource from another team's"
    );

    // Taking over a synced group by its name.
    w.apply_in(
        &t,
        "LibreChatGroup",
        "synced",
        json!({ "instanceRef": lc(&w), "name": "Synced", "members": [] }),
    )
    .await;
    wait_condition_in(
        &w.client,
        &t,
        "librechatgroups",
        "synced",
        "Ready",
        "False",
        Some("AlreadyExists"),
    )
    .await;
    assert_eq!(
        group_doc(&w, "Synced").await.unwrap(),
        synced_before,
        "the Entra group is untouched"
    );
    assert_eq!(
        w.db.collection::<Document>("aclentries")
            .count_documents(doc! { "resourceId": agent })
            .await
            .unwrap(),
        1,
        "only the owner's entry remains on the agent"
    );
    // Roles: a tenant creates none unless the instance admits it, and never changes USER.
    w.apply_in(
        &t,
        "LibreChatRole",
        "power",
        json!({ "instanceRef": lc(&w), "name": "POWER",
        "permissions": { "AGENTS": { "USE": true, "SHARE_PUBLIC": true } } }),
    )
    .await;
    wait_condition_in(
        &w.client,
        &t,
        "librechatroles",
        "power",
        "Ready",
        "False",
        Some("NotPermitted"),
    )
    .await;
    w.db.collection::<Document>("roles")
        .insert_one(seeded_user_role())
        .await
        .unwrap();
    let user_before =
        w.db.collection::<Document>("roles")
            .find_one(doc! { "name": "USER" })
            .await
            .unwrap();
    let admitted =
        json!({ "allowedNamespaces": [t.clone()], "tenantPolicy": { "manageRoles": true } });
    w.apply_instance("lc", &env("REDIS_URL"), admitted).await;
    wait_condition_in(
        &w.client,
        &t,
        "librechatroles",
        "power",
        "Ready",
        "True",
        Some("Reconciled"),
    )
    .await;
    w.apply_in(
        &t,
        "LibreChatRole",
        "user",
        json!({ "instanceRef": lc(&w), "name": "USER",
        "permissions": { "AGENTS": { "SHARE_PUBLIC": true } } }),
    )
    .await;
    wait_condition_in(
        &w.client,
        &t,
        "librechatroles",
        "user",
        "Ready",
        "False",
        Some("NotPermitted"),
    )
    .await;
    let user_after =
        w.db.collection::<Document>("roles")
            .find_one(doc! { "name": "USER" })
            .await
            .unwrap();
    assert_eq!(
        user_after, user_before,
        "a tenant never changes the built-in USER role"
    );
    // A tenant's own group of its own accounts works.
    put_secret(&w.client, &t, "pw", &[("password", "Tenant-Own-Pass-1")]).await;
    w.apply_in(
        &t,
        "LibreChatUser",
        "mine",
        json!({ "instanceRef": lc(&w), "email": "mine@example.com",
        "password": { "secretRef": { "name": "pw", "key": "password" } } }),
    )
    .await;
    w.apply_in(
        &t,
        "LibreChatGroup",
        "own",
        json!({ "instanceRef": lc(&w), "name": "tenant own",
        "members": [{ "userRef": { "name": "mine" } }] }),
    )
    .await;
    let obj = wait_condition_in(
        &w.client,
        &t,
        "librechatgroups",
        "own",
        "Ready",
        "True",
        Some("Reconciled"),
    )
    .await;
    assert_eq!(obj.pointer("/status/memberCount"), Some(&json!(1)));
}

/// The race a plan cannot see: a person shares the resource with the group in LibreChat
/// between the operator's look and its write. LibreChat's own `grantPermission` is an upsert
/// that would overwrite the person's permBits; the operator's write leaves that entry alone.
#[tokio::test]
async fn a_share_made_in_librechat_meanwhile_is_never_overwritten() {
    use librechat_operator::librechat::access::grants::Principal;
    use librechat_operator::librechat::Store;
    let w = World::new("acc-race").await;
    let store = Store::new(w.db.clone(), None);
    let group = ObjectId::new();
    let agent = ObjectId::new();
    let pair = doc! { "principalType": "group", "principalId": group,
    "resourceType": "agent", "resourceId": agent };
    let mut persons = pair.clone();
    persons.extend(doc! { "principalModel": "Group", "permBits": 15 });
    let acl = w.db.collection::<Document>("aclentries");
    acl.insert_one(persons).await.unwrap();

    let ours = ObjectId::new();
    let principal = Principal::Group(group);
    let written = store
        .put_grant(ours, &principal, "agent", agent, "viewer", 1)
        .await
        .unwrap();
    assert!(!written, "the person's share must be reported, not taken");
    let entries: Vec<Document> = {
        use futures::TryStreamExt;
        acl.find(pair.clone())
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap()
    };
    assert_eq!(entries.len(), 1, "no second entry for the pair");
    assert_eq!(entries[0].get_i32("permBits").unwrap(), 15, "its bits stay");

    // With the pair free, the entry is the operator's, under the id its record names.
    acl.delete_many(pair.clone()).await.unwrap();
    assert!(store
        .put_grant(ours, &principal, "agent", agent, "viewer", 1)
        .await
        .unwrap());
    assert!(store
        .put_grant(ours, &principal, "agent", agent, "editor", 3)
        .await
        .unwrap());
    let entry = acl.find_one(pair).await.unwrap().unwrap();
    assert_eq!(entry.get_object_id("_id").unwrap(), ours);
    assert_eq!(entry.get_i32("permBits").unwrap(), 3);
    assert_eq!(entry.get_str("principalModel").unwrap(), "Group");
}

/// A group renamed in LibreChat is put back. LibreChat turns a group into an Entra ID group when someone shares with the Entra group of
/// the same email (`ensureGroupPrincipalExists`): its members then come from the directory.
/// That was LibreChat's decision: the operator stops managing the group, says so, and on
/// deletion leaves the group and what people shared with it.
#[tokio::test]
async fn a_renamed_group_is_put_back_and_one_linked_to_entra_is_left_to_librechat() {
    let w = World::with_instance("acc-entra", json!({})).await;
    w.apply(
        "LibreChatUser",
        "dana",
        json!({ "instanceRef": { "name": "lc" }, "email": "dana@example.com" }),
    )
    .await;
    w.wait_condition("librechatusers", "dana", "Ready", "True", None)
        .await;
    w.apply(
        "LibreChatGroup",
        "eng",
        json!({ "instanceRef": { "name": "lc" }, "name": "Engineering", "email": "eng@example.com",
                "members": [{ "userRef": { "name": "dana" } }] }),
    )
    .await;
    w.wait_condition("librechatgroups", "eng", "Ready", "True", None)
        .await;
    let group = group_doc(&w, "Engineering").await.unwrap();
    let id = group.get_object_id("_id").unwrap();
    // A rename in LibreChat's admin UI is put back, as any hand edit of a declared field.
    let groups = w.db.collection::<Document>("groups");
    groups
        .update_one(
            doc! { "_id": id },
            doc! { "$set": { "name": "Eng (renamed)" } },
        )
        .await
        .unwrap();
    eventually("the declared name back", || async {
        group_doc(&w, "Engineering").await.map(|_| ())
    })
    .await;

    // A person shares an agent with the Entra group eng@example.com: LibreChat links ours,
    // and its directory sync adds the directory's member.
    let agent = linked_to_the_directory_with_a_share(&w, id).await;
    groups
        .update_one(
            doc! { "_id": id },
            doc! { "$push": { "memberIds": "entra-oid-1" } },
        )
        .await
        .unwrap();
    let acl = w.db.collection::<Document>("aclentries");

    let obj = w
        .wait_condition("librechatgroups", "eng", "Ready", "False", Some("Conflict"))
        .await;
    assert_eq!(condition(&obj, "Stalled").unwrap().status, "True");
    // The attack this guards against: a tenant gets LibreChat to link its group to a directory
    // group, to receive what anyone shares with that group. The members it added go at once.
    let linked = group_doc(&w, "Engineering").await.unwrap();
    let dana = member_ids(&group);
    assert_eq!(
        member_ids(&linked),
        ["entra-oid-1"],
        "the member the operator added is taken out of the directory's group"
    );
    w.contract_check(json!({
        "principals": [{ "userId": dana[0], "notGroups": [id.to_hex()] }],
    }));

    w.delete("LibreChatGroup", "eng").await;
    w.wait_gone("librechatgroups", "eng").await;
    let kept = groups.find_one(doc! { "_id": id }).await.unwrap().unwrap();
    assert_eq!(kept.get_str("source").ok(), Some("entra"));
    assert_eq!(
        member_ids(&kept),
        ["entra-oid-1"],
        "the member the operator added goes; the directory's stays"
    );
    let shares = acl
        .count_documents(doc! { "principalType": "group", "principalId": id })
        .await
        .unwrap();
    assert_eq!(shares, 1, "the person's share with the group stays");
    let record =
        w.db.collection::<Document>("librechat_operator_access")
            .count_documents(doc! { "targetId": id })
            .await
            .unwrap();
    assert_eq!(record, 0, "the operator's record of the group goes");
    // As LibreChat's own code reads it: the directory's group, without the member the
    // operator added, still holding the person's share.
    w.contract_check(json!({
        "groups": [{ "id": id.to_hex(), "name": "Engineering", "source": "entra",
                     "memberIds": ["entra-oid-1"] }],
        "principals": [{ "userId": dana[0], "notGroups": [id.to_hex()] }],
        "aclEntries": [{ "principalType": "group", "principalId": id.to_hex(), "resourceType": "agent",
                         "resourceId": agent.to_hex(), "permBits": 1, "expectFound": true }],
    }));
}

/// A custom role renamed in LibreChat's admin UI is no longer the declared role: the declared
/// one is created again (under a new `_id`), and the renamed one is left as LibreChat has it.
#[tokio::test]
async fn a_role_renamed_in_librechat_is_created_again() {
    let w = World::with_instance("acc-role-rename", json!({})).await;
    let role = json!({ "instanceRef": { "name": "lc" }, "name": "AUDITORS",
                       "permissions": { "AGENTS": { "USE": true } } });
    w.apply("LibreChatRole", "auditors", role).await;
    w.wait_condition("librechatroles", "auditors", "Ready", "True", None)
        .await;
    let roles = w.db.collection::<Document>("roles");
    roles
        .update_one(
            doc! { "name": "AUDITORS" },
            doc! { "$set": { "name": "AUDITORS-OLD" } },
        )
        .await
        .unwrap();
    eventually("the declared role created again", || async {
        let found = roles
            .count_documents(doc! { "name": "AUDITORS" })
            .await
            .unwrap();
        (found == 1).then_some(())
    })
    .await;
    let obj = w
        .wait_condition("librechatroles", "auditors", "Ready", "True", None)
        .await;
    assert!(obj.to_string().contains("AUDITORS"));
    assert_eq!(
        roles
            .count_documents(doc! { "name": "AUDITORS-OLD" })
            .await
            .unwrap(),
        1,
        "the renamed role stays as LibreChat has it"
    );
    // The role created again is the object's own from then on: the next generation is
    // written to it, and deleting the object deletes it.
    let role = json!({ "instanceRef": { "name": "lc" }, "name": "AUDITORS",
                       "permissions": { "AGENTS": { "USE": false } } });
    w.apply("LibreChatRole", "auditors", role).await;
    w.wait_condition("librechatroles", "auditors", "Ready", "True", None)
        .await;
    w.contract_check(json!({
        "roles": [{ "name": "AUDITORS", "permissions": { "AGENTS": { "USE": false } } }],
    }));
    w.delete("LibreChatRole", "auditors").await;
    w.wait_gone("librechatroles", "auditors").await;
    w.contract_check(json!({ "roles": [{ "name": "AUDITORS", "absent": true }] }));
}

/// The race behind a flaky run of `a_role_renamed_in_librechat_is_created_again`: LibreChat's
/// admin renames the role this object created just after a reconcile checked that the
/// role is still its own, before its permissions are read. The role goes back under an `_id`
/// the record names, and stays the object's: the next generation is written to it. Before,
/// it was created again under an `_id` no record named, taken for a role made in LibreChat at
/// the next reconcile, and the object was refused (`AlreadyExists`) for good.
#[tokio::test]
async fn a_role_renamed_while_it_is_converged_stays_the_objects_own() {
    let mut w = World::new("acc-role-race").await;
    let point = "before-role-permissions";
    w.start_operator_with_env(&[("LIBRECHAT_OPERATOR_PAUSE_AT", point)]);
    w.ready_instance("lc", json!({})).await;
    let spec = |usable: bool| {
        json!({ "instanceRef": { "name": "lc" }, "name": "RACERS",
                "permissions": { "AGENTS": { "USE": usable } } })
    };
    w.apply("LibreChatRole", "racers", spec(true)).await;
    w.wait_condition("librechatroles", "racers", "Ready", "True", None)
        .await;
    let roles = w.db.collection::<Document>("roles");
    let first = roles
        .find_one(doc! { "name": "RACERS" })
        .await
        .unwrap()
        .unwrap();

    // A reconcile held at the point (woken by a label), then the rename.
    let before = w.times_paused_at(point);
    let label = json!({ "metadata": { "labels": { "nudge": "1" } } });
    dynamic(&w.client, &w.ns, "LibreChatRole")
        .patch(
            "racers",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&label),
        )
        .await
        .unwrap();
    w.wait_paused_at(point, before).await;
    roles
        .update_one(
            doc! { "name": "RACERS" },
            doc! { "$set": { "name": "RACERS-OLD" } },
        )
        .await
        .unwrap();

    eventually("the declared role created again", || async {
        let again = roles.find_one(doc! { "name": "RACERS" }).await.ok()??;
        (again.get_object_id("_id").ok()? != first.get_object_id("_id").ok()?).then_some(())
    })
    .await;
    w.apply("LibreChatRole", "racers", spec(false)).await;
    // Ready for the new generation (not refused as a role made in LibreChat).
    w.wait_condition("librechatroles", "racers", "Ready", "True", None)
        .await;
    w.contract_check(json!({
        "roles": [{ "name": "RACERS", "permissions": { "AGENTS": { "USE": false } } }],
    }));
    w.delete("LibreChatRole", "racers").await;
    w.wait_gone("librechatroles", "racers").await;
    w.contract_check(json!({ "roles": [{ "name": "RACERS", "absent": true }] }));
}

/// The race: LibreChat links the group an object made to a directory group (a person shared
/// with the directory group of its email) just after the object's deletion read it as a local
/// group, before it is deleted. The directory's group keeps the shares people made with it
/// (the group went first, by its source, and nothing else is deleted once it stays), and the
/// object is released as for a linked group. Before, the shares were deleted with the
/// group's, and the group stayed.
#[tokio::test]
async fn a_group_linked_to_a_directory_while_it_is_deleted_keeps_its_shares() {
    let mut w = World::new("acc-group-race").await;
    let point = "before-group-delete";
    w.start_operator_with_env(&[("LIBRECHAT_OPERATOR_PAUSE_AT", point)]);
    w.ready_instance("lc", json!({})).await;
    w.apply(
        "LibreChatGroup",
        "eng",
        json!({ "instanceRef": { "name": "lc" }, "name": "Engineering",
                "email": "eng@example.com" }),
    )
    .await;
    w.wait_condition("librechatgroups", "eng", "Ready", "True", None)
        .await;
    let id = group_doc(&w, "Engineering")
        .await
        .unwrap()
        .get_object_id("_id")
        .unwrap();

    w.delete("LibreChatGroup", "eng").await;
    w.wait_paused_at(point, 0).await;
    // LibreChat links it, and a person shares an agent with the directory group.
    let agent = linked_to_the_directory_with_a_share(&w, id).await;
    let groups = w.db.collection::<Document>("groups");
    let acl = w.db.collection::<Document>("aclentries");

    w.wait_gone("librechatgroups", "eng").await;
    let kept = groups.find_one(doc! { "_id": id }).await.unwrap();
    assert_eq!(
        kept.and_then(|g| g.get_str("source").ok().map(str::to_string)),
        Some("entra".to_string()),
        "the directory's group stays"
    );
    assert_eq!(
        acl.count_documents(doc! { "principalId": id })
            .await
            .unwrap(),
        1,
        "the share a person made with the directory group stays"
    );
    // As LibreChat's own code reads it: the directory's group, still holding the share.
    w.contract_check(json!({
        "groups": [{ "id": id.to_hex(), "name": "Engineering", "source": "entra" }],
        "aclEntries": [{ "principalType": "group", "principalId": id.to_hex(), "resourceType": "agent",
                         "resourceId": agent.to_hex(), "permBits": 1, "expectFound": true }],
    }));
}

/// LibreChat links group `id` to the directory group of its email, as it does when a person
/// shares with that directory group: a person, their agent, and its share with the group.
/// Returns the agent.
async fn linked_to_the_directory_with_a_share(w: &World, id: ObjectId) -> ObjectId {
    let person = ObjectId::new();
    w.users()
        .insert_one(foreign_user(person, "sharer@example.com"))
        .await
        .unwrap();
    let agent = seed_resource(w, "agents", "agent", person).await;
    w.db.collection::<Document>("groups")
        .update_one(
            doc! { "_id": id },
            doc! { "$set": { "source": "entra", "idOnTheSource": "entra-group-eng" } },
        )
        .await
        .unwrap();
    let share = doc! { "principalType": "group", "principalId": id, "principalModel": "Group",
    "resourceType": "agent", "resourceId": agent, "permBits": 1, "grantedBy": person,
    "grantedAt": mongodb::bson::DateTime::now() };
    w.db.collection::<Document>("aclentries")
        .insert_one(share)
        .await
        .unwrap();
    agent
}
