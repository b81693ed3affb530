"""The LE stages of a multi-process build, split in shards cached like stages.

Each stage that can be split is cut into units one process computes exactly as a one-process
build does: an item batch (item tokens), a group of :data:`~recbole_lea.le.model.FEATURIZE_USERS`
users (featurization). A unit is a *shard*: a folder of the :class:`~recbole_lea.le.cache.StageCache`
(``<stage>.shard-<fp>``, keyed by the stage's fingerprint and the shard's index), computed in a
temporary folder, checksummed, renamed into place. Process 0 lists the shards not yet done, every
process takes its share of them (:func:`~recbole_lea.le.distributed.assign`, by cost), and when
all are done process 0 merges them into the ordinary stage folder, which is then byte for byte
what a one-process build writes, and removes the shards. A killed build therefore resumes with
the shards it had not finished, with any number of processes.

LE training is data-parallel (:func:`~recbole_lea.le.train.train_le_dp`); after each epoch its
state (trainable weights, Adam's moments, the RNG) is a checkpoint folder
(``le_train.epoch-<fp>``), from which a killed build resumes.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .cache import StageCache, sha_of
from .distributed import Dist, assign
from .item_tokens import (
    ItemBatchResult,
    item_token_batches,
    item_token_report,
    pad_id,
    prepare_item_tokens,
    train_item_batch,
    trains_nothing,
)
from .train import EpochCheckpoints

logger = logging.getLogger(__name__)


def shard_key(stage: str, parent_fp: str, index: int, count: int) -> dict[str, Any]:
    """The cache key of shard ``index`` of ``count`` of the stage with fingerprint ``parent_fp``."""
    return {"stage": f"{stage}.shard", "parent": parent_fp, "shard": index, "of": count}


def done_on_main(cache: StageCache, name: str, fp: str, dist: Dist) -> bool:
    """Whether the stage folder exists and verifies, decided by process 0 for every process."""
    done = cache.verified(name, fp) is not None if dist.is_main else None
    return bool(dist.broadcast_json(done))


def run_shards(
    cache: StageCache,
    dist: Dist,
    stage: str,
    parent_fp: str,
    costs: list[float],
    compute: Callable[[int], Callable[[Path], dict]],
    hook: Callable[[str, int], None],
) -> list[Path]:
    """Compute the shards of ``stage`` not yet in the cache, each by one process; return every
    shard's folder (after all processes finished theirs)."""
    name = f"{stage}.shard"
    keys = [shard_key(stage, parent_fp, i, len(costs)) for i in range(len(costs))]
    fps = [sha_of(k) for k in keys]
    pending = [i for i, fp in enumerate(fps) if cache.verified(name, fp) is None] if dist.is_main else None
    pending = dist.broadcast_json(pending)
    owner = assign([costs[i] for i in pending], dist.world)
    mine = [i for i, r in zip(pending, owner, strict=True) if r == dist.rank]
    if dist.is_main:
        logger.info(
            "stage %s: %d of %d shards to compute over %d process(es) (%d cached)",
            stage,
            len(pending),
            len(costs),
            dist.world,
            len(costs) - len(pending),
        )
    first = True
    for i in mine:
        hook(f"{stage}.shard", i)
        cache.run(name, keys[i], compute(i), quiet=True)
        if first:
            hook(stage, 1)
            first = False
    dist.barrier()
    return [cache.path(name, fp) for fp in fps]


def remove_folders(folders: list[Path]) -> None:
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


