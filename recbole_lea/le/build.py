"""Stage 2 of the pipeline, the LE build: item_tokens -> le_train -> candidates -> featurize ->
augment -> write.

:func:`plan_le` derives every stage's key and fingerprint from the resolved options (through the
stage tags of :class:`~recbole_lea.le.config.LEConfig`), the data files' sha256, the LLM weights'
sha256, the split and the code version, without running anything; the fingerprint of the output
names its folder, ``<data_path>/lea/<dataset>-<fingerprint>/<dataset>-lea/``, so LEs of
different configurations live side by side. :func:`build_le` runs the stages through the
verified, locked :class:`~recbole_lea.le.cache.StageCache` and writes the LE folder
(:mod:`recbole_lea.le_files.writer`).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from recbole_lea.le_files.check import LEDatasetMismatch, verify_le_dir

from .cache import StageCache, code_version, locked, sha_of, tmp_name
from .config import NEUTRAL, STAGES, LEConfig, resolve_config, stage_options
from .data import (
    BaseData,
    LEInputError,
    UserStream,
    item_sentences,
    load_base,
    training_item_pool,
    training_streams,
)
from .distributed import Dist, check_agreement, init_dist
from .llm import (
    check_quantization,
    converted_folder,
    file_sha256,
    load_llm,
    memory_guard,
    model_source,
    resolve_device,
    resolve_dtype,
)
from .train import sample_negatives

logger = logging.getLogger(__name__)

#: folder under data_path that holds the LE folders, one per fingerprint
LE_ROOT = "lea"
#: the split the LE is trained on (the run's leave-one-out training rows)
LOO_SPLIT: dict[str, Any] = {"protocol": "loo"}


@dataclass
class LEPlan:
    """Every stage's key and fingerprint, and where the LE folder goes; computed without building."""

    dataset: str
    data_path: Path
    cfg: LEConfig
    files: dict[str, str]  # sha256 of the base .inter and .item
    model: dict[str, str]  # le_model, path and sha256 of its weights
    device: torch.device
    dtype: torch.dtype
    code: str
    split: dict[str, Any]
    keys: dict[str, dict[str, Any]] = field(default_factory=dict)
    fps: dict[str, str] = field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        return self.fps["write"]

    @property
    def out_dir(self) -> Path:
        return le_folder(self.data_path, self.dataset, self.fingerprint)

    def fix(self) -> str:
        return f"build it with `python run_recbole_lea.py --build-le --dataset={self.dataset}` (same options)"


def le_folder(data_path: Path | str, dataset: str, fingerprint: str) -> Path:
    """``<data_path>/lea/<dataset>-<fingerprint[:12]>/<dataset>-lea``."""
    return Path(data_path) / LE_ROOT / f"{dataset}-{fingerprint[:12]}" / f"{dataset}-lea"


def _resolved(cfg: LEConfig, name: str, plan: LEPlan) -> Any:
    """An option's value as it enters a key: the weights' sha256 for le_model, the device and
    dtype actually used for le_device / le_dtype."""
    if name == "le_model":
        return plan.model["sha256"]
    if name == "le_device":
        return plan.device.type
    if name == "le_dtype":
        return str(plan.dtype)
    return getattr(cfg, name)


def _ensure_base(data_path: Path, dataset: str) -> None:
    if (data_path / dataset / f"{dataset}.inter").exists():
        return
    if dataset == "ml-100k":
        from recbole_lea.datasets.ml100k import ensure_ml100k

        ensure_ml100k(str(data_path))


