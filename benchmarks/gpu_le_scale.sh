#!/usr/bin/env bash
# The GPU benchmark of docs/le_scale.md as run on a lent GPU machine with no network: RecBole's
# wheel is carried in .whl (only `import recbole` is needed), the SmolLM2 tokenizer in
# .cache/le_gpu/smol_cfg, ml-100k and amazon-scientific's atomic files in atomic_datasets/.
# Writes its logs and JSON under ${OUT:-results/gpu}.
set -u -o pipefail
OUT=${OUT:-results/gpu}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
python3 - <<'PY' 2>&1 | tee -a "$OUT/gpu.txt"
import time, torch, transformers, peft
print("torch", torch.__version__, "transformers", transformers.__version__, "peft", peft.__version__)
a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16); b = torch.randn_like(a)
for _ in range(3): a @ b
torch.cuda.synchronize(); t = time.perf_counter()
for _ in range(10): a @ b
torch.cuda.synchronize(); dt = (time.perf_counter() - t) / 10
print(f"bf16 8192^3 matmul: {2 * 8192**3 / dt / 1e12:.0f} TFLOP/s (the measured ceiling beside the 989 datasheet peak)")
PY
tok=.cache/le_gpu/smol_cfg
timeout 300 python3 benchmarks/gpu_le_scale.py --tokenizer $tok --budget_s 240 --json "$OUT/default.json" 2>&1 | tee "$OUT/default.log"
timeout 150 python3 benchmarks/gpu_le_scale.py --tokenizer $tok --models 7b --budget_s 100 --set le_feat_batch=128 \
  --json "$OUT/feat128.json" 2>&1 | tee "$OUT/feat128.log"
