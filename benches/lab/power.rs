//! The power cut: every engine of the lab killed at once (engine, containerd,
//! shims and containers, as a power loss does) and started again, with the
//! operator running and a binding bound. Measured from the last engine's
//! return until every slot runs again on its old address.

use super::{NET, Raw, binding_yaml, delete_binding, wait_bound, wait_running};
use crate::common::k8s::Kube;
use crate::common::{Lab, Mode};
use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

pub(crate) struct PowerCycle {
    pub(crate) slots: usize,
    /// Kill of the first engine -> the last engine answering again.
    pub(crate) outage: Duration,
    /// The last engine answering -> every slot on its old address; `None`
    /// when that did not happen within ten minutes.
    pub(crate) back: Option<Duration>,
    /// Slots running on another address than before the cut, at the end.
    pub(crate) moved: usize,
    /// Slots with no running container on the network at the end.
    pub(crate) missing: usize,
}

/// Slot -> address on `NET` of the running containers of `svc`; `None` when
/// an engine does not answer.
async fn slot_addresses(raw: &Raw, svc: &str) -> Option<BTreeMap<u64, String>> {
    let filter = format!(r#"{{"label":["com.docker.swarm.service.name={svc}"]}}"#);
    let mut out = BTreeMap::new();
    for node in 1..=raw.bases.len() {
        let url = format!("{}/containers/json?filters={filter}", raw.bases[node - 1]);
        let list: serde_json::Value = raw.http.get(url).send().await.ok()?.json().await.ok()?;
        for c in list.as_array().into_iter().flatten() {
            // "svc.3.taskid": slot 3.
            let slot = c["Labels"]["com.docker.swarm.task.name"]
                .as_str()
                .and_then(|t| t.split('.').nth(1))
                .and_then(|s| s.parse::<u64>().ok());
            let ip = c["NetworkSettings"]["Networks"][NET]["IPAddress"].as_str();
            if let (Some(slot), Some(ip)) = (slot, ip.filter(|i| !i.is_empty())) {
                out.insert(slot, ip.to_owned());
            }
        }
    }
    Some(out)
}

/// Runs `scripts/lab CMD K` for every node at once; panics if one fails.
fn every_node(lab: &Lab, cmd: &str) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/lab");
    let children: Vec<_> = (1..=lab.nodes)
        .map(|k| {
            Command::new(script)
                .args([cmd, &k.to_string()])
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("scripts/lab {cmd} {k}: {e}"))
        })
        .collect();
    for (k, mut c) in children.into_iter().enumerate() {
        let ok = c.wait().is_ok_and(|s| s.success());
        assert!(ok, "scripts/lab {cmd} {}", k + 1);
    }
}

pub(crate) async fn power_cycle(
    lab: &Lab,
    kube: &Kube,
    raw: &Raw,
    parent: &str,
    n: usize,
) -> PowerCycle {
    let svc = "bench-power";
    let service = lab.service(svc, Mode::Replicated(n as u32));
    wait_running(raw, svc, n).await;
    let yaml = binding_yaml("power", svc, parent, "10.81.10.10", "10.81.10.90");
    let (ok, out) = kube.kubectl(&["apply", "-f", "-"], Some(&yaml));
    assert!(ok, "{out}");
    wait_bound(kube, "power", n, Duration::from_secs(300)).await;
    let before = slot_addresses(raw, svc).await.unwrap_or_default();
    assert_eq!(
        before.len(),
        n,
        "every slot bound before the cut: {before:?}"
    );

    let cut = Instant::now();
    every_node(lab, "node-stop");
    every_node(lab, "node-start");
    let outage = cut.elapsed();
    let returned = Instant::now();
    let mut now = BTreeMap::new();
    let back = loop {
        if let Some(seen) = slot_addresses(raw, svc).await {
            now = seen;
            if now == before {
                break Some(returned.elapsed());
            }
        }
        if returned.elapsed() > Duration::from_secs(600) {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let moved = before
        .iter()
        .filter(|(slot, ip)| now.get(*slot).is_some_and(|x| x != *ip))
        .count();
    let missing = before.keys().filter(|s| !now.contains_key(*s)).count();
    eprintln!(
        "  power cut: engines back after {:.1} s, every slot on its old address {} later; moved {moved}, missing {missing}",
        outage.as_secs_f64(),
        back.map_or("not within 600 s".to_owned(), |d| format!(
            "{:.2} s",
            d.as_secs_f64()
        )),
    );
    delete_binding(kube, "power").await;
    drop(service);
    wait_running(raw, svc, 0).await;
    PowerCycle {
        slots: n,
        outage,
        back,
        moved,
        missing,
    }
}
