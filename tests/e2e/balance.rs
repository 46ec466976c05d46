//! Balances: the record registration gives a new account, per-user auto-refill, and credit
//! grants applied exactly once (across restarts and crashes), judged by LibreChat's own code.

use std::time::Duration;

use kube::api::{Patch, PatchParams};
use librechat_operator::librechat::balance::{grant_scope, grant_transaction_id};
use mongodb::bson::{doc, oid::ObjectId, Document};
use serde_json::{json, Value};

use crate::support::*;

/// LibreChat's `balance` block of the instance in these tests.
fn balance_config() -> Value {
    json!({ "balance": {
        "enabled": true, "startBalance": 20000, "autoRefillEnabled": true,
        "refillIntervalValue": 1, "refillIntervalUnit": "seconds", "refillAmount": 10000,
    } })
}

fn user_spec(email: &str, balance: Value) -> Value {
    json!({ "instanceRef": { "name": "lc" }, "email": email, "balance": balance })
}

async fn balances_of(w: &World, user: ObjectId) -> Vec<Document> {
    use futures::TryStreamExt;
    w.db.collection::<Document>("balances")
        .find(doc! { "user": user })
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap()
}

async fn transactions_of(w: &World, user: ObjectId) -> u64 {
    w.db.collection::<Document>("transactions")
        .count_documents(doc! { "user": user })
        .await
        .unwrap()
}

/// The scope of the object's grants and its account's id, once Ready.
async fn ready_user(w: &World, name: &str) -> (String, ObjectId, Value) {
    let obj = w
        .wait_condition("librechatusers", name, "Ready", "True", None)
        .await;
    let id = obj.pointer("/status/userId").unwrap().as_str().unwrap();
    let id = ObjectId::parse_str(id).unwrap();
    (grant_scope(&w.ns, name, id), id, obj)
}

