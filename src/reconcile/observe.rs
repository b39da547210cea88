//! Observe: one snapshot of the swarm per pass. Three manager calls plus two
//! per node (networks, containers), the nodes read in parallel; the cost
//! grows with nodes, never with containers times calls.

use super::{
    ContainerView, EndpointView, NetView, NodeView, Owner, ServiceView, Snapshot, TaskView,
};
use crate::cluster::{Cluster, ClusterNode};
use crate::engine::models::{ContainerSummary, Network, labels};
use crate::engine::{Engine, EngineError};
use futures::StreamExt;
use std::collections::HashMap;
use std::net::Ipv4Addr;

/// A snapshot plus the engines to act on, by node ID.
#[derive(Debug, Clone)]
pub(crate) struct Observed {
    pub(crate) snapshot: Snapshot,
    pub(crate) engines: HashMap<String, Engine>,
}

fn net_view(n: &Network) -> NetView {
    let cfg = n.ipam.config.first();
    let nonempty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    NetView {
        id: n.id.clone(),
        name: n.name.clone(),
        driver: n.driver.clone(),
        ingress: n.ingress,
        subnet: cfg.and_then(|c| nonempty(&c.subnet)),
        gateway: cfg.and_then(|c| nonempty(&c.gateway)),
        ip_range: cfg.and_then(|c| nonempty(&c.ip_range)),
        parent: n.options.get("parent").cloned(),
        managed: n
            .labels
            .get(labels::MANAGED_BY)
            .is_some_and(|v| v == "mvconf"),
        owner: Owner::from_labels(&n.labels),
    }
}

fn container_view(c: ContainerSummary) -> ContainerView {
    let mut endpoints: Vec<EndpointView> = c
        .network_settings
        .networks
        .iter()
        .map(|(name, ep)| EndpointView {
            network: name.clone(),
            ip: ep.ip_address.parse::<Ipv4Addr>().ok(),
            requested: ep.requested_ipv4().and_then(|a| a.parse().ok()),
        })
        .collect();
    endpoints.sort_by(|a, b| a.network.cmp(&b.network));
    ContainerView {
        running: c.state == "running",
        service: c.labels.get(labels::SERVICE_NAME).cloned(),
        task: c.labels.get(labels::TASK_ID).cloned(),
        id: c.id,
        endpoints,
    }
}

/// What one node's engine showed.
type NodeRead = Result<(Vec<NetView>, Vec<ContainerView>), EngineError>;

async fn read_node(n: &ClusterNode) -> NodeRead {
    let (nets, containers) =
        futures::try_join!(n.engine.networks(), n.engine.containers(true, &[]))?;
    let mut nets: Vec<NetView> = nets.iter().map(net_view).collect();
    nets.sort_by(|a, b| a.name.cmp(&b.name));
    let mut containers: Vec<ContainerView> = containers.into_iter().map(container_view).collect();
    containers.sort_by(|a, b| a.id.cmp(&b.id));
    Ok((nets, containers))
}

/// Reads the swarm. Fails only when the manager cannot be read; an
/// unreachable node is part of the snapshot (`NodeView::problem`).
pub(crate) async fn observe(
    cluster: &Cluster,
    services: &[String],
    concurrency: usize,
) -> Result<Observed, EngineError> {
    let manager = cluster.manager();
    let (nodes, all_services) = futures::try_join!(cluster.nodes(), manager.services())?;

    let by_name: HashMap<&str, &crate::engine::models::Service> = all_services
        .iter()
        .map(|s| (s.spec.name.as_str(), s))
        .collect();
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for name in services {
        match by_name.get(name.as_str()) {
            Some(s) => found.push(*s),
            None => missing.push(name.clone()),
        }
    }
    let ids: Vec<&str> = found.iter().map(|s| s.id.as_str()).collect();
    let tasks_fut = manager.tasks(&ids, false);

    // Down nodes are still asked: swarm's view lags, and an answer is truth.
    // Collected first: a lazy map of borrowing closures trips the
    // compiler's Send check when this runs inside the operator.
    let node_reads: Vec<_> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| async move { (i, read_node(n).await) })
        .collect();
    let reads = futures::stream::iter(node_reads)
        .buffer_unordered(concurrency.max(1))
        .collect::<Vec<_>>();
    let (tasks, reads) = futures::join!(tasks_fut, reads);
    let tasks = tasks?;

    let mut by_id: HashMap<&str, NodeRead> = HashMap::new();
    for (i, r) in reads {
        by_id.insert(nodes[i].id.as_str(), r);
    }
    let mut views = Vec::with_capacity(nodes.len());
    let mut engines = HashMap::with_capacity(nodes.len());
    for n in &nodes {
        let (problem, networks, containers) = match by_id.remove(n.id.as_str()) {
            Some(Ok((nets, cs))) => (None, nets, cs),
            Some(Err(e)) => (Some(e.to_string()), Vec::new(), Vec::new()),
            None => (Some("not read".to_owned()), Vec::new(), Vec::new()),
        };
        views.push(NodeView {
            id: n.id.clone(),
            hostname: n.hostname.clone(),
            addr: n.addr.clone(),
            state: n.state.clone(),
            problem,
            networks,
            containers,
        });
        engines.insert(n.id.clone(), n.engine.clone());
    }

    let mut tasks_of: HashMap<&str, Vec<TaskView>> = HashMap::new();
    for t in &tasks {
        tasks_of
            .entry(t.service_id.as_str())
            .or_default()
            .push(TaskView {
                id: t.id.clone(),
                slot: t.slot,
                node_id: t.node_id.clone(),
                wanted: t.is_wanted(),
                state: t.status.state,
                container: t.container_id().map(str::to_owned),
                timestamp: t.status.timestamp,
            });
    }
    let services = found
        .iter()
        .map(|s| {
            let mut tasks = tasks_of.remove(s.id.as_str()).unwrap_or_default();
            tasks.sort_by(|a, b| {
                a.slot
                    .cmp(&b.slot)
                    .then(a.node_id.cmp(&b.node_id))
                    .then(a.timestamp.cmp(&b.timestamp))
                    .then(a.id.cmp(&b.id))
            });
            ServiceView {
                id: s.id.clone(),
                name: s.spec.name.clone(),
                global: s.is_global(),
                uses_ingress: s.uses_ingress(),
                tasks,
                owner: Owner::from_labels(&s.spec.labels),
            }
        })
        .collect();
    Ok(Observed {
        snapshot: Snapshot {
            nodes: views,
            services,
            missing_services: missing,
        },
        engines,
    })
}
