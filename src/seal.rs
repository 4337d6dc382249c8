//! Confidential files, the pure part: convergent keys under a secret, the
//! AEAD that seals a chunk or a manifest, the padding that blurs sizes, and
//! the capability that names a sealed file.
//!
//! The construction (Tahoe-LAFS's CHK with a convergence secret, in the
//! shape ERIS gives it):
//! - a chunk's key is HMAC-SHA256(secret, domain, padded length, plaintext):
//!   the same bytes under the same secret give the same key, hence the same
//!   ciphertext and block: one user's repeated files are stored once, and
//!   without the secret nobody can confirm a guess of the plaintext;
//! - the chunk is padded (zeros, to the size bucket [`padded_len`] gives) and
//!   sealed with ChaCha20-Poly1305 under that key with a fixed all-zero
//!   nonce. That is safe because every key seals exactly one message: the key
//!   is derived from the message itself, so a second, different message under
//!   the same key would need an HMAC-SHA256 collision. (Sealing the same
//!   message twice gives the same ciphertext, which reveals only equality,
//!   the point of convergence.);
//! - the block is `ciphertext || tag` and is stored under its sha256, so
//!   nodes verify and serve it with no key;
//! - a manifest is sealed the same way (padded with JSON whitespace, which
//!   its parser skips) and lists each chunk's key beside its block id;
//! - the capability is the root manifest's block id and key.
//!
//! No I/O: the secret's file lives in `files::secret`.

use std::fmt;
use std::str::FromStr;

use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{ChaCha20Poly1305, KeyInit, Nonce, Tag};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::Sha256;

use crate::id::Id;

/// Bytes the AEAD's tag adds to every sealed block.
pub const TAG_LEN: usize = 16;
/// No sealed block is padded to less than this: tiny files all look alike.
pub const MIN_PADDED: u64 = 4096;
/// How a capability starts; the digit is the construction's version.
pub const CAP_PREFIX: &str = "dhtfs1_";
/// The secret every user of `--shared-secret` has: it deduplicates across
/// users, and lets anyone confirm a guessed file (see docs/operators).
pub const SHARED_SECRET: Secret = Secret([0; 32]);

const CHUNK_DOMAIN: &[u8] = b"dhtfs seal v1 chunk\0";
const MANIFEST_DOMAIN: &[u8] = b"dhtfs seal v1 manifest\0";

/// The key one block is sealed under. Its Debug never shows it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SealKey(pub [u8; 32]);

/// A user's convergence secret. Its Debug never shows it, and its bytes
/// are wiped when it is dropped (copies of the block keys it derives are
/// not: `SealKey` is `Copy`).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub [u8; 32]);

impl Drop for Secret {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

/// Why sealed bytes do not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("its authentication tag does not match: the key is wrong or the bytes were forged")]
    Tag,
    #[error("it is {0} bytes, too short to hold a tag")]
    Short(usize),
    #[error("it opens to {found} bytes where {want} were due")]
    Length { found: usize, want: usize },
    #[error("its padding is not zeros")]
    Padding,
}

/// Why a string is not a capability.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapError {
    #[error("it does not start with '{CAP_PREFIX}'")]
    Prefix,
    #[error("it is {0} characters, a capability is {len}", len = CAP_PREFIX.len() + 64 + 1 + 64)]
    Length(usize),
    #[error("its {0} is not 64 hex digits")]
    Hex(&'static str),
}

/// A sealed file's name and key: the root manifest's block id and the key it
/// is sealed under. Whoever holds it can read the file; nodes never see it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Capability {
    pub root: Id,
    pub key: SealKey,
}

impl Secret {
    /// A fresh random secret.
    pub fn random() -> Secret {
        Secret(rand::random())
    }

    /// The key that seals `plaintext` as a chunk padded to `padded` bytes.
    pub fn chunk_key(&self, plaintext: &[u8], padded: u64) -> SealKey {
        self.derive(CHUNK_DOMAIN, plaintext, padded)
    }

    /// The key that seals a manifest's `json`, padded to `padded` bytes.
    pub fn manifest_key(&self, json: &[u8], padded: u64) -> SealKey {
        self.derive(MANIFEST_DOMAIN, json, padded)
    }

