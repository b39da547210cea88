//! `mvconf operator`: keeps every MacvlanBinding true, continuously.

pub(crate) mod check;
pub(crate) mod conflict;
pub(crate) mod context;
pub(crate) mod controller;
pub(crate) mod endpoints;
pub(crate) mod index;
pub(crate) mod lease;
pub(crate) mod metrics;
pub(crate) mod prober;
pub(crate) mod report;
pub(crate) mod rounds;
pub(crate) mod router;
pub(crate) mod shards;
pub(crate) mod slices;
pub(crate) mod status;
pub(crate) mod tenancy;
pub(crate) mod written;

use crate::cluster::Endpoint;
use crate::crd::MacvlanBinding;
use crate::engine::transport::{CallGate, CallLog, Limits};
use crate::fence::Fence;
use crate::tenancy::admit::Inline;
use context::{Context, CredentialSource, Settings};
use endpoints::{Registry, Signal};
use futures::StreamExt;
use kube::core::DeserializeGuard;
use kube::runtime::Predicate;
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::utils::WatchStreamExt;
use kube::runtime::{predicates, watcher};
use kube::{Api, Client, ResourceExt};
use lease::Elector;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tenancy::TenancyCache;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Who works on which swarm when several replicas run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Leadership {
    /// One Lease for the install: one replica works, the others stand by.
    Global,
    /// One Lease per swarm: the replicas share the swarms (fair share),
    /// and a swarm moves to another replica when its leader dies.
    PerSwarm,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum EndpointKindArg {
    Local,
    Docker,
    Dce,
}

/// The operator's settings.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct OperatorArgs {
    /// Default endpoint for bindings without their own: local (DOCKER_HOST
    /// or /var/run/docker.sock), docker (a manager URL) or dce.
    #[arg(long, value_enum, default_value_t = EndpointKindArg::Local, env = "MVCONF_ENDPOINT_KIND")]
    pub(crate) endpoint_kind: EndpointKindArg,
    /// URL of the default endpoint (docker: tcp://, https://, unix://; dce: http(s)://).
    #[arg(long, env = "MVCONF_ENDPOINT_URL")]
    pub(crate) endpoint_url: Option<String>,
    /// DCE per-node proxy prefix.
    #[arg(long, default_value = "/api", env = "MVCONF_DCE_NODE_PREFIX")]
    pub(crate) dce_node_prefix: String,
    /// Docker: engine port of the nodes at their swarm address.
    #[arg(long, env = "MVCONF_NODE_PORT")]
    pub(crate) node_port: Option<u16>,
    /// Secret (in the operator's namespace) with the default endpoint's
    /// credentials: username/password or token, optional ca.crt, tls.crt/tls.key.
    #[arg(
        long,
        env = "MVCONF_CREDENTIALS_SECRET",
        conflicts_with = "credentials_dir"
    )]
    pub(crate) credentials_secret: Option<String>,
    /// Directory with the same keys as files (a mounted Secret, mode 0400/0600).
    #[arg(long, env = "MVCONF_CREDENTIALS_DIR")]
    pub(crate) credentials_dir: Option<PathBuf>,
    /// Accept any server certificate (insecure; logged as a warning).
    #[arg(long, env = "MVCONF_INSECURE_SKIP_TLS_VERIFY")]
    pub(crate) insecure_skip_tls_verify: bool,
    /// Pin the Docker Engine API version.
    #[arg(long, env = "MVCONF_DOCKER_API_VERSION")]
    pub(crate) api_version: Option<String>,
    /// Namespaces to watch (repeat or comma-separate); all when omitted.
    #[arg(
        long = "namespace",
        value_delimiter = ',',
        env = "MVCONF_WATCH_NAMESPACES"
    )]
    pub(crate) namespaces: Vec<String>,
    /// Bindings reconciled at once. The passes of those that share a swarm
    /// view run together, in rounds of one observation each: this also
    /// caps how many passes one round takes.
    #[arg(long, default_value_t = 64, env = "MVCONF_CONCURRENCY")]
    pub(crate) concurrency: u16,
    /// Full resync period in seconds (Docker events trigger passes in between).
    #[arg(long, default_value_t = 300, env = "MVCONF_RESYNC_SECONDS")]
    pub(crate) resync_seconds: u64,
    /// Seconds the address of a slot scaled away goes to no other slot
    /// (switch and ARP caches forget it meanwhile); the slot coming back
    /// gets it. 0: at once.
    #[arg(long, default_value_t = 5, env = "MVCONF_RELEASE_COOLDOWN_SECONDS")]
    pub(crate) release_cooldown_seconds: u64,
    /// Duplicate-address detection: ARP-probe free addresses on a node of
    /// their network before handing them out, with this image (the
    /// operator's own, present on the swarm's nodes; the chart sets it).
    /// Unset: no probing. Networks with `arpProbe: false` are not probed.
    #[arg(long, env = "MVCONF_PROBE_IMAGE", value_name = "IMAGE")]
    pub(crate) probe_image: Option<String>,
    /// Seconds an address that answered a probe is skipped before it is
    /// probed again.
    #[arg(long, default_value_t = 60, env = "MVCONF_PROBE_RECHECK_SECONDS")]
    pub(crate) probe_recheck_seconds: u64,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:8080", env = "MVCONF_METRICS_ADDR")]
    pub(crate) metrics_addr: SocketAddr,
    /// Elect a leader with a Lease, so that several replicas are safe.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, env = "MVCONF_LEADER_ELECTION")]
    pub(crate) leader_election: bool,
    /// Name of the Lease (per-swarm leadership: also the prefix of the
    /// swarms' and replicas' Leases).
    #[arg(long, default_value = "mvconf-operator", env = "MVCONF_LEASE_NAME")]
    pub(crate) lease_name: String,
    /// `global`: one replica works on every swarm; `per-swarm`: one Lease
    /// per swarm, shared fairly among the replicas.
    #[arg(long, value_enum, default_value_t = Leadership::Global, env = "MVCONF_LEADERSHIP")]
    pub(crate) leadership: Leadership,
    /// Namespace of the Lease (and of the credentials Secret); default: the
    /// pod's namespace (POD_NAMESPACE), else "default".
    #[arg(long, env = "POD_NAMESPACE")]
    pub(crate) pod_namespace: Option<String>,
    /// Calls in flight per node when applying.
    #[arg(long, default_value_t = crate::reconcile::ApplyOptions::default().per_node)]
    pub(crate) apply_per_node: usize,
    /// Whether bindings may define networks and an endpoint themselves
    /// (`allow`, a single-team install) or only name the MacvlanNetworks
    /// the platform team granted their namespace (`deny`, multi-team).
    #[arg(long, value_enum, default_value_t = Inline::Allow, env = "MVCONF_INLINE")]
    pub(crate) inline: Inline,
    /// Write the status of MacvlanNetworks and SwarmEndpoints (who may use
    /// them, who does, how full they are). Default: when watching every
    /// namespace, so that the install that sees every binding writes it.
    #[arg(long, action = clap::ArgAction::Set, env = "MVCONF_TENANCY_STATUS")]
    pub(crate) tenancy_status: Option<bool>,
    /// Check that this install can work, as the operator would start: the
    /// API server, MacvlanBindings listed where it watches, the default
    /// endpoint's credentials, swarm and node engines (and with
    /// --check-url the running operator's readiness); print one line each
    /// and exit, 0 when all pass. The chart's `helm test` runs this.
    #[arg(long)]
    pub(crate) check: bool,
    /// With --check: the running operator's /readyz (its Service's URL).
    #[arg(long, requires = "check", value_name = "URL")]
    pub(crate) check_url: Option<String>,
}

