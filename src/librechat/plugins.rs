//! Plugins of an account: its `users.plugins` list, its `pluginauths` credentials (written as
//! LibreChat's `updatePluginAuth` writes them), MCP OAuth tokens (deleted, never minted), and
//! the operator's record of what it installed, so that it never removes what a person
//! installed in LibreChat's UI.

use std::collections::BTreeMap;

use mongodb::bson::{doc, oid::ObjectId, DateTime, Document};

use super::batch::Id;
use super::deadline::MongoCall;
use super::error::StoreError;
use super::{collections, Store};

/// LibreChat's `pluginauths` collection.
pub const PLUGIN_AUTHS: &str = "pluginauths";
/// The operator's record of the plugins it installed, one document per account.
pub const PLUGIN_RECORDS: &str = "librechat_operator_plugins";
/// LibreChat's prefix of MCP server plugin keys (`Constants.mcp_prefix`).
pub const MCP_PREFIX: &str = "mcp_";
/// LibreChat's plugin key of web search credentials.
pub const WEB_SEARCH: &str = "web_search";

/// What the operator installed of one plugin, as recorded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InstalledPlugin {
    pub key: String,
    /// Whether the operator put `key` into `users.plugins` (so it may take it out).
    pub listed: bool,
    /// The `authField`s it wrote.
    pub auth_fields: Vec<String>,
    /// The person's own credentials (ciphertext, by `authField`) the operator's replaced: put
    /// back when the operator's go, rather than deleted.
    pub replaced: BTreeMap<String, String>,
}

impl InstalledPlugin {
    fn to_doc(&self) -> Document {
        let replaced: Document = self
            .replaced
            .iter()
            .map(|(f, v)| (f.clone(), v.clone().into()))
            .collect();
        doc! {
            "key": self.key.clone(), "listed": self.listed, "authFields": self.auth_fields.clone(),
            "replaced": replaced,
        }
    }

    fn from_doc(d: &Document) -> Option<Self> {
        let strings = |a: &Vec<mongodb::bson::Bson>| -> Vec<String> {
            a.iter()
                .filter_map(|f| f.as_str().map(String::from))
                .collect()
        };
        let replaced = d.get_document("replaced").ok().map(|r| {
            r.iter()
                .filter_map(|(f, v)| Some((f.clone(), v.as_str()?.to_string())))
                .collect()
        });
        Some(InstalledPlugin {
            key: d.get_str("key").ok()?.to_string(),
            listed: d.get_bool("listed").unwrap_or(false),
            auth_fields: d.get_array("authFields").map(strings).unwrap_or_default(),
            replaced: replaced.unwrap_or_default(),
        })
    }
}

/// The MCP server of a plugin key, for `mcp_<server>` keys.
pub fn mcp_server(key: &str) -> Option<&str> {
    key.strip_prefix(MCP_PREFIX).filter(|s| !s.is_empty())
}

/// Whether LibreChat keeps `key` out of `users.plugins` when its own clients store it: MCP
/// server variables and web search are entity tools (`isEntityTool`), credentials only.
pub fn is_entity_tool(key: &str) -> bool {
    key == WEB_SEARCH || key.starts_with(MCP_PREFIX)
}

impl Store {
    /// What the operator recorded as installed on `user` by `owner_uid`. A record another
    /// object left is not this one's to act on.
    pub async fn installed_plugins(
        &self,
        user: ObjectId,
        owner_uid: &str,
    ) -> Result<Vec<InstalledPlugin>, StoreError> {
        let record = match self
            .reads
            .plugin_records_at_start
            .take(Id::Object(user), owner_uid)
            .await
        {
            Some(found) => found,
            None => self.reads.plugin_records.get(Id::Object(user)).await?,
        };
        let plugins = record
            .as_ref()
            .filter(|r| r.get_str("owner").ok() == Some(owner_uid))
            .and_then(|r| r.get_array("plugins").ok())
            .map(|a| {
                a.iter()
                    .filter_map(|p| p.as_document().and_then(InstalledPlugin::from_doc))
                    .collect()
            })
            .unwrap_or_default();
        Ok(plugins)
    }

    /// Replaces the record of what `owner_uid` installed on `user`.
    pub async fn record_installed_plugins(
        &self,
        user: ObjectId,
        owner_uid: &str,
        plugins: &[InstalledPlugin],
    ) -> Result<(), StoreError> {
        let list: Vec<Document> = plugins.iter().map(InstalledPlugin::to_doc).collect();
        self.collection(PLUGIN_RECORDS)
            .update_one(
                doc! { "_id": user },
                doc! { "$set": { "owner": owner_uid, "plugins": list, "updatedAt": DateTime::now() } },
            )
            .upsert(true)
            .deadline("recording installed plugins")
            .await
            .map(|_| ())
    }

    /// Hands the record of what `stale_uid` installed on `user` to `owner_uid`, which inherits
    /// the account: done before the claim is handed over, so a crash between leaves the record
    /// already the heir's (a repeat finds nothing to hand).
    pub async fn hand_over_installed_plugins(
        &self,
        user: ObjectId,
        stale_uid: &str,
        owner_uid: &str,
    ) -> Result<(), StoreError> {
        self.collection(PLUGIN_RECORDS)
            .update_one(
                doc! { "_id": user, "owner": stale_uid },
                doc! { "$set": { "owner": owner_uid } },
            )
            .deadline("handing over the plugin record")
            .await
            .map(|_| ())
    }

