//! Planner benchmark: one `plan` pass over synthetic swarms of 10, 100 and
//! 1,000 nodes with 100 running containers each, to show how its time and
//! heap grow with the cluster. `cargo bench --bench plan [-- --quick]`
//! (`--quick`: 10 and 100 nodes only, fewer runs).
//!
//! Every node has the macvlan network `mv` (10.0.0.0/8 via mv0) as the spec
//! wants it, plus the ingress overlay. Replicated services of 200 tasks, one
//! running container per task, tasks dealt round-robin over the nodes; each
//! service has its own 256-address pool. Odd slots already hold an address
//! of their pool (kept, and remembered); even slots have none (allocated).
//!
//! Phase one times the plans with no profiler running; phase two measures
//! the heap with dhat. dhat's allocator is installed throughout (it is
//! chosen at compile time), so timed allocations still pay its idle lock.
//! stderr gets a table; stdout one JSON object per size.

use dhat::HeapStats;
use mvconf::config::validate::{Desired, Dialect, validate};
use mvconf::crd::{IngressMode, MacvlanBindingSpec, NetworkSpec, PoolEntry, ServiceSpec};
use mvconf::reconcile::plan::{Action, Remembered};
use mvconf::reconcile::{
    ContainerView, EndpointView, Key, Memory, Mode, NetView, NodeView, Plan, PlanOptions,
    RecordState, ServiceView, Slot, Snapshot, TaskState, TaskView, plan,
};
use std::collections::{HashMap, HashSet};
use std::hint::black_box;
use std::net::Ipv4Addr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

const NET: &str = "mv";
const CONTAINERS_PER_NODE: usize = 100;
const TASKS_PER_SERVICE: usize = 200;
/// Addresses per pool: every slot plus spare, as operators size them.
const POOL_SIZE: usize = 256;
const SINCE: &str = "2025-06-01T12:00:00.000000000Z";

/// One cluster size and how often to plan it.
struct Size {
    nodes: usize,
    warmup: usize,
    runs: usize,
}

fn sizes(quick: bool) -> Vec<Size> {
    let size = |nodes, warmup, runs| Size {
        nodes,
        warmup,
        runs,
    };
    if quick {
        vec![size(10, 1, 5), size(100, 1, 5)]
    } else {
        // A 100,000-container plan takes long enough that fewer runs still
        // give a stable median.
        vec![size(10, 3, 21), size(100, 3, 11), size(1_000, 2, 5)]
    }
}

/// The inputs of one plan, and what a correct plan must do with them.
struct World {
    desired: Desired,
    snapshot: Snapshot,
    memory: Memory,
    containers: usize,
    services: usize,
    /// Containers without an address: exactly the connects expected.
    unbound: usize,
}

fn world(nodes: usize) -> World {
    let containers = nodes * CONTAINERS_PER_NODE;
    let services = containers / TASKS_PER_SERVICE;
    let mut snapshot = Snapshot {
        nodes: std::sync::Arc::new((0..nodes).map(node).collect()),
        ..Default::default()
    };
    let mut memory = Memory::new();
    for s in 0..services {
        let mut sv = service(s);
        for i in 0..TASKS_PER_SERVICE {
            // Global task number: consecutive tasks land on consecutive nodes.
            let g = s * TASKS_PER_SERVICE + i;
            let slot = i as u64 + 1;
            let kept = (slot % 2 == 1).then(|| pool_ip(s, i));
            let node = &mut snapshot.nodes_mut()[g % nodes];
            let t = task(g, slot, &node.id);
            node.containers_mut().push(container(g, &t, &sv.name, kept));
            sv.tasks.push(t);
            if let Some(ip) = kept {
                let key = Key {
                    service: sv.name.clone(),
                    slot: Slot::Slot(slot),
                };
                let since = SINCE.parse().ok();
                memory.insert(
                    key,
                    Remembered {
                        ip,
                        since,
                        released: None,
                    },
                );
            }
        }
        snapshot.services.push(sv);
    }
    let unbound = containers - memory.len();
    World {
        desired: desired(services),
        snapshot,
        memory,
        containers,
        services,
        unbound,
    }
}

fn service_name(s: usize) -> String {
    format!("svc-{s:03}")
}

