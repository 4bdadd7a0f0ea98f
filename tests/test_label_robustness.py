"""`malt label` survives bad input: a bad tree is named, counted and skipped, never fatal.

(Belongs beside tests/stages/test_label.py; kept here while that folder is being edited.)
"""

from __future__ import annotations

import json

import pytest

from malt.config import load_config
from malt.errors import MaltError
from malt.io import write_trees
from malt.records import Branching, Problem
from malt.stages import label
from malt.synthetic import synthetic_forest

PROBLEMS = [
    Problem(id=f"gsm8k-t{i}", question=f"What is {i} + 3?", answer=str(i + 3), task="gsm8k")
    for i in range(6)
]


def test_bad_trees_are_named_and_every_other_tree_is_labelled(tmp_path):
    shard = tmp_path / "generate" / "trees-00000.jsonl"
    write_trees(shard, synthetic_forest(PROBLEMS, Branching(2, 2, 2), seed=0))
    lines = shard.read_bytes().splitlines(keepends=True)
    lines[1] = lines[1].replace(b"Refined attempt 0.", b"Refined \xff attempt 0.", 1)
    row = json.loads(lines[3])
    row["nodes"][0]["completion"] = 123
    lines[3] = (json.dumps(row) + "\n").encode()
    row = json.loads(lines[4])
    row["nodes"][-1]["completion"] = "Final Answer: " + "9" * 5000
    lines[4] = (json.dumps(row) + "\n").encode()
    shard.write_bytes(b"".join(lines))
    cfg = load_config(None, [f"run_dir={tmp_path}", "task.name=gsm8k"])
    with pytest.raises(MaltError, match=r"2 malformed tree\(s\) skipped.*the other 4 trees"):
        label.run(cfg)
    out = tmp_path / "label"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["trees"] == 4 and summary["malformed_trees"] == 2
    assert summary["answers"]["unparseable"] == 1
    assert sum(summary["answers"].values()) == 4 * (2 + 8)
    errors = (out / "errors.txt").read_text().splitlines()
    assert errors[0].startswith(f"{shard}:2: not valid UTF-8")
    assert errors[1].startswith(f"{shard}:4: ") and "'completion' is not a string" in errors[1]
    assert len((out / "labels.jsonl").read_text().splitlines()) == 4
