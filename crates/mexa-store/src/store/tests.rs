//! The store's unit tests; the hostile-store table is in `hostile.rs`.
mod basics {
    use super::super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::collections::BTreeMap;
    use std::sync::Arc;

    fn table(n: i64) -> (SchemaRef, Vec<RecordBatch>) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("text", DataType::Utf8, false),
        ]));
        let ids = Int64Array::from((0..n).collect::<Vec<_>>());
        let texts = StringArray::from((0..n).map(|i| format!("row {i}")).collect::<Vec<_>>());
        let b = RecordBatch::try_new(schema.clone(), vec![Arc::new(ids), Arc::new(texts)]).unwrap();
        (schema, vec![b])
    }

    fn spec(p: i64) -> KeySpec {
        KeySpec { stage: "t".into(), version: 1, params: serde_json::json!({"p": p}), inputs: BTreeMap::new() }
    }

    #[test]
    fn write_read_verify_roundtrip() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let (schema, batches) = table(10);
        let m = s.write(spec(1), "t", schema, &batches, 0.0, Value::Null).unwrap();
        assert!(s.contains(&m.key));
        assert_eq!(m.rows, 10);
        let (_, back) = s.read(&m.key).unwrap();
        assert_eq!(back[0], batches[0]);
        assert_eq!(s.verify().unwrap().corrupt.len(), 0);
        assert_eq!(s.resolve_prefix(&m.key[..6]).unwrap(), m.key);
    }

    #[test]
    fn equal_tables_give_equal_bytes() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (sa, sb) = (Store::open(a.path()).unwrap(), Store::open(b.path()).unwrap());
        let (schema, batches) = table(100);
        let ma = sa.write(spec(1), "x", schema.clone(), &batches, 1.0, Value::Null).unwrap();
        let mb = sb.write(spec(1), "y", schema, &batches, 2.0, Value::Null).unwrap();
        assert_eq!(ma.key, mb.key);
        assert_eq!(fs::read(sa.data_path(&ma.key)).unwrap(), fs::read(sb.data_path(&mb.key)).unwrap());
    }

    #[test]
    fn verify_quarantines_a_flipped_byte_and_import_rejects_it() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let (schema, batches) = table(50);
        let good = s.write(spec(1), "t", schema.clone(), &batches, 0.0, Value::Null).unwrap();
        let bad = s.write(spec(2), "t", schema, &batches, 0.0, Value::Null).unwrap();
        let p = s.data_path(&bad.key);
        let mut bytes = fs::read(&p).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        fs::write(&p, bytes).unwrap();

        let other_dir = tempfile::tempdir().unwrap();
        let other = Store::open(other_dir.path()).unwrap();
        let (copied, present, rejected) = other.import_from(&s).unwrap();
        assert_eq!((copied, present), (1, 0));
        assert_eq!(rejected.len(), 1);
        assert_eq!(rejected[0].0, bad.key);
        assert!(other.contains(&good.key) && !other.contains(&bad.key));

        let r = s.verify().unwrap();
        assert_eq!(r.checked, 2);
        assert_eq!(r.corrupt.len(), 1);
        assert_eq!(r.corrupt[0].0, bad.key);
        assert!(!s.contains(&bad.key) && s.contains(&good.key));
        assert!(r.corrupt[0].2.join("QUARANTINED.txt").is_file());
    }

    #[test]
    fn lock_is_exclusive_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let k = key_of(&spec(7));
        let l = s.lock(&k, || panic!("free lock reported busy")).unwrap();
        let s2 = s.clone();
        let waited = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let w2 = waited.clone();
        let t = std::thread::spawn(move || {
            let _l = s2.lock(&k, || w2.store(true, std::sync::atomic::Ordering::SeqCst)).unwrap();
        });
        std::thread::sleep(Duration::from_millis(200));
        drop(l);
        t.join().unwrap();
        assert!(waited.load(std::sync::atomic::Ordering::SeqCst));
    }
}

