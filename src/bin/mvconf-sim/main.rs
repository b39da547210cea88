//! `mvconf-sim`: a Docker Engine and DCE controller simulator for tests and
//! benchmarks at sizes no machine here can hold as real engines (1,000
//! nodes, 100,000 containers, several swarms). Not part of the shipped
//! image. What it claims to do as dockerd does is checked by
//! `tests/lab_engine.rs`, whose conformance scenarios run against the real
//! lab and against it.
//!
//! ```text
//! mvconf-sim --swarms 2 --nodes 100 --ready-file /tmp/sim.json
//! ```
//! writes, once listening, `{"swarms": [{"url", "id", "nodes": [{"id",
//! "hostname", "addr", "url"?}]}]}`.
#![forbid(unsafe_code)]

mod http;
mod world;

use clap::Parser;
use serde_json::json;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "mvconf-sim",
    about = "Docker Engine / DCE simulator for mvconf's tests and benchmarks"
)]
struct Args {
    /// Swarms, each behind its own controller port.
    #[arg(long, default_value_t = 1)]
    swarms: u32,
    /// Nodes per swarm (the first is the manager).
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Milliseconds one network connect or disconnect takes (one at a time per node).
    #[arg(long, default_value_t = 20)]
    connect_ms: u64,
    /// Milliseconds before swarm replaces a killed task's container.
    #[arg(long, default_value_t = 5000)]
    restart_delay_ms: u64,
    /// `user:password` the controller demands (HTTP Basic); anonymous when unset.
    #[arg(long, env = "MVCONF_SIM_BASIC")]
    basic: Option<String>,
    /// `X-DCE-Access-Token` the controller accepts.
    #[arg(long, env = "MVCONF_SIM_TOKEN")]
    token: Option<String>,
    /// Also give every node its own listener (for a Docker endpoint's nodeUrls).
    #[arg(long)]
    node_listeners: bool,
    /// Where to write the addresses, once listening.
    #[arg(long)]
    ready_file: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let behaviour = http::Behaviour {
        connect_latency: Duration::from_millis(args.connect_ms),
        restart_delay: Duration::from_millis(args.restart_delay_ms),
        basic: args.basic.clone(),
        token: args.token.clone(),
    };
    let mut swarms = Vec::new();
    for s in 0..args.swarms {
        let sim = http::Sim::new(world::World::new(s, args.nodes), behaviour.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        tokio::spawn(http::listen(sim.clone(), None, listener));
        let mut nodes = Vec::new();
        let listed: Vec<(String, String, String)> = sim
            .world()
            .nodes
            .iter()
            .map(|n| (n.id.clone(), n.hostname.clone(), n.addr.clone()))
            .collect();
        for (k, (id, hostname, addr)) in listed.into_iter().enumerate() {
            let mut node = json!({"id": id, "hostname": hostname, "addr": addr});
            if args.node_listeners {
                let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                node["url"] = json!(format!("tcp://{}", l.local_addr()?));
                tokio::spawn(http::listen(sim.clone(), Some(k), l));
            }
            nodes.push(node);
        }
        let id = sim.world().swarm_id.clone();
        swarms.push(json!({"url": url, "id": id, "nodes": nodes}));
    }
    let ready = json!({"swarms": swarms}).to_string();
    match &args.ready_file {
        Some(p) => {
            let tmp = p.with_extension("tmp");
            std::fs::write(&tmp, &ready)?;
            std::fs::rename(&tmp, p)?;
        }
        None => println!("{ready}"),
    }
    tokio::signal::ctrl_c().await?;
    Ok(())
}
