"""Generation with vLLM's offline `LLM` engine (GPU; optional extra `malt[vllm]`, vLLM >= 0.19.1).

One engine per distinct base model, with prefix caching on (a level's prompts share long
prefixes: the system prompt, the question, G's answer). Roles that name a LoRA adapter on a
shared base are served by multi-LoRA on that engine. Each distinct adapter (by content) is
one `LoRARequest` named `malt-<sha256 of its files>`: vLLM keys its prefix cache by LoRA
name, so a name never stands for two different adapters. Adapters are loaded when the engine
starts, after their rank (`r` in adapter_config.json) is checked against `max_lora_rank`
(`backend.max_lora_rank`, or the smallest rank vLLM accepts that fits them all).

Seeds: sample j of prompt i is its own request with n = 1, seeded
`derive_seed(seeds[i], j) % 2**31` (vLLM's own n > 1 would seed its j-th child with seed + j).
vLLM's V1 engine splits an n > 1 request into n such requests anyway, so this costs nothing.
Seeded requests draw from their own torch generator, which vLLM samples one request at a time
(and with top_p < 1 it leaves its FlashInfer sampler): slower than unseeded sampling, but
without a seed a sample would depend on everything else the engine sampled, and a resumed run
would not reproduce an uninterrupted one. Under vLLM a sample is deterministic given the same
seed, engine settings and batch; another batch can rarely change a token (vLLM is not
batch-invariant by default), and no sample equals the hf backend's (another sampler).
Greedy decoding (temperature below vLLM's 1e-5) is one unseeded request per prompt whose
completion is repeated n times: vLLM refuses n > 1 at temperature 0, and greedy is
deterministic anyway.

Prompts are chat-templated with the engine's own tokenizer and passed as token ids, so no
special token is added twice; a prompt that leaves no room in the context window
(`backend.max_model_len`, or the model's own) stops the call with one sentence. Finish
reasons are vLLM's: "stop", "length" (max_new_tokens or the context window), "abort",
"error". `close()` shuts each engine's core process down and frees its GPU memory, so that
`malt eval` can start the next model source's engine in the same process.
vllm is imported lazily: this module loads without it.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from malt.backends.base import Completion, ModelSpec, SamplingParams, derive_seed
from malt.config import VLLM_LORA_RANKS, BackendConfig
from malt.errors import MaltError
from malt.fingerprint import folder_fingerprint
from malt.records import Messages

_SEED_RANGE = 2**31
_GREEDY_BELOW = 1e-5  # vllm.sampling_params._SAMPLING_EPS: lower temperatures are greedy
# Our dtype names -> vLLM's; "auto" is bfloat16 as on the hf backend, not vLLM's "auto" (the
# checkpoint's dtype, which would run an fp16 checkpoint in fp16).
DTYPES = {"auto": "bfloat16", "bfloat16": "bfloat16", "float16": "float16", "half": "float16",
          "float32": "float32", "float": "float32"}
_LORA_IDS = itertools.count(1)  # vLLM LoRA ids: unique in the process, never 0


def _import_vllm():
    try:
        import vllm
        from vllm.lora.request import LoRARequest
    except ImportError:
        raise MaltError(
            "backend.name: vllm is not installed (pip install 'malt[vllm]' on a CUDA machine)"
        ) from None
    return vllm, LoRARequest


class VLLMBackend:
    """The `vllm` backend: `LLM.generate`, one seeded request per sample, LoRA per role."""

    def __init__(
        self,
        cfg: BackendConfig,
        models: Mapping[str, ModelSpec],
        trust_remote_code: bool = False,
        revision: str | None = None,
    ):
        vllm, self._lora_request = _import_vllm()
        self._vllm = vllm
        self.cfg = cfg
        self.dtype = vllm_dtype(cfg.dtype)
        by_base: dict[str, dict[str, ModelSpec]] = {}
        for role, spec in models.items():
            by_base.setdefault(spec.model, {})[role] = spec
        # Engines on one GPU share its memory; each gets an equal slice.
        share = cfg.gpu_memory_utilization / len(by_base)
        self.engines: dict[str, Any] = {}
        self.context: dict[str, int | None] = {}  # base -> the engine's max_model_len
        self.routes: dict[str, tuple[str, Any]] = {}  # role -> (base, LoRARequest or None)
        try:
            for base, specs in by_base.items():
                self._start(base, specs, share, trust_remote_code, revision)
        except BaseException:
            self.close()
            raise

    def _start(self, base: str, specs: Mapping[str, ModelSpec], memory: float,
               trust_remote_code: bool, revision: str | None) -> None:
        """One engine for `base`, its adapters loaded and checked, and its roles' routes."""
        adapters = {role: read_adapter(s.adapter) for role, s in specs.items() if s.adapter}
        requests: dict[str, Any] = {}  # adapter fingerprint -> LoRARequest
        for adapter in adapters.values():
            if adapter.fingerprint not in requests:
                requests[adapter.fingerprint] = self._lora_request(
                    adapter.name, next(_LORA_IDS), adapter.path)
        rank = lora_rank(self.cfg.max_lora_rank, list(adapters.values())) if adapters else None
        engine = self._engine(base, memory, len(requests), rank, trust_remote_code, revision)
        self.engines[base] = engine
        self.context[base] = _max_model_len(engine, self.cfg.max_model_len)
        for request in requests.values():
            _load_lora(engine, request)
        for role in specs:
            adapter = adapters.get(role)
            self.routes[role] = (base, requests[adapter.fingerprint] if adapter else None)

    def _engine(self, base, memory, n_adapters, rank, trust_remote_code, revision):
        cfg = self.cfg
        kwargs: dict[str, Any] = {
            "model": base,
            "tensor_parallel_size": cfg.tensor_parallel_size,
            "gpu_memory_utilization": memory,
            "dtype": self.dtype,
            "enable_prefix_caching": True,
            "enforce_eager": cfg.enforce_eager,
            "trust_remote_code": trust_remote_code,
            "revision": revision,
        }
        for name in ("max_model_len", "max_num_seqs", "quantization"):
            if getattr(cfg, name) is not None:
                kwargs[name] = getattr(cfg, name)
        if n_adapters:
            kwargs.update(enable_lora=True, max_lora_rank=rank, max_loras=n_adapters)
        try:
            return self._vllm.LLM(**kwargs)
        except (OSError, ValueError, RuntimeError) as e:
            raise MaltError(f"{base}: vLLM could not start an engine for this model "
                            f"({_first_line(e)})") from None

    def generate(
        self,
        role: str,
        prompts: Sequence[Messages],
        params: SamplingParams,
        seeds: Sequence[int],
    ) -> list[list[Completion]]:
        """`params.n` completions per prompt; sample j seeded derive_seed(seeds[i], j)."""
        if role not in self.routes:
            raise MaltError(f"no model configured for role {role!r}")
        if not prompts:
            return []
        base, lora = self.routes[role]
        engine = self.engines[base]
        tokenizer = engine.get_tokenizer()
        ids = [encode_chat(tokenizer, m) for m in prompts]
        check_lengths(role, ids, self.context[base])
        greedy = params.temperature < _GREEDY_BELOW
        draws = 1 if greedy else params.n
        inputs, sampling = [], []
        for tokens, seed in zip(ids, seeds, strict=True):
            for j in range(draws):
                inputs.append({"prompt_token_ids": tokens})
                sampling.append(self._params(params, None if greedy else derive_seed(seed, j)))
        try:
            outputs = engine.generate(inputs, sampling, lora_request=lora, use_tqdm=False)
        except ValueError as e:  # vLLM's input checks
            raise MaltError(f"vLLM refused a {role} request ({_first_line(e)})") from None
        flat = [to_completion(out.outputs[0], len(inputs[i]["prompt_token_ids"]))
                for i, out in enumerate(outputs)]
        rows = [flat[i * draws:(i + 1) * draws] for i in range(len(ids))]
        return [row * params.n for row in rows] if greedy else rows

    def _params(self, params: SamplingParams, seed: int | None):
        try:
            return self._vllm.SamplingParams(
                n=1,
                temperature=params.temperature,
                top_p=params.top_p,
                max_tokens=params.max_new_tokens,
                seed=None if seed is None else seed % _SEED_RANGE,
            )
        except ValueError as e:  # e.g. temperature above 2
            raise MaltError(f"vLLM refused the sampling settings ({_first_line(e)})") from None

    def close(self) -> None:
        """Shut every engine's core down and free GPU memory; safe to call twice."""
        engines = list(self.engines.values())
        self.engines.clear()
        self.routes.clear()
        for engine in engines:
            shutdown_engine(engine)
        del engines
        free_gpu_memory()


