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
    summary = label.run(cfg_for(run_dir, "data.format=parquet",
                                "chain=[{name: generator, pairs: true}, verifier, refiner]"))
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


@pytest.fixture
def long_run_dir(tmp_path):
    """20 ordinary trees and 4 whose completions carry 400 extra characters each."""
    branching = Branching(3, 3, 3)
    trees = [*synthetic_forest(PROBLEMS[:20], branching, seed=0),
             *synthetic_forest(PROBLEMS[20:], branching, seed=0, filler_chars=400)]
    write_trees(tmp_path / "generate" / "trees-00000.jsonl", trees)
    return tmp_path


def independent_verdicts(tok, kind, rows, max_length):
    """Each row tokenized on its own, as TRL does, and judged by the rule in malt.lengths."""
    def n(messages, **kw):
        return len(tok.apply_chat_template(messages, tokenize=True, return_dict=True,
                                           **kw)["input_ids"])

    if kind == "sft":
        return ["too_long" if n(r["prompt"] + r["completion"]) > max_length else "fits"
                for r in rows]
    out = []
    for r in rows:
        longest = max(n(r["prompt"] + r["chosen"]), n(r["prompt"] + r["rejected"]))
        prompt = n(r["prompt"], add_generation_prompt=True)
        out.append("prompt_too_long" if prompt >= max_length
                   else "completion_cut" if longest > max_length else "fits")
    return out


def test_lengths_per_role_count_what_max_length_leaves_out(long_run_dir):
    from malt.embedded import base_model_path
    from malt.lengths import load_tokenizer

    summary = label.run(cfg_for(long_run_dir, "models.base=embedded", "train.max_length=1024"))
    tok, _ = load_tokenizer(str(base_model_path()))
    assert summary["paper_pairs_per_role"] == [2000, 6000]
    seen = set()
    for role, kinds in summary["lengths"].items():
        assert kinds["tokenizer"] == str(base_model_path())
        for kind in ("sft", "dpo") if role != "generator" else ("sft",):
            t = kinds[kind]
            rows = [json.loads(x) for x in
                    (long_run_dir / "label" / f"{kind}_{role}.jsonl").read_text().splitlines()]
            counted = summary["sft_rows" if kind == "sft" else "dpo_pairs"][role]
            assert t["rows"] == len(rows) == counted
            verdicts = independent_verdicts(tok, kind, rows, 1024)
            reasons = ("too_long",) if kind == "sft" else ("prompt_too_long", "completion_cut")
            for reason in reasons:
                assert t[reason] == verdicts.count(reason)
                if t[reason]:
                    seen.add(reason)
            assert t["kept"] == verdicts.count("fits") and t["kept"] + t["dropped"] == t["rows"]
            assert t["p50"] <= t["p95"] <= t["max"] and t["max_length"] == 1024
    assert seen == {"too_long", "prompt_too_long", "completion_cut"}  # every reason planted


def test_cli_prints_pair_counts_and_length_warnings(long_run_dir, capsys):
    args = ["label", f"run_dir={long_run_dir}", "task.name=gsm8k", "models.base=embedded"]
    assert cli_main(args) == 0
    out = capsys.readouterr()
    json.loads(out.out)  # stdout stays one JSON summary
    assert "malt label: verifier: 54 DPO pairs (below the paper's roughly 2,000-6,000" in out.err
    assert "malt label: warning: train.max_length=1024 would leave out 59 of 368 refiner SFT" in out.err
    # A generous max_length leaves nothing out: no warning.
    assert cli_main([*args, "train.max_length=4096"]) == 0
    assert "warning" not in capsys.readouterr().err


def test_lengths_not_measured_is_a_note_not_a_failure(run_dir, tmp_path):
    summary = label.run(cfg_for(run_dir))  # no model configured
    assert summary["lengths"]["verifier"]["note"].startswith("lengths not measured: models.verifier")
    summary = label.run(cfg_for(run_dir, f"models.base={tmp_path / 'nowhere'}"))
    note = summary["lengths"]["refiner"]["note"]
    assert note.startswith("lengths not measured:") and "nowhere" in note
    assert summary["trees"] == 24  # the datasets were still written
    assert "malt label: refiner: lengths not measured" in "\n".join(
        f"malt label: {line}" for line in label.report_lines(summary))
