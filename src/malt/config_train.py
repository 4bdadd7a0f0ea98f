"""The `train` section of the run config: LoRA SFT then DPO per model slot (TRL + PEFT).

Part of the run config schema (`malt.config`, which re-exports these); each dataclass checks
its own ranges, next to its fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from malt.configfile import KEYED
from malt.configfile import check as _check
from malt.configfile import positive as _positive


@dataclass
class TrainRoleConfig:
    """Training for one role: SFT on its positives, then optionally DPO on its pairs.

    Epochs by dataset size (when `sft_epochs` / `dpo_epochs` is None), so that small role
    datasets still get enough optimiser steps and big ones are not over-fitted:
    fewer than 1,000 rows -> 3 epochs; 1,000 to 9,999 rows -> 2 epochs; 10,000 or more -> 1.
    """

    sft: bool = True
    dpo: bool = True  # runs when the slot's roles have preference pairs (the chain's `pairs`)
    sft_learning_rate: float = 2e-4  # finite, > 0
    dpo_learning_rate: float = 5e-5  # finite, > 0
    sft_epochs: float | None = None  # > 0; None: chosen from the dataset size (rule above)
    dpo_epochs: float | None = None

    def __post_init__(self) -> None:
        for name in ("sft_learning_rate", "dpo_learning_rate"):
            _check(_positive(getattr(self, name)), name, "must be a finite number > 0")
        for name in ("sft_epochs", "dpo_epochs"):
            value = getattr(self, name)
            _check(value is None or _positive(value), name, "must be a finite number > 0 or null")


@dataclass
class TrainConfig:
    """LoRA SFT then DPO per role, through TRL + PEFT (paper: DPO beta 0.2).

    DPO's reference is the role's SFT policy: with LoRA the SFT adapter is loaded trainable
    and TRL keeps a frozen copy of it as the reference adapter; with `full_finetune` the
    reference is a separate copy of the SFT model. `padding_free` flattens each SFT batch
    into one sequence (no pad tokens; rows longer than `max_length` tokens are left out and
    counted); `packing` instead packs rows into `max_length`-token blocks (then `batch_size`
    counts blocks). Flattened batches need attention that stops at sequence boundaries: with
    `attn_implementation` empty, SFT uses malt's per-sequence SDPA (`malt.train.attention`);
    name a varlen kernel such as flash_attention_2 on GPUs. `bf16` / `gradient_checkpointing`
    left empty mean: on with a CUDA GPU, off on CPU (where both are much slower). `max_steps`
    caps every phase (for smoke runs).
    """

    full_finetune: bool = False
    lora_r: int = 16  # >= 1
    lora_alpha: int = 32
    lora_dropout: float = 0.05  # in [0, 1)
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    beta: float = 0.2  # finite, > 0
    batch_size: int = 8  # >= 1
    gradient_accumulation_steps: int = 1  # >= 1
    max_length: int = 1024  # >= 8
    padding_free: bool = True
    packing: bool = False
    merge: bool = False  # also save a merged model per role
    report_to: Literal["none", "tensorboard", "wandb"] = "none"
    logging_steps: int = 10
    save_steps: int = 200  # >= 1
    save_total_limit: int = 2  # checkpoints kept per phase for --resume
    max_steps: int | None = None  # >= 1 or None
    warmup_ratio: float = 0.03  # in [0, 1]
    lr_scheduler_type: str = "cosine"
    bf16: bool | None = None
    gradient_checkpointing: bool | None = None
    attn_implementation: str | None = None  # e.g. flash_attention_2; None: see the docstring
    # A run dir whose final adapters SFT continues from, per model slot (`malt iterate`: the
    # previous round); None: a fresh LoRA adapter on the base model. LoRA only.
    start_from: str | None = None
    # train.<slot>: per model slot of the chain (default: generator, verifier, refiner)
    roles: dict[str, TrainRoleConfig] = field(default_factory=dict, metadata=KEYED)

    def __post_init__(self) -> None:
        _check(self.lora_r >= 1, "lora_r", "must be at least 1")
        _check(0 <= self.lora_dropout < 1, "lora_dropout", "must be in [0, 1)")
        _check(_positive(self.beta), "beta", "must be a finite number > 0")
        _check(self.batch_size >= 1, "batch_size", "must be at least 1")
        _check(self.gradient_accumulation_steps >= 1, "gradient_accumulation_steps",
               "must be at least 1")
        _check(self.max_length >= 8, "max_length", "must be at least 8")
        _check(self.save_steps >= 1, "save_steps", "must be at least 1")
        _check(self.max_steps is None or self.max_steps >= 1, "max_steps", "must be at least 1 or null")
        _check(0 <= self.warmup_ratio <= 1, "warmup_ratio", "must be in [0, 1]")

    def role(self, slot: str) -> TrainRoleConfig:
        return self.roles.get(slot) or TrainRoleConfig()
