#!/usr/bin/env python3
"""GGUF copies of the tiny parity checkpoints, written the way llama.cpp's convert_hf_to_gguf.py
writes each architecture, so mexa's GGUF loaders can be checked against the same
transformers hidden states (crates/mexa-model/tests/parity.rs, `*_gguf` tests).

For each case: tensor names from gguf-py's own TensorNameMap (the table the converter uses),
F32 data, the converter's per-architecture transforms (Llama: Q/K rows permuted into
interleaved rotary pairs and Llama 3.1 scaling as a `rope_freqs` tensor; BLOOM: the per-head
fused qkv de-interleaved into [q; k; v]; Gemma: +1 folded into RMSNorm weights), and the
metadata keys llama.cpp reads. Writes tests/fixtures/parity/<case>/model.gguf.

Needs: gguf (gguf-py), numpy, safetensors, and tests/fixtures/parity from
tools/make_parity_fixtures.py.
"""
import json
import math
import os
import sys

import gguf
import numpy as np
from safetensors.numpy import load_file

ROOT = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/parity"
A = gguf.MODEL_ARCH

CASES = {
    # case: (architecture, prefix of the HF names as the converter sees them)
    "mistral_nemo": (A.LLAMA, "model."),
    "llama32": (A.LLAMA, "model."),
    "qwen3": (A.QWEN3, "model."),
    "phi3": (A.PHI3, "model."),
    "bloom": (A.BLOOM, "transformer."),
    "cohere": (A.COMMAND_R, "model."),
    "embeddinggemma": (A.GEMMA_EMBEDDING, "model."),
}


def permute(w, n_head):
    """convert_hf_to_gguf.LlamaModel.permute."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def llama3_rope_factors(cfg, head_dim):
    """convert_hf_to_gguf.LlamaModel.generate_extra_tensors (rope_type llama3)."""
    rs = cfg.get("rope_scaling") or cfg.get("rope_parameters") or {}
    if rs.get("rope_type", rs.get("type")) != "llama3":
        return None
    base = rs.get("rope_theta", cfg.get("rope_theta", 10000.0))
    factor, low, high = rs.get("factor", 8.0), rs.get("low_freq_factor", 1.0), rs.get("high_freq_factor", 4.0)
    old = rs.get("original_max_position_embeddings", 8192)
    freqs = 1.0 / (base ** (np.arange(0, head_dim, 2, dtype=np.float32) / head_dim))
    low_wl, high_wl = old / low, old / high
    out = []
    for f in freqs:
        wl = 2 * math.pi / f
        if wl < high_wl:
            out.append(1)
        elif wl > low_wl:
            out.append(factor)
        else:
            smooth = (old / wl - low) / (high - low)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


def main():
    for case, (arch, prefix) in CASES.items():
        d = os.path.join(ROOT, case)
        cfg = json.load(open(os.path.join(d, "config.json")))
        tensors = load_file(os.path.join(d, "model.safetensors"))
        name = gguf.MODEL_ARCH_NAMES[arch]
        n_layer = cfg.get("num_hidden_layers", cfg.get("n_layer"))
        heads = cfg.get("num_attention_heads", cfg.get("n_head"))
        hidden = cfg.get("hidden_size", cfg.get("n_embed"))
        kv = cfg.get("num_key_value_heads", heads)
        head_dim = cfg.get("head_dim") or hidden // heads
        nmap = gguf.get_tensor_name_map(arch, n_layer)
        path = os.path.join(d, "model.gguf")
        w = gguf.GGUFWriter(path, name)
        w.add_block_count(n_layer)
        w.add_context_length(cfg.get("max_position_embeddings", 64))
        w.add_embedding_length(hidden)
        w.add_feed_forward_length(cfg.get("intermediate_size", 4 * hidden))
        w.add_head_count(heads)
        w.add_head_count_kv(kv)
        if arch in (A.BLOOM, A.COMMAND_R):
            w.add_layer_norm_eps(cfg.get("layer_norm_epsilon", cfg.get("layer_norm_eps", 1e-5)))
        else:
            w.add_layer_norm_rms_eps(cfg.get("rms_norm_eps", 1e-6))
        if arch != A.BLOOM:
            rp = cfg.get("rope_parameters") or {}
            theta = rp.get("full_attention", rp).get("rope_theta", cfg.get("rope_theta", 10000.0))
            w.add_rope_freq_base(theta)
            w.add_key_length(head_dim)
            w.add_value_length(head_dim)
            w.add_rope_dimension_count(head_dim)
        if arch == A.GEMMA_EMBEDDING:
            w.add_sliding_window(cfg["sliding_window"])
        for hf, t in tensors.items():
            t = t.astype(np.float32)
            if arch == A.LLAMA and hf.endswith("q_proj.weight"):
                t = permute(t, heads)
            if arch == A.LLAMA and hf.endswith("k_proj.weight"):
                t = permute(t, kv)
            if arch == A.BLOOM and "query_key_value" in hf:
                hd = hidden // heads
                if hf.endswith("weight"):
                    q = t.reshape(heads, 3, hd, hidden)
                    t = np.concatenate([q[:, 0].reshape(-1, hidden), q[:, 1].reshape(-1, hidden), q[:, 2].reshape(-1, hidden)])
                else:
                    q = t.reshape(heads, 3, hd)
                    t = np.concatenate([q[:, 0].reshape(-1), q[:, 1].reshape(-1), q[:, 2].reshape(-1)])
            if arch == A.GEMMA_EMBEDDING and hf.endswith("norm.weight"):
                t = t + 1
            new = nmap.get_name(prefix + hf, try_suffixes=(".weight", ".bias")) or nmap.get_name(hf, try_suffixes=(".weight", ".bias"))
            if new is None:
                raise SystemExit(f"{case}: no GGUF name for {hf}")
            w.add_tensor(new, np.ascontiguousarray(t))
        factors = llama3_rope_factors(cfg, head_dim) if arch == A.LLAMA else None
        if factors is not None:
            w.add_tensor(gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.ROPE_FREQS] + ".weight", factors)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        print(case, name, os.path.getsize(path), "bytes")


if __name__ == "__main__":
    main()
