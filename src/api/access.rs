//! What `LibreChatGroup` and `LibreChatRole` share: grants of access to LibreChat resources.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The kinds of LibreChat resource a group or role can be given access to (ACL
/// `resourceType`s, contract-surface §5.2).
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum ResourceType {
    Agent,
    PromptGroup,
    McpServer,
    Skill,
}

impl ResourceType {
    /// The ACL `resourceType` value.
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceType::Agent => "agent",
            ResourceType::PromptGroup => "promptGroup",
            ResourceType::McpServer => "mcpServer",
            ResourceType::Skill => "skill",
        }
    }
}

/// LibreChat's permission bundles (`RoleBits`).
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum AccessLevel {
    /// View (1).
    Viewer,
    /// View and edit (3).
    Editor,
    /// View, edit and delete (7).
    Manager,
    /// View, edit, delete and share (15).
    Owner,
}

impl AccessLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            AccessLevel::Viewer => "viewer",
            AccessLevel::Editor => "editor",
            AccessLevel::Manager => "manager",
            AccessLevel::Owner => "owner",
        }
    }
    /// The ACL `permBits`.
    pub fn bits(self) -> i32 {
        match self {
            AccessLevel::Viewer => 1,
            AccessLevel::Editor => 3,
            AccessLevel::Manager => 7,
            AccessLevel::Owner => 15,
        }
    }
}

/// Access to one existing LibreChat resource, as LibreChat's sharing dialog gives it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessGrant {
    /// `agent`, `promptGroup`, `mcpServer` or `skill`.
    pub resource_type: ResourceType,
    /// The resource's `_id` (24 hex digits); an agent may also be named by its `agent_…` id.
    #[schemars(length(min = 1, max = 256))]
    pub resource_id: String,
    /// `viewer`, `editor`, `manager` or `owner`.
    pub access: AccessLevel,
}

/// What the operator observed of one grant.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GrantStatus {
    pub resource_type: String,
    pub resource_id: String,
    /// `Granted`, or why not: `ResourceNotFound`, `NotPermitted`, `Conflict`.
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Checks grants: ids well-formed, no resource twice.
pub fn check_grants(grants: &[AccessGrant]) -> Result<(), String> {
    let mut seen = std::collections::BTreeSet::new();
    for g in grants {
        let hex = g.resource_id.len() == 24 && g.resource_id.chars().all(|c| c.is_ascii_hexdigit());
        let agent_id = g.resource_type == ResourceType::Agent
            && g.resource_id.starts_with("agent_")
            && g.resource_id.len() > 6
            && g.resource_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !hex && !agent_id {
            return Err(format!(
                "grant resourceId '{}' is not a LibreChat id: use the {}'s _id (24 hex digits){}",
                g.resource_id,
                g.resource_type.as_str(),
                if g.resource_type == ResourceType::Agent {
                    " or its agent_… id"
                } else {
                    ""
                }
            ));
        }
        if !seen.insert((g.resource_type, g.resource_id.to_ascii_lowercase())) {
            return Err(format!(
                "the {} {} is granted twice; one grant per resource",
                g.resource_type.as_str(),
                g.resource_id
            ));
        }
    }
    Ok(())
}
