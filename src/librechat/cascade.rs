//! Deleting an account with all its data, as LibreChat's HTTP account deletion does
//! (`DELETE /api/user/delete`, contract §6), not as its `delete-user` script does:
//! - agents, prompt groups, skills and MCP servers go only when the user owns them alone
//!   ([`super::owned`]); co-owned ones stay with their other owners, minus the user's own ACL
//!   entries, and deleted agents leave other users' `favorites`;
//! - every collection is filtered on its real field with its real BSON type;
//! - API keys are deleted by `userId` (the script's `{user}` filter is cast to `{}` and deletes
//!   everyone's), and group memberships by id and by `idOnTheSource`;
//! - the per-user documents of v0.8.8 (contract-surface §8), per-user `configs` and
//!   `systemgrants` go too; `transactions` stay unless asked for (an audit trail).
//!
//! Order matters for crash safety: the account is fenced first (LibreChat's JWT strategy
//! rejects a fenced user) and its cached copies dropped (they do not carry the fence); then
//! what writes for the user on its own (scheduled chats, queued turns, trigger deliveries);
//! owned resources go next, while the user's own ACL entries still say which they are; then the per-user documents, with those ACL entries last among them;
//! the account itself goes last. Every step is idempotent, so a retry after a crash finds the
//! account and finishes the job.

use mongodb::bson::{doc, oid::ObjectId, Bson, DateTime, Document};

use super::bans::BanTarget;
use super::deadline::{DrainFind, MongoCall};
use super::error::StoreError;
use super::owned::{code_environments, ACL_ENTRIES, OWNED_KINDS, PRINCIPAL_USER};
use super::{collections, Store};

/// How a collection refers to its user.
#[derive(Clone, Copy, Debug)]
pub enum IdForm {
    ObjectId,
    HexString,
}

/// One collection's reference to a user: the field and the BSON type it holds.
#[derive(Clone, Copy, Debug)]
pub struct Reference {
    pub collection: &'static str,
    pub field: &'static str,
    pub form: IdForm,
    /// Principal-keyed collections (`configs`, `systemgrants`) also hold groups' and roles'
    /// rows: only the user principal's own go.
    pub principal_type: Option<&'static str>,
}

impl Reference {
    const fn by(collection: &'static str, field: &'static str, form: IdForm) -> Reference {
        Reference {
            collection,
            field,
            form,
            principal_type: None,
        }
    }

    const fn principal(collection: &'static str, form: IdForm) -> Reference {
        Reference {
            collection,
            field: "principalId",
            form,
            principal_type: Some(PRINCIPAL_USER),
        }
    }

    /// The filter matching exactly the user's documents.
    pub fn filter(&self, user: ObjectId) -> Document {
        let value = match self.form {
            IdForm::ObjectId => Bson::ObjectId(user),
            IdForm::HexString => Bson::String(user.to_hex()),
        };
        let mut filter = doc! { self.field: value };
        if let Some(principal_type) = self.principal_type {
            filter.insert("principalType", principal_type);
        }
        filter
    }
}

use IdForm::{HexString, ObjectId as Oid};

