//! What the people who run LibreChat read back: the audit trail of every change, the deletion
//! guard that stops a pruned folder from erasing a deployment, and kubectl's columns.

use std::process::Command;

use mongodb::bson::doc;
use serde_json::{json, Value};

use crate::support::*;

fn user_spec(email: &str, policy: &str) -> Value {
    json!({ "instanceRef": { "name": "lc" }, "email": email, "deletionPolicy": policy })
}

/// The audit lines of the operator's JSON log.
fn audit_lines(log: &str) -> Vec<Value> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["target"] == "librechat_operator::audit")
        .collect()
}

fn find_line<'a>(lines: &'a [Value], action: &str, object: &str) -> Option<&'a Value> {
    lines
        .iter()
        .find(|l| l["action"] == action && l["object_name"] == object)
}

#[tokio::test]
async fn every_change_leaves_one_json_audit_line_and_no_secret() {
    let mut w = World::new("audit").await;
    w.start_operator_with_env(&[("LOG_FORMAT", "json")]);
    w.ready_instance("lc", json!({})).await;
    w.secret("pw", &[("password", "Audit-Trail-Password-1")])
        .await;
    let mut spec = user_spec("audited@example.com", "Delete");
    spec["password"] = json!({ "secretRef": { "name": "pw", "key": "password" } });
    w.apply("LibreChatUser", "audited", spec).await;
    let user = w
        .wait_condition("librechatusers", "audited", "Ready", "True", None)
        .await;
    let id = user["status"]["userId"].as_str().unwrap().to_string();
    w.secret("pw", &[("password", "Audit-Trail-Password-2")])
        .await;
    w.wait_event("audited", "PasswordRotated").await;
    w.apply(
        "UserBan",
        "b",
        json!({ "instanceRef": { "name": "lc" }, "userRef": { "name": "audited" } }),
    )
    .await;
    w.wait_condition("userbans", "b", "Ready", "True", None)
        .await;
    w.delete("UserBan", "b").await;
    w.wait_gone("userbans", "b").await;
    w.delete("LibreChatUser", "audited").await;
    w.wait_gone("librechatusers", "audited").await;

    let lines = eventually("audit lines for the whole story", || async {
        let lines = audit_lines(&w.operator_log());
        ["Created", "PasswordRotated", "Deleted"]
            .iter()
            .all(|a| find_line(&lines, a, "audited").is_some())
            .then_some(lines)
    })
    .await;
    let instance = format!("{}/lc", w.ns);
    for action in ["Created", "PasswordRotated", "Deleted"] {
        let line = find_line(&lines, action, "audited").unwrap();
        assert_eq!(line["account"], id.as_str(), "{line}");
        assert_eq!(line["instance"], instance.as_str(), "{line}");
        assert_eq!(line["object_kind"], "LibreChatUser", "{line}");
        assert_eq!(line["object_namespace"], w.ns.as_str(), "{line}");
        assert_eq!(line["outcome"], "applied", "{line}");
        assert!(line["timestamp"].is_string(), "{line}");
        assert!(line["object_uid"].as_str().is_some_and(|u| !u.is_empty()));
    }
    for action in ["Banned", "Lifted"] {
        let line = find_line(&lines, action, "b")
            .unwrap_or_else(|| panic!("no {action} audit line in {lines:?}"));
        assert_eq!(line["account"], id.as_str(), "{line}");
        assert_eq!(line["object_kind"], "UserBan", "{line}");
    }
    let log = w.operator_log();
    assert!(
        !log.contains("Audit-Trail-Password"),
        "a password reached the log"
    );
    assert!(
        !log.contains("$2a$") && !log.contains("$2b$"),
        "a hash reached the log"
    );
    assert!(
        !log.contains(&w.mongo_uri()),
        "the MongoDB URI reached the log"
    );
}

