"""The math-verify grader processes: a hard time bound per check, the pool, clean-up.

Each test starts its own children (about a second each, for importing sympy).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from malt.errors import MaltError
from malt.tasks.mathverify import GraderPool, MathVerifier, default_workers

SLOW = "(10^{100})!"  # math-verify cannot interrupt this C-level step: only a kill stops it
PAIRS = [
    ("\\frac{1}{2}", "0.5", True),
    ("2\\sqrt{2}", "\\sqrt{8}", True),
    ("\\{3,2,1\\}", "\\{1,2,3\\}", True),
    ("(2,1)", "(1,2)", False),
    ("1, -3", "-3, 1", True),
    ("x^2+2x+1", "(x+1)^2", True),
    ("\\pi", "3", False),
    ("5", "4", False),
]


def _gone(pid: int, within_s: float) -> bool:
    """Whether process `pid` has ended (or is a zombie) within `within_s` seconds."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split(")")[-1].split()[0] == "Z":
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.1)
    return False


def test_hard_time_bound_from_a_worker_thread() -> None:
    # math-verify's own timeouts use signal.alarm, which fails outside the main thread;
    # the helper process must still bound the call and recover for the next one.
    verifier = MathVerifier(timeout_s=1.0)
    try:
        assert verifier.equivalent("1", "1.0")  # start the helper outside the timed part
        result: dict = {}

        def work() -> None:
            t0 = time.perf_counter()
            result["slow"] = verifier.equivalent(SLOW, "1")
            result["seconds"] = time.perf_counter() - t0
            result["after"] = verifier.equivalent("\\frac{2}{4}", "0.5")

        thread = threading.Thread(target=work)
        thread.start()
        thread.join(timeout=60)
        assert result["slow"] is False and result["seconds"] < 3.0
        assert result["after"] is True and verifier.restarts == 1
    finally:
        verifier.close()


def test_a_hung_check_in_the_middle_of_a_queue() -> None:
    # Requests are queued ahead of the child: the ones behind a hung check go to a fresh
    # child, and each check has its own deadline (not one for the whole queue).
    verifier = MathVerifier(timeout_s=1.0)
    try:
        pairs = [(p, g) for p, g, _ in PAIRS[:3]] + [(SLOW, "1")] + [(p, g) for p, g, _ in PAIRS]
        assert verifier.equivalent_many(pairs) == (
            [ok for _, _, ok in PAIRS[:3]] + [False] + [ok for _, _, ok in PAIRS])
        assert verifier.restarts == 1
    finally:
        verifier.close()


def test_pool_batch_matches_single_checks_in_order() -> None:
    pool = GraderPool(workers=2)
    try:
        pairs = [(p, g) for p, g, _ in PAIRS] * 3  # repeated golds: each stays on one child
        assert pool.equivalent_many(pairs) == [ok for _, _, ok in PAIRS] * 3
        assert len(pool.pids) == 2  # the batch used both children
        assert [pool.equivalent(p, g) for p, g, _ in PAIRS] == [ok for _, _, ok in PAIRS]
        assert pool.equivalent_many([]) == [] and pool.restarts == 0
    finally:
        pool.close()
    assert pool.pids == []


def test_single_checks_reuse_one_child() -> None:
    pool = GraderPool(workers=2)
    try:
        assert pool.equivalent("1/2", "0.5") and pool.equivalent("3", "3.0")
        assert len(pool.pids) == 1
    finally:
        pool.close()


def test_a_hung_check_is_killed_and_counts_as_not_equivalent() -> None:
    pool = GraderPool(workers=2, timeout_s=1.0)
    try:
        pool.start()
        pairs = [(SLOW, "1")] + [(p, g) for p, g, _ in PAIRS]
        t0 = time.perf_counter()
        verdicts = pool.equivalent_many(pairs)
        seconds = time.perf_counter() - t0
        assert verdicts == [False] + [ok for _, _, ok in PAIRS]
        assert pool.restarts == 1
        # The other child went on meanwhile: the batch took about one time bound, not more.
        assert seconds < 1.0 + 3.0
        assert pool.equivalent_many([("0.5", "\\frac12")]) == [True]  # a fresh child
    finally:
        pool.close()


