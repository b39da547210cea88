//! `mvconf operator --check`: whether this install can work, checked the
//! way the operator would start, then exit. The chart's `helm test` hook
//! runs it in a pod with the operator's arguments and ServiceAccount.

use super::{OperatorArgs, OperatorError};
use crate::cluster::Cluster;
use crate::crd::MacvlanBinding;
use kube::api::ListParams;
use kube::{Api, Client};

/// One line of the check.
struct Line {
    ok: bool,
    text: String,
}

impl Line {
    fn ok(text: String) -> Self {
        Self { ok: true, text }
    }
    fn failed(text: String) -> Self {
        Self { ok: false, text }
    }
}

/// Runs every check, prints one line each (`ok:` or `FAILED:`) on
/// stdout; `Ok(true)` when all passed.
pub(crate) async fn run(args: &OperatorArgs) -> Result<bool, OperatorError> {
    let mut lines = Vec::new();
    let client = match Client::try_default().await {
        Ok(c) => c,
        Err(e) => {
            lines.push(Line::failed(format!(
                "no Kubernetes client (in-cluster config or KUBECONFIG): {e}"
            )));
            return Ok(print(&lines));
        }
    };
    match client.apiserver_version().await {
        Ok(v) => lines.push(Line::ok(format!(
            "the Kubernetes API server answers (version {})",
            v.git_version
        ))),
        Err(e) => {
            lines.push(Line::failed(format!(
                "the Kubernetes API server does not answer: {e}"
            )));
            return Ok(print(&lines));
        }
    }
    lines.extend(bindings(&client, &args.namespaces).await);
    let namespace = args
        .pod_namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    lines.push(endpoint(&client, args, &namespace).await);
    if let Some(url) = &args.check_url {
        lines.push(ready(url).await);
    }
    Ok(print(&lines))
}

fn print(lines: &[Line]) -> bool {
    for l in lines {
        let mark = if l.ok { "ok" } else { "FAILED" };
        println!("{mark}: {}", l.text);
    }
    lines.iter().all(|l| l.ok)
}

/// MacvlanBindings can be listed where the operator watches them.
async fn bindings(client: &Client, namespaces: &[String]) -> Vec<Line> {
    let lp = ListParams::default().limit(1);
    let scopes: Vec<Option<&str>> = if namespaces.is_empty() {
        vec![None]
    } else {
        namespaces.iter().map(|n| Some(n.as_str())).collect()
    };
    let mut out = Vec::new();
    for ns in scopes {
        let (api, where_): (Api<MacvlanBinding>, String) = match ns {
            Some(ns) => (
                Api::namespaced(client.clone(), ns),
                format!("in namespace {ns}"),
            ),
            None => (Api::all(client.clone()), "in every namespace".into()),
        };
        out.push(match api.list_metadata(&lp).await {
            Ok(_) => Line::ok(format!("MacvlanBindings can be listed {where_}")),
            Err(kube::Error::Api(e)) if e.code == 404 => Line::failed(
                "the MacvlanBinding CRD is not installed: kubectl apply --server-side -f charts/mvconf/crds/"
                    .to_owned(),
            ),
            Err(kube::Error::Api(e)) if e.code == 403 => Line::failed(format!(
                "MacvlanBindings cannot be listed {where_}: forbidden ({}): the chart's RBAC is missing or another ServiceAccount runs this",
                e.message
            )),
            Err(e) => Line::failed(format!("MacvlanBindings cannot be listed {where_}: {e}")),
        });
    }
    out
}

/// The default endpoint: its credentials read, the swarm and its nodes
/// reached.
async fn endpoint(client: &Client, args: &OperatorArgs, namespace: &str) -> Line {
    let settings = match super::detected_settings(args, namespace).await {
        Ok(s) => s,
        Err(e) => return Line::failed(format!("the default endpoint: {e}")),
    };
    let identity = settings.default_endpoint.identity();
    let config = match super::context::default_credentials(client, &settings).await {
        Ok(c) => c,
        Err(e) => return Line::failed(format!("the default endpoint {identity}: {e}")),
    };
    let cluster = match Cluster::new(config) {
        Ok(c) => c,
        Err(e) => return Line::failed(format!("the default endpoint {identity}: {e}")),
    };
    let swarm = match cluster.swarm_id().await {
        Ok(id) => id.to_owned(),
        Err(e) => return Line::failed(format!("the default endpoint {identity}: {e}")),
    };
    let nodes = match cluster.nodes().await {
        Ok(n) => n,
        Err(e) => {
            return Line::failed(format!(
                "the default endpoint {identity} (swarm {swarm}): cannot list its nodes: {e}"
            ));
        }
    };
    let mut unreachable = Vec::new();
    for n in &nodes {
        if let Err(e) = n.engine.api_version().await {
            unreachable.push(format!("{}: {e}", n.hostname));
        }
    }
    if unreachable.is_empty() {
        Line::ok(format!(
            "the default endpoint {identity} reaches swarm {swarm} and the engines of its {} node{}",
            nodes.len(),
            if nodes.len() == 1 { "" } else { "s" }
        ))
    } else {
        Line::failed(format!(
            "the default endpoint {identity} (swarm {swarm}) does not reach every node's engine: {}",
            unreachable.join("; ")
        ))
    }
}

/// The running operator answers ready at `url` (its Service's /readyz).
async fn ready(url: &str) -> Line {
    let http = match reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
    {
        Ok(c) => c,
        Err(e) => return Line::failed(format!("{url}: {e}")),
    };
    match http.get(url).send().await {
        Ok(r) if r.status().is_success() => {
            Line::ok(format!("the operator answers ready at {url}"))
        }
        Ok(r) => Line::failed(format!("the operator at {url} answers {}", r.status())),
        Err(e) => Line::failed(format!("the operator at {url} does not answer: {e}")),
    }
}
