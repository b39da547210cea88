use super::*;
use crate::reconcile::audit::AuditReport;

fn holder(node: &str, container: &str, service: Option<&str>) -> Holder {
    Holder {
        node: node.into(),
        container: container.into(),
        service: service.map(Into::into),
        network: "vlan8".into(),
    }
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn record(container: &str, address: &str) -> ContainerRecord {
    ContainerRecord {
        service: "web".into(),
        container: container.into(),
        ip: Some(address.into()),
        ..Default::default()
    }
}

fn ours<'a>(records: &'a [ContainerRecord]) -> Bindings<'a> {
    Bindings {
        service_of: [("web", "prod/bank")].into_iter().collect(),
        records: [("prod/bank", records)].into_iter().collect(),
        owned_elsewhere: BTreeMap::new(),
    }
}

#[test]
fn ours_out_of_its_pool_moves_and_a_foreign_holder_is_left() {
    let findings = vec![
        Finding::OutOfPool {
            binding: "prod/bank".into(),
            holder: holder("node2", "aaaaaaaaaaaa", Some("web")),
            ip: ip("192.168.8.250"),
        },
        Finding::ForeignInPool {
            binding: "prod/bank".into(),
            holder: holder("node1", "ffffffffffff", None),
            ip: ip("192.168.8.11"),
            pool_of: "web".into(),
        },
    ];
    let r = plan(&findings, &ours(&[]));
    assert_eq!(
        r.steps,
        vec![
            Step::Disconnect {
                node: "node2".into(),
                container: "aaaaaaaaaaaa".into(),
                network: "vlan8".into(),
                ip: Some(ip("192.168.8.250")),
                because: "192.168.8.250 is outside the pool of service web".into(),
            },
            Step::Rebind {
                binding: "prod/bank".into(),
                service: "web".into(),
            },
        ]
    );
    assert_eq!(r.left.len(), 1);
    assert!(r.left[0].why.contains("never touched"), "{}", r.left[0].why);
    // The foreign container is in no step.
    assert!(
        !r.to_string().contains("disconnect container ffffffffffff"),
        "{r}"
    );
}

#[test]
fn of_two_of_ours_on_one_address_the_remembered_one_keeps_it() {
    let both = vec![
        holder("node1", "aaaaaaaaaaaa", Some("web")),
        holder("node3", "bbbbbbbbbbbb", Some("web")),
    ];
    // The records say b has it: a moves, whatever the order.
    let records = [record("bbbbbbbbbbbbfull", "192.168.8.10")];
    let r = plan(
        &[Finding::DuplicateAddress {
            ip: ip("192.168.8.10"),
            holders: both.clone(),
        }],
        &ours(&records),
    );
    let moved: Vec<&str> = r
        .steps
        .iter()
        .filter_map(|s| match s {
            Step::Disconnect { container, .. } => Some(container.as_str()),
            Step::Rebind { .. } => None,
        })
        .collect();
    assert_eq!(moved, vec!["aaaaaaaaaaaa"]);
    assert!(r.steps.contains(&Step::Rebind {
        binding: "prod/bank".into(),
        service: "web".into()
    }));
    // With a foreign holder among them nothing is touched.
    let mut with_stranger = both;
    with_stranger.push(holder("node2", "ffffffffffff", None));
    let r = plan(
        &[Finding::DuplicateAddress {
            ip: ip("192.168.8.10"),
            holders: with_stranger,
        }],
        &ours(&records),
    );
    assert!(r.is_empty(), "{r}");
    assert_eq!(r.left.len(), 1);
}

#[test]
fn what_a_deleted_binding_left_is_released_but_a_hand_connected_container_is_not() {
    let r = plan(
        &[
            Finding::LeftBehind {
                holder: holder("node1", "aaaaaaaaaaaa", Some("old-web")),
                ip: Some(ip("192.168.8.20")),
            },
            Finding::LeftBehind {
                holder: holder("node1", "ffffffffffff", None),
                ip: Some(ip("192.168.8.21")),
            },
            Finding::Unbound {
                binding: "prod/bank".into(),
                service: "web".into(),
                node: "node2".into(),
                container: "cccccccccccc".into(),
                network: "vlan8".into(),
            },
            Finding::NodeUnreadable {
                node: "node3".into(),
                message: "engine unreachable".into(),
            },
        ],
        &ours(&[]),
    );
    assert_eq!(r.steps.len(), 2, "{r}");
    assert!(
        matches!(&r.steps[0], Step::Disconnect { container, .. } if container == "aaaaaaaaaaaa")
    );
    assert!(matches!(&r.steps[1], Step::Rebind { service, .. } if service == "web"));
    assert_eq!(r.left.len(), 2, "{r}");
}

#[test]
fn a_report_entry_that_changed_since_is_refused() {
    let then = AuditReport {
        findings: vec![
            Finding::Unbound {
                binding: "prod/bank".into(),
                service: "web".into(),
                node: "node2".into(),
                container: "cccccccccccc".into(),
                network: "vlan8".into(),
            },
            Finding::OutOfPool {
                binding: "prod/bank".into(),
                holder: holder("node2", "aaaaaaaaaaaa", Some("web")),
                ip: ip("192.168.8.250"),
            },
        ],
        ..Default::default()
    };
    // The report as `audit -o json` writes it, read back.
    let text = serde_json::to_string_pretty(&then).unwrap();
    let earlier: EarlierReport = serde_json::from_str(&text).unwrap();
    assert_eq!(earlier.findings, then.findings);
    // Since then the container moved to another address outside the pool.
    let now = vec![
        then.findings[0].clone(),
        Finding::OutOfPool {
            binding: "prod/bank".into(),
            holder: holder("node2", "aaaaaaaaaaaa", Some("web")),
            ip: ip("192.168.8.251"),
        },
    ];
    let (keep, refused) = still_holding(&earlier.findings, &now);
    assert_eq!(keep, vec![then.findings[0].clone()]);
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].finding, then.findings[1]);
}

#[test]
fn a_conf_json_repair_keeps_off_a_service_an_operator_owns() {
    let mut b = ours(&[]);
    b.owned_elsewhere.insert(
        "web",
        "service web is owned by MacvlanBinding prod/bank".into(),
    );
    let r = plan(
        &[Finding::Unbound {
            binding: "conf.json".into(),
            service: "web".into(),
            node: "node2".into(),
            container: "cccccccccccc".into(),
            network: "vlan8".into(),
        }],
        &b,
    );
    assert!(r.is_empty(), "{r}");
    assert!(r.left[0].why.contains("owned by MacvlanBinding"));
}
