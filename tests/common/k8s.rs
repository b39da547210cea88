//! Harness for tests against the real kube-apiserver (`scripts/envtest up`)
//! and the lab: a namespace per test, and the operator binary started for it.

use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use mvconf::crd::MacvlanBinding;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Kube {
    pub client: Client,
    pub kubectl: PathBuf,
}

impl Kube {
    /// The control plane, or `None` (test skipped) when it is not up and
    /// `MVCONF_REQUIRE_ENVTEST` is not set.
    pub async fn get() -> Option<Kube> {
        if std::env::var_os("KUBECONFIG").is_none() || std::env::var_os("MVCONF_KUBECTL").is_none()
        {
            assert!(
                std::env::var_os("MVCONF_REQUIRE_ENVTEST").is_none(),
                "MVCONF_REQUIRE_ENVTEST is set but the control plane is not: scripts/envtest up; eval \"$(scripts/envtest env)\""
            );
            eprintln!("skipped: no control plane (scripts/envtest up)");
            return None;
        }
        let client = Client::try_default()
            .await
            .expect("kube client from KUBECONFIG");
        Some(Kube {
            client,
            kubectl: PathBuf::from(std::env::var("MVCONF_KUBECTL").unwrap()),
        })
    }

    /// `kubectl` with `stdin`; (success, stdout + stderr).
    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> (bool, String) {
        use std::io::Write;
        let mut child = Command::new(&self.kubectl)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run kubectl");
        if let Some(s) = stdin {
            child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
        }
        drop(child.stdin.take());
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    /// Installs the CRD (server-side apply, idempotent).
    pub fn install_crd(&self) {
        let crd = concat!(env!("CARGO_MANIFEST_DIR"), "/crds/mvconf.yaml");
        let (ok, out) = self.kubectl(
            &["apply", "--server-side", "--force-conflicts", "-f", crd],
            None,
        );
        assert!(ok, "{out}");
        let (ok, out) = self.kubectl(
            &[
                "wait",
                "--for=condition=Established",
                "crd/macvlanbindings.mvconf.io",
                "crd/macvlanendpointslices.mvconf.io",
                "crd/macvlannetworks.mvconf.io",
                "crd/swarmendpoints.mvconf.io",
                "--timeout=30s",
            ],
            None,
        );
        assert!(ok, "{out}");
    }

    /// A fresh namespace, deleted (with its bindings' finalizers cleared)
    /// when the guard drops.
    pub fn namespace(&self, name: &str) -> Namespace {
        let _ = self.kubectl(
            &["delete", "namespace", name, "--wait=true", "--timeout=60s"],
            None,
        );
        let (ok, out) = self.kubectl(&["create", "namespace", name], None);
        assert!(ok, "{out}");
        Namespace {
            name: name.to_owned(),
            kubectl: self.kubectl.clone(),
        }
    }

    pub fn bindings(&self, ns: &str) -> Api<MacvlanBinding> {
        Api::namespaced(self.client.clone(), ns)
    }

    pub async fn create(&self, ns: &str, yaml: &str) -> MacvlanBinding {
        let b: MacvlanBinding = serde_saphyr::from_str(yaml).expect("binding yaml");
        self.bindings(ns)
            .create(&PostParams::default(), &b)
            .await
            .expect("create binding")
    }

    pub async fn patch_spec(&self, ns: &str, name: &str, spec: serde_json::Value) {
        self.bindings(ns)
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({ "spec": spec })),
            )
            .await
            .expect("patch binding");
    }

    /// The binding with its per-container records read from its
    /// MacvlanEndpointSlices into `status.containers`, where the tests
    /// look for them; the stored status holds none (`records_live_in_slices...`
    /// checks it).
    pub async fn hydrate(&self, mut b: MacvlanBinding) -> MacvlanBinding {
        use mvconf::slices::{BINDING_LABEL, MacvlanEndpointSlice, belongs_to, records_of};
        let ns = b.namespace().unwrap_or_default();
        let api: Api<MacvlanEndpointSlice> = Api::namespaced(self.client.clone(), &ns);
        let lp =
            kube::api::ListParams::default().labels(&format!("{BINDING_LABEL}={}", b.name_any()));
        let slices = api
            .list(&lp)
            .await
            .expect("list MacvlanEndpointSlices")
            .items;
        let records = records_of(slices.iter().filter(|s| belongs_to(s, &b)));
        // Until its slices exist, a binding of an older operator keeps them
        // in its status (the upgrade test looks at both).
        if let Some(s) = b.status.as_mut().filter(|_| !records.is_empty()) {
            s.containers = records;
        }
        b
    }

    /// The binding, hydrated.
    pub async fn binding(&self, ns: &str, name: &str) -> MacvlanBinding {
        let b = self.bindings(ns).get(name).await.expect("binding");
        self.hydrate(b).await
    }

    /// Polls the binding until `f` accepts it.
    pub async fn wait_binding(
        &self,
        ns: &str,
        name: &str,
        what: &str,
        timeout: Duration,
        f: impl Fn(&MacvlanBinding) -> bool,
    ) -> MacvlanBinding {
        let api = self.bindings(ns);
        let start = Instant::now();
        loop {
            if let Ok(b) = api.get(name).await {
                let b = self.hydrate(b).await;
                if f(&b) {
                    return b;
                }
                if start.elapsed() > timeout {
                    panic!(
                        "timed out after {timeout:?} waiting for {what}; status: {}",
                        serde_json::to_string_pretty(&b.status).unwrap()
                    );
                }
            } else if start.elapsed() > timeout {
                panic!("timed out after {timeout:?} waiting for {what}: binding not readable");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    pub async fn delete(&self, ns: &str, name: &str) {
        let _ = self
            .bindings(ns)
            .delete(name, &DeleteParams::default())
            .await;
    }

    pub async fn wait_gone(&self, ns: &str, name: &str, timeout: Duration) {
        let start = Instant::now();
        while self
            .bindings(ns)
            .get_opt(name)
            .await
            .ok()
            .flatten()
            .is_some()
        {
            assert!(
                start.elapsed() < timeout,
                "binding {ns}/{name} still there after {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Events about a binding: (reason, note) pairs.
    pub async fn events(&self, ns: &str, name: &str) -> Vec<(String, String)> {
        let api: Api<k8s_openapi::api::events::v1::Event> =
            Api::namespaced(self.client.clone(), ns);
        let list = api.list(&Default::default()).await.expect("events");
        list.items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
            .collect()
    }
}

pub struct Namespace {
    pub name: String,
    kubectl: PathBuf,
}

impl Drop for Namespace {
    fn drop(&mut self) {
        // Without a running operator the finalizers would hold the
        // namespace; clear them, then delete.
        let list = Command::new(&self.kubectl)
            .args(["-n", &self.name, "get", "macvlanbindings", "-o", "name"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
            .unwrap_or_default();
        for b in list.lines() {
            let _ = Command::new(&self.kubectl)
                .args([
                    "-n",
                    &self.name,
                    "patch",
                    b,
                    "--type=merge",
                    "-p",
                    r#"{"metadata":{"finalizers":null}}"#,
                ])
                .output();
        }
        let _ = Command::new(&self.kubectl)
            .args(["delete", "namespace", &self.name, "--wait=false"])
            .output();
    }
}

/// The operator binary, started for one namespace; killed on drop.
pub struct Operator {
    child: Option<Child>,
    pub metrics_port: u16,
    pub log: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    /// Another binary than this build's (the upgrade test's old release).
    bin: Option<String>,
    pod_name: Option<String>,
}

/// A loopback port free now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Operator {
    /// Starts `mvconf operator` on the lab (local mode through node1's
    /// socket), watching `ns`, with the Lease `lease`.
    pub fn start(ns: &str, lease: &str, extra: &[&str]) -> Operator {
        Self::start_with(ns, lease, extra, &[])
    }

    /// As [`Operator::start`], with more environment (a KUBECONFIG of its own).
    pub fn start_with(ns: &str, lease: &str, extra: &[&str], env: &[(&str, &str)]) -> Operator {
        let metrics_port = free_port();
        let mut args: Vec<String> = vec![
            "operator".into(),
            "--namespace".into(),
            ns.into(),
            "--pod-namespace".into(),
            ns.into(),
            "--lease-name".into(),
            lease.into(),
            "--metrics-addr".into(),
            format!("127.0.0.1:{metrics_port}"),
        ];
        if !extra.contains(&"--resync-seconds") {
            args.extend(["--resync-seconds".into(), "30".into()]);
        }
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let log =
            std::env::temp_dir().join(format!("mvconf-operator-{ns}-{lease}-{metrics_port}.log"));
        let mut op = Operator {
            child: None,
            metrics_port,
            log,
            args,
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            bin: None,
            pod_name: None,
        };
        op.spawn();
        op
    }

    /// Runs `bin` with the arguments a chart's Deployment gives its
    /// container (`args`), out of cluster, as pod `pod` of `ns`: the
    /// metrics address is moved to a free loopback port, and the engine is
    /// the lab's (DOCKER_HOST of the test's environment, not the chart's
    /// in-pod socket path).
    pub fn from_chart(bin: &str, args: &[String], ns: &str, pod: &str) -> Operator {
        let metrics_port = free_port();
        let args = args
            .iter()
            .map(|a| {
                if a.starts_with("--metrics-addr") {
                    format!("--metrics-addr=127.0.0.1:{metrics_port}")
                } else {
                    a.clone()
                }
            })
            .collect();
        let log = std::env::temp_dir().join(format!("mvconf-operator-{ns}-{pod}.log"));
        let mut op = Operator {
            child: None,
            metrics_port,
            log,
            args,
            env: vec![("POD_NAMESPACE".into(), ns.into())],
            bin: Some(bin.to_owned()),
            pod_name: Some(pod.to_owned()),
        };
        op.spawn();
        op
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        // MVCONF_TEST_OPERATOR_BIN runs a test against another build (an
        // older commit's, to see a test fail before its fix).
        let bin = self.bin.clone().unwrap_or_else(|| {
            std::env::var("MVCONF_TEST_OPERATOR_BIN")
                .unwrap_or_else(|_| env!("CARGO_BIN_EXE_mvconf").to_owned())
        });
        let pod = (self.pod_name.clone()).unwrap_or_else(|| format!("op-{}", self.metrics_port));
        let child = Command::new(bin)
            .args(&self.args)
            .env("POD_NAME", pod)
            .env("RUST_LOG", "info,mvconf=debug")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start the operator");
        self.child = Some(child);
    }

    /// SIGTERM, as Kubernetes stops a pod, and waits up to `grace` for it
    /// to exit (then SIGKILL, as the kubelet does).
    pub fn terminate(&mut self, grace: Duration) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let start = Instant::now();
            while start.elapsed() < grace {
                if matches!(c.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGKILL, as a crash.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The sum of a metric's series whose line passes `keep`.
    pub async fn metric_sum(&self, name: &str, keep: impl Fn(&str) -> bool) -> Option<f64> {
        metric_sum(self.metrics_port, name, keep).await
    }

    /// One metric's value from /metrics (first line starting with `name`).
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let body = http_get(self.metrics_port, "/metrics").await?;
        body.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    /// The process ID, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The sum of the series of `name` (lines starting with it) that pass
/// `keep`, from the /metrics on `port`; `None` when it does not answer.
pub async fn metric_sum(port: u16, name: &str, keep: impl Fn(&str) -> bool) -> Option<f64> {
    let body = http_get(port, "/metrics").await?;
    Some(
        body.lines()
            .filter(|l| l.starts_with(name) && keep(l))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum(),
    )
}

/// Name of a binding for messages.
pub fn name_of(b: &MacvlanBinding) -> String {
    b.name_any()
}

/// A plain HTTP/1.0 GET on loopback; the body, or `None`.
pub async fn http_get(port: u16, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.ok()?;
    buf.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())
}
