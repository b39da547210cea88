//! How a swarm is reached: the manager's API plus one engine per node.
//!
//! Three ways: `local` (the local engine, the embedded default), `docker` (a
//! manager URL; nodes at their swarm address plus a port, or an explicit
//! map) and `dce` (a DCE controller, which serves the manager's API at its
//! root and each node's engine under `/api/nodes/<address>/docker`).

pub(crate) mod detect;

use crate::crd::{EndpointKind, EndpointSpec};
use crate::engine::transport::{
    Address, Auth, CallGate, CallLog, Connections, Limits, Tls, Transport, build_client,
};
use crate::engine::{Engine, EngineError, ErrorKind};
use reqwest::Method;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use tokio::sync::OnceCell;

/// The engine port DCE 2.x nodes use behind the controller.
pub(crate) const DCE_ENGINE_PORT: u16 = 12376;
/// DCE's per-node engine proxy prefix unless told otherwise (`/dce` on
/// some versions).
pub(crate) const DCE_NODE_PREFIX: &str = "/api";
/// The engine port of a node reached directly without TLS.
pub(crate) const DOCKER_PORT: u16 = 2375;
/// ... and with TLS.
pub(crate) const DOCKER_TLS_PORT: u16 = 2376;

/// Where the swarm's engines are.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// The local engine (`DOCKER_HOST`, else `/var/run/docker.sock`), which
    /// is the swarm manager; other nodes at their swarm address + `node_port`.
    Local {
        docker_host: Option<String>,
        node_port: Option<u16>,
    },
    /// A swarm manager's Engine API.
    Docker {
        manager: String,
        node_port: Option<u16>,
        /// Node hostname or ID -> engine URL.
        node_urls: BTreeMap<String, String>,
    },
    /// A DCE controller.
    Dce {
        url: String,
        /// `/api` or `/dce`.
        node_prefix: String,
    },
}

/// `url` without any `user:password@`, for names, logs and errors (such a
/// URL is refused anyway, but its refusal must not print it).
fn without_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let end = rest.find('/').unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

impl Endpoint {
    /// Short identity, one per swarm: bindings on the same identity share
    /// one view of allocations.
    pub(crate) fn identity(&self) -> String {
        match self {
            Endpoint::Local { docker_host, .. } => format!(
                "local:{}",
                docker_host
                    .as_deref()
                    .unwrap_or("unix:///var/run/docker.sock")
            ),
            Endpoint::Docker { manager, .. } => format!("docker:{}", without_userinfo(manager)),
            Endpoint::Dce { url, .. } => format!("dce:{}", without_userinfo(url)),
        }
    }

    /// The endpoint a binding's `spec.endpoint` names, with the CRD's
    /// defaults for what it leaves out: DCE node prefix `/api`, no Docker
    /// node port (2375, or 2376 with TLS). The operator and the CLI both map
    /// through here; a caller with its own defaults (the CLI's flags) fills
    /// them into the spec first.
    ///
    /// A DCE URL loses its trailing `/`, as `--dce`, `mvconf login` and the
    /// operator's default endpoint do: `https://dce/` and `https://dce` are
    /// one controller, so they must be one identity (one view of its
    /// allocations), not two.
    pub(crate) fn from_spec(spec: &EndpointSpec) -> Endpoint {
        match spec.kind {
            EndpointKind::Dce => Endpoint::Dce {
                url: spec.url.trim_end_matches('/').to_owned(),
                node_prefix: spec
                    .dce_node_prefix
                    .clone()
                    .unwrap_or_else(|| DCE_NODE_PREFIX.to_owned()),
            },
            EndpointKind::Docker => Endpoint::Docker {
                manager: spec.url.clone(),
                node_port: spec.node_port,
                node_urls: spec.node_urls.clone(),
            },
        }
    }

    /// The local engine at the default socket: nothing named an engine
    /// (where DCE detection asks it).
    pub(crate) fn is_default_socket(&self) -> bool {
        matches!(
            self,
            Endpoint::Local {
                docker_host: None,
                ..
            }
        )
    }

