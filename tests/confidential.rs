//! Confidential files end to end, on real nodes with real sled data dirs:
//! nothing readable at rest after a default put (and the same scan finds a
//! `--plain` put), the capability reads the file back, forged and flipped
//! blocks are refused, a wrong capability or secret fails in one line, the
//! gateway serves ranges of a sealed file across chunk boundaries, the
//! secret decides deduplication, and a pin by capability stores only
//! ciphertext.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::admin::{client, pin_named};
use common::curl::fetch;
use common::data::random_bytes;
use common::fetch::tcp_fetch;
use common::metrics::metric;
use common::process::{run_to_end, Finished, BIN};
use common::TestNet;
use dhtfs::admin::pb;
use dhtfs::files::{get, put, FileRef, GetOptions, PutOptions, PutReport};
use dhtfs::id::Id;
use dhtfs::seal::Secret;

/// A string that must never be found in a sealed file's holders' data dirs.
const MARKER: &str = "CONFIDENTIAL-MARKER-3f9a61c0-dhtfs";
/// The slice the scan looks for: any 64 bytes of the plaintext.
const SLICE: usize = 64;
/// How long one `dhtfs` command may take here.
const COMMAND_LIMIT: Duration = Duration::from_secs(120);

/// A page of readable English-like text, `len` bytes, the same for a seed.
fn text(len: usize, seed: u64) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "the",
        "ledger",
        "of",
        "accounts",
        "payable",
        "quarterly",
        "review",
        "board",
        "salary",
        "contract",
        "confidential",
        "merger",
        "with",
        "and",
        "for",
        "a",
        "shareholders",
        "minutes",
        "meeting",
        "approved",
        "budget",
        "revenue",
        "forecast",
        "employee",
        "number",
        "address",
        "telephone",
        "password",
        "draft",
        "final",
    ];
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(WORDS[(state % WORDS.len() as u64) as usize].as_bytes());
        // A number now and then, so that long runs do not repeat.
        if state.is_multiple_of(5) {
            out.extend_from_slice(format!(" {}", (state >> 20) % 100_000).as_bytes());
        }
        out.push(if state.is_multiple_of(11) {
            b'\n'
        } else {
            b' '
        });
    }
    out.truncate(len);
    out
}

/// The marker, then 1 MiB of text: the file the rest-scan looks for.
fn secret_document() -> Vec<u8> {
    let mut data = format!("{MARKER}\n").into_bytes();
    data.extend(text(1 << 20, 0x5eed));
    data
}

/// Every regular file under `dir`, recursively.
fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files_under(&path, out);
        } else if path.is_file() {
            out.push(path);
        }
    }
}

/// Where any of `dirs`' files (sled's and block files alike) hold the marker
/// or any `SLICE` bytes of `plain`: one line per file that does.
fn readable_at_rest(dirs: &[PathBuf], plain: &[u8]) -> Vec<String> {
    // Any 64-byte match covers an aligned 32-byte piece of the plaintext:
    // index those, then check each hit for a match of 64 around it.
    let half = SLICE / 2;
    let mut pieces: HashMap<&[u8], Vec<usize>> = HashMap::new();
    for at in (0..plain.len().saturating_sub(half)).step_by(half) {
        pieces.entry(&plain[at..at + half]).or_default().push(at);
    }
    let mut files = Vec::new();
    for dir in dirs {
        files_under(dir, &mut files);
    }
    assert!(!files.is_empty(), "no files under {dirs:?}");
    let mut found = Vec::new();
    for file in files {
        let bytes = std::fs::read(&file).unwrap_or_default();
        if let Some(at) = find(&bytes, MARKER.as_bytes()) {
            found.push(format!("{}: the marker at byte {at}", file.display()));
            continue;
        }
        'scan: for p in 0..bytes.len().saturating_sub(half - 1) {
            let Some(offsets) = pieces.get(&bytes[p..p + half]) else {
                continue;
            };
            for &q in offsets {
                let back = (1..=p.min(q))
                    .take_while(|&i| bytes[p - i] == plain[q - i])
                    .count();
                let ahead = (0..(bytes.len() - p).min(plain.len() - q))
                    .take_while(|&i| bytes[p + i] == plain[q + i])
                    .count();
                if back + ahead >= SLICE {
                    found.push(format!(
                        "{}: {} bytes of the plaintext at byte {}",
                        file.display(),
                        back + ahead,
                        p - back
                    ));
                    break 'scan;
                }
            }
        }
    }
    found
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Runs the binary with `args` to its end, off the runtime.
async fn dhtfs(args: Vec<String>) -> Finished {
    tokio::task::spawn_blocking(move || {
        run_to_end(
            Command::new(BIN).args(&args),
            COMMAND_LIMIT,
            &format!("dhtfs {}", args.join(" ")),
        )
    })
    .await
    .unwrap()
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Asserts a command failed with one `dhtfs: error:` line that contains
/// `says`, and returns that line.
fn one_line_failure(done: &Finished, says: &str, what: &str) -> String {
    assert!(!done.status.success(), "{what} succeeded: {}", done.stdout);
    let lines: Vec<&str> = done
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "{what}: not one line on stderr: {}",
        done.stderr
    );
    assert!(
        lines[0].starts_with("dhtfs: error: ") && lines[0].contains(says),
        "{what}: {:?} does not say {says:?}",
        lines[0]
    );
    println!("{what}: {}", lines[0]);
    lines[0].to_string()
}

