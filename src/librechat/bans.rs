//! Bans as LibreChat's `checkBan` reads them: a Keyv document `BANS:<user hex | ip>` in the
//! `logs` collection (MongoDB, never Redis), plus the `ban:` cache copies `checkBan` writes.
//!
//! Several declared bans may target one key. Each keeps its own share in the operator's
//! `librechat_operator_bans` collection; the `BANS:` document always says the union of the
//! shares (the latest end, or no end when any share is permanent), so deleting one ban lifts
//! only its share. When the last share goes, every key LibreChat reads for the ban goes too.
//!
//! A change of the shares names its owner in the document's `settling` list in the same
//! write, and only a complete rewrite of the `BANS:` document (sessions ended included)
//! clears it: a crash or a failed call in between leaves the owner a ban to finish, found
//! again by [`Store::shares_of`] even when its share is already gone.

use mongodb::bson::{doc, Bson, DateTime, Document};

use super::deadline::{DrainFind, MongoCall};
use super::error::StoreError;
use super::{collections, Store};

/// The operator's record of ban shares, one document per `BANS:` key.
pub const SHARES: &str = "librechat_operator_bans";
/// Set on a target's shares when the instance's administrators lift their ban of it: the lift
/// that frees the target clears the user's violation counters (see [`Counters`]).
const FORGIVE: &str = "forgive";

/// LibreChat's `ban-user` script bans with this violation record; `checkBan` reads only
/// `expiresAt`, so the other fields are for people reading the database.
const BAN_TYPE: &str = "concurrent";
const VIOLATION_COUNT: u32 = 20;
/// Field of every ban value the operator writes, naming its `BANS:` key.
const MARKER: &str = "ban_key";
/// The share that stands for a ban LibreChat itself had written before the operator's first.
const NATIVE_UID: &str = "librechat";
/// Rewrites of the `BANS:` document before giving up on a key that keeps changing.
const SETTLE_ATTEMPTS: usize = 10;

/// Who is banned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BanTarget {
    /// A user, by `_id` hex.
    User(String),
    /// An IP address as LibreChat sees it (`req.ip` without the port).
    Ip(String),
}

impl BanTarget {
    fn id(&self) -> &str {
        match self {
            BanTarget::User(id) | BanTarget::Ip(id) => id,
        }
    }
    /// The target a `BANS:` key names: an address if it parses as one, else a user id.
    pub fn from_bans_key(key: &str) -> Option<BanTarget> {
        let id = key.strip_prefix("BANS:")?;
        Some(match id.parse::<std::net::IpAddr>() {
            Ok(_) => BanTarget::Ip(id.to_string()),
            Err(_) => BanTarget::User(id.to_string()),
        })
    }

    /// The `logs` key of the ban itself.
    pub fn bans_key(&self) -> String {
        format!("BANS:{}", self.id())
    }
    /// Every `logs` key LibreChat reads for this target: the ban and both forms of
    /// `checkBan`'s cache (`USE_REDIS` off and on).
    fn all_keys(&self) -> Vec<String> {
        let id = self.id();
        let cache = match self {
            BanTarget::User(_) => format!("ban:ban_cache:user:{id}"),
            BanTarget::Ip(_) => format!("ban:ban_cache:ip:{id}"),
        };
        vec![format!("BANS:{id}"), format!("ban:{id}"), cache]
    }
}

/// One declared ban's share of a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BanShare {
    /// The declaring object's uid.
    pub owner_uid: String,
    /// `namespace/name`, for people reading the database.
    pub owner: String,
    /// When this share started (epoch ms).
    pub start_ms: i64,
    /// When it ends (epoch ms); `None`: permanent.
    pub end_ms: Option<i64>,
    /// The banned user (for IP bans, whoever the ban was about, if anyone).
    pub user_id: Option<String>,
    /// The identity the ban names (see [`subjects_of`]): a ban follows it to whatever account
    /// carries it now. `None` for IP bans and LibreChat's own.
    pub subject: Option<String>,
    /// For LibreChat's own ban: its value as LibreChat wrote it, to put back when ours go.
    pub native_value: Option<String>,
    /// A tenant's share: it bans the account and nobody else. See [`EffectiveBan::confined`].
    pub confined: bool,
}

