//! Deleting a user (Delete policy) as LibreChat's HTTP account deletion does: what the user owned
//! alone goes with its ACL entries and its links; what another principal co-owns stays, minus
//! the user's own entries. Seed documents are shaped as LibreChat 0.0.71's models write them.

use mongodb::bson::{doc, oid::ObjectId, Bson, DateTime, Document};
use serde_json::{json, Value};

use librechat_operator::librechat::cascade::{CASCADE, TRANSACTIONS};
use librechat_operator::librechat::owned::code_environments::tombstone_id;

use crate::support::*;
use crate::user::{foreign_user, local_user, user_id, PASSWORD};

const OWNER: i32 = 15;
const MANAGER: i32 = 7;
const VIEWER: i32 = 1;

struct Seeder<'a> {
    w: &'a World,
}

impl Seeder<'_> {
    async fn insert(&self, collection: &str, d: Document) -> ObjectId {
        self.w
            .db
            .collection::<Document>(collection)
            .insert_one(d)
            .await
            .unwrap()
            .inserted_id
            .as_object_id()
            .unwrap()
    }

    /// `grantPermission`'s upsert (contract-surface §5.2), with mongoose timestamps.
    async fn grant(
        &self,
        principal: (&str, Option<Bson>),
        resource_type: &str,
        resource: ObjectId,
        bits: i32,
        by: ObjectId,
    ) -> ObjectId {
        let (principal_type, principal_id) = principal;
        let model = match principal_type {
            "user" => "User",
            "group" => "Group",
            "role" => "Role",
            _ => "",
        };
        let now = DateTime::now();
        let mut d = doc! { "principalType": principal_type };
        if let Some(id) = principal_id {
            d.insert("principalId", id);
            d.insert("principalModel", model);
        }
        d.extend(doc! {
            "resourceType": resource_type, "resourceId": resource, "permBits": bits,
            "roleId": ObjectId::new(), "grantedBy": by, "grantedAt": now,
            "createdAt": now, "updatedAt": now, "__v": 0,
        });
        self.insert("aclentries", d).await
    }

    async fn agent(&self, id: &str, author: ObjectId, extra: Document) -> ObjectId {
        let now = DateTime::now();
        let mut d = doc! {
            "id": id, "name": id, "provider": "openAI", "model": "gpt-4o", "tool_kwargs": [],
            "author": author, "authorName": "Jane Doe", "agent_ids": [], "edges": [],
            "conversation_starters": [], "versions": [], "category": "general",
            "is_promoted": false, "mcpServerNames": [], "createdAt": now, "updatedAt": now, "__v": 0,
        };
        d.extend(extra);
        self.insert("agents", d).await
    }

    /// A prompt group with its production prompt and a second version.
    async fn prompt_group(&self, name: &str, author: ObjectId) -> ObjectId {
        let now = DateTime::now();
        let group = ObjectId::new();
        let mut first = None;
        for text in ["v1", "v2"] {
            let id = self
                .insert("prompts", doc! { "groupId": group, "author": author, "prompt": text, "type": "text", "createdAt": now, "updatedAt": now, "__v": 0 })
                .await;
            first.get_or_insert(id);
        }
        self.insert("promptgroups", doc! {
            "_id": group, "name": name, "numberOfGenerations": 0, "oneliner": "", "category": "",
            "productionId": first.unwrap(), "author": author, "authorName": "Jane Doe",
            "createdAt": now, "updatedAt": now, "__v": 0,
        })
        .await
    }

    async fn skill(&self, name: &str, author: ObjectId) -> ObjectId {
        let now = DateTime::now();
        let skill = self
            .insert("skills", doc! {
                "name": name, "description": "d", "body": "b", "disableModelInvocation": false,
                "userInvocable": true, "category": "", "author": author, "authorName": "Jane Doe",
                "version": 1, "source": "inline", "fileCount": 1, "alwaysApply": false,
                "createdAt": now, "updatedAt": now, "__v": 0,
            })
            .await;
        self.insert("skillfiles", doc! {
            "skillId": skill, "relativePath": "notes.md", "file_id": "file-1", "filename": "notes.md",
            "filepath": "/uploads/notes.md", "source": "local", "mimeType": "text/markdown", "bytes": 12,
            "category": "reference", "isExecutable": false, "author": author,
            "createdAt": now, "updatedAt": now, "__v": 0,
        })
        .await;
        skill
    }

    async fn mcp_server(&self, name: &str, author: ObjectId) -> ObjectId {
        let now = DateTime::now();
        self.insert(
            "mcpservers",
            doc! {
                "serverName": name, "normalizedServerName": name,
                "config": { "type": "sse", "url": "https://mcp.example.com/sse", "title": name },
                "author": author, "createdAt": now, "updatedAt": now, "__v": 0,
            },
        )
        .await
    }

    async fn code_environment(&self, environment_id: &str, creator: ObjectId) -> ObjectId {
        let now = DateTime::now();
        self.insert("codeenvironments", doc! {
            "environmentId": environment_id, "name": environment_id, "type": "managed",
            "baseURL": "https://code.example.com", "controlPlaneId": "cp-1", "createdBy": creator,
            "createdAt": now, "updatedAt": now, "__v": 0,
        })
        .await
    }

    /// One document per per-user collection of the deletion table (transactions included).
    async fn per_user_documents(&self, user: ObjectId) {
        for reference in CASCADE.iter().chain([&TRANSACTIONS]) {
            let mut d = reference.filter(user);
            d.insert("seeded", true);
            self.insert(reference.collection, d).await;
        }
    }
}

