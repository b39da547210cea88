//! The one validator: CLI, operator and tests all call [`validate`].
//!
//! It reports every problem at once, each with the field path in the
//! dialect the user wrote (`spec.services[0].ipPool[1]` in a manifest,
//! `services[0].ip_pool[1]` in a legacy conf.json), and turns a spec into
//! a [`Desired`] whose addresses are parsed and checked, so nothing
//! downstream parses again.

use crate::crd::{DeletionPolicy, EndpointSpec, IngressMode, MacvlanBindingSpec, limits};
use crate::pool::{EntryError, IpRange, Pool, shown};
use ipnetwork::Ipv4Network;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::Ipv4Addr;

/// Which spelling field paths use in messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// A MacvlanBinding manifest: `spec.networks[0].ipRange`.
    Manifest,
    /// mvconf's conf.json: `networks[0].ip_range`.
    Legacy,
}

impl Dialect {
    fn root(self) -> &'static str {
        match self {
            Dialect::Manifest => "spec.",
            Dialect::Legacy => "",
        }
    }

    fn key(self, camel: &'static str) -> &'static str {
        match (self, camel) {
            (Dialect::Legacy, "ipRange") => "ip_range",
            (Dialect::Legacy, "ipPool") => "ip_pool",
            _ => camel,
        }
    }
}

/// One problem: where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FieldError {
    pub(crate) field: String,
    pub(crate) message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Every problem found in a spec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Invalid {
    pub(crate) errors: Vec<FieldError>,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.errors.len();
        write!(
            f,
            "invalid configuration ({n} problem{}):",
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.errors {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

impl Invalid {
    /// The messages on one line each, for a status condition.
    pub(crate) fn summary(&self, max: usize) -> String {
        let mut out: Vec<String> = self
            .errors
            .iter()
            .take(max)
            .map(ToString::to_string)
            .collect();
        if self.errors.len() > max {
            out.push(format!("and {} more", self.errors.len() - max));
        }
        out.join("; ")
    }
}

/// A validated macvlan network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    pub name: String,
    pub(crate) subnet: Ipv4Network,
    pub(crate) gateway: Ipv4Addr,
    pub(crate) parent: String,
    pub(crate) ip_range: Option<Ipv4Network>,
    /// The entries of `reserved` as written, parsed, in order.
    pub(crate) reserved_entries: Vec<IpRange>,
    /// Addresses nobody may hand out, merged.
    pub(crate) reserved: Pool,
    /// Free addresses are ARP-probed before they are first handed out.
    pub(crate) arp_probe: bool,
    /// Without an `ipRange`: the one mvconf gives Docker's own auto-assign
    /// when it creates the network, a block of the subnet outside every
    /// pool and reserved address (`None`: no such block).
    pub(crate) auto_range: Option<Ipv4Network>,
}

impl Network {
    /// The range Docker's auto-assign uses on a network mvconf creates.
    pub(crate) fn docker_range(&self) -> Option<Ipv4Network> {
        self.ip_range.or(self.auto_range)
    }
}

/// A validated service with its parsed pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub name: String,
    pub(crate) network: String,
    /// The entries as written, parsed, in order.
    pub(crate) entries: Vec<IpRange>,
    /// The addresses it may hand out: the entries merged, less what its
    /// network reserves.
    pub pool: Pool,
    /// The addresses of its entries that its network reserves (skipped).
    pub(crate) skipped: Pool,
    pub(crate) ingress: IngressMode,
}

/// A spec that passed validation.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    pub(crate) networks: Vec<Network>,
    pub services: Vec<Service>,
    pub(crate) endpoint: Option<EndpointSpec>,
    pub(crate) deletion_policy: DeletionPolicy,
    /// What is valid but unwise (a conf.json's `ip_range` over a pool),
    /// for the CLI to warn about.
    pub(crate) notes: Vec<String>,
}

impl Desired {
    /// The same spec without these services.
    pub(crate) fn without_services(&self, names: &std::collections::BTreeSet<&str>) -> Desired {
        Desired {
            networks: self.networks.clone(),
            services: self
                .services
                .iter()
                .filter(|s| !names.contains(s.name.as_str()))
                .cloned()
                .collect(),
            endpoint: self.endpoint.clone(),
            deletion_policy: self.deletion_policy,
            notes: self.notes.clone(),
        }
    }

