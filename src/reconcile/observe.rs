//! Observe: one snapshot of the swarm per pass. Three manager calls plus two
//! per node (networks, containers), the nodes read in parallel; the cost
//! grows with nodes, never with containers times calls. With a
//! [`NodeCache`] (the operator's, kept current by the nodes' event
//! streams), only the nodes where something happened since their last
//! read are read again.

use super::plan::Action;
use super::{
    ContainerView, EndpointView, NetView, NodeView, Owner, ServiceView, Snapshot, TaskView,
};
use crate::cluster::{Cluster, ClusterNode};
use crate::engine::models::{ContainerSummary, Event, Network, labels};
use crate::engine::{Engine, EngineError};
use futures::{StreamExt, TryStreamExt};
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// One node's networks and containers, as read.
type NodeData = Arc<(Vec<NetView>, Arc<Vec<ContainerView>>)>;

/// Node reads kept between the passes of one swarm view, kept current by
/// the node's event stream at the grain of what changed: an event about one
/// container costs a read of that container, a network created or removed a
/// read of the node's networks. A node's last read is used again only while
/// its event stream is open and the read is younger than `max_age` (a bound
/// on staleness, whatever happens to the stream); a stream that opens or
/// breaks, or an event not understood, costs a read of the whole node.
/// Keyed by engine label, as the event watchers name nodes.
#[derive(Debug)]
pub(crate) struct NodeCache {
    max_age: Duration,
    nodes: Mutex<HashMap<String, Entry>>,
}

#[derive(Debug, Default)]
struct Entry {
    /// Moves on every change of the node not known at a finer grain: a
    /// stream (re)connection or break, an event not understood.
    generation: u64,
    following: bool,
    /// Moves on every finer-grained change; marks below carry its value.
    seq: u64,
    /// Containers changed since the last read, with the `seq` of their last
    /// change (a change during a read keeps the mark).
    containers: HashMap<String, u64>,
    /// The node's networks changed (created, removed) at this `seq`.
    networks: Option<u64>,
    /// The last read: the generation when it began, when, and what it found.
    read: Option<(u64, Instant, NodeData)>,
}

/// What a pass must read of a node.
#[derive(Debug)]
enum Need {
    /// Nothing: the last read is current.
    Nothing(NodeData),
    /// Only these containers (by ID, with their marks) and, when `networks`
    /// is set, the networks; the rest of `base` is current.
    Part {
        generation: u64,
        base: NodeData,
        containers: Vec<(String, u64)>,
        networks: Option<u64>,
    },
    /// Everything: a read that begins at this generation and mark.
    All { generation: u64, seq: u64 },
}