    fn derive(&self, domain: &[u8], plaintext: &[u8], padded: u64) -> SealKey {
        // HMAC takes a key of any length; 32 bytes cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(domain);
        mac.update(&padded.to_le_bytes());
        mac.update(plaintext);
        SealKey(mac.finalize().into_bytes().into())
    }
}

/// Padmé (Nikitin et al., "Reducing Metadata Leakage from Encrypted Files
/// and Communication with PURBs", 2019): `len` rounded up so that only
/// O(log log len) bits of it show, at most 12% larger.
pub fn padme(len: u64) -> u64 {
    if len < 2 {
        return len;
    }
    let e = 63 - u64::from(len.leading_zeros());
    let s = 64 - u64::from(e.leading_zeros());
    let mask = (1u64 << (e - s)) - 1;
    (len + mask) & !mask
}

/// The size a sealed block's plaintext of `len` bytes is padded to: its
/// Padmé bucket, at least [`MIN_PADDED`], never more than `cap` (a chunk's
/// size: a full chunk is not padded), never less than `len`.
pub fn padded_len(len: u64, cap: u64) -> u64 {
    padme(len).max(MIN_PADDED).min(cap).max(len)
}

/// Seals `plaintext` padded to `padded` bytes with `fill`: `ciphertext || tag`.
fn seal_padded(key: &SealKey, plaintext: &[u8], padded: u64, fill: u8) -> Vec<u8> {
    let padded = (padded as usize).max(plaintext.len());
    let mut buf = Vec::with_capacity(padded + TAG_LEN);
    buf.extend_from_slice(plaintext);
    buf.resize(padded, fill);
    let cipher = ChaCha20Poly1305::new((&key.0).into());
    // Fails only past 256 GiB; a block is at most a few MiB.
    let tag = cipher
        .encrypt_in_place_detached(&Nonce::default(), b"", &mut buf)
        .unwrap_or_else(|_| unreachable!("a block is far below ChaCha20's 256 GiB limit"));
    buf.extend_from_slice(&tag);
    buf
}

/// Opens `sealed` (`ciphertext || tag`) under `key`: the padded plaintext.
pub fn open(key: &SealKey, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
    if sealed.len() < TAG_LEN {
        return Err(SealError::Short(sealed.len()));
    }
    let (body, tag) = sealed.split_at(sealed.len() - TAG_LEN);
    let mut buf = body.to_vec();
    let cipher = ChaCha20Poly1305::new((&key.0).into());
    cipher
        .decrypt_in_place_detached(&Nonce::default(), b"", &mut buf, Tag::from_slice(tag))
        .map_err(|_| SealError::Tag)?;
    Ok(buf)
}

/// A chunk of a sealed file: its key and sealed block, for a file cut in
/// `chunk_size`-byte chunks (a short last chunk is padded to its bucket).
pub fn seal_chunk(secret: &Secret, plaintext: &[u8], chunk_size: u64) -> (SealKey, Vec<u8>) {
    let padded = padded_len(plaintext.len() as u64, chunk_size);
    let key = secret.chunk_key(plaintext, padded);
    (key, seal_padded(&key, plaintext, padded, 0))
}

/// The sealed block of a chunk whose key is known (a put serving it again,
/// a get checking a resumed chunk): the same bytes [`seal_chunk`] gave.
pub fn reseal_chunk(key: &SealKey, plaintext: &[u8], chunk_size: u64) -> Vec<u8> {
    let padded = padded_len(plaintext.len() as u64, chunk_size);
    seal_padded(key, plaintext, padded, 0)
}

/// Opens a sealed chunk of `size` bytes of a file in `chunk_size`-byte
/// chunks: the tag must match, the padding be exactly the bucket's, and zeros.
pub fn open_chunk(
    key: &SealKey,
    sealed: &[u8],
    size: u64,
    chunk_size: u64,
) -> Result<Vec<u8>, SealError> {
    let mut plain = open(key, sealed)?;
    let want = padded_len(size, chunk_size) as usize;
    if plain.len() != want {
        return Err(SealError::Length {
            found: plain.len(),
            want,
        });
    }
    if plain[size as usize..].iter().any(|&b| b != 0) {
        return Err(SealError::Padding);
    }
    plain.truncate(size as usize);
    Ok(plain)
}

