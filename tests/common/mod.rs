//! Shared harness for tests against the real lab (`scripts/lab up`): real
//! dockerd nodes in a real swarm, and the nginx DCE gateway.
//!
//! The lab's coordinates come from `scripts/lab env`. Without them a lab
//! test skips, unless `MVCONF_REQUIRE_LAB=1` (set by `scripts/test`), in
//! which case it fails: CI never passes by skipping.
#![allow(dead_code)]

use mvconf::cluster::{Cluster, ClusterConfig, Endpoint};
use mvconf::engine::transport::Auth;
use mvconf::secret::SecretString;
use std::process::Command;
use std::time::{Duration, Instant};

pub struct Lab {
    pub nodes: usize,
    pub manager_url: String,
    pub node_urls: Vec<String>,
    pub node_sockets: Vec<String>,
    pub dce_url: String,
    pub dce_anon_url: String,
    pub dce_user: String,
    pub dce_password: String,
    pub parent: String,
    /// Macvlan parents, the same on every node: Docker allows one macvlan
    /// network per parent, so tests running at once each take their own.
    pub parents: Vec<String>,
    pub image: String,
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl Lab {
    /// The lab, or `None` (test skipped) when it is not up and not required.
    pub fn get() -> Option<Lab> {
        let Some(nodes) = var("MVCONF_LAB_NODES") else {
            assert!(
                var("MVCONF_REQUIRE_LAB").is_none(),
                "MVCONF_REQUIRE_LAB is set but the lab is not: run `scripts/lab up` and `eval \"$(scripts/lab env)\"`"
            );
            eprintln!("skipped: the lab is not up (scripts/lab up; eval \"$(scripts/lab env)\")");
            return None;
        };
        let list = |n: &str| {
            var(n)
                .unwrap_or_default()
                .split(',')
                .map(str::to_owned)
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
        };
        let password = var("MVCONF_LAB_DCE_PASSWORD_FILE")
            .and_then(|p| std::fs::read_to_string(p).ok())
            .map(|s| s.trim().to_owned())
            .unwrap_or_default();
        Some(Lab {
            nodes: nodes.parse().expect("MVCONF_LAB_NODES"),
            manager_url: var("MVCONF_LAB_MANAGER_URL").expect("MVCONF_LAB_MANAGER_URL"),
            node_urls: list("MVCONF_LAB_NODE_URLS"),
            node_sockets: list("MVCONF_LAB_NODE_SOCKETS"),
            dce_url: var("MVCONF_LAB_DCE_URL").expect("MVCONF_LAB_DCE_URL"),
            dce_anon_url: var("MVCONF_LAB_DCE_ANON_URL").unwrap_or_default(),
            dce_user: var("MVCONF_LAB_DCE_USER").unwrap_or_else(|| "admin".into()),
            dce_password: password,
            parent: var("MVCONF_LAB_PARENT").unwrap_or_else(|| "mv0".into()),
            parents: list("MVCONF_LAB_PARENTS"),
            image: var("MVCONF_LAB_IMAGE").unwrap_or_else(|| "mvconf-lab/busybox:latest".into()),
        })
    }

    /// Docker mode: the manager over TCP, nodes at their swarm address.
    pub fn docker_cluster(&self) -> Cluster {
        Cluster::new(ClusterConfig {
            endpoint: Some(Endpoint::Docker {
                manager: self.manager_url.clone(),
                node_port: None,
                node_urls: Default::default(),
            }),
            ..Default::default()
        })
        .expect("docker cluster")
    }

    /// DCE mode through the nginx gateway with Basic auth.
    pub fn dce_cluster(&self) -> Cluster {
        self.dce_cluster_with(&self.dce_url, self.dce_auth(), None)
    }

    pub fn dce_auth(&self) -> Auth {
        Auth::Basic {
            username: self.dce_user.clone(),
            password: SecretString::new(self.dce_password.clone()),
        }
    }

    pub fn dce_cluster_with(&self, url: &str, auth: Auth, api_version: Option<&str>) -> Cluster {
        Cluster::new(ClusterConfig {
            endpoint: Some(Endpoint::Dce {
                url: url.to_owned(),
                node_prefix: "/api".into(),
            }),
            auth,
            api_version: api_version.map(str::to_owned),
            ..Default::default()
        })
        .expect("dce cluster")
    }

    /// The docker CLI against node `k` (1-based).
    pub fn docker(&self, k: usize, args: &[&str]) -> String {
        let host = format!("unix://{}", self.node_sockets[k - 1]);
        let out = Command::new("docker")
            .arg("-H")
            .arg(&host)
            .args(args)
            .output()
            .expect("run docker");
        assert!(
            out.status.success(),
            "docker {args:?} on node{k} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Starts a container that is not ours on node `k`, on `network` with
    /// the fixed address `ip` (replacing one of the same name left behind).
    pub fn stranger(&self, k: usize, name: &str, network: &str, ip: &str) {
        let _ = self.try_docker(k, &["rm", "-f", name]);
        self.docker(
            k,
            &[
                "run",
                "-d",
                "--name",
                name,
                "--network",
                network,
                "--ip",
                ip,
                &self.image,
                "sleep",
                "1000000",
            ],
        );
    }

    /// The docker CLI, returning success instead of asserting.
    pub fn try_docker(&self, k: usize, args: &[&str]) -> bool {
        let host = format!("unix://{}", self.node_sockets[k - 1]);
        Command::new("docker")
            .arg("-H")
            .arg(&host)
            .args(args)
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// Parent interface number `i`, freed of any macvlan network a failed
    /// earlier run left on it (Docker allows one per parent).
    pub fn parent(&self, i: usize) -> String {
        let p = self
            .parents
            .get(i)
            .cloned()
            .unwrap_or_else(|| format!("mv{i}"));
        for k in 1..=self.nodes {
            let Some(out) =
                self.docker_output(k, &["network", "ls", "-q", "--filter", "driver=macvlan"])
            else {
                continue;
            };
            for id in out.lines() {
                let parent = self
                    .docker_output(
                        k,
                        &[
                            "network",
                            "inspect",
                            id,
                            "--format",
                            "{{index .Options \"parent\"}}",
                        ],
                    )
                    .unwrap_or_default();
                if parent.trim() == p {
                    // An earlier test's containers may still be stopping
                    // (hundreds of them, after a load test): the network
                    // goes once their endpoints are gone.
                    let start = Instant::now();
                    loop {
                        self.remove_network(k, id);
                        if !self.try_docker(k, &["network", "inspect", id])
                            || start.elapsed() > Duration::from_secs(120)
                        {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(500));
                    }
                }
            }
        }
        p
    }

    fn docker_output(&self, k: usize, args: &[&str]) -> Option<String> {
        let host = format!("unix://{}", self.node_sockets[k - 1]);
        let out = Command::new("docker")
            .arg("-H")
            .arg(&host)
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Disconnects every endpoint, then removes the network, on node `k`.
    pub fn remove_network(&self, k: usize, network: &str) {
        let Some(ids) = self.docker_output(
            k,
            &[
                "network",
                "inspect",
                network,
                "--format",
                "{{range $id, $c := .Containers}}{{$id}} {{end}}",
            ],
        ) else {
            return;
        };
        for id in ids.split_whitespace() {
            let _ = self.try_docker(k, &["network", "disconnect", "-f", network, id]);
        }
        let _ = self.try_docker(k, &["network", "rm", network]);
    }

    /// Removes these networks from every node when dropped, even when the
    /// test failed half-way.
    pub fn networks_guard(&self, names: &[&str]) -> NetGuard<'_> {
        let g = NetGuard {
            lab: self,
            names: names.iter().map(|s| (*s).to_owned()).collect(),
        };
        g.remove();
        g
    }

    /// Creates a service of busybox containers that sleep; removed on drop.
    pub fn service(&self, name: &str, mode: Mode) -> ServiceGuard<'_> {
        self.service_with(name, mode, &[], &["sleep", "1000000"])
    }

    /// A service with extra `docker service create` options and a command.
    pub fn service_with(
        &self,
        name: &str,
        mode: Mode,
        extra: &[&str],
        command: &[&str],
    ) -> ServiceGuard<'_> {
        let _ = self.try_docker(1, &["service", "rm", name]);
        let mut args = vec![
            "service",
            "create",
            "--detach",
            "--no-resolve-image",
            "--name",
            name,
            "--restart-delay",
            "1s",
        ];
        let replicas;
        match mode {
            Mode::Replicated(n) => {
                replicas = n.to_string();
                args.extend(["--replicas", &replicas]);
            }
            Mode::Global => args.extend(["--mode", "global"]),
        }
        args.extend(extra);
        args.push(self.image.as_str());
        args.extend(command);
        self.docker(1, &args);
        ServiceGuard {
            lab: self,
            name: name.to_owned(),
        }
    }
}

#[derive(Clone, Copy)]
pub enum Mode {
    Replicated(u32),
    Global,
}

pub struct ServiceGuard<'a> {
    lab: &'a Lab,
    pub name: String,
}

impl Drop for ServiceGuard<'_> {
    fn drop(&mut self) {
        let _ = self.lab.try_docker(1, &["service", "rm", &self.name]);
    }
}

