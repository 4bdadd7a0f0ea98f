"""Shared TRL settings: epochs by dataset size, CPU precision defaults, metric summaries."""

from __future__ import annotations

from pathlib import Path

import pytest

from malt.config import TrainConfig, load_config
from malt.errors import MaltError
from malt.train.settings import common_args, epochs_for, summarise


def test_epochs_by_size_and_override():
    assert epochs_for(0) == 3.0
    assert epochs_for(5000) == 2.0
    assert epochs_for(250000) == 1.0
    assert epochs_for(5000, override=4) == 4.0


def test_cpu_defaults_turn_off_bf16_and_checkpointing(monkeypatch):
    monkeypatch.setattr("malt.train.settings.gpu_available", lambda: False)
    args = common_args(TrainConfig(), output_dir=Path("x"), learning_rate=1e-4, epochs=2.0, seed=3)
    assert args["bf16"] is False and args["gradient_checkpointing"] is False
    assert args["report_to"] == [] and args["seed"] == 3 and args["num_train_epochs"] == 2.0
    monkeypatch.setattr("importlib.util.find_spec", lambda name: object())
    on = TrainConfig(bf16=True, gradient_checkpointing=True, report_to="tensorboard")
    forced = common_args(on, output_dir=Path("x"), learning_rate=1e-4, epochs=1.0, seed=0)
    assert forced["bf16"] is True and forced["gradient_checkpointing"] is True
    assert forced["report_to"] == ["tensorboard"]


def test_missing_logger_package_is_named(monkeypatch):
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(MaltError, match="train.report_to: wandb is not installed"):
        common_args(TrainConfig(report_to="wandb"), output_dir=Path("x"), learning_rate=1e-4,
                    epochs=1.0, seed=0)


def test_summarise_ignores_nan_and_keeps_train_summary():
    history = [{"loss": float("nan"), "step": 1}, {"loss": 0.5, "rewards/margins": 0.1, "step": 2},
               {"train_loss": 0.5, "train_runtime": 1.0, "step": 2}]
    out = summarise(history, ("loss", "rewards/margins"))
    assert out["loss"] == {"first": 0.5, "last": 0.5}
    assert out["rewards/margins"]["last"] == 0.1
    assert out["train_runtime"] == 1.0 and out["steps"] == 2


@pytest.mark.parametrize("override,field", [
    ("train.verifier.dpo_learning_rate=0", "train.verifier.dpo_learning_rate"),
    ("train.refiner.sft_epochs=-1", "train.refiner.sft_epochs"),
    ("train.max_steps=0", "train.max_steps"),
    ("train.report_to=mlflow", "train.report_to"),
])
def test_bad_train_fields_are_named(override, field):
    with pytest.raises(MaltError, match=field.replace(".", r"\.")):
        load_config(None, [override])