/// Why the operator stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OperatorError {
    #[error("kubernetes client: {0}")]
    Client(#[source] kube::Error),
    #[error("configuration: {0}")]
    Config(String),
    #[error("leader election: {0}")]
    Lease(String),
    #[error("the install check failed (the FAILED lines say why)")]
    CheckFailed,
    #[error("metrics server on {addr}: {source}")]
    Metrics {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

fn default_endpoint(args: &OperatorArgs) -> Result<Endpoint, OperatorError> {
    let need_url = || {
        args.endpoint_url.clone().ok_or_else(|| {
            OperatorError::Config("--endpoint-url is required for this --endpoint-kind".into())
        })
    };
    Ok(match args.endpoint_kind {
        EndpointKindArg::Local => Endpoint::Local {
            docker_host: args
                .endpoint_url
                .clone()
                .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|s| !s.is_empty())),
            node_port: args.node_port,
        },
        EndpointKindArg::Docker => Endpoint::Docker {
            manager: need_url()?,
            node_port: args.node_port,
            node_urls: Default::default(),
        },
        EndpointKindArg::Dce => Endpoint::Dce {
            url: need_url()?.trim_end_matches('/').to_owned(),
            node_prefix: args.dce_node_prefix.clone(),
        },
    })
}

/// Turns true on SIGTERM or Ctrl-C.
fn shutdown_watch() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => futures::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term => {},
        }
        let _ = tx.send(true);
    });
    rx
}

