//! `kubectl librechat whois EMAIL`: which object owns the LibreChat account of an email. The
//! answer comes from the operator's ownership record in MongoDB, never from an object's
//! status, which anybody allowed to write status could fake; the objects that declare the
//! email are listed beside it as a cross-check.

use serde::Serialize;

use super::cluster::{instance_key, Cluster, Namespaces};
use super::error::PluginError;
use super::reach::Reach;
use super::table::Table;
use super::usage::{self, BanShareRecord, InviteRecordOf};
use crate::api::validate::normalize_email;
use crate::librechat::access::group_key;
use crate::librechat::access::groups::member_id;
use crate::librechat::bans::{email_subject, owner_subject};
use crate::librechat::ownership::Claim;
use crate::librechat::users::StoredUser;
use crate::librechat::Store;

/// The account as LibreChat stores it (no password hash, no secret of any kind).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Account {
    pub id: String,
    pub email: String,
    pub name: Option<String>,
    pub username: Option<String>,
    pub role: Option<String>,
    pub provider: Option<String>,
    pub email_verified: bool,
}

impl Account {
    fn of(user: &StoredUser) -> Self {
        Account {
            id: user.id.to_hex(),
            email: user.email.clone(),
            name: user.name.clone(),
            username: user.username.clone(),
            role: user.role.clone(),
            provider: user.provider.clone(),
            email_verified: user.email_verified,
        }
    }
}

/// Whether the object an ownership record names is still in the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "state")]
pub enum ObjectState {
    /// An object of that kind, namespace and name with that uid exists.
    Exists,
    /// No object of that kind, namespace and name exists.
    Gone,
    /// An object of that name exists, but it is another one (another uid).
    Replaced { uid: String },
    /// The cluster could not be asked (no permission, an unknown kind).
    Unknown { why: String },
}

/// The owner as the ownership record names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OwnerView {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// The email the record is kept under.
    pub record_email: String,
    /// The account the record names.
    pub account_id: Option<String>,
    /// Whether the operator created the account (as opposed to adopting it).
    pub created: bool,
    /// Whether the account was seen to exist.
    pub confirmed: bool,
    /// Security follow-ups the operator still owes the account.
    pub follow_ups: Vec<String>,
    pub object: ObjectState,
}

/// One object declaring the email.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Declared {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// `Status/Reason` of its Ready condition, as the object says (not evidence of anything).
    pub ready: String,
    /// Whether the ownership record names this object.
    pub owner: bool,
}

/// A ban share about the account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BanView {
    /// `namespace/name` of the UserBan (`LibreChat` for a ban LibreChat itself wrote).
    pub owner: String,
    pub owner_uid: String,
    /// RFC 3339; `None`: permanent.
    pub until: Option<String>,
    pub in_force: bool,
}

/// A LibreChat group that lists the account as a member.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupView {
    pub name: String,
    /// `local`, or the directory it is synced from (`entra`).
    pub source: String,
    /// `namespace/name` of the LibreChatGroup whose record holds the group, if one does.
    pub managed_by: Option<String>,
    /// Whether that object added this member (deleting it, or dropping the member from its
    /// spec, takes the membership back; a membership added in LibreChat stays).
    pub member_by_operator: bool,
}

/// Everything `whois` says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WhoisReport {
    pub instance: String,
    pub email: String,
    pub account: Option<Account>,
    /// Whether an ownership record exists for the email or the account.
    pub managed: bool,
    pub owner: Option<OwnerView>,
    pub bans: Vec<BanView>,
    pub invites: Vec<InviteRecordOf>,
    pub groups: Vec<GroupView>,
    pub declared_by: Vec<Declared>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl WhoisReport {
    /// Whether anything at all is known of the email in the database.
    pub fn found(&self) -> bool {
        self.account.is_some() || self.owner.is_some()
    }
}

