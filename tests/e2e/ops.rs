//! Running it like any other operator: metrics, health, leader election, graceful shutdown.

use std::process::{Child, Stdio};

use k8s_openapi::api::coordination::v1::Lease;
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn metrics_and_health_endpoints() {
    let w = World::with_instance("ops-metrics", json!({})).await;
    w.secret("pw", &[("password", "Metrics-Password-1")]).await;
    w.apply("LibreChatUser", "m", json!({ "instanceRef": { "name": "lc" }, "email": "m@example.com", "password": { "secretRef": { "name": "pw", "key": "password" } } })).await;
    w.apply(
        "LibreChatUser",
        "lost",
        json!({ "instanceRef": { "name": "nowhere" }, "email": "lost@example.com" }),
    )
    .await;
    w.wait_condition("librechatusers", "m", "Ready", "True", None)
        .await;
    w.wait_condition(
        "librechatusers",
        "lost",
        "Ready",
        "False",
        Some("InstanceNotFound"),
    )
    .await;
    assert_eq!(http_get(w.http_port, "/healthz").map(|r| r.0), Some(200));
    let (code, body) = eventually("readiness", || async {
        http_get(w.http_port, "/readyz").filter(|r| r.0 == 200)
    })
    .await;
    assert_eq!(code, 200, "{body}");
    let (headers, metrics) = eventually("metrics", || async {
        let (_, headers, text) = http_get_with_headers(w.http_port, "/metrics")?;
        (text.contains("librechat_operator_managed_objects{kind=\"LibreChatUser\",ready=\"true\"} 1")
            && text.contains("librechat_operator_not_ready_objects{kind=\"LibreChatUser\",reason=\"InstanceNotFound\"} 1"))
        .then_some((headers, text))
    })
    .await;
    let content_type = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| v.as_str());
    assert_eq!(
        content_type,
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        "{headers:?}"
    );
    assert!(metrics.ends_with("# EOF\n"));
    for needle in [
        "librechat_operator_reconciles_total{kind=\"LibreChatUser\"}",
        "librechat_operator_reconcile_duration_seconds_bucket{le=",
        "librechat_operator_store_operations_total{store=\"mongo\",verb=\"insert\",outcome=\"success\"}",
        "librechat_operator_store_operations_total{store=\"redis\",verb=\"ping\",outcome=\"success\"}",
        "librechat_operator_bcrypt_hashes_total 1",
        "librechat_operator_managed_objects{kind=\"LibreChatInstance\",ready=\"true\"} 1",
        "# TYPE librechat_operator_reconcile_duration_seconds histogram",
        "librechat_operator_leader 1",
        &format!(
            "librechat_operator_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        ),
        "# TYPE librechat_operator_reconciles_in_flight gauge",
        "librechat_operator_reconciles_in_flight{kind=\"LibreChatUser\"} ",
        "librechat_operator_objects_in_backoff{kind=\"LibreChatUser\"} ",
        "librechat_operator_deletions_blocked{kind=\"LibreChatUser\"} 0",
        "# TYPE librechat_operator_store_operation_duration_seconds histogram",
        "librechat_operator_store_operation_duration_seconds_count{store=\"mongo\",verb=\"insert\"} ",
        "librechat_operator_store_operation_duration_seconds_count{store=\"redis\",verb=\"ping\"} ",
    ] {
        assert!(metrics.contains(needle), "{needle} missing from /metrics:\n{metrics}");
    }
    assert!(!metrics.contains("Metrics-Password-1"));

    // The operator's own requests to the API server are counted by verb and resource, and a
    // group and a ban naming the user by `userRef` read it from the caches: resync after
    // resync (the instance's resyncPeriod is 3s), no GET of a LibreChatUser.
    let requests = |verb: &str, resource: &str| {
        metric_value(
            w.http_port,
            &format!(
                "librechat_operator_api_requests_total{{verb=\"{verb}\",resource=\"{resource}\"}}"
            ),
        )
    };
    assert!(requests("list", "librechatusers") >= 1, "{metrics}");
    assert!(requests("patch", "librechatusers/status") >= 1, "{metrics}");
    w.apply(
        "LibreChatGroup",
        "crew",
        json!({ "instanceRef": { "name": "lc" }, "name": "Crew", "members": [{ "userRef": { "name": "m" } }] }),
    )
    .await;
    w.apply(
        "UserBan",
        "pause",
        json!({ "instanceRef": { "name": "lc" }, "userRef": { "name": "m" }, "reason": "metrics test" }),
    )
    .await;
    w.wait_condition("librechatgroups", "crew", "Ready", "True", None)
        .await;
    w.wait_condition("userbans", "pause", "Ready", "True", None)
        .await;
    let reconciled = |kind: &str| {
        metric_value(
            w.http_port,
            &format!("librechat_operator_reconciles_total{{kind=\"{kind}\"}}"),
        )
    };
    let (groups, bans) = (reconciled("LibreChatGroup"), reconciled("UserBan"));
    let gets = requests("get", "librechatusers");
    eventually("two resyncs of the group and the ban", || async {
        (reconciled("LibreChatGroup") >= groups + 2 && reconciled("UserBan") >= bans + 2)
            .then_some(())
    })
    .await;
    assert_eq!(requests("get", "librechatusers"), gets);
}

struct Replica {
    child: Child,
    port: u16,
    name: &'static str,
}

