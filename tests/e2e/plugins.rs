//! Plugins and their credentials (contract-surface §2): stored as LibreChat's
//! `updatePluginAuth` stores them, recovered by LibreChat's own `decrypt`, re-encrypted when
//! their Secret changes, uninstalled when their entry goes, and never anything a person
//! installed in LibreChat itself.

use mongodb::bson::{doc, oid::ObjectId, Document};
use serde_json::{json, Value};

use crate::support::*;
use crate::trust::{lc, tenant_world};
use crate::user::{foreign_user, user_id};

const CREDS_KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const CREDS_IV: &str = "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf";
const CREDS: [(&str, &str); 2] = [("CREDS_KEY", CREDS_KEY), ("CREDS_IV", CREDS_IV)];
/// The contract's worked example: `encrypt` of the plaintexts with the key and IV above.
const SERPER: &str = "sk-serper-demo-123";
const SERPER_CT: &str = "1a66d14238b137f9a6f33a90e9235da753c9d2a6762a1bf6060852eaab283bbb";
const GITHUB: &str = "ghp_demo";
const GITHUB_CT: &str = "1f714d9922831b33bdaaa5b76e978c6f";

fn with_credentials() -> Value {
    json!({ "credentials": { "secretRef": { "name": "lc-creds" } } })
}

fn plugin(key: &str, secret: Option<&str>) -> Value {
    match secret {
        Some(s) => json!({ "key": key, "credentialsSecretRef": { "name": s } }),
        None => json!({ "key": key }),
    }
}

fn user_with(email: &str, plugins: Value) -> Value {
    json!({ "instanceRef": { "name": "lc" }, "email": email, "plugins": plugins })
}

async fn rows(w: &World, filter: Document) -> Vec<Document> {
    use futures::TryStreamExt;
    w.db.collection::<Document>("pluginauths")
        .find(filter)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap()
}

async fn value_of(w: &World, id: ObjectId, key: &str, field: &str) -> Option<String> {
    let filter = doc! { "userId": id.to_hex(), "pluginKey": key, "authField": field };
    let found = rows(w, filter).await;
    found
        .first()
        .and_then(|d| d.get_str("value").ok().map(String::from))
}

async fn listed(w: &World, id: ObjectId) -> Vec<String> {
    let user = w.users().find_one(doc! { "_id": id }).await.unwrap();
    user.and_then(|u| u.get_array("plugins").ok().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|p| p.as_str().map(String::from))
        .collect()
}

fn expect(id: ObjectId, key: &str, field: &str, plaintext: Option<&str>) -> Value {
    json!({ "userId": id.to_hex(), "pluginKey": key, "authField": field, "plaintext": plaintext })
}

/// The three OAuth token documents LibreChat keeps for an MCP server.
async fn insert_mcp_tokens(w: &World, id: ObjectId, server: &str) {
    let now = mongodb::bson::DateTime::now();
    // An hour ahead: `tokens` has a TTL index on expiresAt, and a token already expired may be
    // removed by the server's TTL sweep mid-test (seen: the "other" server's tokens gone).
    let expires = mongodb::bson::DateTime::from_millis(now.timestamp_millis() + 3_600_000);
    let base = format!("mcp:{server}");
    let docs: Vec<Document> = [
        ("mcp_oauth", base.clone()),
        ("mcp_oauth_refresh", format!("{base}:refresh")),
        ("mcp_oauth_client", format!("{base}:client")),
    ]
    .into_iter()
    .map(|(t, i)| doc! { "userId": id, "type": t, "identifier": i, "token": "iv:ct", "createdAt": now, "expiresAt": expires })
    .collect();
    w.db.collection::<Document>("tokens")
        .insert_many(docs)
        .await
        .unwrap();
}

async fn count(w: &World, collection: &str, filter: Document) -> u64 {
    w.db.collection::<Document>(collection)
        .count_documents(filter)
        .await
        .unwrap()
}

