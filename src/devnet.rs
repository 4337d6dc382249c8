//! `dhtfs devnet`: N nodes in one process on consecutive ports, so a new user
//! can try put and get with one command.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use crate::config::Config;
use crate::daemon::{Daemon, StartError};

/// Admin ports are the node port plus this; metrics ports plus twice this,
/// gateway ports plus three times.
pub const PORT_STRIDE: u16 = 100;

/// Nodes of a development network.
pub struct Devnet {
    pub nodes: Vec<Daemon>,
}

/// The config of devnet node `i`: node port base+i, admin base+100+i,
/// metrics base+200+i, gateway base+300+i, data in `dir/node<i>`.
pub fn node_config(dir: &Path, ip: IpAddr, base_port: u16, i: u16) -> Config {
    let port = |offset: u16| SocketAddr::new(ip, base_port + offset + i);
    Config {
        data_dir: dir.join(format!("node{i}")),
        listen: port(0),
        admin: port(PORT_STRIDE),
        metrics: port(2 * PORT_STRIDE),
        gateway: port(3 * PORT_STRIDE),
        ..Config::default()
    }
}

impl Devnet {
    /// Starts `n` nodes; every node after the first joins through the first.
    pub async fn start(n: u16, base_port: u16, dir: &Path) -> Result<Devnet, StartError> {
        let ip = IpAddr::from([127, 0, 0, 1]);
        if n == 0
            || n > PORT_STRIDE
            || u32::from(base_port) + 3 * u32::from(PORT_STRIDE) + u32::from(n) > 65_535
        {
            return Err(StartError::Task(format!(
                "--nodes {n} with --base-port {base_port} does not fit: use 1..{PORT_STRIDE} nodes and a base port below {}",
                65_535 - 4 * PORT_STRIDE
            )));
        }
        let mut nodes = Vec::new();
        for i in 0..n {
            nodes.push(Daemon::start(&node_config(dir, ip, base_port, i)).await?);
        }
        let first = vec![nodes[0].local_addr.to_string()];
        let joins = nodes.iter().skip(1).map(|d| d.join(&first));
        for joined in futures::future::join_all(joins).await {
            joined?;
        }
        // The first node learned of the others as they arrived; a refresh
        // fills the rest of its table at once.
        nodes[0].node.refresh_buckets(0).await;
        Ok(Devnet { nodes })
    }

    /// Stops every node gracefully.
    pub async fn shutdown(self) {
        for d in self.nodes {
            d.shutdown().await;
        }
    }
}
