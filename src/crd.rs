//! The `MacvlanBinding` custom resource: the API users write and read.
//!
//! Doc comments on every field become `kubectl explain` text. The Rust
//! validator in [`crate::config::validate`] is the full authority; the schema
//! patterns and CEL rules here refuse what the API server can already see at
//! `kubectl apply` time.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// API group of every mvconf resource.
pub const GROUP: &str = "mvconf.io";
/// The finalizer the operator puts on bindings to clean up Docker on deletion.
pub const FINALIZER: &str = "mvconf.io/cleanup";

/// Upper bounds that keep the schema's CEL cost within the API server's
/// budget and one binding within one etcd object.
pub mod limits {
    pub const MAX_NETWORKS: usize = 64;
    pub const MAX_SERVICES: usize = 512;
    pub const MAX_POOL_ENTRIES: usize = 4096;
    pub const MAX_NAME_LEN: usize = 63;
    pub const MAX_NETWORK_NAME_LEN: usize = 128;
    pub const MAX_PARENT_LEN: usize = 15;
}

/// Declares macvlan networks and which swarm services get addresses on them.
/// The operator creates the networks on every node, connects every running
/// container of each service on its own node with an address from the
/// service's pool, and keeps it that way when swarm replaces containers.
// Several printer columns share a `type_`, which clippy takes for a duplicate.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "mvconf.io",
    version = "v1alpha1",
    kind = "MacvlanBinding",
    namespaced,
    shortname = "mvb",
    category = "mvconf",
    status = "MacvlanBindingStatus",
    doc = "MacvlanBinding gives the containers of Docker Swarm / DCE services stable addresses on macvlan networks.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Bound",
        type_ = "integer",
        json_path = ".status.bound",
        description = "Containers bound to their address"
    ),
    printcolumn(
        name = "Desired",
        type_ = "integer",
        json_path = ".status.desired",
        description = "Running containers of the listed services"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(
    validation = Rule::new("self.networks.size() == 0 || self.services.all(s, self.networks.exists(n, n.name == s.network))")
        .message("every services[].network must name an entry of networks[] (a binding with inline networks uses no MacvlanNetwork)")
        .reason(Reason::FieldValueInvalid)
        .field_path(".services"),
    validation = Rule::new("self.networks.size() > 0 || self.services.size() == 0 || !has(self.endpoint)")
        .message("a binding that names MacvlanNetworks takes its endpoint from them: leave endpoint out")
        .reason(Reason::FieldValueInvalid)
        .field_path(".endpoint"),
    validation = Rule::new("self.networks.all(n, self.networks.exists_one(m, m.gateway == n.gateway))")
        .message("two networks share a gateway: Docker allows one macvlan network per gateway")
        .reason(Reason::FieldValueInvalid)
        .field_path(".networks")
)]
#[serde(rename_all = "camelCase")]
pub struct MacvlanBindingSpec {
    /// Macvlan networks to create on every node of the swarm (mvconf's
    /// `networks`). Names are unique within the binding. Leave it out to
    /// use the MacvlanNetworks the platform team granted this namespace;
    /// inline networks work only where the operator allows them
    /// (`--inline allow`, the single-team default).
    #[serde(default)]
    #[schemars(length(max = 64))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub networks: Vec<NetworkSpec>,

    /// Swarm services whose running containers get an address (mvconf's
    /// `services`). Names are unique within the binding.
    #[serde(default)]
    #[schemars(length(max = 512))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub services: Vec<ServiceSpec>,

    /// Where the Docker engines of the swarm are reached, for inline
    /// networks only. When omitted, the operator's default endpoint is used
    /// (its `--endpoint` setting), or the SwarmEndpoint of the
    /// MacvlanNetworks named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<EndpointSpec>,