/// More changed containers than a quarter of a node's, or than
/// [`PARTIAL_MAX`]: read it whole (a URL stays short behind a proxy).
const PARTIAL_SHARE: usize = 4;
const PARTIAL_MAX: usize = 32;

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

    /// Something changed on `node` that only a read of the whole node shows.
    pub(crate) fn changed(&self, node: &str) {
        self.entry(node, |e| e.generation += 1);
    }

    /// Container `id` on `node` changed (it started, stopped, went away or
    /// was connected or disconnected): the next pass reads it again.
    pub(crate) fn container_changed(&self, node: &str, id: &str) {
        self.entry(node, |e| {
            e.seq += 1;
            e.containers.insert(id.to_owned(), e.seq);
        });
    }

    /// A network was created or removed on `node`.
    pub(crate) fn networks_changed(&self, node: &str) {
        self.entry(node, |e| {
            e.seq += 1;
            e.networks = Some(e.seq);
        });
    }

    /// An event of `node`'s stream: marks what it changed.
    pub(crate) fn event(&self, node: &str, event: &Event) {
        let container = event
            .actor
            .attributes
            .get("container")
            .filter(|c| !c.is_empty());
        match (event.kind.as_str(), event.action.as_str(), container) {
            ("container", _, _) if !event.actor.id.is_empty() => {
                self.container_changed(node, &event.actor.id);
            }
            ("network", "connect" | "disconnect", Some(c)) => self.container_changed(node, c),
            ("network", "create" | "destroy" | "remove", _) => self.networks_changed(node),
            _ => self.changed(node),
        }
    }

    /// Whether `node`'s last read shows container `id` as a swarm task's.
    pub(crate) fn knows_task_container(&self, node: &str, id: &str) -> bool {
        self.entry(node, |e| {
            e.read
                .as_ref()
                .is_some_and(|(_, _, d)| d.1.iter().any(|c| c.id == id && c.task.is_some()))
        })
    }

    /// This process acted on `node`: what the action touched is read again.
    pub(crate) fn acted(&self, node: &str, action: &Action) {
        match action {
            Action::CreateNetwork { .. } | Action::RemoveNetwork { .. } => {
                self.networks_changed(node);
            }
            Action::Connect { container, .. }
            | Action::Disconnect { container, .. }
            | Action::DetachIngress { container, .. }
            | Action::AttachIngress { container, .. } => self.container_changed(node, container),
        }
    }

    /// `node`'s events are followed from now on (`true`: the stream opened;
    /// what happened before is unknown) or not any more (it broke).
    pub(crate) fn following(&self, node: &str, on: bool) {
        self.entry(node, |e| {
            e.generation += 1;
            e.following = on;
        });
    }

    /// What a pass must read of `node`.
    fn need(&self, node: &str) -> Need {
        self.entry(node, |e| match &e.read {
            Some((g, at, data))
                if e.following && *g == e.generation && at.elapsed() < self.max_age =>
            {
                let many = e.containers.len() > PARTIAL_MAX
                    || e.containers.len() * PARTIAL_SHARE > data.1.len().max(PARTIAL_SHARE);
                if e.containers.is_empty() && e.networks.is_none() {
                    Need::Nothing(data.clone())
                } else if many {
                    Need::All {
                        generation: e.generation,
                        seq: e.seq,
                    }
                } else {
                    Need::Part {
                        generation: *g,
                        base: data.clone(),
                        containers: e.containers.iter().map(|(c, s)| (c.clone(), *s)).collect(),
                        networks: e.networks,
                    }
                }
            }
            _ => Need::All {
                generation: e.generation,
                seq: e.seq,
            },
        })
    }

    /// A whole read of `node` that began at `generation` and mark `seq`
    /// (and `at`): what was marked before it began is in it; what was
    /// marked since may not be, and stays marked.
    fn put(&self, node: &str, generation: u64, seq: u64, at: Instant, data: NodeData) {
        self.entry(node, |e| {
            let newer = e.read.as_ref().is_some_and(|(g, _, _)| *g > generation);
            if !newer {
                e.read = Some((generation, at, data));
                e.containers.retain(|_, s| *s > seq);
                e.networks = e.networks.filter(|s| *s > seq);
            }
        });
    }

    /// A read of some of `node` that began at `generation`, with the marks
    /// it answered: kept only when nothing coarser happened meanwhile, and
    /// only the marks not moved since are cleared.
    fn patch(&self, node: &str, generation: u64, answered: &Need, data: NodeData) {
        let Need::Part {
            containers,
            networks,
            ..
        } = answered
        else {
            return;
        };
        self.entry(node, |e| {
            let Some((g, at, _)) = &e.read else { return };
            if *g != generation || e.generation != generation {
                return;
            }
            let at = *at;
            for (c, s) in containers {
                if e.containers.get(c) == Some(s) {
                    e.containers.remove(c);
                }
            }
            if networks.is_some() && e.networks == *networks {
                e.networks = None;
            }
            e.read = Some((generation, at, data));
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

/// `n`'s read from `cache` when current, else from its engine (kept): only
/// what changed since the kept read when the cache knows what that is.
async fn read_node_via(n: &ClusterNode, cache: Option<&NodeCache>) -> NodeRead {
    let Some(cache) = cache else {
        return read_node(n).await;
    };
    let key = n.engine.label();
    match cache.need(key) {
        Need::Nothing(data) => Ok(data),
        Need::All { generation, seq } => {
            let at = Instant::now();
            let read = read_node(n).await?;
            cache.put(key, generation, seq, at, read.clone());
            Ok(read)
        }
        need @ Need::Part { .. } => {
            let read = read_some(n, &need).await?;
            if let Need::Part { generation, .. } = &need {
                cache.patch(key, *generation, &need, read.clone());
            }
            Ok(read)
        }
    }
}

/// The containers and networks `need` names, read again over its base.
async fn read_some(n: &ClusterNode, need: &Need) -> NodeRead {
    let Need::Part {
        base,
        containers,
        networks,
        ..
    } = need
    else {
        return read_node(n).await;
    };
    let ids: Vec<&str> = containers.iter().map(|(c, _)| c.as_str()).collect();
    let nets = async {
        match networks {
            Some(_) => {
                let mut nets: Vec<NetView> =
                    n.engine.networks().await?.iter().map(net_view).collect();
                nets.sort_by(|a, b| a.name.cmp(&b.name));
                Ok(nets)
            }
            None => Ok(base.0.clone()),
        }
    };
    let found = async {
        if ids.is_empty() {
            Ok(Vec::new())
        } else {
            n.engine.containers_by_id(&ids).await
        }
    };
    let (nets, found) = futures::try_join!(nets, found)?;
    let changed: std::collections::HashSet<&str> = ids.iter().copied().collect();
    let mut all: Vec<ContainerView> = base
        .1
        .iter()
        .filter(|c| !changed.contains(c.id.as_str()))
        .cloned()
        .chain(
            found
                .into_iter()
                .filter(|c| changed.contains(c.id.as_str()))
                .map(container_view),
        )
        .collect();
    all.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(Arc::new((nets, Arc::new(all))))
}

/// Task lists asked of the manager at once.
const TASK_READS: usize = 8;

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
    // One request per service: a round's services together could answer
    // more than an answer may hold (a task carries its service's whole
    // spec, and swarm keeps five old tasks per slot).
    let tasks_fut = async {
        let per_service: Vec<_> = found
            .iter()
            .map(|s| async move { manager.tasks(&[s.id.as_str()], false).await })
            .collect();
        futures::stream::iter(per_service)
            .buffer_unordered(TASK_READS)
            .try_concat()
            .await
    };

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
            nodes: Arc::new(views),
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

    /// A node read with `n` containers `c0`, `c1`, ...
    fn with(n: usize) -> NodeData {
        let cs = (0..n)
            .map(|i| ContainerView {
                id: format!("c{i}"),
                ..Default::default()
            })
            .collect();
        Arc::new((Vec::new(), Arc::new(cs)))
    }

    /// The generation and mark a whole read begins at; panics unless the
    /// cache asks for one.
    fn whole(c: &NodeCache, node: &str) -> (u64, u64) {
        match c.need(node) {
            Need::All { generation, seq } => (generation, seq),
            other => panic!("expected a whole read, got {other:?}"),
        }
    }

    fn kept(c: &NodeCache, node: &str) -> bool {
        matches!(c.need(node), Need::Nothing(_))
    }

    fn read_whole(c: &NodeCache, node: &str, d: NodeData) {
        let (g, s) = whole(c, node);
        c.put(node, g, s, Instant::now(), d);
    }

    fn event(kind: &str, action: &str, id: &str, container: Option<&str>) -> Event {
        let mut e = Event {
            kind: kind.into(),
            action: action.into(),
            ..Default::default()
        };
        e.actor.id = id.into();
        if let Some(c) = container {
            e.actor.attributes.insert("container".into(), c.into());
        }
        e
    }

    #[test]
    fn a_read_is_reused_only_while_the_stream_is_open_and_quiet() {
        let c = NodeCache::new(Duration::from_secs(300));
        read_whole(&c, "n1", data());
        assert!(!kept(&c, "n1"), "not followed yet: read again");

        c.following("n1", true);
        // The stream opened after that read.
        read_whole(&c, "n1", data());
        assert!(kept(&c, "n1"), "followed and quiet: kept");
        assert!(!kept(&c, "n2"), "another node is its own");

        c.changed("n1");
        read_whole(&c, "n1", data());
        assert!(kept(&c, "n1"));

        c.following("n1", false);
        assert!(!kept(&c, "n1"), "the stream broke");
    }

    #[test]
    fn an_event_during_a_read_makes_that_read_stale_and_old_reads_expire() {
        let c = NodeCache::new(Duration::from_secs(300));
        c.following("n1", true);
        let (g, s) = whole(&c, "n1");
        // The read is under way when the node reports a change.
        c.changed("n1");
        c.put("n1", g, s, Instant::now(), data());
        assert!(!kept(&c, "n1"), "the read began before the change");

        let old = NodeCache::new(Duration::from_millis(1));
        old.following("n1", true);
        read_whole(&old, "n1", data());
        std::thread::sleep(Duration::from_millis(5));
        assert!(!kept(&old, "n1"), "older than the resync period");
    }

    // Scale to a bank, "work proportional to change": an event about one
    // container used to cost a read of the whole node (every container on
    // it) at the next pass; now it costs a read of that container.
    #[test]
    fn an_event_about_one_container_asks_for_that_container_only() {
        let c = NodeCache::new(Duration::from_secs(300));
        c.following("n1", true);
        read_whole(&c, "n1", with(100));
        c.event("n1", &event("network", "connect", "net-id", Some("c7")));
        c.event("n1", &event("container", "die", "c9", None));
        let need = c.need("n1");
        let Need::Part {
            generation,
            containers,
            networks,
            ..
        } = &need
        else {
            panic!("expected a read of some containers, got {need:?}");
        };
        let mut ids: Vec<&str> = containers.iter().map(|(id, _)| id.as_str()).collect();
        ids.sort_unstable();
        assert_eq!(ids, ["c7", "c9"]);
        assert!(networks.is_none());
        // c7 changes again while they are read: it stays marked.
        c.container_changed("n1", "c7");
        c.patch("n1", *generation, &need, with(100));
        match c.need("n1") {
            Need::Part { containers, .. } => {
                assert_eq!(containers.len(), 1);
                assert_eq!(containers[0].0, "c7");
            }
            other => panic!("{other:?}"),
        }
        c.patch("n1", *generation, &c.need("n1"), with(100));
        assert!(kept(&c, "n1"), "nothing left to read");

        c.event("n1", &event("network", "create", "net-2", None));
        assert!(
            matches!(c.need("n1"), Need::Part { networks: Some(_), ref containers, .. } if containers.is_empty()),
            "a network created: the networks only"
        );
        c.event("n1", &event("plugin", "enable", "x", None));
        whole(&c, "n1");
    }

    #[test]
    fn many_changed_containers_or_a_mark_during_a_whole_read_are_read_again() {
        let c = NodeCache::new(Duration::from_secs(300));
        c.following("n1", true);
        read_whole(&c, "n1", with(8));
        for i in 0..3 {
            c.container_changed("n1", &format!("c{i}"));
        }
        let (g, s) = whole(&c, "n1");
        // During that read, c5 changes: the read may not show it.
        c.container_changed("n1", "c5");
        c.put("n1", g, s, Instant::now(), with(8));
        match c.need("n1") {
            Need::Part { containers, .. } => {
                assert_eq!(
                    containers
                        .iter()
                        .map(|(id, _)| id.as_str())
                        .collect::<Vec<_>>(),
                    ["c5"]
                );
            }
            other => panic!("{other:?}"),
        }
        // A coarse change during a partial read: the patch is not kept.
        let need = c.need("n1");
        c.changed("n1");
        if let Need::Part { generation, .. } = &need {
            c.patch("n1", *generation, &need, with(8));
        }
        whole(&c, "n1");
    }
}
