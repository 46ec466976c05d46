//! Instance changes told across watch scopes.
//!
//! With `watchNamespaces` the operator runs one set of watches per namespace, so the
//! controllers of a tenant namespace never see the instance (in the administering namespace)
//! their objects point at: a policy the instance starts to admit, or an instance becoming
//! Ready, would reach them only when something else woke them. The scope that watches an
//! instance tells the other scopes whenever what dependents read of it changes (its spec, its
//! readiness), and each scope wakes its objects that point at it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::{Stream, StreamExt};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use tokio::sync::broadcast;

use super::target;
use crate::api::common::{condition, InstanceRef};
use crate::api::LibreChatInstance;

/// What a dependent reads of an instance: its spec generation and its Ready condition.
type Seen = (Option<i64>, Option<(String, Option<i64>)>);

pub struct InstanceEvents {
    sender: broadcast::Sender<Arc<LibreChatInstance>>,
    seen: Mutex<HashMap<String, Seen>>,
}

impl Default for InstanceEvents {
    fn default() -> Self {
        InstanceEvents {
            sender: broadcast::channel(256).0,
            seen: Mutex::default(),
        }
    }
}

impl InstanceEvents {
    /// Called with every event of an instance; tells the scopes only what changed for them.
    pub fn tell(&self, instance: &LibreChatInstance) {
        let ready = instance.status.as_ref().and_then(|s| {
            s.conditions
                .iter()
                .find(|c| c.type_ == condition::READY)
                .map(|c| (c.status.clone(), c.observed_generation))
        });
        let now = (instance.metadata.generation, ready);
        let key = target::instance_key(instance);
        let changed = {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            seen.insert(key, now.clone()) != Some(now)
        };
        if changed {
            // No receiver yet is fine: a scope that starts later lists its objects anyway.
            let _ = self.sender.send(Arc::new(instance.clone()));
        }
    }

    /// The objects of a scope that point at an instance outside it, as it changes. A scope
    /// over all namespaces (`scope` None) or the instance's own scope already watches it.
    pub fn dependents<K>(
        &self,
        objects: Store<K>,
        scope: Option<String>,
        instance_ref: fn(&K) -> &InstanceRef,
    ) -> impl Stream<Item = ObjectRef<K>> + Send + 'static
    where
        K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
    {
        let receiver = self.sender.subscribe();
        let changes = futures::stream::unfold(receiver, |mut receiver| async move {
            loop {
                match receiver.recv().await {
                    Ok(instance) => return Some((instance, receiver)),
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
        changes.flat_map(move |instance| {
            let outside = scope
                .as_deref()
                .is_some_and(|ns| instance.namespace().as_deref() != Some(ns));
            let woken: Vec<ObjectRef<K>> = if outside {
                objects
                    .state()
                    .iter()
                    .filter(|o| target::points_at(instance_ref(o), &***o, &instance))
                    .map(|o| ObjectRef::from_obj(&**o))
                    .collect()
            } else {
                Vec::new()
            };
            futures::stream::iter(woken)
        })
    }
}
