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
    // The allocation latency counts the replacement too.
    assert!(op.metric("mvconf_bind_seconds_count").await.unwrap_or(0.0) >= 1.0);
    // Every metric the chart's alerts and dashboard query is served by the
    // live operator, and the binding's own series are there.
    let text = common::k8s::http_get(op.metrics_port, "/metrics")
        .await
        .unwrap_or_default();
    let mut queried = common::chart_queries();
    assert!(queried.len() > 15, "{queried:?}");
    // The grants' series come from the install with --tenancy-status (the
    // tenancy test checks them).
    queried.retain(|n| !n.starts_with("mvconf_grant_"));
    let missing = common::undeclared(&text, &queried);
    assert!(
        missing.is_empty(),
        "queried by the chart, not served: {missing:?}"
    );
    let series = |family: &str, value: &str| {
        format!(
            "{family}{{namespace=\"{}\",binding=\"kill\"}} {value}",
            ns.name
        )
    };
    for (family, value) in [
        ("mvconf_binding_ready", "1"),
        ("mvconf_nodes_unreachable", "0"),
        ("mvconf_foreign_holders", "0"),
    ] {
        let want = series(family, value);
        assert!(text.contains(&want), "no {want} in\n{text}");
    }
    // What `helm test` runs: the install's own check, as the operator
    // would start, and the running operator's readiness.
    let check = |extra: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_mvconf"))
            .args(["operator", "--check", "--namespace", &ns.name])
            .args(["--pod-namespace", &ns.name])
            .args(extra)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        (out.status.success(), common::text(&out))
    };
    let readyz = format!("http://127.0.0.1:{}/readyz", op.metrics_port);
    let (ok, out) = check(&["--check-url", &readyz]);
    assert!(ok, "{out}");
    for line in [
        "ok: the Kubernetes API server answers",
        &format!("ok: MacvlanBindings can be listed in namespace {}", ns.name),
        "ok: the default endpoint",
        "and the engines of its 3 nodes",
        "ok: the operator answers ready",
    ] {
        assert!(out.contains(line), "no {line:?} in\n{out}");
    }
    // A wrong endpoint, a missing Secret: each named, the exit code says so.
    let (ok, out) = check(&[
        "--endpoint-kind",
        "dce",
        "--endpoint-url",
        "http://127.0.0.1:9",
    ]);
    assert!(
        !ok && out.contains("FAILED: the default endpoint dce:http://127.0.0.1:9"),
        "{out}"
    );
    let (ok, out) = check(&["--credentials-secret", "no-such-secret"]);
    assert!(!ok && out.contains("no-such-secret"), "{out}");
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
    let op = Operator::start(&ns.name, "delete", &[]);
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
    let series = || async {
        common::k8s::http_get(op.metrics_port, "/metrics")
            .await
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("binding=\"del\""))
            .count()
    };
    assert!(
        series().await > 0,
        "no series of the binding while it lives"
    );
    kube.delete(&ns.name, "del").await;
    kube.wait_gone(&ns.name, "del", LONG).await;
    for k in 1..=lab.nodes {
        assert!(
            !lab.try_docker(k, &["network", "inspect", &net]),
            "{net} left on node{k}"
        );
    }
    // Its metric series go with it (no stale gauge for an alert to fire on).
    common::wait_for("the deleted binding's series to go", LONG, || async {
        (series().await == 0).then_some(())
    })
    .await;
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
    let again = kube.binding(&ns.name, "first").await;
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
    let again = kube.binding(&ns.name, "first").await;
    assert!(ready(&again), "{:?}", again.status);
    assert_eq!(status_endpoints(&again), status_endpoints(&first));
    // Gone before the operator is: a binding on another endpoint left
    // behind would make every later `audit -A` incomplete.
    for name in ["second", "first"] {
        kube.delete(&ns.name, name).await;
        kube.wait_gone(&ns.name, name, LONG).await;
    }
}

