use super::*;
use crate::crd::{EndpointKind, ServiceSpec};
use crate::tenancy::ObjectName;

fn net(grants: Vec<Grant>) -> MacvlanNetworkSpec {
    MacvlanNetworkSpec {
        arp_probe: None,
        endpoint_ref: None,
        docker_name: None,
        subnet: "10.8.0.0/24".into(),
        gateway: "10.8.0.1".into(),
        parent: "eth1".into(),
        ip_range: None,
        reserved: vec!["10.8.0.120".into()],
        grants,
    }
}

fn grant(namespaces: &[&str], services: &[&str], ranges: &[&str]) -> Grant {
    Grant {
        namespaces: namespaces.iter().map(|s| (*s).to_owned()).collect(),
        namespace_selector: None,
        services: services.iter().map(|s| (*s).to_owned()).collect(),
        ranges: ranges.iter().map(|s| (*s).into()).collect(),
    }
}

fn tenancy() -> Tenancy {
    let mut t = Tenancy::default();
    t.networks.insert(
        "vlan8".into(),
        net(vec![
            grant(&["team-a"], &["payments_*"], &["10.8.0.100-10.8.0.149"]),
            grant(&["team-b"], &["ledger"], &["10.8.0.150-10.8.0.199"]),
        ]),
    );
    t
}

fn binding(services: &[(&str, &str, &[&str])]) -> MacvlanBindingSpec {
    MacvlanBindingSpec {
        services: services
            .iter()
            .map(|(name, network, pool)| ServiceSpec {
                name: (*name).into(),
                network: (*network).into(),
                ip_pool: pool.iter().map(|p| (*p).into()).collect(),
                ingress: Default::default(),
            })
            .collect(),
        ..Default::default()
    }
}

fn refused(r: Result<Admitted, Invalid>) -> Vec<String> {
    r.expect_err("should be refused")
        .errors
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn one(r: Result<Admitted, Invalid>, field: &str, words: &str) {
    let errors = refused(r);
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with(&format!("{field}: ")) && e.contains(words)),
        "want {field}: …{words}…, got {errors:#?}"
    );
}

#[test]
fn a_granted_service_with_a_pool_in_its_ranges_is_admitted_under_the_docker_name() {
    let mut t = tenancy();
    t.networks.get_mut("vlan8").unwrap().docker_name = Some("macvlan8".into());
    let b = binding(&[("payments_api", "vlan8", &["10.8.0.100-10.8.0.101"])]);
    let a = admit(&b, "team-a", &t, Check::Grants).unwrap();
    assert_eq!(a.endpoint, EndpointChoice::Default);
    assert_eq!(a.networks, ["vlan8"]);
    assert_eq!(a.desired.networks[0].name, "macvlan8");
    assert_eq!(a.desired.services[0].network, "macvlan8");
    assert_eq!(a.desired.services[0].pool.size(), 2);
}

#[test]
fn a_service_outside_the_grant_is_refused_by_name() {
    let b = binding(&[("ledger", "vlan8", &["10.8.0.100"])]);
    one(
        admit(&b, "team-a", &tenancy(), Check::Grants),
        "spec.services[0].name",
        "does not grant service \"ledger\" to namespace team-a (it grants: payments_*)",
    );
}

#[test]
fn a_namespace_granted_nothing_is_refused() {
    let b = binding(&[("payments_api", "vlan8", &["10.8.0.100"])]);
    one(
        admit(&b, "team-c", &tenancy(), Check::Grants),
        "spec.services[0].network",
        "grants nothing to namespace team-c",
    );
}

#[test]
fn a_pool_outside_the_ranges_is_refused_entry_by_entry_and_reserved_addresses_are_skipped() {
    let b = binding(&[(
        "payments_api",
        "vlan8",
        &["10.8.0.100", "10.8.0.150", "10.8.0.119-10.8.0.121"],
    )]);
    let t = tenancy();
    one(
        admit(&b, "team-a", &t, Check::Grants),
        "spec.services[0].ipPool[1]",
        "10.8.0.150 is outside the ranges MacvlanNetwork \"vlan8\" grants namespace team-a for service \"payments_api\" (10.8.0.100-10.8.0.149)",
    );
    assert_eq!(refused(admit(&b, "team-a", &t, Check::Grants)).len(), 1);
    // The network's reserved address inside a granted pool is skipped, not
    // refused: the service's status counts it.
    let b = binding(&[(
        "payments_api",
        "vlan8",
        &["10.8.0.100", "10.8.0.119-10.8.0.121"],
    )]);
    let a = admit(&b, "team-a", &t, Check::Grants).unwrap();
    let s = &a.desired.services[0];
    assert_eq!((s.pool.size(), s.skipped.size()), (3, 1));
    // A pool left with nothing is refused, naming the reserved addresses.
    let b = binding(&[("payments_api", "vlan8", &["10.8.0.120"])]);
    let e = refused(admit(&b, "team-a", &t, Check::Grants));
    assert!(
        e.iter().any(
            |e| e.contains("is reserved") && e.contains("(MacvlanNetwork \"vlan8\" .reserved)")
        ),
        "{e:?}"
    );
}

