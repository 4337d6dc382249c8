//! The node's settings: one struct with serde defaults, loaded from TOML and
//! overridden by flags. The defaults live here and nowhere else.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::limits::Rate;
use crate::lookup::LookupConfig;
use crate::net::TcpLimits;
use crate::node::NodeConfig;
use crate::routing::{IpLimits, RoutingConfig};
use crate::spread::Spread;
use crate::store::StoreConfig;

/// Every setting of a node. Field names are the TOML keys.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where sled, the block files and temp files live.
    pub data_dir: PathBuf,
    /// UDP (DHT) and TCP (blocks) listen on this one address.
    pub listen: SocketAddr,
    /// The IP put in our node object; by default the listen IP, or when that is
    /// 0.0.0.0 the local IP that routes to the first bootstrap peer.
    pub advertise_ip: Option<IpAddr>,
    /// Peers to join through, as IP:PORT.
    pub bootstrap: Vec<String>,
    /// The gRPC admin API listens here (keep it on loopback or set a token).
    /// Left unset (no flag, not in the file), it follows the listen port P: 127.0.0.1:P+1.
    pub admin: SocketAddr,
    /// When set (here or in DHTFS_ADMIN_TOKEN), Admin calls need `authorization: Bearer <token>`.
    pub admin_token: Option<String>,
    /// Prometheus metrics are served here on GET /metrics.
    /// Left unset, it follows the listen port P: 127.0.0.1:P+2000.
    pub metrics: SocketAddr,
    /// The HTTP gateway (GET /file/<root>, /block/<key>) listens here.
    /// Left unset, it follows the listen port P: 127.0.0.1:P+2.
    pub gateway: SocketAddr,
    /// Serve the HTTP gateway at all (false: no gateway port is bound).
    pub gateway_enabled: bool,
    /// Gateway requests served at once; more are answered 503.
    pub gateway_max_requests: usize,
    /// Gateway connections open at once; more are closed at accept.
    pub gateway_max_connections: usize,
    /// Gateway connections open at once from one IP.
    pub gateway_max_connections_per_ip: usize,
    /// A gateway connection that waits this long on its client (idle keep-alive, slow request, stalled reader) is closed.
    pub gateway_idle_timeout_ms: u64,
    /// Chunks the gateway fetches ahead of the one it is sending (memory per response: about this many chunks).
    pub gateway_read_ahead: usize,
    /// Longest a gateway request waits for a file's manifest (tree included) or a block before answering 504.
    pub gateway_resolve_timeout_ms: u64,
    /// Bytes of resolved manifests (chunk lists) the gateway keeps, least recently used dropped first, so that further requests for a file (a video's seeks) need no manifest lookup; 0 keeps none.
    pub gateway_manifest_cache_bytes: u64,
    /// K: lookup width, nodes per answer, replicas per block.
    pub k: usize,
    /// α: lookup requests in flight.
    pub alpha: usize,
    /// Entries per k-bucket.
    pub bucket_size: usize,
    /// Newcomers remembered per full bucket.
    pub replacement_cache: usize,
    /// Failed requests in a row before a peer is dropped.
    pub max_failures: u32,
    /// How long a DHT request waits for an answer.
    pub request_timeout_ms: u64,
    /// How long a store_value waits for "saved".
    pub store_timeout_ms: u64,
    /// How long pulling one block may take.
    pub pull_timeout_ms: u64,
    /// Largest block stored (the chunk size).
    pub max_block_size: u64,
    /// Blocks up to this size are appended to segment files (one fsync per group commit); larger ones are files of their own (three fsyncs each). At most max_block_size.
    pub inline_max: u64,
    /// Most bytes of blocks stored, each block charged its bookkeeping too; 0 means no limit.
    pub quota_bytes: u64,
    /// Refuse blocks that would leave less than this many bytes free on the data dir's disk...
    pub min_free_bytes: u64,
    /// ...or less than this percentage of it, whichever is larger (both 0: no floor).
    pub min_free_percent: u8,
    /// Start even when most block files or segment files are missing (an unmounted disk?), dropping their index entries.
    pub accept_data_loss: bool,
    /// Serve the admin API on a non-loopback address without a token (never wise).
    pub allow_remote_admin_without_token: bool,
    /// sled's page cache.
    pub sled_cache_mb: u64,
    /// store_value pulls at once.
    pub max_concurrent_pulls: usize,
    /// TCP connections served at once.
    pub max_tcp_connections: usize,
    /// Idle TCP connections close after this long.
    pub tcp_idle_timeout_ms: u64,
    /// A block-server connection must deliver a whole key line this soon
    /// after connecting (or after its line's first byte).
    pub tcp_key_line_timeout_ms: u64,
    /// Block-server connections at once from one IP (loopback included).
    pub max_tcp_connections_per_ip: usize,
    /// store_value pulls at once from one source (IP; IP:port on loopback/private).
    pub max_pulls_per_source: usize,
    /// A store_value is refused when this node knows `k + store_slack` nodes
    /// closer to the key than itself.
    pub store_slack: usize,
    /// DHT requests per second one source may send (IP; IP:port on loopback/private).
    pub requests_per_sec: u32,
    /// Requests one source may send at once above that rate.
    pub request_burst: u32,
    /// DHT requests per second this node sends one peer at most (under a
    /// peer's requests_per_sec, so that it never drops ours); more wait their turn.
    pub send_requests_per_sec: u32,
    /// Requests this node sends one peer at once above that rate (under a peer's request_burst).
    pub send_request_burst: u32,
    /// Requests that may wait their turn for one peer; more fail at once as busy.
    pub send_max_waiting: usize,
    /// store_values this node has in flight to one peer at once (at most a peer's max_pulls_per_source); more wait.
    pub send_stores_per_peer: usize,
    /// Pings per second checking unproven contacts.
    pub checks_per_sec: u32,
    /// A lookup ends this long after it started, with what it has.
    pub lookup_timeout_ms: u64,
    /// Most requests one lookup sends.
    pub lookup_max_requests: usize,
    /// The soft timeout of a lookup's request (from measured round trips) never falls below this.
    pub soft_timeout_min_ms: u64,
    /// Routing-table entries per IP in one bucket (public addresses).
    pub ip_limit_bucket: usize,
    /// Routing-table entries per /24 (IPv6 /64) in one bucket.
    pub prefix_limit_bucket: usize,
    /// Routing-table entries per IP in the whole table.
    pub ip_limit_table: usize,
    /// Routing-table entries per /24 (IPv6 /64) in the whole table.
    pub prefix_limit_table: usize,
    /// A lookup's K closest take at most this many of one /24 (IPv6 /64)
    /// while other prefixes are near; 0 = plain XOR order.
    pub prefix_limit_result: usize,
    /// Apply the per-IP and per-prefix limits to loopback and private addresses too.
    pub limit_local_addrs: bool,
    /// Buckets with no lookup for this long are refreshed.
    pub bucket_refresh_secs: u64,
    /// The routing table is snapshotted to sled this often (and at shutdown).
    pub snapshot_interval_secs: u64,
    /// A changed routing table is snapshotted this long after the change (at most one write per this long); 0 = only every snapshot_interval_secs.
    pub snapshot_after_change_secs: u64,
    /// A republish sweep pass (every stored block to its K closest nodes, a lookup per keyspace region) spreads over this long; 0 = never.
    pub republish_interval_secs: u64,
    /// A scrub pass (re-hash every stored block, refetch a corrupt one) starts this long after the previous one started; 0 = never.
    pub verify_interval_secs: u64,
    /// The scrub reads at most this many MiB of blocks a second, leaving the disk to serving.
    pub scrub_rate_mib_per_sec: u64,
    /// A compaction pass (rewrite each sealed segment file a quarter or more of whose disk bytes hold no live block) starts this long after the previous one ended; 0 = never.
    pub compaction_interval_secs: u64,
    /// Compaction moves at most this many MiB of live blocks a second.
    pub compaction_rate_mib_per_sec: u64,
    /// A node that newly proves its id is stored the blocks it is now among the K closest of.
    pub handoff: bool,
    /// A repair pass (each stripe of an erasure-coded chunk held here, if this node is its closest holder: look up its shards, rebuild the missing ones) starts this long after the previous one ended; 0 = never.
    pub repair_interval_secs: u64,
    /// Bootstrap peers missing from the routing table, and peers it dropped for failing requests (the last 64), are pinged again this often, and a self-lookup follows when one answers, so the two halves of a mended network split find each other; 0 = never.
    pub rejoin_interval_secs: u64,
    /// Replicas that K closer nodes hold are dropped once the quota is this full (percent), or free disk space is under twice the floor; 0 = never drop.
    pub shed_high_water_percent: u8,
    /// ... until usage is back at this percent of the quota (and free space at twice the floor).
    pub shed_low_water_percent: u8,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./dhtfs-data"),
            listen: SocketAddr::from(([0, 0, 0, 0], 7400)),
            advertise_ip: None,
            bootstrap: Vec::new(),
            admin: SocketAddr::from(([127, 0, 0, 1], 7400 + ADMIN_OFFSET)),
            admin_token: None,
            metrics: SocketAddr::from(([127, 0, 0, 1], 7400 + METRICS_OFFSET)),
            gateway: SocketAddr::from(([127, 0, 0, 1], 7400 + GATEWAY_OFFSET)),
            gateway_enabled: true,
            gateway_max_requests: 64,
            gateway_max_connections: 256,
            gateway_max_connections_per_ip: 32,
            gateway_idle_timeout_ms: 30_000,
            gateway_read_ahead: 8,
            gateway_resolve_timeout_ms: 30_000,
            gateway_manifest_cache_bytes: 16 << 20,
            k: 7,
            alpha: 3,
            bucket_size: 20,
            replacement_cache: 8,
            max_failures: 3,
            request_timeout_ms: 2_000,
            store_timeout_ms: 30_000,
            pull_timeout_ms: 20_000,
            max_block_size: 1 << 20,
            inline_max: 1 << 20,
            quota_bytes: 0,
            min_free_bytes: 1 << 30,
            min_free_percent: 5,
            accept_data_loss: false,
            allow_remote_admin_without_token: false,
            sled_cache_mb: 64,
            max_concurrent_pulls: 64,
            max_tcp_connections: 1_024,
            tcp_idle_timeout_ms: 30_000,
            tcp_key_line_timeout_ms: 5_000,
            max_tcp_connections_per_ip: 256,
            max_pulls_per_source: 16,
            store_slack: 7,
            requests_per_sec: 250,
            request_burst: 1_000,
            send_requests_per_sec: 200,
            send_request_burst: 800,
            send_max_waiting: 500,
            send_stores_per_peer: 16,
            checks_per_sec: 20,
            lookup_timeout_ms: 10_000,
            lookup_max_requests: 300,
            soft_timeout_min_ms: 15,
            ip_limit_bucket: 1,
            prefix_limit_bucket: 2,
            ip_limit_table: 2,
            prefix_limit_table: 8,
            prefix_limit_result: 1,
            limit_local_addrs: false,
            bucket_refresh_secs: 3_600,
            snapshot_interval_secs: 300,
            snapshot_after_change_secs: 10,
            republish_interval_secs: 3_600,
            verify_interval_secs: 86_400,
            scrub_rate_mib_per_sec: 50,
            compaction_interval_secs: 600,
            compaction_rate_mib_per_sec: 32,
            handoff: true,
            repair_interval_secs: 3_600,
            rejoin_interval_secs: 60,
            shed_high_water_percent: 90,
            shed_low_water_percent: 80,
        }
    }
}