@dataclass(frozen=True)
class Adapter:
    """A PEFT LoRA adapter folder as vLLM loads it: path, rank and content fingerprint."""

    path: str
    rank: int
    fingerprint: str  # "sha256:..." over the folder's files (malt.fingerprint)

    @property
    def name(self) -> str:
        """The LoRA name vLLM sees (and keys its prefix cache by): one per content."""
        return "malt-" + self.fingerprint.removeprefix("sha256:")[:16]


def read_adapter(path: str) -> Adapter:
    """The adapter at `path`, its rank the largest of `r` and any `rank_pattern` value."""
    config_file = Path(path) / "adapter_config.json"
    if not config_file.is_file():
        raise MaltError(f"{path}: not a PEFT adapter folder (no adapter_config.json)")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
        ranks = [config["r"], *(config.get("rank_pattern") or {}).values()]
        if not all(isinstance(r, int) and not isinstance(r, bool) and r >= 1 for r in ranks):
            raise ValueError("r must be a positive integer")
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise MaltError(f"{config_file}: unreadable LoRA rank ({e})") from None
    return Adapter(str(path), max(ranks), folder_fingerprint(path))


def lora_rank(configured: int | None, adapters: Sequence[Adapter]) -> int:
    """`backend.max_lora_rank` checked against every adapter, or the smallest that fits.

    >>> lora_rank(None, [Adapter("a", 16, "sha256:0"), Adapter("b", 24, "sha256:1")])
    32
    """
    widest = max(adapters, key=lambda a: a.rank)
    if configured is not None and widest.rank > configured:
        raise MaltError(f"{widest.path}: LoRA rank {widest.rank} (adapter_config.json) is above "
                        f"backend.max_lora_rank {configured}; raise it or leave it empty")
    if configured is not None:
        return configured
    fits = [r for r in VLLM_LORA_RANKS if r >= widest.rank]
    if not fits:
        raise MaltError(f"{widest.path}: LoRA rank {widest.rank} is above {VLLM_LORA_RANKS[-1]}, "
                        "the largest rank vLLM serves")
    return fits[0]


