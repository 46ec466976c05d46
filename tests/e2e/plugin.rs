//! `kubectl librechat`: the operator's binary run by kubectl as a plugin, through a symlink
//! named `kubectl-librechat` on the PATH, against a real cluster and database.

use std::path::PathBuf;
use std::process::Command;

use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use kube::api::{Api, ObjectMeta, PostParams};
use mongodb::bson::{doc, oid::ObjectId, Document};
use serde_json::{json, Value};

use crate::support::*;
use crate::user::{foreign_user, local_user, user_id, PASSWORD};

/// A folder holding `kubectl-librechat`, a symlink to the operator's binary, as `make plugin`
/// installs it.
fn plugin_dir(w: &World) -> PathBuf {
    let dir = project_dir()
        .join("target/e2e-logs")
        .join(format!("{}-bin", w.ns));
    std::fs::create_dir_all(&dir).unwrap();
    let link = dir.join("kubectl-librechat");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_librechat-operator"), &link).unwrap();
    dir
}

/// What a run printed, and how it ended.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", self.stdout, self.stderr))
    }
}

/// `kubectl librechat ARGS` with the plugin's folder first on the PATH.
fn kubectl_librechat(dir: &std::path::Path, kubeconfig: &str, args: &[&str]) -> Run {
    let path = format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("kubectl")
        .arg("librechat")
        .args(args)
        .env("PATH", path)
        .env("KUBECONFIG", kubeconfig)
        .output()
        .expect("kubectl must be on PATH (source the test environment's env file)");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

async fn insert(w: &World, collection: &str, docs: Vec<Document>) {
    w.db.collection::<Document>(collection)
        .insert_many(docs)
        .await
        .unwrap();
}

/// `n` conversations and `m` messages of account `id`, as LibreChat stores them (`user` is
/// the id's hex string).
async fn chats(w: &World, id: ObjectId, n: usize, m: usize) {
    let user = id.to_hex();
    let conversation = ObjectId::new().to_hex();
    if n > 0 {
        let conversations = (0..n)
            .map(|i| doc! { "conversationId": format!("{conversation}-{i}"), "user": &user, "title": "Chat", "endpoint": "openAI" })
            .collect();
        insert(w, "conversations", conversations).await;
    }
    if m > 0 {
        let messages = (0..m)
            .map(|i| doc! { "messageId": format!("{conversation}-m{i}"), "conversationId": format!("{conversation}-0"), "user": &user, "text": "hello", "isCreatedByUser": true })
            .collect();
        insert(w, "messages", messages).await;
    }
}

#[tokio::test]
async fn status_whois_and_stats_through_kubectl() {
    let w = World::with_instance("plugin", json!({})).await;
    w.secret("pw", &[("password", PASSWORD)]).await;
    w.apply("LibreChatUser", "ann", local_user("ann@example.com", "pw"))
        .await;
    let ann_id = user_id(&w, "ann").await;
    w.apply(
        "LibreChatUser",
        "ann-again",
        local_user("Ann@Example.com", "pw"),
    )
    .await;
    w.wait_condition(
        "librechatusers",
        "ann-again",
        "Ready",
        "False",
        Some("Conflict"),
    )
    .await;
    let ann_uid = w
        .get("librechatusers", "ann")
        .await
        .unwrap()
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap()
        .to_string();
    // An account made in LibreChat, not by the operator.
    let direct_id = ObjectId::new();
    w.users()
        .insert_one(foreign_user(direct_id, "direct@example.com"))
        .await
        .unwrap();
    chats(&w, ann_id, 2, 3).await;
    chats(&w, direct_id, 1, 5).await;

    let dir = plugin_dir(&w);
    let kubeconfig = env("KUBECONFIG");
    let run = |args: &[&str]| kubectl_librechat(&dir, &kubeconfig, args);
    let ns = w.ns.as_str();

    // status: reachable, and the conflicting user counted under its reason.
    let status = run(&["status", "-n", ns]);
    assert_eq!(status.code, Some(0), "{}{}", status.stdout, status.stderr);
    let text = &status.stdout;
    assert!(text.contains(&format!("Instance:   {ns}/lc")), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("MongoReachable") && l.contains("True")),
        "{text}"
    );
    assert!(
        text.lines().any(|l| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            cells == ["LibreChatUser", "False", "Conflict", "1"]
        }),
        "{text}"
    );
    let json = run(&["status", "lc", "-n", ns, "-o", "json"]).json();
    let report = &json[0];
    assert_eq!(report["mongoReachable"]["status"], "True", "{json}");
    assert_eq!(report["redisReachable"]["status"], "True", "{json}");
    let objects = report["objects"].as_array().unwrap();
    assert!(
        objects
            .iter()
            .any(|o| o["kind"] == "LibreChatUser" && o["reason"] == "Conflict" && o["count"] == 1),
        "{json}"
    );
    assert!(
        objects
            .iter()
            .any(|o| o["kind"] == "LibreChatUser" && o["ready"] == "True" && o["count"] == 1),
        "{json}"
    );

    // Ann is in a group declared here and in one LibreChat's directory sync made.
    w.apply(
        "LibreChatGroup",
        "team",
        json!({ "instanceRef": { "name": "lc" }, "name": "Team A",
                "members": [{ "userRef": { "name": "ann" } }] }),
    )
    .await;
    w.wait_condition("librechatgroups", "team", "Ready", "True", None)
        .await;
    w.db.collection::<mongodb::bson::Document>("groups")
        .insert_one(mongodb::bson::doc! {
            "name": "Sales", "source": "entra", "idOnTheSource": "entra-sales",
            "memberIds": [ann_id.to_hex()],
        })
        .await
        .unwrap();

    // whois: the operator's record names the owner, whatever the other object declares.
    let whois = run(&["whois", "ANN@example.com", "-n", ns]);
    assert_eq!(whois.code, Some(0), "{}{}", whois.stdout, whois.stderr);
    assert!(
        whois
            .stdout
            .contains(&format!("LibreChatUser {ns}/ann (uid {ann_uid})")),
        "{}",
        whois.stdout
    );
    assert!(
        whois.stdout.contains("the object exists"),
        "{}",
        whois.stdout
    );
    let json = run(&["whois", "ann@example.com", "lc", "-n", ns, "-o", "json"]).json();
    assert_eq!(json["managed"], true);
    assert_eq!(json["account"]["id"], ann_id.to_hex());
    assert_eq!(json["owner"]["name"], "ann");
    assert_eq!(json["owner"]["uid"], ann_uid.as_str());
    assert_eq!(json["owner"]["object"]["state"], "exists");
    let declared: Vec<(String, bool)> = json["declaredBy"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["name"].as_str().unwrap().to_string(),
                d["owner"].as_bool().unwrap(),
            )
        })
        .collect();
    let groups: Vec<(&str, &str, &Value, bool)> = json["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["name"].as_str().unwrap(),
                g["source"].as_str().unwrap(),
                &g["managedBy"],
                g["memberByOperator"].as_bool().unwrap(),
            )
        })
        .collect();
    let team_by = json!(format!("{ns}/team"));
    assert_eq!(
        groups,
        vec![
            ("Sales", "entra", &Value::Null, false),
            ("Team A", "local", &team_by, true)
        ],
        "{json}"
    );
    assert!(declared.contains(&("ann".into(), true)), "{json}");
    assert!(declared.contains(&("ann-again".into(), false)), "{json}");

    let direct = run(&["whois", "direct@example.com", "-n", ns]);
    assert_eq!(direct.code, Some(0), "{}{}", direct.stdout, direct.stderr);
    assert!(direct.stdout.contains("not managed"), "{}", direct.stdout);
    assert!(
        direct.stdout.contains(&direct_id.to_hex()),
        "{}",
        direct.stdout
    );
    let json = run(&["whois", "direct@example.com", "-n", ns, "-o", "json"]).json();
    assert_eq!(json["managed"], false);
    assert!(json["owner"].is_null());

    let nobody = run(&["whois", "nobody@example.com", "-n", ns]);
    assert_eq!(nobody.code, Some(1), "{}", nobody.stdout);
    assert!(
        nobody.stdout.contains("no LibreChat account"),
        "{}",
        nobody.stdout
    );

    // stats --per-user: user-stats' counts and order.
    let json = run(&["stats", "--per-user", "-n", ns, "-o", "json"]).json();
    let rows: Vec<(String, u64, u64)> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["email"].as_str().unwrap().to_string(),
                r["conversations"].as_u64().unwrap(),
                r["messages"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("ann@example.com".to_string(), 2, 3),
            ("direct@example.com".to_string(), 1, 5)
        ]
    );
    let table = run(&["stats", "--per-user", "lc", "-n", ns]);
    assert_eq!(table.code, Some(0), "{}", table.stderr);
    assert!(
        table.stdout.lines().any(|l| {
            l.split_whitespace().collect::<Vec<_>>() == ["ann@example.com", "Jane", "Doe", "2", "3"]
        }),
        "{}",
        table.stdout
    );

    // The operator's own commands under the plugin's name, and the plugin under the operator's.
    let manifest = dir.join("user.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: librechat.ai/v1alpha1\nkind: LibreChatUser\nmetadata:\n  name: x\n  namespace: y\nspec:\n  instanceRef:\n    name: lc\n  email: x@example.com\n",
    )
    .unwrap();
    let validate = run(&["validate", "-f", manifest.to_str().unwrap()]);
    assert_eq!(
        validate.code,
        Some(0),
        "{}{}",
        validate.stdout,
        validate.stderr
    );
    assert!(
        validate.stderr.contains("1 objects valid"),
        "{}",
        validate.stderr
    );
    let out = Command::new(env!("CARGO_BIN_EXE_librechat-operator"))
        .args(["kubectl", "status", "-n", ns, "-o", "json"])
        .env("KUBECONFIG", &kubeconfig)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json[0]["name"], "lc");

    // No secret reaches the output.
    for output in [&status, &whois, &direct, &table] {
        assert!(!output.stdout.contains("mongodb://"), "{}", output.stdout);
        assert!(!output.stdout.contains("$2a$"), "{}", output.stdout);
    }

    // Deleting the instance waits for the users that point at it: a blocked deletion.
    crate::trust::delete_instance_held_by_dependents(&w).await;
    let blocked = run(&["status", "-n", ns]);
    assert!(
        blocked
            .stdout
            .lines()
            .any(|l| l.split_whitespace().take(4).eq([
                "LibreChatInstance",
                ns,
                "lc",
                "DependentsRemain"
            ])),
        "{}",
        blocked.stdout
    );
    let json = run(&["status", "-n", ns, "-o", "json"]).json();
    assert_eq!(json[0]["blockedDeletions"][0]["reason"], "DependentsRemain");
}