fn user_principal(id: ObjectId) -> (&'static str, Option<Bson>) {
    ("user", Some(Bson::ObjectId(id)))
}

async fn exists(w: &World, collection: &str, filter: Document) -> bool {
    w.db.collection::<Document>(collection)
        .count_documents(filter)
        .await
        .unwrap()
        > 0
}

async fn count(w: &World, collection: &str, filter: Document) -> u64 {
    w.db.collection::<Document>(collection)
        .count_documents(filter)
        .await
        .unwrap()
}

async fn favorites_of(w: &World, user: ObjectId) -> Vec<String> {
    let d = w
        .users()
        .find_one(doc! { "_id": user })
        .await
        .unwrap()
        .unwrap();
    d.get_array("favorites")
        .unwrap()
        .iter()
        .filter_map(|f| f.as_document())
        .map(|f| {
            f.get_str("agentId")
                .or_else(|_| f.get_str("model"))
                .unwrap()
                .to_string()
        })
        .collect()
}

#[tokio::test]
async fn deletion_takes_what_the_user_owned_alone() {
    let w = World::with_instance("cascade", json!({})).await;
    w.secret("pw", &[("password", PASSWORD)]).await;
    let mut spec = local_user("alice@example.com", "pw");
    spec["deletionPolicy"] = json!("Delete");
    w.apply("LibreChatUser", "alice", spec).await;
    let a = user_id(&w, "alice").await;
    let b = ObjectId::new();
    w.users()
        .insert_one(foreign_user(b, "bob@example.com"))
        .await
        .unwrap();
    let group = ObjectId::new();
    let s = Seeder { w: &w };

    // Agents: one A owns alone (B may only view it), one A co-owns with B, one from before
    // the ACL migration (author only), and B's own agent A can view.
    let sole = s.agent("agent_sole", a, doc! {}).await;
    s.grant(user_principal(a), "agent", sole, OWNER, a).await;
    s.grant(user_principal(b), "agent", sole, VIEWER, a).await;
    let shared = s.agent("agent_shared", a, doc! {}).await;
    let a_on_shared = s.grant(user_principal(a), "agent", shared, OWNER, a).await;
    let b_on_shared = s.grant(user_principal(b), "agent", shared, OWNER, a).await;
    let legacy = s.agent("agent_legacy", a, doc! {}).await;
    let skill = s.skill("alice-skill", a).await;
    let kept_skill = ObjectId::new();
    let bobs = s
        .agent(
            "agent_bob",
            b,
            doc! {
                "skills": [skill.to_hex(), kept_skill.to_hex()],
                "skills_enabled": true,
                "code_environment_id": "env-in-use",
                "edges": [
                    { "from": "agent_bob", "to": "agent_sole", "edgeType": "handoff" },
                    { "from": "agent_bob", "to": ["agent_sole", "agent_shared"], "edgeType": "handoff" },
                ],
            },
        )
        .await;
    s.grant(user_principal(b), "agent", bobs, OWNER, b).await;
    s.grant(user_principal(a), "agent", bobs, VIEWER, b).await;
    // A remote-agent share that only A owns goes with the agent.
    s.grant(user_principal(a), "remoteAgent", sole, OWNER, a)
        .await;
    w.users()
        .update_one(
            doc! { "_id": b },
            doc! { "$set": { "favorites": [
                { "agentId": "agent_sole" },
                { "agentId": "agent_shared" },
                { "model": "gpt-4o", "endpoint": "openAI" },
            ] } },
        )
        .await
        .unwrap();

    // Prompt groups: A's own, and one a group co-manages (MANAGER carries DELETE).
    let prompts = s.prompt_group("alice prompts", a).await;
    s.grant(user_principal(a), "promptGroup", prompts, OWNER, a)
        .await;
    s.grant(("public", None), "promptGroup", prompts, VIEWER, a)
        .await;
    let team_prompts = s.prompt_group("team prompts", a).await;
    s.grant(user_principal(a), "promptGroup", team_prompts, OWNER, a)
        .await;
    s.grant(
        ("group", Some(Bson::ObjectId(group))),
        "promptGroup",
        team_prompts,
        MANAGER,
        a,
    )
    .await;

    // Skill and MCP servers: A's own, and a server the ADMIN role co-owns.
    s.grant(user_principal(a), "skill", skill, OWNER, a).await;
    let server = s.mcp_server("alice-tools", a).await;
    s.grant(user_principal(a), "mcpServer", server, OWNER, a)
        .await;
    let admin_server = s.mcp_server("admin-tools", a).await;
    s.grant(user_principal(a), "mcpServer", admin_server, OWNER, a)
        .await;
    s.grant(
        ("role", Some(Bson::String("ADMIN".into()))),
        "mcpServer",
        admin_server,
        OWNER,
        a,
    )
    .await;

    // Code environments: an unused one goes; one B's agent runs in stays.
    let idle_env = s.code_environment("env-idle", a).await;
    s.grant(user_principal(a), "codeEnvironment", idle_env, OWNER, a)
        .await;
    let used_env = s.code_environment("env-in-use", a).await;

    // Per-principal configuration: A's goes, the group's and the role's stay.
    let now = DateTime::now();
    for (principal_type, principal_id, model) in [
        ("user", Bson::String(a.to_hex()), "User"),
        ("group", Bson::String(group.to_hex()), "Group"),
    ] {
        s.insert("configs", doc! {
            "principalType": principal_type, "principalId": principal_id, "principalModel": model,
            "priority": 30, "overrides": { "interface": { "agents": false } }, "tombstones": [],
            "isActive": true, "configVersion": 0, "createdAt": now, "updatedAt": now, "__v": 0,
        })
        .await;
    }
    for (principal_type, principal_id) in [
        ("user", Bson::ObjectId(a)),
        ("role", Bson::String("ADMIN".into())),
    ] {
        s.insert("systemgrants", doc! {
            "principalType": principal_type, "principalId": principal_id, "capability": "read:users",
            "grantedAt": now, "createdAt": now, "updatedAt": now, "__v": 0,
        })
        .await;
    }
    s.per_user_documents(a).await;
    s.per_user_documents(b).await;
    // The deployment's skill-sync credential A configured (createdBy is an audit reference),
    // and a sync status whose `owner` is a GitHub owner that happens to read as A's id:
    // neither is A's to take along.
    s.insert(
        "skillsynccredentials",
        doc! {
            "provider": "github", "credentialKey": "org-token", "encryptedToken": "x",
            "tokenHash": "y", "createdBy": a, "updatedBy": a, "createdAt": now, "updatedAt": now,
        },
    )
    .await;
    s.insert(
        "skillsyncstatuses",
        doc! {
            "provider": "github", "sourceId": "team-skills", "status": "succeeded",
            "owner": a.to_hex(), "repo": "skills", "createdAt": now, "updatedAt": now,
        },
    )
    .await;
    let before_b: Vec<u64> = {
        let mut v = Vec::new();
        for r in CASCADE.iter().chain([&TRANSACTIONS]) {
            v.push(count(&w, r.collection, r.filter(b)).await);
        }
        v
    };

    // LibreChat's cached prompt-group access sets hang off this generation marker.
    let mut redis = redis::Client::open(env("REDIS_URL"))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let generation = "PROMPT_GROUPS_ACCESS:access:generation";
    let _: () = redis::AsyncCommands::set(&mut redis, generation, "{\"value\":\"before\"}")
        .await
        .unwrap();

    w.delete("LibreChatUser", "alice").await;
    w.wait_gone("librechatusers", "alice").await;
    let left: bool = redis::AsyncCommands::exists(&mut redis, generation)
        .await
        .unwrap();
    assert!(!left, "cached prompt-group access must be invalidated");
    assert!(w.find_user("alice@example.com").await.is_none());

    // What A owned alone is gone, with every principal's ACL entries on it.
    for (collection, id) in [
        ("agents", sole),
        ("agents", legacy),
        ("promptgroups", prompts),
        ("skills", skill),
        ("mcpservers", server),
        ("codeenvironments", idle_env),
    ] {
        assert!(
            !exists(&w, collection, doc! { "_id": id }).await,
            "{collection} {id} was A's alone and must be gone"
        );
        assert_eq!(
            count(&w, "aclentries", doc! { "resourceId": id }).await,
            0,
            "ACL entries on the deleted {collection} {id} must be gone"
        );
    }
    assert_eq!(count(&w, "prompts", doc! { "groupId": prompts }).await, 0);
    assert_eq!(count(&w, "skillfiles", doc! { "skillId": skill }).await, 0);
    assert!(
        exists(
            &w,
            "code_environment_tombstones",
            doc! { "_id": tombstone_id("env-idle"), "environmentId": "env-idle", "tenantId": "" }
        )
        .await
    );

    // What others co-own stays, with their entries; A's own entries on them are gone.
    for (collection, id) in [
        ("agents", shared),
        ("agents", bobs),
        ("promptgroups", team_prompts),
        ("mcpservers", admin_server),
        ("codeenvironments", used_env),
    ] {
        assert!(
            exists(&w, collection, doc! { "_id": id }).await,
            "{collection} {id} is co-owned or in use and must stay"
        );
    }
    assert_eq!(
        count(&w, "prompts", doc! { "groupId": team_prompts }).await,
        2
    );
    assert!(!exists(&w, "aclentries", doc! { "_id": a_on_shared }).await);
    assert!(exists(&w, "aclentries", doc! { "_id": b_on_shared }).await);
    assert_eq!(
        count(&w, "aclentries", doc! { "principalId": a }).await,
        0,
        "A's own ACL entries must all be gone"
    );
    assert_eq!(
        count(
            &w,
            "aclentries",
            doc! { "resourceId": team_prompts, "principalType": "group" }
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &w,
            "aclentries",
            doc! { "resourceId": admin_server, "principalType": "role" }
        )
        .await,
        1
    );

    // B's favorites lose the deleted agent only; B's agent loses the deleted skill only.
    assert_eq!(favorites_of(&w, b).await, ["agent_shared", "gpt-4o"]);
    let bobs_agent =
        w.db.collection::<Document>("agents")
            .find_one(doc! { "_id": bobs })
            .await
            .unwrap()
            .unwrap();
    assert_eq!(
        bobs_agent.get_array("skills").unwrap(),
        &vec![Bson::String(kept_skill.to_hex())]
    );
    assert!(bobs_agent.get_bool("skills_enabled").unwrap());
    // Handoffs to the deleted agent are gone; the one to the co-owned agent stays.
    assert_eq!(
        bobs_agent.get_array("edges").unwrap(),
        &vec![Bson::Document(
            doc! { "from": "agent_bob", "to": ["agent_shared"], "edgeType": "handoff" }
        )]
    );

    // Skill sync is the deployment's, whoever configured it.
    assert_eq!(count(&w, "skillsynccredentials", doc! {}).await, 1);
    assert_eq!(count(&w, "skillsyncstatuses", doc! {}).await, 1);

    // Per-principal configuration of others stays.
    assert_eq!(
        count(&w, "configs", doc! { "principalType": "group" }).await,
        1
    );
    assert_eq!(
        count(&w, "systemgrants", doc! { "principalType": "role" }).await,
        1
    );

    // Every per-user collection is emptied of A but transactions; B keeps everything.
    for r in CASCADE {
        assert_eq!(
            count(&w, r.collection, r.filter(a)).await,
            0,
            "{} still holds A's documents",
            r.collection
        );
    }
    assert_eq!(count(&w, "transactions", TRANSACTIONS.filter(a)).await, 1);
    let mut after_b = Vec::new();
    for (r, before) in CASCADE.iter().chain([&TRANSACTIONS]).zip(&before_b) {
        // B's viewer entry on A's sole agent went with that agent; nothing else of B's.
        let expected = before - u64::from(r.collection == "aclentries");
        after_b.push((
            r.collection,
            count(&w, r.collection, r.filter(b)).await,
            expected,
        ));
    }
    assert!(
        after_b.iter().all(|(_, after, expected)| after == expected),
        "B's own documents must survive: {after_b:?}"
    );

    w.contract_check(json!({
        "absentUsers": [ { "email": "alice@example.com", "userId": a.to_hex() } ]
    }));
}

