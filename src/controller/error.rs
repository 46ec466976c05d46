//! Errors that make a reconcile retry. Problems a person must fix (bad spec, missing Secret)
//! are not errors here: they are written to status and the object waits for a change.

use crate::librechat::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("Kubernetes API request failed: {0}. {advice}", advice = what_to_do(.0))]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Blocked(String),
    #[error("finalizer: {0}")]
    Finalizer(String),
    #[error("the reconcile did not finish within {}s (a store or the API server is too slow or stalled); it was abandoned and is retried", .0.as_secs())]
    Deadline(std::time::Duration),
}

impl ReconcileError {
    /// A short label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            ReconcileError::Kube(_) => "kube",
            ReconcileError::Store(e) => e.label(),
            ReconcileError::Blocked(_) => "blocked",
            ReconcileError::Finalizer(_) => "finalizer",
            ReconcileError::Deadline(_) => "deadline",
        }
    }
}

/// What a person reading a failed API request should do: the advice depends on how it failed
/// (a refused finalizer patch is a race, not a missing permission).
fn what_to_do(error: &kube::Error) -> &'static str {
    match error {
        kube::Error::Api(e) => match e.code {
            401 | 403 => "Check the operator's RBAC (the chart's ClusterRole and its bindings) and its service account",
            404 => "The object is gone; nothing is left to do for it",
            409 | 422 => "The object changed while it was being written (or the write failed its schema); the operator retries on its newest version",
            429 => "The API server is throttling the operator; it retries after a pause",
            _ => "The API server failed the request; the operator retries (check the API server's health if this persists)",
        },
        _ => "Check the operator's connection to the API server; the operator retries",
    }
}

impl From<kube::runtime::finalizer::Error<ReconcileError>> for ReconcileError {
    fn from(e: kube::runtime::finalizer::Error<ReconcileError>) -> Self {
        use kube::runtime::finalizer::Error as F;
        match e {
            F::ApplyFailed(inner) | F::CleanupFailed(inner) => inner,
            F::AddFinalizer(k) | F::RemoveFinalizer(k) => ReconcileError::Kube(k),
            other => ReconcileError::Finalizer(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(code: u16) -> ReconcileError {
        ReconcileError::Kube(kube::Error::Api(
            kube::core::Status::failure("refused", "Test")
                .with_code(code)
                .boxed(),
        ))
    }

    #[test]
    fn only_a_refusal_of_permission_points_at_rbac() {
        assert!(refused(403).to_string().contains("RBAC"));
        for code in [404, 409, 422, 429, 500] {
            let text = refused(code).to_string();
            assert!(!text.contains("RBAC"), "{code}: {text}");
        }
        assert!(refused(422)
            .to_string()
            .contains("retries on its newest version"));
    }
}
