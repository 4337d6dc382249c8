//! A running storage node: opens the store, binds UDP and TCP on one port,
//! wires the engine to them, joins, keeps the table fresh, and shuts down
//! gracefully (stop accepting, finish in-flight work, snapshot, flush).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::addr::Reach;
use crate::admin::{AdminService, BearerAuth};
use crate::config::Config;
use crate::contact::Contact;
use crate::gateway::GatewayMetrics;
use crate::metrics::Metrics;
use crate::net::{
    advertise_ip, bind_pair, bind_tcp, run_udp, serve_blocks, BindError, NetTransport, TcpClient,
};
use crate::node::{Node, TokioClock};
use crate::stats::Stats;
use crate::store::{RepairReport, Store, StoreError};
use crate::upkeep::{CompactionControl, ScrubControl};

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("data dir {0} exists but is not a directory: pass a directory (or a path to create) to --data-dir")]
    NotADir(std::path::PathBuf),
    #[error("bootstrap address '{0}' is not IP:PORT")]
    BadBootstrap(String),
    #[error("bootstrap address {bootstrap} is {family}, which a node listening on {listen} cannot reach: listen on [::]:{port} (IPv4 and IPv6 both), or bootstrap through an address of the listen address's family", family = if bootstrap.is_ipv6() { "IPv6" } else { "IPv4" }, port = listen.port())]
    BootstrapFamily {
        bootstrap: SocketAddr,
        listen: SocketAddr,
    },
    #[error("storage task failed: {0}")]
    Task(String),
}

