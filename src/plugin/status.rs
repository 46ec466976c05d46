//! `kubectl librechat status`: an instance's reachability and counts from its status, the
//! objects that point at it grouped by their Ready reason, the deletions it or they are stuck
//! in, and the latest Warning events about any of them.

use std::collections::{BTreeMap, HashSet};

use k8s_openapi::api::core::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::ResourceExt;
use serde::Serialize;

use super::cluster::{instance_key, Cluster, Declaration, Namespaces};
use super::error::PluginError;
use super::table::{age, Table};
use crate::api::common::{condition, find_condition, reason};
use crate::api::instance::InstanceStats;
use crate::api::LibreChatInstance;

/// Which instances to report.
pub struct Selection {
    pub all_namespaces: bool,
    pub instance: Option<String>,
    /// How many Warning events to show per instance.
    pub events: usize,
}

/// One condition as shown.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConditionView {
    pub status: String,
    pub reason: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
}

impl ConditionView {
    fn of(c: &Condition) -> Self {
        ConditionView {
            status: c.status.clone(),
            reason: c.reason.clone(),
            message: c.message.clone(),
            since: Some(c.last_transition_time.0.to_string()),
        }
    }
}

/// How many objects of one kind have one Ready status and reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReasonCount {
    pub kind: String,
    pub ready: String,
    pub reason: String,
    pub count: usize,
}

/// An object being deleted that cannot finish yet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockedDeletion {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub reason: String,
    pub message: String,
}

/// A Warning event about the instance or an object that points at it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Warning {
    /// RFC 3339.
    pub last_seen: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub reason: String,
    pub message: String,
    pub count: i32,
}

/// Everything `status` says about one instance.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceReport {
    pub namespace: String,
    pub name: String,
    pub ready: Option<ConditionView>,
    pub mongo_reachable: Option<ConditionView>,
    pub redis_reachable: Option<ConditionView>,
    pub stats: Option<InstanceStats>,
    /// The namespaces whose objects may point at the instance (`*`: all).
    pub admitted_namespaces: Vec<String>,
    pub objects: Vec<ReasonCount>,
    pub blocked_deletions: Vec<BlockedDeletion>,
    pub warnings: Vec<Warning>,
    /// What could not be looked at (a namespace the user may not list, say).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// Gathers the report of every selected instance.
pub async fn gather(
    cluster: &Cluster,
    selection: &Selection,
) -> Result<Vec<InstanceReport>, PluginError> {
    let instances = match (&selection.instance, selection.all_namespaces) {
        (Some(name), _) => vec![cluster.instance(&cluster.namespace, Some(name)).await?],
        (None, true) => cluster.instances(None).await?,
        (None, false) => cluster.instances(Some(&cluster.namespace)).await?,
    };
    if instances.is_empty() {
        return Ok(Vec::new());
    }
    // One listing for all instances: the union of the namespaces they admit.
    let namespaces = instances
        .iter()
        .map(Namespaces::admitted_by)
        .reduce(Namespaces::union)
        .unwrap_or(Namespaces::All);
    let mut notes = Vec::new();
    let declarations = cluster.declarations(&namespaces, &mut notes).await?;
    let events = if selection.events > 0 {
        cluster.warnings(&namespaces, &mut notes).await?
    } else {
        Vec::new()
    };
    Ok(instances
        .iter()
        .map(|instance| {
            let admitted = Namespaces::admitted_by(instance);
            let key = instance_key(instance);
            let pointing: Vec<&Declaration> = declarations
                .iter()
                .filter(|d| d.instance == key && admitted.contains(&d.namespace))
                .collect();
            let mut report = report_of(instance, &pointing, &events, selection.events);
            report.admitted_namespaces = admitted.names();
            report.notes = notes.clone();
            report
        })
        .collect())
}

/// The report of one instance from what was listed (pure: the unit tests build it by hand).
pub fn report_of(
    instance: &LibreChatInstance,
    pointing: &[&Declaration],
    events: &[Event],
    max_events: usize,
) -> InstanceReport {
    let conditions = instance.conditions();
    let view = |type_| find_condition(conditions, type_).map(ConditionView::of);
    let mut blocked = Vec::new();
    if instance.metadata.deletion_timestamp.is_some() {
        let ready = find_condition(conditions, condition::READY);
        blocked.push(BlockedDeletion {
            kind: "LibreChatInstance".into(),
            namespace: instance.namespace().unwrap_or_default(),
            name: instance.name_any(),
            reason: ready.map(|c| c.reason.clone()).unwrap_or_default(),
            message: ready.map(|c| c.message.clone()).unwrap_or_default(),
        });
    }
    blocked.extend(blocked_deletions(pointing));
    let mut about: HashSet<&str> = pointing.iter().map(|d| d.uid.as_str()).collect();
    let instance_uid = instance.uid().unwrap_or_default();
    about.insert(&instance_uid);
    InstanceReport {
        namespace: instance.namespace().unwrap_or_default(),
        name: instance.name_any(),
        ready: view(condition::READY),
        mongo_reachable: view(condition::MONGO_REACHABLE),
        redis_reachable: view(condition::REDIS_REACHABLE),
        stats: instance.status.as_ref().and_then(|s| s.stats.clone()),
        admitted_namespaces: Vec::new(),
        objects: group_by_reason(pointing),
        blocked_deletions: blocked,
        warnings: latest_warnings(events, &about, max_events),
        notes: Vec::new(),
    }
}

