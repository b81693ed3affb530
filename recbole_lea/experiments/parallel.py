"""Comparison runs at once on Ray (a local loopback-only node or a cluster), and their progress.

The driver (:func:`run_jobs`) keeps at most ``cap`` tasks in flight:

- each distinct LE configuration is built once, as its own task (one GPU share where runs get
  one), before the runs that read it; those runs are submitted when it is done, runs that read no
  LE start at once;
- a run is claimed from the :class:`RecordStore` just before it is submitted (the store takes the
  run's file lock and reads the record another driver may have written meanwhile; a run whose lock
  another driver holds is tried again later), and its record comes back to the driver, which hands
  it to the store (written atomically, lock released): no record is ever written by a worker, so
  none needs a filesystem shared with the workers;
- a run that raises is a ``failed`` record (``run_one`` catches it); a worker that dies (SIGKILL,
  out of memory) is a ``failed`` record naming that, never retried; the other runs go on;
- Ctrl-C (or any exception) in the driver releases every lock it holds; the caller's
  :func:`~recbole_lea.experiments.ray_runtime.ray_session` then stops Ray and with it every task.

:class:`Progress` writes the progress line (done / running / cached / failed, elapsed, an
estimate of the time left) and one line per finished run with its key metric.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from recbole_lea.experiments.ray_runtime import device_options
from recbole_lea.experiments.runner import RunFn, prepare_le, run_one, to_jsonable

#: seconds between two checks of runs whose lock another driver holds
POLL_S = 1.0
#: seconds between two progress lines while nothing finishes
HEARTBEAT_S = 60.0


@dataclass
class RunJob:
    """One run to compute: what :func:`_run_task` needs, picklable."""

    key: str
    label: str
    seed: int
    model: str
    dataset: str
    files: list[str]
    options: dict[str, Any]
    run_dir: str
    le_key: str | None = None  # the LE build it waits for (None: it reads no LE to build)


class RecordStore(Protocol):
    """Where the driver takes and puts run records (:class:`recbole_lea.experiments.compare`)."""

    def claim(self, job: RunJob) -> tuple[str, dict[str, Any] | None]:
        """``("run", None)``: the run's lock is held, compute it; ``("cached", record)``: another
        driver finished it; ``("busy", None)``: another driver is computing it, ask again later."""
        ...

    def finish(self, job: RunJob, record: dict[str, Any]) -> dict[str, Any]:
        """Write the record of a computed run and release its lock; returns the stored record."""
        ...

    def release_all(self) -> None:
        """Release every lock still held (the driver stops)."""
        ...


# ---------------------------------------------------------------------------------------------
# progress


def key_metric(record: Mapping[str, Any]) -> tuple[str, float | None]:
    """The run's ``valid_metric`` (NDCG@10 by default) on the TEST set, by name."""
    name = str((record.get("config") or {}).get("valid_metric") or "NDCG@10")
    value = (record.get("test_result") or {}).get(name.lower())
    return name, None if value is None else float(value)


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


@dataclass
class Progress:
    """Counts of a comparison's runs and the lines that report them (``out``: None = silent)."""

    total: int
    out: Callable[[str], None] | None = None
    done: int = 0
    running: int = 0
    cached: int = 0
    failed: int = 0
    start: float = field(default_factory=time.perf_counter)
    last_line: float = 0.0

    def line(self) -> str:
        """``runs: 3/12 done, 2 running, 4 cached, 1 failed; 0:02:10 elapsed, ~0:04:20 left``."""
        elapsed = time.perf_counter() - self.start
        computed = self.done + self.failed
        left = self.total - computed - self.cached
        if left == 0:
            estimate = "0:00:00 left"
        elif computed:
            estimate = f"~{_clock(elapsed / computed * left)} left"
        else:
            estimate = "time left known after the first run"
        return (
            f"runs: {self.done + self.cached}/{self.total} done, {self.running} running, {self.cached} cached, "
            f"{self.failed} failed; {_clock(elapsed)} elapsed, {estimate}"
        )

    def say(self, text: str) -> None:
        if self.out is not None:
            self.out(text)
        self.last_line = time.perf_counter()

    def report(self) -> None:
        self.say(self.line())

    def heartbeat(self) -> None:
        """The progress line, when none was written for :data:`HEARTBEAT_S`."""
        if time.perf_counter() - self.last_line >= HEARTBEAT_S:
            self.report()

    def started(self, label: str) -> None:
        self.running += 1
        self.say(f"started {label}")

    def read_back(self, count: int = 1, was_running: bool = False) -> None:
        """``count`` records read back instead of computed (``was_running``: one counted as started)."""
        self.cached += count
        self.running -= int(was_running)

    def finished(self, label: str, record: Mapping[str, Any], was_running: bool = True) -> None:
        """One line for the finished run (its key metric, or its error), then the progress line."""
        self.running -= int(was_running)
        if record.get("status") == "ok":
            self.done += 1
            name, value = key_metric(record)
            shown = "n/a" if value is None else f"{value:.4f}"
            self.say(f"finished {label}: test {name} {shown} ({float(record.get('wall_time_s') or 0):.1f} s)")
        else:
            self.failed += 1
            self.say(f"FAILED {label}: {record.get('error')}")
        self.report()