// Tenancy (issue 13): the platform team declares a SwarmEndpoint and
// MacvlanNetworks with grants; team A (user alice) and team B (user bob)
// have only the chart's aggregated binding roles in their namespace. Each
// thing alice must not reach is refused, at apply time where the API server
// can see it and otherwise by a condition naming the field and the grant;
// bob's containers never move; no request reaches a URL a team writes.
#[tokio::test]
async fn teams_reach_only_what_their_grants_give_them() {
    let Some((lab, kube, platform)) = setup("e2e-ten-platform").await else {
        return;
    };
    let tag = unique("ten");
    let team_a = kube.namespace(&unique("e2e-ten-a"));
    let team_b = kube.namespace(&unique("e2e-ten-b"));
    let (a, b) = (team_a.name.clone(), team_b.name.clone());
    let kubectl = |args: &[&str], stdin: Option<&str>| kube.kubectl(args, stdin);
    let must = |args: &[&str], stdin: Option<&str>| {
        let (ok, out) = kubectl(args, stdin);
        assert!(ok, "kubectl {args:?}: {out}");
    };
    let _cleanup = TenancyCleanup {
        kubectl: &kube,
        tag: tag.clone(),
    };
    // The chart's roles and admission policy, as a multi-team install has
    // them; the policy only in team A's namespace (team B shows the
    // operator's own refusal).
    must(
        &[
            "label",
            "namespace",
            &a,
            &format!("mvconf-test-tenancy={tag}"),
        ],
        None,
    );
    let helm = std::env::var("MVCONF_HELM").unwrap_or_else(|_| "helm".into());
    let chart = concat!(env!("CARGO_MANIFEST_DIR"), "/charts/mvconf");
    let selector = format!(r#"{{"matchLabels":{{"mvconf-test-tenancy":"{tag}"}}}}"#);
    let rendered = std::process::Command::new(&helm)
        .args(["template", &tag, chart, "-n", &platform.name])
        .args(["--set", "tenancy.mode=multi", "--set-json"])
        .arg(format!("tenancy.admissionNamespaceSelector={selector}"))
        .args(["--show-only", "templates/rbac.yaml"])
        .args(["--show-only", "templates/admission.yaml"])
        .output()
        .unwrap();
    assert!(rendered.status.success(), "{}", common::text(&rendered));
    must(
        &["apply", "-f", "-"],
        Some(&String::from_utf8(rendered.stdout).unwrap()),
    );
    for (user, ns) in [("alice", &a), ("bob", &b)] {
        for role in ["binding-edit", "binding-view"] {
            must(
                &[
                    "create",
                    "rolebinding",
                    &format!("{user}-{role}"),
                    "-n",
                    ns,
                    &format!("--clusterrole={tag}-mvconf-{role}"),
                    &format!("--user={user}"),
                ],
                None,
            );
        }
    }
    // A listener a team might point the operator at: it must hear nothing.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let trap = format!("http://{}", listener.local_addr().unwrap());
    listener.set_nonblocking(true).unwrap();

    // The platform team's objects.
    let pay = unique("e2e-ten-pay");
    let (svc_a, svc_b) = (format!("{pay}-api"), unique("e2e-ten-ledger"));
    let (net, other) = (format!("{tag}-net"), format!("{tag}-other"));
    let docker_net = unique("e2e-ten-mv");
    let _nets = lab.networks_guard(&[&docker_net, &other]);
    let (parent, parent2) = (lab.parent(8), lab.parent(9));
    let _sa = lab.service(&svc_a, Mode::Replicated(2));
    let _sb = lab.service(&svc_b, Mode::Replicated(2));
    let platform_yaml = format!(
        r#"apiVersion: v1
kind: Secret
metadata: {{name: dce-creds, namespace: {p}}}
stringData: {{username: {user}, password: "{pw}"}}
---
apiVersion: mvconf.io/v1alpha1
kind: SwarmEndpoint
metadata: {{name: {tag}-dce}}
spec:
  kind: Dce
  url: {url}
  secretRef: {{name: dce-creds}}
  allowedNamespaces: {{namespaces: [{a}, {b}]}}
---
apiVersion: mvconf.io/v1alpha1
kind: MacvlanNetwork
metadata: {{name: {net}}}
spec:
  endpointRef: {{name: {tag}-dce}}
  dockerName: {docker_net}
  subnet: 192.168.78.0/24
  gateway: 192.168.78.1
  parent: {parent}
  reserved: [192.168.78.20]
  grants:
  - {{namespaces: [{a}], services: ["{pay}*"], ranges: [192.168.78.10-192.168.78.29]}}
  - {{namespaces: [{b}], services: [{svc_b}], ranges: [192.168.78.30-192.168.78.39]}}
---
apiVersion: mvconf.io/v1alpha1
kind: MacvlanNetwork
metadata: {{name: {other}}}
spec:
  endpointRef: {{name: {tag}-dce}}
  subnet: 192.168.79.0/24
  gateway: 192.168.79.1
  parent: {parent2}
  grants:
  - {{namespaces: [{b}], services: ["*"], ranges: [192.168.79.10-192.168.79.19]}}
"#,
        p = platform.name,
        user = lab.dce_user,
        pw = lab.dce_password,
        url = lab.dce_url,
    );
    must(&["apply", "-f", "-"], Some(&platform_yaml));
    // Teams cannot write the platform's kinds nor read its Secret.
    for (verb, what) in [
        ("create", "macvlannetworks.mvconf.io"),
        ("update", "swarmendpoints.mvconf.io"),
        ("delete", "macvlannetworks.mvconf.io"),
    ] {
        let (_, out) = kubectl(&["auth", "can-i", verb, what, "--as", "alice"], None);
        assert_eq!(out.lines().next(), Some("no"), "alice may {verb} {what}");
    }
    let (ok, out) = kubectl(
        &[
            "get",
            "secret",
            "dce-creds",
            "-n",
            &platform.name,
            "--as",
            "alice",
        ],
        None,
    );
    assert!(!ok && out.contains("forbidden"), "{out}");

    let op = Operator::start(
        &platform.name,
        "tenancy",
        &[
            "--namespace",
            &format!("{a},{b}"),
            "--inline",
            "deny",
            "--tenancy-status",
            "true",
        ],
    );
    let binding = |name: &str, svc: &str, network: &str, pool: &str| {
        format!(
            "apiVersion: mvconf.io/v1alpha1\nkind: MacvlanBinding\nmetadata: {{name: {name}}}\nspec:\n  services:\n  - {{name: {svc}, network: {network}, ipPool: [{pool}]}}\n"
        )
    };
    let apply_as = |user: &str, ns: &str, yaml: &str| {
        kubectl(&["apply", "-n", ns, "--as", user, "-f", "-"], Some(yaml))
    };
    // Bob binds his service inside his grant.
    let (ok, out) = apply_as(
        "bob",
        &b,
        &binding("ledger", &svc_b, &net, "192.168.78.30-192.168.78.31"),
    );
    assert!(ok, "{out}");
    let bob = settled(&kube, &lab, &b, "ledger", &docker_net, 2).await;
    let bobs = status_endpoints(&bob);

    // Alice tries everything she was not given.
    for (name, svc, network, pool, field, words) in [
        (
            "steal",
            svc_b.as_str(),
            net.as_str(),
            "192.168.78.10",
            "spec.services[0].name",
            "does not grant service",
        ),
        (
            "outside",
            svc_a.as_str(),
            net.as_str(),
            "192.168.78.30",
            "spec.services[0].ipPool[0]",
            "is outside the ranges",
        ),
        (
            // A pool of reserved addresses only (one that also has others
            // skips them).
            "reserved",
            svc_a.as_str(),
            net.as_str(),
            "192.168.78.20",
            "spec.services[0].ipPool",
            "is reserved on network",
        ),
        (
            "elsewhere",
            svc_a.as_str(),
            other.as_str(),
            "192.168.79.10",
            "spec.services[0].network",
            &format!("grants nothing to namespace {a}"),
        ),
    ] {
        let (ok, out) = apply_as("alice", &a, &binding(name, svc, network, pool));
        assert!(ok, "{out}");
        let got = kube
            .wait_binding(&a, name, "InvalidSpec", LONG, |x| {
                reason(x) == "InvalidSpec"
            })
            .await;
        let msg = &got.status.as_ref().unwrap().conditions[0].message;
        assert!(msg.contains(field) && msg.contains(words), "{name}: {msg}");
    }
    // Inline networks (any parent, eth0 included) and a URL with a Secret:
    // refused when applied in A's namespace...
    let inline = |name: &str, svc: &str| {
        format!(
            "apiVersion: mvconf.io/v1alpha1\nkind: MacvlanBinding\nmetadata: {{name: {name}}}\nspec:\n  networks:\n  - {{name: grab, subnet: 192.168.78.0/24, gateway: 192.168.78.1, parent: eth0}}\n  services:\n  - {{name: {svc}, network: grab, ipPool: [192.168.78.1-192.168.78.9]}}\n  endpoint: {{kind: Dce, url: \"{trap}\", secretRef: {{name: dce-creds}}}}\n"
        )
    };
    let (ok, out) = apply_as("alice", &a, &inline("grab", &svc_b));
    assert!(
        !ok && out.contains("spec.networks: inline networks are off"),
        "{out}"
    );
    // ...and by the operator where no policy runs (B's namespace).
    let (ok, out) = apply_as("bob", &b, &inline("grab", &svc_a));
    assert!(ok, "{out}");
    let got = kube
        .wait_binding(&b, "grab", "InvalidSpec", LONG, |x| {
            reason(x) == "InvalidSpec"
        })
        .await;
    let msg = &got.status.as_ref().unwrap().conditions[0].message;
    assert!(
        msg.contains("spec.networks: inline networks are off") && msg.contains("spec.endpoint"),
        "{msg}"
    );

    // What she was given works.
    let (ok, out) = apply_as(
        "alice",
        &a,
        &binding("pay", &svc_a, &net, "192.168.78.10-192.168.78.11"),
    );
    assert!(ok, "{out}");
    let alice = kube
        .wait_binding(&a, "pay", "Ready", LONG, |x| {
            ready(x) && x.status.as_ref().is_some_and(|s| s.bound == 2)
        })
        .await;
    // The audit reads the platform's networks for bindings that name them.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mvconf"))
        .args(["audit", "-o", "json", "--binding", &format!("{a}/pay")])
        .args(["--binding", &format!("{b}/ledger")])
        .args(["-H", &std::env::var("DOCKER_HOST").unwrap()])
        .env_remove("MVCONF_DCE_URL")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", common::text(&out)));
    assert!(out.status.success(), "{report:#}");
    assert_eq!(report["statusRecords"], 4, "{report:#}");
    // The platform sees who uses what, and how full it is.
    let shown = common::wait_for("MacvlanNetwork status", LONG, || async {
        let (_, out) = kubectl(&["get", "macvlannetwork", &net], None);
        out.contains("4/30").then_some(out)
    })
    .await;
    assert!(shown.contains(&format!("{a},{b}")), "{shown}");
    let (_, out) = kubectl(&["get", "swarmendpoint", &format!("{tag}-dce")], None);
    assert!(out.contains(&format!("{a},{b}")), "{out}");
    // And so does the alert on a filling grant: each grant's size and use.
    let text = common::k8s::http_get(op.metrics_port, "/metrics")
        .await
        .unwrap_or_default();
    for (family, grant, value) in [
        ("mvconf_grant_addresses", 0, 20),
        ("mvconf_grant_held", 0, 2),
        ("mvconf_grant_addresses", 1, 10),
        ("mvconf_grant_held", 1, 2),
    ] {
        let want = format!("{family}{{network=\"{net}\",grant=\"{grant}\"}} {value}");
        assert!(text.contains(&want), "no {want} in\n{text}");
    }

    // Revoking A's grant stops her binding from acting; nothing moves.
    let revoke = r#"[{"op":"remove","path":"/spec/grants/0"}]"#;
    must(
        &["patch", "macvlannetwork", &net, "--type=json", "-p", revoke],
        None,
    );
    let got = kube
        .wait_binding(&a, "pay", "InvalidSpec", LONG, |x| {
            reason(x) == "InvalidSpec"
        })
        .await;
    let msg = &got.status.as_ref().unwrap().conditions[0].message;
    assert!(msg.contains("grants nothing"), "{msg}");
    let docker = docker_endpoints(&lab, &docker_net);
    assert!(status_endpoints(&alice).is_subset(&docker), "{docker:?}");

    // Bob's containers never moved; nobody called the trap.
    assert!(
        bobs.is_subset(&docker),
        "bob's moved: {bobs:?} vs {docker:?}"
    );
    let again = kube.binding(&b, "ledger").await;
    assert!(ready(&again));
    assert_eq!(status_endpoints(&again), bobs);
    assert_unique(&docker);
    // Deleting them: the revoked binding still undoes its work, and the
    // refused inline one is let go without its URL being called.
    for (ns, name) in [(&a, "pay"), (&b, "ledger"), (&b, "grab")] {
        kube.delete(ns, name).await;
        kube.wait_gone(ns, name, LONG).await;
    }
    assert!(docker_endpoints(&lab, &docker_net).is_empty());
    assert!(listener.accept().is_err(), "a request reached {trap}");
}

/// Removes the test's cluster-scoped objects, whatever happened.
struct TenancyCleanup<'a> {
    kubectl: &'a common::k8s::Kube,
    tag: String,
}

