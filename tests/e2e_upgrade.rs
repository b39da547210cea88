//! Upgrading a running install from the previous release to this checkout,
//! on the real lab and a real kube-apiserver, as the README's "Upgrade and
//! uninstall" says to: the previous release's CRDs and chart installed with
//! Helm and its operator binding containers; then this checkout's CRDs
//! applied, `helm upgrade` to this checkout's chart, and the replicas
//! replaced one at a time as a rolling update does. Nothing in Docker may
//! change, and the binding must stay Ready with every address in its status
//! at every moment.
//!
//! The previous release is the commit `tests/upgrade/previous` names, built
//! once by `scripts/upgrade-base` (cached in ~/.cache/mvconf). The envtest
//! control plane runs no pods, so the replicas run out of cluster with the
//! arguments Helm wrote into the Deployment each release installed.

mod common;

use common::e2e::*;
use common::k8s::{Kube, Operator};
use common::{Mode, text, unique};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The previous release: its version, operator binary and chart directory.
struct Previous {
    version: String,
    bin: String,
    chart: String,
}

/// Builds (once) or finds the previous release with `scripts/upgrade-base`.
fn previous() -> Previous {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/upgrade-base");
    let out = std::process::Command::new(script)
        .arg("env")
        .output()
        .expect("run scripts/upgrade-base");
    assert!(out.status.success(), "scripts/upgrade-base: {}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let var = |name: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("export {name}=")))
            .unwrap_or_else(|| panic!("scripts/upgrade-base printed no {name}: {stdout}"))
            .to_owned()
    };
    Previous {
        version: var("MVCONF_UPGRADE_FROM_VERSION"),
        bin: var("MVCONF_UPGRADE_FROM_BIN"),
        chart: var("MVCONF_UPGRADE_FROM_CHART"),
    }
}

