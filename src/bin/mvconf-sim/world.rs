//! The simulated swarm: nodes with their containers and networks, services
//! and their tasks, and the Docker Engine behaviours mvconf depends on, as
//! dockerd shows them (checked by the conformance tests against the lab):
//! per-node IPAM that hands the same address out on two nodes, errors in
//! dockerd's words, swarm replacing a killed task's container (same slot,
//! new container, none of the old one's manual network connections).
//! Plain data and functions; the HTTP layer serialises access.

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{SystemTime, UNIX_EPOCH};

/// An answer in the Engine API's terms: status and JSON body.
pub type Answer = (u16, Value);

/// A refusal, worded as dockerd words it.
pub fn refuse(status: u16, message: impl Into<String>) -> Answer {
    (status, json!({ "message": message.into() }))
}

/// An event to publish on one node's `/events` stream.
pub struct Emitted {
    pub node: usize,
    pub event: Value,
}

pub struct Network {
    pub id: String,
    pub name: String,
    pub driver: String,
    pub ingress: bool,
    pub subnet: Option<ipnetwork::Ipv4Network>,
    pub gateway: Option<Ipv4Addr>,
    pub ip_range: Option<ipnetwork::Ipv4Network>,
    pub options: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub created: String,
}

pub struct Endpoint {
    pub id: String,
    /// Held while the container runs.
    pub ip: Option<Ipv4Addr>,
    /// What the connect asked for (`IPAMConfig.IPv4Address`).
    pub requested: Option<Ipv4Addr>,
}

pub struct Container {
    pub id: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub running: bool,
    pub created: u64,
    /// By network ID.
    pub endpoints: BTreeMap<String, Endpoint>,
}

pub struct Node {
    pub id: String,
    pub hostname: String,
    /// `ip:port` as DCE's ip-map and the node proxy path spell it.
    pub addr: String,
    pub manager: bool,
    /// A node whose engine does not answer.
    pub down: bool,
    pub containers: BTreeMap<String, Container>,
    pub networks: BTreeMap<String, Network>,
}

pub enum Mode {
    Replicated(u64),
    Global,
}

pub struct Service {
    pub id: String,
    pub name: String,
    pub mode: Mode,
    pub ports: bool,
    pub labels: BTreeMap<String, String>,
    pub version: u64,
    pub created: String,
}

pub struct Task {
    pub id: String,
    pub service: String,
    pub node: usize,
    pub slot: Option<u64>,
    pub container: String,
    pub desired: &'static str,
    pub state: &'static str,
}

pub struct World {
    pub swarm_id: String,
    pub nodes: Vec<Node>,
    pub services: Vec<Service>,
    pub tasks: Vec<Task>,
    seq: u64,
    ingress_next: u32,
}

fn now() -> (u64, u128) {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_secs(), d.as_nanos())
}

fn rfc3339() -> String {
    k8s_openapi::jiff::Timestamp::now().to_string()
}

impl World {
    /// A swarm of `nodes` nodes (the first one the manager), node
    /// addresses `10.<swarm>.<k / 250>.<k % 250 + 1>:12376` as DCE's.
    pub fn new(swarm: u32, nodes: usize) -> Self {
        let mut w = World {
            swarm_id: String::new(),
            nodes: Vec::new(),
            services: Vec::new(),
            tasks: Vec::new(),
            seq: u64::from(swarm) << 40,
            ingress_next: 2,
        };
        w.swarm_id = w.id(25);
        // Swarm-scoped: the same ID on every node.
        let ingress_id = w.id(25);
        for k in 0..nodes {
            let id = w.id(25);
            let ingress = Network {
                id: ingress_id.clone(),
                name: "ingress".into(),
                driver: "overlay".into(),
                ingress: true,
                subnet: "10.0.0.0/16".parse().ok(),
                gateway: "10.0.0.1".parse().ok(),
                ip_range: None,
                options: BTreeMap::new(),
                labels: BTreeMap::new(),
                created: rfc3339(),
            };
            let mut networks = BTreeMap::new();
            networks.insert(ingress.id.clone(), ingress);
            w.nodes.push(Node {
                id,
                hostname: format!("sim{swarm}-node{}", k + 1),
                addr: format!("10.{}.{}.{}:12376", 100 + swarm, k / 250, k % 250 + 1),
                manager: k == 0,
                down: false,
                containers: BTreeMap::new(),
                networks,
            });
        }
        w
    }

