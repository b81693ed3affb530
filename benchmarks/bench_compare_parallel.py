"""A comparison with runs at once on Ray against the same comparison one run after another.

The comparison: ``--models`` (default SASRec GRU4Rec SA2C) x ``--seeds`` (default 2) on
``--dataset`` (default ml-100k), ``--epochs 2``, ``--threads 1``: 6 runs. Each repeat runs
``run_compare_lea.py`` as its own process from an EMPTY output folder (nothing read from cache),
alternately with ``--max_concurrent 1`` (in-process, no Ray) and ``--max_concurrent N``
(``--concurrency``, default 2, through a local loopback-only Ray): 1, N, 1, N, ... ``--repeats``
times each (default 3). Ray's start-up cost is measured on its own: a process that starts the
same local Ray (``ray_session``), runs one empty task and stops it, ``--repeats`` times.

Output: ``--out`` (default ``results/bench_compare_parallel/bench.json``): the machine, the
command of each comparison, every wall time, the medians, their ratio (one after another / at
once), the median Ray start-up (start, one empty task, stop) and the same per comparison; a table
is printed. The comparisons' folders are under ``--output_dir`` (default
``results/bench_compare_parallel/``), emptied before each repeat.

    python benchmarks/bench_compare_parallel.py                      # the 6-run ml-100k benchmark
    python benchmarks/bench_compare_parallel.py --epochs 1 --repeats 1 --tiny   # a smoke test
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from recbole_lea.experiments.runner import write_json_atomic  # noqa: E402

#: what the Ray start-up probe runs (a process of its own, as a comparison's driver is)
RAY_PROBE = """
import sys, time
from pathlib import Path
start = time.perf_counter()
import ray
from recbole_lea.experiments.ray_runtime import ray_session
with ray_session(None, int(sys.argv[2]), Path(sys.argv[1]), quiet=True):
    up = time.perf_counter()
    ray.get(ray.remote(lambda: None).options(num_cpus=1).remote())
    first = time.perf_counter()
print(f"{up - start:.4f} {first - start:.4f} {time.perf_counter() - start:.4f}")
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="ml-100k")
    p.add_argument("--data_path", default=None, help="folder holding <dataset>/ (default atomic_datasets)")
    p.add_argument("--models", nargs="+", default=["SASRec", "GRU4Rec", "SA2C"])
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--concurrency", type=int, default=2, help="--max_concurrent of the parallel comparison")
    p.add_argument("--repeats", type=int, default=3, help="comparisons of each kind (median)")
    p.add_argument("--tiny", action="store_true", help="smoke test: a tiny generated dataset and model")
    p.add_argument("--output_dir", default=str(REPO / "results" / "bench_compare_parallel"))
    p.add_argument("--out", default=None, help="the JSON summary (default <output_dir>/bench.json)")
    return p.parse_args(argv)


def machine() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "loadavg_at_start": os.getloadavg(),
    }


def command(args: argparse.Namespace, output_dir: Path, max_concurrent: int) -> list[str]:
    """The ``run_compare_lea.py`` command line of one comparison."""
    cmd = [sys.executable, str(REPO / "run_compare_lea.py"), f"--dataset={args.dataset}", "--models", *args.models]
    cmd += ["--seeds", str(args.seeds), f"--epochs={args.epochs}", "--threads", str(args.threads)]
    cmd += ["--max_concurrent", str(max_concurrent), f"--output_dir={output_dir}", "--quiet"]
    if args.data_path:
        cmd.append(f"--data_path={args.data_path}")
    if args.tiny:
        cmd += ["--hidden_size=8", "--embedding_size=8", "--inner_size=8", "--train_batch_size=64"]
    return cmd