    /// The local default, from `DOCKER_HOST` as the docker CLI reads it.
    pub(crate) fn local_from_env() -> Self {
        Endpoint::Local {
            docker_host: std::env::var("DOCKER_HOST").ok().filter(|s| !s.is_empty()),
            node_port: None,
        }
    }
}

/// Everything needed to reach a swarm.
#[derive(Debug, Clone, Default)]
pub struct ClusterConfig {
    pub endpoint: Option<Endpoint>,
    pub auth: Auth,
    pub tls: Tls,
    pub limits: Limits,
    /// Pin the Engine API version (e.g. `1.30`) instead of negotiating.
    pub api_version: Option<String>,
}

/// A configuration problem found before any request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("endpoint {endpoint}: {message}")]
pub struct ConfigError {
    pub(crate) endpoint: String,
    pub(crate) message: String,
}

/// One swarm node and, when it can be addressed, its engine.
#[derive(Debug, Clone)]
pub struct ClusterNode {
    pub id: String,
    pub hostname: String,
    /// The node's swarm address (its host IP).
    pub(crate) addr: String,
    /// Swarm's view: `ready`, `down`, ...
    pub(crate) state: String,
    pub engine: Engine,
}

/// A reachable swarm: the manager and the node engines, created lazily and
/// kept so that each negotiates its API version once.
#[derive(Debug)]
pub struct Cluster {
    endpoint: Endpoint,
    config: ClusterConfig,
    manager: Engine,
    manager_address: Address,
    tcp: reqwest::Client,
    /// Requests in flight to this cluster's engines (the limits' `in_flight`).
    slots: Arc<tokio::sync::Semaphore>,
    gate: CallGate,
    local_node: OnceCell<String>,
    swarm_id: OnceCell<String>,
    engines: Mutex<HashMap<String, Engine>>,
}

impl Cluster {
    /// Builds the clients; no request is made yet.
    pub fn new(config: ClusterConfig) -> Result<Self, ConfigError> {
        Self::gated(config, CallGate::default())
    }

    /// As [`Cluster::new`], counting calls into a shared log and sending
    /// mutations only while the gate's fence is open.
    pub(crate) fn gated(config: ClusterConfig, gate: CallGate) -> Result<Self, ConfigError> {
        let endpoint = config
            .endpoint
            .clone()
            .unwrap_or_else(Endpoint::local_from_env);
        let fail = |message: String| ConfigError {
            endpoint: endpoint.identity(),
            message,
        };
        let has_tls = config.tls.ca_pem.is_some() || config.tls.identity_pem.is_some();
        let tcp = build_client(None, &config.tls, &config.limits).map_err(fail)?;
        let (manager_address, label) = match &endpoint {
            Endpoint::Local { docker_host, .. } => (
                Address::parse(
                    docker_host
                        .as_deref()
                        .unwrap_or("unix:///var/run/docker.sock"),
                    has_tls,
                )
                .map_err(fail)?,
                "manager",
            ),
            Endpoint::Docker { manager, .. } => {
                (Address::parse(manager, has_tls).map_err(fail)?, "manager")
            }
            Endpoint::Dce { url, node_prefix } => {
                if !node_prefix.starts_with('/') {
                    return Err(fail(format!(
                        "node prefix {node_prefix:?} must start with '/'"
                    )));
                }
                match Address::parse(url, has_tls).map_err(fail)? {
                    a @ Address::Http(_) => (a, "dce"),
                    Address::Unix(_) => {
                        return Err(fail(
                            "a DCE controller is reached over http(s), not a unix socket".into(),
                        ));
                    }
                }
            }
        };
        let client = match &manager_address {
            Address::Unix(p) => build_client(Some(p), &config.tls, &config.limits).map_err(fail)?,
            Address::Http(_) => tcp.clone(),
        };
        let slots = Arc::new(tokio::sync::Semaphore::new(config.limits.in_flight.max(1)));
        let manager = Engine::new(
            Transport::new(
                label,
                Connections {
                    client,
                    slots: slots.clone(),
                },
                &manager_address,
                &config.auth,
                config.limits.clone(),
                config.api_version.clone(),
                gate.clone(),
            )
            .map_err(fail)?,
        );
        Ok(Self {
            endpoint,
            config,
            manager,
            manager_address,
            tcp,
            slots,
            gate,
            local_node: OnceCell::new(),
            swarm_id: OnceCell::new(),
            engines: Mutex::new(HashMap::new()),
        })
    }

