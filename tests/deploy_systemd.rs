//! The systemd deployment: deploy/systemd/dhtfs.service passes the real
//! `systemd-analyze verify` and `security`, the node speaks sd_notify the way
//! `Type=notify` and `WatchdogSec=` need (checked against a fake
//! $NOTIFY_SOCKET), and deploy/config/dhtfs.toml is every setting at its
//! default and loads unchanged.

mod common;

use common::http::get_ok;
use common::process::{node_command, parse_listening, side_ports_on_loopback, NodeProc, Proc, BIN};
use common::{deploy, read, require_tool};
use std::io::Read;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dhtfs::config::Config;
use serde_json::{json, Value};

const INSTALLED_BIN: &str = "/usr/local/bin/dhtfs";
const INSTALLED_CONFIG: &str = "/etc/dhtfs/dhtfs.toml";

fn systemd_analyze() -> PathBuf {
    require_tool(
        "systemd-analyze",
        "apt-get install systemd (Debian/Ubuntu; it ships systemd-analyze)",
    )
}

// ---------------------------------------------------------------- the unit

/// The unit with ExecStart pointed at the binary under test and its config
/// at the repo's deploy/config/dhtfs.toml; nothing else changes.
fn unit_for_this_build(dir: &Path) -> PathBuf {
    let unit = read(&deploy("systemd/dhtfs.service"));
    let exec = format!("ExecStart={INSTALLED_BIN} node --config {INSTALLED_CONFIG}");
    assert_eq!(
        unit.lines().filter(|l| l.trim() == exec).count(),
        1,
        "the unit must have exactly one `{exec}` line"
    );
    let config = deploy("config/dhtfs.toml");
    let rewritten = unit.replace(
        &exec,
        &format!("ExecStart={BIN} node --config {}", config.display()),
    );
    let path = dir.join("dhtfs.service");
    std::fs::write(&path, rewritten).unwrap();
    path
}

