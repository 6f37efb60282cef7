#!/usr/bin/env python3
"""Writes tests/fixtures/gguf/dequant.json: for every GGUF tensor type mexa dequantises,
random block bytes (with finite f16 scales) and the values the `gguf` Python package
(llama.cpp's own NumPy reference, gguf-py) dequantises them to.

Needs: pip install gguf numpy. Deterministic (fixed seed).
"""
import json
import sys

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf.constants import GGML_QUANT_SIZES
from gguf.quants import dequantize

# Byte offsets of the f16 scale fields in each block, kept finite and small.
F16_FIELDS = {
    T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0],
    T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208],
}


def main(out):
    rng = np.random.default_rng(20241005)
    cases = []
    for t in [T.F32, T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.Q4_K, T.Q5_K, T.Q6_K]:
        block, size = GGML_QUANT_SIZES[t]
        n_blocks = max(1, 512 // block)
        if t == T.F32:
            raw = rng.standard_normal(n_blocks).astype("<f4").tobytes()
        elif t == T.F16:
            raw = rng.standard_normal(n_blocks).astype("<f2").tobytes()
        elif t == T.BF16:
            f = rng.standard_normal(n_blocks).astype("<f4")
            raw = (f.view("<u4") >> 16).astype("<u2").tobytes()
        else:
            data = bytearray(rng.integers(0, 256, size=n_blocks * size, dtype=np.uint8).tobytes())
            for b in range(n_blocks):
                for off in F16_FIELDS[t]:
                    v = np.array([rng.uniform(-0.05, 0.05)], dtype="<f2").tobytes()
                    data[b * size + off: b * size + off + 2] = v
            raw = bytes(data)
        values = dequantize(np.frombuffer(raw, dtype=np.uint8), t).astype(np.float32).reshape(-1)
        cases.append({"type": t.name, "ggml_type": int(t), "hex": raw.hex(), "values": [float(v) for v in values]})
    with open(out, "w") as f:
        json.dump({"generator": "gguf-py dequantize", "cases": cases}, f)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/gguf/dequant.json")
