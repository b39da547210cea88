//! A typed client for the part of the Docker Engine API mvconf uses.
//!
//! One [`Engine`] is one endpoint: a node's engine, a swarm manager, or a
//! node reached through a DCE controller's proxy. How a whole swarm is
//! reached is [`crate::cluster`]'s business.

pub(crate) mod error;
pub mod events;
pub mod models;
pub mod transport;

pub use error::{EngineError, ErrorKind};
use models::*;
use reqwest::Method;
use serde::Serialize;
use serde_json::json;
use std::net::Ipv4Addr;
use std::sync::Arc;
use transport::{Transport, segment};

pub(crate) type Result<T, E = EngineError> = std::result::Result<T, E>;

/// One Docker Engine API endpoint. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Engine {
    t: Arc<Transport>,
}

fn filters(pairs: &[(&str, &[&str])]) -> String {
    let map: serde_json::Map<String, serde_json::Value> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!(v)))
        .collect();
    serde_json::Value::Object(map).to_string()
}

impl Engine {
    pub(crate) fn new(transport: Transport) -> Self {
        Self {
            t: Arc::new(transport),
        }
    }

    /// The node (or endpoint) this engine is, as errors and logs name it.
    pub(crate) fn label(&self) -> &str {
        self.t.label()
    }

    pub fn transport(&self) -> &Transport {
        &self.t
    }

    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T> {
        let a = self
            .t
            .send(Method::GET, path, None, query, None, false)
            .await?;
        self.t.decode(&format!("GET {path}"), &a)
    }

    async fn post<B: Serialize>(&self, path: &str, body: &B) -> Result<transport::Answer> {
        let bytes = serde_json::to_vec(body).map_err(|e| {
            EngineError::new(
                ErrorKind::Decode,
                self.label(),
                &format!("POST {path}"),
                None,
                e.to_string(),
            )
        })?;
        self.t
            .send(Method::POST, path, Some(bytes), &[], None, false)
            .await
    }

    pub async fn info(&self) -> Result<Info> {
        self.get("/info", &[]).await
    }

    /// The negotiated API version, e.g. `1.41`.
    pub async fn api_version(&self) -> Result<String> {
        self.t.api_version().await.map(str::to_owned)
    }

    /// Swarm nodes (manager only).
    pub async fn nodes(&self) -> Result<Vec<Node>> {
        self.get("/nodes", &[]).await
    }

    /// Every service (manager only).
    pub(crate) async fn services(&self) -> Result<Vec<Service>> {
        self.get("/services", &[]).await
    }

    /// Sets (`Some`) or removes (`None`) labels of a service, by its ID.
    /// The spec goes back exactly as the manager gave it, labels aside, so
    /// nothing else changes and no task restarts; the version makes a
    /// concurrent update fail instead of being overwritten.
    pub(crate) async fn label_service(
        &self,
        id: &str,
        changes: &[(&str, Option<String>)],
    ) -> Result<()> {
        let path = format!("/services/{}", segment(id));
        let mut service: serde_json::Value = self.get(&path, &[]).await?;
        let version = service["Version"]["Index"].as_u64().unwrap_or_default();
        let mut spec = service["Spec"].take();
        if !spec["Labels"].is_object() {
            spec["Labels"] = json!({});
        }
        if let Some(labels) = spec["Labels"].as_object_mut() {
            for (k, v) in changes {
                match v {
                    Some(v) => labels.insert((*k).to_owned(), json!(v)),
                    None => labels.remove(*k),
                };
            }
        }
        let bytes = serde_json::to_vec(&spec).map_err(|e| {
            EngineError::new(
                ErrorKind::Decode,
                self.label(),
                "POST /services/update",
                None,
                e.to_string(),
            )
        })?;
        let query = [("version", version.to_string())];
        self.t
            .send(
                Method::POST,
                &format!("{path}/update"),
                Some(bytes),
                &query,
                None,
                false,
            )
            .await
            .map(|_| ())
    }

    /// The service with exactly this name. Docker's name filter matches
    /// prefixes (`web` finds `web-admin`), so the answer is filtered again.
    pub async fn service(&self, name: &str) -> Result<Option<Service>> {
        let all: Vec<Service> = self
            .get("/services", &[("filters", filters(&[("name", &[name])]))])
            .await?;
        Ok(all.into_iter().find(|s| s.spec.name == name))
    }

    /// Tasks of these services (by ID or name); with `running_only`, only
    /// those swarm wants running.
    pub async fn tasks(&self, services: &[&str], running_only: bool) -> Result<Vec<Task>> {
        let mut f: Vec<(&str, &[&str])> = vec![("service", services)];
        if running_only {
            f.push(("desired-state", &["running"]));
        }
        if services.is_empty() {
            return Ok(Vec::new());
        }
        self.get("/tasks", &[("filters", filters(&f))]).await
    }

    /// Containers of this engine; `all` includes stopped ones; `labels` are
    /// `key` or `key=value` filters (all must match).
    pub async fn containers(&self, all: bool, labels: &[&str]) -> Result<Vec<ContainerSummary>> {
        let mut q = vec![("all", if all { "1" } else { "0" }.to_owned())];
        if !labels.is_empty() {
            q.push(("filters", filters(&[("label", labels)])));
        }
        self.get("/containers/json", &q).await
    }

