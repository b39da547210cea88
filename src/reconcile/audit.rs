//! The audit: what Docker shows, checked against what the bindings promise.
//! Pure: a snapshot and the bindings in, findings out. `mvconf audit` prints
//! them; the fault tests use them as their oracle.
//!
//! A finding is something that is wrong now: an address on two live
//! containers, a container bound outside its pool or on the wrong network, a
//! status record that Docker contradicts, a running task left unbound, an
//! endpoint nobody claims any more, a node that could not be read (then
//! nothing about it can be promised). Notes are worth knowing but not wrong.

use super::{ContainerView, NetView, NodeView, Snapshot, short};
use crate::config::Desired;
use crate::config::validate::Service;
use crate::crd::{MacvlanBindingStatus, RecordState};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;

/// One binding (or file) to check.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Subject<'a> {
    /// `namespace/name`, or the file it came from.
    pub(crate) name: &'a str,
    pub(crate) desired: &'a Desired,
    /// Its status, when it has one (read from the cluster).
    pub(crate) status: Option<&'a MacvlanBindingStatus>,
}

/// How much the subjects cover.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct AuditOptions {
    /// The subjects are every binding there is: an endpoint on a network
    /// mvconf created that none of them claims was left behind.
    pub(crate) complete: bool,
}

/// A container as findings name it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) struct Holder {
    pub(crate) node: String,
    pub(crate) container: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) service: Option<String>,
    pub(crate) network: String,
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "container {} on {}", self.container, self.node)?;
        if let Some(s) = &self.service {
            write!(f, " (service {s})")?;
        }
        write!(f, " via {}", self.network)
    }
}

/// Something wrong.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub(crate) enum Finding {
    /// One address on several running containers on the same segment.
    #[serde(rename_all = "camelCase")]
    DuplicateAddress { ip: Ipv4Addr, holders: Vec<Holder> },
    /// A service's container holds an address outside the service's pool.
    #[serde(rename_all = "camelCase")]
    OutOfPool {
        binding: String,
        holder: Holder,
        ip: Ipv4Addr,
    },
    /// A service's container is on one of the binding's networks other than
    /// its own.
    #[serde(rename_all = "camelCase")]
    WrongNetwork {
        binding: String,
        holder: Holder,
        expected: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        ip: Option<Ipv4Addr>,
    },
    /// A running container of a listed service without its address.
    #[serde(rename_all = "camelCase")]
    Unbound {
        binding: String,
        service: String,
        node: String,
        container: String,
        network: String,
    },
    /// The binding's status says something Docker does not show.
    #[serde(rename_all = "camelCase")]
    StatusContradicted {
        binding: String,
        service: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        slot: Option<u64>,
        node: String,
        container: String,
        claim: String,
        docker: String,
    },
    /// A container the binding does not manage holds one of its pool's
    /// addresses.
    #[serde(rename_all = "camelCase")]
    ForeignInPool {
        binding: String,
        holder: Holder,
        ip: Ipv4Addr,
        pool_of: String,
    },
    /// An endpoint on a network mvconf created that no binding claims.
    #[serde(rename_all = "camelCase")]
    LeftBehind {
        holder: Holder,
        #[serde(skip_serializing_if = "Option::is_none")]
        ip: Option<Ipv4Addr>,
    },
    /// A node whose engine could not be read: nothing about it is known.
    #[serde(rename_all = "camelCase")]
    NodeUnreadable { node: String, message: String },
    /// Something Docker does not show answered the operator's ARP probe
    /// for a free address of the binding's network (its status says so).
    #[serde(rename_all = "camelCase")]
    UnseenHolder {
        binding: String,
        network: String,
        ip: String,
        mac: String,
        node: String,
    },
}

