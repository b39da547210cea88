//! Apply: run a plan against the engines. Nodes work in parallel; within a
//! node the phases run in order (networks, disconnects, connects, removals)
//! with a few calls at a time. Every action is idempotent, a vanished
//! container is skipped, an "address in use" answer picks the next free
//! address, and one failing node does not stop the others.

use super::plan::{Action, Plan};
use super::{Record, RecordState, Timestamp};
use crate::config::validate::Network;
use crate::engine::models::{Ipam, IpamConfig, NetworkCreate, labels};
use crate::engine::{Engine, EngineError, ErrorKind};
use crate::pool::Allocator;
use crate::reconcile::Owner;
use futures::StreamExt;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;
use tokio::sync::Semaphore;

/// How much runs at once.
#[derive(Debug, Clone)]
pub(crate) struct ApplyOptions {
    /// Calls in flight per node. Measured on dockerd 20.10 (`scripts/bench`,
    /// the floor rows): an engine works on its connects mostly one at a time,
    /// but keeping several in flight hides each call's round trip; 8 was the
    /// best schedule at 150 and 300 containers in the runs of 2026-11-23 and
    /// 2026-11-25 (4 to 20 % faster than 4), and as good at 30.
    pub(crate) per_node: usize,
    /// Nodes worked on at once.
    pub(crate) nodes_at_once: usize,
    /// How many other addresses to try after "address in use".
    pub(crate) max_reallocations: u32,
    /// The binding the networks this pass creates belong to (the operator).
    pub(crate) owner: Option<Owner>,
    /// Shared by the passes of one round: `per_node` calls in flight per
    /// node across all of them, not per pass.
    pub(crate) gates: Option<Arc<NodeGates>>,
}

/// Calls in flight per node, shared by passes that apply at once.
#[derive(Debug)]
pub(crate) struct NodeGates {
    per_node: usize,
    nodes: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl NodeGates {
    pub(crate) fn new(per_node: usize) -> Self {
        Self {
            per_node: per_node.max(1),
            nodes: Mutex::new(HashMap::new()),
        }
    }

    fn of(&self, node_id: &str) -> Arc<Semaphore> {
        let mut nodes = self.nodes.lock().unwrap_or_else(PoisonError::into_inner);
        nodes
            .entry(node_id.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_node)))
            .clone()
    }
}

impl Default for ApplyOptions {
    fn default() -> Self {
        Self {
            per_node: 8,
            nodes_at_once: 64,
            max_reallocations: 3,
            owner: None,
            gates: None,
        }
    }
}

/// How one action ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ending {
    Done,
    /// Nothing to do: it was already so.
    AlreadyDone(String),
    /// Not attempted, or moot (the container is gone).
    Skipped(String),
    Failed(EngineError),
}

/// One action and how it ended; for a connect, the address it got.
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    pub(crate) action: Action,
    pub(crate) result: Ending,
    /// Why the address differs from the plan's, if it does.
    pub(crate) note: Option<String>,
    pub(crate) ip: Option<Ipv4Addr>,
    pub(crate) millis: u64,
}

impl Outcome {
    pub(crate) fn failed(&self) -> bool {
        matches!(self.result, Ending::Failed(_))
    }

    /// Whether the action changed something in Docker.
    pub(crate) fn changed(&self) -> bool {
        matches!(self.result, Ending::Done)
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let action = match (&self.action, self.ip) {
            (Action::Connect { ip, .. }, Some(got)) if *ip != got => self
                .action
                .to_string()
                .replace(&ip.to_string(), &got.to_string()),
            _ => self.action.to_string(),
        };
        match &self.result {
            Ending::Done => write!(f, "{action}: ok")?,
            Ending::AlreadyDone(why) => write!(f, "{action}: already so ({why})")?,
            Ending::Skipped(why) => write!(f, "{action}: skipped ({why})")?,
            Ending::Failed(e) => write!(f, "{action}: FAILED: {e}")?,
        }
        if let Some(n) = &self.note {
            write!(f, " [{n}]")?;
        }
        Ok(())
    }
}

/// A plan's results: outcomes in plan order, and the records as they are now.
#[derive(Debug, Clone)]
pub(crate) struct Applied {
    pub(crate) plan: Plan,
    pub(crate) outcomes: Vec<Outcome>,
}

