//! The reconcile engine: observe (I/O) -> plan (pure) -> apply (I/O) ->
//! report. Start at [`pass`]: one [`Pass`] runs that sequence, and it is the
//! only code that does; the CLI and the operator both drive it and neither
//! decides anything on its own.
//!
//! Where is an IP chosen? [`plan`] with [`crate::pool`]. Where is it sent to
//! Docker? [`apply`] through [`crate::engine`]. Where is it written back?
//! The operator's status, from the [`Record`]s here.

pub(crate) mod apply;
pub(crate) mod audit;
pub(crate) mod observe;
pub(crate) mod pass;
pub mod plan;
pub(crate) mod repair;
pub(crate) mod report;

pub use crate::engine::models::TaskState;
pub(crate) use k8s_openapi::jiff::Timestamp;
use std::fmt;
use std::net::Ipv4Addr;

pub(crate) use apply::ApplyOptions;
pub(crate) use observe::{NodeCache, Observed, observe};
pub(crate) use pass::{Ownership, Pass, Passed, Watcher};
pub use plan::{Memory, Mode, Plan, PlanOptions, Survey, plan, plan_in};

/// One observation of the whole swarm: plain data, no handles.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// Shared by the snapshots of the passes of one round: each binding's
    /// sees every node, and none copies them.
    pub nodes: std::sync::Arc<Vec<NodeView>>,
    /// The services the spec names that exist, in spec order.
    pub services: Vec<ServiceView>,
    /// Services the spec names that do not exist (yet).
    pub missing_services: Vec<String>,
}

impl Snapshot {
    pub(crate) fn node(&self, id: &str) -> Option<&NodeView> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// The nodes to change (copied first when shared).
    pub fn nodes_mut(&mut self) -> &mut Vec<NodeView> {
        std::sync::Arc::make_mut(&mut self.nodes)
    }

    /// The same nodes, with only these services (and those of them that
    /// are missing): what one binding's plan sees of a round's snapshot.
    pub(crate) fn for_services(&self, names: &[&str]) -> Snapshot {
        let wanted = |n: &str| names.contains(&n);
        Snapshot {
            nodes: self.nodes.clone(),
            services: self
                .services
                .iter()
                .filter(|s| wanted(&s.name))
                .cloned()
                .collect(),
            missing_services: self
                .missing_services
                .iter()
                .filter(|s| wanted(s))
                .cloned()
                .collect(),
        }
    }
}

/// One node and what its engine showed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeView {
    pub id: String,
    pub hostname: String,
    pub addr: String,
    /// Swarm's view of the node: `ready`, `down`, ...
    pub state: String,
    /// Why its engine could not be read; `None` when it was.
    pub problem: Option<String>,
    pub networks: Vec<NetView>,
    /// Shared with the operator's node reads and every pass's snapshot:
    /// 100,000 containers are held once, not once per pass.
    pub containers: std::sync::Arc<Vec<ContainerView>>,
}

impl NodeView {
    /// The containers to change (copied first when shared).
    pub fn containers_mut(&mut self) -> &mut Vec<ContainerView> {
        std::sync::Arc::make_mut(&mut self.containers)
    }

    pub(crate) fn reachable(&self) -> bool {
        self.problem.is_none()
    }

    pub(crate) fn network(&self, name: &str) -> Option<&NetView> {
        self.networks.iter().find(|n| n.name == name)
    }

    /// The swarm ingress network, recognised by its flag, not its name.
    pub(crate) fn ingress(&self) -> Option<&NetView> {
        self.networks.iter().find(|n| n.ingress)
    }

    /// Label used in messages: hostname, else ID.
    pub(crate) fn label(&self) -> &str {
        if self.hostname.is_empty() {
            &self.id
        } else {
            &self.hostname
        }
    }
}