# --- item tokens ----------------------------------------------------------------------------------
def sharded_item_tokens(
    cache: StageCache,
    plan: Any,
    dist: Dist,
    holder: Any,
    sentences: list[tuple[str, str]],
    whole_stage: Callable[[Path], dict],
    hook: Callable[[str, int], None],
) -> Path:
    """Item tokens with every item batch a shard (batches as in one process, assigned whole)."""
    name, fp, cfg = "item_tokens", plan.fps["item_tokens"], plan.cfg
    final = cache.path(name, fp)
    if done_on_main(cache, name, fp, dist):
        return final
    if trains_nothing(cfg) or cfg.le_item_repr == "titles":  # the initial table only: nothing worth splitting
        if dist.is_main:
            cache.run(name, plan.keys[name], whole_stage)
        dist.barrier()
        return final
    llm, tok, _src, device, _dtype = holder.get()
    sents, table = prepare_item_tokens(llm, tok, sentences, cfg, cfg.le_seed)
    batches = item_token_batches(sents, cfg)
    costs = [float(len(b) * max(len(sents[j].before) + 1 + len(sents[j].after) for j in b)) for b in batches]
    pad = pad_id(tok)
    bar = tqdm(
        total=len(sents) * max(cfg.le_token_steps, 1),
        desc="item tokens (this process)",
        unit="item-step",
        mininterval=5,
        disable=not dist.is_main,
    )

    def compute(i: int) -> Callable[[Path], dict]:
        def fn(out: Path) -> dict:
            res = train_item_batch(llm, sents, batches[i], table, cfg, pad, device, bar)
            counts = torch.tensor([res.correct0, res.total0, res.correct1, res.total1], dtype=torch.int64)
            torch.save(
                {
                    "idx": torch.from_numpy(np.asarray(res.idx, dtype=np.int64)),
                    "vec": res.vec,
                    "counts": counts,
                    "loss": torch.tensor(res.loss, dtype=torch.float64),
                },
                out / "batch.pt",
            )
            return {"shard": i, "items": len(res.idx)}

        return fn

    hook("item_tokens", 0)
    folders = run_shards(cache, dist, name, fp, costs, compute, hook)
    bar.close()
    if dist.is_main:

        def merge(out: Path) -> dict:
            results = []
            for folder in folders:
                d = torch.load(folder / "batch.pt", weights_only=True)
                c = [int(x) for x in d["counts"]]
                results.append(ItemBatchResult(d["idx"].numpy(), d["vec"], c[0], c[1], c[2], c[3], float(d["loss"])))
                table[d["idx"]] = d["vec"]
            report = item_token_report(results, len(sents), cfg)
            torch.save(table, out / "item_tokens.pt")
            return {"report": report, "processes": dist.world, "shards": len(folders)}

        cache.run(name, plan.keys[name], merge)
        remove_folders(folders)
    dist.barrier()
    return final


# --- LE training ----------------------------------------------------------------------------------
class CachedEpochs(EpochCheckpoints):
    """Epoch checkpoints of a data-parallel LE training as verified cache folders; process 0
    writes them and keeps only the latest."""

    NAME = "le_train.epoch"

    def __init__(self, cache: StageCache, parent_fp: str, epochs: int, dist: Dist):
        self.cache, self.parent, self.epochs, self.dist = cache, parent_fp, epochs, dist

    def _fp(self, epoch: int) -> str:
        return sha_of({"stage": self.NAME, "parent": self.parent, "epoch": epoch})

    def latest(self) -> tuple[int, dict[str, torch.Tensor], dict] | None:
        found = None
        if self.dist.is_main:
            for epoch in range(self.epochs - 1, 0, -1):
                if self.cache.verified(self.NAME, self._fp(epoch)) is not None:
                    found = epoch
                    break
        found = self.dist.broadcast_json(found)
        if found is None:
            return None
        folder = self.cache.path(self.NAME, self._fp(found))
        tensors = torch.load(folder / "state.pt", weights_only=True)
        progress = json.loads((folder / "progress.json").read_text())
        return int(found), tensors, progress

    def save(self, epoch: int, tensors: dict[str, torch.Tensor], progress: dict) -> None:
        if self.dist.is_main:

            def write(out: Path) -> dict:
                torch.save(tensors, out / "state.pt")
                (out / "progress.json").write_text(json.dumps(progress))
                return {"epoch": epoch}

            self.cache.run(self.NAME, {"stage": self.NAME, "parent": self.parent, "epoch": epoch}, write, quiet=True)
            remove_folders([self.cache.path(self.NAME, self._fp(e)) for e in range(1, epoch)])
        self.dist.barrier()

    def clear(self) -> None:
        if self.dist.is_main:
            remove_folders([self.cache.path(self.NAME, self._fp(e)) for e in range(1, self.epochs)])


