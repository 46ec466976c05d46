//! Fields a manifest sets that its kind does not have. The API server drops them without a
//! word (kubectl's strict validation refuses the object instead), so a misspelt
//! `deletionPolcy: Delete` never does what it says. Found by walking the kind's CRD schema,
//! the one the API server validates with.

use std::collections::BTreeSet;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use kube::CustomResourceExt;
use serde_yaml::Value;

/// Each field under `spec` of `value` that kind `K` does not define, as a problem.
pub fn unknown_fields<K: CustomResourceExt>(value: &Value) -> Vec<String> {
    let crd = K::crd();
    let schema = crd
        .spec
        .versions
        .first()
        .and_then(|v| v.schema.as_ref())
        .and_then(|s| s.open_api_v3_schema.as_ref());
    let spec_schema = schema
        .and_then(|s| s.properties.as_ref())
        .and_then(|p| p.get("spec"));
    let (Some(spec_schema), Some(spec)) = (spec_schema, value.get("spec")) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    walk(spec_schema, spec, "spec", &mut found);
    let kind = &crd.spec.names.kind;
    found
        .into_iter()
        .map(|path| format!("unknown field {path}: {kind} has no such field (misspelt?); the API server would drop it"))
        .collect()
}

fn walk(schema: &JSONSchemaProps, value: &Value, path: &str, found: &mut Vec<String>) {
    if schema.x_kubernetes_preserve_unknown_fields == Some(true) {
        return;
    }
    match value {
        Value::Mapping(map) => {
            let known = known_fields(schema);
            for (key, field) in map {
                let Some(key) = key.as_str() else { continue };
                let here = format!("{path}.{key}");
                // A schema without properties is a map of free keys (or anything goes).
                match (field_schema(schema, key), known.is_empty()) {
                    (Some(s), _) => walk(s, field, &here, found),
                    (None, true) => {
                        if let Some(values) = map_values(schema) {
                            walk(values, field, &here, found);
                        }
                    }
                    (None, false) => found.push(here),
                }
            }
        }
        Value::Sequence(items) => {
            if let Some(JSONSchemaPropsOrArray::Schema(item)) = &schema.items {
                for (i, v) in items.iter().enumerate() {
                    walk(item, v, &format!("{path}[{i}]"), found);
                }
            }
        }
        _ => {}
    }
}

/// The schemas a value may match: the schema itself and its alternatives (an enum of shapes).
fn alternatives(schema: &JSONSchemaProps) -> impl Iterator<Item = &JSONSchemaProps> {
    std::iter::once(schema)
        .chain(schema.any_of.iter().flatten())
        .chain(schema.one_of.iter().flatten())
        .chain(schema.all_of.iter().flatten())
}

fn known_fields(schema: &JSONSchemaProps) -> BTreeSet<&str> {
    alternatives(schema)
        .filter_map(|s| s.properties.as_ref())
        .flat_map(|p| p.keys().map(String::as_str))
        .collect()
}

fn field_schema<'a>(schema: &'a JSONSchemaProps, key: &str) -> Option<&'a JSONSchemaProps> {
    alternatives(schema).find_map(|s| s.properties.as_ref().and_then(|p| p.get(key)))
}

/// The schema of a map's values (`additionalProperties`), for a map keyed by free names.
fn map_values(schema: &JSONSchemaProps) -> Option<&JSONSchemaProps> {
    match &schema.additional_properties {
        Some(JSONSchemaPropsOrBool::Schema(values)) => Some(values),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{LibreChatGroup, LibreChatUser};

    fn yaml(text: &str) -> Value {
        serde_yaml::from_str(text).unwrap()
    }

    #[test]
    fn a_misspelt_field_is_named_with_its_path() {
        let user = yaml("spec:\n  instanceRef: {name: lc}\n  email: a@example.com\n  deletionPolcy: Delete\n  password: {secretRef: {name: pw, key: password, nme: x}}\n");
        let problems = unknown_fields::<LibreChatUser>(&user);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("spec.deletionPolcy"), "{problems:?}");
        assert!(
            problems[1].contains("spec.password.secretRef.nme"),
            "{problems:?}"
        );
    }

    #[test]
    fn every_field_of_the_kind_is_known() {
        let user = yaml("spec:\n  instanceRef: {name: lc, namespace: x}\n  email: a@example.com\n  deletionPolicy: Delete\n  balance: {grants: [{id: g1, credits: 5}]}\n");
        assert_eq!(unknown_fields::<LibreChatUser>(&user), Vec::<String>::new());
        let group = yaml("spec:\n  instanceRef: {name: lc}\n  name: Team\n  members: [{email: a@example.com}, {userRef: {name: alice}}]\n");
        assert_eq!(
            unknown_fields::<LibreChatGroup>(&group),
            Vec::<String>::new()
        );
    }
}
