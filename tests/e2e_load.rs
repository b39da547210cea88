//! Load: 20 bindings of 15 containers each, applied at once, sharing one
//! macvlan network with disjoint pools. All bound, no address on two
//! containers, the audit of all 20 clean; the time is printed for the note.
//! And a hundred simulated nodes through the operator.

mod common;

use common::e2e::*;
use common::{Mode, unique};
use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

const BINDINGS: usize = 20;
const PER: u32 = 15;

#[tokio::test]
async fn twenty_bindings_of_fifteen_containers_applied_at_once() {
    let Some((lab, kube, ns)) = setup("load").await else {
        return;
    };
    let net = unique("load-net");
    let _nets = lab.networks_guard(&[&net]);
    let svcs: Vec<String> = (0..BINDINGS).map(|i| unique(&format!("load{i}"))).collect();
    let _guards: Vec<_> = svcs
        .iter()
        .map(|s| lab.service(s, Mode::Replicated(PER)))
        .collect();
    let total = BINDINGS * PER as usize;
    common::wait_for(
        &format!("{total} running containers"),
        Duration::from_secs(600),
        || async {
            let n: usize = svcs
                .iter()
                .flat_map(|s| (1..=lab.nodes).map(move |k| (s, k)))
                .map(|(s, k)| {
                    lab.docker(
                        k,
                        &[
                            "ps",
                            "-q",
                            "--filter",
                            &format!("label=com.docker.swarm.service.name={s}"),
                        ],
                    )
                    .lines()
                    .count()
                })
                .sum();
            (n == total).then_some(())
        },
    )
    .await;
    let _op = common::k8s::Operator::start(&ns.name, "load", &[]);

    let docs: Vec<String> = svcs
        .iter()
        .enumerate()
        .map(|(i, s)| {
            format!(
                "apiVersion: mvconf.io/v1alpha1\nkind: MacvlanBinding\nmetadata: {{name: b{i}, namespace: {ns}}}\nspec:\n  deletionPolicy: Disconnect\n  networks:\n  - {{name: {net}, subnet: 10.80.0.0/16, gateway: 10.80.0.1, parent: {parent}}}\n  services:\n  - {{name: {s}, network: {net}, ipPool: [\"10.80.{o}.10-10.80.{o}.40\"]}}\n",
                ns = ns.name,
                parent = lab.parent(5),
                o = i + 1,
            )
        })
        .collect();
    let start = Instant::now();
    let (ok, out) = kube.kubectl(&["apply", "-f", "-"], Some(&docs.join("---\n")));
    assert!(ok, "{out}");
    let api = kube.bindings(&ns.name);
    loop {
        let list = api.list(&Default::default()).await.expect("list bindings");
        let done = list
            .items
            .iter()
            .filter(|b| ready(b) && b.status.as_ref().is_some_and(|s| s.bound == PER as i32))
            .count();
        if done == BINDINGS {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "{done} of {BINDINGS} bindings ready after 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let took = start.elapsed();
    eprintln!(
        "load: {BINDINGS} bindings x {PER} containers ({total}) bound {:.1}s after kubectl apply",
        took.as_secs_f64()
    );

    // Docker agrees with the 20 statuses together, and nothing is doubled.
    let list = api.list(&Default::default()).await.expect("list bindings");
    let mut from_status = BTreeSet::new();
    for b in list.items {
        from_status.extend(status_endpoints(&kube.hydrate(b).await));
    }
    let docker = docker_endpoints(&lab, &net);
    assert_eq!(docker.len(), total);
    assert_unique(&docker);
    assert_eq!(from_status, docker);

    let mut args = vec!["audit".to_owned(), "-o".into(), "json".into()];
    for i in 0..BINDINGS {
        args.extend(["--binding".into(), format!("{}/b{i}", ns.name)]);
    }
    let out = Command::new(env!("CARGO_BIN_EXE_mvconf"))
        .args(&args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("mvconf audit");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}", String::from_utf8_lossy(&out.stderr));
    });
    assert!(out.status.success(), "{report:#}");
    assert_eq!(report["serviceContainers"], total);

    for i in 0..BINDINGS {
        kube.delete(&ns.name, &format!("b{i}")).await;
    }
    for i in 0..BINDINGS {
        kube.wait_gone(&ns.name, &format!("b{i}"), Duration::from_secs(300))
            .await;
    }
}