#[test]
fn namespace_selectors_select_by_label_and_an_empty_one_selects_all() {
    let mut t = tenancy();
    let mut g = grant(&[], &["web"], &["10.8.0.200-10.8.0.209"]);
    g.namespace_selector = Some(LabelSelector {
        match_labels: Some([("tier".to_owned(), "gold".to_owned())].into()),
        ..Default::default()
    });
    t.networks.get_mut("vlan8").unwrap().grants.push(g);
    let b = binding(&[("web", "vlan8", &["10.8.0.200"])]);
    one(
        admit(&b, "team-gold", &t, Check::Grants),
        "spec.services[0].network",
        "grants nothing",
    );
    t.namespace_labels.insert(
        "team-gold".into(),
        [("tier".to_owned(), "gold".to_owned())].into(),
    );
    assert!(admit(&b, "team-gold", &t, Check::Grants).is_ok());
    let everyone = t
        .networks
        .get_mut("vlan8")
        .unwrap()
        .grants
        .last_mut()
        .unwrap();
    everyone.namespace_selector = Some(LabelSelector::default());
    t.namespace_labels.insert("anyone".into(), BTreeMap::new());
    assert!(admit(&b, "anyone", &t, Check::Grants).is_ok());
    // A namespace the cache has not seen yet: only names select it.
    one(
        admit(&b, "brand-new", &t, Check::Grants),
        "spec.services[0].network",
        "grants nothing",
    );
}

#[test]
fn inline_definitions_are_refused_when_the_install_denies_them_but_cleanup_resolves_them() {
    let mut b = binding(&[("web", "mv", &["192.168.80.10"])]);
    b.networks = vec![NetworkSpec {
        arp_probe: None,
        name: "mv".into(),
        subnet: "192.168.80.0/24".into(),
        gateway: "192.168.80.1".into(),
        parent: "eth0".into(),
        ip_range: None,
        reserved: vec![],
    }];
    b.endpoint = Some(EndpointSpec {
        kind: EndpointKind::Dce,
        url: "http://127.0.0.1:9".into(),
        secret_ref: None,
        insecure_skip_tls_verify: false,
        dce_node_prefix: None,
        node_port: None,
        node_urls: Default::default(),
    });
    let mut t = tenancy();
    let allowed = admit(&b, "team-a", &t, Check::Grants).unwrap();
    assert!(matches!(allowed.endpoint, EndpointChoice::Inline(_)));
    t.inline = Inline::Deny;
    one(
        admit(&b, "team-a", &t, Check::Grants),
        "spec.networks",
        "inline networks are off in this operator install (--inline deny)",
    );
    one(
        admit(&b, "team-a", &t, Check::Grants),
        "spec.endpoint",
        "inline endpoints are off",
    );
    // Cleanup finds what inline networks made on the operator's endpoint,
    // but never calls a URL a team wrote.
    one(
        admit(&b, "team-a", &t, Check::Resolve),
        "spec.endpoint",
        "not contacted",
    );
    b.endpoint = None;
    let resolved = admit(&b, "team-a", &t, Check::Resolve).unwrap();
    assert_eq!(resolved.endpoint, EndpointChoice::Default);
    assert_eq!(resolved.desired.services, allowed.desired.services);
}

#[test]
fn cleanup_resolves_a_binding_whose_grant_was_revoked() {
    let b = binding(&[("payments_api", "vlan8", &["10.8.0.100"])]);
    let mut t = tenancy();
    t.networks.get_mut("vlan8").unwrap().grants.clear();
    assert!(admit(&b, "team-a", &t, Check::Grants).is_err());
    assert!(admit(&b, "team-a", &t, Check::Resolve).is_ok());
}