    /// The spec in canonical form: trimmed addresses, ranges written
    /// `first-last`, single addresses alone, defaults filled in.
    pub(crate) fn to_spec(&self) -> MacvlanBindingSpec {
        use crate::crd::{NetworkSpec, PoolEntry, ServiceSpec};
        MacvlanBindingSpec {
            networks: self
                .networks
                .iter()
                .map(|n| NetworkSpec {
                    name: n.name.clone(),
                    subnet: n.subnet.to_string(),
                    gateway: n.gateway.to_string(),
                    parent: n.parent.clone(),
                    ip_range: n.ip_range.map(|r| r.to_string()),
                    reserved: n
                        .reserved_entries
                        .iter()
                        .map(|e| PoolEntry(e.to_string()))
                        .collect(),
                    arp_probe: (!n.arp_probe).then_some(false),
                })
                .collect(),
            services: self
                .services
                .iter()
                .map(|s| ServiceSpec {
                    name: s.name.clone(),
                    network: s.network.clone(),
                    ip_pool: s.entries.iter().map(|e| PoolEntry(e.to_string())).collect(),
                    ingress: s.ingress,
                })
                .collect(),
            endpoint: self.endpoint.clone(),
            deletion_policy: self.deletion_policy,
        }
    }
}

/// Names Docker reserves or that mean something else to swarm.
const RESERVED_NETWORK_NAMES: &[&str] = &["bridge", "host", "none", "ingress", "docker_gwbridge"];

struct Collector {
    dialect: Dialect,
    errors: Vec<FieldError>,
}

impl Collector {
    fn path(&self, parts: fmt::Arguments<'_>) -> String {
        format!("{}{}", self.dialect.root(), parts)
    }

    fn push(&mut self, field: String, message: impl Into<String>) {
        self.errors.push(FieldError {
            field,
            message: message.into(),
        });
    }
}

fn check_name(c: &mut Collector, field: String, name: &str, max: usize, swarm_style: bool) -> bool {
    let len = name.chars().count();
    let ok_chars = |ch: char, first: bool| {
        ch.is_ascii_alphanumeric() || (!first && matches!(ch, '-' | '_' | '.'))
    };
    if name.is_empty() {
        c.push(field, "must not be empty");
        return false;
    }
    if len > max {
        c.push(
            field,
            format!(
                "{} is {len} characters long; at most {max} are allowed",
                shown(name)
            ),
        );
        return false;
    }
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|ch| ok_chars(ch, true));
    let rest_ok = chars.all(|ch| ok_chars(ch, false) && !(swarm_style && ch == '.'));
    let end_ok = !swarm_style
        || name
            .chars()
            .last()
            .is_some_and(|ch| ch.is_ascii_alphanumeric());
    if !(first_ok && rest_ok && end_ok) {
        let allowed = if swarm_style {
            "letters, digits, '-' and '_', starting and ending with a letter or digit (Docker swarm's rule)"
        } else {
            "letters, digits, '-', '_' and '.', starting with a letter or digit"
        };
        c.push(
            field,
            format!("{} is not a valid name: use {allowed}", shown(name)),
        );
        return false;
    }
    true
}

fn parse_v4(c: &mut Collector, field: &str, what: &str, s: &str) -> Option<Ipv4Addr> {
    match s.trim().parse::<Ipv4Addr>() {
        Ok(ip) => Some(ip),
        Err(_) if s.contains(':') => {
            c.push(
                field.to_owned(),
                format!(
                    "IPv6 is not supported yet: {} (mvconf manages IPv4 only)",
                    shown(s)
                ),
            );
            None
        }
        Err(_) => {
            c.push(
                field.to_owned(),
                format!("{} is not an IPv4 {what}", shown(s)),
            );
            None
        }
    }
}