impl Applied {
    pub(crate) fn failures(&self) -> impl Iterator<Item = &Outcome> {
        self.outcomes.iter().filter(|o| o.failed())
    }

    /// The records once the outcomes are known: a failed connect is Failed,
    /// a reallocated one has its new address, a new binding is dated `now`.
    pub(crate) fn records(&self, now: Timestamp) -> Vec<Record> {
        let mut by_key: HashMap<&super::Key, &Outcome> = HashMap::new();
        for o in &self.outcomes {
            if let (Action::Connect { key, .. }, _) = (&o.action, &o.result) {
                by_key.insert(key, o);
            }
        }
        let mut out = self.plan.records.clone();
        for r in &mut out {
            let Some(o) = by_key.get(&r.key) else {
                continue;
            };
            match &o.result {
                Ending::Done | Ending::AlreadyDone(_) => {
                    r.ip = o.ip.or(r.ip);
                    r.state = RecordState::Bound;
                    r.since = Some(now);
                    r.message = o.note.clone();
                }
                Ending::Skipped(why) => {
                    r.state = RecordState::Pending;
                    r.message = Some(why.clone());
                }
                Ending::Failed(e) => {
                    r.state = RecordState::Failed;
                    r.message = Some(e.to_string());
                }
            }
        }
        // Ingress changes that failed leave the attachment as it was.
        for o in &self.outcomes {
            if let (
                Action::DetachIngress { key, .. } | Action::AttachIngress { key, .. },
                Ending::Failed(_),
            ) = (&o.action, &o.result)
                && let Some(r) = out.iter_mut().find(|r| &r.key == key)
            {
                r.ingress = matches!(o.action, Action::DetachIngress { .. });
            }
        }
        out
    }
}

/// Each service's allocator as planning left it, shared by the nodes'
/// runs: an "address in use" answer takes the next free address from it.
struct Allocators(Mutex<BTreeMap<String, Allocator>>);

impl Allocators {
    /// Marks `taken` as used by someone we did not see and picks another
    /// address for `service`.
    fn instead_of(&self, service: &str, taken: Ipv4Addr) -> Option<Ipv4Addr> {
        // A panic elsewhere while holding the lock leaves the allocator as
        // consistent as any single call does: go on with it.
        let mut m = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let a = m.get_mut(service)?;
        a.exclude(taken);
        a.allocate(None).ok()
    }
}

/// Runs the plan. `progress` sees every outcome as it happens.
pub(crate) async fn apply(
    mut plan: Plan,
    engines: &HashMap<String, Engine>,
    opts: &ApplyOptions,
    progress: &(dyn Fn(&Outcome) + Sync),
) -> Applied {
    let allocators = Allocators(Mutex::new(std::mem::take(&mut plan.allocators)));
    let mut groups: BTreeMap<&str, Vec<(usize, &Action)>> = BTreeMap::new();
    for (i, a) in plan.actions.iter().enumerate() {
        groups.entry(a.node_id()).or_default().push((i, a));
    }
    let node_runs: Vec<_> = groups
        .into_iter()
        .map(|(node_id, actions)| {
            let engine = engines.get(node_id).cloned();
            let allocators = &allocators;
            async move { run_node(engine, actions, opts, allocators, progress).await }
        })
        .collect();
    let mut indexed: Vec<(usize, Outcome)> = futures::stream::iter(node_runs)
        .buffer_unordered(opts.nodes_at_once.max(1))
        .flat_map(futures::stream::iter)
        .collect()
        .await;
    indexed.sort_by_key(|(i, _)| *i);
    plan.allocators = allocators
        .0
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner);
    Applied {
        outcomes: indexed.into_iter().map(|(_, o)| o).collect(),
        plan,
    }
}