/// Kinds in the order they are shown.
const KINDS: [&str; 5] = [
    "LibreChatUser",
    "UserBan",
    "UserInvite",
    "LibreChatGroup",
    "LibreChatRole",
];
/// The reason shown for an object the operator has not reported on yet.
const NO_STATUS: &str = "(no status yet)";

/// Objects counted per kind, Ready status and Ready reason; kinds in [`KINDS`] order, then
/// Ready before not Ready, then by reason.
pub fn group_by_reason(pointing: &[&Declaration]) -> Vec<ReasonCount> {
    let mut counts: BTreeMap<(usize, u8, String, String), usize> = BTreeMap::new();
    for d in pointing {
        let kind = KINDS
            .iter()
            .position(|k| *k == d.kind)
            .unwrap_or(KINDS.len());
        let (ready, reason) = match &d.ready {
            Some(c) => (c.status.clone(), c.reason.clone()),
            None => ("Unknown".to_string(), NO_STATUS.to_string()),
        };
        let rank = match ready.as_str() {
            "True" => 0,
            "False" => 1,
            _ => 2,
        };
        *counts.entry((kind, rank, ready, reason)).or_default() += 1;
    }
    counts
        .into_iter()
        .map(|((kind, _, ready, reason), count)| ReasonCount {
            kind: KINDS.get(kind).copied().unwrap_or("?").to_string(),
            ready,
            reason,
            count,
        })
        .collect()
}

/// Objects with a deletion timestamp that the operator is holding: their Ready is not True,
/// or a condition says the deletion is blocked.
pub fn blocked_deletions(pointing: &[&Declaration]) -> Vec<BlockedDeletion> {
    let blocking = [reason::DELETE_BLOCKED, reason::DEPENDENTS_REMAIN];
    let mut out: Vec<BlockedDeletion> = pointing
        .iter()
        .filter(|d| d.deleting)
        .filter_map(|d| {
            let said = d
                .conditions
                .iter()
                .find(|c| blocking.contains(&c.reason.as_str()))
                .or(d.ready.as_ref().filter(|c| c.status != "True"))?;
            Some(BlockedDeletion {
                kind: d.kind.to_string(),
                namespace: d.namespace.clone(),
                name: d.name.clone(),
                reason: said.reason.clone(),
                message: said.message.clone(),
            })
        })
        .collect();
    out.sort_by(|a, b| (&a.kind, &a.namespace, &a.name).cmp(&(&b.kind, &b.namespace, &b.name)));
    out
}

/// When an event was last seen: the newest of the times core/v1 and events.k8s.io/v1
/// writers fill in.
fn last_seen(e: &Event) -> Option<jiff::Timestamp> {
    [
        e.series
            .as_ref()
            .and_then(|s| s.last_observed_time.as_ref())
            .map(|t| t.0),
        e.last_timestamp.as_ref().map(|t| t.0),
        e.event_time.as_ref().map(|t| t.0),
        e.first_timestamp.as_ref().map(|t| t.0),
        e.metadata.creation_timestamp.as_ref().map(|t| t.0),
    ]
    .into_iter()
    .flatten()
    .max()
}

/// The `max` newest Warning events about an object whose uid is in `about`, newest first.
pub fn latest_warnings(events: &[Event], about: &HashSet<&str>, max: usize) -> Vec<Warning> {
    let mut chosen: Vec<(jiff::Timestamp, Warning)> = events
        .iter()
        .filter(|e| e.type_.as_deref() == Some("Warning"))
        .filter(|e| {
            e.involved_object
                .uid
                .as_deref()
                .is_some_and(|u| about.contains(u))
        })
        .map(|e| {
            let seen = last_seen(e).unwrap_or_default();
            let object = &e.involved_object;
            let count = e
                .series
                .as_ref()
                .and_then(|s| s.count)
                .or(e.count)
                .unwrap_or(1);
            (
                seen,
                Warning {
                    last_seen: seen.to_string(),
                    kind: object.kind.clone().unwrap_or_default(),
                    namespace: object.namespace.clone().unwrap_or_default(),
                    name: object.name.clone().unwrap_or_default(),
                    reason: e.reason.clone().unwrap_or_default(),
                    message: e.message.clone().unwrap_or_default(),
                    count,
                },
            )
        })
        .collect();
    chosen.sort_by_key(|c| std::cmp::Reverse(c.0));
    chosen.into_iter().take(max).map(|(_, w)| w).collect()
}

