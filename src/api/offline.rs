//! `librechat-operator validate`: the controller's own checks, without a cluster.

use serde::Deserialize;

use super::instance::DEFAULT_MIN_PASSWORD_LENGTH;
use super::{LibreChatInstance, LibreChatUser, UserBan, UserInvite, GROUP};

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
            "LibreChatUser" => {
                checked::<LibreChatUser>(&value, |u| u.spec.problems(DEFAULT_MIN_PASSWORD_LENGTH))
            }
            "UserBan" => checked::<UserBan>(&value, |b| b.spec.problems(None)),
            "UserInvite" => {
                checked::<UserInvite>(&value, |i| i.spec.lifetime().err().unwrap_or_default())
            }
            "LibreChatInstance" => checked::<LibreChatInstance>(&value, |i| i.spec.problems()),
            other => vec![format!("unknown kind '{other}' in group {GROUP}")],
        };
        reports.push(Report { object, problems });
    }
    Ok(reports)
}

/// Parses `value` as `K` (schema errors are problems too) and runs `check` on it.
fn checked<K: serde::de::DeserializeOwned>(
    value: &serde_yaml::Value,
    check: impl Fn(&K) -> Vec<String>,
) -> Vec<String> {
    match serde_yaml::from_value::<K>(value.clone()) {
        Ok(obj) => check(&obj),
        Err(e) => vec![format!("does not match the schema: {e}")],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The examples a newcomer applies first must pass the controller's own checks.
    #[test]
    fn every_example_is_valid() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if !path.is_file() {
                continue; // examples/gitops: a kustomize tree, checked by the CLI tests
            }
            for report in validate_manifests(&std::fs::read_to_string(&path).unwrap()).unwrap() {
                assert!(
                    report.problems.is_empty(),
                    "{}: {}: {:?}",
                    path.display(),
                    report.object,
                    report.problems
                );
                seen += 1;
            }
        }
        assert!(seen >= 8, "the examples cover every kind ({seen} objects)");
    }

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
