"""Comparisons on Ray (``run_compare_lea.py --max_concurrent N``, ``--address``): the same records
as one run after another, faults (a run that raises, a worker killed with SIGKILL, the driver
interrupted) that leave every finished record intact and reusable, a two-node cluster on
127.0.0.1, the progress lines and the choice of how many runs go at once.

Fake runs (``fake_run``) run inside Ray's workers: they import this module, so its folder goes on
``PYTHONPATH`` before a test starts Ray (a local Ray's workers inherit the driver's environment).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import TINY_MODEL_CONFIG

from recbole_lea.errors import ConfigError
from recbole_lea.experiments import compare, runner
from recbole_lea.experiments.parallel import Progress, key_metric

ray = pytest.importorskip("ray")
HERE = Path(__file__).resolve().parent


# ------------------------------------------------------------------------------ fake runs
def fake_run(model: str, dataset: str, **kwargs: Any) -> dict[str, Any]:
    """A run in a worker: deterministic metrics per model and seed; ``SASRec`` seed 2 raises and
    ``GRU4Rec`` seed 2 kills its worker with SIGKILL when ``RLEA_TEST_FAULTS`` is set; every call
    is logged to ``RLEA_TEST_CALLS``; each takes ``RLEA_TEST_SLEEP`` seconds."""
    seed = int(kwargs["config_dict"]["seed"])
    with open(os.environ["RLEA_TEST_CALLS"], "a") as fh:
        fh.write(f"{model} {seed} {os.getpid()}\n")
    time.sleep(float(os.environ.get("RLEA_TEST_SLEEP", "0")))
    if os.environ.get("RLEA_TEST_FAULTS") and seed == 2:
        if model == "SASRec":
            raise ValueError("planted failure of SASRec seed 2")
        if model == "GRU4Rec":
            os.kill(os.getpid(), signal.SIGKILL)
    value = 0.1 + 0.01 * seed + (0.05 if model == "GRU4Rec" else 0.0)
    kwargs["callback_fn"](0, value, {"ndcg@10": value})
    return {
        "best_valid_score": value,
        "best_valid_result": {"ndcg@10": value},
        "test_result": {key: value for key, _ in compare.TABLE_METRICS},
        "config": {"eval_protocol": "loo", "seed": seed, "valid_metric": "NDCG@10"},
        "epoch_times": [0.01],
    }


def calls_of(path: Path) -> list[tuple[str, int]]:
    return [(line.split()[0], int(line.split()[1])) for line in path.read_text().splitlines()]


def fake_kwargs(tiny_root: Path, out: Path, models: list[str], seeds: list[int]) -> dict[str, Any]:
    return dict(
        dataset="tiny",
        models=models,
        seeds=seeds,
        config_dict=dict(TINY_MODEL_CONFIG),
        data_path=str(tiny_root),
        output_dir=out,
        run_fn=fake_run,
        quiet=True,
    )


def verified_records(out: Path) -> dict[str, dict[str, Any]]:
    """Every record file of ``out/runs``, by key; all must be whole JSON, no temporary file left."""
    runs = out / "runs"
    leftovers = [p.name for p in runs.iterdir() if ".tmp-" in p.name]
    assert not leftovers, leftovers
    records = {}
    for path in runs.glob("*.json"):
        record = json.loads(path.read_text())  # a half-written file would not parse
        assert record["sha256"] == runner.record_digest(record), path
        records[path.stem] = record
    return records


def metric_columns(rows: list[dict[str, Any]]) -> list[list[Any]]:
    """The table's numbers but its timings (NaN as None, so that equal tables compare equal)."""
    columns = [f"{key}_{stat}" for key, _ in compare.TABLE_METRICS for stat in ("mean", "std", "p", "sig", "rank")]
    return [[r["model"], r["n_seeds"]] + [None if r[c] != r[c] else r[c] for c in columns] for r in rows]


# ------------------------------------------------------------------------------ units
def test_how_many_runs_go_at_once() -> None:
    opts = compare.compare_options(models=["SASRec"], seeds=1)
    slots = compare.local_slots(1)
    assert slots >= 1 and compare.local_slots(10_000) == 1
    assert compare.concurrency(opts, 0) is None  # nothing to run: no Ray
    assert compare.concurrency(opts, 1) is None  # one run: in this process
    assert compare.concurrency(opts, 6) == (min(slots, 6) if slots > 1 else None)
    one = compare.compare_options(models=["SASRec"], seeds=1, max_concurrent=1)
    assert compare.concurrency(one, 6) is None  # --max_concurrent 1: today's path, no Ray
    four = compare.compare_options(models=["SASRec"], seeds=1, max_concurrent=4)
    assert compare.concurrency(four, 6) == 4 and compare.concurrency(four, 3) == 3
    assert compare.concurrency(opts, 6, run_fn=fake_run) is None  # a Python run_fn stays here unless asked
    assert compare.concurrency(four, 6, run_fn=fake_run) == 4
    cluster = compare.compare_options(models=["SASRec"], seeds=1, address="auto")
    assert compare.concurrency(cluster, 1) == 1 and compare.concurrency(cluster, 9) == 9  # Ray decides


