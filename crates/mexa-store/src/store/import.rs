//! Merging another store into this one, every artifact checked on the way in.
use super::{write_new, Manifest, Store};
use crate::filehash::hash_file;
use anyhow::Result;
use mexa_core::file::{self, FileKind};
use mexa_core::Key;
use std::fs;

impl Store {
    /// Copies every artifact of `other` missing here, checking each on the way in: its
    /// manifest is the artifact's (key, spec, seal) and its data hashes as the manifest says;
    /// a link is never followed. Returns (copied, already present, rejected with reasons);
    /// an object folder whose manifest is missing or not a regular file (a FIFO, a link) is
    /// rejected with what it is, never skipped unseen.
    pub fn import_from(&self, other: &Store) -> Result<(usize, usize, Vec<(Key, String)>)> {
        let (mut copied, mut present, mut rejected) = (0, 0, Vec::new());
        let (mut keys, _) = other.object_dirs(&other.root.join("objects"))?;
        keys.sort();
        for key in keys {
            if !other.contains(&key) {
                let why = match file::open(&other.manifest_path(&key), FileKind::StoreMeta) {
                    Err(e) => e.to_string(),
                    Ok(_) => "manifest.json changed while being looked at".to_string(),
                };
                rejected.push((key, why));
                continue;
            }
            if let Ok(ours) = self.manifest(&key) {
                if let Ok(theirs) = other.manifest(&key) {
                    if ours.file_hash != theirs.file_hash {
                        tracing::warn!(
                            "{key}: both stores have it with different bytes (a non-deterministic stage?); keeping ours"
                        );
                    }
                }
                present += 1;
                continue;
            }
            if let Err(why) = other.check(&key) {
                rejected.push((key, why));
                continue;
            }
            let tmp = self.temp_dir(key.as_str())?;
            let mut symlinked = None;
            for f in ["data.parquet", "manifest.json"] {
                let src = other.object_dir(&key).join(f);
                let kind = if f == "manifest.json" { FileKind::StoreMeta } else { FileKind::StoreData };
                // A symlink in a shared store could point anywhere: never copy its target.
                match file::read(&src, kind) {
                    Ok(bytes) => write_new(&tmp.join(f), &bytes)?,
                    Err(e) => symlinked = Some(e.to_string()),
                }
            }
            if let Some(why) = symlinked {
                fs::remove_dir_all(&tmp).ok();
                rejected.push((key, why));
                continue;
            }
            let m: Option<Manifest> = file::read(&tmp.join("manifest.json"), FileKind::StoreMeta)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            let sound = m.is_some_and(|m| {
                m.mismatch(&key).is_none() && hash_file(&tmp.join("data.parquet")).ok() == Some(m.file_hash)
            });
            if !sound {
                fs::remove_dir_all(&tmp).ok();
                rejected.push((key, "changed while being copied".into()));
                continue;
            }
            self.publish(&tmp, &key)?;
            copied += 1;
        }
        Ok((copied, present, rejected))
    }
}
