//! Plan: from the validated spec, one snapshot and what is remembered of
//! each slot, to the list of actions that makes Docker match. Pure: no I/O,
//! no clock, no randomness; the same inputs give the same plan.
//!
//! The allocation rules, in the order they are applied:
//! 1. Addresses held by anything this binding does not manage (foreign
//!    containers, containers on other networks, node addresses) are never
//!    handed out.
//! 2. A live container that already holds an address of its pool keeps it
//!    (valid assignments never move). Two of ours on one address: the one the
//!    records name keeps it, the other moves.
//! 3. A slot whose container is being replaced keeps its remembered address
//!    reserved.
//! 4. A live container without a valid address gets its slot's remembered
//!    address, else the address its slot's earlier containers had, else the
//!    lowest free one.

use super::{
    ContainerView, Key, NetView, NetworkState, NodeView, Problem, Record, RecordState,
    ServiceCounts, ServiceView, Slot, Snapshot, TaskView, short,
};
use crate::config::validate::{Desired, Network, Service};
use crate::crd::IngressMode;
use crate::pool::Allocator;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::net::Ipv4Addr;

/// What a pass is for: the mvconf commands, and the operator's passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Create networks, connect containers, apply the ingress setting.
    Up,
    /// Disconnect the services' containers from their networks.
    Disconnect,
    /// Remove the networks from every node.
    Remove,
    /// Disconnect, then remove the networks.
    Down,
    /// Disconnect the services' containers from the ingress network.
    Uningress,
    /// Connect them to the ingress network again.
    Reingress,
    /// Change nothing; report what is (the `status` table, the audit).
    Observe,
}

/// What is remembered of a slot between passes (the operator's status
/// records): its address and since when it has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remembered {
    pub ip: Ipv4Addr,
    pub since: Option<String>,
}

pub type Memory = BTreeMap<Key, Remembered>;

/// One change to make on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    CreateNetwork {
        node_id: String,
        node: String,
        network: Network,
    },
    RemoveNetwork {
        node_id: String,
        node: String,
        network: String,
    },
    Connect {
        node_id: String,
        node: String,
        network: String,
        container: String,
        key: Key,
        ip: Ipv4Addr,
    },
    Disconnect {
        node_id: String,
        node: String,
        network: String,
        container: String,
        key: Option<Key>,
        reason: String,
    },
    DetachIngress {
        node_id: String,
        node: String,
        network: String,
        container: String,
        key: Key,
    },
    AttachIngress {
        node_id: String,
        node: String,
        network: String,
        container: String,
        key: Key,
    },
}

impl Action {
    pub fn node_id(&self) -> &str {
        match self {
            Action::CreateNetwork { node_id, .. }
            | Action::RemoveNetwork { node_id, .. }
            | Action::Connect { node_id, .. }
            | Action::Disconnect { node_id, .. }
            | Action::DetachIngress { node_id, .. }
            | Action::AttachIngress { node_id, .. } => node_id,
        }
    }

    pub fn node(&self) -> &str {
        match self {
            Action::CreateNetwork { node, .. }
            | Action::RemoveNetwork { node, .. }
            | Action::Connect { node, .. }
            | Action::Disconnect { node, .. }
            | Action::DetachIngress { node, .. }
            | Action::AttachIngress { node, .. } => node,
        }
    }

    /// Order within a node: networks first, then disconnects (so a moved
    /// container is free to reconnect), then connects, then removals.
    pub fn phase(&self) -> u8 {
        match self {
            Action::CreateNetwork { .. } => 0,
            Action::Disconnect { .. } | Action::DetachIngress { .. } => 1,
            Action::Connect { .. } | Action::AttachIngress { .. } => 2,
            Action::RemoveNetwork { .. } => 3,
        }
    }

    pub fn key(&self) -> Option<&Key> {
        match self {
            Action::Connect { key, .. }
            | Action::DetachIngress { key, .. }
            | Action::AttachIngress { key, .. } => Some(key),
            Action::Disconnect { key, .. } => key.as_ref(),
            _ => None,
        }
    }

