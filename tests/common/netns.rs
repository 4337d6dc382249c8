//! A test network of real addresses: each host in a network namespace of
//! its own, joined by a veth pair to one bridge in a namespace the harness
//! owns, with addresses spread over several /24s of 10.0.0.0/8 and /64s of
//! a ULA /48 (fd00:d47f::/48); each host's
//! outgoing packets dropped at random by nftables and its link capped by
//! tbf. No traffic leaves the namespaces the harness made, and dropping the
//! harness (a failed test included) kills what it started in them and
//! deletes every namespace, which takes the links with it. Namespaces a
//! crashed earlier run left behind (their owner pid gone) are deleted first.
//!
//! Needs root, `ip` (iproute2), `nft` (nftables) and `tc`; fails loudly,
//! naming what is missing, where namespaces cannot be made.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::{Command, Stdio};

/// Namespace names start with this, then the owning test process's pid.
const PREFIX: &str = "dhtfs-t";

/// What every host's link does to its outgoing packets.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    /// Packets dropped at random, in percent (0: none).
    pub loss_percent: u32,
    /// The link's rate in Mbit/s (0: uncapped).
    pub mbit: u32,
}

impl Shape {
    /// Links that lose nothing and are not capped.
    pub const CLEAN: Shape = Shape {
        loss_percent: 0,
        mbit: 0,
    };
}

/// One host: its namespace and its addresses.
#[derive(Clone, Debug)]
pub struct Host {
    /// Empty on a [`TestNetns::loopback`] network.
    pub ns: String,
    pub v4: Ipv4Addr,
    /// In a ULA /48: subnet S is `fd00:d47f:0:S::/64`.
    pub v6: Ipv6Addr,
    /// The port its node listens on.
    pub port: u16,
}

impl Host {
    /// Its IPv4 or IPv6 address.
    pub fn ip(&self, v6: bool) -> IpAddr {
        match v6 {
            true => self.v6.into(),
            false => self.v4.into(),
        }
    }

    /// Its node's address.
    pub fn addr(&self, v6: bool) -> SocketAddr {
        SocketAddr::new(self.ip(v6), self.port)
    }
}

/// The hosts and the bridge between them, and the processes started in them.
pub struct TestNetns {
    bridge: String,
    pub hosts: Vec<Host>,
}

