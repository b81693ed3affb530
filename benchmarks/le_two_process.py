"""The LE build of a real dataset in one process and in two CPU processes (``accelerate launch``,
gloo), each from an empty cache of its own: wall time, per-stage time, peak memory, and how far
the two LE folders are apart, file by file.

    python benchmarks/le_two_process.py --workdir /tmp/le2p --json docs/results/le-two-process-ml-100k.json

Both builds use the same threads per process (``--le_threads``, default 1), since CPU float sums
depend on the thread count. docs/le.md ("Equality") says what must match: item tokens,
candidates and featurization bitwise given the same trained LE; LE training within rounding (its
gradients are summed across processes in another order), so rewards and states that depend on it
differ in the last digits, and a near-tie between two candidates can flip an augmented pick. This
script reports each of those measured on the whole dataset; on a 2-core machine no speed-up is
expected (the point is that the files agree).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recbole_lea.files import sha256_file  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build(name: str, procs: int, a: argparse.Namespace) -> dict[str, Any]:
    """One build into ``<workdir>/<name>`` (its own data folder and cache); returns wall time,
    the peak RSS of its largest process and the LE folder."""
    from recbole_lea.datasets.ml100k import ensure_ml100k

    home = Path(a.workdir) / name
    if home.exists():
        shutil.rmtree(home)
    data = home / "data"
    src = Path(ensure_ml100k(str(ROOT / "atomic_datasets")))
    shutil.copytree(src, data / src.name)
    build_args = ["build", "--dataset", a.dataset, "--data_path", str(data), "--profile", a.profile]
    build_args += ["--le_cache_dir", str(home / "cache"), "--le_threads", str(a.threads)]
    if procs == 1:
        cmd = [sys.executable, "-m", "recbole_lea.le", *build_args]
    else:
        cmd = [sys.executable, "-m", "accelerate.commands.accelerate_cli", "launch", "--multi_gpu"]
        cmd += ["--num_processes", str(procs), "--num_machines", "1", "--mixed_precision", "no"]
        cmd += ["--dynamo_backend", "no", "--main_process_port", str(free_port()), "-m", "recbole_lea.le", *build_args]
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads), "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}
    log = home / "build.log"
    print(f"{name}: {' '.join(cmd[1:])}", flush=True)
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        peak = peak_tree_rss(proc)
    wall = time.perf_counter() - t0
    rc = proc.returncode
    if rc != 0:
        raise SystemExit(f"{name}: build failed (exit {rc}); see {log}")
    folders = sorted((data / "lea").glob(f"{a.dataset}-*/{a.dataset}-lea"))
    if len(folders) != 1:
        raise SystemExit(f"{name}: expected one LE folder under {data / 'lea'}, found {folders}")
    manifest = json.loads((folders[0] / "manifest.json").read_text())
    out = {
        "processes": procs,
        "wall_s": round(wall, 1),
        "peak_rss_gib": round(peak / 2**30, 2),
        "loadavg_after": os.getloadavg(),
        "timings_s": manifest.get("timings_s"),
        "fingerprint": manifest.get("fingerprint"),
        "le_folder": str(folders[0]),
        "log": str(log),
    }
    print(f"{name}: {wall:.0f} s, peak RSS {out['peak_rss_gib']} GiB, stages {out['timings_s']}", flush=True)
    (home / "run.json").write_text(json.dumps(out, indent=1))
    return out


def compare_stages(one: Path, two: Path) -> dict[str, dict[str, bool]]:
    """Each cached stage file of the two builds' caches: bitwise equal or not (meta.json, which
    holds times and paths, left out)."""
    out: dict[str, dict[str, bool]] = {}
    for stage in sorted(p for p in (one / "stages").iterdir() if p.is_dir() and not p.name.startswith(".")):
        other = two / "stages" / stage.name
        files = [f for f in sorted(stage.iterdir()) if f.is_file() and f.name not in ("meta.json", "COMPLETE")]
        out[stage.name.split("-")[0]] = {
            f.name: other.joinpath(f.name).is_file() and sha256_file(f) == sha256_file(other / f.name) for f in files
        }
    return out


def tensor_rel_diffs(f1: Path, f2: Path) -> dict[str, float]:
    """max |difference| / max |value| of each floating tensor of two saved tensors (or dicts of them)."""
    t1, t2 = torch.load(f1, weights_only=True), torch.load(f2, weights_only=True)
    t1 = t1 if isinstance(t1, dict) else {"tensor": t1}
    t2 = t2 if isinstance(t2, dict) else {"tensor": t2}
    return {
        k: float((t1[k].double() - t2[k].double()).abs().max() / t1[k].double().abs().max().clamp_min(1e-30))
        for k in t1
        if torch.is_tensor(t1[k]) and t1[k].is_floating_point()
    }


def trained_diff(one: Path, two: Path) -> dict[str, float]:
    """The LE training stage's trained tensors of two caches: the largest and the median, over
    tensors, of max |difference| / max |value| of each tensor."""
    (f1,) = sorted((one / "stages").glob("le_train-*/le_state.pt"))
    (f2,) = sorted((two / "stages").glob("le_train-*/le_state.pt"))
    rel = list(tensor_rel_diffs(f1, f2).values())
    return {"tensors": len(rel), "max_rel_diff_max": max(rel), "max_rel_diff_median": float(np.median(rel))}


def spread(d1: pd.DataFrame, d2: pd.DataFrame) -> dict[str, Any]:
    """How far the LE feedback of two builds is apart on the training rows, in the terms that
    matter to the RL: reward agreement, the order of the positive and the negative, the states
    after aligning each PCA component's sign (a component's sign is arbitrary: a near-tie of two
    singular vectors' signs flips it whole), the augmented picks."""
    rows = d1["le_train"].astype(float).to_numpy() > 0
    out: dict[str, Any] = {"training_rows": int(rows.sum())}
    for c in ("le_reward", "le_neg_reward"):
        x, y = d1[c].astype(float).to_numpy()[rows], d2[c].astype(float).to_numpy()[rows]
        diff = np.abs(x - y)
        out[c] = {
            "corr": float(np.corrcoef(x, y)[0, 1]),
            "abs_diff_p50_p99_max": [float(np.median(diff)), float(np.percentile(diff, 99)), float(diff.max())],
            "abs_value_p50": float(np.median(np.abs(x))),
        }
    order1 = d1["le_reward"].astype(float).to_numpy() > d1["le_neg_reward"].astype(float).to_numpy()
    order2 = d2["le_reward"].astype(float).to_numpy() > d2["le_neg_reward"].astype(float).to_numpy()
    out["positive_above_negative_agreement"] = float((order1 == order2)[rows].mean())
    s1, s2 = seq(d1["le_state"][rows]), seq(d2["le_state"][rows])
    sign = np.sign((s1 * s2).sum(0))
    diff = np.abs(s1 - s2 * sign)
    out["state_components_sign_flipped"] = int((sign < 0).sum())
    out["state_abs_diff_p50_p99_after_sign"] = [float(np.median(diff)), float(np.percentile(diff, 99))]
    out["state_abs_value_p50"] = float(np.median(np.abs(s1)))
    aug = d1["le_aug_mask"].astype(float).to_numpy() > 0
    out["augmented_rows"] = int(aug.sum())
    out["augmented_picks_differ"] = int((d1["le_aug_id"] != d2["le_aug_id"]).to_numpy()[aug].sum())
    return out


