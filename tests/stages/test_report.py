"""`malt report`: Table 1 Markdown, the accuracy chart, role-data statistics, bad input."""

import doctest
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

import malt.evaluate.render as render
from malt.config import load_config
from malt.errors import MaltError
from malt.evaluate.render import report_markdown, table_markdown, turnwise_markdown
from malt.stages import report

SRC = Path(__file__).resolve().parents[2] / "src"


def results(task="toy", malt_acc=(0.6, 0.7, 0.8)):
    """A hand-made results.json dict: MALT and SA over three seeds, with one comparison."""
    def method(label, accs, no_answer=0):
        per_seed = {str(s): {"accuracy": a, "correct": round(10 * a), "n": 10,
                             "no_answer": no_answer} for s, a in enumerate(accs)}
        mean = sum(accs) / len(accs)
        std = (sum((a - mean) ** 2 for a in accs) / (len(accs) - 1)) ** 0.5
        return {"label": label, "per_seed": per_seed, "mean": mean, "std": std}

    return {
        "task": task, "test": "data/test.jsonl", "test_split": "test", "test_questions": 40,
        "questions_per_seed": {"0": 10, "1": 10, "2": 10}, "seeds": [0, 1, 2], "chains": 3,
        "subset_size": 10, "confidence": 0.95, "order": ["sa", "malt"],
        "methods": {"sa": method("Single Agent (SA)", [0.4, 0.5, 0.6], no_answer=2),
                    "malt": method("MALT", list(malt_acc))},
        "comparisons": {"reference": "malt", "vs": {"sa": {
            "diff": 0.2, "ci_low": 0.05, "ci_high": 0.35, "n_pairs": 30}}},
        "leakage": {"training_sources": ["data/train.jsonl"], "overlap": {
            "training_questions": 100, "eval_questions": 40, "overlap": 1,
            "overlap_fraction": 0.025, "examples": ["toy-abc"]}},
    }


def with_turnwise(res, after_v=(0.55, 0.05)):
    """`res` with MALT turned multi-agent: accuracy after G, V (None: no answers) and R."""
    def stat(mean, std):
        return {"mean": mean, "std": std}

    out = json.loads(json.dumps(res))
    out["methods"]["malt"]["turnwise"] = {
        "generator": stat(0.5, 0.1), "verifier": after_v and stat(*after_v),
        "refiner": stat(out["methods"]["malt"]["mean"], out["methods"]["malt"]["std"])}
    return out


def test_doctests():
    assert doctest.testmod(render).failed == 0


def test_table_one_layout():
    table = table_markdown([results("gsm8k"), results("math", (0.3, 0.3, 0.3))])
    lines = table.splitlines()
    assert lines[0] == ("| Method | gsm8k acc. (%) | gsm8k: MALT − method, 95% CI | "
                        "math acc. (%) | math: MALT − method, 95% CI |")
    sa = "50.0 ± 10.0 | +20.0 [+5.0, +35.0]"
    assert lines[2] == f"| Single Agent (SA) | {sa} | {sa} |"
    assert lines[3] == "| MALT | 70.0 ± 10.0 | (reference) | 30.0 ± 0.0 | (reference) |"


def test_report_sections_and_role_data():
    label = {"trees": 24, "leaf_accuracy": 0.5, "seconds": 1.2, "files": {"sft_generator": "x"},
             "sft_rows": {"generator": 10, "verifier": 12, "refiner": 30}}
    text = report_markdown([results()], label, chart="accuracy.png")
    assert "## Table 1" in text and "![accuracy per method](accuracy.png)" in text
    assert "1 of 40 test questions (2.5%) also appear among 100 training-tree questions" in text
    assert "most unanswered votes: sa (6 over all seeds)" in text
    assert "| sft_rows | 10 | 12 | 30 |" in text and "| trees | 24 |" in text
    assert "seconds" not in text and "sft_generator" not in text


