"""CommonsenseQA: five-way multiple choice; the answer is a choice letter A-E.

Rows are `{"id", "question": {"stem", "choices": [{"label", "text"}, ...]}, "answerKey"}`.
The question shown to the agents is the stem followed by the lettered choices.
"""

from __future__ import annotations

import re
from typing import Any

from malt.errors import MaltError
from malt.records import Problem
from malt.tasks.base import Task, field_str, stable_id
from malt.tasks.extract import after_last, last_boxed, safe_id
from malt.tasks.grading import total_equivalence, total_extractor
from malt.tasks.prompts import role_prompts

NAME = "csqa"
LETTERS = "ABCDE"

_FINAL = re.compile(r"(?i)final\s+answer\s*(?:is)?\s*[:：]?")
_ANSWER = re.compile(r"(?i)\b(?:answer|choice|option)\b(?:[^\n.]{0,40}?\bis\b|\s*[:=])")
# "(C)" in any case; a bare capital letter standing alone ("C", "C:", "**C**").
_PAREN = re.compile(r"\(\s*([A-Ea-e])\s*\)")
_BARE = re.compile(r"(?<![\w'’])([A-E])(?![\w'’])")
_ONLY = re.compile(r"^\W*([A-Ea-e])\W*$")


def _letter_in(span: str) -> str | None:
    """The choice letter a short answer span names, or None.

    >>> [_letter_in(s) for s in ["(c) ground", "C: ground", "**B**", "e.", "I think so"]]
    ['C', 'C', 'B', 'E', None]
    """
    for pattern in (_PAREN, _BARE, _ONLY):
        m = pattern.search(span)
        if m:
            return m.group(1).upper()
    return None


@total_extractor
def extract_answer(text: str) -> str | None:
    r"""The choice letter a model output settles on, or None.

    Looks for "Final Answer:", \boxed{}, "the answer is" (in that order), then the last
    "(X)" in the text, then a last line that is just a letter.

    >>> extract_answer("A bank would need security.\nFinal Answer: (A)")
    'A'
    >>> extract_answer("So the answer is C: ground.")
    'C'
    >>> extract_answer(r"Therefore $\boxed{\text{(D)}}$")
    'D'
    >>> extract_answer("(A) is unlikely and (B) fits best, so I pick (B).")
    'B'
    >>> extract_answer("Reasoning...\nE") , extract_answer("No idea at all.")
    ('E', None)
    """
    for span in (after_last(_FINAL, text), last_boxed(text), after_last(_ANSWER, text)):
        letter = _letter_in(span) if span else None
        if letter:
            return letter
    parens = _PAREN.findall(text)
    if parens:
        return parens[-1].upper()
    lines = [line for line in text.strip().splitlines() if line.strip()]
    m = _ONLY.match(lines[-1]) if lines else None
    return m.group(1).upper() if m else None


@total_equivalence
def is_equivalent(pred: str, gold: str) -> bool:
    """Whether two answers name the same choice letter ("(c)" == "C").

    >>> is_equivalent("(c)", "C"), is_equivalent("B", "C"), is_equivalent("", "C")
    (True, False, False)
    """
    a, b = _letter_in(pred), _letter_in(gold)
    return a is not None and a == b


def format_question(stem: str, choices: list[tuple[str, str]]) -> str:
    """The question text the agents see: the stem, then one "(X) text" line per choice.

    >>> print(format_question("Where are books?", [("A", "library"), ("B", "sea")]))
    Where are books?
    Answer choices:
    (A) library
    (B) sea
    """
    lines = [stem.strip(), "Answer choices:"]
    lines += [f"({label}) {text.strip()}" for label, text in choices]
    return "\n".join(lines)


def _choices(raw: Any, where: str) -> list[tuple[str, str]]:
    # Local files list {"label", "text"} objects; the Hub copy has {"label": [...], "text": [...]}.
    if isinstance(raw, dict) and isinstance(raw.get("label"), list):
        texts = raw.get("text") or []
        raw = [{"label": lb, "text": tx} for lb, tx in zip(raw["label"], texts, strict=False)]
    if not isinstance(raw, list) or not raw:
        raise MaltError(f"{where}: field 'choices' is missing or empty")
    out = []
    for i, choice in enumerate(raw):
        label = choice.get("label") if isinstance(choice, dict) else None
        text = choice.get("text") if isinstance(choice, dict) else None
        if not isinstance(label, str) or label.upper() not in LETTERS or not isinstance(text, str):
            raise MaltError(f"{where}: field 'choices[{i}]' needs a label A-E and a text")
        out.append((label.upper(), text))
    return out


def _stem_and_choices(row: dict[str, Any], where: str) -> tuple[str, list[tuple[str, str]], Any]:
    question = row.get("question")
    if isinstance(question, dict):  # original files: question = {stem, choices, concept}
        stem, raw = question.get("stem"), question.get("choices")
        concept = question.get("question_concept")
        field = "question.stem"
    else:  # Hub layout: question is the stem, choices and concept beside it
        stem, raw, concept = question, row.get("choices"), row.get("question_concept")
        field = "question"
    if not isinstance(stem, str) or not stem.strip():
        raise MaltError(f"{where}: field {field!r} is missing or empty")
    return stem, _choices(raw, where), concept


def parse_row(row: dict[str, Any], where: str) -> Problem:
    """A Problem from a CommonsenseQA row; the gold answer is the answerKey letter."""
    stem, choices, concept = _stem_and_choices(row, where)
    key = field_str(row, "answerKey", where).strip().upper()
    if key not in {label for label, _ in choices}:
        raise MaltError(f"{where}: field 'answerKey' is {key!r}, not one of the choice labels")
    text = format_question(stem, choices)
    raw_id = row.get("id")
    has_id = isinstance(raw_id, (str, int)) and str(raw_id).strip()
    return Problem(
        id=safe_id(NAME, str(raw_id)) if has_id else stable_id(NAME, text),
        question=text,
        answer=key,
        task=NAME,
        meta={"choices": dict(choices), "concept": concept},
    )


TASK = Task(
    name=NAME,
    parse_row=parse_row,
    extract_fn=extract_answer,
    equivalent_fn=is_equivalent,
    prompts=role_prompts("multiple-choice commonsense question", "Final Answer: (<letter>)"),
    default_hub_id="tau/commonsense_qa",
    default_hub_config=None,
)
