"""Run chunks of sampling work on backend workers: in this process, or as Ray actors.

`generate` and `eval` cut their work into chunks that are pure functions of their inputs
(per-node seeds; see `malt.sampling`), and write each finished chunk atomically. This module
only decides *where* a chunk is computed:

* `workers: 1` (the default): one backend in this process, chunks in order. Ray is never
  imported.
* `workers: N > 1`: N actors on a Ray cluster (a local one, or `backend.ray_address`), each
  holding one backend built by the same `make_backend` (one GPU each, or `worker_cpus`
  threads). Chunks go to whichever actor is free; results come back to this process, which
  calls `on_result` for each in completion order, so files are written in one place and a
  chunk's bytes never depend on where it ran.

An actor that dies (a killed process, a lost node) is restarted by Ray and its chunk is
retried (`MAX_RESTARTS`); the chunk is pure, so the redone result is the one a live actor
would have given, and nothing is written twice: `on_result` runs once per chunk, here.
Finished chunks are on disk before a failure surfaces, so a rerun resumes from them, with
any number of workers.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from malt.backends.base import Backend
from malt.config import BackendConfig
from malt.errors import MaltError

MAX_RESTARTS = 3  # per actor: restarts of a dead worker process, and retries of its chunk


@dataclass(frozen=True)
class Job:
    """One chunk of work: `fn(backend, *args)`, known to the caller by `key`.

    `fn` and `args` travel to the worker by pickling (Ray uses cloudpickle), so they must
    not hold open files, locks or a backend.
    """

    key: Hashable
    fn: Callable[..., Any]
    args: tuple = ()


@dataclass
class WorkerReport:
    """What the workers did: how many ran, chunks computed, restarts seen."""

    workers: int = 1
    chunks: int = 0
    restarts: int = 0

    def summary(self) -> dict[str, int]:
        return {"workers": self.workers, "chunks": self.chunks, "restarts": self.restarts}


def run_jobs(
    cfg: BackendConfig,
    make_backend: Callable[[], Backend],
    jobs: Sequence[Job],
    on_result: Callable[[Hashable, Any], None],
    backend: Backend | None = None,
) -> WorkerReport:
    """Compute every job and hand each result to `on_result(key, result)` in this process.

    `backend`, when given, is used here (in order, whatever `cfg.workers` says) and left
    open; otherwise `make_backend` builds one per worker, and each is closed at the end.
    """
    if not jobs:
        return WorkerReport(workers=0)
    if backend is not None or cfg.workers == 1:
        return _run_here(make_backend, jobs, on_result, backend)
    return _run_on_ray(cfg, make_backend, jobs, on_result)


def _run_here(make_backend: Callable[[], Backend], jobs: Sequence[Job],
              on_result: Callable[[Hashable, Any], None], backend: Backend | None) -> WorkerReport:
    own = backend is None
    backend = backend or make_backend()
    try:
        for job in jobs:
            on_result(job.key, job.fn(backend, *job.args))
    finally:
        if own:
            backend.close()
    return WorkerReport(workers=1, chunks=len(jobs))


class _Worker:
    """A Ray actor holding one backend (built in the actor's own process)."""

    def __init__(self, make_backend: Callable[[], Backend], torch_threads: int | None):
        if torch_threads is not None:
            import torch

            torch.set_num_threads(torch_threads)
        self.backend = make_backend()

    def pid(self) -> int:
        return os.getpid()

    def run(self, job: Job) -> tuple[int, Any]:
        """(this process's id, the job's result)."""
        return os.getpid(), job.fn(self.backend, *job.args)

    def close(self) -> None:
        self.backend.close()


def _import_ray():
    try:
        import ray
    except ImportError:
        raise MaltError("backend.workers > 1 runs its workers on Ray, which is not installed: "
                        "pip install 'malt[ray]' (or set backend.workers: 1)") from None
    return ray


def _connect(ray, cfg: BackendConfig) -> None:
    """Join `cfg.ray_address`, or start a local cluster sized for the workers (once)."""
    if ray.is_initialized():
        return
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                              "logging_level": "WARNING", "configure_logging": True}
    if cfg.ray_address:
        ray.init(address=cfg.ray_address, **kwargs)
    else:
        ray.init(num_cpus=max(os.cpu_count() or 1, int(cfg.workers * cfg.worker_cpus + 0.999)),
                 **kwargs)