fn parse_cidr(c: &mut Collector, field: &str, s: &str) -> Option<Ipv4Network> {
    let t = s.trim();
    if t.contains(':') {
        c.push(
            field.to_owned(),
            format!(
                "IPv6 is not supported yet: {} (mvconf manages IPv4 only)",
                shown(s)
            ),
        );
        return None;
    }
    let Some((addr, prefix)) = t.split_once('/') else {
        c.push(
            field.to_owned(),
            format!("{} is not in CIDR notation (like 192.168.8.0/24)", shown(s)),
        );
        return None;
    };
    let (Ok(addr), Ok(prefix)) = (addr.parse::<Ipv4Addr>(), prefix.parse::<u8>()) else {
        c.push(
            field.to_owned(),
            format!("{} is not an IPv4 CIDR (like 192.168.8.0/24)", shown(s)),
        );
        return None;
    };
    let Ok(net) = Ipv4Network::new(addr, prefix) else {
        c.push(
            field.to_owned(),
            format!("{}: the prefix length must be at most 32", shown(s)),
        );
        return None;
    };
    if net.network() != addr {
        c.push(
            field.to_owned(),
            format!(
                "{} has host bits set; did you mean {}/{prefix}?",
                shown(s),
                net.network()
            ),
        );
        return None;
    }
    Some(net)
}

fn broadcast_or_network(net: &Ipv4Network, ip: Ipv4Addr) -> Option<&'static str> {
    if net.prefix() >= 31 {
        None
    } else if ip == net.network() {
        Some("the network address")
    } else if ip == net.broadcast() {
        Some("the broadcast address")
    } else {
        None
    }
}

fn validate_networks(c: &mut Collector, spec: &MacvlanBindingSpec) -> Vec<Option<Network>> {
    check_list_len(c, "networks", spec.networks.len(), limits::MAX_NETWORKS);
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut gateways: HashMap<Ipv4Addr, usize> = HashMap::new();
    let mut parents: HashMap<&str, usize> = HashMap::new();
    let mut out: Vec<Option<Network>> = Vec::with_capacity(spec.networks.len());
    for (i, n) in spec.networks.iter().enumerate() {
        let at = |c: &Collector, key: &str| c.path(format_args!("networks[{i}].{key}"));
        let name_ok = check_network_name(c, &mut names, at(c, "name"), i, &n.name);

        let field = at(c, "subnet");
        let subnet = parse_cidr(c, &field, &n.subnet);
        let room_ok = subnet.is_none_or(|net| check_subnet_room(c, field, net));

        let field = at(c, "gateway");
        let gateway = parse_v4(c, &field, "address", &n.gateway);
        let gateway_ok =
            gateway.is_none_or(|gw| check_gateway(c, &mut gateways, field, i, subnet, gw));

        let parent_ok = check_parent(c, &mut parents, at(c, "parent"), i, &n.parent);

        let ip_range = n.ip_range.as_deref().and_then(|r| {
            let field = at(c, c.dialect.key("ipRange"));
            check_ip_range(c, field, subnet, r)
        });
        // An absent ipRange is fine; one that was written must have passed.
        let range_ok = n.ip_range.is_none() || ip_range.is_some();

        let reserved = check_reserved(c, i, &n.reserved, subnet);

        let ok = name_ok && room_ok && gateway_ok && parent_ok && range_ok;
        out.push(match (ok, subnet, gateway, reserved) {
            (true, Some(subnet), Some(gateway), Some(reserved_entries)) => Some(Network {
                name: n.name.clone(),
                subnet,
                gateway,
                parent: n.parent.clone(),
                ip_range,
                reserved: Pool::new(reserved_entries.iter().copied()),
                reserved_entries,
                arp_probe: n.arp_probe.unwrap_or(true),
                auto_range: None,
            }),
            _ => None,
        });
    }
    check_subnet_overlaps(c, &out);
    out
}

