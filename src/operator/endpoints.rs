//! One view per swarm: the operator keeps one [`Cluster`] per endpoint
//! (identity plus credentials), and the Docker event watchers of its nodes.
//! A credential change (a rotated password) builds a new view.

use crate::cluster::{Cluster, ClusterConfig, ConfigError};
use crate::engine::Engine;
use crate::engine::events::{Watch, watch};
use crate::engine::transport::CallGate;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// A Docker event, tagged with the swarm it came from (its cluster ID).
#[derive(Debug, Clone)]
pub(crate) struct Signal {
    pub(crate) swarm: String,
    pub(crate) watch: Watch,
}

/// The view of one swarm.
#[derive(Debug)]
pub(crate) struct EndpointState {
    pub(crate) identity: String,
    fingerprint: u64,
    pub(crate) cluster: Cluster,
    watchers: Mutex<HashMap<String, JoinHandle<()>>>,
    signals: mpsc::Sender<Signal>,
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
            let swarm = swarm.clone();
            let handle = tokio::spawn(async move {
                let follow = tokio::spawn(watch(engine, tx, crate::retry::EVENT_STREAM.max));
                while let Some(w) = rx.recv().await {
                    if signals
                        .send(Signal {
                            swarm: swarm.clone(),
                            watch: w,
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

/// Every swarm the operator talks to.
#[derive(Debug)]
pub(crate) struct Registry {
    states: Mutex<HashMap<String, Arc<EndpointState>>>,
    signals: mpsc::Sender<Signal>,
    /// Counts every call of every endpoint (for metrics), and fences their
    /// mutations with this leadership term.
    gate: CallGate,
}

impl Registry {
    pub(crate) fn new(signals: mpsc::Sender<Signal>, gate: CallGate) -> Self {
        Self {
            states: Mutex::new(HashMap::new()),
            signals,
            gate,
        }
    }

    /// The view for `identity` with these credentials; built on first use
    /// and rebuilt when the credentials change.
    pub(crate) fn get(
        &self,
        identity: &str,
        fingerprint: u64,
        config: ClusterConfig,
    ) -> Result<Arc<EndpointState>, ConfigError> {
        let mut states = self.states.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(s) = states
            .get(identity)
            .filter(|s| s.fingerprint == fingerprint)
        {
            return Ok(s.clone());
        }
        let cluster = Cluster::gated(config, self.gate.clone())?;
        let state = Arc::new(EndpointState {
            identity: identity.to_owned(),
            fingerprint,
            cluster,
            watchers: Mutex::new(HashMap::new()),
            signals: self.signals.clone(),
        });
        if states.insert(identity.to_owned(), state.clone()).is_some() {
            tracing::info!(endpoint = identity, "credentials changed: reconnecting");
        }
        Ok(state)
    }
}
