//! What a deleted user takes with them of the things LibreChat lets users share: agents,
//! prompt groups, skills and MCP servers. LibreChat's account deletion removes only the ones
//! the user owns alone and leaves co-owned ones to their other owners; this module decides
//! ownership the way `@librechat/data-schemas` 0.0.71 does (`getSoleOwnedResourceIds`,
//! `deleteUserAgents`, `deleteUserPrompts`, `deleteUserSkills`) and deletes accordingly.
//!
//! Ownership lives in `aclentries` (contract-surface §5.2): `{principalType, principalId,
//! resourceType, resourceId: ObjectId, permBits}`. A principal owns a resource when its entry
//! carries the DELETE bit (4): LibreChat matches `permBits` against every value in 0..=31 that
//! includes DELETE, so MANAGER (7) counts as well as OWNER (15).

use std::collections::{BTreeSet, HashSet};

use mongodb::bson::{doc, oid::ObjectId, Bson, DateTime, Document};
use sha2::{Digest, Sha256};

use super::deadline::{DrainFind, MongoCall};
use super::error::StoreError;
use super::Store;

pub const ACL_ENTRIES: &str = "aclentries";
/// `PrincipalType.USER`; ACL entries of users hold the user's `_id` as an ObjectId.
pub const PRINCIPAL_USER: &str = "user";
/// `PermissionBits.DELETE`: what makes an ACL entry an owner's.
pub const DELETE_BIT: i64 = 4;
/// The highest valid `permBits` (five bits); LibreChat ignores entries above it.
const MAX_PERM_BITS: i64 = 31;

/// How a resource kind is tied to other documents, undone before the resource goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Links {
    None,
    /// Agents: users' `favorites: [{agentId: <agent.id>}]` and other agents' handoff `edges`
    /// lose the deleted agents.
    AgentReferences,
    /// Skills: agents' `skills` allowlists (skill `_id` hex strings) lose the deleted skills.
    SkillAllowlists,
}

/// One kind of shareable resource.
#[derive(Clone, Copy, Debug)]
pub struct OwnedKind {
    pub collection: &'static str,
    /// The ACL `resourceType`s guarding it; an agent is shared as `agent` and `remoteAgent`.
    pub resource_types: &'static [&'static str],
    /// LibreChat also deletes what the user authored (`author` ObjectId) when the resource
    /// has no ACL entry at all: it predates the ACL migration and nobody else can reach it.
    pub legacy_by_author: bool,
    /// Documents that exist only as part of the resource: (collection, field holding its `_id`).
    pub part: Option<(&'static str, &'static str)>,
    pub links: Links,
}

pub const AGENTS: OwnedKind = OwnedKind {
    collection: "agents",
    resource_types: &["agent", "remoteAgent"],
    legacy_by_author: true,
    part: None,
    links: Links::AgentReferences,
};

pub const PROMPT_GROUPS: OwnedKind = OwnedKind {
    collection: "promptgroups",
    resource_types: &["promptGroup"],
    legacy_by_author: true,
    part: Some(("prompts", "groupId")),
    links: Links::None,
};

pub const SKILLS: OwnedKind = OwnedKind {
    collection: "skills",
    resource_types: &["skill"],
    legacy_by_author: false,
    part: Some(("skillfiles", "skillId")),
    links: Links::SkillAllowlists,
};

/// The contract says "sole-owned MCP servers" and nothing about ACL-less ones, so an MCP
/// server without ACL entries is kept (the safe reading: never delete what another may own).
pub const MCP_SERVERS: OwnedKind = OwnedKind {
    collection: "mcpservers",
    resource_types: &["mcpServer"],
    legacy_by_author: false,
    part: None,
    links: Links::None,
};

/// In LibreChat's order (contract §6 HTTP steps 7, 9, 10).
pub const OWNED_KINDS: &[OwnedKind] = &[AGENTS, PROMPT_GROUPS, SKILLS, MCP_SERVERS];

/// The parts of an ACL entry that decide ownership.
#[derive(Clone, Debug, PartialEq)]
pub struct AclEntry {
    pub principal_type: Option<String>,
    /// ObjectId for users and groups, the role name for roles, absent for `public`.
    pub principal_id: Option<Bson>,
    pub resource_id: ObjectId,
    pub perm_bits: Option<i64>,
}

