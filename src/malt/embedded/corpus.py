"""Synthetic pretraining corpus for the tiny base: all three arith roles, with imperfections.

Each example is one chat (system, user, assistant) built with the arith task's own prompts,
so the base model sees exactly the prompts the pipeline will send it. The imperfections make
a mediocre base that MALT can improve:

- G slips: each step's result is wrong with probability `g_slip` (off by 1, 2 or 10, the
  usual carry slips), and later steps chain from the wrong value.
- V re-derives the solution line by line and marks each line against G's. It misses: at the
  first line where G went wrong, it adopts G's value with probability `v_miss` (and so agrees
  from there on). It invents: each of its own steps slips with probability `v_false`, which
  flags a right answer.
- R follows V: when V flags a line it writes V's re-derived lines; with probability
  `r_ignore` it copies G's answer despite the flag.

Only train-split questions are used, so the base never sees a test question.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

from malt.records import GENERATOR, REFINER, VERIFIER, Messages, Problem
from malt.tasks.arith import (
    TASK,
    Arith,
    apply,
    critique_line,
    render_critique,
    render_solution,
    sample_problem,
    split_of,
    to_row,
)

_SLIPS = (-10, -2, -1, 1, 2, 10)


@dataclass(frozen=True)
class CorpusMix:
    """Role shares and imperfection rates of the corpus."""

    generator: float = 0.45  # share of examples per role (normalised)
    verifier: float = 0.35
    refiner: float = 0.2
    g_slip: float = 0.12  # per-step slip of G (and of R's recomputed steps)
    checked_slip: float = 0.25  # per-step slip of the G answers that V and R examples see
    v_miss: float = 0.3  # V adopts G's value where G first went wrong
    v_false: float = 0.05  # V's own step slips
    r_ignore: float = 0.2  # R copies G despite a flagged line
    min_steps: int = 3
    max_steps: int = 3


def slip(rng: random.Random, value: int) -> int:
    """A plausible wrong result near `value`, still 2-digit where possible."""
    options = [value + d for d in _SLIPS if 10 <= value + d <= 99] or [value + 1]
    return rng.choice(options)


def claims(rng: random.Random, p: Arith, rate: float, start: int | None = None,
           given: list[int] | None = None) -> list[int]:
    """Claimed results per step: `given` first, then chained steps that slip at `rate`."""
    out = list(given or [])
    value = out[-1] if out else (p.start if start is None else start)
    for op, d in p.steps[len(out):]:
        r = apply(value, op, d)
        if rng.random() < rate:
            r = slip(rng, r)
        out.append(r)
        value = r
    return out


def critique(rng: random.Random, p: Arith, claimed: list[int], mix: CorpusMix
             ) -> tuple[str, list[int]]:
    """V's critique of G's `claimed` results, and V's own value per step.

    V restates the question (line 0), then chains its own steps, marking each against G's.
    """
    n = len(p.steps)
    lines = [critique_line(p.start, p.steps, n, p.start)]
    checked: list[int] = []
    value, agreed = p.start, True
    for k, ((op, d), c) in enumerate(zip(p.steps, claimed, strict=True), start=1):
        truth = apply(value, op, d)
        if agreed and c != truth and rng.random() < mix.v_miss:
            v = c
        elif rng.random() < mix.v_false:
            v = slip(rng, truth)
        else:
            v = truth
        agreed = agreed and v == c
        lines.append(critique_line(v, p.steps[k:], n, c))
        checked.append(v)
        value = v
    return render_critique(lines), checked


def refine(rng: random.Random, p: Arith, claimed: list[int], checked: list[int],
           mix: CorpusMix) -> list[int]:
    """R's results: V's lines when V flagged one (unless R ignores it), else G's."""
    if checked == claimed or rng.random() < mix.r_ignore:
        return list(claimed)
    return list(checked)


def example(rng: random.Random, role: str, p: Arith, mix: CorpusMix) -> Messages:
    """One chat for `role` on problem `p`."""
    problem = _problem(p)
    if role == GENERATOR:
        answer = render_solution(p.start, p.steps, claims(rng, p, mix.g_slip))
        return [*TASK.messages(GENERATOR, problem), _assistant(answer)]
    claimed = claims(rng, p, mix.checked_slip)
    g_text = render_solution(p.start, p.steps, claimed)
    v_text, checked = critique(rng, p, claimed, mix)
    if role == VERIFIER:
        return [*TASK.messages(VERIFIER, problem, g_text), _assistant(v_text)]
    r_text = render_solution(p.start, p.steps, refine(rng, p, claimed, checked, mix))
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
