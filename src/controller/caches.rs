//! The watch scopes' caches of LibreChatUsers and UserInvites, read where a reconcile would
//! otherwise ask the API server for objects the operator already holds:
//!
//! - whether another namespace declares an email, asked by a tenant's invitation on every
//!   reconcile until its link is issued. A LIST of every user and invite each time made an
//!   invitation waiting for its Secret (retried every 10 s) cost the API server the whole
//!   cluster's users and invites: a tenant could load it at will. The caches answer those
//!   retries; the API server is asked once more right before a link is issued, since a
//!   cache can lag (a watch re-listing, or cut off until its deadline);
//! - the LibreChatUsers groups and bans name by `userRef` (a GET per member, per ban, per
//!   reconcile before). The ownership record in the database still decides what they reach.
//!
//! Complete only once every scope's caches have synced ([`Context::synced`]); until then the
//! API server is asked.
//!
//! [`Context::synced`]: super::context::Context::synced

use std::sync::{Arc, RwLock};

use kube::api::Api;
use kube::runtime::reflector::{ObjectRef, Store};

use super::context::Context;
use super::dependents::list_watched;
use crate::api::validate::normalize_email;
use crate::api::{LibreChatUser, UserInvite};

/// The caches of every watch scope.
#[derive(Default)]
pub struct WatchCaches {
    scopes: RwLock<Vec<ScopeCaches>>,
}

struct ScopeCaches {
    users: Store<LibreChatUser>,
    invites: Store<UserInvite>,
}

/// The users and invites that declare one email.
pub struct Declaring {
    pub users: Vec<Arc<LibreChatUser>>,
    pub invites: Vec<Arc<UserInvite>>,
}

/// Where an answer comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The caches once every scope has synced, else the API server.
    Caches,
    /// The API server.
    ApiServer,
}

impl WatchCaches {
    /// Adds one scope's caches.
    pub fn add_scope(&self, users: Store<LibreChatUser>, invites: Store<UserInvite>) {
        let mut scopes = self.scopes.write().unwrap_or_else(|e| e.into_inner());
        scopes.push(ScopeCaches { users, invites });
    }

    /// The LibreChatUser `namespace/name`, as the caches hold it.
    fn user(&self, namespace: &str, name: &str) -> Option<Arc<LibreChatUser>> {
        let scopes = self.scopes.read().unwrap_or_else(|e| e.into_inner());
        let wanted = ObjectRef::new(name).within(namespace);
        scopes.iter().find_map(|scope| scope.users.get(&wanted))
    }

    /// Every user and invite the caches hold.
    fn everything(&self) -> Declaring {
        let scopes = self.scopes.read().unwrap_or_else(|e| e.into_inner());
        Declaring {
            users: scopes.iter().flat_map(|s| s.users.state()).collect(),
            invites: scopes.iter().flat_map(|s| s.invites.state()).collect(),
        }
    }
}

impl Declaring {
    fn of(self, email: &str) -> Declaring {
        let declares = |declared: &str| normalize_email(declared) == email;
        Declaring {
            users: self
                .users
                .into_iter()
                .filter(|u| declares(&u.spec.email))
                .collect(),
            invites: self
                .invites
                .into_iter()
                .filter(|i| declares(&i.spec.email))
                .collect(),
        }
    }
}

/// The users and invites of the watched namespaces that declare `email` (normalized).
pub async fn declaring(ctx: &Context, email: &str, from: Source) -> Result<Declaring, kube::Error> {
    if from == Source::Caches && ctx.synced() {
        return Ok(ctx.caches.everything().of(email));
    }
    let users = list_watched::<LibreChatUser>(ctx).await?;
    let invites = list_watched::<UserInvite>(ctx).await?;
    let everything = Declaring {
        users: users.into_iter().map(Arc::new).collect(),
        invites: invites.into_iter().map(Arc::new).collect(),
    };
    Ok(everything.of(email))
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
