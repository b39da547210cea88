//! Admission of a binding against the platform's grants: pure, so that
//! every refusal is a unit test.
//!
//! A binding either defines its networks (and maybe an endpoint) inline,
//! as every manifest before tenancy did, which only an install with
//! `--inline allow` accepts; or it names MacvlanNetworks, and then each
//! service must fall under a grant of its network for the binding's
//! namespace, with its whole pool inside that grant's ranges (the network's
//! reserved addresses in it are skipped; a pool left with none is refused).

use super::{Grant, MacvlanNetworkSpec, NamespaceSelection, SwarmEndpointSpec};
use crate::config::validate::{Desired, Dialect, FieldError, Invalid, validate};
use crate::crd::{EndpointSpec, MacvlanBindingSpec, NetworkSpec, PoolEntry};
use crate::pool::{IpRange, Pool, shown};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::core::{Selector, SelectorExt};
use std::collections::BTreeMap;
use wildmatch::WildMatch;

/// Whether bindings may define networks and endpoints themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub(crate) enum Inline {
    /// Single-team installs: today's manifests work as they are.
    #[default]
    Allow,
    /// Multi-team installs: networks and endpoints come from the platform's
    /// MacvlanNetworks and SwarmEndpoints only.
    Deny,
}

/// What the platform declared, as the operator's caches hold it.
#[derive(Debug, Default)]
pub(crate) struct Tenancy {
    pub(crate) inline: Inline,
    /// MacvlanNetworks by object name.
    pub(crate) networks: BTreeMap<String, MacvlanNetworkSpec>,
    /// SwarmEndpoints by object name.
    pub(crate) endpoints: BTreeMap<String, SwarmEndpointSpec>,
    /// Labels of every namespace, for selectors.
    pub(crate) namespace_labels: BTreeMap<String, BTreeMap<String, String>>,
}

/// How strictly to admit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    /// Everything: a pass may act on what is admitted.
    Grants,
    /// Only what is needed to find what a binding made (cleanup): a
    /// revoked grant or a switched-off inline mode still lets a deleted
    /// binding undo its own work.
    Resolve,
}

/// Where a binding's swarm is reached.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum EndpointChoice {
    /// The operator's own default endpoint and credentials.
    Default,
    /// The binding's own `spec.endpoint`; its Secret in its namespace.
    Inline(EndpointSpec),
    /// A SwarmEndpoint; its Secret in the operator's namespace.
    Swarm { name: String, spec: EndpointSpec },
}

/// A binding the grants allow, ready for a pass.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Admitted {
    pub(crate) desired: Desired,
    pub(crate) endpoint: EndpointChoice,
    /// The MacvlanNetworks it uses, by object name.
    pub(crate) networks: Vec<String>,
}

fn err(field: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        message: message.into(),
    }
}

fn selected(
    names: &[String],
    selector: Option<&LabelSelector>,
    namespace: &str,
    labels: Option<&BTreeMap<String, String>>,
) -> bool {
    if names.iter().any(|n| n == namespace) {
        return true;
    }
    // A namespace not seen yet has no known labels: only its name counts
    // (else `NotIn` and `DoesNotExist` would select it).
    let (Some(sel), Some(labels)) = (selector, labels) else {
        return false;
    };
    // A selector that does not parse selects nothing.
    let Ok(sel) = Selector::try_from(sel.clone()) else {
        return false;
    };
    sel.matches(labels)
}

impl NamespaceSelection {
    pub(crate) fn selects(&self, namespace: &str, t: &Tenancy) -> bool {
        selected(
            &self.namespaces,
            self.namespace_selector.as_ref(),
            namespace,
            t.namespace_labels.get(namespace),
        )
    }

    /// Names and `selector`, for a printer column.
    pub(crate) fn summary(&self) -> String {
        summary(&self.namespaces, self.namespace_selector.as_ref())
    }
}

