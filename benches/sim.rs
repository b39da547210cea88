//! The scale benchmark: the real operator and API server against simulated
//! swarms (`mvconf-sim`, held to real engines by the conformance scenarios
//! of `tests/lab_engine.rs`), at sizes the lab cannot hold. For each size:
//! time from `kubectl apply` to every binding bound against the
//! simulator's floor (max over nodes of connects x latency), operator peak
//! RSS, objects and bytes the API server holds for it, Docker calls, and one
//! killed container's repair. `scripts/bench --sim` runs it; `--quick` is
//! the CI size. Figures are reported, never asserted.

#[path = "../tests/common/mod.rs"]
mod common;

use common::k8s::{Kube, Operator};
use common::target::Sim;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Connect latency of the simulated engines, in ms: what `Sim::start_with`
/// gives them, about one connect on the lab's engines.
const CONNECT_MS: u64 = 20;

struct Size {
    nodes: usize,
    per_node: usize,
    bindings: usize,
}

struct Row {
    size: Size,
    bound: Duration,
    floor: Duration,
    rss_peak_kib: u64,
    slices: usize,
    slice_bytes: usize,
    status_bytes: usize,
    slice_writes: f64,
    docker_calls: f64,
    repair: Duration,
    repair_calls: f64,
}

fn args() -> (bool, PathBuf) {
    let mut quick = false;
    let mut out = PathBuf::from("docs/bench");
    let mut it = std::env::args().skip(1);
    while let Some(x) = it.next() {
        match x.as_str() {
            "--quick" => quick = true,
            "--out" => out = it.next().expect("--out DIR").into(),
            _ => {} // cargo passes --bench
        }
    }
    (quick, out)
}

fn binding_yaml(i: usize, service: &str, first: u32, last: u32) -> String {
    let ip = |n: u32| std::net::Ipv4Addr::from(n).to_string();
    format!(
        "apiVersion: mvconf.io/v1alpha1\nkind: MacvlanBinding\nmetadata: {{name: b{i}}}\nspec:\n  networks:\n  - {{name: mv, subnet: 10.64.0.0/12, gateway: 10.64.0.1, parent: mv0}}\n  services:\n  - {{name: {service}, network: mv, ipPool: [\"{}-{}\"]}}\n",
        ip(first),
        ip(last)
    )
}