#[tokio::test]
async fn a_retry_after_a_partial_deletion_finishes_the_job() {
    // A crash mid-way leaves the account fenced, some data gone and the rest in place; the
    // deletion that follows must find what A still owns through A's remaining ACL entries.
    let w = World::with_instance("cascade-retry", json!({})).await;
    w.secret("pw", &[("password", PASSWORD)]).await;
    let mut spec = local_user("carol@example.com", "pw");
    spec["deletionPolicy"] = json!("Delete");
    w.apply("LibreChatUser", "carol", spec).await;
    let a = user_id(&w, "carol").await;
    let s = Seeder { w: &w };
    // As a crash after the skill documents went but before their ACL entries did.
    let skill_gone = ObjectId::new();
    s.grant(user_principal(a), "skill", skill_gone, OWNER, a)
        .await;
    s.insert(
        "skillfiles",
        doc! { "skillId": skill_gone, "relativePath": "x.md", "author": a },
    )
    .await;
    let server = s.mcp_server("carol-tools", a).await;
    s.grant(user_principal(a), "mcpServer", server, OWNER, a)
        .await;
    w.users()
        .update_one(
            doc! { "_id": a },
            doc! { "$set": { "agentTriggerDeletionStartedAt": DateTime::now() } },
        )
        .await
        .unwrap();

    w.delete("LibreChatUser", "carol").await;
    w.wait_gone("librechatusers", "carol").await;
    assert!(w.find_user("carol@example.com").await.is_none());
    assert_eq!(count(&w, "skillfiles", doc! {}).await, 0);
    assert_eq!(count(&w, "mcpservers", doc! {}).await, 0);
    assert_eq!(count(&w, "aclentries", doc! {}).await, 0);
}