    /// What deleting this binding does to Docker: `Disconnect` (default)
    /// disconnects the containers from the macvlan networks;
    /// `DisconnectAndRemoveNetworks` also removes the networks from every
    /// node when no other binding uses them (mvconf `down`); `Retain` leaves
    /// containers and networks as they are.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

/// A macvlan network, created with the same settings on every node.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[x_kube(
    validation = Rule::new("!isCIDR(self.subnet) || !isIP(self.gateway) || cidr(self.subnet).containsIP(self.gateway)")
        .message("gateway must lie inside subnet")
        .field_path(".gateway"),
    validation = Rule::new("!has(self.ipRange) || !isCIDR(self.subnet) || !isCIDR(self.ipRange) || cidr(self.subnet).containsCIDR(self.ipRange)")
        .message("ipRange must lie inside subnet")
        .field_path(".ipRange")
)]
#[serde(rename_all = "camelCase")]
pub struct NetworkSpec {
    /// Docker network name, the same on every node, e.g. `macvlan`.
    #[schemars(
        length(min = 1, max = 128),
        regex(pattern = r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
    )]
    pub name: String,

    /// IPv4 subnet in CIDR notation, e.g. `192.168.8.0/24`.
    #[schemars(
        length(max = 18),
        regex(pattern = r"^[0-9]{1,3}(\.[0-9]{1,3}){3}/[0-9]{1,2}$")
    )]
    #[x_kube(validation = Rule::new("isCIDR(self)").message("subnet must be an IPv4 CIDR such as 192.168.8.0/24"))]
    pub subnet: String,

    /// Gateway address inside the subnet, e.g. `192.168.8.1`. Docker allows
    /// one macvlan network per gateway.
    #[schemars(length(max = 15), regex(pattern = r"^[0-9]{1,3}(\.[0-9]{1,3}){3}$"))]
    #[x_kube(validation = Rule::new("isIP(self)").message("gateway must be an IPv4 address"))]
    pub gateway: String,

    /// Host interface the macvlan sits on, the same name on every node, e.g.
    /// `eth1`, or a VLAN sub-interface such as `eth1.101`.
    #[schemars(
        length(min = 1, max = 15),
        regex(pattern = r"^[a-zA-Z0-9_][a-zA-Z0-9_.@-]*$")
    )]
    pub parent: String,

    /// Optional range Docker itself assigns from when no address is given
    /// (Docker's `--ip-range`); must lie inside the subnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 18),
        regex(pattern = r"^[0-9]{1,3}(\.[0-9]{1,3}){3}/[0-9]{1,2}$")
    )]
    #[x_kube(validation = Rule::new("isCIDR(self)").message("ipRange must be an IPv4 CIDR"))]
    pub ip_range: Option<String>,

    /// Addresses nobody may hand out, whatever the pools say: the segment's
    /// routers, VRRP addresses, physical hosts. Single addresses or ranges
    /// `first-last`, inside the subnet. A pool covering some of them skips
    /// them (the service's status counts them); a pool left with none is
    /// refused. A container holding one after an edit is moved off it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 4096))]
    #[x_kube(merge_strategy = ListMerge::Atomic)]
    pub reserved: Vec<PoolEntry>,

    /// Duplicate-address detection (default on, where the operator or the
    /// CLI has a probe image): before an address is first handed out it is
    /// ARP-probed on the segment, and an address something answers for
    /// (a host Docker cannot see) is skipped. `false` switches it off for
    /// this network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arp_probe: Option<bool>,
}

/// A swarm service whose running containers get macvlan addresses.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    /// Exact swarm service name (not a prefix), e.g. `2048`.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-zA-Z0-9](?:[-_]*[A-Za-z0-9]+)*$")
    )]
    pub name: String,

    /// Network to connect the containers to: an entry of `networks`, or,
    /// in a binding without inline networks, a MacvlanNetwork that grants
    /// this namespace the service.
    #[schemars(length(min = 1, max = 128))]
    pub network: String,

    /// Addresses the containers may get: single addresses (`192.168.8.139`)
    /// or inclusive ranges (`192.168.8.136-192.168.8.137`), inside the
    /// network's subnet, not the gateway, network or broadcast address, and
    /// not overlapping another service's pool on the same network. A task
    /// slot (or, for a global service, a node) keeps its address for as long
    /// as it exists and the address stays in the pool.
    #[schemars(length(min = 1, max = 4096))]
    #[x_kube(merge_strategy = ListMerge::Atomic)]
    pub ip_pool: Vec<PoolEntry>,

    /// `Keep` (default) leaves the swarm ingress network attached; `Detach`
    /// disconnects the containers from it, as mvconf `uningress` did, so that
    /// they are reached only on their macvlan address.
    #[serde(default)]
    pub ingress: IngressMode,
}