def timed_comparison(args: argparse.Namespace, output_dir: Path, max_concurrent: int) -> float:
    """Wall time of one comparison from an empty output folder (its own process)."""
    shutil.rmtree(output_dir, ignore_errors=True)
    output_dir.mkdir(parents=True)
    start = time.perf_counter()
    done = subprocess.run(command(args, output_dir, max_concurrent), capture_output=True, text=True, cwd=output_dir)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"comparison failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    runs = sorted((output_dir / "runs").glob("*.json"))
    if len(runs) != len(args.models) * args.seeds:
        raise SystemExit(f"expected {len(args.models) * args.seeds} run records in {output_dir}, found {len(runs)}")
    return wall


def ray_startup(output_dir: Path, num_cpus: int) -> dict[str, float]:
    """Seconds to a running local Ray, to the end of one empty task, and to Ray stopped."""
    output_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in [str(REPO), os.environ.get("PYTHONPATH")] if p)}
    done = subprocess.run(
        [sys.executable, "-c", RAY_PROBE, str(output_dir), str(num_cpus)], capture_output=True, text=True, env=env
    )
    if done.returncode != 0:
        raise SystemExit(f"Ray probe failed:\n{done.stderr[-3000:]}")
    up, first, total = (float(x) for x in done.stdout.split()[-3:])
    return {"ray_up_s": up, "first_task_done_s": first, "start_task_stop_s": total}


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.tiny and not args.data_path:
        from recbole_lea.le.testing import write_tiny_dataset

        args.data_path = tempfile.mkdtemp(prefix="bench_cmp_data_")
        write_tiny_dataset(Path(args.data_path))
        args.dataset = "tiny"
    out_dir = Path(args.output_dir).resolve()
    summary: dict[str, Any] = {"machine": machine(), "args": vars(args).copy()}
    walls: dict[str, list[float]] = {"one_after_another": [], "at_once": []}
    for i in range(args.repeats):
        for kind, mc in (("one_after_another", 1), ("at_once", args.concurrency)):
            wall = timed_comparison(args, out_dir / f"{kind}_{i}", mc)
            walls[kind].append(wall)
            print(f"repeat {i + 1}/{args.repeats} --max_concurrent {mc}: {wall:.1f} s", flush=True)
    probes = [ray_startup(out_dir / f"ray_probe_{i}", args.concurrency * args.threads) for i in range(args.repeats)]
    summary["commands"] = {
        "one_after_another": command(args, out_dir / "one_after_another_<i>", 1),
        "at_once": command(args, out_dir / "at_once_<i>", args.concurrency),
    }
    summary["wall_s"] = walls
    summary["median_wall_s"] = {k: statistics.median(v) for k, v in walls.items()}
    summary["speedup"] = summary["median_wall_s"]["one_after_another"] / summary["median_wall_s"]["at_once"]
    summary["ray_startup"] = probes
    summary["median_ray_startup_s"] = {k: statistics.median(p[k] for p in probes) for k in probes[0]}
    summary["runs_per_comparison"] = len(args.models) * args.seeds
    return summary


def print_table(summary: dict[str, Any]) -> None:
    med = summary["median_wall_s"]
    ray_cost = summary["median_ray_startup_s"]
    mc = summary["args"]["concurrency"]
    print()
    print(f"| comparison ({summary['runs_per_comparison']} runs) | wall times (s) | median (s) |")
    print("|---|---|---:|")
    for kind, label in (("one_after_another", "--max_concurrent 1"), ("at_once", f"--max_concurrent {mc}")):
        times = ", ".join(f"{t:.1f}" for t in summary["wall_s"][kind])
        print(f"| {label} | {times} | {med[kind]:.1f} |")
    print()
    print(f"speed-up (median one after another / median at once): {summary['speedup']:.2f}x")
    print(
        f"Ray start-up per comparison (median): running after {ray_cost['ray_up_s']:.1f} s, first task done after "
        f"{ray_cost['first_task_done_s']:.1f} s, started + stopped in {ray_cost['start_task_stop_s']:.1f} s"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    summary = run(args)
    out = Path(args.out or Path(args.output_dir) / "bench.json")
    write_json_atomic(out, summary)
    print_table(summary)
    print(f"\nJSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
