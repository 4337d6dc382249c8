//! A large file's put and get on 8 nodes in this process, and the two rates
//! they are held against, measured here on the same bytes and disk: sha256 on
//! one core (work every byte needs) and durable writes (write, then fsync).

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use dhtfs::erasure::Code;
use dhtfs::files::{get, put, GetOptions, PutOptions, Redundancy};
use dhtfs::seal::{seal_chunk, Secret};
use sha2::{Digest, Sha256};

use crate::common::{start_net, stop_net};

/// Replicas per chunk of the large file's put.
pub const REPLICAS: usize = 3;

/// MiB/s of sha256 over `data` on this thread.
pub fn sha256_rate(data: &[u8]) -> f64 {
    let started = Instant::now();
    for chunk in data.chunks(1 << 20) {
        std::hint::black_box(Sha256::digest(chunk));
    }
    data.len() as f64 / (1 << 20) as f64 / started.elapsed().as_secs_f64()
}

/// MiB/s of sealing `data` in 1 MiB chunks on this thread (the keyed hash
/// and ChaCha20-Poly1305, what a sealed put adds to every byte).
pub fn seal_rate(data: &[u8]) -> f64 {
    let secret = Secret([9; 32]);
    let started = Instant::now();
    for chunk in data.chunks(1 << 20) {
        std::hint::black_box(seal_chunk(&secret, chunk, 1 << 20));
    }
    data.len() as f64 / (1 << 20) as f64 / started.elapsed().as_secs_f64()
}

/// The code the erasure rows measure: what `--ec` would store at 2x.
pub const EC_CODE: (usize, usize) = (24, 56);

/// MiB/s of chunk bytes erasure-coded (`EC_CODE`, 1 MiB chunks) on this
/// thread: encoding, and decoding from the worst case, where every data
/// shard is lost and all k come from recovery shards.
pub fn erasure_rates(data: &[u8]) -> (f64, f64) {
    let code = Code::new(EC_CODE.0, EC_CODE.1).expect("a code");
    let mib = data.len() as f64 / (1 << 20) as f64;
    let started = Instant::now();
    let stripes: Vec<Vec<Vec<u8>>> = data.chunks(1 << 20).map(|c| code.encode(c)).collect();
    let encode = mib / started.elapsed().as_secs_f64();
    let started = Instant::now();
    for (chunk, blocks) in data.chunks(1 << 20).zip(&stripes) {
        let recovery: Vec<(usize, &[u8])> = (code.k()..code.n())
            .map(|i| (i, blocks[i].as_slice()))
            .collect();
        let got = code.decode(chunk.len(), &recovery).expect("decodes");
        assert!(got == chunk, "decoded other bytes");
    }
    (encode, mib / started.elapsed().as_secs_f64())
}

/// MiB/s of writing `data` to a new file in `dir` in 1 MiB writes and one fsync.
pub fn fsync_write_rate(dir: &Path, data: &[u8]) -> f64 {
    let path = dir.join("fsync-probe");
    let started = Instant::now();
    let mut f = std::fs::File::create(&path).expect("create probe");
    for chunk in data.chunks(1 << 20) {
        f.write_all(chunk).expect("write probe");
    }
    f.sync_all().expect("fsync probe");
    let rate = data.len() as f64 / (1 << 20) as f64 / started.elapsed().as_secs_f64();
    drop(f);
    let _ = std::fs::remove_file(path);
    rate
}

/// 4 KiB writes a second, each to its own new file, each fsynced (a small
/// block made durable), `count` of them in `dir`.
pub fn fsync_small_rate(dir: &Path, count: usize) -> f64 {
    let block = vec![7u8; 4096];
    let started = Instant::now();
    for i in 0..count {
        let path = dir.join(format!("small-probe-{i}"));
        let mut f = std::fs::File::create(&path).expect("create probe");
        f.write_all(&block).expect("write probe");
        f.sync_all().expect("fsync probe");
    }
    let rate = count as f64 / started.elapsed().as_secs_f64();
    for i in 0..count {
        let _ = std::fs::remove_file(dir.join(format!("small-probe-{i}")));
    }
    rate
}

