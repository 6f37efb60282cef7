#!/usr/bin/env python3
"""Expected token ids of every bundled GGUF's own tokenizer on the whole bundled UDHR.

For each tokenizer below and each UDHR language (all ~445 files), tokenizes the 50 units one
at a time as transformers does (`tok(line)["input_ids"]`, with the special tokens the tokenizer
adds) and writes tests/fixtures/tokens/<name>.tsv: language, number of tokens, and blake3 of
the ids written as decimal numbers, one sentence per line ("1 2 3\n4 5\n..."). The GGUF
tokenizers are transformers' `AutoTokenizer.from_pretrained(dir, gguf_file=...)`; the Gemma 3
tokenizer.json is read by `tokenizers` itself. The Qwen2.5-Coder GGUFs are checked against
Qwen2.5's own tokenizer.json (the same vocabulary and merges; fetch-assets item `tokenizers`) run
by transformers: transformers' GGUF loader leaves out that file's NFC normaliser, and so gave
other ids on 28 of the 445 languages (Hindi, Bengali, Burmese, polytonic Greek, ... : text with
decomposed or composition-excluded characters). crates/mexa-model/tests/gguf_tokens.rs checks
mexa against these files without Python. Usage: make_token_fixtures.py [OUT [NAME ...]].

Needs: transformers, gguf, torch, blake3, tokenizers, and the assets from
scripts/fetch-assets.py (including qwen2.5-0.5b and qwen2.5-1.5b).
"""
import os
import sys

import blake3
from tokenizers import Tokenizer
from transformers import AutoTokenizer

ASSETS = os.environ.get("MEXA_ASSETS") or os.path.expanduser("~/.cache/mexa/assets")
OUT = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/tokens"

GGUFS = {
    "smollm2-135m-gguf": "models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf",
    "gemma3-270m-gguf": "models/gemma3-270m/gemma-3-270m-q4_k_m.gguf",
    "qwen2.5-coder-0.5b-gguf": "models/qwen2.5-coder-0.5b-instruct/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    "qwen2.5-coder-1.5b-gguf": "models/qwen2.5-coder-1.5b-instruct/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
}


# GGUF fixture -> the model's own tokenizer.json, which is the reference where it exists.
OWN_TOKENIZER = {
    "qwen2.5-coder-0.5b-gguf": "tokenizers/qwen2.5/tokenizer.json",
    "qwen2.5-coder-1.5b-gguf": "tokenizers/qwen2.5/tokenizer.json",
}


def encoders():
    from transformers import PreTrainedTokenizerFast
    for name, rel in GGUFS.items():
        if name in OWN_TOKENIZER:
            t = Tokenizer.from_file(os.path.join(ASSETS, OWN_TOKENIZER[name]))
            t.no_padding()
            t.no_truncation()
            tok = PreTrainedTokenizerFast(tokenizer_object=t)
            yield name, lambda s, tok=tok: tok(s)["input_ids"]
            continue
        path = os.path.join(ASSETS, rel)
        tok = AutoTokenizer.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path))
        yield name, lambda s, tok=tok: tok(s)["input_ids"]
    tj = Tokenizer.from_file(os.path.join(ASSETS, "models/gemma3-270m/tokenizer.json"))
    tj.no_padding()
    tj.no_truncation()
    yield "gemma3-270m-tokenizer-json", lambda s: tj.encode(s).ids


def main():
    udhr = os.path.join(ASSETS, "corpora/udhr")
    langs = sorted(f[:-4] for f in os.listdir(udhr) if f.endswith(".txt"))
    os.makedirs(OUT, exist_ok=True)
    only = sys.argv[2:]
    for name, encode in encoders():
        if only and name not in only:
            continue
        rows = []
        for lang in langs:
            with open(os.path.join(udhr, f"{lang}.txt"), encoding="utf-8") as f:
                lines = f.read().split("\n")
            if lines and lines[-1] == "":
                lines.pop()
            ids = [encode(line) for line in lines]
            text = "\n".join(" ".join(str(i) for i in s) for s in ids)
            rows.append(f"{lang}\t{sum(map(len, ids))}\t{blake3.blake3(text.encode()).hexdigest()}")
        with open(os.path.join(OUT, f"{name}.tsv"), "w") as f:
            f.write("language\ttokens\tblake3\n" + "\n".join(rows) + "\n")
        print(f"{name}: {len(rows)} languages", file=sys.stderr)


if __name__ == "__main__":
    main()
