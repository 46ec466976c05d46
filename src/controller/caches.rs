//! The watch scopes' caches of LibreChatUsers and UserInvites, read where a reconcile would
//! otherwise ask the API server for objects the operator already holds:
//!
//! - whether another namespace declares an email, asked by a tenant's invitation before its
//!   link is issued. A LIST of every user and invite per reconcile made each new invitation,
//!   and each retry of one waiting for its Secret, cost the API server the whole cluster's
//!   users and invites: a tenant could load it at will with a few stuck invitations;
//! - the LibreChatUsers groups and bans name by `userRef` (a GET per member, per ban, per
//!   reconcile before).
//!
//! Complete only once every scope's caches have synced ([`Context::synced`]); until then the
//! callers ask the API server.
//!
//! [`Context::synced`]: super::context::Context::synced

use std::sync::{Arc, RwLock};

use kube::api::Api;
use kube::runtime::reflector::{ObjectRef, Store};

use super::context::Context;
use super::user_watch::{UserIndex, UserKey};
use crate::api::validate::normalize_email;
use crate::api::{LibreChatUser, UserInvite};

/// The caches of every watch scope.
#[derive(Default)]
pub struct WatchCaches {
    scopes: RwLock<Vec<ScopeCaches>>,
}

struct ScopeCaches {
    users: Store<LibreChatUser>,
    users_by_key: Arc<UserIndex>,
    invites: Store<UserInvite>,
}

/// The objects that declare one email.
pub struct Declaring {
    pub users: Vec<Arc<LibreChatUser>>,
    pub invites: Vec<Arc<UserInvite>>,
}

impl WatchCaches {
    /// Adds one scope's caches (its users' store and index, its invites' store).
    pub fn add_scope(
        &self,
        users: Store<LibreChatUser>,
        users_by_key: Arc<UserIndex>,
        invites: Store<UserInvite>,
    ) {
        let mut scopes = self.scopes.write().unwrap_or_else(|e| e.into_inner());
        scopes.push(ScopeCaches {
            users,
            users_by_key,
            invites,
        });
    }

    /// The LibreChatUser `namespace/name`, as the caches hold it.
    pub fn user(&self, namespace: &str, name: &str) -> Option<Arc<LibreChatUser>> {
        let scopes = self.scopes.read().unwrap_or_else(|e| e.into_inner());
        let wanted = ObjectRef::new(name).within(namespace);
        scopes.iter().find_map(|scope| scope.users.get(&wanted))
    }

    /// The users and invites of every scope that declare `email` (normalized). Complete only
    /// once every scope's caches have synced: the caller knows whether they have.
    pub fn declaring(&self, email: &str) -> Declaring {
        let scopes = self.scopes.read().unwrap_or_else(|e| e.into_inner());
        let declares = |declared: &str| normalize_email(declared) == email;
        let mut found = Declaring {
            users: Vec::new(),
            invites: Vec::new(),
        };
        for scope in scopes.iter() {
            let filed = scope
                .users_by_key
                .lookup(&[UserKey::Email(email.to_string())]);
            found.users.extend(
                filed
                    .iter()
                    .filter_map(|r| scope.users.get(r))
                    .filter(|u| declares(&u.spec.email)),
            );
            found.invites.extend(
                scope
                    .invites
                    .state()
                    .into_iter()
                    .filter(|i| declares(&i.spec.email)),
            );
        }
        found
    }
}

/// The LibreChatUser `namespace/name`: from the caches once every scope has synced, else (at
/// start-up) from the API server.
pub async fn user_named(
    ctx: &Context,
    namespace: &str,
    name: &str,
) -> Result<Option<Arc<LibreChatUser>>, kube::Error> {
    if ctx.synced() {
        return Ok(ctx.caches.user(namespace, name));
    }
    let users: Api<LibreChatUser> = Api::namespaced(ctx.client.clone(), namespace);
    Ok(users.get_opt(name).await?.map(Arc::new))
}
