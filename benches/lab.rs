//! The lab benchmark: bind time against the hand-made baseline and the raw
//! HTTP floor, steady-state cost, drift-repair latency and footprint, all on
//! the real 3-node lab and apiserver, in one run. `scripts/bench [--quick]`
//! starts what it needs and runs this; it writes `docs/bench/RESULTS.md`.
//!
//! Figures are reported, never asserted: these machines are shared.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "lab/power.rs"]
mod power;
#[path = "lab/probe.rs"]
mod probe;

use common::k8s::Kube;
use common::{Lab, Mode};
use mvconf::crd::RecordState;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const NET: &str = "bench-net";
const SUBNET: &str = "10.81.0.0/16";
const GATEWAY: &str = "10.81.0.1";
/// A namespace per run: envtest runs no namespace controller, so a deleted
/// namespace never goes away.
static NS_NAME: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("mvconf-bench-{}", std::process::id()));

fn ns() -> &'static str {
    NS_NAME.as_str()
}

struct Args {
    quick: bool,
    out: PathBuf,
    plan: Option<PathBuf>,
    criterion: Option<PathBuf>,
    /// `--only power|bind|footprint`: the power cut, one 30-container bind
    /// row, or the operator's RSS with 300 containers bound (30 with
    /// `--quick`), alone (while working on them; `MVCONF_BENCH_OPERATOR_BIN`
    /// runs another build of the operator).
    only: Option<String>,
}

