"""Stage 2 of the pipeline, the LE build, end to end: plan (:mod:`recbole_lea.le.plan`), the cached
stages item_tokens -> le_train -> candidates -> featurize -> augment (:mod:`recbole_lea.le.stages`),
then the LE folder (:func:`recbole_lea.le.files.write_lea`) with the build's timings in its manifest.

:func:`build_le` reuses an up-to-date LE folder and every cached stage; one build of one LE runs
at a time (a file lock), and a launcher with several processes splits the stages across them.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import torch

from recbole_lea.files import atomic_write_text, locked

from .cache import StageCache
from .config import STAGES, LEConfig, resolve_config
from .data import load_base
from .distributed import Dist, check_agreement, init_dist
from .files import MANIFEST, LEDatasetMismatch, verify_le_dir
from .plan import LEPlan, described, manifest_differences, missing_le_message, plan_le
from .stages import Hook, Stages

logger = logging.getLogger(__name__)


def build_le(
    dataset: str,
    data_path: str | Path = "atomic_datasets",
    profile: str | dict | None = "cpu",
    overrides: dict | None = None,
    _stage_hook: Hook | None = None,
    _stop_after: str | None = None,
    cfg: LEConfig | None = None,
    split: dict[str, Any] | None = None,
    _sharded: bool = False,
) -> Path:
    """Build (or reuse) the LE folder of ``dataset`` for these options and return it. ``split``:
    the split whose training rows train the LE (default leave-one-out; see
    :func:`recbole_lea.run_config.split_of`).

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
        check_agreement(dist, described(plan))
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


def _up_to_date(out_dir: Path, plan: LEPlan) -> bool:
    try:
        verify_le_dir(out_dir, plan.fix())
        if json.loads((out_dir / MANIFEST).read_text()).get("fingerprint") == plan.fingerprint:
            logger.info("LE folder %s is up to date", out_dir)
            return True
    except LEDatasetMismatch as err:
        if out_dir.exists():
            logger.warning("%s; rewriting it from the cached stages", err)
    return False


def _build(plan: LEPlan, stage_hook: Hook | None, stop_after: str | None, dist: Dist | None = None) -> Path:
    t_start = time.time()
    main = dist is None or dist.is_main
    fresh = _up_to_date(plan.out_dir, plan) if main else False
    if dist is not None:
        fresh = bool(dist.broadcast_json(fresh))
    if fresh:
        return plan.out_dir
    if plan.cfg.le_threads > 0:
        torch.set_num_threads(plan.cfg.le_threads)
    base = load_base(plan.data_path, plan.dataset, plan.cfg, plan.split)
    stages = Stages(plan, base, StageCache(plan.cfg.cache_dir()), stage_hook or (lambda stage, i: None), dist)
    p_tok = stages.item_tokens()
    if stop_after == "item_tokens":
        return p_tok
    p_train = stages.le_train(p_tok)
    if stop_after == "le_train":
        return p_train
    p_cand = stages.candidates()
    p_feat = stages.featurize(p_tok, p_train, p_cand)
    p_aug = stages.augment(p_cand, p_feat)
    if main:
        _write(stages, p_tok, p_train, p_feat, p_aug, t_start)
    if dist is not None:
        dist.barrier()  # process 0 writes the folder
    return plan.out_dir


def _write(stages: Stages, p_tok: Path, p_train: Path, p_feat: Path, p_aug: Path, t_start: float) -> None:
    """Write the LE folder (6th stage), then add the build's timings to its manifest."""
    from . import files

    plan, cache, base = stages.plan, stages.cache, stages.base
    manifest = {
        "dataset": plan.dataset,
        "fingerprint": plan.fingerprint,
        "files": {
            "inter": {"path": str(base.inter_path), "sha256": plan.files["inter"]},
            "item": {"path": str(base.item_path), "sha256": plan.files["item"]},
        },
        "config": plan.cfg.to_dict(),
        "model": plan.model,
        "code_version": plan.code,
        "versions": plan.versions,
        "split": plan.split,
        "stages": {s: plan.fps[s] for s in STAGES[:-1]},
        "reports": {"item_tokens": _meta(p_tok).get("report"), "le_train": _meta(p_train).get("history")},
    }
    t0 = time.time()
    stages.hook("write", 0)
    stats = files.write_lea(base, plan.cfg, plan.out_dir, p_train, p_feat, p_aug, manifest, stages.hook)
    cache.times["write"] = time.time() - t0
    cache.computed.append("write")
    manifest_path = plan.out_dir / MANIFEST
    full = json.loads(manifest_path.read_text())
    # a split stage's time is its wall time in process 0 (shards, waiting for the others, merge)
    times = {k: v for k, v in cache.times.items() if not k.endswith((".shard", ".epoch"))}
    full["timings_s"] = {**times, "total": time.time() - t_start}
    full["reused_stages"] = cache.reused
    if stages.dist is not None:
        full["processes"] = stages.dist.world
    atomic_write_text(manifest_path, json.dumps(full, indent=1, default=str))
    logger.info("LE folder written to %s (%s); stage times %s", plan.out_dir, stats, _rounded(times))


def _meta(stage_dir: Path) -> dict[str, Any]:
    return json.loads((stage_dir / "meta.json").read_text())


def _rounded(times: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 1) for k, v in times.items()}


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
    return verified_le_dir(plan_le(base_ds, data_path, cfg, split))


def verified_le_dir(plan: LEPlan) -> Path:
    """The LE folder of ``plan`` after checking that it exists, that every file matches its
    manifest and that the manifest was built with what ``plan`` asks for (an LE of other options
    copied or renamed into this folder is refused, naming the options that differ)."""
    if not plan.out_dir.exists():
        raise LEDatasetMismatch(missing_le_message(plan))
    manifest = verify_le_dir(plan.out_dir, plan.fix())
    if manifest.get("fingerprint") != plan.fingerprint:
        diffs = manifest_differences(manifest, plan) or ["its fingerprint"]
        raise LEDatasetMismatch(
            f"LE folder {plan.out_dir} holds an LE built with other {'; '.join(diffs)} (built -> asked): it was "
            f"copied or renamed there, and is not the LE of these options. Remove it and {plan.fix()}"
        )
    return plan.out_dir
