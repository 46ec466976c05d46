//! What can go wrong when talking to LibreChat's stores. Messages name the failing
//! dependency and never carry credentials: driver errors are passed through [`redact`].

use std::time::Duration;

use mongodb::error::{ErrorKind, WriteFailure};

#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    #[error("MongoDB {operation} failed: {message}. {}", advice.text())]
    Mongo {
        operation: &'static str,
        message: String,
        duplicate_key: bool,
        /// Whether the same call may succeed later (network, election, overload), as opposed
        /// to a refusal that needs a person (authentication, permissions, a bad request).
        retryable: bool,
        /// What a person can do about it.
        advice: MongoAdvice,
    },
    #[error("{store} did not answer {operation} within {}s: the server may be stalled or a connection half-open. The operator retries", after.as_secs())]
    Timeout {
        store: &'static str,
        operation: &'static str,
        after: Duration,
    },
    /// The server refused the operator's credentials: no retry helps until a person fixes
    /// the URI's user name or password (or the database user).
    #[error("{store} refused the operator's credentials ({operation}): the user name or password in the instance's {store} URI is wrong, or that user does not exist. Fix the URI in the Secret or the user on the server; the operator reconnects when the Secret changes and keeps checking")]
    Authentication {
        store: &'static str,
        operation: &'static str,
    },
    #[error("Redis {operation} failed: {message}. Check that Redis is up; LibreChat may serve stale cached data until it is reachable again")]
    Redis {
        operation: &'static str,
        message: String,
    },
    /// Redis answers, but refuses the command: a person must change the user's ACL or the URI.
    #[error("Redis refused {operation}: {message}. The URI's Redis user may not run the command (an ACL without DEL or SCAN on LibreChat's keys), or the URI names a read-only replica: fix the user's ACL or the URI in the instance's Secret; the operator retries, and LibreChat may serve stale cached data until then")]
    RedisRefused {
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

/// What a person can do about a MongoDB failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MongoAdvice {
    /// An outage or a moment's refusal (an election, overload, a time limit): wait.
    Wait,
    /// The database user may not run the command.
    GrantRoles,
    /// The server refused this request (a validator, a size limit): its answer says why.
    ReadTheAnswer,
    /// The driver failed without the server's word (an incompatible server, a document it
    /// could not read, its TLS settings): the error says what.
    Other,
}

impl MongoAdvice {
    fn of(err: &mongodb::error::Error, retryable: bool) -> Self {
        // 13: Unauthorized; 8000: Atlas's shared tiers refusing an action to the user.
        const NOT_ALLOWED: [i32; 2] = [13, 8000];
        match (retryable, command_code(err)) {
            (true, _) => MongoAdvice::Wait,
            (false, Some(code)) if NOT_ALLOWED.contains(&code) => MongoAdvice::GrantRoles,
            (false, Some(_)) => MongoAdvice::ReadTheAnswer,
            (false, None) => MongoAdvice::Other,
        }
    }

    fn text(&self) -> &'static str {
        match self {
            MongoAdvice::Wait => "Check that MongoDB is up and reachable from the operator; the operator retries",
            MongoAdvice::GrantRoles => "MongoDB refused the request: the database user in the instance's URI lacks a role it needs (readWrite on LibreChat's database, and createIndex); grant it, the operator retries",
            MongoAdvice::ReadTheAnswer => "MongoDB refused the request for the reason it gives (a validator or a size limit on the collection, say): the operator retries, but only a change on the server makes it pass",
            MongoAdvice::Other => "The operator's MongoDB driver could not complete the request for the reason it gives (the server's version, a document it could not read, the URI's TLS options): the operator retries, but it passes only once that is fixed",
        }
    }
}

/// The server's error code, when the server answered with one.
fn command_code(err: &mongodb::error::Error) -> Option<i32> {
    match err.kind.as_ref() {
        ErrorKind::Command(e) => Some(e.code),
        ErrorKind::Write(WriteFailure::WriteError(e)) => Some(e.code),
        ErrorKind::Write(WriteFailure::WriteConcernError(e)) => Some(e.code),
        _ => None,
    }
}