/// One pool entry: an IPv4 address or an inclusive range `first-last`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(transparent)]
pub struct PoolEntry(
    #[schemars(
        length(min = 7, max = 31),
        regex(pattern = r"^ *[0-9]{1,3}(\.[0-9]{1,3}){3} *(- *[0-9]{1,3}(\.[0-9]{1,3}){3} *)?$")
    )]
    pub String,
);

impl From<&str> for PoolEntry {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

/// What happens to the swarm ingress network of a service's containers.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum IngressMode {
    /// Leave the ingress network attached.
    #[default]
    Keep,
    /// Disconnect the containers from the ingress network.
    Detach,
}

/// What deleting a binding does to Docker.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum DeletionPolicy {
    /// Disconnect the containers from the binding's macvlan networks.
    #[default]
    Disconnect,
    /// Disconnect, then remove the networks from every node unless another
    /// binding still uses them (mvconf `down`).
    DisconnectAndRemoveNetworks,
    /// Leave containers and networks untouched.
    Retain,
}

/// How to reach a swarm other than the operator's default one.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndpointSpec {
    /// `Dce`: a DaoCloud Enterprise controller, whose root serves the swarm
    /// manager's API and which proxies each node's engine. `Docker`: a swarm
    /// manager's Engine API, node engines reached at their swarm address.
    pub kind: EndpointKind,

    /// URL of the DCE controller (`https://dce.example.com`) or of the Docker
    /// manager (`tcp://10.0.0.11:2376`, `https://...`).
    #[schemars(length(min = 1, max = 2048))]
    pub url: String,

    /// Secret in the binding's namespace with the credentials: keys
    /// `username` and `password` (HTTP Basic) or `token`
    /// (`X-DCE-Access-Token`); optional `ca.crt` (a CA bundle to trust) and
    /// `tls.crt` / `tls.key` (a client certificate for Docker TLS). The
    /// operator must be allowed to read this Secret (chart value
    /// `secrets.names`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretRef>,

    /// Accept any server certificate. Insecure; logged as a warning on every
    /// connection set-up. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_skip_tls_verify: bool,

    /// DCE only: path prefix of the per-node engine proxy, `/api` (default)
    /// or `/dce` on some DCE versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^/[a-zA-Z0-9_/-]*$"))]
    pub dce_node_prefix: Option<String>,

    /// Docker only: port of each node's engine at its swarm address (default
    /// 2375, or 2376 for `https`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<i32>", range(min = 1, max = 65535))]
    pub node_port: Option<u16>,

    /// Docker only: explicit engine URL per node, keyed by node hostname or
    /// ID; wins over the swarm address plus `nodePort`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_urls: BTreeMap<String, String>,
}

/// Kind of engine endpoint.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum EndpointKind {
    /// A DaoCloud Enterprise controller.
    Dce,
    /// A Docker swarm manager's Engine API.
    Docker,
}

/// A Secret in the binding's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct SecretRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// What the operator observed and did; the truth users and scripts read.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct MacvlanBindingStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// `Ready` is True (reason AllBound) when every running container of
    /// every service is bound and every network exists on every node. Its
    /// reason explains otherwise: InvalidSpec, Conflict, PoolExhausted,
    /// NodeUnreachable, AuthFailed, EndpointUnreachable, ApplyFailed,
    /// ServiceNotFound, Progressing, CleanupIncomplete.
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// Running containers of the listed services.
    #[serde(default)]
    pub desired: i32,

    /// Containers connected with their address.
    #[serde(default)]
    pub bound: i32,

    /// Per-service counters.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<ServiceStatus>,

    /// Per-network, per-node state.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<NetworkStatus>,

    /// MacvlanEndpointSlices holding this binding's per-container records
    /// (`kubectl get mves -l mvconf.io/binding=NAME`).
    #[serde(default)]
    pub endpoint_slices: i32,

    /// Deprecated: where operators before MacvlanEndpointSlices kept the
    /// per-container records. Read once after an upgrade, then emptied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub containers: Vec<ContainerRecord>,
}