/// A network as one engine has it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetView {
    pub id: String,
    pub name: String,
    pub driver: String,
    pub ingress: bool,
    pub subnet: Option<String>,
    pub gateway: Option<String>,
    pub ip_range: Option<String>,
    pub parent: Option<String>,
    /// Created by mvconf (it carries mvconf's label).
    pub managed: bool,
    /// Created by the operator for this MacvlanBinding.
    pub owner: Option<Owner>,
}

/// A container on one node, running or not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerView {
    pub id: String,
    pub running: bool,
    /// Swarm service name label, for task containers.
    pub service: Option<String>,
    pub task: Option<String>,
    pub endpoints: Vec<EndpointView>,
}

impl ContainerView {
    pub(crate) fn endpoint(&self, network: &str) -> Option<&EndpointView> {
        self.endpoints.iter().find(|e| e.network == network)
    }
}

/// A container's attachment to a network.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointView {
    pub network: String,
    /// The address it has now (running containers).
    pub ip: Option<Ipv4Addr>,
    /// The address it asked for (kept by stopped containers).
    pub requested: Option<Ipv4Addr>,
}

/// Who owns a service or a network: the MacvlanBinding named by its
/// `io.mvconf.owner` label, and the operator install of `io.mvconf.install`.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Owner {
    /// `namespace/name` of the MacvlanBinding.
    pub binding: String,
    /// `namespace/lease` of the operator install; empty when not given.
    pub install: String,
}

impl Owner {
    /// From Docker labels; `None` when nobody claims it.
    pub(crate) fn from_labels(labels: &std::collections::HashMap<String, String>) -> Option<Owner> {
        use crate::engine::models::labels;
        let binding = labels.get(labels::OWNER).filter(|b| !b.is_empty())?;
        Some(Owner {
            binding: binding.clone(),
            install: labels.get(labels::INSTALL).cloned().unwrap_or_default(),
        })
    }

    /// The labels that say so.
    pub(crate) fn labels(&self) -> [(&'static str, &str); 2] {
        use crate::engine::models::labels;
        [
            (labels::OWNER, &self.binding),
            (labels::INSTALL, &self.install),
        ]
    }
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MacvlanBinding {}", self.binding)?;
        if !self.install.is_empty() {
            write!(f, " (operator {})", self.install)?;
        }
        Ok(())
    }
}

/// A service the spec names, with its tasks (all desired states, so that
/// earlier containers of a slot are known).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceView {
    pub id: String,
    pub name: String,
    pub global: bool,
    pub uses_ingress: bool,
    pub tasks: Vec<TaskView>,
    /// The operator's claim on it, from its labels.
    pub owner: Option<Owner>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskView {
    pub id: String,
    pub slot: Option<u64>,
    pub node_id: String,
    /// Swarm still wants this task (desired state before shutdown).
    pub wanted: bool,
    pub state: TaskState,
    pub container: Option<String>,
    /// Status timestamp; orders a slot's tasks in time.
    pub timestamp: Option<Timestamp>,
}

/// What keeps an address across container replacements: a replicated
/// service's task slot, or a global service's node.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Slot {
    Slot(u64),
    Node(String),
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Slot::Slot(n) => write!(f, "{n}"),
            Slot::Node(id) => write!(f, "node {}", short(id)),
        }
    }
}

/// A service's slot: the unit that owns an address.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub service: String,
    pub slot: Slot,
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.slot {
            Slot::Slot(n) => write!(f, "{}.{n}", self.service),
            Slot::Node(id) => write!(f, "{}@{}", self.service, short(id)),
        }
    }
}

/// The first 12 characters of a Docker ID, as Docker prints it.
pub(crate) fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// State of a record.
pub use crate::crd::RecordState;

