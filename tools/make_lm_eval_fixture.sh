#!/usr/bin/env bash
# Regenerates tests/fixtures/lm_eval/xcopa-gemma3-270m: lm-evaluation-harness's own results
# folder for Gemma 3 270M (the bundled GGUF, through transformers) on the first 30 XCOPA test
# items of four languages, run offline on the local XCOPA copy (docs/lm-eval.md).
# crates/mexa-cli/tests/lm_eval.rs feeds it to `join_tasks` and checks it against mexa's own
# `choice` stage. Takes ~10 minutes on two busy cores (and 2.6 GB of wheels the first time).
#
# Usage: tools/make_lm_eval_fixture.sh [VENV]   (default /tmp/venv-lmeval)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
venv="${1:-/tmp/venv-lmeval}"
assets="${MEXA_ASSETS:-$HOME/.cache/mexa/assets}"
# The committed run read /work/shared/data/xcopa/data (the same files as the assets copy).
data="${XCOPA:-$assets/tasks/xcopa}"
out=tests/fixtures/lm_eval/xcopa-gemma3-270m
langs=(it zh sw ht)
[ -x "$venv/bin/lm_eval" ] || {
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "lm-eval[hf]==0.4.13" torch==2.13.0 transformers==5.25.0 gguf==0.19.0 accelerate==1.16.0
}
tasks_dir="$(mktemp -d)"
tasks=$("$venv/bin/python" tools/lm_eval_xcopa.py "$data" "$tasks_dir" "${langs[@]}")
raw="$(mktemp -d)"
HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 "$venv/bin/lm_eval" --model hf \
  --model_args "pretrained=$assets/models/gemma3-270m,gguf_file=gemma-3-270m-q4_k_m.gguf,dtype=float32" \
  --tasks "$tasks" --include_path "$tasks_dir" --limit 30 --device cpu --batch_size 1 --seed 0 \
  --output_path "$raw"
# The folder as lm-eval wrote it (a subfolder named after the model path, one results file).
rm -rf "$out" && mkdir -p "$out"
cp -r "$raw"/* "$out/"
echo "wrote $(ls "$out"/*/results_*.json)"