/// Counters of one service.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceStatus {
    /// Service name.
    pub name: String,
    /// Running containers of the service.
    pub desired: i32,
    /// Containers connected with their address.
    pub bound: i32,
    /// Addresses in the pool (its network's reserved ones left out).
    pub pool_size: i64,
    /// Pool addresses held by this service's task slots (bound or reserved).
    pub allocated: i64,
    /// Pool addresses neither held by this service nor in use elsewhere.
    pub free: i64,
    /// Addresses of the pool's entries skipped because the network reserves
    /// them (`spec.networks[].reserved`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub reserved: i64,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// State of one network on every node.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkStatus {
    /// Network name.
    pub name: String,
    /// Nodes where the network exists with the declared settings.
    pub ready_nodes: i32,
    /// Nodes of the swarm.
    pub total_nodes: i32,
    /// Nodes where the network is not ready, with the reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_ready: Vec<NodeProblem>,
    /// Free pool addresses something Docker does not show answered an ARP
    /// probe for (a host, a router): handed out to nobody until a later
    /// probe finds them free.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unseen_holders: Vec<UnseenHolder>,
    /// Why free addresses of this network are handed out unprobed, when the
    /// probe could not run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_failed: Option<String>,
}

/// An address that answered an ARP probe.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UnseenHolder {
    /// The address of the pool that answered.
    pub address: String,
    /// The MAC address that answered.
    pub mac: String,
    /// The node whose probe it answered.
    pub node: String,
}

/// Why something is not ready on one node.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeProblem {
    /// Node hostname.
    pub node: String,
    /// What is wrong, e.g. "engine unreachable" or "exists with subnet 10.0.0.0/24".
    pub message: String,
}

/// One container of a service (or a task slot waiting for one).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContainerRecord {
    /// Swarm service name.
    pub service: String,
    /// Task slot of a replicated service; absent for a global service, whose
    /// containers are keyed by node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<i64>")]
    pub slot: Option<u64>,
    /// Swarm node ID the container runs on.
    pub node_id: String,
    /// Node hostname.
    pub node: String,
    /// Node address.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host_ip: String,
    /// Swarm task ID.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub task: String,
    /// Container ID, 12 characters.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub container: String,
    /// Macvlan address held by this slot (or node), bound or reserved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// Whether the container is attached to the swarm ingress network.
    #[serde(default)]
    pub ingress: bool,
    /// Bound, Reserved (the slot keeps its address while swarm replaces the
    /// container), Pending (no address: see message) or Failed.
    pub state: RecordState,
    /// Why the record is not Bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the container got this address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Time>,
    /// For a slot scaled away (state Reserved): when. Its address is held
    /// back from every other slot until the release cooldown has passed
    /// (switch and ARP caches forget it); the slot coming back gets it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub released: Option<Time>,
}

/// State of a container record.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum RecordState {
    /// Connected with its address.
    Bound,
    /// The slot holds its address while its container is being replaced.
    Reserved,
    /// Waiting for an address (pool exhausted, node unreachable, ...).
    #[default]
    Pending,
    /// Connecting failed; retried on the next pass.
    Failed,
}

impl RecordState {
    /// The state as the resource and the `status` table write it.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordState::Bound => "Bound",
            RecordState::Reserved => "Reserved",
            RecordState::Pending => "Pending",
            RecordState::Failed => "Failed",
        }
    }
}

impl std::fmt::Display for RecordState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Condition types and reasons, as constants so that tests and docs agree.
pub mod reasons {
    pub const READY: &str = "Ready";
    pub const BOUND: &str = "AllBound";
    pub const PROGRESSING: &str = "Progressing";
    pub const INVALID_SPEC: &str = "InvalidSpec";
    pub const POOL_EXHAUSTED: &str = "PoolExhausted";
    pub const CONFLICT: &str = "Conflict";
    pub const NODE_UNREACHABLE: &str = "NodeUnreachable";
    pub const AUTH_FAILED: &str = "AuthFailed";
    pub const ENDPOINT_UNREACHABLE: &str = "EndpointUnreachable";
    pub const APPLY_FAILED: &str = "ApplyFailed";
    pub const SERVICE_NOT_FOUND: &str = "ServiceNotFound";
    /// A deleted binding's cleanup has not finished: a node could not be
    /// reached, Docker refused, or something of the binding is still there.
    pub const CLEANUP_INCOMPLETE: &str = "CleanupIncomplete";

