//! Turning connection URIs into clients, with errors that say which part is wrong and never
//! repeat the URI.

use std::time::Duration;

use mongodb::options::ClientOptions;
use mongodb::{Client, Database};

use super::cache::RedisCache;
use super::error::redact;

/// LibreChat's default database when the URI names none.
pub const DEFAULT_DATABASE: &str = "LibreChat";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("the {what} URI is not valid: {reason}. Fix the value in the Secret")]
    InvalidUri { what: &'static str, reason: String },
    #[error("{what} is unreachable: {reason}")]
    Unreachable { what: &'static str, reason: String },
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
    let mut options = tokio::time::timeout(CONNECT_TIMEOUT, ClientOptions::parse(uri))
        .await
        .map_err(|_| ConnectError::Unreachable {
            what: "MongoDB",
            reason: "resolving the SRV record timed out".into(),
        })?
        .map_err(|e| invalid(e.to_string()))?;
    options.app_name = Some("librechat-operator".into());
    options.command_event_handler = Some(mongodb::event::EventHandler::callback(|event| {
        use mongodb::event::command::CommandEvent;
        match event {
            CommandEvent::Succeeded(e) => {
                crate::metrics::global().store_operation("mongo", &e.command_name, true)
            }
            CommandEvent::Failed(e) => {
                crate::metrics::global().store_operation("mongo", &e.command_name, false)
            }
            CommandEvent::Started(_) => {}
            _ => {}
        }
    }));
    options
        .server_selection_timeout
        .get_or_insert(CONNECT_TIMEOUT);
    options.connect_timeout.get_or_insert(CONNECT_TIMEOUT);
    let database = options
        .default_database
        .clone()
        .unwrap_or_else(|| DEFAULT_DATABASE.to_string());
    let client = Client::with_options(options).map_err(|e| invalid(e.to_string()))?;
    let db = client.database(&database);
    Ok((client, db))
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
    let client = redis::Client::open(uri).map_err(|e| ConnectError::InvalidUri {
        what: "Redis",
        reason: redact(&e.to_string()),
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
    .map_err(|e| ConnectError::Unreachable {
        what: "Redis",
        reason: redact(&e.to_string()),
    })?;
    Ok(RedisCache::new(manager, key_prefix))
}
