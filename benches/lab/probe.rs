//! Duplicate-address detection on the bind path: what ARP probing costs a
//! service that scales up under a binding (the probe ran ahead: the goal is
//! at most 1.05 of the same run without probing), and what it costs a new
//! binding applied onto running containers (its pool was never probed: the
//! first addresses wait for one probe).

use super::{
    BIND_BASE, Operator, Raw, binding_yaml, delete_binding, operator_bind, wait_bound, wait_running,
};
use crate::common::k8s::Kube;
use crate::common::{Lab, Mode};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

#[derive(Default, Clone, Debug)]
pub(crate) struct ProbeRow {
    pub(crate) n: usize,
    /// Scale 0 -> n until every container is connected, mean of the rounds.
    pub(crate) scale_off: f64,
    pub(crate) scale_on: f64,
    /// Per container, first seen running -> connected: p50 and p99.
    pub(crate) lat_off: (f64, f64),
    pub(crate) lat_on: (f64, f64),
    /// A new binding applied onto n running containers, until all bound.
    pub(crate) cold_off: f64,
    pub(crate) cold_on: f64,
    pub(crate) rounds: usize,
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn operator(dir: &Path, tag: &str, image: Option<&str>) -> Operator {
    let log = dir.join(format!("operator-probe-{tag}.log"));
    match image {
        Some(i) => Operator::start_with(10, &log, &["--probe-image", i]),
        None => Operator::start_with(10, &log, &[]),
    }
}

/// The lab, the apiserver and the size of the rows.
struct Env<'a> {
    lab: &'a Lab,
    kube: &'a Kube,
    raw: &'a Raw,
    parent: &'a str,
    n: usize,
}

/// One scale-up under an existing binding; (all connected, latencies).
async fn scale_up(env: &Env<'_>, svc: &str, op: &Operator, probing: bool) -> (f64, Vec<f64>) {
    let Env {
        lab,
        kube,
        raw,
        parent,
        n,
    } = *env;
    let _s = lab.service(svc, Mode::Replicated(0));
    let last = std::net::Ipv4Addr::from(BIND_BASE + n as u32 + 50).to_string();
    let y = binding_yaml("probe", svc, parent, "10.81.0.10", &last);
    let (ok, out) = kube.kubectl(&["apply", "-f", "-"], Some(&y));
    assert!(ok, "{out}");
    wait_bound(kube, "probe", 0, Duration::from_secs(120)).await;
    // The same settling time either way; with probing, until the probe
    // ahead has run.
    tokio::time::sleep(Duration::from_secs(3)).await;
    if probing {
        let start = Instant::now();
        while super::metric(&op.metrics().await, "mvconf_probes_total") < 1.0 {
            assert!(start.elapsed() < Duration::from_secs(60), "no probe ran");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let t0 = Instant::now();
    lab.docker(1, &["service", "scale", "--detach", &format!("{svc}={n}")]);
    let mut seen: BTreeMap<String, Instant> = BTreeMap::new();
    let mut bound: BTreeMap<String, Instant> = BTreeMap::new();
    while bound.len() < n {
        assert!(
            t0.elapsed() < Duration::from_secs(900),
            "{svc}: {} of {n} bound",
            bound.len()
        );
        let now = Instant::now();
        for t in raw.targets(svc).await {
            seen.entry(t.id).or_insert(now);
        }
        for (_, id, ip) in raw.endpoints().await {
            if !ip.is_empty() && seen.contains_key(&id) {
                bound.entry(id).or_insert(now);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let all = bound
        .values()
        .max()
        .map(|t| t.duration_since(t0))
        .unwrap_or_default();
    let lat = bound
        .iter()
        .filter_map(|(id, b)| seen.get(id).map(|s| b.duration_since(*s).as_secs_f64()))
        .collect();
    delete_binding(kube, "probe").await;
    drop(_s);
    wait_running(raw, svc, 0).await;
    (all.as_secs_f64(), lat)
}

/// A new binding onto `n` running containers.
async fn cold(lab: &Lab, kube: &Kube, raw: &Raw, parent: &str, n: usize, svc: &str) -> f64 {
    let _s = lab.service(svc, Mode::Replicated(n as u32));
    wait_running(raw, svc, n).await;
    let last = std::net::Ipv4Addr::from(BIND_BASE + n as u32 + 50).to_string();
    let y = binding_yaml("probe-cold", svc, parent, "10.81.0.10", &last);
    let t = operator_bind(kube, &y, "probe-cold", n).await.as_secs_f64();
    delete_binding(kube, "probe-cold").await;
    raw.disconnect_all().await;
    drop(_s);
    wait_running(raw, svc, 0).await;
    t
}

/// Probing off and on, `rounds` times each, alternating; then the cold case.
pub(crate) async fn probe_rows(
    lab: &Lab,
    kube: &Kube,
    raw: &Raw,
    dir: &Path,
    parent: &str,
    n: usize,
    rounds: usize,
) -> ProbeRow {
    let image = lab.probe_image();
    let mut row = ProbeRow {
        n,
        rounds,
        ..Default::default()
    };
    let (mut lat_off, mut lat_on) = (Vec::new(), Vec::new());
    for i in 0..rounds {
        for probing in [false, true] {
            let tag = if probing { "on" } else { "off" };
            let op = operator(
                dir,
                &format!("{i}-{tag}"),
                probing.then_some(image.as_str()),
            );
            let svc = format!("bench-probe-{n}-{i}-{tag}");
            let env = Env {
                lab,
                kube,
                raw,
                parent,
                n,
            };
            let (all, lat) = scale_up(&env, &svc, &op, probing).await;
            eprintln!("  probing {tag}: scale 0 -> {n} all bound {all:.2}s");
            if probing {
                row.scale_on += all / rounds as f64;
                lat_on.extend(lat);
            } else {
                row.scale_off += all / rounds as f64;
                lat_off.extend(lat);
            }
        }
    }
    for v in [&mut lat_off, &mut lat_on] {
        v.sort_by(f64::total_cmp);
    }
    row.lat_off = (pct(&lat_off, 0.5), pct(&lat_off, 0.99));
    row.lat_on = (pct(&lat_on, 0.5), pct(&lat_on, 0.99));
    for probing in [false, true] {
        let tag = if probing { "on" } else { "off" };
        let op = operator(
            dir,
            &format!("cold-{tag}"),
            probing.then_some(image.as_str()),
        );
        let t = cold(
            lab,
            kube,
            raw,
            parent,
            n,
            &format!("bench-probe-cold-{n}-{tag}"),
        )
        .await;
        eprintln!("  probing {tag}: new binding onto {n} running, all bound {t:.2}s");
        if probing {
            row.cold_on = t;
        } else {
            row.cold_off = t;
        }
        drop(op);
    }
    row
}
