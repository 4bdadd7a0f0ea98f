"""A small arithmetic task for generation tests, built from `Task` and `RolePrompts` only."""

from __future__ import annotations

import re
from typing import Any

from malt.records import Problem
from malt.tasks.base import RolePrompts, Task, field_str, stable_id


def _parse(row: dict[str, Any], where: str) -> Problem:
    question = field_str(row, "question", where)
    return Problem(id=stable_id("toy", question), question=question,
                   answer=field_str(row, "answer", where), task="toy")


def _extract(text: str) -> str | None:
    numbers = re.findall(r"-?\d+", text)
    return numbers[-1] if numbers else None


TASK = Task(
    name="toy",
    parse_row=_parse,
    extract_fn=_extract,
    equivalent_fn=lambda a, b: a.strip() == b.strip(),
    prompts=RolePrompts(
        generator_system="Answer with a number.",
        verifier_system="Check the answer.",
        refiner_system="Give the final number.",
    ),
)

QUESTIONS = [(f"What is {a} + {b}?", str(a + b)) for a, b in
             [(1, 2), (3, 4), (10, 5), (7, 7), (2, 9), (12, 30), (8, 1), (6, 6)]]
