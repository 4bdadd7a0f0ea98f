"""k inference chains per question, run level by level through a Backend.

All generator prompts go to the backend in one call (k samples each), then every chain's
verifier prompt in one call, then every refiner prompt, exactly as the tree sampler does with
branching k x 1 x 1. A single-agent run stops after the generator level. Each prompt's seed is
derived from (run seed, question id, chain, role), so results do not depend on batching or on
which other questions are in the subset.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from malt.backends.base import Backend, Completion, SamplingParams
from malt.errors import MaltError
from malt.records import GENERATOR, REFINER, VERIFIER, Problem
from malt.tasks.base import Task


@dataclass
class Chain:
    """One G (-> V -> R) chain; `answer` is extracted from its last step."""

    generator: str
    generator_answer: str | None
    verifier: str | None = None
    refiner: str | None = None
    refiner_answer: str | None = None
    finish_reasons: tuple[str, ...] = ()

    @property
    def answer(self) -> str | None:
        """The final answer: the refiner's when the chain has one, else the generator's."""
        return self.refiner_answer if self.refiner is not None else self.generator_answer

    def to_dict(self) -> dict:
        return {**asdict(self), "finish_reasons": list(self.finish_reasons)}

    @classmethod
    def from_dict(cls, row: dict) -> Chain:
        return cls(**{**row, "finish_reasons": tuple(row.get("finish_reasons", ()))})


def prompt_seed(seed: int, problem_id: str, chain: int, role: str) -> int:
    """A 31-bit seed unique to one prompt of one chain.

    >>> prompt_seed(0, "gsm8k-abc", 1, "verifier") == prompt_seed(0, "gsm8k-abc", 1, "verifier")
    True
    >>> prompt_seed(0, "gsm8k-abc", 1, "verifier") != prompt_seed(1, "gsm8k-abc", 1, "verifier")
    True
    """
    key = f"{seed}\0{problem_id}\0{chain}\0{role}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:4], "big") & 0x7FFFFFFF


def run_chains(
    backend: Backend,
    task: Task,
    problems: Sequence[Problem],
    k: int,
    multi_agent: bool,
    params: SamplingParams,
    seed: int,
) -> list[list[Chain]]:
    """k chains for each problem (outer list follows `problems`)."""
    if not problems:
        return []
    g_out = _call(backend, GENERATOR, [task.messages(GENERATOR, p) for p in problems],
                  params, k, [prompt_seed(seed, p.id, 0, GENERATOR) for p in problems])
    chains = [
        [Chain(generator=c.text, generator_answer=task.extract_answer(c.text),
               finish_reasons=(c.finish_reason,)) for c in outs]
        for outs in g_out
    ]
    if not multi_agent:
        return chains
    flat = [(p, i, ch) for p, row in zip(problems, chains, strict=True) for i, ch in enumerate(row)]
    v_out = _call(backend, VERIFIER,
                  [task.messages(VERIFIER, p, generator=ch.generator) for p, _, ch in flat],
                  params, 1, [prompt_seed(seed, p.id, i, VERIFIER) for p, i, _ in flat])
    for (_, _, ch), (v,) in zip(flat, v_out, strict=True):
        ch.verifier = v.text
        ch.finish_reasons += (v.finish_reason,)
    r_prompts = [task.messages(REFINER, p, generator=ch.generator, critique=ch.verifier)
                 for p, _, ch in flat]
    r_out = _call(backend, REFINER, r_prompts, params, 1,
                  [prompt_seed(seed, p.id, i, REFINER) for p, i, _ in flat])
    for (_, _, ch), (r,) in zip(flat, r_out, strict=True):
        ch.refiner = r.text
        ch.refiner_answer = task.extract_answer(r.text)
        ch.finish_reasons += (r.finish_reason,)
    return chains


def _call(
    backend: Backend,
    role: str,
    prompts: list,
    params: SamplingParams,
    n: int,
    seeds: list[int],
) -> list[list[Completion]]:
    """One backend call for a role, checking it returned n completions per prompt."""
    sampling = SamplingParams(n=n, temperature=params.temperature, top_p=params.top_p,
                              max_new_tokens=params.max_new_tokens)
    out = backend.generate(role, prompts, sampling, seeds)
    if len(out) != len(prompts) or any(len(c) != n for c in out):
        raise MaltError(f"backend returned the wrong number of {role} completions "
                        f"(wanted {n} for each of {len(prompts)} prompts)")
    return out
