//! The shared vocabulary of mexa's crates, below all of them and depending on nothing but
//! serde: the artifact [`Key`], the one checked file opener ([`file`]), the one checked way to
//! create what mexa writes ([`write`]), bounded quoting of untrusted text ([`text`]) and who a
//! language label is ([`language`]: name, script, family). A value of these types is valid by
//! construction, so a string read from disk (a manifest, a shard index, a node spec, a command
//! line) is parsed once at the boundary and nothing past it re-checks or slices strings.
pub mod file;
mod key;
pub mod language;
pub mod text;
pub mod write;

pub use file::FileKind;
pub use key::{Key, KeyError};
