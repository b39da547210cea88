//! Helpers shared by the end-to-end tests (operator + apiserver + lab).

use super::k8s::Kube;
use super::{Lab, unique};
use mvconf::crd::{MacvlanBinding, RecordState};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

pub const LONG: Duration = Duration::from_secs(90);

pub fn binding_yaml(
    name: &str,
    net: &str,
    octet: u8,
    parent: &str,
    services: &[(&str, &str)],
    policy: &str,
) -> String {
    let svcs: Vec<String> = services
        .iter()
        .map(|(s, pool)| format!("  - {{name: {s}, network: {net}, ipPool: [{pool}]}}"))
        .collect();
    format!(
        "apiVersion: mvconf.io/v1alpha1\nkind: MacvlanBinding\nmetadata: {{name: {name}}}\nspec:\n  deletionPolicy: {policy}\n  networks:\n  - {{name: {net}, subnet: 192.168.{octet}.0/24, gateway: 192.168.{octet}.1, parent: {parent}}}\n  services:\n{}\n",
        svcs.join("\n")
    )
}

pub fn ready(b: &MacvlanBinding) -> bool {
    b.status.as_ref().is_some_and(|s| {
        s.observed_generation == b.metadata.generation
            && s.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
    })
}

pub fn reason(b: &MacvlanBinding) -> String {
    b.status
        .as_ref()
        .and_then(|s| s.conditions.first())
        .map(|c| c.reason.clone())
        .unwrap_or_default()
}

/// (container prefix 12, ip) of every endpoint on `network`, all nodes.
pub fn docker_endpoints(lab: &Lab, network: &str) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
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
            // "ep-..." keys are endpoints whose container is still being set up or torn down.
            if id.starts_with("ep-") {
                continue;
            }
            let ip = c["IPv4Address"]
                .as_str()
                .unwrap_or_default()
                .split('/')
                .next()
                .unwrap_or_default()
                .to_owned();
            out.insert((id[..12].to_owned(), ip));
        }
    }
    out
}

pub fn status_endpoints(b: &MacvlanBinding) -> BTreeSet<(String, String)> {
    b.status
        .as_ref()
        .map(|s| {
            s.containers
                .iter()
                .filter(|r| r.state == RecordState::Bound)
                .map(|r| (r.container.clone(), r.ip.clone().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default()
}

/// The (hydrated) record of task slot `slot`.
pub fn record_of(b: &MacvlanBinding, slot: u64) -> mvconf::crd::ContainerRecord {
    b.status
        .iter()
        .flat_map(|s| &s.containers)
        .find(|r| r.slot == Some(slot))
        .cloned()
        .unwrap_or_else(|| panic!("no record of slot {slot}"))
}

/// Whether `victim`'s slot is bound again, in another container, with
/// the same address.
pub fn rebound(b: &MacvlanBinding, victim: &mvconf::crd::ContainerRecord) -> bool {
    b.status.iter().flat_map(|s| &s.containers).any(|r| {
        r.slot == victim.slot
            && r.container != victim.container
            && r.ip == victim.ip
            && r.state == RecordState::Bound
    })
}

pub fn assert_unique(eps: &BTreeSet<(String, String)>) {
    let ips: BTreeSet<&String> = eps.iter().map(|(_, ip)| ip).collect();
    assert_eq!(
        ips.len(),
        eps.len(),
        "an address is on two containers: {eps:?}"
    );
}

/// Waits until status is Ready and equals what Docker shows.
pub async fn settled(
    kube: &Kube,
    lab: &Lab,
    ns: &str,
    name: &str,
    net: &str,
    want: usize,
) -> MacvlanBinding {
    let start = std::time::Instant::now();
    loop {
        let b = kube
            .wait_binding(ns, name, "Ready", LONG, |b| {
                ready(b) && b.status.as_ref().is_some_and(|s| s.bound as usize == want)
            })
            .await;
        let docker = docker_endpoints(lab, net);
        if status_endpoints(&b) == docker {
            assert_unique(&docker);
            return b;
        }
        assert!(
            start.elapsed() < LONG,
            "status never matched Docker: status {:?} docker {docker:?}",
            status_endpoints(&b)
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

pub async fn setup(name: &str) -> Option<(Lab, Kube, super::k8s::Namespace)> {
    let lab = Lab::get()?;
    let kube = Kube::get().await?;
    kube.install_crd();
    let ns = kube.namespace(&unique(name));
    Some((lab, kube, ns))
}

/// Running containers of `svc` on the nodes that answer.
pub fn running(lab: &Lab, svc: &str) -> usize {
    running_ids(lab, svc).len()
}

/// IDs (12 characters) of the running containers of `svc`, all nodes that answer.
pub fn running_ids(lab: &Lab, svc: &str) -> Vec<String> {
    (1..=lab.nodes)
        .filter(|k| lab.try_docker(*k, &["info"]))
        .flat_map(|k| {
            lab.docker(
                k,
                &[
                    "ps",
                    "-q",
                    "--filter",
                    &format!("label=com.docker.swarm.service.name={svc}"),
                ],
            )
            .lines()
            .map(str::to_owned)
            .collect::<Vec<_>>()
        })
        .collect()
}

pub async fn wait_running(lab: &Lab, svc: &str, n: usize, timeout: Duration) {
    super::wait_for(
        &format!("{n} running containers of {svc}"),
        timeout,
        || async { (running(lab, svc) == n).then_some(()) },
    )
    .await;
}

/// Waits until `count` bindings of `ns` are Ready with `per` containers
/// bound each; returns how long that took. Follows the bindings with a
/// watch: polling lists of hundreds of bindings would load the API server
/// the benchmarks measure.
pub async fn wait_all_bound(
    kube: &Kube,
    ns: &str,
    count: usize,
    per: usize,
    timeout: Duration,
) -> Duration {
    use futures::StreamExt;
    use kube::runtime::{WatchStreamExt, watcher};
    let start = std::time::Instant::now();
    let mut bound: BTreeMap<String, bool> = BTreeMap::new();
    let stream = watcher(kube.bindings(ns), watcher::Config::default()).applied_objects();
    let mut stream = std::pin::pin!(stream);
    let wait = async {
        while let Some(b) = stream.next().await {
            let b = b.expect("watch bindings");
            let done = ready(&b) && b.status.as_ref().is_some_and(|s| s.bound as usize == per);
            bound.insert(kube::ResourceExt::name_any(&b), done);
            if bound.values().filter(|d| **d).count() == count {
                return;
            }
        }
    };
    if tokio::time::timeout(timeout, wait).await.is_err() {
        let done = bound.values().filter(|d| **d).count();
        panic!("{done} of {count} bindings bound after {timeout:?}");
    }
    start.elapsed()
}

/// Holders of the per-swarm Leases of `lease` in `ns` (swarm ID -> holder).
pub async fn swarm_holders(kube: &Kube, ns: &str, lease: &str) -> BTreeMap<String, String> {
    use k8s_openapi::api::coordination::v1::Lease;
    let api: kube::Api<Lease> = kube::Api::namespaced(kube.client.clone(), ns);
    let selector = format!("mvconf.io/lease-of={lease},mvconf.io/role=swarm");
    let list = api
        .list(&kube::api::ListParams::default().labels(&selector))
        .await
        .expect("list leases");
    list.items
        .into_iter()
        .filter_map(|l| {
            let swarm = l.metadata.annotations?.get("mvconf.io/swarm")?.clone();
            let holder = l.spec?.holder_identity.filter(|h| !h.is_empty())?;
            Some((swarm, holder))
        })
        .collect()
}
