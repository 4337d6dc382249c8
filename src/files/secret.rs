//! The convergence secret's file: 64 hex digits, made on first use with mode
//! 0600 in `$XDG_CONFIG_HOME/dhtfs/convergence-secret` (by default
//! `~/.config/dhtfs/convergence-secret`), or wherever `--secret-file` says.
//! Only `put` reads it: a capability opens its file without it.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::seal::Secret;

/// The file's name under the config dir.
pub const FILE_NAME: &str = "convergence-secret";

/// Why the secret cannot be had; each names the fix.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("no place for the convergence secret: neither XDG_CONFIG_HOME nor HOME is set; set one, or pass --secret-file FILE")]
    NoHome,
    #[error("cannot make the convergence secret {path}: {source}; pass --secret-file FILE to keep it elsewhere")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read the convergence secret {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a convergence secret (it must hold 64 hex digits): restore it from a backup, or move it away to have a new one made (files put under the old one will no longer deduplicate with new puts)")]
    Malformed { path: PathBuf },
    #[error("{path} can be read by other users (mode {mode:o}): run `chmod 600 {path}`")]
    Exposed { path: PathBuf, mode: u32 },
}

/// Where the secret lives unless `--secret-file` says otherwise.
pub fn default_path() -> Result<PathBuf, SecretError> {
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".config"))
        })
        .ok_or(SecretError::NoHome)?;
    Ok(config.join("dhtfs").join(FILE_NAME))
}

/// The secret in `path` (the default place when `None`), made there first
/// if the file does not exist. Returns it, its path, and whether it is new.
pub fn load_or_create(path: Option<&Path>) -> Result<(Secret, PathBuf, bool), SecretError> {
    let path = match path {
        Some(p) => p.to_path_buf(),
        None => default_path()?,
    };
    match std::fs::metadata(&path) {
        Ok(meta) => {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(SecretError::Exposed { path, mode });
            }
            let text =
                zeroize::Zeroizing::new(std::fs::read_to_string(&path).map_err(|source| {
                    SecretError::Read {
                        path: path.clone(),
                        source,
                    }
                })?);
            let secret =
                parse(&text).ok_or_else(|| SecretError::Malformed { path: path.clone() })?;
            Ok((secret, path, false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let secret = create(&path)?;
            Ok((secret, path, true))
        }
        Err(source) => Err(SecretError::Read { path, source }),
    }
}

fn parse(text: &str) -> Option<Secret> {
    let bytes = zeroize::Zeroizing::new(hex::decode(text.trim()).ok()?);
    let key: [u8; 32] = bytes.as_slice().try_into().ok()?;
    Some(Secret(key))
}

/// Makes a new secret at `path`: its directory with mode 0700, the file
/// with 0600, created exclusively (a concurrent put that made it first wins,
/// and its secret is read back), written and synced before use.
fn create(path: &Path) -> Result<Secret, SecretError> {
    let failed = |source| SecretError::Create {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(failed)?;
    }
    let secret = Secret::random();
    let mut file = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return load_or_create(Some(path)).map(|(s, _, _)| s);
        }
        Err(e) => return Err(failed(e)),
    };
    file.write_all(format!("{}\n", hex::encode(secret.0)).as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(failed)?;
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_made_once_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join(FILE_NAME);
        let (made, p, new) = load_or_create(Some(&path)).unwrap();
        assert!(new);
        assert_eq!(p, path);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (again, _, new) = load_or_create(Some(&path)).unwrap();
        assert!(!new);
        assert_eq!(made, again);
    }

    #[test]
    fn a_readable_or_malformed_secret_is_refused_with_its_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        std::fs::write(&path, "00".repeat(32)).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_or_create(Some(&path)).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&path, "not hex").unwrap();
        let err = load_or_create(Some(&path)).unwrap_err().to_string();
        assert!(err.contains("64 hex digits"), "{err}");
    }
}
