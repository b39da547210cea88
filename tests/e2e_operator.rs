//! The operator end to end: a real kube-apiserver (scripts/envtest) and the
//! real lab swarm. Each test has its own namespace, operator, services,
//! network and macvlan parent, so they run side by side.

mod common;

use common::e2e::*;
use common::k8s::Operator;
use common::{Mode, unique};
use mvconf::crd::RecordState;
use std::time::Duration;

#[tokio::test]
async fn the_schema_refuses_what_it_can_and_the_rest_is_invalid_spec() {
    let Some((lab, kube, ns)) = setup("e2e-schema").await else {
        return;
    };
    drop(lab);
    let bad = |spec: &str| {
        format!(
            "apiVersion: mvconf.io/v1alpha1\nkind: MacvlanBinding\nmetadata: {{name: bad, namespace: {}}}\nspec:\n{spec}",
            ns.name
        )
    };
    let net = "  networks:\n  - {name: mv, subnet: 192.168.80.0/24, gateway: 192.168.80.1, parent: eth1}\n";
    for (spec, field, words) in [
        (
            "  networks:\n  - {name: mv, subnet: 192.168.80.0/24, gateway: 10.0.0.1, parent: eth1}\n",
            "spec.networks[0].gateway",
            "gateway must lie inside subnet",
        ),
        (
            "  networks:\n  - {name: mv, subnet: 192.168.300.0/24, gateway: 192.168.80.1, parent: eth1}\n",
            "spec.networks[0].subnet",
            "IPv4 CIDR",
        ),
        (
            "  networks:\n  - {name: mv, subnet: 192.168.80.0/24, gateway: 192.168.80.1, parent: eth1, ipRange: 10.0.0.0/24}\n",
            "spec.networks[0].ipRange",
            "inside subnet",
        ),
        (
            &format!(
                "{net}  services:\n  - {{name: web, network: nope, ipPool: [192.168.80.10]}}\n"
            ),
            "spec.services",
            "must name an entry of networks",
        ),
        (
            &format!("{net}  services:\n  - {{name: web, network: mv, ipPool: [hello]}}\n"),
            "spec.services[0].ipPool[0]",
            "should be at least 7 chars long",
        ),
        (
            &format!(
                "{net}  services:\n  - {{name: web, network: mv, ipPool: [192.168.80.10], ingress: Sometimes}}\n"
            ),
            "spec.services[0].ingress",
            "supported values",
        ),
        (
            &format!(
                "{net}  services:\n  - {{name: 'bad name', network: mv, ipPool: [192.168.80.10]}}\n"
            ),
            "spec.services[0].name",
            "should match",
        ),
        (
            "  networks:\n  - {name: mv, subnet: 192.168.80.0/24, gateway: 192.168.80.1, parent: eth1}\n  - {name: mv, subnet: 192.168.81.0/24, gateway: 192.168.81.1, parent: eth2}\n",
            "spec.networks[1]",
            "Duplicate value",
        ),
        (
            "  deletionPolicy: Sometimes\n",
            "spec.deletionPolicy",
            "supported values",
        ),
    ] {
        let (ok, out) = kube.kubectl(&["apply", "-f", "-"], Some(&bad(spec)));
        assert!(!ok, "accepted: {spec}");
        assert!(
            out.contains(field) && out.contains(words),
            "{field} / {words}: {out}"
        );
    }

    // What the schema cannot see, the operator reports as InvalidSpec, naming the field.
    let _op = Operator::start(&ns.name, "schema", &[]);
    let (ok, out) = kube.kubectl(&["apply", "-f", "-"], Some(&bad(&format!("{net}  services:\n  - {{name: web, network: mv, ipPool: [192.168.81.10, 192.168.80.1]}}\n"))));
    assert!(ok, "{out}");
    let b = kube
        .wait_binding(&ns.name, "bad", "InvalidSpec", LONG, |b| {
            reason(b) == "InvalidSpec"
        })
        .await;
    let msg = &b.status.unwrap().conditions[0].message;
    assert!(
        msg.contains("spec.services[0].ipPool[0]: 192.168.81.10 is not inside the subnet"),
        "{msg}"
    );
    assert!(
        msg.contains("spec.services[0].ipPool[1]: 192.168.80.1 includes the gateway"),
        "{msg}"
    );
    let events = kube.events(&ns.name, "bad").await;
    assert!(events.iter().any(|(r, _)| r == "InvalidSpec"), "{events:?}");
}

