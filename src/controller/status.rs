//! Writing status: only when it changed, so that a resync of a settled object writes nothing.

use kube::api::{Api, Patch, PatchParams};
use kube::Resource;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Merge-patches `status` onto `obj` if it differs from what the object already shows.
/// Returns whether a write happened. A merge patch keeps what a key it leaves out holds, so
/// status lists are always serialized (never skipped when empty): an emptied list (pending
/// members who registered, grants taken out) must reach the object.
pub async fn write_status<K, S>(
    api: &Api<K>,
    obj: &K,
    current: Option<&S>,
    status: &S,
) -> Result<bool, kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    S: Serialize + PartialEq,
{
    record_readiness(obj, status);
    if current == Some(status) {
        return Ok(false);
    }
    let name = obj.meta().name.clone().unwrap_or_default();
    let patch = serde_json::json!({ "status": status });
    api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(true)
}

/// Feeds the `managed_objects` and `not_ready_objects` gauges from the status about to be shown.
fn record_readiness<K: Resource<DynamicType = ()>, S: Serialize>(obj: &K, status: &S) {
    let value = serde_json::to_value(status).ok();
    let ready = value
        .as_ref()
        .and_then(|v| v.get("conditions")?.as_array())
        .and_then(|c| {
            c.iter()
                .find(|c| c.get("type").and_then(|t| t.as_str()) == Some("Ready"))
        });
    let ok = ready.and_then(|c| c.get("status")?.as_str()) == Some("True");
    let reason = ready
        .and_then(|c| c.get("reason")?.as_str())
        .filter(|r| !r.is_empty())
        .unwrap_or("Unknown");
    let meta = obj.meta();
    let key = format!(
        "{}/{}",
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default()
    );
    crate::metrics::global().set_readiness(&K::kind(&()), &key, Some((ok, reason)));
}

/// RFC 3339 of a time given in epoch milliseconds (as the store reports them), for status.
pub fn rfc3339_from_millis(ms: i64) -> Option<String> {
    jiff::Timestamp::from_millisecond(ms)
        .ok()
        .map(|t| t.to_string())
}

/// RFC 3339 now, for status timestamps.
pub fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .unwrap_or_else(|_| jiff::Timestamp::now())
        .to_string()
}
