//! Prometheus metrics, served on `/metrics` (OpenMetrics text format). One registry for the
//! process; the LibreChat half reports its MongoDB, Redis and bcrypt work here without knowing
//! who reads it. Label values are kinds, reasons, store verbs and the version: never names of
//! accounts, Secrets or anything a tenant chose.

use std::collections::{HashMap, HashSet};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    pub kind: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreLabels {
    pub store: String,
    pub verb: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreVerbLabels {
    pub store: String,
    pub verb: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiRequestLabels {
    pub verb: String,
    pub resource: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SecretUseLabels {
    /// `password`, `plugin`, `instance` (connection strings, CREDS_KEY, SMTP), `invite` or
    /// `verification`.
    pub secret_use: String,
}

/// What a Secret was read for.
#[derive(Clone, Copy, Debug)]
pub enum SecretUse {
    /// A LibreChatUser's password (declared or generated).
    Password,
    /// A LibreChatUser's plugin credentials.
    Plugin,
    /// An instance's connection strings, credential keys or SMTP login.
    Instance,
    /// An invite's link Secret.
    Invite,
    /// A LibreChatUser's verification link Secret.
    Verification,
}

impl SecretUse {
    fn label(self) -> &'static str {
        match self {
            SecretUse::Password => "password",
            SecretUse::Plugin => "plugin",
            SecretUse::Instance => "instance",
            SecretUse::Invite => "invite",
            SecretUse::Verification => "verification",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    pub version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReadinessLabels {
    pub kind: String,
    pub ready: String,
}

type HistogramFamily = Family<KindLabels, Histogram, fn() -> Histogram>;
type StoreHistogramFamily = Family<StoreVerbLabels, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    reconciles: Family<KindLabels, Counter>,
    failures: Family<FailureLabels, Counter>,
    duration: HistogramFamily,
    in_flight: Family<KindLabels, Gauge>,
    in_backoff: Family<KindLabels, Gauge>,
    store_operations: Family<StoreLabels, Counter>,
    store_duration: StoreHistogramFamily,
    bcrypt_hashes: Counter,
    api_requests: Family<ApiRequestLabels, Counter>,
    secret_reads: Family<SecretUseLabels, Counter>,
    managed: Family<ReadinessLabels, Gauge>,
    not_ready: Family<FailureLabels, Gauge>,
    blocked: Family<KindLabels, Gauge>,
    leader: Gauge,
    /// Readiness (and the reason when not Ready) of every object seen, and the objects whose
    /// deletion is blocked, to keep their gauges exact.
    objects: Mutex<Objects>,
}

#[derive(Default)]
struct Objects {
    readiness: HashMap<(String, String), (bool, String)>,
    blocked: HashSet<(String, String)>,
}

fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

/// 0.5 ms to about 8 s: a store call is bounded by its own, shorter deadline.
fn store_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 15))
}

/// What `/metrics` serves: the text encoder writes OpenMetrics (typed families, `# EOF`).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics.
pub fn global() -> &'static Metrics {
    &METRICS
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("librechat_operator");
        let reconciles = Family::<KindLabels, Counter>::default();
        let failures = Family::<FailureLabels, Counter>::default();
        let duration: HistogramFamily = Family::new_with_constructor(duration_histogram);
        let in_flight = Family::<KindLabels, Gauge>::default();
        let in_backoff = Family::<KindLabels, Gauge>::default();
        let store_operations = Family::<StoreLabels, Counter>::default();
        let store_duration: StoreHistogramFamily = Family::new_with_constructor(store_histogram);
        let bcrypt_hashes = Counter::default();
        let api_requests = Family::<ApiRequestLabels, Counter>::default();
        let secret_reads = Family::<SecretUseLabels, Counter>::default();
        let managed = Family::<ReadinessLabels, Gauge>::default();
        let not_ready = Family::<FailureLabels, Gauge>::default();
        let blocked = Family::<KindLabels, Gauge>::default();
        let leader = Gauge::default();
        let build_info = Family::<BuildLabels, Gauge>::default();
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").into(),
            })
            .set(1);
        registry.register("build_info", "The operator's version; always 1", build_info);
        registry.register(
            "leader",
            "1 while this replica leads and runs the controllers, 0 on standby",
            leader.clone(),
        );
        registry.register("reconciles", "Reconciles run, by kind", reconciles.clone());
        registry.register(
            "reconcile_failures",
            "Reconciles that failed and will be retried, by kind and reason",
            failures.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time a reconcile took, by kind",
            duration.clone(),
        );
        registry.register(
            "reconciles_in_flight",
            "Reconciles running now, by kind",
            in_flight.clone(),
        );
        registry.register(
            "objects_in_backoff",
            "Objects waiting out a retry backoff after failed reconciles, by kind",
            in_backoff.clone(),
        );
        registry.register(
            "store_operations",
            "MongoDB commands and Redis calls, by store, verb and outcome",
            store_operations.clone(),
        );
        registry.register(
            "store_operation_duration_seconds",
            "Time a MongoDB command or Redis call took, by store and verb",
            store_duration.clone(),
        );
        registry.register(
            "bcrypt_hashes",
            "Passwords hashed with bcrypt (cost 10)",
            bcrypt_hashes.clone(),
        );
        registry.register(
            "api_requests",
            "Requests the operator sent to the Kubernetes API server, by verb and resource \
             (its watches' lists and re-watches included)",
            api_requests.clone(),
        );
        registry.register(
            "secret_reads",
            "Secrets read for the values they hold, by what for; the metadata watch that tells \
             their versions is not counted",
            secret_reads.clone(),
        );
        registry.register(
            "managed_objects",
            "Objects of each kind, by readiness",
            managed.clone(),
        );
        registry.register(
            "not_ready_objects",
            "Objects that are not Ready, by kind and the reason of their Ready condition",
            not_ready.clone(),
        );
        registry.register(
            "deletions_blocked",
            "Objects being deleted whose cleanup is refused until a person acts, by kind",
            blocked.clone(),
        );
        Metrics {
            registry,
            reconciles,
            failures,
            duration,
            in_flight,
            in_backoff,
            store_operations,
            store_duration,
            bcrypt_hashes,
            api_requests,
            secret_reads,
            managed,
            not_ready,
            blocked,
            leader,
            objects: Mutex::default(),
        }
    }

    /// The registry in the OpenMetrics text format (ending with `# EOF`).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    /// Starts timing a reconcile of `kind`, counted in flight until the timer drops, when its
    /// duration is recorded.
    pub fn reconcile_started(&'static self, kind: &str) -> ReconcileTimer {
        let labels = KindLabels { kind: kind.into() };
        self.reconciles.get_or_create(&labels).inc();
        self.in_flight.get_or_create(&labels).inc();
        ReconcileTimer {
            kind: kind.into(),
            start: Instant::now(),
            metrics: self,
        }
    }

    pub fn reconcile_failed(&self, kind: &str, reason: &str) {
        self.failures
            .get_or_create(&FailureLabels {
                kind: kind.into(),
                reason: reason.into(),
            })
            .inc();
    }

    /// Counts a store call and records how long it took.
    pub fn store_operation(&self, store: &str, verb: &str, ok: bool, took: Duration) {
        let outcome = if ok { "success" } else { "failure" };
        self.store_operations
            .get_or_create(&StoreLabels {
                store: store.into(),
                verb: verb.into(),
                outcome: outcome.into(),
            })
            .inc();
        self.store_duration
            .get_or_create(&StoreVerbLabels {
                store: store.into(),
                verb: verb.into(),
            })
            .observe(took.as_secs_f64());
    }

    /// Counts a request to the API server.
    pub fn api_request(&self, verb: &str, resource: &str) {
        self.api_requests
            .get_or_create(&ApiRequestLabels {
                verb: verb.into(),
                resource: resource.into(),
            })
            .inc();
    }

    /// Whether this replica leads (runs the controllers).
    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// How many objects of `kind` wait out a backoff.
    pub fn set_in_backoff(&self, kind: &str, count: usize) {
        self.in_backoff
            .get_or_create(&KindLabels { kind: kind.into() })
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// Records whether the deletion of the object `key` of `kind` is blocked.
    pub fn set_deletion_blocked(&self, kind: &str, key: &str, blocked: bool) {
        let mut objects = self.objects.lock().unwrap_or_else(|p| p.into_inner());
        let id = (kind.to_string(), key.to_string());
        let gauge = self
            .blocked
            .get_or_create(&KindLabels { kind: kind.into() });
        if blocked {
            if objects.blocked.insert(id) {
                gauge.inc();
            }
        } else if objects.blocked.remove(&id) {
            gauge.dec();
        }
    }

    pub fn bcrypt_hashed(&self) {
        self.bcrypt_hashes.inc();
    }

    pub fn secret_read(&self, secret_use: SecretUse) {
        let labels = SecretUseLabels {
            secret_use: secret_use.label().into(),
        };
        self.secret_reads.get_or_create(&labels).inc();
    }

    /// Records whether the object `key` of `kind` is Ready and, when it is not, the reason of
    /// its Ready condition (`None`: the object is gone).
    pub fn set_readiness(&self, kind: &str, key: &str, ready: Option<(bool, &str)>) {
        let mut objects = self.objects.lock().unwrap_or_else(|p| p.into_inner());
        let id = (kind.to_string(), key.to_string());
        let previous = match ready {
            Some((r, reason)) => objects.readiness.insert(id, (r, reason.to_string())),
            None => objects.readiness.remove(&id),
        };
        if previous.as_ref().map(|(r, why)| (*r, why.as_str())) == ready {
            return;
        }
        // Both series of the kind exist from its first object on, at 0 when none is so.
        for r in [true, false] {
            drop(self.managed.get_or_create(&ReadinessLabels {
                kind: kind.into(),
                ready: r.to_string(),
            }));
        }
        let counts = |ready: bool, reason: &str| {
            (
                self.managed.get_or_create(&ReadinessLabels {
                    kind: kind.into(),
                    ready: ready.to_string(),
                }),
                (!ready).then(|| {
                    self.not_ready.get_or_create(&FailureLabels {
                        kind: kind.into(),
                        reason: reason.into(),
                    })
                }),
            )
        };
        if let Some((r, reason)) = &previous {
            let (managed, not_ready) = counts(*r, reason);
            managed.dec();
            if let Some(g) = not_ready {
                g.dec();
            }
        }
        if let Some((r, reason)) = ready {
            let (managed, not_ready) = counts(r, reason);
            managed.inc();
            if let Some(g) = not_ready {
                g.inc();
            }
        }
    }
}

