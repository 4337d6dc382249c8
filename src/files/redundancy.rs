//! How a put keeps a file alive: whole chunks on R nodes, or each chunk
//! erasure-coded k-of-n. By default a put codes the file when the file and
//! the network are both large enough for coding to pay, and replicates
//! otherwise. Pure: the put supplies the file's size and the nodes its one
//! wide lookup met.

use crate::erasure::Code;

/// What the caller asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Redundancy {
    /// Whole chunks, each on the put's `replicas` nodes (`--replicas R`).
    Replicas,
    /// Every chunk coded under this code (`--ec K/N`).
    Coded(Code),
    /// Coded under this code when [`choose`] finds it pays, else replicas
    /// (no flag).
    Auto(Code),
}

/// Shards smaller than this are not worth their requests: each shard is a
/// lookup and a store of its own, and a stripe's copies weigh about 4 KiB
/// each. A file under `k` times this is replicated.
pub const MIN_SHARD_BYTES: u64 = 4096;

/// What a put does, and for an automatic choice of replicas, why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Chosen {
    Replicas { why: Option<Why> },
    Coded(Code),
}

/// Why [`Redundancy::Auto`] replicated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Why {
    /// The file is under [`min_coded_size`] bytes: expected, not worth a word.
    SmallFile { min: u64, code: Code },
    /// A lookup met fewer nodes than a chunk has shards: worth telling, since
    /// the user may have expected coding.
    FewNodes { seen: usize, code: Code },
}

impl std::fmt::Display for Why {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Why::SmallFile { min, code } => write!(
                f,
                "the file is under {} KiB, too small to erasure-code {code} (shards under {} KiB)",
                min >> 10,
                MIN_SHARD_BYTES >> 10
            ),
            Why::FewNodes { seen, code } => write!(
                f,
                "the network showed {seen} nodes, fewer than the {} that {code} spreads each chunk over",
                code.n()
            ),
        }
    }
}

/// Whether [`Redundancy::Auto`] needs to count nodes for a file of
/// `file_size` bytes: a file too small to code is replicated without asking.
pub fn needs_count(asked: Redundancy, file_size: u64) -> Option<Code> {
    match asked {
        Redundancy::Auto(code) if file_size >= min_coded_size(code) => Some(code),
        _ => None,
    }
}

/// The smallest file [`Redundancy::Auto`] codes under `code`.
pub fn min_coded_size(code: Code) -> u64 {
    code.k() as u64 * MIN_SHARD_BYTES
}

/// The put's choice for a file of `file_size` bytes, where a lookup for
/// `code.n()` nodes met `nodes_seen` live ones (`None`: not counted). With
/// fewer nodes than shards, several shards of a chunk land on one node and
/// a few node losses cost more shards than the code spares, where 7
/// replicas on those nodes survive them: replicate.
pub fn choose(asked: Redundancy, file_size: u64, nodes_seen: Option<usize>) -> Chosen {
    let code = match asked {
        Redundancy::Replicas => return Chosen::Replicas { why: None },
        Redundancy::Coded(code) => return Chosen::Coded(code),
        Redundancy::Auto(code) => code,
    };
    if file_size < min_coded_size(code) {
        return Chosen::Replicas {
            why: Some(Why::SmallFile {
                min: min_coded_size(code),
                code,
            }),
        };
    }
    match nodes_seen {
        Some(seen) if seen >= code.n() => Chosen::Coded(code),
        seen => Chosen::Replicas {
            why: Some(Why::FewNodes {
                seen: seen.unwrap_or(0),
                code,
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CODE: Code = Code::DEFAULT;

    #[test]
    fn explicit_choices_are_kept_whatever_the_size() {
        assert_eq!(
            choose(Redundancy::Replicas, 1 << 30, Some(10_000)),
            Chosen::Replicas { why: None }
        );
        assert_eq!(
            choose(Redundancy::Coded(CODE), 10, Some(3)),
            Chosen::Coded(CODE)
        );
        assert_eq!(needs_count(Redundancy::Replicas, 1 << 30), None);
        assert_eq!(needs_count(Redundancy::Coded(CODE), 1 << 30), None);
    }

    #[test]
    fn auto_codes_a_large_file_on_a_large_network() {
        let big = 256 << 20;
        assert_eq!(needs_count(Redundancy::Auto(CODE), big), Some(CODE));
        assert_eq!(
            choose(Redundancy::Auto(CODE), big, Some(CODE.n())),
            Chosen::Coded(CODE)
        );
        assert_eq!(
            choose(Redundancy::Auto(CODE), big, Some(2_000)),
            Chosen::Coded(CODE)
        );
    }

    #[test]
    fn auto_replicates_on_fewer_nodes_than_shards_and_says_so() {
        let Chosen::Replicas { why: Some(why) } =
            choose(Redundancy::Auto(CODE), 64 << 20, Some(CODE.n() - 1))
        else {
            panic!("a 55-node network must replicate");
        };
        let why = why.to_string();
        assert!(why.contains("55 nodes") && why.contains("56"), "{why}");
        assert!(matches!(
            choose(Redundancy::Auto(CODE), 64 << 20, None),
            Chosen::Replicas { why: Some(_) }
        ));
    }

    #[test]
    fn auto_replicates_a_file_too_small_for_page_sized_shards() {
        let edge = min_coded_size(CODE);
        assert_eq!(edge, 24 * 4096);
        assert_eq!(needs_count(Redundancy::Auto(CODE), edge - 1), None);
        assert!(matches!(
            choose(Redundancy::Auto(CODE), edge - 1, Some(10_000)),
            Chosen::Replicas { why: Some(w @ Why::SmallFile { .. }) } if w.to_string().contains("too small")
        ));
        assert_eq!(
            choose(Redundancy::Auto(CODE), edge, Some(10_000)),
            Chosen::Coded(CODE)
        );
    }
}
