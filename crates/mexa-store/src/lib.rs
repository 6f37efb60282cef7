//! Content-addressed artifact store.
//!
//! mexa-store owns everything on disk under a store directory (`artifacts/` by default):
//! how artifact keys are computed ([`key`]), how an artifact is laid out and written
//! atomically ([`Store::write`]), per-key locks that a crashed holder cannot leave stuck
//! ([`Store::lock`]), integrity checks and quarantine ([`Store::verify`]), merging stores
//! ([`Store::import_from`]), garbage collection and the hash cache for external files,
//! and the identity of models ([`models`]: loader files, the Hugging Face cache; [`download`]:
//! fetching them by Hugging Face id).
//!
//! Layout of a store (nothing in it records where the store itself lives, so a store can be
//! copied with `cp -r`/rsync and used unchanged):
//!
//! ```text
//! objects/ab/<key>/manifest.json   what produced the artifact (see [`Manifest`])
//! objects/ab/<key>/data.parquet    the table, uncompressed Parquet
//! refs/<node-id>.json              last key seen for a named pipeline node (plan reasons)
//! locks/<key>.lock                 flock(2) per key while a runner computes it
//! runs/<pid>.<start>.<n>.run        flock(2) per live runner: its start and the keys it pinned
//! runs/gc.lock                     held shared while a runner plans and pins, exclusively by gc
//! quarantine/<key>.<time>/         artifacts `verify` found corrupt
//! tmp/                             partial writes; an object dir appears only by rename
//! cache/file-hashes.json           content hashes of external files by path+size+mtime+ctime+inode
//! slurm/<time>-<pid>.<random>/     a Slurm run's job script, node specs, job lists and logs
//! ```
//!
//! Each top-level folder is made and checked in one place ([`Store::folder`]): one that is a
//! link is refused, so nothing mexa writes, moves or deletes leaves the store.
//!
//! Invariant: a directory under `objects/` is complete. It is created by renaming a fully
//! written temporary directory, whose manifest records the blake3 of its data file.

pub mod download;
mod filehash;
mod gc;
mod key;
pub mod models;
mod store;
mod table;

pub use filehash::FileHasher;
pub use gc::{GcReport, LiveRuns, RunGuard};
pub use key::{canonical_json, key_of, KeySpec};
pub use mexa_core::Key;
pub use store::{
    mark_sharded, shard_spec, Cost, Folder, KeyLock, Manifest, ObjectInfo, Provenance, Read, Refs, State, Store,
    StoreError, VerifyReport, FORMAT_VERSION,
};
pub use table::{
    check_finite, compare_tables, format_rows, format_rows_fit, read_parquet, read_parquet_bytes, terminal_width,
    text_rows, to_csv, to_json_rows, write_parquet, write_parquet_to, TableSummary,
};