#[tokio::test]
async fn binds_every_container_and_follows_scaling() {
    let Some((lab, kube, ns)) = setup("e2e-scale").await else {
        return;
    };
    let svc = unique("e2e-scale-web");
    let net = unique("e2e-scale-net");
    let parent = lab.parent(1);
    let _nets = lab.networks_guard(&[&net]);
    let _s = lab.service(&svc, Mode::Replicated(2));
    let _op = Operator::start(&ns.name, "scale", &[]);
    kube.create(
        &ns.name,
        &binding_yaml(
            "scale",
            &net,
            81,
            &parent,
            &[(&svc, "192.168.81.10-192.168.81.19")],
            "DisconnectAndRemoveNetworks",
        ),
    )
    .await;
    let b = settled(&kube, &lab, &ns.name, "scale", &net, 2).await;
    let s = b.status.unwrap();
    assert_eq!((s.desired, s.bound), (2, 2));
    assert_eq!(
        (
            s.services[0].pool_size,
            s.services[0].allocated,
            s.services[0].free
        ),
        (10, 2, 8)
    );
    assert_eq!(s.networks[0].ready_nodes, lab.nodes as i32);

    lab.docker(1, &["service", "scale", "--detach", &format!("{svc}=5")]);
    let b = settled(&kube, &lab, &ns.name, "scale", &net, 5).await;
    assert_eq!(b.status.as_ref().unwrap().services[0].allocated, 5);

    lab.docker(1, &["service", "scale", "--detach", &format!("{svc}=1")]);
    settled(&kube, &lab, &ns.name, "scale", &net, 1).await;
    // Addresses come back once the scaled-down containers are gone.
    let b = kube
        .wait_binding(
            &ns.name,
            "scale",
            "freed addresses back in the pool",
            LONG,
            |b| {
                b.status
                    .as_ref()
                    .is_some_and(|s| s.services[0].allocated == 1 && s.services[0].free == 9)
            },
        )
        .await;
    assert_eq!(b.status.unwrap().containers.len(), 1);
}

#[tokio::test]
async fn a_killed_container_gets_its_address_back_and_an_event_says_so() {
    let Some((lab, kube, ns)) = setup("e2e-kill").await else {
        return;
    };
    let svc = unique("e2e-kill-web");
    let net = unique("e2e-kill-net");
    let parent = lab.parent(2);
    let _nets = lab.networks_guard(&[&net]);
    let _s = lab.service(&svc, Mode::Replicated(3));
    let op = Operator::start(&ns.name, "kill", &[]);
    kube.create(
        &ns.name,
        &binding_yaml(
            "kill",
            &net,
            82,
            &parent,
            &[(&svc, "192.168.82.10-192.168.82.19")],
            "Disconnect",
        ),
    )
    .await;
    let b = settled(&kube, &lab, &ns.name, "kill", &net, 3).await;
    let victim = b.status.as_ref().unwrap().containers[1].clone();
    let k: usize = victim.node.trim_start_matches("node").parse().unwrap();
    lab.docker(k, &["kill", &victim.container]);
    let b = kube
        .wait_binding(&ns.name, "kill", "the replacement bound", LONG, |b| {
            ready(b)
                && b.status.as_ref().is_some_and(|s| {
                    s.containers.iter().any(|r| {
                        r.slot == victim.slot
                            && r.container != victim.container
                            && r.ip == victim.ip
                            && r.state == RecordState::Bound
                    })
                })
        })
        .await;
    assert_eq!(status_endpoints(&b), docker_endpoints(&lab, &net));
    let events = kube.events(&ns.name, "kill").await;
    let ip = victim.ip.clone().unwrap();
    assert!(
        events
            .iter()
            .any(|(r, n)| r == "Rebound" && n.contains(&ip)),
        "{events:?}"
    );
    assert!(op.metric("mvconf_drift_repairs_total").await.unwrap_or(0.0) >= 1.0);
}

