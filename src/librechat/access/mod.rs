//! Groups, roles and grants (contract-surface §5): what the operator writes of LibreChat's
//! access model, and its own record of what it wrote there.
//!
//! The record (`librechat_operator_access`, one document per group or role, `_id`
//! `group:<name>` or `role:<name>`) is written before anything in LibreChat's collections: it
//! names the object that owns the group or role, the members and ACL entries this object
//! added, and the cache drops it still owes. Removal takes back only what is recorded, so a
//! member or a grant a person added in LibreChat survives.

pub mod grants;
pub mod groups;
pub mod roles;

use mongodb::bson::{doc, oid::ObjectId, Bson, DateTime, Document};

use super::deadline::{DrainFind, MongoCall};
use super::error::StoreError;
use super::ownership::Owner;
use super::Store;

pub const ACCESS_RECORDS: &str = "librechat_operator_access";

/// The record's key for a group or a role named `name`.
pub fn group_key(name: &str) -> String {
    format!("group:{name}")
}
pub fn role_key(name: &str) -> String {
    format!("role:{name}")
}
/// Whether a record's key is a role's (see [`role_key`]).
pub fn is_role_key(key: &str) -> bool {
    key.starts_with("role:")
}

/// One ACL entry this object wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedGrant {
    pub resource_type: String,
    pub resource_id: ObjectId,
    pub entry: ObjectId,
}

/// The owner uid of a record handed over to the instance's administrators.
pub const HANDED_OVER: &str = "handed-over";

/// The operator's record of one group or role.
#[derive(Clone, Debug, Default)]
pub struct AccessRecord {
    pub owner: Owner,
    /// The group's or custom role's `_id`, chosen before it is inserted (records of roles
    /// claimed by earlier versions have none).
    pub target: Option<ObjectId>,
    /// Member ids (LibreChat's `memberIds` values) this object added.
    pub members: Vec<String>,
    pub grants: Vec<RecordedGrant>,
    /// Member ids whose principal caches must still be dropped (a second time, ≥ 3 s after
    /// the change, as LibreChat does for cross-process stores), and from when.
    pub cache_drops: Vec<CacheDrop>,
    pub cache_drops_due: Option<DateTime>,
    /// Set before a custom role is deleted: from then on no account is put in it.
    pub releasing: bool,
    /// Whether LibreChat has what the record claimed: a role is claimed before it is created,
    /// and no account is put in it until it exists. Records without the field count as
    /// created (they were written once it was).
    pub created: bool,
}

/// What a record claims.
pub enum Claim {
    /// A group, with the `_id` it will have.
    Group(ObjectId),
    /// A role, with the `_id` it will have; it exists once the record says `created`.
    Role(ObjectId),
}

/// Whether the record is this object's.
pub enum Claimed {
    Ours(AccessRecord),
    Taken(Owner),
}

fn owner_of(d: &Document) -> Owner {
    let s = |k: &str| d.get_str(k).unwrap_or_default().to_string();
    Owner {
        kind: s("kind"),
        namespace: s("namespace"),
        name: s("name"),
        uid: s("uid"),
    }
}

