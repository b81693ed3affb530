"""The LE folder ``<dataset>-lea/`` (stage 3 of the pipeline): the base rows in file order with
the LE fields of :mod:`recbole_lea.data.le_fields`, the item table, the item tokens, the state
projection and a manifest with the sha256 of every file.

:func:`write_lea` writes it under a temporary name beside its final place and renames it into
place, so a reader sees the old folder or the new one, never half of one; :func:`verify_le_dir`
checks every file against its manifest before a run reads it.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recbole_lea.data.le_fields import LE_FIELD_NAMES, LE_FIELDS, lea_inter_header
from recbole_lea.files import folder_checksums, remove_stale_tmp, tmp_name, verify_checksums
from recbole_lea.le.cache import disk_full, no_space
from recbole_lea.le.config import LEConfig
from recbole_lea.le.data import BaseData, LEInputError

MANIFEST = "manifest.json"


class LEDatasetMismatch(LEInputError):
    """An LE folder that is missing, modified, truncated or stale."""


def read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise LEDatasetMismatch(f"{path} not found: {folder} is not an LE folder written by the LE build") from None
    except (OSError, ValueError) as err:
        raise LEDatasetMismatch(f"{path} is unreadable ({err})") from None


def verify_le_dir(folder: Path, fix: str) -> dict[str, Any]:
    """The manifest of the LE folder ``folder`` (``<dataset>-lea/``) after checking that every
    file it lists is there with its recorded sha256 and that the .inter header has every LE field.
    ``fix`` is the command that rebuilds it, said in the error."""
    folder = Path(folder)
    if not folder.is_dir():
        raise LEDatasetMismatch(f"LE folder {folder} does not exist; {fix}")
    manifest = read_manifest(folder)
    checksums = manifest.get("checksums")
    if not isinstance(checksums, dict) or f"{folder.name}.inter" not in checksums:
        raise LEDatasetMismatch(
            f"{folder / MANIFEST} records no checksums of its files (written by an older version, or not an LE "
            f"folder named after its dataset); {fix}"
        )
    problem = verify_checksums(folder, checksums)
    if problem is not None:
        raise LEDatasetMismatch(f"LE folder {folder}: {problem}; {fix}")
    with open(folder / f"{folder.name}.inter", encoding="utf-8") as fh:
        header = [c.split(":")[0] for c in fh.readline().rstrip("\n").split("\t")]
    missing = [f for f in LE_FIELD_NAMES if f not in header]
    if missing:
        raise LEDatasetMismatch(f"{folder / (folder.name + '.inter')} lacks the LE field(s) {missing}; {fix}")
    check_finite_le_fields(folder / f"{folder.name}.inter", fix)
    return manifest


#: The LE fields holding numbers (``float`` and ``float_seq``): nan or inf there is refused.
LE_NUMBER_FIELDS: tuple[str, ...] = tuple(f.name for f in LE_FIELDS if f.atomic_type in ("float", "float_seq"))
_BLOCK = 1 << 22  # bytes read at a time
# a spelling of a non-finite number, in lowercased bytes: nan, inf(inity), or an exponent of 3+
# digits (1e999 overflows); a line holding one anywhere is parsed exactly, the others are not
_SUSPECTS = (re.compile(rb"nan"), re.compile(rb"inf"), re.compile(rb"e\+?\d{3}"))


def check_finite_le_fields(path: Path, fix: str) -> None:
    """Raise :class:`LEDatasetMismatch` at the first nan/inf in the LE number fields of the LE
    ``.inter`` ``path``. Reads the file once in blocks and searches each (lowercased) for the
    spellings of a non-finite number; only a line holding one is split and parsed (about 3 s/GB)."""
    with open(path, "rb") as fh:
        header = fh.readline().rstrip(b"\r\n").decode("utf-8", "replace").split("\t")
        names = [cell.partition(":")[0] for cell in header]
        wanted = [(i, name) for i, name in enumerate(names) if name in LE_NUMBER_FIELDS]
        number, tail = 1, b""  # lines read so far (the header)
        while block := fh.read(_BLOCK):
            block = tail + block
            cut = block.rfind(b"\n") + 1
            tail = block[cut:]
            if cut:
                _check_finite_block(path, block[:cut], number, wanted, fix)
                number += block.count(b"\n", 0, cut)
        if tail:
            _check_finite_block(path, tail + b"\n", number, wanted, fix)


def _check_finite_block(path: Path, block: bytes, first: int, wanted: list[tuple[int, str]], fix: str) -> None:
    """Check the lines of ``block`` (complete lines, line ``first + 1`` onwards) that hold a suspect."""
    low = block.lower()
    ahead = [_next(pattern, low, 0) for pattern in _SUSPECTS]  # each pattern's next match (-1: none left)
    start = 0
    while True:
        ahead = [_next(pat, low, start) if 0 <= pos < start else pos for pat, pos in zip(_SUSPECTS, ahead)]
        found = [pos for pos in ahead if pos >= 0]
        if not found:
            return
        begin = low.rfind(b"\n", 0, min(found)) + 1
        end = low.find(b"\n", begin)
        cells = low[begin:end].rstrip(b"\r").split(b"\t")
        for index, name in wanted:
            cell = cells[index] if index < len(cells) else b""
            if not any(pattern.search(cell) for pattern in _SUSPECTS):
                continue  # the suspect is elsewhere on the line (an id such as "banana")
            for token in cell.split():
                if not math.isfinite(_as_float(token)):
                    line = first + block.count(b"\n", 0, begin) + 1
                    _not_finite(path, line, name, token.decode("utf-8", "replace"), fix)
        start = end + 1


def _next(pattern: re.Pattern[bytes], text: bytes, start: int) -> int:
    match = pattern.search(text, start)
    return match.start() if match else -1


def _as_float(token: bytes) -> float:
    try:
        return float(token)
    except ValueError:
        return math.nan


def _not_finite(path: Path, line: int, name: str, value: str, fix: str) -> None:
    raise LEDatasetMismatch(
        f"{path}: line {line}: field '{name}' holds {value[:40]!r}, which is not finite (nan or inf) or not a "
        f"number: an LE folder must hold finite rewards and states (RecBole would fill them silently); {fix}"
    )


def fit_pca(x: np.ndarray, dim: int) -> dict[str, torch.Tensor]:
    xt = torch.from_numpy(x).double()
    mean = xt.mean(0)
    cov = (xt - mean).T @ (xt - mean) / max(len(xt) - 1, 1)
    evals, evecs = torch.linalg.eigh(cov)
    order = torch.argsort(evals, descending=True)[:dim]
    comps = evecs[:, order]
    # an eigenvector's sign is arbitrary, and rounding (another thread count, two processes) can
    # flip it whole; fix it so that each component's largest loading is positive
    peak = comps[comps.abs().argmax(0), torch.arange(comps.shape[1])]  # [dim]
    comps = comps * torch.where(peak < 0, -1.0, 1.0).to(comps.dtype)
    if comps.shape[1] < dim:  # fewer dims than requested: pad with zero columns
        comps = torch.cat([comps, torch.zeros(comps.shape[0], dim - comps.shape[1], dtype=comps.dtype)], 1)
    total = evals.clamp(min=0).sum()
    ratio = (evals[order].clamp(min=0) / total) if total > 0 else torch.zeros(len(order))
    return {"mean": mean.float(), "components": comps.float(), "explained_variance_ratio": ratio.float()}


def _fmt_seq(mat: np.ndarray) -> list[str]:
    return [" ".join(f"{v:.6g}" for v in row) for row in mat.tolist()]


def _fmt_float(x: np.ndarray) -> list[str]:
    return [f"{v:.6g}" for v in np.asarray(x, dtype=np.float64).tolist()]


def write_lea(
    base: BaseData,
    cfg: LEConfig,
    out_dir: Path,
    p_train: Path,
    p_feat: Path,
    p_aug: Path,
    manifest: dict,
    hook: Callable[[str, int], None],
) -> dict:
    """Write the LE folder ``out_dir`` (named ``<dataset>-lea``) from the stage artifacts."""
    uid, iid, tf = cfg.USER_ID_FIELD, cfg.ITEM_ID_FIELD, cfg.TIME_FIELD
    n = len(base.inter)
    raw_items = np.asarray(base.item_ids, dtype=object)
    own = base.inter[iid].to_numpy(dtype=object)
    train = base.train_mask
    r = np.load(p_feat / "rewards.npz")
    a = np.load(p_aug / "augment.npz")
    stream_rows = np.load(p_feat / "stream_rows.npy")
    states = np.load(p_feat / "states.npy")
    train_rows, s_idx, ns_idx = _state_positions(n, train, stream_rows)
    _refuse_non_finite(base, cfg, train_rows, r, a, states, s_idx, ns_idx)
    pca = _fit_state_pca(states, s_idx, len(train_rows), cfg.le_state_dim)
    st, nst = _project_states(n, states, train_rows, s_idx, ns_idx, pca, cfg.le_state_dim)
    values, aug_mask = _le_values(train, own, raw_items, r, a, st, nst)
    header = lea_inter_header(uid, iid, tf)
    columns = [base.inter[uid].to_numpy(), own, base.inter[tf].to_numpy(), *(values[f.name] for f in LE_FIELDS)]
    rows = {"total": n, "training": int(train.sum()), "augmented": int((aug_mask > 0).sum())}
    manifest = _write_folder(out_dir, base, header, columns, p_train, pca, states, manifest, rows, hook)
    return manifest["rows"]


def _refuse_non_finite(
    base: BaseData,
    cfg: LEConfig,
    train_rows: np.ndarray,
    r: Mapping[str, np.ndarray],
    a: Mapping[str, np.ndarray],
    states: np.ndarray,
    s_idx: np.ndarray,
    ns_idx: np.ndarray,
) -> None:
    """Raise :class:`LEInputError` naming the LE field when a training row's reward or state is
    nan or inf (a diverged LE); nothing is written then."""
    aug = np.asarray(a["aug_mask"])[train_rows] > 0
    checks = (
        ("le_reward", np.asarray(r["pos_reward"])[train_rows], train_rows),
        ("le_neg_reward", np.asarray(r["neg_reward"])[train_rows], train_rows),
        ("le_aug_reward", np.asarray(a["aug_reward"])[train_rows][aug], train_rows[aug]),
        ("le_state", states[s_idx], train_rows),
        ("le_next_state", states[ns_idx], train_rows),
    )
    for name, values, rows in checks:
        bad = ~np.isfinite(np.asarray(values, dtype=np.float64).reshape(len(rows), -1)).all(axis=1)
        if bad.any():
            raise LEInputError(
                f"the LE's {name} is not finite (nan or inf) on {int(bad.sum())} of {len(rows)} rows (first: "
                f"{base.inter_path} line {int(rows[np.argmax(bad)]) + 2}): the LE diverged or overflowed; lower "
                f"le_lr (now {cfg.le_lr:g}) or run the LLM in a wider le_dtype (now {cfg.le_dtype}), then build "
                "the LE again. No LE folder was written"
            )


def _state_positions(n: int, train: np.ndarray, stream_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The training rows and, for each, the stream position of its state (the history ending at
    the previous stream item) and of its next state (the history ending at its own item)."""
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
    return train_rows, s_idx, ns_idx