/// A sealed manifest: its key and block. `json` is padded with spaces (JSON
/// whitespace) to its bucket, at most `max_plain` bytes.
pub fn seal_manifest(secret: &Secret, json: &[u8], max_plain: u64) -> (SealKey, Vec<u8>) {
    let padded = padded_len(json.len() as u64, max_plain);
    let key = secret.manifest_key(json, padded);
    (key, seal_padded(&key, json, padded, b' '))
}

impl SealKey {
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(s: &str) -> Option<SealKey> {
        let bytes = hex::decode(s).ok()?;
        Some(SealKey(bytes.try_into().ok()?))
    }
}

impl fmt::Debug for SealKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealKey(..)")
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Serialize for SealKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for SealKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<SealKey, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        SealKey::from_hex(&s).ok_or_else(|| serde::de::Error::custom("a key is 64 hex digits"))
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{CAP_PREFIX}{}_{}", self.root, self.key.to_hex())
    }
}

impl fmt::Debug for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Capability({}, ..)", self.root.short())
    }
}

impl FromStr for Capability {
    type Err = CapError;

    fn from_str(s: &str) -> Result<Capability, CapError> {
        let rest = s.strip_prefix(CAP_PREFIX).ok_or(CapError::Prefix)?;
        let (root, key) = rest
            .split_once('_')
            .filter(|(r, k)| r.len() == 64 && k.len() == 64)
            .ok_or(CapError::Length(s.chars().count()))?;
        Ok(Capability {
            root: Id::from_hex(root).map_err(|_| CapError::Hex("root"))?,
            key: SealKey::from_hex(key).ok_or(CapError::Hex("key"))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    /// A known answer computed outside this code (Python's hmac and
    /// hashlib and pyca/cryptography's ChaCha20Poly1305 over the same
    /// construction: HMAC-SHA256 of domain, padded size, plaintext; a zero
    /// nonce, no associated data): a change of format, or of how a crate is
    /// called, fails here rather than silently ending deduplication with
    /// everything stored before.
    #[test]
    fn a_chunk_seals_to_the_known_answer() {
        let text = b"dhtfs known answer: a chunk of 5000 bytes, padded to its bucket.";
        let plain: Vec<u8> = text.iter().copied().cycle().take(5000).collect();
        let (key, sealed) = seal_chunk(&Secret([7; 32]), &plain, 1 << 20);
        assert_eq!(padded_len(5000, 1 << 20), 5120);
        assert_eq!(
            hex::encode(key.0),
            "4d5c11a853772d99a4f71523a1adb23d6ae439bad848d6d3474c81efe5f43014"
        );
        assert_eq!(sealed.len(), 5120 + TAG_LEN);
        assert_eq!(
            hex::encode(&sealed[5120..]),
            "c50c01b6ec041be6d7b0b3fa55fbb95c"
        );
        assert_eq!(
            Id::of_block(&sealed).to_hex(),
            "1ea76194067e128edbf867bc2f25d4647d6149ee898326f11ede5d44a4445d79"
        );
    }

    #[test]
    fn padme_rounds_up_by_at_most_an_eighth_and_keeps_powers_of_two() {
        for len in [
            2u64,
            3,
            100,
            1000,
            4097,
            65_537,
            999_999,
            MIB - 1,
            5 * MIB + 7,
        ] {
            let p = padme(len);
            assert!(p >= len && p <= len + len / 8, "{len} -> {p}");
        }
        for shift in 1..40 {
            assert_eq!(padme(1 << shift), 1 << shift);
        }
        // Sizes in one bucket look alike.
        assert_eq!(padme(1000), padme(1020));
        assert_eq!(padded_len(10, MIB), MIN_PADDED);
        assert_eq!(
            padded_len(MIB - 16, MIB - 16),
            MIB - 16,
            "a full chunk is not padded"
        );
        assert_eq!(
            padded_len(MIB - 100, MIB - 16),
            MIB - 16,
            "never past the chunk size"
        );
        assert_eq!(padded_len(5000, 4080), 5000, "never below the length");
    }

    #[test]
    fn a_chunk_seals_convergently_under_one_secret_and_apart_under_two() {
        let (a, b) = (Secret([1; 32]), Secret([2; 32]));
        let text = b"the same chunk".repeat(100);
        let (ka, sa) = seal_chunk(&a, &text, MIB);
        let (ka2, sa2) = seal_chunk(&a, &text, MIB);
        assert_eq!((ka, &sa), (ka2, &sa2), "one secret, one ciphertext");
        let (kb, sb) = seal_chunk(&b, &text, MIB);
        assert_ne!(ka, kb);
        assert_ne!(sa, sb);
        assert_eq!(sa.len() as u64, MIN_PADDED + TAG_LEN as u64);
        assert_eq!(reseal_chunk(&ka, &text, MIB), sa);
        assert_eq!(open_chunk(&ka, &sa, text.len() as u64, MIB).unwrap(), text);
        // No run of the plaintext shows in the ciphertext.
        assert!(!sa.windows(14).any(|w| w == b"the same chunk"));
    }

    #[test]
    fn a_wrong_key_a_flipped_bit_or_a_lying_size_is_refused() {
        let s = Secret::random();
        let text = vec![7u8; 10_000];
        let (key, sealed) = seal_chunk(&s, &text, MIB);
        assert_eq!(
            open_chunk(&SealKey([9; 32]), &sealed, 10_000, MIB),
            Err(SealError::Tag)
        );
        let mut flipped = sealed.clone();
        flipped[5] ^= 1;
        assert_eq!(open_chunk(&key, &flipped, 10_000, MIB), Err(SealError::Tag));
        let mut bad_tag = sealed.clone();
        *bad_tag.last_mut().unwrap() ^= 0x80;
        assert_eq!(open(&key, &bad_tag), Err(SealError::Tag));
        assert_eq!(open(&key, &sealed[..3]), Err(SealError::Short(3)));
        // A manifest that claims another size for the chunk.
        assert!(matches!(
            open_chunk(&key, &sealed, 9_000, MIB),
            Err(SealError::Length { .. })
        ));
        assert!(matches!(
            open_chunk(&key, &sealed, 10_000, 8192),
            Err(SealError::Length { .. })
        ));
    }

    #[test]
    fn nonzero_padding_is_refused() {
        let key = SealKey([3; 32]);
        let mut padded = b"short".to_vec();
        padded.resize(MIN_PADDED as usize, 1);
        let sealed = seal_padded(&key, &padded, MIN_PADDED, 0);
        assert_eq!(open_chunk(&key, &sealed, 5, MIB), Err(SealError::Padding));
    }

    #[test]
    fn a_manifest_is_padded_with_whitespace_json_skips() {
        let s = Secret::random();
        let json = br#"{"a":1}"#;
        let (key, sealed) = seal_manifest(&s, json, MIB);
        let plain = open(&key, &sealed).unwrap();
        assert_eq!(plain.len() as u64, MIN_PADDED);
        let v: serde_json::Value = serde_json::from_slice(&plain).unwrap();
        assert_eq!(v["a"], 1);
    }

    #[test]
    fn capabilities_round_trip_and_bad_ones_say_why() {
        let cap = Capability {
            root: Id::of_block(b"root"),
            key: SealKey([0xab; 32]),
        };
        let text = cap.to_string();
        assert!(text.starts_with(CAP_PREFIX));
        assert_eq!(text.parse::<Capability>().unwrap(), cap);
        assert_eq!(
            text[..text.len() - 1].parse::<Capability>(),
            Err(CapError::Length(text.len() - 1))
        );
        assert_eq!(
            cap.root.to_hex().parse::<Capability>(),
            Err(CapError::Prefix)
        );
        let bad = format!("{CAP_PREFIX}{}_{}", cap.root, "zz".repeat(32));
        assert_eq!(bad.parse::<Capability>(), Err(CapError::Hex("key")));
        // Debug output never carries a key or a secret.
        assert!(!format!("{cap:?}").contains("abab"));
        assert!(!format!("{:?}", Secret([0xcd; 32])).contains("cd"));
    }

    #[test]
    fn a_dropped_secret_leaves_zeros_behind() {
        let mut held = std::mem::ManuallyDrop::new(Secret([0xab; 32]));
        // SAFETY: dropped once, in place; its plain bytes stay readable.
        unsafe { std::ptr::drop_in_place(&mut *held) };
        assert_eq!(held.0, [0; 32]);
    }
}