#[tokio::test]
async fn credentials_are_stored_as_librechat_stores_them_and_follow_their_secret() {
    let w = World::with_instance("plug-store", with_credentials()).await;
    w.secret("lc-creds", &CREDS).await;
    w.secret("serper", &[("SERPER_API_KEY", SERPER)]).await;
    w.secret("github", &[("GITHUB_PAT", GITHUB)]).await;
    w.secret(
        "google",
        &[
            ("GOOGLE_CSE_ID", "cse-1"),
            ("GOOGLE_SEARCH_API_KEY", "gk-1"),
        ],
    )
    .await;
    let plugins = json!([
        plugin("web_search", Some("serper")),
        plugin("mcp_github", Some("github")),
        plugin("google", Some("google")),
        plugin("calculator", None)
    ]);
    w.apply(
        "LibreChatUser",
        "ann",
        user_with("ann@example.com", plugins),
    )
    .await;
    let id = user_id(&w, "ann").await;

    // The contract's worked example, byte for byte, and the document updatePluginAuth makes.
    assert_eq!(
        value_of(&w, id, "web_search", "SERPER_API_KEY")
            .await
            .as_deref(),
        Some(SERPER_CT)
    );
    assert_eq!(
        value_of(&w, id, "mcp_github", "GITHUB_PAT")
            .await
            .as_deref(),
        Some(GITHUB_CT)
    );
    let row = &rows(&w, doc! { "pluginKey": "web_search" }).await[0];
    let fields: Vec<&str> = row.keys().map(String::as_str).collect();
    assert_eq!(
        fields,
        [
            "_id",
            "authField",
            "value",
            "userId",
            "pluginKey",
            "createdAt",
            "updatedAt",
            "__v"
        ]
    );
    // Tools are installed; web search and MCP servers are credentials only (isEntityTool).
    assert_eq!(listed(&w, id).await, ["google", "calculator"]);
    let obj = w.get("librechatusers", "ann").await.unwrap();
    assert_eq!(
        obj.pointer("/status/plugins").unwrap(),
        &json!(["web_search", "mcp_github", "google", "calculator"])
    );
    w.contract_check_with_env(
        json!({ "pluginAuths": [
            expect(id, "web_search", "SERPER_API_KEY", Some(SERPER)),
            expect(id, "mcp_github", "GITHUB_PAT", Some(GITHUB)),
            expect(id, "google", "GOOGLE_CSE_ID", Some("cse-1")),
            expect(id, "google", "GOOGLE_SEARCH_API_KEY", Some("gk-1")),
        ] }),
        &CREDS,
    );

    // A Secret change re-encrypts; a resync of unchanged values writes nothing.
    let before = rows(&w, doc! { "pluginKey": "google" }).await;
    w.secret("serper", &[("SERPER_API_KEY", "sk-rotated")])
        .await;
    eventually("the new credential to be stored", || async {
        (value_of(&w, id, "web_search", "SERPER_API_KEY")
            .await
            .as_deref()
            != Some(SERPER_CT))
        .then_some(())
    })
    .await;
    w.contract_check_with_env(
        json!({ "pluginAuths": [expect(id, "web_search", "SERPER_API_KEY", Some("sk-rotated"))] }),
        &CREDS,
    );
    assert_eq!(
        rows(&w, doc! { "pluginKey": "google" }).await,
        before,
        "unchanged credentials are not rewritten"
    );

    // Deleting with Delete removes the credentials with the account (LibreChat's cascade).
    let mut spec = user_with(
        "ann@example.com",
        json!([plugin("web_search", Some("serper"))]),
    );
    spec["deletionPolicy"] = json!("Delete");
    w.apply("LibreChatUser", "ann", spec).await;
    w.wait_condition("librechatusers", "ann", "Ready", "True", None)
        .await;
    w.delete("LibreChatUser", "ann").await;
    w.wait_gone("librechatusers", "ann").await;
    assert_eq!(count(&w, "pluginauths", doc! {}).await, 0);
    assert_eq!(count(&w, "librechat_operator_plugins", doc! {}).await, 0);

    let log = w.operator_log();
    for secret in [
        SERPER,
        "sk-rotated",
        GITHUB,
        "gk-1",
        CREDS_KEY,
        CREDS_IV,
        SERPER_CT,
        GITHUB_CT,
    ] {
        assert!(
            !log.contains(secret),
            "the operator log must not contain credentials"
        );
    }
}