/// Network `i`'s reserved addresses, parsed; `None` when one is unusable.
fn check_reserved(
    c: &mut Collector,
    i: usize,
    reserved: &[crate::crd::PoolEntry],
    subnet: Option<Ipv4Network>,
) -> Option<Vec<IpRange>> {
    let mut ok = true;
    if reserved.len() > limits::MAX_POOL_ENTRIES {
        let field = c.path(format_args!("networks[{i}].reserved"));
        c.push(
            field,
            format!(
                "{} entries; at most {} are allowed (use ranges \"first-last\")",
                reserved.len(),
                limits::MAX_POOL_ENTRIES
            ),
        );
        ok = false;
    }
    let mut out = Vec::with_capacity(reserved.len());
    for (j, e) in reserved.iter().enumerate() {
        let field = c.path(format_args!("networks[{i}].reserved[{j}]"));
        let Some(range) = parse_pool_entry(c, field.clone(), &e.0) else {
            ok = false;
            continue;
        };
        if let Some(net) = subnet
            && !(net.contains(range.start()) && net.contains(range.end()))
        {
            c.push(field, format!("{range} is not inside the subnet {net}"));
            ok = false;
            continue;
        }
        out.push(range);
    }
    ok.then_some(out)
}

fn check_list_len(c: &mut Collector, list: &str, len: usize, max: usize) {
    if len > max {
        let field = c.path(format_args!("{list}"));
        c.push(field, format!("{len} {list}; at most {max} are allowed"));
    }
}

fn check_network_name<'a>(
    c: &mut Collector,
    names: &mut HashMap<&'a str, usize>,
    field: String,
    i: usize,
    name: &'a str,
) -> bool {
    let mut ok = check_name(c, field.clone(), name, limits::MAX_NETWORK_NAME_LEN, false);
    if ok && RESERVED_NETWORK_NAMES.contains(&name) {
        c.push(
            field.clone(),
            format!("{} is reserved by Docker; choose another name", shown(name)),
        );
        ok = false;
    }
    if let Some(prev) = names.insert(name, i) {
        c.push(
            field,
            format!(
                "duplicate network name {} (also networks[{prev}])",
                shown(name)
            ),
        );
        ok = false;
    }
    ok
}

fn check_subnet_room(c: &mut Collector, field: String, net: Ipv4Network) -> bool {
    let prefix = net.prefix();
    if prefix > 30 {
        c.push(
            field,
            format!("/{prefix} leaves no room for containers; use /30 or larger"),
        );
        return false;
    }
    true
}

fn check_gateway(
    c: &mut Collector,
    gateways: &mut HashMap<Ipv4Addr, usize>,
    field: String,
    i: usize,
    subnet: Option<Ipv4Network>,
    gw: Ipv4Addr,
) -> bool {
    let mut ok = true;
    if let Some(net) = subnet {
        if !net.contains(gw) {
            c.push(field.clone(), format!("{gw} is outside the subnet {net}"));
            ok = false;
        } else if let Some(what) = broadcast_or_network(&net, gw) {
            c.push(field.clone(), format!("{gw} is {what} of {net}"));
            ok = false;
        }
    }
    if let Some(prev) = gateways.insert(gw, i) {
        c.push(
            field,
            format!("gateway {gw} is also the gateway of networks[{prev}]: Docker allows one macvlan network per gateway"),
        );
        ok = false;
    }
    ok
}

fn check_parent<'a>(
    c: &mut Collector,
    parents: &mut HashMap<&'a str, usize>,
    field: String,
    i: usize,
    p: &'a str,
) -> bool {
    if p.is_empty() {
        c.push(
            field,
            "must not be empty: name the host interface, e.g. eth1 or eth1.101",
        );
        false
    } else if p.len() > limits::MAX_PARENT_LEN
        || p == "."
        || p == ".."
        || !p
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '.' | '-' | '_' | '@'))
    {
        c.push(
            field,
            format!(
                "{} is not a network interface name (at most {} characters: letters, digits, '.', '-', '_', '@')",
                shown(p),
                limits::MAX_PARENT_LEN
            ),
        );
        false
    } else if let Some(prev) = parents.insert(p, i) {
        c.push(
            field,
            format!(
                "{} is also the parent of networks[{prev}]: Docker allows one macvlan network per parent interface (use a VLAN sub-interface such as {p}.101)",
                shown(p)
            ),
        );
        false
    } else {
        true
    }
}

