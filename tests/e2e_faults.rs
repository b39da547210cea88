//! The bad day, proven: hand-made tampering, a node's engine killed in the
//! middle of a large bind, the DCE gateway gone and its password rotated,
//! kube-apiserver restarted, a node drained, the operator killed mid-plan
//! (alone, and as the leader of two). After each, `mvconf audit` (the
//! binary, against the real cluster) is the oracle.
//!
//! These faults touch what every test shares (nodes, the gateway, the
//! apiserver): the tests here run one at a time.

mod common;

use common::e2e::*;
use common::k8s::{Kube, Operator, free_port};
use common::text;
use common::{Lab, Mode, unique};
use mvconf::crd::{MacvlanBinding, RecordState};
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn mvconf(args: &[&str]) -> std::process::Output {
    // MVCONF_TEST_OPERATOR_BIN: another build (to see a test fail first).
    let bin = std::env::var("MVCONF_TEST_OPERATOR_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_mvconf").to_owned());
    Command::new(bin)
        .args(args)
        .env_remove("MVCONF_DCE_URL")
        .env("RUST_LOG", "warn")
        .output()
        .expect("run mvconf")
}

/// `mvconf audit` of one binding, from the apiserver: (clean, report).
fn audit(ns: &str, name: &str) -> (bool, serde_json::Value) {
    audit_args(&["audit", "--binding", &format!("{ns}/{name}"), "-o", "json"])
}

fn audit_args(args: &[&str]) -> (bool, serde_json::Value) {
    let out = mvconf(args);
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "audit printed no JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.success(), report)
}