/// First address of service `s`'s pool: one /24 each, from 10.1.0.0 up,
/// clear of the gateway and of the subnet's network and broadcast.
fn pool_start(s: usize) -> u32 {
    u32::from(Ipv4Addr::new(10, 1, 0, 0)) + (s * POOL_SIZE) as u32
}

fn pool_ip(s: usize, i: usize) -> Ipv4Addr {
    Ipv4Addr::from(pool_start(s) + i as u32)
}

/// The spec, through the validator, as the CLI and operator get it.
fn desired(services: usize) -> Desired {
    let spec = MacvlanBindingSpec {
        networks: vec![NetworkSpec {
            arp_probe: None,
            name: NET.into(),
            subnet: "10.0.0.0/8".into(),
            gateway: "10.0.0.1".into(),
            parent: "mv0".into(),
            ip_range: None,
            reserved: vec![],
        }],
        services: (0..services)
            .map(|s| {
                let first = pool_ip(s, 0);
                let last = pool_ip(s, POOL_SIZE - 1);
                ServiceSpec {
                    name: service_name(s),
                    network: NET.into(),
                    ip_pool: vec![PoolEntry(format!("{first}-{last}"))],
                    ingress: IngressMode::Keep,
                }
            })
            .collect(),
        ..Default::default()
    };
    match validate(&spec, Dialect::Manifest) {
        Ok(d) => d,
        Err(e) => panic!("synthetic spec is invalid: {e}"),
    }
}

/// IDs as long as swarm's (25 characters) so string sizes are realistic.
fn swarm_id(kind: char, n: usize) -> String {
    format!("{kind}{n:024}")
}

/// A 64-hex-digit container ID; the mixed half makes IDs look random.
fn container_id(n: usize) -> String {
    let mixed = (n as u64 ^ 0x9e37_79b9_7f4a_7c15).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    format!("{mixed:016x}{n:048x}")
}

fn node(k: usize) -> NodeView {
    NodeView {
        id: swarm_id('n', k),
        hostname: format!("node-{k:04}"),
        // Outside 10.0.0.0/8: node addresses are excluded from pools.
        addr: format!("172.16.{}.{}", k / 250, k % 250 + 1),
        state: "ready".into(),
        problem: None,
        networks: vec![mv_net(), ingress_net()],
        containers: Vec::with_capacity(CONTAINERS_PER_NODE).into(),
    }
}

/// The macvlan network exactly as the spec asks, so no node needs a create.
fn mv_net() -> NetView {
    NetView {
        id: container_id(usize::MAX),
        name: NET.into(),
        driver: "macvlan".into(),
        ingress: false,
        subnet: Some("10.0.0.0/8".into()),
        gateway: Some("10.0.0.1".into()),
        ip_range: None,
        parent: Some("mv0".into()),
        managed: true,
        owner: None,
    }
}

fn ingress_net() -> NetView {
    NetView {
        id: swarm_id('i', 0),
        name: "ingress".into(),
        driver: "overlay".into(),
        ingress: true,
        subnet: Some("100.64.0.0/10".into()),
        gateway: Some("100.64.0.1".into()),
        ..Default::default()
    }
}

fn service(s: usize) -> ServiceView {
    ServiceView {
        id: swarm_id('s', s),
        name: service_name(s),
        global: false,
        uses_ingress: true,
        tasks: Vec::with_capacity(TASKS_PER_SERVICE),
        owner: None,
    }
}

fn task(g: usize, slot: u64, node_id: &str) -> TaskView {
    TaskView {
        id: swarm_id('t', g),
        slot: Some(slot),
        node_id: node_id.to_owned(),
        wanted: true,
        state: TaskState::Running,
        container: Some(container_id(g)),
        timestamp: SINCE.parse().ok(),
    }
}

/// Task `g`'s running container: on ingress, and on `mv` when `ip` is set.
fn container(g: usize, t: &TaskView, service: &str, ip: Option<Ipv4Addr>) -> ContainerView {
    let mut endpoints = vec![EndpointView {
        network: "ingress".into(),
        ip: Some(Ipv4Addr::from(
            u32::from(Ipv4Addr::new(100, 64, 1, 0)) + g as u32,
        )),
        requested: None,
    }];
    if let Some(ip) = ip {
        endpoints.push(EndpointView {
            network: NET.into(),
            ip: Some(ip),
            requested: Some(ip),
        });
    }
    ContainerView {
        id: t.container.clone().unwrap_or_default(),
        running: true,
        service: Some(service.to_owned()),
        task: Some(t.id.clone()),
        endpoints,
    }
}