def test_turnwise_table_and_section():
    both = [with_turnwise(results("gsm8k")), with_turnwise(results("csqa"), after_v=None)]
    assert turnwise_markdown(both).splitlines() == [
        "| Task | Method | after G | after V | after R |", "|---|---|---|---|---|",
        "| gsm8k | MALT | 50.0 ± 10.0 | 55.0 ± 5.0 | 70.0 ± 10.0 |",
        "| csqa | MALT | 50.0 ± 10.0 | — | 70.0 ± 10.0 |"]
    text = report_markdown(both, chart="accuracy.png", turnwise_chart="turnwise.png")
    assert "## Turn-wise accuracy\n\n| Task | Method |" in text
    assert "![accuracy after each turn](turnwise.png)" in text
    # Single-agent methods have no turns: no table, no section.
    assert turnwise_markdown([results()]) == "" and "Turn-wise" not in report_markdown([results()])


def png_ok(path: Path) -> None:
    with Image.open(path) as img:
        assert img.format == "PNG" and img.width >= 600 and img.height >= 400
        assert len(img.convert("RGB").getcolors(maxcolors=1 << 16) or []) > 20


def test_report_stage_writes_the_turnwise_chart_only_with_turns(tmp_path):
    write_results(tmp_path, with_turnwise(results(), after_v=None))
    cfg = load_config(None, [f"run_dir={tmp_path}"])
    out = report.run(cfg)
    assert out["turnwise_chart"] == str(tmp_path / "report" / "turnwise.png")
    png_ok(tmp_path / "report" / "turnwise.png")
    assert "| toy | MALT | 50.0 ± 10.0 | — | 70.0 ± 10.0 |" in Path(out["markdown"]).read_text()
    write_results(tmp_path, results())  # no multi-agent method: the old chart goes
    assert report.run(cfg)["turnwise_chart"] is None
    assert not (tmp_path / "report" / "turnwise.png").exists()


def write_results(run_dir: Path, res: dict) -> None:
    (run_dir / "eval").mkdir(parents=True, exist_ok=True)
    (run_dir / "eval" / "results.json").write_text(json.dumps(res))


def test_report_stage_writes_markdown_and_a_real_png(tmp_path):
    write_results(tmp_path, results())
    (tmp_path / "label").mkdir()
    (tmp_path / "label" / "summary.json").write_text(json.dumps({"trees": 3}))
    other = tmp_path / "other.json"
    other.write_text(json.dumps(results("math")))
    out = report.run(load_config(None, [f"run_dir={tmp_path}"]), extra=[other])
    assert out["tasks"] == ["toy", "math"] and out["role_data"]
    md = (tmp_path / "report" / "report.md").read_text()
    assert "toy acc. (%)" in md and "math acc. (%)" in md and "| trees | 3 |" in md
    with Image.open(tmp_path / "report" / "accuracy.png") as img:
        img.verify()
    with Image.open(tmp_path / "report" / "accuracy.png") as img:
        assert img.format == "PNG" and img.width >= 600 and img.height >= 400
        # Not a blank canvas: bars and text give many distinct colours.
        assert len(img.convert("RGB").getcolors(maxcolors=1 << 16) or []) > 20


def test_missing_or_broken_results_are_clear_errors(tmp_path):
    cfg = load_config(None, [f"run_dir={tmp_path}"])
    with pytest.raises(MaltError, match="results.json: not found; run `malt eval` first"):
        report.run(cfg)
    write_results(tmp_path, {"task": "toy"})
    with pytest.raises(MaltError, match="field 'order' is missing"):
        report.run(cfg)


def test_cli_report_subcommand(tmp_path):
    write_results(tmp_path, results())
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    out = subprocess.run([sys.executable, "-m", "malt", "report", f"run_dir={tmp_path}"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["chart"].endswith("accuracy.png")
    bad = subprocess.run([sys.executable, "-m", "malt", "report", f"run_dir={tmp_path / 'nope'}"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "not found" in bad.stderr
