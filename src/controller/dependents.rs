//! The objects that depend on an instance: every LibreChatUser, UserBan, UserInvite, group and
//! role that points at it, in every namespace the operator watches, and whose cleanup the
//! instance's deletion must wait for.

use kube::api::{Api, ListParams};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;

use super::context::Context;
use super::target::points_at;
use crate::api::common::AppliedToInstance;
use crate::api::{
    LibreChatGroup, LibreChatInstance, LibreChatRole, LibreChatUser, UserBan, UserInvite,
};

/// How many objects one LIST request returns: a large cluster is read in pages, not in one
/// response the API server must build (and the operator hold) whole.
const PAGE: u32 = 500;

/// One object pointing at the instance.
struct Dependent {
    /// `Kind namespace/name`.
    label: String,
    namespace: String,
    uid: String,
    /// Its status says it was applied to the instance, and it keeps records there now.
    keeps_records: bool,
}

/// `Kind namespace/name` of every object whose cleanup the deletion of `instance` waits for:
/// those of the namespaces it admits, and those of any other namespace that hold records in
/// its database (a namespace taken out of `allowedNamespaces` after it wrote). An object of a
/// namespace never admitted wrote nothing, so it cannot hold the deletion up: otherwise anybody
/// who may create one object anywhere could keep the instance forever.
pub async fn of(ctx: &Context, instance: &LibreChatInstance) -> Result<Vec<String>, kube::Error> {
    let found = every_kind_pointing(ctx, instance).await?;
    let instance_ns = instance.namespace().unwrap_or_default();
    let (mut waited_for, strangers): (Vec<_>, Vec<_>) = found
        .into_iter()
        .partition(|d| instance.spec.admits_namespace(&instance_ns, &d.namespace));
    waited_for.extend(strangers_that_wrote(ctx, instance, strangers).await);
    Ok(waited_for.into_iter().map(|d| d.label).collect())
}

/// The uids of the objects pointing at `instance` that its database keeps records of now,
/// by what their status says: applied to it, and (a ban) in force.
pub async fn keeping_records(
    ctx: &Context,
    instance: &LibreChatInstance,
) -> Result<Vec<String>, kube::Error> {
    let found = every_kind_pointing(ctx, instance).await?;
    Ok(found
        .into_iter()
        .filter(|d| d.keeps_records)
        .map(|d| d.uid)
        .collect())
}

/// Whether an object applied to its instance keeps records in its database while it lives:
/// an account's claim, a group's or role's record, a ban's share while it is in force. An
/// invitation's record goes once it is used or expired.
trait KeepsRecords {
    fn keeps_records(&self) -> bool;
}

impl KeepsRecords for LibreChatUser {
    fn keeps_records(&self) -> bool {
        true
    }
}
impl KeepsRecords for LibreChatGroup {
    fn keeps_records(&self) -> bool {
        true
    }
}
impl KeepsRecords for LibreChatRole {
    fn keeps_records(&self) -> bool {
        true
    }
}
impl KeepsRecords for UserBan {
    fn keeps_records(&self) -> bool {
        self.status.as_ref().and_then(|s| s.active) == Some(true)
    }
}
impl KeepsRecords for UserInvite {
    fn keeps_records(&self) -> bool {
        false
    }
}

async fn every_kind_pointing(
    ctx: &Context,
    instance: &LibreChatInstance,
) -> Result<Vec<Dependent>, kube::Error> {
    let mut found = Vec::new();
    found.extend(pointing::<LibreChatUser>(ctx, instance).await?);
    found.extend(pointing::<UserBan>(ctx, instance).await?);
    found.extend(pointing::<UserInvite>(ctx, instance).await?);
    found.extend(pointing::<LibreChatGroup>(ctx, instance).await?);
    found.extend(pointing::<LibreChatRole>(ctx, instance).await?);
    Ok(found)
}

/// The objects of `strangers` (of namespaces the instance does not admit) that hold records
/// in its database; all of them when the database cannot say (nothing is left behind on a
/// guess).
async fn strangers_that_wrote(
    ctx: &Context,
    instance: &LibreChatInstance,
    strangers: Vec<Dependent>,
) -> Vec<Dependent> {
    if strangers.is_empty() {
        return strangers;
    }
    let Ok(stores) = ctx.connections.shared(&ctx.client, instance).await else {
        return strangers;
    };
    let uids: Vec<String> = strangers.iter().map(|d| d.uid.clone()).collect();
    match stores.store.uids_with_records(&uids).await {
        Ok(wrote) => strangers
            .into_iter()
            .filter(|d| wrote.contains(&d.uid))
            .collect(),
        Err(_) => strangers,
    }
}

/// Every object of kind `K` in the watched namespaces, read page by page.
pub async fn list_watched<K>(ctx: &Context) -> Result<Vec<K>, kube::Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    collect_watched(ctx, Some).await
}

/// What `keep` makes of each object of kind `K` in the watched namespaces, read page by page:
/// a page is let go before the next is read.
async fn collect_watched<K, T>(
    ctx: &Context,
    mut keep: impl FnMut(K) -> Option<T>,
) -> Result<Vec<T>, kube::Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let apis: Vec<Api<K>> = if ctx.settings.namespaces.is_empty() {
        vec![Api::all(ctx.client.clone())]
    } else {
        ctx.settings
            .namespaces
            .iter()
            .map(|ns| Api::namespaced(ctx.client.clone(), ns))
            .collect()
    };
    let mut all = Vec::new();
    for api in apis {
        let mut params = ListParams::default().limit(PAGE);
        loop {
            let page = api.list(&params).await?;
            all.extend(page.items.into_iter().filter_map(&mut keep));
            match page.metadata.continue_.filter(|token| !token.is_empty()) {
                Some(token) => params = params.continue_token(&token),
                None => break,
            }
        }
    }
    Ok(all)
}

async fn pointing<K>(
    ctx: &Context,
    instance: &LibreChatInstance,
) -> Result<Vec<Dependent>, kube::Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + AppliedToInstance
        + KeepsRecords
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let key = super::target::instance_key(instance);
    collect_watched(ctx, |o: K| {
        points_at(o.instance_ref(), &o, instance).then(|| Dependent {
            label: format!(
                "{} {}/{}",
                K::kind(&()),
                o.namespace().unwrap_or_default(),
                o.name_any()
            ),
            namespace: o.namespace().unwrap_or_default(),
            uid: o.uid().unwrap_or_default(),
            keeps_records: o.applied_instance() == Some(key.as_str()) && o.keeps_records(),
        })
    })
    .await
}
