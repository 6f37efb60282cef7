#!/usr/bin/env python3
"""Reference hidden states of the real bundled GGUF models from Hugging Face transformers.

For SmolLM2-135M-Instruct (Q4_1), Gemma 3 270M and Qwen2.5-Coder-0.5B/1.5B-Instruct (Q4_K_M), transformers loads the GGUF
(dequantised to f32), tokenizes four UDHR sentences one at a time (as the published MEXA
extractor does), and records the token ids and, for every hidden state, the position-weighted
mean and last-token embeddings. Writes tests/fixtures/gguf/<model>.reference.safetensors and
.json (sentences, ids). crates/mexa-model/tests/real_gguf.rs compares mexa against them.
Usage: make_gguf_reference.py [OUT [MODEL ...]].

Needs: torch, transformers, gguf, accelerate, and the assets from scripts/fetch-assets.py.
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

ASSETS = os.environ.get("MEXA_ASSETS") or os.path.expanduser("~/.cache/mexa/assets")
OUT = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/gguf"
ONLY = sys.argv[2:]  # model names to (re)compute; default all
LANGS = ["eng", "fra", "cmn_hans", "hin"]

MODELS = {
    "smollm2-135m": ("models/smollm2-135m-instruct", "SmolLM2-135M-Instruct.Q4_1.gguf", None),
    "gemma3-270m": ("models/gemma3-270m", "gemma-3-270m-q4_k_m.gguf", "tokenizer.json"),
    "qwen2.5-coder-0.5b": ("models/qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", None),
    "qwen2.5-coder-1.5b": ("models/qwen2.5-coder-1.5b-instruct", "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", None),
}


def main():
    sentences = []
    for lang in LANGS:
        with open(os.path.join(ASSETS, "corpora/udhr", f"{lang}.txt"), encoding="utf-8") as f:
            sentences.append(f.readline().rstrip("\n"))
    for name, (rel, gguf, tok_json) in MODELS.items():
        if ONLY and name not in ONLY:
            continue
        d = os.path.join(ASSETS, rel)
        model = AutoModelForCausalLM.from_pretrained(d, gguf_file=gguf, torch_dtype=torch.float32).eval()
        if tok_json:
            tok = PreTrainedTokenizerFast(tokenizer_file=os.path.join(d, tok_json))
        else:
            tok = AutoTokenizer.from_pretrained(d, gguf_file=gguf)
        tensors, ids_all = {}, []
        for i, s in enumerate(sentences):
            enc = tok(s, return_tensors="pt")
            ids_all.append(enc["input_ids"][0].tolist())
            with torch.no_grad():
                out = model(**enc, output_hidden_states=True)
            hs = torch.stack(out.hidden_states)[:, 0]  # [L, T, D]
            t = hs.shape[1]
            w = torch.arange(1, t + 1, dtype=torch.float32)[None, :, None]
            tensors[f"weighted_{i}"] = ((hs * w).sum(1) / w.sum(1)).contiguous()
            tensors[f"last_{i}"] = hs[:, -1].contiguous()
        save_file(tensors, os.path.join(OUT, f"{name}.reference.safetensors"))
        with open(os.path.join(OUT, f"{name}.reference.json"), "w", encoding="utf-8") as f:
            json.dump({"languages": LANGS, "sentences": sentences, "input_ids": ids_all,
                       "hidden_states": len(out.hidden_states)}, f, ensure_ascii=False, indent=1)
        print(name, len(out.hidden_states), "hidden states;", [len(x) for x in ids_all], "tokens")


if __name__ == "__main__":
    main()
