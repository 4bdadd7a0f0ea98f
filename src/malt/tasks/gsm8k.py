"""GSM8K: grade-school math word problems with a single numeric answer.

Rows are `{"question", "answer"}` where the answer is a worked rationale ending in
`#### <number>`. Answers are compared as exact rational numbers, so "1,200", "$1200.00"
and "1200 dollars" all mean 1200. A fraction means its value (`\\frac{3}{4}` is 0.75), or no
answer when it is not one (`\\frac{\\pi}{2}`); a number longer than `MAX_DIGITS` is no
grade-school answer and is unparseable.
"""

from __future__ import annotations

import re
from decimal import Decimal
from fractions import Fraction
from typing import Any

from malt.errors import MaltError
from malt.records import Problem
from malt.tasks.base import Task, field_str, stable_id
from malt.tasks.extract import after_last, last_boxed, last_match, matching_braces, safe_id
from malt.tasks.grading import Unparseable, total_equivalence, total_extractor
from malt.tasks.prompts import role_prompts

NAME = "gsm8k"
MAX_DIGITS = 100  # gold answers have at most 11; Python refuses ints of over 4,300 digits

# A number as people write it: sign, currency, thousands commas, decimals, a/b fractions.
# The look-behinds keep "H2O", "10-5" or the "4" of "3/4" from being read on their own; the
# look-ahead refuses "3/1.5" or "3/(4)" outright rather than read their numerator (a unit such
# as "$15/hour" is fine).
_NUMBER = re.compile(
    r"(?<![\w./])(?<!/[\s({\[])(?<!/\s[({\[])(?P<neg>[-−–](?=\s?\$?\s?\.?\d))?\s?\$?\s?"
    r"(?P<num>(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)"
    r"(?:\s?/\s?(?P<den>\d+)(?!\.?\d))?"
    r"(?![\d])(?!\s?/\s?[\d.(\[{\\])"
)
_WORDS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen twenty".split()
)}
_WORD = re.compile(r"\b(" + "|".join(_WORDS) + r")\b", re.IGNORECASE)

_FINAL = re.compile(r"(?i)final\s+answer\s*(?:is)?\s*[:：]?")
_HASHES = re.compile(r"####")
_ANSWER = re.compile(r"(?i)\banswer\b(?:[^\n.]{0,40}?\bis\b|\s*[:=])")

# A LaTeX fraction command, with the whole part of a mixed number ("2\frac12") before it.
_FRAC = re.compile(r"(?:(?<![\w.])(?P<whole>\d+) ?)?\\[dt]?frac(?![A-Za-z])")
_PLAIN = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")
_INTEGER = re.compile(r"\d+")
NOT_A_NUMBER = "(?)"  # what a fraction that is no number becomes: it holds no digits


def latex_fractions(text: str) -> str:
    r"""LaTeX fractions written as a/b when both parts are numbers, else as `(?)`.

    >>> latex_fractions(r"$\frac{3}{4}$ or \dfrac{-1}{2} or 2\frac12 or \frac{\pi}{2}").split()
    ['$', '3/4', '$', 'or', '-1/2', 'or', '5/2', 'or', '(?)']
    >>> latex_fractions(r"\frac{\frac12}{3}")
    ' (?) '
    """
    if "frac" not in text:
        return text
    closing = matching_braces(text)
    out, pos = [], 0
    for m in _FRAC.finditer(text):
        if m.start() < pos:  # inside a fraction already rewritten
            continue
        num, end = _latex_argument(text, m.end(), closing)
        den, end = _latex_argument(text, end, closing) if num is not None else (None, end)
        if den is None:
            continue
        out += [text[pos : m.start()], _fraction_text(m.group("whole"), num, den)]
        pos = end
    return "".join(out) + text[pos:]


def _latex_argument(text: str, i: int, closing: dict[int, int]) -> tuple[str | None, int]:
    """A command's argument at `i` ({...} or one digit) and where it ends; None if there is none."""
    while i < len(text) and text[i].isspace():
        i += 1
    if i < len(text) and text[i] == "{" and i in closing:
        return text[i + 1 : closing[i]].strip(), closing[i] + 1
    if i < len(text) and _INTEGER.fullmatch(text[i]):
        return text[i], i + 1
    return None, i


def _fraction_text(whole: str | None, num: str, den: str) -> str:
    """A fraction's arguments as " a/b " (spaced, so no neighbouring digit joins them)."""
    if not _PLAIN.fullmatch(num) or not _INTEGER.fullmatch(den):
        return f" {NOT_A_NUMBER} "
    if whole is None:
        return f" {num}/{den} "
    if not _INTEGER.fullmatch(num):
        return f" {NOT_A_NUMBER} "
    if len(whole) + len(num) + len(den) > MAX_DIGITS:
        return f" {whole}{num}/{den} "  # too long to be an answer: unparseable when read
    return f" {int(whole) * int(den) + int(num)}/{den} "


