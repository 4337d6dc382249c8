//! The file manifest: which chunks make a file, as blocks in the network.
//!
//! A file is cut into chunks of `chunk_size` bytes (the last may be shorter),
//! each stored under its sha256. A manifest block lists them:
//!
//! `{"dhtfs":"manifest","v":1,"name":"f.bin","size":N,"chunk_size":C,"chunks":[["<hex>",size],...]}`
//!
//! When the list does not fit one block, the chunks are spread over leaf
//! manifests and a tree of manifests lists those (`"parts":[["<hex>",bytes covered],...]`
//! instead of `"chunks"`), so every file has one root key. Only the root
//! carries the name. Manifests come from the network: parsing checks
//! everything a lying peer could get wrong (version, sizes that do not add up,
//! counts), and [`MAX_DEPTH`] bounds the tree.
//!
//! A sealed file (see `seal.rs`) has the same manifests, sealed, and each
//! entry carries the key its block is sealed under as a third element:
//! `["<hex>",size,"<key hex>"]`. Every entry of a manifest has a key or
//! none does.
//!
//! An erasure-coded file's manifests are version 2 and say `"stripes":true`:
//! each entry names the chunk's stripe (see `stripe.rs`) rather than the
//! chunk's block, with the chunk's size and key as before. Every manifest
//! of a file has the same layout. A reader of version 1 only refuses them
//! with "upgrade dhtfs" rather than misreading a stripe as a chunk.
//!
//! A root manifest may carry the file's first bytes as `"head":"<base64>"`
//! (at most [`HEAD_MAX`], and an eighth of the block), a copy of what its
//! first chunk starts with: a reader can hand them out as soon as the root
//! is verified, before the first chunk's lookup and transfer (a gateway's
//! first byte), and a file no longer than its head needs no chunk fetched.
//! Readers that predate it ignore the field; readers that use it check the
//! first chunk against it.
//!
//! The original DHTFileStore's "hash file" (`<hex>$<size>|<hex>$<size>|...`)
//! is read and written here too.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::id::Id;
use crate::seal::{self, SealKey, Secret};

/// The newest manifest format this build writes and reads: version 2 is an
/// erasure-coded file's (entries name stripes).
pub const VERSION: u32 = 2;
/// The format of a replicated file's manifests (entries name chunk blocks).
pub const VERSION_CHUNKS: u32 = 1;
/// Deepest manifest tree accepted: 8 levels of even 4 KiB manifests cover
/// more than any disk holds.
pub const MAX_DEPTH: usize = 8;
/// Largest chunk size accepted in a manifest.
pub const MAX_CHUNK_SIZE: u64 = 16 << 20;
/// Smallest chunk size accepted in a manifest (`put`'s smallest block, less
/// a sealed chunk's tag): with the size of a file bounded by the free disk,
/// it bounds the chunk list `get` builds, however a lying tree repeats its
/// parts.
pub const MIN_CHUNK_SIZE: u64 = (4 << 10) - seal::TAG_LEN as u64;
/// Largest file size accepted in a manifest (2^53, what JSON numbers hold exactly).
pub const MAX_FILE_SIZE: u64 = 1 << 53;
/// The longest head a root manifest carries (see the module's text).
pub const HEAD_MAX: usize = 16 << 10;
/// Room kept in each manifest block for everything but the entries.
const HEADER_ROOM: usize = 1024;
/// The most one entry `["<64 hex>",<u64>],` takes.
const ENTRY_MAX: usize = 64 + 2 + 2 + 20 + 2;
/// ... and one with a key, `,"<64 hex>"` more.
const SEALED_ENTRY_MAX: usize = ENTRY_MAX + 64 + 3;
/// Longest file name kept in a manifest.
const MAX_NAME: usize = 255;

/// One chunk (or, in a tree, one child manifest), the bytes it covers, and
/// in a sealed file the key its block is sealed under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry(pub Id, pub u64, pub Option<SealKey>);

impl Entry {
    /// A plain entry.
    pub fn plain(id: Id, size: u64) -> Entry {
        Entry(id, size, None)
    }
}

