"""Every model of RecBole 1.2.1's registry through our command: one epoch each on ml-100k.

    python benchmarks/recbole_zoo.py --out docs/results/recbole-zoo.json --md docs/results/<date>-recbole-zoo.md \
        [--models BPR SASRec ...] [--families general sequential] [--jobs 2] [--timeout 600]

Each model runs as a user would run it, ``python run_recbole_lea.py --model=<M> --dataset=ml-100k
--epochs=1 --no-save --json <file>``, on a copy of RecBole's bundled ml-100k (``.inter`` with
ratings, ``.user``, ``.item``, ``.kg``, ``.link``: what the context-aware and knowledge-aware
families need), beside which a dataset yaml of our own loads the columns RecBole's quick-start configs load for
ml-100k (our ``properties/sequential.yaml`` still applies to sequential models that rank all items).

``--parity M [M ...]`` instead runs each named model twice more, through our command and through
RecBole's own ``recbole.quick_start.run_recbole`` with the same files, options and seed (RecBole's
code path with only our compat shims, which numpy 2 and torch 2.6+ need; both evaluate the last
epoch's model), and prints and writes (``--out``) both test results and whether they are equal.

Output: a JSON list (``--out``) and a Markdown table (``--md``): model, family, status (``ok``; ``refused``:
exit 2 with one message; ``error``: a traceback; ``timeout``), seconds, test NDCG@10 (or the
family's first metric where it has no NDCG, e.g. AUC), and the message of each that does not run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FAMILIES = {
    "general_recommender": "general",
    "sequential_recommender": "sequential",
    "context_aware_recommender": "context-aware",
    "knowledge_aware_recommender": "knowledge-aware",
    "exlib_recommender": "exlib",
}
DATASET_YAML = """# RecBole's bundled ml-100k, copied by benchmarks/recbole_zoo.py: RecBole's own dataset settings
# (recbole/properties/dataset/ml-100k.yaml) hold; the columns are the union of what RecBole's
# quick-start configs load for ml-100k (context-aware, feature-aware sequential, knowledge-aware).
load_col:
  inter: [user_id, item_id, rating, timestamp]
  user: [user_id, age, gender, occupation]
  item: [item_id, release_year, class]
  kg: [head_id, relation_id, tail_id]
  link: [item_id, entity_id]
"""


def bundled_copy(work: Path) -> Path:
    """``work/recbole-ml-100k/ml-100k/``: RecBole's bundled files and an empty dataset yaml."""
    import recbole

    src = Path(recbole.__file__).parent / "dataset_example" / "ml-100k"
    dst = work / "recbole-ml-100k" / "ml-100k"
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        shutil.copy(f, dst / f.name)
    (dst / "ml-100k.yaml").write_text(DATASET_YAML)
    return dst.parent


def run_model(model: str, family: str, data_path: Path, work: Path, timeout: float) -> dict[str, Any]:
    """One model for one epoch through ``run_recbole_lea.py``; its status, time, metric, message."""
    out = work / f"{model}.json"
    cmd = [sys.executable, str(ROOT / "run_recbole_lea.py"), f"--model={model}", "--dataset=ml-100k"]
    cmd += [f"--data_path={data_path}", "--epochs=1", "--no-save", "--json", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    try:
        done = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"model": model, "family": family, "status": "timeout", "seconds": timeout, "message": ""}
    seconds = time.perf_counter() - start
    row: dict[str, Any] = {"model": model, "family": family, "seconds": round(seconds, 1), "rc": done.returncode}
    if done.returncode == 0 and out.is_file():
        result = json.loads(out.read_text())["test_result"]
        metric = "ndcg@10" if "ndcg@10" in result else next(iter(result), None)
        return {**row, "status": "ok", "metric": metric, "value": result.get(metric), "message": ""}
    lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
    message = next((line for line in reversed(lines) if line.startswith("error:")), lines[-1] if lines else "")
    return {**row, "status": "refused" if done.returncode == 2 else "error", "message": message[:300]}


RECBOLE_OWN = """
import json, sys
from recbole_lea import compat
compat.apply()
from recbole_lea.run_config import resolve_run
from recbole.quick_start import run_recbole
model, data_path, out = sys.argv[1:4]
options = {"data_path": data_path, "epochs": 1}
resolved = resolve_run(model, "ml-100k", None, options)
result = run_recbole(model=model, dataset="ml-100k", config_file_list=resolved.files, config_dict=resolved.config_dict,
                     saved=False)
json.dump({k: float(v) for k, v in result["test_result"].items()}, open(out, "w"))
"""


