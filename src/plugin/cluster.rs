//! The Kubernetes side of the plugin: the client as kubectl would build it, the instances, the
//! objects that point at them, their Warning events, and the instance's MongoDB URI Secret.
//! Every request has a deadline.

use std::collections::BTreeSet;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use super::error::PluginError;
use super::reach::Reach;
use crate::api::common::{condition, InstanceRef};
use crate::api::{
    LibreChatGroup, LibreChatInstance, LibreChatRole, LibreChatUser, UserBan, UserInvite,
};
use crate::controller::secrets::{read_secret_key, SecretError};
use crate::controller::target::instance_namespace;
use crate::librechat::{connect_mongo, Store};
use crate::metrics::SecretUse;

/// How long one request to the API server may take.
pub const KUBE_DEADLINE: Duration = Duration::from_secs(15);
const CONNECT_DEADLINE: Duration = Duration::from_secs(10);

/// Where to connect, as kubectl's own flags say it.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct Connection {
    /// Path to the kubeconfig file (default: $KUBECONFIG, else ~/.kube/config).
    #[arg(long, global = true, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: the current context).
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    /// The namespace (default: the context's namespace).
    #[arg(short = 'n', long, global = true, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
}

/// A client and the namespace commands default to.
#[derive(Clone)]
pub struct Cluster {
    pub client: Client,
    pub namespace: String,
}

