//! Planner tests on synthetic snapshots: no servers.

use super::*;
use crate::config::validate::Desired;
use crate::config::validate::{Dialect, validate};
use crate::crd::IngressMode;
use crate::crd::{MacvlanBindingSpec, NetworkSpec, PoolEntry, ServiceSpec};
use crate::reconcile::{
    ContainerView, EndpointView, NetView, NodeView, RecordState, ServiceView, Slot, Snapshot,
    TaskState, TaskView,
};
use proptest::prelude::*;

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn spec(services: &[(&str, &[&str], IngressMode)]) -> Desired {
    let s = MacvlanBindingSpec {
        networks: vec![NetworkSpec {
            arp_probe: None,
            name: "mv".into(),
            subnet: "192.168.8.0/24".into(),
            gateway: "192.168.8.1".into(),
            parent: "mv0".into(),
            ip_range: None,
            reserved: vec![],
        }],
        services: services
            .iter()
            .map(|(name, pool, ingress)| ServiceSpec {
                name: (*name).into(),
                network: "mv".into(),
                ip_pool: pool.iter().map(|e| PoolEntry::from(*e)).collect(),
                ingress: *ingress,
            })
            .collect(),
        ..Default::default()
    };
    validate(&s, Dialect::Manifest).unwrap()
}

fn web(pool: &[&str]) -> Desired {
    spec(&[("web", pool, IngressMode::Keep)])
}

fn mv_net() -> NetView {
    NetView {
        id: "netmv".into(),
        name: "mv".into(),
        driver: "macvlan".into(),
        ingress: false,
        subnet: Some("192.168.8.0/24".into()),
        gateway: Some("192.168.8.1".into()),
        ip_range: None,
        parent: Some("mv0".into()),
        managed: true,
        owner: None,
    }
}

fn ingress_net() -> NetView {
    NetView {
        id: "neting".into(),
        name: "ingress".into(),
        driver: "overlay".into(),
        ingress: true,
        ..Default::default()
    }
}

/// A tiny world: nodes, services, containers.
#[derive(Clone, Debug)]
struct World {
    snap: Snapshot,
}

impl World {
    fn new(nodes: usize, with_network: bool) -> Self {
        let nodes: Vec<NodeView> = (1..=nodes)
            .map(|k| NodeView {
                id: format!("n{k}"),
                hostname: format!("node{k}"),
                addr: format!("10.99.0.{}", 10 + k),
                state: "ready".into(),
                problem: None,
                networks: if with_network {
                    vec![mv_net(), ingress_net()]
                } else {
                    vec![ingress_net()]
                },
                containers: Default::default(),
            })
            .collect();
        Self {
            snap: Snapshot {
                nodes: nodes.into(),
                services: vec![],
                missing_services: vec![],
            },
        }
    }

    fn service(&mut self, name: &str, global: bool) -> &mut Self {
        self.snap.services.push(ServiceView {
            id: format!("svc-{name}"),
            name: name.into(),
            global,
            uses_ingress: true,
            tasks: vec![],
            owner: None,
        });
        self
    }

    fn node_mut(&mut self, node: usize) -> &mut NodeView {
        &mut self.snap.nodes_mut()[node - 1]
    }

    /// A task of `service` in `slot` on `node` with a container; `ip` is its
    /// address on `mv` if connected.
    fn task(
        &mut self,
        service: &str,
        slot: Option<u64>,
        node: usize,
        container: &str,
        running: bool,
        ip: Option<&str>,
    ) -> &mut Self {
        let node_id = format!("n{node}");
        let tid = format!("t-{container}");
        let sv = self
            .snap
            .services
            .iter_mut()
            .find(|s| s.name == service)
            .unwrap();
        sv.tasks.push(TaskView {
            id: tid.clone(),
            slot,
            node_id,
            wanted: running,
            state: if running {
                TaskState::Running
            } else {
                TaskState::Shutdown
            },
            container: Some(container.into()),
            timestamp: format!("2026-01-01T00:00:{:02}Z", sv.tasks.len())
                .parse()
                .ok(),
        });
        let mut endpoints = vec![EndpointView {
            network: "ingress".into(),
            ip: Some(ip_for_ingress(container)),
            requested: None,
        }];
        if let Some(a) = ip {
            endpoints.push(EndpointView {
                network: "mv".into(),
                ip: running.then(|| a.parse().unwrap()),
                requested: Some(a.parse().unwrap()),
            });
        }
        self.node_mut(node).containers_mut().push(ContainerView {
            id: container.into(),
            running,
            service: Some(service.into()),
            task: Some(tid),
            endpoints,
        });
        self
    }

    /// A task that swarm wants but whose container is not running yet.
    fn pending_task(&mut self, service: &str, slot: Option<u64>, node: usize) -> &mut Self {
        let sv = self
            .snap
            .services
            .iter_mut()
            .find(|s| s.name == service)
            .unwrap();
        sv.tasks.push(TaskView {
            id: format!("t-pending-{}", sv.tasks.len()),
            slot,
            node_id: format!("n{node}"),
            wanted: true,
            state: TaskState::Ready,
            container: None,
            timestamp: "2026-01-01T00:01:00Z".parse().ok(),
        });
        self
    }

    fn foreign(&mut self, node: usize, container: &str, ip: &str) -> &mut Self {
        self.node_mut(node).containers_mut().push(ContainerView {
            id: container.into(),
            running: true,
            service: None,
            task: None,
            endpoints: vec![EndpointView {
                network: "mv".into(),
                ip: Some(ip.parse().unwrap()),
                requested: None,
            }],
        });
        self
    }

    fn plan(&self, d: &Desired, memory: &Memory) -> Plan {
        plan(d, &self.snap, memory, Mode::Up, &PlanOptions::default())
    }