def parity(model: str, data_path: Path, work: Path, timeout: float) -> dict[str, Any]:
    """Test results of ``model`` through our command and through RecBole's own run_recbole."""
    ours = work / f"{model}-ours.json"
    theirs = work / f"{model}-recbole.json"
    cmd = [sys.executable, str(ROOT / "run_recbole_lea.py"), f"--model={model}", "--dataset=ml-100k"]
    cmd += [f"--data_path={data_path}", "--epochs=1", "--no-save", "--json", str(ours)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=timeout, env=env, check=True)
    own = [sys.executable, "-c", RECBOLE_OWN, model, str(data_path), str(theirs)]
    subprocess.run(own, cwd=work, capture_output=True, text=True, timeout=timeout, env=env, check=True)
    a = json.loads(ours.read_text())["test_result"]
    b = json.loads(theirs.read_text())
    return {"model": model, "ours": a, "recbole": b, "equal": a == b}


def render(rows: list[dict[str, Any]], seconds: float, command: str) -> str:
    ok = sum(r["status"] == "ok" for r in rows)
    refused = sum(r["status"] == "refused" for r in rows)
    slow = sum(r["status"] == "timeout" for r in rows)
    head = [
        f"# RecBole 1.2.1's models through `run_recbole_lea.py` ({time.strftime('%Y-%m-%d')})",
        "",
        f"`{command}` on {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{seconds / 60:.0f} min. One epoch each on RecBole's bundled ml-100k, `--no-save`.",
        "",
        f"**{len(rows)} models: {ok} ran, {refused} stopped at once with one message, {slow} did not finish one "
        f"epoch within the time limit, {len(rows) - ok - refused - slow} failed otherwise.**",
        "",
        "| model | family | status | seconds | test metric | message |",
        "|---|---|---|---:|---|---|",
    ]
    body = []
    for r in rows:
        metric = f"{r['metric']} {r['value']:.4f}" if r.get("value") is not None else ""
        message = str(r.get("message", "")).replace("|", "\\|")
        body.append(f"| {r['model']} | {r['family']} | {r['status']} | {r['seconds']} | {metric} | {message} |")
    return "\n".join(head + body) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="*", default=None, help="these models only (default: every one)")
    ap.add_argument("--families", nargs="*", default=None, choices=sorted(FAMILIES.values()))
    ap.add_argument("--jobs", type=int, default=1, help="models run at once")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per model")
    ap.add_argument("--out", default=None, help="JSON list of the rows")
    ap.add_argument("--md", default=None, help="Markdown table")
    ap.add_argument("--parity", nargs="+", default=None, help="compare these models with RecBole's own run_recbole")
    ap.add_argument(
        "--update", action="store_true", help="rerun the selected models only, replacing their rows in --out"
    )
    args = ap.parse_args(argv)
    from recbole_lea.registry import recbole_model_names

    names = recbole_model_names()
    order = list(FAMILIES)
    models = sorted(names, key=lambda m: (order.index(names[m]), m.lower()))
    models = [m for m in models if (args.models is None or m in args.models)]
    models = [m for m in models if args.families is None or FAMILIES[names[m]] in args.families]
    work = Path(tempfile.mkdtemp(prefix="recbole_zoo_"))
    data_path = bundled_copy(work)
    if args.parity:
        rows = [parity(m, data_path, work, args.timeout) for m in args.parity]
        for r in rows:
            print(f"{r['model']:<12} equal: {r['equal']}  ours {r['ours']}  RecBole {r['recbole']}")
        if args.out:
            Path(args.out).write_text(json.dumps(rows, indent=1))
        shutil.rmtree(work, ignore_errors=True)
        return 0 if all(r["equal"] for r in rows) else 1
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = [pool.submit(run_model, m, FAMILIES[names[m]], data_path, work, args.timeout) for m in models]
        rows = []
        for f in futures:
            rows.append(f.result())
            r = rows[-1]
            print(f"{r['model']:<16} {r['family']:<16} {r['status']:<8} {r['seconds']:>7} {r.get('message', '')[:90]}")
    seconds = time.perf_counter() - start
    command = "python benchmarks/recbole_zoo.py " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.update and args.out and Path(args.out).is_file():  # the other models' rows of the earlier run stay
        earlier = json.loads(Path(args.out).read_text())
        fresh = {r["model"]: r for r in rows}
        rows = [fresh.pop(r["model"], r) for r in earlier["rows"]] + list(fresh.values())
        seconds += earlier["seconds"]
        command = f"{earlier['command']}; then {command}"
    if args.out:
        Path(args.out).write_text(json.dumps({"rows": rows, "seconds": seconds, "command": command}, indent=1))
    if args.md:
        Path(args.md).write_text(render(rows, seconds, command.strip()))
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