/// Every block key any node of `net` holds.
fn held(net: &TestNet) -> BTreeSet<Id> {
    net.nodes
        .iter()
        .flat_map(|d| d.store.list(None, usize::MAX).unwrap())
        .map(|(k, _)| k)
        .collect()
}

/// The file put's blocks: its chunks and its root (one manifest block for
/// the small files here).
fn blocks_of(report: &PutReport) -> BTreeSet<Id> {
    let mut keys: BTreeSet<Id> = report.chunks.iter().map(|e| e.0).collect();
    keys.insert(report.root);
    keys
}

/// Puts `data` (written as `name` in `dir`) through `via`, sealed under
/// `secret` (or plain), on `replicas` nodes.
async fn put_sealed(
    dir: &Path,
    name: &str,
    data: &[u8],
    secret: Option<Secret>,
    replicas: usize,
    via: std::net::SocketAddr,
) -> PutReport {
    let path = dir.join(name);
    std::fs::write(&path, data).unwrap();
    put(&PutOptions {
        bootstrap: vec![via],
        quiet: true,
        replicas,
        seal: secret,
        ..PutOptions::new(path)
    })
    .await
    .unwrap_or_else(|e| panic!("put {name}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_default_put_leaves_nothing_readable_at_rest_and_its_capability_reads_it_back() {
    let net = TestNet::start(5).await;
    let tmp = tempfile::tempdir().unwrap();
    let data = secret_document();
    // The marker is in the name too: the manifest is sealed with the chunks.
    let file = tmp.path().join(format!("{MARKER}.txt"));
    std::fs::write(&file, &data).unwrap();
    let via = net.nodes[0].local_addr.to_string();
    let secret = tmp.path().join("config/convergence-secret");
    let file_s = file.to_str().unwrap();
    let secret_s = secret.to_str().unwrap();

    let done = dhtfs(args(&[
        "put",
        file_s,
        "--bootstrap",
        &via,
        "--secret-file",
        secret_s,
    ]))
    .await;
    assert!(done.status.success(), "put: {}", done.stderr);
    let cap = done.stdout.lines().last().unwrap().trim().to_string();
    assert!(cap.starts_with("dhtfs1_"), "put printed {cap:?}");
    assert!(
        done.stderr.contains("made a new convergence secret"),
        "the first put says it made the secret: {}",
        done.stderr
    );
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&secret).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "the secret's mode");
    let FileRef::Sealed(parsed) = cap.parse::<FileRef>().unwrap() else {
        panic!("{cap} is not a capability");
    };

    // Every node holds the file (7 replicas asked of 5 nodes), and none can read it.
    let dirs = net.data_dirs();
    for d in &net.nodes {
        assert!(
            d.store.contains(&parsed.root),
            "{} lacks the root",
            d.data_dir().display()
        );
    }
    let found = readable_at_rest(&dirs, &data);
    assert!(
        found.is_empty(),
        "plaintext at rest after a default put:\n{}",
        found.join("\n")
    );
    println!(
        "rest scan of {} data dirs after a default put: nothing readable",
        dirs.len()
    );

    // The capability reads it back, identical.
    let out = tmp.path().join("back.txt");
    let out_s = out.to_str().unwrap();
    let done = dhtfs(args(&["get", &cap, "-o", out_s, "--bootstrap", &via])).await;
    assert!(done.status.success(), "get: {}", done.stderr);
    assert!(std::fs::read(&out).unwrap() == data, "get gave other bytes");
    std::fs::remove_file(&out).unwrap();

    // A wrong key, a truncated capability, the bare root of a sealed file:
    // one line, non-zero, and no OUT (nor OUT.part) made.
    let mut wrong = cap.clone();
    let last = if wrong.ends_with('0') { "1" } else { "0" };
    wrong.replace_range(wrong.len() - 1.., last);
    let root_only = parsed.root.to_hex();
    for (name, bad, says) in [
        ("a wrong key", wrong.as_str(), "tag"),
        (
            "a truncated capability",
            &cap[..cap.len() - 5],
            "capability",
        ),
        ("a sealed file's bare root", root_only.as_str(), "manifest"),
    ] {
        let done = dhtfs(args(&["get", bad, "-o", out_s, "--bootstrap", &via])).await;
        one_line_failure(&done, says, &format!("get with {name}"));
        assert!(!out.exists(), "get with {name} made OUT");
        assert!(
            !tmp.path().join("back.txt.part").exists(),
            "get with {name} made OUT.part"
        );
    }

    // A secret file that is not one, or that others can read: one line.
    let bad_secret = tmp.path().join("not-a-secret");
    std::fs::write(&bad_secret, "hello").unwrap();
    std::fs::set_permissions(
        &bad_secret,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let bad_s = bad_secret.to_str().unwrap();
    let done = dhtfs(args(&[
        "put",
        file_s,
        "--bootstrap",
        &via,
        "--secret-file",
        bad_s,
    ]))
    .await;
    one_line_failure(
        &done,
        "is not a convergence secret",
        "put with a malformed secret",
    );
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let done = dhtfs(args(&[
        "put",
        file_s,
        "--bootstrap",
        &via,
        "--secret-file",
        secret_s,
    ]))
    .await;
    one_line_failure(&done, "chmod 600", "put with a secret others can read");

    // The same scan finds a --plain put of the same file: it can fail.
    let done = dhtfs(args(&[
        "put",
        file_s,
        "--bootstrap",
        &via,
        "--plain",
        "--quiet",
    ]))
    .await;
    assert!(done.status.success(), "put --plain: {}", done.stderr);
    let root = done.stdout.lines().last().unwrap().trim().to_string();
    assert!(Id::from_hex(&root).is_ok(), "put --plain printed {root:?}");
    let found = readable_at_rest(&dirs, &data);
    assert!(
        found.iter().any(|f| f.contains("the marker")),
        "the scan did not find the marker of a --plain put:\n{}",
        found.join("\n")
    );
    println!(
        "rest scan after a --plain put finds {} files:\n  {}",
        found.len(),
        found.join("\n  ")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_bit_is_refused_by_its_hash_and_a_forged_manifest_by_its_tag() {
    let net = TestNet::start(5).await;
    let tmp = tempfile::tempdir().unwrap();
    let data = random_bytes(3 << 20, 41);
    let via = net.nodes[0].local_addr;
    let report = put_sealed(tmp.path(), "f.bin", &data, Some(Secret::random()), 7, via).await;
    let FileRef::Sealed(cap) = report.file else {
        panic!("a sealed put gave {}", report.file);
    };

    // Flip a bit of the first chunk's ciphertext on every holder but one.
    let chunk = report.chunks[0].0;
    let mut flipped = 0;
    for d in &net.nodes[1..] {
        common::rot_on_disk(&d.store, &chunk, 1000);
        flipped += 1;
    }
    assert_eq!(flipped, 4);
    // Each get asks holders in its own order; over a few, some get meets a
    // flipped copy (each alone meets only the good one first with p = 1/5).
    // A flipped copy still on its way when a hedge's good copy won is never
    // seen, and a 3-chunk get hedges at the usual pace (its end game): up
    // to 20 gets, since 5 under a loaded tests/run once met none.
    let mut rejected = 0;
    for run in 0..20 {
        let out = tmp.path().join(format!("back{run}.bin"));
        let got = get(&GetOptions {
            bootstrap: vec![net.nodes[run % 5].local_addr],
            quiet: true,
            ..GetOptions::new(report.file, out.clone())
        })
        .await
        .unwrap_or_else(|e| panic!("get with 4 of 5 copies flipped: {e}"));
        assert!(std::fs::read(&out).unwrap() == data, "get gave other bytes");
        rejected += got.rejected;
        if rejected > 0 {
            println!("get {run}: {}", got.summary);
            break;
        }
    }
    assert!(
        rejected > 0,
        "20 gets never met one of the 4 flipped copies"
    );

    // A hostile node stores the root manifest with its tag forged under the
    // forgery's own hash: the hash verifies, the tag does not.
    let mut forged = tcp_fetch(net.nodes[0].local_addr, &cap.root)
        .await
        .expect("root held");
    let last = forged.len() - 1;
    forged[last] ^= 0x01;
    let mut admin = client(net.nodes[2].admin_addr).await;
    let stored = admin
        .put_block(pb::PutBlockRequest {
            data: forged.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let forged_root = Id::of_block(&forged);
    assert_eq!(stored.key, forged_root.to_hex());
    let forged_cap = format!("dhtfs1_{}_{}", forged_root.to_hex(), cap.key.to_hex());
    let out = tmp.path().join("forged.bin");
    let done = dhtfs(args(&[
        "get",
        &forged_cap,
        "-o",
        out.to_str().unwrap(),
        "--bootstrap",
        &via.to_string(),
    ]))
    .await;
    let line = one_line_failure(&done, "tag does not match", "get of a forged manifest");
    assert!(
        line.contains(&forged_root.to_hex()),
        "the error names the block: {line}"
    );
    assert!(!out.exists());
    // The gateway refuses it too, as a wrong key.
    let gateway = net.nodes[1].gateway_addr.unwrap();
    let got = fetch(&format!("http://{gateway}/file/{forged_cap}"), &[]).await;
    assert_eq!(got.status, 403, "the gateway on a forged manifest");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_serves_a_sealed_file_by_capability_with_ranges_across_chunks() {
    let net = TestNet::start(5).await;
    let tmp = tempfile::tempdir().unwrap();
    let data = random_bytes((5 << 20) / 2 + 12_345, 7);
    let report = put_sealed(
        tmp.path(),
        "movie.mp4",
        &data,
        Some(Secret::random()),
        7,
        net.nodes[0].local_addr,
    )
    .await;
    let cap = report.file.to_string();
    let gateway = net.nodes[3].gateway_addr.unwrap();
    let url = format!("http://{gateway}/file/{cap}");

    let whole = fetch(&url, &[]).await;
    assert_eq!(whole.status, 200);
    assert!(whole.body == data, "the whole file differs");
    assert_eq!(
        whole.header("content-type"),
        Some("video/mp4"),
        "the sealed name's type"
    );
    assert_eq!(
        whole.header("etag"),
        Some(format!("\"{}\"", report.root).as_str())
    );
    let head = fetch(&url, &["-I"]).await;
    assert_eq!(
        head.header("content-length"),
        Some(data.len().to_string().as_str())
    );

    // A sealed chunk holds 1 MiB less the tag's 16 bytes of the file.
    let chunk = (1 << 20) - 16;
    for (from, to) in [
        (chunk - 1000, chunk + 1000),
        (2 * chunk - 1, 2 * chunk),
        (0, 3 * chunk / 2),
        (data.len() - 100, data.len() - 1),
    ] {
        let got = fetch(&url, &["-r", &format!("{from}-{to}")]).await;
        assert_eq!(got.status, 206, "range {from}-{to}");
        assert!(got.body == data[from..=to], "range {from}-{to} differs");
    }
    let suffix = fetch(&url, &["-r", "-5000"]).await;
    assert!(
        suffix.body == data[data.len() - 5000..],
        "the last 5000 bytes differ (padding leaked?)"
    );

    // The manifest is cached by now: a wrong key for the same root is still 403,
    // and a string that is no capability 400.
    let mut wrong = cap.clone();
    let last = if wrong.ends_with('0') { "1" } else { "0" };
    wrong.replace_range(wrong.len() - 1.., last);
    let refused = fetch(&format!("http://{gateway}/file/{wrong}"), &[]).await;
    assert_eq!(refused.status, 403, "a wrong key with the root cached");
    assert!(refused.body.len() < 1000 && !refused.body.windows(8).any(|w| w == &data[..8]));
    let bad = fetch(
        &format!("http://{gateway}/file/dhtfs1_{}", "ab".repeat(40)),
        &[],
    )
    .await;
    assert_eq!(bad.status, 400, "a truncated capability");
    let reads = metric(
        net.nodes[3].metrics_addr,
        r#"dhtfs_files_total{kind="sealed",op="read"}"#,
    )
    .await;
    assert!(reads >= 6.0, "sealed reads counted: {reads}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_secret_deduplicates_and_two_secrets_share_no_block() {
    let net = TestNet::start(5).await;
    let tmp = tempfile::tempdir().unwrap();
    let data = random_bytes(2 * (1 << 20) + 777, 99);
    let via = net.nodes[0].local_addr;
    let (a, b) = (Secret::random(), Secret::random());

    let first = put_sealed(tmp.path(), "f.bin", &data, Some(a.clone()), 7, via).await;
    let before = held(&net);
    let again = put_sealed(tmp.path(), "f.bin", &data, Some(a), 7, via).await;
    assert_eq!(first.file, again.file, "one secret, one capability");
    assert_eq!(
        held(&net),
        before,
        "the second put under one secret stored new blocks"
    );

    let other = put_sealed(tmp.path(), "f.bin", &data, Some(b), 7, via).await;
    let (ours, theirs) = (blocks_of(&first), blocks_of(&other));
    assert!(ours.is_disjoint(&theirs), "two secrets share a block");
    let after = held(&net);
    assert_eq!(
        after.len(),
        before.len() + theirs.len(),
        "the other secret's put added its own blocks"
    );
    println!(
        "dedup: {} blocks after one secret twice, {} more under a second secret",
        before.len(),
        after.len() - before.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pin_by_capability_stores_only_ciphertext_and_unpins() {
    let net = TestNet::start(6).await;
    let tmp = tempfile::tempdir().unwrap();
    let data = secret_document();
    let report = put_sealed(
        tmp.path(),
        "doc.txt",
        &data,
        Some(Secret::random()),
        1,
        net.nodes[0].local_addr,
    )
    .await;
    let keys = blocks_of(&report);
    // A node that holds none of the file pins it.
    let pinner = net
        .nodes
        .iter()
        .find(|d| keys.iter().all(|k| !d.store.contains(k)))
        .expect("with one replica of 3 blocks, some of 6 nodes hold none");
    let mut admin = client(pinner.admin_addr).await;
    let cap = report.file.to_string();

    let mut wrong = cap.clone();
    let last = if wrong.ends_with('0') { "1" } else { "0" };
    wrong.replace_range(wrong.len() - 1.., last);
    let refused = pin_named(&mut admin, &wrong)
        .await
        .expect_err("a wrong key pins");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");

    let done = pin_named(&mut admin, &cap)
        .await
        .expect("pin by capability");
    assert!(done.last().is_some_and(|m| m.done), "the pin ended done");
    for k in &keys {
        assert!(pinner.store.contains(k), "the pinner lacks {k}");
    }
    let found = readable_at_rest(&[pinner.data_dir()], &data);
    assert!(
        found.is_empty(),
        "plaintext in the pinner's data dir:\n{}",
        found.join("\n")
    );
    let pins = admin
        .list_pins(pb::ListPinsRequest {})
        .await
        .unwrap()
        .into_inner()
        .pins;
    assert_eq!(pins.len(), 1);
    assert_eq!(
        pins[0].root,
        report.root.to_hex(),
        "ListPins names the root, never the key"
    );
    assert_eq!(pins[0].blocks, keys.len() as u64);
    let pinned = metric(
        pinner.metrics_addr,
        r#"dhtfs_files_total{kind="sealed",op="pin"}"#,
    )
    .await;
    assert_eq!(pinned, 1.0);

    let unpinned = admin
        .unpin(pb::UnpinRequest { root: cap.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(unpinned.blocks_unpinned, keys.len() as u64);
    let pins = admin
        .list_pins(pb::ListPinsRequest {})
        .await
        .unwrap()
        .into_inner()
        .pins;
    assert!(pins.is_empty(), "still pinned: {pins:?}");
}
