//! Writing status: only when it changed, so that a resync of a settled object writes nothing.

use kube::api::{Api, Patch, PatchParams};
use kube::Resource;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Merge-patches `status` onto `obj` if it differs from what the object already shows.
/// Returns whether a write happened.
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

/// Feeds the `managed_objects` gauge from the status about to be shown.
fn record_readiness<K: Resource<DynamicType = ()>, S: Serialize>(obj: &K, status: &S) {
    let ready = serde_json::to_value(status).ok().and_then(|v| {
        v.get("conditions")?
            .as_array()?
            .iter()
            .find(|c| c.get("type").and_then(|t| t.as_str()) == Some("Ready"))
            .map(|c| c.get("status").and_then(|s| s.as_str()) == Some("True"))
    });
    let meta = obj.meta();
    let key = format!(
        "{}/{}",
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default()
    );
    crate::metrics::global().set_readiness(&K::kind(&()), &key, Some(ready.unwrap_or(false)));
}

/// RFC 3339 now, for status timestamps.
pub fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .unwrap_or_else(|_| jiff::Timestamp::now())
        .to_string()
}