/// The identities an account can be banned by: its email, and the object that owns it. A ban
/// naming either applies to the account that has it now, including one re-created later.
pub fn subjects_of(email: &str, owner_uid: &str) -> Vec<String> {
    vec![email_subject(email), owner_subject(owner_uid)]
}

/// The subject of a ban by email.
pub fn email_subject(email: &str) -> String {
    format!("email:{email}")
}

/// The subject of a ban of whatever account the object with this uid owns.
pub fn owner_subject(owner_uid: &str) -> String {
    format!("owner:{owner_uid}")
}

/// The ban that results from all shares of a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EffectiveBan {
    pub start_ms: i64,
    pub end_ms: Option<i64>,
    pub user_id: Option<String>,
    /// Every share in force is a tenant's. `checkBan` copies a timed ban onto the address of
    /// whoever tries the account's email (login, registration, password reset), locking out
    /// every account behind it, a company's NAT included, until the ban ends: an IP ban, which
    /// only the instance's administrators declare. A confined ban's value carries no end
    /// (`checkBan` then caches nothing) and ends with its Keyv envelope, on time all the same.
    pub confined: bool,
}

/// What lifting the last ban in force does to the user's violation counters (LibreChat's
/// record of abuse, which it bans on when they reach its thresholds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counters {
    /// Cleared, so the next violation does not re-ban at once: the instance's administrators
    /// lifting a ban they declared forgive what led to it. Recorded with the target's shares,
    /// so the lift that frees the target clears them, whichever ban ends last.
    Reset,
    /// Left as LibreChat counted them: a tenant lifting its own ban (or a ban being moved)
    /// must not wipe LibreChat's record of what its accounts did.
    Keep,
}

/// What lifting a share left behind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lifted {
    /// The object held no share there (already lifted): nothing was written.
    NotHeld,
    /// Other shares keep the target banned.
    StillBanned,
    /// The target is free: every key was removed.
    Free,
}

/// The union of shares still in force at `now_ms`.
pub fn effective(shares: &[BanShare], now_ms: i64) -> Option<EffectiveBan> {
    let live: Vec<&BanShare> = shares
        .iter()
        .filter(|s| s.end_ms.is_none_or(|e| e > now_ms))
        .collect();
    let first = live.first()?;
    let end_ms = if live.iter().any(|s| s.end_ms.is_none()) {
        None
    } else {
        live.iter().filter_map(|s| s.end_ms).max()
    };
    Some(EffectiveBan {
        start_ms: live
            .iter()
            .map(|s| s.start_ms)
            .min()
            .unwrap_or(first.start_ms),
        end_ms,
        user_id: live.iter().find_map(|s| s.user_id.clone()),
        confined: live.iter().all(|s| s.confined),
    })
}

/// The Keyv envelope LibreChat's Keyv 5 store holds: `{"value":{…},"expires":<ms>}`, with
/// `expires` (and the inner `expiresAt`) absent for a permanent ban. Field order follows
/// LibreChat's `banViolation`.
pub fn envelope(target: &BanTarget, ban: &EffectiveBan) -> String {
    let mut inner = serde_json::Map::new();
    inner.insert("type".into(), BAN_TYPE.into());
    if let Some(user) = &ban.user_id {
        // LibreChat's IP bans carry user_id; on user bans it lets lifting find checkBan's IP copies.
        inner.insert("user_id".into(), user.clone().into());
    } else if let BanTarget::User(id) = target {
        inner.insert("user_id".into(), id.clone().into());
    }
    inner.insert("violation_count".into(), VIOLATION_COUNT.into());
    // checkBan copies this value into its per-user and per-IP cache entries; the marker lets
    // lifting find every copy, and tells the operator's bans from LibreChat's own.
    inner.insert(MARKER.into(), target.bans_key().into());
    if let Some(end) = ban.end_ms.filter(|_| !ban.confined) {
        inner.insert("duration".into(), (end - ban.start_ms).max(0).into());
        inner.insert("expiresAt".into(), end.into());
    }
    let mut outer = serde_json::Map::new();
    outer.insert("value".into(), serde_json::Value::Object(inner));
    if let Some(end) = ban.end_ms {
        outer.insert("expires".into(), end.into());
    }
    serde_json::Value::Object(outer).to_string()
}