impl Cluster {
    /// The client kubectl would use: `--kubeconfig`, else `$KUBECONFIG` or `~/.kube/config`
    /// (else the pod's service account), with `--context` or the current context.
    pub async fn connect(connection: &Connection) -> Result<Cluster, PluginError> {
        let config_error = |e: &dyn std::fmt::Display| PluginError::Config(e.to_string());
        let options = KubeConfigOptions {
            context: connection.context.clone(),
            ..KubeConfigOptions::default()
        };
        let mut config = match (&connection.kubeconfig, &connection.context) {
            (Some(path), _) => {
                let kubeconfig = Kubeconfig::read_from(path).map_err(|e| config_error(&e))?;
                Config::from_custom_kubeconfig(kubeconfig, &options)
                    .await
                    .map_err(|e| config_error(&e))?
            }
            (None, Some(_)) => Config::from_kubeconfig(&options)
                .await
                .map_err(|e| config_error(&e))?,
            (None, None) => Config::infer().await.map_err(|e| config_error(&e))?,
        };
        config.connect_timeout = Some(CONNECT_DEADLINE);
        config.read_timeout = Some(KUBE_DEADLINE);
        let namespace = connection
            .namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone());
        let client = Client::try_from(config).map_err(|e| config_error(&e))?;
        Ok(Cluster { client, namespace })
    }

    /// Every instance of `namespace` (`None`: of all namespaces).
    pub async fn instances(
        &self,
        namespace: Option<&str>,
    ) -> Result<Vec<LibreChatInstance>, PluginError> {
        let (api, where_) = self.api::<LibreChatInstance>(namespace);
        let mut items = call(
            format!("list LibreChatInstances {where_}"),
            api.list(&ListParams::default()),
        )
        .await?
        .items;
        items.sort_by_key(|i| (i.namespace(), i.name_any()));
        Ok(items)
    }

    /// Instance `name` of `namespace`, or the only one there when no name is given.
    pub async fn instance(
        &self,
        namespace: &str,
        name: Option<&str>,
    ) -> Result<LibreChatInstance, PluginError> {
        if let Some(name) = name {
            let api: Api<LibreChatInstance> = Api::namespaced(self.client.clone(), namespace);
            return call(
                format!("get LibreChatInstance '{name}' in namespace '{namespace}'"),
                api.get_opt(name),
            )
            .await?
            .ok_or_else(|| PluginError::InstanceNotFound {
                namespace: namespace.into(),
                name: name.into(),
            });
        }
        let mut all = self.instances(Some(namespace)).await?;
        match all.len() {
            0 => Err(PluginError::NoInstance(namespace.into())),
            1 => Ok(all.remove(0)),
            _ => Err(PluginError::SeveralInstances {
                namespace: namespace.into(),
                names: all.iter().map(|i| i.name_any()).collect(),
            }),
        }
    }

    /// Every object that points at an instance (LibreChatUser, UserBan, UserInvite,
    /// LibreChatGroup, LibreChatRole) in `namespaces` (`None`: all namespaces).
    /// A namespace the user may not list is skipped with a note rather than failing the rest.
    pub async fn declarations(
        &self,
        namespaces: &Namespaces,
        notes: &mut Vec<String>,
    ) -> Result<Vec<Declaration>, PluginError> {
        let mut found = Vec::new();
        for ns in namespaces.iter() {
            found.extend(self.list_kind::<LibreChatUser>(ns, notes).await?);
            found.extend(self.list_kind::<UserBan>(ns, notes).await?);
            found.extend(self.list_kind::<UserInvite>(ns, notes).await?);
            found.extend(self.list_kind::<LibreChatGroup>(ns, notes).await?);
            found.extend(self.list_kind::<LibreChatRole>(ns, notes).await?);
        }
        Ok(found)
    }

    async fn list_kind<K>(
        &self,
        namespace: Option<&str>,
        notes: &mut Vec<String>,
    ) -> Result<Vec<Declaration>, PluginError>
    where
        K: Declares,
    {
        let (api, where_) = self.api::<K>(namespace);
        let what = format!("list {}s {where_}", K::kind(&()));
        match call(what, api.list(&ListParams::default())).await {
            Ok(list) => Ok(list.items.iter().map(Declaration::of).collect()),
            Err(PluginError::Forbidden { what, .. }) => {
                notes.push(format!("not shown: you may not {what}"));
                Ok(Vec::new())
            }
            Err(e) => Err(e),
        }
    }

    /// The Warning events of `namespaces` (`None`: all namespaces), skipping a namespace the
    /// user may not read with a note.
    pub async fn warnings(
        &self,
        namespaces: &Namespaces,
        notes: &mut Vec<String>,
    ) -> Result<Vec<Event>, PluginError> {
        let mut found = Vec::new();
        for ns in namespaces.iter() {
            let (api, where_) = self.api::<Event>(ns);
            let params = ListParams::default().fields("type=Warning");
            match call(format!("list events {where_}"), api.list(&params)).await {
                Ok(list) => found.extend(list.items),
                Err(PluginError::Forbidden { what, .. }) => {
                    notes.push(format!("events not shown: you may not {what}"))
                }
                Err(e) => return Err(e),
            }
        }
        Ok(found)
    }

    /// The uid of the `kind` object `namespace/name`, if it exists. `None` for a kind the
    /// plugin does not know.
    pub async fn uid_of(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Option<String>>, PluginError> {
        async fn get<K: Declares>(
            cluster: &Cluster,
            namespace: &str,
            name: &str,
        ) -> Result<Option<String>, PluginError> {
            let api: Api<K> = Api::namespaced(cluster.client.clone(), namespace);
            let what = format!("get {} '{name}' in namespace '{namespace}'", K::kind(&()));
            Ok(call(what, api.get_opt(name)).await?.and_then(|o| o.uid()))
        }
        Ok(Some(match kind {
            "LibreChatUser" => get::<LibreChatUser>(self, namespace, name).await?,
            "UserBan" => get::<UserBan>(self, namespace, name).await?,
            "UserInvite" => get::<UserInvite>(self, namespace, name).await?,
            "LibreChatGroup" => get::<LibreChatGroup>(self, namespace, name).await?,
            "LibreChatRole" => get::<LibreChatRole>(self, namespace, name).await?,
            _ => return Ok(None),
        }))
    }

    /// LibreChat's database of `instance`, through its URI Secret (pointed where `reach`
    /// says). Keep the client while the store is used.
    pub async fn store(
        &self,
        instance: &LibreChatInstance,
        reach: &Reach,
    ) -> Result<(mongodb::Client, Store), PluginError> {
        let uri = reach.uri(&self.mongo_uri(instance).await?)?;
        let (client, db) = connect_mongo(&uri).await?;
        Ok((client, Store::new(db, None)))
    }

    /// The instance's MongoDB URI, from the Secret its spec names (in the instance's namespace).
    pub async fn mongo_uri(&self, instance: &LibreChatInstance) -> Result<String, PluginError> {
        let namespace = instance.namespace().unwrap_or_default();
        let reference = &instance.spec.mongo.uri_secret_ref;
        let read = tokio::time::timeout(
            KUBE_DEADLINE,
            read_secret_key(&self.client, &namespace, reference, SecretUse::Instance),
        )
        .await
        .map_err(|_| PluginError::Timeout {
            what: format!("read Secret '{}'", reference.name),
            seconds: KUBE_DEADLINE.as_secs(),
        })?;
        match read {
            Ok(v) => Ok(v.value.trim().to_string()),
            Err(SecretError::Api {
                source: kube::Error::Api(e),
                ..
            }) if e.code == 403 => Err(PluginError::SecretForbidden {
                namespace,
                name: reference.name.clone(),
            }),
            Err(e) => Err(PluginError::Secret(e)),
        }
    }

    fn api<K>(&self, namespace: Option<&str>) -> (Api<K>, String)
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        match namespace {
            Some(ns) => (
                Api::namespaced(self.client.clone(), ns),
                format!("in namespace '{ns}'"),
            ),
            None => (Api::all(self.client.clone()), "in all namespaces".into()),
        }
    }
}

