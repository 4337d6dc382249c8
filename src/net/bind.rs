//! Binding a node's sockets: UDP and TCP on one port, and the address to
//! tell peers.

use std::net::{IpAddr, Ipv6Addr, SocketAddr, UdpSocket as StdUdpSocket};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, UdpSocket};

/// A port that could not be bound, named with the flag that picks another.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {proto} {addr}: {source} (is another dhtfs node or program using that port? pass another {})", flag_for(proto))]
pub struct BindError {
    /// What was being bound: UDP, TCP, admin, metrics or gateway.
    pub proto: &'static str,
    pub addr: SocketAddr,
    pub source: std::io::Error,
}

fn flag_for(proto: &str) -> &'static str {
    match proto {
        "admin" => "--admin",
        "metrics" => "--metrics",
        "gateway" => "--gateway (or gateway_enabled = false)",
        _ => "--listen",
    }
}

/// Binds a TCP listener for `what` (admin, metrics, gateway).
pub async fn bind_tcp(
    what: &'static str,
    addr: SocketAddr,
) -> Result<(TcpListener, SocketAddr), BindError> {
    let err = |source| BindError {
        proto: what,
        addr,
        source,
    };
    let listener = TcpListener::bind(addr).await.map_err(err)?;
    let local = listener.local_addr().map_err(err)?;
    Ok((listener, local))
}

/// Binds UDP and TCP to the same port. With port 0 the OS picks the UDP port
/// and TCP follows it; if TCP finds it taken we try again with a new one.
pub fn bind_pair(listen: SocketAddr) -> Result<(UdpSocket, TcpListener), BindError> {
    let bind_err = |proto, source| BindError {
        proto,
        addr: listen,
        source,
    };
    let attempts = if listen.port() == 0 { 20 } else { 1 };
    let mut last = None;
    for _ in 0..attempts {
        let udp = bind_udp(listen).map_err(|e| bind_err("UDP", e))?;
        let port = udp.local_addr().map_err(|e| bind_err("UDP", e))?.port();
        let tcp_addr = SocketAddr::new(listen.ip(), port);
        match listen_tcp(tcp_addr) {
            Ok(tcp) => {
                udp.set_nonblocking(true).map_err(|e| bind_err("UDP", e))?;
                tcp.set_nonblocking(true).map_err(|e| bind_err("TCP", e))?;
                let udp = UdpSocket::from_std(udp).map_err(|e| bind_err("UDP", e))?;
                let tcp = TcpListener::from_std(tcp).map_err(|e| bind_err("TCP", e))?;
                return Ok((udp, tcp));
            }
            Err(e) => last = Some(e),
        }
    }
    Err(bind_err(
        "TCP",
        last.unwrap_or_else(|| std::io::Error::other("no port found")),
    ))
}

/// Whether `addr` is `[::]`: bound dual-stack, IPv4 peers included, whatever
/// the system's `bindv6only` default says.
fn dual_stack(addr: SocketAddr) -> bool {
    matches!(addr.ip(), IpAddr::V6(v6) if v6.is_unspecified())
}

/// A UDP socket on `addr` (dual-stack on `[::]`).
fn bind_udp(addr: SocketAddr) -> std::io::Result<StdUdpSocket> {
    if !dual_stack(addr) {
        return StdUdpSocket::bind(addr);
    }
    let socket = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_only_v6(false)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// A TCP listener on `addr` (dual-stack on `[::]`).
fn listen_tcp(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    if !dual_stack(addr) {
        return std::net::TcpListener::bind(addr);
    }
    let socket = Socket::new(Domain::IPV6, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_only_v6(false)?;
    // As std's own bind does: a restarted node rebinds at once.
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// The IP we tell peers: configured, else the listen IP, else the local IP
/// that routes to the first bootstrap peer (found without sending anything),
/// else loopback.
pub fn advertise_ip(
    configured: Option<IpAddr>,
    local: SocketAddr,
    bootstrap: &[SocketAddr],
) -> IpAddr {
    if let Some(ip) = configured {
        return ip;
    }
    if !local.ip().is_unspecified() {
        return local.ip();
    }
    // The probe's family is the peer's: an IPv4 wildcard cannot reach an
    // IPv6 bootstrap, which left a client of an IPv6 network on 127.0.0.1.
    let v6 = bootstrap.first().is_some_and(SocketAddr::is_ipv6);
    let (any, loopback) = match v6 {
        true => (
            IpAddr::from(Ipv6Addr::UNSPECIFIED),
            IpAddr::from(Ipv6Addr::LOCALHOST),
        ),
        false => (IpAddr::from([0, 0, 0, 0]), IpAddr::from([127, 0, 0, 1])),
    };
    bootstrap
        .first()
        .and_then(|peer| {
            let probe = StdUdpSocket::bind(SocketAddr::new(any, 0)).ok()?;
            probe.connect(peer).ok()?;
            probe.local_addr().ok().map(|a| a.ip())
        })
        .filter(|ip| !ip.is_unspecified())
        .unwrap_or(loopback)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_on_the_ipv6_wildcard_hears_ipv4_peers_too() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            // This machine has IPv6 (tests/netns.rs runs nodes over it).
            let (udp, tcp) = bind_pair("[::]:0".parse().unwrap()).expect("binds [::]");
            let port = udp.local_addr().unwrap().port();
            let peer = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
            peer.send_to(b"hi", ("127.0.0.1", port)).await.unwrap();
            let mut buf = [0u8; 8];
            let (n, from) = udp.recv_from(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], b"hi");
            assert_eq!(
                crate::addr::canonical_addr(from),
                peer.local_addr().unwrap()
            );
            // And answers it at its IPv4 address, as the transport sends.
            let back = crate::addr::Reach::of(udp.local_addr().unwrap())
                .destination(peer.local_addr().unwrap());
            udp.send_to(b"yo", back).await.unwrap();
            let (n, _) = peer.recv_from(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], b"yo");
            let connected = tokio::net::TcpStream::connect(("127.0.0.1", port)).await;
            assert!(connected.is_ok(), "TCP over IPv4 to [::]");
            let (_, seen) = tcp.accept().await.unwrap();
            assert!(crate::addr::canonical(seen.ip()).is_ipv4());
        });
    }

    #[test]
    fn the_advertised_ip_is_of_the_bootstrap_peers_family() {
        let any: SocketAddr = "0.0.0.0:0".parse().unwrap();
        let v4: SocketAddr = "127.0.0.1:7400".parse().unwrap();
        let v6: SocketAddr = "[::1]:7400".parse().unwrap();
        assert_eq!(advertise_ip(None, any, &[v4]), IpAddr::from([127, 0, 0, 1]));
        assert_eq!(
            advertise_ip(None, any, &[v6]),
            IpAddr::from(Ipv6Addr::LOCALHOST)
        );
        assert_eq!(advertise_ip(None, any, &[]), IpAddr::from([127, 0, 0, 1]));
        let listen: SocketAddr = "127.0.0.2:0".parse().unwrap();
        assert_eq!(advertise_ip(None, listen, &[v6]), listen.ip());
        let told: IpAddr = "10.1.2.3".parse().unwrap();
        assert_eq!(advertise_ip(Some(told), any, &[v6]), told);
    }
}
