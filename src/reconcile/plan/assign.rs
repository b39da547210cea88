//! Assignment: the four allocation rules of the planner (see the module
//! above), applied to one service at a time.

use super::holdings::{Holdings, Live};
use super::slots::{Claim, Claimed};
use super::{Action, Draft, Memory, Mode, PlanOptions, ingress};
use crate::crd::IngressMode;
use crate::pool::Allocator;
use crate::reconcile::{
    Key, NodeView, Problem, Record, RecordState, ServiceCounts, Slot, Snapshot, TaskView, short,
};
use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;

/// What every service's assignment reads.
pub(super) struct World<'p, 'a> {
    pub(crate) snapshot: &'a Snapshot,
    pub(crate) memory: &'p Memory,
    pub(crate) holdings: &'p Holdings<'a>,
    pub(crate) claimed: &'p Claimed<'a>,
    pub(crate) usable: &'p BTreeSet<(&'a str, &'a str)>,
    pub(crate) cooling: &'p [super::cooldown::Cooling<'p>],
    pub(crate) mode: Mode,
    pub(crate) options: &'p PlanOptions,
}

/// The live container of a wanted slot, and what it holds on our network.
struct Want<'a> {
    slot: &'a Slot,
    task: &'a TaskView,
    live: Option<Live<'a>>,
    cur: Option<Ipv4Addr>,
}

/// One service's assignment: what rules 2 and 3 gave each slot.
struct Service<'p, 'a> {
    world: &'p World<'p, 'a>,
    claim: &'p Claim<'a>,
    kept: HashMap<&'a Slot, Ipv4Addr>,
    reserved: HashMap<&'a Slot, Ipv4Addr>,
    /// Whether free addresses not probed yet remain, once asked: a slot
    /// finding none probed waits for a probe rather than exhaustion. The
    /// loop over the slots allocates probed addresses only, so the answer
    /// holds for the whole service (and the pool is scanned once).
    unprobed_left: std::cell::OnceCell<bool>,
}

/// Plans one service: records for every wanted slot, the actions that bind
/// them, its counters and its allocator as planning left it.
pub(super) fn service<'a>(
    world: &World<'_, 'a>,
    claim: &'a Claim<'a>,
    draft: &mut Draft,
) -> (ServiceCounts, Allocator) {
    let spec = claim.spec;
    let mut alloc = Allocator::new(spec.pool.clone());
    for a in &world.holdings.node_addrs {
        alloc.exclude(*a);
    }
    exclude_foreign(world, claim, &mut alloc, draft);
    let wants = wants(world, claim);
    let mut s = Service {
        world,
        claim,
        kept: HashMap::new(),
        reserved: HashMap::new(),
        unprobed_left: std::cell::OnceCell::new(),
    };
    s.keep_valid(&wants, &mut alloc);
    s.reserve_known(&wants, &mut alloc);

    // Rule 3b: what slots scaled away hold while they cool down goes to
    // nobody new (a container that holds it already keeps it, rule 2).
    for ip in world
        .cooling
        .iter()
        .filter(|c| c.network == spec.network)
        .map(|c| c.ip)
    {
        alloc.exclude(ip);
    }

    let gate = probe_gate(world, claim, &mut alloc, draft);

    let first_record = draft.records.len();
    let mut exhausted = Vec::new();
    let mut awaiting: Vec<&str> = Vec::new();
    for w in &wants {
        match s.record(w, &mut alloc, gate.is_some(), draft) {
            Bound::Done => {}
            Bound::Exhausted(slot) => exhausted.push(slot),
            Bound::AwaitingProbe(node_id) => awaiting.push(node_id),
        }
    }
    if !exhausted.is_empty() {
        draft.problems.push(Problem::PoolExhausted {
            service: spec.name.clone(),
            waiting: exhausted,
        });
    }
    if let Some(gate) = gate {
        want_probes(world, claim, gate, &alloc, &awaiting, draft);
    }
    // This service's records are the ones just pushed.
    let mine = &draft.records[first_record..];
    let counts = ServiceCounts {
        name: claim.view.name.clone(),
        desired: wants.len() as u64,
        bound: mine
            .iter()
            .filter(|r| r.state == RecordState::Bound)
            .count() as u64,
        pool_size: spec.pool.size(),
        allocated: mine.iter().filter(|r| r.ip.is_some()).count() as u64,
        free: alloc.free(),
        reserved: spec.skipped.size(),
    };
    (counts, alloc)
}

