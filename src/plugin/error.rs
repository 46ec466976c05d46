//! What can go wrong in `kubectl librechat`: every message says what was being done and what
//! to do about it, and none carries a Secret's value (URIs included).

use crate::controller::secrets::SecretError;
use crate::librechat::{ConnectError, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("cannot load the Kubernetes configuration: {0}. Set KUBECONFIG, pass --kubeconfig, or check --context")]
    Config(String),
    #[error(
        "you are not allowed to {what}: {message}. Ask for the permission or use another --context"
    )]
    Forbidden { what: String, message: String },
    #[error("{what} failed: {source}")]
    Api {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("the API server did not answer ({what}) within {}s", seconds)]
    Timeout { what: String, seconds: u64 },
    #[error("LibreChatInstance '{name}' not found in namespace '{namespace}'")]
    InstanceNotFound { namespace: String, name: String },
    #[error("no LibreChatInstance in namespace '{0}': pass -n NAMESPACE (or -A for status)")]
    NoInstance(String),
    #[error("namespace '{namespace}' has several LibreChatInstances ({}): name one", names.join(", "))]
    SeveralInstances {
        namespace: String,
        names: Vec<String>,
    },
    #[error("you may not read Secret '{name}' in namespace '{namespace}', which holds the instance's MongoDB URI: this command reads LibreChat's database and needs `get` on that Secret. Ask for access, or run it as someone who has it")]
    SecretForbidden { namespace: String, name: String },
    #[error("--mongodb-host: {0}")]
    MongoHost(String),
    #[error("the instance's MongoDB URI: {0}")]
    Secret(#[source] SecretError),
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot print JSON: {0}")]
    Json(#[from] serde_json::Error),
}
