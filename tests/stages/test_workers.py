"""`backend.workers`: generate and eval on a local Ray cluster of 2 CPU workers give the same
bytes as one worker, resume across worker counts, and survive a SIGKILLed worker."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import arith_splits
from malt.config import BackendConfig, load_config
from malt.errors import MaltError
from malt.runspec import CHECKS
from malt.stages import eval as eval_stage
from malt.stages import generate
from malt.workers import Job, run_jobs

ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'malt[ray]'")

pytestmark = pytest.mark.slow
ROLES = ("generator", "verifier", "refiner")


def overrides(root: Path, run: str, workers: int, limit: int = 6) -> list[str]:
    return [
        f"run_dir={root / run}", "task.name=arith", f"task.train={root / 'train.jsonl'}",
        f"task.test={root / 'test.jsonl'}", f"task.limit_train={limit}", "models.base=embedded",
        "backend.device=cpu", "backend.dtype=float32", f"backend.workers={workers}",
        "generate.chunk_size=1",
        *[f"generate.{r}.{k}" for r in ROLES for k in ("n=2", "temperature=0.7", "max_new_tokens=48")],
        "eval.seeds=[0,1]", "eval.subset_size=3", "eval.chunk_size=2", "eval.chains=2",
        "eval.temperature=0.7", "eval.max_new_tokens=48", "eval.methods=[sa,sa_mv,ma_mv]",
    ]


def config(root: Path, run: str, workers: int, limit: int = 6):
    return load_config(None, overrides(root, run, workers, limit), checks=CHECKS)


def files(run: Path, stage: str) -> dict[str, bytes]:
    """Every trees shard, eval chunk and record file of a stage, by path inside the stage."""
    out = run / stage
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*.jsonl"))}


@pytest.fixture(scope="module")
def cluster():
    """One local Ray cluster for the module (2 CPUs), shut down after it."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return arith_splits(tmp_path_factory.mktemp("workers"))


@pytest.fixture(scope="module")
def one_worker(data) -> Path:
    """The reference: generate and eval in this process."""
    cfg = config(data, "one", workers=1)
    generate.run(cfg, progress=False)
    eval_stage.run(cfg)
    return data / "one"


def test_two_ray_workers_write_the_same_bytes_as_one(cluster, data, one_worker):
    cfg = config(data, "two", workers=2)
    summary = generate.run(cfg, progress=False)
    assert summary["workers"] == {"workers": 2, "chunks": 6, "restarts": 0}
    assert files(data / "two", "generate") == files(one_worker, "generate")
    assert len(files(one_worker, "generate")) == 6
    eval_stage.run(cfg)
    two, one = files(data / "two", "eval"), files(one_worker, "eval")
    # 2 seeds x 2 chunks of chains, and 3 methods x 2 seeds of records.
    assert len(one) == 4 + 6 and two == one
    results = [(r / "eval" / "results.json").read_text() for r in (data / "two", one_worker)]
    assert results[0] == results[1]


def test_a_run_resumes_across_worker_counts(cluster, data, one_worker):
    generate.run(config(data, "grown", workers=2, limit=3), progress=False)
    assert len(files(data / "grown", "generate")) == 3
    summary = generate.run(config(data, "grown", workers=1), progress=False)
    assert summary["generated_now"]["generations"] == 3 * (2 + 4 + 8)  # only the 3 new trees
    assert files(data / "grown", "generate") == files(one_worker, "generate")


def _worker_pids() -> list[int]:
    import psutil

    return [p.pid for p in psutil.process_iter(["name", "cmdline"])
            if (p.info["name"] or "").startswith("ray::_Worker")
            or " ".join(p.info["cmdline"] or []).startswith("ray::_Worker")]


def test_a_sigkilled_worker_is_restarted_and_nothing_is_lost_or_duplicated(cluster, data,
                                                                            one_worker):
    cfg = config(data, "killed", workers=2)
    out = data / "killed" / "generate"
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(generate.run(cfg, progress=False)))
    thread.start()
    deadline, victim = time.time() + 240, None
    while thread.is_alive() and time.time() < deadline:
        pids = _worker_pids()
        if len(pids) == 2 and len(list(out.glob("trees-*.jsonl"))) >= 1:
            victim = pids[0]
            os.kill(victim, signal.SIGKILL)
            break
        time.sleep(0.05)
    thread.join(timeout=300)
    assert victim is not None, "the run ended before a worker could be killed"
    assert result["workers"]["chunks"] == 6 and result["workers"]["restarts"] >= 1
    assert result["trees"] == 6
    assert files(data / "killed", "generate") == files(one_worker, "generate")


# Ray imports a job's function by module name in the worker; this test module is not
# importable there, so its functions travel by value.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _double(backend, x: int) -> int:
    return 2 * x


def _fail(backend, x: int) -> int:
    raise RuntimeError("boom")


class _NoBackend:
    def close(self) -> None:
        pass


def test_results_come_back_once_each_in_this_process(cluster):
    got: list[tuple[int, int]] = []
    cfg = BackendConfig(device="cpu", workers=2)
    report = run_jobs(cfg, _NoBackend, [Job(i, _double, (i,)) for i in range(5)],
                      lambda k, r: got.append((k, r)))
    assert sorted(got) == [(i, 2 * i) for i in range(5)] and report.chunks == 5


def test_a_failing_job_is_named_in_one_sentence(cluster):
    got: list[int] = []
    cfg = BackendConfig(device="cpu", workers=2)
    jobs = [Job(0, _double, (1,)), Job("chunk-7", _fail, (0,))]
    with pytest.raises(MaltError, match=r"^a worker failed on chunk 'chunk-7' \(RuntimeError: "
                                        r"boom\); finished chunks are saved, rerun to resume$"):
        run_jobs(cfg, _NoBackend, jobs, lambda k, r: got.append(k))


def _unloadable() -> _NoBackend:
    raise MaltError("models/nope: could not load the model or tokenizer")


def test_a_backend_that_cannot_be_built_is_one_sentence(cluster):
    cfg = BackendConfig(device="cpu", workers=2)
    with pytest.raises(MaltError, match=r"^a worker could not build its backend \(models/nope: "
                                        r"could not load the model or tokenizer\)$"):
        run_jobs(cfg, _unloadable, [Job(0, _double, (1,))], lambda k, r: None)
