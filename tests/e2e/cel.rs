//! The API server itself enforces the CRDs' CEL rules (`x-kubernetes-validations`): every
//! immutability and one-of rule in `crds/` rejects a bad create or update at admission, with
//! the rule's own message, and the good variants are admitted. The cases are the ones
//! `tests/cel_rules.rs` evaluates offline next to the controller's checks
//! (`tests/cel_cases/mod.rs`). No operator runs here: this is the API server alone.

use kube::api::{DynamicObject, PostParams};
use kube::ResourceExt;
use serde_json::{json, Value};

use crate::cel_cases::{cases, Case};
use crate::support::*;

fn object(w: &World, case_no: usize, case: &Case, spec: &Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "librechat.ai/v1alpha1", "kind": case.kind,
        "metadata": { "name": format!("cel-{case_no}"), "namespace": w.ns },
        "spec": spec,
    }))
    .unwrap()
}

/// What admission said: `Ok` or the API server's message of a 422 Invalid.
async fn send(w: &World, case_no: usize, case: &Case) -> Result<(), String> {
    let api = dynamic(&w.client, &w.ns, case.kind);
    let pp = PostParams::default();
    let outcome = match &case.old {
        None => api
            .create(&pp, &object(w, case_no, case, &case.spec))
            .await
            .map(drop),
        Some(old) => {
            let created = api
                .create(&pp, &object(w, case_no, case, old))
                .await
                .unwrap_or_else(|e| panic!("{}: creating the old object: {e}", case.what));
            // A full replace of the stored object, as `kubectl replace` or an editor would.
            let mut updated = object(w, case_no, case, &case.spec);
            updated.metadata.resource_version = created.metadata.resource_version;
            api.replace(&updated.name_any(), &pp, &updated)
                .await
                .map(drop)
        }
    };
    match outcome {
        Ok(()) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 422 => Err(e.message),
        Err(e) => panic!("{}: unexpected error {e}", case.what),
    }
}

#[tokio::test]
async fn the_api_server_enforces_every_cel_rule() {
    let w = World::new("cel").await;
    let mut failures = Vec::new();
    for (n, case) in cases().iter().enumerate() {
        let outcome = send(&w, n, case).await;
        let ok = match (&outcome, case.rejected_by) {
            (Ok(()), None) => true,
            (Err(message), Some(rule)) => message.contains(rule),
            _ => false,
        };
        if !ok {
            failures.push(format!(
                "{} ({}): expected {}, got {outcome:?}",
                case.what,
                case.kind,
                case.rejected_by
                    .map_or("admission".to_string(), |m| format!("rejection {m:?}")),
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
