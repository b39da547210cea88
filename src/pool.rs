//! IP pools: parsing pool entries, and the allocator that picks addresses.
//!
//! A pool is a sorted list of inclusive ranges and is never expanded into
//! addresses: a /8 costs two words. The allocator only remembers addresses
//! of its own pool that are taken, so its memory grows with what is allocated
//! or excluded inside the pool, never with the pool's size.

use std::collections::BTreeSet;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// Why a pool entry such as `"192.168.8.136-192.168.8.137"` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error("empty entry")]
    Empty,
    /// The entry, as [`shown`].
    #[error("IPv6 is not supported yet: {0} (only IPv4 addresses and ranges)")]
    Ipv6(String),
    #[error("CIDR notation is not supported in a pool: {0} (write a range \"first-last\")")]
    Cidr(String),
    #[error("{0} is not an IPv4 address")]
    NotAnAddress(String),
    #[error("range {start}-{end} is reversed (the first address must not be above the last)")]
    Reversed { start: Ipv4Addr, end: Ipv4Addr },
}

/// An inclusive range of IPv4 addresses; a single address is a range of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IpRange {
    start: u32,
    end: u32,
}

impl IpRange {
    pub fn new(start: Ipv4Addr, end: Ipv4Addr) -> Result<Self, EntryError> {
        let (s, e) = (u32::from(start), u32::from(end));
        if s > e {
            return Err(EntryError::Reversed { start, end });
        }
        Ok(Self { start: s, end: e })
    }

    pub(crate) fn single(ip: Ipv4Addr) -> Self {
        let v = u32::from(ip);
        Self { start: v, end: v }
    }

    pub(crate) fn start(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.start)
    }

    pub(crate) fn end(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.end)
    }

    /// Number of addresses, at least one: a range is never empty.
    #[allow(clippy::len_without_is_empty)]
    pub(crate) fn len(&self) -> u64 {
        u64::from(self.end - self.start) + 1
    }

    pub(crate) fn contains(&self, ip: Ipv4Addr) -> bool {
        (self.start..=self.end).contains(&u32::from(ip))
    }

    pub(crate) fn overlaps(&self, other: &IpRange) -> bool {
        self.start <= other.end && other.start <= self.end
    }
}

impl fmt::Display for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start())
        } else {
            write!(f, "{}-{}", self.start(), self.end())
        }
    }
}

/// Shows a user value in a message: quoted, escaped, and cut when long so
/// that a 10,000-character value does not flood a terminal or a status.
pub(crate) fn shown(s: &str) -> String {
    const MAX: usize = 64;
    if s.chars().count() <= MAX {
        format!("{s:?}")
    } else {
        let head: String = s.chars().take(MAX).collect();
        format!("{head:?}… ({} characters)", s.chars().count())
    }
}

fn parse_ipv4(part: &str, whole: &str) -> Result<Ipv4Addr, EntryError> {
    Ipv4Addr::from_str(part).map_err(|_| {
        if part.contains(':') {
            EntryError::Ipv6(shown(whole))
        } else {
            EntryError::NotAnAddress(shown(part))
        }
    })
}

impl FromStr for IpRange {
    type Err = EntryError;

    /// Parses `"a.b.c.d"` or `"a.b.c.d-e.f.g.h"`, spaces around the parts allowed.
    fn from_str(entry: &str) -> Result<Self, Self::Err> {
        let trimmed = entry.trim();
        if trimmed.is_empty() {
            return Err(EntryError::Empty);
        }
        if trimmed.contains('/') {
            return Err(EntryError::Cidr(shown(trimmed)));
        }
        // IPv6 addresses never contain '-', so splitting first is safe; checking
        // for ':' first gives the clearer message for "fe80::1-fe80::2".
        if trimmed.contains(':') {
            return Err(EntryError::Ipv6(shown(trimmed)));
        }
        match trimmed.split_once('-') {
            None => Ok(Self::single(parse_ipv4(trimmed, trimmed)?)),
            Some((a, b)) => Self::new(
                parse_ipv4(a.trim(), trimmed)?,
                parse_ipv4(b.trim(), trimmed)?,
            ),
        }
    }
}

/// A set of addresses made of ranges: sorted, non-overlapping, adjacent ones merged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pool {
    ranges: Vec<IpRange>,
}

