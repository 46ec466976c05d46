//! A user's declared plugins: resolved (Secrets read, credentials encrypted) before any write,
//! then converged onto the account, removing only what this object installed.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use mongodb::bson::oid::ObjectId;

use super::Plan;
use crate::api::common::{reason, SecretKeyRef};
use crate::api::plugins::check_auth_field;
use crate::api::{LibreChatInstance, LibreChatUser};
use crate::controller::context::Context;
use crate::controller::credentials::instance_creds;
use crate::controller::password::without_final_newline;
use crate::controller::secrets::{keys_of, read_secret, value_of, SecretError};
use crate::librechat::plugins::{is_entity_tool, InstalledPlugin};
use crate::librechat::{Store, StoreError};
use crate::metrics::SecretUse;

/// One declared plugin with its credentials encrypted (`authField` → ciphertext).
#[derive(Default)]
pub(super) struct DesiredPlugin {
    key: String,
    auth: BTreeMap<String, String>,
}

/// The declared plugins, ready to write.
#[derive(Default)]
pub(super) struct DesiredPlugins {
    list: Vec<DesiredPlugin>,
}

impl DesiredPlugins {
    pub(super) fn declares_any(&self) -> bool {
        !self.list.is_empty()
    }

    pub(super) fn keys(&self) -> Vec<String> {
        self.list.iter().map(|p| p.key.clone()).collect()
    }
}

/// Why the plugins cannot be written; the message never holds a credential or the key.
#[derive(Debug)]
pub(super) struct PluginProblem {
    pub reason: &'static str,
    pub message: String,
    /// It lies with the instance's credentials, whose Secret the watch of a tenant namespace
    /// may not see: looked at again periodically.
    pub instance: bool,
}

impl PluginProblem {
    fn new(reason: &'static str, message: String) -> Self {
        PluginProblem {
            reason,
            message,
            instance: false,
        }
    }

    fn secret(context: &str, e: SecretError) -> Self {
        PluginProblem::new(e.reason(), format!("{context}: {e}"))
    }
}

/// Reads every credentials Secret (from the object's own namespace) and encrypts the values
/// with the instance's key. Reads only.
pub(super) async fn resolve(
    client: &kube::Client,
    user: &LibreChatUser,
    instance: &LibreChatInstance,
) -> Result<DesiredPlugins, PluginProblem> {
    let namespace = user.namespace().unwrap_or_default();
    let mut plain = Vec::new();
    for plugin in &user.spec.plugins {
        let auth = match &plugin.credentials_secret_ref {
            Some(r) => {
                let context = format!("plugin '{}'", plugin.key);
                let secret = read_secret(client, &namespace, &r.name, SecretUse::Plugin)
                    .await
                    .map_err(|e| PluginProblem::secret(&context, e))?;
                credentials_of(&plugin.key, &secret)?
            }
            None => BTreeMap::new(),
        };
        plain.push((plugin.key.clone(), auth));
    }
    let creds = match plain.iter().any(|(_, auth)| !auth.is_empty()) {
        true => Some(
            instance_creds(client, instance)
                .await
                .map_err(|p| PluginProblem {
                    reason: p.reason,
                    // The instance's credentials Secret is named only to its own namespace.
                    message: crate::controller::target::configuration_for(
                        instance, p.reason, &p.message, &namespace,
                    ),
                    instance: true,
                })?,
        ),
        false => None,
    };
    let list = plain
        .into_iter()
        .map(|(key, auth)| DesiredPlugin {
            key,
            auth: auth
                .into_iter()
                .filter_map(|(f, v)| Some((f, creds.as_ref()?.encrypt(&v))))
                .collect(),
        })
        .collect();
    Ok(DesiredPlugins { list })
}

/// The plaintext credentials of one plugin's Secret, each key checked against LibreChat's
/// rules for `key`.
fn credentials_of(key: &str, secret: &Secret) -> Result<BTreeMap<String, String>, PluginProblem> {
    let name = secret.name_any();
    let context = format!("plugin '{key}'");
    let mut auth = BTreeMap::new();
    for field in keys_of(secret) {
        check_auth_field(key, &field).map_err(|m| {
            PluginProblem::new(
                reason::PLUGIN_INVALID,
                format!("{context}: Secret '{name}' key {m}"),
            )
        })?;
        let reference = SecretKeyRef {
            name: name.clone(),
            key: field.clone(),
        };
        let value = value_of(secret, &reference).map_err(|e| PluginProblem::secret(&context, e))?;
        auth.insert(field, without_final_newline(value.value));
    }
    if auth.is_empty() {
        let message = format!("{context}: Secret '{name}' has no keys; put one credential per authField in it, or drop credentialsSecretRef");
        return Err(PluginProblem::new(reason::SECRET_KEY_MISSING, message));
    }
    Ok(auth)
}

