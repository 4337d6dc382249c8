//! The raw TCP block fetch, as an original peer does it: `<64 hex>\n` out;
//! back the 4-byte little-endian length, `\n` and the bytes, or a close
//! without a byte when the block is absent.

use std::net::SocketAddr;
use std::time::Duration;

use dhtfs::id::Id;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Fetches `key` over raw TCP from `addr`: Some(bytes), or None when the
/// node closes without a byte (absent); saying why when it fails.
pub async fn try_fetch(addr: SocketAddr, key: &Id) -> Result<Option<Vec<u8>>, String> {
    let mut s = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    s.write_all(format!("{key}\n").as_bytes())
        .await
        .map_err(|e| format!("write key: {e}"))?;
    let mut header = [0u8; 5];
    let n = s
        .read(&mut header[..1])
        .await
        .map_err(|e| format!("read: {e}"))?;
    if n == 0 {
        return Ok(None);
    }
    s.read_exact(&mut header[1..])
        .await
        .map_err(|e| format!("read header: {e}"))?;
    if header[4] != b'\n' {
        return Err(format!("no newline after the length: {header:?}"));
    }
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let mut data = vec![0u8; len];
    s.read_exact(&mut data)
        .await
        .map_err(|e| format!("read {len} bytes: {e}"))?;
    Ok(Some(data))
}

/// Fetches `key` over raw TCP from `addr`: Some(bytes) or None when absent;
/// panics when the fetch fails or takes over 30 s.
pub async fn tcp_fetch(addr: SocketAddr, key: &Id) -> Option<Vec<u8>> {
    tokio::time::timeout(Duration::from_secs(30), try_fetch(addr, key))
        .await
        .unwrap_or_else(|_| panic!("fetching {key} from {addr} took over 30 s"))
        .unwrap_or_else(|e| panic!("fetching {key} from {addr}: {e}"))
}