#[tokio::test]
async fn removing_an_entry_uninstalls_only_what_the_operator_installed() {
    let w = World::with_instance("plug-remove", with_credentials()).await;
    w.secret("lc-creds", &CREDS).await;
    w.secret("github", &[("GITHUB_PAT", GITHUB)]).await;
    w.secret(
        "google",
        &[
            ("GOOGLE_CSE_ID", "cse-1"),
            ("GOOGLE_SEARCH_API_KEY", "gk-1"),
        ],
    )
    .await;
    let all = json!([
        plugin("mcp_github", Some("github")),
        plugin("google", Some("google")),
        plugin("wolfram", None),
        plugin("calculator", None)
    ]);
    w.apply(
        "LibreChatUser",
        "bob",
        user_with("bob@example.com", json!([plugin("calculator", None)])),
    )
    .await;
    let id = user_id(&w, "bob").await;
    // What the person did in LibreChat's UI: installed wolfram (with its key) and dalle.
    w.users()
        .update_one(
            doc! { "_id": id },
            doc! { "$push": { "plugins": { "$each": ["wolfram", "dalle"] } } },
        )
        .await
        .unwrap();
    let ui_row = doc! { "authField": "WOLFRAM_APP_ID", "value": "00", "userId": id.to_hex(), "pluginKey": "wolfram" };
    w.db.collection::<Document>("pluginauths")
        .insert_one(ui_row)
        .await
        .unwrap();
    insert_mcp_tokens(&w, id, "github").await;
    insert_mcp_tokens(&w, id, "other").await;

    w.apply("LibreChatUser", "bob", user_with("bob@example.com", all))
        .await;
    w.wait_condition("librechatusers", "bob", "Ready", "True", None)
        .await;
    eventually("google to be installed", || async {
        (listed(&w, id).await == ["calculator", "wolfram", "dalle", "google"]).then_some(())
    })
    .await;

    // Removing entries and a Secret key: the operator's rows and listings go; the person's MCP
    // OAuth tokens stay (LibreChat revokes them at the provider before deleting them, which
    // the operator cannot do).
    w.secret("google", &[("GOOGLE_CSE_ID", "cse-1")]).await;
    w.apply(
        "LibreChatUser",
        "bob",
        user_with("bob@example.com", json!([plugin("google", Some("google"))])),
    )
    .await;
    eventually("the removed entries to be uninstalled", || async {
        (listed(&w, id).await == ["wolfram", "dalle", "google"]).then_some(())
    })
    .await;
    eventually("the dropped key's credential to go", || async {
        value_of(&w, id, "google", "GOOGLE_SEARCH_API_KEY")
            .await
            .is_none()
            .then_some(())
    })
    .await;
    assert_eq!(
        count(&w, "pluginauths", doc! { "pluginKey": "mcp_github" }).await,
        0
    );
    assert_eq!(
        count(
            &w,
            "tokens",
            doc! { "identifier": { "$regex": "^mcp:github" } }
        )
        .await,
        3
    );
    assert_eq!(
        count(
            &w,
            "tokens",
            doc! { "identifier": { "$regex": "^mcp:other" } }
        )
        .await,
        3
    );
    assert_eq!(
        count(&w, "pluginauths", doc! { "pluginKey": "wolfram" }).await,
        1,
        "the UI's own credential stays"
    );
    w.contract_check_with_env(
        json!({ "pluginAuths": [
            expect(id, "google", "GOOGLE_CSE_ID", Some("cse-1")),
            expect(id, "google", "GOOGLE_SEARCH_API_KEY", None),
            expect(id, "mcp_github", "GITHUB_PAT", None),
        ] }),
        &CREDS,
    );

    // Deleting with Retain leaves the plugins, like the account.
    w.delete("LibreChatUser", "bob").await;
    w.wait_gone("librechatusers", "bob").await;
    assert_eq!(listed(&w, id).await, ["wolfram", "dalle", "google"]);
    assert!(value_of(&w, id, "google", "GOOGLE_CSE_ID").await.is_some());
    assert_eq!(count(&w, "librechat_operator_plugins", doc! {}).await, 0);
}

/// Waits for Ready=False with `reason` and a message containing `needle`; returns the message.
async fn refused(w: &World, name: &str, reason: &str, needle: &str) -> String {
    eventually(
        &format!("{name}: Ready=False, {reason}, '{needle}'"),
        || async {
            let obj = w.get("librechatusers", name).await?;
            let ready = condition(&obj, "Ready")?;
            (ready.status == "False" && ready.reason == reason && ready.message.contains(needle))
                .then_some(ready.message)
        },
    )
    .await
}

