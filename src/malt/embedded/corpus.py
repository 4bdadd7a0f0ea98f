"""Synthetic pretraining corpus for the tiny base: all three arith roles, with imperfections.

Each example is one chat (system, user, assistant) built with the arith task's own prompts
and views, so the base model sees exactly the prompts the pipeline will send it. The
imperfections make a mediocre base that MALT can improve:

- G slips: each step's result is wrong with probability `g_slip` (off by 1, 2 or 10, the
  usual carry slips), and later steps chain from the wrong value.
- V sees G's final answer only. It re-derives the solution itself, slipping per step with
  probability `v_slip` independently of G, compares its answer with G's digit by digit and
  states the verdict. Its slips are its imperfection: a slip on a right G answer is a false
  alarm, and a wrong G answer is missed only when V slips to the same value.
- R reads V's verdict: when V agrees it keeps G's answer; when V disagrees it re-derives the
  solution (slipping like G) and, with probability `r_ignore`, keeps G's answer anyway.

The G answers that V and R examples see slip at `checked_slip` per step, so about half of
them are wrong and a verdict is not predictable without checking. Only train-split
questions are used, so the base never sees a test question.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

from malt.chain import GENERATOR, REFINER, VERIFIER
from malt.records import Messages, Problem
from malt.tasks.arith import (
    NONE,
    TASK,
    Arith,
    apply,
    render_check,
    render_keep,
    render_solution,
    sample_problem,
    split_of,
    to_row,
)

_SLIPS = (-10, -2, -1, 1, 2, 10)


@dataclass(frozen=True)
class CorpusMix:
    """Role shares and imperfection rates of the corpus."""

    # Share of examples per role (normalised). G's derivation is the skill all roles share and
    # the build's curriculum teaches it first; after that the verdict needs the most examples.
    generator: float = 0.25
    verifier: float = 0.45
    refiner: float = 0.3
    # Per-step slip of G (and of R's re-derived steps). Sampling at temperature 0.7 sharpens
    # a learned slip rate: at 0.12 the base's G reached 81% by step 5000 and at 0.25 78% by step
    # 7000, both above the 35-75% band.
    g_slip: float = 0.33
    checked_slip: float = 0.2  # per-step slip of the G answers that V and R examples see
    g_none: float = 0.02  # share of those G outputs that state no answer
    v_slip: float = 0.08  # per-step slip of V's own derivation
    r_ignore: float = 0.1  # R keeps G's answer although V disagreed
    min_steps: int = 3
    max_steps: int = 3


def slip(rng: random.Random, value: int) -> int:
    """A plausible wrong result near `value`, still 2-digit where possible."""
    options = [value + d for d in _SLIPS if 10 <= value + d <= 99] or [value + 1]
    return rng.choice(options)


def claims(rng: random.Random, p: Arith, rate: float) -> list[int]:
    """Claimed results per step, chained, each slipping at `rate`."""
    out: list[int] = []
    value = p.start
    for op, d in p.steps:
        r = apply(value, op, d)
        if rng.random() < rate:
            r = slip(rng, r)
        out.append(r)
        value = r
    return out


def shown_answer(rng: random.Random, p: Arith, mix: CorpusMix) -> tuple[str, str]:
    """A G output as V and R examples see it: (G's text, G's answer as V's view shows it)."""
    if rng.random() < mix.g_none:
        return "", NONE
    claimed = claims(rng, p, mix.checked_slip)
    return render_solution(p.start, p.steps, claimed), str(claimed[-1])


def critique(rng: random.Random, p: Arith, theirs: str, mix: CorpusMix) -> tuple[str, bool]:
    """V's critique of G's answer `theirs`, and whether V agreed."""
    mine = claims(rng, p, mix.v_slip)
    return render_check(p, mine, theirs), str(mine[-1]) == theirs


def refine(rng: random.Random, p: Arith, theirs: str, agreed: bool, mix: CorpusMix) -> str:
    """R's output: G's answer kept when V agreed (or R ignores V), else a re-derivation."""
    if theirs != NONE and (agreed or rng.random() < mix.r_ignore):
        return render_keep(theirs)
    return render_solution(p.start, p.steps, claims(rng, p, mix.g_slip))


def example(rng: random.Random, role: str, p: Arith, mix: CorpusMix) -> Messages:
    """One chat for `role` on problem `p`."""
    problem = _problem(p)
    if role == GENERATOR:
        answer = render_solution(p.start, p.steps, claims(rng, p, mix.g_slip))
        return [*TASK.messages(GENERATOR, problem), _assistant(answer)]
    g_text, theirs = shown_answer(rng, p, mix)
    v_text, agreed = critique(rng, p, theirs, mix)
    if role == VERIFIER:
        return [*TASK.messages(VERIFIER, problem, g_text), _assistant(v_text)]
    r_text = refine(rng, p, theirs, agreed, mix)
    return [*TASK.messages(REFINER, problem, g_text, v_text), _assistant(r_text)]


def corpus(n: int, seed: int = 0, mix: CorpusMix = CorpusMix(), part: int = 0
           ) -> Iterator[tuple[str, Messages]]:
    """`n` (role, chat) examples from train-split problems, deterministic in (`seed`, `part`)."""
    rng = random.Random(f"arith-corpus:{seed}:{part}")
    roles = (GENERATOR, VERIFIER, REFINER)
    weights = (mix.generator, mix.verifier, mix.refiner)
    made = 0
    while made < n:
        p = sample_problem(rng, mix.min_steps, mix.max_steps)
        if split_of(p.question) != "train":
            continue
        role = rng.choices(roles, weights)[0]
        yield role, example(rng, role, p, mix)
        made += 1


def _problem(p: Arith) -> Problem:
    row = to_row(p)
    return Problem(id=row["id"], question=row["question"], answer=row["answer"], task="arith")


def _assistant(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}