/// The parsed ipRange, or `None` when it is unusable.
fn check_ip_range(
    c: &mut Collector,
    field: String,
    subnet: Option<Ipv4Network>,
    raw: &str,
) -> Option<Ipv4Network> {
    let rng = parse_cidr(c, &field, raw)?;
    if let Some(net) = subnet
        && !(net.contains(rng.network()) && net.prefix() <= rng.prefix())
    {
        c.push(field, format!("{rng} is not inside the subnet {net}"));
        return None;
    }
    Some(rng)
}

/// Docker refuses overlapping subnets in its local address space.
fn check_subnet_overlaps(c: &mut Collector, networks: &[Option<Network>]) {
    let mut subnets: Vec<(usize, Ipv4Network)> = networks
        .iter()
        .enumerate()
        .filter_map(|(i, n)| n.as_ref().map(|n| (i, n.subnet)))
        .collect();
    subnets.sort_by_key(|(_, n)| (u32::from(n.network()), n.prefix()));
    for w in subnets.windows(2) {
        let ((ia, a), (ib, b)) = (w[0], w[1]);
        if u32::from(b.network()) <= u32::from(a.broadcast()) {
            let field = c.path(format_args!("networks[{ib}].subnet"));
            c.push(
                field,
                format!("{b} overlaps {a} of networks[{ia}]: Docker refuses overlapping subnets"),
            );
        }
    }
}

/// One parsed pool entry, remembered for the overlap sweep.
struct Placed {
    range: IpRange,
    service: usize,
    entry: usize,
}

fn validate_services(
    c: &mut Collector,
    spec: &MacvlanBindingSpec,
    networks: &[Option<Network>],
) -> Vec<Option<Service>> {
    check_list_len(c, "services", spec.services.len(), limits::MAX_SERVICES);
    let by_name: HashMap<&str, usize> = spec
        .networks
        .iter()
        .enumerate()
        .map(|(i, n)| (n.name.as_str(), i))
        .collect();
    let mut names: HashMap<&str, usize> = HashMap::new();
    // Pool entries per network index, for the cross-service overlap check.
    let mut placed: BTreeMap<usize, Vec<Placed>> = BTreeMap::new();
    let mut out: Vec<Option<Service>> = Vec::with_capacity(spec.services.len());
    for (i, s) in spec.services.iter().enumerate() {
        let name_ok = check_service_name(c, &mut names, i, &s.name);

        let net_idx = by_name.get(s.network.as_str()).copied();
        if net_idx.is_none() {
            report_undefined_network(c, spec, i, &s.network);
        }
        // A network that failed its own checks yields no service, silently:
        // its errors are already reported.
        let network = net_idx
            .and_then(|idx| networks.get(idx))
            .and_then(Option::as_ref);

        let placed_here = net_idx.map(|idx| placed.entry(idx).or_default());
        let entries = check_pool(c, i, &s.ip_pool, network, placed_here);

        out.push(match (name_ok, network, entries) {
            (true, Some(net), Some(entries)) => {
                let written = Pool::new(entries.iter().copied());
                let pool = written.without(&net.reserved);
                if pool.size() == 0 {
                    let field = c.path(format_args!("services[{i}].{}", c.dialect.key("ipPool")));
                    let at = net_idx.unwrap_or_default();
                    let reserved = c.path(format_args!("networks[{at}].reserved"));
                    c.push(
                        field,
                        format!(
                            "every address of {written} is reserved on network {} ({reserved}): nothing is left to hand out",
                            shown(&net.name)
                        ),
                    );
                    None
                } else {
                    Some(Service {
                        name: s.name.clone(),
                        network: net.name.clone(),
                        skipped: written.without(&pool),
                        pool,
                        entries,
                        ingress: s.ingress,
                    })
                }
            }
            _ => None,
        });
    }
    check_pool_overlaps(c, spec, placed, &mut out);
    out
}

