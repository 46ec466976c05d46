//! What every reconciler shares.

use std::time::Duration;

use kube::{Client, Resource};

use crate::api::common::AppliedToInstance;
use crate::api::LibreChatInstance;

use super::connections::Connections;
use super::memory::{Backoff, HashedAhead, NameEpochs, Settled};
use super::recorder::{EventRecorder, Occurrence};
use crate::librechat::Hasher;

/// Settings from the command line.
/// How long publishing one event may take, repeats and a throttled API server included: an
/// event must not hold the reconcile that reports it.
const EVENT_DEADLINE: Duration = Duration::from_secs(5);

#[derive(Clone, Debug)]
pub struct Settings {
    /// Used when an instance does not set `resyncPeriod`.
    pub default_resync: Duration,
    /// Reconciles run in parallel per kind.
    pub concurrency: u16,
    /// Namespaces to watch; empty watches all.
    pub namespaces: Vec<String>,
    /// The least time between two emails to one address (`--mail-pace`).
    pub mail_pace: Duration,
    /// Namespaces whose LibreChatInstances the operator runs (`--instance-namespaces`);
    /// empty: every watched namespace.
    pub instance_namespaces: Vec<String>,
}

impl Settings {
    /// Whether a LibreChatInstance in `namespace` is one the operator runs. One elsewhere is
    /// inert: its Secrets are not read, nothing connects to its database, and dependents
    /// cannot use it. Whoever may create an instance administers it, so a team that may
    /// create objects in its own namespace must not be able to point the operator, with
    /// administrator rights, at a database of its choosing (or at the shared one).
    pub fn may_hold_instances(&self, namespace: &str) -> bool {
        self.instance_namespaces.is_empty()
            || self.instance_namespaces.iter().any(|n| n == namespace)
    }

    /// What an instance outside `--instance-namespaces` says, and its dependents.
    pub fn not_an_instance_namespace(&self, namespace: &str) -> String {
        format!(
            "the operator runs LibreChatInstances only in the namespaces {} (its --instance-namespaces, Helm value instanceNamespaces), not in '{namespace}': this instance is ignored (nothing is read or connected through it). Move it to one of those namespaces, or ask the operator's administrators to add this one",
            self.instance_namespaces.join(", ")
        )
    }
}

pub struct Context {
    pub client: Client,
    /// What `/readyz` says.
    pub health: crate::health::Health,
    /// Watch scopes whose caches have synced; Ready once all have.
    synced_scopes: std::sync::atomic::AtomicUsize,
    pub recorder: EventRecorder,
    pub connections: Connections,
    pub hasher: Hasher,
    /// One email per pace to one address (verification links, invitations).
    pub mail_pacer: crate::mail::Pacer,
    pub settings: Settings,
    /// Objects verified against their ownership record in this process.
    pub settled: Settled,
    /// Failures in a row per object.
    pub backoff: Backoff,
    /// Failed handovers of an email to the relay in a row, per object (uid): a relay that
    /// refuses (bad credentials, an address it rejects) is asked again later and later, not
    /// every few seconds, which would also lock its account. Kept apart from `backoff`, which
    /// every reconcile that ends without an error resets.
    pub mail_failures: Backoff,
    /// Password hashes made while their accounts waited for the instance.
    pub hashed_ahead: HashedAhead,
    /// The instances' change streams.
    pub feeds: super::feeds::Feeds,
    /// The instances as the scopes' watches have them: what dependents read.
    pub instances: super::instance_watch::InstanceCache,
    /// The Secrets' versions as the scopes' watches have them.
    pub secrets: super::secret_watch::WatchedSecrets,
    /// Group and role names that changed hands (see [`NameChange`]), told to every scope: an
    /// object of another scope refused because that object held the name, and a user waiting
    /// for the role, wait for no timer.
    pub names_changed: super::fanout::Fanout<NameChange>,
    /// How often each name changed hands (see [`NameEpochs`]); told with `names_changed`.
    pub name_epochs: NameEpochs,
    /// Emails whose declaration (a LibreChatUser or UserInvite) went, told to every scope
    /// once the scope's cache dropped it: a tenant's invitation of another scope refused over
    /// that declaration waits for no timer.
    pub emails_freed: super::fanout::Fanout<FreedEmail>,
    /// The scopes' caches of users and invites, for reconciles to read.
    pub caches: super::caches::WatchCaches,
}

/// What became of a group or role name (its record key, `group:<name>` or `role:<name>`) in
/// one instance's database.
#[derive(Debug)]
pub struct NameChange {
    /// The instance, as `namespace/name`.
    instance: String,
    key: String,
    what: NameChanged,
}

#[derive(Debug, PartialEq)]
enum NameChanged {
    /// An object gave the name up (released, or handed to the instance's administrators).
    Freed,
    /// LibreChat now has the custom role an object declares: accounts may be put in it.
    RoleCreated,
}

impl NameChange {
    pub fn freed(instance: &LibreChatInstance, key: &str) -> Self {
        Self::of(instance, key, NameChanged::Freed)
    }

    pub fn role_created(instance: &LibreChatInstance, key: &str) -> Self {
        Self::of(instance, key, NameChanged::RoleCreated)
    }

    fn of(instance: &LibreChatInstance, key: &str, what: NameChanged) -> Self {
        NameChange {
            instance: super::target::instance_key(instance),
            key: key.to_string(),
            what,
        }
    }

    pub fn is_freed(&self) -> bool {
        self.what == NameChanged::Freed
    }

