"""Ray Tune sweep vs sequential runs, and the Ray path's overhead over a plain run.

1. A 3 x 3 grid (w_ah x w_aq of SA2C_LEA when ml-100k's default LE is built; otherwise a
   clearly labelled stand-in: SA2C over learning_rate x q_weight) run
   (a) one after another in this process (plain ``run_one``, torch threads 1), and
   (b) as a Ray Tune sweep with ``--max_concurrent`` trials at once (1 CPU and 1 torch thread each).
2. Overhead: the same single config as a plain run and as a one-trial Ray sweep (whole
   ``run_sweep`` wall time, Ray start and shutdown included), repeated ``--repeats`` times
   alternately; medians and their ratio.

Usage (results go to results/bench_tune/ and a JSON summary is printed):

    python benchmarks/bench_tune.py --epochs 3 --repeats 3
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from recbole_lea.experiments.params import parse_params_file  # noqa: E402
from recbole_lea.experiments.runner import prepare_shared, run_one, write_json_atomic  # noqa: E402
from recbole_lea.experiments.tune import run_sweep  # noqa: E402
from recbole_lea.options import PROPERTIES  # noqa: E402


def machine() -> dict[str, Any]:
    import torch

    return {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu": _cpu_name(),
        "loadavg_at_start": os.getloadavg(),
    }


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _le_built(data_path: str) -> bool:
    """Whether the LE of ml-100k with the default options exists (verified)."""
    from recbole_lea.errors import ConfigError
    from recbole_lea.quick_start import le_dir_of, resolve_run

    try:
        le_dir_of(resolve_run("SA2C_LEA", "ml-100k", None, {"data_path": data_path}))
    except ConfigError:
        return False
    return True


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--data_path", default=str(REPO / "atomic_datasets"))
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3, help="overhead repeats (median)")
    p.add_argument("--overhead_epochs", type=int, default=None, help="epochs of the overhead runs (default --epochs)")
    p.add_argument("--max_concurrent", type=int, default=2)
    p.add_argument("--output_dir", default=str(REPO / "results" / "bench_tune"))
    p.add_argument("--skip_grid", action="store_true")
    p.add_argument("--skip_overhead", action="store_true")
    args = p.parse_args()

    out = Path(args.output_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    lea = _le_built(args.data_path)
    if lea:
        model, params_file, heat = "SA2C_LEA", PROPERTIES / "experiments" / "w_grid.hyper", ("w_ah", "w_aq")
        label = "SA2C_LEA (LEASR) w_ah x w_aq"
        extra: dict[str, Any] = {"variant": "LEASR"}
    else:
        model, params_file = "SA2C", PROPERTIES / "experiments" / "sa2c_standin.hyper"
        heat = ("learning_rate", "q_weight")
        label = "STAND-IN (ml-100k's default LE not built yet): SA2C learning_rate x q_weight"
        extra = {}
    base = {"epochs": args.epochs, "stopping_step": 100, "data_path": args.data_path, **extra}
    specs = parse_params_file(params_file)
    grid = [dict(zip([s.name for s in specs], values)) for values in itertools.product(*[s.values for s in specs])]
    summary: dict[str, Any] = {
        "machine": machine(),
        "command": " ".join([sys.executable, *sys.argv]),
        "model": model,
        "grid": label,
        "params_file": str(params_file),
        "base_config": base,
        "n_configs": len(grid),
    }
    base.update(prepare_shared(model, "ml-100k", args.data_path, None, base))
    print(json.dumps(summary, indent=2), flush=True)

    if not args.skip_grid:
        start = time.perf_counter()
        seq = []
        for i, point in enumerate(grid):
            record = run_one(model, "ml-100k", None, {**base, **point}, out / "sequential" / f"cfg{i}", torch_threads=1)
            seq.append(
                {
                    **point,
                    "status": record["status"],
                    "wall_time_s": record.get("wall_time_s"),
                    "valid_ndcg@10": (record.get("best_valid_result") or {}).get("ndcg@10"),
                }
            )
            print(f"sequential {i + 1}/{len(grid)}: {seq[-1]}", flush=True)
        summary["sequential_wall_s"] = time.perf_counter() - start
        summary["loadavg_after_sequential"] = os.getloadavg()
        summary["sequential_runs"] = seq
        write_json_atomic(out / "summary.json", summary)

        start = time.perf_counter()
        sweep = run_sweep(
            model=model,
            dataset="ml-100k",
            params_file=params_file,
            config_dict=dict(base),
            data_path=args.data_path,
            output_dir=out / "sweep",
            max_concurrent=args.max_concurrent,
            cpus_per_trial=1,
            num_cpus=args.max_concurrent,
            heatmap=heat,
            quiet=True,
        )
        summary["ray_wall_s"] = time.perf_counter() - start
        summary["loadavg_after_ray"] = os.getloadavg()
        summary["ray_tuner_fit_s"] = sweep["wall_time_s"]
        summary["ray_n_ok"] = sweep["n_ok"]
        summary["speedup_sequential_over_ray"] = summary["sequential_wall_s"] / summary["ray_wall_s"]
        summary["heatmap_png"] = sweep.get("heatmap_png")
        print(f"ray sweep: {summary['ray_wall_s']:.1f}s, sequential: {summary['sequential_wall_s']:.1f}s", flush=True)
        write_json_atomic(out / "summary.json", summary)

    if not args.skip_overhead:
        point = grid[len(grid) // 2]
        one = out / "one.hyper"
        one.write_text("".join(f"{k} choice [{v!r}]\n" for k, v in point.items()))
        if args.overhead_epochs:
            base = {**base, "epochs": args.overhead_epochs}
        summary["overhead_epochs"] = base["epochs"]
        plain: list[float] = []
        ray_times: list[float] = []
        fit_times: list[float] = []
        trial_runs: list[float] = []
        plain_epochs: list[list[float]] = []
        trial_epochs: list[list[float]] = []
        for r in range(args.repeats):
            t = time.perf_counter()
            record = run_one(model, "ml-100k", None, {**base, **point}, out / "overhead" / f"plain{r}", torch_threads=1)
            plain.append(time.perf_counter() - t)
            assert record["status"] == "ok", record.get("traceback")
            plain_epochs.append(record["epoch_times"])
            t = time.perf_counter()
            sweep = run_sweep(
                model=model,
                dataset="ml-100k",
                params_file=one,
                config_dict=dict(base),
                data_path=args.data_path,
                output_dir=out / "overhead" / f"ray{r}",
                max_concurrent=1,
                cpus_per_trial=1,
                num_cpus=1,
                heatmap=heat,
                quiet=True,
            )
            ray_times.append(time.perf_counter() - t)
            assert sweep["n_ok"] == 1
            fit_times.append(sweep["wall_time_s"])
            inside = json.loads((Path(sweep["best_trial_dir"]) / "trial_result.json").read_text())
            trial_runs.append(inside["wall_time_s"])
            trial_epochs.append(inside["epoch_times"])
            print(f"overhead repeat {r}: plain {plain[-1]:.1f}s, ray {ray_times[-1]:.1f}s", flush=True)
        summary["overhead_point"] = point
        summary["plain_s"] = plain
        summary["ray_one_trial_s"] = ray_times
        summary["overhead_ratio_median"] = statistics.median(ray_times) / statistics.median(plain)
        summary["overhead_ratios"] = [r / q for r, q in zip(ray_times, plain)]
        summary["ray_tuner_fit_one_trial_s"] = fit_times
        summary["run_inside_ray_trial_s"] = trial_runs
        summary["plain_epoch_times_s"] = plain_epochs
        summary["ray_trial_epoch_times_s"] = trial_epochs
        summary["fixed_ray_cost_median_s"] = statistics.median(ray_times) - statistics.median(trial_runs)
        summary["loadavg_after_overhead"] = os.getloadavg()
        write_json_atomic(out / "summary.json", summary)
    print(json.dumps(summary, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
