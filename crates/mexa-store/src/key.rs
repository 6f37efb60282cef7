//! Artifact keys: blake3 over a canonical encoding of what determines an artifact.
use mexa_core::Key;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// Everything that determines an artifact's content, and nothing else: no paths of the store
/// or repository, no times. External files appear in `params` by content hash (the runner
/// replaces paths before a key is computed), never by path.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KeySpec {
    /// Stage kind, e.g. `embed`.
    pub stage: String,
    /// The stage implementation's version: bump it when its output changes.
    pub version: u32,
    /// Parameters, defaults filled in.
    pub params: Value,
    /// Input slot name → keys of the artifacts feeding it (one, or several for a gather slot).
    pub inputs: BTreeMap<String, Vec<Key>>,
}

/// JSON with object keys sorted at every level, no whitespace: equal values encode equally.
pub fn canonical_json(v: &Value) -> String {
    fn sorted(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                let mut out = serde_json::Map::new();
                for k in keys {
                    out.insert(k.clone(), sorted(&m[k]));
                }
                Value::Object(out)
            }
            Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    serde_json::to_string(&sorted(v)).expect("JSON values always serialise")
}

/// Writes the canonical JSON of `v` (what [`canonical_json`] returns) without building it.
fn write_canonical(v: &Value, out: &mut impl std::io::Write) -> std::io::Result<()> {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.write_all(b"{")?;
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.write_all(b",")?;
                }
                serde_json::to_writer(&mut *out, k)?;
                out.write_all(b":")?;
                write_canonical(&m[k], out)?;
            }
            out.write_all(b"}")
        }
        Value::Array(a) => {
            out.write_all(b"[")?;
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.write_all(b",")?;
                }
                write_canonical(x, out)?;
            }
            out.write_all(b"]")
        }
        other => serde_json::to_writer(out, other).map_err(std::io::Error::other),
    }
}

/// The key of a [`KeySpec`]: blake3 of a domain tag and the canonical JSON of
/// `{"inputs": …, "params": …, "stage": …, "version": …}`, streamed into the hasher.
pub fn key_of(spec: &KeySpec) -> Key {
    let mut h = blake3::Hasher::new();
    h.update(b"mexa-artifact-v1\0");
    let w = &mut h;
    let io = (|| -> std::io::Result<()> {
        use std::io::Write;
        w.write_all(b"{\"inputs\":{")?;
        for (i, (slot, keys)) in spec.inputs.iter().enumerate() {
            if i > 0 {
                w.write_all(b",")?;
            }
            serde_json::to_writer(&mut *w, slot)?;
            w.write_all(b":")?;
            serde_json::to_writer(&mut *w, keys)?;
        }
        w.write_all(b"},\"params\":")?;
        write_canonical(&spec.params, w)?;
        w.write_all(b",\"stage\":")?;
        serde_json::to_writer(&mut *w, &spec.stage)?;
        write!(w, ",\"version\":{}}}", spec.version)
    })();
    io.expect("hashing never fails");
    Key::from_bytes(h.finalize().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(params: Value) -> KeySpec {
        KeySpec { stage: "s".into(), version: 1, params, inputs: BTreeMap::new() }
    }

    #[test]
    fn key_ignores_object_key_order() {
        let a = spec(json!({"a": 1, "b": {"x": [1, 2], "y": "z"}}));
        let b = spec(json!({"b": {"y": "z", "x": [1, 2]}, "a": 1}));
        assert_eq!(key_of(&a), key_of(&b));
    }

    #[test]
    fn streamed_encoding_equals_canonical_json_of_the_spec() {
        let mut s = spec(json!({"z": [1, {"b": 2, "a": "x\"y"}], "a": 1.5, "m": null}));
        s.inputs.insert("corpus".into(), vec![key_of(&spec(json!(1))), key_of(&spec(json!(2)))]);
        let v = serde_json::to_value(&s).unwrap();
        let mut h = blake3::Hasher::new();
        h.update(b"mexa-artifact-v1\0");
        h.update(canonical_json(&v).as_bytes());
        assert_eq!(key_of(&s).as_str(), h.finalize().to_hex().to_string());
    }

    #[test]
    fn key_changes_with_every_component() {
        let base = spec(json!({"a": 1}));
        let k = key_of(&base);
        let mut v = base.clone();
        v.version = 2;
        assert_ne!(k, key_of(&v));
        let p = spec(json!({"a": 2}));
        assert_ne!(k, key_of(&p));
        let mut i = base.clone();
        i.inputs.insert("x".into(), vec![key_of(&spec(json!(0)))]);
        assert_ne!(k, key_of(&i));
        let mut s = base;
        s.stage = "t".into();
        assert_ne!(k, key_of(&s));
        // list order is meaningful
        assert_ne!(key_of(&spec(json!([1, 2]))), key_of(&spec(json!([2, 1]))));
    }
}
