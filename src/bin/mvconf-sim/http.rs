//! The simulator's HTTP side: a DCE controller per swarm (its root is the
//! manager's Engine API, `/api/nodes/<ip:port>/docker/...` each node's,
//! `/api/nodes-utils/ip-map` the node map, HTTP Basic or a token), optional
//! direct per-node listeners (a Docker endpoint's `nodeUrls`), and `/_sim/`
//! to drive it as a test drives the lab's docker CLI.

use crate::world::{Answer, Emitted, Mode, World, refuse};
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use std::convert::Infallible;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::broadcast;

type Body = BoxBody<Bytes, Infallible>;

/// How the simulated engines and controller behave.
#[derive(Clone, Debug)]
pub struct Behaviour {
    /// Time one network connect or disconnect takes; a node does one at a
    /// time, as dockerd's network controller does.
    pub connect_latency: Duration,
    /// Swarm's restart delay before a failed task's replacement starts.
    pub restart_delay: Duration,
    /// `user:password` the controller demands (HTTP Basic), if any.
    pub basic: Option<String>,
    /// `X-DCE-Access-Token` the controller accepts, if any.
    pub token: Option<String>,
}

/// One simulated swarm and its controller.
pub struct Sim {
    world: Mutex<World>,
    events: Vec<broadcast::Sender<Arc<str>>>,
    busy: Vec<tokio::sync::Mutex<()>>,
    behaviour: Behaviour,
    requests: AtomicU64,
    /// Container summaries served by `GET /containers/json`: what reading
    /// nodes costs, whatever the number of requests.
    containers_listed: AtomicU64,
    /// `GET /nodes` answered: one per observation of the swarm.
    node_lists: AtomicU64,
    mutations: AtomicU64,
}

fn respond(status: u16, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()).boxed());
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

fn answer((status, body): Answer) -> Response<Body> {
    if status == 204 || body.is_null() && status == 200 {
        return respond(status, "text/plain", Bytes::new());
    }
    respond(status, "application/json", format!("{body}\n"))
}

/// The controller's own pages (nginx-like HTML), not an engine's answer.
fn page(status: u16, title: &str) -> Response<Body> {
    respond(
        status,
        "text/html",
        format!(
            "<html><head><title>{status} {title}</title></head><body><center><h1>{status} {title}</h1></center></body></html>\n"
        ),
    )
}

/// Docker's `filters` query parameter: `{"key": ["v", ...]}` (or the old
/// `{"key": {"v": true}}`).
fn filter(query: &[(String, String)], key: &str) -> Vec<String> {
    let Some((_, f)) = query.iter().find(|(k, _)| k == "filters") else {
        return vec![];
    };
    let v: Value = serde_json::from_str(f).unwrap_or(Value::Null);
    match &v[key] {
        Value::Array(a) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_owned))
            .collect(),
        Value::Object(m) => m.keys().cloned().collect(),
        _ => vec![],
    }
}