/// A kubeconfig like the tests' own, acting as `user` (impersonation).
fn kubeconfig_as(w: &World, user: &str) -> String {
    let text = std::fs::read_to_string(env("KUBECONFIG")).unwrap();
    let mut config: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    for entry in config["users"].as_sequence_mut().unwrap() {
        entry["user"]["as"] = serde_yaml::Value::from(user);
    }
    let path = project_dir()
        .join("target/e2e-logs")
        .join(format!("{}-kubeconfig-{user}", w.ns));
    std::fs::write(&path, serde_yaml::to_string(&config).unwrap()).unwrap();
    path.display().to_string()
}

#[tokio::test]
async fn whois_says_plainly_that_the_uri_secret_is_not_readable() {
    let w = World::with_instance("plugin-rbac", json!({})).await;
    // A person who may read the LibreChat objects, but not Secrets.
    let user = format!("reader-{}", w.ns);
    let roles: Api<Role> = Api::namespaced(w.client.clone(), &w.ns);
    let role = Role {
        metadata: ObjectMeta {
            name: Some("librechat-reader".into()),
            ..Default::default()
        },
        rules: Some(vec![
            PolicyRule {
                api_groups: Some(vec!["librechat.ai".into()]),
                resources: Some(vec!["*".into()]),
                verbs: vec!["get".into(), "list".into()],
                ..Default::default()
            },
            PolicyRule {
                api_groups: Some(vec!["".into()]),
                resources: Some(vec!["events".into()]),
                verbs: vec!["list".into()],
                ..Default::default()
            },
        ]),
    };
    roles.create(&PostParams::default(), &role).await.unwrap();
    let bindings: Api<RoleBinding> = Api::namespaced(w.client.clone(), &w.ns);
    let binding = RoleBinding {
        metadata: ObjectMeta {
            name: Some("librechat-reader".into()),
            ..Default::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: "librechat-reader".into(),
        },
        subjects: Some(vec![Subject {
            kind: "User".into(),
            name: user.clone(),
            api_group: Some("rbac.authorization.k8s.io".into()),
            ..Default::default()
        }]),
    };
    bindings
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();

    let dir = plugin_dir(&w);
    let kubeconfig = kubeconfig_as(&w, &user);
    let ns = w.ns.as_str();
    // RBAC takes effect once the authorizer's cache knows the binding.
    let status = eventually("the reader to be allowed to list", || async {
        let run = kubectl_librechat(&dir, &kubeconfig, &["status", "-n", ns]);
        (run.code == Some(0)).then_some(run)
    })
    .await;
    assert!(
        status.stdout.contains(&format!("{ns}/lc")),
        "{}",
        status.stdout
    );

    let whois = kubectl_librechat(&dir, &kubeconfig, &["whois", "a@example.com", "-n", ns]);
    assert_eq!(whois.code, Some(1), "{}{}", whois.stdout, whois.stderr);
    assert!(
        whois.stderr.contains(&format!(
            "you may not read Secret 'lc-stores' in namespace '{ns}'"
        )),
        "{}",
        whois.stderr
    );
    let stats = kubectl_librechat(&dir, &kubeconfig, &["stats", "--per-user", "-n", ns]);
    assert_eq!(stats.code, Some(1));
    assert!(
        stats.stderr.contains("may not read Secret"),
        "{}",
        stats.stderr
    );
    assert!(!stats.stderr.contains("mongodb://"), "{}", stats.stderr);
}