fn check_service_name<'a>(
    c: &mut Collector,
    names: &mut HashMap<&'a str, usize>,
    i: usize,
    name: &'a str,
) -> bool {
    let field = c.path(format_args!("services[{i}].name"));
    let mut ok = check_name(c, field.clone(), name, limits::MAX_NAME_LEN, true);
    if let Some(prev) = names.insert(name, i) {
        c.push(
            field,
            format!("duplicate service {} (also services[{prev}])", shown(name)),
        );
        ok = false;
    }
    ok
}

fn report_undefined_network(c: &mut Collector, spec: &MacvlanBindingSpec, i: usize, network: &str) {
    let field = c.path(format_args!("services[{i}].network"));
    let known: Vec<&str> = spec.networks.iter().map(|n| n.name.as_str()).collect();
    c.push(
        field,
        format!(
            "{} is not defined in networks (defined: {})",
            shown(network),
            if known.is_empty() && c.dialect == Dialect::Manifest {
                // Without inline networks, a binding names the platform's
                // MacvlanNetworks, which only the operator resolves.
                "none; a binding without networks names MacvlanNetworks, which the operator resolves: `kubectl get mvnet`, and `mvconf audit --binding NS/NAME` reads them".to_owned()
            } else if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            }
        ),
    );
}

/// Checks service `i`'s pool as a whole, then parses each entry and checks
/// it against its network. Every entry that parses is placed for the
/// overlap sweep, even one that does not fit its network, so all its
/// problems are reported at once. `None` when the pool is unusable.
fn check_pool(
    c: &mut Collector,
    i: usize,
    pool: &[crate::crd::PoolEntry],
    network: Option<&Network>,
    mut placed: Option<&mut Vec<Placed>>,
) -> Option<Vec<IpRange>> {
    let pool_key = c.dialect.key("ipPool");
    let field = c.path(format_args!("services[{i}].{pool_key}"));
    let mut ok = true;
    if pool.is_empty() {
        c.push(
            field.clone(),
            "is empty: list the addresses this service may use",
        );
        ok = false;
    }
    if pool.len() > limits::MAX_POOL_ENTRIES {
        c.push(
            field,
            format!(
                "{} entries; at most {} are allowed (use ranges \"first-last\")",
                pool.len(),
                limits::MAX_POOL_ENTRIES
            ),
        );
        ok = false;
    }
    let mut entries = Vec::with_capacity(pool.len());
    for (j, e) in pool.iter().enumerate() {
        let field = c.path(format_args!("services[{i}].{pool_key}[{j}]"));
        let Some(range) = parse_pool_entry(c, field.clone(), &e.0) else {
            ok = false;
            continue;
        };
        if let Some(net) = network
            && !check_entry_fits(c, field, net, range)
        {
            ok = false;
        }
        if let Some(list) = placed.as_deref_mut() {
            list.push(Placed {
                range,
                service: i,
                entry: j,
            });
        }
        entries.push(range);
    }
    ok.then_some(entries)
}

fn parse_pool_entry(c: &mut Collector, field: String, raw: &str) -> Option<IpRange> {
    let err = match raw.parse::<IpRange>() {
        Ok(r) => return Some(r),
        Err(err) => err,
    };
    let msg = match err {
        // For a range, say which half is wrong.
        EntryError::NotAnAddress(_) if raw.contains('-') => format!(
            "{} is not an IPv4 address or range \"first-last\": {err}",
            shown(raw)
        ),
        EntryError::NotAnAddress(_) | EntryError::Empty => format!(
            "{} is not an IPv4 address or range \"first-last\"",
            shown(raw)
        ),
        _ => err.to_string(),
    };
    c.push(field, msg);
    None
}

/// Containers cannot take the gateway, network or broadcast address.
fn check_entry_fits(c: &mut Collector, field: String, net: &Network, range: IpRange) -> bool {
    let inside = net.subnet.contains(range.start()) && net.subnet.contains(range.end());
    if !inside {
        c.push(
            field,
            format!(
                "{range} is not inside the subnet {} of network {}",
                net.subnet,
                shown(&net.name)
            ),
        );
        return false;
    }
    if range.contains(net.gateway) {
        c.push(
            field,
            format!("{range} includes the gateway {}", net.gateway),
        );
        return false;
    }
    let mut ok = true;
    for special in [net.subnet.network(), net.subnet.broadcast()] {
        if range.contains(special)
            && let Some(what) = broadcast_or_network(&net.subnet, special)
        {
            c.push(field.clone(), format!("{range} includes {what} {special}"));
            ok = false;
        }
    }
    ok
}