    /// Applies a plan's effects to the world, as if every action succeeded.
    fn apply(&mut self, p: &Plan) {
        for a in &p.actions {
            let node = self
                .snap
                .nodes_mut()
                .iter_mut()
                .find(|n| n.id == a.node_id())
                .unwrap();
            match a {
                Action::CreateNetwork { .. } => node.networks.push(mv_net()),
                Action::RemoveNetwork { network, .. } => {
                    node.networks.retain(|n| &n.name != network)
                }
                Action::Connect {
                    container,
                    ip,
                    network,
                    ..
                } => {
                    let c = node
                        .containers_mut()
                        .iter_mut()
                        .find(|c| &c.id == container)
                        .unwrap();
                    c.endpoints.push(EndpointView {
                        network: network.clone(),
                        ip: Some(*ip),
                        requested: Some(*ip),
                    });
                }
                Action::Disconnect {
                    container, network, ..
                }
                | Action::DetachIngress {
                    container, network, ..
                } => {
                    let c = node
                        .containers_mut()
                        .iter_mut()
                        .find(|c| &c.id == container)
                        .unwrap();
                    c.endpoints.retain(|e| &e.network != network);
                }
                Action::AttachIngress {
                    container, network, ..
                } => {
                    let c = node
                        .containers_mut()
                        .iter_mut()
                        .find(|c| &c.id == container)
                        .unwrap();
                    c.endpoints.push(EndpointView {
                        network: network.clone(),
                        ip: None,
                        requested: None,
                    });
                }
            }
        }
    }

    /// Kills a container: it stops, and swarm starts a replacement in the
    /// same slot on `node`.
    fn replace(&mut self, service: &str, old: &str, new: &str, node: usize) {
        let mut slot = None;
        for n in self.snap.nodes_mut().iter_mut() {
            if let Some(c) = n.containers_mut().iter_mut().find(|c| c.id == old) {
                c.running = false;
                for e in &mut c.endpoints {
                    e.ip = None;
                }
            }
        }
        for sv in &mut self.snap.services {
            for t in &mut sv.tasks {
                if t.container.as_deref() == Some(old) {
                    t.wanted = false;
                    t.state = TaskState::Failed;
                    slot = t.slot;
                }
            }
        }
        self.task(service, slot, node, new, true, None);
    }
}

fn ip_for_ingress(container: &str) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, (container.len() % 200) as u8 + 2)
}

fn memory_of(p: &Plan) -> Memory {
    p.records
        .iter()
        .filter_map(|r| {
            r.ip.map(|ip| {
                (
                    r.key.clone(),
                    Remembered {
                        ip,
                        since: "2026-01-01T00:00:00Z".parse().ok(),
                        released: r.released,
                    },
                )
            })
        })
        .collect()
}

/// What the records remember of web's slots: (slot, address).
fn web_memory(slots: &[(u64, &str)]) -> Memory {
    slots
        .iter()
        .map(|(slot, a)| {
            (
                Key {
                    service: "web".into(),
                    slot: Slot::Slot(*slot),
                },
                Remembered {
                    ip: ip(a),
                    since: None,
                    released: None,
                },
            )
        })
        .collect()
}

fn connects(p: &Plan) -> Vec<(String, Ipv4Addr)> {
    p.actions
        .iter()
        .filter_map(|a| match a {
            Action::Connect { container, ip, .. } => Some((container.clone(), *ip)),
            _ => None,
        })
        .collect()
}

fn ip_of(p: &Plan, key: &str) -> Option<Ipv4Addr> {
    p.records
        .iter()
        .find(|r| r.key.to_string() == key)
        .and_then(|r| r.ip)
}

fn three_replicas() -> World {
    let mut w = World::new(3, false);
    w.service("web", false);
    w.task("web", Some(1), 1, "c1", true, None)
        .task("web", Some(2), 2, "c2", true, None)
        .task("web", Some(3), 3, "c3", true, None);
    w
}

#[test]
fn a_fresh_swarm_gets_networks_everywhere_and_lowest_addresses_in_slot_order() {
    let w = three_replicas();
    let d = web(&["192.168.8.136-192.168.8.137", "192.168.8.139"]);
    let p = w.plan(&d, &Memory::new());
    let creates = p
        .actions
        .iter()
        .filter(|a| matches!(a, Action::CreateNetwork { .. }))
        .count();
    assert_eq!(creates, 3);
    assert_eq!(
        connects(&p),
        [
            ("c1".into(), ip("192.168.8.136")),
            ("c2".into(), ip("192.168.8.137")),
            ("c3".into(), ip("192.168.8.139"))
        ]
    );
    // Within a node, the network comes before the connect.
    let node1: Vec<u8> = p
        .actions
        .iter()
        .filter(|a| a.node_id() == "n1")
        .map(Action::phase)
        .collect();
    assert_eq!(node1, [0, 2]);
    assert!(p.problems.is_empty(), "{:?}", p.problems);
    let c = &p.services[0];
    assert_eq!(
        (c.desired, c.bound, c.pool_size, c.allocated, c.free),
        (3, 3, 3, 3, 0)
    );
}

#[test]
fn a_second_pass_changes_nothing() {
    let mut w = three_replicas();
    let d = web(&["192.168.8.136-192.168.8.140"]);
    let p = w.plan(&d, &Memory::new());
    w.apply(&p);
    let again = w.plan(&d, &memory_of(&p));
    assert!(again.is_empty(), "{again}");
    assert_eq!(
        again.records,
        p.records
            .iter()
            .map(|r| Record {
                since: "2026-01-01T00:00:00Z".parse().ok(),
                released: None,
                ..r.clone()
            })
            .collect::<Vec<_>>()
    );
    // And with no memory at all (the CLI), still nothing.
    assert!(w.plan(&d, &Memory::new()).is_empty());
}

