//! A short-lived client node: it binds an OS-picked port (on loopback, or
//! dual-stack on every interface), serves what its source holds, joins, and
//! goes away when the transfer is done.

use std::net::{Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use super::FilesError;
use crate::contact::Contact;
use crate::id::Id;
use crate::lookup::LookupConfig;
use crate::net::{
    advertise_ip, bind_pair, run_udp, serve_blocks, NetTransport, TcpClient, TcpLimits,
};
use crate::node::{Node, NodeConfig, TokioClock};
use crate::spread::Spread;
use crate::stats::Stats;
use crate::store::BlockStore;

/// A running client node.
pub struct Session {
    pub node: Node,
    /// Block fetches with connection reuse.
    pub client: TcpClient,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Session {
    /// Starts a client serving `source`, whose lookups return the `k` closest,
    /// and joins through `bootstrap`.
    pub async fn start(
        bootstrap: &[SocketAddr],
        source: Arc<dyn BlockStore>,
        k: usize,
    ) -> Result<Session, FilesError> {
        let ip = advertise_ip(None, SocketAddr::from(([0, 0, 0, 0], 0)), bootstrap);
        // Off loopback, dual-stack where the system has IPv6: a network
        // joined over one family names nodes it met over the other, and a
        // client of one family would see half of it.
        let (udp, tcp) = match ip.is_loopback() {
            true => bind_pair(SocketAddr::new(ip, 0))?,
            false => bind_pair(SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)))
                .or_else(|_| bind_pair(SocketAddr::new(ip, 0)))?,
        };
        let port = udp.local_addr().map_err(|source| crate::net::BindError {
            proto: "UDP",
            addr: SocketAddr::new(ip, 0),
            source,
        })?;
        // Peers see us at the address that routes to them.
        let local = SocketAddr::new(ip, port.port());
        let stats = Arc::new(Stats::default());
        let udp = Arc::new(udp);
        let client = TcpClient::new(Duration::from_secs(10), stats.clone());
        let transport = Arc::new(NetTransport::new(
            udp.clone(),
            client.clone(),
            stats.clone(),
        ));
        let cfg = NodeConfig {
            lookup: LookupConfig {
                k,
                // As a node's defaults place: one of a /24 while others are
                // near, public addresses only.
                spread: Spread {
                    per_prefix: 1,
                    apply_to_local: false,
                },
                ..LookupConfig::default()
            },
            is_holder: false,
            ..NodeConfig::default()
        };
        let node = Node::new(
            Contact::new(Id::random(), local),
            cfg,
            transport,
            Arc::new(TokioClock::new()),
            source.clone(),
            stats.clone(),
        );
        let (shutdown, stop) = watch::channel(false);
        let mut tasks = JoinSet::new();
        tasks.spawn(run_udp(udp, node.clone(), stop.clone()));
        tasks.spawn(serve_blocks(tcp, source, stats, TcpLimits::default(), stop));
        let session = Session {
            node,
            client,
            shutdown,
            tasks,
        };
        if session.node.join(bootstrap, &[]).await == 0 {
            session.close().await;
            return Err(FilesError::NoBootstrap(bootstrap.to_vec()));
        }
        Ok(session)
    }

    /// Stops serving and waits for the tasks.
    pub async fn close(mut self) {
        let _ = self.shutdown.send(true);
        while self.tasks.join_next().await.is_some() {}
    }
}