/// A world whose LibreChatUser `name` (`<name>@example.com`, `deletionPolicy: Delete`) was
/// deleted, and whose operator crashed once the deletion had fenced the account (the operator
/// is down). Returns the world, the object's spec and the account.
async fn deletion_stopped_at_the_fence(label: &str, name: &str) -> (World, Value, ObjectId) {
    let mut w = World::new(label).await;
    w.start_operator_with_env(&[("LIBRECHAT_OPERATOR_CRASH_AT", "after-deletion-fence")]);
    w.ready_instance("lc", json!({})).await;
    w.secret("pw", &[("password", PASSWORD)]).await;
    let mut spec = local_user(&format!("{name}@example.com"), "pw");
    spec["deletionPolicy"] = json!("Delete");
    w.apply("LibreChatUser", name, spec.clone()).await;
    let account = user_id(&w, name).await;
    w.delete("LibreChatUser", name).await;
    assert_eq!(
        w.wait_operator_exit(PATIENCE).await,
        Some(86),
        "the operator must reach the crash point"
    );
    (w, spec, account)
}

/// A deletion stopped after it fenced the account (a crash here; a timeout or a Redis outage
/// mid-way the same), and the object switched to `deletionPolicy: Retain` meanwhile, as a
/// blocked deletion's message used to offer. The deletion that began finishes. Before, Retain
/// released the account fenced from sign-in (LibreChat refuses every request of a fenced
/// account) with part of its data gone, managed by nobody.
#[tokio::test]
async fn a_deletion_that_began_finishes_even_when_switched_to_retain() {
    let (mut w, mut spec, a) = deletion_stopped_at_the_fence("cascade-retain", "dana").await;
    let fenced = w.find_user("dana@example.com").await.unwrap();
    assert!(fenced.get_datetime("agentTriggerDeletionStartedAt").is_ok());

    spec["deletionPolicy"] = json!("Retain");
    w.apply("LibreChatUser", "dana", spec).await;
    w.start_operator();
    w.wait_gone("librechatusers", "dana").await;
    assert!(
        w.find_user("dana@example.com").await.is_none(),
        "the account was left fenced and half-deleted"
    );
    w.contract_check(json!({
        "absentUsers": [ { "email": "dana@example.com", "userId": a.to_hex() } ]
    }));
}