/// CPU seconds this process has used in user space and in the kernel, all
/// threads.
fn cpu_split() -> (f64, f64) {
    // SAFETY: rusage is plain integers (all zeros is a valid value), and
    // getrusage fills the struct it is given.
    let u = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (secs(u.ru_utime), secs(u.ru_stime))
}

/// MiB/s of one transfer's put and get, and of a get into memory run first.
pub struct Rates {
    pub put: f64,
    /// Into a file on the disk under test, made durable as `get` does.
    pub get: f64,
    /// Into tmpfs (/dev/shm), right after the put: the network and the
    /// checks alone, without the disk's write of the output.
    pub get_to_memory: Option<f64>,
}

/// The directory a get into memory writes to, where there is one.
fn memory_dir() -> Option<&'static Path> {
    let shm = Path::new("/dev/shm");
    shm.is_dir().then_some(shm)
}

/// Put and get MiB/s of `file` (`mib` MiB) on a fresh 8-node network under
/// `dir`, sealed under `seal` or plain, erasure-coded under `ec` or
/// replicated; with `to_memory`, a get into memory first, right after the put.
pub async fn transfer(
    dir: &Path,
    file: &Path,
    mib: usize,
    seal: Option<Secret>,
    ec: Option<Code>,
    to_memory: bool,
) -> Rates {
    let nodes = start_net(dir, 8).await;
    let opts = PutOptions {
        bootstrap: vec![nodes[0].local_addr],
        replicas: REPLICAS,
        quiet: true,
        seal,
        redundancy: ec.map_or(Redundancy::Replicas, Redundancy::Coded),
        ..PutOptions::new(file.to_path_buf())
    };
    let (started, (user, sys)) = (Instant::now(), cpu_split());
    let report = put(&opts).await.expect("put");
    let put_secs = started.elapsed().as_secs_f64();
    let put_rate = mib as f64 / put_secs;
    // Every node and the client run in this process: its CPU is the put's.
    let (user, sys) = (cpu_split().0 - user, cpu_split().1 - sys);
    eprintln!(
        "compare: put: {mib} MiB in {put_secs:.2} s, {:.2} s of CPU ({user:.2} user, {sys:.2} kernel)",
        user + sys
    );
    let mut get_to_memory = None;
    if let Some(shm) = memory_dir().filter(|_| to_memory) {
        let out = shm.join(format!("dhtfs-bench-{}", std::process::id()));
        let gopts = GetOptions {
            bootstrap: vec![nodes[7].local_addr],
            quiet: true,
            ..GetOptions::new(report.file, out.clone())
        };
        let started = Instant::now();
        let got = get(&gopts).await.expect("get into memory");
        eprintln!("compare: into memory: {}", got.summary);
        get_to_memory = Some(mib as f64 / started.elapsed().as_secs_f64());
        let _ = std::fs::remove_file(&out);
    }
    let out = dir.join("output");
    let gopts = GetOptions {
        bootstrap: vec![nodes[7].local_addr],
        quiet: true,
        ..GetOptions::new(report.file, out.clone())
    };
    let (started, (user, sys)) = (Instant::now(), cpu_split());
    let got = get(&gopts).await.expect("get");
    let (user, sys) = (cpu_split().0 - user, cpu_split().1 - sys);
    eprintln!(
        "compare: {}, {:.2} s of CPU ({user:.2} user, {sys:.2} kernel)",
        got.summary,
        user + sys
    );
    let get_rate = mib as f64 / started.elapsed().as_secs_f64();
    let len = std::fs::metadata(&out).expect("output").len();
    assert_eq!(len, (mib << 20) as u64, "the whole file came back");
    let _ = std::fs::remove_file(&out);
    stop_net(nodes).await;
    Rates {
        put: put_rate,
        get: get_rate,
        get_to_memory,
    }
}