#[tokio::test]
async fn bad_credentials_and_bad_plugins_write_nothing() {
    let w = World::with_instance("plug-bad", json!({})).await;
    w.secret("serper", &[("SERPER_API_KEY", SERPER)]).await;
    let spec = user_with(
        "cy@example.com",
        json!([plugin("web_search", Some("serper"))]),
    );

    // No credentials on the instance.
    w.apply("LibreChatUser", "cy", spec.clone()).await;
    refused(&w, "cy", "CredentialsInvalid", "spec.credentials.secretRef").await;
    // Credentials named but missing, a key of the wrong length, an IV that is not hex.
    w.ready_instance("lc", with_credentials()).await;
    refused(&w, "cy", "SecretNotFound", "lc-creds").await;
    w.secret(
        "lc-creds",
        &[("CREDS_KEY", &CREDS_KEY[..40]), ("CREDS_IV", CREDS_IV)],
    )
    .await;
    let m = refused(&w, "cy", "CredentialsInvalid", "CREDS_KEY is 20 bytes").await;
    // The instance says so too, without being less ready for users without plugins.
    eventually("the instance to name the bad key", || async {
        let lc = w.get("librechatinstances", "lc").await?;
        let ready = condition(&lc, "Ready")?;
        (ready.status == "True" && ready.message.contains("CREDS_KEY is 20 bytes")).then_some(())
    })
    .await;
    assert!(!m.contains(&CREDS_KEY[..40]), "{m}");
    w.secret(
        "lc-creds",
        &[("CREDS_KEY", CREDS_KEY), ("CREDS_IV", "zz-not-hex-zz")],
    )
    .await;
    let m = refused(&w, "cy", "CredentialsInvalid", "CREDS_IV is not hex").await;
    assert!(!m.contains("zz-not-hex"), "{m}");
    w.secret("lc-creds", &[("CREDS_KEY", CREDS_KEY)]).await;
    refused(&w, "cy", "SecretKeyMissing", "CREDS_IV").await;

    // Plugins LibreChat would refuse (declared before the key is fixed, so that no
    // reconcile of the valid declaration comes between).
    w.secret("bad-search", &[("serper", SERPER)]).await;
    w.apply(
        "LibreChatUser",
        "cy",
        user_with(
            "cy@example.com",
            json!([plugin("web_search", Some("bad-search"))]),
        ),
    )
    .await;
    let m = refused(
        &w,
        "cy",
        "PluginInvalid",
        "'serper' is not a web_search credential",
    )
    .await;
    assert!(!m.contains(SERPER), "{m}");
    w.secret("lc-creds", &CREDS).await;
    w.apply(
        "LibreChatUser",
        "cy",
        user_with(
            "cy@example.com",
            json!([
                plugin("search_mcp_github", None),
                plugin("x", None),
                plugin("x", None)
            ]),
        ),
    )
    .await;
    let m = refused(&w, "cy", "InvalidSpec", "MCP tool name").await;
    assert!(m.contains("listed twice"), "{m}");

    assert!(
        w.find_user("cy@example.com").await.is_none(),
        "nothing was written"
    );
    assert_eq!(count(&w, "pluginauths", doc! {}).await, 0);
    assert_eq!(count(&w, "librechat_operator_owners", doc! {}).await, 0);

    // Fixed, it applies.
    w.apply("LibreChatUser", "cy", spec).await;
    let id = user_id(&w, "cy").await;
    assert_eq!(
        value_of(&w, id, "web_search", "SERPER_API_KEY")
            .await
            .as_deref(),
        Some(SERPER_CT)
    );
}

