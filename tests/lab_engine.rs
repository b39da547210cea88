//! The Docker / DCE client against the real lab: 3 dockerd nodes in one
//! swarm, and the nginx DCE gateway in front of them.
//!
//! The scenarios listed in `conformance!` run twice: on the lab and on the
//! Docker Engine simulator (`mvconf-sim`), which the scale benchmarks use
//! in place of 1,000 real nodes. What holds on real engines must hold on
//! it, or the simulated figures mean nothing.

mod common;

use common::target::Target;
use common::{Lab, Mode, unique, wait_for};
use mvconf::cluster::{Cluster, ClusterNode};
use mvconf::engine::events::{Watch, watch};
use mvconf::engine::models::{Ipam, IpamConfig, NetworkCreate, labels};
use mvconf::engine::transport::Auth;
use mvconf::engine::{Engine, ErrorKind};
use mvconf::secret::SecretString;
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

fn macvlan(name: &str, third_octet: u8, parent: &str) -> NetworkCreate {
    NetworkCreate {
        name: name.to_owned(),
        driver: "macvlan".into(),
        check_duplicate: true,
        ipam: Ipam {
            driver: "default".into(),
            config: vec![IpamConfig {
                subnet: format!("192.168.{third_octet}.0/24"),
                gateway: format!("192.168.{third_octet}.1"),
                ip_range: String::new(),
            }],
        },
        options: HashMap::from([("parent".to_owned(), parent.to_owned())]),
        labels: HashMap::from([(labels::MANAGED_BY.to_owned(), "mvconf-test".to_owned())]),
    }
}

async fn create_everywhere(nodes: &[ClusterNode], spec: &NetworkCreate) {
    for n in nodes {
        match n.engine.create_network(spec).await {
            Ok(_) => {}
            Err(e) if e.kind == ErrorKind::AlreadyExists => {}
            Err(e) => panic!("{e}"),
        }
    }
}

async fn remove_everywhere(nodes: &[ClusterNode], name: &str) {
    for n in nodes {
        let _ = n.engine.remove_network(name).await;
    }
}

async fn network_round_trip(cluster: &Cluster, t: &Target, name: &str, octet: u8, parent: &str) {
    let _guard = t.networks_guard(&[name]);
    let nodes = cluster.nodes().await.expect("nodes");
    assert_eq!(nodes.len(), t.nodes(), "{nodes:?}");
    let spec = macvlan(name, octet, parent);
    for n in &nodes {
        let created = n
            .engine
            .create_network(&spec)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(!created.id.is_empty());
        // A second create is refused with a typed error.
        let again = n
            .engine
            .create_network(&spec)
            .await
            .expect_err("duplicate create");
        assert_eq!(again.kind, ErrorKind::AlreadyExists, "{again}");
        assert!(again.to_string().contains(&n.hostname), "{again}");
    }
    for n in &nodes {
        let net = n
            .engine
            .network(name)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(net.driver, "macvlan");
        assert_eq!(net.options.get("parent").map(String::as_str), Some(parent));
        assert_eq!(net.ipam.config[0].subnet, format!("192.168.{octet}.0/24"));
        let listed = n.engine.networks().await.unwrap();
        assert!(listed.iter().any(|x| x.name == name));
        assert!(
            listed.iter().any(|x| x.ingress),
            "the swarm ingress network is recognised by its flag"
        );
    }
    for n in &nodes {
        n.engine
            .remove_network(name)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let gone = n.engine.network(name).await.expect_err("removed");
        assert_eq!(gone.kind, ErrorKind::NotFound, "{gone}");
    }
}

/// Runs each scenario on the lab (skipped when it is not up) and on a
/// fresh simulator.
macro_rules! conformance {
    ($($scenario:ident),* $(,)?) => {
        $(
            mod $scenario {
                #[tokio::test]
                async fn on_the_lab() {
                    let Some(t) = super::Target::lab() else { return };
                    super::$scenario(&t).await;
                }

                #[tokio::test]
                async fn on_the_simulator() {
                    super::$scenario(&super::Target::sim()).await;
                }
            }
        )*
    };
}