fn run(w: &World, options: &PlanOptions) -> Plan {
    plan(
        black_box(&w.desired),
        black_box(&w.snapshot),
        black_box(&w.memory),
        Mode::Up,
        options,
    )
}

/// Whether the plan is the one this world calls for; the number of
/// connects when it is. A fast wrong planner would make the numbers moot.
fn check(w: &World, p: &Plan) -> Result<usize, String> {
    if let Some(problem) = p.problems.first() {
        return Err(format!("unexpected problem: {problem}"));
    }
    let pools: HashMap<&str, _> = w
        .desired
        .services
        .iter()
        .map(|s| (s.name.as_str(), &s.pool))
        .collect();
    let mut connects = 0;
    for a in &p.actions {
        let Action::Connect { key, ip, .. } = a else {
            return Err(format!("unexpected action: {a}"));
        };
        if !pools
            .get(key.service.as_str())
            .is_some_and(|p| p.contains(*ip))
        {
            return Err(format!("{key} connected with {ip}, outside its pool"));
        }
        connects += 1;
    }
    if connects != w.unbound {
        return Err(format!("{connects} connects, want {}", w.unbound));
    }
    check_records(w, p)?;
    Ok(connects)
}

/// Every slot bound, each to an address no other slot has.
fn check_records(w: &World, p: &Plan) -> Result<(), String> {
    if p.records.len() != w.containers {
        let n = p.records.len();
        return Err(format!("{n} records, want {}", w.containers));
    }
    let mut seen = HashSet::with_capacity(p.records.len());
    for r in &p.records {
        match (r.state, r.ip) {
            (RecordState::Bound, Some(ip)) if seen.insert(ip) => {}
            (RecordState::Bound, Some(ip)) => return Err(format!("{ip} given twice")),
            (state, _) => return Err(format!("{} is {state:?}", r.key)),
        }
    }
    Ok(())
}

/// Wall time of each measured plan; warm-ups fill caches and the allocator.
fn time_plans(w: &World, size: &Size, options: &PlanOptions) -> Vec<Duration> {
    for _ in 0..size.warmup {
        black_box(run(w, options));
    }
    (0..size.runs)
        .map(|_| {
            let start = Instant::now();
            let p = run(w, options);
            let took = start.elapsed();
            // Dropping the plan is not part of planning.
            drop(black_box(p));
            took
        })
        .collect()
}

/// (median, min) in milliseconds.
fn median_min(times: &mut [Duration]) -> (f64, f64) {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let n = times.len();
    let median = if n % 2 == 1 {
        ms(times[n / 2])
    } else {
        (ms(times[n / 2 - 1]) + ms(times[n / 2])) / 2.0
    };
    (median, ms(times[0]))
}

/// Heap bytes of one closure: left allocated when it returns, its peak
/// above the starting point, and everything it allocated along the way.
struct Heap {
    retained: u64,
    peak: u64,
    total: u64,
}

fn heap_of<R>(f: impl FnOnce() -> R) -> (R, Heap) {
    // A fresh profiler per closure, because max_bytes is the peak since the
    // profiler started. dhat 0.3 allows a new one once the last is dropped;
    // blocks allocated before it started are invisible to it.
    let profiler = dhat::Profiler::builder().testing().build();
    let start = HeapStats::get();
    let out = f();
    let end = HeapStats::get();
    drop(profiler);
    let heap = Heap {
        retained: (end.curr_bytes - start.curr_bytes) as u64,
        peak: (end.max_bytes - start.curr_bytes) as u64,
        total: end.total_bytes - start.total_bytes,
    };
    (out, heap)
}

/// What one size measured.
struct Row {
    nodes: usize,
    containers: usize,
    services: usize,
    runs: usize,
    median_ms: f64,
    min_ms: f64,
    snapshot: Heap,
    plan: Heap,
    connects: usize,
}