#[test]
fn a_replaced_container_gets_its_slots_address_back_on_any_node() {
    let mut w = three_replicas();
    let d = web(&["192.168.8.136-192.168.8.140"]);
    let p = w.plan(&d, &Memory::new());
    w.apply(&p);
    let mem = memory_of(&p);
    let before = ip_of(&p, "web.2").unwrap();

    // Slot 2's container dies; while swarm waits to restart it, the address
    // stays reserved even though a new slot appears and wants one.
    let mut waiting = w.clone();
    waiting.replace("web", "c2", "unused", 2);
    waiting.snap.services[0]
        .tasks
        .retain(|t| t.container.as_deref() != Some("unused"));
    waiting.snap.nodes_mut()[1]
        .containers_mut()
        .retain(|c| c.id != "unused");
    waiting
        .pending_task("web", Some(2), 2)
        .task("web", Some(4), 1, "c4", true, None);
    let p2 = waiting.plan(&d, &mem);
    let r2 = p2
        .records
        .iter()
        .find(|r| r.key.to_string() == "web.2")
        .unwrap();
    assert_eq!((r2.state, r2.ip), (RecordState::Reserved, Some(before)));
    assert_ne!(ip_of(&p2, "web.4"), Some(before));

    // The replacement lands on node 3: same address.
    w.replace("web", "c2", "c2b", 3);
    let p3 = w.plan(&d, &mem);
    assert_eq!(connects(&p3), [("c2b".into(), before)]);

    // The CLI has no memory: the stopped container's requested address is the hint.
    let p4 = w.plan(&d, &Memory::new());
    assert_eq!(connects(&p4), [("c2b".into(), before)]);
}

// "Scale to a bank", drift repair p99: a replacement's start event comes
// from its node before the manager's task shows its container (the agent
// reports the status a little later). The pass that event caused found no
// container for the slot and waited a whole backoff (2 s). The container's
// own task label says whose it is.
#[test]
fn a_replacement_the_manager_has_not_reported_yet_is_found_by_its_task_label() {
    let mut w = three_replicas();
    let d = web(&["192.168.8.136-192.168.8.140"]);
    let p = w.plan(&d, &Memory::new());
    w.apply(&p);
    let mem = memory_of(&p);
    let before = ip_of(&p, "web.2").unwrap();
    w.replace("web", "c2", "c2b", 3);
    for t in &mut w.snap.services[0].tasks {
        if t.container.as_deref() == Some("c2b") {
            t.container = None;
            t.state = TaskState::Starting;
        }
    }
    let p2 = w.plan(&d, &mem);
    assert_eq!(connects(&p2), [("c2b".into(), before)]);
    let r = p2
        .records
        .iter()
        .find(|r| r.key.to_string() == "web.2")
        .unwrap();
    assert_eq!(r.container, "c2b");
}

#[test]
fn a_global_service_keeps_an_address_per_node() {
    let mut w = World::new(2, true);
    w.service("agent", true);
    w.task("agent", None, 1, "a1", true, None)
        .task("agent", None, 2, "a2", true, None);
    let d = spec(&[("agent", &["192.168.8.50-192.168.8.60"], IngressMode::Keep)]);
    let p = w.plan(&d, &Memory::new());
    w.apply(&p);
    let on_node2 = p.records.iter().find(|r| r.node_id == "n2").unwrap().ip;
    w.replace("agent", "a2", "a2b", 2);
    let p2 = w.plan(&d, &memory_of(&p));
    assert_eq!(connects(&p2), [("a2b".into(), on_node2.unwrap())]);
    assert!(
        p2.records
            .iter()
            .all(|r| matches!(r.key.slot, Slot::Node(_)))
    );
}

#[test]
fn growing_or_reordering_a_pool_moves_nobody() {
    let mut w = three_replicas();
    let d = web(&["192.168.8.136-192.168.8.138"]);
    let p = w.plan(&d, &Memory::new());
    w.apply(&p);
    let mem = memory_of(&p);
    for pool in [
        &["192.168.8.100-192.168.8.138"][..],
        &[
            "192.168.8.138",
            "192.168.8.136-192.168.8.137",
            "192.168.8.200",
        ][..],
    ] {
        let p2 = w.plan(&web(pool), &mem);
        assert!(p2.is_empty(), "{pool:?}: {p2}");
    }
}

#[test]
fn removing_an_address_in_use_moves_only_its_container() {
    let mut w = three_replicas();
    let d = web(&["192.168.8.136-192.168.8.140"]);
    let p = w.plan(&d, &Memory::new());
    w.apply(&p);
    // .137 (slot 2) leaves the pool.
    let d2 = web(&["192.168.8.136", "192.168.8.138-192.168.8.140"]);
    let p2 = w.plan(&d2, &memory_of(&p));
    let moved: Vec<String> = p2.actions.iter().map(ToString::to_string).collect();
    assert_eq!(
        moved,
        [
            "disconnect c2 (web.2) from mv on node2: 192.168.8.137 is not in the pool",
            "connect c2 (web.2) to mv on node2 with 192.168.8.139"
        ]
    );
    assert_eq!(ip_of(&p2, "web.1"), Some(ip("192.168.8.136")));
    assert_eq!(ip_of(&p2, "web.3"), Some(ip("192.168.8.138")));
}

#[test]
fn scaling_down_frees_the_slots_address() {
    let mut w = three_replicas();
    let d = web(&["192.168.8.136-192.168.8.140"]);
    let p = w.plan(&d, &Memory::new());
    w.apply(&p);
    let mem = memory_of(&p);
    for t in &mut w.snap.services[0].tasks {
        if t.slot == Some(3) {
            t.wanted = false;
        }
    }
    w.snap.nodes_mut()[2].containers_mut().clear();
    let p2 = w.plan(&d, &mem);
    assert!(p2.is_empty());
    assert_eq!(p2.records.len(), 2);
    assert_eq!((p2.services[0].allocated, p2.services[0].free), (2, 3));
    // A new slot may now take it.
    w.task("web", Some(4), 3, "c4", true, None);
    let p3 = w.plan(&d, &mem);
    assert_eq!(connects(&p3), [("c4".into(), ip("192.168.8.138"))]);
}

