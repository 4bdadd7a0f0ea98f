"""A small arithmetic task for generation tests, built from `Task` and `RolePrompts` only."""

from __future__ import annotations

import re
from typing import Any

from malt.records import Problem
from malt.tasks.base import RolePrompts, Task, field_str, stable_id


def _parse(row: dict[str, Any], where: str) -> Problem:
    question = field_str(row, "question", where)
    return Problem(
        id=stable_id("toy", question),
        question=question,
        answer=field_str(row, "answer", where),
        task="toy",
    )


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

QUESTIONS = [
    (f"What is {a} + {b}?", str(a + b))
    for a, b in [(1, 2), (3, 4), (10, 5), (7, 7), (2, 9), (12, 30), (8, 1), (6, 6)]
]


class FakeBackend:
    """A deterministic backend: each completion names its role, prompt seed and sample index."""

    def __init__(self):
        self.calls: list[tuple[str, int]] = []  # (role, number of prompts) per call

    def generate(self, role, prompts, params, seeds):
        from malt.backends.base import Completion

        self.calls.append((role, len(prompts)))
        return [
            [
                Completion(f"{role} {seed % 1000} sample {j}: {seed % 7 + j}", 5, "stop")
                for j in range(params.n)
            ]
            for seed in seeds
        ]

    def close(self):
        pass
