//! The Docker event router: an event costs a reconcile of the bindings
//! that name its service on its swarm, a stranger joining a macvlan network
//! one of the bindings using that network, and a broken-then-restored event
//! stream a resync of that swarm's bindings.

use super::context::{Context, Guarded};
use super::endpoints::Signal;
use crate::engine::events::Watch;
use crate::engine::models::labels;
use kube::runtime::reflector::ObjectRef;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Turns Docker events into reconciles of the bindings naming the service,
/// and a broken-then-restored event stream into a resync of its swarm.
pub(crate) async fn route(
    mut signals: mpsc::Receiver<Signal>,
    triggers: mpsc::Sender<ObjectRef<Guarded>>,
    ctx: Arc<Context>,
) {
    let mut lost: BTreeSet<String> = BTreeSet::new();
    // Swarms whose streams (re)opened, and when their resync is due: the
    // nodes that reconnect together cost one pass of each binding there.
    let mut resync: BTreeMap<String, Instant> = BTreeMap::new();
    loop {
        let due = resync.values().min().copied();
        let signal = tokio::select! {
            s = signals.recv() => match s {
                Some(s) => s,
                None => return,
            },
            _ = sleep_until_or_never(due) => {
                let now = Instant::now();
                let ready: Vec<String> = resync
                    .iter()
                    .filter(|(_, at)| **at <= now)
                    .map(|(id, _)| id.clone())
                    .collect();
                for swarm in ready {
                    resync.remove(&swarm);
                    let on = ctx.index.lock().unwrap_or_else(PoisonError::into_inner).on(&swarm);
                    if !trigger(&ctx, &triggers, on).await {
                        return;
                    }
                }
                continue;
            }
        };
        let Signal {
            swarm,
            watch,
            network,
        } = signal;
        if let Some(network) = network {
            let using = ctx
                .index
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .using(&swarm, &network);
            if !using.is_empty() {
                tracing::debug!(%swarm, %network, "a managed network changed (a stranger joined it, or a probe ended)");
            }
            if !trigger(&ctx, &triggers, using).await {
                return;
            }
            continue;
        }
        let Some(watch) = watch else { continue };
        let service = match &watch {
            Watch::Event { event, .. } => {
                // Network events and other container events only keep the
                // node reads current (`NodeCache`); a service container's
                // start, death or removal is what a pass answers.
                if event.kind != "container"
                    || !matches!(event.action.as_str(), "start" | "die" | "destroy")
                {
                    continue;
                }
                let Some(s) = event.actor.attributes.get(labels::SERVICE_NAME) else {
                    continue;
                };
                if event.action == "start"
                    && let Ok(mut m) = ctx.started.lock()
                {
                    m.insert(event.actor.id.clone(), event.time_nano);
                    if m.len() > 10_000 {
                        m.clear();
                    }
                }
                s.clone()
            }
            Watch::Connected { node } => {
                if lost.remove(node) {
                    tracing::info!(%node, %swarm, "Docker event stream restored; resyncing");
                }
                resync
                    .entry(swarm.clone())
                    .or_insert_with(|| Instant::now() + RESYNC_COALESCE);
                continue;
            }
            Watch::Lost { node, error } => {
                if lost.insert(node.clone()) {
                    tracing::warn!(%node, %swarm, %error, "Docker event stream lost; reconnecting");
                }
                continue;
            }
        };
        let naming = ctx
            .index
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .naming(&swarm, &service);
        if !trigger(&ctx, &triggers, naming).await {
            return;
        }
    }
}

/// How long the router waits for other nodes of a swarm to reconnect
/// before it resyncs the swarm's bindings once.
const RESYNC_COALESCE: Duration = Duration::from_secs(1);

async fn sleep_until_or_never(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => futures::future::pending().await,
    }
}

/// Reconciles these bindings; `false` once the controllers are gone.
async fn trigger(
    ctx: &Context,
    triggers: &mpsc::Sender<ObjectRef<Guarded>>,
    bindings: impl IntoIterator<Item = (String, String)>,
) -> bool {
    for (ns, name) in bindings {
        let r = ObjectRef::<Guarded>::new(&name).within(&ns);
        if !ctx.knows(&r) {
            // Gone without a cleanup we saw (its finalizer removed by hand).
            ctx.forget((ns, name));
            continue;
        }
        if triggers.send(r).await.is_err() {
            return false;
        }
    }
    true
}
