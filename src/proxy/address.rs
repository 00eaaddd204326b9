//! Which resolved addresses a proxied connection may go to: public unicast only. This is what
//! makes the proxy safe against DNS rebinding — it resolves the name itself, checks every
//! address here, and connects to the address it checked, never resolving again.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an address is not public.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// 127.0.0.0/8, ::1.
    Loopback,
    /// 10/8, 172.16/12, 192.168/16 (Docker's bridges and gateways live here).
    Private,
    /// 169.254/16, fe80::/10 — where cloud metadata services answer (169.254.169.254).
    LinkLocal,
    /// fc00::/7 (AWS's IPv6 metadata endpoint fd00:ec2::254 among them).
    UniqueLocal,
    /// 100.64/10, shared address space (Alibaba's metadata service 100.100.100.200).
    SharedAddressSpace,
    /// ::ffff:a.b.c.d and other IPv6 forms that embed an IPv4 address.
    EmbeddedIpv4,
    /// 0/8, ::, multicast, broadcast and reserved ranges.
    NotUnicast,
}

impl Refusal {
    /// Short reason for `proxyAccess` events.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Refusal::Loopback => "resolves to a loopback address",
            Refusal::Private => "resolves to a private address",
            Refusal::LinkLocal => "resolves to a link-local (cloud metadata) address",
            Refusal::UniqueLocal => "resolves to a unique-local address",
            Refusal::SharedAddressSpace => "resolves to a shared (carrier-grade NAT) address",
            Refusal::EmbeddedIpv4 => "resolves to an IPv4-mapped IPv6 address",
            Refusal::NotUnicast => "resolves to a non-unicast or reserved address",
        }
    }
}

/// `Ok` for a public unicast address, else why not.
pub(crate) fn check(ip: IpAddr) -> Result<(), Refusal> {
    match ip {
        IpAddr::V4(v4) => check_v4(v4),
        IpAddr::V6(v6) => check_v6(v6),
    }
}

fn check_v4(ip: Ipv4Addr) -> Result<(), Refusal> {
    let [a, b, c, _] = ip.octets();
    if ip.is_loopback() {
        return Err(Refusal::Loopback);
    }
    if ip.is_private() {
        return Err(Refusal::Private);
    }
    if ip.is_link_local() {
        return Err(Refusal::LinkLocal);
    }
    if a == 100 && (64..128).contains(&b) {
        return Err(Refusal::SharedAddressSpace);
    }
    // Documentation and benchmarking ranges (TEST-NET-1..3, 198.18/15) are let through: they
    // reach nothing inside, and TLS-intercepting gateways answer DNS with them (measured on our
    // CI machines: every public name resolves to 203.0.113.80).
    let reserved = a == 0
        || a >= 224 // multicast, 240/4 reserved, broadcast
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 192 && b == 88 && c == 99); // 6to4 relay anycast
    if reserved {
        return Err(Refusal::NotUnicast);
    }
    Ok(())
}

fn check_v6(ip: Ipv6Addr) -> Result<(), Refusal> {
    let segments = ip.segments();
    if ip.is_loopback() {
        return Err(Refusal::Loopback);
    }
    if ip.is_unspecified() || ip.is_multicast() {
        return Err(Refusal::NotUnicast);
    }
    if ip.to_ipv4_mapped().is_some()
        // ::a.b.c.d (deprecated IPv4-compatible), 64:ff9b::/96 (NAT64), 2002::/16 (6to4).
        || segments[..6] == [0, 0, 0, 0, 0, 0]
        || segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0]
        || segments[0] == 0x2002
    {
        return Err(Refusal::EmbeddedIpv4);
    }
    if segments[0] & 0xfe00 == 0xfc00 {
        return Err(Refusal::UniqueLocal);
    }
    if segments[0] & 0xffc0 == 0xfe80 {
        return Err(Refusal::LinkLocal);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(s: &str) -> Option<Refusal> {
        check(s.parse().expect("ip")).err()
    }

    #[test]
    fn public_addresses_pass() {
        for ip in [
            "1.1.1.1",
            "140.82.112.3",
            "2606:4700:4700::1111",
            "2a00:1450:4001::200e",
        ] {
            assert_eq!(refused(ip), None, "{ip}");
        }
    }

    #[test]
    fn internal_and_metadata_addresses_are_refused() {
        let cases = [
            ("127.0.0.1", Refusal::Loopback),
            ("127.10.0.1", Refusal::Loopback),
            ("::1", Refusal::Loopback),
            ("10.0.0.5", Refusal::Private),
            ("172.17.0.1", Refusal::Private), // the Docker gateway
            ("172.31.255.255", Refusal::Private),
            ("192.168.1.1", Refusal::Private),
            ("169.254.169.254", Refusal::LinkLocal), // AWS / GCP / Azure metadata
            ("fe80::1", Refusal::LinkLocal),
            ("fd00:ec2::254", Refusal::UniqueLocal), // AWS IPv6 metadata
            ("fc00::1", Refusal::UniqueLocal),
            ("100.100.100.200", Refusal::SharedAddressSpace), // Alibaba metadata
            ("::ffff:127.0.0.1", Refusal::EmbeddedIpv4),
            ("::ffff:8.8.8.8", Refusal::EmbeddedIpv4),
            ("::127.0.0.1", Refusal::EmbeddedIpv4),
            ("64:ff9b::a9fe:a9fe", Refusal::EmbeddedIpv4),
            ("2002:a9fe:a9fe::1", Refusal::EmbeddedIpv4),
            ("0.0.0.0", Refusal::NotUnicast),
            ("::", Refusal::NotUnicast),
            ("224.0.0.1", Refusal::NotUnicast),
            ("255.255.255.255", Refusal::NotUnicast),
            ("ff02::1", Refusal::NotUnicast),
        ];
        for (ip, why) in cases {
            assert_eq!(refused(ip), Some(why), "{ip}");
        }
    }

    #[test]
    fn ranges_end_where_they_should() {
        assert_eq!(refused("172.15.255.255"), None);
        assert_eq!(refused("172.32.0.0"), None);
        assert_eq!(refused("100.63.255.255"), None);
        assert_eq!(refused("100.128.0.0"), None);
        assert_eq!(refused("169.253.255.255"), None);
    }
}
