"""A reduced `malt demo` end to end: every stage's artifacts, trained adapters, the report."""

from __future__ import annotations

import json

import pytest
from PIL import Image
from safetensors.torch import load_file

from malt.cli import main as cli_main
from malt.evaluate.methods import METHODS

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("demo")
    code = cli_main([
        "demo", "--questions", "12", "--test-questions", "12", "--no-progress",
        f"run_dir={run_dir}", "eval.seeds=[0]", "eval.subset_size=null",
        "generate.chunk_size=6", "train.max_steps=4",
    ])
    assert code == 0
    return run_dir


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
    assert set(timings) >= {"generate", "label", "train", "eval", "report", "total"}


def test_trained_adapters_differ_from_the_base(demo_run):
    models = json.loads((demo_run / "train" / "models.json").read_text())
    assert set(models) == {"generator", "verifier", "refiner"}
    for role, specs in models.items():
        weights = load_file(f"{specs['final']['adapter']}/adapter_model.safetensors")
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
