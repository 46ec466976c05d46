//! The terms-of-service and balance parts of the instance and user kinds: LibreChat's
//! `balance` configuration, per-user credit grants and auto-refill settings, the terms
//! version, and what status shows of them.

use std::collections::HashSet;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::validate::Problems;

/// LibreChat's default `balance.startBalance`.
pub const DEFAULT_START_BALANCE: i64 = 20000;
/// LibreChat's default `balance.refillIntervalValue`.
pub const DEFAULT_REFILL_INTERVAL_VALUE: i64 = 30;
/// LibreChat's default `balance.refillAmount`.
pub const DEFAULT_REFILL_AMOUNT: i64 = 10000;
/// The largest credit amount accepted: JavaScript's safe integer range, since LibreChat keeps
/// credits as JavaScript numbers.
pub const MAX_CREDITS: i64 = 9_007_199_254_740_991;

/// LibreChat's refill interval units.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RefillUnit {
    Seconds,
    Minutes,
    Hours,
    #[default]
    Days,
    Weeks,
    Months,
}

impl RefillUnit {
    pub fn as_str(self) -> &'static str {
        match self {
            RefillUnit::Seconds => "seconds",
            RefillUnit::Minutes => "minutes",
            RefillUnit::Hours => "hours",
            RefillUnit::Days => "days",
            RefillUnit::Weeks => "weeks",
            RefillUnit::Months => "months",
        }
    }
}

/// Mirrors the `balance` block of LibreChat's `librechat.yaml`, so that accounts the operator
/// creates get the balance record LibreChat's registration would give them. Keep it equal to
/// the deployment's yaml.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BalanceConfig {
    /// `balance.enabled` (default false). Credit grants need it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// `balance.startBalance` (default 20000): the credits of a new account; 0 creates no record,
    /// as in LibreChat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub start_balance: Option<i64>,
    /// `balance.autoRefillEnabled` (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_refill_enabled: Option<bool>,
    /// `balance.refillIntervalValue` (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub refill_interval_value: Option<i64>,
    /// `balance.refillIntervalUnit`: seconds, minutes, hours, days (default), weeks, months.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "RefillUnit")]
    pub refill_interval_unit: Option<RefillUnit>,
    /// `balance.refillAmount` (default 10000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub refill_amount: Option<i64>,
}

impl BalanceConfig {
    pub fn enabled(&self) -> bool {
        self.enabled.unwrap_or(false)
    }
    pub fn start_balance(&self) -> i64 {
        self.start_balance.unwrap_or(DEFAULT_START_BALANCE)
    }
    /// The refill settings registration writes: only when auto-refill is enabled (all three
    /// values have defaults, so they are always set).
    pub fn auto_refill(&self) -> Option<AutoRefill> {
        self.auto_refill_enabled
            .unwrap_or(false)
            .then(|| AutoRefill {
                enabled: Some(true),
                interval_value: Some(
                    self.refill_interval_value
                        .unwrap_or(DEFAULT_REFILL_INTERVAL_VALUE),
                ),
                interval_unit: Some(self.refill_interval_unit.unwrap_or_default()),
                amount: Some(self.refill_amount.unwrap_or(DEFAULT_REFILL_AMOUNT)),
            })
    }
}

/// The version of the terms of service users must accept.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TermsSpec {
    /// Any label of the current terms (`2026-12`, `v3`). When it changes, every account's
    /// acceptance is reset once, as LibreChat's `reset-terms` does, so LibreChat's web client
    /// asks everyone again (with `interface.termsOfService.modalAcceptance: true`). The first
    /// version declared on an instance is recorded without a reset.
    #[schemars(length(min = 1, max = 128))]
    pub version: String,
}

/// A user's balance, as declared.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserBalance {
    /// Credits added once each (whole numbers of at least 1), as LibreChat's `add-balance` does: a
    /// `transactions` entry and the balance updated. Removing a grant never undoes it. Ids are
    /// unique within the object. Needs the instance's `balance.enabled`; from a tenant
    /// namespace, the instance's `tenantPolicy.grantCredits`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 200))]
    pub grants: Vec<CreditGrant>,
    /// This account's auto-refill settings, written to its balance record. LibreChat overwrites
    /// them at the user's next login when its yaml enables auto-refill.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_refill: Option<AutoRefill>,
}

/// One grant of credits.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreditGrant {
    /// Names the grant; it is applied once per id and account, ever (an object re-created
    /// under the same name for the same account finds it applied).
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")
    )]
    pub id: String,
    /// Credits to add: a whole number of at least 1, as `add-balance` adds them. A grant never
    /// takes credits away (spending is LibreChat's business).
    #[schemars(with = "i64")]
    #[schemars(range(min = 1, max = 9_007_199_254_740_991_i64))]
    pub credits: serde_json::Number,
    /// Why, for the audit trail (shown in the event).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub reason: Option<String>,
}

impl CreditGrant {
    /// The credits as a positive integer within LibreChat's range, if they are one.
    pub fn credits(&self) -> Option<i64> {
        self.credits
            .as_i64()
            .filter(|c| (1..=MAX_CREDITS).contains(c))
    }
}