impl Drop for TenancyCleanup<'_> {
    fn drop(&mut self) {
        let t = &self.tag;
        for (kind, names) in [
            (
                "macvlannetwork",
                vec![format!("{t}-net"), format!("{t}-other")],
            ),
            ("swarmendpoint", vec![format!("{t}-dce")]),
            (
                "clusterrole",
                vec![
                    format!("{t}-mvconf"),
                    format!("{t}-mvconf-tenancy"),
                    format!("{t}-mvconf-binding-view"),
                    format!("{t}-mvconf-binding-edit"),
                ],
            ),
            (
                "clusterrolebinding",
                vec![format!("{t}-mvconf"), format!("{t}-mvconf-tenancy")],
            ),
            (
                "validatingadmissionpolicy",
                vec![format!("{t}-mvconf-no-inline")],
            ),
            (
                "validatingadmissionpolicybinding",
                vec![format!("{t}-mvconf-no-inline")],
            ),
        ] {
            let mut args = vec!["delete", kind, "--ignore-not-found", "--wait=false"];
            args.extend(names.iter().map(String::as_str));
            let _ = self.kubectl.kubectl(&args, None);
        }
    }
}

// Tenancy (issue 13): a service claimed by an older binding stays claimed
// while that binding exists, even when its spec is broken for a while: a
// newer binding elsewhere used to take it over and give its containers
// other addresses.
#[tokio::test]
async fn an_older_binding_with_a_broken_spec_still_protects_its_service() {
    let Some((lab, kube, first_ns)) = setup("e2e-claim-a").await else {
        return;
    };
    let second_ns = kube.namespace(&unique("e2e-claim-b"));
    let svc = unique("e2e-claim-web");
    let net = unique("e2e-claim-net");
    let parent = lab.parent(10);
    let _nets = lab.networks_guard(&[&net]);
    let _s = lab.service(&svc, Mode::Replicated(2));
    let watch = format!("{},{}", first_ns.name, second_ns.name);
    let _op = Operator::start(&first_ns.name, "claims", &["--namespace", &watch]);
    let yaml = |name: &str, pool: &str| {
        binding_yaml(name, &net, 89, &parent, &[(&svc, pool)], "Disconnect")
    };
    kube.create(
        &first_ns.name,
        &yaml("first", "192.168.89.10-192.168.89.11"),
    )
    .await;
    let first = settled(&kube, &lab, &first_ns.name, "first", &net, 2).await;
    // A typo: an address outside the subnet. The first binding stops acting.
    kube.patch_spec(
        &first_ns.name,
        "first",
        serde_json::json!({"services": [{"name": svc, "network": net, "ipPool": ["10.0.0.5"]}]}),
    )
    .await;
    kube.wait_binding(&first_ns.name, "first", "InvalidSpec", LONG, |b| {
        reason(b) == "InvalidSpec"
    })
    .await;
    kube.create(
        &second_ns.name,
        &yaml("second", "192.168.89.20-192.168.89.21"),
    )
    .await;
    let second = kube
        .wait_binding(&second_ns.name, "second", "Conflict", LONG, |b| {
            reason(b) == "Conflict"
        })
        .await;
    let msg = &second.status.as_ref().unwrap().conditions[0].message;
    assert!(
        msg.contains(&format!(
            "claimed by MacvlanBinding {}/first",
            first_ns.name
        )),
        "{msg}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(docker_endpoints(&lab, &net), status_endpoints(&first));
    for (ns, name) in [(&second_ns.name, "second"), (&first_ns.name, "first")] {
        kube.delete(ns, name).await;
        kube.wait_gone(ns, name, LONG).await;
    }
}

/// (slot, ip) of every Bound record.
fn slot_ips(b: &mvconf::crd::MacvlanBinding) -> std::collections::BTreeMap<u64, String> {
    b.status
        .iter()
        .flat_map(|s| &s.containers)
        .filter(|r| r.state == RecordState::Bound)
        .filter_map(|r| Some((r.slot?, r.ip.clone()?)))
        .collect()
}

#[tokio::test]
async fn records_live_in_slices_that_carry_the_memory_across_upgrades_and_restarts() {
    use kube::ResourceExt;
    use kube::api::{Api, ListParams, Patch, PatchParams};
    use mvconf::slices::MacvlanEndpointSlice;
    let Some((lab, kube, ns)) = setup("e2e-slices").await else {
        return;
    };
    let svc = unique("e2e-slices-web");
    let net = unique("e2e-slices-net");
    let parent = lab.parent(11);
    let _nets = lab.networks_guard(&[&net]);
    let _s = lab.service(&svc, Mode::Replicated(2));
    wait_running(&lab, &svc, 2, LONG).await;

    // An operator of an older version kept its records in the status:
    // slots 1 and 2 hold .17 and .18 while their containers are replaced.
    let created = kube
        .create(
            &ns.name,
            &binding_yaml(
                "slices",
                &net,
                74,
                &parent,
                &[(&svc, "192.168.74.10-192.168.74.19")],
                "Disconnect",
            ),
        )
        .await;
    let legacy = |slot: u64, ip: &str| {
        serde_json::json!({"service": svc, "slot": slot, "nodeId": "gone", "node": "gone",
            "ip": ip, "state": "Reserved", "ingress": false})
    };
    kube.bindings(&ns.name)
        .patch_status(
            "slices",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"status": {"containers": [
                legacy(1, "192.168.74.17"), legacy(2, "192.168.74.18")]}})),
        )
        .await
        .expect("write the old operator's status");
    let mut op = Operator::start(&ns.name, "slices", &[]);
    let b = settled(&kube, &lab, &ns.name, "slices", &net, 2).await;
    let want: std::collections::BTreeMap<u64, String> = [
        (1, "192.168.74.17".to_owned()),
        (2, "192.168.74.18".to_owned()),
    ]
    .into();
    assert_eq!(slot_ips(&b), want, "an upgrade forgot the old records");

    // From then on the records live in a slice owned by the binding, and
    // the binding's own status is a summary.
    common::wait_for("the old records gone from the status", LONG, || async {
        let raw = kube.bindings(&ns.name).get("slices").await.ok()?;
        let s = raw.status?;
        (s.containers.is_empty() && s.endpoint_slices == 1).then_some(())
    })
    .await;
    let slices: Api<MacvlanEndpointSlice> = Api::namespaced(kube.client.clone(), &ns.name);
    let lp = ListParams::default().labels("mvconf.io/binding=slices");
    let list = slices.list(&lp).await.expect("list slices").items;
    assert_eq!(list.len(), 1);
    let owner = &list[0].metadata.owner_references.as_ref().expect("owner")[0];
    assert_eq!(
        (owner.kind.as_str(), Some(&owner.uid)),
        ("MacvlanBinding", created.metadata.uid.as_ref())
    );
    let (ok, table) = kube.kubectl(&["-n", &ns.name, "get", "mves"], None);
    assert!(ok, "{table}");
    let row = table.lines().nth(1).unwrap_or_default().to_owned();
    for cell in ["slices", svc.as_str(), "2"] {
        assert!(row.split_whitespace().any(|c| c == cell), "{table}");
    }

    // Operator down while swarm replaces a container: back up, it gives
    // the slot its address again from the slice (Docker no longer knows).
    op.kill();
    let victim = record_of(&b, 1);
    let k: usize = victim.node.trim_start_matches("node").parse().unwrap();
    lab.docker(k, &["kill", &victim.container]);
    common::wait_for("swarm to replace the container", LONG, || async {
        let ids = running_ids(&lab, &svc);
        (ids.len() == 2 && !ids.contains(&victim.container)).then_some(())
    })
    .await;
    op.restart();
    let again = kube
        .wait_binding(&ns.name, "slices", "slot 1 bound again", LONG, |b| {
            ready(b) && rebound(b, &victim)
        })
        .await;
    assert_eq!(
        slot_ips(&again),
        want,
        "a slot changed address across the restart"
    );

    // Deleting the binding deletes its slices (no garbage collector here).
    kube.delete(&ns.name, "slices").await;
    kube.wait_gone(&ns.name, "slices", LONG).await;
    let left = slices.list(&lp).await.expect("list slices").items;
    assert!(
        left.is_empty(),
        "{:?}",
        left.iter().map(|s| s.name_any()).collect::<Vec<_>>()
    );
}

