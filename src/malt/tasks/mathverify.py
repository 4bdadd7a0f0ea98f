"""math-verify in helper processes, so every equivalence check has a hard time bound.

math-verify bounds its own work with `signal.alarm`, which only works in the main thread
(elsewhere it raises) and cannot interrupt a long C-level step such as a huge integer power.
So the comparison runs in a long-lived child process (`python -m malt.tasks.mathverify`):
inside it math-verify's soft timeouts work as designed, and the parent waits at most
`timeout_s` per call; past that it kills the child, answers "not equivalent" and starts a
fresh child on the next call. This holds from any thread. Model text is only ever parsed by
math-verify's LaTeX grammar and its digits-and-operators expression regex; nothing is eval'd.

`GraderPool` keeps up to `workers` such children (default: the cores this process may use,
at most `MAX_WORKERS`; `$MALT_GRADER_WORKERS` overrides) and spreads a batch of checks over
them (`equivalent_many`): each child works through its share in order, with a few requests
queued ahead so it never idles waiting on the parent, each check under its own deadline.
Children start on first use and stop at exit; a child whose parent was killed ends on its
own (within `PARENT_POLL_S`, or once a long C-level step returns control to Python).
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

from malt.errors import MaltError

DEFAULT_TIMEOUT_S = 10.0  # hard bound per comparison, seen from the caller
SOFT_TIMEOUT_S = 2  # math-verify's own per-step bound inside the child
STARTUP_TIMEOUT_S = 120.0  # importing sympy on a busy machine can take a while
MAX_WORKERS = 8  # each child holds sympy (~150 MB); more rarely pays on one machine
PARENT_POLL_S = 1.0  # how often a child checks that its parent is still there
PIPELINE = 8  # requests written ahead of a child's replies, so it never waits on the parent
# One check of each common kind, run by a child before it says it is ready.
WARM_UP = [("0.5", "\\frac{1}{2}"), ("(2,1)", "(1,2)"), ("2, 1", "\\{1,2\\}"), ("1.41", "\\sqrt{2}"),
           ("1+x^2", "x^2+1"), ("(1, 2]", "[1,\\infty)"), ("A", "\\text{(A)}"), ("x=5", "5")]


class MathVerifier:
    """A math-verify child process answering "is pred equivalent to gold?" within a deadline."""

    def __init__(self, timeout_s: float = DEFAULT_TIMEOUT_S, soft_timeout_s: int = SOFT_TIMEOUT_S):
        self.timeout_s = timeout_s
        self.soft_timeout_s = soft_timeout_s
        self._proc: subprocess.Popen | None = None
        self._owner_pid = os.getpid()
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._lock = threading.Lock()
        self.restarts = 0  # children killed for running past the deadline or dying

    def equivalent(self, pred: str, gold: str) -> bool:
        """Whether math-verify finds `pred` equal to `gold`; False on timeout or any failure."""
        return self.equivalent_many([(pred, gold)])[0]

    def equivalent_many(self, pairs: Sequence[tuple[str, str]]) -> list[bool]:
        """`equivalent` for each pair in turn, with a few requests queued ahead of the child.

        The child never waits for a round trip through this process; each check still has
        its own deadline, counted from the moment the child could start it (the reply
        before it). A check past its deadline kills the child and counts as not equivalent;
        a fresh child takes the rest.
        """
        verdicts = [False] * len(pairs)
        with self._lock:
            done = 0
            while done < len(pairs):
                proc = self._ensure_started()
                sent, since = done, time.monotonic()
                try:
                    while done < len(pairs):
                        while sent < len(pairs) and sent - done < PIPELINE:
                            pred, gold = pairs[sent]
                            proc.stdin.write(json.dumps(
                                {"pred": pred, "gold": gold, "soft": self.soft_timeout_s}) + "\n")
                            sent += 1
                        proc.stdin.flush()
                        wait = self.timeout_s - (time.monotonic() - since)
                        reply = _decode(self._lines.get(timeout=max(wait, 0.0)))
                        if reply is None:  # the child died
                            raise queue.Empty
                        verdicts[done], done, since = bool(reply.get("ok")), done + 1, time.monotonic()
                except (OSError, queue.Empty):  # past the deadline, or dead: start afresh
                    self._kill()
                    self.restarts += 1
                    done += 1  # that check stays False
        return verdicts

    @property
    def pid(self) -> int | None:
        """The running child's process id, or None."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def start(self) -> None:
        """Start the child now, if it is not running (it otherwise starts on first use)."""
        with self._lock:
            self._ensure_started()

    def close(self) -> None:
        """Stop the child process (a later call starts a new one)."""
        with self._lock:
            self._kill()

    def _ensure_started(self) -> subprocess.Popen:
        if self._owner_pid != os.getpid():
            # A forked copy must not share the parent's pipes: forget its helper, start ours.
            self._proc, self._owner_pid = None, os.getpid()
        if self._proc is not None and self._proc.poll() is None:
            return self._proc
        self._kill()
        env = dict(os.environ)
        # The child imports this very package, wherever it was imported from.
        src = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "malt.tasks.mathverify"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, encoding="utf-8", env=env,
        )
        self._lines = queue.Queue()
        threading.Thread(target=_pump, args=(self._proc.stdout, self._lines), daemon=True).start()
        try:
            ready = self._lines.get(timeout=STARTUP_TIMEOUT_S)
        except queue.Empty:
            ready = None
        if (_decode(ready) or {}).get("ready") is not True:
            self._kill()
            raise MaltError("could not start the math-verify grader (is `math-verify` installed?)")
        return self._proc

    def _kill(self) -> None:
        if self._proc is not None and self._owner_pid == os.getpid():
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc.wait()
            for stream in (self._proc.stdin, self._proc.stdout):
                if stream:
                    stream.close()
            self._proc = None


