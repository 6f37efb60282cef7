#!/usr/bin/env python3
"""Fails when a crate declares a dependency its code never names.

For each crates/*/Cargo.toml: every [dependencies] entry must appear as `name::` or
`use name` (hyphens as underscores) in the crate's src/, build.rs or benches; every
[dev-dependencies] entry in src/ (unit tests), tests/ or examples/. A dependency kept only to set a
feature of another crate can be listed in the crate's Cargo.toml under
[package.metadata.unused-deps] ignore = ["name"], with the reason in a comment.
"""
import pathlib
import re
import sys
import tomllib

root = pathlib.Path(__file__).resolve().parent.parent
bad = []
for manifest in sorted(root.glob("crates/*/Cargo.toml")):
    crate = manifest.parent
    cfg = tomllib.loads(manifest.read_text())
    ignore = set(cfg.get("package", {}).get("metadata", {}).get("unused-deps", {}).get("ignore", []))

    def text(dirs):
        out = []
        for d in dirs:
            p = crate / d
            files = [p] if p.is_file() else sorted(p.rglob("*.rs")) if p.is_dir() else []
            out.extend(f.read_text() for f in files)
        return "\n".join(out)

    main = text(["src", "build.rs", "benches"])
    dev = main + text(["tests", "examples"])
    for section, body in (("dependencies", main), ("dev-dependencies", dev)):
        for name, spec in cfg.get(section, {}).items():
            real = spec.get("package", name) if isinstance(spec, dict) else name
            ident = name.replace("-", "_")
            if name in ignore:
                continue
            if not re.search(rf"\b{re.escape(ident)}::|\buse {re.escape(ident)}\b|extern crate {re.escape(ident)}\b", body):
                bad.append(f"{manifest.relative_to(root)}: [{section}] `{name}`{'' if real == name else f' ({real})'} is never used")
if bad:
    print("\n".join(bad))
    print(f"{len(bad)} unused dependencies: remove them (or see this script's header)")
    sys.exit(1)
print("unused dependencies: none")