    /// A short verb for counters and summaries.
    pub fn verb(&self) -> &'static str {
        match self {
            Action::CreateNetwork { .. } => "network created",
            Action::RemoveNetwork { .. } => "network removed",
            Action::Connect { .. } => "connected",
            Action::Disconnect { .. } => "disconnected",
            Action::DetachIngress { .. } => "detached from ingress",
            Action::AttachIngress { .. } => "attached to ingress",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::CreateNetwork { node, network, .. } => {
                write!(
                    f,
                    "create network {} ({} via {}) on {node}",
                    network.name, network.subnet, network.parent
                )
            }
            Action::RemoveNetwork { node, network, .. } => {
                write!(f, "remove network {network} from {node}")
            }
            Action::Connect {
                node,
                network,
                container,
                key,
                ip,
                ..
            } => {
                write!(
                    f,
                    "connect {} ({key}) to {network} on {node} with {ip}",
                    short(container)
                )
            }
            Action::Disconnect {
                node,
                network,
                container,
                key,
                reason,
                ..
            } => {
                write!(f, "disconnect {}", short(container))?;
                if let Some(k) = key {
                    write!(f, " ({k})")?;
                }
                write!(f, " from {network} on {node}")?;
                if !reason.is_empty() {
                    write!(f, ": {reason}")?;
                }
                Ok(())
            }
            Action::DetachIngress {
                node,
                network,
                container,
                key,
                ..
            } => {
                write!(
                    f,
                    "disconnect {} ({key}) from {network} (ingress) on {node}",
                    short(container)
                )
            }
            Action::AttachIngress {
                node,
                network,
                container,
                key,
                ..
            } => {
                write!(
                    f,
                    "connect {} ({key}) to {network} (ingress) on {node}",
                    short(container)
                )
            }
        }
    }
}

/// The plan of one pass.
#[derive(Debug, Clone)]
pub struct Plan {
    pub mode: Mode,
    /// Sorted by node, then phase.
    pub actions: Vec<Action>,
    /// Every slot of every service, as it will be once the actions succeed.
    pub records: Vec<Record>,
    pub problems: Vec<Problem>,
    pub services: Vec<ServiceCounts>,
    pub networks: Vec<NetworkState>,
    /// Each service's allocator after planning, for apply to pick another
    /// address when an engine answers "address in use".
    pub allocators: BTreeMap<String, Allocator>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.actions.is_empty() {
            writeln!(f, "nothing to do")?;
        }
        for a in &self.actions {
            writeln!(f, "{a}")?;
        }
        for p in &self.problems {
            writeln!(f, "problem: {p}")?;
        }
        Ok(())
    }
}

/// Whether an existing network matches the spec; `Err` says how not.
fn network_matches(want: &Network, have: &NetView) -> Result<(), String> {
    let mut diffs = Vec::new();
    if have.driver != "macvlan" {
        diffs.push(format!("driver {} (want macvlan)", have.driver));
    }
    let subnet = want.subnet.to_string();
    if have.subnet.as_deref() != Some(subnet.as_str()) {
        diffs.push(format!(
            "subnet {} (want {subnet})",
            have.subnet.as_deref().unwrap_or("none")
        ));
    }
    let gw = want.gateway.to_string();
    if have.gateway.as_deref().is_some_and(|g| g != gw) {
        diffs.push(format!(
            "gateway {} (want {gw})",
            have.gateway.as_deref().unwrap_or("none")
        ));
    }
    if have.parent.as_deref() != Some(want.parent.as_str()) {
        diffs.push(format!(
            "parent {} (want {})",
            have.parent.as_deref().unwrap_or("none"),
            want.parent
        ));
    }
    let range = want.ip_range.map(|r| r.to_string());
    if have.ip_range != range {
        diffs.push(format!(
            "ip range {} (want {})",
            have.ip_range.as_deref().unwrap_or("none"),
            range.as_deref().unwrap_or("none")
        ));
    }
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(diffs.join(", "))
    }
}