impl AclEntry {
    /// Entries without an ObjectId `resourceId` cannot name one of our resources.
    pub fn from_doc(d: &Document) -> Option<AclEntry> {
        Some(AclEntry {
            principal_type: d.get_str("principalType").ok().map(str::to_string),
            principal_id: d.get("principalId").cloned(),
            resource_id: d.get_object_id("resourceId").ok()?,
            perm_bits: d.get("permBits").and_then(integral),
        })
    }

    fn is_users(&self, user: ObjectId) -> bool {
        self.principal_type.as_deref() == Some(PRINCIPAL_USER)
            && self.principal_id == Some(Bson::ObjectId(user))
    }

    fn grants_delete(&self) -> bool {
        self.perm_bits.is_some_and(|b| b & DELETE_BIT != 0)
    }

    /// The user's own owner entry, matched as strictly as LibreChat's query does.
    fn makes_owner(&self, user: ObjectId) -> bool {
        self.is_users(user)
            && self
                .perm_bits
                .is_some_and(|b| (0..=MAX_PERM_BITS).contains(&b) && b & DELETE_BIT != 0)
    }

    /// Another principal (another user, a group, a role, public) that owns the resource.
    /// Looser than [`Self::makes_owner`] on purpose: any DELETE bit keeps the resource.
    fn makes_co_owner(&self, user: ObjectId) -> bool {
        !self.is_users(user) && self.grants_delete()
    }
}

/// A number MongoDB would compare equal to an integer (`permBits` is a mongoose Number, so it
/// may be stored as int32, int64 or an integral double).
fn integral(b: &Bson) -> Option<i64> {
    match b {
        Bson::Int32(v) => Some(i64::from(*v)),
        Bson::Int64(v) => Some(*v),
        Bson::Double(v) if v.fract() == 0.0 && v.is_finite() => Some(*v as i64),
        _ => None,
    }
}

/// The resources of one kind that go with `user`, given what the user authored and every ACL
/// entry on the candidates (the user's own and the authored ones):
/// - those the user owns and no other principal owns (LibreChat's `getSoleOwnedResourceIds`);
/// - with `legacy_by_author`, those the user authored that no ACL entry mentions at all.
///
/// Sorted, without duplicates.
pub fn to_delete(
    user: ObjectId,
    authored: &[ObjectId],
    entries: &[AclEntry],
    legacy_by_author: bool,
) -> Vec<ObjectId> {
    let co_owned: HashSet<ObjectId> = entries
        .iter()
        .filter(|e| e.makes_co_owner(user))
        .map(|e| e.resource_id)
        .collect();
    let mut out: BTreeSet<ObjectId> = entries
        .iter()
        .filter(|e| e.makes_owner(user) && !co_owned.contains(&e.resource_id))
        .map(|e| e.resource_id)
        .collect();
    if legacy_by_author {
        let guarded: HashSet<ObjectId> = entries.iter().map(|e| e.resource_id).collect();
        out.extend(authored.iter().filter(|id| !guarded.contains(id)));
    }
    out.into_iter().collect()
}

/// What deleting one kind of owned resource did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct OwnedReport {
    pub resources: u64,
    pub parts: u64,
    pub acl_entries: u64,
    /// Users or agents whose references to the deleted resources were removed.
    pub unlinked: u64,
}

impl Store {
    /// Deletes the resources of `kind` that go with `user` (see [`to_delete`]).
    ///
    /// Order, for a retry after a crash: links, parts and the resources go before their ACL
    /// entries, because the user's own owner entry is what finds the resources again. (Skills
    /// and MCP servers have no `author` fallback: with their entries gone first, a crash would
    /// leave them behind for good.)
    pub async fn delete_owned(
        &self,
        user: ObjectId,
        kind: &OwnedKind,
    ) -> Result<OwnedReport, StoreError> {
        let ids = self.owned_ids(user, kind).await?;
        if ids.is_empty() {
            return Ok(OwnedReport::default());
        }
        let unlinked = self.unlink(kind, &ids).await?;
        let parts = match kind.part {
            Some((collection, field)) => {
                self.delete_many(collection, doc! { field: { "$in": &ids } })
                    .await?
            }
            None => 0,
        };
        let resources = self
            .delete_many(kind.collection, doc! { "_id": { "$in": &ids } })
            .await?;
        let acl_entries = self.delete_acl_entries(kind.resource_types, &ids).await?;
        Ok(OwnedReport {
            resources,
            parts,
            acl_entries,
            unlinked,
        })
    }