impl Serialize for Entry {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.2 {
            None => (self.0, self.1).serialize(s),
            Some(key) => (self.0, self.1, key).serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Entry {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Entry, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Entry;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("[\"<hex id>\", size] or [\"<hex id>\", size, \"<hex key>\"]")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Entry, A::Error> {
                use serde::de::Error;
                let id = seq
                    .next_element()?
                    .ok_or_else(|| A::Error::invalid_length(0, &self))?;
                let size = seq
                    .next_element()?
                    .ok_or_else(|| A::Error::invalid_length(1, &self))?;
                let key = seq.next_element::<SealKey>()?;
                if key.is_some() && seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
                    return Err(A::Error::invalid_length(4, &self));
                }
                Ok(Entry(id, size, key))
            }
        }
        d.deserialize_seq(Visit)
    }
}

/// What a manifest block lists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// The file's chunks, in order.
    Chunks(Vec<Entry>),
    /// Child manifests, in order, each covering a run of the file.
    Parts(Vec<Entry>),
}

/// One parsed manifest block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    pub name: Option<String>,
    pub size: u64,
    pub chunk_size: u64,
    /// Whether entries name stripes (an erasure-coded file) or chunk blocks.
    pub stripes: bool,
    pub body: Body,
    /// The file's first bytes (a root's copy of its first chunk's start),
    /// or none.
    pub head: Vec<u8>,
}

/// The head a root manifest of blocks of at most `max_block` bytes carries:
/// [`HEAD_MAX`], or an eighth of the block when that is less (base64 makes
/// it a sixth), so the entries keep most of the root.
pub fn head_len(max_block: usize) -> usize {
    HEAD_MAX.min(max_block / 8)
}

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Serialize, Deserialize)]
struct Wire {
    dhtfs: String,
    v: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    size: u64,
    chunk_size: u64,
    #[serde(default, skip_serializing_if = "is_false")]
    stripes: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    chunks: Option<Vec<Entry>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    parts: Option<Vec<Entry>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    head: Option<String>,
}

/// Why a manifest or a hash file is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("block {key} is not a dhtfs manifest: {why}")]
    NotManifest { key: Id, why: String },
    #[error("manifest {key} has format version {found}; this dhtfs reads versions {VERSION_CHUNKS} and {VERSION}: upgrade dhtfs")]
    Version { key: Id, found: u32 },
    #[error("manifest {key} is inconsistent: {why}")]
    Inconsistent { key: Id, why: String },
    #[error("manifest tree under {root} is deeper than {MAX_DEPTH} levels")]
    TooDeep { root: Id },
    #[error("hash file entry {index} ('{entry}') is not <64 hex>$<size>")]
    HashFile { index: usize, entry: String },
}

impl Manifest {
    /// The entries, whichever kind they are.
    pub fn entries(&self) -> &[Entry] {
        match &self.body {
            Body::Chunks(e) | Body::Parts(e) => e,
        }
    }

    /// Whether its entries carry keys (a sealed file's manifest).
    pub fn sealed(&self) -> bool {
        self.entries().first().is_some_and(|e| e.2.is_some())
    }

    /// Encodes this manifest as a block.
    pub fn encode(&self) -> Vec<u8> {
        let (chunks, parts) = match &self.body {
            Body::Chunks(e) => (Some(e.clone()), None),
            Body::Parts(e) => (None, Some(e.clone())),
        };
        let wire = Wire {
            dhtfs: "manifest".into(),
            v: if self.stripes {
                VERSION
            } else {
                VERSION_CHUNKS
            },
            name: self.name.clone(),
            size: self.size,
            chunk_size: self.chunk_size,
            stripes: self.stripes,
            chunks,
            parts,
            head: (!self.head.is_empty()).then(|| BASE64.encode(&self.head)),
        };
        serde_json::to_vec(&wire).unwrap_or_default()
    }

