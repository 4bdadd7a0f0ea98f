"""`arith`: seeded multi-step integer arithmetic, the embedded world's task.

A problem is a 2-digit start value and three `+d`/`-d` steps with 1-digit operands (the
step count can be changed), written compactly (`47+8-3+5`) because the tiny model reads one
character per token. Every correct running value stays within 10..99 and no step repeats
within a problem. The split of a problem is a hash of its canonical text, so train and test
can never share a question, whatever the seeds.

Role formats: one step per line, each line the state after that step, right-aligned so that
every line has the same width and each step is a local computation on the line above it.

    G (sees the question)   V (sees G's final answer, then the question)
       47+8-3+5                47+8-3+5
         55-3+5                  55-3+5
           52+5                    52+5
             58                      57
    Answer: 58                      5 7
                            G     5=8x
                                     no

V re-derives the answer itself, spells it out, writes G's answer under it with each digit
under V's digit of the same place and a mark after it (`=` same, `x` different), and states
its verdict (`ok` / `no`) under the marks. V never sees G's working, so it cannot copy G's
lines: an earlier format that showed them was copied (89% of the tiny model's V values
equalled G's) and its verdicts carried no signal. R sees G's answer, V's verdict and the
question: it keeps G's answer when V agrees (`Answer: 58`) and re-derives the solution in
G's format when V disagrees.
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


def render_lines(start: int, steps: tuple[Step, ...], results: list[int]) -> list[str]:
    """The question, then the state after each claimed result, right-aligned to one width."""
    w = width(len(steps))
    return [state(start, steps).rjust(w)] + [
        state(r, steps[k:]).rjust(w) for k, r in enumerate(results, start=1)]


def render_solution(start: int, steps: tuple[Step, ...], results: list[int]) -> str:
    """A G/R solution: the question, then the state after each claimed result, then the answer.

    >>> print(render_solution(47, (("+", 8), ("-", 3), ("+", 5)), [55, 52, 57]))
     47+8-3+5
       55-3+5
         52+5
           57
    Answer: 57
    """
    return "\n".join([*render_lines(start, steps, results), f"Answer: {results[-1]}"])


_STATE = re.compile(r"^\s*(-?\d+)((?:[+-]\d+)*)\s*$")


def parse_states(text: str) -> list[tuple[int, str]]:
    """(value, steps left) of each state line in a solution or critique.

    >>> parse_states(" 47+8-3+5\\n   55-3+5\\nAnswer: 55")
    [(47, '+8-3+5'), (55, '-3+5')]
    """
    out = []
    for line in text.splitlines():
        m = _STATE.match(line)
        if m and len(m.group(1)) <= 18:  # an absurd number is no state (and int() has limits)
            out.append((int(m.group(1)), m.group(2)))
    return out


RIGHT, WRONG = "Right.", "Wrong."  # the verdict as R's prompt shows it
OK, NO = "ok", "no"  # the verdict as V writes it, under its marks
NONE = "none"  # what V is shown when G's output states no answer
THEIRS = "G"  # the label of the line where V copies G's answer under its own


def compare_lines(mine: int, theirs: str, n_steps: int) -> list[str]:
    """V's answer spelled out, G's answer under it digit by digit with a mark, the verdict.

    V first writes its own answer with a space between the digits. On the next line it
    copies G's answer so that each of G's digits sits right under V's digit of the same
    place, and follows each with a mark: `=` when the digit above is the same, `x` when it
    differs. So every mark compares the character just written with the one straight above
    it (one line up, same column), the one geometry the tiny model learns to compare
    (measured: marks comparing digits one column apart stayed at chance). The verdict, `ok`
    when every mark is `=`, else `no`, goes on the last line, under the marks.

    >>> compare_lines(57, "58", 3)
    ['      5 7', 'G     5=8x', '         no']
    >>> compare_lines(57, "57", 3)[1:], compare_lines(57, "47", 3)[1]
    (['G     5=7=', '         ok'], 'G     4x7=')
    >>> compare_lines(57, "none", 3)[1:]
    ['G    none', '         no']
    """
    w = width(n_steps)
    a, b = str(mine), theirs
    k = max(len(a), len(b) if b.isdigit() else 0)
    spaced = " ".join(a.rjust(k))
    col = w - len(spaced)  # the column of V's first digit
    if not b.isdigit():  # G stated no answer: nothing to compare
        return [spaced.rjust(w), THEIRS + b.rjust(w - len(THEIRS)), NO.rjust(w + 2)]
    marked = "".join(y + ("=" if x == y else "x") for x, y in zip(a.rjust(k), b.rjust(k),
                                                                   strict=True))
    same = a.rjust(k) == b.rjust(k)
    # The verdict's first letter sits under the last mark.
    return [spaced.rjust(w), THEIRS.ljust(col) + marked,
            (OK if same else NO).rjust(col + len(marked) + 1)]


def render_check(p: Arith, results: list[int], theirs: str) -> str:
    """A critique: V's own derivation, its answer against G's digit by digit, the verdict.

    >>> print(render_check(Arith(47, (("+", 8), ("-", 3), ("+", 5))), [55, 52, 57], "58"))
     47+8-3+5
       55-3+5
         52+5
           57
          5 7
    G     5=8x
             no
    """
    lines = [*render_lines(p.start, p.steps, results),
             *compare_lines(results[-1], theirs, len(p.steps))]
    return "\n".join(lines)


def render_keep(answer: str) -> str:
    """R's output when V agrees with G: G's answer, kept.

    >>> render_keep("58")
    'Answer: 58'
    """
    return f"Answer: {answer}"


_VERDICT = re.compile(r"^\s*(ok|no)\s*$", re.MULTILINE)


def critique_flags(text: str) -> bool | None:
    """True when a critique's verdict says G's answer is wrong, None without a verdict.

    >>> critique_flags("G      57\\n       ==\\n       ok"), critique_flags("       no")
    (False, True)
    >>> critique_flags("       57\\nG      58\\n       =x") is None
    True
    """
    found = _VERDICT.findall(text)
    return None if not found else found[-1] == NO


def critique_answer(text: str) -> str | None:
    """The answer V derived itself (its last state line), or None when it wrote none.

    >>> critique_answer("   52+5\\n     57\\nG    58\\n     =x\\n     no"), critique_answer("no")
    ('57', None)
    >>> critique_answer("   52+5\\n     no") is None  # a line with steps left is no answer
    True
    """
    states = parse_states(text)
    if not states or states[-1][1]:
        return None
    return str(states[-1][0])


def answer_view(generator: str) -> str:
    """What V sees of G's output: its final answer (or `none`), never its working.

    >>> answer_view("  47+8\\n    55\\nAnswer: 55"), answer_view("47+8")
    ('55', 'none')
    """
    return extract_answer(generator) or NONE


def verdict_view(critique: str) -> str:
    """What R sees of V's critique: its verdict line (or `none`).

    >>> verdict_view("G      58\\n       =x\\n       no"), verdict_view("G      58")
    ('Wrong.', 'none')
    """
    flag = critique_flags(critique)
    return NONE if flag is None else WRONG if flag else RIGHT


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
)
