"""How often does a trained recommender rank the true next item above a random item?

The LE probe (``benchmarks/probe_le.py``) reports how often the LE reward puts the true next item
above a random negative. This script measures the same pairwise figure for a trained RecBole
model on its own held-out targets, so the two can be set side by side: a reward model is only a
teacher where it ranks better than the student already does.

    python benchmarks/probe_ranker.py results/compare/<dir>/runs/<run>/saved/<model>.pth [--json out.json]

For every valid and test target it scores all items with ``full_sort_predict`` (history items are
NOT masked, as the LE's negatives are not filtered by history) and reports the share of the other
items scored below the target (ties count half): the probability that the target beats a uniformly
drawn other item. Beside it, the same figure for training-set popularity (how often an item is a
training target), as in ``probe_le.py``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from recbole_lea.quick_start import load_data_and_model


def pairwise_share(scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """[B, N] scores over items 1..N-1 (column 0 is padding), [B] targets -> [B] share of the other
    real items scored below the target, ties half."""
    real = scores[:, 1:]  # [B N-1]
    t = scores.gather(1, target.unsqueeze(1))  # [B 1]
    below = (real < t).sum(1).float() + 0.5 * ((real == t).sum(1).float() - 1)  # the target ties itself
    return below / (real.shape[1] - 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_file")
    ap.add_argument("--json", default=None, help="also write the figures to this file")
    args = ap.parse_args()
    torch.set_num_threads(1)
    config, model, dataset, train, valid, test = load_data_and_model(args.model_file)
    iid = config["ITEM_ID_FIELD"]
    counts = torch.bincount(torch.as_tensor(train._dataset.inter_feat[iid]), minlength=dataset.item_num).float()
    out: dict[str, object] = {"model_file": args.model_file, "model": config["model"]}
    with torch.no_grad():
        for name, loader in (("valid", valid), ("test", test)):
            model_share, pop_share = [], []
            for batch in loader:
                interaction, _history, _pos_u, pos_i = batch
                scores = model.full_sort_predict(interaction.to(model.device)).view(len(pos_i), -1).cpu()
                model_share.append(pairwise_share(scores, pos_i))
                pop_share.append(pairwise_share(counts.expand(len(pos_i), -1), pos_i))
            out[name] = {
                "targets": int(sum(len(s) for s in model_share)),
                "model_pairwise": float(torch.cat(model_share).mean()),
                "popularity_pairwise": float(torch.cat(pop_share).mean()),
            }
    text = json.dumps(out, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
