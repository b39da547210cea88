//! Runs a probe on a node: a short-lived container of the probe image
//! (mvconf's own) started through the node's engine API, directly or
//! through the DCE gateway, exactly as connects are sent.
//!
//! The container shares the node's network namespace (the probe sends raw
//! frames on the network's parent interface, and takes no address of the
//! network: Docker's IPAM is not involved), runs as root with every
//! capability dropped but `CAP_NET_RAW`, read-only, without new
//! privileges, with a small memory and process limit, and is removed
//! whatever happens.

use super::{Report, Timing};
use crate::engine::Engine;
use serde_json::json;
use std::net::Ipv4Addr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The label on probe containers (its value: the network probed), so that
/// people and tools can tell them apart.
pub const LABEL: &str = "io.mvconf.probe";

/// What a probe needs besides its addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSpec {
    /// The image, present on the nodes (mvconf's own).
    pub image: String,
    pub timing: Timing,
}

/// Why a probe gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{step} on node {node}: {source}")]
    Engine {
        step: &'static str,
        node: String,
        source: crate::engine::EngineError,
    },
    #[error("the probe on node {node} exited with {code}: {stderr}")]
    Exit {
        node: String,
        code: i64,
        stderr: String,
    },
    #[error("the probe on node {node} printed no report ({stdout:?}): {reason}")]
    Output {
        node: String,
        stdout: String,
        reason: String,
    },
}

/// The arguments of `mvconf probe` for these addresses.
pub fn command(interface: &str, addrs: &[Ipv4Addr], t: Timing) -> Vec<String> {
    let mut c = vec![
        "probe".to_owned(),
        "--interface".to_owned(),
        interface.to_owned(),
        "--probes".to_owned(),
        t.probes.to_string(),
        "--interval-ms".to_owned(),
        t.interval.as_millis().to_string(),
        "--wait-ms".to_owned(),
        t.wait.as_millis().to_string(),
    ];
    c.extend(addrs.iter().map(ToString::to_string));
    c
}

/// The create body of a probe container.
pub fn create_body(
    spec: &ProbeSpec,
    network: &str,
    interface: &str,
    addrs: &[Ipv4Addr],
) -> serde_json::Value {
    json!({
        "Image": spec.image,
        "Cmd": command(interface, addrs, spec.timing),
        "User": "0:0",
        "Labels": { LABEL: network },
        "HostConfig": {
            "NetworkMode": "host",
            "CapDrop": ["ALL"],
            "CapAdd": ["NET_RAW"],
            "ReadonlyRootfs": true,
            "SecurityOpt": ["no-new-privileges"],
            "Memory": 64 * 1024 * 1024,
            "PidsLimit": 32,
            "LogConfig": { "Type": "json-file" },
        },
    })
}

/// Probes `addrs` on `interface` (the network's parent) of the node that
/// `engine` reaches.
pub async fn run(
    engine: &Engine,
    spec: &ProbeSpec,
    network: &str,
    interface: &str,
    addrs: &[Ipv4Addr],
) -> Result<Report, RunError> {
    let node = engine.label().to_owned();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let name = format!("mvconf-probe-{}-{nanos}", sanitize(network));
    let body = create_body(spec, network, interface, addrs);
    let err = |step: &'static str| {
        let node = node.clone();
        move |source| RunError::Engine { step, node, source }
    };
    let id = engine
        .create_container(&name, &body)
        .await
        .map_err(err("creating the probe container"))?;
    let result = async {
        engine
            .start_container(&id)
            .await
            .map_err(err("starting the probe container"))?;
        let t = spec.timing;
        let expected = t.interval.saturating_mul(t.probes) + t.wait;
        let code = engine
            .wait_container(&id, expected + Duration::from_secs(30))
            .await
            .map_err(err("waiting for the probe"))?;
        let (stdout, stderr) = engine
            .container_logs(&id)
            .await
            .map_err(err("reading the probe's output"))?;
        if code != 0 {
            return Err(RunError::Exit {
                node: node.clone(),
                code,
                stderr: stderr.trim().to_owned(),
            });
        }
        let line = stdout
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        serde_json::from_str::<Report>(line).map_err(|e| RunError::Output {
            node: node.clone(),
            stdout: stdout.chars().take(200).collect(),
            reason: e.to_string(),
        })
    }
    .await;
    if let Err(e) = engine.remove_container(&id).await {
        tracing::warn!(%node, container = %id, error = %e, "could not remove the probe container");
    }
    result
}

/// A network name as a container name part.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(40)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_container_gets_raw_frames_on_the_host_and_nothing_else() {
        let spec = ProbeSpec {
            image: "mvconf:test".into(),
            timing: Timing::default(),
        };
        let b = create_body(&spec, "mv-net", "eth1.100", &["10.0.0.5".parse().unwrap()]);
        assert_eq!(b["HostConfig"]["NetworkMode"], "host");
        assert_eq!(b["HostConfig"]["CapDrop"], json!(["ALL"]));
        assert_eq!(b["HostConfig"]["CapAdd"], json!(["NET_RAW"]));
        assert_eq!(b["HostConfig"]["ReadonlyRootfs"], true);
        assert_eq!(b["Labels"][LABEL], "mv-net");
        assert_eq!(
            b["Cmd"],
            json!([
                "probe",
                "--interface",
                "eth1.100",
                "--probes",
                "3",
                "--interval-ms",
                "200",
                "--wait-ms",
                "1000",
                "10.0.0.5"
            ])
        );
        assert_eq!(sanitize("a/b c"), "a-b-c");
    }
}
