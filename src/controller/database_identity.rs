//! Whether an instance's MongoDB connection reaches the database its objects were written to.
//!
//! Everything the operator wrote for an instance (ownership records, ban shares, invitation
//! records, grants) is in one database, and every cleanup undoes it there. A URI switched to
//! another database (a typo in its database name, a restore to the wrong place, another
//! deployment's server) would silently move every write and cleanup there: a ban deleted
//! meanwhile stays in force in the old database, a revoked invitation still works there, an
//! account to delete stays. So the instance records its database's identity mark
//! (`status.databaseId`, see `librechat::identity`), and a connection whose database has
//! another mark, or none, is used for nothing until a person confirms the move: the
//! annotation [`REPLACE_DATABASE`] naming the database moved to, as the refusal prints it.
//!
//! Only the instance's own check settles a database for an instance that recorded none yet
//! (new, re-created, or its status lost): it has the dependents to judge by (see
//! `instance::confirm_database`). A dependent waits for that.

use std::time::{Duration, Instant};

use kube::ResourceExt;

use super::connections::ConnectProblem;
use crate::api::common::{condition, reason};
use crate::api::LibreChatInstance;
use crate::librechat::Store;

/// The annotation on a LibreChatInstance that confirms its URI now reaches the database meant
/// to replace the one it recorded. Its value names that database as the refusal prints it
/// (its mark, or `unmarked:<name>`), so an annotation written ahead of a URI change with a typo
/// in it confirms nothing, and one left in place confirms no other move.
pub const REPLACE_DATABASE: &str = "librechat.ai/replace-database";

/// How long a dependent waits for the instance's check to settle the database of an instance
/// that recorded none yet (the first check after a start, an upgrade, a re-creation).
const SETTLING: Duration = Duration::from_secs(30);

/// How long a count of the objects pointing at an instance stands while its move is refused:
/// the count is five LISTs, not to be repeated at every check.
const POINTING_KEPT: Duration = Duration::from_secs(60);

/// The database a connection was found to reach, once it is the instance's: settled once per
/// connection (a URI change makes a new one) by the instance's check, and looked at again by
/// its health check. Dependents only use what the check settled (or the mark it recorded).
pub struct DatabaseIdentity {
    /// The connection's servers, as a database with no mark is named (see [`destination`]).
    servers: String,
    confirmed: tokio::sync::Mutex<Option<String>>,
    /// The last outage an attempt to settle met, and when.
    outage: std::sync::Mutex<Option<(Instant, ConnectProblem)>>,
    /// The instance's check refuses this database (`DatabaseChanged`): told at once to the
    /// dependents waiting for it.
    refused: std::sync::Mutex<Option<ConnectProblem>>,
    /// When the check last found objects pointing at the instance while refusing a move.
    pointed_at: std::sync::Mutex<Option<Instant>>,
    /// The check's last refusal for want of the applied objects' records, and when.
    unproven: std::sync::Mutex<Option<(Instant, ConnectProblem)>>,
    /// A check of this connection found it may settle on a first database.
    first_passed: std::sync::atomic::AtomicBool,
    /// The instance's check has handed the settled mark to its status once.
    handed_to_status: std::sync::atomic::AtomicBool,
}

/// How much leeway a judgement of the database has.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Leeway {
    /// Only the database recorded (a dependent: only the instance's check moves it).
    Recorded,
    /// Also the database the instance's annotation confirms a move to.
    Annotated,
    /// Any (nothing points at the instance).
    Any,
}

/// What to do with a database, from the mark the instance recorded and the one found.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// The database's own mark is the instance's from now on (the same, or a move allowed).
    Use(String),
    /// The database has no mark: give it one (a first connection, or a move allowed).
    Mark,
    /// Another database than the one recorded, and no move allowed.
    Changed,
}

fn judge(recorded: Option<&str>, found: Option<&str>, may_move: bool) -> Verdict {
    match found {
        Some(found) if may_move || recorded.is_none_or(|r| r == found) => {
            Verdict::Use(found.to_string())
        }
        None if may_move || recorded.is_none() => Verdict::Mark,
        _ => Verdict::Changed,
    }
}

/// The servers of a MongoDB URI (its scheme and hosts, lower-cased and sorted; no user,
/// password or option), as 8 hex digits of their SHA-256.
fn servers_of(uri: &str) -> String {
    use sha2::{Digest, Sha256};
    let (scheme, rest) = uri.split_once("://").unwrap_or(("", uri));
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let hosts = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let mut hosts: Vec<String> = hosts
        .split(',')
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    hosts.sort();
    let digest = Sha256::digest(format!("{scheme}://{}", hosts.join(",")));
    digest[..4].iter().map(|b| format!("{b:02x}")).collect()
}

