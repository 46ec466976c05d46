//! One table of cases for the CRDs' CEL rules (`x-kubernetes-validations`), shared by
//! `tests/cel_rules.rs` (the rules evaluated offline next to the controller's own checks) and
//! `tests/e2e/cel.rs` (the same objects sent to a real API server). Every rule in `crds/`
//! must reject at least one case here, with its own message; both tests check that.

use serde_json::{json, Value};

/// A create (`old: None`) or an update from `old` to `spec`, and what admission must say.
pub struct Case {
    pub what: &'static str,
    pub kind: &'static str,
    pub old: Option<Value>,
    pub spec: Value,
    /// The message of the one rule that must reject it; `None`: it must be admitted.
    pub rejected_by: Option<&'static str>,
}

pub const USER_ONE_PASSWORD_SOURCE: &str = "set at most one of secretRef and generate";
pub const USER_PASSWORD_ONLY_LOCAL: &str =
    "password applies only to provider 'local'; SSO accounts log in through their identity provider";
pub const USER_EMAIL_IMMUTABLE: &str = "email is immutable: create a new LibreChatUser instead";
pub const INSTANCE_REF_IMMUTABLE: &str = "instanceRef is immutable";
pub const BAN_ONE_TARGET: &str = "set exactly one of userRef, email and ip";
pub const BAN_ONE_END: &str = "set at most one of duration and until";
pub const BAN_TARGET_IMMUTABLE: &str = "the ban's target is immutable";
pub const INVITE_EMAIL_IMMUTABLE: &str = "email is immutable";
pub const GROUP_NAME_IMMUTABLE: &str = "the group name is immutable";
pub const ROLE_NAME_IMMUTABLE: &str = "the role name is immutable";

fn user(extra: Value) -> Value {
    with(
        json!({ "instanceRef": { "name": "lc" }, "email": "jane@example.com" }),
        extra,
    )
}

fn ban(extra: Value) -> Value {
    with(json!({ "instanceRef": { "name": "lc" } }), extra)
}

fn invite(extra: Value) -> Value {
    with(
        json!({ "instanceRef": { "name": "lc" }, "email": "new@example.com" }),
        extra,
    )
}

fn group(extra: Value) -> Value {
    with(
        json!({ "instanceRef": { "name": "lc" }, "name": "Team" }),
        extra,
    )
}

fn role(extra: Value) -> Value {
    with(
        json!({ "instanceRef": { "name": "lc" }, "name": "ANALYST" }),
        extra,
    )
}

fn with(mut base: Value, extra: Value) -> Value {
    for (k, v) in extra.as_object().unwrap() {
        base[k] = v.clone();
    }
    base
}

fn create(
    what: &'static str,
    kind: &'static str,
    spec: Value,
    rejected_by: Option<&'static str>,
) -> Case {
    Case {
        what,
        kind,
        old: None,
        spec,
        rejected_by,
    }
}

fn update(
    what: &'static str,
    kind: &'static str,
    old: Value,
    spec: Value,
    rejected_by: Option<&'static str>,
) -> Case {
    Case {
        what,
        kind,
        old: Some(old),
        spec,
        rejected_by,
    }
}