def test_checks_from_many_threads_share_the_pool() -> None:
    pool = GraderPool(workers=2)
    results: dict[int, bool] = {}

    def work(i: int) -> None:
        pred, gold, _ = PAIRS[i % len(PAIRS)]
        results[i] = pool.equivalent(pred, gold)

    try:
        threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert [results[i] for i in range(16)] == [PAIRS[i % len(PAIRS)][2] for i in range(16)]
        assert 1 <= len(pool.pids) <= 2
    finally:
        pool.close()


_CHILD_SCRIPT = """
import sys, threading, time
from malt.tasks.mathverify import GraderPool, shared_pool
pool = shared_pool() if sys.argv[1] == "shared" else GraderPool(workers=2, timeout_s=600)
pool.start()
assert pool.equivalent_many([("1/2", "0.5"), ("1", "2")]) == [True, False]
if sys.argv[1] == "killed":  # both children busy with a check nothing interrupts
    threading.Thread(target=pool.equivalent_many, args=([(SLOW, "1"), (SLOW, "2")],)).start()
    time.sleep(1.0)
print(" ".join(map(str, pool.pids)), flush=True)
time.sleep(60 if sys.argv[1] == "killed" else 0)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("how", ["shared", "killed"])
def test_children_end_with_their_parent(how: str) -> None:
    # A normal exit closes the shared pool (atexit); the children of a killed parent, busy
    # with a check that never ends, notice on their own within a second or two.
    env = {**os.environ, "MALT_GRADER_WORKERS": "2"}
    script = f"SLOW = {SLOW!r}\n" + _CHILD_SCRIPT
    proc = subprocess.Popen([sys.executable, "-c", script, how], stdout=subprocess.PIPE,
                            text=True, env=env)
    try:
        pids = [int(p) for p in proc.stdout.readline().split()]
        assert len(pids) == 2
        if how == "killed":
            proc.kill()
        proc.wait(timeout=60)
        assert all(_gone(pid, within_s=10.0) for pid in pids)
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


def test_default_workers(monkeypatch) -> None:
    monkeypatch.delenv("MALT_GRADER_WORKERS", raising=False)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert default_workers() == max(1, min(cores, 8))
    monkeypatch.setenv("MALT_GRADER_WORKERS", "3")
    assert default_workers() == 3 and GraderPool().workers == 3
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv("MALT_GRADER_WORKERS", bad)
        with pytest.raises(MaltError, match="MALT_GRADER_WORKERS must be a whole number"):
            default_workers()
    with pytest.raises(ValueError, match="workers must be >= 1"):
        GraderPool(workers=0)


def test_helper_that_cannot_start_is_one_clear_error(monkeypatch) -> None:
    monkeypatch.setattr("sys.executable", "false")  # a program that exits at once
    with pytest.raises(MaltError, match="could not start the math-verify grader"):
        MathVerifier().equivalent("1", "2")
    with pytest.raises(MaltError, match="could not start the math-verify grader"):
        GraderPool(workers=2).equivalent_many([("1", "2"), ("3", "4")])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_process_gets_its_own_helper() -> None:
    verifier = MathVerifier()
    pool = GraderPool(workers=1)
    try:
        assert verifier.equivalent("0.5", "\\frac12") and pool.equivalent("1", "1.0")
        pid = os.fork()
        if pid == 0:  # child: must not talk over the parent's pipes
            ok = verifier.equivalent("\\frac{2}{4}", "0.5") and pool.equivalent_many(
                [("2", "2.0")]) == [True]
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert verifier.equivalent("2\\sqrt{2}", "\\sqrt{8}") and verifier.restarts == 0
        assert pool.equivalent("3", "3") and pool.restarts == 0
    finally:
        verifier.close()
        pool.close()


def test_doctests() -> None:
    import doctest

    import malt.tasks.mathverify

    result = doctest.testmod(malt.tasks.mathverify)
    assert result.failed == 0 and result.attempted > 0