    /// Every reason the Ready condition can carry (README, "Conditions").
    pub const ALL: &[&str] = &[
        READY,
        BOUND,
        PROGRESSING,
        INVALID_SPEC,
        POOL_EXHAUSTED,
        CONFLICT,
        NODE_UNREACHABLE,
        AUTH_FAILED,
        ENDPOINT_UNREACHABLE,
        APPLY_FAILED,
        SERVICE_NOT_FOUND,
        CLEANUP_INCOMPLETE,
    ];
}

/// Reasons of the Events about a binding besides the condition's (a binding
/// not Ready gets an Event with the condition's reason too).
pub mod event_reasons {
    pub const BOUND: &str = "Bound";
    /// A replacement container got its slot's address back.
    pub const REBOUND: &str = "Rebound";
    pub const NETWORK_CREATED: &str = "NetworkCreated";
    /// A disconnect or an ingress change was made.
    pub const CHANGED: &str = "Changed";
    /// Docker refused the planned address and another was taken.
    pub const ADDRESS_IN_USE: &str = "AddressInUse";
    pub const FOREIGN_ADDRESS: &str = "ForeignAddress";
    pub const UNSEEN_HOLDER: &str = "UnseenHolder";
    pub const PROBE_FAILED: &str = "ProbeFailed";
    /// A service another install owns was left alone.
    pub const KEPT_OWNED: &str = "KeptOwned";
    pub const RETAINED: &str = "Retained";
    pub const CLEANED_UP: &str = "CleanedUp";

    /// Every one of them (README, "Events").
    pub const ALL: &[&str] = &[
        BOUND,
        REBOUND,
        NETWORK_CREATED,
        CHANGED,
        ADDRESS_IN_USE,
        FOREIGN_ADDRESS,
        UNSEEN_HOLDER,
        PROBE_FAILED,
        KEPT_OWNED,
        RETAINED,
        CLEANED_UP,
    ];
}

/// Every CRD of mvconf, in the order of [`crd_yaml`].
pub fn crds()
-> [k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition; 4]
{
    let [endpoint, network] = crate::tenancy::crds();
    let slice = crate::slices::MacvlanEndpointSlice::crd();
    [MacvlanBinding::crd(), slice, endpoint, network]
}

