"""Model loading and the PEFT LoRA config: attention and MLP projections (malt's choice, not the paper's)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from malt.config import TrainConfig
from malt.errors import MaltError


def lora_config(cfg: TrainConfig):
    """The LoRA adapter config for a causal LM from the train section."""
    from peft import LoraConfig

    return LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=list(cfg.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )


def load_model(path: str, *, bf16: bool, trust_remote_code: bool = False,
               revision: str | None = None, attn_implementation: str | None = None):
    """A causal LM from a local folder or Hub id (safetensors only), in fp32 or bf16."""
    import torch
    from transformers import AutoModelForCausalLM

    extra = {"attn_implementation": attn_implementation} if attn_implementation else {}
    try:
        return AutoModelForCausalLM.from_pretrained(
            path,
            dtype=torch.bfloat16 if bf16 else torch.float32,
            trust_remote_code=trust_remote_code,
            revision=revision,
            use_safetensors=True,
            **extra,
        )
    except OSError as e:
        raise MaltError(f"models: cannot load model {path!r} ({_first_line(e)})") from None


def load_tokenizer(path: str, *, trust_remote_code: bool = False, revision: str | None = None):
    """The model's tokenizer; it must carry a chat template (role datasets are conversational)."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code,
                                            revision=revision)
    except OSError as e:
        why = _first_line(e)
        raise MaltError(f"models: cannot load the tokenizer of {path!r} ({why})") from None
    if not tok.chat_template:
        raise MaltError(f"models: the tokenizer of {path!r} has no chat template")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


# PEFT makes LoRA weights fp32 on a bf16 base by default. DeepSpeed ZeRO-3 gathers parameters
# in one dtype and fails on the first step with mixed ones, so under ZeRO-3 the adapter keeps
# the base model's dtype (`same_dtype`), as TRL does for the adapters it creates itself.


def attach_lora(model: Any, cfg: TrainConfig, *, same_dtype: bool = False):
    """Wrap `model` with a fresh trainable LoRA adapter; unknown target modules name the field."""
    from peft import get_peft_model

    try:
        return get_peft_model(model, lora_config(cfg), autocast_adapter_dtype=not same_dtype)
    except ValueError as e:
        raise MaltError(f"train.target_modules: {_first_line(e)}") from None


def load_adapter(model: Any, adapter_dir: str | Path, trainable: bool, *,
                 same_dtype: bool = False):
    """Load a saved LoRA adapter onto `model` (as adapter "default")."""
    from peft import PeftModel

    return PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=trainable,
                                     autocast_adapter_dtype=not same_dtype)


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]
