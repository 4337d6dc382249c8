//! A node that cannot start says why in one line on stderr, naming what to fix,
//! and exits non-zero at once: no panic, no backtrace, no hang.

mod common;

use std::net::{TcpListener, UdpSocket};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::process::{run_to_end, NodeProc, BIN};

/// Longest a failing start may take to exit.
const EXIT_TIMEOUT: Duration = Duration::from_secs(15);

/// `dhtfs` with `args`; RUST_LOG is set to `log`, or removed for the default.
fn dhtfs(args: &[&str], log: Option<&str>) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    // The admin API, metrics and gateway have fixed default ports, which tests running
    // in parallel would fight over: let the OS pick unless a test says otherwise.
    if args.first() == Some(&"node") {
        for flag in ["--admin", "--metrics", "--gateway"] {
            if !args.contains(&flag) {
                cmd.args([flag, "127.0.0.1:0"]);
            }
        }
    }
    cmd.env_remove("RUST_BACKTRACE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match log {
        Some(level) => cmd.env("RUST_LOG", level),
        None => cmd.env_remove("RUST_LOG"),
    };
    cmd
}

struct Outcome {
    status: ExitStatus,
    stderr: String,
    elapsed: Duration,
}

/// Runs `args` to completion within [`EXIT_TIMEOUT`].
fn run(args: &[&str], log: Option<&str>) -> Outcome {
    run_command(dhtfs(args, log), args)
}

/// Runs `cmd` (made by [`dhtfs`] from `args`) to completion within [`EXIT_TIMEOUT`].
fn run_command(mut cmd: Command, args: &[&str]) -> Outcome {
    let began = Instant::now();
    let what = format!("dhtfs {args:?}, which should have refused to start,");
    let done = run_to_end(&mut cmd, EXIT_TIMEOUT, &what);
    Outcome {
        status: done.status,
        stderr: done.stderr,
        elapsed: began.elapsed(),
    }
}

/// Asserts a failed start: non-zero exit, no panic, and exactly one non-empty
/// stderr line, which starts with `dhtfs: error:`; returns that line.
fn one_error_line(what: &str, out: &Outcome) -> String {
    assert!(
        !out.status.success(),
        "{what}: dhtfs exited with {} but should have failed; stderr:\n{}",
        out.status,
        out.stderr
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{what}: exit code (not killed by a signal); stderr:\n{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("panicked"),
        "{what}: dhtfs panicked:\n{}",
        out.stderr
    );
    let lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "{what}: want exactly one line on stderr, got:\n{}",
        out.stderr
    );
    let line = lines[0].to_string();
    assert!(
        line.starts_with("dhtfs: error: "),
        "{what}: the line should start with 'dhtfs: error: ': {line}"
    );
    println!("{what}: exit {} in {:?}: {line}", out.status, out.elapsed);
    line
}

fn assert_mentions(what: &str, line: &str, needles: &[&str]) {
    for needle in needles {
        assert!(
            line.contains(needle),
            "{what}: the error line should mention {needle:?}: {line}"
        );
    }
}

/// A port free on 127.0.0.1 for TCP, held by the returned listener.
fn hold_tcp() -> (TcpListener, u16) {
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = tcp.local_addr().unwrap().port();
    (tcp, port)
}

/// Starts a node on `dir`, waits for its `listening` line, stops it with
/// SIGTERM and checks it exits 0: leaves an initialised data dir behind.
fn init_data_dir(dir: &Path) {
    let dir_arg = dir.to_str().unwrap();
    serves_then_stops(
        dhtfs(
            &["node", "--data-dir", dir_arg, "--listen", "127.0.0.1:0"],
            Some("error"),
        ),
        dir_arg,
    );
}

/// Spawns `cmd` (a node listening on 127.0.0.1), waits for its `listening`
/// line, stops it with SIGTERM and checks it exits 0.
fn serves_then_stops(mut cmd: Command, what: &str) {
    let mut node = NodeProc::start(&mut cmd).unwrap_or_else(|why| panic!("{what}: {why}"));
    assert_eq!(node.listen.ip().to_string(), "127.0.0.1");
    let status = node.terminate(EXIT_TIMEOUT);
    let stderr = node.stderr();
    assert!(
        status.success(),
        "{what}: node exited with {status} after SIGTERM; stderr:\n{stderr}"
    );
}