/// A slot of a service as the snapshot shows it.
struct SlotState<'a> {
    /// The task swarm wants in this slot now.
    current: Option<&'a TaskView>,
    /// Every task of the slot, oldest first.
    history: Vec<&'a TaskView>,
}

fn slots_of(sv: &ServiceView) -> BTreeMap<Slot, SlotState<'_>> {
    let mut slots: BTreeMap<Slot, SlotState<'_>> = BTreeMap::new();
    for t in &sv.tasks {
        let slot = match (sv.global, t.slot) {
            (false, Some(n)) => Slot::Slot(n),
            _ => Slot::Node(t.node_id.clone()),
        };
        let e = slots.entry(slot).or_insert(SlotState {
            current: None,
            history: Vec::new(),
        });
        e.history.push(t);
        if t.wanted {
            // Prefer the running one; else the latest.
            let better = match e.current {
                None => true,
                Some(c) => {
                    (t.state == "running", &t.timestamp) > (c.state == "running", &c.timestamp)
                }
            };
            if better {
                e.current = Some(t);
            }
        }
    }
    for s in slots.values_mut() {
        s.history.sort_by(|a, b| a.timestamp.cmp(&b.timestamp));
    }
    slots
}

/// Where a live container is.
#[derive(Clone, Copy)]
struct Live<'a> {
    node: &'a NodeView,
    container: &'a ContainerView,
}

/// Choices that differ between the CLI and the operator.
#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// Networks another binding still uses: never removed.
    pub keep_networks: BTreeSet<String>,
    /// With `ingress: Keep`, re-attach the ingress network to containers of
    /// services that publish ports through it (the operator keeps the spec
    /// true); the CLI's `up` leaves ingress alone, as mvconf did.
    pub restore_ingress: bool,
}