/// Every `Key=value` of the unit, in order (later assignments add to or
/// reset earlier ones, as systemd reads them).
fn unit_settings(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'))
        .filter(|l| !l.starts_with('['))
        .filter_map(|l| {
            let (k, v) = l.split_once('=')?;
            Some((k.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

#[test]
fn unit_passes_systemd_analyze_verify() {
    let analyze = systemd_analyze();
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_for_this_build(dir.path());
    let out = Command::new(&analyze)
        .arg("verify")
        .arg("--man=no")
        .arg(&unit)
        .output()
        .expect("systemd-analyze runs");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!(
        "systemd-analyze verify {}: {:?}",
        unit.display(),
        said.trim()
    );
    assert!(
        out.status.success(),
        "systemd-analyze verify failed:\n{said}"
    );
    // verify exits 0 on unknown keys and unparsable values, only warning
    // about them ("dhtfs.service:12: Unknown key ..."): any word about our
    // unit is a failure. (Lines about other units, such as the targets it
    // orders itself after, are the host's business.)
    let about_us: Vec<&str> = said
        .lines()
        .filter(|l| l.contains("dhtfs.service") || l.contains(&*unit.to_string_lossy()))
        .collect();
    assert!(
        about_us.is_empty(),
        "systemd-analyze verify warns about the unit:\n{}",
        about_us.join("\n")
    );
}

#[test]
fn verify_catches_a_broken_unit() {
    // The check above means something: the same verify, on the unit with a
    // misspelt key and a missing binary, complains.
    let analyze = systemd_analyze();
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_for_this_build(dir.path());
    let text = read(&unit)
        .replace("Type=notify", "Type=notify\nRestartt=always")
        .replace(BIN, "/nonexistent/dhtfs");
    std::fs::write(&unit, text).unwrap();
    let out = Command::new(&analyze)
        .args(["verify", "--man=no"])
        .arg(&unit)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "a missing binary must fail: {said}");
    assert!(
        said.contains("Restartt"),
        "unknown key not reported: {said}"
    );
}

#[test]
fn unit_security_exposure_is_at_most_2() {
    let analyze = systemd_analyze();
    let unit = deploy("systemd/dhtfs.service");
    let out = Command::new(&analyze)
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&unit)
        .current_dir(std::env::temp_dir())
        .output()
        .expect("systemd-analyze runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level for dhtfs.service:"))
        .unwrap_or_else(|| panic!("no overall exposure in:\n{text}\n{err}"));
    let score: f64 = line
        .split(':')
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the score in {line:?}"));
    println!("systemd exposure: {score:.1}");
    for l in text.lines().filter(|l| l.contains('✗')) {
        println!("  {}", l.trim_end());
    }
    assert!(score <= 2.0, "exposure {score} > 2.0:\n{text}");
}

#[test]
fn unit_has_the_settings_the_deployment_relies_on() {
    let text = read(&deploy("systemd/dhtfs.service"));
    let settings = unit_settings(&text);
    let get = |key: &str| -> Vec<&str> {
        settings
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    let one = |key: &str| -> &str {
        let v = get(key);
        assert_eq!(v.len(), 1, "{key}= should be set exactly once: {v:?}");
        v[0]
    };
    assert_eq!(one("Type"), "notify");
    assert_eq!(one("NotifyAccess"), "main");
    assert_eq!(
        one("ExecStart"),
        format!("{INSTALLED_BIN} node --config {INSTALLED_CONFIG}")
    );
    assert_eq!(one("StateDirectory"), "dhtfs");
    assert_eq!(one("DynamicUser"), "yes");
    assert_eq!(one("Restart"), "on-failure");
    assert!(!one("WatchdogSec").is_empty());
    assert_eq!(one("ProtectSystem"), "strict");
    assert_eq!(one("NoNewPrivileges"), "yes");
    assert_eq!(one("CapabilityBoundingSet"), "");
    assert_eq!(one("MemoryDenyWriteExecute"), "yes");
    let families: Vec<&str> = one("RestrictAddressFamilies").split_whitespace().collect();
    for f in ["AF_INET", "AF_INET6", "AF_UNIX"] {
        assert!(families.contains(&f), "{f} missing from {families:?}");
    }
    assert!(get("SystemCallFilter").contains(&"@system-service"));
    // The node must not be told a data dir: the state dir systemd makes
    // reaches it as $STATE_DIRECTORY.
    assert!(!one("ExecStart").contains("--data-dir"));
}

// ---------------------------------------------------------------- sd_notify

/// A fake service manager: the datagram socket $NOTIFY_SOCKET names.
struct Manager {
    sock: UnixDatagram,
    path: PathBuf,
    /// Every message so far with when it came.
    seen: Vec<(Instant, String)>,
}

impl Manager {
    fn bind(dir: &Path) -> Manager {
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        Manager {
            sock,
            path,
            seen: Vec::new(),
        }
    }

    /// The next message, or None after `limit`.
    fn recv(&mut self, limit: Duration) -> Option<String> {
        self.sock.set_read_timeout(Some(limit)).unwrap();
        let mut buf = [0u8; 4096];
        match self.sock.recv(&mut buf) {
            Ok(n) => {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                self.seen.push((Instant::now(), msg.clone()));
                Some(msg)
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                None
            }
            Err(e) => panic!("notify socket: {e}"),
        }
    }

    /// Waits up to `limit` for a message holding `state` (e.g. "READY=1").
    fn expect(&mut self, state: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no {state} within {limit:?}; got {:?}",
                self.messages()
            );
            if let Some(msg) = self.recv(left) {
                if msg.lines().any(|l| l == state) {
                    return msg;
                }
            }
        }
    }

    fn messages(&self) -> Vec<&str> {
        self.seen.iter().map(|(_, m)| m.as_str()).collect()
    }
}

/// Reads what is already in the child's stdout pipe, without waiting.
fn read_available(out: &mut std::process::ChildStdout) -> String {
    let fd = out.as_raw_fd();
    // SAFETY: fcntl on a pipe fd we own.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
    }
    let mut text = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match out.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => text.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("reading the node's stdout: {e}"),
        }
    }
    String::from_utf8_lossy(&text).into_owned()
}