fn args() -> Args {
    let mut a = Args {
        quick: false,
        out: PathBuf::from("docs/bench"),
        plan: None,
        criterion: None,
        only: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(x) = it.next() {
        match x.as_str() {
            "--quick" => a.quick = true,
            "--out" => a.out = it.next().expect("--out DIR").into(),
            "--plan" => a.plan = it.next().map(Into::into),
            "--criterion" => a.criterion = it.next().map(Into::into),
            "--only" => a.only = it.next(),
            _ => {} // cargo passes --bench
        }
    }
    a
}

/// A running container of the benchmark service: node (1-based) and ID.
#[derive(Clone, Debug)]
struct Target {
    node: usize,
    id: String,
}

/// Raw Docker Engine API on each node's TCP socket: the floor's client,
/// and the benchmark's own eyes.
struct Raw {
    http: reqwest::Client,
    bases: Vec<String>,
}

impl Raw {
    fn new(lab: &Lab) -> Raw {
        Raw {
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(8)
                .build()
                .expect("http client"),
            bases: lab
                .node_urls
                .iter()
                .map(|u| u.replacen("tcp://", "http://", 1))
                .collect(),
        }
    }

    /// The same, through other URLs (the latency relays).
    fn with_bases(&self, bases: Vec<String>) -> Raw {
        Raw {
            http: self.http.clone(),
            bases,
        }
    }

    async fn json(&self, node: usize, path: &str) -> serde_json::Value {
        self.http
            .get(format!("{}{path}", self.bases[node - 1]))
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .expect("docker GET")
            .json()
            .await
            .expect("docker JSON")
    }

    async fn post(&self, node: usize, path: String, body: serde_json::Value) -> u16 {
        self.http
            .post(format!("{}{path}", self.bases[node - 1]))
            .json(&body)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    }

    /// Running containers of `svc` on every node.
    async fn targets(&self, svc: &str) -> Vec<Target> {
        let filter = format!(r#"{{"label":["com.docker.swarm.service.name={svc}"]}}"#);
        let mut out = Vec::new();
        for node in 1..=self.bases.len() {
            let list = self
                .json(node, &format!("/containers/json?filters={filter}"))
                .await;
            for c in list.as_array().into_iter().flatten() {
                if let Some(id) = c["Id"].as_str() {
                    out.push(Target {
                        node,
                        id: id.to_owned(),
                    });
                }
            }
        }
        out
    }

    /// (container ID, address) on `NET`, every node.
    async fn endpoints(&self) -> Vec<(usize, String, String)> {
        let mut out = Vec::new();
        for node in 1..=self.bases.len() {
            let Ok(r) = self
                .http
                .get(format!("{}/networks/{NET}", self.bases[node - 1]))
                .send()
                .await
            else {
                continue;
            };
            let Ok(v) = r.json::<serde_json::Value>().await else {
                continue;
            };
            for (id, c) in v["Containers"].as_object().into_iter().flatten() {
                // "ep-..." keys are endpoints whose container is still being
                // set up or torn down.
                if id.starts_with("ep-") {
                    continue;
                }
                let ip = c["IPv4Address"].as_str().unwrap_or_default();
                let ip = ip.split('/').next().unwrap_or_default().to_owned();
                out.push((node, id.clone(), ip));
            }
        }
        out
    }

    /// Every container off `NET`, all nodes at once (not timed).
    async fn disconnect_all(&self) {
        let eps = self.endpoints().await;
        let calls = eps.iter().map(|(node, id, _)| {
            self.post(
                *node,
                format!("/networks/{NET}/disconnect"),
                serde_json::json!({"Container": id, "Force": true}),
            )
        });
        futures::future::join_all(calls).await;
    }

    /// The floor: the connects and nothing else, every node at once and
    /// `per_node` at a time within a node. An error names the first connect
    /// the engine refused (a task swarm moved under load leaves a 404).
    async fn connect_all(
        &self,
        targets: &[Target],
        ips: &[String],
        per_node: usize,
    ) -> Result<Duration, String> {
        let mut by_node: BTreeMap<usize, Vec<(String, String)>> = BTreeMap::new();
        for (t, ip) in targets.iter().zip(ips) {
            by_node
                .entry(t.node)
                .or_default()
                .push((t.id.clone(), ip.clone()));
        }
        let start = Instant::now();
        let nodes = by_node.into_iter().map(|(node, work)| async move {
            use futures::StreamExt;
            futures::stream::iter(work)
                .map(|(id, ip)| async move {
                    let code = self
                        .post(
                            node,
                            format!("/networks/{NET}/connect"),
                            serde_json::json!({"Container": id, "EndpointConfig": {"IPAMConfig": {"IPv4Address": ip}}}),
                        )
                        .await;
                    (code == 200)
                        .then_some(())
                        .ok_or_else(|| format!("connect {id} {ip} on node{node}: HTTP {code}"))
                })
                .buffer_unordered(per_node)
                .collect::<Vec<Result<(), String>>>()
                .await
        });
        let results = futures::future::join_all(nodes).await;
        let elapsed = start.elapsed();
        results
            .into_iter()
            .flatten()
            .collect::<Result<(), String>>()?;
        Ok(elapsed)
    }
}

/// Runs one timed measurement over the service's containers; when swarm
/// replaced one of them meanwhile (a node missing heartbeats on a loaded
/// machine), lists them again and measures again, up to three times.
async fn measure<F, Fut>(raw: &Raw, svc: &str, targets: &mut Vec<Target>, mut run: F) -> Duration
where
    F: FnMut(Vec<Target>) -> Fut,
    Fut: std::future::Future<Output = Result<Duration, String>>,
{
    for attempt in 1..=3 {
        match run(targets.clone()).await {
            Ok(t) => return t,
            Err(e) => {
                eprintln!("  bench: attempt {attempt}: {e}; listing the containers again");
                raw.disconnect_all().await;
                *targets = wait_running(raw, svc, targets.len()).await;
            }
        }
    }
    panic!("{svc}: three attempts failed, see above");
}

fn ips(n: usize, base: u32) -> Vec<String> {
    (0..n as u32)
        .map(|i| std::net::Ipv4Addr::from(base + i).to_string())
        .collect()
}

/// 10.81.0.10 onwards: the pool of the bind-time runs.
const BIND_BASE: u32 = 0x0A51_000A;

fn docker_cli_sequential(
    hosts: &[String],
    targets: &[Target],
    ips: &[String],
) -> Result<Duration, String> {
    let start = Instant::now();
    for (t, ip) in targets.iter().zip(ips) {
        let out = Command::new("docker")
            .args([
                "-H",
                &hosts[t.node - 1],
                "network",
                "connect",
                "--ip",
                ip,
                NET,
                &t.id,
            ])
            .output()
            .expect("docker");
        if !out.status.success() {
            return Err(format!(
                "docker network connect {ip} {}: {}",
                t.id,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    Ok(start.elapsed())
}

/// A TCP relay that delays every byte by `delay` in each direction, as a
/// controller in front of remote nodes does (this kernel has no netem).
async fn latency_relay(target: String, delay: Duration) -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("relay listen");
    let port = l.local_addr().expect("relay addr").port();
    tokio::spawn(async move {
        while let Ok((c, _)) = l.accept().await {
            let target = target.clone();
            tokio::spawn(async move {
                let Ok(u) = tokio::net::TcpStream::connect(&target).await else {
                    return;
                };
                let _ = c.set_nodelay(true);
                let _ = u.set_nodelay(true);
                let (cr, cw) = c.into_split();
                let (ur, uw) = u.into_split();
                tokio::join!(pump(cr, uw, delay), pump(ur, cw, delay));
            });
        }
    });
    port
}

/// Copies `r` to `w`, each chunk written `delay` after it was read.
async fn pump(
    mut r: tokio::net::tcp::OwnedReadHalf,
    mut w: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    let reader = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx
                        .send((tokio::time::Instant::now() + delay, buf[..n].to_vec()))
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
    };
    let writer = async move {
        while let Some((due, bytes)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if w.write_all(&bytes).await.is_err() {
                break;
            }
        }
        let _ = w.shutdown().await;
    };
    tokio::join!(reader, writer);
}

/// How the bind-time run reaches the engines.
struct Via {
    /// http:// base per node, for the floor.
    bases: Vec<String>,
    /// tcp:// per node, for the docker CLI.
    hosts: Vec<String>,
    /// A MacvlanBinding `endpoint:` block, or none for the operator's default.
    endpoint: Option<String>,
}

impl Via {
    fn direct(lab: &Lab) -> Via {
        Via {
            bases: lab
                .node_urls
                .iter()
                .map(|u| u.replacen("tcp://", "http://", 1))
                .collect(),
            hosts: lab.node_urls.clone(),
            endpoint: None,
        }
    }

    async fn delayed(lab: &Lab, delay: Duration) -> Via {
        let mut ports = Vec::new();
        for u in &lab.node_urls {
            ports.push(latency_relay(u.replacen("tcp://", "", 1), delay).await);
        }
        let nodes: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, p)| format!("node{}: \"tcp://127.0.0.1:{p}\"", i + 1))
            .collect();
        Via {
            bases: ports
                .iter()
                .map(|p| format!("http://127.0.0.1:{p}"))
                .collect(),
            hosts: ports
                .iter()
                .map(|p| format!("tcp://127.0.0.1:{p}"))
                .collect(),
            endpoint: Some(format!(
                "  endpoint: {{kind: Docker, url: \"tcp://127.0.0.1:{}\", nodeUrls: {{{}}}}}\n",
                ports[0],
                nodes.join(", ")
            )),
        }
    }
}

fn conf_json(dir: &Path, svc: &str, n: usize, parent: &str) -> PathBuf {
    let last = std::net::Ipv4Addr::from(BIND_BASE + n as u32 + 50);
    let p = dir.join("conf.json");
    let body = serde_json::json!({
        "networks": [{"name": NET, "subnet": SUBNET, "gateway": GATEWAY, "parent": parent}],
        "services": [{"name": svc, "network": NET, "ip_pool": [format!("10.81.0.10-{last}")]}],
    });
    std::fs::write(&p, body.to_string()).expect("write conf.json");
    p
}

fn mvconf_cli(conf: &Path, cmd: &str) -> Duration {
    let start = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_mvconf"))
        .arg("-f")
        .arg(conf)
        .arg(cmd)
        .env("RUST_LOG", "warn")
        .env_remove("MVCONF_DCE_URL")
        .output()
        .expect("run mvconf");
    let took = start.elapsed();
    assert!(
        out.status.success(),
        "mvconf {cmd}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

/// The operator binary at info level, as deployed.
struct Operator {
    child: Child,
    port: u16,
}

impl Operator {
    fn start(resync: u64, log: &Path) -> Operator {
        Self::start_with(resync, log, &[])
    }

    fn start_with(resync: u64, log: &Path, extra: &[&str]) -> Operator {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let log = std::fs::File::create(log).expect("operator log");
        let bin = std::env::var("MVCONF_BENCH_OPERATOR_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_mvconf").to_owned());
        let child = Command::new(bin)
            .args([
                "operator",
                "--namespace",
                ns(),
                "--pod-namespace",
                ns(),
                "--lease-name",
                "bench",
                "--metrics-addr",
                &format!("127.0.0.1:{port}"),
                "--resync-seconds",
                &resync.to_string(),
            ])
            .args(extra)
            .env(
                "RUST_LOG",
                std::env::var("MVCONF_BENCH_RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .env("POD_NAME", "bench")
            // As the chart and the image run it.
            .env("MIMALLOC_PURGE_DELAY", "0")
            .env("MIMALLOC_ARENA_EAGER_COMMIT", "0")
            .env("MIMALLOC_EAGER_COMMIT", "0")
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start the operator");
        Operator { child, port }
    }

    fn proc(&self, file: &str) -> String {
        std::fs::read_to_string(format!("/proc/{}/{file}", self.child.id())).unwrap_or_default()
    }

    fn rss_kib(&self) -> u64 {
        self.proc("status")
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// utime + stime, in clock ticks.
    fn cpu_ticks(&self) -> u64 {
        let stat = self.proc("stat");
        let after = stat.rsplit(')').next().unwrap_or_default();
        let f: Vec<&str> = after.split_whitespace().collect();
        let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        n(11) + n(12)
    }

    async fn metrics(&self) -> String {
        common::k8s::http_get(self.port, "/metrics")
            .await
            .unwrap_or_default()
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The sum of a metric's samples in a /metrics text.
fn metric(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

/// (total, mutating) Docker API calls, and reconciles, from /metrics.
fn counters(metrics: &str) -> (f64, f64, f64) {
    let mut total = 0.0;
    let mut mutating = 0.0;
    let mut reconciles = 0.0;
    for l in metrics.lines() {
        let v: f64 = l
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        if l.starts_with("mvconf_docker_api_calls_total{") {
            total += v;
            if !(l.contains("verb=\"GET\"") || l.contains("verb=\"HEAD\"")) {
                mutating += v;
            }
        } else if l.starts_with("mvconf_reconciles_total") {
            reconciles += v;
        }
    }
    (total, mutating, reconciles)
}

fn binding_yaml(name: &str, svc: &str, parent: &str, first: &str, last: &str) -> String {
    binding_yaml_via(name, svc, parent, first, last, "")
}

fn binding_yaml_via(
    name: &str,
    svc: &str,
    parent: &str,
    first: &str,
    last: &str,
    endpoint: &str,
) -> String {
    let ns = ns();
    format!(
        "apiVersion: mvconf.io/v1alpha1\nkind: MacvlanBinding\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n{endpoint}  deletionPolicy: Disconnect\n  networks:\n  - {{name: {NET}, subnet: {SUBNET}, gateway: {GATEWAY}, parent: {parent}}}\n  services:\n  - {{name: {svc}, network: {NET}, ipPool: [\"{first}-{last}\"]}}\n"
    )
}

async fn wait_bound(kube: &Kube, name: &str, n: usize, timeout: Duration) -> Duration {
    let start = Instant::now();
    let api = kube.bindings(ns());
    loop {
        if let Ok(b) = api.get(name).await {
            let done = b.status.as_ref().is_some_and(|s| {
                s.bound as usize == n
                    && s.observed_generation == b.metadata.generation
                    && s.conditions
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.status == "True")
            });
            if done {
                return start.elapsed();
            }
        }
        assert!(
            start.elapsed() < timeout,
            "{name}: {n} not bound in {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The clock starts as the manifest is applied (server-side apply, from a
/// client already running, as a GitOps controller applies it: `kubectl`'s
/// own start-up and discovery, about 0.1 s here, are not the operator's).
async fn operator_bind(kube: &Kube, yaml: &str, name: &str, n: usize) -> Duration {
    use kube::api::{Patch, PatchParams};
    let b: mvconf::crd::MacvlanBinding = serde_saphyr::from_str(yaml).expect("binding manifest");
    let params = PatchParams::apply("mvconf-bench").force();
    let start = Instant::now();
    kube.bindings(ns())
        .patch(name, &params, &Patch::Apply(&b))
        .await
        .expect("apply the binding");
    wait_bound(kube, name, n, Duration::from_secs(900)).await;
    start.elapsed()
}

async fn delete_binding(kube: &Kube, name: &str) {
    kube.delete(ns(), name).await;
    kube.wait_gone(ns(), name, Duration::from_secs(300)).await;
}

async fn wait_running(raw: &Raw, svc: &str, n: usize) -> Vec<Target> {
    let start = Instant::now();
    loop {
        let t = raw.targets(svc).await;
        if t.len() == n {
            return t;
        }
        assert!(
            start.elapsed() < Duration::from_secs(900),
            "{svc}: {} of {n} running",
            t.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Removes `NET` from node `k`. Containers just removed can hold their
/// endpoints a little longer; endpoints left by a crash in the middle of a
/// connect never go ("has active endpoints", shown in no container list), and
/// only a restart of that engine clears them.
fn clear_network(lab: &Lab, k: usize) {
    for _ in 0..15 {
        lab.remove_network(k, NET);
        let _ = lab.try_docker(k, &["network", "rm", NET]);
        if !lab.try_docker(k, &["network", "inspect", NET]) {
            return;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    eprintln!("bench: node{k} holds a stale {NET}; restarting its engine");
    for cmd in ["node-stop", "node-start"] {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/lab");
        let ok = Command::new(script)
            .args([cmd, &k.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "scripts/lab {cmd} {k}");
    }
    lab.remove_network(k, NET);
    let _ = lab.try_docker(k, &["network", "rm", NET]);
    assert!(
        !lab.try_docker(k, &["network", "inspect", NET]),
        "node{k}: {NET} cannot be removed"
    );
}

/// Removes `NET` from every node: the parent is left free for the tests
/// that use it.
fn leave_parent(lab: &Lab) {
    for k in 1..=lab.nodes {
        clear_network(lab, k);
    }
}

/// One bind-time row: seconds for each way of binding `n` containers.
#[derive(Default, Clone)]
struct BindRow {
    n: usize,
    netem: bool,
    operator: f64,
    cli: f64,
    baseline: f64,
    floor: f64,
    floor_per_node: usize,
}

async fn bind_row(
    lab: &Lab,
    kube: &Kube,
    raw: &Raw,
    dir: &Path,
    n: usize,
    via: &Via,
    parent: &str,
) -> BindRow {
    // A name of its own per row: a service of the same name just removed may
    // still have containers shutting down, and they carry the same label.
    let path = if via.endpoint.is_some() {
        "relay"
    } else {
        "direct"
    };
    let svc = format!("bench-bind-{n}-{path}");
    let _s = lab.service(&svc, Mode::Replicated(n as u32));
    let mut targets = wait_running(raw, &svc, n).await;
    let pool = ips(n, BIND_BASE);
    let last = std::net::Ipv4Addr::from(BIND_BASE + n as u32 + 50).to_string();
    let mut row = BindRow {
        n,
        netem: via.endpoint.is_some(),
        ..Default::default()
    };
    raw.disconnect_all().await;

    // Floor: the best schedule the engines allow.
    let floor = raw.with_bases(via.bases.clone());
    let mut best = f64::MAX;
    for per_node in [1, 2, 4, 8] {
        let t = measure(raw, &svc, &mut targets, |t| {
            let (floor, pool) = (&floor, &pool);
            async move { floor.connect_all(&t, pool, per_node).await }
        })
        .await
        .as_secs_f64();
        eprintln!("  floor n={n} per-node={per_node}: {t:.2}s");
        if t < best {
            best = t;
            row.floor_per_node = per_node;
        }
        raw.disconnect_all().await;
    }
    row.floor = best;

    // Baseline: one docker CLI connect after another.
    row.baseline = measure(raw, &svc, &mut targets, |t| {
        let (hosts, pool) = (&via.hosts, &pool);
        async move { docker_cli_sequential(hosts, &t, pool) }
    })
    .await
    .as_secs_f64();
    eprintln!("  baseline n={n}: {:.2}s", row.baseline);
    raw.disconnect_all().await;

    // mvconf up, the CLI: the user's conf.json, or a manifest naming the
    // relayed endpoint.
    let name = format!("bind-{n}");
    let endpoint = via.endpoint.clone().unwrap_or_default();
    let yaml = binding_yaml_via(&name, &svc, parent, "10.81.0.10", &last, &endpoint);
    let file = if via.endpoint.is_some() {
        let f = dir.join("binding.yaml");
        std::fs::write(&f, &yaml).expect("write binding.yaml");
        f
    } else {
        conf_json(dir, &svc, n, parent)
    };
    row.cli = mvconf_cli(&file, "up").as_secs_f64();
    eprintln!("  mvconf up n={n}: {:.2}s", row.cli);
    raw.disconnect_all().await;

    // The operator: applied until the status says all bound.
    row.operator = operator_bind(kube, &yaml, &name, n).await.as_secs_f64();
    eprintln!("  operator n={n}: {:.2}s", row.operator);
    delete_binding(kube, &name).await;
    raw.disconnect_all().await;
    // The next measurement starts on engines that are done tearing this
    // service down.
    drop(_s);
    wait_running(raw, &svc, 0).await;
    row
}

struct Steady {
    containers: usize,
    calls_per_pass: f64,
    mutating_per_pass: f64,
}

/// Docker API calls per periodic resync with nothing changing.
async fn steady(op: &Operator, containers: usize, resync: u64) -> Steady {
    // Let the pass that bound them and its echoes settle.
    tokio::time::sleep(Duration::from_secs(resync + 2)).await;
    let (c0, m0, r0) = counters(&op.metrics().await);
    let start = Instant::now();
    let (c1, m1, r1) = loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = counters(&op.metrics().await);
        if now.2 >= r0 + 2.0 || start.elapsed() > Duration::from_secs(resync * 4) {
            break now;
        }
    };
    let passes = (r1 - r0).max(1.0);
    Steady {
        containers,
        calls_per_pass: (c1 - c0) / passes,
        mutating_per_pass: (m1 - m0) / passes,
    }
}

fn epoch_nanos(t: SystemTime) -> i128 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

struct Drift {
    start_to_bound: Vec<f64>,
    kill_to_bound: Vec<f64>,
    kill_to_start: Vec<f64>,
}

/// Kills a bound container `kills` times; measures until its replacement
/// holds the slot's old address.
async fn drift(lab: &Lab, kube: &Kube, raw: &Raw, parent: &str, kills: usize) -> Drift {
    let svc = "bench-drift";
    let _s = lab.service(svc, Mode::Replicated(6));
    wait_running(raw, svc, 6).await;
    let yaml = binding_yaml("drift", svc, parent, "10.81.8.10", "10.81.8.40");
    let (ok, out) = kube.kubectl(&["apply", "-f", "-"], Some(&yaml));
    assert!(ok, "{out}");
    wait_bound(kube, "drift", 6, Duration::from_secs(120)).await;
    let mut d = Drift {
        start_to_bound: vec![],
        kill_to_bound: vec![],
        kill_to_start: vec![],
    };
    for i in 0..kills {
        // The records live in the binding's MacvlanEndpointSlices.
        let b = kube.binding(ns(), "drift").await;
        let recs: Vec<_> = b
            .status
            .as_ref()
            .map(|s| {
                s.containers
                    .iter()
                    .filter(|r| r.state == RecordState::Bound)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        let r = &recs[i % recs.len()];
        let ip = r.ip.clone().expect("bound record has an IP");
        let eps = raw.endpoints().await;
        let (node, victim) = eps
            .iter()
            .find(|(_, _, a)| *a == ip)
            .map(|(n, id, _)| (*n, id.clone()))
            .expect("the victim on the network");
        let killed = SystemTime::now();
        lab.docker(node, &["kill", &victim]);
        let (bound_at, node2, new_id) = loop {
            let now_eps = raw.endpoints().await;
            if let Some((n2, id, _)) = now_eps.iter().find(|(_, id, a)| *a == ip && *id != victim) {
                break (SystemTime::now(), *n2, id.clone());
            }
            assert!(
                killed.elapsed().unwrap_or_default() < Duration::from_secs(120),
                "{ip} never came back"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let c = raw.json(node2, &format!("/containers/{new_id}/json")).await;
        let started: jiff::Timestamp = c["State"]["StartedAt"]
            .as_str()
            .unwrap_or_default()
            .parse()
            .expect("StartedAt");
        let started = started.as_nanosecond();
        let s = |a: i128, b: i128| (a - b) as f64 / 1e9;
        d.start_to_bound
            .push(s(epoch_nanos(bound_at), started).max(0.0));
        d.kill_to_bound
            .push(s(epoch_nanos(bound_at), epoch_nanos(killed)));
        d.kill_to_start.push(s(started, epoch_nanos(killed)));
        eprintln!(
            "  kill {}/{kills}: start->bound {:.3}s, kill->bound {:.3}s",
            i + 1,
            d.start_to_bound[i],
            d.kill_to_bound[i]
        );
        wait_bound(kube, "drift", 6, Duration::from_secs(120)).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    delete_binding(kube, "drift").await;
    d
}

fn pct(v: &[f64], p: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        return f64::NAN;
    }
    let i = ((p * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1;
    s[i]
}

fn machine() -> String {
    let sh = |c: &str| {
        Command::new("sh")
            .args(["-c", c])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    format!(
        "{} cores ({}), {} RAM, Linux {}, {}, {}",
        sh("nproc"),
        sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'"),
        sh("free -g | awk '/Mem:/ {print $2 \" GiB\"}'"),
        sh("uname -r"),
        sh("dockerd --version"),
        sh("date -u +%Y-%m-%dT%H:%MZ"),
    )
}

#[tokio::main]
async fn main() {
    let a = args();
    let lab = Lab::get().expect("the lab: scripts/lab up; eval \"$(scripts/lab env)\"");
    let kube = Kube::get()
        .await
        .expect("the apiserver: scripts/envtest up; eval \"$(scripts/envtest env)\"");
    kube.install_crd();
    let _ns = kube.namespace(ns());
    let raw = Raw::new(&lab);
    let parent = lab.parent(7);
    let dir = std::env::temp_dir().join(format!("mvconf-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("bench dir");
    std::fs::create_dir_all(&a.out).expect("output dir");
    for k in 1..=lab.nodes {
        clear_network(&lab, k);
        lab.docker(
            k,
            &[
                "network",
                "create",
                "-d",
                "macvlan",
                "--subnet",
                SUBNET,
                "--gateway",
                GATEWAY,
                "-o",
                &format!("parent={parent}"),
                NET,
            ],
        );
    }

    let resync = 10;
    let op = Operator::start(resync, &dir.join("operator.log"));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_idle = op.rss_kib();
    match a.only.as_deref() {
        Some("power") => {
            let slots = if a.quick { 6 } else { 30 };
            power::power_cycle(&lab, &kube, &raw, &parent, slots).await;
            leave_parent(&lab);
            return;
        }
        Some("footprint") => {
            let big = if a.quick { 30 } else { 300 };
            let svc = format!("bench-steady-{big}");
            let _s = lab.service(&svc, Mode::Replicated(big as u32));
            wait_running(&raw, &svc, big).await;
            let last = std::net::Ipv4Addr::from(BIND_BASE + big as u32 + 50).to_string();
            let y = binding_yaml("steady", &svc, &parent, "10.81.0.10", &last);
            let (ok, out) = kube.kubectl(&["apply", "-f", "-"], Some(&y));
            assert!(ok, "{out}");
            wait_bound(&kube, "steady", big, Duration::from_secs(900)).await;
            tokio::time::sleep(Duration::from_secs(15)).await;
            eprintln!(
                "operator RSS idle {:.1} MiB, {big} bound {:.1} MiB",
                rss_idle as f64 / 1024.0,
                op.rss_kib() as f64 / 1024.0
            );
            delete_binding(&kube, "steady").await;
            leave_parent(&lab);
            return;
        }
        Some("probe") => {
            drop(op);
            let n = if a.quick { 30 } else { 150 };
            let r = probe::probe_rows(&lab, &kube, &raw, &dir, &parent, n, 2).await;
            eprintln!("{r:?}");
            eprintln!(
                "scale-up on / off {:.3}, cold on / off {:.3}",
                r.scale_on / r.scale_off,
                r.cold_on / r.cold_off
            );
            leave_parent(&lab);
            return;
        }
        Some("bind") => {
            let r = bind_row(&lab, &kube, &raw, &dir, 30, &Via::direct(&lab), &parent).await;
            eprintln!("operator log: {}", dir.join("operator.log").display());
            eprintln!("operator / floor {:.2}", r.operator / r.floor);
            leave_parent(&lab);
            return;
        }
        _ => {}
    }

    let direct = Via::direct(&lab);
    let sizes: &[usize] = if a.quick { &[30] } else { &[30, 150, 300] };
    let mut rows = Vec::new();
    for &n in sizes {
        eprintln!("bind time, {n} containers");
        rows.push(bind_row(&lab, &kube, &raw, &dir, n, &direct, &parent).await);
    }
    let netem_n = if a.quick { 30 } else { 150 };
    eprintln!("bind time, {netem_n} containers, 10 ms each way to every engine");
    let delayed = Via::delayed(&lab, Duration::from_millis(10)).await;
    rows.push(bind_row(&lab, &kube, &raw, &dir, netem_n, &delayed, &parent).await);

    // Steady state and footprint, with the largest size bound by the operator.
    let big = *sizes.last().unwrap_or(&30);
    let svc = format!("bench-steady-{big}");
    let _s = lab.service(&svc, Mode::Replicated(big as u32));
    wait_running(&raw, &svc, big).await;
    let small_svc = "bench-steady-small";
    let _s2 = lab.service(small_svc, Mode::Replicated(6));
    wait_running(&raw, small_svc, 6).await;
    let y = binding_yaml(
        "steady-small",
        small_svc,
        &parent,
        "10.81.9.10",
        "10.81.9.40",
    );
    let (ok, out) = kube.kubectl(&["apply", "-f", "-"], Some(&y));
    assert!(ok, "{out}");
    wait_bound(&kube, "steady-small", 6, Duration::from_secs(120)).await;
    eprintln!("steady state, 6 containers");
    let steady_small = steady(&op, 6, resync).await;
    delete_binding(&kube, "steady-small").await;
    let last = std::net::Ipv4Addr::from(BIND_BASE + big as u32 + 50).to_string();
    let y = binding_yaml("steady", &svc, &parent, "10.81.0.10", &last);
    let (ok, out) = kube.kubectl(&["apply", "-f", "-"], Some(&y));
    assert!(ok, "{out}");
    wait_bound(&kube, "steady", big, Duration::from_secs(900)).await;
    eprintln!("steady state, {big} containers");
    let steady_big = steady(&op, big, resync).await;
    let idle_secs = if a.quick { 20 } else { 60 };
    eprintln!("idle CPU over {idle_secs}s");
    let t0 = op.cpu_ticks();
    tokio::time::sleep(Duration::from_secs(idle_secs)).await;
    let ticks = op.cpu_ticks() - t0;
    let clk: f64 = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0);
    let cpu_pct = ticks as f64 / clk / idle_secs as f64 * 100.0;
    let rss_bound = op.rss_kib();
    let (ok, status_json) = kube.kubectl(&["-n", ns(), "get", "mvb", "steady", "-o", "json"], None);
    assert!(ok, "{status_json}");
    let status_bytes = status_json.len();
    let (ok, slices_json) = kube.kubectl(
        &[
            "-n",
            ns(),
            "get",
            "mves",
            "-l",
            "mvconf.io/binding=steady",
            "-o",
            "json",
        ],
        None,
    );
    assert!(ok, "{slices_json}");
    let slices: serde_json::Value = serde_json::from_str(&slices_json).expect("slice list");
    let items = slices["items"].as_array().cloned().unwrap_or_default();
    let slice_count = items.len();
    let slice_bytes = items
        .iter()
        .map(|i| serde_json::to_vec(i).map(|v| v.len()).unwrap_or(0))
        .max()
        .unwrap_or(0);
    delete_binding(&kube, "steady").await;
    drop(_s);
    // Drift is timed on engines that are done stopping those containers.
    wait_running(&raw, &svc, 0).await;

    // Drift repair.
    let kills = if a.quick { 5 } else { 200 };
    eprintln!("drift repair, {kills} kills");
    let d = drift(&lab, &kube, &raw, &parent, kills).await;
    let slots = if a.quick { 6 } else { 30 };
    eprintln!("power cut of every node, {slots} slots bound");
    let power = power::power_cycle(&lab, &kube, &raw, &parent, slots).await;
    drop(op);
    let probe_n = if a.quick { 30 } else { 150 };
    eprintln!("duplicate-address detection, {probe_n} containers, probing off and on");
    // Quick (CI): one round each way, to see it run; the figures are the full run's.
    let probe_rounds = if a.quick { 1 } else { 2 };
    let probing = probe::probe_rows(&lab, &kube, &raw, &dir, &parent, probe_n, probe_rounds).await;
    // Leave the parent free for the tests that use it.
    for k in 1..=lab.nodes {
        clear_network(&lab, k);
    }

    let report = Report {
        quick: a.quick,
        machine: machine(),
        rows,
        steady: vec![steady_small, steady_big],
        resync,
        idle_secs,
        cpu_pct,
        rss_idle,
        rss_bound,
        big,
        status_bytes,
        slice_count,
        slice_bytes,
        drift: d,
        power,
        probing,
        plan: a
            .plan
            .and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default(),
        pool: a
            .criterion
            .map(|d| criterion_results(&d))
            .unwrap_or_default(),
    };
    let md = report.markdown();
    std::fs::write(a.out.join("RESULTS.md"), &md).expect("write RESULTS.md");
    std::fs::write(a.out.join("bind.dat"), report.plot_data()).expect("write bind.dat");
    println!("{md}");
}

/// (benchmark name, mean in nanoseconds) from criterion's output folder.
fn criterion_results(dir: &Path) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let est = e.path().join("new/estimates.json");
        let bench = e.path().join("new/benchmark.json");
        let (Ok(est), Ok(bench)) = (std::fs::read_to_string(est), std::fs::read_to_string(bench))
        else {
            continue;
        };
        let est: serde_json::Value = serde_json::from_str(&est).unwrap_or_default();
        let bench: serde_json::Value = serde_json::from_str(&bench).unwrap_or_default();
        if let (Some(name), Some(mean)) = (
            bench["full_id"].as_str(),
            est["mean"]["point_estimate"].as_f64(),
        ) {
            out.push((name.to_owned(), mean));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

struct Report {
    quick: bool,
    machine: String,
    rows: Vec<BindRow>,
    steady: Vec<Steady>,
    resync: u64,
    idle_secs: u64,
    cpu_pct: f64,
    rss_idle: u64,
    rss_bound: u64,
    big: usize,
    status_bytes: usize,
    slice_count: usize,
    slice_bytes: usize,
    drift: Drift,
    power: power::PowerCycle,
    probing: probe::ProbeRow,
    plan: String,
    pool: Vec<(String, f64)>,
}

impl Report {
    fn markdown(&self) -> String {
        let cmd = if self.quick {
            "scripts/bench --quick"
        } else {
            "scripts/bench"
        };
        let mut m = String::new();
        let _ = writeln!(m, "# mvconf benchmark results\n");
        let _ = writeln!(
            m,
            "Command: `{cmd}`. Machine: {}. The lab: 3 dockerd nodes in network namespaces on this one machine (they share its cores), kube-apiserver v1.37.2 from `scripts/envtest`; the operator and CLI are release builds. Figures are one run each; ratios are taken within this run.\n",
            self.machine
        );
        let _ = writeln!(m, "![bind time](bind.png)\n");
        let _ = writeln!(m, "## 1-3. Bind time\n");
        let _ = writeln!(
            m,
            "Seconds to give N running containers (spread by swarm over 3 nodes) an address on an existing macvlan network. Operator: from the binding's server-side apply (by a client already running, as Argo CD or Flux apply it; `kubectl apply` adds its own start-up and discovery, about 0.1 s on this machine) until the status says every container is bound (polled every 25 ms). CLI: `mvconf up`, the whole process. Baseline: `docker network connect --ip` one after another, as mvconf users did by hand and the Python mvconf did. Floor: the connect calls alone as raw HTTP to each engine, all nodes at once, the best of 1, 2, 4 and 8 at a time per node. mvconf applies 8 at a time per node (`--per-node`, `--apply-per-node`).\n"
        );
        let _ = writeln!(
            m,
            "| N | network | operator | mvconf up | baseline | floor (per node) | operator / floor | CLI / floor | baseline / operator |"
        );
        let _ = writeln!(m, "|---|---|---|---|---|---|---|---|---|");
        for r in &self.rows {
            let _ = writeln!(
                m,
                "| {} | {} | {:.2} | {:.2} | {:.2} | {:.2} ({}) | {:.2} | {:.2} | {:.1} |",
                r.n,
                if r.netem { "+10 ms each way" } else { "lab" },
                r.operator,
                r.cli,
                r.baseline,
                r.floor,
                r.floor_per_node,
                r.operator / r.floor,
                r.cli / r.floor,
                r.baseline / r.operator,
            );
        }
        let _ = writeln!(
            m,
            "\nGoal: ours / floor at most 1.15. The +10 ms row puts a relay in front of every engine that delays each byte 10 ms in each direction (this kernel has no `tc netem`), as a DCE controller in front of remote nodes adds; every method of that row, the operator and the CLI included (a binding `endpoint` with `nodeUrls`), goes through it.\n"
        );
        let _ = writeln!(m, "## 4. Steady state\n");
        let _ = writeln!(
            m,
            "Docker API calls per periodic resync with nothing changing (operator `--resync-seconds {}`; the default is 300):\n",
            self.resync
        );
        let _ = writeln!(
            m,
            "| containers bound | calls per pass | mutating calls per pass |"
        );
        let _ = writeln!(m, "|---|---|---|");
        for s in &self.steady {
            let _ = writeln!(
                m,
                "| {} | {:.1} | {:.1} |",
                s.containers, s.calls_per_pass, s.mutating_per_pass
            );
        }
        let _ = writeln!(
            m,
            "\nOperator CPU over {} s idle with {} containers bound (resyncs every {} s included): {:.2}% of one core.\n",
            self.idle_secs, self.big, self.resync, self.cpu_pct
        );
        let d = &self.drift;
        let _ = writeln!(m, "## 5. Drift repair\n");
        let _ = writeln!(
            m,
            "{} kills (`docker kill` of a bound task container; the lab's services use `--restart-delay 1s`, swarm's default is 5 s). Start: the replacement's `State.StartedAt`; bound: the benchmark saw the slot's old address on it (polled every 20 ms).\n",
            d.start_to_bound.len()
        );
        let _ = writeln!(m, "| interval | p50 s | p99 s | max s |");
        let _ = writeln!(m, "|---|---|---|---|");
        for (name, v) in [
            (
                "replacement start -> bound with its old IP",
                &d.start_to_bound,
            ),
            ("kill -> replacement start (swarm)", &d.kill_to_start),
            ("kill -> bound", &d.kill_to_bound),
        ] {
            let _ = writeln!(
                m,
                "| {name} | {:.3} | {:.3} | {:.3} |",
                pct(v, 0.5),
                pct(v, 0.99),
                pct(v, 1.0)
            );
        }
        let _ = writeln!(
            m,
            "\nGoal (issue \"Scale to a bank\"): p99 of start -> bound under 1 s, over at least 200 kills.\n"
        );
        let p = &self.power;
        let _ = writeln!(m, "## 5b. Power cut of every node\n");
        let _ = writeln!(
            m,
            "{} slots bound by the operator; every engine of the lab killed at once (engine, containerd, shims, containers: `scripts/lab node-stop`, all nodes together) and started again (`node-start`, all together). Swarm starts new tasks; the operator gives each slot its old address.\n",
            p.slots
        );
        let _ = writeln!(
            m,
            "| | value |\n|---|---|\n| kill -> last engine answering again | {:.1} s |\n| last engine back -> every slot running on its old address | {} |\n| slots on another address at the end | {} |\n| slots with no running container at the end | {} |\n",
            p.outage.as_secs_f64(),
            p.back.map_or("not within 600 s".to_owned(), |d| format!(
                "{:.2} s",
                d.as_secs_f64()
            )),
            p.moved,
            p.missing,
        );
        let r = &self.probing;
        let _ = writeln!(m, "## 5c. Duplicate-address detection on the bind path\n");
        let _ = writeln!(
            m,
            "The operator with ARP probing (`--probe-image`, the probe image built from the same binary by `scripts/lab probe-image`) against the same operator without it, in this run. Scale-up: a service scaled from 0 to {n} under a binding that exists (the probe ran ahead), until every container is connected (Docker polled every 50 ms), mean of {rounds} rounds each, alternating; per container, from first seen running to connected. New binding: a binding applied onto {n} running containers, until its status says all bound: its pool was never probed, so the first addresses wait for one probe.\n",
            n = r.n,
            rounds = r.rounds,
        );
        let _ = writeln!(
            m,
            "| | probing off | probing on | on / off |\n|---|---|---|---|\n| scale-up 0 -> {n}, all connected | {:.2} s | {:.2} s | {:.3} |\n| per container, running -> connected, p50 | {:.2} s | {:.2} s | |\n| per container, running -> connected, p99 | {:.2} s | {:.2} s | |\n| new binding onto {n} running | {:.2} s | {:.2} s | {:.3} |\n",
            r.scale_off,
            r.scale_on,
            r.scale_on / r.scale_off,
            r.lat_off.0,
            r.lat_on.0,
            r.lat_off.1,
            r.lat_on.1,
            r.cold_off,
            r.cold_on,
            r.cold_on / r.cold_off,
            n = r.n,
        );
        let _ = writeln!(
            m,
            "Goal (issue \"Safe on a shared L2 segment\"): scale-up on / off at most 1.05 at 150 containers.\n"
        );
        let _ = writeln!(m, "## 6. Footprint\n");
        let _ = writeln!(
            m,
            "| | value |\n|---|---|\n| operator RSS, idle (no binding) | {:.1} MiB |\n| operator RSS, {} containers bound | {:.1} MiB |\n| binding object at {} containers (summary only, any size) | {} bytes |\n| MacvlanEndpointSlices at {} containers | {} |\n| largest slice (at most 100 records, any size) | {} bytes |\n",
            self.rss_idle as f64 / 1024.0,
            self.big,
            self.rss_bound as f64 / 1024.0,
            self.big,
            self.status_bytes,
            self.big,
            self.slice_count,
            self.slice_bytes,
        );
        let _ = writeln!(m, "Goal: RSS under 40 MiB.\n");
        let _ = writeln!(m, "## 7. Planner growth\n");
        let _ = writeln!(
            m,
            "`cargo bench --bench plan`: the pure planner on synthetic clusters of 100 containers per node, half already bound.\n"
        );
        let _ = writeln!(
            m,
            "| nodes | containers | plan median ms | plan min ms | snapshot heap | plan peak heap | allocated during plan |"
        );
        let _ = writeln!(m, "|---|---|---|---|---|---|---|");
        for l in self.plan.lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(l) else {
                continue;
            };
            if v["bench"] != "plan" {
                continue;
            }
            let mib = |k: &str| v[k].as_f64().unwrap_or(0.0) / 1048576.0;
            let _ = writeln!(
                m,
                "| {} | {} | {:.1} | {:.1} | {:.1} MiB | {:.1} MiB | {:.1} MiB |",
                v["nodes"],
                v["containers"],
                v["plan_ms_median"].as_f64().unwrap_or(0.0),
                v["plan_ms_min"].as_f64().unwrap_or(0.0),
                mib("snapshot_bytes"),
                mib("plan_peak_bytes"),
                mib("plan_total_alloc_bytes"),
            );
        }
        let _ = writeln!(
            m,
            "\nGoal: 100,000 containers planned in under a second, memory linear.\n"
        );
        for l in self.plan.lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(l) else {
                continue;
            };
            if v["bench"] == "plan_one_binding" {
                let _ = writeln!(
                    m,
                    "One binding of {} containers planned over the whole swarm of {} containers (what each pass pays when many bindings share a swarm): median {:.1} ms, min {:.1} ms over {} runs.\n",
                    v["binding_containers"],
                    v["containers"],
                    v["plan_ms_median"].as_f64().unwrap_or(0.0),
                    v["plan_ms_min"].as_f64().unwrap_or(0.0),
                    v["runs"],
                );
            }
        }
        let _ = writeln!(m, "## 8. Allocator\n");
        let _ = writeln!(m, "`cargo bench --bench pool` (criterion, mean):\n");
        let _ = writeln!(m, "| benchmark | mean |\n|---|---|");
        for (name, ns) in &self.pool {
            let shown = if *ns > 1e6 {
                format!("{:.2} ms", ns / 1e6)
            } else {
                format!("{:.1} µs", ns / 1e3)
            };
            let _ = writeln!(m, "| {name} | {shown} |");
        }
        m
    }

    fn plot_data(&self) -> String {
        let mut s = String::from("# n operator cli baseline floor\n");
        for r in self.rows.iter().filter(|r| !r.netem) {
            let _ = writeln!(
                s,
                "{} {:.3} {:.3} {:.3} {:.3}",
                r.n, r.operator, r.cli, r.baseline, r.floor
            );
        }
        s
    }
}
