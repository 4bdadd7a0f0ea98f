"""`arith` role formats: what each role writes, what it sees of the others, and grading.

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

import re
from typing import Protocol

Step = tuple[str, int]  # ("+", 8)


class Stated(Protocol):
    """A problem as the formats need it (`malt.tasks.arith.Arith`)."""

    start: int
    steps: tuple[Step, ...]


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


def render_check(p: Stated, results: list[int], theirs: str) -> str:
    """A critique: V's own derivation, its answer against G's digit by digit, the verdict.

    >>> from malt.tasks.arith import Arith
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