impl Finding {
    /// A short, stable name for tables and tests.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Finding::DuplicateAddress { .. } => "DuplicateAddress",
            Finding::OutOfPool { .. } => "OutOfPool",
            Finding::WrongNetwork { .. } => "WrongNetwork",
            Finding::Unbound { .. } => "Unbound",
            Finding::StatusContradicted { .. } => "StatusContradicted",
            Finding::ForeignInPool { .. } => "ForeignInPool",
            Finding::LeftBehind { .. } => "LeftBehind",
            Finding::NodeUnreadable { .. } => "NodeUnreadable",
            Finding::UnseenHolder { .. } => "UnseenHolder",
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::DuplicateAddress { ip, holders } => {
                let list: Vec<String> = holders.iter().map(ToString::to_string).collect();
                write!(
                    f,
                    "{ip} is on {} live containers: {}",
                    holders.len(),
                    list.join("; ")
                )
            }
            Finding::OutOfPool {
                binding,
                holder,
                ip,
            } => write!(f, "{binding}: {holder} has {ip}, outside its pool"),
            Finding::WrongNetwork {
                binding,
                holder,
                expected,
                ip,
            } => {
                write!(f, "{binding}: {holder} belongs on {expected}")?;
                if let Some(ip) = ip {
                    write!(f, " (has {ip})")?;
                }
                Ok(())
            }
            Finding::Unbound {
                binding,
                service,
                node,
                container,
                network,
            } => write!(
                f,
                "{binding}: running container {container} of service {service} on {node} has no address on {network}"
            ),
            Finding::StatusContradicted {
                binding,
                service,
                slot,
                node,
                container,
                claim,
                docker,
            } => {
                write!(f, "{binding}: status of {service}")?;
                if let Some(s) = slot {
                    write!(f, ".{s}")?;
                }
                write!(
                    f,
                    " (container {container} on {node}) says {claim}; Docker shows {docker}"
                )
            }
            Finding::ForeignInPool {
                binding,
                holder,
                ip,
                pool_of,
            } => write!(
                f,
                "{binding}: {holder} holds {ip} from the pool of service {pool_of}, and is not managed by it"
            ),
            Finding::UnseenHolder {
                binding,
                network,
                ip,
                mac,
                node,
            } => write!(
                f,
                "{binding}: {ip} of network {network} answered an ARP probe from node {node} (MAC {mac}): a host Docker does not show holds it"
            ),
            Finding::LeftBehind { holder, ip } => {
                write!(
                    f,
                    "{holder} is on a network mvconf created that no binding claims"
                )?;
                if let Some(ip) = ip {
                    write!(f, " (holds {ip})")?;
                }
                Ok(())
            }
            Finding::NodeUnreadable { node, message } => {
                write!(f, "node {node} could not be read: {message}")
            }
        }
    }
}

/// What the audit saw and found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AuditReport {
    pub(crate) nodes: usize,
    pub(crate) nodes_read: usize,
    /// Running containers with a macvlan endpoint, on every node.
    pub(crate) macvlan_endpoints: usize,
    /// Running containers of the listed services.
    pub(crate) service_containers: usize,
    pub(crate) status_records: usize,
    pub(crate) findings: Vec<Finding>,
    /// Worth knowing, not wrong (a service that does not exist, a container
    /// on a binding's network outside its pools, an empty network left).
    pub(crate) notes: Vec<String>,
}

impl AuditReport {
    pub(crate) fn clean(&self) -> bool {
        self.findings.is_empty()
    }

    /// Findings of one kind, for tests and scripts.
    #[cfg(test)]
    pub(crate) fn of_kind(&self, kind: &str) -> Vec<&Finding> {
        self.findings.iter().filter(|f| f.kind() == kind).collect()
    }
}

impl fmt::Display for AuditReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for x in &self.findings {
            writeln!(f, "FINDING {:<18} {x}", x.kind())?;
        }
        for n in &self.notes {
            writeln!(f, "note    {n}")?;
        }
        write!(
            f,
            "audit: {} finding{} ({} of {} nodes read, {} macvlan endpoints, {} service containers, {} status records)",
            self.findings.len(),
            if self.findings.len() == 1 { "" } else { "s" },
            self.nodes_read,
            self.nodes,
            self.macvlan_endpoints,
            self.service_containers,
            self.status_records,
        )
    }
}

/// A running container's endpoint on a macvlan network.
struct Seen<'a> {
    node: &'a NodeView,
    net: &'a NetView,
    container: &'a ContainerView,
    ip: Option<Ipv4Addr>,
}

impl Seen<'_> {
    fn holder(&self) -> Holder {
        Holder {
            node: self.node.label().to_owned(),
            container: short(&self.container.id).to_owned(),
            service: self.container.service.clone(),
            network: self.net.name.clone(),
        }
    }
}