    /// These containers (full IDs), running or not; those gone are absent.
    pub async fn containers_by_id(&self, ids: &[&str]) -> Result<Vec<ContainerSummary>> {
        let q = vec![
            ("all", "1".to_owned()),
            ("filters", filters(&[("id", ids)])),
        ];
        self.get("/containers/json", &q).await
    }

    /// One network with its endpoints on this engine.
    pub async fn network(&self, id_or_name: &str) -> Result<Network> {
        self.get(&format!("/networks/{}", segment(id_or_name)), &[])
            .await
    }

    pub async fn container(&self, id: &str) -> Result<ContainerInspect> {
        self.get(&format!("/containers/{}/json", segment(id)), &[])
            .await
    }

    /// Networks of this engine (swarm-scoped ones included).
    pub async fn networks(&self) -> Result<Vec<Network>> {
        self.get("/networks", &[]).await
    }

    pub async fn create_network(&self, spec: &NetworkCreate) -> Result<NetworkCreated> {
        let a = self.post("/networks/create", spec).await?;
        self.t.decode("POST /networks/create", &a)
    }

    pub async fn remove_network(&self, id_or_name: &str) -> Result<()> {
        let path = format!("/networks/{}", segment(id_or_name));
        self.t
            .send(Method::DELETE, &path, None, &[], None, false)
            .await
            .map(|_| ())
    }

    /// Connects a container, with a fixed IPv4 address when given.
    pub async fn connect(
        &self,
        network: &str,
        container: &str,
        ipv4: Option<Ipv4Addr>,
    ) -> Result<()> {
        let body = NetworkConnect {
            container: container.to_owned(),
            endpoint_config: ConnectEndpointConfig {
                ipam_config: ipv4.map(|ip| EndpointIpamConfig {
                    ipv4_address: ip.to_string(),
                }),
            },
        };
        self.post(&format!("/networks/{}/connect", segment(network)), &body)
            .await
            .map(|_| ())
    }

    pub async fn disconnect(&self, network: &str, container: &str, force: bool) -> Result<()> {
        let body = NetworkDisconnect {
            container: container.to_owned(),
            force,
        };
        self.post(&format!("/networks/{}/disconnect", segment(network)), &body)
            .await
            .map(|_| ())
    }

    /// Creates a container named `name` from a Docker create body; its ID.
    pub(crate) async fn create_container(
        &self,
        name: &str,
        body: &serde_json::Value,
    ) -> Result<String> {
        let bytes = serde_json::to_vec(body).map_err(|e| {
            EngineError::new(
                ErrorKind::Decode,
                self.label(),
                "POST /containers/create",
                None,
                e.to_string(),
            )
        })?;
        let a = self
            .t
            .send(
                Method::POST,
                "/containers/create",
                Some(bytes),
                &[("name", name.to_owned())],
                None,
                false,
            )
            .await?;
        let created: serde_json::Value = self.t.decode("POST /containers/create", &a)?;
        Ok(created["Id"].as_str().unwrap_or_default().to_owned())
    }

    pub(crate) async fn start_container(&self, id: &str) -> Result<()> {
        self.post(&format!("/containers/{}/start", segment(id)), &json!({}))
            .await
            .map(|_| ())
    }

    /// Waits up to `timeout` for the container to exit; its exit code.
    pub(crate) async fn wait_container(
        &self,
        id: &str,
        timeout: std::time::Duration,
    ) -> Result<i64> {
        let path = format!("/containers/{}/wait", segment(id));
        let a = self
            .t
            .send(Method::POST, &path, None, &[], Some(timeout), false)
            .await?;
        let v: serde_json::Value = self.t.decode(&format!("POST {path}"), &a)?;
        Ok(v["StatusCode"].as_i64().unwrap_or(-1))
    }

    /// A stopped container's output (stdout, stderr), as text.
    pub(crate) async fn container_logs(&self, id: &str) -> Result<(String, String)> {
        let path = format!("/containers/{}/logs", segment(id));
        let q = [("stdout", "1".to_owned()), ("stderr", "1".to_owned())];
        let a = self
            .t
            .send(Method::GET, &path, None, &q, None, false)
            .await?;
        Ok(models::demux_logs(&a.body))
    }

    pub(crate) async fn remove_container(&self, id: &str) -> Result<()> {
        let path = format!("/containers/{}", segment(id));
        self.t
            .send(
                Method::DELETE,
                &path,
                None,
                &[("force", "1".to_owned())],
                None,
                false,
            )
            .await
            .map(|_| ())
    }

    /// Opens the node's event stream once: container and network changes.
    pub(crate) async fn events(&self, since: Option<&str>) -> Result<events::EventStream> {
        let mut q = vec![(
            "filters",
            filters(&[
                ("type", &["container", "network"]),
                // Containers: their lifecycle; networks: create, destroy
                // (and remove, its older name), connect and disconnect of
                // any container. Together: every change to what a read of
                // the node's networks and containers holds.
                (
                    "event",
                    &[
                        "create",
                        "start",
                        "die",
                        "destroy",
                        "pause",
                        "unpause",
                        "connect",
                        "disconnect",
                        "remove",
                    ],
                ),
            ]),
        )];
        if let Some(s) = since {
            q.push(("since", s.to_owned()));
        }
        let resp = self.t.stream("/events", &q).await?;
        Ok(events::EventStream::new(self.label().to_owned(), resp))
    }
}