/// Whether [`apply`] would write nothing: no plugin declared and none of this object's
/// installed (a plugin dropped from the declaration is removed on the full path).
pub(super) async fn nothing_to_apply(plan: &Plan, account: ObjectId) -> Result<bool, StoreError> {
    if plan.plugins.declares_any() {
        return Ok(false);
    }
    let installed = plan
        .store()
        .installed_plugins(account, &plan.owner.uid)
        .await?;
    Ok(installed.is_empty())
}

/// Converges the declared plugins onto `account`. Records what it is about to install before
/// installing it, so a crash leaves nothing the record does not name. Returns whether it wrote.
pub(super) async fn apply(
    ctx: &Context,
    plan: &Plan,
    account: ObjectId,
    user: &LibreChatUser,
) -> Result<bool, StoreError> {
    let store = plan.store();
    let uid = &plan.owner.uid;
    let before = store.installed_plugins(account, uid).await?;
    if !plan.plugins.declares_any() && before.is_empty() {
        // Nothing declared and nothing of ours installed: nothing to read further.
        return Ok(false);
    }
    let listed = store.listed_plugins(account).await?;
    let mut after = intended(&plan.plugins, &before, &listed);
    remember_the_persons(store, account, &plan.plugins, &before, &mut after).await?;
    let union = merged(&before, &after);
    if union != before {
        store.record_installed_plugins(account, uid, &union).await?;
    }
    let mut notes = install(store, account, &plan.plugins, &after, &listed).await?;
    notes.extend(remove(store, account, &before, &after).await?);
    if after != union {
        store.record_installed_plugins(account, uid, &after).await?;
    }
    if notes.is_empty() {
        return Ok(false);
    }
    let note = format!("plugins of {}: {}", plan.email, notes.join("; "));
    ctx.changed(user, plan.change("PluginsUpdated", account, note))
        .await;
    Ok(true)
}

/// The record after this reconcile: a key is the operator's to list when it put it there
/// before, or when the account does not list it now.
fn intended(
    desired: &DesiredPlugins,
    before: &[InstalledPlugin],
    listed: &[String],
) -> Vec<InstalledPlugin> {
    desired
        .list
        .iter()
        .map(|d| {
            let prior = before.iter().find(|b| b.key == d.key);
            let was_ours = prior.is_some_and(|b| b.listed);
            let replaced = prior.map(|b| b.replaced.clone()).unwrap_or_default();
            InstalledPlugin {
                key: d.key.clone(),
                listed: !is_entity_tool(&d.key) && (was_ours || !listed.contains(&d.key)),
                auth_fields: d.auth.keys().cloned().collect(),
                // What is still replaced: a field no longer declared gets the person's back.
                replaced: replaced
                    .into_iter()
                    .filter(|(f, _)| d.auth.contains_key(f))
                    .collect(),
            }
        })
        .collect()
}

/// Notes in `after`, before anything is written, the person's own credentials the declaration
/// is about to replace: one they stored for a field the operator has not written yet.
async fn remember_the_persons(
    store: &Store,
    account: ObjectId,
    desired: &DesiredPlugins,
    before: &[InstalledPlugin],
    after: &mut [InstalledPlugin],
) -> Result<(), StoreError> {
    for (d, a) in desired.list.iter().zip(after.iter_mut()) {
        let prior = before.iter().find(|b| b.key == d.key);
        for field in d.auth.keys() {
            let ours = prior.is_some_and(|b| b.auth_fields.contains(field));
            if ours || a.replaced.contains_key(field) {
                continue;
            }
            if let Some(theirs) = store.plugin_auth_value(account, &d.key, field).await? {
                a.replaced.insert(field.clone(), theirs);
            }
        }
    }
    Ok(())
}

/// Everything `before` or `after` names: what the store may hold while this reconcile runs.
fn merged(before: &[InstalledPlugin], after: &[InstalledPlugin]) -> Vec<InstalledPlugin> {
    let mut all: Vec<InstalledPlugin> = after.to_vec();
    for b in before {
        match all.iter_mut().find(|a| a.key == b.key) {
            Some(a) => {
                a.listed |= b.listed;
                for f in &b.auth_fields {
                    if !a.auth_fields.contains(f) {
                        a.auth_fields.push(f.clone());
                    }
                }
                for (f, v) in &b.replaced {
                    a.replaced.entry(f.clone()).or_insert_with(|| v.clone());
                }
            }
            None => all.push(b.clone()),
        }
    }
    all
}

