"""The five cached stages of an LE build, each a method of :class:`Stages`: item_tokens ->
le_train -> candidates -> featurize -> augment (the sixth, writing the LE folder, is
:func:`recbole_lea.le.files.write_lea`).

In one process a stage runs through the verified, locked :class:`~recbole_lea.le.cache.StageCache`;
started by a launcher with several processes, item_tokens, le_train and featurize are split across
them (:mod:`recbole_lea.le.sharded`) and candidates and augment run on process 0 while the others
wait. Either way a stage's folder holds the same files.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .cache import StageCache
from .config import LEConfig
from .data import BaseData, UserStream, item_sentences, item_titles, training_item_pool, training_streams
from .distributed import Dist
from .llm import converted_folder, load_llm, memory_guard
from .model import FEATURIZE_USERS, LEModel
from .plan import LEPlan
from .train import sample_negatives

Hook = Callable[[str, int], None]


class LLMHolder:
    """Loads the LLM lazily (nothing is loaded when every LE stage is cached)."""

    def __init__(self, cfg: LEConfig):
        self.cfg = cfg
        self._llm = None

    def get(self):  # type: ignore[no-untyped-def]
        if self._llm is None:
            self._llm = load_llm(self.cfg)
        return self._llm

    def folder(self) -> Path | None:
        """The loaded model's folder (for the out-of-memory message), None before loading."""
        if self._llm is None:
            return None
        src = self._llm[2]
        return src.path if src.kind == "hf" else converted_folder(src, self.cfg)


