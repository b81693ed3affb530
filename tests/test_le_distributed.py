"""Multi-process LE builds on CPU (gloo): two processes started by ``accelerate launch`` write the
LE files a one-process build writes (item tokens, candidates and featurization bitwise; LE
training within a stated tolerance: its gradients are summed across processes in another
order), a killed build resumes without redoing finished shards or epochs, processes given
different options stop with one message; and the large-model options fail clearly where they
cannot work."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from recbole_lea.errors import ConfigError
from recbole_lea.le.build import build_le
from recbole_lea.le.distributed import Dist, assign, balance, init_dist
from recbole_lea.le.testing import TINY_DATASET_KEYS, TINY_PROFILE, save_tiny_llm, write_tiny_dataset

#: 150 users: 3 featurization shards of 64 users; 30 items in batches of 16: 2 item-token shards
N_USERS = 150
PROFILE = {**TINY_PROFILE, "le_epochs": 2}
#: LE training of 2 processes against 1: max |difference| of each trained tensor relative to the
#: tensor's largest magnitude, and of every reward and state (measured: 6e-6 and 1e-6)
TRAIN_RTOL = 1e-4
FEATURE_ATOL = 1e-4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _overrides(llm: Path, cache: Path) -> dict:
    return {**TINY_DATASET_KEYS, "le_model": str(llm), "le_cache_dir": str(cache), "le_threads": 1}


def launch(root: Path, name: str, spec: dict, timeout: int = 400) -> subprocess.CompletedProcess[str]:
    """``accelerate launch`` two CPU processes of :func:`recbole_lea.le.testing.launched_build`."""
    spec_path = root / f"{name}.json"
    spec_path.write_text(json.dumps(spec))
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.accelerate_cli",
        "launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(_free_port()),
        "-m",
        "recbole_lea.le.testing",
        str(spec_path),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=root)


def events(folder: Path) -> list[tuple[int, str, int]]:
    out = []
    for path in sorted(folder.glob("events-*.jsonl")):
        rank = int(path.stem.split("-")[1])
        out += [(rank, e["stage"], e["i"]) for e in map(json.loads, path.read_text().splitlines())]
    return out


def stage_dir(cache: Path, stage: str) -> Path:
    found = [p for p in (cache / "stages").glob(f"{stage}-*") if (p / "COMPLETE").exists()]
    assert len(found) == 1, (stage, found)
    return found[0]


def complete_shards(cache: Path, stage: str) -> set[int]:
    done = set()
    for p in (cache / "stages").glob(f"{stage}.shard-*"):
        if (p / "COMPLETE").exists():
            done.add(json.loads((p / "meta.json").read_text())["key"]["shard"])
    return done


def read_inter(folder: Path) -> pd.DataFrame:
    df = pd.read_csv(folder / f"{folder.name}.inter", sep="\t", dtype=str, keep_default_na=False)
    df.columns = [c.split(":")[0] for c in df.columns]
    return df


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The tiny LLM, the dataset, and the reference: a one-process build."""
    root = tmp_path_factory.mktemp("dist")
    llm = save_tiny_llm(root / "llm")
    data = root / "data"
    write_tiny_dataset(data, n_users=N_USERS)
    out = build_le("tiny", data, dict(PROFILE), _overrides(llm, root / "cache-one"))
    return {"root": root, "llm": llm, "data": data, "one": out, "cache_one": root / "cache-one"}


