"""One YAML file describes a run; it is parsed into these typed dataclasses.

Every default lives here, one dataclass per stage, and each dataclass checks its own ranges
in `__post_init__`, next to its fields. `load_config(path, overrides)` reads the YAML (a key
given twice is an error), applies dotted command-line overrides (`generate.verifier.n=2`),
and checks every field's type and range. An error is one sentence naming where the bad value
came from (`run.yaml:12: train.lora_dropout: ...` or `override train.lora_dropout=2: ...`).
Float fields also take YAML 1.2 floats such as `2e-4`, which PyYAML reads as strings.
"""

from __future__ import annotations

import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from malt.chain import DEFAULT_NAMES
from malt.config_train import TrainConfig, TrainRoleConfig
from malt.configfile import KEYED, FieldError, apply_override, blame, from_dict, read_yaml, to_dict
from malt.configfile import check as _check
from malt.configfile import non_negative as _non_negative
from malt.configfile import positive as _positive
from malt.errors import MaltError
from malt.io import atomic_open


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
    skip_train: int = 0  # leave out the first M (iterate: each round its own questions), >= 0

    def __post_init__(self) -> None:
        _check(self.skip_train >= 0, "skip_train", "must be at least 0")


EMBEDDED = "embedded"  # model name meaning the tiny base shipped with malt


@dataclass
class ModelsConfig:
    """Model per model slot of the chain (`models.<slot>`: a local folder or a Hub id);
    `base` fills any slot left empty."""

    base: str | None = None
    trust_remote_code: bool = False
    revision: str | None = None
    # models.<slot>: the chain's model slots (default: generator, verifier, refiner)
    roles: dict[str, str | None] = field(default_factory=dict, metadata=KEYED)

    def for_role(self, slot: str) -> str:
        model = self.roles.get(slot) or self.base
        if not model:
            raise MaltError(f"models.{slot}: no model given (set models.base or models.{slot})")
        if model == EMBEDDED:
            from malt.embedded import base_model_path

            return str(base_model_path())
        return model


# The LoRA ranks vLLM's engine accepts as max_lora_rank (vllm.config.lora.MaxLoRARanks).
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


@dataclass
class BackendConfig:
    """How text is generated: hf (transformers), vllm, or openai (any compatible server)."""

    name: Literal["hf", "vllm", "openai"] = "hf"
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps (what torch and the hf backend take)
    # auto: bfloat16 on GPU (hf and vllm; never vLLM's own "auto", the checkpoint's dtype),
    # float32 on CPU (hf); vllm takes auto, bfloat16, float16 (GPUs without bf16) or float32
    dtype: str = "auto"
    batch_size: int = 64  # sequences per forward pass (hf), >= 1
    # hf: shared (a prompt's KV stored once for its n samples; Llama/Qwen/Mistral, else static)
    # | static (preallocated, per row) | dynamic
    kv_cache: Literal["shared", "static", "dynamic"] = "shared"
    # vllm (offline engine; docs/real-models.md)
    tensor_parallel_size: int = 1  # >= 1
    gpu_memory_utilization: float = 0.85  # share of GPU memory for all engines together, in (0, 1]
    max_lora_rank: int | None = None  # one of VLLM_LORA_RANKS; None: smallest that fits the adapters
    max_model_len: int | None = None  # context window, prompt + output; None: the model's own, >= 1
    max_num_seqs: int | None = None  # sequences per engine step; None: vLLM's default, >= 1
    enforce_eager: bool = False  # true: no CUDA graphs (less memory and start-up time, slower decode)
    quantization: str | None = None  # vLLM's --quantization (fp8, awq, gptq, ...); None: as saved
    # Workers (docs/scale-out.md): N > 1 places N copies of this backend as Ray actors and
    # feeds them chunks of questions; shards are written here, so N never changes the bytes.
    workers: int = 1  # >= 1; 1 runs in this process and never imports Ray
    ray_address: str | None = None  # None: a local Ray cluster; "auto" or "ray://host:10001"
    worker_cpus: float = 1.0  # CPUs per worker (torch threads on the hf backend), > 0
    worker_gpus: float | None = None  # GPUs per worker; None: 0 on CPU, else tensor_parallel_size
    # openai-compatible server
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"  # name of the variable, never the key itself
    max_concurrency: int = 32  # requests in flight, >= 1
    timeout_s: float = 120.0  # bound on each HTTP attempt, reply body included, > 0
    max_retries: int = 6  # the client's retries per request, >= 0

    def __post_init__(self) -> None:
        _check(_DEVICE.fullmatch(self.device) is not None, "device",
               "must be auto, cpu, cuda, cuda:N or mps")
        _check(self.batch_size >= 1, "batch_size", "must be at least 1")
        _check(self.tensor_parallel_size >= 1, "tensor_parallel_size", "must be at least 1")
        _check(0 < self.gpu_memory_utilization <= 1, "gpu_memory_utilization", "must be in (0, 1]")
        ranks = ", ".join(map(str, VLLM_LORA_RANKS))
        _check(self.max_lora_rank is None or self.max_lora_rank in VLLM_LORA_RANKS,
               "max_lora_rank", f"must be one of vLLM's ranks {ranks}, or null")
        for name in ("max_model_len", "max_num_seqs"):
            value = getattr(self, name)
            _check(value is None or value >= 1, name, "must be at least 1 or null")
        _check(self.quantization is None or bool(self.quantization.strip()), "quantization",
               "must name a method (fp8, awq, ...) or be null")
        _check(self.workers >= 1, "workers", "must be at least 1")
        _check(_positive(self.worker_cpus), "worker_cpus", "must be a finite number > 0")
        _check(self.worker_gpus is None or _non_negative(self.worker_gpus), "worker_gpus",
               "must be a finite number >= 0 or null")
        _check(self.max_concurrency >= 1, "max_concurrency", "must be at least 1")
        _check(_positive(self.timeout_s), "timeout_s", "must be a finite number > 0")
        _check(self.max_retries >= 0, "max_retries", "must be at least 0")