/// A supervisor (or a script) that stops a node as soon as it reports
/// `listening` must get a graceful stop (exit 0, routing snapshot saved, sled
/// flushed), not death by the default SIGTERM action: `main` installs its
/// handlers before it binds anything.
#[test]
fn sigterm_right_after_listening_is_graceful() {
    let tmp = tempfile::tempdir().unwrap();
    let mut killed = 0;
    const TRIES: usize = 40;
    for i in 0..TRIES {
        let dir = tmp.path().join(format!("data{i}"));
        let mut node = NodeProc::start(&mut dhtfs(
            &[
                "node",
                "--data-dir",
                dir.to_str().unwrap(),
                "--listen",
                "127.0.0.1:0",
                "--admin",
                "127.0.0.1:0",
                "--metrics",
                "127.0.0.1:0",
            ],
            Some("error"),
        ))
        .expect("listening line");
        if !node.terminate(EXIT_TIMEOUT).success() {
            killed += 1;
        }
    }
    assert_eq!(
        killed, 0,
        "{killed} of {TRIES} nodes sent SIGTERM right after `listening` died of the \
         signal instead of stopping gracefully"
    );
}

#[test]
fn taken_udp_port_is_named() {
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = udp.local_addr().unwrap().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    // A fresh data dir logs its creation at INFO before the port is tried, so
    // logging is limited to errors here; see `taken_port_with_default_logging`.
    let out = run(
        &[
            "node",
            "--data-dir",
            dir.to_str().unwrap(),
            "--listen",
            &addr,
        ],
        Some("error"),
    );
    let line = one_error_line("UDP port taken", &out);
    assert_mentions("UDP port taken", &line, &[&addr, "UDP", "another --listen"]);
    drop(udp);
}

#[test]
fn taken_tcp_port_is_named() {
    // Only TCP is held: the node gets its UDP socket, then fails on TCP.
    let (tcp, port) = hold_tcp();
    let addr = format!("127.0.0.1:{port}");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let out = run(
        &[
            "node",
            "--data-dir",
            dir.to_str().unwrap(),
            "--listen",
            &addr,
        ],
        Some("error"),
    );
    let line = one_error_line("TCP port taken", &out);
    assert_mentions("TCP port taken", &line, &[&addr, "TCP", "another --listen"]);
    drop(tcp);
}

#[test]
fn taken_port_with_default_logging() {
    // With the default log level, an existing data dir opens silently, so the
    // error is still the only line.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    init_data_dir(&dir);
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = udp.local_addr().unwrap().to_string();
    let out = run(
        &[
            "node",
            "--data-dir",
            dir.to_str().unwrap(),
            "--listen",
            &addr,
        ],
        None,
    );
    let line = one_error_line("port taken, default logging", &out);
    assert_mentions(
        "port taken, default logging",
        &line,
        &[&addr, "another --listen"],
    );
    drop(udp);
}

/// The admin API's, the metrics endpoint's and the gateway's ports: a taken one names its flag.
#[test]
fn taken_admin_metrics_and_gateway_ports_name_their_flag() {
    for flag in ["--admin", "--metrics", "--gateway"] {
        let (tcp, port) = hold_tcp();
        let addr = format!("127.0.0.1:{port}");
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let what = format!("{flag} port taken");
        let out = run(
            &[
                "node",
                "--data-dir",
                dir.to_str().unwrap(),
                "--listen",
                "127.0.0.1:0",
                flag,
                &addr,
            ],
            Some("error"),
        );
        let line = one_error_line(&what, &out);
        assert_mentions(&what, &line, &[&addr, &format!("another {flag}")]);
        drop(tcp);
    }
}

