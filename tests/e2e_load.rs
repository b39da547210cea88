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
    // Its own parent (12): three hundred stopping containers take minutes to
    // leave the network, and the next test binary must not wait for them.
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
                parent = lab.parent(12),
                o = i + 1,
            )
        })
        .collect();
    let start = Instant::now();
    let (ok, out) = kube.kubectl(&["apply", "-f", "-"], Some(&docs.join("---\n")));
    assert!(ok, "{out}");
    let api = kube.bindings(&ns.name);
    common::e2e::wait_all_bound(
        &kube,
        &ns.name,
        BINDINGS,
        PER as usize,
        Duration::from_secs(600),
    )
    .await;
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
    // No timed resync inside the test: the repair below is measured alone.
    let op = Operator::start(
        &ns.name,
        "sim100",
        &[
            "--endpoint-kind",
            "dce",
            "--endpoint-url",
            &sim.url,
            "--resync-seconds",
            "300",
        ],
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

    // A killed container: its replacement gets the slot's address back,
    // and the work is for the node where it happened: the passes it
    // causes read again only the nodes whose events reported a change,
    // not all hundred (each read of a node is two requests), and on that
    // node only the containers the events named, not the 60 others there.
    let victim = record_of(&b, 250);
    let k: usize = victim
        .node
        .rsplit("node")
        .next()
        .and_then(|k| k.parse().ok())
        .unwrap_or_else(|| panic!("node number of {}", victim.node));
    const CROWD: usize = 60;
    for i in 0..CROWD {
        sim.control(
            "POST",
            &format!("nodes/{k}/run"),
            serde_json::json!({"name": format!("crowd-{i}")}),
        );
    }
    let stat = |key: &str| {
        sim.control("GET", "stats", serde_json::Value::Null)[key]
            .as_u64()
            .unwrap_or(0)
    };
    let requests = || stat("requests");
    // The passes that follow the bind (a slice write retried, the crowd's
    // events) are done before the repair is counted.
    let mut last = requests();
    loop {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let now = requests();
        // Each look at the counter is one request.
        if now - last <= 1 {
            break;
        }
        last = now;
    }
    // The passes right after the bind (the one its nodes' event streams
    // ask for once they open) come before the watch brings the first
    // pass's own writes: they read them from what this replica wrote, and
    // none is refused as stale and retried a second later.
    let failed = op
        .metric_sum("mvconf_reconciles_total", |l| {
            l.contains("result=\"error\"")
        })
        .await
        .unwrap_or(0.0);
    assert_eq!(failed, 0.0, "reconciles failed (stale writes retried)");
    let listed_before = stat("containers_listed");
    let before = requests();
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
    let took = killed.elapsed();
    let spent = requests() - before;
    eprintln!(
        "sim: killed container's slot bound again with {} {:.1}s after the kill (restart delay 1 s), {spent} Docker requests",
        victim.ip.clone().unwrap_or_default(),
        took.as_secs_f64()
    );
    assert!(
        spent < NODES as u64,
        "{spent} Docker requests to repair one container on one of {NODES} nodes"
    );
    eprintln!(
        "sim: that repair read {} container summaries (the crowd's start events came first)",
        stat("containers_listed") - listed_before
    );
    // The same on that node again, now that its crowd has been read: the
    // repair reads the containers its events named, not the node's 65.
    let b = kube.binding(&ns.name, "sim").await;
    let again = b
        .status
        .iter()
        .flat_map(|s| &s.containers)
        .find(|r| r.node == victim.node && r.slot != victim.slot)
        .cloned()
        .expect("another slot on the victim's node");
    let listed_before = stat("containers_listed");
    sim.control(
        "POST",
        "kill",
        serde_json::json!({"container": again.container}),
    );
    kube.wait_binding(&ns.name, "sim", "the second slot bound again", LONG, |b| {
        rebound(b, &again)
    })
    .await;
    let listed = stat("containers_listed") - listed_before;
    eprintln!("sim: the second repair read {listed} container summaries");
    assert!(
        listed < CROWD as u64 / 2,
        "the repair read {listed} container summaries: the whole node of {} was read again",
        CROWD + REPLICAS / NODES
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

/// "Scale to a bank", per-swarm leadership: three replicas over six
/// simulated swarms. Each swarm is led by exactly one replica, two each
/// (the fair share); all six bindings bound. A replica killed: its swarms
/// are taken over by the other two (three each), nothing bound moves, and
/// a container killed on a swarm that changed hands gets its address back
/// from its new leader.
#[tokio::test]
async fn three_replicas_share_six_swarms_and_take_over_a_dead_ones() {
    use common::k8s::{Kube, Operator};
    use common::target::Sim;
    const SWARMS: usize = 6;
    const PER: u64 = 6;
    let Some(kube) = Kube::get().await else {
        return;
    };
    kube.install_crd();
    let ns = kube.namespace(&unique("shards"));
    let sim = Sim::start_with(3, &["--swarms", &SWARMS.to_string()]);
    assert_eq!(sim.swarms.len(), SWARMS);
    for k in 0..SWARMS {
        sim.control_swarm(
            k,
            "POST",
            "services",
            serde_json::json!({"name": "web", "replicas": PER}),
        );
    }
    let lease = "shards";
    let mut ops: Vec<Operator> = (0..3)
        .map(|_| Operator::start(&ns.name, lease, &["--leadership", "per-swarm"]))
        .collect();
    for (k, (url, _)) in sim.swarms.iter().enumerate() {
        let yaml = format!(
            "apiVersion: mvconf.io/v1alpha1\nkind: MacvlanBinding\nmetadata: {{name: s{k}}}\nspec:\n  endpoint: {{kind: Dce, url: \"{url}\"}}\n  networks:\n  - {{name: mv, subnet: 10.61.0.0/16, gateway: 10.61.0.1, parent: mv0}}\n  services:\n  - {{name: web, network: mv, ipPool: [\"10.61.{o}.10-10.61.{o}.40\"]}}\n",
            o = k + 1
        );
        kube.create(&ns.name, &yaml).await;
    }
    let mut before = Vec::new();
    for k in 0..SWARMS {
        let b = kube
            .wait_binding(&ns.name, &format!("s{k}"), "all bound", LONG, |b| {
                ready(b) && b.status.as_ref().is_some_and(|s| s.bound as u64 == PER)
            })
            .await;
        before.push(status_endpoints(&b));
    }
    let identities: Vec<String> = ops
        .iter()
        .map(|o| format!("op-{}", o.metrics_port))
        .collect();
    let share = |holders: &std::collections::BTreeMap<String, String>, who: &[String]| {
        who.iter()
            .map(|i| holders.values().filter(|h| *h == i).count())
            .collect::<Vec<_>>()
    };
    let holders = common::wait_for(
        "each of 3 replicas leads 2 of the 6 swarms",
        Duration::from_secs(120),
        || async {
            let h = common::e2e::swarm_holders(&kube, &ns.name, lease).await;
            (h.len() == SWARMS && share(&h, &identities) == [2, 2, 2]).then_some(h)
        },
    )
    .await;
    for (url, id) in &sim.swarms {
        assert!(holders.contains_key(id), "no leader for swarm {id} ({url})");
    }
    let mut led = 0.0;
    for op in &ops {
        led += op.metric("mvconf_swarms_led").await.unwrap_or(0.0);
    }
    assert_eq!(led, SWARMS as f64, "each swarm led by exactly one replica");

    // Kill one replica: its two swarms go to the other two.
    let dead = identities[0].clone();
    let orphaned: Vec<String> = holders
        .iter()
        .filter(|(_, h)| **h == dead)
        .map(|(s, _)| s.clone())
        .collect();
    ops[0].kill();
    let killed = Instant::now();
    let alive = identities[1..].to_vec();
    common::wait_for(
        "the two live replicas lead 3 swarms each",
        Duration::from_secs(120),
        || async {
            let h = common::e2e::swarm_holders(&kube, &ns.name, lease).await;
            (h.len() == SWARMS && share(&h, &alive) == [3, 3]).then_some(())
        },
    )
    .await;
    eprintln!(
        "shards: a dead replica's {} swarms taken over {:.1}s after SIGKILL (lease duration 15 s)",
        orphaned.len(),
        killed.elapsed().as_secs_f64()
    );

    // A container killed on a swarm that changed hands: its new leader
    // gives the replacement the slot's address back.
    let moved = sim
        .swarms
        .iter()
        .position(|(_, id)| orphaned.contains(id))
        .expect("an orphaned swarm");
    let b = kube.binding(&ns.name, &format!("s{moved}")).await;
    let victim = record_of(&b, 3);
    sim.control_swarm(
        moved,
        "POST",
        "kill",
        serde_json::json!({"container": victim.container}),
    );
    kube.wait_binding(
        &ns.name,
        &format!("s{moved}"),
        "slot 3 bound again",
        LONG,
        |b| rebound(b, &victim),
    )
    .await;

    // Nothing bound moved: every other slot kept its container and address.
    for (k, was) in before.iter().enumerate() {
        let now = status_endpoints(&kube.binding(&ns.name, &format!("s{k}")).await);
        let kept = was.intersection(&now).count();
        let expect = if k == moved {
            PER as usize - 1
        } else {
            PER as usize
        };
        assert_eq!(kept, expect, "binding s{k}: {was:?} -> {now:?}");
    }
    for op in &mut ops {
        assert!(!op.logs().contains("panicked"), "{}", op.logs());
    }
    for k in 0..SWARMS {
        kube.delete(&ns.name, &format!("s{k}")).await;
    }
    for k in 0..SWARMS {
        kube.wait_gone(&ns.name, &format!("s{k}"), Duration::from_secs(120))
            .await;
    }
}

/// "Scale to a bank", work proportional to change: a periodic resync with
/// nothing changed reads each node once (two requests) and the manager,
/// and writes nothing, neither to Docker nor to the API server.
#[tokio::test]
async fn an_idle_resync_reads_each_node_once_and_writes_nothing() {
    use common::k8s::{Kube, Operator};
    use common::target::Sim;
    const NODES: usize = 20;
    const REPLICAS: usize = 40;
    let Some(kube) = Kube::get().await else {
        return;
    };
    kube.install_crd();
    let ns = kube.namespace(&unique("idle"));
    let sim = Sim::start_with(NODES, &[]);
    sim.control(
        "POST",
        "services",
        serde_json::json!({"name": "web", "replicas": REPLICAS}),
    );
    // The shortest resync there is.
    let op = Operator::start(
        &ns.name,
        "idle",
        &[
            "--endpoint-kind",
            "dce",
            "--endpoint-url",
            &sim.url,
            "--resync-seconds",
            "10",
        ],
    );
    let yaml = "apiVersion: mvconf.io/v1alpha1\nkind: MacvlanBinding\nmetadata: {name: idle}\nspec:\n  networks:\n  - {name: mv, subnet: 10.62.0.0/16, gateway: 10.62.0.1, parent: mv0}\n  services:\n  - {name: web, network: mv, ipPool: [\"10.62.1.0-10.62.1.255\"]}\n";
    kube.create(&ns.name, yaml).await;
    kube.wait_binding(&ns.name, "idle", "all bound", LONG, |b| {
        ready(b)
            && b.status
                .as_ref()
                .is_some_and(|s| s.bound as usize == REPLICAS)
    })
    .await;
    let stat = |key: &str| {
        sim.control("GET", "stats", serde_json::Value::Null)[key]
            .as_u64()
            .unwrap_or(0)
    };
    let ok_passes = || async {
        op.metric_sum("mvconf_reconciles_total", |l| l.contains("result=\"ok\""))
            .await
            .unwrap_or(0.0)
    };
    let writes = || async {
        op.metric("mvconf_endpoint_slice_writes_total")
            .await
            .unwrap_or(0.0)
            + op.metric("mvconf_status_writes_total").await.unwrap_or(0.0)
    };
    // Whatever followed the bind is over: one quiet resync period.
    let mut passes = ok_passes().await;
    common::wait_for(
        "a resync after the bind",
        Duration::from_secs(30),
        || async { (ok_passes().await > passes).then_some(()) },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    passes = ok_passes().await;
    let (requests, mutations, written) = (stat("requests"), stat("mutations"), writes().await);
    common::wait_for("the next resync", Duration::from_secs(30), || async {
        (ok_passes().await > passes).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // The looks at the counters are requests too: one per `stat`.
    let read = stat("requests") - requests - 2;
    eprintln!("idle resync: {read} Docker requests on {NODES} nodes");
    assert_eq!(
        stat("mutations"),
        mutations,
        "an idle resync changed Docker"
    );
    assert_eq!(
        writes().await,
        written,
        "an idle resync wrote to the API server"
    );
    assert!(
        read <= 2 * NODES as u64 + 8,
        "{read} Docker requests for an idle resync of {NODES} nodes"
    );
    drop(op);
}

/// "Scale to a bank": the passes of bindings on one swarm run together.
/// Ten bindings applied at once used to cost ten observations of the whole
/// swarm and more (one per pass, each reading every node); now the passes
/// waiting for the swarm run in rounds of one observation each.
#[tokio::test]
async fn bindings_on_one_swarm_are_observed_together_in_rounds() {
    use common::k8s::{Kube, Operator};
    use common::target::Sim;
    const NODES: usize = 50;
    const BINDINGS: usize = 10;
    const PER_BINDING: usize = 20;
    let Some(kube) = Kube::get().await else {
        return;
    };
    kube.install_crd();
    let ns = kube.namespace(&unique("rounds"));
    let sim = Sim::start_with(NODES, &[]);
    for i in 0..BINDINGS {
        sim.control(
            "POST",
            "services",
            serde_json::json!({"name": format!("r{i}"), "replicas": PER_BINDING}),
        );
    }
    let op = Operator::start(
        &ns.name,
        "rounds",
        &[
            "--endpoint-kind",
            "dce",
            "--endpoint-url",
            &sim.url,
            "--resync-seconds",
            "300",
        ],
    );
    let node_lists = || {
        sim.control("GET", "stats", serde_json::Value::Null)["node_lists"]
            .as_u64()
            .unwrap_or(0)
    };
    let yaml: Vec<String> = (0..BINDINGS)
        .map(|i| format!("apiVersion: mvconf.io/v1alpha1\nkind: MacvlanBinding\nmetadata: {{name: r{i}}}\nspec:\n  networks:\n  - {{name: mv, subnet: 10.63.0.0/16, gateway: 10.63.0.1, parent: mv0}}\n  services:\n  - {{name: r{i}, network: mv, ipPool: [\"10.63.{o}.1-10.63.{o}.40\"]}}\n", o = i + 1))
        .collect();
    let (ok, out) = kube.kubectl(
        &["-n", &ns.name, "apply", "-f", "-"],
        Some(&yaml.join("---\n")),
    );
    assert!(ok, "{out}");
    common::e2e::wait_all_bound(&kube, &ns.name, BINDINGS, PER_BINDING, LONG).await;
    let docker = sim_endpoints(&sim.url, "mv").await;
    assert_eq!(docker.len(), BINDINGS * PER_BINDING);
    assert_unique(&docker);
    // Every pass after the bind too (the one the nodes' event streams ask
    // for once they open) has run.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let observed = node_lists();
    let rounds = op.metric("mvconf_round_passes_count").await.unwrap_or(0.0);
    let passes = op.metric("mvconf_round_passes_sum").await.unwrap_or(0.0);
    eprintln!(
        "rounds: {passes} passes of {BINDINGS} bindings in {rounds} rounds, {observed} observations of the swarm"
    );
    assert!(
        (observed as usize) < BINDINGS,
        "{observed} observations of the swarm for {BINDINGS} bindings applied at once"
    );
    drop(op);
}