    async fn owned_ids(
        &self,
        user: ObjectId,
        kind: &OwnedKind,
    ) -> Result<Vec<ObjectId>, StoreError> {
        let own = self
            .find_acl_entries(doc! {
                "principalType": PRINCIPAL_USER,
                "principalId": user,
                "resourceType": { "$in": kind.resource_types },
            })
            .await?;
        let authored = if kind.legacy_by_author {
            self.ids_of(kind.collection, doc! { "author": user })
                .await?
        } else {
            Vec::new()
        };
        let candidates: BTreeSet<ObjectId> = own
            .iter()
            .map(|e| e.resource_id)
            .chain(authored.iter().copied())
            .collect();
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        let candidates: Vec<ObjectId> = candidates.into_iter().collect();
        let entries = self
            .find_acl_entries(doc! {
                "resourceType": { "$in": kind.resource_types },
                "resourceId": { "$in": &candidates },
            })
            .await?;
        Ok(to_delete(user, &authored, &entries, kind.legacy_by_author))
    }

    async fn unlink(&self, kind: &OwnedKind, ids: &[ObjectId]) -> Result<u64, StoreError> {
        match kind.links {
            Links::None => Ok(0),
            Links::AgentReferences => {
                let agent_ids = self.agent_ids(kind, ids).await?;
                let favorites = self.pull_favorites(&agent_ids).await?;
                Ok(favorites + self.prune_handoff_edges(&agent_ids).await?)
            }
            Links::SkillAllowlists => self.prune_skill_allowlists(ids).await,
        }
    }

    /// Favorites and edges name an agent by its `id` string (`agent_…`), not its `_id`.
    async fn agent_ids(
        &self,
        kind: &OwnedKind,
        ids: &[ObjectId],
    ) -> Result<Vec<String>, StoreError> {
        Ok(self
            .collection(kind.collection)
            .distinct("id", doc! { "_id": { "$in": ids } })
            .deadline("reading agent ids")
            .await?
            .into_iter()
            .filter_map(|b| b.as_str().map(str::to_string))
            .collect())
    }

    async fn pull_favorites(&self, agent_ids: &[String]) -> Result<u64, StoreError> {
        if agent_ids.is_empty() {
            return Ok(0);
        }
        self.collection(super::collections::USERS)
            .update_many(
                doc! { "favorites.agentId": { "$in": agent_ids } },
                doc! { "$pull": { "favorites": { "agentId": { "$in": agent_ids } } } },
            )
            .deadline("removing deleted agents from favorites")
            .await
            .map(|r| r.modified_count)
    }

    /// As LibreChat's `removeSkillsFromAgentAllowlists`: an agent left with an empty legacy
    /// allowlist has skills switched off (an empty list there would mean "all skills"); every
    /// other agent just loses the deleted ids. Neither touches `updatedAt`.
    async fn prune_skill_allowlists(&self, ids: &[ObjectId]) -> Result<u64, StoreError> {
        let hex: Vec<String> = ids.iter().map(|id| id.to_hex()).collect();
        let agents = self.collection(AGENTS.collection);
        let emptied = agents
            .update_many(
                doc! {
                    "skills": { "$in": &hex, "$not": { "$elemMatch": { "$nin": &hex } } },
                    "skills_scope": { "$nin": ["all", "selected"] },
                },
                doc! { "$set": { "skills": [], "skills_enabled": false } },
            )
            .deadline("removing deleted skills from agents")
            .await?
            .modified_count;
        let pruned = agents
            .update_many(
                doc! { "skills": { "$in": &hex } },
                doc! { "$pull": { "skills": { "$in": &hex } } },
            )
            .deadline("removing deleted skills from agents")
            .await?
            .modified_count;
        Ok(emptied + pruned)
    }

    async fn find_acl_entries(&self, filter: Document) -> Result<Vec<AclEntry>, StoreError> {
        let docs: Vec<Document> = self
            .collection(ACL_ENTRIES)
            .find(filter)
            .projection(
                doc! { "principalType": 1, "principalId": 1, "resourceId": 1, "permBits": 1 },
            )
            .drain("reading ACL entries")
            .await?;
        Ok(docs.iter().filter_map(AclEntry::from_doc).collect())
    }

    /// Every principal's entries on the given resources.
    async fn delete_acl_entries(
        &self,
        resource_types: &[&str],
        ids: &[ObjectId],
    ) -> Result<u64, StoreError> {
        self.delete_many(
            ACL_ENTRIES,
            doc! { "resourceType": { "$in": resource_types }, "resourceId": { "$in": ids } },
        )
        .await
    }

