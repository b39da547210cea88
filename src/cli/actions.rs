//! What `-o json|yaml` of a mutating command prints: one object per action
//! with its outcome, and the summary, built from the pass (pure).

use crate::reconcile::apply::{Ending, Outcome};
use crate::reconcile::plan::Action;
use crate::reconcile::report::Summary;
use crate::reconcile::{Owner, Plan};
use serde::Serialize;
use std::collections::BTreeMap;

/// The whole report of one command.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Report {
    /// `up`, `down`, ...
    pub(crate) command: &'static str,
    pub(crate) dry_run: bool,
    pub(crate) actions: Vec<ActionReport>,
    /// What the plan found wrong (errors) or worth saying (warnings).
    pub(crate) problems: Vec<ProblemReport>,
    /// Services left alone: a MacvlanBinding owns them (`--force` acts anyway).
    pub(crate) kept: Vec<KeptReport>,
    pub(crate) summary: SummaryReport,
    pub(crate) seconds: f64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ActionReport {
    /// `connected`, `disconnected`, `network created`, ...
    pub(crate) verb: &'static str,
    pub(crate) node: String,
    pub(crate) network: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) container: Option<String>,
    /// The task slot: `service.N`, or `service@node` for a global service.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) slot: Option<String>,
    /// The address given (a connect), which may differ from the planned one
    /// when the engine refused it and another was taken.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) ip: Option<String>,
    /// `planned` (dry run), `done`, `alreadyDone`, `skipped`, `failed`.
    pub(crate) outcome: &'static str,
    /// Why it was already so or skipped, or the error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) note: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) millis: Option<u64>,
    /// The line the text output prints.
    pub(crate) text: String,
}

#[derive(Debug, Serialize)]
pub(crate) struct ProblemReport {
    /// `error` or `warning`.
    pub(crate) severity: &'static str,
    pub(crate) message: String,
}

#[derive(Debug, Serialize)]
pub(crate) struct KeptReport {
    pub(crate) service: String,
    pub(crate) owner: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SummaryReport {
    /// Changes made, by verb.
    pub(crate) done: BTreeMap<&'static str, u64>,
    pub(crate) already: u64,
    pub(crate) skipped: u64,
    pub(crate) failed: u64,
    pub(crate) failed_by_node: BTreeMap<String, u64>,
    /// Slots left without an address.
    pub(crate) pending: u64,
    /// Slots keeping their address while swarm replaces the container.
    pub(crate) reserved: u64,
    pub(crate) problems: u64,
    /// Everything asked was done (exit code 0).
    pub(crate) ok: bool,
    /// The text output's summary line.
    pub(crate) text: String,
}

impl SummaryReport {
    fn of(s: &Summary) -> Self {
        Self {
            done: s.done.clone(),
            already: s.already,
            skipped: s.skipped,
            failed: s.failures(),
            failed_by_node: s.failed.clone(),
            pending: s.pending,
            reserved: s.reserved,
            problems: s.problems,
            ok: s.ok(),
            text: s.to_string(),
        }
    }
}

/// The action's network, container and slot.
fn parts(a: &Action) -> (String, Option<String>, Option<String>) {
    match a {
        Action::CreateNetwork { network, .. } => (network.name.clone(), None, None),
        Action::RemoveNetwork { network, .. } => (network.clone(), None, None),
        Action::Connect {
            network,
            container,
            key,
            ..
        }
        | Action::DetachIngress {
            network,
            container,
            key,
            ..
        }
        | Action::AttachIngress {
            network,
            container,
            key,
            ..
        } => (
            network.clone(),
            Some(container.clone()),
            Some(key.to_string()),
        ),
        Action::Disconnect {
            network,
            container,
            key,
            ..
        } => (
            network.clone(),
            Some(container.clone()),
            key.as_ref().map(ToString::to_string),
        ),
    }
}

fn planned(a: &Action) -> ActionReport {
    let (network, container, slot) = parts(a);
    let ip = match a {
        Action::Connect { ip, .. } => Some(ip.to_string()),
        _ => None,
    };
    ActionReport {
        verb: a.verb(),
        node: a.node().to_owned(),
        network,
        container,
        slot,
        ip,
        outcome: "planned",
        reason: match a {
            Action::Disconnect { reason, .. } if !reason.is_empty() => Some(reason.clone()),
            _ => None,
        },
        note: None,
        millis: None,
        text: a.to_string(),
    }
}

fn done(o: &Outcome) -> ActionReport {
    let mut r = planned(&o.action);
    if let Some(ip) = o.ip {
        r.ip = Some(ip.to_string());
    }
    (r.outcome, r.reason) = match &o.result {
        Ending::Done => ("done", r.reason),
        Ending::AlreadyDone(why) => ("alreadyDone", Some(why.clone())),
        Ending::Skipped(why) => ("skipped", Some(why.clone())),
        Ending::Failed(e) => ("failed", Some(e.to_string())),
    };
    r.note.clone_from(&o.note);
    r.millis = Some(o.millis);
    r.text = o.to_string();
    r
}

/// The report of a pass: its plan's actions as planned (dry run) or their
/// outcomes.
pub(crate) fn report(
    command: &'static str,
    dry_run: bool,
    plan: &Plan,
    outcomes: &[Outcome],
    summary: &Summary,
    kept: &[(String, Owner)],
    seconds: f64,
) -> Report {
    let actions = if dry_run {
        plan.actions.iter().map(planned).collect()
    } else {
        outcomes.iter().map(done).collect()
    };
    Report {
        command,
        dry_run,
        actions,
        problems: plan
            .problems
            .iter()
            .map(|p| ProblemReport {
                severity: if p.is_error() { "error" } else { "warning" },
                message: p.to_string(),
            })
            .collect(),
        kept: kept
            .iter()
            .map(|(service, owner)| KeptReport {
                service: service.clone(),
                owner: owner.to_string(),
            })
            .collect(),
        summary: SummaryReport::of(summary),
        seconds: (seconds * 1000.0).round() / 1000.0,
    }
}
