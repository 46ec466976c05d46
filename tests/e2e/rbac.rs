//! The Helm chart's RBAC, proven on a real API server.
//!
//! The chart is rendered with `watchNamespaces` set to the test's own namespace: a Role and a
//! RoleBinding there and nothing cluster-wide, so tests running in parallel never share
//! permissions and each operator reconciles only its own objects (in all-namespaces mode it
//! would reconcile every other test's objects too). Both modes render the same rules, which
//! `both_modes_grant_the_same_rules_and_every_verb_is_accounted_for` checks. The chart's
//! ServiceAccount, Roles (the operator's, and the leader-election one) and
//! RoleBindings are applied (not the Deployment: there is no kubelet); the operator binary then
//! runs out of cluster with the Deployment's own arguments and a kubeconfig holding nothing
//! but a TokenRequest token of that ServiceAccount. Every call it makes is authorized by the
//! chart's rules and nothing else.
//!
//! The instance declares no `resyncPeriod` and the chart's default (5m) applies, so nothing
//! is rescued by polling: every step depends on the watches the chart must allow.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, PostParams};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::support::*;

const RELEASE: &str = "lco";
/// The chart's full name for release `lco`: the ServiceAccount, the Role and the Lease.
const FULLNAME: &str = "lco-librechat-operator";
const LEASE_ROLE: &str = "lco-librechat-operator-leader-election";
/// The identity the operator runs under (POD_NAME), the Lease's holder.
const IDENTITY: &str = "lco-librechat-operator-0";
const PASSWORD: &str = "Correct-Horse-Battery-1";
const ROTATED: &str = "A-Brand-New-Password-2";
const ROTATED_AGAIN: &str = "Yet-Another-Password-3";

/// How long a step expected to fail is given (a step that must succeed may take `PATIENCE`).
const SHORT: Duration = Duration::from_secs(20);

/// The user scenario, in order. A run stops at the first step that does not complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// The operator took the leader-election Lease (creating it, or taking over an expired one).
    Leadership,
    /// LibreChatInstance Ready (reads its Secret, writes status).
    InstanceReady,
    /// A LibreChatUser with a password Secret: finalizer, Ready, account in MongoDB.
    UserReady,
    /// A generated-password user: the Secret is created and owned, the account uses it.
    GeneratedPassword,
    /// Editing the password Secret (noticed through the Secret watch) sets the new password.
    Rotation,
    /// Events Created and PasswordRotated are recorded.
    Events,
    /// A second rotation is applied.
    RotationAgain,
    /// The repeated PasswordRotated event is patched into a series (count 2).
    EventSeries,
    /// A UserBan on the user is Banned.
    Ban,
    /// A UserInvite is Pending, its link in an owned Secret.
    Invite,
    /// A new domainClient on the instance is patched into the link Secret's url.
    InviteUrlRefresh,
    /// Deleting the Delete-policy user completes (finalizer removed) and the account is gone.
    Deletion,
    /// A LibreChatRole and a LibreChatGroup are Ready.
    Access,
    /// A second LibreChatUser declaring an email another one holds reads `Conflict` (the
    /// operator reads the holder from the API server, not its cache, before it would call
    /// the claim stale).
    Conflict,
}

/// `helm template` of the chart into `ns`, watching `watch` (empty: all namespaces), with
/// the chart's defaults otherwise (debug logs aside).
fn render(ns: &str, watch: &[&str]) -> Vec<Value> {
    let out = Command::new("helm")
        .args(["template", RELEASE])
        .arg(project_dir().join("charts/librechat-operator"))
        .args(["--namespace", ns, "--set-json"])
        .arg(format!("watchNamespaces={}", json!(watch)))
        .arg("--set-json")
        .arg(format!(
            "logLevel={}",
            json!("info,librechat_operator=debug,kube=warn")
        ))
        .output()
        .expect("helm must be on PATH (tests/env/install.sh installs it)");
    assert!(
        out.status.success(),
        "helm template failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_yaml::Deserializer::from_slice(&out.stdout)
        .map(|doc| Value::deserialize(doc).expect("helm template renders YAML"))
        .filter(|v| !v.is_null())
        .collect()
}

fn find<'a>(objs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objs.iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("the chart renders no {kind} {name}"))
}

/// Every (resource, verb) a rendered Role or ClusterRole grants.
fn grants(role: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for rule in role["rules"].as_array().unwrap() {
        for r in rule["resources"].as_array().unwrap() {
            for v in rule["verbs"].as_array().unwrap() {
                out.push((r.as_str().unwrap().into(), v.as_str().unwrap().into()));
            }
        }
    }
    out.sort();
    out
}

/// The rendered Role granting `resource`: the leader-election Role for Leases, else the
/// operator's Role.
fn role_name_for(resource: &str) -> &'static str {
    if resource == "leases" {
        LEASE_ROLE
    } else {
        FULLNAME
    }
}

