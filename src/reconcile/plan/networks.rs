//! Networks: which (node, network) pairs can take connects, what to create
//! or remove, and each network's state on every node.

use super::{Action, Draft, Mode};
use crate::config::validate::{Desired, Network};
use crate::reconcile::{NetView, NetworkState, NodeView, Problem, Snapshot};
use std::collections::BTreeSet;

/// The networks' part of a plan.
pub(super) struct Networks<'a> {
    /// (node ID, network name) pairs that can take connects once the
    /// actions succeed.
    pub(crate) usable: BTreeSet<(&'a str, &'a str)>,
    pub(crate) states: Vec<NetworkState>,
}

pub(super) fn plan<'a>(
    desired: &'a Desired,
    snapshot: &'a Snapshot,
    mode: Mode,
    keep: &BTreeSet<String>,
    draft: &mut Draft,
) -> Networks<'a> {
    let mut usable = BTreeSet::new();
    let mut states = Vec::new();
    for want in &desired.networks {
        let mut state = NetworkState {
            name: want.name.clone(),
            total_nodes: snapshot.nodes.len() as u64,
            ..Default::default()
        };
        for n in snapshot.nodes.iter() {
            if !n.reachable() {
                state
                    .not_ready
                    .push((n.label().to_owned(), "engine unreachable".into()));
                continue;
            }
            let ready = match n.network(&want.name) {
                None => absent(want, n, mode, &mut state, draft),
                Some(have) => present(want, have, n, mode, keep, &mut state, draft),
            };
            if ready {
                usable.insert((n.id.as_str(), want.name.as_str()));
                state.ready_nodes += 1;
            }
        }
        states.push(state);
    }
    Networks { usable, states }
}

/// A network of the spec that a node lacks; `true` when it will be there.
fn absent(
    want: &Network,
    n: &NodeView,
    mode: Mode,
    state: &mut NetworkState,
    draft: &mut Draft,
) -> bool {
    if mode != Mode::Up {
        state
            .not_ready
            .push((n.label().to_owned(), "absent".into()));
        return false;
    }
    // Docker allows one macvlan network per parent interface.
    let taken_parent = n
        .networks
        .iter()
        .find(|x| x.driver == "macvlan" && x.parent.as_deref() == Some(want.parent.as_str()));
    if let Some(other) = taken_parent {
        let message = format!(
            "its parent {} already carries macvlan network {} (Docker allows one per parent)",
            want.parent, other.name
        );
        draft.problems.push(Problem::NetworkMismatch {
            node: n.label().to_owned(),
            network: want.name.clone(),
            message: message.clone(),
        });
        state.not_ready.push((n.label().to_owned(), message));
        return false;
    }
    draft.actions.push(Action::CreateNetwork {
        node_id: n.id.clone(),
        node: n.label().to_owned(),
        network: want.clone(),
    });
    true
}

/// A network of the spec that a node has; `true` when it matches.
fn present(
    want: &Network,
    have: &NetView,
    n: &NodeView,
    mode: Mode,
    keep: &BTreeSet<String>,
    state: &mut NetworkState,
    draft: &mut Draft,
) -> bool {
    match network_matches(want, have) {
        Ok(()) => {
            if matches!(mode, Mode::Remove | Mode::Down) && !keep.contains(&want.name) {
                draft.actions.push(Action::RemoveNetwork {
                    node_id: n.id.clone(),
                    node: n.label().to_owned(),
                    network: want.name.clone(),
                });
            }
            true
        }
        Err(diff) => {
            draft.problems.push(Problem::NetworkMismatch {
                node: n.label().to_owned(),
                network: want.name.clone(),
                message: diff.clone(),
            });
            state
                .not_ready
                .push((n.label().to_owned(), format!("exists with {diff}")));
            false
        }
    }
}

/// Whether an existing network matches the spec; `Err` says how not.
fn network_matches(want: &Network, have: &NetView) -> Result<(), String> {
    let mut diffs = Vec::new();
    if have.driver != "macvlan" {
        diffs.push(format!("driver {} (want macvlan)", have.driver));
    }
    let subnet = want.subnet.to_string();
    if have.subnet.as_deref() != Some(subnet.as_str()) {
        diffs.push(format!(
            "subnet {} (want {subnet})",
            have.subnet.as_deref().unwrap_or("none")
        ));
    }
    let gw = want.gateway.to_string();
    if have.gateway.as_deref().is_some_and(|g| g != gw) {
        diffs.push(format!(
            "gateway {} (want {gw})",
            have.gateway.as_deref().unwrap_or("none")
        ));
    }
    if have.parent.as_deref() != Some(want.parent.as_str()) {
        diffs.push(format!(
            "parent {} (want {})",
            have.parent.as_deref().unwrap_or("none"),
            want.parent
        ));
    }
    // Without an ipRange in the spec any is fine: a network made by hand,
    // by the old mvconf, or by mvconf with the range it derived (which
    // moves with the pools) is used as it is.
    let range = want.ip_range.map(|r| r.to_string());
    if range.is_some() && have.ip_range != range {
        diffs.push(format!(
            "ip range {} (want {})",
            have.ip_range.as_deref().unwrap_or("none"),
            range.as_deref().unwrap_or("none")
        ));
    }
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(diffs.join(", "))
    }
}
