"""Fault injection: kill, corrupt, race and starve the LE build and the comparison cache, then check
that every result survives (issue 20).

    python benchmarks/fault_injection.py --out docs/results/fault_injection.json --md docs/fault_injection.md

On a tiny dataset (40 users) with the tiny random Llama of the test suite and a tiny LE profile, a
reference build and a reference run give the expected bytes and metrics. Then each fault is
injected into a fresh copy of the data and cache, the pipeline is run again as a user would, and
the outcome is compared with the reference:

- kill -9 inside each LE stage (item_tokens, le_train, candidates, featurize, augment, write),
  then the same command again;
- truncate or flip a byte of each cached stage artifact, and of each file of the LE folder;
- two builds of the same LE started at once;
- a full disk (a small tmpfs) under the stage cache and under the LE folder, then space again;
- a truncated, a modified and a half-written comparison record; a comparison killed mid-run.

A fault is *survived* when the pipeline either recovers by itself (same bytes, same metrics as the
reference) or stops with one clear message (exit code 2, no traceback) and recovers once the
cause is gone. A *lost result* is a wrong output accepted without a word, or a run that cannot
recover. The script exits 1 when a result was lost. Needs root for the tmpfs (else the disk-full
faults are reported as not run).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

STAGES = ("item_tokens", "le_train", "candidates", "featurize", "augment", "write")


# ------------------------------------------------------------------------------ child processes
def child(argv: list[str]) -> int:
    """``--child build DATA CACHE LLM PROFILE [KILL_STAGE]``: one LE build, killed with SIGKILL
    inside KILL_STAGE when given. ``--child compare DATA OUT PROFILE LLM CACHE [KILL_AFTER]``."""
    import logging

    import yaml

    from recbole_lea import LOG_FORMAT
    from recbole_lea.errors import ConfigError
    from recbole_lea.le.testing import TINY_DATASET_KEYS

    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    kind = argv[0]
    try:
        if kind == "build":
            data, cache, llm, profile = argv[1:5]
            kill = argv[5] if len(argv) > 5 else ""

            def hook(stage: str, i: int) -> None:
                if stage == kill and i == 1:
                    os.kill(os.getpid(), signal.SIGKILL)

            from recbole_lea.le.build import build_le

            overrides = {**TINY_DATASET_KEYS, "le_model": llm, "le_cache_dir": cache}
            out = build_le("tiny", data, yaml.safe_load(Path(profile).read_text()), overrides, _stage_hook=hook)
            print(out)
            return 0
        if kind == "compare":
            data, out_dir, profile, llm, cache = argv[1:6]
            kill_after = int(argv[6]) if len(argv) > 6 else 0
            from recbole_lea.experiments import compare, runner

            real = runner.resolve_run_fn()
            done: list[int] = []

            def run_fn(*a: Any, **k: Any) -> dict[str, Any]:
                if kill_after and len(done) >= kill_after:
                    os.kill(os.getpid(), signal.SIGKILL)
                done.append(1)
                return real(*a, **k)

            result = compare.run_comparison(
                dataset="tiny",
                models=["SASRec", "SA2C_LEA"],
                seeds=2,
                config_dict=run_options(Path(data).parent, llm),
                output_dir=out_dir,
                run_fn=run_fn,
            )
            print(json.dumps([(r["label"], r["seed"], r["test_result"]) for r in result["runs"]]))
            return 0
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    raise SystemExit(f"unknown child {kind}")


def run_options(case: Path, llm: str) -> dict[str, Any]:
    """A tiny LEA run's options with its data, LE cache and checkpoints under ``case``."""
    from recbole_lea.le.testing import tiny_lea_options

    return tiny_lea_options(case, case / "data", Path(llm))


