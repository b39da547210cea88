//! What this replica wrote lately, until its caches show it. A reflector
//! store lags the API server by a watch event; a pass that follows the
//! previous one within that lag would read the object as it was before this
//! replica's own write, and its write over that version would be refused
//! (409) and retried a second later. So each write is remembered with the
//! version it replaced, and a cached object still at that version reads as
//! the written one. Any other version in the cache (this write, or a later
//! write by anyone) ends the overlay; so does age.

use kube::ResourceExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Longer than any watch lag seen; after it the cache is trusted alone.
const MAX_AGE: Duration = Duration::from_secs(30);

/// Writes of objects of one kind, by `namespace/name`.
#[derive(Debug)]
pub(crate) struct Written<T> {
    entries: Mutex<HashMap<String, Entry<T>>>,
}

impl<T> Default for Written<T> {
    fn default() -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
        }
    }
}

#[derive(Debug)]
struct Entry<T> {
    /// The resourceVersion written over; `None`: the write created it.
    over: Option<String>,
    /// The object as written; `None`: the write deleted it.
    now: Option<Arc<T>>,
    at: Instant,
}

fn key_of<T: ResourceExt>(o: &T) -> String {
    format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any())
}

impl<T: ResourceExt> Written<T> {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry<T>>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// This replica wrote `key` over version `over` (`None`: created it);
    /// `now` is what the API server returned (`None`: it is deleted).
    pub(crate) fn wrote(&self, key: String, over: Option<String>, now: Option<Arc<T>>) {
        let mut m = self.lock();
        m.retain(|_, e| e.at.elapsed() < MAX_AGE);
        m.insert(
            key,
            Entry {
                over,
                now,
                at: Instant::now(),
            },
        );
    }

    /// Forgets the writes the cache has caught up with (or that someone
    /// wrote over since): `cached_version` gives the cache's version of a
    /// `namespace/name` (`None`: it does not hold it). What remains are
    /// writes whose watch event has not arrived yet: a handful, not a copy
    /// of everything written lately.
    pub(crate) fn settle(&self, cached_version: impl Fn(&str) -> Option<String>) {
        self.lock()
            .retain(|key, e| e.at.elapsed() < MAX_AGE && cached_version(key) == e.over);
    }

    /// The object as this replica knows it, from its cached copy.
    pub(crate) fn view(&self, cached: Arc<T>) -> Arc<T> {
        let key = key_of(cached.as_ref());
        let mut m = self.lock();
        match m.get(&key) {
            Some(e) if e.at.elapsed() < MAX_AGE && e.over == cached.resource_version() => {
                e.now.clone().unwrap_or(cached)
            }
            Some(_) => {
                m.remove(&key);
                cached
            }
            None => cached,
        }
    }

    /// The objects as this replica knows them, from the cached ones that
    /// pass `filter`: written ones the cache does not hold yet are added,
    /// deleted ones it still holds are left out.
    pub(crate) fn view_all(&self, cached: Vec<Arc<T>>, filter: impl Fn(&T) -> bool) -> Vec<Arc<T>> {
        let mut m = self.lock();
        if m.is_empty() {
            return cached;
        }
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::with_capacity(cached.len());
        for c in cached {
            let key = key_of(c.as_ref());
            let entry = m.get(&key);
            match entry {
                Some(e) if e.at.elapsed() < MAX_AGE && e.over == c.resource_version() => {
                    out.extend(e.now.clone());
                }
                Some(_) => {
                    m.remove(&key);
                    out.push(c);
                }
                None => out.push(c),
            }
            seen.insert(key);
        }
        for (key, e) in m.iter() {
            if seen.contains(key) || e.at.elapsed() >= MAX_AGE {
                continue;
            }
            if let Some(now) = &e.now
                && filter(now)
            {
                out.push(now.clone());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;

    fn cm(name: &str, rv: &str, data: &str) -> Arc<ConfigMap> {
        let mut c = ConfigMap::default();
        c.metadata.name = Some(name.into());
        c.metadata.namespace = Some("ns".into());
        c.metadata.resource_version = Some(rv.into());
        c.data = Some([("v".to_owned(), data.to_owned())].into());
        Arc::new(c)
    }

    fn data(c: &ConfigMap) -> &str {
        c.data.as_ref().unwrap()["v"].as_str()
    }

    #[test]
    fn a_cache_behind_this_replicas_write_reads_as_the_write_until_it_catches_up() {
        let w: Written<ConfigMap> = Written::default();
        let old = cm("a", "10", "old");
        w.wrote("ns/a".into(), Some("10".into()), Some(cm("a", "11", "new")));
        assert_eq!(data(&w.view(old.clone())), "new", "cache behind");
        assert_eq!(data(&w.view(cm("a", "11", "new"))), "new");
        // Caught up: the entry is gone, even an old copy reads as itself.
        assert_eq!(data(&w.view(old)), "old");
        // Someone else wrote after us: theirs.
        w.wrote(
            "ns/a".into(),
            Some("11".into()),
            Some(cm("a", "12", "ours")),
        );
        assert_eq!(data(&w.view(cm("a", "13", "theirs"))), "theirs");
    }

    #[test]
    fn creates_and_deletes_the_cache_has_not_seen_yet_are_in_the_list() {
        let w: Written<ConfigMap> = Written::default();
        w.wrote("ns/new".into(), None, Some(cm("new", "5", "x")));
        w.wrote("ns/gone".into(), Some("3".into()), None);
        w.wrote("ns/elsewhere".into(), None, Some(cm("elsewhere", "6", "y")));
        let cached = vec![cm("gone", "3", "g"), cm("kept", "2", "k")];
        let mut names: Vec<String> = w
            .view_all(cached, |c| c.metadata.name.as_deref() != Some("elsewhere"))
            .iter()
            .map(|c| c.name_any())
            .collect();
        names.sort();
        assert_eq!(names, ["kept", "new"]);
        // Once the cache holds the create and lost the deleted one.
        let cached = vec![cm("new", "5", "x"), cm("kept", "2", "k")];
        assert_eq!(
            w.view_all(cached, |_| true).len(),
            3,
            "elsewhere still young"
        );
    }

    #[test]
    fn settling_keeps_only_the_writes_the_cache_has_not_seen() {
        let w: Written<ConfigMap> = Written::default();
        w.wrote("ns/a".into(), Some("1".into()), Some(cm("a", "2", "x")));
        w.wrote("ns/b".into(), None, Some(cm("b", "3", "y")));
        w.wrote("ns/c".into(), Some("4".into()), Some(cm("c", "5", "z")));
        // The cache: a caught up, b not created yet, c still at 4.
        w.settle(|key| match key {
            "ns/a" => Some("2".into()),
            "ns/c" => Some("4".into()),
            _ => None,
        });
        let mut left: Vec<String> = w.lock().keys().cloned().collect();
        left.sort();
        assert_eq!(left, ["ns/b", "ns/c"]);
    }
}