#[test]
fn exhaustion_binds_what_it_can_and_names_the_rest() {
    let w = three_replicas();
    let d = web(&["192.168.8.136-192.168.8.137"]);
    let p = w.plan(&d, &Memory::new());
    assert_eq!(connects(&p).len(), 2);
    assert_eq!(
        p.problems,
        [Problem::PoolExhausted {
            service: "web".into(),
            waiting: vec!["web.3".into()]
        }]
    );
    let r = p
        .records
        .iter()
        .find(|r| r.key.to_string() == "web.3")
        .unwrap();
    assert_eq!(r.state, RecordState::Pending);
    assert!(r.message.as_deref().unwrap().contains("exhausted"), "{r:?}");
}

#[test]
fn foreign_holders_are_avoided_reported_and_left_alone() {
    let mut w2 = three_replicas();
    w2.node_mut(2).networks.push(mv_net());
    w2.foreign(2, "stranger", "192.168.8.136");
    let d = web(&["192.168.8.136-192.168.8.140"]);
    let p = w2.plan(&d, &Memory::new());
    // The address is on node 2; node 1's container must not get it either.
    assert!(
        connects(&p).iter().all(|(_, a)| *a != ip("192.168.8.136")),
        "{p}"
    );
    assert!(
        p.problems.iter().any(
            |x| matches!(x, Problem::ForeignHolder { container, .. } if container == "stranger")
        )
    );
    assert!(
        p.actions
            .iter()
            .all(|a| !a.to_string().contains("stranger"))
    );
}

#[test]
fn a_stranger_on_an_address_one_of_ours_holds_moves_none_of_ours() {
    // Docker's per-node IPAM gives a container started on our network
    // without --ip the lowest address free on its node: one of ours holds it
    // on another node. Ours keeps it; the stranger is reported, not touched.
    let mut w = World::new(2, true);
    w.service("web", false);
    w.task("web", Some(1), 1, "c1", true, Some("192.168.8.136"))
        .task("web", Some(2), 2, "c2", true, Some("192.168.8.137"));
    w.foreign(2, "stranger", "192.168.8.136");
    let d = web(&["192.168.8.136-192.168.8.140"]);
    let mem = web_memory(&[(1, "192.168.8.136"), (2, "192.168.8.137")]);
    for memory in [Memory::new(), mem] {
        let p = w.plan(&d, &memory);
        assert!(p.actions.is_empty(), "{p}");
        assert!(
            p.records
                .iter()
                .all(|r| r.state == RecordState::Bound && r.ip.is_some()),
            "{:?}",
            p.records
        );
        assert!(
            p.problems.iter().any(|x| matches!(x,
                Problem::ForeignHolder { container, ip: a, .. }
                    if container == "stranger" && *a == ip("192.168.8.136"))),
            "{:?}",
            p.problems
        );
    }
}

#[test]
fn node_addresses_are_never_handed_out() {
    let w = three_replicas();
    let mut d = web(&["192.168.8.10-192.168.8.20"]);
    d.networks[0].subnet = "10.99.0.0/24".parse().unwrap();
    d.networks[0].gateway = ip("10.99.0.1");
    d.services[0].pool = crate::pool::Pool::new(["10.99.0.10-10.99.0.20".parse().unwrap()]);
    let p = w.plan(&d, &Memory::new());
    let given: Vec<Ipv4Addr> = connects(&p).into_iter().map(|(_, a)| a).collect();
    assert_eq!(
        given,
        [ip("10.99.0.10"), ip("10.99.0.14"), ip("10.99.0.15")]
    );
}

#[test]
fn duplicates_among_ours_resolve_to_the_remembered_holder() {
    let mut w = World::new(2, true);
    w.service("web", false);
    w.task("web", Some(1), 1, "c1", true, Some("192.168.8.136"))
        .task("web", Some(2), 2, "c2", true, Some("192.168.8.136"));
    let d = web(&["192.168.8.136-192.168.8.140"]);
    let mut mem = Memory::new();
    mem.insert(
        Key {
            service: "web".into(),
            slot: Slot::Slot(2),
        },
        Remembered {
            ip: ip("192.168.8.136"),
            since: None,
            released: None,
        },
    );
    let p = w.plan(&d, &mem);
    let acts: Vec<String> = p.actions.iter().map(ToString::to_string).collect();
    assert_eq!(
        acts,
        [
            "disconnect c1 (web.1) from mv on node1: 192.168.8.136 is also held by another container",
            "connect c1 (web.1) to mv on node1 with 192.168.8.137"
        ]
    );
}

#[test]
fn an_unreachable_node_is_reported_and_its_slots_keep_their_addresses() {
    let mut w = three_replicas();
    let d = web(&["192.168.8.136-192.168.8.140"]);
    let p = w.plan(&d, &Memory::new());
    w.apply(&p);
    let mem = memory_of(&p);
    let n3 = w.node_mut(3);
    n3.problem = Some("GET /networks on node3: unreachable".into());
    n3.containers_mut().clear();
    n3.networks.clear();
    w.task("web", Some(4), 1, "c4", true, None);
    let p2 = w.plan(&d, &mem);
    assert!(p2.actions.iter().all(|a| a.node_id() != "n3"));
    assert!(
        p2.problems
            .iter()
            .any(|x| matches!(x, Problem::NodeUnreachable { node, .. } if node == "node3"))
    );
    let r3 = p2
        .records
        .iter()
        .find(|r| r.key.to_string() == "web.3")
        .unwrap();
    assert_eq!(
        (r3.state, r3.ip),
        (RecordState::Reserved, ip_of(&p, "web.3"))
    );
    assert!(r3.message.as_deref().unwrap().contains("node3 unreachable"));
    assert_ne!(ip_of(&p2, "web.4"), ip_of(&p, "web.3"));
}

#[test]
fn a_network_with_other_settings_is_reported_and_not_used() {
    let mut w = three_replicas();
    w.node_mut(2).networks.push(NetView {
        subnet: Some("10.1.0.0/24".into()),
        ..mv_net()
    });
    let d = web(&["192.168.8.136-192.168.8.140"]);
    let p = w.plan(&d, &Memory::new());
    assert!(p.actions.iter().all(|a| a.node_id() != "n2"), "{p}");
    assert!(p.problems.iter().any(|x| matches!(x, Problem::NetworkMismatch { message, .. } if message.contains("subnet 10.1.0.0/24"))));
    assert_eq!(p.networks[0].ready_nodes, 2);
}