    /// Forgets what `owner_uid` recorded on `user` (the object let go of the account).
    pub async fn forget_installed_plugins(
        &self,
        user: ObjectId,
        owner_uid: &str,
    ) -> Result<(), StoreError> {
        self.delete_many(PLUGIN_RECORDS, doc! { "_id": user, "owner": owner_uid })
            .await
            .map(|_| ())
    }

    /// The account's `users.plugins`.
    pub async fn listed_plugins(&self, user: ObjectId) -> Result<Vec<String>, StoreError> {
        let found = self
            .collection(collections::USERS)
            .find_one(doc! { "_id": user })
            .projection(doc! { "plugins": 1 })
            .deadline("reading installed plugins")
            .await?;
        Ok(found
            .as_ref()
            .and_then(|d| d.get_array("plugins").ok())
            .map(|a| {
                a.iter()
                    .filter_map(|p| p.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Adds `key` to `users.plugins` unless it is there, as LibreChat's `updateUserPlugins`
    /// install does (which also unsets `expiresAt`).
    pub async fn list_plugin(&self, user: ObjectId, key: &str) -> Result<(), StoreError> {
        self.collection(collections::USERS)
            .update_one(
                doc! { "_id": user, "plugins": { "$ne": key } },
                doc! {
                    "$push": { "plugins": key },
                    "$set": { "updatedAt": DateTime::now() },
                    "$unset": { "expiresAt": "" },
                },
            )
            .deadline("installing a plugin")
            .await
            .map(|_| ())
    }

    /// Removes `key` from `users.plugins`, as LibreChat's uninstall does.
    pub async fn unlist_plugin(&self, user: ObjectId, key: &str) -> Result<(), StoreError> {
        self.collection(collections::USERS)
            .update_one(
                doc! { "_id": user, "plugins": key },
                doc! {
                    "$pull": { "plugins": key },
                    "$set": { "updatedAt": DateTime::now() },
                    "$unset": { "expiresAt": "" },
                },
            )
            .deadline("uninstalling a plugin")
            .await
            .map(|_| ())
    }

    /// The stored ciphertext of one credential, if any.
    pub async fn plugin_auth_value(
        &self,
        user: ObjectId,
        key: &str,
        auth_field: &str,
    ) -> Result<Option<String>, StoreError> {
        let found = self
            .collection(PLUGIN_AUTHS)
            .find_one(auth_filter(user, key, auth_field))
            .deadline("reading a plugin credential")
            .await?;
        Ok(found.and_then(|d| d.get_str("value").ok().map(String::from)))
    }

    /// Stores one credential as `updatePluginAuth` does: `$set` of `value` (and `updatedAt`)
    /// on an existing row, otherwise a new document. `ciphertext` is LibreChat's `encrypt`.
    pub async fn put_plugin_auth(
        &self,
        user: ObjectId,
        key: &str,
        auth_field: &str,
        ciphertext: &str,
    ) -> Result<(), StoreError> {
        let now = DateTime::now();
        let updated = self
            .collection(PLUGIN_AUTHS)
            .update_many(
                auth_filter(user, key, auth_field),
                doc! { "$set": { "value": ciphertext, "updatedAt": now } },
            )
            .deadline("updating a plugin credential")
            .await?;
        if updated.matched_count > 0 {
            return Ok(());
        }
        let row = doc! {
            "authField": auth_field,
            "value": ciphertext,
            "userId": user.to_hex(),
            "pluginKey": key,
            "createdAt": now,
            "updatedAt": now,
            "__v": 0_i32,
        };
        self.collection(PLUGIN_AUTHS)
            .insert_one(row)
            .deadline("storing a plugin credential")
            .await
            .map(|_| ())
    }

    /// Deletes the credentials `auth_fields` of `key`.
    pub async fn delete_plugin_auths(
        &self,
        user: ObjectId,
        key: &str,
        auth_fields: &[String],
    ) -> Result<u64, StoreError> {
        let filter = doc! {
            "userId": user.to_hex(),
            "pluginKey": key,
            "authField": { "$in": auth_fields.to_vec() },
        };
        self.delete_many(PLUGIN_AUTHS, filter).await
    }
}

fn auth_filter(user: ObjectId, key: &str, auth_field: &str) -> Document {
    doc! { "userId": user.to_hex(), "pluginKey": key, "authField": auth_field }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mcp_and_web_search_are_entity_tools() {
        assert_eq!(mcp_server("mcp_github"), Some("github"));
        assert_eq!(mcp_server("mcp_"), None);
        assert_eq!(mcp_server("google"), None);
        assert!(is_entity_tool("web_search") && is_entity_tool("mcp_x"));
        assert!(!is_entity_tool("google"));
    }

    #[test]
    fn records_round_trip() {
        let p = InstalledPlugin {
            key: "google".into(),
            listed: true,
            auth_fields: vec!["GOOGLE_CSE_ID".into()],
            replaced: [("GOOGLE_API_KEY".into(), "ab12".into())].into(),
        };
        assert_eq!(InstalledPlugin::from_doc(&p.to_doc()), Some(p));
    }
}