def plan_le(dataset: str, data_path: Path | str, cfg: LEConfig, split: dict[str, Any] | None = None) -> LEPlan:
    """The stage keys, fingerprints and LE folder of building ``dataset``'s LE with ``cfg``."""
    data_path = Path(data_path)
    _ensure_base(data_path, dataset)
    folder = data_path / dataset
    inter, item = folder / f"{dataset}.inter", folder / f"{dataset}.item"
    for path, what in ((inter, "base interactions"), (item, "item file (the LE needs item text)")):
        if not path.is_file():
            raise LEInputError(
                f"{what} {path} not found; convert the dataset first (`python -m recbole_lea.datasets --help`) "
                "or pass the right data_path"
            )
    cache = cfg.cache_dir()
    src = model_source(cfg)
    device = resolve_device(cfg)
    check_quantization(cfg, device)
    plan = LEPlan(
        dataset=dataset,
        data_path=data_path,
        cfg=cfg,
        files={"inter": file_sha256(inter, cache), "item": file_sha256(item, cache)},
        model={"le_model": cfg.le_model, "path": str(src.path), "sha256": src.fingerprint},
        device=device,
        dtype=resolve_dtype(cfg, device),
        code=code_version(),
        split=dict(split or LOO_SPLIT),
    )
    inputs = {
        "item_tokens": {"item": plan.files["item"]},
        "le_train": {"inter": plan.files["inter"], "split": plan.split, "upstream": ("item_tokens",)},
        "candidates": {"inter": plan.files["inter"], "item": plan.files["item"], "split": plan.split},
        "featurize": {"upstream": ("le_train", "candidates")},
        "augment": {"upstream": ("featurize",)},
    }
    for stage in STAGES[:-1]:
        key: dict[str, Any] = {"stage": stage, "code": plan.code}
        for name in stage_options(stage):
            key[name] = _resolved(cfg, name, plan)
        spec = dict(inputs[stage])
        for up in spec.pop("upstream", ()):
            key[up] = plan.fps[up]
        key.update(spec)
        plan.keys[stage], plan.fps[stage] = key, sha_of(key)
    # the output: every stage, the data, the weights, the split and every option that can change a result
    write_key = {
        "stage": "write",
        "code": plan.code,
        "files": plan.files,
        "model": plan.model["sha256"],
        "split": plan.split,
        "stages": {s: plan.fps[s] for s in STAGES[:-1]},
        "config": {k: _resolved(cfg, k, plan) for k in cfg.to_dict() if k not in NEUTRAL},
    }
    plan.keys["write"], plan.fps["write"] = write_key, sha_of(write_key)
    return plan


class _LLMHolder:
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


def build_le(
    dataset: str,
    data_path: str | Path = "atomic_datasets",
    profile: str | dict | None = "cpu",
    overrides: dict | None = None,
    _stage_hook: Callable[[str, int], None] | None = None,
    _stop_after: str | None = None,
    cfg: LEConfig | None = None,
    split: dict[str, Any] | None = None,
    _sharded: bool = False,
) -> Path:
    """Build (or reuse) the LE folder of ``dataset`` for these options and return it. ``split``:
    the split whose training rows train the LE (default leave-one-out; see
    :func:`recbole_lea.quick_start.split_of`).

    Started by a launcher with several processes (``accelerate launch``, ``torchrun``), every
    process calls this and the stages are split across them (:mod:`recbole_lea.le.distributed`);
    process 0 writes the LE folder and every process returns it. ``_sharded`` runs that path in
    one process (tests)."""
    cfg = cfg or resolve_config(dataset, profile, overrides, data_path)
    plan = plan_le(dataset, data_path, cfg, split)
    lock_path = cfg.cache_dir() / "locks" / f"build-{dataset}-{plan.fingerprint[:24]}.lock"
    dist = init_dist(plan.device)
    threads = torch.get_num_threads()  # le_threads holds for the build only: a run after it keeps its own
    try:
        if dist is None and not _sharded:
            with locked(lock_path):
                return _build(plan, _stage_hook, _stop_after)
        dist = dist or Dist()
        check_agreement(dist, _described(plan))
        # process 0 holds the build lock for the group (two builds of one LE run one after the other)
        lock = locked(lock_path) if dist.is_main else None
        if lock is not None:
            lock.acquire()
        try:
            dist.barrier()
            return _build(plan, _stage_hook, _stop_after, dist)
        finally:
            if lock is not None:
                lock.release()
    finally:
        torch.set_num_threads(threads)


