//! Putting a file through a node, as `dhtfs put` does.

use std::net::SocketAddr;
use std::path::Path;

use dhtfs::files::{put, PutOptions};
use dhtfs::id::Id;

/// Puts `data` as a file called `name` (written in `dir`) through `via`, in
/// `chunk`-byte chunks on `replicas` nodes; its root.
pub async fn put_file(
    dir: &Path,
    name: &str,
    data: &[u8],
    chunk: u64,
    replicas: usize,
    via: SocketAddr,
) -> Id {
    let path = dir.join(name);
    std::fs::write(&path, data).unwrap();
    let opts = PutOptions {
        bootstrap: vec![via],
        quiet: true,
        chunk_size: chunk,
        replicas,
        ..PutOptions::new(path)
    };
    put(&opts)
        .await
        .unwrap_or_else(|e| panic!("put {name}: {e}"))
        .root
}