async fn run_node(
    engine: Option<Engine>,
    actions: Vec<(usize, &Action)>,
    opts: &ApplyOptions,
    allocators: &Allocators,
    progress: &(dyn Fn(&Outcome) + Sync),
) -> Vec<(usize, Outcome)> {
    let mut out = Vec::with_capacity(actions.len());
    let Some(engine) = engine else {
        for (i, a) in actions {
            let o = Outcome {
                action: a.clone(),
                result: Ending::Skipped("no engine for this node".into()),
                note: None,
                ip: None,
                millis: 0,
            };
            progress(&o);
            out.push((i, o));
        }
        return out;
    };
    let gate = opts
        .gates
        .as_ref()
        .zip(actions.first())
        .map(|(g, (_, a))| g.of(a.node_id()));
    let mut broken_networks: HashSet<String> = HashSet::new();
    let mut phase_start = 0;
    while phase_start < actions.len() {
        let phase = actions[phase_start].1.phase();
        let phase_end = actions[phase_start..]
            .iter()
            .position(|(_, a)| a.phase() != phase)
            .map_or(actions.len(), |p| phase_start + p);
        let batch = &actions[phase_start..phase_end];
        let broken = &broken_networks;
        let gate = &gate;
        let calls: Vec<_> = batch
            .iter()
            .map(|(i, a)| {
                let engine = engine.clone();
                async move {
                    // The semaphore is never closed: no permit only if it were.
                    let _permit = match gate {
                        Some(g) => g.acquire().await.ok(),
                        None => None,
                    };
                    let started = Instant::now();
                    let mut o = match a {
                        Action::Connect { network, .. } if broken.contains(network) => Outcome {
                            action: (*a).clone(),
                            result: Ending::Skipped(format!(
                                "network {network} could not be created on this node"
                            )),
                            note: None,
                            ip: None,
                            millis: 0,
                        },
                        _ => run_one(&engine, a, opts, allocators).await,
                    };
                    o.millis = started.elapsed().as_millis() as u64;
                    progress(&o);
                    (*i, o)
                }
            })
            .collect();
        let results: Vec<(usize, Outcome)> = futures::stream::iter(calls)
            .buffer_unordered(opts.per_node.max(1))
            .collect()
            .await;
        for (_, o) in &results {
            if let (Action::CreateNetwork { network, .. }, Ending::Failed(_)) =
                (&o.action, &o.result)
            {
                broken_networks.insert(network.name.clone());
            }
        }
        out.extend(results);
        phase_start = phase_end;
    }
    out
}

fn outcome(action: &Action, result: Ending) -> Outcome {
    Outcome {
        action: action.clone(),
        result,
        note: None,
        ip: None,
        millis: 0,
    }
}

async fn run_one(
    engine: &Engine,
    action: &Action,
    opts: &ApplyOptions,
    allocators: &Allocators,
) -> Outcome {
    match action {
        Action::CreateNetwork { network, .. } => {
            match engine
                .create_network(&network_body(network, opts.owner.as_ref()))
                .await
            {
                Ok(created) if !created.warning.is_empty() => Outcome {
                    note: Some(format!("engine warning: {}", created.warning)),
                    ..outcome(action, Ending::Done)
                },
                Ok(_) => outcome(action, Ending::Done),
                Err(e) if e.kind == ErrorKind::AlreadyExists => {
                    outcome(action, Ending::AlreadyDone("already exists".into()))
                }
                Err(e) => outcome(action, Ending::Failed(e)),
            }
        }
        Action::RemoveNetwork { network, .. } => match engine.remove_network(network).await {
            Ok(()) => outcome(action, Ending::Done),
            Err(e) if e.kind == ErrorKind::NotFound => {
                outcome(action, Ending::AlreadyDone("already absent".into()))
            }
            Err(e) => outcome(action, Ending::Failed(e)),
        },
        Action::Disconnect {
            network, container, ..
        }
        | Action::DetachIngress {
            network, container, ..
        } => match engine.disconnect(network, container, true).await {
            Ok(()) => outcome(action, Ending::Done),
            Err(e) if e.kind == ErrorKind::NotConnected => {
                outcome(action, Ending::AlreadyDone("not connected".into()))
            }
            Err(e) if e.kind == ErrorKind::NotFound => {
                outcome(action, Ending::Skipped("container or network gone".into()))
            }
            Err(e) => outcome(action, Ending::Failed(e)),
        },
        Action::AttachIngress {
            network, container, ..
        } => match engine.connect(network, container, None).await {
            Ok(()) => outcome(action, Ending::Done),
            Err(e) if e.kind == ErrorKind::AlreadyConnected => {
                outcome(action, Ending::AlreadyDone("already attached".into()))
            }
            Err(e) if e.kind == ErrorKind::NotFound => {
                outcome(action, Ending::Skipped("container gone".into()))
            }
            Err(e) => outcome(action, Ending::Failed(e)),
        },
        Action::Connect {
            network,
            container,
            key,
            ip,
            ..
        } => {
            connect(
                engine,
                action,
                network,
                container,
                &key.service,
                *ip,
                opts,
                allocators,
            )
            .await
        }
    }
}

