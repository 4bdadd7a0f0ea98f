"""`arith`: seeded multi-step integer arithmetic, the embedded world's task.

A problem is a 2-digit start value and three `+d`/`-d` steps with 1-digit operands (the
step count can be changed), written compactly (`47+8-3+5`) because the tiny model reads one
character per token. Every correct running value stays within 10..99 and no step repeats
within a problem. The split of a problem is a hash of its canonical text, so train and test
can never share a question, whatever the seeds.

The role formats (what each role writes and sees of the others) are in
`malt.tasks.arith_formats`.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from malt.errors import MaltError
from malt.records import Problem
from malt.tasks.arith_formats import (  # noqa: F401 - the task's public names
    NO,
    NONE,
    OK,
    RIGHT,
    THEIRS,
    WRONG,
    Step,
    answer_view,
    compare_lines,
    critique_answer,
    critique_flags,
    extract_answer,
    is_equivalent,
    parse_states,
    render_check,
    render_keep,
    render_lines,
    render_solution,
    state,
    verdict_view,
    width,
)
from malt.tasks.base import RolePrompts, Task, field_str

NAME = "arith"
LOW, HIGH = 10, 99  # every correct running value stays 2-digit
TEST_PERCENT = 20  # share of the problem space assigned to the test split

@dataclass(frozen=True)
class Arith:
    """One problem: a start value and its steps."""

    start: int
    steps: tuple[Step, ...]

    @property
    def question(self) -> str:
        return str(self.start) + "".join(f"{op}{d}" for op, d in self.steps)

    def values(self) -> list[int]:
        """Running values after each step (the last is the answer)."""
        out, v = [], self.start
        for op, d in self.steps:
            v = apply(v, op, d)
            out.append(v)
        return out

    @property
    def answer(self) -> int:
        return self.values()[-1]


def apply(value: int, op: str, operand: int) -> int:
    """One step of arithmetic.

    >>> apply(47, "+", 8), apply(55, "-", 3)
    (55, 52)
    """
    return value + operand if op == "+" else value - operand


_QUESTION = re.compile(r"^(\d+)((?:[+-]\d+)+)$")
_STEP = re.compile(r"([+-])(\d+)")


def parse_question(text: str) -> Arith | None:
    """The problem a question text states, or None when it is not one.

    >>> parse_question("47+8-3+5")
    Arith(start=47, steps=(('+', 8), ('-', 3), ('+', 5)))
    >>> parse_question("2*3") is None
    True
    """
    m = _QUESTION.match(text.strip())
    if not m:
        return None
    steps = tuple((op, int(d)) for op, d in _STEP.findall(m.group(2)))
    return Arith(int(m.group(1)), steps)


def split_of(question: str) -> str:
    """`train` or `test`, decided by a hash of the canonical question text alone.

    >>> [split_of(q) for q in ("47+8-3+5", "12+3+4")]
    ['train', 'test']
    """
    digest = hashlib.sha256(f"arith-split:{question}".encode()).digest()
    return "test" if int.from_bytes(digest[:8], "big") % 100 < TEST_PERCENT else "train"


def sample_problem(rng: random.Random, min_steps: int = 3, max_steps: int = 3) -> Arith:
    """A random problem whose running values stay in LOW..HIGH, no step repeated."""
    start = rng.randint(LOW, HIGH)
    steps: list[Step] = []
    value = start
    for _ in range(rng.randint(min_steps, max_steps)):
        choices = [
            (op, d) for op in "+-" for d in range(1, 10)
            if (op, d) not in steps and LOW <= apply(value, op, d) <= HIGH
        ]
        op, d = rng.choice(choices)
        steps.append((op, d))
        value = apply(value, op, d)
    return Arith(start, tuple(steps))


def generate(
    n: int, split: str = "train", seed: int = 0, min_steps: int = 3, max_steps: int = 3
) -> list[Arith]:
    """`n` distinct problems of `split`, deterministic in `seed`."""
    if split not in ("train", "test"):
        raise MaltError(f"arith split must be 'train' or 'test', got {split!r}")
    rng = random.Random(f"arith:{split}:{seed}")
    seen: set[str] = set()
    out: list[Arith] = []
    for _ in range(200 * n + 1000):
        if len(out) == n:
            return out
        p = sample_problem(rng, min_steps, max_steps)
        if p.question not in seen and split_of(p.question) == split:
            seen.add(p.question)
            out.append(p)
    raise MaltError(f"arith: could not draw {n} distinct {split} problems (the space is too small)")


def to_row(p: Arith) -> dict[str, Any]:
    """The JSONL row of a problem (the format `TASK.load` reads)."""
    return {"id": problem_id(p.question), "question": p.question, "answer": str(p.answer),
            "steps": len(p.steps)}


def write_split(path: str | Path, n: int, split: str = "train", seed: int = 0, **kw: int) -> int:
    """Write `n` problems of `split` as JSONL; returns the row count."""
    from malt.io import write_jsonl

    return write_jsonl(path, (to_row(p) for p in generate(n, split, seed, **kw)))


def problem_id(question: str) -> str:
    """Stable id of a question.

    >>> problem_id("47+8-3+5")
    'arith-47+8-3+5'
    """
    return f"{NAME}-{question}"


def parse_row(row: dict[str, Any], where: str) -> Problem:
    """A Problem from an arith JSONL row; the answer must match the question."""
    question = field_str(row, "question", where).strip()
    answer = str(row.get("answer", "")).strip()
    p = parse_question(question)
    if p is None:
        raise MaltError(f"{where}: field 'question' is not an arith problem: {question!r}")
    if not re.fullmatch(r"-?\d+", answer):
        raise MaltError(f"{where}: field 'answer' must be an integer, got {answer!r}")
    if int(answer) != p.answer:
        raise MaltError(f"{where}: field 'answer' is {answer} but {question} = {p.answer}")
    pid = row.get("id") or problem_id(question)
    return Problem(id=str(pid), question=question, answer=str(int(answer)), task=NAME,
                   meta={"steps": len(p.steps), "split": split_of(question)})


def iter_problems(problems: list[Arith]) -> Iterator[Problem]:
    """Problems as malt records (for code that skips the JSONL file)."""
    for p in problems:
        yield parse_row(to_row(p), "arith")


# Short on purpose: the model is character-level, every prompt character is a token.
PROMPTS = RolePrompts(
    generator_system="Solve.",
    verifier_system="Check.",
    refiner_system="Fix.",
    generator_user="{question}",
    # The question comes last in every role's prompt, so each role's first line (the question,
    # restated) and so its whole derivation sit at the same distance from the question as G's:
    # the derivation G learns is the one V and R run.
    verifier_user="A: {answer}\nQ: {question}",
    refiner_user="A: {answer}\nC: {critique}\nQ: {question}",
    absent=NONE,
)

TASK = Task(
    name=NAME,
    parse_row=parse_row,
    extract_fn=extract_answer,
    equivalent_fn=is_equivalent,
    prompts=PROMPTS,
    answer_view=answer_view,
    critique_view=verdict_view,
    critique_answer_fn=critique_answer,
    critique_flags_fn=critique_flags,
)
