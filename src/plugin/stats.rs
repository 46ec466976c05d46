//! `kubectl librechat stats`: the instance's counts read live from its database, and with
//! `--per-user` the conversations and messages of every account as LibreChat's `user-stats`
//! script lists them.

use serde::Serialize;

use super::cluster::{instance_key, Cluster};
use super::error::PluginError;
use super::reach::Reach;
use super::table::Table;
use super::usage::{self, UserUsage};

/// What `stats` prints.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", untagged)]
pub enum StatsReport {
    Totals(Totals),
    PerUser(Vec<UserUsage>),
}

/// The instance's counts, as `status.stats` has them but read now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Totals {
    pub instance: String,
    pub users: u64,
    pub managed_users: u64,
    pub verified_users: u64,
    pub active_bans: u64,
    pub pending_invites: u64,
}

pub async fn gather(
    cluster: &Cluster,
    instance: Option<&str>,
    per_user: bool,
    reach: &Reach,
) -> Result<StatsReport, PluginError> {
    let instance = cluster.instance(&cluster.namespace, instance).await?;
    let (_client, store) = cluster.store(&instance, reach).await?;
    if per_user {
        return Ok(StatsReport::PerUser(usage::per_user(&store).await?));
    }
    let s = store.stats().await?;
    Ok(StatsReport::Totals(Totals {
        instance: instance_key(&instance),
        users: s.users,
        managed_users: s.managed_users,
        verified_users: s.verified_users,
        active_bans: s.active_bans,
        pending_invites: s.pending_invites,
    }))
}

pub fn render_text(report: &StatsReport) -> String {
    match report {
        StatsReport::Totals(t) => {
            let mut table = Table::new(&[
                "INSTANCE",
                "USERS",
                "MANAGED",
                "VERIFIED",
                "ACTIVE BANS",
                "PENDING INVITES",
            ]);
            table.row([
                t.instance.clone(),
                t.users.to_string(),
                t.managed_users.to_string(),
                t.verified_users.to_string(),
                t.active_bans.to_string(),
                t.pending_invites.to_string(),
            ]);
            table.render()
        }
        StatsReport::PerUser(rows) => {
            let mut table = Table::new(&["EMAIL", "NAME", "CONVERSATIONS", "MESSAGES"]);
            for r in rows {
                table.row([
                    r.email.clone(),
                    r.name.clone().unwrap_or_else(|| "-".into()),
                    r.conversations.to_string(),
                    r.messages.to_string(),
                ]);
            }
            table.render()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_user_rows_print_as_a_table_and_as_a_json_array() {
        let report = StatsReport::PerUser(vec![UserUsage {
            id: "abc".into(),
            email: "ann@example.com".into(),
            name: None,
            conversations: 2,
            messages: 7,
        }]);
        assert_eq!(
            render_text(&report),
            "EMAIL             NAME   CONVERSATIONS   MESSAGES\nann@example.com   -      2               7\n"
        );
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json[0]["conversations"], 2);
        assert_eq!(json[0]["email"], "ann@example.com");
    }
}