    /// Parses and checks the manifest block stored under `key`.
    pub fn parse(key: Id, bytes: &[u8]) -> Result<Manifest, ManifestError> {
        let not = |why: String| ManifestError::NotManifest { key, why };
        let bad = |why: String| ManifestError::Inconsistent { key, why };
        let wire: Wire = serde_json::from_slice(bytes).map_err(|e| not(e.to_string()))?;
        if wire.dhtfs != "manifest" {
            return Err(not(format!("its kind is '{}'", wire.dhtfs)));
        }
        if wire.v != VERSION && wire.v != VERSION_CHUNKS {
            return Err(ManifestError::Version { key, found: wire.v });
        }
        if wire.stripes != (wire.v == VERSION) {
            return Err(bad(format!(
                "version {} with stripes {}: stripes come with version {VERSION} only",
                wire.v, wire.stripes
            )));
        }
        if wire.size > MAX_FILE_SIZE {
            return Err(bad(format!("claims {} bytes", wire.size)));
        }
        if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&wire.chunk_size) {
            return Err(bad(format!(
                "chunk size {} is out of range",
                wire.chunk_size
            )));
        }
        let body = match (wire.chunks, wire.parts) {
            (Some(chunks), None) => {
                if let Some(Entry(k, s, _)) = chunks.iter().find(|e| e.1 > wire.chunk_size) {
                    return Err(bad(format!(
                        "chunk {k} of {s} bytes exceeds the chunk size"
                    )));
                }
                // With every chunk at most chunk_size and the sizes adding up
                // (checked below), this makes all but the last one full.
                let want = wire.size.div_ceil(wire.chunk_size);
                if chunks.len() as u64 != want {
                    return Err(bad(format!(
                        "{} chunks for {} bytes in {}-byte chunks (want {want})",
                        chunks.len(),
                        wire.size,
                        wire.chunk_size
                    )));
                }
                Body::Chunks(chunks)
            }
            (None, Some(parts)) => {
                if parts.is_empty() || parts.iter().any(|e| e.1 == 0) {
                    return Err(bad("a tree node with no parts or an empty part".into()));
                }
                // Only the last chunk of a file may be short, so every part
                // but the last covers whole chunks.
                let (_, init) = parts.split_last().unwrap_or((&parts[0], &[]));
                if let Some(Entry(k, s, _)) = init.iter().find(|e| e.1 % wire.chunk_size != 0) {
                    return Err(bad(format!(
                        "part {k} covers {s} bytes, not whole {}-byte chunks",
                        wire.chunk_size
                    )));
                }
                Body::Parts(parts)
            }
            _ => return Err(not("it needs exactly one of chunks and parts".into())),
        };
        let head = match &wire.head {
            None => Vec::new(),
            Some(text) => {
                // Checked before decoding: a lying peer's head costs nothing.
                if text.len() > HEAD_MAX.div_ceil(3) * 4 {
                    return Err(bad(format!("its head is {} characters", text.len())));
                }
                BASE64
                    .decode(text)
                    .map_err(|e| bad(format!("its head is not base64: {e}")))?
            }
        };
        if head.len() as u64 > wire.size.min(wire.chunk_size) {
            return Err(bad(format!(
                "its head of {} bytes is longer than its first chunk",
                head.len()
            )));
        }
        let keyed = body_entries(&body).iter().filter(|e| e.2.is_some()).count();
        if keyed != 0 && keyed != body_entries(&body).len() {
            return Err(bad(format!(
                "{keyed} of its {} entries carry a key: all or none must",
                body_entries(&body).len()
            )));
        }
        let manifest = Manifest {
            name: wire.name.map(|n| n.chars().take(MAX_NAME).collect()),
            size: wire.size,
            chunk_size: wire.chunk_size,
            stripes: wire.stripes,
            body,
            head,
        };
        let total = manifest
            .entries()
            .iter()
            .try_fold(0u64, |acc, e| acc.checked_add(e.1));
        if total != Some(manifest.size) {
            return Err(bad(format!(
                "its entries add up to {total:?} bytes, not the {} it claims",
                manifest.size
            )));
        }
        Ok(manifest)
    }
}

fn body_entries(body: &Body) -> &[Entry] {
    match body {
        Body::Chunks(e) | Body::Parts(e) => e,
    }
}

/// The blocks of a file's manifest, built bottom-up.
#[derive(Clone, Debug)]
pub struct Built {
    /// The root manifest's key: the file's one name in the network.
    pub root: Id,
    /// For a sealed file, the key the root is sealed under.
    pub root_key: Option<SealKey>,
    /// Every manifest block (key, bytes), leaves first, root last.
    pub blocks: Vec<(Id, Vec<u8>)>,
}