    /// The swarm manager's API.
    pub fn manager(&self) -> &Engine {
        &self.manager
    }

    /// Counts of every API call made through this cluster.
    pub(crate) fn calls(&self) -> &Arc<CallLog> {
        &self.gate.log
    }

    /// The DCE controller's version (`DCEVersion`), for diagnostics.
    pub async fn dce_version(&self) -> Result<Option<String>, EngineError> {
        if !matches!(self.endpoint, Endpoint::Dce { .. }) {
            return Ok(None);
        }
        let t = self.manager.transport();
        let a = t
            .send(Method::GET, "/api/version", None, &[], None, true)
            .await?;
        let v: serde_json::Value = t.decode("GET /api/version", &a)?;
        Ok(v.get("DCEVersion")
            .and_then(|x| x.as_str())
            .map(str::to_owned))
    }

    /// Whether the DCE controller answers with this cluster's credentials
    /// (or none): one call to its node map.
    pub(crate) async fn dce_check_access(&self) -> Result<(), EngineError> {
        self.dce_ip_map().await.map(|_| ())
    }

    /// An engine for an address, reused while the address stays the same.
    fn engine_for(&self, label: &str, address: Address) -> Result<Engine, EngineError> {
        let key = format!("{label}@{address:?}");
        let mut engines = self.engines.lock().map_err(|_| {
            EngineError::new(
                ErrorKind::Engine,
                label,
                "connect",
                None,
                "engine cache poisoned",
            )
        })?;
        if let Some(e) = engines.get(&key) {
            return Ok(e.clone());
        }
        let bad = |m: String| EngineError::new(ErrorKind::Engine, label, "connect", None, m);
        let client = match &address {
            Address::Unix(p) => {
                build_client(Some(p), &self.config.tls, &self.config.limits).map_err(bad)?
            }
            Address::Http(_) => self.tcp.clone(),
        };
        let engine = Engine::new(
            Transport::new(
                label,
                Connections {
                    client,
                    slots: self.slots.clone(),
                },
                &address,
                &self.config.auth,
                self.config.limits.clone(),
                self.config.api_version.clone(),
                self.gate.clone(),
            )
            .map_err(bad)?,
        );
        engines.insert(key, engine.clone());
        Ok(engine)
    }

    fn direct_port(&self, explicit: Option<u16>) -> (u16, &'static str) {
        let tls = self.config.tls.ca_pem.is_some() || self.config.tls.identity_pem.is_some();
        match (explicit, tls) {
            (Some(p), true) => (p, "https"),
            (Some(p), false) => (p, "http"),
            (None, true) => (DOCKER_TLS_PORT, "https"),
            (None, false) => (DOCKER_PORT, "http"),
        }
    }

    /// The swarm's identity, whatever URL reached it: `Swarm.Cluster.ID`
    /// from a manager's `GET /info`. Asked once.
    pub async fn swarm_id(&self) -> Result<&str, EngineError> {
        self.swarm_id
            .get_or_try_init(|| async {
                let info = self.manager.info().await?;
                // The same answer names the manager's own node: asked once.
                let _ = self.local_node.set(info.swarm.node_id.clone());
                let id = info.swarm.cluster.id;
                if id.is_empty() {
                    return Err(EngineError::new(
                        ErrorKind::Unsupported,
                        self.manager.label(),
                        "GET /info",
                        None,
                        format!(
                            "not a swarm manager (swarm state {:?}): give the address of a manager",
                            info.swarm.local_node_state
                        ),
                    ));
                }
                Ok(id)
            })
            .await
            .map(String::as_str)
    }

    /// The swarm ID, when [`Cluster::swarm_id`] has found it.
    pub(crate) fn known_swarm_id(&self) -> Option<&str> {
        self.swarm_id.get().map(String::as_str)
    }

