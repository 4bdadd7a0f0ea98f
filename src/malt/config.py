"""One YAML file describes a run; it is parsed into these typed dataclasses.

Every default lives here, one dataclass per stage. `load_config(path, overrides)` reads the
YAML, applies dotted command-line overrides (`generate.verifier.n=2`), and checks every
field's type and range, naming the bad field in the error.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from malt.errors import MaltError
from malt.records import GENERATOR, REFINER, ROLES, VERIFIER


@dataclass
class TaskConfig:
    """Which task, and where its questions come from (a local JSONL/Parquet path or a Hub id)."""

    name: str = "gsm8k"
    train: str | None = None
    test: str | None = None
    train_split: str = "train"  # used when `train` is a Hub dataset id
    test_split: str = "test"
    hub_config: str | None = None  # e.g. "main" for openai/gsm8k on the Hub
    limit_train: int | None = None  # first N training questions (None: all)


EMBEDDED = "embedded"  # model name meaning the tiny base shipped with malt


@dataclass
class ModelsConfig:
    """Model per role: a local folder or a Hub id; `base` fills any role left empty."""

    base: str | None = None
    generator: str | None = None
    verifier: str | None = None
    refiner: str | None = None
    trust_remote_code: bool = False
    revision: str | None = None

    def for_role(self, role: str) -> str:
        model = getattr(self, role) or self.base
        if not model:
            raise MaltError(f"models.{role}: no model given (set models.base or models.{role})")
        if model == EMBEDDED:
            from malt.embedded import base_model_path

            return str(base_model_path())
        return model


@dataclass
class BackendConfig:
    """How text is generated: hf (transformers), vllm, or openai (any compatible server)."""

    name: str = "hf"
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    dtype: str = "auto"  # auto: bfloat16 on GPU, float32 on CPU
    batch_size: int = 64  # sequences per forward pass (hf)
    kv_cache: str = "static"  # hf: static (preallocated, written in place) | dynamic (grows)
    # vllm
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.85
    max_lora_rank: int = 64
    # openai-compatible server
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"  # name of the variable, never the key itself
    max_concurrency: int = 32
    timeout_s: float = 120.0
    max_retries: int = 6


@dataclass
class RoleSampling:
    """Branching and sampling for one role (paper: n = 3, temperature 0.3)."""

    n: int = 3
    temperature: float = 0.3
    top_p: float = 1.0
    max_new_tokens: int = 512


@dataclass
class GenerateConfig:
    """The tree sampler: per-role branching and sampling, questions per shard."""

    generator: RoleSampling = field(default_factory=RoleSampling)
    verifier: RoleSampling = field(default_factory=RoleSampling)
    refiner: RoleSampling = field(default_factory=RoleSampling)
    chunk_size: int = 64
    split: str = "train"

    def role(self, role: str) -> RoleSampling:
        return getattr(self, role)


@dataclass
class CreditConfig:
    """Value iteration: global pooling (mean of leaves) or local (majority of children)."""

    pooling: str = "global"
    threshold: float = 0.5  # a node is positive when value > threshold (strict)


@dataclass
class DataConfig:
    """Role datasets in TRL formats."""

    format: str = "jsonl"  # jsonl | parquet
    max_pairs_per_parent: int | None = None  # None: all positive x negative sibling pairs
    generator_pairs: bool = False  # paper: no DPO for the generator


@dataclass
class TrainRoleConfig:
    """Training for one role: SFT on its positives, then optionally DPO on its pairs.

    Epochs by dataset size (when `sft_epochs` / `dpo_epochs` is None), so that small role
    datasets still get enough optimiser steps and big ones are not over-fitted:
    fewer than 1,000 rows -> 3 epochs; 1,000 to 9,999 rows -> 2 epochs; 10,000 or more -> 1.
    """

    sft: bool = True
    dpo: bool = True
    sft_learning_rate: float = 2e-4
    dpo_learning_rate: float = 5e-5
    sft_epochs: float | None = None  # None: chosen from the dataset size (rule above)
    dpo_epochs: float | None = None


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

    generator: TrainRoleConfig = field(default_factory=lambda: TrainRoleConfig(dpo=False))
    verifier: TrainRoleConfig = field(default_factory=TrainRoleConfig)
    refiner: TrainRoleConfig = field(default_factory=TrainRoleConfig)
    full_finetune: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    beta: float = 0.2
    batch_size: int = 8
    gradient_accumulation_steps: int = 1
    max_length: int = 1024
    padding_free: bool = True
    packing: bool = False
    merge: bool = False  # also save a merged model per role
    report_to: str = "none"  # none | tensorboard | wandb
    logging_steps: int = 10
    save_steps: int = 200
    save_total_limit: int = 2  # checkpoints kept per phase for --resume
    max_steps: int | None = None
    warmup_ratio: float = 0.03
    lr_scheduler_type: str = "cosine"
    bf16: bool | None = None
    gradient_checkpointing: bool | None = None
    attn_implementation: str | None = None  # e.g. flash_attention_2; None: see the docstring

    def role(self, role: str) -> TrainRoleConfig:
        return getattr(self, role)


@dataclass
class EvalConfig:
    """Inference chains, majority vote and the paper's baselines on the test split."""

    # The ten settings of the paper's Table 1 (v3), in its order (malt.evaluate.methods).
    methods: list[str] = field(
        default_factory=lambda: [
            "sa", "sa_mv", "ma", "ma_mv", "star_sa", "star_sa_mv", "star_ma", "star_ma_mv",
            "malt_no_mv", "malt",
        ]
    )
    chains: int = 3
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    subset_size: int | None = None  # random test subset per seed (paper: 100); None: full split
    temperature: float = 0.3
    top_p: float = 1.0
    max_new_tokens: int = 512
    bootstrap_samples: int = 10000
    confidence: float = 0.95  # two-sided level of the bootstrap interval
    chunk_size: int = 64  # questions per resumable chunk of sampled chains


