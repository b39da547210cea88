//! Networks on one node: create, remove, and the per-node IPAM of connects.

use super::{
    Answer, Emitted, Endpoint, Network, World, network_event, refuse, rfc3339, string_map,
};
use serde_json::{Value, json};
use std::net::Ipv4Addr;

impl World {
    /// `POST /networks/create`, and dockerd's `create` event.
    pub fn network_create(&mut self, node: usize, body: &Value) -> (Answer, Vec<Emitted>) {
        let a = self.create_network(node, body);
        let emitted = self.network_lifecycle(node, &a, "create");
        (a, emitted)
    }

    /// `DELETE /networks/ID`, and dockerd's `destroy` event.
    pub fn network_remove(&mut self, node: usize, id: &str) -> (Answer, Vec<Emitted>) {
        let before = self.network_key(node, id).map(|k| {
            let n = &self.nodes[node].networks[&k];
            (k.clone(), n.name.clone(), n.driver.clone())
        });
        let a = self.remove_network(node, id);
        let emitted = match before {
            Some((key, name, driver)) if a.0 < 300 => vec![Emitted {
                node,
                event: network_event("destroy", &key, &name, &driver, ""),
            }],
            _ => Vec::new(),
        };
        (a, emitted)
    }

    fn network_lifecycle(&self, node: usize, a: &Answer, action: &str) -> Vec<Emitted> {
        let Some(id) = a.1["Id"].as_str().filter(|_| a.0 < 300) else {
            return Vec::new();
        };
        let Some(n) = self.nodes[node].networks.get(id) else {
            return Vec::new();
        };
        vec![Emitted {
            node,
            event: network_event(action, id, &n.name, &n.driver, ""),
        }]
    }

    fn create_network(&mut self, node: usize, body: &Value) -> Answer {
        let name = body["Name"].as_str().unwrap_or_default().to_owned();
        if name.is_empty() {
            return refuse(400, "network name must not be empty");
        }
        if self.network_key(node, &name).is_some() {
            return refuse(409, format!("network with name {name} already exists"));
        }
        let driver = body["Driver"].as_str().unwrap_or("bridge").to_owned();
        let config = &body["IPAM"]["Config"][0];
        let parse_net = |k: &str| -> Result<Option<ipnetwork::Ipv4Network>, Answer> {
            match config[k].as_str().filter(|s| !s.is_empty()) {
                None => Ok(None),
                Some(s) => s
                    .parse()
                    .map(Some)
                    .map_err(|_| refuse(400, format!("invalid {k} {s}"))),
            }
        };
        let (subnet, ip_range) = match (parse_net("Subnet"), parse_net("IPRange")) {
            (Ok(s), Ok(r)) => (s, r),
            (Err(e), _) | (_, Err(e)) => return e,
        };
        let gateway = config["Gateway"]
            .as_str()
            .and_then(|g| g.parse::<Ipv4Addr>().ok());
        let options = string_map(&body["Options"]);
        let labels = string_map(&body["Labels"]);
        let nets = &self.nodes[node].networks;
        if driver == "macvlan" {
            let parent = options.get("parent").cloned().unwrap_or_default();
            if let Some(other) = nets
                .values()
                .find(|n| n.driver == "macvlan" && n.options.get("parent") == Some(&parent))
            {
                return refuse(
                    403,
                    format!(
                        "network dm-{} is already using parent interface {parent}",
                        &other.id[..12]
                    ),
                );
            }
        }
        if let Some(s) = subnet
            && nets
                .values()
                .filter(|n| !n.ingress)
                .filter_map(|n| n.subnet)
                .any(|o| o.overlaps(s))
        {
            return refuse(403, "Pool overlaps with other one on this address space");
        }
        let id = self.id(64);
        self.nodes[node].networks.insert(
            id.clone(),
            Network {
                id: id.clone(),
                name,
                driver,
                ingress: false,
                subnet,
                gateway,
                ip_range,
                options,
                labels,
                created: rfc3339(),
            },
        );
        (201, json!({"Id": id, "Warning": ""}))
    }

    fn remove_network(&mut self, node: usize, id: &str) -> Answer {
        let Some(key) = self.network_key(node, id) else {
            return refuse(404, format!("network {id} not found"));
        };
        let busy = self.nodes[node]
            .containers
            .values()
            .any(|c| c.running && c.endpoints.get(&key).is_some_and(|e| e.ip.is_some()));
        if busy {
            let name = &self.nodes[node].networks[&key].name;
            return refuse(
                403,
                format!(
                    "error while removing network: network {name} id {key} has active endpoints"
                ),
            );
        }
        for c in self.nodes[node].containers.values_mut() {
            c.endpoints.remove(&key);
        }
        self.nodes[node].networks.remove(&key);
        (204, Value::Null)
    }