/// The user's own documents, deleted outright. Owned resources (agents, prompt groups and
/// their prompts, skills and their files, MCP servers) and code environments are not here:
/// whether they go depends on who else holds them.
pub const CASCADE: &[Reference] = &[
    // First what writes for the user on its own (scheduled chats, queued turns, trigger
    // deliveries): one firing while the rest goes would write messages and a balance that
    // outlive the account (LibreChat's own deletion drains them first).
    Reference::by("schedules", "user", Oid),
    Reference::by("scheduleruns", "user", Oid),
    Reference::by("agentqueuedturns", "user", Oid),
    Reference::by("agentqueuedturnsequences", "user", Oid),
    Reference::by("agenttriggerdeliveries", "user", Oid),
    Reference::by("agenttriggerlanesequences", "user", Oid),
    Reference::by("actions", "user", Oid),
    Reference::by("agentapikeys", "userId", Oid),
    Reference::by("assistants", "user", Oid),
    Reference::by("balances", "user", Oid),
    Reference::by("conversationtags", "user", HexString),
    Reference::by("conversations", "user", HexString),
    Reference::by("messages", "user", HexString),
    Reference::by("files", "user", Oid),
    Reference::by("keys", "userId", Oid),
    Reference::by("memoryentries", "userId", Oid),
    Reference::by("pluginauths", "userId", HexString),
    Reference::by("presets", "user", HexString),
    Reference::by("sessions", "user", Oid),
    Reference::by(SHARED_LINKS, "user", HexString),
    Reference::by("toolcalls", "user", Oid),
    Reference::by("tokens", "userId", Oid),
    // v0.8.8 (contract-surface §8): queued turns and scheduled chats (above), projects, tool
    // favorites, OpenID refresh. Not skill sync, which the contract lists with them: a
    // `skillsynccredentials` document is the deployment's credential (unique on provider and
    // key; `createdBy` only says who set it up), and `skillsyncstatuses.owner` is the
    // repository's owner on GitHub, not an account.
    Reference::by("chatprojects", "user", HexString),
    Reference::by("toolfavorites", "user", Oid),
    Reference::by("refreshtokenbridges", "userId", HexString),
    Reference::by("openidrefreshflights", "ownerId", HexString),
    // The rest of the trigger purge (`deleteAgentTriggerDeliveriesByUser`; its deliveries and
    // lane sequences went first): the purge marker, keyed by the user's `_id`.
    Reference::by("agenttriggeruserpurges", "_id", Oid),
    // Per-user config overrides hold the id as a String; system grants normalise it to an
    // ObjectId for every principal type but role (contract-surface §5.4).
    Reference::principal("configs", HexString),
    Reference::principal("systemgrants", Oid),
    // Last: the user's entries on whatever survived (co-owned resources, shared links, …).
    // Owned resources were found through these, so they must outlive that step.
    Reference::by(ACL_ENTRIES, "principalId", Oid),
];

/// How many of [`CASCADE`]'s first entries are what writes for the user on its own: deleted
/// right after the fence, before owned resources and the rest.
const PRODUCERS: usize = 6;

const SHARED_LINKS: &str = "sharedlinks";

/// What LibreChat writes for an account at a login or a refresh while it exists.
const RECREATED_BY_REQUESTS: &[&str] = &[
    "balances",
    "sessions",
    "refreshtokenbridges",
    "openidrefreshflights",
];

/// Kept unless the declaration asks otherwise: billing history is an audit trail.
pub const TRANSACTIONS: Reference = Reference::by("transactions", "user", Oid);

/// What a cascade removed, per collection.
#[derive(Debug, Default)]
pub struct CascadeReport {
    pub deleted: Vec<(String, u64)>,
    pub groups_updated: u64,
    /// Other users' favorites and agents' skill allowlists that lost a deleted resource.
    pub links_removed: u64,
}

impl CascadeReport {
    fn record(&mut self, collection: &str, deleted: u64) {
        self.deleted.push((collection.to_string(), deleted));
    }

    pub fn total(&self) -> u64 {
        self.deleted.iter().map(|(_, n)| n).sum()
    }
}

