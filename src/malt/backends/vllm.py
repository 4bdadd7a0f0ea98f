"""Generation with vLLM's offline `LLM` engine (GPU; optional extra `malt[vllm]`).

One engine per distinct base model, with prefix caching on (a level's prompts share long
prefixes: the system prompt, the question, G's answer). Roles that name a LoRA adapter on a
shared base are served by multi-LoRA (`enable_lora`), one `LoRARequest` per role, so all
three roles run on one engine. Each prompt is one request with `n` samples and its own
seed; vLLM seeds a request's sampler per request, so samples do not depend on which other
prompts are in flight, except for batch-dependent rounding in its GPU kernels (vLLM is not
batch-invariant by default), which can rarely change a token in bf16.

Prompts are chat-templated with the engine's own tokenizer and passed as token ids, so no
special token is added twice. vllm is imported lazily: this module loads without it.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Mapping, Sequence
from typing import Any

from malt.backends.base import Completion, ModelSpec, SamplingParams, derive_seed
from malt.config import BackendConfig
from malt.errors import MaltError
from malt.records import Messages

_SEED_RANGE = 2**31


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
    """The `vllm` backend: `LLM.generate` with per-request seeds and per-role LoRA."""

    def __init__(
        self,
        cfg: BackendConfig,
        models: Mapping[str, ModelSpec],
        trust_remote_code: bool = False,
        revision: str | None = None,
    ):
        vllm, lora_request = _import_vllm()
        self._vllm = vllm
        by_base: dict[str, dict[str, ModelSpec]] = {}
        for role, spec in models.items():
            by_base.setdefault(spec.model, {})[role] = spec
        # Engines on one GPU share its memory; each gets an equal slice.
        share = cfg.gpu_memory_utilization / len(by_base)
        self.engines: dict[str, Any] = {}
        self.routes: dict[str, tuple[str, Any]] = {}  # role -> (base, LoRARequest or None)
        lora_id = 0
        for base, specs in by_base.items():
            adapters = {r: s.adapter for r, s in specs.items() if s.adapter}
            self.engines[base] = self._engine(
                cfg, base, share, len(adapters), trust_remote_code, revision
            )
            for role in specs:
                request = None
                if role in adapters:
                    lora_id += 1
                    request = lora_request(role, lora_id, adapters[role])
                self.routes[role] = (base, request)

    def _engine(self, cfg, base, memory, n_adapters, trust_remote_code, revision):
        kwargs: dict[str, Any] = {
            "model": base,
            "tensor_parallel_size": cfg.tensor_parallel_size,
            "gpu_memory_utilization": memory,
            "dtype": cfg.dtype,
            "enable_prefix_caching": True,
            "trust_remote_code": trust_remote_code,
            "revision": revision,
        }
        if n_adapters:
            kwargs.update(enable_lora=True, max_lora_rank=cfg.max_lora_rank, max_loras=n_adapters)
        try:
            return self._vllm.LLM(**kwargs)
        except (OSError, ValueError) as e:
            raise MaltError(f"{base}: vLLM could not load the model ({e})") from None

    def generate(
        self,
        role: str,
        prompts: Sequence[Messages],
        params: SamplingParams,
        seeds: Sequence[int],
    ) -> list[list[Completion]]:
        """One vLLM request per prompt with `n` samples, seeded derive_seed(seed, 0)."""
        if role not in self.routes:
            raise MaltError(f"no model configured for role {role!r}")
        base, lora = self.routes[role]
        engine = self.engines[base]
        tokenizer = engine.get_tokenizer()
        inputs = [{"prompt_token_ids": encode_chat(tokenizer, m)} for m in prompts]
        sampling = [self._params(params, seed) for seed in seeds]
        outputs = engine.generate(inputs, sampling, lora_request=lora, use_tqdm=False)
        return [[to_completion(o) for o in out.outputs] for out in outputs]

    def _params(self, params: SamplingParams, seed: int):
        return self._vllm.SamplingParams(
            n=params.n,
            temperature=params.temperature,
            top_p=params.top_p,
            max_tokens=params.max_new_tokens,
            seed=derive_seed(seed, 0) % _SEED_RANGE,
        )

    def close(self) -> None:
        """Shut the engines down and free GPU memory."""
        self.engines.clear()
        gc.collect()
        with contextlib.suppress(Exception):
            import torch

            torch.cuda.empty_cache()


def encode_chat(tokenizer, messages: Messages) -> list[int]:
    """Token ids of the chat-templated prompt, ending with the assistant turn's header."""
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def to_completion(output: Any) -> Completion:
    """A Completion from a vLLM CompletionOutput (`stop` on EOS or a stop string)."""
    reason = "length" if output.finish_reason == "length" else "stop"
    return Completion(output.text, len(output.token_ids), reason)


def create(
    cfg: BackendConfig,
    models: Mapping[str, ModelSpec],
    *,
    trust_remote_code: bool = False,
    revision: str | None = None,
) -> VLLMBackend:
    """Build the vllm backend (needs vllm and a CUDA GPU)."""
    return VLLMBackend(cfg, models, trust_remote_code=trust_remote_code, revision=revision)