/// A target of `owner_uid`'s ban: its share, or none when a lift of it was cut short, and
/// whether a change of the target's shares still waits for its rewrite.
#[derive(Clone, Debug)]
pub struct HeldBan {
    pub target: BanTarget,
    pub share: Option<BanShare>,
    pub unsettled: bool,
    /// Whether a change of this owner's own was cut short there (see
    /// [`Store::finish_cut_short`]).
    pub cut_short: bool,
    /// Every share on the target as read with it (the others' too).
    pub shares: Vec<BanShare>,
}

impl Store {
    /// Records `share` for `target` and rewrites the `BANS:` document from all shares.
    pub async fn ban(
        &self,
        target: &BanTarget,
        share: &BanShare,
    ) -> Result<EffectiveBan, StoreError> {
        let key = target.bans_key();
        self.absorb_native_ban(target).await?;
        self.replace_share(&key, share, Settling::Mark).await?;
        let fallback = EffectiveBan {
            start_ms: share.start_ms,
            end_ms: share.end_ms,
            user_id: share.user_id.clone(),
            confined: share.confined,
        };
        Ok(self
            .settle(target, &share.owner_uid)
            .await?
            .unwrap_or(fallback))
    }

    /// Removes `owner_uid`'s share of `target`; lifts the ban entirely when none is left in
    /// force. A share already gone writes nothing, so lifting twice lifts once; a lift of it
    /// cut short before the rewrite is finished.
    pub async fn unban(
        &self,
        target: &BanTarget,
        owner_uid: &str,
        counters: Counters,
    ) -> Result<Lifted, StoreError> {
        self.absorb_native_ban(target).await?;
        let key = target.bans_key();
        let shares = self.collection(SHARES);
        // The administrators' forgiveness is recorded with the removal itself, so the lift
        // that frees the target clears the counters whoever finishes it (this call, its retry
        // after a crash, or another ban's lift once the last one goes).
        let mut removal = doc! {
            "$pull": { "shares": { "uid": owner_uid } },
            "$addToSet": { "settling": owner_uid },
            "$inc": { "rev": 1 },
        };
        if counters == Counters::Reset {
            removal.insert("$set", doc! { FORGIVE: true });
        }
        let pulled = shares
            .update_one(doc! { "_id": &key, "shares.uid": owner_uid }, removal)
            .deadline("removing a ban")
            .await?
            .modified_count;
        let cut_short = || async {
            shares
                .count_documents(doc! { "_id": &key, "settling": owner_uid })
                .deadline("reading bans")
                .await
        };
        if pulled == 0 && cut_short().await? == 0 {
            return Ok(Lifted::NotHeld);
        }
        crate::fault::crash_point("after-ban-share-removed");
        Ok(match self.settle(target, owner_uid).await? {
            Some(_) => Lifted::StillBanned,
            None => Lifted::Free,
        })
    }

    /// Finishes the changes of `owner_uid`'s among `held` that a crash or a failed call cut
    /// short (a share recorded or removed, the `BANS:` document and the sessions not yet
    /// following), whatever its ban's reconcile decides next: a ban recorded is in force with
    /// its sessions ended, a lift recorded is done. Returns whether there was any.
    pub async fn finish_cut_short(
        &self,
        owner_uid: &str,
        held: &[HeldBan],
    ) -> Result<bool, StoreError> {
        let cut_short: Vec<&HeldBan> = held.iter().filter(|h| h.cut_short).collect();
        for h in &cut_short {
            self.settle(&h.target, owner_uid).await?;
        }
        Ok(!cut_short.is_empty())
    }

    /// Bans the account `user_hex` (about to be created, or just found) for every ban in force
    /// that names one of `subjects` and that `may_carry` lets through (the caller knows whose
    /// bans may reach the new account's owner), so a re-created account is banned before it
    /// can be used.
    pub async fn carry_bans(
        &self,
        subjects: &[String],
        user_hex: &str,
        may_carry: impl Fn(&BanShare) -> bool,
    ) -> Result<(), StoreError> {
        let docs: Vec<Document> = self
            .collection(SHARES)
            .find(doc! { "shares.subject": { "$in": subjects } })
            .drain("reading bans")
            .await?;
        let now = DateTime::now().timestamp_millis();
        let target = BanTarget::User(user_hex.to_string());
        for share in docs.iter().flat_map(shares_in) {
            let names_it = share.subject.as_ref().is_some_and(|s| subjects.contains(s));
            if names_it && share.end_ms.is_none_or(|end| end > now) && may_carry(&share) {
                let moved = BanShare {
                    user_id: Some(user_hex.to_string()),
                    ..share
                };
                self.ban(&target, &moved).await?;
            }
        }
        Ok(())
    }

