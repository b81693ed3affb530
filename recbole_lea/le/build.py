"""The LE build: item_tokens -> le_train -> candidates -> featurize -> augment -> write.

Each stage's artifact lives in `<cache>/stages/<stage>-<fingerprint>/`, is written to a temporary
folder and renamed into place with a COMPLETE marker, and is reused when the fingerprint of its
inputs (data files, config keys, LLM weights, code version, upstream stages) matches.  The output
is the atomic dataset `<data_path>/<dataset>-lea/` described in docs/architecture.md.
"""

from __future__ import annotations

import ast
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .config import LEConfig, resolve_config
from .data import BaseData, LEInputError, item_sentences, load_base, training_item_pool, training_streams
from .llm import file_sha256, load_llm, model_source, resolve_device, resolve_dtype

logger = logging.getLogger(__name__)

LE_FIELDS = [
    ("le_train", "float"),
    ("le_reward", "float"),
    ("le_neg_id", "token"),
    ("le_neg_reward", "float"),
    ("le_aug_id", "token"),
    ("le_aug_reward", "float"),
    ("le_aug_mask", "float"),
    ("le_state", "float_seq"),
    ("le_next_state", "float_seq"),
]
STAGES = ("item_tokens", "le_train", "candidates", "featurize", "augment", "write")


_LOG_METHODS = frozenset({"debug", "info", "warning", "error", "exception", "critical", "log"})


def _is_docstring(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str)


def _is_log_call(stmt: ast.stmt) -> bool:
    """`logger.info(...)` and the like: a statement that only writes a log line."""
    if not (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call)):
        return False
    func = stmt.value.func
    return (
        isinstance(func, ast.Attribute)
        and func.attr in _LOG_METHODS
        and isinstance(func.value, ast.Name)
        and func.value.id in ("logger", "logging")
    )


def source_fingerprint(source: str) -> str:
    """Hash of a module's behaviour: its syntax tree without comments, docstrings, log statements,
    line numbers or formatting, so that editing those does not invalidate cached LE stages."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        for name in ("body", "orelse", "finalbody"):  # every statement list (handlers are nodes with a body)
            block = getattr(node, name, None)
            if not (isinstance(block, list) and block and isinstance(block[0], ast.stmt)):
                continue
            docstring = name == "body" and _is_docstring(block[0])
            setattr(node, name, [s for s in block[docstring:] if not _is_log_call(s)])
    return hashlib.sha256(ast.dump(tree, include_attributes=False).encode()).hexdigest()


def code_version() -> str:
    """Fingerprint of the LE build code (every module of this package but the test helpers and the
    CLI); part of every stage's fingerprint and of the manifest."""
    h = hashlib.sha256()
    for p in sorted(Path(__file__).parent.glob("*.py")):
        if p.name in ("testing.py", "__main__.py"):
            continue
        h.update(p.name.encode())
        h.update(source_fingerprint(p.read_text(encoding="utf-8")).encode())
    return h.hexdigest()