    /// The swarm's nodes, each with its engine. Fails only when the manager
    /// cannot be asked; a node whose engine is down is still listed (its
    /// calls will fail with `Unreachable`).
    pub async fn nodes(&self) -> Result<Vec<ClusterNode>, EngineError> {
        let nodes = self.manager.nodes().await?;
        let dce_map = match &self.endpoint {
            Endpoint::Dce { .. } => Some(self.dce_ip_map().await?),
            _ => None,
        };
        let local_id = match &self.endpoint {
            Endpoint::Local { .. } => Some(
                self.local_node
                    .get_or_try_init(|| async {
                        self.manager.info().await.map(|i| i.swarm.node_id)
                    })
                    .await?
                    .clone(),
            ),
            _ => None,
        };
        let mut out = Vec::with_capacity(nodes.len());
        for n in nodes {
            let hostname = n.description.hostname.clone();
            let label = if hostname.is_empty() {
                n.id.clone()
            } else {
                hostname.clone()
            };
            let engine = match &self.endpoint {
                Endpoint::Local { node_port, .. } => {
                    if local_id.as_deref() == Some(n.id.as_str()) {
                        // The same socket, named after the node in errors.
                        self.engine_for(&label, self.manager_address.clone())?
                    } else {
                        let (port, scheme) = self.direct_port(*node_port);
                        self.engine_for(
                            &label,
                            Address::Http(format!("{scheme}://{}:{port}", n.status.addr)),
                        )?
                    }
                }
                Endpoint::Docker {
                    node_port,
                    node_urls,
                    ..
                } => {
                    let explicit = node_urls.get(&hostname).or_else(|| node_urls.get(&n.id));
                    let address = match explicit {
                        Some(url) => {
                            let tls = self.config.tls.ca_pem.is_some()
                                || self.config.tls.identity_pem.is_some();
                            Address::parse(url, tls).map_err(|m| {
                                EngineError::new(ErrorKind::Engine, &label, "connect", None, m)
                            })?
                        }
                        None => {
                            let (port, scheme) = self.direct_port(*node_port);
                            Address::Http(format!("{scheme}://{}:{port}", n.status.addr))
                        }
                    };
                    self.engine_for(&label, address)?
                }
                Endpoint::Dce { url, node_prefix } => {
                    let advertised = dce_map
                        .as_ref()
                        .and_then(|m| m.get(&n.id).cloned())
                        .unwrap_or_else(|| format!("{}:{DCE_ENGINE_PORT}", n.status.addr));
                    let base = format!(
                        "{}{}/nodes/{}/docker",
                        url.trim_end_matches('/'),
                        node_prefix.trim_end_matches('/'),
                        crate::engine::transport::segment(&advertised)
                    );
                    self.engine_for(&label, Address::Http(base))?
                }
            };
            out.push(ClusterNode {
                id: n.id,
                hostname,
                addr: n.status.addr,
                state: n.status.state,
                engine,
            });
        }
        out.sort_by(|a, b| a.hostname.cmp(&b.hostname).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// DCE's node map: node ID -> `ip:port` of its engine. An older
    /// controller without it (404) gives an empty map, and nodes fall back
    /// to their swarm address and DCE's engine port.
    async fn dce_ip_map(&self) -> Result<HashMap<String, String>, EngineError> {
        let t = self.manager.transport();
        let a = match t
            .send(
                Method::GET,
                "/api/nodes-utils/ip-map",
                None,
                &[],
                None,
                true,
            )
            .await
        {
            Ok(a) => a,
            // The controller's own 404 page: it has no ip-map.
            Err(e) if e.status == Some(404) => return Ok(HashMap::new()),
            Err(e) => return Err(e),
        };
        let v: serde_json::Value = t.decode("GET /api/nodes-utils/ip-map", &a)?;
        Ok(parse_ip_map(&v))
    }
}

/// `{ "<nodeId>": {"advertised_address": "ip:port", ...} }`, also spelled
/// `AdvertisedAddress` by some versions; falls back to `advertised_ip`
/// plus DCE's engine port.
pub(crate) fn parse_ip_map(v: &serde_json::Value) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let Some(obj) = v.as_object() else { return out };
    for (id, node) in obj {
        let get = |k: &str| {
            node.get(k)
                .and_then(|x| x.as_str())
                .filter(|s| !s.is_empty())
        };
        let addr = get("advertised_address")
            .or_else(|| get("AdvertisedAddress"))
            .map(str::to_owned)
            .or_else(|| {
                get("advertised_ip")
                    .or_else(|| get("AdvertisedIP"))
                    .map(|ip| format!("{ip}:{DCE_ENGINE_PORT}"))
            });
        if let Some(a) = addr {
            out.insert(id.clone(), a);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_with_credentials_is_refused_and_never_printed() {
        let endpoint = Endpoint::Dce {
            url: "https://admin:s3cret@dce.example.com/".into(),
            node_prefix: "/api".into(),
        };
        assert_eq!(endpoint.identity(), "dce:https://dce.example.com/");
        let e = Cluster::new(ClusterConfig {
            endpoint: Some(endpoint),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("credentials in a URL") && !e.contains("s3cret"),
            "{e}"
        );
    }

    #[test]
    fn reads_both_spellings_of_the_ip_map() {
        let v = serde_json::json!({
            "n1": {"hostname": "a", "advertised_ip": "10.0.0.1", "advertised_address": "10.0.0.1:12376"},
            "n2": {"hostname": "b", "AdvertisedAddress": "10.0.0.2:2375"},
            "n3": {"hostname": "c", "advertised_ip": "10.0.0.3"},
            "n4": {"hostname": "d"}
        });
        let m = parse_ip_map(&v);
        assert_eq!(m["n1"], "10.0.0.1:12376");
        assert_eq!(m["n2"], "10.0.0.2:2375");
        assert_eq!(m["n3"], "10.0.0.3:12376");
        assert!(!m.contains_key("n4"));
    }

    #[test]
    fn identities_tell_swarms_apart() {
        let a = Endpoint::Dce {
            url: "https://dce-a".into(),
            node_prefix: "/api".into(),
        };
        let b = Endpoint::Docker {
            manager: "tcp://10.0.0.1:2375".into(),
            node_port: None,
            node_urls: Default::default(),
        };
        assert_ne!(a.identity(), b.identity());
        assert_eq!(a.identity(), "dce:https://dce-a");
    }

    fn spec(kind: EndpointKind, url: &str) -> EndpointSpec {
        EndpointSpec {
            kind,
            url: url.into(),
            secret_ref: None,
            insecure_skip_tls_verify: false,
            dce_node_prefix: None,
            node_port: None,
            node_urls: Default::default(),
        }
    }

    #[test]
    fn a_dce_spec_gets_the_default_prefix_and_one_identity_with_or_without_slash() {
        let with = Endpoint::from_spec(&spec(EndpointKind::Dce, "https://dce-a/"));
        let without = Endpoint::from_spec(&spec(EndpointKind::Dce, "https://dce-a"));
        assert_eq!(with, without);
        assert_eq!(
            with,
            Endpoint::Dce {
                url: "https://dce-a".into(),
                node_prefix: "/api".into(),
            }
        );
        let own = EndpointSpec {
            dce_node_prefix: Some("/dce".into()),
            ..spec(EndpointKind::Dce, "https://dce-a")
        };
        assert!(matches!(
            Endpoint::from_spec(&own),
            Endpoint::Dce { node_prefix, .. } if node_prefix == "/dce"
        ));
    }

    #[test]
    fn a_docker_spec_keeps_its_port_and_node_urls() {
        let s = EndpointSpec {
            node_port: Some(2376),
            node_urls: [("n1".to_owned(), "https://10.0.0.1:2376".to_owned())].into(),
            ..spec(EndpointKind::Docker, "tcp://10.0.0.1:2376")
        };
        assert_eq!(
            Endpoint::from_spec(&s),
            Endpoint::Docker {
                manager: "tcp://10.0.0.1:2376".into(),
                node_port: Some(2376),
                node_urls: s.node_urls.clone(),
            }
        );
    }

    #[test]
    fn a_dce_endpoint_must_be_http() {
        let cfg = ClusterConfig {
            endpoint: Some(Endpoint::Dce {
                url: "unix:///x.sock".into(),
                node_prefix: "/api".into(),
            }),
            ..Default::default()
        };
        assert!(Cluster::new(cfg).is_err());
    }
}
