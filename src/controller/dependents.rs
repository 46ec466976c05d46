//! The objects that depend on an instance: every LibreChatUser, UserBan and UserInvite that
//! points at it, in every namespace the operator watches.

use kube::api::{Api, ListParams};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;

use super::context::Context;
use super::target::points_at;
use crate::api::common::InstanceRef;
use crate::api::{
    LibreChatGroup, LibreChatInstance, LibreChatRole, LibreChatUser, UserBan, UserInvite,
};

/// `Kind namespace/name` of every object that points at `instance`.
pub async fn of(ctx: &Context, instance: &LibreChatInstance) -> Result<Vec<String>, kube::Error> {
    let mut found = Vec::new();
    found.extend(pointing::<LibreChatUser>(ctx, instance, |u| &u.spec.instance_ref).await?);
    found.extend(pointing::<UserBan>(ctx, instance, |b| &b.spec.instance_ref).await?);
    found.extend(pointing::<UserInvite>(ctx, instance, |i| &i.spec.instance_ref).await?);
    found.extend(pointing::<LibreChatGroup>(ctx, instance, |g| &g.spec.instance_ref).await?);
    found.extend(pointing::<LibreChatRole>(ctx, instance, |r| &r.spec.instance_ref).await?);
    Ok(found)
}

/// Every object of kind `K` in the watched namespaces.
pub async fn list_watched<K>(ctx: &Context) -> Result<Vec<K>, kube::Error>
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
        all.extend(api.list(&ListParams::default()).await?.items);
    }
    Ok(all)
}

async fn pointing<K>(
    ctx: &Context,
    instance: &LibreChatInstance,
    reference: impl Fn(&K) -> &InstanceRef,
) -> Result<Vec<String>, kube::Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    Ok(list_watched::<K>(ctx)
        .await?
        .iter()
        .filter(|o| points_at(reference(o), *o, instance))
        .map(|o| {
            format!(
                "{} {}/{}",
                K::kind(&()),
                o.namespace().unwrap_or_default(),
                o.name_any()
            )
        })
        .collect())
}
