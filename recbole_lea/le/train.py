"""Joint training of the reward model (paper Eq. 1) and state model (Eq. 2) with one shared LoRA
adapter, on a fraction of the TRAINING users' training rows, in the streaming layout."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .config import LEConfig
from .data import LEInputError
from .distributed import Dist, assign
from .model import ChunkSpec, LEModel, plan_chunks

logger = logging.getLogger(__name__)


def epoch_line(ep: dict[str, float]) -> str:
    """The log line of one LE training epoch (``ep``: mean loss terms, accuracy, margin, pairs)."""
    return (
        f"LE epoch {int(ep['epoch'])}: loss {ep['loss']:.4f} (rm {ep['l_rm']:.4f}, sm {ep['l_sm']:.4f}), "
        f"pairwise accuracy {ep['accuracy']:.3f}, margin {ep['margin']:.3f} over {int(ep['pairs'])} pairs"
    )


def check_finite_loss(epoch: int, step: int, l_rm: float, l_sm: float, cfg: LEConfig) -> None:
    """Stop the LE training at the first batch whose loss is nan or inf (a diverged LE would
    write nan rewards and states that RecBole silently fills): one message naming the epoch, the
    loss term and the option to change."""
    bad = [f"{name} = {value}" for name, value in (("l_rm", l_rm), ("l_sm", l_sm)) if not math.isfinite(value)]
    if bad:
        raise LEInputError(
            f"LE epoch {epoch}, batch {step}: the LE training diverged, its loss term {' and '.join(bad)} is not "
            f"finite (l_rm: reward model, l_sm: state model, weighted by le_sm_weight={cfg.le_sm_weight:g}); "
            f"lower the learning rate le_lr (now {cfg.le_lr:g}, e.g. --le_lr={cfg.le_lr / 10:g}) and build the LE again"
        )


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
) -> list[dict[str, float]]:
    """Train LoRA + score head (+ item tokens) jointly; returns per-epoch {loss, l_rm, l_sm, accuracy, margin}."""
    rng = np.random.default_rng(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.le_lr)
    history = []
    if cfg.le_grad_checkpointing:
        model.enable_grad_checkpointing()
    model.train()
    for epoch in range(cfg.le_epochs):
        jobs = epoch_jobs(streams, pool, cfg, rng)  # fresh negatives every epoch
        perm = rng.permutation(len(jobs))
        sums = {"loss": 0.0, "l_rm": 0.0, "l_sm": 0.0, "accuracy": 0.0, "margin": 0.0}
        count = 0
        bar = tqdm(range(0, len(perm), cfg.le_batch_size), desc=f"LE epoch {epoch + 1}/{cfg.le_epochs}", mininterval=5)
        for i in bar:
            batch = [jobs[j] for j in perm[i : i + cfg.le_batch_size]]
            terms = le_losses(model, prefix, batch)
            check_finite_loss(epoch + 1, i // cfg.le_batch_size + 1, float(terms["l_rm"]), float(terms["l_sm"]), cfg)
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
        logger.info(epoch_line(ep))
    model.eval()
    return history


# --- data-parallel LE training (several processes) ---------------------------------------------
TrainJob = tuple[ChunkSpec, np.ndarray]


def epoch_jobs(streams: list[np.ndarray], pool: np.ndarray, cfg: LEConfig, rng: np.random.Generator) -> list[TrainJob]:
    """One epoch's training chunks, drawing fresh negatives from ``rng`` as :func:`train_le` does."""
    jobs: list[TrainJob] = []
    for items in streams:
        jobs += training_chunks(items, sample_negatives(items, pool, rng), cfg)
    return jobs


def _job_tokens(job: TrainJob) -> int:
    return len(job[0].items) + len(job[0].branch_item)


def split_rows(batch: list[TrainJob], world: int) -> list[list[int]]:
    """The chunks (rows) of one global batch each process computes, balanced by tokens."""
    owner = assign([_job_tokens(j) for j in batch], world)
    return [[c for c in range(len(batch)) if owner[c] == r] for r in range(world)]