/// Uninstalled in the wrong order, the operator gone before its bindings:
/// a deleted binding waits on its finalizer and nothing in Docker changes;
/// the finalizer removed by hand lets it go with Docker as it was; `mvconf
/// down --force` with the binding's manifest undoes it (README, Uninstall).
#[tokio::test]
async fn a_binding_deleted_after_the_operator_keeps_its_finalizer_and_down_undoes_it() {
    let Some((lab, kube, ns)) = setup("e2e-uninst").await else {
        return;
    };
    let svc = unique("e2e-uninst-web");
    let net = unique("e2e-uninst-net");
    let parent = lab.parent(13);
    let _nets = lab.networks_guard(&[&net]);
    let _s = lab.service(&svc, Mode::Replicated(2));
    let mut op = Operator::start(&ns.name, "uninst", &[]);
    let yaml = binding_yaml(
        "uninst",
        &net,
        66,
        &parent,
        &[(&svc, "192.168.66.10-192.168.66.19")],
        "DisconnectAndRemoveNetworks",
    );
    kube.create(&ns.name, &yaml).await;
    let b = settled(&kube, &lab, &ns.name, "uninst", &net, 2).await;
    let bound = status_endpoints(&b);
    op.kill();
    kube.delete(&ns.name, "uninst").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stuck = kube.bindings(&ns.name).get("uninst").await.unwrap();
    assert!(stuck.metadata.deletion_timestamp.is_some());
    assert!(
        stuck
            .metadata
            .finalizers
            .unwrap_or_default()
            .contains(&mvconf::crd::FINALIZER.to_owned())
    );
    assert_eq!(
        docker_endpoints(&lab, &net),
        bound,
        "changed with no operator"
    );
    let patch = serde_json::json!({"metadata": {"finalizers": null}});
    kube.bindings(&ns.name)
        .patch(
            "uninst",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .unwrap();
    kube.wait_gone(&ns.name, "uninst", LONG).await;
    assert_eq!(
        docker_endpoints(&lab, &net),
        bound,
        "the finalizer's removal changed Docker"
    );
    // By hand: the service is still claimed by the gone binding, so --force.
    let file = std::env::temp_dir().join(format!("{}.yaml", unique("e2e-uninst")));
    std::fs::write(&file, &yaml).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mvconf"))
        .arg("-f")
        .arg(&file)
        .args(["down", "--force"])
        .env_remove("MVCONF_DCE_URL")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&file);
    assert!(out.status.success(), "{}", common::text(&out));
    assert!(docker_endpoints(&lab, &net).is_empty());
    for k in 1..=lab.nodes {
        assert!(
            !lab.try_docker(k, &["network", "inspect", &net]),
            "{net} left on node{k}"
        );
    }
}

