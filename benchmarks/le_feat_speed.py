"""Cheaper featurization on CPU against the build's float32 pass: int8 layers, or fewer LLM layers.

    python benchmarks/le_feat_speed.py --cache <le_cache_dir> --data_path <data_path> --users 20 --repeats 3 \
        --variant int8 | int8_channel | layers [--layers 15] [--json out.json]

Reads a finished build's item tokens, trained LE and candidates from its stage cache (cpu profile,
ml-100k), then featurizes the first ``--users`` training users with the model as built (float32)
and with a variant of it:

- ``int8`` / ``int8_channel``: LoRA merged into the frozen weights and every ``nn.Linear`` of the
  LLM body replaced by torch's dynamically quantised int8 layer (weights per tensor or per output
  channel; activations quantised per batch);
- ``layers``: only the first ``--layers`` decoder layers (what option ``le_llm_layers`` loads).
  The trained state belongs to the whole model, so only the speed figure means something here;
  the quality of an LE trained that way is measured on its own build (``probe_le.py``).

The two alternate ``--repeats`` times with ``--threads`` torch threads; the speed figure is the
ratio of the medians. Quality: how often the reward of the true next item beats the sampled
negative's under each (the figure ``probe_le.py`` reports over all training rows), their agreement
row by row, the correlation of the rewards and the cosine of the states.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
import warnings
from pathlib import Path

import numpy as np
import torch


def variant_copy(model: torch.nn.Module, variant: str, layers: int) -> torch.nn.Module:
    """A copy of the LEModel with the variant applied."""
    if variant == "layers":
        from recbole_lea.le.llm import keep_layers

        cut = copy.deepcopy(model)
        keep_layers(cut.causal_lm(), layers, Path("."))
        return cut
    return quantized_copy(model, variant == "int8_channel")


def quantized_copy(model: torch.nn.Module, per_channel: bool) -> torch.nn.Module:
    """A copy of the LEModel whose LLM has LoRA merged and its body's linear layers in int8
    (weights per tensor, or per output channel)."""
    from torch.ao.quantization import default_dynamic_qconfig, per_channel_dynamic_qconfig, quantize_dynamic

    q = copy.deepcopy(model)
    q.llm = q.llm.merge_and_unload()
    with warnings.catch_warnings():  # torch's quantised-tensor deprecation notice, once per layer
        warnings.simplefilter("ignore", UserWarning)
        quantize_dynamic(
            q.causal_lm().model,
            {torch.nn.Linear: per_channel_dynamic_qconfig if per_channel else default_dynamic_qconfig},
            dtype=torch.qint8,
            inplace=True,
        )
    return q


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cache", required=True, help="le_cache_dir of a finished cpu-profile build")
    ap.add_argument("--data_path", required=True, help="data_path of that build (holds ml-100k/)")
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--users", type=int, default=60, help="first N training users")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--variant", choices=("int8", "int8_channel", "layers"), default="int8")
    ap.add_argument("--layers", type=int, default=15, help="decoder layers kept by --variant layers")
    ap.add_argument("--json", default="")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    from recbole_lea.le.build import featurize_inputs, plan_le
    from recbole_lea.le.config import resolve_config
    from recbole_lea.le.data import load_base, training_item_pool, training_streams
    from recbole_lea.le.llm import load_llm
    from recbole_lea.le.model import LEModel, prefix_ids, stream_features

    overrides = {"le_cache_dir": a.cache, "le_threads": a.threads}

    cfg = resolve_config(a.dataset, "cpu", overrides, a.data_path)
    plan = plan_le(a.dataset, a.data_path, cfg)
    stage = {}
    for name in ("item_tokens", "le_train", "candidates"):
        found = sorted((Path(a.cache) / "stages").glob(f"{name}-*"))
        if len(found) != 1:
            raise SystemExit(f"{a.cache}: expected one {name} stage, found {len(found)}")
        stage[name] = found[0]
    base = load_base(Path(a.data_path), a.dataset, cfg, plan.split)
    streams = training_streams(base, cfg)
    pool = training_item_pool(streams)
    cand = np.load(stage["candidates"] / "candidates.npy")
    _neg, _aug, branches, _t = featurize_inputs(streams, pool, cand, cfg, len(base.inter))
    llm, tok, _src, _dev, _dt = load_llm(cfg)
    model = LEModel(llm, torch.load(stage["item_tokens"] / "item_tokens.pt", weights_only=True), cfg)
    model.load_trainable_state(torch.load(stage["le_train"] / "le_state.pt", weights_only=True))
    model.eval()
    q = variant_copy(model, a.variant, a.layers)
    prefix = prefix_ids(tok, cfg)
    users = [s.items for s in streams[: a.users]]
    br = branches[: a.users]
    times: dict[str, list[float]] = {"float32": [], "variant": []}
    out: dict[str, list] = {}
    for _ in range(a.repeats):
        for name, m in (("float32", model), ("variant", q)):
            t = time.perf_counter()
            out[name] = stream_features(m, prefix, users, br, cfg)
            times[name].append(time.perf_counter() - t)
    steps = int(sum(len(u) for u in users))
    pos = {k: np.concatenate([r["pos_reward"] for r in v]) for k, v in out.items()}
    neg = {k: np.concatenate([r["branch_reward"][:, 0] for r in v]) for k, v in out.items()}
    st = {k: np.concatenate([r["states"] for r in v]) for k, v in out.items()}
    right = {k: float(np.mean((pos[k] > neg[k]) + 0.5 * (pos[k] == neg[k]))) for k in out}
    cos = np.sum(st["float32"] * st["variant"], 1) / (
        np.linalg.norm(st["float32"], axis=1) * np.linalg.norm(st["variant"], axis=1) + 1e-12
    )
    med = {k: statistics.median(v) for k, v in times.items()}
    res = {
        "command": "python benchmarks/le_feat_int8.py " + " ".join(f"--{k} {v}" for k, v in vars(a).items() if v),
        "torch": torch.__version__,
        "threads": a.threads,
        "users": len(users),
        "steps": steps,
        "rows": int(len(pos["float32"])),
        "seconds": {k: [round(x, 2) for x in v] for k, v in times.items()},
        "steps_per_s": {k: round(steps / v, 1) for k, v in med.items()},
        "speedup": round(med["float32"] / med["variant"], 3),
        "reward_right_share": {k: round(v, 4) for k, v in right.items()},
        "rows_same_verdict": round(
            float(np.mean((pos["float32"] > neg["float32"]) == (pos["variant"] > neg["variant"]))), 4
        ),
        "reward_corr": round(
            float(np.corrcoef(np.r_[pos["float32"], neg["float32"]], np.r_[pos["variant"], neg["variant"]])[0, 1]), 5
        ),
        "state_cosine_median": round(float(np.median(cos)), 5),
        "state_cosine_min": round(float(cos.min()), 5),
        "loadavg": list(__import__("os").getloadavg()),
    }
    print(json.dumps(res, indent=1))
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
