//! Property tests over every kind's spec and over Secret contents: hostile input never panics,
//! an invalid object is refused by the controller's own checks (which run before any write),
//! nothing a refused URI or password contains reaches a message, and no input ever reaches
//! MongoDB as a query operator (checked against the real MongoDB-wire server of `make test`:
//! a hostile string finds nothing and changes nothing but what it names literally).
//!
//! How many cases ran is written to `target/proptest-cases.txt` and printed by `make test`.

use std::sync::atomic::{AtomicU64, Ordering};

use librechat_operator::api::ban::UserBanSpec;
use librechat_operator::api::instance::LibreChatInstanceSpec;
use librechat_operator::api::invite::UserInviteSpec;
use librechat_operator::api::user::LibreChatUserSpec;
use librechat_operator::api::validate::{check_email, check_password};
use librechat_operator::librechat::users::DesiredUser;
use librechat_operator::librechat::{connect_mongo, Store};
use mongodb::bson::{doc, oid::ObjectId, Document};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{json, Value};

static CASES: AtomicU64 = AtomicU64::new(0);

fn record(kind: &str, cases: u64) {
    CASES.fetch_add(cases, Ordering::SeqCst);
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    let _ = std::fs::create_dir_all(&dir);
    let line = format!("{kind}: {cases} cases\n");
    let path = dir.join("proptest-cases.txt");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let kept: String = text
        .lines()
        .filter(|l| !l.starts_with(&format!("{kind}:")))
        .map(|l| format!("{l}\n"))
        .collect();
    let _ = std::fs::write(&path, kept + &line);
}