def peak_tree_rss(proc: subprocess.Popen[bytes], every_s: float = 1.0) -> int:
    """Wait for ``proc``; return the largest RSS of it and all its descendants together, sampled
    every ``every_s`` seconds (the launcher and each build process)."""
    import psutil

    root, peak = psutil.Process(proc.pid), 0
    while proc.poll() is None:
        try:
            total = sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])
        except psutil.Error:  # a process ended between listing and reading
            continue
        peak = max(peak, total)
        time.sleep(every_s)
    return peak


def read_inter(path: Path) -> pd.DataFrame:
    df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    df.columns = [c.split(":")[0] for c in df.columns]
    return df


def seq(col: pd.Series) -> np.ndarray:
    return np.array([np.array(v.split(), dtype=np.float64) for v in col])


def compare(one: Path, two: Path) -> dict[str, Any]:
    """File by file: bitwise equal or not; for the interaction file the largest difference of each
    float column and the rows whose augmented pick differs; for tensors the largest difference
    relative to each tensor's largest magnitude."""
    out: dict[str, Any] = {}
    names = sorted(p.name for p in one.iterdir())
    if names != sorted(p.name for p in two.iterdir()):
        out["file_lists_differ"] = [names, sorted(p.name for p in two.iterdir())]
    for name in names:
        f1, f2 = one / name, two / name
        if not f2.is_file():
            continue
        r: dict[str, Any] = {"bitwise_equal": sha256_file(f1) == sha256_file(f2)}
        if name.endswith(".inter") and not r["bitwise_equal"]:
            d1, d2 = read_inter(f1), read_inter(f2)
            r["rows"] = [len(d1), len(d2)]
            r["spread"] = spread(d1, d2)
            for c in d1.columns:
                if (d1[c] == d2[c]).all():
                    continue
                if c in ("le_state", "le_next_state"):
                    r[f"{c}_max_abs_diff"] = float(np.abs(seq(d1[c]) - seq(d2[c])).max())
                elif c.endswith("_id"):
                    r[f"{c}_rows_differ"] = int((d1[c] != d2[c]).sum())
                else:
                    x1, x2 = d1[c].astype(float).to_numpy(), d2[c].astype(float).to_numpy()
                    r[f"{c}_max_abs_diff"] = float(np.abs(x1 - x2).max())
                    r[f"{c}_rows_differ"] = int((x1 != x2).sum())
        elif name.endswith(".pt") and not r["bitwise_equal"]:
            r["max_rel_diff"] = tensor_rel_diffs(f1, f2)
        elif name == "manifest.json" and not r["bitwise_equal"]:
            m1, m2 = json.loads(f1.read_text()), json.loads(f2.read_text())
            r["keys_differ"] = sorted(k for k in m1 if m1.get(k) != m2.get(k))
        out[name] = r
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", required=True, help="each build gets <workdir>/<1proc|2proc> (emptied first)")
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process in both builds")
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--json", default=None, help="write the figures here")
    ap.add_argument("--compare_only", action="store_true", help="compare the builds already in --workdir")
    ap.add_argument(
        "--cross",
        default=None,
        help="also compare a one-process build that reused the multi-process build's trained LE "
        "(its folder under --workdir; docs/le.md: bitwise expected)",
    )
    ap.add_argument(
        "--threads_check",
        default=None,
        help="a one-process build under --workdir with other --le_threads (its LE training stage at "
        "least): its trained tensors against 1proc's, the spread rounding alone gives",
    )
    a = ap.parse_args(argv)
    if a.dataset != "ml-100k":
        raise SystemExit("--dataset: only ml-100k is converted by this script (its data ships in RecBole's wheel)")
    multi = f"{a.processes}proc"
    if a.compare_only:
        r1, r2 = (json.loads((Path(a.workdir) / n / "run.json").read_text()) for n in ("1proc", multi))
    else:
        r2 = build(multi, a.processes, a)  # first: a launcher problem shows early
        r1 = build("1proc", 1, a)
    runs = {"1proc": r1, multi: r2}
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{os.cpu_count()} cores, torch {torch.__version__}",
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "runs": runs,
        "same_fingerprint": r1["fingerprint"] == r2["fingerprint"],
        "files": compare(Path(r1["le_folder"]), Path(r2["le_folder"])),
        "stages": compare_stages(Path(a.workdir) / "1proc" / "cache", Path(a.workdir) / multi / "cache"),
    }
    result["le_train_tensors"] = {
        f"{multi} vs 1proc": trained_diff(Path(a.workdir) / "1proc" / "cache", Path(a.workdir) / multi / "cache")
    }
    if a.threads_check:  # one process with other threads: how far rounding alone moves LE training
        result["le_train_tensors"][f"{a.threads_check} vs 1proc"] = trained_diff(
            Path(a.workdir) / "1proc" / "cache", Path(a.workdir) / a.threads_check / "cache"
        )
    if a.cross:
        (cross,) = sorted((Path(a.workdir) / a.cross / "data" / "lea").glob(f"{a.dataset}-*/{a.dataset}-lea"))
        result["cross"] = {
            "what": f"one process over the {multi} build's trained LE (its le_train stage copied into a fresh cache)",
            "files": compare(cross, Path(r2["le_folder"])),
        }
    print(json.dumps(result["files"], indent=1))
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