#[test]
fn a_parent_that_already_carries_another_macvlan_is_reported() {
    let mut w = three_replicas();
    w.node_mut(2).networks.push(NetView {
        name: "other".into(),
        id: "o".into(),
        subnet: Some("10.5.0.0/24".into()),
        ..mv_net()
    });
    let p = w.plan(&web(&["192.168.8.136-192.168.8.140"]), &Memory::new());
    assert!(p.actions.iter().all(|a| a.node_id() != "n2"), "{p}");
    assert!(
        p.problems.iter().any(|x| matches!(x, Problem::NetworkMismatch { message, .. } if message.contains("already carries macvlan network other"))),
        "{:?}",
        p.problems
    );
}

#[test]
fn the_operator_restores_ingress_the_cli_does_not() {
    let mut w = three_replicas();
    for n in w.snap.nodes_mut().iter_mut() {
        for c in n.containers_mut() {
            c.endpoints.retain(|e| e.network != "ingress");
        }
    }
    let d = web(&["192.168.8.136-192.168.8.140"]);
    let cli = w.plan(&d, &Memory::new());
    assert!(
        cli.actions
            .iter()
            .all(|a| !matches!(a, Action::AttachIngress { .. }))
    );
    let operator = plan(
        &d,
        &w.snap,
        &Memory::new(),
        Mode::Up,
        &PlanOptions {
            restore_ingress: true,
            ..Default::default()
        },
    );
    assert_eq!(
        operator
            .actions
            .iter()
            .filter(|a| matches!(a, Action::AttachIngress { .. }))
            .count(),
        3
    );
    // Not for a service that publishes no port through ingress.
    w.snap.services[0].uses_ingress = false;
    let quiet = plan(
        &d,
        &w.snap,
        &Memory::new(),
        Mode::Up,
        &PlanOptions {
            restore_ingress: true,
            ..Default::default()
        },
    );
    assert!(
        quiet
            .actions
            .iter()
            .all(|a| !matches!(a, Action::AttachIngress { .. }))
    );
}

#[test]
fn ingress_detach_and_the_ingress_commands() {
    let mut w = three_replicas();
    let d = spec(&[("web", &["192.168.8.136-192.168.8.140"], IngressMode::Detach)]);
    let p = w.plan(&d, &Memory::new());
    let detaches = p
        .actions
        .iter()
        .filter(|a| matches!(a, Action::DetachIngress { .. }))
        .count();
    assert_eq!(detaches, 3);
    assert!(p.records.iter().all(|r| !r.ingress));
    w.apply(&p);
    assert!(w.plan(&d, &memory_of(&p)).is_empty());
    let re = plan(
        &d,
        &w.snap,
        &Memory::new(),
        Mode::Reingress,
        &PlanOptions::default(),
    );
    assert_eq!(
        re.actions
            .iter()
            .filter(|a| matches!(a, Action::AttachIngress { .. }))
            .count(),
        3
    );
}

#[test]
fn disconnect_remove_and_down() {
    let mut w = three_replicas();
    let d = web(&["192.168.8.136-192.168.8.140"]);
    let p = w.plan(&d, &Memory::new());
    w.apply(&p);
    let none = PlanOptions::default();
    let dis = plan(&d, &w.snap, &Memory::new(), Mode::Disconnect, &none);
    assert_eq!(dis.actions.len(), 3);
    assert!(
        dis.actions
            .iter()
            .all(|a| matches!(a, Action::Disconnect { .. }))
    );
    let rm = plan(&d, &w.snap, &Memory::new(), Mode::Remove, &none);
    assert_eq!(
        rm.actions
            .iter()
            .filter(|a| matches!(a, Action::RemoveNetwork { .. }))
            .count(),
        3
    );
    let down = plan(&d, &w.snap, &Memory::new(), Mode::Down, &none);
    let phases: Vec<u8> = down
        .actions
        .iter()
        .filter(|a| a.node_id() == "n1")
        .map(Action::phase)
        .collect();
    assert_eq!(phases, [1, 3]);
    let keep = PlanOptions {
        keep_networks: BTreeSet::from(["mv".to_owned()]),
        ..Default::default()
    };
    let kept = plan(&d, &w.snap, &Memory::new(), Mode::Down, &keep);
    assert!(
        kept.actions
            .iter()
            .all(|a| !matches!(a, Action::RemoveNetwork { .. }))
    );
}

#[test]
fn missing_services_are_reported() {
    let mut w = World::new(1, true);
    w.snap.missing_services = vec!["web".into()];
    let p = w.plan(&web(&["192.168.8.136"]), &Memory::new());
    assert_eq!(
        p.problems,
        [Problem::ServiceMissing {
            service: "web".into()
        }]
    );
    assert_eq!(p.services[0].pool_size, 1);
}

// Docker drops trailing zeros from a timestamp's fraction: `31.1Z` is earlier
// than `31.15Z`, although it sorts after it as text. The planner must order a
// slot's tasks by time, not by text.
fn at(w: &mut World, task: usize, stamp: &str) {
    w.snap.services[0].tasks[task].timestamp = stamp.parse().ok();
}

#[test]
fn the_newest_of_two_wanted_tasks_of_a_slot_is_the_current_one_by_time_not_text() {
    let mut w = World::new(1, true);
    w.service("web", false);
    w.pending_task("web", Some(1), 1)
        .pending_task("web", Some(1), 1);
    at(&mut w, 0, "2026-01-01T00:00:31.1Z");
    at(&mut w, 1, "2026-01-01T00:00:31.15Z");
    let newer = w.snap.services[0].tasks[1].id.clone();
    let p = w.plan(&web(&["192.168.8.136"]), &Memory::new());
    let r = p
        .records
        .iter()
        .find(|r| r.key.to_string() == "web.1")
        .unwrap();
    assert_eq!(
        r.task, newer,
        "the task of 31.15 s is newer than the one of 31.1 s"
    );
}

