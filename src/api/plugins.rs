//! Plugin fields: the instance's credential key (`spec.credentials`) and a user's plugins
//! (`spec.plugins`), with the rules LibreChat's own plugin routes would enforce.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::instance::SecretNameRef;

/// The keys of the credentials Secret, named as LibreChat's environment names them.
pub const CREDS_KEY: &str = "CREDS_KEY";
pub const CREDS_IV: &str = "CREDS_IV";

/// The env var names LibreChat's default `webSearch` config maps its keys to; the stored
/// `authField` of a `web_search` credential is one of them.
pub const WEB_SEARCH_AUTH_FIELDS: &[&str] = &[
    "SERPER_API_KEY",
    "SEARXNG_INSTANCE_URL",
    "SEARXNG_API_KEY",
    "FIRECRAWL_API_KEY",
    "FIRECRAWL_API_URL",
    "FIRECRAWL_VERSION",
    "TAVILY_API_KEY",
    "TAVILY_SEARCH_URL",
    "TAVILY_EXTRACT_URL",
    "KEENABLE_API_KEY",
    "KEENABLE_API_URL",
    "JINA_API_KEY",
    "JINA_API_URL",
    "COHERE_API_KEY",
];

/// LibreChat's credential encryption key, needed to store plugin credentials.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsSpec {
    /// A Secret in the instance's namespace with keys `CREDS_KEY` (hex of 16, 24 or 32 bytes)
    /// and `CREDS_IV` (hex of 16 bytes): the very values the LibreChat server runs with, or
    /// LibreChat cannot decrypt what the operator stores.
    pub secret_ref: SecretNameRef,
}

/// One plugin (tool, MCP server or web search) installed on the account, with its credentials.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PluginSpec {
    /// LibreChat's plugin key: a tool's key from its manifest (e.g. `google`), `web_search`,
    /// or `mcp_<server>` for the MCP server `<server>` of librechat.yaml. Tools are added to
    /// the account's installed plugins; `web_search` and MCP servers only get credentials, as
    /// LibreChat's own clients store them.
    #[schemars(
        length(min = 1, max = 128),
        regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    )]
    pub key: String,
    /// A Secret in this object's namespace: each key is an `authField` (e.g. `GOOGLE_CSE_ID`,
    /// `SERPER_API_KEY`, an MCP server's `customUserVars` name), its value the credential,
    /// stored encrypted. Changing the Secret re-encrypts; removing a key deletes that
    /// credential. Omit for a tool that needs none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretNameRef>,
}

/// What is wrong with a list of plugins, as LibreChat (or the operator's bookkeeping) would
/// refuse it.
pub fn plugin_problems(plugins: &[PluginSpec]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for p in plugins {
        if let Err(e) = check_plugin_key(&p.key) {
            problems.push(e);
        }
        if !seen.insert(p.key.as_str()) {
            problems.push(format!("plugins: key '{}' is listed twice", p.key));
        }
        if p.credentials_secret_ref
            .as_ref()
            .is_some_and(|r| r.name.is_empty())
        {
            problems.push(format!(
                "plugins[{}].credentialsSecretRef.name is required",
                p.key
            ));
        }
    }
    problems
}

/// LibreChat's plugin key rules as the operator applies them.
pub fn check_plugin_key(key: &str) -> Result<(), String> {
    let well_formed = !key.is_empty()
        && key.len() <= 128
        && key.starts_with(|c: char| c.is_ascii_alphanumeric())
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !well_formed {
        return Err(format!(
            "plugin key '{key}' must be 1 to 128 letters, digits, '_', '.' or '-', starting with a letter or digit"
        ));
    }
    if key == "mcp_" {
        return Err("plugin key 'mcp_' names no MCP server: use mcp_<server>".into());
    }
    if !key.starts_with("mcp_") && key.contains("_mcp_") {
        return Err(format!(
            "plugin key '{key}' is an MCP tool name (<tool>_mcp_<server>); declare the server as mcp_<server>"
        ));
    }
    Ok(())
}

/// Whether LibreChat would accept `auth_field` as a credential of `key`.
pub fn check_auth_field(key: &str, auth_field: &str) -> Result<(), String> {
    if key == "web_search" && !WEB_SEARCH_AUTH_FIELDS.contains(&auth_field) {
        return Err(format!(
            "'{auth_field}' is not a web_search credential; LibreChat stores only {}",
            WEB_SEARCH_AUTH_FIELDS.join(", ")
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plugin(key: &str) -> PluginSpec {
        PluginSpec {
            key: key.into(),
            credentials_secret_ref: None,
        }
    }

    #[test]
    fn keys_librechat_would_refuse() {
        for good in [
            "google",
            "web_search",
            "mcp_github",
            "azure-ai-search",
            "mcp_my.srv",
        ] {
            assert!(check_plugin_key(good).is_ok(), "{good}");
        }
        let long = "k".repeat(129);
        for bad in [
            "",
            "mcp_",
            "-x",
            "a b",
            "tool_mcp_github",
            "ä",
            long.as_str(),
        ] {
            assert!(check_plugin_key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn duplicates_and_web_search_fields() {
        let problems = plugin_problems(&[plugin("google"), plugin("google")]);
        assert_eq!(problems, vec!["plugins: key 'google' is listed twice"]);
        assert!(check_auth_field("web_search", "SERPER_API_KEY").is_ok());
        assert!(check_auth_field("web_search", "serper").is_err());
        assert!(check_auth_field("mcp_x", "anything").is_ok());
    }
}
