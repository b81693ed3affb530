"""Training-epoch and full-sort inference time of our RL models against RecBole's built-in backbone.

Both models are built in the same process on the same dataloaders, with 1 torch thread, and
their epochs are interleaved (A, B, A, B, ...) so machine noise hits both alike; the figure is the
ratio of medians.

    python benchmarks/bench_rl_speed.py --dataset=ml-100k --model=SA2C --baseline=SASRec --reps=5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
import yaml

from recbole_lea import registry
from recbole_lea.quick_start import build_config
from recbole_lea.trainer import get_trainer


def setup(model: str, dataset: str, overrides: dict):  # type: ignore[no-untyped-def]
    from recbole.data import data_preparation
    from recbole.utils import init_seed

    config = build_config(model, dataset, config_dict=overrides)
    init_seed(config["seed"], True)
    ds = registry.create_dataset(config)
    train, valid, test = data_preparation(config, ds)
    net = registry.get_model(model)(config, train._dataset)
    trainer = get_trainer(config["MODEL_TYPE"], model)(config, net)
    return trainer, train, test


def time_inference(trainer, test, passes: int = 5) -> float:  # type: ignore[no-untyped-def]
    """Seconds for ``passes`` full-sort passes over every test user (model forward only)."""
    model = trainer.model
    model.eval()
    batches = [batch[0] for batch in test]
    start = time.perf_counter()
    with torch.no_grad():
        for _ in range(passes):
            for interaction in batches:
                model.full_sort_predict(interaction)
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--dataset", default="ml-100k")
    p.add_argument("--model", default="SA2C")
    p.add_argument("--baseline", default="SASRec")
    p.add_argument("--backbone", default="SASRec")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--data_path", default="atomic_datasets/")
    p.add_argument("--out", default="docs/results/bench_rl_speed.json")
    p.add_argument(
        "--variants",
        nargs="*",
        default=[],
        help="extra settings of --model timed in the same interleaved loop, each 'key=value[,key=value]'",
    )
    args = p.parse_args()
    torch.set_num_threads(1)
    overrides = {"backbone": args.backbone, "le_auto_build": False, "data_path": args.data_path}
    runs = {name: setup(name, args.dataset, overrides) for name in (args.baseline, args.model)}
    for spec in args.variants:
        extra = {k: yaml.safe_load(v) for k, v in (kv.split("=", 1) for kv in spec.split(","))}
        runs[f"{args.model}[{spec}]"] = setup(args.model, args.dataset, {**overrides, **extra})
    epochs: dict[str, list[float]] = {n: [] for n in runs}
    infer: dict[str, list[float]] = {n: [] for n in runs}
    for rep in range(args.reps):
        for name, (trainer, train, test) in runs.items():
            start = time.perf_counter()
            trainer._train_epoch(train, rep)
            epochs[name].append(time.perf_counter() - start)
            infer[name].append(time_inference(trainer, test))
        print(f"rep {rep}: " + ", ".join(f"{n} epoch {epochs[n][-1]:.2f}s infer {infer[n][-1]:.3f}s" for n in runs))
    med_e = {n: statistics.median(v) for n, v in epochs.items()}
    med_i = {n: statistics.median(v) for n, v in infer.items()}
    result = {
        "command": "python benchmarks/bench_rl_speed.py "
        + " ".join(f"--{k}={v}" for k, v in vars(args).items() if k != "out"),
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch thread, torch {torch.__version__}",
        "epoch_seconds": epochs,
        "inference_seconds": infer,
        "median_epoch": med_e,
        "median_inference": med_i,
        "epoch_ratio": med_e[args.model] / med_e[args.baseline],
        "inference_ratio": med_i[args.model] / med_i[args.baseline],
        "variant_epoch_ratios": {n: med_e[n] / med_e[args.baseline] for n in runs if n.startswith(f"{args.model}[")},
        "loadavg_at_end": os.getloadavg(),
    }
    keys = ("median_epoch", "median_inference", "epoch_ratio", "inference_ratio", "variant_epoch_ratios")
    print(json.dumps({k: result[k] for k in keys}, indent=2))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