/// A deletion that began stops for good (crash), the object's finalizer is removed by hand,
/// and GitOps applies the object again with `Retain`. The deletion that began finishes first:
/// the re-created object gets a new account. Before, it inherited the fenced, half-deleted
/// account (Ready, though LibreChat refuses every request of it), and the inherited record's
/// mark later deleted the account despite `Retain`, past the refusals and the guard.
#[tokio::test]
async fn a_re_created_object_does_not_inherit_a_deletion_under_way() {
    let (mut w, mut spec, first) = deletion_stopped_at_the_fence("cascade-inherit", "erin").await;

    w.remove_without_cleanup("LibreChatUser", "erin").await;
    spec["deletionPolicy"] = json!("Retain");
    w.apply("LibreChatUser", "erin", spec).await;
    w.start_operator();

    let second = user_id(&w, "erin").await;
    assert_ne!(second, first, "the half-deleted account was handed over");
    let account = w.find_user("erin@example.com").await.unwrap();
    assert!(
        account.get("agentTriggerDeletionStartedAt").is_none(),
        "{account}"
    );
    w.contract_check(json!({
        "absentUsers": [ { "userId": first.to_hex() } ],
        "users": [ { "email": "erin@example.com", "password": PASSWORD } ],
    }));
}

/// The fault: LibreChat caches account documents for 5 s (`AUTH_USER_CACHE_MODE=on`), and a
/// cached copy does not carry the deletion's fence, so requests of the account passed while
/// its data went. The copies go right after the fence, before any data: here the operator
/// stops for good there, and no copy is left.
#[tokio::test]
async fn an_account_being_deleted_leaves_no_cached_copy_past_its_fence() {
    use redis::AsyncCommands;
    let mut w = World::new("cascade-cached").await;
    w.start_operator_with_env(&[("LIBRECHAT_OPERATOR_CRASH_AT", "after-deletion-fence")]);
    w.ready_instance("lc", json!({ "redis": { "keyPrefix": w.ns.clone() } }))
        .await;
    w.secret("pw", &[("password", PASSWORD)]).await;
    let mut spec = local_user("fay@example.com", "pw");
    spec["deletionPolicy"] = json!("Delete");
    w.apply("LibreChatUser", "fay", spec).await;
    let account = user_id(&w, "fay").await;
    let cached = [
        format!(
            "{}::AUTH_USER_DOC:auth-user-doc-byid:{}",
            w.ns,
            account.to_hex()
        ),
        format!(
            "{}::AUTH_USER_DOC:auth-user-doc:v2:{}",
            w.ns,
            "ab".repeat(32)
        ),
    ];
    let mut r = redis().await;
    for key in &cached {
        let _: () = r.set(key, "{\"value\":{}}").await.unwrap();
    }
    w.delete("LibreChatUser", "fay").await;
    assert_eq!(
        w.wait_operator_exit(PATIENCE).await,
        Some(86),
        "the operator must reach the crash point"
    );
    let fenced = w.find_user("fay@example.com").await.unwrap();
    assert!(fenced.get_datetime("agentTriggerDeletionStartedAt").is_ok());
    for key in &cached {
        let left: bool = r.exists(key).await.unwrap();
        assert!(!left, "{key} outlived the fence");
    }
}

