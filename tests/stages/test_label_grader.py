"""`malt label` on a big forest grades in a forked process ahead of the labelling one; the
files it writes are those of one process, byte for byte, bad lines included."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import TESTS_DIR
from malt.config import load_config
from malt.errors import MaltError
from malt.io import write_trees
from malt.records import Branching, Problem
from malt.stages import label
from malt.synthetic import synthetic_forest

SRC = TESTS_DIR.parent / "src"


def _forest(run: Path, trees: int) -> None:
    problems = [Problem(id=f"gsm8k-{i:05d}", question=f"Tom has {i} apples and buys 3 more.",
                        answer=str(i + 3), task="gsm8k") for i in range(trees)]
    forest = list(synthetic_forest(problems, Branching(3, 3, 3), seed=0, filler_chars=40))
    write_trees(run / "generate" / "trees-00000.jsonl", forest[: trees // 2])
    write_trees(run / "generate" / "trees-00001.jsonl", forest[trees // 2 :])
    with (run / "generate" / "trees-00001.jsonl").open("a", encoding="utf-8") as f:
        f.write('{"problem": "not a tree"}\n')  # a bad line: counted, named, skipped


def _outputs(run: Path) -> dict[str, bytes]:
    out = {p.name: p.read_bytes() for p in sorted((run / "label").glob("*.jsonl"))}
    summary = json.loads((run / "label" / "summary.json").read_text())
    summary.pop("seconds")
    out["summary.json"] = json.dumps(summary, sort_keys=True).encode()
    out["errors.txt"] = (run / "label" / "errors.txt").read_bytes()
    return {k: v.replace(str(run).encode(), b"RUN") for k, v in out.items()}


def _label(run: Path) -> None:
    with pytest.raises(MaltError, match="1 malformed tree"):
        label.run(load_config(None, [f"run_dir={run}", "task.name=gsm8k"]))


# Run in a fresh interpreter: the grading process is forked only where no other thread runs,
# and a test session has threads of its own (grader pools, Ray).
FORCED = """
import json, sys
from malt.config import load_config
from malt.errors import MaltError
from malt.stages import label
label.GRADER_FROM_BYTES = 0
used = []
grades = label._Grader.grades
def counted(self, ordinal, tree):
    got = grades(self, ordinal, tree)
    used.append(got is not None)
    return got
label._Grader.grades = counted
run = sys.argv[1]
pays = label._grader_pays(label.tree_files(run + "/generate"))
try:
    label.run(load_config(None, ["run_dir=" + run, "task.name=gsm8k"]))
except MaltError as e:
    print(json.dumps({"pays": pays, "trees": len(used), "graded_there": sum(used), "error": str(e)}))
"""


def test_the_grading_process_changes_no_byte(tmp_path, monkeypatch):
    for run in ("one", "two"):
        _forest(tmp_path / run, 600)
    monkeypatch.setattr(label, "GRADER_FROM_BYTES", 1 << 62)  # never
    _label(tmp_path / "one")
    proc = subprocess.run([sys.executable, "-c", FORCED, str(tmp_path / "two")],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(SRC)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "1 malformed tree" in seen["error"]
    if not seen["pays"]:
        pytest.skip("one core or no fork here: the grading process never starts")
    assert _outputs(tmp_path / "two") == _outputs(tmp_path / "one")
    assert seen["trees"] == 600 and seen["graded_there"] > 0  # some grades came from the fork
