"""Joint training of the reward model (paper Eq. 1) and state model (Eq. 2) with one shared LoRA
adapter, on a fraction of the TRAINING users' training rows, in the streaming layout."""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .config import LEConfig
from .model import ChunkSpec, LEModel, plan_chunks

logger = logging.getLogger(__name__)


def sample_negatives(items: np.ndarray, pool: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One negative per step t (for target items[t+1]) drawn from the training item pool, != target."""
    n = len(items)
    if n < 2:
        return np.zeros(0, dtype=np.int64)
    if len(pool) < 2:
        raise ValueError("the training item pool has fewer than 2 items; cannot sample negatives")
    targets = items[1:]
    neg = pool[rng.integers(0, len(pool), size=n - 1)]
    clash = neg == targets
    while clash.any():
        neg[clash] = pool[rng.integers(0, len(pool), size=int(clash.sum()))]
        clash = neg == targets
    return neg.astype(np.int64)


def training_chunks(items: np.ndarray, negs: np.ndarray, cfg: LEConfig) -> list[tuple[ChunkSpec, np.ndarray]]:
    """Chunks with one negative branch per owned step; also the positive item of each owned step."""
    n = len(items)
    out = []
    for start, end, lo, hi in plan_chunks(n, cfg.le_chunk_len, cfg.le_history_len):
        steps = np.arange(lo, min(hi, n - 1))
        if len(steps) == 0:
            continue
        spec = ChunkSpec(items[start:end], lo - start, hi - start, steps - start, negs[steps])
        out.append((spec, items[steps + 1]))
    return out


def le_losses(model: LEModel, prefix: list[int], batch: list[tuple[ChunkSpec, np.ndarray]]) -> dict[str, torch.Tensor]:
    out = model.forward_chunks(prefix, [b[0] for b in batch])
    r_pos, r_neg, states = [], [], []
    for b, (spec, _pos) in enumerate(batch):
        k = len(spec.branch_item)
        r_pos.append(out["pos_reward"][b][:k])
        r_neg.append(out["branch_reward"][b])
        states.append(out["states"][b][:k])
    r_pos_t, r_neg_t = torch.cat(r_pos), torch.cat(r_neg)
    s = torch.cat(states)  # [N, D]
    pos_items = torch.from_numpy(np.concatenate([b[1] for b in batch])).to(model.device)
    a = model.item_tokens[pos_items].float()  # [N, D]
    diff = r_pos_t - r_neg_t
    l_rm = -nn.functional.logsigmoid(diff).mean()
    # Eq. 2: -1/B sum_j log sigma(s . a+ - s . a_j) over the batch's actions a_j
    sa = s @ a.T  # [N, N]
    l_sm = -nn.functional.logsigmoid(sa.diagonal().unsqueeze(1) - sa).mean()
    return {
        "l_rm": l_rm,
        "l_sm": l_sm,
        "acc": (diff > 0).float().mean(),
        "margin": diff.detach().mean(),
        "n": torch.tensor(len(diff)),
    }


def train_le(
    model: LEModel,
    prefix: list[int],
    streams: list[np.ndarray],
    pool: np.ndarray,
    cfg: LEConfig,
    seed: int,
    on_batch: Callable[[list[np.ndarray]], None] | None = None,
) -> list[dict[str, float]]:
    """Train LoRA + score head (+ item tokens) jointly; returns per-epoch {loss, l_rm, l_sm, accuracy, margin}."""
    rng = np.random.default_rng(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.le_lr)
    history = []
    model.train()
    for epoch in range(cfg.le_epochs):
        jobs = []
        for items in streams:
            negs = sample_negatives(items, pool, rng)  # fresh negatives every epoch
            jobs += training_chunks(items, negs, cfg)
        perm = rng.permutation(len(jobs))
        sums = {"loss": 0.0, "l_rm": 0.0, "l_sm": 0.0, "accuracy": 0.0, "margin": 0.0}
        count = 0
        bar = tqdm(range(0, len(perm), cfg.le_batch_size), desc=f"LE epoch {epoch + 1}/{cfg.le_epochs}", mininterval=5)
        for i in bar:
            batch = [jobs[j] for j in perm[i : i + cfg.le_batch_size]]
            if on_batch is not None:
                on_batch([np.concatenate([b[0].items, b[0].branch_item, b[1]]) for b in batch])
            terms = le_losses(model, prefix, batch)
            loss = terms["l_rm"] + cfg.le_sm_weight * terms["l_sm"]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            w = int(terms["n"])
            sums["loss"] += float(loss.detach()) * w
            sums["l_rm"] += float(terms["l_rm"].detach()) * w
            sums["l_sm"] += float(terms["l_sm"].detach()) * w
            sums["accuracy"] += float(terms["acc"]) * w
            sums["margin"] += float(terms["margin"]) * w
            count += w
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}", acc=f"{float(terms['acc']):.2f}")
        ep = {k: v / max(count, 1) for k, v in sums.items()}
        ep["epoch"] = epoch + 1
        ep["pairs"] = count
        history.append(ep)
        logger.info(
            "LE epoch %d: loss %.4f (rm %.4f, sm %.4f), pairwise accuracy %.3f, margin %.3f over %d pairs",
            epoch + 1,
            ep["loss"],
            ep["l_rm"],
            ep["l_sm"],
            ep["accuracy"],
            ep["margin"],
            count,
        )
    model.eval()
    return history