    /// Every target of `owner_uid`'s bans: those it holds a share of, and those whose change
    /// by it was cut short before the rewrite.
    pub async fn shares_of(&self, owner_uid: &str) -> Result<Vec<HeldBan>, StoreError> {
        let filter = doc! { "$or": [ { "shares.uid": owner_uid }, { "settling": owner_uid } ] };
        let docs: Vec<Document> = self
            .collection(SHARES)
            .find(filter)
            .drain("reading bans")
            .await?;
        Ok(docs
            .iter()
            .filter_map(|d| {
                let target = BanTarget::from_bans_key(d.get_str("_id").ok()?)?;
                let shares = shares_in(d);
                let share = shares.iter().find(|s| s.owner_uid == owner_uid).cloned();
                let settling = d.get_array("settling").ok();
                let unsettled = settling.is_some_and(|a| !a.is_empty());
                let cut_short =
                    settling.is_some_and(|a| a.iter().any(|u| u.as_str() == Some(owner_uid)));
                Some(HeldBan {
                    target,
                    share,
                    unsettled,
                    cut_short,
                    shares,
                })
            })
            .collect())
    }

    /// Writes the `BANS:` document from the shares (or lifts the ban when none is in force),
    /// again until nobody changed the shares meanwhile, so concurrent bans of one target end
    /// with the union of all of them.
    async fn settle(
        &self,
        target: &BanTarget,
        owner_uid: &str,
    ) -> Result<Option<EffectiveBan>, StoreError> {
        let key = target.bans_key();
        for _ in 0..SETTLE_ATTEMPTS {
            let (shares, rev, forgiven) = self.ban_shares(&key).await?;
            let now = DateTime::now().timestamp_millis();
            let effect = effective(&shares, now);
            let ours_live = shares
                .iter()
                .any(|s| s.owner_uid != NATIVE_UID && s.end_ms.is_none_or(|e| e > now));
            match &effect {
                Some(ban) if ours_live => self.write_ban(target, ban).await?,
                // Only LibreChat's own ban is left: it gets its own document back.
                Some(_) => self.restore_native_ban(target, &shares).await?,
                None => self.lift(target, forgiven).await?,
            }
            if !ours_live && forgiven {
                // Used (the lift cleared the counters) or void (LibreChat's own ban holds:
                // its counters are its own): no later ban's lift may clear them on its behalf.
                self.collection(SHARES)
                    .update_one(doc! { "_id": &key }, doc! { "$unset": { FORGIVE: "" } })
                    .deadline("recording a ban")
                    .await?;
            }
            if self.ban_shares(&key).await?.1 == rev {
                // Every change up to `rev` is written out now.
                self.collection(SHARES)
                    .update_one(
                        doc! { "_id": &key, "rev": rev },
                        doc! { "$unset": { "settling": "" } },
                    )
                    .deadline("recording a ban")
                    .await?;
                if effect.is_none() {
                    self.collection(SHARES)
                        .delete_one(doc! { "_id": &key, "rev": rev, "shares": { "$size": 0 } })
                        .deadline("removing a ban")
                        .await?;
                }
                return Ok(effect);
            }
        }
        // Still changing after every attempt: this owner's change stays marked (a rewrite that
        // finished meanwhile cleared it) and its caller retries.
        self.collection(SHARES)
            .update_one(
                doc! { "_id": &key },
                doc! { "$addToSet": { "settling": owner_uid } },
            )
            .deadline("recording a ban")
            .await?;
        Err(StoreError::Contended(
            "the ban's shares kept changing while its document was rewritten",
        ))
    }

