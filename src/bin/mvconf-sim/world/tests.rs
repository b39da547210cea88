use super::*;

fn macvlan(name: &str, subnet: &str, parent: &str) -> Value {
    json!({"Name": name, "Driver": "macvlan", "IPAM": {"Config": [{"Subnet": subnet,
           "Gateway": subnet.replace(".0/24", ".1")}]}, "Options": {"parent": parent}})
}

fn world_with_service(replicas: u64) -> World {
    let mut w = World::new(0, 3);
    w.create_service("web", Mode::Replicated(replicas), false)
        .unwrap();
    w
}

fn container_on(w: &World, node: usize) -> String {
    w.nodes[node].containers.keys().next().unwrap().clone()
}

fn message(a: &Answer) -> &str {
    a.1["message"].as_str().unwrap_or_default()
}

#[test]
fn replicas_spread_over_the_nodes_with_swarm_labels() {
    let w = world_with_service(3);
    for n in &w.nodes {
        assert_eq!(n.containers.len(), 1);
        let c = n.containers.values().next().unwrap();
        assert_eq!(c.labels["com.docker.swarm.service.name"], "web");
        assert_eq!(c.labels["com.docker.swarm.node.id"], n.id);
    }
    let (_, tasks) = w.tasks_json(0, &["web".into()], &["running".into()]);
    assert_eq!(tasks.as_array().unwrap().len(), 3);
    // Workers cannot answer for the swarm.
    assert_eq!(w.tasks_json(1, &[], &[]).0, 503);
}

#[test]
fn per_node_ipam_hands_out_the_same_address_on_two_nodes() {
    let mut w = world_with_service(3);
    for k in 0..2 {
        let (created, events) = w.network_create(k, &macvlan("mv", "192.168.50.0/24", "eth1"));
        assert_eq!(created.0, 201);
        assert_eq!(events.len(), 1, "dockerd's network create event");
        assert_eq!(events[0].event["Action"], "create");
    }
    let a = container_on(&w, 0);
    let b = container_on(&w, 1);
    assert_eq!(w.connect(0, "mv", &json!({"Container": a})).0.0, 200);
    assert_eq!(w.connect(1, "mv", &json!({"Container": b})).0.0, 200);
    let ip = |w: &World, k: usize, c: &str| {
        w.nodes[k].containers[c]
            .endpoints
            .values()
            .next()
            .unwrap()
            .ip
    };
    assert_eq!(ip(&w, 0, &a), ip(&w, 1, &b));
    assert_eq!(ip(&w, 0, &a), Some("192.168.50.2".parse().unwrap()));
}

#[test]
fn errors_are_worded_as_dockerd_words_them() {
    let mut w = world_with_service(3);
    w.network_create(0, &macvlan("mv", "192.168.50.0/24", "eth1"));
    let (dup, none) = w.network_create(0, &macvlan("mv", "192.168.51.0/24", "eth2"));
    assert!(none.is_empty(), "no event for a refusal");
    assert_eq!(
        (dup.0, message(&dup)),
        (409, "network with name mv already exists")
    );
    let (parent, _) = w.network_create(0, &macvlan("mv2", "192.168.52.0/24", "eth1"));
    assert_eq!(parent.0, 403);
    assert!(message(&parent).contains("is already using parent interface eth1"));
    let a = container_on(&w, 0);
    let with =
        |ip: &str| json!({"Container": a, "EndpointConfig": {"IPAMConfig": {"IPv4Address": ip}}});
    assert_eq!(w.connect(0, "mv", &with("192.168.9.9")).0.0, 400);
    assert_eq!(
        w.connect(0, "mv", &with("192.168.50.1")).0,
        refuse(403, "Address already in use")
    );
    assert_eq!(w.connect(0, "mv", &with("192.168.50.7")).0.0, 200);
    let (again, _) = w.connect(0, "mv", &with("192.168.50.8"));
    assert!(message(&again).contains("already exists in network mv"));
    assert_eq!(
        w.connect(0, "mv", &json!({"Container": "nope"})).0,
        refuse(404, "No such container: nope")
    );
    let (busy, _) = w.network_remove(0, "mv");
    assert!(message(&busy).contains("has active endpoints"));
    assert_eq!(w.disconnect(0, "mv", &json!({"Container": a})).0.0, 200);
    let (not, _) = w.disconnect(0, "mv", &json!({"Container": a}));
    assert!(message(&not).contains("is not connected to network mv"));
    let (removed, events) = w.network_remove(0, "mv");
    assert_eq!(removed.0, 204);
    assert_eq!(events[0].event["Action"], "destroy");
}

#[test]
fn a_killed_task_comes_back_in_its_slot_without_its_manual_connections() {
    let mut w = world_with_service(3);
    w.network_create(0, &macvlan("mv", "192.168.50.0/24", "eth1"));
    let a = container_on(&w, 0);
    let slot = w.tasks.iter().find(|t| t.container == a).unwrap().slot;
    let ip =
        json!({"Container": a, "EndpointConfig": {"IPAMConfig": {"IPv4Address": "192.168.50.9"}}});
    w.connect(0, "mv", &ip);
    let (task, events) = w.kill(&a[..12]).unwrap();
    assert_eq!(events[0].event["Action"], "die");
    let events = w.replace(&task.unwrap());
    assert_eq!(events[0].event["Action"], "start");
    let new = w
        .tasks
        .iter()
        .find(|t| t.desired == "running" && t.slot == slot)
        .unwrap();
    assert_ne!(new.container, a);
    let c = &w.nodes[new.node].containers[&new.container];
    assert!(
        c.endpoints.is_empty(),
        "the replacement has no macvlan endpoint"
    );
    // The old one is still there, exited, holding no address.
    assert!(!w.nodes[0].containers[&a].running);
    assert!(
        w.nodes[0].containers[&a]
            .endpoints
            .values()
            .all(|e| e.ip.is_none())
    );
}

#[test]
fn the_name_filter_of_services_is_a_prefix_match_and_ingress_is_swarm_wide() {
    let mut w = World::new(0, 2);
    w.create_service("web", Mode::Replicated(1), false).unwrap();
    w.create_service("web-admin", Mode::Global, true).unwrap();
    let (_, all) = w.services_json(0, &["web".into()]);
    assert_eq!(all.as_array().unwrap().len(), 2);
    let ingress: Vec<&String> = w
        .nodes
        .iter()
        .flat_map(|n| n.networks.values().filter(|x| x.ingress).map(|x| &x.id))
        .collect();
    assert_eq!(ingress.len(), 2);
    assert_eq!(ingress[0], ingress[1]);
}
