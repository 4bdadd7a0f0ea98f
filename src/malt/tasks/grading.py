"""Total graders: any completion gets an answer or None, any pair a bool, never an exception.

A task module writes its extractor and equivalence check for well-formed strings and raises
`Unparseable` where an answer is stated but cannot be read (a number too long to grade, a
box too long to compare); `total_extractor` / `total_equivalence` turn those into None /
False, and non-strings too. `read_answer` says why a completion earned nothing, so the
label stage can count it: `no_answer` (none stated) or `unparseable` (stated, unreadable).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from malt.tasks.base import Task

OK, NO_ANSWER, UNPARSEABLE = "ok", "no_answer", "unparseable"
STATUSES = (OK, NO_ANSWER, UNPARSEABLE)

Extractor = Callable[[str], str | None]
Equivalence = Callable[[str, str], bool]


class Unparseable(ValueError):
    """An answer is stated but cannot be graded (e.g. a 5,000-digit number)."""


def total_extractor(read: Extractor) -> Callable[[object], str | None]:
    """`read` made total: None for a non-string or an unreadable answer, never an exception."""

    @functools.wraps(read)
    def extract(text: object) -> str | None:
        return _read(read, text)[0]

    return extract


def total_equivalence(same: Equivalence) -> Callable[[object, object], bool]:
    """`same` made total: False when either side is not a string or cannot be read."""

    @functools.wraps(same)
    def equivalent(pred: object, gold: object) -> bool:
        if not isinstance(pred, str) or not isinstance(gold, str):
            return False
        try:
            return bool(same(pred, gold))
        except Unparseable:
            return False

    return equivalent


def read_answer(task: Task, completion: object) -> tuple[str | None, str]:
    """(answer, status) of a completion: status is `ok`, `no_answer` or `unparseable`."""
    # The task's extractor without its total wrapper, so an unreadable answer shows as such.
    return _read(inspect.unwrap(task.extract_fn), completion)


def _read(read: Extractor, text: object) -> tuple[str | None, str]:
    if not isinstance(text, str):
        return None, UNPARSEABLE
    try:
        answer = read(text)
    except Unparseable:
        return None, UNPARSEABLE
    return answer, OK if answer is not None else NO_ANSWER
