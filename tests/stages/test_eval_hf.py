"""End to end on a tiny local Llama with the real hf backend: every method, then the report."""

import copy
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from PIL import Image

from malt.chain import DEFAULT_NAMES as ROLES
from malt.config import load_config
from malt.embedded.tiny import init_model
from malt.stages import eval as eval_stage
from malt.stages import report

SRC = Path(__file__).resolve().parents[2] / "src"
_spec = importlib.util.spec_from_file_location(
    "eval_fakes", Path(__file__).resolve().parents[1] / "evaluate" / "fakes.py")
fakes = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fakes)


def random_loras(base: Path, run_dir: Path) -> dict:
    """models.json content: a LoRA adapter with random (non-zero) weights per role and stage."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base)
    models: dict = {}
    for i, (role, stage) in enumerate((r, s) for r in ROLES for s in ("sft", "final")):
        torch.manual_seed(i)
        peft = get_peft_model(copy.deepcopy(model), LoraConfig(
            r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
        folder = run_dir / "train" / role / stage
        peft.save_pretrained(folder)
        models.setdefault(role, {})[stage] = {"model": str(base), "adapter": str(folder)}
    return models


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf_eval")
    base = init_model(root / "tiny", seed=0)
    run_dir = root / "run"
    (run_dir / "train").mkdir(parents=True)
    (run_dir / "train" / "models.json").write_text(json.dumps(random_loras(base, run_dir)))
    test = root / "test.jsonl"
    test.write_text("".join(json.dumps(r) + "\n" for r in fakes.toy_rows(3)))
    config = root / "run.yaml"
    config.write_text(yaml.safe_dump({
        "run_dir": str(run_dir), "task": {"name": "gsm8k", "test": str(test)},
        "models": {"base": str(base)}, "backend": {"name": "hf", "device": "cpu"},
        "eval": {"chains": 2, "seeds": [0, 1], "max_new_tokens": 6, "temperature": 1.0,
                 "bootstrap_samples": 200},
    }))
    return run_dir, config


def refuse_to_build(models):
    raise AssertionError("a finished evaluation must not load any model")


@pytest.mark.slow
def test_every_method_on_a_tiny_model_then_the_report(tiny_run):
    run_dir, config = tiny_run
    cfg = load_config(config)
    # The toy task keeps prompts short (the tiny model reads characters); the backend is the
    # real hf one, built from the config with the base model and the LoRA adapters.
    res = eval_stage.run(cfg, task=fakes.TOY)
    assert res["order"] == ["sa", "sa_mv", "ma", "ma_mv", "star_sa", "star_sa_mv", "star_ma",
                            "star_ma_mv", "malt_no_mv", "malt", "sa_mv9"]
    # The hf backend reports prompt tokens: every record knows what its question cost.
    assert all(r["cost"]["prompt_tokens"] > 0 and r["cost"]["completion_tokens"] > 0
               for r in map(json.loads, (run_dir / "eval" / "records" / "malt" / "seed1.jsonl")
                            .read_text().splitlines()))
    for m in res["methods"].values():
        for summary in m["per_seed"].values():
            # A random model rarely states an answer: unanswered votes are counted, not fatal.
            assert summary["n"] == 3 and 0 <= summary["no_answer"] <= 3
    rec = [json.loads(line) for line in
           (run_dir / "eval" / "records" / "malt" / "seed1.jsonl").read_text().splitlines()]
    assert len(rec) == 3 and all(len(r["chains"]) == 2 for r in rec)
    assert all(isinstance(c["refiner"], str) and isinstance(c["verifier"], str)
               for r in rec for c in r["chains"])
    # MALT's adapters change what the model writes compared with the base models.
    base = (run_dir / "eval" / "records" / "ma_mv" / "seed1.jsonl").read_text()
    assert [r["chains"][0]["generator"] for r in rec] != [
        json.loads(line)["chains"][0]["generator"] for line in base.splitlines()]
    again = eval_stage.run(cfg, task=fakes.TOY, backend_factory=refuse_to_build)
    assert again["methods"] == res["methods"]
    out = report.run(cfg)
    assert "| MALT |" in Path(out["markdown"]).read_text()
    for chart in (out["chart"], out["turnwise_chart"]):
        with Image.open(chart) as img:
            assert img.format == "PNG" and img.width > 600


@pytest.mark.slow
def test_unreadable_adapter_is_one_clear_sentence(tiny_run, tmp_path):
    run_dir, config = tiny_run
    cfg = yaml.safe_load(config.read_text())
    cfg["run_dir"] = str(tmp_path / "run2")
    models = json.loads((run_dir / "train" / "models.json").read_text())
    models["verifier"]["final"]["adapter"] = str(tmp_path / "missing-adapter")
    (tmp_path / "run2" / "train").mkdir(parents=True)
    (tmp_path / "run2" / "train" / "models.json").write_text(json.dumps(models))
    cfg["eval"]["methods"] = ["malt"]
    cfg["task"]["test"] = str(tmp_path / "test.jsonl")
    (tmp_path / "test.jsonl").write_text(json.dumps(
        {"question": "Tom has 2 apples and buys 3 more. How many?", "answer": "#### 5"}) + "\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    out = subprocess.run([sys.executable, "-m", "malt", "eval", "--config", str(bad)],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 2
    assert "missing-adapter is not a readable PEFT adapter folder" in out.stderr
    assert out.stderr.count("\n") == 1