fn query_of(req: &Request<Incoming>) -> Vec<(String, String)> {
    req.uri()
        .query()
        .map(|q| {
            q.split('&')
                .filter_map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                    Some((decode(k)?, decode(v)?))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Percent-decoding of a query component (`+` is a space).
fn decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

impl Sim {
    pub fn new(world: World, behaviour: Behaviour) -> Arc<Self> {
        let n = world.nodes.len();
        Arc::new(Sim {
            world: Mutex::new(world),
            events: (0..n).map(|_| broadcast::channel(4096).0).collect(),
            busy: (0..n).map(|_| tokio::sync::Mutex::new(())).collect(),
            behaviour,
            requests: AtomicU64::new(0),
            containers_listed: AtomicU64::new(0),
            node_lists: AtomicU64::new(0),
            mutations: AtomicU64::new(0),
        })
    }

    pub fn world(&self) -> std::sync::MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn publish(&self, emitted: Vec<Emitted>) {
        for e in emitted {
            if let Some(tx) = self.events.get(e.node) {
                let _ = tx.send(Arc::from(e.event.to_string()));
            }
        }
    }

    fn authorized(&self, req: &Request<Incoming>) -> bool {
        if self.behaviour.basic.is_none() && self.behaviour.token.is_none() {
            return true;
        }
        let header = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        if let (Some(want), Some(got)) = (&self.behaviour.token, header("x-dce-access-token"))
            && *want == got
        {
            return true;
        }
        if let (Some(want), Some(got)) = (&self.behaviour.basic, header("authorization")) {
            use base64::Engine as _;
            let expected = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(want)
            );
            return got == expected;
        }
        false
    }

    /// Serves one request on the controller (`node` None) or on one node's
    /// own listener.
    pub async fn serve(
        self: Arc<Self>,
        node: Option<usize>,
        req: Request<Incoming>,
    ) -> Response<Body> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let path = req.uri().path().to_owned();
        if node.is_none() && path.starts_with("/_sim/") {
            return self.control(req).await;
        }
        if node.is_none() && !self.authorized(&req) {
            return page(401, "Authorization Required");
        }
        let (node, rest) = match node {
            Some(k) => (k, path),
            None => match self.route(&path) {
                Ok(x) => x,
                Err(r) => return *r,
            },
        };
        if self.world().nodes[node].down {
            return page(502, "Bad Gateway");
        }
        let rest = strip_version(&rest);
        self.engine(node, req, &rest).await
    }

    /// The controller's paths: its own, a node's proxy, or the manager.
    fn route(&self, path: &str) -> Result<(usize, String), Box<Response<Body>>> {
        match path {
            "/api/version" => {
                return Err(Box::new(answer((200, json!({"DCEVersion": "2.10.0"})))));
            }
            "/api/nodes-utils/ip-map" => {
                return Err(Box::new(answer((200, self.world().ip_map()))));
            }
            _ => {}
        }
        for prefix in ["/api/nodes/", "/dce/nodes/"] {
            if let Some(tail) = path.strip_prefix(prefix) {
                let Some((addr, rest)) = tail.split_once("/docker") else {
                    return Err(Box::new(page(404, "Not Found")));
                };
                let Some(k) = self.world().node_by_addr(addr) else {
                    return Err(Box::new(page(502, "Bad Gateway")));
                };
                let rest = if rest.is_empty() { "/" } else { rest };
                return Ok((k, rest.to_owned()));
            }
        }
        if path.starts_with("/api/") || path.starts_with("/dce/") {
            return Err(Box::new(page(404, "Not Found")));
        }
        Ok((0, path.to_owned()))
    }

    async fn engine(&self, node: usize, req: Request<Incoming>, path: &str) -> Response<Body> {
        let method = req.method().clone();
        let query = query_of(&req);
        let body = match req.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return answer(refuse(400, "unreadable body")),
        };
        let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
        let q = |k: &str| query.iter().find(|(x, _)| x == k).map(|(_, v)| v.as_str());
        match (&method, segs.as_slice()) {
            (&Method::GET | &Method::HEAD, ["_ping"]) => respond(200, "text/plain", "OK"),
            (&Method::GET, ["version"]) => answer((200, World::version())),
            (&Method::GET, ["info"]) => answer((200, self.world().info(node))),
            (&Method::GET, ["nodes"]) => {
                self.node_lists.fetch_add(1, Ordering::Relaxed);
                answer(self.world().nodes_json(node))
            }
            (&Method::GET, ["services"]) => {
                answer(self.world().services_json(node, &filter(&query, "name")))
            }
            (&Method::GET, ["services", id]) => answer(self.world().service_get(node, id)),
            (&Method::POST, ["services", id, "update"]) => {
                self.mutations.fetch_add(1, Ordering::Relaxed);
                let version = q("version").and_then(|v| v.parse().ok()).unwrap_or(0);
                answer(self.world().service_update(node, id, version, &json))
            }
            (&Method::GET, ["tasks"]) => answer(self.world().tasks_json(
                node,
                &filter(&query, "service"),
                &filter(&query, "desired-state"),
            )),
            (&Method::GET, ["containers", "json"]) => {
                let all = matches!(q("all"), Some("1" | "true"));
                let (code, list) = self.world().containers_json(
                    node,
                    all,
                    &filter(&query, "label"),
                    &filter(&query, "id"),
                );
                let n = list.as_array().map_or(0, Vec::len) as u64;
                self.containers_listed.fetch_add(n, Ordering::Relaxed);
                answer((code, list))
            }
            (&Method::GET, ["containers", id, "json"]) => {
                answer(self.world().container_inspect(node, id))
            }
            (&Method::GET, ["networks"]) => answer(self.world().networks_json(node)),
            (&Method::GET, ["networks", id]) => answer(self.world().network_inspect(node, id)),
            (&Method::POST, ["networks", "create"]) => {
                self.mutations.fetch_add(1, Ordering::Relaxed);
                let (a, emitted) = self.world().network_create(node, &json);
                self.publish(emitted);
                answer(a)
            }
            (&Method::DELETE, ["networks", id]) => {
                self.mutations.fetch_add(1, Ordering::Relaxed);
                let (a, emitted) = self.world().network_remove(node, id);
                self.publish(emitted);
                answer(a)
            }
            (&Method::POST, ["networks", id, verb @ ("connect" | "disconnect")]) => {
                self.mutations.fetch_add(1, Ordering::Relaxed);
                // One at a time per node, each taking the configured time.
                let _turn = self.busy[node].lock().await;
                tokio::time::sleep(self.behaviour.connect_latency).await;
                let (a, emitted) = if *verb == "connect" {
                    self.world().connect(node, id, &json)
                } else {
                    self.world().disconnect(node, id, &json)
                };
                self.publish(emitted);
                answer(a)
            }
            (&Method::GET, ["events"]) => self.events(node, &query),
            _ => answer(refuse(404, "page not found")),
        }
    }

    /// `GET /events`: a stream of JSON lines, filtered by type and action.
    fn events(&self, node: usize, query: &[(String, String)]) -> Response<Body> {
        let types = filter(query, "type");
        let actions = filter(query, "event");
        let rx = self.events[node].subscribe();
        let stream = futures::stream::unfold(rx, move |mut rx| {
            let (types, actions) = (types.clone(), actions.clone());
            async move {
                loop {
                    match rx.recv().await {
                        Ok(line) => {
                            let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
                            let ty = v["Type"].as_str().unwrap_or_default();
                            let action = v["Action"].as_str().unwrap_or_default();
                            if (types.is_empty() || types.iter().any(|t| t == ty))
                                && (actions.is_empty() || actions.iter().any(|a| a == action))
                            {
                                let frame = Frame::data(Bytes::from(format!("{line}\n")));
                                return Some((Ok::<_, Infallible>(frame), rx));
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            }
        });
        let mut r = Response::new(BodyExt::boxed(StreamBody::new(stream)));
        if let Ok(v) = hyper::header::HeaderValue::from_str("application/json") {
            r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
        }
        r
    }

    /// `/_sim/...`: what a test does to the lab with the docker CLI.
    async fn control(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let body = match req.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return answer(refuse(400, "unreadable body")),
        };
        let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let segs: Vec<&str> = path.trim_matches('/').split('/').skip(1).collect();
        let ip = |v: &Value| v.as_str().and_then(|s| s.parse::<Ipv4Addr>().ok());
        let result: Result<Value, Answer> = match (&method, segs.as_slice()) {
            (&Method::GET, ["state"]) => Ok(self.state()),
            (&Method::GET, ["stats"]) => Ok(json!({
                "requests": self.requests.load(Ordering::Relaxed),
                "containers_listed": self.containers_listed.load(Ordering::Relaxed),
                "node_lists": self.node_lists.load(Ordering::Relaxed),
                "mutations": self.mutations.load(Ordering::Relaxed)})),
            (&Method::POST, ["services"]) => {
                let name = json["name"].as_str().unwrap_or_default();
                let mode = if json["global"].as_bool().unwrap_or(false) {
                    Mode::Global
                } else {
                    Mode::Replicated(json["replicas"].as_u64().unwrap_or(1))
                };
                let ports = json["ports"].as_bool().unwrap_or(false);
                let r = self.world().create_service(name, mode, ports);
                r.map(|(id, emitted)| {
                    self.publish(emitted);
                    json!({"id": id})
                })
            }
            (&Method::POST, ["services", name, "scale"]) => {
                let n = json["replicas"].as_u64().unwrap_or(0);
                let r = self.world().scale(name, n);
                r.map(|e| {
                    self.publish(e);
                    Value::Null
                })
            }
            (&Method::DELETE, ["services", name]) => {
                let r = self.world().remove_service(name);
                r.map(|e| {
                    self.publish(e);
                    Value::Null
                })
            }
            (&Method::POST, ["kill"]) => {
                let c = json["container"].as_str().unwrap_or_default();
                let r = self.world().kill(c);
                r.map(|(task, emitted)| {
                    self.publish(emitted);
                    if let Some(task) = task {
                        let sim = self.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(sim.behaviour.restart_delay).await;
                            let e = sim.world().replace(&task);
                            sim.publish(e);
                        });
                    }
                    Value::Null
                })
            }
            (&Method::DELETE, ["containers", id]) => {
                let r = self.world().remove_container(id);
                r.map(|e| {
                    self.publish(e);
                    Value::Null
                })
            }
            (&Method::POST, ["nodes", k, verb]) => {
                let k: usize = k.parse().unwrap_or(0);
                let mut w = self.world();
                if k == 0 || k > w.nodes.len() {
                    Err(refuse(404, format!("no node {k}")))
                } else {
                    match *verb {
                        "run" => {
                            let r = w.run(
                                k - 1,
                                json["name"].as_str(),
                                json["network"].as_str(),
                                ip(&json["ip"]),
                            );
                            drop(w);
                            r.map(|(id, e)| {
                                self.publish(e);
                                json!({"id": id})
                            })
                        }
                        "down" | "up" => {
                            w.nodes[k - 1].down = *verb == "down";
                            Ok(Value::Null)
                        }
                        _ => Err(refuse(404, "unknown node action")),
                    }
                }
            }
            _ => Err(refuse(404, "unknown control path")),
        };
        match result {
            Ok(v) => answer((200, v)),
            Err(a) => answer(a),
        }
    }

    /// What a test needs to find its way: the swarm and its nodes.
    pub fn state(&self) -> Value {
        let w = self.world();
        let nodes: Vec<Value> = w
            .nodes
            .iter()
            .map(|n| {
                json!({"id": n.id, "hostname": n.hostname, "addr": n.addr, "down": n.down,
                            "containers": n.containers.len()})
            })
            .collect();
        json!({"swarm": w.swarm_id, "nodes": nodes, "services": w.services.len(), "tasks": w.tasks.len()})
    }
}

/// `/v1.41/info` -> `/info`.
fn strip_version(path: &str) -> String {
    if let Some(rest) = path.strip_prefix("/v")
        && let Some((v, tail)) = rest.split_once('/')
        && !v.is_empty()
        && v.chars().all(|c| c.is_ascii_digit() || c == '.')
    {
        return format!("/{tail}");
    }
    path.to_owned()
}

/// Accepts connections on `listener` until the task is dropped.
pub async fn listen(sim: Arc<Sim>, node: Option<usize>, listener: tokio::net::TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let sim = sim.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let sim = sim.clone();
                async move { Ok::<_, Infallible>(sim.serve(node, req).await) }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await;
        });
    }
}
