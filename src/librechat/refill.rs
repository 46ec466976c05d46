//! Per-user auto-refill settings an object declares, and their withdrawal.
//!
//! LibreChat refills a drained balance by the record's own settings (contract-surface §3,
//! `reserveBalance`), for as long as they stay. So settings the operator wrote must go when
//! their declaration goes (the field removed, or the right to declare it revoked): otherwise a
//! revoked tenant keeps its credits flowing. Before its first write the ownership record keeps
//! what the record had (`refill.before`) and what is written (`refill.written`); withdrawing
//! puts `before` back, but only while the record still holds what the operator wrote: settings
//! LibreChat changed since (its login sync writes the yaml's refill) are LibreChat's decision
//! and stay.

use mongodb::bson::{doc, oid::ObjectId, Document};

use super::balance::{js_number, BalanceConfig, Refill, RefillUpdate, BALANCES};
use super::collections;
use super::deadline::MongoCall;
use super::error::StoreError;
use super::ownership::Claim;
use super::Store;

/// What the ownership record keeps of the refill settings its object wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimedRefill {
    /// The settings before the operator's first write (the schema defaults if there was no
    /// record).
    pub before: Refill,
    /// The settings the operator wrote last.
    pub written: Refill,
    /// The settings it wrote before those, while the write of `written` may not have
    /// happened (a crash or a failed call right after the record): still its own.
    pub previous: Option<Refill>,
    /// Whether the balance record was seen to hold `written` (written, or found so): only then
    /// are the yaml's settings found over them LibreChat's login sync, not a write that never
    /// happened. Records of earlier versions, written once the settings were, count as such.
    pub confirmed: bool,
}

impl ClaimedRefill {
    /// Whether `stored` holds settings the operator wrote (not ones LibreChat chose since).
    fn written_by_operator(&self, stored: &Refill) -> bool {
        *stored == self.written || self.previous.as_ref() == Some(stored)
    }
}

impl Store {
    /// Writes the declared refill settings onto the record LibreChat reads, recording first in
    /// `claim` what it replaces. Returns whether anything was written. A record is created
    /// when there is none as LibreChat's login sync would create it (the start balance, the
    /// yaml's settings), so an account that never logged in keeps the credits its first
    /// login would give it.
    ///
    /// Once written, settings LibreChat's login sync put back to the yaml's are LibreChat's
    /// decision (`config`): they stay until the declaration changes. What registration gives
    /// (`config.registered()`) stands in for the settings replaced when an earlier version
    /// wrote them without keeping those.
    pub async fn set_refill(
        &self,
        claim: &Claim,
        user: ObjectId,
        wanted: &RefillUpdate,
        config: &BalanceConfig,
    ) -> Result<bool, StoreError> {
        let stored = self.find_balance(user).await?;
        let current = stored.as_ref().map(|s| s.refill.clone());
        if let Some(current) = current.as_ref().filter(|c| wanted.matches(c)) {
            let claimed = match &claim.refill {
                None => Some(ClaimedRefill {
                    before: config.registered(),
                    written: current.clone(),
                    previous: None,
                    confirmed: true,
                }),
                // Written, its confirmation lost (a crash or a failed call after the write).
                Some(r) if !r.confirmed && r.written == *current => Some(ClaimedRefill {
                    confirmed: true,
                    ..r.clone()
                }),
                Some(_) => None,
            };
            if let Some(claimed) = claimed {
                self.record_refill(claim, Some(&claimed)).await?;
            }
            return Ok(false);
        }
        let written_before = claim.refill.as_ref().filter(|r| r.confirmed);
        let synced = current
            .as_ref()
            .is_some_and(|c| config.synced_by_librechat(c));
        if synced && written_before.is_some_and(|r| wanted.matches(&r.written)) {
            // This declaration was written; LibreChat's login sync wrote the yaml's since.
            return Ok(false);
        }
        let current = current.unwrap_or_else(|| config.registered());
        let written = wanted.merged(&current);
        let claimed = match &claim.refill {
            Some(r) => ClaimedRefill {
                before: r.before.clone(),
                written: written.clone(),
                // The last settings that landed: those recorded, unless their write never did.
                previous: match r.confirmed || r.written == current {
                    true => Some(r.written.clone()),
                    false => r.previous.clone(),
                },
                confirmed: false,
            },
            None => ClaimedRefill {
                before: current,
                written: written.clone(),
                previous: None,
                confirmed: false,
            },
        };
        self.record_refill(claim, Some(&claimed)).await?;
        crate::fault::crash_point("after-refill-recorded");
        let landed = match stored {
            None => {
                self.ensure_balance_record(user, config.start_balance, &written)
                    .await?
            }
            Some(stored) => self.write_refill(stored.id, None, &written).await?,
        };
        if !landed {
            // A record made meanwhile (LibreChat's login creating one) or gone: the next try
            // reads it again.
            return Err(StoreError::Contended(
                "the balance record changed while its auto-refill settings were written",
            ));
        }
        crate::fault::crash_point("after-refill-written");
        let confirmed = ClaimedRefill {
            confirmed: true,
            ..claimed
        };
        self.record_refill(claim, Some(&confirmed)).await?;
        Ok(true)
    }

