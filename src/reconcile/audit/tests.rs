use super::*;
use crate::config::{Loaded, parse};
use crate::crd::ContainerRecord;
use crate::reconcile::{EndpointView, ServiceView};
use std::path::Path;

fn binding(extra: &str) -> Loaded {
    let text = format!(
        r#"
apiVersion: mvconf.io/v1alpha1
kind: MacvlanBinding
metadata: {{name: b, namespace: ns}}
spec:
  networks:
    - {{name: mv, subnet: 192.168.8.0/24, gateway: 192.168.8.1, parent: mv0}}
    - {{name: mv2, subnet: 192.168.9.0/24, gateway: 192.168.9.1, parent: mv1}}
  services:
    - {{name: web, network: mv, ipPool: ["192.168.8.10-192.168.8.19"]}}
    - {{name: db, network: mv2, ipPool: ["192.168.9.10-192.168.9.19"]}}
{extra}"#
    );
    parse(&text, Path::new("b.yaml")).unwrap()
}

fn net(name: &str, subnet: &str) -> NetView {
    NetView {
        id: format!("id-{name}"),
        name: name.into(),
        driver: "macvlan".into(),
        subnet: Some(subnet.into()),
        managed: true,
        owner: None,
        ..Default::default()
    }
}

fn world() -> Snapshot {
    let nodes: Vec<NodeView> = (1..=3)
        .map(|k| NodeView {
            id: format!("n{k}"),
            hostname: format!("node{k}"),
            state: "ready".into(),
            networks: vec![net("mv", "192.168.8.0/24"), net("mv2", "192.168.9.0/24")],
            ..Default::default()
        })
        .collect();
    Snapshot {
        nodes: nodes.into(),
        services: ["web", "db"]
            .iter()
            .map(|s| ServiceView {
                id: format!("svc-{s}"),
                name: (*s).into(),
                ..Default::default()
            })
            .collect(),
        missing_services: vec![],
    }
}

/// A running container of `service` on node `k`, attached to `net` with `ip`.
fn put(w: &mut Snapshot, k: usize, id: &str, service: &str, eps: &[(&str, Option<&str>)]) {
    w.nodes_mut()[k - 1].containers_mut().push(ContainerView {
        id: format!("{id:0<64}"),
        running: true,
        service: (!service.is_empty()).then(|| service.to_owned()),
        task: Some(format!("t-{id}")),
        endpoints: eps
            .iter()
            .map(|(n, ip)| EndpointView {
                network: (*n).into(),
                ip: ip.map(|s| s.parse().unwrap()),
                requested: None,
            })
            .collect(),
    });
}

fn run(b: &Loaded, w: &Snapshot, complete: bool) -> AuditReport {
    let subjects = [Subject {
        name: "ns/b",
        desired: &b.desired,
        status: b.status.as_ref(),
    }];
    audit(&subjects, w, AuditOptions { complete })
}

fn healthy() -> Snapshot {
    let mut w = world();
    put(&mut w, 1, "aaa1", "web", &[("mv", Some("192.168.8.10"))]);
    put(&mut w, 2, "aaa2", "web", &[("mv", Some("192.168.8.11"))]);
    put(&mut w, 3, "bbb1", "db", &[("mv2", Some("192.168.9.10"))]);
    w
}

#[test]
fn a_healthy_swarm_is_clean() {
    let b = binding("");
    let r = run(&b, &healthy(), true);
    assert!(r.clean(), "{r}");
    assert_eq!(r.nodes_read, 3);
    assert_eq!(r.service_containers, 3);
    assert_eq!(r.macvlan_endpoints, 3);
}

#[test]
fn one_address_on_two_nodes_is_found_whoever_holds_it() {
    let b = binding("");
    let mut w = healthy();
    put(&mut w, 3, "ccc1", "", &[("mv", Some("192.168.8.11"))]);
    let r = run(&b, &w, false);
    let dups = r.of_kind("DuplicateAddress");
    assert_eq!(dups.len(), 1, "{r}");
    let Finding::DuplicateAddress { ip, holders } = dups[0] else {
        unreachable!()
    };
    assert_eq!(ip.to_string(), "192.168.8.11");
    let nodes: Vec<&str> = holders.iter().map(|h| h.node.as_str()).collect();
    assert_eq!(nodes, ["node2", "node3"]);
    // The stranger also holds an address of web's pool.
    assert_eq!(r.of_kind("ForeignInPool").len(), 1, "{r}");
    assert!(!r.clean());
}

#[test]
fn the_same_address_on_different_segments_is_not_a_duplicate() {
    let b = binding("");
    let mut w = healthy();
    w.nodes_mut()[0].networks.push(net("other", "10.0.0.0/24"));
    put(&mut w, 1, "ddd1", "", &[("other", Some("192.168.8.10"))]);
    let r = run(&b, &w, false);
    assert!(r.of_kind("DuplicateAddress").is_empty(), "{r}");
}

