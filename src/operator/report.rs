//! What a pass tells people: Kubernetes Events (one per reason per pass)
//! and the per-binding metrics.

use super::context::Context;
use super::metrics::{BindingLabels, PoolLabels};
use crate::crd::{MacvlanBinding, MacvlanBindingStatus, event_reasons, reasons};
use crate::reconcile::apply::{Applied, Ending};
use crate::reconcile::plan::Action as PlanAction;
use crate::reconcile::{Memory, Problem};
use k8s_openapi::jiff::Timestamp;
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use std::collections::BTreeSet;
use std::net::Ipv4Addr;

fn key(b: &MacvlanBinding) -> String {
    format!("{}/{}", b.namespace().unwrap_or_default(), b.name_any())
}

/// Publishes one Event about `b` (best effort: a refused Event is logged).
pub(crate) async fn publish(
    ctx: &Context,
    b: &MacvlanBinding,
    warning: bool,
    reason: &str,
    note: String,
) {
    let ev = Event {
        type_: if warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: reason.to_owned(),
        note: Some(note.chars().take(1000).collect()),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&ev, &b.object_ref(&())).await {
        tracing::warn!(binding = %key(b), error = %e, "cannot publish an event");
    }
}

/// Notes of one pass, gathered per (warning, reason) so that a pass makes
/// one event per reason; the recorder folds repeats into a series.
#[derive(Default)]
struct Notes(std::collections::BTreeMap<(bool, &'static str), Vec<String>>);

impl Notes {
    fn add(&mut self, warning: bool, reason: &'static str, note: String) {
        self.0.entry((warning, reason)).or_default().push(note);
    }

    async fn publish(self, ctx: &Context, b: &MacvlanBinding) {
        for ((warning, reason), notes) in self.0 {
            let n = notes.len();
            let text = if n == 1 {
                notes.into_iter().next().unwrap_or_default()
            } else {
                let shown: Vec<String> = notes.iter().take(5).cloned().collect();
                let more = if n > 5 {
                    format!("; and {} more", n - 5)
                } else {
                    String::new()
                };
                format!("{n}: {}{more}", shown.join("; "))
            };
            publish(ctx, b, warning, reason, text).await;
        }
    }
}

/// Events and metrics for a pass.
pub(crate) async fn report(
    ctx: &Context,
    b: &MacvlanBinding,
    applied: &Applied,
    memory: &Memory,
    status: &MacvlanBindingStatus,
) {
    let ns = b.namespace().unwrap_or_default();
    let name = b.name_any();
    ctx.metrics.pools_of(
        &BindingLabels {
            namespace: ns.clone(),
            binding: name.clone(),
        },
        status.services.iter().map(|s| s.name.clone()).collect(),
    );
    for s in &status.services {
        let l = PoolLabels {
            namespace: ns.clone(),
            binding: name.clone(),
            service: s.name.clone(),
        };
        ctx.metrics.pool_size.get_or_create(&l).set(s.pool_size);
        ctx.metrics
            .pool_allocated
            .get_or_create(&l)
            .set(s.allocated);
        ctx.metrics.pool_free.get_or_create(&l).set(s.free);
    }
    let bl = BindingLabels {
        namespace: ns,
        binding: name,
    };
    ctx.metrics
        .bound
        .get_or_create(&bl)
        .set(i64::from(status.bound));
    ctx.metrics
        .desired
        .get_or_create(&bl)
        .set(i64::from(status.desired));
    let problems = &applied.plan.problems;
    let down: BTreeSet<&str> = problems
        .iter()
        .filter_map(|p| match p {
            Problem::NodeUnreachable { node, .. } => Some(node.as_str()),
            _ => None,
        })
        .collect();
    let foreign: BTreeSet<Ipv4Addr> = problems
        .iter()
        .filter_map(|p| match p {
            Problem::ForeignHolder { ip, .. } => Some(*ip),
            _ => None,
        })
        .collect();
    ctx.metrics
        .nodes_unreachable
        .get_or_create(&bl)
        .set(i64::try_from(down.len()).unwrap_or(i64::MAX));
    ctx.metrics
        .foreign_holders
        .get_or_create(&bl)
        .set(i64::try_from(foreign.len()).unwrap_or(i64::MAX));
    let unseen: usize = status.networks.iter().map(|n| n.unseen_holders.len()).sum();
    ctx.metrics
        .unseen_holders
        .get_or_create(&bl)
        .set(i64::try_from(unseen).unwrap_or(i64::MAX));

    let now_nanos = Timestamp::now().as_nanosecond();
    let mut notes = Notes::default();
    for o in &applied.outcomes {
        match (&o.action, &o.result) {
            (
                PlanAction::Connect {
                    key,
                    container,
                    node,
                    ..
                },
                Ending::Done,
            ) => {
                let ip = o.ip.map(|i| i.to_string()).unwrap_or_default();
                let started = ctx
                    .started
                    .lock()
                    .ok()
                    .and_then(|mut m| m.remove(container));
                let restored = memory.get(key).is_some_and(|m| Some(m.ip) == o.ip);
                let short = crate::reconcile::short(container);
                if let Some(t) = started {
                    let secs = ((now_nanos - i128::from(t)).max(0) as f64) / 1e9;
                    ctx.metrics.bind_seconds.observe(secs);
                }
                match started {
                    Some(t) if restored => {
                        let secs = ((now_nanos - i128::from(t)).max(0) as f64) / 1e9;
                        ctx.metrics.drift_repairs.inc();
                        ctx.metrics.drift_repair_seconds.observe(secs);
                        notes.add(false, event_reasons::REBOUND, format!("{key}: replacement container {short} on {node} got its address {ip} back, {secs:.2} s after it started"));
                    }
                    _ => notes.add(
                        false,
                        event_reasons::BOUND,
                        format!("{key} ({short} on {node}) {ip}"),
                    ),
                }
                if let Some(n) = &o.note {
                    notes.add(true, event_reasons::ADDRESS_IN_USE, format!("{key}: {n}"));
                }
            }
            (PlanAction::CreateNetwork { network, node, .. }, Ending::Done) => {
                notes.add(
                    false,
                    event_reasons::NETWORK_CREATED,
                    format!("{} on {node}", network.name),
                );
            }
            (action, Ending::Failed(e)) => {
                notes.add(true, reasons::APPLY_FAILED, format!("{action}: {e}"))
            }
            (
                PlanAction::Disconnect { .. }
                | PlanAction::DetachIngress { .. }
                | PlanAction::AttachIngress { .. },
                Ending::Done,
            ) => {
                notes.add(false, event_reasons::CHANGED, o.action.to_string());
            }
            _ => {}
        }
    }
    for p in &applied.plan.problems {
        let reason = match p {
            Problem::PoolExhausted { .. } => reasons::POOL_EXHAUSTED,
            Problem::NodeUnreachable { .. } => reasons::NODE_UNREACHABLE,
            Problem::NetworkMismatch { .. } => reasons::CONFLICT,
            Problem::ServiceMissing { .. } => reasons::SERVICE_NOT_FOUND,
            Problem::ForeignHolder { .. } => event_reasons::FOREIGN_ADDRESS,
            Problem::UnseenHolder { .. } => event_reasons::UNSEEN_HOLDER,
            Problem::ProbeFailed { .. } => event_reasons::PROBE_FAILED,
        };
        notes.add(true, reason, p.to_string());
    }
    notes.publish(ctx, b).await;
}