conformance!(
    networks_are_created_inspected_and_removed_on_every_node_through_dce,
    connect_with_a_fixed_address_and_the_typed_refusals,
    per_node_ipam_hands_out_the_same_address_on_two_nodes,
    services_map_to_tasks_nodes_and_containers_across_the_swarm,
    events_report_a_kill_and_the_replacement_within_a_second,
    events_report_every_change_to_a_nodes_networks_and_endpoints,
    a_container_is_read_alone_by_its_id,
    dce_refuses_a_wrong_password_without_repeating_it,
);

#[tokio::test]
async fn networks_are_created_inspected_and_removed_on_every_node_directly() {
    let Some(lab) = Lab::get() else { return };
    let cluster = lab.docker_cluster();
    let parent = lab.parent(1);
    let t = Target::Lab(lab);
    network_round_trip(&cluster, &t, &unique("mvt-direct"), 101, &parent).await;
}

async fn networks_are_created_inspected_and_removed_on_every_node_through_dce(t: &Target) {
    let cluster = t.dce_cluster();
    assert_eq!(
        cluster.dce_version().await.unwrap().as_deref(),
        Some("2.10.0")
    );
    network_round_trip(&cluster, t, &unique("mvt-dce"), 102, &t.parent(2)).await;
}

/// (node, container) of every running task of a service, once all run.
async fn running_tasks(
    cluster: &Cluster,
    service: &str,
    want: usize,
) -> Vec<(String, String, Option<u64>, String)> {
    wait_for(
        &format!("{want} running tasks of {service}"),
        Duration::from_secs(60),
        || async {
            let svc = cluster.manager().service(service).await.ok()??;
            let tasks = cluster
                .manager()
                .tasks(&[svc.id.as_str()], true)
                .await
                .ok()?;
            let running: Vec<_> = tasks
                .iter()
                .filter(|t| t.status.state == mvconf::engine::models::TaskState::Running)
                .filter_map(|t| {
                    Some((
                        t.node_id.clone(),
                        t.container_id()?.to_owned(),
                        t.slot,
                        t.id.clone(),
                    ))
                })
                .collect();
            (running.len() == want).then_some(running)
        },
    )
    .await
}

fn engine_of<'a>(nodes: &'a [ClusterNode], node_id: &str) -> &'a Engine {
    &nodes
        .iter()
        .find(|n| n.id == node_id)
        .expect("task on a known node")
        .engine
}