/// Lists what is the operator's to list and writes every credential whose ciphertext differs.
async fn install(
    store: &Store,
    account: ObjectId,
    desired: &DesiredPlugins,
    after: &[InstalledPlugin],
    listed: &[String],
) -> Result<Vec<String>, StoreError> {
    let mut notes = Vec::new();
    for (d, a) in desired.list.iter().zip(after) {
        if a.listed && !listed.contains(&d.key) {
            store.list_plugin(account, &d.key).await?;
            notes.push(format!("installed {}", d.key));
        }
        for (field, ciphertext) in &d.auth {
            let stored = store.plugin_auth_value(account, &d.key, field).await?;
            if stored.as_deref() != Some(ciphertext.as_str()) {
                store
                    .put_plugin_auth(account, &d.key, field, ciphertext)
                    .await?;
                notes.push(format!("stored {}.{field}", d.key));
            }
        }
    }
    Ok(notes)
}

/// Uninstalls what the operator installed and no longer declares: credentials it wrote (the
/// person's own put back where it replaced theirs) and the listing it added. An MCP server's
/// OAuth tokens stay: the person got them through their own consent, and LibreChat's
/// uninstall revokes them at the provider before deleting them, which the operator cannot do
/// (deleted unrevoked, the refresh token would stay valid with nobody left able to revoke it).
async fn remove(
    store: &Store,
    account: ObjectId,
    before: &[InstalledPlugin],
    after: &[InstalledPlugin],
) -> Result<Vec<String>, StoreError> {
    let mut notes = Vec::new();
    for b in before {
        let kept = after.iter().find(|a| a.key == b.key);
        let stale = b
            .auth_fields
            .iter()
            .filter(|f| kept.is_none_or(|a| !a.auth_fields.contains(f)));
        let (restore, delete): (Vec<&String>, Vec<&String>) =
            stale.partition(|f| b.replaced.contains_key(*f));
        for field in restore {
            store
                .put_plugin_auth(account, &b.key, field, &b.replaced[field])
                .await?;
            notes.push(format!("put back the person's own {}.{field}", b.key));
        }
        let delete: Vec<String> = delete.into_iter().cloned().collect();
        if !delete.is_empty() && store.delete_plugin_auths(account, &b.key, &delete).await? > 0 {
            let fields = delete.join(", ");
            notes.push(format!("deleted {} credentials {fields}", b.key));
        }
        if kept.is_some() {
            continue;
        }
        if b.listed {
            store.unlist_plugin(account, &b.key).await?;
        }
        notes.push(format!("uninstalled {}", b.key));
    }
    Ok(notes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(key: &str, listed: bool, fields: &[&str]) -> InstalledPlugin {
        InstalledPlugin {
            key: key.into(),
            listed,
            auth_fields: fields.iter().map(|f| f.to_string()).collect(),
            ..InstalledPlugin::default()
        }
    }

    fn desired(keys: &[(&str, &[&str])]) -> DesiredPlugins {
        DesiredPlugins {
            list: keys
                .iter()
                .map(|(k, fields)| DesiredPlugin {
                    key: k.to_string(),
                    auth: fields
                        .iter()
                        .map(|f| (f.to_string(), "ct".into()))
                        .collect(),
                })
                .collect(),
        }
    }

    #[test]
    fn a_plugin_the_person_installed_is_not_the_operators_to_list() {
        let d = desired(&[
            ("google", &["GOOGLE_CSE_ID"]),
            ("calc", &[]),
            ("mcp_gh", &["PAT"]),
        ]);
        let after = intended(&d, &[], &["google".into()]);
        assert_eq!(
            after,
            vec![
                rec("google", false, &["GOOGLE_CSE_ID"]),
                rec("calc", true, &[]),
                rec("mcp_gh", false, &["PAT"]),
            ]
        );
        // Once the operator listed it, it stays the operator's even though it is listed now.
        let again = intended(
            &d,
            &after
                .iter()
                .map(|p| rec(&p.key, true, &[]))
                .collect::<Vec<_>>(),
            &["google".into(), "calc".into()],
        );
        assert!(again[0].listed && again[1].listed && !again[2].listed);
    }

    #[test]
    fn the_persons_replaced_credentials_are_kept_while_their_field_is_declared() {
        let mut before = rec("google", true, &["A", "B"]);
        before.replaced = [
            ("A".into(), "theirs-a".into()),
            ("B".into(), "theirs-b".into()),
        ]
        .into();
        let after = intended(&desired(&[("google", &["A"])]), &[before.clone()], &[]);
        // B is no longer declared: not kept, so removing it puts the person's B back.
        assert_eq!(after[0].replaced, [("A".into(), "theirs-a".into())].into());
        // While both are written, the record names everything either side holds.
        let union = merged(&[before], &after);
        assert_eq!(union[0].replaced.len(), 2);
    }

    #[test]
    fn the_record_before_writing_names_old_and_new() {
        let before = vec![rec("google", true, &["A"]), rec("old", false, &["X"])];
        let after = vec![rec("google", false, &["B"])];
        assert_eq!(
            merged(&before, &after),
            vec![rec("google", true, &["B", "A"]), rec("old", false, &["X"])]
        );
    }
}