def worker_gpus(cfg: BackendConfig) -> float:
    """GPUs each worker asks Ray for: `worker_gpus`, else 0 on CPU and the engine's GPUs else."""
    if cfg.worker_gpus is not None:
        return cfg.worker_gpus
    if cfg.name == "openai" or (cfg.name == "hf" and cfg.device == "cpu"):
        return 0.0
    if cfg.device == "auto" and cfg.name == "hf":
        import torch

        return 1.0 if torch.cuda.is_available() else 0.0
    return float(cfg.tensor_parallel_size if cfg.name == "vllm" else 1)


def _run_on_ray(cfg: BackendConfig, make_backend: Callable[[], Backend], jobs: Sequence[Job],
                on_result: Callable[[Hashable, Any], None]) -> WorkerReport:
    ray = _import_ray()
    _connect(ray, cfg)
    actor = ray.remote(num_cpus=cfg.worker_cpus, num_gpus=worker_gpus(cfg),
                       max_restarts=MAX_RESTARTS, max_task_retries=MAX_RESTARTS)(_Worker)
    count = min(cfg.workers, len(jobs))
    threads = max(1, int(cfg.worker_cpus)) if cfg.name == "hf" else None
    actors = [actor.remote(make_backend, threads) for _ in range(count)]
    report = WorkerReport(workers=count)
    todo = list(jobs)[::-1]  # popped from the end: the caller's order
    running: dict[Any, tuple[int, Job]] = {}

    def submit(slot: int) -> None:
        if todo:
            job = todo.pop()
            running[actors[slot].run.remote(job)] = (slot, job)

    try:
        # Each actor's process ids: its first, then any a restart gave it (in its results).
        try:
            seen = [{pid} for pid in ray.get([a.pid.remote() for a in actors])]
        except ray.exceptions.RayError as e:
            raise MaltError(f"a worker could not build its backend ({_cause(e)})") from None
        for slot in range(count):
            submit(slot)
        while running:
            [ref], _ = ray.wait(list(running), num_returns=1)
            slot, job = running.pop(ref)
            try:
                pid, result = ray.get(ref)
            except ray.exceptions.RayError as e:
                raise MaltError(f"a worker failed on chunk {job.key!r} ({_cause(e)}); "
                                f"finished chunks are saved, rerun to resume") from None
            seen[slot].add(pid)
            on_result(job.key, result)
            report.chunks += 1
            submit(slot)
    finally:
        _stop(ray, actors)
    report.restarts = sum(max(0, len(s) - 1) for s in seen)
    return report


def _stop(ray, actors: Iterable[Any]) -> None:
    """Close each actor's backend (GPU memory, engine processes), then end the actors."""
    closing = [a.close.remote() for a in actors]
    with contextlib.suppress(Exception):  # a dead actor has nothing left to close
        ray.get(closing, timeout=60)
    for a in actors:
        ray.kill(a)


def _cause(e: BaseException) -> str:
    """The worker's own error ("RuntimeError: boom"), not Ray's wrapping of it."""
    cause = getattr(e, "cause", None) or e
    if isinstance(cause, MaltError):
        return str(cause)
    text = str(cause).strip()
    line = text.splitlines()[-1].strip() if text else ""
    if "MaltError: " in line:  # raised while the actor started, and only printed by Ray
        return line.split("MaltError: ", 1)[1]
    return line if line.startswith(type(cause).__name__) else f"{type(cause).__name__}: {line}"