/// The admin API's port when not given: the listen port plus this.
pub const ADMIN_OFFSET: u16 = 1;
/// The gateway's port when not given: the listen port plus this.
pub const GATEWAY_OFFSET: u16 = 2;
/// The metrics port when not given: the listen port plus this (9400 for 7400).
pub const METRICS_OFFSET: u16 = 2000;

/// Which of the addresses that follow the listen port were given (by a flag
/// or in the config file); the others are derived from it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GivenAddrs {
    pub admin: bool,
    pub gateway: bool,
    pub metrics: bool,
}

impl GivenAddrs {
    /// Which of the three keys the TOML text `text` sets.
    pub fn in_toml(text: &str) -> GivenAddrs {
        let table: toml::Table = text.parse().unwrap_or_default();
        GivenAddrs {
            admin: table.contains_key("admin"),
            gateway: table.contains_key("gateway"),
            metrics: table.contains_key("metrics"),
        }
    }

    /// Either given here or in `other`.
    pub fn or(self, other: GivenAddrs) -> GivenAddrs {
        GivenAddrs {
            admin: self.admin || other.admin,
            gateway: self.gateway || other.gateway,
            metrics: self.metrics || other.metrics,
        }
    }
}

/// 127.0.0.1 on the listen port plus `offset`, keeping an
/// OS-picked listen port (0) OS-picked; `None` past port 65535.
fn follow(listen: SocketAddr, offset: u16) -> Option<SocketAddr> {
    let port = match listen.port() {
        0 => 0,
        p => p.checked_add(offset)?,
    };
    Some(SocketAddr::from(([127, 0, 0, 1], port)))
}

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("bad setting {field}: {problem}")]
    Invalid {
        field: &'static str,
        problem: String,
    },
}