    /// Addresses held on network `net` of this node (running containers).
    fn held(&self, node: usize, net: &str) -> Vec<Ipv4Addr> {
        self.nodes[node]
            .containers
            .values()
            .filter(|c| c.running)
            .filter_map(|c| c.endpoints.get(net)?.ip)
            .collect()
    }

    /// The address a connect gets: the one asked for if it is free on this
    /// node, or the first free one of the range (per node: two nodes give
    /// out the same one, as Docker's macvlan IPAM does).
    pub(super) fn assign(
        &self,
        node: usize,
        net: &str,
        want: Option<Ipv4Addr>,
    ) -> Result<Ipv4Addr, Answer> {
        let n = &self.nodes[node].networks[net];
        let Some(subnet) = n.subnet else {
            return Err(refuse(400, "no configured subnet"));
        };
        let held = self.held(node, net);
        if let Some(ip) = want {
            if !subnet.contains(ip) {
                return Err(refuse(
                    400,
                    format!(
                        "Invalid address {ip}: It does not belong to any of this network's subnets"
                    ),
                ));
            }
            if held.contains(&ip) || Some(ip) == n.gateway {
                return Err(refuse(403, "Address already in use"));
            }
            return Ok(ip);
        }
        let range = n.ip_range.unwrap_or(subnet);
        range
            .iter()
            .filter(|ip| *ip != range.network() && *ip != subnet.network())
            .filter(|ip| *ip != subnet.broadcast() && Some(*ip) != n.gateway)
            .find(|ip| !held.contains(ip))
            .ok_or_else(|| {
                refuse(
                    403,
                    format!(
                        "no available IPv4 addresses on this network's address pools: {} ({})",
                        n.name, n.id
                    ),
                )
            })
    }

    pub fn connect(&mut self, node: usize, net: &str, body: &Value) -> (Answer, Vec<Emitted>) {
        let cid = body["Container"].as_str().unwrap_or_default();
        let Some(net_key) = self.network_key(node, net) else {
            return (refuse(404, format!("network {net} not found")), vec![]);
        };
        let Some(ckey) = self.container_key(node, cid) else {
            return (refuse(404, format!("No such container: {cid}")), vec![]);
        };
        let want = body["EndpointConfig"]["IPAMConfig"]["IPv4Address"]
            .as_str()
            .filter(|s| !s.is_empty());
        let want = match want.map(str::parse::<Ipv4Addr>) {
            None => None,
            Some(Ok(ip)) => Some(ip),
            Some(Err(_)) => {
                return (
                    refuse(
                        400,
                        format!("invalid IPv4 address: {}", want.unwrap_or_default()),
                    ),
                    vec![],
                );
            }
        };
        let c = &self.nodes[node].containers[&ckey];
        if c.endpoints.contains_key(&net_key) {
            let netname = &self.nodes[node].networks[&net_key].name;
            return (
                refuse(
                    403,
                    format!(
                        "endpoint with name {} already exists in network {netname}",
                        c.name
                    ),
                ),
                vec![],
            );
        }
        let running = c.running;
        let ip = if running {
            match self.assign(node, &net_key, want) {
                Ok(ip) => Some(ip),
                Err(e) => return (e, vec![]),
            }
        } else {
            None
        };
        let ep_id = self.id(64);
        let n = &mut self.nodes[node];
        let net_name = n.networks[&net_key].name.clone();
        let driver = n.networks[&net_key].driver.clone();
        if let Some(c) = n.containers.get_mut(&ckey) {
            c.endpoints.insert(
                net_key.clone(),
                Endpoint {
                    id: ep_id,
                    ip,
                    requested: want,
                },
            );
        }
        let event = network_event("connect", &net_key, &net_name, &driver, &ckey);
        ((200, Value::Null), vec![Emitted { node, event }])
    }

    pub fn disconnect(&mut self, node: usize, net: &str, body: &Value) -> (Answer, Vec<Emitted>) {
        let cid = body["Container"].as_str().unwrap_or_default();
        let Some(net_key) = self.network_key(node, net) else {
            return (refuse(404, format!("network {net} not found")), vec![]);
        };
        let Some(ckey) = self.container_key(node, cid) else {
            return (refuse(404, format!("No such container: {cid}")), vec![]);
        };
        let n = &mut self.nodes[node];
        let net_name = n.networks[&net_key].name.clone();
        let driver = n.networks[&net_key].driver.clone();
        let Some(c) = n.containers.get_mut(&ckey) else {
            return (refuse(404, format!("No such container: {cid}")), vec![]);
        };
        if c.endpoints.remove(&net_key).is_none() {
            return (
                refuse(
                    403,
                    format!("container {ckey} is not connected to network {net_name}"),
                ),
                vec![],
            );
        }
        let event = network_event("disconnect", &net_key, &net_name, &driver, &ckey);
        ((200, Value::Null), vec![Emitted { node, event }])
    }
}