def _fit_state_pca(states: np.ndarray, s_idx: np.ndarray, n_train: int, dim: int) -> dict[str, torch.Tensor]:
    """The state projection, fit on the training rows' states (on one zero state when there are none)."""
    if n_train:
        return fit_pca(states[s_idx], dim)
    return fit_pca(np.zeros((1, states.shape[1] if states.ndim == 2 else 1), np.float32), dim)


def _project_states(
    n: int,
    states: np.ndarray,
    train_rows: np.ndarray,
    s_idx: np.ndarray,
    ns_idx: np.ndarray,
    pca: dict[str, torch.Tensor],
    dim: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Projected state and next state of every row (zeros outside the training rows)."""
    mean, comps = pca["mean"].numpy(), pca["components"].numpy()
    st = np.zeros((n, dim), dtype=np.float32)
    nst = np.zeros((n, dim), dtype=np.float32)
    st[train_rows] = (states[s_idx] - mean) @ comps
    nst[train_rows] = (states[ns_idx] - mean) @ comps
    return st, nst


def _le_values(
    train: np.ndarray,
    own: np.ndarray,
    raw_items: np.ndarray,
    r: Mapping[str, np.ndarray],
    a: Mapping[str, np.ndarray],
    st: np.ndarray,
    nst: np.ndarray,
) -> tuple[dict[str, Any], np.ndarray]:
    """The LE fields' column values by field name (rows outside training keep neutral values)
    and the augmentation mask."""
    neg_id = np.where(train, raw_items[np.maximum(r["neg_id"], 0)], own)
    aug_mask = np.where(train, a["aug_mask"], 0.0).astype(np.float32)
    aug_id = np.where(aug_mask > 0, raw_items[np.maximum(a["aug_id"], 0)], own)
    values = {
        "le_train": np.where(train, "1", "0"),
        "le_reward": _fmt_float(np.where(train, r["pos_reward"], 0.0)),
        "le_neg_id": neg_id,
        "le_neg_reward": _fmt_float(np.where(train, r["neg_reward"], 0.0)),
        "le_aug_id": aug_id,
        "le_aug_reward": _fmt_float(np.where(aug_mask > 0, a["aug_reward"], 0.0)),
        "le_aug_mask": np.where(aug_mask > 0, "1", "0"),
        "le_state": _fmt_seq(st),
        "le_next_state": _fmt_seq(nst),
    }
    return values, aug_mask


def _write_folder(
    out_dir: Path,
    base: BaseData,
    header: list[str],
    columns: list[Any],
    p_train: Path,
    pca: dict[str, torch.Tensor],
    states: np.ndarray,
    manifest: dict,
    rows: dict[str, int],
    hook: Callable[[str, int], None],
) -> dict:
    """Write the folder under a temporary name beside ``out_dir`` and rename it into place;
    returns the manifest written (with ``rows`` and the files' checksums). On failure the temporary folder is removed (a full disk
    raises :func:`no_space`)."""
    parent = out_dir.parent
    parent.mkdir(parents=True, exist_ok=True)
    remove_stale_tmp(parent, out_dir.name)
    tmp = parent / tmp_name(out_dir.name)
    try:
        tmp.mkdir()
        name = out_dir.name
        _write_inter(tmp / f"{name}.inter", header, columns)
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
        manifest["rows"] = rows
        manifest["checksums"] = folder_checksums(tmp)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, default=str))
        _replace_folder(tmp, out_dir)
    except BaseException as err:
        full = disk_full(err, tmp)  # before the temporary folder frees its space
        shutil.rmtree(tmp, ignore_errors=True)
        if full:
            raise no_space(err, out_dir) from None
        raise
    return manifest


def _write_inter(path: Path, header: list[str], columns: list[Any], chunk: int = 1 << 16) -> None:
    """The LE ``.inter``: tab-separated lines written as they are, no quoting and no escaping
    (RecBole's atomic format has neither), so an id is byte for byte the base file's (``a\\b``
    stays ``a\\b``). The ids come from the base .inter, read by tabs and lines: none holds a tab or line break."""
    cols = [list(map(str, c)) for c in columns]
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        fh.write("\t".join(header) + "\n")
        for start in range(0, len(cols[0]) if cols else 0, chunk):
            part = [c[start : start + chunk] for c in cols]
            fh.write("".join("\t".join(row) + "\n" for row in zip(*part, strict=True)))


def _replace_folder(tmp: Path, out_dir: Path) -> None:
    """Rename ``tmp`` to ``out_dir``, first moving an existing ``out_dir`` aside and removing it."""
    if out_dir.exists():
        trash = out_dir.parent / f".{out_dir.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(out_dir, trash)
        shutil.rmtree(trash, ignore_errors=True)
    os.replace(tmp, out_dir)