impl Pool {
    /// Builds a pool; overlapping or adjacent ranges are merged.
    pub fn new(ranges: impl IntoIterator<Item = IpRange>) -> Self {
        let mut sorted: Vec<IpRange> = ranges.into_iter().collect();
        sorted.sort_unstable();
        let mut merged: Vec<IpRange> = Vec::with_capacity(sorted.len());
        for r in sorted {
            match merged.last_mut() {
                Some(last) if u64::from(r.start) <= u64::from(last.end) + 1 => {
                    last.end = last.end.max(r.end);
                }
                _ => merged.push(r),
            }
        }
        Self { ranges: merged }
    }

    pub fn ranges(&self) -> &[IpRange] {
        &self.ranges
    }

    pub fn size(&self) -> u64 {
        self.ranges.iter().map(IpRange::len).sum()
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let v = u32::from(ip);
        // The ranges are sorted and disjoint: find the last one starting at or below v.
        let idx = self.ranges.partition_point(|r| r.start <= v);
        idx > 0 && self.ranges[idx - 1].end >= v
    }

    /// The addresses of this pool that are not in `other`.
    pub(crate) fn without(&self, other: &Pool) -> Pool {
        let mut out = Vec::with_capacity(self.ranges.len());
        let mut first = 0;
        for r in &self.ranges {
            let (mut start, end) = (u64::from(r.start), u64::from(r.end));
            // `other`'s ranges that end before this one starts are behind us.
            while other
                .ranges
                .get(first)
                .is_some_and(|o| u64::from(o.end) < start)
            {
                first += 1;
            }
            for o in &other.ranges[first..] {
                if u64::from(o.start) > end || start > end {
                    break;
                }
                if u64::from(o.start) > start {
                    out.push(span(start, u64::from(o.start) - 1));
                }
                start = start.max(u64::from(o.end) + 1);
            }
            if start <= end {
                out.push(span(start, end));
            }
        }
        Pool { ranges: out }
    }

    /// Whether every address of `range` is in the pool: merged ranges are
    /// disjoint and never adjacent, so one of them must hold it whole.
    /// Whether any address of `range` is in the pool (its ranges are
    /// sorted and disjoint: one binary search).
    pub(crate) fn overlaps(&self, range: &IpRange) -> bool {
        let i = self.ranges.partition_point(|r| r.end < range.start);
        self.ranges.get(i).is_some_and(|r| r.start <= range.end)
    }

    pub(crate) fn covers(&self, range: &IpRange) -> bool {
        self.ranges
            .iter()
            .any(|r| r.start <= range.start && range.end <= r.end)
    }
}

/// `start..=end`, both inside the address space by construction.
fn span(start: u64, end: u64) -> IpRange {
    let v4 = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
    IpRange {
        start: v4(start),
        end: v4(end),
    }
}

impl fmt::Display for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.ranges.is_empty() {
            return f.write_str("none");
        }
        for (i, r) in self.ranges.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

/// The pool has no free address left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("pool exhausted: all {size} addresses are taken")]
pub struct Exhausted {
    pub(crate) size: u64,
}

/// Why a specific address could not be claimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ClaimError {
    #[error("{0} is not in the pool")]
    NotInPool(Ipv4Addr),
    #[error("{0} is already taken")]
    Taken(Ipv4Addr),
}

/// Hands out addresses of one pool: lowest free first, a preferred address
/// when it is free, never an address that is taken or excluded.
#[derive(Debug, Clone)]
pub struct Allocator {
    pool: Pool,
    /// Addresses of the pool that are allocated, claimed or excluded.
    taken: BTreeSet<u32>,
    /// Every pool address below `hint` is taken; the search for the lowest
    /// free address starts here, so allocating a whole range is linear.
    hint: u64,
    /// When set, [`Allocator::allocate`] hands out only these addresses
    /// (the ones an ARP probe found free); a claim by name is not limited.
    only: Option<BTreeSet<u32>>,
}

impl Allocator {
    pub fn new(pool: Pool) -> Self {
        Self {
            pool,
            taken: BTreeSet::new(),
            hint: 0,
            only: None,
        }
    }

    /// From now on, `allocate` hands out only addresses of `only`.
    pub(crate) fn restrict(&mut self, only: impl IntoIterator<Item = Ipv4Addr>) {
        self.only = Some(only.into_iter().map(u32::from).collect());
    }

