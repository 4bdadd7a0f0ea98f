"""Supervised fine-tuning of one role on its positives with TRL's SFTTrainer (LoRA or full)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from malt.config import TrainConfig
from malt.train import attention, checkpoints, lora
from malt.train.data import keep_fitting_rows
from malt.train.progress import quiet_trainer
from malt.train.settings import common_args, epochs_for, summarise, use_bf16, zero3

log = logging.getLogger("malt.train")

SFT_KEYS = ("loss", "mean_token_accuracy", "grad_norm", "learning_rate", "num_tokens")


@dataclass(frozen=True)
class Phase:
    """Where one phase of one role trains and what it starts from."""

    model: str  # base model folder or Hub id
    dest: Path  # published result folder (adapter, or full model)
    run_dir: Path  # trainer output_dir: checkpoints and logs
    learning_rate: float
    epochs: float | None  # None: by dataset size
    seed: int = 0
    trust_remote_code: bool = False
    revision: str | None = None
    # A LoRA adapter to continue training (e.g. the previous round's final adapter in
    # `malt iterate`); None: a fresh adapter on the base model.
    init_adapter: Path | None = None


def sft_config(cfg: TrainConfig, phase: Phase, n_rows: int):
    """TRL's SFTConfig for this phase: padding-free or packed batches when asked."""
    from trl import SFTConfig

    kwargs = common_args(cfg, output_dir=phase.run_dir, learning_rate=phase.learning_rate,
                         epochs=epochs_for(n_rows, phase.epochs), seed=phase.seed)
    if cfg.packing:
        kwargs.update(packing=True, packing_strategy="bfd")
    elif cfg.padding_free:
        # TRL leaves padding-free rows untruncated; over-long rows were dropped beforehand.
        kwargs.update(padding_free=True, max_length=None)
    return SFTConfig(**kwargs, completion_only_loss=True, trust_remote_code=phase.trust_remote_code)


def attention_for(cfg: TrainConfig) -> str | None:
    """The attention kernel: as configured, else per-sequence SDPA for flattened batches."""
    if cfg.attn_implementation is not None:
        return cfg.attn_implementation
    return attention.register() if cfg.padding_free or cfg.packing else None


def build_trainer(cfg: TrainConfig, phase: Phase, dataset: Any, callbacks: list | None = None):
    """An SFTTrainer for the rows of `dataset` that fit `max_length` (None when none does),
    and the length report (`malt.lengths`: p50/p95/max tokens, rows left out)."""
    from transformers import set_seed
    from trl import SFTTrainer

    tok = lora.load_tokenizer(phase.model, trust_remote_code=phase.trust_remote_code,
                              revision=phase.revision)
    # In every batching mode: padded and packed rows would be cut, padding-free ones not limited.
    dataset, lengths = keep_fitting_rows(dataset, tok, "sft", cfg.max_length)
    if len(dataset) == 0:
        return None, lengths
    # The config first: under DeepSpeed ZeRO-3 it makes `from_pretrained` load sharded.
    args = sft_config(cfg, phase, len(dataset))
    set_seed(phase.seed)  # LoRA initialisation draws from the global RNG
    model = lora.load_model(phase.model, bf16=use_bf16(cfg), attn_implementation=attention_for(cfg),
                            trust_remote_code=phase.trust_remote_code, revision=phase.revision)
    if phase.init_adapter is not None:
        model = lora.load_adapter(model, phase.init_adapter, trainable=True,
                                  same_dtype=zero3(args))
    elif not cfg.full_finetune:
        model = lora.attach_lora(model, cfg, same_dtype=zero3(args))
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tok,
                         callbacks=callbacks)
    return quiet_trainer(trainer), lengths


def run_sft(cfg: TrainConfig, phase: Phase, dataset: Any, *, resume: bool = False,
            callbacks: list | None = None) -> dict[str, Any]:
    """Train, publish `phase.dest` and return the phase metrics."""
    trainer, lengths = build_trainer(cfg, phase, dataset, callbacks)
    dropped = lengths["dropped"]
    if trainer is None:
        reason = f"all {dropped} rows are longer than train.max_length={cfg.max_length} tokens"
        log.warning("SFT skipped: %s", reason)
        return {"status": "skipped", "reason": reason, "rows": len(dataset),
                "rows_dropped_too_long": dropped, "lengths": lengths}
    checkpoints.train(trainer, phase.run_dir, resume)
    checkpoints.publish(trainer, phase.dest, lambda d: trainer.save_model(str(d)))
    metrics = summarise(trainer.state.log_history, SFT_KEYS)
    metrics.update(status="trained", rows=len(dataset), rows_dropped_too_long=dropped,
                   lengths=lengths, epochs=trainer.args.num_train_epochs)
    if dropped:
        log.warning("SFT: %d of %d rows exceed train.max_length=%d tokens and were left out",
                    dropped, len(dataset), cfg.max_length)
    return metrics