/// The reports as aligned text, one block per instance.
pub fn render_text(reports: &[InstanceReport], now: jiff::Timestamp) -> String {
    let blocks: Vec<String> = reports.iter().map(|r| render_one(r, now)).collect();
    blocks.join("\n")
}

fn render_one(r: &InstanceReport, now: jiff::Timestamp) -> String {
    let mut out = format!("Instance:   {}/{}\n", r.namespace, r.name);
    let mut health = Table::new(&["CONDITION", "STATUS", "REASON", "MESSAGE"]);
    for (name, c) in [
        ("Ready", &r.ready),
        ("MongoReachable", &r.mongo_reachable),
        ("RedisReachable", &r.redis_reachable),
    ] {
        match c {
            Some(c) => health.row([name, &c.status, &c.reason, &c.message]),
            None => health.row([name, "Unknown", NO_STATUS, ""]),
        }
    }
    match &r.stats {
        Some(s) => out.push_str(&format!(
            "Stats:      {} users, {} managed, {} verified, {} active bans, {} pending invites{}\n",
            s.users,
            s.managed_users,
            s.verified_users,
            s.active_bans,
            s.pending_invites,
            s.updated_at
                .as_deref()
                .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                .map(|t| format!(" (counted {} ago)", age(t, now)))
                .unwrap_or_default()
        )),
        None => out.push_str("Stats:      not counted yet\n"),
    }
    out.push_str(&format!(
        "Admits:     {}\n\n",
        r.admitted_namespaces.join(", ")
    ));
    out.push_str(&health.render());

    let mut objects = Table::new(&["KIND", "READY", "REASON", "COUNT"]);
    for o in &r.objects {
        objects.row([
            o.kind.clone(),
            o.ready.clone(),
            o.reason.clone(),
            o.count.to_string(),
        ]);
    }
    out.push_str(&objects.section("Objects pointing at it"));

    let mut blocked = Table::new(&["KIND", "NAMESPACE", "NAME", "REASON", "MESSAGE"]);
    for b in &r.blocked_deletions {
        blocked.row([&b.kind, &b.namespace, &b.name, &b.reason, &b.message]);
    }
    out.push_str(&blocked.section("Blocked deletions"));

    let mut warnings = Table::new(&["LAST SEEN", "OBJECT", "REASON", "COUNT", "MESSAGE"]);
    for w in &r.warnings {
        let seen = w
            .last_seen
            .parse::<jiff::Timestamp>()
            .map(|t| age(t, now))
            .unwrap_or_default();
        warnings.row([
            seen,
            format!("{}/{}/{}", w.kind, w.namespace, w.name),
            w.reason.clone(),
            w.count.to_string(),
            w.message.clone(),
        ]);
    }
    out.push_str(&warnings.section("Recent Warning events"));
    for note in &r.notes {
        out.push_str(&format!("note: {note}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ObjectReference;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn cond(type_: &str, status: &str, reason: &str) -> Condition {
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message: format!("{reason} message"),
            observed_generation: Some(1),
            last_transition_time: Time(jiff::Timestamp::UNIX_EPOCH),
        }
    }

    fn decl(kind: &'static str, name: &str, ready: Option<(&str, &str)>) -> Declaration {
        let conditions: Vec<Condition> = ready
            .map(|(s, r)| vec![cond("Ready", s, r)])
            .unwrap_or_default();
        Declaration {
            kind,
            namespace: "ns".into(),
            name: name.into(),
            uid: format!("uid-{name}"),
            email: None,
            instance: "ns/lc".into(),
            ready: conditions.first().cloned(),
            conditions,
            deleting: false,
        }
    }

    #[test]
    fn objects_are_counted_per_kind_and_reason() {
        let all = [
            decl("UserInvite", "i", Some(("True", "Reconciled"))),
            decl("LibreChatUser", "a", Some(("True", "Reconciled"))),
            decl("LibreChatUser", "b", Some(("False", "Conflict"))),
            decl("LibreChatUser", "c", Some(("True", "Reconciled"))),
            decl("LibreChatUser", "d", None),
            decl("UserBan", "x", Some(("False", "Conflict"))),
        ];
        let refs: Vec<&Declaration> = all.iter().collect();
        let got: Vec<(String, String, String, usize)> = group_by_reason(&refs)
            .into_iter()
            .map(|c| (c.kind, c.ready, c.reason, c.count))
            .collect();
        let want = [
            ("LibreChatUser", "True", "Reconciled", 2),
            ("LibreChatUser", "False", "Conflict", 1),
            ("LibreChatUser", "Unknown", NO_STATUS, 1),
            ("UserBan", "False", "Conflict", 1),
            ("UserInvite", "True", "Reconciled", 1),
        ];
        let want: Vec<(String, String, String, usize)> = want
            .iter()
            .map(|(k, s, r, n)| (k.to_string(), s.to_string(), r.to_string(), *n))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn only_held_deletions_are_blocked() {
        let mut held = decl("UserBan", "held", Some(("False", "DeleteBlocked")));
        held.deleting = true;
        let mut passing = decl("LibreChatUser", "passing", Some(("True", "Reconciled")));
        passing.deleting = true;
        let mut other = decl("LibreChatUser", "other", Some(("True", "Reconciled")));
        other.deleting = true;
        other
            .conditions
            .push(cond("Reconciling", "True", "DeleteBlocked"));
        let live = decl("LibreChatUser", "live", Some(("False", "Conflict")));
        let refs = [&held, &passing, &other, &live];
        let names: Vec<(String, String)> = blocked_deletions(&refs)
            .into_iter()
            .map(|b| (b.name, b.reason))
            .collect();
        assert_eq!(
            names,
            [
                ("other".to_string(), "DeleteBlocked".to_string()),
                ("held".to_string(), "DeleteBlocked".to_string())
            ]
        );
    }

    fn event(uid: &str, name: &str, type_: &str, reason: &str, at: i64) -> Event {
        Event {
            type_: Some(type_.into()),
            reason: Some(reason.into()),
            message: Some(format!("{reason} happened")),
            involved_object: ObjectReference {
                uid: Some(uid.into()),
                kind: Some("LibreChatUser".into()),
                namespace: Some("ns".into()),
                name: Some(name.into()),
                ..Default::default()
            },
            last_timestamp: Some(Time(jiff::Timestamp::from_second(at).unwrap())),
            ..Default::default()
        }
    }

    #[test]
    fn the_newest_warnings_about_the_objects_come_first() {
        let events = [
            event("u1", "a", "Warning", "Old", 100),
            event("u2", "b", "Warning", "New", 300),
            event("u1", "a", "Normal", "Fine", 400),
            event("zz", "elsewhere", "Warning", "NotOurs", 500),
            event("u1", "a", "Warning", "Middle", 200),
        ];
        let about: HashSet<&str> = ["u1", "u2"].into_iter().collect();
        let reasons: Vec<String> = latest_warnings(&events, &about, 2)
            .into_iter()
            .map(|w| w.reason)
            .collect();
        assert_eq!(reasons, ["New", "Middle"]);
    }

    #[test]
    fn the_text_report_names_reachability_reasons_and_counts() {
        let mut instance = LibreChatInstance::new("lc", Default::default());
        instance.metadata.namespace = Some("ns".into());
        instance.metadata.uid = Some("uid-lc".into());
        instance.status = Some(crate::api::LibreChatInstanceStatus {
            conditions: vec![
                cond("Ready", "True", "Reconciled"),
                cond("MongoReachable", "True", "Reachable"),
                cond("RedisReachable", "False", "Unreachable"),
            ],
            stats: Some(InstanceStats {
                users: 4,
                managed_users: 2,
                ..Default::default()
            }),
            ..Default::default()
        });
        let user = decl("LibreChatUser", "b", Some(("False", "Conflict")));
        let events = [event("uid-lc", "lc", "Warning", "Unreachable", 10)];
        let mut report = report_of(&instance, &[&user], &events, 5);
        report.admitted_namespaces = vec!["ns".into()];
        let text = render_text(&[report.clone()], jiff::Timestamp::from_second(70).unwrap());
        assert!(text.contains("Instance:   ns/lc"), "{text}");
        assert!(
            text.contains("MongoReachable   True     Reachable"),
            "{text}"
        );
        assert!(
            text.contains("RedisReachable   False    Unreachable"),
            "{text}"
        );
        assert!(text.contains("4 users, 2 managed"), "{text}");
        assert!(
            text.contains("LibreChatUser   False   Conflict   1"),
            "{text}"
        );
        assert!(
            text.lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>()
                    == [
                        "60s",
                        "LibreChatUser/ns/lc",
                        "Unreachable",
                        "1",
                        "Unreachable",
                        "happened"
                    ]),
            "{text}"
        );
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["mongoReachable"]["status"], "True");
        assert_eq!(json["objects"][0]["reason"], "Conflict");
    }
}
