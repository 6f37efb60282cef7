#!/usr/bin/env python3
"""Builds tiny random Hugging Face checkpoints for every architecture mexa implements, runs
transformers on a fixed right-padded batch with output_hidden_states=True, and writes
tests/fixtures/parity/<name>/{config.json, model.safetensors, expected.safetensors}.

expected.safetensors holds input_ids [2, T], attention_mask [2, T] and hidden_<i> [2, T, D]
for every hidden state. Rust tests (crates/mexa-model/tests/parity.rs) require every layer
to match within 1e-4 at the non-padding positions. Needs: torch, transformers, safetensors.
"""
import os
import zlib
import sys

import torch
import transformers as tf
from safetensors.torch import save_file

OUT = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/parity"
ONLY = sys.argv[2:]  # case names to (re)build; default all
V = 96
DEC = dict(vocab_size=V, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
           num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
           pad_token_id=0, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
ENC = dict(vocab_size=V, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
           num_attention_heads=4, max_position_embeddings=40, type_vocab_size=2)

CASES = {
    "llama": (tf.LlamaConfig, tf.LlamaModel, dict(DEC, rms_norm_eps=1e-5, rope_theta=10000.0)),
    "llama31": (tf.LlamaConfig, tf.LlamaModel, dict(DEC, rms_norm_eps=1e-5, rope_theta=500000.0,
        rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                          original_max_position_embeddings=16))),
    "mistral": (tf.MistralConfig, tf.MistralModel, dict(DEC, sliding_window=4)),
    "qwen2": (tf.Qwen2Config, tf.Qwen2Model, dict(DEC, use_sliding_window=False)),
    "olmo": (tf.OlmoConfig, tf.OlmoModel, dict(DEC, clip_qkv=0.5)),
    "olmo2": (tf.Olmo2Config, tf.Olmo2Model, dict(DEC, rms_norm_eps=1e-6)),
    "gemma": (tf.GemmaConfig, tf.GemmaModel, dict(DEC, head_dim=16, hidden_activation="gelu_pytorch_tanh")),
    "gemma2": (tf.Gemma2Config, tf.Gemma2Model, dict(DEC, head_dim=16, sliding_window=4,
        query_pre_attn_scalar=16, attn_logit_softcapping=50.0, final_logit_softcapping=30.0)),
    "gemma3": (tf.Gemma3TextConfig, tf.Gemma3TextModel, dict(DEC, num_hidden_layers=3, head_dim=16, sliding_window=4,
        query_pre_attn_scalar=16, rope_theta=1000000.0, rope_local_base_freq=10000.0,
        layer_types=["sliding_attention", "sliding_attention", "full_attention"])),
    "llama32": (tf.LlamaConfig, tf.LlamaModel, dict(DEC, rms_norm_eps=1e-5, rope_theta=500000.0, tie_word_embeddings=True,
        rope_scaling=dict(rope_type="llama3", factor=32.0, low_freq_factor=1.0, high_freq_factor=4.0,
                          original_max_position_embeddings=16))),
    "mistral_nemo": (tf.MistralConfig, tf.MistralModel, dict(DEC, head_dim=24, sliding_window=None, rope_theta=1000000.0)),
    "qwen3": (tf.Qwen3Config, tf.Qwen3Model, dict(DEC, head_dim=24, use_sliding_window=False, rms_norm_eps=1e-6)),
    "phi3": (tf.Phi3Config, tf.Phi3Model, dict(DEC, sliding_window=None, rms_norm_eps=1e-5)),
    # Six layers in Gemma 3's own pattern (five sliding, one full), which a GGUF cannot override.
    "embeddinggemma": (tf.Gemma3TextConfig, tf.Gemma3TextModel, dict(DEC, num_hidden_layers=6, head_dim=16, sliding_window=4,
        query_pre_attn_scalar=16, rope_theta=1000000.0, rope_local_base_freq=10000.0, use_bidirectional_attention=True)),
    "bloom": (tf.BloomConfig, tf.BloomModel, dict(vocab_size=V, hidden_size=64, n_layer=2, n_head=4, pad_token_id=0,
        bos_token_id=1, eos_token_id=2)),
    "bloom_6heads": (tf.BloomConfig, tf.BloomModel, dict(vocab_size=V, hidden_size=48, n_layer=2, n_head=6, pad_token_id=0,
        bos_token_id=1, eos_token_id=2)),
    "xglm": (tf.XGLMConfig, tf.XGLMModel, dict(vocab_size=V, d_model=64, ffn_dim=128, num_layers=2, attention_heads=4,
        max_position_embeddings=64, pad_token_id=1, bos_token_id=0, eos_token_id=2)),
    "cohere": (tf.CohereConfig, tf.CohereModel, dict(DEC, layer_norm_eps=1e-5, use_qk_norm=True, logit_scale=0.0625)),
    "bert": (tf.BertConfig, tf.BertModel, dict(ENC, pad_token_id=0)),
    "xlm_roberta": (tf.XLMRobertaConfig, tf.XLMRobertaModel, dict(ENC, pad_token_id=1)),
}


def main():
    torch.manual_seed(0)
    lengths = [7, 4]
    T = max(lengths)
    for name, (cfg_cls, model_cls, kw) in CASES.items():
        if ONLY and name not in ONLY:
            continue
        cfg = cfg_cls(**kw)
        cfg._attn_implementation = "eager"
        torch.manual_seed(zlib.crc32(name.encode()))
        model = model_cls(cfg).eval()
        with torch.no_grad():
            # Random weights are small by default; widen norms so errors would show.
            for n, p in model.named_parameters():
                if "norm" in n.lower() and p.dim() == 1:
                    p.add_(torch.randn_like(p) * 0.1)
        pad = cfg.pad_token_id
        ids = torch.full((2, T), pad, dtype=torch.long)
        mask = torch.zeros((2, T), dtype=torch.long)
        g = torch.Generator().manual_seed(1)
        for r, n in enumerate(lengths):
            ids[r, :n] = torch.randint(3, V, (n,), generator=g)
            mask[r, :n] = 1
        with torch.no_grad():
            out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        d = os.path.join(OUT, name)
        os.makedirs(d, exist_ok=True)
        model.save_pretrained(d, safe_serialization=True)
        tensors = {"input_ids": ids, "attention_mask": mask}
        for i, h in enumerate(out.hidden_states):
            tensors[f"hidden_{i}"] = h.float().contiguous()
        save_file(tensors, os.path.join(d, "expected.safetensors"))
        for extra in ["generation_config.json"]:
            p = os.path.join(d, extra)
            if os.path.exists(p):
                os.remove(p)
        print(name, len(out.hidden_states), "hidden states")


if __name__ == "__main__":
    main()