pub(crate) fn summary(names: &[String], selector: Option<&LabelSelector>) -> String {
    let mut out: Vec<&str> = names.iter().map(String::as_str).collect();
    match selector {
        Some(s) if s.match_labels.is_none() && s.match_expressions.is_none() => out.push("*"),
        Some(_) => out.push("selector"),
        None => {}
    }
    out.join(",")
}

impl Grant {
    fn selects(&self, namespace: &str, t: &Tenancy) -> bool {
        selected(
            &self.namespaces,
            self.namespace_selector.as_ref(),
            namespace,
            t.namespace_labels.get(namespace),
        )
    }

    fn covers_service(&self, service: &str) -> bool {
        self.services
            .iter()
            .any(|p| WildMatch::new(p).matches(service))
    }

    /// The grant's ranges that parse; a broken one grants nothing.
    pub(crate) fn pool(&self) -> Pool {
        ranges(&self.ranges)
    }
}

pub(crate) fn ranges(entries: &[PoolEntry]) -> Pool {
    Pool::new(entries.iter().filter_map(|e| e.0.parse::<IpRange>().ok()))
}

impl MacvlanNetworkSpec {
    /// The Docker network name: `dockerName`, else the object's name.
    pub(crate) fn docker_name<'a>(&'a self, object: &'a str) -> &'a str {
        self.docker_name.as_deref().unwrap_or(object)
    }

    fn network(&self, object: &str) -> NetworkSpec {
        NetworkSpec {
            name: self.docker_name(object).to_owned(),
            subnet: self.subnet.clone(),
            gateway: self.gateway.clone(),
            parent: self.parent.clone(),
            ip_range: self.ip_range.clone(),
            reserved: self.reserved.clone(),
            arp_probe: self.arp_probe,
        }
    }
}

/// Admits `spec` of a binding in `namespace`, or says every reason not to.
pub(crate) fn admit(
    spec: &MacvlanBindingSpec,
    namespace: &str,
    t: &Tenancy,
    check: Check,
) -> Result<Admitted, Invalid> {
    let inline = !spec.networks.is_empty() || spec.endpoint.is_some();
    if inline {
        return admit_inline(spec, namespace, t, check);
    }
    let mut errors = Vec::new();
    let mut used: Vec<&str> = Vec::new();
    for (i, s) in spec.services.iter().enumerate() {
        match t.networks.get(&s.network) {
            Some(_) => {
                if !used.contains(&s.network.as_str()) {
                    used.push(&s.network);
                }
            }
            None => errors.push(err(
                format!("spec.services[{i}].network"),
                format!(
                    "no MacvlanNetwork {} (a binding without inline networks names MacvlanNetworks the platform team made)",
                    shown(&s.network)
                ),
            )),
        }
    }
    let endpoint = endpoint_of_networks(spec, &used, namespace, t, check, &mut errors);
    if !errors.is_empty() {
        return Err(Invalid { errors });
    }
    let effective = effective_spec(spec, &used, t);
    let mut desired =
        validate(&effective, Dialect::Manifest).map_err(|e| blame_networks(e, &used))?;
    // Docker's own auto-assign on a MacvlanNetwork without an ipRange:
    // clear of every grant's ranges, whichever team's binding creates it.
    for object in &used {
        let Some(net) = t.networks.get(*object) else {
            continue;
        };
        let granted = Pool::new(net.grants.iter().flat_map(|g| g.pool().ranges().to_vec()));
        let name = net.docker_name(object);
        if let Some(n) = desired
            .networks
            .iter_mut()
            .find(|n| n.name == name && n.ip_range.is_none())
        {
            n.auto_range =
                crate::config::validate::derive_range(n.subnet, &[("", &granted)], &n.reserved);
        }
    }
    if check == Check::Grants {
        check_grants(spec, &desired, namespace, t, &mut errors);
    }
    if !errors.is_empty() {
        return Err(Invalid { errors });
    }
    Ok(Admitted {
        desired,
        endpoint: endpoint.unwrap_or(EndpointChoice::Default),
        networks: used.iter().map(|s| (*s).to_owned()).collect(),
    })
}

