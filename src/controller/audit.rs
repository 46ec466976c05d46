//! The audit trail: every change the operator makes in LibreChat is one structured log line
//! (a JSON object with `--log-format json`) and one Normal event on the object that caused it.
//!
//! The line carries what an auditor asks for (when, what, in which deployment, to which
//! account, because of which object, and how it ended) and never a secret: notes name
//! accounts by email or id, never a password, hash, token or URI.

use kube::{Resource, ResourceExt};

use super::context::Context;

/// The `target` of audit lines, to route or filter them (`RUST_LOG=librechat_operator::audit=info`).
pub const AUDIT_TARGET: &str = "librechat_operator::audit";

/// One change in LibreChat.
pub struct Change {
    /// What was done, as the event reason: `Created`, `PasswordRotated`, `Banned`, …
    pub action: &'static str,
    /// The instance written to (`namespace/name`).
    pub instance: String,
    /// The LibreChat account concerned (`_id` hex), or the subject of an IP ban (`ip:<addr>`)
    /// or an invitation (`invite:<email>`).
    pub account: Option<String>,
    /// What happened, for people.
    pub note: String,
    /// Whether the change was made, or refused by a rule.
    pub outcome: ChangeOutcome,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeOutcome {
    Applied,
    /// Not made because a rule forbids it (the event is a Warning).
    Refused,
}

impl ChangeOutcome {
    fn as_str(self) -> &'static str {
        match self {
            ChangeOutcome::Applied => "applied",
            ChangeOutcome::Refused => "refused",
        }
    }
}

impl Change {
    pub fn applied(
        action: &'static str,
        instance: String,
        account: Option<String>,
        note: String,
    ) -> Self {
        Change {
            action,
            instance,
            account,
            note,
            outcome: ChangeOutcome::Applied,
        }
    }

    pub fn refused(self) -> Self {
        Change {
            outcome: ChangeOutcome::Refused,
            ..self
        }
    }
}

impl Context {
    /// Records a change: the audit line first (it must not depend on the API server), then the
    /// event.
    pub async fn changed<K: Resource<DynamicType = ()>>(&self, obj: &K, change: Change) {
        write_line(obj, &change);
        let warning = change.outcome == ChangeOutcome::Refused;
        self.event(obj, warning, change.action, change.note).await;
    }
}

fn write_line<K: Resource<DynamicType = ()>>(obj: &K, change: &Change) {
    tracing::info!(
        target: AUDIT_TARGET,
        audit = true,
        action = change.action,
        instance = %change.instance,
        account = change.account.as_deref().unwrap_or(""),
        object_kind = %K::kind(&()),
        object_namespace = %obj.namespace().unwrap_or_default(),
        object_name = %obj.name_any(),
        object_uid = %obj.uid().unwrap_or_default(),
        outcome = change.outcome.as_str(),
        "{}",
        one_line(&change.note)
    );
}

/// The note with its control characters escaped: a note carries text from specs (a ban's
/// reason), and a line break in it must not forge further audit lines in a text log.
fn one_line(note: &str) -> std::borrow::Cow<'_, str> {
    if !note.chars().any(char::is_control) {
        return note.into();
    }
    note.chars()
        .map(|c| match c.is_control() {
            true => c.escape_default().to_string(),
            false => c.to_string(),
        })
        .collect::<String>()
        .into()
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn a_note_cannot_forge_a_second_audit_line() {
        let forged = "spam\n2026-12-06T00:00:00Z INFO audit: action=\"Lifted\"\r\u{1b}[2J";
        let line = one_line(forged);
        assert!(!line.chars().any(char::is_control), "{line}");
        assert!(line.starts_with("spam\\n2026-12-06"), "{line}");
        assert_eq!(one_line("plain \"note\" é"), "plain \"note\" é");
    }
}
