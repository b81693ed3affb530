"""One comparison table over runs that `run_compare_lea.py` stored in different output folders.

The LE-quality ablation trains the same model on differently built LE files (the shipped LE, a
stronger one, a shuffled control), each in its own ``--data_path`` and ``--output_dir``; this joins
their stored runs into one table with the same statistics as ``run_compare_lea`` (mean ± std over
seeds, paired t-test by seed against a baseline):

    python benchmarks/le_ablation_table.py --baseline SA2C \\
        --arm SASRec=results/compare/ml-100k-lea-v2:SASRec \\
        --arm SA2C=results/compare/ml-100k-lea-v2:SA2C \\
        --arm "LEASR, cpu LE=results/compare/ml-100k-real-le-rerun:SA2C_LEA:variant=LEASR" \\
        --out docs/results/ml-100k-le-quality-table.md

Each ``--arm`` is ``LABEL=FOLDER:SPEC``: the runs in ``FOLDER/runs/*.json`` whose model spec is
``SPEC`` (as given to ``--models``) and whose other options are exactly ``--where`` (default:
epochs 8 and switch_step 1500, the budget of docs/rl.md; data and checkpoint paths aside). Only seeds present in every arm enter the table.
``--ignore KEY`` leaves an option out of that match, e.g. ``le_dir`` when some arms were run with
it and others (which read no LE) without; which LE each arm read is then listed under the table by
the sha256 of its files, recorded in every run. The table's protocol line is the runs' own.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
from pathlib import Path
from typing import Any

from recbole_lea.experiments.compare import parse_model_spec, protocol_line, render_markdown, summarise

#: options every stored run carries that do not change what is trained
BOOKKEEPING = {"checkpoint_dir", "data_path", "seed", "show_progress", "le_auto_build"}


def parse_arm(text: str) -> tuple[str, Path, str]:
    if "=" not in text or ":" not in text.split("=", 1)[1]:
        raise SystemExit(f"error: --arm {text!r}: expected LABEL=FOLDER:SPEC")
    label, rest = text.split("=", 1)
    folder, spec = rest.split(":", 1)
    return label, Path(folder), spec


def load_arm(
    label: str, folder: Path, spec: str, where: dict[str, str], ignore: frozenset[str] = frozenset()
) -> dict[int, dict[str, Any]]:
    runs = folder / "runs"
    if not runs.is_dir():
        raise SystemExit(f"error: {runs} does not exist: pass the --output_dir of a run_compare_lea call")
    spec_options = parse_model_spec(spec).overrides
    out: dict[int, dict[str, Any]] = {}
    for f in sorted(runs.glob("*.json")):
        r = json.loads(f.read_text())
        if r.get("label") != spec or r.get("status") != "ok":
            continue
        options = {
            k: str(v)
            for k, v in (r.get("config_dict") or {}).items()
            if k not in BOOKKEEPING and k not in spec_options and k not in ignore
        }
        if options != where:  # exactly the budget asked for, no other option changed
            continue
        out[int(r["seed"])] = {**r, "label": label}
    if not out:
        raise SystemExit(f"error: no finished run of {spec!r} with {where} in {runs}")
    return out


def le_files(runs: dict[int, dict[str, Any]]) -> str:
    """Which LE an arm's runs read: a short sha256 over the LE files' digests in each run record."""
    digests = sorted(
        {
            hashlib.sha256(json.dumps(r["inputs"]["le"], sort_keys=True).encode()).hexdigest()[:12]
            for r in runs.values()
            if (r.get("inputs") or {}).get("le")
        }
    )
    return "LE files " + ", ".join(digests) if digests else "no LE"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arm", action="append", required=True, help="LABEL=FOLDER:SPEC (repeat)")
    ap.add_argument("--baseline", default=None, help="label of the arm the t-test compares against")
    ap.add_argument("--where", nargs="*", default=["epochs=8", "switch_step=1500"], help="key=value run options")
    ap.add_argument("--ignore", nargs="*", default=[], help="options left out of the --where match (e.g. le_dir)")
    ap.add_argument("--alpha", type=float, default=0.05)
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--out", type=Path, default=None, help="write the Markdown table here")
    ap.add_argument("--runs_csv", type=Path, default=None, help="write every run's test metrics here")
    args = ap.parse_args()
    where = dict(w.split("=", 1) for w in args.where)
    arms = [parse_arm(a) for a in args.arm]
    ignore = frozenset(args.ignore)
    loaded = {label: load_arm(label, folder, spec, where, ignore) for label, folder, spec in arms}
    if args.baseline is not None and args.baseline not in loaded:
        raise SystemExit(f"error: --baseline {args.baseline!r} is not one of the arms' labels: {', '.join(loaded)}")
    seeds = sorted(set.intersection(*(set(runs) for runs in loaded.values())))
    records = [loaded[label][s] for label in loaded for s in seeds]
    rows = summarise(records, list(loaded), seeds, args.baseline, args.alpha)
    protocols = sorted({protocol_line(r) for r in records})
    text = render_markdown(rows, args.dataset, seeds, args.baseline, args.alpha, protocols)
    sources = [f"- {label}: `{folder}/runs`, spec `{spec}`, {le_files(loaded[label])}" for label, folder, spec in arms]
    options = ", ".join(f"{k}={v}" for k, v in where.items())
    if ignore:
        options += "; not compared: " + ", ".join(sorted(ignore))
    text += "\nRuns (options " + options + "):\n\n" + "\n".join(sources) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)
    if args.runs_csv:
        metrics = sorted({k for r in records for k in r["test_result"]})
        with args.runs_csv.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["arm", "seed", *metrics, "run"])
            for r in records:
                writer.writerow(
                    [r["label"], r["seed"], *[r["test_result"].get(m, "") for m in metrics], r.get("key", "")]
                )


if __name__ == "__main__":
    main()
