"""The plan of an LE build: every stage's cache key and fingerprint and the LE folder's place,
derived from the resolved options without running anything.

:func:`plan_le` keys each stage on the options its stage tags name
(:class:`~recbole_lea.le.config.LEConfig`), the data files' sha256, the LLM files' sha256, the
split, the code version and the versions of the libraries that compute it
(:func:`library_versions`); the fingerprint of the output names its folder,
``<data_path>/lea/<dataset>-<fingerprint>/<dataset>-lea/``, so LEs of different configurations
live side by side. :func:`missing_le_message` says why no LE matches a plan.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from recbole_lea.datasets.ml100k import ensure_bundled

from .cache import code_version, sha_of
from .config import NEUTRAL, STAGES, LEConfig, stage_options
from .data import LEInputError
from .llm import check_quantization, file_sha256, model_source, resolve_device, resolve_dtype

#: folder under data_path that holds the LE folders, one per fingerprint
LE_ROOT = "lea"
#: the split the LE is trained on (the run's leave-one-out training rows)
LOO_SPLIT: dict[str, Any] = {"protocol": "loo"}
#: libraries whose version can change an LE's numbers (kernels, tokenizers, LoRA, mixed
#: precision, random streams): part of every stage's key and of the fingerprint
LE_LIBRARIES = ("torch", "transformers", "peft", "accelerate", "numpy")


def library_versions() -> dict[str, str | None]:
    """The installed version of each of :data:`LE_LIBRARIES` (None when one is not installed),
    read from the package metadata without importing the libraries."""
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for name in LE_LIBRARIES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


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
    versions: dict[str, str | None] = field(default_factory=dict)  # library_versions()
    keys: dict[str, dict[str, Any]] = field(default_factory=dict)
    fps: dict[str, str] = field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        return self.fps["write"]

    @property
    def out_dir(self) -> Path:
        return le_dir_path(self.data_path, self.dataset, self.fingerprint)

    def fix(self) -> str:
        return f"build it with `python run_recbole_lea.py --build-le --dataset={self.dataset}` (same options)"


def le_dir_path(data_path: Path | str, dataset: str, fingerprint: str) -> Path:
    """``<data_path>/lea/<dataset>-<fingerprint[:12]>/<dataset>-lea``."""
    return Path(data_path) / LE_ROOT / f"{dataset}-{fingerprint[:12]}" / f"{dataset}-lea"


def _resolved(cfg: LEConfig, name: str, plan: LEPlan) -> Any:
    """An option's value as it enters a key: the weights' sha256 for le_model, the device and
    dtype actually used for le_device / le_dtype, None for le_title_tokens with item tokens (it
    changes nothing there)."""
    if name == "le_title_tokens" and cfg.le_item_repr != "titles":
        return None
    if name == "le_model":
        return plan.model["sha256"]
    if name == "le_device":
        return plan.device.type
    if name == "le_dtype":
        return str(plan.dtype)
    return getattr(cfg, name)


def plan_le(dataset: str, data_path: Path | str, cfg: LEConfig, split: dict[str, Any] | None = None) -> LEPlan:
    """The stage keys, fingerprints and LE folder of building ``dataset``'s LE with ``cfg``."""
    data_path = Path(data_path)
    ensure_bundled(str(data_path), dataset)
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
        versions=library_versions(),
    )
    inputs = {
        "item_tokens": {"item": plan.files["item"]},
        "le_train": {"inter": plan.files["inter"], "split": plan.split, "upstream": ("item_tokens",)},
        "candidates": {"inter": plan.files["inter"], "item": plan.files["item"], "split": plan.split},
        "featurize": {"upstream": ("le_train", "candidates")},
        "augment": {"upstream": ("featurize",)},
    }
    for stage in STAGES[:-1]:
        key: dict[str, Any] = {"stage": stage, "code": plan.code, "versions": plan.versions}
        for name in stage_options(stage):
            key[name] = _resolved(cfg, name, plan)
        spec = dict(inputs[stage])
        for up in spec.pop("upstream", ()):
            key[up] = plan.fps[up]
        key.update(spec)
        plan.keys[stage], plan.fps[stage] = key, sha_of(key)
    # the output: every stage, the data, the weights, the split, the library versions and every
    # option that can change a result
    write_key = {
        "stage": "write",
        "code": plan.code,
        "versions": plan.versions,
        "files": plan.files,
        "model": plan.model["sha256"],
        "split": plan.split,
        "stages": {s: plan.fps[s] for s in STAGES[:-1]},
        "config": {k: _resolved(cfg, k, plan) for k in cfg.to_dict() if k not in NEUTRAL},
    }
    plan.keys["write"], plan.fps["write"] = write_key, sha_of(write_key)
    return plan


def described(plan: LEPlan) -> dict[str, Any]:
    """What every process of one build must agree on: each option, the data, the LLM weights,
    the split, the code, the library versions and the cache folder."""
    out: dict[str, Any] = {k: v for k, v in plan.cfg.to_dict().items()}
    out["le_cache_dir (resolved)"] = str(plan.cfg.cache_dir().resolve())
    out[f"{plan.dataset}.inter sha256"] = plan.files["inter"]
    out[f"{plan.dataset}.item sha256"] = plan.files["item"]
    out["LLM weights sha256"] = plan.model["sha256"]
    out["split"] = plan.split
    out["LE code version"] = plan.code
    out["library versions"] = plan.versions
    out["device type"] = plan.device.type
    return out


def le_differences(plan: LEPlan) -> tuple[Path, list[str]] | None:
    """The existing LE folder of the same dataset closest to ``plan`` and the options in which it
    differs (``name: built value -> asked value``), to say why no LE matches; None if none."""
    best: tuple[Path, list[str]] | None = None
    for manifest_path in sorted((plan.data_path / LE_ROOT).glob(f"{plan.dataset}-*/{plan.dataset}-lea/manifest.json")):
        try:
            manifest = json.loads(manifest_path.read_text())
        except (OSError, ValueError):
            continue
        diffs = manifest_differences(manifest, plan)
        if best is None or len(diffs) < len(best[1]):
            best = (manifest_path.parent, diffs)
    return best


def manifest_differences(manifest: dict[str, Any], plan: LEPlan) -> list[str]:
    """What an LE's manifest was built with that ``plan`` does not ask for: options
    (``name: built -> asked``), the split, the data, the LLM files, the code, the library versions."""
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
        diffs.append("the LLM files")
    if manifest.get("code_version") != plan.code:
        diffs.append("the LE build code (another version of recbole_lea)")
    return diffs + _version_differences(manifest.get("versions"), plan.versions)


def _version_differences(built: dict[str, Any] | None, asked: dict[str, Any]) -> list[str]:
    """``torch 2.4.0 -> 2.5.1`` for each library whose version differs (all of them when the
    manifest predates recorded versions)."""
    if not built:
        return ["the library versions (not recorded by the LE's build)"]
    return [
        f"{name} {built.get(name)} -> {asked.get(name)}"
        for name in sorted(set(built) | set(asked))
        if built.get(name) != asked.get(name)
    ]


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
