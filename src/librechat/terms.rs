//! The terms-of-service version (contract-surface §1). LibreChat has no version of its own: only
//! `reset-terms` (`updateMany({}, {$set: {termsAccepted: false, termsAcceptedAt: null}})`)
//! makes users accept again. The operator keeps the version whose acceptance the accounts
//! record in a document of its own (`librechat_operator_terms`, which LibreChat never reads),
//! promised before the reset and marked done after it, so a version is reset once:
//! - a new version is written with `pendingSince` before the reset;
//! - a reset interrupted by a crash is finished by the next call, sparing the acceptances
//!   LibreChat stamped since `pendingSince` (nobody loses an acceptance of the new terms);
//! - done, it costs one read per call.
//!
//! The record is one per database, and names the instance that declared its version: another
//! instance on the same database declaring another version would otherwise reset every
//! acceptance at each check, the two in turn, for ever. Its version is applied only once the
//! one named no longer declares its own (the caller judges that: `may_replace`); an instance
//! declaring the version in force takes the record's name over the same way (and at once from
//! a record that names nobody, as those of earlier builds).

use mongodb::bson::{doc, DateTime, Document};

use super::deadline::MongoCall;
use super::error::StoreError;
use super::Store;

/// The operator's record of the terms version, one document `{_id: "terms"}`.
pub const TERMS: &str = "librechat_operator_terms";
const RECORD_ID: &str = "terms";

/// The instance declaring a version: its uid (one re-created is another) and `namespace/name`.
pub struct TermsDeclarer<'a> {
    pub uid: &'a str,
    pub name: &'a str,
}

/// The record's version was declared by another instance (`uid`, `name`) than the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TermsHeld {
    pub uid: String,
    pub name: String,
    pub version: String,
}

impl TermsHeld {
    /// The record names another instance than `by`, and not as `may_replace` saw it (the
    /// same instance and version: a record changed since is judged again).
    fn of(
        record: &Document,
        by: &TermsDeclarer<'_>,
        may_replace: Option<&TermsHeld>,
    ) -> Option<Self> {
        let declarer = record.get_document("declaredBy").ok()?;
        let uid = declarer.get_str("uid").ok()?;
        let held = TermsHeld {
            uid: uid.to_string(),
            name: declarer.get_str("name").unwrap_or_default().to_string(),
            version: record.get_str("version").unwrap_or_default().to_string(),
        };
        (uid != by.uid && may_replace != Some(&held)).then_some(held)
    }
}

fn declared_by(by: &TermsDeclarer<'_>) -> Document {
    doc! { "uid": by.uid, "name": by.name }
}

/// The version in force, as recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppliedTerms {
    pub version: String,
    pub applied_at: DateTime,
    /// Whether applying it reset the acceptances (false for the first version recorded).
    pub reset: bool,
    /// Whether this call wrote anything (and how many accounts it reset).
    pub accounts_reset: Option<u64>,
    /// The other instance the record names as the declarer of this same version.
    pub declared_elsewhere: Option<TermsHeld>,
}

fn applied(d: &Document) -> Option<AppliedTerms> {
    Some(AppliedTerms {
        version: d.get_str("version").ok()?.to_string(),
        applied_at: d
            .get_datetime("appliedAt")
            .copied()
            .unwrap_or(DateTime::from_millis(0)),
        reset: d.get_bool("reset").unwrap_or(false),
        accounts_reset: None,
        declared_elsewhere: None,
    })
}

impl Store {
    /// Makes `version`, declared `by` an instance, the one in force; see the module
    /// documentation. `Ok(Err(_))`: another instance declared the different version recorded,
    /// and it is not `may_replace`; nothing was written.
    pub async fn apply_terms_version(
        &self,
        version: &str,
        by: &TermsDeclarer<'_>,
        may_replace: Option<&TermsHeld>,
    ) -> Result<Result<AppliedTerms, TermsHeld>, StoreError> {
        let Some(record) = self.terms_record().await? else {
            return self.first_terms_version(version, by).await.map(Ok);
        };
        let pending = record.get_datetime("pendingSince").ok().copied();
        let applied_now = match (record.get_str("version").ok() == Some(version), pending) {
            (true, None) => {
                let mut in_force = applied(&record)
                    .ok_or(StoreError::Contended("the terms record is malformed"))?;
                in_force.declared_elsewhere = TermsHeld::of(&record, by, may_replace);
                if in_force.declared_elsewhere.is_none() {
                    self.name_terms_declarer(&record, by).await?;
                }
                Ok(in_force)
            }
            (true, Some(since)) => self.finish_terms_reset(version, Some(since)).await,
            (false, _) => {
                if let Some(held) = TermsHeld::of(&record, by, may_replace) {
                    return Ok(Err(held));
                }
                let since = DateTime::now();
                let promised = self
                    .collection(TERMS)
                    .update_one(
                        doc! { "_id": RECORD_ID, "version": record.get("version").cloned().unwrap_or(mongodb::bson::Bson::Null) },
                        doc! { "$set": { "version": version, "pendingSince": since, "reset": true,
                        "declaredBy": declared_by(by) } },
                    )
                    .deadline("promising a terms reset")
                    .await?;
                if promised.matched_count == 0 {
                    return Err(StoreError::Contended("the terms record changed"));
                }
                crate::fault::crash_point("after-terms-promise");
                self.finish_terms_reset(version, None).await
            }
        };
        applied_now.map(Ok)
    }