/// Rule 1: foreign holders. Only the held addresses inside the pool's
/// ranges are visited: cost follows the pool, not the whole cluster.
///
/// An address one of this service's containers already holds stays with it
/// (rule 2) even when a stranger holds it too: Docker's per-node IPAM gives
/// a container started without `--ip` an address free on its own node, and
/// the container we bound first must not be the one that moves. The
/// stranger is reported either way.
fn exclude_foreign(
    world: &World<'_, '_>,
    claim: &Claim<'_>,
    alloc: &mut Allocator,
    draft: &mut Draft,
) {
    let spec = claim.spec;
    let h = world.holdings;
    let in_pool: Vec<_> = spec
        .pool
        .ranges()
        .iter()
        .flat_map(|r| h.held_in(r.start(), r.end()))
        .collect();
    // The holders of one address are adjacent (sorted by address).
    let own_held: BTreeSet<Ipv4Addr> = in_pool
        .iter()
        .filter(|x| {
            world
                .claimed
                .is_own(h, x.live.container.id.as_str(), x.ip, &spec.name)
        })
        .map(|x| x.ip)
        .collect();
    for held in in_pool {
        let (ip, l) = (held.ip, held.live);
        let id = l.container.id.as_str();
        if world.claimed.is_own(h, id, ip, &spec.name) {
            continue;
        }
        if !own_held.contains(&ip) {
            alloc.exclude(ip);
        }
        // A container of one of the binding's services that no wanted slot
        // owns (still stopping after a scale-down, an old task being
        // replaced) is ours leaving, not a stranger: its address is kept
        // from others all the same.
        let leaving = l
            .container
            .service
            .as_deref()
            .is_some_and(|s| world.claimed.services.iter().any(|c| c.spec.name == s));
        if !world.claimed.ours.contains_key(id) && !leaving {
            draft.problems.push(Problem::ForeignHolder {
                node: l.node.label().to_owned(),
                container: l.container.id.clone(),
                network: held.network.to_owned(),
                ip,
                service: spec.name.clone(),
            });
        }
    }
}

/// What a wanted slot's record came to.
enum Bound<'a> {
    Done,
    /// The pool had no address for this slot.
    Exhausted(String),
    /// Free addresses remain, none probed yet: the slot on this node waits.
    AwaitingProbe(&'a str),
}

/// Free addresses probed ahead of need, beyond the slots waiting now: a
/// scale-up of this many finds them probed (one probe run covers them all
/// in about the same time as one).
pub(crate) const PROBE_AHEAD: usize = 256;

/// Duplicate-address detection: addresses something on the segment
/// answered for go to nobody new (a container of ours that holds one keeps
/// it), and, while probes run, only addresses probed free are handed out.
/// Returns the gate when it restricts this service's allocator.
fn probe_gate<'p>(
    world: &World<'p, '_>,
    claim: &Claim<'_>,
    alloc: &mut Allocator,
    draft: &mut Draft,
) -> Option<&'p crate::probe::book::Gate> {
    let spec = claim.spec;
    let gate = world.options.probe.get(&spec.network)?;
    for (ip, seen) in &gate.answered {
        if spec.pool.contains(*ip) {
            alloc.exclude(*ip);
            draft.problems.push(Problem::UnseenHolder {
                network: spec.network.clone(),
                ip: *ip,
                mac: seen.mac.clone(),
                node: seen.node.clone(),
            });
        }
    }
    if let Some((node, message)) = &gate.failed {
        draft.problems.push(Problem::ProbeFailed {
            network: spec.network.clone(),
            node: node.clone(),
            message: message.clone(),
        });
        return None;
    }
    alloc.restrict(gate.clear.iter().copied());
    Some(gate)
}