impl Store {
    /// Deletes the account `user_id` and everything of it. Safe to repeat.
    pub async fn delete_user_cascade(
        &self,
        user_id: ObjectId,
        delete_transactions: bool,
    ) -> Result<CascadeReport, StoreError> {
        let users = self.collection(collections::USERS);
        let stored = self.find_user_by_id(user_id).await?;
        users
            .update_one(
                doc! { "_id": user_id },
                doc! { "$set": { "agentTriggerDeletionStartedAt": DateTime::now() } },
            )
            .deadline("fencing the user")
            .await?;
        let hex = user_id.to_hex();
        let id_on_the_source = stored.as_ref().and_then(|u| u.id_on_the_source.clone());
        if let Some(redis) = self.redis()? {
            // A cached copy of the account (LibreChat's AUTH_USER_CACHE_MODE, 5 s) does not
            // carry the fence: it goes before any data does, or requests pass meanwhile. The
            // copies keyed by a token's hash (`auth-user-doc:v2:`) cannot be told apart: all
            // go (each is rebuilt from MongoDB at the next request).
            redis
                .invalidate_user(&hex, id_on_the_source.as_deref())
                .await?;
            let lives = super::cache::AUTH_USER_DOC_LIFE;
            redis
                .drop_short_lived("AUTH_USER_DOC", "auth-user-doc:v2:", lives)
                .await?;
        }
        crate::fault::crash_point("after-deletion-fence");

        let mut report = CascadeReport::default();
        let (producers, rest) = CASCADE.split_at(PRODUCERS);
        self.delete_references(user_id, producers.iter(), &mut report)
            .await?;
        self.delete_owned_resources(user_id, &mut report).await?;
        let extra = delete_transactions.then_some(&TRANSACTIONS);
        self.delete_references(user_id, rest.iter().chain(extra), &mut report)
            .await?;
        report.groups_updated = self
            .remove_group_memberships(&hex, id_on_the_source.as_deref())
            .await?;

        // The user's ban records and every cached copy of them (including checkBan's per-IP ones).
        self.lift(&BanTarget::User(hex.clone()), true).await?;

        if let Some(redis) = self.redis()? {
            redis
                .invalidate_user(&hex, id_on_the_source.as_deref())
                .await?;
            // Group memberships, prompt groups and ACL entries changed above.
            redis.invalidate_prompt_group_access().await?;
        }

        let deleted = users
            .delete_one(doc! { "_id": user_id })
            .deadline("deleting the user")
            .await?
            .deleted_count;
        report.record(collections::USERS, deleted);
        crate::fault::crash_point("after-account-delete");
        self.sweep_after_deletion(user_id, &mut report).await?;
        Ok(report)
    }

    /// Once the account is gone, what LibreChat's request paths re-create for an account that
    /// still exists (a login's balance and session, an OpenID refresh) goes again: a login
    /// while the cascade ran left them behind. Nothing re-creates them now. Safe to repeat, and
    /// repeated when a deletion that began finds the account gone.
    pub async fn sweep_after_deletion(
        &self,
        user_id: ObjectId,
        report: &mut CascadeReport,
    ) -> Result<(), StoreError> {
        let recreated = CASCADE
            .iter()
            .filter(|r| RECREATED_BY_REQUESTS.contains(&r.collection));
        self.delete_references(user_id, recreated, report).await
    }

    /// What the user owns alone, found through the user's own ACL entries, which are still
    /// there: this runs before [`Self::delete_references`] removes them.
    async fn delete_owned_resources(
        &self,
        user_id: ObjectId,
        report: &mut CascadeReport,
    ) -> Result<(), StoreError> {
        for kind in OWNED_KINDS {
            let owned = self.delete_owned(user_id, kind).await?;
            report.record(kind.collection, owned.resources);
            report.record(ACL_ENTRIES, owned.acl_entries);
            if let Some((collection, _)) = kind.part {
                report.record(collection, owned.parts);
            }
            report.links_removed += owned.unlinked;
        }
        // After the agents: an environment only deleted agents ran in is unused now.
        let environments = self.delete_code_environments(user_id).await?;
        report.record(code_environments::COLLECTION, environments);
        let link_entries = self.delete_shared_link_entries(user_id).await?;
        report.record(ACL_ENTRIES, link_entries);
        Ok(())
    }