/// Checks the snapshot against the subjects.
pub(crate) fn audit(
    subjects: &[Subject<'_>],
    snapshot: &Snapshot,
    opts: AuditOptions,
) -> AuditReport {
    let mut report = AuditReport {
        nodes: snapshot.nodes.len(),
        nodes_read: snapshot.nodes.iter().filter(|n| n.reachable()).count(),
        ..Default::default()
    };
    let mut findings = BTreeSet::new();
    unreadable_nodes(snapshot, &mut findings);

    let seen = macvlan_endpoints(snapshot);
    report.macvlan_endpoints = seen.len();
    duplicate_addresses(&seen, &mut findings);

    let claims = Claims::of(subjects);
    for sub in subjects {
        for n in sub.status.iter().flat_map(|s| &s.networks) {
            for u in &n.unseen_holders {
                findings.insert(Finding::UnseenHolder {
                    binding: sub.name.to_owned(),
                    network: n.name.clone(),
                    ip: u.address.clone(),
                    mac: u.mac.clone(),
                    node: u.node.clone(),
                });
            }
        }
        check_binding(
            sub,
            snapshot,
            &seen,
            &claims,
            opts,
            &mut report,
            &mut findings,
        );
    }

    // Only with every binding known is an unclaimed endpoint or network
    // really nobody's.
    if opts.complete {
        left_behind(&seen, &claims, &mut findings);
        report.notes.extend(undeclared_networks(snapshot, &claims));
    }

    report.findings = findings.into_iter().collect();
    report
}

/// Nothing can be promised about a node whose engine could not be read.
fn unreadable_nodes(snapshot: &Snapshot, findings: &mut BTreeSet<Finding>) {
    for node in snapshot.nodes.iter() {
        if let Some(message) = &node.problem {
            findings.insert(Finding::NodeUnreadable {
                node: node.label().to_owned(),
                message: message.clone(),
            });
        }
    }
}

/// Every running container's macvlan endpoints, on every node read.
fn macvlan_endpoints(snapshot: &Snapshot) -> Vec<Seen<'_>> {
    let mut seen = Vec::new();
    for node in snapshot.nodes.iter().filter(|n| n.reachable()) {
        for c in node.containers.iter().filter(|c| c.running) {
            for ep in &c.endpoints {
                let Some(net) = node.network(&ep.network) else {
                    continue;
                };
                if net.driver == "macvlan" {
                    seen.push(Seen {
                        node,
                        net,
                        container: c,
                        ip: ep.ip,
                    });
                }
            }
        }
    }
    seen
}

/// One address, one container, per segment (same subnet, or same network
/// name when Docker shows no subnet).
fn duplicate_addresses(seen: &[Seen<'_>], findings: &mut BTreeSet<Finding>) {
    let mut by_addr: BTreeMap<(String, Ipv4Addr), Vec<Holder>> = BTreeMap::new();
    for s in seen {
        if let Some(ip) = s.ip {
            let segment = s.net.subnet.clone().unwrap_or_else(|| s.net.name.clone());
            by_addr.entry((segment, ip)).or_default().push(s.holder());
        }
    }
    for ((_, ip), mut holders) in by_addr {
        if holders.len() > 1 {
            holders.sort();
            findings.insert(Finding::DuplicateAddress { ip, holders });
        }
    }
}

/// Who claims which network's endpoints, over all subjects: a container
/// one binding leaves alone may be another's to manage.
struct Claims<'a> {
    /// `(network, service)` for every service some binding lists.
    services: BTreeSet<(&'a str, &'a str)>,
    /// Every network some binding declares.
    networks: BTreeSet<&'a str>,
}

