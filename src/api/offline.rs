//! `librechat-operator validate`: the controller's own checks, without a cluster, over a set
//! of files, plus the rules that only the whole set can break (an email claimed twice, a ban of
//! a user no file defines, an invite for an email a user already declares).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::instance::DEFAULT_MIN_PASSWORD_LENGTH;
use super::validate::normalize_email;
use super::{
    LibreChatGroup, LibreChatInstance, LibreChatRole, LibreChatUser, UserBan, UserInvite, GROUP,
};

/// One object's verdict.
pub struct Report {
    pub object: String,
    pub problems: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("{0}")]
    Parse(String),
}

/// Validates every document of a multi-document YAML stream that is one of our kinds;
/// other kinds are skipped. Instance-dependent rules use LibreChat's defaults, or the instance's
/// own policy when the stream defines the instance.
pub fn validate_manifests(text: &str) -> Result<Vec<Report>, OfflineError> {
    let objects = parse_source("-", text).map_err(OfflineError::Parse)?;
    let problems = check_set(&objects);
    Ok(objects
        .iter()
        .zip(problems)
        .map(|(o, problems)| Report {
            object: format!("{}/{}", o.kind, o.name),
            problems,
        })
        .collect())
}

/// One object of our group, where it was found.
pub struct Located {
    pub file: String,
    /// 1-based line where the document's content starts.
    pub line: usize,
    pub kind: String,
    /// `metadata.namespace`; empty when the file leaves it to the applier (kubectl's context,
    /// a kustomization's `namespace:`).
    pub namespace: String,
    pub name: String,
    value: serde_yaml::Value,
}

impl Located {
    /// `kind/namespace/name`, `-` for an unset namespace.
    pub fn id(&self) -> String {
        let ns = if self.namespace.is_empty() {
            "-"
        } else {
            &self.namespace
        };
        format!("{}/{ns}/{}", self.kind, self.name)
    }
    fn at(&self) -> String {
        format!("{} ({}:{})", self.id(), self.file, self.line)
    }
}

/// A problem, located: printed as `file:line: kind/namespace/name: message`.
pub struct Finding {
    pub file: String,
    pub line: usize,
    pub object: String,
    pub message: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}: {}: {}",
            self.file, self.line, self.object, self.message
        )
    }
}

/// The files `validate -f` reads: files as given, folders searched recursively for `*.yaml` and
/// `*.yml` (sorted, so the output is stable).
pub fn collect_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, OfflineError> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), OfflineError> {
        let io = |e| OfflineError::Io(dir.display().to_string(), e);
        let mut entries = std::fs::read_dir(dir)
            .map_err(io)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(io)?;
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(&path, out)?;
            } else if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml")
            ) {
                out.push(path);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    for path in paths {
        if path.is_dir() {
            walk(path, &mut out)?;
        } else {
            out.push(path.clone());
        }
    }
    Ok(out)
}

/// Reads and checks every file: one finding per problem, in file order.
pub fn validate_paths(paths: &[PathBuf]) -> Result<(usize, Vec<Finding>), OfflineError> {
    let mut objects = Vec::new();
    for path in collect_files(paths)? {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(&path).map_err(|e| OfflineError::Io(name.clone(), e))?;
        objects.extend(parse_source(&name, &text).map_err(OfflineError::Parse)?);
    }
    let findings = findings(&objects);
    Ok((objects.len(), findings))
}

/// The objects of our group in `text` (other kinds are skipped), with their starting lines.
/// A document that is not YAML fails the whole file: `file:line: not valid YAML: ...`.
pub fn parse_source(file: &str, text: &str) -> Result<Vec<Located>, String> {
    let mut objects = Vec::new();
    for (line, first, document) in split_documents(text) {
        let value: serde_yaml::Value = serde_yaml::from_str(&document).map_err(|e| {
            let at = e.location().map_or(line, |l| first + l.line() - 1);
            format!("{file}:{at}: not valid YAML: {e}")
        })?;
        let str_at = |path: &[&str]| {
            let mut v = &value;
            for key in path {
                v = v.get(*key).unwrap_or(&serde_yaml::Value::Null);
            }
            v.as_str().unwrap_or_default().to_string()
        };
        if value.is_null() || !str_at(&["apiVersion"]).starts_with(&format!("{GROUP}/")) {
            continue;
        }
        let name = str_at(&["metadata", "name"]);
        objects.push(Located {
            file: file.to_string(),
            line,
            kind: str_at(&["kind"]),
            namespace: str_at(&["metadata", "namespace"]),
            name: if name.is_empty() {
                "<unnamed>".into()
            } else {
                name
            },
            value,
        });
    }
    Ok(objects)
}