def vllm_dtype(name: str) -> str:
    """vLLM's dtype for `backend.dtype` (auto -> bfloat16)."""
    if name not in DTYPES:
        raise MaltError(f"backend.dtype: vLLM takes auto, bfloat16, float16 or float32, "
                        f"not {name!r}")
    return DTYPES[name]


def _max_model_len(engine: Any, configured: int | None) -> int | None:
    """The engine's context window (vLLM fills in the model's own when none was given)."""
    with contextlib.suppress(AttributeError, TypeError, ValueError):
        return int(engine.llm_engine.model_config.max_model_len)
    return configured


def _load_lora(engine: Any, request: Any) -> None:
    """Load an adapter now, so a bad one fails at start-up rather than mid-run."""
    add = getattr(getattr(engine, "llm_engine", None), "add_lora", None)
    if add is None:  # an engine without it loads adapters on first use
        return
    try:
        add(request)
    except Exception as e:  # raised in the engine core process and relayed
        raise MaltError(f"{request.lora_path}: vLLM could not load this LoRA adapter "
                        f"({_first_line(e)})") from None


def check_lengths(role: str, ids: Sequence[Sequence[int]], limit: int | None) -> None:
    """One sentence for the first prompt that leaves no room to generate in the context."""
    if limit is None:
        return
    for i, tokens in enumerate(ids):
        if len(tokens) >= limit:
            raise MaltError(
                f"backend.max_model_len: {role} prompt {i} of this call is {len(tokens)} tokens, "
                f"which leaves no room to generate in the {limit}-token context window; raise "
                "backend.max_model_len (up to the model's limit) or shorten the inputs")


def shutdown_engine(engine: Any) -> None:
    """Stop an `LLM`'s engine core (a child process under V1) now, not at garbage collection."""
    stop = getattr(engine, "shutdown", None)  # LLM.shutdown, where vLLM has it
    if stop is None:
        core = getattr(getattr(engine, "llm_engine", None), "engine_core", None)
        stop = getattr(core, "shutdown", None)
    if stop is not None:
        with contextlib.suppress(Exception):  # closing must not hide the error that led here
            stop()


def free_gpu_memory() -> None:
    """Collect the engines' objects and return cached GPU memory to the driver."""
    gc.collect()
    with contextlib.suppress(Exception):
        from vllm.distributed.parallel_state import cleanup_dist_env_and_memory

        cleanup_dist_env_and_memory()
    with contextlib.suppress(Exception):
        import torch

        if torch.cuda.is_initialized():  # never create a CUDA context just to free one
            torch.cuda.empty_cache()


def encode_chat(tokenizer, messages: Messages) -> list[int]:
    """Token ids of the chat-templated prompt, ending with the assistant turn's header."""
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def to_completion(output: Any, prompt_tokens: int | None = None) -> Completion:
    """A Completion from a vLLM CompletionOutput, its finish reason as vLLM reported it."""
    reason = output.finish_reason
    return Completion(output.text, len(output.token_ids),
                      "unknown" if reason is None else str(reason), prompt_tokens)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def create(
    cfg: BackendConfig,
    models: Mapping[str, ModelSpec],
    *,
    trust_remote_code: bool = False,
    revision: str | None = None,
) -> VLLMBackend:
    """Build the vllm backend (needs vllm and a CUDA GPU)."""
    return VLLMBackend(cfg, models, trust_remote_code=trust_remote_code, revision=revision)
