//! `imports: [file, …]`: other pipeline files' stages and grid axes merged under a file's own,
//! recursively, with cycles, depth and names defined twice as located errors.
use super::*;
/// Merges the stages and grid axes of `imports: [file, ...]` (relative to the importing file,
/// recursively) under this file's own. A name defined twice is an error naming both places.
// Long: import resolution with its cycle, depth and override checks, each a located error; splitting would pass the same four pieces of state around.
pub(super) fn with_imports(root: Node, path: &Path, chain: &mut Vec<PathBuf>) -> Result<Node, SpecErrors> {
    let Some(imports) = root.get("imports").cloned() else { return Ok(root) };
    let Some(list) = imports.as_seq() else {
        return Err(SpecErrors(vec![SpecError::new(
            imports.pos.clone(),
            format!("`imports` is a list of pipeline files, found {}", imports.describe()),
        )]));
    };
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut sections: BTreeMap<&str, Vec<(Node, Node)>> = BTreeMap::new();
    let mut errs = Vec::new();
    for item in list {
        let Some(rel) = item.as_str() else {
            errs.push(SpecError::new(item.pos.clone(), "an import is a file path"));
            continue;
        };
        let file = base.join(rel);
        if chain.iter().any(|c| c == &file) {
            errs.push(SpecError::new(
                item.pos.clone(),
                format!(
                    "`{rel}` imports itself (through {})",
                    chain.iter().map(|c| c.display().to_string()).collect::<Vec<_>>().join(" → ")
                ),
            ));
            continue;
        }
        let text = match mexa_core::file::read_text(&file, mexa_core::FileKind::Pipeline) {
            Ok(t) => t,
            Err(e) => {
                errs.push(SpecError::new(item.pos.clone(), format!("cannot read the imported file: {e}")));
                continue;
            }
        };
        let sub = yaml::parse(&file.display().to_string(), &text).map_err(|e| SpecErrors(vec![e]))?;
        chain.push(file.clone());
        let sub = with_imports(sub, &file, chain)?;
        chain.pop();
        for key in ["grid", "stages"] {
            if let Some(m) = sub.get(key).and_then(Node::as_map) {
                sections.entry(key).or_default().extend(m.iter().cloned());
            }
        }
    }
    // This file's own entries last; duplicates across files are errors.
    let mut top: Vec<(Node, Node)> = Vec::new();
    for (k, v) in root.as_map().unwrap_or(&[]) {
        let key = k.as_str().unwrap_or_default();
        if key == "imports" {
            continue;
        }
        if let (Some(own), true) = (v.as_map(), key == "grid" || key == "stages") {
            sections.entry(if key == "grid" { "grid" } else { "stages" }).or_default().extend(own.iter().cloned());
            continue;
        }
        top.push((k.clone(), v.clone()));
    }
    for (key, entries) in sections {
        let mut seen: BTreeMap<String, Pos> = BTreeMap::new();
        for (k, _) in &entries {
            let name = k.as_str().unwrap_or_default().to_string();
            if matches!(name.as_str(), "include" | "exclude") {
                continue;
            }
            if let Some(first) = seen.insert(name.clone(), k.pos.clone()) {
                errs.push(
                    SpecError::new(k.pos.clone(), format!("`{name}` is defined twice in `{key}`"))
                        .hint(format!("first at {first}")),
                );
            }
        }
        let pos = entries.first().map(|e| e.0.pos.clone()).unwrap_or_else(|| root.pos.clone());
        top.push((
            Node { pos: pos.clone(), kind: NodeKind::Scalar { text: key.to_string(), quoted: false } },
            Node { pos, kind: NodeKind::Map(entries) },
        ));
    }
    if !errs.is_empty() {
        return Err(SpecErrors(errs));
    }
    Ok(Node { pos: root.pos.clone(), kind: NodeKind::Map(top) })
}
