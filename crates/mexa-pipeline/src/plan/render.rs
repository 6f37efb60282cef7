//! The plan drawn: Graphviz (`mexa plan --dot`) and Mermaid (`--mermaid`), cached nodes green
//! and nodes to run orange, each edge labelled with its input slot.
use super::{Plan, Status};

impl Plan {
    /// Every edge as (input node, slot, node).
    fn edges(&self) -> impl Iterator<Item = (usize, &str, usize)> {
        self.nodes
            .iter()
            .enumerate()
            .flat_map(|(i, n)| n.deps.iter().flat_map(move |(slot, ds)| ds.iter().map(move |&d| (d, slot.as_str(), i))))
    }

    /// The DAG in Graphviz's language: cached nodes green, nodes to run orange, each edge
    /// labelled with its input slot (`mexa plan --dot FILE | dot -Tsvg > dag.svg`).
    pub fn to_dot(&self) -> String {
        let q = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
        let mut out = format!(
            "digraph {} {{\n  rankdir=LR;\n  node [shape=box, style=filled, fontname=\"Helvetica\"];\n",
            q(&self.pipeline)
        );
        for (i, n) in self.nodes.iter().enumerate() {
            let (colour, what) = match &n.status {
                Status::Cached => ("#c7e9c0", "cached".to_string()),
                Status::Run(r) => ("#fdd49e", format!("run: {r}")),
            };
            let label = format!("{}\n{}", n.label, what);
            out.push_str(&format!("  n{i} [label={}, fillcolor=\"{colour}\"];\n", q(&label)));
        }
        for (d, slot, i) in self.edges() {
            out.push_str(&format!("  n{d} -> n{i} [label={}];\n", q(slot)));
        }
        out.push_str("}\n");
        out
    }

    /// The DAG as a Mermaid flowchart (renders in GitHub Markdown): cached nodes green,
    /// nodes to run orange.
    pub fn to_mermaid(&self) -> String {
        let q = |s: &str| s.replace('"', "#quot;");
        let mut out = String::from("flowchart LR\n");
        for (i, n) in self.nodes.iter().enumerate() {
            let class = if n.status == Status::Cached { "cached" } else { "run" };
            out.push_str(&format!("  n{i}[\"{}\"]:::{class}\n", q(&n.label)));
        }
        for (d, slot, i) in self.edges() {
            out.push_str(&format!("  n{d} -->|{}| n{i}\n", q(slot)));
        }
        out.push_str("  classDef cached fill:#c7e9c0,stroke:#555\n  classDef run fill:#fdd49e,stroke:#555\n");
        out
    }
}