pub struct NetGuard<'a> {
    lab: &'a Lab,
    names: Vec<String>,
}

impl NetGuard<'_> {
    /// Removes the networks once the containers of the test's removed
    /// services have left them by themselves: forcing a disconnect while
    /// the engine is stopping the container can leave a stale endpoint
    /// that only an engine restart clears (Docker 20.10), and the network
    /// with it, on the parent the next test needs. Hundreds of stopping
    /// tasks (a load test) take minutes on two cores, so swarm tasks are
    /// waited for up to four minutes; other containers (strangers a test
    /// started, endpoints whose container is gone) are disconnected after
    /// a few seconds.
    fn remove(&self) {
        let start = Instant::now();
        for k in 1..=self.lab.nodes {
            for n in &self.names {
                while let Some(ids) = self.lab.docker_output(
                    k,
                    &[
                        "network",
                        "inspect",
                        n,
                        "--format",
                        "{{range $id, $c := .Containers}}{{$id}} {{end}}",
                    ],
                ) {
                    let ids: Vec<&str> = ids.split_whitespace().collect();
                    let tasks = ids.iter().filter(|id| self.lab.is_task(k, id)).count();
                    let waited = start.elapsed();
                    if ids.is_empty()
                        || (tasks == 0 && waited > Duration::from_secs(5))
                        || waited > Duration::from_secs(240)
                    {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(300));
                }
                self.lab.remove_network(k, n);
            }
        }
    }
}

