//! Duplicate-address detection on the L2 segment, for addresses Docker
//! cannot see (routers, VRRP addresses, physical hosts, other platforms'
//! containers): before an address is first handed out it is probed with ARP
//! (RFC 5227 style), and an address that answers is skipped.
//!
//! Three parts:
//! - [`arp`] (pure): the probe frame, and what an answer means;
//! - [`wire`]: the probe itself, raw frames on one interface, run by
//!   `mvconf probe` inside a short-lived container on the node (host
//!   network, only `CAP_NET_RAW`), started through the node's engine API
//!   (directly or through the DCE gateway) by [`container`];
//! - [`book`] (pure): what is known of each address (clear since when,
//!   answered by which MAC), which addresses the planner may hand out, and
//!   which to probe next, so probing runs ahead of binding.

pub mod arp;
pub mod book;
pub mod container;
pub mod wire;

use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;
use std::time::Duration;

/// How one probe run paces its probes. RFC 5227 asks a host taking an
/// address for three probes one to two seconds apart; mvconf probes ahead
/// of need, many addresses at once, and uses a shorter pace by default:
/// three probes 200 ms apart, then one second for late answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timing {
    pub probes: u32,
    pub interval: Duration,
    pub wait: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            probes: 3,
            interval: Duration::from_millis(200),
            wait: Duration::from_secs(1),
        }
    }
}

/// What `mvconf probe` prints: one JSON object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub interface: String,
    /// The prober's MAC.
    pub mac: String,
    /// How many addresses were probed.
    pub probed: usize,
    pub millis: u64,
    /// The probed addresses something answered for.
    pub answered: Vec<Answer>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Answer {
    pub address: Ipv4Addr,
    pub mac: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("no interface {0} here")]
    NoInterface(String),
    #[error("interface {0} has no MAC address")]
    NoMac(String),
    #[error("cannot open a raw socket on {interface} (the probe needs CAP_NET_RAW): {source}")]
    Socket {
        interface: String,
        source: std::io::Error,
    },
    #[error("cannot send on {interface}: {source}")]
    Send {
        interface: String,
        source: std::io::Error,
    },
    #[error("cannot read frames: {0}")]
    Receive(std::io::Error),
}