    /// Whether `ip` is a free address of the pool.
    pub(crate) fn is_free(&self, ip: Ipv4Addr) -> bool {
        self.pool.contains(ip) && !self.taken.contains(&u32::from(ip))
    }

    /// Free addresses of the restriction (all free ones without one).
    pub(crate) fn allowed_free(&self) -> u64 {
        match &self.only {
            Some(only) => only
                .iter()
                .filter(|a| self.pool.contains(Ipv4Addr::from(**a)) && !self.taken.contains(a))
                .count() as u64,
            None => self.free(),
        }
    }

    /// Up to `n` free addresses that `allocate` may not hand out yet (not in
    /// the restriction), lowest first: what to probe next.
    pub(crate) fn unprobed(&self, n: usize) -> Vec<Ipv4Addr> {
        let mut out = Vec::new();
        for range in &self.pool.ranges {
            let mut taken = self.taken.range(range.start..=range.end).peekable();
            let mut a = u64::from(range.start);
            while a <= u64::from(range.end) && out.len() < n {
                let Ok(v) = u32::try_from(a) else { break };
                if taken.peek() == Some(&&v) {
                    taken.next();
                } else if !self.only.as_ref().is_some_and(|o| o.contains(&v)) {
                    out.push(Ipv4Addr::from(v));
                }
                a += 1;
            }
        }
        out
    }

    /// Marks an address as unavailable (a node address, another container's
    /// endpoint). Addresses outside the pool are ignored; returns whether the
    /// address was in the pool.
    pub fn exclude(&mut self, ip: Ipv4Addr) -> bool {
        if self.pool.contains(ip) {
            self.taken.insert(u32::from(ip));
            true
        } else {
            false
        }
    }

    /// Takes exactly this address.
    pub(crate) fn claim(&mut self, ip: Ipv4Addr) -> Result<(), ClaimError> {
        if !self.pool.contains(ip) {
            return Err(ClaimError::NotInPool(ip));
        }
        if !self.taken.insert(u32::from(ip)) {
            return Err(ClaimError::Taken(ip));
        }
        Ok(())
    }

    /// Takes `preferred` when it is a free address of the pool, otherwise the
    /// lowest free address.
    pub fn allocate(&mut self, preferred: Option<Ipv4Addr>) -> Result<Ipv4Addr, Exhausted> {
        if let Some(ip) = preferred
            && self.claim(ip).is_ok()
        {
            return Ok(ip);
        }
        let found = self.lowest_free().ok_or(Exhausted {
            size: self.pool.size(),
        })?;
        self.taken.insert(found);
        if self.only.is_none() {
            self.hint = u64::from(found) + 1;
        }
        Ok(Ipv4Addr::from(found))
    }

    fn lowest_free(&self) -> Option<u32> {
        if let Some(only) = &self.only {
            return only
                .iter()
                .copied()
                .find(|a| self.pool.contains(Ipv4Addr::from(*a)) && !self.taken.contains(a));
        }
        for range in &self.pool.ranges {
            // u64 so that stepping past 255.255.255.255 cannot overflow.
            let mut candidate = u64::from(range.start).max(self.hint);
            let Ok(from) = u32::try_from(candidate) else {
                return None;
            };
            if from > range.end {
                continue;
            }
            for &t in self.taken.range(from..=range.end) {
                if u64::from(t) != candidate {
                    break;
                }
                candidate += 1;
            }
            if candidate <= u64::from(range.end) {
                return u32::try_from(candidate).ok();
            }
        }
        None
    }

    /// Gives an address back; returns whether it was taken.
    #[cfg(test)]
    pub(crate) fn release(&mut self, ip: Ipv4Addr) -> bool {
        let v = u32::from(ip);
        let was = self.taken.remove(&v);
        if was {
            self.hint = self.hint.min(u64::from(v));
        }
        was
    }

    /// Taken addresses of the pool (allocated, claimed or excluded).
    pub(crate) fn taken(&self) -> u64 {
        self.taken.len() as u64
    }