/// Looks the email up in the instance's database and in the cluster.
pub async fn gather(
    cluster: &Cluster,
    instance: Option<&str>,
    email: &str,
    reach: &Reach,
) -> Result<WhoisReport, PluginError> {
    let instance = cluster.instance(&cluster.namespace, instance).await?;
    let email = normalize_email(email);
    let (_client, store) = cluster.store(&instance, reach).await?;

    let account = store.find_user_by_email(&email).await?;
    let mut claim = store.find_claim(&email).await?;
    if claim.is_none() {
        if let Some(user) = &account {
            claim = store.find_claim_of_user(user.id).await?;
        }
    }
    let mut subjects = vec![email_subject(&email)];
    if let Some(c) = &claim {
        subjects.push(owner_subject(&c.owner.uid));
    }
    let user_hex = account.as_ref().map(|u| u.id.to_hex());
    let shares = usage::ban_shares_about(&store, user_hex.as_deref(), &subjects).await?;
    let invites = usage::invite_records_for(&store, &email).await?;
    let groups = match &account {
        Some(user) => group_views(&store, user).await?,
        None => Vec::new(),
    };

    let owner = match &claim {
        Some(c) => Some(owner_view(cluster, c).await?),
        None => None,
    };
    let mut notes = Vec::new();
    let declarations = cluster
        .declarations(&Namespaces::admitted_by(&instance), &mut notes)
        .await?;
    let key = instance_key(&instance);
    let owner_uid = claim.as_ref().map(|c| c.owner.uid.as_str());
    let declared_by = declarations
        .iter()
        .filter(|d| d.instance == key && d.email.as_deref() == Some(email.as_str()))
        .map(|d| Declared {
            kind: d.kind.to_string(),
            namespace: d.namespace.clone(),
            name: d.name.clone(),
            uid: d.uid.clone(),
            ready: d
                .ready
                .as_ref()
                .map(|c| format!("{}/{}", c.status, c.reason))
                .unwrap_or_else(|| "-".into()),
            owner: owner_uid == Some(d.uid.as_str()),
        })
        .collect();
    notes.extend(discrepancies(&email, account.as_ref(), claim.as_ref()));
    Ok(WhoisReport {
        instance: key,
        email,
        account: account.as_ref().map(Account::of),
        managed: claim.is_some(),
        owner,
        bans: ban_views(&shares, jiff::Timestamp::now().as_millisecond()),
        invites,
        groups,
        declared_by,
        notes,
    })
}

/// The groups listing `user`, each with the LibreChatGroup that holds it, read from the
/// operator's access record (the group's name and `_id` must both match the record).
async fn group_views(store: &Store, user: &StoredUser) -> Result<Vec<GroupView>, PluginError> {
    let member = member_id(user);
    let mut views = Vec::new();
    for group in store.groups_with_member(&member).await? {
        let record = store
            .access_record(&group_key(&group.fields.name))
            .await?
            .filter(|r| r.target == Some(group.id));
        views.push(GroupView {
            name: group.fields.name,
            source: group.source,
            managed_by: record
                .as_ref()
                .map(|r| format!("{}/{}", r.owner.namespace, r.owner.name)),
            member_by_operator: record.is_some_and(|r| r.members.contains(&member)),
        });
    }
    views.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(views)
}

async fn owner_view(cluster: &Cluster, claim: &Claim) -> Result<OwnerView, PluginError> {
    let o = &claim.owner;
    let object = match cluster.uid_of(&o.kind, &o.namespace, &o.name).await {
        Ok(Some(Some(uid))) if uid == o.uid => ObjectState::Exists,
        Ok(Some(Some(uid))) => ObjectState::Replaced { uid },
        Ok(Some(None)) => ObjectState::Gone,
        Ok(None) => ObjectState::Unknown {
            why: format!("unknown kind '{}'", o.kind),
        },
        Err(PluginError::Forbidden { what, .. }) => ObjectState::Unknown {
            why: format!("you may not {what}"),
        },
        Err(e) => return Err(e),
    };
    Ok(OwnerView {
        kind: o.kind.clone(),
        namespace: o.namespace.clone(),
        name: o.name.clone(),
        uid: o.uid.clone(),
        record_email: claim.email.clone(),
        account_id: claim.user_id.map(|id| id.to_hex()),
        created: claim.created,
        confirmed: claim.confirmed,
        follow_ups: claim.follow_ups.iter().map(|f| format!("{f:?}")).collect(),
        object,
    })
}

/// What does not add up between the account and its ownership record.
pub fn discrepancies(
    email: &str,
    account: Option<&StoredUser>,
    claim: Option<&Claim>,
) -> Vec<String> {
    let mut notes = Vec::new();
    match (account, claim) {
        (Some(user), Some(c)) => {
            if c.email != email {
                notes.push(format!("the ownership record is kept under '{}': the account's email was changed outside the operator, whose object reports IdentityChanged", c.email));
            }
            if let Some(id) = c.user_id.filter(|id| *id != user.id) {
                notes.push(format!("the ownership record names account {}, not this one: the owner's account was deleted and the email registered again outside the operator", id.to_hex()));
            }
        }
        (None, Some(c)) => notes.push(format!(
            "{} {}/{} holds the email, but no account has it yet (not created yet, or deleted in LibreChat)",
            c.owner.kind, c.owner.namespace, c.owner.name
        )),
        _ => {}
    }
    notes
}

