"""The one place that starts and stops Ray, for sweeps (:mod:`.tune`) and comparisons (:mod:`.compare`).

- Without an address: a new local node whose every server listens on 127.0.0.1 only
  (:func:`start_local_ray`, :func:`recbole_lea.compat.ray_loopback_only`), no dashboard, no usage
  stats, Ray's temp dir under the output dir (:func:`ray_temp_dir`).
- With an address (``auto``, ``host:port``, ``ray://host:10001``): join that cluster; the
  repository goes on the workers' ``PYTHONPATH`` through the runtime env (:func:`join_cluster`).
- :func:`ray_session` does either, and shuts Ray down at the end (only when it started it).
- A task's devices: :func:`device_options` of the GPUs Ray assigned to it.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from recbole_lea.experiments.runner import REPO_ROOT

LOOPBACK = "127.0.0.1"
_MAX_RAY_TMP_LEN = 36  # Ray's socket paths (<tmp>/session_<date>_<pid>/sockets/...) must fit 107
#: environment of every trial and run process: keep the worker's working directory (Ray Tune's
#: default moves it to a per-trial folder under the session dir; RecBole writes ``log/`` relative to it)
TRIAL_ENV = {"RAY_CHDIR_TO_TRIAL_DIR": "0"}


def device_options(gpu_ids: Sequence[Any]) -> dict[str, Any]:
    """RecBole device options from the GPUs Ray assigned to this trial or run.

    Ray already restricts ``CUDA_VISIBLE_DEVICES`` of the worker to ``gpu_ids``; RecBole sets
    ``CUDA_VISIBLE_DEVICES = gpu_id`` again, so ``gpu_id`` must be exactly those ids (never the
    user's ``gpu_id``). No GPU: ``gpu_id = ""``, which RecBole turns into the CPU device.
    """
    if gpu_ids:
        return {"use_gpu": True, "gpu_id": ",".join(str(g) for g in gpu_ids)}
    return {"use_gpu": False, "gpu_id": ""}


def _pythonpath() -> str:
    """The repository first, then the caller's ``PYTHONPATH``."""
    return os.pathsep.join(p for p in [str(REPO_ROOT), os.environ.get("PYTHONPATH", "")] if p)


def ray_temp_dir(output_dir: Path) -> str:
    """Ray's temp dir inside the output dir; through a short /tmp symlink when the real path is
    too long for Ray's unix socket names."""
    real = output_dir / "ray_tmp"
    real.mkdir(parents=True, exist_ok=True)
    if len(str(real)) <= _MAX_RAY_TMP_LEN:
        return str(real)
    digest = hashlib.sha1(str(real).encode()).hexdigest()[:8]
    link = Path("/tmp") / f"rlea_{digest}"
    if link.is_symlink() and os.readlink(link) != str(real):
        link.unlink()
    if not link.exists():
        link.symlink_to(real, target_is_directory=True)
    return str(link)


def start_local_ray(num_cpus: int | None = None, temp_dir: str | None = None, log_to_driver: bool = True) -> str:
    """Start a local Ray node, listening on loopback only, and return its IP.

    Every server of the node (GCS, raylet, object manager, the workers' and the driver's gRPC
    servers) binds to 127.0.0.1 (:func:`recbole_lea.compat.ray_loopback_only`); nothing else on the
    network can reach it. No dashboard, no usage-stats report. The repository goes on the workers'
    ``PYTHONPATH`` and :data:`TRIAL_ENV` into their environment: a local Ray's processes inherit
    the driver's environment at start, with no runtime env, so tasks reuse Ray's prestarted
    workers instead of starting a fresh one each. Raises ``RuntimeError`` (after shutting the node
    down) if Ray started on any other address. Never joins an existing cluster (``--address``
    does that).
    """
    import ray

    from recbole_lea.compat import ray_loopback_only

    env = {
        "RAY_USAGE_STATS_ENABLED": "0",  # it would try the network at start
        "PYTHONPATH": _pythonpath(),
        **TRIAL_ENV,
    }
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        with ray_loopback_only():
            context = ray.init(
                # always a new node: without it ray.init() joins a cluster that `ray start` left
                # running on this machine (<temp dir>/ray_current_cluster) or RAY_ADDRESS names
                address="local",
                num_cpus=num_cpus,
                include_dashboard=False,
                log_to_driver=log_to_driver,
                logging_level=logging.INFO if log_to_driver else logging.WARNING,
                _node_ip_address=LOOPBACK,
                _temp_dir=temp_dir,
            )
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    node_ip = context.address_info["node_ip_address"]
    if not ipaddress.ip_address(node_ip).is_loopback:
        ray.shutdown()
        raise RuntimeError(
            f"Ray started its local node on {node_ip}, not on loopback: this Ray version ignores "
            "recbole_lea.compat.ray_loopback_only, and the experiment would listen on the network. "
            "Install a Ray version from setup.cfg's range."
        )
    return node_ip


def is_loopback_address(address: str) -> bool:
    """``127.0.0.1:6379``, ``localhost:6379``, ``ray://127.0.0.1:10001``: a cluster on this machine's loopback."""
    host = address.split("://", 1)[-1].rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def join_cluster(address: str, quiet: bool = False) -> None:
    """Join the Ray cluster at ``address``; workers on other nodes get the repository on their
    ``PYTHONPATH`` (it must be at the same path there) and :data:`TRIAL_ENV` through the runtime env.
    A cluster on loopback (its nodes started with ``--node-ip-address=127.0.0.1``) is joined as a
    loopback driver too: Ray would otherwise look for its local node under the machine's address."""
    import ray

    from recbole_lea.compat import ray_loopback_only

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    with ray_loopback_only() if is_loopback_address(address) else nullcontext():
        ray.init(
            address=address,
            include_dashboard=False,
            log_to_driver=not quiet,
            logging_level=logging.WARNING if quiet else logging.INFO,
            runtime_env={"env_vars": {"PYTHONPATH": _pythonpath(), **TRIAL_ENV}},
        )


@contextmanager
def ray_session(address: str | None, num_cpus: int | None, output_dir: Path, quiet: bool = False) -> Iterator[bool]:
    """Ray for the length of a block: the cluster at ``address``, or a new loopback-only local
    node with ``num_cpus`` CPUs and its temp dir under ``output_dir``. A Ray the caller already
    started is used as it is and left running; one started here is shut down on the way out,
    also on an exception or Ctrl-C (which ends every task it runs). Yields whether it started Ray."""
    import ray

    if ray.is_initialized():
        yield False
        return
    if address:
        join_cluster(address, quiet)
    else:
        start_local_ray(num_cpus=num_cpus, temp_dir=ray_temp_dir(output_dir), log_to_driver=not quiet)
    try:
        yield True
    finally:
        ray.shutdown()
