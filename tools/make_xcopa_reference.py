#!/usr/bin/env python3
"""Reference XCOPA log-likelihoods of the real bundled GGUF models, computed the way
lm-evaluation-harness's `xcopa_<lang>` tasks do (lm_eval/tasks/xcopa/utils.py and HFLM's
_encode_pair / _loglikelihood_tokens), with transformers loading the GGUF (dequantised to f32):
context = premise without its last character + " " + connector; continuation = " " + the
choice with its first letter lower-cased; trailing context whitespace moved to the
continuation; context encoded alone, continuation = encode(context + continuation)[len(context):];
BOS as lm-eval adds it (Gemma: yes; Qwen2.5: the tokenizer has none); one forward per
continuation over (context + continuation)[:-1]; the sum of log_softmax of the continuation.

Writes tests/fixtures/gguf/<model>.xcopa.json; crates/mexa-model/tests/real_gguf.rs checks
mexa's ids exactly and its log-likelihoods (packed, the context once) within tolerance.
Usage: make_xcopa_reference.py [OUT]. Needs torch, transformers, gguf and the assets.
"""
import json
import os
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

ASSETS = os.environ.get("MEXA_ASSETS") or os.path.expanduser("~/.cache/mexa/assets")
OUT = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/gguf"
CONNECTORS = {"it": ("perché", "quindi"), "zh": ("因为", "所以"), "sw": ("kwa sababu", "kwa hiyo"), "ta": ("காரணமாக", "எனவே")}
ITEMS = 6
MODELS = {
    "gemma3-270m": ("models/gemma3-270m", "gemma-3-270m-q4_k_m.gguf", "tokenizer.json", True),
    "qwen2.5-coder-0.5b": ("models/qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", None, False),
}


def main():
    for name, (rel, gguf, tok_json, bos) in MODELS.items():
        d = os.path.join(ASSETS, rel)
        model = AutoModelForCausalLM.from_pretrained(d, gguf_file=gguf, torch_dtype=torch.float32).eval()
        tok = PreTrainedTokenizerFast(tokenizer_file=os.path.join(d, tok_json)) if tok_json else AutoTokenizer.from_pretrained(d, gguf_file=gguf)

        def enc(s):
            return tok(s, add_special_tokens=bos)["input_ids"]

        out = []
        for lang, (cause, effect) in CONNECTORS.items():
            with open(os.path.join(ASSETS, "tasks/xcopa", lang, f"test.{lang}.jsonl"), encoding="utf-8") as f:
                docs = [json.loads(l) for l in f][:ITEMS]
            for doc in docs:
                context = doc["premise"].strip()[:-1] + " " + (cause if doc["question"] == "cause" else effect)
                choices = [c[0].lower() + c[1:] for c in (doc["choice1"], doc["choice2"])]
                ctx_ids, conts, lps = None, [], []
                for ch in choices:
                    ctx, cont = context, " " + ch
                    n = len(ctx) - len(ctx.rstrip())
                    if n:
                        cont, ctx = ctx[-n:] + cont, ctx[:-n]
                    whole = enc(ctx + cont)
                    ctx_ids = enc(ctx)
                    cont_ids = whole[len(ctx_ids):]
                    inp = torch.tensor([(ctx_ids + cont_ids)[:-1]])
                    with torch.no_grad():
                        logp = torch.log_softmax(model(input_ids=inp).logits[0].float(), -1)
                    lp = sum(float(logp[len(ctx_ids) - 1 + j, t]) for j, t in enumerate(cont_ids))
                    conts.append(cont_ids)
                    lps.append(lp)
                out.append(dict(language=lang, context=context, choices=choices, label=doc["label"],
                                context_ids=ctx_ids, continuation_ids=conts, logprob=lps))
        with open(os.path.join(OUT, f"{name}.xcopa.json"), "w", encoding="utf-8") as f:
            json.dump(dict(items=out), f, ensure_ascii=False, indent=1)
        print(name, [round(sum(i["logprob"]), 3) for i in out][:4])


if __name__ == "__main__":
    main()
