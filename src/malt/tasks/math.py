r"""MATH (Hendrycks) and MATH-500: competition problems with a LaTeX final answer.

Rows are `{"problem", "solution", ...}`; the gold answer is the last `\boxed{}`/`\fbox{}` of
the solution (MATH-500's `answer` field is kept in meta). Equivalence goes through
math-verify (LaTeX -> SymPy) in a helper process with a hard time bound per check, after a
cheap exact match on lightly normalised strings. An answer longer than `MAX_ANSWER_CHARS`
is unparseable: it is never sent to math-verify (nor kept in its cache).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from malt.errors import MaltError
from malt.records import Problem
from malt.tasks.base import Task, field_str, stable_id
from malt.tasks.extract import after_last, last_boxed, safe_id
from malt.tasks.grading import Unparseable, total_equivalence, total_extractor
from malt.tasks.mathverify import shared_verifier
from malt.tasks.prompts import role_prompts

NAME = "math"
MAX_ANSWER_CHARS = 1000  # the longest gold answer in MATH has 159 characters

_FINAL = re.compile(r"(?i)final\s+answer\s*(?:is)?\s*[:：]?")
_ANSWER = re.compile(r"(?i)\banswer\b(?:[^\n]{0,40}?\bis\b|\s*[:=])")
# Inline math in a marked span: $...$, \(...\) or \[...\].
_INLINE = re.compile(r"\$\$(.+?)\$\$|\$(.+?)\$|\\\((.+?)\\\)|\\\[(.+?)\\\]", re.S)
# Spacing and sizing commands that never change an answer's meaning.
_NOISE = re.compile(r"\\left|\\right|\\[,;:! ]|\\displaystyle|\s+|\^\{?\\circ\}?|\\%|%|\$")


def _clean(answer: str) -> str | None:
    """Trim an extracted answer: outer `$`, whitespace and trailing punctuation."""
    answer = answer.strip().strip("$").strip()
    answer = answer.rstrip(".,;:").strip()  # not a regex: "[.,;:]+$" is quadratic in the dots
    return answer or None


def _marked_span(span: str) -> str | None:
    r"""The answer inside a marked span: its first inline math, else the text up to a full stop.

    >>> _marked_span(r"is $\frac{1}{2}$. I hope it is correct.")
    '\\frac{1}{2}'
    >>> _marked_span("1/2. So we are done.")
    '1/2'
    """
    math = _INLINE.search(span)
    if math:
        return _clean(next(g for g in math.groups() if g is not None))
    return _clean(re.split(r"\.\s", span, maxsplit=1)[0])


@total_extractor
def extract_answer(text: str) -> str | None:
    r"""The final answer of a model output as LaTeX (without `$`/`\boxed{}`), or None.

    Takes the last \boxed{} or \fbox{}; without one, the answer after "Final Answer:" or
    "the answer is". Raises Unparseable for an answer longer than MAX_ANSWER_CHARS.

    >>> extract_answer(r"Hence $x = \boxed{\dfrac{\sqrt{3}}{2}}$.")
    '\\dfrac{\\sqrt{3}}{2}'
    >>> extract_answer(r"Final Answer: The final answer is $(3, \frac{\pi}{2})$. I hope so.")
    '(3, \\frac{\\pi}{2})'
    >>> extract_answer(r"The answer is $\frac12$")
    '\\frac12'
    >>> extract_answer("I could not solve it.") is None
    True
    """
    boxed = last_boxed(text)
    if boxed is not None:
        return _gradable(_clean(boxed))
    for marker in (_FINAL, _ANSWER):
        span = after_last(marker, text, max_chars=400)
        if span:
            return _marked_span(span)
    return None


def _gradable(answer: str | None) -> str | None:
    if answer is not None and len(answer) > MAX_ANSWER_CHARS:
        raise Unparseable(f"an answer of {len(answer)} characters")
    return answer


def normalize(answer: str) -> str:
    r"""A light canonical form used only for a fast exact match before math-verify.

    >>> normalize(r"\left( 3, \dfrac{\pi}{2} \right)"), normalize(r"90^\circ"), normalize("$5$.")
    ('(3,\\frac{\\pi}{2})', '90', '5')
    """
    answer = _NOISE.sub("", answer).replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    return answer.rstrip(".")


@total_equivalence
def is_equivalent(pred: str, gold: str) -> bool:
    r"""Whether `pred` states the same mathematical answer as `gold` (math-verify).

    >>> is_equivalent(r"\dfrac{1}{2}", "0.5"), is_equivalent(r"\{1,2\}", r"\{2,1\}")
    (True, True)
    >>> is_equivalent("3", "4"), is_equivalent(r"The answer is $\frac12$.", r"$\boxed{0.5}$")
    (False, True)
    """
    # Either side may still carry its wrapping ($...$, \boxed{}, "the answer is ...").
    pred = _gradable(extract_answer(pred) or pred.strip())
    gold = _gradable(extract_answer(gold) or gold.strip())
    if not pred or not gold:
        return False
    return normalize(pred) == normalize(gold) or _verified(pred, gold)


@lru_cache(maxsize=100_000)
def _verified(pred: str, gold: str) -> bool:
    return shared_verifier().equivalent(pred, gold)


def parse_row(row: dict[str, Any], where: str) -> Problem:
    """A Problem from a MATH / MATH-500 row; the gold answer is the solution's last box."""
    question = field_str(row, "problem", where).strip()
    solution = field_str(row, "solution", where)
    boxed = last_boxed(solution)
    if boxed is None:
        raise MaltError(f"{where}: field 'solution' has no \\boxed{{...}} final answer")
    answer = _clean(boxed) or ""
    meta: dict[str, Any] = {"solution": solution}
    if not answer:
        # Two rows of the original MATH train split end in an empty box; keep them so the
        # split stays whole, but nothing can grade correct against an empty gold answer.
        meta["ungradable"] = "the solution's final box is empty"
    for key in ("unique_id", "level", "type", "subject", "answer"):
        if row.get(key) is not None:
            meta["reference_answer" if key == "answer" else key] = row[key]
    uid = row.get("unique_id")
    has_uid = isinstance(uid, str) and uid.strip()
    return Problem(
        id=safe_id(NAME, uid) if has_uid else stable_id(NAME, question),
        question=question,
        answer=answer,
        task=NAME,
        meta=meta,
    )


TASK = Task(
    name=NAME,
    parse_row=parse_row,
    extract_fn=extract_answer,
    equivalent_fn=is_equivalent,
    prompts=role_prompts("competition math problem", "\\boxed{<answer>}"),
    default_hub_id="DigitalLearningGmbH/MATH-lighteval",
    default_hub_config="default",
)
