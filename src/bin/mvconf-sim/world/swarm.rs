//! Swarm: services, their tasks and containers; kills and replacements.

use super::{
    Answer, Container, Emitted, Endpoint, Mode, Service, Task, World, now, refuse, rfc3339,
};
use serde_json::{Value, json};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashSet};
use std::net::Ipv4Addr;

impl World {
    /// Running tasks per node.
    fn loads(&self) -> Vec<usize> {
        let mut loads = vec![0; self.nodes.len()];
        for t in self.tasks.iter().filter(|t| t.desired == "running") {
            loads[t.node] += 1;
        }
        loads
    }

    /// The up nodes by running tasks, fewest first (lowest index among
    /// equals): where new replicas go.
    fn by_load(&self) -> BinaryHeap<Reverse<(usize, usize)>> {
        let loads = self.loads();
        (0..self.nodes.len())
            .filter(|k| !self.nodes[*k].down)
            .map(|k| Reverse((loads[k], k)))
            .collect()
    }

    /// The node a new replica goes to: the one running fewest tasks.
    fn least_loaded(&self) -> usize {
        self.by_load().peek().map_or(0, |Reverse((_, k))| *k)
    }

    /// Starts a task's container: the service's labels, on the ingress
    /// network when it publishes ports.
    fn start_task(&mut self, service: usize, node: usize, slot: Option<u64>) -> Vec<Emitted> {
        let task_id = self.id(25);
        let cid = self.id(64);
        let s = &self.services[service];
        let key = match slot {
            Some(n) => n.to_string(),
            None => self.nodes[node].id.clone(),
        };
        let name = format!("{}.{key}.{task_id}", s.name);
        let mut labels = BTreeMap::new();
        labels.insert("com.docker.swarm.service.name".into(), s.name.clone());
        labels.insert("com.docker.swarm.service.id".into(), s.id.clone());
        labels.insert("com.docker.swarm.task.id".into(), task_id.clone());
        labels.insert("com.docker.swarm.task.name".into(), name.clone());
        labels.insert(
            "com.docker.swarm.node.id".into(),
            self.nodes[node].id.clone(),
        );
        labels.insert("com.docker.swarm.task".into(), String::new());
        let mut endpoints = BTreeMap::new();
        if s.ports {
            let ingress = self.nodes[node]
                .networks
                .values()
                .find(|n| n.ingress)
                .map(|n| n.id.clone());
            if let Some(ingress) = ingress {
                let n = self.ingress_next;
                self.ingress_next += 1;
                let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 0, 0, 0)) + n);
                endpoints.insert(
                    ingress,
                    Endpoint {
                        id: self.id(64),
                        ip: Some(ip),
                        requested: None,
                    },
                );
            }
        }
        let service_id = self.services[service].id.clone();
        self.nodes[node].containers.insert(
            cid.clone(),
            Container {
                id: cid.clone(),
                name,
                labels,
                running: true,
                created: now().0,
                endpoints,
            },
        );
        self.tasks.push(Task {
            id: task_id,
            service: service_id,
            node,
            slot,
            container: cid.clone(),
            desired: "running",
            state: "running",
        });
        vec![self.container_event(node, &cid, "start")]
    }

    fn container_event(&self, node: usize, cid: &str, action: &str) -> Emitted {
        let c = &self.nodes[node].containers[cid];
        let mut attrs: serde_json::Map<String, Value> = c
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        attrs.insert("image".into(), json!("busybox"));
        attrs.insert("name".into(), json!(c.name));
        if action == "die" {
            attrs.insert("exitCode".into(), json!("137"));
        }
        let (secs, nanos) = now();
        Emitted {
            node,
            event: json!({"status": action, "id": cid, "from": "busybox", "Type": "container",
                          "Action": action, "Actor": {"ID": cid, "Attributes": attrs},
                          "scope": "local", "time": secs, "timeNano": nanos as u64}),
        }
    }

    /// A service with its tasks running (replicated: slots 1..=n spread
    /// over the nodes; global: one per node).
    pub fn create_service(
        &mut self,
        name: &str,
        mode: Mode,
        ports: bool,
    ) -> Result<(String, Vec<Emitted>), Answer> {
        if self.services.iter().any(|s| s.name == name) {
            return Err(refuse(
                409,
                format!(
                    "rpc error: code = AlreadyExists desc = name conflicts with an existing object: service {name} already exists"
                ),
            ));
        }
        let id = self.id(25);
        self.services.push(Service {
            id: id.clone(),
            name: name.to_owned(),
            mode,
            ports,
            labels: BTreeMap::new(),
            version: 11,
            created: rfc3339(),
        });
        let events = self.converge(self.services.len() - 1);
        Ok((id, events))
    }

    /// Starts what the service's mode wants and stops what it no longer does.
    fn converge(&mut self, service: usize) -> Vec<Emitted> {
        let sid = self.services[service].id.clone();
        let mut events = Vec::new();
        match self.services[service].mode {
            Mode::Replicated(n) => {
                // Counted once: a service of 100,000 replicas over 1,000
                // nodes is created in one call.
                let running: HashSet<u64> = self
                    .tasks
                    .iter()
                    .filter(|t| t.service == sid && t.desired == "running")
                    .filter_map(|t| t.slot)
                    .collect();
                let mut nodes = self.by_load();
                for slot in (1..=n).filter(|s| !running.contains(s)) {
                    let node = match nodes.pop() {
                        Some(Reverse((load, k))) => {
                            nodes.push(Reverse((load + 1, k)));
                            k
                        }
                        None => 0,
                    };
                    events.extend(self.start_task(service, node, Some(slot)));
                }
                let extra: Vec<usize> = (0..self.tasks.len())
                    .filter(|i| {
                        let t = &self.tasks[*i];
                        t.service == sid && t.desired == "running" && t.slot.is_some_and(|s| s > n)
                    })
                    .collect();
                for i in extra {
                    events.extend(self.stop_task(i, "shutdown", true));
                }
            }
            Mode::Global => {
                let running: HashSet<usize> = self
                    .tasks
                    .iter()
                    .filter(|t| t.service == sid && t.desired == "running")
                    .map(|t| t.node)
                    .collect();
                for node in 0..self.nodes.len() {
                    if !running.contains(&node) && !self.nodes[node].down {
                        events.extend(self.start_task(service, node, None));
                    }
                }
            }
        }
        events
    }

    /// Stops a task's container; `remove` also removes the container (a
    /// scale-down), as swarm eventually does.
    fn stop_task(&mut self, task: usize, state: &'static str, remove: bool) -> Vec<Emitted> {
        let (node, cid) = (self.tasks[task].node, self.tasks[task].container.clone());
        self.tasks[task].desired = "shutdown";
        self.tasks[task].state = state;
        let mut events = Vec::new();
        if let Some(c) = self.nodes[node].containers.get_mut(&cid) {
            let was = c.running;
            c.running = false;
            // A stopped container keeps its connections' config, not their addresses.
            for ep in c.endpoints.values_mut() {
                ep.ip = None;
            }
            if was {
                events.push(self.container_event(node, &cid, "die"));
            }
        }
        if remove && self.nodes[node].containers.contains_key(&cid) {
            events.push(self.container_event(node, &cid, "destroy"));
            self.nodes[node].containers.remove(&cid);
        }
        events
    }

    pub fn scale(&mut self, name: &str, replicas: u64) -> Result<Vec<Emitted>, Answer> {
        let Some(i) = self.service_index(name) else {
            return Err(refuse(404, format!("service {name} not found")));
        };
        self.services[i].mode = Mode::Replicated(replicas);
        self.services[i].version += 1;
        Ok(self.converge(i))
    }

    pub fn remove_service(&mut self, name: &str) -> Result<Vec<Emitted>, Answer> {
        let Some(i) = self.service_index(name) else {
            return Err(refuse(404, format!("service {name} not found")));
        };
        let sid = self.services[i].id.clone();
        let mine: Vec<usize> = (0..self.tasks.len())
            .filter(|t| self.tasks[*t].service == sid)
            .collect();
        let mut events = Vec::new();
        for t in mine {
            events.extend(self.stop_task(t, "shutdown", true));
        }
        self.tasks.retain(|t| t.service != sid);
        self.services.remove(i);
        Ok(events)
    }

    /// `docker kill`: the container dies; returns the task to replace
    /// (after the restart delay) when it belonged to one.
    pub fn kill(&mut self, container: &str) -> Result<(Option<String>, Vec<Emitted>), Answer> {
        for node in 0..self.nodes.len() {
            let Some(cid) = self.container_key(node, container) else {
                continue;
            };
            if let Some(t) = self
                .tasks
                .iter()
                .position(|t| t.container == cid && t.desired == "running")
            {
                let id = self.tasks[t].id.clone();
                let events = self.stop_task(t, "failed", false);
                return Ok((Some(id), events));
            }
            let events = match self.nodes[node].containers.get_mut(&cid) {
                Some(c) if c.running => {
                    c.running = false;
                    for ep in c.endpoints.values_mut() {
                        ep.ip = None;
                    }
                    vec![self.container_event(node, &cid, "die")]
                }
                _ => vec![],
            };
            return Ok((None, events));
        }
        Err(refuse(404, format!("No such container: {container}")))
    }

    /// Swarm's answer to a failed task: a new task in its slot (or on its
    /// node), with a new container that has none of the old one's manual
    /// connections.
    pub fn replace(&mut self, task: &str) -> Vec<Emitted> {
        let Some(t) = self.tasks.iter().find(|t| t.id == task) else {
            return vec![];
        };
        let (sid, node, slot) = (t.service.clone(), t.node, t.slot);
        let Some(service) = self.services.iter().position(|s| s.id == sid) else {
            return vec![];
        };
        let still = match self.services[service].mode {
            Mode::Replicated(n) => slot.is_some_and(|s| s <= n),
            Mode::Global => true,
        };
        if !still {
            return vec![];
        }
        let node = if self.nodes[node].down {
            self.least_loaded()
        } else {
            node
        };
        self.start_task(service, node, slot)
    }

    /// `docker run -d [--name NAME] [--network NET [--ip IP]]` of a plain
    /// container on a node (Docker's own IPAM picks the address without
    /// `--ip`).
    pub fn run(
        &mut self,
        node: usize,
        name: Option<&str>,
        network: Option<&str>,
        ip: Option<Ipv4Addr>,
    ) -> Result<(String, Vec<Emitted>), Answer> {
        if let Some(n) = name
            && self.container_key(node, n).is_some()
        {
            return Err(refuse(
                409,
                format!("Conflict. The container name \"/{n}\" is already in use"),
            ));
        }
        let mut endpoints = BTreeMap::new();
        if let Some(network) = network {
            let Some(net) = self.network_key(node, network) else {
                return Err(refuse(404, format!("network {network} not found")));
            };
            let assigned = self.assign(node, &net, ip)?;
            let ep = self.id(64);
            endpoints.insert(
                net,
                Endpoint {
                    id: ep,
                    ip: Some(assigned),
                    requested: ip,
                },
            );
        }
        let cid = self.id(64);
        self.nodes[node].containers.insert(
            cid.clone(),
            Container {
                id: cid.clone(),
                name: name.map_or_else(|| format!("plain-{}", &cid[..8]), str::to_owned),
                labels: BTreeMap::new(),
                running: true,
                created: now().0,
                endpoints,
            },
        );
        let e = self.container_event(node, &cid, "start");
        Ok((cid, vec![e]))
    }

    /// `docker rm -f`.
    pub fn remove_container(&mut self, container: &str) -> Result<Vec<Emitted>, Answer> {
        for node in 0..self.nodes.len() {
            if let Some(cid) = self.container_key(node, container) {
                let mut events = Vec::new();
                if self.nodes[node].containers[&cid].running {
                    events.push(self.container_event(node, &cid, "die"));
                }
                events.push(self.container_event(node, &cid, "destroy"));
                self.nodes[node].containers.remove(&cid);
                return Ok(events);
            }
        }
        Err(refuse(404, format!("No such container: {container}")))
    }
}
