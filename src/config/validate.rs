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
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Every problem found in a spec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Invalid {
    pub errors: Vec<FieldError>,
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
    pub fn summary(&self, max: usize) -> String {
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
    pub subnet: Ipv4Network,
    pub gateway: Ipv4Addr,
    pub parent: String,
    pub ip_range: Option<Ipv4Network>,
}

/// A validated service with its parsed pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub name: String,
    pub network: String,
    /// The entries as written, parsed, in order.
    pub entries: Vec<IpRange>,
    /// The same addresses, merged.
    pub pool: Pool,
    pub ingress: IngressMode,
}

/// A spec that passed validation.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    pub networks: Vec<Network>,
    pub services: Vec<Service>,
    pub endpoint: Option<EndpointSpec>,
    pub deletion_policy: DeletionPolicy,
}

impl Desired {
    pub fn network(&self, name: &str) -> Option<&Network> {
        self.networks.iter().find(|n| n.name == name)
    }

    /// The spec in canonical form: trimmed addresses, ranges written
    /// `first-last`, single addresses alone, defaults filled in.
    pub fn to_spec(&self) -> MacvlanBindingSpec {
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
    let d = c.dialect;
    if spec.networks.len() > limits::MAX_NETWORKS {
        let field = c.path(format_args!("networks"));
        c.push(
            field,
            format!(
                "{} networks; at most {} are allowed",
                spec.networks.len(),
                limits::MAX_NETWORKS
            ),
        );
    }
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut gateways: HashMap<Ipv4Addr, usize> = HashMap::new();
    let mut parents: HashMap<&str, usize> = HashMap::new();
    let mut out: Vec<Option<Network>> = Vec::with_capacity(spec.networks.len());
    for (i, n) in spec.networks.iter().enumerate() {
        let at = |c: &Collector, key: &str| c.path(format_args!("networks[{i}].{key}"));
        let field = at(c, "name");
        let mut ok = check_name(
            c,
            field.clone(),
            &n.name,
            limits::MAX_NETWORK_NAME_LEN,
            false,
        );
        if ok && RESERVED_NETWORK_NAMES.contains(&n.name.as_str()) {
            c.push(
                field.clone(),
                format!(
                    "{} is reserved by Docker; choose another name",
                    shown(&n.name)
                ),
            );
            ok = false;
        }
        if let Some(prev) = names.insert(&n.name, i) {
            c.push(
                field,
                format!(
                    "duplicate network name {} (also networks[{prev}])",
                    shown(&n.name)
                ),
            );
            ok = false;
        }

        let field = at(c, "subnet");
        let subnet = parse_cidr(c, &field, &n.subnet);
        if let Some(net) = subnet
            && net.prefix() > 30
        {
            c.push(
                field,
                format!(
                    "/{} leaves no room for containers; use /30 or larger",
                    net.prefix()
                ),
            );
            ok = false;
        }

        let field = at(c, "gateway");
        let gateway = parse_v4(c, &field, "address", &n.gateway);
        if let (Some(net), Some(gw)) = (subnet, gateway) {
            if !net.contains(gw) {
                c.push(field.clone(), format!("{gw} is outside the subnet {net}"));
                ok = false;
            } else if let Some(what) = broadcast_or_network(&net, gw) {
                c.push(field.clone(), format!("{gw} is {what} of {net}"));
                ok = false;
            }
        }
        if let Some(gw) = gateway
            && let Some(prev) = gateways.insert(gw, i)
        {
            c.push(
                    field,
                    format!("gateway {gw} is also the gateway of networks[{prev}]: Docker allows one macvlan network per gateway"),
                );
            ok = false;
        }

        let field = at(c, "parent");
        let p = &n.parent;
        if p.is_empty() {
            c.push(
                field,
                "must not be empty: name the host interface, e.g. eth1 or eth1.101",
            );
            ok = false;
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
            ok = false;
        } else if let Some(prev) = parents.insert(p, i) {
            c.push(
                field,
                format!(
                    "{} is also the parent of networks[{prev}]: Docker allows one macvlan network per parent interface (use a VLAN sub-interface such as {p}.101)",
                    shown(p)
                ),
            );
            ok = false;
        }

        let ip_range = match &n.ip_range {
            None => None,
            Some(r) => {
                let field = at(c, d.key("ipRange"));
                let parsed = parse_cidr(c, &field, r);
                if let (Some(net), Some(rng)) = (subnet, parsed)
                    && !(net.contains(rng.network()) && net.prefix() <= rng.prefix())
                {
                    c.push(field, format!("{rng} is not inside the subnet {net}"));
                    ok = false;
                }
                if parsed.is_none() {
                    ok = false;
                }
                parsed
            }
        };

        out.push(match (ok, subnet, gateway) {
            (true, Some(subnet), Some(gateway)) => Some(Network {
                name: n.name.clone(),
                subnet,
                gateway,
                parent: n.parent.clone(),
                ip_range,
            }),
            _ => None,
        });
    }

    // Docker refuses overlapping subnets in its local address space.
    let mut subnets: Vec<(usize, Ipv4Network)> = out
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
    out
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
    let d = c.dialect;
    if spec.services.len() > limits::MAX_SERVICES {
        let field = c.path(format_args!("services"));
        c.push(
            field,
            format!(
                "{} services; at most {} are allowed",
                spec.services.len(),
                limits::MAX_SERVICES
            ),
        );
    }
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
        let field = c.path(format_args!("services[{i}].name"));
        let mut ok = check_name(c, field.clone(), &s.name, limits::MAX_NAME_LEN, true);
        if let Some(prev) = names.insert(&s.name, i) {
            c.push(
                field,
                format!(
                    "duplicate service {} (also services[{prev}])",
                    shown(&s.name)
                ),
            );
            ok = false;
        }

        let field = c.path(format_args!("services[{i}].network"));
        let net_idx = by_name.get(s.network.as_str()).copied();
        let network = match net_idx {
            None => {
                let known: Vec<&str> = spec.networks.iter().map(|n| n.name.as_str()).collect();
                c.push(
                    field,
                    format!(
                        "{} is not defined in networks (defined: {})",
                        shown(&s.network),
                        if known.is_empty() {
                            "none".to_owned()
                        } else {
                            known.join(", ")
                        }
                    ),
                );
                ok = false;
                None
            }
            Some(idx) => networks.get(idx).and_then(Option::as_ref),
        };

        let pool_key = d.key("ipPool");
        if s.ip_pool.is_empty() {
            let field = c.path(format_args!("services[{i}].{pool_key}"));
            c.push(field, "is empty: list the addresses this service may use");
            ok = false;
        }
        if s.ip_pool.len() > limits::MAX_POOL_ENTRIES {
            let field = c.path(format_args!("services[{i}].{pool_key}"));
            c.push(
                field,
                format!(
                    "{} entries; at most {} are allowed (use ranges \"first-last\")",
                    s.ip_pool.len(),
                    limits::MAX_POOL_ENTRIES
                ),
            );
            ok = false;
        }
        let mut entries = Vec::with_capacity(s.ip_pool.len());
        for (j, e) in s.ip_pool.iter().enumerate() {
            let field = c.path(format_args!("services[{i}].{pool_key}[{j}]"));
            let range = match e.0.parse::<IpRange>() {
                Ok(r) => r,
                Err(err) => {
                    let msg = match err {
                        // For a range, say which half is wrong.
                        EntryError::NotAnAddress(_) if e.0.contains('-') => format!(
                            "{} is not an IPv4 address or range \"first-last\": {err}",
                            shown(&e.0)
                        ),
                        EntryError::NotAnAddress(_) | EntryError::Empty => format!(
                            "{} is not an IPv4 address or range \"first-last\"",
                            shown(&e.0)
                        ),
                        _ => err.to_string(),
                    };
                    c.push(field, msg);
                    ok = false;
                    continue;
                }
            };
            if let Some(net) = network {
                let inside = net.subnet.contains(range.start()) && net.subnet.contains(range.end());
                if !inside {
                    c.push(
                        field.clone(),
                        format!(
                            "{range} is not inside the subnet {} of network {}",
                            net.subnet,
                            shown(&net.name)
                        ),
                    );
                    ok = false;
                } else if range.contains(net.gateway) {
                    c.push(
                        field.clone(),
                        format!("{range} includes the gateway {}", net.gateway),
                    );
                    ok = false;
                } else {
                    for special in [net.subnet.network(), net.subnet.broadcast()] {
                        if range.contains(special)
                            && let Some(what) = broadcast_or_network(&net.subnet, special)
                        {
                            c.push(field.clone(), format!("{range} includes {what} {special}"));
                            ok = false;
                        }
                    }
                }
            }
            if let Some(idx) = net_idx {
                placed.entry(idx).or_default().push(Placed {
                    range,
                    service: i,
                    entry: j,
                });
            }
            entries.push(range);
        }

        out.push(match (ok, network) {
            (true, Some(net)) => Some(Service {
                name: s.name.clone(),
                network: net.name.clone(),
                pool: Pool::new(entries.iter().copied()),
                entries,
                ingress: s.ingress,
            }),
            _ => None,
        });
    }

