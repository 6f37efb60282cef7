#!/usr/bin/env bash
# The GPU check of docs/gpu.md, run on a machine with an NVIDIA GPU and a Python whose torch
# has CUDA (its libtorch is the one gpu_check is linked against; build it as docs/gpu.md says).
#
# usage: tools/gpu_check.sh GPU_CHECK_BINARY TOKENIZER_JSON SENTENCES [OUT_DIR]
#
# 1. Builds a random-weight model of SmolLM2-135M's shape (Llama architecture, 30 layers,
#    width 576, grouped-query attention 9/3) with transformers, saved as a Hugging Face folder
#    with the given tokenizer.json (its vocabulary size sets the embedding table's).
# 2. Runs gpu_check on it: CPU f32 reference, then CUDA in f32 and bf16 (parity and tokens/s).
# 3. Runs tools/bench_hf.py on the GPU in f32 and bf16: transformers batched and one sentence
#    at a time (the published MEXA loop), same sentences.
set -euo pipefail
bin="$1" tokenizer="$2" sentences="$3" out="${4:-/tmp/gpu-check}"
mkdir -p "$out"
model="$out/smollm2-shape-random"
torch_lib="$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
python3 - "$model" "$tokenizer" <<'PY'
import json, shutil, sys, torch
from transformers import LlamaConfig, LlamaForCausalLM
model, tokenizer = sys.argv[1], sys.argv[2]
vocab = len(json.load(open(tokenizer))["model"]["vocab"])
torch.manual_seed(0)
cfg = LlamaConfig(vocab_size=vocab, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                  num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192,
                  rope_theta=100000.0, rms_norm_eps=1e-5, tie_word_embeddings=True,
                  bos_token_id=None, eos_token_id=None, pad_token_id=0)
LlamaForCausalLM(cfg).save_pretrained(model)
shutil.copy(tokenizer, f"{model}/tokenizer.json")
print("model:", model, "vocab", vocab, "torch", torch.__version__, torch.cuda.get_device_name(0))
PY
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
LD_LIBRARY_PATH="$torch_lib:${LD_LIBRARY_PATH:-}" "$bin" "$model" "$sentences" f32 bf16
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
for dtype in f32 bf16; do
  echo "transformers $dtype on cuda: $(python3 "$here/bench_hf.py" "$model" "$sentences" 16 "$dtype" cuda)"
done
