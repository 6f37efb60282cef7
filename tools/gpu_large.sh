#!/usr/bin/env bash
# The GPU check of issue 16, item 3 (docs/gpu.md), on a machine with an NVIDIA GPU and a Python
# whose torch has CUDA (its libtorch is the one gpu_large is linked against; build it as
# docs/gpu.md says).
#
# usage: tools/gpu_large.sh GPU_LARGE_BINARY TOKENIZER_JSON SENTENCES [OUT_DIR]
#
# 1. Builds a random-weight model of Llama-3-8B's shape (32 layers, width 4096, MLP 14336,
#    32 query / 8 key-value heads, rope_theta 500000) in bf16 on the GPU with transformers and
#    saves it as a Hugging Face folder with the given tokenizer.json (its vocabulary sets the
#    embedding table's size).
# 2. Runs gpu_large on it (CPU f32 reference, cuda bf16 resident, a cpu+cuda split, cuda
#    bf16 from stored weights layer-major).
# 3. Runs tools/bench_hf.py on the GPU in bf16: transformers' batched forward, same sentences.
set -euo pipefail
bin="$1" tokenizer="$2" sentences="$3" out="${4:-/tmp/gpu-large}"
mkdir -p "$out"
model="$out/llama3-8b-shape-random"
torch_lib="$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
python3 - "$model" "$tokenizer" <<'PY'
import json, shutil, sys, time, torch
from transformers import LlamaConfig, LlamaForCausalLM
model, tokenizer = sys.argv[1], sys.argv[2]
vocab = len(json.load(open(tokenizer))["model"]["vocab"])
t = time.time()
torch.manual_seed(0)
cfg = LlamaConfig(vocab_size=vocab, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                  num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=8192,
                  rope_theta=500000.0, rms_norm_eps=1e-5, tie_word_embeddings=False,
                  bos_token_id=None, eos_token_id=None, pad_token_id=0)
torch.set_default_dtype(torch.bfloat16)
with torch.device("cuda"):
    m = LlamaForCausalLM(cfg)
# Random init's default std (0.02) over 32 layers keeps activations finite in bf16.
m.save_pretrained(model, max_shard_size="5GB")
shutil.copy(tokenizer, f"{model}/tokenizer.json")
print("model:", model, "vocab", vocab, "params", sum(p.numel() for p in m.parameters()), "torch", torch.__version__,
      torch.cuda.get_device_name(0), f"built in {time.time() - t:.0f}s", flush=True)
PY
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
LD_LIBRARY_PATH="$torch_lib:${LD_LIBRARY_PATH:-}" "$bin" "$model" "$sentences" 16
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
echo "transformers bf16 on cuda: $(MEXA_BENCH_HF_BATCHED_ONLY=1 python3 "$here/bench_hf.py" "$model" "$sentences" 16 bf16 cuda)"
