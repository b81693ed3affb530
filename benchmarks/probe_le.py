"""How much signal do an LE build's atomic files carry? Optionally write a shuffled control copy.

    python benchmarks/probe_le.py <LE folder>/ml-100k-lea.inter [--json out.json]   # folder: printed by --build-le
    python benchmarks/probe_le.py <lea.inter> --shuffle_to /tmp/ctl/ml-100k-lea   # control dataset

Reported over the training rows that carry LE values (``le_train`` = 1):

- ``reward_pairwise``: share of rows whose LE reward for the true next item beats the LE reward of
  the build's random negative (ties count half), and the mean margin in units of the scores' std;
- ``popularity_pairwise``: the same comparison made by training-set popularity alone (how often
  each item occurs as a training target): a reward model that knew nothing but popularity;
- ``reward_pairwise_older`` / ``popularity_pairwise_older``: both figures on the rows before each
  user's last ``--older_than_last`` LE rows (``older_rows`` of them): targets the LE never trained
  on, whichever users it sampled, so the reward's figure there is free of memorisation;
- ``aug_hit``: share of augmented rows whose LE-chosen action is the true next item;
- ``reward_item_share``: share of the positive rewards' variance explained by the item alone
  (between-item variance / total): how much of the LE reward is a per-item bias rather than a
  judgement of this user's history;
- ``reward_item_popularity_spearman``: rank correlation, over items, between an item's mean LE
  reward as a positive and its number of training targets.

``--popularity_prior_to`` writes a copy whose LE rewards (true next item, negative, augmented
action) each get ``--beta`` x the scores' std x the item's standardised log(1 + training-target
count) added: a reward that is right at least as often as popularity. Training on it shows whether
a more accurate (popularity-led) reward helps the recommender.

``--shuffle_to`` writes a copy whose LE columns (rewards, negatives, augmented actions, states) are
permuted jointly across the LE rows with a fixed seed: the same marginal distributions, no link to
the user or the step. Training an LEA variant on it shows what the LE's row-specific information is
worth (a control for the ablation in docs/rl.md).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

LE_COLUMNS = (
    "le_reward",
    "le_neg_id",
    "le_neg_reward",
    "le_aug_id",
    "le_aug_reward",
    "le_aug_mask",
    "le_state",
    "le_next_state",
)


def read_inter(path: Path) -> tuple[pd.DataFrame, list[str]]:
    header = path.open(encoding="utf-8").readline().rstrip("\n").split("\t")
    names = [h.split(":")[0] for h in header]
    df = pd.read_csv(path, sep="\t", header=0, names=names, dtype=str, keep_default_na=False)
    return df, header


def write_inter(df: pd.DataFrame, header: list[str], dst_dir: Path) -> Path:
    """``dst_dir/<dst_dir name>.inter`` with ``header``, written under a temporary name first."""
    dst_dir.mkdir(parents=True, exist_ok=True)
    dst = dst_dir / f"{dst_dir.name}.inter"
    tmp = dst.with_suffix(".inter.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        f.write("\t".join(header) + "\n")
        df.to_csv(f, sep="\t", header=False, index=False)
    tmp.replace(dst)  # never a half-written file under the final name
    return dst


def pairwise(pos: np.ndarray, neg: np.ndarray) -> float:
    return float(((pos > neg) + 0.5 * (pos == neg)).mean())


def le_row_mask(df: pd.DataFrame) -> np.ndarray:
    """The training rows that carry LE values (``le_train`` = 1)."""
    return df["le_train"].astype(float).to_numpy() > 0


def target_count(le: pd.DataFrame, col: str, counts: pd.Series) -> np.ndarray:
    """How often the item in column ``col`` of each LE row is a training target (``counts``)."""
    return le[col].map(counts).fillna(0).to_numpy()


def older_rows(le: pd.DataFrame, last_n: int) -> np.ndarray:
    """Mask of the LE rows before each user's last ``last_n`` LE rows: never an LE training target
    when the LE trained on at most ``le_train_max_steps_per_user`` = ``last_n`` rows per user."""
    order = np.lexsort((np.arange(len(le)), le["timestamp"].astype(float).to_numpy(), le["user_id"].to_numpy()))
    from_end = np.empty(len(le), dtype=np.int64)
    from_end[order] = le.iloc[order].groupby("user_id", sort=False).cumcount(ascending=False).to_numpy()
    return from_end >= last_n


def probe(df: pd.DataFrame, last_n: int = 50) -> dict[str, float]:
    rows = le_row_mask(df)
    le = df[rows]
    r_pos = le["le_reward"].astype(float).to_numpy()
    r_neg = le["le_neg_reward"].astype(float).to_numpy()
    std = float(np.concatenate([r_pos, r_neg]).std()) or 1.0
    counts = le["item_id"].value_counts()
    pop_pos = target_count(le, "item_id", counts)
    pop_neg = target_count(le, "le_neg_id", counts)
    aug = le[le["le_aug_mask"].astype(float) > 0]
    by_item = pd.Series(r_pos).groupby(le["item_id"].to_numpy())
    item_mean = by_item.transform("mean").to_numpy()
    per_item = by_item.mean()
    old = older_rows(le, last_n)
    return {
        "le_rows": int(rows.sum()),
        "reward_pairwise": pairwise(r_pos, r_neg),
        "reward_margin_std": float((r_pos - r_neg).mean() / std),
        "popularity_pairwise": pairwise(pop_pos, pop_neg),
        "older_rows": int(old.sum()),
        "older_than_last": last_n,
        "reward_pairwise_older": pairwise(r_pos[old], r_neg[old]) if old.any() else float("nan"),
        "popularity_pairwise_older": pairwise(pop_pos[old], pop_neg[old]) if old.any() else float("nan"),
        "augmented_rows": len(aug),
        "aug_hit": float((aug["le_aug_id"] == aug["item_id"]).mean()) if len(aug) else float("nan"),
        "reward_item_share": float(item_mean.var() / max(r_pos.var(), 1e-12)),
        "reward_item_popularity_spearman": float(per_item.corr(counts.reindex(per_item.index), method="spearman")),
    }


def write_shuffled(df: pd.DataFrame, header: list[str], src: Path, dst_dir: Path, seed: int) -> Path:
    rows = np.flatnonzero(le_row_mask(df))
    perm = np.random.default_rng(seed).permutation(rows)
    out = df.copy()
    cols = [c for c in LE_COLUMNS if c in df.columns]
    out.loc[rows, cols] = df.loc[perm, cols].to_numpy()
    dst = write_inter(out, header, dst_dir)
    copy_side_files(src, dst_dir)
    return dst


def copy_side_files(src: Path, dst_dir: Path) -> None:
    for other in src.parent.iterdir():  # .item file, manifest, projections
        if other.suffix != ".inter" and other.is_file():
            shutil.copyfile(other, dst_dir / other.name.replace(src.parent.name, dst_dir.name))


def write_popularity_prior(df: pd.DataFrame, header: list[str], src: Path, dst_dir: Path, beta: float) -> Path:
    rows = le_row_mask(df)
    le = df[rows]
    counts = le["item_id"].value_counts()

    def log_count(col: str) -> np.ndarray:
        return np.log1p(target_count(le, col, counts))

    both = np.concatenate([log_count("item_id"), log_count("le_neg_id")])
    mean, std = both.mean(), both.std() or 1.0
    scale = beta * float(np.concatenate([le["le_reward"].astype(float), le["le_neg_reward"].astype(float)]).std())
    out = df.copy()
    is_aug = le["le_aug_mask"].astype(float).to_numpy() > 0
    for col, item_col, keep in (
        ("le_reward", "item_id", True),
        ("le_neg_reward", "le_neg_id", True),
        ("le_aug_reward", "le_aug_id", is_aug),
    ):
        prior = scale * (log_count(item_col) - mean) / std * keep
        out.loc[rows, col] = np.char.mod("%.6g", le[col].astype(float).to_numpy() + prior)
    dst = write_inter(out, header, dst_dir)
    copy_side_files(src, dst_dir)
    return dst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("inter", type=Path, help="an LE atomic .inter file (<dataset>-lea/<dataset>-lea.inter)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    ap.add_argument("--shuffle_to", type=Path, default=None, help="write a shuffled control copy into this folder")
    ap.add_argument("--seed", type=int, default=0, help="seed of the shuffle")
    ap.add_argument(
        "--popularity_prior_to",
        type=Path,
        default=None,
        help="write a copy with a popularity prior added to the rewards",
    )
    ap.add_argument(
        "--older_than_last",
        type=int,
        default=50,
        help="also report the figures on rows before each user's last N LE rows (the cpu profile's "
        "le_train_max_steps_per_user: rows the LE never trained on as targets)",
    )
    ap.add_argument("--beta", type=float, default=1.0, help="weight of the popularity prior, in reward std units")
    args = ap.parse_args()
    if not args.inter.is_file():
        raise SystemExit(f"error: {args.inter} does not exist: pass an LE atomic .inter file")
    df, header = read_inter(args.inter)
    missing = [
        c for c in ("le_train", "le_reward", "le_neg_id", "le_neg_reward", "le_aug_id", "le_aug_mask") if c not in df
    ]
    if missing:
        raise SystemExit(f"error: {args.inter} lacks the LE column(s) {', '.join(missing)}: rebuild the LE")
    res = {"file": str(args.inter), **probe(df, args.older_than_last)}
    print(json.dumps(res, indent=1))
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))
    if args.shuffle_to:
        print("wrote", write_shuffled(df, header, args.inter, args.shuffle_to, args.seed))
    if args.popularity_prior_to:
        print("wrote", write_popularity_prior(df, header, args.inter, args.popularity_prior_to, args.beta))


if __name__ == "__main__":
    main()