def _decode(line: str | None) -> dict | None:
    try:
        reply = json.loads(line) if line else None
    except json.JSONDecodeError:
        return None
    return reply if isinstance(reply, dict) else None


def _pump(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    """Forward the child's reply lines; None marks its end."""
    try:
        for line in stream:
            lines.put(line)
    except (OSError, ValueError):
        pass
    lines.put(None)


def default_workers() -> int:
    """Grader processes to use: $MALT_GRADER_WORKERS, else this process's cores (at most 8)."""
    env = os.environ.get("MALT_GRADER_WORKERS", "").strip()
    if env:
        if not env.isdigit() or int(env) < 1:
            raise MaltError(f"MALT_GRADER_WORKERS must be a whole number >= 1, got {env!r}")
        return int(env)
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_WORKERS))


class GraderPool:
    """Up to `workers` math-verify children: one check from any thread, or a batch at once."""

    def __init__(self, workers: int | None = None, timeout_s: float = DEFAULT_TIMEOUT_S):
        self.workers = default_workers() if workers is None else workers
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        self.timeout_s = timeout_s
        self._setup()

    def _setup(self) -> None:
        self._owner_pid = os.getpid()
        self._verifiers = [MathVerifier(self.timeout_s) for _ in range(self.workers)]
        # Last in, first out: single checks keep reusing one started child.
        self._idle: queue.LifoQueue[MathVerifier] = queue.LifoQueue()
        for verifier in reversed(self._verifiers):
            self._idle.put(verifier)

    @property
    def restarts(self) -> int:
        """Children killed for running past the deadline or dying, over all workers."""
        return sum(v.restarts for v in self._verifiers)

    @property
    def pids(self) -> list[int]:
        """Process ids of the running children."""
        return [pid for v in self._verifiers if (pid := v.pid) is not None]

    def equivalent(self, pred: str, gold: str) -> bool:
        """`MathVerifier.equivalent` on whichever child is free."""
        verifier = self._borrow()
        try:
            return verifier.equivalent(pred, gold)
        finally:
            self._idle.put(verifier)

    def equivalent_many(self, pairs: Sequence[tuple[str, str]]) -> list[bool]:
        """Verdicts for all (pred, gold) pairs, in order, with up to `workers` checks at a time.

        A gold answer's checks stay together where the batch allows, so its child parses it
        once; each check has the same hard time bound as a single one.
        """
        pairs = list(pairs)
        verdicts = [False] * len(pairs)
        chunks = _chunks_by_gold(pairs, self.workers)
        todo: queue.SimpleQueue[list[int]] = queue.SimpleQueue()
        for chunk in chunks:
            todo.put(chunk)
        def drain() -> None:
            verifier = self._borrow()
            try:
                while True:
                    try:
                        chunk = todo.get_nowait()
                    except queue.Empty:
                        return
                    for i, ok in zip(chunk, verifier.equivalent_many([pairs[i] for i in chunk]),
                                     strict=True):
                        verdicts[i] = ok
            finally:
                self._idle.put(verifier)

        _in_threads([drain] * min(self.workers, len(chunks)))
        return verdicts

    def start(self) -> None:
        """Start every child now (they otherwise start on first use), in parallel."""
        self._own()
        _in_threads([v.start for v in self._verifiers])

    def close(self) -> None:
        """Stop every child (later calls start new ones)."""
        for verifier in self._verifiers:
            verifier.close()

    def _borrow(self) -> MathVerifier:
        self._own()
        return self._idle.get()

    def _own(self) -> None:
        if self._owner_pid != os.getpid():
            # A forked copy: the parent's children and borrow state are not ours.
            self._setup()