/// The endpoint `spec` would use, without checking anything else: cheap,
/// for routing and lookups. [`admit`] is the authority.
pub(crate) fn endpoint_choice(spec: &MacvlanBindingSpec, t: &Tenancy) -> EndpointChoice {
    if !spec.networks.is_empty() || spec.endpoint.is_some() {
        return spec
            .endpoint
            .clone()
            .map_or(EndpointChoice::Default, EndpointChoice::Inline);
    }
    let swarm = spec.services.iter().find_map(|s| {
        let name = &t.networks.get(&s.network)?.endpoint_ref.as_ref()?.name;
        let ep = t.endpoints.get(name)?;
        Some(EndpointChoice::Swarm {
            name: name.clone(),
            spec: ep.connection(),
        })
    });
    swarm.unwrap_or(EndpointChoice::Default)
}

fn admit_inline(
    spec: &MacvlanBindingSpec,
    namespace: &str,
    t: &Tenancy,
    check: Check,
) -> Result<Admitted, Invalid> {
    if t.inline == Inline::Deny && check == Check::Grants {
        let mut errors = Vec::new();
        if !spec.networks.is_empty() {
            errors.push(err(
                "spec.networks",
                format!(
                    "inline networks are off in this operator install (--inline deny): leave networks out and name, in services[].network, a MacvlanNetwork that grants namespace {namespace} the service"
                ),
            ));
        }
        if spec.endpoint.is_some() {
            errors.push(err(
                "spec.endpoint",
                "inline endpoints are off in this operator install (--inline deny): the endpoint comes from the MacvlanNetwork's SwarmEndpoint",
            ));
        }
        return Err(Invalid { errors });
    }
    if t.inline == Inline::Deny && spec.endpoint.is_some() {
        // Not even to clean up: a URL a team wrote is never called.
        return Err(Invalid {
            errors: vec![err(
                "spec.endpoint",
                "not contacted: inline endpoints are off in this operator install (--inline deny)",
            )],
        });
    }
    let desired = validate(spec, Dialect::Manifest)?;
    Ok(Admitted {
        desired,
        endpoint: spec
            .endpoint
            .clone()
            .map_or(EndpointChoice::Default, EndpointChoice::Inline),
        networks: Vec::new(),
    })
}

/// The one endpoint of the networks a binding uses; `None` after an error.
fn endpoint_of_networks(
    spec: &MacvlanBindingSpec,
    used: &[&str],
    namespace: &str,
    t: &Tenancy,
    check: Check,
    errors: &mut Vec<FieldError>,
) -> Option<EndpointChoice> {
    let field = |net: &str| {
        let i = spec
            .services
            .iter()
            .position(|s| s.network == net)
            .unwrap_or_default();
        format!("spec.services[{i}].network")
    };
    let refs: Vec<(&str, Option<&str>)> = used
        .iter()
        .filter_map(|n| {
            let net = t.networks.get(*n)?;
            Some((*n, net.endpoint_ref.as_ref().map(|r| r.name.as_str())))
        })
        .collect();
    let (first, endpoint) = *refs.first()?;
    if let Some((other, e)) = refs.iter().find(|(_, e)| *e != endpoint) {
        let name = |e: Option<&str>| e.map_or("the operator's default".to_owned(), shown);
        errors.push(err(
            field(other),
            format!(
                "MacvlanNetwork {} is on endpoint {}, but MacvlanNetwork {} is on {}: one binding acts on one swarm",
                shown(other),
                name(*e),
                shown(first),
                name(endpoint)
            ),
        ));
        return None;
    }
    let Some(name) = endpoint else {
        return Some(EndpointChoice::Default);
    };
    let Some(ep) = t.endpoints.get(name) else {
        errors.push(err(
            field(first),
            format!(
                "MacvlanNetwork {} names SwarmEndpoint {}, which does not exist",
                shown(first),
                shown(name)
            ),
        ));
        return None;
    };
    if check == Check::Grants && !ep.allowed_namespaces.selects(namespace, t) {
        errors.push(err(
            field(first),
            format!(
                "SwarmEndpoint {} (of MacvlanNetwork {}) does not allow namespace {namespace}: see its spec.allowedNamespaces",
                shown(name),
                shown(first)
            ),
        ));
        return None;
    }
    Some(EndpointChoice::Swarm {
        name: name.to_owned(),
        spec: ep.connection(),
    })
}

