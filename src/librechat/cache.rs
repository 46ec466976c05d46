//! LibreChat's Redis caches. Redis is never a source of truth for users; these entries only
//! make LibreChat serve stale data for a while after a change, so the operator deletes them.
//!
//! Key layout (Keyv caches): `<REDIS_KEY_PREFIX>::<NAMESPACE>:<key>`, or `<NAMESPACE>:<key>`
//! when the prefix is empty.

use redis::aio::ConnectionManager;
use redis::AsyncCommands;

use super::error::StoreError;

/// Violation types whose counters LibreChat keeps per user (`logViolation`).
pub const VIOLATION_TYPES: &[&str] = &[
    "logins",
    "concurrent",
    "non_browser",
    "message_limit",
    "registrations",
    "token_balance",
    "tts_limit",
    "stt_limit",
    "convo_access",
    "tool_call_limit",
    "file_upload_limit",
    "verify_email_limit",
    "reset_password_limit",
    "illegal_model_request",
];

#[derive(Clone)]
pub struct RedisCache {
    conn: ConnectionManager,
    prefix: String,
}

impl RedisCache {
    pub fn new(conn: ConnectionManager, prefix: &str) -> Self {
        RedisCache {
            conn,
            prefix: prefix.to_string(),
        }
    }

    /// LibreChat's `REDIS_KEY_PREFIX`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The Redis key of a Keyv cache entry.
    pub fn keyv_key(&self, namespace: &str, key: &str) -> String {
        keyv_key(&self.prefix, namespace, key)
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let start = std::time::Instant::now();
        let result = redis::cmd("PING").query_async::<String>(&mut conn).await;
        crate::metrics::global().store_operation("redis", "ping", result.is_ok(), start.elapsed());
        result.map(|_| ()).map_err(|e| StoreError::redis("ping", e))
    }

    pub async fn delete(&self, keys: &[String]) -> Result<u64, StoreError> {
        if keys.is_empty() {
            return Ok(0);
        }
        let mut conn = self.conn.clone();
        let start = std::time::Instant::now();
        let result = conn.del(keys).await;
        crate::metrics::global().store_operation("redis", "del", result.is_ok(), start.elapsed());
        result.map_err(|e| StoreError::redis("delete", e))
    }

    /// Cached copies of a user's document and group memberships, which LibreChat would keep
    /// serving after a role change or deletion until they expire.
    pub async fn invalidate_user(
        &self,
        user_id_hex: &str,
        id_on_the_source: Option<&str>,
    ) -> Result<u64, StoreError> {
        self.delete(&user_cache_keys(
            &self.prefix,
            user_id_hex,
            id_on_the_source,
        ))
        .await
    }

    /// Every cached prompt-group access set (contract-surface §5.1): they are keyed by a
    /// generation marker, and LibreChat reads a missing marker as a fresh generation. Its own
    /// membership, ACL and prompt-group changes bump the marker the same way.
    pub async fn invalidate_prompt_group_access(&self) -> Result<u64, StoreError> {
        self.delete(&[self.keyv_key("PROMPT_GROUPS_ACCESS", "access:generation")])
            .await
    }

    /// Drops the entries of a Keyv `namespace` whose key starts with `key_prefix`, each of which
    /// lives at most `lives` (found with SCAN, never KEYS, a thousand keys a step, and deleted
    /// as found); returns how many went. A walk still going once `lives` (and a second) has
    /// passed stops there, done: every entry written before it began has expired by then, and
    /// the caller's write came before the walk, so any entry written since reflects it. A
    /// keyspace of millions behind a slow link therefore never holds the caller up for longer,
    /// where a walk to the end timed out and began again from zero at every retry.
    pub async fn drop_short_lived(
        &self,
        namespace: &str,
        key_prefix: &str,
        lives: std::time::Duration,
    ) -> Result<u64, StoreError> {
        let pattern = format!("{}*", glob_escape(&self.keyv_key(namespace, key_prefix)));
        let mut conn = self.conn.clone();
        let start = std::time::Instant::now();
        let removed = std::sync::atomic::AtomicU64::new(0);
        let walk = async {
            let mut cursor: u64 = 0;
            loop {
                let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000)
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| StoreError::redis("scan", e))?;
                let gone = self.delete(&batch).await?;
                removed.fetch_add(gone, std::sync::atomic::Ordering::Relaxed);
                if next == 0 {
                    return Ok::<_, StoreError>(());
                }
                cursor = next;
            }
        };
        let outlived = lives + std::time::Duration::from_secs(1);
        let walked = tokio::time::timeout(outlived, walk).await;
        let ok = !matches!(walked, Ok(Err(_)));
        crate::metrics::global().store_operation("redis", "scan", ok, start.elapsed());
        if let Ok(Err(e)) = walked {
            return Err(e);
        }
        Ok(removed.into_inner())
    }

    /// A user's violation counters, so that LibreChat does not re-ban at the next violation.
    pub async fn clear_violations(&self, user_id_hex: &str) -> Result<u64, StoreError> {
        let keys: Vec<String> = VIOLATION_TYPES
            .iter()
            .map(|t| self.keyv_key(&format!("violations:{t}"), &format!("{t}:{user_id_hex}")))
            .collect();
        self.delete(&keys).await
    }
}

/// How long LibreChat keeps a cached user document (`AUTH_USER_DOC`, with
/// `AUTH_USER_CACHE_MODE=on`): `packages/api/src/auth/userDocCache.ts`.
pub const AUTH_USER_DOC_LIFE: std::time::Duration = std::time::Duration::from_secs(5);

/// `s` as a literal in a Redis glob pattern.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn keyv_key(prefix: &str, namespace: &str, key: &str) -> String {
    if prefix.is_empty() {
        format!("{namespace}:{key}")
    } else {
        format!("{prefix}::{namespace}:{key}")
    }
}

/// The per-user cache keys of LibreChat's Appendix A.
pub fn user_cache_keys(
    prefix: &str,
    user_id_hex: &str,
    id_on_the_source: Option<&str>,
) -> Vec<String> {
    let mut keys = vec![
        keyv_key(
            prefix,
            "AUTH_USER_DOC",
            &format!("auth-user-doc-byid:{user_id_hex}"),
        ),
        keyv_key(prefix, "USER_PRINCIPALS", user_id_hex),
    ];
    if let Some(source) = id_on_the_source.filter(|s| !s.is_empty()) {
        keys.push(keyv_key(prefix, "USER_PRINCIPALS", source));
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_keyv_layout() {
        assert_eq!(
            keyv_key("", "USER_PRINCIPALS", "abc"),
            "USER_PRINCIPALS:abc"
        );
        assert_eq!(
            keyv_key("lc", "USER_PRINCIPALS", "abc"),
            "lc::USER_PRINCIPALS:abc"
        );
        let keys = user_cache_keys("", "65f0", Some("entra-1"));
        assert!(keys.contains(&"AUTH_USER_DOC:auth-user-doc-byid:65f0".to_string()));
        assert!(keys.contains(&"USER_PRINCIPALS:entra-1".to_string()));
    }
}
