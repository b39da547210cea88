//! One view per swarm: the operator keeps one [`Cluster`] per endpoint
//! (identity plus credentials), and the Docker event watchers of its nodes.
//! A credential change (a rotated password) builds a new view.

use super::controller::RoundRequest;
use super::rounds::Rounds;
use super::shards::Shards;
use crate::cluster::{Cluster, ClusterConfig, ConfigError};
use crate::engine::events::{Watch, watch};
use crate::engine::models::Event;
use crate::engine::transport::CallGate;
use crate::engine::{Engine, EngineError};
use crate::fence::Fence;
use crate::reconcile::{NodeCache, Passed};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// A Docker event, tagged with the swarm it came from (its cluster ID).
#[derive(Debug, Clone)]
pub(crate) struct Signal {
    pub(crate) swarm: String,
    /// The Docker event (none for a probe's end).
    pub(crate) watch: Option<Watch>,
    /// A network whose bindings must look at once: a container that is no
    /// swarm task's connected to it (`docker run --network` without `--ip`,
    /// `docker network connect` by hand: Docker's per-node IPAM may have
    /// given it one of their addresses), or a probe of its free addresses
    /// ended.
    pub(crate) network: Option<String>,
}

/// Strangers of one node: containers that no task owns, connected to a
/// macvlan network before they started (`docker run --network` connects,
/// then starts; a read between the two does not list the container yet).
#[derive(Default)]
struct Strangers(HashMap<String, String>);

/// At most this many strangers are remembered per node between their
/// connect and their start.
const STRANGERS_MAX: usize = 1024;

impl Strangers {
    /// The macvlan network a stranger just joined, if this event says so:
    /// a connect of a container the node's last read does not know as a
    /// swarm task's (answered at once, for a running container, and again
    /// when a container that was not running yet starts).
    fn on(&mut self, reads: &NodeCache, node: &str, event: &Event) -> Option<String> {
        let a = &event.actor.attributes;
        match (event.kind.as_str(), event.action.as_str()) {
            ("network", "connect") if a.get("type").map(String::as_str) == Some("macvlan") => {
                let container = a.get("container")?;
                if reads.knows_task_container(node, container) {
                    return None;
                }
                let network = a.get("name")?.clone();
                if self.0.len() >= STRANGERS_MAX {
                    self.0.clear();
                }
                self.0.insert(container.clone(), network.clone());
                Some(network)
            }
            ("container", "start") => self.0.remove(&event.actor.id),
            ("container", "destroy") => {
                self.0.remove(&event.actor.id);
                None
            }
            _ => None,
        }
    }
}

/// See [`EndpointState::nudger`].
#[derive(Debug, Clone)]
pub(crate) struct Nudger {
    signals: mpsc::Sender<Signal>,
    swarm: Arc<Mutex<Option<String>>>,
    identity: String,
}

impl Nudger {
    /// The bindings using `network` look again.
    pub(crate) fn nudge(&self, network: String) {
        let swarm = self
            .swarm
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .unwrap_or_else(|| self.identity.clone());
        let _ = self.signals.try_send(Signal {
            swarm,
            watch: None,
            network: Some(network),
        });
    }
}

/// The view of one swarm.
#[derive(Debug)]
pub(crate) struct EndpointState {
    pub(crate) identity: String,
    pub(crate) cluster: Cluster,
    watchers: Mutex<HashMap<String, JoinHandle<()>>>,
    signals: mpsc::Sender<Signal>,
    /// The swarm this view reaches, once learnt: under per-swarm
    /// leadership its mutations follow that swarm's fence (none before).
    swarm: Arc<Mutex<Option<String>>>,
    /// The nodes' last reads, current while their event streams say
    /// nothing changed.
    pub(crate) reads: Arc<NodeCache>,
    /// The passes of the bindings using this view, run together.
    pub(crate) rounds: Rounds<RoundRequest, Result<Passed, EngineError>>,
    /// Duplicate-address detection ahead of the passes.
    pub(crate) prober: Arc<super::prober::Prober>,
}

impl Drop for EndpointState {
    fn drop(&mut self) {
        if let Ok(w) = self.watchers.lock() {
            for h in w.values() {
                h.abort();
            }
        }
    }
}

impl EndpointState {
    /// What makes the bindings using a network of this view's swarm look
    /// again, from a task that outlives this borrow.
    pub(crate) fn nudger(&self) -> Nudger {
        Nudger {
            signals: self.signals.clone(),
            swarm: self.swarm.clone(),
            identity: self.identity.clone(),
        }
    }

    /// The view reaches swarm `id`.
    pub(crate) fn learnt(&self, id: &str) {
        let mut swarm = self.swarm.lock().unwrap_or_else(PoisonError::into_inner);
        if swarm.as_deref() != Some(id) {
            *swarm = Some(id.to_owned());
        }
    }