/// Takes `verb` on `resource` out of the Role granting it in `objs`.
fn remove_verb(objs: &mut [Value], resource: &str, verb: &str) {
    let name = role_name_for(resource);
    let role = objs
        .iter_mut()
        .find(|o| o["kind"] == "Role" && o["metadata"]["name"] == name)
        .expect("the Role");
    let mut rules = Vec::new();
    for rule in role["rules"].as_array().unwrap() {
        let resources = rule["resources"].as_array().unwrap();
        if !resources.iter().any(|r| r == resource) {
            rules.push(rule.clone());
            continue;
        }
        // Split the rule: the other resources keep every verb.
        let others: Vec<&Value> = resources.iter().filter(|r| *r != resource).collect();
        if !others.is_empty() {
            let mut kept = rule.clone();
            kept["resources"] = json!(others);
            rules.push(kept);
        }
        let verbs: Vec<&Value> = rule["verbs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| *v != verb)
            .collect();
        if !verbs.is_empty() {
            let mut cut = rule.clone();
            cut["resources"] = json!([resource]);
            cut["verbs"] = json!(verbs);
            rules.push(cut);
        }
    }
    let before = grants(role).len();
    role["rules"] = json!(rules);
    assert_eq!(
        grants(role).len(),
        before - 1,
        "the Role grants {verb} on {resource} exactly once"
    );
}

/// Whether `obj` is one of the chart's aggregated roles for people (view, edit, admin), which
/// no binding of the chart gives to the operator.
fn for_people(obj: &Value) -> bool {
    obj["metadata"]["labels"].as_object().is_some_and(|labels| {
        labels
            .keys()
            .any(|k| k.starts_with("rbac.authorization.k8s.io/aggregate-to-"))
    })
}

/// Creates the chart's ServiceAccount, Roles, RoleBindings and finalizer guard (everything
/// else is skipped).
async fn apply_rbac(w: &World, objs: &[Value]) {
    for o in objs {
        let ns = o["metadata"]["namespace"].as_str().unwrap_or(&w.ns);
        let kind = o["kind"].as_str().unwrap_or_default();
        let created = match kind {
            "ServiceAccount" => create::<ServiceAccount>(w, ns, o).await,
            "Role" => create::<Role>(w, ns, o).await,
            "RoleBinding" => create::<RoleBinding>(w, ns, o).await,
            // The finalizer guard: cluster-scoped, named after the release's namespace.
            "ValidatingAdmissionPolicy" => create_cluster::<ValidatingAdmissionPolicy>(w, o).await,
            "ValidatingAdmissionPolicyBinding" => {
                create_cluster::<ValidatingAdmissionPolicyBinding>(w, o).await
            }
            // People's roles, aggregated into view/edit/admin: they grant the operator nothing.
            "ClusterRole" if for_people(o) => Ok(()),
            "ClusterRole" | "ClusterRoleBinding" => {
                panic!("a namespaced render must not hold a {kind} for the operator")
            }
            _ => Ok(()),
        };
        created.unwrap_or_else(|e| panic!("create {kind}: {e}"));
    }
}

async fn create<K>(w: &World, ns: &str, obj: &Value) -> Result<(), kube::Error>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    create_through(Api::<K>::namespaced(w.client.clone(), ns), obj).await
}

async fn create_cluster<K>(w: &World, obj: &Value) -> Result<(), kube::Error>
where
    K: kube::Resource<Scope = k8s_openapi::ClusterResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    create_through(Api::<K>::all(w.client.clone()), obj).await
}

async fn create_through<K>(api: Api<K>, obj: &Value) -> Result<(), kube::Error>
where
    K: Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let typed: K = serde_json::from_value(obj.clone()).expect("a valid object");
    api.create(&PostParams::default(), &typed).await.map(|_| ())
}

/// Whether the chart's ServiceAccount may `verb` `resource` (`group/resource[/subresource]`
/// as in RBAC, e.g. `librechat.ai/librechatusers/finalizers`, `/secrets`) in `ns`
/// (`""`: cluster-wide), as the API server's authorizer answers it.
async fn may(w: &World, verb: &str, resource: &str, ns: &str) -> bool {
    may_named(w, verb, resource, ns, None).await
}