def _sha(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


class StageCache:
    """Atomic, fingerprinted stage folders."""

    def __init__(self, root: Path):
        self.root = root / "stages"
        self.root.mkdir(parents=True, exist_ok=True)
        self.computed: list[str] = []
        self.reused: list[str] = []
        self.times: dict[str, float] = {}

    def path(self, name: str, fp: str) -> Path:
        return self.root / f"{name}-{fp[:24]}"

    def is_complete(self, name: str, fp: str) -> bool:
        return (self.path(name, fp) / "COMPLETE").exists()

    def run(self, name: str, key: dict, compute: Callable[[Path], dict]) -> tuple[Path, str]:
        fp = _sha(key)
        final = self.path(name, fp)
        if (final / "COMPLETE").exists():
            logger.info("stage %s: reusing %s", name, final)
            self.reused.append(name)
            self.times[name] = 0.0
            return final, fp
        self._remove_stale(name)
        tmp = self.root / f".{name}-{fp[:24]}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir(parents=True)
        logger.info("stage %s: computing (fingerprint %s)", name, fp[:12])
        t0 = time.time()
        try:
            meta = compute(tmp) or {}
            meta["seconds"] = time.time() - t0
            (tmp / "meta.json").write_text(json.dumps({"key": key, "fingerprint": fp, **meta}, indent=1, default=str))
            (tmp / "COMPLETE").write_text(fp)
            if final.exists():  # an incomplete leftover without COMPLETE
                shutil.rmtree(final)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self.computed.append(name)
        self.times[name] = time.time() - t0
        logger.info("stage %s: done in %.1f s -> %s", name, self.times[name], final)
        return final, fp

    def _remove_stale(self, name: str) -> None:
        for p in self.root.glob(f".{name}-*.tmp-*"):
            try:
                pid = int(p.name.split(".tmp-")[1].split("-")[0])
                os.kill(pid, 0)  # alive: leave it
            except (ValueError, ProcessLookupError):
                shutil.rmtree(p, ignore_errors=True)
            except PermissionError:
                pass


# --------------------------------------------------------------------------------------------------
def _lea_dir(data_path: Path, dataset: str) -> Path:
    return Path(data_path) / f"{dataset}-lea"


def _ensure_base(data_path: Path, dataset: str) -> None:
    if (data_path / dataset / f"{dataset}.inter").exists():
        return
    if dataset == "ml-100k":
        try:
            from recbole_lea.datasets.ml100k import ensure_ml100k
        except ImportError as exc:
            raise LEInputError(
                f"{data_path}/ml-100k/ml-100k.inter missing and the converter is unavailable: {exc}"
            ) from exc
        ensure_ml100k(str(data_path))


def _set_threads(cfg: LEConfig) -> None:
    if cfg.le_threads > 0:
        torch.set_num_threads(cfg.le_threads)


class _LLMHolder:
    """Loads the LLM lazily (nothing is loaded when every LE stage is cached)."""

    def __init__(self, cfg: LEConfig):
        self.cfg = cfg
        self._llm = None

    def get(self):
        if self._llm is None:
            self._llm = load_llm(self.cfg)
        return self._llm


def _inputs_fingerprint(base: BaseData, cfg: LEConfig) -> dict[str, str]:
    cache = cfg.cache_dir()
    return {"inter": file_sha256(base.inter_path, cache), "item": file_sha256(base.item_path, cache)}


def config_fingerprint(cfg: LEConfig) -> str:
    d = cfg.to_dict()
    for k in ("le_cache_dir", "le_threads", "le_feat_batch"):
        d.pop(k, None)  # do not change results
    return _sha(d)


def build_le(
    dataset: str,
    data_path: str | Path = "atomic_datasets",
    profile: str | dict | None = "cpu",
    overrides: dict | None = None,
    _stage_hook: Callable[[str, int], None] | None = None,
    _stop_after: str | None = None,
) -> Path:
    """Build (or reuse) the LE atomic dataset `<data_path>/<dataset>-lea/` and return its folder."""
    t_start = time.time()
    data_path = Path(data_path)
    cfg = resolve_config(dataset, profile, overrides)
    _set_threads(cfg)
    _ensure_base(data_path, dataset)
    base = load_base(data_path, dataset, cfg)
    cache = StageCache(cfg.cache_dir())
    src = model_source(cfg)
    device = resolve_device(cfg)
    dtype = resolve_dtype(cfg, device)
    files = _inputs_fingerprint(base, cfg)
    code = code_version()
    holder = _LLMHolder(cfg)
    streams = training_streams(base, cfg)
    pool = training_item_pool(streams)
    fields = {k: getattr(cfg, k) for k in ("USER_ID_FIELD", "ITEM_ID_FIELD", "TIME_FIELD")}
    common = {"code": code, "device": device.type, "dtype": str(dtype), "seed": cfg.seed}
    hook = _stage_hook or (lambda stage, i: None)
    reports: dict[str, Any] = {}

    # 1. item tokens ------------------------------------------------------------------------
    from .item_tokens import train_item_tokens

    def do_item_tokens(out: Path) -> dict:
        llm, tok, _src, _dev, _dt = holder.get()
        sents = item_sentences(base, cfg)
        hook("item_tokens", 0)
        table, report = train_item_tokens(llm, tok, sents, cfg, seed=cfg.seed)
        hook("item_tokens", 1)
        torch.save(table, out / "item_tokens.pt")
        return {"report": report}

    key1 = {
        "stage": "item_tokens",
        **common,
        "model": src.fingerprint,
        "item": files["item"],
        **fields,
        **cfg.subset(("le_token_",), ("le_item_template", "item_text_fields")),
    }
    p_tok, fp_tok = cache.run("item_tokens", key1, do_item_tokens)
    reports["item_tokens"] = json.loads((p_tok / "meta.json").read_text()).get("report")
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
            torch.manual_seed(cfg.seed)
            built["model"] = LEModel(llm, table, cfg).to(dev)
        return built["model"], prefix_ids(tok, cfg)

    def do_train(out: Path) -> dict:
        table = torch.load(p_tok / "item_tokens.pt", weights_only=True)
        model, prefix = make_model(table)
        rng = np.random.default_rng(cfg.seed)
        n_users = max(1, int(round(cfg.le_train_fraction * len(streams)))) if streams else 0
        chosen = np.sort(rng.choice(len(streams), size=n_users, replace=False)) if n_users else np.zeros(0, int)
        train_streams = [streams[i].items for i in chosen]
        if cfg.le_train_max_steps_per_user > 0:
            train_streams = [s[-(cfg.le_train_max_steps_per_user + 1) :] for s in train_streams]
        hook("le_train", 0)
        history = train_le(model, prefix, train_streams, pool, cfg, seed=cfg.seed + 1)
        hook("le_train", 1)
        torch.save(model.trainable_state(), out / "le_state.pt")
        users = [streams[i].user for i in chosen]
        (out / "train_users.json").write_text(json.dumps(users))
        return {"history": history, "users": len(users), "steps": int(sum(len(s) - 1 for s in train_streams))}

    key2 = {
        "stage": "le_train",
        **common,
        "item_tokens": fp_tok,
        "inter": files["inter"],
        **fields,
        **cfg.subset(
            (
                "le_train",
                "le_epochs",
                "le_batch_size",
                "le_lr",
                "le_lora_",
                "le_sm_weight",
                "le_history_len",
                "le_chunk_len",
                "le_instruction",
                "le_item_noun",
            )
        ),
    }
    p_train, fp_train = cache.run("le_train", key2, do_train)
    reports["le_train"] = json.loads((p_train / "meta.json").read_text()).get("history")
    if _stop_after == "le_train":
        return p_train

    # 3. backbone candidates --------------------------------------------------------------------
    from .augment import backbone_candidates

    n_rows = len(base.inter)

    def do_candidates(out: Path) -> dict:
        hook("candidates", 0)
        cands, info = backbone_candidates(base, data_path, streams, pool, cfg, device)
        hook("candidates", 1)
        k = cands[0].shape[1] if cands else cfg.le_aug_topk
        table = np.full((n_rows, k), -1, dtype=np.int64)
        for s, c in zip(streams, cands, strict=True):
            table[s.rows[1:]] = c
        np.save(out / "candidates.npy", table)
        return info

    key3 = {
        "stage": "candidates",
        "code": code,
        "device": device.type,
        "seed": cfg.seed,
        "inter": files["inter"],
        "item": files["item"],
        **fields,
        **cfg.subset(("le_aug_backbone", "le_aug_topk")),
    }
    p_cand, fp_cand = cache.run("candidates", key3, do_candidates)

    # 4. streaming featurization ------------------------------------------------------------------
    from .model import stream_features
    from .train import sample_negatives

    def do_featurize(out: Path) -> dict:
        table = torch.load(p_tok / "item_tokens.pt", weights_only=True)
        model, prefix = make_model(table)
        model.load_trainable_state(torch.load(p_train / "le_state.pt", weights_only=True))
        model.eval()
        cand = np.load(p_cand / "candidates.npy")
        rng = np.random.default_rng(cfg.seed + 2)
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
        total = int(sum(len(s.items) for s in streams))
        bar = tqdm(total=total, desc="featurize", unit="step", mininterval=10)
        hook("featurize", 0)
        res = []
        chunk_users = 64  # bounded memory: featurize users in groups
        for i in range(0, len(streams), chunk_users):
            group = streams[i : i + chunk_users]
            res += stream_features(
                model, prefix, [s.items for s in group], branches[i : i + chunk_users], cfg, progress=bar
            )
            if i == 0:
                hook("featurize", 1)
        bar.close()
        hidden = res[0]["states"].shape[1] if res else 1
        stream_rows = np.concatenate([s.rows for s in streams]) if streams else np.zeros(0, np.int64)
        states = (
            np.concatenate([r["states"] for r in res]).astype(np.float32) if res else np.zeros((0, hidden), np.float32)
        )
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

    key4 = {
        "stage": "featurize",
        **common,
        "le_train": fp_train,
        "candidates": fp_cand,
        **cfg.subset(("le_aug_fraction", "le_history_len", "le_chunk_len", "le_instruction", "le_item_noun")),
    }
    p_feat, fp_feat = cache.run("featurize", key4, do_featurize)

    # 5. augmentation: the LE picks the candidate with the highest reward ------------------------
    def do_augment(out: Path) -> dict:
        cand = np.load(p_cand / "candidates.npy")
        r = np.load(p_feat / "rewards.npz")
        aug_rows = r["aug_rows"]
        best = r["cand_reward"].argmax(axis=1)
        idx = np.arange(n_rows)
        aug_id = np.where(aug_rows, cand[idx, best], -1)
        aug_reward = np.where(aug_rows, r["cand_reward"][idx, best], 0.0).astype(np.float32)
        np.savez(out / "augment.npz", aug_id=aug_id, aug_reward=aug_reward, aug_mask=aug_rows.astype(np.float32))
        hit = float((aug_id[aug_rows] == _target_index(base, cfg)[aug_rows]).mean()) if aug_rows.any() else 0.0
        return {"augmented": int(aug_rows.sum()), "aug_equals_target": hit}

    p_aug, fp_aug = cache.run("augment", {"stage": "augment", "featurize": fp_feat, "code": code}, do_augment)

    # 6. write the -lea atomic dataset -----------------------------------------------------------
    manifest = {
        "dataset": dataset,
        "files": {
            "inter": {"path": str(base.inter_path), "sha256": files["inter"]},
            "item": {"path": str(base.item_path), "sha256": files["item"]},
        },
        "config": cfg.to_dict(),
        "config_sha256": config_fingerprint(cfg),
        "model": {"le_model": cfg.le_model, "path": str(src.path), "sha256": src.fingerprint},
        "code_version": code,
        "stages": {
            "item_tokens": fp_tok,
            "le_train": fp_train,
            "candidates": fp_cand,
            "featurize": fp_feat,
            "augment": fp_aug,
        },
    }
    manifest["fingerprint"] = _sha(
        {k: manifest[k] for k in ("files", "config_sha256", "model", "code_version", "stages")}
    )
    out_dir = _lea_dir(data_path, dataset)
    old = out_dir / "manifest.json"
    if (
        old.exists()
        and json.loads(old.read_text()).get("fingerprint") == manifest["fingerprint"]
        and (out_dir / f"{dataset}-lea.inter").exists()
    ):
        logger.info("LE dataset %s is up to date", out_dir)
        cache.reused.append("write")
        return out_dir
    t0 = time.time()
    hook("write", 0)
    stats = write_lea(base, cfg, out_dir, p_tok, p_train, p_feat, p_aug, manifest, hook)
    cache.times["write"] = time.time() - t0
    cache.computed.append("write")
    manifest_path = out_dir / "manifest.json"
    full = json.loads(manifest_path.read_text())
    full["timings_s"] = {**cache.times, "total": time.time() - t_start}
    full["reused_stages"] = cache.reused
    manifest_path.write_text(json.dumps(full, indent=1, default=str))
    logger.info("LE dataset written to %s (%s); stage times %s", out_dir, stats, cache.times)
    return out_dir


def _target_index(base: BaseData, cfg: LEConfig) -> np.ndarray:
    return np.array([base.item_index[t] for t in base.inter[cfg.ITEM_ID_FIELD]], dtype=np.int64)


def fit_pca(x: np.ndarray, dim: int) -> dict[str, torch.Tensor]:
    xt = torch.from_numpy(x).double()
    mean = xt.mean(0)
    cov = (xt - mean).T @ (xt - mean) / max(len(xt) - 1, 1)
    evals, evecs = torch.linalg.eigh(cov)
    order = torch.argsort(evals, descending=True)[:dim]
    comps = evecs[:, order]
    if comps.shape[1] < dim:  # fewer dims than requested: pad with zero columns
        comps = torch.cat([comps, torch.zeros(comps.shape[0], dim - comps.shape[1], dtype=comps.dtype)], 1)
    total = evals.clamp(min=0).sum()
    ratio = (evals[order].clamp(min=0) / total) if total > 0 else torch.zeros(len(order))
    return {"mean": mean.float(), "components": comps.float(), "explained_variance_ratio": ratio.float()}


def _fmt_seq(mat: np.ndarray) -> list[str]:
    return [" ".join(f"{v:.6g}" for v in row) for row in mat.tolist()]


def write_lea(
    base: BaseData,
    cfg: LEConfig,
    out_dir: Path,
    p_tok: Path,
    p_train: Path,
    p_feat: Path,
    p_aug: Path,
    manifest: dict,
    hook: Callable[[str, int], None],
) -> dict:
    uid, iid, tf = cfg.USER_ID_FIELD, cfg.ITEM_ID_FIELD, cfg.TIME_FIELD
    n = len(base.inter)
    raw_items = np.asarray(base.item_ids, dtype=object)
    own = base.inter[iid].to_numpy(dtype=object)
    train = base.train_mask
    r = np.load(p_feat / "rewards.npz")
    a = np.load(p_aug / "augment.npz")
    stream_rows = np.load(p_feat / "stream_rows.npy")
    states = np.load(p_feat / "states.npy")
    # state of the row's own item (history ending at it), for stream rows
    pos_of_row = np.full(n, -1, dtype=np.int64)
    pos_of_row[stream_rows] = np.arange(len(stream_rows))
    # the previous stream item of a training row is its history end
    train_rows = np.flatnonzero(train)
    prev = np.full(n, -1, dtype=np.int64)
    prev[stream_rows[1:]] = stream_rows[:-1]
    s_idx = pos_of_row[prev[train_rows]]
    ns_idx = pos_of_row[train_rows]
    if (s_idx < 0).any() or (ns_idx < 0).any():
        raise RuntimeError("internal: a training row has no featurized state")
    pca = (
        fit_pca(states[s_idx], cfg.le_state_dim)
        if len(train_rows)
        else fit_pca(np.zeros((1, states.shape[1] if states.ndim == 2 else 1), np.float32), cfg.le_state_dim)
    )
    mean, comps = pca["mean"].numpy(), pca["components"].numpy()
    d = cfg.le_state_dim
    st = np.zeros((n, d), dtype=np.float32)
    nst = np.zeros((n, d), dtype=np.float32)
    st[train_rows] = (states[s_idx] - mean) @ comps
    nst[train_rows] = (states[ns_idx] - mean) @ comps
    neg_id = np.where(train, raw_items[np.maximum(r["neg_id"], 0)], own)
    aug_mask = np.where(train, a["aug_mask"], 0.0).astype(np.float32)
    aug_id = np.where(aug_mask > 0, raw_items[np.maximum(a["aug_id"], 0)], own)
    cols = {
        f"{uid}:token": base.inter[uid].to_numpy(),
        f"{iid}:token": own,
        f"{tf}:float": base.inter[tf].to_numpy(),
        "le_train:float": np.where(train, "1", "0"),
        "le_reward:float": _fmt_float(np.where(train, r["pos_reward"], 0.0)),
        "le_neg_id:token": neg_id,
        "le_neg_reward:float": _fmt_float(np.where(train, r["neg_reward"], 0.0)),
        "le_aug_id:token": aug_id,
        "le_aug_reward:float": _fmt_float(np.where(aug_mask > 0, a["aug_reward"], 0.0)),
        "le_aug_mask:float": np.where(aug_mask > 0, "1", "0"),
        "le_state:float_seq": _fmt_seq(st),
        "le_next_state:float_seq": _fmt_seq(nst),
    }
    parent = out_dir.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = parent / f".{out_dir.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        name = out_dir.name
        import pandas as pd

        pd.DataFrame(cols).to_csv(tmp / f"{name}.inter", sep="\t", index=False, quoting=3, escapechar="\\")
        hook("write", 1)
        shutil.copyfile(base.item_path, tmp / f"{name}.item")
        train_state = torch.load(p_train / "le_state.pt", weights_only=True)
        torch.save(
            {"item_ids": list(base.item_ids), "item_tokens": train_state["item_tokens"]}, tmp / "le_item_tokens.pt"
        )
        torch.save(
            {**pca, "input_dim": int(states.shape[1]) if states.ndim == 2 else 0}, tmp / "le_state_projection.pt"
        )
        manifest = dict(manifest)
        manifest["output_inter_sha256"] = file_sha256(tmp / f"{name}.inter")
        manifest["rows"] = {"total": n, "training": int(train.sum()), "augmented": int((aug_mask > 0).sum())}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1, default=str))
        if out_dir.exists():
            trash = parent / f".{out_dir.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(out_dir, trash)
            shutil.rmtree(trash, ignore_errors=True)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest["rows"]