/// Every CRD of mvconf as one YAML stream, exactly as committed under
/// `crds/`: MacvlanBinding and its MacvlanEndpointSlices, then the
/// platform's cluster-scoped kinds.
pub fn crd_yaml() -> Result<String, serde_saphyr::ser_error::Error> {
    let mut out =
        String::from("# Generated by `mvconf crd`; do not edit. CI fails when this file drifts.\n");
    for crd in crds() {
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(&crd)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readme_names_every_condition_and_event_reason() {
        let readme = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"),
        )
        .unwrap();
        let missing: Vec<&&str> = reasons::ALL
            .iter()
            .chain(event_reasons::ALL)
            .filter(|r| !readme.contains(&format!("`{r}`")))
            .collect();
        assert!(missing.is_empty(), "README.md does not name {missing:?}");
    }

    #[test]
    fn committed_crds_match_the_generated_one() {
        let generated = crd_yaml().unwrap();
        for file in ["crds/mvconf.yaml", "charts/mvconf/crds/mvconf.yaml"] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
            let committed = std::fs::read_to_string(&path).unwrap_or_default();
            if committed != generated && std::env::var_os("MVCONF_BLESS").is_some() {
                std::fs::write(&path, &generated).unwrap();
                continue;
            }
            assert!(
                committed == generated,
                "{file} is stale: run `MVCONF_BLESS=1 cargo test crd` (or `mvconf crd > {file}`)"
            );
        }
    }

    #[test]
    fn schema_carries_names_printer_columns_and_rules() {
        let crd = MacvlanBinding::crd();
        assert_eq!(crd.spec.group, GROUP);
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(crd.spec.names.short_names, Some(vec!["mvb".to_owned()]));
        let v = &crd.spec.versions[0];
        assert_eq!(v.name, "v1alpha1");
        assert!(v.subresources.as_ref().unwrap().status.is_some());
        let cols: Vec<&str> = v
            .additional_printer_columns
            .as_ref()
            .unwrap()
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(cols, ["Ready", "Reason", "Bound", "Desired", "Age"]);
        let json = serde_json::to_string(&crd).unwrap();
        for needle in [
            "x-kubernetes-validations",
            "cidr(self.subnet).containsIP(self.gateway)",
            "\"x-kubernetes-list-type\":\"map\"",
            "\"Detach\"",
            "\"DisconnectAndRemoveNetworks\"",
        ] {
            assert!(json.contains(needle), "schema lacks {needle}");
        }
    }

    #[test]
    fn every_spec_and_status_field_is_documented() {
        fn walk(path: &str, v: &serde_json::Value, missing: &mut Vec<String>) {
            if let Some(props) = v.get("properties").and_then(|p| p.as_object()) {
                for (k, s) in props {
                    let p = format!("{path}.{k}");
                    let documented = s
                        .get("description")
                        .and_then(|d| d.as_str())
                        .is_some_and(|d| !d.is_empty());
                    // metadata / apiVersion / kind are Kubernetes' own.
                    if !documented && !["apiVersion", "kind", "metadata"].contains(&k.as_str()) {
                        missing.push(p.clone());
                    }
                    walk(&p, s, missing);
                }
            }
            if let Some(items) = v.get("items") {
                walk(&format!("{path}[]"), items, missing);
            }
        }
        let [endpoint, network] = crate::tenancy::crds();
        let slice = crate::slices::MacvlanEndpointSlice::crd();
        let mut missing = Vec::new();
        for crd in [MacvlanBinding::crd(), slice, endpoint, network] {
            let kind = crd.spec.names.kind.clone();
            let schema = serde_json::to_value(&crd.spec.versions[0].schema).unwrap();
            let root = &schema["openAPIV3Schema"];
            walk(&kind, &root["properties"]["spec"], &mut missing);
            // Condition is metav1.Condition, documented upstream; check ours only.
            let status = &root["properties"]["status"];
            walk(&format!("{kind}.status"), status, &mut missing);
        }
        // Kubernetes' own types (Condition, LabelSelector) are documented upstream.
        missing.retain(|p| !p.contains(".status.conditions[]") && !p.contains("amespaceSelector."));
        assert!(missing.is_empty(), "undocumented fields: {missing:?}");
    }

    /// A binding with 2,000 containers must fit one etcd object (1.5 MiB
    /// request limit) comfortably. Prints the measured size.
    #[test]
    fn two_thousand_records_fit_one_object() {
        use k8s_openapi::jiff::Timestamp;
        let since = Time(Timestamp::from_second(1_795_000_000).unwrap());
        let containers: Vec<ContainerRecord> = (0..2000u32)
            .map(|i| ContainerRecord {
                service: format!("payments-api-{}", i % 20),
                slot: Some(u64::from(i / 20 + 1)),
                node_id: "q3x9rk2m4b1c7d8e6f5g0h2j1".into(),
                node: format!("dce-worker-{:03}", i % 150),
                host_ip: format!("10.20.{}.{}", i % 150 / 250, i % 250),
                task: "vz8y7x6w5v4u3t2s1r0q9p8o7".into(),
                container: "3f2a7b9c1d0e".into(),
                ip: Some(std::net::Ipv4Addr::from(0x0a64_0000 + i).to_string()),
                ingress: false,
                state: RecordState::Bound,
                message: None,
                since: Some(since.clone()),
                released: None,
            })
            .collect();
        let status = MacvlanBindingStatus {
            containers,
            ..Default::default()
        };
        let bytes = serde_json::to_vec(&status).unwrap().len();
        println!(
            "status with 2000 records: {bytes} bytes ({} per record)",
            bytes / 2000
        );
        assert!(bytes < 768 * 1024, "{bytes} bytes");
    }
}
