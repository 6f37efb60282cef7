#!/usr/bin/env python3
"""Task YAMLs that run lm-evaluation-harness's own `xcopa_<lang>` tasks offline, on a local
copy of XCOPA (the cambridgeltl/xcopa JSON lines: `<lang>/val.<lang>.jsonl`,
`<lang>/test.<lang>.jsonl`).

Each YAML `include`s the installed harness's `tasks/xcopa/default_<lang>.yaml` by its absolute
path, so the prompts, choices and metric are the harness's own (its `utils.py` is resolved next
to that file), and replaces only where the data comes from:

    dataset_path: json
    dataset_name: null
    dataset_kwargs: {data_files: {validation: .../val.it.jsonl, test: .../test.it.jsonl}}

The task keeps its name (`xcopa_it`): `--include_path` tasks take precedence over the built-in
ones. Nothing of the harness is copied.

Usage (docs/lm-eval.md):
    python tools/lm_eval_xcopa.py DATA_DIR OUT_DIR it id sw ...
    lm_eval --model hf --model_args pretrained=DIR,gguf_file=FILE,dtype=float32 \
        --tasks xcopa_it,xcopa_id,... --include_path OUT_DIR --output_path RESULTS
"""
import json
import os
import sys

LANGUAGES = ["et", "ht", "id", "it", "qu", "sw", "ta", "th", "tr", "vi", "zh"]


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    data, out, langs = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2]), sys.argv[3:]
    import lm_eval  # the installed harness whose task files are included

    tasks = os.path.join(os.path.dirname(lm_eval.__file__), "tasks", "xcopa")
    os.makedirs(out, exist_ok=True)
    for lang in langs:
        if lang not in LANGUAGES:
            sys.exit(f"{lang}: not an XCOPA language ({', '.join(LANGUAGES)})")
        base = os.path.join(tasks, f"default_{lang}.yaml")
        if not os.path.isfile(base):
            sys.exit(f"{base}: missing (is lm-eval installed in this Python?)")
        files = {
            split: os.path.join(data, lang, f"{name}.{lang}.jsonl")
            for split, name in [("validation", "val"), ("test", "test")]
        }
        for f in files.values():
            if not os.path.isfile(f):
                sys.exit(f"{f}: missing (expected XCOPA's <lang>/<split>.<lang>.jsonl under {data})")
        # JSON is YAML: quoting every path keeps spaces and colons safe.
        yaml = (
            f"include: {json.dumps(base)}\n"
            f"task: xcopa_{lang}\n"
            "dataset_path: json\n"
            "dataset_name: null\n"
            f"dataset_kwargs: {json.dumps({'data_files': files})}\n"
        )
        with open(os.path.join(out, f"xcopa_{lang}.yaml"), "w", encoding="utf-8") as f:
            f.write(yaml)
    print(",".join(f"xcopa_{l}" for l in langs))


if __name__ == "__main__":
    main()