impl Lab {
    /// Whether container `id` on node `k` exists and is a swarm task.
    fn is_task(&self, k: usize, id: &str) -> bool {
        self.docker_output(
            k,
            &[
                "inspect",
                "--format",
                "{{index .Config.Labels \"com.docker.swarm.task.id\"}}",
                id,
            ],
        )
        .is_some_and(|t| !t.trim().is_empty())
    }
}

impl Drop for NetGuard<'_> {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Polls `f` until it returns `Some`, or panics after `timeout` with `what`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The lab controller's anonymous access (`scripts/lab gateway-anonymous`)
/// on, and off again when dropped, even when the test fails half-way. Only
/// the controller at the manager's address (10.99.0.11:80) changes.
pub struct AnonymousController;

impl AnonymousController {
    fn set(on: bool) {
        let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/lab"))
            .args(["gateway-anonymous", if on { "on" } else { "off" }])
            .output()
            .expect("run scripts/lab");
        assert!(out.status.success(), "{}", text(&out));
    }

    pub fn on() -> Self {
        Self::set(true);
        AnonymousController
    }
}

impl Drop for AnonymousController {
    fn drop(&mut self) {
        Self::set(false);
    }
}

/// A command's stdout and stderr, as text.
pub fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A conf.json (or manifest) for `mvconf -f`, in this run's temp directory.
pub fn write_conf(name: &str, body: &serde_json::Value) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("mvconf-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(format!("{name}.json"));
    std::fs::write(&p, serde_json::to_string_pretty(body).unwrap()).unwrap();
    p
}