#[tokio::test]
async fn pool_edits_move_only_what_must_move() {
    let Some((lab, kube, ns)) = setup("e2e-pool").await else {
        return;
    };
    let svc = unique("e2e-pool-web");
    let net = unique("e2e-pool-net");
    let parent = lab.parent(3);
    let _nets = lab.networks_guard(&[&net]);
    let _s = lab.service(&svc, Mode::Replicated(3));
    let _op = Operator::start(&ns.name, "pool", &[]);
    kube.create(
        &ns.name,
        &binding_yaml(
            "pool",
            &net,
            83,
            &parent,
            &[(&svc, "192.168.83.10-192.168.83.12")],
            "Disconnect",
        ),
    )
    .await;
    let before = status_endpoints(&settled(&kube, &lab, &ns.name, "pool", &net, 3).await);

    // More addresses, in another order: nobody moves.
    kube.patch_spec(&ns.name, "pool", serde_json::json!({"services": [{"name": svc, "network": net, "ipPool": ["192.168.83.20-192.168.83.30", "192.168.83.12", "192.168.83.10-192.168.83.11"]}]})).await;
    let after = status_endpoints(&settled(&kube, &lab, &ns.name, "pool", &net, 3).await);
    assert_eq!(after, before);

    // Remove .11, held by one container: only that one moves.
    kube.patch_spec(&ns.name, "pool", serde_json::json!({"services": [{"name": svc, "network": net, "ipPool": ["192.168.83.20-192.168.83.30", "192.168.83.12", "192.168.83.10"]}]})).await;
    let moved = status_endpoints(&settled(&kube, &lab, &ns.name, "pool", &net, 3).await);
    let gone: Vec<_> = before.difference(&moved).collect();
    let new: Vec<_> = moved.difference(&before).collect();
    assert_eq!(gone.len(), 1, "{before:?} -> {moved:?}");
    assert_eq!(gone[0].1, "192.168.83.11");
    assert_eq!(
        (new.len(), &new[0].0, new[0].1.as_str()),
        (1, &gone[0].0, "192.168.83.20")
    );
}

#[tokio::test]
async fn deleting_applies_the_policy_everywhere_then_releases_the_finalizer() {
    let Some((lab, kube, ns)) = setup("e2e-delete").await else {
        return;
    };
    let svc = unique("e2e-del-web");
    let net = unique("e2e-del-net");
    let parent = lab.parent(4);
    let _nets = lab.networks_guard(&[&net]);
    let _s = lab.service(&svc, Mode::Global);
    let _op = Operator::start(&ns.name, "delete", &[]);
    kube.create(
        &ns.name,
        &binding_yaml(
            "del",
            &net,
            84,
            &parent,
            &[(&svc, "192.168.84.10-192.168.84.19")],
            "DisconnectAndRemoveNetworks",
        ),
    )
    .await;
    let b = settled(&kube, &lab, &ns.name, "del", &net, lab.nodes).await;
    assert!(
        b.metadata
            .finalizers
            .unwrap_or_default()
            .contains(&mvconf::crd::FINALIZER.to_owned())
    );
    kube.delete(&ns.name, "del").await;
    kube.wait_gone(&ns.name, "del", LONG).await;
    for k in 1..=lab.nodes {
        assert!(
            !lab.try_docker(k, &["network", "inspect", &net]),
            "{net} left on node{k}"
        );
    }
    let events = kube.events(&ns.name, "del").await;
    assert!(events.iter().any(|(r, _)| r == "CleanedUp"), "{events:?}");
}

