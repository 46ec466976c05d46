//! librechat-operator: LibreChat accounts, bans and invites declared as Kubernetes objects.
//!
//! Data flows one way: an object → its reconciler ([`controller`]) → LibreChat's stores
//! ([`librechat`]) → the object's status. The two halves do not know each other's world:
//! `librechat` knows nothing of Kubernetes, `controller` nothing of MongoDB.

pub mod api;
pub mod controller;
pub mod export;
pub mod fault;
pub mod health;
pub mod leader;
pub mod librechat;
pub mod mail;
pub mod metrics;
pub mod plugin;
pub mod telemetry;
