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

/// `addr` with an IPv4-mapped IP as the IPv4 address it is: what a
/// dual-stack socket reports for an IPv4 peer, made the address that peer
/// is known by everywhere else (tables, pending requests, limits).
pub fn canonical_addr(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(canonical(addr.ip()), addr.port())
}

/// Which addresses a socket can send to: one bound to an IPv4 address
/// reaches IPv4 only, one bound to a particular IPv6 address IPv6 only, and
/// one bound dual-stack to `[::]` both (IPv4 as mapped addresses).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    V4,
    V6,
    Both,
}

impl Reach {
    /// The reach of a socket bound to `local`, dual-stack when `[::]`.
    pub fn of(local: SocketAddr) -> Reach {
        match canonical(local.ip()) {
            IpAddr::V4(_) => Reach::V4,
            IpAddr::V6(v6) if v6.is_unspecified() => Reach::Both,
            IpAddr::V6(_) => Reach::V6,
        }
    }

    /// Whether a datagram to `to` can leave this socket: a contact this
    /// node cannot reach is not worth asking (it would only time out).
    pub fn allows(self, to: SocketAddr) -> bool {
        matches!(
            (self, canonical(to.ip())),
            (Reach::Both, _) | (Reach::V4, IpAddr::V4(_)) | (Reach::V6, IpAddr::V6(_))
        )
    }

    /// `to` as this socket sends to it: IPv4 as a mapped IPv6 address from
    /// a dual-stack socket, anything else as it is.
    pub fn destination(self, to: SocketAddr) -> SocketAddr {
        match (self, to) {
            (Reach::Both, SocketAddr::V4(v4)) => {
                SocketAddr::new(IpAddr::V6(v4.ip().to_ipv6_mapped()), v4.port())
            }
            _ => to,
        }
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

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_sockets_reach_follows_its_family() {
        let (v4, v6, mapped) = (
            sa("10.0.0.2:7400"),
            sa("[fd00::2]:7400"),
            sa("[::ffff:10.0.0.2]:7400"),
        );
        let v4_socket = Reach::of(sa("0.0.0.0:7400"));
        assert_eq!(v4_socket, Reach::V4);
        assert!(v4_socket.allows(v4) && v4_socket.allows(mapped) && !v4_socket.allows(v6));
        let v6_socket = Reach::of(sa("[fd00::1]:7400"));
        assert_eq!(v6_socket, Reach::V6);
        assert!(v6_socket.allows(v6) && !v6_socket.allows(v4) && !v6_socket.allows(mapped));
        let dual = Reach::of(sa("[::]:7400"));
        assert_eq!(dual, Reach::Both);
        assert!(dual.allows(v4) && dual.allows(v6));
        // A dual-stack socket sends to IPv4 as mapped; the rest unchanged.
        assert_eq!(dual.destination(v4), mapped);
        assert_eq!(dual.destination(v6), v6);
        assert_eq!(v4_socket.destination(v4), v4);
        // What the dual-stack socket reports back is the IPv4 address again.
        assert_eq!(canonical_addr(mapped), v4);
        assert_eq!(canonical_addr(v6), v6);
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