fn measure(size: &Size) -> Result<Row, String> {
    let w = world(size.nodes);
    let options = PlanOptions::default();
    let connects = check(&w, &run(&w, &options))?;

    let mut times = time_plans(&w, size, &options);
    let (median_ms, min_ms) = median_min(&mut times);

    // A clone has no spare capacity: the snapshot's own size, as observe
    // would hold it.
    let (copy, snapshot) = heap_of(|| w.snapshot.clone());
    drop(copy);
    let (p, plan) = heap_of(|| run(&w, &options));
    drop(p);
    Ok(Row {
        nodes: size.nodes,
        containers: w.containers,
        services: w.services,
        runs: size.runs,
        median_ms,
        min_ms,
        snapshot,
        plan,
        connects,
    })
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn print_header() {
    eprintln!("plan (Mode::Up), timed with dhat's allocator installed but no profiler running");
    eprintln!(
        "{:>6} {:>10} {:>8} {:>5} {:>11} {:>11} {:>10} {:>10} {:>10} {:>10} {:>11} {:>8}",
        "nodes",
        "containers",
        "services",
        "runs",
        "median ms",
        "min ms",
        "us/contr",
        "snap MiB",
        "peak MiB",
        "alloc MiB",
        "result MiB",
        "connects"
    );
}

fn print_row(r: &Row) {
    eprintln!(
        "{:>6} {:>10} {:>8} {:>5} {:>11.3} {:>11.3} {:>10.3} {:>10.1} {:>10.1} {:>10.1} {:>11.1} {:>8}",
        r.nodes,
        r.containers,
        r.services,
        r.runs,
        r.median_ms,
        r.min_ms,
        r.median_ms * 1e3 / r.containers as f64,
        mib(r.snapshot.retained),
        mib(r.plan.peak),
        mib(r.plan.total),
        mib(r.plan.retained),
        r.connects
    );
    // Written by hand to keep the keys in a reading order (serde_json sorts
    // them); every value is a number or a bool, so nothing needs escaping.
    let json = [
        r#"{"bench":"plan""#.to_owned(),
        format!(r#""nodes":{}"#, r.nodes),
        format!(r#""containers":{}"#, r.containers),
        format!(r#""services":{}"#, r.services),
        format!(r#""runs":{}"#, r.runs),
        format!(r#""plan_ms_median":{:.3}"#, r.median_ms),
        format!(r#""plan_ms_min":{:.3}"#, r.min_ms),
        format!(r#""snapshot_bytes":{}"#, r.snapshot.retained),
        format!(r#""plan_peak_bytes":{}"#, r.plan.peak),
        format!(r#""plan_total_alloc_bytes":{}"#, r.plan.total),
        format!(r#""plan_result_bytes":{}"#, r.plan.retained),
        format!(r#""connects":{}"#, r.connects),
        r#""timed_with_profiler":false}"#.to_owned(),
    ]
    .join(",");
    println!("{json}");
}

fn main() -> ExitCode {
    // Cargo passes `--bench` and maybe a filter; only `--quick` means anything.
    let quick = std::env::args().any(|a| a == "--quick");
    print_header();
    for size in sizes(quick) {
        match measure(&size) {
            Ok(row) => print_row(&row),
            Err(e) => {
                eprintln!("plan for {} nodes is wrong: {e}", size.nodes);
                return ExitCode::FAILURE;
            }
        }
    }
    let nodes = if quick { 100 } else { 1_000 };
    one_binding(nodes, if quick { 5 } else { 11 });
    ExitCode::SUCCESS
}

/// One binding of one service (200 containers) planned over a whole swarm
/// of `nodes` x 100 containers: what every pass pays on a swarm shared by
/// many bindings, since a pass reads and plans the whole swarm.
fn one_binding(nodes: usize, runs: usize) {
    let mut w = world(nodes);
    let one = desired(1);
    w.snapshot.services.truncate(1);
    let options = PlanOptions::default();
    let go = || {
        plan(
            black_box(&one),
            black_box(&w.snapshot),
            black_box(&w.memory),
            Mode::Up,
            &options,
        )
    };
    black_box(go());
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            let p = go();
            let took = start.elapsed();
            drop(black_box(p));
            took
        })
        .collect();
    let (median, min) = median_min(&mut times);
    eprintln!(
        "one binding of {TASKS_PER_SERVICE} containers over {} containers: median {median:.3} ms, min {min:.3} ms",
        w.containers
    );
    println!(
        r#"{{"bench":"plan_one_binding","nodes":{nodes},"containers":{},"binding_containers":{TASKS_PER_SERVICE},"runs":{runs},"plan_ms_median":{median:.3},"plan_ms_min":{min:.3}}}"#,
        w.containers
    );
}