/// The fault: a person signs in while their account's deletion runs (the fence stops JWT
/// requests, not a login), which writes a balance and a session after the cascade deleted
/// them; the operator stops for good right after the account's document goes. The deletion's
/// last look, after the restart, sweeps them: nothing of the account is left behind.
#[tokio::test]
async fn what_a_login_re_created_during_the_deletion_does_not_outlive_the_account() {
    let mut w = World::new("cascade-sweep").await;
    w.start_operator_with_env(&[("LIBRECHAT_OPERATOR_CRASH_AT", "after-account-delete")]);
    w.ready_instance("lc", json!({})).await;
    w.secret("pw", &[("password", PASSWORD)]).await;
    let mut spec = local_user("gil@example.com", "pw");
    spec["deletionPolicy"] = json!("Delete");
    w.apply("LibreChatUser", "gil", spec).await;
    let account = user_id(&w, "gil").await;
    w.delete("LibreChatUser", "gil").await;
    assert_eq!(
        w.wait_operator_exit(PATIENCE).await,
        Some(86),
        "the operator must reach the crash point"
    );
    assert!(w.find_user("gil@example.com").await.is_none());
    // What LibreChat's login wrote in the window: its balance (`_id` the user's) and a session.
    let later = DateTime::from_millis(DateTime::now().timestamp_millis() + 86_400_000);
    w.db.collection::<Document>("balances")
        .insert_one(doc! { "_id": account, "user": account, "tokenCredits": 20000, "__v": 0 })
        .await
        .unwrap();
    w.db.collection::<Document>("sessions")
        .insert_one(doc! { "refreshTokenHash": "ab".repeat(32), "expiration": later, "user": account, "__v": 0 })
        .await
        .unwrap();
    w.start_operator();
    w.wait_gone("librechatusers", "gil").await;
    // The audit line the interrupted deletion did not write, written by its last look.
    w.wait_event("gil", "Deleted").await;
    assert_eq!(count(&w, "balances", doc! { "user": account }).await, 0);
    assert_eq!(count(&w, "sessions", doc! { "user": account }).await, 0);
    w.contract_check(json!({
        "absentUsers": [ { "email": "gil@example.com", "userId": account.to_hex() } ]
    }));
}

