//! The LibreChatUser watch of one scope, built by hand rather than by `Controller::new`, for
//! reasons that matter at thousands of users:
//!
//! - The store keeps what the reconcile reads, not `managedFields` (server-side apply makes
//!   them the largest part of a small object) nor kubectl's last-applied copy of the object.
//! - The users are indexed by what wakes them (a Secret, an account, an email), so a watch
//!   event costs a lookup instead of a scan of every user.
//! - A reconcile is started by changes it acts on (spec, finalizers, deletion), not by the
//!   echo of its own status writes; resyncs and the other watches still wake it.
//! - A list (a start, a take-over) wakes first the users being deleted, then those still
//!   without an account, then those not Ready, then the settled ones, each stage once the
//!   one before has started (see [`relist`](super::relist)).
//! - The other controllers that follow users (bans, groups, a deleting instance) hear every
//!   change from this watch instead of watching users themselves.

use std::hash::Hash;
use std::sync::Arc;

use futures::channel::mpsc;
use futures::{Stream, TryStreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::utils::PredicateConfig;
use kube::runtime::{watcher, WatchStreamExt};
use kube::ResourceExt;

use super::declared;
use super::fanout::Fanout;
use super::index::Index;
use super::relist::{self, ListGate};
use super::target;
use crate::api::common::is_ready;
use crate::api::validate::normalize_email;
use crate::api::LibreChatUser;

/// What a user is looked up by.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub enum UserKey {
    /// A Secret of the user's namespace it reads: its password, its generated login, a
    /// plugin's credentials.
    Secret { namespace: String, name: String },
    /// Users that declare plugins encrypt with their instance's credentials Secret, which lives
    /// in this namespace.
    PluginsOfInstancesIn(String),
    /// The normalized email it declares.
    Email(String),
    /// The LibreChat account its status shows (a wake-up hint only, never an identity).
    Account(String),
}

pub type UserIndex = Index<LibreChatUser, UserKey>;

/// The parts of the users' watch a scope's controllers use.
pub struct UserWatch<S> {
    /// What the controller reconciles on.
    pub trigger: S,
    pub store: Store<LibreChatUser>,
    pub index: Arc<UserIndex>,
    /// Users that share an email with an object going away: one in Conflict waits for it.
    pub email_freed: mpsc::UnboundedReceiver<ObjectRef<LibreChatUser>>,
    /// Every change of a user, status included, for the controllers that follow users.
    pub changes: Arc<Fanout<LibreChatUser>>,
    /// Told of each reconcile as it starts, so that a list's next stage is released.
    pub list_gate: Arc<ListGate<LibreChatUser>>,
}

/// `deleted` is called with each user deleted, after the store dropped it.
pub fn watch(
    api: Api<LibreChatUser>,
    deleted: impl Fn(&LibreChatUser) + Send + 'static,
) -> UserWatch<impl Stream<Item = Result<LibreChatUser, watcher::Error>> + Send + 'static> {
    let events = watcher(api, watcher::Config::default())
        .default_backoff()
        .modify(lean);
    follow(events, deleted)
}