/// The binding as if it had written its networks inline: each service's
/// network is the Docker name of its MacvlanNetwork.
fn effective_spec(spec: &MacvlanBindingSpec, used: &[&str], t: &Tenancy) -> MacvlanBindingSpec {
    let mut out = spec.clone();
    out.networks = used
        .iter()
        .filter_map(|n| Some(t.networks.get(*n)?.network(n)))
        .collect();
    for s in &mut out.services {
        if let Some(net) = t.networks.get(&s.network) {
            s.network = net.docker_name(&s.network).to_owned();
        }
    }
    out
}

/// Problems of a MacvlanNetwork's own fields name the object, not a
/// `spec.networks[k]` the binding does not have.
fn blame_networks(mut invalid: Invalid, used: &[&str]) -> Invalid {
    for e in &mut invalid.errors {
        // A message naming a network field of the effective spec names the
        // MacvlanNetwork instead (the binding has no `networks`).
        for (k, name) in used.iter().enumerate() {
            let inner = format!("spec.networks[{k}].");
            if e.message.contains(&inner) {
                e.message = e
                    .message
                    .replace(&inner, &format!("MacvlanNetwork {} .", shown(name)));
            }
        }
        let Some(rest) = e.field.strip_prefix("spec.networks[") else {
            continue;
        };
        let Some((k, tail)) = rest.split_once(']') else {
            continue;
        };
        if let Some(name) = k.parse::<usize>().ok().and_then(|k| used.get(k)) {
            e.field = format!(
                "MacvlanNetwork {}{}",
                shown(name),
                tail.replacen('.', " .", 1)
            );
        }
    }
    invalid
}

fn check_grants(
    spec: &MacvlanBindingSpec,
    desired: &Desired,
    namespace: &str,
    t: &Tenancy,
    errors: &mut Vec<FieldError>,
) {
    for (i, s) in spec.services.iter().enumerate() {
        let Some(net) = t.networks.get(&s.network) else {
            continue;
        };
        let for_ns: Vec<&Grant> = net
            .grants
            .iter()
            .filter(|g| g.selects(namespace, t))
            .collect();
        if for_ns.is_empty() {
            errors.push(err(
                format!("spec.services[{i}].network"),
                format!(
                    "MacvlanNetwork {} grants nothing to namespace {namespace}",
                    shown(&s.network)
                ),
            ));
            continue;
        }
        let grants: Vec<&Grant> = for_ns
            .iter()
            .copied()
            .filter(|g| g.covers_service(&s.name))
            .collect();
        if grants.is_empty() {
            let allowed: Vec<&str> = for_ns
                .iter()
                .flat_map(|g| g.services.iter().map(String::as_str))
                .collect();
            errors.push(err(
                format!("spec.services[{i}].name"),
                format!(
                    "MacvlanNetwork {} does not grant service {} to namespace {namespace} (it grants: {})",
                    shown(&s.network),
                    shown(&s.name),
                    allowed.join(", ")
                ),
            ));
            continue;
        }
        let granted = Pool::new(grants.iter().flat_map(|g| g.pool().ranges().to_vec()));
        let Some(entries) = desired
            .services
            .iter()
            .find(|d| d.name == s.name)
            .map(|d| &d.entries)
        else {
            continue;
        };
        for (j, range) in entries.iter().enumerate() {
            let field = format!("spec.services[{i}].ipPool[{j}]");
            if !granted.covers(range) {
                errors.push(err(
                    field.clone(),
                    format!(
                        "{range} is outside the ranges MacvlanNetwork {} grants namespace {namespace} for service {} ({})",
                        shown(&s.network),
                        shown(&s.name),
                        granted
                    ),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests;