#[test]
fn a_slot_gets_back_the_address_of_its_newest_earlier_container_by_time_not_text() {
    let mut w = World::new(1, true);
    w.service("web", false);
    // Two earlier containers of slot 1, each asked for another address.
    w.task("web", Some(1), 1, "old", false, Some("192.168.8.137"))
        .task("web", Some(1), 1, "newer", false, Some("192.168.8.138"))
        .task("web", Some(1), 1, "now", true, None);
    at(&mut w, 0, "2026-01-01T00:00:31.1Z");
    at(&mut w, 1, "2026-01-01T00:00:31.15Z");
    at(&mut w, 2, "2026-01-01T00:00:32Z");
    let p = w.plan(&web(&["192.168.8.136-192.168.8.140"]), &Memory::new());
    assert_eq!(connects(&p), [("now".into(), ip("192.168.8.138"))]);
}

// Property: whatever the world looks like, the plan never puts one address
// on two containers, never outside the pool, never on a foreign-held
// address or a node address, and keeps every valid, uncontested address.
fn arb_world() -> impl Strategy<Value = (World, Memory)> {
    let containers = prop::collection::vec(
        (1usize..=3, any::<bool>(), prop::option::of(130u8..150)),
        0..12,
    );
    let foreign = prop::collection::vec((1usize..=3, 130u8..150), 0..4);
    let memory = prop::collection::vec((1u64..12, 130u8..150), 0..6);
    (containers, foreign, memory, any::<bool>()).prop_map(|(cs, fs, mem, global)| {
        let mut w = World::new(3, true);
        w.service("web", global);
        for (i, (node, running, a)) in cs.into_iter().enumerate() {
            let slot = if global { None } else { Some(i as u64 + 1) };
            let addr = a.map(|x| format!("192.168.8.{x}"));
            if global
                && w.snap.services[0]
                    .tasks
                    .iter()
                    .any(|t| t.node_id == format!("n{node}") && t.wanted)
            {
                continue;
            }
            w.task(
                "web",
                slot,
                node,
                &format!("c{i}"),
                running,
                addr.as_deref(),
            );
        }
        for (i, (node, x)) in fs.into_iter().enumerate() {
            w.foreign(node, &format!("f{i}"), &format!("192.168.8.{x}"));
        }
        let memory = mem
            .into_iter()
            .map(|(slot, x)| {
                (
                    Key {
                        service: "web".into(),
                        slot: Slot::Slot(slot),
                    },
                    Remembered {
                        ip: Ipv4Addr::new(192, 168, 8, x),
                        since: None,
                        released: None,
                    },
                )
            })
            .collect();
        (w, memory)
    })
}

proptest! {
    #[test]
    fn plans_never_duplicate_and_never_move_valid_addresses((w, memory) in arb_world()) {
        let d = web(&["192.168.8.135-192.168.8.145"]);
        let p = w.plan(&d, &memory);
        let foreign: BTreeSet<Ipv4Addr> = w.snap.nodes.iter().flat_map(|n| n.containers.iter())
            .filter(|c| c.service.is_none()).flat_map(|c| c.endpoints.iter().filter_map(|e| e.ip)).collect();
        let mut seen = BTreeSet::new();
        for r in &p.records {
            if let Some(a) = r.ip {
                prop_assert!(seen.insert(a), "{a} twice: {:?}", p.records);
                prop_assert!(d.services[0].pool.contains(a));
                // A stranger's address is never given; one of ours that
                // already holds it keeps it (the stranger is reported).
                let holds = w.snap.nodes.iter().flat_map(|n| n.containers.iter())
                    .any(|c| c.id == r.container && c.running && c.endpoint("mv").and_then(|e| e.ip) == Some(a));
                prop_assert!(!foreign.contains(&a) || holds, "{a} is foreign-held");
            }
        }
        for (_, a) in connects(&p) {
            prop_assert!(!foreign.contains(&a), "{a} is foreign-held and was given");
        }
        // Every address of a live container of ours that is in the pool,
        // held by nobody else, and not a duplicate among ours, is kept.
        let mut holders: BTreeMap<Ipv4Addr, usize> = BTreeMap::new();
        for n in w.snap.nodes.iter() { for c in n.containers.iter().filter(|c| c.running) { for e in &c.endpoints { if let Some(a) = e.ip && e.network == "mv" { *holders.entry(a).or_default() += 1; } } } }
        for n in w.snap.nodes.iter() {
            for c in n.containers.iter().filter(|c| c.running && c.service.is_some()) {
                if let Some(a) = c.endpoint("mv").and_then(|e| e.ip)
                    && d.services[0].pool.contains(a) && holders[&a] == 1 {
                        prop_assert!(p.actions.iter().all(|x| !matches!(x, Action::Disconnect { container, .. } if container == &c.id)), "moved {} off {a}", c.id);
                    }
            }
        }
        // Deterministic.
        let again = w.plan(&d, &memory);
        prop_assert_eq!(&again.actions, &p.actions);
        prop_assert_eq!(&again.records, &p.records);
        // Applying it converges: the next pass does nothing.
        let mut after = w.clone();
        after.apply(&p);
        let next = after.plan(&d, &memory_of(&p));
        prop_assert!(next.actions.is_empty(), "not converged: {}", next);
    }
}

