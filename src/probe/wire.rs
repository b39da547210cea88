//! The probe on the wire: raw Ethernet frames on one interface
//! (`AF_PACKET`, which needs `CAP_NET_RAW`). Blocking; it runs in its own
//! short-lived process (`mvconf probe`, in the probe container).

use super::arp::{self, Mac};
use super::{Answer, ProbeError, Report, Timing};
use pnet_datalink::{Channel, Config, DataLinkReceiver, DataLinkSender};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// Frames sent back to back before a short pause: a pool of thousands is
/// probed without a burst a switch's storm control would notice.
const BURST: usize = 64;
const BURST_PAUSE: Duration = Duration::from_millis(5);

/// Probes every address on `interface`: `timing.probes` rounds
/// `timing.interval` apart, then listens `timing.wait` for late answers.
pub fn probe(interface: &str, addrs: &[Ipv4Addr], timing: Timing) -> Result<Report, ProbeError> {
    let iface = pnet_datalink::interfaces()
        .into_iter()
        .find(|i| i.name == interface)
        .ok_or_else(|| ProbeError::NoInterface(interface.to_owned()))?;
    let mac: Mac = iface
        .mac
        .map(|m| m.octets())
        .ok_or_else(|| ProbeError::NoMac(interface.to_owned()))?;
    let (mut tx, mut rx) = match pnet_datalink::channel(&iface, config()) {
        Ok(Channel::Ethernet(tx, rx)) => (tx, rx),
        Ok(_) => return Err(ProbeError::NoInterface(interface.to_owned())),
        Err(e) => {
            return Err(ProbeError::Socket {
                interface: interface.to_owned(),
                source: e,
            });
        }
    };
    let probing: std::collections::BTreeSet<Ipv4Addr> = addrs.iter().copied().collect();
    let mut answered: BTreeMap<Ipv4Addr, Mac> = BTreeMap::new();
    let start = Instant::now();
    for round in 0..timing.probes {
        for (i, a) in probing.iter().enumerate() {
            if answered.contains_key(a) {
                continue;
            }
            send(tx.as_mut(), interface, &arp::probe_frame(mac, *a))?;
            if (i + 1) % BURST == 0 {
                listen(rx.as_mut(), mac, &probing, &mut answered, BURST_PAUSE)?;
            }
        }
        let next = if round + 1 < timing.probes {
            timing.interval
        } else {
            timing.wait
        };
        listen(rx.as_mut(), mac, &probing, &mut answered, next)?;
    }
    Ok(Report {
        interface: interface.to_owned(),
        mac: arp::mac_text(mac),
        probed: probing.len(),
        millis: u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
        answered: answered
            .into_iter()
            .map(|(address, m)| Answer {
                address,
                mac: arp::mac_text(m),
            })
            .collect(),
    })
}

/// The socket's settings. Not promiscuous (pnet's default is): answers
/// come to our own MAC or to everyone, and hosts log (and a bank's alert
/// on) an interface that enters promiscuous mode.
fn config() -> Config {
    Config {
        read_timeout: Some(Duration::from_millis(20)),
        promiscuous: false,
        ..Config::default()
    }
}

fn send(tx: &mut dyn DataLinkSender, interface: &str, frame: &[u8]) -> Result<(), ProbeError> {
    match tx.send_to(frame, None) {
        Some(Ok(())) => Ok(()),
        Some(Err(e)) => Err(ProbeError::Send {
            interface: interface.to_owned(),
            source: e,
        }),
        None => Err(ProbeError::Send {
            interface: interface.to_owned(),
            source: std::io::Error::other("the send buffer is full"),
        }),
    }
}

/// Reads frames for `span`, noting every probed address that answers.
fn listen(
    rx: &mut dyn DataLinkReceiver,
    own: Mac,
    probing: &std::collections::BTreeSet<Ipv4Addr>,
    answered: &mut BTreeMap<Ipv4Addr, Mac>,
    span: Duration,
) -> Result<(), ProbeError> {
    let until = Instant::now() + span;
    while Instant::now() < until {
        match rx.next() {
            Ok(frame) => {
                if let Some(a) = arp::parse(frame)
                    && let Some((ip, m)) = arp::conflict(&a, own, |x| probing.contains(&x))
                {
                    answered.entry(ip).or_insert(m);
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(ProbeError::Receive(e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_probe_never_puts_the_parent_in_promiscuous_mode() {
        assert!(!super::config().promiscuous);
    }
}