def test_two_processes_resume_after_kills_and_write_the_one_process_files(tiny: dict) -> None:
    root: Path = tiny["root"]
    cache = root / "cache-two"
    data = root / "data-two"  # the LE folder goes under data_path: a copy without the one-process LE
    shutil.copytree(tiny["data"], data, ignore=shutil.ignore_patterns("lea"))
    spec = {
        "dataset": "tiny",
        "data_path": str(data),
        "profile": PROFILE,
        "overrides": _overrides(tiny["llm"], cache),
    }

    # 1. process 1 is killed after LE training's first epoch: item tokens and the epoch checkpoint stay
    rec1 = root / "rec1"
    rec1.mkdir()
    run = launch(
        root, "kill-train", {**spec, "record": str(rec1), "kill": {"rank": 1, "stage": "le_train.epoch", "at": 1}}
    )
    assert run.returncode != 0, run.stdout + run.stderr
    ev1 = events(rec1)
    assert {i for r, s, i in ev1 if s == "item_tokens.shard"} == {0, 1}  # the two item batches, one per process
    assert (stage_dir(cache, "item_tokens") / "item_tokens.pt").is_file()
    assert stage_dir(cache, "le_train.epoch")  # epoch 1's checkpoint
    assert not list((cache / "stages").glob("le_train-*"))

    # 2. process 1 is killed after its first featurization shard (of its two: the three groups' costs
    # give process 0 one shard and process 1 two, so one shard is certainly left undone)
    rec2 = root / "rec2"
    rec2.mkdir()
    run = launch(root, "kill-feat", {**spec, "record": str(rec2), "kill": {"rank": 1, "stage": "featurize", "at": 1}})
    assert run.returncode != 0, run.stdout + run.stderr
    ev2 = events(rec2)
    assert not [e for e in ev2 if e[1] == "item_tokens.shard"]  # finished stage: reused
    # LE training resumed after epoch 1 (RNG, Adam state and weights from the checkpoint): only epoch 2 ran
    assert sorted({(s, i) for _r, s, i in ev2 if s == "le_train.epoch"}) == [("le_train.epoch", 2)]
    assert sorted(i for r, s, i in ev2 if s == "featurize.shard" and r == 1) == [0]
    done_before = complete_shards(cache, "featurize")
    assert 0 in done_before and 2 not in done_before

    # 3. the rerun computes only the shards that were not finished
    rec3 = root / "rec3"
    rec3.mkdir()
    run = launch(root, "finish", {**spec, "record": str(rec3)})
    assert run.returncode == 0, run.stdout + run.stderr
    ev3 = events(rec3)
    redone = {i for _r, s, i in ev3 if s == "featurize.shard"}
    assert not redone & done_before and redone | done_before == {0, 1, 2}
    assert not [e for e in ev3 if e[1].startswith(("item_tokens", "le_train", "candidates"))]
    two = Path(run.stdout.strip().splitlines()[-1])
    assert two.is_dir() and two.parent.name == tiny["one"].parent.name  # same fingerprint, same folder name
    assert not list((cache / "stages").glob("*.shard-*"))  # merged shards are removed
    assert json.loads((two / "manifest.json").read_text())["processes"] == 2

    # item tokens (each batch on one process) and candidates: bitwise
    one_cache = tiny["cache_one"]
    for stage, name in (("item_tokens", "item_tokens.pt"),):
        assert torch.equal(torch.load(stage_dir(one_cache, stage) / name), torch.load(stage_dir(cache, stage) / name))
    assert np.array_equal(
        np.load(stage_dir(one_cache, "candidates") / "candidates.npy"),
        np.load(stage_dir(cache, "candidates") / "candidates.npy"),
    )
    # LE training: within TRAIN_RTOL of each tensor's scale
    s1 = torch.load(stage_dir(one_cache, "le_train") / "le_state.pt")
    s2 = torch.load(stage_dir(cache, "le_train") / "le_state.pt")
    assert set(s1) == set(s2)
    for k in s1:
        scale = max(float(s1[k].abs().max()), 1e-6)
        assert float((s1[k] - s2[k]).abs().max()) <= TRAIN_RTOL * scale, k
    # the LE files: same rows, negatives and augmentation; rewards and states within FEATURE_ATOL
    a, b = read_inter(tiny["one"]), read_inter(two)
    for c in ("user_id", "item_id", "timestamp", "le_train", "le_neg_id", "le_aug_id", "le_aug_mask"):
        assert (a[c] == b[c]).all(), c
    for c in ("le_reward", "le_neg_reward", "le_aug_reward"):
        np.testing.assert_allclose(a[c].astype(float), b[c].astype(float), atol=FEATURE_ATOL, rtol=0)
    for c in ("le_state", "le_next_state"):
        x = np.array([[float(v) for v in s.split()] for s in a[c]])
        y = np.array([[float(v) for v in s.split()] for s in b[c]])
        np.testing.assert_allclose(x, y, atol=FEATURE_ATOL * 10, rtol=0)

    # featurization given the same trained LE: bitwise. A one-process build over the two-process
    # build's item tokens, LE training and candidates writes byte-identical LE files.
    cache_d = root / "cache-d"
    (cache_d / "stages").mkdir(parents=True)
    for stage in ("item_tokens", "le_train", "candidates"):
        src = stage_dir(cache, stage)
        shutil.copytree(src, cache_d / "stages" / src.name)
    data_d = root / "data-d"
    shutil.copytree(tiny["data"], data_d, ignore=shutil.ignore_patterns("lea"))
    one_d = build_le("tiny", data_d, dict(PROFILE), _overrides(tiny["llm"], cache_d))
    assert (one_d / "tiny-lea.inter").read_bytes() == (two / "tiny-lea.inter").read_bytes()
    for name in ("le_item_tokens.pt", "le_state_projection.pt"):
        x, y = torch.load(one_d / name), torch.load(two / name)
        assert all(torch.equal(x[k], y[k]) if isinstance(x[k], torch.Tensor) else x[k] == y[k] for k in x), name


