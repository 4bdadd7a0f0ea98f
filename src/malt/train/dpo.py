"""DPO of one role on its preference pairs with TRL's DPOTrainer; the reference is the SFT policy.

The LoRA trap: handed a model with a fresh adapter, DPOTrainer takes the base model with the
adapter disabled as the reference. Here the SFT adapter itself is loaded trainable instead,
and DPOTrainer then copies it into a frozen "ref" adapter, so the reference log-probs are
exactly the SFT policy's (tests/train/test_dpo.py proves it). With a full fine-tune the
reference is a separate copy of the SFT model. Without an SFT result the policy starts from
the base model, which is then also the correct reference.

No pair is trained cut: TRL's collator would cut the end of an answer longer than
`max_length` (`truncation_mode="keep_start"`; its `"keep_end"` is deprecated in TRL 1.x and
would cut the system prompt and question instead) and TRL drops a pair whose prompt fills
`max_length` without a count. Both kinds are left out before the trainer sees them and
counted in the metrics (`rows_dropped_completion_cut`, `rows_dropped_prompt_too_long`).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from malt.config import TrainConfig
from malt.train import checkpoints, lora
from malt.train.data import keep_fitting_rows
from malt.train.progress import quiet_trainer
from malt.train.settings import common_args, epochs_for, summarise, use_bf16, zero3
from malt.train.sft import Phase

log = logging.getLogger("malt.train")

DPO_KEYS = ("loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies",
            "logps/chosen", "logps/rejected", "grad_norm", "learning_rate")


def dpo_config(cfg: TrainConfig, phase: Phase, n_rows: int):
    """TRL's DPOConfig: sigmoid loss with the configured beta (paper: 0.2)."""
    from trl import DPOConfig

    kwargs = common_args(cfg, output_dir=phase.run_dir, learning_rate=phase.learning_rate,
                         epochs=epochs_for(n_rows, phase.epochs), seed=phase.seed)
    return DPOConfig(**kwargs, beta=cfg.beta, trust_remote_code=phase.trust_remote_code)


def policy_and_reference(cfg: TrainConfig, phase: Phase, sft: Path | None, *,
                         same_dtype: bool = False) -> tuple[Any, Any, Any]:
    """(policy, explicit reference model or None, peft_config or None) for DPOTrainer;
    `same_dtype`: the SFT adapter keeps the base model's dtype (DeepSpeed ZeRO-3)."""
    load = {"bf16": use_bf16(cfg), "trust_remote_code": phase.trust_remote_code,
            "revision": phase.revision, "attn_implementation": cfg.attn_implementation}
    if cfg.full_finetune:
        start = str(sft) if sft is not None else phase.model
        if sft is not None:
            load["revision"] = None  # a local folder has no revisions
        return lora.load_model(start, **load), lora.load_model(start, **load), None
    model = lora.load_model(phase.model, **load)
    if sft is None:
        return model, None, lora.lora_config(cfg)  # fresh adapter: reference = base = start
    return lora.load_adapter(model, sft, trainable=True, same_dtype=same_dtype), None, None


def build_trainer(cfg: TrainConfig, phase: Phase, dataset: Any, sft: Path | None,
                  callbacks: list | None = None):
    """A DPOTrainer on the pairs of `dataset` that fit `max_length` uncut (None when none
    does), its reference the SFT result `sft` (or the base without one); and the length report."""
    from transformers import set_seed
    from trl import DPOTrainer

    tok = lora.load_tokenizer(phase.model, trust_remote_code=phase.trust_remote_code,
                              revision=phase.revision)
    dataset, lengths = keep_fitting_rows(dataset, tok, "dpo", cfg.max_length)
    if len(dataset) == 0:
        return None, lengths
    # The config first: under DeepSpeed ZeRO-3 it makes `from_pretrained` load sharded.
    args = dpo_config(cfg, phase, len(dataset))
    set_seed(phase.seed)  # LoRA initialisation draws from the global RNG
    policy, reference, peft_config = policy_and_reference(cfg, phase, sft, same_dtype=zero3(args))
    trainer = DPOTrainer(model=policy, ref_model=reference, args=args, train_dataset=dataset,
                         processing_class=tok, callbacks=callbacks, peft_config=peft_config)
    return quiet_trainer(trainer), lengths


def save_policy(trainer: Any, dest: Path) -> None:
    """Save only the trained policy: the "default" adapter (not the frozen "ref"), or the model.

    Runs on every process: the trainer's own save gathers sharded weights (ZeRO-3, FSDP) and
    writes on the main process; PEFT puts the "ref" copy in a subfolder, removed here.
    """
    trainer.save_model(str(dest))
    if trainer.accelerator.is_main_process:
        shutil.rmtree(dest / "ref", ignore_errors=True)


def run_dpo(cfg: TrainConfig, phase: Phase, dataset: Any, sft: Path | None, *,
            resume: bool = False, callbacks: list | None = None) -> dict[str, Any]:
    """Train, publish `phase.dest` and return the phase metrics (reward margins, accuracies)."""
    trainer, lengths = build_trainer(cfg, phase, dataset, sft, callbacks)
    counts = {"rows": len(dataset),
              "rows_dropped_prompt_too_long": lengths["prompt_too_long"],
              "rows_dropped_completion_cut": lengths["completion_cut"], "lengths": lengths}
    if lengths["dropped"]:
        log.warning("DPO: %d of %d pairs do not fit train.max_length=%d tokens uncut and were "
                    "left out (%d prompts alone too long, %d answers would be cut)",
                    lengths["dropped"], len(dataset), cfg.max_length,
                    lengths["prompt_too_long"], lengths["completion_cut"])
    if trainer is None:
        reason = f"no pair fits train.max_length={cfg.max_length} tokens uncut"
        log.warning("DPO skipped: %s", reason)
        return {"status": "skipped", "reason": reason, **counts}
    checkpoints.train(trainer, phase.run_dir, resume)
    checkpoints.publish(trainer, phase.dest, lambda d: save_policy(trainer, d))
    metrics = summarise(trainer.state.log_history, DPO_KEYS)
    metrics.update(status="trained", **counts, epochs=trainer.args.num_train_epochs,
                   reference="sft" if sft is not None else "base", beta=cfg.beta)
    return metrics
