//! `-S` on the command line: a stage parameter or a grid axis's values replaced in the YAML
//! tree before it is read, errors naming the override.
use super::*;
/// A command-line override (`-S`): `stage.param=value` sets a stage's parameter,
/// `axis=v1,v2` (or `axis=[v1, v2]`) replaces a grid axis's values. Values are YAML, so
/// `-S embed.poolings=[last]` is a list and `-S corpus.limit=10` a number.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    /// `stage.param` or `axis`.
    pub target: String,
    pub value: String,
}

impl std::str::FromStr for Override {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once('=') {
            Some((t, v)) if !t.trim().is_empty() => Ok(Override { target: t.trim().to_string(), value: v.to_string() }),
            _ => Err(format!("`{s}`: expected stage.param=value or axis=value,value")),
        }
    }
}

impl Override {
    /// Applies the override to a pipeline's YAML tree; errors name the override.
    pub(super) fn apply(&self, root: &mut Node) -> Result<(), SpecError> {
        let src = format!("-S {}", self.target);
        let at = Pos { file: src.as_str().into(), line: 0, col: 0 };
        let value = |text: &str| yaml::parse(&src, text);
        let NodeKind::Map(top) = &mut root.kind else { return Ok(()) };
        let section = |top: &mut Vec<(Node, Node)>, key: &str| -> Option<usize> {
            top.iter().position(|(k, _)| k.as_str() == Some(key))
        };
        if let Some((stage, param)) = self.target.split_once('.') {
            let Some(si) = section(top, "stages") else {
                return Err(SpecError::new(at, "the pipeline has no `stages:` to override"));
            };
            let NodeKind::Map(stages) = &mut top[si].1.kind else { return Ok(()) };
            let names: Vec<String> = stages.iter().filter_map(|(k, _)| k.as_str().map(str::to_string)).collect();
            let Some((_, st)) = stages.iter_mut().find(|(k, _)| k.as_str() == Some(stage)) else {
                let hint = suggest(stage, names.iter().map(String::as_str))
                    .unwrap_or_else(|| format!("stages: {}", names.join(", ")));
                return Err(SpecError::new(at, format!("no stage `{stage}` to override")).hint(hint));
            };
            let NodeKind::Map(fields) = &mut st.kind else { return Ok(()) };
            let key =
                |text: &str| Node { pos: at.clone(), kind: NodeKind::Scalar { text: text.into(), quoted: false } };
            if !fields.iter().any(|(k, _)| k.as_str() == Some("params")) {
                fields.push((key("params"), Node { pos: at.clone(), kind: NodeKind::Map(vec![]) }));
            }
            let params = fields.iter_mut().find(|(k, _)| k.as_str() == Some("params")).expect("just added");
            let NodeKind::Map(params) = &mut params.1.kind else {
                return Err(SpecError::new(at, format!("stage `{stage}`: `params` is not a mapping")));
            };
            let v = value(&self.value)?;
            match params.iter_mut().find(|(k, _)| k.as_str() == Some(param)) {
                Some(slot) => slot.1 = v,
                None => params.push((key(param), v)),
            }
            return Ok(());
        }
        let axis = self.target.as_str();
        let grid = section(top, "grid").and_then(|gi| match &mut top[gi].1.kind {
            NodeKind::Map(g) => Some(g),
            _ => None,
        });
        let axes: Vec<String> = grid
            .as_ref()
            .map(|g| g.iter().filter_map(|(k, _)| k.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        let Some(slot) =
            grid.and_then(|g| g.iter_mut().find(|(k, _)| k.as_str() == Some(axis) && !RULE_KEYS.contains(&axis)))
        else {
            let hint = suggest(axis, axes.iter().map(String::as_str)).unwrap_or_else(|| {
                "`-S axis=v1,v2` replaces a grid axis's values; `-S stage.param=value` sets a parameter".into()
            });
            return Err(SpecError::new(at, format!("`{axis}` is not a grid axis")).hint(hint));
        };
        let text = self.value.trim();
        slot.1 = if text.starts_with('[') {
            value(text)?
        } else {
            let items = text.split(',').map(|v| value(v.trim())).collect::<Result<Vec<_>, _>>()?;
            Node { pos: at, kind: NodeKind::Seq(items) }
        };
        Ok(())
    }
}
