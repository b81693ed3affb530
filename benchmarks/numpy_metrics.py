"""Same run, numpy 1.26 against numpy 2: are the ml-100k metrics (and the trained weights) identical?

Two venvs that differ in numpy (and whatever pip picked with it), both with this repository
installed (README command 2 with numpy pinned first). For each model the same command

    python run_recbole_lea.py --model=<model> --dataset=ml-100k --epochs=<epochs>

runs in a fresh ``git archive`` copy of the committed tree per venv (so each venv converts ml-100k
itself), with the default seed (2020). The script compares the printed valid/test metrics and the
saved checkpoints' ``state_dict`` tensor by tensor (max absolute difference), and writes
``docs/results/numpy_metrics.json`` and the table between the ``numpy`` markers of ``docs/compat.md``.

    python benchmarks/numpy_metrics.py --venvs ~/venvs/py311-np1 ~/venvs/py311-np2 \\
        --models SASRec SA2C --epochs 3 --workdir /tmp/numpy_metrics
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "compat.md"
RESULTS = REPO / "docs" / "results" / "numpy_metrics.json"
BEGIN, END = "<!-- numpy:begin -->", "<!-- numpy:end -->"

COMPARE = """
import json, sys, torch
a = torch.load(sys.argv[1], map_location="cpu", weights_only=True)["state_dict"]
b = torch.load(sys.argv[2], map_location="cpu", weights_only=True)["state_dict"]
assert a.keys() == b.keys()
diff = max(float((a[k].double() - b[k].double()).abs().max()) if a[k].numel() else 0.0 for k in a)
print(json.dumps({"max_abs_diff": diff, "tensors": len(a), "bitwise_equal": all(torch.equal(a[k], b[k]) for k in a)}))
"""


def versions(python: Path) -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json, sys; "
        "print(json.dumps({'python': sys.version.split()[0], "
        "**{n: m.version(n) for n in ('numpy', 'pandas', 'scipy', 'torch', 'recbole')}}))"
    )
    return json.loads(subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True).stdout)


def run_model(python: Path, src: Path, model: str, epochs: int) -> dict[str, Any]:
    cmd = [str(python), "run_recbole_lea.py", f"--model={model}", "--dataset=ml-100k", f"--epochs={epochs}"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=src, capture_output=True, text=True, check=False)
    out = proc.stdout + proc.stderr
    (src / f"{model}.log").write_text(out)
    # the run summary: an indented `metric valid test` table and a `checkpoint:` line
    rows = re.findall(r"^\s*([a-z]+@\d+)\s+([0-9.]+|nan)\s+([0-9.]+)\s*$", proc.stdout, flags=re.M)
    saved = re.findall(r"^\s*checkpoint:\s+(.+)$", proc.stdout, flags=re.M)
    return {
        "exit": proc.returncode,
        "wall_s": round(time.perf_counter() - start, 1),
        "valid": {k: float(v) for k, v, _ in rows},
        "test": {k: float(t) for k, _, t in rows},
        "model_file": str(src / saved[-1].strip()) if saved else None,
        "tail": out[-1500:] if proc.returncode else "",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--venvs", nargs=2, required=True, help="two venvs: numpy 1.26 first, numpy 2 second")
    parser.add_argument("--models", nargs="+", default=["SASRec", "SA2C"])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--workdir", default="/tmp/recbole_lea_numpy_metrics")
    args = parser.parse_args(argv)
    work = Path(args.workdir)
    if work.exists():
        shutil.rmtree(work)
    pythons = [Path(v) / "bin" / "python" for v in args.venvs]
    srcs = []
    for i in range(2):
        src = work / f"src{i}"
        src.mkdir(parents=True)
        subprocess.run(f"git -C {REPO} archive HEAD | tar -x -C {src}", shell=True, check=True)
        srcs.append(src)
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    result: dict[str, Any] = {
        "commit": commit.stdout.strip(),
        "epochs": args.epochs,
        "envs": [versions(p) for p in pythons],
        "models": {},
    }
    for model in args.models:
        runs = [run_model(pythons[i], srcs[i], model, args.epochs) for i in range(2)]
        entry: dict[str, Any] = {"runs": runs}
        if all(r["model_file"] for r in runs):
            proc = subprocess.run(
                [str(pythons[1]), "-c", COMPARE, runs[0]["model_file"], runs[1]["model_file"]],
                capture_output=True,
                text=True,
                check=False,
            )
            entry["weights"] = json.loads(proc.stdout) if proc.returncode == 0 else {"error": proc.stderr[-500:]}
        entry["metrics_identical"] = runs[0]["test"] == runs[1]["test"] and runs[0]["valid"] == runs[1]["valid"]
        result["models"][model] = entry
        print(model, json.dumps({k: v for k, v in entry.items() if k != "runs"}), flush=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")
    text = table(result)
    print(text)
    doc = DOC.read_text()
    if BEGIN in doc:
        head, rest = doc.split(BEGIN, 1)
        DOC.write_text(f"{head}{BEGIN}\n{text}{END}{rest.split(END, 1)[1]}")
    return 0 if all(e["metrics_identical"] for e in result["models"].values()) else 1


def table(result: dict[str, Any]) -> str:
    envs = result["envs"]
    label = [f"numpy {e['numpy']}" for e in envs]
    lines = [
        f"| model | metric | {label[0]} | {label[1]} |",
        "|---|---|---|---|",
    ]
    for model, entry in result["models"].items():
        a, b = entry["runs"]
        for metric in ("hit@10", "ndcg@10", "hit@20", "ndcg@20"):
            lines.append(f"| {model} | test {metric} | {a['test'].get(metric)} | {b['test'].get(metric)} |")
        weights = entry.get("weights", {})
        lines.append(
            f"| {model} | trained weights | | bitwise equal: {weights.get('bitwise_equal')}, "
            f"max abs diff {weights.get('max_abs_diff')} |"
        )
    common = {k: v for k, v in envs[0].items() if envs[1].get(k) == v}
    other = {k: (envs[0][k], envs[1].get(k)) for k in envs[0] if k not in common}
    lines.append("")
    lines.append(
        f"Commit {result['commit']}, `python run_recbole_lea.py --model=<model> --dataset=ml-100k "
        f"--epochs={result['epochs']}` (seed 2020), `python benchmarks/numpy_metrics.py`. Same in both: "
        + ", ".join(f"{k} {v}" for k, v in common.items())
        + "; different: "
        + ", ".join(f"{k} {a} / {b}" for k, (a, b) in other.items())
        + "."
    )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
