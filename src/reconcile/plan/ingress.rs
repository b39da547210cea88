//! Ingress: detach a service's containers from the swarm ingress network, or
//! attach them again.

use super::holdings::Live;
use super::{Action, Mode};
use crate::reconcile::Record;

/// Adds the ingress action `mode` asks for, if the container is not so yet.
pub(super) fn plan(mode: Mode, l: Live<'_>, rec: &mut Record, actions: &mut Vec<Action>) {
    let Some(ing) = l.node.ingress() else { return };
    let attached = l.container.endpoint(&ing.name).is_some();
    let action = match (mode, attached) {
        (Mode::Uningress, true) => Action::DetachIngress {
            node_id: l.node.id.clone(),
            node: l.node.label().to_owned(),
            network: ing.name.clone(),
            container: l.container.id.clone(),
            key: rec.key.clone(),
        },
        (Mode::Reingress, false) => Action::AttachIngress {
            node_id: l.node.id.clone(),
            node: l.node.label().to_owned(),
            network: ing.name.clone(),
            container: l.container.id.clone(),
            key: rec.key.clone(),
        },
        _ => return,
    };
    rec.ingress = mode == Mode::Reingress;
    actions.push(action);
}