/// A name unique to this test process, for services and networks.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", std::process::id() % 100_000)
}

pub mod e2e;
pub mod k8s;
pub mod relay;
pub mod target;

impl Lab {
    /// The probe image on every node, built from this test build's mvconf
    /// (`scripts/lab probe-image`), once per test process.
    pub fn probe_image(&self) -> String {
        static TAG: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        TAG.get_or_init(|| {
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/lab");
            let out = Command::new(script)
                .args(["probe-image", env!("CARGO_BIN_EXE_mvconf")])
                .output()
                .expect("run scripts/lab probe-image");
            assert!(
                out.status.success(),
                "scripts/lab probe-image: {}",
                text(&out)
            );
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        })
        .clone()
    }
}

/// A host on the lab's L2 segment that Docker knows nothing of: a network
/// namespace with a macvlan interface holding `address`, its parent a veth
/// whose other end is a port of the lab's bridge (`mvlab1`). Gone on drop.
pub struct StrangerHost {
    netns: String,
    veth: String,
}

impl StrangerHost {
    pub fn new(tag: &str, address: &str) -> Self {
        let id = format!("{}{tag}", std::process::id() % 10_000);
        let netns = format!("mvs-{id}");
        let (veth, peer, mac) = (
            format!("mvs{id}a"),
            format!("mvs{id}b"),
            format!("mvs{id}m"),
        );
        let ip = |args: &[&str]| {
            let out = Command::new("ip").args(args).output().expect("run ip");
            assert!(out.status.success(), "ip {args:?}: {}", text(&out));
        };
        let _ = Command::new("ip").args(["netns", "del", &netns]).output();
        let _ = Command::new("ip").args(["link", "del", &veth]).output();
        ip(&["netns", "add", &netns]);
        ip(&["link", "add", &veth, "type", "veth", "peer", "name", &peer]);
        ip(&["link", "set", &veth, "master", "mvlab1", "up"]);
        ip(&["link", "set", &peer, "up"]);
        ip(&[
            "link", "add", &mac, "link", &peer, "type", "macvlan", "mode", "bridge",
        ]);
        ip(&["link", "set", &mac, "netns", &netns]);
        ip(&["-n", &netns, "addr", "add", address, "dev", &mac]);
        ip(&["-n", &netns, "link", "set", &mac, "up"]);
        Self { netns, veth }
    }

    /// The MAC address it answers with.
    pub fn mac(&self) -> String {
        let out = Command::new("ip")
            .args(["-n", &self.netns, "-o", "link", "show", "type", "macvlan"])
            .output()
            .expect("run ip");
        let t = String::from_utf8_lossy(&out.stdout).to_string();
        t.split_whitespace()
            .skip_while(|w| *w != "link/ether")
            .nth(1)
            .unwrap_or_default()
            .to_owned()
    }
}

impl Drop for StrangerHost {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .output();
        let _ = Command::new("ip")
            .args(["link", "del", &self.veth])
            .output();
    }
}

/// The metric families the chart's alerts and dashboard query
/// (`charts/mvconf/files/`): each `mvconf_...` name, with a sample suffix
/// (`_total`, `_bucket`, `_count`, `_sum`) taken off.
pub fn chart_queries() -> std::collections::BTreeSet<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/mvconf/files");
    let mut out = std::collections::BTreeSet::new();
    for f in ["prometheus-rules.yaml", "dashboard.json"] {
        let text = std::fs::read_to_string(dir.join(f)).unwrap();
        for (i, _) in text.match_indices("mvconf_") {
            let name: String = text[i..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            let base = ["_total", "_bucket", "_count", "_sum"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(&name);
            out.insert(base.to_owned());
        }
    }
    out
}

/// The families of `names` that an OpenMetrics text does not declare.
pub fn undeclared(text: &str, names: &std::collections::BTreeSet<String>) -> Vec<String> {
    names
        .iter()
        .filter(|n| !text.contains(&format!("# TYPE {n} ")))
        .cloned()
        .collect()
}