/// The create body for a spec network, labelled as mvconf's.
pub(crate) fn network_body(n: &Network, owner: Option<&Owner>) -> NetworkCreate {
    let mut labels = HashMap::from([(labels::MANAGED_BY.to_owned(), "mvconf".to_owned())]);
    for (k, v) in owner.iter().flat_map(|o| o.labels()) {
        labels.insert(k.to_owned(), v.to_owned());
    }
    NetworkCreate {
        name: n.name.clone(),
        driver: "macvlan".into(),
        check_duplicate: true,
        ipam: Ipam {
            driver: "default".into(),
            config: vec![IpamConfig {
                subnet: n.subnet.to_string(),
                gateway: n.gateway.to_string(),
                ip_range: n.docker_range().map(|r| r.to_string()).unwrap_or_default(),
            }],
        },
        options: HashMap::from([("parent".to_owned(), n.parent.clone())]),
        labels,
    }
}

#[allow(clippy::too_many_arguments)]
async fn connect(
    engine: &Engine,
    action: &Action,
    network: &str,
    container: &str,
    service: &str,
    planned: Ipv4Addr,
    opts: &ApplyOptions,
    allocators: &Allocators,
) -> Outcome {
    let mut ip = planned;
    let mut notes: Vec<String> = Vec::new();
    for attempt in 0..=opts.max_reallocations {
        let result = engine.connect(network, container, Some(ip)).await;
        let err = match result {
            Ok(()) => {
                return Outcome {
                    action: action.clone(),
                    result: Ending::Done,
                    note: join(notes),
                    ip: Some(ip),
                    millis: 0,
                };
            }
            Err(e) => e,
        };
        match err.kind {
            ErrorKind::AddressInUse if attempt < opts.max_reallocations => {
                match allocators.instead_of(service, ip) {
                    Some(n) => {
                        notes.push(format!(
                            "{ip} was in use on {} by a container not seen when planning; took {n}",
                            engine.label()
                        ));
                        ip = n;
                    }
                    None => {
                        notes.push(format!("{ip} was in use on {}", engine.label()));
                        return Outcome {
                            action: action.clone(),
                            result: Ending::Failed(err),
                            note: join(notes),
                            ip: None,
                            millis: 0,
                        };
                    }
                }
            }
            ErrorKind::AlreadyConnected => {
                // Idempotent: fine if it already has exactly this address.
                let have = engine.container(container).await.ok().and_then(|c| {
                    c.network_settings
                        .networks
                        .get(network)
                        .map(|e| e.ip_address.clone())
                });
                return if have.as_deref() == Some(ip.to_string().as_str()) {
                    Outcome {
                        action: action.clone(),
                        result: Ending::AlreadyDone(format!("already has {ip}")),
                        note: join(notes),
                        ip: Some(ip),
                        millis: 0,
                    }
                } else {
                    let mut e = err;
                    e.message = format!(
                        "{} (it has {})",
                        e.message,
                        have.as_deref().unwrap_or("another address")
                    );
                    Outcome {
                        action: action.clone(),
                        result: Ending::Failed(e),
                        note: join(notes),
                        ip: None,
                        millis: 0,
                    }
                };
            }
            ErrorKind::NotFound => {
                return Outcome {
                    action: action.clone(),
                    result: Ending::Skipped("container gone".into()),
                    note: join(notes),
                    ip: None,
                    millis: 0,
                };
            }
            _ => {
                return Outcome {
                    action: action.clone(),
                    result: Ending::Failed(err),
                    note: join(notes),
                    ip: None,
                    millis: 0,
                };
            }
        }
    }
    Outcome {
        action: action.clone(),
        result: Ending::Skipped("gave up reallocating".into()),
        note: join(notes),
        ip: None,
        millis: 0,
    }
}

fn join(notes: Vec<String>) -> Option<String> {
    (!notes.is_empty()).then(|| notes.join("; "))
}