def sharded_le_train(
    cache: StageCache,
    plan: Any,
    dist: Dist,
    train: Callable[[Callable[[int], None], EpochCheckpoints], tuple[Any, Callable[[Path], dict]]],
    hook: Callable[[str, int], None],
) -> Path:
    """Data-parallel LE training with epoch checkpoints; process 0 writes the stage folder."""
    name, fp = "le_train", plan.fps["le_train"]
    final = cache.path(name, fp)
    if done_on_main(cache, name, fp, dist):
        return final
    epochs = CachedEpochs(cache, fp, plan.cfg.le_epochs, dist)
    _model, save = train(lambda e: hook("le_train.epoch", e), epochs)
    if dist.is_main:
        cache.run(name, plan.keys[name], save)
        epochs.clear()
    dist.barrier()
    return final


# --- featurization --------------------------------------------------------------------------------
def sharded_featurize(
    cache: StageCache,
    plan: Any,
    dist: Dist,
    streams: list[Any],
    work: Callable[[], tuple[Any, list[int], np.ndarray, tuple]],
    save_merged: Callable[[Path, list[dict[str, np.ndarray]], np.ndarray, tuple], dict],
    hook: Callable[[str, int], None],
) -> Path:
    """Featurization with every group of users a shard (groups as in one process)."""
    from .model import FEATURIZE_USERS, stream_features

    name, fp, cfg = "featurize", plan.fps["featurize"], plan.cfg
    final = cache.path(name, fp)
    if done_on_main(cache, name, fp, dist):
        return final
    model, prefix, cand, inputs = work()
    branches = inputs[2]
    groups = [(a, min(a + FEATURIZE_USERS, len(streams))) for a in range(0, len(streams), FEATURIZE_USERS)]
    costs = [float(sum(len(streams[u].items) + int((branches[u] >= 0).sum()) for u in range(a, b))) for a, b in groups]
    bar = tqdm(desc="featurize (this process)", unit="step", mininterval=10, disable=not dist.is_main)

    def compute(g: int) -> Callable[[Path], dict]:
        def fn(out: Path) -> dict:
            a, b = groups[g]
            res = stream_features(model, prefix, [s.items for s in streams[a:b]], branches[a:b], cfg, progress=bar)
            np.savez(
                out / "features.npz",
                states=np.concatenate([r["states"] for r in res]),
                pos_reward=np.concatenate([r["pos_reward"] for r in res]),
                branch_reward=np.concatenate([r["branch_reward"] for r in res]),
                lengths=np.array([len(s.items) for s in streams[a:b]], dtype=np.int64),
            )
            return {"shard": g, "users": b - a}

        return fn

    hook("featurize", 0)
    folders = run_shards(cache, dist, name, fp, costs, compute, hook)
    bar.close()
    if dist.is_main:

        def merge(out: Path) -> dict:
            res: list[dict[str, np.ndarray]] = []
            for folder in folders:
                # each array read once per shard (indexing an NpzFile reads the array again every
                # time, and every slice would keep its own full copy alive)
                with np.load(folder / "features.npz") as d:
                    states, pos, branch, lengths = d["states"], d["pos_reward"], d["branch_reward"], d["lengths"]
                s_off = r_off = 0
                for n in lengths.tolist():
                    res.append(
                        {
                            "states": states[s_off : s_off + n],
                            "pos_reward": pos[r_off : r_off + n - 1],
                            "branch_reward": branch[r_off : r_off + n - 1],
                        }
                    )
                    s_off, r_off = s_off + n, r_off + n - 1
            return {**save_merged(out, res, cand, inputs), "processes": dist.world, "shards": len(folders)}

        cache.run(name, plan.keys[name], merge)
        remove_folders(folders)
    dist.barrier()
    return final
