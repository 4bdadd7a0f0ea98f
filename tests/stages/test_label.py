"""`malt label` end to end on synthetic GSM8K forests: files, formats, errors, determinism."""

from __future__ import annotations

import json

import datasets
import pytest

from malt.cli import main as cli_main
from malt.config import load_config
from malt.errors import MaltError
from malt.io import write_trees
from malt.records import Branching, Problem
from malt.stages import label
from malt.synthetic import synthetic_forest

PROBLEMS = [
    Problem(id=f"gsm8k-t{i}", question=f"What is {i} + 3?", answer=str(i + 3), task="gsm8k")
    for i in range(24)
]


@pytest.fixture
def run_dir(tmp_path):
    trees = list(synthetic_forest(PROBLEMS, Branching(3, 3, 3), seed=0))
    write_trees(tmp_path / "generate" / "trees-00000.jsonl", trees[:12])
    write_trees(tmp_path / "generate" / "trees-00001.jsonl", trees[12:])
    return tmp_path


def cfg_for(run_dir, *overrides):
    return load_config(None, [f"run_dir={run_dir}", "task.name=gsm8k", *overrides])


def test_label_writes_trl_datasets_matching_the_summary(run_dir):
    summary = label.run(cfg_for(run_dir))
    out = run_dir / "label"
    assert summary["trees"] == 24 and summary["leaves"] == 24 * 27
    for role in ("generator", "verifier", "refiner"):
        ds = datasets.load_dataset("json", data_files=str(out / f"sft_{role}.jsonl"), split="train")
        assert len(ds) == summary["sft_rows"][role] == summary["positives"][role]
        assert ds.column_names == ["prompt", "completion"]
        assert ds[0]["completion"][0]["role"] == "assistant"
    for role in ("verifier", "refiner"):
        ds = datasets.load_dataset("json", data_files=str(out / f"dpo_{role}.jsonl"), split="train")
        assert len(ds) == summary["dpo_pairs"][role] > 0
        assert ds.column_names == ["prompt", "chosen", "rejected"]
    assert not (out / "dpo_generator.jsonl").exists()
    labels = [json.loads(line) for line in (out / "labels.jsonl").read_text().splitlines()]
    assert len(labels) == 24 and len(labels[0]["nodes"]) == 39
    correct = sum(n["reward"] for row in labels for n in row["nodes"] if "/r" in n["id"])
    assert correct / summary["leaves"] == pytest.approx(summary["leaf_accuracy"])
    assert {"config.yaml", "summary.json", "manifest.json"} <= {p.name for p in out.iterdir()}


def test_refiner_sft_rows_are_exactly_the_correct_leaves(run_dir):
    label.run(cfg_for(run_dir))
    rows = [json.loads(x) for x in (run_dir / "label" / "sft_refiner.jsonl").read_text().splitlines()]
    gold = {p.question: p.answer for p in PROBLEMS}
    for row in rows:
        question = row["prompt"][1]["content"]
        answer = next(a for q, a in gold.items() if q in question)
        assert row["completion"][0]["content"].endswith(f"Final Answer: {answer}")


def test_rerun_gives_identical_bytes(run_dir):
    label.run(cfg_for(run_dir, "data.max_pairs_per_parent=1"))
    first = {p.name: p.read_bytes() for p in (run_dir / "label").glob("*.jsonl")}
    label.run(cfg_for(run_dir, "data.max_pairs_per_parent=1"))
    second = {p.name: p.read_bytes() for p in (run_dir / "label").glob("*.jsonl")}
    assert first == second


def test_parquet_and_generator_pairs(run_dir):
    summary = label.run(cfg_for(run_dir, "data.format=parquet", "data.generator_pairs=true"))
    out = run_dir / "label"
    ds = datasets.load_dataset("parquet", data_files=str(out / "dpo_generator.parquet"), split="train")
    assert len(ds) == summary["dpo_pairs"]["generator"] > 0
    assert ds[0]["chosen"][0]["role"] == "assistant"


def test_malformed_line_is_named_and_other_trees_are_kept(run_dir):
    shard = run_dir / "generate" / "trees-00001.jsonl"
    lines = shard.read_text().splitlines()
    lines[3] = lines[3][:50]  # truncated JSON on line 4
    shard.write_text("\n".join(lines) + "\n")
    with pytest.raises(MaltError, match=r"trees-00001.jsonl:4: not valid JSON.*23 trees"):
        label.run(cfg_for(run_dir))
    summary = json.loads((run_dir / "label" / "summary.json").read_text())
    assert summary["trees"] == 23 and summary["malformed_trees"] == 1
    assert "trees-00001.jsonl:4" in (run_dir / "label" / "errors.txt").read_text()


def test_tree_contradicting_its_branching_is_named(run_dir):
    shard = run_dir / "generate" / "trees-00000.jsonl"
    lines = shard.read_text().splitlines()
    row = json.loads(lines[0])
    row["branching"]["n_v"] = 2
    lines[0] = json.dumps(row)
    shard.write_text("\n".join(lines) + "\n")
    with pytest.raises(MaltError, match=r"trees-00000.jsonl:1: tree 'gsm8k-t0' has 9 verifier"):
        label.run(cfg_for(run_dir))


def test_cli_reports_errors_in_one_sentence(tmp_path, capsys):
    code = cli_main(["label", f"run_dir={tmp_path}", "task.name=gsm8k"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("malt label: error: ") and "no such file or folder" in err
    assert "Traceback" not in err


def test_cli_runs_and_prints_summary(run_dir, capsys):
    assert cli_main(["label", f"run_dir={run_dir}", "task.name=gsm8k", "credit.pooling=local"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["trees"] == 24