/// Strings an attacker would try: query operators, JSON, unicode, control characters,
/// near-valid emails and durations, and anything at all.
fn hostile() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[ -~]{0,48}",
        Just(r#"{"$ne": ""}"#.to_string()),
        Just(r#"{"$gt": ""}"#.to_string()),
        Just(r#"{"$regex": ".*"}"#.to_string()),
        Just("$where".to_string()),
        "\\$[a-zA-Z]{1,10}",
        "[a-z.]{1,10}@[a-z]{1,8}\\.[a-z]{2,4}",
        " [A-Za-z]{1,8}@Example\\.COM ",
        "[0-9]{1,4}(ms|s|m|h|d|y|)",
        "[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}",
        "20[0-9]{2}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-5][0-9]Z",
    ]
}

fn maybe(strategy: impl Strategy<Value = String>) -> impl Strategy<Value = Option<String>> {
    proptest::option::weighted(0.7, strategy)
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

/// Inserts `key: value` when the value is present.
fn put(obj: &mut Value, key: &str, value: Option<Value>) {
    if let Some(v) = value {
        obj[key] = v;
    }
}

/// A value of the kind a field expects, or a hostile one, evenly. Fully hostile fields almost
/// never make a whole valid spec; mixing them in per field keeps both sides of every check
/// reached in every run, whatever the seed.
fn plausible_or_hostile(plausible: &'static str) -> impl Strategy<Value = String> {
    prop_oneof![plausible, hostile()]
}

fn user_spec() -> impl Strategy<Value = Value> {
    (
        plausible_or_hostile("[a-z][a-z0-9-]{0,20}"),
        plausible_or_hostile("[a-z]{1,10}@[a-z]{1,8}\\.[a-z]{2,4}"),
        maybe(plausible_or_hostile("[A-Z][a-z]{2,10} [A-Z][a-z]{2,10}")),
        maybe(plausible_or_hostile("[a-z][a-z0-9_.-]{1,20}")),
        maybe(plausible_or_hostile("USER|ADMIN|[a-z][a-z0-9_-]{0,20}")),
        maybe(prop_oneof![
            Just("local".to_string()),
            Just("openid".to_string()),
            hostile()
        ]),
        maybe(plausible_or_hostile("[a-z][a-z0-9-]{0,20}")),
        proptest::option::of(any::<bool>()),
        proptest::option::of(0u32..300),
    )
        .prop_map(
            |(instance, email, name, username, role, provider, secret, adopt, length)| {
                let mut spec = json!({ "instanceRef": { "name": instance }, "email": email });
                put(&mut spec, "name", name.map(Value::from));
                put(&mut spec, "username", username.map(Value::from));
                put(&mut spec, "role", role.map(Value::from));
                put(&mut spec, "provider", provider.map(Value::from));
                put(&mut spec, "adopt", adopt.map(Value::from));
                let password = match (secret, length) {
                    (Some(s), None) => {
                        Some(json!({ "secretRef": { "name": s, "key": "password" } }))
                    }
                    (Some(s), Some(l)) => {
                        Some(json!({ "generate": { "secretName": s, "length": l } }))
                    }
                    (None, Some(l)) => {
                        Some(json!({ "generate": { "secretName": "", "length": l } }))
                    }
                    (None, None) => None,
                };
                put(&mut spec, "password", password);
                spec
            },
        )
}

fn ban_spec() -> impl Strategy<Value = Value> {
    (
        maybe(hostile()),
        maybe(hostile()),
        maybe(hostile()),
        maybe(hostile()),
        maybe(hostile()),
        maybe(hostile()),
    )
        .prop_map(|(user, email, ip, duration, until, reason)| {
            let mut spec = json!({ "instanceRef": { "name": "lc" } });
            put(&mut spec, "userRef", user.map(|n| json!({ "name": n })));
            put(&mut spec, "email", email.map(Value::from));
            put(&mut spec, "ip", ip.map(Value::from));
            put(&mut spec, "duration", duration.map(Value::from));
            put(&mut spec, "until", until.map(Value::from));
            put(&mut spec, "reason", reason.map(Value::from));
            spec
        })
}

fn invite_spec() -> impl Strategy<Value = Value> {
    (hostile(), maybe(hostile()), maybe(hostile())).prop_map(|(email, expires, secret)| {
        let mut spec = json!({ "instanceRef": { "name": "lc" }, "email": email });
        put(&mut spec, "expiresIn", expires.map(Value::from));
        put(&mut spec, "secretName", secret.map(Value::from));
        spec
    })
}

fn instance_spec() -> impl Strategy<Value = Value> {
    (
        hostile(),
        hostile(),
        maybe(hostile()),
        maybe(hostile()),
        proptest::option::of(0u32..500),
    )
        .prop_map(|(name, key, resync, domain, min)| {
            let mut spec = json!({ "mongo": { "uriSecretRef": { "name": name, "key": key } } });
            put(&mut spec, "resyncPeriod", resync.map(Value::from));
            put(&mut spec, "domainClient", domain.map(Value::from));
            put(
                &mut spec,
                "passwordPolicy",
                min.map(|m| json!({ "minLength": m })),
            );
            spec
        })
}

/// Runs the controller's own checks on a spec of kind `K`; returns whether it was admitted.
fn checks<K: serde::de::DeserializeOwned>(
    spec: &Value,
    problems: impl Fn(&K) -> Vec<String>,
) -> bool {
    match serde_json::from_value::<K>(spec.clone()) {
        // The API server's schema would refuse it before the controller sees it.
        Err(_) => false,
        Ok(k) => problems(&k).is_empty(),
    }
}

#[test]
fn hostile_specs_never_panic_and_invalid_ones_are_refused() {
    let admitted = std::cell::Cell::new(0u64);
    let cases = std::cell::Cell::new(0u64);
    runner(512)
        .run(&user_spec(), |spec| {
            cases.set(cases.get() + 1);
            let valid = checks::<LibreChatUserSpec>(&spec, |s| s.problems(8));
            if valid {
                admitted.set(admitted.get() + 1);
                // What the controller then writes: a normalized email, never an operator.
                let email = spec["email"].as_str().unwrap_or_default();
                let normalized = check_email(email).expect("an admitted email normalizes");
                prop_assert!(!normalized.starts_with('$'));
                prop_assert!(
                    !normalized.contains('{'),
                    "an email with a brace was admitted"
                );
            }
            Ok(())
        })
        .unwrap();
    runner(512)
        .run(&ban_spec(), |spec| {
            cases.set(cases.get() + 1);
            if let Ok(s) = serde_json::from_value::<UserBanSpec>(spec.clone()) {
                let window = s.window(1_700_000_000_000);
                let problems = s.problems(Some(1_700_000_000_000));
                // The window and the full checks agree: a ban without problems has a window.
                prop_assert_eq!(window.is_ok(), problems.is_empty());
            }
            Ok(())
        })
        .unwrap();
    runner(512)
        .run(&invite_spec(), |spec| {
            cases.set(cases.get() + 1);
            if let Ok(s) = serde_json::from_value::<UserInviteSpec>(spec.clone()) {
                if let Ok(lifetime) = s.lifetime() {
                    prop_assert!(lifetime.as_secs() >= 1 && lifetime.as_secs() <= 365 * 86_400);
                }
            }
            Ok(())
        })
        .unwrap();
    runner(512)
        .run(&instance_spec(), |spec| {
            cases.set(cases.get() + 1);
            checks::<LibreChatInstanceSpec>(&spec, |s| s.problems());
            Ok(())
        })
        .unwrap();
    assert!(
        admitted.get() > 0,
        "the generator must reach valid users too"
    );
    record("specs", cases.get());
}

#[test]
fn secret_contents_never_reach_a_message() {
    let cases = std::cell::Cell::new(0u64);
    runner(512)
        .run(&(any::<String>(), 1u32..129), |(password, min)| {
            cases.set(cases.get() + 1);
            if let Err(message) = check_password(&password, min) {
                if password.chars().count() >= 4 {
                    prop_assert!(
                        !message.contains(&password),
                        "the password reached the message"
                    );
                }
            }
            Ok(())
        })
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    runner(256)
        .run(&("[ -~]{6,24}", hostile()), |(password, host)| {
            cases.set(cases.get() + 1);
            let uri = format!("mongodb://lc:{password}@{host}/LibreChat");
            let outcome = rt.block_on(connect_mongo(&uri));
            if let Err(e) = outcome {
                let message = e.to_string();
                // Any 6-character piece of the password would be a leak.
                let chars: Vec<char> = password.chars().collect();
                for piece in chars.windows(6) {
                    let piece: String = piece.iter().collect();
                    prop_assert!(
                        !message.contains(&piece),
                        "'{}' leaked in: {}",
                        piece,
                        message
                    );
                }
            }
            Ok(())
        })
        .unwrap();
    record("secrets", cases.get());
}

/// Against the real MongoDB-wire server: with a victim account in place, every lookup and
/// write the operator makes with a hostile string finds nothing but a literal match and
/// leaves the victim untouched.
#[test]
fn no_input_reaches_mongodb_as_a_query_operator() {
    let uri = std::env::var("MONGODB_URI")
        .expect("MONGODB_URI is not set: run the tests through `make test`");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db_name = format!("props_{}", std::process::id());
    let store = rt.block_on(async {
        let (_client, db) = connect_mongo(&uri)
            .await
            .expect("MONGODB_URI must be valid");
        Store::new(db.client().database(&db_name), None)
    });
    let victim_id = ObjectId::new();
    let victim = DesiredUser {
        email: "victim@example.com".into(),
        name: Some("Victim".into()),
        username: None,
        role: Some("ADMIN".into()),
        provider: None,
        email_verified: None,
        keeps_account: true,
    };
    let snapshot = |store: &Store| -> Document {
        rt.block_on(async {
            store
                .collection("users")
                .find_one(doc! { "_id": victim_id })
                .await
                .unwrap()
                .expect("the victim account exists")
        })
    };
    rt.block_on(store.create_user(
        victim_id,
        &victim,
        Some("$2b$10$victimhashvictimhashvictimhashvictimhashvictimhashvi".into()),
    ))
    .unwrap();
    let before = snapshot(&store);
    let cases = std::cell::Cell::new(0u64);
    runner(96)
        .run(&hostile(), |input| {
            cases.set(cases.get() + 1);
            rt.block_on(async {
                let found = store.find_user_by_email(&input).await.unwrap();
                prop_assert!(found.is_none() || input == "victim@example.com");
                prop_assert!(store.find_claim(&input).await.unwrap().is_none());
                prop_assert!(store.find_claim_of_owner(&input).await.unwrap().is_none());
                prop_assert!(store.invite_record(&input).await.unwrap().is_none());
                prop_assert!(store.shares_of(&input).await.unwrap().is_empty());
                prop_assert!(store
                    .find_invite_token(&input, &input)
                    .await
                    .unwrap()
                    .is_none());
                // Writes keyed by the input touch only what the input names literally.
                store.release(&input, &input).await.unwrap();
                store
                    .carry_bans(std::slice::from_ref(&input), &victim_id.to_hex(), |_| true)
                    .await
                    .unwrap();
                store.delete_invite_token(&input).await.unwrap();
                Ok(())
            })?;
            prop_assert_eq!(&snapshot(&store), &before, "the victim account changed");
            Ok(())
        })
        .unwrap();
    let logs = rt.block_on(async {
        store
            .collection("logs")
            .count_documents(doc! {})
            .await
            .unwrap()
    });
    assert_eq!(logs, 0, "a hostile subject banned somebody");
    rt.block_on(async { store.database().drop().await.unwrap() });
    record("mongodb", cases.get());
}

/// The `find` commands the operator's MongoDB client has sent so far (its command monitoring).
fn finds_sent() -> u64 {
    librechat_operator::metrics::global()
        .encode()
        .lines()
        .filter(|l| l.starts_with("librechat_operator_store_operations_total{"))
        .filter(|l| l.contains("store=\"mongo\"") && l.contains("verb=\"find\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Reads by `_id` asked for at once go to MongoDB together, and each caller still gets exactly
/// its own document (or none): a coalesced read never hands one reconcile another's account.
#[test]
fn concurrent_reads_coalesce_and_each_gets_its_own_document() {
    let uri = std::env::var("MONGODB_URI")
        .expect("MONGODB_URI is not set: run the tests through `make test`");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db_name = format!("batch_{}", std::process::id());
    rt.block_on(async {
        let (_client, db) = connect_mongo(&uri)
            .await
            .expect("MONGODB_URI must be valid");
        let store = Store::new(db.client().database(&db_name), None);
        let ids: Vec<ObjectId> = (0..200).map(|_| ObjectId::new()).collect();
        let present: Vec<Document> = ids
            .iter()
            .step_by(2)
            .map(|id| doc! { "_id": id, "email": format!("{}@example.com", id.to_hex()) })
            .collect();
        store
            .collection("users")
            .insert_many(present)
            .await
            .unwrap();
        let before = finds_sent();
        let reads = ids.iter().map(|id| {
            let store = store.clone();
            let id = *id;
            tokio::spawn(async move { (id, store.find_user_by_id(id).await) })
        });
        let answers = futures::future::join_all(reads).await;
        let sent = finds_sent() - before;
        for (i, answer) in answers.into_iter().enumerate() {
            let (id, found) = answer.unwrap();
            let found = found.expect("the read succeeds");
            if i % 2 == 0 {
                let user = found.expect("a stored account is found");
                assert_eq!(user.id, id);
                assert_eq!(user.email, format!("{}@example.com", id.to_hex()));
            } else {
                assert!(found.is_none(), "a missing account reads as none");
            }
        }
        assert!(
            (1..200).contains(&sent),
            "200 reads at once took {sent} find commands"
        );
        db.client().database(&db_name).drop().await.unwrap();
    });
}

/// After a restart, an object's first reconcile takes its own record from the one start-up
/// pass, and nothing else is answered from it: a second ask, another owner's record or a
/// record the pass did not see all go to MongoDB.
#[test]
fn the_start_up_pass_answers_each_owner_once_and_only_its_own_record() {
    use librechat_operator::librechat::batch::Id;
    use librechat_operator::librechat::warm::WarmRecords;
    let uri = std::env::var("MONGODB_URI")
        .expect("MONGODB_URI is not set: run the tests through `make test`");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db_name = format!("warm_{}", std::process::id());
    rt.block_on(async {
        let (_client, db) = connect_mongo(&uri)
            .await
            .expect("MONGODB_URI must be valid");
        let db = db.client().database(&db_name);
        let records = db.collection::<Document>("records");
        records
            .insert_many([
                doc! { "_id": "a@example.com", "uid": "owner-a" },
                doc! { "_id": "b@example.com", "uid": "owner-b" },
            ])
            .await
            .unwrap();
        let warm = WarmRecords::new(records.clone(), "uid");
        let text = |s: &str| Id::Text(s.to_string());
        let own = warm.take(text("a@example.com"), "owner-a").await;
        assert_eq!(
            own.flatten()
                .and_then(|d| d.get_str("uid").ok().map(String::from)),
            Some("owner-a".into())
        );
        assert!(
            warm.take(text("a@example.com"), "owner-a").await.is_none(),
            "asked twice"
        );
        assert!(
            warm.take(text("b@example.com"), "owner-a").await.is_none(),
            "another owner's record is never handed out"
        );
        assert_eq!(
            warm.take(text("new@example.com"), "owner-n").await,
            Some(None)
        );
        assert!(warm
            .take(text("new@example.com"), "owner-n")
            .await
            .is_none());
        db.drop().await.unwrap();
    });
}

/// The operator's own bcrypt (several passwords interleaved on one thread) against the
/// `bcrypt` crate: any bytes (empty, NULs, non-UTF-8, longer than bcrypt's 72), any salt,
/// any number of lanes, each lane's hash is the crate's for that password and salt.
#[test]
fn interleaved_bcrypt_is_the_bcrypt_crates_hash() {
    use librechat_operator::librechat::eks::{bcrypt as eks_bcrypt, Lane};
    fn crate_hash(password: &[u8], salt: [u8; 16]) -> String {
        bcrypt::hash_with_salt(password, 4, salt)
            .unwrap()
            .to_string()
    }
    fn ours(digest: &[u8; 23], salt: [u8; 16]) -> String {
        use base64::Engine;
        format!(
            "$2b$04${}{}",
            bcrypt::BASE_64.encode(salt),
            bcrypt::BASE_64.encode(digest)
        )
    }
    let lane = (
        proptest::collection::vec(any::<u8>(), 0..100),
        any::<[u8; 16]>(),
    );
    let cases = std::cell::Cell::new(0u64);
    runner(64)
        .run(&proptest::collection::vec(lane, 4), |lanes| {
            cases.set(cases.get() + 1);
            let expected: Vec<String> = lanes.iter().map(|(p, s)| crate_hash(p, *s)).collect();
            let made = |i: usize| Lane {
                password: &lanes[i].0,
                salt: lanes[i].1,
            };
            let four = eks_bcrypt::<4>(4, &[made(0), made(1), made(2), made(3)]);
            let two = eks_bcrypt::<2>(4, &[made(2), made(3)]);
            let [one] = eks_bcrypt::<1>(4, &[made(1)]);
            for i in 0..4 {
                prop_assert_eq!(&ours(&four[i], lanes[i].1), &expected[i]);
            }
            prop_assert_eq!(&ours(&two[0], lanes[2].1), &expected[2]);
            prop_assert_eq!(&ours(&two[1], lanes[3].1), &expected[3]);
            prop_assert_eq!(&ours(&one, lanes[1].1), &expected[1]);
            Ok(())
        })
        .unwrap();
    record("bcrypt", cases.get());
}