/// Auto-refill settings of one balance record.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutoRefill {
    /// `autoRefillEnabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// `refillIntervalValue`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub interval_value: Option<i64>,
    /// `refillIntervalUnit`: seconds, minutes, hours, days, weeks, months.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "RefillUnit")]
    pub interval_unit: Option<RefillUnit>,
    /// `refillAmount`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub amount: Option<i64>,
}

/// What the operator observed of a user's balance.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserBalanceStatus {
    /// The credits LibreChat reads (its oldest balance record); absent without a record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_credits: Option<i64>,
    /// Ids of the declared grants that are applied.
    #[serde(default)]
    pub grants_applied: Vec<String>,
}

/// The terms version in force on an instance.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TermsStatus {
    /// The version whose acceptance the accounts now record (mirrors the operator's record in
    /// the instance's database, which is the truth).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_version: Option<String>,
    /// When it was applied (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_at: Option<String>,
    /// Whether applying it reset every acceptance (false for the first version declared).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset: Option<bool>,
}

fn non_negative(problems: &mut Problems, at: &str, value: Option<i64>) {
    if value.is_some_and(|v| !(0..=MAX_CREDITS).contains(&v)) {
        problems.push(format!("{at} must be between 0 and {MAX_CREDITS}"));
    }
}

impl BalanceConfig {
    pub fn problems(&self) -> Problems {
        let mut problems = Problems::new();
        non_negative(&mut problems, "balance.startBalance", self.start_balance);
        non_negative(
            &mut problems,
            "balance.refillIntervalValue",
            self.refill_interval_value,
        );
        non_negative(&mut problems, "balance.refillAmount", self.refill_amount);
        problems
    }
}

impl TermsSpec {
    pub fn problems(&self) -> Problems {
        let v = self.version.trim();
        if v.is_empty() || v.len() > 128 {
            return vec!["terms.version must be 1 to 128 characters".into()];
        }
        Problems::new()
    }
}

impl UserBalance {
    pub fn problems(&self) -> Problems {
        let mut problems = Problems::new();
        let mut seen = HashSet::new();
        for (i, grant) in self.grants.iter().enumerate() {
            let at = format!("balance.grants[{i}]");
            if grant.id.is_empty() || grant.id.len() > 63 || !grant_id_ok(&grant.id) {
                problems.push(format!("{at}.id must be 1 to 63 letters, digits, '.', '_' or '-', starting and ending with a letter or digit"));
            } else if !seen.insert(grant.id.as_str()) {
                problems.push(format!(
                    "{at}.id '{}' is used twice: each grant needs its own id",
                    grant.id
                ));
            }
            if grant.credits().is_none() {
                problems.push(format!("{at}.credits must be a whole number of credits from 1 to {MAX_CREDITS}, not {}", grant.credits));
            }
            if grant.reason.as_ref().is_some_and(|r| r.len() > 256) {
                problems.push(format!("{at}.reason must be at most 256 characters"));
            }
        }
        if let Some(refill) = &self.auto_refill {
            non_negative(
                &mut problems,
                "balance.autoRefill.intervalValue",
                refill.interval_value,
            );
            non_negative(&mut problems, "balance.autoRefill.amount", refill.amount);
        }
        problems
    }
}

fn grant_id_ok(id: &str) -> bool {
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    edge(id.chars().next())
        && edge(id.chars().last())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(id: &str, credits: serde_json::Value) -> CreditGrant {
        CreditGrant {
            id: id.into(),
            credits: serde_json::from_value(credits).unwrap(),
            reason: None,
        }
    }

    #[test]
    fn grants_need_unique_ids_and_whole_credits() {
        let ok = UserBalance {
            grants: vec![
                grant("a", serde_json::json!(5)),
                grant("b", serde_json::json!(3)),
            ],
            auto_refill: None,
        };
        assert!(ok.problems().is_empty());
        let bad = UserBalance {
            grants: vec![
                grant("a", serde_json::json!(5)),
                grant("a", serde_json::json!(1.5)),
                grant("-x", serde_json::json!(1)),
                grant("neg", serde_json::json!(-3)),
                grant("zero", serde_json::json!(0)),
            ],
            auto_refill: None,
        };
        let p = bad.problems().join("; ");
        assert!(p.contains("used twice"), "{p}");
        assert!(p.contains("whole number"), "{p}");
        assert!(p.contains("grants[2].id"), "{p}");
        assert!(p.contains("grants[3].credits"), "{p}");
        assert!(p.contains("grants[4].credits"), "{p}");
    }

    #[test]
    fn config_defaults_are_librechats() {
        let c = BalanceConfig {
            enabled: Some(true),
            auto_refill_enabled: Some(true),
            ..Default::default()
        };
        assert_eq!(c.start_balance(), 20000);
        let r = c.auto_refill().unwrap();
        assert_eq!(r.interval_value, Some(30));
        assert_eq!(r.interval_unit, Some(RefillUnit::Days));
        assert_eq!(r.amount, Some(10000));
        assert!(BalanceConfig::default().auto_refill().is_none());
    }
}