# ---------------------------------------------------------------------------------------------
# the tasks (run inside Ray workers)


def failed_record(job: RunJob, error: str) -> dict[str, Any]:
    """The record of a run that never returned one (its worker died, its LE build failed)."""
    return {
        "model": job.model,
        "dataset": job.dataset,
        "config_file_list": list(job.files),
        "config_dict": dict(job.options),
        "run_dir": job.run_dir,
        "status": "failed",
        "error": error.strip().splitlines()[0][:500] if error.strip() else "unknown error",
        "traceback": error,
        "valid_curve": [],
        "wall_time_s": None,
    }


def _run_task(job: RunJob, threads: int | None, run_fn: RunFn | None) -> dict[str, Any]:
    """One run in a Ray worker, on the GPUs Ray gave it (none: CPU); returns its record."""
    import ray

    options = {**job.options, **device_options(ray.get_gpu_ids())}
    le_dir = options.get("le_dir")
    if le_dir and not Path(str(le_dir)).is_dir():
        import socket

        return failed_record(
            job,
            f"LE folder {le_dir} is not on node {socket.gethostname()}: put the LE folders on a filesystem every "
            "node shares, or copy them to the same path on every node (docs/experiments.md)",
        )
    record = run_one(
        job.model, job.dataset, job.files, options, run_dir=job.run_dir, run_fn=run_fn, torch_threads=threads
    )
    record["ray_node"] = ray.get_runtime_context().get_node_id()
    return record


def _warm_task() -> None:
    """Import what every run imports (torch, RecBole, our models, matplotlib), once per worker."""
    import torch  # noqa: F401

    import recbole_lea.experiments.plots  # noqa: F401
    from recbole_lea.experiments.runner import resolve_run_fn

    resolve_run_fn()


def _resources(threads: int | None, gpus_per_run: float) -> dict[str, Any]:
    """Ray options of every task of a comparison: its CPUs and GPU share, never retried."""
    return {"num_cpus": max(1, int(threads or 1)), "num_gpus": gpus_per_run, "max_retries": 0}


def warm_up(count: int, threads: int | None, gpus_per_run: float = 0.0) -> list[Any]:
    """Start ``count`` tasks that import the run code, shaped like the runs (so the same workers
    take the runs later), while the driver still plans; returns their refs (nothing waits on them)."""
    import ray

    remote = ray.remote(_warm_task).options(**_resources(threads, gpus_per_run))
    return [remote.remote() for _ in range(count)]


def _build_task(resolved: Any, threads: int | None) -> dict[str, Any]:
    """Build (or reuse) one LE in a Ray worker; returns the options that make runs read it."""
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    return prepare_le(resolved)


# ---------------------------------------------------------------------------------------------
# the driver


