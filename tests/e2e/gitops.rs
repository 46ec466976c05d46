//! examples/gitops as a GitOps tool applies it: the production overlay through `kubectl apply
//! -k` (server-side schema validation), after the URI Secret the base references and does not
//! commit; then the operator makes the instance and every account Ready.

use std::process::Command;

use crate::support::*;

#[tokio::test]
async fn the_gitops_overlay_applies_and_becomes_ready() {
    let mut w = World::new("gitops").await;
    // The Secret the README says to create out of band, with this world's servers.
    w.secret(
        "librechat-stores",
        &[
            ("mongo-uri", &w.mongo_uri()),
            ("redis-uri", &env("REDIS_URL")),
        ],
    )
    .await;
    // A one-line overlay putting the tree into this world's namespace.
    let dir = project_dir().join("target/e2e-gitops").join(&w.ns);
    std::fs::create_dir_all(&dir).unwrap();
    let depth = dir
        .strip_prefix(project_dir())
        .unwrap()
        .components()
        .count();
    let overlay = format!("{}examples/gitops/overlays/production", "../".repeat(depth));
    std::fs::write(
        dir.join("kustomization.yaml"),
        format!("namespace: {}\nresources:\n  - {overlay}\n", w.ns),
    )
    .unwrap();
    let out = Command::new("kubectl")
        .arg("apply")
        .arg("-k")
        .arg(&dir)
        .output()
        .expect("kubectl must run");
    assert!(
        out.status.success(),
        "kubectl apply -k: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    w.start_operator();
    let instance = w
        .wait_condition("librechatinstances", "librechat", "Ready", "True", None)
        .await;
    assert_eq!(
        instance
            .pointer("/spec/resyncPeriod")
            .and_then(|v| v.as_str()),
        Some("15m"),
        "the overlay's patch"
    );
    for user in ["alice", "bob", "ops-admin", "erin"] {
        w.wait_condition("librechatusers", user, "Ready", "True", None)
            .await;
    }
    assert!(
        w.find_user("erin@example.com").await.is_some(),
        "the overlay's user"
    );
    w.wait_condition("userbans", "bob-cooldown", "Ready", "True", None)
        .await;
    w.wait_condition("userinvites", "dana", "Ready", "True", None)
        .await;
}