#[test]
fn newer_schema_is_refused_naming_version_and_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    init_data_dir(&dir);
    let db_path = dir.join("db");
    {
        let db = sled::Config::new()
            .path(&db_path)
            .open()
            .expect("open sled");
        let meta = db.open_tree("meta").unwrap();
        let current = meta
            .get(b"schema_version")
            .unwrap()
            .expect("a started node records its schema_version");
        assert_eq!(
            current.as_ref(),
            dhtfs::store::SCHEMA_VERSION.to_be_bytes(),
            "schema_version is a u32 big-endian"
        );
        meta.insert(b"schema_version", &999u32.to_be_bytes())
            .unwrap();
        db.flush().unwrap();
    }
    let dir_arg = dir.to_str().unwrap();
    let out = run(
        &["node", "--data-dir", dir_arg, "--listen", "127.0.0.1:0"],
        None,
    );
    let line = one_error_line("newer schema", &out);
    assert_mentions("newer schema", &line, &["999", dir_arg, "schema version"]);
    // Refused before touching anything: the version is still the newer one.
    let db = sled::Config::new()
        .path(&db_path)
        .open()
        .expect("open sled");
    let meta = db.open_tree("meta").unwrap();
    assert_eq!(
        meta.get(b"schema_version").unwrap().unwrap().as_ref(),
        999u32.to_be_bytes(),
        "a refused start must not change the schema version"
    );
}

#[test]
fn data_dir_that_is_a_file_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("not-a-dir");
    std::fs::write(&file, b"hello").unwrap();
    let file_arg = file.to_str().unwrap();
    let out = run(
        &["node", "--data-dir", file_arg, "--listen", "127.0.0.1:0"],
        None,
    );
    let line = one_error_line("data dir is a file", &out);
    assert_mentions("data dir is a file", &line, &[file_arg]);
    assert_eq!(
        std::fs::read(&file).unwrap(),
        b"hello",
        "the file given as --data-dir must be left alone"
    );
}

#[test]
fn data_dir_with_a_corrupt_db_is_refused() {
    // `db` inside the data dir is a regular file instead of sled's directory.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("db"), b"garbage").unwrap();
    let dir_arg = dir.to_str().unwrap();
    let out = run(
        &["node", "--data-dir", dir_arg, "--listen", "127.0.0.1:0"],
        None,
    );
    let line = one_error_line("corrupt db", &out);
    assert_mentions("corrupt db", &line, &[dir_arg]);
}

#[test]
fn a_bootstrap_of_the_other_family_names_the_dual_stack_listen() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let out = run(
        &[
            "node",
            "--data-dir",
            dir.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--bootstrap",
            "[::1]:7400",
        ],
        None,
    );
    let line = one_error_line("IPv6 bootstrap, IPv4 listen", &out);
    assert_mentions(
        "IPv6 bootstrap, IPv4 listen",
        &line,
        &["[::1]:7400", "[::]:"],
    );
    assert!(!dir.exists(), "a refused start leaves no data dir behind");
}

#[test]
fn bad_listen_flag_fails_without_panic() {
    let out = run(&["node", "--listen", "notanaddress"], None);
    assert!(
        !out.status.success(),
        "--listen notanaddress: exited with {}",
        out.status
    );
    assert!(out.status.code().is_some(), "killed by a signal");
    assert!(
        !out.stderr.contains("panicked"),
        "--listen notanaddress panicked:\n{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("notanaddress"),
        "the message should name the bad value:\n{}",
        out.stderr
    );
    println!(
        "bad --listen: exit {} in {:?}: {}",
        out.status,
        out.elapsed,
        out.stderr.lines().next().unwrap_or("")
    );
}

#[test]
fn unknown_config_key_names_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("dhtfs.toml");
    std::fs::write(&config, "k = 7\nnonsense_key = 1\n").unwrap();
    let dir = tmp.path().join("data");
    let config_arg = config.to_str().unwrap();
    let out = run(
        &[
            "node",
            "--config",
            config_arg,
            "--data-dir",
            dir.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
        None,
    );
    let line = one_error_line("unknown config key", &out);
    assert_mentions("unknown config key", &line, &[config_arg, "nonsense_key"]);
    assert!(
        !dir.exists(),
        "a refused config must not create the data dir"
    );
}

