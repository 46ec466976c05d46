//! Whether an instance's MongoDB connection reaches the database its objects were written to.
//!
//! Everything the operator wrote for an instance (ownership records, ban shares, invitation
//! records, grants) is in one database, and every cleanup undoes it there. A URI switched to
//! another database (a typo in its database name, a restore to the wrong place, another
//! deployment's server) would silently move every write and cleanup there: a ban deleted
//! meanwhile stays in force in the old database, a revoked invitation still works there, an
//! account to delete stays. So the instance records its database's identity mark
//! (`status.databaseId`, see `librechat::identity`), and a connection whose database has
//! another mark, or none, is used for nothing until a person says the move is meant: the
//! annotation [`REPLACE_DATABASE`] naming the mark being replaced. An instance nothing points
//! at yet moves freely (there is nothing to strand).

use kube::ResourceExt;

use super::connections::ConnectProblem;
use crate::api::common::{condition, reason};
use crate::api::LibreChatInstance;
use crate::librechat::Store;

/// The annotation on a LibreChatInstance that confirms its URI now reaches the database meant
/// to replace the one recorded: its value is the recorded `status.databaseId`, so it confirms
/// that one move only, and a later one is stopped again.
pub const REPLACE_DATABASE: &str = "librechat.ai/replace-database";

/// The database a connection was found to reach, once it is the instance's: checked once per
/// connection (a URI change makes a new one), and again at each use while it is refused, so
/// that the annotation confirming a move takes effect at once.
#[derive(Default)]
pub struct DatabaseIdentity {
    confirmed: tokio::sync::Mutex<Option<String>>,
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

impl DatabaseIdentity {
    /// The mark of the database `store` reaches, when it is the one `instance` recorded (or
    /// the instance recorded none yet, or `may_move`, or its annotation confirms the move).
    /// Otherwise a `DatabaseChanged` problem saying what to do; an outage while reading the
    /// mark is the outage's problem.
    pub async fn confirm(
        &self,
        store: &Store,
        instance: &LibreChatInstance,
        may_move: bool,
    ) -> Result<String, ConnectProblem> {
        let mut confirmed = self.confirmed.lock().await;
        if let Some(mark) = confirmed.as_ref() {
            return Ok(mark.clone());
        }
        let recorded = recorded_mark(instance);
        let found = store.database_mark().await.map_err(ConnectProblem::store)?;
        let may_move = may_move || move_confirmed(instance);
        let mark = match judge(recorded, found.as_deref(), may_move) {
            Verdict::Use(mark) => mark,
            Verdict::Mark => store.mark_database().await.map_err(ConnectProblem::store)?,
            Verdict::Changed => return Err(changed(instance, recorded, found.as_deref())),
        };
        *confirmed = Some(mark.clone());
        Ok(mark)
    }
}

fn recorded_mark(instance: &LibreChatInstance) -> Option<&str> {
    let status = instance.status.as_ref()?;
    status.database_id.as_deref().filter(|m| !m.is_empty())
}

/// Whether the instance's annotation confirms moving away from the database it recorded.
fn move_confirmed(instance: &LibreChatInstance) -> bool {
    let replacing = instance.annotations().get(REPLACE_DATABASE);
    replacing.is_some_and(|r| Some(r.trim()) == recorded_mark(instance))
}

fn changed(
    instance: &LibreChatInstance,
    recorded: Option<&str>,
    found: Option<&str>,
) -> ConnectProblem {
    let recorded = recorded.unwrap_or_default();
    let found = match found {
        Some(mark) => format!("its identity mark is {mark}"),
        None => "it has no identity mark".into(),
    };
    ConnectProblem {
        condition: condition::MONGO_REACHABLE,
        reason: reason::DATABASE_CHANGED,
        message: format!(
            "the MongoDB URI reaches another database than the one this instance's objects were written to ({found}; the instance recorded {recorded}): nothing is written there, and the objects that point at this instance wait. If the URI is wrong, put the right one back in Secret '{secret}'; if this database is meant to replace the other (a migration, a restore without the operator's records), annotate the instance: kubectl annotate librechatinstance {name} -n {namespace} {REPLACE_DATABASE}={recorded}",
            secret = instance.spec.mongo.uri_secret_ref.name,
            name = instance.name_any(),
            namespace = instance.namespace().unwrap_or_default(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::{judge, Verdict};

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
}