_DEVICE = re.compile(r"auto|cpu|mps|cuda(?::[0-9]+)?")


@dataclass
class RoleSampling:
    """Branching and sampling for one role (paper: n = 3, temperature 0.3)."""

    n: int = 3  # >= 1
    temperature: float = 0.3  # finite, >= 0
    top_p: float = 1.0  # in (0, 1]
    max_new_tokens: int = 512  # >= 1

    def __post_init__(self) -> None:
        _check(self.n >= 1, "n", "must be at least 1")
        _check(_non_negative(self.temperature), "temperature", "must be a finite number >= 0")
        _check(0 < self.top_p <= 1, "top_p", "must be in (0, 1]")
        _check(self.max_new_tokens >= 1, "max_new_tokens", "must be at least 1")


@dataclass
class GenerateConfig:
    """The tree sampler: per-role branching and sampling (`generate.<role>`, one per role
    of the chain), questions per shard."""

    chunk_size: int = 64  # >= 1
    split: str = "train"
    roles: dict[str, RoleSampling] = field(default_factory=dict, metadata=KEYED)

    def __post_init__(self) -> None:
        _check(self.chunk_size >= 1, "chunk_size", "must be at least 1")

    def role(self, role: str) -> RoleSampling:
        return self.roles.get(role) or RoleSampling()


@dataclass
class CreditConfig:
    """Value iteration: global pooling (mean of leaves) or local (majority of children)."""

    pooling: Literal["global", "local"] = "global"
    threshold: float = 0.5  # a node is positive when value > threshold (strict); in [0, 1)

    def __post_init__(self) -> None:
        _check(0 <= self.threshold < 1, "threshold", "must be in [0, 1)")


@dataclass
class DataConfig:
    """Role datasets in TRL formats."""

    format: Literal["jsonl", "parquet"] = "jsonl"
    max_pairs_per_parent: int | None = None  # >= 1; None: all positive x negative sibling pairs

    def __post_init__(self) -> None:
        mp = self.max_pairs_per_parent
        _check(mp is None or mp >= 1, "max_pairs_per_parent", "must be at least 1 or null")


@dataclass
class MethodConfig:
    """A method of the run config's own: which roles run (a sub-chain, in chain order; empty:
    the whole chain), each role's model source (`base`, `sft` or `final`; `default` for the
    rest), and whether k chains vote."""

    roles: list[str] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)
    default: str = "final"
    vote: bool = True
    label: str | None = None


@dataclass
class EvalConfig:
    """Inference chains, majority vote and the paper's baselines on the test split."""

    # The ten settings of the paper's Table 1 (v3), in its order, and the compute-matched
    # SA + MV@9 (malt.evaluate.methods).
    methods: list[str] = field(
        default_factory=lambda: [
            "sa", "sa_mv", "ma", "ma_mv", "star_sa", "star_sa_mv", "star_ma", "star_ma_mv",
            "malt_no_mv", "malt", "sa_mv9",
        ]
    )
    chains: int = 3  # >= 1
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])  # at least one, none repeated
    subset_size: int | None = None  # random test subset per seed (paper: 100); None: full split
    temperature: float = 0.3  # finite, >= 0
    top_p: float = 1.0  # in (0, 1]
    max_new_tokens: int = 512  # >= 1
    bootstrap_samples: int = 10000  # >= 1
    confidence: float = 0.95  # two-sided level of the bootstrap interval, in (0, 1)
    chunk_size: int = 64  # questions per resumable chunk of sampled chains, >= 1

    # User-defined methods (`malt.evaluate.methods`): name -> {roles, sources, vote, label}.
    define: dict[str, MethodConfig] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check(bool(self.methods), "methods", "needs at least one method")
        _check(len(set(self.methods)) == len(self.methods), "methods", "must not repeat a method")
        _check(self.chains >= 1, "chains", "must be at least 1")
        _check(bool(self.seeds), "seeds", "needs at least one seed")
        _check(len(set(self.seeds)) == len(self.seeds), "seeds", "must not repeat a seed")
        _check(self.subset_size is None or self.subset_size >= 1, "subset_size",
               "must be at least 1 or null")
        _check(_non_negative(self.temperature), "temperature", "must be a finite number >= 0")
        _check(0 < self.top_p <= 1, "top_p", "must be in (0, 1]")
        _check(self.max_new_tokens >= 1, "max_new_tokens", "must be at least 1")
        _check(self.bootstrap_samples >= 1, "bootstrap_samples", "must be at least 1")
        _check(0 < self.confidence < 1, "confidence", "must be in (0, 1)")
        _check(self.chunk_size >= 1, "chunk_size", "must be at least 1")