fn kinds(report: &serde_json::Value) -> BTreeSet<String> {
    report["findings"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|f| f["kind"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Polls the audit until its findings are exactly `want`.
async fn audit_until(ns: &str, name: &str, want: &[&str], timeout: Duration) -> serde_json::Value {
    let want: BTreeSet<String> = want.iter().map(|s| (*s).to_owned()).collect();
    let start = Instant::now();
    loop {
        let (_, report) = audit(ns, name);
        if kinds(&report) == want {
            return report;
        }
        assert!(
            start.elapsed() < timeout,
            "audit never showed {want:?} after {timeout:?}; last: {report:#}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// (slot, ip) of every Bound record.
fn slot_ips(b: &MacvlanBinding) -> BTreeMap<u64, String> {
    b.status
        .as_ref()
        .map(|s| {
            s.containers
                .iter()
                .filter(|r| r.state == RecordState::Bound)
                .filter_map(|r| Some((r.slot?, r.ip.clone()?)))
                .collect()
        })
        .unwrap_or_default()
}

fn lab_script(args: &[&str]) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/lab");
    let out = Command::new(script)
        .args(args)
        .output()
        .expect("scripts/lab");
    assert!(
        out.status.success(),
        "scripts/lab {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn hand_made_faults_are_repaired_or_reported_and_the_audit_agrees() {
    let _serial = SERIAL.lock().await;
    let Some((lab, kube, ns)) = setup("flt-hand").await else {
        return;
    };
    let svc = unique("flt-hand-web");
    let net = unique("flt-hand-net");
    let _nets = lab.networks_guard(&[&net]);
    let _s = lab.service(&svc, Mode::Replicated(3));
    let mut op = Operator::start(&ns.name, "hand", &["--resync-seconds", "3"]);
    kube.create(
        &ns.name,
        &binding_yaml(
            "hand",
            &net,
            90,
            &lab.parent(0),
            &[(&svc, "192.168.90.10-192.168.90.19")],
            "Retain",
        ),
    )
    .await;
    let b = settled(&kube, &lab, &ns.name, "hand", &net, 3).await;
    let (clean, report) = audit(&ns.name, "hand");
    assert!(clean, "{report:#}");
    assert_eq!(report["statusRecords"], 3);

    // With the operator away: one container disconnected by hand, and a
    // stranger takes a free pool address on node 1.
    op.kill();
    let before = status_endpoints(&b);
    let (victim, victim_ip) = before.iter().next().cloned().unwrap();
    let victim_node = (1..=lab.nodes)
        .find(|k| lab.try_docker(*k, &["network", "disconnect", &net, &victim]))
        .expect("disconnect the victim");
    let stranger = unique("flt-stranger");
    lab.stranger(1, &stranger, &net, "192.168.90.19");
    let (clean, report) = audit(&ns.name, "hand");
    assert!(!clean);
    assert_eq!(
        kinds(&report),
        ["ForeignInPool", "StatusContradicted", "Unbound"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect(),
        "{report:#}"
    );
    let said = serde_json::to_string(&report).unwrap();
    assert!(
        said.contains(&victim) && said.contains(&victim_ip),
        "{said}"
    );

    // While the operator is away, `audit --fix` repairs what is ours from
    // the binding's records (the victim gets its own address back), leaves
    // the stranger alone, and says that an operator install claims the
    // service.
    let binding = format!("{}/hand", ns.name);
    let (_, plan) = audit_args(&["audit", "--fix", "--binding", &binding, "-o", "json"]);
    assert_eq!(plan["applied"], false, "{plan:#}");
    assert!(
        plan["warnings"][0]
            .as_str()
            .is_some_and(|w| w.contains("claims these services") || w.contains("leads this swarm")),
        "{plan:#}"
    );
    let (clean, fixed) = audit_args(&[
        "audit",
        "--fix",
        "--yes",
        "--binding",
        &binding,
        "-o",
        "json",
    ]);
    assert!(!clean, "the stranger is still there: {fixed:#}");
    assert_eq!(
        kinds(&fixed["after"]),
        BTreeSet::from(["ForeignInPool".to_owned()]),
        "{fixed:#}"
    );
    assert!(
        docker_endpoints(&lab, &net).contains(&(victim.clone(), victim_ip.clone())),
        "audit --fix did not give {victim} its {victim_ip} back: {fixed:#}"
    );

    // Back: it has nothing of its own left to repair, and reports the
    // stranger without touching it.
    op.restart();
    audit_until(&ns.name, "hand", &["ForeignInPool"], LONG).await;
    assert!(
        docker_endpoints(&lab, &net).contains(&(victim.clone(), victim_ip.clone())),
        "{victim} did not get {victim_ip} back on node{victim_node}"
    );
    let held = lab.docker(
        1,
        &[
            "inspect",
            &stranger,
            "--format",
            &format!("{{{{(index .NetworkSettings.Networks \"{net}\").IPAddress}}}}"),
        ],
    );
    assert_eq!(held, "192.168.90.19", "the stranger was touched");
    // The restarted operator's first pass (once the killed one's Lease has
    // run out) reports the stranger.
    common::wait_for("a ForeignAddress Event", LONG, || async {
        kube.events(&ns.name, "hand")
            .await
            .iter()
            .any(|(r, n)| r == "ForeignAddress" && n.contains("192.168.90.19"))
            .then_some(())
    })
    .await;
    lab.docker(1, &["rm", "-f", &stranger]);
    audit_until(&ns.name, "hand", &[], LONG).await;

    // Deleted with Retain: its containers stay on mvconf's network, which
    // no binding claims any more: left behind, says the audit of all bindings.
    kube.delete(&ns.name, "hand").await;
    kube.wait_gone(&ns.name, "hand", LONG).await;
    let (clean, report) = audit_args(&["audit", "--all-bindings", "-o", "json"]);
    assert!(!clean);
    let left: Vec<&serde_json::Value> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == "LeftBehind" && f["holder"]["network"] == net.as_str())
        .collect();
    assert_eq!(left.len(), 3, "{report:#}");
    // `audit --fix` releases what the deleted binding left.
    let (_, fixed) = audit_args(&["audit", "--fix", "--yes", "--all-bindings", "-o", "json"]);
    assert_eq!(fixed["applied"], true, "{fixed:#}");
    let still: Vec<&serde_json::Value> = fixed["after"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["holder"]["network"] == net.as_str())
        .collect();
    assert!(still.is_empty(), "{fixed:#}");
    assert!(docker_endpoints(&lab, &net).is_empty());
    drop(op);
}

#[tokio::test]
async fn a_node_killed_in_the_middle_of_binding_300_containers() {
    let _serial = SERIAL.lock().await;
    let Some((lab, kube, ns)) = setup("flt-node").await else {
        return;
    };
    let n = std::env::var("MVCONF_FAULT_CONTAINERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300usize);
    let svc = unique("flt-node-web");
    let net = unique("flt-node-net");
    let _nets = lab.networks_guard(&[&net]);
    let _s = lab.service(&svc, Mode::Replicated(n as u32));
    // Let swarm place every task; a /22 pool leaves room for the moves.
    wait_running(&lab, &svc, n, Duration::from_secs(600)).await;
    let op = Operator::start(&ns.name, "node", &["--resync-seconds", "5"]);
    let mut yaml = binding_yaml(
        "node",
        &net,
        0,
        &lab.parent(1),
        &[(&svc, "10.77.0.10-10.77.3.250")],
        "Disconnect",
    );
    yaml = yaml
        .replace("192.168.0.0/24", "10.77.0.0/22")
        .replace("192.168.0.1", "10.77.0.1");
    kube.create(&ns.name, &yaml).await;
    common::wait_for("the first connects", LONG, || async {
        (docker_endpoints(&lab, &net).len() >= 20).then_some(())
    })
    .await;
    lab_script(&["node-stop", "3"]);
    // Whatever happens below, node3 comes back for the tests after this one.
    struct Restart;
    impl Drop for Restart {
        fn drop(&mut self) {
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/lab");
            let _ = Command::new(script).args(["node-start", "3"]).output();
        }
    }
    let _restart = Restart;
    let killed_at = Instant::now();
    // The binding says what is wrong, naming the node.
    let b = kube
        .wait_binding(&ns.name, "node", "NodeUnreachable", LONG, |b| {
            b.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.reason == "NodeUnreachable" && c.message.contains("node3"))
            })
        })
        .await;
    eprintln!(
        "NodeUnreachable after {:.1}s: {}",
        killed_at.elapsed().as_secs_f64(),
        b.status.as_ref().unwrap().conditions[0].message
    );
    // Healthy nodes get on with it: what is bound there stays bound, with
    // the same address, through the outage and after.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let during = docker_endpoints(&lab, &net);
    assert!(!during.is_empty());
    lab_script(&["node-start", "3"]);
    // Swarm reschedules as it sees fit; every running task ends up bound.
    let start = Instant::now();
    let b = loop {
        let b = kube.binding(&ns.name, "node").await;
        let bound = b.status.as_ref().map_or(0, |s| s.bound as usize);
        if ready(&b) && bound == n && status_endpoints(&b) == docker_endpoints(&lab, &net) {
            break b;
        }
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "not healed: {} of {n} bound, reason {}",
            bound,
            reason(&b)
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    eprintln!(
        "healed {:.1}s after the node came back",
        start.elapsed().as_secs_f64()
    );
    let end = status_endpoints(&b);
    assert_unique(&end);
    // Containers that were bound on the healthy nodes and still run kept
    // their address.
    let still: BTreeSet<String> = end.iter().map(|(c, _)| c.clone()).collect();
    for (c, ip) in &during {
        if still.contains(c) {
            assert!(
                end.contains(&(c.clone(), ip.clone())),
                "{c} moved from {ip}"
            );
        }
    }
    let (clean, report) = audit(&ns.name, "node");
    assert!(clean, "{report:#}");
    kube.delete(&ns.name, "node").await;
    kube.wait_gone(&ns.name, "node", Duration::from_secs(300))
        .await;
    drop(op);
}

/// Puts the gateway's password back when dropped.
struct PasswordGuard(String);

impl Drop for PasswordGuard {
    fn drop(&mut self) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/lab");
        let _ = Command::new(script).args(["gateway-start"]).output();
        let _ = Command::new(script)
            .args(["gateway-password", &self.0])
            .output();
    }
}

#[tokio::test]
async fn the_dce_gateway_goes_away_comes_back_and_rotates_its_password() {
    let _serial = SERIAL.lock().await;
    let Some((lab, kube, ns)) = setup("flt-dce").await else {
        return;
    };
    let _restore = PasswordGuard(lab.dce_password.clone());
    // Over HTTPS, trusting the lab's CA through the Secret's ca.crt.
    let tls_url = std::env::var("MVCONF_LAB_DCE_TLS_URL").expect("MVCONF_LAB_DCE_TLS_URL");
    let ca = std::fs::read_to_string(std::env::var("MVCONF_LAB_CA").expect("MVCONF_LAB_CA"))
        .expect("the lab CA");
    let ca_yaml: String = ca.lines().map(|l| format!("    {l}\n")).collect();
    let secret = |password: &str| {
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: dce-admin, namespace: {}}}\nstringData:\n  username: {}\n  password: \"{password}\"\n  ca.crt: |\n{ca_yaml}",
            ns.name, lab.dce_user
        )
    };
    let (ok, out) = kube.kubectl(&["apply", "-f", "-"], Some(&secret(&lab.dce_password)));
    assert!(ok, "{out}");
    let svc = unique("flt-dce-web");
    let net = unique("flt-dce-net");
    let _nets = lab.networks_guard(&[&net]);
    let _s = lab.service(&svc, Mode::Replicated(2));
    let op = Operator::start(
        &ns.name,
        "dce",
        &[
            "--endpoint-kind",
            "dce",
            "--endpoint-url",
            &tls_url,
            "--credentials-secret",
            "dce-admin",
            "--resync-seconds",
            "3",
        ],
    );
    kube.create(
        &ns.name,
        &binding_yaml(
            "dce",
            &net,
            91,
            &lab.parent(2),
            &[(&svc, "192.168.91.10-192.168.91.19")],
            "Disconnect",
        ),
    )
    .await;
    settled(&kube, &lab, &ns.name, "dce", &net, 2).await;

    // The gateway goes away: the binding says so; nothing on the nodes moves.
    let before = docker_endpoints(&lab, &net);
    lab_script(&["gateway-stop"]);
    kube.wait_binding(&ns.name, "dce", "EndpointUnreachable", LONG, |b| {
        reason(b) == "EndpointUnreachable"
    })
    .await;
    assert_eq!(docker_endpoints(&lab, &net), before);
    // Meanwhile the service grows; it comes back and heals by itself.
    lab.docker(1, &["service", "scale", "--detach", &format!("{svc}=3")]);
    lab_script(&["gateway-start"]);
    settled(&kube, &lab, &ns.name, "dce", &net, 3).await;

    // The password is rotated on the gateway: AuthFailed, then the new one
    // in the Secret is picked up without a restart.
    let rotated = "Rot4ted-s3cret-9f2c";
    lab_script(&["gateway-password", rotated]);
    lab.docker(1, &["service", "scale", "--detach", &format!("{svc}=4")]);
    kube.wait_binding(&ns.name, "dce", "AuthFailed", LONG, |b| {
        reason(b) == "AuthFailed"
    })
    .await;
    let (ok, out) = kube.kubectl(&["apply", "-f", "-"], Some(&secret(rotated)));
    assert!(ok, "{out}");
    settled(&kube, &lab, &ns.name, "dce", &net, 4).await;

    // Neither password appears in anything the operator emitted: its log
    // (debug level), the Events, the status, the metrics.
    let events = kube.events(&ns.name, "dce").await;
    let status = kube.binding(&ns.name, "dce").await;
    let metrics = common::k8s::http_get(op.metrics_port, "/metrics")
        .await
        .unwrap_or_default();
    let emitted = format!(
        "{}\n{events:?}\n{}\n{metrics}",
        op.logs(),
        serde_json::to_string(&status.status).unwrap()
    );
    assert!(op.logs().contains("DEBUG"), "the log is not at debug level");
    for p in [rotated, lab.dce_password.as_str()] {
        assert!(
            !emitted.contains(p),
            "a password leaked into the operator's output"
        );
    }
    assert!(events.iter().any(|(r, _)| r == "AuthFailed"), "{events:?}");
}

#[tokio::test]
async fn kube_apiserver_restarts_while_the_operator_runs() {
    let _serial = SERIAL.lock().await;
    let Some((lab, kube, ns)) = setup("flt-api").await else {
        return;
    };
    let svc = unique("flt-api-web");
    let net = unique("flt-api-net");
    let _nets = lab.networks_guard(&[&net]);
    let _s = lab.service(&svc, Mode::Replicated(2));
    let mut op = Operator::start(&ns.name, "api", &[]);
    kube.create(
        &ns.name,
        &binding_yaml(
            "api",
            &net,
            92,
            &lab.parent(3),
            &[(&svc, "192.168.92.10-192.168.92.19")],
            "Disconnect",
        ),
    )
    .await;
    settled(&kube, &lab, &ns.name, "api", &net, 2).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/envtest");
    let out = Command::new(script)
        .arg("restart-apiserver")
        .output()
        .expect("scripts/envtest");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Scaled while it was away; it watches again, and binds the new ones.
    lab.docker(1, &["service", "scale", "--detach", &format!("{svc}=4")]);
    let kube = Kube::get().await.expect("kube after restart");
    settled(&kube, &lab, &ns.name, "api", &net, 4).await;
    assert!(op.is_running(), "the operator died with the apiserver");
    let (clean, report) = audit(&ns.name, "api");
    assert!(clean, "{report:#}");
}

#[tokio::test]
async fn a_drained_node_moves_tasks_and_each_slot_keeps_its_address() {
    let _serial = SERIAL.lock().await;
    let Some((lab, kube, ns)) = setup("flt-drain").await else {
        return;
    };
    let svc = unique("flt-drain-web");
    let net = unique("flt-drain-net");
    let _nets = lab.networks_guard(&[&net]);
    let _s = lab.service(&svc, Mode::Replicated(6));
    let _op = Operator::start(&ns.name, "drain", &[]);
    kube.create(
        &ns.name,
        &binding_yaml(
            "drain",
            &net,
            93,
            &lab.parent(4),
            &[(&svc, "192.168.93.10-192.168.93.29")],
            "Disconnect",
        ),
    )
    .await;
    let b = settled(&kube, &lab, &ns.name, "drain", &net, 6).await;
    let before = slot_ips(&b);
    assert_eq!(before.len(), 6);
    let node3 = lab.docker(3, &["info", "--format", "{{.Swarm.NodeID}}"]);
    struct Undrain<'a>(&'a Lab, String);
    impl Drop for Undrain<'_> {
        fn drop(&mut self) {
            let _ = self
                .0
                .try_docker(1, &["node", "update", "--availability", "active", &self.1]);
        }
    }
    let _undrain = Undrain(&lab, node3.clone());
    let on3 = b
        .status
        .as_ref()
        .unwrap()
        .containers
        .iter()
        .filter(|r| r.node_id == node3)
        .count();
    lab.docker(1, &["node", "update", "--availability", "drain", &node3]);
    let start = Instant::now();
    let b = loop {
        let b = kube.binding(&ns.name, "drain").await;
        let moved = b.status.as_ref().is_some_and(|s| {
            s.containers
                .iter()
                .all(|r| r.node_id != node3 && r.state == RecordState::Bound)
                && s.containers.len() == 6
        });
        if moved && ready(&b) {
            break b;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "tasks did not move off node3 with their addresses: {}",
            serde_json::to_string_pretty(&b.status).unwrap()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(
        slot_ips(&b),
        before,
        "a slot changed address ({on3} tasks moved)"
    );
    let (clean, report) = audit(&ns.name, "drain");
    assert!(clean, "{report:#}");
}

#[tokio::test]
async fn the_operator_is_killed_in_the_middle_of_a_large_plan_alone_and_as_leader() {
    let _serial = SERIAL.lock().await;
    let Some((lab, kube, ns)) = setup("flt-opkill").await else {
        return;
    };
    let svc = unique("flt-opkill-web");
    let net = unique("flt-opkill-net");
    let _nets = lab.networks_guard(&[&net]);
    let _s = lab.service(&svc, Mode::Replicated(120));
    wait_running(&lab, &svc, 120, Duration::from_secs(300)).await;
    // One connect at a time per node: the plan takes seconds, time to kill.
    let slow = ["--apply-per-node", "1"];
    let mut a = Operator::start(&ns.name, "opkill", &slow);
    kube.create(
        &ns.name,
        &binding_yaml(
            "opkill",
            &net,
            94,
            &lab.parent(5),
            &[(&svc, "192.168.94.10-192.168.94.250")],
            "Disconnect",
        ),
    )
    .await;

    // Alone: killed in the middle, then started again.
    common::wait_for("the first connects", LONG, || async {
        (docker_endpoints(&lab, &net).len() >= 10).then_some(())
    })
    .await;
    a.kill();
    let partial = docker_endpoints(&lab, &net);
    assert!(partial.len() < 120, "the plan had already finished");
    eprintln!("killed alone with {} of 120 connected", partial.len());
    let (clean, report) = audit(&ns.name, "opkill");
    assert!(!clean, "an unfinished bind audited clean: {report:#}");
    eprintln!("audit while it was down: {:?}", kinds(&report));
    a.restart();
    let b = settled(&kube, &lab, &ns.name, "opkill", &net, 120).await;
    let end = status_endpoints(&b);
    for p in &partial {
        assert!(end.contains(p), "{p:?} was bound before the kill and moved");
    }
    let (clean, report) = audit(&ns.name, "opkill");
    assert!(clean, "{report:#}");

    // Two replicas: the leader dies in the middle of binding 60 more.
    let mut b_op = Operator::start(&ns.name, "opkill", &slow);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(a.metric("mvconf_leader").await, Some(1.0), "{}", a.logs());
    assert_ne!(b_op.metric("mvconf_leader").await, Some(1.0), "two leaders");
    lab.docker(1, &["service", "scale", "--detach", &format!("{svc}=180")]);
    common::wait_for("the first new connects", LONG, || async {
        (docker_endpoints(&lab, &net).len() >= 130).then_some(())
    })
    .await;
    a.kill();
    let partial = docker_endpoints(&lab, &net);
    eprintln!("leader killed with {} of 180 connected", partial.len());
    let killed_at = Instant::now();
    let b = settled(&kube, &lab, &ns.name, "opkill", &net, 180).await;
    eprintln!(
        "the standby finished {:.1}s after the leader died",
        killed_at.elapsed().as_secs_f64()
    );
    assert!(b_op.is_running());
    assert_eq!(
        b_op.metric("mvconf_leader").await,
        Some(1.0),
        "{}",
        b_op.logs()
    );
    let end = status_endpoints(&b);
    for p in &partial {
        assert!(end.contains(p), "{p:?} was bound before the kill and moved");
    }
    let (clean, report) = audit(&ns.name, "opkill");
    assert!(clean, "{report:#}");
    kube.delete(&ns.name, "opkill").await;
    kube.wait_gone(&ns.name, "opkill", Duration::from_secs(300))
        .await;
}

/// Turns one of the gateway's faults (`disconnect`, `events`) off,
/// whatever happens.
struct GatewayFaultGuard(&'static str);

impl Drop for GatewayFaultGuard {
    fn drop(&mut self) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/lab");
        let _ = Command::new(script)
            .args(["gateway-fault", self.0, "off"])
            .output();
    }
}

// "Never two writers", 5: a gateway's own error page during a finalizer is
// no proof that the binding is cleaned up. Its HTML 500 used to count as a
// permanent refusal and its HTML 404 as "already absent": the finalizer was
// released with every address still bound.
#[tokio::test]
async fn cleanup_through_a_failing_gateway_keeps_the_finalizer_until_docker_shows_it_done() {
    let _serial = SERIAL.lock().await;
    let Some((lab, kube, ns)) = setup("flt-clean").await else {
        return;
    };
    let _fault = GatewayFaultGuard("disconnect");
    let secret = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: dce-admin, namespace: {}}}\nstringData:\n  username: {}\n  password: \"{}\"\n",
        ns.name, lab.dce_user, lab.dce_password
    );
    let (ok, out) = kube.kubectl(&["apply", "-f", "-"], Some(&secret));
    assert!(ok, "{out}");
    let svc = unique("flt-clean-web");
    let net = unique("flt-clean-net");
    let _nets = lab.networks_guard(&[&net]);
    let _s = lab.service(&svc, Mode::Replicated(2));
    let _op = Operator::start(
        &ns.name,
        "clean",
        &[
            "--endpoint-kind",
            "dce",
            "--endpoint-url",
            &lab.dce_url,
            "--credentials-secret",
            "dce-admin",
            "--resync-seconds",
            "3",
        ],
    );
    kube.create(
        &ns.name,
        &binding_yaml(
            "clean",
            &net,
            96,
            &lab.parent(6),
            &[(&svc, "192.168.96.10-192.168.96.19")],
            "Disconnect",
        ),
    )
    .await;
    settled(&kube, &lab, &ns.name, "clean", &net, 2).await;
    let bound = docker_endpoints(&lab, &net);
    assert_eq!(bound.len(), 2);

    let has_finalizer = |b: &MacvlanBinding| {
        b.metadata
            .finalizers
            .as_ref()
            .is_some_and(|f| f.contains(&mvconf::crd::FINALIZER.to_owned()))
    };
    lab_script(&["gateway-fault", "disconnect", "500"]);
    kube.delete(&ns.name, "clean").await;
    let b = kube
        .wait_binding(&ns.name, "clean", "CleanupIncomplete", LONG, |b| {
            reason(b) == "CleanupIncomplete"
        })
        .await;
    assert!(
        has_finalizer(&b),
        "the finalizer stays while the gateway fails"
    );
    assert_eq!(
        docker_endpoints(&lab, &net),
        bound,
        "nothing was disconnected"
    );

    // An HTML 404 from the gateway is not "already absent" either: after
    // several more passes the binding is still there, its finalizer too.
    lab_script(&["gateway-fault", "disconnect", "404"]);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let b = kube
        .bindings(&ns.name)
        .get("clean")
        .await
        .expect("the binding is still there");
    assert!(has_finalizer(&b));
    assert_eq!(reason(&b), "CleanupIncomplete");
    assert_eq!(
        docker_endpoints(&lab, &net),
        bound,
        "nothing was disconnected"
    );

    // The gateway recovers: cleanup finishes, and nothing is left behind.
    lab_script(&["gateway-fault", "disconnect", "off"]);
    kube.wait_gone(&ns.name, "clean", LONG).await;
    assert!(docker_endpoints(&lab, &net).is_empty());
    let (_, report) = audit_args(&["audit", "--all-bindings", "-o", "json"]);
    let left: Vec<&serde_json::Value> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["holder"]["network"] == net.as_str())
        .collect();
    assert!(left.is_empty(), "{report:#}");
}

