//! ARP probes as RFC 5227 defines them (section 2.1.1), and what an answer
//! means. Pure: frames in, frames out.
//!
//! A probe is an ARP request with the prober's MAC as sender hardware
//! address, 0.0.0.0 as sender IP (so no host's ARP cache learns anything from
//! it) and the address being probed as target IP. The address is in use when,
//! while probing, an ARP packet arrives whose sender IP is the probed address
//! (a reply, or any request from its holder), or an ARP probe for the same
//! address from another MAC (another host about to take it).

use std::net::Ipv4Addr;

/// A MAC address.
pub type Mac = [u8; 6];

const ETHERTYPE_ARP: [u8; 2] = [0x08, 0x06];
const HTYPE_ETHERNET: [u8; 2] = [0x00, 0x01];
const PTYPE_IPV4: [u8; 2] = [0x08, 0x00];
const OP_REQUEST: u16 = 1;
const OP_REPLY: u16 = 2;

/// Length of an ARP frame over Ethernet (without padding).
pub const FRAME_LEN: usize = 42;

/// The probe for `target`, sent from `mac`: broadcast, sender IP 0.0.0.0.
pub fn probe_frame(mac: Mac, target: Ipv4Addr) -> [u8; FRAME_LEN] {
    let mut f = [0u8; FRAME_LEN];
    f[0..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&ETHERTYPE_ARP);
    f[14..16].copy_from_slice(&HTYPE_ETHERNET);
    f[16..18].copy_from_slice(&PTYPE_IPV4);
    f[18] = 6;
    f[19] = 4;
    f[20..22].copy_from_slice(&OP_REQUEST.to_be_bytes());
    f[22..28].copy_from_slice(&mac);
    // Sender IP 0.0.0.0 (bytes 28..32) and target MAC 0 (32..38) stay zero.
    f[38..42].copy_from_slice(&target.octets());
    f
}

/// The fields of an ARP packet over Ethernet that probing reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arp {
    pub reply: bool,
    pub sender_mac: Mac,
    pub sender_ip: Ipv4Addr,
    pub target_ip: Ipv4Addr,
}

/// Reads an Ethernet frame as IPv4-over-Ethernet ARP; anything else is
/// `None` (other protocols, VLAN-tagged frames the kernel did not strip,
/// truncated packets).
pub fn parse(frame: &[u8]) -> Option<Arp> {
    let f = frame.get(..FRAME_LEN)?;
    if f[12..14] != ETHERTYPE_ARP
        || f[14..16] != HTYPE_ETHERNET
        || f[16..18] != PTYPE_IPV4
        || f[18] != 6
        || f[19] != 4
    {
        return None;
    }
    let op = u16::from_be_bytes([f[20], f[21]]);
    if op != OP_REQUEST && op != OP_REPLY {
        return None;
    }
    let ip = |at: usize| Ipv4Addr::new(f[at], f[at + 1], f[at + 2], f[at + 3]);
    let mut sender_mac = [0u8; 6];
    sender_mac.copy_from_slice(&f[22..28]);
    Some(Arp {
        reply: op == OP_REPLY,
        sender_mac,
        sender_ip: ip(28),
        target_ip: ip(38),
    })
}

/// The probed address this packet shows to be in use, and by which MAC;
/// `own` is the prober's MAC (its own probes come back on some links).
pub fn conflict(
    arp: &Arp,
    own: Mac,
    probing: impl Fn(Ipv4Addr) -> bool,
) -> Option<(Ipv4Addr, Mac)> {
    if arp.sender_mac == own {
        return None;
    }
    if !arp.sender_ip.is_unspecified() && probing(arp.sender_ip) {
        return Some((arp.sender_ip, arp.sender_mac));
    }
    // Another host's probe for an address we probe: RFC 5227 2.1.1 treats
    // it as a conflict too (both must not take it).
    if !arp.reply && arp.sender_ip.is_unspecified() && probing(arp.target_ip) {
        return Some((arp.target_ip, arp.sender_mac));
    }
    None
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn mac_text(mac: Mac) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWN: Mac = [2, 0, 0, 0, 0, 1];
    const OTHER: Mac = [2, 0, 0, 0, 0, 9];

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    /// The holder's reply to a probe (RFC 826 layout), built by hand.
    fn reply(from: Mac, from_ip: Ipv4Addr, to: Mac) -> Vec<u8> {
        let mut f = vec![0u8; 60];
        f[0..6].copy_from_slice(&to);
        f[6..12].copy_from_slice(&from);
        f[12..14].copy_from_slice(&[0x08, 0x06]);
        f[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 2]);
        f[22..28].copy_from_slice(&from);
        f[28..32].copy_from_slice(&from_ip.octets());
        f[32..38].copy_from_slice(&to);
        f
    }

    #[test]
    fn a_probe_is_a_broadcast_request_that_tells_nobody_an_address() {
        let f = probe_frame(OWN, ip("192.168.8.136"));
        let arp = parse(&f).unwrap();
        assert_eq!(&f[0..6], &[0xff; 6]);
        assert!(!arp.reply);
        assert_eq!(arp.sender_mac, OWN);
        assert_eq!(arp.sender_ip, Ipv4Addr::UNSPECIFIED);
        assert_eq!(arp.target_ip, ip("192.168.8.136"));
        assert_eq!(&f[32..38], &[0; 6], "target MAC is zero");
    }

    #[test]
    fn a_reply_from_the_probed_address_is_a_conflict_and_names_the_holder() {
        let probing = |a: Ipv4Addr| a == ip("192.168.8.136");
        let arp = parse(&reply(OTHER, ip("192.168.8.136"), OWN)).unwrap();
        assert_eq!(
            conflict(&arp, OWN, probing),
            Some((ip("192.168.8.136"), OTHER))
        );
        let elsewhere = parse(&reply(OTHER, ip("192.168.8.200"), OWN)).unwrap();
        assert_eq!(conflict(&elsewhere, OWN, probing), None);
    }

    #[test]
    fn another_hosts_probe_for_the_same_address_is_a_conflict_and_our_own_echo_is_not() {
        let probing = |a: Ipv4Addr| a == ip("192.168.8.136");
        let theirs = parse(&probe_frame(OTHER, ip("192.168.8.136"))).unwrap();
        assert_eq!(
            conflict(&theirs, OWN, probing),
            Some((ip("192.168.8.136"), OTHER))
        );
        let echo = parse(&probe_frame(OWN, ip("192.168.8.136"))).unwrap();
        assert_eq!(conflict(&echo, OWN, probing), None);
    }

    #[test]
    fn other_frames_are_not_arp() {
        assert_eq!(parse(&[0u8; 20]), None);
        let mut ipv4 = probe_frame(OWN, ip("10.0.0.1"));
        ipv4[12..14].copy_from_slice(&[0x08, 0x00]);
        assert_eq!(parse(&ipv4), None);
        assert_eq!(mac_text(OTHER), "02:00:00:00:00:09");
    }
}
