"""A reduced `malt demo` end to end: every stage's artifacts, trained adapters, the report,
and what a person sees at the end."""

from __future__ import annotations

import contextlib
import io
import json

import pytest
from PIL import Image
from safetensors.torch import load_file

from malt.cli import main as cli_main
from malt.evaluate.methods import BUILTIN, COST, TABLE1

METHODS = {n: m for n, m in BUILTIN.items() if m.group in (TABLE1, COST)}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_output(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("demo")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = cli_main([
            "demo", "--questions", "12", "--test-questions", "12", "--no-progress",
            f"run_dir={run_dir}", "eval.seeds=[0]", "eval.subset_size=null",
            "generate.chunk_size=6", "train.max_steps=4",
        ])
    assert code == 0
    return run_dir, printed.getvalue()


@pytest.fixture(scope="module")
def demo_run(demo_output):
    return demo_output[0]


def cells(line: str) -> list[str]:
    """The cells of one row of a rich table as printed."""
    return [c.strip() for c in line.strip("│┃ ").replace("┃", "│").split("│")]


def test_the_demo_ends_with_tables_and_paths_not_json(demo_output):
    run_dir, out = demo_output
    results = json.loads((run_dir / "eval" / "results.json").read_text())
    lines = [line.rstrip() for line in out.splitlines()]
    report = run_dir / "report"
    assert lines[-4:] == [f"Report: {report / 'report.md'}", f"Charts: {report / 'accuracy.png'}",
                          f"        {report / 'turnwise.png'}",
                          f"Explore the trees and chains: {report / 'explore.html'}"]
    assert (report / "explore.html").stat().st_size > 10_000
    start = lines.index("Table 1: arith accuracy (%, mean ± std over 1 seed)")
    turns = lines.index("Turn-wise accuracy: arith (%)")
    rows = {cells(line)[0]: cells(line)[1:] for line in lines[start:turns] if "│" in line}
    assert list(rows) == [m.label for m in METHODS.values()]
    for name, m in results["methods"].items():
        acc = f"{100 * m['mean']:.1f} ± {100 * m['std']:.1f}"
        ci = results["comparisons"]["vs"].get(name)
        diff = "(reference)" if ci is None else f"{100 * ci['diff']:+.1f} [{100 * ci['ci_low']:+.1f},"
        assert rows[m["label"]][0] == acc and rows[m["label"]][1].startswith(diff), name
    multi = [m.label for m in METHODS.values() if m.roles != 1]
    assert [cells(line)[0] for line in lines[turns:] if "│" in line] == multi
    # Nothing for machines or raw logs: no JSON summary, no Markdown, no TRL log dicts.
    assert '"run_dir"' not in out and "# MALT evaluation" not in out and "'loss'" not in out


def test_the_report_has_a_turnwise_chart(demo_run):
    with Image.open(demo_run / "report" / "turnwise.png") as img:
        assert img.format == "PNG" and img.width >= 400
    assert "## Turn-wise accuracy" in (demo_run / "report" / "report.md").read_text()


def test_every_stage_wrote_its_artifacts(demo_run):
    gen = demo_run / "generate"
    assert sorted(p.name for p in gen.glob("trees-*.jsonl")) == ["trees-00000.jsonl", "trees-00001.jsonl"]
    lines = (gen / "trees-00000.jsonl").read_text().splitlines()
    assert len(lines) == 6 and len(json.loads(lines[0])["nodes"]) == 39
    summary = json.loads((demo_run / "label" / "summary.json").read_text())
    assert summary["trees"] == 12 and summary["leaves"] == 12 * 27
    for stage in ("generate", "label", "train", "eval"):
        assert (demo_run / stage / "config.yaml").is_file()
        assert (demo_run / stage / "manifest.json").is_file()
    timings = json.loads((demo_run / "demo" / "timings.json").read_text())
    assert set(timings) >= {"generate", "label", "train", "eval", "report", "explore", "total"}


def test_trained_adapters_differ_from_the_base(demo_run):
    models = json.loads((demo_run / "train" / "models.json").read_text())
    assert set(models) == {"generator", "verifier", "refiner"}
    for role, specs in models.items():
        # Paths inside the run dir are stored relative to it.
        weights = load_file(demo_run / specs["final"]["adapter"] / "adapter_model.safetensors")
        lora_b = [t for name, t in weights.items() if "lora_B" in name]
        # PEFT initialises every LoRA B matrix to zero: a nonzero B means training moved it.
        assert lora_b and any(t.abs().sum() > 0 for t in lora_b), role


def test_report_has_every_method_and_a_chart(demo_run):
    report = (demo_run / "report" / "report.md").read_text()
    results = json.loads((demo_run / "eval" / "results.json").read_text())
    assert set(results["methods"]) == set(METHODS)
    for method in METHODS.values():
        assert method.label in report
    with Image.open(demo_run / "report" / "accuracy.png") as img:
        assert img.width >= 400 and img.height >= 300
    overlap = results["leakage"]["overlap"]
    assert overlap["overlap"] == 0


def test_the_papers_ablations_run_on_the_demo_run_dir(demo_run, tmp_path, capsys):
    import shutil

    run = shutil.copytree(demo_run, tmp_path / "demo")
    cfg = str(run / "eval" / "config.yaml")
    ablations = ["malt", "malt_base_generator", "malt_base_verifier", "malt_base_refiner",
                 "malt_g", "malt_gv", "malt_gr"]
    assert cli_main(["eval", "--config", cfg, "--no-progress", f"run_dir={run}",
                     f"eval.methods=[{','.join(ablations)}]"]) == 0
    assert cli_main(["report", "--config", cfg, f"run_dir={run}"]) == 0
    results = json.loads((run / "eval" / "results.json").read_text())
    assert results["order"] == ablations
    assert results["methods"]["malt_base_verifier"]["sources"]["verifier"] == "base"
    report = (run / "report" / "report.md").read_text()
    table1, rest = report.split("## Ablations (the paper's Tables 4 and 5)")
    assert "MALT, base G" in rest and "MALT G+R" in rest and "MALT, base G" not in table1
    # MALT's own chains were reused from the demo's eval: no new sampling for malt or malt_g.
    assert sorted(p.name for p in (run / "eval" / "chains").iterdir()) == [
        "base", "final", "g.base-matched", "g.base-v.final-r.final", "g.final-r.final",
        "g.final-v.base-r.final", "g.final-v.final-r.base", "sft"]
