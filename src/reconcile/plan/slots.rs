//! Slots: a service's tasks grouped by the unit that owns an address (a
//! replicated task slot, or a global service's node), ordered in time, and
//! which live containers are the current ones of our services.

use super::holdings::Holdings;
use crate::config::validate::{Desired, Service};
use crate::reconcile::{Key, ServiceView, Slot, Snapshot, TaskState, TaskView};
use std::collections::{BTreeMap, HashMap};

/// A slot of a service as the snapshot shows it.
pub(super) struct SlotState<'a> {
    /// The task swarm wants in this slot now.
    pub(crate) current: Option<&'a TaskView>,
    /// Every task of the slot, oldest first.
    pub(crate) history: Vec<&'a TaskView>,
}

pub(super) fn slots_of(sv: &ServiceView) -> BTreeMap<Slot, SlotState<'_>> {
    let mut slots: BTreeMap<Slot, SlotState<'_>> = BTreeMap::new();
    for t in &sv.tasks {
        let slot = match (sv.global, t.slot) {
            (false, Some(n)) => Slot::Slot(n),
            _ => Slot::Node(t.node_id.clone()),
        };
        let e = slots.entry(slot).or_insert(SlotState {
            current: None,
            history: Vec::new(),
        });
        e.history.push(t);
        if t.wanted {
            // Prefer the running one; else the latest (in time: Docker's
            // text drops trailing zeros, so it does not sort).
            let rank = |t: &TaskView| (t.state == TaskState::Running, t.timestamp);
            if e.current.is_none_or(|c| rank(t) > rank(c)) {
                e.current = Some(t);
            }
        }
    }
    for s in slots.values_mut() {
        s.history.sort_by_key(|t| t.timestamp);
    }
    slots
}

/// One service of the spec that exists, with its slots.
pub(super) struct Claim<'a> {
    pub(crate) spec: &'a Service,
    pub(crate) view: &'a ServiceView,
    pub(crate) slots: BTreeMap<Slot, SlotState<'a>>,
}

/// The services of the spec that exist, and which live containers are the
/// current ones of their slots.
pub(super) struct Claimed<'a> {
    pub(crate) services: Vec<Claim<'a>>,
    /// Live container ID -> (its service, its slot).
    pub(crate) ours: HashMap<&'a str, (&'a Service, Key)>,
}

impl<'a> Claimed<'a> {
    pub(crate) fn of(
        desired: &'a Desired,
        snapshot: &'a Snapshot,
        holdings: &Holdings<'a>,
    ) -> Self {
        let spec_services: HashMap<&str, &Service> = desired
            .services
            .iter()
            .map(|s| (s.name.as_str(), s))
            .collect();
        let mut ours = HashMap::new();
        let mut services = Vec::new();
        for sv in &snapshot.services {
            let Some(spec) = spec_services.get(sv.name.as_str()) else {
                continue;
            };
            let slots = slots_of(sv);
            for (slot, st) in &slots {
                if let Some(cid) = st.current.and_then(|t| holdings.container_of(t))
                    && holdings.live.contains_key(cid)
                {
                    let key = Key {
                        service: sv.name.clone(),
                        slot: slot.clone(),
                    };
                    ours.insert(cid, (*spec, key));
                }
            }
            services.push(Claim {
                spec,
                view: sv,
                slots,
            });
        }
        Claimed { services, ours }
    }

    /// Whether `container` holding `ip` is a live container of `service` on
    /// that service's own network; any other holder blocks the address.
    pub(crate) fn is_own(
        &self,
        holdings: &Holdings<'_>,
        container: &str,
        ip: std::net::Ipv4Addr,
        service: &str,
    ) -> bool {
        self.ours.get(container).is_some_and(|(svc, _)| {
            svc.name == service && holdings.network_of(container, ip) == Some(svc.network.as_str())
        })
    }
}