@dataclass
class Stages:
    """The inputs every stage shares; one method per stage returns the stage's cache folder."""

    plan: LEPlan
    base: BaseData
    cache: StageCache
    hook: Hook
    dist: Dist | None = None
    streams: list[UserStream] = field(init=False)
    pool: np.ndarray = field(init=False)
    holder: LLMHolder = field(init=False)
    _model: LEModel | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.streams = training_streams(self.base, self.cfg)
        self.pool = training_item_pool(self.streams)
        self.holder = LLMHolder(self.cfg)

    @property
    def cfg(self) -> LEConfig:
        return self.plan.cfg

    @property
    def n_rows(self) -> int:
        return len(self.base.inter)

    def guard(self, stage: str):  # type: ignore[no-untyped-def]
        """Out-of-memory inside a stage: one message with the model size and what to try."""
        return memory_guard(self.cfg, stage, self.plan.device, self.plan.dtype, self.holder.folder)

    def timed(self, stage: str, run: Callable[[], Path]) -> Path:
        """A split stage: its time is its wall time in this process (shards, waiting, merge)."""
        t0 = time.time()
        out = run()
        self.cache.times[stage] = time.time() - t0
        return out

    # 1. item tokens ------------------------------------------------------------------------------
    def item_tokens(self) -> Path:
        if self.dist is None:
            return self.cache.run("item_tokens", self.plan.keys["item_tokens"], self._item_tokens)[0]
        from .sharded import sharded_item_tokens

        sentences = item_sentences(self.base, self.cfg)
        with self.guard("item_tokens"):
            return self.timed(
                "item_tokens",
                lambda: sharded_item_tokens(
                    self.cache, self.plan, self.dist, self.holder, sentences, self._item_tokens, self.hook
                ),
            )

    def _item_tokens(self, out: Path) -> dict:
        from .item_tokens import train_item_tokens

        llm, tok, _src, _dev, _dt = self.holder.get()
        if self.cfg.le_item_repr == "titles":
            return self._item_titles(out, llm, tok)
        sents = item_sentences(self.base, self.cfg)
        self.hook("item_tokens", 0)
        with self.guard("item_tokens"):
            table, report = train_item_tokens(llm, tok, sents, self.cfg, seed=self.cfg.le_seed)
        self.hook("item_tokens", 1)
        torch.save(table, out / "item_tokens.pt")
        return {"report": report}

    def _item_titles(self, out: Path, llm: Any, tok: Any) -> dict:
        """Items as titles (le_item_repr titles): no item tokens are learned; the stage keeps each
        item's title ids (``item_titles.pt``) and their mean word embedding (``item_tokens.pt``, the
        frozen item vector of the state model's loss)."""
        from .item_tokens import title_items

        self.hook("item_tokens", 0)
        with self.guard("item_tokens"):
            ids, table, report = title_items(llm, tok, item_titles(self.base, self.cfg), self.cfg)
        self.hook("item_tokens", 1)
        torch.save(ids, out / "item_titles.pt")
        torch.save(table, out / "item_tokens.pt")
        return {"report": report}

    # 2. joint RM + SM training -------------------------------------------------------------------
    def model(self, p_tok: Path) -> tuple[LEModel, list[int]]:
        """One LEModel per process: get_peft_model edits the LLM in place, so a second LEModel over
        the same LLM would inject the adapter again (peft warns). featurize loads its weights anyway."""
        from .model import prefix_ids

        llm, tok, _src, dev, _dt = self.holder.get()
        if self._model is None:
            table = torch.load(p_tok / "item_tokens.pt", weights_only=True)
            titles = None
            if self.cfg.le_item_repr == "titles":
                titles = torch.load(p_tok / "item_titles.pt", weights_only=True)
            torch.manual_seed(self.cfg.le_seed)
            model = LEModel(llm, table, self.cfg, titles=titles)
            self._model = model.place(dev) if self.cfg.le_quantization != "none" else model.to(dev)
        return self._model, prefix_ids(tok, self.cfg)

    def train_inputs(self) -> tuple[np.ndarray, list[np.ndarray]]:
        """The LE's training users (a ``le_train_fraction`` of the training streams) and their items."""
        cfg, streams = self.cfg, self.streams
        rng = np.random.default_rng(cfg.le_seed)
        n_users = max(1, int(round(cfg.le_train_fraction * len(streams)))) if streams else 0
        chosen = np.sort(rng.choice(len(streams), size=n_users, replace=False)) if n_users else np.zeros(0, int)
        train_streams = [streams[i].items for i in chosen]
        if cfg.le_train_max_steps_per_user > 0:
            train_streams = [s[-(cfg.le_train_max_steps_per_user + 1) :] for s in train_streams]
        return chosen, train_streams

    def save_train(self, out: Path, chosen: np.ndarray, train_streams: list[np.ndarray], history: Any) -> dict:
        assert self._model is not None
        torch.save(self._model.trainable_state(), out / "le_state.pt")
        users = [self.streams[i].user for i in chosen]
        (out / "train_users.json").write_text(json.dumps(users))
        return {"history": history, "users": len(users), "steps": int(sum(len(s) - 1 for s in train_streams))}

    def le_train(self, p_tok: Path) -> Path:
        if self.dist is None:
            return self.cache.run("le_train", self.plan.keys["le_train"], lambda out: self._le_train(out, p_tok))[0]
        from .sharded import sharded_le_train

        return self.timed(
            "le_train",
            lambda: sharded_le_train(
                self.cache, self.plan, self.dist, lambda on_epoch, ck: self._le_train_dp(p_tok, on_epoch, ck), self.hook
            ),
        )

    def _le_train(self, out: Path, p_tok: Path) -> dict:
        from .train import train_le

        model, prefix = self.model(p_tok)
        chosen, train_streams = self.train_inputs()
        self.hook("le_train", 0)
        with self.guard("le_train"):
            history = train_le(model, prefix, train_streams, self.pool, self.cfg, seed=self.cfg.le_seed + 1)
        self.hook("le_train", 1)
        return self.save_train(out, chosen, train_streams, history)

    def _le_train_dp(self, p_tok: Path, on_epoch: Callable[[int], None], checkpoints: Any) -> tuple[Any, Callable]:
        from .train import train_le_dp

        dist = self.dist
        assert dist is not None
        model, prefix = self.model(p_tok)
        chosen, train_streams = self.train_inputs()
        self.hook("le_train", 0)
        with self.guard("le_train"):
            history = train_le_dp(
                model, prefix, train_streams, self.pool, self.cfg, self.cfg.le_seed + 1, dist, checkpoints, on_epoch
            )
        self.hook("le_train", 1)
        return model, lambda out: {**self.save_train(out, chosen, train_streams, history), "processes": dist.world}

    # 3. backbone candidates ----------------------------------------------------------------------
    def candidates(self) -> Path:
        return self.on_main("candidates", self._candidates)

    def _candidates(self, out: Path) -> dict:
        from .augment import backbone_candidates

        self.hook("candidates", 0)
        cands, info = backbone_candidates(
            self.base, self.plan.data_path, self.streams, self.pool, self.cfg, self.plan.device
        )
        self.hook("candidates", 1)
        k = cands[0].shape[1] if cands else self.cfg.le_aug_topk
        table = np.full((self.n_rows, k), -1, dtype=np.int64)
        for s, c in zip(self.streams, cands, strict=True):
            table[s.rows[1:]] = c
        np.save(out / "candidates.npy", table)
        return info

    # 4. streaming featurization ------------------------------------------------------------------
    def featurizer(self, p_tok: Path, p_train: Path) -> tuple[LEModel, list[int]]:
        model, prefix = self.model(p_tok)
        model.load_trainable_state(torch.load(p_train / "le_state.pt", weights_only=True))
        model.eval()
        return model, prefix

    def featurize(self, p_tok: Path, p_train: Path, p_cand: Path) -> Path:
        if self.dist is None:
            compute = lambda out: self._featurize(out, p_tok, p_train, p_cand)  # noqa: E731
            return self.cache.run("featurize", self.plan.keys["featurize"], compute)[0]
        from .sharded import sharded_featurize

        def work() -> tuple[Any, list[int], np.ndarray, tuple]:  # type: ignore[type-arg]
            model, prefix = self.featurizer(p_tok, p_train)
            cand = np.load(p_cand / "candidates.npy")
            return model, prefix, cand, featurize_inputs(self.streams, self.pool, cand, self.cfg, self.n_rows)

        def save_merged(out: Path, res: list[dict[str, np.ndarray]], cand: np.ndarray, inputs: tuple) -> dict:  # type: ignore[type-arg]
            neg, aug_rows, _branches, targets = inputs
            return save_features(out, self.streams, res, self.n_rows, cand, neg, aug_rows, targets)

        with self.guard("featurize"):
            return self.timed(
                "featurize",
                lambda: sharded_featurize(self.cache, self.plan, self.dist, self.streams, work, save_merged, self.hook),
            )

    def _featurize(self, out: Path, p_tok: Path, p_train: Path, p_cand: Path) -> dict:
        from .model import stream_features

        streams, cfg = self.streams, self.cfg
        model, prefix = self.featurizer(p_tok, p_train)
        cand = np.load(p_cand / "candidates.npy")
        neg, aug_rows, branches, targets = featurize_inputs(streams, self.pool, cand, cfg, self.n_rows)
        bar = tqdm(total=int(sum(len(s.items) for s in streams)), desc="featurize", unit="step", mininterval=10)
        self.hook("featurize", 0)
        res = []
        with self.guard("featurize"):
            for i in range(0, len(streams), FEATURIZE_USERS):
                group = streams[i : i + FEATURIZE_USERS]
                res += stream_features(
                    model, prefix, [s.items for s in group], branches[i : i + FEATURIZE_USERS], cfg, progress=bar
                )
                if i == 0:
                    self.hook("featurize", 1)
        bar.close()
        return save_features(out, streams, res, self.n_rows, cand, neg, aug_rows, targets)

    # 5. augmentation: the LE picks the candidate with the highest reward -------------------------
    def augment(self, p_cand: Path, p_feat: Path) -> Path:
        return self.on_main("augment", lambda out: self._augment(out, p_cand, p_feat))

    def _augment(self, out: Path, p_cand: Path, p_feat: Path) -> dict:
        self.hook("augment", 0)
        cand = np.load(p_cand / "candidates.npy")
        r = np.load(p_feat / "rewards.npz")
        aug_rows = r["aug_rows"]
        best = r["cand_reward"].argmax(axis=1)
        idx = np.arange(self.n_rows)
        aug_id = np.where(aug_rows, cand[idx, best], -1)
        aug_reward = np.where(aug_rows, r["cand_reward"][idx, best], 0.0).astype(np.float32)
        np.savez(out / "augment.npz", aug_id=aug_id, aug_reward=aug_reward, aug_mask=aug_rows.astype(np.float32))
        self.hook("augment", 1)
        target = np.array([self.base.item_index[t] for t in self.base.inter[self.cfg.ITEM_ID_FIELD]], dtype=np.int64)
        hit = float((aug_id[aug_rows] == target[aug_rows]).mean()) if aug_rows.any() else 0.0
        return {"augmented": int(aug_rows.sum()), "aug_equals_target": hit}

    def on_main(self, name: str, compute: Callable[[Path], dict]) -> Path:
        """A stage that is not split: computed by process 0 while the others wait, then read by all."""
        if self.dist is None:
            return self.cache.run(name, self.plan.keys[name], compute)[0]
        if self.dist.is_main:
            self.cache.run(name, self.plan.keys[name], compute)
        self.dist.barrier()
        return self.cache.path(name, self.plan.fps[name])


