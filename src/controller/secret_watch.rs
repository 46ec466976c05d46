//! The Secrets of a scope, watched once, by metadata only, for every controller that follows
//! them (an instance's store URIs, a user's password and plugin credentials). The API server
//! sends names and versions, never values, and what is passed on keeps no annotation: a
//! client-side `kubectl apply` leaves a Secret's data in clear in one.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Client;

use super::fanout::Fanout;

pub type SecretMeta = PartialObjectMeta<Secret>;

/// Room for a burst of Secret changes (a GitOps sync of thousands) before a follower that
/// falls behind is told it missed some and wakes everything it follows.
const CAPACITY: usize = 16384;

/// Starts watching the Secrets of `namespace` (None: every namespace); the returned future
/// drives the watch and never ends by itself.
pub fn watch(
    client: &Client,
    namespace: Option<&str>,
) -> (
    Arc<Fanout<SecretMeta>>,
    impl std::future::Future<Output = ()>,
) {
    let changes = Arc::new(Fanout::new(CAPACITY));
    let told = changes.clone();
    // An Api of PartialObjectMeta makes metadata-only requests.
    let api: Api<SecretMeta> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let run = watcher(api, watcher::Config::default())
        .default_backoff()
        .touched_objects()
        .for_each(move |secret| {
            match secret {
                Ok(mut secret) => {
                    names_and_versions_only(&mut secret);
                    told.tell(Arc::new(secret));
                }
                // The Debug form, as kube-runtime logs the refusals of its own watches.
                Err(e) => tracing::warn!(error = ?e, "watching Secrets failed; retrying (check RBAC and the API server)"),
            }
            futures::future::ready(())
        });
    (changes, run)
}

fn names_and_versions_only(secret: &mut SecretMeta) {
    let meta = &mut secret.metadata;
    meta.annotations = None;
    meta.labels = None;
    meta.managed_fields = None;
    meta.owner_references = None;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_passed_on_holds_no_annotation_where_a_value_could_hide() {
        let mut secret: SecretMeta = serde_json::from_value(serde_json::json!({
            "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
            "metadata": {
                "name": "pw", "namespace": "team", "uid": "u", "resourceVersion": "7",
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration":
                    "{\"stringData\":{\"password\":\"hunter2\"}}"},
            },
        }))
        .unwrap();
        names_and_versions_only(&mut secret);
        let kept = serde_json::to_string(&secret).unwrap();
        assert!(!kept.contains("hunter2"), "{kept}");
        assert_eq!(secret.metadata.resource_version.as_deref(), Some("7"));
    }
}
