//! Report: what a pass did, per node and in one line.

use super::apply::{Applied, Ending};
use super::plan::Plan;
use super::{Problem, Snapshot, short};
use crate::config::validate::Desired;
use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::fmt;

/// Counts of a pass, for the one-line summary and the exit code.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Summary {
    /// Changes made, by verb ("connected", "network created", ...).
    pub(crate) done: BTreeMap<&'static str, u64>,
    /// Actions that found things already so.
    pub(crate) already: u64,
    pub(crate) skipped: u64,
    /// Failures by node.
    pub(crate) failed: BTreeMap<String, u64>,
    /// Slots left without an address.
    pub(crate) pending: u64,
    /// Slots holding their address while swarm replaces their container.
    pub(crate) reserved: u64,
    pub(crate) problems: u64,
}

impl Summary {
    pub(crate) fn of(applied: &Applied) -> Self {
        let mut s = Summary::default();
        for o in &applied.outcomes {
            match &o.result {
                Ending::Done => *s.done.entry(o.action.verb()).or_default() += 1,
                Ending::AlreadyDone(_) => s.already += 1,
                Ending::Skipped(_) => s.skipped += 1,
                Ending::Failed(_) => *s.failed.entry(o.action.node().to_owned()).or_default() += 1,
            }
        }
        s.pending = applied
            .plan
            .records
            .iter()
            .filter(|r| r.state == super::RecordState::Pending && r.ip.is_none())
            .count() as u64;
        s.reserved = applied
            .plan
            .records
            .iter()
            .filter(|r| r.state == super::RecordState::Reserved)
            .count() as u64;
        s.problems = applied
            .plan
            .problems
            .iter()
            .filter(|p| p.is_error())
            .count() as u64;
        s
    }

    pub(crate) fn failures(&self) -> u64 {
        self.failed.values().sum()
    }

    /// Whether the pass left something undone that the user must know about.
    pub(crate) fn ok(&self) -> bool {
        self.failures() == 0 && self.problems == 0
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = self
            .done
            .iter()
            .map(|(verb, n)| format!("{n} {verb}"))
            .collect();
        if parts.is_empty() {
            parts.push("no change".into());
        }
        if self.already > 0 {
            parts.push(format!("{} already so", self.already));
        }
        if self.skipped > 0 {
            parts.push(format!("{} skipped", self.skipped));
        }
        if self.failures() > 0 {
            let per: Vec<String> = self
                .failed
                .iter()
                .map(|(n, c)| format!("{c} on {n}"))
                .collect();
            parts.push(format!("{} failed ({})", self.failures(), per.join(", ")));
        }
        if self.pending > 0 {
            parts.push(format!("{} without an address", self.pending));
        }
        if self.reserved > 0 {
            parts.push(format!(
                "{} keeping their address while swarm replaces the container",
                self.reserved
            ));
        }
        if self.problems > 0 {
            parts.push(format!(
                "{} problem{}",
                self.problems,
                if self.problems == 1 { "" } else { "s" }
            ));
        }
        f.write_str(&parts.join(", "))
    }
}

/// What of a binding is still in Docker after its cleanup, per its deletion
/// policy, from a pass that only observed: its containers still holding an
/// address on its networks, with `remove_networks` its networks still on a
/// node (but those in `keep`), and the nodes that could not be read, where
/// nothing can be confirmed. Empty when the cleanup is done.
pub(crate) fn leftovers(
    desired: &Desired,
    snapshot: &Snapshot,
    observed: &Plan,
    remove_networks: bool,
    keep: &BTreeSet<String>,
) -> Vec<String> {
    let mut left: Vec<String> = observed
        .problems
        .iter()
        .filter(|p| matches!(p, Problem::NodeUnreachable { .. }))
        .map(|p| format!("cannot confirm: {p}"))
        .collect();
    for r in &observed.records {
        if let Some(ip) = r.ip {
            left.push(format!(
                "{} ({} on {}) still has {ip} on {}",
                r.key,
                short(&r.container),
                r.node,
                r.network
            ));
        }
    }
    if remove_networks {
        for n in desired.networks.iter().filter(|n| !keep.contains(&n.name)) {
            for node in snapshot
                .nodes
                .iter()
                .filter(|x| x.network(&n.name).is_some())
            {
                left.push(format!("network {} is still on {}", n.name, node.label()));
            }
        }
    }
    left
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::validate::{Dialect, validate};
    use crate::crd::{MacvlanBindingSpec, NetworkSpec, PoolEntry, RecordState, ServiceSpec};
    use crate::reconcile::{Key, NetView, NodeView, Record, Slot};

    fn desired() -> Desired {
        let spec = MacvlanBindingSpec {
            networks: vec![NetworkSpec {
                arp_probe: None,
                name: "mv".into(),
                subnet: "192.168.8.0/24".into(),
                gateway: "192.168.8.1".into(),
                parent: "mv0".into(),
                ip_range: None,
                reserved: vec![],
            }],
            services: vec![ServiceSpec {
                name: "web".into(),
                network: "mv".into(),
                ip_pool: vec![PoolEntry::from("192.168.8.10")],
                ingress: Default::default(),
            }],
            ..Default::default()
        };
        validate(&spec, Dialect::Manifest).unwrap()
    }

    fn seen(with_network: bool, still_bound: bool, unreachable: bool) -> (Snapshot, Plan) {
        let node = NodeView {
            id: "n1".into(),
            hostname: "node1".into(),
            networks: if with_network {
                vec![NetView {
                    name: "mv".into(),
                    driver: "macvlan".into(),
                    ..Default::default()
                }]
            } else {
                vec![]
            },
            ..Default::default()
        };
        let record = Record {
            key: Key {
                service: "web".into(),
                slot: Slot::Slot(1),
            },
            network: "mv".into(),
            node_id: "n1".into(),
            node: "node1".into(),
            host_ip: String::new(),
            task: "t1".into(),
            container: "c0ffee".into(),
            ip: still_bound.then(|| "192.168.8.10".parse().unwrap()),
            ingress: false,
            state: RecordState::Bound,
            message: None,
            since: None,
            released: None,
        };
        let plan = Plan {
            probes: Default::default(),
            actions: vec![],
            records: vec![record],
            problems: if unreachable {
                vec![Problem::NodeUnreachable {
                    node: "node2".into(),
                    message: "connection refused".into(),
                }]
            } else {
                vec![]
            },
            services: vec![],
            networks: vec![],
            allocators: Default::default(),
        };
        (
            Snapshot {
                nodes: vec![node].into(),
                ..Default::default()
            },
            plan,
        )
    }

    #[test]
    fn cleanup_is_done_only_when_docker_shows_nothing_of_the_binding() {
        let d = desired();
        let none = BTreeSet::new();
        let (s, p) = seen(true, false, false);
        assert!(
            leftovers(&d, &s, &p, false, &none).is_empty(),
            "networks stay with Disconnect"
        );
        assert_eq!(
            leftovers(&d, &s, &p, true, &none),
            ["network mv is still on node1"]
        );
        let kept: BTreeSet<String> = ["mv".to_owned()].into();
        assert!(
            leftovers(&d, &s, &p, true, &kept).is_empty(),
            "another binding keeps it"
        );

        let (s, p) = seen(false, true, false);
        assert_eq!(
            leftovers(&d, &s, &p, false, &none),
            ["web.1 (c0ffee on node1) still has 192.168.8.10 on mv"]
        );
        let (s, p) = seen(false, false, true);
        assert_eq!(
            leftovers(&d, &s, &p, false, &none),
            ["cannot confirm: node node2 unreachable: connection refused"]
        );
    }
}