    /// The shares of `key`, their revision, and whether the administrators forgave (the lift
    /// that frees the target clears its violation counters).
    async fn ban_shares(&self, key: &str) -> Result<(Vec<BanShare>, i64, bool), StoreError> {
        let found = self
            .collection(SHARES)
            .find_one(doc! { "_id": key })
            .deadline("reading bans")
            .await?;
        let rev = found
            .as_ref()
            .and_then(|d| d.get("rev"))
            .and_then(bson_int)
            .unwrap_or(0);
        let forgiven = found
            .as_ref()
            .is_some_and(|d| d.get_bool(FORGIVE).unwrap_or(false));
        Ok((
            found.as_ref().map(shares_in).unwrap_or_default(),
            rev,
            forgiven,
        ))
    }

    /// A ban LibreChat itself wrote on the target (a violation ban, say, before ours or in
    /// the middle of it) becomes the share of its own, so that rewriting or lifting ours keeps
    /// it in force until its own end.
    async fn absorb_native_ban(&self, target: &BanTarget) -> Result<(), StoreError> {
        let key = target.bans_key();
        let existing = self
            .collection(collections::LOGS)
            .find_one(doc! { "key": &key })
            .deadline("reading a ban")
            .await?;
        let Some(native) = existing.and_then(|d| d.get_str("value").ok().and_then(native_ban))
        else {
            return Ok(());
        };
        let now = DateTime::now().timestamp_millis();
        if native.end_ms.is_some_and(|end| end <= now) {
            return Ok(());
        }
        let share = BanShare {
            owner: "LibreChat (its own ban)".into(),
            start_ms: now,
            ..native
        };
        self.replace_share(&key, &share, Settling::Leave).await
    }

    /// Puts `share` in place of its owner's share of the record `key`: the new one is added
    /// before the older goes (told apart by a fresh `sid`), so that no crash or failed call
    /// between the two writes leaves the target without the owner's share (pulled first, a
    /// cut-short change was finished by lifting the ban, or writing the operator's union over
    /// LibreChat's own ban, whose value only its share keeps). Two shares of one owner for a
    /// moment read as the later end; the owner's next write or lift settles it. Plain update
    /// operators: an update pipeline would need MongoDB 4.2 and DocumentDB refuses it.
    async fn replace_share(
        &self,
        key: &str,
        share: &BanShare,
        settling: Settling,
    ) -> Result<(), StoreError> {
        let uid = &share.owner_uid;
        let sid = mongodb::bson::oid::ObjectId::new();
        let mut added = share_doc(share);
        added.insert("sid", sid);
        let mut push = doc! { "$push": { "shares": added }, "$inc": { "rev": 1 } };
        if settling == Settling::Mark {
            push.insert("$addToSet", doc! { "settling": uid });
        }
        let shares = self.collection(SHARES);
        shares
            .update_one(doc! { "_id": key }, push)
            .upsert(true)
            .deadline("recording a ban")
            .await?;
        // Only while the new share is still there: two replacements racing (two bans of one
        // target absorbing LibreChat's own ban at once) each remove the other's, and one
        // must stand.
        shares
            .update_one(
                doc! { "_id": key, "shares.sid": sid },
                doc! {
                    "$pull": { "shares": { "uid": uid, "sid": { "$ne": sid } } },
                    "$inc": { "rev": 1 },
                },
            )
            .deadline("recording a ban")
            .await?;
        Ok(())
    }

    /// Writes the `BANS:` document as Keyv's Mongo store does (`updateOne` upsert on `key`),
    /// then ends the user's sessions, since LibreChat does not check bans on token refresh.
    async fn write_ban(&self, target: &BanTarget, ban: &EffectiveBan) -> Result<(), StoreError> {
        let expires_at = match ban.end_ms {
            Some(end) => Bson::DateTime(DateTime::from_millis(end)),
            None => Bson::Null,
        };
        let key = target.bans_key();
        self.collection(collections::LOGS)
            .update_one(
                doc! { "key": &key },
                doc! { "$set": { "key": &key, "value": envelope(target, ban), "expiresAt": expires_at } },
            )
            .upsert(true)
            .deadline("writing a ban")
            .await?;
        crate::fault::crash_point("after-ban-written");
        if ban.confined {
            // Copies `checkBan` made while a share of the administrators' was in force (or
            // before tenants' bans were confined) would keep their addresses locked out.
            self.remove_checkban_copies(target).await?;
        }
        if let BanTarget::User(id) = target {
            if let Ok(oid) = mongodb::bson::oid::ObjectId::parse_str(id) {
                self.revoke_sessions(oid).await?;
            }
            if let Some(redis) = self.redis()? {
                redis.invalidate_user(id, None).await?;
            }
        }
        Ok(())
    }

