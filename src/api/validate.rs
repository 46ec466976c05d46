//! The checks the controllers run before anything is written. The API server enforces the
//! same rules where the schema can say them, but older servers drop CEL rules, and
//! `librechat-operator validate` runs them offline, so the controller is the authority.

use super::instance::MAX_PASSWORD_LENGTH;
use super::user::LibreChatUserSpec;

/// Problems with a spec, one sentence each, telling the author what to change.
pub type Problems = Vec<String>;

/// LibreChat stores emails trimmed and lower-cased, and looks them up the same way.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// Checks an email the way LibreChat's registration would accept it (`z.string().email()`):
/// one `@`, a non-empty local part, a dotted domain, no white space or control characters.
pub fn check_email(email: &str) -> Result<String, String> {
    let normalized = normalize_email(email);
    let invalid = |why: &str| Err(format!("email '{}' is not valid: {why}", email.trim()));
    if normalized.len() > 254 {
        return invalid("longer than 254 characters");
    }
    if normalized
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        return invalid("it contains white space");
    }
    let Some((local, domain)) = normalized.split_once('@') else {
        return invalid("it has no '@'");
    };
    if local.is_empty() || domain.contains('@') {
        return invalid("it needs exactly one '@' with a name before it");
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return invalid("dots may not start, end or repeat in the name");
    }
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2
        || labels
            .iter()
            .any(|l| l.is_empty() || l.starts_with('-') || l.ends_with('-'))
        || !labels
            .iter()
            .all(|l| l.chars().all(|c| c.is_alphanumeric() || c == '-'))
    {
        return invalid("the domain must look like example.com");
    }
    Ok(normalized)
}

/// What LibreChat's sign-in and registration check of an email accepts (zod 3's
/// `z.string().email()`, applied before every password login and registration): ASCII letters,
/// digits and `_'+-.` before the `@` (no leading dot, no `..`, ending in neither `.` nor `'`),
/// and a domain of labels of letters, digits and `-` (not starting with `-`) ending in a
/// top-level domain of two or more letters. An account whose email fails it can never log in
/// with a password, nor register through an invitation.
pub fn check_sign_in_email(email: &str) -> Result<(), String> {
    let email = email.trim();
    let refused = || {
        Err(format!(
            "email '{email}' would fail LibreChat's sign-in check (zod's email rule: ASCII letters, digits and _'+-. before the @, a domain ending in a top-level domain of letters only), so the person could never log in with a password"
        ))
    };
    let Some((local, domain)) = email.split_once('@') else {
        return refused();
    };
    let local_ok = local
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_'+-.".contains(c))
        && !local.starts_with('.')
        && local
            .chars()
            .last()
            .is_some_and(|c| c.is_ascii_alphanumeric() || "_+-".contains(c));
    let Some((labels, tld)) = domain.rsplit_once('.') else {
        return refused();
    };
    let domain_ok = labels.split('.').all(|label| {
        label.starts_with(|c: char| c.is_ascii_alphanumeric())
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    }) && tld.len() >= 2
        && tld.chars().all(|c| c.is_ascii_alphabetic());
    if !local_ok || !domain_ok || email.contains("..") {
        return refused();
    }
    Ok(())
}

/// LibreChat's username rule (`api/strategies/validators.js`): 2 to 80 characters, letters of
/// the scripts it lists, digits and `_.@#$%&*()`, and none of the sequences it treats as an
/// injection attempt. A username is always stored as a string, never used as a query.
pub fn check_username(username: &str) -> Result<(), String> {
    let count = username.chars().count();
    if !(2..=80).contains(&count) {
        return Err(format!("username must be 2 to 80 characters, not {count}"));
    }
    for forbidden in [
        "'", "--", "$ne", "$gt", "$lt", "$or", "$where", "{", "}", "*", ";", "<", ">", "/", "=",
    ] {
        if username.contains(forbidden) {
            return Err(format!("username may not contain '{forbidden}'"));
        }
    }
    if let Some(c) = username
        .chars()
        .find(|c| !(c.is_alphanumeric() || "_.@#$%&()".contains(*c)))
    {
        return Err(format!(
            "username may not contain '{c}': use letters, digits and _.@#$%&()"
        ));
    }
    Ok(())
}