/// The watch's `events` indexed, reflected into the store in stages, and told to the other
/// controllers once the store holds what they are told: a list's users all at once when the
/// list is complete (told earlier, a ban or group woken by one would read a cache without
/// it; told in the user controller's stages, the last could wait minutes, or for ever if
/// lists came faster than the stages drain).
fn follow<S>(
    events: S,
    deleted: impl Fn(&LibreChatUser) + Send + 'static,
) -> UserWatch<impl Stream<Item = Result<LibreChatUser, watcher::Error>> + Send + 'static>
where
    S: Stream<Item = Result<watcher::Event<LibreChatUser>, watcher::Error>> + Send + 'static,
{
    let (store, writer) = reflector::store();
    let index = Index::new(keys_of);
    let (freed, email_freed) = mpsc::unbounded();
    let indexed = index.clone();
    let changes = Arc::new(Fanout::new(4096));
    let told = changes.clone();
    // The refs of the list in progress (the store holds the users themselves at its end).
    let listing: Arc<std::sync::Mutex<Vec<ObjectRef<LibreChatUser>>>> = Default::default();
    let (listed, list_done) = (listing.clone(), listing);
    let reader = store.clone();
    let events = events.map_ok(move |event| {
        let mut listed = listed.lock().unwrap_or_else(|p| p.into_inner());
        match &event {
            watcher::Event::Init => listed.clear(),
            watcher::Event::InitApply(u) => listed.push(ObjectRef::from_obj(u)),
            _ => {}
        }
        drop(listed);
        indexed.observe(&event);
        for user in freed_emails(&indexed, &event) {
            let _ = freed.unbounded_send(user);
        }
        event
    });
    let list_gate = Arc::new(ListGate::default());
    let trigger = relist::reflect_in_stages(events, writer, urgency, list_gate.clone())
        .inspect_ok(move |event| match event {
            watcher::Event::Apply(u) => told.tell(Arc::new(u.clone())),
            watcher::Event::Delete(u) => {
                told.tell(Arc::new(u.clone()));
                deleted(u);
            }
            watcher::Event::InitDone => {
                let listed =
                    std::mem::take(&mut *list_done.lock().unwrap_or_else(|p| p.into_inner()));
                for user in listed.iter().filter_map(|r| reader.get(r)) {
                    told.tell(user);
                }
            }
            // A list's users as the user controller's stages release them: told above.
            watcher::Event::Init | watcher::Event::InitApply(_) => {}
        })
        .applied_objects()
        .predicate_filter(declared::acted_on, PredicateConfig::default());
    UserWatch {
        trigger,
        store,
        index,
        email_freed,
        changes,
        list_gate,
    }
}

/// Drops what no reconcile reads and what makes a stored object several times its size.
fn lean(user: &mut LibreChatUser) {
    user.managed_fields_mut().clear();
    user.annotations_mut()
        .remove("kubectl.kubernetes.io/last-applied-configuration");
}

fn keys_of(user: &LibreChatUser) -> Vec<UserKey> {
    let namespace = user.namespace().unwrap_or_default();
    let secret = |name: &str| UserKey::Secret {
        namespace: namespace.clone(),
        name: name.to_string(),
    };
    let spec = &user.spec;
    let mut keys = vec![UserKey::Email(normalize_email(&spec.email))];
    if let Some(password) = &spec.password {
        keys.extend(password.secret_ref.as_ref().map(|r| secret(&r.name)));
        keys.extend(password.generate.as_ref().map(|g| secret(&g.secret_name)));
    }
    for plugin in &spec.plugins {
        keys.extend(
            plugin
                .credentials_secret_ref
                .as_ref()
                .map(|r| secret(&r.name)),
        );
    }
    if !spec.plugins.is_empty() {
        let instances = target::instance_namespace(&spec.instance_ref, &namespace);
        keys.push(UserKey::PluginsOfInstancesIn(instances));
    }
    let account = user.status.as_ref().and_then(|s| s.user_id.clone());
    keys.extend(account.map(UserKey::Account));
    keys
}

/// Whether `user` has already read the Secret `secret` at exactly this version (its status
/// records the password read from it) and reads nothing else from Secrets: then the Secret's
/// event is the echo of what was read (the creation of a Secret applied with the user, say),
/// not a change. Only ever skips a wake; a resync still looks.
pub fn has_read(user: &LibreChatUser, secret: &ObjectMeta) -> bool {
    let Some(password) = &user.spec.password else {
        return false;
    };
    let name = secret.name.as_deref();
    let declared = password.secret_ref.as_ref().map(|r| r.name.as_str()) == name
        || password.generate.as_ref().map(|g| g.secret_name.as_str()) == name;
    let version = super::secrets::meta_version(secret);
    let recorded = user
        .status
        .as_ref()
        .and_then(|s| s.password_secret_version.as_deref());
    user.spec.plugins.is_empty() && name.is_some() && declared && recorded == Some(version.as_str())
}

/// When an object is going away, the others that declare its email.
fn freed_emails(
    index: &UserIndex,
    event: &watcher::Event<LibreChatUser>,
) -> Vec<ObjectRef<LibreChatUser>> {
    let going = match event {
        watcher::Event::Apply(u) if u.metadata.deletion_timestamp.is_some() => u,
        watcher::Event::Delete(u) => u,
        _ => return Vec::new(),
    };
    index
        .lookup(&[UserKey::Email(normalize_email(&going.spec.email))])
        .into_iter()
        .filter(|r| r.name != going.name_any() || r.namespace != going.namespace())
        .collect()
}