def test_processes_given_different_options_stop_with_one_message(tiny: dict) -> None:
    root: Path = tiny["root"]
    data = root / "data-disagree"
    shutil.copytree(tiny["data"], data, ignore=shutil.ignore_patterns("lea"))
    spec = {
        "dataset": "tiny",
        "data_path": str(data),
        "profile": PROFILE,
        "overrides": _overrides(tiny["llm"], root / "cache-disagree"),
        "rank_overrides": {"1": {"le_lr": 0.5}},
    }
    run = launch(root, "disagree", spec)
    assert run.returncode != 0
    text = run.stdout + run.stderr
    assert text.count("error: The 2 processes of this LE build disagree on its configuration") == 1, text
    assert "process 1 has le_lr=0.5 where process 0 has 0.001" in text
    assert not (root / "cache-disagree" / "stages").exists() or not list((root / "cache-disagree" / "stages").iterdir())


def test_sharded_path_resumes_training_and_featurization_exactly(tiny: dict, tmp_path: Path) -> None:
    """The multi-process code in one process (world size 1): a build killed after LE training's
    first epoch and again after its first featurization shard resumes from the checkpoint and the
    finished shards, and writes what an uninterrupted build of the same path writes, bitwise."""
    llm = tiny["llm"]

    def build(cache: Path, data: Path, hook=None) -> Path:  # type: ignore[no-untyped-def]
        return build_le("tiny", data, dict(PROFILE), _overrides(llm, cache), _stage_hook=hook, _sharded=True)

    data = tmp_path / "data"
    shutil.copytree(tiny["data"], data, ignore=shutil.ignore_patterns("lea"))
    straight = build(tmp_path / "straight", data)

    seen: list[tuple[str, int]] = []

    def kill_at(stage: str, at: int):  # type: ignore[no-untyped-def]
        def hook(s: str, i: int) -> None:
            seen.append((s, i))
            if (s, i) == (stage, at):
                raise KeyboardInterrupt(f"killed at {stage} {at}")

        return hook

    cache = tmp_path / "resumed"
    data2 = tmp_path / "data2"
    shutil.copytree(tiny["data"], data2, ignore=shutil.ignore_patterns("lea"))
    with pytest.raises(KeyboardInterrupt):
        build(cache, data2, kill_at("le_train.epoch", 1))
    with pytest.raises(KeyboardInterrupt):
        seen.clear()
        build(cache, data2, kill_at("featurize", 1))
    assert [e for e in seen if e[0] == "le_train.epoch"] == [("le_train.epoch", 2)]
    assert complete_shards(cache, "featurize") == {0}
    seen.clear()
    resumed = build(cache, data2, lambda s, i: seen.append((s, i)))
    assert sorted(i for s, i in seen if s == "featurize.shard") == [1, 2]
    assert (resumed / "tiny-lea.inter").read_bytes() == (straight / "tiny-lea.inter").read_bytes()
    assert torch.equal(
        torch.load(stage_dir(cache, "le_train") / "le_state.pt")["item_tokens"],
        torch.load(stage_dir(tmp_path / "straight", "le_train") / "le_state.pt")["item_tokens"],
    )


