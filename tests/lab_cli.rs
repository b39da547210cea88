//! mvconf's commands against the real lab: the manual's workflow on three
//! nodes, idempotence, sticky addresses, overlaps, exhaustion, a node down.

mod common;

use common::{Lab, Mode, text, unique, write_conf};
use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Output};
use std::sync::RwLock;
use std::time::{Duration, Instant};

/// The node-down test stops an engine: it runs alone.
static NODES: RwLock<()> = RwLock::new(());

fn mvconf(file: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mvconf"));
    cmd.arg("-f")
        .arg(file)
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("MVCONF_DCE_URL");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run mvconf")
}

/// Every container's addresses on `network`, across all nodes: (container, node, ip).
fn endpoints(lab: &Lab, network: &str) -> Vec<(String, usize, String)> {
    let mut out = Vec::new();
    for k in 1..=lab.nodes {
        if !lab.try_docker(k, &["network", "inspect", network]) {
            continue;
        }
        let json = lab.docker(
            k,
            &[
                "network",
                "inspect",
                network,
                "--format",
                "{{json .Containers}}",
            ],
        );
        let map: BTreeMap<String, serde_json::Value> =
            serde_json::from_str(&json).unwrap_or_default();
        for (id, c) in map {
            let ip = c["IPv4Address"]
                .as_str()
                .unwrap_or_default()
                .split('/')
                .next()
                .unwrap_or_default()
                .to_owned();
            out.push((id, k, ip));
        }
    }
    out
}

fn assert_unique(eps: &[(String, usize, String)]) {
    let mut seen = BTreeSet::new();
    for (_, _, ip) in eps {
        assert!(
            seen.insert(ip.clone()),
            "{ip} is on two containers: {eps:?}"
        );
    }
}

