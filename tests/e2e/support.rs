//! What every end-to-end test needs: the real servers from the environment, a namespace and
//! a MongoDB database of its own, an operator process watching only that namespace, and
//! patient polling.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::ByteString;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::Client;
use mongodb::bson::Document;
use serde_json::Value;

/// The servers, from `KUBECONFIG`, `MONGODB_URI` and `REDIS_URL` (set by `make test`).
pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the end-to-end tests through `make test`")
    })
}

pub fn project_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `MONGODB_URI` with its database replaced by `db`.
pub fn mongo_uri_for(db: &str) -> String {
    let uri = env("MONGODB_URI");
    let (base, query) = match uri.split_once('?') {
        Some((b, q)) => (b.to_string(), format!("?{q}")),
        None => (uri.clone(), String::new()),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_end = base[scheme_end..]
        .find('/')
        .map(|i| i + scheme_end)
        .unwrap_or(base.len());
    format!("{}/{db}{query}", &base[..host_end])
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// One test's world: a namespace, a database, the clients.
pub struct World {
    pub client: Client,
    pub ns: String,
    pub db_name: String,
    pub db: mongodb::Database,
    operator: Option<Child>,
    log_path: PathBuf,
    /// Where the running operator serves /metrics, /healthz, /readyz.
    pub http_port: u16,
}

/// How long a wait for what must happen may take. Generous: a loaded CI machine can be
/// several times slower than a developer's, and only a failing test waits it out.
pub const PATIENCE: Duration = Duration::from_secs(120);

impl World {
    pub async fn new(label: &str) -> World {
        ensure_crds();
        let client = Client::try_default()
            .await
            .expect("KUBECONFIG must point at a reachable API server");
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let suffix = format!(
            "{:x}{n}",
            std::process::id() ^ (Instant::now().elapsed().subsec_nanos() | 1)
        );
        let ns = format!("e2e-{label}-{suffix}");
        create_namespace(&client, &ns).await;
        let db_name = format!("e2e_{}", ns.replace('-', "_"));
        let mongo = mongodb::Client::with_uri_str(env("MONGODB_URI"))
            .await
            .expect("MONGODB_URI must be valid");
        let db = mongo.database(&db_name);
        let log_dir = project_dir().join("target/e2e-logs");
        std::fs::create_dir_all(&log_dir).unwrap();
        let log_path = log_dir.join(format!("{ns}.log"));
        World {
            client,
            ns,
            db_name,
            db,
            operator: None,
            log_path,
            http_port: 0,
        }
    }

    /// A world with its operator running and a Ready instance `lc` (`extra_spec` merged in).
    pub async fn with_instance(label: &str, extra_spec: Value) -> World {
        let mut w = World::new(label).await;
        w.start_operator();
        w.ready_instance("lc", extra_spec).await;
        w
    }

    /// Starts the operator binary, watching only this world's namespace.
    pub fn start_operator(&mut self) {
        self.start_operator_in(None);
    }

    /// Starts the operator watching `namespace` (`None`: this world's; a comma-separated list
    /// for several).
    pub fn start_operator_in(&mut self, namespace: Option<&str>) {
        self.spawn_operator(namespace, &[]);
    }

    /// Starts the operator binary with its output appended to this world's log: watching
    /// `namespace` (as [`World::start_operator_in`] reads it), with extra environment `vars`.
    fn spawn_operator(&mut self, namespace: Option<&str>, vars: &[(&str, &str)]) {
        assert!(self.operator.is_none(), "operator already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .unwrap();
        self.http_port = free_port();
        let mut cmd = operator_command(&self.http_port.to_string());
        match namespace {
            Some("") => {}
            Some(ns) => {
                cmd.arg("--namespace").arg(ns);
            }
            None => {
                cmd.arg("--namespace").arg(&self.ns);
            }
        }
        for (name, value) in vars {
            cmd.env(name, value);
        }
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        self.operator = Some(cmd.spawn().expect("the operator binary must start"));
    }

    pub fn stop_operator(&mut self) {
        if let Some(mut child) = self.operator.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The operator's log so far (it must never contain secrets).
    pub fn operator_log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// How many reconciles reached the pause point `point` so far (`LIBRECHAT_OPERATOR_PAUSE_AT`).
    pub fn times_paused_at(&self, point: &str) -> usize {
        self.operator_log()
            .matches(&format!("pause point {point} reached"))
            .count()
    }

    /// Waits until more than `before` reconciles reached the pause point `point`.
    pub async fn wait_paused_at(&self, point: &str, before: usize) {
        eventually(
            &format!("a reconcile held at pause point {point}"),
            || async { (self.times_paused_at(point) > before).then_some(()) },
        )
        .await;
    }

    pub fn mongo_uri(&self) -> String {
        mongo_uri_for(&self.db_name)
    }

    pub async fn secret(&self, name: &str, data: &[(&str, &str)]) {
        put_secret(&self.client, &self.ns, name, data).await;
    }

    /// A Secret with this world's MongoDB URI and Redis URI, and an instance using both.
    pub async fn ready_instance(&self, name: &str, extra_spec: Value) {
        self.apply_instance(name, &env("REDIS_URL"), extra_spec)
            .await;
        self.wait_condition("librechatinstances", name, "Ready", "True", None)
            .await;
    }

    /// Secret `lc-stores` (this world's MongoDB URI and `redis_uri`) and an instance using
    /// both; does not wait for it.
    pub async fn apply_instance(&self, name: &str, redis_uri: &str, extra_spec: Value) {
        self.secret(
            "lc-stores",
            &[("mongo", &self.mongo_uri()), ("redis", redis_uri)],
        )
        .await;
        self.apply_instance_of_stores(name, extra_spec).await;
    }

    /// An instance using the Secret `lc-stores` as it is (keys `mongo` and `redis`).
    pub async fn apply_instance_of_stores(&self, name: &str, extra_spec: Value) {
        let mut spec = serde_json::json!({
            "mongo": { "uriSecretRef": { "name": "lc-stores", "key": "mongo" } },
            "redis": { "uriSecretRef": { "name": "lc-stores", "key": "redis" } },
            "resyncPeriod": "3s",
        });
        merge(&mut spec, extra_spec);
        self.apply("LibreChatInstance", name, spec).await;
    }

    /// Server-side applies one of our objects in this world's namespace.
    pub async fn apply(&self, kind: &str, name: &str, spec: Value) {
        self.apply_in(&self.ns.clone(), kind, name, spec).await;
    }

    pub async fn apply_in(&self, ns: &str, kind: &str, name: &str, spec: Value) {
        let api = dynamic(&self.client, ns, kind);
        let obj = serde_json::json!({
            "apiVersion": "librechat.ai/v1alpha1", "kind": kind,
            "metadata": { "name": name, "namespace": ns }, "spec": spec,
        });
        api.patch(
            name,
            &PatchParams::apply("e2e-test").force(),
            &Patch::Apply(&obj),
        )
        .await
        .unwrap_or_else(|e| panic!("apply {kind} {name}: {e}"));
    }

    pub async fn delete(&self, kind: &str, name: &str) {
        delete_in(&self.client, &self.ns, kind, name).await;
    }

    pub async fn get(&self, plural: &str, name: &str) -> Option<Value> {
        get_in(&self.client, &self.ns, plural, name).await
    }

    /// Waits until condition `type_` has `status` (and `reason`, when given) for the current
    /// generation, returning the object.
    pub async fn wait_condition(
        &self,
        plural: &str,
        name: &str,
        type_: &str,
        status: &str,
        reason: Option<&str>,
    ) -> Value {
        wait_condition_in(&self.client, &self.ns, plural, name, type_, status, reason).await
    }

    /// The identity mark of the database instance `name` records (`status.databaseId`).
    pub async fn database_id(&self, name: &str) -> String {
        eventually("the instance to record its database", || async {
            let obj = self.get("librechatinstances", name).await?;
            let id = obj.pointer("/status/databaseId")?.as_str()?;
            Some(id.to_string())
        })
        .await
    }

    /// Confirms, as a person would, that instance `name` may move to the database `destination`
    /// names (its mark, or `unmarked:<database name>`): the annotation a refusal prints.
    pub async fn confirm_database_move(&self, name: &str, destination: &str) {
        let annotations = serde_json::json!({ "metadata": { "annotations": { "librechat.ai/replace-database": destination } } });
        dynamic(&self.client, &self.ns, "LibreChatInstance")
            .patch(name, &PatchParams::default(), &Patch::Merge(&annotations))
            .await
            .unwrap();
    }

    /// Waits for instance `name` to refuse its database (`DatabaseChanged`); returns it.
    pub async fn refused_database(&self, name: &str) -> Value {
        self.wait_condition(
            "librechatinstances",
            name,
            "Ready",
            "False",
            Some("DatabaseChanged"),
        )
        .await
    }

    /// Waits for instance `name` to refuse its database (`DatabaseChanged`) and confirms the
    /// move as printed there, as a person would; returns the value confirmed.
    pub async fn confirm_printed_database_move(&self, name: &str) -> String {
        let stopped = self.refused_database(name).await;
        let told = condition(&stopped, "Ready").unwrap().message;
        let destination = printed_destination(&told);
        self.confirm_database_move(name, &destination).await;
        destination
    }

    pub async fn wait_gone(&self, plural: &str, name: &str) {
        let ns = self.ns.clone();
        eventually(&format!("{plural}/{name} to be deleted"), || async {
            get_in(&self.client, &ns, plural, name)
                .await
                .is_none()
                .then_some(())
        })
        .await;
    }

    /// Deletes this world's object `kind`/`name` with its finalizers removed by hand, as a
    /// forced clean-up would (no cleanup of the operator's runs), and waits until it is gone.
    pub async fn remove_without_cleanup(&self, kind: &str, name: &str) {
        // Deleted first: a running operator adds no finalizer back to an object being deleted.
        self.delete(kind, name).await;
        // Already gone (nothing held it) is as good: `wait_gone` says if it is not.
        let _ = dynamic(&self.client, &self.ns, kind)
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({ "metadata": { "finalizers": null } })),
            )
            .await;
        self.wait_gone(&format!("{}s", kind.to_lowercase()), name)
            .await;
    }

    /// Deletes instance `name` and forces it out as `kubectl patch --type merge -p
    /// '{"metadata":{"finalizers":null}}'` would, then waits until the operator has seen it
    /// go: `dependent` (plural and name of an object pointing at it) reports InstanceNotFound.
    /// The operator knows instances only from its watch, so an object deleted before that
    /// watch has the deletion may still find the instance and clean up through it.
    pub async fn force_out_instance(&self, name: &str, dependent: (&str, &str)) {
        self.remove_without_cleanup("LibreChatInstance", name).await;
        let (plural, object) = dependent;
        self.wait_condition(plural, object, "Ready", "False", Some("InstanceNotFound"))
            .await;
    }

    pub fn users(&self) -> mongodb::Collection<Document> {
        self.db.collection("users")
    }

    pub async fn find_user(&self, email: &str) -> Option<Document> {
        self.users()
            .find_one(mongodb::bson::doc! { "email": email })
            .await
            .unwrap()
    }

    /// Reasons of the events recorded on an object.
    pub async fn event_reasons(&self, name: &str) -> Vec<String> {
        event_reasons_in(&self.client, &self.ns, name).await
    }

    pub async fn wait_event(&self, name: &str, reason: &str) {
        eventually(&format!("event {reason} on {name}"), || async {
            self.event_reasons(name)
                .await
                .iter()
                .any(|r| r == reason)
                .then_some(())
        })
        .await;
    }

    /// Runs LibreChat's own code (tests/contract/check.mjs) on this world's database.
    pub fn contract_check(&self, expectations: Value) {
        self.contract_check_with_env(expectations, &[]);
    }

    /// [`World::contract_check`] with extra environment for LibreChat's code, such as the
    /// `CREDS_KEY`/`CREDS_IV` its `decrypt` reads when loaded.
    pub fn contract_check_with_env(&self, expectations: Value, vars: &[(&str, &str)]) {
        let dir = project_dir().join("target/e2e-logs");
        let path = dir.join(format!(
            "{}-expect-{}.json",
            self.ns,
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::write(&path, serde_json::to_vec_pretty(&expectations).unwrap()).unwrap();
        let out = Command::new("node")
            .arg(project_dir().join("tests/contract/check.mjs"))
            .arg(&path)
            .env("MONGODB_URI", self.mongo_uri())
            .envs(vars.iter().copied())
            .output()
            .expect("node must be installed (make test installs it)");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "LibreChat's own code rejected what the operator wrote:\n{text}"
        );
        assert!(text.contains(" 0 failed"), "{text}");
    }
}

impl Drop for World {
    fn drop(&mut self) {
        self.stop_operator();
    }
}

/// The database a `DatabaseChanged` message prints as the annotation's value.
pub fn printed_destination(message: &str) -> String {
    let after = message
        .split("librechat.ai/replace-database=")
        .nth(1)
        .unwrap_or_else(|| panic!("no annotation printed: {message}"));
    after.split(['.', ' ']).next().unwrap().to_string()
}

pub fn merge(base: &mut Value, extra: Value) {
    if let (Value::Object(b), Value::Object(e)) = (base, extra) {
        for (k, v) in e {
            match b.get_mut(&k) {
                Some(existing) if existing.is_object() && v.is_object() => merge(existing, v),
                _ => {
                    b.insert(k, v);
                }
            }
        }
    }
}

fn plural_of(kind: &str) -> &'static str {
    match kind {
        "LibreChatInstance" | "librechatinstances" => "librechatinstances",
        "LibreChatUser" | "librechatusers" => "librechatusers",
        "UserBan" | "userbans" => "userbans",
        "UserInvite" | "userinvites" => "userinvites",
        "LibreChatGroup" | "librechatgroups" => "librechatgroups",
        "LibreChatRole" | "librechatroles" => "librechatroles",
        other => panic!("unknown kind {other}"),
    }
}

pub fn dynamic(client: &Client, ns: &str, kind: &str) -> Api<kube::api::DynamicObject> {
    let plural = plural_of(kind);
    let kind_name = match plural {
        "librechatinstances" => "LibreChatInstance",
        "librechatusers" => "LibreChatUser",
        "userbans" => "UserBan",
        "librechatgroups" => "LibreChatGroup",
        "librechatroles" => "LibreChatRole",
        _ => "UserInvite",
    };
    let gvk = kube::api::GroupVersionKind::gvk("librechat.ai", "v1alpha1", kind_name);
    let resource = kube::api::ApiResource::from_gvk_with_plural(&gvk, plural);
    Api::namespaced_with(client.clone(), ns, &resource)
}

pub async fn get_in(client: &Client, ns: &str, kind: &str, name: &str) -> Option<Value> {
    dynamic(client, ns, kind)
        .get_opt(name)
        .await
        .unwrap()
        .map(|o| serde_json::to_value(o).unwrap())
}

pub async fn delete_in(client: &Client, ns: &str, kind: &str, name: &str) {
    let _ = dynamic(client, ns, kind)
        .delete(name, &DeleteParams::default())
        .await;
}

pub fn conditions(obj: &Value) -> Vec<Condition> {
    serde_json::from_value(
        obj.pointer("/status/conditions")
            .cloned()
            .unwrap_or(Value::Array(vec![])),
    )
    .unwrap_or_default()
}

pub fn condition(obj: &Value, type_: &str) -> Option<Condition> {
    conditions(obj).into_iter().find(|c| c.type_ == type_)
}

pub async fn wait_condition_in(
    client: &Client,
    ns: &str,
    plural: &str,
    name: &str,
    type_: &str,
    status: &str,
    reason: Option<&str>,
) -> Value {
    let what = format!(
        "{plural}/{name} in {ns} to have {type_}={status} {}",
        reason.unwrap_or("")
    );
    let deadline = Instant::now() + PATIENCE;
    let mut last = Value::Null;
    loop {
        if let Some(obj) = get_in(client, ns, plural, name).await {
            let generation = obj.pointer("/metadata/generation").and_then(Value::as_i64);
            last = obj.pointer("/status").cloned().unwrap_or_default();
            if let Some(c) = condition(&obj, type_) {
                if c.status == status
                    && reason.is_none_or(|r| c.reason == r)
                    && c.observed_generation == generation
                {
                    return obj;
                }
            }
        }
        if Instant::now() > deadline {
            panic!(
                "timed out waiting for {what}; last status: {}",
                serde_json::to_string_pretty(&last).unwrap()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Polls `probe` until it returns `Some`, for up to [`PATIENCE`].
pub async fn eventually<T, F, Fut>(what: &str, probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    eventually_or_none(probe)
        .await
        .unwrap_or_else(|| panic!("timed out waiting for {what}"))
}

pub async fn eventually_or_none<T, F, Fut>(probe: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    within(PATIENCE, probe).await
}

/// Polls `probe` until it returns `Some`, for at most `limit`.
pub async fn eventually_within<T, F, Fut>(limit: Duration, probe: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    within(limit, probe).await
}

/// Polls `probe` until it returns `Some`, for at most `limit`.
pub async fn within<T, F, Fut>(limit: Duration, mut probe: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = probe().await {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

pub async fn create_namespace(client: &Client, ns: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    let obj = Namespace {
        metadata: ObjectMeta {
            name: Some(ns.to_string()),
            ..Default::default()
        },
        ..Default::default()
    };
    match api.create(&PostParams::default(), &obj).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => panic!("create namespace {ns}: {e}"),
    }
}

pub async fn put_secret(client: &Client, ns: &str, name: &str, data: &[(&str, &str)]) {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let data: BTreeMap<String, ByteString> = data
        .iter()
        .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
        .collect();
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(ns.to_string()),
            ..Default::default()
        },
        data: Some(data),
        ..Default::default()
    };
    match api.get_opt(name).await.unwrap() {
        Some(_) => {
            api.replace(
                name,
                &PostParams::default(),
                &Secret {
                    metadata: ObjectMeta {
                        resource_version: None,
                        ..secret.metadata.clone()
                    },
                    ..secret
                },
            )
            .await
            .unwrap();
        }
        None => {
            api.create(&PostParams::default(), &secret).await.unwrap();
        }
    }
}

/// Installs `crds/` once per test process, as a user would: `kubectl apply -f crds/`.
pub fn ensure_crds() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let out = Command::new("kubectl")
            .args(["apply", "-f"])
            .arg(project_dir().join("crds"))
            .output()
            .expect("kubectl must be on PATH");
        assert!(
            out.status.success(),
            "kubectl apply -f crds/ failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = Command::new("kubectl")
            .args([
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                "crd/librechatinstances.librechat.ai",
                "crd/librechatusers.librechat.ai",
                "crd/userbans.librechat.ai",
                "crd/userinvites.librechat.ai",
                "crd/librechatgroups.librechat.ai",
                "crd/librechatroles.librechat.ai",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "CRDs not established: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

/// Starts a private MongoDB-wire server on `port` (for outage tests); returns its data dir.
pub fn start_private_mongo(port: u16, dir: &std::path::Path) {
    let script = std::env::var("LCO_SECANTUS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| project_dir().join("tests/env/secantus.sh"));
    let out = Command::new("bash")
        .arg(script)
        .arg("start")
        .arg(port.to_string())
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "private SecantusDB did not start: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn stop_private_mongo(dir: &std::path::Path) {
    let script = std::env::var("LCO_SECANTUS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| project_dir().join("tests/env/secantus.sh"));
    let _ = Command::new("bash")
        .arg(script)
        .arg("stop")
        .arg(dir)
        .output();
}

/// The operator binary with the tests' settings: quick resyncs, its HTTP endpoints on `port`.
pub fn operator_command(port: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_librechat-operator"));
    cmd.arg("run")
        .arg("--resync-period")
        .arg("3s")
        .arg("--http-addr")
        .arg(format!("127.0.0.1:{port}"));
    cmd.env("RUST_LOG", "info,librechat_operator=debug,kube=warn");
    cmd
}

/// A plain HTTP/1.0 GET on 127.0.0.1, returning status code and body.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n");
    std::io::Write::write_all(&mut stream, request.as_bytes()).ok()?;
    let mut response = String::new();
    std::io::Read::read_to_string(&mut stream, &mut response).ok()?;
    let code = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((code, body))
}

/// The value of one series (`name{labels}` as the operator writes it) of the operator's
/// /metrics; 0 while it is absent.
pub fn metric_value(port: u16, series: &str) -> u64 {
    let Some((_, text)) = http_get(port, "/metrics") else {
        return 0;
    };
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// A TCP port nobody listens on right now.
/// A connection to the test bed's Redis (`REDIS_URL`).
pub async fn redis() -> redis::aio::MultiplexedConnection {
    redis::Client::open(env("REDIS_URL"))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl World {
    /// Starts the operator watching this world's namespace with extra environment variables
    /// (a crash point, say).
    pub fn start_operator_with_env(&mut self, vars: &[(&str, &str)]) {
        self.spawn_operator(None, vars);
    }

    /// [`World::start_operator_in`] with extra environment `vars`.
    pub fn start_operator_in_with_env(&mut self, namespace: &str, vars: &[(&str, &str)]) {
        self.spawn_operator(Some(namespace), vars);
    }

    /// Waits up to `limit` for the running operator to exit by itself; its exit code (`None`
    /// when it is still running, or was ended by a signal).
    pub async fn wait_operator_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        loop {
            let child = self.operator.as_mut()?;
            if let Some(status) = child.try_wait().unwrap() {
                self.operator = None;
                return status.code();
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Reasons of the events recorded on object `name` in namespace `ns`.
pub async fn event_reasons_in(client: &Client, ns: &str, name: &str) -> Vec<String> {
    let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), ns);
    let list = api.list(&Default::default()).await.unwrap();
    list.items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .filter_map(|e| e.reason)
        .collect()
}

/// Response headers (name, value), in order.
pub type Headers = Vec<(String, String)>;

/// Like [`http_get`], also returning the response's headers.
pub fn http_get_with_headers(port: u16, path: &str) -> Option<(u16, Headers, String)> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n");
    std::io::Write::write_all(&mut stream, request.as_bytes()).ok()?;
    let mut response = String::new();
    std::io::Read::read_to_string(&mut stream, &mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let mut lines = head.split("\r\n");
    let code = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Some((code, headers, body.to_string()))
}

/// A private redis-server on `port`, stopped when dropped.
pub struct PrivateRedis(std::process::Child);

impl PrivateRedis {
    pub fn start(port: u16) -> PrivateRedis {
        PrivateRedis::start_with(port, &[])
    }

    /// One that refuses every command until the client authenticates with `password`.
    pub fn start_requiring(port: u16, password: &str) -> PrivateRedis {
        PrivateRedis::start_with(port, &["--requirepass", password])
    }

    fn start_with(port: u16, extra: &[&str]) -> PrivateRedis {
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(extra)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server must be installed (tests/env/install.sh)");
        PrivateRedis(child)
    }
}

impl PrivateRedis {
    /// A private redis-server speaking TLS only, on `port`, with a self-signed certificate made
    /// in `dir` for the occasion.
    pub fn start_tls(port: u16, dir: &std::path::Path) -> PrivateRedis {
        let (cert, key) = (dir.join("redis.crt"), dir.join("redis.key"));
        let made = std::process::Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args(["-subj", "/CN=localhost", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl must be installed");
        assert!(made.success(), "openssl could not make a certificate");
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                "0",
                "--tls-port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--tls-auth-clients",
                "no",
            ])
            .arg("--tls-cert-file")
            .arg(&cert)
            .arg("--tls-key-file")
            .arg(&key)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server must be installed (tests/env/install.sh)");
        PrivateRedis(child)
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