/// Builds the plan.
pub fn plan(
    desired: &Desired,
    snapshot: &Snapshot,
    memory: &Memory,
    mode: Mode,
    options: &PlanOptions,
) -> Plan {
    let keep_networks = &options.keep_networks;
    let mut actions = Vec::new();
    let mut problems = Vec::new();
    let mut records = Vec::new();

    for n in &snapshot.nodes {
        if let Some(p) = &n.problem {
            problems.push(Problem::NodeUnreachable {
                node: n.label().to_owned(),
                message: p.clone(),
            });
        }
    }
    for s in &snapshot.missing_services {
        problems.push(Problem::ServiceMissing { service: s.clone() });
    }

    // Networks: which (node, network) pairs can take connects.
    let mut usable: BTreeSet<(&str, &str)> = BTreeSet::new();
    let mut networks = Vec::new();
    for want in &desired.networks {
        let mut state = NetworkState {
            name: want.name.clone(),
            total_nodes: snapshot.nodes.len() as u64,
            ..Default::default()
        };
        for n in &snapshot.nodes {
            if !n.reachable() {
                state
                    .not_ready
                    .push((n.label().to_owned(), "engine unreachable".into()));
                continue;
            }
            match n.network(&want.name) {
                None => {
                    // Docker allows one macvlan network per parent interface.
                    let taken_parent = n.networks.iter().find(|x| {
                        x.driver == "macvlan" && x.parent.as_deref() == Some(want.parent.as_str())
                    });
                    if let (Mode::Up, Some(other)) = (mode, taken_parent) {
                        let message = format!(
                            "its parent {} already carries macvlan network {} (Docker allows one per parent)",
                            want.parent, other.name
                        );
                        problems.push(Problem::NetworkMismatch {
                            node: n.label().to_owned(),
                            network: want.name.clone(),
                            message: message.clone(),
                        });
                        state.not_ready.push((n.label().to_owned(), message));
                    } else if mode == Mode::Up {
                        actions.push(Action::CreateNetwork {
                            node_id: n.id.clone(),
                            node: n.label().to_owned(),
                            network: want.clone(),
                        });
                        usable.insert((n.id.as_str(), want.name.as_str()));
                        state.ready_nodes += 1;
                    } else {
                        state
                            .not_ready
                            .push((n.label().to_owned(), "absent".into()));
                    }
                }
                Some(have) => match network_matches(want, have) {
                    Ok(()) => {
                        usable.insert((n.id.as_str(), want.name.as_str()));
                        state.ready_nodes += 1;
                        if matches!(mode, Mode::Remove | Mode::Down)
                            && !keep_networks.contains(&want.name)
                        {
                            actions.push(Action::RemoveNetwork {
                                node_id: n.id.clone(),
                                node: n.label().to_owned(),
                                network: want.name.clone(),
                            });
                        }
                    }
                    Err(diff) => {
                        problems.push(Problem::NetworkMismatch {
                            node: n.label().to_owned(),
                            network: want.name.clone(),
                            message: diff.clone(),
                        });
                        state
                            .not_ready
                            .push((n.label().to_owned(), format!("exists with {diff}")));
                    }
                },
            }
        }
        networks.push(state);
    }

    // Every running container by ID, and every address held on a macvlan
    // endpoint anywhere: (ip) -> [(node, container, network)].
    let mut live: HashMap<&str, Live<'_>> = HashMap::new();
    let mut held: BTreeMap<Ipv4Addr, Vec<Live<'_>>> = BTreeMap::new();
    let mut held_net: HashMap<(&str, Ipv4Addr), &str> = HashMap::new();
    let mut node_addrs: Vec<Ipv4Addr> = Vec::new();
    for n in &snapshot.nodes {
        if let Ok(a) = n.addr.parse::<Ipv4Addr>() {
            node_addrs.push(a);
        }
        let macvlans: BTreeSet<&str> = n
            .networks
            .iter()
            .filter(|x| x.driver == "macvlan")
            .map(|x| x.name.as_str())
            .collect();
        for c in n.containers.iter().filter(|c| c.running) {
            live.insert(
                c.id.as_str(),
                Live {
                    node: n,
                    container: c,
                },
            );
            for e in &c.endpoints {
                if let (true, Some(ip)) = (macvlans.contains(e.network.as_str()), e.ip) {
                    held.entry(ip).or_default().push(Live {
                        node: n,
                        container: c,
                    });
                    held_net.insert((c.id.as_str(), ip), e.network.as_str());
                }
            }
        }
    }
    // Stopped containers by ID, for the addresses a slot had before.
    let mut stopped: HashMap<&str, &ContainerView> = HashMap::new();
    for n in &snapshot.nodes {
        for c in n.containers.iter().filter(|c| !c.running) {
            stopped.insert(c.id.as_str(), c);
        }
    }

    // Which live containers are ours, and on which network: container -> (service, key).
    let spec_services: HashMap<&str, &Service> = desired
        .services
        .iter()
        .map(|s| (s.name.as_str(), s))
        .collect();
    let mut ours: HashMap<&str, (&Service, Key)> = HashMap::new();
    let mut all_slots: Vec<(&Service, &ServiceView, BTreeMap<Slot, SlotState<'_>>)> = Vec::new();
    for sv in &snapshot.services {
        let Some(spec) = spec_services.get(sv.name.as_str()) else {
            continue;
        };
        let slots = slots_of(sv);
        for (slot, st) in &slots {
            if let Some(cid) = st.current.and_then(|t| t.container.as_deref())
                && live.contains_key(cid)
            {
                ours.insert(
                    cid,
                    (
                        spec,
                        Key {
                            service: sv.name.clone(),
                            slot: slot.clone(),
                        },
                    ),
                );
            }
        }
        all_slots.push((spec, sv, slots));
    }
    // A holder that is a live container of `service` on that service's own
    // network; any other holder blocks the address for `service`.
    let is_own = |cid: &str, ip: Ipv4Addr, service: &str| -> bool {
        ours.get(cid).is_some_and(|(svc, _)| {
            svc.name == service
                && held_net
                    .get(&(cid, ip))
                    .is_some_and(|net| *net == svc.network)
        })
    };

    let mut allocators = BTreeMap::new();
    let mut services = Vec::new();
    for (spec, sv, slots) in &all_slots {
        let mut alloc = Allocator::new(spec.pool.clone());
        for a in &node_addrs {
            alloc.exclude(*a);
        }
        // Rule 1: foreign holders. Only the held addresses inside the pool's
        // ranges are visited: cost follows the pool, not the whole cluster.
        let in_pool = spec
            .pool
            .ranges()
            .iter()
            .flat_map(|r| held.range(r.start()..=r.end()));
        for (ip, holders) in in_pool {
            for h in holders {
                if !is_own(&h.container.id, *ip, &spec.name) {
                    alloc.exclude(*ip);
                    if !ours.contains_key(h.container.id.as_str()) {
                        problems.push(Problem::ForeignHolder {
                            node: h.node.label().to_owned(),
                            container: h.container.id.clone(),
                            network: held_net
                                .get(&(h.container.id.as_str(), *ip))
                                .map(|s| (*s).to_owned())
                                .unwrap_or_default(),
                            ip: *ip,
                            service: spec.name.clone(),
                        });
                    }
                }
            }
        }

        // The live container of each wanted slot, and what it holds on our network.
        struct Want<'a> {
            slot: &'a Slot,
            task: &'a TaskView,
            live: Option<Live<'a>>,
            cur: Option<Ipv4Addr>,
        }
        let wants: Vec<Want<'_>> = slots
            .iter()
            .filter_map(|(slot, st)| {
                let task = st.current?;
                let live = task.container.as_deref().and_then(|c| live.get(c).copied());
                let cur = live
                    .and_then(|l| l.container.endpoint(&spec.network))
                    .and_then(|e| e.ip);
                Some(Want {
                    slot,
                    task,
                    live,
                    cur,
                })
            })
            .collect();
        let key_of = |slot: &Slot| Key {
            service: sv.name.clone(),
            slot: slot.clone(),
        };

        // Rule 2: keeps, the remembered holder of an address first.
        let mut kept: HashMap<&Slot, Ipv4Addr> = HashMap::new();
        let mut order: Vec<&Want<'_>> = wants
            .iter()
            .filter(|w| w.cur.is_some_and(|ip| spec.pool.contains(ip)))
            .collect();
        order.sort_by_key(|w| {
            let remembered = memory
                .get(&key_of(w.slot))
                .is_some_and(|m| Some(m.ip) == w.cur);
            (!remembered, w.slot.clone())
        });
        for w in order {
            let Some(ip) = w.cur else { continue };
            if alloc.claim(ip).is_ok() {
                kept.insert(w.slot, ip);
            }
        }

        // Rule 3: every other wanted slot reserves the address it is known
        // to have had: remembered, else what its earlier containers (newest
        // first) asked for. A slot whose container is being replaced keeps
        // it that way; a live one gets it back.
        let history = |slot: &Slot| -> Vec<Ipv4Addr> {
            slots
                .get(slot)
                .map(|st| {
                    st.history
                        .iter()
                        .rev()
                        .filter_map(|t| t.container.as_deref())
                        .filter_map(|c| {
                            stopped
                                .get(c)
                                .copied()
                                .or_else(|| live.get(c).map(|l| l.container))
                        })
                        .filter_map(|c| {
                            c.endpoint(&spec.network).and_then(|e| e.requested.or(e.ip))
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut reserved: HashMap<&Slot, Ipv4Addr> = HashMap::new();
        for w in &wants {
            if kept.contains_key(w.slot) {
                continue;
            }
            let candidates = memory
                .get(&key_of(w.slot))
                .map(|m| m.ip)
                .into_iter()
                .chain(history(w.slot));
            for ip in candidates {
                if alloc.claim(ip).is_ok() {
                    reserved.insert(w.slot, ip);
                    break;
                }
            }
        }

        // Rule 4: addresses for live containers without a valid one.
        let first_record = records.len();
        let mut exhausted = Vec::new();
        for w in &wants {
            let key = key_of(w.slot);
            let node = w
                .live
                .map(|l| l.node)
                .or_else(|| snapshot.node(&w.task.node_id));
            let mut rec = Record {
                key: key.clone(),
                network: spec.network.clone(),
                node_id: w.task.node_id.clone(),
                node: node
                    .map(|n| n.label().to_owned())
                    .unwrap_or_else(|| short(&w.task.node_id).to_owned()),
                host_ip: node.map(|n| n.addr.clone()).unwrap_or_default(),
                task: w.task.id.clone(),
                container: w.task.container.clone().unwrap_or_default(),
                ip: None,
                ingress: false,
                state: RecordState::Pending,
                message: None,
                since: memory
                    .get(&key)
                    .filter(|m| Some(m.ip) == w.cur)
                    .and_then(|m| m.since.clone()),
            };
            let Some(l) = w.live else {
                // Not running (being replaced), or on a node we cannot read.
                rec.ip = reserved.get(w.slot).copied();
                rec.state = if rec.ip.is_some() {
                    RecordState::Reserved
                } else {
                    RecordState::Pending
                };
                rec.message = Some(match node {
                    Some(n) if !n.reachable() => format!("node {} unreachable", n.label()),
                    _ => format!(
                        "task {} is {}",
                        short(&w.task.id),
                        if w.task.state.is_empty() {
                            "not running"
                        } else {
                            &w.task.state
                        }
                    ),
                });
                if rec.ip.is_some() {
                    rec.since = memory.get(&key).and_then(|m| m.since.clone());
                }
                records.push(rec);
                continue;
            };
            let ingress_net = l.node.ingress();
            rec.ingress = ingress_net.is_some_and(|i| l.container.endpoint(&i.name).is_some());

            match mode {
                Mode::Up => {}
                Mode::Disconnect | Mode::Down => {
                    if let Some(ip) = w
                        .cur
                        .or_else(|| l.container.endpoint(&spec.network).and_then(|e| e.ip))
                    {
                        actions.push(Action::Disconnect {
                            node_id: l.node.id.clone(),
                            node: l.node.label().to_owned(),
                            network: spec.network.clone(),
                            container: l.container.id.clone(),
                            key: Some(key.clone()),
                            reason: String::new(),
                        });
                        rec.message = Some(format!("had {ip}"));
                    }
                    rec.state = RecordState::Pending;
                    records.push(rec);
                    continue;
                }
                Mode::Remove | Mode::Observe | Mode::Uningress | Mode::Reingress => {
                    rec.ip = w.cur;
                    match w.cur {
                        Some(ip) if spec.pool.contains(ip) => rec.state = RecordState::Bound,
                        Some(ip) => {
                            rec.state = RecordState::Failed;
                            rec.message = Some(format!("has {ip}, outside its pool"));
                        }
                        None => {
                            rec.message = Some(format!("not connected to {}", spec.network));
                        }
                    }
                    if mode == Mode::Uningress || (mode == Mode::Reingress && sv.uses_ingress) {
                        plan_ingress(mode, l, &key, &mut rec, &mut actions);
                    }
                    records.push(rec);
                    continue;
                }
            }

            if !usable.contains(&(l.node.id.as_str(), spec.network.as_str())) {
                rec.ip = kept.get(w.slot).copied().or(reserved.get(w.slot).copied());
                rec.state = RecordState::Pending;
                rec.message = Some(format!(
                    "network {} is not usable on node {}",
                    spec.network,
                    l.node.label()
                ));
                records.push(rec);
                continue;
            }

            if let Some(ip) = kept.get(w.slot) {
                rec.ip = Some(*ip);
                rec.state = RecordState::Bound;
            } else {
                let choice = match reserved.get(w.slot) {
                    Some(ip) => Ok(*ip),
                    None => alloc.allocate(None),
                };
                match choice {
                    Ok(ip) => {
                        if let Some(old) = w.cur {
                            let reason = if spec.pool.contains(old) {
                                format!("{old} is also held by another container")
                            } else {
                                format!("{old} is not in the pool")
                            };
                            actions.push(Action::Disconnect {
                                node_id: l.node.id.clone(),
                                node: l.node.label().to_owned(),
                                network: spec.network.clone(),
                                container: l.container.id.clone(),
                                key: Some(key.clone()),
                                reason,
                            });
                        }
                        actions.push(Action::Connect {
                            node_id: l.node.id.clone(),
                            node: l.node.label().to_owned(),
                            network: spec.network.clone(),
                            container: l.container.id.clone(),
                            key: key.clone(),
                            ip,
                        });
                        rec.ip = Some(ip);
                        rec.state = RecordState::Bound;
                        rec.since = None;
                    }
                    Err(e) => {
                        rec.state = RecordState::Pending;
                        rec.message = Some(format!("no address: {e}"));
                        exhausted.push(key.to_string());
                    }
                }
            }
            match spec.ingress {
                IngressMode::Detach => {
                    plan_ingress(Mode::Uningress, l, &key, &mut rec, &mut actions)
                }
                IngressMode::Keep if options.restore_ingress && sv.uses_ingress => {
                    plan_ingress(Mode::Reingress, l, &key, &mut rec, &mut actions)
                }
                IngressMode::Keep => {}
            }
            records.push(rec);
        }
        if !exhausted.is_empty() {
            problems.push(Problem::PoolExhausted {
                service: spec.name.clone(),
                waiting: exhausted,
            });
        }
        // This service's records are the ones just pushed.
        let mine = &records[first_record..];
        services.push(ServiceCounts {
            name: sv.name.clone(),
            desired: wants.len() as u64,
            bound: mine
                .iter()
                .filter(|r| r.state == RecordState::Bound)
                .count() as u64,
            pool_size: spec.pool.size(),
            allocated: mine.iter().filter(|r| r.ip.is_some()).count() as u64,
            free: alloc.free(),
        });
        allocators.insert(spec.name.clone(), alloc);
    }
    // Services named in the spec but absent still get counters.
    for name in &snapshot.missing_services {
        if let Some(spec) = spec_services.get(name.as_str()) {
            services.push(ServiceCounts {
                name: name.clone(),
                pool_size: spec.pool.size(),
                free: spec.pool.size(),
                ..Default::default()
            });
        }
    }

    actions.sort_by(|a, b| (a.node(), a.phase()).cmp(&(b.node(), b.phase())));
    records.sort_by(|a, b| a.key.cmp(&b.key));
    problems.dedup();
    Plan {
        mode,
        actions,
        records,
        problems,
        services,
        networks,
        allocators,
    }
}

fn plan_ingress(mode: Mode, l: Live<'_>, key: &Key, rec: &mut Record, actions: &mut Vec<Action>) {
    let Some(ing) = l.node.ingress() else { return };
    let attached = l.container.endpoint(&ing.name).is_some();
    let action = match (mode, attached) {
        (Mode::Uningress, true) => Action::DetachIngress {
            node_id: l.node.id.clone(),
            node: l.node.label().to_owned(),
            network: ing.name.clone(),
            container: l.container.id.clone(),
            key: key.clone(),
        },
        (Mode::Reingress, false) => Action::AttachIngress {
            node_id: l.node.id.clone(),
            node: l.node.label().to_owned(),
            network: ing.name.clone(),
            container: l.container.id.clone(),
            key: key.clone(),
        },
        _ => return,
    };
    rec.ingress = mode == Mode::Reingress;
    actions.push(action);
}

#[cfg(test)]
mod tests;
