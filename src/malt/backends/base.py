"""The one interface every generation backend implements.

A backend is built once for a run with the model (and optional LoRA adapter) of each role;
`generate` then takes chat prompts for one role and returns `params.n` completions for each,
seeded per prompt so that results do not depend on how prompts are batched (where the
backend allows; each backend documents its limits).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from malt.records import Messages


@dataclass(frozen=True)
class ModelSpec:
    """What a role runs: a base model (local folder or Hub id) plus an optional LoRA adapter."""

    model: str
    adapter: str | None = None


@dataclass(frozen=True)
class SamplingParams:
    """Per-call sampling settings; temperature 0 means greedy."""

    n: int = 1
    temperature: float = 0.3
    top_p: float = 1.0
    max_new_tokens: int = 512


@dataclass(frozen=True)
class Completion:
    """One generated continuation."""

    text: str
    num_tokens: int
    # "stop" (EOS or stop string), "length" (max_new_tokens or the context window), or what
    # the engine reported otherwise, never relabelled as "stop" (vllm: "abort", "error")
    finish_reason: str
    # Tokens of the prompt this completion answered (the same for a prompt's n samples; a
    # prompt is counted once in the token ledgers); None when the backend cannot tell.
    prompt_tokens: int | None = None


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from any parts (run seed, node id, sample index), stable across runs.

    >>> derive_seed(0, "gsm8k-1a2b/g0", "v") == derive_seed(0, "gsm8k-1a2b/g0", "v")
    True
    >>> 0 <= derive_seed(1, 2) < 2**63
    True
    """
    text = "\x1f".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big") >> 1


class Backend(Protocol):
    """Generates completions for chat prompts of one role at a time."""

    def generate(
        self,
        role: str,
        prompts: Sequence[Messages],
        params: SamplingParams,
        seeds: Sequence[int],
    ) -> list[list[Completion]]:
        """`params.n` completions for each prompt; `seeds[i]` seeds prompt i's samples.

        Sample j is seeded from `derive_seed(seeds[i], j)` where the backend controls its
        sampler (hf, vllm); what equal seeds reproduce is documented by each backend.
        """
        ...

    def close(self) -> None:
        """Free models, GPU memory, connections."""
        ...