fn ping(node: SocketAddr) -> Value {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let me = sock.local_addr().unwrap();
    let req = json!({
        "magic": 4242,
        "type": "ping_node",
        "params": {},
        "requester": {"node_id": "ab".repeat(32), "ip": "127.0.0.1", "port": me.port()},
    });
    sock.send_to(req.to_string().as_bytes(), node).unwrap();
    let mut buf = vec![0u8; 65536];
    let (n, _) = sock
        .recv_from(&mut buf)
        .unwrap_or_else(|e| panic!("UDP {node} did not answer a ping: {e}"));
    serde_json::from_slice(&buf[..n]).unwrap()
}

#[test]
fn node_notifies_ready_after_its_ports_answer_then_stopping_and_pings_the_watchdog() {
    let dir = tempfile::tempdir().unwrap();
    let mut manager = Manager::bind(dir.path());
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    const WATCHDOG_USEC: u64 = 500_000;

    // As systemd runs it: the deploy config, the state dir in
    // $STATE_DIRECTORY (no --data-dir), NOTIFY_SOCKET, and WATCHDOG_USEC with
    // WATCHDOG_PID = the service's main pid; `exec` keeps the shell's pid, so
    // $$ is the node's pid, as systemd sets it.
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg("WATCHDOG_PID=$$; export WATCHDOG_PID; exec \"$0\" \"$@\"")
        .arg(BIN)
        .args(["node", "--config"])
        .arg(deploy("config/dhtfs.toml"))
        .args(["--listen", "127.0.0.1:0"]);
    let child = side_ports_on_loopback(&mut cmd)
        .env("NOTIFY_SOCKET", &manager.path)
        .env("WATCHDOG_USEC", WATCHDOG_USEC.to_string())
        .env("STATE_DIRECTORY", &state)
        .env_remove("DHTFS_ADMIN_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the node starts");
    let mut node = Proc { child: Some(child) };

    // The first message must be READY=1 (nothing before it).
    let first = manager
        .recv(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("no sd_notify message within 30 s: {}", node.stderr()));
    assert!(
        first.lines().any(|l| l == "READY=1"),
        "first message is not READY=1: {first:?}"
    );
    let ready_at = Instant::now();
    // The node prints its listening line before READY=1: it must already
    // be in the pipe when READY=1 arrives.
    let stdout = read_available(node.child.as_mut().unwrap().stdout.as_mut().unwrap());
    let line = stdout
        .lines()
        .next()
        .unwrap_or_else(|| panic!("READY=1 came before the listening line ({first:?})"));
    let (listen, admin, metrics) = parse_listening(line);

    // Right away, every port answers.
    let pong = ping(listen);
    assert_eq!(pong["magic"], json!(4242), "{pong}");
    assert_eq!(pong["resp"], json!(true), "{pong}");
    assert_eq!(pong["result"]["port"], json!(listen.port()), "{pong}");
    TcpStream::connect_timeout(&listen, Duration::from_secs(2))
        .unwrap_or_else(|e| panic!("TCP {listen} refused after READY=1: {e}"));
    TcpStream::connect_timeout(&admin, Duration::from_secs(2))
        .unwrap_or_else(|e| panic!("admin {admin} refused after READY=1: {e}"));
    let exposition = get_ok(metrics, "/metrics");
    assert!(exposition.contains("dhtfs_build_info"), "{exposition}");
    println!(
        "READY=1 with {first:?}; UDP, TCP, admin and metrics answered {:?} later",
        ready_at.elapsed()
    );

    // Watchdog pings at half of WATCHDOG_USEC, never a full interval apart.
    let watch_from = Instant::now();
    while watch_from.elapsed() < Duration::from_millis(1600) {
        manager.recv(Duration::from_millis(600));
    }
    let pings: Vec<Instant> = manager
        .seen
        .iter()
        .filter(|(_, m)| m.lines().any(|l| l == "WATCHDOG=1"))
        .map(|(t, _)| *t)
        .collect();
    let gaps: Vec<Duration> = pings.windows(2).map(|w| w[1] - w[0]).collect();
    let max_gap = gaps.iter().max().copied().unwrap_or_default();
    println!(
        "watchdog: {} WATCHDOG=1 pings, largest gap {max_gap:?} (WATCHDOG_USEC {WATCHDOG_USEC})",
        pings.len()
    );
    assert!(
        pings.len() >= 4,
        "too few watchdog pings: {:?}",
        manager.messages()
    );
    assert!(
        max_gap < Duration::from_micros(WATCHDOG_USEC),
        "watchdog pings {max_gap:?} apart: systemd would kill the node"
    );

    // SIGTERM: STOPPING=1, then a clean exit.
    node.signal(libc::SIGTERM);
    manager.expect("STOPPING=1", Duration::from_secs(10));
    let status = node.wait(Duration::from_secs(60), "the node");
    assert!(status.success(), "the node exited with {status}");
    // The data went to $STATE_DIRECTORY.
    assert!(
        state.join("db").is_dir(),
        "no sled db in $STATE_DIRECTORY {}",
        state.display()
    );
}

