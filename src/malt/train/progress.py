"""What training shows in the terminal: one bar per role and phase with its current loss.

transformers adds a `PrinterCallback` (log dicts on stdout) when `disable_tqdm` is set and a
`ProgressCallback` otherwise; `quiet_trainer` removes both, and `PhaseProgress` draws the bar
instead. `quiet_libraries` keeps the datasets/transformers bars (tokenising, loading and
writing weights) off while a phase runs. None of this touches `trainer.state.log_history`,
so the metrics written to metrics.json are unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tqdm.auto import tqdm
from transformers import TrainerCallback


class PhaseProgress(TrainerCallback):
    """A tqdm bar for one phase ("verifier DPO"): optimiser steps of the total, last loss."""

    def __init__(self, desc: str, enabled: bool = True):
        self.desc, self.enabled = desc, enabled
        self.bar: Any = None

    def on_train_begin(self, args, state, control, **kwargs):
        """Open the bar (main process only), starting at a resumed run's step."""
        if self.enabled and state.is_world_process_zero:
            self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc=self.desc,
                            unit="step", dynamic_ncols=True)

    def on_step_end(self, args, state, control, **kwargs):
        """Advance to the trainer's global step."""
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_log(self, args, state, control, logs=None, **kwargs):
        """Show the latest logged training loss beside the bar."""
        if self.bar is not None and logs and isinstance(logs.get("loss"), (int, float)):
            self.bar.set_postfix(loss=f"{logs['loss']:.4g}")

    def on_train_end(self, args, state, control, **kwargs):
        """Close the bar."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def quiet_trainer(trainer: Any) -> Any:
    """Remove transformers' own log printer and progress bar from a built trainer."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    for callback in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(callback)
    return trainer


@contextmanager
def quiet_libraries() -> Iterator[None]:
    """Turn the datasets and transformers progress bars off for the block, then restore them."""
    import datasets
    from transformers.utils import logging as hf_logging

    was = datasets.is_progress_bar_enabled(), hf_logging.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was[0]:
            datasets.enable_progress_bars()
        if was[1]:
            hf_logging.enable_progress_bar()
