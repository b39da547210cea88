//! Observe: one snapshot of the swarm per pass. Three manager calls plus two
//! per node (networks, containers), the nodes read in parallel; the cost
//! grows with nodes, never with containers times calls. With a
//! [`NodeCache`] (the operator's, kept current by the nodes' event
//! streams), only the nodes where something happened since their last
//! read are read again.

use super::{
    ContainerView, EndpointView, NetView, NodeView, Owner, ServiceView, Snapshot, TaskView,
};
use crate::cluster::{Cluster, ClusterNode};
use crate::engine::models::{ContainerSummary, Network, labels};
use crate::engine::{Engine, EngineError};
use futures::StreamExt;
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// One node's networks and containers, as read.
type NodeData = Arc<(Vec<NetView>, Arc<Vec<ContainerView>>)>;

/// Node reads kept between the passes of one swarm view. A node's last read
/// is used again only while its event stream is open, nothing was reported
/// on it since that read began, and the read is younger than `max_age` (a
/// bound on staleness, whatever happens to the stream). Keyed by engine
/// label, as the event watchers name nodes.
#[derive(Debug)]
pub(crate) struct NodeCache {
    max_age: Duration,
    nodes: Mutex<HashMap<String, Entry>>,
}

#[derive(Debug, Default)]
struct Entry {
    /// Moves on every event, stream (re)connection or break, and change
    /// this process made on the node.
    generation: u64,
    following: bool,
    /// The last read: the generation when it began, when, and what it found.
    read: Option<(u64, Instant, NodeData)>,
}

impl NodeCache {
    pub(crate) fn new(max_age: Duration) -> Self {
        Self {
            max_age,
            nodes: Mutex::new(HashMap::new()),
        }
    }

    fn entry<T>(&self, node: &str, f: impl FnOnce(&mut Entry) -> T) -> T {
        let mut nodes = self.nodes.lock().unwrap_or_else(PoisonError::into_inner);
        f(nodes.entry(node.to_owned()).or_default())
    }

    /// Something changed on `node`: an event, or a change this process made.
    pub(crate) fn changed(&self, node: &str) {
        self.entry(node, |e| e.generation += 1);
    }

    /// `node`'s events are followed from now on (`true`: the stream opened;
    /// what happened before is unknown) or not any more (it broke).
    pub(crate) fn following(&self, node: &str, on: bool) {
        self.entry(node, |e| {
            e.generation += 1;
            e.following = on;
        });
    }

    /// The last read of `node` when it is still current; otherwise the
    /// generation a new read begins at.
    fn get(&self, node: &str) -> Result<NodeData, u64> {
        self.entry(node, |e| match &e.read {
            Some((g, at, data))
                if e.following && *g == e.generation && at.elapsed() < self.max_age =>
            {
                Ok(data.clone())
            }
            _ => Err(e.generation),
        })
    }

    /// A read of `node` that began at `generation` (and `at`).
    fn put(&self, node: &str, generation: u64, at: Instant, data: NodeData) {
        self.entry(node, |e| {
            let newer = e.read.as_ref().is_some_and(|(g, _, _)| *g > generation);
            if !newer {
                e.read = Some((generation, at, data));
            }
        });
    }
}

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
type NodeRead = Result<NodeData, EngineError>;

async fn read_node(n: &ClusterNode) -> NodeRead {
    let (nets, containers) =
        futures::try_join!(n.engine.networks(), n.engine.containers(true, &[]))?;
    let mut nets: Vec<NetView> = nets.iter().map(net_view).collect();
    nets.sort_by(|a, b| a.name.cmp(&b.name));
    let mut containers: Vec<ContainerView> = containers.into_iter().map(container_view).collect();
    containers.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(Arc::new((nets, Arc::new(containers))))
}

/// `n`'s read from `cache` when current, else from its engine (kept).
async fn read_node_via(n: &ClusterNode, cache: Option<&NodeCache>) -> NodeRead {
    let Some(cache) = cache else {
        return read_node(n).await;
    };
    let key = n.engine.label();
    match cache.get(key) {
        Ok(data) => Ok(data),
        Err(generation) => {
            let at = Instant::now();
            let read = read_node(n).await?;
            cache.put(key, generation, at, read.clone());
            Ok(read)
        }
    }
}

/// Reads the swarm. Fails only when the manager cannot be read; an
/// unreachable node is part of the snapshot (`NodeView::problem`).
pub(crate) async fn observe(
    cluster: &Cluster,
    services: &[String],
    concurrency: usize,
    cache: Option<&NodeCache>,
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
        .map(|(i, n)| async move { (i, read_node_via(n, cache).await) })
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
            Some(Ok(data)) => (None, data.0.clone(), data.1.clone()),
            Some(Err(e)) => (Some(e.to_string()), Vec::new(), Arc::default()),
            None => (Some("not read".to_owned()), Vec::new(), Arc::default()),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> NodeData {
        Arc::new((Vec::new(), Arc::default()))
    }

    #[test]
    fn a_read_is_reused_only_while_the_stream_is_open_and_quiet() {
        let c = NodeCache::new(Duration::from_secs(300));
        let g = c.get("n1").expect_err("nothing read yet");
        c.put("n1", g, Instant::now(), data());
        assert!(c.get("n1").is_err(), "not followed yet: read again");

        c.following("n1", true);
        let g = c.get("n1").expect_err("the stream opened after that read");
        c.put("n1", g, Instant::now(), data());
        assert!(c.get("n1").is_ok(), "followed and quiet: kept");
        assert!(c.get("n2").is_err(), "another node is its own");

        c.changed("n1");
        let g = c.get("n1").expect_err("an event since the read");
        c.put("n1", g, Instant::now(), data());
        assert!(c.get("n1").is_ok());

        c.following("n1", false);
        assert!(c.get("n1").is_err(), "the stream broke");
    }

    #[test]
    fn an_event_during_a_read_makes_that_read_stale_and_old_reads_expire() {
        let c = NodeCache::new(Duration::from_secs(300));
        c.following("n1", true);
        let g = c.get("n1").expect_err("nothing read yet");
        // The read is under way when the node reports a change.
        c.changed("n1");
        c.put("n1", g, Instant::now(), data());
        assert!(c.get("n1").is_err(), "the read began before the change");

        let old = NodeCache::new(Duration::from_millis(1));
        old.following("n1", true);
        let g = old.get("n1").expect_err("nothing read yet");
        old.put("n1", g, Instant::now(), data());
        std::thread::sleep(Duration::from_millis(5));
        assert!(old.get("n1").is_err(), "older than the resync period");
    }
}
