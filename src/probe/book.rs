//! What mvconf knows of each address's probes, and what the planner may do
//! with it. Pure: results in, a [`Gate`] out.

use super::Report;
use crate::reconcile::Timestamp;
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::Duration;

/// How long probe results count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    /// An address found free is handed out within this long of its probe;
    /// after that it is probed again first.
    pub clear_for: Duration,
    /// An address that answered is skipped this long, then probed again
    /// (its holder may have left).
    pub recheck: Duration,
}

impl Default for Freshness {
    fn default() -> Self {
        Self {
            clear_for: Duration::from_secs(300),
            recheck: Duration::from_secs(60),
        }
    }
}

/// Something on the segment answered for an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub mac: String,
    /// The node whose probe it answered.
    pub node: String,
    /// When it last answered.
    pub at: Timestamp,
}

/// What the planner reads of one network's probes at one time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gate {
    /// Probed, nobody answered, recently enough: may be handed out.
    pub clear: BTreeSet<Ipv4Addr>,
    /// Answered: handed out to nobody new until a probe finds it free.
    pub answered: BTreeMap<Ipv4Addr, Seen>,
    /// Answered longer ago than the recheck: to probe again.
    pub due: BTreeSet<Ipv4Addr>,
    /// Clear, but probed more than half of `clear_for` ago: probed again
    /// while they still count, so the free list never runs dry at once.
    pub stale: BTreeSet<Ipv4Addr>,
    /// The last probe could not run (node, reason): addresses are handed
    /// out unprobed until one does, and the status says why.
    pub failed: Option<(String, String)>,
}

/// One network's probe results.
#[derive(Debug, Clone, Default)]
pub struct NetBook {
    clear: BTreeMap<Ipv4Addr, Timestamp>,
    answered: BTreeMap<Ipv4Addr, Seen>,
    failed: Option<(String, String, Timestamp)>,
}

fn age(now: Timestamp, at: Timestamp) -> Duration {
    now.duration_since(at).unsigned_abs()
}

impl NetBook {
    /// The gate at `now`.
    pub fn gate(&self, now: Timestamp, f: Freshness) -> Gate {
        Gate {
            clear: self
                .clear
                .iter()
                .filter(|(_, at)| age(now, **at) < f.clear_for)
                .map(|(a, _)| *a)
                .collect(),
            stale: self
                .clear
                .iter()
                .filter(|(_, at)| {
                    let a = age(now, **at);
                    a < f.clear_for && a >= f.clear_for / 2
                })
                .map(|(a, _)| *a)
                .collect(),
            answered: self.answered.clone(),
            due: self
                .answered
                .iter()
                .filter(|(_, s)| age(now, s.at) >= f.recheck)
                .map(|(a, _)| *a)
                .collect(),
            failed: self
                .failed
                .as_ref()
                .filter(|(_, _, at)| age(now, *at) < f.recheck)
                .map(|(n, m, _)| (n.clone(), m.clone())),
        }
    }

    /// A probe of `probed` from `node` at `at` answered as `report` says.
    /// Returns the addresses that answered and had not before (for Events).
    pub fn record(
        &mut self,
        node: &str,
        probed: &[Ipv4Addr],
        report: &Report,
        at: Timestamp,
    ) -> Vec<(Ipv4Addr, Seen)> {
        self.failed = None;
        let answers: BTreeMap<Ipv4Addr, &str> = report
            .answered
            .iter()
            .map(|a| (a.address, a.mac.as_str()))
            .collect();
        let mut new = Vec::new();
        for a in probed {
            match answers.get(a) {
                Some(mac) => {
                    self.clear.remove(a);
                    let seen = Seen {
                        mac: (*mac).to_owned(),
                        node: node.to_owned(),
                        at,
                    };
                    let before = self.answered.insert(*a, seen.clone());
                    if before.is_none_or(|b| b.mac != seen.mac) {
                        new.push((*a, seen));
                    }
                }
                None => {
                    self.answered.remove(a);
                    self.clear.insert(*a, at);
                }
            }
        }
        new
    }

    /// A probe from `node` could not run.
    pub fn fail(&mut self, node: &str, reason: &str, at: Timestamp) {
        self.failed = Some((node.to_owned(), reason.to_owned(), at));
    }

    /// An address was handed out (or taken by anyone Docker shows): the
    /// next time it is free it is probed again.
    pub fn forget(&mut self, addrs: impl IntoIterator<Item = Ipv4Addr>) {
        for a in addrs {
            self.clear.remove(&a);
        }
    }

    /// Drops what is too old to matter (a book stays as small as the
    /// addresses probed in the last `recheck` or `clear_for`).
    pub fn prune(&mut self, now: Timestamp, f: Freshness) {
        self.clear.retain(|_, at| age(now, *at) < f.clear_for);
        // An answered address stays skipped until a probe finds it free,
        // however long that takes (it is due for one every recheck); one
        // no plan asks about any more (out of every pool) goes after a day.
        self.answered
            .retain(|_, s| age(now, s.at) < f.recheck.max(Duration::from_secs(86_400)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::Answer;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    fn report(answered: &[(&str, &str)]) -> Report {
        Report {
            interface: "mv0".into(),
            mac: "02:00:00:00:00:01".into(),
            probed: 0,
            millis: 0,
            answered: answered
                .iter()
                .map(|(a, m)| Answer {
                    address: ip(a),
                    mac: (*m).into(),
                })
                .collect(),
        }
    }

    #[test]
    fn free_addresses_are_clear_for_a_while_and_answered_ones_are_skipped_until_rechecked() {
        let f = Freshness::default();
        let mut b = NetBook::default();
        let probed = [ip("10.0.0.1"), ip("10.0.0.2")];
        let new = b.record("node1", &probed, &report(&[("10.0.0.2", "02:aa")]), t(0));
        assert_eq!(new.len(), 1);
        let g = b.gate(t(10), f);
        assert_eq!(g.clear, BTreeSet::from([ip("10.0.0.1")]));
        assert_eq!(g.answered[&ip("10.0.0.2")].mac, "02:aa");
        assert!(g.due.is_empty());
        // Past the recheck the answered address is still skipped, and due
        // for another probe.
        let g = b.gate(t(61), f);
        assert!(g.answered.contains_key(&ip("10.0.0.2")));
        assert_eq!(g.due, BTreeSet::from([ip("10.0.0.2")]));
        assert!(!g.clear.contains(&ip("10.0.0.2")));
        // The same holder again is not new; once it is gone the address is
        // clear again.
        assert!(
            b.record("node1", &probed, &report(&[("10.0.0.2", "02:aa")]), t(62))
                .is_empty()
        );
        b.record("node2", &probed, &report(&[]), t(130));
        let g = b.gate(t(131), f);
        assert_eq!(g.clear.len(), 2);
        assert!(g.answered.is_empty());
        // Clear results are probed again from half their life, and age out.
        assert!(b.gate(t(131), f).stale.is_empty());
        assert_eq!(b.gate(t(281), f).stale.len(), 2);
        assert!(b.gate(t(431), f).clear.is_empty());
    }

    #[test]
    fn a_failed_probe_shows_until_the_next_one_runs() {
        let f = Freshness::default();
        let mut b = NetBook::default();
        b.fail("node3", "no such image", t(0));
        assert_eq!(
            b.gate(t(1), f).failed,
            Some(("node3".into(), "no such image".into()))
        );
        b.record("node3", &[ip("10.0.0.1")], &report(&[]), t(2));
        assert_eq!(b.gate(t(3), f).failed, None);
        b.forget([ip("10.0.0.1")]);
        assert!(b.gate(t(3), f).clear.is_empty());
    }
}