def parse_number(text: str) -> Fraction | None:
    """The first number written in `text` as an exact fraction, or None.

    Raises Unparseable for a number of more than MAX_DIGITS digits.

    >>> [parse_number(s) for s in ["$1,200.50", "-5 apples", "25%", "3/4", "H2O", "−7"]]
    [Fraction(2401, 2), Fraction(-5, 1), Fraction(25, 1), Fraction(3, 4), None, Fraction(-7, 1)]
    >>> [parse_number(s) for s in [r"\\frac{3}{4}", r"\\frac{x}{4}", "3/1.5", "$15/hour"]]
    [Fraction(3, 4), None, None, Fraction(15, 1)]
    """
    m = _NUMBER.search(latex_fractions(text))
    if m is None:
        return None
    num, den = m.group("num").replace(",", ""), m.group("den") or ""
    if len(num) + len(den) > MAX_DIGITS:
        raise Unparseable(f"a number of {len(num) + len(den)} digits")
    value = Fraction(Decimal(num))
    if den:
        if int(den) == 0:
            return None
        value /= int(den)
    return -value if m.group("neg") else value


def canonical_number(value: Fraction) -> str:
    """A number's canonical string: integers plain, terminating decimals exact and without
    trailing zeros, other fractions as a/b.

    >>> [canonical_number(Fraction(x)) for x in ["5.00", "-0.50", "1/3", "1200", "1/1024"]]
    ['5', '-0.5', '1/3', '1200', '0.0009765625']
    """
    num, den = value.numerator, value.denominator
    if den == 1:
        return str(num)
    places, rest = 0, den
    for p in (2, 5):
        count = 0
        while rest % p == 0:
            rest, count = rest // p, count + 1
        places = max(places, count)
    if rest != 1:
        return f"{num}/{den}"
    digits = str(abs(num) * 10**places // den).rjust(places + 1, "0")
    text = f"{digits[:-places]}.{digits[-places:]}".rstrip("0").rstrip(".")
    return f"-{text}" if num < 0 else text


def _first_value(span: str) -> Fraction | None:
    # "Final Answer: 10 - 4 = 6" states 6: read after the last "=" of a marked span.
    span = span.rsplit("=", 1)[-1]
    value = parse_number(span)
    if value is None:
        word = _WORD.search(span)
        value = Fraction(_WORDS[word.group(1).lower()]) if word else None
    return value


@total_extractor
def extract_answer(text: str) -> str | None:
    r"""The final numeric answer in a model output as a canonical string, or None.

    Looks for "Final Answer:", "####", \boxed{}, "the answer is" (in that order), and falls
    back to the last number in the text. A marked fraction that is no number is no answer.

    >>> extract_answer("She pays 2 * $600 = $1,200.\nFinal Answer: $1,200")
    '1200'
    >>> extract_answer("48 + 24 = 72\n#### 72")
    '72'
    >>> extract_answer(r"So the total is $\boxed{5.00}$ dollars.")
    '5'
    >>> extract_answer(r"Each gets $\boxed{\frac{3}{4}}$ of it.")
    '0.75'
    >>> extract_answer("The answer is -3.5 degrees.")
    '-3.5'
    >>> extract_answer("First 3 apples, then 4 more, so 7 apples in total.")
    '7'
    >>> extract_answer("I am not sure.") is None
    True
    >>> extract_answer("0/0") is None
    True
    """
    text = latex_fractions(text)
    # Most explicit marker first; a later one counts only when those before it name no number.
    markers = (
        after_last(_FINAL, text), after_last(_HASHES, text), last_boxed(text),
        after_last(_ANSWER, text),
    )
    for span in markers:
        value = _first_value(span) if span else None
        if value is not None:
            return canonical_number(value)
        if span and NOT_A_NUMBER in span:
            return None
    last = last_match(_NUMBER, text)
    value = parse_number(last.group(0)) if last else None  # None also for "0/0"
    return canonical_number(value) if value is not None else None


@total_equivalence
def is_equivalent(pred: str, gold: str) -> bool:
    r"""Whether two answers are the same number (5.00 == 5, "1,200" == 1200).

    >>> is_equivalent("5.00", "5"), is_equivalent("1,200", "1200"), is_equivalent("7", "8")
    (True, True, False)
    >>> is_equivalent(r"\frac{1}{2}", "0.5"), is_equivalent(r"\frac{1}{2}", "1")
    (True, False)
    """
    a, b = parse_number(pred), parse_number(gold)
    return a is not None and b is not None and a == b


def parse_row(row: dict[str, Any], where: str) -> Problem:
    """A Problem from a GSM8K row; the gold answer is the number after '####'."""
    question = field_str(row, "question", where).strip()
    solution = field_str(row, "answer", where)
    rationale, sep, final = solution.rpartition("####")
    try:
        value = parse_number(final) if sep else None
    except Unparseable:
        value = None
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