/// Runs one API request with [`KUBE_DEADLINE`], naming it in any error; a refusal for lack of
/// permission is told apart.
pub async fn call<T>(
    what: String,
    request: impl Future<Output = Result<T, kube::Error>>,
) -> Result<T, PluginError> {
    match tokio::time::timeout(KUBE_DEADLINE, request).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(kube::Error::Api(e))) if e.code == 403 => Err(PluginError::Forbidden {
            what,
            message: e.message.clone(),
        }),
        Ok(Err(source)) => Err(PluginError::Api { what, source }),
        Err(_) => Err(PluginError::Timeout {
            what,
            seconds: KUBE_DEADLINE.as_secs(),
        }),
    }
}

/// The namespaces to look in: a list, or all of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Namespaces {
    All,
    Some(BTreeSet<String>),
}

impl Namespaces {
    /// The namespaces `instance` admits: its own and `spec.allowedNamespaces` (`*`: all).
    pub fn admitted_by(instance: &LibreChatInstance) -> Namespaces {
        let own = instance.namespace().unwrap_or_default();
        let allowed = instance.spec.allowed_namespaces.clone().unwrap_or_default();
        if allowed.iter().any(|n| n == "*") {
            return Namespaces::All;
        }
        Namespaces::Some(
            std::iter::once(own)
                .chain(allowed.into_iter().filter(|n| !n.is_empty()))
                .collect(),
        )
    }

    pub fn union(self, other: Namespaces) -> Namespaces {
        match (self, other) {
            (Namespaces::Some(mut a), Namespaces::Some(b)) => {
                a.extend(b);
                Namespaces::Some(a)
            }
            _ => Namespaces::All,
        }
    }

    pub fn contains(&self, namespace: &str) -> bool {
        match self {
            Namespaces::All => true,
            Namespaces::Some(set) => set.contains(namespace),
        }
    }

    /// The namespaces to list in: `None` once for all.
    fn iter(&self) -> Vec<Option<&str>> {
        match self {
            Namespaces::All => vec![None],
            Namespaces::Some(set) => set.iter().map(|n| Some(n.as_str())).collect(),
        }
    }

    /// As people read it: `*` for all.
    pub fn names(&self) -> Vec<String> {
        match self {
            Namespaces::All => vec!["*".into()],
            Namespaces::Some(set) => set.iter().cloned().collect(),
        }
    }
}

/// An object that points at an instance, reduced to what the plugin reports.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Declaration {
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// `spec.email`, normalized as the controller stores it.
    pub email: Option<String>,
    /// `namespace/name` of the instance its `instanceRef` names.
    pub instance: String,
    pub ready: Option<Condition>,
    pub conditions: Vec<Condition>,
    pub deleting: bool,
}

