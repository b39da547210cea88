//! `mvconf convert --granted`: a classic conf.json split the multi-team
//! way. The platform team applies a SwarmEndpoint (when the file names a
//! controller) and one MacvlanNetwork per network, each granting the
//! team's namespace exactly the services and addresses of the file; the
//! team applies a binding that names those MacvlanNetworks.

use super::{
    Grant, MacvlanNetwork, MacvlanNetworkSpec, NamespaceSelection, ObjectName, SwarmEndpoint,
    SwarmEndpointSpec,
};
use crate::crd::{MacvlanBinding, MacvlanBindingSpec};
use std::collections::BTreeMap;

/// What the platform team and the application team each apply.
#[derive(Debug)]
pub(crate) struct Split {
    pub(crate) endpoint: Option<SwarmEndpoint>,
    pub(crate) networks: Vec<MacvlanNetwork>,
    pub(crate) binding: MacvlanBinding,
}

/// A DNS-1123 object name from a Docker network name.
pub(crate) fn object_name(docker: &str) -> String {
    let mut name: String = docker
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    name.truncate(253);
    let name = name.trim_matches(|c| c == '-' || c == '.').to_owned();
    if name.is_empty() {
        "macvlan".into()
    } else {
        name
    }
}

/// Splits `spec` (a binding with inline networks) for namespace `ns`.
pub(crate) fn split(name: &str, ns: &str, spec: &MacvlanBindingSpec) -> Split {
    let endpoint = spec.endpoint.as_ref().map(|e| {
        SwarmEndpoint::new(
            name,
            SwarmEndpointSpec {
                kind: e.kind,
                url: e.url.clone(),
                secret_ref: e.secret_ref.clone(),
                insecure_skip_tls_verify: e.insecure_skip_tls_verify,
                dce_node_prefix: e.dce_node_prefix.clone(),
                node_port: e.node_port,
                node_urls: e.node_urls.clone(),
                allowed_namespaces: NamespaceSelection {
                    namespaces: vec![ns.to_owned()],
                    namespace_selector: None,
                },
            },
        )
    });
    // Docker names that differ only in `_` or case get distinct objects.
    let mut objects: BTreeMap<&str, String> = BTreeMap::new();
    for n in &spec.networks {
        let base = object_name(&n.name);
        let mut name = base.clone();
        let mut k = 2;
        while objects.values().any(|o| *o == name) {
            name = format!("{base}-{k}");
            k += 1;
        }
        objects.insert(&n.name, name);
    }
    let networks = spec
        .networks
        .iter()
        .map(|n| {
            let services: Vec<_> = spec
                .services
                .iter()
                .filter(|s| s.network == n.name)
                .collect();
            let object = &objects[n.name.as_str()];
            MacvlanNetwork::new(
                object,
                MacvlanNetworkSpec {
                    endpoint_ref: endpoint.as_ref().map(|_| ObjectName {
                        name: name.to_owned(),
                    }),
                    docker_name: (object != &n.name).then(|| n.name.clone()),
                    subnet: n.subnet.clone(),
                    gateway: n.gateway.clone(),
                    parent: n.parent.clone(),
                    ip_range: n.ip_range.clone(),
                    reserved: n.reserved.clone(),
                    arp_probe: n.arp_probe,
                    grants: vec![Grant {
                        namespaces: vec![ns.to_owned()],
                        namespace_selector: None,
                        services: services.iter().map(|s| s.name.clone()).collect(),
                        ranges: services.iter().flat_map(|s| s.ip_pool.clone()).collect(),
                    }],
                },
            )
        })
        .filter(|n| !n.spec.grants[0].services.is_empty())
        .collect();
    let mut team = spec.clone();
    team.networks.clear();
    team.endpoint = None;
    for s in &mut team.services {
        if let Some(o) = objects.get(s.network.as_str()) {
            s.network = o.clone();
        }
    }
    let mut binding = MacvlanBinding::new(name, team);
    binding.metadata.namespace = Some(ns.to_owned());
    Split {
        endpoint,
        networks,
        binding,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::validate::{Dialect, validate};
    use crate::crd::{EndpointKind, EndpointSpec, NetworkSpec, ServiceSpec};
    use crate::tenancy::admit::{Check, Inline, Tenancy, admit};

    #[test]
    fn a_split_file_is_admitted_where_inline_is_denied() {
        let spec = MacvlanBindingSpec {
            networks: vec![NetworkSpec {
                arp_probe: None,
                name: "mac_vlan".into(),
                subnet: "192.168.8.0/24".into(),
                gateway: "192.168.8.1".into(),
                parent: "eth1".into(),
                ip_range: None,
                reserved: vec![],
            }],
            services: vec![ServiceSpec {
                name: "2048".into(),
                network: "mac_vlan".into(),
                ip_pool: vec!["192.168.8.136-192.168.8.137".into(), "192.168.8.139".into()],
                ingress: Default::default(),
            }],
            endpoint: Some(EndpointSpec {
                kind: EndpointKind::Dce,
                url: "https://dce.example".into(),
                secret_ref: None,
                insecure_skip_tls_verify: false,
                dce_node_prefix: None,
                node_port: None,
                node_urls: Default::default(),
            }),
            ..Default::default()
        };
        let before = validate(&spec, Dialect::Manifest).unwrap();
        let s = split("conf", "team-a", &spec);
        let mut t = Tenancy {
            inline: Inline::Deny,
            ..Default::default()
        };
        for n in &s.networks {
            t.networks
                .insert(n.metadata.name.clone().unwrap(), n.spec.clone());
        }
        let ep = s.endpoint.unwrap();
        t.endpoints
            .insert(ep.metadata.name.clone().unwrap(), ep.spec);
        assert_eq!(s.networks[0].metadata.name.as_deref(), Some("mac-vlan"));
        let a = admit(&s.binding.spec, "team-a", &t, Check::Grants).unwrap();
        // The same Docker network, services and addresses as before.
        assert_eq!(a.desired.networks, before.networks);
        assert_eq!(a.desired.services, before.services);
        assert!(admit(&s.binding.spec, "team-b", &t, Check::Grants).is_err());
    }
}