fn strings(d: &Document, key: &str) -> Vec<String> {
    d.get_array(key)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn record_from(d: &Document) -> AccessRecord {
    let grants = d
        .get_array("grants")
        .map(|a| {
            a.iter()
                .filter_map(Bson::as_document)
                .filter_map(|g| {
                    Some(RecordedGrant {
                        resource_type: g.get_str("resourceType").ok()?.to_string(),
                        resource_id: g.get_object_id("resourceId").ok()?,
                        entry: g.get_object_id("entry").ok()?,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    AccessRecord {
        owner: owner_of(d),
        target: d.get_object_id("targetId").ok(),
        members: strings(d, "members"),
        grants,
        cache_drops: strings(d, "cacheDrops")
            .iter()
            .filter_map(|t| CacheDrop::parse(t))
            .collect(),
        cache_drops_due: d.get_datetime("cacheDropsDue").ok().copied(),
        releasing: d.get_bool("releasing").unwrap_or(false),
        created: d.get_bool("created").unwrap_or(true),
    }
}

impl Store {
    /// Claims `key` for `owner`, or returns who holds it: a group with its future `_id`
    /// (`Claim::Group`), a role not created yet. Of two objects racing for one name, exactly
    /// one insert succeeds.
    pub async fn claim_access(
        &self,
        key: &str,
        owner: &Owner,
        what: Claim,
    ) -> Result<Claimed, StoreError> {
        let records = self.collection(ACCESS_RECORDS);
        let mut record = doc! {
            "_id": key, "kind": &owner.kind, "namespace": &owner.namespace,
            "name": &owner.name, "uid": &owner.uid, "claimedAt": DateTime::now(),
            "members": [], "grants": [], "cacheDrops": [],
        };
        match what {
            Claim::Group(target) => record.insert("targetId", target),
            Claim::Role(target) => {
                record.insert("targetId", target);
                record.insert("created", false)
            }
        };
        let inserted = records
            .insert_one(record)
            .deadline("claiming a group or role")
            .await;
        match inserted {
            Ok(_)
            | Err(StoreError::Mongo {
                duplicate_key: true,
                ..
            }) => {}
            Err(e) => return Err(e),
        }
        let found = records
            .find_one(doc! { "_id": key })
            .deadline("reading a group or role record")
            .await?
            .ok_or(StoreError::Contended(
                "the group or role record vanished while claiming",
            ))?;
        let record = record_from(&found);
        Ok(if record.owner.uid == owner.uid {
            Claimed::Ours(record)
        } else {
            Claimed::Taken(record.owner)
        })
    }

    /// The record of `key`, whoever holds it.
    pub async fn access_record(&self, key: &str) -> Result<Option<AccessRecord>, StoreError> {
        Ok(self
            .collection(ACCESS_RECORDS)
            .find_one(doc! { "_id": key })
            .deadline("reading a group or role record")
            .await?
            .map(|d| record_from(&d)))
    }

    /// Every record the object `uid` holds, with its key: one, unless its name was changed
    /// on an API server that does not enforce the name's immutability.
    pub async fn access_records_of(
        &self,
        uid: &str,
    ) -> Result<Vec<(String, AccessRecord)>, StoreError> {
        let docs: Vec<Document> = self
            .collection(ACCESS_RECORDS)
            .find(doc! { "uid": uid })
            .drain("reading group and role records")
            .await?;
        Ok(docs
            .iter()
            .filter_map(|d| Some((d.get_str("_id").ok()?.to_string(), record_from(d))))
            .collect())
    }

    /// Changes the record of `key` held by `uid` (a no-op for anybody else's).
    async fn update_record(
        &self,
        key: &str,
        uid: &str,
        update: Document,
    ) -> Result<(), StoreError> {
        self.collection(ACCESS_RECORDS)
            .update_one(doc! { "_id": key, "uid": uid }, update)
            .deadline("updating a group or role record")
            .await
            .map(|_| ())
    }

    /// Records members as added by this object (before they are added).
    pub async fn record_members(
        &self,
        key: &str,
        uid: &str,
        ids: &[String],
    ) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        self.update_record(
            key,
            uid,
            doc! { "$addToSet": { "members": { "$each": ids } } },
        )
        .await
    }

    /// Forgets members this object no longer adds (after they were removed).
    pub async fn forget_members(
        &self,
        key: &str,
        uid: &str,
        ids: &[String],
    ) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        self.update_record(key, uid, doc! { "$pullAll": { "members": ids } })
            .await
    }

    /// Promises cache drops, done now and once more at `due` (recorded before the write
    /// that makes the caches stale, so a crash cannot skip them).
    pub async fn promise_cache_drops(
        &self,
        key: &str,
        uid: &str,
        drops: &[CacheDrop],
        due: DateTime,
    ) -> Result<(), StoreError> {
        if drops.is_empty() {
            return Ok(());
        }
        self.promise_drops(key, uid, drops, due, doc! {}).await
    }

    /// Claims again, under the new `_id` `target`, a custom role that LibreChat no longer has
    /// (renamed or deleted in its admin UI): not created yet, as at the first claim.
    pub async fn reclaim_role(
        &self,
        key: &str,
        uid: &str,
        target: ObjectId,
    ) -> Result<(), StoreError> {
        self.update_record(
            key,
            uid,
            doc! { "$set": { "targetId": target, "created": false } },
        )
        .await
    }

    /// The role the record claimed exists in LibreChat now.
    pub async fn mark_created(&self, key: &str, uid: &str) -> Result<(), StoreError> {
        self.update_record(key, uid, doc! { "$set": { "created": true } })
            .await
    }

    /// Marks a role as going, with the cache drops its removal owes, before its first removal
    /// write: from then on no account is put in it, and a crash cannot skip the drops.
    pub async fn begin_release(
        &self,
        key: &str,
        uid: &str,
        drops: &[CacheDrop],
        due: DateTime,
    ) -> Result<(), StoreError> {
        let set = doc! { "releasing": true };
        self.promise_drops(key, uid, drops, due, set).await
    }

    /// One due time serves every drop the record owes: a promise moves it later, never
    /// earlier (`$max`), so a drop due at once (a grant's) does not pull forward the delayed
    /// second drop a member change owes; nor does settling some drops clear it for the rest.
    async fn promise_drops(
        &self,
        key: &str,
        uid: &str,
        drops: &[CacheDrop],
        due: DateTime,
        set: Document,
    ) -> Result<(), StoreError> {
        let ids: Vec<String> = drops.iter().map(CacheDrop::tag).collect();
        let mut update = doc! {
            "$addToSet": { "cacheDrops": { "$each": ids } },
            "$max": { "cacheDropsDue": due },
        };
        if !set.is_empty() {
            update.insert("$set", set);
        }
        self.update_record(key, uid, update).await
    }

    /// The promised drops were done.
    pub async fn settle_cache_drops(
        &self,
        key: &str,
        uid: &str,
        drops: &[CacheDrop],
    ) -> Result<(), StoreError> {
        let ids: Vec<String> = drops.iter().map(CacheDrop::tag).collect();
        self.update_record(key, uid, doc! { "$pullAll": { "cacheDrops": ids } })
            .await
    }

    pub async fn record_grant(
        &self,
        key: &str,
        uid: &str,
        grant: &RecordedGrant,
    ) -> Result<(), StoreError> {
        let entry = doc! {
            "resourceType": &grant.resource_type,
            "resourceId": grant.resource_id,
            "entry": grant.entry,
        };
        self.update_record(key, uid, doc! { "$addToSet": { "grants": entry } })
            .await
    }

    pub async fn forget_grant(
        &self,
        key: &str,
        uid: &str,
        entry: ObjectId,
    ) -> Result<(), StoreError> {
        self.update_record(key, uid, doc! { "$pull": { "grants": { "entry": entry } } })
            .await
    }

    /// Removes the record once everything it names is gone.
    /// Gives the record of object `uid` to `administrators` (the instance, standing for its
    /// namespace's objects): a tenant's role the instance has since made assignable stays in
    /// LibreChat when the tenant's object goes, and the administrators' own object of that
    /// name takes the record over ([`Store::take_over_handed`]) rather than find a role
    /// nobody may declare.
    pub async fn hand_over_access(
        &self,
        key: &str,
        uid: &str,
        administrators: &Owner,
    ) -> Result<(), StoreError> {
        let set = doc! { "$set": {
            "kind": &administrators.kind, "namespace": &administrators.namespace,
            "name": &administrators.name, "uid": HANDED_OVER,
        } };
        self.update_record(key, uid, set).await
    }

    /// Takes a record handed over to the administrators for `owner` (one of theirs); returns
    /// it as now held, or `None` when it was not handed over (any longer).
    pub async fn take_over_handed(
        &self,
        key: &str,
        owner: &Owner,
    ) -> Result<Option<AccessRecord>, StoreError> {
        let set = doc! { "$set": {
            "kind": &owner.kind, "namespace": &owner.namespace,
            "name": &owner.name, "uid": &owner.uid,
        } };
        self.update_record(key, HANDED_OVER, set).await?;
        let record = self.access_record(key).await?;
        Ok(record.filter(|r| r.owner.uid == owner.uid))
    }

    pub async fn release_access(&self, key: &str, uid: &str) -> Result<(), StoreError> {
        self.collection(ACCESS_RECORDS)
            .delete_one(doc! { "_id": key, "uid": uid })
            .deadline("releasing a group or role record")
            .await
            .map(|_| ())
    }

    /// Drops the caches `owed` names (a no-op without Redis). Idempotent: deleting a key
    /// twice is harmless, so a promise is kept until this has run after its due time.
    pub async fn drop_owed_caches(&self, owed: &[CacheDrop]) -> Result<(), StoreError> {
        let Some(redis) = self.redis()? else {
            return Ok(());
        };
        let mut keys = Vec::new();
        let mut principals = false;
        for drop in owed {
            match drop {
                CacheDrop::Principals(member) => {
                    principals = true;
                    keys.push(redis.keyv_key("USER_PRINCIPALS", member));
                }
                CacheDrop::Role(name) => keys.push(redis.keyv_key("ROLES", name)),
                CacheDrop::PromptAccess => principals = true,
                CacheDrop::User(id, source) => keys.extend(super::cache::user_cache_keys(
                    redis.prefix(),
                    id,
                    source.as_deref(),
                )),
            }
        }
        redis.delete(&keys).await?;
        if principals {
            redis.invalidate_prompt_group_access().await?;
        }
        Ok(())
    }
}

/// A LibreChat cache entry a write made stale, promised in the record before the write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CacheDrop {
    /// A member's cached groups (`USER_PRINCIPALS:<member id>`), with the prompt-group access
    /// generation.
    Principals(String),
    /// A role's cached document (`ROLES:<name>`).
    Role(String),
    /// An account's cached document and groups (its id hex, and `idOnTheSource`).
    User(String, Option<String>),
    /// The prompt-group access generation, after an ACL change.
    PromptAccess,
}

impl CacheDrop {
    /// How the record stores it.
    pub fn tag(&self) -> String {
        match self {
            CacheDrop::Principals(m) => format!("principals:{m}"),
            CacheDrop::Role(n) => format!("role:{n}"),
            CacheDrop::PromptAccess => "promptAccess:".into(),
            CacheDrop::User(id, None) => format!("user:{id}"),
            CacheDrop::User(id, Some(s)) => format!("user:{id}:{s}"),
        }
    }

    pub fn parse(tag: &str) -> Option<Self> {
        let (kind, rest) = tag.split_once(':')?;
        Some(match kind {
            "principals" => CacheDrop::Principals(rest.to_string()),
            "role" => CacheDrop::Role(rest.to_string()),
            "promptAccess" => CacheDrop::PromptAccess,
            "user" => match rest.split_once(':') {
                Some((id, source)) => CacheDrop::User(id.to_string(), Some(source.to_string())),
                None => CacheDrop::User(rest.to_string(), None),
            },
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::CacheDrop;

    #[test]
    fn cache_drops_survive_the_record() {
        for d in [
            CacheDrop::Principals("entra:oid".into()),
            CacheDrop::Role("ANALYST".into()),
            CacheDrop::User("0123456789abcdef01234567".into(), Some("oid:x".into())),
            CacheDrop::User("0123456789abcdef01234567".into(), None),
            CacheDrop::PromptAccess,
        ] {
            assert_eq!(CacheDrop::parse(&d.tag()), Some(d));
        }
    }
}