@dataclass
class _Schedule:
    """What is waiting, building and in flight."""

    waiting: list[RunJob]
    builds: dict[str, Any]  # le key -> resolved run whose LE it is
    built: dict[str, dict[str, Any]] = field(default_factory=dict)  # le key -> options, or {"error": ...}
    started: set[str] = field(default_factory=set)  # le keys submitted
    in_flight: dict[Any, tuple[str, Any]] = field(default_factory=dict)  # ref -> ("build", le key) | ("run", job)
    results: dict[str, dict[str, Any]] = field(default_factory=dict)  # run key -> record

    def open(self) -> bool:
        return bool(self.waiting or self.in_flight)


def run_jobs(
    jobs: Sequence[RunJob],
    builds: Mapping[str, Any],
    store: RecordStore,
    progress: Progress,
    *,
    cap: int,
    threads: int | None,
    gpus_per_run: float = 0.0,
    run_fn: RunFn | None = None,
) -> dict[str, dict[str, Any]]:
    """Run ``jobs`` on the running Ray, at most ``cap`` tasks (LE builds included) at once;
    ``builds``: the LE of each ``le_key``, built once before its runs. Returns the records by run key."""
    import ray

    resources = _resources(threads, gpus_per_run)
    remote_run = ray.remote(_run_task).options(**resources)
    remote_build = ray.remote(_build_task).options(**resources)
    state = _Schedule(waiting=list(jobs), builds=dict(builds))
    try:
        while state.open():
            _submit_builds(state, remote_build, cap, threads)
            _submit_runs(state, store, progress, remote_run, cap, threads, run_fn)
            if not state.in_flight:
                time.sleep(POLL_S)  # every waiting run is another driver's for now
                continue
            ready, _ = ray.wait(list(state.in_flight), num_returns=1, timeout=POLL_S)
            for ref in ready:
                _collect(state, store, progress, ref)
            progress.heartbeat()
    finally:
        store.release_all()
    return state.results


def _submit_builds(state: _Schedule, remote_build: Any, cap: int, threads: int | None) -> None:
    """Start the LE builds that waiting runs read, while there is room."""
    needed = {job.le_key for job in state.waiting if job.le_key is not None}
    for le_key in sorted(needed - state.started):
        if len(state.in_flight) >= cap:
            return
        state.started.add(le_key)
        state.in_flight[remote_build.remote(state.builds[le_key], threads)] = ("build", le_key)


def _submit_runs(
    state: _Schedule,
    store: RecordStore,
    progress: Progress,
    remote_run: Any,
    cap: int,
    threads: int | None,
    run_fn: RunFn | None,
) -> None:
    """Start the waiting runs whose LE is ready, while there is room, in their order."""
    for job in list(state.waiting):
        if len(state.in_flight) >= cap:
            return
        if job.le_key is not None and job.le_key not in state.built:
            continue  # its LE is still building
        le_options = state.built.get(job.le_key, {}) if job.le_key is not None else {}
        verdict, record = store.claim(job)
        if verdict == "busy":
            continue
        state.waiting.remove(job)
        if verdict == "cached":
            assert record is not None
            state.results[job.key] = record
            progress.read_back()
            progress.report()
        elif "error" in le_options:
            state.results[job.key] = store.finish(job, failed_record(job, f"LE build failed: {le_options['error']}"))
            progress.finished(job.label, state.results[job.key], was_running=False)
        else:
            job.options = {**job.options, **le_options}
            state.in_flight[remote_run.remote(job, threads, run_fn)] = ("run", job)
            progress.started(job.label)


def _collect(state: _Schedule, store: RecordStore, progress: Progress, ref: Any) -> None:
    """Take one finished task: an LE's options, or a run's record (a dead worker's: failed)."""
    import ray

    kind, what = state.in_flight.pop(ref)
    try:
        value = ray.get(ref)
        error = None
    except ray.exceptions.RayError as err:
        cause = getattr(err, "cause", None)  # what the task itself raised
        value, error = None, f"{type(cause or err).__name__}: {cause or err}"
    if kind == "build":
        state.built[what] = dict(value) if error is None else {"error": error}
        if error is not None:
            progress.say(f"LE build failed: {error.splitlines()[0]}")
        return
    record = to_jsonable(value) if error is None else failed_record(what, error)
    state.results[what.key] = store.finish(what, record)
    progress.finished(what.label, state.results[what.key])
