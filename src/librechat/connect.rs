//! Turning connection URIs into clients, with errors that say which part is wrong and never
//! repeat the URI.

use std::time::Duration;

use mongodb::options::ClientOptions;
use mongodb::{Client, Database};

use super::cache::RedisCache;
use super::error::redact;

/// LibreChat's default database when the URI names none.
pub const DEFAULT_DATABASE: &str = "LibreChat";
/// How long connecting, and finding a usable MongoDB server, may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("the {what} URI is not valid: {reason}. Fix the value in the Secret")]
    InvalidUri { what: &'static str, reason: String },
    #[error("{what} is unreachable: {reason}")]
    Unreachable { what: &'static str, reason: String },
    #[error("{what} refused the operator's credentials: the user name or password in the URI is wrong, or that user does not exist. Fix the URI in the Secret or the user on the server")]
    Refused { what: &'static str },
}

/// Parses a MongoDB URI and builds a pooled client for it. Does not contact the server; the
/// caller pings. The database is the URI's path, as in LibreChat's `MONGO_URI`.
pub async fn connect_mongo(uri: &str) -> Result<(Client, Database), ConnectError> {
    let invalid = |reason: String| ConnectError::InvalidUri {
        what: "MongoDB",
        reason: redact(&reason),
    };
    if !(uri.starts_with("mongodb://") || uri.starts_with("mongodb+srv://")) {
        return Err(invalid(
            "it must start with mongodb:// or mongodb+srv://".into(),
        ));
    }
    // The driver's parse errors quote the part of the URI they choke on, which may be a piece
    // of the password: they are never passed on, only our own description of the problem.
    let mut options = tokio::time::timeout(CONNECT_TIMEOUT, ClientOptions::parse(uri))
        .await
        .map_err(|_| ConnectError::Unreachable {
            what: "MongoDB",
            reason: "resolving the SRV record timed out".into(),
        })?
        .map_err(|e| match e.kind.as_ref() {
            // A mongodb+srv URI is resolved while parsing: a DNS outage is not a bad URI.
            mongodb::error::ErrorKind::DnsResolve { .. } | mongodb::error::ErrorKind::Io(_) => {
                ConnectError::Unreachable {
                    what: "MongoDB",
                    reason: "resolving the URI's SRV or TXT record failed (a misspelt host, or DNS trouble): check the host and DNS from the operator's pod; the operator retries".into(),
                }
            }
            _ => invalid(uri_problem(uri)),
        })?;
    options.app_name = Some("librechat-operator".into());
    options.command_event_handler = Some(mongodb::event::EventHandler::callback(|event| {
        use mongodb::event::command::CommandEvent;
        match event {
            CommandEvent::Succeeded(e) => {
                crate::metrics::global().store_operation("mongo", &e.command_name, true, e.duration)
            }
            CommandEvent::Failed(e) => crate::metrics::global().store_operation(
                "mongo",
                &e.command_name,
                false,
                e.duration,
            ),
            CommandEvent::Started(_) => {}
            _ => {}
        }
    }));
    insist_on_the_primary(&mut options);
    options
        .server_selection_timeout
        .get_or_insert(CONNECT_TIMEOUT);
    options.connect_timeout.get_or_insert(CONNECT_TIMEOUT);
    let database = options
        .default_database
        .clone()
        .unwrap_or_else(|| DEFAULT_DATABASE.to_string());
    let client = Client::with_options(options).map_err(|_| invalid(uri_problem(uri)))?;
    let db = client.database(&database);
    Ok((client, db))
}

/// Every read goes to the primary and every write is acknowledged, whatever LibreChat's URI
/// asks for its own reads (`readPreference=secondaryPreferred`, `w=0`): the operator decides
/// from what it reads whether an account it created is gone, whether a record is its own, and
/// a lagging secondary would have it take its own account for a deleted one and give up its
/// ownership record.
fn insist_on_the_primary(options: &mut ClientOptions) {
    use mongodb::options::{Acknowledgment, ReadPreference, SelectionCriteria};
    options.selection_criteria = Some(SelectionCriteria::ReadPreference(ReadPreference::Primary));
    let unacknowledged = options
        .write_concern
        .as_ref()
        .is_some_and(|c| c.w == Some(Acknowledgment::Nodes(0)));
    if unacknowledged {
        options.write_concern = None;
    }
}

/// Says what is wrong with a URI the driver refused, without quoting any of it.
fn uri_problem(uri: &str) -> String {
    let rest = uri.split_once("://").map(|(_, r)| r).unwrap_or_default();
    // The user information ends at the last '@' before the path: everything the driver could
    // misread as a host or an option if a reserved character were left unencoded.
    let authority = rest.split(['/']).next().unwrap_or_default();
    let userinfo = rest.rfind('@').map(|at| &rest[..at]);
    let reserved_in_userinfo = userinfo.is_some_and(|u| {
        let (user, password) = u.split_once(':').unwrap_or((u, ""));
        [user, password]
            .iter()
            .any(|part| part.contains(['@', ':', '/', '?', '#', '[', ']']) || bad_percent(part))
    });
    if reserved_in_userinfo || (userinfo.is_some() && !authority.contains('@')) {
        return "the user name or password contains a reserved character (one of : / ? # [ ] @ %) that is not percent-encoded; encode it (for example ? as %3F, @ as %40)".into();
    }
    if authority
        .trim_start_matches(|c| c != '@')
        .trim_start_matches('@')
        .is_empty()
    {
        return "it names no host".into();
    }
    "the driver could not parse its hosts or options; check the host list and the query string"
        .into()
}

/// Whether `text` has a `%` that does not start a two-digit hex escape.
fn bad_percent(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.iter().enumerate().any(|(i, b)| {
        *b == b'%'
            && !(bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
    })
}

/// Parses a Redis URI and opens a self-reconnecting connection to it.
pub async fn connect_redis(uri: &str, key_prefix: &str) -> Result<RedisCache, ConnectError> {
    if !(uri.starts_with("redis://")
        || uri.starts_with("rediss://")
        || uri.starts_with("redis+unix://")
        || uri.starts_with("unix://"))
    {
        return Err(ConnectError::InvalidUri {
            what: "Redis",
            reason: "it must start with redis:// or rediss://".into(),
        });
    }
    let client = redis::Client::open(uri).map_err(|_| ConnectError::InvalidUri {
        what: "Redis",
        reason: uri_problem(uri),
    })?;
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(CONNECT_TIMEOUT))
        .set_number_of_retries(1);
    let manager = tokio::time::timeout(
        CONNECT_TIMEOUT,
        redis::aio::ConnectionManager::new_with_config(client, config),
    )
    .await
    .map_err(|_| ConnectError::Unreachable {
        what: "Redis",
        reason: "connecting timed out".into(),
    })?
    .map_err(|e| match e.kind() {
        redis::ErrorKind::AuthenticationFailed => ConnectError::Refused { what: "Redis" },
        _ => ConnectError::Unreachable {
            what: "Redis",
            reason: redact(&e.to_string()),
        },
    })?;
    Ok(RedisCache::new(manager, key_prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every message a refused URI produces, checked for any piece of the password.
    fn assert_no_piece_of(secret: &str, message: &str) {
        for window in 3..=secret.len() {
            for start in 0..=secret.len() - window {
                let piece = &secret[start..start + window];
                assert!(
                    !message.contains(piece),
                    "'{message}' repeats part of the password"
                );
            }
        }
    }

    #[tokio::test]
    async fn a_password_that_is_not_percent_encoded_never_reaches_the_message() {
        for (uri, password) in [
            ("mongodb://lc:Ab?cd@db.example:27017/LibreChat", "Ab?cd"),
            ("mongodb://lc:p@ss/Qx7w@db:27017", "p@ss/Qx7w"),
            ("mongodb://lc:x#yz9Q@db", "x#yz9Q"),
            ("mongodb://lc:50%off@db", "50%off"),
        ] {
            let message = match connect_mongo(uri).await {
                Err(e) => e.to_string(),
                Ok(_) => continue,
            };
            assert_no_piece_of(password, &message);
            assert!(message.contains("not valid"), "{message}");
        }
        let err = connect_redis("redis://:Ab?c#d@cache:6379", "").await.err();
        if let Some(e) = err {
            assert_no_piece_of("Ab?c#d", &e.to_string());
        }
    }

    #[tokio::test]
    async fn reads_go_to_the_primary_and_writes_are_acknowledged_whatever_the_uri_says() {
        use mongodb::options::{Acknowledgment, ReadPreference, SelectionCriteria};
        let uri = "mongodb://127.0.0.1:1/lc?readPreference=secondaryPreferred&w=0&replicaSet=rs";
        let (_, db) = connect_mongo(uri).await.unwrap();
        assert!(matches!(
            db.selection_criteria(),
            Some(SelectionCriteria::ReadPreference(ReadPreference::Primary))
        ));
        let w = db.write_concern().and_then(|c| c.w.clone());
        assert_ne!(w, Some(Acknowledgment::Nodes(0)));
        // A write concern that acknowledges is LibreChat's choice, kept.
        let (_, db) = connect_mongo("mongodb://127.0.0.1:1/lc?w=majority")
            .await
            .unwrap();
        let w = db.write_concern().and_then(|c| c.w.clone());
        assert_eq!(w, Some(Acknowledgment::Majority));
    }

    /// `rediss://` is TLS, which the client speaks: a server that does not answer is
    /// unreachable, not a URI that is not valid.
    #[tokio::test]
    async fn a_tls_redis_uri_is_valid() {
        match connect_redis("rediss://127.0.0.1:1/", "").await {
            Err(ConnectError::InvalidUri { reason, .. }) => panic!("refused as invalid: {reason}"),
            Err(_) => {}
            Ok(_) => panic!("nothing listens on port 1"),
        }
    }

    #[test]
    fn the_problem_is_named_without_quoting() {
        assert!(uri_problem("mongodb://lc:Ab?cd@host").contains("percent-encoded"));
        assert!(uri_problem("mongodb://lc:a%zz@host").contains("percent-encoded"));
        assert!(uri_problem("mongodb://").contains("no host"));
    }
}