/// A repeat of an event counts on the first one (its series); when that one is gone (expired
/// from the API server or deleted by someone), the repeat is recorded as a new event, not lost.
#[tokio::test]
async fn a_repeated_event_whose_first_is_gone_is_recorded_again() {
    use k8s_openapi::api::events::v1::Event;
    use kube::api::{Api, DeleteParams, ListParams};

    let mut w = World::new("audit-repeat").await;
    w.start_operator();
    w.ready_instance("lc", json!({})).await;
    w.secret("pw", &[("password", "Repeat-Event-Password-1")])
        .await;
    let mut spec = user_spec("repeat@example.com", "Delete");
    spec["password"] = json!({ "secretRef": { "name": "pw", "key": "password" } });
    w.apply("LibreChatUser", "rot", spec).await;
    w.wait_condition("librechatusers", "rot", "Ready", "True", None)
        .await;
    w.secret("pw", &[("password", "Repeat-Event-Password-2")])
        .await;
    w.wait_event("rot", "PasswordRotated").await;

    let events: Api<Event> = Api::namespaced(w.client.clone(), &w.ns);
    events
        .delete_collection(&DeleteParams::default(), &ListParams::default())
        .await
        .unwrap();
    eventually("the events to be gone", || async {
        w.event_reasons("rot").await.is_empty().then_some(())
    })
    .await;
    w.secret("pw", &[("password", "Repeat-Event-Password-3")])
        .await;
    w.wait_event("rot", "PasswordRotated").await;
}

#[tokio::test]
async fn a_pruned_folder_cannot_delete_more_accounts_per_hour_than_the_instance_allows() {
    let w = World::with_instance("guard", json!({ "deletionGuard": { "maxPerHour": 2 } })).await;
    let names = ["g1", "g2", "g3", "g4"];
    for name in names {
        let spec = user_spec(&format!("{name}@example.com"), "Delete");
        w.apply("LibreChatUser", name, spec).await;
    }
    for name in names {
        w.wait_condition("librechatusers", name, "Ready", "True", None)
            .await;
    }
    // The whole folder pruned at once, as a bad merge would.
    for name in names {
        w.delete("LibreChatUser", name).await;
    }
    let held = eventually("two deletions held by the guard", || async {
        let mut held = Vec::new();
        for name in names {
            let Some(obj) = w.get("librechatusers", name).await else {
                continue;
            };
            let ready = condition(&obj, "Ready")?;
            if ready.reason == "DeletionsRateLimited" {
                held.push((name, ready.message));
            }
        }
        (held.len() == 2).then_some(held)
    })
    .await;
    for name in names.iter().filter(|n| !held.iter().any(|(h, _)| h == *n)) {
        w.wait_gone("librechatusers", name).await;
    }
    let (_, message) = &held[0];
    assert!(message.contains("maxPerHour"), "{message}");
    assert!(message.contains("confirmedUntil"), "{message}");
    assert!(
        message.contains(&format!(
            "2 LibreChat accounts were deleted from namespace '{}' in the last hour",
            w.ns
        )),
        "the instance's namespace reads the count: {message}"
    );
    let remaining = w
        .users()
        .count_documents(doc! { "email": { "$in": ["g1@example.com", "g2@example.com", "g3@example.com", "g4@example.com"] } })
        .await
        .unwrap();
    assert_eq!(remaining, 2, "exactly the allowed two accounts are gone");
    let blocked = eventually("the blocked deletions in /metrics", || async {
        let (_, text) = http_get(w.http_port, "/metrics")?;
        text.contains("librechat_operator_deletions_blocked{kind=\"LibreChatUser\"} 2")
            .then_some(())
    })
    .await;
    assert_eq!(blocked, ());

    // An admin of the instance's namespace confirms the bulk deletion for a few minutes.
    let until = (jiff::Timestamp::now() + jiff::SignedDuration::from_secs(600)).to_string();
    w.apply_instance_of_stores(
        "lc",
        json!({ "deletionGuard": { "maxPerHour": 2, "confirmedUntil": until } }),
    )
    .await;
    for (name, _) in &held {
        w.wait_gone("librechatusers", name).await;
    }
    let left = w
        .users()
        .count_documents(doc! { "email": { "$regex": "^g[0-9]@example.com$" } })
        .await
        .unwrap();
    assert_eq!(left, 0);
}