/// The addresses to probe next for this service, on the node of the first
/// waiting slot (else any node where the network is usable): the answered
/// ones due for another probe, and enough unprobed free ones that every
/// waiting slot and [`PROBE_AHEAD`] more find a probed one.
fn want_probes(
    world: &World<'_, '_>,
    claim: &Claim<'_>,
    gate: &crate::probe::book::Gate,
    alloc: &Allocator,
    awaiting: &[&str],
    draft: &mut Draft,
) {
    let network = claim.spec.network.as_str();
    let short = (awaiting.len() + PROBE_AHEAD)
        .saturating_sub(usize::try_from(alloc.allowed_free()).unwrap_or(usize::MAX));
    let mut addrs = alloc.unprobed(short);
    addrs.extend(gate.due.iter().filter(|a| claim.spec.pool.contains(**a)));
    addrs.extend(gate.stale.iter().filter(|a| alloc.is_free(**a)));
    if addrs.is_empty() {
        return;
    }
    let node = awaiting.first().copied().or_else(|| {
        world
            .usable
            .iter()
            .find(|(_, n)| *n == network)
            .map(|(id, _)| *id)
    });
    let Some(node) = node else { return };
    let w = draft
        .probes
        .entry(network.to_owned())
        .or_insert_with(|| super::ProbeWanted {
            node_id: node.to_owned(),
            addrs: Default::default(),
            awaiting: 0,
        });
    w.addrs.extend(addrs);
    w.awaiting += awaiting.len();
}

fn wants<'a>(world: &World<'_, 'a>, claim: &'a Claim<'a>) -> Vec<Want<'a>> {
    let network = claim.spec.network.as_str();
    claim
        .slots
        .iter()
        .filter_map(|(slot, st)| {
            let task = st.current?;
            let live = world
                .holdings
                .container_of(task)
                .and_then(|c| world.holdings.live.get(c).copied());
            let cur = live
                .and_then(|l| l.container.endpoint(network))
                .and_then(|e| e.ip);
            Some(Want {
                slot,
                task,
                live,
                cur,
            })
        })
        .collect()
}

