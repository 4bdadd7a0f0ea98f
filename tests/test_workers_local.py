"""`backend.workers: 1` runs jobs in this process, in order, and never imports Ray."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import TESTS_DIR
from malt.config import BackendConfig
from malt.errors import MaltError
from malt.workers import Job, run_jobs

SRC = TESTS_DIR.parent / "src"


class Recorder:
    """A stand-in backend that remembers whether it was closed."""

    closed = 0

    def close(self) -> None:
        Recorder.closed += 1


def _square(backend, x: int) -> tuple[str, int]:
    return type(backend).__name__, x * x


def test_one_worker_runs_in_order_here_and_closes_the_backend_it_built():
    got = []
    before = Recorder.closed
    report = run_jobs(BackendConfig(), Recorder, [Job(i, _square, (i,)) for i in range(4)],
                      lambda k, r: got.append((k, r)))
    assert got == [(i, ("Recorder", i * i)) for i in range(4)]
    assert report.summary() == {"workers": 1, "chunks": 4, "restarts": 0}
    assert Recorder.closed == before + 1


def test_a_given_backend_is_used_and_left_open_whatever_workers_says():
    got, backend = [], Recorder()
    before = Recorder.closed
    run_jobs(BackendConfig(workers=4), Recorder, [Job("a", _square, (3,))],
             lambda k, r: got.append(r), backend=backend)
    assert got == [("Recorder", 9)] and Recorder.closed == before


def test_no_jobs_build_no_backend():
    def explode():
        raise AssertionError("built a backend for nothing")

    assert run_jobs(BackendConfig(workers=2), explode, [], lambda k, r: None).chunks == 0


def test_one_worker_never_imports_ray():
    code = ("import sys; from malt.config import BackendConfig; from malt.workers import Job, run_jobs\n"
            "class B:\n    def close(self): pass\n"
            "run_jobs(BackendConfig(), B, [Job(0, lambda b, x: x, (1,))], lambda k, r: None)\n"
            "import malt.stages.generate, malt.stages.eval\n"
            "assert 'ray' not in sys.modules, 'ray was imported'\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={"PYTHONPATH": str(SRC), "PATH": ""}, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.parametrize(("key", "value", "message"), [
    ("workers", 0, "workers: must be at least 1"),
    ("worker_cpus", 0, "worker_cpus: must be a finite number > 0"),
    ("worker_gpus", -1, "worker_gpus: must be a finite number >= 0 or null"),
])
def test_worker_settings_are_checked(key, value, message):
    with pytest.raises(MaltError, match=f"^{message}$"):
        BackendConfig(**{key: value})


def test_several_workers_without_ray_say_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(MaltError, match=r"pip install 'malt\[ray\]' \(or set backend.workers: 1\)"):
        run_jobs(BackendConfig(workers=2), Recorder, [Job(0, _square, (1,))], lambda k, r: None)