async fn connect_with_a_fixed_address_and_the_typed_refusals(t: &Target) {
    // Straight to the engines on the lab, through the controller on the simulator.
    let cluster = match t {
        Target::Lab(lab) => lab.docker_cluster(),
        Target::Sim(_) => t.dce_cluster(),
    };
    let svc = t.service(&unique("mvt-conn"), Mode::Replicated(1));
    let nodes = cluster.nodes().await.unwrap();
    let net = unique("mvt-conn-net");
    let _guard = t.networks_guard(&[&net]);
    create_everywhere(&nodes, &macvlan(&net, 103, &t.parent(3))).await;

    let tasks = running_tasks(&cluster, svc.name(), 1).await;
    let (node_id, container, _, _) = &tasks[0];
    let engine = engine_of(&nodes, node_id);
    let ip = Ipv4Addr::new(192, 168, 103, 10);
    engine
        .connect(&net, container, Some(ip))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let inspect = engine.container(container).await.unwrap();
    assert_eq!(
        inspect.network_settings.networks[&net].ip_address,
        ip.to_string()
    );

    let twice = engine
        .connect(&net, container, Some(ip))
        .await
        .expect_err("connected twice");
    assert_eq!(twice.kind, ErrorKind::AlreadyConnected, "{twice}");

    // Another container on the same node asking for the same address.
    let k = nodes.iter().position(|n| &n.id == node_id).unwrap() + 1;
    let other = unique("mvt-conn-other");
    t.run_plain(k, &other);
    let taken = engine
        .connect(&net, &other, Some(ip))
        .await
        .expect_err("address in use");
    assert_eq!(taken.kind, ErrorKind::AddressInUse, "{taken}");
    assert!(
        taken.to_string().contains("connect") && taken.to_string().contains(&nodes[k - 1].hostname),
        "{taken}"
    );

    let outside = engine
        .connect(&net, &other, Some(Ipv4Addr::new(10, 9, 9, 9)))
        .await
        .expect_err("outside the subnet");
    assert_eq!(outside.kind, ErrorKind::InvalidAddress, "{outside}");

    let missing = engine
        .connect(&net, "0123456789ab", Some(Ipv4Addr::new(192, 168, 103, 11)))
        .await
        .expect_err("no such container");
    assert_eq!(missing.kind, ErrorKind::NotFound, "{missing}");

    engine
        .disconnect(&net, container, true)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let again = engine
        .disconnect(&net, container, false)
        .await
        .expect_err("not connected");
    assert!(
        matches!(
            again.kind,
            ErrorKind::NotConnected | ErrorKind::NotFound | ErrorKind::Engine
        ),
        "{again}"
    );

    t.remove_container(k, &other);
    drop(svc);
    wait_for(
        "service containers gone",
        Duration::from_secs(30),
        || async {
            let mut left = 0;
            for n in &nodes {
                left += n
                    .engine
                    .network(&net)
                    .await
                    .ok()?
                    .containers
                    .unwrap_or_default()
                    .len();
            }
            (left == 0).then_some(())
        },
    )
    .await;
    remove_everywhere(&nodes, &net).await;
}

/// Docker's macvlan IPAM is per node (moby #49921): two nodes hand the
/// same first address to containers connected without one. Only a
/// cluster-wide allocator (mvconf) prevents it; the simulator must let it
/// happen, or a scale run would hide the very bug mvconf exists for.
async fn per_node_ipam_hands_out_the_same_address_on_two_nodes(t: &Target) {
    let cluster = t.dce_cluster();
    let nodes = cluster.nodes().await.unwrap();
    let net = unique("mvt-ipam-net");
    let _guard = t.networks_guard(&[&net]);
    create_everywhere(&nodes, &macvlan(&net, 105, &t.parent(5))).await;
    let names = [unique("mvt-ipam-a"), unique("mvt-ipam-b")];
    let mut ips = Vec::new();
    for (k, name) in [(1, &names[0]), (2, &names[1])] {
        t.run_plain(k, name);
        let engine = &nodes[k - 1].engine;
        engine
            .connect(&net, name, None)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let inspect = engine.container(name).await.unwrap();
        ips.push(inspect.network_settings.networks[&net].ip_address.clone());
    }
    for (k, name) in [(1, &names[0]), (2, &names[1])] {
        t.remove_container(k, name);
    }
    remove_everywhere(&nodes, &net).await;
    assert_eq!(ips[0], ips[1], "two nodes, two containers, one address");
    assert_eq!(ips[0], "192.168.105.2");
}