pub fn cases() -> Vec<Case> {
    let secret_ref = json!({ "secretRef": { "name": "pw", "key": "password" } });
    let generate = json!({ "generate": { "secretName": "jane-pw" } });
    let both = json!({
        "secretRef": { "name": "pw", "key": "password" },
        "generate": { "secretName": "jane-pw" },
    });
    let u = "LibreChatUser";
    let b = "UserBan";
    let i = "UserInvite";
    vec![
        // --- LibreChatUser: one-of rules -------------------------------------------------
        create("user without password", u, user(json!({})), None),
        create(
            "user with a password Secret",
            u,
            user(json!({ "password": secret_ref })),
            None,
        ),
        create(
            "user with a generated password",
            u,
            user(json!({ "password": generate })),
            None,
        ),
        create(
            "user with an empty password source",
            u,
            user(json!({ "password": {} })),
            None,
        ),
        create(
            "user with both password sources",
            u,
            user(json!({ "password": both })),
            Some(USER_ONE_PASSWORD_SOURCE),
        ),
        create(
            "local user with a password",
            u,
            user(json!({ "provider": "local", "password": secret_ref })),
            None,
        ),
        create(
            "SSO user without password",
            u,
            user(json!({ "provider": "google" })),
            None,
        ),
        create(
            "SSO user with a password",
            u,
            user(json!({ "provider": "openid", "password": generate })),
            Some(USER_PASSWORD_ONLY_LOCAL),
        ),
        // --- LibreChatUser: immutability -------------------------------------------------
        update(
            "user's name changes",
            u,
            user(json!({ "name": "Jane" })),
            user(json!({ "name": "Jane Doe" })),
            None,
        ),
        update(
            "user's email changes",
            u,
            user(json!({})),
            user(json!({ "email": "john@example.com" })),
            Some(USER_EMAIL_IMMUTABLE),
        ),
        update(
            "user's instance changes",
            u,
            user(json!({})),
            user(json!({ "instanceRef": { "name": "other" } })),
            Some(INSTANCE_REF_IMMUTABLE),
        ),
        update(
            "user's instance gains a namespace",
            u,
            user(json!({})),
            user(json!({ "instanceRef": { "name": "lc", "namespace": "elsewhere" } })),
            Some(INSTANCE_REF_IMMUTABLE),
        ),
        // --- UserBan: one-of rules -------------------------------------------------------
        create(
            "ban of a user",
            b,
            ban(json!({ "userRef": { "name": "jane" } })),
            None,
        ),
        create(
            "ban of an email",
            b,
            ban(json!({ "email": "jane@example.com" })),
            None,
        ),
        create("ban of an IP", b, ban(json!({ "ip": "10.0.0.1" })), None),
        create(
            "ban without target",
            b,
            ban(json!({})),
            Some(BAN_ONE_TARGET),
        ),
        create(
            "ban of an email and an IP",
            b,
            ban(json!({ "email": "jane@example.com", "ip": "10.0.0.1" })),
            Some(BAN_ONE_TARGET),
        ),
        create(
            "ban of a user and an email",
            b,
            ban(json!({ "userRef": { "name": "jane" }, "email": "jane@example.com" })),
            Some(BAN_ONE_TARGET),
        ),
        create(
            "ban of all three",
            b,
            ban(
                json!({ "userRef": { "name": "jane" }, "email": "jane@example.com", "ip": "10.0.0.1" }),
            ),
            Some(BAN_ONE_TARGET),
        ),
        create(
            "ban for a duration",
            b,
            ban(json!({ "ip": "10.0.0.1", "duration": "24h" })),
            None,
        ),
        create(
            "ban until a time",
            b,
            ban(json!({ "ip": "10.0.0.1", "until": "2099-01-01T00:00:00Z" })),
            None,
        ),
        create(
            "ban with duration and until",
            b,
            ban(json!({ "ip": "10.0.0.1", "duration": "24h", "until": "2099-01-01T00:00:00Z" })),
            Some(BAN_ONE_END),
        ),
        // --- UserBan: immutability -------------------------------------------------------
        update(
            "ban's reason changes",
            b,
            ban(json!({ "ip": "10.0.0.1" })),
            ban(json!({ "ip": "10.0.0.1", "reason": "spam" })),
            None,
        ),
        update(
            "ban's duration changes",
            b,
            ban(json!({ "ip": "10.0.0.1", "duration": "1h" })),
            ban(json!({ "ip": "10.0.0.1", "duration": "2h" })),
            None,
        ),
        update(
            "ban's IP changes",
            b,
            ban(json!({ "ip": "10.0.0.1" })),
            ban(json!({ "ip": "10.0.0.2" })),
            Some(BAN_TARGET_IMMUTABLE),
        ),
        update(
            "ban's email changes",
            b,
            ban(json!({ "email": "jane@example.com" })),
            ban(json!({ "email": "john@example.com" })),
            Some(BAN_TARGET_IMMUTABLE),
        ),
        update(
            "ban's user changes",
            b,
            ban(json!({ "userRef": { "name": "jane" } })),
            ban(json!({ "userRef": { "name": "john" } })),
            Some(BAN_TARGET_IMMUTABLE),
        ),
        update(
            "ban gains a second target",
            b,
            ban(json!({ "ip": "10.0.0.1" })),
            ban(json!({ "ip": "10.0.0.1", "email": "jane@example.com" })),
            Some(BAN_ONE_TARGET),
        ),
        // A rule on an optional field runs only while the field is there before and after, so
        // replacing the IP with an email passes admission: the controller refuses it (the
        // target it recorded in status cannot change).
        update(
            "ban's target switches from IP to email",
            b,
            ban(json!({ "ip": "10.0.0.1" })),
            ban(json!({ "email": "jane@example.com" })),
            None,
        ),
        update(
            "ban's instance changes",
            b,
            ban(json!({ "ip": "10.0.0.1" })),
            ban(json!({ "ip": "10.0.0.1", "instanceRef": { "name": "other" } })),
            Some(INSTANCE_REF_IMMUTABLE),
        ),
        // --- UserInvite: immutability ----------------------------------------------------
        update(
            "invite's lifetime changes",
            i,
            invite(json!({})),
            invite(json!({ "expiresIn": "24h" })),
            None,
        ),
        update(
            "invite's email changes",
            i,
            invite(json!({})),
            invite(json!({ "email": "other@example.com" })),
            Some(INVITE_EMAIL_IMMUTABLE),
        ),
        update(
            "invite's instance changes",
            i,
            invite(json!({})),
            invite(json!({ "instanceRef": { "name": "other" } })),
            Some(INSTANCE_REF_IMMUTABLE),
        ),
        update(
            "group's members change",
            "LibreChatGroup",
            group(json!({})),
            group(json!({ "members": [{ "email": "a@example.com" }] })),
            None,
        ),
        update(
            "group's name changes",
            "LibreChatGroup",
            group(json!({})),
            group(json!({ "name": "Other team" })),
            Some(GROUP_NAME_IMMUTABLE),
        ),
        update(
            "group's instance changes",
            "LibreChatGroup",
            group(json!({})),
            group(json!({ "instanceRef": { "name": "other" } })),
            Some(INSTANCE_REF_IMMUTABLE),
        ),
        update(
            "role's name changes",
            "LibreChatRole",
            role(json!({})),
            role(json!({ "name": "VIEWER" })),
            Some(ROLE_NAME_IMMUTABLE),
        ),
        update(
            "role's instance changes",
            "LibreChatRole",
            role(json!({})),
            role(json!({ "instanceRef": { "name": "other" } })),
            Some(INSTANCE_REF_IMMUTABLE),
        ),
    ]
}