impl<'a> Claims<'a> {
    fn of(subjects: &[Subject<'a>]) -> Self {
        let mut claims = Claims {
            services: BTreeSet::new(),
            networks: BTreeSet::new(),
        };
        for sub in subjects {
            let desired: &'a Desired = sub.desired;
            for n in &desired.networks {
                claims.networks.insert(n.name.as_str());
            }
            for s in &desired.services {
                claims
                    .services
                    .insert((s.network.as_str(), s.name.as_str()));
            }
        }
        claims
    }

    /// Whether some binding lists `service` with its endpoints on `network`.
    fn claimed(&self, network: &str, service: &str) -> bool {
        self.services.contains(&(network, service))
    }
}

/// One binding's findings and notes: its services' containers and pools,
/// what else is on its networks, and its status.
fn check_binding(
    sub: &Subject<'_>,
    snapshot: &Snapshot,
    seen: &[Seen<'_>],
    claims: &Claims<'_>,
    opts: AuditOptions,
    report: &mut AuditReport,
    findings: &mut BTreeSet<Finding>,
) {
    let binding = sub.name;
    let nets: BTreeSet<&str> = sub
        .desired
        .networks
        .iter()
        .map(|n| n.name.as_str())
        .collect();
    for svc in &sub.desired.services {
        if !snapshot.services.iter().any(|s| s.name == svc.name) {
            report
                .notes
                .push(format!("{binding}: service {} does not exist", svc.name));
        }
        report.service_containers +=
            service_containers(binding, svc, &nets, claims, snapshot, findings);
        foreign_in_pool(binding, svc, seen, findings);
    }
    if !opts.complete {
        report.notes.extend(outside_pools(sub, &nets, seen, claims));
    }
    if let Some(status) = sub.status {
        report.status_records += status.containers.len();
        status_findings(binding, sub.desired, status, snapshot, findings);
    }
}

/// Each running container of the service: on its network, with an address
/// of its pool, and on no other of the binding's. Returns how many there are.
fn service_containers(
    binding: &str,
    svc: &Service,
    nets: &BTreeSet<&str>,
    claims: &Claims<'_>,
    snapshot: &Snapshot,
    findings: &mut BTreeSet<Finding>,
) -> usize {
    let mut count = 0;
    for node in snapshot.nodes.iter().filter(|n| n.reachable()) {
        for c in node
            .containers
            .iter()
            .filter(|c| c.running && c.service.as_deref() == Some(svc.name.as_str()))
        {
            count += 1;
            let holder = |network: &str| Holder {
                node: node.label().to_owned(),
                container: short(&c.id).to_owned(),
                service: Some(svc.name.clone()),
                network: network.to_owned(),
            };
            match c.endpoint(&svc.network).and_then(|e| e.ip) {
                Some(ip) if !svc.pool.contains(ip) => {
                    findings.insert(Finding::OutOfPool {
                        binding: binding.to_owned(),
                        holder: holder(&svc.network),
                        ip,
                    });
                }
                Some(_) => {}
                None => {
                    findings.insert(Finding::Unbound {
                        binding: binding.to_owned(),
                        service: svc.name.clone(),
                        node: node.label().to_owned(),
                        container: short(&c.id).to_owned(),
                        network: svc.network.clone(),
                    });
                }
            }
            // Another binding may list the service on that network too.
            for ep in &c.endpoints {
                if ep.network != svc.network
                    && nets.contains(ep.network.as_str())
                    && !claims.claimed(&ep.network, &svc.name)
                {
                    findings.insert(Finding::WrongNetwork {
                        binding: binding.to_owned(),
                        holder: holder(&ep.network),
                        expected: svc.network.clone(),
                        ip: ep.ip,
                    });
                }
            }
        }
    }
    count
}

/// The pool's addresses held by containers it does not manage.
fn foreign_in_pool(
    binding: &str,
    svc: &Service,
    seen: &[Seen<'_>],
    findings: &mut BTreeSet<Finding>,
) {
    for s in seen {
        let Some(ip) = s.ip else { continue };
        if s.net.name != svc.network || !svc.pool.contains(ip) {
            continue;
        }
        let ours = s.container.service.as_deref() == Some(svc.name.as_str());
        if !ours {
            findings.insert(Finding::ForeignInPool {
                binding: binding.to_owned(),
                holder: s.holder(),
                ip,
                pool_of: svc.name.clone(),
            });
        }
    }
}

/// Containers on the binding's networks that no listed service owns, with
/// addresses outside every pool: not wrong, but worth a line.
fn outside_pools(
    sub: &Subject<'_>,
    nets: &BTreeSet<&str>,
    seen: &[Seen<'_>],
    claims: &Claims<'_>,
) -> Vec<String> {
    let mut notes = Vec::new();
    for s in seen {
        if !nets.contains(s.net.name.as_str()) {
            continue;
        }
        let owner = s.container.service.as_deref().unwrap_or("");
        if claims.claimed(&s.net.name, owner) {
            continue;
        }
        let in_a_pool = s.ip.is_some_and(|ip| {
            sub.desired
                .services
                .iter()
                .any(|svc| svc.network == s.net.name && svc.pool.contains(ip))
        });
        if !in_a_pool {
            notes.push(format!(
                "{}: {} is on {} with {}, outside the binding's pools",
                sub.name,
                s.holder(),
                s.net.name,
                s.ip.map_or_else(|| "no address".to_owned(), |ip| ip.to_string())
            ));
        }
    }
    notes
}

/// Endpoints on mvconf's networks that no binding claims were left behind
/// (by a deleted binding, or by hand).
fn left_behind(seen: &[Seen<'_>], claims: &Claims<'_>, findings: &mut BTreeSet<Finding>) {
    for s in seen {
        let owner = s.container.service.as_deref().unwrap_or("");
        if s.net.managed && !claims.claimed(&s.net.name, owner) {
            findings.insert(Finding::LeftBehind {
                holder: s.holder(),
                ip: s.ip,
            });
        }
    }
}

/// Networks mvconf created that no binding declares, each named once
/// however many nodes have it.
fn undeclared_networks(snapshot: &Snapshot, claims: &Claims<'_>) -> Vec<String> {
    let mut undeclared: BTreeSet<&str> = BTreeSet::new();
    for node in snapshot.nodes.iter().filter(|n| n.reachable()) {
        for net in node.networks.iter().filter(|n| n.managed) {
            if !claims.networks.contains(net.name.as_str()) {
                undeclared.insert(net.name.as_str());
            }
        }
    }
    undeclared
        .into_iter()
        .map(|name| format!(
            "network {name} was created by mvconf and no binding declares it (remove it with `mvconf rm` or `docker network rm`)"
        ))
        .collect()
}

/// Status records that Docker contradicts: a Bound record whose container
/// is not running with that address, and a bound container with no record.
fn status_findings(
    binding: &str,
    desired: &Desired,
    status: &MacvlanBindingStatus,
    snapshot: &Snapshot,
    findings: &mut BTreeSet<Finding>,
) {
    let mut recorded: BTreeSet<(&str, &str)> = BTreeSet::new(); // (node id, short container)
    for r in &status.containers {
        recorded.insert((r.node_id.as_str(), r.container.as_str()));
        if r.state != RecordState::Bound {
            continue;
        }
        let Some(node) = snapshot.node(&r.node_id) else {
            findings.insert(contradiction(
                binding,
                r,
                "node not in the swarm".to_owned(),
            ));
            continue;
        };
        if !node.reachable() {
            continue; // NodeUnreadable says it already
        }
        let network = desired
            .services
            .iter()
            .find(|s| s.name == r.service)
            .map(|s| s.network.as_str());
        let container = node
            .containers
            .iter()
            .find(|c| !r.container.is_empty() && c.id.starts_with(&r.container));
        let docker = match (container, network) {
            (None, _) => Some("no such container".to_owned()),
            (Some(c), _) if !c.running => Some("the container is not running".to_owned()),
            (Some(_), None) => Some("the service is not in the spec".to_owned()),
            (Some(c), Some(net)) => {
                let ip = c.endpoint(net).and_then(|e| e.ip).map(|ip| ip.to_string());
                match ip {
                    None => Some(format!("no address on {net}")),
                    Some(ip) if Some(&ip) != r.ip.as_ref() => Some(format!("{ip} on {net}")),
                    Some(_) => None,
                }
            }
        };
        if let Some(docker) = docker {
            findings.insert(contradiction(binding, r, docker));
        }
    }
    // Bound containers of the listed services missing from the status.
    for svc in &desired.services {
        for node in snapshot.nodes.iter().filter(|n| n.reachable()) {
            for c in node
                .containers
                .iter()
                .filter(|c| c.running && c.service.as_deref() == Some(svc.name.as_str()))
            {
                let Some(ip) = c.endpoint(&svc.network).and_then(|e| e.ip) else {
                    continue;
                };
                if !recorded.contains(&(node.id.as_str(), short(&c.id))) {
                    findings.insert(Finding::StatusContradicted {
                        binding: binding.to_owned(),
                        service: svc.name.clone(),
                        slot: None,
                        node: node.label().to_owned(),
                        container: short(&c.id).to_owned(),
                        claim: "nothing about this container".to_owned(),
                        docker: format!("it bound with {ip} on {}", svc.network),
                    });
                }
            }
        }
    }
}

fn contradiction(binding: &str, r: &crate::crd::ContainerRecord, docker: String) -> Finding {
    Finding::StatusContradicted {
        binding: binding.to_owned(),
        service: r.service.clone(),
        slot: r.slot,
        node: r.node.clone(),
        container: r.container.clone(),
        claim: format!("Bound with {}", r.ip.as_deref().unwrap_or("no address")),
        docker,
    }
}

#[cfg(test)]
mod tests;