async fn may_named(w: &World, verb: &str, resource: &str, ns: &str, name: Option<&str>) -> bool {
    let (group, rest) = resource.split_once('/').unwrap();
    let (resource, subresource) = match rest.split_once('/') {
        Some((r, s)) => (r, Some(s.to_string())),
        None => (rest, None),
    };
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(format!("system:serviceaccount:{}:{FULLNAME}", w.ns)),
            resource_attributes: Some(ResourceAttributes {
                group: Some(group.into()),
                resource: Some(resource.into()),
                subresource,
                verb: Some(verb.into()),
                namespace: (!ns.is_empty()).then(|| ns.to_string()),
                name: name.map(str::to_string),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<SubjectAccessReview>::all(w.client.clone())
        .create(&PostParams::default(), &review)
        .await
        .expect("SubjectAccessReview")
        .status
        .is_some_and(|s| s.allowed)
}

/// A kubeconfig for the API server of `KUBECONFIG` whose only credential is a fresh
/// TokenRequest token of the chart's ServiceAccount.
async fn service_account_kubeconfig(w: &World) -> PathBuf {
    let token = Api::<ServiceAccount>::namespaced(w.client.clone(), &w.ns)
        .create_token_request(
            FULLNAME,
            &PostParams::default(),
            &TokenRequest {
                spec: TokenRequestSpec {
                    expiration_seconds: Some(3600),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await
        .expect("TokenRequest for the chart's ServiceAccount")
        .status
        .expect("a token")
        .token;
    let admin_path = PathBuf::from(env("KUBECONFIG").split(':').next().unwrap());
    let admin: Value =
        serde_yaml::from_str(&std::fs::read_to_string(&admin_path).unwrap()).unwrap();
    let context = admin["current-context"]
        .as_str()
        .expect("a current context");
    let cluster_name = admin["contexts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == context)
        .and_then(|c| c["context"]["cluster"].as_str())
        .expect("the current context's cluster");
    let mut cluster = admin["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == cluster_name)
        .expect("the cluster")["cluster"]
        .clone();
    // A relative CA path is relative to the admin kubeconfig.
    if let Some(ca) = cluster["certificate-authority"].as_str() {
        let ca = admin_path.parent().unwrap().join(ca);
        cluster["certificate-authority"] = json!(ca);
    }
    let config = json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [ { "name": "cluster", "cluster": cluster } ],
        "users": [ { "name": FULLNAME, "user": { "token": token } } ],
        "contexts": [ { "name": "operator", "context": { "cluster": "cluster", "user": FULLNAME, "namespace": w.ns } } ],
        "current-context": "operator",
    });
    let path = project_dir()
        .join("target/e2e-logs")
        .join(format!("{}.kubeconfig", w.ns));
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .unwrap();
        f.write_all(serde_yaml::to_string(&config).unwrap().as_bytes())
            .unwrap();
    }
    path
}

/// The operator binary, run as the Deployment would run it, until dropped.
struct Operator {
    child: Child,
    log: PathBuf,
}

impl Operator {
    /// Starts the binary with the rendered Deployment's arguments and environment
    /// (`--http-addr off`: parallel tests would fight over port 8080).
    fn start(w: &World, objs: &[Value], kubeconfig: &Path) -> Operator {
        let container =
            &find(objs, "Deployment", FULLNAME)["spec"]["template"]["spec"]["containers"][0];
        let args: Vec<String> = container["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .map(|a| {
                if a.starts_with("--http-addr=") {
                    "--http-addr=off".to_string()
                } else {
                    a
                }
            })
            .collect();
        assert!(
            args.contains(&format!("--namespace={}", w.ns)),
            "the Deployment watches the namespace: {args:?}"
        );
        let rust_log = container["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == "RUST_LOG")
            .and_then(|e| e["value"].as_str())
            .expect("RUST_LOG in the Deployment")
            .to_string();
        let log = project_dir()
            .join("target/e2e-logs")
            .join(format!("{}.log", w.ns));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_librechat-operator"))
            .args(&args)
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", rust_log)
            // What the downward API gives the pod.
            .env("POD_NAME", IDENTITY)
            .env("POD_NAMESPACE", &w.ns)
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("the operator binary must start");
        Operator { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A world whose operator runs as the chart's ServiceAccount, with `cut` (resource, verb)
/// taken out of the chart's Role first.
async fn world_as_service_account(
    label: &str,
    cut: Option<(&str, &str)>,
) -> (World, Operator, PathBuf) {
    let w = World::new(label).await;
    let mut objs = render(&w.ns, &[&w.ns]);
    if let Some((resource, verb)) = cut {
        remove_verb(&mut objs, resource, verb);
    }
    apply_rbac(&w, &objs).await;
    // RBAC is enforced from the authorizer's cache: wait until it knows each Role and its
    // binding (through a grant the Role still has) before the operator's first call.
    for role in objs.iter().filter(|o| o["kind"] == "Role") {
        let rule = &role["rules"][0];
        let resource = format!(
            "{}/{}",
            rule["apiGroups"][0].as_str().unwrap(),
            rule["resources"][0].as_str().unwrap()
        );
        let verb = rule["verbs"][0].as_str().unwrap();
        let name = rule["resourceNames"][0].as_str();
        eventually("the chart's Roles to take effect", || async {
            may_named(&w, verb, &resource, &w.ns, name)
                .await
                .then_some(())
        })
        .await;
    }
    if cut == Some(("leases", "update")) {
        // Taking over a Lease is an update: leave an expired one behind, as a replica that
        // died would.
        expired_lease(&w).await;
    }
    let kubeconfig = service_account_kubeconfig(&w).await;
    let operator = Operator::start(&w, &objs, &kubeconfig);
    (w, operator, kubeconfig)
}

/// A Lease held by a replica that stopped renewing an hour ago.
async fn expired_lease(w: &World) {
    let long_ago = k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
        jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1),
    );
    let lease = Lease {
        metadata: kube::api::ObjectMeta {
            name: Some(FULLNAME.into()),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(format!("{FULLNAME}-gone")),
            lease_duration_seconds: Some(15),
            acquire_time: Some(long_ago.clone()),
            renew_time: Some(long_ago),
            lease_transitions: Some(0),
            ..Default::default()
        }),
    };
    Api::<Lease>::namespaced(w.client.clone(), &w.ns)
        .create(&PostParams::default(), &lease)
        .await
        .expect("create the expired Lease");
}

async fn lease(w: &World) -> Option<LeaseSpec> {
    Api::<Lease>::namespaced(w.client.clone(), &w.ns)
        .get_opt(FULLNAME)
        .await
        .unwrap()?
        .spec
}

/// The object when its Ready condition is True (with `reason`, if given) for its generation.
async fn ready(w: &World, plural: &str, name: &str, reason: Option<&str>) -> Option<Value> {
    let obj = w.get(plural, name).await?;
    let c = condition(&obj, "Ready")?;
    (c.status == "True"
        && reason.is_none_or(|r| c.reason == r)
        && c.observed_generation == obj.pointer("/metadata/generation").and_then(Value::as_i64))
    .then_some(obj)
}

async fn secret_data(w: &World, name: &str) -> Option<(Secret, Vec<(String, String)>)> {
    let secret = Api::<Secret>::namespaced(w.client.clone(), &w.ns)
        .get_opt(name)
        .await
        .unwrap()?;
    let data = secret
        .data
        .clone()?
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8(v.0).unwrap()))
        .collect();
    Some((secret, data))
}

fn key<'a>(data: &'a [(String, String)], k: &str) -> Option<&'a str> {
    data.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

async fn has_password(w: &World, email: &str, password: &str) -> Option<()> {
    let doc = w.find_user(email).await?;
    bcrypt::verify(password, doc.get_str("password").ok()?)
        .ok()?
        .then_some(())
}

async fn events_on(w: &World, name: &str) -> Vec<Event> {
    Api::<Event>::namespaced(w.client.clone(), &w.ns)
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .collect()
}

fn instance_spec(w: &World, domain: &str) -> Value {
    json!({
        "mongo": { "uriSecretRef": { "name": "lc-stores", "key": "mongo" } },
        "redis": { "uriSecretRef": { "name": "lc-stores", "key": "redis" }, "keyPrefix": w.ns },
        "domainClient": domain,
    })
}

/// Runs the user scenario as far as it goes. Each step may take `PATIENCE`, except
/// `expected_failure`, which gets `SHORT` and ends the run.
async fn scenario(w: &World, expected_failure: Option<Step>) -> Result<(), (Step, String)> {
    let mut done = Vec::new();
    for step in [
        Step::Leadership,
        Step::InstanceReady,
        Step::UserReady,
        Step::GeneratedPassword,
        Step::Rotation,
        Step::Events,
        Step::RotationAgain,
        Step::EventSeries,
        Step::Ban,
        Step::Invite,
        Step::InviteUrlRefresh,
        Step::Deletion,
        Step::Access,
        Step::Conflict,
    ] {
        let limit = if expected_failure == Some(step) {
            SHORT
        } else {
            PATIENCE
        };
        let started = Instant::now();
        run_step(w, step, limit)
            .await
            .map_err(|why| (step, format!("{why} (after {done:?})")))?;
        done.push((step, started.elapsed().as_millis()));
        if expected_failure == Some(step) {
            return Ok(());
        }
    }
    Ok(())
}

async fn run_step(w: &World, step: Step, limit: Duration) -> Result<(), String> {
    let fail = |what: &str| Err(format!("{what} within {}s", limit.as_secs()));
    match step {
        Step::Leadership => {
            // Taken by this run: acquired within the last minutes (a release on exit clears
            // the holder, not the acquireTime).
            let recent = jiff::Timestamp::now() - jiff::SignedDuration::from_mins(5);
            let taken = within(limit, || async {
                lease(w)
                    .await?
                    .acquire_time
                    .filter(|t| t.0 > recent)
                    .map(|_| ())
            })
            .await;
            if taken.is_none() {
                return fail("the operator did not take the leader-election Lease");
            }
        }
        Step::InstanceReady => {
            w.secret(
                "lc-stores",
                &[("mongo", &w.mongo_uri()), ("redis", &env("REDIS_URL"))],
            )
            .await;
            w.apply(
                "LibreChatInstance",
                "lc",
                instance_spec(w, "https://chat.example.com"),
            )
            .await;
            if within(limit, || ready(w, "librechatinstances", "lc", None))
                .await
                .is_none()
            {
                return fail("the instance was not Ready");
            }
        }
        Step::UserReady => {
            w.secret("jane-pw", &[("password", PASSWORD)]).await;
            w.apply(
                "LibreChatUser",
                "jane",
                json!({
                    "instanceRef": { "name": "lc" }, "email": "jane@example.com", "name": "Jane Doe",
                    "password": { "secretRef": { "name": "jane-pw", "key": "password" } },
                    "deletionPolicy": "Delete",
                }),
            )
            .await;
            if within(limit, || ready(w, "librechatusers", "jane", None))
                .await
                .is_none()
            {
                return fail("user jane was not Ready");
            }
            if has_password(w, "jane@example.com", PASSWORD)
                .await
                .is_none()
            {
                return fail("jane's account with her password was not in MongoDB");
            }
        }
        Step::GeneratedPassword => {
            w.apply(
                "LibreChatUser",
                "gen",
                json!({ "instanceRef": { "name": "lc" }, "email": "gen@example.com", "password": { "generate": { "secretName": "gen-login" } } }),
            )
            .await;
            let Some((secret, data)) = within(limit, || secret_data(w, "gen-login")).await else {
                return fail("the generated-password Secret gen-login was not created");
            };
            let owned = secret
                .metadata
                .owner_references
                .unwrap_or_default()
                .iter()
                .any(|o| {
                    o.kind == "LibreChatUser"
                        && o.name == "gen"
                        && o.controller == Some(true)
                        && o.block_owner_deletion == Some(true)
                });
            if !owned {
                return Err("gen-login is not owned by LibreChatUser gen".into());
            }
            let password = key(&data, "password").unwrap_or_default().to_string();
            if within(limit, || async {
                ready(w, "librechatusers", "gen", None).await?;
                has_password(w, "gen@example.com", &password).await
            })
            .await
            .is_none()
            {
                return fail("user gen was not Ready with the generated password");
            }
        }
        Step::Rotation | Step::RotationAgain => {
            let new = if step == Step::Rotation {
                ROTATED
            } else {
                ROTATED_AGAIN
            };
            w.secret("jane-pw", &[("password", new)]).await;
            if within(limit, || has_password(w, "jane@example.com", new))
                .await
                .is_none()
            {
                return fail("the rotated password was not applied");
            }
        }
        Step::Events => {
            let wanted = [
                ("jane", "Created"),
                ("jane", "PasswordRotated"),
                ("gen", "Created"),
            ];
            let found = within(limit, || async {
                for (name, reason) in wanted {
                    if !w.event_reasons(name).await.iter().any(|r| r == reason) {
                        return None;
                    }
                }
                Some(())
            })
            .await;
            if found.is_none() {
                return fail("the events Created and PasswordRotated were not recorded");
            }
        }
        Step::EventSeries => {
            let series = within(limit, || async {
                events_on(w, "jane")
                    .await
                    .iter()
                    .filter(|e| e.reason.as_deref() == Some("PasswordRotated"))
                    .any(|e| e.series.as_ref().is_some_and(|s| s.count >= 2))
                    .then_some(())
            })
            .await;
            if series.is_none() {
                return fail("the repeated PasswordRotated event was not counted in a series");
            }
        }
        Step::Ban => {
            w.apply(
                "UserBan",
                "jane-ban",
                json!({ "instanceRef": { "name": "lc" }, "userRef": { "name": "jane" }, "duration": "1h" }),
            )
            .await;
            if within(limit, || ready(w, "userbans", "jane-ban", Some("Banned")))
                .await
                .is_none()
            {
                return fail("the UserBan was not Banned");
            }
        }
        Step::Invite => {
            w.apply(
                "UserInvite",
                "newbie",
                json!({ "instanceRef": { "name": "lc" }, "email": "newbie@example.com" }),
            )
            .await;
            let link = within(limit, || async {
                ready(w, "userinvites", "newbie", Some("Pending")).await?;
                let (_, data) = secret_data(w, "newbie-invite").await?;
                key(&data, "url")?
                    .starts_with("https://chat.example.com/register?token=")
                    .then_some(())
            })
            .await;
            if link.is_none() {
                return fail("the UserInvite was not Pending with its link Secret");
            }
        }
        Step::InviteUrlRefresh => {
            w.apply(
                "LibreChatInstance",
                "lc",
                instance_spec(w, "https://chat2.example.com"),
            )
            .await;
            let refreshed = within(limit, || async {
                let (_, data) = secret_data(w, "newbie-invite").await?;
                key(&data, "url")?
                    .starts_with("https://chat2.example.com/register?token=")
                    .then_some(())
            })
            .await;
            if refreshed.is_none() {
                return fail("the invite link Secret's url was not refreshed");
            }
        }
        Step::Deletion => {
            w.delete("LibreChatUser", "jane").await;
            let gone = within(limit, || async {
                w.get("librechatusers", "jane")
                    .await
                    .is_none()
                    .then_some(())
            })
            .await;
            if gone.is_none() {
                return fail("the deletion of user jane did not complete (finalizer kept)");
            }
            if w.find_user("jane@example.com").await.is_some() {
                return Err("jane's account is still in MongoDB".into());
            }
            if !w.event_reasons("jane").await.iter().any(|r| r == "Deleted") {
                return fail("no Deleted event");
            }
        }
        Step::Access => {
            w.apply(
                "LibreChatRole",
                "analyst",
                json!({ "instanceRef": { "name": "lc" }, "name": "RBAC_ANALYST",
                        "permissions": { "AGENTS": { "USE": true } } }),
            )
            .await;
            w.apply(
                "LibreChatGroup",
                "team",
                json!({ "instanceRef": { "name": "lc" }, "name": "rbac-team",
                        "members": [{ "email": "nobody@example.com" }] }),
            )
            .await;
            for (plural, name) in [("librechatroles", "analyst"), ("librechatgroups", "team")] {
                if within(limit, || ready(w, plural, name, None))
                    .await
                    .is_none()
                {
                    return fail(&format!("{plural}/{name} was not Ready"));
                }
            }
        }
        Step::Conflict => {
            w.apply(
                "LibreChatUser",
                "gen-twin",
                json!({ "instanceRef": { "name": "lc" }, "email": "gen@example.com" }),
            )
            .await;
            let refused = within(limit, || async {
                let obj = w.get("librechatusers", "gen-twin").await?;
                let c = condition(&obj, "Ready")?;
                (c.status == "False" && c.reason == "Conflict").then_some(())
            })
            .await;
            if refused.is_none() {
                return fail("user gen-twin did not read Conflict");
            }
        }
    }
    Ok(())
}

#[tokio::test]
async fn operator_runs_with_the_charts_rbac_alone() {
    let started = Instant::now();
    let (w, operator, kubeconfig) = world_as_service_account("rbac-ok", None).await;

    // The token is the ServiceAccount's, not an admin's: outside its Role it can do nothing.
    let sa_client = {
        let kubeconfig = kube::config::Kubeconfig::read_from(&kubeconfig).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .unwrap();
        kube::Client::try_from(config).unwrap()
    };
    let elsewhere = Api::<Secret>::namespaced(sa_client.clone(), "default")
        .list(&Default::default())
        .await;
    assert!(
        matches!(&elsewhere, Err(kube::Error::Api(e)) if e.code == 403),
        "the ServiceAccount must not read Secrets outside its namespace: {elsewhere:?}"
    );

    if let Err((step, why)) = scenario(&w, None).await {
        panic!(
            "with the chart's RBAC, step {step:?} failed: {why}\noperator log:\n{}",
            operator.log()
        );
    }
    // The Lease is held by this replica and renewed (an update), every lease duration / 3.
    let renewed = within(PATIENCE, || async {
        let spec = lease(&w).await?;
        (spec.holder_identity.as_deref() == Some(IDENTITY)
            && spec.renew_time?.0 > spec.acquire_time?.0)
            .then_some(())
    })
    .await;
    assert!(
        renewed.is_some(),
        "the Lease was not renewed: {:?}",
        lease(&w).await
    );

    let log = operator.log();
    assert!(
        !log.to_lowercase().contains("forbidden"),
        "the operator was refused something with the chart's RBAC:\n{log}"
    );
    for secret in [PASSWORD, ROTATED, ROTATED_AGAIN] {
        assert!(!log.contains(secret), "a password in the operator's log");
    }

    // What the scenario cannot show here, the authorizer answers. The test API server does
    // not run the OwnerReferencesPermissionEnforcement admission plugin, which requires
    // `update` on <owner>/finalizers to create the owned Secrets with blockOwnerDeletion.
    let ns = w.ns.clone();
    for (verb, resource) in [
        ("update", "librechat.ai/librechatusers/finalizers"),
        ("update", "librechat.ai/userinvites/finalizers"),
        ("watch", "librechat.ai/librechatinstances"),
        ("watch", "librechat.ai/librechatusers"),
        ("watch", "librechat.ai/userbans"),
        ("watch", "librechat.ai/userinvites"),
        ("watch", "/secrets"),
    ] {
        assert!(
            may(&w, verb, resource, &ns).await,
            "{verb} {resource} must be allowed"
        );
    }
    // Nothing beyond: no deletes, no updates of whole objects, nothing outside the namespace.
    for (verb, resource, namespace) in [
        ("delete", "/secrets", ns.as_str()),
        ("update", "/secrets", &ns),
        ("list", "/pods", &ns),
        ("update", "librechat.ai/librechatusers", &ns),
        ("delete", "librechat.ai/librechatusers", &ns),
        ("create", "librechat.ai/librechatusers", &ns),
        ("update", "librechat.ai/librechatinstances/finalizers", &ns),
        ("update", "librechat.ai/librechatinstances", &ns),
        ("delete", "librechat.ai/librechatinstances", &ns),
        ("get", "/secrets", "default"),
        ("list", "librechat.ai/librechatusers", ""),
        ("get", "/namespaces", ""),
        ("create", "coordination.k8s.io/leases", "default"),
        ("get", "coordination.k8s.io/leases", &ns),
    ] {
        assert!(
            !may(&w, verb, resource, namespace).await,
            "{verb} {resource} in '{namespace}' must be refused"
        );
    }
    // The leader-election Lease: its own name only.
    assert!(may(&w, "create", "coordination.k8s.io/leases", &ns).await);
    eprintln!(
        "rbac: the scenario completed as the chart's ServiceAccount in {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

/// How taking a verb away shows.
#[derive(Clone, Copy, Debug)]
enum Without {
    /// The scenario stops at this step.
    StopsAt(Step),
    /// The operator's watch of the resource (its list or its watch) is refused, as its log
    /// reports. (A refused watch makes kube-runtime re-list with backoff: the operator limps
    /// along by polling and through other objects' events, and whether a step finishes in time
    /// would be a matter of luck.)
    WatchRefused,
}

use Without::*;

/// Each verb of the chart's Roles, and what breaks without it.
const NEEDED: &[(&str, &str, Without)] = &[
    // Listing every kind is the start-up check, before a replica competes for the Lease: the
    // operator refuses to start with a clear message instead of crash-looping on watches.
    ("librechatinstances", "list", StopsAt(Step::Leadership)),
    ("librechatinstances", "watch", WatchRefused),
    // The instance's finalizer (it waits for its dependents before it goes).
    ("librechatinstances", "patch", StopsAt(Step::InstanceReady)),
    ("librechatusers", "get", StopsAt(Step::Conflict)),
    ("librechatusers", "list", StopsAt(Step::Leadership)),
    ("librechatusers", "watch", WatchRefused),
    ("librechatusers", "patch", StopsAt(Step::UserReady)),
    ("userbans", "list", StopsAt(Step::Leadership)),
    ("userbans", "watch", WatchRefused),
    ("userbans", "patch", StopsAt(Step::Ban)),
    ("userinvites", "list", StopsAt(Step::Leadership)),
    ("userinvites", "watch", WatchRefused),
    ("userinvites", "patch", StopsAt(Step::Invite)),
    ("librechatgroups", "list", StopsAt(Step::Leadership)),
    ("librechatgroups", "watch", WatchRefused),
    ("librechatgroups", "patch", StopsAt(Step::Access)),
    ("librechatroles", "list", StopsAt(Step::Leadership)),
    ("librechatroles", "watch", WatchRefused),
    ("librechatroles", "patch", StopsAt(Step::Access)),
    ("librechatgroups/status", "patch", StopsAt(Step::Access)),
    ("librechatroles/status", "patch", StopsAt(Step::Access)),
    (
        "librechatinstances/status",
        "patch",
        StopsAt(Step::InstanceReady),
    ),
    ("librechatusers/status", "patch", StopsAt(Step::UserReady)),
    ("userbans/status", "patch", StopsAt(Step::Ban)),
    ("userinvites/status", "patch", StopsAt(Step::Invite)),
    ("secrets", "get", StopsAt(Step::InstanceReady)),
    ("secrets", "list", WatchRefused),
    ("secrets", "watch", WatchRefused),
    ("secrets", "create", StopsAt(Step::GeneratedPassword)),
    ("secrets", "patch", StopsAt(Step::InviteUrlRefresh)),
    ("events", "create", StopsAt(Step::Events)),
    ("events", "patch", StopsAt(Step::EventSeries)),
    // Leader election, in the release namespace's own Role.
    ("leases", "get", StopsAt(Step::Leadership)),
    ("leases", "create", StopsAt(Step::Leadership)),
    // (with an expired Lease left behind, which only an update takes over)
    ("leases", "update", StopsAt(Step::Leadership)),
];

/// Verbs the API server here never asks about, checked by the authorizer in
/// `operator_runs_with_the_charts_rbac_alone` instead: `update` on `<kind>/finalizers` is
/// required only by the OwnerReferencesPermissionEnforcement admission plugin (for the owned
/// Secrets' blockOwnerDeletion), which the test API server does not run.
const NOT_SINGLED_OUT: &[(&str, &str)] = &[
    ("librechatusers/finalizers", "update"),
    ("userinvites/finalizers", "update"),
];

#[test]
fn both_modes_grant_the_same_rules_and_every_verb_is_accounted_for() {
    let namespaced = render("rbac-modes", &["rbac-modes"]);
    let cluster_wide = render("rbac-modes", &[]);
    let role = find(&namespaced, "Role", FULLNAME);
    let cluster_role = find(&cluster_wide, "ClusterRole", FULLNAME);
    assert_eq!(role["rules"], cluster_role["rules"]);
    assert!(
        !namespaced
            .iter()
            .any(|o| o["kind"] == "ClusterRoleBinding"
                || o["kind"] == "ClusterRole" && !for_people(o))
    );

    // A verb added to the chart needs a reason here; a verb removed needs its case removed.
    let mut granted = grants(role);
    granted.extend(grants(find(&namespaced, "Role", LEASE_ROLE)));
    granted.sort();
    let mut accounted: Vec<(String, String)> = NEEDED
        .iter()
        .map(|(r, v, _)| (r.to_string(), v.to_string()))
        .chain(
            NOT_SINGLED_OUT
                .iter()
                .map(|(r, v)| (r.to_string(), v.to_string())),
        )
        .collect();
    accounted.sort();
    let unexplained: Vec<_> = granted.iter().filter(|g| !accounted.contains(g)).collect();
    let not_granted: Vec<_> = accounted.iter().filter(|a| !granted.contains(a)).collect();
    assert!(
        unexplained.is_empty() && not_granted.is_empty(),
        "granted by the chart but not shown needed in NEEDED: {unexplained:?}; \
         in NEEDED but not granted: {not_granted:?}"
    );
    assert_eq!(granted, accounted, "each verb granted once");
}

/// Takes each verb of `NEEDED` out of the chart's Roles in turn (each in its own namespace and
/// operator, all at once) and shows what breaks: the scenario stops at the step that needs
/// the verb, and not before, or the watch is refused. Removing any verb from the chart breaks
/// the operator.
#[tokio::test]
async fn each_verb_of_the_role_is_needed() {
    let started = Instant::now();
    let runs = NEEDED.iter().enumerate().map(|(i, &(resource, verb, without))| async move {
        let (w, operator, _) =
            world_as_service_account(&format!("rbac-cut{i}"), Some((resource, verb))).await;
        let step = match without {
            StopsAt(step) => step,
            WatchRefused => {
                // kube-runtime logs the refusal (the Debug form escapes the quotes). Waited
                // for as long as a step that must succeed: the refusal is what must happen.
                let refused = format!("cannot {verb} resource \\\"{resource}\\\"");
                let seen = within(PATIENCE, || async {
                    operator.log().contains(&refused).then_some(())
                })
                .await;
                return match seen {
                    Some(()) => Ok(()),
                    None => Err(format!(
                        "without {verb} on {resource}: no refused {verb} in the log {}",
                        operator.log.display()
                    )),
                };
            }
        };
        let outcome = scenario(&w, Some(step)).await;
        match outcome {
            Err((failed, _)) if failed == step => Ok(()),
            Err((failed, why)) => Err(format!(
                "without {verb} on {resource}: step {failed:?} failed, expected {step:?}: {why}\nlog {}",
                operator.log
                    .display()
            )),
            Ok(()) => Err(format!(
                "without {verb} on {resource}: step {step:?} completed anyway, so the chart grants a verb the operator does not need (log {})",
                operator.log.display()
            )),
        }
    });
    let problems: Vec<String> = futures::future::join_all(runs)
        .await
        .into_iter()
        .filter_map(Result::err)
        .collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    eprintln!(
        "rbac: {} verbs each shown necessary in {:.1}s",
        NEEDED.len(),
        started.elapsed().as_secs_f64()
    );
}

/// An instance the operator may not read (its namespace is outside the chart's
/// `watchNamespaces`) is a problem only a person can fix: the object says so and is Stalled,
/// so a GitOps wait fails fast instead of timing out.
#[tokio::test]
async fn an_instance_the_operator_may_not_read_stalls_the_object_with_its_own_reason() {
    let (w, operator, _kubeconfig) = world_as_service_account("rbac-403", None).await;
    w.apply(
        "LibreChatUser",
        "far",
        json!({ "instanceRef": { "name": "lc", "namespace": "default" }, "email": "far@example.com" }),
    )
    .await;
    let obj = w
        .wait_condition(
            "librechatusers",
            "far",
            "Ready",
            "False",
            Some("InstanceForbidden"),
        )
        .await;
    let ready = condition(&obj, "Ready").unwrap();
    assert!(
        ready.message.contains("watchNamespaces"),
        "{}",
        ready.message
    );
    let stalled = condition(&obj, "Stalled").unwrap();
    assert_eq!(
        stalled.status,
        "True",
        "{}\n{}",
        stalled.message,
        operator.log()
    );
    assert_eq!(condition(&obj, "Reconciling").unwrap().status, "False");
}

/// A client of the test's API server acting as `user` (impersonation by the test's admin).
async fn client_as(user: &str) -> kube::Client {
    let mut config = kube::Config::infer().await.expect("KUBECONFIG");
    config.auth_info.impersonate = Some(user.to_string());
    kube::Client::try_from(config).unwrap()
}

/// Gives `user` the `verbs` on librechat.ai `resources` in `ns` (a Role and its binding).
async fn grant(w: &World, ns: &str, user: &str, resources: &[&str], verbs: &[&str]) {
    let name = format!("{user}-{}", resources.len());
    let role: Role = serde_json::from_value(json!({
        "metadata": { "name": name },
        "rules": [{ "apiGroups": ["librechat.ai"], "resources": resources, "verbs": verbs }],
    }))
    .unwrap();
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": { "name": name },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name },
        "subjects": [{ "apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user }],
    }))
    .unwrap();
    let pp = PostParams::default();
    Api::<Role>::namespaced(w.client.clone(), ns)
        .create(&pp, &role)
        .await
        .unwrap();
    Api::<RoleBinding>::namespaced(w.client.clone(), ns)
        .create(&pp, &binding)
        .await
        .unwrap();
}

/// Takes the operator's finalizer off `kind`/`name` in `ns` as `client`'s person would
/// (`kubectl patch --type merge -p '{"metadata":{"finalizers":null}}'`).
async fn strip_finalizer(
    client: &kube::Client,
    ns: &str,
    kind: &str,
    name: &str,
    dry_run: bool,
) -> Result<(), kube::Error> {
    let patch = json!({ "metadata": { "finalizers": null } });
    let params = kube::api::PatchParams {
        dry_run,
        ..Default::default()
    };
    dynamic(client, ns, kind)
        .patch(name, &params, &kube::api::Patch::Merge(&patch))
        .await
        .map(|_| ())
}

/// The guard's refusal, as opposed to RBAC's (both are 403).
fn refused_by_guard(result: &Result<(), kube::Error>) -> Option<String> {
    match result {
        Err(kube::Error::Api(e)) if e.message.contains("may remove the finalizer") => {
            Some(e.message.clone())
        }
        _ => None,
    }
}

/// The attack: a tenant's namespace admin strips the operator's cleanup finalizer from its
/// objects and deletes them, so that their ban, invitation token or account stays in
/// LibreChat with nothing in Kubernetes naming it and no cleanup ever run. The chart's
/// finalizer guard refuses it, before and during the deletion, however the finalizer is
/// taken off; the tenant's other edits go through, and the instance's administrators may
/// still take it off (the operator itself does, in the scenario's deletions).
#[tokio::test]
async fn a_tenant_cannot_strip_the_cleanup_finalizer() {
    let w = World::new("rbac-guard").await;
    let tenant = format!("{}-t", w.ns);
    create_namespace(&w.client, &tenant).await;
    apply_rbac(&w, &render(&w.ns, &[&w.ns, &tenant])).await;
    let instance = json!({ "name": "lc", "namespace": w.ns });
    for (kind, name, spec) in [
        (
            "LibreChatUser",
            "mine",
            json!({ "instanceRef": instance, "email": "mine@example.com" }),
        ),
        (
            "UserBan",
            "ban",
            json!({ "instanceRef": instance, "userRef": { "name": "mine" } }),
        ),
    ] {
        let obj: kube::api::DynamicObject = serde_json::from_value(json!({
            "apiVersion": "librechat.ai/v1alpha1", "kind": kind,
            "metadata": { "name": name, "finalizers": ["librechat.ai/cleanup"] },
            "spec": spec,
        }))
        .unwrap();
        dynamic(&w.client, &tenant, kind)
            .create(&PostParams::default(), &obj)
            .await
            .unwrap_or_else(|e| panic!("create {kind}: {e}"));
    }
    // The tenant's admin may do anything with the kinds in its namespace, instances included,
    // even write their status (a wildcard role, as some platforms give a project's owners).
    let tenant_admin = format!("tenant-admin-{}", w.ns);
    grant(&w, &tenant, &tenant_admin, &["*"], &["*"]).await;
    let as_tenant = client_as(&tenant_admin).await;

    // The guard takes effect a moment after it is created: tried without effect until then.
    within(PATIENCE, || async {
        let tried = strip_finalizer(&as_tenant, &tenant, "LibreChatUser", "mine", true).await;
        refused_by_guard(&tried)
    })
    .await
    .expect("the guard never refused a dry run of the tenant's admin stripping the finalizer");
    let stripped = strip_finalizer(&as_tenant, &tenant, "LibreChatUser", "mine", false).await;
    let refusal = refused_by_guard(&stripped)
        .unwrap_or_else(|| panic!("the tenant's admin stripped the finalizer: {stripped:?}"));
    assert!(
        refusal.contains(&w.ns),
        "the refusal names the instance's namespace: {refusal}"
    );

    // Deleting is the tenant's right; the cleanup still stands between it and the object.
    dynamic(&as_tenant, &tenant, "LibreChatUser")
        .delete("mine", &Default::default())
        .await
        .unwrap();
    let stripped = strip_finalizer(&as_tenant, &tenant, "LibreChatUser", "mine", false).await;
    assert!(refused_by_guard(&stripped).is_some(), "{stripped:?}");
    let mine = get_in(&w.client, &tenant, "librechatusers", "mine").await;
    assert!(
        mine.as_ref()
            .is_some_and(|o| !o["metadata"]["deletionTimestamp"].is_null()),
        "the deleted user stays until its cleanup: {mine:?}"
    );

    // Replaced by another finalizer in a whole-object update: refused too.
    let bans = dynamic(&as_tenant, &tenant, "UserBan");
    let mut ban = bans.get("ban").await.unwrap();
    ban.metadata.finalizers = Some(vec!["example.com/other".into()]);
    let replaced = bans
        .replace("ban", &PostParams::default(), &ban)
        .await
        .map(|_| ());
    assert!(refused_by_guard(&replaced).is_some(), "{replaced:?}");
    // Every other edit goes through.
    let labelled = bans
        .patch(
            "ban",
            &Default::default(),
            &kube::api::Patch::Merge(json!({ "metadata": { "labels": { "team": "a" } } })),
        )
        .await;
    assert!(labelled.is_ok(), "{labelled:?}");

    // The instance's administrators may take it off (after a crash of the operator's
    // database, say), and the deleted user goes.
    let instance_admin = format!("instance-admin-{}", w.ns);
    grant(
        &w,
        &w.ns,
        &instance_admin,
        &["librechatinstances"],
        &["update"],
    )
    .await;
    grant(
        &w,
        &tenant,
        &instance_admin,
        &["librechatusers"],
        &["get", "patch"],
    )
    .await;
    let as_instance_admin = client_as(&instance_admin).await;
    let allowed = within(PATIENCE, || async {
        strip_finalizer(&as_instance_admin, &tenant, "LibreChatUser", "mine", false)
            .await
            .ok()
    })
    .await;
    assert!(
        allowed.is_some(),
        "the instance's administrators could not remove it"
    );
    let gone = within(PATIENCE, || async {
        get_in(&w.client, &tenant, "librechatusers", "mine")
            .await
            .is_none()
            .then_some(())
    })
    .await;
    assert!(
        gone.is_some(),
        "the deleted user did not go once its finalizer was off"
    );
}