def _in_threads(jobs: list[Callable[[], None]]) -> None:
    """Run each job in its own thread and wait for all; the first error is raised here."""
    errors: list[BaseException] = []

    def run(job: Callable[[], None]) -> None:
        try:
            job()
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
            errors.append(e)

    threads = [threading.Thread(target=run, args=(job,), daemon=True) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def _chunks_by_gold(pairs: list[tuple[str, str]], workers: int) -> list[list[int]]:
    """Indices of `pairs` grouped by gold answer, cut so `workers` children share the work.

    >>> _chunks_by_gold([("1", "a"), ("2", "b"), ("3", "a")], 2)
    [[0], [2], [1]]
    >>> _chunks_by_gold([("1", "a"), ("2", "b"), ("3", "a")], 1)
    [[0, 2], [1]]
    """
    by_gold: dict[str, list[int]] = {}
    for i, (_, gold) in enumerate(pairs):
        by_gold.setdefault(gold, []).append(i)
    # Several chunks per worker, so a slow last chunk holds up little.
    size = max(1, -(-len(pairs) // (workers * 8))) if workers > 1 else len(pairs) or 1
    chunks = [idx[k : k + size] for idx in by_gold.values() for k in range(0, len(idx), size)]
    return sorted(chunks, key=len, reverse=True)  # largest first: they balance best early


_shared: GraderPool | None = None
_shared_lock = threading.Lock()


def shared_pool() -> GraderPool:
    """The process-wide grader pool (`default_workers()`, children started on use, stopped at exit)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = GraderPool()
            atexit.register(_shared.close)
        return _shared


# ---- the child process -------------------------------------------------------------------


def _serve() -> None:
    """Answer one JSON request per stdin line with one JSON reply line."""
    import logging
    from functools import lru_cache

    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify
    from math_verify.errors import TimeoutException

    logging.getLogger("math_verify").setLevel(logging.ERROR)  # timeouts are expected
    # Replies get a private copy of stdout; anything else printing (Python or C) goes to stderr.
    out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    config = (LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig())

    @lru_cache(maxsize=4096)  # gold answers repeat for every sample of the same problem
    def parsed(answer: str, soft: int) -> list:
        return parse("\\boxed{" + answer + "}", config, parsing_timeout=soft)

    def reply(obj: dict) -> None:
        out.write(json.dumps(obj) + "\n")
        out.flush()

    parent = os.getppid()
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()

    def check(pred: str, gold: str, soft: int) -> bool:
        try:
            gold_p, pred_p = parsed(gold, soft), parsed(pred, soft)
            return bool(gold_p and pred_p and verify(gold_p, pred_p, timeout_seconds=soft))
        except (Exception, TimeoutException):  # noqa: BLE001 - any failure: not shown equal
            return False

    # The LaTeX grammar and SymPy's lazy parts load on first use: pay that before "ready"
    # (startup), not inside the first checks' deadlines.
    for pred, gold in WARM_UP:
        check(pred, gold, SOFT_TIMEOUT_S)
    parsed.cache_clear()
    reply({"ready": True})
    for line in sys.stdin:
        try:
            req = json.loads(line)
            ok = check(req["pred"], req["gold"], req["soft"])
        except (ValueError, KeyError, TypeError):
            ok = False
        reply({"ok": ok})


def _exit_with_parent(parent: int) -> None:
    """End this child once its parent is gone, even in the middle of a long check."""
    while True:
        time.sleep(PARENT_POLL_S)
        if os.getppid() != parent:
            os._exit(0)


if __name__ == "__main__":
    _serve()
