//! The CRDs' own CEL rules (`x-kubernetes-validations`, read from the CRDs the Rust types
//! generate), evaluated with a CEL interpreter the way the API server applies them, next to
//! the controller's own checks (`src/api/validate.rs`) on the same cases
//! (`tests/cel_cases/mod.rs`). The API server and the controller enforce the same rules; this
//! test keeps them from drifting apart. `tests/e2e/cel.rs` sends the same cases to a real
//! API server.

mod cel_cases;

use std::collections::BTreeSet;

use cel_cases::{cases, Case};
use librechat_operator::api::{all_crds, LibreChatUserSpec, UserBanSpec, UserInviteSpec};
use serde_json::{json, Value};

/// One `x-kubernetes-validations` entry and where in the object it applies.
#[derive(Debug)]
struct Rule {
    kind: String,
    /// Property names from the object's root, e.g. `["spec", "instanceRef"]`.
    path: Vec<String>,
    rule: String,
    message: String,
}

impl Rule {
    /// A transition rule compares with the stored object: the server runs it on updates only.
    fn is_transition(&self) -> bool {
        self.rule.contains("oldSelf")
    }
}

fn schema_of(crd: &Value) -> &Value {
    &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
}

fn crds() -> Vec<Value> {
    all_crds()
        .into_iter()
        .map(|(_, crd)| serde_json::to_value(crd).unwrap())
        .collect()
}

fn collect(kind: &str, node: &Value, path: &mut Vec<String>, out: &mut Vec<Rule>) {
    if let Some(rules) = node
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
    {
        for r in rules {
            out.push(Rule {
                kind: kind.to_string(),
                path: path.clone(),
                rule: r["rule"].as_str().expect("a rule").to_string(),
                message: r["message"]
                    .as_str()
                    .expect("every rule has a message")
                    .to_string(),
            });
        }
    }
    assert!(
        node.get("items")
            .is_none_or(|i| !i.to_string().contains("x-kubernetes-validations"))
            && node
                .get("additionalProperties")
                .is_none_or(|i| !i.to_string().contains("x-kubernetes-validations")),
        "{kind}: rules inside lists or maps at {path:?} need this test to learn about them"
    );
    if let Some(props) = node.get("properties").and_then(Value::as_object) {
        for (name, child) in props {
            path.push(name.clone());
            collect(kind, child, path, out);
            path.pop();
        }
    }
}

fn rules() -> Vec<Rule> {
    let mut out = Vec::new();
    for crd in crds() {
        let kind = crd["spec"]["names"]["kind"].as_str().unwrap().to_string();
        collect(&kind, schema_of(&crd), &mut Vec::new(), &mut out);
    }
    out
}

fn lookup<'a>(obj: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter()
        .try_fold(obj, |v, p| v.get(p))
        .filter(|v| !v.is_null())
}

/// Evaluates `rule` as the API server does: `self` is the value the rule is attached to, and
/// `oldSelf` the stored one. Returns whether the rule holds.
fn holds(rule: &Rule, this: &Value, old: Option<&Value>) -> bool {
    let program = cel::Program::compile(&rule.rule).unwrap_or_else(|e| {
        panic!(
            "{}: rule {:?} does not compile: {e:?}",
            rule.kind, rule.rule
        )
    });
    let mut ctx = cel::Context::default();
    ctx.add_variable("self", this.clone()).unwrap();
    if let Some(old) = old {
        ctx.add_variable("oldSelf", old.clone()).unwrap();
    }
    match program.execute(&ctx) {
        Ok(cel::Value::Bool(b)) => b,
        other => panic!("{}: rule {:?} gave {other:?}", rule.kind, rule.rule),
    }
}

/// The messages of the rules that reject this create or update, as admission would report
/// them. A rule runs only where its value is present, and a transition rule only on an
/// update where the value was present before as well.
fn cel_rejections<'a>(rules: &'a [Rule], case: &Case) -> Vec<&'a Rule> {
    let new = json!({ "spec": case.spec });
    let old = case.old.as_ref().map(|o| json!({ "spec": o }));
    rules
        .iter()
        .filter(|r| r.kind == case.kind)
        .filter(|r| {
            let Some(this) = lookup(&new, &r.path) else {
                return false;
            };
            if r.is_transition() {
                match old.as_ref().and_then(|o| lookup(o, &r.path)) {
                    Some(before) => !holds(r, this, Some(before)),
                    None => false,
                }
            } else {
                !holds(r, this, None)
            }
        })
        .collect()
}

/// The controller's own problems with a spec (what `librechat-operator validate` reports).
fn rust_problems(case: &Case) -> Vec<String> {
    let spec = case.spec.clone();
    match case.kind {
        "LibreChatUser" => serde_json::from_value::<LibreChatUserSpec>(spec)
            .unwrap()
            .problems(8),
        "UserBan" => serde_json::from_value::<UserBanSpec>(spec)
            .unwrap()
            .problems(None),
        "UserInvite" => serde_json::from_value::<UserInviteSpec>(spec)
            .unwrap()
            .lifetime()
            .err()
            .unwrap_or_default(),
        other => panic!("no Rust checks known for {other}"),
    }
}