#[tokio::test]
async fn a_crash_in_the_middle_of_a_pass_loses_nothing() {
    let Some((lab, kube, ns)) = setup("e2e-crash").await else {
        return;
    };
    let svc = unique("e2e-crash-web");
    let net = unique("e2e-crash-net");
    let parent = lab.parent(5);
    let _nets = lab.networks_guard(&[&net]);
    let _s = lab.service(&svc, Mode::Replicated(24));
    wait_running(&lab, &svc, 24, LONG).await;
    let mut op = Operator::start(&ns.name, "crash", &["--apply-per-node", "1"]);
    kube.create(
        &ns.name,
        &binding_yaml(
            "crash",
            &net,
            85,
            &parent,
            &[(&svc, "192.168.85.10-192.168.85.60")],
            "Disconnect",
        ),
    )
    .await;
    // Kill it as soon as the first containers are connected.
    common::wait_for("the first connects", LONG, || async {
        (!docker_endpoints(&lab, &net).is_empty()).then_some(())
    })
    .await;
    op.kill();
    let partial = docker_endpoints(&lab, &net);
    assert!(
        partial.len() < 24,
        "the pass had already finished: {}",
        partial.len()
    );
    op.restart();
    let b = settled(&kube, &lab, &ns.name, "crash", &net, 24).await;
    let end = status_endpoints(&b);
    for p in &partial {
        assert!(
            end.contains(p),
            "{p:?} was bound before the crash and moved"
        );
    }
    assert_eq!(b.status.unwrap().containers.len(), 24);
}