    /// Puts back the refill settings `claim`'s object wrote, if the account's record still
    /// holds them, and forgets them. Returns whether the record was written.
    pub async fn withdraw_refill(&self, claim: &Claim) -> Result<bool, StoreError> {
        let Some(claimed) = &claim.refill else {
            return Ok(false);
        };
        let mut wrote = false;
        if let Some(id) = claim.user_id {
            let stored = self.find_balance(id).await?;
            if let Some(stored) = stored.filter(|s| claimed.written_by_operator(&s.refill)) {
                // Fenced on what was read: a login sync in between is LibreChat's to keep.
                wrote = self
                    .write_refill(stored.id, Some(&stored.refill), &claimed.before)
                    .await?;
            }
        }
        self.record_refill(claim, None).await?;
        Ok(wrote)
    }

    /// Writes `refill` onto the balance record, if it still holds `read` (when given).
    /// Returns whether it was written.
    async fn write_refill(
        &self,
        record: ObjectId,
        read: Option<&Refill>,
        refill: &Refill,
    ) -> Result<bool, StoreError> {
        let mut filter = doc! { "_id": record };
        if let Some(read) = read {
            filter.insert("autoRefillEnabled", read.enabled);
            filter.insert("refillIntervalValue", js_number(read.interval_value));
            filter.insert("refillIntervalUnit", &read.interval_unit);
            filter.insert("refillAmount", js_number(read.amount));
        }
        self.collection(BALANCES)
            .update_one(
                filter,
                doc! { "$set": {
                    "autoRefillEnabled": refill.enabled,
                    "refillIntervalValue": js_number(refill.interval_value),
                    "refillIntervalUnit": &refill.interval_unit,
                    "refillAmount": js_number(refill.amount),
                } },
            )
            .deadline("setting auto-refill")
            .await
            .map(|r| r.matched_count > 0)
    }

    /// Records (or with `None`, forgets) the refill settings of `claim`'s object.
    async fn record_refill(
        &self,
        claim: &Claim,
        refill: Option<&ClaimedRefill>,
    ) -> Result<(), StoreError> {
        let update = match refill {
            Some(r) => {
                let mut kept = doc! {
                    "before": refill_doc(&r.before),
                    "written": refill_doc(&r.written),
                    "confirmed": r.confirmed,
                };
                if let Some(previous) = &r.previous {
                    kept.insert("previous", refill_doc(previous));
                }
                doc! { "$set": { "refill": kept } }
            }
            None => doc! { "$unset": { "refill": "" } },
        };
        self.collection(collections::OWNERS)
            .update_one(
                doc! { "_id": &claim.email, "uid": &claim.owner.uid },
                update,
            )
            .deadline("recording auto-refill settings")
            .await
            .map(|_| ())
    }
}

fn refill_doc(r: &Refill) -> Document {
    doc! {
        "enabled": r.enabled,
        "intervalValue": r.interval_value,
        "intervalUnit": &r.interval_unit,
        "amount": r.amount,
    }
}

fn refill_from(d: &Document) -> Option<Refill> {
    Some(Refill {
        enabled: d.get_bool("enabled").ok()?,
        interval_value: d.get_i64("intervalValue").ok()?,
        interval_unit: d.get_str("intervalUnit").ok()?.to_string(),
        amount: d.get_i64("amount").ok()?,
    })
}

/// The refill settings an ownership record keeps, if any.
pub(super) fn claimed_from(owner_record: &Document) -> Option<ClaimedRefill> {
    let r = owner_record.get_document("refill").ok()?;
    Some(ClaimedRefill {
        before: refill_from(r.get_document("before").ok()?)?,
        written: refill_from(r.get_document("written").ok()?)?,
        previous: r.get_document("previous").ok().and_then(refill_from),
        confirmed: r.get_bool("confirmed").unwrap_or(true),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_of_written_settings_reads_back_as_written() {
        let before = Refill::default();
        let written = Refill {
            enabled: true,
            interval_value: 1,
            interval_unit: "hours".into(),
            amount: 5_000_000_000,
        };
        let record = doc! { "refill": {
            "before": refill_doc(&before),
            "written": refill_doc(&written),
            "previous": refill_doc(&before),
        } };
        let claimed = claimed_from(&record).unwrap();
        // Written by an earlier version, once the settings were: confirmed.
        assert!(claimed.confirmed);
        assert_eq!(claimed.before, before);
        assert_eq!(claimed.written, written);
        // Either value it wrote is its own; anything else is LibreChat's.
        assert!(claimed.written_by_operator(&written));
        assert!(claimed.written_by_operator(&before));
        let other = Refill {
            amount: 1,
            ..before.clone()
        };
        assert!(!claimed.written_by_operator(&other));
        assert_eq!(claimed_from(&doc! {}), None);
        // A damaged record counts as none: nothing is put back from it.
        assert_eq!(claimed_from(&doc! { "refill": { "before": 1 } }), None);
    }
}