async fn services_map_to_tasks_nodes_and_containers_across_the_swarm(t: &Target) {
    let cluster = t.dce_cluster();
    let name = unique("mvt-map");
    let global = unique("mvt-map-global");
    let _svc = t.service(&name, Mode::Replicated(4));
    let _glob = t.service(&global, Mode::Global);
    // The name filter is a prefix match: an exact lookup must not confuse
    // `mvt-map-N` with `mvt-map-N-global`.
    let found = cluster
        .manager()
        .service(&name)
        .await
        .unwrap()
        .expect("service");
    assert_eq!(found.spec.name, name);
    assert_eq!(found.replicas(), Some(4));
    assert!(
        cluster
            .manager()
            .service(&global)
            .await
            .unwrap()
            .unwrap()
            .is_global()
    );
    assert!(
        cluster
            .manager()
            .service("mvt-map")
            .await
            .unwrap()
            .is_none()
    );

    let nodes = cluster.nodes().await.unwrap();
    for (svc, want, replicated) in [(&name, 4, true), (&global, t.nodes(), false)] {
        let tasks = running_tasks(&cluster, svc, want).await;
        let mut slots = Vec::new();
        for (node_id, container, slot, task_id) in &tasks {
            assert_eq!(
                slot.is_some(),
                replicated,
                "{svc}: slots only for replicated services"
            );
            slots.extend(*slot);
            let engine = engine_of(&nodes, node_id);
            let listed = engine
                .containers(false, &[&format!("{}={svc}", labels::SERVICE_NAME)])
                .await
                .unwrap();
            let c = listed
                .iter()
                .find(|c| &c.id == container)
                .unwrap_or_else(|| panic!("{container} not on its node"));
            assert_eq!(c.labels.get(labels::TASK_ID), Some(task_id));
            assert_eq!(c.labels.get(labels::NODE_ID), Some(node_id));
        }
        slots.sort_unstable();
        if replicated {
            assert_eq!(slots, [1, 2, 3, 4]);
        } else {
            let mut on: Vec<&String> = tasks.iter().map(|t| &t.0).collect();
            on.sort();
            on.dedup();
            assert_eq!(on.len(), t.nodes(), "one global task per node");
        }
    }
    // The replicas spread over more than one node.
    let tasks = running_tasks(&cluster, &name, 4).await;
    let mut on: Vec<&String> = tasks.iter().map(|t| &t.0).collect();
    on.sort();
    on.dedup();
    assert!(on.len() > 1, "4 replicas on one node of {}", t.nodes());
}

fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

async fn events_report_a_kill_and_the_replacement_within_a_second(t: &Target) {
    let cluster = t.dce_cluster();
    let svc = t.service(&unique("mvt-events"), Mode::Replicated(1));
    let nodes = cluster.nodes().await.unwrap();
    let tasks = running_tasks(&cluster, svc.name(), 1).await;
    let (node_id, container, _, _) = tasks[0].clone();

    let (tx, mut rx) = mpsc::channel(256);
    let watchers: Vec<_> = nodes
        .iter()
        .map(|n| tokio::spawn(watch(n.engine.clone(), tx.clone(), Duration::from_secs(2))))
        .collect();
    let mut connected = 0;
    while connected < nodes.len() {
        match tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("watchers connect")
        {
            Some(Watch::Connected { .. }) => connected += 1,
            Some(Watch::Lost { error, .. }) => panic!("{error}"),
            _ => {}
        }
    }

    let k = nodes.iter().position(|n| n.id == node_id).unwrap() + 1;
    let killed_at = Instant::now();
    t.kill(k, &container);
    let mut died = None;
    let mut started = None;
    let deadline = Instant::now() + Duration::from_secs(40);
    while started.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(Some(msg)) = tokio::time::timeout(left, rx.recv()).await else {
            panic!("no replacement start event (died: {died:?})");
        };
        if let Watch::Event { node, event } = msg {
            let service = event.actor.attributes.get(labels::SERVICE_NAME);
            if service.map(String::as_str) != Some(svc.name()) {
                continue;
            }
            let lag_ms = (now_nanos() - event.time_nano) / 1_000_000;
            match event.action.as_str() {
                "die" if event.actor.id == container => {
                    assert!(
                        killed_at.elapsed() < Duration::from_secs(1),
                        "die reported {:?} after the kill",
                        killed_at.elapsed()
                    );
                    died = Some((node, lag_ms));
                }
                "start" if event.actor.id != container => {
                    assert!(
                        died.is_some(),
                        "replacement started before the death was seen"
                    );
                    started = Some((node, lag_ms));
                }
                _ => {}
            }
        }
    }
    let (_, die_lag) = died.unwrap();
    let (_, start_lag) = started.unwrap();
    assert!(
        die_lag < 1000 && start_lag < 1000,
        "event lag: die {die_lag} ms, start {start_lag} ms"
    );
    for w in watchers {
        w.abort();
    }
}

