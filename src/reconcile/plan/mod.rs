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
//!    reserved; a slot that is gone (scaled away) keeps it out of reach of
//!    every other slot for the release cooldown (the operator's; the CLI
//!    remembers nothing between runs).
//! 4. A live container without a valid address gets its slot's remembered
//!    address, else the address its slot's earlier containers had, else the
//!    lowest free one.
//!
//! One part per rule, each a pure function over the snapshot:
//! [`networks`] (which node can take connects), [`holdings`] (who holds
//! which address), [`slots`] (a service's slots in time), [`assign`] (the
//! four rules, per service), [`cooldown`] (what slots that are gone still
//! hold) and [`ingress`].

mod assign;
mod cooldown;
mod holdings;
mod ingress;
mod networks;
mod slots;

use super::{Key, NetworkState, Problem, Record, ServiceCounts, Snapshot, Timestamp, short};
use crate::config::validate::{Desired, Network};
use crate::pool::Allocator;
use std::collections::{BTreeMap, BTreeSet};
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
    pub since: Option<Timestamp>,
    /// The slot was scaled away at this time; its address cools down.
    pub released: Option<Timestamp>,
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
    pub(crate) fn node_id(&self) -> &str {
        match self {
            Action::CreateNetwork { node_id, .. }
            | Action::RemoveNetwork { node_id, .. }
            | Action::Connect { node_id, .. }
            | Action::Disconnect { node_id, .. }
            | Action::DetachIngress { node_id, .. }
            | Action::AttachIngress { node_id, .. } => node_id,
        }
    }

    pub(crate) fn node(&self) -> &str {
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
    pub(crate) fn phase(&self) -> u8 {
        match self {
            Action::CreateNetwork { .. } => 0,
            Action::Disconnect { .. } | Action::DetachIngress { .. } => 1,
            Action::Connect { .. } | Action::AttachIngress { .. } => 2,
            Action::RemoveNetwork { .. } => 3,
        }
    }

    /// A short verb for counters and summaries.
    pub(crate) fn verb(&self) -> &'static str {
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
    /// Sorted by node, then phase.
    pub actions: Vec<Action>,
    /// Every slot of every service, as it will be once the actions succeed.
    pub records: Vec<Record>,
    pub problems: Vec<Problem>,
    pub(crate) services: Vec<ServiceCounts>,
    pub(crate) networks: Vec<NetworkState>,
    /// Each service's allocator after planning, for apply to pick another
    /// address when an engine answers "address in use".
    pub(crate) allocators: BTreeMap<String, Allocator>,
    /// What to probe next, per network (only networks that are probed).
    pub probes: BTreeMap<String, ProbeWanted>,
}

impl Plan {
    pub(crate) fn is_empty(&self) -> bool {
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

/// Choices that differ between the CLI and the operator.
#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// Networks another binding still uses: never removed.
    pub(crate) keep_networks: BTreeSet<String>,
    /// With `ingress: Keep`, re-attach the ingress network to containers of
    /// services that publish ports through it (the operator keeps the spec
    /// true); the CLI's `up` leaves ingress alone, as mvconf did.
    pub(crate) restore_ingress: bool,
    /// The operator's release cooldown: a slot scaled away keeps its
    /// address out of every other slot's reach for this long after
    /// `now` first saw it gone. `None` (the CLI, which remembers nothing
    /// between runs): a slot that is gone is forgotten.
    pub(crate) release: Option<Release>,
    /// Duplicate-address detection, per network (absent: not probed): what
    /// the probes found, which limits what may be handed out.
    pub(crate) probe: BTreeMap<String, crate::probe::book::Gate>,
}

/// Addresses of one network to probe (ARP), and the node to probe from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeWanted {
    pub node_id: String,
    pub addrs: BTreeSet<Ipv4Addr>,
    /// Slots waiting for one of them now (the rest is probed ahead).
    pub awaiting: usize,
}

/// A release cooldown, and the time of the pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Release {
    pub now: Timestamp,
    pub cooldown: std::time::Duration,
}

