//! `librechat-operator validate`: the controller's own checks, without a cluster.

use serde::Deserialize;

use super::instance::DEFAULT_MIN_PASSWORD_LENGTH;
use super::{LibreChatUser, GROUP};

/// One object's verdict.
pub struct Report {
    pub object: String,
    pub problems: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    #[error("not valid YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
}

/// Validates every document of a multi-document YAML stream that is one of our kinds;
/// other kinds are skipped. Instance-dependent rules use LibreChat's defaults.
pub fn validate_manifests(text: &str) -> Result<Vec<Report>, OfflineError> {
    let mut reports = Vec::new();
    for document in serde_yaml::Deserializer::from_str(text) {
        let value = serde_yaml::Value::deserialize(document)?;
        if value.is_null() {
            continue;
        }
        let api_version = value
            .get("apiVersion")
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        let kind = value
            .get("kind")
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        if !api_version.starts_with(&format!("{GROUP}/")) {
            continue;
        }
        let name = value
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(|n| n.as_str())
            .unwrap_or("<unnamed>");
        let object = format!("{kind}/{name}");
        let problems = match kind {
            "LibreChatUser" => match serde_yaml::from_value::<LibreChatUser>(value.clone()) {
                Ok(user) => user.spec.problems(DEFAULT_MIN_PASSWORD_LENGTH),
                Err(e) => vec![format!("does not match the schema: {e}")],
            },
            _ => Vec::new(),
        };
        reports.push(Report { object, problems });
    }
    Ok(reports)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_bad_users_and_skips_other_kinds() {
        let text = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: x}
---
apiVersion: librechat.ai/v1alpha1
kind: LibreChatUser
metadata: {name: good}
spec: {instanceRef: {name: lc}, email: a@example.com}
---
apiVersion: librechat.ai/v1alpha1
kind: LibreChatUser
metadata: {name: bad}
spec: {instanceRef: {name: lc}, email: not-an-email, username: '{"$ne": ""}'}
"#;
        let reports = validate_manifests(text).unwrap();
        assert_eq!(reports.len(), 2);
        assert!(reports[0].problems.is_empty());
        assert_eq!(reports[1].problems.len(), 2, "{:?}", reports[1].problems);
    }
}
