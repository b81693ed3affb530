"""Does the README's install work on every Python? One fresh venv per version, the README's commands.

For each Python version this script

1. exports the committed tree (``git archive HEAD``: what a fresh clone gets, nothing ignored or
   uncommitted) into ``<workdir>/py<ver>/src``,
2. creates a fresh venv ``<workdir>/py<ver>/venv`` (``python -m venv``, no system site packages)
   with the interpreter of that version (pyenv's by default),
3. runs README.md's second command unchanged (install + ``python -m pytest -q tests``), then its
   first command's install part unchanged followed by a shortened main job:
   ``python run_recbole_lea.py --model=SA2C --dataset=ml-100k --epochs=1`` (``--main-model`` and
   ``--epochs`` change it; ``--lea-on 3.13`` also runs the real main job, ``--model=SA2C_LEA``, with
   ``--epochs=1``, its LE built from an empty cache, on that version),
4. records numpy, pandas, torch, ray, pyarrow and recbole versions of the venv, the test counts,
   whether the main job exited 0 and printed test metrics, and wall times.

It writes ``docs/results/python_matrix.json`` and the table between the ``matrix`` markers of
``docs/compat.md``.

torch: ``pip install torch==2.13.0`` (the README's first step) takes, for Python 3.11, the CPU wheel
on this machine's disk; for the other versions PyPI has only a multi-GB CUDA build. Set
``--wheelhouse DIR`` to a folder with one subfolder per version (``cp310``, ``cp312``, ...) that
``pip download torch==2.13.0 -d DIR/cp312`` filled once: where that subfolder exists, the fresh venv
first gets ``pip install --no-index --find-links DIR/cpXY torch==2.13.0`` (the same files PyPI
serves, from disk), so the README's unchanged ``pip install torch==2.13.0`` finds torch installed,
as for a user who has it already. (Adding the folder to ``PIP_FIND_LINKS`` is not enough: pip 23
still downloaded the index's copy.) Every other package comes from the index as for any user.

    python benchmarks/python_matrix.py --versions 3.10 3.11 3.12 3.13 \\
        --workdir /tmp/matrix --wheelhouse /tmp/wheelhouse --lea-on 3.13
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "compat.md"
RESULTS = REPO / "docs" / "results" / "python_matrix.json"
BEGIN, END = "<!-- matrix:begin -->", "<!-- matrix:end -->"
PACKAGES = ("numpy", "pandas", "torch", "ray", "pyarrow", "recbole")


def readme_commands(readme: Path) -> tuple[str, str]:
    """The README's two install command lines, verbatim: (install + main job, install + tests)."""
    lines = [line.strip() for line in readme.read_text().splitlines() if line.strip().startswith("pip install torch")]
    main = next(line for line in lines if "run_recbole_lea.py" in line)
    tests = next(line for line in lines if "pytest" in line)
    return main, tests


def find_python(version: str) -> str:
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates = sorted(root.glob(f"{version}.*"), key=lambda p: [int(x) for x in p.name.split(".") if x.isdigit()])
    for path in reversed(candidates):
        if (path / "bin" / "python").exists():
            return str(path / "bin" / "python")
    found = shutil.which(f"python{version}")
    if found:
        return found
    raise SystemExit(f"no Python {version}: install it with pyenv or put python{version} on PATH")


def run(cmd: str, cwd: Path, env: dict[str, str], log: Path, timeout: int) -> tuple[int, float, str]:
    """Run a shell command line; (exit code, wall seconds, output). Output also goes to ``log``."""
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            ["bash", "-c", cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
        code, out = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as err:
        code, out = 124, f"{err.stdout or ''}{err.stderr or ''}\nTIMEOUT after {timeout} s"
        out = out if isinstance(out, str) else out.decode(errors="replace")
    wall = time.perf_counter() - start
    with log.open("a") as fh:
        fh.write(f"\n$ {cmd}\n{out}\n[exit {code}, {wall:.0f} s]\n")
    return code, wall, out


def pytest_counts(output: str) -> dict[str, int]:
    """Counts from pytest's last summary line ("3 failed, 190 passed, 1 skipped in 80.1s")."""
    summary = [line for line in output.splitlines() if re.search(r"\b(passed|failed|error)", line) and " in " in line]
    counts = {"passed": 0, "failed": 0, "skipped": 0, "errors": 0}
    if summary:
        for number, word in re.findall(r"(\d+) (passed|failed|skipped|errors?)", summary[-1]):
            counts["errors" if word.startswith("error") else word] = int(number)
    return counts


def test_metrics(output: str) -> dict[str, float]:
    """The test column of the table the main job prints last (``metric  valid  test`` rows)."""
    rows = re.findall(r"^\s*([a-z]+@\d+)\s+(?:[0-9.]+|nan)\s+([0-9.]+)\s*$", output, flags=re.M)
    return {name: float(value) for name, value in rows}


def venv_versions(python: Path, cwd: Path, env: dict[str, str]) -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json, sys\n"
        "out = {'python': sys.version.split()[0]}\n"
        f"for name in {PACKAGES!r}:\n"
        "    try: out[name] = m.version(name)\n"
        "    except m.PackageNotFoundError: out[name] = None\n"
        "print(json.dumps(out))\n"
    )
    proc = subprocess.run([str(python), "-c", code], cwd=cwd, env=env, capture_output=True, text=True, check=False)
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return {"error": proc.stderr[-500:]}


