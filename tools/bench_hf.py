#!/usr/bin/env python3
"""Hugging Face transformers baseline for `mexa bench embed`.

usage: bench_hf.py MODEL SENTENCES_FILE THREADS [DTYPE [DEVICE]]
MODEL is a Hugging Face folder or a .gguf file (a tokenizer.json beside it is used). Prints
JSON: tokens, and tokens/s for (a) batches of up to 64 length-sorted sentences, right-padded,
and (b) one sentence at a time, as the published MEXA extractor does; both with
output_hidden_states=True in DTYPE (f32, bf16 or f16; default f32) on DEVICE (default cpu;
cuda waits for the GPU before each clock read) under torch.no_grad(), after one warm-up call.
"""
import json
import os
import sys
import time

import torch
from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast


DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}


def load(model, dtype):
    if model.endswith(".gguf"):
        d, f = os.path.dirname(model), os.path.basename(model)
        m = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32).to(dtype)
        tj = os.path.join(d, "tokenizer.json")
        tok = PreTrainedTokenizerFast(tokenizer_file=tj) if os.path.exists(tj) else AutoTokenizer.from_pretrained(d, gguf_file=f)
    else:
        m = AutoModel.from_pretrained(model, dtype=dtype)
        tj = os.path.join(model, "tokenizer.json")
        if os.path.exists(tj) and not os.path.exists(os.path.join(model, "tokenizer_config.json")):
            tok = PreTrainedTokenizerFast(tokenizer_file=tj)
        else:
            tok = AutoTokenizer.from_pretrained(model)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token or tok.unk_token or tok.convert_ids_to_tokens(0)
    tok.padding_side = "right"
    return m.eval(), tok


def main():
    model, path, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
    dtype = DTYPES[sys.argv[4] if len(sys.argv) > 4 else "f32"]
    device = torch.device(sys.argv[5] if len(sys.argv) > 5 else "cpu")
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    torch.set_num_threads(threads)
    sentences = [l for l in open(path, encoding="utf-8").read().split("\n") if l.strip()]
    m, tok = load(model, dtype)
    m = m.to(device)
    enc = lambda x, **kw: {k: v.to(device) for k, v in tok(x, return_tensors="pt", **kw).items()}
    lens = [len(tok(s)["input_ids"]) for s in sentences]
    tokens = sum(lens)
    with torch.no_grad():
        m(**enc(sentences[:2], padding=True), output_hidden_states=True)
        order = sorted(range(len(sentences)), key=lambda i: -lens[i])
        # On a GPU the first pass also picks kernels for every new shape: time a second pass.
        passes = 2 if device.type == "cuda" else 1
        for _ in range(passes):
            sync()
            t = time.perf_counter()
            for i in range(0, len(order), 64):
                batch = [sentences[j] for j in order[i:i + 64]]
                m(**enc(batch, padding=True), output_hidden_states=True)
            sync()
            batched = time.perf_counter() - t
        single = None
        # MEXA_BENCH_HF_BATCHED_ONLY=1 skips the one-sentence loop (minutes for an 8B model).
        for _ in range(0 if os.environ.get("MEXA_BENCH_HF_BATCHED_ONLY") else passes):
            t = time.perf_counter()
            for s in sentences:
                m(**enc(s), output_hidden_states=True)
            sync()
            single = time.perf_counter() - t
    print(json.dumps({"tokens": tokens, "batched_tokens_per_s": tokens / batched,
                      "one_by_one_tokens_per_s": tokens / single if single else None}))


if __name__ == "__main__":
    main()
