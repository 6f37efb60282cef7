//! The hostile-store table: each case plants what an attack round (or a careless copy) did to
//! a store, then checks that no read serves it, `verify` quarantines it and everything
//! computed from it, `import` rejects it, and planning does not count it as cached.
use super::*;
use crate::KeySpec;
use arrow::array::{Float64Array, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

fn table(v: f64) -> (SchemaRef, Vec<RecordBatch>) {
    let schema = Arc::new(Schema::new(vec![
        Field::new("language", DataType::Utf8, false),
        Field::new("layer", DataType::Int64, false),
        Field::new("mexa", DataType::Float64, true),
    ]));
    let b = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(vec!["fra", "deu"])),
            Arc::new(Int64Array::from(vec![0, 1])),
            Arc::new(Float64Array::from(vec![Some(v), None])),
        ],
    )
    .unwrap();
    (schema, vec![b])
}

fn spec(stage: &str, p: i64, inputs: &[&Key]) -> KeySpec {
    KeySpec {
        stage: stage.into(),
        version: 1,
        params: serde_json::json!({ "p": p }),
        inputs: if inputs.is_empty() {
            BTreeMap::new()
        } else {
            BTreeMap::from([("input".to_string(), inputs.iter().map(|k| (*k).clone()).collect())])
        },
    }
}

/// Writes an artifact that read `inputs` through the store (as a stage does: recording what
/// it read).
fn put(s: &Store, stage: &str, p: i64, inputs: &[&Key], meta: Value) -> Manifest {
    let mut read = BTreeMap::new();
    for k in inputs {
        read.insert((*k).clone(), s.read_checked(k).unwrap().manifest.file_hash);
    }
    let (schema, batches) = table(p as f64 / 10.0);
    s.write_as(
        spec(stage, p, inputs),
        stage,
        schema,
        &batches,
        Provenance { inputs_read: read, ..Provenance::new(0.0, meta) },
    )
    .unwrap()
}

/// A sharded node as the runner writes one: shards keyed by (kind, version, node key, name),
/// then the index table (shard, shard_key) listing them. Returns (node, shards).
pub(super) fn sharded(s: &Store, p: i64, names: &[&str]) -> (Manifest, Vec<Manifest>) {
    let node_spec = spec("embed", p, &[]);
    let node_key = crate::key_of(&node_spec);
    let shards: Vec<Manifest> = names
        .iter()
        .map(|n| {
            let (schema, batches) = table(p as f64 / 10.0);
            s.write(shard_spec("embed", 1, &node_key, n), n, schema, &batches, 0.0, Value::Null).unwrap()
        })
        .collect();
    let schema = Arc::new(Schema::new(vec![
        Field::new("shard", DataType::Utf8, false),
        Field::new("shard_key", DataType::Utf8, false),
    ]));
    let b = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(names.to_vec())),
            Arc::new(StringArray::from(shards.iter().map(|m| m.key.as_str()).collect::<Vec<_>>())),
        ],
    )
    .unwrap();
    let keys: Vec<Key> = shards.iter().map(|m| m.key.clone()).collect();
    let node = s.write(node_spec, "embed", schema, &[b], 0.0, mark_sharded(Value::Null, &keys)).unwrap();
    (node, shards)
}

fn manifest_path(s: &Store, k: &Key) -> PathBuf {
    s.object_dir(k).join("manifest.json")
}