/// Builds the manifest of a file of `chunks` (in order) so that no manifest
/// block exceeds `max_block` bytes. With `seal`, the chunks' entries carry
/// their keys and every manifest block is sealed under that secret. With
/// `stripes`, the entries name the chunks' stripes. The root carries the
/// first [`head_len`] bytes of `first`, the file's first chunk's bytes.
pub fn build(
    name: Option<&str>,
    chunk_size: u64,
    chunks: &[Entry],
    max_block: usize,
    seal: Option<&Secret>,
    stripes: bool,
    first: &[u8],
) -> Built {
    let name = name.map(|n| n.chars().take(MAX_NAME).collect::<String>());
    let size: u64 = chunks.iter().map(|e| e.1).sum();
    // Never longer than the first chunk (nor than a part of it could be).
    let head_max = head_len(max_block).min(chunk_size.min(size) as usize);
    let head = first[..first.len().min(head_max)].to_vec();
    let name_room = name.as_ref().map_or(0, |n| n.len() * 6) + head.len().div_ceil(3) * 4;
    let (entry_max, max_plain) = match seal {
        Some(_) => (SEALED_ENTRY_MAX, max_block.saturating_sub(seal::TAG_LEN)),
        None => (ENTRY_MAX, max_block),
    };
    let fanout = (max_plain.saturating_sub(HEADER_ROOM + name_room) / entry_max).max(2);
    let mut blocks = Vec::new();
    // One manifest block: encoded, sealed if asked, named by its hash.
    let mut make = |body: Body, size: u64, name: Option<String>, head: Vec<u8>| {
        let json = Manifest {
            name,
            size,
            chunk_size,
            stripes,
            body,
            head,
        }
        .encode();
        let (bytes, key) = match seal {
            Some(secret) => {
                let (key, sealed) = seal::seal_manifest(secret, &json, max_plain as u64);
                (sealed, Some(key))
            }
            None => (json, None),
        };
        let id = Id::of_block(&bytes);
        blocks.push((id, bytes));
        Entry(id, size, key)
    };
    if chunks.len() <= fanout {
        let root = make(Body::Chunks(chunks.to_vec()), size, name, head);
        return Built {
            root: root.0,
            root_key: root.2,
            blocks,
        };
    }
    // Leaves, then levels of parts until one node is left.
    let mut level: Vec<Entry> = chunks
        .chunks(fanout)
        .map(|group| {
            let covered = group.iter().map(|e| e.1).sum();
            make(Body::Chunks(group.to_vec()), covered, None, Vec::new())
        })
        .collect();
    loop {
        if level.len() <= fanout {
            let root = make(Body::Parts(level), size, name, head);
            return Built {
                root: root.0,
                root_key: root.2,
                blocks,
            };
        }
        level = level
            .chunks(fanout)
            .map(|group| {
                let covered = group.iter().map(|e| e.1).sum();
                make(Body::Parts(group.to_vec()), covered, None, Vec::new())
            })
            .collect();
    }
}

/// Writes the original's hash file: `<hex>$<size>|` per chunk.
pub fn format_hashfile(chunks: &[Entry]) -> String {
    chunks
        .iter()
        .map(|Entry(k, s, _)| format!("{k}${s}|"))
        .collect()
}