#[tokio::test]
async fn kubectl_columns_show_the_role_the_account_has_and_why_an_object_waits() {
    let w = World::with_instance("columns", json!({})).await;
    w.apply(
        "LibreChatUser",
        "plain",
        user_spec("plain@example.com", "Retain"),
    )
    .await;
    w.apply(
        "LibreChatUser",
        "stray",
        json!({ "instanceRef": { "name": "nowhere" }, "email": "stray@example.com" }),
    )
    .await;
    w.apply(
        "UserBan",
        "pending",
        json!({ "instanceRef": { "name": "lc" }, "email": "later@example.com" }),
    )
    .await;
    w.wait_condition("librechatusers", "plain", "Ready", "True", None)
        .await;
    w.wait_condition("userbans", "pending", "Ready", "True", None)
        .await;
    w.wait_condition(
        "librechatusers",
        "stray",
        "Ready",
        "False",
        Some("InstanceNotFound"),
    )
    .await;
    let users = kubectl(&["get", "lcu", "-n", &w.ns, "-o", "wide"]);
    let plain = row(&users, "plain");
    assert!(plain.contains(" USER "), "ROLE from status:\n{users}");
    let stray = row(&users, "stray");
    assert!(stray.contains("InstanceNotFound"), "{users}");
    assert!(stray.contains("nowhere"), "the instance column:\n{users}");
    assert!(
        stray.contains("LibreChatInstance"),
        "the message column says what is wrong:\n{users}"
    );
    let header = users.lines().next().unwrap_or_default();
    for column in ["ROLE", "INSTANCE", "READY", "REASON", "MESSAGE"] {
        assert!(header.contains(column), "{column} missing: {header}");
    }
    let bans = kubectl(&["get", "lcban", "-n", &w.ns]);
    assert!(
        bans.lines()
            .next()
            .unwrap_or_default()
            .contains("CONDITION"),
        "{bans}"
    );
    assert!(row(&bans, "pending").contains("AwaitingAccount"), "{bans}");
    let instances = kubectl(&["get", "lci", "-n", &w.ns]);
    let lc = row(&instances, "lc");
    assert!(
        lc.matches("Reachable").count() >= 2,
        "MONGO and REDIS in the same form:\n{instances}"
    );
    let invites = kubectl(&["get", "lcinv", "-n", &w.ns]);
    assert!(!invites.contains("error"), "{invites}");
}

fn kubectl(args: &[&str]) -> String {
    let out = Command::new("kubectl")
        .args(args)
        .output()
        .expect("kubectl must run");
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn row<'a>(table: &'a str, name: &str) -> &'a str {
    table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no row {name} in\n{table}"))
}

#[tokio::test]
async fn deletions_that_start_together_after_a_restart_share_one_limit() {
    let mut w =
        World::with_instance("guard-rs", json!({ "deletionGuard": { "maxPerHour": 2 } })).await;
    let names = ["r1", "r2", "r3", "r4", "r5", "r6"];
    let emails: Vec<String> = names.iter().map(|n| format!("{n}@example.com")).collect();
    for (name, email) in names.iter().zip(&emails) {
        w.apply("LibreChatUser", name, user_spec(email, "Delete"))
            .await;
    }
    for name in names {
        w.wait_condition("librechatusers", name, "Ready", "True", None)
            .await;
    }
    // The folder is pruned while the operator is down: when it starts, every deletion is
    // reconciled at once, each connecting to the database on its own.
    w.stop_operator();
    for name in names {
        w.delete("LibreChatUser", name).await;
    }
    w.start_operator();
    let held = eventually("four deletions held by the guard", || async {
        let mut held = 0;
        for name in names {
            let Some(obj) = w.get("librechatusers", name).await else {
                continue;
            };
            held += usize::from(condition(&obj, "Ready")?.reason == "DeletionsRateLimited");
        }
        (held == 4).then_some(held)
    })
    .await;
    assert_eq!(held, 4);
    let gone = eventually("the two allowed deletions done", || async {
        let mut gone = 0;
        for name in names {
            gone += usize::from(w.get("librechatusers", name).await.is_none());
        }
        (gone >= 2).then_some(gone)
    })
    .await;
    assert_eq!(gone, 2);
    let remaining = w
        .users()
        .count_documents(doc! { "email": { "$in": emails } })
        .await
        .unwrap();
    assert_eq!(remaining, 4, "exactly the allowed two accounts are gone");
}