async fn dce_refuses_a_wrong_password_without_repeating_it(t: &Target) {
    let wrong = "Wr0ng-Pa55word-XYZ";
    let (user, password) = t.dce_login();
    let cluster = t.dce_cluster_with(Auth::Basic {
        username: user,
        password: SecretString::new(wrong),
    });
    let err = cluster.nodes().await.expect_err("refused");
    assert_eq!(err.kind, ErrorKind::Auth, "{err}");
    let text = format!("{err} {err:?}");
    assert!(!text.contains(wrong), "{text}");
    assert!(!text.contains(&password), "{text}");
    // Per-node paths demand the same auth.
    let anon = t.dce_cluster_with(Auth::None);
    assert_eq!(
        anon.manager().info().await.expect_err("no creds").kind,
        ErrorKind::Auth
    );
}

#[tokio::test]
async fn dce_without_credentials_works_when_anonymous_access_is_on() {
    let Some(lab) = Lab::get() else { return };
    let cluster = lab.dce_cluster_with(&lab.dce_anon_url, Auth::None, None);
    let nodes = cluster.nodes().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(nodes.len(), lab.nodes);
    for n in &nodes {
        let info = n.engine.info().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            info.name, n.hostname,
            "the proxy path reaches the right node"
        );
    }
}

#[tokio::test]
async fn works_when_pinned_to_api_1_30() {
    let Some(lab) = Lab::get() else { return };
    let cluster = lab.dce_cluster_with(&lab.dce_url, lab.dce_auth(), Some("1.30"));
    let nodes = cluster.nodes().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cluster.manager().api_version().await.unwrap(), "1.30");
    let net = unique("mvt-v130");
    let _guard = lab.networks_guard(&[&net]);
    create_everywhere(&nodes, &macvlan(&net, 104, &lab.parent(4))).await;
    for n in &nodes {
        assert_eq!(n.engine.api_version().await.unwrap(), "1.30");
        let nets = n.engine.networks().await.unwrap();
        assert!(nets.iter().any(|x| x.name == net));
        assert!(n.engine.containers(true, &[]).await.is_ok());
    }
    remove_everywhere(&nodes, &net).await;
    // A version the engine does not speak is refused clearly.
    let future = lab.dce_cluster_with(&lab.dce_url, lab.dce_auth(), Some("9.99"));
    let err = future.manager().nodes().await.expect_err("too new");
    assert_eq!(err.kind, ErrorKind::Unsupported, "{err}");
}

#[tokio::test]
async fn an_unreachable_engine_is_a_typed_error_naming_the_node() {
    let Some(_lab) = Lab::get() else { return };
    let cluster = Cluster::new(mvconf::cluster::ClusterConfig {
        endpoint: Some(mvconf::cluster::Endpoint::Docker {
            manager: "tcp://127.0.0.1:1".into(),
            node_port: None,
            node_urls: Default::default(),
        }),
        ..Default::default()
    })
    .unwrap();
    let err = cluster.nodes().await.expect_err("nothing listens there");
    assert_eq!(err.kind, ErrorKind::Unreachable, "{err}");
    assert!(err.to_string().contains("manager"), "{err}");
}

#[tokio::test]
async fn local_mode_reaches_the_manager_over_its_unix_socket() {
    let Some(lab) = Lab::get() else { return };
    let cluster = Cluster::new(mvconf::cluster::ClusterConfig {
        endpoint: Some(mvconf::cluster::Endpoint::Local {
            docker_host: Some(format!("unix://{}", lab.node_sockets[0])),
            node_port: None,
        }),
        ..Default::default()
    })
    .unwrap();
    let nodes = cluster.nodes().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(nodes.len(), lab.nodes);
    for n in &nodes {
        let info = n.engine.info().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(info.name, n.hostname);
    }
    // The local node is reached through the socket itself, not over TCP.
    let local = nodes.iter().find(|n| n.hostname == "node1").unwrap();
    assert_eq!(local.engine.transport().base(), "http://localhost");
}

