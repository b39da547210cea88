//! What the platform's objects show in `kubectl get`: who may use them,
//! who does, and how full each network's grants are. Pure: the operator
//! writes what these functions return.

use super::admit::{Admitted, EndpointChoice, ranges, summary};
use super::{MacvlanNetworkSpec, SwarmEndpointSpec, TenancyStatus};
use crate::config::validate::Dialect;
use crate::config::validate::validate;
use crate::crd::{ContainerRecord, MacvlanBindingSpec};
use crate::pool::{IpRange, Pool};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use std::collections::BTreeSet;
use std::net::Ipv4Addr;

/// One admitted binding and its per-container records.
pub(crate) struct Use<'a> {
    pub(crate) admitted: &'a Admitted,
    pub(crate) records: &'a [ContainerRecord],
}

/// Condition type of the platform's objects.
pub(crate) const VALID: &str = "Valid";

fn condition(
    previous: &[Condition],
    problems: &[String],
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    let (status, reason, message) = if problems.is_empty() {
        (
            "True",
            "Valid",
            "usable by the namespaces it selects".to_owned(),
        )
    } else {
        ("False", "Invalid", problems.join("; "))
    };
    let since = previous
        .iter()
        .find(|c| c.type_ == VALID && c.status == status && c.message == message)
        .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
    Condition {
        type_: VALID.into(),
        status: status.into(),
        reason: reason.into(),
        message,
        observed_generation: generation,
        last_transition_time: since,
    }
}

/// The faults of a MacvlanNetwork that its schema cannot see: ranges and
/// reserved addresses that do not parse or lie outside the subnet.
pub(crate) fn network_problems(spec: &MacvlanNetworkSpec) -> Vec<String> {
    let mut out = Vec::new();
    let subnet: Option<ipnetwork::Ipv4Network> = spec.subnet.parse().ok();
    let mut check = |field: String, raw: &str| match raw.parse::<IpRange>() {
        Err(e) => out.push(format!("{field}: {e}")),
        Ok(r) => {
            if let Some(net) = subnet
                && !(net.contains(r.start()) && net.contains(r.end()))
            {
                out.push(format!("{field}: {r} is not inside the subnet {net}"));
            }
        }
    };
    for (j, e) in spec.reserved.iter().enumerate() {
        check(format!("spec.reserved[{j}]"), &e.0);
    }
    for (i, g) in spec.grants.iter().enumerate() {
        for (j, e) in g.ranges.iter().enumerate() {
            check(format!("spec.grants[{i}].ranges[{j}]"), &e.0);
        }
    }
    out
}

