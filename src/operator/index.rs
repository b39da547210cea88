//! Which bindings name which service on which swarm: the Docker event
//! router's lookup. Kept by the reconciles, so that an event costs work for
//! the bindings of its service, not a walk over every binding.

use std::collections::{BTreeSet, HashMap};

/// A binding, as namespace and name.
pub(crate) type BindingKey = (String, String);

#[derive(Debug, Default)]
pub(crate) struct BindingIndex {
    /// (swarm identity, service name) -> bindings naming that service.
    by_service: HashMap<(String, String), BTreeSet<BindingKey>>,
    /// Swarm identity -> bindings on that swarm.
    by_swarm: HashMap<String, BTreeSet<BindingKey>>,
    /// What each binding was indexed under, to undo it.
    of: HashMap<BindingKey, (String, Vec<String>)>,
}

impl BindingIndex {
    /// Indexes `key` under its swarm and services, replacing what it was
    /// indexed under before.
    pub(crate) fn set(&mut self, key: BindingKey, swarm: String, services: Vec<String>) {
        if self.of.get(&key) == Some(&(swarm.clone(), services.clone())) {
            return;
        }
        self.remove(&key);
        for s in &services {
            self.by_service
                .entry((swarm.clone(), s.clone()))
                .or_default()
                .insert(key.clone());
        }
        self.by_swarm
            .entry(swarm.clone())
            .or_default()
            .insert(key.clone());
        self.of.insert(key, (swarm, services));
    }

    pub(crate) fn remove(&mut self, key: &BindingKey) {
        let Some((swarm, services)) = self.of.remove(key) else {
            return;
        };
        for s in services {
            let k = (swarm.clone(), s);
            if let Some(set) = self.by_service.get_mut(&k) {
                set.remove(key);
                if set.is_empty() {
                    self.by_service.remove(&k);
                }
            }
        }
        if let Some(set) = self.by_swarm.get_mut(&swarm) {
            set.remove(key);
            if set.is_empty() {
                self.by_swarm.remove(&swarm);
            }
        }
    }

    /// The bindings on `swarm` that name `service`.
    pub(crate) fn naming(&self, swarm: &str, service: &str) -> Vec<BindingKey> {
        self.by_service
            .get(&(swarm.to_owned(), service.to_owned()))
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Every binding on `swarm`.
    pub(crate) fn on(&self, swarm: &str) -> Vec<BindingKey> {
        self.by_swarm
            .get(swarm)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(name: &str) -> BindingKey {
        ("ns".into(), name.into())
    }

    #[test]
    fn events_find_the_bindings_of_their_service_and_swarm_only() {
        let mut i = BindingIndex::default();
        i.set(k("a"), "swarm1".into(), vec!["web".into(), "api".into()]);
        i.set(k("b"), "swarm1".into(), vec!["db".into()]);
        i.set(k("c"), "swarm2".into(), vec!["web".into()]);
        assert_eq!(i.naming("swarm1", "web"), [k("a")]);
        assert_eq!(i.naming("swarm2", "web"), [k("c")]);
        assert_eq!(i.on("swarm1"), [k("a"), k("b")]);
        assert!(i.naming("swarm1", "other").is_empty());

        // An edit moves a binding; a deletion forgets it.
        i.set(k("a"), "swarm2".into(), vec!["api".into()]);
        assert!(i.naming("swarm1", "web").is_empty());
        assert_eq!(i.naming("swarm2", "api"), [k("a")]);
        i.remove(&k("a"));
        i.remove(&k("c"));
        assert!(i.on("swarm2").is_empty());
        assert_eq!(i.of.len(), 1);
        assert_eq!(i.by_service.len(), 1);
    }
}