impl<'a> Service<'_, 'a> {
    fn key_of(&self, slot: &Slot) -> Key {
        Key {
            service: self.claim.view.name.clone(),
            slot: slot.clone(),
        }
    }

    fn remembered(&self, slot: &Slot) -> Option<&super::Remembered> {
        self.world.memory.get(&self.key_of(slot))
    }

    /// Rule 2: keeps, the remembered holder of an address first.
    fn keep_valid(&mut self, wants: &[Want<'a>], alloc: &mut Allocator) {
        let pool = &self.claim.spec.pool;
        let mut order: Vec<&Want<'a>> = wants
            .iter()
            .filter(|w| w.cur.is_some_and(|ip| pool.contains(ip)))
            .collect();
        order.sort_by_key(|w| {
            let remembered = self.remembered(w.slot).is_some_and(|m| Some(m.ip) == w.cur);
            (!remembered, w.slot.clone())
        });
        for w in order {
            let Some(ip) = w.cur else { continue };
            if alloc.claim(ip).is_ok() {
                self.kept.insert(w.slot, ip);
            }
        }
    }

    /// Rule 3: every other wanted slot reserves the address it is known to
    /// have had: remembered, else what its earlier containers (newest first)
    /// asked for. A slot whose container is being replaced keeps it that
    /// way; a live one gets it back.
    fn reserve_known(&mut self, wants: &[Want<'a>], alloc: &mut Allocator) {
        for w in wants {
            if self.kept.contains_key(w.slot) {
                continue;
            }
            let candidates = self
                .remembered(w.slot)
                .map(|m| m.ip)
                .into_iter()
                .chain(self.history(w.slot));
            for ip in candidates {
                if alloc.claim(ip).is_ok() {
                    self.reserved.insert(w.slot, ip);
                    break;
                }
            }
        }
    }

    /// The addresses a slot's earlier containers had on our network, newest
    /// first.
    fn history(&self, slot: &Slot) -> Vec<Ipv4Addr> {
        let h = self.world.holdings;
        let network = self.claim.spec.network.as_str();
        let Some(st) = self.claim.slots.get(slot) else {
            return Vec::new();
        };
        st.history
            .iter()
            .rev()
            .filter_map(|t| h.container_of(t))
            .filter_map(|c| {
                h.stopped
                    .get(c)
                    .copied()
                    .or_else(|| h.live.get(c).map(|l| l.container))
            })
            .filter_map(|c| c.endpoint(network).and_then(|e| e.requested.or(e.ip)))
            .collect()
    }

    /// Rule 4, and the record of one wanted slot.
    fn record(
        &self,
        w: &Want<'a>,
        alloc: &mut Allocator,
        probing: bool,
        draft: &mut Draft,
    ) -> Bound<'a> {
        let key = self.key_of(w.slot);
        let node = w
            .live
            .map(|l| l.node)
            .or_else(|| self.world.snapshot.node(&w.task.node_id));
        let mut rec = Record {
            key: key.clone(),
            network: self.claim.spec.network.clone(),
            node_id: w.task.node_id.clone(),
            node: node
                .map(|n| n.label().to_owned())
                .unwrap_or_else(|| short(&w.task.node_id).to_owned()),
            host_ip: node.map(|n| n.addr.clone()).unwrap_or_default(),
            task: w.task.id.clone(),
            container: self
                .world
                .holdings
                .container_of(w.task)
                .unwrap_or_default()
                .to_owned(),
            ip: None,
            ingress: false,
            state: RecordState::Pending,
            message: None,
            since: self
                .remembered(w.slot)
                .filter(|m| Some(m.ip) == w.cur)
                .and_then(|m| m.since),
            released: None,
        };
        let Some(l) = w.live else {
            self.waiting(w, node, &mut rec);
            draft.records.push(rec);
            return Bound::Done;
        };
        let ingress_net = l.node.ingress();
        rec.ingress = ingress_net.is_some_and(|i| l.container.endpoint(&i.name).is_some());
        let mut exhausted = Bound::Done;
        match self.world.mode {
            Mode::Up => exhausted = self.bind(w, l, &mut rec, alloc, probing, draft),
            Mode::Disconnect | Mode::Down => self.unbind(w, l, &mut rec, draft),
            Mode::Remove | Mode::Observe | Mode::Uningress | Mode::Reingress => {
                self.as_it_is(w, l, &mut rec, draft)
            }
        }
        draft.records.push(rec);
        exhausted
    }

    /// A slot whose container is not running (being replaced), or is on a
    /// node we cannot read: it keeps its reservation, if any.
    fn waiting(&self, w: &Want<'a>, node: Option<&NodeView>, rec: &mut Record) {
        rec.ip = self.reserved.get(w.slot).copied();
        rec.state = if rec.ip.is_some() {
            RecordState::Reserved
        } else {
            RecordState::Pending
        };
        rec.message = Some(match node {
            Some(n) if !n.reachable() => format!("node {} unreachable", n.label()),
            _ => format!(
                "task {} is {}",
                short(&w.task.id),
                if w.task.state == crate::reconcile::TaskState::Unknown {
                    "not running"
                } else {
                    w.task.state.as_str()
                }
            ),
        });
        if rec.ip.is_some() {
            rec.since = self.remembered(w.slot).and_then(|m| m.since);
        }
    }

    /// `disconnect` and `down`: the container leaves our network.
    fn unbind(&self, w: &Want<'a>, l: Live<'a>, rec: &mut Record, draft: &mut Draft) {
        let network = &self.claim.spec.network;
        if let Some(ip) = w
            .cur
            .or_else(|| l.container.endpoint(network).and_then(|e| e.ip))
        {
            draft.actions.push(Action::Disconnect {
                node_id: l.node.id.clone(),
                node: l.node.label().to_owned(),
                network: network.clone(),
                container: l.container.id.clone(),
                key: Some(rec.key.clone()),
                reason: String::new(),
            });
            rec.message = Some(format!("had {ip}"));
        }
        rec.state = RecordState::Pending;
    }

    /// Modes that leave addresses alone: the record says what is.
    fn as_it_is(&self, w: &Want<'a>, l: Live<'a>, rec: &mut Record, draft: &mut Draft) {
        rec.ip = w.cur;
        match w.cur {
            Some(ip) if self.claim.spec.pool.contains(ip) => rec.state = RecordState::Bound,
            Some(ip) => {
                rec.state = RecordState::Failed;
                rec.message = Some(format!("has {ip}, outside its pool"));
            }
            None => {
                rec.message = Some(format!("not connected to {}", self.claim.spec.network));
            }
        }
        let mode = self.world.mode;
        if mode == Mode::Uningress || (mode == Mode::Reingress && self.claim.view.uses_ingress) {
            ingress::plan(mode, l, rec, &mut draft.actions);
        }
    }

    /// `up`: keep, restore or allocate the slot's address, then the
    /// ingress setting.
    fn bind(
        &self,
        w: &Want<'a>,
        l: Live<'a>,
        rec: &mut Record,
        alloc: &mut Allocator,
        probing: bool,
        draft: &mut Draft,
    ) -> Bound<'a> {
        let spec = self.claim.spec;
        if !self
            .world
            .usable
            .contains(&(l.node.id.as_str(), spec.network.as_str()))
        {
            rec.ip = self
                .kept
                .get(w.slot)
                .copied()
                .or(self.reserved.get(w.slot).copied());
            rec.state = RecordState::Pending;
            rec.message = Some(format!(
                "network {} is not usable on node {}",
                spec.network,
                l.node.label()
            ));
            return Bound::Done;
        }
        let mut exhausted = Bound::Done;
        if let Some(ip) = self.kept.get(w.slot) {
            rec.ip = Some(*ip);
            rec.state = RecordState::Bound;
        } else {
            let choice = match self.reserved.get(w.slot) {
                Some(ip) => Ok(*ip),
                None => alloc.allocate(None),
            };
            match choice {
                Ok(ip) => self.connect(w, l, ip, rec, draft),
                Err(_)
                    if probing
                        && *self
                            .unprobed_left
                            .get_or_init(|| !alloc.unprobed(1).is_empty()) =>
                {
                    rec.state = RecordState::Pending;
                    rec.message = Some(format!(
                        "waiting for an ARP probe of a free address of {}",
                        spec.network
                    ));
                    exhausted = Bound::AwaitingProbe(l.node.id.as_str());
                }
                Err(e) => {
                    rec.state = RecordState::Pending;
                    rec.message = Some(format!("no address: {e}"));
                    exhausted = Bound::Exhausted(rec.key.to_string());
                }
            }
        }
        let restore = self.world.options.restore_ingress && self.claim.view.uses_ingress;
        match spec.ingress {
            IngressMode::Detach => ingress::plan(Mode::Uningress, l, rec, &mut draft.actions),
            IngressMode::Keep if restore => {
                ingress::plan(Mode::Reingress, l, rec, &mut draft.actions)
            }
            IngressMode::Keep => {}
        }
        exhausted
    }

    /// Connects the slot's container with `ip`, first moving it off an
    /// address it may not keep.
    fn connect(
        &self,
        w: &Want<'a>,
        l: Live<'a>,
        ip: Ipv4Addr,
        rec: &mut Record,
        draft: &mut Draft,
    ) {
        let spec = self.claim.spec;
        if let Some(old) = w.cur {
            let reason = if spec.pool.contains(old) {
                format!("{old} is also held by another container")
            } else if spec.skipped.contains(old) {
                format!("{old} is reserved on network {}", spec.network)
            } else {
                format!("{old} is not in the pool")
            };
            draft.actions.push(Action::Disconnect {
                node_id: l.node.id.clone(),
                node: l.node.label().to_owned(),
                network: spec.network.clone(),
                container: l.container.id.clone(),
                key: Some(rec.key.clone()),
                reason,
            });
        }
        draft.actions.push(Action::Connect {
            node_id: l.node.id.clone(),
            node: l.node.label().to_owned(),
            network: spec.network.clone(),
            container: l.container.id.clone(),
            key: rec.key.clone(),
            ip,
        });
        rec.ip = Some(ip);
        rec.state = RecordState::Bound;
        rec.since = None;
    }
}