impl Declaration {
    fn of<K: Declares>(obj: &K) -> Declaration {
        let namespace = obj.namespace().unwrap_or_default();
        let reference = obj.instance_ref();
        let conditions = obj.conditions().to_vec();
        Declaration {
            kind: K::KIND,
            instance: format!(
                "{}/{}",
                instance_namespace(reference, &namespace),
                reference.name
            ),
            namespace,
            name: obj.name_any(),
            uid: obj.uid().unwrap_or_default(),
            email: obj
                .email()
                .map(crate::api::validate::normalize_email)
                .filter(|e| !e.is_empty()),
            ready: crate::api::common::find_condition(&conditions, condition::READY).cloned(),
            conditions,
            deleting: obj.meta().deletion_timestamp.is_some(),
        }
    }
}

/// What the kinds that point at an instance have in common.
pub trait Declares:
    Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
    + Clone
    + DeserializeOwned
    + std::fmt::Debug
{
    const KIND: &'static str;
    fn instance_ref(&self) -> &InstanceRef;
    fn email(&self) -> Option<&str>;
    fn conditions(&self) -> &[Condition];
}

/// `Declares` for a kind: its name, and how its declared account email is read (`None` for
/// kinds that declare none: a group's own `email` is a mailing address, not an account, so
/// whois never matches it).
macro_rules! declares {
    ($kind:ident, |$obj:ident| $email:expr) => {
        impl Declares for $kind {
            const KIND: &'static str = stringify!($kind);
            fn instance_ref(&self) -> &InstanceRef {
                &self.spec.instance_ref
            }
            fn email(&self) -> Option<&str> {
                let $obj = self;
                $email
            }
            fn conditions(&self) -> &[Condition] {
                self.status.as_ref().map_or(&[], |s| &s.conditions)
            }
        }
    };
}

declares!(LibreChatUser, |u| Some(&u.spec.email));
declares!(UserBan, |b| b.spec.email.as_deref());
declares!(UserInvite, |i| Some(&i.spec.email));
declares!(LibreChatGroup, |_g| None);
declares!(LibreChatRole, |_r| None);

/// `namespace/name` of an instance.
pub fn instance_key(instance: &LibreChatInstance) -> String {
    crate::controller::target::instance_key(instance)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(ns: &str, allowed: Option<Vec<&str>>) -> LibreChatInstance {
        let mut i = LibreChatInstance::new("lc", Default::default());
        i.metadata.namespace = Some(ns.into());
        i.spec.allowed_namespaces = allowed.map(|a| a.into_iter().map(String::from).collect());
        i
    }

    #[test]
    fn an_instance_admits_its_own_namespace_and_the_allowed_ones() {
        let own = Namespaces::admitted_by(&instance("a", None));
        assert_eq!(own.names(), ["a"]);
        let more = Namespaces::admitted_by(&instance("a", Some(vec!["c", "b", ""])));
        assert_eq!(more.names(), ["a", "b", "c"]);
        assert!(more.contains("c") && !more.contains("d"));
        let all = Namespaces::admitted_by(&instance("a", Some(vec!["b", "*"])));
        assert_eq!(all, Namespaces::All);
        assert_eq!(more.clone().union(own), more);
        assert_eq!(more.union(all), Namespaces::All);
    }

    #[test]
    fn a_declaration_resolves_its_instance_and_normalizes_its_email() {
        let mut user = LibreChatUser::new(
            "u",
            crate::api::LibreChatUserSpec {
                email: " Someone@Example.COM ".into(),
                instance_ref: InstanceRef {
                    name: "lc".into(),
                    namespace: None,
                },
                ..Default::default()
            },
        );
        user.metadata.namespace = Some("team".into());
        let d = Declaration::of(&user);
        assert_eq!(d.instance, "team/lc");
        assert_eq!(d.email.as_deref(), Some("someone@example.com"));
        assert!(!d.deleting && d.ready.is_none());
    }
}