#[test]
fn reserved_addresses_are_never_handed_out_even_after_a_pool_edit() {
    let w = three_replicas();
    let mut s = MacvlanBindingSpec {
        networks: vec![NetworkSpec {
            arp_probe: None,
            name: "mv".into(),
            subnet: "192.168.8.0/24".into(),
            gateway: "192.168.8.1".into(),
            parent: "mv0".into(),
            ip_range: None,
            reserved: vec!["192.168.8.10".into(), "192.168.8.12".into()],
        }],
        services: vec![ServiceSpec {
            name: "web".into(),
            network: "mv".into(),
            ip_pool: vec!["192.168.8.10-192.168.8.15".into()],
            ingress: IngressMode::Keep,
        }],
        ..Default::default()
    };
    let d = validate(&s, Dialect::Manifest).unwrap();
    let mut w = w;
    let p = w.plan(&d, &Memory::new());
    let given: Vec<Ipv4Addr> = connects(&p).into_iter().map(|(_, a)| a).collect();
    assert_eq!(
        given,
        [ip("192.168.8.11"), ip("192.168.8.13"), ip("192.168.8.14")]
    );
    assert_eq!(
        (p.services[0].pool_size, p.services[0].reserved),
        (4, 2),
        "{:?}",
        p.services
    );
    w.apply(&p);

    // .13 becomes reserved (a router moved in): only its holder moves, to
    // the one address left; the others stay.
    s.networks[0].reserved.push("192.168.8.13".into());
    let d = validate(&s, Dialect::Manifest).unwrap();
    let p = w.plan(&d, &Memory::new());
    let acts: Vec<String> = p.actions.iter().map(ToString::to_string).collect();
    assert_eq!(acts.len(), 2, "{acts:?}");
    assert!(
        acts[0].contains("192.168.8.13 is reserved on network mv"),
        "{acts:?}"
    );
    assert_eq!(connects(&p), [("c2".to_owned(), ip("192.168.8.15"))]);
}