mod hardening {
    use super::super::*;
    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};
    use std::collections::{BTreeMap, BTreeSet};
    use std::os::unix::fs::symlink;
    use std::sync::Arc;

    fn write(s: &Store, p: i64, meta: Value) -> Manifest {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let b = RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(vec![p, p + 1]))]).unwrap();
        let spec =
            KeySpec { stage: "t".into(), version: 1, params: serde_json::json!({"p": p}), inputs: BTreeMap::new() };
        s.write(spec, "t", schema, &[b], 0.0, meta).unwrap()
    }

    #[test]
    fn a_flipped_data_byte_is_never_served() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path()).unwrap();
        let m = write(&s, 1, Value::Null);
        let p = s.data_path(&m.key);
        let mut bytes = fs::read(&p).unwrap();
        let k = bytes.len() / 2;
        bytes[k] ^= 1;
        fs::write(&p, bytes).unwrap();
        let e = format!("{:#}", s.read(&m.key).unwrap_err());
        assert!(e.contains(m.key.as_str()) && e.contains("corrupt") && e.contains("mexa verify"), "{e}");
    }

    #[test]
    fn an_edited_manifest_is_caught_by_read_and_verify() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path()).unwrap();
        let m = write(&s, 1, serde_json::json!({"pivot": "eng"}));
        let p = s.object_dir(&m.key).join("manifest.json");
        let text = fs::read_to_string(&p).unwrap().replace("\"eng\"", "\"fra\"");
        fs::write(&p, text).unwrap();
        assert!(format!("{:#}", s.read(&m.key).unwrap_err()).contains("manifest was changed"));
        let r = s.verify().unwrap();
        assert_eq!(r.corrupt.len(), 1, "{r:?}");
        assert!(r.corrupt[0].1.contains("seal"));
    }

    #[test]
    fn strays_under_objects_are_skipped_and_reported() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path()).unwrap();
        let m = write(&s, 1, Value::Null);
        fs::write(d.path().join("objects/README"), "x").unwrap();
        fs::create_dir_all(d.path().join("objects/zz/not-a-key")).unwrap();
        fs::create_dir_all(d.path().join("objects/ab/ümlaut")).unwrap();
        assert_eq!(s.keys().unwrap(), vec![m.key.clone()]);
        let r = s.verify().unwrap();
        assert_eq!((r.checked, r.corrupt.len(), r.strays.len()), (1, 0, 3), "{r:?}");
    }

    #[test]
    fn quarantine_never_writes_through_a_planted_symlink() {
        let d = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().join("victim.txt");
        fs::write(&target, "precious").unwrap();
        let s = Store::open(d.path()).unwrap();
        let m = write(&s, 1, Value::Null);
        symlink(&target, s.object_dir(&m.key).join("QUARANTINED.txt")).unwrap();
        fs::write(s.data_path(&m.key), "garbage").unwrap();
        let r = s.verify().unwrap();
        assert_eq!(r.corrupt.len(), 1);
        assert_eq!(fs::read_to_string(&target).unwrap(), "precious");
        assert!(fs::symlink_metadata(r.corrupt[0].2.join("QUARANTINED.txt")).unwrap().file_type().is_file());
    }

    #[test]
    fn import_rejects_symlinked_files_of_a_shared_store() {
        let (a, b, outside) =
            (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (sa, sb) = (Store::open(a.path()).unwrap(), Store::open(b.path()).unwrap());
        let m = write(&sa, 1, Value::Null);
        // The data file replaced by a link to a file elsewhere with the same bytes.
        let secret = outside.path().join("data.parquet");
        fs::rename(sa.data_path(&m.key), &secret).unwrap();
        symlink(&secret, sa.data_path(&m.key)).unwrap();
        let (copied, _, rejected) = sb.import_from(&sa).unwrap();
        assert_eq!((copied, rejected.len()), (0, 1), "{rejected:?}");
        assert!(!sb.contains(&m.key));
    }

    #[test]
    fn gc_spares_what_a_live_run_wrote_and_locked_keys() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path()).unwrap();
        let old = write(&s, 1, Value::Null);
        // Backdate the old artifact's creation so it predates the run.
        let p = s.object_dir(&old.key).join("manifest.json");
        let mut m: Manifest = serde_json::from_slice(&fs::read(&p).unwrap()).unwrap();
        m.created_unix -= 100;
        m.seal = m.seal_of();
        fs::remove_file(&p).unwrap();
        super::super::write_json(&p, &m).unwrap();
        let run = s.register_run().unwrap();
        let fresh = write(&s, 2, Value::Null);
        let r = s.gc(&BTreeSet::new(), true).unwrap();
        assert_eq!(r.unreachable.iter().map(|i| i.key.clone()).collect::<Vec<_>>(), vec![old.key.clone()]);
        assert_eq!(r.in_use.len(), 1);
        assert!(s.contains(&fresh.key) && !s.contains(&old.key));
        drop(run);
        // A locked key is spared too.
        let _l = s.lock(&fresh.key, || {}).unwrap();
        let r = s.gc(&BTreeSet::new(), false).unwrap();
        assert_eq!((r.unreachable.len(), r.in_use.len()), (0, 1));
    }

    #[test]
    fn a_node_with_a_missing_shard_is_incomplete() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path()).unwrap();
        let (node, shards) = super::super::hostile::sharded(&s, 2, &["fra"]);
        let shard = shards[0].clone();
        assert!(s.complete(&node.key));
        s.remove(&shard.key).unwrap();
        assert!(s.contains(&node.key) && !s.complete(&node.key));
        let r = s.verify().unwrap();
        assert_eq!(r.incomplete, vec![(node.key.clone(), shard.key.clone())]);
    }
}

mod links {
    use super::super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinked_store_folders_are_refused() {
        let (d, outside) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        fs::create_dir_all(d.path().join("s")).unwrap();
        symlink(outside.path(), d.path().join("s/locks")).unwrap();
        let e = format!("{:#}", Store::open(d.path().join("s")).unwrap_err());
        assert!(e.contains("symbolic link"), "{e}");
        // A symlinked objects/<prefix> folder: publishing there is refused.
        let s = Store::open(d.path().join("t")).unwrap();
        let spec = KeySpec { stage: "t".into(), version: 1, params: serde_json::json!({}), inputs: Default::default() };
        let key = key_of(&spec);
        symlink(outside.path(), s.root().join("objects").join(&key[..2])).unwrap();
        let schema = std::sync::Arc::new(arrow::datatypes::Schema::empty());
        assert!(s.write(spec, "t", schema, &[], 0.0, Value::Null).is_err());
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0, "nothing written outside the store");
    }
}
