//! Holdings: who holds which address, everywhere the snapshot can see.
//! Rule 1 of the planner (never hand out what anyone else holds) reads it.

use crate::reconcile::{ContainerView, NodeView, Snapshot, TaskView};
use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;

/// Where a live container is.
#[derive(Clone, Copy)]
pub(super) struct Live<'a> {
    pub(crate) node: &'a NodeView,
    pub(crate) container: &'a ContainerView,
}

/// Maps keyed by Docker IDs: built once per round over every container of
/// the swarm, so hashed fast (the keys are not chosen by an attacker who
/// could also read the results).
type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

fn map<K, V>(capacity: usize) -> Map<K, V> {
    HashMap::with_capacity_and_hasher(capacity, foldhash::fast::RandomState::default())
}

/// An address and the live container holding it, on which network.
#[derive(Clone, Copy)]
pub(super) struct Held<'a> {
    pub(crate) ip: Ipv4Addr,
    pub(crate) live: Live<'a>,
    pub(crate) network: &'a str,
}

/// Every running container by ID, and every address held on a macvlan
/// endpoint anywhere.
pub(super) struct Holdings<'a> {
    pub(crate) live: Map<&'a str, Live<'a>>,
    /// Every address a live container holds on a macvlan endpoint, on any
    /// node, sorted by address (one flat list: no map entry and no list per
    /// address).
    held: Vec<Held<'a>>,
    /// The nodes' own addresses: never handed out.
    pub(crate) node_addrs: Vec<Ipv4Addr>,
    /// Stopped containers by ID, for the addresses a slot had before.
    pub(crate) stopped: Map<&'a str, &'a ContainerView>,
    /// Task ID -> its container, by the container's own task label (the
    /// running one when there are several).
    by_task: Map<&'a str, &'a str>,
}

impl<'a> Holdings<'a> {
    pub(crate) fn of(snapshot: &'a Snapshot) -> Self {
        let containers: usize = snapshot.nodes.iter().map(|n| n.containers.len()).sum();
        let mut h = Holdings {
            live: map(containers),
            held: Vec::with_capacity(containers),
            node_addrs: Vec::with_capacity(snapshot.nodes.len()),
            stopped: map(0),
            by_task: map(containers),
        };
        for n in snapshot.nodes.iter() {
            if let Ok(a) = n.addr.parse::<Ipv4Addr>() {
                h.node_addrs.push(a);
            }
            let macvlans: BTreeSet<&str> = n
                .networks
                .iter()
                .filter(|x| x.driver == "macvlan")
                .map(|x| x.name.as_str())
                .collect();
            for c in n.containers.iter() {
                if let Some(t) = c.task.as_deref()
                    && (c.running || !h.by_task.contains_key(t))
                {
                    h.by_task.insert(t, c.id.as_str());
                }
                if !c.running {
                    h.stopped.insert(c.id.as_str(), c);
                    continue;
                }
                let live = Live {
                    node: n,
                    container: c,
                };
                h.live.insert(c.id.as_str(), live);
                for e in &c.endpoints {
                    if let (true, Some(ip)) = (macvlans.contains(e.network.as_str()), e.ip) {
                        h.held.push(Held {
                            ip,
                            live,
                            network: e.network.as_str(),
                        });
                    }
                }
            }
        }
        // Stable: the holders of one address stay in node order.
        h.held.sort_by_key(|x| x.ip);
        h
    }

    /// The addresses held from `first` to `last`, each with its holder.
    pub(crate) fn held_in(&self, first: Ipv4Addr, last: Ipv4Addr) -> &[Held<'a>] {
        let from = self.held.partition_point(|x| x.ip < first);
        let to = self.held.partition_point(|x| x.ip <= last);
        &self.held[from..to.max(from)]
    }

    /// A task's container: as the manager reports it, or, before the
    /// manager has heard from the node, the container whose task label
    /// names the task (a node's start event can come first).
    pub(crate) fn container_of(&self, task: &'a TaskView) -> Option<&'a str> {
        task.container
            .as_deref()
            .or_else(|| self.by_task.get(task.id.as_str()).copied())
    }

    /// The network `container` holds `ip` on, if it does.
    pub(crate) fn network_of(&self, container: &str, ip: Ipv4Addr) -> Option<&'a str> {
        self.held_in(ip, ip)
            .iter()
            .find(|x| x.live.container.id == container)
            .map(|x| x.network)
    }
}
