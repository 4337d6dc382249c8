//! What names a file: a plain root key, or a sealed file's capability.

use std::fmt;
use std::str::FromStr;

use crate::id::Id;
use crate::seal::{Capability, CAP_PREFIX};

/// A file's name as a user gives it: `dhtfs put --plain` prints a root key
/// (64 hex digits), a default put a capability (`dhtfs1_<root>_<key>`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileRef {
    Plain(Id),
    Sealed(Capability),
}

impl FileRef {
    /// The root manifest's block id.
    pub fn root(&self) -> Id {
        match self {
            FileRef::Plain(id) => *id,
            FileRef::Sealed(cap) => cap.root,
        }
    }

    pub fn is_sealed(&self) -> bool {
        matches!(self, FileRef::Sealed(_))
    }

    /// "sealed" or "plain", as metrics and logs name it.
    pub fn kind(&self) -> &'static str {
        if self.is_sealed() {
            "sealed"
        } else {
            "plain"
        }
    }
}

/// Why a string names no file; its message says what a good one looks like.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{shown}' is neither a root key nor a capability: {why} (give the last line `dhtfs put` printed, whole)")]
pub struct BadFileRef {
    /// The start of what was given (a capability's key is never echoed whole).
    pub shown: String,
    pub why: String,
}

impl FromStr for FileRef {
    type Err = BadFileRef;

    fn from_str(text: &str) -> Result<FileRef, BadFileRef> {
        let text = text.trim();
        let bad = |why: String| BadFileRef {
            shown: text.chars().take(CAP_PREFIX.len() + 16).collect::<String>()
                + if text.chars().count() > CAP_PREFIX.len() + 16 {
                    "..."
                } else {
                    ""
                },
            why,
        };
        if text.starts_with(CAP_PREFIX) {
            return text
                .parse::<Capability>()
                .map(FileRef::Sealed)
                .map_err(|e| bad(format!("as a capability, {e}")));
        }
        Id::from_hex(text)
            .map(FileRef::Plain)
            .map_err(|e| bad(format!("as a root key, {e}")))
    }
}

impl From<Id> for FileRef {
    fn from(id: Id) -> FileRef {
        FileRef::Plain(id)
    }
}

impl From<Capability> for FileRef {
    fn from(cap: Capability) -> FileRef {
        FileRef::Sealed(cap)
    }
}

impl fmt::Display for FileRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileRef::Plain(id) => write!(f, "{id}"),
            FileRef::Sealed(cap) => write!(f, "{cap}"),
        }
    }
}

impl fmt::Debug for FileRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileRef::Plain(id) => write!(f, "Plain({})", id.short()),
            FileRef::Sealed(cap) => write!(f, "{cap:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seal::SealKey;

    #[test]
    fn roots_and_capabilities_parse_and_bad_ones_never_echo_a_key() {
        let root = Id::of_block(b"r");
        assert_eq!(root.to_hex().parse::<FileRef>(), Ok(FileRef::Plain(root)));
        let cap = Capability {
            root,
            key: SealKey([0x5a; 32]),
        };
        let text = cap.to_string();
        assert_eq!(text.parse::<FileRef>(), Ok(FileRef::Sealed(cap)));
        let cut = &text[..text.len() - 3];
        let err = cut.parse::<FileRef>().unwrap_err().to_string();
        assert!(
            err.contains("as a capability") && err.contains("put"),
            "{err}"
        );
        assert!(!err.contains("5a5a5a5a"), "{err}");
        let err = "abc".parse::<FileRef>().unwrap_err().to_string();
        assert!(err.contains("as a root key"), "{err}");
    }
}