def featurize_inputs(
    streams: list[UserStream], pool: np.ndarray, cand: np.ndarray, cfg: LEConfig, n_rows: int
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray], np.ndarray]:
    """The sampled negatives, the augmented rows and every stream's branch items (negative, then
    the candidates of augmented rows, -1 elsewhere): one RNG sequence over all users, drawn the same
    way in every process."""
    rng = np.random.default_rng(cfg.le_seed + 2)
    targets = np.concatenate([s.rows[1:] for s in streams]) if streams else np.zeros(0, np.int64)
    n_aug = int(round(cfg.le_aug_fraction * len(targets)))
    aug_rows = np.zeros(n_rows, dtype=bool)
    if n_aug:
        aug_rows[rng.choice(targets, size=n_aug, replace=False)] = True
    neg = np.full(n_rows, -1, dtype=np.int64)
    branches = []
    for s in streams:
        ng = sample_negatives(s.items, pool, rng)
        neg[s.rows[1:]] = ng
        c = cand[s.rows[1:]].copy()
        c[~aug_rows[s.rows[1:]]] = -1
        branches.append(np.concatenate([ng[:, None], c], axis=1))
    return neg, aug_rows, branches, targets


def save_features(
    out: Path,
    streams: list[UserStream],
    res: list[dict[str, np.ndarray]],
    n_rows: int,
    cand: np.ndarray,
    neg: np.ndarray,
    aug_rows: np.ndarray,
    targets: np.ndarray,
) -> dict:
    """Write the featurize stage's arrays from every stream's features (in stream order)."""
    hidden = res[0]["states"].shape[1] if res else 1
    stream_rows = np.concatenate([s.rows for s in streams]) if streams else np.zeros(0, np.int64)
    states = np.concatenate([r["states"] for r in res]).astype(np.float32) if res else np.zeros((0, hidden), np.float32)
    pos_reward = np.zeros(n_rows, dtype=np.float32)
    neg_reward = np.zeros(n_rows, dtype=np.float32)
    k = cand.shape[1]
    cand_reward = np.zeros((n_rows, k), dtype=np.float32)
    for s, r in zip(streams, res, strict=True):
        pos_reward[s.rows[1:]] = r["pos_reward"]
        neg_reward[s.rows[1:]] = r["branch_reward"][:, 0]
        cand_reward[s.rows[1:]] = r["branch_reward"][:, 1:]
    np.save(out / "stream_rows.npy", stream_rows)
    np.save(out / "states.npy", states)
    np.savez(
        out / "rewards.npz",
        pos_reward=pos_reward,
        neg_id=neg,
        neg_reward=neg_reward,
        cand_reward=cand_reward,
        aug_rows=aug_rows,
    )
    return {"rows": int(len(targets)), "augmented_rows": int(aug_rows.sum())}