def test_ray_starts_early_only_for_missing_runs_and_stops_on_a_planning_error(
    tiny_root: Path, tmp_path: Path, fake_env: Path
) -> None:
    opts = compare.compare_options(models=["SASRec", "GRU4Rec"], seeds=[1, 2], max_concurrent=2)
    pairs = [(compare.parse_model_spec(m), s, {}) for m in opts.models for s in opts.seed_values()]
    runs = tmp_path / "runs"
    runs.mkdir()
    assert compare._early_cap(opts, pairs, runs, fake_run) == 2  # nothing on disk: Ray first
    for spec, seed, _ in pairs[:3]:
        (runs / f"{spec.slug}__seed{seed}__0123456789.json").write_text("{}")
    assert compare._early_cap(opts, pairs, runs, fake_run) is None  # one run left: plan first
    one = compare.compare_options(models=["SASRec", "GRU4Rec"], seeds=[1, 2], max_concurrent=1)
    assert compare._early_cap(one, pairs, tmp_path / "empty", fake_run) is None
    # a planning error while Ray starts: the run's own message, Ray stopped, nothing computed
    kwargs = fake_kwargs(tiny_root, tmp_path / "bad", ["SASRec", "GRU4Rec"], [1, 2])
    kwargs["config_dict"] = {**kwargs["config_dict"], "learning_rat": 0.1}
    with pytest.raises(ConfigError, match="learning_rat"):
        compare.run_comparison(**kwargs, max_concurrent=2)
    assert not ray.is_initialized()
    assert fake_env.read_text() == ""


def test_progress_lines() -> None:
    lines: list[str] = []
    progress = Progress(total=4, out=lines.append)
    progress.read_back(1)
    assert "time left known after the first run" in progress.line()
    progress.started("SASRec seed 1")
    progress.started("SASRec seed 2")
    assert "2 running" in progress.line()
    ok = {"status": "ok", "test_result": {"ndcg@10": 0.12345}, "config": {"valid_metric": "NDCG@10"}, "wall_time_s": 2}
    progress.finished("SASRec seed 1", ok)
    assert "finished SASRec seed 1: test NDCG@10 0.1235 (2.0 s)" in lines
    assert lines[-1].startswith("runs: 2/4 done, 1 running, 1 cached, 0 failed;") and "~" in lines[-1]
    progress.finished("SASRec seed 2", {"status": "failed", "error": "ValueError: boom"})
    assert "FAILED SASRec seed 2: ValueError: boom" in lines
    assert "1 failed" in lines[-1] and "0 running" in lines[-1]
    assert key_metric({"config": {"valid_metric": "Hit@5"}, "test_result": {"hit@5": 0.5}}) == ("Hit@5", 0.5)


