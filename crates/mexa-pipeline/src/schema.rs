//! A JSON Schema (draft 2020-12) of pipeline files, generated from the stage registry, so
//! editors with a YAML language server check pipelines as people type (`mexa schema`).
//! Planning remains the authority: the schema cannot see grid references' types or which
//! stages exist in the file, and it accepts a `${...}` reference wherever a value goes.
use crate::stage::{ParamType, Registry};
use serde_json::{json, Map, Value};

/// The schema of one parameter type.
fn type_schema(ty: ParamType) -> Value {
    match ty {
        ParamType::Str | ParamType::Path | ParamType::Model => json!({"type": "string"}),
        ParamType::OptPath => json!({"type": ["string", "null"]}),
        ParamType::Int => json!({"type": "integer"}),
        ParamType::Float => json!({"type": "number"}),
        ParamType::Bool => json!({"type": "boolean"}),
        ParamType::StrList => json!({"type": "array", "items": {"type": "string"}}),
        ParamType::IntList => json!({"type": "array", "items": {"type": "integer"}}),
        ParamType::Enum(v) => json!({"enum": v}),
        ParamType::EnumList(v) => json!({"type": "array", "items": {"enum": v}}),
        ParamType::Any => json!({}),
    }
}

/// A `${axis}` (or `${assets}`, `${env:NAME}`) reference, allowed for any parameter.
fn reference() -> Value {
    json!({"type": "string", "pattern": "\\$\\{[^}]+\\}"})
}

/// The schema of pipeline files for the stages `registry` knows.
pub fn pipeline_schema(registry: &Registry) -> Value {
    let mut kinds = Vec::new();
    for stage in registry.iter() {
        let mut params = Map::new();
        let mut required = Vec::new();
        for p in stage.params() {
            let mut doc = p.doc.clone();
            if p.execution {
                doc.push_str(" (execution setting: not part of the key)");
            }
            let mut s = json!({"anyOf": [type_schema(p.ty), reference()], "description": doc});
            match &p.default {
                Some(d) => s["default"] = d.clone(),
                None => required.push(p.name),
            }
            params.insert(p.name.to_string(), s);
        }
        let inputs: Map<String, Value> = stage
            .inputs()
            .iter()
            .map(|i| {
                (
                    i.name.to_string(),
                    json!({"type": "string", "description": format!("the stage feeding it: {}", i.doc)}),
                )
            })
            .collect();
        let mut props = json!({
            "kind": {"const": stage.kind(), "description": stage.doc()},
            "params": {"type": "object", "properties": params, "additionalProperties": false},
            "inputs": {"type": "object", "properties": inputs, "additionalProperties": false},
            "when": {"type": "object", "description": "run only in grid cells with these axis values",
                     "additionalProperties": {"oneOf": [{"type": ["string", "number", "boolean"]}, {"type": "array"}]}},
            "resources": {"type": "object", "description": "per executor options, e.g. {slurm: {gpus: 1, time: 02:00:00}}"},
        });
        if !required.is_empty() {
            props["params"]["required"] = json!(required);
        }
        // Only the matching kind's branch applies, so errors stay specific to it.
        let kind = json!({
            "if": {"properties": {"kind": {"const": stage.kind()}}},
            "then": {"properties": props, "additionalProperties": false},
        });
        kinds.push(kind);
    }
    let names: Vec<&str> = registry.iter().map(|s| s.kind()).collect();
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "mexa pipeline",
        "description": "A mexa pipeline: typed stages, an experiment grid, and where its artifacts live (docs/pipelines.md).",
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "pipeline": {"type": "string", "description": "the pipeline's name (default: the file's stem)"},
            "description": {"type": "string", "description": "a paragraph shown on reports"},
            "store": {"type": "string", "description": "the artifact store folder, relative to this file (--store and MEXA_STORE override it)"},
            "imports": {"type": "array", "items": {"type": "string"}, "description": "pipeline files whose stages and grid this one extends"},
            "grid": {"type": "object", "description": "axes (name: [values]) and include/exclude rules",
                     "additionalProperties": {"type": "array", "minItems": 1}},
            "stages": {
                "type": "object",
                "description": "stage name: {kind, params, inputs, when, resources}",
                "additionalProperties": {
                    "type": "object",
                    "required": ["kind"],
                    "properties": {"kind": {"enum": names}},
                    "allOf": kinds,
                },
            },
        },
    })
}
