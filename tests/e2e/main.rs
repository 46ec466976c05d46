//! End-to-end tests against a real kube-apiserver, a real MongoDB-wire server and real Redis.
//! Each test gets its own namespace, database and operator process, so tests run in parallel.
//! Run through `make test`, which starts the servers and sets KUBECONFIG, MONGODB_URI, REDIS_URL.

mod blackhole;
mod support;
// The CEL rule cases, shared with tests/cel_rules.rs.
#[path = "../cel_cases/mod.rs"]
mod cel_cases;

mod access;
mod account_actions;
mod audit;
mod balance;
mod ban;
mod cascade;
mod cel;
mod feeds;
mod gitops;
mod health;
mod instance;
mod invite;
mod invite_trust;
mod ops;
mod plugin;
mod plugins;
mod rbac;
mod terms;
mod trust;
mod user;