type Guarded = DeserializeGuard<MacvlanBinding>;

/// The controllers, one per watched namespace (least privilege) or one for
/// all, with their caches and the senders that make them reconcile on
/// Docker events.
struct Controllers {
    controllers: Vec<Controller<Guarded>>,
    stores: Vec<reflector::Store<Guarded>>,
    triggers: Vec<mpsc::Sender<ObjectRef<Guarded>>>,
}

/// Runs the operator until SIGTERM. With leader election, a replica that
/// loses the lease cancels its passes and stands by again.
pub(crate) async fn run(args: OperatorArgs) -> Result<(), OperatorError> {
    if args.check {
        return match check::run(&args).await? {
            true => Ok(()),
            false => Err(OperatorError::CheckFailed),
        };
    }
    let client = Client::try_default().await.map_err(OperatorError::Client)?;
    let namespace = args
        .pod_namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let settings = detected_settings(&args, &namespace).await?;
    if settings.insecure_skip_tls_verify {
        tracing::warn!("--insecure-skip-tls-verify: server certificates are not checked");
    }
    tracing::info!(endpoint = %settings.default_endpoint.identity(), namespaces = ?args.namespaces, inline = ?args.inline, "starting the MacvlanBinding operator");
    let tenancy = Arc::new(TenancyCache::start(&client, args.inline).await?);

    let calls = Arc::new(CallLog::default());
    let metrics = Arc::new(metrics::Metrics::new(calls.clone()));
    let server = start_metrics_server(args.metrics_addr, &metrics).await?;
    let replica = Replica {
        args: &args,
        client,
        namespace,
        settings,
        metrics,
        calls,
        identity: replica_identity(),
        shutdown: shutdown_watch(),
        tenancy,
    };
    let result = match (args.leader_election, args.leadership) {
        (true, Leadership::Global) => replica.elect_and_lead().await,
        (true, Leadership::PerSwarm) => replica.share().await,
        (false, _) => {
            replica.metrics.leader.set(1);
            replica.lead(Fence::open()).await.map(|_| ())
        }
    };
    server.abort();
    result
}

/// One replica of the operator, across its terms of leadership.
struct Replica<'a> {
    args: &'a OperatorArgs,
    client: Client,
    namespace: String,
    settings: Settings,
    metrics: Arc<metrics::Metrics>,
    calls: Arc<CallLog>,
    identity: String,
    shutdown: watch::Receiver<bool>,
    tenancy: Arc<TenancyCache>,
}

/// How a term of leadership ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TermEnd {
    /// The controllers stopped on their own.
    Done,
    /// SIGTERM: the passes under way finished first.
    Shutdown,
    /// The fence closed: the passes under way were cancelled.
    Lost,
}

