//! A run of a file's bytes as an ordered stream of verified pieces: chunks
//! are fetched `window` ahead in parallel, and each piece is yielded as soon
//! as its own chunk verified and every piece before it was yielded. Memory
//! stays near `window` chunks whatever the file size; a chunk that cannot be
//! fetched ends the stream with an error, and nothing unverified is yielded.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::stream::{self, Stream, StreamExt};
use tokio::task::JoinHandle;

use super::fetch::{check_head, open_chunk, Fetcher};
use crate::id::Id;
use crate::manifest::Entry;
use crate::seal::SealKey;

/// The part of one chunk that falls in the range read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Piece {
    /// The chunk's position in the file's chunk list.
    pub index: usize,
    pub key: Id,
    /// The chunk's size, as its manifest says.
    pub size: u64,
    /// A sealed chunk's key, and the file's chunk size its padding follows.
    pub seal: Option<SealKey>,
    pub chunk_size: u64,
    /// Whether `key` names the chunk's stripe (an erasure-coded file).
    pub stripes: bool,
    /// Where the range starts and ends within the chunk.
    pub from: u64,
    pub to: u64,
}

/// Why a stream ended early.
#[derive(Debug, thiserror::Error)]
#[error("chunk {index} ({key}) could not be fetched: {why}")]
pub struct ChunkFailed {
    pub index: usize,
    pub key: Id,
    pub why: String,
}

/// The pieces covering bytes `start..end` of a file made of `chunks` (cut
/// in `chunk_size`-byte chunks, listed as stripes when `stripes`), in order.
pub fn pieces(
    chunks: &[Entry],
    (chunk_size, stripes): (u64, bool),
    start: u64,
    end: u64,
) -> Vec<Piece> {
    let mut out = Vec::new();
    if start >= end {
        return out;
    }
    let mut offset = 0u64;
    for (index, &Entry(key, size, seal)) in chunks.iter().enumerate() {
        let (lo, hi) = (offset, offset + size);
        offset = hi;
        if hi <= start || size == 0 {
            continue;
        }
        if lo >= end {
            break;
        }
        out.push(Piece {
            index,
            key,
            size,
            seal,
            chunk_size,
            stripes,
            from: start.saturating_sub(lo),
            to: end.min(hi) - lo,
        });
    }
    out
}

/// A spawned fetch that is cancelled when the stream holding it is dropped
/// (the client went away): spawned, so read-ahead progresses while the
/// client is still reading earlier bytes.
struct Ahead(JoinHandle<Result<Bytes, ChunkFailed>>);

impl Future for Ahead {
    type Output = Result<Bytes, ChunkFailed>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx).map(|joined| {
            joined.unwrap_or_else(|e| {
                Err(ChunkFailed {
                    index: 0,
                    key: Id::ZERO,
                    why: format!("fetch task ended: {e}"),
                })
            })
        })
    }
}

impl Drop for Ahead {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The bytes of `pieces`, in order, each verified, `window` chunks fetched
/// ahead; the first error ends the stream. The first piece is fetched alone,
/// so that its lookup and transfer do not share the links and the cores with
/// the read-ahead: the first byte leaves one chunk's fetch after the start.
/// The first chunk must start with `head`, the root's copy of the file's
/// first bytes, which the reader may have handed out already.
pub fn read_pieces(
    fetcher: Fetcher,
    pieces: Vec<Piece>,
    window: usize,
    head: Bytes,
) -> impl Stream<Item = Result<Bytes, ChunkFailed>> + Send + 'static {
    let mut pieces = pieces.into_iter();
    let first = pieces
        .next()
        .map(|p| fetch_piece(fetcher.clone(), p, head.clone()));
    let rest = stream::iter(pieces)
        .map(move |p| fetch_piece(fetcher.clone(), p, head.clone()))
        .buffered(window.max(1));
    let mut failed = false;
    stream::iter(first)
        .then(|ahead| ahead)
        .chain(rest)
        .take_while(move |item| {
            // Yield the first error, then stop.
            let go = !failed;
            failed |= item.is_err();
            std::future::ready(go)
        })
}

/// Starts fetching one piece: its chunk, verified (the first against
/// `head`), cut to the piece.
fn fetch_piece(fetcher: Fetcher, p: Piece, head: Bytes) -> Ahead {
    Ahead(tokio::spawn(async move {
        let failed = |why: String| ChunkFailed {
            index: p.index,
            key: p.key,
            why,
        };
        let entry = Entry(p.key, p.size, p.seal);
        let block = fetcher
            .chunk(&entry, p.chunk_size, p.stripes)
            .await
            .map_err(|e| failed(e.why))?;
        let data = match entry.2 {
            None => open_chunk(&entry, p.chunk_size, block),
            // Opening a sealed megabyte is CPU work: off the runtime.
            Some(_) => tokio::task::spawn_blocking(move || open_chunk(&entry, p.chunk_size, block))
                .await
                .unwrap_or_else(|e| Err(e.to_string())),
        }
        .map_err(failed)?;
        check_head(&head, p.index, &data).map_err(failed)?;
        Ok(Bytes::from(data).slice(p.from as usize..p.to as usize))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(sizes: &[u64]) -> Vec<Entry> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, &s)| Entry::plain(Id::of_block(&[i as u8]), s))
            .collect()
    }

    fn spans(p: &[Piece]) -> Vec<(usize, u64, u64)> {
        p.iter().map(|p| (p.index, p.from, p.to)).collect()
    }

    #[test]
    fn the_whole_file_is_every_chunk_whole() {
        let c = chunks(&[10, 10, 5]);
        assert_eq!(
            spans(&pieces(&c, (10, false), 0, 25)),
            [(0, 0, 10), (1, 0, 10), (2, 0, 5)]
        );
    }

    #[test]
    fn a_range_takes_only_the_chunks_it_touches() {
        let c = chunks(&[10, 10, 10, 10]);
        // Across the boundary of chunks 1 and 2.
        assert_eq!(
            spans(&pieces(&c, (10, false), 19, 21)),
            [(1, 9, 10), (2, 0, 1)]
        );
        // The first byte, the last byte.
        assert_eq!(spans(&pieces(&c, (10, false), 0, 1)), [(0, 0, 1)]);
        assert_eq!(spans(&pieces(&c, (10, false), 39, 40)), [(3, 9, 10)]);
        // Exactly one whole chunk.
        assert_eq!(spans(&pieces(&c, (10, false), 10, 20)), [(1, 0, 10)]);
    }

    #[test]
    fn an_empty_range_or_file_has_no_pieces() {
        assert!(pieces(&chunks(&[]), (10, false), 0, 0).is_empty());
        assert!(pieces(&chunks(&[10]), (10, false), 5, 5).is_empty());
    }
}
