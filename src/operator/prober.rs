//! Probing ahead, per swarm view: the passes say which free addresses they
//! will hand out next ([`crate::reconcile::plan::ProbeWanted`]); a probe of
//! each network runs in the background, one at a time per network, and
//! when it ends the bindings using that network look again. A pass never
//! waits for a probe: slots wait (Pending) only when nothing probed is free.

use crate::config::validate::Desired;
use crate::engine::Engine;
use crate::probe::book::{Freshness, Gate, NetBook, Seen};
use crate::probe::container::{self, ProbeSpec};
use crate::reconcile::Timestamp;
use crate::reconcile::plan::ProbeWanted;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, PoisonError};

#[derive(Debug, Default)]
struct State {
    books: BTreeMap<String, NetBook>,
    in_flight: BTreeSet<String>,
    /// The nodes' engines, as the last pass reached them.
    engines: HashMap<String, Engine>,
}

/// One swarm view's probes.
#[derive(Debug, Default)]
pub(crate) struct Prober {
    state: Mutex<State>,
}

/// How a probe run ended, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    Ran { probed: usize, answered: usize },
    Failed,
}

impl Prober {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn note_engines(&self, engines: &HashMap<String, Engine>) {
        let mut s = self.state();
        for (id, e) in engines {
            s.engines.entry(id.clone()).or_insert_with(|| e.clone());
        }
    }

    /// The gates of `desired`'s probed networks at `now`.
    pub(crate) fn gates(
        &self,
        desired: &Desired,
        now: Timestamp,
        f: Freshness,
    ) -> BTreeMap<String, Gate> {
        let s = self.state();
        desired
            .networks
            .iter()
            .filter(|n| n.arp_probe)
            .map(|n| {
                let gate = s
                    .books
                    .get(&n.name)
                    .map(|b| b.gate(now, f))
                    .unwrap_or_default();
                (n.name.clone(), gate)
            })
            .collect()
    }

    /// Starts a probe of each network in `wanted` that is not probing
    /// already; `done` hears each end (network, what answered anew).
    pub(crate) fn start(
        self: &Arc<Self>,
        spec: &ProbeSpec,
        f: Freshness,
        desired: &Desired,
        wanted: &BTreeMap<String, ProbeWanted>,
        done: impl Fn(String, Ended, Vec<(Ipv4Addr, Seen)>) + Clone + Send + Sync + 'static,
    ) {
        for (net, w) in wanted {
            let Some(parent) = desired
                .networks
                .iter()
                .find(|n| &n.name == net)
                .map(|n| n.parent.clone())
            else {
                continue;
            };
            let engine = {
                let mut s = self.state();
                let Some(engine) = s.engines.get(&w.node_id).cloned() else {
                    continue;
                };
                if !s.in_flight.insert(net.clone()) {
                    continue;
                }
                engine
            };
            let (me, spec, net, done) = (self.clone(), spec.clone(), net.clone(), done.clone());
            let addrs: Vec<Ipv4Addr> = w.addrs.iter().copied().collect();
            tokio::spawn(async move {
                let node = engine.label().to_owned();
                tracing::debug!(network = %net, %node, addresses = addrs.len(), "probing free addresses (ARP)");
                let r = container::run(&engine, &spec, &net, &parent, &addrs).await;
                let now = Timestamp::now();
                let (ended, new) = {
                    let mut s = me.state();
                    s.in_flight.remove(&net);
                    let book = s.books.entry(net.clone()).or_default();
                    book.prune(now, f);
                    match r {
                        Ok(report) => {
                            let ended = Ended::Ran {
                                probed: addrs.len(),
                                answered: report.answered.len(),
                            };
                            (ended, book.record(&node, &addrs, &report, now))
                        }
                        Err(e) => {
                            tracing::warn!(network = %net, %node, error = %e, "probe failed");
                            book.fail(&node, &e.to_string(), now);
                            (Ended::Failed, Vec::new())
                        }
                    }
                };
                done(net, ended, new);
            });
        }
    }

    /// Addresses just handed out are probed again before they are next.
    pub(crate) fn handed_out(&self, network: &str, addrs: impl IntoIterator<Item = Ipv4Addr>) {
        if let Some(b) = self.state().books.get_mut(network) {
            b.forget(addrs);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::validate::{Dialect, validate};
    use crate::crd::{MacvlanBindingSpec, NetworkSpec, ServiceSpec};

    fn net(name: &str, octet: u8, arp_probe: Option<bool>) -> NetworkSpec {
        NetworkSpec {
            name: name.into(),
            subnet: format!("10.{octet}.0.0/24"),
            gateway: format!("10.{octet}.0.1"),
            parent: format!("eth{octet}"),
            ip_range: None,
            reserved: vec![],
            arp_probe,
        }
    }

    #[test]
    fn only_networks_that_are_probed_get_a_gate() {
        let spec = MacvlanBindingSpec {
            networks: vec![net("probed", 1, None), net("quiet", 2, Some(false))],
            services: vec![ServiceSpec {
                name: "web".into(),
                network: "probed".into(),
                ip_pool: vec!["10.1.0.10-10.1.0.20".into()],
                ingress: Default::default(),
            }],
            ..Default::default()
        };
        let d = validate(&spec, Dialect::Manifest).unwrap();
        let gates = Prober::default().gates(&d, Timestamp::now(), Freshness::default());
        assert_eq!(gates.keys().collect::<Vec<_>>(), ["probed"]);
        assert_eq!(gates["probed"], Gate::default(), "nothing probed yet");
    }
}