/// Rewrites a manifest as an attacker would: edit, then seal (or blank the seal).
fn tamper(s: &Store, k: &Key, edit: impl FnOnce(&mut Value), seal: bool) {
    let p = manifest_path(s, k);
    let mut v: Value = serde_json::from_slice(&fs::read(&p).unwrap()).unwrap();
    edit(&mut v);
    if seal {
        let m: Manifest = serde_json::from_value(v.clone()).unwrap();
        v["seal"] = Value::from(m.seal_of());
    } else {
        v["seal"] = Value::from("");
    }
    fs::write(&p, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

fn err(r: Result<impl Sized>) -> String {
    match r {
        Ok(_) => panic!("served"),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn an_artifact_copied_into_another_keys_folder_is_never_served_and_takes_its_dependents_along() {
    let d = tempfile::tempdir().unwrap();
    let s = Store::open(d.path()).unwrap();
    let (a, b) = (put(&s, "summary", 1, &[], Value::Null), put(&s, "summary", 2, &[], Value::Null));
    // Computed from b before anything went wrong; then b's folder gets a's files (same schema).
    let c = put(&s, "correlate", 3, &[&b.key], Value::Null);
    let e = put(&s, "report", 4, &[&c.key], Value::Null);
    fs::remove_dir_all(s.object_dir(&b.key)).unwrap();
    copy_dir(&s.object_dir(&a.key), &s.object_dir(&b.key));
    let why = err(s.read(&b.key));
    assert!(why.contains("another key") && why.contains(b.key.as_str()), "{why}");
    assert!(err(s.manifest(&b.key).map_err(anyhow::Error::from)).contains("corrupt"));
    assert!(!s.complete(&b.key), "planning would count it as cached");
    // import refuses it
    let other = tempfile::tempdir().unwrap();
    let o = Store::open(other.path()).unwrap();
    let (_, _, rejected) = o.import_from(&s).unwrap();
    assert_eq!(rejected.iter().map(|r| r.0.clone()).collect::<Vec<_>>(), vec![b.key.clone()]);
    // verify quarantines it and what was computed from it, transitively; a stays.
    let r = s.verify().unwrap();
    assert_eq!(r.corrupt.iter().map(|c| c.0.clone()).collect::<Vec<_>>(), vec![b.key.clone()]);
    let derived: BTreeSet<Key> = r.derived.iter().map(|d| d.0.clone()).collect();
    assert_eq!(derived, BTreeSet::from([c.key.clone(), e.key.clone()]), "{r:?}");
    assert!(s.contains(&a.key) && !s.contains(&c.key) && !s.contains(&e.key));
}

#[test]
fn a_blanked_seal_is_a_corrupt_manifest_everywhere() {
    let d = tempfile::tempdir().unwrap();
    let s = Store::open(d.path()).unwrap();
    for (i, field) in ["meta", "rows", "label"].into_iter().enumerate() {
        let m = put(&s, "align", i as i64, &[], serde_json::json!({"pivot": "eng"}));
        tamper(
            &s,
            &m.key,
            |v| match field {
                "meta" => v["meta"]["pivot"] = Value::from("fra"),
                "rows" => v["rows"] = Value::from(99),
                _ => v["label"] = Value::from("someone else"),
            },
            false,
        );
        let why = err(s.read(&m.key));
        assert!(why.contains("no seal"), "{field}: {why}");
        assert!(!s.complete(&m.key));
    }
    let other = tempfile::tempdir().unwrap();
    let (copied, _, rejected) = Store::open(other.path()).unwrap().import_from(&s).unwrap();
    assert_eq!((copied, rejected.len()), (0, 3));
    let r = s.verify().unwrap();
    assert_eq!(r.corrupt.len(), 3, "{r:?}");
    assert!(r.corrupt.iter().all(|c| c.1.contains("no seal")));
}

#[test]
fn an_old_unsealed_store_is_sealed_only_knowingly_and_only_when_sound() {
    let d = tempfile::tempdir().unwrap();
    let s = Store::open(d.path()).unwrap();
    let good = put(&s, "align", 1, &[], Value::Null);
    let rotten = put(&s, "align", 2, &[], Value::Null);
    let blanked = put(&s, "align", 3, &[], serde_json::json!({"pivot": "eng"}));
    // As written before seals: no `seal` field at all.
    for k in [&good.key, &rotten.key] {
        tamper(&s, k, |v| drop(v.as_object_mut().unwrap().remove("seal")), false);
        let p = manifest_path(&s, k);
        let mut v: Value = serde_json::from_slice(&fs::read(&p).unwrap()).unwrap();
        v.as_object_mut().unwrap().remove("seal");
        fs::write(&p, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
    }
    // An edit that blanks the seal is not an old manifest: never sealed.
    tamper(&s, &blanked.key, |v| v["meta"]["pivot"] = Value::from("fra"), false);
    fs::write(s.data_path(&rotten.key), b"not parquet").unwrap();
    let r = s.verify_with(true).unwrap();
    assert_eq!(r.resealed, 1);
    let corrupt: BTreeSet<Key> = r.corrupt.iter().map(|c| c.0.clone()).collect();
    assert_eq!(corrupt, BTreeSet::from([rotten.key.clone(), blanked.key.clone()]));
    assert!(s.read(&good.key).is_ok());
}

#[test]
fn malformed_shard_keys_are_errors_never_paths() {
    let d = tempfile::tempdir().unwrap();
    let s = Store::open(d.path()).unwrap();
    let mut shard = None;
    for (i, bad) in ["../../../../etc/passwd", "ZZZZ", ""].into_iter().enumerate() {
        let (node, shards) = sharded(&s, 10 + i as i64, &["fra"]);
        let k = shards[0].key.clone();
        shard = Some(k.clone());
        tamper(&s, &node.key, |v| v["meta"]["shard_keys"] = serde_json::json!([k.as_str(), bad]), true);
        let why = err(s.read(&node.key));
        assert!(why.contains("malformed shard key"), "{bad}: {why}");
        assert!(!s.complete(&node.key));
    }
    let r = s.verify().unwrap();
    assert_eq!(r.corrupt.len(), 3, "{r:?}");
    assert!(s.contains(&shard.unwrap()));
}

#[test]
fn a_shard_index_naming_other_shards_is_corrupt() {
    let d = tempfile::tempdir().unwrap();
    let s = Store::open(d.path()).unwrap();
    let (node, shards) = sharded(&s, 1, &["fra", "deu"]);
    assert_eq!(s.shard_index(&node.key).unwrap().len(), 2);
    // The rows' names swapped (and the data's hash and the seal made to match): fra's vectors
    // would be read as German. The keys are the shards' own only under their own names.
    let (schema, _) = s.read(&node.key).unwrap();
    let b = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(vec!["deu", "fra"])),
            Arc::new(StringArray::from(shards.iter().map(|m| m.key.as_str()).collect::<Vec<_>>())),
        ],
    )
    .unwrap();
    let data = s.data_path(&node.key);
    crate::write_parquet(&data, schema, &[b]).unwrap();
    let h = crate::filehash::hash_file(&data).unwrap();
    let bytes = fs::metadata(&data).unwrap().len();
    tamper(
        &s,
        &node.key,
        |v| {
            v["file_hash"] = Value::from(h.clone());
            v["bytes"] = Value::from(bytes);
        },
        true,
    );
    let why = err(s.shard_index(&node.key));
    assert!(why.contains("names shard `deu` with the key"), "{why}");
    let r = s.verify().unwrap();
    assert_eq!(r.corrupt.iter().map(|c| c.0.clone()).collect::<Vec<_>>(), vec![node.key.clone()]);
}

#[test]
fn undecodable_or_cut_data_is_corrupt_to_verify_and_to_planning() {
    let d = tempfile::tempdir().unwrap();
    let s = Store::open(d.path()).unwrap();
    let (a, b) = (put(&s, "align", 1, &[], Value::Null), put(&s, "align", 2, &[], Value::Null));
    // a: cut short, its hash and size made to match (sealed): hash checks pass, decoding fails.
    let data = s.data_path(&a.key);
    let bytes = fs::read(&data).unwrap();
    fs::write(&data, &bytes[..bytes.len() / 2]).unwrap();
    let h = crate::filehash::hash_file(&data).unwrap();
    let n = (bytes.len() / 2) as u64;
    tamper(
        &s,
        &a.key,
        |v| {
            v["file_hash"] = Value::from(h.clone());
            v["bytes"] = Value::from(n);
        },
        true,
    );
    // b: cut short only: planning sees the size differ and does not count it as cached.
    let data = s.data_path(&b.key);
    let bytes = fs::read(&data).unwrap();
    fs::write(&data, &bytes[..bytes.len() - 10]).unwrap();
    assert!(matches!(s.state(&b.key), State::Corrupt(w) if w.contains("bytes")));
    let r = s.verify().unwrap();
    let corrupt: BTreeSet<Key> = r.corrupt.iter().map(|c| c.0.clone()).collect();
    assert_eq!(corrupt, BTreeSet::from([a.key.clone(), b.key.clone()]), "{r:?}");
    assert!(r.corrupt.iter().any(|c| c.1.contains("does not decode")), "{r:?}");
}

#[test]
fn rotted_data_keeps_dependents_that_read_the_sealed_bytes() {
    let d = tempfile::tempdir().unwrap();
    let s = Store::open(d.path()).unwrap();
    let a = put(&s, "embed", 1, &[], Value::Null);
    let b = put(&s, "align", 2, &[&a.key], Value::Null);
    // An artifact of an older mexa recorded nothing of what it read.
    let c = put(&s, "align", 3, &[], Value::Null);
    let old = s.write(spec("aggregate", 4, &[&a.key]), "old", table(0.4).0, &table(0.4).1, 0.0, Value::Null).unwrap();
    let _ = c;
    let mut bytes = fs::read(s.data_path(&a.key)).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    fs::write(s.data_path(&a.key), bytes).unwrap();
    let r = s.verify().unwrap();
    assert_eq!(r.corrupt.len(), 1);
    // b read a's sealed bytes before they rotted: kept. The old artifact cannot say: it goes.
    assert!(s.read(&b.key).is_ok());
    assert_eq!(r.derived.iter().map(|d| d.0.clone()).collect::<Vec<_>>(), vec![old.key.clone()]);
}

#[test]
fn a_corrupt_shard_takes_what_read_its_node_along() {
    let d = tempfile::tempdir().unwrap();
    let s = Store::open(d.path()).unwrap();
    let (node, shards) = sharded(&s, 2, &["fra"]);
    let sh = shards[0].clone();
    // A consumer that recorded nothing (older mexa) of the node: tainted through the shard.
    let consumer =
        s.write(spec("align", 3, &[&node.key]), "align", table(0.1).0, &table(0.1).1, 0.0, Value::Null).unwrap();
    tamper(&s, &sh.key, |v| v["rows"] = Value::from(7), false);
    let r = s.verify().unwrap();
    assert_eq!(r.corrupt.iter().map(|c| c.0.clone()).collect::<Vec<_>>(), vec![sh.key.clone()]);
    assert_eq!(r.derived.iter().map(|d| d.0.clone()).collect::<Vec<_>>(), vec![consumer.key.clone()]);
    assert_eq!(r.incomplete, vec![(node.key.clone(), sh.key.clone())]);
}

#[test]
fn non_finite_numbers_are_refused_with_the_cell_named() {
    let d = tempfile::tempdir().unwrap();
    let s = Store::open(d.path()).unwrap();
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let (schema, batches) = table(bad);
        let e = err(s.write(spec("align", 1, &[]), "demo/align[model=x]", schema, &batches, 0.0, Value::Null));
        assert!(e.contains("demo/align[model=x]") && e.contains("`mexa`") && e.contains("row 0"), "{e}");
        assert!(e.contains("language=fra") && e.contains("layer=0"), "{e}");
    }
    // Vectors too, with the element.
    let schema = Arc::new(Schema::new(vec![
        Field::new("layer", DataType::Int64, false),
        Field::new("vector", DataType::FixedSizeList(Arc::new(Field::new("item", DataType::Float32, false)), 3), false),
    ]));
    let values = arrow::array::Float32Array::from(vec![0.0, 1.0, 2.0, 3.0, f32::NAN, 5.0]);
    let list = arrow::array::FixedSizeListArray::new(
        Arc::new(Field::new("item", DataType::Float32, false)),
        3,
        Arc::new(values),
        None,
    );
    let b = RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(vec![4, 5])), Arc::new(list)]).unwrap();
    let e = err(s.write(spec("embed", 2, &[]), "embed fra", schema, &[b], 0.0, Value::Null));
    assert!(e.contains("`vector` element 1, row 1 (layer=5)"), "{e}");
    assert!(fs::read_dir(s.root().join("tmp")).unwrap().next().is_none(), "no temporary folder is left");
}