impl Replica<'_> {
    /// Standby until leader, lead until the lease is lost, and again. A
    /// standby is ready, so that a rollout can go on while another leads.
    async fn elect_and_lead(&self) -> Result<(), OperatorError> {
        let mut elector = Elector::new(
            self.client.clone(),
            &self.namespace,
            &self.args.lease_name,
            &self.identity,
            lease::TIMING,
        );
        self.metrics.set_ready(true);
        loop {
            tracing::info!(lease = %self.args.lease_name, identity = %self.identity, "waiting to lead");
            let mut shutdown = self.shutdown.clone();
            let leading = tokio::select! {
                l = elector.campaign() => l,
                _ = shutdown.wait_for(|s| *s) => return Ok(()),
            };
            self.metrics.leader.set(1);
            let end = self.lead(leading.fence.clone()).await;
            self.metrics.leader.set(0);
            self.metrics.forget_all_bindings();
            match end {
                Ok(TermEnd::Lost) => {
                    tracing::error!(
                        "lost the lease: the passes under way were cancelled; standing by"
                    );
                    elector = leading
                        .ended()
                        .await
                        .ok_or_else(|| OperatorError::Lease("the lease keeper failed".into()))?;
                }
                Ok(TermEnd::Done | TermEnd::Shutdown) => {
                    leading.release().await;
                    return Ok(());
                }
                Err(e) => {
                    leading.release().await;
                    return Err(e);
                }
            }
        }
    }

    /// Per-swarm leadership: every replica works, each on the swarms whose
    /// Lease it holds, until SIGTERM; the install's Lease elects the
    /// coordinator (bindings of no known swarm, tenancy status).
    async fn share(&self) -> Result<(), OperatorError> {
        let (shards, gained) = shards::Shards::start(
            self.client.clone(),
            &self.namespace,
            &self.args.lease_name,
            &self.identity,
            lease::TIMING,
            self.metrics.swarms_led.clone(),
        );
        let coordinator = Arc::new(Mutex::new(Fence::shut()));
        let current = coordinator.clone();
        let fence = Fence::follow(move || {
            current
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone()
        });
        self.metrics.set_ready(true);
        let (coordinating_tx, coordinating) = mpsc::unbounded_channel();
        let coordinate = tokio::spawn(coordinate(
            Elector::new(
                self.client.clone(),
                &self.namespace,
                &self.args.lease_name,
                &self.identity,
                lease::TIMING,
            ),
            coordinator,
            self.metrics.clone(),
            coordinating_tx,
            self.shutdown.clone(),
        ));
        let term = Term {
            fence,
            ends_with: Fence::open(),
            shards: Some((shards.clone(), gained, coordinating)),
        };
        let end = self.run_term(term).await;
        shards.release_all().await;
        let _ = coordinate.await;
        end.map(|_| ())
    }

    /// One term: fresh swarm views (their mutations behind `fence`), fresh
    /// caches and controllers, until SIGTERM or the fence closes.
    async fn lead(&self, fence: Fence) -> Result<TermEnd, OperatorError> {
        self.run_term(Term {
            fence: fence.clone(),
            ends_with: fence,
            shards: None,
        })
        .await
    }

    async fn run_term(&self, term: Term) -> Result<TermEnd, OperatorError> {
        let Term {
            fence,
            ends_with,
            shards,
        } = term;
        let (shards, gained, coordinating) = match shards {
            Some((s, g, c)) => (Some(s), Some(g), Some(c)),
            None => (None, None, None),
        };
        let (signal_tx, signal_rx) = mpsc::channel(1024);
        let gate = CallGate {
            log: self.calls.clone(),
            fence: fence.clone(),
        };
        let registry = Arc::new(Registry::new(
            signal_tx,
            gate,
            shards.clone(),
            self.settings.resync,
        ));
        // Every slot's address is known before the first pass of the term.
        let (slices, slice_watches) =
            slices::SliceCache::start(&self.client, &self.args.namespaces).await?;
        let ctx = self.context(registry, fence.clone(), slices, shards);
        let (stop_tx, stop_rx) = watch::channel(false);
        let Controllers {
            controllers,
            stores,
            triggers,
        } = controllers(self.args, &self.client, &stop_rx);
        let _ = ctx.stores.set(stores);
        let regrant = tokio::spawn(readmit_on_change(ctx.clone(), triggers.clone()));
        let usage = self
            .args
            .tenancy_status
            .unwrap_or(self.args.namespaces.is_empty())
            .then(|| tokio::spawn(tenancy::publish_usage(ctx.clone())));
        let takeovers = gained
            .zip(coordinating)
            .map(|(g, c)| tokio::spawn(on_takeover(g, c, triggers.clone(), ctx.clone())));
        let routes = route_docker_events(signal_rx, triggers, ctx.clone());
        let end = run_controllers(
            controllers,
            &ctx,
            &self.metrics,
            &stop_tx,
            &ends_with,
            self.shutdown.clone(),
        )
        .await;
        for r in routes {
            r.abort();
        }
        if let Some(t) = takeovers {
            t.abort();
        }
        regrant.abort();
        for w in slice_watches {
            w.abort();
        }
        if let Some(u) = usage {
            u.abort();
        }
        Ok(end)
    }

    /// What every reconcile of this term shares.
    fn context(
        &self,
        registry: Arc<Registry>,
        fence: Fence,
        slices: slices::SliceCache,
        shards: Option<Arc<shards::Shards>>,
    ) -> Arc<Context> {
        let recorder = Recorder::new(
            self.client.clone(),
            Reporter {
                controller: "mvconf-operator".into(),
                instance: Some(self.identity.clone()),
            },
        );
        Arc::new(Context {
            client: self.client.clone(),
            settings: self.settings.clone(),
            recorder,
            registry,
            metrics: self.metrics.clone(),
            stores: OnceLock::new(),
            started: Mutex::new(Default::default()),
            failures: Mutex::new(Default::default()),
            validated: Mutex::new(Default::default()),
            index: Mutex::new(Default::default()),
            fence,
            swarms: Mutex::new(Default::default()),
            tenancy: self.tenancy.clone(),
            slices,
            written_bindings: Default::default(),
            shards,
        })
    }
}