def local_losses(
    model: LEModel, prefix: list[int], batch: list[TrainJob], mine: list[int], cfg: LEConfig
) -> tuple[torch.Tensor | None, torch.Tensor]:
    """This process's share of the global batch's loss and its statistics.

    L = L_rm + w L_sm is a mean over the N reward pairs of the whole batch (L_rm) and over the
    N x N matrix of every pair's state against every positive item token of the batch (L_sm,
    in-batch negatives). Row i of that matrix needs only its own state and the positives' item
    tokens, which every process reads from its copy of the table; so a process computes its rows
    (the chunks ``mine``) and divides by the GLOBAL N and N x N: the sum of the processes' losses
    is the one-process loss, and the sum of their gradients its gradient.

    Returns (loss or None when this process has no row, [loss, l_rm, l_sm, correct, margin sum])."""
    dev = model.device
    pos_all = np.concatenate([b[1] for b in batch])
    n = len(pos_all)
    stats = torch.zeros(5, dtype=torch.float64)
    if not mine or n == 0:
        return None, stats
    offsets = np.concatenate([[0], np.cumsum([len(b[1]) for b in batch])])
    out = model.forward_chunks(prefix, [batch[c][0] for c in mine])
    r_pos, r_neg, states, own = [], [], [], []
    for b, c in enumerate(mine):
        k = len(batch[c][0].branch_item)
        r_pos.append(out["pos_reward"][b][:k])
        r_neg.append(out["branch_reward"][b])
        states.append(out["states"][b][:k])
        own.append(np.arange(offsets[c], offsets[c] + k))
    diff = torch.cat(r_pos) - torch.cat(r_neg)
    s = torch.cat(states)  # [n_local, D]
    a = model.item_tokens[torch.from_numpy(pos_all).to(dev)].float()  # [N, D]
    own_t = torch.from_numpy(np.concatenate(own)).to(dev)
    sa = s @ a.T  # [n_local, N]
    l_rm = -nn.functional.logsigmoid(diff).sum() / n
    l_sm = -nn.functional.logsigmoid(sa.gather(1, own_t.unsqueeze(1)) - sa).sum() / (n * n)
    loss = l_rm + cfg.le_sm_weight * l_sm
    stats = torch.tensor(
        [
            float(loss.detach()),
            float(l_rm.detach()),
            float(l_sm.detach()),
            float((diff > 0).sum()),
            float(diff.detach().sum()),
        ],
        dtype=torch.float64,
    )
    return loss, stats


def touched_items(batch: list[TrainJob]) -> np.ndarray:
    """Item-token rows that can get a gradient from this global batch (every process computes the
    same set): chunk items, branch items and positives."""
    parts = [np.concatenate([spec.items, spec.branch_item, pos]) for spec, pos in batch]
    return np.unique(np.concatenate(parts).astype(np.int64))


def sum_gradients(model: LEModel, params: list[nn.Parameter], rows: np.ndarray, dist: Dist) -> None:
    """Sum every trainable parameter's gradient over the processes (one all-reduce of one flat
    buffer); of the item-token table only ``rows`` (the others are zero in every process)."""
    if dist.world == 1:
        return
    table = model.item_tokens
    flat, where = [], []
    for p in params:
        g = p.grad if p.grad is not None else torch.zeros_like(p)
        if p is table:
            g_rows = g[torch.from_numpy(rows).to(g.device)]
            flat.append(g_rows.reshape(-1).float())
        else:
            flat.append(g.reshape(-1).float())
        where.append((p, g))
    buf = torch.cat(flat) if flat else torch.zeros(0)
    dist.all_reduce_(buf)
    pos = 0
    for (p, g), part in zip(where, flat, strict=True):
        chunk = buf[pos : pos + part.numel()]
        pos += part.numel()
        if p is table:
            idx = torch.from_numpy(rows).to(g.device)
            g[idx] = chunk.view(len(rows), -1).to(g.dtype)
        else:
            g.copy_(chunk.view_as(g).to(g.dtype))
        p.grad = g


class EpochCheckpoints:
    """Where a multi-process LE training leaves its state after each epoch (LoRA, score head,
    item tokens, Adam's moments, the sampling RNG, the history), so a killed build resumes from
    the last finished epoch. ``save``/``latest`` are implemented by the build (it owns the cache);
    this class only says what is saved."""

    def latest(self) -> tuple[int, dict[str, torch.Tensor], dict] | None:  # pragma: no cover - interface
        raise NotImplementedError

    def save(self, epoch: int, tensors: dict[str, torch.Tensor], progress: dict) -> None:  # pragma: no cover
        raise NotImplementedError


def _rng_progress(rng: np.random.Generator) -> dict:
    return {"bit_generator": rng.bit_generator.state}


