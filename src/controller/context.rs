//! What every reconciler shares.

use std::time::Duration;

use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource};

use super::connections::Connections;
use crate::librechat::Hasher;

/// Settings from the command line.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Used when an instance does not set `resyncPeriod`.
    pub default_resync: Duration,
    /// Reconciles run in parallel per kind.
    pub concurrency: u16,
    /// Namespaces to watch; empty watches all.
    pub namespaces: Vec<String>,
}

pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub connections: Connections,
    pub hasher: Hasher,
    pub settings: Settings,
}

impl Context {
    pub fn new(client: Client, settings: Settings) -> Self {
        let reporter = Reporter {
            controller: "librechat-operator".into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            connections: Connections::default(),
            hasher: Hasher::default(),
            settings,
        }
    }

    /// Publishes an event on `obj`. Events are a courtesy: failing to publish one is logged,
    /// never allowed to fail a reconcile.
    pub async fn event<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        warning: bool,
        reason: &str,
        note: String,
    ) {
        let event = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.to_string(),
            note: Some(note),
            action: reason.to_string(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &obj.object_ref(&())).await {
            tracing::warn!(error = %e, reason, "could not publish event");
        }
    }
}