impl Config {
    /// Loads a TOML file; settings it leaves out keep their defaults.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::load_noting_addrs(path).map(|(cfg, _)| cfg)
    }

    /// Loads a TOML file as [`Config::load`] does, and says which of the
    /// addresses that follow the listen port it sets.
    pub fn load_noting_addrs(path: &Path) -> Result<(Config, GivenAddrs), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let cfg = Config::parse(path, &text)?;
        Ok((cfg, GivenAddrs::in_toml(&text)))
    }

    /// The admin, gateway and metrics addresses not `given` follow the
    /// listen port P (127.0.0.1:P+1, P+2 and P+2000), so that a second node
    /// on one machine, started with only another `--listen`, collides with
    /// nothing of the first. An OS-picked listen port (0) leaves them
    /// OS-picked too.
    pub fn follow_listen_port(&mut self, given: GivenAddrs) -> Result<(), ConfigError> {
        let derive = |field: &'static str, flag: &str, offset: u16| {
            follow(self.listen, offset).ok_or_else(|| ConfigError::Invalid {
                field,
                problem: format!(
                    "it follows the listen port {} plus {offset}, past 65535: pass {flag} or a lower --listen port",
                    self.listen.port()
                ),
            })
        };
        let admin = (!given.admin)
            .then(|| derive("admin", "--admin", ADMIN_OFFSET))
            .transpose()?;
        let gateway = (!given.gateway)
            .then(|| derive("gateway", "--gateway", GATEWAY_OFFSET))
            .transpose()?;
        let metrics = (!given.metrics)
            .then(|| derive("metrics", "--metrics", METRICS_OFFSET))
            .transpose()?;
        self.admin = admin.unwrap_or(self.admin);
        self.gateway = gateway.unwrap_or(self.gateway);
        self.metrics = metrics.unwrap_or(self.metrics);
        Ok(())
    }

    fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.message().to_string(),
        })?;
        cfg.validate_values()?;
        Ok(cfg)
    }

    /// Checks the settings make sense together, including the admin API's
    /// exposure; run once the environment (DHTFS_ADMIN_TOKEN) is applied.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_values()?;
        self.validate_admin()
    }

    /// An empty token is a mistake (an unset variable in an env file), not a
    /// wish for no token; an admin API reachable from other hosts needs one.
    fn validate_admin(&self) -> Result<(), ConfigError> {
        if self
            .admin_token
            .as_deref()
            .is_some_and(|t| t.trim().is_empty())
        {
            return Err(ConfigError::Invalid {
                field: "admin_token",
                problem: "the admin token (admin_token or DHTFS_ADMIN_TOKEN) is empty: \
                          set a real one (e.g. `openssl rand -hex 32`) or unset it for no token"
                    .into(),
            });
        }
        if !self.admin.ip().is_loopback()
            && self.admin_token.is_none()
            && !self.allow_remote_admin_without_token
        {
            return Err(ConfigError::Invalid {
                field: "admin",
                problem: format!(
                    "the admin API on {} is reachable from other hosts but has no token: \
                     set DHTFS_ADMIN_TOKEN (or admin_token), or use --admin 127.0.0.1:PORT, \
                     or set allow_remote_admin_without_token = true",
                    self.admin
                ),
            });
        }
        Ok(())
    }

    /// Checks each setting's own range.
    fn validate_values(&self) -> Result<(), ConfigError> {
        let invalid = |field, problem: &str| {
            Err(ConfigError::Invalid {
                field,
                problem: problem.to_string(),
            })
        };
        if self.k == 0 || self.k > 20 {
            return invalid("k", "must be 1..20 (answers must fit one datagram)");
        }
        if self.alpha == 0 {
            return invalid("alpha", "must be at least 1");
        }
        if self.bucket_size == 0 {
            return invalid("bucket_size", "must be at least 1");
        }
        if self.max_block_size == 0 || self.max_block_size > u64::from(u32::MAX) {
            return invalid("max_block_size", "must be 1..4294967295 (a 4-byte length)");
        }
        if self.inline_max > self.max_block_size {
            return invalid("inline_max", "must not exceed max_block_size");
        }
        if self.min_free_percent > 100 {
            return invalid("min_free_percent", "must be 0..100");
        }
        if self.shed_high_water_percent > 100 {
            return invalid("shed_high_water_percent", "must be 0..100 (0: never drop)");
        }
        if self.shed_low_water_percent > self.shed_high_water_percent {
            return invalid(
                "shed_low_water_percent",
                "must not exceed shed_high_water_percent",
            );
        }
        for (field, v) in [
            ("request_timeout_ms", self.request_timeout_ms),
            ("store_timeout_ms", self.store_timeout_ms),
            ("pull_timeout_ms", self.pull_timeout_ms),
            ("tcp_idle_timeout_ms", self.tcp_idle_timeout_ms),
            ("tcp_key_line_timeout_ms", self.tcp_key_line_timeout_ms),
            ("lookup_timeout_ms", self.lookup_timeout_ms),
            ("requests_per_sec", u64::from(self.requests_per_sec)),
            ("request_burst", u64::from(self.request_burst)),
            (
                "send_requests_per_sec",
                u64::from(self.send_requests_per_sec),
            ),
            ("send_request_burst", u64::from(self.send_request_burst)),
            ("send_stores_per_peer", self.send_stores_per_peer as u64),
            ("checks_per_sec", u64::from(self.checks_per_sec)),
            ("ip_limit_bucket", self.ip_limit_bucket as u64),
            ("prefix_limit_bucket", self.prefix_limit_bucket as u64),
            ("ip_limit_table", self.ip_limit_table as u64),
            ("prefix_limit_table", self.prefix_limit_table as u64),
            (
                "max_tcp_connections_per_ip",
                self.max_tcp_connections_per_ip as u64,
            ),
            ("max_pulls_per_source", self.max_pulls_per_source as u64),
            ("lookup_max_requests", self.lookup_max_requests as u64),
            ("scrub_rate_mib_per_sec", self.scrub_rate_mib_per_sec),
            (
                "compaction_rate_mib_per_sec",
                self.compaction_rate_mib_per_sec,
            ),
            ("gateway_max_requests", self.gateway_max_requests as u64),
            (
                "gateway_max_connections",
                self.gateway_max_connections as u64,
            ),
            (
                "gateway_max_connections_per_ip",
                self.gateway_max_connections_per_ip as u64,
            ),
            ("gateway_idle_timeout_ms", self.gateway_idle_timeout_ms),
            ("gateway_read_ahead", self.gateway_read_ahead as u64),
            (
                "gateway_resolve_timeout_ms",
                self.gateway_resolve_timeout_ms,
            ),
        ] {
            if v == 0 {
                return invalid(field, "must be above 0");
            }
        }
        Ok(())
    }

    /// The engine's part of the settings.
    pub fn node_config(&self) -> NodeConfig {
        NodeConfig {
            routing: RoutingConfig {
                k: self.bucket_size,
                replacement_cache: self.replacement_cache,
                max_failures: self.max_failures,
                ip_limits: IpLimits {
                    per_ip_bucket: self.ip_limit_bucket,
                    per_prefix_bucket: self.prefix_limit_bucket,
                    per_ip_table: self.ip_limit_table,
                    per_prefix_table: self.prefix_limit_table,
                    apply_to_local: self.limit_local_addrs,
                },
            },
            lookup: LookupConfig {
                k: self.k,
                alpha: self.alpha,
                max_requests: self.lookup_max_requests,
                deadline_ms: self.lookup_timeout_ms,
                spread: Spread {
                    per_prefix: self.prefix_limit_result,
                    apply_to_local: self.limit_local_addrs,
                },
                wait_slow_below: 0,
            },
            request_timeout: Duration::from_millis(self.request_timeout_ms),
            store_timeout: Duration::from_millis(self.store_timeout_ms),
            pull_timeout: Duration::from_millis(self.pull_timeout_ms),
            max_block_size: self.max_block_size,
            max_concurrent_pulls: self.max_concurrent_pulls.max(1),
            max_pending: 4096,
            is_holder: true,
            bucket_refresh: Duration::from_secs(self.bucket_refresh_secs),
            soft_timeout_min: Duration::from_millis(self.soft_timeout_min_ms),
            request_rate: Rate::new(
                f64::from(self.requests_per_sec),
                f64::from(self.request_burst),
            ),
            check_rate: Rate::new(
                f64::from(self.checks_per_sec),
                5.0 * f64::from(self.checks_per_sec),
            ),
            max_pulls_per_source: self.max_pulls_per_source,
            store_slack: self.store_slack,
            send_rate: Rate::new(
                f64::from(self.send_requests_per_sec),
                f64::from(self.send_request_burst),
            ),
            send_max_waiting: self.send_max_waiting,
            send_stores_per_peer: self.send_stores_per_peer,
            ..NodeConfig::default()
        }
    }

    /// The store's part of the settings.
    pub fn store_config(&self) -> StoreConfig {
        StoreConfig {
            inline_max: self.inline_max as usize,
            cache_bytes: self.sled_cache_mb << 20,
            max_block_size: self.max_block_size as usize,
            quota_bytes: (self.quota_bytes > 0).then_some(self.quota_bytes),
            min_free_bytes: self.min_free_bytes,
            min_free_percent: self.min_free_percent,
            accept_data_loss: self.accept_data_loss,
            ..StoreConfig::default()
        }
    }

    /// When the periodic jobs run.
    pub fn schedule(&self) -> crate::upkeep::Schedule {
        let every = |secs: u64| (secs > 0).then(|| Duration::from_secs(secs));
        crate::upkeep::Schedule {
            snapshot: Duration::from_secs(self.snapshot_interval_secs.max(1)),
            snapshot_after_change: every(self.snapshot_after_change_secs),
            republish: every(self.republish_interval_secs),
            verify: every(self.verify_interval_secs),
            scrub_bytes_per_sec: self.scrub_rate_mib_per_sec.saturating_mul(1 << 20),
            compaction: every(self.compaction_interval_secs),
            compaction_bytes_per_sec: self.compaction_rate_mib_per_sec.saturating_mul(1 << 20),
            handoff: self.handoff,
            repair: every(self.repair_interval_secs),
            shed: crate::store::pressure::Marks {
                high: self.shed_high_water_percent,
                low: self.shed_low_water_percent,
            },
            rejoin: every(self.rejoin_interval_secs),
            // Checked when the node starts (a bad one refuses the start).
            bootstrap: self
                .bootstrap
                .iter()
                .filter_map(|b| b.parse().ok())
                .collect(),
        }
    }

    /// The HTTP gateway's part of the settings.
    pub fn gateway_config(&self) -> crate::gateway::GatewayConfig {
        crate::gateway::GatewayConfig {
            max_requests: self.gateway_max_requests,
            conns: crate::gateway::ConnLimits {
                max_connections: self.gateway_max_connections,
                max_per_ip: self.gateway_max_connections_per_ip,
                idle_timeout: Duration::from_millis(self.gateway_idle_timeout_ms),
            },
            read_ahead: self.gateway_read_ahead,
            resolve_timeout: Duration::from_millis(self.gateway_resolve_timeout_ms),
            manifest_cache_bytes: self.gateway_manifest_cache_bytes,
        }
    }

    /// The block server's part of the settings.
    pub fn tcp_limits(&self) -> TcpLimits {
        TcpLimits {
            max_connections: self.max_tcp_connections.max(1),
            idle_timeout: Duration::from_millis(self.tcp_idle_timeout_ms),
            key_line_timeout: Duration::from_millis(self.tcp_key_line_timeout_ms),
            max_per_ip: self.max_tcp_connections_per_ip.max(1),
            ..TcpLimits::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        assert_eq!(toml::from_str::<Config>("").unwrap(), Config::default());
    }

    #[test]
    fn defaults_serialize_and_load_back() {
        let text = toml::to_string(&Config::default()).unwrap();
        assert_eq!(toml::from_str::<Config>(&text).unwrap(), Config::default());
    }

    #[test]
    fn unset_addresses_follow_the_listen_port() {
        let mut cfg = Config {
            listen: "0.0.0.0:7410".parse().unwrap(),
            ..Config::default()
        };
        cfg.follow_listen_port(GivenAddrs::default()).unwrap();
        assert_eq!(cfg.admin, "127.0.0.1:7411".parse().unwrap());
        assert_eq!(cfg.gateway, "127.0.0.1:7412".parse().unwrap());
        assert_eq!(cfg.metrics, "127.0.0.1:9410".parse().unwrap());
        // The default listen port gives the documented defaults.
        let mut default = Config::default();
        default.follow_listen_port(GivenAddrs::default()).unwrap();
        assert_eq!(default, Config::default());
    }

    #[test]
    fn given_addresses_stay_and_an_os_picked_port_stays_os_picked() {
        let given = GivenAddrs::in_toml("admin = \"127.0.0.1:5000\"\nk = 7\n");
        assert_eq!(
            given,
            GivenAddrs {
                admin: true,
                ..GivenAddrs::default()
            }
        );
        let mut cfg = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            admin: "127.0.0.1:5000".parse().unwrap(),
            ..Config::default()
        };
        cfg.follow_listen_port(given).unwrap();
        assert_eq!(cfg.admin, "127.0.0.1:5000".parse().unwrap());
        assert_eq!(cfg.gateway, "127.0.0.1:0".parse().unwrap());
        assert_eq!(cfg.metrics, "127.0.0.1:0".parse().unwrap());
    }

    #[test]
    fn a_derived_port_past_65535_names_the_flag() {
        let mut cfg = Config {
            listen: "0.0.0.0:64000".parse().unwrap(),
            ..Config::default()
        };
        let err = cfg.follow_listen_port(GivenAddrs::default()).unwrap_err();
        assert!(err.to_string().contains("--metrics"), "{err}");
        let given = GivenAddrs {
            metrics: true,
            ..GivenAddrs::default()
        };
        cfg.follow_listen_port(given).unwrap();
        assert_eq!(cfg.gateway, "127.0.0.1:64002".parse().unwrap());
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        assert!(toml::from_str::<Config>("nonsense = 1").is_err());
        let cfg = Config {
            k: 0,
            ..Config::default()
        };
        assert!(cfg.validate().is_err());
    }

    #[test]
    fn an_empty_admin_token_is_an_error_not_no_token() {
        for token in ["", "  "] {
            let cfg = Config {
                admin_token: Some(token.into()),
                ..Config::default()
            };
            let err = cfg.validate().unwrap_err().to_string();
            assert!(
                err.contains("admin token") && err.contains("empty"),
                "{err}"
            );
        }
        let cfg = Config {
            admin_token: Some("s3cret".into()),
            ..Config::default()
        };
        assert!(cfg.validate().is_ok());
    }

    #[test]
    fn a_remote_admin_api_needs_a_token_or_an_explicit_yes() {
        let remote = Config {
            admin: "0.0.0.0:7401".parse().unwrap(),
            ..Config::default()
        };
        let err = remote.validate().unwrap_err().to_string();
        for needle in [
            "0.0.0.0:7401",
            "DHTFS_ADMIN_TOKEN",
            "allow_remote_admin_without_token",
        ] {
            assert!(err.contains(needle), "{needle:?} in {err}");
        }
        let with_token = Config {
            admin_token: Some("s3cret".into()),
            ..remote.clone()
        };
        assert!(with_token.validate().is_ok());
        let allowed = Config {
            allow_remote_admin_without_token: true,
            ..remote.clone()
        };
        assert!(allowed.validate().is_ok());
        let v6_loopback = Config {
            admin: "[::1]:7401".parse().unwrap(),
            ..Config::default()
        };
        assert!(v6_loopback.validate().is_ok());
    }
}