#[test]
fn without_watchdog_settings_there_are_no_pings() {
    // WATCHDOG_USEC meant for another process (WATCHDOG_PID not ours) is
    // ignored, as sd_watchdog_enabled(3) says.
    let dir = tempfile::tempdir().unwrap();
    let mut manager = Manager::bind(dir.path());
    let child = node_command(
        &dir.path().join("data"),
        "127.0.0.1:0".parse().unwrap(),
        None,
    )
    .env("NOTIFY_SOCKET", &manager.path)
    .env("WATCHDOG_USEC", "200000")
    .env("WATCHDOG_PID", "1")
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut node = Proc { child: Some(child) };
    manager.expect("READY=1", Duration::from_secs(30));
    while manager.recv(Duration::from_millis(800)).is_some() {}
    assert!(
        !manager.messages().iter().any(|m| m.contains("WATCHDOG=1")),
        "{:?}",
        manager.messages()
    );
    node.signal(libc::SIGTERM);
    manager.expect("STOPPING=1", Duration::from_secs(10));
    assert!(node.wait(Duration::from_secs(60), "the node").success());
}

// ---------------------------------------------------------------- config

/// The keys of `Config`, from serializing it (None fields show as null).
fn config_keys() -> Vec<String> {
    let v = serde_json::to_value(Config::default()).unwrap();
    v.as_object().unwrap().keys().cloned().collect()
}

#[test]
fn deploy_config_is_every_setting_at_its_default() {
    let text = read(&deploy("config/dhtfs.toml"));
    let cfg: Config = toml::from_str(&text).expect("deploy/config/dhtfs.toml parses as Config");
    assert_eq!(
        cfg,
        Config::default(),
        "the shipped file must change nothing"
    );
    cfg.validate().unwrap();

    let lines: Vec<&str> = text.lines().collect();
    for key in config_keys() {
        // Set (`key = ...`) or shown commented out (`# key = ...`).
        let at = lines
            .iter()
            .position(|l| {
                let l = l.trim_start_matches('#').trim_start();
                l.strip_prefix(key.as_str())
                    .is_some_and(|rest| rest.trim_start().starts_with('='))
            })
            .unwrap_or_else(|| panic!("setting `{key}` is missing from deploy/config/dhtfs.toml"));
        // With a one-line comment right above it.
        assert!(
            at > 0 && lines[at - 1].starts_with("# ") && !lines[at - 1].contains(" = "),
            "`{key}` has no comment line above it"
        );
    }
    // Every optional setting shown commented out is valid when uncommented.
    let uncommented: String = lines
        .iter()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest)
                if config_keys()
                    .iter()
                    .any(|k| rest.starts_with(&format!("{k} ="))) =>
            {
                rest
            }
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let with_optionals: Config = toml::from_str(&uncommented).expect("uncommented file parses");
    assert!(with_optionals.advertise_ip.is_some());
    assert!(with_optionals.admin_token.is_some());
    with_optionals.validate().unwrap();
}

#[test]
fn node_starts_with_the_deploy_config_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = node_command(
        &dir.path().join("data"),
        "127.0.0.1:0".parse().unwrap(),
        None,
    );
    cmd.arg("--config").arg(deploy("config/dhtfs.toml"));
    let mut node = NodeProc::start(&mut cmd).unwrap_or_else(|why| panic!("{why}"));
    let (listen, metrics) = (node.listen, node.metrics);
    println!("deploy config: listening {listen} metrics {metrics}");
    assert!(listen.ip().is_loopback());
    get_ok(metrics, "/metrics");
    assert!(node.terminate(Duration::from_secs(60)).success());
}