/// LibreChat's registration rule for display names: 3 to 80 characters.
pub fn check_name(name: &str) -> Result<(), String> {
    let count = name.trim().chars().count();
    if !(3..=80).contains(&count) {
        return Err(format!("name must be 3 to 80 characters, not {count}"));
    }
    if name.chars().any(char::is_control) {
        return Err("name may not contain control characters".into());
    }
    Ok(())
}

/// Role names are keys in LibreChat's `roles` collection.
pub fn check_role(role: &str) -> Result<(), String> {
    if role.is_empty()
        || role.len() > 64
        || !role
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(format!("role '{role}' is not valid: use USER, ADMIN or a custom role name of letters, digits, '_' and '-'"));
    }
    Ok(())
}

/// LibreChat's password rule: `MIN_PASSWORD_LENGTH`..128 characters, not only white space.
/// The message never includes the password, nor its length: a `secretRef` may point at any
/// key of the namespace, and status is read by people who may not read Secrets.
pub fn check_password(password: &str, min_length: u32) -> Result<(), String> {
    // zod's min and max count a JavaScript string's length: UTF-16 code units.
    let count = password.encode_utf16().count() as u32;
    if count < min_length {
        return Err(format!(
            "the password is shorter than the {min_length} characters the instance requires"
        ));
    }
    if count > MAX_PASSWORD_LENGTH {
        return Err(format!(
            "the password is longer than the {MAX_PASSWORD_LENGTH} characters LibreChat accepts"
        ));
    }
    if password.trim().is_empty() {
        return Err("the password is only white space".into());
    }
    Ok(())
}

impl LibreChatUserSpec {
    /// Every problem with this spec, independent of the cluster. `min_password_length` bounds a
    /// generated password's length.
    pub fn problems(&self, min_password_length: u32) -> Problems {
        let mut problems = Problems::new();
        let email = check_email(&self.email);
        // A local account signs in through LibreChat's own check of the email; an SSO one
        // through its identity provider. An adopted account with no declared provider may be
        // either: its email is LibreChat's already.
        let adopted_as_is = self.provider.is_none() && self.adopt == Some(true);
        let local = self.provider() == super::user::Provider::Local && !adopted_as_is;
        let email = email.and_then(|_| match local {
            true => check_sign_in_email(&self.email),
            false => Ok(()),
        });
        if let Err(e) = email {
            problems.push(e);
        }
        if let Some(name) = &self.name {
            if let Err(e) = check_name(name) {
                problems.push(e);
            }
        }
        if let Some(username) = &self.username {
            if let Err(e) = check_username(username) {
                problems.push(e);
            }
        }
        if let Err(e) = check_role(self.role()) {
            problems.push(e);
        }
        if self.instance_ref.name.is_empty() {
            problems.push("instanceRef.name is required".into());
        }
        if let Some(password) = &self.password {
            if self.provider() != super::user::Provider::Local {
                problems.push(format!(
                    "password applies only to provider 'local', not '{}': SSO accounts log in through their identity provider",
                    self.provider().as_str()
                ));
            }
            match (&password.secret_ref, &password.generate) {
                (Some(_), Some(_)) => {
                    problems.push("password: set at most one of secretRef and generate".into())
                }
                (Some(r), None) if r.name.is_empty() || r.key.is_empty() => {
                    problems.push("password.secretRef needs both name and key".into())
                }
                (None, Some(g)) => {
                    let length = g
                        .length
                        .unwrap_or(super::user::DEFAULT_GENERATED_PASSWORD_LENGTH);
                    if g.secret_name.is_empty() {
                        problems.push("password.generate.secretName is required".into());
                    }
                    if length < min_password_length.max(8) || length > MAX_PASSWORD_LENGTH {
                        problems.push(format!(
                            "password.generate.length must be between {} and {MAX_PASSWORD_LENGTH}",
                            min_password_length.max(8)
                        ));
                    }
                }
                _ => {}
            }
        }
        if let Some(balance) = &self.balance {
            problems.extend(balance.problems());
        }
        problems.extend(super::plugins::plugin_problems(&self.plugins));
        let now = jiff::Timestamp::now();
        for (field, value) in self.triggers() {
            if let Some(value) = value {
                if let Err(e) = check_trigger(value, now) {
                    problems.push(format!("{field}: {e}"));
                }
            }
        }
        if self.resend_verification_at.is_some() && self.email_verified() {
            problems.push(
                "resendVerificationAt applies only with emailVerified: false (a verified account needs no link)"
                    .into(),
            );
        }
        problems
    }