/// The ban shares as shown, LibreChat's own ban named as such.
pub fn ban_views(shares: &[BanShareRecord], now_ms: i64) -> Vec<BanView> {
    shares
        .iter()
        .map(|s| BanView {
            owner: if s.owner_uid == "librechat" {
                "LibreChat".into()
            } else {
                s.owner.clone()
            },
            owner_uid: s.owner_uid.clone(),
            until: s.end_ms.map(|ms| {
                jiff::Timestamp::from_millisecond(ms)
                    .map(|t| t.to_string())
                    .unwrap_or_default()
            }),
            in_force: s.end_ms.is_none_or(|end| end > now_ms),
        })
        .collect()
}

pub fn render_text(r: &WhoisReport) -> String {
    let mut out = format!("Instance:   {}\nEmail:      {}\n", r.instance, r.email);
    match &r.account {
        Some(a) => out.push_str(&format!(
            "Account:    {} (role {}, provider {}, name {}, email {})\n",
            a.id,
            a.role.as_deref().unwrap_or("-"),
            a.provider.as_deref().unwrap_or("-"),
            a.name
                .as_deref()
                .map(|n| format!("'{n}'"))
                .unwrap_or("-".into()),
            if a.email_verified {
                "verified"
            } else {
                "not verified"
            },
        )),
        None => out.push_str("Account:    none: no LibreChat account has this email\n"),
    }
    match &r.owner {
        Some(o) => {
            let state = match &o.object {
                ObjectState::Exists => "the object exists".to_string(),
                ObjectState::Gone => "the object no longer exists: a LibreChatUser of the same namespace and name takes the account over; any other needs spec.adopt: true".to_string(),
                ObjectState::Replaced { uid } => format!("that object no longer exists; one of the same name was created again (uid {uid}) and takes the account over"),
                ObjectState::Unknown { why } => format!("cannot check that the object exists: {why}"),
            };
            out.push_str(&format!(
                "Owner:      {} {}/{} (uid {})\n            {}\n            account {} by the operator{}\n",
                o.kind,
                o.namespace,
                o.name,
                o.uid,
                state,
                if o.created { "created" } else { "adopted" },
                if o.follow_ups.is_empty() {
                    String::new()
                } else {
                    format!("; owed: {}", o.follow_ups.join(", "))
                }
            ));
        }
        None if r.account.is_some() => out.push_str(
            "Owner:      not managed: no ownership record, so no object owns this account\n",
        ),
        None => out.push_str("Owner:      not managed: no ownership record for this email\n"),
    }
    let mut bans = Table::new(&["BY", "UID", "UNTIL", "IN FORCE"]);
    for b in &r.bans {
        bans.row([
            b.owner.clone(),
            b.owner_uid.clone(),
            b.until.clone().unwrap_or_else(|| "permanent".into()),
            if b.in_force { "yes" } else { "no" }.to_string(),
        ]);
    }
    out.push_str(&bans.section("Bans"));
    let mut invites = Table::new(&["BY", "UID"]);
    for i in &r.invites {
        invites.row([&i.owner, &i.uid]);
    }
    out.push_str(&invites.section("Invites"));
    let mut groups = Table::new(&["NAME", "SOURCE", "MANAGED BY", "MEMBER ADDED BY"]);
    for g in &r.groups {
        let added_by = if g.member_by_operator {
            "the operator"
        } else {
            "LibreChat"
        };
        groups.row([
            g.name.clone(),
            g.source.clone(),
            g.managed_by.clone().unwrap_or_else(|| "-".into()),
            added_by.to_string(),
        ]);
    }
    out.push_str(&groups.section("Groups"));
    let mut declared = Table::new(&["KIND", "NAMESPACE", "NAME", "UID", "READY", "OWNER"]);
    for d in &r.declared_by {
        declared.row([
            d.kind.clone(),
            d.namespace.clone(),
            d.name.clone(),
            d.uid.clone(),
            d.ready.clone(),
            if d.owner { "yes" } else { "no" }.to_string(),
        ]);
    }
    out.push_str(
        &declared.section("Declared by (spec.email; a cross-check, not proof of ownership)"),
    );
    for note in &r.notes {
        out.push_str(&format!("note: {note}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::librechat::ownership::Owner;
    use mongodb::bson::oid::ObjectId;

    fn user(email: &str) -> StoredUser {
        StoredUser {
            id: ObjectId::new(),
            email: email.into(),
            name: Some("Ann".into()),
            username: None,
            role: Some("USER".into()),
            provider: Some("local".into()),
            email_verified: true,
            password_hash: Some("$2a$10$secret".into()),
            id_on_the_source: None,
            has_expiry: false,
            terms_accepted: false,
            terms_accepted_at: None,
        }
    }

    fn claim(email: &str, user_id: Option<ObjectId>) -> Claim {
        Claim {
            email: email.into(),
            owner: Owner {
                kind: "LibreChatUser".into(),
                namespace: "ns".into(),
                name: "ann".into(),
                uid: "u-1".into(),
            },
            user_id,
            confirmed: true,
            created: true,
            role_check: None,
            ..Claim::default()
        }
    }

    fn report(account: Option<&StoredUser>, owner: Option<OwnerView>) -> WhoisReport {
        WhoisReport {
            instance: "ns/lc".into(),
            email: "ann@example.com".into(),
            account: account.map(Account::of),
            managed: owner.is_some(),
            owner,
            bans: vec![],
            invites: vec![],
            groups: vec![],
            declared_by: vec![],
            notes: vec![],
        }
    }

    #[test]
    fn groups_say_who_holds_them_and_who_added_the_member() {
        let u = user("ann@example.com");
        let mut r = report(Some(&u), None);
        assert!(render_text(&r).contains("Groups:\n  none\n"));
        r.groups = vec![
            GroupView {
                name: "Team A".into(),
                source: "local".into(),
                managed_by: Some("team-ns/team".into()),
                member_by_operator: true,
            },
            GroupView {
                name: "Sales".into(),
                source: "entra".into(),
                managed_by: None,
                member_by_operator: false,
            },
        ];
        let text = render_text(&r);
        let row = |cells: &[&str]| {
            text.lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>() == cells)
        };
        assert!(
            row(&["Team", "A", "local", "team-ns/team", "the", "operator"]),
            "{text}"
        );
        assert!(row(&["Sales", "entra", "-", "LibreChat"]), "{text}");
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["groups"][0]["managedBy"], "team-ns/team");
        assert_eq!(json["groups"][1]["memberByOperator"], false);
    }

    #[test]
    fn an_unowned_account_is_not_managed_and_no_hash_is_shown() {
        let u = user("ann@example.com");
        let r = report(Some(&u), None);
        let text = render_text(&r);
        assert!(text.contains("not managed"), "{text}");
        assert!(text.contains(&u.id.to_hex()), "{text}");
        assert!(!text.contains("secret"), "{text}");
        assert!(!serde_json::to_string(&r).unwrap().contains("secret"));
        assert!(r.found());
        assert!(!report(None, None).found());
    }

    #[test]
    fn the_owner_is_named_with_its_uid_and_state() {
        let u = user("ann@example.com");
        let owner = OwnerView {
            kind: "LibreChatUser".into(),
            namespace: "ns".into(),
            name: "ann".into(),
            uid: "u-1".into(),
            record_email: "ann@example.com".into(),
            account_id: Some(u.id.to_hex()),
            created: true,
            confirmed: true,
            follow_ups: vec![],
            object: ObjectState::Gone,
        };
        let text = render_text(&report(Some(&u), Some(owner)));
        assert!(
            text.contains("Owner:      LibreChatUser ns/ann (uid u-1)"),
            "{text}"
        );
        assert!(text.contains("no longer exists"), "{text}");
        assert!(text.contains("created by the operator"), "{text}");
    }

    #[test]
    fn records_that_do_not_match_the_account_are_pointed_out() {
        let u = user("ann@example.com");
        assert!(discrepancies(&u.email, Some(&u), Some(&claim(&u.email, Some(u.id)))).is_empty());
        let moved = discrepancies(
            &u.email,
            Some(&u),
            Some(&claim("old@example.com", Some(u.id))),
        );
        assert!(moved[0].contains("old@example.com"));
        let replaced = discrepancies(
            &u.email,
            Some(&u),
            Some(&claim(&u.email, Some(ObjectId::new()))),
        );
        assert!(replaced[0].contains("not this one"));
        let waiting = discrepancies(&u.email, None, Some(&claim(&u.email, None)));
        assert!(waiting[0].contains("no account has it yet"));
    }

    #[test]
    fn bans_in_force_and_librechat_own() {
        let share = |uid: &str, end: Option<i64>| BanShareRecord {
            key: "BANS:x".into(),
            owner_uid: uid.into(),
            owner: "ns/ban".into(),
            end_ms: end,
            subject: None,
        };
        let views = ban_views(
            &[
                share("u", Some(1_000)),
                share("u", Some(5_000)),
                share("librechat", None),
            ],
            2_000,
        );
        assert_eq!(
            views.iter().map(|v| v.in_force).collect::<Vec<_>>(),
            [false, true, true]
        );
        assert_eq!(views[2].owner, "LibreChat");
        assert_eq!(views[2].until, None);
        assert_eq!(views[0].until.as_deref(), Some("1970-01-01T00:00:01Z"));
    }
}