/// From outside the cluster the hosts in the URI Secret do not resolve: `--mongodb-host`
/// points `whois` and `stats` at a port-forward, the user, password, database and options
/// still read from the Secret.
#[tokio::test]
async fn whois_and_stats_reach_the_database_through_a_forwarded_port() {
    let w = World::new("plugin-reach").await;
    let uri = w.mongo_uri();
    let (scheme, rest) = uri.split_once("://").unwrap();
    let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    let (credentials, forwarded) = match authority.rsplit_once('@') {
        Some((c, h)) => (format!("{c}@"), h),
        None => (String::new(), authority),
    };
    let in_cluster = format!(
        "{scheme}://{credentials}mongodb.librechat.svc.cluster.local:27017{}",
        &rest[authority.len()..]
    );
    w.secret(
        "lc-stores",
        &[("mongo", &in_cluster), ("redis", &env("REDIS_URL"))],
    )
    .await;
    w.apply_instance_of_stores("lc", json!({})).await;
    w.users()
        .insert_one(foreign_user(ObjectId::new(), "far@example.com"))
        .await
        .unwrap();

    let dir = plugin_dir(&w);
    let kubeconfig = env("KUBECONFIG");
    let run = |args: &[&str]| kubectl_librechat(&dir, &kubeconfig, args);
    let ns = w.ns.as_str();
    let unreachable = run(&["whois", "far@example.com", "-n", ns]);
    assert_eq!(unreachable.code, Some(1), "{}", unreachable.stdout);

    let whois = run(&[
        "whois",
        "far@example.com",
        "-n",
        ns,
        "--mongodb-host",
        forwarded,
        "-o",
        "json",
    ])
    .json();
    assert_eq!(
        whois.pointer("/account/email").and_then(Value::as_str),
        Some("far@example.com"),
        "{whois}"
    );
    let stats = run(&["stats", "-n", ns, "--mongodb-host", forwarded, "-o", "json"]).json();
    assert_eq!(stats["users"], 1, "{stats}");
    for output in [&unreachable.stderr, &whois.to_string(), &stats.to_string()] {
        assert!(
            !output.contains(&in_cluster),
            "the URI is printed: {output}"
        );
    }
}