impl DatabaseIdentity {
    /// The identity of a connection through `uri`, not settled yet.
    pub fn new(uri: &str) -> Self {
        DatabaseIdentity {
            servers: servers_of(uri),
            confirmed: Default::default(),
            outage: Default::default(),
            refused: Default::default(),
            pointed_at: Default::default(),
            unproven: Default::default(),
            first_passed: Default::default(),
            handed_to_status: Default::default(),
        }
    }

    /// How a refusal names the database found, and the annotation's value confirming a move to
    /// it: its mark, or, for one with none, its name and servers.
    fn destination(&self, found: Option<&str>, store: &Store) -> String {
        match found {
            Some(mark) => mark.to_string(),
            None => format!("unmarked:{}@{}", store.database().name(), self.servers),
        }
    }

    /// The mark this connection was settled on, if it was.
    pub async fn settled(&self) -> Option<String> {
        self.confirmed.lock().await.clone()
    }

    /// For a dependent: the mark of the database `store` reaches, once it is the one
    /// `instance` recorded. An instance that recorded none yet is waited for a moment (its
    /// check settles it, or refuses it: said at once).
    pub async fn confirm(
        &self,
        store: &Store,
        instance: &LibreChatInstance,
    ) -> Result<String, ConnectProblem> {
        if recorded_mark(instance).is_some() {
            return self.settle(store, instance, Leeway::Recorded).await;
        }
        let deadline = Instant::now() + SETTLING;
        loop {
            if let Some(mark) = self.settled().await {
                return Ok(mark);
            }
            if let Some(refused) = kept(&self.refused) {
                return Err(refused);
            }
            if Instant::now() >= deadline {
                return Err(unsettled());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The mark of the database `store` reaches, when it is the one `instance` recorded, or it
    /// recorded none, or the `leeway` allows a move to it. Otherwise `DatabaseChanged`,
    /// saying what to do; an outage while reading the mark is the outage's problem.
    pub async fn settle(
        &self,
        store: &Store,
        instance: &LibreChatInstance,
        leeway: Leeway,
    ) -> Result<String, ConnectProblem> {
        let asked = Instant::now();
        let mut confirmed = self.confirmed.lock().await;
        if let Some(mark) = confirmed.as_ref() {
            return Ok(mark.clone());
        }
        // Those who queued behind an attempt that met an outage take its answer, rather than
        // each waiting out the store's deadline in turn.
        if let Some(problem) = self.failed_since(asked) {
            return Err(problem);
        }
        let failed = |e| {
            let problem = ConnectProblem::store(e);
            *self.outage.lock().unwrap_or_else(|p| p.into_inner()) =
                Some((Instant::now(), problem.clone()));
            problem
        };
        let recorded = recorded_mark(instance);
        let found = store.database_mark().await.map_err(failed)?;
        let moving_to = self.destination(found.as_deref(), store);
        let may_move = leeway == Leeway::Any
            || (leeway == Leeway::Annotated && move_confirmed(instance, &moving_to));
        let mark = match judge(recorded, found.as_deref(), may_move) {
            Verdict::Use(mark) => mark,
            Verdict::Mark => store.mark_database().await.map_err(failed)?,
            Verdict::Changed => return Err(changed(instance, recorded, &moving_to)),
        };
        *confirmed = Some(mark.clone());
        Ok(mark)
    }

    /// The outage an attempt that ended after `asked` met.
    fn failed_since(&self, asked: Instant) -> Option<ConnectProblem> {
        let outage = self.outage.lock().unwrap_or_else(|p| p.into_inner());
        let (at, problem) = outage.as_ref()?;
        (*at >= asked).then(|| problem.clone())
    }

    /// The instance's check's verdict, for the dependents waiting on it: a refusal is told, a
    /// settled database clears it, an outage leaves it as it was.
    pub fn publish(&self, verdict: &Result<String, ConnectProblem>) {
        let mut refused = self.refused.lock().unwrap_or_else(|p| p.into_inner());
        match verdict {
            Ok(_) => *refused = None,
            Err(p) if p.reason == reason::DATABASE_CHANGED => *refused = Some(p.clone()),
            Err(_) => {}
        }
    }

    /// The refusal last told.
    pub fn refusal(&self) -> Option<ConnectProblem> {
        kept(&self.refused)
    }

    /// Reads the mark again (the instance's health check): a database restored over, or a
    /// host name pointed at another server, under the same URI, is judged anew.
    pub async fn look_again(&self, store: &Store) -> Result<(), ConnectProblem> {
        let mut confirmed = self.confirmed.lock().await;
        if confirmed.is_none() {
            return Ok(());
        }
        let found = store.database_mark().await.map_err(ConnectProblem::store)?;
        if *confirmed != found {
            *confirmed = None;
            // Judged anew from the start: the records too, where none is recorded.
            self.first_passed
                .store(false, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(())
    }

    /// Whether the instance's status lacks the settled `mark` although a check of this
    /// connection already handed it over: the API server dropped the field (a CRD older than
    /// the operator). Notes the hand-over for the next check.
    pub fn record_lost(&self, instance: &LibreChatInstance, mark: &str) -> bool {
        use std::sync::atomic::Ordering;
        let handed = self.handed_to_status.swap(true, Ordering::Relaxed);
        handed && recorded_mark(instance) != Some(mark)
    }

    /// Whether objects were found pointing at the instance within [`POINTING_KEPT`].
    pub fn recently_pointed_at(&self) -> bool {
        let seen = self.pointed_at.lock().unwrap_or_else(|p| p.into_inner());
        seen.is_some_and(|at| at.elapsed() < POINTING_KEPT)
    }

    pub fn note_pointed_at(&self) {
        *self.pointed_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
    }

    /// Whether the instance, which recorded no database yet (new, re-created, or its status
    /// lost), may settle on the one `store` reaches: yes when none of the objects applied to
    /// it keeps records now (`keeping`, their uids, listed only when needed), when the
    /// database holds the operator's records of one of them, or when the annotation confirms
    /// the move. Otherwise `DatabaseChanged`: they wrote elsewhere. A refusal stands for
    /// [`POINTING_KEPT`] (the list is five LISTs), the annotation taking effect at once all
    /// the same; a pass stands for the connection.
    pub async fn first_settling(
        &self,
        store: &Store,
        instance: &LibreChatInstance,
        keeping: impl std::future::Future<Output = Result<Vec<String>, ConnectProblem>>,
    ) -> Result<(), ConnectProblem> {
        use std::sync::atomic::Ordering;
        if self.first_passed.load(Ordering::Relaxed) {
            return Ok(());
        }
        let found = store.database_mark().await.map_err(ConnectProblem::store)?;
        let moving_to = self.destination(found.as_deref(), store);
        let passes = match move_confirmed(instance, &moving_to) {
            true => true,
            false => match kept_for(&self.unproven, POINTING_KEPT) {
                Some(refusal) => return Err(refusal),
                None => {
                    let uids = keeping.await?;
                    uids.is_empty()
                        || store
                            .any_records(&uids)
                            .await
                            .map_err(ConnectProblem::store)?
                }
            },
        };
        if passes {
            self.first_passed.store(true, Ordering::Relaxed);
            return Ok(());
        }
        let why = format!(
            "the MongoDB URI reaches a database ({moving_to}) that holds none of the operator's records of the objects applied to this instance, which has recorded no database yet (re-created, or its status lost)"
        );
        let refused = refusal(instance, why, &moving_to);
        *self.unproven.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((Instant::now(), refused.clone()));
        Err(refused)
    }
}

fn kept(slot: &std::sync::Mutex<Option<ConnectProblem>>) -> Option<ConnectProblem> {
    slot.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

fn kept_for(
    slot: &std::sync::Mutex<Option<(Instant, ConnectProblem)>>,
    within: Duration,
) -> Option<ConnectProblem> {
    let slot = slot.lock().unwrap_or_else(|p| p.into_inner());
    let (at, problem) = slot.as_ref()?;
    (at.elapsed() < within).then(|| problem.clone())
}

pub fn recorded_mark(instance: &LibreChatInstance) -> Option<&str> {
    let status = instance.status.as_ref()?;
    status.database_id.as_deref().filter(|m| !m.is_empty())
}

/// Whether the instance's annotation confirms a move to the database `moving_to` names.
fn move_confirmed(instance: &LibreChatInstance, moving_to: &str) -> bool {
    let confirmed = instance.annotations().get(REPLACE_DATABASE);
    confirmed.is_some_and(|c| c.trim() == moving_to)
}

fn changed(
    instance: &LibreChatInstance,
    recorded: Option<&str>,
    moving_to: &str,
) -> ConnectProblem {
    let why = format!(
        "the MongoDB URI reaches another database ({moving_to}) than the one this instance's objects were written to ({})",
        recorded.unwrap_or_default()
    );
    refusal(instance, why, moving_to)
}

fn refusal(instance: &LibreChatInstance, why: String, moving_to: &str) -> ConnectProblem {
    ConnectProblem {
        condition: condition::MONGO_REACHABLE,
        reason: reason::DATABASE_CHANGED,
        message: format!(
            "{why}: nothing is written there, and the objects that point at this instance wait. If the URI is wrong, put the right one back in Secret '{secret}'. If this database is meant to replace the other (a migration, a restore without the operator's records), confirm the move: kubectl annotate --overwrite librechatinstance {name} -n {namespace} {REPLACE_DATABASE}={moving_to}. What the objects wrote in the other database (bans in force, live invitations, accounts to delete) then stays there",
            secret = instance.spec.mongo.uri_secret_ref.name,
            name = instance.name_any(),
            namespace = instance.namespace().unwrap_or_default(),
        ),
    }
}

/// An instance whose database its check has not settled yet.
fn unsettled() -> ConnectProblem {
    ConnectProblem {
        condition: condition::MONGO_REACHABLE,
        reason: reason::INSTANCE_NOT_READY,
        message: "its check has not settled which database it writes to yet (the first check after a start, an upgrade or a re-creation); retrying".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::{judge, move_confirmed, DatabaseIdentity, Verdict, REPLACE_DATABASE};
    use crate::api::LibreChatInstance;

    #[test]
    fn an_unmarked_database_is_named_by_its_servers_not_by_credentials() {
        use super::servers_of;
        let one = servers_of("mongodb://u:p@db-0:27017,db-1:27017/LibreChat?replicaSet=rs");
        assert_eq!(
            one,
            servers_of("mongodb://other:pw@DB-1:27017,db-0:27017/LibreChat")
        );
        assert_ne!(
            one,
            servers_of("mongodb://u:p@db-2:27017,db-1:27017/LibreChat")
        );
        assert_ne!(
            one,
            servers_of("mongodb+srv://u:p@db-0:27017,db-1:27017/LibreChat")
        );
        assert_eq!(one.len(), 8);
    }

    #[test]
    fn a_mark_the_status_did_not_keep_is_told_from_the_second_check_on() {
        let mut instance: LibreChatInstance = serde_json::from_value(serde_json::json!({
            "apiVersion": "librechat.ai/v1alpha1", "kind": "LibreChatInstance",
            "metadata": { "name": "lc", "namespace": "ns" },
            "spec": { "mongo": { "uriSecretRef": { "name": "s", "key": "uri" } } }
        }))
        .unwrap();
        let identity = DatabaseIdentity::new("mongodb://db-0:27017/LibreChat");
        // First check: nothing recorded yet, nothing lost.
        assert!(!identity.record_lost(&instance, "m"));
        // The status did not keep it: said.
        assert!(identity.record_lost(&instance, "m"));
        // Kept: nothing to say.
        instance.status = Some(Default::default());
        instance.status.as_mut().unwrap().database_id = Some("m".into());
        assert!(!identity.record_lost(&instance, "m"));
    }

    #[test]
    fn a_database_is_used_only_when_it_is_the_one_recorded_or_a_move_is_allowed() {
        // First connection: whatever the database has, or a new mark.
        assert_eq!(judge(None, Some("a"), false), Verdict::Use("a".into()));
        assert_eq!(judge(None, None, false), Verdict::Mark);
        // The same database, wherever it is served from.
        assert_eq!(judge(Some("a"), Some("a"), false), Verdict::Use("a".into()));
        // Another database, marked or not: stopped.
        assert_eq!(judge(Some("a"), Some("b"), false), Verdict::Changed);
        assert_eq!(judge(Some("a"), None, false), Verdict::Changed);
        // A move allowed: the new database's mark, or a new one.
        assert_eq!(judge(Some("a"), Some("b"), true), Verdict::Use("b".into()));
        assert_eq!(judge(Some("a"), None, true), Verdict::Mark);
    }

    #[test]
    fn the_annotation_confirms_a_move_to_the_database_it_names_only() {
        let mut instance: LibreChatInstance = serde_json::from_value(serde_json::json!({
            "apiVersion": "librechat.ai/v1alpha1", "kind": "LibreChatInstance",
            "metadata": { "name": "lc", "namespace": "ns",
                "annotations": { REPLACE_DATABASE: " unmarked:LibreChat_new " } },
            "spec": { "mongo": { "uriSecretRef": { "name": "s", "key": "uri" } } }
        }))
        .unwrap();
        assert!(move_confirmed(&instance, "unmarked:LibreChat_new"));
        assert!(!move_confirmed(&instance, "unmarked:LibreChat_nwe"));
        assert!(!move_confirmed(&instance, "64b7f0c2a1"));
        instance.metadata.annotations = None;
        assert!(!move_confirmed(&instance, "unmarked:LibreChat_new"));
    }
}
