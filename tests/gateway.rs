//! The HTTP gateway through real clients: files put through one node of a
//! 5-node network are read through another node's gateway with the real
//! curl (whole, HEAD, ranges, a resumed download, errors), a PNG and an HTML
//! page are opened in headless Chromium and what it rendered is checked, a
//! chunk gone from every node cuts the response short, a file within its
//! root's head is served (and got) with its chunk gone while a root that lies about
//! its head is cut after it, and lying holders on 127.0.0.2 never get a
//! wrong byte to the client.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use common::curl::{curl, fetch};
use common::data::random_bytes;
use common::metrics::metric;
use common::process::run_to_end;
use common::put::put_file;
use common::{require_tool, TestNet};
use dhtfs::files::{get, GetOptions};
use dhtfs::id::Id;
use dhtfs::manifest::{self, Entry};
const CHROMIUM_INSTALL: &str = "apt-get install chromium";

fn file_url(gateway: SocketAddr, root: &Id) -> String {
    format!("http://{gateway}/file/{root}")
}

/// Deletes block `key` from every node of `net`; how many held it.
fn delete_everywhere(net: &TestNet, key: &Id) -> usize {
    net.nodes
        .iter()
        .filter(|d| d.store.delete(key).unwrap_or(false))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_read_through_another_nodes_gateway_with_curl() {
    let mut net = TestNet::start(5).await;
    let tmp = tempfile::tempdir().unwrap();
    let via = net.nodes[0].local_addr;
    let gateway = net.nodes[3].gateway_addr.expect("a gateway");

    let cases: [(&str, usize, u64, &str); 4] = [
        ("empty.txt", 0, 1 << 20, "text/plain; charset=utf-8"),
        ("one.bin", 1, 1 << 20, "application/octet-stream"),
        ("chunk.json", 1 << 20, 1 << 20, "application/json"),
        // 4 KiB chunks: 300 chunks do not fit one 4 KiB manifest block.
        ("tree.mp4", 300 * 4096 - 7, 4096, "video/mp4"),
    ];
    for (i, (name, len, chunk, ctype)) in cases.iter().enumerate() {
        let data = random_bytes(*len, i as u64);
        let root = put_file(tmp.path(), name, &data, *chunk, 2, via).await;
        let url = file_url(gateway, &root);
        let got = fetch(&url, &[]).await;
        assert_eq!(got.status, 200, "{name}");
        assert!(got.body == data, "{name}: curl got other bytes");
        let len_text = len.to_string();
        let etag = format!("\"{root}\"");
        let disposition = format!("inline; filename=\"{name}\"; filename*=UTF-8''{name}");
        for (header, want) in [
            ("content-length", len_text.as_str()),
            ("content-type", ctype),
            ("content-disposition", disposition.as_str()),
            ("etag", etag.as_str()),
            ("cache-control", "public, max-age=31536000, immutable"),
            ("accept-ranges", "bytes"),
        ] {
            assert_eq!(got.header(header), Some(want), "{name}: {header}");
        }
        // HEAD: the same headers, no body.
        let head = fetch(&url, &["-I"]).await;
        assert_eq!(head.status, 200, "{name} HEAD");
        // curl -I writes the head where the body would go: nothing follows it.
        assert!(
            head.body.starts_with(b"HTTP/1.1 200") && head.body.ends_with(b"\r\n\r\n"),
            "{name} HEAD had a body"
        );
        for header in ["content-length", "content-type", "etag", "cache-control"] {
            assert_eq!(
                head.header(header),
                got.header(header),
                "{name} HEAD {header}"
            );
        }
        // The client has it: 304, no lookup needed.
        let cached = fetch(&url, &["-H", &format!("If-None-Match: {etag}")]).await;
        assert_eq!(cached.status, 304, "{name} If-None-Match");
        println!("gateway: {name} ({len} bytes) read through curl, headers checked");

        if *name == "chunk.json" {
            // One chunk: its key is the hash of the whole file.
            let key = Id::of_block(&data);
            let block = fetch(&format!("http://{gateway}/block/{key}"), &[]).await;
            assert_eq!(block.status, 200);
            assert!(block.body == data, "/block/ answered other bytes");
            // That block is not a manifest: 422, one line naming the fix.
            let not = fetch(&file_url(gateway, &key), &[]).await;
            assert_eq!(not.status, 422);
            let line = String::from_utf8(not.body).unwrap();
            assert_eq!(line.lines().count(), 1, "{line}");
            assert!(line.contains(&format!("/block/{key}")), "{line}");
        }
    }

    // Errors a person can act on, each one line.
    let nobody = Id::random();
    for (url, status, needle) in [
        (
            format!("http://{gateway}/file/not-a-key"),
            400,
            "64 hex digits",
        ),
        (format!("http://{gateway}/block/12ab"), 400, "64 hex digits"),
        (file_url(gateway, &nobody), 404, "no node holds"),
        (
            format!("http://{gateway}/block/{nobody}"),
            404,
            "no node holds",
        ),
        (format!("http://{gateway}/nothing"), 404, "/file/<root>"),
    ] {
        let got = fetch(&url, &[]).await;
        let body = String::from_utf8(got.body).unwrap();
        assert_eq!(got.status, status, "{url}: {body}");
        assert_eq!(body.lines().count(), 1, "{url}: {body}");
        assert!(body.contains(needle), "{url}: {body}");
        assert!(!body.contains(&net.dir.path().display().to_string()));
    }
    let metrics = net.nodes[3].metrics_addr;
    assert!(metric(metrics, "dhtfs_gateway_requests_total{code=\"200\"}").await >= 5.0);
    assert!(metric(metrics, "dhtfs_gateway_requests_total{code=\"404\"}").await >= 3.0);
    assert!(metric(metrics, "dhtfs_gateway_bytes_total").await >= (2 << 20) as f64);
    assert!(metric(metrics, "dhtfs_gateway_time_to_first_byte_seconds_count").await >= 3.0);
    net.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_requests_and_a_resumed_download() {
    let mut net = TestNet::start(5).await;
    let tmp = tempfile::tempdir().unwrap();
    // Three and a bit 4 KiB chunks.
    let size = 3 * 4096 + 100;
    let data = random_bytes(size, 42);
    let root = put_file(tmp.path(), "r.bin", &data, 4096, 2, net.nodes[1].local_addr).await;
    let gateway = net.nodes[4].gateway_addr.unwrap();
    let url = file_url(gateway, &root);

    let last = size - 1;
    for (range, from, to) in [
        ("0-0".to_string(), 0, 1),
        (format!("{last}-{last}"), last, size),
        ("4090-4105".to_string(), 4090, 4106),
        // Across the end of the root's head (512 bytes with 4 KiB blocks)
        // into the rest of the first chunk.
        ("500-600".to_string(), 500, 601),
        ("4000-8200".to_string(), 4000, 8201),
        ("-10".to_string(), size - 10, size),
        ("8000-".to_string(), 8000, size),
        ("12000-999999".to_string(), 12000, size),
    ] {
        let got = fetch(&url, &["-r", &range]).await;
        assert_eq!(got.status, 206, "range {range}");
        assert!(got.body == data[from..to], "range {range}: other bytes");
        let want = format!("bytes {from}-{}/{size}", to - 1);
        assert_eq!(got.header("content-range"), Some(want.as_str()), "{range}");
        assert_eq!(
            got.header("content-length"),
            Some((to - from).to_string().as_str())
        );
    }
    let unsatisfiable = fetch(&url, &["-r", &format!("{size}-")]).await;
    assert_eq!(unsatisfiable.status, 416);
    assert_eq!(
        unsatisfiable.header("content-range"),
        Some(format!("bytes */{size}").as_str())
    );
    // A Range for another version (If-Range) gets the whole file.
    let other = fetch(&url, &["-r", "0-0", "-H", "If-Range: \"other\""]).await;
    assert_eq!(other.status, 200);
    assert!(other.body == data);
    println!("gateway: 8 ranges and an unsatisfiable one matched the original");

    // An interrupted download (curl gives up after a second at 100 KB/s,
    // after the burst the socket buffers let through) that `curl -C -` resumes.
    let big = random_bytes(12 << 20, 43);
    let root = put_file(
        tmp.path(),
        "big.bin",
        &big,
        1 << 20,
        2,
        net.nodes[1].local_addr,
    )
    .await;
    let url = file_url(gateway, &root);
    let out = tmp.path().join("big.out");
    let o = out.to_str().unwrap().to_string();
    let cut = curl(vec![
        "--limit-rate".into(),
        "100k".into(),
        "--max-time".into(),
        "1".into(),
        "-o".into(),
        o.clone(),
        url.clone(),
    ])
    .await;
    let partial = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
    assert!(!cut.status.success(), "the first download was to be cut");
    assert!(
        partial > 0 && partial < big.len() as u64,
        "interrupted with {partial} bytes"
    );
    let resumed = curl(vec!["-C".into(), "-".into(), "-o".into(), o, url]).await;
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    assert!(std::fs::read(&out).unwrap() == big, "resumed file differs");
    println!(
        "gateway: curl -C - resumed after {partial} of {} bytes",
        big.len()
    );
    net.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_gone_from_every_node_cuts_the_response_short() {
    let mut net = TestNet::start(5).await;
    let tmp = tempfile::tempdir().unwrap();
    let data = random_bytes(3 * 4096, 44);
    let root = put_file(
        tmp.path(),
        "cut.bin",
        &data,
        4096,
        7,
        net.nodes[0].local_addr,
    )
    .await;
    delete_everywhere(&net, &Id::of_block(&data[2 * 4096..]));
    let gateway = net.nodes[2].gateway_addr.unwrap();
    let got = fetch(&file_url(gateway, &root), &[]).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.header("content-length"), Some("12288"));
    assert_eq!(got.curl_exit, Some(18), "curl saw a short body (exit 18)");
    assert!(
        got.body == data[..2 * 4096],
        "the verified chunks before it, no more"
    );
    let cut = metric(net.nodes[2].metrics_addr, "dhtfs_gateway_streams_cut_total").await;
    assert_eq!(cut, 1.0);
    println!(
        "gateway: a missing last chunk cut the body at {} bytes",
        got.body.len()
    );
    net.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_within_its_roots_head_needs_no_chunk_and_a_lying_head_is_cut() {
    let mut net = TestNet::start(5).await;
    let tmp = tempfile::tempdir().unwrap();
    let gateway = net.nodes[3].gateway_addr.unwrap();
    // 300 bytes in 4 KiB blocks: the root's head (512 bytes) holds it all.
    let small = random_bytes(300, 46);
    let root = put_file(
        tmp.path(),
        "s.bin",
        &small,
        4096,
        7,
        net.nodes[0].local_addr,
    )
    .await;
    let deleted = delete_everywhere(&net, &Id::of_block(&small));
    assert!(deleted > 0, "the chunk was stored somewhere");
    let got = fetch(&file_url(gateway, &root), &[]).await;
    assert_eq!(got.status, 200);
    assert!(got.body == small, "the root alone served the file");
    let out = tmp.path().join("s.out");
    let report = get(&GetOptions {
        bootstrap: vec![net.nodes[2].local_addr],
        quiet: true,
        ..GetOptions::new(root, out.clone())
    })
    .await
    .expect("get from the root alone");
    assert_eq!(std::fs::read(&out).unwrap(), small);
    assert_eq!(report.fetched, 0, "no chunk fetched: {}", report.summary);

    // A root whose head is not how its first chunk starts: the head goes
    // out (it is what the verified root says), then the response is cut
    // where the first chunk fails the check, and `get` refuses the file.
    let data = random_bytes(3 * 4096, 47);
    let chunks: Vec<Entry> = data
        .chunks(4096)
        .map(|c| Entry::plain(Id::of_block(c), c.len() as u64))
        .collect();
    let mut lie = data[..4096].to_vec();
    lie[10] ^= 0xff;
    let built = manifest::build(Some("lie.bin"), 4096, &chunks, 4096, None, false, &lie);
    for d in &net.nodes {
        for c in data.chunks(4096) {
            d.store.put_verified(&Id::of_block(c), c).unwrap();
        }
        for (key, bytes) in &built.blocks {
            d.store.put_verified(key, bytes).unwrap();
        }
    }
    let got = fetch(&file_url(gateway, &built.root), &[]).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.curl_exit, Some(18), "curl saw a short body (exit 18)");
    assert!(got.body == lie[..512], "the head, and nothing after it");
    let out = tmp.path().join("lie.out");
    let err = get(&GetOptions {
        bootstrap: vec![net.nodes[1].local_addr],
        quiet: true,
        ..GetOptions::new(built.root, out.clone())
    })
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("does not start with the 512 bytes"), "{err}");
    assert!(!out.exists());
    println!("gateway and get: a 300-byte file read with its chunk gone; a lying head cut after 512 bytes; get refused it: {err}");
    net.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lying_holders_on_127_0_0_2_never_reach_the_client() {
    // Warnings (why a chunk could not be fetched) show if it fails.
    common::show_warnings();
    let mut net = TestNet::start(5).await;
    let tmp = tempfile::tempdir().unwrap();
    // 60 chunks of 4 KiB, one replica each: the gateway's node holds few of
    // them, so most are looked up, and eight liars are met on the way.
    let data = random_bytes(60 * 4096, 45);
    let root = put_file(tmp.path(), "l.bin", &data, 4096, 1, net.nodes[0].local_addr).await;
    let mut liars = Vec::new();
    for _ in 0..8 {
        // The right length for a 4 KiB chunk, the wrong bytes.
        let ip = common::hostile::hostile_ip(2);
        liars.push(common::hostile::start_liar(ip, &net.contacts(), 4096).await);
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let gateway = net.nodes[3].gateway_addr.unwrap();
    let got = fetch(&file_url(gateway, &root), &[]).await;
    assert_eq!(got.status, 200);
    // A short body (a chunk that could not be fetched cuts the stream) is
    // told apart from other bytes, which would be the real failure.
    let differs = got.body.iter().zip(&data).position(|(a, b)| a != b);
    assert!(
        got.body == data,
        "the client saw {} of {} bytes (curl exit {:?}), first differing at {differs:?}",
        got.body.len(),
        data.len(),
        got.curl_exit
    );
    let ranged = fetch(&file_url(gateway, &root), &["-r", "100000-140000"]).await;
    assert!(
        ranged.body == data[100000..140001],
        "a range saw other bytes"
    );
    let rejected = metric(
        net.nodes[3].metrics_addr,
        "dhtfs_gateway_chunks_rejected_total",
    )
    .await;
    println!("gateway: 8 liars on 127.0.0.2, {rejected} bad chunks rejected, none sent");
    assert!(
        rejected >= 1.0,
        "the liars were met and their bytes refused"
    );
    for liar in liars {
        liar.abort();
    }
    net.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_that_never_delivers_gets_a_504_and_the_gateway_stays_healthy() {
    // One request at a time: a slot the 504 did not give back would make the
    // next request a 503.
    let mut net = TestNet::start_with(5, |c| {
        c.gateway_resolve_timeout_ms = 1500;
        c.gateway_max_requests = 1;
    })
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let data = random_bytes(3 * 4096 + 5, 46);
    let root = put_file(
        tmp.path(),
        "ok.bin",
        &data,
        4096,
        2,
        net.nodes[0].local_addr,
    )
    .await;
    let silent =
        common::hostile::start_silent_holder(common::hostile::hostile_ip(2), &net.contacts()).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let gateway = net.nodes[3].gateway_addr.unwrap();

    // No honest node holds these; only the silent one says it does.
    let nobody = Id::random();
    for (url, needle) in [
        (
            file_url(gateway, &nobody),
            format!("the manifest of {nobody} was not resolved within 1500 ms: retry later"),
        ),
        (
            format!("http://{gateway}/block/{nobody}"),
            format!("block {nobody} was not fetched within 1500 ms: retry later"),
        ),
    ] {
        let started = std::time::Instant::now();
        let got = fetch(&url, &[]).await;
        let body = String::from_utf8(got.body.clone()).unwrap();
        println!(
            "gateway: {url} answered {} after {:.2} s: {}",
            got.status,
            started.elapsed().as_secs_f64(),
            body.trim()
        );
        assert_eq!(got.status, 504, "{url}: {body}");
        assert_eq!(body, format!("{needle}\n"), "{url}");
        assert_eq!(
            got.header("content-type"),
            Some("text/plain; charset=utf-8")
        );
    }
    // Healthy after: the slot came back, a real file streams whole, and the
    // failed root was not kept (asked again, it is resolved again: a 504).
    let ok = fetch(&file_url(gateway, &root), &[]).await;
    assert_eq!(ok.status, 200);
    assert!(ok.body == data, "the file after the 504s");
    let again = fetch(&file_url(gateway, &nobody), &[]).await;
    assert_eq!(again.status, 504);
    let metrics = net.nodes[3].metrics_addr;
    assert_eq!(
        metric(metrics, "dhtfs_gateway_requests_total{code=\"504\"}").await,
        3.0
    );
    assert_eq!(
        metric(metrics, "dhtfs_gateway_requests_total{code=\"503\"}").await,
        0.0
    );
    assert_eq!(
        metric(metrics, "dhtfs_gateway_manifest_cache_misses_total").await,
        3.0,
        "a root that did not resolve is not cached"
    );
    silent.abort();
    net.stop_all().await;
}

/// Eight requests at once for a file whose manifest is not cached share
/// one resolve: here one that a silent holder makes wait out the resolve
/// timeout, so every request is still waiting when the last one arrives.
/// Each gets the 504; the failed file is not kept, so the next request
/// starts a resolve of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_for_one_file_at_once_share_one_resolve() {
    let mut net = TestNet::start_with(5, |c| c.gateway_resolve_timeout_ms = 1500).await;
    let silent =
        common::hostile::start_silent_holder(common::hostile::hostile_ip(2), &net.contacts()).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let gateway = net.nodes[3].gateway_addr.unwrap();
    let nobody = Id::random();
    let url = file_url(gateway, &nobody);
    let started = std::time::Instant::now();
    let got = futures::future::join_all((0..8).map(|_| fetch(&url, &[]))).await;
    let took = started.elapsed().as_secs_f64();
    for g in &got {
        let body = String::from_utf8_lossy(&g.body);
        assert_eq!(g.status, 504, "{body}");
        assert_eq!(
            body,
            format!("the manifest of {nobody} was not resolved within 1500 ms: retry later\n")
        );
    }
    let metrics = net.nodes[3].metrics_addr;
    let resolves = metric(metrics, "dhtfs_gateway_manifest_resolves_total").await;
    let misses = metric(metrics, "dhtfs_gateway_manifest_cache_misses_total").await;
    println!("gateway: 8 requests at once, {misses} misses, {resolves} resolves, {took:.2} s");
    assert_eq!(misses, 8.0);
    assert_eq!(resolves, 1.0, "the eight misses shared one resolve");
    assert_eq!(fetch(&url, &[]).await.status, 504);
    assert_eq!(
        metric(metrics, "dhtfs_gateway_manifest_resolves_total").await,
        2.0,
        "a failed resolve is not kept"
    );
    silent.abort();
    net.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeking_in_a_file_resolves_its_manifest_once() {
    let mut net = TestNet::start(5).await;
    let tmp = tempfile::tempdir().unwrap();
    // 4 KiB chunks, 300 of them: a manifest tree, root and leaves.
    let size = 300 * 4096 - 7;
    let data = random_bytes(size, 47);
    let root = put_file(
        tmp.path(),
        "seek.mp4",
        &data,
        4096,
        2,
        net.nodes[0].local_addr,
    )
    .await;
    let gateway = net.nodes[4].gateway_addr.unwrap();
    let url = file_url(gateway, &root);
    let first = fetch(&url, &["-r", "0-999"]).await;
    assert_eq!(first.status, 206);
    assert!(first.body == data[..1000]);

    // The root manifest gone from every node: what follows can only be
    // served from the cache.
    let mut held_by = 0;
    for d in &net.nodes {
        held_by += usize::from(d.store.delete(&root).unwrap());
    }
    assert!(held_by >= 1, "the root was held");
    let gone = fetch(&file_url(net.nodes[3].gateway_addr.unwrap(), &root), &[]).await;
    assert_eq!(gone.status, 404, "another gateway no longer finds the root");
    for (from, to) in [
        (size - 5000, size),
        (600_000, 600_001),
        (4096, 40_000),
        (0, size),
    ] {
        let got = fetch(&url, &["-r", &format!("{from}-{}", to - 1)]).await;
        assert_eq!(got.status, 206, "{from}-{to}");
        assert!(got.body == data[from..to], "seek to {from}: other bytes");
    }
    let metrics = net.nodes[4].metrics_addr;
    let hits = metric(metrics, "dhtfs_gateway_manifest_cache_hits_total").await;
    let misses = metric(metrics, "dhtfs_gateway_manifest_cache_misses_total").await;
    let held = metric(metrics, "dhtfs_gateway_manifest_cache_bytes").await;
    println!("gateway: 5 seeks, manifest cache {hits} hits, {misses} misses, {held} bytes held");
    assert_eq!((hits, misses), (4.0, 1.0));
    // 300 chunk entries (id, size, and a sealed chunk's key when there is
    // one), and a little more for the header and the slot.
    let entries = 300.0 * std::mem::size_of::<dhtfs::manifest::Entry>() as f64;
    assert!(
        (entries..entries + 2_000.0).contains(&held),
        "{held} bytes held for {entries} bytes of entries"
    );
    net.stop_all().await;
}

// ---------------------------------------------------------------- browser

/// A `w`×`h` PNG: the top half red, the bottom half blue.
fn two_colour_png(w: u32, h: u32) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header().unwrap();
        let mut pixels = Vec::new();
        for y in 0..h {
            let rgb = if y < h / 2 { [255, 0, 0] } else { [0, 0, 255] };
            for _ in 0..w {
                pixels.extend_from_slice(&rgb);
            }
        }
        writer.write_image_data(&pixels).unwrap();
    }
    out
}

/// Decoded RGB(A) pixels of a screenshot: (width, height, channels, bytes).
fn decode_png(path: &Path) -> (u32, u32, usize, Vec<u8>) {
    let decoder = png::Decoder::new(std::fs::File::open(path).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    let channels = info.color_type.samples();
    (info.width, info.height, channels, buf)
}

/// Runs headless Chromium on `url` with `args`; its stdout.
async fn chromium(profile: &Path, url: &str, args: &[String]) -> String {
    let bin = require_tool("chromium", CHROMIUM_INSTALL);
    let mut all: Vec<String> = vec![
        "--headless".into(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--no-first-run".into(),
        "--hide-scrollbars".into(),
        "--force-device-scale-factor=1".into(),
        format!("--user-data-dir={}", profile.display()),
    ];
    all.extend(args.iter().cloned());
    all.push(url.into());
    let out = tokio::task::spawn_blocking(move || {
        let done = run_to_end(
            Command::new(bin).args(&all),
            std::time::Duration::from_secs(90),
            "chromium",
        );
        (done.status, done.stdout, done.stderr)
    });
    let (status, stdout, stderr) = out.await.unwrap();
    assert!(status.success(), "chromium failed: {stderr}");
    stdout
}

/// How many pixels are close to `rgb`, and their mean row.
fn count_colour(shot: &(u32, u32, usize, Vec<u8>), rgb: [u8; 3]) -> (usize, f64) {
    let (w, _, ch, px) = shot;
    let (mut n, mut rows) = (0usize, 0f64);
    for (i, p) in px.chunks(*ch).enumerate() {
        let close = (0..3).all(|c| (i32::from(p[c]) - i32::from(rgb[c])).abs() < 16);
        if close {
            n += 1;
            rows += (i as u32 / w) as f64;
        }
    }
    (n, if n > 0 { rows / n as f64 } else { 0.0 })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_renders_a_png_and_an_html_page_from_the_gateway() {
    let mut net = TestNet::start(5).await;
    let tmp = tempfile::tempdir().unwrap();
    let via = net.nodes[0].local_addr;
    let gateway = net.nodes[2].gateway_addr.unwrap();

    let image = two_colour_png(120, 80);
    let png_root = put_file(tmp.path(), "flag.png", &image, 4096, 3, via).await;
    let page = "<!doctype html><html><head><title>dhtfs page</title></head>\
                <body style=\"margin:0;background:#00ff00\">\
                <h1 id=\"greeting\">Hello from dhtfs</h1>\
                <script>document.body.insertAdjacentHTML('beforeend', \
                '<p id=\"scripted\">ran ' + (6 * 7) + '</p>')</script></body></html>";
    let html_root = put_file(tmp.path(), "index.html", page.as_bytes(), 4096, 3, via).await;

    // The image, in a window larger than it: Chromium shows it unscaled.
    let shot = tmp.path().join("png.png");
    chromium(
        &tmp.path().join("profile1"),
        &file_url(gateway, &png_root),
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=400,300".into(),
        ],
    )
    .await;
    let pixels = decode_png(&shot);
    let (red, red_row) = count_colour(&pixels, [255, 0, 0]);
    let (blue, blue_row) = count_colour(&pixels, [0, 0, 255]);
    println!(
        "gateway: chromium screenshot {}x{}: {red} red pixels (mean row {red_row:.0}), {blue} blue (mean row {blue_row:.0})",
        pixels.0, pixels.1
    );
    let half = 120 * 40;
    assert!(
        red >= half * 9 / 10 && red <= half * 11 / 10,
        "{red} red pixels, not about {half}"
    );
    assert!(
        blue >= half * 9 / 10 && blue <= half * 11 / 10,
        "{blue} blue pixels, not about {half}"
    );
    assert!(red_row < blue_row, "red above blue");

    // The page: its DOM after the script ran, and its green background.
    let html_url = file_url(gateway, &html_root);
    let dom = chromium(
        &tmp.path().join("profile2"),
        &html_url,
        &["--dump-dom".into()],
    )
    .await;
    assert!(
        dom.contains("<h1 id=\"greeting\">Hello from dhtfs</h1>"),
        "{dom}"
    );
    assert!(dom.contains("<p id=\"scripted\">ran 42</p>"), "{dom}");
    let shot = tmp.path().join("html.png");
    chromium(
        &tmp.path().join("profile3"),
        &html_url,
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=400,300".into(),
        ],
    )
    .await;
    let pixels = decode_png(&shot);
    let (green, _) = count_colour(&pixels, [0, 255, 0]);
    let all = (pixels.0 * pixels.1) as usize;
    println!("gateway: chromium rendered the page: {green} of {all} pixels green, DOM checked");
    assert!(
        green > all / 2,
        "the page's background: {green} of {all} green"
    );
    net.stop_all().await;
}
