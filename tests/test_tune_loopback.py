"""A local Ray sweep (no ``--address``) listens on loopback only.

The trial's run function runs inside a Ray worker while the sweep's node is up: it lists the
listening TCP sockets of every process of that node (the driver, which is this pytest process, and
all its descendants: GCS, raylet, agents, workers) and writes them to a file the test reads after
the sweep. Ray 2.x binds all interfaces by default, so this fails without
``recbole_lea.compat.ray_loopback_only``.
"""

from __future__ import annotations

import ipaddress
import json
import os
from pathlib import Path
from typing import Any

import pytest
from test_experiments import TINY, write_tiny

from recbole_lea.experiments import tune as lea_tune

ray = pytest.importorskip("ray")
psutil = pytest.importorskip("psutil")


def listening_sockets(root_pid: int) -> list[dict[str, Any]]:
    """Every listening TCP socket of ``root_pid`` and its descendants."""
    root = psutil.Process(root_pid)
    found = []
    for proc in [root, *root.children(recursive=True)]:
        try:
            name = proc.name()
            conns = proc.net_connections(kind="tcp")
        except psutil.Error:  # a worker that exited meanwhile
            continue
        for conn in conns:
            if conn.status == psutil.CONN_LISTEN:
                found.append({"pid": proc.pid, "name": name, "ip": conn.laddr.ip, "port": conn.laddr.port})
    return found


def is_loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip.split("%")[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # a dual-stack socket bound to 127.0.0.1 reads ::ffff:127.0.0.1
    return address.is_loopback


def probe_run(model, dataset, config_file_list=None, config_dict=None, saved=True, callback_fn=None):  # type: ignore[no-untyped-def]
    """A stand-in for ``run_recbole_lea`` (``run_fn_ref``), run by a trial inside a Ray worker."""
    sockets = listening_sockets(int(os.environ["RLEA_TEST_DRIVER_PID"]))
    Path(os.environ["RLEA_TEST_SOCKETS"]).write_text(json.dumps({"worker_pid": os.getpid(), "sockets": sockets}))
    callback_fn(1, 0.5, {"ndcg@10": 0.5})
    return {
        "best_valid_score": 0.5,
        "best_valid_result": {"ndcg@10": 0.5},
        "test_result": {"ndcg@10": 0.4},
        "config": {},
    }


def test_is_loopback() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::ffff:127.0.0.1") and is_loopback("::1")
    assert not is_loopback("::") and not is_loopback("0.0.0.0") and not is_loopback("192.0.2.2")


def test_local_sweep_listens_on_loopback_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if ray.is_initialized():
        ray.shutdown()  # run_sweep must start its own node
    monkeypatch.chdir(tmp_path)
    data_root = write_tiny(tmp_path / "data")
    out = tmp_path / "sockets.json"
    # a local Ray's processes inherit the driver's environment
    monkeypatch.setenv("RLEA_TEST_DRIVER_PID", str(os.getpid()))
    monkeypatch.setenv("RLEA_TEST_SOCKETS", str(out))
    # a local sweep starts its own node even where RAY_ADDRESS (or a `ray start` left running) names one
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")
    # the trial imports probe_run from this folder
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(p for p in [str(Path(__file__).parent), os.environ.get("PYTHONPATH")] if p)
    )
    params_file = tmp_path / "one.hyper"
    params_file.write_text("hidden_dropout_prob choice [0.1]\n")
    summary = lea_tune.run_sweep(
        model="SASRec",
        dataset="tiny",
        params_file=params_file,
        config_dict=dict(TINY),
        data_path=str(data_root),
        output_dir=tmp_path / "sweep",
        num_cpus=1,
        run_fn_ref="test_tune_loopback:probe_run",
        quiet=True,
    )
    assert summary["n_ok"] == 1, [r["error"] for r in summary["trials"]]
    assert not ray.is_initialized()  # run_sweep shut its own node down
    probe = json.loads(out.read_text())
    sockets = probe["sockets"]
    names = {s["name"] for s in sockets}
    # the node's servers were seen: GCS, raylet, the trial's own worker
    assert "gcs_server" in names and "raylet" in names, names
    assert probe["worker_pid"] in {s["pid"] for s in sockets}
    exposed = [s for s in sockets if not is_loopback(s["ip"])]
    assert not exposed, exposed