    /// Every principal's entries on the user's shared links (its own OWNER, the public
    /// VIEWER of a public link): the links go with the user's documents, and their entries
    /// would be left on nothing. Before the links, which find them again on a retry.
    async fn delete_shared_link_entries(&self, user_id: ObjectId) -> Result<u64, StoreError> {
        let links = CASCADE.iter().find(|r| r.collection == SHARED_LINKS);
        let Some(links) = links else {
            return Ok(0);
        };
        let links: Vec<Document> = self
            .collection(SHARED_LINKS)
            .find(links.filter(user_id))
            .projection(doc! { "_id": 1 })
            .drain("listing shared links")
            .await?;
        let ids: Vec<Bson> = links.iter().filter_map(|d| d.get("_id").cloned()).collect();
        if ids.is_empty() {
            return Ok(0);
        }
        let filter = doc! { "resourceType": "sharedLink", "resourceId": { "$in": ids } };
        self.delete_many(ACL_ENTRIES, filter).await
    }

    async fn delete_references(
        &self,
        user_id: ObjectId,
        references: impl Iterator<Item = &Reference>,
        report: &mut CascadeReport,
    ) -> Result<(), StoreError> {
        for reference in references {
            let deleted = self
                .delete_many(reference.collection, reference.filter(user_id))
                .await?;
            report.record(reference.collection, deleted);
        }
        Ok(())
    }

    /// Members are stored as `idOnTheSource` when the user has one, else as the hex id;
    /// LibreChat's own removal pulls only the latter (contract-surface §8.2).
    async fn remove_group_memberships(
        &self,
        hex: &str,
        id_on_the_source: Option<&str>,
    ) -> Result<u64, StoreError> {
        let mut member_ids = vec![hex.to_string()];
        member_ids.extend(id_on_the_source.map(str::to_string));
        self.collection(collections::GROUPS)
            .update_many(
                doc! { "memberIds": { "$in": &member_ids } },
                doc! { "$pullAll": { "memberIds": &member_ids } },
            )
            .deadline("removing group memberships")
            .await
            .map(|r| r.modified_count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::librechat::owned::OWNED_KINDS;

    #[test]
    fn what_writes_for_the_user_on_its_own_goes_first() {
        let first: Vec<&str> = CASCADE[..PRODUCERS].iter().map(|r| r.collection).collect();
        assert_eq!(
            first,
            [
                "schedules",
                "scheduleruns",
                "agentqueuedturns",
                "agentqueuedturnsequences",
                "agenttriggerdeliveries",
                "agenttriggerlanesequences"
            ]
        );
    }

    #[test]
    fn what_requests_re_create_is_in_the_cascade() {
        for name in RECREATED_BY_REQUESTS {
            assert!(CASCADE.iter().any(|r| r.collection == *name), "{name}");
        }
    }

    #[test]
    fn the_users_acl_entries_go_last() {
        // Owned resources are found through them; deleting them earlier would orphan a
        // resource after a crash.
        assert_eq!(CASCADE.last().unwrap().collection, ACL_ENTRIES);
        assert_eq!(
            CASCADE
                .iter()
                .filter(|r| r.collection == ACL_ENTRIES)
                .count(),
            1
        );
    }

    #[test]
    fn shared_resources_are_not_deleted_wholesale() {
        for kind in OWNED_KINDS {
            let part = kind.part.map(|(c, _)| c);
            assert!(
                !CASCADE
                    .iter()
                    .chain([&TRANSACTIONS])
                    .any(|r| r.collection == kind.collection || Some(r.collection) == part),
                "{} must only go when owned alone",
                kind.collection
            );
        }
        assert!(!CASCADE
            .iter()
            .any(|r| r.collection == code_environments::COLLECTION));
    }

    #[test]
    fn filters_carry_the_stored_type_and_principal() {
        let user = ObjectId::new();
        let by = |c: &str| CASCADE.iter().find(|r| r.collection == c).unwrap();
        assert_eq!(
            by("configs").filter(user),
            doc! { "principalId": user.to_hex(), "principalType": "user" }
        );
        assert_eq!(
            by("systemgrants").filter(user),
            doc! { "principalId": user, "principalType": "user" }
        );
        assert_eq!(
            by("openidrefreshflights").filter(user),
            doc! { "ownerId": user.to_hex() }
        );
        assert_eq!(by("toolfavorites").filter(user), doc! { "user": user });
        assert_eq!(TRANSACTIONS.filter(user), doc! { "user": user });
    }
}