    /// Puts LibreChat's own ban back as LibreChat wrote it, in place of the operator's union
    /// (never over a newer ban LibreChat wrote since), and removes the copies of ours.
    async fn restore_native_ban(
        &self,
        target: &BanTarget,
        shares: &[BanShare],
    ) -> Result<(), StoreError> {
        let native = shares.iter().find(|s| s.owner_uid == NATIVE_UID);
        if let Some((value, share)) = native.and_then(|s| s.native_value.as_ref().map(|v| (v, s))) {
            let expires_at = match share.end_ms {
                Some(end) => Bson::DateTime(DateTime::from_millis(end)),
                None => Bson::Null,
            };
            self.collection(collections::LOGS)
                .update_one(
                    doc! { "key": target.bans_key(), "value": { "$regex": marker_pattern(target) } },
                    doc! { "$set": { "value": value, "expiresAt": expires_at } },
                )
                .deadline("restoring LibreChat's ban")
                .await?;
        }
        self.remove_checkban_copies(target).await
    }

    /// Removes every copy `checkBan` made of the operator's ban of `target` (per user and per
    /// address), found by the marker in their value.
    async fn remove_checkban_copies(&self, target: &BanTarget) -> Result<(), StoreError> {
        self.collection(collections::LOGS)
            .delete_many(doc! { "key": { "$regex": "^ban:" }, "value": { "$regex": marker_pattern(target) } })
            .deadline("lifting a ban")
            .await?;
        Ok(())
    }

    /// Removes what the operator wrote for the ban and nothing else: the `BANS:` document and
    /// every copy `checkBan` made of it (per user and per IP), all found by the marker in
    /// their value. LibreChat's own bans and their copies carry no marker and stay in force.
    /// With `reset_counters`, the user's violation counters go too, so the next violation does
    /// not re-ban at once: only when the operator lifts a ban it wrote, and the caller makes
    /// sure that happens once.
    pub(crate) async fn lift(
        &self,
        target: &BanTarget,
        reset_counters: bool,
    ) -> Result<(), StoreError> {
        let marked = marker_pattern(target);
        let filter = doc! { "$or": [
            { "key": { "$in": target.all_keys() }, "value": { "$regex": &marked } },
            { "key": { "$regex": "^ban:" }, "value": { "$regex": &marked } },
        ] };
        self.collection(collections::LOGS)
            .delete_many(filter)
            .deadline("lifting a ban")
            .await?;
        if let (Some(redis), BanTarget::User(id)) = (self.redis()?, target) {
            if reset_counters {
                redis.clear_violations(id).await?;
            }
            redis.invalidate_user(id, None).await?;
        }
        Ok(())
    }

    /// Whether the `BANS:` document says what `held`'s shares (as [`Store::shares_of`] read
    /// them) say: in force, with the right end, and telling `checkBan` its end only when not
    /// every share in force is a tenant's (a share of the administrators' or LibreChat's own
    /// that ended leaves a tenant's ban to be written again, confined).
    pub async fn ban_in_force(
        &self,
        held: &HeldBan,
        end_ms: Option<i64>,
    ) -> Result<bool, StoreError> {
        let found = self
            .collection(collections::LOGS)
            .find_one(doc! { "key": held.target.bans_key() })
            .deadline("reading a ban")
            .await?;
        let now = DateTime::now().timestamp_millis();
        let tells_end =
            effective(&held.shares, now).is_some_and(|b| b.end_ms.is_some() && !b.confined);
        let shaped =
            |d: &Document| value_tells_end(d.get_str("value").unwrap_or_default()) == tells_end;
        Ok(found.filter(|d| shaped(d)).is_some_and(|d| {
            let stored_end = d
                .get_datetime("expiresAt")
                .ok()
                .map(|t| t.timestamp_millis());
            let ours = d.get_str("value").is_ok_and(|v| v.contains(MARKER));
            // Another share may have extended the end; a shorter one means a lost update.
            ours && stored_end.is_none_or(|e| e > now)
                && match (stored_end, end_ms) {
                    (None, _) => true,
                    (Some(_), None) => false,
                    (Some(stored), Some(mine)) => stored >= mine,
                }
        }))
    }
}