    // Sweep each network's entries in address order: an entry that starts
    // before the furthest end seen so far overlaps the entry owning that end.
    for (_, mut list) in placed {
        list.sort_by_key(|p| (p.range.start(), p.range.end()));
        let mut reach: Option<&Placed> = None;
        for p in &list {
            if let Some(r) = reach
                && r.range.overlaps(&p.range)
            {
                let field = c.path(format_args!(
                    "services[{}].{}[{}]",
                    p.service,
                    d.key("ipPool"),
                    p.entry
                ));
                let other = if r.service == p.service {
                    format!("entry [{}] of the same pool", r.entry)
                } else {
                    format!(
                        "services[{}].{}[{}] (service {})",
                        r.service,
                        d.key("ipPool"),
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
    out
}

/// Checks a spec and returns its parsed form, or every problem found.
pub fn validate(spec: &MacvlanBindingSpec, dialect: Dialect) -> Result<Desired, Invalid> {
    let mut c = Collector {
        dialect,
        errors: Vec::new(),
    };
    let networks = validate_networks(&mut c, spec);
    let services = validate_services(&mut c, spec, &networks);
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
    })
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
    if ep.kind == EndpointKind::Dce && (!ep.node_urls.is_empty() || ep.node_port.is_some()) {
        let field = c.path(format_args!("endpoint"));
        c.push(field, "nodeUrls and nodePort apply to kind Docker only; DCE reaches nodes through its own proxy");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{NetworkSpec, PoolEntry, ServiceSpec};

    fn net(name: &str, subnet: &str, gateway: &str) -> NetworkSpec {
        NetworkSpec {
            name: name.into(),
            subnet: subnet.into(),
            gateway: gateway.into(),
            // One macvlan network per parent: derive a distinct one.
            parent: format!("eth{}", subnet.split('.').next().unwrap_or("1")),
            ip_range: None,
        }
    }

    fn svc(name: &str, network: &str, pool: &[&str]) -> ServiceSpec {
        ServiceSpec {
            name: name.into(),
            network: network.into(),
            ip_pool: pool.iter().map(|s| PoolEntry::from(*s)).collect(),
            ingress: IngressMode::Keep,
        }
    }

    fn good() -> MacvlanBindingSpec {
        MacvlanBindingSpec {
            networks: vec![net("macvlan", "192.168.8.0/24", "192.168.8.1")],
            services: vec![svc(
                "2048",
                "macvlan",
                &["192.168.8.136-192.168.8.137", "192.168.8.139"],
            )],
            ..Default::default()
        }
    }

    /// Validates `spec` and returns the single error's field and message.
    fn one_error(spec: &MacvlanBindingSpec) -> (String, String) {
        let err = validate(spec, Dialect::Manifest).expect_err("should be invalid");
        assert_eq!(err.errors.len(), 1, "expected one error, got {err}");
        let e = &err.errors[0];
        (e.field.clone(), e.message.clone())
    }

    #[test]
    fn the_manual_example_is_valid() {
        let d = validate(&good(), Dialect::Manifest).unwrap();
        assert_eq!(d.services[0].pool.size(), 3);
        assert_eq!(d.networks[0].gateway, Ipv4Addr::new(192, 168, 8, 1));
    }

    #[test]
    fn subnet_must_be_an_ipv4_cidr() {
        let mut s = good();
        s.networks[0].subnet = "192.168.8.0".into();
        let (f, m) = one_error(&s);
        assert_eq!(f, "spec.networks[0].subnet");
        assert!(m.contains("CIDR"), "{m}");
        s.networks[0].subnet = "192.168.8.0/33".into();
        assert_eq!(one_error(&s).0, "spec.networks[0].subnet");
        s.networks[0].subnet = "192.168.8.5/24".into();
        let (f, m) = one_error(&s);
        assert_eq!(f, "spec.networks[0].subnet");
        assert!(m.contains("did you mean 192.168.8.0/24"), "{m}");
        s.networks[0].subnet = "192.168.8.0/31".into();
        s.networks[0].gateway = "192.168.8.1".into();
        s.services.clear();
        assert!(one_error(&s).1.contains("no room"));
    }

    #[test]
    fn ipv6_is_refused_as_not_supported() {
        let mut s = good();
        s.networks[0].subnet = "fd00::/64".into();
        s.networks[0].gateway = "fd00::1".into();
        s.services.clear();
        let err = validate(&s, Dialect::Manifest).unwrap_err();
        assert_eq!(err.errors.len(), 2);
        for e in &err.errors {
            assert!(e.message.contains("IPv6 is not supported yet"), "{e}");
        }
        let mut s = good();
        s.services[0].ip_pool = vec!["fd00::10".into()];
        let (f, m) = one_error(&s);
        assert_eq!(f, "spec.services[0].ipPool[0]");
        assert!(m.contains("IPv6 is not supported yet"), "{m}");
    }

    #[test]
    fn gateway_must_parse_and_lie_inside_the_subnet() {
        let mut s = good();
        s.networks[0].gateway = "192.168.9.1".into();
        let (f, m) = one_error(&s);
        assert_eq!(f, "spec.networks[0].gateway");
        assert!(m.contains("outside the subnet 192.168.8.0/24"), "{m}");
        s.networks[0].gateway = "gateway".into();
        assert!(one_error(&s).1.contains("not an IPv4 address"));
        s.networks[0].gateway = "192.168.8.255".into();
        assert!(one_error(&s).1.contains("broadcast"));
    }

    #[test]
    fn ip_range_must_lie_inside_the_subnet() {
        let mut s = good();
        s.networks[0].ip_range = Some("192.168.8.128/25".into());
        assert!(validate(&s, Dialect::Manifest).is_ok());
        s.networks[0].ip_range = Some("192.168.0.0/16".into());
        let (f, m) = one_error(&s);
        assert_eq!(f, "spec.networks[0].ipRange");
        assert!(m.contains("not inside the subnet"), "{m}");
        let err = validate(&s, Dialect::Legacy).unwrap_err();
        assert_eq!(err.errors[0].field, "networks[0].ip_range");
    }

    #[test]
    fn network_names_are_unique_and_valid() {
        let mut s = good();
        s.networks.push(net("macvlan", "10.0.0.0/24", "10.0.0.1"));
        let (f, m) = one_error(&s);
        assert_eq!(f, "spec.networks[1].name");
        assert!(
            m.contains("duplicate network name \"macvlan\" (also networks[0])"),
            "{m}"
        );
        let mut s = good();
        s.networks[0].name = "bad name".into();
        s.services.clear();
        assert_eq!(one_error(&s).0, "spec.networks[0].name");
        s.networks[0].name = "ingress".into();
        assert!(one_error(&s).1.contains("reserved"));
        s.networks[0].name = "x".repeat(10_000);
        let (_, m) = one_error(&s);
        assert!(m.contains("10000 characters") && m.len() < 200, "{m}");
    }

    #[test]
    fn parent_must_be_a_plausible_interface() {
        let mut s = good();
        s.networks[0].parent = "eth1.101".into();
        assert!(validate(&s, Dialect::Manifest).is_ok());
        for bad in ["", "eth 1", "averyveryverylongname", "eth1/2", ".."] {
            s.networks[0].parent = bad.into();
            assert_eq!(one_error(&s).0, "spec.networks[0].parent", "{bad:?}");
        }
    }

    #[test]
    fn one_macvlan_network_per_gateway() {
        let mut s = good();
        s.networks.push(net("other", "10.0.0.0/24", "10.0.0.1"));
        s.networks[1].parent = "eth2".into();
        s.networks[1].gateway = "192.168.8.1".into();
        let err = validate(&s, Dialect::Manifest).unwrap_err();
        assert!(
            err.errors
                .iter()
                .any(|e| e.field == "spec.networks[1].gateway"
                    && e.message.contains("one macvlan network per gateway")),
            "{err}"
        );
    }

    #[test]
    fn subnets_must_not_overlap() {
        let mut s = good();
        s.networks
            .push(net("other", "192.168.8.0/25", "192.168.8.2"));
        s.networks[1].parent = "eth2".into();
        let err = validate(&s, Dialect::Manifest).unwrap_err();
        assert!(
            err.errors.iter().any(|e| e.message.contains("overlaps")),
            "{err}"
        );
    }

    #[test]
    fn services_reference_defined_networks_and_are_unique() {
        let mut s = good();
        s.services[0].network = "nope".into();
        let (f, m) = one_error(&s);
        assert_eq!(f, "spec.services[0].network");
        assert!(
            m.contains("not defined in networks (defined: macvlan)"),
            "{m}"
        );
        let mut s = good();
        s.services.push(svc("2048", "macvlan", &["192.168.8.150"]));
        let (f, m) = one_error(&s);
        assert_eq!(f, "spec.services[1].name");
        assert!(m.contains("duplicate service"), "{m}");
        let mut s = good();
        s.services[0].name = "my.service".into();
        assert!(one_error(&s).1.contains("swarm"));
    }

    #[test]
    fn pool_entries_parse_and_are_ordered() {
        let mut s = good();
        s.services[0].ip_pool = vec!["192.168.8.140-192.168.8.130".into()];
        let (f, m) = one_error(&s);
        assert_eq!(f, "spec.services[0].ipPool[0]");
        assert!(m.contains("reversed"), "{m}");
        s.services[0].ip_pool = vec!["hello".into()];
        assert!(one_error(&s).1.contains("not an IPv4 address or range"));
        s.services[0].ip_pool = vec![];
        assert!(one_error(&s).1.contains("is empty"));
        s.services[0].ip_pool = vec!["192.168.8.0/28".into()];
        assert!(one_error(&s).1.contains("CIDR notation is not supported"));
    }

    #[test]
    fn pool_entries_stay_inside_the_subnet_and_off_special_addresses() {
        let mut s = good();
        s.services[0].ip_pool = vec!["192.168.9.10".into()];
        assert!(one_error(&s).1.contains("not inside the subnet"));
        s.services[0].ip_pool = vec!["192.168.8.250-192.168.9.2".into()];
        assert!(one_error(&s).1.contains("not inside the subnet"));
        s.services[0].ip_pool = vec!["192.168.8.1-192.168.8.5".into()];
        assert!(one_error(&s).1.contains("includes the gateway"));
        s.services[0].ip_pool = vec!["192.168.8.0-192.168.8.0".into()];
        assert!(one_error(&s).1.contains("network address"));
        s.services[0].ip_pool = vec!["192.168.8.250-192.168.8.255".into()];
        assert!(one_error(&s).1.contains("broadcast address"));
    }

    #[test]
    fn pools_must_not_overlap_within_or_across_services() {
        let mut s = good();
        s.services[0].ip_pool = vec!["192.168.8.10-192.168.8.20".into(), "192.168.8.20".into()];
        let (f, m) = one_error(&s);
        assert_eq!(f, "spec.services[0].ipPool[1]");
        assert!(m.contains("same pool"), "{m}");
        let mut s = good();
        s.services
            .push(svc("web", "macvlan", &["192.168.8.100-192.168.8.137"]));
        let err = validate(&s, Dialect::Manifest).unwrap_err();
        assert_eq!(err.errors.len(), 1, "{err}");
        assert!(err.errors[0].message.contains("(service \""), "{err}");
        // The same addresses on a different network are fine.
        let mut s = good();
        s.networks.push(net("other", "10.0.0.0/24", "10.0.0.1"));
        s.services
            .push(svc("web", "other", &["10.0.0.10-10.0.0.20"]));
        assert!(validate(&s, Dialect::Manifest).is_ok());
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let mut s = good();
        s.networks[0].gateway = "10.0.0.1".into();
        s.networks[0].parent = String::new();
        s.services[0].ip_pool = vec!["nope".into(), "192.168.8.7".into(), "192.168.8.7".into()];
        let err = validate(&s, Dialect::Manifest).unwrap_err();
        let fields: Vec<&str> = err.errors.iter().map(|e| e.field.as_str()).collect();
        assert!(fields.contains(&"spec.networks[0].gateway"), "{err}");
        assert!(fields.contains(&"spec.networks[0].parent"), "{err}");
        assert!(fields.contains(&"spec.services[0].ipPool[0]"), "{err}");
        assert!(fields.contains(&"spec.services[0].ipPool[2]"), "{err}");
    }

    #[test]
    fn huge_pools_are_cheap() {
        let mut s = good();
        s.networks[0] = net("big", "10.0.0.0/8", "10.0.0.1");
        s.services[0] = svc("big", "big", &["10.0.0.2-10.255.255.254"]);
        let d = validate(&s, Dialect::Manifest).unwrap();
        assert_eq!(d.services[0].pool.size(), (1 << 24) - 3);
        // Thousands of entries are swept, not compared pairwise.
        s.services[0].ip_pool = (0..4096u32)
            .map(|i| PoolEntry(Ipv4Addr::from(0x0a01_0000 + i * 2).to_string()))
            .collect();
        assert!(validate(&s, Dialect::Manifest).is_ok());
        s.services[0].ip_pool.push("10.2.0.0".into());
        assert!(one_error(&s).1.contains("at most 4096"));
    }

    #[test]
    fn endpoint_urls_carry_no_credentials() {
        use crate::crd::{EndpointKind, EndpointSpec};
        let mut s = good();
        s.endpoint = Some(EndpointSpec {
            kind: EndpointKind::Dce,
            url: "https://admin:secret@dce.example".into(),
            secret_ref: None,
            insecure_skip_tls_verify: false,
            dce_node_prefix: None,
            node_port: None,
            node_urls: Default::default(),
        });
        let (f, m) = one_error(&s);
        assert_eq!(f, "spec.endpoint.url");
        assert!(
            m.contains("must not carry credentials") && !m.contains("secret@"),
            "{m}"
        );
    }
}
