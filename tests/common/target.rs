//! What a conformance scenario runs against: the real lab (dockerd nodes
//! behind the nginx DCE gateway) or the Docker Engine simulator
//! (`mvconf-sim`), driven the same way, so that the simulator cannot drift
//! from real engines unnoticed.

use super::{Lab, Mode, ServiceGuard};
use mvconf::cluster::{Cluster, ClusterConfig, Endpoint};
use mvconf::engine::transport::Auth;
use mvconf::secret::SecretString;
use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `mvconf-sim` of one 3-node swarm, killed on drop (its
/// services, networks and containers go with it).
pub struct Sim {
    child: Child,
    pub url: String,
    pub swarm: String,
    /// Every swarm (`--swarms N`): its controller's URL and its ID.
    pub swarms: Vec<(String, String)>,
    dir: std::path::PathBuf,
}

const SIM_USER: &str = "admin";
const SIM_PASSWORD: &str = "sim-Pa55word";

impl Sim {
    /// The simulator's process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A simulator of `nodes` nodes whose controller demands the test login.
    pub fn start(nodes: usize) -> Sim {
        Sim::start_with(nodes, &["--basic", &format!("{SIM_USER}:{SIM_PASSWORD}")])
    }

    /// A simulator with more command-line flags (none: anonymous access).
    pub fn start_with(nodes: usize, extra: &[&str]) -> Sim {
        // One directory per simulator, also when tests of one process
        // start several at once (each reads its own ready file).
        static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("{}-{n}", super::unique("mvconf-sim")));
        std::fs::create_dir_all(&dir).expect("sim dir");
        let ready = dir.join("ready.json");
        let child = Command::new(env!("CARGO_BIN_EXE_mvconf-sim"))
            .args(["--nodes", &nodes.to_string()])
            // As the lab's services: a 1 s restart delay; connects take
            // about what one takes on the lab's engines.
            .args(["--restart-delay-ms", "1000", "--connect-ms", "20"])
            .args(extra)
            .arg("--ready-file")
            .arg(&ready)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start mvconf-sim");
        // Owned from here: a panic below still kills it.
        let mut sim = Sim {
            child,
            url: String::new(),
            swarm: String::new(),
            swarms: Vec::new(),
            dir,
        };
        let start = Instant::now();
        let text = loop {
            if let Ok(t) = std::fs::read_to_string(&ready) {
                break t;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "mvconf-sim never got ready"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let v: serde_json::Value = serde_json::from_str(&text).expect("ready file");
        sim.swarms = v["swarms"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                let text = |k: &str| s[k].as_str().unwrap_or_default().to_owned();
                (text("url"), text("id"))
            })
            .collect();
        (sim.url, sim.swarm) = sim.swarms.first().cloned().unwrap_or_default();
        sim
    }

    /// A control call (`/_sim/...`); panics on a refusal.
    pub fn control(&self, method: &str, path: &str, body: serde_json::Value) -> serde_json::Value {
        let (status, answer) = self.try_control(method, path, body);
        assert!(status < 300, "{method} {path}: {status} {answer}");
        answer
    }

    /// Plain HTTP/1.1 over a socket, so that it also works from `Drop`.
    pub fn try_control(
        &self,
        method: &str,
        path: &str,
        body: serde_json::Value,
    ) -> (u16, serde_json::Value) {
        control_at(&self.url, method, path, body)
    }

    /// A control call to swarm `k` of `--swarms N`; panics on a refusal.
    pub fn control_swarm(
        &self,
        k: usize,
        method: &str,
        path: &str,
        body: serde_json::Value,
    ) -> serde_json::Value {
        let (status, answer) = control_at(&self.swarms[k].0, method, path, body);
        assert!(
            status < 300,
            "swarm {k}: {method} {path}: {status} {answer}"
        );
        answer
    }
}

/// A control call to the simulated controller at `url`.
fn control_at(
    url: &str,
    method: &str,
    path: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let addr = url.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).expect("connect to mvconf-sim");
    let body = body.to_string();
    let req = format!(
        "{method} /_sim/{path} HTTP/1.1\r\nHost: sim\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).expect("send");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let json = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.trim())
        .and_then(|b| serde_json::from_str(b).ok())
        .unwrap_or(serde_json::Value::Null);
    (status, json)
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub enum Target {
    Lab(Lab),
    Sim(Sim),
}

/// A service, removed on drop.
pub enum Service<'a> {
    Lab(ServiceGuard<'a>),
    Sim { sim: &'a Sim, name: String },
}

impl Service<'_> {
    pub fn name(&self) -> &str {
        match self {
            Service::Lab(g) => &g.name,
            Service::Sim { name, .. } => name,
        }
    }
}

impl Drop for Service<'_> {
    fn drop(&mut self) {
        if let Service::Sim { sim, name } = self {
            let _ = sim.try_control(
                "DELETE",
                &format!("services/{name}"),
                serde_json::Value::Null,
            );
        }
    }
}

impl Target {
    /// The lab, or `None` when it is not up (and not required).
    pub fn lab() -> Option<Target> {
        Lab::get().map(Target::Lab)
    }

    /// A fresh simulator of a 3-node swarm, as the lab.
    pub fn sim() -> Target {
        Target::Sim(Sim::start(3))
    }

    pub fn nodes(&self) -> usize {
        match self {
            Target::Lab(l) => l.nodes,
            Target::Sim(_) => 3,
        }
    }

    pub fn dce_url(&self) -> &str {
        match self {
            Target::Lab(l) => &l.dce_url,
            Target::Sim(s) => &s.url,
        }
    }

    pub fn dce_auth(&self) -> Auth {
        match self {
            Target::Lab(l) => l.dce_auth(),
            Target::Sim(_) => Auth::Basic {
                username: SIM_USER.into(),
                password: SecretString::new(SIM_PASSWORD),
            },
        }
    }

    /// `(user, password)` of the DCE controller, for the CLI.
    pub fn dce_login(&self) -> (String, String) {
        match self {
            Target::Lab(l) => (l.dce_user.clone(), l.dce_password.clone()),
            Target::Sim(_) => (SIM_USER.into(), SIM_PASSWORD.into()),
        }
    }

    /// mvconf's client for the swarm, through the DCE controller.
    pub fn dce_cluster(&self) -> Cluster {
        self.dce_cluster_with(self.dce_auth())
    }

    pub fn dce_cluster_with(&self, auth: Auth) -> Cluster {
        Cluster::new(ClusterConfig {
            endpoint: Some(Endpoint::Dce {
                url: self.dce_url().to_owned(),
                node_prefix: "/api".into(),
            }),
            auth,
            ..Default::default()
        })
        .expect("dce cluster")
    }

    /// Macvlan parent number `i` (the simulator has no interfaces to
    /// share; it checks one network per parent per node all the same).
    pub fn parent(&self, i: usize) -> String {
        match self {
            Target::Lab(l) => l.parent(i),
            Target::Sim(_) => format!("mv{i}"),
        }
    }

    /// Removes these networks from every node on drop (the simulator's go
    /// with it).
    pub fn networks_guard(&self, names: &[&str]) -> Option<super::NetGuard<'_>> {
        match self {
            Target::Lab(l) => Some(l.networks_guard(names)),
            Target::Sim(_) => None,
        }
    }

    pub fn service(&self, name: &str, mode: Mode) -> Service<'_> {
        match self {
            Target::Lab(l) => Service::Lab(l.service(name, mode)),
            Target::Sim(s) => {
                let body = match mode {
                    Mode::Replicated(n) => serde_json::json!({"name": name, "replicas": n}),
                    Mode::Global => serde_json::json!({"name": name, "global": true}),
                };
                s.control("POST", "services", body);
                Service::Sim {
                    sim: s,
                    name: name.to_owned(),
                }
            }
        }
    }

    /// `docker run -d --name NAME` of a plain container on node `k` (1-based).
    pub fn run_plain(&self, k: usize, name: &str) {
        match self {
            Target::Lab(l) => {
                let _ = l.try_docker(k, &["rm", "-f", name]);
                l.docker(
                    k,
                    &["run", "-d", "--name", name, &l.image, "sleep", "1000000"],
                );
            }
            Target::Sim(s) => {
                s.control(
                    "POST",
                    &format!("nodes/{k}/run"),
                    serde_json::json!({"name": name}),
                );
            }
        }
    }

    /// `docker rm -f` on node `k`.
    pub fn remove_container(&self, k: usize, name: &str) {
        match self {
            Target::Lab(l) => {
                let _ = l.try_docker(k, &["rm", "-f", name]);
            }
            Target::Sim(s) => {
                let _ = s.try_control(
                    "DELETE",
                    &format!("containers/{name}"),
                    serde_json::Value::Null,
                );
            }
        }
    }

    /// `docker kill` on node `k`.
    pub fn kill(&self, k: usize, container: &str) {
        match self {
            Target::Lab(l) => {
                l.docker(k, &["kill", container]);
            }
            Target::Sim(s) => {
                s.control("POST", "kill", serde_json::json!({"container": container}));
            }
        }
    }
}
