"""Resuming and saving a phase: last checkpoint lookup, atomic publish of the result folder."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from malt.errors import MaltError


def last_checkpoint(run_dir: Path) -> str | None:
    """The newest `checkpoint-N` folder the trainer left in `run_dir`, if any."""
    from transformers.trainer_utils import get_last_checkpoint

    if not run_dir.is_dir():
        return None
    return get_last_checkpoint(str(run_dir))


def train(trainer: Any, run_dir: Path, resume: bool) -> Any:
    """Run `trainer.train`, continuing from the last checkpoint in `run_dir` when `resume`."""
    checkpoint = last_checkpoint(run_dir) if resume else None
    if not resume and run_dir.is_dir() and trainer.accelerator.is_main_process:
        shutil.rmtree(run_dir)  # a fresh start must not mix with an older run's checkpoints
    trainer.accelerator.wait_for_everyone()
    try:
        return trainer.train(resume_from_checkpoint=checkpoint)
    except (OSError, ValueError) as e:
        if checkpoint is None:
            raise
        raise MaltError(f"{checkpoint}: cannot resume from this checkpoint ({e})") from None


def publish(trainer: Any, dest: Path, save: Callable[[Path], None]) -> None:
    """Save the phase result with `save(tmp)`, then rename it to `dest` (main process).

    `save` runs on every process: under DeepSpeed ZeRO-3 or FSDP each holds a shard of the
    weights and gathering them is collective (the trainer writes on the main process only).
    The rename makes a finished phase visible all at once, so `--resume` can trust that an
    existing `dest` is complete.
    """
    tmp = dest.with_name(f".{dest.name}.tmp")
    if trainer.accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()
    config = getattr(trainer.accelerator.unwrap_model(trainer.model), "config", None)
    if config is not None:
        config.use_cache = True  # training turns the KV cache off; generation wants it back
    save(tmp)
    if trainer.accelerator.is_main_process:
        trainer.processing_class.save_pretrained(str(tmp))
        shutil.rmtree(dest, ignore_errors=True)
        tmp.rename(dest)
    trainer.accelerator.wait_for_everyone()


def is_done(dest: Path) -> bool:
    """Whether a phase result folder was published (an adapter or a full model)."""
    return (dest / "adapter_config.json").is_file() or (dest / "config.json").is_file()
