//! The part of the Docker Engine API's data we read and send.
//!
//! Hand-written rather than taken from a generated crate: we read about
//! thirty fields, every one must tolerate engines from API 1.30 (17.06, DCE
//! 2.x) to today, and anything we do not name is skipped while decoding,
//! which keeps large list answers cheap.

use k8s_openapi::jiff::Timestamp;
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::HashMap;

/// Docker writes `null` for empty maps and lists (`"Labels": null`), and
/// some engines for absent objects; read those as empty.
fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Version {
    #[serde(deserialize_with = "null_default")]
    pub version: String,
    #[serde(deserialize_with = "null_default")]
    pub api_version: String,
    #[serde(rename = "MinAPIVersion")]
    #[serde(deserialize_with = "null_default")]
    pub min_api_version: String,
    #[serde(deserialize_with = "null_default")]
    pub os: String,
    #[serde(deserialize_with = "null_default")]
    pub arch: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Info {
    #[serde(rename = "ID")]
    #[serde(deserialize_with = "null_default")]
    pub id: String,
    #[serde(deserialize_with = "null_default")]
    pub name: String,
    #[serde(deserialize_with = "null_default")]
    pub server_version: String,
    #[serde(deserialize_with = "null_default")]
    pub swarm: SwarmInfo,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct SwarmInfo {
    #[serde(rename = "NodeID")]
    #[serde(deserialize_with = "null_default")]
    pub node_id: String,
    #[serde(deserialize_with = "null_default")]
    pub node_addr: String,
    /// `active`, `inactive`, `pending`, `error`, `locked`.
    #[serde(deserialize_with = "null_default")]
    pub local_node_state: String,
    pub control_available: bool,
    /// The swarm itself; only a manager shows it.
    #[serde(deserialize_with = "null_default")]
    pub cluster: SwarmCluster,
}

/// `Swarm.Cluster` of `GET /info`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct SwarmCluster {
    /// The swarm's own ID: the same whichever manager or proxy answers.
    #[serde(rename = "ID")]
    #[serde(deserialize_with = "null_default")]
    pub id: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Node {
    #[serde(rename = "ID")]
    #[serde(deserialize_with = "null_default")]
    pub id: String,
    #[serde(deserialize_with = "null_default")]
    pub description: NodeDescription,
    #[serde(deserialize_with = "null_default")]
    pub status: NodeStatus,
    #[serde(deserialize_with = "null_default")]
    pub spec: NodeSpec,
    pub manager_status: Option<ManagerStatus>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NodeDescription {
    #[serde(deserialize_with = "null_default")]
    pub hostname: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NodeStatus {
    /// `ready`, `down`, `unknown`, `disconnected`.
    #[serde(deserialize_with = "null_default")]
    pub state: String,
    #[serde(deserialize_with = "null_default")]
    pub addr: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NodeSpec {
    #[serde(deserialize_with = "null_default")]
    pub role: String,
    #[serde(deserialize_with = "null_default")]
    pub availability: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ManagerStatus {
    pub leader: bool,
    #[serde(deserialize_with = "null_default")]
    pub addr: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Service {
    #[serde(rename = "ID")]
    #[serde(deserialize_with = "null_default")]
    pub id: String,
    #[serde(deserialize_with = "null_default")]
    pub spec: ServiceSpec,
    #[serde(deserialize_with = "null_default")]
    pub endpoint: ServiceEndpoint,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ServiceEndpoint {
    #[serde(deserialize_with = "null_default")]
    pub ports: Vec<PortConfig>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PortConfig {
    /// `ingress` (the default, routed through the ingress network) or `host`.
    #[serde(deserialize_with = "null_default")]
    pub publish_mode: String,
    pub published_port: Option<u16>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ServiceSpec {
    #[serde(deserialize_with = "null_default")]
    pub name: String,
    /// The service's own labels (not its containers'): changing them does
    /// not restart its tasks.
    #[serde(deserialize_with = "null_default")]
    pub labels: HashMap<String, String>,
    #[serde(deserialize_with = "null_default")]
    pub mode: ServiceMode,
    #[serde(deserialize_with = "null_default")]
    pub task_template: TaskTemplate,
}

/// What a service's tasks run: only the environment is read (DCE's ports
/// in the service `dce_base`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TaskTemplate {
    #[serde(deserialize_with = "null_default")]
    pub container_spec: TaskContainerSpec,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TaskContainerSpec {
    /// `NAME=value` entries.
    #[serde(deserialize_with = "null_default")]
    pub env: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ServiceMode {
    pub replicated: Option<Replicated>,
    pub global: Option<serde_json::Value>,
    pub replicated_job: Option<serde_json::Value>,
    pub global_job: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Replicated {
    pub replicas: Option<u64>,
}

impl Service {
    /// Global services run one task per node and have no slots.
    pub fn is_global(&self) -> bool {
        self.spec.mode.global.is_some() || self.spec.mode.global_job.is_some()
    }

    /// Whether swarm attaches this service's containers to the ingress
    /// network: it publishes a port in ingress mode.
    pub fn uses_ingress(&self) -> bool {
        self.endpoint
            .ports
            .iter()
            .any(|p| p.publish_mode.is_empty() || p.publish_mode == "ingress")
    }

    pub fn replicas(&self) -> Option<u64> {
        self.spec.mode.replicated.as_ref().and_then(|r| r.replicas)
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Task {
    #[serde(rename = "ID")]
    #[serde(deserialize_with = "null_default")]
    pub id: String,
    #[serde(rename = "ServiceID")]
    #[serde(deserialize_with = "null_default")]
    pub service_id: String,
    #[serde(rename = "NodeID")]
    #[serde(deserialize_with = "null_default")]
    pub node_id: String,
    /// Replicated services only.
    pub slot: Option<u64>,
    #[serde(deserialize_with = "null_default")]
    pub desired_state: TaskState,
    #[serde(deserialize_with = "null_default")]
    pub status: TaskStatus,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TaskStatus {
    #[serde(deserialize_with = "null_default")]
    pub state: TaskState,
    /// Parsed here, once: Docker drops trailing zeros from the fraction
    /// (`31.1Z`, `31.15Z`), so its text does not sort in time order.
    #[serde(deserialize_with = "rfc3339")]
    pub timestamp: Option<Timestamp>,
    #[serde(deserialize_with = "null_default")]
    pub err: String,
    pub container_status: Option<ContainerStatus>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ContainerStatus {
    #[serde(rename = "ContainerID")]
    #[serde(deserialize_with = "null_default")]
    pub container_id: String,
}

impl Task {
    pub fn container_id(&self) -> Option<&str> {
        self.status
            .container_status
            .as_ref()
            .map(|c| c.container_id.as_str())
            .filter(|c| !c.is_empty())
    }

    /// Whether swarm still wants this task (its slot is alive): any desired
    /// state before shutdown. Scaled-down tasks get `shutdown` or `remove`.
    pub fn is_wanted(&self) -> bool {
        self.desired_state.is_before_shutdown()
    }
}

/// A swarm task's state, as Docker names it (`docker service ps`), in the
/// order a task goes through them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    New,
    Allocated,
    Pending,
    Assigned,
    Accepted,
    Preparing,
    Ready,
    Starting,
    Running,
    Complete,
    Shutdown,
    Failed,
    Rejected,
    Remove,
    Orphaned,
    /// A state this client does not know, or none.
    #[default]
    #[serde(other)]
    Unknown,
}

impl TaskState {
    /// Docker's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::New => "new",
            TaskState::Allocated => "allocated",
            TaskState::Pending => "pending",
            TaskState::Assigned => "assigned",
            TaskState::Accepted => "accepted",
            TaskState::Preparing => "preparing",
            TaskState::Ready => "ready",
            TaskState::Starting => "starting",
            TaskState::Running => "running",
            TaskState::Complete => "complete",
            TaskState::Shutdown => "shutdown",
            TaskState::Failed => "failed",
            TaskState::Rejected => "rejected",
            TaskState::Remove => "remove",
            TaskState::Orphaned => "orphaned",
            TaskState::Unknown => "unknown",
        }
    }

    /// The desired states swarm gives a live slot (up to running; swarm
    /// never asks for `allocated`).
    pub fn is_before_shutdown(self) -> bool {
        matches!(
            self,
            TaskState::New
                | TaskState::Pending
                | TaskState::Assigned
                | TaskState::Accepted
                | TaskState::Preparing
                | TaskState::Ready
                | TaskState::Starting
                | TaskState::Running
        )
    }
}

impl std::fmt::Display for TaskState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An RFC 3339 time, or `None` when absent or unreadable.
fn rfc3339<'de, D>(d: D) -> Result<Option<Timestamp>, D::Error>
where
    D: Deserializer<'de>,
{
    Ok(Option::<String>::deserialize(d)?.and_then(|s| s.parse().ok()))
}

/// Labels swarm puts on task containers.
pub mod labels {
    pub const SERVICE_NAME: &str = "com.docker.swarm.service.name";
    pub const TASK_ID: &str = "com.docker.swarm.task.id";
    pub const NODE_ID: &str = "com.docker.swarm.node.id";
    /// Put on the networks mvconf creates.
    pub const MANAGED_BY: &str = "io.mvconf.managed-by";
    /// On a service the operator binds, and on the networks it creates:
    /// the MacvlanBinding that owns it, `namespace/name`. The CLI keeps its
    /// hands off (unless `--force`).
    pub const OWNER: &str = "io.mvconf.owner";
    /// With [`OWNER`]: the operator install that owns it (`namespace/lease`),
    /// so that a second install on the same swarm refuses.
    pub const INSTALL: &str = "io.mvconf.install";
}

/// One entry of `GET /containers/json`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct ContainerSummary {
    #[serde(deserialize_with = "null_default")]
    pub id: String,
    #[serde(deserialize_with = "null_default")]
    pub names: Vec<String>,
    #[serde(deserialize_with = "null_default")]
    pub labels: HashMap<String, String>,
    /// `created`, `running`, `paused`, `restarting`, `exited`, `dead`.
    #[serde(deserialize_with = "null_default")]
    pub state: String,
    #[serde(deserialize_with = "null_default")]
    pub network_settings: SummaryNetworkSettings,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct SummaryNetworkSettings {
    #[serde(deserialize_with = "null_default")]
    pub networks: HashMap<String, EndpointSettings>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct EndpointSettings {
    #[serde(rename = "IPAMConfig")]
    pub ipam_config: Option<EndpointIpamConfig>,
    #[serde(rename = "NetworkID")]
    #[serde(deserialize_with = "null_default")]
    pub network_id: String,
    #[serde(rename = "EndpointID")]
    #[serde(deserialize_with = "null_default")]
    pub endpoint_id: String,
    #[serde(rename = "IPAddress")]
    #[serde(deserialize_with = "null_default")]
    pub ip_address: String,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct EndpointIpamConfig {
    #[serde(
        rename = "IPv4Address",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    #[serde(deserialize_with = "null_default")]
    pub ipv4_address: String,
}

impl EndpointSettings {
    /// The address the endpoint was asked for (kept by stopped containers).
    pub fn requested_ipv4(&self) -> Option<&str> {
        self.ipam_config
            .as_ref()
            .map(|c| c.ipv4_address.as_str())
            .filter(|a| !a.is_empty())
    }
}

/// `GET /containers/{id}/json`, the fields we use.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ContainerInspect {
    #[serde(deserialize_with = "null_default")]
    pub id: String,
    #[serde(deserialize_with = "null_default")]
    pub name: String,
    #[serde(deserialize_with = "null_default")]
    pub state: ContainerState,
    #[serde(deserialize_with = "null_default")]
    pub config: ContainerConfig,
    #[serde(deserialize_with = "null_default")]
    pub network_settings: SummaryNetworkSettings,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ContainerState {
    #[serde(deserialize_with = "null_default")]
    pub status: String,
    pub running: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ContainerConfig {
    #[serde(deserialize_with = "null_default")]
    pub labels: HashMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Network {
    #[serde(deserialize_with = "null_default")]
    pub name: String,
    #[serde(deserialize_with = "null_default")]
    pub id: String,
    #[serde(deserialize_with = "null_default")]
    pub driver: String,
    #[serde(deserialize_with = "null_default")]
    pub scope: String,
    pub ingress: bool,
    #[serde(rename = "IPAM")]
    #[serde(deserialize_with = "null_default")]
    pub ipam: Ipam,
    #[serde(deserialize_with = "null_default")]
    pub options: HashMap<String, String>,
    #[serde(deserialize_with = "null_default")]
    pub labels: HashMap<String, String>,
    /// Present on inspect; absent from list answers.
    pub containers: Option<HashMap<String, NetworkContainer>>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Ipam {
    #[serde(deserialize_with = "null_default")]
    pub driver: String,
    #[serde(deserialize_with = "null_default")]
    pub config: Vec<IpamConfig>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase", default)]
pub struct IpamConfig {
    #[serde(skip_serializing_if = "String::is_empty")]
    #[serde(deserialize_with = "null_default")]
    pub subnet: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    #[serde(deserialize_with = "null_default")]
    pub gateway: String,
    #[serde(rename = "IPRange", skip_serializing_if = "String::is_empty")]
    #[serde(deserialize_with = "null_default")]
    pub ip_range: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NetworkContainer {
    #[serde(deserialize_with = "null_default")]
    pub name: String,
    #[serde(rename = "EndpointID")]
    #[serde(deserialize_with = "null_default")]
    pub endpoint_id: String,
    /// `192.168.8.136/24`.
    #[serde(rename = "IPv4Address")]
    #[serde(deserialize_with = "null_default")]
    pub ipv4_address: String,
}

/// `POST /networks/create`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkCreate {
    pub name: String,
    pub driver: String,
    /// Refuse a duplicate name (engines before 1.44 allow duplicates without it).
    pub check_duplicate: bool,
    #[serde(rename = "IPAM")]
    pub ipam: Ipam,
    pub options: HashMap<String, String>,
    pub labels: HashMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NetworkCreated {
    #[serde(deserialize_with = "null_default")]
    pub id: String,
    #[serde(deserialize_with = "null_default")]
    pub warning: String,
}

/// `POST /networks/{id}/connect`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkConnect {
    pub container: String,
    pub endpoint_config: ConnectEndpointConfig,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ConnectEndpointConfig {
    #[serde(rename = "IPAMConfig", skip_serializing_if = "Option::is_none")]
    pub ipam_config: Option<EndpointIpamConfig>,
}

/// `POST /networks/{id}/disconnect`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkDisconnect {
    pub container: String,
    pub force: bool,
}

/// One message of `GET /events`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Event {
    #[serde(rename = "Type")]
    #[serde(deserialize_with = "null_default")]
    pub kind: String,
    #[serde(rename = "Action")]
    #[serde(deserialize_with = "null_default")]
    pub action: String,
    #[serde(rename = "Actor")]
    #[serde(deserialize_with = "null_default")]
    pub actor: EventActor,
    pub time: i64,
    #[serde(rename = "timeNano")]
    pub time_nano: i64,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase", default)]
pub struct EventActor {
    #[serde(rename = "ID")]
    #[serde(deserialize_with = "null_default")]
    pub id: String,
    #[serde(deserialize_with = "null_default")]
    pub attributes: HashMap<String, String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_17_06_task_and_a_global_one() {
        let t: Task = serde_json::from_str(
            r#"{"ID":"t1","ServiceID":"s","NodeID":"n","Slot":3,"DesiredState":"running",
                "Status":{"State":"running","ContainerStatus":{"ContainerID":"abc","PID":12}}}"#,
        )
        .unwrap();
        assert_eq!((t.slot, t.container_id()), (Some(3), Some("abc")));
        assert!(t.is_wanted());
        let g: Task = serde_json::from_str(
            r#"{"ID":"t2","NodeID":"n","DesiredState":"shutdown","Status":{"State":"pending"}}"#,
        )
        .unwrap();
        assert_eq!((g.slot, g.container_id()), (None, None));
        assert!(!g.is_wanted());
    }

    #[test]
    fn nulls_read_as_empty() {
        let n: Network = serde_json::from_str(
            r#"{"Name":"m","Id":"x","Driver":"macvlan","Labels":null,"Options":null,"IPAM":{"Driver":"default","Config":null,"Options":null},"Containers":null}"#,
        )
        .unwrap();
        assert!(
            n.labels.is_empty()
                && n.options.is_empty()
                && n.ipam.config.is_empty()
                && n.containers.is_none()
        );
        let c: ContainerSummary = serde_json::from_str(
            r#"{"Id":"a","Names":null,"Labels":null,"NetworkSettings":{"Networks":null}}"#,
        )
        .unwrap();
        assert!(c.names.is_empty() && c.network_settings.networks.is_empty());
    }

    #[test]
    fn decodes_services_modes() {
        let s: Service = serde_json::from_str(
            r#"{"ID":"x","Spec":{"Name":"web","Mode":{"Replicated":{"Replicas":3}}}}"#,
        )
        .unwrap();
        assert_eq!((s.is_global(), s.replicas()), (false, Some(3)));
        let g: Service =
            serde_json::from_str(r#"{"ID":"y","Spec":{"Name":"agent","Mode":{"Global":{}}}}"#)
                .unwrap();
        assert!(g.is_global());
    }

    #[test]
    fn connect_body_matches_the_api() {
        let body = NetworkConnect {
            container: "abc".into(),
            endpoint_config: ConnectEndpointConfig {
                ipam_config: Some(EndpointIpamConfig {
                    ipv4_address: "192.168.8.136".into(),
                }),
            },
        };
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"Container":"abc","EndpointConfig":{"IPAMConfig":{"IPv4Address":"192.168.8.136"}}}"#
        );
    }
}

/// Splits the log stream of a container without a TTY into stdout and
/// stderr: frames of an 8-byte header (stream, 0, 0, 0, big-endian size)
/// and their payload. A stream that is not framed (a TTY's) is stdout.
pub(crate) fn demux_logs(raw: &[u8]) -> (String, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    if raw.len() < 8 {
        return (String::from_utf8_lossy(raw).into_owned(), String::new());
    }
    let mut rest = raw;
    while rest.len() >= 8 {
        let stream = rest[0];
        if !matches!(stream, 0..=2) || rest[1..4] != [0, 0, 0] {
            return (String::from_utf8_lossy(raw).into_owned(), String::new());
        }
        let size = u32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]) as usize;
        let end = (8 + size).min(rest.len());
        let payload = &rest[8..end];
        if stream == 2 {
            err.extend_from_slice(payload);
        } else {
            out.extend_from_slice(payload);
        }
        rest = &rest[end..];
    }
    (
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
    )
}

#[cfg(test)]
mod log_tests {
    use super::demux_logs;

    #[test]
    fn framed_logs_split_into_stdout_and_stderr() {
        let mut raw = vec![1, 0, 0, 0, 0, 0, 0, 3];
        raw.extend_from_slice(b"{}\n");
        raw.extend_from_slice(&[2, 0, 0, 0, 0, 0, 0, 4]);
        raw.extend_from_slice(b"oops");
        assert_eq!(demux_logs(&raw), ("{}\n".into(), "oops".into()));
        assert_eq!(
            demux_logs(b"plain text"),
            ("plain text".into(), String::new())
        );
    }
}
