//! What can go wrong when talking to LibreChat's stores. Messages name the failing
//! dependency and never carry credentials: driver errors are passed through [`redact`].

use std::time::Duration;

use mongodb::error::{ErrorKind, WriteFailure};

#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    #[error("MongoDB {operation} failed: {message}. {}", if *retryable { "Check that MongoDB is up and reachable from the operator; the operator retries" } else { "MongoDB refused the request: check the URI's credentials and the database user's roles" })]
    Mongo {
        operation: &'static str,
        message: String,
        duplicate_key: bool,
        /// Whether the same call may succeed later (network, election, overload), as opposed
        /// to a refusal that needs a person (authentication, permissions, a bad request).
        retryable: bool,
    },
    #[error("{store} did not answer {operation} within {}s: the server may be stalled or a connection half-open. The operator retries", after.as_secs())]
    Timeout {
        store: &'static str,
        operation: &'static str,
        after: Duration,
    },
    #[error("Redis {operation} failed: {message}. Check that Redis is up; LibreChat may serve stale cached data until it is reachable again")]
    Redis {
        operation: &'static str,
        message: String,
    },
    /// LibreChat kept changing documents we update behind a compare-and-set; the next
    /// reconcile retries, keeping what was done.
    #[error("{0}; retrying")]
    Contended(&'static str),
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("another account already uses the email '{0}'")]
    EmailTaken(String),
}

impl StoreError {
    pub fn mongo(operation: &'static str, err: mongodb::error::Error) -> Self {
        let duplicate_key = is_duplicate_key(&err);
        StoreError::Mongo {
            operation,
            message: redact(&err.to_string()),
            duplicate_key,
            retryable: is_transient(&err),
        }
    }

    pub fn timeout(store: &'static str, operation: &'static str, after: Duration) -> Self {
        StoreError::Timeout {
            store,
            operation,
            after,
        }
    }

    /// Whether retrying the same call can help without anybody changing anything.
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Mongo { retryable, .. } => *retryable,
            StoreError::Timeout { .. } | StoreError::Redis { .. } | StoreError::Contended(_) => {
                true
            }
            StoreError::Hash(_) | StoreError::EmailTaken(_) => false,
        }
    }

    pub fn redis(operation: &'static str, err: redis::RedisError) -> Self {
        StoreError::Redis {
            operation,
            message: redact(&err.to_string()),
        }
    }

    pub fn is_duplicate_key(&self) -> bool {
        matches!(
            self,
            StoreError::Mongo {
                duplicate_key: true,
                ..
            }
        )
    }

    /// A short label for metrics and event reasons.
    pub fn label(&self) -> &'static str {
        match self {
            StoreError::Mongo { .. } => "mongo",
            StoreError::Timeout { store, .. } if *store == "Redis" => "redis_timeout",
            StoreError::Timeout { .. } => "mongo_timeout",
            StoreError::Redis { .. } => "redis",
            StoreError::Contended(_) => "contended",
            StoreError::Hash(_) => "hash",
            StoreError::EmailTaken(_) => "email_taken",
        }
    }
}

fn is_duplicate_key(err: &mongodb::error::Error) -> bool {
    const DUPLICATE_KEY: i32 = 11000;
    match err.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(e)) => e.code == DUPLICATE_KEY,
        ErrorKind::Command(e) => e.code == DUPLICATE_KEY,
        _ => err.to_string().contains("E11000"),
    }
}

/// The driver's own retryability, from what it exposes: network and server-selection failures,
/// a cleared pool, and errors labelled retryable are transient; authentication failures,
/// refused commands and invalid requests are not.
fn is_transient(err: &mongodb::error::Error) -> bool {
    use mongodb::error::{RETRYABLE_ERROR, RETRYABLE_WRITE_ERROR, SYSTEM_OVERLOADED_ERROR};
    if [
        RETRYABLE_WRITE_ERROR,
        RETRYABLE_ERROR,
        SYSTEM_OVERLOADED_ERROR,
    ]
    .iter()
    .any(|label| err.contains_label(label))
    {
        return true;
    }
    // Codes MongoDB documents as transient: elections, shutdowns, overload, network.
    const TRANSIENT_CODES: [i32; 13] = [
        6, 7, 89, 91, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436, 134,
    ];
    match err.kind.as_ref() {
        ErrorKind::Io(_)
        | ErrorKind::ServerSelection { .. }
        | ErrorKind::ConnectionPoolCleared { .. } => true,
        ErrorKind::Command(e) => TRANSIENT_CODES.contains(&e.code),
        ErrorKind::Write(WriteFailure::WriteConcernError(e)) => TRANSIENT_CODES.contains(&e.code),
        _ => false,
    }
}

/// Removes anything that looks like URI credentials (`scheme://user:password@`) from a message.
/// Drivers sometimes echo the connection string; status, events and logs must never show it.
pub fn redact(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(scheme_end) = rest.find("://") {
        let (head, tail) = rest.split_at(scheme_end + 3);
        out.push_str(head);
        let authority_end = tail
            .find(['/', ' ', '"', '\'', ',', ')'])
            .unwrap_or(tail.len());
        match tail[..authority_end].rfind('@') {
            Some(at) => {
                out.push_str("***@");
                rest = &tail[at + 1..];
            }
            None => rest = tail,
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn credentials_are_removed() {
        assert_eq!(
            redact("failed mongodb://admin:s3cret@db:27017/LibreChat now"),
            "failed mongodb://***@db:27017/LibreChat now"
        );
        assert_eq!(redact("redis://:pw@cache:6379"), "redis://***@cache:6379");
        assert_eq!(redact("no uri here"), "no uri here");
        assert_eq!(redact("mongodb://db:27017"), "mongodb://db:27017");
    }
}