/// The operator reuses a node's last read while its event stream says
/// nothing changed there, so every change to what that read holds must be
/// an event on that stream: a network created and removed, any container
/// (not only a service's) connected and disconnected.
async fn events_report_every_change_to_a_nodes_networks_and_endpoints(t: &Target) {
    let cluster = t.dce_cluster();
    let nodes = cluster.nodes().await.unwrap();
    let node = &nodes[1];
    let (tx, mut rx) = mpsc::channel(256);
    let watcher = tokio::spawn(watch(node.engine.clone(), tx, Duration::from_secs(2)));
    match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
        Ok(Some(Watch::Connected { .. })) => {}
        other => panic!("the stream did not open: {other:?}"),
    }
    let net = unique("mvt-evnet");
    let _guard = t.networks_guard(&[&net]);
    let plain = unique("mvt-evc");
    t.run_plain(2, &plain);
    let mut next = async |what: &str| -> (String, String) {
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .unwrap_or_else(|_| panic!("no {what} event within 5 s"));
            // dockerd may report more (a disconnect again when the
            // container goes): each expected one must come, in order.
            if let Some(Watch::Event { event, .. }) = msg
                && event.kind == "network"
                && event.actor.attributes.get("name") == Some(&net)
                && event.action == what
            {
                let container = event
                    .actor
                    .attributes
                    .get("container")
                    .cloned()
                    .unwrap_or_default();
                return (event.action.clone(), container);
            }
        }
    };
    node.engine
        .create_network(&macvlan(&net, 106, &t.parent(6)))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(next("create").await.0, "create");
    node.engine
        .connect(&net, &plain, Some("192.168.106.20".parse().unwrap()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let id = node.engine.container(&plain).await.unwrap().id;
    assert_eq!(next("connect").await, ("connect".to_owned(), id.clone()));
    node.engine
        .disconnect(&net, &plain, false)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(next("disconnect").await, ("disconnect".to_owned(), id));
    t.remove_container(2, &plain);
    node.engine
        .remove_network(&net)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(next("destroy").await.0, "destroy");
    watcher.abort();
}

/// After an event about one container, the operator reads that container
/// alone (`GET /containers/json?all=1&filters={"id":[..]}`), not its whole
/// node: the answer must be that container as a full list shows it, its
/// endpoints included, running or not, and nothing once it is gone.
async fn a_container_is_read_alone_by_its_id(t: &Target) {
    let cluster = t.dce_cluster();
    let nodes = cluster.nodes().await.unwrap();
    let node = &nodes[1];
    let net = unique("mvt-byid");
    let _guard = t.networks_guard(&[&net]);
    let plain = unique("mvt-byid");
    let other = unique("mvt-byid-other");
    t.run_plain(2, &plain);
    t.run_plain(2, &other);
    node.engine
        .create_network(&macvlan(&net, 108, &t.parent(8)))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    node.engine
        .connect(&net, &plain, Some("192.168.108.20".parse().unwrap()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let id = node.engine.container(&plain).await.unwrap().id;
    let unknown = "0".repeat(64);
    let alone = node
        .engine
        .containers_by_id(&[&id, &unknown])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(alone.len(), 1, "{alone:?}");
    let listed = node.engine.containers(true, &[]).await.unwrap();
    let in_full = listed
        .iter()
        .find(|c| c.id == id)
        .expect("in the full list");
    assert_eq!(&alone[0], in_full);
    assert_eq!(alone[0].state, "running");
    assert_eq!(
        alone[0].network_settings.networks[&net].ip_address,
        "192.168.108.20"
    );
    node.engine
        .disconnect(&net, &plain, true)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    t.remove_container(2, &plain);
    let gone = node.engine.containers_by_id(&[&id]).await.unwrap();
    assert!(gone.is_empty(), "{gone:?}");
    t.remove_container(2, &other);
    node.engine
        .remove_network(&net)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}