fn helm(args: &[&str]) -> String {
    let helm = std::env::var("MVCONF_HELM").unwrap_or_else(|_| "helm".into());
    let out = std::process::Command::new(&helm)
        .args(args)
        .output()
        .expect("run helm");
    assert!(out.status.success(), "helm {args:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The operator container's arguments in the Deployment Helm installed.
fn deployment_args(kube: &Kube, ns: &str, release: &str) -> Vec<String> {
    let (ok, out) = kube.kubectl(
        &[
            "-n",
            ns,
            "get",
            "deployments",
            "-l",
            &format!("app.kubernetes.io/instance={release}"),
            "-o",
            "json",
        ],
        None,
    );
    assert!(ok, "{out}");
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{out}");
    let containers = items[0]["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap();
    let c = containers
        .iter()
        .find(|c| c["args"][0] == "operator")
        .unwrap_or_else(|| panic!("no operator container: {out}"));
    c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect()
}

/// Network connects and disconnects on `net` on every node since `since`
/// (seconds since the epoch, with nanoseconds: the first binding's last
/// connects may fall in the same second), as `docker events` lists them.
fn network_changes(lab: &common::Lab, net: &str, since: &str) -> Vec<String> {
    let until = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1;
    (1..=lab.nodes)
        .flat_map(|k| {
            lab.docker(
                k,
                &[
                    "events",
                    "--since",
                    since,
                    "--until",
                    &until.to_string(),
                    "--filter",
                    "type=network",
                    "--filter",
                    &format!("network={net}"),
                    "--format",
                    "{{.Action}} {{.Actor.Attributes.container}}",
                ],
            )
            .lines()
            .filter(|l| l.starts_with("connect") || l.starts_with("disconnect"))
            .map(|l| format!("node{k}: {l}"))
            .collect::<Vec<_>>()
        })
        .collect()
}

/// Puts this checkout's CRDs back when the test ends, whatever happens: the
/// test binaries after this one need them.
struct CrdsBack<'a>(&'a Kube);

impl Drop for CrdsBack<'_> {
    fn drop(&mut self) {
        self.0.install_crd();
    }
}

/// Uninstalls the test's Helm release when dropped.
struct Release {
    name: String,
    ns: String,
}

impl Drop for Release {
    fn drop(&mut self) {
        let helm = std::env::var("MVCONF_HELM").unwrap_or_else(|_| "helm".into());
        let _ = std::process::Command::new(helm)
            .args(["uninstall", &self.name, "-n", &self.ns, "--wait=false"])
            .output();
    }
}

#[tokio::test]
async fn helm_upgrade_from_the_previous_release_moves_nothing_and_status_never_lapses() {
    let Some((lab, kube, ns)) = setup("e2e-upgrade").await else {
        return;
    };
    let prev = previous();
    let _crds_back = CrdsBack(&kube);
    let svc = unique("up-web");
    let net = unique("up-net");
    let parent = lab.parent(3);
    let _nets = lab.networks_guard(&[&net]);
    let _s = lab.service(&svc, Mode::Replicated(4));
    wait_running(&lab, &svc, 4, LONG).await;

    // The previous release, installed as its README said: its CRDs, its
    // chart (local endpoint, watching this namespace), two replicas.
    let (ok, out) = kube.kubectl(
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            &format!("{}/crds/", prev.chart),
        ],
        None,
    );
    assert!(ok, "{out}");
    let release = format!("up{}", std::process::id() % 100_000);
    let _release = Release {
        name: release.clone(),
        ns: ns.name.clone(),
    };
    let watch = format!("watchNamespaces={{{}}}", ns.name);
    helm(&[
        "install",
        &release,
        &prev.chart,
        "-n",
        &ns.name,
        "--set",
        &watch,
        "--set",
        "endpoint.kind=local",
    ]);
    let old_args = deployment_args(&kube, &ns.name, &release);
    let mut old = [
        Operator::from_chart(&prev.bin, &old_args, &ns.name, "old-a"),
        Operator::from_chart(&prev.bin, &old_args, &ns.name, "old-b"),
    ];
    let yaml = binding_yaml(
        "upgraded",
        &net,
        123,
        &parent,
        &[(&svc, "192.168.123.10-192.168.123.29")],
        "Disconnect",
    );
    kube.create(&ns.name, &yaml).await;
    let before = settled(&kube, &lab, &ns.name, "upgraded", &net, 4).await;
    let bound = status_endpoints(&before);
    let docker_before = docker_endpoints(&lab, &net);
    assert_eq!(bound, docker_before);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let since = format!("{}.{:09}", now.as_secs(), now.subsec_nanos());

    // From here on, every look at the binding must find it Ready with the
    // same four addresses.
    let lapses: Arc<Mutex<Vec<String>>> = Arc::default();
    let looks = Arc::new(Mutex::new(0usize));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (kube, ns, lapses, looks, bound, stop) = (
            Kube::get().await.unwrap(),
            ns.name.clone(),
            lapses.clone(),
            looks.clone(),
            bound.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let b = kube.binding(&ns, "upgraded").await;
                let eps = status_endpoints(&b);
                if !ready(&b) || eps != bound {
                    lapses.lock().unwrap().push(format!(
                        "ready {} reason {} endpoints {eps:?}",
                        ready(&b),
                        reason(&b)
                    ));
                }
                *looks.lock().unwrap() += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };

    // The upgrade, as the README says: this checkout's CRDs, then the
    // chart; the Deployment's replicas replaced one at a time.
    kube.install_crd();
    helm(&[
        "upgrade",
        &release,
        concat!(env!("CARGO_MANIFEST_DIR"), "/charts/mvconf"),
        "-n",
        &ns.name,
        "--reuse-values",
        "--set",
        &format!("probe.image={}", lab.probe_image()),
    ]);
    let new_args = deployment_args(&kube, &ns.name, &release);
    assert_ne!(
        old_args, new_args,
        "the upgrade changed nothing in the Deployment"
    );
    let new_a = Operator::from_chart(env!("CARGO_BIN_EXE_mvconf"), &new_args, &ns.name, "new-a");
    tokio::time::sleep(Duration::from_secs(3)).await;
    old[1].terminate(Duration::from_secs(30));
    let new_b = Operator::from_chart(env!("CARGO_BIN_EXE_mvconf"), &new_args, &ns.name, "new-b");
    tokio::time::sleep(Duration::from_secs(3)).await;
    old[0].terminate(Duration::from_secs(30));

    // One of the new replicas leads and has passed over the binding.
    let key = "binding=\"upgraded\"";
    common::wait_for(
        "a replica of the new release has the binding Ready",
        LONG,
        || async {
            for op in [&new_a, &new_b] {
                let v = op
                    .metric_sum("mvconf_binding_ready", |l| l.contains(key))
                    .await;
                if v == Some(1.0) {
                    return Some(());
                }
            }
            None
        },
    )
    .await;
    // Two resyncs of the chart's default would be long; a few passes of
    // watch events and the first resync of both replicas are enough.
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    watcher.await.unwrap();

    let changes = network_changes(&lab, &net, &since);
    assert!(
        changes.is_empty(),
        "the upgrade changed Docker: {changes:?}\nold: {}\nnew: {}{}",
        old[0].logs(),
        new_a.logs(),
        new_b.logs()
    );
    assert_eq!(docker_endpoints(&lab, &net), docker_before);
    let lapses = lapses.lock().unwrap().clone();
    let looks = *looks.lock().unwrap();
    assert!(looks >= 20, "the binding was looked at only {looks} times");
    assert!(
        lapses.is_empty(),
        "the status lapsed during the upgrade from {} ({} of {looks} looks): {lapses:?}",
        prev.version,
        lapses.len()
    );

    // The new release works on: a fifth replica gets an address, the four
    // keep theirs.
    lab.docker(1, &["service", "scale", "--detach", &format!("{svc}=5")]);
    let after = settled(&kube, &lab, &ns.name, "upgraded", &net, 5).await;
    let now = status_endpoints(&after);
    assert!(bound.is_subset(&now), "before {bound:?} after {now:?}");
    assert_eq!(now.len(), 5);
    let ips: BTreeSet<&String> = now.iter().map(|(_, ip)| ip).collect();
    assert_eq!(ips.len(), 5);

    kube.delete(&ns.name, "upgraded").await;
    kube.wait_gone(&ns.name, "upgraded", LONG).await;
    drop((new_a, new_b));
}