# --- pieces ------------------------------------------------------------------------------------
def test_assignment_is_deterministic_and_balanced() -> None:
    costs = [5.0, 1.0, 4.0, 4.0, 2.0, 2.0]
    owner = assign(costs, 2)
    assert owner == assign(list(costs), 2)
    loads = [sum(c for c, o in zip(costs, owner, strict=True) if o == r) for r in range(2)]
    assert sorted(loads) == [9.0, 9.0] and balance(costs, 2) == 1.0
    assert assign([1.0, 1.0, 1.0], 4) == [0, 1, 2]  # more processes than units: some idle


def test_one_process_collectives_are_identities() -> None:
    d = Dist()
    assert d.all_gather_json({"a": [1, 2]}) == [{"a": [1, 2]}]
    assert d.broadcast_json([3]) == [3]
    t = torch.ones(3)
    assert torch.equal(d.all_reduce_(t), torch.ones(3))


def test_no_launcher_is_one_process(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE", "ACCELERATE_USE_CPU"):
        monkeypatch.delenv(name, raising=False)
    assert init_dist(torch.device("cpu")) is None


def test_accelerate_cpu_launch_of_one_process_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # `accelerate launch --cpu --num_processes 2` without mpirun starts one process with MASTER_ADDR set
    for name in ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ACCELERATE_USE_CPU", "True")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    with pytest.raises(ConfigError, match=r"started a single process.*--multi_gpu --num_processes N.*torchrun"):
        init_dist(torch.device("cpu"))


def test_quantization_on_cpu_is_refused_before_work(tiny: dict, tmp_path: Path) -> None:
    ov = {**_overrides(tiny["llm"], tmp_path / "c"), "le_quantization": "4bit"}
    with pytest.raises(ConfigError, match=r"le_quantization=4bit .*CUDA GPUs only.*le_quantization=none"):
        build_le("tiny", tiny["data"], dict(PROFILE), ov)
    assert not (tmp_path / "c" / "stages").exists() or not list((tmp_path / "c" / "stages").iterdir())
    with pytest.raises(ConfigError, match="le_quantization"):
        build_le("tiny", tiny["data"], dict(PROFILE), {**ov, "le_quantization": "2bit"})


def test_a_model_that_does_not_fit_names_its_size_the_memory_and_the_options(
    tiny: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from recbole_lea.le import llm as llm_mod
    from recbole_lea.le.llm import LEOutOfMemory

    ov = {**_overrides(tiny["llm"], tmp_path / "c"), "le_seed": 7}  # an LE not built yet
    # at load: the weights alone exceed the memory found
    monkeypatch.setattr(llm_mod, "free_memory", lambda device: (1 << 10, 2 << 10))
    with pytest.raises(LEOutOfMemory) as err:
        build_le("tiny", tiny["data"], dict(PROFILE), ov)
    text = str(err.value)
    assert re.search(r"The LLM does not fit in the memory of cpu: le_model=.*\(\d+\.\dK parameters, about", text)
    assert "of weights in float32); the device has 2.0 KiB in total, 1.0 KiB free now" in text
    assert "a GPU with le_quantization=8bit or 4bit" in text and "le_grad_checkpointing=true" in text
    monkeypatch.undo()

    # in training: the allocator fails inside a forward pass
    from recbole_lea.le.model import LEModel

    def oom(*a, **k):  # type: ignore[no-untyped-def]
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(LEModel, "forward_chunks", oom)
    with pytest.raises(LEOutOfMemory, match=r"while stage le_train.*le_model=.*parameters.*smaller le_batch_size"):
        build_le("tiny", tiny["data"], dict(PROFILE), {**ov, "le_cache_dir": str(tmp_path / "c2")})


def test_gradient_checkpointing_trains_the_same_le(tiny: dict, tmp_path: Path) -> None:
    out = build_le(
        "tiny", tiny["data"], dict(PROFILE), {**_overrides(tiny["llm"], tmp_path / "c"), "le_grad_checkpointing": True}
    )
    assert out != tiny["one"]  # an option of its own (another folder), same training up to rounding
    a = torch.load(stage_dir(tiny["cache_one"], "le_train") / "le_state.pt")
    b = torch.load(stage_dir(tmp_path / "c", "le_train") / "le_state.pt")
    for k in a:
        assert float((a[k] - b[k]).abs().max()) <= TRAIN_RTOL * max(float(a[k].abs().max()), 1e-6), k
