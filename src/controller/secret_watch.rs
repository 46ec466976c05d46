//! The Secrets of a scope, watched once, by metadata only, for every controller that follows
//! them (an instance's store URIs, a user's password and plugin credentials), and kept as
//! versions: a resync of a settled account whose password Secret is at the version it read
//! needs no read of the Secret. The API server sends names and versions, never values, and
//! what is kept keeps no annotation: a client-side `kubectl apply` leaves a Secret's data in
//! clear in one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Client;
use tokio::time::timeout;

use super::fanout::Fanout;
use super::scoped::ScopedStores;
use super::secrets::meta_version;

pub type SecretMeta = PartialObjectMeta<Secret>;

/// Room for a burst of Secret changes (a GitOps sync of thousands) before a follower that
/// falls behind is told it missed some and wakes everything it follows.
const CAPACITY: usize = 16384;

/// Starts watching the Secrets of `namespace` (None: every namespace) into a store registered
/// in `secrets`; the returned future drives the watch and never ends by itself.
pub fn watch(
    client: &Client,
    namespace: Option<&str>,
    secrets: &WatchedSecrets,
) -> (
    Arc<Fanout<SecretMeta>>,
    impl std::future::Future<Output = ()>,
) {
    // An Api of PartialObjectMeta makes metadata-only requests.
    let api: Api<SecretMeta> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let (store, writer) = reflector::store();
    secrets.stores.register(namespace.map(String::from), store);
    let changes = Arc::new(Fanout::new(CAPACITY));
    let told = changes.clone();
    let run = watcher(api, watcher::Config::default())
        .default_backoff()
        .modify(names_and_versions_only)
        // The store has a change before anyone is told of it.
        .reflect(writer)
        .touched_objects()
        .for_each(move |secret| {
            match secret {
                Ok(secret) => told.tell(Arc::new(secret)),
                // The Debug form, as kube-runtime logs the refusals of its own watches.
                Err(e) => tracing::warn!(error = ?e, "watching Secrets failed; retrying (check RBAC and the API server)"),
            }
            futures::future::ready(())
        });
    (changes, run)
}

/// How long a reconcile waits for the first list of Secrets at start-up: a restarted operator
/// would otherwise read, for its first reconciles, Secrets whose versions the list is about to
/// tell (and that the accounts already have).
const FIRST_LIST_PATIENCE: Duration = Duration::from_secs(10);

/// The Secrets' versions as the scopes' watches have them.
#[derive(Default)]
pub struct WatchedSecrets {
    stores: ScopedStores<SecretMeta>,
    /// Set once a wait for a first list ran out: a watch that cannot list (RBAC, an outage)
    /// makes no later reconcile wait.
    stopped_waiting: AtomicBool,
}

impl WatchedSecrets {
    /// The version of Secret `namespace/name` (as [`meta_version`] writes it) as the watch
    /// has it; `None` when unknown: no scope covers the namespace, the first list did not
    /// come in time, or there is no such Secret.
    pub async fn version_of(&self, namespace: &str, name: &str) -> Option<String> {
        let store = self.stores.covering(namespace)?;
        let listed = match self.stopped_waiting.load(Ordering::Relaxed) {
            true => store.wait_until_ready().now_or_never(),
            false => {
                let waited = timeout(FIRST_LIST_PATIENCE, store.wait_until_ready()).await;
                if waited.is_err() {
                    self.stopped_waiting.store(true, Ordering::Relaxed);
                }
                waited.ok()
            }
        };
        listed?.ok()?;
        let secret = store.get(&ObjectRef::new(name).within(namespace))?;
        Some(meta_version(&secret.metadata))
    }
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