/// What a run of the controllers works under.
struct Term {
    /// Of status and slice writes (per swarm: of those of no known swarm).
    fence: Fence,
    /// The controllers stop when it closes (per swarm: never).
    ends_with: Fence,
    /// Per-swarm leadership: the swarm Leases, the swarms gained, and the
    /// coordinator's terms.
    shards: Option<(
        Arc<shards::Shards>,
        mpsc::UnboundedReceiver<String>,
        mpsc::UnboundedReceiver<()>,
    )>,
}

/// Per-swarm leadership: keeps campaigning for the install's Lease; the
/// holder coordinates (its fence is put in `current`).
async fn coordinate(
    mut elector: Elector,
    current: Arc<Mutex<Fence>>,
    metrics: Arc<metrics::Metrics>,
    began: mpsc::UnboundedSender<()>,
    mut shutdown: watch::Receiver<bool>,
) {
    let set = |f: Fence| {
        *current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = f
    };
    loop {
        let leading = tokio::select! {
            l = elector.campaign() => l,
            _ = shutdown.wait_for(|s| *s) => return,
        };
        set(leading.fence.clone());
        metrics.leader.set(1);
        let _ = began.send(());
        let lost = tokio::select! {
            _ = leading.fence.closed() => true,
            _ = shutdown.wait_for(|s| *s) => false,
        };
        set(Fence::shut());
        metrics.leader.set(0);
        if !lost {
            leading.release().await;
            return;
        }
        tracing::error!("lost the coordinator lease; standing by");
        let Some(next) = leading.ended().await else {
            return;
        };
        elector = next;
    }
}

/// Per-swarm leadership: a swarm taken over reconciles its bindings; the
/// coordinator's new term reconciles every binding (those of no known
/// swarm are its own).
async fn on_takeover(
    mut gained: mpsc::UnboundedReceiver<String>,
    mut coordinating: mpsc::UnboundedReceiver<()>,
    triggers: Vec<mpsc::Sender<ObjectRef<Guarded>>>,
    ctx: Arc<Context>,
) {
    loop {
        let keys: Vec<(String, String)> = tokio::select! {
            g = gained.recv() => match g {
                Some(swarm) => ctx.index.lock().unwrap_or_else(std::sync::PoisonError::into_inner).on(&swarm),
                None => return,
            },
            c = coordinating.recv() => match c {
                Some(()) => ctx.bindings().iter().filter_map(|g| context::valid(g)).map(|b| (b.namespace().unwrap_or_default(), b.name_any())).collect(),
                None => return,
            },
        };
        for (ns, name) in keys {
            let r = ObjectRef::<Guarded>::new(&name).within(&ns);
            for t in &triggers {
                if t.try_send(r.clone()).is_err() {
                    tracing::warn!(binding = %r, "reconcile queue full: the takeover waits for the resync");
                }
            }
        }
    }
}