/// Splits a YAML stream at its `---` lines: each document that has content with the 1-based
/// line of its first content (neither blank nor a comment) and the line its text begins at.
fn split_documents(text: &str) -> Vec<(usize, usize, String)> {
    let mut documents = Vec::new();
    let (mut start, mut first, mut current, mut content) = (1, 1, String::new(), false);
    for (i, line) in text.lines().enumerate() {
        let rest = line
            .strip_prefix("---")
            .filter(|r| r.is_empty() || r.starts_with([' ', '\t']));
        if let Some(rest) = rest {
            if content {
                documents.push((start, first, std::mem::take(&mut current)));
            }
            current.clear();
            (start, first, content) = (i + 1, i + 2, false);
            let rest = rest.trim();
            if !rest.is_empty() && !rest.starts_with('#') {
                first = i + 1;
                current.push_str(rest);
                current.push('\n');
                content = true;
            }
            continue;
        }
        let trimmed = line.trim();
        if !content && !trimmed.is_empty() && !trimmed.starts_with('#') {
            (start, content) = (i + 1, true);
        }
        current.push_str(line);
        current.push('\n');
    }
    if content {
        documents.push((start, first, current));
    }
    documents
}

/// Every problem of every object, located.
pub fn findings(objects: &[Located]) -> Vec<Finding> {
    objects
        .iter()
        .zip(check_set(objects))
        .flat_map(|(o, problems)| {
            problems.into_iter().map(|message| Finding {
                file: o.file.clone(),
                line: o.line,
                object: o.id(),
                message,
            })
        })
        .collect()
}

/// The `(namespace, name)` of the instance an object points at; the object's own namespace
/// when `instanceRef.namespace` is unset.
fn instance_key(object_namespace: &str, r: &super::common::InstanceRef) -> (String, String) {
    let ns = r.namespace.as_deref().unwrap_or(object_namespace);
    (ns.to_string(), r.name.clone())
}