def _described(plan: LEPlan) -> dict[str, Any]:
    """What every process of one build must agree on: each option, the data, the LLM weights,
    the split, the code and the cache folder."""
    out: dict[str, Any] = {k: v for k, v in plan.cfg.to_dict().items()}
    out["le_cache_dir (resolved)"] = str(plan.cfg.cache_dir().resolve())
    out[f"{plan.dataset}.inter sha256"] = plan.files["inter"]
    out[f"{plan.dataset}.item sha256"] = plan.files["item"]
    out["LLM weights sha256"] = plan.model["sha256"]
    out["split"] = plan.split
    out["LE code version"] = plan.code
    out["device type"] = plan.device.type
    return out


def _up_to_date(out_dir: Path, plan: LEPlan) -> bool:
    try:
        verify_le_dir(out_dir, plan.fix())
        if json.loads((out_dir / "manifest.json").read_text()).get("fingerprint") == plan.fingerprint:
            logger.info("LE folder %s is up to date", out_dir)
            return True
    except LEDatasetMismatch as err:
        if out_dir.exists():
            logger.warning("%s; rewriting it from the cached stages", err)
    return False


def _build(
    plan: LEPlan,
    _stage_hook: Callable[[str, int], None] | None,
    _stop_after: str | None,
    dist: Dist | None = None,
) -> Path:
    t_start = time.time()
    cfg, dataset = plan.cfg, plan.dataset
    out_dir = plan.out_dir
    main = dist is None or dist.is_main
    fresh = _up_to_date(out_dir, plan) if main else False
    if dist is not None:
        fresh = bool(dist.broadcast_json(fresh))
    if fresh:
        return out_dir
    if cfg.le_threads > 0:
        torch.set_num_threads(cfg.le_threads)
    base = load_base(plan.data_path, dataset, cfg, plan.split)
    cache = StageCache(cfg.cache_dir())
    device = plan.device
    holder = _LLMHolder(cfg)
    streams = training_streams(base, cfg)
    pool = training_item_pool(streams)
    hook = _stage_hook or (lambda stage, i: None)

    def guard(stage: str):  # type: ignore[no-untyped-def]
        """Out-of-memory inside a stage: one message with the model size and what to try."""
        return memory_guard(cfg, stage, device, plan.dtype, holder.folder)

    # 1. item tokens ------------------------------------------------------------------------
    from .item_tokens import train_item_tokens

    def do_item_tokens(out: Path) -> dict:
        llm, tok, _src, _dev, _dt = holder.get()
        sents = item_sentences(base, cfg)
        hook("item_tokens", 0)
        with guard("item_tokens"):
            table, report = train_item_tokens(llm, tok, sents, cfg, seed=cfg.le_seed)
        hook("item_tokens", 1)
        torch.save(table, out / "item_tokens.pt")
        return {"report": report}

    if dist is None:
        p_tok, _ = cache.run("item_tokens", plan.keys["item_tokens"], do_item_tokens)
    else:
        from .sharded import sharded_item_tokens

        t0 = time.time()
        with guard("item_tokens"):
            p_tok = sharded_item_tokens(cache, plan, dist, holder, item_sentences(base, cfg), do_item_tokens, hook)
        cache.times["item_tokens"] = time.time() - t0
    if _stop_after == "item_tokens":
        return p_tok

    # 2. joint RM + SM training ------------------------------------------------------------------
    from .model import LEModel, prefix_ids
    from .train import train_le

    built: dict[str, LEModel] = {}

    def make_model(table: torch.Tensor) -> tuple[LEModel, list[int]]:
        """One LEModel per process: get_peft_model edits the LLM in place, so a second LEModel over
        the same LLM would inject the adapter again (peft warns). featurize loads its weights anyway."""
        llm, tok, _src, dev, _dt = holder.get()
        if "model" not in built:
            torch.manual_seed(cfg.le_seed)
            model = LEModel(llm, table, cfg)
            built["model"] = model.place(dev) if cfg.le_quantization != "none" else model.to(dev)
        return built["model"], prefix_ids(tok, cfg)

    def train_inputs() -> tuple[np.ndarray, list[np.ndarray]]:
        rng = np.random.default_rng(cfg.le_seed)
        n_users = max(1, int(round(cfg.le_train_fraction * len(streams)))) if streams else 0
        chosen = np.sort(rng.choice(len(streams), size=n_users, replace=False)) if n_users else np.zeros(0, int)
        train_streams = [streams[i].items for i in chosen]
        if cfg.le_train_max_steps_per_user > 0:
            train_streams = [s[-(cfg.le_train_max_steps_per_user + 1) :] for s in train_streams]
        return chosen, train_streams

    def save_train(out: Path, model: LEModel, chosen: np.ndarray, train_streams: list[np.ndarray], history) -> dict:  # type: ignore[no-untyped-def]
        torch.save(model.trainable_state(), out / "le_state.pt")
        users = [streams[i].user for i in chosen]
        (out / "train_users.json").write_text(json.dumps(users))
        return {"history": history, "users": len(users), "steps": int(sum(len(s) - 1 for s in train_streams))}

    def do_train(out: Path) -> dict:
        table = torch.load(p_tok / "item_tokens.pt", weights_only=True)
        model, prefix = make_model(table)
        chosen, train_streams = train_inputs()
        hook("le_train", 0)
        with guard("le_train"):
            history = train_le(model, prefix, train_streams, pool, cfg, seed=cfg.le_seed + 1)
        hook("le_train", 1)
        return save_train(out, model, chosen, train_streams, history)

    if dist is None:
        p_train, _ = cache.run("le_train", plan.keys["le_train"], do_train)
    else:
        from .sharded import sharded_le_train

        def dp_train(on_epoch: Callable[[int], None], checkpoints) -> tuple[LEModel, Callable[[Path], dict]]:  # type: ignore[no-untyped-def]
            from .train import train_le_dp

            table = torch.load(p_tok / "item_tokens.pt", weights_only=True)
            model, prefix = make_model(table)
            chosen, train_streams = train_inputs()
            hook("le_train", 0)
            with guard("le_train"):
                history = train_le_dp(
                    model, prefix, train_streams, pool, cfg, cfg.le_seed + 1, dist, checkpoints, on_epoch
                )
            hook("le_train", 1)
            return model, lambda out: {
                **save_train(out, model, chosen, train_streams, history),
                "processes": dist.world,
            }

        t0 = time.time()
        p_train = sharded_le_train(cache, plan, dist, dp_train, hook)
        cache.times["le_train"] = time.time() - t0
    if _stop_after == "le_train":
        return p_train

    # 3. backbone candidates --------------------------------------------------------------------
    from .augment import backbone_candidates

    n_rows = len(base.inter)

    def do_candidates(out: Path) -> dict:
        hook("candidates", 0)
        cands, info = backbone_candidates(base, plan.data_path, streams, pool, cfg, device)
        hook("candidates", 1)
        k = cands[0].shape[1] if cands else cfg.le_aug_topk
        table = np.full((n_rows, k), -1, dtype=np.int64)
        for s, c in zip(streams, cands, strict=True):
            table[s.rows[1:]] = c
        np.save(out / "candidates.npy", table)
        return info

    p_cand = _on_main(cache, "candidates", plan, dist, do_candidates)

    # 4. streaming featurization ------------------------------------------------------------------
    from .model import stream_features

    def featurizer() -> tuple[LEModel, list[int]]:
        table = torch.load(p_tok / "item_tokens.pt", weights_only=True)
        model, prefix = make_model(table)
        model.load_trainable_state(torch.load(p_train / "le_state.pt", weights_only=True))
        model.eval()
        return model, prefix

    def do_featurize(out: Path) -> dict:
        model, prefix = featurizer()
        cand = np.load(p_cand / "candidates.npy")
        neg, aug_rows, branches, targets = featurize_inputs(streams, pool, cand, cfg, n_rows)
        total = int(sum(len(s.items) for s in streams))
        bar = tqdm(total=total, desc="featurize", unit="step", mininterval=10)
        hook("featurize", 0)
        res = []
        with guard("featurize"):
            for i in range(0, len(streams), FEATURIZE_USERS):
                group = streams[i : i + FEATURIZE_USERS]
                res += stream_features(
                    model, prefix, [s.items for s in group], branches[i : i + FEATURIZE_USERS], cfg, progress=bar
                )
                if i == 0:
                    hook("featurize", 1)
        bar.close()
        return save_features(out, streams, res, n_rows, cand, neg, aug_rows, targets)

    if dist is None:
        p_feat, _ = cache.run("featurize", plan.keys["featurize"], do_featurize)
    else:
        from .sharded import sharded_featurize

        def feature_work() -> tuple[Any, list[int], np.ndarray, tuple]:  # type: ignore[type-arg]
            model, prefix = featurizer()
            cand = np.load(p_cand / "candidates.npy")
            return model, prefix, cand, featurize_inputs(streams, pool, cand, cfg, n_rows)

        def save_merged(out: Path, res: list[dict[str, np.ndarray]], cand: np.ndarray, inputs: tuple) -> dict:  # type: ignore[type-arg]
            neg, aug_rows, _branches, targets = inputs
            return save_features(out, streams, res, n_rows, cand, neg, aug_rows, targets)

        t0 = time.time()
        with guard("featurize"):
            p_feat = sharded_featurize(cache, plan, dist, streams, feature_work, save_merged, hook)
        cache.times["featurize"] = time.time() - t0

    # 5. augmentation: the LE picks the candidate with the highest reward ------------------------
    def do_augment(out: Path) -> dict:
        hook("augment", 0)
        cand = np.load(p_cand / "candidates.npy")
        r = np.load(p_feat / "rewards.npz")
        aug_rows = r["aug_rows"]
        best = r["cand_reward"].argmax(axis=1)
        idx = np.arange(n_rows)
        aug_id = np.where(aug_rows, cand[idx, best], -1)
        aug_reward = np.where(aug_rows, r["cand_reward"][idx, best], 0.0).astype(np.float32)
        np.savez(out / "augment.npz", aug_id=aug_id, aug_reward=aug_reward, aug_mask=aug_rows.astype(np.float32))
        hook("augment", 1)
        hit = float((aug_id[aug_rows] == _target_index(base, cfg)[aug_rows]).mean()) if aug_rows.any() else 0.0
        return {"augmented": int(aug_rows.sum()), "aug_equals_target": hit}

    p_aug = _on_main(cache, "augment", plan, dist, do_augment)

    # 6. write the LE folder ---------------------------------------------------------------------
    if not main:
        assert dist is not None
        dist.barrier()  # process 0 writes the folder
        return out_dir
    manifest = {
        "dataset": dataset,
        "fingerprint": plan.fingerprint,
        "files": {
            "inter": {"path": str(base.inter_path), "sha256": plan.files["inter"]},
            "item": {"path": str(base.item_path), "sha256": plan.files["item"]},
        },
        "config": cfg.to_dict(),
        "model": plan.model,
        "code_version": plan.code,
        "split": plan.split,
        "stages": {s: plan.fps[s] for s in STAGES[:-1]},
        "reports": {
            "item_tokens": _meta(p_tok).get("report"),
            "le_train": _meta(p_train).get("history"),
        },
    }
    from recbole_lea.le_files.writer import write_lea

    t0 = time.time()
    hook("write", 0)
    stats = write_lea(base, cfg, out_dir, p_train, p_feat, p_aug, manifest, hook)
    cache.times["write"] = time.time() - t0
    cache.computed.append("write")
    manifest_path = out_dir / "manifest.json"
    full = json.loads(manifest_path.read_text())
    # a split stage's time is its wall time in process 0 (shards, waiting for the others, merge)
    times = {k: v for k, v in cache.times.items() if not k.endswith((".shard", ".epoch"))}
    full["timings_s"] = {**times, "total": time.time() - t_start}
    full["reused_stages"] = cache.reused
    if dist is not None:
        full["processes"] = dist.world
    tmp = manifest_path.with_name(tmp_name(manifest_path.name))
    tmp.write_text(json.dumps(full, indent=1, default=str))
    os.replace(tmp, manifest_path)
    logger.info("LE folder written to %s (%s); stage times %s", out_dir, stats, _rounded(times))
    if dist is not None:
        dist.barrier()
    return out_dir


