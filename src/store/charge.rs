//! What a block costs on disk, as the quota and the free-space floor count it:
//! its bytes plus the bookkeeping that holding it takes.

/// Bytes charged per block on top of its data, for its bookkeeping: the index
/// record (a 32-byte key and an 18- or 30-byte entry), a small block's 40-byte
/// record header in its segment (or its key again in `inline`), sled's per-entry headers in its log and its node pages
/// (a few tens of bytes each), and for a file block its directory entry (a
/// 64-character name in `blocks/ab/cd/`, ~80 bytes in an ext4 directory block).
/// That adds up to about 200 bytes; 256 rounds it up so a flood of empty
/// blocks, which cost nothing in data, still costs its sender quota.
pub(crate) const BLOCK_OVERHEAD: u64 = 256;

/// File system allocation unit a block file is rounded up to. 4 KiB is the
/// block size of ext4, xfs and btrfs by default: a 65 KiB file takes 68 KiB
/// of disk, a 100-byte one (inline_max set to 0) a whole 4 KiB.
pub(crate) const FS_BLOCK: u64 = 4096;

/// Bytes charged for a block of `size` bytes stored small (in a segment or
/// sled) or as a file.
pub(crate) fn charge(size: u64, inline: bool) -> u64 {
    let data = if inline {
        size
    } else {
        size.div_ceil(FS_BLOCK).saturating_mul(FS_BLOCK)
    };
    data.saturating_add(BLOCK_OVERHEAD)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_round_up_to_the_fs_block_and_every_block_pays_its_entry() {
        assert_eq!(charge(0, true), BLOCK_OVERHEAD);
        assert_eq!(charge(100, true), 100 + BLOCK_OVERHEAD);
        assert_eq!(charge(1, false), 4096 + BLOCK_OVERHEAD);
        assert_eq!(charge(4096, false), 4096 + BLOCK_OVERHEAD);
        assert_eq!(charge(100_000, false), 102_400 + BLOCK_OVERHEAD);
        assert_eq!(charge(u64::MAX, false), u64::MAX, "saturates");
    }
}
