"""math-verify in a helper process, so every equivalence check has a hard time bound.

math-verify bounds its own work with `signal.alarm`, which only works in the main thread
(elsewhere it raises) and cannot interrupt a long C-level step such as a huge integer power.
So the comparison runs in a long-lived child process (`python -m malt.tasks.mathverify`):
inside it math-verify's soft timeouts work as designed, and the parent waits at most
`timeout_s` per call; past that it kills the child, answers "not equivalent" and starts a
fresh child on the next call. This holds from any thread. Model text is only ever parsed by
math-verify's LaTeX grammar and its digits-and-operators expression regex; nothing is eval'd.
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO

from malt.errors import MaltError

DEFAULT_TIMEOUT_S = 10.0  # hard bound per comparison, seen from the caller
SOFT_TIMEOUT_S = 2  # math-verify's own per-step bound inside the child
STARTUP_TIMEOUT_S = 120.0  # importing sympy on a busy machine can take a while


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
        request = json.dumps({"pred": pred, "gold": gold, "soft": self.soft_timeout_s}) + "\n"
        with self._lock:
            proc = self._ensure_started()
            try:
                proc.stdin.write(request)
                proc.stdin.flush()
                line = self._lines.get(timeout=self.timeout_s)
            except (OSError, queue.Empty):
                line = None
            reply = _decode(line)
            if reply is None:  # past the deadline, or the child died: start afresh next time
                self._kill()
                self.restarts += 1
                return False
        return bool(reply.get("ok"))

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


_shared: MathVerifier | None = None
_shared_lock = threading.Lock()


def shared_verifier() -> MathVerifier:
    """The process-wide verifier (started on first use, stopped at exit)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = MathVerifier()
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

    reply({"ready": True})
    for line in sys.stdin:
        try:
            req = json.loads(line)
            gold, pred = parsed(req["gold"], req["soft"]), parsed(req["pred"], req["soft"])
            ok = bool(gold and pred and verify(gold, pred, timeout_seconds=req["soft"]))
        except (Exception, TimeoutException):  # noqa: BLE001 - any failure: not shown equal
            ok = False
        reply({"ok": ok})


if __name__ == "__main__":
    _serve()
