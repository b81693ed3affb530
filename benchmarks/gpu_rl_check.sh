#!/usr/bin/env bash
# GPU check of the whole pipeline (run on a machine with CUDA; `run` of the device tool here):
#   bash benchmarks/gpu_rl_check.sh [EPOCHS]
# 1. the LE build on ml-100k with the `paper` profile on cuda in bfloat16, per-stage times;
# 2. SASRec, SA2C and SA2C_LEA (LEASR) on cuda reading those files: epoch times and metrics.
# Needs RecBole 1.2.1, its small pure-python requirements and pandas<3 (RecBole breaks under
# pandas 3 copy-on-write; setup.cfg pins it) as cp312 wheels in .whl/ (see
# docs/le.md, "GPU"), carried with .whl and .cache/le_gpu. The LLM is a randomly initialised model
# of SmolLM2-135M's exact architecture (the 98 MB GGUF exceeds what travels): the same cost, no
# meaningful quality. Item-token steps are 0 to save device time (their GPU cost, 110.8 s for
# 300 steps, was measured in an earlier session). Results and logs go to $OUT (or ./gpu_out).
set -u
EPOCHS=${1:-3}
OUT=${OUT:-$PWD/gpu_out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 RECBOLE_LEA_CACHE=/tmp/le_cache
DATA=/tmp/ad
mkdir -p "$DATA" && cp -r .cache/le_gpu/data/ml-100k "$DATA"/
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c "import torch, numpy, recbole; print('torch', torch.__version__, 'numpy', numpy.__version__, 'recbole', recbole.__version__)" | tee -a "$OUT/gpu.txt"
python3 - <<'PY'
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
src = ".cache/le_gpu/smol_cfg"
torch.manual_seed(0)
m = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(src))
m.save_pretrained("/tmp/random-smollm2")
AutoTokenizer.from_pretrained(src).save_pretrained("/tmp/random-smollm2")
print("random SmolLM2-shaped model:", sum(p.numel() for p in m.parameters()) / 1e6, "M params")
PY
LE_OPTS="--le_model=/tmp/random-smollm2 --le_token_steps=0"
echo "== 1. LE build, paper profile, cuda"
start=$(date +%s)
python3 -m recbole_lea.le build --dataset ml-100k --data_path "$DATA" --profile paper $LE_OPTS > "$OUT/le_build.log" 2>&1
echo "le build exit $? in $(( $(date +%s) - start )) s"
grep -E "stage |device|dtype|pairwise|error|Error" "$OUT/le_build.log" | grep -v Warning | tail -30
echo "== 2. RL models on cuda, $EPOCHS epochs each"
for spec in SASRec SA2C SA2C_LEA; do
  start=$(date +%s)
  extra=""
  [ "$spec" = SA2C_LEA ] && extra="--le_profile=paper $LE_OPTS --variant=LEASR"
  python3 run_recbole_lea.py --model=$spec --dataset=ml-100k --data_path=$DATA --epochs=$EPOCHS \
    --switch_step=500 --stopping_step=100 --no-save --json "$OUT/$spec.json" $extra > "$OUT/$spec.log" 2>&1
  echo "$spec exit $? in $(( $(date +%s) - start )) s"
  tail -12 "$OUT/$spec.log"
done
python3 - "$OUT" <<'PY'
import json, statistics, sys
from pathlib import Path
out = Path(sys.argv[1])
rows = {}
for name in ("SASRec", "SA2C", "SA2C_LEA"):
    f = out / f"{name}.json"
    if f.is_file():
        r = json.loads(f.read_text())
        rows[name] = {"epoch_times": r.get("epoch_times"), "median_epoch_s": statistics.median(r["epoch_times"][1:] or r["epoch_times"]),
                      "test": {k: r["test_result"][k] for k in ("ndcg@10", "hit@10") if k in r.get("test_result", {})}}
print(json.dumps(rows, indent=1))
(out / "summary.json").write_text(json.dumps(rows, indent=1))
PY