#[test]
fn endpoints_come_from_the_network_and_must_allow_the_namespace() {
    let mut t = tenancy();
    t.networks.get_mut("vlan8").unwrap().endpoint_ref = Some(ObjectName {
        name: "prod".into(),
    });
    let b = binding(&[("payments_api", "vlan8", &["10.8.0.100"])]);
    one(
        admit(&b, "team-a", &t, Check::Grants),
        "spec.services[0].network",
        "names SwarmEndpoint \"prod\", which does not exist",
    );
    let ep = SwarmEndpointSpec {
        kind: EndpointKind::Dce,
        url: "https://dce.example".into(),
        secret_ref: None,
        insecure_skip_tls_verify: false,
        dce_node_prefix: None,
        node_port: None,
        node_urls: Default::default(),
        allowed_namespaces: Default::default(),
    };
    t.endpoints.insert("prod".into(), ep);
    one(
        admit(&b, "team-a", &t, Check::Grants),
        "spec.services[0].network",
        "SwarmEndpoint \"prod\" (of MacvlanNetwork \"vlan8\") does not allow namespace team-a",
    );
    t.endpoints
        .get_mut("prod")
        .unwrap()
        .allowed_namespaces
        .namespaces = vec!["team-a".into()];
    let a = admit(&b, "team-a", &t, Check::Grants).unwrap();
    assert!(
        matches!(&a.endpoint, EndpointChoice::Swarm { name, spec } if name == "prod" && spec.url == "https://dce.example")
    );
}

#[test]
fn one_binding_one_swarm() {
    let mut t = tenancy();
    let mut other = net(vec![grant(&["team-a"], &["*"], &["10.9.0.10-10.9.0.20"])]);
    other.subnet = "10.9.0.0/24".into();
    other.gateway = "10.9.0.1".into();
    other.reserved.clear();
    other.endpoint_ref = Some(ObjectName { name: "dr".into() });
    t.networks.insert("vlan9".into(), other);
    let b = binding(&[
        ("payments_api", "vlan8", &["10.8.0.100"]),
        ("payments_web", "vlan9", &["10.9.0.10"]),
    ]);
    one(
        admit(&b, "team-a", &t, Check::Grants),
        "spec.services[1].network",
        "one binding acts on one swarm",
    );
}

#[test]
fn unknown_networks_and_the_networks_own_faults_are_named() {
    let b = binding(&[("payments_api", "nope", &["10.8.0.100"])]);
    one(
        admit(&b, "team-a", &tenancy(), Check::Grants),
        "spec.services[0].network",
        "no MacvlanNetwork \"nope\"",
    );
    let mut t = tenancy();
    t.networks.get_mut("vlan8").unwrap().gateway = "10.7.0.1".into();
    let b = binding(&[("payments_api", "vlan8", &["10.8.0.100"])]);
    let errors = refused(admit(&b, "team-a", &t, Check::Grants));
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("MacvlanNetwork \"vlan8\" .gateway: ")),
        "{errors:#?}"
    );
}

#[test]
fn summaries_name_the_namespaces() {
    let s = NamespaceSelection {
        namespaces: vec!["a".into(), "b".into()],
        namespace_selector: Some(LabelSelector::default()),
    };
    assert_eq!(s.summary(), "a,b,*");
    assert_eq!(NamespaceSelection::default().summary(), "");
}

#[test]
fn the_two_team_examples_admit_each_team_in_its_own_namespace_only() {
    use crate::crd::MacvlanBinding;
    use crate::tenancy::{MacvlanNetwork, SwarmEndpoint};
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/two-teams");
    let text = std::fs::read_to_string(dir.join("platform.yaml")).unwrap();
    let mut t = Tenancy {
        inline: Inline::Deny,
        ..Default::default()
    };
    for doc in text.split("\n---\n") {
        let v: serde_json::Value = serde_saphyr::from_str(doc).unwrap();
        match v["kind"].as_str() {
            Some("SwarmEndpoint") => {
                let e: SwarmEndpoint = serde_json::from_value(v).unwrap();
                t.endpoints.insert(e.metadata.name.unwrap(), e.spec);
            }
            Some("MacvlanNetwork") => {
                let n: MacvlanNetwork = serde_json::from_value(v).unwrap();
                t.networks.insert(n.metadata.name.unwrap(), n.spec);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    for (file, ns, other) in [
        ("team-payments.yaml", "payments", "ledger"),
        ("team-ledger.yaml", "ledger", "payments"),
    ] {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        let b: MacvlanBinding = serde_saphyr::from_str(&text).unwrap();
        let a = admit(&b.spec, ns, &t, Check::Grants).unwrap();
        assert!(matches!(&a.endpoint, EndpointChoice::Swarm { name, .. } if name == "dce-prod"));
        assert_eq!(a.desired.networks[0].name, "macvlan101");
        assert!(
            admit(&b.spec, other, &t, Check::Grants).is_err(),
            "{file} in {other}"
        );
    }
}
