"""LE benchmarks (results and commands in docs/le.md).

  python benchmarks/bench_le.py featurize [--users 50] [--naive_steps 120]   streaming vs naive throughput
  python benchmarks/bench_le.py build [--profile cpu] [--cache /tmp/x]        whole LE build: wall time, peak RSS
  python benchmarks/bench_le.py gpu-check                                     CUDA/bf16 streaming vs naive agreement

All use ml-100k under --data_path (converted on first use) and the real embedded SmolLM2.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recbole_lea import LOG_FORMAT  # noqa: E402
from recbole_lea.le.build import build_le  # noqa: E402
from recbole_lea.le.config import resolve_config  # noqa: E402
from recbole_lea.le.data import load_base, training_item_pool, training_streams  # noqa: E402
from recbole_lea.le.item_tokens import encode_sentences, init_item_tokens  # noqa: E402
from recbole_lea.le.llm import load_llm  # noqa: E402
from recbole_lea.le.model import LEModel, naive_stream_features, prefix_ids, step_context_start, stream_features  # noqa: E402
from recbole_lea.le.train import sample_negatives  # noqa: E402


def machine() -> dict:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "loadavg": os.getloadavg(),
        "torch_threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def prepare_ml100k(data_path: Path) -> None:
    if (data_path / "ml-100k" / "ml-100k.inter").exists():
        return
    try:
        from recbole_lea.datasets.ml100k import ensure_ml100k

        ensure_ml100k(str(data_path))
        return
    except Exception as exc:  # noqa: BLE001 -- fall back to a plain copy of the wheel's files
        print(f"ensure_ml100k failed ({exc!r}); copying the recbole wheel's ml-100k instead", file=sys.stderr)
    import pandas as pd
    import recbole

    src = Path(recbole.__file__).parent / "dataset_example" / "ml-100k"
    out = data_path / "ml-100k"
    out.mkdir(parents=True, exist_ok=True)
    inter = pd.read_csv(src / "ml-100k.inter", sep="\t", dtype=str)
    inter[["user_id:token", "item_id:token", "timestamp:float"]].to_csv(out / "ml-100k.inter", sep="\t", index=False)
    shutil.copyfile(src / "ml-100k.item", out / "ml-100k.item")


def _model_and_users(args: argparse.Namespace, overrides: dict):
    if args.le_model:
        overrides = {**overrides, "le_model": args.le_model}
    cfg = resolve_config("ml-100k", args.profile, overrides)
    torch.set_num_threads(cfg.le_threads or torch.get_num_threads())
    base = load_base(args.data_path, "ml-100k", cfg)
    llm, tok, _src, dev, _dt = load_llm(cfg)
    from recbole_lea.le.data import item_sentences

    table = init_item_tokens(llm, encode_sentences(tok, item_sentences(base, cfg), cfg), cfg, 0)
    model = LEModel(llm, table, cfg).to(dev).eval()
    streams = training_streams(base, cfg)
    pool = training_item_pool(streams)
    rng = np.random.default_rng(0)
    users = [streams[i] for i in np.sort(rng.choice(len(streams), size=args.users, replace=False))]
    return cfg, model, prefix_ids(tok, cfg), users, pool, rng


def bench_featurize(args: argparse.Namespace) -> dict:
    cfg, model, prefix, users, pool, rng = _model_and_users(args, {"le_cache_dir": args.cache} if args.cache else {})
    items = [u.items for u in users]
    branches = [sample_negatives(s, pool, rng)[:, None] for s in items]
    steps = int(sum(len(s) - 1 for s in items))
    t0 = time.perf_counter()
    got = stream_features(model, prefix, items, branches, cfg)
    t_stream = time.perf_counter() - t0
    # naive: one prompt per interaction (+ one per negative), on a random sample of the same steps
    all_steps = [(u, t) for u, s in enumerate(items) for t in range(len(s) - 1)]
    pick = [all_steps[i] for i in rng.choice(len(all_steps), size=min(args.naive_steps, len(all_steps)), replace=False)]
    diffs = []
    t0 = time.perf_counter()
    with torch.no_grad():
        for u, t in pick:
            s = items[u]
            start = step_context_start(len(s), cfg.le_chunk_len, cfg.le_history_len)[t]
            ctx = s[start : t + 1]
            st, r_pos = model.forward_prompt(prefix, ctx, int(s[t + 1]))
            _, r_neg = model.forward_prompt(prefix, ctx, int(branches[u][t, 0]))
            diffs.append(
                max(
                    abs(float(r_pos) - got[u]["pos_reward"][t]),
                    abs(float(r_neg) - got[u]["branch_reward"][t, 0]),
                    float(np.abs(st.float().cpu().numpy() - got[u]["states"][t]).max()),
                )
            )
    t_naive = time.perf_counter() - t0
    res = {
        "users": len(items),
        "steps": steps,
        "stream_s": t_stream,
        "stream_steps_per_s": steps / t_stream,
        "naive_sampled_steps": len(pick),
        "naive_s": t_naive,
        "naive_steps_per_s": len(pick) / t_naive,
        "speedup": (steps / t_stream) / (len(pick) / t_naive),
        "max_abs_diff_stream_vs_naive": max(diffs) if diffs else 0.0,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
    }
    return res


def bench_build(args: argparse.Namespace) -> dict:
    cache = args.cache or f"/tmp/le_bench_cache_{int(time.time())}"
    ov = {"le_cache_dir": cache}
    if args.le_model:
        ov["le_model"] = args.le_model
    t0 = time.perf_counter()
    out = build_le("ml-100k", args.data_path, args.profile, ov, _stop_after=args.stop_after or None)
    wall = time.perf_counter() - t0
    if args.stop_after:
        meta = json.loads((out / "meta.json").read_text())
        return {
            "wall_s": wall,
            "stopped_after": args.stop_after,
            "stage_meta": {k: v for k, v in meta.items() if k != "key"},
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
        }
    man = json.loads((out / "manifest.json").read_text())
    return {
        "wall_s": wall,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
        "stage_s": man.get("timings_s"),
        "rows": man.get("rows"),
        "out": str(out),
        "cache": cache,
    }


def gpu_check(args: argparse.Namespace) -> dict:
    """bf16 on CUDA: streaming vs naive agreement (looser tolerance), and fp32 for reference."""
    res = {}
    for dtype, tol in (("bfloat16", 0.15), ("float32", 1e-3)):
        args.users = 4
        ov = {"le_device": "cuda" if torch.cuda.is_available() else "cpu", "le_dtype": dtype, "le_chunk_len": 16}
        if args.cache:
            ov["le_cache_dir"] = args.cache
        cfg, model, prefix, users, pool, rng = _model_and_users(args, ov)
        items = [u.items[:40] for u in users]
        branches = [sample_negatives(s, pool, rng)[:, None] for s in items]
        got = stream_features(model, prefix, items, branches, cfg)
        worst = {"states": 0.0, "pos_reward": 0.0, "branch_reward": 0.0}
        for s, b, g in zip(items, branches, got, strict=True):
            ref = naive_stream_features(model, prefix, s, b, cfg)
            for k in worst:
                scale = max(1.0, float(np.abs(ref[k]).max()))
                worst[k] = max(worst[k], float(np.abs(g[k] - ref[k]).max()) / scale)
        res[dtype] = {
            "max_rel_diff": worst,
            "tolerance": tol,
            "ok": all(v <= tol for v in worst.values()),
            "device": str(model.device),
        }
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["featurize", "build", "gpu-check"])
    ap.add_argument("--data_path", type=Path, default=Path("atomic_datasets"))
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--cache", default="")
    ap.add_argument("--users", type=int, default=50)
    ap.add_argument("--naive_steps", type=int, default=120)
    ap.add_argument("--le_model", default="", help="override le_model (folder, id, smollm2)")
    ap.add_argument("--stop_after", default="", help="build: stop after this stage (item_tokens | le_train)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    prepare_ml100k(args.data_path)
    before = machine()
    fn = {"featurize": bench_featurize, "build": bench_build, "gpu-check": gpu_check}[args.what]
    res = fn(args)
    print(
        json.dumps(
            {"command": " ".join(sys.argv), "machine": before, "loadavg_after": os.getloadavg(), "result": res},
            indent=1,
            default=str,
        )
    )


if __name__ == "__main__":
    main()