/// One slot's binding, as planned and then as applied: what status and the
/// `status` table show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub key: Key,
    pub(crate) network: String,
    pub(crate) node_id: String,
    pub(crate) node: String,
    pub(crate) host_ip: String,
    pub(crate) task: String,
    pub(crate) container: String,
    pub ip: Option<Ipv4Addr>,
    pub(crate) ingress: bool,
    pub state: RecordState,
    pub(crate) message: Option<String>,
    /// When the container got this address, when known.
    pub(crate) since: Option<Timestamp>,
    /// For a slot scaled away whose address cools down: when it went.
    pub(crate) released: Option<Timestamp>,
}

/// Something the user should know that is not a single failed call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The node's engine could not be read.
    NodeUnreachable { node: String, message: String },
    /// A network of the spec exists on a node with other settings.
    NetworkMismatch {
        node: String,
        network: String,
        message: String,
    },
    /// The pool has no address left for these slots.
    PoolExhausted {
        service: String,
        waiting: Vec<String>,
    },
    /// The spec names a service that does not exist.
    ServiceMissing { service: String },
    /// A container not managed by this binding holds an address of one of
    /// its pools; it is left alone, and the address is not handed out.
    ForeignHolder {
        node: String,
        container: String,
        network: String,
        ip: Ipv4Addr,
        service: String,
    },
    /// Something Docker does not show (a host, a router, another
    /// platform's container) answered an ARP probe for a free address of a
    /// pool: the address goes to nobody until a later probe finds it free.
    UnseenHolder {
        network: String,
        ip: Ipv4Addr,
        mac: String,
        node: String,
    },
    /// The probe of a network's free addresses could not run: they are
    /// handed out unprobed until one does.
    ProbeFailed {
        network: String,
        node: String,
        message: String,
    },
}

impl Problem {
    /// Whether the problem means the pass did not do its job (exit code,
    /// Ready condition); a foreign holder, an unseen holder and a probe that
    /// could not run are only worth a warning.
    pub(crate) fn is_error(&self) -> bool {
        !matches!(
            self,
            Problem::ForeignHolder { .. }
                | Problem::UnseenHolder { .. }
                | Problem::ProbeFailed { .. }
        )
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::NodeUnreachable { node, message } => {
                write!(f, "node {node} unreachable: {message}")
            }
            Problem::NetworkMismatch {
                node,
                network,
                message,
            } => {
                write!(
                    f,
                    "network {network} on node {node} differs from the spec: {message}"
                )
            }
            Problem::PoolExhausted { service, waiting } => write!(
                f,
                "pool of service {service} exhausted: {} container{} left without an address ({})",
                waiting.len(),
                if waiting.len() == 1 { "" } else { "s" },
                waiting.join(", ")
            ),
            Problem::ServiceMissing { service } => write!(f, "service {service} does not exist"),
            Problem::ForeignHolder {
                node,
                container,
                network,
                ip,
                service,
            } => write!(
                f,
                "{ip} (pool of service {service}) is held on {network} by container {} on node {node}, which this binding does not manage; left alone",
                short(container)
            ),
            Problem::UnseenHolder {
                network,
                ip,
                mac,
                node,
            } => write!(
                f,
                "{ip} of network {network} answered an ARP probe from node {node} (MAC {mac}): something Docker does not show holds it; handed out to nobody until a probe finds it free"
            ),
            Problem::ProbeFailed {
                network,
                node,
                message,
            } => write!(
                f,
                "cannot probe free addresses of network {network} from node {node}: {message}; handing them out unprobed"
            ),
        }
    }
}

/// Per-service counters, as status shows them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ServiceCounts {
    pub(crate) name: String,
    pub(crate) desired: u64,
    pub(crate) bound: u64,
    pub(crate) pool_size: u64,
    pub(crate) allocated: u64,
    pub(crate) free: u64,
    /// Addresses of the pool's entries its network reserves.
    pub(crate) reserved: u64,
}

/// One network's state on every node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct NetworkState {
    pub(crate) name: String,
    pub(crate) ready_nodes: u64,
    pub(crate) total_nodes: u64,
    /// (node, why not ready)
    pub(crate) not_ready: Vec<(String, String)>,
}
