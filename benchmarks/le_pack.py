"""Carry an LE build's atomic columns between machines in a few small binary files.

An LE built on a lent GPU (``benchmarks/gpu_paper_le.sh``) writes a ~120 MB text ``.inter``; what
may come back from that machine is at most 16 MiB per file. ``pack`` stores the LE columns as a
compressed ``.npz`` (states in float16) split into parts; ``unpack`` joins the parts and writes
the ``.inter`` again next to a template LE folder of the same base dataset (same rows, same order),
refusing when the rows differ:

    python benchmarks/le_pack.py pack /tmp/ad/ml-100k-lea $OUT --max_mb 15
    python benchmarks/le_pack.py unpack PARTS_DIR <LE folder of this machine> /tmp/paper_le/ml-100k-lea

The unpacked folder holds the ``.inter`` and the template's ``.item``, no manifest: train on it with
``--le_auto_build=False --data_path <its parent>``.
"""

from __future__ import annotations

import argparse
import io
import shutil
from pathlib import Path

import numpy as np
from probe_le import read_inter, write_inter  # sibling script in benchmarks/

FLOATS = ("le_train", "le_reward", "le_neg_reward", "le_aug_reward", "le_aug_mask")
TOKENS = ("user_id", "item_id", "le_neg_id", "le_aug_id")
SEQS = ("le_state", "le_next_state")


def pack(lea_dir: Path, out: Path, max_mb: float) -> list[Path]:
    df, _ = read_inter(lea_dir / f"{lea_dir.name}.inter")
    arrays: dict[str, np.ndarray] = {c: df[c].to_numpy(dtype=str) for c in TOKENS}
    arrays |= {c: df[c].astype(np.float32).to_numpy() for c in FLOATS}
    for c in SEQS:
        arrays[c] = np.array([np.array(v.split(), dtype=np.float32) for v in df[c]], dtype=np.float16)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    data = buf.getvalue()
    step = int(max_mb * 2**20)
    out.mkdir(parents=True, exist_ok=True)
    parts = []
    for i in range(0, len(data), step):
        part = out / f"le_cols.npz.part{i // step:02d}"
        part.write_bytes(data[i : i + step])
        parts.append(part)
    return parts


def unpack(parts_dir: Path, template: Path, dst: Path) -> Path:
    parts = sorted(parts_dir.glob("le_cols.npz.part*"))
    if not parts:
        raise SystemExit(f"error: no le_cols.npz.part* files in {parts_dir}")
    cols = np.load(io.BytesIO(b"".join(p.read_bytes() for p in parts)))
    df, header = read_inter(template / f"{template.name}.inter")
    for c in ("user_id", "item_id"):
        if len(df) != len(cols[c]) or not np.array_equal(df[c].to_numpy(dtype=str), cols[c]):
            raise SystemExit(f"error: column {c} of {template} differs from the packed rows: not the same base dataset")
    for c in ("le_neg_id", "le_aug_id"):
        df[c] = cols[c]
    for c in FLOATS:
        df[c] = [f"{v:g}" for v in cols[c]]
    for c in SEQS:
        df[c] = [" ".join(f"{v:g}" for v in row) for row in cols[c].astype(np.float32)]
    inter = write_inter(df, header, dst)
    # only the item file: the template's manifest, tokens and projection describe another build
    shutil.copyfile(template / f"{template.name}.item", dst / f"{dst.name}.item")
    return inter


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack")
    p.add_argument("lea_dir", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--max_mb", type=float, default=15.0)
    u = sub.add_parser("unpack")
    u.add_argument("parts_dir", type=Path)
    u.add_argument("template", type=Path)
    u.add_argument("dst", type=Path)
    args = ap.parse_args()
    if args.cmd == "pack":
        for part in pack(args.lea_dir, args.out, args.max_mb):
            print(part, part.stat().st_size)
    else:
        print("wrote", unpack(args.parts_dir, args.template, args.dst))


if __name__ == "__main__":
    main()
