#!/usr/bin/env bash
# Issue 22 on a lent GPU: amazon-scientific (leave-one-out, full ranking) with every arm trained
# to early stopping, several seeds, the runs spread over parallel 1-thread processes on one GPU.
#   bash benchmarks/gpu_rl_amazon.sh            (device tool; carry .whl atomic_datasets/amazon-scientific)
# Env: SEEDS (6), EPOCHS (cap, 100), P (parallel runs, 12), BUDGET_S (stop starting/kill after, 480),
# ARMS (model specs, space-separated). Jobs go seed-major, so a budget cut leaves whole seeds.
# Needs RecBole 1.2.1, colorlog, texttable, pandas<3 with pytz and tzdata as cp312 wheels in .whl/ (the image has
# pandas 3, whose copy-on-write turns RecBole's in-place fillna into no-ops; setup.cfg pins <3).
# Runs write under $RUNS (checkpoints stay there: too large to travel); their JSON records and logs
# are copied to $OUT/amazon, whose table is made afterwards with `run_compare_lea.py --stored`.
set -u -o pipefail
OUT=${OUT:-$PWD/gpu_out}
SEEDS=${SEEDS:-6}
EPOCHS=${EPOCHS:-100}
P=${P:-12}
BUDGET_S=${BUDGET_S:-480}
RUNS=${RUNS:-/tmp/amazon_runs}
ARMS=${ARMS:-"SASRec SA2C SA2C:ce_head=tied SNQN:ce_head=tied SA2C:ce_head=tied,target_dropout=false SA2C:ce_head=tied,learning_rate_phase2=0.0001"}
mkdir -p "$OUT/amazon/runs" "$RUNS"
rm -f "$RUNS/stop"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 TQDM_DISABLE=1
# a missing import ends the script here, not in each of the runs
python3 -c "import torch, numpy, pandas, recbole, recbole_lea; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'numpy', numpy.__version__, 'pandas', pandas.__version__, 'recbole', recbole.__version__)" | tee "$OUT/versions.txt" || exit 1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null | tee -a "$OUT/versions.txt"
jobs=$OUT/jobs.txt
: > "$jobs"
for ((i = 0; i < SEEDS; i++)); do
  for arm in $ARMS; do echo "$((2020 + i)) $arm" >> "$jobs"; done
done
one() {  # one run: seed, model spec; none starts once the budget is spent
  [ -e "$RUNS/stop" ] && return
  local log="$OUT/amazon/log_$1_${2//[^A-Za-z0-9_.=-]/_}.txt"
  python3 run_compare_lea.py --dataset=amazon-scientific --models "$2" --baseline "$2" --base_seed "$1" --seeds 1 \
    --threads 1 --output_dir "$RUNS" --epochs="$EPOCHS" > "$log" 2>&1
  local rc=$?
  echo "$(date +%T) seed $1 $2 exit $rc"
}
export -f one
export OUT EPOCHS RUNS
start=$(date +%s)
xargs -P "$P" -L 1 bash -c 'one "$0" "$1"' < "$jobs" &
xargs_pid=$!
# the watcher writes to a file: holding this script's stdout would keep a caller's pipe open to the end
(sleep "$BUDGET_S"; echo "budget of $BUDGET_S s spent: stopping the runs"; touch "$RUNS/stop"; pkill -f run_compare_lea.py) \
  > "$OUT/budget.txt" 2>&1 < /dev/null &
watch_pid=$!
wait "$xargs_pid"
pkill -P "$watch_pid" sleep 2>/dev/null
kill "$watch_pid" 2>/dev/null
cat "$OUT/budget.txt"
cp "$RUNS"/runs/*.json "$OUT/amazon/runs/" 2>/dev/null
echo "wall $(( $(date +%s) - start )) s for $(wc -l < "$jobs") jobs, $(ls "$OUT"/amazon/runs/*.json 2>/dev/null | wc -l) records"
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv 2>/dev/null