def train_le_dp(
    model: LEModel,
    prefix: list[int],
    streams: list[np.ndarray],
    pool: np.ndarray,
    cfg: LEConfig,
    seed: int,
    dist: Dist,
    checkpoints: EpochCheckpoints | None = None,
    on_epoch: Callable[[int], None] | None = None,
) -> list[dict[str, float]]:
    """:func:`train_le` with the rows of every global batch split over the processes.

    Every process draws the same negatives and batch order (same seed), computes the loss of its
    rows scaled to the global batch (:func:`local_losses`), and the gradients are summed across
    processes (:func:`sum_gradients`) before the same Adam step everywhere: the one-process update
    up to the order in which floating-point gradient terms are added. The parameters start equal
    (broadcast from process 0) and stay equal. After each epoch the state goes to ``checkpoints``.
    """
    rng = np.random.default_rng(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.le_lr)
    history: list[dict[str, float]] = []
    start = 0
    resumed = checkpoints.latest() if checkpoints is not None else None
    if resumed is not None:
        start, history = _resume(model, opt, rng, resumed)
        logger.info("LE training: resuming after epoch %d of %d", start, cfg.le_epochs)
    with torch.no_grad():
        for p in params:  # equal starting points in every process (as DDP does)
            dist.broadcast_(p.data)
    if cfg.le_grad_checkpointing:
        model.enable_grad_checkpointing()
    model.train()
    for epoch in range(start, cfg.le_epochs):
        jobs = epoch_jobs(streams, pool, cfg, rng)
        perm = rng.permutation(len(jobs))
        sums = torch.zeros(5, dtype=torch.float64)
        count = 0
        bar = tqdm(
            range(0, len(perm), cfg.le_batch_size),
            desc=f"LE epoch {epoch + 1}/{cfg.le_epochs}",
            mininterval=5,
            disable=not dist.is_main,
        )
        for i in bar:
            batch = [jobs[j] for j in perm[i : i + cfg.le_batch_size]]
            mine = split_rows(batch, dist.world)[dist.rank]
            opt.zero_grad(set_to_none=True)
            loss, stats = local_losses(model, prefix, batch, mine, cfg)
            if loss is not None:
                loss.backward()
            sum_gradients(model, params, touched_items(batch), dist)
            dist.all_reduce_(stats)  # the same sums in every process: all stop together, or none
            check_finite_loss(epoch + 1, i // cfg.le_batch_size + 1, float(stats[1]), float(stats[2]), cfg)
            opt.step()
            w = int(sum(len(b[1]) for b in batch))
            sums += torch.tensor([stats[0] * w, stats[1] * w, stats[2] * w, stats[3], stats[4]], dtype=torch.float64)
            count += w
            if w:
                bar.set_postfix(loss=f"{float(stats[0]):.3f}", acc=f"{float(stats[3]) / w:.2f}")
        keys = ("loss", "l_rm", "l_sm", "accuracy", "margin")
        ep: dict[str, float] = {k: float(v) / max(count, 1) for k, v in zip(keys, sums.tolist(), strict=True)}
        ep["epoch"] = epoch + 1
        ep["pairs"] = count
        history.append(ep)
        log = logger.info if dist.is_main else logger.debug  # one line per epoch, not one per process
        log(f"{epoch_line(ep)} ({dist.world} processes)")
        if checkpoints is not None and epoch + 1 < cfg.le_epochs:
            _save_epoch(checkpoints, epoch + 1, model, opt, rng, history)
        if on_epoch is not None:
            on_epoch(epoch + 1)
    model.eval()
    return history


def _resume(
    model: LEModel, opt: torch.optim.Optimizer, rng: np.random.Generator, resumed: tuple[int, dict, dict]
) -> tuple[int, list[dict[str, float]]]:
    """Restore the state an epoch checkpoint holds; returns (epochs done, history so far)."""
    start, tensors, progress = resumed
    model.load_trainable_state({k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")})
    opt.load_state_dict(_unflatten_optimizer(tensors, progress["optimizer"]))
    rng.bit_generator.state = progress["rng"]["bit_generator"]
    torch.set_rng_state(tensors["rng.torch"])
    if "rng.cuda" in tensors and model.device.type == "cuda":
        torch.cuda.set_rng_state(tensors["rng.cuda"], model.device)
    return start, list(progress["history"])


def _save_epoch(
    checkpoints: EpochCheckpoints,
    epoch: int,
    model: LEModel,
    opt: torch.optim.Optimizer,
    rng: np.random.Generator,
    history: list[dict[str, float]],
) -> None:
    """Everything a resumed training needs after ``epoch``: LoRA, heads, Adam's moments, the RNGs."""
    tensors, opt_meta = _flatten_optimizer(opt.state_dict())
    tensors.update({f"model.{k}": v for k, v in model.trainable_state().items()})
    tensors["rng.torch"] = torch.get_rng_state()
    if model.device.type == "cuda":
        tensors["rng.cuda"] = torch.cuda.get_rng_state(model.device)
    progress = {"optimizer": opt_meta, "rng": _rng_progress(rng), "history": history, "epoch": epoch}
    checkpoints.save(epoch, tensors, progress)


def _flatten_optimizer(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Adam's state_dict as (named tensors, JSON-able rest), so a checkpoint is a plain tensor
    file plus JSON (read back with ``weights_only`` loading and json, nothing unpickled)."""
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, dict[str, Any]] = {}
    for pid, entry in state["state"].items():
        plain[str(pid)] = {}
        for name, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"opt.{pid}.{name}"] = value.detach().cpu()
            else:
                plain[str(pid)][name] = value
    return tensors, {"state": plain, "param_groups": state["param_groups"]}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict[str, Any]] = {int(pid): dict(rest) for pid, rest in meta["state"].items()}
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, pid, name = key.split(".", 2)
            state.setdefault(int(pid), {})[name] = value
    groups = [dict(g, betas=tuple(g["betas"])) if "betas" in g else dict(g) for g in meta["param_groups"]]
    return {"state": state, "param_groups": groups}
