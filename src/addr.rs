//! What an address says about who sent it: whether it is a public address
//! (where one IP is one host, and per-IP and per-prefix limits make sense) or
//! loopback/private (where a devnet runs many nodes on one IP), and the key
//! that per-source limits count under. Pure: no I/O.

use std::net::{IpAddr, SocketAddr};

/// The network prefix an address belongs to: its /24 (IPv4) or /64 (IPv6),
/// the unit one operator typically controls whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Prefix {
    V4([u8; 3]),
    V6([u8; 8]),
}

/// The /24 or /64 of `ip` (an IPv4-mapped IPv6 address counts as IPv4).
pub fn prefix(ip: IpAddr) -> Prefix {
    match canonical(ip) {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            Prefix::V4([o[0], o[1], o[2]])
        }
        IpAddr::V6(v6) => {
            let mut p = [0u8; 8];
            p.copy_from_slice(&v6.octets()[..8]);
            Prefix::V6(p)
        }
    }
}

/// Whether `ip` is loopback, private (RFC 1918, IPv6 ULA), link-local or
/// unspecified: addresses where many nodes may share one IP (a devnet, a LAN)
/// and per-IP limits would only hurt.
pub fn is_local(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => {
            v4.is_loopback() || v4.is_private() || v4.is_link_local() || v4.is_unspecified()
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || (first & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (first & 0xffc0) == 0xfe80 // link local fe80::/10
        }
    }
}

/// The source a per-source limit counts under: the IP for public addresses,
/// the IP and port on local ones, where every node of a devnet shares one IP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    Ip(IpAddr),
    Addr(SocketAddr),
}

/// The per-source key of a datagram or request from `addr`.
pub fn source(addr: SocketAddr) -> Source {
    let ip = canonical(addr.ip());
    if is_local(ip) {
        Source::Addr(SocketAddr::new(ip, addr.port()))
    } else {
        Source::Ip(ip)
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) as the IPv4 address they are.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn local_and_public_addresses() {
        for local in [
            "127.0.0.1",
            "127.0.0.2",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:192.168.0.1",
        ] {
            assert!(is_local(ip(local)), "{local}");
        }
        for public in [
            "8.8.8.8",
            "203.0.113.7",
            "172.32.0.1",
            "2001:db8::1",
            "::ffff:1.2.3.4",
        ] {
            assert!(!is_local(ip(public)), "{public}");
        }
    }

    #[test]
    fn prefixes_group_a_24_and_a_64() {
        assert_eq!(prefix(ip("1.2.3.4")), prefix(ip("1.2.3.200")));
        assert_ne!(prefix(ip("1.2.3.4")), prefix(ip("1.2.4.4")));
        assert_eq!(prefix(ip("::ffff:1.2.3.9")), prefix(ip("1.2.3.4")));
        assert_eq!(
            prefix(ip("2001:db8:1:2::1")),
            prefix(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(prefix(ip("2001:db8:1:2::1")), prefix(ip("2001:db8:1:3::1")));
    }

    #[test]
    fn sources_are_ips_in_public_and_ip_ports_locally() {
        let a: SocketAddr = "8.8.8.8:1".parse().unwrap();
        let b: SocketAddr = "8.8.8.8:2".parse().unwrap();
        assert_eq!(source(a), source(b));
        assert_eq!(source(a), Source::Ip(ip("8.8.8.8")));
        let c: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let d: SocketAddr = "127.0.0.1:2".parse().unwrap();
        assert_ne!(source(c), source(d));
        let mapped: SocketAddr = "[::ffff:8.8.8.8]:5".parse().unwrap();
        assert_eq!(source(mapped), source(a));
    }
}