    /// A fresh ID: `len` hex digits (Docker's are 64 for containers and
    /// networks' full IDs, 25 base-36 for swarm objects; hex does for both).
    fn id(&mut self, len: usize) -> String {
        self.seq = self.seq.wrapping_add(1);
        let mut x = self.seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
        let mut out = String::with_capacity(len);
        while out.len() < len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            out.push_str(&format!("{x:016x}"));
        }
        out.truncate(len);
        out
    }

    // ---- lookups ------------------------------------------------------

    pub fn node_by_addr(&self, addr: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.addr == addr)
    }

    fn container_key(&self, node: usize, id_or_name: &str) -> Option<String> {
        let cs = &self.nodes[node].containers;
        if cs.contains_key(id_or_name) {
            return Some(id_or_name.to_owned());
        }
        let name = id_or_name.trim_start_matches('/');
        if let Some(c) = cs.values().find(|c| c.name == name) {
            return Some(c.id.clone());
        }
        let mut hits = cs.keys().filter(|k| k.starts_with(id_or_name));
        match (hits.next(), hits.next()) {
            (Some(k), None) if !id_or_name.is_empty() => Some(k.clone()),
            _ => None,
        }
    }

    fn network_key(&self, node: usize, id_or_name: &str) -> Option<String> {
        let ns = &self.nodes[node].networks;
        if ns.contains_key(id_or_name) {
            return Some(id_or_name.to_owned());
        }
        if let Some(n) = ns.values().find(|n| n.name == id_or_name) {
            return Some(n.id.clone());
        }
        let mut hits = ns.keys().filter(|k| k.starts_with(id_or_name));
        match (hits.next(), hits.next()) {
            (Some(k), None) if !id_or_name.is_empty() => Some(k.clone()),
            _ => None,
        }
    }

    fn service_index(&self, id_or_name: &str) -> Option<usize> {
        self.services
            .iter()
            .position(|s| s.id == id_or_name || s.name == id_or_name)
            .or_else(|| {
                let hits: Vec<usize> = (0..self.services.len())
                    .filter(|i| self.services[*i].id.starts_with(id_or_name))
                    .collect();
                (hits.len() == 1 && !id_or_name.is_empty()).then(|| hits[0])
            })
    }

    // ---- read side ----------------------------------------------------

    pub fn version() -> Value {
        json!({"Version": "20.10.24+sim", "ApiVersion": "1.41", "MinAPIVersion": "1.12",
               "Os": "linux", "Arch": "amd64", "KernelVersion": "sim"})
    }

    pub fn info(&self, node: usize) -> Value {
        let n = &self.nodes[node];
        let cluster = if n.manager {
            json!({"ID": self.swarm_id})
        } else {
            Value::Null
        };
        json!({"ID": format!("SIM:{}", n.id), "Name": n.hostname, "ServerVersion": "20.10.24+sim",
               "Containers": n.containers.len(),
               "Swarm": {"NodeID": n.id, "NodeAddr": n.addr.split(':').next().unwrap_or_default(),
                         "LocalNodeState": "active", "ControlAvailable": n.manager,
                         "Cluster": cluster}})
    }

    fn not_a_manager() -> Answer {
        refuse(
            503,
            "This node is not a swarm manager. Worker nodes can't be used to view or modify cluster state. Please run this command on a manager node or promote the current node to a manager.",
        )
    }

    pub fn nodes_json(&self, node: usize) -> Answer {
        if !self.nodes[node].manager {
            return Self::not_a_manager();
        }
        let all: Vec<Value> = self
            .nodes
            .iter()
            .map(|n| {
                let ip = n.addr.split(':').next().unwrap_or_default();
                let manager = n
                    .manager
                    .then(|| json!({"Leader": true, "Reachability": "reachable", "Addr": format!("{ip}:2377")}));
                json!({"ID": n.id, "Description": {"Hostname": n.hostname},
                       "Status": {"State": if n.down { "down" } else { "ready" }, "Addr": ip},
                       "Spec": {"Role": if n.manager { "manager" } else { "worker" }, "Availability": "active"},
                       "ManagerStatus": manager})
            })
            .collect();
        (200, Value::Array(all))
    }

    /// DCE's node map.
    pub fn ip_map(&self) -> Value {
        let mut m = serde_json::Map::new();
        for n in &self.nodes {
            let ip = n.addr.split(':').next().unwrap_or_default();
            m.insert(
                n.id.clone(),
                json!({"hostname": n.hostname, "advertised_ip": ip, "advertised_address": n.addr}),
            );
        }
        Value::Object(m)
    }

    fn service_json(&self, s: &Service) -> Value {
        let mode = match s.mode {
            Mode::Replicated(n) => json!({"Replicated": {"Replicas": n}}),
            Mode::Global => json!({"Global": {}}),
        };
        let ports = if s.ports {
            json!([{"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 30080, "PublishMode": "ingress"}])
        } else {
            json!([])
        };
        json!({"ID": s.id, "Version": {"Index": s.version}, "CreatedAt": s.created, "UpdatedAt": s.created,
               "Spec": {"Name": s.name, "Labels": s.labels, "Mode": mode,
                        "TaskTemplate": {"ContainerSpec": {"Image": "busybox"}},
                        "EndpointSpec": {"Mode": "vip", "Ports": ports}},
               "Endpoint": {"Ports": ports}})
    }

    /// `GET /services`, with Docker's name filter: a prefix match.
    pub fn services_json(&self, node: usize, names: &[String]) -> Answer {
        if !self.nodes[node].manager {
            return Self::not_a_manager();
        }
        let all = self
            .services
            .iter()
            .filter(|s| names.is_empty() || names.iter().any(|n| s.name.starts_with(n.as_str())))
            .map(|s| self.service_json(s))
            .collect();
        (200, Value::Array(all))
    }

    pub fn service_get(&self, node: usize, id: &str) -> Answer {
        if !self.nodes[node].manager {
            return Self::not_a_manager();
        }
        match self.service_index(id) {
            Some(i) => (200, self.service_json(&self.services[i])),
            None => refuse(404, format!("service {id} not found")),
        }
    }

    /// `POST /services/{id}/update?version=N`: only the labels change here;
    /// an old version is refused as swarm refuses it.
    pub fn service_update(&mut self, node: usize, id: &str, version: u64, spec: &Value) -> Answer {
        if !self.nodes[node].manager {
            return Self::not_a_manager();
        }
        let Some(i) = self.service_index(id) else {
            return refuse(404, format!("service {id} not found"));
        };
        let s = &mut self.services[i];
        if version != s.version {
            return refuse(
                500,
                "rpc error: code = Unknown desc = update out of sequence",
            );
        }
        s.labels = string_map(&spec["Labels"]);
        s.version += 1;
        (200, json!({"Warnings": null}))
    }

    /// `GET /tasks` with `service` (IDs or names) and `desired-state` filters.
    pub fn tasks_json(&self, node: usize, services: &[String], desired: &[String]) -> Answer {
        if !self.nodes[node].manager {
            return Self::not_a_manager();
        }
        let wanted: Vec<&str> = services
            .iter()
            .filter_map(|s| self.service_index(s))
            .map(|i| self.services[i].id.as_str())
            .collect();
        let all = self
            .tasks
            .iter()
            .filter(|t| services.is_empty() || wanted.contains(&t.service.as_str()))
            .filter(|t| desired.is_empty() || desired.iter().any(|d| d == t.desired))
            .map(|t| {
                json!({"ID": t.id, "ServiceID": t.service, "NodeID": self.nodes[t.node].id,
                       "Slot": t.slot, "DesiredState": t.desired,
                       "Status": {"State": t.state, "Timestamp": rfc3339(),
                                  "ContainerStatus": {"ContainerID": t.container}}})
            })
            .collect();
        (200, Value::Array(all))
    }

    fn endpoint_json(&self, node: usize, net_id: &str, ep: &Endpoint) -> (String, Value) {
        let n = &self.nodes[node].networks[net_id];
        let ip = ep.ip.map(|i| i.to_string()).unwrap_or_default();
        let ipam = ep
            .requested
            .map(|r| json!({"IPv4Address": r.to_string()}))
            .unwrap_or(Value::Null);
        let prefix = n.subnet.map(|s| s.prefix()).unwrap_or(24);
        (
            n.name.clone(),
            json!({"IPAMConfig": ipam, "NetworkID": n.id, "EndpointID": ep.id, "IPAddress": ip,
                   "IPPrefixLen": if ip.is_empty() { 0 } else { prefix },
                   "Gateway": n.gateway.map(|g| g.to_string()).unwrap_or_default()}),
        )
    }

    fn container_summary(&self, node: usize, c: &Container) -> Value {
        let nets: serde_json::Map<String, Value> = c
            .endpoints
            .iter()
            .map(|(id, ep)| self.endpoint_json(node, id, ep))
            .collect();
        json!({"Id": c.id, "Names": [format!("/{}", c.name)], "Image": "busybox",
               "Created": c.created, "Labels": c.labels,
               "State": if c.running { "running" } else { "exited" },
               "Status": if c.running { "Up" } else { "Exited (137)" },
               "NetworkSettings": {"Networks": nets}})
    }

    /// `GET /containers/json` with `all`, `label` filters (`key` or
    /// `key=value`, all must match) and `id` filters (any may match; as
    /// dockerd matches them, as a pattern inside the ID).
    pub fn containers_json(
        &self,
        node: usize,
        all: bool,
        labels: &[String],
        ids: &[String],
    ) -> Answer {
        let n = &self.nodes[node];
        let out = n
            .containers
            .values()
            .filter(|c| all || c.running)
            .filter(|c| ids.is_empty() || ids.iter().any(|i| c.id.contains(i.as_str())))
            .filter(|c| {
                labels.iter().all(|l| match l.split_once('=') {
                    Some((k, v)) => c.labels.get(k).is_some_and(|x| x == v),
                    None => c.labels.contains_key(l.as_str()),
                })
            })
            .map(|c| self.container_summary(node, c))
            .collect();
        (200, Value::Array(out))
    }

    pub fn container_inspect(&self, node: usize, id: &str) -> Answer {
        let Some(key) = self.container_key(node, id) else {
            return refuse(404, format!("No such container: {id}"));
        };
        let c = &self.nodes[node].containers[&key];
        let nets: serde_json::Map<String, Value> = c
            .endpoints
            .iter()
            .map(|(id, ep)| self.endpoint_json(node, id, ep))
            .collect();
        (
            200,
            json!({"Id": c.id, "Name": format!("/{}", c.name),
                   "State": {"Status": if c.running { "running" } else { "exited" }, "Running": c.running},
                   "Config": {"Labels": c.labels, "Image": "busybox"},
                   "NetworkSettings": {"Networks": nets}}),
        )
    }

    fn network_json(&self, node: usize, n: &Network, with_containers: bool) -> Value {
        let mut config = serde_json::Map::new();
        if let Some(s) = n.subnet {
            config.insert("Subnet".into(), json!(s.to_string()));
        }
        if let Some(g) = n.gateway {
            config.insert("Gateway".into(), json!(g.to_string()));
        }
        if let Some(r) = n.ip_range {
            config.insert("IPRange".into(), json!(r.to_string()));
        }
        let mut v = json!({"Name": n.name, "Id": n.id, "Created": n.created,
            "Scope": if n.driver == "overlay" { "swarm" } else { "local" },
            "Driver": n.driver, "EnableIPv6": false, "Internal": false, "Attachable": false,
            "Ingress": n.ingress,
            "IPAM": {"Driver": "default", "Options": null, "Config": [config]},
            "Options": n.options, "Labels": n.labels});
        if with_containers {
            let prefix = n.subnet.map(|s| s.prefix()).unwrap_or(24);
            let eps: serde_json::Map<String, Value> = self.nodes[node]
                .containers
                .values()
                .filter(|c| c.running)
                .filter_map(|c| {
                    let ep = c.endpoints.get(&n.id)?;
                    let ip = ep.ip?;
                    Some((
                        c.id.clone(),
                        json!({"Name": c.name, "EndpointID": ep.id, "MacAddress": "02:42:00:00:00:00",
                               "IPv4Address": format!("{ip}/{prefix}"), "IPv6Address": ""}),
                    ))
                })
                .collect();
            v["Containers"] = Value::Object(eps);
        }
        v
    }

    pub fn networks_json(&self, node: usize) -> Answer {
        let n = &self.nodes[node];
        let all = n
            .networks
            .values()
            .map(|x| self.network_json(node, x, false))
            .collect();
        (200, Value::Array(all))
    }

    pub fn network_inspect(&self, node: usize, id: &str) -> Answer {
        match self.network_key(node, id) {
            Some(k) => (
                200,
                self.network_json(node, &self.nodes[node].networks[&k], true),
            ),
            None => refuse(404, format!("network {id} not found")),
        }
    }
}

/// A JSON object of strings (labels, options) as a map.
pub(crate) fn string_map(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) fn network_event(
    action: &str,
    net: &str,
    name: &str,
    driver: &str,
    container: &str,
) -> Value {
    let (secs, nanos) = now();
    json!({"Type": "network", "Action": action,
           "Actor": {"ID": net, "Attributes": {"container": container, "name": name, "type": driver}},
           "scope": "local", "time": secs, "timeNano": nanos as u64})
}

mod networks;
mod swarm;

#[cfg(test)]
mod tests;