    async fn ids_of(
        &self,
        collection: &str,
        filter: Document,
    ) -> Result<Vec<ObjectId>, StoreError> {
        Ok(self
            .collection(collection)
            .distinct("_id", filter)
            .deadline("reading owned resources")
            .await?
            .into_iter()
            .filter_map(|b| b.as_object_id())
            .collect())
    }
}

/// Code environments (`codeenvironments.createdBy`) go unless a surviving agent still runs in
/// one, as in LibreChat's `deleteUserCodeEnvironments`. Environments being revoked, already
/// committed for deletion, or with a live pending agent reference are left to LibreChat's own
/// reconciliation, exactly as it leaves them.
pub mod code_environments {
    use super::*;

    pub const COLLECTION: &str = "codeenvironments";
    pub const RESOURCE_TYPE: &str = "codeEnvironment";
    /// LibreChat's record that an environment id was removed, so it is never registered again.
    pub const TOMBSTONES: &str = "code_environment_tombstones";

    /// LibreChat's tombstone `_id`: sha256 of the tag, the tenant scope ("" without tenants)
    /// and the environment id, NUL-separated, as lowercase hex.
    pub fn tombstone_id(environment_id: &str) -> String {
        let tenant_scope = "";
        let material =
            format!("librechat-code-environment-tombstone\0{tenant_scope}\0{environment_id}");
        hex::encode(Sha256::digest(material.as_bytes()))
    }

    fn removable(user: ObjectId, now: DateTime) -> Document {
        doc! {
            "createdBy": user,
            "revocationPendingAt": { "$exists": false },
            "deletionCommittedAt": { "$exists": false },
            "pendingAgentReferences": { "$not": { "$elemMatch": { "expiresAt": { "$gt": now } } } },
            "$or": [
                { "deletionStartedAt": { "$exists": false } },
                { "deletionLeaseExpiresAt": { "$lte": now } },
            ],
        }
    }

    impl Store {
        /// Returns how many environments were deleted. Each step is idempotent: the tombstone
        /// is an upsert, and the ACL entries go before the environment, which is found again
        /// by `createdBy` after a crash.
        pub async fn delete_code_environments(&self, user: ObjectId) -> Result<u64, StoreError> {
            let envs: Vec<Document> = self
                .collection(COLLECTION)
                .find(removable(user, DateTime::now()))
                .projection(doc! { "_id": 1, "environmentId": 1 })
                .drain("reading code environments")
                .await?;
            let mut deleted = 0;
            for env in envs {
                let Ok(id) = env.get_object_id("_id") else {
                    continue;
                };
                let environment_id = env.get_str("environmentId").ok();
                if let Some(eid) = environment_id {
                    if self.agent_uses(eid).await? {
                        continue;
                    }
                    self.tombstone(eid).await?;
                }
                self.delete_acl_entries(&[RESOURCE_TYPE], &[id]).await?;
                // Re-checked in the delete itself: an agent that began attaching meanwhile
                // left a live pending reference, and the environment stays.
                let mut filter = removable(user, DateTime::now());
                filter.insert("_id", id);
                deleted += self.delete_many(COLLECTION, filter).await?;
            }
            Ok(deleted)
        }

        /// Single-tenant agents reference an environment by its `environmentId` string.
        async fn agent_uses(&self, environment_id: &str) -> Result<bool, StoreError> {
            self.collection(AGENTS.collection)
                .find_one(doc! { "code_environment_id": environment_id, "tenantId": { "$exists": false } })
                .projection(doc! { "_id": 1 })
                .deadline("reading agents")
                .await
                .map(|d| d.is_some())
        }