fn time(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn release(now: &str) -> PlanOptions {
    PlanOptions {
        release: Some(Release {
            now: time(now),
            cooldown: std::time::Duration::from_secs(5),
        }),
        ..Default::default()
    }
}

/// web scaled from 3 to 1: slots 2 and 3 are gone (their tasks shut down,
/// their containers stopped); api has two containers waiting for addresses.
fn scaled_down() -> World {
    let mut w = World::new(3, true);
    w.service("web", false).service("api", false);
    w.task("web", Some(1), 1, "w1", true, Some("192.168.8.136"))
        .task("web", Some(2), 2, "w2", false, Some("192.168.8.137"))
        .task("web", Some(3), 3, "w3", false, Some("192.168.8.138"))
        .task("api", Some(1), 1, "a1", true, None)
        .task("api", Some(2), 2, "a2", true, None);
    w
}

#[test]
fn a_slot_scaled_away_holds_its_address_through_the_cooldown_only() {
    let w = scaled_down();
    // The pools were edited with the scale-down: .137-.138 now belong to api.
    let d = spec(&[
        ("web", &["192.168.8.136"], IngressMode::Keep),
        ("api", &["192.168.8.137-192.168.8.140"], IngressMode::Keep),
    ]);
    let mem = web_memory(&[
        (1, "192.168.8.136"),
        (2, "192.168.8.137"),
        (3, "192.168.8.138"),
    ]);
    // The pass that sees them gone: held from now, api gets the others.
    let p = plan(
        &d,
        &w.snap,
        &mem,
        Mode::Up,
        &release("2026-01-01T00:01:00Z"),
    );
    assert_eq!(
        connects(&p),
        [
            ("a1".to_owned(), ip("192.168.8.139")),
            ("a2".to_owned(), ip("192.168.8.140"))
        ]
    );
    let held: Vec<(String, Option<Ipv4Addr>, RecordState, Option<Timestamp>)> = p
        .records
        .iter()
        .filter(|r| r.released.is_some())
        .map(|r| (r.key.to_string(), r.ip, r.state, r.released))
        .collect();
    assert_eq!(
        held,
        [
            (
                "web.2".into(),
                Some(ip("192.168.8.137")),
                RecordState::Reserved,
                Some(time("2026-01-01T00:01:00Z"))
            ),
            (
                "web.3".into(),
                Some(ip("192.168.8.138")),
                RecordState::Reserved,
                Some(time("2026-01-01T00:01:00Z"))
            ),
        ]
    );
    // A later pass inside the cooldown remembers when they went.
    let mem = memory_of(&p);
    let mut w2 = w.clone();
    w2.apply(&p);
    w2.task("api", Some(3), 3, "a3", true, None);
    let p2 = plan(
        &d,
        &w2.snap,
        &mem,
        Mode::Up,
        &release("2026-01-01T00:01:04Z"),
    );
    assert!(connects(&p2).iter().all(|(c, _)| c == "a3"), "{p2}");
    assert_eq!(p2.problems.len(), 1, "{:?}", p2.problems); // a3 waits: exhausted
    assert_eq!(
        p2.records.iter().filter(|r| r.released.is_some()).count(),
        2
    );
    // Once it has passed, they are free and forgotten.
    let p3 = plan(
        &d,
        &w2.snap,
        &memory_of(&p2),
        Mode::Up,
        &release("2026-01-01T00:01:05Z"),
    );
    assert_eq!(connects(&p3), [("a3".to_owned(), ip("192.168.8.137"))]);
    assert!(p3.records.iter().all(|r| r.released.is_none()));
    // Without a cooldown (the CLI), a slot that is gone is forgotten at once.
    let cli = w2.plan(&d, &mem);
    assert_eq!(connects(&cli), [("a3".to_owned(), ip("192.168.8.137"))]);
}

#[test]
fn a_slot_back_inside_the_cooldown_gets_its_address_again() {
    // web scaled from 3 to 1, and swarm already pruned the old tasks of
    // slots 2 and 3: only the memory knows their addresses.
    let mut w = World::new(3, true);
    w.service("web", false);
    w.task("web", Some(1), 1, "w1", true, Some("192.168.8.136"));
    let d = web(&["192.168.8.136-192.168.8.140"]);
    let mem = web_memory(&[
        (1, "192.168.8.136"),
        (2, "192.168.8.139"),
        (3, "192.168.8.140"),
    ]);
    let p = plan(
        &d,
        &w.snap,
        &mem,
        Mode::Up,
        &release("2026-01-01T00:01:00Z"),
    );
    assert!(p.actions.is_empty(), "{p}");
    let mem = memory_of(&p);
    // Scaled back to 3 two seconds later: new tasks in slots 2 and 3.
    let mut back = w.clone();
    back.task("web", Some(2), 1, "w2b", true, None)
        .task("web", Some(3), 2, "w3b", true, None);
    let p = plan(
        &d,
        &back.snap,
        &mem,
        Mode::Up,
        &release("2026-01-01T00:01:02Z"),
    );
    assert_eq!(
        connects(&p),
        [
            ("w2b".to_owned(), ip("192.168.8.139")),
            ("w3b".to_owned(), ip("192.168.8.140"))
        ]
    );
    assert!(
        p.records.iter().all(|r| r.released.is_none()),
        "{:?}",
        p.records
    );
}

fn probing(clear: &[&str], answered: &[&str], due: &[&str]) -> PlanOptions {
    let seen = |a: &&str| {
        (
            ip(a),
            crate::probe::book::Seen {
                mac: "02:00:00:00:00:99".into(),
                node: "node2".into(),
                at: time("2026-12-04T10:00:00Z"),
            },
        )
    };
    let gate = crate::probe::book::Gate {
        clear: clear.iter().map(|a| ip(a)).collect(),
        answered: answered.iter().map(seen).collect(),
        due: due.iter().map(|a| ip(a)).collect(),
        failed: None,
        stale: Default::default(),
    };
    PlanOptions {
        probe: BTreeMap::from([("mv".to_owned(), gate)]),
        ..Default::default()
    }
}

#[test]
fn with_probing_only_probed_free_addresses_are_handed_out_and_answered_ones_never() {
    let w = three_replicas();
    let d = web(&["192.168.8.136-192.168.8.150"]);
    // .137 answered; .136 and .138 were probed free.
    let o = probing(&["192.168.8.136", "192.168.8.138"], &["192.168.8.137"], &[]);
    let p = plan(&d, &w.snap, &Memory::new(), Mode::Up, &o);
    assert_eq!(
        connects(&p),
        vec![
            ("c1".into(), ip("192.168.8.136")),
            ("c2".into(), ip("192.168.8.138"))
        ],
        "{p}"
    );
    let waiting = p.records.iter().find(|r| r.container == "c3").unwrap();
    assert_eq!(waiting.state, RecordState::Pending);
    assert!(
        waiting
            .message
            .as_deref()
            .unwrap()
            .contains("waiting for an ARP probe")
    );
    // Waiting is not exhaustion; the unseen holder is reported.
    assert!(
        !p.problems
            .iter()
            .any(|x| matches!(x, Problem::PoolExhausted { .. })),
        "{p}"
    );
    assert!(
        p.problems
            .iter()
            .any(|x| matches!(x, Problem::UnseenHolder { ip: a, .. } if *a == ip("192.168.8.137")))
    );
    // The next probe: the waiting slot's and PROBE_AHEAD more (here every
    // unprobed free address of the pool), never the answered one, from the
    // waiting slot's node.
    let want = &p.probes["mv"];
    assert_eq!(want.node_id, "n3");
    assert_eq!(want.awaiting, 1);
    assert_eq!(
        want.addrs,
        (139..=150).map(|i| ip(&format!("192.168.8.{i}"))).collect()
    );
}

#[test]
fn with_probing_nothing_that_holds_an_address_moves_and_enough_probed_means_no_probe() {
    let mut w = three_replicas();
    let d = web(&["192.168.8.136-192.168.8.150"]);
    let first = w.plan(&d, &Memory::new());
    w.apply(&first);
    let memory = memory_of(&first);
    // Something answers for .137, which c2 holds (adopted or bound before
    // the probe): c2 keeps it. Plenty probed free: no probe wanted, except
    // the answered address due again.
    let clear: Vec<String> = (139..=150).map(|i| format!("192.168.8.{i}")).collect();
    let clear: Vec<&str> = clear.iter().map(String::as_str).collect();
    let o = probing(&clear, &["192.168.8.137"], &[]);
    let p = plan(&d, &w.snap, &memory, Mode::Up, &o);
    assert!(p.actions.is_empty(), "{p}");
    assert!(p.probes.is_empty(), "{:?}", p.probes);
    let o = probing(&clear, &["192.168.8.137"], &["192.168.8.137"]);
    let p = plan(&d, &w.snap, &memory, Mode::Up, &o);
    assert!(p.actions.is_empty(), "{p}");
    assert_eq!(p.probes["mv"].addrs, BTreeSet::from([ip("192.168.8.137")]));
    // Probed free addresses past half their life are probed again while
    // they still count; addresses held are not.
    let mut o = probing(&clear, &[], &[]);
    o.probe.get_mut("mv").unwrap().stale =
        BTreeSet::from([ip("192.168.8.139"), ip("192.168.8.137")]);
    let p = plan(&d, &w.snap, &memory, Mode::Up, &o);
    assert!(p.actions.is_empty(), "{p}");
    assert_eq!(p.probes["mv"].addrs, BTreeSet::from([ip("192.168.8.139")]));
}

#[test]
fn a_container_of_ours_still_stopping_after_a_scale_down_is_not_a_foreign_holder() {
    let mut w = World::new(3, true);
    w.service("web", false);
    w.task("web", Some(1), 1, "w1", true, Some("192.168.8.136"))
        .task("web", Some(2), 2, "w2", true, Some("192.168.8.137"))
        .task("web", Some(3), 3, "w3", true, Some("192.168.8.138"))
        .pending_task("web", Some(4), 1);
    // Slot 3 scaled away: swarm wants it shut down, its container is still
    // stopping (the stop grace period) and holds .138.
    let t = w.snap.services[0]
        .tasks
        .iter_mut()
        .find(|t| t.slot == Some(3))
        .unwrap();
    t.wanted = false;
    let d = web(&["192.168.8.136-192.168.8.140"]);
    let p = w.plan(&d, &Memory::new());
    assert!(
        !p.problems
            .iter()
            .any(|x| matches!(x, Problem::ForeignHolder { .. })),
        "{p}"
    );
    assert!(
        connects(&p).iter().all(|(_, a)| *a != ip("192.168.8.138")),
        "{p}"
    );
}