/// [`settings`], where the default endpoint is the local engine's default
/// socket (`local`, no `--endpoint-url`, no `DOCKER_HOST`): a pod on a DCE
/// controller node (the chart's `local` pins it to a swarm manager) then
/// uses the controller that node's service `dce_base` names, with the
/// default credentials, or none where DCE allows anonymous access, as the
/// CLI does. Asked once, at start.
pub(crate) async fn detected_settings(
    args: &OperatorArgs,
    namespace: &str,
) -> Result<Settings, OperatorError> {
    let mut settings = settings(args, namespace)?;
    if !settings.default_endpoint.is_default_socket() {
        return Ok(settings);
    }
    let local = crate::cluster::Cluster::new(crate::cluster::ClusterConfig {
        endpoint: Some(settings.default_endpoint.clone()),
        ..Default::default()
    })
    .map_err(|e| OperatorError::Config(e.to_string()))?;
    match crate::cluster::detect::ask(local.manager()).await {
        Ok(Ok(crate::cluster::detect::Found::Dce { url, why })) => {
            tracing::info!("default endpoint: DCE {url}, detected: {why}");
            settings.default_endpoint = Endpoint::Dce {
                url,
                node_prefix: args.dce_node_prefix.clone(),
            };
        }
        Ok(Ok(crate::cluster::detect::Found::NotDce { why })) => {
            tracing::info!("default endpoint: the local engine (no DCE detected: {why})");
        }
        Ok(Err(refused)) => return Err(OperatorError::Config(refused)),
        // The passes meet it again and report it where it matters.
        Err(e) => tracing::warn!(
            "default endpoint: the local engine, which cannot be asked about DCE: {e}"
        ),
    }
    Ok(settings)
}

fn settings(args: &OperatorArgs, namespace: &str) -> Result<Settings, OperatorError> {
    Ok(Settings {
        default_endpoint: default_endpoint(args)?,
        default_credentials: match (&args.credentials_secret, &args.credentials_dir) {
            (Some(name), _) => CredentialSource::Secret {
                namespace: namespace.to_owned(),
                name: name.clone(),
            },
            (None, Some(dir)) => CredentialSource::Dir(dir.clone()),
            (None, None) => CredentialSource::None,
        },
        insecure_skip_tls_verify: args.insecure_skip_tls_verify,
        api_version: args.api_version.clone(),
        limits: Limits::default(),
        resync: Duration::from_secs(args.resync_seconds.max(10)),
        release_cooldown: Duration::from_secs(args.release_cooldown_seconds),
        probe: args
            .probe_image
            .as_ref()
            .filter(|i| !i.trim().is_empty())
            .map(|image| crate::probe::container::ProbeSpec {
                image: image.clone(),
                timing: crate::probe::Timing::default(),
            }),
        probe_freshness: crate::probe::book::Freshness {
            recheck: Duration::from_secs(args.probe_recheck_seconds.max(1)),
            ..Default::default()
        },
        observe_concurrency: 32,
        apply_per_node: args.apply_per_node.max(1),
        install: format!("{namespace}/{}", args.lease_name),
        namespace: namespace.to_owned(),
    })
}

/// Serves /metrics, /healthz and /readyz from a task of their own. The task
/// binds the address again; binding it here first makes a taken address
/// stop the operator at start instead of failing inside the task.
async fn start_metrics_server(
    addr: SocketAddr,
    metrics: &Arc<metrics::Metrics>,
) -> Result<JoinHandle<std::io::Result<()>>, OperatorError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| OperatorError::Metrics { addr, source })?;
    drop(listener);
    Ok(tokio::spawn(metrics::serve(addr, metrics.clone())))
}

/// This replica's name in the Lease and in events: its pod's, when it runs
/// in one.
fn replica_identity() -> String {
    std::env::var("POD_NAME")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| format!("mvconf-{}", std::process::id()))
}

/// A MacvlanNetwork, SwarmEndpoint or namespace label changed: every
/// binding is admitted again, and those whose verdict changed reconcile (a
/// burst of changes, once). A namespace created elsewhere costs no pass.
async fn readmit_on_change(ctx: Arc<Context>, triggers: Vec<mpsc::Sender<ObjectRef<Guarded>>>) {
    let mut changes = ctx.tenancy.changes();
    changes.mark_unchanged();
    let mut verdicts: std::collections::HashMap<ObjectRef<Guarded>, context::Verdict> =
        std::collections::HashMap::new();
    let mut judge = |ctx: &Context| {
        let mut changed = Vec::new();
        let mut now = std::collections::HashMap::new();
        for g in ctx.bindings() {
            let Some(b) = context::valid(&g) else {
                continue;
            };
            let r = ObjectRef::from_obj(&*g);
            let v = ctx.admitted(b);
            if verdicts.get(&r) != Some(&v) {
                changed.push(r.clone());
            }
            now.insert(r, v);
        }
        verdicts = now;
        changed
    };
    let _ = judge(&ctx);
    while changes.changed().await.is_ok() {
        tokio::time::sleep(Duration::from_millis(200)).await;
        changes.mark_unchanged();
        for r in judge(&ctx) {
            for t in &triggers {
                if t.try_send(r.clone()).is_err() {
                    tracing::warn!(binding = %r, "reconcile queue full: the grant change waits for the resync");
                }
            }
        }
    }
}