        async fn tombstone(&self, environment_id: &str) -> Result<(), StoreError> {
            self.collection(TOMBSTONES)
                .update_one(
                    doc! { "_id": tombstone_id(environment_id) },
                    doc! { "$setOnInsert": {
                        "tenantId": "",
                        "environmentId": environment_id,
                        "deletedAt": DateTime::now(),
                    } },
                )
                .upsert(true)
                .deadline("recording a removed code environment")
                .await
                .map(|_| ())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(kind: &str, principal: Option<Bson>, resource: ObjectId, bits: i64) -> AclEntry {
        AclEntry {
            principal_type: Some(kind.to_string()),
            principal_id: principal,
            resource_id: resource,
            perm_bits: Some(bits),
        }
    }

    fn user_entry(user: ObjectId, resource: ObjectId, bits: i64) -> AclEntry {
        entry("user", Some(Bson::ObjectId(user)), resource, bits)
    }

    #[test]
    fn sole_owner_keeps_nothing_back() {
        let (a, r) = (ObjectId::new(), ObjectId::new());
        assert_eq!(to_delete(a, &[], &[user_entry(a, r, 15)], false), vec![r]);
        // MANAGER (7) carries DELETE too: LibreChat counts it as ownership.
        assert_eq!(to_delete(a, &[], &[user_entry(a, r, 7)], false), vec![r]);
    }

    #[test]
    fn viewing_or_editing_is_not_owning() {
        let (a, r) = (ObjectId::new(), ObjectId::new());
        for bits in [0, 1, 3, 8, 16, 27] {
            assert!(to_delete(a, &[], &[user_entry(a, r, bits)], false).is_empty());
        }
        // Out of LibreChat's range: not matched by its `$in` of valid values.
        assert!(to_delete(a, &[], &[user_entry(a, r, 36)], false).is_empty());
    }

    #[test]
    fn any_other_owning_principal_keeps_the_resource() {
        let (a, b, g, r) = (
            ObjectId::new(),
            ObjectId::new(),
            ObjectId::new(),
            ObjectId::new(),
        );
        let others = [
            user_entry(b, r, 15),
            entry("group", Some(Bson::ObjectId(g)), r, 7),
            entry("role", Some(Bson::String("ADMIN".into())), r, 15),
            entry("public", None, r, 4),
            // The user's own id under another principal type is another principal.
            entry("group", Some(Bson::ObjectId(a)), r, 15),
            // A user id stored as a string is not LibreChat's form; keep rather than guess.
            entry("user", Some(Bson::String(a.to_hex())), r, 15),
            // Bits out of range still say DELETE: keep.
            user_entry(b, r, 36),
        ];
        for other in others {
            let entries = [user_entry(a, r, 15), other.clone()];
            assert!(
                to_delete(a, &[r], &entries, true).is_empty(),
                "{other:?} must keep the resource"
            );
        }
    }

    #[test]
    fn others_without_delete_do_not_keep_it() {
        let (a, b, r) = (ObjectId::new(), ObjectId::new(), ObjectId::new());
        let entries = [
            user_entry(a, r, 15),
            user_entry(b, r, 3),
            entry("public", None, r, 1),
        ];
        assert_eq!(to_delete(a, &[], &entries, false), vec![r]);
    }

    #[test]
    fn legacy_resources_go_only_without_any_acl_entry() {
        let (a, b) = (ObjectId::new(), ObjectId::new());
        let (legacy, shared, viewed) = (ObjectId::new(), ObjectId::new(), ObjectId::new());
        let entries = [user_entry(b, shared, 15), user_entry(b, viewed, 1)];
        let authored = [legacy, shared, viewed];
        assert_eq!(to_delete(a, &authored, &entries, true), vec![legacy]);
        assert!(to_delete(a, &authored, &entries, false).is_empty());
    }

    #[test]
    fn results_are_sorted_and_unique() {
        let a = ObjectId::new();
        let (r1, r2) = (ObjectId::new(), ObjectId::new());
        let entries = [
            user_entry(a, r2, 15),
            user_entry(a, r1, 15),
            user_entry(a, r2, 7),
        ];
        assert_eq!(to_delete(a, &[r1], &entries, true), vec![r1, r2]);
    }

    #[test]
    fn entries_parse_every_numeric_form() {
        let r = ObjectId::new();
        for bits in [Bson::Int32(15), Bson::Int64(15), Bson::Double(15.0)] {
            let e = AclEntry::from_doc(
                &doc! { "principalType": "user", "resourceId": r, "permBits": bits },
            )
            .unwrap();
            assert_eq!(e.perm_bits, Some(15));
        }
        let e = AclEntry::from_doc(&doc! { "resourceId": r, "permBits": 15.5 }).unwrap();
        assert_eq!(e.perm_bits, None);
        assert!(AclEntry::from_doc(&doc! { "resourceId": r.to_hex() }).is_none());
    }

    #[test]
    fn tombstone_ids_are_librechats() {
        // Printed by node: createHash('sha256').update('librechat-code-environment-tombstone\0\0env-1').
        assert_eq!(
            code_environments::tombstone_id("env-1"),
            "dc05dce9f1a38b94db1efcbb8af9bdecaf99c58738ab71f5b8c89c19ab56e243"
        );
    }
}