#[tokio::test]
async fn two_replicas_one_leads_and_the_other_takes_over() {
    let Some((lab, kube, ns)) = setup("e2e-ha").await else {
        return;
    };
    let svc = unique("e2e-ha-web");
    let net = unique("e2e-ha-net");
    let parent = lab.parent(6);
    let _nets = lab.networks_guard(&[&net]);
    let _s = lab.service(&svc, Mode::Replicated(2));
    let mut a = Operator::start(&ns.name, "ha", &[]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut b_op = Operator::start(&ns.name, "ha", &[]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let lead_a = a.metric("mvconf_leader").await.unwrap_or(0.0);
    let lead_b = b_op.metric("mvconf_leader").await.unwrap_or(0.0);
    assert_eq!(
        lead_a + lead_b,
        1.0,
        "exactly one leads: a={lead_a} b={lead_b}"
    );
    kube.create(
        &ns.name,
        &binding_yaml(
            "ha",
            &net,
            86,
            &parent,
            &[(&svc, "192.168.86.10-192.168.86.19")],
            "Disconnect",
        ),
    )
    .await;
    settled(&kube, &lab, &ns.name, "ha", &net, 2).await;

    // The leader dies; the other takes over and keeps the binding true.
    let (leader, standby) = if lead_a == 1.0 {
        (&mut a, &mut b_op)
    } else {
        (&mut b_op, &mut a)
    };
    leader.kill();
    lab.docker(1, &["service", "scale", "--detach", &format!("{svc}=3")]);
    settled(&kube, &lab, &ns.name, "ha", &net, 3).await;
    assert!(standby.is_running());
    assert_eq!(
        standby.metric("mvconf_leader").await,
        Some(1.0),
        "{}",
        standby.logs()
    );
}

#[tokio::test]
async fn two_bindings_with_overlapping_pools_conflict_on_the_second() {
    let Some((lab, kube, ns)) = setup("e2e-conflict").await else {
        return;
    };
    let (svc_a, svc_b) = (unique("e2e-cf-a"), unique("e2e-cf-b"));
    let net = unique("e2e-cf-net");
    let parent = lab.parent(7);
    let _nets = lab.networks_guard(&[&net]);
    let _a = lab.service(&svc_a, Mode::Replicated(2));
    let _b = lab.service(&svc_b, Mode::Replicated(2));
    let _op = Operator::start(&ns.name, "conflict", &[]);
    kube.create(
        &ns.name,
        &binding_yaml(
            "first",
            &net,
            87,
            &parent,
            &[(&svc_a, "192.168.87.10-192.168.87.19")],
            "Disconnect",
        ),
    )
    .await;
    let first = settled(&kube, &lab, &ns.name, "first", &net, 2).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    kube.create(
        &ns.name,
        &binding_yaml(
            "second",
            &net,
            87,
            &parent,
            &[(&svc_b, "192.168.87.15-192.168.87.25")],
            "Disconnect",
        ),
    )
    .await;
    let second = kube
        .wait_binding(&ns.name, "second", "Conflict", LONG, |b| {
            reason(b) == "Conflict"
        })
        .await;
    let msg = &second.status.as_ref().unwrap().conditions[0].message;
    assert!(
        msg.contains("overlaps the pool of service") && msg.contains("first"),
        "{msg}"
    );
    // The second touched nothing; the first is as it was.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(docker_endpoints(&lab, &net), status_endpoints(&first));
    let again = kube.bindings(&ns.name).get("first").await.unwrap();
    assert!(ready(&again));
    assert_eq!(status_endpoints(&again), status_endpoints(&first));
}

// "Never two writers", 2: a swarm used to be known by the text of its URL,
// so the same swarm reached through the DCE gateway looked like another
// one to the node socket's binding: no conflict, and the second binding
// gave the first's containers other addresses. A swarm is its cluster ID.
#[tokio::test]
async fn the_same_swarm_under_another_url_is_the_same_swarm() {
    let Some((lab, kube, ns)) = setup("e2e-twourl").await else {
        return;
    };
    let secret = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: dce-admin, namespace: {}}}\nstringData:\n  username: {}\n  password: \"{}\"\n",
        ns.name, lab.dce_user, lab.dce_password
    );
    let (ok, out) = kube.kubectl(&["apply", "-f", "-"], Some(&secret));
    assert!(ok, "{out}");
    let svc = unique("e2e-twourl-web");
    let net = unique("e2e-twourl-net");
    let parent = lab.parent(0);
    let _nets = lab.networks_guard(&[&net]);
    let _s = lab.service(&svc, Mode::Replicated(2));
    // The operator's default endpoint: node 1's socket.
    let _op = Operator::start(&ns.name, "twourl", &[]);
    kube.create(
        &ns.name,
        &binding_yaml(
            "first",
            &net,
            88,
            &parent,
            &[(&svc, "192.168.88.10-192.168.88.19")],
            "Disconnect",
        ),
    )
    .await;
    let first = settled(&kube, &lab, &ns.name, "first", &net, 2).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // The same service, through the DCE gateway.
    let through_dce = binding_yaml(
        "second",
        &net,
        88,
        &parent,
        &[(&svc, "192.168.88.20-192.168.88.29")],
        "Disconnect",
    ) + &format!(
        "  endpoint: {{kind: Dce, url: \"{}\", secretRef: {{name: dce-admin}}}}\n",
        lab.dce_url
    );
    kube.create(&ns.name, &through_dce).await;
    let second = kube
        .wait_binding(&ns.name, "second", "Conflict", LONG, |b| {
            reason(b) == "Conflict"
        })
        .await;
    let msg = &second.status.as_ref().unwrap().conditions[0].message;
    assert!(msg.contains("first"), "{msg}");
    // Nothing of the first moved.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(docker_endpoints(&lab, &net), status_endpoints(&first));
    let again = kube.bindings(&ns.name).get("first").await.unwrap();
    assert!(ready(&again), "{:?}", again.status);
    assert_eq!(status_endpoints(&again), status_endpoints(&first));
    // Gone before the operator is: a binding on another endpoint left
    // behind would make every later `audit -A` incomplete.
    for name in ["second", "first"] {
        kube.delete(&ns.name, name).await;
        kube.wait_gone(&ns.name, name, LONG).await;
    }
}
