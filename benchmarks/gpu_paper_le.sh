#!/usr/bin/env bash
# The `paper` LE profile with the REAL embedded SmolLM2-135M on a lent GPU, packed for the way back:
#   bash benchmarks/gpu_paper_le.sh
# The 98 MB GGUF exceeds what one device call carries (64 MiB), so it travels in three parts made
# here with `split -n 3 -d <gguf> .gguf_parts/part` (one part per folder .gguf_parts/{a,b,c}, git-ignored);
# two earlier calls copy parts a and b to /tmp/gg on the warm machine, this one brings part c.
# Needs .whl (RecBole, pandas<3, gguf ... as cp312 wheels) and .cache/le_gpu (ml-100k atomic files).
# Output in $OUT: the build log and le_cols.npz.part* (benchmarks/le_pack.py unpack them here).
set -u
OUT=${OUT:-$PWD/gpu_out}
mkdir -p "$OUT" /tmp/gg
cat /tmp/gg/part00 /tmp/gg/part01 .gguf_parts/c/part02 > /tmp/smol.gguf || exit 1
echo "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53  /tmp/smol.gguf" | sha256sum -c || exit 1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 RECBOLE_LEA_CACHE=/tmp/le_cache
mkdir -p /tmp/ad && cp -r .cache/le_gpu/data/ml-100k /tmp/ad/
start=$(date +%s)
python3 -m recbole_lea.le build --dataset ml-100k --data_path /tmp/ad --profile paper --le_model /tmp/smol.gguf > "$OUT/paper_le_build.log" 2>&1
echo "build exit $? in $(( $(date +%s) - start )) s"
LE_DIR=$(tail -1 "$OUT/paper_le_build.log")  # the build prints its LE folder last
grep -E "stage |LE epoch|item tokens:|accuracy" "$OUT/paper_le_build.log" | grep -v Warning | cut -c1-200 | tail -20
cp "$LE_DIR/manifest.json" "$OUT/paper_le_manifest.json"
python3 benchmarks/le_pack.py pack "$LE_DIR" "$OUT" --max_mb 15