/// Whether a ban value tells `checkBan` its end (an inner `expiresAt`).
fn value_tells_end(value: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(value.strip_prefix(':').unwrap_or(value))
        .ok()
        .is_some_and(|e| e["value"].get("expiresAt").is_some())
}

/// A ban LibreChat wrote (not carrying the operator's marker), as a share: it ends at the
/// earlier of the inner `expiresAt` and the envelope's `expires`; neither means permanent.
fn native_ban(value: &str) -> Option<BanShare> {
    let envelope: serde_json::Value =
        serde_json::from_str(value.strip_prefix(':').unwrap_or(value)).ok()?;
    let inner = envelope.get("value")?;
    if inner.get(MARKER).is_some() {
        return None;
    }
    let ends = [
        inner.get("expiresAt").and_then(|v| v.as_i64()),
        envelope.get("expires").and_then(|v| v.as_i64()),
    ];
    Some(BanShare {
        owner_uid: NATIVE_UID.into(),
        owner: String::new(),
        start_ms: 0,
        end_ms: ends.iter().flatten().min().copied(),
        user_id: inner
            .get("user_id")
            .and_then(|v| v.as_str())
            .map(str::to_string),
        subject: None,
        native_value: Some(value.to_string()),
        confined: false,
    })
}

fn bson_int(b: &Bson) -> Option<i64> {
    match b {
        Bson::Int32(i) => Some(i64::from(*i)),
        Bson::Int64(i) => Some(*i),
        Bson::Double(f) => Some(*f as i64),
        _ => None,
    }
}

fn share_doc(share: &BanShare) -> Document {
    let mut d = doc! { "uid": &share.owner_uid, "owner": &share.owner, "start": DateTime::from_millis(share.start_ms) };
    d.insert(
        "end",
        share
            .end_ms
            .map(|e| Bson::DateTime(DateTime::from_millis(e)))
            .unwrap_or(Bson::Null),
    );
    if let Some(user) = &share.user_id {
        d.insert("userId", user);
    }
    if let Some(subject) = &share.subject {
        d.insert("subject", subject);
    }
    if let Some(value) = &share.native_value {
        d.insert("nativeValue", value);
    }
    if share.confined {
        d.insert("confined", true);
    }
    d
}

/// Whether a share's replacement marks its owner as settling (a change of the effective ban
/// to finish), or is bookkeeping that changes no ban.
#[derive(Clone, Copy, PartialEq)]
enum Settling {
    Mark,
    Leave,
}

/// A regex matching the values that carry the operator's marker for `target`.
fn marker_pattern(target: &BanTarget) -> String {
    regex_escape(&format!("\"{MARKER}\":\"{}\"", target.bans_key()))
}

/// The shares of one record, one per owner: the last written where a replacement cut short
/// left two (see [`Store::replace_share`]).
fn shares_in(record: &Document) -> Vec<BanShare> {
    let written: Vec<BanShare> = record
        .get_array("shares")
        .map(|a| {
            a.iter()
                .filter_map(|b| b.as_document())
                .map(share_from_doc)
                .collect()
        })
        .unwrap_or_default();
    let last_of =
        |i: usize, s: &BanShare| !written[i + 1..].iter().any(|t| t.owner_uid == s.owner_uid);
    written
        .iter()
        .enumerate()
        .filter(|(i, s)| last_of(*i, s))
        .map(|(_, s)| s.clone())
        .collect()
}

fn share_from_doc(d: &Document) -> BanShare {
    BanShare {
        owner_uid: d.get_str("uid").unwrap_or_default().to_string(),
        owner: d.get_str("owner").unwrap_or_default().to_string(),
        start_ms: d
            .get_datetime("start")
            .map(|t| t.timestamp_millis())
            .unwrap_or_default(),
        end_ms: d.get_datetime("end").ok().map(|t| t.timestamp_millis()),
        user_id: d.get_str("userId").ok().map(str::to_string),
        subject: d.get_str("subject").ok().map(str::to_string),
        native_value: d.get_str("nativeValue").ok().map(str::to_string),
        confined: d.get_bool("confined").unwrap_or(false),
    }
}