fn vm(pid: Option<u32>, key: &str) -> u64 {
    let Some(pid) = pid else { return 0 };
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

async fn docker_calls(op: &Operator) -> f64 {
    op.metric_sum("mvconf_docker_api_calls_total", |_| true)
        .await
        .unwrap_or(0.0)
}

/// Bytes of what `kubectl get KIND -o json` returns for the namespace.
fn bytes_of(kube: &Kube, ns: &str, kind: &str) -> (usize, usize) {
    let (ok, json) = kube.kubectl(&["-n", ns, "get", kind, "-o", "json"], None);
    assert!(ok, "{json}");
    let v: serde_json::Value = serde_json::from_str(&json).expect("list");
    let items = v["items"].as_array().cloned().unwrap_or_default();
    let sizes: Vec<usize> = items
        .iter()
        .map(|i| serde_json::to_vec(i).map(|b| b.len()).unwrap_or(0))
        .collect();
    (sizes.len(), sizes.into_iter().max().unwrap_or(0))
}

async fn run(kube: &Kube, size: Size) -> Row {
    let total = size.nodes * size.per_node;
    let per_binding = total / size.bindings;
    let ns = kube.namespace(&common::unique(&format!(
        "mvconf-sim-bench-{}x{}x{}",
        size.nodes, size.per_node, size.bindings
    )));
    // Anonymous controller; connects take CONNECT_MS, restarts 1 s.
    let sim = Sim::start_with(size.nodes, &[]);
    for i in 0..size.bindings {
        sim.control(
            "POST",
            "services",
            serde_json::json!({"name": format!("svc{i}"), "replicas": per_binding}),
        );
    }
    let op = Operator::start_with(
        &ns.name,
        "sim-bench",
        &[
            "--endpoint-kind",
            "dce",
            "--endpoint-url",
            &sim.url,
            "--resync-seconds",
            "600",
        ],
        &[("RUST_LOG", "info")],
    );
    let base = u32::from(std::net::Ipv4Addr::new(10, 64, 1, 0));
    let stride = u32::try_from(per_binding + 16).expect("stride");
    let docs: Vec<String> = (0..size.bindings)
        .map(|i| {
            let first = base + stride * u32::try_from(i).expect("i");
            binding_yaml(i, &format!("svc{i}"), first, first + stride - 1)
        })
        .collect();
    let start = Instant::now();
    let (ok, out) = kube.kubectl(
        &["-n", &ns.name, "apply", "-f", "-"],
        Some(&docs.join("---\n")),
    );
    assert!(ok, "{out}");
    let api = kube.bindings(&ns.name);
    loop {
        let list = api.list(&Default::default()).await.expect("bindings");
        let done = list
            .items
            .iter()
            .filter(|b| {
                common::e2e::ready(b)
                    && b.status
                        .as_ref()
                        .is_some_and(|s| s.bound as usize == per_binding)
            })
            .count();
        if done == size.bindings {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(3600),
            "{done} of {} bindings bound after an hour",
            size.bindings
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let bound = start.elapsed();
    let floor = Duration::from_millis(CONNECT_MS * size.per_node as u64);
    let (slices, slice_bytes) = bytes_of(kube, &ns.name, "mves");
    let (_, status_bytes) = bytes_of(kube, &ns.name, "mvb");
    let slice_writes = op
        .metric("mvconf_endpoint_slice_writes_total")
        .await
        .unwrap_or(0.0);
    let calls = docker_calls(&op).await;

    // One container killed: time until its slot is bound again with its
    // address, and the Docker calls it cost.
    let b = kube.binding(&ns.name, "b0").await;
    let victim = common::e2e::record_of(&b, 1);
    let before = docker_calls(&op).await;
    let killed = Instant::now();
    sim.control(
        "POST",
        "kill",
        serde_json::json!({"container": victim.container}),
    );
    kube.wait_binding(
        &ns.name,
        "b0",
        "slot 1 bound again",
        Duration::from_secs(600),
        |b| common::e2e::rebound(b, &victim),
    )
    .await;
    let repair = killed.elapsed();
    let repair_calls = docker_calls(&op).await - before;
    let rss_peak_kib = vm(op.pid(), "VmHWM:");
    drop(op);
    drop(sim);
    Row {
        size,
        bound,
        floor,
        rss_peak_kib,
        slices,
        slice_bytes,
        status_bytes,
        slice_writes,
        docker_calls: calls,
        repair,
        repair_calls,
    }
}

#[tokio::main]
async fn main() {
    let (quick, out) = args();
    let Some(kube) = Kube::get().await else {
        eprintln!("sim bench: the control plane is not up (scripts/envtest up)");
        return;
    };
    kube.install_crd();
    let sizes: Vec<(usize, usize, usize)> = if quick {
        vec![(10, 10, 1), (100, 10, 10)]
    } else {
        vec![(10, 100, 1), (100, 100, 10), (1000, 100, 500)]
    };
    let mut rows = Vec::new();
    for (nodes, per_node, bindings) in sizes {
        eprintln!("sim bench: {nodes} nodes x {per_node} containers in {bindings} bindings");
        let row = run(
            &kube,
            Size {
                nodes,
                per_node,
                bindings,
            },
        )
        .await;
        eprintln!(
            "  bound in {:.1} s (floor {:.1} s), repair {:.2} s",
            row.bound.as_secs_f64(),
            row.floor.as_secs_f64(),
            row.repair.as_secs_f64()
        );
        rows.push(row);
    }
    let mut m = String::new();
    let _ = writeln!(
        m,
        "## Simulated swarms (`mvconf-sim`, connect {CONNECT_MS} ms, one at a time per node)\n"
    );
    let _ = writeln!(
        m,
        "| nodes | containers | bindings | apply -> all bound | floor | ratio | operator peak RSS | slices | largest slice | largest binding | slice writes | Docker calls | kill -> bound again | its Docker calls |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for r in &rows {
        let _ = writeln!(
            m,
            "| {} | {} | {} | {:.2} s | {:.2} s | {:.1} | {:.1} MiB | {} | {} B | {} B | {} | {} | {:.2} s | {} |",
            r.size.nodes,
            r.size.nodes * r.size.per_node,
            r.size.bindings,
            r.bound.as_secs_f64(),
            r.floor.as_secs_f64(),
            r.bound.as_secs_f64() / r.floor.as_secs_f64().max(1e-9),
            r.rss_peak_kib as f64 / 1024.0,
            r.slices,
            r.slice_bytes,
            r.status_bytes,
            r.slice_writes,
            r.docker_calls,
            r.repair.as_secs_f64(),
            r.repair_calls,
        );
    }
    let _ = writeln!(
        m,
        "\nFloor: the simulator's own limit, connects per node x latency (nodes work in parallel). Goal: ratio at most 1.15; RSS under 200 MiB at 100,000 containers. The kill's repair includes swarm's 1 s restart delay.\n"
    );
    print!("{m}");
    let _ = std::fs::create_dir_all(&out);
    let _ = std::fs::write(out.join("SIM.md"), &m);
}
