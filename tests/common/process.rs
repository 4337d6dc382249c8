//! Child processes for the tests: the `dhtfs` binary under test started as
//! a node (its `listening` line read and parsed), any command run to its end
//! with its output, and a guard that never leaves a child behind.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The `dhtfs` binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_dhtfs");

/// Longest a node may take to print its `listening` line.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A child process that is killed and reaped if the test ends early.
pub struct Proc {
    pub child: Option<std::process::Child>,
}

impl Proc {
    /// Starts `cmd`, naming it `what` if it cannot start.
    pub fn spawn(cmd: &mut Command, what: &str) -> Proc {
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        Proc { child: Some(child) }
    }

    /// The child's pid.
    pub fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    /// Sends `sig` to the child.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on the pid of our own, not yet reaped, child.
        let rc = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(rc, 0, "kill({}, {sig}) failed", self.pid());
    }

    /// The exit status, if the child has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.as_mut().unwrap().try_wait().unwrap()
    }

    /// Waits up to `limit` for `what` to exit; panics when it does not.
    pub fn wait(&mut self, limit: Duration, what: &str) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.exited() {
                self.child = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{what} did not finish within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What the child wrote to its piped stderr so far (reads to its end).
    pub fn stderr(&mut self) -> String {
        let mut s = String::new();
        if let Some(e) = self.child.as_mut().and_then(|c| c.stderr.as_mut()) {
            let _ = e.read_to_string(&mut s);
        }
        s
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A command that ran to its end.
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd` (stdin closed, output captured) to its end within `limit`,
/// naming it `what` if it does not finish.
pub fn run_to_end(cmd: &mut Command, limit: Duration, what: &str) -> Finished {
    let mut proc = Proc::spawn(
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
        what,
    );
    let child = proc.child.as_mut().unwrap();
    let stdout = read_in_background(child.stdout.take().unwrap());
    let stderr = read_in_background(child.stderr.take().unwrap());
    let status = proc.wait(limit, what);
    Finished {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

/// Runs a command to completion within `limit`; (success, stdout, stderr).
pub fn run(cmd: &mut Command, limit: Duration) -> (bool, String, String) {
    let what = format!("{cmd:?}");
    let done = run_to_end(cmd, limit, &what);
    (done.status.success(), done.stdout, done.stderr)
}

/// Reads `pipe` to its end on a thread of its own.
fn read_in_background(mut pipe: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = pipe.read_to_string(&mut s);
        s
    })
}

/// `--admin`, `--metrics` and `--gateway` on OS-picked loopback ports: their
/// defaults are fixed ports, which tests running in parallel would fight over.
pub fn side_ports_on_loopback(cmd: &mut Command) -> &mut Command {
    for flag in ["--admin", "--metrics", "--gateway"] {
        cmd.args([flag, "127.0.0.1:0"]);
    }
    cmd
}

/// `dhtfs node` on `dir`, listening on `listen` and joining through
/// `bootstrap`, its other ports on loopback; never told of a service manager.
pub fn node_command(dir: &Path, listen: SocketAddr, bootstrap: Option<SocketAddr>) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("node")
        .arg("--data-dir")
        .arg(dir)
        .args(["--listen", &listen.to_string()]);
    side_ports_on_loopback(&mut cmd);
    if let Some(b) = bootstrap {
        cmd.args(["--bootstrap", &b.to_string()]);
    }
    cmd.env_remove("NOTIFY_SOCKET");
    cmd
}

/// `listening A admin B metrics C id D ...` -> (A, B, C).
pub fn parse_listening(line: &str) -> (SocketAddr, SocketAddr, SocketAddr) {
    let w: Vec<&str> = line.split_whitespace().collect();
    assert!(
        w.len() >= 8 && w[0] == "listening" && w[2] == "admin" && w[4] == "metrics" && w[6] == "id",
        "unexpected first line: {line:?}"
    );
    let addr = |s: &str| -> SocketAddr { s.parse().unwrap_or_else(|_| panic!("{s} in {line:?}")) };
    (addr(w[1]), addr(w[3]), addr(w[5]))
}

/// A `dhtfs node` child that printed its `listening` line; its stdout is
/// read to its end (so it never writes into a closed pipe) and its stderr
/// kept.
pub struct NodeProc {
    pub proc: Proc,
    /// Its UDP and TCP address.
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    pub metrics: SocketAddr,
    stderr: Arc<Mutex<String>>,
    stderr_reader: Option<JoinHandle<()>>,
}

impl NodeProc {
    /// Spawns `cmd` (a `dhtfs node`) and waits up to [`START_TIMEOUT`] for
    /// its `listening` line; why not, with its stderr, when none comes.
    pub fn start(cmd: &mut Command) -> Result<NodeProc, String> {
        let mut proc = Proc::spawn(
            cmd.stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
            "dhtfs node",
        );
        let child = proc.child.as_mut().unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let stderr_reader = {
            let err = child.stderr.take().unwrap();
            let stderr = stderr.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    let mut s = stderr.lock().unwrap();
                    s.push_str(&line);
                    s.push('\n');
                }
            })
        };
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let line = match rx.recv_timeout(START_TIMEOUT) {
            Ok(line) => line,
            Err(e) => {
                // Let the stderr reader catch up before showing it.
                std::thread::sleep(Duration::from_millis(200));
                return Err(format!(
                    "{cmd:?} printed no listening line within {START_TIMEOUT:?} ({e}); stderr:\n{}",
                    stderr.lock().unwrap()
                ));
            }
        };
        let (listen, admin, metrics) = parse_listening(&line);
        Ok(NodeProc {
            proc,
            listen,
            admin,
            metrics,
            stderr,
            stderr_reader: Some(stderr_reader),
        })
    }

    /// What the node wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Sends SIGTERM and waits up to `limit` for the exit, and for the last
    /// of its stderr.
    pub fn terminate(&mut self, limit: Duration) -> ExitStatus {
        self.proc.signal(libc::SIGTERM);
        let status = self.proc.wait(limit, "the node after SIGTERM");
        if let Some(reader) = self.stderr_reader.take() {
            let _ = reader.join();
        }
        status
    }
}

/// Starts `dhtfs node` on `dir` on loopback ports the OS picks, joining
/// through `bootstrap`; panics when it prints no `listening` line.
pub fn start_node(dir: &Path, bootstrap: Option<SocketAddr>) -> NodeProc {
    let listen = "127.0.0.1:0".parse().unwrap();
    NodeProc::start(&mut node_command(dir, listen, bootstrap)).unwrap_or_else(|why| panic!("{why}"))
}
