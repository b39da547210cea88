//! Tenancy: what is cluster-wide is declared by cluster-scoped objects only
//! the platform team writes, and granted from there to namespaces.
//!
//! - [`SwarmEndpoint`]: how a swarm is reached (URL, kind, TLS, a Secret in
//!   the operator's namespace) and which namespaces may use it. A team never
//!   writes a URL or names a Secret.
//! - [`MacvlanNetwork`]: one macvlan network (subnet, gateway, parent,
//!   ipRange), the addresses nobody may use, and its grants: which
//!   namespaces may claim which services with addresses from which ranges.
//!
//! A MacvlanBinding without inline networks names MacvlanNetworks in
//! `services[].network`; [`admit`] checks it against their grants, purely.
//! Inline networks and endpoints (today's manifests) stay usable where the
//! operator allows them (`--inline allow`, the single-team default).

pub(crate) mod admit;
pub(crate) mod convert;
pub(crate) mod usage;

use crate::crd::{EndpointKind, EndpointSpec, PoolEntry, SecretRef};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A swarm's engine API, as the platform team declares it: where, how to
/// trust it, with which credentials, and which namespaces may use it.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "mvconf.io",
    version = "v1alpha1",
    kind = "SwarmEndpoint",
    shortname = "swep",
    category = "mvconf",
    status = "TenancyStatus",
    doc = "SwarmEndpoint declares how the operator reaches a Docker Swarm / DCE cluster and which namespaces may use it. Cluster-scoped: only the platform team writes it.",
    printcolumn(name = "Kind", type_ = "string", json_path = ".spec.kind"),
    printcolumn(name = "URL", type_ = "string", json_path = ".spec.url"),
    printcolumn(
        name = "Namespaces",
        type_ = "string",
        json_path = ".status.namespaces",
        description = "Namespaces that may use it"
    ),
    printcolumn(
        name = "Bindings",
        type_ = "integer",
        json_path = ".status.bindings",
        description = "Bindings that use it"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct SwarmEndpointSpec {
    /// `Dce`: a DaoCloud Enterprise controller, whose root serves the swarm
    /// manager's API and which proxies each node's engine. `Docker`: a swarm
    /// manager's Engine API, node engines reached at their swarm address.
    pub kind: EndpointKind,

    /// URL of the DCE controller (`https://dce.example.com`) or of the Docker
    /// manager (`tcp://10.0.0.11:2376`, `https://...`). Never with
    /// `user:password@`: credentials come from `secretRef`.
    #[schemars(length(min = 1, max = 2048))]
    pub url: String,

    /// Secret in the operator's own namespace with the credentials: keys
    /// `username` and `password` (HTTP Basic) or `token`
    /// (`X-DCE-Access-Token`); optional `ca.crt`, `tls.crt` / `tls.key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretRef>,

    /// Accept any server certificate. Insecure; logged as a warning.
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

    /// Namespaces whose bindings may use this endpoint (through a
    /// MacvlanNetwork that names it). None when omitted;
    /// `namespaceSelector: {}` selects every namespace.
    #[serde(default)]
    pub allowed_namespaces: NamespaceSelection,
}

impl SwarmEndpointSpec {
    /// The connection settings, in the form a binding's inline endpoint
    /// has (the Secret is read from the operator's namespace instead).
    pub(crate) fn connection(&self) -> EndpointSpec {
        EndpointSpec {
            kind: self.kind,
            url: self.url.clone(),
            secret_ref: self.secret_ref.clone(),
            insecure_skip_tls_verify: self.insecure_skip_tls_verify,
            dce_node_prefix: self.dce_node_prefix.clone(),
            node_port: self.node_port,
            node_urls: self.node_urls.clone(),
        }
    }
}

/// A set of namespaces: those listed by name, and those whose labels match
/// the selector. An empty selector (`{}`) matches every namespace; no
/// names and no selector match none.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceSelection {
    /// Namespaces by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub namespaces: Vec<String>,

    /// Namespaces by label (`matchLabels`, `matchExpressions`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
}

