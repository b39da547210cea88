//! Which bindings name which service, and use which network, on which
//! swarm: the Docker event router's lookup. Kept by the reconciles, so that an event costs work for
//! the bindings of its service, not a walk over every binding.

use std::collections::{BTreeSet, HashMap};

/// A binding, as namespace and name.
pub(crate) type BindingKey = (String, String);

#[derive(Debug, Default)]
pub(crate) struct BindingIndex {
    /// (swarm identity, service name) -> bindings naming that service.
    by_service: HashMap<(String, String), BTreeSet<BindingKey>>,
    /// (swarm identity, network name) -> bindings whose services use it.
    by_network: HashMap<(String, String), BTreeSet<BindingKey>>,
    /// Swarm identity -> bindings on that swarm.
    by_swarm: HashMap<String, BTreeSet<BindingKey>>,
    /// What each binding was indexed under, to undo it.
    of: HashMap<BindingKey, Indexed>,
}

/// What one binding is indexed under.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Indexed {
    swarm: String,
    services: Vec<String>,
    networks: Vec<String>,
}

fn add(
    map: &mut HashMap<(String, String), BTreeSet<BindingKey>>,
    k: (String, String),
    b: &BindingKey,
) {
    map.entry(k).or_default().insert(b.clone());
}

fn drop_from(
    map: &mut HashMap<(String, String), BTreeSet<BindingKey>>,
    k: (String, String),
    b: &BindingKey,
) {
    if let Some(set) = map.get_mut(&k) {
        set.remove(b);
        if set.is_empty() {
            map.remove(&k);
        }
    }
}

impl BindingIndex {
    /// Indexes `key` under its swarm, services and networks, replacing what
    /// it was indexed under before.
    pub(crate) fn set(
        &mut self,
        key: BindingKey,
        swarm: String,
        services: Vec<String>,
        mut networks: Vec<String>,
    ) {
        networks.sort();
        networks.dedup();
        let new = Indexed {
            swarm,
            services,
            networks,
        };
        if self.of.get(&key) == Some(&new) {
            return;
        }
        self.remove(&key);
        for s in &new.services {
            add(&mut self.by_service, (new.swarm.clone(), s.clone()), &key);
        }
        for n in &new.networks {
            add(&mut self.by_network, (new.swarm.clone(), n.clone()), &key);
        }
        self.by_swarm
            .entry(new.swarm.clone())
            .or_default()
            .insert(key.clone());
        self.of.insert(key, new);
    }

    pub(crate) fn remove(&mut self, key: &BindingKey) {
        let Some(old) = self.of.remove(key) else {
            return;
        };
        for s in old.services {
            drop_from(&mut self.by_service, (old.swarm.clone(), s), key);
        }
        for n in old.networks {
            drop_from(&mut self.by_network, (old.swarm.clone(), n), key);
        }
        if let Some(set) = self.by_swarm.get_mut(&old.swarm) {
            set.remove(key);
            if set.is_empty() {
                self.by_swarm.remove(&old.swarm);
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

    /// The bindings on `swarm` whose services use the network `network`.
    pub(crate) fn using(&self, swarm: &str, network: &str) -> Vec<BindingKey> {
        self.by_network
            .get(&(swarm.to_owned(), network.to_owned()))
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
        let mv = || vec!["mv".to_owned()];
        i.set(
            k("a"),
            "swarm1".into(),
            vec!["web".into(), "api".into()],
            mv(),
        );
        i.set(
            k("b"),
            "swarm1".into(),
            vec!["db".into()],
            vec!["other".into()],
        );
        i.set(k("c"), "swarm2".into(), vec!["web".into()], mv());
        assert_eq!(i.naming("swarm1", "web"), [k("a")]);
        assert_eq!(i.naming("swarm2", "web"), [k("c")]);
        assert_eq!(i.on("swarm1"), [k("a"), k("b")]);
        assert!(i.naming("swarm1", "other").is_empty());
        assert_eq!(i.using("swarm1", "mv"), [k("a")]);
        assert_eq!(i.using("swarm1", "other"), [k("b")]);

        // An edit moves a binding; a deletion forgets it.
        i.set(k("a"), "swarm2".into(), vec!["api".into()], mv());
        assert!(i.naming("swarm1", "web").is_empty());
        assert!(i.using("swarm1", "mv").is_empty());
        assert_eq!(i.using("swarm2", "mv"), [k("a"), k("c")]);
        assert_eq!(i.naming("swarm2", "api"), [k("a")]);
        i.remove(&k("a"));
        i.remove(&k("c"));
        assert!(i.on("swarm2").is_empty());
        assert_eq!(i.of.len(), 1);
        assert_eq!(i.by_service.len(), 1);
        assert_eq!(i.by_network.len(), 1);
    }
}