    /// With no version declared: a reset promised for one whose declaration was removed before
    /// the reset was done (cut short by a crash or a deadline) is finished, since some accounts
    /// may already be reset and the others would stand for a version half applied. Nothing
    /// when none is pending.
    pub async fn finish_pending_terms(&self) -> Result<Option<AppliedTerms>, StoreError> {
        let Some(record) = self.terms_record().await? else {
            return Ok(None);
        };
        match (
            record.get_str("version"),
            record.get_datetime("pendingSince"),
        ) {
            (Ok(version), Ok(since)) => self
                .finish_terms_reset(version, Some(*since))
                .await
                .map(Some),
            _ => Ok(None),
        }
    }

    /// Names `by` in the record read (`record`, its version in force) where it names nobody
    /// or another instance the caller may replace; nothing when it changed since.
    async fn name_terms_declarer(
        &self,
        record: &Document,
        by: &TermsDeclarer<'_>,
    ) -> Result<(), StoreError> {
        let named = record.get("declaredBy").cloned();
        if named
            .as_ref()
            .and_then(|d| d.as_document()?.get_str("uid").ok())
            == Some(by.uid)
        {
            return Ok(());
        }
        let as_read = named.unwrap_or(mongodb::bson::Bson::Null);
        self.collection(TERMS)
            .update_one(
                doc! { "_id": RECORD_ID, "version": record.get("version").cloned(), "declaredBy": as_read },
                doc! { "$set": { "declaredBy": declared_by(by) } },
            )
            .deadline("recording the terms version")
            .await?;
        Ok(())
    }

    async fn terms_record(&self) -> Result<Option<Document>, StoreError> {
        self.collection(TERMS)
            .find_one(doc! { "_id": RECORD_ID })
            .deadline("reading the terms record")
            .await
    }

    /// The first version declared: nobody accepted "a version" yet, so it is recorded as the
    /// one the existing acceptances stand for, without a reset.
    async fn first_terms_version(
        &self,
        version: &str,
        by: &TermsDeclarer<'_>,
    ) -> Result<AppliedTerms, StoreError> {
        let now = DateTime::now();
        let inserted = self
            .collection(TERMS)
            .insert_one(
                doc! { "_id": RECORD_ID, "version": version, "appliedAt": now,
                "reset": false, "declaredBy": declared_by(by) },
            )
            .deadline("recording the terms version")
            .await;
        match inserted {
            Ok(_) => Ok(AppliedTerms {
                version: version.to_string(),
                applied_at: now,
                reset: false,
                accounts_reset: Some(0),
                declared_elsewhere: None,
            }),
            // Another call recorded one meanwhile: decide again from it.
            Err(e) if e.is_duplicate_key() => {
                Err(StoreError::Contended("the terms record changed"))
            }
            Err(e) => Err(e),
        }
    }

    /// Resets every acceptance as `reset-terms` does (`resumed_since`: only those not stamped
    /// since the promise), drops the cached user documents, and marks the version done.
    async fn finish_terms_reset(
        &self,
        version: &str,
        resumed_since: Option<DateTime>,
    ) -> Result<AppliedTerms, StoreError> {
        let filter = match resumed_since {
            None => doc! {},
            // Not those reset by the cut-short try itself: a reset longer than its deadline
            // must make progress at each try, not start over.
            Some(since) => doc! {
                "termsAccepted": { "$ne": false },
                "termsAcceptedAt": { "$not": { "$gte": since } },
            },
        };
        let result = self
            .collection(super::collections::USERS)
            .update_many(
                filter,
                // mongoose's timestamps stamp `updatedAt` on LibreChat's own updateMany.
                doc! { "$set": { "termsAccepted": false, "termsAcceptedAt": mongodb::bson::Bson::Null,
                "updatedAt": DateTime::now() } },
            )
            .deadline("resetting terms acceptance")
            .await?;
        crate::fault::crash_point("after-terms-reset");
        if let Some(redis) = self.redis()? {
            let lives = super::cache::AUTH_USER_DOC_LIFE;
            redis
                .drop_short_lived("AUTH_USER_DOC", "auth-user-doc", lives)
                .await?;
        }
        let now = DateTime::now();
        self.collection(TERMS)
            .update_one(
                doc! { "_id": RECORD_ID, "version": version },
                doc! { "$set": { "appliedAt": now }, "$unset": { "pendingSince": "" } },
            )
            .deadline("recording the terms version")
            .await?;
        Ok(AppliedTerms {
            version: version.to_string(),
            applied_at: now,
            reset: true,
            accounts_reset: Some(result.modified_count),
            declared_elsewhere: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(version: &str, uid: Option<&str>) -> Document {
        let mut d = doc! { "_id": RECORD_ID, "version": version };
        if let Some(uid) = uid {
            d.insert("declaredBy", doc! { "uid": uid, "name": "chat-a/lc" });
        }
        d
    }

    #[test]
    fn a_version_another_instance_declared_holds_unless_it_may_be_replaced() {
        let b = TermsDeclarer {
            uid: "uid-b",
            name: "chat-b/lc",
        };
        let held = TermsHeld::of(&record("v1", Some("uid-a")), &b, None).unwrap();
        assert_eq!(
            (held.uid.as_str(), held.name.as_str()),
            ("uid-a", "chat-a/lc")
        );
        assert_eq!(held.version, "v1");
        assert!(TermsHeld::of(&record("v1", Some("uid-a")), &b, Some(&held)).is_none());
        // Judged on another version of the record: judged again.
        assert!(TermsHeld::of(&record("v3", Some("uid-a")), &b, Some(&held)).is_some());
        // Its own record, and one written before records named their instance.
        assert!(TermsHeld::of(&record("v1", Some("uid-b")), &b, None).is_none());
        assert!(TermsHeld::of(&record("v1", None), &b, None).is_none());
    }
}
