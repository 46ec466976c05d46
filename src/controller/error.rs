//! Errors that make a reconcile retry. Problems a person must fix (bad spec, missing Secret)
//! are not errors here: they are written to status and the object waits for a change.

use crate::librechat::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("Kubernetes API request failed: {0}. Check the operator's RBAC and its connection to the API server")]
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
