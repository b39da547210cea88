//! Report: what a pass did, per node and in one line.

use super::apply::{Applied, Ending};
use std::collections::BTreeMap;
use std::fmt;

/// Counts of a pass, for the one-line summary and the exit code.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Summary {
    /// Changes made, by verb ("connected", "network created", ...).
    pub(crate) done: BTreeMap<&'static str, u64>,
    /// Actions that found things already so.
    pub(crate) already: u64,
    pub(crate) skipped: u64,
    /// Failures by node.
    pub(crate) failed: BTreeMap<String, u64>,
    /// Slots left without an address.
    pub(crate) pending: u64,
    /// Slots holding their address while swarm replaces their container.
    pub(crate) reserved: u64,
    pub(crate) problems: u64,
}

impl Summary {
    pub(crate) fn of(applied: &Applied) -> Self {
        let mut s = Summary::default();
        for o in &applied.outcomes {
            match &o.result {
                Ending::Done => *s.done.entry(o.action.verb()).or_default() += 1,
                Ending::AlreadyDone(_) => s.already += 1,
                Ending::Skipped(_) => s.skipped += 1,
                Ending::Failed(_) => *s.failed.entry(o.action.node().to_owned()).or_default() += 1,
            }
        }
        s.pending = applied
            .plan
            .records
            .iter()
            .filter(|r| r.state == super::RecordState::Pending && r.ip.is_none())
            .count() as u64;
        s.reserved = applied
            .plan
            .records
            .iter()
            .filter(|r| r.state == super::RecordState::Reserved)
            .count() as u64;
        s.problems = applied
            .plan
            .problems
            .iter()
            .filter(|p| p.is_error())
            .count() as u64;
        s
    }

    pub(crate) fn failures(&self) -> u64 {
        self.failed.values().sum()
    }

    /// Whether the pass left something undone that the user must know about.
    pub(crate) fn ok(&self) -> bool {
        self.failures() == 0 && self.problems == 0
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = self
            .done
            .iter()
            .map(|(verb, n)| format!("{n} {verb}"))
            .collect();
        if parts.is_empty() {
            parts.push("no change".into());
        }
        if self.already > 0 {
            parts.push(format!("{} already so", self.already));
        }
        if self.skipped > 0 {
            parts.push(format!("{} skipped", self.skipped));
        }
        if self.failures() > 0 {
            let per: Vec<String> = self
                .failed
                .iter()
                .map(|(n, c)| format!("{c} on {n}"))
                .collect();
            parts.push(format!("{} failed ({})", self.failures(), per.join(", ")));
        }
        if self.pending > 0 {
            parts.push(format!("{} without an address", self.pending));
        }
        if self.reserved > 0 {
            parts.push(format!(
                "{} keeping their address while swarm replaces the container",
                self.reserved
            ));
        }
        if self.problems > 0 {
            parts.push(format!(
                "{} problem{}",
                self.problems,
                if self.problems == 1 { "" } else { "s" }
            ));
        }
        f.write_str(&parts.join(", "))
    }
}
