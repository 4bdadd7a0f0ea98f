"""Config loading: defaults, YAML, dotted overrides, and errors that name the field."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from malt.config import BackendConfig, RunConfig, TrainConfig, load_config, save_config
from malt.errors import MaltError
from malt.runspec import CHECKS

REPO = Path(__file__).resolve().parents[1]


def test_defaults_match_the_paper():
    cfg = load_config()
    assert [cfg.generate.role(r).n for r in ("generator", "verifier", "refiner")] == [3, 3, 3]
    assert cfg.generate.role("generator").temperature == 0.3
    assert cfg.credit.threshold == 0.5 and cfg.credit.pooling == "global"
    assert cfg.train.beta == 0.2
    # The paper trains no generator DPO: the default chain builds no generator pairs.
    from malt.train.role import phases

    assert phases(cfg, "generator") == ("sft",) and phases(cfg, "verifier") == ("sft", "dpo")
    assert cfg.eval.chains == 3


def test_yaml_and_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("task:\n  name: csqa\ngenerate:\n  verifier:\n    n: 5\n")
    cfg = load_config(path, ["generate.verifier.temperature=0.7", "credit.pooling=local",
                             "eval.seeds=[1, 2]"])
    assert cfg.task.name == "csqa"
    assert cfg.generate.role("verifier").n == 5 and cfg.generate.role("verifier").temperature == 0.7
    assert cfg.credit.pooling == "local" and cfg.eval.seeds == [1, 2]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("generate.verifier.temperature=hot", "generate.verifier.temperature: expected float"),
        ("generate.verifer.n=2", "generate.verifer: no role of that name in the chain"),
        ("generate.chunk_sise=2", "generate.chunk_sise: unknown field"),
        ("train.critic.sft=false", "train.critic: no model slot of that name in the chain"),
        ("chain=[generator,critic]", "chain[1].template: 'critic' is not a template kind"),
        ("chain=[generator,verifier]", "chain: the last role (verifier) must state an answer"),
        ("eval.methods=[malt,best]", "eval.methods: unknown method 'best'"),
        ("credit.pooling=median", "credit.pooling: 'median' is not one of global, local"),
        ("credit.threshold=1.5", "credit.threshold: must be in [0, 1)"),
        ("task.name=mmlu", "task.name: unknown task 'mmlu'"),
        ("generate.refiner.n=0", "generate.refiner.n: must be at least 1"),
        ("train.lora_r=true", "train.lora_r: expected int"),
    ],
)
def test_bad_values_name_the_override_and_the_field(override, message):
    with pytest.raises(MaltError, match=f"^override {re.escape(override)}: {re.escape(message)}"):
        load_config(None, [override], checks=CHECKS)


def test_a_malformed_override_is_named():
    with pytest.raises(MaltError, match="override 'backend' must look like section.field=value"):
        load_config(None, ["backend"])


# Each bad value is refused in one sentence naming the field (here: its override) and its range.
OUT_OF_RANGE = [
    ("generate.verifier.temperature=.inf", "must be a finite number >= 0"),
    ("generate.verifier.temperature=.nan", "must be a finite number >= 0"),
    ("generate.generator.temperature=-0.1", "must be a finite number >= 0"),
    ("eval.temperature=.inf", "must be a finite number >= 0"),
    ("generate.refiner.top_p=0", "must be in (0, 1]"),
    ("generate.refiner.top_p=1.5", "must be in (0, 1]"),
    ("eval.top_p=.nan", "must be in (0, 1]"),
    ("train.lora_dropout=1", "must be in [0, 1)"),
    ("train.lora_dropout=-0.1", "must be in [0, 1)"),
    ("train.lora_dropout=2", "must be in [0, 1)"),
    ("train.gradient_accumulation_steps=0", "must be at least 1"),
    ("train.warmup_ratio=1.5", "must be in [0, 1]"),
    ("train.warmup_ratio=-0.1", "must be in [0, 1]"),
    ("train.beta=.inf", "must be a finite number > 0"),
    ("train.verifier.sft_learning_rate=.nan", "must be a finite number > 0"),
    ("train.refiner.dpo_epochs=0", "must be a finite number > 0 or null"),
    ("backend.timeout_s=0", "must be a finite number > 0"),
    ("backend.timeout_s=-5", "must be a finite number > 0"),
    ("backend.timeout_s=.inf", "must be a finite number > 0"),
    ("backend.device=foo", "must be auto, cpu, cuda, cuda:N or mps"),
    ("backend.device=cuda:x", "must be auto, cpu, cuda, cuda:N or mps"),
    ("backend.max_retries=-1", "must be at least 0"),
    ("backend.max_concurrency=0", "must be at least 1"),
    ("backend.gpu_memory_utilization=1.5", "must be in (0, 1]"),
]


VLLM_OUT_OF_RANGE = [
    ("backend.max_lora_rank=24", "must be one of vLLM's ranks 1, 8, 16, 32, 64, 128, 256, 320, "
                                 "512, or null"),
    ("backend.max_lora_rank=0", "must be one of vLLM's ranks 1, 8, 16, 32, 64, 128, 256, 320, "
                                "512, or null"),
    ("backend.max_model_len=0", "must be at least 1 or null"),
    ("backend.max_num_seqs=-1", "must be at least 1 or null"),
]


@pytest.mark.parametrize(("override", "why"), OUT_OF_RANGE + VLLM_OUT_OF_RANGE)
def test_out_of_range_values_are_refused(override, why):
    key = override.partition("=")[0]
    with pytest.raises(MaltError) as err:
        load_config(None, [override])
    assert str(err.value) == f"override {override}: {key}: {why}"


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:0", "cuda:11", "mps"])
def test_devices_the_hf_backend_accepts(device):
    assert load_config(None, [f"backend.device={device}"]).backend.device == device


def test_a_dataclass_checks_its_own_ranges():
    with pytest.raises(MaltError, match=r"^max_concurrency: must be at least 1$"):
        BackendConfig(max_concurrency=0)
    with pytest.raises(MaltError, match=r"^lora_dropout: must be in \[0, 1\)$"):
        TrainConfig(lora_dropout=1.0)


def test_yaml_1_2_floats_are_read_as_floats(tmp_path):
    # PyYAML (YAML 1.1) reads 2e-4 as the string "2e-4"; float fields accept it as YAML 1.2 does.
    path = tmp_path / "run.yaml"
    path.write_text("train:\n  lora_dropout: 1e-1\n  verifier:\n    sft_learning_rate: 2e-4\n")
    cfg = load_config(path, ["train.refiner.dpo_learning_rate=5E-5", "backend.timeout_s=3e1",
                             "train.beta=+.5"])
    assert cfg.train.lora_dropout == 0.1 and cfg.train.role("verifier").sft_learning_rate == 2e-4
    assert cfg.train.role("refiner").dpo_learning_rate == 5e-5 and cfg.backend.timeout_s == 30.0
    assert cfg.train.beta == 0.5
    with pytest.raises(MaltError, match="train.beta: expected float, got '2e-4x'"):
        load_config(None, ["train.beta=2e-4x"])
    with pytest.raises(MaltError, match="train.lora_r: expected int, got '1e3'"):
        load_config(None, ["train.lora_r=1e3"])


def test_duplicate_keys_name_the_file_and_line(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("train:\n  beta: 0.1\n  lora_r: 4\n  beta: 0.2\n")
    with pytest.raises(MaltError, match=rf"^{re.escape(str(path))}:4: duplicate key 'beta'"):
        load_config(path)
    path.write_text("train:\n  beta: 0.1\ncredit:\n  threshold: 0.2\ntrain:\n  lora_r: 4\n")
    with pytest.raises(MaltError, match=rf"^{re.escape(str(path))}:5: duplicate key 'train'"):
        load_config(path)


def test_an_error_in_the_file_names_its_line_and_an_override_is_named_not_the_file(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("seed: 1\ntrain:\n  beta: 0.1\n  lora_dropout: 2\n")
    with pytest.raises(MaltError, match=rf"^{re.escape(str(path))}:4: train.lora_dropout: must be"):
        load_config(path)
    # The override fixes the file's bad value...
    assert load_config(path, ["train.lora_dropout=0.1"]).train.lora_dropout == 0.1
    # ...and a bad override is named as such, not blamed on the file.
    path.write_text("seed: 1\n")
    with pytest.raises(MaltError) as err:
        load_config(path, ["seed=2", "train.lora_dropout=2"])
    assert str(err.value) == "override train.lora_dropout=2: train.lora_dropout: must be in [0, 1)"


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




def test_vllm_quantization_must_name_a_method():
    with pytest.raises(MaltError, match=r"^quantization: must name a method"):
        BackendConfig(quantization=" ")


def test_vllm_engine_settings_default_to_vllm_and_take_overrides():
    b = load_config().backend
    assert (b.max_lora_rank, b.max_model_len, b.max_num_seqs, b.quantization) == (None,) * 4
    assert b.enforce_eager is False and b.gpu_memory_utilization == 0.85
    b = load_config(None, ["backend.max_lora_rank=320", "backend.max_model_len=4096",
                           "backend.max_num_seqs=128", "backend.enforce_eager=true",
                           "backend.quantization=fp8"]).backend
    assert (b.max_lora_rank, b.max_model_len, b.max_num_seqs) == (320, 4096, 128)
    assert b.enforce_eager is True and b.quantization == "fp8"


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_leave_room_for_every_role(path):
    cfg = load_config(path)
    longest = max(cfg.generate.role(r).max_new_tokens for r in ("generator", "verifier", "refiner"))
    # Eval answers are as long as tree answers; a refiner row (question + G's answer + the
    # critique + the refinement) fits in train.max_length, and its prompt plus output in the
    # engine's context window.
    assert cfg.eval.max_new_tokens >= longest
    assert cfg.train.max_length >= sum(cfg.generate.role(r).max_new_tokens
                                       for r in ("generator", "verifier", "refiner"))
    assert cfg.backend.max_model_len is None or cfg.backend.max_model_len >= cfg.train.max_length
    assert cfg.backend.max_lora_rank is None  # sized from the adapters (train.lora_r)


def test_a_method_must_fit_the_chain():
    with pytest.raises(MaltError, match=r"eval.methods: method 'malt_base_verifier' sets a "
                                        r"source for 'verifier', which it does not run"):
        load_config(None, ["chain=[generator,refiner]", "eval.methods=[malt_base_verifier]"],
                    checks=CHECKS)