fn regex_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\^$.|?*+()[]{}".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn share(uid: &str, start: i64, end: Option<i64>) -> BanShare {
        BanShare {
            owner_uid: uid.into(),
            owner: "ns/x".into(),
            start_ms: start,
            end_ms: end,
            user_id: None,
            subject: None,
            native_value: None,
            confined: false,
        }
    }

    #[test]
    fn the_latest_end_wins_and_permanent_beats_all() {
        let shares = vec![share("a", 0, Some(100)), share("b", 10, Some(500))];
        assert_eq!(effective(&shares, 50).unwrap().end_ms, Some(500));
        assert_eq!(effective(&shares, 200).unwrap().end_ms, Some(500));
        assert!(effective(&shares, 600).is_none());
        let with_permanent = vec![share("a", 0, Some(100)), share("b", 0, None)];
        assert_eq!(effective(&with_permanent, 50).unwrap().end_ms, None);
    }

    #[test]
    fn envelope_matches_keyv_and_checkban() {
        let target = BanTarget::User("6b037b4b851b57d6134bed7d".into());
        let ban = EffectiveBan {
            start_ms: 1_000,
            end_ms: Some(3_601_000),
            user_id: None,
            confined: false,
        };
        let v: serde_json::Value = serde_json::from_str(&envelope(&target, &ban)).unwrap();
        assert_eq!(v["expires"], 3_601_000);
        assert_eq!(v["value"]["expiresAt"], 3_601_000);
        assert_eq!(v["value"]["duration"], 3_600_000);
        assert_eq!(v["value"]["user_id"], "6b037b4b851b57d6134bed7d");
        let permanent = EffectiveBan {
            end_ms: None,
            ..ban.clone()
        };
        let v: serde_json::Value = serde_json::from_str(&envelope(&target, &permanent)).unwrap();
        assert!(v.get("expires").is_none());
        assert!(v["value"].get("expiresAt").is_none());
        // A tenant's timed ban: no end in the value (checkBan caches nothing, so copies it
        // onto no address), the envelope's expiry ends it.
        let confined = EffectiveBan {
            confined: true,
            ..ban
        };
        let v: serde_json::Value = serde_json::from_str(&envelope(&target, &confined)).unwrap();
        assert_eq!(v["expires"], 3_601_000);
        assert!(v["value"].get("expiresAt").is_none() && v["value"].get("duration").is_none());
    }

    #[test]
    fn a_ban_is_confined_only_while_every_share_in_force_is_a_tenants() {
        let tenants = BanShare {
            confined: true,
            ..share("t", 0, Some(500))
        };
        let admins = share("a", 0, Some(100));
        let both = vec![tenants.clone(), admins];
        assert!(!effective(&both, 50).unwrap().confined);
        assert!(effective(&both, 200).unwrap().confined);
        assert!(effective(&[tenants], 50).unwrap().confined);
    }

    #[test]
    fn native_bans_end_at_the_earlier_expiry_and_ours_are_recognised() {
        // Fixture logs.user-ban.json, written by LibreChat's ban-user script.
        let theirs = r#"{"value":{"type":"concurrent","violation_count":20,"duration":3600000,"expiresAt":1795393884194},"expires":1795397484194}"#;
        assert_eq!(native_ban(theirs).unwrap().end_ms, Some(1795393884194));
        let target = BanTarget::User("6b037b4b851b57d6134bed7d".into());
        let ours = envelope(
            &target,
            &EffectiveBan {
                start_ms: 0,
                end_ms: None,
                user_id: None,
                confined: false,
            },
        );
        assert!(native_ban(&ours).is_none());
        assert_eq!(
            BanTarget::from_bans_key("BANS:203.0.113.7"),
            Some(BanTarget::Ip("203.0.113.7".into()))
        );
        assert_eq!(
            BanTarget::from_bans_key("BANS:2001:db8::1"),
            Some(BanTarget::Ip("2001:db8::1".into()))
        );
        assert_eq!(
            BanTarget::from_bans_key("BANS:6b037b4b851b57d6134bed7d"),
            Some(target)
        );
    }

    #[test]
    fn lifting_covers_every_key_checkban_reads() {
        let keys = BanTarget::Ip("203.0.113.7".into()).all_keys();
        assert_eq!(
            keys,
            vec![
                "BANS:203.0.113.7",
                "ban:203.0.113.7",
                "ban:ban_cache:ip:203.0.113.7"
            ]
        );
    }
}
