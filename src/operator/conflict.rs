//! Conflicts between bindings on one swarm: the binding that was there
//! first acts; a later one that defines a network differently, shares a
//! parent or a subnet, binds the same service or overlaps a pool touches
//! nothing.

use crate::config::validate::Desired;
use crate::crd::MacvlanBinding;
use kube::ResourceExt;

fn key(b: &MacvlanBinding) -> String {
    format!("{}/{}", b.namespace().unwrap_or_default(), b.name_any())
}

/// Whether `other` was there first: older, or as old and sorting first.
fn earlier(other: &MacvlanBinding, me: &MacvlanBinding) -> bool {
    let t = |b: &MacvlanBinding| b.metadata.creation_timestamp.as_ref().map(|t| t.0);
    (t(other), key(other)) < (t(me), key(me))
}

/// Why `me` may not act because of a binding that was there first on the
/// same swarm; `None` when it may.
pub(crate) fn conflict(
    me: &MacvlanBinding,
    mine: &Desired,
    others: &[(&MacvlanBinding, &Desired)],
) -> Option<String> {
    let mut found = Vec::new();
    for (other, theirs) in others {
        if !earlier(other, me) {
            continue;
        }
        let who = key(other);
        for n in &mine.networks {
            for m in &theirs.networks {
                if n.name == m.name
                    && (n.subnet, n.gateway, &n.parent, n.ip_range)
                        != (m.subnet, m.gateway, &m.parent, m.ip_range)
                {
                    found.push(format!(
                        "network {} is defined differently by {who}",
                        n.name
                    ));
                } else if n.name != m.name && n.parent == m.parent {
                    found.push(format!("parent {} of network {} already carries network {} of {who} (one macvlan network per parent)", n.parent, n.name, m.name));
                } else if n.name != m.name
                    && (n.subnet.contains(m.subnet.network())
                        || m.subnet.contains(n.subnet.network()))
                {
                    found.push(format!(
                        "subnet {} of network {} overlaps {} of {who}",
                        n.subnet, n.name, m.subnet
                    ));
                }
            }
        }
        for s in &mine.services {
            for t in &theirs.services {
                if s.name == t.name {
                    found.push(format!("service {} is already bound by {who}", s.name));
                } else if s.network == t.network
                    && s.pool
                        .ranges()
                        .iter()
                        .any(|r| t.pool.ranges().iter().any(|q| r.overlaps(q)))
                {
                    found.push(format!(
                        "pool of service {} overlaps the pool of service {} in {who}",
                        s.name, t.name
                    ));
                }
            }
        }
    }
    found.dedup();
    (!found.is_empty()).then(|| found.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::validate::{Dialect, validate};
    use crate::crd::{MacvlanBindingSpec, NetworkSpec, PoolEntry, ServiceSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;
    use std::sync::Arc;

    fn binding(
        name: &str,
        age_secs: i64,
        net: (&str, &str, &str),
        services: &[(&str, &str)],
    ) -> (Arc<MacvlanBinding>, Desired) {
        let spec = MacvlanBindingSpec {
            networks: vec![NetworkSpec {
                arp_probe: None,
                name: net.0.into(),
                subnet: net.1.into(),
                gateway: net.1.replace(".0/24", ".1"),
                parent: net.2.into(),
                ip_range: None,
                reserved: vec![],
            }],
            services: services
                .iter()
                .map(|(s, pool)| ServiceSpec {
                    name: (*s).into(),
                    network: net.0.into(),
                    ip_pool: vec![PoolEntry::from(*pool)],
                    ingress: Default::default(),
                })
                .collect(),
            ..Default::default()
        };
        let mut b = MacvlanBinding::new(name, spec);
        b.metadata.namespace = Some("ns".into());
        b.metadata.creation_timestamp = Some(Time(
            Timestamp::from_second(1_800_000_000 - age_secs).unwrap(),
        ));
        let d = validate(&b.spec, Dialect::Manifest).unwrap();
        (Arc::new(b), d)
    }

    #[test]
    fn the_later_binding_gets_the_conflict() {
        let first = binding(
            "first",
            100,
            ("mv", "192.168.8.0/24", "eth1"),
            &[("web", "192.168.8.10-192.168.8.20")],
        );
        let second = binding(
            "second",
            10,
            ("mv", "192.168.8.0/24", "eth1"),
            &[("api", "192.168.8.15-192.168.8.30")],
        );
        let why = conflict(&second.0, &second.1, &[(&*first.0, &first.1)]).unwrap();
        assert!(
            why.contains("pool of service api overlaps the pool of service web in ns/first"),
            "{why}"
        );
        assert_eq!(
            conflict(&first.0, &first.1, &[(&*second.0, &second.1)]),
            None,
            "the first is untouched"
        );
    }

    #[test]
    fn networks_must_agree_and_parents_not_be_shared() {
        let first = binding(
            "first",
            100,
            ("mv", "192.168.8.0/24", "eth1"),
            &[("web", "192.168.8.10-192.168.8.20")],
        );
        let other_subnet = binding(
            "b",
            10,
            ("mv", "192.168.9.0/24", "eth1"),
            &[("api", "192.168.9.10")],
        );
        assert!(
            conflict(&other_subnet.0, &other_subnet.1, &[(&*first.0, &first.1)])
                .unwrap()
                .contains("defined differently")
        );
        let same_parent = binding(
            "c",
            10,
            ("mv2", "192.168.9.0/24", "eth1"),
            &[("api", "192.168.9.10")],
        );
        assert!(
            conflict(&same_parent.0, &same_parent.1, &[(&*first.0, &first.1)])
                .unwrap()
                .contains("one macvlan network per parent")
        );
        let same_service = binding(
            "d",
            10,
            ("mv", "192.168.8.0/24", "eth1"),
            &[("web", "192.168.8.50")],
        );
        assert!(
            conflict(&same_service.0, &same_service.1, &[(&*first.0, &first.1)])
                .unwrap()
                .contains("already bound")
        );
        let fine = binding(
            "e",
            10,
            ("mv", "192.168.8.0/24", "eth1"),
            &[("api", "192.168.8.50-192.168.8.60")],
        );
        assert_eq!(conflict(&fine.0, &fine.1, &[(&*first.0, &first.1)]), None);
    }
}
