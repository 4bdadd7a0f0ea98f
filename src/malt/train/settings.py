"""Settings shared by the SFT and DPO phases: epochs by size, precision, logging, checkpoints."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from malt.config import TrainConfig
from malt.errors import MaltError


def epochs_for(n_rows: int, override: float | None = None) -> float:
    """Epochs for a dataset of `n_rows` (the rule in `TrainRoleConfig`'s docstring).

    >>> [epochs_for(n) for n in (10, 999, 1000, 9999, 10000)]
    [3.0, 3.0, 2.0, 2.0, 1.0]
    >>> epochs_for(50, override=0.5)
    0.5
    """
    if override is not None:
        return float(override)
    if n_rows < 1000:
        return 3.0
    if n_rows < 10000:
        return 2.0
    return 1.0


def gpu_available() -> bool:
    """Whether training will run on a CUDA GPU."""
    import torch

    return torch.cuda.is_available()


def process_state():
    """accelerate's process state, set up the way TrainingArguments will (CPU without CUDA)."""
    from accelerate import PartialState

    return PartialState(cpu=not gpu_available())


def use_bf16(cfg: TrainConfig) -> bool:
    """bf16 when asked, or by default where the GPU supports it; never by default on CPU."""
    import torch

    if cfg.bf16 is not None:
        return cfg.bf16
    return gpu_available() and torch.cuda.is_bf16_supported()


def fsdp_checkpointing() -> bool:
    """Whether `accelerate launch` turned on FSDP's own activation checkpointing."""
    from accelerate.utils import parse_flag_from_env

    return parse_flag_from_env("ACCELERATE_USE_FSDP") and parse_flag_from_env(
        "FSDP_ACTIVATION_CHECKPOINTING")


def gradient_checkpointing(cfg: TrainConfig) -> bool:
    """As configured, else on with a GPU; off when FSDP checkpoints the layers itself (the
    trainer refuses both at once, and FSDP's own avoids a second all-gather per layer)."""
    fsdp = fsdp_checkpointing()
    if cfg.gradient_checkpointing and fsdp:
        raise MaltError("train.gradient_checkpointing: the accelerate config turns on FSDP's own "
                        "activation checkpointing (fsdp_activation_checkpointing), and the "
                        "trainer refuses both; leave this empty or false")
    if cfg.gradient_checkpointing is not None:
        return cfg.gradient_checkpointing
    return gpu_available() and not fsdp


def zero3(args: Any) -> bool:
    """Whether a TRL config's trainer will shard the model with DeepSpeed ZeRO-3."""
    plugin = getattr(args, "deepspeed_plugin", None)
    return plugin is not None and plugin.zero_stage == 3


def report_to(cfg: TrainConfig) -> list[str]:
    """The trainer's `report_to` list; a missing logger package is named, not a traceback."""
    import importlib.util

    if cfg.report_to == "none":
        return []
    if importlib.util.find_spec(cfg.report_to) is None:
        raise MaltError(f"train.report_to: {cfg.report_to} is not installed "
                        f"(pip install {cfg.report_to}, or set train.report_to=none)")
    return [cfg.report_to]


def common_args(cfg: TrainConfig, *, output_dir: Path, learning_rate: float, epochs: float,
                seed: int) -> dict[str, Any]:
    """Keyword arguments every TRL config (SFTConfig, DPOConfig) gets from the train section."""
    return {
        "output_dir": str(output_dir),
        "per_device_train_batch_size": cfg.batch_size,
        "gradient_accumulation_steps": cfg.gradient_accumulation_steps,
        "learning_rate": learning_rate,
        "num_train_epochs": epochs,
        "max_steps": cfg.max_steps if cfg.max_steps is not None else -1,
        "lr_scheduler_type": cfg.lr_scheduler_type,
        "warmup_steps": cfg.warmup_ratio,  # a float < 1 is a ratio of the total steps
        "bf16": use_bf16(cfg),
        "fp16": False,
        "gradient_checkpointing": gradient_checkpointing(cfg),
        "logging_steps": cfg.logging_steps,
        "save_strategy": "steps",
        "save_steps": cfg.save_steps,
        "save_total_limit": cfg.save_total_limit,
        "report_to": report_to(cfg),
        "seed": seed,
        "max_length": cfg.max_length,
        "ddp_find_unused_parameters": False,
        # Without CUDA, say so explicitly: accelerate then sets up multi-process CPU (gloo) runs.
        "use_cpu": not gpu_available(),
        "disable_tqdm": True,
    }


def summarise(log_history: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[str, Any]:
    """First and last logged value of each key, plus the trainer's final summary line.

    >>> h = [{"loss": 2.0, "step": 1}, {"loss": 1.0, "step": 2}, {"train_loss": 1.5, "step": 2}]
    >>> summarise(h, ("loss",))
    {'loss': {'first': 2.0, 'last': 1.0}, 'train_loss': 1.5, 'steps': 2}
    """
    out: dict[str, Any] = {}
    for key in keys:
        values = [row[key] for row in log_history if key in row and _finite(row[key])]
        if values:
            out[key] = {"first": values[0], "last": values[-1]}
    final = next((row for row in reversed(log_history) if "train_loss" in row), {})
    for key in ("train_loss", "train_runtime", "train_samples_per_second"):
        if key in final:
            out[key] = final[key]
    out["steps"] = max((row.get("step", 0) for row in log_history), default=0)
    return out


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)
