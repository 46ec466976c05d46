//! The stores of one kind across watch scopes: with `watchNamespaces` each namespace has its
//! own watches, and a lookup goes to the store of the scope that covers the namespace.

use std::sync::Mutex;

use kube::runtime::reflector::Store;
use kube::Resource;

pub struct ScopedStores<K: Resource<DynamicType = ()> + Clone + 'static> {
    scopes: Mutex<Vec<(Option<String>, Store<K>)>>,
}

impl<K: Resource<DynamicType = ()> + Clone + 'static> Default for ScopedStores<K> {
    fn default() -> Self {
        ScopedStores {
            scopes: Mutex::default(),
        }
    }
}

impl<K: Resource<DynamicType = ()> + Clone + 'static> ScopedStores<K> {
    /// `scope` None: a store over every namespace.
    pub fn register(&self, scope: Option<String>, store: Store<K>) {
        self.scopes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((scope, store));
    }

    /// The store of the scope covering `namespace`; `None` when no scope does.
    pub fn covering(&self, namespace: &str) -> Option<Store<K>> {
        self.scopes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|(scope, _)| scope.as_deref().is_none_or(|s| s == namespace))
            .map(|(_, store)| store.clone())
    }
}