    /// The one-shot trigger fields, by their names in the API.
    pub fn triggers(&self) -> [(&'static str, Option<&str>); 3] {
        [
            ("logoutAt", self.logout_at.as_deref()),
            ("resetTwoFactorAt", self.reset_two_factor_at.as_deref()),
            (
                "resendVerificationAt",
                self.resend_verification_at.as_deref(),
            ),
        ]
    }
}

/// How far a trigger may be ahead of this clock (another machine's clock may run ahead).
const TRIGGER_CLOCK_SKEW: jiff::SignedDuration = jiff::SignedDuration::from_secs(60);

/// A trigger time: RFC 3339, not in the future (a future time would fire at a moment nobody
/// chose, or never, depending on clocks).
pub fn check_trigger(value: &str, now: jiff::Timestamp) -> Result<jiff::Timestamp, String> {
    let at: jiff::Timestamp = value.parse().map_err(|_| {
        format!("'{value}' is not an RFC 3339 time such as 2026-12-02T16:00:00Z; set it to the current time")
    })?;
    if at > now + TRIGGER_CLOCK_SKEW {
        return Err(format!(
            "'{value}' is in the future; set it to the current time to apply the action now"
        ));
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_domains_are_keyed_by_namespace_or_star_and_list_domains() {
        let policy = |ns: &str, domain: &str| super::super::instance::TenantPolicy {
            email_domains: Some([(ns.to_string(), vec![domain.to_string()])].into()),
            ..Default::default()
        };
        for (ns, domain) in [("team-a", "a.example.com"), ("*", "*.Example.com")] {
            assert!(email_domain_problems(Some(&policy(ns, domain))).is_empty());
        }
        for (ns, domain) in [
            ("Team_A", "a.example.com"),
            ("team-a", "@a.example.com"),
            ("team-a", "localhost"),
            ("team-a", "*"),
            ("team-a", "a..example.com"),
            ("team-a", "*.*.example.com"),
        ] {
            assert_eq!(
                email_domain_problems(Some(&policy(ns, domain))).len(),
                1,
                "{ns}: {domain}"
            );
        }
    }

    #[test]
    fn emails_are_trimmed_and_lowercased() {
        assert_eq!(
            check_email("  Jane.Doe@Example.COM ").unwrap(),
            "jane.doe@example.com"
        );
    }

    #[test]
    fn bad_emails_are_refused() {
        for bad in [
            "",
            "jane",
            "jane@",
            "@example.com",
            "jane@example",
            "ja ne@example.com",
            "a@b@c.com",
            "jane@.com",
            "x@-a.com",
        ] {
            assert!(check_email(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn sign_in_emails_follow_zods_rule() {
        for good in [
            "jane@example.com",
            "Jane.Doe+tag@Mail.Example.co",
            "o'brien@example.com",
            "a_b-c@sub-1.example.io",
        ] {
            assert!(check_sign_in_email(good).is_ok(), "{good:?} should pass");
        }
        for bad in [
            "first!last@example.com",
            "josé@example.com",
            "jane@exämple.com",
            "a@example.c0m",
            "a@example.c",
            "jane.@example.com",
            ".jane@example.com",
            "ja..ne@example.com",
            "jane'@example.com",
            "jane@-example.com",
            "jane@example..com",
        ] {
            assert!(check_sign_in_email(bad).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn the_sign_in_rule_is_for_accounts_that_sign_in_with_a_password() {
        let user = |extra: serde_json::Value| {
            let mut spec =
                serde_json::json!({ "instanceRef": { "name": "lc" }, "email": "josé@example.com" });
            spec.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            serde_json::from_value::<LibreChatUserSpec>(spec).unwrap()
        };
        let refused = |spec: LibreChatUserSpec| !spec.problems(8).is_empty();
        assert!(refused(user(serde_json::json!({}))), "a local account");
        assert!(refused(user(
            serde_json::json!({ "provider": "local", "adopt": true })
        )));
        assert!(!refused(user(serde_json::json!({ "provider": "openid" }))));
        // Adopted as it is: the provider may be any, and the email is LibreChat's already.
        assert!(!refused(user(serde_json::json!({ "adopt": true }))));
    }

    #[test]
    fn password_length_counts_what_javascript_counts() {
        // 65 emoji: 65 characters, 130 UTF-16 units, over zod's max(128).
        assert!(check_password(&"😀".repeat(65), 8).is_err());
        // 4 emoji: 4 characters, 8 UTF-16 units, zod's min(8) passes.
        assert!(check_password(&"😀".repeat(4), 8).is_ok());
    }

    #[test]
    fn usernames_that_look_like_queries_are_refused() {
        for bad in [
            r#"{"$ne": ""}"#,
            "$where",
            "a",
            "x' or 1=1 --",
            "bob;drop",
            "a/b",
        ] {
            assert!(check_username(bad).is_err(), "{bad:?} should be refused");
        }
        for good in ["janed", "jane.doe", "李小龙", "user_1@team", "o(k)"] {
            assert!(check_username(good).is_ok(), "{good:?} should be accepted");
        }
    }

    #[test]
    fn passwords_respect_the_policy_and_never_echo() {
        let refused = check_password("tiny", 8).unwrap_err();
        assert!(refused.contains("the 8 characters"), "{refused}");
        // Neither the password nor its length (a secretRef may name any key of the namespace).
        assert!(
            !refused.contains("tiny") && !refused.contains('4'),
            "{refused}"
        );
        assert!(check_password(&"x".repeat(129), 8).is_err());
        assert!(check_password("         ", 8).is_err());
        assert!(check_password("long enough", 8).is_ok());
    }

    #[test]
    fn names_and_roles() {
        assert!(check_name("Jo").is_err());
        assert!(check_name(&"n".repeat(81)).is_err());
        assert!(check_name("Jane Doe").is_ok());
        assert!(check_role("ADMIN").is_ok());
        assert!(check_role("").is_err());
        assert!(check_role("$where").is_err());
    }
}

/// A ban's window: when it started and when it ends (`None`: permanent), epoch ms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BanWindow {
    pub start_ms: i64,
    pub end_ms: Option<i64>,
}

impl super::instance::LibreChatInstanceSpec {
    /// The rules the controller enforces itself, since old API servers drop CEL rules.
    pub fn problems(&self) -> Problems {
        let mut problems = Vec::new();
        if self.mongo.uri_secret_ref.name.is_empty() || self.mongo.uri_secret_ref.key.is_empty() {
            problems.push("mongo.uriSecretRef needs both name and key".into());
        }
        if let Some(p) = self.resync_period.as_deref() {
            match super::duration::parse_duration(p) {
                Err(e) => problems.push(format!("resyncPeriod: {e}")),
                Ok(d) if d < std::time::Duration::from_secs(1) => {
                    problems.push("resyncPeriod must be at least 1s".into())
                }
                Ok(_) => {}
            }
        }
        if let Some(min) = self.password_policy.as_ref().and_then(|p| p.min_length) {
            if !(1..=super::instance::MAX_PASSWORD_LENGTH).contains(&min) {
                problems.push("passwordPolicy.minLength must be between 1 and 128".into());
            }
        }
        if let Some(url) = self.domain_client.as_deref() {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                problems.push(format!(
                    "domainClient '{url}' must be an http:// or https:// URL"
                ));
            }
        }
        let confirmed = self
            .deletion_guard
            .as_ref()
            .and_then(|g| g.confirmed_until.as_deref());
        if let Some(t) = confirmed {
            if t.parse::<jiff::Timestamp>().is_err() {
                problems.push(format!(
                    "deletionGuard.confirmedUntil '{t}' is not an RFC 3339 time such as 2026-12-02T18:00:00Z"
                ));
            }
        }
        if let Some(balance) = &self.balance {
            problems.extend(balance.problems());
        }
        if let Some(terms) = &self.terms {
            problems.extend(terms.problems());
        }
        if self
            .credentials
            .as_ref()
            .is_some_and(|c| c.secret_ref.name.is_empty())
        {
            problems.push("credentials.secretRef.name is required".into());
        }
        problems.extend(email_domain_problems(self.tenant_policy.as_ref()));
        problems
    }
}

/// What is wrong with `tenantPolicy.emailDomains`: keys are namespace names or `*`, values
/// domain names, optionally `*.` for their subdomains.
fn email_domain_problems(policy: Option<&super::instance::TenantPolicy>) -> Problems {
    let Some(by_namespace) = policy.and_then(|p| p.email_domains.as_ref()) else {
        return Vec::new();
    };
    let mut problems = Vec::new();
    for (namespace, domains) in by_namespace {
        if namespace != "*" && !is_dns_label(namespace) {
            problems.push(format!(
                "tenantPolicy.emailDomains: '{namespace}' is not a namespace name or *"
            ));
        }
        for domain in domains {
            let name = domain.strip_prefix("*.").unwrap_or(domain);
            if !name.contains('.') || !name.split('.').all(is_dns_label_any_case) {
                problems.push(format!("tenantPolicy.emailDomains.{namespace}: '{domain}' is not a domain such as example.com or *.example.com"));
            }
        }
    }
    problems
}

fn is_dns_label(s: &str) -> bool {
    is_dns_label_any_case(s) && !s.bytes().any(|b| b.is_ascii_uppercase())
}

fn is_dns_label_any_case(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// When a ban of `length` begun at `start_ms` ends (epoch ms); `None` past the last time an
/// RFC 3339 `until` can name (the year 9999): a longer one would overflow, or come out past
/// what LibreChat's `Date` can hold, and read as ended or permanent.
fn ban_end(start_ms: i64, length: std::time::Duration) -> Option<i64> {
    let end = start_ms.checked_add(i64::try_from(length.as_millis()).ok()?)?;
    (end <= jiff::Timestamp::MAX.as_millisecond()).then_some(end)
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

impl super::ban::UserBanSpec {
    /// The ban's window, counted from `created_ms` (the object's creation). Errors are the
    /// spec's problems.
    pub fn window(&self, created_ms: i64) -> Result<BanWindow, Problems> {
        let problems = self.problems(Some(created_ms));
        if !problems.is_empty() {
            return Err(problems);
        }
        let end_ms = match (&self.duration, &self.until) {
            (Some(d), None) => super::duration::parse_duration(d)
                .ok()
                .and_then(|d| ban_end(created_ms, d)),
            (None, Some(u)) => u
                .parse::<jiff::Timestamp>()
                .ok()
                .map(|t| t.as_millisecond()),
            _ => None,
        };
        Ok(BanWindow {
            start_ms: created_ms,
            end_ms,
        })
    }

    /// Every problem with this spec. With `created_ms`, an `until` before the object existed
    /// is refused (a ban that ended before it began is a mistake, not a ban).
    pub fn problems(&self, created_ms: Option<i64>) -> Problems {
        let mut problems = Problems::new();
        let targets = [
            self.user_ref.is_some(),
            self.email.is_some(),
            self.ip.is_some(),
        ]
        .iter()
        .filter(|t| **t)
        .count();
        if targets != 1 {
            problems.push(format!(
                "set exactly one of userRef, email and ip (found {targets})"
            ));
        }
        if let Some(r) = &self.user_ref {
            if r.name.is_empty() {
                problems.push("userRef.name is required".into());
            }
        }
        if let Some(email) = &self.email {
            if let Err(e) = check_email(email) {
                problems.push(e);
            }
        }
        if let Some(ip) = &self.ip {
            if ip.trim().parse::<std::net::IpAddr>().is_err() {
                problems.push(format!(
                    "ip '{ip}' is not an IPv4 or IPv6 address (write it without a port)"
                ));
            }
        }
        match (&self.duration, &self.until) {
            (Some(_), Some(_)) => problems.push("set at most one of duration and until".into()),
            (Some(d), None) => match super::duration::parse_duration(d) {
                Err(e) => problems.push(format!("duration: {e}")),
                Ok(d) if d.is_zero() => problems
                    .push("duration must be more than zero; omit it for a permanent ban".into()),
                Ok(length) if ban_end(created_ms.unwrap_or_else(now_ms), length).is_none() => {
                    problems.push(format!(
                        "duration '{d}' would end the ban after the year 9999; omit it for a permanent ban"
                    ))
                }
                Ok(_) => {}
            },
            (None, Some(u)) => match u.parse::<jiff::Timestamp>() {
                Err(_) => problems.push(format!(
                    "until '{u}' is not an RFC 3339 time such as 2030-01-31T18:00:00Z"
                )),
                Ok(t) if created_ms.is_some_and(|c| t.as_millisecond() <= c) => problems.push(
                    format!("until '{u}' is in the past: the ban would never be in force"),
                ),
                Ok(_) => {}
            },
            (None, None) => {}
        }
        if self.instance_ref.name.is_empty() {
            problems.push("instanceRef.name is required".into());
        }
        problems
    }
}

#[cfg(test)]
mod ban_tests {
    use super::super::ban::{UserBanSpec, UserRef};
    use super::super::common::InstanceRef;

    fn spec() -> UserBanSpec {
        UserBanSpec {
            instance_ref: InstanceRef {
                name: "lc".into(),
                namespace: None,
            },
            ..Default::default()
        }
    }

    #[test]
    fn exactly_one_target() {
        assert!(!spec().problems(None).is_empty());
        let both = UserBanSpec {
            email: Some("a@example.com".into()),
            ip: Some("10.0.0.1".into()),
            ..spec()
        };
        assert!(!both.problems(None).is_empty());
        let one = UserBanSpec {
            user_ref: Some(UserRef {
                name: "jane".into(),
            }),
            ..spec()
        };
        assert!(one.problems(None).is_empty());
    }

    #[test]
    fn durations_and_ends() {
        let base = UserBanSpec {
            ip: Some("2001:db8::1".into()),
            ..spec()
        };
        let d = UserBanSpec {
            duration: Some("90m".into()),
            ..base.clone()
        };
        assert_eq!(d.window(1_000).unwrap().end_ms, Some(1_000 + 5_400_000));
        assert_eq!(base.window(1_000).unwrap().end_ms, None);
        // Past the year 9999, or past what an i64 of milliseconds holds: refused, never
        // wrapped to a ban that ended already (or a panic).
        let long = UserBanSpec {
            duration: Some("2000000d".into()),
            ..base.clone()
        };
        assert_eq!(
            long.window(1_000).unwrap().end_ms,
            Some(1_000 + 2_000_000 * 86_400_000)
        );
        for bad in [
            "-5m",
            "0s",
            "soon",
            "150000000000d",
            "106751991167300d",
            "4000000d",
        ] {
            assert!(
                !UserBanSpec {
                    duration: Some(bad.into()),
                    ..base.clone()
                }
                .problems(None)
                .is_empty(),
                "{bad}"
            );
        }
        let past = UserBanSpec {
            until: Some("2001-01-01T00:00:00Z".into()),
            ..base.clone()
        };
        assert!(!past.problems(Some(1_700_000_000_000)).is_empty());
        let bad_ip = UserBanSpec {
            ip: Some("300.1.1.1".into()),
            ..spec()
        };
        assert!(!bad_ip.problems(None).is_empty());
    }
}

/// The longest invitation the operator issues. LibreChat's own invites last 7 days; a link
/// that works for more than a year is a standing credential, not an invitation.
pub const MAX_INVITE_LIFETIME: std::time::Duration = std::time::Duration::from_secs(365 * 86_400);
/// LibreChat's TTL monitor removes expired tokens only about once a minute, so the operator
/// revokes an invite itself at its end; any positive lifetime is therefore honoured exactly.
pub const MIN_INVITE_LIFETIME: std::time::Duration = std::time::Duration::from_secs(1);

impl super::invite::UserInviteSpec {
    /// The invite's lifetime, or the spec's problems.
    pub fn lifetime(&self) -> Result<std::time::Duration, Problems> {
        let mut problems = Problems::new();
        // The invited person registers through LibreChat's check of the email.
        if let Err(e) = check_email(&self.email).and_then(|_| check_sign_in_email(&self.email)) {
            problems.push(e);
        }
        if self.instance_ref.name.is_empty() {
            problems.push("instanceRef.name is required".into());
        }
        if let Some(name) = &self.secret_name {
            let valid = !name.is_empty()
                && name.len() <= 253
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
                && name.starts_with(|c: char| c.is_ascii_alphanumeric())
                && name.ends_with(|c: char| c.is_ascii_alphanumeric());
            if !valid {
                problems.push(format!("secretName '{name}' is not a valid Secret name (lower-case letters, digits, '-', '.')"));
            }
        }
        let text = self
            .expires_in
            .as_deref()
            .unwrap_or(super::invite::DEFAULT_INVITE_LIFETIME);
        let lifetime = match super::duration::parse_duration(text) {
            Err(e) => {
                problems.push(format!("expiresIn: {e}"));
                None
            }
            Ok(d) if d < MIN_INVITE_LIFETIME => {
                problems.push(format!("expiresIn '{text}' is too short: at least 1s"));
                None
            }
            Ok(d) if d > MAX_INVITE_LIFETIME => {
                problems.push(format!("expiresIn '{text}' is too long: at most 365d"));
                None
            }
            Ok(d) => Some(d),
        };
        match lifetime {
            Some(d) if problems.is_empty() => Ok(d),
            _ => Err(problems),
        }
    }
}

#[cfg(test)]
mod invite_tests {
    use super::super::common::InstanceRef;
    use super::super::invite::UserInviteSpec;

    fn spec(expires_in: Option<&str>) -> UserInviteSpec {
        UserInviteSpec {
            instance_ref: InstanceRef {
                name: "lc".into(),
                namespace: None,
            },
            email: "new@example.com".into(),
            expires_in: expires_in.map(str::to_string),
            ..Default::default()
        }
    }

    #[test]
    fn lifetimes() {
        assert_eq!(spec(None).lifetime().unwrap().as_secs(), 7 * 86_400);
        for bad in ["0s", "-1h", "500ms", "400d", "soon"] {
            assert!(spec(Some(bad)).lifetime().is_err(), "{bad}");
        }
        let bad_name = UserInviteSpec {
            secret_name: Some("Bad_Name".into()),
            ..spec(None)
        };
        assert!(bad_name.lifetime().is_err());
    }

    #[test]
    fn trigger_times_must_parse_and_not_lie_ahead() {
        let now: jiff::Timestamp = "2026-12-02T16:00:00Z".parse().unwrap();
        assert!(super::check_trigger("2026-12-02T15:59:00Z", now).is_ok());
        assert!(
            super::check_trigger("2026-12-02T16:00:30Z", now).is_ok(),
            "clock skew"
        );
        let ahead = super::check_trigger("2026-12-02T17:00:00Z", now).unwrap_err();
        assert!(ahead.contains("future"), "{ahead}");
        let garbage = super::check_trigger("now", now).unwrap_err();
        assert!(garbage.contains("RFC 3339"), "{garbage}");
    }
}
