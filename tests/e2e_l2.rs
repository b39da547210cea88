//! Safe on a shared L2 segment, end to end on the real lab and a real
//! kube-apiserver: containers mvconf does not manage on its networks, and
//! swarms bound before mvconf (by the old tool, or by hand) adopted as they
//! are. Each test has its own namespace, operator, services, network and
//! macvlan parent, so they run side by side.

mod common;

use common::e2e::*;
use common::k8s::Operator;
use common::{Lab, Mode, StrangerHost, text, unique, write_conf};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// Containers started by hand, removed when dropped.
struct Strangers<'a> {
    lab: &'a Lab,
    names: Vec<(usize, String)>,
}

impl Drop for Strangers<'_> {
    fn drop(&mut self) {
        for (k, name) in &self.names {
            let _ = self.lab.try_docker(*k, &["rm", "-f", name]);
        }
    }
}

/// Starts a container on `net` on node `k` without `--ip` (`docker run
/// --network`), as someone outside mvconf would; the address Docker's
/// own IPAM gave it.
fn start_without_ip(lab: &Lab, k: usize, name: &str, net: &str) -> String {
    lab.docker(
        k,
        &[
            "run",
            "-d",
            "--name",
            name,
            "--network",
            net,
            &lab.image,
            "sleep",
            "1000000",
        ],
    );
    lab.docker(
        k,
        &[
            "inspect",
            name,
            "--format",
            &format!("{{{{(index .NetworkSettings.Networks \"{net}\").IPAddress}}}}"),
        ],
    )
}

/// (node, container ID) of every running container of `svc`.
fn containers_of(lab: &Lab, svc: &str) -> Vec<(usize, String)> {
    (1..=lab.nodes)
        .flat_map(|k| {
            lab.docker(
                k,
                &[
                    "ps",
                    "-q",
                    "--no-trunc",
                    "--filter",
                    &format!("label=com.docker.swarm.service.name={svc}"),
                ],
            )
            .lines()
            .map(|id| (k, id.to_owned()))
            .collect::<Vec<_>>()
        })
        .collect()
}

/// The network created by hand on every node, as `docker network create`
/// would by someone who read the old tool's manual.
fn network_by_hand(lab: &Lab, net: &str, octet: u8, parent: &str) {
    for k in 1..=lab.nodes {
        lab.docker(
            k,
            &[
                "network",
                "create",
                "-d",
                "macvlan",
                "--subnet",
                &format!("192.168.{octet}.0/24"),
                "--gateway",
                &format!("192.168.{octet}.1"),
                "-o",
                &format!("parent={parent}"),
                net,
            ],
        );
    }
}

/// Binds `svc`'s containers by hand (`docker network connect --ip`) with
/// these addresses, in container order; returns (container 12, ip).
fn bind_by_hand(lab: &Lab, svc: &str, net: &str, ips: &[&str]) -> BTreeSet<(String, String)> {
    let cs = containers_of(lab, svc);
    assert_eq!(cs.len(), ips.len(), "{cs:?}");
    cs.iter()
        .zip(ips)
        .map(|((k, id), ip)| {
            lab.docker(*k, &["network", "connect", "--ip", ip, net, id]);
            (id[..12].to_owned(), (*ip).to_owned())
        })
        .collect()
}