/// Sweeps each network's entries in address order: an entry that starts
/// before the furthest end seen so far overlaps the entry owning that end.
fn check_pool_overlaps(
    c: &mut Collector,
    spec: &MacvlanBindingSpec,
    placed: BTreeMap<usize, Vec<Placed>>,
    out: &mut [Option<Service>],
) {
    let pool_key = c.dialect.key("ipPool");
    for (_, mut list) in placed {
        list.sort_by_key(|p| (p.range.start(), p.range.end()));
        let mut reach: Option<&Placed> = None;
        for p in &list {
            if let Some(r) = reach
                && r.range.overlaps(&p.range)
            {
                let field = c.path(format_args!(
                    "services[{}].{pool_key}[{}]",
                    p.service, p.entry
                ));
                let other = if r.service == p.service {
                    format!("entry [{}] of the same pool", r.entry)
                } else {
                    format!(
                        "services[{}].{pool_key}[{}] (service {})",
                        r.service,
                        r.entry,
                        shown(&spec.services[r.service].name)
                    )
                };
                c.push(field, format!("{} overlaps {} {other}", p.range, r.range));
                if let Some(slot) = out.get_mut(p.service) {
                    *slot = None;
                }
            }
            if reach.is_none_or(|r| p.range.end() > r.range.end()) {
                reach = Some(p);
            }
        }
    }
}

/// Checks a spec and returns its parsed form, or every problem found.
pub fn validate(spec: &MacvlanBindingSpec, dialect: Dialect) -> Result<Desired, Invalid> {
    let mut c = Collector {
        dialect,
        errors: Vec::new(),
    };
    let mut networks = validate_networks(&mut c, spec);
    let services = validate_services(&mut c, spec, &networks);
    let notes = check_auto_assign(&mut c, &mut networks, &services);
    if let Some(ep) = &spec.endpoint
        && dialect == Dialect::Manifest
    {
        validate_endpoint(&mut c, ep);
    }
    if !c.errors.is_empty() {
        return Err(Invalid { errors: c.errors });
    }
    Ok(Desired {
        networks: networks.into_iter().flatten().collect(),
        services: services.into_iter().flatten().collect(),
        endpoint: spec.endpoint.clone(),
        deletion_policy: spec.deletion_policy,
        notes,
    })
}

/// Docker's own auto-assign (a container started on the network without
/// `--ip`) must not draw from the pools: Docker's IPAM is per node and knows
/// nothing of them, so it would hand a stranger an address one of our
/// containers holds on another node. A written `ipRange` over a pool is
/// refused in a manifest and a warning in a conf.json (mvconf's users wrote
/// the whole subnet there); without one, mvconf derives a block of the
/// subnet outside every pool and reserved address for the networks it
/// creates.
fn check_auto_assign(
    c: &mut Collector,
    networks: &mut [Option<Network>],
    services: &[Option<Service>],
) -> Vec<String> {
    let mut notes = Vec::new();
    for (i, slot) in networks.iter_mut().enumerate() {
        let Some(net) = slot else { continue };
        let pools: Vec<(&str, &Pool)> = services
            .iter()
            .flatten()
            .filter(|s| s.network == net.name)
            .map(|s| (s.name.as_str(), &s.pool))
            .collect();
        let derived = derive_range(net.subnet, &pools, &net.reserved);
        let Some(range) = net.ip_range else {
            net.auto_range = derived;
            if derived.is_none() && !pools.is_empty() {
                notes.push(format!(
                    "network {}: the pools leave no block of {} for Docker's own auto-assign; a container started on it without --ip may get a pool address (mvconf reports it as a foreign holder)",
                    shown(&net.name),
                    net.subnet
                ));
            }
            continue;
        };
        let written = range_of(range);
        let Some((service, pool)) = pools.iter().find(|(_, p)| p.overlaps(&written)) else {
            continue;
        };
        let fix = match derived {
            Some(d) => format!(
                "use a range outside every pool and reserved address, such as {d}, or leave it out and mvconf derives one"
            ),
            None => "shrink the pools to leave a block of the subnet for it".to_owned(),
        };
        let message = format!(
            "{range} overlaps the pool of service {} ({pool}): Docker's own auto-assign (a container started without --ip) draws from it on each node without knowing the pool, and would hand out addresses our containers hold on other nodes; {fix}",
            shown(service)
        );
        let field = c.path(format_args!("networks[{i}].{}", c.dialect.key("ipRange")));
        match c.dialect {
            Dialect::Manifest => c.push(field, message),
            Dialect::Legacy => notes.push(format!("{field}: {message}")),
        }
    }
    notes
}