/// A public shared link of the account carries entries of other principals (the public
/// VIEWER, as LibreChat's `migrate:shared-link-permissions` writes it): they go with the
/// link, not left on a link that no longer exists. Another user's link keeps its entries.
#[tokio::test]
async fn a_deleted_accounts_shared_links_leave_no_acl_entries() {
    let w = World::with_instance("cascade-links", json!({})).await;
    w.secret("pw", &[("password", PASSWORD)]).await;
    let mut spec = local_user("hal@example.com", "pw");
    spec["deletionPolicy"] = json!("Delete");
    w.apply("LibreChatUser", "hal", spec).await;
    let account = user_id(&w, "hal").await;
    let s = Seeder { w: &w };
    let other = ObjectId::new();
    let mut links = Vec::new();
    for owner in [account, other] {
        let link = s
            .insert("sharedlinks", doc! { "shareId": owner.to_hex(), "user": owner.to_hex(), "isPublic": true, "__v": 0 })
            .await;
        let by_owner = Some(Bson::ObjectId(owner));
        s.grant(("user", by_owner), "sharedLink", link, OWNER, owner)
            .await;
        s.grant(("public", None), "sharedLink", link, VIEWER, owner)
            .await;
        links.push(link);
    }
    w.delete("LibreChatUser", "hal").await;
    w.wait_gone("librechatusers", "hal").await;
    assert_eq!(
        count(&w, "aclentries", doc! { "resourceId": links[0] }).await,
        0
    );
    assert_eq!(
        count(&w, "aclentries", doc! { "resourceId": links[1] }).await,
        2
    );
}

/// A deletion that began with `deleteTransactions: true` stops (crash), and the object's spec
/// is switched to keep them before the operator is back: the deletion that began finishes as
/// it began, its transactions going too.
#[tokio::test]
async fn a_deletion_that_began_takes_the_transactions_it_began_with() {
    let mut w = World::new("cascade-tx-fixed").await;
    w.start_operator_with_env(&[("LIBRECHAT_OPERATOR_CRASH_AT", "after-deletion-fence")]);
    w.ready_instance("lc", json!({})).await;
    w.secret("pw", &[("password", PASSWORD)]).await;
    let mut spec = local_user("ida@example.com", "pw");
    spec["deletionPolicy"] = json!("Delete");
    spec["deleteTransactions"] = json!(true);
    w.apply("LibreChatUser", "ida", spec.clone()).await;
    let account = user_id(&w, "ida").await;
    w.db.collection::<Document>("transactions")
        .insert_one(doc! { "user": account, "tokenType": "credits", "context": "admin", "rawAmount": 5, "__v": 0 })
        .await
        .unwrap();
    w.delete("LibreChatUser", "ida").await;
    assert_eq!(
        w.wait_operator_exit(PATIENCE).await,
        Some(86),
        "the operator must reach the crash point"
    );
    spec["deleteTransactions"] = json!(false);
    w.apply("LibreChatUser", "ida", spec).await;
    w.start_operator();
    w.wait_gone("librechatusers", "ida").await;
    assert!(w.find_user("ida@example.com").await.is_none());
    assert_eq!(count(&w, "transactions", doc! { "user": account }).await, 0);
}