#[tokio::test]
async fn a_tenant_cannot_plant_credentials_on_an_account_it_only_adopted() {
    let (w, t) = tenant_world("plug-tenant", with_credentials()).await;
    w.secret("lc-creds", &CREDS).await;
    let id = ObjectId::new();
    w.users()
        .insert_one(foreign_user(id, "adopted@example.com"))
        .await
        .unwrap();
    put_secret(&w.client, &t, "serper", &[("SERPER_API_KEY", SERPER)]).await;
    let planted = json!({ "instanceRef": lc(&w), "email": "adopted@example.com", "adopt": true,
                          "plugins": [plugin("web_search", Some("serper"))] });
    w.apply_in(&t, "LibreChatUser", "plant", planted).await;
    let obj = wait_condition_in(
        &w.client,
        &t,
        "librechatusers",
        "plant",
        "Ready",
        "False",
        Some("NotPermitted"),
    )
    .await;
    let m = condition(&obj, "Ready").unwrap().message;
    assert!(m.contains("plugins"), "{m}");
    assert_eq!(
        count(&w, "pluginauths", doc! {}).await,
        0,
        "nothing planted"
    );
    assert!(listed(&w, id).await.is_empty());

    // A Secret is read from the object's own namespace: naming the instance's Secret finds nothing.
    let steal = json!({ "instanceRef": lc(&w), "email": "own@example.com",
                        "plugins": [plugin("mcp_x", Some("lc-creds"))] });
    w.apply_in(&t, "LibreChatUser", "steal", steal).await;
    let obj = wait_condition_in(
        &w.client,
        &t,
        "librechatusers",
        "steal",
        "Ready",
        "False",
        Some("SecretNotFound"),
    )
    .await;
    let m = condition(&obj, "Ready").unwrap().message;
    assert!(
        m.contains(&format!("namespace '{t}'")) && !m.contains(CREDS_KEY),
        "{m}"
    );

    // On an account the operator created for it, a tenant's plugins apply.
    let own = json!({ "instanceRef": lc(&w), "email": "own@example.com",
                      "plugins": [plugin("web_search", Some("serper"))] });
    w.apply_in(&t, "LibreChatUser", "steal", own).await;
    let obj = wait_condition_in(
        &w.client,
        &t,
        "librechatusers",
        "steal",
        "Ready",
        "True",
        None,
    )
    .await;
    let own_id = ObjectId::parse_str(
        obj.pointer("/status/userId")
            .and_then(Value::as_str)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        value_of(&w, own_id, "web_search", "SERPER_API_KEY")
            .await
            .as_deref(),
        Some(SERPER_CT)
    );

    // With manageAdoptedAccounts the instance lets tenants manage what they adopt.
    let mut spec = json!({ "allowedNamespaces": [t.clone()], "tenantPolicy": { "manageAdoptedAccounts": true } });
    merge(&mut spec, with_credentials());
    w.apply_instance("lc", &env("REDIS_URL"), spec).await;
    w.wait_condition("librechatinstances", "lc", "Ready", "True", None)
        .await;
    // A tenant namespace's watch does not see the instance's namespace: a new object applies it.
    delete_in(&w.client, &t, "LibreChatUser", "plant").await;
    let planted = json!({ "instanceRef": lc(&w), "email": "adopted@example.com", "adopt": true,
                          "plugins": [plugin("web_search", Some("serper"))] });
    w.apply_in(&t, "LibreChatUser", "managed", planted).await;
    wait_condition_in(
        &w.client,
        &t,
        "librechatusers",
        "managed",
        "Ready",
        "True",
        None,
    )
    .await;
    assert_eq!(
        value_of(&w, id, "web_search", "SERPER_API_KEY")
            .await
            .as_deref(),
        Some(SERPER_CT)
    );
}

/// A credential the person stored in LibreChat for a field the operator then declares is
/// theirs: replaced while the declaration stands, put back (not deleted) when it goes.
#[tokio::test]
async fn a_credential_the_person_stored_is_put_back_when_the_declaration_goes() {
    let w = World::with_instance("plug-theirs", with_credentials()).await;
    w.secret("lc-creds", &CREDS).await;
    w.secret(
        "google",
        &[
            ("GOOGLE_CSE_ID", "cse-1"),
            ("GOOGLE_SEARCH_API_KEY", "gk-1"),
        ],
    )
    .await;
    w.apply(
        "LibreChatUser",
        "eve",
        user_with("eve@example.com", json!([])),
    )
    .await;
    let id = user_id(&w, "eve").await;
    // The person's own CSE id, stored through LibreChat's UI before any declaration.
    let theirs = "5f5e5d5c5b5a59585756555453525150";
    let row = doc! { "authField": "GOOGLE_CSE_ID", "value": theirs, "userId": id.to_hex(),
    "pluginKey": "google", "__v": 0 };
    w.db.collection::<Document>("pluginauths")
        .insert_one(row)
        .await
        .unwrap();

    let declared = json!([plugin("google", Some("google"))]);
    w.apply(
        "LibreChatUser",
        "eve",
        user_with("eve@example.com", declared),
    )
    .await;
    eventually("the declared credentials to be stored", || async {
        let cse = value_of(&w, id, "google", "GOOGLE_CSE_ID").await?;
        value_of(&w, id, "google", "GOOGLE_SEARCH_API_KEY").await?;
        (cse != theirs).then_some(())
    })
    .await;
    w.contract_check_with_env(
        json!({ "pluginAuths": [expect(id, "google", "GOOGLE_CSE_ID", Some("cse-1"))] }),
        &CREDS,
    );

    w.apply(
        "LibreChatUser",
        "eve",
        user_with("eve@example.com", json!([])),
    )
    .await;
    eventually("the person's own credential to be back", || async {
        let cse = value_of(&w, id, "google", "GOOGLE_CSE_ID").await?;
        (cse == theirs).then_some(())
    })
    .await;
    assert_eq!(
        value_of(&w, id, "google", "GOOGLE_SEARCH_API_KEY").await,
        None,
        "what only the operator wrote is deleted"
    );
    assert_eq!(
        count(&w, "pluginauths", doc! { "pluginKey": "google" }).await,
        1,
        "one row, the person's"
    );
}