#[test]
fn an_empty_admin_token_is_refused_not_taken_as_none() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let dir_arg = dir.to_str().unwrap();
    let args = ["node", "--data-dir", dir_arg, "--listen", "127.0.0.1:0"];
    let mut cmd = dhtfs(&args, None);
    cmd.env("DHTFS_ADMIN_TOKEN", "");
    let line = one_error_line("empty DHTFS_ADMIN_TOKEN", &run_command(cmd, &args));
    assert_mentions(
        "empty DHTFS_ADMIN_TOKEN",
        &line,
        &["DHTFS_ADMIN_TOKEN", "empty"],
    );
    assert!(
        !dir.exists(),
        "a refused start must not create the data dir"
    );

    let config = tmp.path().join("dhtfs.toml");
    std::fs::write(&config, "admin_token = \"\"\n").unwrap();
    let config_arg = config.to_str().unwrap();
    let args = [
        "node",
        "--config",
        config_arg,
        "--data-dir",
        dir_arg,
        "--listen",
        "127.0.0.1:0",
    ];
    let mut cmd = dhtfs(&args, None);
    cmd.env_remove("DHTFS_ADMIN_TOKEN");
    let line = one_error_line("admin_token = \"\"", &run_command(cmd, &args));
    assert_mentions("admin_token = \"\"", &line, &["admin_token", "empty"]);
}

#[test]
fn a_remote_admin_api_without_a_token_is_refused_unless_allowed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let dir_arg = dir.to_str().unwrap();
    let args = [
        "node",
        "--data-dir",
        dir_arg,
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "0.0.0.0:0",
    ];
    let mut cmd = dhtfs(&args, None);
    cmd.env_remove("DHTFS_ADMIN_TOKEN");
    let line = one_error_line("remote admin, no token", &run_command(cmd, &args));
    assert_mentions(
        "remote admin, no token",
        &line,
        &[
            "0.0.0.0:0",
            "DHTFS_ADMIN_TOKEN",
            "--admin 127.0.0.1",
            "allow_remote_admin_without_token",
        ],
    );
    assert!(
        !dir.exists(),
        "a refused start must not create the data dir"
    );

    // With a token it starts.
    let mut cmd = dhtfs(&args, Some("error"));
    cmd.env("DHTFS_ADMIN_TOKEN", "s3cret");
    serves_then_stops(cmd, "remote admin with a token");
    // Or when explicitly allowed.
    let config = tmp.path().join("dhtfs.toml");
    std::fs::write(&config, "allow_remote_admin_without_token = true\n").unwrap();
    let config_arg = config.to_str().unwrap();
    let mut with_config = vec!["node", "--config", config_arg];
    with_config.extend_from_slice(&args[1..]);
    let mut cmd = dhtfs(&with_config, Some("error"));
    cmd.env_remove("DHTFS_ADMIN_TOKEN");
    serves_then_stops(cmd, "remote admin explicitly allowed");
}

/// Index entries in the `index` tree of a data dir no node holds open.
fn index_len(dir: &Path) -> usize {
    let config = sled::Config::new().path(dir.join("db"));
    let db = common::retry_while_locked(|| config.open());
    db.open_tree("index").unwrap().len()
}

#[test]
fn a_data_dir_whose_block_files_are_gone_is_refused_unless_the_loss_is_accepted() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    {
        let (store, _) =
            dhtfs::store::Store::open(&dir, dhtfs::store::StoreConfig::default()).unwrap();
        for i in 0..20u8 {
            // Over inline_max (64 KiB), so each is a file under blocks/.
            let data = vec![i; 70 * 1024];
            store
                .put_verified(&dhtfs::id::Id::of_block(&data), &data)
                .unwrap();
        }
    }
    assert_eq!(index_len(&dir), 20);
    // The disk that held blocks/ is not mounted: an empty mount point.
    let blocks = dir.join("blocks");
    std::fs::remove_dir_all(&blocks).unwrap();
    std::fs::create_dir(&blocks).unwrap();

    let dir_arg = dir.to_str().unwrap();
    let args = ["node", "--data-dir", dir_arg, "--listen", "127.0.0.1:0"];
    let line = one_error_line("blocks/ emptied", &run(&args, None));
    assert_mentions(
        "blocks/ emptied",
        &line,
        &[
            blocks.to_str().unwrap(),
            "20",
            "unmounted",
            "--accept-data-loss",
        ],
    );
    assert_eq!(index_len(&dir), 20, "a refused start keeps the index");

    let mut accept = args.to_vec();
    accept.push("--accept-data-loss");
    serves_then_stops(dhtfs(&accept, Some("error")), "--accept-data-loss");
    assert_eq!(
        index_len(&dir),
        0,
        "accepted: the dangling entries are dropped"
    );
}