impl StoreError {
    pub fn mongo(operation: &'static str, err: mongodb::error::Error) -> Self {
        if is_auth_failure(&err) {
            return StoreError::Authentication {
                store: "MongoDB",
                operation,
            };
        }
        let duplicate_key = is_duplicate_key(&err);
        let retryable = is_transient(&err);
        StoreError::Mongo {
            operation,
            message: redact(&describe(&err)),
            duplicate_key,
            retryable,
            advice: MongoAdvice::of(&err, retryable),
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
            StoreError::Timeout { .. }
            | StoreError::Redis { .. }
            | StoreError::RedisRefused { .. }
            | StoreError::Contended(_) => true,
            StoreError::Hash(_) | StoreError::EmailTaken(_) | StoreError::Authentication { .. } => {
                false
            }
        }
    }

    /// What failed and what to expect, without what the server or the driver said (the
    /// servers' addresses, the server's own message), for readers who may not see where the
    /// stores run; `None` when the message holds nothing of the kind.
    pub fn without_server_details(&self) -> Option<String> {
        Some(match self {
            StoreError::Mongo {
                operation,
                retryable: true,
                ..
            } => format!("MongoDB {operation} failed; the operator retries"),
            StoreError::Mongo {
                operation,
                advice: MongoAdvice::Other,
                ..
            } => format!("MongoDB {operation} failed; the operator retries"),
            StoreError::Mongo { operation, .. } => {
                format!("MongoDB refused {operation}; the operator retries")
            }
            StoreError::Redis { operation, .. } => {
                format!("Redis {operation} failed; the operator retries")
            }
            StoreError::RedisRefused { operation, .. } => {
                format!("Redis refused {operation}; the operator retries")
            }
            _ => return None,
        })
    }

    /// Whether the server refused the operator's credentials.
    pub fn is_auth_failure(&self) -> bool {
        matches!(self, StoreError::Authentication { .. })
    }

