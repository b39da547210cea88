//! Rule 3b, the release cooldown: a remembered slot that swarm no longer
//! wants (scaled away, its node gone) keeps its address out of every other
//! slot's reach for a while, so that no other container answers on it
//! while switches and neighbours still send its traffic to the old MAC
//! address. The slot coming back within the cooldown gets it again (rule
//! 3 reads the same memory). A record says so, and when the slot went, for
//! the passes after this one and an operator restart.

use super::holdings::Holdings;
use super::slots::Claimed;
use super::{Memory, Release, Remembered};
use crate::config::validate::Desired;
use crate::reconcile::{Key, Record, RecordState, Snapshot, Timestamp, short};
use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;

/// An address that cools down.
pub(super) struct Cooling<'a> {
    pub(crate) key: &'a Key,
    pub(crate) network: &'a str,
    pub(crate) ip: Ipv4Addr,
    remembered: &'a Remembered,
    /// When the address was last seen held by the slot's container.
    at: Timestamp,
}

/// The remembered addresses of slots that are gone and still cool down.
/// The cooldown runs from when the address was last seen held: a slot's
/// container takes a while to stop after swarm stops wanting it, and
/// switches learn it is gone only from then on.
pub(super) fn cooling<'a>(
    desired: &'a Desired,
    claimed: &Claimed<'_>,
    memory: &'a Memory,
    holdings: &Holdings<'_>,
    release: Option<Release>,
) -> Vec<Cooling<'a>> {
    let Some(release) = release else {
        return Vec::new();
    };
    let networks: HashMap<&str, &str> = desired
        .services
        .iter()
        .map(|s| (s.name.as_str(), s.network.as_str()))
        .collect();
    let wanted: HashSet<(&str, &crate::reconcile::Slot)> = claimed
        .services
        .iter()
        .flat_map(|c| {
            c.slots
                .iter()
                .filter(|(_, st)| st.current.is_some())
                .map(move |(slot, _)| (c.view.name.as_str(), slot))
        })
        .collect();
    memory
        .iter()
        .filter(|(k, _)| !wanted.contains(&(k.service.as_str(), &k.slot)))
        .filter_map(|(key, m)| {
            let network = networks.get(key.service.as_str())?;
            let held = !holdings.held_in(m.ip, m.ip).is_empty();
            let at = match m.released {
                Some(at) if !held => at,
                _ => release.now,
            };
            release.cooling(at).then_some(Cooling {
                key,
                network,
                ip: m.ip,
                remembered: m,
                at,
            })
        })
        .collect()
}

/// The record of a slot that is gone and whose address cools down.
pub(super) fn record(c: &Cooling<'_>, snapshot: &Snapshot, release: Option<Release>) -> Record {
    let node_id = match &c.key.slot {
        crate::reconcile::Slot::Node(id) => id.clone(),
        crate::reconcile::Slot::Slot(_) => String::new(),
    };
    let node = snapshot.node(&node_id);
    let until = release.map(|r| r.until(c.at));
    Record {
        key: c.key.clone(),
        network: c.network.to_owned(),
        node: node
            .map(|n| n.label().to_owned())
            .unwrap_or_else(|| short(&node_id).to_owned()),
        host_ip: node.map(|n| n.addr.clone()).unwrap_or_default(),
        node_id,
        task: String::new(),
        container: String::new(),
        ip: Some(c.ip),
        ingress: false,
        state: RecordState::Reserved,
        message: Some(match until {
            Some(t) => format!("scaled away; {} held until {t} (release cooldown)", c.ip),
            None => format!("scaled away; {} held (release cooldown)", c.ip),
        }),
        since: c.remembered.since,
        released: Some(c.at),
    }
}
