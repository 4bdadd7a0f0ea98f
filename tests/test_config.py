"""Config loading: defaults, YAML, dotted overrides, and errors that name the field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from malt.config import RunConfig, load_config, save_config
from malt.errors import MaltError

REPO = Path(__file__).resolve().parents[1]


def test_defaults_match_the_paper():
    cfg = load_config()
    assert (cfg.generate.generator.n, cfg.generate.verifier.n, cfg.generate.refiner.n) == (3, 3, 3)
    assert cfg.generate.generator.temperature == 0.3
    assert cfg.credit.threshold == 0.5 and cfg.credit.pooling == "global"
    assert cfg.train.beta == 0.2
    assert cfg.train.generator.dpo is False and cfg.train.verifier.dpo is True
    assert cfg.eval.chains == 3


def test_yaml_and_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("task:\n  name: csqa\ngenerate:\n  verifier:\n    n: 5\n")
    cfg = load_config(path, ["generate.verifier.temperature=0.7", "credit.pooling=local",
                             "eval.seeds=[1, 2]"])
    assert cfg.task.name == "csqa"
    assert cfg.generate.verifier.n == 5 and cfg.generate.verifier.temperature == 0.7
    assert cfg.credit.pooling == "local" and cfg.eval.seeds == [1, 2]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("generate.verifier.temperature=hot", "generate.verifier.temperature: expected float"),
        ("generate.verifer.n=2", "generate.verifer: unknown field"),
        ("credit.pooling=median", "credit.pooling: 'median' is not one of global, local"),
        ("credit.threshold=1.5", "credit.threshold: must be in"),
        ("task.name=mmlu", "task.name: unknown task 'mmlu'"),
        ("generate.refiner.n=0", "generate.refiner.n: must be at least 1"),
        ("train.lora_r=true", "train.lora_r: expected int"),
        ("backend", "must look like section.field=value"),
    ],
)
def test_bad_values_name_the_field(override, message):
    with pytest.raises(MaltError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_config(None, [override])


def test_errors_name_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("credit:\n  threshold: high\n")
    with pytest.raises(MaltError, match=rf"{path.name}: credit.threshold: expected float"):
        load_config(path)
    with pytest.raises(MaltError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(MaltError, match="top level must be a mapping"):
        load_config(tmp_path / "list.yaml")


def test_saved_config_reloads_identically(tmp_path):
    cfg = load_config(None, ["seed=7", "generate.generator.n=4"])
    save_config(cfg, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == cfg


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_load(path):
    cfg = load_config(path)
    assert isinstance(cfg, RunConfig)
    raw = yaml.safe_load(path.read_text())
    assert cfg.task.name == raw["task"]["name"]