fn range_of(net: Ipv4Network) -> IpRange {
    IpRange::new(net.network(), net.broadcast()).unwrap_or_else(|_| IpRange::single(net.network()))
}

/// The largest CIDR block of `subnet` (half of it at most, /30 at least)
/// that holds no address of `pools` or `reserved`, the highest of its
/// size; `None` when none is free.
pub(crate) fn derive_range(
    subnet: Ipv4Network,
    pools: &[(&str, &Pool)],
    reserved: &Pool,
) -> Option<Ipv4Network> {
    let taken = Pool::new(
        pools
            .iter()
            .flat_map(|(_, p)| p.ranges().iter().copied())
            .chain(reserved.ranges().iter().copied()),
    );
    let base = u32::from(subnet.network());
    for prefix in (subnet.prefix() + 1)..=30 {
        let blocks = 1u64 << (prefix - subnet.prefix());
        let size = 1u64 << (32 - prefix);
        for k in (0..blocks).rev() {
            let start = u64::from(base) + k * size;
            let (Ok(first), Ok(last)) = (u32::try_from(start), u32::try_from(start + size - 1))
            else {
                continue;
            };
            let Ok(block) = IpRange::new(Ipv4Addr::from(first), Ipv4Addr::from(last)) else {
                continue;
            };
            if !taken.overlaps(&block) {
                return Ipv4Network::new(Ipv4Addr::from(first), prefix).ok();
            }
        }
    }
    None
}

fn validate_endpoint(c: &mut Collector, ep: &EndpointSpec) {
    use crate::crd::EndpointKind;
    let field = c.path(format_args!("endpoint.url"));
    let scheme_ok = match ep.kind {
        EndpointKind::Dce => ep.url.starts_with("http://") || ep.url.starts_with("https://"),
        EndpointKind::Docker => ["tcp://", "http://", "https://", "unix://"]
            .iter()
            .any(|s| ep.url.starts_with(s)),
    };
    if ep.url.contains('@') {
        // Never echo the URL: it may hold a password.
        c.push(
            field,
            "must not carry credentials: put them in the Secret named by secretRef",
        );
    } else if !scheme_ok {
        let want = match ep.kind {
            EndpointKind::Dce => "http:// or https://",
            EndpointKind::Docker => "tcp://, http://, https:// or unix://",
        };
        c.push(field, format!("{} must start with {want}", shown(&ep.url)));
    }
    for (node, url) in &ep.node_urls {
        let field = c.path(format_args!("endpoint.nodeUrls[{}]", shown(node)));
        if url.contains('@') {
            c.push(
                field,
                "must not carry credentials: put them in the Secret named by secretRef",
            );
        } else if !["tcp://", "http://", "https://"]
            .iter()
            .any(|s| url.starts_with(s))
        {
            // A node is another machine: never a unix socket of the operator's.
            c.push(
                field,
                format!("{} must start with tcp://, http:// or https://", shown(url)),
            );
        }
    }
    if ep.kind == EndpointKind::Dce && (!ep.node_urls.is_empty() || ep.node_port.is_some()) {
        let field = c.path(format_args!("endpoint"));
        c.push(field, "nodeUrls and nodePort apply to kind Docker only; DCE reaches nodes through its own proxy");
    }
}

#[cfg(test)]
mod tests;