async fn credits_shown(w: &World, name: &str, want: i64) {
    eventually(&format!("status.balance.tokenCredits = {want}"), || async {
        let obj = w.get("librechatusers", name).await?;
        (obj.pointer("/status/balance/tokenCredits")?.as_i64()? == want).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_new_account_gets_its_start_balance_and_each_grant_once() {
    let mut w = World::with_instance("bal-grant", balance_config()).await;
    let grants = json!({ "grants": [
        { "id": "welcome", "credits": 500, "reason": "onboarding" },
        { "id": "correction", "credits": 100 },
    ] });
    w.apply("LibreChatUser", "u", user_spec("rich@example.com", grants))
        .await;
    let (scope, id, _) = ready_user(&w, "u").await;
    credits_shown(&w, "u", 20600).await;
    let tx = |g: &str| grant_transaction_id(&scope, g).to_hex();
    let expectations = json!({
        "users": [{ "email": "rich@example.com" }],
        "balances": [{ "userId": id.to_hex(), "tokenCredits": 20600, "fields": {
            "autoRefillEnabled": true, "refillIntervalValue": 1,
            "refillIntervalUnit": "seconds", "refillAmount": 10000 } }],
        "creditTransactions": [
            { "id": tx("welcome"), "userId": id.to_hex(), "rawAmount": 500 },
            { "id": tx("correction"), "userId": id.to_hex(), "rawAmount": 100 },
        ],
    });
    w.contract_check(expectations.clone());
    w.wait_event("u", "CreditsGranted").await;
    w.wait_event("u", "BalanceCreated").await;

    // A restart and several resyncs later, nothing was applied twice.
    w.stop_operator();
    w.start_operator();
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(transactions_of(&w, id).await, 2);
    w.contract_check(expectations.clone());

    // Removing a grant does not undo it; a new one is applied, to the balance as LibreChat's
    // spending left it (a fraction of a credit included).
    w.db.collection::<Document>("balances")
        .update_one(
            doc! { "user": id },
            doc! { "$set": { "tokenCredits": 20600.25 } },
        )
        .await
        .unwrap();
    let later = json!({ "grants": [{ "id": "bonus", "credits": 7 }] });
    w.apply("LibreChatUser", "u", user_spec("rich@example.com", later))
        .await;
    credits_shown(&w, "u", 20607).await;
    assert_eq!(
        balances_of(&w, id).await[0].get_f64("tokenCredits"),
        Ok(20607.25)
    );
    let obj = w.get("librechatusers", "u").await.unwrap();
    assert_eq!(
        obj.pointer("/status/balance/grantsApplied"),
        Some(&json!(["bonus"]))
    );
    assert_eq!(transactions_of(&w, id).await, 3);
    assert_eq!(balances_of(&w, id).await.len(), 1);
}

/// A grant id is applied once per object name and account, ever: the object deleted
/// (Retain) and applied again, taking its account back (a replace, a restore: a new uid),
/// finds its grants applied, and so does one whose grant was applied under the uid-keyed id
/// that earlier builds used.
#[tokio::test]
async fn a_re_created_object_does_not_grant_again() {
    let w = World::with_instance("bal-recreate", balance_config()).await;
    let grants = json!({ "grants": [{ "id": "welcome", "credits": 500 }] });
    w.apply(
        "LibreChatUser",
        "u",
        user_spec("again@example.com", grants.clone()),
    )
    .await;
    let (_, id, _) = ready_user(&w, "u").await;
    credits_shown(&w, "u", 20500).await;
    w.delete("LibreChatUser", "u").await;
    w.wait_gone("librechatusers", "u").await;
    // Applied again (taking the account it left behind back).
    let mut again = user_spec("again@example.com", grants);
    again["adopt"] = json!(true);
    w.apply("LibreChatUser", "u", again).await;
    let (_, again, _) = ready_user(&w, "u").await;
    assert_eq!(again, id, "the re-created object manages the same account");
    tokio::time::sleep(Duration::from_secs(6)).await;
    credits_shown(&w, "u", 20500).await;
    assert_eq!(transactions_of(&w, id).await, 1);

    // A grant an earlier build applied under the object's uid counts as applied.
    let obj = w.get("librechatusers", "u").await.unwrap();
    let uid = obj.pointer("/metadata/uid").unwrap().as_str().unwrap();
    w.db.collection::<Document>("transactions")
        .insert_one(
            doc! { "_id": grant_transaction_id(uid, "legacy"), "user": id,
            "tokenType": "credits", "context": "admin", "rawAmount": 70 },
        )
        .await
        .unwrap();
    let grants = json!({ "grants": [{ "id": "welcome", "credits": 500 },
                                     { "id": "legacy", "credits": 70 }] });
    let mut both = user_spec("again@example.com", grants);
    both["adopt"] = json!(true);
    w.apply("LibreChatUser", "u", both).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    credits_shown(&w, "u", 20500).await;
    assert_eq!(transactions_of(&w, id).await, 2);
}

/// The attack: a person spends their credits, deletes their own account in LibreChat
/// (`DELETE /api/user/delete` takes the balance and the transactions with it), and waits for
/// the declaration to re-create it, to be granted everything again. The re-created account
/// gets what a new registration gets (the start balance), not the grants once more; a grant
/// declared later is still given, once.
#[tokio::test]
async fn deleting_ones_own_account_does_not_grant_again() {
    let w = World::with_instance("bal-selfdelete", balance_config()).await;
    let grants = json!({ "grants": [{ "id": "welcome", "credits": 500 }] });
    w.apply("LibreChatUser", "u", user_spec("mint@example.com", grants))
        .await;
    let (_, first, _) = ready_user(&w, "u").await;
    credits_shown(&w, "u", 20500).await;

    // As LibreChat's deleteUserController does: the account, its balance, its transactions.
    w.db.collection::<Document>("balances")
        .delete_many(doc! { "user": first })
        .await
        .unwrap();
    w.db.collection::<Document>("transactions")
        .delete_many(doc! { "user": first })
        .await
        .unwrap();
    w.users().delete_one(doc! { "_id": first }).await.unwrap();
    let second = eventually("the account to be re-created", || async {
        let obj = w.get("librechatusers", "u").await?;
        let id = ObjectId::parse_str(obj.pointer("/status/userId")?.as_str()?).ok()?;
        (id != first).then_some(id)
    })
    .await;
    credits_shown(&w, "u", 20000).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    credits_shown(&w, "u", 20000).await;
    assert_eq!(transactions_of(&w, second).await, 0, "no grant again");
    w.contract_check(json!({
        "users": [{ "email": "mint@example.com" }],
        "balances": [{ "userId": second.to_hex(), "tokenCredits": 20000 }],
    }));

    let more = json!({ "grants": [{ "id": "welcome", "credits": 500 },
                                  { "id": "later", "credits": 30 }] });
    w.apply("LibreChatUser", "u", user_spec("mint@example.com", more))
        .await;
    credits_shown(&w, "u", 20030).await;
    assert_eq!(transactions_of(&w, second).await, 1);
}

#[tokio::test]
async fn per_user_auto_refill_is_written_and_kept() {
    let w = World::with_instance("bal-refill", json!({ "balance": { "enabled": true } })).await;
    let refill = json!({ "autoRefill": {
        "enabled": true, "intervalValue": 2, "intervalUnit": "hours", "amount": 300 } });
    w.apply(
        "LibreChatUser",
        "r",
        user_spec("refill@example.com", refill),
    )
    .await;
    let (_, id, _) = ready_user(&w, "r").await;
    let fields = json!({ "autoRefillEnabled": true, "refillIntervalValue": 2,
        "refillIntervalUnit": "hours", "refillAmount": 300 });
    w.contract_check(
        json!({ "balances": [{ "userId": id.to_hex(), "tokenCredits": 20000, "fields": fields }] }),
    );

    // LibreChat's login sync reverts them when its yaml enables auto-refill: a resync puts
    // them back.
    w.db.collection::<Document>("balances")
        .update_one(
            doc! { "_id": id },
            doc! { "$set": { "refillAmount": 10000 } },
        )
        .await
        .unwrap();
    eventually("the refill amount to be put back", || async {
        let b = balances_of(&w, id).await.pop()?;
        (b.get_i32("refillAmount").ok()? == 300).then_some(())
    })
    .await;
    w.wait_event("r", "AutoRefillSet").await;
}

/// Auto-refill declared on an account that has no balance record yet (it never logged in; its
/// balance was off when it was made) creates the record as LibreChat's first login would: with
/// the start balance, not with no credits, which would cost the person its start balance.
#[tokio::test]
async fn a_refill_on_an_account_without_a_balance_keeps_its_start_balance() {
    let w = World::with_instance("bal-refill-new", balance_config()).await;
    let id = ObjectId::new();
    w.users()
        .insert_one(crate::user::foreign_user(id, "newcomer@example.com"))
        .await
        .unwrap();
    let spec = json!({ "instanceRef": { "name": "lc" }, "email": "newcomer@example.com",
        "adopt": true, "balance": { "autoRefill": { "amount": 300 } } });
    w.apply("LibreChatUser", "n", spec).await;
    ready_user(&w, "n").await;
    // The yaml's settings, as the login sync would have written them, but the amount declared.
    let fields = json!({ "autoRefillEnabled": true, "refillIntervalValue": 1,
        "refillIntervalUnit": "seconds", "refillAmount": 300 });
    refill_becomes(&w, id, fields.clone(), "the declared refill").await;
    w.contract_check(json!({ "balances": [
        { "userId": id.to_hex(), "tokenCredits": 20000, "fields": fields } ] }));
    credits_shown(&w, "n", 20000).await;
}

/// With LibreChat's yaml enabling auto-refill, its login sync (and every `GET /api/balance`)
/// writes the yaml's settings over a user's own. Once the operator wrote the declaration, that
/// is LibreChat's decision: no resync puts the declaration back (no flip at every login and
/// resync). A changed declaration is written again.
#[tokio::test]
async fn librechats_login_sync_of_the_yaml_refill_is_not_undone() {
    let mut config = balance_config();
    merge(&mut config, json!({ "resyncPeriod": "2s" }));
    let w = World::with_instance("bal-refill-yaml", config).await;
    let declare = |amount: i64| {
        json!({ "autoRefill": {
        "enabled": true, "intervalValue": 2, "intervalUnit": "hours", "amount": amount } })
    };
    w.apply(
        "LibreChatUser",
        "y",
        user_spec("yaml@example.com", declare(300)),
    )
    .await;
    let (_, id, _) = ready_user(&w, "y").await;
    let declared = |amount: i64| {
        json!({ "autoRefillEnabled": true, "refillIntervalValue": 2,
        "refillIntervalUnit": "hours", "refillAmount": amount })
    };
    refill_becomes(&w, id, declared(300), "the declared refill").await;

    // The person logs in: LibreChat's sync writes the yaml's settings.
    let yaml = login_sync_of_the_yaml(&w, id).await;
    // Several resyncs later the record still holds LibreChat's settings.
    still_librechats_after(&w, id, yaml, Duration::from_secs(8)).await;
    w.wait_condition("librechatusers", "y", "Ready", "True", None)
        .await;

    // A new declaration is written.
    w.apply(
        "LibreChatUser",
        "y",
        user_spec("yaml@example.com", declare(400)),
    )
    .await;
    refill_becomes(&w, id, declared(400), "the new declaration").await;
}

/// A crash between recording the declared settings and writing them, on a record that holds
/// the yaml's settings (as registration left it): the settings are still written (the record
/// of them is unconfirmed, so the yaml's are not taken for LibreChat's login sync over them).
#[tokio::test]
async fn a_refill_cut_short_by_a_crash_is_still_written_over_the_yamls() {
    refill_declared_across_a_crash_at("bal-refill-crash", "after-refill-recorded").await;
}

/// A world whose operator crashes at `point` while it writes the auto-refill amount 300
/// declared for a new account (the yaml enabling auto-refill), then runs again; returns the
/// world and the account once the declaration is on its balance record.
async fn refill_declared_across_a_crash_at(label: &str, point: &str) -> (World, ObjectId) {
    let mut w = World::new(label).await;
    w.start_operator_with_env(&[("LIBRECHAT_OPERATOR_CRASH_AT", point)]);
    w.ready_instance("lc", balance_config()).await;
    w.apply(
        "LibreChatUser",
        "u",
        user_spec(&format!("{label}@example.com"), refill_300()),
    )
    .await;
    let code = w.wait_operator_exit(PATIENCE).await;
    assert_eq!(code, Some(86), "the operator must reach the crash point");
    w.start_operator();
    let (_, id, _) = ready_user(&w, "u").await;
    let fields = json!({ "autoRefillEnabled": true, "refillIntervalValue": 1,
        "refillIntervalUnit": "seconds", "refillAmount": 300 });
    refill_becomes(&w, id, fields, "the declared refill, after the crash").await;
    (w, id)
}

fn refill_300() -> Value {
    json!({ "autoRefill": { "amount": 300 } })
}

/// What LibreChat's login sync does to `id`'s balance record when the yaml enables auto-refill
/// (`balance_config()`'s settings): writes them. Returns the fields as they then are.
async fn login_sync_of_the_yaml(w: &World, id: ObjectId) -> Value {
    w.db.collection::<Document>("balances")
        .update_one(
            doc! { "_id": id },
            doc! { "$set": { "autoRefillEnabled": true, "refillIntervalValue": 1,
            "refillIntervalUnit": "seconds", "refillAmount": 10000 } },
        )
        .await
        .unwrap();
    json!({ "autoRefillEnabled": true, "refillIntervalValue": 1,
        "refillIntervalUnit": "seconds", "refillAmount": 10000 })
}

/// A crash after the declared settings were written, before the ownership record says so:
/// they count as written once found on the record, so the yaml's settings LibreChat's login
/// sync writes over them later stay, even through a full pass.
#[tokio::test]
async fn a_refill_whose_confirmation_a_crash_lost_is_left_to_librechats_sync() {
    let label = "bal-refill-unconfirmed";
    let (w, id) = refill_declared_across_a_crash_at(label, "after-refill-written").await;
    let yaml = login_sync_of_the_yaml(&w, id).await;
    // An edit of something else sends the object down the full path.
    let mut renamed = user_spec(&format!("{label}@example.com"), refill_300());
    renamed["name"] = json!("Renamed");
    w.apply("LibreChatUser", "u", renamed).await;
    w.wait_condition("librechatusers", "u", "Ready", "True", None)
        .await;
    still_librechats_after(&w, id, yaml, Duration::from_secs(4)).await;
}

/// After `wait`, `id`'s balance record still holds the yaml's settings (`yaml`) LibreChat's
/// login sync wrote: the operator did not put its declaration back over them.
async fn still_librechats_after(w: &World, id: ObjectId, yaml: Value, wait: Duration) {
    tokio::time::sleep(wait).await;
    let b = balances_of(w, id).await.pop().unwrap();
    assert_eq!(
        b.get_i32("refillAmount"),
        Ok(10000),
        "put back over LibreChat's sync: {b}"
    );
    refill_becomes(w, id, yaml, "LibreChat's sync kept").await;
}

/// The refill fields of `id`'s balance record as `fields` says, judged by LibreChat's package.
async fn refill_becomes(w: &World, id: ObjectId, fields: Value, what: &str) {
    let want = fields.clone();
    eventually(what, || async {
        let b = balances_of(w, id).await.pop()?;
        let same = |k: &str| {
            let stored = b.get(k)?;
            let stored = match stored {
                mongodb::bson::Bson::String(s) => json!(s),
                mongodb::bson::Bson::Boolean(v) => json!(v),
                other => json!(other.as_i32().map(i64::from).or(other.as_i64())?),
            };
            (stored == want[k]).then_some(())
        };
        [
            "autoRefillEnabled",
            "refillIntervalValue",
            "refillIntervalUnit",
            "refillAmount",
        ]
        .iter()
        .try_for_each(|k| same(k))
    })
    .await;
    w.contract_check(json!({ "balances": [{ "userId": id.to_hex(), "fields": fields }] }));
}

/// What registration gives a record with LibreChat's yaml auto-refill off (the schema's).
fn refill_defaults() -> Value {
    json!({ "autoRefillEnabled": false, "refillIntervalValue": 30,
        "refillIntervalUnit": "days", "refillAmount": 0 })
}

/// Declared auto-refill taken out of the spec goes from the account: LibreChat would otherwise
/// refill it for ever.
#[tokio::test]
async fn auto_refill_taken_out_of_the_spec_is_put_back() {
    let mut w =
        World::with_instance("bal-unrefill", json!({ "balance": { "enabled": true } })).await;
    let refill = json!({ "autoRefill": {
        "enabled": true, "intervalValue": 2, "intervalUnit": "hours", "amount": 300 } });
    w.apply(
        "LibreChatUser",
        "r",
        user_spec("unrefill@example.com", refill),
    )
    .await;
    let (_, id, _) = ready_user(&w, "r").await;
    let set = json!({ "autoRefillEnabled": true, "refillIntervalValue": 2,
        "refillIntervalUnit": "hours", "refillAmount": 300 });
    refill_becomes(&w, id, set, "the declared refill").await;

    w.apply(
        "LibreChatUser",
        "r",
        json!({ "instanceRef": { "name": "lc" }, "email": "unrefill@example.com" }),
    )
    .await;
    refill_becomes(&w, id, refill_defaults(), "the refill put back").await;
    w.wait_event("r", "AutoRefillWithdrawn").await;
    let owner =
        w.db.collection::<Document>("librechat_operator_owners")
            .find_one(doc! { "_id": "unrefill@example.com" })
            .await
            .unwrap()
            .unwrap();
    assert!(
        !owner.contains_key("refill"),
        "the record of it goes: {owner}"
    );

    // Settings LibreChat wrote itself (its login sync of the yaml) are its own: a declaration
    // taken out after they changed leaves them.
    let mine = json!({ "autoRefill": { "enabled": true, "amount": 50 } });
    w.apply(
        "LibreChatUser",
        "r",
        user_spec("unrefill@example.com", mine),
    )
    .await;
    let declared = json!({ "autoRefillEnabled": true, "refillIntervalValue": 30,
        "refillIntervalUnit": "days", "refillAmount": 50 });
    refill_becomes(&w, id, declared, "the second declaration").await;
    w.stop_operator();
    let yaml = login_sync_of_the_yaml(&w, id).await;
    w.apply(
        "LibreChatUser",
        "r",
        json!({ "instanceRef": { "name": "lc" }, "email": "unrefill@example.com" }),
    )
    .await;
    w.start_operator();
    eventually("the claim to forget its refill", || async {
        let owner =
            w.db.collection::<Document>("librechat_operator_owners")
                .find_one(doc! { "_id": "unrefill@example.com" })
                .await
                .ok()??;
        (!owner.contains_key("refill")).then_some(())
    })
    .await;
    refill_becomes(&w, id, yaml, "LibreChat's own settings kept").await;

    // Settings an earlier version wrote, with no record of what they replaced: the record is
    // made at the next reconcile (what registration gives standing in for the earlier ones),
    // so they still go with their declaration.
    let owners = w.db.collection::<Document>("librechat_operator_owners");
    let again = json!({ "autoRefill": { "enabled": true, "amount": 70 } });
    w.apply(
        "LibreChatUser",
        "r",
        user_spec("unrefill@example.com", again),
    )
    .await;
    let declared = json!({ "autoRefillEnabled": true, "refillIntervalValue": 1,
        "refillIntervalUnit": "seconds", "refillAmount": 70 });
    refill_becomes(&w, id, declared, "the third declaration").await;
    w.stop_operator();
    owners
        .update_one(
            doc! { "_id": "unrefill@example.com" },
            doc! { "$unset": { "refill": "" } },
        )
        .await
        .unwrap();
    w.start_operator();
    eventually("the record of the refill to be made", || async {
        let owner = owners
            .find_one(doc! { "_id": "unrefill@example.com" })
            .await
            .ok()??;
        owner.contains_key("refill").then_some(())
    })
    .await;
    w.apply(
        "LibreChatUser",
        "r",
        json!({ "instanceRef": { "name": "lc" }, "email": "unrefill@example.com" }),
    )
    .await;
    refill_becomes(
        &w,
        id,
        refill_defaults(),
        "the earlier version's refill put back",
    )
    .await;
}

/// A tenant namespace the instance lets grant credits (LibreChat's balance on).
async fn tenant_granting_credits(label: &str) -> (World, String) {
    let allowed =
        json!({ "balance": { "enabled": true }, "tenantPolicy": { "grantCredits": true } });
    crate::trust::tenant_world(label, allowed).await
}

/// A tenant's LibreChatUser declaring a generous auto-refill.
fn generous_refill(w: &World, email: &str) -> Value {
    json!({ "instanceRef": { "name": "lc", "namespace": w.ns.clone() }, "email": email,
        "balance": { "autoRefill": {
            "enabled": true, "intervalValue": 1, "intervalUnit": "seconds", "amount": 1000000 } } })
}

/// The tenant's LibreChatUser `name` (`<name>@example.com`) declaring [`generous_refill`], once
/// its account has it; returns the account.
async fn tenant_refill_declared(w: &World, t: &str, name: &str) -> ObjectId {
    let spec = generous_refill(w, &format!("{name}@example.com"));
    w.apply_in(t, "LibreChatUser", name, spec).await;
    let id = ready_account_in(w, t, name).await;
    refill_becomes(w, id, generous_refill_fields(), "the tenant's refill").await;
    id
}

/// The balance record's fields [`generous_refill`] writes.
fn generous_refill_fields() -> Value {
    json!({ "autoRefillEnabled": true, "refillIntervalValue": 1,
        "refillIntervalUnit": "seconds", "refillAmount": 1000000 })
}

/// The account of the tenant's object `name`, once Ready.
async fn ready_account_in(w: &World, t: &str, name: &str) -> ObjectId {
    let obj = wait_condition_in(&w.client, t, "librechatusers", name, "Ready", "True", None).await;
    ObjectId::parse_str(obj.pointer("/status/userId").unwrap().as_str().unwrap()).unwrap()
}

/// Waits for the tenant's object `name` to be refused with `reason`.
async fn refused_in(w: &World, t: &str, name: &str, reason: &str) {
    wait_condition_in(
        &w.client,
        t,
        "librechatusers",
        name,
        "Ready",
        "False",
        Some(reason),
    )
    .await;
}

/// The attack: a tenant the instance let grant credits declares a generous auto-refill; the
/// admin revokes `tenantPolicy.grantCredits`, and LibreChat would go on refilling the account
/// for ever. The revocation takes the refill with it, as the namespace's removal does.
#[tokio::test]
async fn revoking_grant_credits_takes_a_tenants_auto_refill_with_it() {
    let (w, t) = tenant_granting_credits("bal-revoke").await;
    let spec = |name: &str| generous_refill(&w, &format!("{name}-revoke@example.com"));
    for name in ["a", "b", "c"] {
        w.apply_in(&t, "LibreChatUser", name, spec(name)).await;
    }
    let mut ids = Vec::new();
    for name in ["a", "b", "c"] {
        ids.push(ready_account_in(&w, &t, name).await);
    }
    refill_becomes(&w, ids[0], generous_refill_fields(), "the tenant's refill").await;
    // One object is refused for something else first (a role it may not assign): keeping it
    // refused must not keep the right.
    let mut parked = spec("c");
    parked["role"] = json!("NOTMINE");
    w.apply_in(&t, "LibreChatUser", "c", parked).await;
    refused_in(&w, &t, "c", "NotPermitted").await;

    // The admin revokes the right; nothing in the tenant's namespace changes.
    let revoked = json!({ "allowedNamespaces": [t.clone()], "balance": { "enabled": true },
        "tenantPolicy": { "grantCredits": false } });
    w.apply_instance("lc", &env("REDIS_URL"), revoked).await;
    refused_in(&w, &t, "a", "NotPermitted").await;
    refill_becomes(&w, ids[0], refill_defaults(), "the revoked refill put back").await;
    let refused = "the refused object's refill put back";
    refill_becomes(&w, ids[2], refill_defaults(), refused).await;

    // And a namespace taken out of the policy altogether loses it too.
    let closed = json!({ "allowedNamespaces": [], "balance": { "enabled": true },
        "tenantPolicy": { "grantCredits": true } });
    w.apply_instance("lc", &env("REDIS_URL"), closed).await;
    refused_in(&w, &t, "b", "NamespaceNotAllowed").await;
    let removed = "the removed namespace's refill put back";
    refill_becomes(&w, ids[1], refill_defaults(), removed).await;
}

/// The attack: a tenant drops its refill from the object and keeps the object refused at the
/// write (a provider it may not set), where the settings it wrote used to be left in place,
/// so that the refill outlives the declaration (and any later revocation of grantCredits).
/// Refused or not, a refill the object no longer declares is put back.
#[tokio::test]
async fn a_refill_is_not_kept_by_an_object_refused_at_its_write() {
    let (w, t) = tenant_granting_credits("bal-parked").await;
    let id = tenant_refill_declared(&w, &t, "parked").await;
    let parked = json!({ "instanceRef": { "name": "lc", "namespace": w.ns.clone() },
                         "email": "parked@example.com", "provider": "openid" });
    w.apply_in(&t, "LibreChatUser", "parked", parked).await;
    refused_in(&w, &t, "parked", "NotPermitted").await;
    refill_becomes(&w, id, refill_defaults(), "the undeclared refill put back").await;
}

/// The attack: a tenant about to lose `grantCredits` deletes its object (the account is
/// retained) so that the refill it declared outlives the revocation. The deletion, once the
/// namespace may no longer grant credits, puts the refill back before releasing the account.
#[tokio::test]
async fn deleting_an_object_after_the_revocation_does_not_keep_its_refill() {
    let (mut w, t) = tenant_granting_credits("bal-revdel").await;
    let id = tenant_refill_declared(&w, &t, "leaver").await;

    // While the operator is down the right is revoked and the object deleted: its cleanup is
    // the only reconcile it gets.
    w.stop_operator();
    let revoked = json!({ "allowedNamespaces": [t.clone()], "balance": { "enabled": true },
        "tenantPolicy": { "grantCredits": false } });
    w.apply_instance("lc", &env("REDIS_URL"), revoked).await;
    crate::support::delete_in(&w.client, &t, "LibreChatUser", "leaver").await;
    w.start_operator_in(Some(&format!("{},{t}", w.ns)));
    gone_with_its_account_retained(&w, &t, "leaver").await;
    let deleted = "the deleted object's refill put back";
    refill_becomes(&w, id, refill_defaults(), deleted).await;
}

/// Waits for the tenant's object `name` (email `<name>@example.com`) to be gone, its account
/// retained.
async fn gone_with_its_account_retained(w: &World, tenant: &str, name: &str) {
    crate::trust::wait_gone_in(w, tenant, "librechatusers", name).await;
    assert!(
        w.find_user(&format!("{name}@example.com")).await.is_some(),
        "the account is retained"
    );
}

/// The attack the other way round: a tenant deletes its object (the account retained) while
/// it may still grant credits, so that no object is left for a later revocation to reach. A
/// tenant's refill goes with its object.
#[tokio::test]
async fn a_tenant_refill_does_not_outlive_its_object() {
    let (w, t) = tenant_granting_credits("bal-retain").await;
    let id = tenant_refill_declared(&w, &t, "keeper").await;

    crate::support::delete_in(&w.client, &t, "LibreChatUser", "keeper").await;
    gone_with_its_account_retained(&w, &t, "keeper").await;
    let gone = "the deleted tenant object's refill put back";
    refill_becomes(&w, id, refill_defaults(), gone).await;
}

/// The instance stops letting tenants manage accounts they only adopted: the refill a tenant
/// wrote on one goes with that right (the object turns NotPermitted, in this very process,
/// which had the object settled).
#[tokio::test]
async fn revoking_manage_adopted_accounts_takes_the_refill_written_on_one() {
    let policy = |manage: bool| {
        json!({ "balance": { "enabled": true },
                "tenantPolicy": { "grantCredits": true, "manageAdoptedAccounts": manage } })
    };
    let (w, t) = crate::trust::tenant_world("bal-adopted", policy(true)).await;
    let id = ObjectId::new();
    w.users()
        .insert_one(crate::user::foreign_user(id, "adoptee@example.com"))
        .await
        .unwrap();
    let mut spec = generous_refill(&w, "adoptee@example.com");
    spec["adopt"] = json!(true);
    w.apply_in(&t, "LibreChatUser", "adoptee", spec).await;
    ready_account_in(&w, &t, "adoptee").await;
    refill_becomes(&w, id, generous_refill_fields(), "the tenant's refill").await;

    let mut revoked = policy(false);
    revoked["allowedNamespaces"] = json!([t.clone()]);
    w.apply_instance("lc", &env("REDIS_URL"), revoked).await;
    refused_in(&w, &t, "adoptee", "NotPermitted").await;
    let back = "the refill on the adopted account put back";
    refill_becomes(&w, id, refill_defaults(), back).await;
}

/// The instance turns its balance off and revokes `grantCredits` in the same edit: the
/// object is refused for the balance first (`BalanceDisabled`), and the revoked refill still
/// goes.
#[tokio::test]
async fn a_refill_goes_when_its_right_and_the_balance_go_together() {
    let (w, t) = tenant_granting_credits("bal-both").await;
    let id = tenant_refill_declared(&w, &t, "both").await;

    let both_gone = json!({ "allowedNamespaces": [t.clone()], "balance": { "enabled": false },
        "tenantPolicy": { "grantCredits": false } });
    w.apply_instance("lc", &env("REDIS_URL"), both_gone).await;
    let back = "the refill put back though the balance refusal came first";
    refill_becomes(&w, id, refill_defaults(), back).await;
}

/// Crashes at `point` while applying grant `g`, restarts, and proves it was applied once.
async fn crash_while_granting(w: &mut World, point: &str, grant: &str, credits: i64, before: i64) {
    let (scope, id, _) = ready_user(w, "c").await;
    w.stop_operator();
    let spec = user_spec(
        "crash@example.com",
        json!({ "grants": [{ "id": grant, "credits": credits }] }),
    );
    w.apply("LibreChatUser", "c", spec).await;
    w.start_operator_with_env(&[("LIBRECHAT_OPERATOR_CRASH_AT", point)]);
    let code = w.wait_operator_exit(PATIENCE).await;
    assert_eq!(code, Some(86), "the operator must reach {point}");
    let record = balances_of(w, id).await.pop().unwrap();
    assert_eq!(
        record.get_i32("tokenCredits").unwrap() as i64,
        before + credits
    );
    let pending = record.get_document("pendingRefill").unwrap();
    let tx = grant_transaction_id(&scope, grant);
    assert_eq!(
        pending.get_object_id("transactionId").unwrap(),
        tx,
        "the credit is marked"
    );

    w.start_operator();
    eventually("the grant to be finished", || async {
        let b = balances_of(w, id).await.pop()?;
        (!b.contains_key("pendingRefill")).then_some(())
    })
    .await;
    credits_shown(w, "c", before + credits).await;
    w.wait_event("c", "CreditsGranted").await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    w.contract_check(json!({
        "balances": [{ "userId": id.to_hex(), "tokenCredits": before + credits }],
        "creditTransactions": [{ "id": tx.to_hex(), "userId": id.to_hex(), "rawAmount": credits }],
    }));
}

#[tokio::test]
async fn a_grant_interrupted_by_a_crash_is_applied_once() {
    let mut w = World::with_instance(
        "bal-crash",
        json!({ "balance": { "enabled": true, "startBalance": 1000 } }),
    )
    .await;
    w.apply(
        "LibreChatUser",
        "c",
        user_spec("crash@example.com", json!({})),
    )
    .await;
    crash_while_granting(&mut w, "after-grant-balance", "first", 250, 1000).await;
    w.stop_operator();
    crash_while_granting(&mut w, "after-grant-transaction", "second", 50, 1250).await;
}

/// A grant cut short after its credit, then a new grant listed before it: the new one finds
/// the first's mark and finishes it as the operator's grant (`admin`), not as a refill.
#[tokio::test]
async fn a_grant_cut_short_is_finished_as_a_grant_when_a_new_one_comes_first() {
    let mut w = World::with_instance(
        "bal-order",
        json!({ "balance": { "enabled": true, "startBalance": 1000 } }),
    )
    .await;
    let grants = |list: Value| user_spec("order@example.com", json!({ "grants": list }));
    w.apply("LibreChatUser", "c", grants(json!([]))).await;
    let (scope, id, _) = ready_user(&w, "c").await;
    w.stop_operator();
    let late = json!({ "id": "late", "credits": 70 });
    w.apply("LibreChatUser", "c", grants(json!([late.clone()])))
        .await;
    w.start_operator_with_env(&[("LIBRECHAT_OPERATOR_CRASH_AT", "after-grant-balance")]);
    let code = w.wait_operator_exit(PATIENCE).await;
    assert_eq!(code, Some(86), "the operator must reach the crash point");

    let early = json!({ "id": "early", "credits": 5 });
    w.apply("LibreChatUser", "c", grants(json!([early, late])))
        .await;
    w.start_operator();
    credits_shown(&w, "c", 1075).await;
    let tx = |grant: &str| grant_transaction_id(&scope, grant).to_hex();
    w.contract_check(json!({
        "balances": [{ "userId": id.to_hex(), "tokenCredits": 1075 }],
        "creditTransactions": [
            { "id": tx("late"), "userId": id.to_hex(), "rawAmount": 70, "context": "admin" },
            { "id": tx("early"), "userId": id.to_hex(), "rawAmount": 5, "context": "admin" },
        ],
    }));
}

/// A world whose LibreChatUser `c` (`email`) was given the grant `welcome` of 500 credits, the
/// operator stopped for good right after the credit (it is down). Returns the world, the
/// grants' scope and the account.
async fn welcome_cut_short_after_its_credit(label: &str, email: &str) -> (World, String, ObjectId) {
    let mut w = World::with_instance(
        label,
        json!({ "balance": { "enabled": true, "startBalance": 1000 } }),
    )
    .await;
    let grants = |list: Value| user_spec(email, json!({ "grants": list }));
    w.apply("LibreChatUser", "c", grants(json!([]))).await;
    let (scope, id, _) = ready_user(&w, "c").await;
    w.stop_operator();
    w.apply(
        "LibreChatUser",
        "c",
        grants(json!([{ "id": "welcome", "credits": 500 }])),
    )
    .await;
    w.start_operator_with_env(&[("LIBRECHAT_OPERATOR_CRASH_AT", "after-grant-balance")]);
    let code = w.wait_operator_exit(PATIENCE).await;
    assert_eq!(code, Some(86), "the operator must reach the crash point");
    (w, scope, id)
}

/// A grant cut short after its credit, then edited to another amount before the operator is
/// back: the ledger records the credit that was made, not the new amount (which is never
/// credited: a grant id is given once).
#[tokio::test]
async fn a_grant_finished_after_a_crash_records_what_was_credited() {
    let email = "edited@example.com";
    let (mut w, scope, id) = welcome_cut_short_after_its_credit("bal-edited", email).await;
    let grants = |list: Value| user_spec(email, json!({ "grants": list }));

    w.apply(
        "LibreChatUser",
        "c",
        grants(json!([{ "id": "welcome", "credits": 700 }])),
    )
    .await;
    w.start_operator();
    credits_shown(&w, "c", 1500).await;
    let tx = grant_transaction_id(&scope, "welcome").to_hex();
    eventually("the grant's transaction", || async {
        let oid = ObjectId::parse_str(&tx).ok()?;
        w.db.collection::<Document>("transactions")
            .find_one(doc! { "_id": oid })
            .await
            .ok()?
    })
    .await;
    w.contract_check(json!({
        "balances": [{ "userId": id.to_hex(), "tokenCredits": 1500 }],
        "creditTransactions": [
            { "id": tx, "userId": id.to_hex(), "rawAmount": 500, "context": "admin" },
        ],
    }));
}

/// The fault: the operator dies right after a grant's credit, and a chat request of the person
/// reaches LibreChat's admission check first, which settles the grant's mark as a refill
/// (`settleAutoRefill`: the transaction saved as `autoRefill`, the mark gone). The credit is
/// made once, and the ledger says what it was: the operator's grant (`admin`).
#[tokio::test]
async fn a_grant_librechat_settled_as_a_refill_is_recorded_as_a_grant() {
    let (mut w, scope, id) =
        welcome_cut_short_after_its_credit("bal-settled", "settled@example.com").await;

    // What LibreChat's settleAutoRefill writes for the mark it finds.
    let tx = grant_transaction_id(&scope, "welcome");
    let now = mongodb::bson::DateTime::now();
    w.db.collection::<Document>("transactions")
        .insert_one(
            doc! { "_id": tx, "user": id, "tokenType": "credits", "context": "autoRefill",
            "rawAmount": 500, "rate": 1, "tokenValue": 500,
            "createdAt": now, "updatedAt": now, "__v": 0 },
        )
        .await
        .unwrap();
    w.db.collection::<Document>("balances")
        .update_one(
            doc! { "user": id },
            doc! { "$unset": { "pendingRefill": "" } },
        )
        .await
        .unwrap();
    w.start_operator();
    credits_shown(&w, "c", 1500).await;
    eventually("the grant recorded as a grant", || async {
        let saved =
            w.db.collection::<Document>("transactions")
                .find_one(doc! { "_id": tx })
                .await
                .ok()??;
        (saved.get_str("context").ok()? == "admin").then_some(())
    })
    .await;
    w.contract_check(json!({
        "balances": [{ "userId": id.to_hex(), "tokenCredits": 1500 }],
        "creditTransactions": [
            { "id": tx.to_hex(), "userId": id.to_hex(), "rawAmount": 500, "context": "admin" },
        ],
    }));
}

/// The operator dies between inserting an account and giving it its start balance, and an
/// admin runs `set-balance` meanwhile (a record of its own `_id`). The start balance is not
/// written beside it: a second record, older by its `_id` (the account's, reserved earlier),
/// would be the one LibreChat reads, and the admin's decision would silently go.
#[tokio::test]
async fn a_balance_set_by_an_admin_before_the_start_balance_stays_the_only_one() {
    let mut w = World::new("bal-setfirst").await;
    w.start_operator_with_env(&[("LIBRECHAT_OPERATOR_CRASH_AT", "after-account-insert")]);
    w.ready_instance(
        "lc",
        json!({ "balance": { "enabled": true, "startBalance": 1000 } }),
    )
    .await;
    w.apply(
        "LibreChatUser",
        "c",
        user_spec("setfirst@example.com", json!({})),
    )
    .await;
    let code = w.wait_operator_exit(PATIENCE).await;
    assert_eq!(code, Some(86), "the operator must reach the crash point");
    let id = w
        .find_user("setfirst@example.com")
        .await
        .unwrap()
        .get_object_id("_id")
        .unwrap();
    // As `npm run set-balance setfirst@example.com 5000` writes it (an upsert by `user`, with
    // the schema's defaults, under an `_id` of its own).
    w.db.collection::<Document>("balances")
        .insert_one(
            doc! { "user": id, "tokenCredits": 5000, "autoRefillEnabled": false,
            "refillIntervalValue": 30, "refillIntervalUnit": "days",
            "refillAmount": 0, "lastRefill": mongodb::bson::DateTime::now(), "__v": 0 },
        )
        .await
        .unwrap();

    w.start_operator();
    ready_user(&w, "c").await;
    let records = balances_of(&w, id).await;
    assert_eq!(records.len(), 1, "a second balance record: {records:?}");
    assert_eq!(records[0].get_i32("tokenCredits"), Ok(5000));
    credits_shown(&w, "c", 5000).await;
}

#[tokio::test]
async fn bad_balance_input_is_refused_and_writes_nothing() {
    let w = World::with_instance("bal-bad", json!({ "balance": { "enabled": true } })).await;
    let dup = json!({ "grants": [{ "id": "a", "credits": 1 }, { "id": "a", "credits": 2 }] });
    w.apply("LibreChatUser", "dup", user_spec("dup@example.com", dup))
        .await;
    let obj = w
        .wait_condition(
            "librechatusers",
            "dup",
            "Ready",
            "False",
            Some("InvalidSpec"),
        )
        .await;
    let message = condition(&obj, "Ready").unwrap().message;
    assert!(message.contains("'a' is used twice"), "{message}");
    assert!(w.find_user("dup@example.com").await.is_none());

    // The API server's schema refuses fractional or negative credits (a grant only ever adds)
    // and unknown refill units.
    for (name, balance, says) in [
        (
            "frac",
            json!({ "grants": [{ "id": "x", "credits": 1.5 }] }),
            "credits",
        ),
        (
            "neg",
            json!({ "grants": [{ "id": "x", "credits": -5 }] }),
            "credits",
        ),
        (
            "unit",
            json!({ "autoRefill": { "intervalUnit": "fortnights" } }),
            "fortnights",
        ),
    ] {
        let err =
            refused_at_admission(&w, name, user_spec(&format!("{name}@example.com"), balance))
                .await;
        assert!(err.contains(says), "{err}");
    }
    assert!(w.find_user("frac@example.com").await.is_none());
    let count =
        w.db.collection::<Document>("transactions")
            .count_documents(doc! {})
            .await
            .unwrap();
    assert_eq!(count, 0);
}

/// Applies a LibreChatUser the API server must refuse; its error.
async fn refused_at_admission(w: &World, name: &str, spec: serde_json::Value) -> String {
    let obj = json!({ "apiVersion": "librechat.ai/v1alpha1", "kind": "LibreChatUser",
        "metadata": { "name": name }, "spec": spec });
    dynamic(&w.client, &w.ns, "LibreChatUser")
        .patch(name, &PatchParams::apply("e2e-test"), &Patch::Apply(&obj))
        .await
        .expect_err("the API server must refuse it")
        .to_string()
}

#[tokio::test]
async fn grants_need_the_instances_balance() {
    let w = World::with_instance("bal-off", json!({})).await;
    let grants = json!({ "grants": [{ "id": "a", "credits": 1 }] });
    w.apply("LibreChatUser", "off", user_spec("off@example.com", grants))
        .await;
    let obj = w
        .wait_condition(
            "librechatusers",
            "off",
            "Ready",
            "False",
            Some("BalanceDisabled"),
        )
        .await;
    assert!(condition(&obj, "Ready")
        .unwrap()
        .message
        .contains("balance.enabled"));
    assert!(w.find_user("off@example.com").await.is_none());
}

/// The attack: a tenant namespace that may create accounts mints itself credits.
#[tokio::test]
async fn a_tenant_cannot_grant_credits_unless_the_instance_allows_it() {
    let extra = balance_config();
    let (w, t) = crate::trust::tenant_world("bal-tenant", extra).await;
    let lc = json!({ "name": "lc", "namespace": w.ns.clone() });
    let spec = json!({ "instanceRef": lc, "email": "greedy@example.com",
        "balance": { "grants": [{ "id": "free-money", "credits": 1000000 }] } });
    w.apply_in(&t, "LibreChatUser", "greedy", spec.clone())
        .await;
    let obj = wait_condition_in(
        &w.client,
        &t,
        "librechatusers",
        "greedy",
        "Ready",
        "False",
        Some("NotPermitted"),
    )
    .await;
    let message = condition(&obj, "Ready").unwrap().message;
    assert!(message.contains("tenantPolicy.grantCredits"), "{message}");
    assert!(
        w.find_user("greedy@example.com").await.is_none(),
        "nothing is written"
    );
    let count =
        w.db.collection::<Document>("transactions")
            .count_documents(doc! {})
            .await
            .unwrap();
    assert_eq!(count, 0);

    // Auto-refill is refused the same way.
    let refill = json!({ "instanceRef": json!({ "name": "lc", "namespace": w.ns.clone() }),
        "email": "refill@example.com", "balance": { "autoRefill": { "amount": 1000000 } } });
    w.apply_in(&t, "LibreChatUser", "refill", refill).await;
    wait_condition_in(
        &w.client,
        &t,
        "librechatusers",
        "refill",
        "Ready",
        "False",
        Some("NotPermitted"),
    )
    .await;

    // The instance admits it: the grant is applied, once.
    let mut allowed =
        json!({ "allowedNamespaces": [t.clone()], "tenantPolicy": { "grantCredits": true } });
    merge(&mut allowed, balance_config());
    w.apply_instance("lc", &env("REDIS_URL"), allowed).await;
    w.wait_condition("librechatinstances", "lc", "Ready", "True", None)
        .await;
    // A watch per namespace: the tenant's objects learn of the instance's change at their next
    // change (as in tests/e2e/trust.rs).
    let mut spec = spec;
    spec["balance"]["grants"][0]["reason"] = json!("approved");
    w.apply_in(&t, "LibreChatUser", "greedy", spec).await;
    let obj = wait_condition_in(
        &w.client,
        &t,
        "librechatusers",
        "greedy",
        "Ready",
        "True",
        None,
    )
    .await;
    let id = obj
        .pointer("/status/userId")
        .unwrap()
        .as_str()
        .unwrap()
        .to_string();
    w.contract_check(json!({ "balances": [{ "userId": id, "tokenCredits": 1020000 }] }));
}

/// The attack: a tenant allowed to grant credits adopts a person's self-registered account
/// (adopting keeps a name as declared, nothing more) and rewrites its balance: its auto-refill
/// settings (turning the person's refill off) or credits it decides on.
#[tokio::test]
async fn a_tenant_cannot_change_the_balance_of_an_account_it_only_adopted() {
    let mut extra = json!({ "tenantPolicy": { "grantCredits": true } });
    merge(&mut extra, balance_config());
    let (w, t) = crate::trust::tenant_world("bal-adopt", extra).await;
    let id = ObjectId::new();
    w.users()
        .insert_one(crate::user::foreign_user(id, "person@example.com"))
        .await
        .unwrap();
    w.db.collection::<Document>("balances")
        .insert_one(
            doc! { "user": id, "tokenCredits": 500, "autoRefillEnabled": true,
            "refillIntervalValue": 1, "refillIntervalUnit": "days", "refillAmount": 100 },
        )
        .await
        .unwrap();
    let before = balances_of(&w, id).await;
    let lc = json!({ "name": "lc", "namespace": w.ns.clone() });
    let attacks = [
        (
            "gift",
            json!({ "grants": [{ "id": "gift", "credits": 1000 }] }),
        ),
        ("starve", json!({ "autoRefill": { "enabled": false } })),
    ];
    for (name, balance) in attacks {
        let spec = json!({ "instanceRef": lc.clone(), "email": "person@example.com",
                           "adopt": true, "balance": balance });
        w.apply_in(&t, "LibreChatUser", name, spec).await;
        let obj = wait_condition_in(
            &w.client,
            &t,
            "librechatusers",
            name,
            "Ready",
            "False",
            Some("NotPermitted"),
        )
        .await;
        let message = condition(&obj, "Ready").unwrap().message;
        assert!(message.contains("balance"), "{name}: {message}");
        assert_eq!(
            balances_of(&w, id).await,
            before,
            "{name}: the balance is untouched"
        );
        delete_in(&w.client, &t, "LibreChatUser", name).await;
        crate::trust::wait_gone_in(&w, &t, "librechatusers", name).await;
    }
    let count =
        w.db.collection::<Document>("transactions")
            .count_documents(doc! {})
            .await
            .unwrap();
    assert_eq!(count, 0, "no credits were granted");
}

/// After an upgrade: a grant an earlier version applied under the object's uid, cut short and
/// settled by LibreChat's admission check as a refill (`autoRefill`), with no record in the
/// ownership record that it was given. It was credited: it is not credited again under the
/// id this version gives it.
#[tokio::test]
async fn a_grant_an_earlier_version_applied_is_not_credited_again() {
    let w = World::with_instance(
        "bal-earlier",
        json!({ "balance": { "enabled": true, "startBalance": 1000 } }),
    )
    .await;
    let grants = |list: Value| user_spec("earlier@example.com", json!({ "grants": list }));
    w.apply(
        "LibreChatUser",
        "c",
        grants(json!([{ "id": "welcome", "credits": 500 }])),
    )
    .await;
    let (scope, id, obj) = ready_user(&w, "c").await;
    credits_shown(&w, "c", 1500).await;
    let uid = obj.pointer("/metadata/uid").unwrap().as_str().unwrap();
    // As the earlier version left it: the transaction under the uid's id, saved by LibreChat.
    let transactions = w.db.collection::<Document>("transactions");
    let scoped = grant_transaction_id(&scope, "welcome");
    let mut saved = transactions
        .find_one(doc! { "_id": scoped })
        .await
        .unwrap()
        .unwrap();
    transactions
        .delete_one(doc! { "_id": scoped })
        .await
        .unwrap();
    saved.insert("_id", grant_transaction_id(uid, "welcome"));
    saved.insert("context", "autoRefill");
    transactions.insert_one(saved).await.unwrap();
    w.db.collection::<Document>("librechat_operator_owners")
        .update_one(
            doc! { "_id": "earlier@example.com" },
            doc! { "$unset": { "grantsGiven": "" } },
        )
        .await
        .unwrap();
    // An edit wakes the full path; a few resyncs (3 s) pass.
    w.apply(
        "LibreChatUser",
        "c",
        grants(json!([{ "id": "welcome", "credits": 500 }, { "id": "more", "credits": 1 }])),
    )
    .await;
    credits_shown(&w, "c", 1501).await;
    tokio::time::sleep(std::time::Duration::from_secs(7)).await;
    let balance =
        w.db.collection::<Document>("balances")
            .find_one(doc! { "user": id })
            .await
            .unwrap()
            .unwrap();
    let credits = match balance.get("tokenCredits").unwrap() {
        mongodb::bson::Bson::Int32(n) => i64::from(*n),
        mongodb::bson::Bson::Int64(n) => *n,
        mongodb::bson::Bson::Double(d) => *d as i64,
        other => panic!("{other}"),
    };
    assert_eq!(credits, 1501, "the earlier version's grant credited once");
}