fn replica(w: &World, name: &'static str, lease: &str) -> Replica {
    let port = free_port();
    let log =
        std::fs::File::create(project_dir().join(format!("target/e2e-logs/{}-{name}.log", w.ns)))
            .unwrap();
    let child = operator_command(&port.to_string())
        .args([
            "--namespace",
            &w.ns,
            "--leader-elect",
            "--lease-name",
            lease,
            "--lease-namespace",
            &w.ns,
            // The chart's default: a shorter Lease can lapse on a loaded machine, and a
            // leader that cannot renew in time stops.
            "--lease-duration",
            "15s",
        ])
        .env("POD_NAME", name)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    Replica { child, port, name }
}

async fn holder(w: &World, lease: &str) -> Option<String> {
    let api: kube::Api<Lease> = kube::Api::namespaced(w.client.clone(), &w.ns);
    api.get_opt(lease)
        .await
        .ok()??
        .spec?
        .holder_identity
        .filter(|h| !h.is_empty())
}

fn reconciles(port: u16) -> u64 {
    let Some((_, text)) = http_get(port, "/metrics") else {
        return 0;
    };
    text.lines()
        .filter(|l| l.starts_with("librechat_operator_reconciles_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test]
async fn exactly_one_replica_leads_and_the_other_takes_over() {
    let w = World::new("ops-leader").await;
    let lease = "librechat-operator";
    let mut replicas = [
        replica(&w, "replica-a", lease),
        replica(&w, "replica-b", lease),
    ];
    w.ready_instance("lc", json!({})).await;
    let leader_name = eventually("a leader", || async { holder(&w, lease).await }).await;
    let (leader, standby): (Vec<_>, Vec<_>) =
        replicas.iter_mut().partition(|r| r.name == leader_name);
    let (leader, standby) = (
        leader.into_iter().next().unwrap(),
        standby.into_iter().next().unwrap(),
    );

    // Both answer /readyz; only the leader reconciles.
    let (_, body) = eventually("standby readiness", || async {
        http_get(standby.port, "/readyz").filter(|r| r.0 == 200)
    })
    .await;
    assert!(body.contains("standby"), "{body}");
    w.apply(
        "LibreChatUser",
        "one",
        json!({ "instanceRef": { "name": "lc" }, "email": "one@example.com" }),
    )
    .await;
    w.wait_condition("librechatusers", "one", "Ready", "True", None)
        .await;
    assert!(reconciles(leader.port) > 0);
    assert_eq!(reconciles(standby.port), 0, "a standby must not reconcile");
    let leads =
        |port| http_get(port, "/metrics").map(|(_, t)| t.contains("librechat_operator_leader 1\n"));
    assert_eq!(leads(leader.port), Some(true), "the leader's leader gauge");
    assert_eq!(
        leads(standby.port),
        Some(false),
        "the standby's leader gauge"
    );

    // The leader dies without releasing: the standby takes over once the Lease expires.
    leader.child.kill().unwrap();
    leader.child.wait().unwrap();
    let standby_name = standby.name.to_string();
    eventually("the standby to take the Lease", || async {
        (holder(&w, lease).await? == standby_name).then_some(())
    })
    .await;
    w.apply(
        "LibreChatUser",
        "two",
        json!({ "instanceRef": { "name": "lc" }, "email": "two@example.com" }),
    )
    .await;
    w.wait_condition("librechatusers", "two", "Ready", "True", None)
        .await;
    assert!(w.find_user("two@example.com").await.is_some());

    // SIGTERM: in-flight work finishes, the Lease is released, the process exits cleanly.
    let pid = standby.child.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = standby.child.wait().unwrap();
    assert!(
        status.success(),
        "SIGTERM must end the operator cleanly, got {status}"
    );
    assert_eq!(
        holder(&w, lease).await,
        None,
        "the Lease must be released on shutdown"
    );
}

/// The attack: a tenant patches the status of its group and role in a loop, so that each
/// write wakes a reconcile (reading MongoDB member by member, grant by grant) whose status
/// write wakes another, keeping the controllers' workers from the other teams' objects.
/// Status is no declaration: writing it wakes nothing.
#[tokio::test]
async fn status_churn_wakes_no_reconcile_of_a_group_a_role_or_a_ban() {
    use kube::api::{Patch, PatchParams};
    let w = World::with_instance("ops-churn", json!({})).await;
    let objects = [
        (
            "LibreChatGroup",
            "librechatgroups",
            "churn",
            json!({ "instanceRef": { "name": "lc" }, "name": "Churn" }),
        ),
        (
            "LibreChatRole",
            "librechatroles",
            "churn",
            json!({ "instanceRef": { "name": "lc" }, "name": "CHURN" }),
        ),
        (
            "UserBan",
            "userbans",
            "churn",
            json!({ "instanceRef": { "name": "lc" }, "ip": "203.0.113.9", "until": "2099-01-01T00:00:00Z" }),
        ),
    ];
    for (kind, plural, name, spec) in &objects {
        w.apply(kind, name, spec.clone()).await;
        w.wait_condition(plural, name, "Ready", "True", None).await;
    }
    let reconciled = |kind: &str| {
        metric_value(
            w.http_port,
            &format!("librechat_operator_reconciles_total{{kind=\"{kind}\"}}"),
        )
    };
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let before: Vec<u64> = objects.iter().map(|o| reconciled(o.0)).collect();
    for round in 0..25 {
        let churn = json!({ "status": { "observedGeneration": 1000 + round } });
        for (kind, _, name, _) in &objects {
            dynamic(&w.client, &w.ns, kind)
                .patch_status(name, &PatchParams::default(), &Patch::Merge(&churn))
                .await
                .unwrap();
        }
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    for ((kind, ..), before) in objects.iter().zip(before) {
        // The instance's resync (3s here) may fall inside the loop; fifty writes may not.
        let woken = reconciled(kind) - before;
        assert!(
            woken <= 3,
            "{kind}: {woken} reconciles for 25 status writes"
        );
    }
}