    pub(crate) fn free(&self) -> u64 {
        self.pool.size() - self.taken()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn range(s: &str) -> IpRange {
        s.parse().unwrap()
    }

    #[test]
    fn overlap_with_a_pool_is_any_shared_address() {
        let p = Pool::new([range("10.0.0.10-10.0.0.20"), range("10.0.0.40")]);
        assert!(p.overlaps(&range("10.0.0.0-10.0.0.10")));
        assert!(p.overlaps(&range("10.0.0.15-10.0.0.16")));
        assert!(p.overlaps(&range("10.0.0.21-10.0.0.50")));
        assert!(!p.overlaps(&range("10.0.0.21-10.0.0.39")));
        assert!(!p.overlaps(&range("10.0.0.41-10.0.0.255")));
        assert!(!Pool::new([]).overlaps(&range("10.0.0.1")));
    }

    #[test]
    fn a_restricted_allocator_hands_out_only_probed_addresses_and_names_the_next_to_probe() {
        let mut a = Allocator::new(Pool::new([range("10.0.0.1-10.0.0.8")]));
        a.exclude(ip("10.0.0.2"));
        a.restrict([ip("10.0.0.3"), ip("10.0.0.6")]);
        assert_eq!(
            a.unprobed(3),
            vec![ip("10.0.0.1"), ip("10.0.0.4"), ip("10.0.0.5")]
        );
        assert_eq!(a.allocate(None), Ok(ip("10.0.0.3")));
        assert_eq!(a.allocate(None), Ok(ip("10.0.0.6")));
        assert!(a.allocate(None).is_err(), "nothing probed is left");
        // A slot's own address is claimed by name, probed or not.
        assert_eq!(a.claim(ip("10.0.0.7")), Ok(()));
        assert_eq!(
            a.unprobed(9),
            vec![
                ip("10.0.0.1"),
                ip("10.0.0.4"),
                ip("10.0.0.5"),
                ip("10.0.0.8")
            ]
        );
        assert_eq!(a.free(), 4);
    }

    #[test]
    fn parses_single_addresses_and_ranges() {
        assert_eq!(range("192.168.8.139").len(), 1);
        assert_eq!(range("192.168.8.136-192.168.8.137").len(), 2);
        assert_eq!(
            range(" 10.0.0.1 - 10.0.0.3 ").to_string(),
            "10.0.0.1-10.0.0.3"
        );
        assert_eq!(range("10.0.0.1-10.0.0.1").to_string(), "10.0.0.1");
    }

    #[test]
    fn refuses_bad_entries_with_reasons() {
        assert_eq!("".parse::<IpRange>(), Err(EntryError::Empty));
        assert!(matches!(
            "fe80::1".parse::<IpRange>(),
            Err(EntryError::Ipv6(_))
        ));
        assert!(matches!(
            "10.0.0.0/24".parse::<IpRange>(),
            Err(EntryError::Cidr(_))
        ));
        assert!(matches!(
            "10.0.0.300".parse::<IpRange>(),
            Err(EntryError::NotAnAddress(_))
        ));
        assert!(matches!(
            "10.0.0.9-10.0.0.1".parse::<IpRange>(),
            Err(EntryError::Reversed { .. })
        ));
        assert!(matches!(
            "10.0.0.1-10.0.0.2-10.0.0.3".parse::<IpRange>(),
            Err(EntryError::NotAnAddress(_))
        ));
    }

    #[test]
    fn a_slash_eight_costs_one_range() {
        let pool = Pool::new([range("10.0.0.0-10.255.255.255")]);
        assert_eq!(pool.ranges().len(), 1);
        assert_eq!(pool.size(), 1 << 24);
        let mut alloc = Allocator::new(pool);
        assert_eq!(alloc.allocate(None), Ok(ip("10.0.0.0")));
        assert_eq!(alloc.free(), (1 << 24) - 1);
    }

    #[test]
    fn merges_overlapping_and_adjacent_ranges() {
        let pool = Pool::new([
            range("10.0.0.5-10.0.0.9"),
            range("10.0.0.1-10.0.0.4"),
            range("10.0.0.8-10.0.0.12"),
            range("10.0.0.20"),
        ]);
        assert_eq!(
            pool.ranges(),
            &[range("10.0.0.1-10.0.0.12"), range("10.0.0.20")]
        );
        assert!(pool.contains(ip("10.0.0.12")));
        assert!(!pool.contains(ip("10.0.0.13")));
        assert!(pool.contains(ip("10.0.0.20")));
        assert!(!pool.contains(ip("10.0.0.0")));
    }

    #[test]
    fn lowest_first_then_preferred_then_exhausted() {
        let mut a = Allocator::new(Pool::new([
            range("192.168.8.136-192.168.8.137"),
            range("192.168.8.139"),
        ]));
        assert!(a.exclude(ip("192.168.8.136")));
        assert!(!a.exclude(ip("192.168.8.1")));
        assert_eq!(
            a.allocate(Some(ip("192.168.8.139"))),
            Ok(ip("192.168.8.139"))
        );
        assert_eq!(
            a.allocate(Some(ip("192.168.8.139"))),
            Ok(ip("192.168.8.137"))
        );
        assert_eq!(a.allocate(None), Err(Exhausted { size: 3 }));
        assert!(a.release(ip("192.168.8.137")));
        assert_eq!(a.allocate(None), Ok(ip("192.168.8.137")));
    }

    #[test]
    fn edges_of_the_address_space() {
        let mut a = Allocator::new(Pool::new([range("255.255.255.254-255.255.255.255")]));
        assert_eq!(a.allocate(None), Ok(ip("255.255.255.254")));
        assert_eq!(a.allocate(None), Ok(ip("255.255.255.255")));
        assert!(a.allocate(None).is_err());
        let mut a = Allocator::new(Pool::new([range("0.0.0.0-0.0.0.1")]));
        assert_eq!(a.allocate(None), Ok(ip("0.0.0.0")));
        assert_eq!(a.allocate(None), Ok(ip("0.0.0.1")));
        assert!(a.allocate(None).is_err());
        assert!(a.release(ip("0.0.0.0")));
        assert_eq!(a.allocate(None), Ok(ip("0.0.0.0")));
    }

    fn arb_pool() -> impl Strategy<Value = Pool> {
        // Small address space so that collisions and exhaustion happen often.
        prop::collection::vec((0u32..64, 0u32..8), 1..6).prop_map(|v| {
            Pool::new(v.into_iter().map(|(s, l)| IpRange {
                start: 0x0a00_0000 + s,
                end: 0x0a00_0000 + s + l,
            }))
        })
    }

    #[derive(Debug, Clone)]
    enum Op {
        Allocate(Option<u32>),
        Release(u32),
        Exclude(u32),
    }

    fn arb_ops() -> impl Strategy<Value = Vec<Op>> {
        let addr = 0x0a00_0000u32..0x0a00_0050;
        prop::collection::vec(
            prop_oneof![
                4 => prop::option::of(addr.clone()).prop_map(Op::Allocate),
                1 => addr.clone().prop_map(Op::Release),
                1 => addr.prop_map(Op::Exclude),
            ],
            0..120,
        )
    }

    fn run(pool: &Pool, ops: &[Op]) -> Vec<Result<Ipv4Addr, Exhausted>> {
        let mut a = Allocator::new(pool.clone());
        let mut out = Vec::new();
        for op in ops {
            match op {
                Op::Allocate(p) => out.push(a.allocate(p.map(Ipv4Addr::from))),
                Op::Release(v) => {
                    a.release(Ipv4Addr::from(*v));
                }
                Op::Exclude(v) => {
                    a.exclude(Ipv4Addr::from(*v));
                }
            }
        }
        out
    }

    proptest! {
        #[test]
        fn allocator_invariants(pool in arb_pool(), ops in arb_ops()) {
            let mut a = Allocator::new(pool.clone());
            // The model: what is held by whom.
            let mut held: BTreeSet<u32> = BTreeSet::new();
            let mut excluded: BTreeSet<u32> = BTreeSet::new();
            for op in &ops {
                match op {
                    Op::Allocate(p) => {
                        let free_before = a.free();
                        match a.allocate(p.map(Ipv4Addr::from)) {
                            Ok(got) => {
                                let v = u32::from(got);
                                prop_assert!(pool.contains(got), "outside the pool");
                                prop_assert!(!excluded.contains(&v), "an excluded address");
                                prop_assert!(held.insert(v), "handed out twice");
                                let lowest = pool.ranges().iter()
                                    .flat_map(|r| r.start..=r.end)
                                    .find(|x| !held.contains(x) && !excluded.contains(x) || *x == v);
                                match p {
                                    Some(pv) if *pv == v => {}
                                    _ => prop_assert_eq!(lowest, Some(v), "not the lowest free"),
                                }
                                if let Some(pv) = p
                                    && pool.contains(Ipv4Addr::from(*pv)) && v != *pv {
                                        prop_assert!(held.contains(pv) || excluded.contains(pv),
                                            "a free preferred address was not honoured");
                                    }
                                prop_assert_eq!(a.free(), free_before - 1);
                            }
                            Err(e) => {
                                prop_assert_eq!(free_before, 0);
                                prop_assert_eq!(e.size, pool.size());
                            }
                        }
                    }
                    Op::Release(v) => {
                        let was = a.release(Ipv4Addr::from(*v));
                        prop_assert_eq!(was, held.remove(v) | excluded.remove(v));
                    }
                    Op::Exclude(v) => {
                        if a.exclude(Ipv4Addr::from(*v)) && !held.contains(v) {
                            excluded.insert(*v);
                        }
                    }
                }
                prop_assert_eq!(a.taken(), (held.len() + excluded.len()) as u64);
            }
        }

        #[test]
        fn allocator_is_deterministic(pool in arb_pool(), ops in arb_ops()) {
            prop_assert_eq!(run(&pool, &ops), run(&pool, &ops));
        }

        #[test]
        fn release_then_allocate_round_trips(pool in arb_pool(), n in 1usize..40, pick in any::<prop::sample::Index>()) {
            let mut a = Allocator::new(pool.clone());
            let got: Vec<Ipv4Addr> = (0..n).filter_map(|_| a.allocate(None).ok()).collect();
            prop_assume!(!got.is_empty());
            let x = *pick.get(&got);
            prop_assert!(a.release(x));
            // Lowest free first: the released address is the only hole, so it comes back.
            prop_assert_eq!(a.allocate(None), Ok(x));
            prop_assert!(a.release(x));
            prop_assert_eq!(a.allocate(Some(x)), Ok(x));
        }

        #[test]
        fn pool_membership_matches_its_ranges(entries in prop::collection::vec((any::<u32>(), 0u32..1000), 0..8), probe in any::<u32>()) {
            let ranges: Vec<IpRange> = entries.iter()
                .map(|&(s, l)| IpRange { start: s, end: s.saturating_add(l) })
                .collect();
            let pool = Pool::new(ranges.iter().copied());
            let probe = Ipv4Addr::from(probe);
            prop_assert_eq!(pool.contains(probe), ranges.iter().any(|r| r.contains(probe)));
            for w in pool.ranges().windows(2) {
                prop_assert!(u64::from(w[0].end) + 1 < u64::from(w[1].start), "not merged");
            }
        }

        #[test]
        fn a_pool_without_another_keeps_exactly_the_addresses_not_in_it(
            a in prop::collection::vec((any::<u32>(), 0u32..300), 0..6),
            b in prop::collection::vec((any::<u32>(), 0u32..300), 0..6),
            probes in prop::collection::vec(any::<u32>(), 0..40),
        ) {
            let pool = |v: &[(u32, u32)]| Pool::new(v.iter().map(|&(s, l)| IpRange { start: s, end: s.saturating_add(l) }));
            let (pa, pb) = (pool(&a), pool(&b));
            let d = pa.without(&pb);
            // Near every edge, and random probes.
            let edges = pa.ranges().iter().chain(pb.ranges()).flat_map(|r| {
                [r.start.saturating_sub(1), r.start, r.end, r.end.saturating_add(1)]
            });
            for v in edges.chain(probes) {
                let ip = Ipv4Addr::from(v);
                prop_assert_eq!(d.contains(ip), pa.contains(ip) && !pb.contains(ip), "{}", ip);
            }
            prop_assert_eq!(Pool::new(d.ranges().iter().copied()), d.clone(), "not merged");
            let inter: u64 = pa.size() - d.size();
            prop_assert!(inter <= pb.size());
        }

        #[test]
        fn entry_parser_never_panics(s in "\\PC{0,64}") {
            let _ = s.parse::<IpRange>();
        }

        #[test]
        fn entry_parser_round_trips(a in any::<u32>(), len in 0u32..5000) {
            let r = IpRange { start: a, end: a.saturating_add(len) };
            prop_assert_eq!(r.to_string().parse::<IpRange>(), Ok(r));
        }
    }
}