/// Reads the original's hash file.
pub fn parse_hashfile(text: &str) -> Result<Vec<Entry>, ManifestError> {
    text.trim()
        .split('|')
        .filter(|e| !e.trim().is_empty())
        .enumerate()
        .map(|(index, entry)| {
            let bad = || ManifestError::HashFile {
                index,
                entry: entry.chars().take(100).collect(),
            };
            let (hex, size) = entry.trim().split_once('$').ok_or_else(bad)?;
            let key = Id::from_hex(hex).map_err(|_| bad())?;
            let size = size.parse::<u64>().map_err(|_| bad())?;
            Ok(Entry::plain(key, size))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(n: usize, size: u64) -> Vec<Entry> {
        (0..n)
            .map(|i| Entry::plain(Id::of_block(&i.to_le_bytes()), size))
            .collect()
    }

    /// Walks a built tree back to its chunk list, as `get` does.
    fn flatten(built: &Built, key: Id, depth: usize, out: &mut Vec<Entry>) {
        assert!(depth < MAX_DEPTH);
        let bytes = &built.blocks.iter().find(|(k, _)| *k == key).unwrap().1;
        let m = Manifest::parse(key, bytes).unwrap();
        match m.body {
            Body::Chunks(c) => out.extend(c),
            Body::Parts(p) => {
                for Entry(k, _, _) in p {
                    flatten(built, k, depth + 1, out);
                }
            }
        }
    }

    #[test]
    fn small_file_is_one_block_with_its_name() {
        let c = chunks(3, 4096);
        let built = build(Some("a.txt"), 4096, &c, 1 << 20, None, false, &[]);
        assert_eq!(built.blocks.len(), 1);
        let m = Manifest::parse(built.root, &built.blocks[0].1).unwrap();
        assert_eq!(m.name.as_deref(), Some("a.txt"));
        assert_eq!(m.size, 3 * 4096);
        assert_eq!(m.body, Body::Chunks(c));
    }

    #[test]
    fn empty_file_has_an_empty_manifest() {
        let built = build(Some("empty"), 1 << 20, &[], 1 << 20, None, false, &[]);
        let m = Manifest::parse(built.root, &built.blocks[0].1).unwrap();
        assert_eq!(m.size, 0);
        assert!(m.entries().is_empty());
    }

    #[test]
    fn large_lists_become_trees_within_the_block_size() {
        for (n, max_block) in [(1000, 4096), (20_000, 4096), (5000, 65536)] {
            let c = chunks(n, 4096);
            let built = build(Some("big"), 4096, &c, max_block, None, false, &[]);
            assert!(built.blocks.len() > 1);
            assert!(built.blocks.iter().all(|(_, b)| b.len() <= max_block));
            assert_eq!(built.blocks.last().unwrap().0, built.root);
            let mut out = Vec::new();
            flatten(&built, built.root, 0, &mut out);
            assert_eq!(out, c);
        }
    }

    #[test]
    fn the_root_alone_carries_the_files_first_bytes_cut_to_its_block() {
        let first: Vec<u8> = (0..40_000u32).map(|i| i as u8).collect();
        // 1 MiB blocks: 16 KiB of head, in a root that is still one block.
        let c = chunks(1, 40_000);
        let built = build(Some("a"), 1 << 20, &c, 1 << 20, None, false, &first);
        let m = Manifest::parse(built.root, &built.blocks[0].1).unwrap();
        assert_eq!(m.head, first[..HEAD_MAX]);
        // 4 KiB blocks: a tree, whose root's head is an eighth of a block
        // and whose parts carry none; every block within the size.
        let c = chunks(1000, 4096);
        let built = build(Some("big"), 4096, &c, 4096, None, false, &first);
        assert!(built.blocks.len() > 2);
        assert!(built.blocks.iter().all(|(_, b)| b.len() <= 4096));
        for (key, bytes) in &built.blocks {
            let m = Manifest::parse(*key, bytes).unwrap();
            match *key == built.root {
                true => assert_eq!(m.head, first[..512]),
                false => assert!(m.head.is_empty()),
            }
        }
        let mut out = Vec::new();
        flatten(&built, built.root, 0, &mut out);
        assert_eq!(out, c);
        // A file shorter than the head is all in it; no bytes, no field.
        let built = build(None, 4096, &chunks(1, 10), 4096, None, false, &first[..10]);
        let m = Manifest::parse(built.root, &built.blocks[0].1).unwrap();
        assert_eq!(m.head, first[..10]);
        let built = build(None, 4096, &chunks(3, 4096), 1 << 20, None, false, &[]);
        assert!(!String::from_utf8_lossy(&built.blocks[0].1).contains("head"));
    }

    #[test]
    fn a_head_longer_than_the_first_chunk_or_not_base64_is_refused() {
        let one = format!(r#"[["{}",10]]"#, Id::ZERO);
        let with = |head: &str| {
            format!(
                r#"{{"dhtfs":"manifest","v":1,"size":10,"chunk_size":4096,"chunks":{one},"head":"{head}"}}"#
            )
        };
        let parse = |text: String| Manifest::parse(Id::ZERO, text.as_bytes());
        assert_eq!(
            parse(with("AAECAwQFBgcICQ==")).unwrap().head,
            (0..10).collect::<Vec<u8>>()
        );
        // 11 bytes of head in a 10-byte file.
        assert!(parse(with("AAECAwQFBgcICQo=")).is_err());
        assert!(parse(with("not base64!")).is_err());
        // Longer than any head, refused before decoding.
        assert!(parse(with(&"A".repeat(HEAD_MAX * 2))).is_err());
    }

    #[test]
    fn lies_are_refused() {
        let key = Id::ZERO;
        let cases = [
            r#"{"dhtfs":"manifest","v":1,"size":10,"chunk_size":4096,"chunks":[["#.to_string()
                + &format!("\"{}\",4]]}}", Id::ZERO),
            format!(
                r#"{{"dhtfs":"manifest","v":1,"size":8192,"chunk_size":4096,"chunks":[["{}",8192]]}}"#,
                Id::ZERO
            ),
            r#"{"dhtfs":"manifest","v":2,"size":0,"chunk_size":4096,"chunks":[]}"#.to_string(),
            r#"{"dhtfs":"other","v":1,"size":0,"chunk_size":4096,"chunks":[]}"#.to_string(),
            r#"{"dhtfs":"manifest","v":1,"size":0,"chunk_size":0,"chunks":[]}"#.to_string(),
            r#"{"dhtfs":"manifest","v":1,"size":0,"chunk_size":4096,"parts":[]}"#.to_string(),
            r#"{"dhtfs":"manifest","v":1,"size":0,"chunk_size":4096}"#.to_string(),
            format!(
                r#"{{"dhtfs":"manifest","v":1,"size":18446744073709551615,"chunk_size":4096,"chunks":[["{0}",18446744073709551615],["{0}",1]]}}"#,
                Id::ZERO
            ),
            "not json".to_string(),
        ];
        for case in cases {
            assert!(Manifest::parse(key, case.as_bytes()).is_err(), "{case}");
        }
    }

    #[test]
    fn hash_file_round_trips_in_the_original_format() {
        let c = chunks(3, 1 << 20);
        let text = format_hashfile(&c);
        assert!(text.ends_with('|'));
        assert_eq!(text.matches('$').count(), 3);
        assert_eq!(parse_hashfile(&text).unwrap(), c);
        assert!(parse_hashfile("abc$1|").is_err());
        assert_eq!(parse_hashfile("").unwrap(), vec![]);
    }

    fn leaf(size: u64, sizes: &[u64]) -> String {
        let entries: Vec<String> = sizes
            .iter()
            .enumerate()
            .map(|(i, s)| format!("[\"{}\",{s}]", Id::of_block(&i.to_le_bytes())))
            .collect();
        format!(
            r#"{{"dhtfs":"manifest","v":1,"size":{size},"chunk_size":4096,"chunks":[{}]}}"#,
            entries.join(",")
        )
    }

    #[test]
    fn the_chunk_count_must_match_size_and_chunk_size() {
        let parse = |text: String| Manifest::parse(Id::ZERO, text.as_bytes());
        assert!(parse(leaf(10_000, &[4096, 4096, 1808])).is_ok());
        assert!(parse(leaf(0, &[])).is_ok(), "an empty file has no chunks");
        // The same bytes in more, smaller chunks: the sizes add up, the count does not.
        let err = parse(leaf(10_000, &[4096, 2048, 2048, 1808])).unwrap_err();
        assert!(err.to_string().contains("4 chunks"), "{err}");
        // Empty chunks padding the list.
        assert!(parse(leaf(4096, &[4096, 0, 0])).is_err());
        // A chunk size below put's smallest.
        let tiny = format!(
            r#"{{"dhtfs":"manifest","v":1,"size":1,"chunk_size":1,"chunks":[["{}",1]]}}"#,
            Id::ZERO
        );
        assert!(parse(tiny).is_err());
    }

    #[test]
    fn tree_parts_but_the_last_cover_whole_chunks() {
        let part = |n: u8| Id::of_block(&[n]);
        let parts = |covers: &[u64]| {
            let entries: Vec<String> = covers
                .iter()
                .enumerate()
                .map(|(i, c)| format!("[\"{}\",{c}]", part(i as u8)))
                .collect();
            let size: u64 = covers.iter().sum();
            format!(
                r#"{{"dhtfs":"manifest","v":1,"size":{size},"chunk_size":4096,"parts":[{}]}}"#,
                entries.join(",")
            )
        };
        assert!(Manifest::parse(Id::ZERO, parts(&[8192, 8192, 100]).as_bytes()).is_ok());
        assert!(Manifest::parse(Id::ZERO, parts(&[8192, 100, 8192]).as_bytes()).is_err());
    }
}