#: users featurized together (bounded memory); one unit of a multi-process featurization
FEATURIZE_USERS = 64


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


def _on_main(cache: StageCache, name: str, plan: LEPlan, dist: Dist | None, compute: Callable[[Path], dict]) -> Path:
    """A stage that is not split: computed by process 0 while the others wait, then read by all."""
    if dist is None:
        return cache.run(name, plan.keys[name], compute)[0]
    if dist.is_main:
        cache.run(name, plan.keys[name], compute)
    dist.barrier()
    return cache.path(name, plan.fps[name])


def _meta(stage_dir: Path) -> dict[str, Any]:
    return json.loads((stage_dir / "meta.json").read_text())


def _rounded(times: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 1) for k, v in times.items()}


def _target_index(base: BaseData, cfg: LEConfig) -> np.ndarray:
    return np.array([base.item_index[t] for t in base.inter[cfg.ITEM_ID_FIELD]], dtype=np.int64)


def le_differences(plan: LEPlan) -> tuple[Path, list[str]] | None:
    """The existing LE folder of the same dataset closest to ``plan`` and the options in which it
    differs (``name: built value -> asked value``), to say why no LE matches; None if none."""
    best: tuple[Path, list[str]] | None = None
    for manifest_path in sorted((plan.data_path / LE_ROOT).glob(f"{plan.dataset}-*/{plan.dataset}-lea/manifest.json")):
        try:
            manifest = json.loads(manifest_path.read_text())
        except (OSError, ValueError):
            continue
        built = {k: v for k, v in (manifest.get("config") or {}).items() if k not in NEUTRAL}
        asked = {k: v for k, v in plan.cfg.to_dict().items() if k not in NEUTRAL}
        diffs = [
            f"{k}: {built.get(k)!r} -> {asked.get(k)!r}"
            for k in sorted(set(built) | set(asked))
            if built.get(k) != asked.get(k)
        ]
        old_split, new_split = manifest.get("split") or {"protocol": "loo"}, plan.split
        for k in sorted(set(old_split) | set(new_split)):
            if old_split.get(k) != new_split.get(k):
                name = {"protocol": "eval_protocol", "ratios": "sequence_split_ratios"}.get(k, k)
                diffs.append(f"{name}: {old_split.get(k)!r} -> {new_split.get(k)!r}")
        if (manifest.get("files") or {}).get("inter", {}).get("sha256") != plan.files["inter"]:
            diffs.append(f"the data ({plan.dataset}.inter changed since)")
        if (manifest.get("model") or {}).get("sha256") != plan.model["sha256"]:
            diffs.append("the LLM weights")
        if manifest.get("code_version") != plan.code:
            diffs.append("the LE build code (another version of recbole_lea)")
        if best is None or len(diffs) < len(best[1]):
            best = (manifest_path.parent, diffs)
    return best


