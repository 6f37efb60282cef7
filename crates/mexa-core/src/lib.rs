//! The shared vocabulary of mexa's crates, below all of them and depending on nothing but
//! serde: the artifact [`Key`] and the one checked file opener ([`file`]). A value of these
//! types is valid by construction, so a string read from disk (a manifest, a shard index, a
//! node spec, a command line) is parsed once at the boundary and nothing past it re-checks or
//! slices strings.
pub mod file;
mod key;

pub use file::FileKind;
pub use key::{Key, KeyError};