/// Each controller stops taking new passes once `stop` turns true.
fn controllers(args: &OperatorArgs, client: &Client, stop: &watch::Receiver<bool>) -> Controllers {
    let apis: Vec<Api<Guarded>> = if args.namespaces.is_empty() {
        vec![Api::all(client.clone())]
    } else {
        args.namespaces
            .iter()
            .map(|ns| Api::namespaced(client.clone(), ns))
            .collect()
    };
    let mut all = Controllers {
        controllers: Vec::new(),
        stores: Vec::new(),
        triggers: Vec::new(),
    };
    for api in apis {
        let (reader, writer) = reflector::store();
        let stream = watcher(api, watcher::Config::default().any_semantic())
            .default_backoff()
            .reflect(writer)
            .applied_objects()
            .predicate_filter(
                predicates::generation.combine(predicates::finalizers),
                Default::default(),
            );
        let (trigger_tx, trigger_rx) = mpsc::channel::<ObjectRef<Guarded>>(1024);
        all.triggers.push(trigger_tx);
        all.stores.push(reader.clone());
        let mut stop = stop.clone();
        let controller = Controller::for_stream(stream, reader)
            .with_config(ControllerConfig::default().concurrency(args.concurrency))
            .reconcile_on(tokio_stream_from(trigger_rx))
            .graceful_shutdown_on(async move {
                let _ = stop.wait_for(|s| *s).await;
            });
        all.controllers.push(controller);
    }
    all
}

/// Docker events -> reconciles. Each binding lives in one namespace, so
/// every controller gets the triggers and ignores unknown objects.
fn route_docker_events(
    signals: mpsc::Receiver<Signal>,
    triggers: Vec<mpsc::Sender<ObjectRef<Guarded>>>,
    ctx: Arc<Context>,
) -> [JoinHandle<()>; 2] {
    let (route_tx, mut route_rx) = mpsc::channel::<ObjectRef<Guarded>>(1024);
    let route = tokio::spawn(router::route(signals, route_tx, ctx));
    let fan_out = tokio::spawn(async move {
        while let Some(r) = route_rx.recv().await {
            for t in &triggers {
                let _ = t.try_send(r.clone());
            }
        }
    });
    [route, fan_out]
}

/// Runs the controllers until they end, SIGTERM, or the fence closes. On
/// SIGTERM the passes under way finish first, so that no change to a swarm
/// is cut in half, unless the fence closes meanwhile. When the fence closes
/// they are dropped at once: another replica may lead soon, and every
/// Docker call they would still make is refused by the fence anyway.
async fn run_controllers(
    controllers: Vec<Controller<Guarded>>,
    ctx: &Arc<Context>,
    metrics: &metrics::Metrics,
    stop_tx: &watch::Sender<bool>,
    fence: &Fence,
    mut shutdown: watch::Receiver<bool>,
) -> TermEnd {
    let runs = controllers.into_iter().map(|c| {
        let ctx = ctx.clone();
        c.run(controller::reconcile, controller::error_policy, ctx)
            .for_each(|r| async move {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "controller event");
                }
            })
    });
    let all = futures::future::join_all(runs);
    metrics.set_ready(true);
    tokio::pin!(all);
    tokio::select! {
        _ = &mut all => TermEnd::Done,
        _ = shutdown.wait_for(|s| *s) => {
            tracing::info!("SIGTERM: finishing running passes");
            let _ = stop_tx.send(true);
            tokio::select! {
                _ = &mut all => TermEnd::Shutdown,
                _ = fence.closed() => TermEnd::Lost,
            }
        }
        _ = fence.closed() => TermEnd::Lost,
    }
}

/// A receiver as a stream, without another dependency.
fn tokio_stream_from<T: Send + 'static>(
    mut rx: mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send + 'static {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
