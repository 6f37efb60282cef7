//! `${…}` in parameters and resources, for one grid cell: grid axes and their fields,
//! `${assets}`, `${env:NAME}`, and paths resolved against the pipeline file's folder.
use super::{home, short};
use crate::error::{Pos, SpecError};
use crate::spec::{refs_in, value_label};
use crate::yaml::{Node, NodeKind};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub(super) fn resolve_path(s: &str, base: &Path) -> PathBuf {
    let p = if let Some(rest) = s.strip_prefix("~/") { home().join(rest) } else { PathBuf::from(s) };
    if p.is_absolute() {
        p
    } else {
        base.join(p)
    }
}

/// Substitutes `${...}` references in a parameter node for one grid cell.
pub(super) fn substitute(node: &Node, assign: &HashMap<&str, &Value>, assets: &Path) -> Result<Value, SpecError> {
    match &node.kind {
        NodeKind::Scalar { text, .. } if text.contains("${") => {
            let refs = refs_in(text);
            if refs.len() == 1 && refs[0].0 == 0 && refs[0].1 == text.len() {
                return lookup(refs[0].2, assign, assets, &node.pos);
            }
            let mut out = String::new();
            let mut last = 0;
            for (s, e, inner) in refs {
                out.push_str(&text[last..s]);
                let v = lookup(inner, assign, assets, &node.pos)?;
                match &v {
                    Value::String(s) => out.push_str(s),
                    Value::Number(_) | Value::Bool(_) => out.push_str(&v.to_string()),
                    _ => {
                        return Err(SpecError::new(
                            node.pos.clone(),
                            format!("`${{{inner}}}` is {} and cannot be spliced into a string", short(&v)),
                        )
                        .hint("refer to a field, e.g. `${model.path}`"))
                    }
                }
                last = e;
            }
            out.push_str(&text[last..]);
            Ok(Value::String(out))
        }
        NodeKind::Scalar { .. } => Ok(node.to_json()),
        NodeKind::Seq(items) => {
            items.iter().map(|i| substitute(i, assign, assets)).collect::<Result<Vec<_>, _>>().map(Value::Array)
        }
        NodeKind::Map(m) => {
            let mut out = serde_json::Map::new();
            for (k, v) in m {
                out.insert(k.as_str().unwrap_or_default().to_string(), substitute(v, assign, assets)?);
            }
            Ok(Value::Object(out))
        }
    }
}

/// Whether a parameter's value takes anything from `${env:…}`, directly or through a grid
/// value that does.
pub(super) fn uses_env(node: &Node, assign: &HashMap<&str, &Value>) -> bool {
    match &node.kind {
        NodeKind::Scalar { text, .. } => refs_in(text).iter().any(|(_, _, inner)| {
            inner.starts_with("env:")
                || assign
                    .get(inner.split('.').next().unwrap_or_default())
                    .is_some_and(|v| v.to_string().contains("${env:"))
        }),
        NodeKind::Seq(items) => items.iter().any(|i| uses_env(i, assign)),
        NodeKind::Map(m) => m.iter().any(|(_, v)| uses_env(v, assign)),
    }
}

fn lookup(inner: &str, assign: &HashMap<&str, &Value>, assets: &Path, pos: &Pos) -> Result<Value, SpecError> {
    if let Some(rest) = inner.strip_prefix("env:") {
        let (name, default) = match rest.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (rest, None),
        };
        return match (std::env::var(name), default) {
            (Ok(v), _) => Ok(Value::String(v)),
            (Err(_), Some(d)) => Ok(Value::String(d.to_string())),
            (Err(_), None) => Err(SpecError::new(pos.clone(), format!("environment variable `{name}` is not set"))
                .hint(format!("set it, or give a default: `${{env:{name}:-VALUE}}`"))),
        };
    }
    let mut parts = inner.split('.');
    let head = parts.next().unwrap_or_default();
    let mut v: Value = if head == "assets" {
        Value::String(assets.to_string_lossy().into_owned())
    } else {
        // Axis values may themselves use `${assets}` and `${env:...}` (not other axes).
        let raw =
            (*assign.get(head).ok_or_else(|| SpecError::new(pos.clone(), format!("`{head}` is not bound here")))?)
                .clone();
        expand_builtins(&raw, assets, pos)?
    };
    for field in parts {
        v = match v.get(field) {
            Some(x) => x.clone(),
            None => {
                return Err(SpecError::new(
                    pos.clone(),
                    format!("`${{{inner}}}`: the value `{}` of `{head}` has no field `{field}`", value_label(&v)),
                )
                .hint("give every value of the axis that field"))
            }
        };
    }
    Ok(v)
}

/// Expands `${assets}` and `${env:...}` inside every string of an axis value.
fn expand_builtins(v: &Value, assets: &Path, pos: &Pos) -> Result<Value, SpecError> {
    Ok(match v {
        Value::String(s) if s.contains("${") => {
            let mut out = String::new();
            let mut last = 0;
            for (a, b, inner) in refs_in(s) {
                out.push_str(&s[last..a]);
                if inner != "assets" && !inner.starts_with("env:") {
                    return Err(SpecError::new(pos.clone(), format!("grid value {s:?} refers to `${{{inner}}}`; grid values may use only `${{assets}}` and `${{env:NAME}}`")));
                }
                match lookup(inner, &HashMap::new(), assets, pos)? {
                    Value::String(x) => out.push_str(&x),
                    other => out.push_str(&other.to_string()),
                }
                last = b;
            }
            out.push_str(&s[last..]);
            Value::String(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(|x| expand_builtins(x, assets, pos)).collect::<Result<_, _>>()?),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| Ok((k.clone(), expand_builtins(x, assets, pos)?)))
                .collect::<Result<_, SpecError>>()?,
        ),
        other => other.clone(),
    })
}
