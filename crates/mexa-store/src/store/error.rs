//! The ways reading an artifact fails that a caller must tell apart.
use mexa_core::Key;
use std::fmt;
use std::path::PathBuf;

/// Why an artifact cannot be served. Callers match on it (a missing input is recomputed, a
/// corrupt one is quarantined by `verify`); its text is what a person reads.
#[derive(Debug)]
pub enum StoreError {
    /// No artifact with this key is in the store.
    Missing { key: Key, store: PathBuf },
    /// The artifact is there but is not what its key promises: it is never served.
    Corrupt { key: Key, label: Option<String>, why: String },
    /// The file system refused (permissions, a full disk, ...).
    Io { key: Key, path: PathBuf, error: std::io::Error },
}

impl StoreError {
    pub fn key(&self) -> &Key {
        match self {
            StoreError::Missing { key, .. } | StoreError::Corrupt { key, .. } | StoreError::Io { key, .. } => key,
        }
    }

    pub fn is_missing(&self) -> bool {
        matches!(self, StoreError::Missing { .. })
    }

    pub fn is_corrupt(&self) -> bool {
        matches!(self, StoreError::Corrupt { .. })
    }

    pub(crate) fn corrupt(key: &Key, label: Option<&str>, why: impl Into<String>) -> Self {
        StoreError::Corrupt { key: key.clone(), label: label.map(str::to_string), why: why.into() }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Missing { key, store } => write!(f, "artifact {key} is not in the store {}", store.display()),
            StoreError::Corrupt { key, label, why } => {
                write!(f, "artifact {key}")?;
                if let Some(l) = label {
                    write!(f, " ({l})")?;
                }
                write!(f, " is corrupt: {why}; it is not served: run `mexa verify` to quarantine it (the next run recomputes it)")
            }
            StoreError::Io { key, path, error } => write!(f, "artifact {key}: {}: {error}", path.display()),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Io { error, .. } => Some(error),
            _ => None,
        }
    }
}