def _fmt_float(x: np.ndarray) -> list[str]:
    return [f"{v:.6g}" for v in np.asarray(x, dtype=np.float64).tolist()]


# --------------------------------------------------------------------------------------------------
class LEDatasetMismatch(LEInputError):
    pass


def check_le_dataset(
    data_path: str | Path, dataset: str, profile: str | dict | None = None, overrides: dict | None = None
) -> None:
    """Raise a clear error if `<dataset>-lea` is missing or stale for the current base files and LE
    code (and, when profile/overrides are given, for that LE config)."""
    data_path = Path(data_path)
    base_ds = dataset[:-4] if dataset.endswith("-lea") else dataset
    out = _lea_dir(data_path, base_ds)
    fix = f"rebuild it with: python -m recbole_lea.le build --dataset {base_ds} --data_path {data_path} --profile <cpu|paper>"
    mpath = out / "manifest.json"
    if not mpath.exists():
        raise LEDatasetMismatch(f"LE dataset {out} is missing ({mpath} not found); {fix}")
    man = json.loads(mpath.read_text())
    inter = out / f"{base_ds}-lea.inter"
    if not inter.exists():
        raise LEDatasetMismatch(f"{inter} is missing; {fix}")
    for key in ("inter", "item"):
        path = data_path / base_ds / f"{base_ds}.{key}"
        if not path.exists():
            raise LEDatasetMismatch(f"base file {path} is missing; the LE dataset {out} cannot be checked")
        if file_sha256(path) != man["files"][key]["sha256"]:
            raise LEDatasetMismatch(f"{path} changed since {out} was built (sha256 differs from {mpath}); {fix}")
    if file_sha256(inter) != man.get("output_inter_sha256"):
        raise LEDatasetMismatch(f"{inter} does not match its manifest {mpath} (modified or truncated); {fix}")
    for f in ("le_item_tokens.pt", "le_state_projection.pt", f"{base_ds}-lea.item"):
        if not (out / f).exists():
            raise LEDatasetMismatch(f"{out / f} is missing; {fix}")
    if man.get("code_version") != code_version():
        raise LEDatasetMismatch(
            f"{mpath} was written by another version of the LE build code (recbole_lea/le); the main job "
            f"would rebuild it; {fix}"
        )
    if profile is not None or overrides:
        cfg = resolve_config(base_ds, profile, overrides)
        if config_fingerprint(cfg) != man.get("config_sha256"):
            diff = sorted(
                k
                for k, v in cfg.to_dict().items()
                if man["config"].get(k) != v and k not in ("le_cache_dir", "le_threads", "le_feat_batch")
            )
            raise LEDatasetMismatch(f"{mpath} was built with a different LE config (options differing: {diff}); {fix}")