def one_version(version: str, args: argparse.Namespace, main_cmd: str, tests_cmd: str) -> dict[str, Any]:
    base = Path(args.workdir) / f"py{version.replace('.', '')}"
    if base.exists():
        shutil.rmtree(base)
    src, venv, log = base / "src", base / "venv", base / "log.txt"
    src.mkdir(parents=True)
    subprocess.run(f"git -C {REPO} archive HEAD | tar -x -C {src}", shell=True, check=True)
    interpreter = find_python(version)
    start = time.perf_counter()
    subprocess.run([interpreter, "-m", "venv", str(venv)], check=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["VIRTUAL_ENV"] = str(venv)
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["RECBOLE_LEA_CACHE"] = str(base / "le_cache")  # an empty LE cache: nothing reused from earlier runs
    wheels = Path(args.wheelhouse) / f"cp{version.replace('.', '')}" if args.wheelhouse else None
    torch_from = "the README's `pip install torch==2.13.0`"
    if wheels is not None and wheels.is_dir():
        pre = f"pip install --no-index --find-links {wheels} torch==2.13.0"
        code, wall, _ = run(pre, src, env, log, args.timeout)
        if code != 0:
            raise SystemExit(f"[{version}] {pre} failed: see {log}")
        torch_from = f"{wheels} (pip download once; {wall:.0f} s to install)"
    record: dict[str, Any] = {
        "load_avg_start": round(os.getloadavg()[0], 1),
        "version": version,
        "interpreter": interpreter,
        "torch_from": torch_from,
        "commit": subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip(),
    }
    print(f"[{version}] README command 2 (install + tests) in {base}", flush=True)
    code, wall, out = run(tests_cmd, src, env, log, args.timeout)
    record.update(tests_exit=code, tests_wall_s=round(wall), tests=pytest_counts(out))
    record["failed_tests"] = re.findall(r"^FAILED (\S+)", out, flags=re.M)
    install = main_cmd.split("&& python run_recbole_lea.py")[0].strip()
    short = f"{install} && python run_recbole_lea.py --model={args.main_model} --dataset=ml-100k --epochs={args.epochs}"
    print(f"[{version}] README command 1, main job as {args.main_model}, {args.epochs} epoch(s)", flush=True)
    code, wall, out = run(short, src, env, log, args.timeout)
    metrics = test_metrics(out)
    record.update(main_model=args.main_model, main_exit=code, main_wall_s=round(wall), main_test=metrics)
    record["main_ok"] = code == 0 and bool(metrics)
    if version in (args.lea_on or []):
        lea = f"{install} && python run_recbole_lea.py --model=SA2C_LEA --dataset=ml-100k --epochs={args.epochs}"
        print(f"[{version}] README command 1, the real main job (SA2C_LEA, LE from an empty cache)", flush=True)
        code, wall, out = run(lea, src, env, log, args.lea_timeout)
        metrics = test_metrics(out)
        record.update(lea_exit=code, lea_wall_s=round(wall), lea_test=metrics, lea_ok=code == 0 and bool(metrics))
    record["load_avg_end"] = round(os.getloadavg()[0], 1)
    record["versions"] = venv_versions(venv / "bin" / "python", src, env)
    record["wall_s"] = round(time.perf_counter() - start)
    record["log"] = str(log)
    if not args.keep:
        shutil.rmtree(venv, ignore_errors=True)  # several GB with a CUDA torch
    print(f"[{version}] {json.dumps(record)}", flush=True)
    return record


def table(records: list[dict[str, Any]], args: argparse.Namespace) -> str:
    rows = [
        "| Python | numpy | pandas | torch | ray | pyarrow | tests passed / failed / skipped | main job ok | "
        "LEA main job ok | wall time | load avg start/end | commit |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for rec in records:
        v = rec.get("versions", {})
        tests = rec.get("tests", {})
        main = f"{'yes' if rec.get('main_ok') else 'NO'} ({rec.get('main_wall_s')} s)"
        if rec.get("lea_exit") == 124:
            lea = f"timed out after {rec['lea_wall_s'] / 60:.0f} min (killed by the script)"
        elif "lea_ok" in rec:
            ndcg = rec.get("lea_test", {}).get("ndcg@10")
            lea = f"{'yes' if rec['lea_ok'] else 'NO'} ({rec['lea_wall_s'] / 60:.1f} min, test NDCG@10 {ndcg})"
        else:
            lea = "not run"
        failed = tests.get("failed", 0) + tests.get("errors", 0)
        rows.append(
            f"| {v.get('python', rec['version'])} | {v.get('numpy')} | {v.get('pandas')} | {v.get('torch')} | "
            f"{v.get('ray')} | {v.get('pyarrow')} | {tests.get('passed', 0)} / {failed} / {tests.get('skipped', 0)} | "
            f"{main} | {lea} | "
            f"{rec['wall_s'] / 60:.1f} min | {rec.get('load_avg_start', '?')} / {rec.get('load_avg_end', '?')} | "
            f"{rec.get('commit')} |"
        )
    note = (
        f"\n{records[-1].get('date', time.strftime('%Y-%m-%d')) if records else ''}, {platform.machine()}, "
        f"{os.cpu_count()} cores, no GPU, shared with other jobs (load average: 1-minute, at the start and end "
        "of each version); "
        f"`python benchmarks/python_matrix.py` (fresh venv and `git archive` tree per version). "
        f"'main job ok': README command 1 with `python run_recbole_lea.py --model={args.main_model} "
        f"--dataset=ml-100k --epochs={args.epochs}` exited 0 and printed test metrics; 'LEA main job ok': the "
        f"README's own `--model=SA2C_LEA` with `--epochs={args.epochs}`, its LE built from an empty cache. "
        "'wall time': the whole version (venv, both installs, tests, main jobs). torch: "
        + "; ".join(f"{r['version']}: {r['torch_from']}" for r in records)
        + ". Skipped tests need data outside the repository (the shared LC-Rec copy).\n"
    )
    return "\n".join(rows) + "\n" + note


def write_doc(text: str) -> None:
    doc = DOC.read_text() if DOC.exists() else f"# Compatibility\n\n{BEGIN}\n{END}\n"
    if BEGIN not in doc:
        doc += f"\n{BEGIN}\n{END}\n"
    head, rest = doc.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    DOC.write_text(f"{head}{BEGIN}\n{text}{END}{tail}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--versions", nargs="+", default=["3.10", "3.11", "3.12", "3.13"])
    parser.add_argument("--workdir", default="/tmp/recbole_lea_matrix")
    parser.add_argument("--wheelhouse", default=None, help="folder with cpXY/ subfolders of torch wheels")
    parser.add_argument("--main-model", default="SA2C")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--lea-on", nargs="*", default=[], help="versions that also run the SA2C_LEA main job")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per command")
    parser.add_argument("--lea-timeout", type=int, default=3600)
    parser.add_argument("--keep", action="store_true", help="keep the venvs")
    parser.add_argument("--no-doc", action="store_true", help="print the table, do not write docs/")
    parser.add_argument("--merge", action="store_true", help="keep other versions' rows from the last results file")
    args = parser.parse_args(argv)
    main_cmd, tests_cmd = readme_commands(REPO / "README.md")
    records: list[dict[str, Any]] = []
    if args.merge and RESULTS.exists():  # keep the other versions' records of an earlier run
        records = [r for r in json.loads(RESULTS.read_text())["records"] if r["version"] not in args.versions]
    for version in args.versions:
        record = one_version(version, args, main_cmd, tests_cmd)
        record["date"] = time.strftime("%Y-%m-%d")
        records.append(record)
        records.sort(key=lambda r: [int(x) for x in r["version"].split(".")])
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps({"readme": [main_cmd, tests_cmd], "records": records}, indent=1) + "\n")
    text = table(records, args)
    print(text)
    if not args.no_doc:
        write_doc(text)
    ok = all(r.get("tests_exit") == 0 and r.get("main_ok") and r.get("lea_ok", True) for r in records)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