@dataclass
class RunConfig:
    """A whole MALT run; stages write to `<run_dir>/<stage>/`."""

    run_dir: str = "runs/malt"
    seed: int = 0
    task: TaskConfig = field(default_factory=TaskConfig)
    models: ModelsConfig = field(default_factory=ModelsConfig)
    backend: BackendConfig = field(default_factory=BackendConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    credit: CreditConfig = field(default_factory=CreditConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def stage_dir(self, stage: str) -> Path:
        return Path(self.run_dir) / stage


# Allowed values for string fields; checked after parsing.
CHOICES: dict[str, tuple[str, ...]] = {
    "backend.name": ("hf", "vllm", "openai"),
    "backend.kv_cache": ("static", "dynamic"),
    "credit.pooling": ("global", "local"),
    "data.format": ("jsonl", "parquet"),
    "train.report_to": ("none", "tensorboard", "wandb"),
}


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML run config (or start from defaults), apply `key.sub=value` overrides."""
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise MaltError(f"{path}: config file not found")
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise MaltError(f"{path}: not valid YAML ({e})") from None
        if not isinstance(raw, dict):
            raise MaltError(f"{path}: the top level must be a mapping of sections")
    for item in overrides or []:
        apply_override(raw, item)
    where = f"{path}: " if path is not None else ""
    try:
        cfg = from_dict(RunConfig, raw, "")
        validate(cfg)
    except MaltError as e:
        raise MaltError(f"{where}{e}") from None
    return cfg


def apply_override(raw: dict[str, Any], item: str) -> None:
    """Set a dotted key in a nested dict from `a.b.c=value` (value parsed as YAML)."""
    if "=" not in item:
        raise MaltError(f"override {item!r} must look like section.field=value")
    key, _, text = item.partition("=")
    parts = key.strip().split(".")
    node = raw
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise MaltError(f"override {item!r}: {part!r} is not a section")
    try:
        node[parts[-1]] = yaml.safe_load(text)
    except yaml.YAMLError:
        node[parts[-1]] = text


def from_dict(cls: type, raw: Any, prefix: str) -> Any:
    """Build dataclass `cls` from a mapping, checking names and types field by field."""
    if not isinstance(raw, dict):
        raise MaltError(f"{prefix or 'config'}: expected a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise MaltError(f"{prefix}{unknown[0]}: unknown field (known: {', '.join(fields)})")
    kwargs = {name: _coerce(hints[name], value, f"{prefix}{name}") for name, value in raw.items()}
    obj = cls(**kwargs)
    return obj


def _coerce(tp: Any, value: Any, name: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, name)
            except MaltError:
                continue
        raise MaltError(f"{name}: expected {_type_name(tp)}, got {value!r}")
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, f"{name}.")
    if origin is list:
        if not isinstance(value, list):
            raise MaltError(f"{name}: expected a list, got {value!r}")
        (item,) = typing.get_args(tp)
        return [_coerce(item, v, f"{name}[{i}]") for i, v in enumerate(value)]
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is Any or (isinstance(tp, type) and isinstance(value, tp) and not (
        tp is int and isinstance(value, bool)
    )):
        return value
    raise MaltError(f"{name}: expected {_type_name(tp)}, got {value!r}")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def validate(cfg: RunConfig) -> None:
    """Range and choice checks that types alone cannot express."""
    for key, allowed in CHOICES.items():
        value = _get(cfg, key)
        if value not in allowed:
            raise MaltError(f"{key}: {value!r} is not one of {', '.join(allowed)}")
    from malt.tasks import TASKS

    if cfg.task.name not in TASKS:
        raise MaltError(f"task.name: unknown task {cfg.task.name!r} (known: {', '.join(TASKS)})")
    for role in ROLES:
        s = cfg.generate.role(role)
        _check(s.n >= 1, f"generate.{role}.n", "must be at least 1")
        _check(s.temperature >= 0, f"generate.{role}.temperature", "must be >= 0")
        _check(0 < s.top_p <= 1, f"generate.{role}.top_p", "must be in (0, 1]")
        _check(s.max_new_tokens >= 1, f"generate.{role}.max_new_tokens", "must be at least 1")
    _check(0 <= cfg.credit.threshold < 1, "credit.threshold", "must be in [0, 1)")
    _check(cfg.generate.chunk_size >= 1, "generate.chunk_size", "must be at least 1")
    _check(cfg.backend.batch_size >= 1, "backend.batch_size", "must be at least 1")
    _check(cfg.eval.chains >= 1, "eval.chains", "must be at least 1")
    _check(bool(cfg.eval.seeds), "eval.seeds", "needs at least one seed")
    _validate_eval(cfg.eval)
    mp = cfg.data.max_pairs_per_parent
    _check(mp is None or mp >= 1, "data.max_pairs_per_parent", "must be at least 1 or null")
    _check(cfg.train.beta > 0, "train.beta", "must be > 0")
    _check(cfg.train.lora_r >= 1, "train.lora_r", "must be at least 1")
    _check(cfg.train.batch_size >= 1, "train.batch_size", "must be at least 1")
    _check(cfg.train.max_length >= 8, "train.max_length", "must be at least 8")
    _check(cfg.train.save_steps >= 1, "train.save_steps", "must be at least 1")
    _check(cfg.train.max_steps is None or cfg.train.max_steps >= 1, "train.max_steps",
           "must be at least 1 or null")
    for role in ROLES:
        r = cfg.train.role(role)
        for name in ("sft_learning_rate", "dpo_learning_rate"):
            _check(getattr(r, name) > 0, f"train.{role}.{name}", "must be > 0")
        for name in ("sft_epochs", "dpo_epochs"):
            value = getattr(r, name)
            _check(value is None or value > 0, f"train.{role}.{name}", "must be > 0 or null")


def _validate_eval(e: EvalConfig) -> None:
    from malt.evaluate.methods import METHODS

    known = ", ".join(METHODS)
    for name in e.methods:
        _check(name in METHODS, "eval.methods", f"unknown method {name!r} (known: {known})")
    _check(bool(e.methods), "eval.methods", "needs at least one method")
    _check(len(set(e.seeds)) == len(e.seeds), "eval.seeds", "must not repeat a seed")
    _check(len(set(e.methods)) == len(e.methods), "eval.methods", "must not repeat a method")
    _check(e.subset_size is None or e.subset_size >= 1, "eval.subset_size",
           "must be at least 1 or null")
    _check(e.temperature >= 0, "eval.temperature", "must be >= 0")
    _check(0 < e.top_p <= 1, "eval.top_p", "must be in (0, 1]")
    _check(e.max_new_tokens >= 1, "eval.max_new_tokens", "must be at least 1")
    _check(e.bootstrap_samples >= 1, "eval.bootstrap_samples", "must be at least 1")
    _check(0 < e.confidence < 1, "eval.confidence", "must be in (0, 1)")
    _check(e.chunk_size >= 1, "eval.chunk_size", "must be at least 1")


def _check(ok: bool, key: str, why: str) -> None:
    if not ok:
        raise MaltError(f"{key}: {why}")


def _get(cfg: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg


def to_dict(cfg: RunConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def save_config(cfg: RunConfig, path: str | Path) -> None:
    """Write the fully resolved config as YAML (the exact settings a stage ran with)."""
    from malt.io import atomic_open

    with atomic_open(path) as f:
        yaml.safe_dump(to_dict(cfg), f, sort_keys=False)


__all__ = [
    "GENERATOR", "VERIFIER", "REFINER", "RunConfig", "TaskConfig", "ModelsConfig",
    "BackendConfig", "RoleSampling", "GenerateConfig", "CreditConfig", "DataConfig",
    "TrainRoleConfig", "TrainConfig", "EvalConfig", "load_config", "save_config", "to_dict",
]