/// (seconds since the sampler started, the audit's finding kinds).
type Samples = Vec<(f64, BTreeSet<String>)>;

/// What the audit said, sampled every second while a test runs.
struct Sampler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<Samples>>,
}

impl Sampler {
    fn start(ns: &str, name: &str) -> Sampler {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let binding = format!("{ns}/{name}");
        let thread = std::thread::spawn(move || {
            let start = Instant::now();
            let mut samples = Vec::new();
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                let at = start.elapsed().as_secs_f64();
                let out = mvconf(&["audit", "--binding", &binding, "-o", "json"]);
                let found = match serde_json::from_slice::<serde_json::Value>(&out.stdout) {
                    Ok(report) => kinds(&report),
                    Err(_) => BTreeSet::from(["(no report)".to_owned()]),
                };
                samples.push((at, found));
                std::thread::sleep(Duration::from_secs(1));
            }
            samples
        });
        Sampler {
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> Samples {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A replica's Docker mutations so far (calls other than GET), from its
/// /metrics; `None` when it does not answer.
async fn mutations(port: u16) -> Option<f64> {
    common::k8s::metric_sum(port, "mvconf_docker_api_calls", |l| {
        !l.contains("verb=\"GET\"")
    })
    .await
}

/// When each replica's mutation count last moved, in seconds after `from`.
#[derive(Debug, Default, Clone)]
struct Moves {
    first: Option<f64>,
    last: Option<f64>,
    count: f64,
}

/// Polls two replicas' mutation counts every 200 ms until dropped.
fn follow_mutations(
    ports: [u16; 2],
    from: Instant,
) -> (
    std::sync::Arc<std::sync::Mutex<[Moves; 2]>>,
    tokio::task::JoinHandle<()>,
) {
    let moves = std::sync::Arc::new(std::sync::Mutex::new([Moves::default(), Moves::default()]));
    let shared = moves.clone();
    let task = tokio::spawn(async move {
        let mut seen = [None::<f64>, None::<f64>];
        loop {
            for (i, port) in ports.iter().enumerate() {
                let Some(n) = mutations(*port).await else {
                    continue;
                };
                let at = from.elapsed().as_secs_f64();
                if seen[i].is_some_and(|s| n > s) {
                    let mut m = shared.lock().unwrap();
                    m[i].first.get_or_insert(at);
                    m[i].last = Some(at);
                    m[i].count = n;
                }
                seen[i] = Some(n);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    (moves, task)
}

// "Never two writers", 1: the leader is cut off from the API server (a
// relay the test controls); the swarm scales 2 -> 40; once the standby
// leads, the pool is edited (only the new leader can see it) and a
// container killed (both replicas get the Docker events). The cut leader
// must stop within the renew deadline of the cut, before the standby may
// take the lease, and never fight the new leader.
#[tokio::test]
async fn a_leader_cut_off_from_the_apiserver_stops_before_the_standby_leads() {
    const RENEW_DEADLINE: f64 = 10.0;
    let _serial = SERIAL.lock().await;
    let Some((lab, kube, ns)) = setup("flt-fence").await else {
        return;
    };
    let svc = unique("flt-fence-web");
    let net = unique("flt-fence-net");
    let _nets = lab.networks_guard(&[&net]);
    let _s = lab.service(&svc, Mode::Replicated(2));
    wait_running(&lab, &svc, 2, LONG).await;
    let (relay, relayed) = common::relay::Relay::to_apiserver().await;
    let relayed = relayed.to_string_lossy().into_owned();
    let a = Operator::start_with(&ns.name, "fence", &[], &[("KUBECONFIG", &relayed)]);
    common::wait_for("the first replica to lead", LONG, || async {
        (a.metric("mvconf_leader").await == Some(1.0)).then_some(())
    })
    .await;
    let b = Operator::start(&ns.name, "fence", &[]);
    kube.create(
        &ns.name,
        &binding_yaml(
            "fence",
            &net,
            97,
            &lab.parent(7),
            &[(&svc, "192.168.97.10-192.168.97.99")],
            "Disconnect",
        ),
    )
    .await;
    settled(&kube, &lab, &ns.name, "fence", &net, 2).await;
    assert_ne!(b.metric("mvconf_leader").await, Some(1.0), "two leaders");

    let sampler = Sampler::start(&ns.name, "fence");
    let cut_wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let cut = Instant::now();
    let (moves, follower) = follow_mutations([a.metrics_port, b.metrics_port], cut);
    relay.cut();
    lab.docker(1, &["service", "scale", "--detach", &format!("{svc}=40")]);
    common::wait_for("the standby to lead", LONG, || async {
        (b.metric("mvconf_leader").await == Some(1.0)).then_some(())
    })
    .await;
    let b_leads = cut.elapsed().as_secs_f64();

    // Only the new leader can see this edit: every address moves.
    kube.patch_spec(
        &ns.name,
        "fence",
        serde_json::json!({"services": [{"name": svc, "network": net, "ipPool": ["192.168.97.100-192.168.97.199"]}]}),
    )
    .await;
    // Both replicas still get Docker's events.
    let victim = lab
        .docker(
            1,
            &[
                "ps",
                "-q",
                "--filter",
                &format!("label=com.docker.swarm.service.name={svc}"),
            ],
        )
        .lines()
        .next()
        .map(str::to_owned)
        .expect("a container of the service on node 1");
    lab.docker(1, &["kill", &victim]);
    wait_running(&lab, &svc, 40, Duration::from_secs(300)).await;
    let end = settled(&kube, &lab, &ns.name, "fence", &net, 40).await;
    for (_, ip) in slot_ips(&end) {
        let last: u8 = ip.rsplit('.').next().unwrap().parse().unwrap();
        assert!(last >= 100, "{ip} is outside the edited pool");
    }
    // Time for a deposed replica to do harm, if it were going to.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (clean, report) = audit(&ns.name, "fence");
    let samples = sampler.finish();
    follower.abort();
    let moves = moves.lock().unwrap().clone();

    let a_last_sent = a
        .metric("mvconf_docker_last_mutation_timestamp_seconds")
        .await;
    eprintln!(
        "cut at 0 s; cut leader's last mutation seen {:?} s (sent {:?} s), fenced calls {:?}; standby leads at {b_leads:.1} s, its first mutation {:?} s; {} audit samples",
        moves[0].last,
        a_last_sent.map(|t| t - cut_wall),
        a.metric("mvconf_docker_mutations_fenced").await,
        moves[1].first,
        samples.len()
    );
    let duplicates: Vec<_> = samples
        .iter()
        .filter(|(_, k)| k.contains("DuplicateAddress"))
        .collect();
    assert!(
        duplicates.is_empty(),
        "the audit saw duplicates: {duplicates:?}"
    );
    // The fence: no mutation sent later than the renew deadline after the
    // cut. The send time is exact; the count is seen when the answer comes
    // (and polled), hence its second of slack.
    if let Some(t) = a_last_sent {
        assert!(
            t - cut_wall <= RENEW_DEADLINE,
            "the cut leader sent a mutation {:.1} s after the cut\n{}",
            t - cut_wall,
            a.logs()
        );
    }
    assert!(
        moves[0].last.is_none_or(|t| t <= RENEW_DEADLINE + 1.0),
        "the cut leader was still changing the swarm {:?} s after the cut\n{}",
        moves[0].last,
        a.logs()
    );
    assert_eq!(a.metric("mvconf_leader").await, Some(0.0), "{}", a.logs());
    assert_eq!(b.metric("mvconf_leader").await, Some(1.0), "{}", b.logs());
    assert!(clean, "{report:#}");
    kube.delete(&ns.name, "fence").await;
    kube.wait_gone(&ns.name, "fence", Duration::from_secs(300))
        .await;
}

// "Never two writers", 4: the CLI beside the operator. `mvconf up` planned
// with no memory of the operator's reservations, and `down` disconnected
// containers and removed networks a live MacvlanBinding keeps. Now the
// operator's services carry its claim, and the CLI keeps them unless
// --force.
#[tokio::test]
async fn the_cli_keeps_its_hands_off_what_the_operator_owns_unless_forced() {
    let _serial = SERIAL.lock().await;
    let Some((lab, kube, ns)) = setup("flt-cliown").await else {
        return;
    };
    let svc = unique("flt-cliown-web");
    let net = unique("flt-cliown-net");
    let parent = lab.parent(0);
    let _nets = lab.networks_guard(&[&net]);
    let _s = lab.service(&svc, Mode::Replicated(2));
    let op = Operator::start(&ns.name, "cliown", &[]);
    kube.create(
        &ns.name,
        &binding_yaml(
            "own",
            &net,
            98,
            &parent,
            &[(&svc, "192.168.98.10-192.168.98.19")],
            "Disconnect",
        ),
    )
    .await;
    let b = settled(&kube, &lab, &ns.name, "own", &net, 2).await;
    let conf_path = common::write_conf(
        "cliown",
        &serde_json::json!({
            "networks": [{"name": net, "subnet": "192.168.98.0/24", "gateway": "192.168.98.1", "parent": parent}],
            "services": [{"name": svc, "network": net, "ip_pool": ["192.168.98.10-192.168.98.19"]}]
        }),
    );
    let conf = conf_path.to_string_lossy().into_owned();
    let kept = format!("kept: {svc}: owned by MacvlanBinding {}/own", ns.name);

    // A replaced slot: its address stays reserved for the replacement, and
    // `up` meanwhile leaves the service to its owner.
    let victim = b
        .status
        .as_ref()
        .unwrap()
        .containers
        .iter()
        .find(|r| r.state == RecordState::Bound)
        .cloned()
        .unwrap();
    let k: usize = victim.node.trim_start_matches("node").parse().unwrap();
    lab.docker(k, &["kill", &victim.container]);
    let up = mvconf(&["-f", &conf, "up"]);
    assert!(text(&up).contains(&kept), "{}", text(&up));
    let again = kube
        .wait_binding(&ns.name, "own", "the replacement bound", LONG, |b| {
            b.status.as_ref().is_some_and(|s| {
                s.containers.iter().any(|r| {
                    r.slot == victim.slot
                        && r.state == RecordState::Bound
                        && r.container != victim.container
                })
            })
        })
        .await;
    assert_eq!(slot_ips(&again), slot_ips(&b), "a slot changed address");

    // down: nothing moves, and it says why.
    let before = docker_endpoints(&lab, &net);
    let down = mvconf(&["-f", &conf, "down"]);
    assert!(text(&down).contains(&kept), "{}", text(&down));
    assert_eq!(docker_endpoints(&lab, &net), before, "{}", text(&down));
    let status = mvconf(&["-f", &conf, "status"]);
    assert!(
        text(&status).contains("OWNER") && text(&status).contains(&format!("{}/own", ns.name)),
        "{}",
        text(&status)
    );

    // --force: it acts (and the operator, which owns it, binds it again).
    let forced = mvconf(&["-f", &conf, "disconnect", "--force"]);
    assert!(!text(&forced).contains("kept:"), "{}", text(&forced));
    assert!(forced.status.success(), "{}", text(&forced));
    assert!(
        docker_endpoints(&lab, &net).len() < before.len(),
        "--force changed nothing: {}",
        text(&forced)
    );
    settled(&kube, &lab, &ns.name, "own", &net, 2).await;
    drop(op);
}

// "Never two writers", 3: two installs (each with its own namespaces and
// Lease) on one swarm were two allocators. The first claims the service;
// the second refuses with a Conflict that names it, and nothing moves.
#[tokio::test]
async fn a_second_operator_install_on_the_same_swarm_refuses() {
    let _serial = SERIAL.lock().await;
    let Some((lab, kube, ns)) = setup("flt-inst1").await else {
        return;
    };
    let ns2 = kube.namespace(&unique("flt-inst2"));
    let svc = unique("flt-inst-web");
    let net = unique("flt-inst-net");
    let parent = lab.parent(1);
    let _nets = lab.networks_guard(&[&net]);
    let _s = lab.service(&svc, Mode::Replicated(2));
    let _one = Operator::start(&ns.name, "install", &[]);
    let _two = Operator::start(&ns2.name, "install", &[]);
    kube.create(
        &ns.name,
        &binding_yaml(
            "first",
            &net,
            99,
            &parent,
            &[(&svc, "192.168.99.10-192.168.99.19")],
            "Disconnect",
        ),
    )
    .await;
    let first = settled(&kube, &lab, &ns.name, "first", &net, 2).await;
    kube.create(
        &ns2.name,
        &binding_yaml(
            "second",
            &net,
            99,
            &parent,
            &[(&svc, "192.168.99.20-192.168.99.29")],
            "Disconnect",
        ),
    )
    .await;
    let second = kube
        .wait_binding(&ns2.name, "second", "Conflict", LONG, |b| {
            reason(b) == "Conflict"
        })
        .await;
    let msg = &second.status.as_ref().unwrap().conditions[0].message;
    assert!(
        msg.contains(&format!("MacvlanBinding {}/first", ns.name)),
        "{msg}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(docker_endpoints(&lab, &net), status_endpoints(&first));
    // The refused one's cleanup leaves the first's service alone.
    kube.delete(&ns2.name, "second").await;
    kube.wait_gone(&ns2.name, "second", LONG).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(docker_endpoints(&lab, &net), status_endpoints(&first));
    let (clean, report) = audit(&ns.name, "first");
    assert!(clean, "{report:#}");
}

// "Never two writers", 6: a node's event stream that a proxy closes as soon
// as it opens used to be retried at the first backoff step for ever (a
// successful open reset it), and each reopening resynced the swarm's
// bindings: passes without end. Now the backoff grows on such streams,
// and reopenings within a second cost one pass.
#[tokio::test]
async fn event_streams_that_close_at_once_do_not_flood_the_swarm_with_passes() {
    const WINDOW: Duration = Duration::from_secs(40);
    let _serial = SERIAL.lock().await;
    let Some((lab, kube, ns)) = setup("flt-flap").await else {
        return;
    };
    let anon = std::env::var("MVCONF_LAB_DCE_ANON_URL").expect("MVCONF_LAB_DCE_ANON_URL");
    let svc = unique("flt-flap-web");
    let net = unique("flt-flap-net");
    let _nets = lab.networks_guard(&[&net]);
    let _s = lab.service(&svc, Mode::Replicated(2));
    let op = Operator::start(
        &ns.name,
        "flap",
        &[
            "--endpoint-kind",
            "dce",
            "--endpoint-url",
            &anon,
            "--resync-seconds",
            "300",
        ],
    );
    kube.create(
        &ns.name,
        &binding_yaml(
            "flap",
            &net,
            95,
            &lab.parent(2),
            &[(&svc, "192.168.95.10-192.168.95.19")],
            "Disconnect",
        ),
    )
    .await;
    settled(&kube, &lab, &ns.name, "flap", &net, 2).await;
    let _fault = GatewayFaultGuard("events");
    lab_script(&["gateway-fault", "events", "close"]);
    let passes = || op.metric_sum("mvconf_reconciles_total", |_| true);
    let before = passes().await.unwrap();
    tokio::time::sleep(WINDOW).await;
    let after = passes().await.unwrap();
    let rate = (after - before) / WINDOW.as_secs_f64();
    eprintln!(
        "{} passes in {} s with every node's event stream closing at once: {rate:.2}/s",
        after - before,
        WINDOW.as_secs()
    );
    // Three nodes, each reconnecting at most every 10 s once its backoff
    // has grown: about 0.3 passes per second; before, many per second.
    assert!(rate <= 1.0, "{rate:.2} passes per second\n{}", op.logs());
    lab_script(&["gateway-fault", "events", "off"]);
    settled(&kube, &lab, &ns.name, "flap", &net, 2).await;
}

// Tenancy (hardening): two bindings on one URL with different Secrets used
// to swap the one shared connection on every pass; each swap reopened
// every event stream, each reopening triggered passes: an endless loop
// that leaked stream tasks. And an edit of the endpoint's settings (here
// insecureSkipTlsVerify) was ignored until a restart.
#[tokio::test]
async fn two_credentials_on_one_url_keep_two_views_and_an_endpoint_edit_applies_at_once() {
    const IDLE: Duration = Duration::from_secs(30);
    let _serial = SERIAL.lock().await;
    let Some((lab, kube, ns)) = setup("flt-views").await else {
        return;
    };
    for (name, extra) in [
        ("dce-a", ""),
        ("dce-b", "  note: \"the same account, another Secret\"\n"),
    ] {
        let secret = format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: {}}}\nstringData:\n  username: {}\n  password: \"{}\"\n{extra}",
            ns.name, lab.dce_user, lab.dce_password
        );
        let (ok, out) = kube.kubectl(&["apply", "-f", "-"], Some(&secret));
        assert!(ok, "{out}");
    }
    let (svc_a, svc_b) = (unique("flt-views-a"), unique("flt-views-b"));
    let (net_a, net_b) = (unique("flt-views-na"), unique("flt-views-nb"));
    let _nets = lab.networks_guard(&[&net_a, &net_b]);
    let _a = lab.service(&svc_a, Mode::Replicated(1));
    let _b = lab.service(&svc_b, Mode::Replicated(1));
    let op = Operator::start(&ns.name, "views", &["--resync-seconds", "300"]);
    let endpoint = |url: &str, secret: &str, insecure: bool| {
        format!(
            "  endpoint: {{kind: Dce, url: \"{url}\", secretRef: {{name: {secret}}}, insecureSkipTlsVerify: {insecure}}}\n"
        )
    };
    let yaml = |name: &str, net: &str, octet: u8, parent: &str, svc: &str, ep: String| {
        binding_yaml(
            name,
            net,
            octet,
            parent,
            &[(svc, &format!("192.168.{octet}.10-192.168.{octet}.19"))],
            "Disconnect",
        ) + &ep
    };
    let (pa, pb) = (lab.parent(3), lab.parent(4));
    kube.create(
        &ns.name,
        &yaml(
            "a",
            &net_a,
            88,
            &pa,
            &svc_a,
            endpoint(&lab.dce_url, "dce-a", false),
        ),
    )
    .await;
    kube.create(
        &ns.name,
        &yaml(
            "b",
            &net_b,
            89,
            &pb,
            &svc_b,
            endpoint(&lab.dce_url, "dce-b", false),
        ),
    )
    .await;
    settled(&kube, &lab, &ns.name, "a", &net_a, 1).await;
    settled(&kube, &lab, &ns.name, "b", &net_b, 1).await;

    // Idle: a handful of passes, and one stream per node per view.
    let passes = || op.metric_sum("mvconf_reconciles_total", |_| true);
    let streams = || op.metric_sum("mvconf_docker_event_streams", |_| true);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = passes().await.unwrap();
    let open = streams().await.unwrap();
    tokio::time::sleep(IDLE).await;
    let idle = passes().await.unwrap() - before;
    eprintln!(
        "idle: {idle} passes in {} s; {open} event streams",
        IDLE.as_secs()
    );
    assert!(idle <= 6.0, "{idle} passes while idle\n{}", op.logs());
    assert_eq!(open, 2.0 * lab.nodes as f64, "one stream per node per view");
    assert_eq!(streams().await.unwrap(), open, "streams leak");

    // An edit applies without a restart: over TLS with the lab's own CA
    // unknown it fails; allowing any certificate (a lab only) heals it.
    let tls_url = std::env::var("MVCONF_LAB_DCE_TLS_URL").expect("MVCONF_LAB_DCE_TLS_URL");
    let spec = |insecure: bool| serde_json::json!({"endpoint": {"kind": "Dce", "url": tls_url, "secretRef": {"name": "dce-a"}, "insecureSkipTlsVerify": insecure}});
    kube.patch_spec(&ns.name, "a", spec(false)).await;
    kube.wait_binding(&ns.name, "a", "EndpointUnreachable", LONG, |b| {
        reason(b) == "EndpointUnreachable"
    })
    .await;
    kube.patch_spec(&ns.name, "a", spec(true)).await;
    settled(&kube, &lab, &ns.name, "a", &net_a, 1).await;
    // The views it left are closed, their streams with them.
    common::wait_for("the old views closed", LONG, || async {
        (streams().await == Some(open)).then_some(())
    })
    .await;
    for name in ["a", "b"] {
        kube.delete(&ns.name, name).await;
        kube.wait_gone(&ns.name, name, LONG).await;
    }
}

/// A listener that answers every connection with the same bytes, as a
/// broken or hostile server would (socat, a real server program).
struct Hostile(std::process::Child);

impl Hostile {
    /// `script` (sh) runs per connection, its output is the answer.
    fn start(port: u16, script: &str) -> Hostile {
        let file = std::env::temp_dir().join(format!("mvconf-hostile-{port}.sh"));
        std::fs::write(&file, script).unwrap();
        let child = Command::new("socat")
            .arg(format!("TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork"))
            .arg(format!("SYSTEM:sh {}", file.display()))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("socat");
        Hostile(child)
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A memory cgroup (v1) with a limit; removed on drop.
struct MemoryCgroup(std::path::PathBuf);

impl MemoryCgroup {
    fn new(name: &str, bytes: u64) -> MemoryCgroup {
        let dir = std::path::PathBuf::from("/sys/fs/cgroup/memory").join(name);
        std::fs::create_dir_all(&dir).expect("a memory cgroup (v1, as root)");
        std::fs::write(dir.join("memory.limit_in_bytes"), bytes.to_string()).unwrap();
        MemoryCgroup(dir)
    }

    fn add(&self, pid: u32) {
        std::fs::write(self.0.join("cgroup.procs"), pid.to_string()).unwrap();
    }

    fn peak(&self) -> u64 {
        std::fs::read_to_string(self.0.join("memory.max_usage_in_bytes"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for MemoryCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

// Tenancy (hardening): an endpoint a binding names could answer a 1 GiB
// body, an endless one, or redirects; the answer was read whole, so the
// operator (its pod limited to 128 MiB) died and reconciled nobody's
// bindings any more. Now answers are capped and redirects refused: the
// binding says why, the others go on.
#[tokio::test]
async fn hostile_endpoints_get_a_clear_error_and_the_other_bindings_go_on() {
    let _serial = SERIAL.lock().await;
    let Some((lab, kube, ns)) = setup("flt-hostile").await else {
        return;
    };
    let head = r#"printf 'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n'"#;
    let big = free_port();
    let endless = free_port();
    let redirect = free_port();
    let _servers = [
        Hostile::start(
            big,
            &format!(
                r#"{head}; printf 'Content-Length: 1073741824\r\n\r\n'; head -c 1073741824 /dev/zero"#
            ),
        ),
        Hostile::start(
            endless,
            &format!(r#"{head}; printf '\r\n'; exec cat /dev/zero"#),
        ),
        Hostile::start(
            redirect,
            &format!(
                r#"printf 'HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:{redirect}/again\r\nContent-Length: 0\r\n\r\n'"#
            ),
        ),
    ];
    let svc = unique("flt-hostile-web");
    let net = unique("flt-hostile-net");
    let _nets = lab.networks_guard(&[&net]);
    let _s = lab.service(&svc, Mode::Replicated(1));
    let mut op = Operator::start(&ns.name, "hostile", &["--resync-seconds", "10"]);
    let cgroup = MemoryCgroup::new(&format!("mvconf-test-{}", std::process::id()), 128 << 20);
    cgroup.add(op.pid().unwrap());
    kube.create(
        &ns.name,
        &binding_yaml(
            "good",
            &net,
            93,
            &lab.parent(5),
            &[(&svc, "192.168.93.10-192.168.93.19")],
            "Disconnect",
        ),
    )
    .await;
    settled(&kube, &lab, &ns.name, "good", &net, 1).await;
    for (name, port) in [("big", big), ("endless", endless), ("redirect", redirect)] {
        let yaml = format!(
            "apiVersion: mvconf.io/v1alpha1\nkind: MacvlanBinding\nmetadata: {{name: {name}}}\nspec:\n  endpoint: {{kind: Docker, url: \"http://127.0.0.1:{port}\"}}\n  networks:\n  - {{name: n-{name}, subnet: 192.168.77.0/24, gateway: 192.168.77.1, parent: mv0}}\n  services:\n  - {{name: s-{name}, network: n-{name}, ipPool: [192.168.77.10]}}\n"
        );
        kube.create(&ns.name, &yaml).await;
    }
    for (name, words) in [
        ("big", "larger than"),
        ("endless", "larger than"),
        ("redirect", "redirect"),
    ] {
        let b = kube
            .wait_binding(&ns.name, name, "EndpointUnreachable", LONG, |b| {
                reason(b) == "EndpointUnreachable"
            })
            .await;
        let msg = &b.status.as_ref().unwrap().conditions[0].message;
        assert!(msg.contains(words), "{name}: {msg}");
    }
    // Still alive under its limit, still reconciling the others.
    assert!(op.is_running(), "the operator died\n{}", op.logs());
    lab.docker(1, &["service", "scale", "--detach", &format!("{svc}=3")]);
    settled(&kube, &lab, &ns.name, "good", &net, 3).await;
    assert!(op.is_running(), "the operator died\n{}", op.logs());
    eprintln!(
        "peak memory under the 128 MiB limit: {} MiB",
        cgroup.peak() >> 20
    );
    // Cleanup through an endpoint that never answers cannot be confirmed:
    // their finalizers stay until removed by hand, as here.
    for name in ["big", "endless", "redirect", "good"] {
        kube.delete(&ns.name, name).await;
    }
    for name in ["big", "endless", "redirect"] {
        let (ok, out) = kube.kubectl(
            &[
                "-n",
                &ns.name,
                "patch",
                "mvb",
                name,
                "--type=merge",
                "-p",
                r#"{"metadata":{"finalizers":null}}"#,
            ],
            None,
        );
        assert!(ok, "{out}");
    }
    for name in ["big", "endless", "redirect", "good"] {
        kube.wait_gone(&ns.name, name, LONG).await;
    }
    op.kill();
}