/// (container, address) of every endpoint on `network`, all nodes of a
/// simulated swarm, read through its controller as the operator reads it.
async fn sim_endpoints(url: &str, network: &str) -> BTreeSet<(String, String)> {
    use mvconf::cluster::{Cluster, ClusterConfig, Endpoint};
    let cluster = Cluster::new(ClusterConfig {
        endpoint: Some(Endpoint::Dce {
            url: url.to_owned(),
            node_prefix: "/api".into(),
        }),
        ..Default::default()
    })
    .expect("sim cluster");
    let mut out = BTreeSet::new();
    for n in cluster.nodes().await.expect("nodes") {
        for c in n.engine.containers(false, &[]).await.expect("containers") {
            if let Some(ep) = c.network_settings.networks.get(network) {
                out.insert((c.id[..12].to_owned(), ep.ip_address.clone()));
            }
        }
    }
    out
}

/// A hundred simulated nodes (`mvconf-sim`, whose Docker behaviour the
/// conformance scenarios of `lab_engine` hold to the real lab's) behind a
/// DCE controller, five containers each, through the real operator and
/// API server: all bound with distinct addresses, a killed container's
/// replacement gets its address back, and deleting the binding undoes it.
#[tokio::test]
async fn a_hundred_simulated_nodes_through_the_operator() {
    use common::k8s::{Kube, Operator};
    use common::target::Sim;
    const NODES: usize = 100;
    const REPLICAS: usize = 500;
    let Some(kube) = Kube::get().await else {
        return;
    };
    kube.install_crd();
    let ns = kube.namespace(&unique("sim100"));
    let sim = Sim::start_with(NODES, &[]);
    sim.control(
        "POST",
        "services",
        serde_json::json!({"name": "web", "replicas": REPLICAS}),
    );
    let op = Operator::start(
        &ns.name,
        "sim100",
        &["--endpoint-kind", "dce", "--endpoint-url", &sim.url],
    );
    let yaml = "apiVersion: mvconf.io/v1alpha1\nkind: MacvlanBinding\nmetadata: {name: sim}\nspec:\n  networks:\n  - {name: mv, subnet: 10.60.0.0/16, gateway: 10.60.0.1, parent: mv0}\n  services:\n  - {name: web, network: mv, ipPool: [\"10.60.1.0-10.60.2.255\"]}\n";
    let start = Instant::now();
    kube.create(&ns.name, yaml).await;
    let b = kube
        .wait_binding(
            &ns.name,
            "sim",
            "all bound",
            Duration::from_secs(300),
            |b| {
                ready(b)
                    && b.status
                        .as_ref()
                        .is_some_and(|s| s.bound as usize == REPLICAS)
            },
        )
        .await;
    eprintln!(
        "sim: {NODES} nodes x {} containers bound {:.1}s after the binding was created",
        REPLICAS / NODES,
        start.elapsed().as_secs_f64()
    );
    let docker = sim_endpoints(&sim.url, "mv").await;
    assert_eq!(docker.len(), REPLICAS);
    assert_unique(&docker);
    assert_eq!(status_endpoints(&b), docker);
    assert_eq!(b.status.as_ref().map(|s| s.endpoint_slices), Some(5));

    // A killed container: its replacement gets the slot's address back.
    let victim = record_of(&b, 250);
    let killed = Instant::now();
    sim.control(
        "POST",
        "kill",
        serde_json::json!({"container": victim.container}),
    );
    kube.wait_binding(&ns.name, "sim", "slot 250 bound again", LONG, |b| {
        rebound(b, &victim)
    })
    .await;
    eprintln!(
        "sim: killed container's slot bound again with {} {:.1}s after the kill (restart delay 1 s)",
        victim.ip.clone().unwrap_or_default(),
        killed.elapsed().as_secs_f64()
    );
    if let Some(w) = op.metric("mvconf_endpoint_slice_writes_total").await {
        eprintln!("sim: {w} MacvlanEndpointSlice writes in all");
    }

    kube.delete(&ns.name, "sim").await;
    kube.wait_gone(&ns.name, "sim", Duration::from_secs(120))
        .await;
    assert!(sim_endpoints(&sim.url, "mv").await.is_empty());
    drop(op);
}