def missing_le_message(plan: LEPlan) -> str:
    """Why the LE of ``plan`` is not there: the closest existing LE and what differs."""
    text = f"No LE folder for dataset '{plan.dataset}' with these options (expected {plan.out_dir})"
    near = le_differences(plan)
    if near is None:
        return f"{text}: it was never built; {plan.fix()}"
    folder, diffs = near
    return (
        f"{text}. The closest LE, {folder}, was built with other {'; '.join(diffs) or 'inputs'} (built -> asked). "
        f"Pass the options it was built with to use it, or {plan.fix()}"
    )


def check_le_dataset(
    data_path: str | Path,
    dataset: str,
    profile: str | dict | None = "cpu",
    overrides: dict | None = None,
    split: dict[str, Any] | None = None,
) -> Path:
    """The verified LE folder of ``dataset`` for these options, or an :class:`LEDatasetMismatch`
    that says what is missing or wrong and the command that builds it."""
    base_ds = dataset[: -len("-lea")] if dataset.endswith("-lea") else dataset
    cfg = resolve_config(base_ds, profile, overrides, data_path)
    plan = plan_le(base_ds, data_path, cfg, split)
    if not plan.out_dir.exists():
        raise LEDatasetMismatch(missing_le_message(plan))
    verify_le_dir(plan.out_dir, plan.fix())
    return plan.out_dir