    pub fn redis(operation: &'static str, err: redis::RedisError) -> Self {
        // A Redis that requires a password answers a URI without one with NOAUTH at the first
        // command (the connection itself succeeds), a wrong one with WRONGPASS: credentials a
        // person must fix, not an outage to wait out.
        let refused_credentials = matches!(err.code(), Some("NOAUTH" | "WRONGPASS"));
        if err.kind() == redis::ErrorKind::AuthenticationFailed || refused_credentials {
            return StoreError::Authentication {
                store: "Redis",
                operation,
            };
        }
        let message = redact(&err.to_string());
        match err.kind() {
            redis::ErrorKind::Server(
                redis::ServerErrorKind::NoPerm | redis::ServerErrorKind::ReadOnly,
            ) => StoreError::RedisRefused { operation, message },
            _ => StoreError::Redis { operation, message },
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
            StoreError::Redis { .. } | StoreError::RedisRefused { .. } => "redis",
            StoreError::Authentication { store, .. } if *store == "Redis" => "redis_auth",
            StoreError::Authentication { .. } => "mongo_auth",
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

/// Whether MongoDB refused the credentials. The driver says so directly for the call whose
/// connection failed to authenticate; the calls after it (the server marked unusable) fail
/// server selection, and only the selection's message, which quotes each server's last error,
/// still says why: read as an outage, the same refusal would flip between a problem a person
/// must fix and one the operator waits out.
fn is_auth_failure(err: &mongodb::error::Error) -> bool {
    const AUTHENTICATION_FAILED: i32 = 18;
    // The driver names a refused handshake `<mechanism> failure: ...`.
    const MECHANISMS: [&str; 6] = [
        "SCRAM failure:",
        "MONGODB-X509 failure:",
        "PLAIN failure:",
        "MONGODB-AWS failure:",
        "MONGODB-OIDC failure:",
        "GSSAPI failure:",
    ];
    match err.kind.as_ref() {
        ErrorKind::Authentication { .. } => true,
        ErrorKind::Command(e) => e.code == AUTHENTICATION_FAILED,
        ErrorKind::ServerSelection { message, .. } => {
            MECHANISMS.iter().any(|m| message.contains(m))
        }
        _ => false,
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
    // Codes MongoDB documents as transient: elections, shutdowns, overload, network (the
    // retryable-writes list), a write conflict (112), which a second try resolves, a time
    // limit met (50), a write concern not satisfied in time (64), an operation interrupted
    // (11601), and Cosmos DB's request-rate throttling (16500).
    const TRANSIENT_CODES: [i32; 18] = [
        6, 7, 50, 64, 89, 91, 112, 189, 262, 9001, 10107, 11600, 11601, 11602, 13435, 13436, 134,
        16500,
    ];
    match err.kind.as_ref() {
        ErrorKind::Io(_)
        | ErrorKind::ServerSelection { .. }
        | ErrorKind::ConnectionPoolCleared { .. } => true,
        ErrorKind::Command(e) => TRANSIENT_CODES.contains(&e.code),
        ErrorKind::Write(WriteFailure::WriteConcernError(e)) => TRANSIENT_CODES.contains(&e.code),
        // A node stepping down or shutting down refuses a write for the moment, not for good;
        // told as a write error (not a command error) it must not read as a refusal to fix.
        ErrorKind::Write(WriteFailure::WriteError(e)) => TRANSIENT_CODES.contains(&e.code),
        _ => false,
    }
}

/// A driver error as a person reads it: the text of its kind, without the driver's dump of
/// labels, sources and topology. That dump runs to several hundred characters in every
/// dependent's status, and its order (hash sets) and timings change from one attempt to the
/// next, so each retry during an outage would rewrite statuses that say nothing new.
fn describe(err: &mongodb::error::Error) -> String {
    match err.kind.as_ref() {
        ErrorKind::ServerSelection { message, .. } => describe_selection(message),
        ErrorKind::Write(WriteFailure::WriteError(e)) => {
            refusal("write", e.code, e.code_name.as_deref(), &e.message)
        }
        ErrorKind::Write(WriteFailure::WriteConcernError(e)) => {
            refusal("write concern", e.code, Some(&e.code_name), &e.message)
        }
        ErrorKind::Command(e) => refusal("command", e.code, Some(&e.code_name), &e.message),
        // The driver shows these by their Debug form, details and all.
        ErrorKind::Write(_) | ErrorKind::InsertMany(_) | ErrorKind::BulkWrite(_) => {
            "the server refused a write".into()
        }
        kind => without_labels(&kind.to_string()).to_string(),
    }
}

/// The server's refusal of an operation as its code, name and message, without the values
/// it quotes: the driver shows a write error by its Debug form, with the server's `errInfo`
/// (a validator's copy of the rejected document), and a duplicate key's message ends in the
/// key's value (`dup key: { ... }`); either may be a password hash or a token's.
fn refusal(what: &str, code: i32, name: Option<&str>, message: &str) -> String {
    // Values come quoted in braces ("dup key: { ... }", "to execute command { update: ... }",
    // with the documents of the command): nothing from the first brace on is told.
    let message = message.split(" dup key:").next().unwrap_or(message);
    let message = message.split('{').next().unwrap_or(message).trim_end();
    let name = name.filter(|n| !n.is_empty()).unwrap_or("unnamed");
    format!("the server refused the {what}: error {code} ({name}): {message}")
}

/// A kind's text up to the first nested error's labels: some kinds embed the error that
/// caused them (a cleared connection pool says which operation failed, with its labels, a
/// hash set whose order varies), and a text that changes between attempts would rewrite
/// every status during an outage without saying anything new.
fn without_labels(text: &str) -> &str {
    text.split(", labels: ").next().unwrap_or(text)
}

/// The driver's server selection failure: its headline, then each server known by address,
/// sorted, with the error that made it unusable (`{ Address: A, Type: T, ..., Error: Kind: E,
/// labels: ... }` in the driver's text). Only the headline if the text has another shape.
fn describe_selection(message: &str) -> String {
    let (headline, topology) = message.split_once(". Topology: ").unwrap_or((message, ""));
    let mut servers: Vec<String> = topology
        .split("{ Address: ")
        .skip(1)
        .filter_map(|server| {
            let (address, rest) = server.split_once(", Type: ")?;
            let kind = rest.split([',', ' ']).next().unwrap_or_default();
            let error = rest.split_once("Error: Kind: ").map(|(_, e)| {
                e.split(", labels: ")
                    .next()
                    .unwrap_or(e)
                    .trim_end_matches([' ', '}'])
            });
            Some(match error {
                Some(error) => format!("{address}: {error}"),
                None => format!("{address}: {kind}"),
            })
        })
        .collect();
    servers.sort();
    match servers.is_empty() {
        true => headline.to_string(),
        false => format!("{headline} ({})", servers.join("; ")),
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
        // A password may hold ',' or ')' unencoded (drivers accept them): the authority runs
        // to the path, the query or the end of the word, and its last '@' ends the userinfo.
        let authority_end = tail
            .find(['/', '?', '#', '"', '\''])
            .into_iter()
            .chain(tail.find(char::is_whitespace))
            .min()
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
    use super::{describe, describe_selection, is_transient, redact, without_labels, StoreError};

    /// An ACL that refuses DEL, or a read-only replica, is a person's to fix: the message
    /// says so instead of "check that Redis is up" (its ping still answers).
    #[test]
    fn a_redis_that_refuses_a_command_says_what_to_fix() {
        use redis::{ErrorKind, ServerErrorKind};
        for kind in [ServerErrorKind::NoPerm, ServerErrorKind::ReadOnly] {
            let refused = redis::RedisError::from((ErrorKind::Server(kind), "refused"));
            let e = StoreError::redis("dropping cached entries", refused);
            assert!(matches!(e, StoreError::RedisRefused { .. }), "{e}");
            assert!(e.to_string().contains("ACL"), "{e}");
        }
        let down = redis::RedisError::from((ErrorKind::Io, "connection refused"));
        let e = StoreError::redis("dropping cached entries", down);
        assert!(matches!(e, StoreError::Redis { .. }), "{e}");
    }

    /// A validator's refusal (`errInfo` quotes the rejected document) and a duplicate key
    /// (the message quotes the key) never carry the values they quote into a message.
    #[test]
    fn a_refused_write_is_told_without_the_values_it_quotes() {
        use mongodb::bson::doc;
        use mongodb::error::{Error, ErrorKind, WriteFailure};
        let hash = "$2a$10$abcdefghijklmnopqrstuuVWXYZabcdefghijklmnopqrstu";
        let rejected: mongodb::error::WriteError = mongodb::bson::from_document(doc! {
            "code": 121, "codeName": "DocumentValidationFailure",
            "errmsg": "Document failed validation",
            "errInfo": { "details": { "consideredValue": hash } },
        })
        .unwrap();
        let err = Error::from(ErrorKind::Write(WriteFailure::WriteError(rejected)));
        let said = describe(&err);
        assert!(!said.contains(hash), "{said}");
        assert_eq!(
            said,
            "the server refused the write: error 121 (DocumentValidationFailure): Document failed validation"
        );
        let duplicate: mongodb::error::WriteError = mongodb::bson::from_document(doc! {
            "code": 11000,
            "errmsg": format!("E11000 duplicate key error collection: db.tokens index: token_1 dup key: {{ token: \"{hash}\" }}"),
        })
        .unwrap();
        let err = Error::from(ErrorKind::Write(WriteFailure::WriteError(duplicate)));
        let said = describe(&err);
        assert_eq!(
            said,
            "the server refused the write: error 11000 (unnamed): E11000 duplicate key error collection: db.tokens index: token_1"
        );
        // An authorization failure quotes the whole command, its documents included.
        let refused: mongodb::error::CommandError = mongodb::bson::from_document(doc! {
            "code": 13, "codeName": "Unauthorized",
            "errmsg": format!("not authorized on LibreChat to execute command {{ update: \"users\", updates: [ {{ u: {{ $set: {{ password: \"{hash}\" }} }} }} ] }}"),
        })
        .unwrap();
        let said = describe(&Error::from(ErrorKind::Command(refused)));
        assert_eq!(
            said,
            "the server refused the command: error 13 (Unauthorized): not authorized on LibreChat to execute command"
        );
    }

    /// helper-48 F6: a write refused by a primary stepping down (or shutting down) is told as
    /// a write error; it was classed permanent, so the object stalled on an election.
    #[test]
    fn a_write_refused_during_an_election_is_transient_a_validation_refusal_is_not() {
        use mongodb::bson::doc;
        use mongodb::error::{Error, ErrorKind, WriteFailure};
        let write_error = |code: i32, name: &str| {
            let e: mongodb::error::WriteError = mongodb::bson::from_document(doc! {
                "code": code, "codeName": name, "errmsg": "refused",
            })
            .unwrap();
            Error::from(ErrorKind::Write(WriteFailure::WriteError(e)))
        };
        assert!(is_transient(&write_error(10107, "NotWritablePrimary")));
        assert!(is_transient(&write_error(
            11602,
            "InterruptedDueToReplStateChange"
        )));
        assert!(is_transient(&write_error(112, "WriteConflict")));
        assert!(!is_transient(&write_error(
            121,
            "DocumentValidationFailure"
        )));
        assert!(!is_transient(&write_error(11000, "DuplicateKey")));
    }

    #[test]
    fn a_cleared_pool_says_what_failed_without_the_labels_that_vary() {
        let cleared = |labels: &str| {
            format!("Connection pool for db:27017 cleared because another operation failed with: Kind: I/O error: Broken pipe (os error 32), labels: {{{labels}}}, source: None, server response: None")
        };
        let one = cleared("\"RetryableWriteError\", \"ResumableChangeStreamError\"");
        let other = cleared("\"ResumableChangeStreamError\", \"RetryableWriteError\"");
        assert_eq!(without_labels(&one), without_labels(&other));
        assert_eq!(
            without_labels(&one),
            "Connection pool for db:27017 cleared because another operation failed with: Kind: I/O error: Broken pipe (os error 32)"
        );
        assert_eq!(
            without_labels("I/O error: timed out"),
            "I/O error: timed out"
        );
    }

    #[test]
    fn a_selection_failure_names_each_server_and_its_error_and_nothing_that_varies() {
        let refused = "Server selection timeout: No available servers. Topology: { Type: ReplicaSetNoPrimary, Set Name: rs, Max Set Version: 1, Max Election ID: 7fffffff0000000000000001, Servers: [ { Address: db-1:27017, Type: Unknown, Error: Kind: I/O error: Connection refused (os error 111), labels: {\"SystemOverloadedError\", \"RetryableError\"}, source: None, server response: None }, { Address: db-0:27017, Type: Unknown, Error: Kind: I/O error: timed out, labels: {}, source: None, server response: None } ] }";
        let reordered = "Server selection timeout: No available servers. Topology: { Type: ReplicaSetNoPrimary, Set Name: rs, Max Set Version: 1, Max Election ID: 7fffffff0000000000000002, Servers: [ { Address: db-0:27017, Type: Unknown, Error: Kind: I/O error: timed out, labels: {}, source: None, server response: None }, { Address: db-1:27017, Type: Unknown, Error: Kind: I/O error: Connection refused (os error 111), labels: {\"RetryableError\", \"SystemOverloadedError\"}, source: None, server response: None } ] }";
        let said = describe_selection(refused);
        assert_eq!(
            said,
            "Server selection timeout: No available servers (db-0:27017: I/O error: timed out; db-1:27017: I/O error: Connection refused (os error 111))"
        );
        assert_eq!(describe_selection(reordered), said);
        let secondary = "Server selection timeout: None of the available servers suitable for criteria Predicate. Topology: { Type: ReplicaSetNoPrimary, Servers: [ { Address: db-0:27017, Type: RsSecondary, Average RTT: 1.2ms, Last Update Time: 2026-12-05 } ] }";
        assert_eq!(
            describe_selection(secondary),
            "Server selection timeout: None of the available servers suitable for criteria Predicate (db-0:27017: RsSecondary)"
        );
        assert_eq!(describe_selection("something else"), "something else");
    }

    #[test]
    fn credentials_are_removed() {
        assert_eq!(
            redact("failed mongodb://admin:s3cret@db:27017/LibreChat now"),
            "failed mongodb://***@db:27017/LibreChat now"
        );
        assert_eq!(redact("redis://:pw@cache:6379"), "redis://***@cache:6379");
        assert_eq!(redact("no uri here"), "no uri here");
        assert_eq!(redact("mongodb://db:27017"), "mongodb://db:27017");
        assert_eq!(
            redact("(mongodb://u:p,w)x@h1:27017,h2:27017/db?tls=true)"),
            "(mongodb://***@h1:27017,h2:27017/db?tls=true)"
        );
        assert_eq!(
            redact("redis://u:p@cache:6379, then mongodb://a:b@db"),
            "redis://***@cache:6379, then mongodb://***@db"
        );
    }
}