/// What a Rust problem must contain to be the same rule as a CEL message: the message up to
/// its first `;` (the Rust text may name the offending value there).
fn key(message: &str) -> &str {
    message.split(';').next().unwrap()
}

#[test]
fn every_rule_compiles_and_has_a_message() {
    let rules = rules();
    assert!(
        rules.len() >= 10,
        "expected the CRDs' rules, found {rules:?}"
    );
    for r in &rules {
        cel::Program::compile(&r.rule)
            .unwrap_or_else(|e| panic!("{}: {:?} does not compile: {e:?}", r.kind, r.rule));
        assert!(!r.message.is_empty());
    }
}

#[test]
fn the_rules_decide_every_case_as_expected() {
    let rules = rules();
    let mut failures = Vec::new();
    for case in cases() {
        let rejected: Vec<&str> = cel_rejections(&rules, &case)
            .iter()
            .map(|r| r.message.as_str())
            .collect();
        let expected: Vec<&str> = case.rejected_by.into_iter().collect();
        if rejected != expected {
            failures.push(format!(
                "{} ({}): CEL rejects with {rejected:?}, expected {expected:?}",
                case.what, case.kind
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// On every create, each rule the API server checks agrees with the controller's own check:
/// both reject, with the same message, or both admit.
#[test]
fn the_rules_and_the_controller_agree() {
    let rules = rules();
    let mut failures = Vec::new();
    for case in cases().iter().filter(|c| c.old.is_none()) {
        let problems = rust_problems(case);
        let rejected = cel_rejections(&rules, case);
        for rule in rules
            .iter()
            .filter(|r| r.kind == case.kind && !r.is_transition())
        {
            let by_cel = rejected.iter().any(|r| std::ptr::eq(*r, rule));
            let by_rust = problems.iter().any(|p| p.contains(key(&rule.message)));
            if by_cel != by_rust {
                failures.push(format!(
                    "{} ({}): rule {:?} {} but the controller {} ({problems:?})",
                    case.what,
                    case.kind,
                    rule.message,
                    if by_cel { "rejects" } else { "admits" },
                    if by_rust { "rejects" } else { "admits" },
                ));
            }
        }
        // The cases isolate one rule each: nothing else may be wrong with them.
        let unrelated: Vec<&String> = problems
            .iter()
            .filter(|p| case.rejected_by.is_none_or(|m| !p.contains(key(m))))
            .collect();
        if !unrelated.is_empty() {
            failures.push(format!(
                "{} ({}): other problems {unrelated:?}",
                case.what, case.kind
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Every rule in the CRDs rejects at least one case (so `tests/e2e/cel.rs` proves the API
/// server enforces each one), and every expected message is a rule of that kind.
#[test]
fn every_rule_is_covered_by_a_case() {
    let rules = rules();
    let all: BTreeSet<(String, String)> = rules
        .iter()
        .map(|r| (r.kind.clone(), r.message.clone()))
        .collect();
    let covered: BTreeSet<(String, String)> = cases()
        .iter()
        .filter_map(|c| c.rejected_by.map(|m| (c.kind.to_string(), m.to_string())))
        .collect();
    let missing: Vec<_> = all.difference(&covered).collect();
    let unknown: Vec<_> = covered.difference(&all).collect();
    assert!(
        missing.is_empty(),
        "rules without a rejecting case in tests/cel_cases: {missing:?}"
    );
    assert!(
        unknown.is_empty(),
        "cases expecting rules the CRDs lack: {unknown:?}"
    );
    // Each path carrying an immutability rule is rejected by some update of that very field.
    for r in rules.iter().filter(|r| r.is_transition()) {
        let hit = cases().iter().any(|c| {
            c.kind == r.kind
                && c.rejected_by == Some(r.message.as_str())
                && cel_rejections(&rules, c)
                    .iter()
                    .any(|x| std::ptr::eq(*x, r))
        });
        assert!(
            hit,
            "{}: no case changes {:?} ({})",
            r.kind, r.path, r.message
        );
    }
}

/// A field documented as immutable carries `self == oldSelf`, and only such fields do.
#[test]
fn immutable_fields_are_the_documented_ones() {
    fn walk(kind: &str, node: &Value, path: &mut Vec<String>, bad: &mut Vec<String>) {
        if let Some(props) = node.get("properties").and_then(Value::as_object) {
            for (name, child) in props {
                path.push(name.clone());
                let documented = child["description"]
                    .as_str()
                    .is_some_and(|d| d.contains("Immutable."));
                let ruled = child["x-kubernetes-validations"]
                    .as_array()
                    .is_some_and(|rs| rs.iter().any(|r| r["rule"] == "self == oldSelf"));
                if documented != ruled {
                    bad.push(format!(
                        "{kind} {}: documented immutable {documented}, rule {ruled}",
                        path.join(".")
                    ));
                }
                walk(kind, child, path, bad);
                path.pop();
            }
        }
    }
    let mut bad = Vec::new();
    for crd in crds() {
        let kind = crd["spec"]["names"]["kind"].as_str().unwrap().to_string();
        walk(&kind, schema_of(&crd), &mut Vec::new(), &mut bad);
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}