/// Records a reconcile's duration when dropped, however the reconcile ended.
pub struct ReconcileTimer {
    kind: String,
    start: Instant,
    metrics: &'static Metrics,
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        let labels = KindLabels {
            kind: self.kind.clone(),
        };
        self.metrics
            .duration
            .get_or_create(&labels)
            .observe(self.start.elapsed().as_secs_f64());
        self.metrics.in_flight.get_or_create(&labels).dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh() -> &'static Metrics {
        Box::leak(Box::new(Metrics::new()))
    }

    #[test]
    fn families_appear_in_the_text_format() {
        let m = fresh();
        drop(m.reconcile_started("LibreChatUser"));
        m.reconcile_failed("LibreChatUser", "mongo");
        m.store_operation("mongo", "find", true, Duration::from_millis(3));
        m.bcrypt_hashed();
        m.secret_read(SecretUse::Password);
        m.set_readiness("LibreChatUser", "ns/a", Some((true, "Reconciled")));
        m.set_readiness("LibreChatUser", "ns/b", Some((false, "Conflict")));
        m.set_readiness("LibreChatUser", "ns/b", None);
        let text = m.encode();
        for needle in [
            "librechat_operator_reconciles_total{kind=\"LibreChatUser\"}",
            "librechat_operator_reconcile_failures_total{kind=\"LibreChatUser\",reason=\"mongo\"} 1",
            "librechat_operator_reconcile_duration_seconds_bucket",
            "librechat_operator_store_operations_total{store=\"mongo\",verb=\"find\",outcome=\"success\"}",
            "librechat_operator_bcrypt_hashes_total",
            "librechat_operator_secret_reads_total{secret_use=\"password\"} 1",
            "librechat_operator_managed_objects{kind=\"LibreChatUser\",ready=\"true\"} 1",
            "librechat_operator_managed_objects{kind=\"LibreChatUser\",ready=\"false\"} 0",
            "librechat_operator_not_ready_objects{kind=\"LibreChatUser\",reason=\"Conflict\"} 0",
        ] {
            assert!(text.contains(needle), "{needle} missing from:\n{text}");
        }
    }

    #[test]
    fn the_encoding_is_openmetrics_with_types_and_labels() {
        let m = fresh();
        m.set_leader(true);
        let timer = m.reconcile_started("UserBan");
        m.store_operation("redis", "ping", false, Duration::from_millis(2));
        m.set_in_backoff("UserBan", 2);
        let text = m.encode();
        for needle in [
            "# TYPE librechat_operator_leader gauge",
            "librechat_operator_leader 1",
            "# TYPE librechat_operator_build_info gauge",
            &format!(
                "librechat_operator_build_info{{version=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION")
            ),
            "# TYPE librechat_operator_reconciles_in_flight gauge",
            "librechat_operator_reconciles_in_flight{kind=\"UserBan\"} 1",
            "# TYPE librechat_operator_objects_in_backoff gauge",
            "librechat_operator_objects_in_backoff{kind=\"UserBan\"} 2",
            "# TYPE librechat_operator_store_operation_duration_seconds histogram",
            "librechat_operator_store_operation_duration_seconds_count{store=\"redis\",verb=\"ping\"} 1",
            "librechat_operator_store_operation_duration_seconds_bucket{le=\"0.002\",store=\"redis\",verb=\"ping\"} 1",
            "# TYPE librechat_operator_reconciles counter",
        ] {
            assert!(text.contains(needle), "{needle} missing from:\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
        drop(timer);
        m.set_leader(false);
        let text = m.encode();
        assert!(text.contains("librechat_operator_reconciles_in_flight{kind=\"UserBan\"} 0"));
        assert!(text.contains("librechat_operator_leader 0"));
        assert!(text.contains("# TYPE librechat_operator_reconcile_duration_seconds histogram"));
        assert!(text
            .contains("librechat_operator_reconcile_duration_seconds_count{kind=\"UserBan\"} 1"));
    }

    #[test]
    fn not_ready_objects_follow_the_reason_and_blocked_deletions_are_counted_once() {
        let m = fresh();
        let gauge = |text: &str, series: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(series)?.trim().parse::<i64>().ok())
        };
        m.set_readiness("UserInvite", "ns/a", Some((false, "InstanceNotReady")));
        m.set_readiness("UserInvite", "ns/b", Some((false, "InstanceNotReady")));
        m.set_readiness("UserInvite", "ns/a", Some((false, "Expired")));
        m.set_readiness("UserInvite", "ns/a", Some((false, "Expired")));
        m.set_deletion_blocked("UserInvite", "ns/b", true);
        m.set_deletion_blocked("UserInvite", "ns/b", true);
        m.set_deletion_blocked("UserInvite", "ns/c", false);
        let text = m.encode();
        let not_ready = |reason: &str| {
            format!(
                "librechat_operator_not_ready_objects{{kind=\"UserInvite\",reason=\"{reason}\"}}"
            )
        };
        assert_eq!(gauge(&text, &not_ready("InstanceNotReady")), Some(1));
        assert_eq!(gauge(&text, &not_ready("Expired")), Some(1));
        assert!(text.contains("# TYPE librechat_operator_not_ready_objects gauge"));
        assert!(text.contains("# TYPE librechat_operator_deletions_blocked gauge"));
        let blocked = "librechat_operator_deletions_blocked{kind=\"UserInvite\"}";
        assert_eq!(gauge(&text, blocked), Some(1));

        m.set_readiness("UserInvite", "ns/a", Some((true, "Reconciled")));
        m.set_readiness("UserInvite", "ns/b", None);
        m.set_deletion_blocked("UserInvite", "ns/b", false);
        let text = m.encode();
        assert_eq!(gauge(&text, &not_ready("InstanceNotReady")), Some(0));
        assert_eq!(gauge(&text, &not_ready("Expired")), Some(0));
        assert_eq!(gauge(&text, blocked), Some(0));
        assert_eq!(
            gauge(
                &text,
                "librechat_operator_managed_objects{kind=\"UserInvite\",ready=\"true\"}"
            ),
            Some(1)
        );
        assert_eq!(
            gauge(
                &text,
                "librechat_operator_managed_objects{kind=\"UserInvite\",ready=\"false\"}"
            ),
            Some(0)
        );
    }
}
