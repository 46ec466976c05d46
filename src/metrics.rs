//! Prometheus metrics, served on `/metrics` (text format). One registry for the process; the
//! LibreChat half reports its MongoDB, Redis and bcrypt work here without knowing who reads it.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::Instant;

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
pub struct ReadinessLabels {
    pub kind: String,
    pub ready: String,
}

type HistogramFamily = Family<KindLabels, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    reconciles: Family<KindLabels, Counter>,
    failures: Family<FailureLabels, Counter>,
    duration: HistogramFamily,
    store_operations: Family<StoreLabels, Counter>,
    bcrypt_hashes: Counter,
    managed: Family<ReadinessLabels, Gauge>,
    /// Readiness of every object seen, to keep the `managed_objects` gauge exact.
    readiness: Mutex<HashMap<(String, String), bool>>,
}

fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

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
        let store_operations = Family::<StoreLabels, Counter>::default();
        let bcrypt_hashes = Counter::default();
        let managed = Family::<ReadinessLabels, Gauge>::default();
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
            "store_operations",
            "MongoDB commands and Redis calls, by store, verb and outcome",
            store_operations.clone(),
        );
        registry.register(
            "bcrypt_hashes",
            "Passwords hashed with bcrypt (cost 10)",
            bcrypt_hashes.clone(),
        );
        registry.register(
            "managed_objects",
            "Objects of each kind, by readiness",
            managed.clone(),
        );
        Metrics {
            registry,
            reconciles,
            failures,
            duration,
            store_operations,
            bcrypt_hashes,
            managed,
            readiness: Mutex::default(),
        }
    }

    /// The registry in Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    /// Starts timing a reconcile of `kind`; the count and duration are recorded when it drops.
    pub fn reconcile_started(&'static self, kind: &str) -> ReconcileTimer {
        self.reconciles
            .get_or_create(&KindLabels { kind: kind.into() })
            .inc();
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

    pub fn store_operation(&self, store: &str, verb: &str, ok: bool) {
        let outcome = if ok { "success" } else { "failure" };
        self.store_operations
            .get_or_create(&StoreLabels {
                store: store.into(),
                verb: verb.into(),
                outcome: outcome.into(),
            })
            .inc();
    }

    pub fn bcrypt_hashed(&self) {
        self.bcrypt_hashes.inc();
    }

    /// Records whether the object `key` of `kind` is Ready (`None`: it is gone).
    pub fn set_readiness(&self, kind: &str, key: &str, ready: Option<bool>) {
        let Ok(mut map) = self.readiness.lock() else {
            return;
        };
        match ready {
            Some(r) => map.insert((kind.to_string(), key.to_string()), r),
            None => map.remove(&(kind.to_string(), key.to_string())),
        };
        for ready in [true, false] {
            let n = map
                .iter()
                .filter(|((k, _), r)| k == kind && **r == ready)
                .count();
            self.managed
                .get_or_create(&ReadinessLabels {
                    kind: kind.into(),
                    ready: ready.to_string(),
                })
                .set(n as i64);
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
        self.metrics
            .duration
            .get_or_create(&KindLabels {
                kind: self.kind.clone(),
            })
            .observe(self.start.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_appear_in_the_text_format() {
        let m = global();
        drop(m.reconcile_started("LibreChatUser"));
        m.reconcile_failed("LibreChatUser", "mongo");
        m.store_operation("mongo", "find", true);
        m.bcrypt_hashed();
        m.set_readiness("LibreChatUser", "ns/a", Some(true));
        m.set_readiness("LibreChatUser", "ns/b", Some(false));
        m.set_readiness("LibreChatUser", "ns/b", None);
        let text = m.encode();
        for needle in [
            "librechat_operator_reconciles_total{kind=\"LibreChatUser\"}",
            "librechat_operator_reconcile_failures_total{kind=\"LibreChatUser\",reason=\"mongo\"} 1",
            "librechat_operator_reconcile_duration_seconds_bucket",
            "librechat_operator_store_operations_total{store=\"mongo\",verb=\"find\",outcome=\"success\"}",
            "librechat_operator_bcrypt_hashes_total",
            "librechat_operator_managed_objects{kind=\"LibreChatUser\",ready=\"false\"} 0",
        ] {
            assert!(text.contains(needle), "{needle} missing from:\n{text}");
        }
    }
}