/// One macvlan network, the addresses on it nobody may use, and who may
/// use the rest for which services.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "mvconf.io",
    version = "v1alpha1",
    kind = "MacvlanNetwork",
    shortname = "mvnet",
    category = "mvconf",
    status = "TenancyStatus",
    doc = "MacvlanNetwork declares a macvlan network of a swarm and grants namespaces the services and address ranges they may bind on it. Cluster-scoped: only the platform team writes it.",
    printcolumn(name = "Subnet", type_ = "string", json_path = ".spec.subnet"),
    printcolumn(name = "Parent", type_ = "string", json_path = ".spec.parent"),
    printcolumn(
        name = "Endpoint",
        type_ = "string",
        json_path = ".spec.endpointRef.name"
    ),
    printcolumn(
        name = "Namespaces",
        type_ = "string",
        json_path = ".status.namespaces",
        description = "Namespaces granted something"
    ),
    printcolumn(
        name = "Used",
        type_ = "string",
        json_path = ".status.used",
        description = "Addresses held / granted"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(
    validation = Rule::new("!isCIDR(self.subnet) || !isIP(self.gateway) || cidr(self.subnet).containsIP(self.gateway)")
        .message("gateway must lie inside subnet")
        .field_path(".gateway"),
    validation = Rule::new("!has(self.ipRange) || !isCIDR(self.subnet) || !isCIDR(self.ipRange) || cidr(self.subnet).containsCIDR(self.ipRange)")
        .message("ipRange must lie inside subnet")
        .field_path(".ipRange")
)]
#[serde(rename_all = "camelCase")]
pub struct MacvlanNetworkSpec {
    /// The SwarmEndpoint of the swarm this network is on; the operator's
    /// default endpoint when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_ref: Option<ObjectName>,

    /// Docker network name on every node; this object's name when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 128),
        regex(pattern = r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
    )]
    pub docker_name: Option<String>,

    /// IPv4 subnet in CIDR notation, e.g. `192.168.8.0/24`.
    #[schemars(
        length(max = 18),
        regex(pattern = r"^[0-9]{1,3}(\.[0-9]{1,3}){3}/[0-9]{1,2}$")
    )]
    #[x_kube(validation = Rule::new("isCIDR(self)").message("subnet must be an IPv4 CIDR such as 192.168.8.0/24"))]
    pub subnet: String,

    /// Gateway address inside the subnet, e.g. `192.168.8.1`.
    #[schemars(length(max = 15), regex(pattern = r"^[0-9]{1,3}(\.[0-9]{1,3}){3}$"))]
    #[x_kube(validation = Rule::new("isIP(self)").message("gateway must be an IPv4 address"))]
    pub gateway: String,

    /// Host interface the macvlan sits on, the same name on every node,
    /// e.g. `eth1` or a VLAN sub-interface `eth1.101`.
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

    /// Addresses nobody may put in a pool (routers, VRRP addresses,
    /// physical hosts): single addresses or ranges `first-last`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1024))]
    pub reserved: Vec<PoolEntry>,

    /// Duplicate-address detection by ARP before an address is first
    /// handed out (default on where a probe image is set); `false` turns
    /// it off for this network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arp_probe: Option<bool>,

    /// Who may use this network: each grant lets some namespaces bind some
    /// services with addresses from some ranges. A binding's service must
    /// fall under one grant for its namespace, with its whole pool inside
    /// that grant's ranges.
    #[serde(default)]
    #[schemars(length(max = 256))]
    pub grants: Vec<Grant>,
}

/// A reference to a cluster-scoped object by name.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct ObjectName {
    /// Name of the object.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Namespaces x services x ranges.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Grant {
    /// Namespaces by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub namespaces: Vec<String>,

    /// Namespaces by label; `{}` selects every namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,

    /// Swarm service names the namespaces may claim; `*` matches any run
    /// of characters, `?` one. A stack's services are named
    /// `<stack>_<service>`, so `payments_*` grants the stack `payments`.
    #[schemars(length(min = 1, max = 256))]
    pub services: Vec<String>,

    /// Addresses the namespaces may put in those services' pools: single
    /// addresses or ranges `first-last`, inside the subnet.
    #[schemars(length(min = 1, max = 1024))]
    pub ranges: Vec<PoolEntry>,
}

/// What the operator found of a cluster-scoped object: at a glance, who
/// may use it and how much is used.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenancyStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// `Valid` is False with the reason when the object cannot be used.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,

    /// The namespaces it names, and `selector` when a label selector
    /// chooses more, comma-separated.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespaces: String,

    /// Bindings that use it.
    #[serde(default)]
    pub bindings: i32,

    /// Addresses held by the bindings' task slots / addresses granted.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub used: String,
}

/// The tenancy CRDs, in the order `mvconf crd` prints them.
pub(crate) fn crds()
-> [k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition; 2]
{
    use kube::CustomResourceExt;
    [SwarmEndpoint::crd(), MacvlanNetwork::crd()]
}