    /// Whether the change is of the name `key` in the instance `obj` points at: a name in
    /// one instance's database says nothing of another's.
    pub fn concerns<K: Resource + AppliedToInstance>(&self, obj: &K, key: &str) -> bool {
        let namespace = obj.meta().namespace.as_deref().unwrap_or_default();
        let reference = obj.instance_ref();
        let instance = super::target::instance_namespace(reference, namespace);
        self.key == key && self.instance == format!("{instance}/{}", reference.name)
    }
}

/// What [`NameEpochs`] counts a name's changes under: the instance (`namespace/name`) and the
/// record key.
pub fn name_epoch_key(instance: &str, key: &str) -> String {
    format!("{instance}|{key}")
}

impl Context {
    /// Tells every scope that a group or role name changed hands, the settled marks of the
    /// accounts declaring it voided first (see [`NameEpochs`]).
    pub fn name_changed(&self, change: NameChange) {
        self.name_epochs
            .bump(&name_epoch_key(&change.instance, &change.key));
        self.names_changed.tell(std::sync::Arc::new(change));
    }

    pub fn new(client: Client, settings: Settings, health: crate::health::Health) -> Self {
        Context {
            health,
            synced_scopes: Default::default(),
            recorder: EventRecorder::new(
                client.clone(),
                "librechat-operator",
                std::env::var("POD_NAME").ok(),
            ),
            client,
            connections: Connections::default(),
            hasher: Hasher::default(),
            mail_pacer: crate::mail::Pacer::new(settings.mail_pace),
            settings,
            settled: Settled::default(),
            backoff: Backoff::default(),
            mail_failures: Backoff::default(),
            hashed_ahead: HashedAhead::default(),
            feeds: Default::default(),
            names_changed: super::fanout::Fanout::new(256),
            name_epochs: NameEpochs::default(),
            emails_freed: super::fanout::Fanout::new(1024),
            instances: Default::default(),
            secrets: Default::default(),
            caches: Default::default(),
        }
    }

    /// Called when one watch scope's caches have synced; the operator is ready once every
    /// scope has.
    pub fn scope_synced(&self) {
        if self
            .synced_scopes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            + 1
            >= self.scopes()
        {
            self.health.set(crate::health::Readiness::Serving);
            tracing::info!("caches synced; reconciling");
        }
    }

    /// Whether every watch scope's caches have synced (and so hold every watched object).
    pub fn synced(&self) -> bool {
        self.synced_scopes.load(std::sync::atomic::Ordering::SeqCst) >= self.scopes()
    }

    /// How many watch scopes run: one per watched namespace, or one for all of them.
    fn scopes(&self) -> usize {
        self.settings.namespaces.len().max(1)
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
        let event = Occurrence {
            warning,
            reason: reason.to_string(),
            note,
        };
        let regarding = obj.object_ref(&());
        let published =
            tokio::time::timeout(EVENT_DEADLINE, self.recorder.publish(&event, &regarding));
        match published.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, reason, "could not publish event"),
            Err(_) => tracing::warn!(reason, "publishing an event timed out; it is dropped"),
        }
    }
}

/// An email no longer declared by an object of `namespace` (the object was deleted).
#[derive(Debug)]
pub struct FreedEmail {
    pub namespace: String,
    /// Normalized.
    pub email: String,
}

impl FreedEmail {
    pub fn by<K: kube::Resource>(object: &K, email: &str) -> Self {
        FreedEmail {
            namespace: object.meta().namespace.clone().unwrap_or_default(),
            email: crate::api::validate::normalize_email(email),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::LibreChatUser;

    fn object<K: serde::de::DeserializeOwned>(kind: &str, ns: &str, spec: serde_json::Value) -> K {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "librechat.ai/v1alpha1", "kind": kind,
            "metadata": { "name": "x", "namespace": ns }, "spec": spec,
        }))
        .unwrap()
    }

    /// A role name freed in one instance's database concerns the objects of that instance
    /// only, however they name it (a tenant churning a name on its own instance must not
    /// wake, nor void the settled marks of, another instance's accounts).
    #[test]
    fn a_name_change_concerns_only_the_objects_of_its_instance() {
        let mongo = serde_json::json!({ "uriSecretRef": { "name": "s", "key": "mongo" } });
        let a: LibreChatInstance = object(
            "LibreChatInstance",
            "chat",
            serde_json::json!({ "mongo": mongo }),
        );
        let user = |ns: &str, reference: serde_json::Value| -> LibreChatUser {
            object(
                "LibreChatUser",
                ns,
                serde_json::json!({
                "instanceRef": reference, "email": "a@example.com", "role": "EDITOR" }),
            )
        };
        let freed = NameChange::freed(&a, "role:EDITOR");
        assert!(freed.is_freed());
        assert!(freed.concerns(
            &user("chat", serde_json::json!({ "name": "x" })),
            "role:EDITOR"
        ));
        let from_tenant = user(
            "team",
            serde_json::json!({ "name": "x", "namespace": "chat" }),
        );
        assert!(freed.concerns(&from_tenant, "role:EDITOR"));
        assert!(!freed.concerns(&from_tenant, "role:OTHER"));
        let other_instance = user("team", serde_json::json!({ "name": "x" }));
        assert!(!freed.concerns(&other_instance, "role:EDITOR"));
        assert!(!NameChange::role_created(&a, "role:EDITOR").is_freed());
    }

    #[test]
    fn name_epochs_count_per_key() {
        let epochs = super::super::memory::NameEpochs::default();
        let (one, other) = (
            name_epoch_key("chat/x", "role:A"),
            name_epoch_key("team/x", "role:A"),
        );
        let before = epochs.of(&other);
        epochs.bump(&one);
        epochs.bump(&one);
        assert_eq!(epochs.of(&one), 2);
        // Another key moves only if it shares the bucket (a spurious void, never a missed one).
        assert!(epochs.of(&other) == before || epochs.of(&other) == before + 2);
    }
}