def spawn(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "RECBOLE_LEA_CACHE": str(cwd / "unused-cache")}
    return subprocess.run(
        [sys.executable, __file__, "--child", *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=900
    )


# ------------------------------------------------------------------------------ the harness
def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Harness:
    def __init__(self, root: Path) -> None:
        import yaml

        from recbole_lea.le.testing import TINY_PROFILE, save_tiny_llm, write_tiny_dataset

        self.root = root
        self.llm = save_tiny_llm(root / "llm")
        self.pristine = root / "pristine"
        write_tiny_dataset(self.pristine, n_users=40)
        self.profile = root / "profile.yaml"
        self.profile.write_text(yaml.safe_dump(dict(TINY_PROFILE)))
        self.rows: list[dict[str, Any]] = []
        ref = self.fresh("reference")
        proc = self.build(ref)
        assert proc.returncode == 0, proc.stderr[-3000:]
        self.ref_dir = Path(proc.stdout.strip().splitlines()[-1])
        self.ref_files = {p.name: sha(p) for p in self.ref_dir.iterdir() if p.name != "manifest.json"}

    def fresh(self, name: str) -> Path:
        case = self.root / "cases" / name
        shutil.rmtree(case, ignore_errors=True)
        (case / "data").mkdir(parents=True)
        shutil.copytree(self.pristine / "tiny", case / "data" / "tiny")
        return case

    def build(
        self, case: Path, kill: str = "", cache: Path | None = None, data: Path | None = None
    ) -> subprocess.CompletedProcess:
        cache = cache or case / "cache"
        data = data or case / "data"
        return spawn(["build", str(data), str(cache), str(self.llm), str(self.profile), kill], case)

    def same_as_reference(self, out: Path) -> bool:
        files = {p.name: sha(p) for p in out.iterdir() if p.name != "manifest.json" and not p.name.startswith(".")}
        return files == self.ref_files

    def record(self, fault: str, outcome: str, ok: bool | None) -> None:
        """One row: ``ok`` True (survived, nothing lost), False (a result lost), None (not run)."""
        row = {"fault": fault, "outcome": outcome, "survived": ok is not False, "results_lost": int(ok is False)}
        self.rows.append(row)
        print(f"{'FAIL' if ok is False else 'ok  '} {fault}: {outcome}", flush=True)

    # -- faults -------------------------------------------------------------------------------
    def kill_in_stage(self, stage: str) -> None:
        case = self.fresh(f"kill-{stage}")
        killed = self.build(case, kill=stage)
        again = self.build(case)
        leftovers = [p for p in case.rglob("*.tmp-*")]
        out = Path(again.stdout.strip().splitlines()[-1]) if again.returncode == 0 else None
        reused = again.stderr.count(": reusing ")
        ok = killed.returncode == -signal.SIGKILL and out is not None and self.same_as_reference(out) and not leftovers
        self.record(
            f"kill -9 inside stage {stage}, then the same command",
            f"killed (rc {killed.returncode}); rerun rc {again.returncode}, {reused} finished stage(s) reused, "
            f"output {'identical to' if ok else 'DIFFERENT from'} the reference, {len(leftovers)} temporary leftovers",
            ok,
        )

    def corrupt_stage(self, stage: str, how: str) -> None:
        case = self.fresh(f"corrupt-{stage}-{how}")
        first = self.build(case)
        out = Path(first.stdout.strip().splitlines()[-1])
        folder = next((case / "cache" / "stages").glob(f"{stage}-*"))
        target = max(
            (p for p in folder.iterdir() if p.name not in ("meta.json", "COMPLETE")), key=lambda p: p.stat().st_size
        )
        _damage(target, how)
        shutil.rmtree(out)  # the LE folder must be rewritten from the (damaged) stages
        again = self.build(case)
        new_out = Path(again.stdout.strip().splitlines()[-1]) if again.returncode == 0 else None
        recomputed = f"stage {stage}: cached folder" in again.stderr and "corrupt" in again.stderr
        ok = new_out is not None and recomputed and self.same_as_reference(new_out)
        self.record(
            f"{how} {stage}/{target.name} under its COMPLETE marker, then rebuild",
            f"rc {again.returncode}; {'detected by sha256 and recomputed' if recomputed else 'NOT detected'}; output "
            f"{'identical' if ok else 'DIFFERENT'}",
            ok,
        )

    def corrupt_output(self, name: str, how: str) -> None:
        from recbole_lea.errors import ConfigError
        from recbole_lea.quick_start import run_recbole_lea

        case = self.fresh(f"output-{name}-{how}")
        out = Path(self.build(case).stdout.strip().splitlines()[-1])
        opts = run_options(case, str(self.llm))
        reference = run_recbole_lea("SA2C_LEA", "tiny", config_dict=opts, saved=False)["test_result"]
        _damage(out / name, how)
        try:
            run_recbole_lea("SA2C_LEA", "tiny", config_dict={**opts, "le_dir": str(out)}, saved=False)
            refused = False
        except ConfigError as err:
            refused = "sha256" in str(err) or "missing" in str(err)
        recovered = run_recbole_lea("SA2C_LEA", "tiny", config_dict=opts, saved=False)["test_result"]
        ok = refused and recovered == reference and self.same_as_reference(out)
        self.record(
            f"{how} LE file {name}, then train on it",
            f"{'refused with the file named' if refused else 'ACCEPTED'} (le_dir); the default run rewrote the folder "
            f"from its stages, metrics {'identical' if recovered == reference else 'DIFFERENT'}",
            ok,
        )

    def race(self) -> None:
        case = self.fresh("race")
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        cmd = [
            sys.executable,
            __file__,
            "--child",
            "build",
            str(case / "data"),
            str(case / "cache"),
            str(self.llm),
            str(self.profile),
        ]
        procs = [
            subprocess.Popen(cmd, cwd=case, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
            for _ in range(2)
        ]
        outs = [p.communicate(timeout=900) for p in procs]
        computed = sum(o[1].count(": computing") for o in outs)
        ok = (
            all(p.returncode == 0 for p in procs)
            and computed == 5
            and all(self.same_as_reference(Path(o[0].strip().splitlines()[-1])) for o in outs)
        )
        self.record(
            "two builds of the same LE started at once",
            f"both rc 0: {all(p.returncode == 0 for p in procs)}; stages computed {computed} times in all (5 = each once); "
            f"both outputs {'identical to' if ok else 'NOT'} the reference",
            ok,
        )

    def disk_full(self, where: str) -> None:
        case = self.fresh(f"full-{where}")
        mount = case / "small"
        mount.mkdir()
        size = "32k"  # smaller than what the tiny build writes
        if subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], capture_output=True
        ).returncode:
            self.record(f"full disk under the {where}", "not run: mounting a tmpfs needs root", None)
            return
        try:
            if where == "stage cache":
                full = self.build(case, cache=mount / "cache")
            else:
                shutil.copytree(case / "data" / "tiny", mount / "data" / "tiny")
                full = self.build(case, data=mount / "data")
            clean = full.returncode == 2 and "No space left" in full.stderr and "Traceback" not in full.stderr
            half = [
                p
                for p in mount.rglob("*")
                if ".tmp-" in p.name
                or (p.is_dir() and p.name.startswith(("featurize-", "augment-")) and not (p / "COMPLETE").exists())
            ]
        finally:
            subprocess.run(["umount", str(mount)], capture_output=True)
        again = self.build(case)
        out = Path(again.stdout.strip().splitlines()[-1]) if again.returncode == 0 else None
        same = out is not None and self.same_as_reference(out)
        ok = clean and not half and same
        message = "one message (No space left ...), no traceback" if clean else "NOT one clean message"
        self.record(
            f"full disk ({size} tmpfs) under the {where}",
            f"rc {full.returncode}, {message}; {len(half)} half-written artifact(s); with space again: output "
            f"{'identical' if same else 'DIFFERENT'}",
            ok,
        )

    def comparison_records(self) -> None:
        case = self.fresh("compare")
        out_dir = case / "cmp"
        args = ["compare", str(case / "data"), str(out_dir), str(self.profile), str(self.llm), str(case / "cache")]
        first = spawn(args, case)
        assert first.returncode == 0, first.stderr[-3000:]
        reference = json.loads(first.stdout.strip().splitlines()[-1])
        records = sorted((out_dir / "runs").glob("*.json"))
        for how in ("truncate", "modify metric", "half-written temp file"):
            victim = records[0]
            good = victim.read_text()
            if how == "truncate":
                victim.write_text(good[: len(good) // 2])
            elif how == "modify metric":
                data = json.loads(good)
                data["test_result"]["ndcg@10"] = 0.999
                victim.write_text(json.dumps(data))
            else:
                victim.unlink()
                (victim.parent / f".{victim.name}.{os.getpid()}.tmp").write_text(good[:100])
            again = spawn(args, case)
            result = json.loads(again.stdout.strip().splitlines()[-1]) if again.returncode == 0 else None
            ok = result == reference
            self.record(
                f"comparison record: {how}",
                f"rc {again.returncode}; the run was {'recomputed, table identical' if ok else 'NOT recovered'}",
                ok,
            )
        shutil.rmtree(out_dir)
        killed = spawn([*args, "2"], case)
        again = spawn(args, case)
        result = json.loads(again.stdout.strip().splitlines()[-1]) if again.returncode == 0 else None
        ok = killed.returncode == -signal.SIGKILL and result == reference
        self.record(
            "kill -9 of a comparison after 2 of 4 runs, then the same command",
            f"rerun rc {again.returncode}; finished runs read back, the rest computed; table "
            f"{'identical' if ok else 'DIFFERENT'}",
            ok,
        )


def _damage(path: Path, how: str) -> None:
    if how == "truncate":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif how == "flip a byte in":
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
    elif how == "delete":
        path.unlink()
    else:
        raise ValueError(how)


#: docs/fault_injection.md: from this line on, the table of probes kept by hand (not rewritten here)
PROBES_MARKER = "<!-- probes: kept by hand, not rewritten by benchmarks/fault_injection.py -->"


def render(rows: list[dict[str, Any]], seconds: float, command: str) -> str:
    lost = sum(r["results_lost"] for r in rows)
    lines = [
        "# Fault injection: the LE build and the comparison cache",
        "",
        f"`{command}` on {time.strftime('%Y-%m-%d')}, on the 2-core CPU development machine "
        f"({seconds:.0f} s). Tiny dataset (40 users), the test suite's tiny random Llama, a tiny LE profile; "
        "each fault on a fresh copy of data and cache, then the command a user would run again. "
        "Script: `benchmarks/fault_injection.py` (its docstring defines *survived* and *lost*).",
        "",
        f"**Faults tried: {len(rows)}. Survived: {sum(r['survived'] for r in rows)}. Results lost: {lost}.**",
        "",
        "| fault | what happened | survived | results lost |",
        "|---|---|---|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['fault']} | {r['outcome']} | {'yes' if r['survived'] else 'NO'} | {r['results_lost']} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        return child(sys.argv[2:])
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=None, help="JSON with every row")
    ap.add_argument("--md", default=None, help="Markdown table for docs/")
    ap.add_argument("--quick", action="store_true", help="one fault of each kind")
    args = ap.parse_args()
    start = time.time()
    with tempfile.TemporaryDirectory(prefix="faults-") as tmp:
        h = Harness(Path(tmp))
        for stage in STAGES if not args.quick else ("featurize",):
            h.kill_in_stage(stage)
        for stage in (
            ("item_tokens", "le_train", "candidates", "featurize", "augment") if not args.quick else ("featurize",)
        ):
            h.corrupt_stage(stage, "truncate")
        if not args.quick:
            h.corrupt_stage("le_train", "flip a byte in")
        for name, how in (
            ("tiny-lea.inter", "truncate"),
            ("tiny-lea.inter", "flip a byte in"),
            ("le_item_tokens.pt", "delete"),
        ):
            h.corrupt_output(name, how)
            if args.quick:
                break
        h.race()
        h.disk_full("stage cache")
        h.disk_full("LE folder")
        h.comparison_records()
    seconds = time.time() - start
    command = "python benchmarks/fault_injection.py" + (" --quick" if args.quick else "")
    if args.out:
        Path(args.out).write_text(json.dumps({"rows": h.rows, "seconds": seconds}, indent=1))
    if args.md:
        # the hand-kept probe table after PROBES_MARKER (silent wrong results, each with its test) stays
        md = Path(args.md)
        kept = md.read_text().partition(PROBES_MARKER) if md.is_file() else ("", "", "")
        md.write_text(render(h.rows, seconds, command) + (f"\n{PROBES_MARKER}{kept[2]}" if kept[1] else ""))
    lost = sum(r["results_lost"] for r in h.rows)
    print(f"{len(h.rows)} faults, {sum(r['survived'] for r in h.rows)} survived, {lost} results lost")
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