#[tokio::test]
async fn a_stranger_started_without_an_address_is_reported_at_once_and_nothing_of_ours_moves() {
    let Some((lab, kube, ns)) = setup("e2e-l2-stranger").await else {
        return;
    };
    let svc = unique("l2-str-web");
    let net = unique("l2-str-net");
    let parent = lab.parent(0);
    let _nets = lab.networks_guard(&[&net]);
    // A network made before mvconf (by hand, or by the old tool), without
    // an ipRange: Docker's auto-assign draws from the whole subnet. (One
    // mvconf creates gets a range outside the pools: the CLI test below.)
    network_by_hand(&lab, &net, 91, &parent);
    let _s = lab.service(&svc, Mode::Replicated(3));
    let _op = Operator::start(&ns.name, "stranger", &[]);
    // The pool is full once the three replicas are bound, and starts at the
    // first address Docker's own IPAM hands out (.2).
    kube.create(
        &ns.name,
        &binding_yaml(
            "stranger",
            &net,
            91,
            &parent,
            &[(&svc, "192.168.91.2-192.168.91.4")],
            "Disconnect",
        ),
    )
    .await;
    let b = settled(&kube, &lab, &ns.name, "stranger", &net, 3).await;
    let before = status_endpoints(&b);
    // A node where .2 is not held: its engine knows only its own
    // containers' addresses, so it gives a container started there without
    // --ip the address one of ours holds on another node.
    let holder = b
        .status
        .iter()
        .flat_map(|s| &s.containers)
        .find(|r| r.ip.as_deref() == Some("192.168.91.2"))
        .map(|r| r.node.clone())
        .expect("a record with .2");
    let k = (1..=lab.nodes)
        .find(|k| format!("node{k}") != holder)
        .expect("another node");
    let name = unique("l2-stranger");
    let _strangers = Strangers {
        lab: &lab,
        names: vec![(k, name.clone())],
    };
    let t0 = Instant::now();
    let got = start_without_ip(&lab, k, &name, &net);
    assert_eq!(got, "192.168.91.2", "Docker's IPAM gave the stranger {got}");

    // Reported from the node's event stream, not at the next resync (5
    // minutes): the bound is loose because the machine is shared.
    let mut reported = None;
    while t0.elapsed() < Duration::from_secs(60) {
        let events = kube.events(&ns.name, "stranger").await;
        if let Some(e) = events
            .iter()
            .find(|(r, n)| r == "ForeignAddress" && n.contains("192.168.91.2"))
        {
            reported = Some((t0.elapsed(), e.clone()));
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (after, event) = reported.expect("no ForeignAddress event within 60 s");
    eprintln!("foreign holder reported {after:?} after docker run: {event:?}");
    assert!(
        after < Duration::from_secs(15),
        "reported after {after:?}: the resync found it, not the event"
    );

    // The pass that reported it moved nothing of ours, and touched nothing
    // of the stranger's; neither does the next one.
    tokio::time::sleep(Duration::from_secs(2)).await;
    // (`settled` would wait for Docker to show only what status shows.)
    let b = kube
        .wait_binding(&ns.name, "stranger", "Ready", LONG, |b| {
            ready(b) && b.status.as_ref().is_some_and(|s| s.bound == 3)
        })
        .await;
    assert_eq!(status_endpoints(&b), before);
    let docker = docker_endpoints(&lab, &net);
    let ours: BTreeSet<_> = docker
        .iter()
        .filter(|(c, _)| before.iter().any(|(o, _)| o == c))
        .cloned()
        .collect();
    assert_eq!(ours, before);
    assert_eq!(docker.len(), 4, "the stranger was disconnected: {docker:?}");
}

#[tokio::test]
async fn a_swarm_bound_by_hand_is_adopted_as_it_is_by_the_operator() {
    let Some((lab, kube, ns)) = setup("e2e-l2-adopt").await else {
        return;
    };
    let svc = unique("l2-adopt-web");
    let net = unique("l2-adopt-net");
    let parent = lab.parent(1);
    let _nets = lab.networks_guard(&[&net]);
    let _s = lab.service(&svc, Mode::Replicated(3));
    wait_running(&lab, &svc, 3, LONG).await;
    network_by_hand(&lab, &net, 92, &parent);
    // Random addresses of the pool, as the old tool chose them.
    let before = bind_by_hand(
        &lab,
        &svc,
        &net,
        &["192.168.92.37", "192.168.92.13", "192.168.92.25"],
    );
    let _op = Operator::start(&ns.name, "adopt", &[]);
    kube.create(
        &ns.name,
        &binding_yaml(
            "adopt",
            &net,
            92,
            &parent,
            &[(&svc, "192.168.92.10-192.168.92.40")],
            "Disconnect",
        ),
    )
    .await;
    let b = settled(&kube, &lab, &ns.name, "adopt", &net, 3).await;
    assert_eq!(status_endpoints(&b), before);
    assert_eq!(docker_endpoints(&lab, &net), before);
    // No connect or disconnect (the operator's only Docker writes besides
    // its claim on the service, a label): no Event says one happened.
    let events = kube.events(&ns.name, "adopt").await;
    assert!(
        events
            .iter()
            .all(|(r, _)| !["Bound", "Rebound", "Changed"].contains(&r.as_str())),
        "{events:?}"
    );
}

#[tokio::test]
async fn a_swarm_bound_by_hand_is_adopted_as_it_is_by_mvconf_up() {
    let Some(lab) = Lab::get() else { return };
    let svc = unique("l2-adopt-cli");
    let net = unique("l2-adopt-cli-net");
    let parent = lab.parent(2);
    let _nets = lab.networks_guard(&[&net]);
    let _s = lab.service(&svc, Mode::Replicated(3));
    wait_running(&lab, &svc, 3, LONG).await;
    network_by_hand(&lab, &net, 93, &parent);
    let before = bind_by_hand(
        &lab,
        &svc,
        &net,
        &["192.168.93.21", "192.168.93.14", "192.168.93.30"],
    );
    let conf = write_conf(
        "adopt",
        &serde_json::json!({
            "networks": [{"name": net, "subnet": "192.168.93.0/24", "gateway": "192.168.93.1", "parent": parent}],
            "services": [{"name": svc, "network": net, "ip_pool": ["192.168.93.10-192.168.93.40"]}]
        }),
    );
    let up = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_mvconf"))
            .arg("-f")
            .arg(&conf)
            .arg("up")
            .args(extra)
            .env_remove("RUST_LOG")
            .env_remove("MVCONF_DCE_URL")
            .output()
            .expect("run mvconf")
    };
    let plan = up(&["--dry-run"]);
    assert!(plan.status.success(), "{}", text(&plan));
    assert!(text(&plan).contains(": 0 actions"), "{}", text(&plan));
    let out = up(&[]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(docker_endpoints(&lab, &net), before, "{}", text(&out));
}

#[tokio::test]
async fn reserved_addresses_are_never_handed_out_even_under_edits() {
    let Some((lab, kube, ns)) = setup("e2e-l2-reserved").await else {
        return;
    };
    let svc = unique("l2-res-web");
    let net = unique("l2-res-net");
    let parent = lab.parent(3);
    let _nets = lab.networks_guard(&[&net]);
    let _s = lab.service(&svc, Mode::Replicated(3));
    let _op = Operator::start(&ns.name, "reserved", &[]);
    let network = |reserved: &[&str]| {
        serde_json::json!({"name": net, "subnet": "192.168.94.0/24", "gateway": "192.168.94.1",
            "parent": parent, "reserved": reserved})
    };
    let yaml = format!(
        "apiVersion: mvconf.io/v1alpha1\nkind: MacvlanBinding\nmetadata: {{name: reserved}}\nspec:\n  deletionPolicy: Disconnect\n  networks: [{}]\n  services:\n  - {{name: {svc}, network: {net}, ipPool: [192.168.94.10-192.168.94.15]}}\n",
        network(&["192.168.94.10", "192.168.94.12"])
    );
    kube.create(&ns.name, &yaml).await;
    let b = settled(&kube, &lab, &ns.name, "reserved", &net, 3).await;
    let before = status_endpoints(&b);
    let ips: BTreeSet<&str> = before.iter().map(|(_, ip)| ip.as_str()).collect();
    assert!(
        ips.iter()
            .all(|ip| !["192.168.94.10", "192.168.94.12"].contains(ip)),
        "{before:?}"
    );
    let status = b.status.as_ref().expect("status");
    assert_eq!(
        (status.services[0].pool_size, status.services[0].reserved),
        (4, 2)
    );

    // A router takes one of the bound addresses: reserve it. Its holder
    // moves to the one address left; nobody else moves.
    let taken = record_of(&b, 1).ip.expect("slot 1 bound");
    kube.patch_spec(
        &ns.name,
        "reserved",
        serde_json::json!({"networks": [network(&["192.168.94.10", "192.168.94.12", &taken])]}),
    )
    .await;
    kube.wait_binding(&ns.name, "reserved", "slot 1 moved", LONG, |b| {
        ready(b)
            && b.status.as_ref().is_some_and(|s| {
                s.services[0].reserved == 3
                    && s.containers
                        .iter()
                        .any(|r| r.slot == Some(1) && r.ip.as_deref() != Some(taken.as_str()))
            })
    })
    .await;
    let b = settled(&kube, &lab, &ns.name, "reserved", &net, 3).await;
    let after = status_endpoints(&b);
    let moved: Vec<_> = before.difference(&after).collect();
    assert_eq!(moved.len(), 1, "{before:?} -> {after:?}");
    assert_eq!(moved[0].1, taken);
    assert!(
        after
            .iter()
            .all(|(_, ip)| *ip != taken && ip != "192.168.94.10" && ip != "192.168.94.12")
    );
}

/// Slot -> address of `svc`'s bound records.
fn slot_ips(b: &mvconf::crd::MacvlanBinding, svc: &str) -> std::collections::BTreeMap<u64, String> {
    b.status
        .iter()
        .flat_map(|s| &s.containers)
        .filter(|r| r.service == svc && r.state == mvconf::crd::RecordState::Bound)
        .filter_map(|r| Some((r.slot?, r.ip.clone()?)))
        .collect()
}

#[tokio::test]
async fn addresses_of_slots_scaled_away_cool_down_before_another_service_gets_them() {
    let Some((lab, kube, ns)) = setup("e2e-l2-cool").await else {
        return;
    };
    let web = unique("l2-cool-web");
    let api = unique("l2-cool-api");
    let net = unique("l2-cool-net");
    let parent = lab.parent(4);
    let _nets = lab.networks_guard(&[&net]);
    let _w = lab.service(&web, Mode::Replicated(5));
    let _a = lab.service(&api, Mode::Replicated(1));
    const COOLDOWN: u64 = 20;
    let _op = Operator::start(
        &ns.name,
        "cool",
        &["--release-cooldown-seconds", &COOLDOWN.to_string()],
    );
    let pools = |web_pool: &str, api_pool: &str| {
        serde_json::json!([
            {"name": web, "network": net, "ipPool": [web_pool]},
            {"name": api, "network": net, "ipPool": [api_pool]},
        ])
    };
    let yaml = format!(
        "apiVersion: mvconf.io/v1alpha1\nkind: MacvlanBinding\nmetadata: {{name: cool}}\nspec:\n  deletionPolicy: Disconnect\n  networks:\n  - {{name: {net}, subnet: 192.168.95.0/24, gateway: 192.168.95.1, parent: {parent}}}\n  services: {}\n",
        pools("192.168.95.10-192.168.95.14", "192.168.95.20")
    );
    kube.create(&ns.name, &yaml).await;
    let b = settled(&kube, &lab, &ns.name, "cool", &net, 6).await;
    let first = slot_ips(&b, &web);
    assert_eq!(first.len(), 5);

    // 5 -> 2 -> 5 inside the cooldown: every slot back on its address.
    lab.docker(1, &["service", "scale", "--detach", &format!("{web}=2")]);
    wait_running(&lab, &web, 2, LONG).await;
    lab.docker(1, &["service", "scale", "--detach", &format!("{web}=5")]);
    let b = settled(&kube, &lab, &ns.name, "cool", &net, 6).await;
    assert_eq!(slot_ips(&b, &web), first);

    // 5 -> 2 again, and the freed addresses handed to api in the same
    // breath (a pool edit), api scaled to 4: api's new slots wait for the
    // cooldown, then get them.
    lab.docker(1, &["service", "scale", "--detach", &format!("{web}=2")]);
    let t0 = std::time::Instant::now();
    wait_running(&lab, &web, 2, LONG).await;
    let b = kube
        .wait_binding(&ns.name, "cool", "web at 2", LONG, |b| {
            b.status.as_ref().is_some_and(|s| {
                s.containers
                    .iter()
                    .filter(|r| r.service == web && r.released.is_some())
                    .count()
                    == 3
            })
        })
        .await;
    let kept = slot_ips(&b, &web);
    let freed: BTreeSet<String> = first
        .values()
        .filter(|ip| !kept.values().any(|k| k == *ip))
        .cloned()
        .collect();
    assert_eq!((kept.len(), freed.len()), (2, 3), "{kept:?}");
    let kept_pool: Vec<String> = kept.values().cloned().collect();
    let mut api_pool = vec!["192.168.95.20".to_owned()];
    api_pool.extend(freed.iter().cloned());
    kube.patch_spec(
        &ns.name,
        "cool",
        serde_json::json!({"services": [
            {"name": web, "network": net, "ipPool": kept_pool},
            {"name": api, "network": net, "ipPool": api_pool},
        ]}),
    )
    .await;
    lab.docker(1, &["service", "scale", "--detach", &format!("{api}=4")]);
    wait_running(&lab, &api, 4, LONG).await;
    // Until the cooldown ends (less a margin for this shared machine's
    // clocks and polls), no container holds a freed address.
    while t0.elapsed() < Duration::from_secs(COOLDOWN - 4) {
        let taken: Vec<_> = docker_endpoints(&lab, &net)
            .into_iter()
            .filter(|(_, ip)| freed.contains(ip))
            .collect();
        assert!(
            taken.is_empty(),
            "{taken:?} taken {:?} after the scale-down, inside the {COOLDOWN} s cooldown",
            t0.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Then api gets them, without waiting for a resync.
    let b = settled(&kube, &lab, &ns.name, "cool", &net, 6).await;
    let api_ips: BTreeSet<String> = slot_ips(&b, &api).into_values().collect();
    assert!(freed.is_subset(&api_ips), "{api_ips:?} {freed:?}");
    assert!(
        t0.elapsed() < Duration::from_secs(COOLDOWN + 60),
        "api bound {:?} after the scale-down",
        t0.elapsed()
    );
}

/// The addresses Docker shows on `net`.
fn addresses(lab: &Lab, net: &str) -> BTreeSet<String> {
    docker_endpoints(lab, net)
        .into_iter()
        .map(|(_, ip)| ip)
        .collect()
}

fn set(ips: &[&str]) -> BTreeSet<String> {
    ips.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test]
async fn a_host_docker_cannot_see_never_gets_its_address_taken_by_mvconf_up() {
    let Some(lab) = Lab::get() else { return };
    let svc = unique("l2-dad-cli");
    let net = unique("l2-dad-cli-net");
    let parent = lab.parent(5);
    let _nets = lab.networks_guard(&[&net]);
    // A host on the segment holding .11, the second address of the pool.
    let host = StrangerHost::new("c", "192.168.96.11/24");
    let _s = lab.service(&svc, Mode::Replicated(3));
    wait_running(&lab, &svc, 3, LONG).await;
    let image = lab.probe_image();
    let conf = write_conf(
        "dad-cli",
        &serde_json::json!({
            "networks": [{"name": net, "subnet": "192.168.96.0/24", "gateway": "192.168.96.1", "parent": parent}],
            "services": [{"name": svc, "network": net, "ip_pool": ["192.168.96.10-192.168.96.13"]}]
        }),
    );
    let up = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_mvconf"))
            .arg("-f")
            .arg(&conf)
            .arg("up")
            .args(extra)
            .env_remove("RUST_LOG")
            .env_remove("MVCONF_DCE_URL")
            .env_remove("MVCONF_PROBE_IMAGE")
            // Through the DCE gateway (anonymous): the probe container is
            // created, started, waited for, read and removed on its node
            // through the node proxy path, as the connects are.
            .args(["--dce", &lab.dce_anon_url])
            .output()
            .expect("run mvconf")
    };
    // Without probing, Docker shows nothing on .11: it would be handed out.
    let plan = up(&["--dry-run"]);
    assert!(
        text(&plan).contains("with 192.168.96.11"),
        "{}",
        text(&plan)
    );

    let out = up(&["--probe-image", &image]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert_eq!(
        addresses(&lab, &net),
        set(&["192.168.96.10", "192.168.96.12", "192.168.96.13"]),
        "{said}"
    );
    assert!(
        said.contains("192.168.96.11") && said.contains(&host.mac()) && said.contains("ARP probe"),
        "the unseen holder is not reported: {said}"
    );
    // The audit, probing the free addresses, names the host.
    let audit = std::process::Command::new(env!("CARGO_BIN_EXE_mvconf"))
        .arg("-f")
        .arg(&conf)
        .args([
            "audit",
            "-o",
            "json",
            "--probe-image",
            &image,
            "--dce",
            &lab.dce_anon_url,
        ])
        .env("RUST_LOG", "warn")
        .output()
        .expect("mvconf audit");
    let report: serde_json::Value =
        serde_json::from_slice(&audit.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&audit)));
    assert!(!audit.status.success(), "{report:#}");
    let findings = report["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 1, "{report:#}");
    assert_eq!(findings[0]["kind"], "UnseenHolder");
    assert_eq!(findings[0]["ip"], "192.168.96.11");
    assert_eq!(findings[0]["mac"], host.mac().as_str());
    // The network mvconf created gives Docker's own auto-assign a range
    // outside the pool: a container started without --ip gets none of it.
    let name = unique("l2-dad-cli-stranger");
    let _strangers = Strangers {
        lab: &lab,
        names: vec![(1, name.clone())],
    };
    let got = start_without_ip(&lab, 1, &name, &net);
    assert!(
        got.starts_with("192.168.96.")
            && got.split('.').nth(3).and_then(|o| o.parse::<u8>().ok()) >= Some(128),
        "Docker's auto-assign gave {got}"
    );
    // No probe container of this network is left behind (the label's value
    // is the network: the other tests' operators probe their own networks
    // at the same time).
    let filter = format!("label=io.mvconf.probe={net}");
    for k in 1..=lab.nodes {
        let left = lab.docker(k, &["ps", "-aq", "--filter", &filter]);
        assert!(left.is_empty(), "node{k}: {left}");
    }
}

#[tokio::test]
async fn a_host_docker_cannot_see_is_skipped_reported_and_its_address_used_once_it_leaves() {
    let Some((lab, kube, ns)) = setup("e2e-l2-dad").await else {
        return;
    };
    let svc = unique("l2-dad-web");
    let net = unique("l2-dad-net");
    let parent = lab.parent(6);
    let _nets = lab.networks_guard(&[&net]);
    let host = StrangerHost::new("o", "192.168.97.11/24");
    let mac = host.mac();
    let _s = lab.service(&svc, Mode::Replicated(3));
    let image = lab.probe_image();
    let op = Operator::start(
        &ns.name,
        "dad",
        &["--probe-image", &image, "--probe-recheck-seconds", "2"],
    );
    kube.create(
        &ns.name,
        &binding_yaml(
            "dad",
            &net,
            97,
            &parent,
            &[(&svc, "192.168.97.10-192.168.97.13")],
            "Disconnect",
        ),
    )
    .await;
    let b = settled(&kube, &lab, &ns.name, "dad", &net, 3).await;
    assert_eq!(
        addresses(&lab, &net),
        set(&["192.168.97.10", "192.168.97.12", "192.168.97.13"])
    );
    // Reported: status, Event, metric.
    let unseen = &b.status.as_ref().unwrap().networks[0].unseen_holders;
    assert_eq!(unseen.len(), 1, "{unseen:?}");
    assert_eq!(
        (unseen[0].address.as_str(), unseen[0].mac.as_str()),
        ("192.168.97.11", mac.as_str())
    );
    let events = kube.events(&ns.name, "dad").await;
    assert!(
        events
            .iter()
            .any(|(r, n)| r == "UnseenHolder" && n.contains("192.168.97.11")),
        "{events:?}"
    );
    assert_eq!(
        op.metric_sum("mvconf_unseen_holders", |_| true).await,
        Some(1.0)
    );
    // The audit names it too, and is not clean while it holds the address.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mvconf"))
        .args([
            "audit",
            "-o",
            "json",
            "--binding",
            &format!("{}/dad", ns.name),
        ])
        .env("RUST_LOG", "warn")
        .output()
        .expect("mvconf audit");
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    assert!(!out.status.success(), "{report:#}");
    assert!(
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["kind"] == "UnseenHolder"
                && f["ip"] == "192.168.97.11"
                && f["mac"] == mac.as_str()),
        "{report:#}"
    );
    assert!(
        op.metric_sum("mvconf_probed_addresses", |_| true)
            .await
            .unwrap_or(0.0)
            >= 3.0
    );

    // A fourth replica: the only free address is the host's; it waits.
    lab.docker(1, &["service", "scale", "--detach", &format!("{svc}=4")]);
    wait_running(&lab, &svc, 4, LONG).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(addresses(&lab, &net).len(), 3);
    assert!(!addresses(&lab, &net).contains("192.168.97.11"));

    // The host leaves: the next probe finds .11 free, and the fourth
    // replica gets it.
    drop(host);
    let b = settled(&kube, &lab, &ns.name, "dad", &net, 4).await;
    assert!(addresses(&lab, &net).contains("192.168.97.11"));
    assert!(b.status.unwrap().networks[0].unseen_holders.is_empty());
    assert_eq!(
        op.metric_sum("mvconf_unseen_holders", |_| true).await,
        Some(0.0)
    );
}