impl Release {
    /// When an address released at `at` may go to another slot.
    pub(crate) fn until(&self, at: Timestamp) -> Timestamp {
        let ms = i64::try_from(self.cooldown.as_millis()).unwrap_or(i64::MAX);
        at.checked_add(k8s_openapi::jiff::SignedDuration::from_millis(ms))
            .unwrap_or(Timestamp::MAX)
    }

    /// Whether an address released at `at` still cools down.
    pub(crate) fn cooling(&self, at: Timestamp) -> bool {
        self.now < self.until(at)
    }
}

/// What the parts of a plan add up: actions, records and problems, in the
/// order the parts produce them.
#[derive(Debug, Default)]
struct Draft {
    actions: Vec<Action>,
    records: Vec<Record>,
    problems: Vec<Problem>,
    probes: BTreeMap<String, ProbeWanted>,
}

/// What the plans of every binding on one snapshot share, built once per
/// snapshot: who holds which address on every node. It grows with the
/// swarm's containers; a binding's plan on it grows with the binding.
pub struct Survey<'a> {
    holdings: holdings::Holdings<'a>,
}

impl<'a> Survey<'a> {
    pub fn of(snapshot: &'a Snapshot) -> Self {
        Self {
            holdings: holdings::Holdings::of(snapshot),
        }
    }
}

/// Builds the plan.
pub fn plan(
    desired: &Desired,
    snapshot: &Snapshot,
    memory: &Memory,
    mode: Mode,
    options: &PlanOptions,
) -> Plan {
    plan_in(
        &Survey::of(snapshot),
        desired,
        snapshot,
        memory,
        mode,
        options,
    )
}

/// Builds the plan on a survey of `snapshot`'s nodes (of this snapshot, or
/// of one with the same nodes and other services).
pub fn plan_in(
    survey: &Survey<'_>,
    desired: &Desired,
    snapshot: &Snapshot,
    memory: &Memory,
    mode: Mode,
    options: &PlanOptions,
) -> Plan {
    let mut draft = Draft::default();
    for n in snapshot.nodes.iter() {
        if let Some(p) = &n.problem {
            draft.problems.push(Problem::NodeUnreachable {
                node: n.label().to_owned(),
                message: p.clone(),
            });
        }
    }
    for s in &snapshot.missing_services {
        draft
            .problems
            .push(Problem::ServiceMissing { service: s.clone() });
    }
    let networks = networks::plan(desired, snapshot, mode, &options.keep_networks, &mut draft);
    let holdings = &survey.holdings;
    let claimed = slots::Claimed::of(desired, snapshot, holdings);

    let release = options.release.filter(|_| mode == Mode::Up);
    let cooling = cooldown::cooling(desired, &claimed, memory, holdings, release);

    let mut allocators = BTreeMap::new();
    let mut services = Vec::new();
    for claim in &claimed.services {
        let world = assign::World {
            snapshot,
            memory,
            holdings,
            claimed: &claimed,
            usable: &networks.usable,
            cooling: &cooling,
            mode,
            options,
        };
        let (counts, alloc) = assign::service(&world, claim, &mut draft);
        services.push(counts);
        allocators.insert(claim.spec.name.clone(), alloc);
    }
    draft.records.extend(
        cooling
            .iter()
            .map(|c| cooldown::record(c, snapshot, release)),
    );
    // Services named in the spec but absent still get counters.
    for name in &snapshot.missing_services {
        if let Some(spec) = desired.services.iter().find(|s| &s.name == name) {
            services.push(ServiceCounts {
                name: name.clone(),
                pool_size: spec.pool.size(),
                free: spec.pool.size(),
                reserved: spec.skipped.size(),
                ..Default::default()
            });
        }
    }

    let Draft {
        mut actions,
        mut records,
        mut problems,
        probes,
    } = draft;
    actions.sort_by(|a, b| (a.node(), a.phase()).cmp(&(b.node(), b.phase())));
    records.sort_by(|a, b| a.key.cmp(&b.key));
    problems.dedup();
    Plan {
        actions,
        records,
        problems,
        services,
        networks: networks.states,
        allocators,
        probes,
    }
}

#[cfg(test)]
mod tests;