@dataclass
class IterateConfig:
    """Iterative MALT (`malt iterate`): rounds of generate -> label -> train -> eval, each in
    `<run_dir>/round-<r>/`; round r > 1 samples its trees with round r-1's final agents."""

    rounds: int = 1  # >= 1
    thresholds: list[float] = field(default_factory=list)  # per round; empty: credit.threshold
    fresh_questions: bool = False  # each round its own `task.limit_train` training questions
    sample_with: Literal["previous", "base"] = "previous"  # whose agents sample round r > 1
    train_from: Literal["previous", "base"] = "previous"  # round r > 1's SFT starts from
    # Stop before the next round when this share of the last role's sibling groups gave one
    # answer only (diversity collapse: nothing left to contrast); null: never.
    stop_collapsed: float | None = 0.9
    eval: bool = True  # evaluate each round's agents (eval.methods) and tabulate the rounds

    def __post_init__(self) -> None:
        _check(self.rounds >= 1, "rounds", "must be at least 1")
        _check(not self.thresholds or len(self.thresholds) == self.rounds, "thresholds",
               "must give one threshold per round, or none")
        _check(all(0 <= t < 1 for t in self.thresholds), "thresholds", "must be in [0, 1)")
        _check(self.stop_collapsed is None or 0 < self.stop_collapsed <= 1, "stop_collapsed",
               "must be in (0, 1] or null")


@dataclass
class RunConfig:
    """A whole MALT run; stages write to `<run_dir>/<stage>/`."""

    run_dir: str = "runs/malt"
    seed: int = 0
    # The role chain (`malt.chain`): role names, or mappings of role fields.
    chain: list[str | dict[str, Any]] = field(
        default_factory=lambda: list(DEFAULT_NAMES))
    task: TaskConfig = field(default_factory=TaskConfig)
    models: ModelsConfig = field(default_factory=ModelsConfig)
    backend: BackendConfig = field(default_factory=BackendConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    credit: CreditConfig = field(default_factory=CreditConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    iterate: IterateConfig = field(default_factory=IterateConfig)

    def stage_dir(self, stage: str) -> Path:
        return Path(self.run_dir) / stage


Check = typing.Callable[["RunConfig"], None]


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                checks: typing.Sequence[Check] = ()) -> RunConfig:
    """Read a YAML run config (or start from defaults), apply `key.sub=value` overrides.

    `checks` (e.g. `malt.runspec.CHECKS`: the task, chain and method registries) see the
    parsed config; a FieldError they raise is blamed on its file line or override too.
    """
    raw: dict[str, Any] = {}
    lines: dict[str, int] = {}
    if path is not None:
        path = Path(path)
        raw, lines = _read_config_file(path)
    given = [(item, apply_override(raw, item)) for item in overrides or []]
    try:
        cfg = from_dict(RunConfig, raw, "")
        for check in checks:
            check(cfg)
        return cfg
    except FieldError as e:
        raise MaltError(blame(e, path, lines, given)) from None


def _read_config_file(path: Path) -> tuple[dict[str, Any], dict[str, int]]:
    """A config file's sections, and the line of each dotted key in it."""
    if not path.is_file():
        raise MaltError(f"{path}: config file not found")
    raw, lines = read_yaml(path)
    if not isinstance(raw, dict | None):
        raise MaltError(f"{path}: the top level must be a mapping of sections")
    return raw or {}, lines


def save_config(cfg: RunConfig, path: str | Path) -> None:
    """Write the fully resolved config as YAML (the exact settings a stage ran with)."""
    with atomic_open(path) as f:
        yaml.safe_dump(to_dict(cfg), f, sort_keys=False)


__all__ = [
    "RunConfig", "MethodConfig", "TaskConfig", "ModelsConfig",
    "BackendConfig", "RoleSampling", "GenerateConfig", "CreditConfig", "DataConfig",
    "TrainRoleConfig", "TrainConfig", "EvalConfig", "load_config", "save_config", "to_dict",
]
