//! A secondary index over a watched kind: which objects name a given Secret, account or email.
//!
//! The watch mappers used to scan every object of the store for each event they map (a Secret
//! written, an account changed in LibreChat). With thousands of objects and an event per object
//! during a cold start that is quadratic work; the index answers each event in constant time.
//! It is fed from the same watch events as the reflector store, so it is never behind it by
//! more than the event being applied.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::sync::{Arc, RwLock};

use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::Resource;

/// The keys of one object: everything a mapper may look it up by.
pub type KeysOf<K, Key> = fn(&K) -> Vec<Key>;

pub struct Index<K: Resource<DynamicType = ()>, Key> {
    keys_of: KeysOf<K, Key>,
    state: RwLock<State<K, Key>>,
}

struct State<K: Resource<DynamicType = ()>, Key> {
    objects: HashMap<Key, HashSet<ObjectRef<K>>>,
    keys: HashMap<ObjectRef<K>, Vec<Key>>,
    /// Objects seen since a re-list began: at its end, the others are gone.
    relisted: Option<HashSet<ObjectRef<K>>>,
}

impl<K, Key> Index<K, Key>
where
    K: Resource<DynamicType = ()> + Clone,
    Key: Hash + Eq + Clone,
{
    pub fn new(keys_of: KeysOf<K, Key>) -> Arc<Self> {
        Arc::new(Index {
            keys_of,
            state: RwLock::new(State {
                objects: HashMap::new(),
                keys: HashMap::new(),
                relisted: None,
            }),
        })
    }

    /// Applies one watch event, as the reflector does to its store.
    pub fn observe(&self, event: &watcher::Event<K>) {
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        match event {
            watcher::Event::Apply(obj) => state.put(obj, (self.keys_of)(obj)),
            watcher::Event::Delete(obj) => state.remove(&ObjectRef::from_obj(obj)),
            watcher::Event::Init => state.relisted = Some(HashSet::new()),
            watcher::Event::InitApply(obj) => {
                if let Some(seen) = state.relisted.as_mut() {
                    seen.insert(ObjectRef::from_obj(obj));
                }
                state.put(obj, (self.keys_of)(obj));
            }
            watcher::Event::InitDone => {
                let seen = state.relisted.take().unwrap_or_default();
                let gone: Vec<_> = state
                    .keys
                    .keys()
                    .filter(|r| !seen.contains(*r))
                    .cloned()
                    .collect();
                for r in gone {
                    state.remove(&r);
                }
            }
        }
    }

    /// The objects filed under any of `keys`, each once.
    pub fn lookup(&self, keys: &[Key]) -> Vec<ObjectRef<K>> {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        let mut found: HashSet<ObjectRef<K>> = HashSet::new();
        for key in keys {
            if let Some(objects) = state.objects.get(key) {
                found.extend(objects.iter().cloned());
            }
        }
        found.into_iter().collect()
    }
}

impl<K, Key> State<K, Key>
where
    K: Resource<DynamicType = ()>,
    Key: Hash + Eq + Clone,
{
    fn put(&mut self, obj: &K, keys: Vec<Key>) {
        let r = ObjectRef::from_obj(obj);
        self.remove(&r);
        for key in &keys {
            self.objects
                .entry(key.clone())
                .or_default()
                .insert(r.clone());
        }
        self.keys.insert(r, keys);
    }

    fn remove(&mut self, r: &ObjectRef<K>) {
        for key in self.keys.remove(r).unwrap_or_default() {
            if let Some(objects) = self.objects.get_mut(&key) {
                objects.remove(r);
                if objects.is_empty() {
                    self.objects.remove(&key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::ObjectMeta;

    fn map(name: &str, secret: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            data: Some([("secret".to_string(), secret.to_string())].into()),
            ..Default::default()
        }
    }

    fn secret_of(m: &ConfigMap) -> Vec<String> {
        m.data
            .as_ref()
            .and_then(|d| d.get("secret").cloned())
            .into_iter()
            .collect()
    }

    fn names(refs: Vec<ObjectRef<ConfigMap>>) -> Vec<String> {
        let mut names: Vec<String> = refs.into_iter().map(|r| r.name).collect();
        names.sort();
        names
    }

    #[test]
    fn follows_applies_changes_and_deletes() {
        let index = Index::new(secret_of);
        index.observe(&watcher::Event::Apply(map("a", "s1")));
        index.observe(&watcher::Event::Apply(map("b", "s1")));
        assert_eq!(names(index.lookup(&["s1".into()])), ["a", "b"]);
        // A changed key moves the object; the old key no longer finds it.
        index.observe(&watcher::Event::Apply(map("a", "s2")));
        assert_eq!(names(index.lookup(&["s1".into()])), ["b"]);
        assert_eq!(names(index.lookup(&["s1".into(), "s2".into()])), ["a", "b"]);
        index.observe(&watcher::Event::Delete(map("b", "s1")));
        assert!(index.lookup(&["s1".into()]).is_empty());
    }

    #[test]
    fn a_relist_forgets_what_it_did_not_see() {
        let index = Index::new(secret_of);
        index.observe(&watcher::Event::Apply(map("a", "s1")));
        index.observe(&watcher::Event::Apply(map("b", "s1")));
        index.observe(&watcher::Event::Init);
        index.observe(&watcher::Event::InitApply(map("b", "s1")));
        index.observe(&watcher::Event::InitDone);
        assert_eq!(names(index.lookup(&["s1".into()])), ["b"]);
    }
}