# ------------------------------------------------------------------------------ equality
def test_two_at_once_gives_the_same_metrics_as_one_after_another(
    tiny_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kwargs: dict[str, Any] = dict(
        dataset="tiny",
        models=["SASRec", "SA2C", "SA2C_LEA:variant=LEASR"],
        seeds=[1, 2],
        baseline="SA2C",
        config_dict={**TINY_MODEL_CONFIG, "le_dir": str(tiny_root / "tiny-lea")},
        data_path=str(tiny_root),
        quiet=True,
    )
    monkeypatch.chdir(tmp_path)
    lines: list[str] = []
    one = compare.run_comparison(**kwargs, output_dir=tmp_path / "one", max_concurrent=1)
    two = compare.run_comparison(**kwargs, output_dir=tmp_path / "two", max_concurrent=2, progress=lines.append)
    assert not ray.is_initialized()  # the comparison stopped the Ray it started
    assert all(r["status"] == "ok" for r in one["runs"] + two["runs"]), [r.get("error") for r in two["runs"]]
    assert [r["key"] for r in one["runs"]] == [r["key"] for r in two["runs"]]  # same records, same keys
    assert not any("ray_node" in r for r in one["runs"]) and all(r.get("ray_node") for r in two["runs"])
    for a, b in zip(one["runs"], two["runs"]):
        assert a["test_result"] == b["test_result"], a["key"]
        assert a["best_valid_result"] == b["best_valid_result"], a["key"]
    assert metric_columns(one["rows"]) == metric_columns(two["rows"])
    assert set(verified_records(tmp_path / "one")) == set(verified_records(tmp_path / "two"))
    assert (tmp_path / "two" / "table.csv").is_file() and (tmp_path / "two" / "runs.csv").is_file()
    assert sum(line.startswith("finished ") for line in lines) == 6  # quiet silences stderr, not the hook
    assert lines[-1].startswith("runs: 6/6 done, 0 running, 0 cached, 0 failed")


# ------------------------------------------------------------------------------ faults
def test_a_raising_run_and_a_killed_worker_leave_the_rest(
    fake_env: Path, tiny_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "cmp"
    kwargs = fake_kwargs(tiny_root, out, ["SASRec", "GRU4Rec"], [1, 2, 3])
    monkeypatch.setenv("RLEA_TEST_FAULTS", "1")
    first = compare.run_comparison(**kwargs, max_concurrent=2)
    status = {(r["label"], r["seed"]): r["status"] for r in first["runs"]}
    assert status == {(m, s): "failed" if s == 2 else "ok" for m in ("SASRec", "GRU4Rec") for s in (1, 2, 3)}
    errors = {r["label"]: r["error"] for r in first["runs"] if r["status"] == "failed"}
    assert "planted failure of SASRec seed 2" in errors["SASRec"]
    assert "died" in errors["GRU4Rec"].lower() or "crash" in errors["GRU4Rec"].lower(), errors["GRU4Rec"]
    md = (out / "table.md").read_text()
    assert "- SASRec, seed 2: ValueError: planted failure" in md and "- GRU4Rec, seed 2:" in md
    rows = {r["model"]: r for r in first["rows"]}
    assert rows["SASRec"]["n_seeds"] == 2 and rows["GRU4Rec"]["n_seeds"] == 2
    records = verified_records(out)
    assert len(records) == 6 and sum(r["status"] == "ok" for r in records.values()) == 4
    # again, without the faults: only the two failed runs run; the four finished are read back
    monkeypatch.delenv("RLEA_TEST_FAULTS")
    fake_env.write_text("")
    again = compare.run_comparison(**kwargs, max_concurrent=2)
    assert sorted(calls_of(fake_env)) == [("GRU4Rec", 2), ("SASRec", 2)]
    assert all(r["status"] == "ok" for r in again["runs"])
    assert sum(bool(r["cached"]) for r in again["runs"]) == 4
    for record in first["runs"]:
        if record["status"] == "ok":
            assert records[record["key"]] == verified_records(out)[record["key"]]  # untouched


def test_an_interrupted_driver_keeps_every_finished_record(
    fake_env: Path, tiny_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "cmp"
    kwargs = fake_kwargs(tiny_root, out, ["SASRec"], [1, 2, 3, 4, 5, 6])
    monkeypatch.setenv("RLEA_TEST_SLEEP", "1")

    def interrupt_after_the_first(line: str) -> None:
        if line.startswith("finished "):
            raise KeyboardInterrupt  # Ctrl-C while the driver waits on the other run

    with pytest.raises(KeyboardInterrupt):
        compare.run_comparison(**kwargs, max_concurrent=2, progress=interrupt_after_the_first)
    assert not ray.is_initialized()  # Ray stopped, and its tasks with it
    finished = verified_records(out)
    assert 1 <= len(finished) < 6 and all(r["status"] == "ok" for r in finished.values())
    # no lock is left held and nothing finished runs again
    fake_env.write_text("")
    again = compare.run_comparison(**kwargs, max_concurrent=2)
    assert all(r["status"] == "ok" for r in again["runs"])
    assert {r["key"] for r in again["runs"] if r["cached"]} == set(finished)
    assert len(calls_of(fake_env)) == 6 - len(finished)


# ------------------------------------------------------------------------------ a two-node cluster on 127.0.0.1
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


#: ``ray start`` for a worker node on loopback: Ray's CLI refuses a second node while
#: ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (which keeps a node on 127.0.0.1), and otherwise replaces
#: 127.0.0.1 by the machine's address; this passes the check and keeps the address
WORKER_START = (
    "import sys; from ray._private import ray_constants, services; "
    "ray_constants.ENABLE_RAY_CLUSTER = True; services.resolve_ip_for_localhost = lambda host: host; "
    "from ray.scripts.scripts import main; sys.argv[0] = 'ray'; main()"
)


def cluster_processes(marks: list[str]) -> list[Any]:
    """The processes of the test's cluster: those whose command line names its temp dir or its
    GCS address, and their children (agents, workers)."""
    psutil = pytest.importorskip("psutil")
    found: dict[int, Any] = {}
    for proc in psutil.process_iter(["cmdline"]):
        if any(mark in " ".join(proc.info["cmdline"] or []) for mark in marks):
            found[proc.pid] = proc
            try:
                found.update({child.pid: child for child in proc.children(recursive=True)})
            except psutil.Error:
                pass
    return list(found.values())


def stop_cluster(marks: list[str]) -> None:
    """End the test cluster's processes only (never ``ray stop``, which ends every Ray of the
    machine's user)."""
    psutil = pytest.importorskip("psutil")
    procs = cluster_processes(marks)
    for proc in procs:
        try:
            proc.terminate()
        except psutil.Error:
            pass
    _gone, alive = psutil.wait_procs(procs, timeout=5)
    for proc in alive:
        try:
            proc.kill()
        except psutil.Error:
            pass


def assert_loopback_only(procs: list[Any]) -> None:
    """Every listening TCP socket of ``procs`` is on loopback (127.0.0.1, ::ffff:127.0.0.1)."""
    import ipaddress

    psutil = pytest.importorskip("psutil")
    listening = []
    for proc in procs:
        try:
            conns = proc.net_connections(kind="tcp")
        except psutil.Error:
            continue
        listening += [c.laddr.ip for c in conns if c.status == psutil.CONN_LISTEN]
    assert listening  # the GCS and both raylets at least
    for ip in listening:
        address = ipaddress.ip_address(ip.split("%")[0])
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        assert address.is_loopback, listening


@pytest.fixture()
def two_node_cluster(tmp_path: Path) -> Iterator[str]:
    """``ray start --head`` plus a second ``ray start``, both on 127.0.0.1, 1 CPU each."""
    if shutil.which("ray") is None:
        pytest.skip("the ray command line is not installed")
    port, client_port = _free_port(), _free_port()
    temp = Path("/tmp") / f"rlea_cl_{os.getpid()}"
    env = {
        **os.environ,
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # every process of both nodes on loopback
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_AUTH_MODE": "disabled",  # loopback only; the driver would need the token otherwise
        "PYTHONPATH": os.pathsep.join(p for p in [str(HERE), os.environ.get("PYTHONPATH")] if p),
    }
    common = ["--num-cpus=1", "--num-gpus=0", "--node-ip-address=127.0.0.1", "--disable-usage-stats"]
    head = [
        "ray",
        "start",
        "--head",
        f"--port={port}",
        f"--ray-client-server-port={client_port}",
        "--include-dashboard=false",
        f"--temp-dir={temp}",
        *common,
    ]
    worker = [sys.executable, "-c", WORKER_START, "start", f"--address=127.0.0.1:{port}", *common]
    try:
        for cmd in (head, worker):
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
            assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        yield f"127.0.0.1:{port}"
        assert_loopback_only(cluster_processes([str(temp), f"127.0.0.1:{port}"]))
    finally:
        stop_cluster([str(temp), f"127.0.0.1:{port}"])
        shutil.rmtree(temp, ignore_errors=True)


def test_a_two_node_cluster_gives_the_table_of_a_local_run(
    tiny_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, two_node_cluster: str
) -> None:
    # the driver is a `run_compare_lea.py` process of its own: Ray keeps a process's auth mode
    # (disabled for this cluster) for every later node it starts, which this one never does
    monkeypatch.chdir(tmp_path)
    models = ["SASRec", "GRU4Rec"]
    config = {k: TINY_MODEL_CONFIG[k] for k in ("epochs", "hidden_size", "embedding_size", "inner_size")}
    local = compare.run_comparison(
        dataset="tiny",
        models=models,
        seeds=[1, 2],
        config_dict=config,
        data_path=str(tiny_root),
        output_dir=tmp_path / "local",
        max_concurrent=1,
        quiet=True,
    )
    command = [sys.executable, str(HERE.parent / "run_compare_lea.py"), "--dataset=tiny", "--models", *models]
    command += ["--seeds", "1", "2", f"--data_path={tiny_root}", f"--output_dir={tmp_path / 'cluster'}"]
    command += [f"--{k}={v}" for k, v in config.items()] + ["--address", two_node_cluster, "--quiet"]
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONPATH": str(HERE.parent)}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    remote = {r["key"]: r for r in verified_records(tmp_path / "cluster").values()}
    assert set(remote) == {r["key"] for r in local["runs"]}  # the same runs, the same keys
    assert len({r["ray_node"] for r in remote.values()}) == 2  # both nodes ran some
    for record in local["runs"]:
        assert remote[record["key"]]["test_result"] == record["test_result"], record["key"]
    table = [line for line in (tmp_path / "cluster" / "table.md").read_text().splitlines() if line.startswith("| ")]
    assert [line.rsplit("|", 2)[0] for line in table] == [
        line.rsplit("|", 2)[0] for line in local["markdown"].splitlines() if line.startswith("| ")
    ]  # every cell but s/epoch
