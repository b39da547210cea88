use super::*;
use crate::crd::{NetworkSpec, PoolEntry, ServiceSpec};

fn net(name: &str, subnet: &str, gateway: &str) -> NetworkSpec {
    NetworkSpec {
        arp_probe: None,
        name: name.into(),
        subnet: subnet.into(),
        gateway: gateway.into(),
        // One macvlan network per parent: derive a distinct one.
        parent: format!("eth{}", subnet.split('.').next().unwrap_or("1")),
        ip_range: None,
        reserved: vec![],
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
    s.networks[0].ip_range = Some("192.168.8.0/25".into());
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

#[test]
fn node_urls_are_checked_like_the_endpoint_url() {
    use crate::crd::{EndpointKind, EndpointSpec};
    let mut s = good();
    let ep = |url: &str| EndpointSpec {
        kind: EndpointKind::Docker,
        url: "tcp://10.0.0.11:2375".into(),
        secret_ref: None,
        insecure_skip_tls_verify: false,
        dce_node_prefix: None,
        node_port: None,
        node_urls: [("node2".to_owned(), url.to_owned())].into(),
    };
    s.endpoint = Some(ep("unix:///var/run/docker.sock"));
    let (f, m) = one_error(&s);
    assert_eq!(f, "spec.endpoint.nodeUrls[\"node2\"]");
    assert!(m.contains("must start with tcp://"), "{m}");
    s.endpoint = Some(ep("https://root:pw@10.0.0.12:2376"));
    let (_, m) = one_error(&s);
    assert!(
        m.contains("must not carry credentials") && !m.contains("pw@"),
        "{m}"
    );
    s.endpoint = Some(ep("tcp://10.0.0.12:2375"));
    assert!(validate(&s, Dialect::Manifest).is_ok());
}

#[test]
fn reserved_addresses_are_skipped_from_pools_and_counted() {
    let mut s = good();
    s.networks[0].reserved = vec!["192.168.8.137".into(), "192.168.8.200-192.168.8.210".into()];
    let d = validate(&s, Dialect::Manifest).unwrap();
    let web = &d.services[0];
    assert_eq!(web.pool.to_string(), "192.168.8.136, 192.168.8.139");
    assert_eq!(web.skipped.size(), 1);
    // The canonical spec writes them back as they were given.
    assert_eq!(d.to_spec().networks[0].reserved, s.networks[0].reserved);
}

#[test]
fn a_pool_that_reserved_addresses_leave_empty_is_refused_naming_both() {
    let mut s = good();
    s.networks[0].reserved = vec!["192.168.8.130-192.168.8.140".into()];
    let (f, m) = one_error(&s);
    assert_eq!(f, "spec.services[0].ipPool");
    assert!(
        m.contains("reserved") && m.contains("networks[0].reserved"),
        "{m}"
    );
    let err = validate(&s, Dialect::Legacy).unwrap_err();
    assert_eq!(err.errors[0].field, "services[0].ip_pool");
}

#[test]
fn reserved_entries_must_parse_and_lie_in_the_subnet() {
    let mut s = good();
    s.networks[0].reserved = vec!["192.168.8.5".into(), "10.0.0.1".into(), "nope".into()];
    let err = validate(&s, Dialect::Manifest).unwrap_err();
    let fields: Vec<&str> = err.errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "spec.networks[0].reserved[1]",
            "spec.networks[0].reserved[2]"
        ],
        "{err}"
    );
    assert!(
        err.errors[0].message.contains("not inside the subnet"),
        "{err}"
    );
}

#[test]
fn dockers_auto_assign_range_over_a_pool_is_refused_in_a_manifest_with_the_fix() {
    let mut s = good();
    s.networks[0].ip_range = Some("192.168.8.128/25".into());
    let (f, m) = one_error(&s);
    assert_eq!(f, "spec.networks[0].ipRange");
    assert!(m.contains("overlaps the pool of service \"2048\""), "{m}");
    assert!(m.contains("such as 192.168.8.0/25"), "the fix: {m}");
}

#[test]
fn a_conf_json_ip_range_over_a_pool_is_a_warning_and_kept_as_mvconf_users_wrote_it() {
    let mut s = good();
    s.networks[0].ip_range = Some("192.168.8.0/24".into());
    let d = validate(&s, Dialect::Legacy).unwrap();
    assert_eq!(d.notes.len(), 1, "{:?}", d.notes);
    assert!(
        d.notes[0].starts_with("networks[0].ip_range: 192.168.8.0/24 overlaps"),
        "{}",
        d.notes[0]
    );
    assert_eq!(
        d.networks[0].docker_range(),
        Some("192.168.8.0/24".parse().unwrap())
    );
}

#[test]
fn without_an_ip_range_docker_gets_the_largest_block_outside_every_pool_and_reserved_address() {
    let d = validate(&good(), Dialect::Manifest).unwrap();
    assert!(d.notes.is_empty());
    assert_eq!(d.networks[0].ip_range, None);
    assert_eq!(
        d.networks[0].docker_range(),
        Some("192.168.8.0/25".parse().unwrap())
    );
    // Reserved addresses count too; the highest free block of the largest
    // size wins.
    let mut s = good();
    s.networks[0].reserved = vec![PoolEntry::from("192.168.8.1-192.168.8.20")];
    let d = validate(&s, Dialect::Manifest).unwrap();
    assert_eq!(
        d.networks[0].docker_range(),
        Some("192.168.8.192/26".parse().unwrap())
    );
    // Pools over the whole subnet leave nothing: a note says so.
    let mut s = good();
    s.services[0].ip_pool = vec![PoolEntry::from("192.168.8.2-192.168.8.254")];
    let d = validate(&s, Dialect::Manifest).unwrap();
    assert_eq!(d.networks[0].docker_range(), None);
    assert!(
        d.notes[0].contains("no block of 192.168.8.0/24"),
        "{:?}",
        d.notes
    );
}
