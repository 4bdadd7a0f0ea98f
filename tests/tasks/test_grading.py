"""Graders are total, and a completion that earns nothing says why (malt.tasks.grading).

Every task's `extract_answer`, `is_equivalent` and `reward` return a value for any input:
non-strings, numbers too long for Python's int conversion, odd Unicode, megabyte outputs.
"""

from __future__ import annotations

import pytest

from malt.records import Problem
from malt.tasks import get_task
from malt.tasks.grading import NO_ANSWER, OK, UNPARSEABLE, read_answer

TASKS = ["gsm8k", "math", "csqa"]
MB = 1 << 20
GOLD = {"gsm8k": "72", "math": "\\frac{1}{2}", "csqa": "B"}
RIGHT = {"gsm8k": "Final Answer: 72", "math": "So $\\boxed{\\frac{1}{2}}$.", "csqa": "Final Answer: (B)"}

# Inputs no grader may raise on. None of them states a task's gold answer.
PATHOLOGICAL = {
    "None": None,
    "int": 42,
    "float": float("nan"),
    "list": ["Final Answer: 72"],
    "dict": {"content": "Final Answer: 72"},
    "bytes": b"Final Answer: 72",
    "5000-digit marked": "Final Answer: " + "9" * 5000,
    "5000-digit boxed": "\\boxed{" + "9" * 5000 + "}",
    "5000-digit bare": "9" * 5000,
    "lone surrogates": "\ud800 Final Answer: \udfff (\ud800) \\boxed{\udfff}",
    "bidi and nul": "\u202eFinal Answer: \u202c\x00\x00(\u200b)",
    "odd digits": "Final Answer: \u0663\uff14\U0001d7d7 \u00b2\u2155",
    "1 MB of dots in a box": "\\boxed{" + "." * MB + "x}",
    "1 MB of digits": "1" * MB,
    "1 MB of braces": "{" * MB,
    "1 MB of \\(": "\\(" * (MB // 2),
    "1 MB of $": "Final Answer: " + "$a" * (MB // 2),
    "1 MB of markers": "Final Answer: " * (MB // 14),
    "1 MB of fractions": "\\frac{" * (MB // 6),
    "1 MB of newlines": "\n" * MB,
}


@pytest.mark.parametrize("task_name", TASKS)
@pytest.mark.parametrize("completion", PATHOLOGICAL.values(), ids=PATHOLOGICAL.keys())
def test_graders_return_a_value_for_any_input(task_name: str, completion: object) -> None:
    task = get_task(task_name)
    problem = Problem(id=f"{task_name}-x", question="q", answer=GOLD[task_name], task=task_name)
    pred = task.extract_answer(completion)
    assert pred is None or isinstance(pred, str)
    reward = task.reward(completion, problem)
    assert reward == 0 and type(reward) is int
    assert task.is_equivalent(completion, GOLD[task_name]) is False
    assert task.is_equivalent(GOLD[task_name], completion) is False
    answer, status = read_answer(task, completion)
    assert answer == pred and status in (OK, NO_ANSWER, UNPARSEABLE)


@pytest.mark.parametrize("task_name", TASKS)
def test_read_answer_says_why_a_completion_earned_nothing(task_name: str) -> None:
    task = get_task(task_name)
    assert read_answer(task, RIGHT[task_name])[1] == OK
    assert read_answer(task, "I am not sure.") == (None, NO_ANSWER)
    for completion in (None, 17, ["Final Answer: 72"]):
        assert read_answer(task, completion) == (None, UNPARSEABLE)


@pytest.mark.parametrize(
    ("task_name", "completion"),
    [
        ("gsm8k", "Final Answer: " + "9" * 5000),
        ("gsm8k", "Total: " + "9" * 5000),
        ("math", "\\boxed{" + "." * MB + "x}"),
        ("math", "\\boxed{" + "x+" * 5000 + "1}"),
    ],
    ids=["gsm8k marked", "gsm8k last number", "math 1 MB box", "math long box"],
)
def test_an_answer_that_cannot_be_graded_is_unparseable(task_name: str, completion: str) -> None:
    assert read_answer(get_task(task_name), completion) == (None, UNPARSEABLE)