/// An object that vanished without its cleanup (a forced clean-up while the operator was
/// down) and is applied again inherits its account, and with it what its predecessor
/// installed: the re-created object without the entry uninstalls it, rather than leaving the
/// team's credential on the account as nobody's (or taking it for the person's own).
#[tokio::test]
async fn a_re_created_object_inherits_what_its_predecessor_installed() {
    let mut w = World::with_instance("plug-heir", with_credentials()).await;
    w.secret("lc-creds", &CREDS).await;
    w.secret("github", &[("GITHUB_PAT", GITHUB)]).await;
    let installed = json!([
        plugin("mcp_github", Some("github")),
        plugin("calculator", None)
    ]);
    w.apply(
        "LibreChatUser",
        "heir",
        user_with("heir@example.com", installed),
    )
    .await;
    let id = user_id(&w, "heir").await;
    eventually("the credential to be stored", || async {
        value_of(&w, id, "mcp_github", "GITHUB_PAT").await
    })
    .await;
    w.stop_operator();
    w.remove_without_cleanup("LibreChatUser", "heir").await;
    w.start_operator();

    w.apply(
        "LibreChatUser",
        "heir",
        user_with("heir@example.com", json!([])),
    )
    .await;
    assert_eq!(user_id(&w, "heir").await, id, "the same account, inherited");
    eventually(
        "what the predecessor installed to be uninstalled",
        || async {
            let gone = value_of(&w, id, "mcp_github", "GITHUB_PAT").await.is_none()
                && listed(&w, id).await.is_empty();
            gone.then_some(())
        },
    )
    .await;
}

/// A LibreChatUser `name` with the calculator installed, once the operator recorded it: its
/// account and the collection of the operator's plugin records.
async fn calculator_installed(
    w: &World,
    name: &str,
    email: &str,
) -> (ObjectId, mongodb::Collection<Document>) {
    w.secret("lc-creds", &CREDS).await;
    let calculator = json!([plugin("calculator", None)]);
    w.apply("LibreChatUser", name, user_with(email, calculator))
        .await;
    let id = user_id(w, name).await;
    let records = w.db.collection::<Document>("librechat_operator_plugins");
    eventually("the plugin record", || async {
        records.find_one(doc! { "_id": id }).await.ok()?.map(|_| ())
    })
    .await;
    (id, records)
}

/// An account its person deleted in LibreChat is re-created fresh: the record of what was
/// installed on the old one (with any credential of the person's it replaced) goes, and the
/// new account gets the declared plugins.
#[tokio::test]
async fn an_account_deleted_in_librechat_leaves_no_plugin_record_behind() {
    let w = World::with_instance("plug-regone", with_credentials()).await;
    let (first, records) = calculator_installed(&w, "gone", "gone@example.com").await;
    w.users().delete_one(doc! { "_id": first }).await.unwrap();
    let second = eventually("the account to be re-created", || async {
        let d = w.find_user("gone@example.com").await?;
        d.get_object_id("_id").ok().filter(|id| *id != first)
    })
    .await;
    eventually("the calculator listed on the new account", || async {
        (listed(&w, second).await == ["calculator"]).then_some(())
    })
    .await;
    assert!(records
        .find_one(doc! { "_id": first })
        .await
        .unwrap()
        .is_none());
}

/// The same when the person registered again before the account was re-created: the object
/// waits for `adopt`, and the record of the deleted account does not stay behind meanwhile.
#[tokio::test]
async fn an_account_deleted_and_registered_again_leaves_no_plugin_record_behind() {
    let mut w = World::with_instance("plug-rereg", with_credentials()).await;
    let (first, records) = calculator_installed(&w, "again", "again@example.com").await;
    w.stop_operator();
    w.users().delete_one(doc! { "_id": first }).await.unwrap();
    let registered = foreign_user(ObjectId::new(), "again@example.com");
    w.users().insert_one(registered).await.unwrap();
    w.start_operator();
    w.wait_condition(
        "librechatusers",
        "again",
        "Ready",
        "False",
        Some("AlreadyExists"),
    )
    .await;
    assert!(records
        .find_one(doc! { "_id": first })
        .await
        .unwrap()
        .is_none());
}