/// The addresses of MacvlanNetwork `name` that the admitted bindings' task
/// slots hold, and how many bindings use it.
fn held_of(name: &str, spec: &MacvlanNetworkSpec, uses: &[Use<'_>]) -> (BTreeSet<Ipv4Addr>, i32) {
    let docker = spec.docker_name(name);
    let mut held: BTreeSet<Ipv4Addr> = BTreeSet::new();
    let mut bindings = 0;
    for u in uses
        .iter()
        .filter(|u| u.admitted.networks.iter().any(|n| n == name))
    {
        bindings += 1;
        let services: BTreeSet<&str> = u
            .admitted
            .desired
            .services
            .iter()
            .filter(|s| s.network == docker)
            .map(|s| s.name.as_str())
            .collect();
        held.extend(
            u.records
                .iter()
                .filter(|r| services.contains(r.service.as_str()))
                .filter_map(|r| r.ip.as_deref()?.parse::<Ipv4Addr>().ok()),
        );
    }
    (held, bindings)
}

/// Per grant of MacvlanNetwork `name` (in `spec.grants` order): addresses
/// in its ranges, and those of them the bindings' task slots hold.
pub(crate) fn grant_usage(
    name: &str,
    spec: &MacvlanNetworkSpec,
    uses: &[Use<'_>],
) -> Vec<(u64, u64)> {
    let (held, _) = held_of(name, spec, uses);
    spec.grants
        .iter()
        .map(|g| {
            let pool = ranges(&g.ranges);
            let inside = held.iter().filter(|ip| pool.contains(**ip)).count();
            (pool.size(), u64::try_from(inside).unwrap_or(u64::MAX))
        })
        .collect()
}

/// The status of MacvlanNetwork `name`.
pub(crate) fn network_status(
    name: &str,
    spec: &MacvlanNetworkSpec,
    previous: Option<&TenancyStatus>,
    generation: Option<i64>,
    uses: &[Use<'_>],
    now: &Time,
) -> TenancyStatus {
    let mut namespaces: Vec<String> = Vec::new();
    for g in &spec.grants {
        for part in summary(&g.namespaces, g.namespace_selector.as_ref()).split(',') {
            if !part.is_empty() && !namespaces.iter().any(|n| n == part) {
                namespaces.push(part.to_owned());
            }
        }
    }
    let granted = Pool::new(
        spec.grants
            .iter()
            .flat_map(|g| ranges(&g.ranges).ranges().to_vec()),
    );
    let (held, bindings) = held_of(name, spec, uses);
    let previous = previous
        .map(|p| p.conditions.as_slice())
        .unwrap_or_default();
    TenancyStatus {
        observed_generation: generation,
        conditions: vec![condition(
            previous,
            &network_problems(spec),
            generation,
            now,
        )],
        namespaces: namespaces.join(","),
        bindings,
        used: format!("{}/{}", held.len(), granted.size()),
    }
}

/// The status of SwarmEndpoint `name`.
pub(crate) fn endpoint_status(
    name: &str,
    spec: &SwarmEndpointSpec,
    previous: Option<&TenancyStatus>,
    generation: Option<i64>,
    uses: &[Use<'_>],
    now: &Time,
) -> TenancyStatus {
    let bindings = uses
        .iter()
        .filter(
            |u| matches!(&u.admitted.endpoint, EndpointChoice::Swarm { name: n, .. } if n == name),
        )
        .count();
    // The endpoint checks a binding's inline endpoint gets, named as here.
    let probe = MacvlanBindingSpec {
        endpoint: Some(spec.connection()),
        ..Default::default()
    };
    let problems: Vec<String> = match validate(&probe, Dialect::Manifest) {
        Ok(_) => Vec::new(),
        Err(invalid) => invalid
            .errors
            .iter()
            .map(|e| {
                format!(
                    "{}: {}",
                    e.field.replacen("spec.endpoint", "spec", 1),
                    e.message
                )
            })
            .collect(),
    };
    let previous = previous
        .map(|p| p.conditions.as_slice())
        .unwrap_or_default();
    TenancyStatus {
        observed_generation: generation,
        conditions: vec![condition(previous, &problems, generation, now)],
        namespaces: spec.allowed_namespaces.summary(),
        bindings: i32::try_from(bindings).unwrap_or(i32::MAX),
        used: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{ContainerRecord, ServiceSpec};
    use crate::tenancy::Grant;
    use crate::tenancy::admit::{Check, Tenancy, admit};
    use k8s_openapi::jiff::Timestamp;

    fn now() -> Time {
        Time(Timestamp::from_second(1_800_000_000).unwrap())
    }

    fn spec() -> MacvlanNetworkSpec {
        MacvlanNetworkSpec {
            subnet: "10.8.0.0/24".into(),
            gateway: "10.8.0.1".into(),
            parent: "eth1".into(),
            grants: vec![
                Grant {
                    namespaces: vec!["team-a".into()],
                    services: vec!["*".into()],
                    ranges: vec!["10.8.0.100-10.8.0.149".into()],
                    ..Default::default()
                },
                Grant {
                    namespaces: vec!["team-b".into(), "team-a".into()],
                    services: vec!["*".into()],
                    ranges: vec!["10.8.0.150-10.8.0.159".into(), "10.9.0.1".into()],
                    ..Default::default()
                },
            ],
            ..Default::default()
        }
    }

    #[test]
    fn a_network_shows_who_may_use_it_and_how_full_it_is() {
        let mut t = Tenancy::default();
        t.networks.insert("vlan8".into(), spec());
        let b = MacvlanBindingSpec {
            services: vec![ServiceSpec {
                name: "web".into(),
                network: "vlan8".into(),
                ip_pool: vec!["10.8.0.100-10.8.0.103".into()],
                ingress: Default::default(),
            }],
            ..Default::default()
        };
        let a = admit(&b, "team-a", &t, Check::Resolve).unwrap();
        let record = |ip: &str| ContainerRecord {
            service: "web".into(),
            ip: Some(ip.into()),
            ..Default::default()
        };
        let records = [record("10.8.0.100"), record("10.8.0.101")];
        let uses = [Use {
            admitted: &a,
            records: &records,
        }];
        let s = network_status("vlan8", &spec(), None, Some(3), &uses, &now());
        assert_eq!(s.namespaces, "team-a,team-b");
        assert_eq!(s.bindings, 1);
        assert_eq!(s.used, "2/61");
        assert_eq!(s.conditions[0].status, "False");
        assert!(
            s.conditions[0].message.contains(
                "spec.grants[1].ranges[1]: 10.9.0.1 is not inside the subnet 10.8.0.0/24"
            ),
            "{}",
            s.conditions[0].message
        );
        // An unchanged verdict keeps its transition time.
        let later = Time(Timestamp::from_second(1_800_000_100).unwrap());
        let again = network_status("vlan8", &spec(), Some(&s), Some(3), &uses, &later);
        assert_eq!(again, s);
        // Per grant, for the alerts: the first grant holds both.
        assert_eq!(grant_usage("vlan8", &spec(), &uses), vec![(50, 2), (11, 0)]);
    }
}