    /// Follows the events of every node not yet followed.
    pub(crate) fn ensure_watchers(&self, engines: &HashMap<String, Engine>) {
        let Ok(mut watched) = self.watchers.lock() else {
            return;
        };
        watched.retain(|_, h| !h.is_finished());
        // Events are routed by swarm (its cluster ID, known by the time a
        // pass follows its nodes), whatever URL this view spells.
        let swarm = self
            .cluster
            .known_swarm_id()
            .unwrap_or(&self.identity)
            .to_owned();
        for (node_id, engine) in engines {
            if watched.contains_key(node_id) {
                continue;
            }
            let (tx, mut rx) = mpsc::channel::<Watch>(256);
            let engine = engine.clone();
            let signals = self.signals.clone();
            let reads = self.reads.clone();
            let swarm = swarm.clone();
            let count = self.cluster.calls().stream();
            let handle = tokio::spawn(async move {
                let _count = count;
                let follow = tokio::spawn(watch(engine, tx, crate::retry::EVENT_STREAM.max));
                let mut strangers = Strangers::default();
                while let Some(w) = rx.recv().await {
                    let stranger = match &w {
                        Watch::Event { node, event } => strangers.on(&reads, node, event),
                        _ => None,
                    };
                    match &w {
                        Watch::Connected { node } => reads.following(node, true),
                        Watch::Lost { node, .. } => reads.following(node, false),
                        Watch::Event { node, event } => reads.event(node, event),
                    }
                    if signals
                        .send(Signal {
                            swarm: swarm.clone(),
                            watch: Some(w),
                            network: stranger,
                        })
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
                follow.abort();
            });
            watched.insert(node_id.clone(), handle);
        }
    }
}

/// Every swarm the operator talks to: one view per effective endpoint
/// configuration (URL, node addressing, credentials, TLS settings), shared
/// by the bindings that use exactly that. An edit of any of it gives the
/// binding a new view; a view no binding uses any more is dropped, and its
/// event streams with it.
#[derive(Debug)]
pub(crate) struct Registry {
    states: Mutex<Views>,
    signals: mpsc::Sender<Signal>,
    /// Counts every call of every endpoint (for metrics), and fences their
    /// mutations with this leadership term.
    gate: CallGate,
    /// Per-swarm leadership: each view's mutations follow the fence of
    /// the swarm it reaches instead of `gate`'s.
    shards: Option<Arc<Shards>>,
    /// The oldest node read a pass may use (the resync period).
    read_max_age: Duration,
}

#[derive(Debug, Default)]
struct Views {
    by_config: HashMap<u64, Arc<EndpointState>>,
    /// Which view each binding (`namespace/name`) uses.
    used_by: HashMap<String, u64>,
}

impl Views {
    /// Drops the view `config` when no binding uses it.
    fn prune(&mut self, config: u64) {
        if !self.used_by.values().any(|c| *c == config)
            && let Some(old) = self.by_config.remove(&config)
        {
            tracing::info!(endpoint = %old.identity, "endpoint settings changed or unused: its view is closed");
        }
    }
}

impl Registry {
    pub(crate) fn new(
        signals: mpsc::Sender<Signal>,
        gate: CallGate,
        shards: Option<Arc<Shards>>,
        read_max_age: Duration,
    ) -> Self {
        Self {
            states: Mutex::new(Views::default()),
            signals,
            gate,
            shards,
            read_max_age,
        }
    }

    /// The gate of a new view: this term's fence, or, per swarm, the fence
    /// of whichever swarm `swarm` comes to name (shut until then).
    fn gate_for(&self, swarm: &Arc<Mutex<Option<String>>>) -> CallGate {
        let Some(shards) = self.shards.clone() else {
            return self.gate.clone();
        };
        let swarm = swarm.clone();
        CallGate {
            log: self.gate.log.clone(),
            fence: Fence::follow(move || {
                let id = swarm.lock().unwrap_or_else(PoisonError::into_inner).clone();
                id.and_then(|id| shards.fence_of(&id))
                    .unwrap_or_else(Fence::shut)
            }),
        }
    }

    /// The view `binding` uses: the one for `config` (a hash of the whole
    /// effective endpoint configuration), built on first use.
    pub(crate) fn get(
        &self,
        binding: &str,
        identity: &str,
        config_key: u64,
        config: ClusterConfig,
    ) -> Result<Arc<EndpointState>, ConfigError> {
        let mut views = self.states.lock().unwrap_or_else(PoisonError::into_inner);
        let state = match views.by_config.get(&config_key) {
            Some(s) => s.clone(),
            None => {
                let swarm = Arc::new(Mutex::new(None));
                let cluster = Cluster::gated(config, self.gate_for(&swarm))?;
                let state = Arc::new(EndpointState {
                    identity: identity.to_owned(),
                    cluster,
                    watchers: Mutex::new(HashMap::new()),
                    signals: self.signals.clone(),
                    swarm,
                    reads: Arc::new(NodeCache::new(self.read_max_age)),
                    rounds: Rounds::default(),
                    prober: Arc::default(),
                });
                views.by_config.insert(config_key, state.clone());
                state
            }
        };
        if let Some(before) = views.used_by.insert(binding.to_owned(), config_key)
            && before != config_key
        {
            views.prune(before);
        }
        Ok(state)
    }

    /// A binding is gone: its view closes unless another binding uses it.
    pub(crate) fn forget(&self, binding: &str) {
        let mut views = self.states.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(before) = views.used_by.remove(binding) {
            views.prune(before);
        }
    }
}