/// A node that is up: its engine, store and address, and the tasks serving it.
pub struct Daemon {
    pub node: Node,
    pub store: Store,
    /// The address UDP and TCP are bound to (with the real port when 0 was asked).
    pub local_addr: SocketAddr,
    /// Where the gRPC admin API listens.
    pub admin_addr: SocketAddr,
    /// Where GET /metrics is served.
    pub metrics_addr: SocketAddr,
    /// Where the HTTP gateway listens; None when it is turned off.
    pub gateway_addr: Option<SocketAddr>,
    /// What opening the data dir had to repair.
    pub repaired: RepairReport,
    /// The scrub worker's state, and its pause and resume.
    pub scrub: ScrubControl,
    /// The compaction worker's state, and its pause and resume.
    pub compaction: CompactionControl,
    stats: Arc<Stats>,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Daemon {
    /// Opens the data dir and binds the ports; does not join yet.
    pub async fn start(cfg: &Config) -> Result<Daemon, StartError> {
        cfg.validate()
            .map_err(|e| StartError::Task(e.to_string()))?;
        let bootstrap = parse_bootstrap(&cfg.bootstrap)?;
        // A socket of one family cannot send to the other: say so now,
        // rather than join nobody and time out.
        let reach = Reach::of(cfg.listen);
        if let Some(&bootstrap) = bootstrap.iter().find(|b| !reach.allows(**b)) {
            return Err(StartError::BootstrapFamily {
                bootstrap,
                listen: cfg.listen,
            });
        }
        // Ports first: a taken port must not leave a fresh data dir behind.
        let (udp, tcp) = bind_pair(cfg.listen)?;
        let local_addr = udp.local_addr().map_err(|source| BindError {
            proto: "UDP",
            addr: cfg.listen,
            source,
        })?;
        // Bound after UDP and TCP, so health says SERVING only once they are.
        let (admin_listener, admin_addr) = bind_tcp("admin", cfg.admin).await?;
        let (metrics_listener, metrics_addr) = bind_tcp("metrics", cfg.metrics).await?;
        let gateway_listener = match cfg.gateway_enabled {
            true => Some(bind_tcp("gateway", cfg.gateway).await?),
            false => None,
        };
        let gateway_addr = gateway_listener.as_ref().map(|(_, addr)| *addr);

        if cfg.data_dir.exists() && !cfg.data_dir.is_dir() {
            return Err(StartError::NotADir(cfg.data_dir.clone()));
        }
        let (dir, store_cfg) = (cfg.data_dir.clone(), cfg.store_config());
        let (store, repaired) = tokio::task::spawn_blocking(move || Store::open(&dir, store_cfg))
            .await
            .map_err(|e| StartError::Task(e.to_string()))??;
        if !repaired.is_clean() {
            tracing::warn!(?repaired, "repaired the data dir after an unclean stop");
        }
        let advertised = SocketAddr::new(
            advertise_ip(cfg.advertise_ip, local_addr, &bootstrap),
            local_addr.port(),
        );
        let me = Contact::new(store.node_id(), advertised);

        let stats = Arc::new(Stats::default());
        let udp = Arc::new(udp);
        let client = TcpClient::new(Duration::from_millis(cfg.pull_timeout_ms), stats.clone());
        let transport = Arc::new(NetTransport::new(
            udp.clone(),
            client.clone(),
            stats.clone(),
        ));
        let node = Node::new(
            me,
            cfg.node_config(),
            transport,
            Arc::new(TokioClock::new()),
            Arc::new(store.clone()),
            stats.clone(),
        );
        let scrub = ScrubControl::default();
        let compaction = CompactionControl::default();
        // Each subsystem registers its own metrics with the node's registry.
        let metrics = Metrics::new(node.clone(), store.clone(), store_quota(cfg))
            .and_then(|m| {
                crate::upkeep::register_metrics(
                    m.registry(),
                    node.clone(),
                    scrub.clone(),
                    compaction.clone(),
                )?;
                Ok(m)
            })
            .map_err(|e| StartError::Task(format!("metrics: {e}")))?;
        let gateway_metrics = GatewayMetrics::register(metrics.registry())
            .map_err(|e| StartError::Task(format!("metrics: {e}")))?;

        let (shutdown, stop) = watch::channel(false);
        let mut tasks = JoinSet::new();
        tasks.spawn(run_udp(udp, node.clone(), stop.clone()));
        tasks.spawn(serve_blocks(
            tcp,
            Arc::new(store.clone()),
            stats.clone(),
            cfg.tcp_limits(),
            stop.clone(),
        ));
        let admin = AdminService::new(
            node.clone(),
            store.clone(),
            scrub.clone(),
            compaction.clone(),
            local_addr,
            admin_addr,
            metrics_addr,
        );
        let auth = BearerAuth::new(cfg.admin_token.clone());
        // A block plus room for the message around it.
        let max_message = cfg.max_block_size as usize + (64 << 10);
        let admin_stop = stop.clone();
        tasks.spawn(async move {
            if let Err(e) =
                crate::admin::serve(admin_listener, admin, auth, max_message, admin_stop).await
            {
                tracing::error!(error = %e, "admin API stopped");
            }
        });
        if let Some((listener, _)) = gateway_listener {
            let (node, gw_cfg) = (node.clone(), cfg.gateway_config());
            let (gw_metrics, gw_stop) = (gateway_metrics, stop.clone());
            tasks.spawn(async move {
                if let Err(e) =
                    crate::gateway::serve(listener, node, gw_cfg, gw_metrics, gw_stop).await
                {
                    tracing::error!(error = %e, "HTTP gateway stopped");
                }
            });
        }
        let metrics_stop = stop.clone();
        tasks.spawn(async move {
            if let Err(e) =
                crate::metrics::serve(metrics_listener, Arc::new(metrics), metrics_stop).await
            {
                tracing::error!(error = %e, "metrics endpoint stopped");
            }
        });
        let checker = node.clone();
        let checks_stop = stop.clone();
        tasks.spawn(async move {
            checker
                .run_checks(Duration::from_secs(1), checks_stop)
                .await
        });
        tasks.spawn(crate::upkeep::run(
            node.clone(),
            store.clone(),
            cfg.schedule(),
            scrub.clone(),
            compaction.clone(),
            stop,
        ));
        tracing::info!(id = %me.id, addr = %local_addr, advertised = %advertised, admin = %admin_addr, metrics = %metrics_addr, gateway = ?gateway_addr, blocks = store.block_count(), "node started");
        Ok(Daemon {
            node,
            store,
            local_addr,
            admin_addr,
            metrics_addr,
            gateway_addr,
            repaired,
            scrub,
            compaction,
            stats,
            shutdown,
            tasks,
        })
    }

    /// Joins through `bootstrap` peers, or, when there are none, through the
    /// routing snapshot of the last run. Returns how many answered.
    pub async fn join(&self, bootstrap: &[String]) -> Result<usize, StartError> {
        let addrs = parse_bootstrap(bootstrap)?;
        Ok(join_network(&self.node, &self.store, &addrs).await)
    }

    /// The node's counters.
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// Stops accepting, lets in-flight work finish, writes the routing
    /// snapshot and closes the store (durable, with a summary that makes
    /// the next start quick).
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        while self.tasks.join_next().await.is_some() {}
        // An empty table keeps the last snapshot: the hint a later start needs.
        let contacts = self.node.routing_contacts();
        if let Err(e) = crate::upkeep::save_snapshot(&self.store, contacts).await {
            tracing::error!(error = %e, "could not save the routing snapshot at shutdown");
        }
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || store.close()).await {
            Ok(Ok(())) => tracing::info!("node stopped cleanly"),
            Ok(Err(e)) => tracing::error!(error = %e, "could not save state at shutdown"),
            Err(e) => tracing::error!(error = %e, "shutdown task failed"),
        }
    }

    /// The data dir.
    pub fn data_dir(&self) -> PathBuf {
        self.store.dir().to_path_buf()
    }
}

/// Joins through `addrs`, or through the last routing snapshot when empty.
pub async fn join_network(node: &Node, store: &Store, addrs: &[SocketAddr]) -> usize {
    let known = if addrs.is_empty() {
        store.load_routing().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read the routing snapshot");
            Vec::new()
        })
    } else {
        Vec::new()
    };
    let answered = node.join(addrs, &known).await;
    tracing::info!(answered, peers = node.table().len(), "joined");
    answered
}

fn store_quota(cfg: &Config) -> Option<u64> {
    (cfg.quota_bytes > 0).then_some(cfg.quota_bytes)
}

pub fn parse_bootstrap(list: &[String]) -> Result<Vec<SocketAddr>, StartError> {
    list.iter()
        .map(|s| {
            s.parse::<SocketAddr>()
                .map_err(|_| StartError::BadBootstrap(s.clone()))
        })
        .collect()
}
