"""Training progress: one bar per phase with the loss; transformers' own printing removed."""

from __future__ import annotations

from types import SimpleNamespace

import datasets
import pytest
import torch
from transformers import Trainer, TrainingArguments
from transformers.trainer_callback import DefaultFlowCallback, PrinterCallback, ProgressCallback
from transformers.utils import logging as hf_logging

from malt.train.progress import PhaseProgress, quiet_libraries, quiet_trainer


def state(step: int, main: bool = True) -> SimpleNamespace:
    return SimpleNamespace(max_steps=4, global_step=step, is_world_process_zero=main)


def test_phase_bar_counts_steps_from_a_resumed_step_and_shows_the_loss(capsys):
    bar = PhaseProgress("verifier DPO")
    bar.on_train_begin(None, state(1), None)
    assert bar.bar.n == 1 and bar.bar.total == 4
    for step in (2, 3):
        bar.on_step_end(None, state(step), None)
    bar.on_log(None, state(3), None, logs={"loss": 0.693147, "grad_norm": 1.5})
    bar.on_log(None, state(3), None, logs={"train_runtime": 1.0, "train_loss": 0.7})
    assert bar.bar.n == 3 and bar.bar.postfix == "loss=0.6931"
    bar.on_step_end(None, state(4), None)
    bar.on_train_end(None, state(4), None)
    err = capsys.readouterr().err.split("\r")[-1]
    assert err.startswith("verifier DPO: 100%") and "4/4" in err and "loss=0.6931" in err
    assert bar.bar is None


def test_no_bar_when_disabled_or_off_the_main_process(capsys):
    for callback, main in ((PhaseProgress("generator SFT", enabled=False), True),
                           (PhaseProgress("generator SFT"), False)):
        callback.on_train_begin(None, state(0, main), None)
        callback.on_step_end(None, state(1, main), None)
        callback.on_log(None, state(1, main), None, logs={"loss": 1.0})
        callback.on_train_end(None, state(1, main), None)
        assert callback.bar is None
    assert capsys.readouterr().err == ""


def test_quiet_trainer_removes_the_log_printer_and_keeps_the_rest(tmp_path):
    args = TrainingArguments(output_dir=str(tmp_path), disable_tqdm=True, report_to=[],
                             use_cpu=True)
    mine = PhaseProgress("refiner SFT")
    trainer = Trainer(model=torch.nn.Linear(2, 2), args=args, callbacks=[mine])
    kinds = [type(c) for c in trainer.callback_handler.callbacks]
    assert PrinterCallback in kinds  # what transformers adds with disable_tqdm=True
    quiet_trainer(trainer)
    kinds = [type(c) for c in trainer.callback_handler.callbacks]
    assert PrinterCallback not in kinds and ProgressCallback not in kinds
    assert DefaultFlowCallback in kinds and mine in trainer.callback_handler.callbacks


def bars() -> tuple[bool, bool]:
    return datasets.is_progress_bar_enabled(), hf_logging.is_progress_bar_enabled()


def set_bars(on: bool) -> None:
    if on:
        datasets.enable_progress_bars()
        hf_logging.enable_progress_bar()
    else:
        datasets.disable_progress_bars()
        hf_logging.disable_progress_bar()


@pytest.mark.parametrize("on", [True, False])
def test_quiet_libraries_restores_the_bars(on):
    before = bars()
    try:
        set_bars(on)
        with quiet_libraries():
            assert bars() == (False, False)
        assert bars() == (on, on)
    finally:
        set_bars(before[0])
