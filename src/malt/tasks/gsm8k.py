"""GSM8K: grade-school math word problems with a single numeric answer.

Rows are `{"question", "answer"}` where the answer is a worked rationale ending in
`#### <number>`. Answers are compared as exact rational numbers, so "1,200", "$1200.00"
and "1200 dollars" all mean 1200.
"""

from __future__ import annotations

import re
from decimal import Decimal, localcontext
from fractions import Fraction
from typing import Any

from malt.errors import MaltError
from malt.records import Problem
from malt.tasks.base import Task, field_str, stable_id
from malt.tasks.extract import after_last, last_boxed, last_match, safe_id
from malt.tasks.prompts import role_prompts

NAME = "gsm8k"

# A number as people write it: sign, currency, thousands commas, decimals, a/b fractions.
# The look-behind keeps "H2O" or "10-5" from yielding "2" or "-5".
_NUMBER = re.compile(
    r"(?<![\w.])(?P<neg>[-−–](?=\s?\$?\s?\.?\d))?\s?\$?\s?"
    r"(?P<num>(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)"
    r"(?:\s?/\s?(?P<den>\d+)(?![\d.]))?"
    r"(?![\d])"
)
_WORDS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen twenty".split()
)}
_WORD = re.compile(r"\b(" + "|".join(_WORDS) + r")\b", re.IGNORECASE)

_FINAL = re.compile(r"(?i)final\s+answer\s*(?:is)?\s*[:：]?")
_HASHES = re.compile(r"####")
_ANSWER = re.compile(r"(?i)\banswer\b(?:[^\n.]{0,40}?\bis\b|\s*[:=])")


def parse_number(text: str) -> Fraction | None:
    """The first number written in `text` as an exact fraction, or None.

    >>> [parse_number(s) for s in ["$1,200.50", "-5 apples", "25%", "3/4", "H2O", "−7"]]
    [Fraction(2401, 2), Fraction(-5, 1), Fraction(25, 1), Fraction(3, 4), None, Fraction(-7, 1)]
    """
    m = _NUMBER.search(text)
    if m is None:
        return None
    value = Fraction(Decimal(m.group("num").replace(",", "")))
    if m.group("den"):
        den = int(m.group("den"))
        if den == 0:
            return None
        value /= den
    return -value if m.group("neg") else value


def canonical_number(value: Fraction) -> str:
    """A number's canonical string: integers plain, terminating decimals without trailing zeros.

    >>> [canonical_number(Fraction(x)) for x in ["5.00", "-0.50", "1/3", "1200"]]
    ['5', '-0.5', '1/3', '1200']
    """
    if value.denominator == 1:
        return str(value.numerator)
    den = value.denominator
    for p in (2, 5):
        while den % p == 0:
            den //= p
    if den != 1:
        return f"{value.numerator}/{value.denominator}"
    with localcontext() as ctx:
        ctx.prec = 100
        text = format(Decimal(value.numerator) / Decimal(value.denominator), "f")
    return text.rstrip("0").rstrip(".")


def _first_value(span: str) -> Fraction | None:
    # "Final Answer: 10 - 4 = 6" states 6: read after the last "=" of a marked span.
    span = span.rsplit("=", 1)[-1]
    value = parse_number(span)
    if value is None:
        word = _WORD.search(span)
        value = Fraction(_WORDS[word.group(1).lower()]) if word else None
    return value


def extract_answer(text: str) -> str | None:
    r"""The final numeric answer in a model output as a canonical string, or None.

    Looks for "Final Answer:", "####", \boxed{}, "the answer is" (in that order), and falls
    back to the last number in the text.

    >>> extract_answer("She pays 2 * $600 = $1,200.\nFinal Answer: $1,200")
    '1200'
    >>> extract_answer("48 + 24 = 72\n#### 72")
    '72'
    >>> extract_answer(r"So the total is $\boxed{5.00}$ dollars.")
    '5'
    >>> extract_answer("The answer is -3.5 degrees.")
    '-3.5'
    >>> extract_answer("First 3 apples, then 4 more, so 7 apples in total.")
    '7'
    >>> extract_answer("I am not sure.") is None
    True
    >>> extract_answer("0/0") is None
    True
    """
    # Most explicit marker first; a later one counts only when those before it name no number.
    markers = (
        after_last(_FINAL, text), after_last(_HASHES, text), last_boxed(text),
        after_last(_ANSWER, text),
    )
    for span in markers:
        value = _first_value(span) if span else None
        if value is not None:
            return canonical_number(value)
    last = last_match(_NUMBER, text)
    value = parse_number(last.group(0)) if last else None  # None also for "0/0"
    return canonical_number(value) if value is not None else None


def is_equivalent(pred: str, gold: str) -> bool:
    """Whether two answers are the same number (5.00 == 5, "1,200" == 1200).

    >>> is_equivalent("5.00", "5"), is_equivalent("1,200", "1200"), is_equivalent("7", "8")
    (True, True, False)
    """
    a, b = parse_number(pred), parse_number(gold)
    return a is not None and b is not None and a == b


def parse_row(row: dict[str, Any], where: str) -> Problem:
    """A Problem from a GSM8K row; the gold answer is the number after '####'."""
    question = field_str(row, "question", where).strip()
    solution = field_str(row, "answer", where)
    rationale, sep, final = solution.rpartition("####")
    value = parse_number(final) if sep else None
    if value is None:
        raise MaltError(f"{where}: field 'answer' does not end with '#### <number>'")
    raw_id = row.get("id")
    pid = safe_id(NAME, str(raw_id)) if isinstance(raw_id, (str, int)) and str(raw_id) else None
    return Problem(
        id=pid or stable_id(NAME, question),
        question=question,
        answer=canonical_number(value),
        task=NAME,
        meta={"rationale": rationale.strip()},
    )


TASK = Task(
    name=NAME,
    parse_row=parse_row,
    extract_fn=extract_answer,
    equivalent_fn=is_equivalent,
    prompts=role_prompts("grade-school math word problem", "Final Answer: <number>"),
    default_hub_id="openai/gsm8k",
    default_hub_config="main",
)