/// Runs `ip` (or another tool) with `args`, panicking with its stderr.
fn run(tool: &str, args: &[&str]) {
    let out = Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{tool} cannot run ({e}): the network tests need it"));
    assert!(
        out.status.success(),
        "{tool} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// Namespaces of earlier runs whose process is gone.
fn remove_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let pid: i32 = rest
            .split('-')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        // SAFETY: kill(2) with signal 0 only asks whether the pid exists.
        let alive = pid > 0 && unsafe { libc::kill(pid, 0) } == 0;
        if !alive {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

/// Fails loudly when this machine cannot make namespaces or lacks a tool.
pub fn require_netns() {
    // SAFETY: geteuid(2) has no preconditions.
    assert!(
        unsafe { libc::geteuid() } == 0,
        "the namespace tests need root (CI runs as root): run tests/run as root"
    );
    for tool in ["ip", "nft", "tc"] {
        super::require_tool(tool, "apt-get install iproute2 nftables");
    }
}

impl TestNetns {
    /// For each `(S, n)` of `layout`, `n` hosts in /24 S (10.0.S.H, H from
    /// 2; IPv6 fd00:d47f:0:S::H), every link shaped by `shape`.
    pub fn start_layout(tag: &str, layout: &[(u8, u8)], shape: Shape) -> TestNetns {
        require_netns();
        remove_stale();
        let pid = std::process::id();
        let bridge = format!("{PREFIX}{pid}-{tag}-br");
        let mut net = TestNetns {
            bridge: bridge.clone(),
            hosts: Vec::new(),
        };
        run("ip", &["netns", "add", &bridge]);
        run(
            "ip",
            &["-n", &bridge, "link", "add", "br0", "type", "bridge"],
        );
        run("ip", &["-n", &bridge, "link", "set", "br0", "up"]);
        for &(s, count) in layout {
            for h in 0..count {
                let i = net.hosts.len();
                let ns = format!("{PREFIX}{pid}-{tag}-h{i}");
                // Pushed before it exists, so a failure below still deletes it.
                let v4 = Ipv4Addr::new(10, 0, s, h + 2);
                let v6 = Ipv6Addr::new(0xfd00, 0xd47f, 0, s.into(), 0, 0, 0, u16::from(h) + 2);
                net.hosts.push(Host {
                    ns: ns.clone(),
                    v4,
                    v6,
                    port: 7400,
                });
                run("ip", &["netns", "add", &ns]);
                let port = format!("h{i}");
                run(
                    "ip",
                    &[
                        "link", "add", "eth0", "netns", &ns, "type", "veth", "peer", "name", &port,
                        "netns", &bridge,
                    ],
                );
                run(
                    "ip",
                    &["-n", &bridge, "link", "set", &port, "master", "br0"],
                );
                run("ip", &["-n", &bridge, "link", "set", &port, "up"]);
                run("ip", &["-n", &ns, "link", "set", "lo", "up"]);
                run(
                    "ip",
                    &["-n", &ns, "addr", "add", &format!("{v4}/8"), "dev", "eth0"],
                );
                // No duplicate address detection: the address is usable at once.
                run(
                    "ip",
                    &[
                        "-n",
                        &ns,
                        "addr",
                        "add",
                        &format!("{v6}/48"),
                        "dev",
                        "eth0",
                        "nodad",
                    ],
                );
                run("ip", &["-n", &ns, "link", "set", "eth0", "up"]);
                net.shape(&ns, shape);
            }
        }
        net
    }

    /// `n` hosts that are no namespaces: every one on 127.0.0.1 (and ::1),
    /// on ports from `base_port`; nothing shaped. To measure beside a
    /// shaped network with the same code.
    pub fn loopback(n: usize, base_port: u16) -> TestNetns {
        TestNetns {
            bridge: String::new(),
            hosts: (0..n)
                .map(|i| Host {
                    ns: String::new(),
                    v4: Ipv4Addr::LOCALHOST,
                    v6: Ipv6Addr::LOCALHOST,
                    port: base_port + i as u16,
                })
                .collect(),
        }
    }

    /// Whether this is a [`loopback`](Self::loopback) network.
    pub fn is_loopback(&self) -> bool {
        self.bridge.is_empty()
    }

    /// Every host's outgoing packets from now on lost at `percent`% (0:
    /// none), the rest of the shape as it was: the same nodes, placement
    /// and links measured with and without loss.
    pub fn set_loss(&self, percent: u32) {
        for host in &self.hosts {
            Self::loss(&host.ns, percent);
        }
    }

    fn loss(ns: &str, percent: u32) {
        let nft = |args: &[&str]| {
            let mut all = vec!["netns", "exec", ns, "nft"];
            all.extend_from_slice(args);
            run("ip", &all);
        };
        // Adding a table or chain that exists changes nothing.
        nft(&["add", "table", "inet", "loss"]);
        nft(&[
            "add",
            "chain",
            "inet",
            "loss",
            "out",
            "{ type filter hook output priority 0; }",
        ]);
        nft(&["flush", "chain", "inet", "loss", "out"]);
        if percent > 0 {
            let rule = format!("numgen random mod 100 < {percent} drop");
            let mut args = vec!["add", "rule", "inet", "loss", "out"];
            args.extend(rule.split(' '));
            nft(&args);
        }
    }

    fn shape(&self, ns: &str, shape: Shape) {
        if shape.loss_percent > 0 {
            Self::loss(ns, shape.loss_percent);
        }
        if shape.mbit > 0 {
            let rate = format!("{}mbit", shape.mbit);
            run(
                "ip",
                &[
                    "netns", "exec", ns, "tc", "qdisc", "add", "dev", "eth0", "root", "tbf",
                    "rate", &rate, "burst", "256kb", "latency", "50ms",
                ],
            );
        }
    }

    /// `program` with `args`, to run in host `i`'s namespace.
    pub fn command(&self, i: usize, program: &str) -> Command {
        let ns = &self.hosts[i].ns;
        if ns.is_empty() {
            return Command::new(program);
        }
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns, program]);
        cmd
    }

    /// Cuts host `i` off: its port on the bridge goes down, so every packet
    /// to or from it is lost (its processes keep running).
    pub fn cut(&self, i: usize) {
        run(
            "ip",
            &["-n", &self.bridge, "link", "set", &format!("h{i}"), "down"],
        );
    }

    /// Puts host `i` back on the bridge after [`cut`](Self::cut).
    pub fn heal(&self, i: usize) {
        run(
            "ip",
            &["-n", &self.bridge, "link", "set", &format!("h{i}"), "up"],
        );
    }

    /// Moves hosts `side` to a second bridge, joined to the first by a veth
    /// trunk: nothing changes until [`partition`](Self::partition) sets the
    /// trunk down.
    pub fn split(&self, side: &[usize]) {
        let b = self.bridge.as_str();
        run("ip", &["-n", b, "link", "add", "br1", "type", "bridge"]);
        run("ip", &["-n", b, "link", "set", "br1", "up"]);
        run(
            "ip",
            &[
                "-n", b, "link", "add", "trunk0", "type", "veth", "peer", "name", "trunk1",
            ],
        );
        run("ip", &["-n", b, "link", "set", "trunk0", "master", "br0"]);
        run("ip", &["-n", b, "link", "set", "trunk1", "master", "br1"]);
        run("ip", &["-n", b, "link", "set", "trunk0", "up"]);
        run("ip", &["-n", b, "link", "set", "trunk1", "up"]);
        for &i in side {
            run(
                "ip",
                &["-n", b, "link", "set", &format!("h{i}"), "master", "br1"],
            );
        }
    }

    /// Partitions the network [`split`](Self::split) made: the trunk goes
    /// down, so no packet crosses between the two sides.
    pub fn partition(&self) {
        run("ip", &["-n", &self.bridge, "link", "set", "trunk0", "down"]);
    }

    /// Heals a [`partition`](Self::partition): the trunk comes back up.
    pub fn mend(&self) {
        run("ip", &["-n", &self.bridge, "link", "set", "trunk0", "up"]);
    }

    /// The namespaces this harness made.
    pub fn names(&self) -> Vec<String> {
        std::iter::once(self.bridge.clone())
            .chain(self.hosts.iter().map(|h| h.ns.clone()))
            .filter(|n| !n.is_empty())
            .collect()
    }
}

/// A layout of `per_subnet` hosts in each of `subnets` /24s, from 1.
pub fn grid(subnets: u8, per_subnet: u8) -> Vec<(u8, u8)> {
    (1..=subnets).map(|s| (s, per_subnet)).collect()
}

/// Every namespace on the machine.
pub fn list() -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        for ns in self.names() {
            let _ = Command::new("ip")
                .args(["netns", "del", &ns])
                .stderr(Stdio::null())
                .status();
        }
    }
}
