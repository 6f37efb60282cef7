#!/usr/bin/env python3
"""Builds tiny random causal LMs (with their LM heads) and the log-likelihoods transformers
gives to fixed continuations after fixed contexts, for crates/mexa-model/tests/loglik.rs:
tests/fixtures/loglik/<case>/{config.json, model.safetensors, expected.json}.

expected.json: {"requests": [{"context": [ids], "continuations": [[ids], ...],
"logprob": [sum per continuation], "greedy": [bool per continuation]}]}, each continuation
scored the lm-evaluation-harness way: one forward over context + continuation, the sum of
log_softmax at the positions before each continuation token. Needs torch, transformers.
Usage: python tools/make_loglik_fixtures.py [OUT_DIR]
"""
import json
import os
import sys

import torch
import transformers as tf

OUT = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/loglik"
V = 96
DEC = dict(vocab_size=V, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
           num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
           pad_token_id=0, bos_token_id=1, eos_token_id=2)
CASES = {
    # An untied head (lm_head.weight), Llama 3.1 rotary scaling.
    "llama": (tf.LlamaConfig, tf.LlamaForCausalLM, dict(DEC, tie_word_embeddings=False, rope_theta=500000.0,
        rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                          original_max_position_embeddings=16))),
    # A tied head and q/k/v biases.
    "qwen2": (tf.Qwen2Config, tf.Qwen2ForCausalLM, dict(DEC, tie_word_embeddings=True, use_sliding_window=False)),
    # Soft-capped attention and final logits, sliding window 4 (shorter than the prompts).
    "gemma2": (tf.Gemma2Config, tf.Gemma2ForCausalLM, dict(DEC, head_dim=16, sliding_window=4,
        query_pre_attn_scalar=16, attn_logit_softcapping=50.0, final_logit_softcapping=30.0)),
    "gemma3": (tf.Gemma3TextConfig, tf.Gemma3ForCausalLM, dict(DEC, num_hidden_layers=3, head_dim=16, sliding_window=4,
        query_pre_attn_scalar=16, rope_theta=1000000.0, rope_local_base_freq=10000.0,
        layer_types=["sliding_attention", "sliding_attention", "full_attention"])),
}
# Contexts of different lengths; 2 to 4 continuations of 1 to 5 tokens each.
REQUESTS = [
    ([1, 17, 33, 45, 8, 91, 60], [[23, 4, 77], [50, 12], [88]]),
    ([1, 70, 3, 3, 64], [[9, 9, 9, 9, 9], [41, 42, 43]]),
    ([1, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14], [[30], [31], [32], [33]]),
]


def main():
    for name, (cfg_cls, model_cls, kw) in CASES.items():
        torch.manual_seed(sum(map(ord, name)))
        model = model_cls(cfg_cls(**kw)).eval()
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.randn_like(p) * 0.5)
        out = os.path.join(OUT, name)
        os.makedirs(out, exist_ok=True)
        model.save_pretrained(out, safe_serialization=True)
        for extra in ("generation_config.json",):
            if os.path.exists(os.path.join(out, extra)):
                os.remove(os.path.join(out, extra))
        reqs = []
        for ctx, conts in REQUESTS:
            lps, greedy = [], []
            for cont in conts:
                ids = torch.tensor([ctx + cont])
                with torch.no_grad():
                    logits = model(input_ids=ids).logits.float()
                logp = torch.log_softmax(logits[0], -1)
                pos = range(len(ctx) - 1, len(ctx) + len(cont) - 1)
                lps.append(float(sum(logp[p, t] for p, t in zip(pos, cont))))
                greedy.append(all(int(logp[p].argmax()) == t for p, t in zip(pos, cont)))
            reqs.append(dict(context=ctx, continuations=conts, logprob=lps, greedy=greedy))
        with open(os.path.join(out, "expected.json"), "w") as f:
            json.dump(dict(transformers=tf.__version__, requests=reqs), f, indent=1)
        print(name, [r["logprob"] for r in reqs])


if __name__ == "__main__":
    main()