fn status_rows(file: &std::path::Path) -> Vec<serde_json::Value> {
    let out = mvconf(file, &["status", "-o", "json"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Waits until every service has its running containers.
fn wait_running(lab: &Lab, services: &[(&str, usize)]) {
    let start = Instant::now();
    loop {
        let ok = services.iter().all(|(s, n)| {
            let mut count = 0;
            for k in 1..=lab.nodes {
                count += lab
                    .docker(
                        k,
                        &[
                            "ps",
                            "-q",
                            "--filter",
                            &format!("label=com.docker.swarm.service.name={s}"),
                        ],
                    )
                    .lines()
                    .count();
            }
            count == *n
        });
        if ok {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "services did not start: {services:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn the_manuals_workflow_on_three_nodes() {
    let Some(lab) = Lab::get() else { return };
    let _shared = NODES.read().unwrap_or_else(|e| e.into_inner());
    let (web, api, agent) = (unique("cli-web"), unique("cli-api"), unique("cli-agent"));
    let (net_a, net_b) = (unique("cli-mva"), unique("cli-mvb"));
    let _nets = lab.networks_guard(&[&net_a, &net_b]);
    let (parent_a, parent_b) = (lab.parent(5), lab.parent(6));
    let _s1 = lab.service_with(
        &web,
        Mode::Replicated(3),
        &["-p", "18090:80"],
        &["httpd", "-f", "-p", "80"],
    );
    let _s2 = lab.service(&api, Mode::Replicated(2));
    let _s3 = lab.service(&agent, Mode::Global);
    let conf = write_conf(
        "workflow",
        &serde_json::json!({
            "networks": [
                {"name": net_a, "subnet": "192.168.61.0/24", "gateway": "192.168.61.1", "parent": parent_a},
                {"name": net_b, "subnet": "192.168.62.0/24", "gateway": "192.168.62.1", "parent": parent_b, "ip_range": "192.168.62.128/25"}
            ],
            "services": [
                {"name": web, "network": net_a, "ip_pool": ["192.168.61.10-192.168.61.19"]},
                {"name": agent, "network": net_a, "ip_pool": ["192.168.61.100-192.168.61.101", "192.168.61.105"]},
                {"name": api, "network": net_b, "ip_pool": ["192.168.62.20", "192.168.62.21-192.168.62.29"]}
            ]
        }),
    );
    wait_running(&lab, &[(&web, 3), (&api, 2), (&agent, lab.nodes)]);

    // up: every running container bound, from its pool, no address twice.
    let t0 = Instant::now();
    let out = mvconf(&conf, &["up"], &[]);
    let up_time = t0.elapsed();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("8 connected"), "{}", text(&out));
    let a = endpoints(&lab, &net_a);
    let b = endpoints(&lab, &net_b);
    assert_eq!((a.len(), b.len()), (3 + lab.nodes, 2));
    assert_unique(&a);
    for (_, _, ip) in &b {
        let last: u8 = ip.rsplit('.').next().unwrap().parse().unwrap();
        assert!((20..=29).contains(&last), "{ip} outside api's pool");
    }

    // Containers on different nodes reach each other over macvlan.
    let (c1, n1, _) = a.iter().find(|(_, n, _)| *n == 1).cloned().unwrap();
    let (_, _, far_ip) = a.iter().find(|(_, n, _)| *n != 1).cloned().unwrap();
    let ping = lab.docker(n1, &["exec", &c1, "ping", "-c", "2", "-W", "2", &far_ip]);
    assert!(ping.contains("0% packet loss"), "{ping}");

    // status shows the truth: the same containers and addresses as Docker.
    let rows = status_rows(&conf);
    assert_eq!(rows.len(), 3 + 2 + lab.nodes);
    let docker_view: BTreeSet<(String, String)> = a
        .iter()
        .chain(&b)
        .map(|(c, _, ip)| (c[..12].to_owned(), ip.clone()))
        .collect();
    let status_view: BTreeSet<(String, String)> = rows
        .iter()
        .map(|r| {
            (
                r["container_id"].as_str().unwrap()[..12].to_owned(),
                r["macvlan_ip"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(status_view, docker_view);
    let table = mvconf(
        &conf,
        &[
            "status",
            "--fields",
            "macvlan_ip,SERVICE NAME,Host IP",
            "--sort",
            "macvlan_ip",
        ],
        &[],
    );
    let table = String::from_utf8(table.stdout).unwrap();
    assert!(table.starts_with("MACVLAN IP"), "{table}");
    assert_eq!(table.lines().count(), 1 + 3 + 2 + lab.nodes, "{table}");

    // A second up makes no mutating call at all.
    let again = mvconf(&conf, &["up"], &[("DEBUG", "1")]);
    assert!(again.status.success(), "{}", text(&again));
    assert!(text(&again).contains("mutating=0"), "{}", text(&again));
    assert!(text(&again).contains("no change"), "{}", text(&again));

    // Kill a web container: swarm replaces it; up gives the new one the old address.
    let (victim, vnode, vip) = a
        .iter()
        .find(|(c, _, _)| {
            rows.iter().any(|r| {
                r["service_name"] == web.as_str()
                    && c.starts_with(r["container_id"].as_str().unwrap())
            })
        })
        .cloned()
        .unwrap();
    lab.docker(vnode, &["kill", &victim]);
    wait_running(&lab, &[(&web, 3)]);
    let out = mvconf(&conf, &["up"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let after = endpoints(&lab, &net_a);
    assert!(
        after.iter().any(|(c, _, ip)| c != &victim && ip == &vip),
        "{vip} not given back: {after:?}"
    );
    assert_unique(&after);

    // uningress / reingress really detach and re-attach the ingress network.
    let ingress_of = || -> usize {
        status_rows(&conf)
            .iter()
            .filter(|r| r["service_name"] == web.as_str() && r["ingress"] == true)
            .count()
    };
    assert_eq!(ingress_of(), 3);
    assert!(mvconf(&conf, &["uningress"], &[]).status.success());
    assert_eq!(ingress_of(), 0);
    assert!(mvconf(&conf, &["reingress"], &[]).status.success());
    assert_eq!(ingress_of(), 3);
    // Services without published ports never get ingress.
    assert!(
        status_rows(&conf)
            .iter()
            .filter(|r| r["service_name"] == agent.as_str())
            .all(|r| r["ingress"] == false)
    );

    // down: no endpoint and no network left anywhere.
    let out = mvconf(&conf, &["down"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    for k in 1..=lab.nodes {
        assert!(
            !lab.try_docker(k, &["network", "inspect", &net_a]),
            "{net_a} left on node{k}"
        );
        assert!(
            !lab.try_docker(k, &["network", "inspect", &net_b]),
            "{net_b} left on node{k}"
        );
    }

    // The same connects, one by one with the docker CLI, for the note.
    for k in 1..=lab.nodes {
        lab.docker(
            k,
            &[
                "network",
                "create",
                "-d",
                "macvlan",
                "--subnet",
                "192.168.61.0/24",
                "--gateway",
                "192.168.61.1",
                "-o",
                &format!("parent={parent_a}"),
                &net_a,
            ],
        );
        lab.docker(
            k,
            &[
                "network",
                "create",
                "-d",
                "macvlan",
                "--subnet",
                "192.168.62.0/24",
                "--gateway",
                "192.168.62.1",
                "--ip-range",
                "192.168.62.128/25",
                "-o",
                &format!("parent={parent_b}"),
                &net_b,
            ],
        );
    }
    let mut by_hand = Vec::new();
    for (svc, net, base) in [
        (&web, &net_a, "192.168.61.1"),
        (&agent, &net_a, "192.168.61.10"),
        (&api, &net_b, "192.168.62.2"),
    ] {
        for k in 1..=lab.nodes {
            for (i, c) in lab
                .docker(
                    k,
                    &[
                        "ps",
                        "-q",
                        "--filter",
                        &format!("label=com.docker.swarm.service.name={svc}"),
                    ],
                )
                .lines()
                .enumerate()
            {
                by_hand.push((k, net.clone(), c.to_owned(), format!("{base}{}", k * 3 + i)));
            }
        }
    }
    let t1 = Instant::now();
    for (k, net, c, ip) in &by_hand {
        lab.docker(*k, &["network", "connect", "--ip", ip, net, c]);
    }
    let by_hand_time = t1.elapsed();
    for (k, net, c, _) in &by_hand {
        lab.docker(*k, &["network", "disconnect", "-f", net, c]);
    }
    eprintln!(
        "timing: mvconf up bound {} containers (+{} networks) in {:.2} s; the same {} connects one by one with the docker CLI took {:.2} s",
        3 + 2 + lab.nodes,
        2 * lab.nodes,
        up_time.as_secs_f64(),
        by_hand.len(),
        by_hand_time.as_secs_f64()
    );
}

#[test]
fn overlapping_pools_between_two_files_never_share_an_address() {
    let Some(lab) = Lab::get() else { return };
    let _shared = NODES.read().unwrap_or_else(|e| e.into_inner());
    let (first, second) = (unique("cli-ovl-a"), unique("cli-ovl-b"));
    let net = unique("cli-ovl");
    let _nets = lab.networks_guard(&[&net]);
    let _s1 = lab.service(&first, Mode::Replicated(3));
    let _s2 = lab.service(&second, Mode::Replicated(3));
    let network = serde_json::json!({"name": net, "subnet": "192.168.63.0/24", "gateway": "192.168.63.1", "parent": lab.parent(7)});
    let a = write_conf(
        "ovl-a",
        &serde_json::json!({"networks": [network], "services": [{"name": first, "network": net, "ip_pool": ["192.168.63.10-192.168.63.12"]}]}),
    );
    let b = write_conf(
        "ovl-b",
        &serde_json::json!({"networks": [network], "services": [{"name": second, "network": net, "ip_pool": ["192.168.63.11-192.168.63.14"]}]}),
    );
    wait_running(&lab, &[(&first, 3), (&second, 3)]);
    let up = mvconf(&a, &["up"], &[]);
    assert!(up.status.success(), "{}", text(&up));
    // b's pool overlaps a's: .11 and .12 are taken, so two of b's three
    // containers fit (.13, .14) and the third has no address.
    let out = mvconf(&b, &["up"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("exhausted") && t.contains("1 without an address"),
        "{t}"
    );
    assert!(
        t.contains("not manage"),
        "foreign holders are reported: {t}"
    );
    let eps = endpoints(&lab, &net);
    assert_eq!(eps.len(), 5, "{eps:?}");
    assert_unique(&eps);
    // Running it again changes nothing and still says why.
    let again = mvconf(&b, &["up"], &[]);
    assert_eq!(again.status.code(), Some(1));
    assert_eq!(endpoints(&lab, &net).len(), 5);
    assert!(mvconf(&b, &["down"], &[]).status.code().is_some());
    assert!(mvconf(&a, &["down"], &[]).status.success());
}

#[test]
fn a_node_whose_engine_is_down_fails_loudly_and_the_rest_is_done() {
    let Some(lab) = Lab::get() else { return };
    let _alone = NODES.write().unwrap_or_else(|e| e.into_inner());
    let svc = unique("cli-down");
    let net = unique("cli-down-net");
    let _nets = lab.networks_guard(&[&net]);
    let _s = lab.service(&svc, Mode::Global);
    let conf = write_conf(
        "down",
        &serde_json::json!({
            "networks": [{"name": net, "subnet": "192.168.64.0/24", "gateway": "192.168.64.1", "parent": lab.parent(0)}],
            "services": [{"name": svc, "network": net, "ip_pool": ["192.168.64.10-192.168.64.20"]}]
        }),
    );
    wait_running(&lab, &[(&svc, lab.nodes)]);
    let last = lab.nodes;
    let stop = Command::new("scripts/lab")
        .args(["node-stop", &last.to_string()])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .unwrap();
    assert!(stop.success());
    let out = mvconf(&conf, &["up"], &[]);
    let restart = Command::new("scripts/lab")
        .args(["node-start", &last.to_string()])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .unwrap();
    assert!(restart.success());
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains(&format!("node{last} unreachable")), "{t}");
    // Every healthy node is fully done.
    let eps = endpoints(&lab, &net);
    let healthy: BTreeSet<usize> = eps.iter().map(|(_, k, _)| *k).collect();
    assert_eq!(healthy, (1..last).collect::<BTreeSet<_>>(), "{eps:?}");
    assert_unique(&eps);
    // Once it is back, up completes it.
    let start = Instant::now();
    loop {
        let out = mvconf(&conf, &["up"], &[]);
        if out.status.success() && endpoints(&lab, &net).len() == lab.nodes {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "node{last} did not come back: {}",
            text(&out)
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    assert_unique(&endpoints(&lab, &net));
    assert!(mvconf(&conf, &["down"], &[]).status.success());
}

fn audit(file: &std::path::Path) -> (bool, serde_json::Value) {
    let out = mvconf(file, &["audit", "-o", "json"], &[]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("audit printed no JSON ({e}): {}", text(&out)));
    (out.status.success(), report)
}

fn kinds(report: &serde_json::Value) -> Vec<String> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap().to_owned())
        .collect()
}

/// The audit against hand-made faults: what it finds, and that `up` repairs
/// only its own containers and leaves the stranger alone.
#[test]
fn audit_finds_hand_made_faults_and_up_repairs_only_its_own() {
    let Some(lab) = Lab::get() else { return };
    let _shared = NODES.read().unwrap_or_else(|e| e.into_inner());
    let web = unique("aud-web");
    let net = unique("aud-mv");
    let _nets = lab.networks_guard(&[&net]);
    let _s = lab.service(&web, Mode::Replicated(3));
    let conf = write_conf(
        "audit",
        &serde_json::json!({
            "networks": [{"name": net, "subnet": "192.168.71.0/24", "gateway": "192.168.71.1", "parent": lab.parent(1)}],
            "services": [{"name": web, "network": net, "ip_pool": ["192.168.71.10-192.168.71.19"]}]
        }),
    );
    wait_running(&lab, &[(&web, 3)]);
    let out = mvconf(&conf, &["up"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let (clean, report) = audit(&conf);
    assert!(clean, "{report:#}");
    assert_eq!(report["serviceContainers"], 3);
    assert_eq!(report["nodesRead"], lab.nodes);

    // A stranger on another node takes web's first address by hand: Docker's
    // per-node IPAM lets it.
    let eps = endpoints(&lab, &net);
    let (_, held_on, taken) = eps
        .iter()
        .find(|(_, _, ip)| ip == "192.168.71.10")
        .cloned()
        .expect("192.168.71.10 bound");
    let other = (1..=lab.nodes).find(|k| *k != held_on).unwrap();
    let stranger = unique("aud-stranger");
    lab.stranger(other, &stranger, &net, &taken);
    // And one of web's containers is disconnected by hand.
    let (victim, victim_node, _) = eps.iter().find(|(_, _, ip)| ip != &taken).cloned().unwrap();
    lab.docker(victim_node, &["network", "disconnect", &net, &victim]);

    let (clean, report) = audit(&conf);
    assert!(!clean);
    let mut found = kinds(&report);
    found.sort();
    assert_eq!(
        found,
        ["DuplicateAddress", "ForeignInPool", "Unbound"],
        "{report:#}"
    );
    let dup = &report["findings"][0];
    assert_eq!(dup["ip"], taken.as_str());
    // Plain text names the address and both nodes.
    let out = mvconf(&conf, &["audit"], &[]);
    assert_eq!(out.status.code(), Some(3));
    let t = text(&out);
    assert!(
        t.contains(&format!("{taken} is on 2 live containers")),
        "{t}"
    );

    // up never touches the stranger, and never moves its own container off
    // the address it held first (the stranger is the intruder; moving ours
    // would change the address its clients and firewalls know): it reports
    // the stranger, the audit keeps showing the clash until someone removes
    // it, and up reconnects its own victim.
    let out = mvconf(&conf, &["up"], &[]);
    assert!(
        text(&out).contains("does not manage"),
        "up should report the stranger: {}",
        text(&out)
    );
    let (_, report) = audit(&conf);
    let mut found = kinds(&report);
    found.sort();
    assert_eq!(found, ["DuplicateAddress", "ForeignInPool"], "{report:#}");
    let after = endpoints(&lab, &net);
    assert!(
        after.iter().any(|(_, k, ip)| *k == other && ip == &taken),
        "the stranger lost {taken}: {after:?}"
    );
    assert!(
        after.iter().any(|(_, k, ip)| *k == held_on && ip == &taken),
        "ours was moved off {taken}: {after:?}"
    );
    let ours: Vec<_> = after
        .iter()
        .filter(|(_, k, ip)| !(*k == other && ip == &taken))
        .collect();
    assert_eq!(ours.len(), 3, "{after:?}");

    // The stranger leaves: clean again.
    lab.docker(other, &["rm", "-f", &stranger]);
    let (clean, report) = audit(&conf);
    assert!(clean, "{report:#}");

    // A container moved outside the pool by hand is moved back by up.
    let (c, k, _) = endpoints(&lab, &net)[0].clone();
    lab.docker(k, &["network", "disconnect", &net, &c]);
    lab.docker(
        k,
        &["network", "connect", "--ip", "192.168.71.200", &net, &c],
    );
    let (clean, report) = audit(&conf);
    assert!(!clean);
    assert_eq!(kinds(&report), ["OutOfPool"], "{report:#}");
    let out = mvconf(&conf, &["up"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let (clean, report) = audit(&conf);
    assert!(clean, "{report:#}");
    let out = mvconf(&conf, &["down"], &[]);
    assert!(out.status.success(), "{}", text(&out));
}

fn fix(file: &std::path::Path, extra: &[&str]) -> (bool, serde_json::Value) {
    let mut args = vec!["audit", "--fix", "-o", "json"];
    args.extend_from_slice(extra);
    let out = mvconf(file, &args, &[]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("audit --fix printed no JSON ({e}): {}", text(&out)));
    (out.status.success(), report)
}

fn sorted_kinds(report: &serde_json::Value) -> Vec<String> {
    let mut k = kinds(report);
    k.sort();
    k
}

/// `audit --fix` after hand-made faults: it plans the repair and changes
/// nothing without --yes; with it, the audit is clean but for the stranger,
/// which nothing touched; `--from-report` repairs only what the report
/// found and still holds, and refuses what changed since.
#[test]
fn audit_fix_repairs_hand_made_faults_and_never_touches_a_stranger() {
    let Some(lab) = Lab::get() else { return };
    // Alone: the audit reports a duplicate address on any network, and the
    // other audit test makes one too.
    let _alone = NODES.write().unwrap_or_else(|e| e.into_inner());
    let web = unique("fix-web");
    let api = unique("fix-api");
    let (net, net2) = (unique("fix-mv"), unique("fix-mv2"));
    let _nets = lab.networks_guard(&[&net, &net2]);
    let _s = lab.service(&web, Mode::Replicated(3));
    let _a = lab.service(&api, Mode::Replicated(1));
    let conf = write_conf(
        "fix",
        &serde_json::json!({
            "networks": [
                {"name": net, "subnet": "192.168.56.0/24", "gateway": "192.168.56.1", "parent": lab.parent(9)},
                {"name": net2, "subnet": "192.168.57.0/24", "gateway": "192.168.57.1", "parent": lab.parent(10)}
            ],
            "services": [
                {"name": web, "network": net, "ip_pool": ["192.168.56.10-192.168.56.19"]},
                {"name": api, "network": net2, "ip_pool": ["192.168.57.10-192.168.57.19"]}
            ]
        }),
    );
    wait_running(&lab, &[(&web, 3), (&api, 1)]);
    let out = mvconf(&conf, &["up"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let (clean, report) = audit(&conf);
    assert!(clean, "{report:#}");

    // The faults: one of web's containers disconnected, one moved outside
    // its pool, one also put on api's network; and a stranger on another
    // node takes the address of that third one.
    let eps = endpoints(&lab, &net);
    let [(v1, k1, _), (v2, k2, _), (v3, k3, taken)] = [0, 1, 2].map(|i| eps[i].clone());
    lab.docker(k1, &["network", "disconnect", &net, &v1]);
    lab.docker(k2, &["network", "disconnect", &net, &v2]);
    lab.docker(
        k2,
        &["network", "connect", "--ip", "192.168.56.200", &net, &v2],
    );
    lab.docker(
        k3,
        &["network", "connect", "--ip", "192.168.57.99", &net2, &v3],
    );
    let other = (1..=lab.nodes).find(|k| *k != k3).unwrap();
    let stranger = unique("fix-stranger");
    lab.stranger(other, &stranger, &net, &taken);
    let faults = [
        "DuplicateAddress",
        "ForeignInPool",
        "OutOfPool",
        "Unbound",
        "WrongNetwork",
    ];
    let (_, report) = audit(&conf);
    assert_eq!(sorted_kinds(&report), faults, "{report:#}");

    // The plan, and nothing changed.
    let (clean, plan) = fix(&conf, &[]);
    assert!(!clean);
    assert_eq!(plan["applied"], false, "{plan:#}");
    let steps = plan["plan"]["steps"].as_array().unwrap();
    let mut disconnected: Vec<(&str, &str)> = steps
        .iter()
        .filter(|s| s["action"] == "disconnect")
        .map(|s| {
            (
                s["container"].as_str().unwrap(),
                s["network"].as_str().unwrap(),
            )
        })
        .collect();
    disconnected.sort();
    assert_eq!(
        disconnected,
        {
            let mut d = vec![(&v2[..12], net.as_str()), (&v3[..12], net2.as_str())];
            d.sort();
            d
        },
        "{plan:#}"
    );
    assert!(
        steps
            .iter()
            .any(|s| s["action"] == "rebind" && s["service"] == web.as_str()),
        "{plan:#}"
    );
    let left: Vec<&str> = plan["plan"]["left"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["finding"]["kind"].as_str().unwrap())
        .collect();
    assert_eq!(left, ["DuplicateAddress", "ForeignInPool"], "{plan:#}");
    let (_, report) = audit(&conf);
    assert_eq!(sorted_kinds(&report), faults, "the plan changed something");

    // Applied: only the stranger's findings are left, and it kept its
    // address, as did the container of ours it clashes with.
    let (_, done) = fix(&conf, &["--yes"]);
    assert_eq!(done["applied"], true, "{done:#}");
    assert_eq!(
        sorted_kinds(&done["after"]),
        ["DuplicateAddress", "ForeignInPool"],
        "{done:#}"
    );
    let after = endpoints(&lab, &net);
    assert!(
        after
            .iter()
            .any(|(c, k, ip)| *k == other && ip == &taken && c != &v3),
        "the stranger lost {taken}: {after:?}"
    );
    assert!(
        after.iter().any(|(c, _, ip)| c == &v3 && ip == &taken),
        "ours was moved off {taken}: {after:?}"
    );
    assert!(
        !endpoints(&lab, &net2).iter().any(|(c, _, _)| c == &v3),
        "{v3} still on {net2}"
    );
    lab.docker(other, &["rm", "-f", &stranger]);
    let (clean, report) = audit(&conf);
    assert!(clean, "{report:#}");

    // --from-report: a report of v1 unbound; by the time of the repair v1
    // is bound again by hand (stale) and v2 is unbound (not in the report).
    lab.docker(k1, &["network", "disconnect", &net, &v1]);
    let out = mvconf(&conf, &["audit", "-o", "json"], &[]);
    let saved = std::env::temp_dir().join(format!("{}.json", unique("fix-report")));
    std::fs::write(&saved, &out.stdout).unwrap();
    assert!(mvconf(&conf, &["up"], &[]).status.success());
    let v2ip = endpoints(&lab, &net)
        .into_iter()
        .find(|(c, _, _)| c == &v2)
        .map(|(_, _, ip)| ip)
        .unwrap();
    lab.docker(k2, &["network", "disconnect", &net, &v2]);
    let (_, stale) = fix(&conf, &["--from-report", saved.to_str().unwrap(), "--yes"]);
    let refused = stale["plan"]["refused"].as_array().unwrap();
    assert_eq!(refused.len(), 1, "{stale:#}");
    assert_eq!(refused[0]["finding"]["kind"], "Unbound");
    assert_eq!(refused[0]["finding"]["container"], &v1[..12]);
    assert!(
        stale["plan"]["steps"].as_array().unwrap().is_empty(),
        "{stale:#}"
    );
    assert_eq!(stale["applied"], false, "{stale:#}");
    let (_, report) = audit(&conf);
    assert_eq!(kinds(&report), ["Unbound"], "{report:#}");
    // Without the report, v2 is bound again, to its old address if free.
    let (clean, done) = fix(&conf, &["--yes"]);
    assert!(clean, "{done:#}");
    assert!(
        endpoints(&lab, &net)
            .iter()
            .any(|(c, _, ip)| c == &v2 && ip.starts_with("192.168.56.")),
        "{v2} (had {v2ip}) not bound again"
    );
    let _ = std::fs::remove_file(&saved);
    let out = mvconf(&conf, &["down"], &[]);
    assert!(out.status.success(), "{}", text(&out));
}

/// HTTPS endpoints: verified by default, a custom CA works, and skipping
/// verification needs the flag and says so in a warning.
#[test]
fn tls_is_verified_by_default_a_custom_ca_works_and_skipping_warns() {
    let Some(lab) = Lab::get() else { return };
    let (Ok(url), Ok(ca)) = (
        std::env::var("MVCONF_LAB_DCE_TLS_URL"),
        std::env::var("MVCONF_LAB_CA"),
    ) else {
        panic!("the lab has no HTTPS gateway: scripts/lab up; eval \"$(scripts/lab env)\"");
    };
    let conf = write_conf(
        "tls",
        &serde_json::json!({
            "auth": {"url": url, "username": lab.dce_user, "password": lab.dce_password},
            "networks": [{"name": unique("tls-mv"), "subnet": "192.168.72.0/24", "gateway": "192.168.72.1", "parent": lab.parent(0)}],
            "services": []
        }),
    );
    let nodes_read = |o: &Output| -> Option<u64> {
        serde_json::from_slice::<serde_json::Value>(&o.stdout)
            .ok()?
            .get("nodesRead")?
            .as_u64()
    };

    // The lab's CA is not in the system store: refused, and the error says why.
    let out = mvconf(&conf, &["audit", "-o", "json"], &[]);
    assert!(!out.status.success());
    let t = text(&out);
    assert!(t.to_lowercase().contains("certificate"), "{t}");
    assert!(!t.contains(&lab.dce_password), "{t}");

    let out = mvconf(&conf, &["--tls-ca", &ca, "audit", "-o", "json"], &[]);
    assert_eq!(nodes_read(&out), Some(lab.nodes as u64), "{}", text(&out));
    assert!(!text(&out).contains("verification is disabled"));

    let out = mvconf(
        &conf,
        &["--insecure-skip-tls-verify", "audit", "-o", "json"],
        &[],
    );
    assert_eq!(nodes_read(&out), Some(lab.nodes as u64), "{}", text(&out));
    assert!(
        text(&out).contains("TLS certificate verification is disabled"),
        "no warning: {}",
        text(&out)
    );
}

/// A tmux server of its own (a real terminal), killed when dropped.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn new(tag: &str) -> Option<Tmux> {
        let socket = format!("mvconf-{tag}-{}", std::process::id());
        Command::new("tmux").arg("-V").output().ok()?;
        Some(Tmux { socket })
    }

    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("run tmux");
        assert!(out.status.success(), "tmux {args:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `command` in a new 160x50 window; waits for it to print its
    /// exit code; returns what the pane shows (with its colours: `-e`) and
    /// every byte written to the terminal.
    fn session(&self, name: &str, command: &str) -> (String, Vec<u8>) {
        let raw = std::env::temp_dir().join(format!("{}-{name}.raw", self.socket));
        let _ = std::fs::remove_file(&raw);
        self.run(&[
            "new-session",
            "-d",
            "-s",
            name,
            "-x",
            "160",
            "-y",
            "50",
            "sh",
        ]);
        self.run(&[
            "pipe-pane",
            "-t",
            name,
            "-o",
            &format!("cat >> {}", raw.display()),
        ]);
        self.run(&[
            "send-keys",
            "-t",
            name,
            &format!("{command}; echo EXIT=$?"),
            "Enter",
        ]);
        let start = Instant::now();
        loop {
            let pane = self.run(&["capture-pane", "-p", "-e", "-J", "-S", "-", "-t", name]);
            // The line `echo` printed, not the command line typed.
            let ended = pane.lines().any(|l| {
                l.strip_prefix("EXIT=")
                    .is_some_and(|c| c.starts_with(|ch: char| ch.is_ascii_digit()))
            });
            if ended {
                // Let pipe-pane's cat write the last bytes.
                std::thread::sleep(Duration::from_millis(300));
                return (pane, std::fs::read(&raw).unwrap_or_default());
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "{command} did not end: {pane}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}

// Issue "A user's first hour": `-o json` of a mutating command lists every
// action with its outcome and a summary; `-o yaml` too; on a terminal a
// progress bar with counts and ETA runs under the action lines and the
// summary ends it; NO_COLOR=1 leaves no colour in the terminal; piped
// output is plain lines.
#[test]
fn mutating_commands_print_objects_for_programs_and_a_bar_for_people() {
    let Some(lab) = Lab::get() else { return };
    let _shared = NODES.read().unwrap_or_else(|e| e.into_inner());
    let Some(tmux) = Tmux::new("cli") else {
        panic!("tmux is missing: scripts/lab up installs it");
    };
    let svc = unique("cli-out");
    let net = unique("cli-out-net");
    let _nets = lab.networks_guard(&[&net]);
    let _s = lab.service(&svc, Mode::Replicated(12));
    let conf = write_conf(
        "out",
        &serde_json::json!({
            "networks": [{"name": net, "subnet": "192.168.58.0/24", "gateway": "192.168.58.1", "parent": lab.parent(11)}],
            "services": [{"name": svc, "network": net, "ip_pool": ["192.168.58.10-192.168.58.40"]}]
        }),
    );
    wait_running(&lab, &[(&svc, 12)]);

    // A dry run's object: every action planned, nothing done.
    let out = mvconf(&conf, &["up", "--dry-run", "-o", "json"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["dryRun"], true);
    let planned = plan["actions"].as_array().unwrap();
    assert_eq!(planned.len(), lab.nodes + 12, "{plan:#}");
    assert!(
        planned.iter().all(|a| a["outcome"] == "planned"),
        "{plan:#}"
    );

    // up -o json: the same actions, each with its outcome, and the summary.
    let out = mvconf(&conf, &["up", "-o", "json"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let up: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    assert_eq!(up["command"], "up");
    let actions = up["actions"].as_array().unwrap();
    assert_eq!(actions.len(), lab.nodes + 12, "{up:#}");
    assert!(actions.iter().all(|a| a["outcome"] == "done"), "{up:#}");
    let connects: Vec<&serde_json::Value> = actions
        .iter()
        .filter(|a| a["verb"] == "connected")
        .collect();
    assert_eq!(connects.len(), 12);
    for c in &connects {
        assert!(c["ip"].as_str().unwrap().starts_with("192.168.58."), "{c}");
        assert!(c["slot"].as_str().unwrap().starts_with(&svc), "{c}");
        assert!(c["container"].is_string() && c["node"].is_string(), "{c}");
    }
    assert_eq!(up["summary"]["done"]["connected"], 12);
    assert_eq!(up["summary"]["ok"], true);
    let eps = endpoints(&lab, &net);
    assert_eq!(eps.len(), 12);
    assert_unique(&eps);

    // Piped text: plain lines, no escape sequence.
    let out = mvconf(&conf, &["disconnect"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let said = text(&out);
    assert!(!said.contains('\x1b'), "{said:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains(": ok"))
            .count(),
        12,
        "{said}"
    );

    // On a terminal: the bar (counts, ETA), every action line, the summary.
    let env = ["DOCKER_HOST", "MVCONF_LAB_DCE_URL", "PATH"]
        .iter()
        .filter_map(|k| Some(format!("{k}='{}'", std::env::var(k).ok()?)))
        .collect::<Vec<_>>()
        .join(" ");
    let bin = env!("CARGO_BIN_EXE_mvconf");
    let cmd = |extra: &str, sub: &str| {
        format!(
            "env -u RUST_LOG {env} TERM=xterm-256color {extra} {bin} -f {} {sub}",
            conf.display()
        )
    };
    let (pane, raw) = tmux.session("bar", &cmd("", "up"));
    let raw = String::from_utf8_lossy(&raw);
    assert!(pane.contains("EXIT=0"), "{pane}");
    assert!(
        raw.contains("] 12/12 actions") && raw.contains("ETA"),
        "no progress bar on the terminal: {raw:?}"
    );
    // (The networks stayed: `disconnect` keeps them.)
    assert_eq!(pane.matches(": ok").count(), 12, "{pane}");
    assert!(pane.contains("mvconf up: 12 connected"), "{pane}");
    // The logs are coloured on a terminal ...
    assert!(pane.contains("\x1b["), "no colour at all: {pane:?}");
    // ... and not with NO_COLOR.
    let (pane, _) = tmux.session("nocolor", &cmd("NO_COLOR=1", "down"));
    assert!(pane.contains("EXIT=0"), "{pane}");
    assert!(pane.contains("mvconf down:"), "{pane}");
    assert!(!pane.contains('\x1b'), "NO_COLOR=1 left escapes: {pane:?}");

    // -o yaml of the same: one document.
    let out = mvconf(&conf, &["down", "-o", "yaml"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let down: serde_json::Value =
        serde_saphyr::from_str(&String::from_utf8_lossy(&out.stdout)).unwrap();
    assert_eq!(down["command"], "down");
    assert_eq!(down["summary"]["ok"], true);
}

// As the docker CLI finds its engine (DOCKER_CONTEXT, the current context),
// and as the old mvconf found its login (~/.dce_auth), when nothing else is
// given: no flag, no auth in the file, no saved login, no DOCKER_HOST.
#[test]
fn the_docker_context_and_the_old_mvconfs_login_are_found_as_before() {
    use base64::Engine as _;
    use std::os::unix::fs::PermissionsExt;
    let Some(lab) = Lab::get() else { return };
    let _shared = NODES.read().unwrap_or_else(|e| e.into_inner());
    let svc = unique("cli-ctx");
    let _s = lab.service(&svc, Mode::Replicated(2));
    wait_running(&lab, &[(&svc, 2)]);
    let conf = write_conf(
        "ctx",
        &serde_json::json!({
            "networks": [{"name": "ctx-mv", "subnet": "192.168.59.0/24", "gateway": "192.168.59.1", "parent": lab.parent(11)}],
            "services": [{"name": svc, "network": "ctx-mv", "ip_pool": ["192.168.59.10-192.168.59.20"]}]
        }),
    );
    let home = std::env::temp_dir().join(format!("mvconf-ctx-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);
    std::fs::create_dir_all(&home).unwrap();
    let docker_config = home.join("docker");
    let socket = std::env::var("DOCKER_HOST").unwrap();
    let docker = |args: &[&str]| {
        let out = Command::new("docker")
            .arg("--config")
            .arg(&docker_config)
            .args(args)
            .env_remove("DOCKER_HOST")
            .output()
            .unwrap();
        assert!(out.status.success(), "docker {args:?}: {}", text(&out));
    };
    docker(&[
        "context",
        "create",
        "lab",
        "--docker",
        &format!("host={socket}"),
    ]);
    let status = |env: &[(&str, &str)]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mvconf"));
        cmd.arg("-f")
            .arg(&conf)
            .args(["status", "-o", "json"])
            .env_remove("DOCKER_HOST")
            .env_remove("DOCKER_CONTEXT")
            .env_remove("MVCONF_DCE_URL")
            .env_remove("RUST_LOG")
            .env("DOCKER_CONFIG", &docker_config)
            .env("MVCONF_AUTH_FILE", home.join("no-login.json"))
            .env("MVCONF_DCE_AUTH_FILE", home.join("no-dce-auth"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{env:?}: {}", text(&out));
        let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(rows.len(), 2, "{rows:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let said = status(&[("DOCKER_CONTEXT", "lab")]);
    assert!(said.contains("DOCKER_CONTEXT lab"), "{said}");
    docker(&["context", "use", "lab"]);
    let said = status(&[]);
    assert!(said.contains("the current docker context lab"), "{said}");

    // The old mvconf's login for the lab's gateway, as the only login.
    let old = home.join(".dce_auth");
    let login = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", lab.dce_user, lab.dce_password));
    std::fs::write(&old, format!(r#"{{"{}": "{login}"}}"#, lab.dce_url)).unwrap();
    std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o600)).unwrap();
    let said = status(&[("MVCONF_DCE_AUTH_FILE", old.to_str().unwrap())]);
    assert!(
        said.contains("the old mvconf saved") && said.contains(&lab.dce_url),
        "{said}"
    );
    assert!(!said.contains(&lab.dce_password), "{said}");
}

/// Requests that reached nodes 2 and 3 through the controller at the
/// manager's address, by DCE's engine port.
fn controller_node_calls() -> usize {
    let dir = std::env::var("MVCONF_LAB_DIR").unwrap_or_else(|_| "/var/lib/mvconf-lab".into());
    std::fs::read_to_string(format!("{dir}/gateway/controller-access.log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| {
            l.contains("/api/nodes/10.99.0.12:12376/docker/")
                || l.contains("/api/nodes/10.99.0.13:12376/docker/")
        })
        .count()
}

// Issue 18: on DCE's controller node (node1's network, its engine at the
// default socket, nothing else named), mvconf finds the controller through
// the swarm service dce_base as DCE's own tools do, with the file's
// credentials (`auth.url: "auto"`), anonymously where DCE allows it, or with
// the old mvconf's `~/.dce_auth`; and binds containers on all three nodes
// through it. Before, it fell back to the local engine and never looked.
#[test]
fn on_a_dce_controller_node_the_controller_is_found_and_used() {
    use base64::Engine as _;
    use std::os::unix::fs::PermissionsExt;
    let Some(lab) = Lab::get() else { return };
    let _shared = NODES.read().unwrap_or_else(|e| e.into_inner());
    let svc = unique("cli-dce");
    let net = "dce-auto-mv";
    let _nets = lab.networks_guard(&[net]);
    let _s = lab.service(&svc, Mode::Global);
    wait_running(&lab, &[(&svc, lab.nodes)]);
    let home = std::env::temp_dir().join(format!("mvconf-dce-auto-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);
    std::fs::create_dir_all(&home).unwrap();
    let conf = |name: &str, auth: Option<serde_json::Value>| {
        let mut body = serde_json::json!({
            "networks": [{"name": net, "subnet": "192.168.61.0/24", "gateway": "192.168.61.1", "parent": lab.parent(2)}],
            "services": [{"name": svc, "network": net, "ip_pool": ["192.168.61.10-192.168.61.20"]}]
        });
        if let Some(a) = auth {
            body["auth"] = a;
        }
        write_conf(name, &body)
    };
    // A user's shell on node1: nothing in the environment names an endpoint.
    let on_manager = |file: &std::path::Path, args: &[&str]| {
        let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/lab"))
            .args(["on-manager", "env", "-i"])
            .arg(format!("HOME={}", home.display()))
            .arg(env!("CARGO_BIN_EXE_mvconf"))
            .arg("-f")
            .arg(file)
            .args(args)
            .output()
            .expect("run scripts/lab on-manager");
        (out.status.code(), text(&out))
    };
    let bound_on_every_node = |said: &str| {
        let eps = endpoints(&lab, net);
        let nodes: BTreeSet<usize> = eps.iter().map(|(_, k, _)| *k).collect();
        assert_eq!(eps.len(), lab.nodes, "{eps:?}\n{said}");
        assert_eq!(nodes.len(), lab.nodes, "{eps:?}\n{said}");
        assert_unique(&eps);
    };
    let undo = |file: &std::path::Path| {
        let out = mvconf(file, &["down"], &[]);
        assert!(out.status.success(), "{}", text(&out));
        assert!(endpoints(&lab, net).is_empty());
    };
    let detected = "DCE http://10.99.0.11, detected: the local engine is a manager of a swarm running dce_base";

    // 1. conf.json with `auth.url: "auto"` and the controller's login.
    let with_login = conf(
        "dce-login",
        Some(serde_json::json!({
            "url": "auto", "username": lab.dce_user, "password": lab.dce_password
        })),
    );
    let before = controller_node_calls();
    let (code, said) = on_manager(&with_login, &["up"]);
    assert_eq!(code, Some(0), "{said}");
    assert!(
        said.contains(detected) && said.contains("login from the file's auth block"),
        "{said}"
    );
    assert!(!said.contains(&lab.dce_password), "{said}");
    bound_on_every_node(&said);
    assert!(
        controller_node_calls() > before,
        "nodes 2 and 3 were not reached through the controller:\n{said}"
    );
    undo(&with_login);

    // 2. No credentials anywhere: refused by name while DCE refuses
    // anonymous access (nothing done), bound once DCE's admin allows it.
    let bare = conf("dce-bare", None);
    let (code, said) = on_manager(&bare, &["up"]);
    assert_eq!(code, Some(2), "{said}");
    assert!(
        said.contains("refuses anonymous access") && said.contains("mvconf login"),
        "{said}"
    );
    assert!(endpoints(&lab, net).is_empty(), "{said}");
    for k in 1..=lab.nodes {
        assert!(!lab.try_docker(k, &["network", "inspect", net]), "{said}");
    }
    {
        let _anonymous = common::AnonymousController::on();
        let (code, said) = on_manager(&bare, &["up"]);
        assert_eq!(code, Some(0), "{said}");
        assert!(
            said.contains(detected) && said.contains("(anonymous)"),
            "{said}"
        );
        bound_on_every_node(&said);
    }
    undo(&bare);

    // 3. The old mvconf's `mvconf login 10.99.0.11` as the only login.
    let old = home.join(".dce_auth");
    let login = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", lab.dce_user, lab.dce_password));
    std::fs::write(&old, format!(r#"{{"10.99.0.11": "{login}"}}"#)).unwrap();
    std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (code, said) = on_manager(&bare, &["up"]);
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("http://10.99.0.11"), "{said}");
    assert!(said.contains("the old mvconf saved"), "{said}");
    bound_on_every_node(&said);
    // With `auth.url: "auto"`, the controller is detected and the old login
    // is the one saved for it.
    let auto = conf("dce-auto", Some(serde_json::json!({"url": "auto"})));
    let (code, said) = on_manager(&auto, &["status", "-o", "json"]);
    assert_eq!(code, Some(0), "{said}");
    assert!(
        said.contains(detected) && said.contains("saved login"),
        "{said}"
    );
    undo(&bare);

    // `-H` still wins: the local engine, no controller.
    let (code, said) = on_manager(&bare, &["-H", "unix:///var/run/docker.sock", "status"]);
    assert_eq!(code, Some(0), "{said}");
    assert!(!said.contains("detected"), "{said}");
    let _ = std::fs::remove_dir_all(&home);
}
