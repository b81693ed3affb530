#!/usr/bin/env bash
# Second GPU check of docs/le.md (run where a GPU machine is lent; no network there):
# 1. the 7B stages again, and item tokens on amazon-scientific's sentences (the Industry set's
#    length) with the le_token_micro_batch that fits (gpu_le_scale.py --industry);
# 2. a whole LE build on the GPU (`python -m recbole_lea.le build`, paper profile, ml-100k) with a
#    randomly initialised Llama-3.2-1B-shaped model saved as an le_model folder, token steps and LE
#    epochs cut (5 and 1) to fit the lease: every stage's code path on CUDA, its times and memory.
# Carried: RecBole and its two pure-Python requirements the image lacks as wheels in .whl, the
# SmolLM2 tokenizer in .cache/le_gpu/smol_cfg, ml-100k and amazon-scientific in atomic_datasets/.
set -u -o pipefail
OUT=${OUT:-results/gpu}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TQDM_DISABLE=1
tok=.cache/le_gpu/smol_cfg
timeout 200 python3 benchmarks/gpu_le_scale.py --tokenizer $tok --models 7b --industry --budget_s 170 \
  --json "$OUT/industry.json" 2>&1 | tee "$OUT/industry.log"
python3 benchmarks/gpu_le_scale.py --save_random 1b /tmp/rand1b --tokenizer $tok 2>&1 | tail -1
rm -rf /tmp/e2e && mkdir -p /tmp/e2e/data && cp -r atomic_datasets/ml-100k /tmp/e2e/data/
start=$(date +%s)
timeout 270 python3 -m recbole_lea.le build --dataset ml-100k --data_path /tmp/e2e/data --profile paper \
  --le_model /tmp/rand1b --le_cache_dir /tmp/e2e/cache --le_token_steps 5 --le_epochs 1 2>&1 \
  | tee "$OUT/e2e.log"
echo "build wall $(( $(date +%s) - start )) s" | tee -a "$OUT/e2e.log"
cp /tmp/e2e/data/lea/*/ml-100k-lea/manifest.json "$OUT/e2e_manifest.json" 2>/dev/null
nvidia-smi --query-gpu=memory.used --format=csv | tee -a "$OUT/e2e.log"
