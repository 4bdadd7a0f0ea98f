"""`arith`: seeded multi-step integer arithmetic, the embedded world's task.

A problem is a 2-digit start value and three `+d`/`-d` steps with 1-digit operands (the
step count can be changed), written compactly (`47+8-3+5`) because the tiny model reads one
character per token. Every correct running value stays within 10..99 and no step repeats
within a problem. The split of a problem is a hash of its canonical text, so train and test
can never share a question, whatever the seeds.

Role formats: one step per line, each line the state after that step, right-aligned so that
every line has the same width and each step is a local computation on the line above it:

    G and R:      47+8-3+5      V (re-derives each line, marks it against G's line):
                    55-3+5       47+8-3+5 ok
                      52+5         55-3+5 ok
                        58           52+5 ok
              Answer: 58               57 no
                                 Wrong at step 3.

V's lines have the width of G's, so V can compute its line k from its own line k-1 exactly
as G does (the same relative positions), and each mark compares with G's line k at a fixed
distance back: checking is the solving skill plus a fixed-offset comparison. Measured on the
shipped base, the tiny model still takes the shortcut the same geometry offers: 89% of its
V values equal G's line, so its marks carry no signal (README, "The embedded world").
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
from malt.tasks.base import RolePrompts, Task, field_str

NAME = "arith"
LOW, HIGH = 10, 99  # every correct running value stays 2-digit
TEST_PERCENT = 20  # share of the problem space assigned to the test split
OK, NOT = "ok", "no"

Step = tuple[str, int]  # ("+", 8)


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


# ---- role formats ------------------------------------------------------------------------
# Lines are right-aligned to a fixed width, so every character a step needs sits at the same
# distance above it (column arithmetic): a tiny model learns fixed offsets far faster than
# searching the question for "the next step".


def state(value: int, steps_left: tuple[Step, ...]) -> str:
    """A running value followed by the steps still to apply.

    >>> state(55, (("-", 3), ("+", 5)))
    '55-3+5'
    """
    return str(value) + "".join(f"{op}{d}" for op, d in steps_left)


def width(n_steps: int) -> int:
    """Width of a state: the question plus one column of margin."""
    return 2 * n_steps + 3


MARK_WIDTH = 3  # " ok" / " no" after a critique line's state; G/R lines are padded to match


def render_solution(start: int, steps: tuple[Step, ...], results: list[int]) -> str:
    """A G/R solution: the question, then the state after each claimed result, then the answer.

    >>> print(render_solution(47, (("+", 8), ("-", 3), ("+", 5)), [55, 52, 57]))
        47+8-3+5
          55-3+5
            52+5
              57
    Answer: 57
    """
    w = width(len(steps)) + MARK_WIDTH
    lines = [state(start, steps).rjust(w)]
    lines += [state(r, steps[k:]).rjust(w) for k, r in enumerate(results, start=1)]
    lines.append(f"Answer: {results[-1]}")
    return "\n".join(lines)


_STATE = re.compile(r"^\s*(-?\d+)((?:[+-]\d+)*)(?:\s+(ok|no))?\s*$")


def parse_states(text: str) -> list[tuple[int, str, str | None]]:
    """(value, steps left, check mark) of each state line in a solution or critique.

    >>> parse_states(" 47+8-3+5\\n   55-3+5\\nAnswer: 55")
    [(47, '+8-3+5', None), (55, '-3+5', None)]
    >>> parse_states("55-3+5 ok\\n  53+5 no\\nWrong at step 2.")
    [(55, '-3+5', 'ok'), (53, '+5', 'no')]
    """
    out = []
    for line in text.splitlines():
        m = _STATE.match(line)
        if m and len(m.group(1)) <= 18:  # an absurd number is no state (and int() has limits)
            out.append((int(m.group(1)), m.group(2), m.group(3)))
    return out


def critique_line(value: int, steps_left: tuple[Step, ...], n_steps: int, claimed: int) -> str:
    """One line of V's re-derivation: its own state, then `ok` or `no` against G's claim.

    >>> critique_line(52, (("+", 5),), 3, 53)
    '     52+5 no'
    """
    mark = OK if value == claimed else NOT
    return f"{state(value, steps_left).rjust(width(n_steps))} {mark}"


def render_critique(lines: list[str]) -> str:
    """A full critique: V's lines (line 0 restates the question), then a verdict naming the
    first line marked `no` (step k is line k).

    >>> print(render_critique([" 47+8-3+5 ok", "   55-3+5 ok", "     52+5 no", "       57 no"]))
     47+8-3+5 ok
       55-3+5 ok
         52+5 no
           57 no
    Wrong at step 2.
    """
    flagged = [i for i, line in enumerate(lines) if line.endswith(f" {NOT}")]
    verdict = f"Wrong at step {flagged[0]}." if flagged else RIGHT
    return "\n".join([*lines, verdict])


RIGHT = "All steps right."
_VERDICT = re.compile(r"(Wrong at step \d+|All steps right)")


def critique_answer(text: str) -> str | None:
    """The answer V derived itself: the value of its last line, when no steps are left.

    >>> critique_answer("   55-3+5 ok\\n     52+5 no\\n       57 no\\nWrong at step 2.")
    '57'
    >>> critique_answer("   55-3+5 ok") is None, critique_answer("Wrong at step 1.") is None
    (True, True)
    """
    states = parse_states(text)
    return str(states[-1][0]) if states and not states[-1][1] else None


def critique_flags(text: str) -> bool | None:
    """True when a critique's verdict says the answer is wrong, None without a verdict.

    >>> critique_flags("55-3+5 ok\\nAll steps right."), critique_flags("Wrong at step 2.")
    (False, True)
    >>> critique_flags("55-3+5 ok") is None
    True
    """
    found = _VERDICT.findall(text)
    return None if not found else found[-1].startswith("Wrong")


# ---- grading -----------------------------------------------------------------------------

_ANSWER = re.compile(r"Answer:\s*(-?\d+)(?!\.?\d)")


def extract_answer(text: str) -> str | None:
    """The integer after the last `Answer:` marker, normalised; None when there is none.

    >>> extract_answer("47+8=55\\nAnswer: 55")
    '55'
    >>> extract_answer("Answer: 007"), extract_answer("Answer: -4 (sure)")
    ('7', '-4')
    >>> extract_answer("Answer: 5\\nAnswer: 6")
    '6'
    >>> extract_answer("47+8=55") is None, extract_answer("Answer: x") is None
    (True, True)
    """
    found = _ANSWER.findall(text)
    # A model may write any digit string: keep int() within its digit limit.
    return str(int(found[-1])) if found and len(found[-1]) <= 18 else None


def is_equivalent(pred: str, gold: str) -> bool:
    """Exact integer equality.

    >>> is_equivalent("57", "057"), is_equivalent("57", "58"), is_equivalent("5.0", "5")
    (True, False, False)
    """
    try:
        return int(pred.strip()) == int(gold.strip())
    except ValueError:
        return False


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
    verifier_user="Q: {question}\nA:\n{generator}",
    refiner_user="Q: {question}\nA:\n{generator}\nC:\n{critique}",
)

TASK = Task(
    name=NAME,
    parse_row=parse_row,
    extract_fn=extract_answer,
    equivalent_fn=is_equivalent,
    prompts=PROMPTS,
    critique_answer_fn=critique_answer,
)