#[test]
fn gc_never_deletes_what_a_run_planned_and_waits_for_a_planning_run() {
    let d = tempfile::tempdir().unwrap();
    let s = Store::open(d.path()).unwrap();
    let input = put(&s, "embed", 1, &[], Value::Null);
    let stray = put(&s, "embed", 2, &[], Value::Null);
    // Backdate both so "written since the run began" does not protect them.
    for k in [&input.key, &stray.key] {
        tamper(&s, k, |v| v["created_unix"] = Value::from(v["created_unix"].as_u64().unwrap() - 100), true);
    }
    let mut run = s.register_run().unwrap();
    let s2 = s.clone();
    let gc = std::cell::RefCell::new(None);
    run.plan_pinned(|| {
        // A gc started while this run plans waits for the pins.
        let s3 = s2.clone();
        *gc.borrow_mut() = Some(std::thread::spawn(move || s3.gc(&BTreeSet::new(), true).unwrap()));
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert!(s2.contains(&input.key), "gc ran while the run was planning");
        Ok(((), vec![input.key.clone()]))
    })
    .unwrap();
    let r = gc.into_inner().unwrap().join().unwrap();
    assert_eq!(r.unreachable.iter().map(|i| i.key.clone()).collect::<Vec<_>>(), vec![stray.key.clone()]);
    assert_eq!(r.in_use.iter().map(|i| i.key.clone()).collect::<Vec<_>>(), vec![input.key.clone()]);
    assert!(s.contains(&input.key));
    // The pin ends with the run.
    drop(run);
    let r = s.gc(&BTreeSet::new(), true).unwrap();
    assert_eq!(r.unreachable.len(), 1);
    assert!(!s.contains(&input.key));
}