/// How soon a listed user is woken (lowest first): a deletion (its cleanup is awaited), a user
/// with no account yet (its password is hashed, best together with the others'), a user not
/// Ready for its generation (its status is wrong until then), a settled one. Status only
/// orders the wake-ups of a list, which all happen: a forged one gains nothing but its turn.
fn urgency(user: &LibreChatUser) -> u8 {
    let status = user.status.as_ref();
    if user.metadata.deletion_timestamp.is_some() {
        0
    } else if status.and_then(|s| s.user_id.as_ref()).is_none() {
        1
    } else if !status.is_some_and(|s| is_ready(&s.conditions, user.metadata.generation)) {
        2
    } else {
        3
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::user::LibreChatUserSpec;

    fn user(name: &str, email: &str, password_secret: &str) -> LibreChatUser {
        let spec: LibreChatUserSpec = serde_json::from_value(serde_json::json!({
            "instanceRef": {"name": "lc"},
            "email": email,
            "password": {"secretRef": {"name": password_secret, "key": "password"}},
        }))
        .unwrap();
        let mut u = LibreChatUser::new(name, spec);
        u.metadata.namespace = Some("team".into());
        u.metadata.uid = Some(format!("uid-{name}"));
        u.metadata.generation = Some(1);
        u
    }

    #[test]
    fn only_the_echo_of_the_password_version_read_is_skipped() {
        let mut u = user("a", "a@example.com", "a-pw");
        let secret = |name: &str, version: &str| ObjectMeta {
            name: Some(name.into()),
            uid: Some("s1".into()),
            resource_version: Some(version.into()),
            ..Default::default()
        };
        assert!(!has_read(&u, &secret("a-pw", "7")), "nothing read yet");
        u.status = Some(Default::default());
        u.status.as_mut().unwrap().password_secret_version = Some("s1/7".into());
        assert!(has_read(&u, &secret("a-pw", "7")));
        assert!(
            !has_read(&u, &secret("a-pw", "8")),
            "a new version is a change"
        );
        assert!(!has_read(&u, &secret("other", "7")));
        u.spec.plugins = serde_json::from_value(serde_json::json!([{"key": "p"}])).unwrap();
        assert!(
            !has_read(&u, &secret("a-pw", "7")),
            "plugin credentials may live there"
        );
    }

    #[test]
    fn a_list_wakes_deletions_then_new_accounts_then_not_ready_then_settled() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
        let new = user("new", "new@example.com", "pw");
        let mut settled = new.clone();
        let mut status = crate::api::LibreChatUserStatus {
            user_id: Some("6b137ca4e0cfe8422e4e4375".into()),
            ..Default::default()
        };
        status.conditions = vec![Condition {
            type_: "Ready".into(),
            status: "True".into(),
            reason: "Reconciled".into(),
            message: String::new(),
            observed_generation: Some(1),
            last_transition_time: Time(jiff::Timestamp::UNIX_EPOCH),
        }];
        settled.status = Some(status);
        let mut edited = settled.clone();
        edited.metadata.generation = Some(2);
        let mut deleting = settled.clone();
        deleting.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::UNIX_EPOCH));
        let ranks: Vec<u8> = [&deleting, &new, &edited, &settled]
            .into_iter()
            .map(urgency)
            .collect();
        assert_eq!(ranks, [0, 1, 2, 3]);
    }

    #[test]
    fn a_status_write_is_not_a_change_to_act_on() {
        let before = user("a", "a@example.com", "a-pw");
        let mut after = before.clone();
        after.status = Some(Default::default());
        assert_eq!(declared::acted_on(&before), declared::acted_on(&after));
        let mut edited = before.clone();
        edited.metadata.generation = Some(2);
        assert_ne!(declared::acted_on(&before), declared::acted_on(&edited));
        let mut finalized = before.clone();
        finalized.metadata.finalizers = Some(vec!["x".into()]);
        assert_ne!(declared::acted_on(&before), declared::acted_on(&finalized));
    }

    #[test]
    fn the_store_keeps_no_managed_fields_nor_last_applied_copy() {
        let mut u = user("a", "a@example.com", "a-pw");
        u.metadata.managed_fields = Some(vec![Default::default()]);
        u.annotations_mut().insert(
            "kubectl.kubernetes.io/last-applied-configuration".into(),
            "{}".into(),
        );
        u.annotations_mut().insert("team".into(), "kept".into());
        lean(&mut u);
        assert!(u.managed_fields().is_empty());
        assert_eq!(u.annotations().len(), 1);
    }

    #[test]
    fn users_are_found_by_secret_and_email_and_a_going_one_frees_its_email() {
        let index = Index::new(keys_of);
        index.observe(&watcher::Event::Apply(user(
            "a",
            "Same@Example.com",
            "a-pw",
        )));
        index.observe(&watcher::Event::Apply(user(
            "b",
            "same@example.com",
            "b-pw",
        )));
        let by_secret = index.lookup(&[UserKey::Secret {
            namespace: "team".into(),
            name: "b-pw".into(),
        }]);
        assert_eq!(by_secret, vec![ObjectRef::new("b").within("team")]);
        let going: LibreChatUser = serde_json::from_value(serde_json::json!({
            "apiVersion": "librechat.ai/v1alpha1", "kind": "LibreChatUser",
            "metadata": {"name": "a", "namespace": "team",
                         "deletionTimestamp": "2026-12-03T10:00:00Z"},
            "spec": {"instanceRef": {"name": "lc"}, "email": "Same@Example.com"},
        }))
        .unwrap();
        let freed = freed_emails(&index, &watcher::Event::Apply(going));
        assert_eq!(freed, vec![ObjectRef::new("b").within("team")]);
    }

    /// helper-50: the other controllers were told of a listed user before the store held it
    /// (the store takes a list whole, at its end), so a ban or group woken by it read a cache
    /// without it.
    #[tokio::test]
    async fn the_others_are_told_of_a_listed_user_once_the_store_holds_it() {
        use futures::{FutureExt, SinkExt, StreamExt};
        let (mut feed, events) = mpsc::unbounded();
        let watched = follow(events, |_| {});
        let mut heard = Box::pin(watched.changes.hear());
        let mut trigger = Box::pin(watched.trigger);
        let listed = user("a", "a@example.com", "a-pw");
        for e in [
            watcher::Event::Init,
            watcher::Event::InitApply(listed.clone()),
        ] {
            feed.send(Ok(e)).await.unwrap();
        }
        let drive = tokio::time::timeout(std::time::Duration::from_millis(200), trigger.next());
        assert!(
            drive.await.is_err(),
            "nothing passes on before the list is complete"
        );
        assert!(
            heard.next().now_or_never().is_none(),
            "told of a listed user the store does not hold yet"
        );

        feed.send(Ok(watcher::Event::InitDone)).await.unwrap();
        let passed = trigger.next().await.unwrap().unwrap();
        assert_eq!(passed.name_any(), "a");
        match heard.next().await.unwrap() {
            super::super::fanout::Heard::One(u) => assert_eq!(u.name_any(), "a"),
            other => panic!("{other:?}"),
        }
        assert!(watched.store.get(&ObjectRef::from_obj(&listed)).is_some());
    }

    /// helper-53 F7: the other controllers hear of a whole list when it completes, not in
    /// the user controller's stages (the next stage waits for the reconciles of the one before
    /// to start, which nothing does here).
    #[tokio::test]
    async fn a_whole_list_is_told_at_its_end_whatever_the_stages() {
        use futures::{SinkExt, StreamExt};
        let (mut feed, events) = mpsc::unbounded();
        let watched = follow(events, |_| {});
        let mut heard = Box::pin(watched.changes.hear());
        let mut trigger = Box::pin(watched.trigger);
        let mut going = user("going", "going@example.com", "g-pw");
        going.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now()),
        );
        let new = user("new", "new@example.com", "n-pw");
        for e in [
            watcher::Event::Init,
            watcher::Event::InitApply(going),
            watcher::Event::InitApply(new),
            watcher::Event::InitDone,
        ] {
            feed.send(Ok(e)).await.unwrap();
        }
        // The first stage (the deletion) passes on; the next waits for its reconcile.
        assert_eq!(trigger.next().await.unwrap().unwrap().name_any(), "going");
        let mut names = Vec::new();
        for _ in 0..2 {
            let next = tokio::time::timeout(std::time::Duration::from_secs(2), heard.next());
            match next.await.expect("told of the whole list").unwrap() {
                super::super::fanout::Heard::One(u) => names.push(u.name_any()),
                other => panic!("{other:?}"),
            }
        }
        names.sort();
        assert_eq!(names, ["going", "new"]);
    }
}