/// The problems of each object (same order): its own, by the controller's rules, then those
/// it has with the others of the set.
fn check_set(objects: &[Located]) -> Vec<Vec<String>> {
    enum Parsed {
        // Boxed too: with its balance and terms it is large as well.
        Instance(Box<LibreChatInstance>),
        // Boxed: the largest kind by far.
        User(Box<LibreChatUser>),
        Ban(UserBan),
        Invite(UserInvite),
        Group(Box<LibreChatGroup>),
        Role(Box<LibreChatRole>),
        Bad(String),
    }
    fn parse<K: serde::de::DeserializeOwned + kube::CustomResourceExt>(
        v: &serde_yaml::Value,
        f: fn(K) -> Parsed,
    ) -> Parsed {
        let unknown = super::unknown_fields::unknown_fields::<K>(v);
        if !unknown.is_empty() {
            return Parsed::Bad(unknown.join("; "));
        }
        match serde_yaml::from_value::<K>(v.clone()) {
            Ok(k) => f(k),
            Err(e) => Parsed::Bad(format!("does not match the schema: {e}")),
        }
    }
    let parsed: Vec<Parsed> = objects
        .iter()
        .map(|o| match o.kind.as_str() {
            "LibreChatInstance" => parse(&o.value, |i| Parsed::Instance(Box::new(i))),
            "LibreChatUser" => parse(&o.value, |u| Parsed::User(Box::new(u))),
            "UserBan" => parse(&o.value, Parsed::Ban),
            "UserInvite" => parse(&o.value, Parsed::Invite),
            "LibreChatGroup" => parse(&o.value, |g| Parsed::Group(Box::new(g))),
            "LibreChatRole" => parse(&o.value, |r| Parsed::Role(Box::new(r))),
            other => Parsed::Bad(format!("unknown kind '{other}' in group {GROUP}")),
        })
        .collect();

    // What the set defines: instances' password policies, users by name, users by email.
    let mut min_length = HashMap::new();
    let mut users_by_name = HashMap::new();
    let mut users_by_email: HashMap<((String, String), String), Vec<usize>> = HashMap::new();
    for (i, (o, p)) in objects.iter().zip(&parsed).enumerate() {
        match p {
            Parsed::Instance(inst) => {
                min_length.insert(
                    (o.namespace.clone(), o.name.clone()),
                    inst.spec.min_password_length(),
                );
            }
            Parsed::User(u) => {
                users_by_name
                    .entry((o.namespace.clone(), o.name.clone()))
                    .or_insert(i);
                users_by_email
                    .entry((
                        instance_key(&o.namespace, &u.spec.instance_ref),
                        normalize_email(&u.spec.email),
                    ))
                    .or_default()
                    .push(i);
            }
            _ => {}
        }
    }

    objects
        .iter()
        .zip(&parsed)
        .enumerate()
        .map(|(i, (o, p))| match p {
            Parsed::Bad(problem) => vec![problem.clone()],
            Parsed::Instance(inst) => inst.spec.problems(),
            Parsed::Group(g) => g.spec.check(&o.namespace).err().into_iter().collect(),
            Parsed::Role(r) => r.spec.check().err().into_iter().collect(),
            Parsed::User(u) => {
                let instance = instance_key(&o.namespace, &u.spec.instance_ref);
                let min = min_length
                    .get(&instance)
                    .copied()
                    .unwrap_or(DEFAULT_MIN_PASSWORD_LENGTH);
                let mut problems = u.spec.problems(min);
                let email = normalize_email(&u.spec.email);
                let claims = &users_by_email[&(instance.clone(), email.clone())];
                if claims[0] != i {
                    problems.push(format!(
                        "email '{email}' is claimed twice in instance {}/{}: {} declares it too",
                        instance.0,
                        instance.1,
                        objects[claims[0]].at()
                    ));
                }
                problems
            }
            Parsed::Ban(b) => {
                let mut problems = b.spec.problems(None);
                if let Some(user) = &b.spec.user_ref {
                    if !users_by_name.contains_key(&(o.namespace.clone(), user.name.clone())) {
                        problems.push(format!(
                            "userRef names LibreChatUser '{}', which no file given defines in this namespace",
                            user.name
                        ));
                    }
                }
                problems
            }
            Parsed::Invite(inv) => {
                let mut problems = inv.spec.lifetime().err().unwrap_or_default();
                let instance = instance_key(&o.namespace, &inv.spec.instance_ref);
                let email = normalize_email(&inv.spec.email);
                if let Some(claims) = users_by_email.get(&(instance, email.clone())) {
                    problems.push(format!(
                        "invites '{email}', which {} already declares: the account exists, so the invitation cannot be used",
                        objects[claims[0]].at()
                    ));
                }
                problems
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The examples a newcomer applies first, and the GitOps tree, pass the controller's own
    /// checks and the cross-object rules, as `validate -f examples/` runs them.
    #[test]
    fn every_example_is_valid() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
        for (dir, least) in [(root.clone(), 15), (root.join("gitops"), 7)] {
            let (seen, findings) = validate_paths(std::slice::from_ref(&dir)).unwrap();
            let text: Vec<String> = findings.iter().map(|f| f.to_string()).collect();
            assert!(text.is_empty(), "{}: {text:#?}", dir.display());
            assert!(
                seen >= least,
                "{}: every kind ({seen} objects)",
                dir.display()
            );
        }
    }

    fn set(text: &str) -> Vec<String> {
        findings(&parse_source("set.yaml", text).unwrap())
            .iter()
            .map(|f| f.to_string())
            .collect()
    }

    const INSTANCE: &str = r#"
apiVersion: librechat.ai/v1alpha1
kind: LibreChatInstance
metadata: {name: lc, namespace: team}
spec: {mongo: {uriSecretRef: {name: s, key: k}}}
"#;

    #[test]
    fn plugins_librechat_would_refuse_are_found_offline() {
        let found = set(r#"
apiVersion: librechat.ai/v1alpha1
kind: LibreChatUser
metadata: {name: ann, namespace: team}
spec:
  instanceRef: {name: lc}
  email: ann@example.com
  plugins:
    - {key: web_search, credentialsSecretRef: {name: serper}}
    - {key: web_search}
    - {key: search_mcp_github}
"#);
        let text = found.join("\n");
        assert!(text.contains("key 'web_search' is listed twice"), "{text}");
        assert!(text.contains("MCP tool name"), "{text}");
        let found = set(r#"
apiVersion: librechat.ai/v1alpha1
kind: LibreChatInstance
metadata: {name: lc, namespace: team}
spec: {mongo: {uriSecretRef: {name: s, key: k}}, credentials: {secretRef: {name: ""}}}
"#);
        assert!(found
            .join("\n")
            .contains("credentials.secretRef.name is required"));
    }

    #[test]
    fn an_email_claimed_twice_in_one_instance_is_an_error() {
        let text = format!(
            r#"{INSTANCE}---
apiVersion: librechat.ai/v1alpha1
kind: LibreChatUser
metadata: {{name: a, namespace: team}}
spec: {{instanceRef: {{name: lc}}, email: Ann@Example.com}}
---
# the same account, spelled differently
apiVersion: librechat.ai/v1alpha1
kind: LibreChatUser
metadata: {{name: b, namespace: team}}
spec: {{instanceRef: {{name: lc}}, email: " ann@example.COM"}}
---
# another instance: another account
apiVersion: librechat.ai/v1alpha1
kind: LibreChatUser
metadata: {{name: c, namespace: team}}
spec: {{instanceRef: {{name: other}}, email: ann@example.com}}
---
# the same instance, named across namespaces
apiVersion: librechat.ai/v1alpha1
kind: LibreChatUser
metadata: {{name: d, namespace: tenant}}
spec: {{instanceRef: {{name: lc, namespace: team}}, email: ann@example.com}}
"#
        );
        let found = set(&text);
        assert_eq!(found.len(), 2, "{found:#?}");
        assert!(
            found[0].starts_with(
                "set.yaml:13: LibreChatUser/team/b: email 'ann@example.com' is claimed twice"
            ) && found[0].contains("LibreChatUser/team/a (set.yaml:7)"),
            "{found:#?}"
        );
        assert!(
            found[1].starts_with("set.yaml:25: LibreChatUser/tenant/d: "),
            "{found:#?}"
        );
    }

    #[test]
    fn bad_balance_and_terms_are_errors() {
        let text = r#"
apiVersion: librechat.ai/v1alpha1
kind: LibreChatInstance
metadata: {name: lc, namespace: team}
spec:
  mongo: {uriSecretRef: {name: s, key: k}}
  balance: {enabled: true, startBalance: -1}
  terms: {version: " "}
---
apiVersion: librechat.ai/v1alpha1
kind: LibreChatUser
metadata: {name: a, namespace: team}
spec:
  instanceRef: {name: lc}
  email: ann@example.com
  balance:
    grants:
      - {id: welcome, credits: 10}
      - {id: welcome, credits: 1.5}
---
apiVersion: librechat.ai/v1alpha1
kind: LibreChatUser
metadata: {name: b, namespace: team}
spec:
  instanceRef: {name: lc}
  email: bob@example.com
  balance: {autoRefill: {intervalUnit: fortnights}}
"#;
        let found = set(text).join("\n");
        for want in [
            "balance.startBalance must be between 0",
            "terms.version must be 1 to 128 characters",
            "balance.grants[1].id 'welcome' is used twice",
            "balance.grants[1].credits must be a whole number",
            "unknown variant `fortnights`",
        ] {
            assert!(found.contains(want), "{want}: {found}");
        }
    }

    #[test]
    fn a_ban_of_a_user_no_file_defines_is_an_error() {
        let text = r#"
apiVersion: librechat.ai/v1alpha1
kind: LibreChatUser
metadata: {name: bob, namespace: team}
spec: {instanceRef: {name: lc}, email: bob@example.com}
---
apiVersion: librechat.ai/v1alpha1
kind: UserBan
metadata: {name: ok, namespace: team}
spec: {instanceRef: {name: lc}, userRef: {name: bob}}
---
apiVersion: librechat.ai/v1alpha1
kind: UserBan
metadata: {name: typo, namespace: team}
spec: {instanceRef: {name: lc}, userRef: {name: bbo}}
---
# a user of the same name elsewhere does not count: userRef is in the ban's namespace
apiVersion: librechat.ai/v1alpha1
kind: UserBan
metadata: {name: elsewhere, namespace: other}
spec: {instanceRef: {name: lc, namespace: team}, userRef: {name: bob}}
---
# email and ip bans name no object
apiVersion: librechat.ai/v1alpha1
kind: UserBan
metadata: {name: by-email, namespace: team}
spec: {instanceRef: {name: lc}, email: nobody@example.com}
"#;
        let found = set(text);
        assert_eq!(found.len(), 2, "{found:#?}");
        assert!(
            found[0]
                .starts_with("set.yaml:12: UserBan/team/typo: userRef names LibreChatUser 'bbo'"),
            "{found:#?}"
        );
        assert!(
            found[1].starts_with("set.yaml:18: UserBan/other/elsewhere: "),
            "{found:#?}"
        );
    }

    #[test]
    fn an_invite_for_a_declared_email_is_an_error() {
        let text = r#"
apiVersion: librechat.ai/v1alpha1
kind: LibreChatUser
metadata: {name: dana, namespace: team}
spec: {instanceRef: {name: lc}, email: dana@example.com}
---
apiVersion: librechat.ai/v1alpha1
kind: UserInvite
metadata: {name: dana, namespace: team}
spec: {instanceRef: {name: lc}, email: DANA@example.com}
---
apiVersion: librechat.ai/v1alpha1
kind: UserInvite
metadata: {name: erin, namespace: team}
spec: {instanceRef: {name: lc}, email: erin@example.com}
"#;
        let found = set(text);
        assert_eq!(found.len(), 1, "{found:#?}");
        assert!(
            found[0].starts_with("set.yaml:7: UserInvite/team/dana: invites 'dana@example.com', which LibreChatUser/team/dana (set.yaml:2) already declares"),
            "{found:#?}"
        );
    }

    #[test]
    fn a_generated_password_follows_the_instance_in_the_set() {
        let text = format!(
            r#"{INSTANCE}  passwordPolicy: {{minLength: 20}}
---
apiVersion: librechat.ai/v1alpha1
kind: LibreChatUser
metadata: {{name: a, namespace: team}}
spec: {{instanceRef: {{name: lc}}, email: a@example.com, password: {{generate: {{secretName: a, length: 16}}}}}}
"#
        );
        let text = text.replace(
            "spec: {mongo: {uriSecretRef: {name: s, key: k}}}\n",
            "spec:\n  mongo: {uriSecretRef: {name: s, key: k}}\n",
        );
        let found = set(&text);
        assert_eq!(found.len(), 1, "{found:#?}");
        assert!(
            found[0].starts_with("set.yaml:9: LibreChatUser/team/a: "),
            "{found:#?}"
        );
    }

    #[test]
    fn documents_start_at_their_first_content_line() {
        let docs = split_documents(
            "# header\n---\n\n# about a\na: 1\n--- # c\nb: 2\n---\n---\n--- {c: 3}\n",
        );
        let starts: Vec<(usize, usize)> = docs.iter().map(|(l, f, _)| (*l, *f)).collect();
        assert_eq!(starts, vec![(5, 3), (7, 7), (10, 10)]);
        assert_eq!(docs[2].2, "{c: 3}\n");
        let error = parse_source("f.yaml", "a: 1\n---\n# x\nb: [\n")
            .err()
            .unwrap();
        assert!(error.starts_with("f.yaml:5: not valid YAML"), "{error}");
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

    #[test]
    fn groups_and_roles_are_checked_before_they_are_applied() {
        let text = r#"
apiVersion: librechat.ai/v1alpha1
kind: LibreChatRole
metadata: {name: analyst, namespace: team}
spec: {instanceRef: {name: lc}, name: ANALYST, permissions: {AGENT: {USE: true}}}
---
apiVersion: librechat.ai/v1alpha1
kind: LibreChatGroup
metadata: {name: research, namespace: team}
spec: {instanceRef: {name: lc}, name: Research, members: [{userRef: {name: bob, namespace: other}}]}
"#;
        let found = set(text);
        assert_eq!(found.len(), 2, "{found:#?}");
        assert!(
            found[0].contains("unknown permission type 'AGENT'"),
            "{found:#?}"
        );
        assert!(
            found[1].contains("member LibreChatUser other/bob is in another namespace"),
            "{found:#?}"
        );
    }
}
