//! The indexes LibreChat's models create on the collections the operator writes, so that a
//! database the operator reaches before LibreChat ever started still has LibreChat's unique
//! email index and TTLs. An index that exists (by name or by key) is never changed.

use futures::TryStreamExt;
use mongodb::bson::{doc, Document};
use mongodb::options::IndexOptions;
use mongodb::IndexModel;

use super::deadline::MongoCall;
use super::error::StoreError;
use super::{collections, Store};

/// One index as LibreChat 0.0.71's schema declares it.
struct IndexSpec {
    collection: &'static str,
    name: &'static str,
    keys: Document,
    unique: bool,
    sparse: bool,
    expire_after_secs: Option<u64>,
    partial: Option<Document>,
}

fn plain(collection: &'static str, name: &'static str, keys: Document) -> IndexSpec {
    IndexSpec {
        collection,
        name,
        keys,
        unique: false,
        sparse: false,
        expire_after_secs: None,
        partial: None,
    }
}

fn sso_unique(name: &'static str, field: &'static str, keys: Document) -> IndexSpec {
    IndexSpec {
        unique: true,
        partial: Some(doc! { field: { "$exists": true } }),
        ..plain(collections::USERS, name, keys)
    }
}

/// LibreChat's index list (fixture `indexes.json`).
fn librechat_indexes() -> Vec<IndexSpec> {
    use collections::{TOKENS, USERS};
    let mut specs = vec![
        plain(USERS, "email_1", doc! { "email": 1 }),
        IndexSpec {
            expire_after_secs: Some(604_800),
            ..plain(USERS, "expiresAt_1", doc! { "expiresAt": 1 })
        },
        IndexSpec {
            sparse: true,
            ..plain(USERS, "idOnTheSource_1", doc! { "idOnTheSource": 1 })
        },
        plain(USERS, "tenantId_1", doc! { "tenantId": 1 }),
        IndexSpec {
            unique: true,
            ..plain(
                USERS,
                "email_1_tenantId_1",
                doc! { "email": 1, "tenantId": 1 },
            )
        },
        plain(
            USERS,
            "role_1_tenantId_1",
            doc! { "role": 1, "tenantId": 1 },
        ),
        plain(
            USERS,
            "idOnTheSource_1_openidIssuer_1_tenantId_1",
            doc! { "idOnTheSource": 1, "openidIssuer": 1, "tenantId": 1 },
        ),
        sso_unique(
            "openidId_1_openidIssuer_1_tenantId_1",
            "openidId",
            doc! { "openidId": 1, "openidIssuer": 1, "tenantId": 1 },
        ),
        plain(TOKENS, "tenantId_1", doc! { "tenantId": 1 }),
        IndexSpec {
            expire_after_secs: Some(0),
            ..plain(TOKENS, "expiresAt_1", doc! { "expiresAt": 1 })
        },
        plain(
            TOKENS,
            "userId_1_type_1_identifier_1_tenantId_1",
            doc! { "userId": 1, "type": 1, "identifier": 1, "tenantId": 1 },
        ),
    ];
    for (name, field) in [
        ("googleId_1_tenantId_1", "googleId"),
        ("facebookId_1_tenantId_1", "facebookId"),
        ("samlId_1_tenantId_1", "samlId"),
        ("ldapId_1_tenantId_1", "ldapId"),
        ("githubId_1_tenantId_1", "githubId"),
        ("discordId_1_tenantId_1", "discordId"),
        ("appleId_1_tenantId_1", "appleId"),
    ] {
        specs.push(sso_unique(name, field, doc! { field: 1, "tenantId": 1 }));
    }
    specs
}

/// What happened to each index.
#[derive(Debug, Default)]
pub struct IndexReport {
    pub created: Vec<String>,
    /// Indexes the server refused, with its reason; LibreChat would hit the same refusal.
    pub failed: Vec<String>,
    /// Whether a creation failed on something passing (a timeout, an outage, an election):
    /// worth another attempt, unlike a refusal.
    pub retry: bool,
}

impl Store {
    /// Creates LibreChat's missing indexes. Never drops or modifies an existing one.
    pub async fn ensure_indexes(&self) -> Result<IndexReport, StoreError> {
        let mut report = IndexReport::default();
        let specs = librechat_indexes();
        let mut names = std::collections::HashSet::new();
        for spec in &specs {
            names.insert(spec.collection);
        }
        for collection in names {
            let coll = self.collection(collection);
            let existing = self.existing_indexes(collection).await?;
            for spec in specs.iter().filter(|s| s.collection == collection) {
                let present = existing.iter().any(|m| {
                    m.keys == spec.keys
                        || m.options.as_ref().and_then(|o| o.name.as_deref()) == Some(spec.name)
                });
                if present {
                    continue;
                }
                let options = IndexOptions::builder()
                    .name(spec.name.to_string())
                    .unique(spec.unique.then_some(true))
                    .sparse(spec.sparse.then_some(true))
                    .expire_after(spec.expire_after_secs.map(std::time::Duration::from_secs))
                    .partial_filter_expression(spec.partial.clone())
                    .build();
                let model = IndexModel::builder()
                    .keys(spec.keys.clone())
                    .options(options)
                    .build();
                match coll.create_index(model).deadline("creating an index").await {
                    Ok(_) => report.created.push(format!("{collection}.{}", spec.name)),
                    Err(e) => {
                        report.retry |= e.is_retryable();
                        report
                            .failed
                            .push(format!("{collection}.{}: {}", spec.name, e));
                    }
                }
            }
        }
        self.ensure_owner_collection().await?;
        Ok(report)
    }

    /// The indexes a collection has (none when it does not exist yet).
    async fn existing_indexes(&self, collection: &str) -> Result<Vec<IndexModel>, StoreError> {
        match self
            .collection(collection)
            .list_indexes()
            .deadline("listing indexes")
            .await
        {
            Ok(cursor) => cursor.try_collect().deadline("listing indexes").await,
            Err(e) if e.is_retryable() => Err(e),
            Err(_) => Ok(Vec::new()),
        }
    }

    /// The operator's own collections are keyed by `_id`; these are their other lookups: an
    /// owner's account by id or by owning object, the ban shares of an object or identity (and
    /// those still settling), and the group and role records of an object.
    /// Only missing ones are created, so a restart writes nothing.
    async fn ensure_owner_collection(&self) -> Result<(), StoreError> {
        let wanted = [
            (collections::OWNERS, "userId_1", doc! { "userId": 1 }),
            (collections::OWNERS, "uid_1", doc! { "uid": 1 }),
            (
                super::bans::SHARES,
                "shares.uid_1",
                doc! { "shares.uid": 1 },
            ),
            (
                super::bans::SHARES,
                "shares.subject_1",
                doc! { "shares.subject": 1 },
            ),
            (super::bans::SHARES, "settling_1", doc! { "settling": 1 }),
            (super::access::ACCESS_RECORDS, "uid_1", doc! { "uid": 1 }),
        ];
        let mut existing: std::collections::HashMap<&str, Vec<IndexModel>> = Default::default();
        for (collection, name, keys) in wanted {
            if !existing.contains_key(collection) {
                existing.insert(collection, self.existing_indexes(collection).await?);
            }
            let present = existing[collection]
                .iter()
                .any(|m| m.options.as_ref().and_then(|o| o.name.as_deref()) == Some(name));
            if present {
                continue;
            }
            let options = IndexOptions::builder().name(name.to_string()).build();
            let model = IndexModel::builder().keys(keys).options(options).build();
            self.collection(collection)
                .create_index(model)
                .deadline("creating the operator's indexes")
                .await?;
        }
        Ok(())
    }
}