#[test]
fn out_of_pool_wrong_network_and_unbound_are_named() {
    let b = binding("");
    let mut w = world();
    put(&mut w, 1, "aaa1", "web", &[("mv", Some("192.168.8.50"))]);
    put(&mut w, 2, "aaa2", "web", &[("mv2", Some("192.168.9.11"))]);
    put(&mut w, 3, "aaa3", "web", &[]);
    let r = run(&b, &w, false);
    let out = r.of_kind("OutOfPool");
    assert_eq!(out.len(), 1, "{r}");
    assert!(out[0].to_string().contains("192.168.8.50"), "{}", out[0]);
    assert_eq!(r.of_kind("WrongNetwork").len(), 1, "{r}");
    // aaa2 and aaa3 have no address on mv.
    assert_eq!(r.of_kind("Unbound").len(), 2, "{r}");
    // And aaa2's address is in db's pool without being db's.
    assert_eq!(r.of_kind("ForeignInPool").len(), 1, "{r}");
}

#[test]
fn stopped_containers_and_other_drivers_do_not_count() {
    let b = binding("");
    let mut w = healthy();
    put(&mut w, 3, "eee1", "web", &[("mv", Some("192.168.8.11"))]);
    w.nodes_mut()[2]
        .containers_mut()
        .last_mut()
        .unwrap()
        .running = false;
    let r = run(&b, &w, true);
    assert!(r.clean(), "{r}");
}

#[test]
fn an_unreadable_node_is_a_finding() {
    let b = binding("");
    let mut w = healthy();
    w.nodes_mut()[1].problem = Some("connection refused".into());
    let r = run(&b, &w, false);
    assert_eq!(r.of_kind("NodeUnreadable").len(), 1, "{r}");
    assert_eq!(r.nodes_read, 2);
}

fn record(service: &str, slot: u64, node: usize, container: &str, ip: &str) -> ContainerRecord {
    ContainerRecord {
        service: service.into(),
        slot: Some(slot),
        node_id: format!("n{node}"),
        node: format!("node{node}"),
        container: format!("{container:0<12}"),
        ip: Some(ip.into()),
        state: RecordState::Bound,
        ..Default::default()
    }
}

fn with_status(records: Vec<ContainerRecord>) -> Loaded {
    let mut b = binding("");
    b.status = Some(MacvlanBindingStatus {
        containers: records,
        ..Default::default()
    });
    b
}

#[test]
fn a_status_that_matches_docker_is_clean() {
    let b = with_status(vec![
        record("web", 1, 1, "aaa1", "192.168.8.10"),
        record("web", 2, 2, "aaa2", "192.168.8.11"),
        record("db", 1, 3, "bbb1", "192.168.9.10"),
    ]);
    let r = run(&b, &healthy(), true);
    assert!(r.clean(), "{r}");
    assert_eq!(r.status_records, 3);
}

#[test]
fn a_status_docker_contradicts_is_found() {
    let b = with_status(vec![
        // wrong address
        record("web", 1, 1, "aaa1", "192.168.8.12"),
        // no such container
        record("web", 3, 2, "fff9", "192.168.8.13"),
        // bbb1 bound but missing; web.2 (aaa2) bound but missing
    ]);
    let r = run(&b, &healthy(), false);
    let found = r.of_kind("StatusContradicted");
    assert_eq!(found.len(), 4, "{r}");
    let text = r.to_string();
    assert!(
        text.contains("Bound with 192.168.8.12; Docker shows 192.168.8.10 on mv"),
        "{text}"
    );
    assert!(text.contains("no such container"), "{text}");
    assert!(text.contains("says nothing about this container"), "{text}");
}

#[test]
fn with_every_binding_known_endpoints_nobody_claims_are_left_behind() {
    let b = binding("");
    let mut w = healthy();
    w.nodes_mut()[0]
        .networks
        .push(net("gone", "192.168.50.0/24"));
    put(&mut w, 1, "ggg1", "old", &[("gone", Some("192.168.50.10"))]);
    put(&mut w, 2, "ggg2", "old", &[("mv", Some("192.168.8.99"))]);
    let partial = run(&b, &w, false);
    assert!(partial.of_kind("LeftBehind").is_empty(), "{partial}");
    assert!(partial.clean(), "{partial}");
    assert!(
        partial.to_string().contains("outside the binding's pools"),
        "{partial}"
    );
    let complete = run(&b, &w, true);
    assert_eq!(complete.of_kind("LeftBehind").len(), 2, "{complete}");
    assert!(
        complete
            .to_string()
            .contains("network gone was created by mvconf"),
        "{complete}"
    );
    // A network mvconf did not create is someone else's business.
    w.nodes_mut()[0].networks.iter_mut().for_each(|n| {
        if n.name == "gone" {
            n.managed = false;
        }
    });
    let complete = run(&b, &w, true);
    assert_eq!(complete.of_kind("LeftBehind").len(), 1, "{complete}");
}

#[test]
fn findings_serialize_with_their_kind() {
    let b = binding("");
    let mut w = healthy();
    put(&mut w, 3, "ccc1", "", &[("mv", Some("192.168.8.11"))]);
    let r = run(&b, &w, false);
    let json = serde_json::to_value(&r).unwrap();
    let kinds: Vec<&str> = json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"DuplicateAddress"), "{json}");
    assert_eq!(json["findings"][0]["holders"][0]["node"], "node2");
}