// Issue 18: the operator with the `local` default, run on DCE's controller
// node (node1's network, its engine at the default socket, nothing naming
// an endpoint: out of a pod, as a service of that node) takes the
// controller that node's service dce_base names, as the CLI does; its
// install check reaches every node's engine through it. Anonymous access
// is on, as the operator here has no default credentials.
#[tokio::test]
async fn the_operator_on_a_dce_controller_node_takes_the_controller() {
    let Some((_lab, _kube, ns)) = setup("e2e-dce-auto").await else {
        return;
    };
    let lab_script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/lab");
    let _anonymous = common::AnonymousController::on();
    // node1 reaches the apiserver through a relay on the lab bridge.
    let (_relay, kubeconfig) = common::relay::Relay::to_apiserver_at("10.99.0.1").await;
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(lab_script)
            .args(["on-manager", "env", "-i", "RUST_LOG=info"])
            .arg(format!("KUBECONFIG={}", kubeconfig.display()))
            .arg(env!("CARGO_BIN_EXE_mvconf"))
            .args(["operator", "--check", "--namespace", &ns.name])
            .args(["--pod-namespace", &ns.name])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let said = common::text(&out);
    assert!(out.status.success(), "{said}");
    for line in [
        "default endpoint: DCE http://10.99.0.11, detected: the local engine is a manager of a swarm running dce_base",
        "ok: the default endpoint dce:http://10.99.0.11",
        "and the engines of its 3 nodes",
    ] {
        assert!(said.contains(line), "no {line:?} in\n{said}");
    }
}
